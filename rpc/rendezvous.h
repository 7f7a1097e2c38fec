/* Internal: rendezvous and shutdown barrier (the control plane), after
 * torch's TCPStore: rank 0 hosts a small server thread, every rank joins
 * over plain blocking TCP with poll() deadlines, tensorwire frames on the
 * wire. The control connection stays open until shutdown: rank 0 tells
 * the members over it who is gone (rdv_watch). */
#ifndef TW_RPC_RENDEZVOUS_H
#define TW_RPC_RENDEZVOUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How much sooner than its own deadline a member asks rank 0 to answer a
 * barrier round (naming the busy workers), so the answer arrives within
 * the member's deadline on a loaded host. */
#define RDV_ANSWER_GRACE_NS (200u * 1000000u)

#include <tensorwire/agent.h>
#include <tensorwire/status.h>
#include <tensorwire/value.h>

/* Most loops a worker may announce. */
#define RDV_MAX_LOOPS 256u

/* Bytes of a host identifier. */
#define RDV_HOST_ID_LEN 16

/* What a worker announces and learns about every other one. */
struct rdv_member {
	uint32_t rank;
	uint32_t nloops;
	char name[TW_WORKER_NAME_MAX];
	char (*addrs)[TW_ADDR_MAX]; /* nloops entries, owned; with
				     * local_addrs 2 * nloops: then
				     * addrs[nloops + i] is loop i's address
				     * for workers on its host (the same-host
				     * transport's) */
	bool local_addrs;
	/* The kernel it runs on (rdv_host_id): equal for workers in other
	 * network namespaces and containers of one machine, whatever their
	 * addresses. */
	uint8_t host[RDV_HOST_ID_LEN];
	bool host_known; /* false: announced none (an older worker) */
};

/* This host's identifier: the kernel's boot id
 * (/proc/sys/kernel/random/boot_id), the same in every network namespace
 * and container it runs; random bytes (this worker alone on its "host")
 * when it cannot be read. The same for the process's life. */
void rdv_host_id(uint8_t out[RDV_HOST_ID_LEN]);

/* What a worker announces as its host: BLAKE2b-128 over the group's
 * secret and the boot id, so members learn which of them share a kernel,
 * and nothing else (not the boot id, which would tell an onlooker of the
 * JOIN more); the boot id itself without a secret. Never decides
 * anything about trust: only congestion control and which transport to
 * try first. */
struct auth_key;
void rdv_host_id_for(const struct auth_key *k, uint8_t out[RDV_HOST_ID_LEN]);

/* Loop i's same-host address, or NULL when m announced none. */
static inline const char *rdv_local_addr(const struct rdv_member *m, uint32_t i)
{
	return m->local_addrs && m->addrs != NULL && i < m->nloops
		       ? m->addrs[m->nloops + i]
		       : NULL;
}

struct rdv_server;
struct rdv_client;
struct auth_key;

/*
 * What a peer can make the control plane hold (docs/wire.md, "The control
 * plane"). Frames are read into memory only after their header passed
 * these bounds; a connection over one is refused and closed.
 */
/* Any frame but an authenticated JOIN or a member list: AUTH steps,
 * SHUTDOWN rounds, refusals. */
#define RDV_FRAME_SMALL 4096u
/* An authenticated JOIN: a name under TW_WORKER_NAME_MAX and RDV_MAX_LOOPS
 * addresses under TW_ADDR_MAX fit (test_rendezvous checks the largest). */
#define RDV_JOIN_MAX (64u << 10)
/* A member list, as a client accepts it from an authenticated server. */
#define RDV_LIST_MAX(world)                                                    \
	((uint64_t)RDV_FRAME_SMALL + (uint64_t)(world)*RDV_JOIN_MAX)

/* Rank 0's server: connections not yet joined (authenticating or
 * authenticated without their JOIN), their deadline from accept to JOIN,
 * and the pause after accept(2) fails for want of descriptors or memory. */
struct rdv_limits {
	uint32_t max_pending;      /* default 64 */
	int64_t handshake_ms;      /* default 5000 */
	int64_t accept_backoff_ms; /* default 100 */
	uint32_t vanish_ms;        /* RDV_VANISH_MS (tune_socket) */
};
#define RDV_MAX_PENDING 64u
#define RDV_HANDSHAKE_MS 5000
#define RDV_ACCEPT_BACKOFF_MS 100
/* Once every rank has joined, the member list waits this long and checks
 * again that no member's connection closed meanwhile. */
#define RDV_ANNOUNCE_GRACE_MS 20
/* A control connection whose peer's host vanished fails within this
 * (tw_agent_opts.control_timeout_ms's default). */
#define RDV_VANISH_MS 30000

struct rdv_client;
/* Liveness of c's control connection: its peer's host vanishing fails it
 * within ms (keepalive and TCP_USER_TIMEOUT; at least 1000). */
void rdv_client_set_vanish(struct rdv_client *c, uint32_t ms);

/* What rank 0's server refused or dropped, by cause (any thread). */
struct rdv_server_stats {
	uint64_t auth_failed; /* handshakes failed (wrong secret, bad step) */
	uint64_t refused;     /* JOINs refused (taken rank or name, ...) */
	uint64_t oversize;    /* frames over their bound */
	uint64_t timed_out;   /* connections past the handshake deadline */
	uint64_t over_cap;    /* connections closed at once: too many pending */
	uint64_t accept_errors; /* accept(2) failures that paused accepting */
	uint64_t gone;          /* members gone before the list went out */
};

/*
 * Rank 0: listen on url ("tcp://host:port") and serve joins for a group of
 * world workers until timeout_ms passes (then the joined ones get a
 * TW_ETIMEDOUT exception), then the shutdown barrier's rounds. Every
 * connection authenticates first (auth.h, ctx AUTH_CTX_RDV, the server's id
 * AUTH_ID_RDV) with key (kept, not copied: it outlives the server; an
 * empty key runs the same exchange), and may then JOIN as the id it proved
 * only. lim NULL = the defaults above. TW_EINVAL for a bad url, TW_EIO when
 * the address cannot be bound, TW_ENOMEM; each with its reason
 * (tw_errmsg).
 */
tw_status rdv_server_start(const char *url, uint32_t world, int64_t timeout_ms,
			   const struct auth_key *key,
			   const struct rdv_limits *lim,
			   struct rdv_server **out);

/* Stop the server thread (closing every control connection) and free. */
void rdv_server_stop(struct rdv_server *s);

void rdv_server_stats(struct rdv_server *s, struct rdv_server_stats *out);

/*
 * Join: connect to url (retrying until the deadline, since rank 0 may start
 * later), authenticate as self->rank with key (the server proves it knows
 * the key before anything else is sent), announce self, wait for the
 * member list (world entries indexed by rank, freed with
 * rdv_members_free). TW_EAUTH when either side does not know the other's
 * key, TW_EINVAL when rank 0 refused us (its reason becomes ours),
 * TW_ETIMEDOUT, TW_EIO, TW_EPROTO, TW_ENOMEM; each with its reason
 * (tw_errmsg).
 */
tw_status rdv_join(const char *url, const struct auth_key *key,
		   const struct rdv_member *self, uint32_t world,
		   int64_t timeout_ms, struct rdv_client **out,
		   struct rdv_member **members);

void rdv_members_free(struct rdv_member *m, uint32_t n);

/*
 * One round of the shutdown barrier (docs/wire.md): tell rank 0 this
 * worker's count of active calls and of calls ever started or accepted
 * (mine), wait until every live worker has sent its own for this round,
 * and learn the sums (*total). deadline_ns (tw_now_ns() clock; UINT64_MAX =
 * none) bounds the whole wait: rank 0 is told how much is left and, a
 * little before, answers TW_ETIMEDOUT naming the workers it has not heard
 * from (their names and ids, in tw_errmsg); if rank 0 says nothing either,
 * TW_ETIMEDOUT saying so. TW_EUNREACHABLE when the control connection
 * broke (rank 0 gone), TW_EPROTO. idle (NULL = block in poll) is for a
 * thread that must keep working meanwhile (an embedded agent's owner
 * serving calls): never blocks, calls idle(arg) between looks at the
 * connection; idle bounds its own time.
 */
struct rdv_count {
	uint64_t active; /* outgoing calls in flight + incoming unanswered */
	uint64_t events; /* calls started + calls accepted, ever */
};
tw_status rdv_barrier_round(struct rdv_client *c, struct rdv_count mine,
			    uint64_t deadline_ns, void (*idle)(void *arg),
			    void *arg, struct rdv_count *total);

/* One round with nothing active: TW_OK once every live worker sent its
 * round (timeout_ms < 0: no limit), else as rdv_barrier_round. */
tw_status rdv_barrier(struct rdv_client *c, int64_t timeout_ms);

/* Whether rank 0's last barrier answer said that rank has left (its
 * control connection closed after the group formed). */
bool rdv_member_gone(const struct rdv_client *c, uint32_t rank);

/*
 * Members that die (docs/architecture.md, "Members that die"): once the
 * group formed, rank 0 tells every member still connected whenever a
 * member's control connection closes (a JOIN carrying the gone bitmap,
 * docs/wire.md). rdv_watch reads what rank 0 sent so far without
 * blocking and copies into gone ((world + 7) / 8 bytes, bit r of byte
 * r / 8) every rank rank 0 has said is gone. TW_OK; TW_EBUSY when the
 * shutdown barrier is reading the connection (gone untouched: look again
 * later); TW_EUNREACHABLE once the connection closed (rank 0 left, or its
 * host vanished: RDV_VANISH_MS); TW_EPROTO (with a reason) for a frame
 * that is not such a notice, after which nothing more is read. gone is
 * filled but for TW_EBUSY. One thread at a time with the barrier's rounds
 * (a lock, which rdv_watch only tries).
 */
tw_status rdv_watch(struct rdv_client *c, uint8_t *gone);

/* The control connection's socket, for a caller that waits until it is
 * readable (a notice arrived, or it closed) before calling rdv_watch.
 * Read it only through rdv_watch. */
int rdv_client_fd(const struct rdv_client *c);

/* Close the control connection (rank 0 counts us as gone) and free. */
void rdv_client_close(struct rdv_client *c);

/* Split "tcp://host:port"; TW_EINVAL when malformed. */
tw_status rdv_parse_url(const char *url, char *host, size_t hostlen,
			uint16_t *port);

/* torch's rule for worker names: 1 .. TW_WORKER_NAME_MAX - 1 bytes of
 * letters, digits, '-', '_' and ':'. */
bool rdv_name_valid(const char *name, size_t len);

/*
 * The control plane's payload parsers (fuzzed: tests/fuzz/fuzz_rdv.c).
 * A JOIN into *m (m->addrs owned: free it), the rank and world size it
 * claims;
 * a member list of world entries (rdv_members_free); a SHUTDOWN round:
 * gone NULL, a worker's (round, counts, the ms it has left, -1 none),
 * else rank 0's answer (round, sums, and into gone (world + 7) / 8 bytes:
 * bit r set once rank r's control connection has closed). TW_EPROTO with
 * a reason unless well formed, TW_ENOMEM.
 */
tw_status rdv_parse_join(const tw_value *p, struct rdv_member *m, int64_t *rank,
			 int64_t *world);
tw_status rdv_parse_members(const tw_value *p, uint32_t world,
			    struct rdv_member **out);
tw_status rdv_parse_round(const tw_value *p, uint32_t world, uint32_t *round,
			  struct rdv_count *c, int64_t *left_ms, uint8_t *gone);
/* Rank 0's notice of members gone: a bitmap of (world + 7) / 8 bytes
 * into gone. TW_EPROTO with a reason unless well formed. */
tw_status rdv_parse_gone(const tw_value *p, uint32_t world, uint8_t *gone);

#endif
