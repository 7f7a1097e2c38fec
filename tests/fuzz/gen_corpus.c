/* Writes the fuzz_decode seed corpus: small valid frames of every message
 * type and value kind, and a few invalid ones near the edges of validity.
 * Usage: gen_corpus DIR (the checked-in copy is tests/fuzz/corpus/fuzz_decode). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

static const char *outdir;
static unsigned written;

static void die(const char *what)
{
	fprintf(stderr, "gen_corpus: %s\n", what);
	exit(1);
}

static void check(tw_status st, const char *what)
{
	if (st != TW_OK) {
		fprintf(stderr, "gen_corpus: %s: %s\n", what,
			tw_status_name(st));
		exit(1);
	}
}

static void save(const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0)
		die(path);
	written++;
}

/* Encode and return the linear frame (caller frees); *len its size. */
static uint8_t *frame_flags(unsigned type, unsigned flags, const tw_value *v,
			    size_t *len)
{
	tw_frame_hdr h = {.type = (uint8_t)type,
			  .flags = (uint16_t)flags,
			  .req_id = 1,
			  .src = 1,
			  .dst = 2};
	tw_out_msg m;
	uint8_t *p;

	check(tw_msg_encode(NULL, &h, v, &m), "encode");
	p = malloc((size_t)m.total_len);
	if (p == NULL)
		die("out of memory");
	tw_out_msg_copy(&m, p);
	*len = (size_t)m.total_len;
	tw_out_msg_release(&m);
	return p;
}

static uint8_t *frame(unsigned type, const tw_value *v, size_t *len)
{
	return frame_flags(type, 0, v, len);
}

static void save_frame(const char *name, unsigned type, tw_value v)
{
	size_t n;
	uint8_t *p = frame(type, &v, &n);

	save(name, p, n);
	free(p);
	tw_value_destroy(&v);
}

static tw_value str(const char *s)
{
	tw_value v;
	check(tw_value_cstring(&v, s), "string");
	return v;
}

static tw_value tensor(tw_dtype dt, unsigned ndim, const int64_t *shape,
		       const int64_t *strides)
{
	tw_tensor t;
	tw_value v;
	size_t span;

	check(tw_tensor_alloc(&t, dt, ndim, shape), "tensor");
	if (strides)
		memcpy(t.strides, strides, ndim * sizeof(*strides));
	check(tw_tensor_span(&t, &span), "span");
	for (size_t i = 0; i < span; i++)
		((uint8_t *)t.data)[i] = (uint8_t)(dt == TW_BOOL ? i & 1
								 : i * 3);
	check(tw_value_tensor(&v, &t), "tensor value");
	tw_tensor_release(&t);
	return v;
}

static tw_value tuple(unsigned n, const tw_value *items)
{
	tw_value v;

	check(tw_value_tuple(&v, n), "tuple");
	for (unsigned i = 0; i < n; i++)
		check(tw_value_set_item(&v, i, items[i]), "set item");
	return v;
}

static tw_value list2(tw_value a, tw_value b)
{
	tw_value v;

	check(tw_value_list(&v, 2), "list");
	check(tw_value_set_item(&v, 0, a), "set item");
	check(tw_value_set_item(&v, 1, b), "set item");
	return v;
}

static tw_value dict1(const char *k, tw_value val)
{
	tw_value d;

	check(tw_value_dict(&d, 1), "dict");
	check(tw_value_dict_set(&d, 0, k, val), "dict set");
	return d;
}

static tw_value empty_dict(void)
{
	tw_value d;
	check(tw_value_dict(&d, 0), "dict");
	return d;
}

static tw_value call(const char *fn, tw_value args, tw_value kw)
{
	return tuple(3, (tw_value[]){str(fn), args, kw});
}

int main(int argc, char **argv)
{
	static const int64_t s4[1] = {4}, s23[2] = {2, 3}, s32[2] = {3, 2},
			     st[2] = {1, 3}, s0[2] = {0, 5}, sb[2] = {3, 4},
			     sbs[2] = {0, 1};
	tw_rref_id id = {.owner = 2,
			 .rref = {.created_on = 2, .local_id = 9},
			 .fork = {.created_on = 1, .local_id = 4}};
	tw_value v, r;
	size_t n;
	uint8_t *p;

	if (argc != 2)
		die("usage: gen_corpus DIR");
	outdir = argv[1];

	/* ---- valid ---- */
	save_frame("ok-ack", TW_MSG_ACK, tw_value_none());
	save_frame("ok-ret-int", TW_MSG_RET, tw_value_int(-123456789));
	save_frame("ok-ret-double", TW_MSG_RET, tw_value_double(-0.5));
	save_frame("ok-ret-string", TW_MSG_RET,
		   str("h\xc3\xa9llo \xf0\x9f\x98\x80"));
	check(tw_value_bytes(&v, "\x00\x01\xff", 3), "bytes");
	save_frame("ok-ret-bytes", TW_MSG_RET, v);
	save_frame("ok-call-empty", TW_MSG_CALL,
		   call("mod.fn", tuple(0, NULL), empty_dict()));
	save_frame("ok-call-tensors", TW_MSG_CALL,
		   call("aten::add",
			tuple(3, (tw_value[]){tensor(TW_FLOAT32, 1, s4, NULL),
					      tensor(TW_INT8, 2, s32, st),
					      tw_value_int(2)}),
			dict1("alpha", tensor(TW_INT16, 0, NULL, NULL))));
	{
		/* Distributed autograd: a CALL in an envelope (the second
		 * tensor requires grad), a backward, a cleanup. */
		uint8_t mask = 0x2;
		tw_ag_meta meta = {.context_id = (INT64_C(1) << 48) | 5,
				   .message_id = (INT64_C(1) << 48) | 6,
				   .grad_mask = &mask,
				   .mask_len = 1};
		tw_value c = call(
			"tw::py",
			tuple(2, (tw_value[]){tensor(TW_FLOAT32, 1, s4, NULL),
					      tensor(TW_FLOAT64, 1, s4, NULL)}),
			empty_dict());
		tw_value items[4];
		tw_value env = tw_msg_ag_wrap(&meta, &c, items);
		p = frame_flags(TW_MSG_CALL, TW_FRAME_F_AUTOGRAD, &env, &n);
		save("ok-ag-call", p, n);
		free(p);
		tw_value_destroy(&c);
		save_frame("ok-ag-backward", TW_MSG_AG_BACKWARD,
			   tuple(4, (tw_value[]){tw_value_int(meta.context_id),
						 tw_value_int(meta.message_id),
						 list2(tensor(TW_FLOAT32, 1, s4,
							      NULL),
						       tw_value_none()),
						 tw_value_bool(false)}));
		save_frame("ok-ag-cleanup", TW_MSG_AG_CLEANUP,
			   tw_value_int(meta.context_id));
	}
	save_frame("ok-ret-every-dtype", TW_MSG_RET,
		   tuple(10, (tw_value[]){tensor(TW_BOOL, 2, s23, NULL),
					  tensor(TW_UINT8, 2, s23, NULL),
					  tensor(TW_INT8, 2, s23, NULL),
					  tensor(TW_INT16, 2, s23, NULL),
					  tensor(TW_INT32, 2, s23, NULL),
					  tensor(TW_INT64, 2, s23, NULL),
					  tensor(TW_FLOAT16, 2, s23, NULL),
					  tensor(TW_BFLOAT16, 2, s23, NULL),
					  tensor(TW_FLOAT32, 2, s23, NULL),
					  tensor(TW_FLOAT64, 2, s23, NULL)}));
	save_frame("ok-ret-empty-and-broadcast", TW_MSG_RET,
		   tuple(2, (tw_value[]){tensor(TW_FLOAT64, 2, s0, NULL),
					 tensor(TW_FLOAT32, 2, sb, sbs)}));
	check(tw_value_rref(&r, &id), "rref");
	save_frame("ok-remote-ret", TW_MSG_REMOTE_RET, r);
	check(tw_value_rref(&r, &id), "rref");
	save_frame("ok-remote-call", TW_MSG_REMOTE_CALL,
		   tuple(4, (tw_value[]){
				    str("m.f"),
				    tuple(1, (tw_value[]){tw_value_bool(true)}),
				    empty_dict(), r}));
	check(tw_value_rref(&r, &id), "rref");
	save_frame("ok-fork-request", TW_MSG_RREF_FORK_REQUEST,
		   tuple(2, (tw_value[]){r, tw_value_int(3)}));
	check(tw_value_error(&v, TW_EVALUE, 2, "bad value"), "error");
	save_frame("ok-exception", TW_MSG_EXCEPTION, v);
	{
		tw_value d, l;
		char key[16];

		check(tw_value_dict(&d, 12), "dict");
		for (unsigned i = 0; i < 12; i++) {
			snprintf(key, sizeof(key), "k%u", i);
			check(tw_value_dict_set(&d, i, key, tw_value_int(i)),
			      "set");
		}
		save_frame("ok-ret-dict12", TW_MSG_RET, d);
		v = tw_value_none();
		for (unsigned i = 0; i < 20; i++) {
			check(tw_value_list(&l, 1), "list");
			check(tw_value_set_item(&l, 0, v), "set");
			v = l;
		}
		save_frame("ok-ret-nested20", TW_MSG_RET, v);
	}

	/* ---- invalid: one fault each, near valid frames ---- */
	check(tw_value_cstring(&v, "x"), "string");
	p = frame(TW_MSG_RET, &v, &n);
	tw_value_destroy(&v);
	p[0] ^= 1;
	save("bad-magic", p, n);
	p[0] ^= 1;
	p[4] = 2;
	save("bad-version-2", p, n);
	p[4] = 1;
	save("bad-truncated", p, n - 1);
	p[48 + 2] = 0xff; /* "x" -> invalid UTF-8 */
	save("bad-utf8", p, n);
	free(p);

	static const uint8_t dup[] = {0x09, 0x02, 0x01, 'a', 0,
				      0x00, 0x01, 'a',  0,   0x00};
	static const uint8_t overlong[] = {0x02, 0x80, 0x00};
	static const uint8_t bomb[] = {0x07, 0x80, 0x80, 0x80,
				       0x80, 0x08, 0x00};
	static const uint8_t bool2[] = {0x01, 0x02};
	static const struct {
		const char *name;
		const uint8_t *p;
		size_t n;
	} raw[] = {
		{"bad-dict-dup", dup, sizeof(dup)},
		{"bad-overlong-varint", overlong, sizeof(overlong)},
		{"bad-count-bomb", bomb, sizeof(bomb)},
		{"bad-bool-2", bool2, sizeof(bool2)},
	};
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		uint8_t f[64] = {0};
		tw_frame_hdr h = {.version = 1,
				  .type = TW_MSG_RET,
				  .req_id = 1,
				  .payload_len = (uint32_t)raw[i].n,
				  .total_len = 48 + raw[i].n};
		tw_frame_hdr_encode(f, &h);
		memcpy(f + 48, raw[i].p, raw[i].n);
		save(raw[i].name, f, 48 + raw[i].n);
	}
	{
		/* 65 nested lists: one past the depth limit */
		uint8_t f[48 + 2 * 65 + 1];
		tw_frame_hdr h = {.version = 1,
				  .type = TW_MSG_RET,
				  .req_id = 1,
				  .payload_len = 2 * 65 + 1,
				  .total_len = sizeof(f)};
		tw_frame_hdr_encode(f, &h);
		for (unsigned i = 0; i < 65; i++) {
			f[48 + 2 * i] = TW_KIND_LIST;
			f[48 + 2 * i + 1] = 1;
		}
		f[sizeof(f) - 1] = TW_KIND_NONE;
		save("bad-depth-65", f, sizeof(f));
	}
	{
		/* two tensors naming segment 0 */
		tw_value l = tuple(2,
				   (tw_value[]){tensor(TW_UINT8, 1, s4, NULL),
						tensor(TW_UINT8, 1, s4, NULL)});
		p = frame(TW_MSG_RET, &l, &n);
		tw_value_destroy(&l);
		/* payload: 08 02 | 06 01 01 04 01 04 00 | 06 01 01 04 01 04 01 */
		p[48 + 16 + 2 + 7 + 6] = 0;
		save("bad-segment-twice", p, n);
		free(p);
	}
	printf("gen_corpus: wrote %u files to %s\n", written, outdir);
	return 0;
}
