/* Unit tests for dataplane/uring*.c: the io_uring TCP transport over
 * loopback, driven in embedded mode by the test thread. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/buf.h>
#include <tensorwire/frame.h>
#include <tensorwire/status.h>

#include "dataplane/loop.h"
#include "dataplane/transport.h"
#include "dataplane/uring.h"
#include "dataplane/uring_impl.h" /* receive modes, seen from the inside */
#include "tests/integration/h_net.h"

/* ------------------------------------------------------------------ */
/* Frames with generated payloads                                       */

static inline uint8_t pat(uint64_t id, size_t i)
{
	return (uint8_t)(id * 151u + i + (i >> 8) * 3u);
}

static size_t frame_len(uint32_t payload)
{
	return TW_FRAME_HDR_SIZE + payload;
}

static void frame_build(uint8_t *dst, uint64_t id, uint32_t payload)
{
	tw_frame_hdr h = {
		.version = TW_FRAME_VERSION,
		.type = (uint8_t)(1 + id % 13),
		.req_id = id,
		.src = 1,
		.dst = 2,
		.payload_len = payload,
		.seg_count = 0,
		.total_len = frame_len(payload),
	};
	tw_frame_hdr_encode(dst, &h);
	uint8_t *p = dst + TW_FRAME_HDR_SIZE;
	for (size_t i = 0; i < payload; i++)
		p[i] = pat(id, i);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* One side: a loop, a transport, and what its callbacks saw            */

struct side {
	tw_loop *l;
	tw_transport *t;
	bool own_loop;
	/* connections */
	int conns_ok, conns_closed;
	tw_conn *last_ok;
	tw_conn *last_closed;
	tw_status last_close_st;
	const char *last_close_why;
	int close_rx_mode;       /* the closed connection's, at the upcall */
	uint64_t dones_at_close; /* dones seen when the close upcall came */
	/* frames, checked as they come: ids count up per connection */
	uint64_t next_id[16];
	int nconn_ids;
	uint64_t frames, bytes, errors, misaligned;
	uint64_t last_frame_ns;
	/* sends */
	uint64_t dones, dones_ok;
};

static void on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *up, tw_buf *b,
		     size_t off, size_t len)
{
	struct side *s = ctx;
	if (up->total_len != len)
		s->errors++;
	const uint8_t *f = (const uint8_t *)b->data + off;
	s->frames++;
	s->bytes += len;
	s->last_frame_ns = now_ns();
	if (((uintptr_t)f & 63u) != 0)
		s->misaligned++;
	if (off + len > b->size) {
		s->errors++;
		return;
	}
	uint64_t *next = c->ctx;
	tw_frame_hdr h;
	if (next == NULL || tw_frame_hdr_decode(f, NULL, &h) != TW_OK ||
	    h.total_len != len || h.req_id != *next || up->req_id != h.req_id ||
	    up->payload_len != h.payload_len) {
		s->errors++;
		return;
	}
	(*next)++;
	const uint8_t *p = f + TW_FRAME_HDR_SIZE;
	for (size_t i = 0; i < h.payload_len; i++)
		if (p[i] != pat(h.req_id, i)) {
			s->errors++;
			return;
		}
}

static void on_conn(void *ctx, tw_conn *c, tw_status st)
{
	struct side *s = ctx;
	if (st == TW_OK) {
		s->conns_ok++;
		s->last_ok = c;
		if (s->nconn_ids < 16)
			c->ctx = &s->next_id[s->nconn_ids++];
	} else {
		s->conns_closed++;
		s->last_closed = c;
		s->last_close_st = st;
		s->last_close_why = c->why;
		s->close_rx_mode = ((struct uconn *)(void *)c)->rx_mode;
		s->dones_at_close = s->dones;
	}
}

/* A send request with its own frame memory. */
struct sreq {
	struct tw_send_req r;
	struct iovec iov[3];
	uint8_t *mem;
	struct side *side;
	int ndone;
	tw_status st;
	uint64_t zc_notifs_at_done;
};

static void on_done(struct tw_send_req *r, tw_status st)
{
	struct sreq *q = container_of(r, struct sreq, r);
	q->ndone++;
	q->st = st;
	q->side->dones++;
	if (st == TW_OK)
		q->side->dones_ok++;
	struct tw_uring_stats us;
	tw_uring_get_stats(q->side->t, &us);
	q->zc_notifs_at_done = us.zc_notifs;
}

static void sreq_init(struct sreq *q, struct side *s, uint8_t *mem, uint64_t id,
		      uint32_t payload, int nseg)
{
	memset(q, 0, sizeof(*q));
	q->side = s;
	q->mem = mem;
	frame_build(mem, id, payload);
	size_t len = frame_len(payload);
	if (nseg == 1 || len < 3) {
		q->iov[0] = (struct iovec){mem, len};
		q->r.niov = 1;
	} else {
		/* header, then the payload in two pieces */
		size_t a = TW_FRAME_HDR_SIZE, b = (len - a) / 2;
		q->iov[0] = (struct iovec){mem, a};
		q->iov[1] = (struct iovec){mem + a, b};
		q->iov[2] = (struct iovec){mem + a + b, len - a - b};
		q->r.niov = 3;
	}
	q->r.iov = q->iov;
	q->r.len = len;
	q->r.type = (uint32_t)(1 + id % 13);
	q->r.done = on_done;
}

/* ------------------------------------------------------------------ */
/* Environment: a server side and a client side                        */

struct env {
	struct side srv, cli;
	char bound[64];
	tw_conn *cc; /* the client's connection */
};

static struct tw_uring_opts default_opts(void)
{
	struct tw_uring_opts o;
	tw_uring_opts_init(&o, sizeof(o));
	o.rx_pool_count = 32; /* 2 MiB per transport: tests make many */
	return o;
}

static tw_loop *loop_new(void)
{
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	lo.name = "test-uring";
	tw_loop *l = NULL;
	cr_assert_eq(tw_loop_create(&lo, &l), TW_OK);
	return l;
}

static void side_init(struct side *s, tw_loop *l, bool own,
		      const struct tw_uring_opts *o)
{
	memset(s, 0, sizeof(*s));
	s->l = l;
	s->own_loop = own;
	struct tw_transport_cbs cbs = {
		.ctx = s, .on_frame = on_frame, .on_conn = on_conn};
	cr_assert_eq(tw_uring_transport_create(l, o, &cbs, &s->t), TW_OK);
}

static void env_init(struct env *e, bool one_loop,
		     const struct tw_uring_opts *so,
		     const struct tw_uring_opts *co, bool do_connect)
{
	memset(e, 0, sizeof(*e));
	struct tw_uring_opts d = default_opts();
	tw_loop *ls = loop_new();
	tw_loop *lc = one_loop ? ls : loop_new();
	side_init(&e->srv, ls, true, so ? so : &d);
	side_init(&e->cli, lc, !one_loop, co ? co : &d);
	cr_assert_eq(e->srv.t->ops->listen(e->srv.t, "tcp://127.0.0.1:0",
					   e->bound, sizeof(e->bound)),
		     TW_OK);
	cr_assert(strncmp(e->bound, "tcp://127.0.0.1:", 16) == 0, "%s",
		  e->bound);
	cr_assert_neq(strcmp(e->bound, "tcp://127.0.0.1:0"), 0);
	if (do_connect)
		cr_assert_eq(e->cli.t->ops->connect(e->cli.t, e->bound, &e->cc),
			     TW_OK);
}

static void poll_both(struct env *e)
{
	tw_loop_poll_once(e->srv.l);
	if (e->cli.l != e->srv.l)
		tw_loop_poll_once(e->cli.l);
}

/* Poll both loops until cond holds or ms pass; true when it held. */
#define PUMP(e, cond, ms)                                                      \
	({                                                                     \
		uint64_t dl_ = now_ns() + (uint64_t)(ms)*1000000ull;           \
		bool ok_ = true;                                               \
		while (!(cond)) {                                              \
			if (now_ns() > dl_) {                                  \
				ok_ = false;                                   \
				break;                                         \
			}                                                      \
			poll_both(e);                                          \
		}                                                              \
		ok_;                                                           \
	})

static void side_fini(struct side *s)
{
	if (s->t)
		s->t->ops->destroy(s->t);
	s->t = NULL;
}

static void env_fini(struct env *e)
{
	side_fini(&e->cli);
	side_fini(&e->srv);
	if (e->cli.own_loop)
		tw_loop_destroy(e->cli.l);
	tw_loop_destroy(e->srv.l);
}

static void env_connected(struct env *e)
{
	cr_assert(PUMP(e, e->srv.conns_ok == 1 && e->cli.conns_ok == 1, 5000),
		  "connect: srv %d cli %d", e->srv.conns_ok, e->cli.conns_ok);
	cr_assert_eq(e->cli.last_ok, e->cc);
}

static struct tw_uring_stats stats(const struct side *s)
{
	struct tw_uring_stats us;
	tw_uring_get_stats(s->t, &us);
	return us;
}

/* A plain blocking client socket, for bytes the transport never sends. */
static int raw_connect(const char *bound)
{
	unsigned port = 0;
	cr_assert_eq(sscanf(bound, "tcp://127.0.0.1:%u", &port), 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* raw_connect from the loopback address 127.0.0.0/8 + src (host
 * order): another peer host as the per-host limits see it. */
static int raw_connect_from(const char *bound, uint32_t src)
{
	unsigned port = 0;
	cr_assert_eq(sscanf(bound, "tcp://127.0.0.1:%u", &port), 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	struct sockaddr_in s = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(0x7f000000u | src)};
	cr_assert_eq(bind(fd, (struct sockaddr *)&s, sizeof(s)), 0, "%s",
		     strerror(errno));
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

Test(uring, opts_and_addresses)
{
	struct tw_uring_opts o;
	tw_uring_opts_init(&o, sizeof(o));
	cr_assert_eq(o.recv_buf_size, 64u << 10);
	cr_assert_eq(o.recv_buf_count, 64);
	cr_assert_eq(o.max_queued, 4096);
	cr_assert_eq(o.zc_threshold, 16u << 10);
	cr_assert_eq(o.large_frame, 256u << 10);

	tw_loop *l = loop_new();
	struct side s;
	struct tw_uring_opts bad = default_opts();
	bad.recv_buf_count = 48; /* not a power of two */
	struct tw_transport_cbs cbs = {
		.ctx = &s, .on_frame = on_frame, .on_conn = on_conn};
	tw_transport *t = NULL;
	cr_assert_eq(tw_uring_transport_create(l, &bad, &cbs, &t), TW_EINVAL);
	cr_assert_null(t);

	struct tw_uring_opts d = default_opts();
	side_init(&s, l, true, &d);
	char b[64];
	tw_conn *c = NULL;
	cr_assert_eq(s.t->ops->listen(s.t, "udp://127.0.0.1:0", b, sizeof(b)),
		     TW_EINVAL);
	cr_assert_eq(s.t->ops->listen(s.t, "tcp://127.0.0.1", b, sizeof(b)),
		     TW_EINVAL);
	cr_assert_eq(s.t->ops->listen(s.t, "tcp://127.0.0.1:70000", b,
				      sizeof(b)),
		     TW_EINVAL);
	cr_assert_eq(s.t->ops->connect(s.t, "tcp://1.2.3:5", &c), TW_EINVAL);
	cr_assert_eq(s.t->ops->connect(s.t, "tcp://example.com:5", &c),
		     TW_EINVAL);
	cr_assert_eq(s.t->ops->listen(s.t, "tcp://localhost:0", b, sizeof(b)),
		     TW_OK);
	cr_assert(strncmp(b, "tcp://127.0.0.1:", 16) == 0, "%s", b);
	cr_assert_str_eq(s.t->ops->name, "uring");
	s.t->ops->destroy(s.t);
	tw_loop_destroy(l);
}

/* One loop for both ends; one frame each way. */
Test(uring, one_frame)
{
	struct env e;
	env_init(&e, true, NULL, NULL, true);

	/* queued while the connection is still being made */
	uint8_t *mem = malloc(frame_len(100));
	struct sreq q;
	sreq_init(&q, &e.cli, mem, 0, 100, 1);
	cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q.r), TW_OK);
	env_connected(&e);
	cr_assert(PUMP(&e, e.srv.frames == 1 && q.ndone == 1, 5000));
	cr_assert_eq(q.st, TW_OK);
	cr_assert_eq(e.srv.errors, 0);
	cr_assert_eq(e.srv.misaligned, 0);

	/* and back, on the accepted connection */
	uint8_t *mem2 = malloc(frame_len(7));
	struct sreq q2;
	sreq_init(&q2, &e.srv, mem2, 0, 7, 3);
	cr_assert_eq(tw_transport_send(e.srv.t, e.srv.last_ok, &q2.r), TW_OK);
	cr_assert(PUMP(&e, e.cli.frames == 1 && q2.ndone == 1, 5000));
	cr_assert_eq(e.cli.errors, 0);

	struct tw_uring_stats cs = stats(&e.cli), ss = stats(&e.srv);
	cr_assert_eq(cs.frames_tx, 1);
	cr_assert_eq(cs.bytes_tx, frame_len(100));
	cr_assert_eq(ss.frames_rx, 1);
	cr_assert_eq(ss.bytes_rx, frame_len(100));
	cr_assert_eq(cs.conns_connected, 1);
	cr_assert_eq(ss.conns_accepted, 1);

	env_fini(&e);
	/* destroy closed what was open: each side saw its close upcall */
	cr_assert_eq(e.cli.conns_closed, 1);
	cr_assert_eq(e.cli.last_close_st, TW_ESHUTDOWN);
	free(mem);
	free(mem2);
}

/* 10,000 small frames queued at once (before the connection is even up)
 * leave in a few coalesced sendmsg calls and arrive whole and in order. */
Test(uring, many_small_coalesced)
{
	enum { N = 10000, P = 64 };
	struct tw_uring_opts co = default_opts();
	co.max_queued = N;
	struct env e;
	env_init(&e, false, NULL, &co, true);
	env_connected(&e);

	size_t stride = (frame_len(P) + 63) & ~(size_t)63;
	uint8_t *mem = malloc(stride * N);
	struct sreq *q = calloc(N, sizeof(*q));
	for (int i = 0; i < N; i++) {
		sreq_init(&q[i], &e.cli, mem + stride * (size_t)i, (uint64_t)i,
			  P, 1);
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	}
	uint64_t t0 = now_ns();
	cr_assert(PUMP(&e, e.srv.frames == N && e.cli.dones == N, 8000),
		  "frames %lu dones %lu", (unsigned long)e.srv.frames,
		  (unsigned long)e.cli.dones);
	uint64_t t1 = e.srv.last_frame_ns;
	cr_assert_eq(e.srv.errors, 0);
	cr_assert_eq(e.cli.dones_ok, N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(q[i].ndone, 1);
	struct tw_uring_stats cs = stats(&e.cli);
	cr_assert_eq(cs.frames_tx, N);
	cr_assert(cs.sendmsg_calls * 50 <= N, "sendmsg_calls %lu",
		  (unsigned long)cs.sendmsg_calls);
	cr_log_info("rough in-test figure (one thread polls both ends): %d x "
		    "%zu B frames in %.2f ms = %.2f M frames/s, %lu sendmsg",
		    N, frame_len(P), (double)(t1 - t0) / 1e6,
		    (double)N / ((double)(t1 - t0) / 1e9) / 1e6,
		    (unsigned long)cs.sendmsg_calls);
	fprintf(stderr,
		"[uring] small frames: %d x %zu B in %.2f ms "
		"(%.2f M frames/s, rough in-test figure), %lu sendmsg "
		"calls\n",
		N, frame_len(P), (double)(t1 - t0) / 1e6,
		(double)N / ((double)(t1 - t0) / 1e9) / 1e6,
		(unsigned long)cs.sendmsg_calls);

	env_fini(&e);
	free(q);
	free(mem);
}

/* Sizes across every receive path: pooled copy, heap copy, large frame
 * received in place (1 MiB, 64 MiB), with small frames on either side. */
Test(uring, sizes_and_large_frames, .timeout = 60)
{
	static const uint32_t sizes[] = {0,         1, 4096, 100 << 10, 1 << 20,
					 64u << 20, 5, 300,  1 << 20,   17};
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	struct env e;
	env_init(&e, false, NULL, NULL, true);
	env_connected(&e);

	uint8_t *mem[N];
	struct sreq q[N];
	for (int i = 0; i < N; i++) {
		mem[i] = malloc(frame_len(sizes[i]));
		cr_assert_not_null(mem[i]);
		sreq_init(&q[i], &e.cli, mem[i], (uint64_t)i, sizes[i],
			  i % 2 ? 3 : 1);
	}
	uint64_t t0 = 0, t1 = 0;
	for (int i = 0; i < N; i++) {
		if (sizes[i] == 64u << 20) {
			/* alone on the wire, for a rough figure */
			cr_assert(PUMP(&e, e.srv.frames == (uint64_t)i, 10000));
			t0 = now_ns();
		}
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
		if (sizes[i] == 64u << 20) {
			cr_assert(PUMP(&e, e.srv.frames == (uint64_t)i + 1,
				       20000));
			t1 = e.srv.last_frame_ns;
		}
	}
	cr_assert(PUMP(&e, e.srv.frames == N && e.cli.dones == N, 20000),
		  "frames %lu", (unsigned long)e.srv.frames);
	cr_assert_eq(e.srv.errors, 0);
	cr_assert_eq(e.srv.misaligned, 0);
	cr_assert_eq(e.cli.dones_ok, N);
	struct tw_uring_stats ss = stats(&e.srv);
	cr_assert_eq(ss.large_frames, 3, "large %lu",
		     (unsigned long)ss.large_frames);
	/* Bytes that arrived before the multishot recv stopped are copied;
	 * the rest of the 64 MiB frame at least lands in place. */
	cr_assert_geq(ss.large_recvs, 1);
	double gbs = (double)frame_len(64u << 20) / (double)(t1 - t0);
	fprintf(stderr,
		"[uring] 64 MiB frame one-way: %.2f GB/s (rough "
		"in-test figure, one thread polls both ends, send "
		"copy + receive into place)\n",
		gbs);
	cr_log_info("64 MiB frame: %.2f GB/s (rough in-test figure)", gbs);
	env_fini(&e);
	for (int i = 0; i < N; i++)
		free(mem[i]);
}

/* Big frames land in buffers the transport keeps for the next one once
 * released: only the first pays for fresh pages. */
Test(uring, large_buffers_reused, .timeout = 60)
{
	enum { N = 3, P = 4u << 20 };
	struct env e;
	env_init(&e, false, NULL, NULL, true);
	env_connected(&e);
	uint8_t *mem = malloc(frame_len(P));
	cr_assert_not_null(mem);
	struct sreq q[N];
	for (int i = 0; i < N; i++) {
		/* one at a time: each is released (on_frame keeps no
		 * reference) before the next arrives */
		sreq_init(&q[i], &e.cli, mem, (uint64_t)i, P, 1);
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
		cr_assert(PUMP(&e,
			       e.srv.frames == (uint64_t)i + 1 &&
				       e.cli.dones == (uint64_t)i + 1,
			       20000));
	}
	cr_assert_eq(e.srv.errors, 0);
	struct tw_uring_stats ss = stats(&e.srv);
	cr_assert_eq(ss.large_frames, N);
	cr_assert_eq(ss.large_cache_hits, N - 1, "cache hits %lu",
		     (unsigned long)ss.large_cache_hits);
	env_fini(&e);
	free(mem);
}

/* Busy polling (uring.h): an active connection is read by direct recvs,
 * small and large frames alike, small pieces go out as one direct send;
 * when the loop is about to sleep the connection gets its multishot recv
 * back, and that recv is what delivers the next frame. */
Test(uring, busy_poll_and_sleep, .timeout = 60)
{
	struct tw_uring_opts so = default_opts();
	so.busy_poll_ns = 60ull * 1000 * 1000 * 1000; /* never cools down */
	struct env e;
	env_init(&e, false, &so, NULL, true);
	env_connected(&e);

	enum { N = 4 };
	static const uint32_t sizes[N] = {1000, 1u << 20, 1000, 1000};
	uint8_t *mem[N];
	struct sreq q[N];
	for (int i = 0; i < N; i++) {
		mem[i] = malloc(frame_len(sizes[i]));
		cr_assert_not_null(mem[i]);
		sreq_init(&q[i], &e.cli, mem[i], (uint64_t)i, sizes[i], 3);
	}
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
		cr_assert(PUMP(&e,
			       e.srv.frames == (uint64_t)i + 1 &&
				       e.cli.dones == (uint64_t)i + 1,
			       10000),
			  "frame %d", i);
	}
	struct tw_uring_stats ss = stats(&e.srv), cs = stats(&e.cli);
	cr_assert_gt(ss.busy_recvs, 0);
	cr_assert_gt(ss.busy_frames, 0);
	cr_assert_gt(cs.direct_sends, 0);
	cr_assert_eq(ss.large_frames, 1);

	/* Nothing comes: the server's loop spins, then sleeps. */
	cr_assert_eq(tw_loop_poll_wait(e.srv.l, 20ull * 1000 * 1000), 0);
	uint64_t cqes = stats(&e.srv).recv_cqes;
	cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[3].r), TW_OK);
	cr_assert(PUMP(&e, e.srv.frames == N && e.cli.dones == N, 10000));
	cr_assert_gt(stats(&e.srv).recv_cqes, cqes,
		     "the frame after the sleep came by the multishot recv");
	cr_assert_eq(e.srv.errors, 0);
	env_fini(&e);
	for (int i = 0; i < N; i++)
		free(mem[i]);
}

/* ------------------------------------------------------------------ */
/* Receive modes (uring_impl.h, enum rx_mode), seen from the inside     */

static enum rx_mode rx_mode_of(tw_conn *c)
{
	return (enum rx_mode)((struct uconn *)(void *)c)->rx_mode;
}

/* How often s's transport entered mode m. */
static uint32_t enters(const struct side *s, enum rx_mode m)
{
	return ((const struct ut *)(const void *)s->t)->rx_enters[m];
}

/* One frame from the client, waited for on both ends. */
static void send_one(struct env *e, struct sreq *q, uint8_t **mem, uint64_t id,
		     uint32_t payload, int nseg)
{
	*mem = malloc(frame_len(payload));
	cr_assert_not_null(*mem);
	sreq_init(q, &e->cli, *mem, id, payload, nseg);
	uint64_t frames = e->srv.frames, dones = e->cli.dones;
	cr_assert_eq(tw_transport_send(e->cli.t, e->cc, &q->r), TW_OK);
	cr_assert(PUMP(e,
		       e->srv.frames == frames + 1 && e->cli.dones == dones + 1,
		       20000),
		  "frame %lu", (unsigned long)id);
}

/* Without busy polling: the multishot recv reads everything but a large
 * frame's rest, for which it stops (STOPPING), a plain recv lands the
 * rest in place (INPLACE) and the multishot comes back; a close cancels
 * what is armed (CLOSED). */
Test(uring, rx_modes_multishot_and_large_frame, .timeout = 60)
{
	struct tw_uring_opts so = default_opts();
	so.busy_poll_conns = 0;
	struct env e;
	env_init(&e, false, &so, NULL, true);
	env_connected(&e);
	tw_conn *sc = e.srv.last_ok;
	cr_assert_eq(rx_mode_of(sc), RX_MULTISHOT, "armed once accepted");
	cr_assert_eq(enters(&e.srv, RX_MULTISHOT), 1);

	struct sreq q[3];
	uint8_t *mem[3];
	send_one(&e, &q[0], &mem[0], 0, 1000, 1);
	cr_assert_eq(rx_mode_of(sc), RX_MULTISHOT,
		     "a small frame: still armed");
	cr_assert_eq(enters(&e.srv, RX_MULTISHOT), 1);
	cr_assert_eq(enters(&e.srv, RX_STOPPING), 0);

	/* 8 MiB: more than the 4 MiB of provided buffers, so a plain recv
	 * reads some of it whatever the multishot got first. */
	send_one(&e, &q[1], &mem[1], 1, 8u << 20, 1);
	cr_assert(PUMP(&e, rx_mode_of(sc) == RX_MULTISHOT, 5000), "mode %d",
		  rx_mode_of(sc));
	struct tw_uring_stats ss = stats(&e.srv);
	cr_assert_eq(enters(&e.srv, RX_STOPPING), 1);
	cr_assert_geq(enters(&e.srv, RX_INPLACE), 1);
	cr_assert_eq(enters(&e.srv, RX_INPLACE), ss.large_recvs);
	cr_assert_eq(enters(&e.srv, RX_MULTISHOT), 2, "re-armed once");
	cr_assert_eq(ss.recv_rearms, 2);
	cr_assert_eq(enters(&e.srv, RX_DIRECT), 0);
	cr_assert_eq(ss.busy_starts, 0);
	cr_assert_eq(ss.large_frames, 1);

	send_one(&e, &q[2], &mem[2], 2, 300, 1);
	cr_assert_eq(rx_mode_of(sc), RX_MULTISHOT);
	cr_assert_eq(e.srv.errors, 0);

	e.cli.t->ops->close(e.cli.t, e.cc);
	cr_assert(PUMP(&e, e.srv.conns_closed == 1, 5000));
	cr_assert_eq(e.srv.close_rx_mode, RX_CLOSED);
	cr_assert_eq(enters(&e.srv, RX_CLOSED), 1);
	env_fini(&e);
	for (int i = 0; i < 3; i++)
		free(mem[i]);
}

/* With busy polling: bytes make a connection hot, its multishot stops
 * (STOPPING) and the poller reads it directly (DIRECT), a large frame's
 * rest included; before the loop sleeps it gets its multishot back, and
 * the next bytes make it hot again. */
Test(uring, rx_modes_busy_poll, .timeout = 60)
{
	struct tw_uring_opts so = default_opts();
	so.busy_poll_ns = 60ull * 1000 * 1000 * 1000; /* never cools down */
	struct env e;
	env_init(&e, false, &so, NULL, true);
	env_connected(&e);
	tw_conn *sc = e.srv.last_ok;
	cr_assert_eq(rx_mode_of(sc), RX_MULTISHOT);

	struct sreq q[3];
	uint8_t *mem[3];
	send_one(&e, &q[0], &mem[0], 0, 1000, 1);
	cr_assert(PUMP(&e, rx_mode_of(sc) == RX_DIRECT, 5000), "mode %d",
		  rx_mode_of(sc));
	cr_assert_eq(enters(&e.srv, RX_STOPPING), 1);
	cr_assert_eq(enters(&e.srv, RX_DIRECT), 1);
	cr_assert_eq(stats(&e.srv).busy_starts, 1);

	/* Read directly, in place: no io_uring recv at all. */
	uint64_t cqes = stats(&e.srv).recv_cqes;
	send_one(&e, &q[1], &mem[1], 1, 1u << 20, 1);
	struct tw_uring_stats ss = stats(&e.srv);
	cr_assert_eq(rx_mode_of(sc), RX_DIRECT);
	cr_assert_eq(ss.large_frames, 1);
	cr_assert_eq(ss.recv_cqes, cqes);
	cr_assert_eq(enters(&e.srv, RX_INPLACE), 0);
	cr_assert_gt(ss.busy_recvs, 1);

	/* Nothing comes: the loop spins, then, before it sleeps, the
	 * multishot is back. */
	cr_assert_eq(tw_loop_poll_wait(e.srv.l, 20ull * 1000 * 1000), 0);
	cr_assert_eq(rx_mode_of(sc), RX_MULTISHOT);
	cr_assert_eq(enters(&e.srv, RX_MULTISHOT), 2);

	send_one(&e, &q[2], &mem[2], 2, 1000, 1);
	cr_assert(PUMP(&e, rx_mode_of(sc) == RX_DIRECT, 5000));
	cr_assert_gt(stats(&e.srv).recv_cqes, cqes, "woken by the multishot");
	cr_assert_eq(enters(&e.srv, RX_STOPPING), 2);
	cr_assert_eq(enters(&e.srv, RX_DIRECT), 2);
	cr_assert_eq(stats(&e.srv).busy_starts, 2);
	cr_assert_eq(e.srv.errors, 0);
	env_fini(&e);
	for (int i = 0; i < 3; i++)
		free(mem[i]);
}

/* A large frame as the very first bytes: they make the connection hot,
 * yet the multishot winding down hands the rest to a plain recv
 * (INPLACE); once that returns, the poller reads on (DIRECT). */
Test(uring, rx_modes_large_frame_then_busy, .timeout = 60)
{
	struct tw_uring_opts so = default_opts();
	so.busy_poll_ns = 60ull * 1000 * 1000 * 1000;
	struct env e;
	env_init(&e, false, &so, NULL, true);
	env_connected(&e);
	tw_conn *sc = e.srv.last_ok;
	struct sreq q;
	uint8_t *mem;
	send_one(&e, &q, &mem, 0, 8u << 20, 1);
	cr_assert(PUMP(&e, rx_mode_of(sc) == RX_DIRECT, 5000), "mode %d",
		  rx_mode_of(sc));
	cr_assert_eq(enters(&e.srv, RX_STOPPING), 1);
	cr_assert_geq(enters(&e.srv, RX_INPLACE), 1);
	cr_assert_eq(enters(&e.srv, RX_MULTISHOT), 1, "never re-armed");
	cr_assert_eq(enters(&e.srv, RX_DIRECT), 1);
	cr_assert_eq(stats(&e.srv).busy_starts, 1);
	cr_assert_eq(e.srv.errors, 0);
	env_fini(&e);
	free(mem);
}

/* Frames split over many reads: tiny provided buffers (so -ENOBUFS too),
 * and a raw client that dribbles a frame a few bytes at a time. */
Test(uring, split_across_reads)
{
	struct tw_uring_opts so = default_opts();
	so.recv_buf_size = 256;
	so.recv_buf_count = 4;
	so.busy_poll_conns = 0; /* every byte through the provided buffers */
	struct env e;
	env_init(&e, false, &so, NULL, true);
	env_connected(&e);

	enum { N = 4 };
	static const uint32_t sizes[N] = {200 << 10, 3000, 60000, 10};
	uint8_t *mem[N];
	struct sreq q[N];
	for (int i = 0; i < N; i++) {
		mem[i] = malloc(frame_len(sizes[i]));
		sreq_init(&q[i], &e.cli, mem[i], (uint64_t)i, sizes[i], 1);
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	}
	cr_assert(PUMP(&e, e.srv.frames == N, 8000), "frames %lu",
		  (unsigned long)e.srv.frames);
	cr_assert_eq(e.srv.errors, 0);
	struct tw_uring_stats ss = stats(&e.srv);
	cr_assert_gt(ss.recv_cqes, 800, "recv_cqes %lu",
		     (unsigned long)ss.recv_cqes);

	/* Byte-dribbling raw client: header split mid-field. */
	int fd = raw_connect(e.bound);
	cr_assert(PUMP(&e, e.srv.conns_ok == 2, 5000));
	uint8_t *f = malloc(frame_len(2000) * 2);
	frame_build(f, 0, 2000);
	frame_build(f + frame_len(2000), 1, 2000);
	size_t total = frame_len(2000) * 2, put = 0, chunk = 1;
	while (put < total) {
		size_t k = chunk < total - put ? chunk : total - put;
		cr_assert_eq(write(fd, f + put, k), (ssize_t)k);
		put += k;
		chunk = chunk % 97 + 5;
		poll_both(&e);
	}
	cr_assert(PUMP(&e, e.srv.frames == N + 2, 5000));
	cr_assert_eq(e.srv.errors, 0);
	close(fd);
	cr_assert(PUMP(&e, e.srv.conns_closed == 1, 5000));
	cr_assert_eq(e.srv.last_close_st, TW_EUNREACHABLE);
	cr_assert_str_eq(e.srv.last_close_why, "the peer closed it");
	env_fini(&e);
	for (int i = 0; i < N; i++)
		free(mem[i]);
	free(f);
}

Test(uring, enospc_backpressure)
{
	struct tw_uring_opts co = default_opts();
	co.max_queued = 8;
	struct env e;
	env_init(&e, false, NULL, &co, true);
	env_connected(&e);

	enum { N = 9 };
	uint8_t *mem = malloc(frame_len(10) * N);
	struct sreq q[N];
	for (int i = 0; i < N; i++)
		sreq_init(&q[i], &e.cli, mem + frame_len(10) * (size_t)i,
			  (uint64_t)i, 10, 1);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[8].r), TW_ENOSPC);
	cr_assert_eq(q[8].ndone, 0);
	cr_assert(PUMP(&e, e.cli.dones == 8, 5000));
	/* room again */
	cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[8].r), TW_OK);
	cr_assert(PUMP(&e, e.srv.frames == 9 && e.cli.dones == 9, 5000));
	cr_assert_eq(e.srv.errors, 0);
	env_fini(&e);
	free(mem);
}

/* The peer closes: sends still pending then (4 MiB each: a closed peer
 * never takes them) fail exactly once with TW_EUNREACHABLE, before the
 * close upcall. */
Test(uring, peer_close_fails_pending)
{
	struct env e;
	env_init(&e, false, NULL, NULL, true);
	env_connected(&e);

	e.srv.t->ops->close(e.srv.t, e.srv.last_ok);
	/* the close upcall comes from the loop, not from inside close() */
	cr_assert_eq(e.srv.conns_closed, 0);
	uint64_t dl = now_ns() + 5000000000ull;
	while (e.srv.conns_closed == 0 && now_ns() < dl)
		tw_loop_poll_once(e.srv.l);
	cr_assert_eq(e.srv.last_close_st, TW_ESHUTDOWN);

	enum { N = 5, P = 4 << 20 };
	uint8_t *mem = malloc(frame_len(P) * N);
	struct sreq q[N];
	for (int i = 0; i < N; i++) {
		sreq_init(&q[i], &e.cli, mem + frame_len(P) * (size_t)i,
			  (uint64_t)i, P, 1);
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	}
	cr_assert(PUMP(&e, e.cli.conns_closed == 1, 5000));
	cr_assert_eq(e.cli.last_closed, e.cc);
	cr_assert_eq(e.cli.last_close_st, TW_EUNREACHABLE);
	cr_assert_eq(e.cli.dones_at_close, N);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(q[i].ndone, 1);
		cr_assert_eq(q[i].st, TW_EUNREACHABLE, "req %d: %s", i,
			     tw_status_name(q[i].st));
	}
	/* a few more turns: nothing fires twice */
	for (int i = 0; i < 100; i++)
		poll_both(&e);
	for (int i = 0; i < N; i++)
		cr_assert_eq(q[i].ndone, 1);
	cr_assert_eq(e.cli.conns_closed, 1);
	cr_assert_eq(stats(&e.cli).conns_closed, 1);
	env_fini(&e);
	free(mem);
}

/* Small sends racing the peer's close: whichever way each goes (out
 * before the close was seen, or failed), done runs once, and all of them
 * before the close upcall. */
Test(uring, peer_close_small_sends)
{
	struct env e;
	env_init(&e, false, NULL, NULL, true);
	env_connected(&e);
	e.srv.t->ops->close(e.srv.t, e.srv.last_ok);
	uint64_t dl = now_ns() + 5000000000ull;
	while (e.srv.conns_closed == 0 && now_ns() < dl)
		tw_loop_poll_once(e.srv.l);
	enum { N = 5 };
	uint8_t *mem = malloc(frame_len(100) * N);
	struct sreq q[N];
	for (int i = 0; i < N; i++) {
		sreq_init(&q[i], &e.cli, mem + frame_len(100) * (size_t)i,
			  (uint64_t)i, 100, 1);
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	}
	cr_assert(PUMP(&e, e.cli.conns_closed == 1, 5000));
	cr_assert_eq(e.cli.last_close_st, TW_EUNREACHABLE);
	cr_assert_eq(e.cli.dones_at_close, N);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(q[i].ndone, 1);
		cr_assert(q[i].st == TW_OK || q[i].st == TW_EUNREACHABLE);
	}
	env_fini(&e);
	free(mem);
}

/* The peer resets (RST): the same, through -ECONNRESET. */
Test(uring, peer_reset_fails_pending)
{
	struct tw_uring_opts o = default_opts();
	tw_loop *l = loop_new();
	struct side s;
	side_init(&s, l, true, &o);

	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(ls, 4), 0);
	cr_assert_eq(getsockname(ls, (struct sockaddr *)&a, &al), 0);
	char addr[64];
	snprintf(addr, sizeof(addr), "tcp://localhost:%u",
		 (unsigned)ntohs(a.sin_port));
	tw_conn *c = NULL;
	cr_assert_eq(s.t->ops->connect(s.t, addr, &c), TW_OK);
	uint64_t dl = now_ns() + 5000000000ull;
	while (s.conns_ok == 0 && now_ns() < dl)
		tw_loop_poll_once(l);
	cr_assert_eq(s.conns_ok, 1);
	int fd = accept(ls, NULL, NULL);
	cr_assert(fd >= 0);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);

	enum { N = 3 };
	uint8_t *mem = malloc(frame_len(64) * N);
	struct sreq q[N];
	for (int i = 0; i < N; i++) {
		sreq_init(&q[i], &s, mem + frame_len(64) * (size_t)i,
			  (uint64_t)i, 64, 1);
		cr_assert_eq(tw_transport_send(s.t, c, &q[i].r), TW_OK);
	}
	dl = now_ns() + 5000000000ull;
	while (s.conns_closed == 0 && now_ns() < dl)
		tw_loop_poll_once(l);
	cr_assert_eq(s.conns_closed, 1);
	cr_assert_eq(s.last_close_st, TW_EUNREACHABLE);
	cr_assert_eq(s.dones_at_close, N);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(q[i].ndone, 1);
		cr_assert_eq(q[i].st, TW_EUNREACHABLE);
	}
	close(ls);
	s.t->ops->destroy(s.t);
	tw_loop_destroy(l);
	free(mem);
}

/* Our own close(): pending sends fail with TW_ESHUTDOWN, the peer sees
 * the connection go. */
Test(uring, local_close)
{
	struct env e;
	env_init(&e, false, NULL, NULL, true);
	/* queued while still connecting */
	enum { N = 4 };
	uint8_t *mem = malloc(frame_len(32) * N);
	struct sreq q[N];
	for (int i = 0; i < N; i++) {
		sreq_init(&q[i], &e.cli, mem + frame_len(32) * (size_t)i,
			  (uint64_t)i, 32, 1);
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	}
	e.cli.t->ops->close(e.cli.t, e.cc);
	cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[0].r),
		     TW_EUNREACHABLE);
	cr_assert(PUMP(&e, e.cli.conns_closed == 1, 5000));
	cr_assert_eq(e.cli.last_close_st, TW_ESHUTDOWN);
	cr_assert_eq(e.cli.dones_at_close, N);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(q[i].ndone, 1);
		cr_assert_eq(q[i].st, TW_ESHUTDOWN);
	}
	env_fini(&e);
	free(mem);
}

/* Garbage instead of a header: the connection closes with TW_EPROTO and
 * the bad frame is counted. */
Test(uring, garbage_header)
{
	struct env e;
	env_init(&e, false, NULL, NULL, false);
	int fd = raw_connect(e.bound);
	cr_assert(PUMP(&e, e.srv.conns_ok == 1, 5000));
	uint8_t junk[64];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	cr_assert(PUMP(&e, e.srv.conns_closed == 1, 5000));
	cr_assert_eq(e.srv.last_close_st, TW_EPROTO);
	cr_assert_eq(stats(&e.srv).bad_frames, 1);
	cr_assert_eq(e.srv.frames, 0);
	/* the raw peer sees EOF (or a reset) */
	char c;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	cr_assert_eq(poll(&pfd, 1, 5000), 1);
	cr_assert_leq(read(fd, &c, 1), 0);
	close(fd);

	/* A header over the receiver's limits is refused the same way. */
	e.srv.t->limits.max_payload = 1000;
	fd = raw_connect(e.bound);
	cr_assert(PUMP(&e, e.srv.conns_ok == 2, 5000));
	uint8_t *f = malloc(frame_len(2000));
	frame_build(f, 0, 2000);
	cr_assert_eq(write(fd, f, TW_FRAME_HDR_SIZE), TW_FRAME_HDR_SIZE);
	cr_assert(PUMP(&e, e.srv.conns_closed == 2, 5000));
	cr_assert_eq(e.srv.last_close_st, TW_EPROTO);
	cr_assert_eq(stats(&e.srv).bad_frames, 2);
	close(fd);
	free(f);
	env_fini(&e);
}

Test(uring, connect_refused)
{
	/* a port that was free a moment ago */
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(ls, (struct sockaddr *)&a, &al), 0);
	close(ls);
	char addr[64];
	snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%u",
		 (unsigned)ntohs(a.sin_port));

	struct tw_uring_opts o = default_opts();
	tw_loop *l = loop_new();
	struct side s;
	side_init(&s, l, true, &o);
	tw_conn *c = NULL;
	cr_assert_eq(s.t->ops->connect(s.t, addr, &c), TW_OK);
	uint8_t *mem = malloc(frame_len(8));
	struct sreq q;
	sreq_init(&q, &s, mem, 0, 8, 1);
	cr_assert_eq(tw_transport_send(s.t, c, &q.r), TW_OK);
	uint64_t dl = now_ns() + 5000000000ull;
	while (s.conns_closed == 0 && now_ns() < dl)
		tw_loop_poll_once(l);
	cr_assert_eq(s.conns_closed, 1);
	cr_assert_eq(s.conns_ok, 0);
	cr_assert_eq(s.last_closed, c);
	cr_assert_eq(s.last_close_st, TW_EUNREACHABLE);
	cr_assert_eq(q.ndone, 1);
	cr_assert_eq(q.st, TW_EUNREACHABLE);
	s.t->ops->destroy(s.t);
	tw_loop_destroy(l);
	free(mem);
}

/* SEND_ZC: done only after the notification; over loopback the kernel
 * reports copying and the connection falls back to plain sendmsg. */
Test(uring, send_zc_fallback)
{
	struct tw_uring_opts co = default_opts();
	co.zc_threshold = 1024;
	co.zc_same_host = true; /* loopback: only to exercise the path */
	struct env e;
	env_init(&e, false, NULL, &co, true);
	env_connected(&e);

	enum { N = 6, P = 8192 };
	uint8_t *mem = malloc(frame_len(P) * N);
	struct sreq q[N];
	for (int i = 0; i < N; i++)
		sreq_init(&q[i], &e.cli, mem + frame_len(P) * (size_t)i,
			  (uint64_t)i, P, 1);
	/* first batch: zero-copy */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	cr_assert(PUMP(&e, e.cli.dones == 3 && e.srv.frames == 3, 5000));
	struct tw_uring_stats cs = stats(&e.cli);
	cr_assert_geq(cs.zc_sends, 1);
	cr_assert_geq(cs.zc_notifs, 1);
	cr_assert_geq(cs.zc_copied, 1, "loopback should report COPIED");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(q[i].st, TW_OK);
		cr_assert_geq(q[i].zc_notifs_at_done, 1,
			      "done before the notification");
	}
	/* later sends go the plain way */
	uint64_t zc_before = cs.zc_sends, calls_before = cs.sendmsg_calls;
	for (int i = 3; i < N; i++)
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	cr_assert(PUMP(&e, e.cli.dones == N && e.srv.frames == N, 5000));
	cs = stats(&e.cli);
	cr_assert_eq(cs.zc_sends, zc_before);
	cr_assert_gt(cs.sendmsg_calls, calls_before);
	cr_assert_eq(e.srv.errors, 0);
	env_fini(&e);
	free(mem);
}

/* Zero-copy sends pending when the connection closes still complete once,
 * after their notification. */
Test(uring, send_zc_close_pending)
{
	struct tw_uring_opts co = default_opts();
	co.zc_threshold = 1024;
	co.zc_same_host = true; /* loopback: only to exercise the path */
	struct env e;
	env_init(&e, false, NULL, &co, true);
	env_connected(&e);
	enum { N = 4, P = 256 << 10 };
	uint8_t *mem = malloc(frame_len(P) * N);
	struct sreq q[N];
	for (int i = 0; i < N; i++) {
		sreq_init(&q[i], &e.cli, mem + frame_len(P) * (size_t)i,
			  (uint64_t)i, P, 3);
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	}
	/* one turn of the client: the batch goes out, then close */
	tw_loop_poll_once(e.cli.l);
	e.cli.t->ops->close(e.cli.t, e.cc);
	cr_assert(PUMP(&e, e.cli.conns_closed == 1, 5000));
	cr_assert_eq(e.cli.dones_at_close, N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(q[i].ndone, 1);
	env_fini(&e);
	free(mem);
}

/* destroy with a connection busy both ways frees everything (ASan checks
 * the rest) and reports the close. */
Test(uring, destroy_busy)
{
	struct env e;
	env_init(&e, false, NULL, NULL, true);
	env_connected(&e);
	enum { N = 64, P = 20000 };
	uint8_t *mem = malloc(frame_len(P) * N);
	struct sreq q[N];
	for (int i = 0; i < N; i++) {
		sreq_init(&q[i], &e.cli, mem + frame_len(P) * (size_t)i,
			  (uint64_t)i, P, 1);
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	}
	for (int i = 0; i < 3; i++)
		poll_both(&e);
	side_fini(&e.cli);
	cr_assert_eq(e.cli.conns_closed, 1);
	cr_assert_eq(e.cli.dones, N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(q[i].ndone, 1);
	/* the server notices */
	uint64_t dl = now_ns() + 5000000000ull;
	while (e.srv.conns_closed == 0 && now_ns() < dl)
		tw_loop_poll_once(e.srv.l);
	cr_assert_eq(e.srv.last_close_st, TW_EUNREACHABLE);
	cr_assert_eq(e.srv.errors, 0);
	env_fini(&e);
	free(mem);
}

/* Several connections share one small provided-buffer ring (so it runs
 * dry, -ENOBUFS, re-arm); each stream stays whole and in order. */
Test(uring, many_connections)
{
	enum { C = 4, N = 300 };
	struct tw_uring_opts so = default_opts();
	so.recv_buf_size = 4096;
	so.recv_buf_count = 4;
	struct env e;
	env_init(&e, false, &so, NULL, false);
	tw_conn *cc[C];
	for (int k = 0; k < C; k++)
		cr_assert_eq(e.cli.t->ops->connect(e.cli.t, e.bound, &cc[k]),
			     TW_OK);
	cr_assert(PUMP(&e, e.srv.conns_ok == C && e.cli.conns_ok == C, 5000));
	uint32_t sizes[N];
	size_t total = 0;
	for (int i = 0; i < N; i++) {
		sizes[i] = (uint32_t)((i * 7919u) % 20000u);
		total += frame_len(sizes[i]);
	}
	uint8_t *mem = malloc(total);
	struct sreq *q = calloc((size_t)C * N, sizeof(*q));
	size_t off = 0;
	for (int i = 0; i < N; i++) {
		for (int k = 0; k < C; k++)
			sreq_init(&q[k * N + i], &e.cli, mem + off, (uint64_t)i,
				  sizes[i], (i + k) % 2 ? 3 : 1);
		off += frame_len(sizes[i]);
	}
	/* the frames of one id share memory: every send only reads it */
	for (int i = 0; i < N; i++)
		for (int k = 0; k < C; k++)
			cr_assert_eq(tw_transport_send(e.cli.t, cc[k],
						       &q[k * N + i].r),
				     TW_OK);
	cr_assert(PUMP(&e, e.srv.frames == C * N && e.cli.dones == C * N, 8000),
		  "frames %lu", (unsigned long)e.srv.frames);
	cr_assert_eq(e.srv.errors, 0);
	cr_assert_eq(e.srv.misaligned, 0);
	for (int k = 0; k < C; k++)
		cr_assert_eq(e.srv.next_id[k], N);
	env_fini(&e);
	free(q);
	free(mem);
}

/* Requests of 3 iovecs: batches of IOV_MAX iovecs end inside a request,
 * which the next batch resumes at the right iovec. */
Test(uring, batches_cut_requests)
{
	enum { N = 3000, P = 40 };
	struct tw_uring_opts co = default_opts();
	co.max_queued = N;
	struct env e;
	env_init(&e, false, NULL, &co, true);
	env_connected(&e);
	uint8_t *mem = malloc(frame_len(P) * N);
	struct sreq *q = calloc(N, sizeof(*q));
	for (int i = 0; i < N; i++) {
		sreq_init(&q[i], &e.cli, mem + frame_len(P) * (size_t)i,
			  (uint64_t)i, P, 3);
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	}
	cr_assert(PUMP(&e, e.srv.frames == N && e.cli.dones == N, 8000));
	cr_assert_eq(e.srv.errors, 0);
	cr_assert_eq(e.cli.dones_ok, N);
	struct tw_uring_stats cs = stats(&e.cli);
	/* 9000 iovecs: at least 9 batches, and still far fewer than N */
	cr_assert_geq(cs.sendmsg_calls, 9);
	cr_assert_leq(cs.sendmsg_calls, 30);
	cr_assert_eq(cs.bytes_tx, (uint64_t)frame_len(P) * N);
	env_fini(&e);
	free(q);
	free(mem);
}

/* ------------------------------------------------------------------ */
/* Send strategies (uring_tx.c, tx_pick), seen from the inside          */

static uint32_t hows(const struct side *s, enum tx_how h)
{
	return ((const struct ut *)(const void *)s->t)->tx_hows[h];
}

/* Each batch shape goes its way: small pieces copied into one direct
 * send, contiguous up to 64 KiB a direct send, longer an io_uring send,
 * several large pieces a sendmsg; zero-copy until the kernel says it
 * copied. */
Test(uring, tx_strategies)
{
	struct env e;
	env_init(&e, false, NULL, NULL, true);
	env_connected(&e);
	struct sreq q[8];
	uint8_t *mem[8];
	send_one(&e, &q[0], &mem[0], 0, 1000, 3);
	cr_assert_eq(hows(&e.cli, TX_DIRECT), 1, "3 small pieces: one send");
	cr_assert_eq(stats(&e.cli).direct_sends, 1);
	send_one(&e, &q[1], &mem[1], 1, 32u << 10, 1);
	cr_assert_eq(hows(&e.cli, TX_DIRECT), 2, "32 KiB: direct");
	send_one(&e, &q[2], &mem[2], 2, 100u << 10, 1);
	cr_assert_eq(hows(&e.cli, TX_SEND), 1, "100 KiB in one piece");
	cr_assert_eq(hows(&e.cli, TX_DIRECT), 2);
	send_one(&e, &q[3], &mem[3], 3, 100u << 10, 3);
	cr_assert_eq(hows(&e.cli, TX_SENDMSG), 1, "100 KiB in pieces");
	cr_assert_eq(hows(&e.cli, TX_SEND), 1);

	/* Three small frames queued together: one copy, one send. */
	for (int i = 4; i < 7; i++) {
		mem[i] = malloc(frame_len(200));
		sreq_init(&q[i], &e.cli, mem[i], (uint64_t)i, 200, 1);
		cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q[i].r), TW_OK);
	}
	cr_assert(PUMP(&e, e.srv.frames == 7 && e.cli.dones == 7, 5000));
	cr_assert_eq(hows(&e.cli, TX_DIRECT), 3);
	cr_assert_eq(stats(&e.cli).sendmsg_calls, 5, "one call a batch");
	cr_assert_eq(hows(&e.cli, TX_SENDMSG_ZC), 0, "same host: no zc");
	cr_assert_eq(e.srv.errors, 0);
	env_fini(&e);
	for (int i = 0; i < 7; i++)
		free(mem[i]);

	struct tw_uring_opts co = default_opts();
	co.zc_threshold = 1024;
	co.zc_same_host = true; /* loopback: only to exercise the path */
	env_init(&e, false, NULL, &co, true);
	env_connected(&e);
	send_one(&e, &q[0], &mem[0], 0, 8192, 1);
	cr_assert_eq(hows(&e.cli, TX_SENDMSG_ZC), 1);
	cr_assert(PUMP(&e, stats(&e.cli).zc_copied == 1, 5000));
	send_one(&e, &q[1], &mem[1], 1, 8192, 1);
	cr_assert_eq(hows(&e.cli, TX_SENDMSG_ZC), 1, "copied: no more zc");
	cr_assert_eq(hows(&e.cli, TX_DIRECT), 1);
	cr_assert_eq(e.srv.errors, 0);
	env_fini(&e);
	free(mem[0]);
	free(mem[1]);
}

/* ------------------------------------------------------------------ */
/* Congestion control                                                  */

/* The congestion control of this process's TCP socket whose local port
 * (accepted side) or peer port (connecting side) is port; "" if none. */
static void cc_of(unsigned port, bool accepted, char *out, size_t n)
{
	out[0] = '\0';
	for (int fd = 3; fd < 4096; fd++) {
		struct sockaddr_in a;
		socklen_t al = sizeof(a);
		int r = accepted ? getsockname(fd, (struct sockaddr *)&a, &al)
				 : getpeername(fd, (struct sockaddr *)&a, &al);
		if (r != 0 || a.sin_family != AF_INET ||
		    ntohs(a.sin_port) != port)
			continue;
		if (accepted) { /* not the listener: it has no peer */
			struct sockaddr_in p;
			socklen_t pl = sizeof(p);
			if (getpeername(fd, (struct sockaddr *)&p, &pl) != 0)
				continue;
		}
		char cc[TW_URING_CC_NAME_MAX] = "";
		socklen_t cl = sizeof(cc);
		cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc,
					&cl),
			     0);
		snprintf(out, n, "%.*s", (int)strnlen(cc, cl), cc);
		return;
	}
}

/* What a new socket of this process gets. */
static void cc_system(char *out, size_t n)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	char cc[TW_URING_CC_NAME_MAX] = "";
	socklen_t cl = sizeof(cc);
	cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, &cl), 0);
	snprintf(out, n, "%.*s", (int)strnlen(cc, cl), cc);
	close(fd);
}

/* Both ends of a loopback connection get cc_local ("reno" by default);
 * "" keeps the system's; a name the kernel refuses is counted and the
 * connection carries frames on the system's algorithm. */
static void cc_case(const char *cc_local, const char *want, uint64_t set,
		    uint64_t failed)
{
	struct tw_uring_opts o = default_opts();
	if (cc_local != NULL)
		o.cc_local = cc_local;
	struct env e;
	env_init(&e, true, &o, &o, true);
	env_connected(&e);
	unsigned port = 0;
	cr_assert_eq(sscanf(e.bound, "tcp://127.0.0.1:%u", &port), 1);
	char got_srv[TW_URING_CC_NAME_MAX], got_cli[TW_URING_CC_NAME_MAX];
	cc_of(port, true, got_srv, sizeof(got_srv));
	cc_of(port, false, got_cli, sizeof(got_cli));
	cr_assert_str_eq(got_srv, want, "accepted side: %s, want %s", got_srv,
			 want);
	cr_assert_str_eq(got_cli, want, "connecting side: %s, want %s", got_cli,
			 want);
	struct tw_uring_stats cs = stats(&e.cli), ss = stats(&e.srv);
	cr_assert_eq(cs.cc_set, set);
	cr_assert_eq(ss.cc_set, set);
	cr_assert_eq(cs.cc_failed, failed);
	cr_assert_eq(ss.cc_failed, failed);

	uint8_t *mem = malloc(frame_len(300));
	struct sreq q;
	sreq_init(&q, &e.cli, mem, 0, 300, 9);
	cr_assert_eq(tw_transport_send(e.cli.t, e.cc, &q.r), TW_OK);
	cr_assert(PUMP(&e, e.srv.frames == 1 && q.ndone == 1, 5000));
	cr_assert_eq(e.srv.errors, 0);
	env_fini(&e);
	free(mem);
}

Test(uring, congestion_control)
{
	struct tw_uring_opts d;
	tw_uring_opts_init(&d, sizeof(d));
	cr_assert_str_eq(d.cc_local, "reno");
	cr_assert_null(d.cc_remote);

	char sys[TW_URING_CC_NAME_MAX];
	cc_system(sys, sizeof(sys));
	cc_case(NULL, "reno", 1, 0);
	cc_case("", sys, 0, 0);
	cc_case("no-such-cc", sys, 0, 1);

	/* longer than the kernel's names: refused at once */
	tw_loop *l = loop_new();
	struct side s;
	struct tw_transport_cbs cbs = {
		.ctx = &s, .on_frame = on_frame, .on_conn = on_conn};
	struct tw_uring_opts bad = default_opts();
	bad.cc_local = "a-name-of-16-chr";
	tw_transport *t = NULL;
	cr_assert_eq(tw_uring_transport_create(l, &bad, &cbs, &t), TW_EINVAL);
	bad = default_opts();
	bad.cc_remote = "a-name-of-16-chr";
	cr_assert_eq(tw_uring_transport_create(l, &bad, &cbs, &t), TW_EINVAL);
	cr_assert_null(t);
	tw_loop_destroy(l);
}

/* ------------------------------------------------------------------ */
/* Hardening: limits on what a peer can make the transport hold         */

Test(uring, hardening_opts_checked)
{
	struct tw_uring_opts o = default_opts();
	cr_assert_eq(o.asm_worker_bytes, 4 * URING_FRAME_DEFAULT_MAX);
	cr_assert_eq(o.asm_host_bytes, 2 * URING_FRAME_DEFAULT_MAX);
	cr_assert_eq(o.stall_timeout_ms, 30000);
	cr_assert_eq(o.max_conns_per_host, 512);
	cr_assert_eq(o.max_conns, 2048);
	cr_assert_eq(o.user_timeout_ms, 300000);
	cr_assert_eq(tw_uring_opts_check(&o), TW_OK);
	for (int i = 0; i < 6; i++) {
		o = default_opts();
		const char *want = NULL;
		switch (i) {
		case 0:
			o.asm_host_bytes = 0;
			want = "asm_host_bytes";
			break;
		case 1:
			o.asm_worker_bytes = o.asm_host_bytes - 1;
			want = "asm_worker_bytes";
			break;
		case 2:
			o.max_conns_per_host = 0;
			want = "max_conns_per_host";
			break;
		case 3:
			o.max_conns = o.max_conns_per_host - 1;
			want = "max_conns";
			break;
		case 4:
			o.user_timeout_ms = 999;
			want = "user_timeout_ms";
			break;
		case 5:
			o.stall_timeout_ms = 3;
			want = "stall_timeout_ms";
			break;
		}
		tw_status st = tw_uring_opts_check(&o);
		cr_assert_eq(st, TW_EINVAL, "case %d", i);
		cr_assert(strstr(tw_errmsg(st), want) != NULL, "case %d: %s", i,
			  tw_errmsg(st));
	}
}

static int sockopt_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	cr_assert_eq(getsockopt(fd, level, name, &v, &l), 0);
	return v;
}

/* Every connection, connected or accepted, has keepalive and the user
 * timeout: a vanished host fails it in bounded time. 0 leaves the
 * system's. */
Test(uring, keepalive_and_user_timeout)
{
	struct tw_uring_opts o = default_opts();
	o.user_timeout_ms = 12000;
	struct env e;
	env_init(&e, false, &o, &o, true);
	env_connected(&e);
	int fds[2] = {((struct uconn *)(void *)e.cc)->fd,
		      ((struct uconn *)(void *)e.srv.last_ok)->fd};
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(sockopt_int(fds[i], SOL_SOCKET, SO_KEEPALIVE), 1);
		cr_assert_eq(sockopt_int(fds[i], IPPROTO_TCP, TCP_USER_TIMEOUT),
			     12000);
		cr_assert_eq(sockopt_int(fds[i], IPPROTO_TCP, TCP_KEEPIDLE), 6);
		cr_assert_eq(sockopt_int(fds[i], IPPROTO_TCP, TCP_KEEPINTVL),
			     2);
		cr_assert_eq(sockopt_int(fds[i], IPPROTO_TCP, TCP_KEEPCNT), 3);
	}
	env_fini(&e);

	o.user_timeout_ms = 0;
	env_init(&e, false, &o, &o, true);
	env_connected(&e);
	int fd = ((struct uconn *)(void *)e.cc)->fd;
	cr_assert_eq(sockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
	cr_assert_eq(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
	env_fini(&e);
}

/* TCP's retransmission backoff is capped at rto_max_ms where the kernel
 * has TCP_RTO_MAX_MS (Linux 6.15); elsewhere the refusal is counted. */
Test(uring, rto_max_capped)
{
	struct tw_uring_opts o = default_opts();
	o.rto_max_ms = 2000;
	struct env e;
	env_init(&e, false, &o, &o, true);
	env_connected(&e);
	int fds[2] = {((struct uconn *)(void *)e.cc)->fd,
		      ((struct uconn *)(void *)e.srv.last_ok)->fd};
	int v = -1;
	socklen_t l = sizeof(v);
	bool has = getsockopt(fds[0], IPPROTO_TCP, TW_TCP_RTO_MAX_MS, &v, &l) ==
		   0;
	for (int i = 0; i < 2; i++) {
		if (has)
			cr_assert_eq(sockopt_int(fds[i], IPPROTO_TCP,
						 TW_TCP_RTO_MAX_MS),
				     2000);
	}
	struct tw_uring_stats cs = stats(&e.cli);
	cr_assert(has ? cs.rto_max_unset == 0 : cs.rto_max_unset >= 1, "%llu",
		  (unsigned long long)cs.rto_max_unset);
	env_fini(&e);
	o.rto_max_ms = 999;
	cr_assert_eq(tw_uring_opts_check(&o), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "rto_max_ms 999") != NULL);
}

/* Accepted connections beyond max_conns_per_host from one host are closed
 * at once, before the layer above sees them; one that goes frees its
 * place. */
Test(uring, connections_per_host_bounded)
{
	struct tw_uring_opts o = default_opts();
	o.max_conns_per_host = 2;
	o.max_conns = 3;
	struct env e;
	env_init(&e, false, &o, NULL, false);
	int fd[4];
	for (int i = 0; i < 4; i++)
		fd[i] = raw_connect(e.bound);
	cr_assert(PUMP(&e, stats(&e.srv).conns_refused == 2, 5000),
		  "refused %lu", (unsigned long)stats(&e.srv).conns_refused);
	cr_assert_eq(e.srv.conns_ok, 2);
	cr_assert_eq(stats(&e.srv).conns_accepted, 2);
	/* The refused ones see the close. */
	int closed = 0;
	for (int i = 0; i < 4; i++) {
		char c;
		struct pollfd pfd = {.fd = fd[i], .events = POLLIN};
		if (poll(&pfd, 1, 0) == 1 && read(fd[i], &c, 1) <= 0)
			closed++;
	}
	cr_assert_eq(closed, 2);
	/* A peer's connection closing makes room for another. */
	for (int i = 0; i < 4; i++)
		close(fd[i]);
	cr_assert(PUMP(&e, e.srv.conns_closed == 2, 5000));
	fd[0] = raw_connect(e.bound);
	cr_assert(PUMP(&e, e.srv.conns_ok == 3, 5000));
	cr_assert_eq(stats(&e.srv).conns_refused, 2);
	close(fd[0]);
	env_fini(&e);
}

/* A host's entry in the per-host table is freed with its last
 * connection: after more hosts than the table holds have come and gone,
 * two new hosts still get a limit each, rather than sharing the one
 * entry the overflow shares. */
Test(uring, host_entries_freed, .timeout = 120)
{
	struct tw_uring_opts o = default_opts();
	o.max_conns_per_host = 2;
	struct env e;
	env_init(&e, false, &o, NULL, false);
	enum { HOSTS = 2048 + 64, BATCH = 64 };
	for (uint32_t h = 0; h < HOSTS; h += BATCH) {
		int fd[BATCH];
		for (uint32_t i = 0; i < BATCH; i++)
			fd[i] = raw_connect_from(e.bound, 0x10000u + h + i);
		int want = e.srv.conns_ok + BATCH;
		cr_assert(PUMP(&e, e.srv.conns_ok == want, 5000), "ok %d",
			  e.srv.conns_ok);
		for (uint32_t i = 0; i < BATCH; i++)
			close(fd[i]);
		cr_assert(PUMP(&e, e.srv.conns_closed == want, 5000));
	}
	cr_assert_eq(stats(&e.srv).conns_refused, 0);
	int ok = e.srv.conns_ok;
	int a[3], b[2];
	for (int i = 0; i < 3; i++)
		a[i] = raw_connect_from(e.bound, 0x20001u);
	for (int i = 0; i < 2; i++)
		b[i] = raw_connect_from(e.bound, 0x20002u);
	cr_assert(PUMP(&e, e.srv.conns_ok == ok + 4, 5000), "ok %d",
		  e.srv.conns_ok - ok);
	cr_assert(PUMP(&e, stats(&e.srv).conns_refused == 1, 5000));
	for (int i = 0; i < 3; i++)
		close(a[i]);
	for (int i = 0; i < 2; i++)
		close(b[i]);
	env_fini(&e);
}

/* A partial frame (a header begun, a body unfinished) that makes no
 * progress for stall_timeout_ms ends its connection with TW_ETIMEDOUT;
 * a connection idle between frames stays. */
Test(uring, stalled_frame_times_out, .timeout = 60)
{
	struct tw_uring_opts o = default_opts();
	o.stall_timeout_ms = 200;
	struct env e;
	env_init(&e, false, &o, NULL, false);
	int idle = raw_connect(e.bound);
	int half_hdr = raw_connect(e.bound);
	int half_body = raw_connect(e.bound);
	cr_assert(PUMP(&e, e.srv.conns_ok == 3, 5000));
	uint8_t *f = malloc(frame_len(1000));
	frame_build(f, 0, 1000);
	cr_assert_eq(write(half_hdr, f, 20), 20);
	cr_assert_eq(write(half_body, f, TW_FRAME_HDR_SIZE + 500),
		     (ssize_t)(TW_FRAME_HDR_SIZE + 500));
	uint64_t t0 = now_ns();
	cr_assert(PUMP(&e, e.srv.conns_closed == 2, 10000), "closed %d",
		  e.srv.conns_closed);
	cr_assert_geq(now_ns() - t0, 150ull * 1000 * 1000,
		      "closed before the stall timeout");
	cr_assert_eq(e.srv.last_close_st, TW_ETIMEDOUT);
	cr_assert(strstr(e.srv.last_close_why, "stall_timeout_ms") != NULL,
		  "%s", e.srv.last_close_why);
	cr_assert_eq(stats(&e.srv).stalls, 2);
	/* The idle one is still up a while later. */
	uint64_t dl = now_ns() + 400ull * 1000 * 1000;
	while (now_ns() < dl)
		poll_both(&e);
	cr_assert_eq(e.srv.conns_closed, 2);
	close(idle);
	close(half_hdr);
	close(half_body);
	free(f);
	env_fini(&e);
}

static void feed(int fd, const uint8_t *f, size_t len, size_t *at)
{
	if (*at >= len)
		return;
	ssize_t r = write(fd, f + *at, len - *at);
	if (r > 0)
		*at += (size_t)r;
}

/* Frames above a pool buffer reserve their size: with room for one at a
 * time from a host, the second header waits (its connection unread)
 * until the first frame is whole, and then both arrive intact. */
Test(uring, assembly_bounded_per_host, .timeout = 60)
{
	enum { P = 800 << 10 };
	struct tw_uring_opts o = default_opts();
	o.asm_host_bytes = 1u << 20;
	o.asm_worker_bytes = 1u << 20;
	o.busy_poll_conns = 0;
	struct env e;
	env_init(&e, false, &o, NULL, false);
	int a = raw_connect(e.bound);
	int b = raw_connect(e.bound);
	cr_assert(PUMP(&e, e.srv.conns_ok == 2, 5000));
	uint8_t *f = malloc(frame_len(P));
	frame_build(f, 0, P);
	/* a: the header and some of the body; its frame holds the room. */
	cr_assert_eq(write(a, f, 4096), 4096);
	cr_assert(PUMP(&e, stats(&e.srv).large_frames == 1, 5000));
	/* b: a whole frame, which must wait. */
	size_t at = 0, len = frame_len(P);
	int fl = fcntl(b, F_GETFL);
	cr_assert_eq(fcntl(b, F_SETFL, fl | O_NONBLOCK), 0);
	uint64_t dl = now_ns() + 5000ull * 1000 * 1000;
	while (stats(&e.srv).asm_waits == 0 && now_ns() < dl) {
		feed(b, f, len, &at);
		poll_both(&e);
	}
	cr_assert_eq(stats(&e.srv).asm_waits, 1);
	cr_assert_eq(e.srv.frames, 0);
	/* a completes: b's frame goes on. */
	size_t at_a = 4096;
	cr_assert_eq(fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK), 0);
	dl = now_ns() + 10000ull * 1000 * 1000;
	while (e.srv.frames < 2 && now_ns() < dl) {
		feed(a, f, len, &at_a);
		feed(b, f, len, &at);
		poll_both(&e);
	}
	cr_assert_eq(e.srv.frames, 2);
	cr_assert_eq(e.srv.errors, 0);
	cr_assert_eq(e.srv.conns_closed, 0);
	cr_assert_eq(
		atomic_load(&((struct ut *)(void *)e.srv.t)->sh->asm_bytes), 0);
	close(a);
	close(b);
	free(f);
	env_fini(&e);
}

/* accept failing for want of fds (EMFILE) backs off instead of re-arming
 * at once: few failures in a while, not a spin; accepting resumes once
 * fds free. (Criterion runs each test in its own process: the limit
 * stays there.) */
Test(uring, accept_backs_off_on_emfile, .timeout = 60)
{
	enum { N = 4 };
	struct env e;
	env_init(&e, false, NULL, NULL, false);
	unsigned port = 0;
	cr_assert_eq(sscanf(e.bound, "tcp://127.0.0.1:%u", &port), 1);
	int fd[N];
	for (int i = 0; i < N; i++) {
		fd[i] = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert(fd[i] >= 0);
	}
	/* No fd left to accept into. */
	int top = dup(0);
	cr_assert(top >= 0);
	close(top);
	struct rlimit old, lim;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)top;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int i = 0; i < N; i++)
		cr_assert_eq(connect(fd[i], (struct sockaddr *)&sa, sizeof(sa)),
			     0);
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	uint64_t t0 = now_ns();
	uint64_t dl = t0 + 500ull * 1000 * 1000;
	while (now_ns() < dl) {
		poll_both(&e);
		usleep(1000); /* a loop that sleeps when it has nothing */
	}
	getrusage(RUSAGE_SELF, &r1);
	struct tw_uring_stats us = stats(&e.srv);
	cr_assert_geq(us.accept_errors, 1);
	cr_assert_geq(us.accept_backoffs, 1);
	/* 10 + 20 + 40 + 80 + 160 ms: a handful in 500 ms, not thousands. */
	cr_assert_leq(us.accept_errors, 20, "%lu accept failures: spinning",
		      (unsigned long)us.accept_errors);
	cr_assert_eq(e.srv.conns_ok, 0);
	double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
		     (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
		     (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
		     (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
	cr_log_info("accept backoff: %.3f s of CPU in 0.5 s", cpu);
	/* fds free: accepting resumes (the backoff is at most 1 s). */
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	cr_assert(PUMP(&e, e.srv.conns_ok == N, 10000), "accepted %d",
		  e.srv.conns_ok);
	for (int i = 0; i < N; i++)
		close(fd[i]);
	env_fini(&e);
}

/* close_after_send: the connection stops being read at once, refuses new
 * sends, and closes with the given status once its queue has left, or at
 * the deadline when the peer does not read. */
Test(uring, close_after_send_waits_for_the_queue, .timeout = 60)
{
	struct env e;
	env_init(&e, false, NULL, NULL, true);
	env_connected(&e);
	/* A peer that reads: the frame leaves, then the close. */
	uint8_t *mem = malloc(frame_len(1000));
	struct sreq q;
	sreq_init(&q, &e.cli, mem, 0, 1000, 1);
	cr_assert_eq(e.cli.t->ops->send(e.cli.t, e.cc, &q.r), TW_OK);
	e.cli.t->ops->close_after_send(e.cli.t, e.cc, TW_EVERSION);
	struct sreq late;
	sreq_init(&late, &e.cli, mem, 1, 1000, 1);
	cr_assert_eq(e.cli.t->ops->send(e.cli.t, e.cc, &late.r),
		     TW_EUNREACHABLE);
	cr_assert(PUMP(&e, e.cli.conns_closed == 1 && e.srv.conns_closed == 1,
		       5000));
	cr_assert_eq(q.ndone, 1);
	cr_assert_eq(q.st, TW_OK);
	cr_assert_eq(e.srv.frames, 1, "the frame left before the close");
	cr_assert_eq(e.cli.last_close_st, TW_EVERSION);
	cr_assert_eq(stats(&e.cli).lingers_cut, 0);
	env_fini(&e);

	/* A peer that does not read (paused): cut at the deadline. */
	struct tw_uring_opts o = default_opts();
	o.sockbuf = 64 << 10;
	env_init(&e, false, &o, &o, true);
	env_connected(&e);
	tw_transport_pause(e.srv.t, e.srv.last_ok, true);
	enum { BIG = 32 << 20 };
	uint8_t *big = malloc(frame_len(BIG));
	sreq_init(&q, &e.cli, big, 0, BIG, 1);
	cr_assert_eq(e.cli.t->ops->send(e.cli.t, e.cc, &q.r), TW_OK);
	uint64_t t0 = now_ns();
	e.cli.t->ops->close_after_send(e.cli.t, e.cc, TW_EPROTO);
	cr_assert(PUMP(&e, e.cli.conns_closed == 1, 10000));
	cr_assert_geq(now_ns() - t0, TW_CLOSE_AFTER_SEND_NS / 2);
	cr_assert_eq(e.cli.last_close_st, TW_EPROTO);
	cr_assert_eq(stats(&e.cli).lingers_cut, 1);
	cr_assert_eq(q.ndone, 1);
	cr_assert_eq(q.st, TW_EPROTO);
	cr_assert_eq(stats(&e.srv).pauses, 1);
	env_fini(&e);
	free(big);
	free(mem);
}

/* A host that vanishes (a network namespace behind a veth pair, whose
 * far end then goes down: everything sent is dropped, nothing answers): with user_timeout_ms the connection fails
 * within about that long instead of TCP's ~15 minutes of retries. Root
 * only; the namespace and the pair are the test's and go with it. */
Test(uring, vanished_host_fails_within_the_user_timeout, .timeout = 60)
{
	if (geteuid() != 0)
		cr_skip_test("needs root (a network namespace)");
	int pid = (int)getpid();
	char ns[32], va[32], vb[32], ip_a[32], ip_b[32];
	snprintf(ns, sizeof(ns), "twu%d", pid);
	snprintf(va, sizeof(va), "twu%da", pid);
	snprintf(vb, sizeof(vb), "twu%db", pid);
	snprintf(ip_a, sizeof(ip_a), "10.199.%d.1", pid % 250);
	snprintf(ip_b, sizeof(ip_b), "10.199.%d.2", pid % 250);
	if (hn_sh("ip netns add %s", ns) != 0)
		cr_skip_test("ip netns add failed");
	bool ok = hn_sh("ip link add %s type veth peer name %s", va, vb) == 0 &&
		  hn_sh("ip link set %s netns %s", vb, ns) == 0 &&
		  hn_sh("ip addr add %s/30 dev %s", ip_a, va) == 0 &&
		  hn_sh("ip link set %s up", va) == 0 &&
		  hn_sh("ip -n %s addr add %s/30 dev %s", ns, ip_b, vb) == 0 &&
		  hn_sh("ip -n %s link set %s up", ns, vb) == 0;
	int ready[2];
	cr_assert_eq(pipe(ready), 0);
	pid_t child = -1;
	if (ok && (child = fork()) == 0) {
		/* The far host: accept and read whatever comes. */
		char path[64];
		snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
		int nfd = open(path, O_RDONLY);
		if (nfd < 0 || setns(nfd, CLONE_NEWNET) != 0)
			_exit(1);
		int l = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons(7411)};
		inet_pton(AF_INET, ip_b, &sa.sin_addr);
		int one = 1;
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    listen(l, 4) != 0)
			_exit(1);
		(void)!write(ready[1], "r", 1);
		int c = accept(l, NULL, NULL);
		char buf[65536];
		while (c >= 0 && read(c, buf, sizeof(buf)) > 0)
			;
		_exit(0);
	}
	char r = 0;
	if (ok && child > 0)
		ok = read(ready[0], &r, 1) == 1;
	struct tw_uring_opts o = default_opts();
	o.user_timeout_ms = 1000;
	struct side cli;
	tw_loop *l = loop_new();
	side_init(&cli, l, true, &o);
	char addr[64];
	snprintf(addr, sizeof(addr), "tcp://%s:7411", ip_b);
	tw_conn *c = NULL;
	uint8_t *mem = malloc(frame_len(60000));
	struct sreq q1, q2;
	uint64_t t0 = 0, took = 0;
	if (ok) {
		ok = cli.t->ops->connect(cli.t, addr, &c) == TW_OK;
		uint64_t dl = now_ns() + 10000ull * 1000 * 1000;
		while (ok && cli.conns_ok + cli.conns_closed == 0 &&
		       now_ns() < dl)
			tw_loop_poll_once(l);
		ok = ok && cli.conns_ok == 1;
		sreq_init(&q1, &cli, mem, 0, 60000, 1);
		ok = ok && cli.t->ops->send(cli.t, c, &q1.r) == TW_OK;
		while (ok && q1.ndone == 0 && now_ns() < dl)
			tw_loop_poll_once(l);
		ok = ok && q1.st == TW_OK;
		/* The host vanishes: its end of the pair goes down, so the
		 * veth drops everything sent to it, silently (this kernel
		 * has no netem). */
		ok = hn_sh("ip -n %s link set %s down", ns, vb) == 0;
		sreq_init(&q2, &cli, mem, 1, 60000, 1);
		if (ok)
			ok = cli.t->ops->send(cli.t, c, &q2.r) == TW_OK;
		t0 = now_ns();
		dl = t0 + 30000ull * 1000 * 1000;
		while (ok && cli.conns_closed == 0 && now_ns() < dl) {
			tw_loop_poll_once(l);
			usleep(1000);
		}
		took = now_ns() - t0;
	}
	side_fini(&cli);
	tw_loop_destroy(l);
	free(mem);
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	hn_sh("ip link del %s", va);
	hn_sh("ip netns del %s", ns);
	close(ready[0]);
	close(ready[1]);
	cr_assert(ok, "setting up the namespace, the pair or the connection "
		      "failed");
	cr_assert_eq(cli.conns_closed, 1,
		     "still open %.1f s after the host "
		     "vanished",
		     (double)took / 1e9);
	cr_assert_eq(cli.last_close_st, TW_EUNREACHABLE);
	cr_log_info("vanished host: connection failed after %.2f s",
		    (double)took / 1e9);
}

/* The per-worker bound spans the provider's loops (one tw_uring_shared):
 * a large frame assembling on one loop makes another loop's header wait,
 * and that loop's retry timer lets it go on once the first is whole. */
Test(uring, assembly_bounded_across_loops, .timeout = 60)
{
	enum { P = 800 << 10 };
	struct tw_uring_opts o = default_opts();
	o.asm_host_bytes = 1u << 20;
	o.asm_worker_bytes = 1u << 20;
	o.busy_poll_conns = 0;
	struct tw_uring_shared *sh = tw_uring_shared_create();
	cr_assert_not_null(sh);
	struct side s[2];
	char bound[2][64];
	int fd[2];
	for (int i = 0; i < 2; i++) {
		memset(&s[i], 0, sizeof(s[i]));
		s[i].l = loop_new();
		struct tw_transport_cbs cbs = {
			.ctx = &s[i], .on_frame = on_frame, .on_conn = on_conn};
		cr_assert_eq(tw_uring_transport_create_in(s[i].l, &o, &cbs, sh,
							  &s[i].t),
			     TW_OK);
		cr_assert_eq(s[i].t->ops->listen(s[i].t, "tcp://127.0.0.1:0",
						 bound[i], sizeof(bound[i])),
			     TW_OK);
		fd[i] = raw_connect(bound[i]);
	}
#define POLL2(cond, ms)                                                        \
	({                                                                     \
		uint64_t dl_ = now_ns() + (uint64_t)(ms)*1000000ull;           \
		while (!(cond) && now_ns() < dl_) {                            \
			tw_loop_poll_once(s[0].l);                             \
			tw_loop_poll_once(s[1].l);                             \
			feed(fd[1], f, len, &at);                              \
			feed(fd[0], f, len, &at0);                             \
		}                                                              \
		(bool)(cond);                                                  \
	})
	uint8_t *f = malloc(frame_len(P));
	frame_build(f, 0, P);
	size_t len = frame_len(P), at = len, at0 = len; /* not fed yet */
	cr_assert(POLL2(s[0].conns_ok == 1 && s[1].conns_ok == 1, 5000));
	cr_assert_eq(write(fd[0], f, 4096), 4096);
	cr_assert(POLL2(stats(&s[0]).large_frames == 1, 5000));
	int fl = fcntl(fd[1], F_GETFL);
	cr_assert_eq(fcntl(fd[1], F_SETFL, fl | O_NONBLOCK), 0);
	at = 0;
	cr_assert(POLL2(stats(&s[1]).asm_waits == 1, 5000));
	cr_assert_eq(s[1].frames, 0);
	cr_assert_eq(fcntl(fd[0], F_SETFL, fcntl(fd[0], F_GETFL) | O_NONBLOCK),
		     0);
	at0 = 4096; /* the rest of fd[0]'s frame, fed as the loops go */
	cr_assert(POLL2(s[0].frames == 1 && s[1].frames == 1, 10000),
		  "frames %lu, %lu", (unsigned long)s[0].frames,
		  (unsigned long)s[1].frames);
#undef POLL2
	cr_assert_eq(s[0].errors + s[1].errors, 0);
	cr_assert_eq(atomic_load(&sh->asm_bytes), 0);
	for (int i = 0; i < 2; i++) {
		close(fd[i]);
		side_fini(&s[i]);
		tw_loop_destroy(s[i].l);
	}
	tw_uring_shared_destroy(sh);
	free(f);
}

/* A byte now and then is no progress (slowloris): a frame whose body
 * trickles in at far below STALL_MIN_BYTES per window is closed as
 * stalled all the same. */
Test(uring, trickled_frame_times_out, .timeout = 60)
{
	struct tw_uring_opts o = default_opts();
	o.stall_timeout_ms = 600;
	struct env e;
	env_init(&e, false, &o, NULL, false);
	int fd = raw_connect(e.bound);
	cr_assert(PUMP(&e, e.srv.conns_ok == 1, 5000));
	uint8_t *f = malloc(frame_len(100000));
	frame_build(f, 0, 100000);
	cr_assert_eq(write(fd, f, TW_FRAME_HDR_SIZE),
		     (ssize_t)TW_FRAME_HDR_SIZE);
	size_t off = TW_FRAME_HDR_SIZE;
	uint64_t dl = now_ns() + 5000ull * 1000 * 1000;
	while (e.srv.conns_closed == 0 && now_ns() < dl) {
		uint64_t next = now_ns() + 10ull * 1000 * 1000;
		while (now_ns() < next)
			poll_both(&e);
		/* (once the server closed, a write would raise SIGPIPE) */
		if (send(fd, f + off, 1, MSG_NOSIGNAL) == 1)
			off++;
	}
	cr_assert_eq(e.srv.conns_closed, 1, "the trickle was closed");
	cr_assert_eq(e.srv.last_close_st, TW_ETIMEDOUT);
	cr_assert_eq(stats(&e.srv).stalls, 1);
	/* Some bytes moved during the window (a loaded machine may run
	 * this loop rarely: a few suffice to make it a trickle). */
	cr_assert_gt(off, TW_FRAME_HDR_SIZE + 3, "bytes kept coming");
	close(fd);
	free(f);
	env_fini(&e);
}

/* A connection request nobody answers (the listener's accept queue is
 * full: Linux drops the SYN, and would retry it for two minutes) fails at
 * connect_timeout_ms, saying so. */
Test(uring, connect_timeout_fails_an_unanswered_connect)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(ls, 0), 0);
	cr_assert_eq(getsockname(ls, (struct sockaddr *)&a, &al), 0);
	/* Fill the accept queue (backlog 0 holds one): never accepted. */
	int filler[2];
	for (int i = 0; i < 2; i++) {
		filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		(void)connect(filler[i], (struct sockaddr *)&a, sizeof(a));
	}
	usleep(50000);

	struct tw_uring_opts o = default_opts();
	cr_assert_eq(o.connect_timeout_ms, 10000);
	o.connect_timeout_ms = 300;
	tw_loop *l = loop_new();
	struct side s;
	side_init(&s, l, true, &o);
	char addr[64];
	snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%u",
		 (unsigned)ntohs(a.sin_port));
	tw_conn *c = NULL;
	uint64_t t0 = now_ns();
	cr_assert_eq(s.t->ops->connect(s.t, addr, &c), TW_OK);
	uint64_t dl = t0 + 5000000000ull;
	while (s.conns_ok + s.conns_closed == 0 && now_ns() < dl)
		tw_loop_poll_once(l);
	uint64_t took = now_ns() - t0;
	cr_assert_eq(s.conns_ok, 0, "the connect was answered");
	cr_assert_eq(s.conns_closed, 1);
	cr_assert_eq(s.last_close_st, TW_EUNREACHABLE);
	cr_assert(s.last_close_why != NULL &&
		  strstr(s.last_close_why, "connect_timeout_ms") != NULL);
	cr_assert_eq(stats(&s).connect_timeouts, 1);
	cr_assert(took >= 250000000ull && took < 2000000000ull,
		  "failed after %llu ms", (unsigned long long)(took / 1000000));
	side_fini(&s);
	for (int i = 0; i < 2; i++)
		close(filler[i]);
	close(ls);
}
