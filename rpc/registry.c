/* Function registry: an insert-only hash table that run loops read without
 * locks (one acquire load per probe); it grows copy-on-write behind an
 * atomic pointer. */
#include "rpc/registry.h"

#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"

/* One mixing step: multiply, then fold the high bits down (they are the
 * well-mixed ones, and the table takes the low bits). */
static inline uint64_t hash_mix(uint64_t h, uint64_t w)
{
	h = (h ^ w) * UINT64_C(0x9E3779B97F4A7C15);
	return h ^ (h >> 32);
}

/* Every call served looks its function up: eight bytes per step, the last
 * word overlapping the one before rather than a byte loop; only names
 * under eight bytes go bytewise. The length is mixed in first. A collision
 * costs a probe, never a wrong match: table_find compares the names. */
static uint32_t name_hash(const char *s, size_t len)
{
	uint64_t h = hash_mix(0, len), w;
	if (len < 8) {
		w = 0;
		for (size_t i = 0; i < len; i++)
			w |= (uint64_t)(unsigned char)s[i] << (8 * i);
		return (uint32_t)hash_mix(h, w);
	}
	for (size_t i = 0; i + 8 < len; i += 8) {
		memcpy(&w, s + i, 8);
		h = hash_mix(h, w);
	}
	memcpy(&w, s + len - 8, 8);
	return (uint32_t)hash_mix(h, w);
}

uint32_t registry_hash(const char *name, size_t len)
{
	return name_hash(name, len);
}

static struct reg_table *table_new(uint32_t nslots)
{
	struct reg_table *t =
		calloc(1, sizeof(*t) + (size_t)nslots * sizeof(t->slots[0]));
	if (t == NULL)
		return NULL;
	t->mask = nslots - 1;
	return t;
}

/* Insert (writer only, under the lock). Release: a reader that loads the
 * slot sees the entry's fields. */
static void table_put(struct reg_table *t, struct reg_entry *e)
{
	uint32_t i = e->hash & t->mask;
	while (atomic_load_explicit(&t->slots[i], memory_order_relaxed) != NULL)
		i = (i + 1) & t->mask;
	atomic_store_explicit(&t->slots[i], e, memory_order_release);
	atomic_store_explicit(
		&t->count,
		atomic_load_explicit(&t->count, memory_order_relaxed) + 1,
		memory_order_relaxed);
}

tw_status registry_init(struct registry *r)
{
	struct reg_table *t = table_new(16);
	if (t == NULL)
		return tw_fail_static(TW_ENOMEM, "out of memory for the "
						 "function registry");
	if (pthread_mutex_init(&r->lock, NULL) != 0) {
		free(t);
		return tw_fail_static(TW_ENOMEM, "cannot create the function "
						 "registry's lock");
	}
	atomic_init(&r->table, t);
	r->retired = NULL;
	r->all = NULL;
	return TW_OK;
}

void registry_fini(struct registry *r)
{
	free(atomic_load_explicit(&r->table, memory_order_relaxed));
	atomic_store_explicit(&r->table, NULL, memory_order_relaxed);
	while (r->retired != NULL) {
		struct reg_table *t = r->retired;
		r->retired = t->retired_next;
		free(t);
	}
	while (r->all != NULL) {
		struct reg_entry *e = r->all;
		r->all = e->all_next;
		if (e->ext_free != NULL)
			e->ext_free(e->ext);
		free((void *)e->overload);
		free((void *)e->name);
		free(e);
	}
	pthread_mutex_destroy(&r->lock);
}

static const struct reg_entry *
table_find(const struct reg_table *t, const char *name, size_t len, uint32_t h)
{
	for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
		/* Acquire pairs with the release store in table_put. */
		const struct reg_entry *e = atomic_load_explicit(
			&t->slots[i], memory_order_acquire);
		if (e == NULL)
			return NULL;
		if (e->hash == h && e->name_len == len &&
		    memcmp(e->name, name, len) == 0)
			return e;
	}
}

const struct reg_entry *registry_find(const struct registry *r,
				      const char *name, size_t len)
{
	if (name == NULL || len == 0 || len > REGISTRY_NAME_MAX)
		return NULL;
	/* Acquire pairs with the release store in registry_add: the table's
	 * slots and the entries they point at are fully written before. */
	const struct reg_table *t = atomic_load_explicit(&r->table,
							 memory_order_acquire);
	return table_find(t, name, len, name_hash(name, len));
}

uint32_t registry_count(const struct registry *r)
{
	return atomic_load_explicit(
		&atomic_load_explicit(&r->table, memory_order_acquire)->count,
		memory_order_relaxed);
}

static tw_status registry_insert(struct registry *r, struct reg_entry *e);

/* The checks every registration starts with; each refusal says what. */
static tw_status check_name_flags(const char *name, size_t *len, unsigned flags)
{
	if (name == NULL)
		return tw_fail_static(TW_EINVAL, "function name is NULL");
	*len = strlen(name);
	if (*len == 0)
		return tw_fail_static(TW_EINVAL, "function name is empty");
	if (*len > REGISTRY_NAME_MAX)
		return tw_fail(TW_EINVAL,
			       "function name is %zu bytes, over "
			       "the limit of %u",
			       *len, REGISTRY_NAME_MAX);
	if (flags & ~TW_FN_BLOCKING)
		return tw_fail(TW_EINVAL,
			       "unknown flags 0x%x for function "
			       "'%s' (only TW_FN_BLOCKING, 0x%x, exists)",
			       flags & ~TW_FN_BLOCKING, name, TW_FN_BLOCKING);
	return TW_OK;
}

tw_status registry_add(struct registry *r, const char *name, tw_handler_fn fn,
		       void *arg, unsigned flags)
{
	size_t len = 0;
	tw_status st = check_name_flags(name, &len, flags);
	if (st != TW_OK)
		return st;
	if (fn == NULL)
		return tw_fail(TW_EINVAL,
			       "function '%s' has no handler (fn is "
			       "NULL)",
			       name);

	struct reg_entry *e = calloc(1, sizeof(*e));
	char *copy = malloc(len + 1);
	if (e == NULL || copy == NULL) {
		free(e);
		free(copy);
		return tw_fail(TW_ENOMEM,
			       "out of memory registering "
			       "function '%s'",
			       name);
	}
	memcpy(copy, name, len + 1);
	e->name = copy;
	e->name_len = (uint32_t)len;
	e->hash = name_hash(name, len);
	e->fn = fn;
	e->arg = arg;
	e->flags = flags;

	st = registry_insert(r, e);
	if (st != TW_OK) {
		free(copy);
		free(e);
	}
	return st;
}

static tw_status registry_insert_locked(struct registry *r,
					struct reg_entry *e);

/* Publish e (name, hash set) in the table. TW_EBUSY when its name is
 * taken. Takes the lock. */
static tw_status registry_insert(struct registry *r, struct reg_entry *e)
{
	pthread_mutex_lock(&r->lock);
	tw_status st = registry_insert_locked(r, e);
	pthread_mutex_unlock(&r->lock);
	return st;
}

static tw_status registry_insert_locked(struct registry *r, struct reg_entry *e)
{
	const char *name = e->name;
	size_t len = e->name_len;
	struct reg_table *old = atomic_load_explicit(&r->table,
						     memory_order_relaxed);
	if (table_find(old, name, len, e->hash) != NULL)
		return tw_fail(TW_EBUSY, "function '%s' is already registered",
			       name);
	e->all_next = r->all;
	r->all = e;
	uint32_t count = atomic_load_explicit(&old->count,
					      memory_order_relaxed);
	if ((count + 1) * 2 <= old->mask + 1) {
		/* Room: fill a slot of the published table in place. */
		table_put(old, e);
		return TW_OK;
	}
	/* Keep tables at most half full so probes stay short: grow. */
	struct reg_table *t = table_new((old->mask + 1) * 2);
	if (t == NULL) {
		r->all = e->all_next;
		return tw_fail(TW_ENOMEM,
			       "out of memory registering function "
			       "'%s' (growing the table to %u slots)",
			       name, (old->mask + 1) * 2);
	}
	for (uint32_t i = 0; i <= old->mask; i++) {
		struct reg_entry *x = atomic_load_explicit(
			&old->slots[i], memory_order_relaxed);
		if (x != NULL)
			table_put(t, x);
	}
	table_put(t, e);
	/* Release pairs with the acquire in registry_find: the new table's
	 * slots are visible to whoever sees it. The old table stays readable
	 * until fini: a loop may be probing it right now. */
	atomic_store_explicit(&r->table, t, memory_order_release);
	old->retired_next = r->retired;
	r->retired = old;
	return TW_OK;
}

static struct reg_entry *entry_new(const char *name, size_t len,
				   const char *overload)
{
	struct reg_entry *e = calloc(1, sizeof(*e));
	char *copy = malloc(len + 1);
	char *ov = strdup(overload != NULL ? overload : "");
	if (e == NULL || copy == NULL || ov == NULL) {
		free(e);
		free(copy);
		free(ov);
		return NULL;
	}
	memcpy(copy, name, len + 1);
	e->name = copy;
	e->name_len = (uint32_t)len;
	e->hash = name_hash(name, len);
	e->overload = ov;
	atomic_init(&e->next_overload, NULL);
	return e;
}

static void entry_free(struct reg_entry *e)
{
	free((void *)e->overload);
	free((void *)e->name);
	free(e);
}

tw_status registry_add_overload(struct registry *r, const char *name,
				const char *overload, tw_handler_fn dispatch,
				void *ext, void (*ext_free)(void *),
				unsigned flags)
{
	size_t len = 0;
	tw_status st = check_name_flags(name, &len, flags);
	if (st != TW_OK)
		return st;
	if (dispatch == NULL || ext == NULL)
		return tw_fail(TW_EINVAL, "function '%s' has no handler", name);
	struct reg_entry *e = entry_new(name, len, overload);
	if (e == NULL)
		return tw_fail(TW_ENOMEM,
			       "out of memory registering function "
			       "'%s'",
			       name);
	e->fn = dispatch;
	e->arg = e;
	e->flags = flags;
	e->ext = ext;

	/* One writer at a time: the lock orders the find and the append. */
	pthread_mutex_lock(&r->lock);
	struct reg_table *t = atomic_load_explicit(&r->table,
						   memory_order_relaxed);
	struct reg_entry *head = (struct reg_entry *)table_find(t, name, len,
								e->hash);
	if (head == NULL) {
		st = registry_insert_locked(r, e);
		pthread_mutex_unlock(&r->lock);
		if (st != TW_OK) {
			entry_free(e);
			return st;
		}
		e->ext_free = ext_free;
		return TW_OK;
	}
	struct reg_entry *tail = head;
	const char *dot = e->overload[0] != '\0' ? "." : "";
	if (head->ext == NULL) {
		st = tw_fail(TW_EBUSY,
			     "function '%s' is already registered "
			     "(without a schema: it takes no overloads)",
			     name);
	} else if (head->flags != flags) {
		st = tw_fail(TW_EINVAL,
			     "overload '%s%s%s' has flags 0x%x but "
			     "'%s' was registered with 0x%x: all overloads of "
			     "a name run in the same place",
			     name, dot, e->overload, flags, name, head->flags);
	} else {
		for (struct reg_entry *x = head; x != NULL;
		     x = atomic_load_explicit(&x->next_overload,
					      memory_order_relaxed)) {
			if (strcmp(x->overload, e->overload) == 0)
				st = tw_fail(TW_EBUSY,
					     "function '%s%s%s' is "
					     "already registered",
					     name, dot, e->overload);
			tail = x;
		}
	}
	if (st != TW_OK) {
		pthread_mutex_unlock(&r->lock);
		entry_free(e);
		return st;
	}
	e->ext_free = ext_free;
	e->all_next = r->all;
	r->all = e;
	/* Release pairs with the acquire loads of readers walking the chain. */
	atomic_store_explicit(&tail->next_overload, e, memory_order_release);
	pthread_mutex_unlock(&r->lock);
	return TW_OK;
}

tw_status registry_snapshot(struct registry *r, const struct reg_entry ***out,
			    size_t *n)
{
	pthread_mutex_lock(&r->lock);
	size_t cnt = 0;
	for (struct reg_entry *e = r->all; e != NULL; e = e->all_next)
		cnt++;
	const struct reg_entry **v = malloc((cnt ? cnt : 1) * sizeof(*v));
	if (v == NULL) {
		pthread_mutex_unlock(&r->lock);
		return tw_fail(TW_ENOMEM, "out of memory listing %zu functions",
			       cnt);
	}
	size_t i = 0;
	for (struct reg_entry *e = r->all; e != NULL; e = e->all_next)
		v[i++] = e;
	pthread_mutex_unlock(&r->lock);
	*out = v;
	*n = cnt;
	return TW_OK;
}
