/* Internal: the function registry, name -> handler. Lookups are lock-free
 * from any thread (run loops, executors); registration may happen at any
 * time from any thread. */
#ifndef TW_RPC_REGISTRY_H
#define TW_RPC_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/agent.h>
#include <tensorwire/status.h>

/*
 * One registered function. Immutable once published, and never freed before
 * registry_fini, so a lookup may keep the pointer for as long as the agent
 * lives (a queued executor job does). Issue 4 (schemas, overloads) hangs
 * its data off ext and chains overloads through next_overload.
 */
struct reg_entry {
	const char *name; /* NUL-terminated, owned */
	uint32_t name_len;
	uint32_t hash;
	tw_handler_fn fn;
	void *arg;
	unsigned flags; /* TW_FN_* */
	void *ext;      /* schema'd entries: the overload's data (a
			 * struct reg_overload, rpc/invoke.h); NULL
			 * for a plain entry */
	void (*ext_free)(void *ext);
	const char *overload; /* schema'd entries: overload name, owned */
	/* Schema'd entries: the next overload of the same name, in
	 * registration order (the table holds the first). Appended under the
	 * lock with a release store; readers walk it lock-free. */
	_Atomic(struct reg_entry *) next_overload;
	struct reg_entry *all_next; /* every entry ever made, for fini */
	/* Its statistics slot + 1 (rpc/stats.h), 0 until a served call
	 * looked it up: a name's slot never changes. Any loop, relaxed. */
	_Atomic uint32_t stats_slot;
};

/* A published table: open addressing, linear probing, power-of-two slots,
 * at most half full. Entries are never removed, so a writer may fill an
 * empty slot of the published table (a release store a reader either sees
 * or not: probe runs only grow); growing copies into a new table, which is
 * then published (copy on write) and the old one retired. */
struct reg_table {
	uint32_t mask; /* slots - 1 */
	_Atomic uint32_t count;
	struct reg_table *retired_next;
	_Atomic(struct reg_entry *) slots[];
};

struct registry {
	_Atomic(struct reg_table *) table;
	pthread_mutex_t lock;      /* writers */
	struct reg_table *retired; /* outgrown tables, freed at fini: a
				    * reader may still be probing one
				    * (O(log n) of them) */
	struct reg_entry *all;     /* every entry, freed at fini */
};

tw_status registry_init(struct registry *r);

/* Free every table and entry. No lookup may run any more. */
void registry_fini(struct registry *r);

/* Add name. TW_EBUSY when taken ("function 'x' is already registered"),
 * TW_EINVAL for an empty or overlong name (over 1024 bytes), unknown flags
 * or a NULL fn, TW_ENOMEM; every failure records its reason (tw_errmsg). */
tw_status registry_add(struct registry *r, const char *name, tw_handler_fn fn,
		       void *arg, unsigned flags);

/* The entry for name (len bytes, need not be NUL-terminated), or NULL.
 * Lock-free; safe against concurrent registry_add. */
const struct reg_entry *registry_find(const struct registry *r,
				      const char *name, size_t len);

/*
 * Add an overload of a schema'd name: the first one of name is published
 * in the table with fn = dispatch and arg = the entry itself; later ones
 * are appended to its overload chain (their fn/arg are unused). ext is
 * owned by the entry from TW_OK on (freed with ext_free at fini).
 * TW_EBUSY when name is a plain entry or already has this overload;
 * TW_EINVAL for a bad name or flags, or flags differing from the first
 * overload's (all overloads of a name run in the same place); TW_ENOMEM.
 * Every failure records its reason (tw_errmsg).
 */
tw_status registry_add_overload(struct registry *r, const char *name,
				const char *overload, tw_handler_fn dispatch,
				void *ext, void (*ext_free)(void *),
				unsigned flags);

/* Every entry (overloads included), in no particular order: a malloc'd
 * array the caller frees. Entries stay valid until registry_fini. */
tw_status registry_snapshot(struct registry *r, const struct reg_entry ***out,
			    size_t *n);

/* Number of registered names (snapshot). */
uint32_t registry_count(const struct registry *r);

#define REGISTRY_NAME_MAX 1024u

/* The hash the table keys names by (reg_entry.hash): the statistics'
 * function table (rpc/stats.h) keys by it too. */
uint32_t registry_hash(const char *name, size_t len);

#endif
