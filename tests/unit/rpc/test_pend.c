/* Unit tests for rpc/pend.c: the pending-call table against a plain
 * array model, under the id patterns a loop produces (a sliding window of
 * consecutive ids, stragglers that stay while many newer ids pass, ids
 * that collide modulo the table size) and under random ones. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>

#include "rpc/pend.h"

#define MODEL_MAX 4096

struct model {
	uint64_t id[MODEL_MAX];
	uint32_t n;
};

static void *val(uint64_t id)
{
	return (void *)(uintptr_t)(id * 2 + 1); /* never NULL */
}

static void add(struct pend_table *p, struct model *m, uint64_t id)
{
	cr_assert_eq(pend_insert(p, id, val(id)), 0);
	cr_assert_lt(m->n, MODEL_MAX);
	m->id[m->n++] = id;
}

static void del(struct pend_table *p, struct model *m, uint32_t at)
{
	uint64_t id = m->id[at];
	cr_assert_eq(pend_remove(p, id), val(id), "remove %llu",
		     (unsigned long long)id);
	m->id[at] = m->id[--m->n];
	cr_assert_null(pend_remove(p, id), "removed twice");
}

/* Every id of the model is found, the counters agree with the slots, and
 * the table is at most half full. */
static void check(const struct pend_table *p, const struct model *m)
{
	cr_assert_eq(p->count, m->n);
	for (uint32_t i = 0; i < m->n; i++)
		cr_assert_eq(pend_find(p, m->id[i]), val(m->id[i]), "lost %llu",
			     (unsigned long long)m->id[i]);
	uint32_t used = 0, displaced = 0;
	for (uint32_t i = 0; i <= p->mask; i++)
		if (p->slots[i].v != NULL) {
			used++;
			displaced += ((uint32_t)p->slots[i].id & p->mask) != i;
		}
	cr_assert_eq(used, m->n);
	cr_assert_eq(displaced, p->displaced);
	cr_assert_leq(used * 2, p->mask + 1);
}

Test(pend, window_of_consecutive_ids_stays_undisplaced)
{
	struct pend_table p;
	struct model m = {0};
	cr_assert_eq(pend_init(&p, 1024), 0);
	uint64_t next = 1;
	for (int i = 0; i < 256; i++)
		add(&p, &m, next++);
	for (int i = 0; i < 100000; i++) {
		/* Oldest first (FIFO window), as a pipelined caller. */
		uint32_t oldest = 0;
		for (uint32_t k = 1; k < m.n; k++)
			if (m.id[k] < m.id[oldest])
				oldest = k;
		del(&p, &m, oldest);
		add(&p, &m, next++);
		cr_assert_eq(p.displaced, 0);
	}
	check(&p, &m);
	cr_assert_null(pend_find(&p, next));
	pend_fini(&p);
}

Test(pend, straggler_displaces_and_is_found)
{
	struct pend_table p;
	struct model m = {0};
	cr_assert_eq(pend_init(&p, 16), 0);
	uint64_t next = 1;
	add(&p, &m, next++); /* the straggler: never answered below */
	for (int i = 0; i < 5000; i++) {
		add(&p, &m, next++);
		if (m.n > 6)
			del(&p, &m, 1 + (uint32_t)(i % (m.n - 1)));
		check(&p, &m);
	}
	del(&p, &m, 0);
	check(&p, &m);
	while (m.n > 0) {
		del(&p, &m, m.n / 2);
		check(&p, &m);
	}
	cr_assert_eq(p.displaced, 0);
	pend_fini(&p);
}

Test(pend, colliding_ids_wrap_around_the_end)
{
	struct pend_table p;
	struct model m = {0};
	cr_assert_eq(pend_init(&p, 64), 0);
	/* Homes 62, 63, 0: runs that cross the end of the array. */
	for (uint64_t k = 0; k < 10; k++) {
		add(&p, &m, 62 + 64 * k);
		add(&p, &m, 63 + 64 * k);
	}
	check(&p, &m);
	cr_assert_gt(p.displaced, 0);
	for (uint32_t r = 0; m.n > 0; r = (r * 7 + 3) % 97) {
		del(&p, &m, r % m.n);
		check(&p, &m);
	}
	pend_fini(&p);
}

Test(pend, random_against_model)
{
	struct pend_table p;
	struct model m = {0};
	cr_assert_eq(pend_init(&p, 8), 0);
	srand(12345);
	uint64_t next = 1;
	for (int i = 0; i < 200000; i++) {
		int r = rand() % 100;
		if (m.n < 2000 && (r < 50 || m.n == 0)) {
			/* Mostly the next id; sometimes one far ahead. */
			if (r >= 45)
				next += 1 + rand() % 5000;
			add(&p, &m, next++);
		} else {
			del(&p, &m, (uint32_t)rand() % m.n);
		}
		if (i % 997 == 0)
			check(&p, &m);
	}
	check(&p, &m);
	pend_fini(&p);
}

Test(pend, absent_ids)
{
	struct pend_table p;
	cr_assert_eq(pend_init(&p, 8), 0);
	cr_assert_null(pend_find(&p, 3));
	cr_assert_null(pend_remove(&p, 3));
	cr_assert_eq(pend_insert(&p, 3, val(3)), 0);
	cr_assert_null(pend_find(&p, 11)); /* same home, absent */
	cr_assert_null(pend_remove(&p, 11));
	cr_assert_eq(pend_remove(&p, 3), val(3));
	pend_fini(&p);
}
