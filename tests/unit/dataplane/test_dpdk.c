/* Unit tests for the DPDK transport (its packets on plain bytes are
 * test_dpdk_pkt.c's): options, then worker processes, each with its own
 * EAL, over net_memif and over net_af_packet on a veth pair the test
 * makes, with loss, reordering and duplication injected by tc (netem, or
 * the same faults built from clsact + cBPF + mirred + ifb where netem is
 * missing). */
#include <criterion/criterion.h>

#include "dataplane/util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/buf.h>
#include <tensorwire/frame.h>

#include "dataplane/dpdk.h"
#include "dataplane/dpdk_pkt.h"
#include "dataplane/loop.h"
#include "dataplane/transport.h"
#include "tests/lib/dpdk_faults.h"

#include "tests/integration/h_net.h"

static void clean_leftovers(void);

/* Two busy pollers per test: tests run one at a time (see main). */
int main(int argc, char *argv[])
{
	struct criterion_test_set *tests = criterion_initialize();
	criterion_options.jobs = 1;
	int result = 0;
	if (criterion_handle_args(argc, argv, true))
		result = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	/* Every test process is gone now: whatever one of them could not
	 * remove (it was killed by a timeout) goes. */
	if (geteuid() == 0)
		clean_leftovers();
	return result;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ================================================================== */
/* Options, no EAL (packets: test_dpdk_pkt.c, in every build)         */

Test(dpdk_opts, options)
{
	struct tw_dpdk_opts o;
	tw_dpdk_opts_init(&o, sizeof(o));
	cr_assert_eq(o.opts_size, sizeof(o));
	cr_assert_eq(o.mtu, 1500);
	cr_assert_eq(o.credits, 64);
	cr_assert_eq(o.rto_ns, 5000000);
	cr_assert_eq(o.udp_base_port, 31850);
	cr_assert_eq(o.zc_threshold, 16u << 10);
	/* an older caller's shorter struct is filled only as far as it goes */
	struct tw_dpdk_opts big;
	memset(&big, 0xab, sizeof(big));
	tw_dpdk_opts_init(&big, offsetof(struct tw_dpdk_opts, local_ip));
	cr_assert_eq(big.opts_size, offsetof(struct tw_dpdk_opts, local_ip));
	unsigned char *raw = (unsigned char *)&big.local_ip;
	cr_assert_eq(raw[0], 0xab);
	/* bad env options fail before any EAL work */
	tw_dpdk_env *env = NULL;
	o.local_ip = "not-an-ip";
	cr_assert_eq(tw_dpdk_env_init(&o, 1, &env), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "local_ip 'not-an-ip'") != NULL,
		  "%s", tw_errmsg(TW_EINVAL));
	tw_dpdk_opts_init(&o, sizeof(o));
	o.mtu = 100;
	cr_assert_eq(tw_dpdk_env_init(&o, 1, &env), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "mtu 100") != NULL, "%s",
		  tw_errmsg(TW_EINVAL));
	tw_dpdk_opts_init(&o, sizeof(o));
	cr_assert_eq(o.asm_bytes, 2 * ((UINT64_C(1) << 30) + (64u << 10)));
	cr_assert_eq(o.asm_stall_ns, 30000000000ull);
	cr_assert_eq(o.ooo_max, 0);
	cr_assert_eq(o.rexmit_max, 0);
	cr_assert_eq(o.accept_timeout_ns, 3000000000ull);
	o.ooo_max = o.mbufs;
	cr_assert_eq(tw_dpdk_env_init(&o, 1, &env), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "ooo_max") != NULL, "%s",
		  tw_errmsg(TW_EINVAL));
	tw_dpdk_opts_init(&o, sizeof(o));
	o.asm_stall_ns = 0;
	cr_assert_eq(tw_dpdk_env_init(&o, 1, &env), TW_EINVAL);
	tw_dpdk_opts_init(&o, sizeof(o));
	cr_assert_eq(tw_dpdk_env_init(&o, 0, &env), TW_EINVAL);
	cr_assert_null(env);
}

/* ================================================================== */
/* Worker processes                                                    */

#define SRV_IP "10.77.0.1"
#define CLI_IP "10.77.0.2"
#define BASE_PORT 31850
#define SRV_MAC "02:00:00:00:01:01"
#define CLI_MAC "02:00:00:00:01:02"
#define EAL_COMMON                                                             \
	"--no-huge -m 256 --no-pci --no-telemetry --log-level=warning "

enum { SRV = 0, CLI = 1 };

struct result {
	int failed, ran;
	char msg[512];
	uint64_t frames, bytes, dones_ok, dones_fail, dones_unreach;
	int closes;
	tw_status close_st;
	uint64_t detect_ns;  /* kill test: kill -> close upcall */
	uint64_t elapsed_ns; /* client: all frames and echoes */
	uint64_t big_ns;     /* client: 64 MiB echo round trip */
	struct tw_dpdk_stats st;
	struct tw_dpdk_fault_stats faults; /* injected (tests/lib) */
	struct tw_dpdk_port_info info;
};

struct shm {
	_Atomic int srv_ready, srv_done, cli_done, cli_phase, killed;
	_Atomic int srv_pid, cli_started;
	_Atomic uint64_t kill_ns;
	struct result r[2];
};

enum scen { SC_EXCHANGE, SC_KILL };

/* What the two workers do. Set up by the parent, read by the children
 * after fork. */
struct work {
	enum scen scen;
	const uint32_t *sizes; /* payload sizes of the first frames */
	uint32_t nsizes;
	uint32_t repeat;        /* the size list this many times */
	uint32_t nsmall, small; /* then nsmall frames of small bytes */
	uint64_t timeout_ns;    /* for the whole exchange */
	struct tw_dpdk_opts o;  /* transport options, both sides */
	uint32_t fault[2][3];   /* per role: drop, dup, reorder ppm */
	char eal[2][512];
	char port[2][64];
	int ifindex[2]; /* af_packet: the interfaces' indexes */
};

#define EXIT_RETRY 77

/* LeakSanitizer's check, present only in sanitized builds: workers leave
 * with _exit (no atexit check), so they ask for it before. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static bool leaks_found(void)
{
	return __lsan_do_recoverable_leak_check != NULL &&
	       __lsan_do_recoverable_leak_check() != 0;
}

static void wfail(struct result *r, const char *fmt, ...)
{
	if (r->failed)
		return;
	r->failed = 1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
}

/* Payload of frame id: little-endian 64-bit words W(k) = (k + 1) * odd
 * constant ^ a per-id value. Multiplying by an odd constant is a
 * bijection, so every 8-byte word of a frame differs from every other
 * one: a byte out of place anywhere fails the check. */
static inline uint64_t pat_word(uint64_t id, uint64_t k)
{
	return (k + 1) * 0x9e3779b97f4a7c15ull ^
	       (id + 1) * 0xd1b54a32d192ed03ull;
}

static void pat_fill(uint8_t *p, size_t n, uint64_t id)
{
	size_t k = 0;
	for (; (k + 1) * 8 <= n; k++) {
		uint64_t w = pat_word(id, k);
		memcpy(p + k * 8, &w, 8);
	}
	uint64_t w = pat_word(id, k);
	memcpy(p + k * 8, &w, n - k * 8);
}

static bool pat_ok(const uint8_t *p, size_t n, uint64_t id)
{
	size_t k = 0;
	uint64_t diff = 0;
	for (; (k + 1) * 8 <= n; k++) {
		uint64_t w;
		memcpy(&w, p + k * 8, 8);
		diff |= w ^ pat_word(id, k);
	}
	uint64_t w = pat_word(id, k), got = 0;
	memcpy(&got, p + k * 8, n - k * 8);
	memset((uint8_t *)&w + (n - k * 8), 0, 8 - (n - k * 8));
	return (diff | (got ^ w)) == 0;
}

/* Frame id as the header's req_id, then the pattern. */
static void frame_fill(uint8_t *f, uint64_t id, uint32_t payload)
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
	tw_frame_hdr_encode(f, &h);
	pat_fill(f + TW_FRAME_HDR_SIZE, payload, id);
}

/* "" when f is frame id, byte for byte; else what is wrong. */
static const char *frame_check(const uint8_t *f, size_t len, uint64_t id)
{
	tw_frame_hdr h;
	if (tw_frame_hdr_decode(f, NULL, &h) != TW_OK)
		return "header";
	if (h.req_id != id)
		return "id (order or duplicate)";
	if (h.total_len != len || h.payload_len + TW_FRAME_HDR_SIZE != len)
		return "length";
	if (h.type != 1 + id % 13)
		return "type";
	if (!pat_ok(f + TW_FRAME_HDR_SIZE, h.payload_len, id))
		return "payload bytes";
	return "";
}

struct wk;

/* A frame on its way: the client's originals and the server's echoes. */
struct sreq {
	struct tw_send_req r;
	struct iovec iov[3];
	struct wk *k;
	tw_buf *hold;      /* echo: the received buffer */
	struct sreq *next; /* echo backlog */
	int ndone;
	tw_status st;
};

struct wk {
	struct result *res;
	struct shm *sh;
	const struct work *w;
	int role;
	tw_dpdk_env *env;
	tw_loop *l;
	tw_transport *t;
	tw_dpdk_rx_faults *faults;
	tw_conn *c;
	uint64_t expect; /* next frame id */
	uint64_t total;  /* frames in the exchange */
	uint64_t last_frame_ns;
	uint64_t big0; /* client: when the 64 MiB frame left */
	int conns_ok;
	struct sreq *backlog, *backlog_tail;
	uint64_t echoes_queued;
};

static void on_done(struct tw_send_req *r, tw_status st)
{
	struct sreq *q = container_of(r, struct sreq, r);
	struct wk *k = q->k;
	q->ndone++;
	q->st = st;
	if (q->ndone != 1)
		wfail(k->res, "done ran %d times", q->ndone);
	if (st == TW_OK)
		k->res->dones_ok++;
	else if (st == TW_EUNREACHABLE)
		k->res->dones_unreach++;
	else
		k->res->dones_fail++;
	if (q->hold != NULL) {
		tw_buf_release(q->hold);
		q->hold = NULL;
		free(q);
	}
}

static void on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h, tw_buf *b,
		     size_t off, size_t len)
{
	struct wk *k = ctx;
	if (h->total_len != len)
		wfail(k->res, "frame %lu: header says %lu bytes, got %zu",
		      (unsigned long)k->expect, (unsigned long)h->total_len,
		      len);
	const uint8_t *f = (const uint8_t *)b->data + off;
	k->last_frame_ns = now_ns();
	if (((uintptr_t)f & 63u) != 0)
		wfail(k->res, "frame %lu not 64-byte aligned",
		      (unsigned long)k->expect);
	const char *why = frame_check(f, len, k->expect);
	if (*why)
		wfail(k->res, "frame %lu (%zu bytes): bad %s",
		      (unsigned long)k->expect, len, why);
	if (len >= (64u << 20) && k->big0 != 0 && k->res->big_ns == 0)
		k->res->big_ns = k->last_frame_ns - k->big0;
	k->expect++;
	k->res->frames++;
	k->res->bytes += len;
	if (k->role != SRV || k->w->scen == SC_KILL)
		return;
	/* Echo it back without a copy: the received buffer is the iovec. */
	struct sreq *q = calloc(1, sizeof(*q));
	q->k = k;
	q->hold = tw_buf_retain(b);
	q->iov[0] = (struct iovec){(void *)(uintptr_t)f, len};
	q->r.iov = q->iov;
	q->r.niov = 1;
	q->r.len = len;
	q->r.done = on_done;
	k->echoes_queued++;
	tw_status st = tw_transport_send(k->t, c, &q->r);
	if (st == TW_ENOSPC) {
		if (k->backlog_tail)
			k->backlog_tail->next = q;
		else
			k->backlog = q;
		k->backlog_tail = q;
	} else if (st != TW_OK) {
		wfail(k->res, "echo send: %s", tw_status_name(st));
		tw_buf_release(q->hold);
		free(q);
	}
}

static void on_conn(void *ctx, tw_conn *c, tw_status st)
{
	struct wk *k = ctx;
	if (st == TW_OK) {
		k->conns_ok++;
		if (k->role == SRV)
			k->c = c;
		return;
	}
	k->res->closes++;
	k->res->close_st = st;
	if (k->c == c)
		k->c = NULL;
	if (k->sh->killed && k->res->detect_ns == 0)
		k->res->detect_ns = now_ns() - k->sh->kill_ns;
}

/* TWT_TRACE=<ms>: each worker prints its counters every <ms> (debugging
 * aid). */
static void trace(struct wk *k)
{
	static uint64_t last;
	static int on = -1;
	if (on < 0)
		on = getenv("TWT_TRACE") != NULL;
	if (!on ||
	    now_ns() - last < (uint64_t)atoi(getenv("TWT_TRACE")) * 1000000ull)
		return;
	last = now_ns();
	struct tw_dpdk_stats s;
	tw_dpdk_get_stats(k->t, &s);
	fprintf(stderr,
		"%s: frames %lu dones %lu | pkts tx %lu rx %lu data %lu "
		"rexmit %lu rto %lu fast %lu naks %lu acks %lu dup %lu ooo %lu "
		"ooodrop %lu txfull %lu nombuf %lu bad %lu foreign %lu "
		"inplace %lu copied %lu\n",
		k->role == SRV ? "srv" : "cli", (unsigned long)k->res->frames,
		(unsigned long)k->res->dones_ok, (unsigned long)s.pkts_tx,
		(unsigned long)s.pkts_rx, (unsigned long)s.data_pkts_tx,
		(unsigned long)s.retransmits, (unsigned long)s.rto_fires,
		(unsigned long)s.fast_rexmits, (unsigned long)s.naks_tx,
		(unsigned long)s.acks_tx, (unsigned long)s.dup_pkts,
		(unsigned long)s.ooo_pkts, (unsigned long)s.ooo_drops,
		(unsigned long)s.tx_full, (unsigned long)s.tx_nombuf,
		(unsigned long)s.bad_pkts, (unsigned long)s.foreign_pkts,
		(unsigned long)s.rx_inplace, (unsigned long)s.rx_copied);
}

static void backlog_retry(struct wk *k)
{
	trace(k);
	while (k->backlog != NULL && k->c != NULL) {
		struct sreq *q = k->backlog;
		tw_status st = tw_transport_send(k->t, k->c, &q->r);
		if (st == TW_ENOSPC)
			return;
		k->backlog = q->next;
		if (k->backlog == NULL)
			k->backlog_tail = NULL;
		q->next = NULL;
		if (st != TW_OK) {
			wfail(k->res, "echo send: %s", tw_status_name(st));
			tw_buf_release(q->hold);
			free(q);
		}
	}
}

#define PUMP_YIELD 64u         /* idle polls before yielding */
#define PUMP_NAP_NS 5000000ull /* idle time before napping */

/* Poll until cond, or timeout. Yields when idle (the other worker and the
 * harness share the two cores), naps after 5 ms without work. */
#define PUMP(k, cond, ns)                                                      \
	({                                                                     \
		uint64_t dl_ = now_ns() + (ns), busy_ = now_ns();              \
		unsigned idle_ = 0;                                            \
		bool ok_ = true;                                               \
		while (!(cond)) {                                              \
			uint64_t t_ = now_ns();                                \
			if (t_ > dl_) {                                        \
				ok_ = false;                                   \
				break;                                         \
			}                                                      \
			int w_ = tw_loop_poll_once((k)->l);                    \
			backlog_retry(k);                                      \
			if (w_ > 0) {                                          \
				idle_ = 0;                                     \
				busy_ = t_;                                    \
			} else if (t_ - busy_ > PUMP_NAP_NS) {                 \
				struct timespec ts_ = {0, 50000};              \
				nanosleep(&ts_, NULL);                         \
			} else if (++idle_ > PUMP_YIELD) {                     \
				sched_yield();                                 \
			}                                                      \
		}                                                              \
		ok_;                                                           \
	})

static int wk_setup(struct wk *k, int role, const struct work *w,
		    struct shm *sh)
{
	memset(k, 0, sizeof(*k));
	k->role = role;
	k->w = w;
	k->sh = sh;
	k->res = &sh->r[role];
	k->res->ran = 1;
	struct tw_dpdk_opts o = w->o;
	o.eal_args = w->eal[role];
	o.port = w->port[role];
	o.local_ip = role == SRV ? SRV_IP : CLI_IP;
	tw_status st = tw_dpdk_env_init(&o, 1, &k->env);
	if (st != TW_OK) {
		wfail(k->res, "env: %s (%s)", tw_status_name(st),
		      tw_errmsg(st));
		return -1;
	}
	tw_dpdk_env_info(k->env, &k->res->info);
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	lo.yield = true;
	lo.tick_ns = 250000;
	if (tw_loop_create(&lo, &k->l) != TW_OK) {
		wfail(k->res, "loop");
		return -1;
	}
	struct tw_transport_cbs cbs = {
		.ctx = k, .on_frame = on_frame, .on_conn = on_conn};
	st = tw_dpdk_transport_create(k->l, k->env, 0, &o, &cbs, &k->t);
	if (st != TW_OK) {
		wfail(k->res, "transport: %s", tw_status_name(st));
		return -1;
	}
	const uint32_t *fp = w->fault[role];
	if (fp[0] | fp[1] | fp[2]) {
		struct tw_dpdk_faults f = {.drop_ppm = fp[0],
					   .dup_ppm = fp[1],
					   .reorder_ppm = fp[2]};
		st = tw_dpdk_faults_install(k->env, 0, &f, &k->faults);
		if (st != TW_OK) {
			wfail(k->res, "faults: %s (%s)", tw_status_name(st),
			      tw_errmsg(st));
			return -1;
		}
	}
	return 0;
}

static void wk_teardown(struct wk *k)
{
	if (k->t) {
		tw_dpdk_get_stats(k->t, &k->res->st);
		k->t->ops->destroy(k->t);
	}
	/* Nothing polls the queue now; a packet still held goes back to
	 * its pool before the env frees it. */
	tw_dpdk_faults_get_stats(k->faults, &k->res->faults);
	tw_dpdk_faults_remove(k->faults);
	if (k->l)
		tw_loop_destroy(k->l);
	if (k->env) {
		tw_status st = tw_dpdk_env_destroy(k->env);
		if (st != TW_OK)
			wfail(k->res, "env destroy: %s", tw_status_name(st));
	}
	tw_dpdk_eal_cleanup();
}

static void server_main(struct wk *k)
{
	const struct work *w = k->w;
	char bound[96];
	tw_status st = k->t->ops->listen(k->t, "udp://" SRV_IP ":0", bound,
					 sizeof(bound));
	if (st != TW_OK) {
		wfail(k->res, "listen: %s", tw_status_name(st));
		return;
	}
	if (strcmp(bound, "udp://" SRV_IP ":31850/" SRV_MAC) != 0)
		wfail(k->res, "bound %s", bound);
	k->total = (uint64_t)w->nsizes * w->repeat + w->nsmall;
	atomic_store(&k->sh->srv_ready, 1);
	if (w->scen == SC_KILL) {
		/* Serve until killed. */
		PUMP(k, false, w->timeout_ns);
		return;
	}
	if (!PUMP(k,
		  k->res->frames == k->total &&
			  k->res->dones_ok + k->res->dones_fail +
					  k->res->dones_unreach ==
				  k->total,
		  w->timeout_ns)) {
		wfail(k->res, "server: %lu of %lu frames, %lu echoes done",
		      (unsigned long)k->res->frames, (unsigned long)k->total,
		      (unsigned long)k->res->dones_ok);
		return;
	}
	if (k->res->dones_ok != k->total)
		wfail(k->res, "server: echo dones ok %lu",
		      (unsigned long)k->res->dones_ok);
	atomic_store(&k->sh->srv_done, 1);
	/* Stay until the client has everything: it may still need acks. */
	if (!PUMP(k, atomic_load(&k->sh->cli_done) != 0, 30000000000ull))
		wfail(k->res, "server: client never finished");
}

/* The client's frames: sizes x repeat, then the small ones. */
struct cframes {
	uint64_t n;
	struct sreq *q;
	uint8_t **mem;
};

static int cframes_make(struct wk *k, struct cframes *cf)
{
	const struct work *w = k->w;
	cf->n = (uint64_t)w->nsizes * w->repeat + w->nsmall;
	cf->q = calloc(cf->n, sizeof(*cf->q));
	cf->mem = calloc(cf->n, sizeof(*cf->mem));
	if (cf->q == NULL || cf->mem == NULL)
		return -1;
	for (uint64_t i = 0; i < cf->n; i++) {
		uint32_t payload = i < (uint64_t)w->nsizes * w->repeat
					   ? w->sizes[i % w->nsizes]
					   : w->small;
		size_t len = TW_FRAME_HDR_SIZE + (size_t)payload;
		cf->mem[i] = malloc(len);
		if (cf->mem[i] == NULL)
			return -1;
		frame_fill(cf->mem[i], i, payload);
		struct sreq *q = &cf->q[i];
		q->k = k;
		if (i % 3 == 1 && payload >= 4) {
			/* header, then the payload in two pieces */
			size_t a = TW_FRAME_HDR_SIZE, b = payload / 3;
			q->iov[0] = (struct iovec){cf->mem[i], a};
			q->iov[1] = (struct iovec){cf->mem[i] + a, b};
			q->iov[2] = (struct iovec){cf->mem[i] + a + b,
						   len - a - b};
			q->r.niov = 3;
		} else {
			q->iov[0] = (struct iovec){cf->mem[i], len};
			q->r.niov = 1;
		}
		q->r.iov = q->iov;
		q->r.len = len;
		q->r.type = (uint32_t)(1 + i % 13);
		q->r.done = on_done;
	}
	return 0;
}

static void cframes_free(struct cframes *cf)
{
	for (uint64_t i = 0; cf->mem && i < cf->n; i++)
		free(cf->mem[i]);
	free(cf->mem);
	free(cf->q);
}

static uint64_t client_dones(const struct wk *k)
{
	return k->res->dones_ok + k->res->dones_fail + k->res->dones_unreach;
}

static void client_main(struct wk *k)
{
	const struct work *w = k->w;
	struct cframes cf = {0};
	if (cframes_make(k, &cf) != 0) {
		wfail(k->res, "client: out of memory");
		cframes_free(&cf);
		return;
	}
	k->total = cf.n;
	tw_status st = k->t->ops->connect(
		k->t, "udp://" SRV_IP ":31850/" SRV_MAC, &k->c);
	if (st != TW_OK) {
		wfail(k->res, "connect: %s", tw_status_name(st));
		cframes_free(&cf);
		return;
	}
	uint64_t t0 = now_ns();
	uint64_t sent = 0;
	uint64_t dl = now_ns() + w->timeout_ns;
	if (w->scen == SC_KILL) {
		/* 20 frames that complete, then the server dies under 50
		 * more that cannot. */
		uint64_t first = cf.n < 20 ? cf.n : 20;
		for (; sent < first; sent++)
			if (tw_transport_send(k->t, k->c, &cf.q[sent].r) !=
			    TW_OK)
				wfail(k->res, "send %lu", (unsigned long)sent);
		if (!PUMP(k, client_dones(k) == first || k->res->closes,
			  w->timeout_ns))
			wfail(k->res, "client: first frames not done");
		if (k->res->dones_ok != first)
			wfail(k->res, "client: %lu of %lu first frames ok",
			      (unsigned long)k->res->dones_ok,
			      (unsigned long)first);
		atomic_store(&k->sh->cli_phase, 1);
		PUMP(k, atomic_load(&k->sh->killed) != 0, 10000000000ull);
		for (; sent < cf.n; sent++)
			if (tw_transport_send(k->t, k->c, &cf.q[sent].r) !=
			    TW_OK)
				wfail(k->res, "send %lu", (unsigned long)sent);
		if (!PUMP(k, k->res->closes != 0, w->timeout_ns))
			wfail(k->res, "client: dead peer never detected");
		if (client_dones(k) != cf.n)
			wfail(k->res, "client: %lu dones of %lu",
			      (unsigned long)client_dones(k),
			      (unsigned long)cf.n);
		if (k->res->dones_unreach != cf.n - first)
			wfail(k->res, "client: %lu sends failed unreachable",
			      (unsigned long)k->res->dones_unreach);
		cframes_free(&cf);
		return;
	}
	while (!k->res->failed &&
	       (k->res->frames < cf.n || client_dones(k) < cf.n)) {
		if (now_ns() > dl) {
			wfail(k->res,
			      "client: %lu of %lu echoes, %lu dones, "
			      "%lu sent",
			      (unsigned long)k->res->frames,
			      (unsigned long)cf.n,
			      (unsigned long)client_dones(k),
			      (unsigned long)sent);
			break;
		}
		while (sent < cf.n && k->c != NULL) {
			if (cf.q[sent].r.len >= (64u << 20)) {
				/* the big one alone on the wire, timed */
				if (k->res->frames < sent)
					break;
				k->big0 = now_ns();
			}
			st = tw_transport_send(k->t, k->c, &cf.q[sent].r);
			if (st == TW_ENOSPC)
				break;
			if (st != TW_OK) {
				wfail(k->res, "send %lu: %s",
				      (unsigned long)sent, tw_status_name(st));
				break;
			}
			sent++;
		}
		uint64_t before = k->res->frames;
		PUMP(k, k->res->frames != before, 1000000ull);
		if (k->res->closes)
			wfail(k->res, "client: session closed (%s)",
			      tw_status_name(k->res->close_st));
	}
	k->res->elapsed_ns = now_ns() - t0;
	if (k->res->dones_ok != cf.n)
		wfail(k->res, "client: dones ok %lu of %lu",
		      (unsigned long)k->res->dones_ok, (unsigned long)cf.n);
	/* Keep acking until the server has all its echoes acked. */
	if (!PUMP(k, atomic_load(&k->sh->srv_done) != 0, 30000000000ull))
		wfail(k->res, "client: server never finished");
	/* A local close: the server hears a RESET. */
	if (k->c != NULL) {
		k->t->ops->close(k->t, k->c);
		if (!PUMP(k, k->res->closes != 0, 5000000000ull))
			wfail(k->res, "client: no close upcall");
		else if (k->res->close_st != TW_ESHUTDOWN)
			wfail(k->res, "client: close status %s",
			      tw_status_name(k->res->close_st));
	}
	atomic_store(&k->sh->cli_done, 1);
	cframes_free(&cf);
}

static void worker(int role, const struct work *w, struct shm *sh)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* af_packet names its PACKET_FANOUT group (pid ^ ifindex) & 0xffff:
	 * two workers on the ends of one veth pair can collide (the second
	 * socket then fails with EINVAL). Ask for another pid. */
	if (role == CLI && w->ifindex[CLI] != 0 &&
	    ((getpid() ^ w->ifindex[CLI]) & 0xffff) ==
		    ((atomic_load(&sh->srv_pid) ^ w->ifindex[SRV]) & 0xffff))
		_exit(EXIT_RETRY);
	if (role == CLI)
		atomic_store(&sh->cli_started, 1);
	struct wk k;
	if (wk_setup(&k, role, w, sh) == 0) {
		if (role == SRV)
			server_main(&k);
		else
			client_main(&k);
	}
	if (role == SRV)
		atomic_store(&sh->srv_ready, 1); /* even on failure */
	wk_teardown(&k);
	if (leaks_found())
		wfail(k.res, "leaks (see the LeakSanitizer report)");
	_exit(k.res->failed ? 1 : 0);
}

/* ------------------------------------------------------------------ */
/* Parent side: children, veth pairs, qdiscs, leftovers                */

static void rm_rf(const char *path)
{
	if (strncmp(path, "/var/run/dpdk/twt", 17) != 0)
		return; /* only our own */
	hn_sh("rm -rf '%s'", path);
}

/* What an earlier run killed mid-test may have left: veth pairs, ifbs
 * and DPDK run directories named after a pid that is gone. */
static void clean_leftovers(void)
{
	hn_clean_stale("twAtwBtwI", "twt");
}

static bool can_run_eal(void)
{
	return geteuid() == 0;
}

#define NEED_ROOT()                                                            \
	do {                                                                   \
		if (!can_run_eal())                                            \
			cr_skip_test("DPDK tests need root");                  \
	} while (0)

static int run_seq;

struct pair {
	char prefix[2][64];
	char sock[96];
	int status[2];
	bool timed_out;
	uint64_t ms;
};

static void work_init(struct work *w, struct pair *p)
{
	memset(w, 0, sizeof(*w));
	memset(p, 0, sizeof(*p));
	tw_dpdk_opts_init(&w->o, sizeof(w->o));
	w->o.dead_ns = 3000000000ull;
	w->o.max_queued = 16384;
	w->o.zc_threshold = 8192;
	w->repeat = 1;
	w->timeout_ns = 60000000000ull;
	int n = ++run_seq;
	snprintf(p->prefix[SRV], sizeof(p->prefix[SRV]), "twt%ds%d",
		 (int)getpid(), n);
	snprintf(p->prefix[CLI], sizeof(p->prefix[CLI]), "twt%dc%d",
		 (int)getpid(), n);
	snprintf(p->sock, sizeof(p->sock), "/tmp/twt-memif-%d-%d.sock",
		 (int)getpid(), n);
}

static void work_memif(struct work *w, struct pair *p)
{
	snprintf(w->eal[SRV], sizeof(w->eal[SRV]),
		 "-l 1 " EAL_COMMON "--file-prefix=%s "
		 "--vdev=net_memif0,role=server,socket=%s,mac=" SRV_MAC,
		 p->prefix[SRV], p->sock);
	snprintf(w->eal[CLI], sizeof(w->eal[CLI]),
		 "-l 0 " EAL_COMMON "--file-prefix=%s "
		 "--vdev=net_memif0,role=client,socket=%s,mac=" CLI_MAC,
		 p->prefix[CLI], p->sock);
	snprintf(w->port[SRV], sizeof(w->port[SRV]), "net_memif0");
	snprintf(w->port[CLI], sizeof(w->port[CLI]), "net_memif0");
}

struct veth {
	char a[16], b[16], ifb[16];
	int index[2];
	bool made, ifb_made;
	const char *impair; /* "netem", "clsact" or NULL */
};

static void veth_del(struct veth *v)
{
	if (v->made)
		hn_sh("ip link del %s", v->a);
	if (v->ifb_made)
		hn_sh("ip link del %s", v->ifb);
	v->made = v->ifb_made = false;
}

/* Server on A, client on B; MACs as the rendezvous would give them. */
static bool veth_make(struct veth *v)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->a, sizeof(v->a), "twA%d", (int)getpid());
	snprintf(v->b, sizeof(v->b), "twB%d", (int)getpid());
	snprintf(v->ifb, sizeof(v->ifb), "twI%d", (int)getpid());
	clean_leftovers();
	if (hn_sh("ip link add %s type veth peer name %s", v->a, v->b) != 0)
		return false;
	v->made = true;
	hn_quiet(v->a);
	hn_quiet(v->b);
	v->index[0] = hn_ifindex(v->a);
	v->index[1] = hn_ifindex(v->b);
	if (hn_sh("ip link set %s address " SRV_MAC, v->a) != 0 ||
	    hn_sh("ip link set %s address " CLI_MAC, v->b) != 0 ||
	    hn_sh("ip link set %s up", v->a) != 0 ||
	    hn_sh("ip link set %s up", v->b) != 0) {
		veth_del(v);
		return false;
	}
	return true;
}

/* qdisc: the PMD's sockets bypass the qdisc layer (and so tc) unless
 * told not to; the loss tests need tc on the path. */
static void work_afpacket(struct work *w, struct pair *p, const struct veth *v,
			  bool qdisc)
{
	const char *bp = qdisc ? ",qdisc_bypass=0" : "";
	snprintf(w->eal[SRV], sizeof(w->eal[SRV]),
		 "-l 1 " EAL_COMMON "--file-prefix=%s "
		 "--vdev=net_af_packet0,iface=%s%s",
		 p->prefix[SRV], v->a, bp);
	snprintf(w->eal[CLI], sizeof(w->eal[CLI]),
		 "-l 0 " EAL_COMMON "--file-prefix=%s "
		 "--vdev=net_af_packet0,iface=%s%s",
		 p->prefix[CLI], v->b, bp);
	snprintf(w->port[SRV], sizeof(w->port[SRV]), "net_af_packet0");
	snprintf(w->port[CLI], sizeof(w->port[CLI]), "net_af_packet0");
	w->ifindex[SRV] = v->index[0];
	w->ifindex[CLI] = v->index[1];
}

/* Loss (and for heavy: reordering and duplication) on the egress of both
 * ends: netem, or clsact + cls_bpf + mirred + ifb (h_net.h). */
static bool veth_impair(struct veth *v, uint32_t loss_ppm, bool heavy)
{
	const char *devs[2] = {v->a, v->b};
	const char *peers[2] = {v->b, v->a};
	v->impair = hn_impair(devs, peers, 2, v->ifb, &v->ifb_made, loss_ppm,
			      heavy);
	return v->impair != NULL;
}

static void wait_child(pid_t pid, int *status, uint64_t deadline, bool *late)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return;
		if (r < 0) {
			*status = -1;
			return;
		}
		if (now_ns() > deadline) {
			*late = true;
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return;
		}
		usleep(2000);
	}
}

/* Fork the server, wait until it listens, fork the client, wait for both
 * (SIGKILL past timeout), then remove their DPDK run directories. For the
 * kill scenario, SIGKILL the server when the client asks. */
static void run_pair(const struct work *w, struct pair *p, struct shm *sh)
{
	memset(sh, 0, sizeof(*sh));
	uint64_t t0 = now_ns();
	uint64_t deadline = t0 + w->timeout_ns + 40000000000ull;
	fflush(NULL);
	pid_t srv = fork();
	if (srv == 0)
		worker(SRV, w, sh);
	atomic_store(&sh->srv_pid, (int)srv);
	while (!atomic_load(&sh->srv_ready) && now_ns() < t0 + 20000000000ull &&
	       waitpid(srv, &p->status[SRV], WNOHANG) == 0)
		usleep(1000);
	pid_t cli;
	for (int tries = 0;; tries++) {
		cli = fork();
		if (cli == 0)
			worker(CLI, w, sh);
		int st = 0;
		pid_t r = 0;
		while (!atomic_load(&sh->cli_started) &&
		       (r = waitpid(cli, &st, WNOHANG)) == 0)
			usleep(200);
		if (r == cli && WIFEXITED(st) &&
		    WEXITSTATUS(st) == EXIT_RETRY && tries < 100)
			continue;
		if (r == cli) /* gone already: keep its status */
			p->status[CLI] = st;
		break;
	}
	bool srv_reaped = false;
	if (w->scen == SC_KILL) {
		while (!atomic_load(&sh->cli_phase) && now_ns() < deadline &&
		       waitpid(cli, &p->status[CLI], WNOHANG) == 0)
			usleep(1000);
		kill(srv, SIGKILL);
		waitpid(srv, &p->status[SRV], 0);
		atomic_store(&sh->kill_ns, now_ns());
		atomic_store(&sh->killed, 1);
		srv_reaped = true;
	}
	if (atomic_load(&sh->cli_started))
		wait_child(cli, &p->status[CLI], deadline, &p->timed_out);
	if (!srv_reaped)
		wait_child(srv, &p->status[SRV], deadline, &p->timed_out);
	p->ms = (now_ns() - t0) / 1000000;
	for (int i = 0; i < 2; i++) {
		char d[128];
		snprintf(d, sizeof(d), "/var/run/dpdk/%s", p->prefix[i]);
		rm_rf(d);
		struct stat stb;
		cr_expect_neq(stat(d, &stb), 0, "%s left behind", d);
	}
}

static struct shm *shm_new(void)
{
	struct shm *sh = mmap(NULL, sizeof(struct shm), PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(sh, MAP_FAILED);
	return sh;
}

static void report(const char *name, const struct pair *p, const struct shm *sh)
{
	const struct tw_dpdk_stats *c = &sh->r[CLI].st, *s = &sh->r[SRV].st;
	fprintf(stderr,
		"[dpdk] %s: %lu ms; client: %lu echoes, rexmit %lu, rto %lu, "
		"fast %lu, dup %lu, ooo %lu, zc segs %lu, inplace %lu, "
		"copied %lu; server: rexmit %lu, rto %lu, dup %lu, ooo %lu, "
		"bad %lu%s%s\n",
		name, (unsigned long)p->ms, (unsigned long)sh->r[CLI].frames,
		(unsigned long)c->retransmits, (unsigned long)c->rto_fires,
		(unsigned long)c->fast_rexmits, (unsigned long)c->dup_pkts,
		(unsigned long)c->ooo_pkts, (unsigned long)c->zc_segs,
		(unsigned long)c->rx_inplace, (unsigned long)c->rx_copied,
		(unsigned long)s->retransmits, (unsigned long)s->rto_fires,
		(unsigned long)s->dup_pkts, (unsigned long)s->ooo_pkts,
		(unsigned long)(s->bad_pkts + c->bad_pkts),
		sh->r[CLI].big_ns ? ", 64 MiB echo " : "",
		sh->r[CLI].big_ns ? "(see below)" : "");
	for (int r = 0; r < 2; r++)
		for (int e = 0; e < TW_DPDK_BAD_REASONS; e++)
			if (sh->r[r].st.bad_by_reason[e])
				fprintf(stderr, "[dpdk] %s: %s bad %s: %lu\n",
					name, r == SRV ? "server" : "client",
					twp_err_name((enum twp_err)e),
					(unsigned long)sh->r[r]
						.st.bad_by_reason[e]);
	if (sh->r[CLI].big_ns)
		fprintf(stderr,
			"[dpdk] %s: 64 MiB frame echoed in %.1f ms (%.2f GB/s "
			"each way; rough in-test figure)\n",
			name, (double)sh->r[CLI].big_ns / 1e6,
			2.0 * (double)(64u << 20) / (double)sh->r[CLI].big_ns);
}

/* A machine where the EAL itself cannot start (no root, no memory for
 * it) skips; anything after rte_eal_init succeeded must work. */
static void skip_without_eal(const struct shm *sh)
{
	for (int r = 0; r < 2; r++)
		if (strstr(sh->r[r].msg, "rte_eal_init failed") != NULL)
			cr_skip_test("the EAL cannot start here: %s",
				     sh->r[r].msg);
}

static void expect_ok(const struct pair *p, const struct shm *sh)
{
	skip_without_eal(sh);
	cr_assert(!p->timed_out, "workers timed out (server: %s | client: %s)",
		  sh->r[SRV].msg, sh->r[CLI].msg);
	cr_assert(sh->r[SRV].ran && sh->r[CLI].ran);
	cr_assert_eq(sh->r[SRV].failed, 0, "server: %s", sh->r[SRV].msg);
	cr_assert_eq(sh->r[CLI].failed, 0, "client: %s", sh->r[CLI].msg);
	cr_assert(WIFEXITED(p->status[SRV]) && WEXITSTATUS(p->status[SRV]) == 0,
		  "server status %d", p->status[SRV]);
	cr_assert(WIFEXITED(p->status[CLI]) && WEXITSTATUS(p->status[CLI]) == 0,
		  "client status %d", p->status[CLI]);
}

/* Every frame exactly once, in order, byte-exact, both ways (the workers
 * check each frame as it comes: id = the next expected, then the bytes). */
static void expect_exchange(const struct work *w, const struct shm *sh)
{
	uint64_t n = (uint64_t)w->nsizes * w->repeat + w->nsmall;
	cr_assert_eq(sh->r[SRV].frames, n);
	cr_assert_eq(sh->r[CLI].frames, n);
	cr_assert_eq(sh->r[CLI].dones_ok, n);
	cr_assert_eq(sh->r[SRV].dones_ok, n);
	cr_assert_eq(sh->r[SRV].bytes, sh->r[CLI].bytes);
}

/* ================================================================== */
/* Over net_memif                                                      */

static const uint32_t SIZES[] = {0, 1, 4096, 1u << 20, 64u << 20};

Test(dpdk, memif_exchange, .timeout = 120)
{
	NEED_ROOT();
	struct work w;
	struct pair p;
	work_init(&w, &p);
	work_memif(&w, &p);
	w.sizes = SIZES;
	w.nsizes = 5;
	w.nsmall = 10000;
	w.small = 64;
	struct shm *sh = shm_new();
	run_pair(&w, &p, sh);
	report("memif", &p, sh);
	expect_ok(&p, sh);
	expect_exchange(&w, sh);
	/* tensor bytes went out as external buffers, small frames came up
	 * in their mbuf, big ones were reassembled */
	cr_assert_gt(sh->r[CLI].st.zc_segs, 0);
	cr_assert_gt(sh->r[SRV].st.zc_segs, 0);
	cr_assert_gt(sh->r[SRV].st.rx_inplace, 1000);
	cr_assert_geq(sh->r[SRV].st.rx_copied, 3);
	cr_assert_eq(sh->r[SRV].st.rx_inplace + sh->r[SRV].st.rx_copied, 10005);
	cr_assert_gt(sh->r[CLI].st.rx_inplace, 1000);
	cr_assert_eq(sh->r[SRV].st.bad_pkts, 0);
	cr_assert_eq(sh->r[CLI].st.bad_pkts, 0);
	cr_assert_str_eq(sh->r[SRV].info.driver, "net_memif");
	cr_assert_eq(sh->r[SRV].info.mss, 1402);
	munmap(sh, sizeof(*sh));
}

/* ================================================================== */
/* Over net_af_packet on a veth pair                                   */

Test(dpdk, afpacket_exchange, .timeout = 150)
{
	NEED_ROOT();
	struct veth v;
	cr_assert(veth_make(&v), "could not make a veth pair");
	struct work w;
	struct pair p;
	work_init(&w, &p);
	work_afpacket(&w, &p, &v, false);
	w.sizes = SIZES;
	w.nsizes = 5;
	w.nsmall = 10000;
	w.small = 64;
	struct shm *sh = shm_new();
	run_pair(&w, &p, sh);
	veth_del(&v);
	report("af_packet", &p, sh);
	expect_ok(&p, sh);
	expect_exchange(&w, sh);
	cr_assert_gt(sh->r[CLI].st.zc_segs, 0);
	cr_assert_str_eq(sh->r[CLI].info.driver, "net_af_packet");
	munmap(sh, sizeof(*sh));
}

/* Sizes around the packet boundaries, then some that span many packets. */
static const uint32_t LOSS_SIZES[] = {
	0, 1, 700, 1402 - 48, 1402 - 47, 2 * 1402 - 48, 4096, 30000, 200000};

static void loss_test(const char *name, uint32_t loss_ppm, bool heavy,
		      uint32_t repeat)
{
	NEED_ROOT();
	struct veth v;
	cr_assert(veth_make(&v), "could not make a veth pair");
	if (!veth_impair(&v, loss_ppm, heavy)) {
		veth_del(&v);
		cr_assert(false, "neither netem nor clsact/cls_bpf/mirred "
				 "could impair the veth pair");
	}
	struct work w;
	struct pair p;
	work_init(&w, &p);
	work_afpacket(&w, &p, &v, true);
	w.sizes = LOSS_SIZES;
	w.nsizes = sizeof(LOSS_SIZES) / sizeof(LOSS_SIZES[0]);
	w.repeat = repeat;
	w.nsmall = 2000;
	w.small = 100;
	struct shm *sh = shm_new();
	run_pair(&w, &p, sh);
	veth_del(&v);
	char label[64];
	snprintf(label, sizeof(label), "%s (%s)", name, v.impair);
	report(label, &p, sh);
	expect_ok(&p, sh);
	expect_exchange(&w, sh);
	/* the faults happened and were repaired */
	cr_assert_gt(sh->r[CLI].st.retransmits + sh->r[SRV].st.retransmits, 0);
	if (heavy)
		cr_assert_gt(sh->r[CLI].st.dup_pkts + sh->r[SRV].st.dup_pkts +
				     sh->r[CLI].st.ooo_pkts +
				     sh->r[SRV].st.ooo_pkts,
			     0);
	munmap(sh, sizeof(*sh));
}

Test(dpdk, afpacket_loss_1pct, .timeout = 150)
{
	loss_test("af_packet, 1% loss", 10000, false, 40);
}

Test(dpdk, afpacket_loss_10pct_reorder_dup, .timeout = 150)
{
	loss_test("af_packet, 10% loss, 25% reorder, 5% dup", 100000, true, 12);
}

/* ================================================================== */
/* Receive-side faults from the test library's RX callback (any PMD)   */

Test(dpdk, memif_injected_faults, .timeout = 120)
{
	NEED_ROOT();
	struct work w;
	struct pair p;
	work_init(&w, &p);
	work_memif(&w, &p);
	w.sizes = LOSS_SIZES;
	w.nsizes = sizeof(LOSS_SIZES) / sizeof(LOSS_SIZES[0]);
	w.repeat = 20;
	w.nsmall = 2000;
	w.small = 100;
	for (int r = 0; r < 2; r++) {
		w.fault[r][0] = 50000;  /* drop 5% */
		w.fault[r][1] = 50000;  /* duplicate 5% */
		w.fault[r][2] = 100000; /* hold back 10% */
	}
	struct shm *sh = shm_new();
	run_pair(&w, &p, sh);
	report("memif, injected drop/dup/reorder", &p, sh);
	expect_ok(&p, sh);
	expect_exchange(&w, sh);
	for (int r = 0; r < 2; r++) {
		const struct tw_dpdk_fault_stats *f = &sh->r[r].faults;
		fprintf(stderr,
			"[dpdk] %s injected: %lu of %lu packets "
			"dropped, %lu duplicated, %lu held back\n",
			r == SRV ? "server" : "client", (unsigned long)f->drops,
			(unsigned long)f->seen, (unsigned long)f->dups,
			(unsigned long)f->reorders);
		cr_assert_gt(f->drops, 0);
		cr_assert_gt(f->dups, 0);
		cr_assert_gt(f->reorders, 0);
		cr_assert_gt(sh->r[r].st.dup_pkts, 0);
		cr_assert_gt(sh->r[r].st.ooo_pkts, 0);
		cr_assert_gt(sh->r[r].st.retransmits, 0);
	}
	munmap(sh, sizeof(*sh));
}

/* ================================================================== */
/* A peer that dies                                                    */

Test(dpdk, memif_peer_killed, .timeout = 60)
{
	NEED_ROOT();
	struct work w;
	struct pair p;
	work_init(&w, &p);
	work_memif(&w, &p);
	w.scen = SC_KILL;
	static const uint32_t sizes[] = {100, 5000, 100000};
	w.sizes = sizes;
	w.nsizes = 3;
	w.repeat = 1;
	w.nsmall = 67; /* 70 frames: 20 before the kill, 50 after */
	w.small = 10;
	w.o.dead_ns = 400000000;
	w.timeout_ns = 10000000000ull;
	struct shm *sh = shm_new();
	run_pair(&w, &p, sh);
	report("memif, server killed", &p, sh);
	skip_without_eal(sh);
	cr_assert(!p.timed_out, "client: %s", sh->r[CLI].msg);
	cr_assert_eq(sh->r[CLI].failed, 0, "client: %s", sh->r[CLI].msg);
	cr_assert(WIFEXITED(p.status[CLI]) && WEXITSTATUS(p.status[CLI]) == 0);
	cr_assert(WIFSIGNALED(p.status[SRV]));
	cr_assert_eq(sh->r[CLI].closes, 1);
	cr_assert_eq(sh->r[CLI].close_st, TW_EUNREACHABLE);
	cr_assert_eq(sh->r[CLI].dones_ok, 20);
	cr_assert_eq(sh->r[CLI].dones_unreach, 50);
	cr_assert_eq(sh->r[CLI].st.sessions_dead, 1);
	/* Silence counts from the last packet heard, at most a keepalive
	 * period (dead_ns / 4) before the kill; the check runs every
	 * keepalive period. Slack for a loaded CI machine on top, and below:
	 * the kill's time is read after the signal is sent, a moment after
	 * the last packet the bound counts from (299.7 ms was seen). */
	cr_assert_gt(sh->r[CLI].detect_ns, 250000000ull, "%lu",
		     (unsigned long)sh->r[CLI].detect_ns);
	cr_assert_lt(sh->r[CLI].detect_ns,
		     400000000ull + 100000000ull + 250000000ull, "%lu",
		     (unsigned long)sh->r[CLI].detect_ns);
	fprintf(stderr,
		"[dpdk] dead peer declared %.0f ms after SIGKILL "
		"(dead_ns 400 ms)\n",
		(double)sh->r[CLI].detect_ns / 1e6);
	munmap(sh, sizeof(*sh));
}

/* ================================================================== */
/* Both ends in one process: two memif ports on one EAL, polled by one
 * thread. Semantics: addresses, refused and unanswered connects,
 * backpressure, a bad frame, local close, destroy, ownership.          */

struct end {
	tw_loop *l;
	tw_transport *t;
	tw_conn *last_ok, *last_closed;
	int oks, closes;
	tw_status close_st;
	const char *close_why;
	uint64_t dones_at_close;
	uint64_t dones, frames, bad;
	uint64_t next[8];
	int nconn;
};

struct ssend {
	struct tw_send_req r;
	struct iovec iov;
	struct end *e;
	int ndone;
	tw_status st;
};

static void s_on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h, tw_buf *b,
		       size_t off, size_t len)
{
	struct end *e = ctx;
	uint64_t *next = c->ctx;
	e->frames++;
	if (next == NULL || h->total_len != len ||
	    *frame_check((const uint8_t *)b->data + off, len, *next) != '\0')
		e->bad++;
	else
		(*next)++;
}

static void s_on_conn(void *ctx, tw_conn *c, tw_status st)
{
	struct end *e = ctx;
	if (st == TW_OK) {
		e->oks++;
		e->last_ok = c;
		if (e->nconn < 8) {
			e->next[e->nconn] = 0;
			c->ctx = &e->next[e->nconn++];
		}
	} else {
		e->closes++;
		e->last_closed = c;
		e->close_st = st;
		e->close_why = c->why;
		e->dones_at_close = e->dones;
	}
}

static void s_on_done(struct tw_send_req *r, tw_status st)
{
	struct ssend *q = container_of(r, struct ssend, r);
	q->ndone++;
	q->st = st;
	q->e->dones++;
}

static void ssend_init(struct ssend *q, struct end *e, uint8_t *mem,
		       uint64_t id, uint32_t payload)
{
	memset(q, 0, sizeof(*q));
	q->e = e;
	frame_fill(mem, id, payload);
	q->iov = (struct iovec){mem, TW_FRAME_HDR_SIZE + (size_t)payload};
	q->r.iov = &q->iov;
	q->r.niov = 1;
	q->r.len = q->iov.iov_len;
	q->r.done = s_on_done;
}

static struct end *g_ends[4];
static int g_nends;

static void poll_all(void)
{
	int w = 0;
	for (int i = 0; i < g_nends; i++)
		w += tw_loop_poll_once(g_ends[i]->l);
	if (w == 0)
		sched_yield();
}

#define SPUMP(cond, ms)                                                        \
	({                                                                     \
		uint64_t dl_ = now_ns() + (uint64_t)(ms)*1000000ull;           \
		while (!(cond) && now_ns() < dl_)                              \
			poll_all();                                            \
		(bool)(cond);                                                  \
	})

/* In a child: failures go to the shared result, then out. */
#define SCHECK(res, cond, ...)                                                 \
	do {                                                                   \
		if (!(cond)) {                                                 \
			wfail(res, "line %d: %s", __LINE__, #cond);            \
			fprintf(stderr, "[dpdk] solo: line %d: %s\n",          \
				__LINE__, #cond);                              \
			fprintf(stderr, "[dpdk] solo: " __VA_ARGS__);          \
			fprintf(stderr, "\n");                                 \
			goto out;                                              \
		}                                                              \
	} while (0)

static int end_make(struct end *e, tw_dpdk_env *env, uint16_t q,
		    const struct tw_dpdk_opts *o)
{
	memset(e, 0, sizeof(*e));
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	lo.tick_ns = 250000;
	if (tw_loop_create(&lo, &e->l) != TW_OK)
		return -1;
	struct tw_transport_cbs cbs = {
		.ctx = e, .on_frame = s_on_frame, .on_conn = s_on_conn};
	if (tw_dpdk_transport_create(e->l, env, q, o, &cbs, &e->t) != TW_OK)
		return -1;
	g_ends[g_nends++] = e;
	return 0;
}

static void end_free(struct end *e)
{
	if (e->t)
		e->t->ops->destroy(e->t);
	e->t = NULL;
	if (e->l)
		tw_loop_destroy(e->l);
	e->l = NULL;
}

static char eal_why[256];

static tw_status solo_env(const char *eal, const char *port, const char *ip,
			  uint16_t nq, tw_dpdk_env **env)
{
	struct tw_dpdk_opts o;
	tw_dpdk_opts_init(&o, sizeof(o));
	o.eal_args = eal;
	o.port = port;
	o.local_ip = ip;
	o.mbufs = 4095;
	o.ext_mbufs = 2047;
	tw_status st = tw_dpdk_env_init(&o, nq, env);
	snprintf(eal_why, sizeof(eal_why), "%s",
		 st == TW_OK ? "" : tw_errmsg(st));
	if (st != TW_OK)
		fprintf(stderr, "[dpdk] env %s: %s\n", port, eal_why);
	return st;
}

static void solo_main(struct shm *sh, const char *prefix, const char *sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct result *res = &sh->r[SRV];
	res->ran = 1;
	char eal[512];
	snprintf(eal, sizeof(eal),
		 "-l 0 " EAL_COMMON "--file-prefix=%s "
		 "--vdev=net_memif0,role=server,socket=%s,mac=" SRV_MAC " "
		 "--vdev=net_memif1,role=client,socket=%s,mac=" CLI_MAC,
		 prefix, sock, sock);
	tw_dpdk_env *ea = NULL, *eb = NULL;
	struct end a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	uint8_t *mem = calloc(256, 4096);
	struct ssend *q = calloc(256, sizeof(*q));
	tw_conn *c = NULL;
	char bound[96];
	struct tw_dpdk_stats st;

	if (solo_env(eal, "net_memif0", SRV_IP, 1, &ea) != TW_OK) {
		wfail(res, "env: %s", eal_why);
		goto out;
	}
	/* memif (DPDK 22.11) takes frames of 1518 bytes at most: a jumbo
	 * mtu is refused, saying why, and the port stays free */
	struct tw_dpdk_opts jo;
	tw_dpdk_opts_init(&jo, sizeof(jo));
	jo.port = "net_memif1";
	jo.local_ip = CLI_IP;
	jo.mtu = 9000;
	jo.mbufs = 4095;
	jo.ext_mbufs = 2047;
	tw_dpdk_env *ej = NULL;
	SCHECK(res, tw_dpdk_env_init(&jo, 1, &ej) == TW_EINVAL && ej == NULL,
	       "");
	SCHECK(res, strstr(tw_errmsg(TW_EINVAL), "largest frame") != NULL, "%s",
	       tw_errmsg(TW_EINVAL));
	/* the EAL is up: a second env takes its port and ignores eal_args */
	SCHECK(res, solo_env("--bogus", "net_memif1", CLI_IP, 1, &eb) == TW_OK,
	       "");
	struct tw_dpdk_port_info ia;
	tw_dpdk_env_info(ea, &ia);
	static const uint8_t srv_mac[6] = {2, 0, 0, 0, 1, 1};
	SCHECK(res, memcmp(ia.mac, srv_mac, 6) == 0, "mac");
	SCHECK(res, ia.mss == 1402 && ia.nqueues == 1, "mss %u", ia.mss);
	SCHECK(res, strcmp(ia.driver, "net_memif") == 0, "%s", ia.driver);
	/* one port by a name that is not there */
	tw_dpdk_env *ex = NULL;
	SCHECK(res,
	       solo_env(NULL, "net_nothere0", SRV_IP, 1, &ex) == TW_ENOTSUP,
	       "");

	struct tw_dpdk_opts o;
	tw_dpdk_opts_init(&o, sizeof(o));
	o.dead_ns = 300000000;
	o.rto_ns = 2000000;
	o.max_queued = 64;
	o.idle_wake_ns = 0;
	SCHECK(res, end_make(&a, ea, 0, &o) == 0, "");
	SCHECK(res, end_make(&b, eb, 0, &o) == 0, "");
	/* ownership: one transport per queue, queues that exist, and the env
	 * stays while a transport uses it */
	tw_transport *tx = NULL;
	struct tw_transport_cbs cbs = {
		.ctx = &a, .on_frame = s_on_frame, .on_conn = s_on_conn};
	SCHECK(res,
	       tw_dpdk_transport_create(a.l, ea, 0, &o, &cbs, &tx) == TW_EBUSY,
	       "");
	SCHECK(res,
	       tw_dpdk_transport_create(a.l, ea, 1, &o, &cbs, &tx) == TW_EINVAL,
	       "");
	struct tw_dpdk_opts bad = o;
	bad.dead_ns = bad.rto_ns;
	SCHECK(res,
	       tw_dpdk_transport_create(a.l, ea, 0, &bad, &cbs, &tx) ==
		       TW_EINVAL,
	       "");
	SCHECK(res, tw_dpdk_env_destroy(ea) == TW_EBUSY, "");
	SCHECK(res, strcmp(a.t->ops->name, "dpdk") == 0, "");

	/* addresses */
	SCHECK(res,
	       a.t->ops->listen(a.t, "udp://10.0.0.9:0", bound,
				sizeof(bound)) == TW_EINVAL,
	       "");
	SCHECK(res,
	       a.t->ops->listen(a.t, "udp://" SRV_IP ":31851", bound,
				sizeof(bound)) == TW_EINVAL,
	       "");
	SCHECK(res,
	       a.t->ops->listen(a.t, "udp://" SRV_IP ":0/02:00:00:00:00:99",
				bound, sizeof(bound)) == TW_EINVAL,
	       "");
	SCHECK(res,
	       a.t->ops->listen(a.t, "tcp://" SRV_IP ":0", bound,
				sizeof(bound)) == TW_EINVAL,
	       "");
	SCHECK(res,
	       b.t->ops->connect(b.t, "udp://" SRV_IP ":31850", &c) ==
		       TW_EINVAL,
	       "");
	SCHECK(res,
	       b.t->ops->connect(b.t,
				 "udp://" SRV_IP ":31850/03:00:00:00:00:01",
				 &c) == TW_EINVAL,
	       "");

	/* refused: nobody listens, the answer is a RESET */
	SCHECK(res,
	       b.t->ops->connect(b.t, "udp://" SRV_IP ":31850/" SRV_MAC, &c) ==
		       TW_OK,
	       "");
	ssend_init(&q[0], &b, mem, 0, 10);
	SCHECK(res, tw_transport_send(b.t, c, &q[0].r) == TW_OK, "");
	uint64_t t0 = now_ns();
	SCHECK(res, SPUMP(b.closes == 1, 2000), "");
	SCHECK(res, now_ns() - t0 < 250000000ull,
	       "refusal took the dead timeout");
	SCHECK(res, b.close_st == TW_EUNREACHABLE && b.last_closed == c, "");
	SCHECK(res, q[0].ndone == 1 && q[0].st == TW_EUNREACHABLE, "");
	SCHECK(res, b.dones_at_close == 1, "done after the close upcall");

	/* unanswered: a peer that does not exist dies at dead_ns */
	SCHECK(res,
	       b.t->ops->connect(b.t,
				 "udp://10.77.0.99:31850/"
				 "02:00:00:00:09:09",
				 &c) == TW_OK,
	       "");
	ssend_init(&q[1], &b, mem + 4096, 0, 10);
	SCHECK(res, tw_transport_send(b.t, c, &q[1].r) == TW_OK, "");
	t0 = now_ns();
	SCHECK(res, SPUMP(b.closes == 2, 3000), "");
	SCHECK(res, now_ns() - t0 >= 250000000ull, "died too early");
	SCHECK(res, b.close_st == TW_EUNREACHABLE, "");
	SCHECK(res, q[1].ndone == 1 && q[1].st == TW_EUNREACHABLE, "");
	tw_dpdk_get_stats(a.t, &st);
	SCHECK(res,
	       st.bad_by_reason[TWP_E_IP_DST] +
			       st.bad_by_reason[TWP_E_ETH_DST] >
		       0,
	       "a saw no misaddressed CONNECT");

	/* listen, connect, frames both ways */
	SCHECK(res,
	       a.t->ops->listen(a.t, "udp://" SRV_IP ":31850", bound,
				sizeof(bound)) == TW_OK,
	       "");
	SCHECK(res, strcmp(bound, "udp://" SRV_IP ":31850/" SRV_MAC) == 0, "%s",
	       bound);
	SCHECK(res, b.t->ops->connect(b.t, bound, &c) == TW_OK, "");
	/* backpressure: max_queued sends held, then TW_ENOSPC */
	for (int i = 0; i < 64; i++) {
		ssend_init(&q[i], &b, mem + 4096 * (size_t)i, (uint64_t)i,
			   (uint32_t)(i * 37 % 3000));
		SCHECK(res, tw_transport_send(b.t, c, &q[i].r) == TW_OK, "%d",
		       i);
	}
	ssend_init(&q[64], &b, mem + 4096 * 64, 64, 10);
	SCHECK(res, tw_transport_send(b.t, c, &q[64].r) == TW_ENOSPC, "");
	SCHECK(res, q[64].ndone == 0, "");
	/* a request that is not a frame */
	struct ssend tiny;
	ssend_init(&tiny, &b, mem + 4096 * 65, 0, 0);
	tiny.r.len = tiny.iov.iov_len = 20;
	SCHECK(res, tw_transport_send(b.t, c, &tiny.r) == TW_EINVAL, "");
	SCHECK(res,
	       SPUMP(b.oks == 1 && a.oks == 1 && b.dones == 2 + 64 &&
			     a.frames == 64,
		     5000),
	       "oks %d %d dones %lu frames %lu", a.oks, b.oks,
	       (unsigned long)b.dones, (unsigned long)a.frames);
	SCHECK(res, a.bad == 0, "");
	for (int i = 0; i < 64; i++)
		SCHECK(res, q[i].st == TW_OK && q[i].ndone == 1, "%d", i);
	SCHECK(res, tw_transport_send(b.t, c, &q[64].r) == TW_OK, "");
	tw_conn *ac = a.last_ok;
	for (int i = 0; i < 5; i++) {
		ssend_init(&q[100 + i], &a, mem + 4096 * (size_t)(100 + i),
			   (uint64_t)i, 2000);
		SCHECK(res, tw_transport_send(a.t, ac, &q[100 + i].r) == TW_OK,
		       "");
	}
	SCHECK(res,
	       SPUMP(b.frames == 5 && a.frames == 65 && a.dones == 5 &&
			     b.dones == 2 + 65,
		     5000),
	       "");
	SCHECK(res, b.bad == 0 && a.bad == 0, "");

	/* a frame whose header is garbage: the receiver ends the session
	 * (TW_EPROTO) and tells the sender (RESET) */
	memset(mem + 4096 * 70, 0x5a, 64);
	ssend_init(&q[70], &b, mem + 4096 * 70, 0, 0);
	memset(mem + 4096 * 70, 0x5a, 48);
	q[70].iov.iov_len = q[70].r.len = 64;
	SCHECK(res, tw_transport_send(b.t, c, &q[70].r) == TW_OK, "");
	SCHECK(res, SPUMP(a.closes == 1 && b.closes == 3, 3000), "");
	SCHECK(res, a.close_st == TW_EPROTO, "%s", tw_status_name(a.close_st));
	SCHECK(res, b.close_st == TW_EUNREACHABLE, "");
	tw_dpdk_get_stats(a.t, &st);
	SCHECK(res, st.bad_frames == 1 && st.resets_tx >= 1, "");

	/* local close with sends pending: they fail with TW_ESHUTDOWN before
	 * the close upcall; the peer hears a RESET */
	SCHECK(res, b.t->ops->connect(b.t, bound, &c) == TW_OK, "");
	SCHECK(res, SPUMP(b.oks == 2 && a.oks == 2, 3000), "");
	for (int i = 0; i < 5; i++) {
		ssend_init(&q[110 + i], &b, mem + 4096 * (size_t)(110 + i),
			   (uint64_t)i, 3000);
		SCHECK(res, tw_transport_send(b.t, c, &q[110 + i].r) == TW_OK,
		       "");
	}
	b.t->ops->close(b.t, c);
	SCHECK(res, b.closes == 3, "upcall inside close()");
	ssend_init(&q[120], &b, mem + 4096 * 120, 9, 10);
	SCHECK(res, tw_transport_send(b.t, c, &q[120].r) == TW_EUNREACHABLE,
	       "");
	SCHECK(res, SPUMP(b.closes == 4 && a.closes == 2, 3000), "");
	SCHECK(res, b.close_st == TW_ESHUTDOWN && b.dones_at_close == b.dones,
	       "");
	for (int i = 0; i < 5; i++)
		SCHECK(res,
		       q[110 + i].ndone == 1 && q[110 + i].st == TW_ESHUTDOWN,
		       "");
	SCHECK(res, a.close_st == TW_EUNREACHABLE, "");

	/* destroy with a session open and sends pending */
	SCHECK(res, b.t->ops->connect(b.t, bound, &c) == TW_OK, "");
	SCHECK(res, SPUMP(b.oks == 3 && a.oks == 3, 3000), "");
	for (int i = 0; i < 5; i++) {
		ssend_init(&q[130 + i], &b, mem + 4096 * (size_t)(130 + i),
			   (uint64_t)i, 3000);
		SCHECK(res, tw_transport_send(b.t, c, &q[130 + i].r) == TW_OK,
		       "");
	}
	uint64_t before = b.dones;
	b.t->ops->destroy(b.t);
	b.t = NULL;
	SCHECK(res, b.closes == 5 && b.close_st == TW_ESHUTDOWN, "");
	SCHECK(res, b.dones == before + 5, "");
	SCHECK(res, SPUMP(a.closes == 3, 3000), "");
	SCHECK(res, a.close_st == TW_EUNREACHABLE, "");
out:
	end_free(&b);
	end_free(&a);
	if (eb != NULL && tw_dpdk_env_destroy(eb) != TW_OK)
		wfail(res, "env b destroy");
	if (ea != NULL && tw_dpdk_env_destroy(ea) != TW_OK)
		wfail(res, "env a destroy");
	tw_dpdk_eal_cleanup();
	free(mem);
	free(q);
	if (leaks_found())
		wfail(res, "leaks (see the LeakSanitizer report)");
	_exit(res->failed ? 1 : 0);
}

static void run_solo(void (*fn)(struct shm *, const char *, const char *),
		     struct shm *sh, char *prefix, size_t plen, int *status)
{
	char sock[96];
	int n = ++run_seq;
	snprintf(prefix, plen, "twt%do%d", (int)getpid(), n);
	snprintf(sock, sizeof(sock), "/tmp/twt-memif-%d-%d.sock", (int)getpid(),
		 n);
	memset(sh, 0, sizeof(*sh));
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		fn(sh, prefix, sock);
	bool late = false;
	wait_child(pid, status, now_ns() + 60000000000ull, &late);
	char d[128];
	snprintf(d, sizeof(d), "/var/run/dpdk/%s", prefix);
	rm_rf(d);
	cr_assert(!late, "timed out: %s", sh->r[SRV].msg);
}

Test(dpdk, one_process_semantics, .timeout = 90)
{
	NEED_ROOT();
	struct shm *sh = shm_new();
	char prefix[64];
	int status = 0;
	run_solo(solo_main, sh, prefix, sizeof(prefix), &status);
	skip_without_eal(sh);
	cr_assert(sh->r[SRV].ran);
	cr_assert_eq(sh->r[SRV].failed, 0, "%s", sh->r[SRV].msg);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
		  status);
	munmap(sh, sizeof(*sh));
}

/* IPv4 fragments over net_af_packet, end to end: its fanout reassembles
 * (PACKET_FANOUT_FLAG_DEFRAG, hard-coded in DPDK 22.11), so what the
 * transport sees of two fragments is one datagram without fragment
 * bits. Sent from a raw socket on the veth's other end: a whole packet
 * is taken (for no session: foreign), a datagram fragmented by the
 * rules (no DF) and one crafted from DF fragments longer than our MTU
 * are refused and counted as ip-frag. */
static struct veth frag_v;

/* A DATA packet for no session, from the veth's other end (CLI) to the
 * transport (SRV queue 0), len bytes of payload. */
static size_t frag_pkt(uint8_t *p, uint32_t len)
{
	struct twp_ep src = {.mac = {2, 0, 0, 0, 1, 2},
			     .ip = inet_addr(CLI_IP),
			     .port = htons(BASE_PORT)};
	struct twp_ep dst = {.mac = {2, 0, 0, 0, 1, 1},
			     .ip = inet_addr(SRV_IP),
			     .port = htons(BASE_PORT)};
	struct twp_hdr h = {.type = TWP_DATA,
			    .dst_sess = 0x10005,
			    .src_sess = 0x20007,
			    .seq = 1,
			    .len = len,
			    .frame_len = len};
	twp_l2l4_build(p, &src, &dst, TWP_HDR_LEN + len, false);
	twp_hdr_encode(p + TWP_L2L4_LEN, &h);
	for (uint32_t i = 0; i < len; i++)
		p[TWP_HEADERS + i] = (uint8_t)(i * 5 + 3);
	twp_udp_csum_set(p, twp_csum_add(0, p + TWP_L2L4_LEN, TWP_HDR_LEN + len,
					 false));
	return TWP_HEADERS + len;
}

static void frag_ip_csum(uint8_t *ip)
{
	ip[10] = ip[11] = 0;
	uint16_t c = (uint16_t)~twp_csum_fold(twp_csum_add(0, ip, 20, false));
	memcpy(ip + 10, &c, 2);
}

/* Send the packet at p (n bytes) as two IPv4 fragments, the first
 * carrying `first` bytes of the IP payload (a multiple of 8); df sets DF
 * on both. */
static bool frag_send(int fd, const uint8_t *p, size_t n, size_t first, bool df)
{
	uint8_t f[TWP_ETH_LEN + 20 + 4096];
	size_t pl = n - TWP_ETH_LEN - 20;
	for (int k = 0; k < 2; k++) {
		size_t off = k == 0 ? 0 : first;
		size_t len = k == 0 ? first : pl - first;
		memcpy(f, p, TWP_ETH_LEN + 20);
		memcpy(f + TWP_ETH_LEN + 20, p + TWP_ETH_LEN + 20 + off, len);
		uint8_t *ip = f + TWP_ETH_LEN;
		uint16_t tot = (uint16_t)(20 + len);
		uint16_t fo = (uint16_t)((off / 8) | (k == 0 ? 0x2000 : 0) |
					 (df ? 0x4000 : 0));
		ip[2] = (uint8_t)(tot >> 8);
		ip[3] = (uint8_t)tot;
		ip[4] = 0x12; /* an id, as a fragmenting stack sets */
		ip[5] = 0x34;
		ip[6] = (uint8_t)(fo >> 8);
		ip[7] = (uint8_t)fo;
		frag_ip_csum(ip);
		if (send(fd, f, TWP_ETH_LEN + tot, 0) != TWP_ETH_LEN + tot)
			return false;
	}
	return true;
}

static void frag_main(struct shm *sh, const char *prefix, const char *sock)
{
	(void)sock;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct result *res = &sh->r[SRV];
	res->ran = 1;
	char eal[512];
	snprintf(eal, sizeof(eal),
		 "-l 0 " EAL_COMMON "--file-prefix=%s "
		 "--vdev=net_af_packet0,iface=%s",
		 prefix, frag_v.a);
	tw_dpdk_env *ea = NULL;
	struct end a;
	memset(&a, 0, sizeof(a));
	struct tw_dpdk_stats st;
	static uint8_t p[TWP_HEADERS + 4096];
	int fd = -1;
	if (solo_env(eal, "net_af_packet0", SRV_IP, 1, &ea) != TW_OK) {
		wfail(res, "env: %s", eal_why);
		goto out;
	}
	struct tw_dpdk_opts o;
	tw_dpdk_opts_init(&o, sizeof(o));
	SCHECK(res, end_make(&a, ea, 0, &o) == 0, "");
	fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	SCHECK(res, fd >= 0, "packet socket: %s", strerror(errno));
	struct sockaddr_ll sll = {.sll_family = AF_PACKET,
				  .sll_protocol = htons(ETH_P_ALL),
				  .sll_ifindex = frag_v.index[1]};
	SCHECK(res, bind(fd, (struct sockaddr *)&sll, sizeof(sll)) == 0,
	       "bind: %s", strerror(errno));

	/* A whole packet arrives (the port is up): valid, for no session. */
	size_t n = frag_pkt(p, 1000);
	bool seen = false;
	for (int i = 0; i < 50 && !seen; i++) {
		SCHECK(res, send(fd, p, n, 0) == (ssize_t)n, "send");
		seen = SPUMP((tw_dpdk_get_stats(a.t, &st), st.foreign_pkts > 0),
			     100);
	}
	SCHECK(res, seen, "the whole packet never arrived");
	SCHECK(res, st.bad_by_reason[TWP_E_IP_FRAG] == 0, "");
	uint64_t foreign = st.foreign_pkts;

	/* Fragmented by the rules (no DF), 520 + 500 bytes. */
	SCHECK(res, frag_send(fd, p, n, 520, false), "send fragments");
	SCHECK(res,
	       SPUMP((tw_dpdk_get_stats(a.t, &st),
		      st.bad_by_reason[TWP_E_IP_FRAG] > 0),
		     2000),
	       "fragments not counted");
	SPUMP(false, 50); /* a second datagram, were they not reassembled */
	tw_dpdk_get_stats(a.t, &st);
	uint64_t by_rules = st.bad_by_reason[TWP_E_IP_FRAG];
	SCHECK(res, by_rules == 1 || by_rules == 2, "%lu",
	       (unsigned long)by_rules);

	/* Crafted with DF on both, 1900 bytes long: over our MTU. */
	n = frag_pkt(p, 1900 - TWP_OVERHEAD_L3);
	SCHECK(res, frag_send(fd, p, n, 1480, true), "send DF fragments");
	SCHECK(res,
	       SPUMP((tw_dpdk_get_stats(a.t, &st),
		      st.bad_by_reason[TWP_E_IP_FRAG] > by_rules),
		     2000),
	       "DF fragments not counted");
	SPUMP(false, 50);
	tw_dpdk_get_stats(a.t, &st);
	SCHECK(res, st.foreign_pkts == foreign, "a fragment was taken");
	fprintf(stderr,
		"[dpdk] af_packet fragments: %s (ip-frag counted %lu for two "
		"datagrams of two fragments)\n",
		by_rules == 1 ? "reassembled by the kernel, then refused"
			      : "not reassembled, each refused",
		(unsigned long)st.bad_by_reason[TWP_E_IP_FRAG]);
out:
	if (fd >= 0)
		close(fd);
	end_free(&a);
	if (ea != NULL && tw_dpdk_env_destroy(ea) != TW_OK)
		wfail(res, "env a destroy");
	tw_dpdk_eal_cleanup();
	_exit(res->failed ? 1 : 0);
}

Test(dpdk, afpacket_fragments_refused, .timeout = 90)
{
	NEED_ROOT();
	cr_assert(veth_make(&frag_v), "could not make a veth pair");
	struct shm *sh = shm_new();
	char prefix[64];
	int status = 0;
	run_solo(frag_main, sh, prefix, sizeof(prefix), &status);
	veth_del(&frag_v);
	skip_without_eal(sh);
	cr_assert(sh->r[SRV].ran);
	cr_assert_eq(sh->r[SRV].failed, 0, "%s", sh->r[SRV].msg);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
		  status);
	munmap(sh, sizeof(*sh));
}

/* Two queue pairs per port, a transport on each: the UDP port picks the
 * loop. memif delivers on the queue index the sender used, so sessions
 * between queue 1 and queue 0 arrive on the wrong queue and are steered
 * in software. */
static void steer_main(struct shm *sh, const char *prefix, const char *sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct result *res = &sh->r[SRV];
	res->ran = 1;
	char eal[512];
	snprintf(eal, sizeof(eal),
		 "-l 0 " EAL_COMMON "--file-prefix=%s "
		 "--vdev=net_memif0,role=server,socket=%s,mac=" SRV_MAC " "
		 "--vdev=net_memif1,role=client,socket=%s,mac=" CLI_MAC,
		 prefix, sock, sock);
	tw_dpdk_env *ea = NULL, *eb = NULL;
	struct end e[4]; /* a0 a1 b0 b1 */
	memset(e, 0, sizeof(e));
	enum { N = 40 };
	uint8_t *mem = calloc(4 * N + 1, 8192);
	struct ssend *q = calloc(4 * N + 1, sizeof(*q));
	tw_conn *c[4] = {0};
	char bound[2][96];
	struct tw_dpdk_stats st[4];

	if (solo_env(eal, "net_memif0", SRV_IP, 2, &ea) != TW_OK) {
		wfail(res, "env: %s", eal_why);
		goto out;
	}
	SCHECK(res, solo_env(NULL, "net_memif1", CLI_IP, 2, &eb) == TW_OK, "");
	struct tw_dpdk_opts o;
	tw_dpdk_opts_init(&o, sizeof(o));
	o.idle_wake_ns = 0;
	for (int i = 0; i < 4; i++)
		SCHECK(res,
		       end_make(&e[i], i < 2 ? ea : eb, (uint16_t)(i % 2),
				&o) == 0,
		       "%d", i);
	for (int i = 0; i < 2; i++) {
		SCHECK(res,
		       e[i].t->ops->listen(e[i].t, "udp://0.0.0.0:0", bound[i],
					   sizeof(bound[i])) == TW_OK,
		       "");
		char want[96];
		snprintf(want, sizeof(want), "udp://" SRV_IP ":%d/" SRV_MAC,
			 BASE_PORT + i);
		SCHECK(res, strcmp(bound[i], want) == 0, "%s", bound[i]);
	}
	/* b1 -> a0 and b0 -> a1: every packet crosses queues */
	SCHECK(res, e[3].t->ops->connect(e[3].t, bound[0], &c[3]) == TW_OK, "");
	SCHECK(res, e[2].t->ops->connect(e[2].t, bound[1], &c[2]) == TW_OK, "");
	SCHECK(res,
	       SPUMP(e[0].oks == 1 && e[1].oks == 1 && e[2].oks == 1 &&
			     e[3].oks == 1,
		     5000),
	       "");
	c[0] = e[0].last_ok;
	c[1] = e[1].last_ok;
	for (int k = 0; k < 4; k++)
		for (int i = 0; i < N; i++) {
			struct ssend *s = &q[k * N + i];
			ssend_init(s, &e[k], mem + 8192 * (size_t)(k * N + i),
				   (uint64_t)i, (uint32_t)(i * 173 % 8000));
			SCHECK(res,
			       tw_transport_send(e[k].t, c[k], &s->r) == TW_OK,
			       "");
		}
	SCHECK(res,
	       SPUMP(e[0].frames == N && e[1].frames == N && e[2].frames == N &&
			     e[3].frames == N && e[0].dones == N &&
			     e[1].dones == N && e[2].dones == N &&
			     e[3].dones == N,
		     10000),
	       "frames %lu %lu %lu %lu", (unsigned long)e[0].frames,
	       (unsigned long)e[1].frames, (unsigned long)e[2].frames,
	       (unsigned long)e[3].frames);
	for (int k = 0; k < 4; k++) {
		SCHECK(res, e[k].bad == 0, "%d", k);
		tw_dpdk_get_stats(e[k].t, &st[k]);
		SCHECK(res, st[k].steered_in > 0 && st[k].steered_out > 0,
		       "end %d in %lu out %lu", k,
		       (unsigned long)st[k].steered_in,
		       (unsigned long)st[k].steered_out);
		SCHECK(res, st[k].steer_drops == 0, "");
	}
	fprintf(stderr,
		"[dpdk] steering: a0 got %lu packets from a1's queue, "
		"b1 %lu from b0's\n",
		(unsigned long)st[0].steered_in,
		(unsigned long)st[3].steered_in);
	/* EAL cleanup while ports are up (an application that skipped a
	 * shutdown) leaves them alone: the loops polling them go on. */
	tw_dpdk_eal_cleanup();
	{
		struct ssend *s = &q[4 * N];
		ssend_init(s, &e[3], mem + 8192 * (size_t)(4 * N), (uint64_t)N,
			   1000);
		SCHECK(res, tw_transport_send(e[3].t, c[3], &s->r) == TW_OK,
		       "");
		SCHECK(res,
		       SPUMP(e[0].frames == N + 1 && e[3].dones == N + 1, 5000),
		       "after eal_fini: frames %lu",
		       (unsigned long)e[0].frames);
	}
out:
	for (int i = 3; i >= 0; i--)
		end_free(&e[i]);
	if (eb != NULL && tw_dpdk_env_destroy(eb) != TW_OK)
		wfail(res, "env b destroy");
	if (ea != NULL && tw_dpdk_env_destroy(ea) != TW_OK)
		wfail(res, "env a destroy");
	tw_dpdk_eal_cleanup();
	free(mem);
	free(q);
	if (leaks_found())
		wfail(res, "leaks (see the LeakSanitizer report)");
	_exit(res->failed ? 1 : 0);
}

Test(dpdk, memif_two_queues_steering, .timeout = 90)
{
	NEED_ROOT();
	struct shm *sh = shm_new();
	char prefix[64];
	int status = 0;
	g_nends = 0;
	run_solo(steer_main, sh, prefix, sizeof(prefix), &status);
	skip_without_eal(sh);
	cr_assert(sh->r[SRV].ran);
	cr_assert_eq(sh->r[SRV].failed, 0, "%s", sh->r[SRV].msg);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
		  status);
	munmap(sh, sizeof(*sh));
}

/* ================================================================== */
/* Who may open a session (tw_dpdk_transport_secure, ops->admit): a
 * CONNECT from an endpoint not admitted, or whose setup block does not
 * verify, creates nothing and hears nothing; the sender's session timer
 * sends it again, so a peer admitted late, or given the right secret,
 * gets its session from the same connect. Waits are on counters. */

/* Every packet b received, valid or not. */
static uint64_t heard(const struct tw_dpdk_stats *s)
{
	return s->pkts_rx + s->bad_pkts;
}

static void admit_main(struct shm *sh, const char *prefix, const char *sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct result *res = &sh->r[SRV];
	res->ran = 1;
	char eal[512];
	snprintf(eal, sizeof(eal),
		 "-l 0 " EAL_COMMON "--file-prefix=%s "
		 "--vdev=net_memif0,role=server,socket=%s,mac=" SRV_MAC " "
		 "--vdev=net_memif1,role=client,socket=%s,mac=" CLI_MAC,
		 prefix, sock, sock);
	tw_dpdk_env *ea = NULL, *eb = NULL;
	struct end a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	uint8_t *mem = calloc(16, 4096);
	struct ssend *q = calloc(16, sizeof(*q));
	tw_conn *c = NULL, *c2 = NULL;
	char bound[96];
	struct tw_dpdk_stats sa, sb;
	uint64_t drops;

	if (solo_env(eal, "net_memif0", SRV_IP, 1, &ea) != TW_OK) {
		wfail(res, "env: %s", eal_why);
		goto out;
	}
	SCHECK(res, solo_env(NULL, "net_memif1", CLI_IP, 1, &eb) == TW_OK, "");
	struct tw_dpdk_opts o;
	tw_dpdk_opts_init(&o, sizeof(o));
	o.dead_ns = 2000000000; /* longer than this test's waits */
	o.rto_ns = 2000000;
	o.idle_wake_ns = 0;
	SCHECK(res, end_make(&a, ea, 0, &o) == 0, "");
	SCHECK(res, end_make(&b, eb, 0, &o) == 0, "");
	SCHECK(res,
	       a.t->ops->listen(a.t, "udp://" SRV_IP ":31850", bound,
				sizeof(bound)) == TW_OK,
	       "");

	/* admission on, nobody admitted yet (an agent between listen and
	 * the member list): b's CONNECT is dropped, again and again */
	SCHECK(res, tw_dpdk_transport_secure(a.t, NULL, 0, true) == TW_OK, "");
	SCHECK(res, b.t->ops->connect(b.t, bound, &c) == TW_OK, "");
	ssend_init(&q[0], &b, mem, 0, 100);
	SCHECK(res, tw_transport_send(b.t, c, &q[0].r) == TW_OK, "");
	tw_dpdk_get_stats(a.t, &sa);
	SCHECK(res,
	       SPUMP((tw_dpdk_get_stats(a.t, &sa), sa.admit_drops >= 3), 5000),
	       "admit_drops %lu", (unsigned long)sa.admit_drops);
	tw_dpdk_get_stats(b.t, &sb);
	SCHECK(res, a.oks == 0 && sa.sessions_accepted == 0, "a session");
	SCHECK(res, sa.resets_tx == 0 && heard(&sb) == 0,
	       "an answer: resets_tx %lu, b heard %lu",
	       (unsigned long)sa.resets_tx, (unsigned long)heard(&sb));
	SCHECK(res, b.closes == 0 && b.oks == 0, "");

	/* a list of near misses: MAC, UDP port or IP wrong, another
	 * transport's address, a broken one: still nobody */
	const char *near[] = {
		"udp://" CLI_IP ":31850/02:00:00:00:01:09",
		"udp://" CLI_IP ":31851/" CLI_MAC,
		"udp://10.77.0.9:31850/" CLI_MAC,
		"udp://" CLI_IP ":31850", /* no MAC */
		"tcp://" CLI_IP ":31850",
		"garbage",
	};
	SCHECK(res, tw_transport_admit(a.t, near, 6) == TW_OK, "");
	drops = sa.admit_drops;
	SCHECK(res,
	       SPUMP((tw_dpdk_get_stats(a.t, &sa), sa.admit_drops >= drops + 3),
		     5000),
	       "");
	tw_dpdk_get_stats(b.t, &sb);
	SCHECK(res, a.oks == 0 && sa.resets_tx == 0 && heard(&sb) == 0, "");

	/* admitted (late, as a member whose CONNECT beat our list): the
	 * same connect's next CONNECT opens the session */
	const char *ok[] = {"udp://10.77.0.9:31850/" CLI_MAC,
			    "udp://" CLI_IP ":31850/" CLI_MAC};
	SCHECK(res, tw_transport_admit(a.t, ok, 2) == TW_OK, "");
	SCHECK(res, SPUMP(a.oks == 1 && b.oks == 1 && a.frames == 1, 5000),
	       "oks %d %d frames %lu", a.oks, b.oks, (unsigned long)a.frames);
	SCHECK(res, q[0].ndone == 1 || SPUMP(q[0].ndone == 1, 5000), "");
	SCHECK(res, a.bad == 0 && q[0].st == TW_OK, "");
	/* frames both ways over random initial packet numbers */
	for (int i = 1; i < 4; i++) {
		ssend_init(&q[i], &b, mem + 4096 * (size_t)i, (uint64_t)i,
			   (uint32_t)(i * 1000));
		SCHECK(res, tw_transport_send(b.t, c, &q[i].r) == TW_OK, "");
	}
	ssend_init(&q[4], &a, mem + 4096 * 4, 0, 3000);
	SCHECK(res, tw_transport_send(a.t, a.last_ok, &q[4].r) == TW_OK, "");
	SCHECK(res,
	       SPUMP(a.frames == 4 && b.frames == 1 && q[4].ndone == 1, 5000),
	       "");
	SCHECK(res, a.bad == 0 && b.bad == 0, "");

	/* secrets: a holds "alpha", b "bravo": b's CONNECT does not verify
	 * and is dropped, unanswered */
	static const char alpha[] = "alpha-secret", bravo[] = "bravo-secret";
	SCHECK(res,
	       tw_dpdk_transport_secure(a.t, alpha, sizeof(alpha) - 1, true) ==
		       TW_OK,
	       "");
	SCHECK(res,
	       tw_dpdk_transport_secure(b.t, bravo, sizeof(bravo) - 1, false) ==
		       TW_OK,
	       "");
	tw_dpdk_get_stats(a.t, &sa);
	uint64_t resets0 = sa.resets_tx;
	SCHECK(res, b.t->ops->connect(b.t, bound, &c2) == TW_OK, "");
	SCHECK(res,
	       SPUMP((tw_dpdk_get_stats(a.t, &sa), sa.auth_drops >= 3), 5000),
	       "auth_drops %lu", (unsigned long)sa.auth_drops);
	/* the open session keeps working; the new one got nothing: b heard
	 * only what the first session says (acks, keepalives) */
	tw_dpdk_get_stats(b.t, &sb);
	SCHECK(res, a.oks == 1 && b.oks == 1 && sa.resets_tx == resets0, "");
	SCHECK(res, sb.foreign_pkts == 0 && sb.resets_rx == 0, "");

	/* b learns the group's secret: the same connect's next CONNECT
	 * verifies, and so does a's ACCEPT */
	SCHECK(res,
	       tw_dpdk_transport_secure(b.t, alpha, sizeof(alpha) - 1, false) ==
		       TW_OK,
	       "");
	SCHECK(res, SPUMP(a.oks == 2 && b.oks == 2, 5000), "");
	ssend_init(&q[5], &b, mem + 4096 * 5, 0, 500);
	SCHECK(res, tw_transport_send(b.t, c2, &q[5].r) == TW_OK, "");
	SCHECK(res, SPUMP(q[5].ndone == 1 && a.frames == 5, 5000), "");
	SCHECK(res, q[5].st == TW_OK && a.bad == 0, "");

	/* an ACCEPT that does not verify: a without a secret takes b's
	 * CONNECT (its block unchecked), b drops the unsigned ACCEPT and
	 * stays connecting */
	SCHECK(res, tw_dpdk_transport_secure(a.t, NULL, 0, true) == TW_OK, "");
	tw_dpdk_get_stats(b.t, &sb);
	drops = sb.auth_drops;
	tw_conn *c3 = NULL;
	SCHECK(res, b.t->ops->connect(b.t, bound, &c3) == TW_OK, "");
	SCHECK(res,
	       SPUMP((tw_dpdk_get_stats(b.t, &sb), sb.auth_drops >= drops + 2),
		     5000),
	       "");
	SCHECK(res, a.oks == 3 && b.oks == 2, "oks %d %d", a.oks, b.oks);
out:
	end_free(&b);
	end_free(&a);
	if (eb != NULL && tw_dpdk_env_destroy(eb) != TW_OK)
		wfail(res, "env b destroy");
	if (ea != NULL && tw_dpdk_env_destroy(ea) != TW_OK)
		wfail(res, "env a destroy");
	tw_dpdk_eal_cleanup();
	free(mem);
	free(q);
	if (leaks_found())
		wfail(res, "leaks (see the LeakSanitizer report)");
	_exit(res->failed ? 1 : 0);
}

Test(dpdk, admission_and_setup_token, .timeout = 90)
{
	NEED_ROOT();
	struct shm *sh = shm_new();
	char prefix[64];
	int status = 0;
	run_solo(admit_main, sh, prefix, sizeof(prefix), &status);
	skip_without_eal(sh);
	cr_assert(sh->r[SRV].ran);
	cr_assert_eq(sh->r[SRV].failed, 0, "%s", sh->r[SRV].msg);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
		  status);
	munmap(sh, sizeof(*sh));
}

/* ================================================================== */
/* Strangers on the segment (issue 18): a raw peer on memif1, driven by
 * hand with rte_eth_rx/tx_burst (no transport there), opens a session
 * with transport a as a member would, then forges, replays and spoofs. */

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <sodium.h>

static const char TAG_SECRET[] = "issue-18 group secret";

struct rawp {
	uint16_t port;
	struct rte_mempool *mp;
	struct twp_ep self, peer; /* peer: a's endpoint */
	struct twp_local local;
	uint64_t sess, peer_sess, pn;
	uint32_t seq, ack, msg;
	uint8_t nonce[TWP_NONCE_LEN], peer_nonce[TWP_NONCE_LEN];
	struct twp_mac mtx, mrx;
	bool tagged;
	uint64_t heard; /* packets a sent us */
	uint64_t heard_resets;
	uint32_t acked;       /* the last ACK packet's ack */
	uint8_t connect[256]; /* the last CONNECT sent, as on the wire */
	size_t connect_len;
	uint8_t connect0[256]; /* ... and the first, without a cookie */
	size_t connect0_len;
	uint64_t cookies; /* COOKIEs a sent us */
};

static bool rawp_tx(struct rawp *r, const uint8_t *p, size_t n)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(r->mp);
	if (m == NULL)
		return false;
	uint8_t *d = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)n);
	memcpy(d, p, n);
	for (int i = 0; i < 1000; i++)
		if (rte_eth_tx_burst(r->port, 0, &m, 1) == 1)
			return true;
	rte_pktmbuf_free(m);
	return false;
}

/* A packet from src (NULL: r's own endpoint) to a, tagged with r's key
 * when r's session is tagged and tag is true. Returns its length. */
static size_t rawp_build(struct rawp *r, uint8_t *p, struct twp_hdr *h,
			 const void *body, const struct twp_ep *src, bool tag)
{
	twp_l2l4_build(p, src ? src : &r->self, &r->peer, TWP_HDR_LEN + h->len,
		       false);
	twp_hdr_encode(p + TWP_L2L4_LEN, h);
	if (h->len)
		memcpy(p + TWP_HEADERS, body, h->len);
	if (tag && r->tagged)
		twp_tag_set(&r->mtx, p + TWP_L2L4_LEN, TWP_HDR_LEN + h->len);
	twp_udp_csum_set(p, twp_csum_add(0, p + TWP_L2L4_LEN,
					 TWP_HDR_LEN + h->len, false));
	return TWP_HEADERS + h->len;
}

/* Poll a and our port for ms; count what a sends us. ACCEPT: returns it
 * in *acc (if acc) and stops. */
static bool rawp_pump(struct rawp *r, struct end *a, unsigned ms,
		      struct twp_pkt *acc, uint8_t *accbuf)
{
	uint64_t until = now_ns() + (uint64_t)ms * 1000000ull;
	while (now_ns() < until) {
		tw_loop_poll_once(a->l);
		struct rte_mbuf *m[32];
		uint16_t n = rte_eth_rx_burst(r->port, 0, m, 32);
		bool got = false;
		for (uint16_t i = 0; i < n; i++) {
			struct twp_pkt pk;
			const uint8_t *d = rte_pktmbuf_mtod(m[i], uint8_t *);
			if (twp_parse(d, m[i]->data_len, &r->local, false,
				      false, &pk) == TWP_OK) {
				r->heard++;
				if (pk.h.type == TWP_RESET)
					r->heard_resets++;
				if (pk.h.type == TWP_COOKIE)
					r->cookies++;
				if ((pk.h.type == TWP_ACCEPT ||
				     pk.h.type == TWP_COOKIE) &&
				    acc != NULL && !got) {
					memcpy(accbuf, d, m[i]->data_len);
					(void)twp_parse(accbuf, m[i]->data_len,
							&r->local, false, false,
							acc);
					got = true;
				}
				if (pk.h.type == TWP_DATA ||
				    pk.h.type == TWP_ACK) {
					if (r->tagged &&
					    !twp_tag_ok(&r->mrx,
							pk.payload -
								TWP_HDR_LEN,
							TWP_HDR_LEN + pk.h.len))
						r->heard += 1000000; /* bad */
					if (pk.h.type == TWP_DATA)
						r->ack = pk.h.seq + 1;
					else
						r->acked = pk.h.ack;
				}
			}
			rte_pktmbuf_free(m[i]);
		}
		if (got)
			return true;
		sched_yield();
	}
	return false;
}

/* r's CONNECT (asking for tags if ask_tag), with the acceptor's cookie
 * if not NULL, into p; its length. */
static size_t rawp_connect(struct rawp *r, uint8_t *p, bool ask_tag,
			   const uint8_t *cookie)
{
	struct twp_setup b = {.isn = 1000};
	memcpy(b.nonce, r->nonce, TWP_NONCE_LEN);
	struct twp_hdr h = {.type = TWP_CONNECT,
			    .flags = ask_tag ? TWP_F_TAG : 0,
			    .src_sess = r->sess,
			    .len = TWP_SETUP_LEN +
				   (cookie != NULL ? TWP_COOKIE_LEN : 0),
			    .frame_len = 1402};
	twp_setup_mac(TAG_SECRET, sizeof(TAG_SECRET) - 1, &h, &r->self,
		      &r->peer, &b, cookie, b.mac);
	uint8_t body[TWP_SETUP_LEN + TWP_COOKIE_LEN];
	twp_setup_encode(body, &b);
	if (cookie != NULL)
		memcpy(body + TWP_SETUP_LEN, cookie, TWP_COOKIE_LEN);
	return rawp_build(r, p, &h, body, NULL, false);
}

/* CONNECT (asking for tags if ask_tag) until a's ACCEPT, taking its
 * COOKIE on the way; keys. */
static bool rawp_open(struct rawp *r, struct end *a, bool ask_tag)
{
	r->sess = ((uint64_t)now_ns() << 16) | 0x77;
	randombytes_buf(r->nonce, sizeof(r->nonce));
	/* The CONNECT counter (the nonce's first 8 bytes) grows, as a
	 * transport's: the wall clock, above any transport's start. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	twp_nonce_set_counter(r->nonce, (uint64_t)ts.tv_sec * 1000000000u +
						(uint64_t)ts.tv_nsec);
	r->pn = 0;
	r->tagged = false;
	uint8_t p[256], accbuf[2048];
	size_t n = rawp_connect(r, p, ask_tag, NULL);
	memcpy(r->connect0, p, n);
	r->connect0_len = n;
	struct twp_pkt acc;
	for (int i = 0; i < 20; i++) {
		memcpy(r->connect, p, n);
		r->connect_len = n;
		if (!rawp_tx(r, p, n))
			return false;
		if (rawp_pump(r, a, 100, &acc, accbuf) &&
		    acc.h.dst_sess == r->sess) {
			if (acc.h.type == TWP_ACCEPT)
				break;
			/* A COOKIE: the same CONNECT again, with it. */
			struct twp_setup cb;
			twp_setup_decode(acc.payload, &cb);
			if (!twp_setup_verify(
				    TAG_SECRET, sizeof(TAG_SECRET) - 1, &acc.h,
				    &acc.src, &r->self, &cb, r->nonce))
				return false;
			n = rawp_connect(r, p, ask_tag, cb.nonce);
		}
		if (i == 19)
			return false;
	}
	struct twp_setup ab;
	twp_setup_decode(acc.payload, &ab);
	if (!twp_setup_verify(TAG_SECRET, sizeof(TAG_SECRET) - 1, &acc.h,
			      &acc.src, &r->self, &ab, r->nonce))
		return false;
	r->peer_sess = acc.h.src_sess;
	r->ack = ab.isn;
	r->seq = 1000;
	r->msg = 0;
	memcpy(r->peer_nonce, ab.nonce, TWP_NONCE_LEN);
	r->tagged = (acc.h.flags & TWP_F_TAG) != 0;
	if (r->tagged) {
		uint8_t kc[TWP_KEY_LEN], ka[TWP_KEY_LEN];
		twp_session_keys(TAG_SECRET, sizeof(TAG_SECRET) - 1, r->sess,
				 r->peer_sess, r->nonce, ab.nonce, kc, ka);
		twp_mac_init(&r->mtx, kc);
		twp_mac_init(&r->mrx, ka);
	}
	return true;
}

/* An ACK of r's session under its key, sent: it proves the session to
 * the acceptor. */
static bool rawp_prove(struct rawp *r)
{
	uint8_t p[256];
	struct twp_hdr h = {.type = TWP_ACK,
			    .dst_sess = r->peer_sess,
			    .src_sess = r->sess,
			    .pn = r->pn++,
			    .ack = r->ack};
	size_t n = rawp_build(r, p, &h, NULL, NULL, true);
	return rawp_tx(r, p, n);
}

/* One frame (id, payload bytes) as a DATA packet of r's session. */
static size_t rawp_data(struct rawp *r, uint8_t *p, uint64_t id,
			uint32_t payload)
{
	uint8_t f[1024];
	frame_fill(f, id, payload);
	uint32_t len = TW_FRAME_HDR_SIZE + payload;
	struct twp_hdr h = {.type = TWP_DATA,
			    .dst_sess = r->peer_sess,
			    .src_sess = r->sess,
			    .pn = r->pn++,
			    .seq = r->seq++,
			    .ack = r->ack,
			    .msg = r->msg++,
			    .len = len,
			    .frame_len = len};
	return rawp_build(r, p, &h, f, NULL, true);
}

static void tag_main(struct shm *sh, const char *prefix, const char *sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct result *res = &sh->r[SRV];
	res->ran = 1;
	char eal[512];
	snprintf(eal, sizeof(eal),
		 "-l 0 " EAL_COMMON "--file-prefix=%s "
		 "--vdev=net_memif0,role=server,socket=%s,mac=" SRV_MAC " "
		 "--vdev=net_memif1,role=client,socket=%s,mac=" CLI_MAC,
		 prefix, sock, sock);
	tw_dpdk_env *ea = NULL, *eb = NULL;
	struct end a;
	memset(&a, 0, sizeof(a));
	struct rawp r;
	memset(&r, 0, sizeof(r));
	char bound[96];
	struct tw_dpdk_stats s0, s1;
	uint8_t p[2048], keep[2048];
	size_t n, nkeep;

	if (solo_env(eal, "net_memif0", SRV_IP, 1, &ea) != TW_OK) {
		wfail(res, "env: %s", eal_why);
		goto out;
	}
	SCHECK(res, solo_env(NULL, "net_memif1", CLI_IP, 1, &eb) == TW_OK, "");
	struct tw_dpdk_port_info ib;
	tw_dpdk_env_info(eb, &ib);
	r.port = ib.port_id;
	r.mp = rte_pktmbuf_pool_create("tw-rawp", 1023, 0, 0, 2048 + 128,
				       SOCKET_ID_ANY);
	SCHECK(res, r.mp != NULL, "pool");
	SCHECK(res,
	       twp_addr_parse("udp://" CLI_IP ":31850/" CLI_MAC, &r.self, true,
			      NULL) == 0 &&
		       twp_addr_parse("udp://" SRV_IP ":31850/" SRV_MAC,
				      &r.peer, true, NULL) == 0,
	       "");
	memcpy(r.local.mac, r.self.mac, 6);
	r.local.ip = r.self.ip;
	r.local.base_port = 31850;
	r.local.nports = 1;
	r.local.mss = 1402;

	struct tw_dpdk_opts o;
	tw_dpdk_opts_init(&o, sizeof(o));
	o.dead_ns = 60ull * 1000000000; /* no keepalive during the test */
	o.rto_ns = 2000000;
	o.idle_wake_ns = 0;
	SCHECK(res, end_make(&a, ea, 0, &o) == 0, "");
	SCHECK(res,
	       a.t->ops->listen(a.t, "udp://" SRV_IP ":31850", bound,
				sizeof(bound)) == TW_OK,
	       "");
	SCHECK(res,
	       tw_dpdk_transport_secure(a.t, TAG_SECRET, sizeof(TAG_SECRET) - 1,
					true) == TW_OK,
	       "");
	const char *members[] = {"udp://" CLI_IP ":31850/" CLI_MAC};
	SCHECK(res, tw_transport_admit(a.t, members, 1) == TW_OK, "");

	/* a member's session: tagged, both ways */
	SCHECK(res, rawp_open(&r, &a, true), "no ACCEPT");
	SCHECK(res, r.tagged && a.oks == 1, "tagged %d oks %d", r.tagged,
	       a.oks);
	nkeep = rawp_data(&r, keep, 0, 100);
	SCHECK(res, rawp_tx(&r, keep, nkeep), "");
	SCHECK(res, SPUMP(a.frames == 1, 2000), "frames %lu",
	       (unsigned long)a.frames);
	rawp_pump(&r, &a, 50, NULL, NULL);
	SCHECK(res, r.heard >= 1 && r.heard < 1000000,
	       "a's ack: heard %lu (>= 1e6: a bad tag)",
	       (unsigned long)r.heard);
	SCHECK(res, a.bad == 0, "");

	/* Each forgery: dropped, counted, unanswered, and nothing changes. */
	tw_dpdk_get_stats(a.t, &s0);
	uint64_t heard0 = r.heard;
#define FORGED(what, counter)                                                  \
	do {                                                                   \
		SCHECK(res, rawp_tx(&r, p, n), "%s", what);                    \
		SCHECK(res,                                                    \
		       SPUMP((tw_dpdk_get_stats(a.t, &s1),                     \
			      s1.counter == s0.counter + 1),                   \
			     2000),                                            \
		       "%s: " #counter " %lu", what,                           \
		       (unsigned long)s1.counter);                             \
		rawp_pump(&r, &a, 30, NULL, NULL);                             \
		tw_dpdk_get_stats(a.t, &s1);                                   \
		SCHECK(res,                                                    \
		       r.heard == heard0 && s1.pkts_tx == s0.pkts_tx &&        \
			       s1.resets_tx == s0.resets_tx,                   \
		       "%s: an answer (heard %lu, pkts_tx %lu -> %lu)", what,  \
		       (unsigned long)(r.heard - heard0),                      \
		       (unsigned long)s0.pkts_tx, (unsigned long)s1.pkts_tx);  \
		SCHECK(res, a.frames == 1 && a.closes == 0, "%s: state",       \
		       what);                                                  \
		s0 = s1;                                                       \
	} while (0)

	/* a DATA with a wrong tag (everything else right) */
	n = rawp_data(&r, p, 1, 100);
	r.seq--, r.msg--; /* not taken: the next one reuses them */
	p[TWP_L2L4_LEN + TWP_TAG_OFF] ^= 0x01;
	twp_udp_csum_set(p, twp_csum_add(0, p + TWP_L2L4_LEN, n - TWP_L2L4_LEN,
					 false));
	FORGED("wrong tag", tag_drops);
	/* the right tag over other bytes (one frame byte changed) */
	n = rawp_data(&r, p, 1, 100);
	r.seq--, r.msg--;
	p[n - 1] ^= 0x40;
	twp_udp_csum_set(p, twp_csum_add(0, p + TWP_L2L4_LEN, n - TWP_L2L4_LEN,
					 false));
	FORGED("changed frame", tag_drops);
	/* an untagged RESET and an untagged keepalive (the attacks of
	 * issue 18: one ended every call, the other hid a death) */
	struct twp_hdr h = {.type = TWP_RESET,
			    .dst_sess = r.peer_sess,
			    .src_sess = r.sess,
			    .pn = r.pn + 100};
	n = rawp_build(&r, p, &h, NULL, NULL, false);
	FORGED("untagged reset", tag_drops);
	h = (struct twp_hdr){.type = TWP_ACK,
			     .flags = TWP_F_ACK_REQ,
			     .dst_sess = r.peer_sess,
			     .src_sess = r.sess,
			     .pn = r.pn + 101,
			     .ack = r.ack};
	n = rawp_build(&r, p, &h, NULL, NULL, false);
	FORGED("untagged keepalive", tag_drops);
	/* a member's packet, tagged, from another MAC; from another IP */
	struct twp_ep other = r.self;
	other.mac[5] ^= 0x10;
	n = rawp_data(&r, p, 1, 100);
	r.seq--, r.msg--;
	memcpy(p + 6, other.mac, 6);
	FORGED("another source MAC", addr_drops);
	{
		size_t m = rawp_data(&r, p, 1, 100);
		r.seq--, r.msg--;
		other = r.self;
		other.ip ^= htonl(0x10);
		uint8_t hdr[TWP_HEADERS];
		twp_l2l4_build(hdr, &other, &r.peer,
			       (uint32_t)(m - TWP_L2L4_LEN), false);
		memcpy(p, hdr, TWP_L2L4_LEN);
		twp_udp_csum_set(p, twp_csum_add(0, p + TWP_L2L4_LEN,
						 m - TWP_L2L4_LEN, false));
		n = m;
	}
	FORGED("another source IP", addr_drops);
	/* a guess at a session: no RESET tells whether it is live */
	h = (struct twp_hdr){.type = TWP_ACK,
			     .dst_sess = r.peer_sess ^ (UINT64_C(1) << 40),
			     .src_sess = r.sess,
			     .pn = 1,
			     .ack = r.ack};
	n = rawp_build(&r, p, &h, NULL, NULL, true);
	FORGED("unknown session", foreign_pkts);
	/* the member's first DATA again, byte for byte */
	memcpy(p, keep, nkeep);
	n = nkeep;
	FORGED("replayed data", replay_drops);
#undef FORGED

	/* the member's session still works: its next frame, then its RESET */
	n = rawp_data(&r, p, 1, 200);
	SCHECK(res, rawp_tx(&r, p, n), "");
	SCHECK(res, SPUMP(a.frames == 2, 2000), "");
	SCHECK(res, a.bad == 0 && a.closes == 0, "");
	h = (struct twp_hdr){.type = TWP_RESET,
			     .dst_sess = r.peer_sess,
			     .src_sess = r.sess,
			     .pn = r.pn++};
	n = rawp_build(&r, p, &h, NULL, NULL, true);
	SCHECK(res, rawp_tx(&r, p, n), "");
	SCHECK(res, SPUMP(a.closes == 1, 2000), "a member's RESET");
	tw_dpdk_get_stats(a.t, &s1);
	SCHECK(res, s1.resets_rx == 1, "");

	/* tags off: a connector that does not ask gets an untagged session
	 * (the ACCEPT says so), and its untagged frames are taken */
	SCHECK(res, rawp_open(&r, &a, false), "no ACCEPT");
	SCHECK(res, !r.tagged && a.oks == 2, "");
	n = rawp_data(&r, p, 0, 300);
	SCHECK(res, rawp_tx(&r, p, n), "");
	SCHECK(res, SPUMP(a.frames == 3, 2000), "untagged frame");
	SCHECK(res, a.bad == 0, "");
	/* ... and so does one asking, of a transport with no_pkt_tag */
	end_free(&a);
	g_nends = 0;
	o.no_pkt_tag = true;
	SCHECK(res, end_make(&a, ea, 0, &o) == 0, "");
	SCHECK(res,
	       a.t->ops->listen(a.t, "udp://" SRV_IP ":31850", bound,
				sizeof(bound)) == TW_OK &&
		       tw_dpdk_transport_secure(a.t, TAG_SECRET,
						sizeof(TAG_SECRET) - 1,
						true) == TW_OK &&
		       tw_transport_admit(a.t, members, 1) == TW_OK,
	       "");
	SCHECK(res, rawp_open(&r, &a, true), "no ACCEPT");
	SCHECK(res, !r.tagged && a.oks == 1, "tagged %d", r.tagged);
	n = rawp_data(&r, p, 0, 300);
	SCHECK(res, rawp_tx(&r, p, n), "");
	SCHECK(res, SPUMP(a.frames == 1, 2000), "untagged frame");
	SCHECK(res, a.bad == 0, "");
out:
	end_free(&a);
	if (eb != NULL && tw_dpdk_env_destroy(eb) != TW_OK)
		wfail(res, "env b destroy");
	if (ea != NULL && tw_dpdk_env_destroy(ea) != TW_OK)
		wfail(res, "env a destroy");
	if (r.mp != NULL)
		rte_mempool_free(r.mp);
	tw_dpdk_eal_cleanup();
	if (leaks_found())
		wfail(res, "leaks (see the LeakSanitizer report)");
	_exit(res->failed ? 1 : 0);
}

Test(dpdk, strangers_forge_replay_spoof, .timeout = 90)
{
	NEED_ROOT();
	struct shm *sh = shm_new();
	char prefix[64];
	int status = 0;
	run_solo(tag_main, sh, prefix, sizeof(prefix), &status);
	skip_without_eal(sh);
	cr_assert(sh->r[SRV].ran);
	cr_assert_eq(sh->r[SRV].failed, 0, "%s", sh->r[SRV].msg);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
		  status);
	munmap(sh, sizeof(*sh));
}

/* Issue 18, bounded state: a member (driven by hand, as above) that
 * announces a frame bigger than the loop's room for assembly, one that
 * fits and stalls, out-of-order packets past the loop's cap, and a peer
 * that hears a's data and keepalives but acknowledges nothing. */

/* Packet off..off+len of a frame of total bytes (its header first), as a
 * DATA packet of r's session at r's current seq and msg (not advanced). */
static size_t rawp_part(struct rawp *r, uint8_t *p, uint64_t total,
			uint64_t off, uint32_t len)
{
	uint8_t f[1024];
	memset(f, 0, sizeof(f));
	if (off == 0) {
		tw_frame_hdr fh = {.version = TW_FRAME_VERSION,
				   .type = 1,
				   .src = 1,
				   .dst = 2,
				   .payload_len = total - TW_FRAME_HDR_SIZE,
				   .total_len = total};
		tw_frame_hdr_encode(f, &fh);
	}
	struct twp_hdr h = {.type = TWP_DATA,
			    .dst_sess = r->peer_sess,
			    .src_sess = r->sess,
			    .pn = r->pn++,
			    .seq = r->seq,
			    .ack = r->ack,
			    .msg = r->msg,
			    .len = len,
			    .frame_off = off,
			    .frame_len = total};
	return rawp_build(r, p, &h, f, NULL, true);
}

static void bound_main(struct shm *sh, const char *prefix, const char *sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct result *res = &sh->r[SRV];
	res->ran = 1;
	char eal[512];
	snprintf(eal, sizeof(eal),
		 "-l 0 " EAL_COMMON "--file-prefix=%s "
		 "--vdev=net_memif0,role=server,socket=%s,mac=" SRV_MAC " "
		 "--vdev=net_memif1,role=client,socket=%s,mac=" CLI_MAC,
		 prefix, sock, sock);
	tw_dpdk_env *ea = NULL, *eb = NULL;
	struct end a;
	memset(&a, 0, sizeof(a));
	struct rawp r;
	memset(&r, 0, sizeof(r));
	char bound[96];
	struct tw_dpdk_stats s1;
	uint8_t p[2048];
	static uint8_t mem[4096];
	size_t n;

	if (solo_env(eal, "net_memif0", SRV_IP, 1, &ea) != TW_OK) {
		wfail(res, "env: %s", eal_why);
		goto out;
	}
	SCHECK(res, solo_env(NULL, "net_memif1", CLI_IP, 1, &eb) == TW_OK, "");
	struct tw_dpdk_port_info ib;
	tw_dpdk_env_info(eb, &ib);
	r.port = ib.port_id;
	r.mp = rte_pktmbuf_pool_create("tw-rawp", 1023, 0, 0, 2048 + 128,
				       SOCKET_ID_ANY);
	SCHECK(res, r.mp != NULL, "pool");
	SCHECK(res,
	       twp_addr_parse("udp://" CLI_IP ":31850/" CLI_MAC, &r.self, true,
			      NULL) == 0 &&
		       twp_addr_parse("udp://" SRV_IP ":31850/" SRV_MAC,
				      &r.peer, true, NULL) == 0,
	       "");
	memcpy(r.local.mac, r.self.mac, 6);
	r.local.ip = r.self.ip;
	r.local.base_port = 31850;
	r.local.nports = 1;
	r.local.mss = 1402;

	struct tw_dpdk_opts o;
	tw_dpdk_opts_init(&o, sizeof(o));
	o.dead_ns = 60ull * 1000000000; /* no keepalive during the test */
	o.rto_ns = 2000000;
	o.idle_wake_ns = 0;
	o.asm_bytes = 1u << 20;
	o.asm_stall_ns = 300000000;
	o.ooo_max = 8;
	o.rexmit_max = 5;
	o.accept_timeout_ns = 200000000;
	SCHECK(res, end_make(&a, ea, 0, &o) == 0, "");
	SCHECK(res,
	       a.t->ops->listen(a.t, "udp://" SRV_IP ":31850", bound,
				sizeof(bound)) == TW_OK,
	       "");
	SCHECK(res,
	       tw_dpdk_transport_secure(a.t, TAG_SECRET, sizeof(TAG_SECRET) - 1,
					true) == TW_OK,
	       "");
	const char *members[] = {"udp://" CLI_IP ":31850/" CLI_MAC};
	SCHECK(res, tw_transport_admit(a.t, members, 1) == TW_OK, "");

	/* Reassembly. A frame announced bigger than the room (1 MiB) is
	 * not taken: nothing reserved, nothing acked, the session goes on. */
	SCHECK(res, rawp_open(&r, &a, true), "no ACCEPT");
	n = rawp_part(&r, p, 64u << 20, 0, 1024);
	SCHECK(res, rawp_tx(&r, p, n), "");
	SCHECK(res,
	       SPUMP((tw_dpdk_get_stats(a.t, &s1), s1.asm_waits == 1), 2000),
	       "asm_waits %lu", (unsigned long)s1.asm_waits);
	SCHECK(res, s1.asm_reserved == 0 && a.closes == 0 && a.frames == 0,
	       "reserved %lu", (unsigned long)s1.asm_reserved);
	/* One that fits, at the same place (nothing was taken): reserved,
	 * filled by what arrives, then given up after asm_stall_ns. */
	uint64_t total = 512u << 10;
	for (uint64_t off = 0; off < 4096; off += 1024) {
		n = rawp_part(&r, p, total, off, 1024);
		r.seq++;
		SCHECK(res, rawp_tx(&r, p, n), "");
	}
	rawp_pump(&r, &a, 50, NULL, NULL);
	tw_dpdk_get_stats(a.t, &s1);
	SCHECK(res, s1.asm_reserved == total && a.frames == 0 && a.closes == 0,
	       "reserved %lu", (unsigned long)s1.asm_reserved);
	uint64_t t0 = now_ns();
	while (a.closes == 0 && now_ns() - t0 < 2000000000ull)
		rawp_pump(&r, &a, 10, NULL, NULL);
	uint64_t took = now_ns() - t0;
	tw_dpdk_get_stats(a.t, &s1);
	SCHECK(res, a.closes == 1 && a.close_st == TW_ETIMEDOUT,
	       "closes %d st %d", a.closes, (int)a.close_st);
	SCHECK(res, s1.asm_stalls == 1 && s1.asm_reserved == 0,
	       "stalls %lu reserved %lu", (unsigned long)s1.asm_stalls,
	       (unsigned long)s1.asm_reserved);
	SCHECK(res, a.close_why != NULL && strstr(a.close_why, "asm_stall_ns"),
	       "why: %s", a.close_why ? a.close_why : "(none)");
	SCHECK(res, took >= 200000000ull, "ended after %lu ms",
	       (unsigned long)(took / 1000000));

	/* Out of order: 20 packets past a hole, of which the loop holds 8
	 * (ooo_max) and drops the rest, counted; the hole filled, the 9
	 * frames go up and nothing stays held. */
	SCHECK(res, rawp_open(&r, &a, true), "no ACCEPT");
	SCHECK(res, a.oks == 2, "");
	uint32_t seq0 = r.seq, msg0 = r.msg;
	r.seq++, r.msg++;
	for (int i = 1; i <= 20; i++) {
		n = rawp_data(&r, p, (uint64_t)i, 100);
		SCHECK(res, rawp_tx(&r, p, n), "");
	}
	SCHECK(res,
	       SPUMP((tw_dpdk_get_stats(a.t, &s1),
		      s1.ooo_held + s1.ooo_cap_drops == 20),
		     2000),
	       "held %lu dropped %lu", (unsigned long)s1.ooo_held,
	       (unsigned long)s1.ooo_cap_drops);
	SCHECK(res, s1.ooo_held == 8 && s1.ooo_cap_drops == 12, "held %lu",
	       (unsigned long)s1.ooo_held);
	/* Another session (a second CONNECT of the member) meanwhile: its
	 * in-order frame is taken, receive buffers remain. */
	tw_conn *cb = a.last_ok;
	{
		struct rawp r2 = r;
		SCHECK(res, rawp_open(&r2, &a, true), "no ACCEPT");
		SCHECK(res, a.oks == 3, "oks %d", a.oks);
		n = rawp_data(&r2, p, 0, 100);
		SCHECK(res, rawp_tx(&r2, p, n), "");
		SCHECK(res, SPUMP(a.frames == 1, 2000), "frames %lu",
		       (unsigned long)a.frames);
		struct twp_hdr h = {.type = TWP_RESET,
				    .dst_sess = r2.peer_sess,
				    .src_sess = r2.sess,
				    .pn = r2.pn++};
		n = rawp_build(&r2, p, &h, NULL, NULL, true);
		SCHECK(res, rawp_tx(&r2, p, n), "");
		SCHECK(res, SPUMP(a.closes == 2, 2000), "r2's RESET");
		tw_dpdk_get_stats(a.t, &s1);
		SCHECK(res, s1.ooo_held == 8, "held %lu",
		       (unsigned long)s1.ooo_held);
	}
	r.seq = seq0, r.msg = msg0;
	n = rawp_data(&r, p, 0, 100);
	SCHECK(res, rawp_tx(&r, p, n), "");
	SCHECK(res, SPUMP(a.frames == 10, 2000), "frames %lu",
	       (unsigned long)a.frames);
	tw_dpdk_get_stats(a.t, &s1);
	SCHECK(res, s1.ooo_held == 0 && a.bad == 0 && a.closes == 2, "");

	/* A peer that keeps the session alive (keepalives) but acknowledges
	 * none of a's data: after rexmit_max timeouts the session ends, its
	 * send fails TW_EUNREACHABLE, counted. */
	struct ssend q;
	ssend_init(&q, &a, mem, 0, 100);
	uint32_t ack0 = r.ack;
	SCHECK(res, a.t->ops->send(a.t, cb, &q.r) == TW_OK, "");
	t0 = now_ns();
	while (a.closes == 2 && now_ns() - t0 < 3000000000ull) {
		struct twp_hdr h = {.type = TWP_ACK,
				    .dst_sess = r.peer_sess,
				    .src_sess = r.sess,
				    .pn = r.pn++,
				    .ack = ack0};
		n = rawp_build(&r, p, &h, NULL, NULL, true);
		SCHECK(res, rawp_tx(&r, p, n), "");
		rawp_pump(&r, &a, 5, NULL, NULL);
	}
	SCHECK(res, SPUMP(q.ndone == 1, 2000), "");
	tw_dpdk_get_stats(a.t, &s1);
	SCHECK(res, a.closes == 3 && a.close_st == TW_EUNREACHABLE,
	       "closes %d st %d", a.closes, (int)a.close_st);
	SCHECK(res,
	       a.close_why != NULL &&
		       strstr(a.close_why, "acknowledged nothing"),
	       "why: %s", a.close_why ? a.close_why : "(none)");
	SCHECK(res, q.st == TW_EUNREACHABLE && s1.sessions_unacked == 1,
	       "st %d unacked %lu", (int)q.st,
	       (unsigned long)s1.sessions_unacked);
	SCHECK(res, s1.rto_fires >= 5, "rto_fires %lu",
	       (unsigned long)s1.rto_fires);

	/* A member's CONNECT replayed from the wire: the replayer has no
	 * key and says nothing more. a repeats its ACCEPT, then frees the
	 * slot after accept_timeout_ns (200 ms), not dead_ns (60 s). */
	SCHECK(res, rawp_open(&r, &a, true), "no ACCEPT");
	SCHECK(res, a.oks == 4, "oks %d", a.oks);
	uint64_t heard0 = r.heard;
	t0 = now_ns();
	while (a.closes == 3 && now_ns() - t0 < 2000000000ull)
		rawp_pump(&r, &a, 10, NULL, NULL);
	took = now_ns() - t0;
	tw_dpdk_get_stats(a.t, &s1);
	SCHECK(res, a.close_why != NULL && strstr(a.close_why, "never proved"),
	       "why: %s", a.close_why ? a.close_why : "(none)");
	SCHECK(res, a.closes == 4 && s1.accept_timeouts == 1,
	       "closes %d accept_timeouts %lu", a.closes,
	       (unsigned long)s1.accept_timeouts);
	SCHECK(res, took >= 100000000ull && took < 1500000000ull,
	       "ended after %lu ms", (unsigned long)(took / 1000000));
	SCHECK(res, r.heard - heard0 >= 3, "ACCEPTs repeated: %lu",
	       (unsigned long)(r.heard - heard0));

	/* Twelve distinct CONNECTs of the member (a connector that retries,
	 * each time with a new counter), none followed by anything: at
	 * most 8 (per endpoint) hold a slot, each newer one ends the
	 * oldest. */
	{
		struct rawp rr = r;
		for (int i = 0; i < 12; i++)
			SCHECK(res, rawp_open(&rr, &a, true), "no ACCEPT %d",
			       i);
		tw_dpdk_get_stats(a.t, &s1);
		SCHECK(res, a.oks == 16 && a.closes == 8, "oks %d closes %d",
		       a.oks, a.closes);
		SCHECK(res, s1.unproven_evicted == 4, "evicted %lu",
		       (unsigned long)s1.unproven_evicted);
		SCHECK(res,
		       a.close_why != NULL &&
			       strstr(a.close_why, "proved its key") != NULL,
		       "why: %s", a.close_why ? a.close_why : "(none)");
		SCHECK(res, s1.sessions_live == 8, "live %lu",
		       (unsigned long)s1.sessions_live);
		SCHECK(res, SPUMP(a.closes == 16, 2000), "closes %d", a.closes);
		tw_dpdk_get_stats(a.t, &s1);
		SCHECK(res, s1.accept_timeouts == 9, "accept_timeouts %lu",
		       (unsigned long)s1.accept_timeouts);
	}

	/* Paused by the layer above longer than asm_stall_ns with a frame
	 * in assembly: not a stall (nothing can move then), and the frame
	 * gets a whole asm_stall_ns after the pause before it must move. */
	{
		SCHECK(res, rawp_open(&r, &a, true), "no ACCEPT");
		tw_conn *pc = a.last_ok;
		uint64_t ptotal = 8u << 10, frames0 = a.frames;
		n = rawp_part(&r, p, ptotal, 0, 1024);
		r.seq++;
		SCHECK(res, rawp_tx(&r, p, n), "");
		rawp_pump(&r, &a, 20, NULL, NULL);
		a.t->ops->pause(a.t, pc, true);
		rawp_pump(&r, &a, 450, NULL, NULL);
		tw_dpdk_get_stats(a.t, &s1);
		SCHECK(res, a.closes == 16 && s1.asm_stalls == 1,
		       "paused: closes %d stalls %lu", a.closes,
		       (unsigned long)s1.asm_stalls);
		a.t->ops->pause(a.t, pc, false);
		rawp_pump(&r, &a, 150, NULL, NULL);
		SCHECK(res, a.closes == 16, "ended after the pause");
		for (uint64_t po = 1024; po < ptotal; po += 1024) {
			n = rawp_part(&r, p, ptotal, po, 1024);
			r.seq++;
			SCHECK(res, rawp_tx(&r, p, n), "");
		}
		SCHECK(res, SPUMP(a.frames == frames0 + 1, 2000),
		       "frame after the pause: %lu",
		       (unsigned long)(a.frames - frames0));
		SCHECK(res, a.closes == 16, "closes %d", a.closes);
	}

	/* A trickle is no progress: a frame fed 1 KiB every 50 ms (less
	 * than 64 KiB per asm_stall_ns) ends its session after asm_stall_ns
	 * as one fed nothing does, though its packets keep coming. */
	SCHECK(res, rawp_open(&r, &a, true), "no ACCEPT");
	rawp_pump(&r, &a, 20, NULL, NULL);
	uint64_t off = 0;
	t0 = now_ns();
	while (a.closes == 16 && now_ns() - t0 < 3000000000ull) {
		n = rawp_part(&r, p, total, off, 1024);
		off += 1024;
		r.seq++;
		SCHECK(res, rawp_tx(&r, p, n), "");
		rawp_pump(&r, &a, 50, NULL, NULL);
	}
	took = now_ns() - t0;
	tw_dpdk_get_stats(a.t, &s1);
	SCHECK(res, a.closes == 17 && a.close_st == TW_ETIMEDOUT,
	       "closes %d st %d", a.closes, (int)a.close_st);
	SCHECK(res, s1.asm_stalls == 2 && s1.asm_reserved == 0,
	       "stalls %lu reserved %lu", (unsigned long)s1.asm_stalls,
	       (unsigned long)s1.asm_reserved);
	SCHECK(res, took >= 250000000ull && took < 1500000000ull,
	       "a trickle ended after %lu ms (%lu KiB taken)",
	       (unsigned long)(took / 1000000), (unsigned long)(off >> 10));

	/* A member's CONNECT captured and replayed byte for byte once its
	 * session has ended: its counter was taken, so it gets no slot and
	 * no answer, however often it comes. */
	{
		struct rawp rr = r;
		SCHECK(res, rawp_open(&rr, &a, true), "no ACCEPT");
		int oks0 = a.oks, closes0 = a.closes;
		/* Proven (an ACK under its key), then ended. */
		SCHECK(res, rawp_prove(&rr), "");
		rawp_pump(&rr, &a, 20, NULL, NULL);
		struct twp_hdr h = {.type = TWP_RESET,
				    .dst_sess = rr.peer_sess,
				    .src_sess = rr.sess,
				    .pn = rr.pn++};
		n = rawp_build(&rr, p, &h, NULL, NULL, true);
		SCHECK(res, rawp_tx(&rr, p, n), "");
		SCHECK(res, SPUMP(a.closes == closes0 + 1, 2000), "RESET");
		rawp_pump(&rr, &a, 20, NULL, NULL);
		tw_dpdk_get_stats(a.t, &s1);
		uint64_t rep0 = s1.connect_replays, heard1 = rr.heard;
		SCHECK(res, rep0 == 0, "replays before: %lu",
		       (unsigned long)rep0);
		for (int i = 0; i < 20; i++)
			SCHECK(res, rawp_tx(&rr, rr.connect, rr.connect_len),
			       "");
		SCHECK(res,
		       SPUMP((tw_dpdk_get_stats(a.t, &s1),
			      s1.connect_replays == rep0 + 20),
			     2000),
		       "replays %lu", (unsigned long)s1.connect_replays);
		rawp_pump(&rr, &a, 50, NULL, NULL);
		SCHECK(res, a.oks == oks0 && rr.heard == heard1,
		       "a replayed CONNECT opened %d, drew %lu packets",
		       a.oks - oks0, (unsigned long)(rr.heard - heard1));
		/* The member's next CONNECT (a higher counter) still opens. */
		SCHECK(res, rawp_open(&rr, &a, true), "no ACCEPT after");
		SCHECK(res, a.oks == oks0 + 1, "oks %d", a.oks);
		/* Never proved, it ends at accept_timeout_ns and frees its
		 * counter: the same CONNECT, sent again (a connector whose
		 * ACCEPTs were all lost), opens a session again. */
		closes0 = a.closes;
		SCHECK(res, SPUMP(a.closes == closes0 + 1, 2000),
		       "accept timeout");
		SCHECK(res, rawp_tx(&rr, rr.connect, rr.connect_len), "");
		SCHECK(res, SPUMP(a.oks == oks0 + 2, 2000),
		       "the CONNECT of a session that ended unproven: oks %d",
		       a.oks);

		/* A held ack: a one-packet frame that nothing answers is
		 * acked by an ACK packet after ack_delay_ns, not never. */
		SCHECK(res, rawp_open(&rr, &a, true), "no ACCEPT");
		SCHECK(res, rawp_prove(&rr), "");
		uint64_t frames0 = a.frames;
		tw_dpdk_get_stats(a.t, &s1);
		uint64_t acks0 = s1.acks_tx;
		n = rawp_data(&rr, p, 7, 100);
		SCHECK(res, rawp_tx(&rr, p, n), "");
		t0 = now_ns();
		while ((a.frames == frames0 || rr.acked != rr.seq) &&
		       now_ns() - t0 < 2000000000ull)
			rawp_pump(&rr, &a, 5, NULL, NULL);
		SCHECK(res, a.frames == frames0 + 1 && rr.acked == rr.seq,
		       "held ack: frames %lu acked %u seq %u",
		       (unsigned long)(a.frames - frames0), rr.acked, rr.seq);
		tw_dpdk_get_stats(a.t, &s1);
		SCHECK(res, s1.acks_tx > acks0, "acks_tx %lu",
		       (unsigned long)(s1.acks_tx - acks0));
	}

	/* Cookies. A member's CONNECT without one takes no slot: it gets a
	 * COOKIE and nothing else happens. And the hole they close: twelve
	 * CONNECTs captured with their cookies, of sessions that ended
	 * unproven (so their counters are free again), replayed once the
	 * cookies aged (2 s): before cookies each opened an unproven
	 * session, and the ninth on ended the member's own new session;
	 * now each draws a COOKIE to the member and takes nothing. */
	{
		struct rawp rc = r;
		/* What earlier cases left unproven ends first
		 * (accept_timeout_ns). */
		rawp_pump(&rc, &a, 300, NULL, NULL);
		int oks0 = a.oks, closes0 = a.closes;
		tw_dpdk_get_stats(a.t, &s1);
		uint64_t live0 = s1.sessions_live, cookies0 = s1.cookies_tx;
		uint64_t ck0 = rc.cookies;
		rc.sess = ((uint64_t)now_ns() << 16) | 0x79;
		twp_nonce_set_counter(rc.nonce,
				      twp_nonce_counter(r.nonce) + 1000);
		n = rawp_connect(&rc, p, true, NULL);
		SCHECK(res, rawp_tx(&rc, p, n), "");
		for (int k = 0; k < 100 && rc.cookies == ck0; k++)
			rawp_pump(&rc, &a, 20, NULL, NULL);
		tw_dpdk_get_stats(a.t, &s1);
		SCHECK(res,
		       rc.cookies == ck0 + 1 && s1.cookies_tx == cookies0 + 1 &&
			       s1.sessions_live == live0 && a.oks == oks0,
		       "cookies %lu/%lu live %lu oks %d",
		       (unsigned long)(rc.cookies - ck0),
		       (unsigned long)(s1.cookies_tx - cookies0),
		       (unsigned long)s1.sessions_live, a.oks - oks0);

		enum { CAPS = 12 };
		static uint8_t caps[CAPS][256];
		size_t caps_len[CAPS];
		for (int i = 0; i < CAPS; i++) {
			SCHECK(res, rawp_open(&rc, &a, true), "no ACCEPT %d",
			       i);
			memcpy(caps[i], rc.connect, rc.connect_len);
			caps_len[i] = rc.connect_len;
		}
		SPUMP(a.closes == closes0 + CAPS, 2000);
		SCHECK(res, a.closes == closes0 + CAPS,
		       "unproven ones ended: %d of %d (oks %d)",
		       a.closes - closes0, CAPS, a.oks - oks0);
		rawp_pump(&rc, &a, 2100, NULL, NULL); /* the cookies age */
		/* The member's new session, not proven yet, then the
		 * replays, then its proof right behind them (a takes them in
		 * that order; the proof comes well within
		 * accept_timeout_ns however slow the machine). */
		struct rawp rn = r;
		SCHECK(res, rawp_open(&rn, &a, true), "no ACCEPT");
		tw_dpdk_get_stats(a.t, &s1);
		uint64_t ev0 = s1.unproven_evicted, stale0 = s1.cookie_stale;
		ck0 = rc.cookies;
		for (int i = 0; i < CAPS; i++)
			SCHECK(res, rawp_tx(&rc, caps[i], caps_len[i]), "");
		SCHECK(res, rawp_prove(&rn), "");
		for (int k = 0; k < 100 && rc.cookies < ck0 + CAPS; k++)
			rawp_pump(&rc, &a, 20, NULL, NULL);
		tw_dpdk_get_stats(a.t, &s1);
		SCHECK(res,
		       rc.cookies == ck0 + CAPS &&
			       s1.cookie_stale == stale0 + CAPS &&
			       s1.unproven_evicted == ev0 &&
			       a.oks == oks0 + CAPS + 1 &&
			       a.closes == closes0 + CAPS,
		       "replays: cookies %lu stale %lu evicted %lu oks %d "
		       "closes %d",
		       (unsigned long)(rc.cookies - ck0),
		       (unsigned long)(s1.cookie_stale - stale0),
		       (unsigned long)(s1.unproven_evicted - ev0), a.oks - oks0,
		       a.closes - closes0);
		/* The member's session was left alone: it carries a
		 * frame. */
		uint64_t frames0 = a.frames;
		n = rawp_data(&rn, p, 9, 100);
		SCHECK(res, rawp_tx(&rn, p, n), "");
		SCHECK(res, SPUMP(a.frames == frames0 + 1, 2000),
		       "the member's frame: %lu",
		       (unsigned long)(a.frames - frames0));
		SCHECK(res, a.closes == closes0 + CAPS, "closes %d",
		       a.closes - closes0);
	}

	/* The table full: the member's sessions, each proven, take every
	 * slot of max_sessions (1024, the gauge counts them); its next
	 * CONNECT is refused with a RESET and counted (sessions_full), and
	 * no session held is touched. */
	{
		struct rawp rf = r;
		tw_dpdk_get_stats(a.t, &s1);
		uint64_t live = s1.sessions_live;
		int oks0 = a.oks;
		int closes0 = a.closes;
		for (uint64_t i = live; i < 1024; i++) {
			SCHECK(res, rawp_open(&rf, &a, true), "no ACCEPT %lu",
			       (unsigned long)i);
			SCHECK(res, rawp_prove(&rf), "");
		}
		rawp_pump(&rf, &a, 20, NULL, NULL);
		tw_dpdk_get_stats(a.t, &s1);
		SCHECK(res, s1.sessions_live == 1024 && s1.sessions_full == 0,
		       "live %lu full %lu", (unsigned long)s1.sessions_live,
		       (unsigned long)s1.sessions_full);
		uint64_t resets0 = rf.heard_resets;
		/* A CONNECT with a new counter and session number: its
		 * COOKIE comes (no slot needed), then, with the cookie, the
		 * refusal. */
		struct rawp rx = rf;
		rx.sess = ((uint64_t)now_ns() << 16) | 0x78;
		twp_nonce_set_counter(rx.nonce,
				      twp_nonce_counter(rf.nonce) + 1);
		n = rawp_connect(&rx, p, true, NULL);
		SCHECK(res, rawp_tx(&rx, p, n), "");
		struct twp_pkt ck;
		uint8_t ckbuf[2048];
		SCHECK(res,
		       rawp_pump(&rx, &a, 2000, &ck, ckbuf) &&
			       ck.h.type == TWP_COOKIE,
		       "no COOKIE");
		struct twp_setup cks;
		twp_setup_decode(ck.payload, &cks);
		n = rawp_connect(&rx, p, true, cks.nonce);
		SCHECK(res, rawp_tx(&rx, p, n), "");
		SCHECK(res,
		       SPUMP((tw_dpdk_get_stats(a.t, &s1),
			      s1.sessions_full == 1),
			     2000),
		       "full %lu", (unsigned long)s1.sessions_full);
		for (int k = 0; k < 100 && rx.heard_resets == resets0; k++)
			rawp_pump(&rx, &a, 20, NULL, NULL);
		SCHECK(res, rx.heard_resets == resets0 + 1, "RESETs %lu",
		       (unsigned long)(rx.heard_resets - resets0));
		SCHECK(res,
		       a.oks == oks0 + (int)(1024 - live) &&
			       a.closes == closes0 && s1.sessions_live == 1024,
		       "oks %d closes %d live %lu", a.oks - oks0,
		       a.closes - closes0, (unsigned long)s1.sessions_live);
	}
out:
	end_free(&a);
	if (eb != NULL && tw_dpdk_env_destroy(eb) != TW_OK)
		wfail(res, "env b destroy");
	if (ea != NULL && tw_dpdk_env_destroy(ea) != TW_OK)
		wfail(res, "env a destroy");
	if (r.mp != NULL)
		rte_mempool_free(r.mp);
	tw_dpdk_eal_cleanup();
	if (leaks_found())
		wfail(res, "leaks (see the LeakSanitizer report)");
	_exit(res->failed ? 1 : 0);
}

Test(dpdk, member_bounded_state, .timeout = 90)
{
	NEED_ROOT();
	struct shm *sh = shm_new();
	char prefix[64];
	int status = 0;
	run_solo(bound_main, sh, prefix, sizeof(prefix), &status);
	skip_without_eal(sh);
	cr_assert(sh->r[SRV].ran);
	cr_assert_eq(sh->r[SRV].failed, 0, "%s", sh->r[SRV].msg);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d",
		  status);
	munmap(sh, sizeof(*sh));
}
