/* Internal: frame header helpers for the layers behind a transport. */
#ifndef TW_DATAPLANE_FRAME_IMPL_H
#define TW_DATAPLANE_FRAME_IMPL_H

#include <tensorwire/frame.h>

/*
 * Read the fields of a header that tw_frame_hdr_decode has already
 * accepted (a transport checks every header against its limits before
 * on_frame: transport.h), without checking it again. Never for bytes
 * straight off the network: they go through tw_frame_hdr_decode.
 */
void tw_frame_hdr_load(const void *src, tw_frame_hdr *out);

#endif
