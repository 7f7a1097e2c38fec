/* libFuzzer target for the same-host transport's ring consumer (shm_rx.c
 * through the transport's poller): everything a peer can write into the
 * shared mapping once the rings are up. Each input is a fresh connection
 * to one listening transport of ours: the target plays the connecting
 * side by hand (socket, sealed memfd, doorbells, SETUP, SWITCH, as
 * tests/unit/dataplane/test_shm.c's hostile peer), then runs the input's
 * writes into the ring it produces into (ring 0) and the control block,
 * polling the transport's loop between them, and hangs up.
 *
 * Must hold: nothing crashes or reads out of bounds (ASan, UBSan); every
 * frame delivered is one whose header decodes within the limits and whose
 * length is its header's; once the socket hangs up, the connection ends
 * within a bounded number of loop passes (a peer cannot stall it), and
 * the next input finds the transport with no connection left.
 *
 * Input: a control byte, then operations, each an opcode byte and its
 * arguments (little-endian), until the input ends:
 *   control bit 0   the CMA probe passes (the receiver takes CMA records)
 *   0 RECORD  u16 len, len bytes: a DATA record of them at the tail
 *   1 RAW     u8 n, n bytes: copied at the tail, which moves n (any
 *             alignment), nothing published
 *   2 PUBLISH the tail as the producer's index
 *   3 TAIL    u64: stored as the producer's index as it is
 *   4 POLL    u8 k: k % 16 + 1 passes of the transport's loop
 *   5 FRAME   u8 type, u32 payload (mod 256 KiB): a valid frame of that
 *             payload (req_id the payload's size) as DATA records of at
 *             most 16 KiB, published as room allows (the rest is
 *             dropped); with type's bit 7, its header alone
 *   6 CMA     u64 addr, u64 len: a CMA record, published; an addr below
 *             the mapping's size is an offset into it (memory the peer
 *             has), any other is taken as it is
 *   7 CTL     u8 field, u32 value: into a flag of the control blocks
 *             (the consumer's sleep flag, cma_ok, the producer's wait
 *             flag of the other ring) */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <tensorwire/frame.h>
#include <tensorwire/shm.h>

#include "dataplane/loop.h"
#include "dataplane/shm.h"
#include "dataplane/shm_impl.h"
#include "dataplane/shm_ring.h"
#include "dataplane/transport.h"
#include "tests/lib/shm_msg_send.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "fuzz_shm_ring:%d: %s\n", __LINE__,    \
				#c);                                           \
			abort();                                               \
		}                                                              \
	} while (0)

#define RING (UINT64_C(64) << 10)
/* Loop passes a hung-up connection may take to end: it needs one (the
 * hang-up's poll) plus what delivering the ring's bytes takes. */
#define END_PASSES 100000

static tw_loop *L;
static tw_transport *T;
static char bound[160];
static tw_conn *cur;     /* the server's side of this input's connection */
static int ups, closes;  /* upcalls for cur */
static uint64_t nframes; /* delivered, all inputs */

static void on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h, tw_buf *b,
		     size_t off, size_t len)
{
	(void)ctx;
	(void)c;
	(void)b;
	(void)off;
	/* The transport decoded h within its limits; its length is h's. */
	CHECK(h->total_len == len);
	CHECK(len >= TW_FRAME_HDR_SIZE);
	CHECK(len <= T->limits.max_total || T->limits.max_total == 0);
	nframes++;
}

static void on_conn(void *ctx, tw_conn *c, tw_status st)
{
	(void)ctx;
	if (st == TW_OK) {
		cur = c;
		ups++;
		tw_transport_trusted(T, c);
		return;
	}
	if (c == cur) {
		closes++;
		cur = NULL;
	}
}

/* Odd req_ids are skipped (the stream stays in sync), even ones end the
 * connection. */
static bool on_refused(void *ctx, tw_conn *c, const tw_frame_hdr *h,
		       tw_status st)
{
	(void)ctx;
	(void)c;
	(void)st;
	return (h->req_id & 1) != 0;
}

static void setup_once(void)
{
	if (T != NULL)
		return;
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	lo.spin_ns = 0;
	CHECK(tw_loop_create(&lo, &L) == TW_OK);
	struct tw_shm_opts o;
	tw_shm_opts_init(&o, sizeof(o));
	o.ring_size = (uint32_t)RING;
	o.rx_pool_count = 8;
	o.cma_threshold = 4096; /* the receiver's side of CMA is checked */
	struct tw_transport_cbs cbs = {.on_frame = on_frame,
				       .on_conn = on_conn,
				       .on_refused = on_refused};
	CHECK(tw_shm_transport_create(L, &o, &cbs, NULL, &T) == TW_OK);
	char dir[160];
	snprintf(dir, sizeof(dir), "shm://%s/", tw_shm_default_dir());
	CHECK(T->ops->listen(T, dir, bound, sizeof(bound)) == TW_OK);
	/* Frames over 128 KiB are refused (FRAME makes them up to 256). */
	T->limits.max_total = 128u << 10;
	/* The socket file goes with the process (destroy would remove it:
	 * libFuzzer ends with exit, which runs this). */
}

static void teardown(void)
{
	if (T != NULL)
		T->ops->destroy(T);
	if (L != NULL)
		tw_loop_destroy(L);
	T = NULL;
	L = NULL;
}

static void poll_n(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		tw_loop_poll_once(L);
}

/* The next socket message of type want, polling meanwhile; false if the
 * server ended the connection first (or never sent it). */
static bool recv_msg(int fd, uint32_t want)
{
	char buf[256];
	for (int i = 0; i < END_PASSES; i++) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r >= (ssize_t)sizeof(struct shm_msg)) {
			struct shm_msg h;
			memcpy(&h, buf, sizeof(h));
			return h.type == want;
		}
		if (r == 0 || (r < 0 && errno != EAGAIN))
			return false;
		tw_loop_poll_once(L);
	}
	return false;
}

static void send_msg(int fd, uint32_t type, const void *body, uint32_t len,
		     const int *fds, unsigned nfds)
{
	CHECK(shm_msg_send(fd, type, body, len, fds, nfds) ==
	      (ssize_t)(sizeof(struct shm_msg) + len));
}

/* The peer: its socket, its mapping, its rings. */
struct peer {
	int fd, memfd, bells[2];
	void *map;
	size_t len;
	struct shm_ring tx, rx;
};

/* Connect and switch to the rings; false if the server would not. */
static bool peer_up(struct peer *p, bool cma)
{
	memset(p, 0, sizeof(*p));
	p->memfd = p->bells[0] = p->bells[1] = -1;
	p->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	CHECK(p->fd >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.*s",
		 (int)sizeof(sa.sun_path) - 1, bound + strlen("shm://"));
	CHECK(connect(p->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	if (!recv_msg(p->fd, SM_READY))
		return false;
	p->len = (size_t)shm_map_size(RING);
	p->memfd = memfd_create("fuzz-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	CHECK(p->memfd >= 0);
	CHECK(ftruncate(p->memfd, (off_t)p->len) == 0);
	CHECK(fcntl(p->memfd, F_ADD_SEALS,
		    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0);
	p->map = mmap(NULL, p->len, PROT_READ | PROT_WRITE, MAP_SHARED,
		      p->memfd, 0);
	CHECK(p->map != MAP_FAILED);
	shm_ring_init(&p->tx, p->map, RING, 0);
	shm_ring_init(&p->rx, p->map, RING, 1);
	/* The probe's bytes: the receiver finds them at the address SWITCH
	 * names (we are one process: it reads us), or not. */
	struct shm_ring_ctl *c0 = p->tx.ctl;
	for (size_t i = 0; i < sizeof(c0->probe); i++)
		c0->probe[i] = (uint8_t)(0x5a ^ i);
	p->bells[0] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->bells[1] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	CHECK(p->bells[0] >= 0 && p->bells[1] >= 0);
	struct shm_setup s = {.version = SHM_SETUP_VERSION, .ring_size = RING};
	int fds[3] = {p->memfd, p->bells[0], p->bells[1]};
	send_msg(p->fd, SM_SETUP, &s, sizeof(s), fds, 3);
	if (!recv_msg(p->fd, SM_SWITCH))
		return false;
	struct shm_switch sw = {.map_addr = cma ? (uint64_t)(uintptr_t)p->map
						: UINT64_C(8)};
	send_msg(p->fd, SM_SWITCH, &sw, sizeof(sw), NULL, 0);
	poll_n(4);
	return true;
}

static void peer_down(struct peer *p)
{
	if (p->map != NULL && p->map != MAP_FAILED)
		munmap(p->map, p->len);
	if (p->memfd >= 0)
		close(p->memfd);
	for (int i = 0; i < 2; i++)
		if (p->bells[i] >= 0)
			close(p->bells[i]);
	close(p->fd);
}

/* Input reader. */
struct in {
	const uint8_t *p;
	size_t n;
};

static bool take(struct in *in, void *dst, size_t k)
{
	if (in->n < k)
		return false;
	memcpy(dst, in->p, k);
	in->p += k;
	in->n -= k;
	return true;
}

/* Room for a record of payload len at our tail, from the consumer's head
 * (which the transport keeps honest). */
static bool room_for(struct peer *p, uint64_t len)
{
	uint64_t room;
	if (!shm_ring_room(&p->tx, &room))
		return false;
	return room >= sizeof(struct shm_rec) + shm_align8(len);
}

static void put_record(struct peer *p, uint32_t type, const void *b,
		       uint32_t len)
{
	shm_ring_copy_in(&p->tx, p->tx.pos + sizeof(struct shm_rec), b, len);
	shm_ring_put_hdr(&p->tx, type, len);
	p->tx.pos += sizeof(struct shm_rec) + shm_align8(len);
}

/* A valid frame as DATA records, published as they fit. */
static void put_frame(struct peer *p, uint8_t type, uint32_t payload)
{
	static uint8_t chunk[16u << 10];
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = type & 0x7fu,
			  .req_id = payload,
			  .src = 1,
			  .dst = 0,
			  .payload_len = payload,
			  .total_len = TW_FRAME_HDR_SIZE + (uint64_t)payload};
	uint64_t left = type & 0x80u ? TW_FRAME_HDR_SIZE : h.total_len, at = 0;
	while (left > 0) {
		uint32_t k = left < sizeof(chunk) ? (uint32_t)left
						  : (uint32_t)sizeof(chunk);
		for (uint32_t i = 0; i < k; i++)
			chunk[i] = (uint8_t)(at + i);
		if (at == 0)
			tw_frame_hdr_encode(chunk, &h);
		for (int tries = 0; tries < 64 && !room_for(p, k); tries++)
			poll_n(1);
		if (!room_for(p, k))
			return;
		put_record(p, SHM_REC_DATA, chunk, k);
		shm_ring_publish(&p->tx);
		poll_n(1);
		left -= k;
		at += k;
	}
}

static void run_ops(struct peer *p, struct in *in)
{
	uint8_t op;
	while (take(in, &op, 1) && cur != NULL) {
		switch (op % 8) {
		case 0: {
			uint16_t len;
			if (!take(in, &len, 2))
				return;
			if (len > in->n)
				len = (uint16_t)in->n;
			if (!room_for(p, len))
				poll_n(2);
			if (room_for(p, len))
				put_record(p, SHM_REC_DATA, in->p, len);
			in->p += len;
			in->n -= len;
			break;
		}
		case 1: {
			uint8_t n;
			if (!take(in, &n, 1))
				return;
			if (n > in->n)
				n = (uint8_t)in->n;
			shm_ring_copy_in(&p->tx, p->tx.pos, in->p, n);
			p->tx.pos += n;
			in->p += n;
			in->n -= n;
			break;
		}
		case 2:
			shm_ring_publish(&p->tx);
			break;
		case 3: {
			uint64_t v;
			if (!take(in, &v, 8))
				return;
			atomic_store(&p->tx.ctl->tail, v);
			break;
		}
		case 4: {
			uint8_t k;
			if (!take(in, &k, 1))
				return;
			poll_n(k % 16u + 1u);
			break;
		}
		case 5: {
			uint8_t type;
			uint32_t payload;
			if (!take(in, &type, 1) || !take(in, &payload, 4))
				return;
			put_frame(p, type, payload % (256u << 10));
			break;
		}
		case 6: {
			struct shm_cma d;
			if (!take(in, &d, sizeof(d)))
				return;
			if (d.addr < p->len)
				d.addr += (uint64_t)(uintptr_t)p->map;
			if (room_for(p, sizeof(d))) {
				put_record(p, SHM_REC_CMA, &d, sizeof(d));
				shm_ring_publish(&p->tx);
			}
			break;
		}
		case 7: {
			uint8_t f;
			uint32_t v;
			if (!take(in, &f, 1) || !take(in, &v, 4))
				return;
			struct shm_ring_ctl *c = f & 1 ? p->rx.ctl : p->tx.ctl;
			if (f & 2)
				atomic_store(&c->prod_waiting, v);
			else if (f & 4)
				atomic_store(&c->cma_ok, v);
			else
				atomic_store(&c->cons_sleeping, v);
			break;
		}
		}
		poll_n(1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool registered;
	if (!registered) {
		atexit(teardown);
		registered = true;
	}
	setup_once();
	if (size < 1)
		return 0;
	struct in in = {data + 1, size - 1};
	int ups0 = ups, closes0 = closes;
	struct peer p;
	bool up = peer_up(&p, data[0] & 1);
	CHECK(ups == ups0 + 1); /* the server took the connection */
	if (up)
		run_ops(&p, &in);
	poll_n(8);
	peer_down(&p);
	/* Hung up: the connection ends, whatever the ring holds. */
	for (int i = 0; i < END_PASSES && cur != NULL; i++)
		tw_loop_poll_once(L);
	CHECK(cur == NULL);
	CHECK(closes == closes0 + 1);
	/* Nothing of it is left for the next input. */
	struct tw_shm_stats st;
	tw_shm_get_stats(T, &st);
	CHECK(st.conns_accepted == st.conns_closed);
	return 0;
}
