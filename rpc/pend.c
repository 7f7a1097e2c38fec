/* The pending-call table (pend.h). Request ids come from one counter per
 * loop, so the calls in flight hold a run of consecutive ids: the id
 * itself is the hash, they sit in consecutive home slots, and nothing is
 * displaced unless a call stays in flight while the table's size in newer
 * calls goes by. With nothing displaced, no probe run passes through any
 * slot and removal is O(1) however many calls are in flight; with some,
 * removal walks the run after the slot (backward shift, no tombstones). */
#include <stdbool.h>
#include <stdlib.h>

#include "rpc/pend.h"

int pend_init(struct pend_table *p, uint32_t cap)
{
	p->slots = calloc(cap, sizeof(p->slots[0]));
	if (p->slots == NULL)
		return -1;
	p->mask = cap - 1;
	p->count = 0;
	p->displaced = 0;
	return 0;
}

void pend_fini(struct pend_table *p)
{
	free(p->slots);
	p->slots = NULL;
	p->count = 0;
	p->displaced = 0;
}

static inline uint32_t home(const struct pend_table *p, uint64_t id)
{
	return (uint32_t)id & p->mask;
}

static void place(struct pend_table *p, uint64_t id, void *v)
{
	uint32_t i = home(p, id);
	while (p->slots[i].v != NULL)
		i = (i + 1) & p->mask;
	p->slots[i] = (struct pend_slot){.id = id, .v = v};
	p->count++;
	p->displaced += i != home(p, id);
}

int pend_insert(struct pend_table *p, uint64_t id, void *v)
{
	if ((p->count + 1) * 2 > p->mask + 1) {
		struct pend_table n;
		if (pend_init(&n, (p->mask + 1) * 2) != 0)
			return -1;
		for (uint32_t i = 0; i <= p->mask; i++)
			if (p->slots[i].v != NULL)
				place(&n, p->slots[i].id, p->slots[i].v);
		free(p->slots);
		*p = n;
	}
	place(p, id, v);
	return 0;
}

static uint32_t slot_of(const struct pend_table *p, uint64_t id)
{
	uint32_t i = home(p, id);
	while (p->slots[i].v != NULL && p->slots[i].id != id)
		i = (i + 1) & p->mask;
	return i;
}

void *pend_find(const struct pend_table *p, uint64_t id)
{
	return p->slots[slot_of(p, id)].v;
}

void *pend_remove(struct pend_table *p, uint64_t id)
{
	uint32_t i = slot_of(p, id);
	void *v = p->slots[i].v;
	if (v == NULL)
		return NULL;
	p->count--;
	p->displaced -= i != home(p, id);
	if (p->displaced == 0) {
		p->slots[i].v = NULL;
		return v;
	}
	for (uint32_t j = i;;) {
		j = (j + 1) & p->mask;
		if (p->slots[j].v == NULL)
			break;
		uint32_t k = home(p, p->slots[j].id);
		/* The entry at j may fill the hole at i unless its home lies
		 * cyclically in (i, j]; if it moves, j was not its home, and
		 * i may be. */
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			p->displaced -= i == k;
			p->slots[i] = p->slots[j];
			i = j;
		}
	}
	p->slots[i].v = NULL;
	return v;
}
