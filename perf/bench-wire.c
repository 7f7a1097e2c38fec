/* bench-wire: encode + decode cost of one message, small and with tensors of
 * growing size, beside memcpy of the same tensor bytes measured in the same
 * run. Zero copy shows as a time that does not grow with the tensor. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tensorwire/tensorwire.h>

#define TRIALS 7

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void die(const char *what, tw_status s)
{
	fprintf(stderr, "bench-wire: %s: %s\n", what, tw_errmsg(s));
	exit(1);
}

/* CALL "aten::add"(x, y) with two ints, or with one tensor of nbytes. */
static void build_call(tw_value *call, size_t nbytes, tw_tensor *keep)
{
	tw_value args, kwargs, v;
	tw_status s;
	if ((s = tw_value_tuple(call, 3)) ||
	    (s = tw_value_cstring(&v, "aten::add")) ||
	    (s = tw_value_set_item(call, 0, v)))
		die("build", s);
	if (nbytes == 0) {
		if ((s = tw_value_tuple(&args, 2)))
			die("build", s);
		tw_value_set_item(&args, 0, tw_value_int(1));
		tw_value_set_item(&args, 1, tw_value_int(2));
	} else {
		int64_t shape[1] = {(int64_t)(nbytes / 4)};
		if ((s = tw_tensor_zeros(keep, TW_FLOAT32, 1, shape)))
			die("tensor", s);
		if ((s = tw_value_tuple(&args, 2)) ||
		    (s = tw_value_tensor(&v, keep)) ||
		    (s = tw_value_set_item(&args, 0, v)))
			die("build", s);
		tw_value_set_item(&args, 1, tw_value_double(2.0));
	}
	tw_value_set_item(call, 1, args);
	if ((s = tw_value_dict(&kwargs, 1)) ||
	    (s = tw_value_dict_set(&kwargs, 0, "alpha", tw_value_int(1))))
		die("build", s);
	tw_value_set_item(call, 2, kwargs);
}

/* Median over TRIALS of the mean ns per iteration of fn. */
typedef void (*bench_fn)(void *ctx, long iters);

static double measure(bench_fn fn, void *ctx, double trial_ns)
{
	double res[TRIALS];
	long iters = 1;
	/* Calibrate: grow until one batch takes at least trial_ns / 4. */
	for (;;) {
		double t0 = now_ns();
		fn(ctx, iters);
		double dt = now_ns() - t0;
		if (dt > trial_ns / 4 || iters > (1L << 30))
			break;
		iters *= 2;
	}
	iters = iters * 4 > 0 ? iters * 4 : iters;
	for (int i = 0; i < TRIALS; i++) {
		double t0 = now_ns();
		fn(ctx, iters);
		res[i] = (now_ns() - t0) / (double)iters;
	}
	qsort(res, TRIALS, sizeof(res[0]), cmp_double);
	return res[TRIALS / 2];
}

struct wire_ctx {
	tw_buf_pool *pool;
	tw_value call;
	tw_buf *rx; /* the received frame, as a transport delivers it */
	size_t len;
	void *dst, *src; /* memcpy anchor */
	size_t nbytes;
};

static void run_encode(void *p, long iters)
{
	struct wire_ctx *c = p;
	tw_frame_hdr h = {.type = TW_MSG_CALL, .req_id = 1, .src = 0, .dst = 1};
	for (long i = 0; i < iters; i++) {
		tw_out_msg m;
		tw_status s = tw_msg_encode(c->pool, &h, &c->call, &m);
		if (s)
			die("encode", s);
		tw_out_msg_release(&m);
	}
}

static void run_decode(void *p, long iters)
{
	struct wire_ctx *c = p;
	for (long i = 0; i < iters; i++) {
		tw_in_msg in;
		tw_status s = tw_msg_decode(c->rx, 0, c->len, NULL, NULL, &in);
		if (s)
			die("decode", s);
		tw_in_msg_release(&in);
	}
}

static void run_memcpy(void *p, long iters)
{
	struct wire_ctx *c = p;
	for (long i = 0; i < iters; i++) {
		memcpy(c->dst, c->src, c->nbytes);
		__asm__ volatile("" ::"r"(c->dst) : "memory");
	}
}

int main(int argc, char **argv)
{
	double trial_ns = 100e6; /* 100 ms per trial */
	if (argc > 1 && strcmp(argv[1], "--quick") == 0)
		trial_ns = 10e6;
	static const size_t sizes[] = {0, 1024, 65536, 1 << 20, 16 << 20};
	struct tw_buf_pool_opts po;
	tw_buf_pool_opts_init(&po, sizeof(po));
	po.buf_size = 4096;
	po.count = 256;
	struct wire_ctx c = {0};
	tw_status s = tw_buf_pool_create(&po, &c.pool);
	if (s)
		die("pool", s);

	double small_total = 0;
	printf("%-12s %12s %12s %12s %14s %14s %12s\n", "tensor", "encode ns",
	       "decode ns", "enc+dec ns", "vs small call", "memcpy ns",
	       "memcpy/enc+dec");
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		tw_tensor t = {0};
		c.nbytes = sizes[k];
		build_call(&c.call, c.nbytes, &t);
		tw_frame_hdr h = {
			.type = TW_MSG_CALL, .req_id = 1, .src = 0, .dst = 1};
		tw_out_msg m;
		if ((s = tw_msg_encode(c.pool, &h, &c.call, &m)))
			die("encode", s);
		c.len = m.total_len;
		if ((s = tw_buf_alloc(c.len, &c.rx)))
			die("alloc", s);
		tw_out_msg_copy(&m, c.rx->data);
		tw_out_msg_release(&m);

		double enc = measure(run_encode, &c, trial_ns);
		double dec = measure(run_decode, &c, trial_ns);
		double total = enc + dec;
		if (k == 0)
			small_total = total;
		double mc = 0;
		if (c.nbytes) {
			c.src = t.data;
			c.dst = aligned_alloc(64, c.nbytes);
			memset(c.dst, 1,
			       c.nbytes); /* pre-faulted, as the anchor */
			mc = measure(run_memcpy, &c, trial_ns);
			free(c.dst);
		}
		char label[32];
		if (c.nbytes == 0)
			snprintf(label, sizeof(label), "none");
		else
			snprintf(label, sizeof(label), "%zu KiB",
				 c.nbytes / 1024);
		printf("%-12s %12.0f %12.0f %12.0f %13.2fx %14.0f %11.1fx\n",
		       label, enc, dec, total, total / small_total, mc,
		       mc ? mc / total : 0.0);
		printf("RESULT wire_call tensor_bytes=%zu encode_ns=%.0f decode_ns=%.0f "
		       "total_ns=%.0f ratio_to_small=%.2f memcpy_ns=%.0f "
		       "memcpy_over_total=%.2f frame_bytes=%zu\n",
		       c.nbytes, enc, dec, total, total / small_total, mc,
		       mc ? mc / total : 0.0, c.len);
		tw_buf_release(c.rx);
		tw_value_destroy(&c.call);
		tw_tensor_release(&t);
	}
	if ((s = tw_buf_pool_destroy(c.pool)))
		die("pool destroy", s);
	return 0;
}
