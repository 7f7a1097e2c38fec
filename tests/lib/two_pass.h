/* Test helper: decode a frame's payload the long way, pass 1 then pass 2
 * (rpc/value_wire.h), whatever its size, to hold the decoder's one pass
 * (which tw_msg_decode takes for small trees) to the two. Header-only:
 * the fuzz targets use it too. */
#ifndef TW_TESTS_LIB_TWO_PASS_H
#define TW_TESTS_LIB_TWO_PASS_H

#include <stdlib.h>

#include <tensorwire/message.h>

#include "rpc/value_wire.h"

/*
 * The payload of the frame at b (len bytes) through tw_wire_check and
 * tw_wire_build, under lim as tw_msg_decode applies it. TW_OK: *out is
 * built in *arena (free it after the value). TW_EPROTO: a pass refused
 * it (tw_errmsg says why). TW_EINVAL: the header, layout or message type
 * is bad, which is not the payload decoder's to find.
 */
static inline tw_status two_pass_decode(tw_buf *b, size_t len,
					const tw_decode_limits *lim,
					tw_value *out, void **arena)
{
	const uint8_t *f = b->data;
	tw_frame_hdr h;
	tw_wire_layout lay;
	tw_wire_in in;
	tw_status st;

	*out = tw_value_none();
	*arena = NULL;
	if (len < TW_FRAME_HDR_SIZE ||
	    tw_frame_hdr_decode(f, lim ? &lim->frame : NULL, &h) != TW_OK ||
	    h.type >= TW_MSG_TYPE_COUNT_ ||
	    tw_frame_check_segments(f, len, &h, NULL) != TW_OK)
		return TW_EINVAL;
	in.frame = f;
	in.hdr = &h;
	in.buf = b;
	in.seg_offsets = NULL; /* pass 2 finds them itself */
	in.max_depth = TW_VALUE_MAX_DEPTH;
	in.max_nodes = 1u << 20;
	if (lim && lim->max_depth && lim->max_depth < TW_VALUE_MAX_DEPTH)
		in.max_depth = lim->max_depth;
	if (lim && lim->max_nodes)
		in.max_nodes = lim->max_nodes;
	st = tw_wire_check(&in, &lay);
	if (st != TW_OK)
		return st;
	/* The exact size pass 1 asked for, so a sanitizer sees any write
	 * past it. */
	*arena = malloc(lay.arena_size ? lay.arena_size : 1);
	if (*arena == NULL)
		return TW_ENOMEM;
	st = tw_wire_build(&in, &lay, *arena, out);
	if (st != TW_OK) {
		free(*arena);
		*arena = NULL;
	}
	return st;
}

#endif
