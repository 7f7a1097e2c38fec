/* Internal to the same-host transport: its objects and what its files call
 * of one another. shm.c: the transport, connections' lifecycle, the trust
 * switch, the poller; shm_sock.c: the unix socket (addresses, listening,
 * connecting, messages); shm_map.c: the shared mapping and doorbells;
 * shm_rx.c: receiving (from the socket and the ring into the reassembler,
 * stream_rx.c);
 * shm_tx.c: sending (the queue, to the socket or the ring, doorbells). */
#ifndef TW_DATAPLANE_SHM_IMPL_H
#define TW_DATAPLANE_SHM_IMPL_H

#include <liburing.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "dataplane/buf_impl.h"
#include "dataplane/list.h"
#include "dataplane/shm.h"
#include "dataplane/shm_ring.h"
#include "dataplane/stream_rx.h"
#include "dataplane/timer.h"
#include "dataplane/util.h"

/* sun_path's 108 bytes, its NUL included. */
#define SHM_PATH_MAX 108u
/* The default frame limit (frame.h), which the assembly bound admits. */
#define SHM_FRAME_DEFAULT_MAX ((UINT64_C(1) << 30) + (UINT64_C(64) << 10))

/* ---- Socket messages (SOCK_SEQPACKET: one message, one recv) ---- */

/* Every message starts with this; len counts the bytes after it. */
struct shm_msg {
	uint32_t type;
	uint32_t len;
};
enum shm_msg_type {
	SM_DATA = 0x54570001u,   /* len bytes of the frame stream */
	SM_READY = 0x54570002u,  /* accepting side trusts: shm_ready */
	SM_SETUP = 0x54570003u,  /* connecting side: shm_setup + 3 fds */
	SM_SWITCH = 0x54570004u, /* my bytes go to the ring after this */
	SM_NORING = 0x54570005u, /* no rings: shm_noring */
};
/* DATA payload at most; with the header, one message. */
#define SM_DATA_MAX (32u << 10)
#define SM_BUF_SIZE (SM_DATA_MAX + sizeof(struct shm_msg))

struct shm_ready {
	uint64_t max_ring; /* the largest ring the sender maps */
};
#define SHM_SETUP_VERSION 1u
struct shm_setup {
	uint32_t version;
	uint32_t flags; /* none yet: 0 */
	uint64_t ring_size;
};
/* The descriptors of a SETUP, in this order. */
enum { SETUP_MEMFD, SETUP_BELL_ACCEPTOR, SETUP_BELL_CONNECTOR, SETUP_NFDS };
/* SWITCH: where the sender has the mapping, for the peer's CMA probe. */
struct shm_switch {
	uint64_t map_addr;
};
struct shm_noring {
	uint32_t why; /* enum shm_noring_why */
	uint32_t pad;
};
enum shm_noring_why {
	NORING_MEMORY = 1, /* the mapping could not be made */
	NORING_OFF = 2,    /* rings turned off here (no_rings) */
};

/* ---- Objects ---- */

struct tw_shm_shared {
	_Atomic uint64_t asm_bytes;
	_Atomic uint32_t conns;
};

/* Control messages due on the socket (sconn.ctl_due, bits), sent in
 * this order before any DATA. */
enum {
	CTL_READY = 1,
	CTL_SETUP = 2,
	CTL_NORING = 4,
	CTL_SWITCH = 8, /* then every byte goes to the ring */
};

enum { SC_CONNECTING, SC_OPEN };

/* What one poll takes from one ring at most: a connection cannot hold
 * the loop. */
#define RX_PASS_BYTES (256u << 10)
/* What one flush copies into a ring at most, for the same reason. */
#define TX_PASS_BYTES (256u << 10)
#define RX_PASS_RECORDS 256u
/* Socket messages one service reads at most. */
#define SOCK_PASS_MSGS 16u
/* iovecs of one socket DATA message, its header's included. */
#define SOCK_IOV 64u
/* A record is not started in less room than this, unless what is
 * queued fits: no trickle of tiny records into a nearly full ring. */
#define RING_MIN_RECORD 4096u
/* One process_vm_readv reads at most this much: a pass of the loop
 * holds it for about that copy's time. */
#define CMA_CHUNK (1u << 20)
/* tw_send_req.flags_: some of its bytes went by CMA. */
#define REQ_CMA 1u
#define ACCEPT_BACKOFF_NS (10ull * 1000 * 1000)
#define CONNECT_RETRY_NS (1000ull * 1000)

struct st;

struct sconn {
	tw_conn base; /* first: tw_conn * converts both ways */
	struct st *t;
	int fd; /* the unix socket */
	uint8_t state;
	bool accepted; /* the accepting side */
	/* The layer above knows c: connect() returned it, or on_conn(c,
	 * TW_OK) ran. Only then does its end get an upcall. */
	bool known;
	bool announced; /* on_conn(c, TW_OK) ran */
	bool closing, reaped, dirty, counted;
	bool in_rconns;  /* on t->rconns */
	uint8_t rx_hold; /* HOLD_* (stream_rx.h) */
	tw_status close_st, linger_st;
	/* io_uring operations in flight (prepared SQEs included): c is
	 * freed, its fds closed and its mapping unmapped only at 0. */
	uint32_t ops;
	TAILQ_ENTRY(sconn) link;        /* in t->conns */
	TAILQ_ENTRY(sconn) rlink;       /* in t->rconns */
	STAILQ_ENTRY(sconn) dirty_link; /* in t->dirty */
	STAILQ_ENTRY(sconn) reap_link;  /* in t->reap */
	pid_t peer_pid;
	uid_t peer_uid;
	uint64_t connect_deadline;
	struct tw_timer connect_tm, linger_tm;
	char path[SHM_PATH_MAX]; /* connecting side: the peer's socket */

	/* The socket. */
	bool sock_rd;      /* readable: read it at the next service */
	bool sock_hup;     /* the peer hung up */
	bool sock_armed;   /* its multishot poll is armed */
	bool out_armed;    /* a one-shot POLLOUT is armed */
	bool out_wait;     /* a send found it full: wait for POLLOUT */
	uint8_t cancelled; /* closing: which ops a cancel was sent for */
	struct tw_uring_req sock_req, out_req, cancel_req;
	/* The rest of a DATA message the reassembler could not take (c
	 * was held): read before the next message. NULL almost always. */
	unsigned char *stash;
	uint32_t stash_off, stash_len;
	struct shm_msg shdr; /* header of the DATA being sent */
	struct iovec siov[SOCK_IOV];

	/* Trust and the switch (shm.h, "Set-up"). */
	bool trusted;           /* the layer above said so */
	bool peer_ready;        /* connecting side: READY came */
	bool setup_done;        /* connecting side: SETUP sent, or given up */
	bool mapped;            /* the rings exist */
	bool tx_ring;           /* our bytes go to the ring (SWITCH sent) */
	bool rx_ring;           /* we read the ring (the peer's SWITCH read) */
	uint8_t ctl_due;        /* CTL_* */
	uint64_t peer_max_ring; /* from READY */
	uint32_t noring_why;
	int setup_fds[SETUP_NFDS]; /* connecting side: until SETUP left */

	/* The rings and doorbells. */
	void *map;
	size_t map_len;
	struct shm_ring txr, rxr;
	bool cma_rx;           /* we read the peer's memory: we set cma_ok */
	uint64_t last_cma_pos; /* the ring position after our last CMA
				* record */
	int my_bell, peer_bell;
	bool bell_armed;   /* multishot poll on my_bell */
	bool ring_busy;    /* a write to peer_bell in flight */
	bool ring_again;   /* ... and another is due after it */
	bool slept_rx;     /* we set cons_sleeping (idle hook) */
	bool slept_tx;     /* we set prod_waiting */
	bool tx_blocked;   /* bytes queued, the ring without room */
	uint64_t bell_one; /* the 1 written to peer_bell */
	uint64_t bell_sink;
	struct tw_uring_req bell_req, ring_req;

	/* Sending: requests with bytes left, in order; only the head can be
	 * partly sent (iov_idx_ + head_off). */
	struct tw_send_queue sq;
	/* Requests sent whole, waiting for the consumer's head to pass
	 * the position in their sent_ (the end of their last CMA record)
	 * before done: the peer may still read their memory. In order;
	 * requests behind one of them wait too (sent_ 0). */
	struct tw_send_queue wq;
	uint32_t held; /* requests whose done has not run */
	size_t head_off;
	uint64_t q_bytes; /* bytes queued, not yet sent */

	/* Reassembly (stream_rx.h). */
	struct rxs rx;
};

struct slis {
	struct st *t;
	int fd;
	char path[SHM_PATH_MAX];
	dev_t dev; /* the socket file's, to remove only ours */
	ino_t ino;
	bool armed, closing, readable, backing_off;
	uint32_t ops;
	struct tw_uring_req poll_req, cancel_req;
	struct tw_timer backoff_tm;
	SLIST_ENTRY(slis) link;
};

struct st {
	tw_transport base; /* first */
	struct tw_shm_opts o;
	struct tw_poller poller;
	bool poller_on, destroying;
	/* Reassembly's share: the receive pool, large frames' buffers, the
	 * bound, waiting for room, stalls. */
	struct rxs_env rxe;
	TAILQ_HEAD(, sconn) conns;  /* every connection not yet freed */
	TAILQ_HEAD(, sconn) rconns; /* ... with rings, not closing */
	uint32_t nconns;
	STAILQ_HEAD(, sconn) dirty;
	STAILQ_HEAD(, sconn) reap;
	SLIST_HEAD(, slis) lis;
	bool lis_ready; /* a listener is readable */
	/* Where socket messages land (SM_BUF_SIZE): one for all
	 * connections, which take what they can at once. */
	unsigned char *rbuf;
	struct tw_shm_shared *sh;
	bool own_sh;
	uint64_t next_id;
	struct tw_shm_stats st;
	/* The idle hook's NOP, to cut a sleep short. */
	struct tw_uring_req kick_req;
	bool kick_armed;
	/* What every eventfd's fstat says (one anonymous inode): a doorbell
	 * from a peer must say the same. */
	dev_t efd_dev;
	ino_t efd_ino;
};

static inline struct st *ST(tw_transport *t)
{
	return (struct st *)(void *)t;
}

static inline struct sconn *SC(tw_conn *c)
{
	return (struct sconn *)(void *)c;
}

static inline void sconn_dirty(struct sconn *c)
{
	if (c->dirty || c->reaped)
		return;
	c->dirty = true;
	STAILQ_INSERT_TAIL(&c->t->dirty, c, dirty_link);
}

/* ---- What the files call of one another ---- */

/* shm.c */
/* Start closing c with st (idempotent; why, when not NULL, replaces
 * c->base.why): requests end now with done(st), what is armed is
 * cancelled, on_conn(c, st) once nothing is in flight. */
void sconn_fail(struct sconn *c, tw_status st, const char *why);
/* c broke the protocol: count it and end it with TW_EPROTO. */
void sconn_proto(struct sconn *c, const char *why);
/* A new connection on fd (connected or accepted). */
struct sconn *sconn_new(struct st *t, int fd, uint8_t state, bool accepted);
/* A control message arrived on the socket (not DATA). fds (n of them)
 * came with it; the callee owns them. */
void shm_on_ctl(struct sconn *c, const struct shm_msg *m, const void *body,
		int *fds, unsigned nfds);

/* shm_sock.c */
/* "shm://" + absolute path into path (TW_EINVAL with a reason). */
tw_status shm_addr_parse(const char *addr, char *path, size_t len);
tw_status shm_listen(struct st *t, const char *addr, char *bound,
		     size_t bound_len);
/* The poller's turn for readable listeners: accept what waits. */
int shm_accept_ready(struct st *t);
tw_status shm_connect(struct st *t, const char *addr, tw_conn **out);
/* A connecting c: try again (backlog full). 1 if it moved. */
int shm_connect_retry(struct sconn *c);
/* Arm c's socket poll (multishot POLLIN | POLLRDHUP). */
void shm_sock_arm(struct sconn *c);
/* Arm a one-shot POLLOUT on c's socket. */
void shm_sock_arm_out(struct sconn *c);
/* Read c's socket: DATA into the reassembler, control messages to
 * shm_on_ctl. Returns work done. */
int shm_sock_read(struct sconn *c);
/* Send one message: hdr then iov (n entries), fds (nfds) attached.
 * 1 sent, 0 the socket is full (c waits for POLLOUT), -1 c failed. */
int shm_sock_send(struct sconn *c, struct shm_msg *hdr, struct iovec *iov,
		  unsigned n, const int *fds, unsigned nfds);
/* Listeners: stop, cancel, remove the socket files. */
void shm_lis_close_all(struct st *t);
/* Free listeners once the kernel is done with them; false if some
 * operation of theirs is still in flight. */
bool shm_lis_free_all(struct st *t, bool force);
bool shm_lis_busy(struct st *t);

/* shm_map.c */
/* The connecting side's mapping: a sealed memfd of
 * shm_map_size(ring_size) bytes, mapped into c (c->map, rings), and the
 * two doorbells; fds[] gets what SETUP carries. */
tw_status shm_map_create(struct sconn *c, uint64_t ring_size,
			 int fds[SETUP_NFDS]);
/* The accepting side: check fds as shm.h says, then map. TW_EPROTO
 * (why set) for a peer's fault, TW_ENOMEM for ours. Takes the fds: every
 * one is closed or kept in c. */
tw_status shm_map_accept(struct sconn *c, uint64_t ring_size,
			 int fds[SETUP_NFDS], const char **why);
/* Unmap and close what c's rings hold. */
void shm_map_free(struct sconn *c);
/* Learn what an eventfd looks like (t->efd_dev, efd_ino). */
tw_status shm_map_probe(struct st *t);
/* Whether c's peer lets us read its memory (CMA): its mapping, at
 * peer_addr in its address space, reads as ours does. */
bool shm_cma_probe(struct sconn *c, uint64_t peer_addr);

/* shm_rx.c */
void srx_hold(struct sconn *c, uint8_t bit, bool on);
/* Feed n stream bytes; returns how many were taken (fewer when c is
 * held or closing: the rest stays where it is, unread). */
size_t srx_feed(struct sconn *c, const unsigned char *p, size_t n);
/* One pass over c's inbound ring. Returns work done. */
int srx_ring(struct sconn *c);
/* c is new: its reassembly (attached to t->rxe). */
void srx_conn_init(struct sconn *c);
/* Let go of the frame being assembled (c closed). */
void srx_release(struct sconn *c);
/* c is being freed. */
void srx_conn_free(struct sconn *c);
tw_status srx_setup(struct st *t);
void srx_teardown(struct st *t);

/* shm_tx.c */
tw_status stx_send(tw_transport *tt, tw_conn *cc, struct tw_send_req *r);
/* Send what c has: control messages due, then its queue, to the socket
 * or the ring. 1 if it did anything. */
int stx_flush(struct sconn *c);
/* End every queued request with done(st). */
void stx_fail_all(struct sconn *c, tw_status st);
/* Whether a flush of c's outbound ring would move now: room for what
 * is queued, the peer's head past a waiting request, or a head that
 * breaks the protocol (the flush ends c). For the idle hook. */
bool stx_could_move(struct sconn *c);
/* Ring the peer's doorbell (through io_uring). */
void stx_ring_bell(struct sconn *c);
/* Ring the peer's doorbell if flag (a sleep flag in the peer's line)
 * says it sleeps; after a full fence. */
void stx_wake_peer(struct sconn *c, _Atomic uint32_t *flag);

#endif
