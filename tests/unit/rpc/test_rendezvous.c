/* Unit tests for rpc/rendezvous.c: joins, refusals, strangers, the barrier. */
/*
 * Rank 0's server and every member in this process, members on threads
 * (rdv_join blocks), on 127.0.0.1. A "raw" member is a plain socket the
 * test writes frames to, so it can send what rdv_join never would and
 * leave when it likes.
 *
 * Ordering without sleeps: the server serves its connections on one
 * thread, in order, so once a probe (a join the server must refuse at
 * once) has its answer, every frame written before the probe connected
 * has been handled.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/frame.h>
#include <tensorwire/message.h>
#include <tensorwire/value.h>

#include "dataplane/clock.h"
#include "rpc/auth.h"
#include "rpc/rendezvous.h"

/* Every wait: only a stuck rendezvous reaches it. */
#define WAIT_MS 20000

/* ------------------------------------------------------------------ */
/* The server on a free port                                            */

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	return ntohs(a.sin_port);
}

struct srv {
	struct rdv_server *s;
	uint16_t port;
	char url[64];
	uint32_t world;
};

/* The group's secrets in these tests (nokey: none). */
static struct auth_key nokey;

static struct auth_key key_of(const char *secret)
{
	struct auth_key k;
	cr_assert_eq(auth_key_load(secret, NULL, &k), TW_OK);
	return k;
}

static void srv_up_ex(struct srv *v, uint32_t world, int64_t timeout_ms,
		      const struct auth_key *key, const struct rdv_limits *lim)
{
	char err[256] = "";
	v->world = world;
	/* A port free a moment ago may be taken since: try another. */
	for (int tries = 0; tries < 20; tries++) {
		v->port = free_port();
		snprintf(v->url, sizeof(v->url), "tcp://127.0.0.1:%u", v->port);
		tw_status st = rdv_server_start(v->url, world, timeout_ms, key,
						lim, &v->s);
		if (st == TW_OK)
			return;
		snprintf(err, sizeof(err), "%s", tw_errmsg(st));
		cr_assert_eq(st, TW_EIO, "%s", err);
	}
	cr_assert(false, "no port to serve on: %s", err);
}

static void srv_up(struct srv *v, uint32_t world, int64_t timeout_ms)
{
	srv_up_ex(v, world, timeout_ms, &nokey, NULL);
}

/* ------------------------------------------------------------------ */
/* Members on threads                                                   */

struct joiner {
	const char *url;
	const struct auth_key *key; /* NULL: none */
	const char *netns;          /* join from this network namespace */
	struct rdv_member self;
	char addrs[8][TW_ADDR_MAX]; /* up to 4 loops, and their same-host
				     * addresses */
	uint32_t world;
	int64_t timeout_ms;
	pthread_t th;
	/* results */
	tw_status st;
	struct rdv_client *c;
	struct rdv_member *members;
	char err[512];
	/* barrier */
	tw_status bst;
	int64_t btimeout_ms;
	volatile int bdone;
};

static void joiner_init(struct joiner *j, const struct srv *v, uint32_t rank,
			const char *name, uint32_t nloops, uint32_t world)
{
	memset(j, 0, sizeof(*j));
	j->url = v->url;
	j->world = world;
	j->timeout_ms = WAIT_MS;
	j->self.rank = rank;
	j->self.nloops = nloops;
	snprintf(j->self.name, sizeof(j->self.name), "%s", name);
	/* A host of its own, so that the list shows whose is whose. */
	memset(j->self.host, 0xa0, sizeof(j->self.host));
	j->self.host[0] = (uint8_t)rank;
	for (uint32_t i = 0; i < nloops; i++)
		snprintf(j->addrs[i], sizeof(j->addrs[i]), "tcp://127.0.0.1:%u",
			 20000 + rank * 10 + i);
	/* Odd ranks announce same-host addresses too. */
	j->self.local_addrs = rank % 2 == 1;
	for (uint32_t i = 0; j->self.local_addrs && i < nloops; i++)
		snprintf(j->addrs[nloops + i], sizeof(j->addrs[0]),
			 "shm:///tmp/tw-test-%u-%u", rank, i);
	j->self.addrs = j->addrs;
}

static void *join_main(void *arg)
{
	struct joiner *j = arg;
	if (j->netns != NULL) {
		/* This thread's sockets are the namespace's: another host. */
		char path[96];
		snprintf(path, sizeof(path), "/var/run/netns/%s", j->netns);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
			j->st = TW_EIO;
			snprintf(j->err, sizeof(j->err), "setns %s: %s", path,
				 strerror(errno));
			if (fd >= 0)
				close(fd);
			return NULL;
		}
		close(fd);
	}
	j->st = rdv_join(j->url, j->key, &j->self, j->world, j->timeout_ms,
			 &j->c, &j->members);
	/* The reason is the joining thread's: keep it for the test's. */
	snprintf(j->err, sizeof(j->err), "%s",
		 j->st == TW_OK ? "" : tw_errmsg(j->st));
	return NULL;
}

static void join_start(struct joiner *j)
{
	cr_assert_eq(pthread_create(&j->th, NULL, join_main, j), 0);
}

static void join_wait(struct joiner *j)
{
	pthread_join(j->th, NULL);
}

/* Join on this thread. */
static tw_status join_now(struct joiner *j)
{
	join_main(j);
	return j->st;
}

static void *barrier_main(void *arg)
{
	struct joiner *j = arg;
	j->bst = rdv_barrier(j->c, j->btimeout_ms);
	__atomic_store_n(&j->bdone, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void joiner_fini(struct joiner *j)
{
	rdv_client_close(j->c);
	j->c = NULL;
	rdv_members_free(j->members, j->world);
	j->members = NULL;
}

/* Every member as it announced itself, by rank. */
static void check_members(const struct joiner *j, struct joiner *const *all,
			  uint32_t n)
{
	cr_assert_not_null(j->members, "rank %u has no member list",
			   j->self.rank);
	for (uint32_t r = 0; r < n; r++) {
		const struct rdv_member *m = &j->members[r];
		const struct rdv_member *want = &all[r]->self;
		cr_assert_eq(m->rank, r);
		cr_assert_str_eq(m->name, want->name, "rank %u's name", r);
		cr_assert_eq(m->nloops, want->nloops, "rank %u's loops", r);
		cr_assert_arr_eq(m->host, want->host, sizeof(m->host),
				 "rank %u's host identifier", r);
		cr_assert_eq(m->local_addrs, want->local_addrs);
		for (uint32_t i = 0; i < m->nloops; i++) {
			const char *got = rdv_local_addr(m, i);
			if (!want->local_addrs) {
				cr_assert_null(got);
				continue;
			}
			cr_assert_str_eq(got, rdv_local_addr(want, i),
					 "rank %u loop %u's same-host address",
					 r, i);
		}
		for (uint32_t i = 0; i < m->nloops; i++)
			cr_assert_str_eq(m->addrs[i], want->addrs[i],
					 "rank %u loop %u", r, i);
	}
}

/* A join the server refuses at once (another world size): when it has
 * its answer, the server has handled every frame written before. */
static void sync_server(const struct srv *v)
{
	struct joiner p;
	joiner_init(&p, v, 0, "probe", 1, v->world + 1);
	cr_assert_eq(join_now(&p), TW_EINVAL, "probe: %s", p.err);
}

/* ------------------------------------------------------------------ */
/* Raw members: frames written by the test                              */

static int raw_connect(const struct srv *v)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons(v->port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	/* Frames written one after the other leave at once (no Nagle wait
	 * for the server's delayed ACK): the ordering above holds. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t k = write(fd, c, n);
		cr_assert(k > 0, "write: %s", strerror(errno));
		c += k;
		n -= (size_t)k;
	}
}

/* Encode a message of type with payload (taken) and write it. */
static void raw_send(int fd, unsigned type, tw_value payload)
{
	tw_frame_hdr h = {.version = TW_FRAME_VERSION, .type = (uint8_t)type};
	tw_out_msg m;
	cr_assert_eq(tw_msg_encode(NULL, &h, &payload, &m), TW_OK);
	void *b = malloc(m.total_len);
	cr_assert_not_null(b);
	tw_out_msg_copy(&m, b);
	write_all(fd, b, m.total_len);
	free(b);
	tw_out_msg_release(&m);
	tw_value_destroy(&payload);
}

static void raw_send_auth(int fd, const struct auth_msg *am)
{
	uint8_t b[AUTH_MSG_SIZE];
	auth_msg_encode(am, b);
	tw_value v;
	cr_assert_eq(tw_value_bytes(&v, b, sizeof(b)), TW_OK);
	raw_send(fd, TW_MSG_AUTH, v);
}

static int raw_recv(int fd, tw_in_msg *m);

/* The client's side of the handshake on fd, as rank, with k (NULL: none):
 * TW_OK once the server proved itself and our PROOF is written, else
 * what auth_client_challenge said. hello_out / proof_out (may be NULL)
 * get the bytes sent, for replays. */
static tw_status raw_auth_rec(int fd, const struct auth_key *k, uint32_t rank,
			      uint8_t *hello_out, uint8_t *proof_out)
{
	struct auth_hs hs;
	struct auth_msg hello, ch, pr;
	auth_client_start(&hs, k ? k : &nokey, AUTH_CTX_RDV, rank, AUTH_ID_RDV,
			  &hello);
	if (hello_out != NULL)
		auth_msg_encode(&hello, hello_out);
	raw_send_auth(fd, &hello);
	tw_in_msg m;
	cr_assert_eq(raw_recv(fd, &m), 1, "no challenge");
	cr_assert_eq(m.hdr.type, TW_MSG_AUTH, "got %s",
		     tw_msg_type_name(m.hdr.type));
	cr_assert_eq(auth_msg_decode(m.payload.u.str, m.payload.len, &ch),
		     TW_OK);
	tw_in_msg_release(&m);
	tw_status st = auth_client_challenge(&hs, &ch, &pr);
	if (st == TW_OK) {
		if (proof_out != NULL)
			auth_msg_encode(&pr, proof_out);
		raw_send_auth(fd, &pr);
	}
	return st;
}

static void raw_auth(int fd, const struct auth_key *k, uint32_t rank)
{
	cr_assert_eq(raw_auth_rec(fd, k, rank, NULL, NULL), TW_OK, "%s",
		     tw_errmsg(TW_EAUTH));
}

static tw_value join_payload(const char *name, int64_t rank, int64_t world,
			     uint32_t naddrs)
{
	tw_value t, s, l, h, none;
	cr_assert_eq(tw_value_tuple(&t, 6), TW_OK);
	cr_assert_eq(tw_value_list(&none, 0), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 5, none), TW_OK);
	cr_assert_eq(tw_value_cstring(&s, name), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 0, s), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 1, tw_value_int(rank)), TW_OK);
	uint8_t host[RDV_HOST_ID_LEN];
	rdv_host_id(host);
	cr_assert_eq(tw_value_bytes(&h, host, sizeof(host)), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 4, h), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 2, tw_value_int(world)), TW_OK);
	cr_assert_eq(tw_value_list(&l, naddrs), TW_OK);
	for (uint32_t i = 0; i < naddrs; i++) {
		char a[32];
		snprintf(a, sizeof(a), "tcp://127.0.0.1:%u", 30000 + i);
		cr_assert_eq(tw_value_cstring(&s, a), TW_OK);
		cr_assert_eq(tw_value_set_item(&l, i, s), TW_OK);
	}
	cr_assert_eq(tw_value_set_item(&t, 3, l), TW_OK);
	return t;
}

static bool read_full(int fd, void *p, size_t n, bool *eof)
{
	char *c = p;
	*eof = false;
	while (n > 0) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, WAIT_MS) <= 0)
			return false;
		ssize_t k = read(fd, c, n);
		if (k <= 0) {
			*eof = true;
			return false;
		}
		c += k;
		n -= (size_t)k;
	}
	return true;
}

/* The next frame from the server into *m: 1, or 0 on EOF (the server
 * closed); fails the test when neither comes. */
static int raw_recv(int fd, tw_in_msg *m)
{
	uint8_t hdr[TW_FRAME_HDR_SIZE];
	bool eof;
	if (!read_full(fd, hdr, sizeof(hdr), &eof)) {
		cr_assert(eof, "nothing from the server within %d ms", WAIT_MS);
		return 0;
	}
	tw_frame_hdr h;
	cr_assert_eq(tw_frame_hdr_decode(hdr, NULL, &h), TW_OK);
	tw_buf *b;
	cr_assert_eq(tw_buf_alloc(h.total_len, &b), TW_OK);
	memcpy(b->data, hdr, sizeof(hdr));
	cr_assert(read_full(fd, (char *)b->data + sizeof(hdr),
			    h.total_len - sizeof(hdr), &eof),
		  "a frame cut short");
	tw_status st = tw_msg_decode(b, 0, h.total_len, &h, NULL, m);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_buf_release(b);
	return 1;
}

static void expect_closed(int fd)
{
	char c;
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	cr_assert_eq(poll(&pf, 1, WAIT_MS), 1, "still open");
	cr_assert_leq(read(fd, &c, 1), 0, "more bytes, not the close");
}

/* The server refuses fd: an EXCEPTION whose message holds want, then
 * the connection closes. */
static void expect_refusal(int fd, const char *want)
{
	tw_in_msg m;
	cr_assert_eq(raw_recv(fd, &m), 1, "no answer; want '%s'", want);
	cr_assert_eq(m.hdr.type, TW_MSG_EXCEPTION);
	cr_assert_eq(m.payload.kind, TW_KIND_ERROR);
	const tw_error *e = m.payload.u.err;
	cr_assert(strstr(e->msg, want) != NULL, "refusal '%s' lacks '%s'",
		  e->msg, want);
	tw_in_msg_release(&m);
	expect_closed(fd);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

/* N members join at once; each learns every member's name and
 * addresses by rank. The barrier holds every member until the last one
 * arrives, then lets them all go. */
Test(rendezvous, n_members_join_and_meet_at_the_barrier, .timeout = 60)
{
	enum { N = 4 };
	struct srv v;
	srv_up(&v, N, WAIT_MS);
	struct joiner j[N], *all[N];
	for (uint32_t r = 0; r < N; r++) {
		char name[16];
		snprintf(name, sizeof(name), "worker%u", r);
		joiner_init(&j[r], &v, r, name, 1 + r % 3, N);
		all[r] = &j[r];
	}
	/* Not in rank order: ranks are slots, not arrival order. */
	for (int r = N - 1; r >= 0; r--)
		join_start(&j[r]);
	for (uint32_t r = 0; r < N; r++) {
		join_wait(&j[r]);
		cr_assert_eq(j[r].st, TW_OK, "rank %u: %s", r, j[r].err);
	}
	for (uint32_t r = 0; r < N; r++)
		check_members(&j[r], all, N);

	pthread_t bt[N];
	for (uint32_t r = 0; r + 1 < N; r++) {
		j[r].btimeout_ms = WAIT_MS;
		cr_assert_eq(pthread_create(&bt[r], NULL, barrier_main, &j[r]),
			     0);
	}
	/* Whatever the scheduling, nobody passes while one is missing. */
	struct timespec ts = {0, 100 * 1000 * 1000};
	nanosleep(&ts, NULL);
	for (uint32_t r = 0; r + 1 < N; r++)
		cr_assert_eq(__atomic_load_n(&j[r].bdone, __ATOMIC_ACQUIRE), 0,
			     "rank %u passed the barrier before rank %u came",
			     r, N - 1);
	cr_assert_eq(rdv_barrier(j[N - 1].c, WAIT_MS), TW_OK);
	for (uint32_t r = 0; r + 1 < N; r++) {
		pthread_join(bt[r], NULL);
		cr_assert_eq(j[r].bst, TW_OK, "rank %u", r);
	}
	for (uint32_t r = 0; r < N; r++)
		joiner_fini(&j[r]);
	rdv_server_stop(v.s);
}

/* A member that leaves counts as done at the barrier: the others pass. */
Test(rendezvous, a_member_gone_does_not_hold_the_barrier, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 3, WAIT_MS);
	struct joiner j[3];
	for (uint32_t r = 0; r < 3; r++) {
		joiner_init(&j[r], &v, r, r ? (r == 1 ? "b" : "c") : "a", 1, 3);
		join_start(&j[r]);
	}
	for (uint32_t r = 0; r < 3; r++) {
		join_wait(&j[r]);
		cr_assert_eq(j[r].st, TW_OK, "%s", j[r].err);
	}
	joiner_fini(&j[2]);
	pthread_t bt;
	j[0].btimeout_ms = WAIT_MS;
	cr_assert_eq(pthread_create(&bt, NULL, barrier_main, &j[0]), 0);
	cr_assert_eq(rdv_barrier(j[1].c, WAIT_MS), TW_OK);
	pthread_join(bt, NULL);
	cr_assert_eq(j[0].bst, TW_OK);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
	rdv_server_stop(v.s);
}

/* A name another rank holds is refused, naming both; the group still
 * forms with a member of another name. */
Test(rendezvous, duplicate_name_refused, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 2, WAIT_MS);
	int fd = raw_connect(&v);
	raw_auth(fd, NULL, 0);
	raw_send(fd, TW_MSG_JOIN, join_payload("alice", 0, 2, 1));
	sync_server(&v);
	struct joiner d;
	joiner_init(&d, &v, 1, "alice", 1, 2);
	cr_assert_eq(join_now(&d), TW_EINVAL, "%s", d.err);
	cr_assert(strstr(d.err, "'alice'") != NULL && strstr(d.err, "rank 0"),
		  "reason: %s", d.err);
	struct joiner b;
	joiner_init(&b, &v, 1, "bob", 2, 2);
	cr_assert_eq(join_now(&b), TW_OK, "%s", b.err);
	cr_assert_str_eq(b.members[0].name, "alice");
	cr_assert_str_eq(b.members[1].name, "bob");
	cr_assert_eq(b.members[1].nloops, 2);
	/* The raw member hears the list too. */
	tw_in_msg m;
	cr_assert_eq(raw_recv(fd, &m), 1);
	cr_assert_eq(m.hdr.type, TW_MSG_JOIN);
	cr_assert_eq(m.payload.kind, TW_KIND_LIST);
	cr_assert_eq(m.payload.len, 2);
	tw_in_msg_release(&m);
	close(fd);
	joiner_fini(&b);
	rdv_server_stop(v.s);
}

/* A rank another member holds is refused, naming the holder. */
Test(rendezvous, duplicate_rank_refused, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 2, WAIT_MS);
	int fd = raw_connect(&v);
	raw_auth(fd, NULL, 0);
	raw_send(fd, TW_MSG_JOIN, join_payload("alice", 0, 2, 1));
	sync_server(&v);
	struct joiner d;
	joiner_init(&d, &v, 0, "bob", 1, 2);
	cr_assert_eq(join_now(&d), TW_EINVAL, "%s", d.err);
	cr_assert(strstr(d.err, "rank 0") != NULL && strstr(d.err, "'alice'"),
		  "reason: %s", d.err);
	close(fd);
	rdv_server_stop(v.s);
}

/* Another world size, or a rank outside it: refused, saying which; the
 * group then forms as if they never came. */
Test(rendezvous, world_size_mismatch_and_rank_out_of_range, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 2, WAIT_MS);
	struct joiner w;
	joiner_init(&w, &v, 0, "a", 1, 3);
	cr_assert_eq(join_now(&w), TW_EINVAL, "%s", w.err);
	cr_assert(strstr(w.err, "world size 3") && strstr(w.err, "2"),
		  "reason: %s", w.err);
	joiner_init(&w, &v, 2, "a", 1, 2);
	cr_assert_eq(join_now(&w), TW_EINVAL, "%s", w.err);
	cr_assert(strstr(w.err, "rank 2") && strstr(w.err, "world size 2"),
		  "reason: %s", w.err);

	struct joiner j[2], *all[2] = {&j[0], &j[1]};
	joiner_init(&j[0], &v, 0, "a", 1, 2);
	joiner_init(&j[1], &v, 1, "b", 1, 2);
	join_start(&j[0]);
	cr_assert_eq(join_now(&j[1]), TW_OK, "%s", j[1].err);
	join_wait(&j[0]);
	cr_assert_eq(j[0].st, TW_OK, "%s", j[0].err);
	check_members(&j[0], all, 2);
	check_members(&j[1], all, 2);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
	rdv_server_stop(v.s);
}

/*
 * Strangers on the control port: garbage, a header over the control
 * frame limit, a JOIN whose payload is no JOIN, one with no addresses,
 * a message that is not for rank 0, half a header then silence, and a
 * connection that says nothing. Each is refused (a reason when it sent a
 * readable frame, else the connection closes) or merely waits; the real
 * members join and pass the barrier as if they were not there.
 */
Test(rendezvous, strangers_do_not_harm_the_group, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 2, WAIT_MS);

	int garbage = raw_connect(&v);
	uint8_t junk[64];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	write_all(garbage, junk, sizeof(junk));

	int huge = raw_connect(&v);
	uint8_t hdr[TW_FRAME_HDR_SIZE];
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = TW_MSG_JOIN,
			  .payload_len = 5u << 20,
			  .total_len = TW_FRAME_HDR_SIZE + (5u << 20)};
	tw_frame_hdr_encode(hdr, &h);
	write_all(huge, hdr, sizeof(hdr));

	int notjoin = raw_connect(&v);
	raw_auth(notjoin, NULL, 1);
	raw_send(notjoin, TW_MSG_JOIN, tw_value_int(7));
	int noaddr = raw_connect(&v);
	raw_auth(noaddr, NULL, 1);
	raw_send(noaddr, TW_MSG_JOIN, join_payload("eve", 1, 2, 0));
	int other = raw_connect(&v);
	raw_send(other, TW_MSG_ACK, tw_value_none());
	int half = raw_connect(&v);
	write_all(half, hdr, 20);
	int silent = raw_connect(&v);

	expect_closed(garbage);
	expect_refusal(huge, "over the limit of 4096 bytes");
	expect_refusal(notjoin, "malformed JOIN");
	expect_refusal(noaddr, "malformed JOIN addresses");
	expect_refusal(other, "expected an AUTH handshake step, got ACK");

	struct joiner j[2], *all[2] = {&j[0], &j[1]};
	joiner_init(&j[0], &v, 0, "a", 2, 2);
	joiner_init(&j[1], &v, 1, "eve", 1, 2); /* the name eve tried */
	join_start(&j[0]);
	cr_assert_eq(join_now(&j[1]), TW_OK, "%s", j[1].err);
	join_wait(&j[0]);
	cr_assert_eq(j[0].st, TW_OK, "%s", j[0].err);
	check_members(&j[0], all, 2);
	check_members(&j[1], all, 2);
	pthread_t bt;
	j[0].btimeout_ms = WAIT_MS;
	cr_assert_eq(pthread_create(&bt, NULL, barrier_main, &j[0]), 0);
	cr_assert_eq(rdv_barrier(j[1].c, WAIT_MS), TW_OK);
	pthread_join(bt, NULL);
	cr_assert_eq(j[0].bst, TW_OK);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
	int fds[] = {garbage, huge, notjoin, noaddr, other, half, silent};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		close(fds[i]);
	rdv_server_stop(v.s);
}

/* A member that leaves before the group forms frees its rank, which a
 * restarted worker then takes. */
Test(rendezvous, a_rank_left_before_the_group_formed_is_free, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 2, WAIT_MS);
	int fd = raw_connect(&v);
	raw_auth(fd, NULL, 1);
	raw_send(fd, TW_MSG_JOIN, join_payload("old", 1, 2, 1));
	shutdown(fd, SHUT_WR);
	expect_closed(fd); /* the server saw it go */
	close(fd);
	struct joiner j[2], *all[2] = {&j[0], &j[1]};
	joiner_init(&j[0], &v, 0, "a", 1, 2);
	joiner_init(&j[1], &v, 1, "new", 1, 2);
	join_start(&j[0]);
	cr_assert_eq(join_now(&j[1]), TW_OK, "%s", j[1].err);
	join_wait(&j[0]);
	cr_assert_eq(j[0].st, TW_OK, "%s", j[0].err);
	check_members(&j[0], all, 2);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
	rdv_server_stop(v.s);
}

/* Nobody at the address: the join gives up at its timeout, saying so. */
Test(rendezvous, join_times_out_without_a_server, .timeout = 60)
{
	struct srv v = {.port = free_port(), .world = 2};
	snprintf(v.url, sizeof(v.url), "tcp://127.0.0.1:%u", v.port);
	struct joiner j;
	joiner_init(&j, &v, 1, "b", 1, 2);
	j.timeout_ms = 300;
	cr_assert_eq(join_now(&j), TW_ETIMEDOUT, "%s", j.err);
	cr_assert(strstr(j.err, v.url) && strstr(j.err, "300 ms"), "reason: %s",
		  j.err);
	cr_assert_null(j.c);
	cr_assert_null(j.members);
}

/* The group does not form in time: rank 0 tells the members who joined
 * which ranks are missing, before their own timeouts. */
Test(rendezvous, the_group_times_out_naming_the_missing_ranks, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 4, 600);
	struct joiner j[2];
	joiner_init(&j[0], &v, 0, "a", 1, 4);
	joiner_init(&j[1], &v, 2, "c", 1, 4);
	join_start(&j[0]);
	join_start(&j[1]);
	for (int i = 0; i < 2; i++) {
		join_wait(&j[i]);
		cr_assert_eq(j[i].st, TW_ETIMEDOUT, "%s", j[i].err);
		cr_assert(strstr(j[i].err, "2 of 4") != NULL &&
				  strstr(j[i].err, "missing rank 1 3") != NULL,
			  "reason: %s", j[i].err);
		cr_assert_null(j[i].c);
	}
	rdv_server_stop(v.s);
}

/* The barrier: a member alone times out; rank 0 gone is unreachable. */
Test(rendezvous, barrier_timeout_and_rank_0_gone, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 2, WAIT_MS);
	struct joiner j[2];
	joiner_init(&j[0], &v, 0, "a", 1, 2);
	joiner_init(&j[1], &v, 1, "b", 1, 2);
	join_start(&j[0]);
	cr_assert_eq(join_now(&j[1]), TW_OK, "%s", j[1].err);
	join_wait(&j[0]);
	cr_assert_eq(j[0].st, TW_OK, "%s", j[0].err);
	cr_assert_eq(rdv_barrier(j[0].c, 200), TW_ETIMEDOUT,
		     "passed without rank 1");
	/* Rank 0 says whom it waited for. */
	char why[TW_ERRMSG_MAX];
	snprintf(why, sizeof(why), "%s", tw_errmsg(TW_ETIMEDOUT));
	cr_assert(strstr(why, "'b' (id 1)") != NULL, "reason: %s", why);
	rdv_server_stop(v.s);
	cr_assert_eq(rdv_barrier(j[1].c, WAIT_MS), TW_EUNREACHABLE);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
}

Test(rendezvous, server_start_refusals)
{
	struct rdv_server *s = (struct rdv_server *)1;
	char err[256] = "";
	cr_assert_eq(rdv_server_start("udp://127.0.0.1:1", 2, 100, NULL, NULL,
				      &s),
		     TW_EINVAL);
	snprintf(err, sizeof(err), "%s", tw_errmsg(TW_EINVAL));
	cr_assert_null(s);
	cr_assert(strstr(err, "udp://127.0.0.1:1") != NULL, "reason: %s", err);
	/* TEST-NET-1: no interface of ours has it. */
	cr_assert_eq(rdv_server_start("tcp://192.0.2.1:4000", 2, 100, NULL,
				      NULL, &s),
		     TW_EIO);
	snprintf(err, sizeof(err), "%s", tw_errmsg(TW_EIO));
	cr_assert(strstr(err, "192.0.2.1") != NULL, "reason: %s", err);
	/* The port is taken. */
	struct srv v;
	srv_up(&v, 2, WAIT_MS);
	cr_assert_eq(rdv_server_start(v.url, 2, 100, NULL, NULL, &s), TW_EIO);
	snprintf(err, sizeof(err), "%s", tw_errmsg(TW_EIO));
	cr_assert(strstr(err, v.url) != NULL, "reason: %s", err);
	rdv_server_stop(v.s);
	rdv_server_stop(NULL);
	rdv_client_close(NULL);
	rdv_members_free(NULL, 3);
}

Test(rendezvous, parse_url)
{
	char host[64];
	uint16_t port = 0;
	cr_assert_eq(rdv_parse_url("tcp://10.0.0.1:29500", host, sizeof(host),
				   &port),
		     TW_OK);
	cr_assert_str_eq(host, "10.0.0.1");
	cr_assert_eq(port, 29500);
	cr_assert_eq(rdv_parse_url("tcp://node-7.example:0", host, sizeof(host),
				   &port),
		     TW_OK);
	cr_assert_str_eq(host, "node-7.example");
	cr_assert_eq(port, 0);
	cr_assert_eq(rdv_parse_url("tcp://[::1]:65535", host, sizeof(host),
				   &port),
		     TW_OK);
	cr_assert_str_eq(host, "::1");
	cr_assert_eq(port, 65535);
	static const char *const bad[] = {
		NULL,          "",           "udp://h:1",   "tcp://",
		"tcp://h",     "tcp://h:",   "tcp://:80",   "tcp://h:65536",
		"tcp://h:12a", "tcp://h:-1", "tcp://[::1]", "tcp://[::1:80",
		"tcp://[]:80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(rdv_parse_url(bad[i], host, sizeof(host), &port),
			     TW_EINVAL, "'%s'", bad[i] ? bad[i] : "(null)");
	/* A host longer than the caller's room. */
	cr_assert_eq(rdv_parse_url("tcp://abcdefgh:1", host, 8, &port),
		     TW_EINVAL);
	cr_assert_eq(rdv_parse_url("tcp://abcdefg:1", host, 8, &port), TW_OK);
}

/* ------------------------------------------------------------------ */
/* Authentication and bounds                                            */

/* Two members with the group's secret form it; one with another secret,
 * or none, is refused before it sends anything but its HELLO, and says
 * why. */
Test(rendezvous, wrong_or_missing_secret_refused, .timeout = 60)
{
	struct auth_key k = key_of("s3cret"), other = key_of("other");
	struct srv v;
	srv_up_ex(&v, 2, WAIT_MS, &k, NULL);
	struct joiner w;
	joiner_init(&w, &v, 1, "b", 1, 2);
	w.key = &other;
	cr_assert_eq(join_now(&w), TW_EAUTH, "%s", w.err);
	cr_assert(strstr(w.err, "authentication failed") &&
			  strstr(w.err, "secret"),
		  "reason: %s", w.err);
	joiner_init(&w, &v, 1, "b", 1, 2); /* no secret */
	cr_assert_eq(join_now(&w), TW_EAUTH, "%s", w.err);
	cr_assert(strstr(w.err, "authentication failed") &&
			  strstr(w.err, "secret"),
		  "reason: %s", w.err);

	struct joiner j[2], *all[2] = {&j[0], &j[1]};
	joiner_init(&j[0], &v, 0, "a", 1, 2);
	joiner_init(&j[1], &v, 1, "b", 1, 2);
	j[0].key = j[1].key = &k;
	join_start(&j[0]);
	cr_assert_eq(join_now(&j[1]), TW_OK, "%s", j[1].err);
	join_wait(&j[0]);
	cr_assert_eq(j[0].st, TW_OK, "%s", j[0].err);
	check_members(&j[1], all, 2);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
	rdv_server_stop(v.s);

	/* A server without a secret cannot prove one to a member with. */
	srv_up(&v, 2, WAIT_MS);
	joiner_init(&w, &v, 1, "b", 1, 2);
	w.key = &k;
	cr_assert_eq(join_now(&w), TW_EAUTH, "%s", w.err);
	cr_assert(strstr(w.err, "authentication failed"), "reason: %s", w.err);
	rdv_server_stop(v.s);
	auth_key_free(&k);
	auth_key_free(&other);
}

/* A stranger who comes first, without the secret: it cannot prove
 * itself, is refused and counted, never holds a rank; a JOIN without a
 * handshake is refused too. The real members then form the group. */
Test(rendezvous, stranger_first_cannot_take_a_rank, .timeout = 60)
{
	struct auth_key k = key_of("s3cret"), guess = key_of("guess");
	struct srv v;
	srv_up_ex(&v, 2, WAIT_MS, &k, NULL);

	int bare = raw_connect(&v);
	raw_send(bare, TW_MSG_JOIN, join_payload("eve", 1, 2, 1));
	expect_refusal(bare, "expected an AUTH");

	/* The stranger gets the server's challenge (it cannot check it) and
	 * answers with a PROOF made with its guess. */
	int eve = raw_connect(&v);
	struct auth_hs hs;
	struct auth_msg hello, ch, pr;
	auth_client_start(&hs, &guess, AUTH_CTX_RDV, 1, AUTH_ID_RDV, &hello);
	raw_send_auth(eve, &hello);
	tw_in_msg m;
	cr_assert_eq(raw_recv(eve, &m), 1);
	cr_assert_eq(auth_msg_decode(m.payload.u.str, m.payload.len, &ch),
		     TW_OK);
	tw_in_msg_release(&m);
	cr_assert_eq(auth_client_challenge(&hs, &ch, &pr), TW_EAUTH);
	/* It cannot make the PROOF: it sends one anyway. */
	pr = (struct auth_msg){.step = AUTH_PROOF,
			       .ctx = AUTH_CTX_RDV,
			       .from = 1,
			       .to = AUTH_ID_RDV};
	memset(pr.mac, 0x5a, AUTH_MAC);
	raw_send_auth(eve, &pr);
	raw_send(eve, TW_MSG_JOIN, join_payload("eve", 1, 2, 1));
	expect_refusal(eve, "authentication failed");

	struct joiner j[2], *all[2] = {&j[0], &j[1]};
	joiner_init(&j[0], &v, 0, "a", 1, 2);
	joiner_init(&j[1], &v, 1, "b", 1, 2);
	j[0].key = j[1].key = &k;
	join_start(&j[0]);
	cr_assert_eq(join_now(&j[1]), TW_OK, "%s", j[1].err);
	join_wait(&j[0]);
	cr_assert_eq(j[0].st, TW_OK, "%s", j[0].err);
	check_members(&j[0], all, 2);
	check_members(&j[1], all, 2);
	struct rdv_server_stats ss;
	rdv_server_stats(v.s, &ss);
	cr_assert_eq(ss.auth_failed, 2, "auth_failed %" PRIu64, ss.auth_failed);
	close(bare);
	close(eve);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
	rdv_server_stop(v.s);
	auth_key_free(&k);
	auth_key_free(&guess);
}

/* A recorded handshake replayed on a new connection proves nothing: the
 * server's fresh nonce makes the old PROOF wrong. */
Test(rendezvous, replayed_handshake_refused, .timeout = 60)
{
	struct auth_key k = key_of("s3cret");
	struct srv v;
	srv_up_ex(&v, 2, WAIT_MS, &k, NULL);
	uint8_t hello[AUTH_MSG_SIZE], proof[AUTH_MSG_SIZE];
	int fd = raw_connect(&v);
	cr_assert_eq(raw_auth_rec(fd, &k, 1, hello, proof), TW_OK);
	raw_send(fd, TW_MSG_JOIN, join_payload("b", 1, 2, 1));

	int r = raw_connect(&v);
	tw_value hv, pv;
	cr_assert_eq(tw_value_bytes(&hv, hello, sizeof(hello)), TW_OK);
	raw_send(r, TW_MSG_AUTH, hv);
	tw_in_msg m;
	cr_assert_eq(raw_recv(r, &m), 1);
	cr_assert_eq(m.hdr.type, TW_MSG_AUTH);
	tw_in_msg_release(&m);
	cr_assert_eq(tw_value_bytes(&pv, proof, sizeof(proof)), TW_OK);
	raw_send(r, TW_MSG_AUTH, pv);
	expect_refusal(r, "authentication failed");
	close(r);
	close(fd);
	rdv_server_stop(v.s);
	auth_key_free(&k);
}

/* A connection authenticated as one worker cannot JOIN as another. */
Test(rendezvous, join_for_another_rank_refused, .timeout = 60)
{
	struct auth_key k = key_of("s3cret");
	struct srv v;
	srv_up_ex(&v, 2, WAIT_MS, &k, NULL);
	int fd = raw_connect(&v);
	raw_auth(fd, &k, 1);
	raw_send(fd, TW_MSG_JOIN, join_payload("b", 0, 2, 1));
	expect_refusal(fd, "authenticated as worker id 1");
	close(fd);
	/* Rank 0 is still free. */
	struct joiner j[2];
	joiner_init(&j[0], &v, 0, "a", 1, 2);
	joiner_init(&j[1], &v, 1, "b", 1, 2);
	j[0].key = j[1].key = &k;
	join_start(&j[0]);
	cr_assert_eq(join_now(&j[1]), TW_OK, "%s", j[1].err);
	join_wait(&j[0]);
	cr_assert_eq(j[0].st, TW_OK, "%s", j[0].err);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
	rdv_server_stop(v.s);
	auth_key_free(&k);
}

static void send_header(int fd, unsigned type, uint32_t payload)
{
	uint8_t hdr[TW_FRAME_HDR_SIZE];
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = (uint8_t)type,
			  .payload_len = payload,
			  .total_len = TW_FRAME_HDR_SIZE + payload};
	tw_frame_hdr_encode(hdr, &h);
	write_all(fd, hdr, sizeof(hdr));
}

/* The largest JOIN a worker can send fits the authenticated bound; a
 * frame over it, or over the small bound before authentication, is
 * refused from its header alone (nothing else is read). */
Test(rendezvous, frames_are_bounded, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 1, WAIT_MS);
	int pre = raw_connect(&v);
	send_header(pre, TW_MSG_AUTH, RDV_FRAME_SMALL);
	expect_refusal(pre, "over the limit of 4096 bytes");
	int big = raw_connect(&v);
	raw_auth(big, NULL, 0);
	send_header(big, TW_MSG_JOIN, RDV_JOIN_MAX);
	expect_refusal(big, "over the limit of 65536 bytes");

	/* The largest JOIN: a name of TW_WORKER_NAME_MAX - 1 bytes and
	 * RDV_MAX_LOOPS addresses of TW_ADDR_MAX - 1. */
	char name[TW_WORKER_NAME_MAX];
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	tw_value t, s, l, hv, ll;
	cr_assert_eq(tw_value_tuple(&t, 6), TW_OK);
	cr_assert_eq(tw_value_cstring(&s, name), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 0, s), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 1, tw_value_int(0)), TW_OK);
	uint8_t host[RDV_HOST_ID_LEN] = {0};
	cr_assert_eq(tw_value_bytes(&hv, host, sizeof(host)), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 4, hv), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 2, tw_value_int(1)), TW_OK);
	cr_assert_eq(tw_value_list(&l, RDV_MAX_LOOPS), TW_OK);
	char addr[TW_ADDR_MAX];
	memset(addr, 'a', sizeof(addr) - 1);
	addr[sizeof(addr) - 1] = '\0';
	for (uint32_t i = 0; i < RDV_MAX_LOOPS; i++) {
		cr_assert_eq(tw_value_cstring(&s, addr), TW_OK);
		cr_assert_eq(tw_value_set_item(&l, i, s), TW_OK);
	}
	cr_assert_eq(tw_value_set_item(&t, 3, l), TW_OK);
	/* ... and as many same-host addresses */
	cr_assert_eq(tw_value_list(&ll, RDV_MAX_LOOPS), TW_OK);
	for (uint32_t i = 0; i < RDV_MAX_LOOPS; i++) {
		cr_assert_eq(tw_value_cstring(&s, addr), TW_OK);
		cr_assert_eq(tw_value_set_item(&ll, i, s), TW_OK);
	}
	cr_assert_eq(tw_value_set_item(&t, 5, ll), TW_OK);
	tw_frame_hdr h = {.version = TW_FRAME_VERSION, .type = TW_MSG_JOIN};
	tw_out_msg om;
	cr_assert_eq(tw_msg_encode(NULL, &h, &t, &om), TW_OK);
	cr_assert_leq(om.total_len, RDV_JOIN_MAX, "the largest JOIN: %" PRIu64,
		      (uint64_t)om.total_len);
	tw_out_msg_release(&om);
	int fd = raw_connect(&v);
	raw_auth(fd, NULL, 0);
	raw_send(fd, TW_MSG_JOIN, t);
	tw_in_msg m;
	cr_assert_eq(raw_recv(fd, &m), 1);
	cr_assert_eq(m.hdr.type, TW_MSG_JOIN, "%s",
		     m.hdr.type == TW_MSG_EXCEPTION ? m.payload.u.err->msg
						    : "?");
	struct rdv_member *ms;
	cr_assert_eq(rdv_parse_members(&m.payload, 1, &ms), TW_OK);
	cr_assert_str_eq(ms[0].name, name);
	cr_assert_eq(ms[0].nloops, RDV_MAX_LOOPS);
	rdv_members_free(ms, 1);
	tw_in_msg_release(&m);
	struct rdv_server_stats ss;
	rdv_server_stats(v.s, &ss);
	cr_assert_eq(ss.oversize, 2);
	close(pre);
	close(big);
	close(fd);
	rdv_server_stop(v.s);
}

/* Connections that never authenticate: past the cap a new one is closed
 * at once; each is closed at the handshake deadline, saying so; then a
 * member joins (it retried meanwhile). */
Test(rendezvous, idle_strangers_capped_and_timed_out, .timeout = 60)
{
	struct rdv_limits lim = {.max_pending = 4, .handshake_ms = 300};
	struct srv v;
	srv_up_ex(&v, 1, WAIT_MS, &nokey, &lim);
	int idle[4];
	for (int i = 0; i < 4; i++)
		idle[i] = raw_connect(&v);
	int over = raw_connect(&v);
	expect_closed(over); /* no word: closed at once */
	for (int i = 0; i < 4; i++)
		expect_refusal(idle[i], "no JOIN within 300 ms");
	struct rdv_server_stats ss;
	rdv_server_stats(v.s, &ss);
	cr_assert_geq(ss.over_cap, 1);
	cr_assert_eq(ss.timed_out, 4);
	struct joiner j;
	joiner_init(&j, &v, 0, "a", 1, 1);
	cr_assert_eq(join_now(&j), TW_OK, "%s", j.err);
	joiner_fini(&j);
	for (int i = 0; i < 4; i++)
		close(idle[i]);
	close(over);
	rdv_server_stop(v.s);
}

/* A member that sent its JOIN and closed at once, before the group was
 * complete, is not counted: the rank is free for the real one. */
Test(rendezvous, join_then_close_not_counted, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 2, WAIT_MS);
	int fd = raw_connect(&v);
	raw_auth(fd, NULL, 1);
	raw_send(fd, TW_MSG_JOIN, join_payload("gone", 1, 2, 1));
	close(fd);
	struct joiner j[2], *all[2] = {&j[0], &j[1]};
	joiner_init(&j[0], &v, 0, "a", 1, 2);
	joiner_init(&j[1], &v, 1, "real", 1, 2);
	cr_assert_eq(pthread_create(&j[0].th, NULL, join_main, &j[0]), 0);
	cr_assert_eq(join_now(&j[1]), TW_OK, "%s", j[1].err);
	join_wait(&j[0]);
	cr_assert_eq(j[0].st, TW_OK, "%s", j[0].err);
	check_members(&j[0], all, 2);
	check_members(&j[1], all, 2);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
	rdv_server_stop(v.s);
}

/* accept(2) failing with EMFILE pauses listening (no spin: a handful of
 * failures in half a second, not hundreds of thousands), and a member
 * joins once descriptors are free again. */
Test(rendezvous, accept_emfile_backs_off, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 1, WAIT_MS);
	struct rlimit old, lim;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	/* Fill every descriptor but one, then connect with that one: the
	 * server cannot accept. */
	int fds[4096], n = 0;
	lim = old;
	lim.rlim_cur = 256;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
	for (;;) {
		int d = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (d < 0)
			break;
		cr_assert_lt(n, 4096);
		fds[n++] = d;
	}
	cr_assert_gt(n, 1);
	close(fds[--n]);
	int c = raw_connect(&v);
	struct timespec ts = {0, 500 * 1000 * 1000};
	nanosleep(&ts, NULL);
	struct rdv_server_stats ss;
	rdv_server_stats(v.s, &ss);
	cr_assert_geq(ss.accept_errors, 1);
	cr_assert_leq(ss.accept_errors, 50, "accept failed %" PRIu64 " times",
		      ss.accept_errors);
	while (n > 0)
		close(fds[--n]);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	struct joiner j;
	joiner_init(&j, &v, 0, "a", 1, 1);
	cr_assert_eq(join_now(&j), TW_OK, "%s", j.err);
	joiner_fini(&j);
	close(c);
	rdv_server_stop(v.s);
}

/* The barrier's rounds carry counts: rank 0 sums them for everyone. */
struct rounder {
	struct rdv_client *c;
	struct rdv_count mine, total;
	tw_status st;
};

static void *round_main(void *arg)
{
	struct rounder *r = arg;
	r->st = rdv_barrier_round(r->c, r->mine,
				  tw_now_ns() + (uint64_t)WAIT_MS * 1000000u,
				  NULL, NULL, &r->total);
	return NULL;
}

Test(rendezvous, barrier_rounds_sum_counts, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 2, WAIT_MS);
	struct joiner j[2];
	joiner_init(&j[0], &v, 0, "a", 1, 2);
	joiner_init(&j[1], &v, 1, "b", 1, 2);
	join_start(&j[0]);
	cr_assert_eq(join_now(&j[1]), TW_OK, "%s", j[1].err);
	join_wait(&j[0]);
	cr_assert_eq(j[0].st, TW_OK, "%s", j[0].err);
	for (uint64_t round = 1; round <= 3; round++) {
		struct rounder r[2] = {
			{.c = j[0].c, .mine = {round, 100 * round}},
			{.c = j[1].c, .mine = {2 * round, 1}},
		};
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, round_main, &r[0]), 0);
		round_main(&r[1]);
		pthread_join(th, NULL);
		for (int k = 0; k < 2; k++) {
			cr_assert_eq(r[k].st, TW_OK, "%s", tw_errmsg(r[k].st));
			cr_assert_eq(r[k].total.active, 3 * round);
			cr_assert_eq(r[k].total.events, 100 * round + 1);
		}
		cr_assert_not(rdv_member_gone(j[0].c, 1));
	}
	/* Rank 1 leaves: rank 0's next round is its own, and says so. */
	rdv_client_close(j[1].c);
	j[1].c = NULL;
	struct rounder last = {.c = j[0].c, .mine = {0, 7}};
	round_main(&last);
	cr_assert_eq(last.st, TW_OK, "%s", tw_errmsg(last.st));
	cr_assert_eq(last.total.events, 7);
	cr_assert(rdv_member_gone(j[0].c, 1));
	cr_assert_not(rdv_member_gone(j[0].c, 0));
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
	rdv_server_stop(v.s);
}

/* torch's rule for worker names, and the parsers on what rdv_join never
 * sends. */
Test(rendezvous, names_and_parsers)
{
	cr_assert(rdv_name_valid("trainer:0", 9));
	cr_assert(rdv_name_valid("ps_1-a", 6));
	cr_assert_not(rdv_name_valid("a b", 3));
	cr_assert_not(rdv_name_valid("a.b", 3));
	cr_assert_not(rdv_name_valid("w\xc3\xa9", 3));
	cr_assert_not(rdv_name_valid("", 0));
	char longname[TW_WORKER_NAME_MAX + 1];
	memset(longname, 'x', sizeof(longname));
	cr_assert(rdv_name_valid(longname, TW_WORKER_NAME_MAX - 1));
	cr_assert_not(rdv_name_valid(longname, TW_WORKER_NAME_MAX));

	struct rdv_member m;
	int64_t rank, world;
	tw_value p = join_payload("bad name", 0, 1, 1);
	cr_assert_eq(rdv_parse_join(&p, &m, &rank, &world), TW_EPROTO);
	cr_assert(strstr(tw_errmsg(TW_EPROTO), "worker name"));
	tw_value_destroy(&p);
	p = join_payload("ok", 3, 7, 2);
	cr_assert_eq(rdv_parse_join(&p, &m, &rank, &world), TW_OK);
	cr_assert_eq(rank, 3);
	cr_assert_eq(world, 7);
	cr_assert_eq(m.nloops, 2);
	cr_assert_not(m.local_addrs);
	cr_assert_null(rdv_local_addr(&m, 0));
	free(m.addrs);
	/* Same-host addresses: none, or one per loop. */
	tw_value one, a;
	cr_assert_eq(tw_value_list(&one, 1), TW_OK);
	cr_assert_eq(tw_value_cstring(&a, "shm:///x"), TW_OK);
	cr_assert_eq(tw_value_set_item(&one, 0, a), TW_OK);
	cr_assert_eq(tw_value_set_item(&p, 5, one), TW_OK);
	cr_assert_eq(rdv_parse_join(&p, &m, &rank, &world), TW_EPROTO);
	cr_assert(strstr(tw_errmsg(TW_EPROTO), "same-host") != NULL);
	cr_assert_null(m.addrs);
	tw_value_destroy(&p);
	p = join_payload("ok", 3, 7, 1);
	cr_assert_eq(tw_value_list(&one, 1), TW_OK);
	cr_assert_eq(tw_value_cstring(&a, "shm:///x"), TW_OK);
	cr_assert_eq(tw_value_set_item(&one, 0, a), TW_OK);
	cr_assert_eq(tw_value_set_item(&p, 5, one), TW_OK);
	cr_assert_eq(rdv_parse_join(&p, &m, &rank, &world), TW_OK);
	cr_assert_str_eq(rdv_local_addr(&m, 0), "shm:///x");
	cr_assert_null(rdv_local_addr(&m, 1));
	free(m.addrs);
	tw_value_destroy(&p);

	uint32_t round;
	struct rdv_count c;
	int64_t left;
	tw_value t;
	cr_assert_eq(tw_value_tuple(&t, 4), TW_OK);
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(tw_value_set_item(&t, i,
					       tw_value_int(i == 3 ? -1 : 5)),
			     TW_OK);
	uint8_t gone[1];
	cr_assert_eq(rdv_parse_round(&t, 4, &round, &c, &left, NULL), TW_OK);
	cr_assert_eq(left, -1);
	cr_assert_eq(rdv_parse_round(&t, 4, &round, &c, &left, gone),
		     TW_EPROTO);
	cr_assert_eq(tw_value_set_item(&t, 1, tw_value_int(-2)), TW_OK);
	cr_assert_eq(rdv_parse_round(&t, 4, &round, &c, &left, NULL),
		     TW_EPROTO);
	tw_value_destroy(&t);
}

/* A stranger posing as rank 0 (listening on the rendezvous address) gets
 * the HELLO and nothing more: the member checks the CHALLENGE's MAC before
 * it sends its PROOF or JOIN, and fails with TW_EAUTH. */
Test(rendezvous, a_fake_rank_0_learns_nothing, .timeout = 60)
{
	struct auth_key k = key_of("s3cret");
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(lfd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	struct srv v = {.port = ntohs(sa.sin_port), .world = 2};
	snprintf(v.url, sizeof(v.url), "tcp://127.0.0.1:%u", v.port);
	struct joiner j;
	joiner_init(&j, &v, 1, "b", 1, 2);
	j.key = &k;
	join_start(&j);
	int fd = accept(lfd, NULL, NULL);
	cr_assert(fd >= 0);
	tw_in_msg m;
	cr_assert_eq(raw_recv(fd, &m), 1);
	cr_assert_eq(m.hdr.type, TW_MSG_AUTH, "first a HELLO, got %s",
		     tw_msg_type_name(m.hdr.type));
	struct auth_msg hello;
	cr_assert_eq(auth_msg_decode(m.payload.u.str, m.payload.len, &hello),
		     TW_OK);
	tw_in_msg_release(&m);
	cr_assert_eq(hello.step, AUTH_HELLO);
	cr_assert_eq(hello.from, 1);
	struct auth_msg ch = {.step = AUTH_CHALLENGE,
			      .ctx = AUTH_CTX_RDV,
			      .from = AUTH_ID_RDV,
			      .to = 1};
	memset(ch.nonce, 0x11, AUTH_NONCE);
	memset(ch.mac, 0x33, AUTH_MAC);
	raw_send_auth(fd, &ch);
	expect_closed(fd); /* no PROOF, no JOIN: nothing but the close */
	join_wait(&j);
	cr_assert_eq(j.st, TW_EAUTH, "%s", j.err);
	cr_assert(strstr(j.err, "authentication failed") &&
			  strstr(j.err, "secret"),
		  "reason: %s", j.err);
	close(fd);
	close(lfd);
	auth_key_free(&k);
}

/* Control connections idle for the agent's life: both ends have keepalive
 * and TCP_USER_TIMEOUT, so a vanished host is noticed within
 * RDV_VANISH_MS. Every TCP socket of this process on the rendezvous port
 * (the server's accepted one and the member's) is checked. */
Test(rendezvous, control_connections_keep_alive, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 1, WAIT_MS);
	struct joiner j;
	joiner_init(&j, &v, 0, "w0", 1, 1);
	cr_assert_eq(join_now(&j), TW_OK, "%s", j.err);
	int seen = 0;
	for (int fd = 0; fd < 1024; fd++) {
		struct sockaddr_in me, peer;
		socklen_t ml = sizeof(me), pl = sizeof(peer);
		if (getsockname(fd, (struct sockaddr *)&me, &ml) != 0 ||
		    me.sin_family != AF_INET ||
		    getpeername(fd, (struct sockaddr *)&peer, &pl) != 0)
			continue;
		if (ntohs(me.sin_port) != v.port &&
		    ntohs(peer.sin_port) != v.port)
			continue;
		int ka = 0;
		unsigned ut = 0;
		socklen_t l = sizeof(ka);
		cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &ka, &l),
			     0);
		l = sizeof(ut);
		cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut,
					&l),
			     0);
		cr_assert_eq(ka, 1, "fd %d", fd);
		cr_assert_eq(ut, RDV_VANISH_MS, "fd %d", fd);
		seen++;
	}
	cr_assert_eq(seen, 2, "the member's end and rank 0's");
	joiner_fini(&j);
	rdv_server_stop(v.s);
}

/* control_timeout_ms: the server's accepted control connections get the
 * limit it was started with, a member's its own once it has joined. */
Test(rendezvous, control_liveness_is_an_option, .timeout = 60)
{
	struct srv v;
	struct rdv_limits lim = {.vanish_ms = 6000};
	srv_up_ex(&v, 1, WAIT_MS, &nokey, &lim);
	struct joiner j;
	joiner_init(&j, &v, 0, "w0", 1, 1);
	cr_assert_eq(join_now(&j), TW_OK, "%s", j.err);
	rdv_client_set_vanish(j.c, 9000);
	unsigned want_srv = 6000, want_cli = 9000;
	int seen = 0;
	for (int fd = 0; fd < 1024; fd++) {
		struct sockaddr_in me, peer;
		socklen_t ml = sizeof(me), pl = sizeof(peer);
		if (getsockname(fd, (struct sockaddr *)&me, &ml) != 0 ||
		    me.sin_family != AF_INET ||
		    getpeername(fd, (struct sockaddr *)&peer, &pl) != 0)
			continue;
		bool srv_end = ntohs(me.sin_port) == v.port;
		if (!srv_end && ntohs(peer.sin_port) != v.port)
			continue;
		unsigned ut = 0;
		int idle = 0;
		socklen_t l = sizeof(ut);
		cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut,
					&l),
			     0);
		l = sizeof(idle);
		cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle,
					&l),
			     0);
		cr_assert_eq(ut, srv_end ? want_srv : want_cli, "fd %d", fd);
		cr_assert_eq(idle, (int)(srv_end ? want_srv : want_cli) / 2000);
		seen++;
	}
	cr_assert_eq(seen, 2);
	joiner_fini(&j);
	rdv_server_stop(v.s);
}

/* A worker that answers every round but always has a call in flight keeps
 * the barrier going until the deadline; the error then names it with its
 * count rather than blaming a silent worker. */
struct busy_rounds {
	struct rdv_client *c;
	uint64_t deadline;
	char msg[TW_ERRMSG_MAX];
};

static void *busy_main(void *arg)
{
	struct busy_rounds *b = arg;
	struct rdv_count mine = {1, 1}, tot;
	tw_status st;
	while ((st = rdv_barrier_round(b->c, mine, b->deadline, NULL, NULL,
				       &tot)) == TW_OK)
		mine.events++;
	snprintf(b->msg, sizeof(b->msg), "%s", tw_errmsg(st));
	return NULL;
}

Test(rendezvous, barrier_deadline_names_the_busy_worker, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 2, WAIT_MS);
	struct joiner j[2];
	joiner_init(&j[0], &v, 0, "a", 1, 2);
	joiner_init(&j[1], &v, 1, "b", 1, 2);
	join_start(&j[0]);
	cr_assert_eq(join_now(&j[1]), TW_OK, "%s", j[1].err);
	join_wait(&j[0]);
	cr_assert_eq(j[0].st, TW_OK, "%s", j[0].err);
	struct busy_rounds b = {.c = j[1].c,
				.deadline = tw_now_ns() + 3000000000u};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, busy_main, &b), 0);
	uint64_t deadline = tw_now_ns() + 1000000000u;
	struct rdv_count mine = {0, 0}, tot;
	tw_status st;
	while ((st = rdv_barrier_round(j[0].c, mine, deadline, NULL, NULL,
				       &tot)) == TW_OK &&
	       tot.active != 0)
		;
	cr_assert_eq(st, TW_ETIMEDOUT, "%s", tw_errmsg(st));
	cr_assert(strstr(tw_errmsg(st),
			 "calls still in flight at worker 'b' (id 1): 1") !=
			  NULL,
		  "%s", tw_errmsg(st));
	rdv_client_close(j[0].c);
	j[0].c = NULL;
	pthread_join(th, NULL);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
	rdv_server_stop(v.s);
}

/* Watch rank 0's notices on c until rank's bit is set or deadline_ms of
 * real time passes (a liveness bound, not a speed one). */
static tw_status watch_until_gone(struct rdv_client *c, uint32_t rank,
				  uint8_t *gone, int64_t deadline_ms)
{
	uint64_t until = tw_now_ns() + (uint64_t)deadline_ms * 1000000u;
	tw_status st;
	do {
		st = rdv_watch(c, gone);
		if (st != TW_OK || (gone[rank / 8] >> (rank % 8)) & 1)
			return st;
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	} while (tw_now_ns() < until);
	return TW_ETIMEDOUT;
}

/* Members that die: once the group formed, a member whose control
 * connection closes is announced to every other member, which learns it
 * without blocking (rdv_watch); the notice is only ever added to, the
 * barrier still works with notices in the stream, and rank 0 leaving
 * shows as TW_EUNREACHABLE. */
Test(rendezvous, members_hear_who_is_gone, .timeout = 60)
{
	struct srv v;
	srv_up(&v, 4, WAIT_MS);
	struct joiner j[4];
	const char *nm[4] = {"a", "b", "c", "d"};
	for (uint32_t r = 0; r < 4; r++) {
		joiner_init(&j[r], &v, r, nm[r], 1, 4);
		join_start(&j[r]);
	}
	for (uint32_t r = 0; r < 4; r++) {
		join_wait(&j[r]);
		cr_assert_eq(j[r].st, TW_OK, "%s", j[r].err);
	}
	uint8_t gone[1] = {0xff};
	cr_assert_eq(rdv_watch(j[0].c, gone), TW_OK);
	cr_assert_eq(gone[0], 0, "nobody gone yet");
	joiner_fini(&j[3]); /* as a SIGKILL would: the kernel closes it */
	for (uint32_t r = 0; r < 3; r++) {
		cr_assert_eq(watch_until_gone(j[r].c, 3, gone, WAIT_MS), TW_OK,
			     "rank %u never heard", r);
		cr_assert_eq(gone[0], 1u << 3, "rank %u: %#x", r, gone[0]);
	}
	joiner_fini(&j[2]);
	cr_assert_eq(watch_until_gone(j[0].c, 2, gone, WAIT_MS), TW_OK);
	cr_assert_eq(gone[0], (1u << 3) | (1u << 2), "%#x", gone[0]);
	/* j[1] has two notices waiting: its round's answer comes after
	 * them, and the bitmap it carries agrees. */
	pthread_t bt;
	j[0].btimeout_ms = WAIT_MS;
	cr_assert_eq(pthread_create(&bt, NULL, barrier_main, &j[0]), 0);
	cr_assert_eq(rdv_barrier(j[1].c, WAIT_MS), TW_OK);
	pthread_join(bt, NULL);
	cr_assert_eq(j[0].bst, TW_OK);
	cr_assert(rdv_member_gone(j[1].c, 2) && rdv_member_gone(j[1].c, 3));
	cr_assert_not(rdv_member_gone(j[1].c, 0));
	cr_assert_eq(rdv_watch(j[1].c, gone), TW_OK);
	cr_assert_eq(gone[0], (1u << 3) | (1u << 2), "%#x", gone[0]);
	/* Rank 0's server leaves: the members' watch says so, and keeps
	 * what it knew. */
	rdv_server_stop(v.s);
	tw_status st;
	uint64_t until = tw_now_ns() + (uint64_t)WAIT_MS * 1000000u;
	while ((st = rdv_watch(j[1].c, gone)) == TW_OK && tw_now_ns() < until)
		sched_yield();
	cr_assert_eq(st, TW_EUNREACHABLE, "%s", tw_strerror(st));
	cr_assert_eq(gone[0], (1u << 3) | (1u << 2), "%#x", gone[0]);
	cr_assert_eq(rdv_watch(j[1].c, gone), TW_EUNREACHABLE);
	joiner_fini(&j[0]);
	joiner_fini(&j[1]);
}

/* The notice's parser: a bitmap of exactly (world + 7) / 8 bytes. */
Test(rendezvous, parse_gone)
{
	uint8_t g[2] = {0, 0};
	unsigned char b[2] = {0x05, 0x01};
	tw_value ok = tw_value_bytes_borrow(b, 2);
	cr_assert_eq(rdv_parse_gone(&ok, 9, g), TW_OK);
	cr_assert(g[0] == 0x05 && g[1] == 0x01);
	cr_assert_eq(rdv_parse_gone(&ok, 8, g), TW_EPROTO);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO),
			 "malformed member notice: want a bitmap of 8 workers");
	tw_value i = tw_value_int(1);
	cr_assert_eq(rdv_parse_gone(&i, 9, g), TW_EPROTO);
}

/* A worker listening on every interface (tcp://0.0.0.0:PORT) announces the
 * address it reaches the rendezvous from instead, which the others can
 * use: here 127.0.0.1. Other addresses go as they are. */
Test(rendezvous, a_wildcard_address_is_announced_as_the_routable_one,
     .timeout = 60)
{
	struct srv v;
	srv_up(&v, 2, WAIT_MS);
	struct joiner j[2];
	joiner_init(&j[0], &v, 0, "w0", 1, 2);
	joiner_init(&j[1], &v, 1, "w1", 2, 2);
	snprintf(j[1].addrs[0], TW_ADDR_MAX, "tcp://0.0.0.0:20019");
	join_start(&j[0]);
	join_start(&j[1]);
	for (int r = 0; r < 2; r++) {
		join_wait(&j[r]);
		cr_assert_eq(j[r].st, TW_OK, "rank %d: %s", r, j[r].err);
		const struct rdv_member *m = &j[r].members[1];
		cr_assert_str_eq(m->addrs[0], "tcp://127.0.0.1:20019");
		cr_assert_str_eq(m->addrs[1], "tcp://127.0.0.1:20011");
		cr_assert_str_eq(j[r].members[0].addrs[0],
				 "tcp://127.0.0.1:20000");
	}
	cr_assert_str_eq(j[1].addrs[0], "tcp://0.0.0.0:20019",
			 "the caller's own list is left alone");
	for (int r = 0; r < 2; r++)
		joiner_fini(&j[r]);
	rdv_server_stop(v.s);
}

/* ------------------------------------------------------------------ */
/* Across hosts: a network namespace on a veth pair the test makes (and
 * removes) stands in for another host; root only.                      */

struct nsnet {
	char ns[32], a[16], b[16], ip_a[20], ip_b[20];
};

static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void nsnet_down(struct nsnet *n)
{
	sh("ip netns del %s 2>/dev/null; ip link del %s 2>/dev/null", n->ns,
	   n->a);
}

static bool nsnet_up(struct nsnet *n)
{
	if (geteuid() != 0)
		return false;
	unsigned id = (unsigned)getpid();
	snprintf(n->ns, sizeof(n->ns), "twrdv%u", id);
	snprintf(n->a, sizeof(n->a), "twra%u", id % 10000000u);
	snprintf(n->b, sizeof(n->b), "twrb%u", id % 10000000u);
	snprintf(n->ip_a, sizeof(n->ip_a), "10.213.%u.1", id % 250u);
	snprintf(n->ip_b, sizeof(n->ip_b), "10.213.%u.2", id % 250u);
	nsnet_down(n);
	if (sh("ip netns add %s && ip link add %s type veth peer name %s && "
	       "ip link set %s netns %s && ip addr add %s/24 dev %s && "
	       "ip link set %s up && ip -n %s addr add %s/24 dev %s && "
	       "ip -n %s link set %s up && ip -n %s link set lo up",
	       n->ns, n->a, n->b, n->b, n->ns, n->ip_a, n->a, n->a, n->ns,
	       n->ip_b, n->b, n->ns, n->b, n->ns) != 0) {
		nsnet_down(n);
		return false;
	}
	return true;
}

static void srv_up_at(struct srv *v, const char *host, uint32_t world,
		      const struct auth_key *key)
{
	v->world = world;
	tw_status st = TW_EIO;
	for (int tries = 0; tries < 20 && st != TW_OK; tries++) {
		v->port = free_port();
		snprintf(v->url, sizeof(v->url), "tcp://%s:%u", host, v->port);
		st = rdv_server_start(v->url, world, WAIT_MS, key, NULL, &v->s);
	}
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
}

/* A worker on another host announcing a loopback data address would join
 * a group whose calls to it all fail: refused at its JOIN, naming the
 * address; one listening on every interface announces the address it
 * reaches the rendezvous from, which the others can use; a loopback
 * address announced on rank 0's host refuses the remote joiner, naming
 * the worker to fix. */
static struct nsnet the_net;

/* Removed even when a check failed (a test's .fini runs then too). */
static void the_net_down(void)
{
	if (the_net.ns[0] != '\0')
		nsnet_down(&the_net);
}

Test(rendezvous, loopback_addresses_refused_across_hosts, .timeout = 60,
     .fini = the_net_down)
{
	struct nsnet n;
	if (!nsnet_up(&n))
		cr_skip_test("needs root and veth/netns (ip)");
	the_net = n;
	struct auth_key k = key_of("s3cret");
	struct srv v;
	srv_up_at(&v, n.ip_a, 2, &k);
	struct joiner j0, j1, bad;
	joiner_init(&j0, &v, 0, "w0", 1, 2);
	snprintf(j0.addrs[0], TW_ADDR_MAX, "tcp://%s:20000", n.ip_a);
	j0.key = &k;
	joiner_init(&bad, &v, 1, "w1", 1, 2);
	bad.key = &k;
	bad.netns = n.ns;
	join_start(&bad); /* a thread of its own: setns is per thread */
	join_wait(&bad);
	cr_assert_eq(bad.st, TW_EINVAL, "%s", bad.err);
	cr_assert(strstr(bad.err, "tcp://127.0.0.1:20010") != NULL &&
			  strstr(bad.err, "loopback") != NULL &&
			  strstr(bad.err, n.ip_b) != NULL,
		  "%s", bad.err);
	joiner_init(&j1, &v, 1, "w1", 1, 2);
	snprintf(j1.addrs[0], TW_ADDR_MAX, "tcp://0.0.0.0:20010");
	j1.key = &k;
	j1.netns = n.ns;
	join_start(&j0);
	join_start(&j1);
	join_wait(&j0);
	join_wait(&j1);
	cr_assert_eq(j0.st, TW_OK, "%s", j0.err);
	cr_assert_eq(j1.st, TW_OK, "%s", j1.err);
	char want[64];
	snprintf(want, sizeof(want), "tcp://%s:20010", n.ip_b);
	cr_assert_str_eq(j0.members[1].addrs[0], want);
	joiner_fini(&j0);
	joiner_fini(&j1);
	rdv_server_stop(v.s);

	/* Rank 0 on loopback, a member from elsewhere: whichever joins
	 * second is refused, naming w0's address; the other is left to
	 * time out (3 s). */
	srv_up_at(&v, n.ip_a, 2, &k);
	joiner_init(&j0, &v, 0, "w0", 1, 2);
	j0.key = &k;
	j0.timeout_ms = 3000;
	joiner_init(&j1, &v, 1, "w1", 1, 2);
	snprintf(j1.addrs[0], TW_ADDR_MAX, "tcp://%s:20010", n.ip_b);
	j1.key = &k;
	j1.netns = n.ns;
	j1.timeout_ms = 3000;
	join_start(&j0);
	join_start(&j1);
	join_wait(&j0);
	join_wait(&j1);
	struct joiner *no = j0.st == TW_EINVAL ? &j0 : &j1;
	struct joiner *other = no == &j0 ? &j1 : &j0;
	cr_assert_eq(no->st, TW_EINVAL, "w0: %s; w1: %s", j0.err, j1.err);
	cr_assert_eq(other->st, TW_ETIMEDOUT, "%s", other->err);
	cr_assert(strstr(no->err, "tcp://127.0.0.1:20000") != NULL &&
			  strstr(no->err, "loopback") != NULL &&
			  strstr(no->err, n.ip_b) != NULL,
		  "%s", no->err);
	joiner_fini(&j0);
	joiner_fini(&j1);
	rdv_server_stop(v.s);
	auth_key_free(&k);
	nsnet_down(&n);
}

/* The host identifier is the kernel's boot id: the same on every call,
 * and as /proc shows it. */
Test(rendezvous, host_id_is_the_boot_id)
{
	uint8_t a[RDV_HOST_ID_LEN], b[RDV_HOST_ID_LEN];
	rdv_host_id(a);
	rdv_host_id(b);
	cr_assert_arr_eq(a, b, sizeof(a));
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (f == NULL)
		return; /* then it is random: nothing more to compare */
	char txt[64] = "", hex[40] = "";
	cr_assert_not_null(fgets(txt, sizeof(txt), f));
	fclose(f);
	size_t n = 0;
	for (const char *p = txt; *p && n < 32; p++)
		if (*p != '-' && *p != '\n')
			hex[n++] = *p;
	char got[40];
	for (size_t i = 0; i < RDV_HOST_ID_LEN; i++)
		snprintf(got + 2 * i, 3, "%02x", a[i]);
	cr_assert_str_eq(got, hex);
}

/* With a secret, the announced host id is a keyed hash of the boot id:
 * the same for every worker of the group on this kernel, unlike the boot
 * id, and another for another secret. */
Test(rendezvous, host_id_is_keyed_by_the_secret)
{
	struct auth_key k1 = key_of("one secret"), k2 = key_of("another");
	uint8_t boot[RDV_HOST_ID_LEN], a[RDV_HOST_ID_LEN], b[RDV_HOST_ID_LEN],
		c[RDV_HOST_ID_LEN], none[RDV_HOST_ID_LEN];
	rdv_host_id(boot);
	rdv_host_id_for(&k1, a);
	rdv_host_id_for(&k1, b);
	rdv_host_id_for(&k2, c);
	rdv_host_id_for(NULL, none);
	cr_assert_arr_eq(a, b, sizeof(a));
	cr_assert_arr_neq(a, c, sizeof(a));
	cr_assert_arr_neq(a, boot, sizeof(a));
	cr_assert_arr_eq(none, boot, sizeof(a));
	auth_key_free(&k1);
	auth_key_free(&k2);
}
