/* Writes the fuzz_rdv seed corpus: control-plane frames (JOINs, member
 * lists, SHUTDOWN rounds both ways, a few refused ones), each after the
 * byte that picks the world size. Usage: gen_corpus_rdv DIR (the
 * checked-in copy is tests/fuzz/corpus/fuzz_rdv). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

static const char *outdir;

static void check(tw_status st, const char *what)
{
	if (st != TW_OK) {
		fprintf(stderr, "gen_corpus_rdv: %s: %s\n", what,
			tw_status_name(st));
		exit(1);
	}
}

/* Write world byte + the frame of type with payload v (destroyed). */
static void save(const char *name, uint8_t world, unsigned type, tw_value v)
{
	tw_frame_hdr h = {.version = TW_FRAME_VERSION, .type = (uint8_t)type};
	tw_out_msg m;
	check(tw_msg_encode(NULL, &h, &v, &m), name);
	uint8_t *buf = malloc(m.total_len + 1);
	if (buf == NULL)
		exit(1);
	buf[0] = (uint8_t)(world - 1);
	tw_out_msg_copy(&m, buf + 1);
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL ||
	    fwrite(buf, 1, m.total_len + 1, f) != m.total_len + 1 ||
	    fclose(f) != 0) {
		fprintf(stderr, "gen_corpus_rdv: %s\n", path);
		exit(1);
	}
	free(buf);
	tw_out_msg_release(&m);
	tw_value_destroy(&v);
}

static tw_value str(const char *s)
{
	tw_value v;
	check(tw_value_cstring(&v, s), "string");
	return v;
}

static tw_value addrs(unsigned n)
{
	tw_value l;
	check(tw_value_list(&l, n), "list");
	for (unsigned i = 0; i < n; i++) {
		char a[32];
		snprintf(a, sizeof(a), "tcp://127.0.0.1:%u", 30000 + i);
		check(tw_value_set_item(&l, i, str(a)), "item");
	}
	return l;
}

/* A host identifier (16 bytes), distinct per seed. */
static tw_value host(unsigned seed)
{
	uint8_t h[16];
	for (unsigned i = 0; i < sizeof(h); i++)
		h[i] = (uint8_t)(seed * 37 + i);
	tw_value v;
	check(tw_value_bytes(&v, h, sizeof(h)), "host");
	return v;
}

static tw_value join(const char *name, int64_t rank, int64_t world, unsigned n)
{
	tw_value t;
	check(tw_value_tuple(&t, 6), "tuple");
	check(tw_value_set_item(&t, 0, str(name)), "name");
	check(tw_value_set_item(&t, 1, tw_value_int(rank)), "rank");
	check(tw_value_set_item(&t, 2, tw_value_int(world)), "world");
	check(tw_value_set_item(&t, 3, addrs(n)), "addrs");
	check(tw_value_set_item(&t, 4, host((unsigned)rank)), "host");
	/* odd ranks: same-host addresses too */
	check(tw_value_set_item(&t, 5, addrs(rank % 2 ? n : 0)), "laddrs");
	return t;
}

static tw_value members(unsigned world, const char *dup)
{
	tw_value l;
	check(tw_value_list(&l, world), "list");
	for (unsigned r = 0; r < world; r++) {
		tw_value t;
		char name[16];
		snprintf(name, sizeof(name), "w%u", r);
		check(tw_value_tuple(&t, 5), "tuple");
		check(tw_value_set_item(&t, 0, tw_value_int(r)), "rank");
		check(tw_value_set_item(&t, 1, str(dup && r ? dup : name)),
		      "name");
		check(tw_value_set_item(&t, 2, addrs(1 + r % 3)), "addrs");
		check(tw_value_set_item(&t, 3, host(r % 2)), "host");
		check(tw_value_set_item(&t, 4, addrs(r % 2 ? 1 + r % 3 : 0)),
		      "laddrs");
		check(tw_value_set_item(&l, r, t), "item");
	}
	return l;
}

static tw_value round_msg(int64_t round, int64_t active, int64_t events,
			  const tw_value *last)
{
	tw_value t;
	check(tw_value_tuple(&t, 4), "tuple");
	check(tw_value_set_item(&t, 0, tw_value_int(round)), "round");
	check(tw_value_set_item(&t, 1, tw_value_int(active)), "active");
	check(tw_value_set_item(&t, 2, tw_value_int(events)), "events");
	check(tw_value_set_item(&t, 3, *last), "last");
	return t;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus_rdv DIR\n");
		return 2;
	}
	outdir = argv[1];
	save("join-1", 2, TW_MSG_JOIN, join("w1", 1, 2, 1));
	save("join-3-loops", 4, TW_MSG_JOIN, join("trainer:3", 3, 4, 3));
	save("join-bad-name", 2, TW_MSG_JOIN, join("a b", 1, 2, 1));
	{ /* an address with a NUL inside: refused, not cut short */
		tw_value j = join("w1", 1, 2, 1), a;
		static const char nul[] = "tcp://127.0.0.1:1\0tcp://evil:2";
		check(tw_value_string(&a, nul, sizeof(nul) - 1), "string");
		check(tw_value_set_item(&j.u.items[3], 0, a), "item");
		save("addr-with-nul", 2, TW_MSG_JOIN, j);
	}
	{ /* a host identifier one byte short */
		tw_value j = join("w1", 1, 2, 1), h;
		check(tw_value_bytes(&h, "0123456789abcde", 15), "host");
		check(tw_value_set_item(&j, 4, h), "item");
		save("join-short-host", 2, TW_MSG_JOIN, j);
	}
	{ /* the host identifier as a string */
		tw_value j = join("w1", 1, 2, 1);
		check(tw_value_set_item(&j, 4, str("0123456789abcdef")),
		      "item");
		save("join-host-str", 2, TW_MSG_JOIN, j);
	}
	save("join-no-addrs", 2, TW_MSG_JOIN, join("w1", 1, 2, 0));
	save("join-not-tuple", 2, TW_MSG_JOIN, tw_value_int(7));
	save("members-2", 2, TW_MSG_JOIN, members(2, NULL));
	save("members-3", 3, TW_MSG_JOIN, members(3, NULL));
	save("members-dup", 3, TW_MSG_JOIN, members(3, "same"));
	save("members-short", 4, TW_MSG_JOIN, members(3, NULL));
	tw_value left = tw_value_int(1500);
	save("round-worker", 3, TW_MSG_SHUTDOWN, round_msg(2, 5, 77, &left));
	left = tw_value_int(-1);
	save("round-worker-nodeadline", 3, TW_MSG_SHUTDOWN,
	     round_msg(1, 0, 0, &left));
	tw_value gone;
	uint8_t bits = 0x4;
	check(tw_value_bytes(&gone, &bits, 1), "bytes");
	save("round-answer", 3, TW_MSG_SHUTDOWN, round_msg(3, 0, 12, &gone));
	left = tw_value_int(-7);
	save("round-bad", 3, TW_MSG_SHUTDOWN, round_msg(1, -1, 0, &left));
	save("none", 1, TW_MSG_SHUTDOWN, tw_value_none());
	return 0;
}
