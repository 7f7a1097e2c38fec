/* Transport conformance: transport.h's contract, over every provider. */
/*
 * Every test runs once per entry of `providers` (criterion parameters) and
 * reaches the transport only through its provider: find, check, start,
 * create, listen_addr, the ops, stop. A new transport is checked by adding
 * its entry: a name, the options of node i of a pair, and whether it can
 * run here.
 *
 * A pair is two nodes, each a provider env, a loop and one transport, both
 * loops polled alternately by the test thread. Node 1 connects to node 0.
 * Every upcall is counted per connection, every send request knows how
 * often its done ran, and the end of each test (pair_down) checks what
 * holds after any history: destroy() ended every connection exactly once,
 * after the done of each of its requests. Waits are bounded by a generous
 * real-time limit (liveness, never speed).
 *
 * DPDK: two memif vdevs of one EAL wired to each other. The EAL starts once
 * per process, and a port closed by stop() cannot be brought back, so a
 * process makes one DPDK pair: criterion runs each test in a process of its
 * own (0.3 s of EAL start each), one at a time (main below), and removes
 * what a killed one left.
 */
#include <criterion/criterion.h>

#include "dataplane/util.h"
#include <criterion/parameterized.h>

#include <endian.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/buf.h>
#include <tensorwire/dpdk.h>
#include <tensorwire/frame.h>
#include <tensorwire/shm.h>
#include <tensorwire/uring.h>

#include "dataplane/loop.h"
#include "dataplane/transport.h"
#include "tests/lib/fake_agent.h"

#include "tests/integration/h_net.h"

#define MS UINT64_C(1000000)
/* Any wait: long enough that only a transport that stopped making progress
 * hits it, on a loaded 2-core machine under sanitizers. */
#define LIVE_MS 20000
/* The receiver's limit in the size tests: small enough to stay fast. */
#define LIMIT ((UINT64_C(4) << 20) + 64)
#define MAX_CONNS 16

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Frames: a layout per id, bytes that depend on id and offset          */

struct layout {
	uint32_t payload;
	uint32_t nseg;
	uint64_t seg[2];
};

typedef void (*layout_fn)(uint64_t id, struct layout *l);

static inline uint8_t pat(uint64_t id, uint64_t k)
{
	return (uint8_t)(id * 151u + k + (k >> 8) * 3u + 1u);
}

static uint64_t align64(uint64_t n)
{
	return (n + 63) & ~(uint64_t)63;
}

/* frame.h: header, table, payload, pad to 64 (with segments), then each
 * segment at a 64-byte aligned offset, nothing after the last. */
static uint64_t layout_len(const struct layout *l)
{
	uint64_t n = tw_frame_head_len(l->nseg, l->payload);
	for (uint32_t i = 0; i < l->nseg; i++)
		n = (i ? align64(n) : n) + l->seg[i];
	return n;
}

/* Frame `id` from node src to node dst: header, table, patterned payload
 * and segments, zero pads. */
static void frame_fill(uint8_t *f, uint64_t len, uint64_t id, uint32_t src,
		       uint32_t dst, const struct layout *l)
{
	tw_frame_hdr h = {
		.version = TW_FRAME_VERSION,
		.type = (uint8_t)(1 + id % 13),
		.req_id = id,
		.src = src,
		.dst = dst,
		.timeout_ms = (uint32_t)(id * 7),
		.payload_len = l->payload,
		.seg_count = l->nseg,
		.total_len = len,
	};
	tw_frame_hdr_encode(f, &h);
	uint64_t at = TW_FRAME_HDR_SIZE;
	for (uint32_t i = 0; i < l->nseg; i++, at += 8) {
		uint64_t v = htole64(l->seg[i]);
		memcpy(f + at, &v, 8);
	}
	for (uint64_t k = 0; k < l->payload; k++, at++)
		f[at] = pat(id, at);
	for (uint32_t i = 0; i < l->nseg; i++) {
		uint64_t start = align64(at);
		memset(f + at, 0, start - at);
		at = start;
		for (uint64_t k = 0; k < l->seg[i]; k++, at++)
			f[at] = pat(id, at);
	}
}

/* ------------------------------------------------------------------ */
/* What the upcalls saw                                                 */

struct pair;
struct end;

/* One end of a connection, as the test sees it through tw_conn.ctx. */
struct cstate {
	struct end *e;
	tw_conn *c; /* valid until its close upcall */
	int ups, closes;
	tw_status close_st;
	uint64_t next_rx; /* id of the next frame due */
	uint64_t next_tx; /* id of the next frame we make */
	uint64_t frames;
	uint64_t accepted; /* requests send() took on it */
	uint64_t dones, dones_at_close;
};

struct end {
	struct pair *p;
	uint32_t idx;
	void *env;
	tw_loop *l;
	tw_transport *t;
	char url[128], bound[128];
	struct cstate cs[MAX_CONNS];
	int ncs;
	const char *in_op; /* the op of ours that runs: upcall check */
	bool keep;         /* on_frame retains every buffer */
	struct kept {
		tw_buf *b;
		size_t off, len;
		uint64_t id;
	} * kept;
	size_t nkept, capkept;
	uint64_t nbad;
	char why[512]; /* the first contract violation */
	/* on_refused: what it saw, and what it does (answer with a frame of
	 * ours on the connection; skip the frame when it may). */
	bool answer, skip;
	uint64_t refused;
	tw_status refused_st;
	uint64_t refused_req;
};

static void bad(struct end *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void bad(struct end *e, const char *fmt, ...)
{
	if (e->nbad++ > 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->why, sizeof(e->why), fmt, ap);
	va_end(ap);
}

static struct cstate *cs_new(struct end *e)
{
	if (e->ncs == MAX_CONNS) {
		bad(e, "more than %d connections", MAX_CONNS);
		return NULL;
	}
	struct cstate *cs = &e->cs[e->ncs++];
	memset(cs, 0, sizeof(*cs));
	cs->e = e;
	return cs;
}

/* A send request with its own frame memory. */
struct sreq {
	struct tw_send_req r;
	struct iovec iov[4];
	uint8_t *mem;
	struct cstate *cs; /* the sender's connection */
	uint64_t id;
	bool accepted;
	int ndone;
	tw_status st;
};

/* ------------------------------------------------------------------ */
/* Providers                                                           */

struct knobs {
	uint32_t max_queued; /* 0 = the provider's default */
	uint64_t dead_ns;    /* DPDK: a silent peer is dead (0 = 1 s) */
};

struct provider {
	const char *name;
	/* Make the provider findable; NULL when it can run here, else why
	 * not (the test is skipped with that reason). */
	const char *(*prepare)(void);
	/* Node i's options (0 listens, 1 connects to it), in p's storage. */
	const void *(*opts)(struct pair *p, uint32_t i);
	/* After both nodes stopped: free what the options needed. */
	void (*fini)(struct pair *p);
	/* start() failed with a reason containing this: the machine cannot
	 * run the provider at all (skip, as for prepare). */
	const char *start_skip;
	/* Pause between the two nodes' stop(), for what the first one's
	 * stop sets off in the background to finish first. */
	unsigned stop_gap_ms;
	/* Call tw_transport_trusted on every connection once it is up, as
	 * the RPC layer does after its handshake (shm: then the rings). */
	bool trust;
	/* The entry's name in messages (NULL: name). */
	const char *label;
};

struct pair {
	const struct provider *pv;
	const struct tw_transport_provider *tp;
	struct knobs k;
	layout_fn layout;
	struct end e[2];
	union {
		struct tw_fake_opts fake;
		struct tw_uring_opts uring;
		struct tw_shm_opts shm;
		struct tw_dpdk_opts dpdk;
	} o[2];
	char str[2][3][512];  /* the options' strings, node by node */
	const char *addrs[2]; /* fake: every member's address */
	tw_fake_net *net;
	struct sreq **reqs; /* every request made, for pair_down */
	size_t nreqs, capreqs;
};

#define PLABEL(p) ((p)->pv->label ? (p)->pv->label : (p)->pv->name)
#define PCHECK(p, cond, fmt, ...)                                              \
	cr_assert(cond, "[%s] " fmt, PLABEL(p), ##__VA_ARGS__)

/* -- the fake net (test library) -- */

static const char *fake_prepare(void)
{
	tw_status st = tw_fake_provider_register();
	return st == TW_OK ? NULL : tw_errmsg(st);
}

static const void *fake_opts(struct pair *p, uint32_t i)
{
	if (p->net == NULL)
		cr_assert_eq(tw_fake_net_create(&p->net), TW_OK);
	for (uint32_t n = 0; n < 2; n++) {
		snprintf(p->str[n][0], sizeof(p->str[n][0]), "fake://%u",
			 n + 1);
		p->addrs[n] = p->str[n][0];
	}
	p->o[i].fake = (struct tw_fake_opts){
		.opts_size = sizeof(struct tw_fake_opts),
		.transport = TW_TRANSPORT_FAKE,
		.net = p->net,
		.addrs = p->addrs,
	};
	return &p->o[i].fake;
}

static void fake_fini(struct pair *p)
{
	PCHECK(p, tw_fake_net_destroy(p->net) == TW_OK,
	       "the net still has transports");
	p->net = NULL;
}

/* -- io_uring on loopback -- */

static const void *uring_opts(struct pair *p, uint32_t i)
{
	struct tw_uring_opts *o = &p->o[i].uring;
	tw_uring_opts_init(o, sizeof(*o));
	snprintf(p->str[i][0], sizeof(p->str[i][0]), "127.0.0.1");
	o->listen_host = p->str[i][0];
	o->rx_pool_count = 32; /* 2 MiB per transport is plenty here */
	if (p->k.max_queued)
		o->max_queued = p->k.max_queued;
	return o;
}

/* -- shared memory: sockets in the default directory; rings of the
 * smallest size, so that most frames of the size tests span them -- */

static const void *shm_opts(struct pair *p, uint32_t i)
{
	struct tw_shm_opts *o = &p->o[i].shm;
	tw_shm_opts_init(o, sizeof(*o));
	o->ring_size = 64u << 10;
	o->rx_pool_count = 32;
	if (p->k.max_queued)
		o->max_queued = p->k.max_queued;
	return o;
}

/* ... with every body segment of 1 KiB or more read from the sender's
 * memory (CMA), not copied through the ring. */
static const void *shm_cma_opts(struct pair *p, uint32_t i)
{
	struct tw_shm_opts *o = (struct tw_shm_opts *)shm_opts(p, i);
	o->cma_threshold = 1024;
	return o;
}

/* -- DPDK: two memif vdevs of this process's EAL, wired to each other -- */

static const char *dpdk_prepare(void)
{
	static char why[512];
	const struct tw_transport_provider *tp =
		tw_transport_provider_find(TW_TRANSPORT_DPDK);
	if (tp == NULL)
		return "no provider named '" TW_TRANSPORT_DPDK "'";
	tw_status st = tp->check(NULL, 1); /* a build without DPDK says so */
	if (st != TW_OK) {
		snprintf(why, sizeof(why), "%s", tw_errmsg(st));
		return why;
	}
	if (geteuid() != 0)
		return "the DPDK EAL needs root here (memory, memif sockets)";
	return NULL;
}

static int dpdk_pairs; /* in this process */

static const void *dpdk_opts(struct pair *p, uint32_t i)
{
	int pid = (int)getpid();
	if (i == 0)
		PCHECK(p, dpdk_pairs++ == 0,
		       "one DPDK pair per process: its memif ports do not come "
		       "back once stop() closed them");
	struct tw_dpdk_opts *o = &p->o[i].dpdk;
	tw_dpdk_opts_init(o, sizeof(*o));
	/* Both nodes pass the EAL arguments; the EAL takes the first's. */
	snprintf(p->str[i][0], sizeof(p->str[i][0]),
		 "-l 0 --no-huge -m 256 --no-pci --no-telemetry "
		 "--log-level=warning --file-prefix=twk%d "
		 "--vdev=net_memif0,role=server,socket=/run/twk%d.sock "
		 "--vdev=net_memif1,role=client,socket=/run/twk%d.sock",
		 pid, pid, pid);
	snprintf(p->str[i][1], sizeof(p->str[i][1]), "net_memif%u", i);
	snprintf(p->str[i][2], sizeof(p->str[i][2]), "10.78.0.%u", i + 1);
	o->eal_args = p->str[i][0];
	o->port = p->str[i][1];
	o->local_ip = p->str[i][2];
	o->mbufs = 4095; /* two ports' pools in -m 256 */
	o->ext_mbufs = 2047;
	if (p->k.max_queued)
		o->max_queued = p->k.max_queued;
	if (p->k.dead_ns)
		o->dead_ns = p->k.dead_ns;
	return o;
}

static void dpdk_fini(struct pair *p)
{
	(void)p;
	tw_dpdk_eal_cleanup();
	/* rte_eal_cleanup leaves the run directory. */
	hn_sh("rm -rf '/var/run/dpdk/twk%d'", (int)getpid());
}

static const struct provider providers[] = {
	{TW_TRANSPORT_FAKE, fake_prepare, fake_opts, fake_fini, NULL, 0, false,
	 NULL},
	{TW_TRANSPORT_URING, NULL, uring_opts, NULL, NULL, 0, false, NULL},
	/* Before the layer above trusts a connection, frames travel on its
	 * socket; after, through the rings. */
	{TW_TRANSPORT_SHM, NULL, shm_opts, NULL, NULL, 0, false, "shm-socket"},
	{TW_TRANSPORT_SHM, NULL, shm_opts, NULL, NULL, 0, true, "shm-rings"},
	{TW_TRANSPORT_SHM, NULL, shm_cma_opts, NULL, NULL, 0, true, "shm-cma"},
	/* memif (DPDK 22.11) handles the peer's disconnect on its control
	 * thread, unsynchronised with a close of the same port on ours:
	 * stopping the second node at once raced it (a double rte_free in
	 * memif's disconnect, about one ASan run in three). */
	{TW_TRANSPORT_DPDK, dpdk_prepare, dpdk_opts, dpdk_fini,
	 "rte_eal_init failed", 100, false, NULL},
};
#define NPROV (sizeof(providers) / sizeof(providers[0]))

static struct criterion_test_params provider_params(void)
{
	static int ix[NPROV];
	for (size_t i = 0; i < NPROV; i++)
		ix[i] = (int)i;
	return cr_make_param_array(int, ix, NPROV);
}

/* A test run once per provider; *ix is its index in providers. */
#define CONFORMANCE(name)                                                      \
	ParameterizedTestParameters(conformance, name)                         \
	{                                                                      \
		return provider_params();                                      \
	}                                                                      \
	ParameterizedTest(int *ix, conformance, name, .timeout = 90)

/* ------------------------------------------------------------------ */
/* Upcalls                                                             */

static bool hdr_eq(const tw_frame_hdr *a, const tw_frame_hdr *b)
{
	return a->version == b->version && a->type == b->type &&
	       a->flags == b->flags && a->req_id == b->req_id &&
	       a->src == b->src && a->dst == b->dst &&
	       a->timeout_ms == b->timeout_ms &&
	       a->payload_len == b->payload_len &&
	       a->seg_count == b->seg_count && a->total_len == b->total_len;
}

/* The frame is the one due next on cs, whole and exact, where the
 * contract puts it, and h is its header. */
static void check_frame(struct end *e, struct cstate *cs, const tw_frame_hdr *h,
			const tw_buf *b, size_t off, size_t len)
{
	const uint8_t *f = (const uint8_t *)b->data + off;
	if (off > b->size || len > b->size - off) {
		bad(e, "frame [%zu, +%zu) outside its buffer of %zu", off, len,
		    b->size);
		return;
	}
	if (off % 64 != 0 || ((uintptr_t)f & 63) != 0)
		bad(e, "frame at offset %zu (address %p): not 64-byte aligned",
		    off, (const void *)f);
	if (len < TW_FRAME_HDR_SIZE) {
		bad(e, "frame of %zu bytes: shorter than a header", len);
		return;
	}
	tw_frame_hdr d;
	tw_status st = tw_frame_hdr_decode(f, &e->t->limits, &d);
	if (st != TW_OK) {
		bad(e, "a frame handed up does not decode: %s", tw_errmsg(st));
		return;
	}
	if (!hdr_eq(&d, h))
		bad(e,
		    "on_frame's header is not the frame's (req_id %lu vs "
		    "%lu, total_len %lu vs %lu)",
		    (unsigned long)h->req_id, (unsigned long)d.req_id,
		    (unsigned long)h->total_len, (unsigned long)d.total_len);
	if (h->total_len != len)
		bad(e, "h->total_len %lu != len %zu",
		    (unsigned long)h->total_len, len);
	if (d.req_id != cs->next_rx)
		bad(e, "frame %lu arrived where %lu was due",
		    (unsigned long)d.req_id, (unsigned long)cs->next_rx);
	cs->next_rx = d.req_id + 1;
	struct layout l;
	e->p->layout(d.req_id, &l);
	uint64_t want = layout_len(&l);
	if (want != len) {
		bad(e, "frame %lu: %zu bytes, %lu were sent",
		    (unsigned long)d.req_id, len, (unsigned long)want);
		return;
	}
	if (d.seg_count > 0 &&
	    (st = tw_frame_check_segments(f, len, &d, NULL)) != TW_OK)
		bad(e, "frame %lu: segments: %s", (unsigned long)d.req_id,
		    tw_errmsg(st));
	uint8_t *x = malloc(len);
	if (x == NULL) {
		bad(e, "no memory to check a frame of %zu bytes", len);
		return;
	}
	frame_fill(x, len, d.req_id, 2 - e->idx, e->idx + 1, &l);
	if (memcmp(x, f, len) != 0) {
		size_t k = 0;
		while (x[k] == f[k])
			k++;
		bad(e, "frame %lu (%zu bytes): byte %zu is %02x, %02x was sent",
		    (unsigned long)d.req_id, len, k, f[k], x[k]);
	}
	free(x);
}

static void on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h, tw_buf *b,
		     size_t off, size_t len)
{
	struct end *e = ctx;
	struct cstate *cs = c->ctx;
	if (e->in_op != NULL)
		bad(e, "on_frame inside %s()", e->in_op);
	if (cs == NULL || cs->ups == 0) {
		bad(e, "a frame on a connection not announced (on_conn TW_OK)");
		return;
	}
	if (cs->closes > 0)
		bad(e, "a frame after its connection's close upcall");
	cs->frames++;
	check_frame(e, cs, h, b, off, len);
	if (!e->keep)
		return;
	if (e->nkept == e->capkept) {
		e->capkept = e->capkept ? 2 * e->capkept : 64;
		struct kept *k = realloc(e->kept, e->capkept * sizeof(*k));
		if (k == NULL) {
			bad(e, "no memory to keep a frame");
			return;
		}
		e->kept = k;
	}
	/* The callee's own reference: the contract lets it keep buf. */
	e->kept[e->nkept++] = (struct kept){tw_buf_retain(b), off, len,
					    h->req_id};
}

static void on_conn(void *ctx, tw_conn *c, tw_status st)
{
	struct end *e = ctx;
	if (e->in_op != NULL)
		bad(e, "on_conn(%s) inside %s()", tw_status_name(st), e->in_op);
	struct cstate *cs = c->ctx;
	if (cs == NULL) { /* accepted */
		cs = cs_new(e);
		if (cs == NULL)
			return;
		c->ctx = cs;
		cs->c = c;
	}
	if (cs->closes > 0) {
		bad(e, "on_conn(%s) after the close upcall",
		    tw_status_name(st));
		return;
	}
	if (st == TW_OK) {
		if (cs->ups++ > 0)
			bad(e, "on_conn(TW_OK) twice for one connection");
		if (e->p->pv->trust) {
			e->in_op = "trusted";
			tw_transport_trusted(e->t, c);
			e->in_op = NULL;
		}
		return;
	}
	cs->closes++;
	cs->close_st = st;
	cs->dones_at_close = cs->dones;
}

static struct sreq *req_new(struct pair *p, struct cstate *cs);
static tw_status xsend(struct pair *p, struct sreq *q);

static bool on_refused(void *ctx, tw_conn *c, const tw_frame_hdr *h,
		       tw_status st)
{
	struct end *e = ctx;
	struct cstate *cs = c->ctx;
	if (e->in_op != NULL)
		bad(e, "on_refused inside %s()", e->in_op);
	if (cs == NULL || cs->ups == 0 || cs->closes > 0) {
		bad(e, "on_refused on a connection not up");
		return false;
	}
	if (st != TW_EVERSION && st != TW_EOVERFLOW)
		bad(e, "on_refused with %s", tw_status_name(st));
	e->refused++;
	e->refused_st = st;
	e->refused_req = h->req_id;
	if (e->answer && xsend(e->p, req_new(e->p, cs)) != TW_OK)
		bad(e, "on_refused could not answer");
	if (e->skip && st == TW_EOVERFLOW) {
		cs->next_rx = h->req_id + 1; /* the frame after it is due */
		return true;
	}
	return false;
}

static void on_done(struct tw_send_req *r, tw_status st)
{
	struct sreq *q = container_of(r, struct sreq, r);
	struct end *e = q->cs->e;
	if (e->in_op != NULL && strcmp(e->in_op, "close") != 0)
		bad(e, "done inside %s()", e->in_op);
	if (!q->accepted)
		bad(e, "done for request %lu, which send() refused",
		    (unsigned long)q->id);
	if (q->ndone++ > 0)
		bad(e, "done twice for request %lu", (unsigned long)q->id);
	if (q->cs->closes > 0)
		bad(e,
		    "done for request %lu after its connection's close "
		    "upcall",
		    (unsigned long)q->id);
	q->st = st;
	q->cs->dones++;
}

/* ------------------------------------------------------------------ */
/* A pair of nodes                                                      */

static void layout_small(uint64_t id, struct layout *l)
{
	*l = (struct layout){.payload = (uint32_t)(16 + id % 50)};
}

static struct pair *pair_up(int ix, const struct knobs *k, layout_fn layout)
{
	struct pair *p = calloc(1, sizeof(*p));
	cr_assert_not_null(p);
	p->pv = &providers[ix];
	p->k = *k;
	p->layout = layout ? layout : layout_small;
	const char *why = p->pv->prepare ? p->pv->prepare() : NULL;
	if (why != NULL)
		cr_skip_test("[%s] cannot run here: %s", PLABEL(p), why);
	p->tp = tw_transport_provider_find(p->pv->name);
	PCHECK(p, p->tp != NULL, "no provider by that name");
	for (uint32_t i = 0; i < 2; i++) {
		struct end *e = &p->e[i];
		e->p = p;
		e->idx = i;
		const void *o = p->pv->opts(p, i);
		tw_status st = p->tp->check(o, 1);
		PCHECK(p, st == TW_OK, "check: %s", tw_errmsg(st));
		struct tw_transport_group g = {
			.nloops = 1, .rank = i, .world_size = 2};
		st = p->tp->start(o, &g, &e->env);
		const char *msg = tw_errmsg(st);
		if (st != TW_OK && p->pv->start_skip != NULL &&
		    strstr(msg, p->pv->start_skip) != NULL)
			cr_skip_test("[%s] cannot start here: %s", PLABEL(p),
				     msg);
		PCHECK(p, st == TW_OK, "start node %u: %s", i, msg);
		/* start keeps neither the caller's struct nor its strings. */
		memset(&p->o[i], 0x5a, sizeof(p->o[i]));
		memset(p->str[i], 0x5a, sizeof(p->str[i]));
		struct tw_loop_opts lo;
		tw_loop_opts_init(&lo, sizeof(lo));
		lo.name = i ? "conf-1" : "conf-0";
		PCHECK(p, tw_loop_create(&lo, &e->l) == TW_OK, "loop");
		struct tw_transport_cbs cbs = {.ctx = e,
					       .on_frame = on_frame,
					       .on_conn = on_conn,
					       .on_refused = on_refused};
		st = p->tp->create(e->env, 0, e->l, &cbs, &e->t);
		PCHECK(p, st == TW_OK, "create node %u: %s", i, tw_errmsg(st));
		st = p->tp->listen_addr(e->env, 0, e->url, sizeof(e->url));
		PCHECK(p, st == TW_OK, "listen_addr node %u: %s", i,
		       tw_errmsg(st));
		st = e->t->ops->listen(e->t, e->url, e->bound,
				       sizeof(e->bound));
		PCHECK(p, st == TW_OK, "listen on %s: %s", e->url,
		       tw_status_name(st));
	}
	return p;
}

static int pair_poll(struct pair *p)
{
	int w = 0;
	for (int i = 0; i < 2; i++)
		w += tw_loop_poll_once(p->e[i].l);
	if (w == 0)
		sched_yield(); /* other pollers share the 2 cores */
	return w;
}

/* Poll both loops until cond holds (true) or LIVE_MS pass (false). */
#define PUMP(p, cond)                                                          \
	({                                                                     \
		uint64_t dl_ = now_ns() + LIVE_MS * MS;                        \
		while (!(cond) && now_ns() < dl_)                              \
			pair_poll(p);                                          \
		(bool)(cond);                                                  \
	})

/* A while longer: whatever would still fire (twice, late) fires now. */
static void settle(struct pair *p)
{
	uint64_t dl = now_ns() + 30 * MS;
	while (now_ns() < dl)
		pair_poll(p);
}

static void pair_ok(struct pair *p)
{
	for (int i = 0; i < 2; i++)
		PCHECK(p, p->e[i].nbad == 0,
		       "node %d: %lu contract violations; the first: %s", i,
		       (unsigned long)p->e[i].nbad, p->e[i].why);
}

/* Connect node 1 to node 0's bound address: its connection, or NULL when
 * connect() refused (*st says how). */
static struct cstate *pair_connect(struct pair *p, const char *addr,
				   tw_status *st_out)
{
	struct end *e = &p->e[1];
	tw_conn *c = NULL;
	e->in_op = "connect";
	tw_status st = e->t->ops->connect(e->t, addr ? addr : p->e[0].bound,
					  &c);
	e->in_op = NULL;
	if (st_out != NULL)
		*st_out = st;
	if (st != TW_OK)
		return NULL;
	PCHECK(p, c != NULL && c->ctx == NULL, "connect's connection");
	struct cstate *cs = cs_new(e);
	PCHECK(p, cs != NULL, "connections");
	c->ctx = cs;
	cs->c = c;
	return cs;
}

/* The connection of node i last accepted or connected. */
static struct cstate *last_cs(struct pair *p, int i)
{
	struct end *e = &p->e[i];
	return e->ncs > 0 ? &e->cs[e->ncs - 1] : NULL;
}

/* Node 1 connects; both ends announced. Returns {node 0's, node 1's}. */
static void pair_connected(struct pair *p, struct cstate **srv,
			   struct cstate **cli)
{
	int before = p->e[0].ncs;
	struct cstate *c = pair_connect(p, NULL, NULL);
	PCHECK(p, c != NULL, "connect to %s", p->e[0].bound);
	PCHECK(p,
	       PUMP(p, c->ups == 1 && p->e[0].ncs == before + 1 &&
			       last_cs(p, 0)->ups == 1),
	       "connection not up within %d ms (client up %d)", LIVE_MS,
	       c->ups);
	*cli = c;
	*srv = last_cs(p, 0);
}

/* A request on cs, kept in p for pair_down's count. */
static struct sreq *req_alloc(struct pair *p, struct cstate *cs)
{
	struct sreq *q = calloc(1, sizeof(*q));
	PCHECK(p, q != NULL, "memory");
	if (p->nreqs == p->capreqs) {
		p->capreqs = p->capreqs ? 2 * p->capreqs : 256;
		p->reqs = realloc(p->reqs, p->capreqs * sizeof(*p->reqs));
		PCHECK(p, p->reqs != NULL, "memory");
	}
	p->reqs[p->nreqs++] = q;
	q->cs = cs;
	return q;
}

/* A request of the next frame on cs. */
static struct sreq *req_new(struct pair *p, struct cstate *cs)
{
	struct sreq *q = req_alloc(p, cs);
	q->id = cs->next_tx++;
	struct layout l;
	p->layout(q->id, &l);
	uint64_t len = layout_len(&l);
	q->mem = aligned_alloc(64, align64(len));
	PCHECK(p, q->mem != NULL, "memory for %lu bytes", (unsigned long)len);
	uint32_t from = cs->e->idx;
	frame_fill(q->mem, len, q->id, from + 1, 2 - from, &l);
	/* Several iovecs as the RPC layer gives them (header, then payload,
	 * then each segment), or the whole frame in one. */
	uint32_t n = 0;
	uint64_t cut[4], ncut = 0;
	if (q->id % 4 != 0 && len > TW_FRAME_HDR_SIZE)
		cut[ncut++] = TW_FRAME_HDR_SIZE;
	uint64_t at = tw_frame_head_len(l.nseg, l.payload);
	for (uint32_t i = 0; i < l.nseg; i++) {
		at = i ? align64(at) : at;
		if (q->id % 4 != 0 && at > cut[ncut - 1] && at < len)
			cut[ncut++] = at;
		at += l.seg[i];
	}
	uint64_t prev = 0;
	for (uint64_t i = 0; i <= ncut; i++) {
		uint64_t end = i < ncut ? cut[i] : len;
		q->iov[n++] = (struct iovec){q->mem + prev, end - prev};
		prev = end;
	}
	q->r.iov = q->iov;
	q->r.niov = n;
	q->r.len = len;
	q->r.type = 1 + (uint32_t)(q->id % 13);
	q->r.done = on_done;
	return q;
}

/* A request of len raw bytes (not necessarily a frame). */
static struct sreq *req_raw(struct pair *p, struct cstate *cs,
			    const void *bytes, size_t len)
{
	struct sreq *q = req_alloc(p, cs);
	q->id = UINT64_MAX;
	q->mem = aligned_alloc(64, align64(len));
	PCHECK(p, q->mem != NULL, "memory");
	memcpy(q->mem, bytes, len);
	q->iov[0] = (struct iovec){q->mem, len};
	q->r.iov = q->iov;
	q->r.niov = 1;
	q->r.len = len;
	q->r.type = len > 5 ? q->mem[5] : 0;
	q->r.done = on_done;
	return q;
}

static tw_status xsend(struct pair *p, struct sreq *q)
{
	struct end *e = q->cs->e;
	PCHECK(p, q->cs->closes == 0, "the test sent on a closed connection");
	e->in_op = "send";
	tw_status st = tw_transport_send(e->t, q->cs->c, &q->r);
	e->in_op = NULL;
	if (st == TW_OK) {
		PCHECK(p, !q->accepted, "the test sent a request twice");
		q->accepted = true;
		q->cs->accepted++;
	}
	return st;
}

static void xclose(struct pair *p, struct cstate *cs)
{
	struct end *e = cs->e;
	PCHECK(p, cs->closes == 0, "the test closed a closed connection");
	e->in_op = "close";
	e->t->ops->close(e->t, cs->c);
	e->in_op = NULL;
}

/* cs ended exactly once, after the done of every request it took. */
static void cs_check_ended(struct pair *p, const struct cstate *cs,
			   const char *what)
{
	PCHECK(p, cs->closes == 1, "%s: %d close upcalls", what, cs->closes);
	PCHECK(p, cs->dones == cs->accepted, "%s: %lu dones for %lu requests",
	       what, (unsigned long)cs->dones, (unsigned long)cs->accepted);
	PCHECK(p, cs->dones_at_close == cs->accepted,
	       "%s: %lu of %lu dones before the close upcall", what,
	       (unsigned long)cs->dones_at_close, (unsigned long)cs->accepted);
}

/* destroy() ends every connection of node i, each once, after its
 * requests' dones: nothing can come later, the transport is gone. */
static void end_destroy(struct pair *p, int i)
{
	struct end *e = &p->e[i];
	if (e->t == NULL)
		return;
	e->t->ops->destroy(e->t);
	e->t = NULL;
	for (int k = 0; k < e->ncs; k++) {
		char what[64];
		snprintf(what, sizeof(what),
			 "node %d connection %d after "
			 "destroy",
			 i, k);
		cs_check_ended(p, &e->cs[k], what);
	}
}

static void pair_down(struct pair *p)
{
	end_destroy(p, 1);
	end_destroy(p, 0);
	for (int i = 0; i < 2; i++) {
		tw_loop_destroy(p->e[i].l);
		p->tp->stop(p->e[i].env);
		if (i == 0 && p->pv->stop_gap_ms > 0)
			usleep(1000 * p->pv->stop_gap_ms);
	}
	if (p->pv->fini != NULL)
		p->pv->fini(p);
	pair_ok(p);
	for (size_t i = 0; i < p->nreqs; i++) {
		struct sreq *q = p->reqs[i];
		PCHECK(p, q->ndone == (q->accepted ? 1 : 0),
		       "request %lu (%s): %d dones", (unsigned long)q->id,
		       q->accepted ? "accepted" : "refused", q->ndone);
		/* done: TW_OK, or the error that ended the connection. */
		PCHECK(p, q->st == TW_OK || q->st == q->cs->close_st,
		       "request %lu: done(%s) on a connection that ended with "
		       "%s",
		       (unsigned long)q->id, tw_status_name(q->st),
		       tw_status_name(q->cs->close_st));
		free(q->mem);
		free(q);
	}
	free(p->reqs);
	free(p);
}

/* ------------------------------------------------------------------ */
/* The contract                                                        */

#define PEXPECT(p, cond, fmt, ...)                                             \
	cr_expect(cond, "[%s] " fmt, PLABEL(p), ##__VA_ARGS__)

/* Mixed sizes: bare headers, small payloads, one or two 64-byte aligned
 * segments (tensors), around 4 KiB and 64 KiB. */
static void layout_mixed(uint64_t id, struct layout *l)
{
	*l = (struct layout){0};
	switch (id % 8) {
	case 0: /* a bare header */
		break;
	case 1:
		l->payload = (uint32_t)(1 + id % 63);
		break;
	case 2:
		l->payload = (uint32_t)(100 + id * 37 % 4000);
		break;
	case 3:
		l->payload = 16;
		l->nseg = 1;
		l->seg[0] = 1 + id % 5000;
		break;
	case 4:
		l->payload = 40;
		l->nseg = 2;
		l->seg[0] = 4096;
		l->seg[1] = 60000 + id;
		break;
	case 5:
		l->payload = (uint32_t)(8000 + id % 100);
		break;
	case 6:
		l->payload = 3;
		l->nseg = 1;
		l->seg[0] = (64u << 10) + 1;
		break;
	default:
		l->payload = 300;
		break;
	}
}

/* N frames of mixed sizes back to back on one connection, both ways at
 * once, half of one side's queued before the connection is up: each
 * arrives once, in order, byte-exact, aligned, with its own header. */
CONFORMANCE(order_and_integrity_both_ways)
{
	enum { N = 240 };
	struct knobs k = {0};
	struct pair *p = pair_up(*ix, &k, layout_mixed);
	tw_status st;
	struct cstate *cli = pair_connect(p, NULL, &st);
	PCHECK(p, cli != NULL, "connect: %s", tw_status_name(st));
	/* connect(): "sends may be queued at once". */
	for (int i = 0; i < N / 2; i++)
		PCHECK(p, xsend(p, req_new(p, cli)) == TW_OK,
		       "send %d, before the connection is up", i);
	PCHECK(p,
	       PUMP(p, cli->ups == 1 && p->e[0].ncs == 1 &&
			       p->e[0].cs[0].ups == 1),
	       "connection not up (client %d, server conns %d)", cli->ups,
	       p->e[0].ncs);
	struct cstate *srv = &p->e[0].cs[0];
	for (int i = 0; i < N; i++) {
		PCHECK(p, xsend(p, req_new(p, srv)) == TW_OK, "server send %d",
		       i);
		if (i < N / 2)
			PCHECK(p, xsend(p, req_new(p, cli)) == TW_OK,
			       "client send %d", N / 2 + i);
	}
	PCHECK(p,
	       PUMP(p, srv->frames == N && cli->frames == N &&
			       srv->dones == N && cli->dones == N),
	       "frames %lu/%lu, dones %lu/%lu of %d",
	       (unsigned long)srv->frames, (unsigned long)cli->frames,
	       (unsigned long)srv->dones, (unsigned long)cli->dones, N);
	settle(p);
	pair_ok(p);
	for (int i = 0; i < 2; i++) {
		struct cstate *cs = i ? cli : srv;
		PCHECK(p, cs->frames == N && cs->next_rx == N,
		       "node %d: %lu frames", i, (unsigned long)cs->frames);
		PCHECK(p, cs->dones == N, "node %d: %lu dones", i,
		       (unsigned long)cs->dones);
		PCHECK(p, cs->ups == 1 && cs->closes == 0,
		       "node %d: %d ups, %d closes", i, cs->ups, cs->closes);
	}
	for (size_t i = 0; i < p->nreqs; i++)
		PCHECK(p, p->reqs[i]->ndone == 1 && p->reqs[i]->st == TW_OK,
		       "request %zu: %d dones, %s", i, p->reqs[i]->ndone,
		       tw_status_name(p->reqs[i]->st));
	pair_down(p);
}

/* Total lengths around every boundary a transport may have (header,
 * cache line, page, 64 KiB) up to exactly the receiver's limit. */
static const uint64_t SIZES[] = {
	48,    49,   63,    64,    65,    4095,
	4096,  4097, 65535, 65536, 65537, (UINT64_C(1) << 20) + 7,
	LIMIT,
};
#define NSIZES (sizeof(SIZES) / sizeof(SIZES[0]))

static void layout_sizes(uint64_t id, struct layout *l)
{
	*l = (struct layout){
		.payload = (uint32_t)(SIZES[id % NSIZES] - TW_FRAME_HDR_SIZE)};
}

CONFORMANCE(sizes_from_a_bare_header_to_the_limit)
{
	struct knobs k = {0};
	struct pair *p = pair_up(*ix, &k, layout_sizes);
	for (int i = 0; i < 2; i++)
		p->e[i].t->limits.max_total = LIMIT;
	struct cstate *srv, *cli;
	pair_connected(p, &srv, &cli);
	for (size_t i = 0; i < NSIZES; i++) {
		PCHECK(p, xsend(p, req_new(p, cli)) == TW_OK, "client send %zu",
		       i);
		PCHECK(p, xsend(p, req_new(p, srv)) == TW_OK, "server send %zu",
		       i);
	}
	PCHECK(p,
	       PUMP(p, srv->frames == NSIZES && cli->frames == NSIZES &&
			       srv->dones == NSIZES && cli->dones == NSIZES),
	       "frames %lu/%lu, dones %lu/%lu of %zu",
	       (unsigned long)srv->frames, (unsigned long)cli->frames,
	       (unsigned long)srv->dones, (unsigned long)cli->dones, NSIZES);
	settle(p);
	pair_ok(p);
	PCHECK(p, srv->frames == NSIZES && cli->frames == NSIZES, "frames");
	PCHECK(p, srv->closes == 0 && cli->closes == 0, "a connection closed");
	for (size_t i = 0; i < p->nreqs; i++)
		PCHECK(p, p->reqs[i]->ndone == 1 && p->reqs[i]->st == TW_OK,
		       "request %zu: %d dones, %s", i, p->reqs[i]->ndone,
		       tw_status_name(p->reqs[i]->st));
	pair_down(p);
}

/* Frame 1 is one byte over the receiver's limit. */
static void layout_over(uint64_t id, struct layout *l)
{
	*l = (struct layout){
		.payload = id == 1 ? (uint32_t)(LIMIT + 1 - TW_FRAME_HDR_SIZE)
				   : (uint32_t)(16 + id)};
}

/* One byte over: never handed up, the receiver ends the connection with
 * TW_EPROTO, and the sender learns it as an error; what followed it on
 * the connection is not delivered either. */
CONFORMANCE(one_byte_over_the_limit)
{
	struct knobs k = {0};
	struct pair *p = pair_up(*ix, &k, layout_over);
	p->e[0].t->limits.max_total = LIMIT;
	struct cstate *srv, *cli;
	pair_connected(p, &srv, &cli);
	for (int i = 0; i < 3; i++)
		PCHECK(p, xsend(p, req_new(p, cli)) == TW_OK, "send %d", i);
	PCHECK(p, PUMP(p, srv->closes == 1 && cli->closes == 1),
	       "closes: receiver %d, sender %d", srv->closes, cli->closes);
	settle(p);
	pair_ok(p);
	PCHECK(p, srv->frames == 1,
	       "%lu frames handed up, want 1 (the one "
	       "before)",
	       (unsigned long)srv->frames);
	PCHECK(p, srv->close_st == TW_EPROTO, "receiver closed with %s",
	       tw_status_name(srv->close_st));
	PCHECK(p, cli->close_st != TW_OK, "sender closed with TW_OK");
	cs_check_ended(p, srv, "receiver");
	cs_check_ended(p, cli, "sender");
	pair_down(p);
}

/* Without polling, send until TW_ENOSPC: the refused request is not
 * taken; polling completes every accepted one once, never inside send();
 * then the refused one goes through, in order. */
CONFORMANCE(backpressure)
{
	struct knobs k = {.max_queued = 64};
	struct pair *p = pair_up(*ix, &k, NULL);
	struct cstate *srv, *cli;
	pair_connected(p, &srv, &cli);
	struct sreq *q;
	uint64_t n = 0;
	tw_status st;
	for (;;) {
		q = req_new(p, cli);
		st = xsend(p, q);
		if (st != TW_OK)
			break;
		n++;
		PCHECK(p, n < 100000, "no TW_ENOSPC after %lu sends",
		       (unsigned long)n);
	}
	PCHECK(p, st == TW_ENOSPC, "send refused with %s, not TW_ENOSPC",
	       tw_status_name(st));
	PCHECK(p, cli->dones == 0, "%lu dones without a poll",
	       (unsigned long)cli->dones);
	/* Refused means not taken: refused again while nothing moved. */
	PCHECK(p, xsend(p, q) == TW_ENOSPC, "the full queue took a request");
	PCHECK(p, PUMP(p, cli->dones == n && srv->frames == n),
	       "dones %lu, frames %lu of %lu", (unsigned long)cli->dones,
	       (unsigned long)srv->frames, (unsigned long)n);
	PCHECK(p, q->ndone == 0, "the refused request's done ran");
	PCHECK(p, xsend(p, q) == TW_OK, "no room after every done ran");
	PCHECK(p, PUMP(p, cli->dones == n + 1 && srv->frames == n + 1),
	       "after the retry: dones %lu, frames %lu",
	       (unsigned long)cli->dones, (unsigned long)srv->frames);
	settle(p);
	pair_ok(p);
	PCHECK(p, cli->dones == n + 1 && srv->frames == n + 1,
	       "dones %lu, frames %lu of %lu", (unsigned long)cli->dones,
	       (unsigned long)srv->frames, (unsigned long)n + 1);
	for (size_t i = 0; i < p->nreqs; i++)
		PCHECK(p, p->reqs[i]->ndone == 1 && p->reqs[i]->st == TW_OK,
		       "request %zu: %d dones, %s", i, p->reqs[i]->ndone,
		       tw_status_name(p->reqs[i]->st));
	pair_down(p);
}

/* close() with sends queued, three ways: the connecting end with nothing
 * sent yet; the connecting end after one turn of its loop (some bytes
 * left); the accepting end. Every accepted request gets one done, all
 * before on_conn(c, TW_ESHUTDOWN), which never comes from inside
 * close(); a send after close() is refused; the peer's end closes with an
 * error, having received a prefix of the frames, in order and exact. */
CONFORMANCE(close_with_sends_pending)
{
	enum { K = 24 };
	static const char *const how[] = {"connecting end, nothing sent",
					  "connecting end, after a poll",
					  "accepting end"};
	struct knobs k = {0};
	struct pair *p = pair_up(*ix, &k, layout_mixed);
	for (int round = 0; round < 3; round++) {
		struct cstate *srv, *cli;
		pair_connected(p, &srv, &cli);
		struct cstate *me = round < 2 ? cli : srv;
		struct cstate *peer = round < 2 ? srv : cli;
		for (int i = 0; i < K; i++)
			PCHECK(p, xsend(p, req_new(p, me)) == TW_OK,
			       "%s: send %d", how[round], i);
		if (round == 1)
			tw_loop_poll_once(me->e->l);
		xclose(p, me);
		PCHECK(p, me->closes == 0, "%s: on_conn inside close()",
		       how[round]);
		struct sreq *late = req_new(p, me);
		tw_status st = xsend(p, late);
		PCHECK(p, st == TW_EUNREACHABLE,
		       "%s: send after close() returned %s", how[round],
		       tw_status_name(st));
		PCHECK(p, PUMP(p, me->closes == 1 && peer->closes == 1),
		       "%s: closes %d, peer %d", how[round], me->closes,
		       peer->closes);
		PCHECK(p, me->close_st == TW_ESHUTDOWN, "%s: closed with %s",
		       how[round], tw_status_name(me->close_st));
		cs_check_ended(p, me, how[round]);
		PCHECK(p, peer->close_st != TW_OK, "%s: peer closed with TW_OK",
		       how[round]);
		cs_check_ended(p, peer, "its peer");
		PCHECK(p, peer->frames <= K, "%s: peer got %lu frames",
		       how[round], (unsigned long)peer->frames);
		pair_ok(p);
	}
	settle(p);
	pair_ok(p);
	pair_down(p);
}

/* destroy() with connections open both ways and sends queued on every
 * end: the destroyed node ends each connection once (TW_ESHUTDOWN) after
 * the done of each of its requests, before destroy() returns; the peer's
 * ends close with an error the same way; then stop(). */
CONFORMANCE(destroy_with_connections_open)
{
	enum { K = 8 };
	struct knobs k = {0};
	struct pair *p = pair_up(*ix, &k, layout_mixed);
	struct cstate *s[2], *c[2];
	for (int j = 0; j < 2; j++)
		pair_connected(p, &s[j], &c[j]);
	for (int j = 0; j < 2; j++)
		for (int i = 0; i < K; i++) {
			PCHECK(p, xsend(p, req_new(p, s[j])) == TW_OK, "send");
			PCHECK(p, xsend(p, req_new(p, c[j])) == TW_OK, "send");
		}
	pair_poll(p);               /* some of it on its way, */
	for (int j = 0; j < 2; j++) /* more queued behind */
		for (int i = 0; i < K; i++) {
			PCHECK(p, xsend(p, req_new(p, s[j])) == TW_OK, "send");
			PCHECK(p, xsend(p, req_new(p, c[j])) == TW_OK, "send");
		}
	end_destroy(p, 0);
	for (int j = 0; j < 2; j++)
		PCHECK(p, s[j]->close_st == TW_ESHUTDOWN,
		       "destroyed node's connection %d closed with %s", j,
		       tw_status_name(s[j]->close_st));
	PCHECK(p, PUMP(p, c[0]->closes == 1 && c[1]->closes == 1),
	       "the peer's connections: %d, %d closes", c[0]->closes,
	       c[1]->closes);
	for (int j = 0; j < 2; j++) {
		PCHECK(p, c[j]->close_st != TW_OK, "peer closed with TW_OK");
		cs_check_ended(p, c[j], "the peer's connection");
	}
	settle(p);
	pair_ok(p);
	pair_down(p);
}

/* 64 bytes: a 48-byte header and 16 of payload, then spoilt. */
static void good_header(uint8_t *f, tw_frame_hdr *h)
{
	*h = (tw_frame_hdr){.version = TW_FRAME_VERSION,
			    .type = 1,
			    .req_id = 77,
			    .payload_len = 16,
			    .total_len = 64};
	memset(f, 0, 64);
}

static void bad_magic(uint8_t *f)
{
	tw_frame_hdr h;
	good_header(f, &h);
	tw_frame_hdr_encode(f, &h);
	f[0] ^= 0xff; /* "TWRP" no more */
}

static void bad_total_long(uint8_t *f)
{
	tw_frame_hdr h;
	good_header(f, &h);
	h.total_len = 64 + 8; /* no segments: must be header + payload */
	tw_frame_hdr_encode(f, &h);
}

static void bad_total_short(uint8_t *f)
{
	tw_frame_hdr h;
	good_header(f, &h);
	h.seg_count = 2; /* a table and a pad that 64 bytes cannot hold */
	tw_frame_hdr_encode(f, &h);
}

static void bad_version(uint8_t *f)
{
	tw_frame_hdr h;
	good_header(f, &h);
	h.version = TW_FRAME_VERSION + 1;
	tw_frame_hdr_encode(f, &h);
}

/*
 * A frame whose header is not valid, between two good frames on a fresh
 * connection each time: the first arrives, the bad one never reaches
 * on_frame and ends the receiver's connection with the decoder's status,
 * the one behind it is not delivered, the sender's end closes with an
 * error.
 */
CONFORMANCE(bad_header_closes_the_connection)
{
	static const struct {
		const char *what;
		void (*make)(uint8_t *f);
		tw_status want;
	} cases[] = {
		{"bad magic", bad_magic, TW_EPROTO},
		{"total_len longer than its payload", bad_total_long,
		 TW_EPROTO},
		{"total_len shorter than its segment table", bad_total_short,
		 TW_EPROTO},
		{"newer version", bad_version, TW_EVERSION},
	};
	struct knobs k = {0};
	struct pair *p = pair_up(*ix, &k, NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *what = cases[i].what;
		struct cstate *srv, *cli;
		pair_connected(p, &srv, &cli);
		uint8_t f[64];
		cases[i].make(f);
		PCHECK(p, xsend(p, req_new(p, cli)) == TW_OK, "%s: send", what);
		PCHECK(p, xsend(p, req_raw(p, cli, f, sizeof(f))) == TW_OK,
		       "%s: send", what);
		PCHECK(p, xsend(p, req_new(p, cli)) == TW_OK, "%s: send", what);
		PCHECK(p, PUMP(p, srv->closes == 1 && cli->closes == 1),
		       "%s: closes: receiver %d, sender %d", what, srv->closes,
		       cli->closes);
		PCHECK(p, srv->frames == 1, "%s: %lu frames handed up, want 1",
		       what, (unsigned long)srv->frames);
		PEXPECT(p, srv->close_st == cases[i].want,
			"%s: the receiver closed with %s, want %s", what,
			tw_status_name(srv->close_st),
			tw_status_name(cases[i].want));
		PCHECK(p, cli->close_st != TW_OK,
		       "%s: sender closed with TW_OK", what);
		cs_check_ended(p, srv, what);
		cs_check_ended(p, cli, what);
		pair_ok(p);
	}
	settle(p);
	pair_ok(p);
	pair_down(p);
}

/* Connecting where nobody listens (node 0's address once its transport
 * is gone): connect() refuses, or the connection ends with an error in
 * bounded time (DPDK: its dead timeout, made short), with the done of
 * every send queued on it first, and never announced as up. */
CONFORMANCE(connect_to_nobody)
{
	struct knobs k = {.dead_ns = 300 * MS};
	struct pair *p = pair_up(*ix, &k, NULL);
	char addr[128];
	snprintf(addr, sizeof(addr), "%s", p->e[0].bound);
	end_destroy(p, 0);
	tw_status st;
	struct cstate *cs = pair_connect(p, addr, &st);
	if (cs == NULL) {
		settle(p);
		PCHECK(p, p->e[1].ncs == 0, "an upcall for a refused connect");
	} else {
		for (int i = 0; i < 2; i++)
			PCHECK(p, xsend(p, req_new(p, cs)) == TW_OK, "send %d",
			       i);
		PCHECK(p, PUMP(p, cs->closes == 1),
		       "a connection to nobody still open after %d ms",
		       LIVE_MS);
		settle(p);
		PCHECK(p, cs->ups == 0, "connected to nobody");
		PCHECK(p, cs->close_st != TW_OK, "closed with TW_OK");
		cs_check_ended(p, cs, "connection to nobody");
		for (size_t i = 0; i < p->nreqs; i++)
			PCHECK(p, p->reqs[i]->st != TW_OK,
			       "a send to nobody completed with TW_OK");
	}
	pair_ok(p);
	pair_down(p);
}

/* The receiver keeps a reference on every frame's buffer: each stays
 * intact while later frames arrive (no buffer is reused under a holder),
 * and the transport keeps working while many are held. */
CONFORMANCE(retained_buffers_stay_intact)
{
	enum { N = 200 };
	struct knobs k = {0};
	struct pair *p = pair_up(*ix, &k, layout_mixed);
	struct cstate *srv, *cli;
	pair_connected(p, &srv, &cli);
	struct end *e = &p->e[0];
	e->keep = true;
	for (int i = 0; i < N; i++)
		PCHECK(p, xsend(p, req_new(p, cli)) == TW_OK, "send %d", i);
	PCHECK(p, PUMP(p, srv->frames == N && cli->dones == N),
	       "frames %lu, dones %lu of %d", (unsigned long)srv->frames,
	       (unsigned long)cli->dones, N);
	settle(p);
	pair_ok(p);
	PCHECK(p, e->nkept == N, "%zu frames kept", e->nkept);
	for (size_t i = 0; i < e->nkept; i++) {
		const struct kept *kp = &e->kept[i];
		struct layout l;
		p->layout(kp->id, &l);
		uint8_t *x = malloc(kp->len);
		PCHECK(p, x != NULL, "memory");
		frame_fill(x, kp->len, kp->id, 2, 1, &l);
		PCHECK(p,
		       memcmp(x, (const uint8_t *)kp->b->data + kp->off,
			      kp->len) == 0,
		       "kept frame %lu changed under its holder",
		       (unsigned long)kp->id);
		free(x);
	}
	/* Buffers go back before destroy (uring.h, dpdk.h). */
	for (size_t i = 0; i < e->nkept; i++)
		tw_buf_release(e->kept[i].b);
	free(e->kept);
	e->kept = NULL;
	e->nkept = 0;
	e->keep = false;
	pair_down(p);
}

/* 4 KiB frames: a paused receiver's socket buffers fill in a few
 * thousand of them. */
static void layout_4k(uint64_t id, struct layout *l)
{
	*l = (struct layout){.payload = (uint32_t)(4000 + id % 64)};
}

/* Poll until cli->dones stops moving for a while: how a sender learns
 * that its peer takes nothing more. */
static void pump_until_still(struct pair *p, const struct cstate *cli)
{
	uint64_t last = cli->dones;
	uint64_t still_since = now_ns();
	uint64_t dl = now_ns() + LIVE_MS * MS;
	while (now_ns() < dl && now_ns() - still_since < 100 * MS) {
		pair_poll(p);
		if (cli->dones != last) {
			last = cli->dones;
			still_since = now_ns();
		}
	}
}

/*
 * pause: the receiver stops taking frames. The sender runs into
 * TW_ENOSPC (its queue full, nothing done any more: the transport's
 * own buffering, and TCP's, bound what left it); no frame is lost, none
 * arrives while the receiver stays paused once the sender is still; after
 * the resume every frame arrives, in order, exact.
 */
CONFORMANCE(pause_fills_the_sender_and_resume_delivers_in_order)
{
	struct knobs k = {.max_queued = 64};
	struct pair *p = pair_up(*ix, &k, layout_4k);
	struct cstate *srv, *cli;
	pair_connected(p, &srv, &cli);
	struct end *e0 = &p->e[0];
	e0->in_op = "pause";
	tw_transport_pause(e0->t, srv->c, true);
	tw_transport_pause(e0->t, srv->c, true); /* idempotent */
	e0->in_op = NULL;
	uint64_t n = 0;
	struct sreq *q = NULL;
	for (;;) {
		if (q == NULL)
			q = req_new(p, cli);
		tw_status st = xsend(p, q);
		if (st == TW_OK) {
			n++;
			q = NULL;
			PCHECK(p, n < 200000, "no TW_ENOSPC after %lu sends",
			       (unsigned long)n);
			continue;
		}
		PCHECK(p, st == TW_ENOSPC, "send refused with %s",
		       tw_status_name(st));
		uint64_t before = cli->dones;
		pump_until_still(p, cli);
		if (cli->dones == before && xsend(p, q) == TW_ENOSPC)
			break; /* full, and it stays full */
		if (q->accepted) {
			n++;
			q = NULL;
		}
	}
	uint64_t got = srv->frames;
	PCHECK(p, got < n, "all %lu frames arrived at a paused receiver",
	       (unsigned long)n);
	pump_until_still(p, cli);
	PCHECK(p, srv->frames == got,
	       "%lu frames arrived while paused and the sender stood still",
	       (unsigned long)(srv->frames - got));
	PCHECK(p, srv->closes == 0 && cli->closes == 0, "a connection closed");
	e0->in_op = "pause";
	tw_transport_pause(e0->t, srv->c, false);
	e0->in_op = NULL;
	tw_status st = TW_ENOSPC;
	PCHECK(p, PUMP(p, st == TW_OK || (st = xsend(p, q)) == TW_OK),
	       "no room after the resume: %s; %lu frames, %lu dones",
	       tw_status_name(st), (unsigned long)srv->frames,
	       (unsigned long)cli->dones);
	n++;
	PCHECK(p, PUMP(p, srv->frames == n && cli->dones == n),
	       "after the resume: %lu frames, %lu dones of %lu",
	       (unsigned long)srv->frames, (unsigned long)cli->dones,
	       (unsigned long)n);
	settle(p);
	pair_ok(p);
	PCHECK(p, srv->next_rx == n, "frames out of order");
	for (size_t i = 0; i < p->nreqs; i++)
		PCHECK(p, p->reqs[i]->ndone == 1 && p->reqs[i]->st == TW_OK,
		       "request %zu: %d dones, %s", i, p->reqs[i]->ndone,
		       tw_status_name(p->reqs[i]->st));
	pair_down(p);
}

/*
 * A frame of a newer wire version with on_refused set: the receiver is
 * asked (TW_EVERSION, the header's req_id), its answer reaches the
 * sender before the connection ends (docs/wire.md §3), the receiver's
 * end closes with TW_EVERSION, and nothing after the frame is handed up.
 */
CONFORMANCE(refused_version_is_answered_before_the_close)
{
	struct knobs k = {0};
	struct pair *p = pair_up(*ix, &k, NULL);
	p->e[0].answer = true;
	struct cstate *srv, *cli;
	pair_connected(p, &srv, &cli);
	uint8_t f[64];
	bad_version(f);
	PCHECK(p, xsend(p, req_new(p, cli)) == TW_OK, "send");
	PCHECK(p, xsend(p, req_raw(p, cli, f, sizeof(f))) == TW_OK, "send");
	PCHECK(p, xsend(p, req_new(p, cli)) == TW_OK, "send");
	PCHECK(p, PUMP(p, srv->closes == 1 && cli->closes == 1),
	       "closes: receiver %d, sender %d", srv->closes, cli->closes);
	settle(p);
	pair_ok(p);
	PCHECK(p,
	       p->e[0].refused == 1 && p->e[0].refused_st == TW_EVERSION &&
		       p->e[0].refused_req == 77,
	       "on_refused: %lu calls, %s, req_id %lu",
	       (unsigned long)p->e[0].refused,
	       tw_status_name(p->e[0].refused_st),
	       (unsigned long)p->e[0].refused_req);
	PCHECK(p, srv->frames == 1, "%lu frames handed up, want 1",
	       (unsigned long)srv->frames);
	PCHECK(p, cli->frames == 1, "the answer did not arrive (%lu frames)",
	       (unsigned long)cli->frames);
	PCHECK(p, srv->close_st == TW_EVERSION, "the receiver closed with %s",
	       tw_status_name(srv->close_st));
	cs_check_ended(p, srv, "receiver");
	cs_check_ended(p, cli, "sender");
	pair_down(p);
}

/*
 * A frame over the receiver's limit whose header is intact, with
 * on_refused answering and asking to skip it: the answer arrives, the
 * frame is dropped whole, the frames after it arrive in order, and the
 * connection stays up.
 */
CONFORMANCE(over_the_limit_is_skipped_when_asked)
{
	enum { N = 4 };
	struct knobs k = {0};
	struct pair *p = pair_up(*ix, &k, layout_over);
	p->e[0].t->limits.max_total = LIMIT;
	p->e[0].answer = true;
	p->e[0].skip = true;
	struct cstate *srv, *cli;
	pair_connected(p, &srv, &cli);
	for (int i = 0; i < N; i++)
		PCHECK(p, xsend(p, req_new(p, cli)) == TW_OK, "send %d", i);
	PCHECK(p,
	       PUMP(p, srv->frames == N - 1 && cli->frames == 1 &&
			       cli->dones == N),
	       "frames %lu (want %d), answers %lu, dones %lu",
	       (unsigned long)srv->frames, N - 1, (unsigned long)cli->frames,
	       (unsigned long)cli->dones);
	settle(p);
	pair_ok(p);
	PCHECK(p,
	       p->e[0].refused == 1 && p->e[0].refused_st == TW_EOVERFLOW &&
		       p->e[0].refused_req == 1,
	       "on_refused: %lu calls, %s, req_id %lu",
	       (unsigned long)p->e[0].refused,
	       tw_status_name(p->e[0].refused_st),
	       (unsigned long)p->e[0].refused_req);
	PCHECK(p, srv->closes == 0 && cli->closes == 0, "a connection closed");
	PCHECK(p, srv->next_rx == N, "frames after the skipped one: %lu",
	       (unsigned long)srv->next_rx);
	pair_down(p);
}

/* One test at a time: each polls two loops without sleeping, and the
 * machines have 2 cores. Then remove the DPDK run directories of test
 * processes that died before their own cleanup. */
int main(int argc, char *argv[])
{
	struct criterion_test_set *tests = criterion_initialize();
	criterion_options.jobs = 1;
	int result = 0;
	if (criterion_handle_args(argc, argv, true))
		result = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	if (geteuid() == 0)
		hn_clean_stale("", "twk");
	return result;
}
