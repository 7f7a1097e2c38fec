/* libFuzzer target for tw_msg_decode: any bytes must be refused with a
 * reason or decode to a value that re-encodes canonically. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

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

/* Encode v as hdr describes; NULL when out of memory. */
static tw_buf *encode(const tw_frame_hdr *hdr, const tw_value *v)
{
	tw_out_msg m;
	tw_buf *b;
	tw_status st = tw_msg_encode(NULL, hdr, v, &m);

	/* What the decoder accepts, the encoder must be able to send. */
	if (st == TW_ENOMEM)
		return NULL;
	if (st != TW_OK)
		fail();
	b = linearise(&m);
	tw_out_msg_release(&m);
	return b;
}

static void round_trip(const tw_in_msg *in)
{
	tw_in_msg again;
	const char *why = NULL;
	tw_buf *b2, *b3;

	b2 = encode(&in->hdr, &in->payload);
	if (b2 == NULL)
		return;
	if (tw_msg_decode(b2, 0, b2->size, NULL, &again, &why) != TW_OK)
		fail();
	if (!tw_value_equal(&in->payload, &again.payload))
		fail();
	/* One encoding per value: encode(decode(x)) is a fixed point once
	 * tensors are numbered in order. */
	b3 = encode(&again.hdr, &again.payload);
	if (b3 != NULL) {
		if (b3->size != b2->size || memcmp(b3->data, b2->data, b2->size))
			fail();
		tw_buf_release(b3);
	}
	tw_in_msg_release(&again);
	if (tw_buf_refcnt(b2) != 1)
		fail();
	tw_buf_release(b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tw_in_msg in;
	const char *why = NULL;
	tw_buf *b;
	tw_status st;

	/* A receive buffer as transports hand them over: 64-byte aligned. */
	if (tw_buf_alloc(size, &b) != TW_OK)
		return 0;
	if (size)
		memcpy(b->data, data, size);
	st = tw_msg_decode(b, 0, size, NULL, &in, &why);
	if (st == TW_OK) {
		char text[128];

		tw_value_format(&in.payload, text, sizeof(text));
		round_trip(&in);
		tw_in_msg_release(&in);
	} else {
		/* Every refusal names its reason; "internal" ones mean the two
		 * decoder passes disagree. */
		if ((st != TW_EPROTO && st != TW_EVERSION) || why == NULL ||
		    strncmp(why, "internal", 8) == 0)
			fail();
		if (in.payload.kind != TW_KIND_NONE || in.buf != NULL)
			fail();
	}
	if (tw_buf_refcnt(b) != 1)
		fail();
	tw_buf_release(b);
	return 0;
}
