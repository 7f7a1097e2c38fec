/* The same-host transport under the agent, where the other suites cannot
 * reach: a member that writes garbage into the shared rings it shares
 * with another cannot crash or stall it. Runs only with same_host on (the
 * default); skipped otherwise. */
#include "harness.h"

#include "dataplane/shm_ring.h"

/* This process's mappings of the same-host transport's memfds (made by
 * the side that connected: ours), at most max: their addresses. */
static int shm_maps(void **out, int max)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (f == NULL)
		return -1;
	char line[512];
	int n = 0;
	while (n < max && fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;
		if (strstr(line, "memfd:tensorwire-shm") != NULL &&
		    sscanf(line, "%lx-%lx", &lo, &hi) == 2)
			out[n++] = (void *)(uintptr_t)lo;
	}
	fclose(f);
	return n;
}

/* w2 calls w0 until w0 says stop, checking every answer: its share of
 * w0's loop must not stall while w1 attacks. Counts its calls in
 * counter. */
static int honest(struct h_worker *w, tw_agent *a)
{
	int64_t i = 0;
	while (!atomic_load(&w->sh->flag[0])) {
		tw_value aa[2] = {tw_value_int(i), tw_value_int(1)};
		tw_value at = H_TUPLE(aa);
		int64_t v;
		tw_status st = h_call_int(a, "w0", "add", &at, &v);
		W_ASSERT(w, st == TW_OK && v == i + 1, "call %" PRId64 ": %s",
			 i, tw_status_name(st));
		atomic_fetch_add(&w->sh->counter, 1);
		i++;
		h_sleep_ms(1);
	}
	return 0;
}

/* The attacks w1 makes on the ring it produces into (ring 0 of its
 * mapping with w0), each on a fresh connection. */
enum attack {
	A_TAIL_UNALIGNED, /* the tail not a multiple of 8 */
	A_TAIL_AHEAD,     /* the tail past the ring's size */
	A_BAD_RECORD,     /* a published record without the magic */
	A_BAD_FRAME,      /* a good record holding a frame header of junk */
	A_NATTACKS
};

static const char *const attack_names[] = {"an unaligned tail",
					   "a tail past the ring",
					   "a record without the magic",
					   "a frame header of junk"};

static void scribble(void *base, enum attack k)
{
	struct shm_ring_ctl *ctl = base;
	uint64_t tail = atomic_load(&ctl->tail);
	/* ring 0's bytes: after both control blocks */
	unsigned char *data = (unsigned char *)base + 2u * SHM_CTL_SIZE;
	uint64_t size = UINT64_C(4) << 20; /* tw_shm_opts' default ring */
	unsigned char junk[64];
	memset(junk, 0xa5, sizeof(junk));
	switch (k) {
	case A_TAIL_UNALIGNED:
		atomic_store(&ctl->tail, tail + 4);
		break;
	case A_TAIL_AHEAD:
		atomic_store(&ctl->tail, tail + size + 64);
		break;
	case A_BAD_RECORD:
		memcpy(data + (tail & (size - 1)), junk, 16);
		atomic_store(&ctl->tail, tail + 16);
		break;
	case A_BAD_FRAME: {
		struct shm_rec r = {.len = sizeof(junk),
				    .type = SHM_REC_DATA,
				    .magic = SHM_REC_MAGIC};
		memcpy(data + (tail & (size - 1)), &r, sizeof(r));
		memcpy(data + ((tail + 8) & (size - 1)), junk, sizeof(junk));
		atomic_store(&ctl->tail, tail + 8 + sizeof(junk));
		break;
	}
	case A_NATTACKS:
		break;
	}
}

/* w1: a call to w0 that hangs ("never"), garbage in the ring under it,
 * then the call must fail (w0 ended the connection) and a new one must
 * work (a new connection); once per attack. */
static int attacker(struct h_worker *w, tw_agent *a)
{
	tw_value aa[2] = {tw_value_int(1), tw_value_int(2)};
	tw_value at = H_TUPLE(aa);
	for (int k = 0; k < A_NATTACKS; k++) {
		int64_t v;
		tw_status st = h_call_int(a, "w0", "add", &at, &v);
		W_ASSERT(w, st == TW_OK && v == 3, "before %s: %s",
			 attack_names[k], tw_status_name(st));
		tw_future *f;
		W_ASSERT(w,
			 tw_rpc_async(a, "w0", "never", NULL, NULL, 0, &f) ==
				 TW_OK,
			 "never");
		h_sleep_ms(20); /* the call is in w0's hands, our loop idle */
		void *maps[4];
		int n = shm_maps(maps, 4);
		W_ASSERT(w, n == 1, "%s: %d mappings of ours", attack_names[k],
			 n);
		scribble(maps[0], (enum attack)k);
		st = tw_future_wait(f, 20000);
		W_ASSERT(w, st == TW_EUNREACHABLE, "%s: the call ended %s",
			 attack_names[k], tw_status_name(st));
		tw_future_release(f);
		/* (the old mapping may linger until our loop reaps it) */
		uint64_t until = h_now_ms() + 10000;
		while (shm_maps(maps, 4) != 0 && h_now_ms() < until)
			h_sleep_ms(2);
	}
	int64_t v;
	tw_status st = h_call_int(a, "w0", "add", &at, &v);
	W_ASSERT(w, st == TW_OK && v == 3, "after the attacks: %s",
		 tw_status_name(st));
	return 0;
}

static int w_garbage(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	int rc = 0;
	if (w->rank == 1) {
		rc = attacker(w, a);
		atomic_store(&w->sh->flag[1], 1);
	} else if (w->rank == 2) {
		rc = honest(w, a);
	} else {
		W_ASSERT(w, h_wait_all(&w->sh->flag[1], 1, -1, 40000),
			 "the attacker never finished");
		atomic_store(&w->sh->flag[0], 1);
		struct tw_agent_stats s;
		tw_agent_get_stats(a, &s);
		W_ASSERT(w, s.conns_shm >= A_NATTACKS + 2,
			 "shm connections %" PRIu64, s.conns_shm);
		fprintf(stderr,
			"[shm] w0 survived %d attacks on its rings; w2's calls "
			"meanwhile: %" PRId64 "\n",
			A_NATTACKS, atomic_load(&w->sh->counter));
	}
	/* w1's "never" calls, whose connections w0 ended, still count as
	 * w0's incoming calls in the shutdown barrier: answered (into
	 * nothing) first. */
	h_never_finish();
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	return rc;
}

Test(agent_shm, garbage_in_a_ring_ends_that_connection_only, .timeout = 120)
{
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	if (!h_same_host(o.same_host) || h_dpdk())
		cr_skip_test("same_host is off: no rings to spoil");
	struct h_shared *sh = h_shared_new();
	h_run_group(3, w_garbage, NULL, sh, 0);
	cr_assert_gt(atomic_load(&sh->counter), 0, "w2 made no calls");
	munmap(sh, sizeof(*sh));
}
