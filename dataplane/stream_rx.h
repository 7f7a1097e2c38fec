/* Reassembling frames from a byte stream, for the transports whose bytes
 * arrive as a stream (io_uring's TCP, shm's socket and rings): the frame
 * header gathered across reads, its checks and refusals (transport.h,
 * on_refused), where the frame lands (the transport's receive pool, a
 * large buffer from the cache, or one of its own), what it reserves
 * against the worker's and the peer host's assembly bounds, waiting for
 * that room, and the stall check. The transport keeps how the bytes
 * arrive: it feeds them here (rxs_feed), or lands a large frame's rest in
 * place itself (rxs_dst, rxs_landed).
 *
 * One struct rxs_env per transport, one struct rxs per connection,
 * embedded in it. What the module needs of the connection goes through
 * struct rxs_ops, called on the rare paths only (a refusal, a wait for
 * room, a failure); a frame costs the on_frame upcall and nothing else
 * indirect. Everything runs on the transport's loop thread. */
#ifndef TW_DATAPLANE_STREAM_RX_H
#define TW_DATAPLANE_STREAM_RX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataplane/buf_impl.h"
#include "dataplane/list.h"
#include "dataplane/timer.h"
#include "dataplane/transport.h"

/* Why a connection's stream is not read (the transport's hold bits; the
 * module sets and clears HOLD_ROOM itself). */
enum {
	HOLD_PAUSE = 1,  /* the layer above paused it */
	HOLD_ROOM = 2,   /* its frame waits for room to assemble */
	HOLD_LINGER = 4, /* closing after its sends (close_after_send) */
};

/* A partial frame that moves fewer bytes than this per stall window is
 * stalled (rxs_sweep): 2 KiB/s at a 30 s timeout, far below any link. */
#define RXS_STALL_MIN_BYTES (64u << 10)
/* A frame waiting for room to assemble tries again this often. */
#define RXS_RETRY_NS (1000ull * 1000)

/* Why the module ends a connection (rxs_ops.fail). */
enum rxs_why {
	RXS_BAD_HDR, /* a header that does not decode: TW_EPROTO */
	RXS_REFUSED, /* refused, with no on_refused to answer it */
	RXS_NOMEM,   /* no buffer for a frame */
	RXS_STALL,   /* a frame stalled: TW_ETIMEDOUT */
};

/* The words for why (for the transports' tw_conn.why). */
const char *rxs_why_str(enum rxs_why why);

/* What the module's counters add to the transport's stats. */
struct rxs_counts {
	uint64_t frames_rx, bytes_rx;
	uint64_t bad_frames;     /* headers refused or not decoding */
	uint64_t frames_refused; /* intact headers refused */
	uint64_t frames_skipped; /* ... of them skipped */
	uint64_t asm_waits;      /* headers that waited for room */
	uint64_t large_frames;   /* frames in a buffer from the cache */
	uint64_t large_cache_hits;
	uint64_t stalls;
};

/* Add counts c to a transport's stats s (which has fields of the same
 * names). */
#define RXS_COUNTS_ADD(s, c)                                                   \
	do {                                                                   \
		(s)->frames_rx += (c)->frames_rx;                              \
		(s)->bytes_rx += (c)->bytes_rx;                                \
		(s)->bad_frames += (c)->bad_frames;                            \
		(s)->frames_refused += (c)->frames_refused;                    \
		(s)->frames_skipped += (c)->frames_skipped;                    \
		(s)->asm_waits += (c)->asm_waits;                              \
		(s)->stalls += (c)->stalls;                                    \
	} while (0)

struct rxs;

/* The connection's side, for the rare paths. */
struct rxs_ops {
	/* End s's connection with st (idempotent); why says what for. */
	void (*fail)(struct rxs *s, tw_status st, enum rxs_why why);
	/* Stop reading s's connection: its frame waits for room (the bit
	 * HOLD_ROOM is to be set in *s->hold). */
	void (*room_wait)(struct rxs *s);
	/* The frame that waited has its buffer (HOLD_ROOM is cleared):
	 * read on. */
	void (*room_found)(struct rxs *s);
};

/* A transport's share: its buffers, its bounds, the connections that
 * wait for room and the stall check over all of them. */
struct rxs_env {
	tw_transport *tr;
	const struct rxs_ops *ops;
	tw_buf_pool *pool;   /* frames up to its buffer size share one */
	tw_bigbuf_cache *bc; /* frames over large_frame */
	uint64_t large_frame;
	/* The worker's assembly bytes, shared by its transports. */
	_Atomic uint64_t *worker_bytes;
	uint64_t worker_max, host_max;
	uint64_t stall_ns; /* 0: never */
	/* Holds that stop the reassembler at a frame boundary: bytes
	 * already read on a paused connection may have nowhere else to go
	 * (io_uring's provided buffers), or stay where they are (shm). */
	uint8_t stop_holds;
	bool asm_freed; /* room freed: retry the waiters at the next poll */
	uint32_t nwaiters;
	TAILQ_HEAD(, rxs) waiters; /* HOLD_ROOM, oldest first */
	TAILQ_HEAD(, rxs) all;     /* every attached connection */
	struct tw_timer wait_tm, sweep_tm;
	struct rxs_counts cnt;
};

/* One connection's reassembly. */
struct rxs {
	struct rxs_env *env;
	tw_conn *conn;       /* what the upcalls name */
	const bool *closing; /* the connection's: ended, or ending */
	uint8_t *hold;       /* the connection's HOLD_* bits */
	/* The peer host's assembly bytes (NULL: no host bound). */
	_Atomic uint64_t *host_bytes;
	uint8_t hdr[TW_FRAME_HDR_SIZE];
	uint32_t hdr_have;
	tw_frame_hdr h; /* hdr decoded, once it is complete */
	tw_buf *cur;    /* the frame's buffer, once its header is complete */
	size_t off;
	uint64_t need, have;
	uint64_t skip;    /* bytes of a refused frame still to drop */
	bool large;       /* over large_frame: its rest may land in place */
	tw_buf *pool_buf; /* the pool buffer small frames share */
	size_t pool_off;
	uint64_t asm_res; /* bytes reserved for the frame assembling */
	/* Stall check: bytes taken, and at the window's start. */
	uint64_t rx_n, stall_mark, stall_since;
	bool stall_watched;
	TAILQ_ENTRY(rxs) wait_link; /* in env->waiters while HOLD_ROOM */
	TAILQ_ENTRY(rxs) link;      /* in env->all */
};

/* Set up env for transport tr: its receive pool (count buffers of
 * pool_buf_size, named name) and its large buffers' cache (cache_bytes).
 * who prefixes the error's words ("io_uring", "shm"). The caller then
 * sets worker_bytes and the bounds. */
tw_status rxs_env_init(struct rxs_env *e, tw_transport *tr,
		       const struct rxs_ops *ops, const char *who,
		       const char *name, uint32_t pool_buf_size,
		       uint32_t pool_count, uint64_t cache_bytes);
/* Start the stall check (every stall_ns / 4), once the loop runs. */
void rxs_env_start(struct rxs_env *e);
/* Stop the timers. */
void rxs_env_stop(struct rxs_env *e);
/* Free the pool (unless leak: buffers may still be lent to the kernel)
 * and close the cache; buffers still held unmap as they come back. who
 * as for init. */
void rxs_env_fini(struct rxs_env *e, bool leak, const char *who);

/* s starts for connection c, whose closing flag and hold bits are at
 * closing and hold. */
void rxs_attach(struct rxs_env *e, struct rxs *s, tw_conn *c,
		const bool *closing, uint8_t *hold);
/* Let go of the frame being assembled, what it reserved and the pool
 * buffer; s stops waiting for room. */
void rxs_release(struct rxs *s);
/* s's connection is being freed: rxs_release, and out of the stall
 * check. */
void rxs_detach(struct rxs *s);

/* Feed n stream bytes. Returns how many were taken: fewer when the
 * connection closed, or when at a frame boundary a hold in
 * env->stop_holds is set (a frame waiting for room sets HOLD_ROOM). */
size_t rxs_feed(struct rxs *s, const unsigned char *p, size_t n);

/* The frame is complete: hand it up (on_frame). */
void rxs_deliver(struct rxs *s);

/* Connections waiting for room: try each once, oldest first (1 if any
 * went on). */
int rxs_retry_waiters(struct rxs_env *e);

/* Whether the poller should retry the waiters now: room was freed. */
static inline bool rxs_room_freed(const struct rxs_env *e)
{
	return e->asm_freed && e->nwaiters != 0;
}

/* A large frame's body is being assembled: its rest may land in place
 * (rxs_dst), rxs_left bytes of it. */
static inline bool rxs_large(const struct rxs *s)
{
	return s->cur != NULL && s->large;
}

static inline uint64_t rxs_left(const struct rxs *s)
{
	return s->need - s->have;
}

static inline unsigned char *rxs_dst(const struct rxs *s)
{
	return (unsigned char *)s->cur->data + s->off + s->have;
}

/* n bytes landed at rxs_dst (n <= rxs_left): count them, and deliver
 * the frame once complete. */
static inline void rxs_landed(struct rxs *s, uint64_t n)
{
	s->rx_n += n;
	s->have += n;
	if (s->have == s->need)
		rxs_deliver(s);
}

/* Bytes of a refused frame dropped by the transport (n <= s->skip). */
static inline void rxs_skipped(struct rxs *s, uint64_t n)
{
	s->skip -= n;
	s->rx_n += n;
}

/* Part of a frame (or a refused frame's rest) is still to come. */
static inline bool rxs_partial(const struct rxs *s)
{
	return s->hdr_have != 0 || s->skip != 0;
}

#endif
