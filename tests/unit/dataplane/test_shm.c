/* Unit tests for dataplane/shm*.c: the same-host transport, driven in
 * embedded mode by the test thread, against a second process where a
 * peer must die or sleep, and against a hand-made hostile peer that
 * writes the protocol (and the rings) itself. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/buf.h>
#include <tensorwire/frame.h>
#include <tensorwire/shm.h>
#include <tensorwire/status.h>

#include "dataplane/loop.h"
#include "dataplane/shm.h"
#include "dataplane/shm_impl.h" /* the socket messages, for the hostile peer */
#include "dataplane/shm_ring.h"
#include "dataplane/transport.h"
#include "tests/lib/shm_msg_send.h"

#define MS UINT64_C(1000000)
#define LIVE_MS 20000

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Frames: a header and a payload that depends on id and offset         */

static inline uint8_t pat(uint64_t id, size_t i)
{
	return (uint8_t)(id * 151u + i + (i >> 8) * 3u);
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
		.total_len = TW_FRAME_HDR_SIZE + (uint64_t)payload,
	};
	tw_frame_hdr_encode(dst, &h);
	for (size_t i = 0; i < payload; i++)
		dst[TW_FRAME_HDR_SIZE + i] = pat(id, i);
}

/* The first 64 bytes of frame id of payload bytes (the header and 16 of
 * the payload). */
static void frame_head(uint8_t *dst, uint64_t id, uint32_t payload)
{
	tw_frame_hdr h = {
		.version = TW_FRAME_VERSION,
		.type = (uint8_t)(1 + id % 13),
		.req_id = id,
		.src = 1,
		.dst = 2,
		.payload_len = payload,
		.total_len = TW_FRAME_HDR_SIZE + (uint64_t)payload,
	};
	tw_frame_hdr_encode(dst, &h);
	for (size_t i = 0; i < 16; i++)
		dst[TW_FRAME_HDR_SIZE + i] = pat(id, i);
}

/* ------------------------------------------------------------------ */
/* One side: a loop, a transport, what its upcalls saw                  */

#define MAXC 16

struct side;

struct cst {
	struct side *s;
	tw_conn *c;
	uint64_t next_rx, next_tx;
	uint64_t frames, bytes;
	int ups, closes;
	tw_status close_st;
	const char *why;
	uint64_t close_ns;
	uint64_t dones_at_close;
};

struct side {
	tw_loop *l;
	tw_transport *t;
	char bound[160];
	bool trust;           /* trusted() when a connection comes up */
	bool echo;            /* send every frame back */
	uint32_t pause_every; /* pause a connection inside every nth
			       * on_frame (0: never) */
	struct cst cs[MAXC];
	int ncs;
	uint64_t errors;
	char why[256];
	uint64_t dones, dones_ok, dones_err;
	tw_status last_done_st;
};

static void err(struct side *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void err(struct side *s, const char *fmt, ...)
{
	if (s->errors++ > 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
}

struct sreq {
	struct tw_send_req r;
	struct iovec iov[3];
	uint8_t *mem;
	struct side *s;
	tw_buf *hold; /* echo: the received frame */
};

static void on_done(struct tw_send_req *r, tw_status st)
{
	struct sreq *q = container_of(r, struct sreq, r);
	struct side *s = q->s;
	s->dones++;
	if (st == TW_OK)
		s->dones_ok++;
	else
		s->dones_err++;
	s->last_done_st = st;
	tw_buf_release(q->hold);
	free(q->mem);
	free(q);
}

/* Frame id of payload bytes on cs, in up to three iovecs. */
static tw_status send_frame(struct cst *cs, uint64_t id, uint32_t payload)
{
	struct side *s = cs->s;
	struct sreq *q = calloc(1, sizeof(*q));
	cr_assert_not_null(q);
	size_t len = TW_FRAME_HDR_SIZE + (size_t)payload;
	q->mem = malloc(len);
	cr_assert_not_null(q->mem);
	frame_build(q->mem, id, payload);
	q->s = s;
	if (id % 2 == 0 || payload < 2) {
		q->iov[0] = (struct iovec){q->mem, len};
		q->r.niov = 1;
	} else {
		size_t a = TW_FRAME_HDR_SIZE, b = payload / 2;
		q->iov[0] = (struct iovec){q->mem, a};
		q->iov[1] = (struct iovec){q->mem + a, b};
		q->iov[2] = (struct iovec){q->mem + a + b, len - a - b};
		q->r.niov = 3;
	}
	q->r.iov = q->iov;
	q->r.len = len;
	q->r.type = 1;
	q->r.done = on_done;
	tw_status st = tw_transport_send(s->t, cs->c, &q->r);
	if (st != TW_OK) {
		free(q->mem);
		free(q);
	}
	return st;
}

static tw_status send_next(struct cst *cs, uint32_t payload)
{
	tw_status st = send_frame(cs, cs->next_tx, payload);
	if (st == TW_OK)
		cs->next_tx++;
	return st;
}

static unsigned echo_delay_us; /* a child echo server's, set before fork */

static void on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h, tw_buf *b,
		     size_t off, size_t len)
{
	struct side *s = ctx;
	struct cst *cs = c->ctx;
	const uint8_t *f = (const uint8_t *)b->data + off;
	if (cs == NULL) {
		err(s, "a frame on a connection not announced");
		return;
	}
	cs->frames++;
	cs->bytes += len;
	if (s->pause_every != 0 && cs->frames % s->pause_every == 0)
		tw_transport_pause(s->t, c, true);
	if (((uintptr_t)f & 63) != 0)
		err(s, "frame at %p: not 64-byte aligned", (const void *)f);
	if (h->total_len != len || len < TW_FRAME_HDR_SIZE) {
		err(s, "frame of %zu bytes, header says %lu", len,
		    (unsigned long)h->total_len);
		return;
	}
	if (s->echo) {
		/* Odd frames answered late: the sender's loop is asleep by
		 * then. */
		if (echo_delay_us != 0 && (h->req_id & 1))
			usleep(echo_delay_us);
		struct sreq *q = calloc(1, sizeof(*q));
		cr_assert_not_null(q);
		q->s = s;
		q->hold = tw_buf_retain(b);
		q->iov[0] = (struct iovec){(void *)f, len};
		q->r.iov = q->iov;
		q->r.niov = 1;
		q->r.len = len;
		q->r.type = h->type;
		q->r.done = on_done;
		if (tw_transport_send(s->t, c, &q->r) != TW_OK) {
			tw_buf_release(q->hold);
			free(q);
			err(s, "echo refused");
		}
		return;
	}
	if (h->req_id != cs->next_rx) {
		err(s, "frame %lu arrived where %lu was due",
		    (unsigned long)h->req_id, (unsigned long)cs->next_rx);
		cs->next_rx = h->req_id + 1;
		return;
	}
	cs->next_rx++;
	for (size_t i = 0; i < h->payload_len; i++)
		if (f[TW_FRAME_HDR_SIZE + i] != pat(h->req_id, i)) {
			err(s, "frame %lu: byte %zu differs",
			    (unsigned long)h->req_id, i);
			return;
		}
}

static void on_conn(void *ctx, tw_conn *c, tw_status st)
{
	struct side *s = ctx;
	struct cst *cs = c->ctx;
	if (cs == NULL) {
		cr_assert_lt(s->ncs, MAXC);
		cs = &s->cs[s->ncs++];
		memset(cs, 0, sizeof(*cs));
		cs->s = s;
		cs->c = c;
		c->ctx = cs;
	}
	if (st == TW_OK) {
		cs->ups++;
		if (s->trust)
			tw_transport_trusted(s->t, c);
		return;
	}
	cs->closes++;
	cs->close_st = st;
	cs->why = c->why;
	cs->close_ns = now_ns();
	cs->dones_at_close = s->dones;
}

static bool on_refused(void *ctx, tw_conn *c, const tw_frame_hdr *h,
		       tw_status st)
{
	(void)ctx;
	(void)c;
	(void)h;
	(void)st;
	return false;
}

static void side_up(struct side *s, const struct tw_shm_opts *o,
		    const char *listen)
{
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	lo.spin_ns = 0;
	cr_assert_eq(tw_loop_create(&lo, &s->l), TW_OK);
	struct tw_transport_cbs cbs = {.ctx = s,
				       .on_frame = on_frame,
				       .on_conn = on_conn,
				       .on_refused = on_refused};
	tw_status st = tw_shm_transport_create(s->l, o, &cbs, NULL, &s->t);
	cr_assert_eq(st, TW_OK, "create: %s", tw_errmsg(st));
	if (listen != NULL) {
		st = s->t->ops->listen(s->t, listen, s->bound,
				       sizeof(s->bound));
		cr_assert_eq(st, TW_OK, "listen %s: %s", listen, tw_errmsg(st));
	}
}

static void side_down(struct side *s)
{
	if (s->t != NULL)
		s->t->ops->destroy(s->t);
	s->t = NULL;
	tw_loop_destroy(s->l);
	s->l = NULL;
}

static struct tw_shm_stats stats(const struct side *s)
{
	struct tw_shm_stats st;
	tw_shm_get_stats(s->t, &st);
	return st;
}

/* Poll both loops until cond holds (true) or LIVE_MS pass. */
#define PUMP2(a, b, cond)                                                      \
	({                                                                     \
		uint64_t dl_ = now_ns() + LIVE_MS * MS;                        \
		while (!(cond) && now_ns() < dl_) {                            \
			int w_ = tw_loop_poll_once((a)->l) +                   \
				 ((b) ? tw_loop_poll_once((b)->l) : 0);        \
			if (w_ == 0)                                           \
				sched_yield();                                 \
		}                                                              \
		(bool)(cond);                                                  \
	})

static void pump_for(struct side *a, struct side *b, uint64_t ns)
{
	uint64_t dl = now_ns() + ns;
	while (now_ns() < dl) {
		tw_loop_poll_once(a->l);
		if (b != NULL)
			tw_loop_poll_once(b->l);
	}
}

static struct cst *connect_to(struct side *c, const char *addr)
{
	tw_conn *conn = NULL;
	tw_status st = c->t->ops->connect(c->t, addr, &conn);
	cr_assert_eq(st, TW_OK, "connect %s: %s", addr, tw_errmsg(st));
	cr_assert_lt(c->ncs, MAXC);
	struct cst *cs = &c->cs[c->ncs++];
	memset(cs, 0, sizeof(*cs));
	cs->s = c;
	cs->c = conn;
	conn->ctx = cs;
	return cs;
}

static struct tw_shm_opts opts(uint32_t ring)
{
	struct tw_shm_opts o;
	tw_shm_opts_init(&o, sizeof(o));
	o.ring_size = ring;
	o.rx_pool_count = 32;
	o.cma_threshold = 256u << 10; /* off by default: tested here */
	return o;
}

static uint64_t cma_threshold = 256u << 10; /* the next env_up's */

/* A server listening in the default directory and a client connected to
 * it, both trusting every connection (the rings) or neither. */
struct env {
	struct side srv, cli;
	struct cst *c; /* the client's connection */
	struct cst *s; /* the server's */
};

static void env_up(struct env *e, uint32_t ring, bool trust)
{
	memset(e, 0, sizeof(*e));
	struct tw_shm_opts o = opts(ring);
	o.cma_threshold = cma_threshold;
	e->srv.trust = e->cli.trust = trust;
	char dir[160];
	snprintf(dir, sizeof(dir), "shm://%s/", tw_shm_default_dir());
	side_up(&e->srv, &o, dir);
	side_up(&e->cli, &o, NULL);
	e->c = connect_to(&e->cli, e->srv.bound);
	cr_assert(PUMP2(&e->srv, &e->cli,
			e->c->ups == 1 && e->srv.ncs == 1 &&
				e->srv.cs[0].ups == 1),
		  "not connected");
	e->s = &e->srv.cs[0];
	if (trust)
		cr_assert(PUMP2(&e->srv, &e->cli,
				stats(&e->srv).rings_up == 1 &&
					stats(&e->cli).rings_up == 1),
			  "no rings");
}

static void env_down(struct env *e)
{
	side_down(&e->cli);
	side_down(&e->srv);
	cr_assert_eq(e->cli.errors, 0, "client: %s", e->cli.why);
	cr_assert_eq(e->srv.errors, 0, "server: %s", e->srv.why);
}

/* ------------------------------------------------------------------ */
/* Options, addresses, the socket file                                  */

Test(shm, options_are_checked)
{
	struct tw_shm_opts o;
	tw_shm_opts_init(&o, sizeof(o));
	cr_assert_eq(tw_shm_opts_check(&o), TW_OK);
	cr_assert_eq(tw_shm_opts_check(NULL), TW_OK);
	o.ring_size = 3u << 20;
	cr_assert_eq(tw_shm_opts_check(&o), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "ring_size") != NULL);
	o.ring_size = 32u << 10;
	cr_assert_eq(tw_shm_opts_check(&o), TW_EINVAL);
	tw_shm_opts_init(&o, sizeof(o));
	o.dir = "relative/dir";
	cr_assert_eq(tw_shm_opts_check(&o), TW_EINVAL);
	tw_shm_opts_init(&o, sizeof(o));
	o.socket_mode = 0;
	cr_assert_eq(tw_shm_opts_check(&o), TW_EINVAL);
	tw_shm_opts_init(&o, sizeof(o));
	o.transport = "uring";
	cr_assert_eq(tw_shm_opts_check(&o), TW_EINVAL);
	/* An older caller's shorter struct: the rest takes the defaults. */
	struct tw_shm_opts big, got;
	tw_shm_opts_init(&big, offsetof(struct tw_shm_opts, max_queued));
	tw_shm_opts_get(&big, &got);
	cr_assert_eq(got.max_queued, 4096u);
	cr_assert_eq(got.ring_size, 4u << 20);
}

Test(shm, provider_listens_in_its_directory_and_removes_the_socket)
{
	char dir[] = "/tmp/tw-shm-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	const struct tw_transport_provider *p =
		tw_transport_provider_find(TW_TRANSPORT_SHM);
	cr_assert_not_null(p);
	struct tw_shm_opts o;
	tw_shm_opts_init(&o, sizeof(o));
	o.dir = "/nonexistent-tw-dir";
	cr_assert_eq(p->check(&o, 1), TW_EINVAL);
	o.dir = dir;
	cr_assert_eq(p->check(&o, 1), TW_OK);
	struct tw_transport_group g = {.nloops = 1};
	void *env;
	cr_assert_eq(p->start(&o, &g, &env), TW_OK);
	char url[160];
	cr_assert_eq(p->listen_addr(env, 0, url, sizeof(url)), TW_OK);
	char want[160];
	snprintf(want, sizeof(want), "shm://%s/", dir);
	cr_assert_str_eq(url, want);
	struct side s = {0};
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	cr_assert_eq(tw_loop_create(&lo, &s.l), TW_OK);
	struct tw_transport_cbs cbs = {
		.ctx = &s, .on_frame = on_frame, .on_conn = on_conn};
	cr_assert_eq(p->create(env, 0, s.l, &cbs, &s.t), TW_OK);
	cr_assert_eq(s.t->ops->listen(s.t, url, s.bound, sizeof(s.bound)),
		     TW_OK);
	const char *path = s.bound + strlen("shm://");
	cr_assert(strncmp(path, dir, strlen(dir)) == 0, "%s", s.bound);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	char path_copy[sizeof(s.bound)];
	memcpy(path_copy, path, strlen(path) + 1);

	side_down(&s);
	cr_assert_neq(stat(path_copy, &st), 0, "the socket file stayed");
	p->stop(env);
	rmdir(dir);
}

Test(shm, a_stale_socket_file_is_replaced_and_nobody_is_refused_at_once)
{
	char path[] = "/tmp/tw-shm-stale-XXXXXX";
	int tmp = mkstemp(path);
	cr_assert_geq(tmp, 0);
	close(tmp);
	unlink(path);
	/* A socket file nobody listens on, as a killed process leaves. */
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	char addr[160];
	snprintf(addr, sizeof(addr), "shm://%s", path);
	struct side s = {0};
	struct tw_shm_opts o = opts(64u << 10);
	side_up(&s, &o, addr);
	cr_assert_str_eq(s.bound, addr);
	side_down(&s);
	struct stat st;
	cr_assert_neq(stat(path, &st), 0);

	/* Nobody there: connect refuses at once, saying why. */
	struct side c = {0};
	side_up(&c, &o, NULL);
	tw_conn *conn;
	tw_status r = c.t->ops->connect(c.t, addr, &conn);
	cr_assert_eq(r, TW_EUNREACHABLE);
	cr_assert(strstr(tw_errmsg(r), "No such file") != NULL, "%s",
		  tw_errmsg(r));
	r = c.t->ops->connect(c.t, "tcp://127.0.0.1:1", &conn);
	cr_assert_eq(r, TW_EINVAL);
	r = c.t->ops->connect(c.t, "shm://relative", &conn);
	cr_assert_eq(r, TW_EINVAL);
	side_down(&c);
}

/* ------------------------------------------------------------------ */
/* Round trips                                                          */

static void round_trips(uint32_t ring, bool trust, const uint32_t *sizes,
			size_t n, int rounds)
{
	struct env e;
	env_up(&e, ring, trust);
	uint64_t sent = 0;
	for (int r = 0; r < rounds; r++)
		for (size_t i = 0; i < n; i++) {
			cr_assert_eq(send_next(e.c, sizes[i]), TW_OK);
			cr_assert_eq(send_next(e.s, sizes[i]), TW_OK);
			sent++;
		}
	cr_assert(PUMP2(&e.srv, &e.cli,
			e.s->frames == sent && e.c->frames == sent),
		  "frames %lu/%lu of %lu", (unsigned long)e.s->frames,
		  (unsigned long)e.c->frames, (unsigned long)sent);
	cr_assert(PUMP2(&e.srv, &e.cli,
			e.srv.dones == sent && e.cli.dones == sent));
	cr_assert_eq(e.srv.dones_ok, sent);
	struct tw_shm_stats ss = stats(&e.srv), cs = stats(&e.cli);
	if (trust) {
		/* After the switch nothing goes on the socket. */
		cr_assert_eq(ss.sock_frames_rx, 0);
		cr_assert_eq(cs.sock_frames_rx, 0);
		cr_assert_gt(ss.ring_records, 0);
		/* Bodies of cma_threshold and more: read from the
		 * sender's memory (here, this process's own). */
		bool big = false;
		for (size_t i = 0; i < n; i++)
			big |= sizes[i] >= cma_threshold;
		if (cma_threshold == UINT64_MAX || !big)
			cr_assert_eq(ss.cma_bytes + cs.cma_bytes, 0);
		else
			cr_assert_gt(ss.cma_bytes, 0);
	} else {
		cr_assert_eq(ss.rings_up, 0);
		cr_assert_eq(ss.sock_frames_rx, sent);
	}
	cr_assert_eq(ss.proto_errors + cs.proto_errors, 0);
	env_down(&e);
}

Test(shm, small_and_large_frames_round_trip_exact_on_the_rings)
{
	static const uint32_t sizes[] = {0,        1,       15,       16,
					 1000,     4048,    4049,     65000,
					 1u << 20, 3000000, 64u << 10};
	round_trips(4u << 20, true, sizes, sizeof(sizes) / sizeof(sizes[0]), 3);
}

Test(shm, frames_larger_than_the_ring_stream_through_it)
{
	/* 64 KiB rings, frames up to 16 MiB: 256 times the ring. */
	static const uint32_t sizes[] = {(64u << 10) - 48, 64u << 10,
					 (64u << 10) + 1,  1u << 20,
					 (16u << 20) - 48, 7};
	round_trips(64u << 10, true, sizes, sizeof(sizes) / sizeof(sizes[0]),
		    2);
}

Test(shm, without_cma_large_frames_take_the_ring)
{
	static const uint32_t sizes[] = {1u << 20, 300, 5000000};
	cma_threshold = UINT64_MAX;
	round_trips(64u << 10, true, sizes, sizeof(sizes) / sizeof(sizes[0]),
		    2);
}

Test(shm, cma_from_the_smallest_threshold)
{
	/* Every body segment of 1 byte and more by CMA (the header stays
	 * in the ring). */
	static const uint32_t sizes[] = {0, 1, 100, 1u << 20, 17};
	cma_threshold = 1;
	round_trips(64u << 10, true, sizes, sizeof(sizes) / sizeof(sizes[0]),
		    3);
}

Test(shm, frames_of_every_size_on_the_socket_before_trust)
{
	static const uint32_t sizes[] = {
		0, 1, 32 << 10, (32 << 10) - 55, 1u << 20, 100};
	round_trips(64u << 10, false, sizes, sizeof(sizes) / sizeof(sizes[0]),
		    2);
}

Test(shm, many_frames_in_flight)
{
	enum { N = 20000 };
	struct env e;
	env_up(&e, 256u << 10, true);
	uint64_t n = 0;
	while (n < N) {
		tw_status st = send_next(e.c, (uint32_t)(n % 300));
		if (st == TW_ENOSPC) {
			tw_loop_poll_once(e.cli.l);
			tw_loop_poll_once(e.srv.l);
			continue;
		}
		cr_assert_eq(st, TW_OK);
		n++;
	}
	cr_assert(PUMP2(&e.srv, &e.cli, e.s->frames == N && e.cli.dones == N),
		  "frames %lu, dones %lu", (unsigned long)e.s->frames,
		  (unsigned long)e.cli.dones);
	cr_assert_eq(e.cli.dones_ok, N);
	env_down(&e);
}

Test(shm, backpressure_when_the_peer_pauses_and_all_after_the_resume)
{
	struct env e;
	env_up(&e, 64u << 10, true);
	tw_transport_pause(e.srv.t, e.s->c, true);
	uint64_t n = 0;
	tw_status st;
	while ((st = send_next(e.c, 4000)) == TW_OK)
		n++, pump_for(&e.cli, &e.srv, 0);
	cr_assert_eq(st, TW_ENOSPC);
	pump_for(&e.cli, &e.srv, 50 * MS);
	uint64_t got = e.s->frames;
	cr_assert_lt(got, n);
	/* The ring holds what it can; the rest waits in the sender's queue. */
	cr_assert_gt(stats(&e.cli).ring_full_waits, 0);
	tw_transport_pause(e.srv.t, e.s->c, false);
	cr_assert(PUMP2(&e.srv, &e.cli, e.s->frames == n && e.cli.dones == n));
	cr_assert_eq(e.s->next_rx, n);
	env_down(&e);
}

/* Paused from inside on_frame, in the middle of a record, over and
 * over: the consumer hands room back at any byte, and the producer still
 * writes whole records where they fit. */
static void pauses_inside_on_frame(bool trust)
{
	enum { N = 3000 };
	struct env e;
	env_up(&e, 64u << 10, trust);
	e.srv.pause_every = 7;
	uint64_t n = 0;
	uint64_t dl = now_ns() + LIVE_MS * MS;
	while ((e.s->frames < N || n < N) && now_ns() < dl) {
		while (n < N &&
		       send_next(e.c, (uint32_t)(n * 13 % 3000)) == TW_OK)
			n++;
		tw_loop_poll_once(e.cli.l);
		tw_loop_poll_once(e.srv.l);
		tw_transport_pause(e.srv.t, e.s->c, false);
	}
	cr_assert_eq(e.s->frames, N);
	cr_assert_eq(e.s->next_rx, N);
	cr_assert_eq(stats(&e.cli).proto_errors, 0);
	cr_assert_gt(stats(&e.srv).pauses, N / 8);
	env_down(&e);
}

/* Paused from inside on_frame, in the middle of a record, over and
 * over: the consumer hands room back at any byte, and the producer still
 * writes whole records where they fit. */
Test(shm, pauses_inside_on_frame_keep_every_frame)
{
	pauses_inside_on_frame(true);
}

/* The same on the socket: the rest of a message waits for the resume. */
Test(shm, pauses_inside_on_frame_keep_every_frame_on_the_socket)
{
	pauses_inside_on_frame(false);
}

/* ------------------------------------------------------------------ */
/* The switch                                                           */

/* Frames flow both ways the whole time; each side trusts at its own
 * moment; a large frame is half sent on the socket when the switch
 * comes. Every frame arrives once, in order, exact, and the socket
 * carried only what was sent before each side's switch. */
Test(shm, order_holds_across_the_switch)
{
	struct env e;
	env_up(&e, 64u << 10, false);
	uint64_t n = 0;
	/* A frame larger than the socket's buffer: it leaves in pieces. */
	cr_assert_eq(send_next(e.c, 3u << 20), TW_OK);
	cr_assert_eq(send_next(e.s, 3u << 20), TW_OK);
	n++;
	for (int i = 0; i < 3; i++)
		tw_loop_poll_once(e.cli.l), tw_loop_poll_once(e.srv.l);
	for (int round = 0; round < 40; round++) {
		for (int k = 0; k < 5; k++) {
			uint32_t sz = (uint32_t)((round * 7 + k) % 5 == 0
							 ? 200000
							 : 10 + round * k);
			cr_assert_eq(send_next(e.c, sz), TW_OK);
			cr_assert_eq(send_next(e.s, sz), TW_OK);
			n++;
		}
		if (round == 5)
			tw_transport_trusted(e.srv.t, e.s->c);
		if (round == 15)
			tw_transport_trusted(e.cli.t, e.c->c);
		for (int i = 0; i < 3; i++)
			tw_loop_poll_once(e.cli.l), tw_loop_poll_once(e.srv.l);
	}
	cr_assert(PUMP2(&e.srv, &e.cli, e.s->frames == n && e.c->frames == n),
		  "frames %lu/%lu of %lu", (unsigned long)e.s->frames,
		  (unsigned long)e.c->frames, (unsigned long)n);
	struct tw_shm_stats ss = stats(&e.srv), cs = stats(&e.cli);
	cr_assert_eq(ss.rings_up, 1);
	cr_assert_eq(cs.rings_up, 1);
	/* Some frames came on the socket, the rest through the ring. */
	cr_assert_gt(ss.sock_frames_rx, 0);
	cr_assert_lt(ss.sock_frames_rx, n);
	cr_assert_gt(cs.sock_frames_rx, 0);
	cr_assert_lt(cs.sock_frames_rx, n);
	cr_assert_eq(e.s->next_rx, n);
	cr_assert_eq(e.c->next_rx, n);
	env_down(&e);
}

/* The first frame is cut by the switch: part of its bytes went on the
 * socket, the rest through the ring. */
Test(shm, a_frame_cut_by_the_switch_arrives_whole)
{
	struct env e;
	env_up(&e, 64u << 10, false);
	tw_transport_trusted(e.srv.t, e.s->c);
	cr_assert_eq(send_next(e.c, 8u << 20), TW_OK);
	/* One poll: some of it into the socket, which then fills. */
	tw_loop_poll_once(e.cli.l);
	uint64_t on_sock = stats(&e.cli).sock_bytes_tx;
	cr_assert_gt(on_sock, 0);
	cr_assert_lt(on_sock, 8u << 20);
	tw_transport_trusted(e.cli.t, e.c->c);
	cr_assert_eq(send_next(e.c, 100), TW_OK);
	cr_assert(PUMP2(&e.srv, &e.cli, e.s->frames == 2));
	struct tw_shm_stats cs = stats(&e.cli), ss = stats(&e.srv);
	cr_assert_eq(cs.rings_up, 1);
	cr_assert_eq(ss.sock_frames_rx, 0, "the cut frame counts as a ring's");
	cr_assert_lt(cs.sock_bytes_tx, 8u << 20);
	cr_assert_gt(cs.ring_records, 0);
	env_down(&e);
}

/* Rings of the smaller of both sides' sizes. */
Test(shm, the_ring_is_the_smaller_of_both_sizes)
{
	struct env e;
	memset(&e, 0, sizeof(e));
	struct tw_shm_opts big = opts(1u << 20), small = opts(64u << 10);
	e.srv.trust = e.cli.trust = true;
	char dir[160];
	snprintf(dir, sizeof(dir), "shm://%s/", tw_shm_default_dir());
	side_up(&e.srv, &small, dir);
	side_up(&e.cli, &big, NULL);
	e.c = connect_to(&e.cli, e.srv.bound);
	cr_assert(PUMP2(&e.srv, &e.cli,
			stats(&e.srv).rings_up == 1 &&
				stats(&e.cli).rings_up == 1));
	struct sconn *sc = (struct sconn *)(void *)e.c->c;
	cr_assert_eq(sc->txr.size, 64u << 10);
	e.s = &e.srv.cs[0];
	cr_assert_eq(send_next(e.c, 1u << 20), TW_OK);
	cr_assert(PUMP2(&e.srv, &e.cli, e.s->frames == 1));
	env_down(&e);
}

/* The connecting side cannot make the rings (out of descriptors): the
 * connection carries on over its socket. */
Test(shm, no_descriptors_for_the_rings_keeps_the_socket)
{
	struct env e;
	env_up(&e, 64u << 10, false);
	struct rlimit was;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
	int lowest = dup(0);
	cr_assert_geq(lowest, 0);
	close(lowest);
	struct rlimit now = {(rlim_t)lowest, was.rlim_max};
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &now), 0);
	tw_transport_trusted(e.srv.t, e.s->c);
	tw_transport_trusted(e.cli.t, e.c->c);
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(send_next(e.c, 1000), TW_OK);
		cr_assert_eq(send_next(e.s, 1000), TW_OK);
	}
	cr_assert(PUMP2(&e.srv, &e.cli,
			e.s->frames == 20 && e.c->frames == 20 &&
				stats(&e.cli).ring_refusals == 1));
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &was), 0);
	cr_assert_eq(stats(&e.cli).rings_up, 0);
	cr_assert_eq(stats(&e.srv).rings_up, 0);
	cr_assert_eq(e.s->closes + e.c->closes, 0);
	env_down(&e);
}

/* The accepting side cannot map the rings (out of address space): it
 * answers NORING and both sides stay on the socket. */
Test(shm, a_mapping_refused_by_the_kernel_keeps_the_socket)
{
	struct env e;
	env_up(&e, 64u << 10, false);
	tw_transport_trusted(e.srv.t, e.s->c);
	tw_transport_trusted(e.cli.t, e.c->c);
	/* The server says READY; the client maps, then sends SETUP. */
	struct sconn *cc = (struct sconn *)(void *)e.c->c;
	struct sconn *sc = (struct sconn *)(void *)e.s->c;
	cr_assert(PUMP2(&e.srv, (struct side *)NULL,
			sc->announced && sc->ctl_due == 0));
	cr_assert(PUMP2(&e.cli, (struct side *)NULL,
			cc->mapped && cc->ctl_due == 0));
	struct rlimit was, none;
	cr_assert_eq(getrlimit(RLIMIT_AS, &was), 0);
	none = was;
	none.rlim_cur = 0; /* every new mapping fails */
	cr_assert_eq(setrlimit(RLIMIT_AS, &none), 0);
	uint64_t dl = now_ns() + LIVE_MS * MS;
	while (stats(&e.srv).ring_refusals == 0 && now_ns() < dl)
		tw_loop_poll_once(e.srv.l);
	cr_assert_eq(setrlimit(RLIMIT_AS, &was), 0);
	cr_assert_eq(stats(&e.srv).ring_refusals, 1);
	cr_assert(PUMP2(&e.srv, &e.cli, stats(&e.cli).ring_refusals == 1));
	cr_assert(!cc->mapped);
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(send_next(e.c, 1000), TW_OK);
		cr_assert_eq(send_next(e.s, 1000), TW_OK);
	}
	cr_assert(
		PUMP2(&e.srv, &e.cli, e.s->frames == 20 && e.c->frames == 20));
	cr_assert_eq(stats(&e.srv).rings_up + stats(&e.cli).rings_up, 0);
	cr_assert_eq(stats(&e.srv).proto_errors + stats(&e.cli).proto_errors,
		     0);
	env_down(&e);
}

/* no_rings on either side: the connection stays on its socket. */
Test(shm, no_rings_keeps_the_socket)
{
	struct env e;
	memset(&e, 0, sizeof(e));
	struct tw_shm_opts o = opts(64u << 10), off = o;
	off.no_rings = true;
	e.srv.trust = e.cli.trust = true;
	char dir[160];
	snprintf(dir, sizeof(dir), "shm://%s/", tw_shm_default_dir());
	side_up(&e.srv, &off, dir);
	side_up(&e.cli, &o, NULL);
	e.c = connect_to(&e.cli, e.srv.bound);
	cr_assert(PUMP2(&e.srv, &e.cli, e.srv.ncs == 1 && e.c->ups == 1));
	e.s = &e.srv.cs[0];
	for (int i = 0; i < 10; i++)
		cr_assert_eq(send_next(e.c, 70000), TW_OK);
	cr_assert(PUMP2(&e.srv, &e.cli, e.s->frames == 10));
	cr_assert_eq(stats(&e.srv).rings_up, 0);
	cr_assert_eq(stats(&e.cli).rings_up, 0);
	cr_assert_eq(stats(&e.srv).sock_frames_rx, 10);
	env_down(&e);
}

/* ------------------------------------------------------------------ */
/* A second process: sleeping, idling, dying                            */

/* The child: an echo server on path (ready_fd gets a byte once it
 * listens), or a client of path that echoes. Loops sleep at once when
 * idle (spin_ns 0). Runs until killed. */
static void child_run(const char *addr, bool listen, int ready_fd)
{
	struct side s;
	memset(&s, 0, sizeof(s));
	s.trust = true;
	s.echo = true;
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	lo.spin_ns = 0;
	if (tw_loop_create(&lo, &s.l) != TW_OK)
		_exit(2);
	struct tw_shm_opts o = opts(256u << 10);
	struct tw_transport_cbs cbs = {
		.ctx = &s, .on_frame = on_frame, .on_conn = on_conn};
	if (tw_shm_transport_create(s.l, &o, &cbs, NULL, &s.t) != TW_OK)
		_exit(3);
	if (listen) {
		if (s.t->ops->listen(s.t, addr, s.bound, sizeof(s.bound)) !=
		    TW_OK)
			_exit(4);
	} else {
		tw_conn *c;
		if (s.t->ops->connect(s.t, addr, &c) != TW_OK)
			_exit(5);
		s.cs[0] = (struct cst){.s = &s, .c = c};
		s.ncs = 1;
		c->ctx = &s.cs[0];
	}
	char b = 1;
	if (write(ready_fd, &b, 1) != 1)
		_exit(6);
	for (;;)
		tw_loop_poll_wait(s.l, UINT64_MAX);
}

static pid_t spawn(const char *addr, bool listen)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		child_run(addr, listen, p[1]);
		_exit(0);
	}
	close(p[1]);
	char b;
	cr_assert_eq(read(p[0], &b, 1), 1, "the child did not start");
	close(p[0]);
	return pid;
}

/* utime + stime of pid, in clock ticks. */
static uint64_t cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	cr_assert_not_null(p);
	unsigned long ut = 0, stt = 0;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime stime */
	cr_assert_eq(sscanf(p + 2,
			    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu "
			    "%lu",
			    &ut, &stt),
		     2);
	return ut + stt;
}

/* Both loops sleep between frames (spin_ns 0, the parent waits in
 * tw_loop_poll_wait): each frame must wake the peer's loop through its
 * doorbell. Then an idle child costs nothing. */
Test(shm, a_sleeping_loop_is_woken_by_its_doorbell_and_idles_for_free,
     .timeout = 60)
{
	char addr[160];
	snprintf(addr, sizeof(addr), "shm://%s/tw-test-%d.sock",
		 tw_shm_default_dir(), (int)getpid());
	echo_delay_us = 5000;
	pid_t pid = spawn(addr, true);
	echo_delay_us = 0;
	struct side s;
	memset(&s, 0, sizeof(s));
	s.trust = true;
	struct tw_shm_opts o = opts(256u << 10);
	side_up(&s, &o, NULL);
	struct cst *c = connect_to(&s, addr);
	uint64_t dl = now_ns() + LIVE_MS * MS;
	while (stats(&s).rings_up == 0 && c->closes == 0 && now_ns() < dl)
		tw_loop_poll_wait(s.l, 10 * MS);
	cr_assert_eq(stats(&s).rings_up, 1);
	for (uint64_t i = 0; i < 20; i++) {
		/* Long enough for the child's loop to be asleep. */
		usleep(20000);
		cr_assert_eq(send_next(c, (uint32_t)(i * 1000)), TW_OK);
		dl = now_ns() + LIVE_MS * MS;
		while (c->frames < i + 1 && c->closes == 0 && now_ns() < dl)
			tw_loop_poll_wait(s.l, 100 * MS);
		cr_assert_eq(c->frames, i + 1, "echo %lu", (unsigned long)i);
	}
	struct tw_shm_stats st = stats(&s);
	/* We rang the child, asleep 20 ms each time; it rang us back when
	 * it answered late, and we were asleep. */
	cr_assert_geq(st.doorbells, 18, "doorbells %lu",
		      (unsigned long)st.doorbells);
	cr_assert_geq(st.wakeups, 10, "wakeups %lu", (unsigned long)st.wakeups);
	cr_assert_eq(s.errors, 0, "%s", s.why);
	/* Idle: the child sleeps in the kernel, with a ring connection. */
	uint64_t t0 = cpu_ticks(pid);
	usleep(1000 * 1000);
	uint64_t used = cpu_ticks(pid) - t0;
	long hz = sysconf(_SC_CLK_TCK);
	cr_assert_leq(used * 100, (uint64_t)hz, /* 1% of a core */
		      "an idle child used %lu ticks of %ld in 1 s",
		      (unsigned long)used, hz);
	cr_log_info("doorbells %lu, wakeups %lu, kicks %lu; the idle child "
		    "used %lu ticks of %ld in 1 s",
		    (unsigned long)st.doorbells, (unsigned long)st.wakeups,
		    (unsigned long)st.kicks, (unsigned long)used, hz);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	side_down(&s);
	unlink(addr + strlen("shm://"));
}

/* Large frames to a child that echoes them: the child reads ours and we
 * read its (CMA across processes), each byte exact. */
Test(shm, large_frames_cross_processes_by_cma, .timeout = 60)
{
	char addr[160];
	snprintf(addr, sizeof(addr), "shm://%s/tw-test-cma-%d.sock",
		 tw_shm_default_dir(), (int)getpid());
	pid_t pid = spawn(addr, true);
	struct side s;
	memset(&s, 0, sizeof(s));
	s.trust = true;
	struct tw_shm_opts o = opts(256u << 10);
	side_up(&s, &o, NULL);
	struct cst *c = connect_to(&s, addr);
	cr_assert(PUMP2(&s, (struct side *)NULL, stats(&s).rings_up == 1));
	enum { N = 12 };
	for (int i = 0; i < N; i++)
		cr_assert_eq(send_next(c, (uint32_t)(i % 3 == 0 ? 100
								: 3000000 + i)),
			     TW_OK);
	cr_assert(PUMP2(&s, (struct side *)NULL, c->frames == N),
		  "%lu echoes of %d", (unsigned long)c->frames, N);
	struct tw_shm_stats st = stats(&s);
	cr_assert_eq(st.cma_conns, 1, "we may read the child");
	cr_assert_gt(st.cma_sends, 0, "the child reads us");
	cr_assert_gt(st.cma_bytes, 8u * 3000000u, "we read the child");
	cr_assert_eq(s.errors, 0, "%s", s.why);
	cr_log_info("cma: %lu records sent, %lu reads of %lu bytes",
		    (unsigned long)st.cma_sends, (unsigned long)st.cma_reads,
		    (unsigned long)st.cma_bytes);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	side_down(&s);
	unlink(addr + strlen("shm://"));
}

/* A peer process killed with frames queued to it: the survivor's
 * on_conn comes within a bound, after every queued send failed, and
 * later sends are refused. On rings and on the bare socket. */
static void peer_death(bool trust)
{
	struct side s;
	memset(&s, 0, sizeof(s));
	s.trust = trust;
	char dir[160];
	snprintf(dir, sizeof(dir), "shm://%s/", tw_shm_default_dir());
	struct tw_shm_opts o = opts(64u << 10);
	side_up(&s, &o, dir);
	pid_t pid = spawn(s.bound, false);
	cr_assert(PUMP2(&s, (struct side *)NULL,
			s.ncs == 1 && s.cs[0].ups == 1 &&
				(!trust || stats(&s).rings_up == 1)));
	struct cst *c = &s.cs[0];
	cr_assert_eq(send_next(c, 100), TW_OK);
	cr_assert(PUMP2(&s, (struct side *)NULL, c->frames == 1));
	/* Frames the ring cannot hold at once: most stay queued. */
	int queued = 0;
	for (int i = 0; i < 64; i++)
		queued += send_next(c, 1u << 20) == TW_OK;
	cr_assert_eq(queued, 64);
	pump_for(&s, NULL, 2 * MS);
	uint64_t t0 = now_ns();
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_assert(PUMP2(&s, (struct side *)NULL, c->closes == 1),
		  "the death went unnoticed");
	uint64_t took = c->close_ns - t0;
	cr_assert_lt(took, 500 * MS, "noticed after %lu ms",
		     (unsigned long)(took / MS));
	cr_log_info("%s: the death noticed after %lu us",
		    trust ? "rings" : "socket", (unsigned long)(took / 1000));
	cr_assert_eq(c->close_st, TW_EUNREACHABLE);
	cr_assert_not_null(c->why);
	/* Every request ended before the upcall, the unsent ones failed. */
	cr_assert_eq(c->dones_at_close, (uint64_t)queued + 1);
	cr_assert_gt(s.dones_err, 0);
	cr_assert_eq(s.last_done_st, TW_EUNREACHABLE);
	cr_assert_eq(stats(&s).peer_gone, 1);
	side_down(&s);
	cr_assert_eq(s.errors, 0, "%s", s.why);
}

Test(shm, a_killed_peer_fails_the_connection_promptly_on_rings, .timeout = 60)
{
	peer_death(true);
}

Test(shm, a_killed_peer_fails_the_connection_promptly_on_the_socket,
     .timeout = 60)
{
	peer_death(false);
}

/* ------------------------------------------------------------------ */
/* A hostile peer: the protocol written by hand                         */

/*
 * The test is the connecting side: its own socket, its own memfd and
 * doorbells (made as a peer pleases), its own writes into the rings. The
 * server (a transport of ours) trusts every connection, and serves an
 * honest client beside it: after each attack, the attacker's connection
 * has ended with the status expected and the honest one still answers.
 */
struct evil {
	int fd;
	void *map;
	size_t len;
	uint64_t ring;
	struct shm_ring tx, rx; /* ring 0 is ours to fill */
	int bells[2];
};

struct arena {
	struct side srv, cli;
	struct cst *honest;
	uint64_t honest_sent;
};

static void arena_up(struct arena *a, uint32_t stall_ms)
{
	memset(a, 0, sizeof(*a));
	struct tw_shm_opts o = opts(64u << 10);
	o.stall_timeout_ms = stall_ms;
	a->srv.trust = a->cli.trust = true;
	a->srv.echo = true;
	char dir[160];
	snprintf(dir, sizeof(dir), "shm://%s/", tw_shm_default_dir());
	side_up(&a->srv, &o, dir);
	side_up(&a->cli, &o, NULL);
	a->honest = connect_to(&a->cli, a->srv.bound);
	cr_assert(PUMP2(&a->srv, &a->cli, stats(&a->cli).rings_up == 1));
}

/* The honest connection still answers, through the rings. */
static void honest_ok(struct arena *a, const char *after)
{
	uint64_t want = ++a->honest_sent;
	cr_assert_eq(send_frame(a->honest, want - 1, 5000), TW_OK);
	cr_assert(PUMP2(&a->srv, &a->cli, a->honest->frames == want),
		  "after %s: the honest connection stopped", after);
	a->honest->next_rx = want;
}

static void arena_down(struct arena *a)
{
	side_down(&a->cli);
	side_down(&a->srv);
	cr_assert_eq(a->cli.errors, 0, "client: %s", a->cli.why);
}

static void evil_send(struct evil *v, uint32_t type, const void *body,
		      uint32_t len, const int *fds, unsigned nfds)
{
	cr_assert_eq(shm_msg_send(v->fd, type, body, len, fds, nfds),
		     (ssize_t)(sizeof(struct shm_msg) + len), "sendmsg: %s",
		     strerror(errno));
}

/* The next message from the server (polling the arena meanwhile). */
static bool evil_recv(struct arena *a, struct evil *v, struct shm_msg *h,
		      void *body, size_t cap)
{
	char buf[256];
	uint64_t dl = now_ns() + LIVE_MS * MS;
	while (now_ns() < dl) {
		ssize_t r = recv(v->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r >= (ssize_t)sizeof(*h)) {
			memcpy(h, buf, sizeof(*h));
			if (body != NULL)
				memcpy(body, buf + sizeof(*h),
				       (size_t)r - sizeof(*h) < cap
					       ? (size_t)r - sizeof(*h)
					       : cap);
			return true;
		}
		if (r == 0)
			return false;
		tw_loop_poll_once(a->srv.l);
		tw_loop_poll_once(a->cli.l);
	}
	return false;
}

/* Nothing yet: no mapping, no doorbells of its own. */
static void evil_init(struct evil *v)
{
	memset(v, 0, sizeof(*v));
	v->fd = -1;
	v->bells[0] = v->bells[1] = -1;
}

/* Connect v's socket (v->map and the rest are the caller's). */
static void evil_connect(struct arena *a, struct evil *v)
{
	v->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(v->fd, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s",
		 a->srv.bound + strlen("shm://"));
	cr_assert_eq(connect(v->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

/* A memfd as a peer may make it: sealed (with these seals) or not, of
 * size bytes. */
static int evil_memfd(uint64_t size, int seals)
{
	int fd = memfd_create("evil", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	if (seals != 0)
		cr_assert_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* Connect, read READY, send SETUP with these descriptors. */
static void evil_setup(struct arena *a, struct evil *v, uint64_t ring,
		       int memfd, int b0, int b1)
{
	evil_connect(a, v);
	struct shm_msg h;
	struct shm_ready r;
	cr_assert(evil_recv(a, v, &h, &r, sizeof(r)), "no READY");
	cr_assert_eq(h.type, SM_READY);
	struct shm_setup s = {.version = SHM_SETUP_VERSION, .ring_size = ring};
	int fds[3] = {memfd, b0, b1};
	evil_send(v, SM_SETUP, &s, sizeof(s), fds, 3);
}

/* A full, well-made set-up to the switch: then the rings are ours to
 * spoil. */
static void evil_switched(struct arena *a, struct evil *v)
{
	evil_init(v);
	uint64_t ring = 64u << 10;
	int mfd = evil_memfd(shm_map_size(ring), SEALS);
	v->len = (size_t)shm_map_size(ring);
	v->ring = ring;
	v->map = mmap(NULL, v->len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	cr_assert_neq(v->map, MAP_FAILED);
	shm_ring_init(&v->tx, v->map, ring, 0);
	shm_ring_init(&v->rx, v->map, ring, 1);
	v->bells[0] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	v->bells[1] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	evil_setup(a, v, ring, mfd, v->bells[0], v->bells[1]);
	close(mfd);
	struct shm_msg h;
	cr_assert(evil_recv(a, v, &h, NULL, 0), "no SWITCH");
	cr_assert_eq(h.type, SM_SWITCH);
	struct shm_switch sw = {.map_addr = (uint64_t)(uintptr_t)v->map};
	evil_send(v, SM_SWITCH, &sw, sizeof(sw), NULL, 0);
}

static void evil_close(struct evil *v)
{
	if (v->map != NULL)
		munmap(v->map, v->len);
	for (int i = 0; i < 2; i++)
		if (v->bells[i] >= 0)
			close(v->bells[i]);
	close(v->fd);
}

/* The attacker's connection on the server: the last one it accepted. */
static struct cst *evil_conn(struct arena *a)
{
	return &a->srv.cs[a->srv.ncs - 1];
}

/* The server ended it with want (and why mentions what); the honest
 * connection still answers. */
static void evil_refused(struct arena *a, struct evil *v, tw_status want,
			 const char *what)
{
	struct cst *c = evil_conn(a);
	cr_assert(PUMP2(&a->srv, &a->cli, c->closes == 1),
		  "%s: the connection stayed open", what);
	cr_assert_eq(c->close_st, want, "%s: closed with %s", what,
		     tw_status_name(c->close_st));
	evil_close(v);
	honest_ok(a, what);
}

/* A record of n bytes at the tail, published. */
static void evil_put(struct evil *v, const void *p, uint32_t n)
{
	shm_ring_copy_in(&v->tx, v->tx.pos + 8, p, n);
	shm_ring_put_hdr(&v->tx, SHM_REC_DATA, n);
	v->tx.pos += 8 + shm_align8(n);
	shm_ring_publish(&v->tx);
}

Test(shm, memfds_without_the_seals_are_refused, .timeout = 60)
{
	struct arena a;
	arena_up(&a, 0);
	uint64_t ring = 64u << 10, size = shm_map_size(ring);
	static const struct {
		const char *what;
		int seals;
		int64_t size_delta;
	} cases[] = {
		{"no seals", 0, 0},
		{"no shrink seal", F_SEAL_GROW | F_SEAL_SEAL, 0},
		{"no grow seal", F_SEAL_SHRINK | F_SEAL_SEAL, 0},
		{"sealing not sealed", F_SEAL_SHRINK | F_SEAL_GROW, 0},
		{"sealed against writing", SEALS | F_SEAL_WRITE, 0},
		{"a page short", SEALS, -4096},
		{"a page long", SEALS, 4096},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct evil v;
		evil_init(&v);
		int mfd = evil_memfd(size + (uint64_t)cases[i].size_delta,
				     cases[i].seals);
		int b0 = eventfd(0, EFD_CLOEXEC), b1 = eventfd(0, EFD_CLOEXEC);
		evil_setup(&a, &v, ring, mfd, b0, b1);
		close(mfd);
		close(b0);
		close(b1);
		evil_refused(&a, &v, TW_EPROTO, cases[i].what);
		cr_assert(strstr(evil_conn(&a)->why, "memfd") != NULL, "%s: %s",
			  cases[i].what, evil_conn(&a)->why);
	}
	/* Not a memfd at all: a file on tmpfs, a pipe. */
	char path[] = "/dev/shm/tw-evil-XXXXXX";
	int f = mkstemp(path);
	cr_assert_geq(f, 0);
	unlink(path);
	cr_assert_eq(ftruncate(f, (off_t)size), 0);
	int p[2];
	cr_assert_eq(pipe(p), 0);
	int b0 = eventfd(0, EFD_CLOEXEC), b1 = eventfd(0, EFD_CLOEXEC);
	int memfds[] = {f, p[0]};
	for (int i = 0; i < 2; i++) {
		struct evil v;
		evil_init(&v);
		evil_setup(&a, &v, ring, memfds[i], b0, b1);
		evil_refused(&a, &v, TW_EPROTO, i ? "a pipe" : "a tmpfs file");
	}
	/* A doorbell that is not an eventfd. */
	int mfd = evil_memfd(size, SEALS);
	struct evil v;
	evil_init(&v);
	evil_setup(&a, &v, ring, mfd, p[0], b1);
	evil_refused(&a, &v, TW_EPROTO, "a pipe for a doorbell");
	cr_assert(strstr(evil_conn(&a)->why, "eventfd") != NULL);
	/* Ring sizes: not a power of 2, larger than READY allowed. */
	uint64_t rings[] = {ring + 4096, 1u << 20};
	for (int i = 0; i < 2; i++) {
		int m2 = evil_memfd(shm_map_size(rings[i]), SEALS);
		evil_init(&v);
		evil_setup(&a, &v, rings[i], m2, b0, b1);
		close(m2);
		evil_refused(&a, &v, TW_EPROTO, "a bad ring size");
	}
	close(mfd);
	close(f);
	close(p[0]);
	close(p[1]);
	close(b0);
	close(b1);
	cr_assert_eq(stats(&a.srv).proto_errors, 12);
	cr_assert_eq(stats(&a.srv).rings_up, 1, "only the honest one");
	arena_down(&a);
}

/* Before the server trusts a connection it takes no descriptor. */
Test(shm, descriptors_before_trust_end_the_connection)
{
	struct arena a;
	arena_up(&a, 0);
	a.srv.trust = false;
	struct evil v;
	evil_init(&v);
	evil_connect(&a, &v);
	cr_assert(PUMP2(&a.srv, &a.cli, a.srv.ncs == 2));
	int b = eventfd(0, EFD_CLOEXEC);
	uint8_t f[64];
	frame_build(f, 0, 16);
	evil_send(&v, SM_DATA, f, 64, &b, 1);
	close(b);
	evil_refused(&a, &v, TW_EPROTO, "descriptors before trust");
	cr_assert(strstr(evil_conn(&a)->why, "descriptors") != NULL);
	/* A SETUP before trust, and control messages out of place. */
	static const uint32_t types[] = {SM_SETUP, SM_SWITCH, SM_READY,
					 SM_NORING, 0x12345678u};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		evil_init(&v);
		evil_connect(&a, &v);
		uint64_t body[2] = {0};
		evil_send(&v, types[i], body, sizeof(body), NULL, 0);
		evil_refused(&a, &v, TW_EPROTO, "a message out of place");
	}
	arena_down(&a);
}

Test(shm, garbage_in_the_ring_ends_that_connection_only, .timeout = 60)
{
	struct arena a;
	arena_up(&a, 0);
	uint8_t good[64];
	frame_build(good, 0, 16);
	struct evil v;

	/* A record longer than the ring. */
	evil_switched(&a, &v);
	shm_ring_put_hdr(&v.tx, SHM_REC_DATA, 0xfffffff0u);
	v.tx.pos += 8;
	shm_ring_publish(&v.tx);
	evil_refused(&a, &v, TW_EPROTO, "a huge record");

	/* A record longer than what was published. */
	evil_switched(&a, &v);
	shm_ring_put_hdr(&v.tx, SHM_REC_DATA, 1000);
	v.tx.pos += 16;
	shm_ring_publish(&v.tx);
	evil_refused(&a, &v, TW_EPROTO, "a record past the tail");

	/* A tail past the end of the ring, and one not a multiple of 8. */
	uint64_t tails[] = {(64u << 10) + 8, 4, UINT64_MAX - 7};
	for (int i = 0; i < 3; i++) {
		evil_switched(&a, &v);
		atomic_store(&v.tx.ctl->tail, tails[i]);
		evil_refused(&a, &v, TW_EPROTO, "a bad tail");
		cr_assert(strstr(evil_conn(&a)->why, "tail") != NULL);
	}

	/* Records: without the magic, of an unknown type. */
	for (int i = 0; i < 2; i++) {
		evil_switched(&a, &v);
		struct shm_rec r = {.len = 8,
				    .type = i ? 7 : SHM_REC_DATA,
				    .magic = i ? SHM_REC_MAGIC : 0x1234};
		shm_ring_copy_in(&v.tx, 0, &r, sizeof(r));
		v.tx.pos = 16;
		shm_ring_publish(&v.tx);
		evil_refused(&a, &v, TW_EPROTO, "a bad record");
	}

	/* A good frame, then a frame header of garbage. */
	evil_switched(&a, &v);
	evil_put(&v, good, sizeof(good));
	uint8_t junk[64];
	memset(junk, 0xa5, sizeof(junk));
	evil_put(&v, junk, sizeof(junk));
	evil_refused(&a, &v, TW_EPROTO, "a bad frame header");
	cr_assert_eq(evil_conn(&a)->bytes, 64, "the good frame came first");

	/* A frame header far over the limit (its own length field). */
	evil_switched(&a, &v);
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = 1,
			  .payload_len = 16,
			  .total_len = UINT64_C(1) << 39};
	tw_frame_hdr_encode(junk, &h);
	evil_put(&v, junk, 48);
	evil_refused(&a, &v, TW_EPROTO, "a frame over the limit");

	/* Our head (ring 1, where the server produces) moved past the
	 * server's tail: the server finds out when it sends. */
	evil_switched(&a, &v);
	atomic_store(&v.rx.ctl->head, UINT64_C(1) << 40);
	evil_put(&v, good, sizeof(good)); /* echoed: the server sends */
	evil_refused(&a, &v, TW_EPROTO, "a head past the tail");
	cr_assert(strstr(evil_conn(&a)->why, "head") != NULL);

	struct tw_shm_stats st = stats(&a.srv);
	cr_assert_geq(st.proto_errors, 10);
	arena_down(&a);
}

/* A ring full of empty records, refilled as fast as they go: each pass
 * takes a bounded share, and the honest connection keeps its turn. */
Test(shm, a_flood_of_records_does_not_hold_the_loop, .timeout = 60)
{
	struct arena a;
	arena_up(&a, 0);
	struct evil v;
	evil_switched(&a, &v);
	struct cst *c = evil_conn(&a);
	for (int round = 0; round < 20; round++) {
		/* As many empty records as fit. */
		uint64_t head = atomic_load(&v.tx.ctl->head);
		while (v.tx.pos - head + 8 <= v.ring) {
			shm_ring_put_hdr(&v.tx, SHM_REC_DATA, 0);
			v.tx.pos += 8;
		}
		shm_ring_publish(&v.tx);
		honest_ok(&a, "a flood");
	}
	cr_assert_eq(c->closes, 0);
	evil_close(&v);
	cr_assert(PUMP2(&a.srv, &a.cli, c->closes == 1));
	cr_assert_eq(c->close_st, TW_EUNREACHABLE);
	arena_down(&a);
}

/* A frame whose tail stops moving: its connection ends at the stall
 * timeout, holding nothing; the loop serves the others meanwhile. */
Test(shm, a_tail_that_never_moves_ends_by_the_stall_timeout, .timeout = 60)
{
	struct arena a;
	arena_up(&a, 200);
	struct evil v;
	evil_switched(&a, &v);
	uint8_t part[4096];
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = 1,
			  .payload_len = (1u << 20) - 48,
			  .total_len = 1u << 20};
	memset(part, 7, sizeof(part));
	tw_frame_hdr_encode(part, &h);
	evil_put(&v, part, sizeof(part));
	struct cst *c = evil_conn(&a);
	uint64_t t0 = now_ns();
	while (c->closes == 0 && now_ns() - t0 < 5000 * MS)
		honest_ok(&a, "a stalled frame");
	cr_assert_eq(c->closes, 1);
	cr_assert_eq(c->close_st, TW_ETIMEDOUT);
	cr_assert_eq(stats(&a.srv).stalls, 1);
	evil_close(&v);
	arena_down(&a);
}

/* CMA records from a peer: where we cannot read it (the probe failed),
 * outside a frame's body, past its end, at memory it does not have;
 * and one done right. */
Test(shm, cma_records_are_checked, .timeout = 60)
{
	struct arena a;
	arena_up(&a, 0);
	struct evil v;
	/* This process is the peer: its memory is readable. */
	static uint8_t body[300000];
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = pat(0, 16 + i);
	uint8_t hdr[64];
	frame_head(hdr, 0, 16 + sizeof(body));
	struct shm_cma d = {(uint64_t)(uintptr_t)body, sizeof(body)};

	/* Done right: the header and 16 bytes in the ring, the rest read
	 * from our memory; the server echoes it whole. */
	evil_switched(&a, &v);
	uint64_t cma0 = stats(&a.srv).cma_bytes;
	evil_put(&v, hdr, 64);
	shm_ring_copy_in(&v.tx, v.tx.pos + 8, &d, sizeof(d));
	shm_ring_put_hdr(&v.tx, SHM_REC_CMA, sizeof(d));
	v.tx.pos += 8 + sizeof(d);
	shm_ring_publish(&v.tx);
	struct cst *c = evil_conn(&a);
	cr_assert(PUMP2(&a.srv, &a.cli, c->frames == 1));
	cr_assert_eq(c->bytes, 64 + sizeof(body));
	cr_assert_eq(stats(&a.srv).cma_bytes - cma0, sizeof(body));
	/* The head passed the record once the bytes were read. */
	cr_assert_eq(atomic_load(&v.tx.ctl->head), v.tx.pos);
	evil_close(&v);
	cr_assert(PUMP2(&a.srv, &a.cli, c->closes == 1));

	static const struct {
		const char *what;
		bool header; /* a frame header first */
		uint64_t addr, len;
	} cases[] = {
		{"outside a frame", false, 0, 100},
		{"past the frame's end", true, 0, sizeof(body) + 64},
		{"at memory the peer does not have", true, 4096, 1000},
		{"of no bytes", true, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		evil_switched(&a, &v);
		if (cases[i].header)
			evil_put(&v, hdr, 64);
		struct shm_cma x = {cases[i].addr ? cases[i].addr
						  : (uint64_t)(uintptr_t)body,
				    cases[i].len};
		shm_ring_copy_in(&v.tx, v.tx.pos + 8, &x, sizeof(x));
		shm_ring_put_hdr(&v.tx, SHM_REC_CMA, sizeof(x));
		v.tx.pos += 8 + sizeof(x);
		shm_ring_publish(&v.tx);
		evil_refused(&a, &v, TW_EPROTO, cases[i].what);
		cr_assert(strstr(evil_conn(&a)->why, "CMA") != NULL, "%s: %s",
			  cases[i].what, evil_conn(&a)->why);
	}
	arena_down(&a);
}

/* A SWITCH naming an address that is not the peer's mapping: the probe
 * fails, the server takes no CMA record (the ring only). */
Test(shm, no_cma_without_a_probe_that_passes, .timeout = 60)
{
	struct arena a;
	arena_up(&a, 0);
	struct evil v;
	evil_init(&v);
	uint64_t ring = 64u << 10;
	int mfd = evil_memfd(shm_map_size(ring), SEALS);
	v.len = (size_t)shm_map_size(ring);
	v.map = mmap(NULL, v.len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	/* The probe bytes an honest peer writes: nothing else in this
	 * process reads the same. */
	memset(((struct shm_ring_ctl *)v.map)->probe, 0x5a, 32);
	shm_ring_init(&v.tx, v.map, ring, 0);
	shm_ring_init(&v.rx, v.map, ring, 1);
	v.bells[0] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	v.bells[1] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	evil_setup(&a, &v, ring, mfd, v.bells[0], v.bells[1]);
	close(mfd);
	struct shm_msg h;
	cr_assert(evil_recv(&a, &v, &h, NULL, 0));
	cr_assert_eq(h.type, SM_SWITCH);
	uint64_t denied = stats(&a.srv).cma_denied;
	static uint8_t elsewhere[8192];
	struct shm_switch sw = {(uint64_t)(uintptr_t)elsewhere};
	evil_send(&v, SM_SWITCH, &sw, sizeof(sw), NULL, 0);
	cr_assert(
		PUMP2(&a.srv, &a.cli, stats(&a.srv).cma_denied == denied + 1));
	cr_assert_eq(atomic_load(&v.rx.ctl->cma_ok), 0);
	uint8_t hdr[64];
	frame_head(hdr, 0, 1016);
	evil_put(&v, hdr, 64);
	struct shm_cma d = {(uint64_t)(uintptr_t)elsewhere, 1000};
	shm_ring_copy_in(&v.tx, v.tx.pos + 8, &d, sizeof(d));
	shm_ring_put_hdr(&v.tx, SHM_REC_CMA, sizeof(d));
	v.tx.pos += 8 + sizeof(d);
	shm_ring_publish(&v.tx);
	evil_refused(&a, &v, TW_EPROTO, "CMA without leave");
	cr_assert(strstr(evil_conn(&a)->why, "CMA") != NULL);
	arena_down(&a);
}

/* The peer shares the eventfd we ring: it clears O_NONBLOCK and fills
 * the counter, so that a write(2) would block. Our doorbell goes through
 * io_uring: the loop goes on serving, and closing that connection ends
 * the stuck write. */
Test(shm, a_doorbell_the_peer_blocks_does_not_block_the_loop, .timeout = 60)
{
	struct arena a;
	arena_up(&a, 0);
	struct evil v;
	evil_switched(&a, &v);
	struct cst *c = evil_conn(&a);
	/* bells[1] wakes the connecting side: the server writes to it. */
	cr_assert_eq(fcntl(v.bells[1], F_SETFL, 0), 0);
	uint64_t full = UINT64_C(0xfffffffffffffffe);
	cr_assert_eq(write(v.bells[1], &full, 8), 8);
	/* We sleep (as far as the server can tell): its echo rings us. */
	atomic_store(&v.rx.ctl->cons_sleeping, 1);
	uint64_t rang = stats(&a.srv).doorbells;
	uint8_t f[64];
	frame_head(f, 0, 16);
	evil_put(&v, f, 64);
	cr_assert(PUMP2(&a.srv, &a.cli, stats(&a.srv).doorbells == rang + 1));
	for (int i = 0; i < 20; i++)
		honest_ok(&a, "a blocked doorbell");
	/* Still in flight, stuck in the kernel (a write(2) would be too,
	 * and the loop with it). */
	cr_assert(((struct sconn *)(void *)c->c)->ring_busy);
	uint64_t t0 = now_ns();
	evil_close(&v);
	cr_assert(PUMP2(&a.srv, &a.cli, c->closes == 1),
		  "the connection with the stuck write never ended");
	cr_log_info("closed %lu us after the peer went, its doorbell stuck",
		    (unsigned long)((now_ns() - t0) / 1000));
	honest_ok(&a, "the end of a blocked doorbell");
	arena_down(&a);
}

/* ------------------------------------------------------------------ */
/* Threaded loops                                                       */

/* Work for a loop's own thread, posted as a message. */
struct job {
	struct tw_loop_msg m;
	void (*fn)(struct job *j);
	struct side *s;
	const char *addr;
	uint32_t payload;
	_Atomic int done;
};

static void job_run(struct tw_loop_msg *m)
{
	struct job *j = container_of(m, struct job, m);
	j->fn(j);
	atomic_store(&j->done, 1);
}

static void on_loop(struct side *s, struct job *j)
{
	j->s = s;
	j->m.fn = job_run;
	atomic_store(&j->done, 0);
	cr_assert_eq(tw_loop_post(s->l, &j->m), TW_OK);
	uint64_t dl = now_ns() + LIVE_MS * MS;
	while (!atomic_load(&j->done) && now_ns() < dl)
		usleep(100);
	cr_assert(atomic_load(&j->done), "the loop did not run the job");
}

static void job_create(struct job *j)
{
	struct side *s = j->s;
	struct tw_shm_opts o = opts(256u << 10);
	struct tw_transport_cbs cbs = {
		.ctx = s, .on_frame = on_frame, .on_conn = on_conn};
	cr_assert_eq(tw_shm_transport_create(s->l, &o, &cbs, NULL, &s->t),
		     TW_OK);
	if (j->addr != NULL)
		cr_assert_eq(s->t->ops->listen(s->t, j->addr, s->bound,
					       sizeof(s->bound)),
			     TW_OK);
}

static void job_connect(struct job *j)
{
	connect_to(j->s, j->addr);
}

static void job_send(struct job *j)
{
	cr_assert_eq(send_next(&j->s->cs[0], j->payload), TW_OK);
}

static void job_destroy(struct job *j)
{
	j->s->t->ops->destroy(j->s->t);
	j->s->t = NULL;
}

/* Two loops on their own threads, asleep between frames (a short spin):
 * every frame wakes the other loop through its doorbell, and the echo
 * wakes the first. */
Test(shm, threaded_loops_sleep_and_wake_each_other, .timeout = 60)
{
	struct side srv, cli;
	memset(&srv, 0, sizeof(srv));
	memset(&cli, 0, sizeof(cli));
	srv.trust = cli.trust = true;
	srv.echo = true;
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	lo.spin_ns = 20000;
	lo.yield = true;
	cr_assert_eq(tw_loop_create(&lo, &srv.l), TW_OK);
	cr_assert_eq(tw_loop_create(&lo, &cli.l), TW_OK);
	cr_assert_eq(tw_loop_start(srv.l), TW_OK);
	cr_assert_eq(tw_loop_start(cli.l), TW_OK);
	char dir[160];
	snprintf(dir, sizeof(dir), "shm://%s/", tw_shm_default_dir());
	struct job j = {.fn = job_create, .addr = dir};
	on_loop(&srv, &j);
	j = (struct job){.fn = job_create};
	on_loop(&cli, &j);
	j = (struct job){.fn = job_connect, .addr = srv.bound};
	on_loop(&cli, &j);
	uint64_t dl = now_ns() + LIVE_MS * MS;
	while (now_ns() < dl &&
	       (stats(&cli).rings_up == 0 || stats(&srv).rings_up == 0))
		usleep(1000);
	cr_assert_eq(stats(&cli).rings_up, 1);
	enum { N = 30 };
	for (uint32_t i = 0; i < N; i++) {
		usleep(10000); /* both loops asleep by now */
		j = (struct job){.fn = job_send, .payload = i * 997};
		on_loop(&cli, &j);
		dl = now_ns() + LIVE_MS * MS;
		while (cli.cs[0].frames < i + 1 && now_ns() < dl)
			usleep(50);
		cr_assert_eq(cli.cs[0].frames, i + 1, "echo %u", i);
	}
	struct tw_shm_stats cs = stats(&cli), ss = stats(&srv);
	cr_log_info("threaded: client rang %lu, woken %lu; server rang %lu, "
		    "woken %lu; kicks %lu/%lu",
		    (unsigned long)cs.doorbells, (unsigned long)cs.wakeups,
		    (unsigned long)ss.doorbells, (unsigned long)ss.wakeups,
		    (unsigned long)cs.kicks, (unsigned long)ss.kicks);
	cr_assert_geq(cs.doorbells, N / 2);
	cr_assert_geq(ss.wakeups, N / 2);
	j = (struct job){.fn = job_destroy};
	on_loop(&cli, &j);
	j = (struct job){.fn = job_destroy};
	on_loop(&srv, &j);
	cr_assert_eq(tw_loop_stop(cli.l), TW_OK);
	cr_assert_eq(tw_loop_stop(srv.l), TW_OK);
	tw_loop_destroy(cli.l);
	tw_loop_destroy(srv.l);
	cr_assert_eq(cli.errors + srv.errors, 0, "%s%s", cli.why, srv.why);
}
