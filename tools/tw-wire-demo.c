/* tw-wire-demo: a CALL carrying tensors is encoded zero-copy, "received" into a
 * pooled buffer, validated and decoded in place, and printed; then a remote
 * error and a corrupted frame take the same path: the wire format without a
 * network, for reading alongside docs/wire.md. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

#define CHECK(expr)                                                            \
	do {                                                                   \
		tw_status s_ = (expr);                                         \
		if (s_ != TW_OK) {                                             \
			fprintf(stderr, "tw-wire-demo: %s failed: %s\n",       \
				#expr, tw_errmsg(s_));                         \
			exit(1);                                               \
		}                                                              \
	} while (0)

static void hexdump(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i += 16) {
		printf("    %04zx ", i);
		for (size_t j = i; j < i + 16 && j < n; j++)
			printf(" %02x", b[j]);
		printf("\n");
	}
}

/* What a transport does: land the frame bytes once, in a pooled buffer. */
static tw_buf *receive(tw_buf_pool *rx_pool, const tw_out_msg *m)
{
	tw_buf *b;
	if (m->total_len <= tw_buf_pool_buf_size(rx_pool))
		b = tw_buf_pool_get(rx_pool);
	else
		CHECK(tw_buf_alloc(m->total_len, &b));
	if (!b) {
		fprintf(stderr, "tw-wire-demo: receive pool empty\n");
		exit(1);
	}
	tw_out_msg_copy(m, b->data);
	return b;
}

static void show(const char *what, const tw_in_msg *in)
{
	char text[1024];
	tw_value_format(&in->payload, text, sizeof(text));
	printf("%s: %s req=%" PRIu64 " from worker %u to %u, %" PRIu64
	       " bytes, %u tensor segment(s)\n  %s\n",
	       what, tw_msg_type_name(in->hdr.type), in->hdr.req_id,
	       in->hdr.src, in->hdr.dst, in->hdr.total_len, in->hdr.seg_count,
	       text);
}

int main(void)
{
	struct tw_buf_pool_opts po;
	tw_buf_pool *tx_pool, *rx_pool;
	tw_buf_pool_opts_init(&po, sizeof(po));
	po.buf_size = 4096;
	po.count = 64;
	po.name = "demo-tx";
	CHECK(tw_buf_pool_create(&po, &tx_pool));
	po.name = "demo-rx";
	po.buf_size = 64 * 1024;
	CHECK(tw_buf_pool_create(&po, &rx_pool));

	/* Arguments: a 2x3 float32 tensor, its transpose (a strided view of
	 * the same bytes), and a 1 MiB float64 tensor. */
	tw_tensor a, at, big;
	int64_t shape[2] = {2, 3};
	CHECK(tw_tensor_alloc(&a, TW_FLOAT32, 2, shape));
	for (int i = 0; i < 6; i++)
		((float *)a.data)[i] = (float)i + 0.5f;
	int64_t tshape[2] = {3, 2}, tstrides[2] = {1, 3};
	CHECK(tw_tensor_init(&at, TW_FLOAT32, 2, tshape, tstrides, a.data,
			     a.buf));
	int64_t bshape[1] = {131072};
	CHECK(tw_tensor_alloc(&big, TW_FLOAT64, 1, bshape));
	for (int64_t i = 0; i < bshape[0]; i++)
		((double *)big.data)[i] = (double)i;

	tw_value call, args, kwargs, v;
	CHECK(tw_value_tuple(&call, 3));
	CHECK(tw_value_cstring(&v, "demo::scale_add"));
	CHECK(tw_value_set_item(&call, 0, v));
	CHECK(tw_value_tuple(&args, 3));
	CHECK(tw_value_tensor(&v, &a));
	CHECK(tw_value_set_item(&args, 0, v));
	CHECK(tw_value_tensor(&v, &at));
	CHECK(tw_value_set_item(&args, 1, v));
	CHECK(tw_value_tensor(&v, &big));
	CHECK(tw_value_set_item(&args, 2, v));
	CHECK(tw_value_set_item(&call, 1, args));
	CHECK(tw_value_dict(&kwargs, 2));
	CHECK(tw_value_dict_set(&kwargs, 0, "alpha", tw_value_double(0.25)));
	CHECK(tw_value_cstring(&v, "fast"));
	CHECK(tw_value_dict_set(&kwargs, 1, "mode", v));
	CHECK(tw_value_set_item(&call, 2, kwargs));
	/* The value holds its own references now. */
	tw_tensor_release(&a);
	tw_tensor_release(&at);

	tw_frame_hdr h = {.type = TW_MSG_CALL,
			  .req_id = 42,
			  .src = 0,
			  .dst = 1,
			  .timeout_ms = 60000};
	tw_out_msg out;
	CHECK(tw_msg_encode(tx_pool, &h, &call, &out));
	printf("encoded CALL: %" PRIu64 " bytes in %u iovecs, %u segments\n",
	       out.total_len, out.niov, out.nseg);
	for (uint32_t i = 0; i < out.niov; i++)
		printf("  iov[%u] %8zu bytes%s\n", i, out.iov[i].iov_len,
		       out.iov[i].iov_base == big.data
			       ? "  <- the 1 MiB tensor, not copied"
			       : "");
	printf("  header, segment table and payload:\n");
	hexdump(out.iov[0].iov_base,
		out.iov[0].iov_len < 160 ? out.iov[0].iov_len : 160);

	tw_buf *rx = receive(rx_pool, &out);
	tw_in_msg in;
	CHECK(tw_msg_decode(rx, 0, out.total_len, NULL, NULL, &in));
	tw_buf_release(rx); /* the message holds its own reference */
	show("decoded", &in);

	const tw_value *dargs, *dbig;
	const tw_tensor *t;
	CHECK(tw_value_get_item(&in.payload, 1, &dargs));
	CHECK(tw_value_get_item(dargs, 2, &dbig));
	CHECK(tw_value_get_tensor(dbig, &t));
	printf("  the 1 MiB tensor decodes in place: data at offset %td of the "
	       "receive buffer, 64-byte aligned: %s, equal to the original: %s\n",
	       (char *)t->data - (char *)in.buf->data,
	       ((uintptr_t)t->data % 64) == 0 ? "yes" : "no",
	       tw_tensor_equal(t, &big) ? "yes" : "no");
	tw_in_msg_release(&in);
	tw_out_msg_release(&out);
	tw_value_destroy(&call);
	tw_tensor_release(&big);

	/* A remote error keeps its kind, message and origin. */
	tw_value err;
	CHECK(tw_value_error(&err, TW_EVALUE, 1,
			     "expected a positive alpha, got -1"));
	h.type = TW_MSG_EXCEPTION;
	CHECK(tw_msg_encode(tx_pool, &h, &err, &out));
	rx = receive(rx_pool, &out);
	CHECK(tw_msg_decode(rx, 0, out.total_len, NULL, NULL, &in));
	tw_buf_release(rx);
	show("decoded", &in);
	tw_in_msg_release(&in);

	/* A corrupted frame is refused with a reason, and nothing leaks. */
	rx = receive(rx_pool, &out);
	((uint8_t *)rx->data)[TW_FRAME_HDR_SIZE] = 0x7f; /* not a value tag */
	tw_status s = tw_msg_decode(rx, 0, out.total_len, NULL, NULL, &in);
	printf("corrupted frame: %s (%s), receive buffer refcount back to %u\n",
	       tw_status_name(s), tw_errmsg(s), tw_buf_refcnt(rx));
	tw_buf_release(rx);
	tw_out_msg_release(&out);
	tw_value_destroy(&err);

	CHECK(tw_buf_pool_destroy(tx_pool));
	CHECK(tw_buf_pool_destroy(rx_pool));
	return s == TW_EPROTO ? 0 : 1;
}
