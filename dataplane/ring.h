/* Lock-free bounded rings of pointers (SPSC, MPSC, MPMC), after DPDK's
 * rte_ring: free-running u32 head/tail pairs, producer and consumer on
 * separate cache lines, burst (as many as fit) and bulk (all or nothing). */
#ifndef TW_DATAPLANE_RING_H
#define TW_DATAPLANE_RING_H

#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <tensorwire/status.h>

/*
 * How it works:
 *
 * Each side owns a (head, tail) pair of free-running u32 indices, masked
 * only when a slot is touched, so "full" and "empty" need no wasted slot:
 * prod.head - cons.tail is the number of slots claimed, in [0, size].
 *
 * An enqueue (1) claims n slots by moving prod.head, (2) writes the pointers
 * into them, (3) publishes them by moving prod.tail up to prod.head. A
 * dequeue does the same with cons.head/cons.tail. A producer only reads
 * cons.tail and a consumer only prod.tail, so each side's line is written
 * by its own side alone.
 *
 * Several producers (or consumers) use DPDK's "head/tail sync" mode
 * (rte_ring_hts.h) rather than rte_ring's default MP mode. In the default
 * mode every producer claims at once with a CAS on head and then waits, in
 * claim order, for its predecessors to publish: a waiter is itself holding
 * a claim, so when it is preempted or yields, everyone after it stalls too.
 * Measured on our 2-vCPU VM (4 producers, 1 consumer, 32M items), that
 * convoy turned a ~1 s run into 12-23 s in 2 to 4 runs out of 6 once the
 * wait yielded, which it must, or a waiter spins away its time slice
 * behind a preempted peer. Here (head, tail) is one 64-bit word and a
 * thread claims only when head == tail, i.e. when nobody is between claim
 * and publish: a waiter holds nothing, so pausing and then yielding costs
 * only itself. Only a thread preempted in the few instructions between its
 * claim and its publish can stall the others (tw_ring_wait_idle_).
 * Claims are serialised instead of overlapping; copying a burst of
 * pointers is too short for the overlap to matter.
 *
 * Single-producer (single-consumer) calls skip the claim: nobody else
 * reads their side's head, so one store publishes head and tail together.
 *
 * Memory ordering, named after rte_ring_c11_pvt.h:
 *   R0 (release store publishing head == tail) pairs with
 *   A1 (acquire load of that word by the other side): slot writes by a
 *      producer happen before the consumer that sees the new prod.tail
 *      reads them; slot reads by a consumer happen before a producer that
 *      sees the new cons.tail overwrites the slots.
 *   R0 also pairs with
 *   A0 (acquire load, or failed CAS, of our own side's word by the next
 *      claimer): it sees head == tail only through our R0, so it sees a
 *      counterpart tail at least as new as the one we used (its free or
 *      entries count cannot underflow) and its slot accesses come after
 *      ours.
 */

#define TW_RING_CACHE_LINE 64u

/* Flags for tw_ring_init/tw_ring_create: the default of
 * tw_ring_enqueue_* / tw_ring_dequeue_*. The explicit sp/mp/sc/mc variants
 * ignore them. Multi-producer/multi-consumer is the default because it is
 * the safe one. */
#define TW_RING_F_SP_ENQ 0x1u /* default enqueue is single-producer */
#define TW_RING_F_SC_DEQ 0x2u /* default dequeue is single-consumer */
#define TW_RING_F_MPMC 0x0u
#define TW_RING_F_MPSC TW_RING_F_SC_DEQ
#define TW_RING_F_SPSC (TW_RING_F_SP_ENQ | TW_RING_F_SC_DEQ)
#define TW_RING_F_MASK_ (TW_RING_F_SP_ENQ | TW_RING_F_SC_DEQ)

/* Largest count: the distance head - tail must fit the u32 arithmetic with
 * room to spare (as RTE_RING_SZ_MASK). */
#define TW_RING_SZ_MAX (UINT32_C(1) << 31)

/* Pauses of a waiting claimer before it starts yielding the CPU. A running
 * peer publishes within a few hundred cycles; one that has not after this
 * long (a pause is ~100 ns on our VMs: ~25 us) is most likely preempted
 * and needs us off its core. */
#define TW_RING_SPINS_BEFORE_YIELD 256u

/* One side's indices in one word, so a claimer can see "nobody between
 * claim and publish" (head == tail) and claim in a single CAS. */
struct tw_ring_headtail {
	_Atomic uint64_t ht; /* tail << 32 | head; see tw_ring_ht_* */
};

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2,
	       "the ring needs lock-free 64-bit atomics");

static inline uint32_t tw_ring_ht_head_(uint64_t v)
{
	return (uint32_t)v;
}

static inline uint32_t tw_ring_ht_tail_(uint64_t v)
{
	return (uint32_t)(v >> 32);
}

static inline uint64_t tw_ring_ht_(uint32_t head, uint32_t tail)
{
	return (uint64_t)tail << 32 | head;
}

typedef struct tw_ring {
	/* Read-only after init: on a line of its own so that neither side's
	 * writes to its head/tail evict it from the other side's cache. */
	alignas(TW_RING_CACHE_LINE) uint32_t size; /* slots, a power of two */
	uint32_t mask;                             /* size - 1 */
	uint32_t flags;                            /* TW_RING_F_* */

	/* Written by producers only. */
	alignas(TW_RING_CACHE_LINE) struct tw_ring_headtail prod;
	/* Guard: the adjacent-line prefetcher pulls lines in 128-byte pairs,
	 * which would make prod and cons share one again. */
	alignas(TW_RING_CACHE_LINE) char guard0_[TW_RING_CACHE_LINE];
	/* Written by consumers only. */
	alignas(TW_RING_CACHE_LINE) struct tw_ring_headtail cons;
	alignas(TW_RING_CACHE_LINE) char guard1_[TW_RING_CACHE_LINE];

	alignas(TW_RING_CACHE_LINE) void *slots[];
} tw_ring;

_Static_assert(offsetof(tw_ring, prod) % TW_RING_CACHE_LINE == 0,
	       "producer head/tail must start a cache line");
_Static_assert(offsetof(tw_ring, prod) >= TW_RING_CACHE_LINE,
	       "producer must not share the read-only line");
_Static_assert(offsetof(tw_ring, cons) % TW_RING_CACHE_LINE == 0,
	       "consumer head/tail must start a cache line");
_Static_assert(offsetof(tw_ring, cons) - offsetof(tw_ring, prod) >=
		       2 * TW_RING_CACHE_LINE,
	       "a guard line must separate producer and consumer");
_Static_assert(offsetof(tw_ring, slots) - offsetof(tw_ring, cons) >=
		       2 * TW_RING_CACHE_LINE,
	       "a guard line must separate consumer and slots");
_Static_assert(sizeof(tw_ring) % TW_RING_CACHE_LINE == 0,
	       "slots must start a cache line");

/* Internal: whether a call must take all n (bulk) or as many as fit. */
enum tw_ring_behavior_ { TW_RING_BULK_, TW_RING_BURST_ };

/* Internal: one spin of a wait loop; cheap on the core's sibling thread. */
static inline void tw_ring_pause_(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Bytes needed for a ring of count slots (header included, a multiple of
 * 64), or 0 when count is 0, not a power of two or above TW_RING_SZ_MAX. */
static inline size_t tw_ring_memsize(uint32_t count)
{
	if (count == 0 || count > TW_RING_SZ_MAX || (count & (count - 1)) != 0)
		return 0;
#if SIZE_MAX <= UINT32_MAX
	/* Only a 32-bit size_t can overflow the byte count. */
	if (count >
	    (SIZE_MAX - sizeof(tw_ring) - TW_RING_CACHE_LINE) / sizeof(void *))
		return 0;
#endif
	size_t sz = sizeof(tw_ring) + (size_t)count * sizeof(void *);
	return (sz + TW_RING_CACHE_LINE - 1) &
	       ~(size_t)(TW_RING_CACHE_LINE - 1);
}

/* Initialise a ring of count slots in caller memory of at least
 * tw_ring_memsize(count) bytes, 64-byte aligned. count must be a power of
 * two in 1..TW_RING_SZ_MAX: it is rejected, not rounded, so the caller
 * always gets the capacity it asked for (all count slots are usable).
 * flags: TW_RING_F_*. Returns TW_OK, or TW_EINVAL for a NULL or misaligned
 * ring, a bad count or unknown flags. Not thread-safe. */
static inline tw_status tw_ring_init(tw_ring *r, uint32_t count, unsigned flags)
{
	if (r == NULL || ((uintptr_t)r & (TW_RING_CACHE_LINE - 1)) != 0)
		return TW_EINVAL;
	if (tw_ring_memsize(count) == 0 || (flags & ~TW_RING_F_MASK_) != 0)
		return TW_EINVAL;
	r->size = count;
	r->mask = count - 1;
	r->flags = flags;
	atomic_init(&r->prod.ht, 0);
	atomic_init(&r->cons.ht, 0);
	return TW_OK;
}

/* Allocate (aligned_alloc) and initialise a ring; arguments as
 * tw_ring_init. Returns TW_OK and *out, TW_EINVAL, or TW_ENOMEM. */
static inline tw_status tw_ring_create(uint32_t count, unsigned flags,
				       tw_ring **out)
{
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	size_t sz = tw_ring_memsize(count);
	if (sz == 0 || (flags & ~TW_RING_F_MASK_) != 0)
		return TW_EINVAL;
	/* sz is a multiple of the alignment, as C17 aligned_alloc wants. */
	tw_ring *r = aligned_alloc(TW_RING_CACHE_LINE, sz);
	if (r == NULL)
		return TW_ENOMEM;
	tw_status st = tw_ring_init(r, count, flags);
	if (st != TW_OK) {
		free(r);
		return st;
	}
	*out = r;
	return TW_OK;
}

/* Free a ring from tw_ring_create; NULL is ignored. Entries still in the
 * ring are not touched (they are the caller's). */
static inline void tw_ring_free(tw_ring *r)
{
	free(r);
}

/* Number of slots (the capacity). */
static inline uint32_t tw_ring_capacity(const tw_ring *r)
{
	return r->size;
}

/* Entries ready to dequeue: exact when the ring is quiescent, a snapshot
 * in 0..capacity otherwise. */
static inline uint32_t tw_ring_count(const tw_ring *r)
{
	/* Acquire on cons keeps the prod load after it, so the prod.tail we
	 * read is at least as new: the difference cannot go negative, only
	 * overshoot (by entries that came and went between the loads), which
	 * the clamp absorbs. The casts drop const: C11 atomic loads want a
	 * non-const pointer, and nothing is written. */
	uint32_t ct = tw_ring_ht_tail_(atomic_load_explicit(
		(_Atomic uint64_t *)&r->cons.ht, memory_order_acquire));
	uint32_t pt = tw_ring_ht_tail_(atomic_load_explicit(
		(_Atomic uint64_t *)&r->prod.ht, memory_order_acquire));
	uint32_t n = pt - ct;
	return n > r->size ? r->size : n;
}

/* Free slots: capacity - tw_ring_count (same snapshot caveat). */
static inline uint32_t tw_ring_free_count(const tw_ring *r)
{
	return r->size - tw_ring_count(r);
}

/* 1 when tw_ring_count is 0 (a snapshot). */
static inline int tw_ring_empty(const tw_ring *r)
{
	return tw_ring_count(r) == 0;
}

/* 1 when tw_ring_count is the capacity (a snapshot). */
static inline int tw_ring_full(const tw_ring *r)
{
	return tw_ring_count(r) == r->size;
}

/* Internal: wait until nobody on side d is between claim and publish,
 * and return its word (head == tail). Pauses first, then yields: the one
 * we wait for is either about to publish or preempted, and then it needs
 * our core more than we do. */
static inline uint64_t tw_ring_wait_idle_(struct tw_ring_headtail *d,
					  uint64_t v)
{
	unsigned spins = 0;

	while (tw_ring_ht_head_(v) != tw_ring_ht_tail_(v)) {
		if (spins < TW_RING_SPINS_BEFORE_YIELD) {
			spins++;
			tw_ring_pause_();
		} else {
			sched_yield();
		}
		/* A0: pairs with R0 of the thread we wait for. */
		v = atomic_load_explicit(&d->ht, memory_order_acquire);
	}
	return v;
}

/*
 * Internal: claim up to n slots on side d, whose counterpart is s.
 * capacity is the ring size for producers (free = size + cons.tail -
 * prod.head) and 0 for consumers (entries = prod.tail - cons.head).
 * Returns the number claimed (0 or n for BULK), *old_head the first claimed
 * index and *entries what was available before the claim. In single mode
 * nothing is written: the caller's publish moves head and tail at once.
 */
static inline unsigned tw_ring_move_head_(struct tw_ring_headtail *d,
					  const struct tw_ring_headtail *s,
					  uint32_t capacity, unsigned n,
					  enum tw_ring_behavior_ behavior,
					  int single, uint32_t *old_head,
					  uint32_t *entries)
{
	const unsigned want = n;
	uint64_t v;
	uint32_t head, stail;

	if (single) {
		/* Relaxed: only this thread writes d. */
		head = tw_ring_ht_head_(
			atomic_load_explicit(&d->ht, memory_order_relaxed));
		/* A1: pairs with R0 of the other side. */
		stail = tw_ring_ht_tail_(atomic_load_explicit(
			(_Atomic uint64_t *)&s->ht, memory_order_acquire));
		/* Modulo 2^32: always in [0, size] whatever the wrap. */
		*entries = capacity + stail - head;
		if (n > *entries)
			n = behavior == TW_RING_BULK_ ? 0 : *entries;
		*old_head = head;
		return n;
	}

	/* A0: pairs with R0 of the last publisher on our side. */
	v = atomic_load_explicit(&d->ht, memory_order_acquire);
	do {
		v = tw_ring_wait_idle_(d, v);
		head = tw_ring_ht_head_(v);
		n = want;
		/* A1: pairs with R0 of the other side. */
		stail = tw_ring_ht_tail_(atomic_load_explicit(
			(_Atomic uint64_t *)&s->ht, memory_order_acquire));
		*entries = capacity + stail - head;
		if (n > *entries)
			n = behavior == TW_RING_BULK_ ? 0 : *entries;
		if (n == 0)
			break;
		/* Claim [head, head + n) while tail stays at head: others now
		 * wait in tw_ring_wait_idle_. Acquire on success and on
		 * failure (A0 again): the value compared is some publisher's
		 * R0, and on failure v is reloaded for the retry. Weak: we
		 * loop anyway. */
	} while (!atomic_compare_exchange_weak_explicit(
		&d->ht, &v, tw_ring_ht_(head + n, head), memory_order_acquire,
		memory_order_acquire));
	*old_head = head;
	return n;
}

/* Internal: publish [old, old + n) on side d: head and tail both move to
 * old + n. Only the claimer writes d until this store, so a plain store
 * (no CAS) is enough, in both modes. */
static inline void tw_ring_publish_(struct tw_ring_headtail *d, uint32_t old,
				    unsigned n)
{
	/* R0: pairs with A1 of the other side and A0 of our next claimer. */
	atomic_store_explicit(&d->ht, tw_ring_ht_(old + n, old + n),
			      memory_order_release);
}

/* Internal: the whole enqueue; single selects the SP path. */
static inline unsigned tw_ring_do_enqueue_(tw_ring *r, void *const *objs,
					   unsigned n,
					   enum tw_ring_behavior_ behavior,
					   int single, unsigned *free_space)
{
	uint32_t head, free_entries;

	n = tw_ring_move_head_(&r->prod, &r->cons, r->size, n, behavior, single,
			       &head, &free_entries);
	/* Plain stores: the slots are ours alone between the head claim and
	 * the tail publish; R0/A1 order them against the consumer. */
	for (unsigned i = 0; i < n; i++)
		r->slots[(head + i) & r->mask] = objs[i];
	if (n != 0)
		tw_ring_publish_(&r->prod, head, n);
	if (free_space != NULL)
		*free_space = free_entries - n;
	return n;
}

/* Internal: the whole dequeue; single selects the SC path. */
static inline unsigned tw_ring_do_dequeue_(tw_ring *r, void **objs, unsigned n,
					   enum tw_ring_behavior_ behavior,
					   int single, unsigned *available)
{
	uint32_t head, entries;

	n = tw_ring_move_head_(&r->cons, &r->prod, 0, n, behavior, single,
			       &head, &entries);
	for (unsigned i = 0; i < n; i++)
		objs[i] = r->slots[(head + i) & r->mask];
	if (n != 0)
		tw_ring_publish_(&r->cons, head, n);
	if (available != NULL)
		*available = entries - n;
	return n;
}

/*
 * Enqueue. objs holds n pointers (any value, NULL included). free_space,
 * when not NULL, receives the free slots left after the call (a snapshot).
 *
 * bulk:  enqueue all n or none. Returns n or 0.
 * burst: enqueue as many as fit. Returns the number enqueued, 0..n.
 *
 * sp_: only one thread enqueues on this ring at a time. Never waits.
 * mp_: any number of threads may enqueue concurrently. May wait (pause,
 *      then yield) while another producer is between claim and publish.
 * unprefixed: sp_ if the ring was made with TW_RING_F_SP_ENQ, else mp_.
 * None of them sleeps or allocates.
 */
static inline unsigned tw_ring_sp_enqueue_bulk(tw_ring *r, void *const *objs,
					       unsigned n, unsigned *free_space)
{
	return tw_ring_do_enqueue_(r, objs, n, TW_RING_BULK_, 1, free_space);
}

/* Multi-producer bulk enqueue. Returns n or 0. */
static inline unsigned tw_ring_mp_enqueue_bulk(tw_ring *r, void *const *objs,
					       unsigned n, unsigned *free_space)
{
	return tw_ring_do_enqueue_(r, objs, n, TW_RING_BULK_, 0, free_space);
}

/* Bulk enqueue in the ring's default producer mode. Returns n or 0. */
static inline unsigned tw_ring_enqueue_bulk(tw_ring *r, void *const *objs,
					    unsigned n, unsigned *free_space)
{
	return tw_ring_do_enqueue_(r, objs, n, TW_RING_BULK_,
				   (r->flags & TW_RING_F_SP_ENQ) != 0,
				   free_space);
}

/* Single-producer burst enqueue. Returns the number enqueued, 0..n. */
static inline unsigned tw_ring_sp_enqueue_burst(tw_ring *r, void *const *objs,
						unsigned n,
						unsigned *free_space)
{
	return tw_ring_do_enqueue_(r, objs, n, TW_RING_BURST_, 1, free_space);
}

/* Multi-producer burst enqueue. Returns the number enqueued, 0..n. */
static inline unsigned tw_ring_mp_enqueue_burst(tw_ring *r, void *const *objs,
						unsigned n,
						unsigned *free_space)
{
	return tw_ring_do_enqueue_(r, objs, n, TW_RING_BURST_, 0, free_space);
}

/* Burst enqueue in the ring's default producer mode. Returns the number
 * enqueued, 0..n. */
static inline unsigned tw_ring_enqueue_burst(tw_ring *r, void *const *objs,
					     unsigned n, unsigned *free_space)
{
	return tw_ring_do_enqueue_(r, objs, n, TW_RING_BURST_,
				   (r->flags & TW_RING_F_SP_ENQ) != 0,
				   free_space);
}

/*
 * Dequeue into objs (room for n pointers), in FIFO order. available, when
 * not NULL, receives the entries left after the call (a snapshot).
 *
 * bulk:  dequeue exactly n or none. Returns n or 0.
 * burst: dequeue as many as are there, up to n. Returns the number
 *        dequeued, 0..n.
 *
 * sc_: only one thread dequeues from this ring at a time. Never waits.
 * mc_: any number of threads may dequeue concurrently. May wait (pause,
 *      then yield) while another consumer is between claim and publish.
 * unprefixed: sc_ if the ring was made with TW_RING_F_SC_DEQ, else mc_.
 */
static inline unsigned tw_ring_sc_dequeue_bulk(tw_ring *r, void **objs,
					       unsigned n, unsigned *available)
{
	return tw_ring_do_dequeue_(r, objs, n, TW_RING_BULK_, 1, available);
}

/* Multi-consumer bulk dequeue. Returns n or 0. */
static inline unsigned tw_ring_mc_dequeue_bulk(tw_ring *r, void **objs,
					       unsigned n, unsigned *available)
{
	return tw_ring_do_dequeue_(r, objs, n, TW_RING_BULK_, 0, available);
}

/* Bulk dequeue in the ring's default consumer mode. Returns n or 0. */
static inline unsigned tw_ring_dequeue_bulk(tw_ring *r, void **objs, unsigned n,
					    unsigned *available)
{
	return tw_ring_do_dequeue_(r, objs, n, TW_RING_BULK_,
				   (r->flags & TW_RING_F_SC_DEQ) != 0,
				   available);
}

/* Single-consumer burst dequeue. Returns the number dequeued, 0..n. */
static inline unsigned tw_ring_sc_dequeue_burst(tw_ring *r, void **objs,
						unsigned n, unsigned *available)
{
	return tw_ring_do_dequeue_(r, objs, n, TW_RING_BURST_, 1, available);
}

/* Multi-consumer burst dequeue. Returns the number dequeued, 0..n. */
static inline unsigned tw_ring_mc_dequeue_burst(tw_ring *r, void **objs,
						unsigned n, unsigned *available)
{
	return tw_ring_do_dequeue_(r, objs, n, TW_RING_BURST_, 0, available);
}

/* Burst dequeue in the ring's default consumer mode. Returns the number
 * dequeued, 0..n. */
static inline unsigned tw_ring_dequeue_burst(tw_ring *r, void **objs,
					     unsigned n, unsigned *available)
{
	return tw_ring_do_dequeue_(r, objs, n, TW_RING_BURST_,
				   (r->flags & TW_RING_F_SC_DEQ) != 0,
				   available);
}

/* Test hook: restart an empty, quiescent ring with every index at idx, so
 * tests can cross the u32 wrap without cycling 2^32 entries. Returns
 * TW_EINVAL if the ring is not empty. Not for production use. */
static inline tw_status tw_ring_test_set_index_(tw_ring *r, uint32_t idx)
{
	if (tw_ring_count(r) != 0)
		return TW_EINVAL;
	atomic_store_explicit(&r->prod.ht, tw_ring_ht_(idx, idx),
			      memory_order_relaxed);
	atomic_store_explicit(&r->cons.ht, tw_ring_ht_(idx, idx),
			      memory_order_relaxed);
	return TW_OK;
}

#endif
