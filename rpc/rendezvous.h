/* Internal: rendezvous and shutdown barrier (the control plane), after
 * torch's TCPStore: rank 0 hosts a small server thread, every rank joins
 * over plain blocking TCP with poll() deadlines, tensorwire frames on the
 * wire. The control connection stays open until shutdown. */
#ifndef TW_RPC_RENDEZVOUS_H
#define TW_RPC_RENDEZVOUS_H

#include <stddef.h>
#include <stdint.h>

#include <tensorwire/agent.h>
#include <tensorwire/status.h>

/* Most loops a worker may announce. */
#define RDV_MAX_LOOPS 256u

/* What a worker announces and learns about every other one. */
struct rdv_member {
	uint32_t rank;
	uint32_t nloops;
	char name[TW_WORKER_NAME_MAX];
	char (*addrs)[TW_ADDR_MAX]; /* nloops entries, owned */
};

struct rdv_server;
struct rdv_client;

/*
 * Rank 0: listen on url ("tcp://host:port") and serve joins for a group of
 * world workers until timeout_ms passes (then the joined ones get a
 * TW_ETIMEDOUT exception), then the shutdown barrier. TW_EINVAL for a bad
 * url, TW_EIO when the address cannot be bound, TW_ENOMEM; each with its
 * reason (tw_errmsg).
 */
tw_status rdv_server_start(const char *url, uint32_t world, int64_t timeout_ms,
			   struct rdv_server **out);

/* Stop the server thread (closing every control connection) and free. */
void rdv_server_stop(struct rdv_server *s);

/*
 * Join: connect to url (retrying until the deadline, since rank 0 may start
 * later), announce self, wait for the member list (world entries indexed by
 * rank, freed with rdv_members_free). TW_EINVAL when rank 0 refused us
 * (its reason becomes ours), TW_ETIMEDOUT, TW_EIO, TW_EPROTO, TW_ENOMEM;
 * each with its reason (tw_errmsg).
 */
tw_status rdv_join(const char *url, const struct rdv_member *self,
		   uint32_t world, int64_t timeout_ms, struct rdv_client **out,
		   struct rdv_member **members);

void rdv_members_free(struct rdv_member *m, uint32_t n);

/*
 * Shutdown barrier: tell rank 0 we are done and wait until every live
 * worker has said so (timeout_ms < 0: no limit). TW_OK, TW_ETIMEDOUT, or
 * TW_EUNREACHABLE when the control connection broke (rank 0 gone).
 */
tw_status rdv_barrier(struct rdv_client *c, int64_t timeout_ms);

/* The same for a thread that must keep working meanwhile (an embedded
 * agent's owner serving calls): never blocks in poll(), calls idle(arg)
 * between looks at the control connection; idle bounds its own time. */
tw_status rdv_barrier_idle(struct rdv_client *c, int64_t timeout_ms,
			   void (*idle)(void *arg), void *arg);

/* Close the control connection (rank 0 counts us as gone) and free. */
void rdv_client_close(struct rdv_client *c);

/* Split "tcp://host:port"; TW_EINVAL when malformed. */
tw_status rdv_parse_url(const char *url, char *host, size_t hostlen,
			uint16_t *port);

#endif
