/* Connection authentication: the shared secret and the three-step
 * handshake (auth.h), on libsodium's HMAC-SHA256. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "dataplane/err.h"
#include "rpc/auth.h"

#define LABEL "tensorwire auth v1"

static tw_status key_set(struct auth_key *k, const void *p, size_t n)
{
	k->secret = NULL;
	k->len = 0;
	if (n == 0)
		return TW_OK;
	k->secret = malloc(n);
	if (k->secret == NULL)
		return tw_fail_static(TW_ENOMEM, "secret: out of memory");
	memcpy(k->secret, p, n);
	k->len = n;
	return TW_OK;
}

static tw_status key_from_file(const char *path, struct auth_key *k)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tw_fail(TW_EIO, "secret file '%s': %s", path,
			       strerror(errno));
	struct stat sb;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return tw_fail(TW_EINVAL,
			       "secret file '%s': not a regular file", path);
	}
	if ((sb.st_mode & 077) != 0) {
		close(fd);
		return tw_fail(TW_EINVAL,
			       "secret file '%s': mode %03o lets others read "
			       "or change it (chmod 600)",
			       path, (unsigned)(sb.st_mode & 0777));
	}
	if (sb.st_size > AUTH_SECRET_MAX + 1) {
		close(fd);
		return tw_fail(TW_EINVAL, "secret file '%s': over %u bytes",
			       path, AUTH_SECRET_MAX);
	}
	unsigned char buf[AUTH_SECRET_MAX + 2];
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			sodium_memzero(buf, sizeof(buf));
			return tw_fail(TW_EIO, "secret file '%s': %s", path,
				       strerror(e));
		}
		if (r == 0 || (n += (size_t)r) == sizeof(buf))
			break;
	}
	close(fd);
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n == 0)
		return tw_fail(TW_EINVAL,
			       "secret file '%s' is empty (an empty secret is "
			       "no secret)",
			       path);
	if (n > AUTH_SECRET_MAX) {
		sodium_memzero(buf, sizeof(buf));
		return tw_fail(TW_EINVAL, "secret file '%s': over %u bytes",
			       path, AUTH_SECRET_MAX);
	}
	tw_status st = key_set(k, buf, n);
	sodium_memzero(buf, sizeof(buf));
	return st;
}

tw_status auth_key_load(const char *secret, const char *secret_file,
			struct auth_key *k)
{
	if (k == NULL)
		return tw_fail_static(TW_EINVAL, "auth_key_load: NULL key");
	k->secret = NULL;
	k->len = 0;
	if (sodium_init() < 0)
		return tw_fail_static(TW_EIO, "libsodium failed to start");
	const char *env;
	if (secret == NULL && secret_file == NULL) {
		if ((env = getenv("TW_SECRET")) != NULL)
			secret = env;
		else if ((env = getenv("TW_SECRET_FILE")) != NULL)
			secret_file = env;
	}
	if (secret != NULL) {
		size_t n = strlen(secret);
		if (n == 0)
			return tw_fail_static(
				TW_EINVAL,
				"secret: empty (an empty secret is no secret: "
				"unset it to run without one)");
		if (n > AUTH_SECRET_MAX)
			return tw_fail(TW_EINVAL, "secret: over %u bytes",
				       AUTH_SECRET_MAX);
		return key_set(k, secret, n);
	}
	if (secret_file != NULL)
		return key_from_file(secret_file, k);
	return TW_OK;
}

void auth_key_free(struct auth_key *k)
{
	if (k == NULL || k->secret == NULL)
		return;
	sodium_memzero(k->secret, k->len);
	free(k->secret);
	k->secret = NULL;
	k->len = 0;
}

/* ---- messages ---------------------------------------------------------- */

void auth_msg_encode(const struct auth_msg *m, uint8_t out[AUTH_MSG_SIZE])
{
	memset(out, 0, AUTH_MSG_SIZE);
	out[0] = 'T';
	out[1] = 'W';
	out[2] = 'A';
	out[3] = 1;
	out[4] = m->step;
	out[5] = m->ctx;
	uint32_t v = htole32(m->from);
	memcpy(out + 8, &v, 4);
	v = htole32(m->to);
	memcpy(out + 12, &v, 4);
	memcpy(out + 16, m->nonce, AUTH_NONCE);
	memcpy(out + 48, m->mac, AUTH_MAC);
}

tw_status auth_msg_decode(const void *p, size_t n, struct auth_msg *m)
{
	const uint8_t *b = p;
	if (n != AUTH_MSG_SIZE)
		return tw_fail(TW_EPROTO,
			       "auth: a handshake step is %u bytes, got %zu",
			       AUTH_MSG_SIZE, n);
	if (b[0] != 'T' || b[1] != 'W' || b[2] != 'A')
		return tw_fail_static(TW_EPROTO, "auth: bad magic");
	if (b[3] != 1)
		return tw_fail(TW_EPROTO,
			       "auth: handshake version %u not supported; "
			       "this worker speaks 1",
			       b[3]);
	if (b[4] < AUTH_HELLO || b[4] > AUTH_PROOF)
		return tw_fail(TW_EPROTO, "auth: unknown step %u", b[4]);
	if (b[5] != AUTH_CTX_DATA && b[5] != AUTH_CTX_RDV)
		return tw_fail(TW_EPROTO, "auth: unknown context %u", b[5]);
	if (b[6] != 0 || b[7] != 0)
		return tw_fail_static(TW_EPROTO, "auth: reserved bytes not 0");
	m->step = b[4];
	m->ctx = b[5];
	uint32_t v;
	memcpy(&v, b + 8, 4);
	m->from = le32toh(v);
	memcpy(&v, b + 12, 4);
	m->to = le32toh(v);
	memcpy(m->nonce, b + 16, AUTH_NONCE);
	memcpy(m->mac, b + 48, AUTH_MAC);
	return TW_OK;
}

/* ---- the handshake ------------------------------------------------------ */

static void mac(const struct auth_hs *hs, char role, uint8_t out[AUTH_MAC])
{
	static const unsigned char none = 0;
	crypto_auth_hmacsha256_state st;
	const struct auth_key *k = hs->key;
	crypto_auth_hmacsha256_init(&st, k->len ? k->secret : &none, k->len);
	unsigned char head[sizeof(LABEL) + 2 + 8];
	memcpy(head, LABEL, sizeof(LABEL)); /* with its NUL */
	head[sizeof(LABEL)] = (unsigned char)role;
	head[sizeof(LABEL) + 1] = hs->ctx;
	uint32_t v = htole32(hs->client_id);
	memcpy(head + sizeof(LABEL) + 2, &v, 4);
	v = htole32(hs->server_id);
	memcpy(head + sizeof(LABEL) + 6, &v, 4);
	crypto_auth_hmacsha256_update(&st, head, sizeof(head));
	crypto_auth_hmacsha256_update(&st, hs->nc, AUTH_NONCE);
	crypto_auth_hmacsha256_update(&st, hs->ns, AUTH_NONCE);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

static void msg_init(struct auth_msg *m, const struct auth_hs *hs, uint8_t step)
{
	memset(m, 0, sizeof(*m));
	m->step = step;
	m->ctx = hs->ctx;
	m->from = hs->client ? hs->client_id : hs->server_id;
	m->to = hs->client ? hs->server_id : hs->client_id;
}

static tw_status expect(struct auth_hs *hs, const struct auth_msg *m,
			uint8_t step)
{
	static const char *const names[] = {"?", "HELLO", "CHALLENGE", "PROOF"};
	if (hs->next != step || m->step != step) {
		hs->next = 0;
		return tw_fail(TW_EPROTO, "auth: expected %s, got %s",
			       names[step],
			       m->step <= AUTH_PROOF ? names[m->step] : "?");
	}
	if (m->ctx != hs->ctx) {
		hs->next = 0;
		return tw_fail_static(TW_EPROTO,
				      "auth: handshake of another kind of "
				      "connection");
	}
	return TW_OK;
}

void auth_client_start(struct auth_hs *hs, const struct auth_key *k,
		       uint8_t ctx, uint32_t self, uint32_t peer,
		       struct auth_msg *hello)
{
	memset(hs, 0, sizeof(*hs));
	hs->key = k;
	hs->ctx = ctx;
	hs->client = true;
	hs->client_id = self;
	hs->server_id = peer;
	randombytes_buf(hs->nc, AUTH_NONCE);
	hs->next = AUTH_CHALLENGE;
	msg_init(hello, hs, AUTH_HELLO);
	memcpy(hello->nonce, hs->nc, AUTH_NONCE);
}

tw_status auth_server_hello(struct auth_hs *hs, const struct auth_key *k,
			    uint8_t ctx, uint32_t self,
			    const struct auth_msg *hello,
			    struct auth_msg *challenge)
{
	memset(hs, 0, sizeof(*hs));
	hs->key = k;
	hs->ctx = ctx;
	hs->server_id = self;
	hs->next = AUTH_HELLO;
	tw_status st = expect(hs, hello, AUTH_HELLO);
	if (st != TW_OK)
		return st;
	if (hello->to != self) {
		hs->next = 0;
		return tw_fail(TW_EAUTH,
			       "auth: the peer meant to reach worker id %u, "
			       "this is %u",
			       hello->to, self);
	}
	hs->client_id = hello->from;
	memcpy(hs->nc, hello->nonce, AUTH_NONCE);
	randombytes_buf(hs->ns, AUTH_NONCE);
	msg_init(challenge, hs, AUTH_CHALLENGE);
	memcpy(challenge->nonce, hs->ns, AUTH_NONCE);
	mac(hs, 'S', challenge->mac);
	hs->next = AUTH_PROOF;
	return TW_OK;
}

static tw_status bad_mac(struct auth_hs *hs, const char *who)
{
	hs->next = 0;
	return tw_fail(TW_EAUTH,
		       "authentication failed: %s does not know this "
		       "group's secret%s",
		       who,
		       auth_key_set(hs->key) ? " (or has none)"
					     : " (this worker has none set)");
}

tw_status auth_client_challenge(struct auth_hs *hs, const struct auth_msg *ch,
				struct auth_msg *proof)
{
	tw_status st = expect(hs, ch, AUTH_CHALLENGE);
	if (st != TW_OK)
		return st;
	if (ch->from != hs->server_id || ch->to != hs->client_id) {
		hs->next = 0;
		return tw_fail(TW_EAUTH,
			       "auth: challenge from id %u to %u, expected "
			       "%u to %u",
			       ch->from, ch->to, hs->server_id, hs->client_id);
	}
	memcpy(hs->ns, ch->nonce, AUTH_NONCE);
	uint8_t want[AUTH_MAC];
	mac(hs, 'S', want);
	if (sodium_memcmp(want, ch->mac, AUTH_MAC) != 0)
		return bad_mac(hs, "the server");
	msg_init(proof, hs, AUTH_PROOF);
	mac(hs, 'C', proof->mac);
	hs->next = 0;
	return TW_OK;
}

tw_status auth_server_proof(struct auth_hs *hs, const struct auth_msg *pr)
{
	tw_status st = expect(hs, pr, AUTH_PROOF);
	if (st != TW_OK)
		return st;
	if (pr->from != hs->client_id || pr->to != hs->server_id) {
		hs->next = 0;
		return tw_fail(TW_EAUTH,
			       "auth: proof from id %u to %u, expected %u to "
			       "%u",
			       pr->from, pr->to, hs->client_id, hs->server_id);
	}
	uint8_t want[AUTH_MAC];
	mac(hs, 'C', want);
	if (sodium_memcmp(want, pr->mac, AUTH_MAC) != 0)
		return bad_mac(hs, "the client");
	hs->next = 0;
	return TW_OK;
}
