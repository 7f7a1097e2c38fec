/* Internal: proving that both ends of a connection belong to the group.
 *
 * A mutual challenge-response in three AUTH frames (docs/wire.md §5.1),
 * HMAC-SHA256 from libsodium keyed by the group's shared secret:
 *
 *   client -> server  HELLO      from, to, Nc
 *   server -> client  CHALLENGE  Ns, MAC(K, "S" | ctx | from | to | Nc | Ns)
 *   client -> server  PROOF      MAC(K, "C" | ctx | from | to | Nc | Ns)
 *
 * from is the client's worker id, to the id it means to reach (the server
 * refuses a HELLO meant for another). Each side's fresh 32-byte nonce makes
 * every transcript new: a recorded handshake replayed, or one side's MAC
 * reflected back, proves nothing. ctx keeps a rendezvous transcript from
 * passing on a data connection and back. The client checks the server's
 * MAC before it sends the PROOF or anything else, so a stranger posing as
 * a worker learns nothing but the HELLO.
 *
 * Without a secret the same exchange runs with an empty key: it proves
 * nothing about who is at the other end, but still binds the connection
 * to one worker id, and a worker with a secret refuses one without.
 */
#ifndef TW_RPC_AUTH_H
#define TW_RPC_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/status.h>

#define AUTH_NONCE 32
#define AUTH_MAC 32
/* Bytes of one encoded step: the AUTH frame's payload (a BYTES value). */
#define AUTH_MSG_SIZE 80
/* Longest secret, from an option, the environment or a file. */
#define AUTH_SECRET_MAX 4096
/* The rendezvous server's id in a handshake (workers are 0 .. 2^32 - 2). */
#define AUTH_ID_RDV UINT32_MAX

enum auth_step { AUTH_HELLO = 1, AUTH_CHALLENGE = 2, AUTH_PROOF = 3 };
enum auth_ctx { AUTH_CTX_DATA = 1, AUTH_CTX_RDV = 2 };

/* The group's secret (empty: none). */
struct auth_key {
	unsigned char *secret; /* owned, wiped on free */
	size_t len;
};

/*
 * Load the secret: secret if not NULL, else the file secret_file names,
 * else the environment (TW_SECRET, then TW_SECRET_FILE). A file's one
 * trailing newline is dropped; a file others can read or write (mode & 077)
 * is refused as ssh refuses a key, so is one over AUTH_SECRET_MAX bytes,
 * and an empty one given any of these ways (set but empty is a mistake,
 * not "none"). Nothing given at all is "no secret" (k->len == 0). TW_EINVAL / TW_EIO with a
 * reason, TW_ENOMEM.
 */
tw_status auth_key_load(const char *secret, const char *secret_file,
			struct auth_key *k);
void auth_key_free(struct auth_key *k);
static inline bool auth_key_set(const struct auth_key *k)
{
	return k != NULL && k->len > 0;
}

/* One step, decoded. */
struct auth_msg {
	uint8_t step; /* enum auth_step */
	uint8_t ctx;  /* enum auth_ctx */
	uint32_t from, to;
	uint8_t nonce[AUTH_NONCE]; /* HELLO: Nc, CHALLENGE: Ns, PROOF: 0 */
	uint8_t mac[AUTH_MAC];     /* HELLO: 0 */
};

/* "TWA", version 1, step, ctx, two zero bytes, from, to (u32 LE), nonce,
 * mac. */
void auth_msg_encode(const struct auth_msg *m, uint8_t out[AUTH_MSG_SIZE]);
/* TW_EPROTO with a reason unless p holds exactly one well-formed step. */
tw_status auth_msg_decode(const void *p, size_t n, struct auth_msg *m);

/* One side of a handshake. */
struct auth_hs {
	const struct auth_key *key;
	uint8_t ctx;
	bool client;
	uint8_t next; /* the step it waits for; 0 = done or failed */
	uint32_t client_id, server_id;
	uint8_t nc[AUTH_NONCE], ns[AUTH_NONCE];
};

/* Client: begin, as self, towards peer: *hello is what to send. */
void auth_client_start(struct auth_hs *hs, const struct auth_key *k,
		       uint8_t ctx, uint32_t self, uint32_t peer,
		       struct auth_msg *hello);

/* Server (self): a HELLO came; *challenge is the answer. The caller
 * checks that hello->from may connect (a member id) before it answers.
 * TW_EPROTO (not a HELLO, another ctx) or TW_EAUTH (meant for another
 * worker), with a reason. */
tw_status auth_server_hello(struct auth_hs *hs, const struct auth_key *k,
			    uint8_t ctx, uint32_t self,
			    const struct auth_msg *hello,
			    struct auth_msg *challenge);

/* Client: the CHALLENGE came. TW_OK once the server proved it knows the
 * secret: send *proof, then anything else. TW_EAUTH (wrong MAC: another
 * secret, or none) or TW_EPROTO, with a reason. */
tw_status auth_client_challenge(struct auth_hs *hs, const struct auth_msg *ch,
				struct auth_msg *proof);

/* Server: the PROOF came. TW_OK: the client is hs->client_id. TW_EAUTH or
 * TW_EPROTO, with a reason. */
tw_status auth_server_proof(struct auth_hs *hs, const struct auth_msg *pr);

#endif
