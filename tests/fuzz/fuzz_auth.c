/* libFuzzer target for the connection handshake (rpc/auth.c, docs/wire.md
 * 5.1): auth_msg_decode on any bytes, and each side's state machine driven
 * by a sequence of fuzzed steps from a fuzzed peer. Never a crash, and
 * never a success without the right MAC: whenever a side reports TW_OK,
 * the MAC it accepted is recomputed here, independently, from the
 * transcript and the side's own key; after a success or a failure the side
 * accepts nothing more.
 *
 * Input: one control byte, then steps.
 *   ctrl bit 0-1  mode: 0 server (the input plays the client), 1 client
 *                 (the input plays the server), 2 both sides honest with
 *                 the input tampering with each step in transit, 3
 *                 auth_msg_decode of the rest (re-encoding must give it
 *                 back byte for byte)
 *   ctrl bit 2    the group has a secret (else the empty key)
 *   ctrl bit 3    rendezvous context (else data)
 *   ctrl bit 4    mode 2: the client holds the wrong key
 * A step: one op byte, then what it asks for.
 *   op bit 0-1    0: 80 raw bytes follow (fewer at the end of the input);
 *                 1: the honest next message with the right key;
 *                 2: the same with the wrong key (the empty one when the
 *                 group has a secret: "no secret");
 *                 3: the message the other side sent last (a reflection)
 *   op bit 4      an 80-byte XOR mask follows and is applied
 *   op bit 5      replay the previous step's bytes instead
 *   op bit 6      the next byte replaces the low byte of "from" (spoofing)
 * Nonces come from a deterministic generator reset per input, so runs
 * reproduce. Seeds: tests/fuzz/corpus/fuzz_auth (gen_corpus_auth.py). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "rpc/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "fuzz_auth:%d: %s\n", __LINE__, #c);   \
			abort();                                               \
		}                                                              \
	} while (0)

/* ---- deterministic nonces -------------------------------------------- */

static uint64_t rng_state;

static uint64_t splitmix(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static const char *rng_name(void)
{
	return "fuzz_auth";
}
static uint32_t rng_random(void)
{
	return (uint32_t)splitmix();
}
static void rng_buf(void *const buf, const size_t n)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)splitmix();
}

static struct randombytes_implementation rng_impl = {
	.implementation_name = rng_name,
	.random = rng_random,
	.stir = NULL,
	.uniform = NULL,
	.buf = rng_buf,
	.close = NULL,
};

static void init_once(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	CHECK(randombytes_set_implementation(&rng_impl) == 0);
	CHECK(sodium_init() >= 0);
}

/* ---- the oracle: MAC(r) recomputed from wire.md 5.1 -------------------- */

static void ref_mac(const struct auth_key *k, char role, uint8_t ctx,
		    uint32_t cid, uint32_t sid, const uint8_t nc[AUTH_NONCE],
		    const uint8_t ns[AUTH_NONCE], uint8_t out[AUTH_MAC])
{
	static const char label[] = "tensorwire auth v1"; /* + its NUL */
	uint8_t msg[sizeof(label) + 2 + 8 + 2 * AUTH_NONCE];
	size_t n = 0;
	memcpy(msg, label, sizeof(label));
	n += sizeof(label);
	msg[n++] = (uint8_t)role;
	msg[n++] = ctx;
	for (int i = 0; i < 4; i++)
		msg[n++] = (uint8_t)(cid >> (8 * i));
	for (int i = 0; i < 4; i++)
		msg[n++] = (uint8_t)(sid >> (8 * i));
	memcpy(msg + n, nc, AUTH_NONCE);
	n += AUTH_NONCE;
	memcpy(msg + n, ns, AUTH_NONCE);
	n += AUTH_NONCE;
	static const unsigned char none = 0;
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, k->len ? k->secret : &none, k->len);
	crypto_auth_hmacsha256_update(&st, msg, n);
	crypto_auth_hmacsha256_final(&st, out);
}

/* ---- input ----------------------------------------------------------- */

struct in {
	const uint8_t *p;
	size_t n;
};

static int take(struct in *in, uint8_t *out, size_t want)
{
	size_t k = in->n < want ? in->n : want;
	memcpy(out, in->p, k);
	in->p += k;
	in->n -= k;
	return (int)k;
}

static int byte(struct in *in, uint8_t *b)
{
	return take(in, b, 1) == 1;
}

static uint8_t secret_a[] = "fuzz group secret";
static uint8_t secret_b[] = "another secret";

/* Bytes of the next step in *msg (AUTH_MSG_SIZE unless raw input ran
 * short: *len). honest/wrong/other are the encodings this step may use. */
static int next_step(struct in *in, const uint8_t honest[AUTH_MSG_SIZE],
		     const uint8_t wrong[AUTH_MSG_SIZE],
		     const uint8_t other[AUTH_MSG_SIZE],
		     uint8_t prev[AUTH_MSG_SIZE], size_t *prev_len,
		     uint8_t *msg, size_t *len)
{
	uint8_t op;
	if (!byte(in, &op))
		return 0;
	*len = AUTH_MSG_SIZE;
	switch (op & 3) {
	case 0:
		*len = (size_t)take(in, msg, AUTH_MSG_SIZE);
		break;
	case 1:
		memcpy(msg, honest, AUTH_MSG_SIZE);
		break;
	case 2:
		memcpy(msg, wrong, AUTH_MSG_SIZE);
		break;
	default:
		memcpy(msg, other, AUTH_MSG_SIZE);
		break;
	}
	if (op & 0x10) {
		uint8_t mask[AUTH_MSG_SIZE] = {0};
		take(in, mask, AUTH_MSG_SIZE);
		for (size_t i = 0; i < *len; i++)
			msg[i] ^= mask[i];
	}
	if ((op & 0x20) && *prev_len > 0) {
		memcpy(msg, prev, *prev_len);
		*len = *prev_len;
	}
	uint8_t b;
	if ((op & 0x40) && *len >= 9 && byte(in, &b))
		msg[8] = b;
	memcpy(prev, msg, *len);
	*prev_len = *len;
	return 1;
}

static void encode(const struct auth_msg *m, uint8_t out[AUTH_MSG_SIZE])
{
	auth_msg_encode(m, out);
}

static struct auth_msg msg_of(uint8_t step, uint8_t ctx, uint32_t from,
			      uint32_t to, const uint8_t *nonce,
			      const uint8_t *mac)
{
	struct auth_msg m;
	memset(&m, 0, sizeof(m));
	m.step = step;
	m.ctx = ctx;
	m.from = from;
	m.to = to;
	if (nonce)
		memcpy(m.nonce, nonce, AUTH_NONCE);
	if (mac)
		memcpy(m.mac, mac, AUTH_MAC);
	return m;
}

/* ---- mode 0: the server, the input as its client ------------------------ */

static void run_server(struct in *in, const struct auth_key *k,
		       const struct auth_key *wk, uint8_t ctx)
{
	const uint32_t self = ctx == AUTH_CTX_RDV ? AUTH_ID_RDV : 0;
	const uint32_t cid = 1;
	uint8_t nc[AUTH_NONCE], ns[AUTH_NONCE] = {0};
	rng_buf(nc, sizeof(nc));
	struct auth_hs hs;
	memset(&hs, 0, sizeof(hs));
	int started = 0, done = 0, failed = 0;
	uint8_t last_sent[AUTH_MSG_SIZE] = {0}, prev[AUTH_MSG_SIZE];
	size_t prev_len = 0;
	uint32_t hello_from = 0;
	uint8_t hello_nc[AUTH_NONCE] = {0};
	for (int steps = 0; steps < 16; steps++) {
		uint8_t honest[AUTH_MSG_SIZE], wrong[AUTH_MSG_SIZE];
		uint8_t mac_r[AUTH_MAC], mac_w[AUTH_MAC];
		struct auth_msg m;
		if (!started) {
			m = msg_of(AUTH_HELLO, ctx, cid, self, nc, NULL);
			encode(&m, honest);
			encode(&m, wrong);
		} else {
			ref_mac(k, 'C', ctx, cid, self, nc, ns, mac_r);
			ref_mac(wk, 'C', ctx, cid, self, nc, ns, mac_w);
			m = msg_of(AUTH_PROOF, ctx, cid, self, NULL, mac_r);
			encode(&m, honest);
			m = msg_of(AUTH_PROOF, ctx, cid, self, NULL, mac_w);
			encode(&m, wrong);
		}
		uint8_t b[AUTH_MSG_SIZE];
		size_t n;
		if (!next_step(in, honest, wrong, last_sent, prev, &prev_len, b,
			       &n))
			break;
		struct auth_msg got;
		if (auth_msg_decode(b, n, &got) != TW_OK)
			break; /* the server closes the connection */
		tw_status st;
		if (!started) {
			struct auth_msg ch;
			st = auth_server_hello(&hs, k, ctx, self, &got, &ch);
			if (st != TW_OK) {
				CHECK(hs.next == 0);
				failed = 1;
				break;
			}
			CHECK(got.step == AUTH_HELLO && got.ctx == ctx &&
			      got.to == self);
			CHECK(ch.step == AUTH_CHALLENGE && ch.ctx == ctx &&
			      ch.from == self && ch.to == got.from);
			uint8_t want[AUTH_MAC];
			ref_mac(k, 'S', ctx, got.from, self, got.nonce,
				ch.nonce, want);
			CHECK(memcmp(want, ch.mac, AUTH_MAC) == 0);
			memcpy(ns, ch.nonce, AUTH_NONCE);
			hello_from = got.from;
			memcpy(hello_nc, got.nonce, AUTH_NONCE);
			encode(&ch, last_sent);
			started = 1;
		} else {
			st = auth_server_proof(&hs, &got);
			if (st == TW_OK) {
				/* success only with the right MAC over this
				 * very transcript */
				uint8_t want[AUTH_MAC];
				ref_mac(k, 'C', ctx, hello_from, self, hello_nc,
					ns, want);
				CHECK(!done && !failed);
				CHECK(got.step == AUTH_PROOF && got.ctx == ctx);
				CHECK(got.from == hello_from && got.to == self);
				CHECK(memcmp(want, got.mac, AUTH_MAC) == 0);
				CHECK(hs.client_id == hello_from);
				done = 1;
			} else {
				CHECK(hs.next == 0);
				failed = 1;
			}
		}
	}
	/* Once done or failed, nothing more is accepted. */
	if (done || failed) {
		struct auth_msg pr;
		uint8_t mac_r[AUTH_MAC];
		ref_mac(k, 'C', ctx, hello_from, self, hello_nc, ns, mac_r);
		pr = msg_of(AUTH_PROOF, ctx, hello_from, self, NULL, mac_r);
		CHECK(auth_server_proof(&hs, &pr) != TW_OK);
	}
}

/* ---- mode 1: the client, the input as its server ------------------------ */

static void run_client(struct in *in, const struct auth_key *k,
		       const struct auth_key *wk, uint8_t ctx)
{
	const uint32_t self = 1;
	const uint32_t peer = ctx == AUTH_CTX_RDV ? AUTH_ID_RDV : 0;
	struct auth_hs hs;
	struct auth_msg hello;
	auth_client_start(&hs, k, ctx, self, peer, &hello);
	CHECK(hello.step == AUTH_HELLO && hello.from == self &&
	      hello.to == peer);
	uint8_t ns[AUTH_NONCE];
	rng_buf(ns, sizeof(ns));
	uint8_t last_sent[AUTH_MSG_SIZE], prev[AUTH_MSG_SIZE];
	size_t prev_len = 0;
	encode(&hello, last_sent);
	int done = 0;
	for (int steps = 0; steps < 16; steps++) {
		uint8_t honest[AUTH_MSG_SIZE], wrong[AUTH_MSG_SIZE];
		uint8_t mac_r[AUTH_MAC], mac_w[AUTH_MAC];
		ref_mac(k, 'S', ctx, self, peer, hello.nonce, ns, mac_r);
		ref_mac(wk, 'S', ctx, self, peer, hello.nonce, ns, mac_w);
		struct auth_msg m = msg_of(AUTH_CHALLENGE, ctx, peer, self, ns,
					   mac_r);
		encode(&m, honest);
		m = msg_of(AUTH_CHALLENGE, ctx, peer, self, ns, mac_w);
		encode(&m, wrong);
		uint8_t b[AUTH_MSG_SIZE];
		size_t n;
		if (!next_step(in, honest, wrong, last_sent, prev, &prev_len, b,
			       &n))
			break;
		struct auth_msg got, proof;
		if (auth_msg_decode(b, n, &got) != TW_OK)
			break;
		tw_status st = auth_client_challenge(&hs, &got, &proof);
		if (st == TW_OK) {
			uint8_t want[AUTH_MAC];
			ref_mac(k, 'S', ctx, self, peer, hello.nonce, got.nonce,
				want);
			CHECK(!done);
			CHECK(got.step == AUTH_CHALLENGE && got.ctx == ctx);
			CHECK(got.from == peer && got.to == self);
			CHECK(memcmp(want, got.mac, AUTH_MAC) == 0);
			ref_mac(k, 'C', ctx, self, peer, hello.nonce, got.nonce,
				want);
			CHECK(proof.step == AUTH_PROOF && proof.from == self &&
			      proof.to == peer);
			CHECK(memcmp(want, proof.mac, AUTH_MAC) == 0);
			done = 1;
			encode(&proof, last_sent);
		} else {
			CHECK(hs.next == 0);
			done = 1; /* failed: nothing more may pass */
		}
	}
}

/* ---- mode 2: both honest, the input tampering in transit ---------------- */

static void tamper(struct in *in, uint8_t b[AUTH_MSG_SIZE])
{
	uint8_t op;
	if (!byte(in, &op) || op == 0)
		return;
	uint8_t mask[AUTH_MSG_SIZE] = {0};
	take(in, mask, AUTH_MSG_SIZE);
	for (size_t i = 0; i < AUTH_MSG_SIZE; i++)
		b[i] ^= mask[i];
}

static void run_both(struct in *in, const struct auth_key *k,
		     const struct auth_key *ck, uint8_t ctx)
{
	const uint32_t sid = ctx == AUTH_CTX_RDV ? AUTH_ID_RDV : 0;
	const uint32_t cid = 1;
	struct auth_hs c, s;
	struct auth_msg hello, ch, pr, got;
	uint8_t b[AUTH_MSG_SIZE];
	int clean = 1;
	auth_client_start(&c, ck, ctx, cid, sid, &hello);
	encode(&hello, b);
	uint8_t orig[AUTH_MSG_SIZE];
	memcpy(orig, b, sizeof(b));
	tamper(in, b);
	clean &= memcmp(orig, b, sizeof(b)) == 0;
	if (auth_msg_decode(b, sizeof(b), &got) != TW_OK) {
		CHECK(!clean);
		return;
	}
	if (auth_server_hello(&s, k, ctx, sid, &got, &ch) != TW_OK) {
		CHECK(!clean);
		return;
	}
	encode(&ch, b);
	memcpy(orig, b, sizeof(b));
	tamper(in, b);
	clean &= memcmp(orig, b, sizeof(b)) == 0;
	if (auth_msg_decode(b, sizeof(b), &got) != TW_OK) {
		CHECK(!clean);
		return;
	}
	tw_status cst = auth_client_challenge(&c, &got, &pr);
	/* With the same key and nothing changed, the handshake completes. */
	if (clean && ck == k)
		CHECK(cst == TW_OK);
	if (cst != TW_OK)
		return;
	CHECK(ck == k); /* another key never passes the server's MAC */
	/* The client accepted: the server's MAC was right for its key. */
	uint8_t want[AUTH_MAC];
	ref_mac(ck, 'S', ctx, cid, sid, hello.nonce, got.nonce, want);
	CHECK(memcmp(want, got.mac, AUTH_MAC) == 0);
	encode(&pr, b);
	memcpy(orig, b, sizeof(b));
	tamper(in, b);
	clean &= memcmp(orig, b, sizeof(b)) == 0;
	if (auth_msg_decode(b, sizeof(b), &got) != TW_OK) {
		CHECK(!clean);
		return;
	}
	tw_status sst = auth_server_proof(&s, &got);
	if (clean && ck == k)
		CHECK(sst == TW_OK);
	if (sst == TW_OK) {
		ref_mac(k, 'C', ctx, s.client_id, sid, s.nc, s.ns, want);
		CHECK(memcmp(want, got.mac, AUTH_MAC) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init_once();
	rng_state = 0x7477617574680000ull ^ size;
	if (size < 1)
		return 0;
	struct in in = {data + 1, size - 1};
	uint8_t ctrl = data[0];
	struct auth_key k = {0}, other = {0};
	if (ctrl & 4) {
		k.secret = secret_a;
		k.len = sizeof(secret_a) - 1;
		/* the wrong key: none at all */
	} else {
		other.secret = secret_b;
		other.len = sizeof(secret_b) - 1;
	}
	uint8_t ctx = (ctrl & 8) ? AUTH_CTX_RDV : AUTH_CTX_DATA;
	switch (ctrl & 3) {
	case 0:
		run_server(&in, &k, &other, ctx);
		break;
	case 1:
		run_client(&in, &k, &other, ctx);
		break;
	case 2:
		run_both(&in, &k, (ctrl & 0x10) ? &other : &k, ctx);
		break;
	default: {
		struct auth_msg m;
		if (auth_msg_decode(in.p, in.n, &m) == TW_OK) {
			uint8_t out[AUTH_MSG_SIZE];
			CHECK(in.n == AUTH_MSG_SIZE);
			auth_msg_encode(&m, out);
			CHECK(memcmp(out, in.p, AUTH_MSG_SIZE) == 0);
			CHECK(m.step >= AUTH_HELLO && m.step <= AUTH_PROOF);
			CHECK(m.ctx == AUTH_CTX_DATA || m.ctx == AUTH_CTX_RDV);
		}
		break;
	}
	}
	return 0;
}
