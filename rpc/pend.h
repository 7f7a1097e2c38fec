/* The pending-call table of one run loop: request id -> call record, an
 * open-addressing hash with linear probing and backward-shift deletion.
 * Loop thread only; nothing here allocates except growth, which doubles
 * (amortised, never per call in steady state). */
#ifndef TW_RPC_PEND_H
#define TW_RPC_PEND_H

#include <stdint.h>

struct pend_slot {
	uint64_t id;
	void *v; /* NULL: empty */
};

struct pend_table {
	struct pend_slot *slots;
	uint32_t mask;
	uint32_t count;
	uint32_t displaced; /* entries not in their home slot */
};

/* cap: a power of two. 0, or -1 without memory. */
int pend_init(struct pend_table *p, uint32_t cap);
void pend_fini(struct pend_table *p);
/* Adds id -> v (v not NULL, id not present). 0, or -1 without memory
 * (nothing added). Keeps the table at most half full. */
int pend_insert(struct pend_table *p, uint64_t id, void *v);
/* What id maps to, or NULL. */
void *pend_find(const struct pend_table *p, uint64_t id);
/* Removes id; what it mapped to, or NULL if absent. */
void *pend_remove(struct pend_table *p, uint64_t id);

#endif
