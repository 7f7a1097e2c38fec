/* Unit tests for rpc/auth.c: the secret's sources, the step encoding, and
 * the handshake against wrong secrets, replays, reflections and tampering. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tensorwire/status.h>

#include "rpc/auth.h"

static struct auth_key key(const char *s)
{
	struct auth_key k;
	cr_assert_eq(auth_key_load(s, NULL, &k), TW_OK);
	return k;
}

/* A full handshake between keys kc (client) and ks (server); returns the
 * first failure, TW_OK if both proved themselves. */
static tw_status run(const struct auth_key *kc, const struct auth_key *ks,
		     uint32_t client, uint32_t target, uint32_t server)
{
	struct auth_hs c, s;
	struct auth_msg hello, ch, pr;
	uint8_t wire[AUTH_MSG_SIZE];
	auth_client_start(&c, kc, AUTH_CTX_DATA, client, target, &hello);
	auth_msg_encode(&hello, wire);
	cr_assert_eq(auth_msg_decode(wire, sizeof(wire), &hello), TW_OK);
	tw_status st = auth_server_hello(&s, ks, AUTH_CTX_DATA, server, &hello,
					 &ch);
	if (st != TW_OK)
		return st;
	auth_msg_encode(&ch, wire);
	cr_assert_eq(auth_msg_decode(wire, sizeof(wire), &ch), TW_OK);
	st = auth_client_challenge(&c, &ch, &pr);
	if (st != TW_OK)
		return st;
	auth_msg_encode(&pr, wire);
	cr_assert_eq(auth_msg_decode(wire, sizeof(wire), &pr), TW_OK);
	st = auth_server_proof(&s, &pr);
	if (st == TW_OK)
		cr_assert_eq(s.client_id, client);
	return st;
}

Test(auth, same_secret_passes)
{
	struct auth_key a = key("s3cret"), b = key("s3cret");
	cr_assert_eq(run(&a, &b, 1, 2, 2), TW_OK);
	auth_key_free(&a);
	auth_key_free(&b);
}

Test(auth, no_secret_on_both_sides_passes)
{
	struct auth_key a = key(NULL), b = key(NULL);
	cr_assert_not(auth_key_set(&a));
	cr_assert_eq(run(&a, &b, 0, 1, 1), TW_OK);
}

Test(auth, wrong_or_missing_secret_fails_at_the_client_first)
{
	struct auth_key a = key("one"), b = key("two"), none = key(NULL);
	/* The server's MAC is checked by the client first: the client sends
	 * nothing past its HELLO to a server that cannot prove itself. */
	cr_assert_eq(run(&a, &b, 1, 2, 2), TW_EAUTH);
	cr_assert(strstr(tw_errmsg(TW_EAUTH), "secret") != NULL, "%s",
		  tw_errmsg(TW_EAUTH));
	cr_assert_eq(run(&none, &b, 1, 2, 2), TW_EAUTH);
	cr_assert_eq(run(&a, &none, 1, 2, 2), TW_EAUTH);
	auth_key_free(&a);
	auth_key_free(&b);
}

Test(auth, hello_for_another_worker_is_refused)
{
	struct auth_key a = key("k");
	cr_assert_eq(run(&a, &a, 1, 3, 2), TW_EAUTH);
	cr_assert(strstr(tw_errmsg(TW_EAUTH), "worker id 3") != NULL);
	auth_key_free(&a);
}

/* A recorded PROOF replayed against a new server challenge fails: the
 * server's nonce is new. */
Test(auth, replayed_proof_fails)
{
	struct auth_key k = key("k");
	struct auth_hs c, s, s2;
	struct auth_msg hello, ch, pr, ch2;
	auth_client_start(&c, &k, AUTH_CTX_DATA, 1, 0, &hello);
	cr_assert_eq(auth_server_hello(&s, &k, AUTH_CTX_DATA, 0, &hello, &ch),
		     TW_OK);
	cr_assert_eq(auth_client_challenge(&c, &ch, &pr), TW_OK);
	cr_assert_eq(auth_server_proof(&s, &pr), TW_OK);
	/* The attacker replays HELLO and PROOF on a new connection. */
	cr_assert_eq(auth_server_hello(&s2, &k, AUTH_CTX_DATA, 0, &hello, &ch2),
		     TW_OK);
	cr_assert_eq(auth_server_proof(&s2, &pr), TW_EAUTH);
	auth_key_free(&k);
}

/* The server's own MAC sent back as a PROOF does not pass: the roles are
 * in the MAC. Nor does a rendezvous transcript on a data connection. */
Test(auth, reflection_and_other_context_fail)
{
	struct auth_key k = key("k");
	struct auth_hs s;
	struct auth_msg hello = {0}, ch, pr;
	hello.step = AUTH_HELLO;
	hello.ctx = AUTH_CTX_DATA;
	hello.from = 1;
	hello.to = 0;
	cr_assert_eq(auth_server_hello(&s, &k, AUTH_CTX_DATA, 0, &hello, &ch),
		     TW_OK);
	pr = ch;
	pr.step = AUTH_PROOF;
	pr.from = 1;
	pr.to = 0;
	cr_assert_eq(auth_server_proof(&s, &pr), TW_EAUTH);

	hello.ctx = AUTH_CTX_RDV;
	cr_assert_eq(auth_server_hello(&s, &k, AUTH_CTX_DATA, 0, &hello, &ch),
		     TW_EPROTO);
	auth_key_free(&k);
}

Test(auth, tampered_challenge_and_steps_out_of_order_fail)
{
	struct auth_key k = key("k");
	struct auth_hs c, s;
	struct auth_msg hello, ch, pr;
	auth_client_start(&c, &k, AUTH_CTX_RDV, 4, AUTH_ID_RDV, &hello);
	cr_assert_eq(auth_server_hello(&s, &k, AUTH_CTX_RDV, AUTH_ID_RDV,
				       &hello, &ch),
		     TW_OK);
	struct auth_msg bad = ch;
	bad.nonce[0] ^= 1;
	cr_assert_eq(auth_client_challenge(&c, &bad, &pr), TW_EAUTH);
	/* Failed: the client takes nothing more. */
	cr_assert_eq(auth_client_challenge(&c, &ch, &pr), TW_EPROTO);
	/* A server given a PROOF before a HELLO refuses it. */
	struct auth_hs s2;
	cr_assert_eq(auth_server_hello(&s2, &k, AUTH_CTX_RDV, AUTH_ID_RDV, &ch,
				       &pr),
		     TW_EPROTO);
	auth_key_free(&k);
}

Test(auth, decode_refuses_malformed_steps)
{
	struct auth_msg m = {.step = AUTH_HELLO, .ctx = AUTH_CTX_DATA};
	uint8_t w[AUTH_MSG_SIZE + 1];
	auth_msg_encode(&m, w);
	cr_assert_eq(auth_msg_decode(w, AUTH_MSG_SIZE, &m), TW_OK);
	cr_assert_eq(auth_msg_decode(w, AUTH_MSG_SIZE - 1, &m), TW_EPROTO);
	cr_assert_eq(auth_msg_decode(w, AUTH_MSG_SIZE + 1, &m), TW_EPROTO);
	const int bytes[] = {0, 3, 4, 5, 6, 7};
	for (size_t i = 0; i < sizeof(bytes) / sizeof(bytes[0]); i++) {
		uint8_t x[AUTH_MSG_SIZE];
		memcpy(x, w, sizeof(x));
		x[bytes[i]] ^= 0x40;
		cr_assert_eq(auth_msg_decode(x, sizeof(x), &m), TW_EPROTO,
			     "byte %d", bytes[i]);
	}
}

Test(auth, secret_sources)
{
	struct auth_key k;
	char path[] = "/tmp/tw-auth-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "from-file\n", 10), 10);
	close(fd);
	chmod(path, 0600);
	cr_assert_eq(auth_key_load(NULL, path, &k), TW_OK);
	cr_assert_eq(k.len, 9);
	cr_assert_eq(memcmp(k.secret, "from-file", 9), 0);
	auth_key_free(&k);

	chmod(path, 0644);
	cr_assert_eq(auth_key_load(NULL, path, &k), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "chmod 600") != NULL);
	unlink(path);
	cr_assert_eq(auth_key_load(NULL, path, &k), TW_EIO);

	setenv("TW_SECRET", "env-secret", 1);
	cr_assert_eq(auth_key_load(NULL, NULL, &k), TW_OK);
	cr_assert_eq(k.len, 10);
	auth_key_free(&k);
	/* An option wins over the environment. */
	cr_assert_eq(auth_key_load("opt", NULL, &k), TW_OK);
	cr_assert_eq(k.len, 3);
	auth_key_free(&k);
	unsetenv("TW_SECRET");
	cr_assert_eq(auth_key_load(NULL, NULL, &k), TW_OK);
	cr_assert_eq(k.len, 0);

	char big[AUTH_SECRET_MAX + 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	cr_assert_eq(auth_key_load(big, NULL, &k), TW_EINVAL);
}

/* Set but empty is a mistake, not "no secret": refused every way. */
Test(auth, an_empty_secret_is_refused)
{
	struct auth_key k;
	cr_assert_eq(auth_key_load("", NULL, &k), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "empty") != NULL);
	setenv("TW_SECRET", "", 1);
	cr_assert_eq(auth_key_load(NULL, NULL, &k), TW_EINVAL);
	unsetenv("TW_SECRET");
	char path[] = "/tmp/tw-auth-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "\n", 1), 1);
	close(fd);
	chmod(path, 0600);
	cr_assert_eq(auth_key_load(NULL, path, &k), TW_EINVAL);
	unlink(path);
}
