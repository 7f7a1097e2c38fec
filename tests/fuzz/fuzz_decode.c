/* libFuzzer target for tw_msg_decode: any bytes must be refused with a
 * reason (tw_errmsg) or decode to a value that re-encodes canonically, to
 * the same bytes from both encoders (two passes; one pass into a pool
 * buffer). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

#include "dataplane/err.h"
#include "tests/lib/two_pass.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A check failed: crash so the fuzzer keeps the input. */
static void fail(void)
{
	abort();
}

static tw_buf *linearise(const tw_out_msg *m)
{
	tw_buf *b;

	if (tw_buf_alloc((size_t)m->total_len, &b) != TW_OK)
		return NULL;
	tw_out_msg_copy(m, b->data);
	return b;
}

/* Encode v as hdr describes (from pool when not NULL); NULL when out of
 * memory. */
static tw_buf *encode(tw_buf_pool *pool, const tw_frame_hdr *hdr,
		      const tw_value *v)
{
	tw_out_msg m;
	tw_buf *b;
	tw_status st = tw_msg_encode(pool, hdr, v, &m);

	/* What the decoder accepts, the encoder must be able to send. */
	if (st == TW_ENOMEM)
		return NULL;
	if (st != TW_OK)
		fail();
	b = linearise(&m);
	tw_out_msg_release(&m);
	return b;
}

/* 4 KiB buffers, as the agent's send pool: small messages take the
 * one-pass encoder, the rest fall back to two passes. */
static tw_buf_pool *send_pool(void)
{
	static tw_buf_pool *pool;
	struct tw_buf_pool_opts o;

	if (pool == NULL) {
		tw_buf_pool_opts_init(&o, sizeof(o));
		o.buf_size = 4096;
		o.count = 4;
		o.prefault = 0;
		if (tw_buf_pool_create(&o, &pool) != TW_OK)
			fail();
	}
	return pool;
}

/* What to encode for a decoded message: its payload, inside its
 * autograd envelope when it came in one. */
static const tw_value *payload_of(const tw_in_msg *in, tw_value items[4],
				  tw_value *env)
{
	if (!(in->hdr.flags & TW_FRAME_F_AUTOGRAD))
		return &in->payload;
	*env = tw_msg_ag_wrap(&in->ag, &in->payload, items);
	return env;
}

static void round_trip(const tw_in_msg *in)
{
	tw_in_msg again;
	tw_buf *b2, *b3, *bp;
	tw_value items[4], env;
	const tw_value *pay = payload_of(in, items, &env);

	b2 = encode(NULL, &in->hdr, pay);
	if (b2 == NULL)
		return;
	bp = encode(send_pool(), &in->hdr, pay);
	if (bp != NULL) {
		if (bp->size != b2->size ||
		    memcmp(bp->data, b2->data, b2->size))
			fail();
		tw_buf_release(bp);
	}
	if (tw_buf_pool_in_use(send_pool()) != 0)
		fail();
	if (tw_msg_decode(b2, 0, b2->size, NULL, NULL, &again) != TW_OK)
		fail();
	if (!tw_value_equal(&in->payload, &again.payload) ||
	    again.ag.context_id != in->ag.context_id ||
	    again.ag.message_id != in->ag.message_id ||
	    again.ag.mask_len != in->ag.mask_len ||
	    (in->ag.mask_len &&
	     memcmp(again.ag.grad_mask, in->ag.grad_mask, in->ag.mask_len)))
		fail();
	/* One encoding per value: encode(decode(x)) is a fixed point once
	 * tensors are numbered in order. */
	b3 = encode(NULL, &again.hdr, payload_of(&again, items, &env));
	if (b3 != NULL) {
		if (b3->size != b2->size ||
		    memcmp(b3->data, b2->data, b2->size))
			fail();
		tw_buf_release(b3);
	}
	tw_in_msg_release(&again);
	if (tw_buf_refcnt(b2) != 1)
		fail();
	tw_buf_release(b2);
}

/* The decoder given the header a transport decoded (the agent's way in)
 * must reach first's verdict, with the same reason: one decoder, whoever
 * decodes the header. */
static void same_with_hdr(tw_buf *b, size_t size, tw_status first,
			  const char *why)
{
	tw_frame_hdr h;
	tw_in_msg in;
	tw_status st;

	if (size < TW_FRAME_HDR_SIZE ||
	    tw_frame_hdr_decode(b->data, NULL, &h) != TW_OK)
		return;
	tw_fail_static(TW_OK, NULL);
	st = tw_msg_decode(b, 0, size, &h, NULL, &in);
	if (st != first)
		fail();
	if (st == TW_OK)
		tw_in_msg_release(&in);
	else if (strcmp(tw_errmsg(st), why) != 0)
		fail();
}

#define SHAPE_FAULT "payload: shape does not match the message type"
#define MASK_FAULT "payload: autograd grad_mask does not fit the tensors"

/* Pass 1 then pass 2, which tw_msg_decode skips for small trees, must
 * agree with it: the same tree when it accepted (in), a refusal that is
 * not "internal" when it refused in the payload, unless for the type's
 * shape, which is not theirs to check. */
static void same_in_two_passes(tw_buf *b, size_t size, tw_status first,
			       const tw_in_msg *in, const char *why)
{
	tw_value v;
	void *arena;
	tw_status st = two_pass_decode(b, size, NULL, &v, &arena);

	if (st == TW_EINVAL || st == TW_ENOMEM)
		return;
	if (first == TW_OK) {
		/* The passes see the envelope; the message, what it wraps. */
		const tw_value *inner =
			(in->hdr.flags & TW_FRAME_F_AUTOGRAD) &&
					v.kind == TW_KIND_TUPLE && v.len == 4
				? &v.u.items[3]
				: &v;
		if (st != TW_OK || !tw_value_equal(&in->payload, inner))
			fail();
	} else if (st == TW_OK) {
		if (strcmp(why, SHAPE_FAULT) != 0 &&
		    strcmp(why, MASK_FAULT) != 0)
			fail();
	} else if (strncmp(tw_errmsg(st), "internal", 8) == 0) {
		fail();
	}
	free(arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tw_in_msg in;
	tw_buf *b;
	tw_status st;

	/* A receive buffer as transports hand them over: 64-byte aligned. */
	if (tw_buf_alloc(size, &b) != TW_OK)
		return 0;
	if (size)
		memcpy(b->data, data, size);
	/* No reason left over from an earlier input: a refusal must record
	 * its own. */
	tw_fail_static(TW_OK, NULL);
	st = tw_msg_decode(b, 0, size, NULL, NULL, &in);
	if (st == TW_OK) {
		char text[128];

		tw_value_format(&in.payload, text, sizeof(text));
		round_trip(&in);
		same_in_two_passes(b, size, st, &in, NULL);
		tw_in_msg_release(&in);
		same_with_hdr(b, size, st, NULL);
	} else {
		/* Every refusal names its reason; "internal" ones mean the two
		 * decoder passes disagree. */
		const char *why = tw_errmsg(st);

		if ((st != TW_EPROTO && st != TW_EVERSION) ||
		    strcmp(why, tw_strerror(st)) == 0 ||
		    strncmp(why, "internal", 8) == 0)
			fail();
		if (in.payload.kind != TW_KIND_NONE || in.buf != NULL)
			fail();
		same_with_hdr(b, size, st, why);
		same_in_two_passes(b, size, st, NULL, why);
	}
	if (tw_buf_refcnt(b) != 1)
		fail();
	tw_buf_release(b);
	return 0;
}
