/* Remote references: tw_remote, the owner and user tables, to_here, user
 * deletes, and forks: RRefs passed in values (docs/rref.md). */
#include <pthread.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <tensorwire/rref.h>

#include "dataplane/err.h"
#include "dataplane/list.h"
#include "rpc/agent_impl.h"
#include "rpc/rref.h"
#include "rpc/future_impl.h"
#include "rpc/value_wire.h"

/* ---- tables ----------------------------------------------------------- */

/* A user of an owned value: its fork id and the worker holding it.
 * inflight: a fork this owner sent (torch's early fork registration),
 * until its receiver's RREF_CHILD_ACCEPT; it keeps the value all the
 * same. */
struct ent_user {
	tw_guid fork;
	uint32_t holder;
	bool inflight;
};

/* A value this worker owns (under ctx->mu). Freed when nothing keeps it:
 * no user fork, no self fork, no fork in flight, the function done. */
struct owner_ent {
	struct owner_ent *next; /* bucket chain */
	tw_agent *a;
	tw_guid id;
	uint32_t creator;
	tw_future *val;     /* the function's future: its value or error */
	bool running;       /* the function has not completed: kept */
	bool placeholder;   /* known from an RRef sent home before its
			     * REMOTE_CALL: val waits for it */
	uint32_t self_refs; /* the owner's own handles alive */
	uint32_t nusers, capusers;
	struct ent_user *users; /* user forks recorded, in flight too */
	uint32_t forks_pending; /* of them, in flight */
	uint32_t nwait, capwait;
	struct reply_path *waits; /* fetches parked until the value */
};

struct tw_rref;
TAILQ_HEAD(rref_list, tw_rref);

struct ctl_op {
	struct ctl_op *next; /* in rref_ctx.held */
	tw_agent *a;
	uint8_t type;
	uint32_t to;
	tw_rref_id id;
	uint32_t parent; /* FORK_REQUEST: who sent the fork */
	tw_rref *r;      /* FORK_REQUEST: the receiver's handle, kept alive by
		     * its confirmation's reference until fork_settled */
	uint32_t tries;
};

struct fork_wait {
	tw_guid rref, fork;
	struct reply_path p;
};

/* A fork this worker sent of one of its user handles, until its receiver
 * accepts it (RREF_CHILD_ACCEPT). It holds a reference on the handle:
 * the handle's own fork, hence the owner's value, outlives it (G2). */
struct child {
	struct child *next; /* bucket chain */
	tw_guid fork;
	uint32_t dst;
	tw_rref *r;
};
#define CHILD_BUCKETS 1024u

/* Outlives its agent while handles hold it (refs): a handle released after
 * tw_agent_shutdown only frees itself. */
struct rref_ctx {
	pthread_mutex_t mu;
	_Atomic uint32_t refs; /* the agent's, and one per handle */
	bool dead;             /* the agent is gone (under mu) */
	bool closing;          /* graceful shutdown began (under mu) */
	struct rref_list live; /* user handles not yet released */
	/* Keyed (SipHash, a random key per agent): a peer chooses the ids
	 * of the RRefs it creates, and must not pile them into one bucket. */
	unsigned char hkey[crypto_shorthash_KEYBYTES];
	struct owner_ent *buckets[RREF_BUCKETS];
	struct child *children[CHILD_BUCKETS];
	uint32_t *per_peer; /* owned entries by creator (world entries) */
	/* Per creator, the last RREF_TOMBSTONES RRefs it deleted before
	 * this owner had them (a creation that timed out): a REMOTE_CALL
	 * arriving after its delete must not create what nobody will
	 * delete. world * RREF_TOMBSTONES entries, rings. */
	uint64_t *tombs;
	uint32_t *tomb_next;
	uint32_t world;
	struct tw_rref_stats st;
	uint32_t nwaits; /* fetches parked over all values */
	/* FORK_REQUESTs for RRefs not created here yet: a pending user
	 * passed its RRef on, and the receiver's request overtook the
	 * creator's REMOTE_CALL. Answered when it comes (or is refused). */
	uint32_t nfwait, capfwait;
	struct fork_wait *fwaits;
	/* Control messages made before tw_agent_init returned (the agent
	 * cannot send yet), sent once it did (rref_agent_running). */
	_Atomic bool started;
	struct ctl_op *held, **held_tail;
	_Atomic uint64_t next_id;
};

enum { USER_PENDING = 0, USER_CONFIRMED = 1, USER_FAILED = 2 };

struct tw_rref {
	tw_rref_id id; /* what RREF values holding r point at */
	_Atomic uint32_t refs;
	tw_agent *a; /* valid while x->dead is false */
	struct rref_ctx *x;
	TAILQ_ENTRY(tw_rref) link; /* users: in x->live (under mu) */
	bool deleted;              /* its delete was sent (under mu) */
	bool owner;
	_Atomic int state; /* USER_*: a user's creation */
	/* user: the REMOTE_CALL's future, or for a fork this worker
	 * received, its confirmation's (the owner's ACK) */
	tw_future *cf;
	_Atomic uint32_t nchildren; /* of refs, forks sent not accepted */
};

static tw_rref *rref_of(const tw_rref_id *id)
{
	return (tw_rref *)(void *)((char *)(uintptr_t)id -
				   offsetof(struct tw_rref, id));
}

static inline bool guid_eq(tw_guid x, tw_guid y)
{
	return x.created_on == y.created_on && x.local_id == y.local_id;
}

static uint32_t guid_bucket(const struct rref_ctx *x, tw_guid g)
{
	unsigned char in[12], h[crypto_shorthash_BYTES];
	memcpy(in, &g.created_on, 4);
	memcpy(in + 4, &g.local_id, 8);
	crypto_shorthash(h, in, sizeof(in), x->hkey);
	uint32_t b;
	memcpy(&b, h, sizeof(b));
	return b & (RREF_BUCKETS - 1);
}

static struct owner_ent *ent_find(struct rref_ctx *x, tw_guid id)
{
	struct owner_ent *e = x->buckets[guid_bucket(x, id)];
	while (e != NULL && !guid_eq(e->id, id))
		e = e->next;
	return e;
}

static void ent_unlink(struct rref_ctx *x, struct owner_ent *e)
{
	struct owner_ent **pp = &x->buckets[guid_bucket(x, e->id)];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	x->st.owned--;
	x->st.owner_users -= e->nusers - e->forks_pending;
	x->st.forks_pending -= e->forks_pending;
	x->per_peer[e->creator]--;
}

static void ent_free(struct owner_ent *e)
{
	if (e->val != NULL)
		tw_future_release(e->val);
	free(e->users);
	free(e->waits);
	free(e);
}

static bool ent_dead(const struct owner_ent *e)
{
	return !e->running && e->self_refs == 0 && e->nusers == 0;
}

/* Record user fork `fork` held by `holder` (in flight: sent by this
 * owner, not yet accepted). Under mu. TW_EBUSY past RREF_MAX_USERS,
 * TW_ENOMEM; nothing recorded for the reason. */
static tw_status ent_user_add(struct rref_ctx *x, struct owner_ent *e,
			      tw_guid fork, uint32_t holder, bool inflight)
{
	if (e->nusers >= RREF_MAX_USERS)
		return TW_EBUSY;
	if (e->nusers == e->capusers) {
		uint32_t cap = e->capusers ? e->capusers * 2 : 4;
		struct ent_user *u = realloc(e->users, cap * sizeof(*u));
		if (u == NULL)
			return TW_ENOMEM;
		e->users = u;
		e->capusers = cap;
	}
	e->users[e->nusers++] = (struct ent_user){
		.fork = fork, .holder = holder, .inflight = inflight};
	if (inflight) {
		e->forks_pending++;
		x->st.forks_pending++;
	} else {
		x->st.owner_users++;
	}
	return TW_OK;
}

static void ent_user_del(struct rref_ctx *x, struct owner_ent *e, uint32_t i)
{
	if (e->users[i].inflight) {
		e->forks_pending--;
		x->st.forks_pending--;
	} else {
		x->st.owner_users--;
	}
	e->users[i] = e->users[--e->nusers];
}

/* A fork in flight reached its receiver: an ordinary user now. */
static void ent_user_settle(struct rref_ctx *x, struct owner_ent *e, uint32_t i)
{
	if (!e->users[i].inflight)
		return;
	e->users[i].inflight = false;
	e->forks_pending--;
	x->st.forks_pending--;
	x->st.owner_users++;
}

/* The index of user fork `fork` of e, or -1. */
static int64_t ent_user(const struct owner_ent *e, tw_guid fork)
{
	for (uint32_t i = 0; i < e->nusers; i++)
		if (guid_eq(e->users[i].fork, fork))
			return i;
	return -1;
}

/* The index of fork `fork` held by worker `holder`, or -1. */
static int64_t ent_user_of(const struct owner_ent *e, tw_guid fork,
			   uint32_t holder)
{
	int64_t i = ent_user(e, fork);
	return i >= 0 && e->users[i].holder == holder ? i : -1;
}

/* Tombstones: local ids of RRefs created by `creator` whose creator's
 * fork was deleted here before the RRef existed. Under mu. (Local ids
 * start at 1: 0 is an empty slot.) */
static void tomb_add(struct rref_ctx *x, tw_guid id)
{
	uint64_t *t = &x->tombs[(size_t)id.created_on * RREF_TOMBSTONES];
	t[x->tomb_next[id.created_on]++ % RREF_TOMBSTONES] = id.local_id;
}

static bool tomb_has(const struct rref_ctx *x, tw_guid id)
{
	const uint64_t *t = &x->tombs[(size_t)id.created_on * RREF_TOMBSTONES];
	for (uint32_t i = 0; i < RREF_TOMBSTONES; i++)
		if (t[i] == id.local_id && id.local_id != 0)
			return true;
	return false;
}

/* Children: forks this worker sent of its user handles, by fork id. Under
 * mu. */
static struct child **child_slot(struct rref_ctx *x, tw_guid fork)
{
	struct child **pp =
		&x->children[guid_bucket(x, fork) & (CHILD_BUCKETS - 1)];
	while (*pp != NULL && !guid_eq((*pp)->fork, fork))
		pp = &(*pp)->next;
	return pp;
}

static void child_add(struct rref_ctx *x, struct child *c)
{
	struct child **pp =
		&x->children[guid_bucket(x, c->fork) & (CHILD_BUCKETS - 1)];
	c->next = *pp;
	*pp = c;
	x->st.forks_pending++;
}

/* Unlink and return child `fork`, or NULL. */
static struct child *child_take(struct rref_ctx *x, tw_guid fork)
{
	struct child **pp = child_slot(x, fork);
	struct child *c = *pp;
	if (c != NULL) {
		*pp = c->next;
		x->st.forks_pending--;
	}
	return c;
}

/* A new fork id, minted by this worker. */
static tw_guid fork_mint(tw_agent *a)
{
	return (tw_guid){.created_on = a->rank,
			 .local_id = atomic_fetch_add(&a->rref->next_id, 1)};
}

tw_status rref_ctx_init(tw_agent *a)
{
	struct rref_ctx *x = calloc(1, sizeof(*x));
	uint32_t world = a->o.world_size ? a->o.world_size : 1;
	if (x == NULL ||
	    (x->per_peer = calloc(world, sizeof(uint32_t))) == NULL) {
		free(x);
		return tw_fail_static(TW_ENOMEM,
				      "no memory for the RRef tables");
	}
	x->world = world;
	x->tombs = calloc((size_t)world * RREF_TOMBSTONES, sizeof(uint64_t));
	x->tomb_next = calloc(world, sizeof(uint32_t));
	if (x->tombs == NULL || x->tomb_next == NULL || sodium_init() < 0) {
		free(x->tombs);
		free(x->tomb_next);
		free(x->per_peer);
		free(x);
		return tw_fail_static(TW_ENOMEM, "no memory for the RRef "
						 "tables (or libsodium cannot "
						 "start)");
	}
	randombytes_buf(x->hkey, sizeof(x->hkey));
	atomic_init(&x->next_id, 1);
	atomic_init(&x->started, false);
	x->held_tail = &x->held;
	atomic_init(&x->refs, 1);
	TAILQ_INIT(&x->live);
	pthread_mutex_init(&x->mu, NULL);
	a->rref = x;
	return TW_OK;
}

static void ctx_unref(struct rref_ctx *x)
{
	if (atomic_fetch_sub(&x->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&x->mu);
	free(x->fwaits);
	free(x->tombs);
	free(x->tomb_next);
	free(x->per_peer);
	free(x);
}

void rref_ctx_fini(tw_agent *a)
{
	struct rref_ctx *x = a->rref;
	if (x == NULL)
		return;
	pthread_mutex_lock(&x->mu);
	x->dead = true;
	pthread_mutex_unlock(&x->mu);
	for (uint32_t b = 0; b < RREF_BUCKETS; b++) {
		struct owner_ent *e = x->buckets[b];
		while (e != NULL) {
			struct owner_ent *n = e->next;
			ent_free(e);
			e = n;
		}
		x->buckets[b] = NULL;
	}
	/* Control messages held for an init that failed. */
	for (struct ctl_op *op = x->held, *n; op != NULL; op = n) {
		n = op->next;
		if (op->r != NULL) /* its handle waits for this answer */
			tw_future_fail(op->r->cf, TW_ESHUTDOWN, a->rank,
				       AGENT_SHUTDOWN_MSG);
		free(op);
	}
	x->held = NULL;
	/* Forks never accepted: their handles go with them (x->dead: a
	 * release now frees and tells nobody). */
	for (uint32_t b = 0; b < CHILD_BUCKETS; b++) {
		struct child *c = x->children[b];
		x->children[b] = NULL;
		while (c != NULL) {
			struct child *n = c->next;
			tw_rref_release(c->r);
			free(c);
			c = n;
		}
	}
	a->rref = NULL;
	ctx_unref(x);
}

void tw_agent_rref_stats(const tw_agent *a, struct tw_rref_stats *out)
{
	if (out == NULL)
		return;
	memset(out, 0, sizeof(*out));
	if (a == NULL || a->rref == NULL)
		return;
	struct rref_ctx *x = a->rref;
	pthread_mutex_lock(&x->mu);
	*out = x->st;
	out->waiting = x->nwaits;
	pthread_mutex_unlock(&x->mu);
}

tw_status tw_agent_rref_value_users(const tw_agent *a, tw_guid rref,
				    uint32_t *users, uint32_t *forks_pending,
				    bool *self_fork)
{
	if (a == NULL || users == NULL || forks_pending == NULL ||
	    self_fork == NULL)
		return tw_fail_static(TW_EINVAL, "tw_agent_rref_value_users: "
						 "NULL argument");
	struct rref_ctx *x = a->rref;
	pthread_mutex_lock(&x->mu);
	const struct owner_ent *e = ent_find(x, rref);
	if (e != NULL) {
		*users = e->nusers - e->forks_pending;
		*forks_pending = e->forks_pending;
		*self_fork = e->self_refs > 0;
	}
	pthread_mutex_unlock(&x->mu);
	if (e == NULL)
		return tw_fail(TW_ENOENT, "worker '%s' owns no RRef (%u, %llu)",
			       a->name, rref.created_on,
			       (unsigned long long)rref.local_id);
	return TW_OK;
}

/* ---- the owner: values and their answers -------------------------------- */

static tw_value rref_value_of(tw_rref_id *id)
{
	return (tw_value){
		.kind = TW_KIND_RREF, .flags = TW_VALUE_BORROWED, .u.rref = id};
}

/* Answer a fetch with the value (or error) of done future f. */
static void answer_fetch(const struct reply_path *p, tw_future *f)
{
	if (tw_future_status(f) == TW_OK) {
		serve_reply(p, TW_MSG_RREF_FETCH_RET, TW_OK, tw_future_value(f),
			    0, NULL);
		return;
	}
	const tw_error *e = tw_future_error(f);
	serve_reply(p, TW_MSG_RREF_FETCH_RET, e ? e->kind : TW_ERUNTIME, NULL,
		    e ? e->origin : p->a->rank,
		    e ? e->msg : "the RRef's function failed");
}

/* The function that creates an owned value completed (any thread): answer
 * the parked fetches, and free the entry if nothing keeps it. */
static void owner_value_cb(tw_future *f, void *arg)
{
	struct owner_ent *e = arg;
	struct rref_ctx *x = e->a->rref;
	pthread_mutex_lock(&x->mu);
	e->running = false;
	struct reply_path *waits = e->waits;
	uint32_t nwait = e->nwait;
	x->nwaits -= nwait;
	e->waits = NULL;
	e->nwait = e->capwait = 0;
	bool dead = ent_dead(e);
	if (dead)
		ent_unlink(x, e);
	pthread_mutex_unlock(&x->mu);
	for (uint32_t i = 0; i < nwait; i++)
		answer_fetch(&waits[i], f);
	free(waits);
	if (dead)
		ent_free(e);
}

/* A new entry for id created by creator, with user fork `user` (or none:
 * the owner's own handle), counted against the bounds. Under x->mu. NULL
 * with a reason recorded: TW_EBUSY past a bound, TW_ENOMEM. */
static struct owner_ent *ent_new(tw_agent *a, tw_guid id, uint32_t creator,
				 const struct ent_user *user, tw_status *st)
{
	struct rref_ctx *x = a->rref;
	if (x->st.owned >= RREF_MAX_OWNED) {
		*st = tw_fail(TW_EBUSY,
			      "worker '%s' owns %u RRefs, its limit "
			      "(RREF_MAX_OWNED)",
			      a->name, RREF_MAX_OWNED);
		return NULL;
	}
	if (x->per_peer[creator] >= RREF_MAX_PER_PEER) {
		*st = tw_fail(TW_EBUSY,
			      "worker '%s' owns %u RRefs created by worker "
			      "'%s', the limit per worker (RREF_MAX_PER_PEER)",
			      a->name, RREF_MAX_PER_PEER,
			      agent_worker_name(a, creator));
		return NULL;
	}
	struct owner_ent *e = calloc(1, sizeof(*e));
	if (e != NULL && user != NULL &&
	    ent_user_add(x, e, user->fork, user->holder, false) != TW_OK) {
		free(e);
		e = NULL;
	}
	if (e == NULL) {
		*st = tw_fail_static(TW_ENOMEM, "no memory for an owned RRef");
		return NULL;
	}
	e->a = a;
	e->id = id;
	e->creator = creator;
	e->running = true;
	uint32_t b = guid_bucket(x, id);
	e->next = x->buckets[b];
	x->buckets[b] = e;
	x->st.owned++;
	x->per_peer[creator]++;
	*st = TW_OK;
	return e;
}

/* Run fn(args, kwargs) as a call to self and make its future e's value.
 * e is in the table, running; not under x->mu. */
static tw_future *resolve(tw_agent *a, const tw_value *cargs, uint32_t caller,
			  tw_status *st, bool *counted);
static void prun_start(tw_agent *a, tw_future *val, bool counted,
		       const tw_value *cargs, tw_future *out);
static void waits_put(tw_agent *a, bool counted);

static void relay(tw_future *from, tw_future *to, uint32_t self);

/* A placeholder's value (arg, a reference) from its function's. */
static void fill_cb(tw_future *f, void *arg)
{
	tw_future *to = arg;
	relay(f, to, 0);
	tw_future_release(to);
}

/* A placeholder whose REMOTE_CALL will not come (refused, deleted by its
 * creator): its value fails as a creation that timed out. Under mu;
 * returns the future to fail after unlocking (a reference), or NULL. */
static tw_future *placeholder_drop(struct owner_ent *e)
{
	if (e == NULL || !e->placeholder)
		return NULL;
	e->placeholder = false;
	return tw_future_retain(e->val);
}

static void placeholder_fail(tw_agent *a, tw_future *f)
{
	if (f == NULL)
		return;
	tw_future_fail(f, TW_ETIMEDOUT, a->rank, TW_RREF_CREATION_TIMEOUT_MSG);
	tw_future_release(f);
}

static void ent_start(struct owner_ent *e, const char *fn, const tw_value *args,
		      const tw_value *kwargs, uint32_t caller)
{
	tw_agent *a = e->a;
	tw_future *f = NULL;
	tw_status st;
	if (strcmp(fn, TW_RREF_CALL_FN) == 0) {
		/* A proxy's remote(): the RRef it names is read now, while
		 * its holder still holds it (it waits for our REMOTE_RET). */
		bool counted;
		tw_future *val = resolve(a, args, caller, &st, &counted);
		if (val != NULL && (st = tw_future_create(&f)) == TW_OK) {
			prun_start(a, val, counted, args, f);
		} else if (val != NULL) {
			waits_put(a, counted);
			tw_future_release(val);
		}
	} else {
		st = call_self_async(a, fn, args, kwargs, &f);
	}
	if (st != TW_OK) {
		/* Refused at once: the value is that failure. */
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", tw_errmsg(st));
		if (tw_future_create(&f) != TW_OK)
			abort(); /* no memory for 100 bytes: nothing to do */
		tw_future_fail(f, st, a->rank, msg);
	}
	/* Under mu: a peer's request may look it up on another loop. */
	struct rref_ctx *x = a->rref;
	pthread_mutex_lock(&x->mu);
	tw_future *held = e->val; /* a placeholder's, waiting already */
	if (held == NULL)
		e->val = f;
	pthread_mutex_unlock(&x->mu);
	if (held != NULL) {
		/* Its value is the function's: relayed into it. */
		if (tw_future_then(f, fill_cb, tw_future_retain(held)) != TW_OK)
			abort(); /* the first callback needs no allocation */
		tw_future_release(f);
		return;
	}
	if (tw_future_then(f, owner_value_cb, e) != TW_OK)
		abort(); /* the first callback needs no allocation */
}

/* A new owner handle on value `rref` this worker owns (one reference),
 * counted in its entry. When the entry does not exist and may_create
 * (an RRef created by another worker, sent home before its REMOTE_CALL
 * arrived on another connection), it is made now, a placeholder whose
 * value is a future the REMOTE_CALL fills: torch creates the OwnerRRef on
 * whichever message comes first. NULL when there is none (freed, never,
 * tombstoned, a bound, no memory). Not under mu. */
static tw_rref *owner_handle_new(tw_agent *a, tw_guid rref, bool may_create)
{
	struct rref_ctx *x = a->rref;
	tw_rref *r = calloc(1, sizeof(*r));
	tw_future *val = NULL;
	if (r == NULL || (may_create && tw_future_create(&val) != TW_OK)) {
		free(r);
		return NULL;
	}
	pthread_mutex_lock(&x->mu);
	struct owner_ent *e = ent_find(x, rref);
	tw_status st = TW_OK;
	bool made = false;
	if (e == NULL && may_create && !tomb_has(x, rref)) {
		e = ent_new(a, rref, rref.created_on, NULL, &st);
		if (e != NULL) {
			e->placeholder = true;
			e->val = val;
			made = true;
		}
	}
	if (e != NULL)
		e->self_refs++;
	else
		x->st.refused++;
	pthread_mutex_unlock(&x->mu);
	if (made) {
		if (tw_future_then(val, owner_value_cb, e) != TW_OK)
			abort(); /* the first callback needs no allocation */
	} else if (val != NULL) {
		tw_future_release(val);
	}
	if (e == NULL) {
		free(r);
		return NULL;
	}
	r->a = a;
	r->x = x;
	r->id = (tw_rref_id){.owner = a->rank, .rref = rref, .fork = rref};
	r->owner = true;
	atomic_init(&r->refs, 1);
	atomic_init(&r->state, USER_CONFIRMED);
	atomic_fetch_add(&x->refs, 1);
	return r;
}

/* ---- frames at the owner ------------------------------------------------- */

static struct reply_path path_of(struct agent_loop *l, struct conn_state *cs,
				 const tw_frame_hdr *h)
{
	return (struct reply_path){.a = l->a,
				   .l = l,
				   .conn_id = cs->id,
				   .req_id = h->req_id,
				   .caller = h->src};
}

static void refuse(const struct reply_path *p, tw_status kind, const char *fmt,
		   ...) __attribute__((format(printf, 3, 4)));
static void refuse(const struct reply_path *p, tw_status kind, const char *fmt,
		   ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	serve_reply(p, TW_MSG_ACK, kind, NULL, p->a->rank, msg);
}

#define ID_FMT "RRef (%u, %llu) fork (%u, %llu) of owner %u"
#define ID_ARGS(id)                                                            \
	(id).rref.created_on, (unsigned long long)(id).rref.local_id,          \
		(id).fork.created_on, (unsigned long long)(id).fork.local_id,  \
		(id).owner

/* Take the fork requests parked for RRef rref (under mu): *n of them, in
 * a new array (NULL when none). With e, each is recorded as a user of e
 * first (ok[i]: recorded, or why not). */
static struct fork_wait *fwait_take(struct rref_ctx *x, tw_guid rref,
				    struct owner_ent *e, uint32_t *n,
				    tw_status **ok)
{
	*n = 0;
	*ok = NULL;
	uint32_t k = 0;
	for (uint32_t i = 0; i < x->nfwait; i++)
		k += guid_eq(x->fwaits[i].rref, rref);
	if (k == 0)
		return NULL;
	struct fork_wait *out = malloc(k * sizeof(*out));
	tw_status *st = malloc(k * sizeof(*st));
	if (out == NULL || st == NULL) {
		free(out);
		free(st);
		return NULL; /* they time out at their senders and retry */
	}
	for (uint32_t i = 0; i < x->nfwait;) {
		if (!guid_eq(x->fwaits[i].rref, rref)) {
			i++;
			continue;
		}
		out[*n] = x->fwaits[i];
		st[*n] = e == NULL ? TW_EINVAL
			 : ent_user(e, out[*n].fork) >= 0
				 ? TW_OK
				 : ent_user_add(x, e, out[*n].fork,
						out[*n].p.caller, false);
		(*n)++;
		x->fwaits[i] = x->fwaits[--x->nfwait];
	}
	*ok = st;
	return out;
}

/* Answer fork requests taken by fwait_take (not under mu). */
static void fwait_answer(tw_agent *a, tw_guid rref, struct fork_wait *w,
			 uint32_t n, tw_status *ok)
{
	for (uint32_t i = 0; i < n; i++) {
		if (ok[i] == TW_OK)
			serve_reply(&w[i].p, TW_MSG_ACK, TW_OK, &(tw_value){0},
				    0, NULL);
		else
			refuse(&w[i].p, ok[i],
			       "RREF_FORK_REQUEST for RRef (%u, %llu): its "
			       "creation on worker '%s' %s",
			       rref.created_on,
			       (unsigned long long)rref.local_id, a->name,
			       ok[i] == TW_EINVAL ? "was refused or deleted"
						  : "has all the users it may");
	}
	free(w);
	free(ok);
}

static void on_remote_call(struct agent_loop *l, const struct reply_path *p,
			   const tw_frame_hdr *h, const tw_value *pl)
{
	tw_agent *a = l->a;
	struct rref_ctx *x = a->rref;
	tw_rref_id id = *pl->u.items[3].u.rref;
	if (id.owner != a->rank || id.rref.created_on != h->src ||
	    !guid_eq(id.fork, id.rref)) {
		pthread_mutex_lock(&x->mu);
		x->st.refused++;
		pthread_mutex_unlock(&x->mu);
		refuse(p, TW_EINVAL,
		       "REMOTE_CALL from worker '%s' to worker '%s' names " ID_FMT
		       ": a new RRef is owned by its callee and created by "
		       "its caller, with fork id == RRef id",
		       agent_worker_name(a, h->src), a->name, ID_ARGS(id));
		return;
	}
	tw_value ret = rref_value_of(&id);
	pthread_mutex_lock(&x->mu);
	struct owner_ent *e = ent_find(x, id.rref);
	if (e != NULL && e->placeholder && !tomb_has(x, id.rref)) {
		/* Known already from its RRef sent home first: filled now. */
		tw_status st = ent_user_add(x, e, id.fork, h->src, false);
		if (st == TW_OK)
			e->placeholder = false;
		tw_future *drop = st != TW_OK ? placeholder_drop(e) : NULL;
		pthread_mutex_unlock(&x->mu);
		placeholder_fail(a, drop);
		if (st != TW_OK) {
			refuse(p, st,
			       "no room for the creator's user of " ID_FMT,
			       ID_ARGS(id));
			return;
		}
		ent_start(e, pl->u.items[0].u.str, &pl->u.items[1],
			  &pl->u.items[2], h->src);
		serve_reply(p, TW_MSG_REMOTE_RET, TW_OK, &ret, 0, NULL);
		return;
	}
	if (e != NULL && !e->placeholder) {
		bool dup = ent_user_of(e, id.fork, h->src) >= 0;
		if (!dup)
			x->st.refused++;
		pthread_mutex_unlock(&x->mu);
		/* A duplicate: confirmed again, nothing run twice. */
		if (dup)
			serve_reply(p, TW_MSG_REMOTE_RET, TW_OK, &ret, 0, NULL);
		else
			refuse(p, TW_EINVAL,
			       "REMOTE_CALL names " ID_FMT
			       ", which worker '%s' already owns",
			       ID_ARGS(id), a->name);
		return;
	}
	uint32_t nw;
	tw_status *wok;
	struct fork_wait *w;
	if (tomb_has(x, id.rref)) {
		x->st.refused++;
		w = fwait_take(x, id.rref, NULL, &nw, &wok);
		tw_future *drop = placeholder_drop(e);
		pthread_mutex_unlock(&x->mu);
		placeholder_fail(a, drop);
		fwait_answer(a, id.rref, w, nw, wok);
		refuse(p, TW_EINVAL,
		       "REMOTE_CALL names " ID_FMT
		       ", which its creator deleted before it reached worker "
		       "'%s' (its creation timed out)",
		       ID_ARGS(id), a->name);
		return;
	}
	tw_status st;
	struct ent_user u = {.fork = id.fork, .holder = h->src};
	e = ent_new(a, id.rref, h->src, &u, &st);
	/* Forks of it whose requests overtook it: recorded now. */
	w = fwait_take(x, id.rref, e, &nw, &wok);
	pthread_mutex_unlock(&x->mu);
	fwait_answer(a, id.rref, w, nw, wok);
	if (e == NULL) {
		refuse(p, st, "%s", tw_errmsg(st));
		return;
	}
	/* Started (a proxy's RRef read) before the confirmation leaves; the
	 * owner knows its user (G1) and fetches wait for the value. */
	ent_start(e, pl->u.items[0].u.str, &pl->u.items[1], &pl->u.items[2],
		  h->src);
	serve_reply(p, TW_MSG_REMOTE_RET, TW_OK, &ret, 0, NULL);
}

static void on_fetch(struct agent_loop *l, const struct reply_path *p,
		     const tw_value *pl)
{
	tw_agent *a = l->a;
	struct rref_ctx *x = a->rref;
	tw_rref_id id = *pl->u.rref;
	pthread_mutex_lock(&x->mu);
	struct owner_ent *e = id.owner == a->rank ? ent_find(x, id.rref) : NULL;
	if (e == NULL || ent_user_of(e, id.fork, p->caller) < 0) {
		x->st.refused++;
		pthread_mutex_unlock(&x->mu);
		refuse(p, TW_EINVAL,
		       "RREF_FETCH_CALL from worker '%s' names " ID_FMT
		       ", which is not its user of an RRef worker '%s' owns",
		       agent_worker_name(a, p->caller), ID_ARGS(id), a->name);
		return;
	}
	if (!e->running) {
		tw_future *f = tw_future_retain(e->val);
		pthread_mutex_unlock(&x->mu);
		answer_fetch(p, f);
		tw_future_release(f);
		return;
	}
	if (x->nwaits >= RREF_MAX_FETCH_WAIT_ALL) {
		uint32_t n = x->nwaits;
		pthread_mutex_unlock(&x->mu);
		refuse(p, TW_EBUSY,
		       "%u fetches already wait on worker '%s' for values not "
		       "computed yet (RREF_MAX_FETCH_WAIT_ALL)",
		       n, a->name);
		return;
	}
	if (e->nwait == e->capwait) {
		uint32_t cap = e->capwait ? e->capwait * 2 : 2;
		struct reply_path *w = NULL;
		if (cap <= RREF_MAX_FETCH_WAIT)
			w = realloc(e->waits, cap * sizeof(*w));
		if (w == NULL) {
			pthread_mutex_unlock(&x->mu);
			refuse(p, TW_EBUSY,
			       "%u fetches of " ID_FMT
			       " already wait on worker '%s' (RREF_MAX_FETCH_WAIT)",
			       e->nwait, ID_ARGS(id), a->name);
			return;
		}
		e->waits = w;
		e->capwait = cap;
	}
	e->waits[e->nwait++] = *p;
	x->nwaits++;
	pthread_mutex_unlock(&x->mu);
}

static void on_user_delete(struct agent_loop *l, const struct reply_path *p,
			   const tw_value *pl)
{
	tw_agent *a = l->a;
	struct rref_ctx *x = a->rref;
	tw_rref_id id = *pl->u.rref;
	if (id.owner != a->rank) {
		pthread_mutex_lock(&x->mu);
		x->st.refused++;
		pthread_mutex_unlock(&x->mu);
		refuse(p, TW_EINVAL,
		       "RREF_USER_DELETE from worker '%s' names " ID_FMT
		       ", not owned by worker '%s'",
		       agent_worker_name(a, p->caller), ID_ARGS(id), a->name);
		return;
	}
	pthread_mutex_lock(&x->mu);
	struct owner_ent *e = ent_find(x, id.rref);
	int64_t i = e != NULL ? ent_user(e, id.fork) : -1;
	bool dead = false;
	if (i >= 0 && e->users[i].holder != p->caller) {
		x->st.refused++;
		pthread_mutex_unlock(&x->mu);
		refuse(p, TW_EINVAL,
		       "RREF_USER_DELETE from worker '%s' names " ID_FMT
		       ", which worker '%s' holds",
		       agent_worker_name(a, p->caller), ID_ARGS(id),
		       agent_worker_name(a, e->users[i].holder));
		return;
	}
	if (i < 0) {
		/* Already deleted (a retry) or never ours: nothing to do,
		 * acknowledged so the sender stops. The creator's own fork of
		 * an RRef we do not have: its REMOTE_CALL may still come (the
		 * creation timed out at the creator); remember not to create
		 * it. */
		x->st.refused++;
		if ((e == NULL || e->placeholder) &&
		    guid_eq(id.fork, id.rref) &&
		    id.rref.created_on == p->caller) {
			tomb_add(x, id.rref);
			tw_future *drop = placeholder_drop(e);
			pthread_mutex_unlock(&x->mu);
			placeholder_fail(a, drop);
			pthread_mutex_lock(&x->mu);
			uint32_t nw;
			tw_status *wok;
			struct fork_wait *w = fwait_take(x, id.rref, NULL, &nw,
							 &wok);
			pthread_mutex_unlock(&x->mu);
			fwait_answer(a, id.rref, w, nw, wok);
			pthread_mutex_lock(&x->mu);
		}
	} else {
		ent_user_del(x, e, (uint32_t)i);
		x->st.deletes_received++;
		if ((dead = ent_dead(e)))
			ent_unlink(x, e);
	}
	pthread_mutex_unlock(&x->mu);
	if (dead)
		ent_free(e);
	tw_value none = tw_value_none();
	serve_reply(p, TW_MSG_ACK, TW_OK, &none, 0, NULL);
}

/* RREF_FORK_REQUEST((owner, R, F), parent) from F's receiver: record it
 * as a user held by the sender. The parent still holds its own user, so
 * R exists unless a peer errs (G2). Idempotent: a known F of the same
 * holder is acknowledged again. */
static void on_fork_request(struct agent_loop *l, const struct reply_path *p,
			    const tw_value *pl)
{
	tw_agent *a = l->a;
	struct rref_ctx *x = a->rref;
	tw_rref_id id = *pl->u.items[0].u.rref;
	int64_t parent = pl->u.items[1].u.i;
	const char *why = NULL;
	tw_status st = TW_OK;
	pthread_mutex_lock(&x->mu);
	struct owner_ent *e = id.owner == a->rank ? ent_find(x, id.rref) : NULL;
	int64_t i = e != NULL ? ent_user(e, id.fork) : -1;
	bool sane = parent != p->caller && parent < a->world &&
		    id.fork.created_on == parent;
	if (e == NULL && id.owner == a->rank && sane &&
	    id.rref.created_on < a->world && id.rref.created_on != a->rank &&
	    !tomb_has(x, id.rref) && x->nfwait < RREF_MAX_FORK_WAIT) {
		/* Not created yet, maybe: the creator passed its pending
		 * RRef on and this request overtook its REMOTE_CALL. Parked
		 * until it comes (or is refused); the sender's retry finds
		 * it then if this answer is lost meanwhile. */
		for (uint32_t k = 0; k < x->nfwait; k++) {
			struct fork_wait *fw = &x->fwaits[k];
			if (guid_eq(fw->rref, id.rref) &&
			    guid_eq(fw->fork, id.fork) &&
			    fw->p.caller == p->caller) {
				fw->p = *p; /* a retry: answer this one */
				pthread_mutex_unlock(&x->mu);
				return;
			}
		}
		if (x->nfwait == x->capfwait) {
			uint32_t cap = x->capfwait ? x->capfwait * 2 : 8;
			struct fork_wait *nw = realloc(x->fwaits,
						       cap * sizeof(*nw));
			if (nw != NULL) {
				x->fwaits = nw;
				x->capfwait = cap;
			}
		}
		if (x->nfwait < x->capfwait) {
			x->fwaits[x->nfwait++] = (struct fork_wait){
				.rref = id.rref, .fork = id.fork, .p = *p};
			pthread_mutex_unlock(&x->mu);
			return;
		}
	}
	if (e == NULL)
		why = "which this worker does not own (freed, or never)";
	else if (i >= 0 && e->users[i].holder != p->caller)
		why = "a fork another worker holds";
	else if (i < 0 && !sane)
		why = "a fork its parent did not make";
	else if (i < 0)
		st = ent_user_add(x, e, id.fork, p->caller, false);
	if (why != NULL || st != TW_OK)
		x->st.refused++;
	uint32_t n = e != NULL ? e->nusers : 0;
	pthread_mutex_unlock(&x->mu);
	if (why != NULL)
		refuse(p, TW_EINVAL,
		       "RREF_FORK_REQUEST from worker '%s' (parent %lld) names " ID_FMT
		       ", %s",
		       agent_worker_name(a, p->caller), (long long)parent,
		       ID_ARGS(id), why);
	else if (st != TW_OK)
		refuse(p, st == TW_EBUSY ? TW_EBUSY : TW_ENOMEM,
		       "RRef (%u, %llu) on worker '%s' has %u users%s",
		       id.rref.created_on, (unsigned long long)id.rref.local_id,
		       a->name, n,
		       st == TW_EBUSY ? ", its limit (RREF_MAX_USERS)"
				      : ": no memory for one more");
	else
		serve_reply(p, TW_MSG_ACK, TW_OK, &(tw_value){0}, 0, NULL);
}

/* RREF_CHILD_ACCEPT((owner, R, F)) from the receiver of fork F: on the
 * owner, F (sent by the owner) is no longer in flight; on a user, the
 * child F ends and with it its hold on the parent handle (which may then
 * send its own delete). Idempotent: an unknown F is acknowledged. */
static void on_child_accept(struct agent_loop *l, const struct reply_path *p,
			    const tw_value *pl)
{
	tw_agent *a = l->a;
	struct rref_ctx *x = a->rref;
	tw_rref_id id = *pl->u.rref;
	bool wrong = false;
	struct child *c = NULL;
	pthread_mutex_lock(&x->mu);
	if (id.owner == a->rank) {
		struct owner_ent *e = ent_find(x, id.rref);
		int64_t i = e != NULL ? ent_user(e, id.fork) : -1;
		if (i >= 0 && e->users[i].holder != p->caller)
			wrong = true;
		else if (i >= 0)
			ent_user_settle(x, e, (uint32_t)i);
	} else {
		struct child **pp = child_slot(x, id.fork);
		if (*pp != NULL && ((*pp)->dst != p->caller ||
				    !guid_eq((*pp)->r->id.rref, id.rref)))
			wrong = true;
		else if (*pp != NULL)
			c = child_take(x, id.fork);
	}
	if (wrong)
		x->st.refused++;
	pthread_mutex_unlock(&x->mu);
	if (wrong) {
		refuse(p, TW_EINVAL,
		       "RREF_CHILD_ACCEPT from worker '%s' names " ID_FMT
		       ", a fork worker '%s' did not send it",
		       agent_worker_name(a, p->caller), ID_ARGS(id), a->name);
		return;
	}
	if (c != NULL) {
		atomic_fetch_sub(&c->r->nchildren, 1);
		tw_rref_release(c->r);
		free(c);
	}
	serve_reply(p, TW_MSG_ACK, TW_OK, &(tw_value){0}, 0, NULL);
}

void rref_on_frame(struct agent_loop *l, struct conn_state *cs,
		   const tw_frame_hdr *h, tw_buf *buf, size_t off, size_t len)
{
	tw_agent *a = l->a;
	struct reply_path p = path_of(l, cs, h);
	if (l->closing) {
		refuse(&p, TW_ESHUTDOWN, AGENT_SHUTDOWN_MSG);
		return;
	}
	if (h->src >= a->world) {
		stat_inc(&l->stats.bad_frames);
		refuse(&p, TW_EPROTO, "%s from worker %u reached worker %u",
		       tw_msg_type_name(h->type), h->src, a->rank);
		return;
	}
	tw_in_msg m;
	tw_status st = tw_msg_decode(buf, off, len, h, NULL, &m);
	if (st != TW_OK) {
		stat_inc(&l->stats.bad_frames);
		refuse(&p, st == TW_EVERSION ? st : TW_EPROTO,
		       "malformed %s from worker '%s': %s",
		       tw_msg_type_name(h->type), agent_worker_name(a, h->src),
		       tw_errmsg(st));
		return;
	}
	switch (h->type) {
	case TW_MSG_REMOTE_CALL:
		stat_inc(&l->stats.calls_served);
		if (m.nrref_ > 0)
			rref_adopt(l, h->src, &m);
		on_remote_call(l, &p, h, &m.payload);
		break;
	case TW_MSG_RREF_FETCH_CALL:
		on_fetch(l, &p, &m.payload);
		break;
	case TW_MSG_RREF_USER_DELETE:
		on_user_delete(l, &p, &m.payload);
		break;
	case TW_MSG_RREF_FORK_REQUEST:
		on_fork_request(l, &p, &m.payload);
		break;
	case TW_MSG_RREF_CHILD_ACCEPT:
		on_child_accept(l, &p, &m.payload);
		break;
	}
	tw_in_msg_release(&m);
}

/* ---- handles: the user side -------------------------------------------- */

/* What the settled REMOTE_CALL future f says of r: confirmed when the
 * owner answered REMOTE_RET naming r. */
static int creation_state(const tw_rref_id *id, tw_future *f)
{
	if (tw_future_status(f) != TW_OK)
		return USER_FAILED;
	const tw_value *v = tw_future_value(f);
	if (v->kind == TW_KIND_RREF && v->u.rref->owner == id->owner &&
	    guid_eq(v->u.rref->rref, id->rref) &&
	    guid_eq(v->u.rref->fork, id->fork))
		return USER_CONFIRMED;
	return USER_FAILED;
}

static void user_delete(tw_agent *a, tw_rref_id id);

/* The REMOTE_CALL was answered (or failed): the user is confirmed. */
static void created_cb(tw_future *f, void *arg)
{
	tw_rref *r = arg;
	struct rref_ctx *x = r->x;
	int state = creation_state(&r->id, f);
	atomic_store(&r->state, state);
	pthread_mutex_lock(&x->mu);
	x->st.pending_users--;
	/* Confirmed during graceful shutdown, still held: told now, as the
	 * users shutdown found confirmed. */
	bool tell = x->closing && state == USER_CONFIRMED && !r->deleted &&
		    atomic_load(&r->refs) > 1;
	if (tell) {
		r->deleted = true;
		x->st.deletes_sent++;
	}
	pthread_mutex_unlock(&x->mu);
	if (tell)
		user_delete(r->a, r->id);
	tw_rref_release(r); /* the creation's reference */
}

/*
 * A control message (USER_DELETE to the owner, FORK_REQUEST to the owner,
 * CHILD_ACCEPT to the fork's parent), retried until acknowledged: every
 * handler is idempotent by (RRef id, fork id). A try that is not answered
 * in time is sent again (the peer may not have the RRef yet, or the
 * answer was lost); an ACK, a refusal, the peer gone or shutdown end it.
 */

static void ctl_send(struct ctl_op *op);
static void fork_settled(struct ctl_op *op, tw_future *f);

static void ctl_end(struct ctl_op *op, tw_future *f)
{
	if (op->type == TW_MSG_RREF_FORK_REQUEST)
		fork_settled(op, f);
	free(op);
}

static void ctl_cb(tw_future *f, void *arg)
{
	struct ctl_op *op = arg;
	if (tw_future_status(f) == TW_ETIMEDOUT && ++op->tries < 64) {
		ctl_send(op);
		return;
	}
	ctl_end(op, f);
}

static void ctl_send(struct ctl_op *op)
{
	struct rref_ctx *x = op->a->rref;
	if (!atomic_load(&x->started)) {
		pthread_mutex_lock(&x->mu);
		bool hold = !atomic_load(&x->started);
		if (hold) {
			op->next = NULL;
			*x->held_tail = op;
			x->held_tail = &op->next;
		}
		pthread_mutex_unlock(&x->mu);
		if (hold)
			return;
	}
	tw_value items[2] = {rref_value_of(&op->id), tw_value_int(op->parent)};
	tw_value v = items[0];
	if (op->type == TW_MSG_RREF_FORK_REQUEST)
		v = (tw_value){.kind = TW_KIND_TUPLE,
			       .flags = TW_VALUE_BORROWED,
			       .len = 2,
			       .u.items = items};
	tw_future *f = NULL;
	tw_status st = call_ctl_async(op->a, op->to, op->type, TW_MSG_ACK, &v,
				      RREF_CTL_TIMEOUT_MS, &f);
	if (st != TW_OK) {
		/* Shutting down, or out of memory: a FORK_REQUEST's handle
		 * learns it from a failed future. */
		tw_future *g = NULL;
		if (tw_future_create(&g) == TW_OK)
			tw_future_fail(g, st, op->a->rank, tw_errmsg(st));
		ctl_end(op, g);
		if (g != NULL)
			tw_future_release(g);
		return;
	}
	if (tw_future_then(f, ctl_cb, op) != TW_OK)
		abort(); /* the first callback needs no allocation */
	tw_future_release(f);
}

static void ctl_start(tw_agent *a, uint8_t type, uint32_t to, tw_rref_id id,
		      uint32_t parent, tw_rref *r)
{
	struct ctl_op *op = calloc(1, sizeof(*op));
	if (op == NULL) {
		/* The peer keeps what it had: a leak, not a fault. A fork's
		 * handle must still settle. */
		if (r != NULL) {
			struct ctl_op tmp = {.a = a,
					     .type = type,
					     .to = to,
					     .id = id,
					     .parent = parent,
					     .r = r};
			fork_settled(&tmp, NULL);
		}
		return;
	}
	*op = (struct ctl_op){.a = a,
			      .type = type,
			      .to = to,
			      .id = id,
			      .parent = parent,
			      .r = r};
	ctl_send(op);
}

tw_rref *tw_rref_retain(tw_rref *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	return r;
}

void rref_agent_running(tw_agent *a)
{
	struct rref_ctx *x = a->rref;
	pthread_mutex_lock(&x->mu);
	atomic_store(&x->started, true);
	struct ctl_op *op = x->held;
	x->held = NULL;
	x->held_tail = &x->held;
	pthread_mutex_unlock(&x->mu);
	while (op != NULL) {
		struct ctl_op *n = op->next;
		ctl_send(op);
		op = n;
	}
}

/* Tell id's owner that this user is gone (retried until acknowledged). */
static void user_delete(tw_agent *a, tw_rref_id id)
{
	ctl_start(a, TW_MSG_RREF_USER_DELETE, id.owner, id, 0, NULL);
}

void tw_rref_release(tw_rref *r)
{
	if (r == NULL || atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	struct rref_ctx *x = r->x;
	pthread_mutex_lock(&x->mu);
	if (!r->owner)
		TAILQ_REMOVE(&x->live, r, link);
	if (x->dead) {
		/* After tw_agent_shutdown: nothing left to tell. */
		pthread_mutex_unlock(&x->mu);
	} else if (r->owner) {
		struct owner_ent *e = ent_find(x, r->id.rref);
		bool dead = false;
		if (e != NULL) {
			e->self_refs--;
			if ((dead = ent_dead(e)))
				ent_unlink(x, e);
		}
		pthread_mutex_unlock(&x->mu);
		if (dead)
			ent_free(e);
	} else {
		/* The creation callback held a reference: its outcome is
		 * known. Confirmed: the owner has us (G1), tell it we are
		 * gone. A creation that timed out may still have reached it:
		 * tell it too (a delete of an unknown fork is acknowledged
		 * and changes nothing). Once: shutdown may have told it. */
		int state = atomic_load(&r->state);
		const tw_error *ce = r->cf != NULL ? tw_future_error(r->cf)
						   : NULL;
		bool tell = !r->deleted &&
			    (state == USER_CONFIRMED ||
			     (ce != NULL && ce->kind == TW_ETIMEDOUT));
		x->st.users--;
		if (tell)
			x->st.deletes_sent++;
		pthread_mutex_unlock(&x->mu);
		if (tell)
			user_delete(r->a, r->id);
	}
	if (r->cf != NULL)
		tw_future_release(r->cf);
	free(r);
	ctx_unref(x);
}

uint64_t rref_shutdown(tw_agent *a, char *report, size_t cap)
{
	struct rref_ctx *x = a->rref;
	report[0] = '\0';
	pthread_mutex_lock(&x->mu);
	x->closing = true;
	uint64_t held = 0, n = 0;
	tw_rref *r;
	TAILQ_FOREACH(r, &x->live, link)
	n++;
	tw_rref_id *todo = n ? malloc(n * sizeof(*todo)) : NULL;
	size_t ntodo = 0, len = 0;
	TAILQ_FOREACH(r, &x->live, link)
	{
		int state = atomic_load(&r->state);
		uint32_t refs = atomic_load(&r->refs);
		/* A pending creation holds one reference of its own. */
		/* Its creation's reference while pending, and one per fork
		 * in flight, are not the application's: a handle held only
		 * by those is told when they go. */
		if (refs <= (state == USER_PENDING ? 1u : 0u) +
				    atomic_load(&r->nchildren))
			continue;
		if (held++ < 8 && len < cap)
			len += (size_t)snprintf(
				report + len, cap - len, "%s(%u, %llu) on '%s'",
				held > 1 ? ", " : "", r->id.rref.created_on,
				(unsigned long long)r->id.rref.local_id,
				agent_worker_name(a, r->id.owner));
		if (state == USER_CONFIRMED && !r->deleted && todo != NULL) {
			r->deleted = true;
			x->st.deletes_sent++;
			todo[ntodo++] = r->id;
		}
	}
	pthread_mutex_unlock(&x->mu);
	for (size_t i = 0; i < ntodo; i++)
		user_delete(a, todo[i]);
	free(todo);
	return held;
}

tw_status tw_remote_id(tw_agent *a, uint32_t to, const char *fn,
		       const tw_value *args, const tw_value *kwargs,
		       int64_t timeout_ms, tw_rref **out)
{
	if (out != NULL)
		*out = NULL;
	if (a == NULL || fn == NULL || *fn == '\0' || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_remote: NULL agent, out "
						 "or function name");
	if (args != NULL && args->kind != TW_KIND_TUPLE &&
	    args->kind != TW_KIND_LIST)
		return tw_fail_static(TW_EINVAL,
				      "tw_remote: args must be a tuple or list "
				      "(or NULL for none)");
	if (kwargs != NULL && kwargs->kind != TW_KIND_DICT)
		return tw_fail_static(TW_EINVAL, "tw_remote: kwargs must be a "
						 "dict (or NULL for none)");
	if (to >= a->world)
		return agent_no_worker_id(a, to);
	int state = atomic_load(&a->state);
	if (state == AGENT_STARTING)
		return tw_fail_static(TW_EINVAL,
				      "tw_remote: the agent has not joined its "
				      "group yet: calls start once "
				      "tw_agent_init has returned (not from "
				      "its setup callback)");
	if (state != AGENT_RUNNING)
		return tw_fail_static(TW_ESHUTDOWN, "tw_remote: the agent is "
						    "shutting down");
	struct rref_ctx *x = a->rref;
	tw_rref *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return tw_fail_static(TW_ENOMEM, "no memory for an RRef");
	r->a = a;
	r->x = x;
	r->id.owner = to;
	r->id.rref.created_on = a->rank;
	r->id.rref.local_id = atomic_fetch_add(&x->next_id, 1);
	r->id.fork = r->id.rref;
	tw_status st;
	if (to == a->rank) {
		/* torch's pyRemoteBuiltin: owned here, its handle the self
		 * fork; the function runs as a call to self. */
		r->owner = true;
		atomic_init(&r->refs, 1);
		atomic_init(&r->state, USER_CONFIRMED);
		pthread_mutex_lock(&x->mu);
		struct owner_ent *e = ent_new(a, r->id.rref, a->rank, NULL,
					      &st);
		if (e != NULL)
			e->self_refs = 1;
		pthread_mutex_unlock(&x->mu);
		if (e == NULL) {
			free(r);
			return st;
		}
		atomic_fetch_add(&x->refs, 1);
		ent_start(e, fn, args, kwargs, a->rank);
		*out = r;
		return TW_OK;
	}
	/* A user, pending until REMOTE_RET: one reference for the caller,
	 * one for the creation's callback. */
	atomic_init(&r->refs, 2);
	atomic_init(&r->state, USER_PENDING);
	tw_value items[4];
	call_items_borrow(items, fn, args, kwargs);
	items[3] = rref_value_of(&r->id);
	tw_value payload = {.kind = TW_KIND_TUPLE,
			    .flags = TW_VALUE_BORROWED,
			    .len = 4,
			    .u.items = items};
	st = call_ctl_async(a, to, TW_MSG_REMOTE_CALL, TW_MSG_REMOTE_RET,
			    &payload, timeout_ms, &r->cf);
	if (st != TW_OK) {
		free(r);
		return st;
	}
	atomic_fetch_add(&x->refs, 1);
	pthread_mutex_lock(&x->mu);
	x->st.users++;
	x->st.pending_users++;
	TAILQ_INSERT_TAIL(&x->live, r, link);
	pthread_mutex_unlock(&x->mu);
	if (tw_future_then(r->cf, created_cb, r) != TW_OK)
		abort(); /* the first callback needs no allocation */
	*out = r;
	return TW_OK;
}

tw_status tw_remote(tw_agent *a, const char *to, const char *fn,
		    const tw_value *args, const tw_value *kwargs,
		    int64_t timeout_ms, tw_rref **out)
{
	if (out != NULL)
		*out = NULL;
	if (a == NULL || to == NULL)
		return tw_fail_static(TW_EINVAL, "tw_remote: NULL agent or "
						 "destination");
	uint32_t id;
	if (agent_find_worker(a, to, &id) != TW_OK)
		return agent_no_worker(a, to);
	return tw_remote_id(a, id, fn, args, kwargs, timeout_ms, out);
}

/* ---- forks: RRefs inside values ----------------------------------------- */

void rref_id_retain(const tw_rref_id *id)
{
	tw_rref_retain(rref_of(id));
}

void rref_id_release(const tw_rref_id *id)
{
	tw_rref_release(rref_of(id));
}

tw_status tw_rref_value(tw_rref *r, tw_value *out)
{
	if (out != NULL)
		*out = tw_value_none();
	if (r == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_rref_value: NULL RRef or "
						 "out");
	tw_rref_retain(r);
	*out = (tw_value){.kind = TW_KIND_RREF,
			  .flags = TW_VALUE_RREF_HANDLE_,
			  .u.rref = &r->id};
	return TW_OK;
}

tw_status tw_rref_from_value(const tw_value *v, tw_rref **out)
{
	if (out != NULL)
		*out = NULL;
	if (v == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_rref_from_value: NULL "
						 "value or out");
	if (v->kind != TW_KIND_RREF || v->u.rref == NULL)
		return tw_fail_static(TW_EINVAL, "tw_rref_from_value: the "
						 "value is not an RRef");
	if (!(v->flags & TW_VALUE_RREF_HANDLE_))
		return tw_fail(TW_EINVAL,
			       "tw_rref_from_value: " ID_FMT
			       " is a bare id, not an RRef this worker holds "
			       "(its owner refused the fork, or the value was "
			       "built by tw_value_rref)",
			       ID_ARGS(*v->u.rref));
	*out = tw_rref_retain(rref_of(v->u.rref));
	return TW_OK;
}

/* A user handle for fork id, received: pending until confirm() or a
 * failed r->cf. Two references: the caller's, and the confirmation
 * callback's (created_cb). */
static tw_rref *user_new_forked(tw_agent *a, tw_rref_id id)
{
	struct rref_ctx *x = a->rref;
	tw_rref *r = calloc(1, sizeof(*r));
	if (r == NULL || tw_future_create(&r->cf) != TW_OK) {
		free(r);
		return NULL;
	}
	r->a = a;
	r->x = x;
	r->id = id;
	atomic_init(&r->refs, 2);
	atomic_init(&r->state, USER_PENDING);
	atomic_fetch_add(&x->refs, 1);
	pthread_mutex_lock(&x->mu);
	x->st.users++;
	x->st.pending_users++;
	TAILQ_INSERT_TAIL(&x->live, r, link);
	pthread_mutex_unlock(&x->mu);
	if (tw_future_then(r->cf, created_cb, r) != TW_OK)
		abort(); /* the first callback needs no allocation */
	return r;
}

/* The owner knows r's fork: confirmed (created_cb runs). */
static void confirm(tw_rref *r)
{
	tw_value v;
	if (tw_value_rref(&v, &r->id) == TW_OK)
		tw_future_complete(r->cf, &v);
	else
		tw_future_fail(r->cf, TW_ENOMEM, r->a->rank,
			       "no memory to confirm an RRef");
}

/* The FORK_REQUEST for op->r ended (f: its answer; NULL: never sent):
 * the handle is confirmed or failed, and the parent is told it may let
 * its child go either way. */
static void fork_settled(struct ctl_op *op, tw_future *f)
{
	tw_rref *r = op->r;
	if (f != NULL && tw_future_status(f) == TW_OK) {
		confirm(r);
	} else {
		const tw_error *e = f != NULL ? tw_future_error(f) : NULL;
		tw_future_fail(
			r->cf, e != NULL ? e->kind : TW_ENOMEM,
			e != NULL ? e->origin : op->a->rank,
			e != NULL ? e->msg
				  : "no memory for an RRef's fork request");
	}
	/* r may be gone now (its confirmation's reference was its last):
	 * only op from here. */
	ctl_start(op->a, TW_MSG_RREF_CHILD_ACCEPT, op->parent, op->id, 0, NULL);
}

/* ---- receiving: a message's RREF nodes become handles ---------------- */

/* The handles a received message's RREF nodes point at, in walk order
 * (NULL: a node left as a bare id); released with the message. */
struct rref_hold {
	struct tw_msg_hold h;
	uint32_t n, cap;
	tw_rref *r[];
};

static void hold_release(struct tw_msg_hold *h)
{
	struct rref_hold *hd = (struct rref_hold *)h;
	for (uint32_t i = 0; i < hd->n; i++)
		tw_rref_release(hd->r[i]);
	free(hd);
}

struct adopt {
	struct agent_loop *l;
	uint32_t src;
	struct rref_hold *hd;
	bool repatch; /* hd is filled: point the nodes at its handles */
	uint32_t next;
};

/* RREF node v (bare, from the wire) sent by ad->src: its handle. */
static void adopt_node(struct adopt *ad, tw_value *v)
{
	tw_agent *a = ad->l->a;
	struct rref_ctx *x = a->rref;
	tw_rref *r = NULL;
	if (ad->repatch) {
		r = ad->next < ad->hd->n ? ad->hd->r[ad->next++] : NULL;
	} else if (ad->hd->n < ad->hd->cap) {
		tw_rref_id id = *v->u.rref;
		uint32_t src = ad->src;
		if (id.owner >= a->world || id.rref.created_on >= a->world ||
		    id.fork.created_on >= a->world) {
			pthread_mutex_lock(&x->mu);
			x->st.refused++;
			pthread_mutex_unlock(&x->mu);
		} else if (id.owner == a->rank) {
			/* Sent to its owner: the owner's own handle; the
			 * sender's child ends. */
			r = owner_handle_new(a, id.rref,
					     id.rref.created_on != a->rank);
			ctl_start(a, TW_MSG_RREF_CHILD_ACCEPT, src, id, 0,
				  NULL);
		} else if (src == id.owner) {
			/* From the owner, which recorded the fork before
			 * sending it (early registration): confirmed. */
			r = user_new_forked(a, id);
			if (r != NULL) {
				confirm(r);
				ctl_start(a, TW_MSG_RREF_CHILD_ACCEPT, src, id,
					  0, NULL);
			} else {
				user_delete(a, id);
			}
		} else {
			/* From another user: the owner learns of us first,
			 * then the parent lets its child go (G1, G2). */
			r = user_new_forked(a, id);
			if (r != NULL)
				ctl_start(a, TW_MSG_RREF_FORK_REQUEST, id.owner,
					  id, src, r);
			else
				ctl_start(a, TW_MSG_RREF_CHILD_ACCEPT, src, id,
					  0, NULL);
		}
		ad->hd->r[ad->hd->n++] = r;
	}
	if (r != NULL) {
		v->u.rref = &r->id;
		v->flags |= TW_VALUE_RREF_HANDLE_;
	}
}

static void adopt_walk(struct adopt *ad, tw_value *v, unsigned depth)
{
	switch (v->kind) {
	case TW_KIND_LIST:
	case TW_KIND_TUPLE:
		for (uint32_t i = 0; i < v->len && depth < TW_VALUE_MAX_DEPTH;
		     i++)
			adopt_walk(ad, &v->u.items[i], depth + 1);
		break;
	case TW_KIND_DICT:
		for (uint32_t i = 0; i < v->len && depth < TW_VALUE_MAX_DEPTH;
		     i++)
			adopt_walk(ad, &v->u.entries[i].val, depth + 1);
		break;
	case TW_KIND_RREF:
		if (v->u.rref != NULL &&
		    (ad->repatch || !(v->flags & TW_VALUE_RREF_HANDLE_)))
			adopt_node(ad, v);
		break;
	default:
		break;
	}
}

/* The parts of m's payload that carry values: a call's args and kwargs
 * (not the first argument of TW_RREF_CALL_FN, the caller's own RRef,
 * which is not forked), a result. */
static void adopt_msg(struct adopt *ad, tw_in_msg *m)
{
	tw_value *p = &m->payload;
	switch (m->hdr.type) {
	case TW_MSG_CALL:
	case TW_MSG_REMOTE_CALL: {
		tw_value *args = &p->u.items[1];
		uint32_t first = 0;
		if (p->u.items[0].len == sizeof(TW_RREF_CALL_FN) - 1 &&
		    memcmp(p->u.items[0].u.str, TW_RREF_CALL_FN,
			   sizeof(TW_RREF_CALL_FN) - 1) == 0)
			first = 1;
		for (uint32_t i = first; i < args->len; i++)
			adopt_walk(ad, &args->u.items[i], 2);
		adopt_walk(ad, &p->u.items[2], 1);
		break;
	}
	case TW_MSG_RET:
	case TW_MSG_RREF_FETCH_RET:
		adopt_walk(ad, p, 0);
		break;
	default:
		break;
	}
}

void rref_adopt(struct agent_loop *l, uint32_t src, tw_in_msg *m)
{
	uint32_t cap = m->nrref_;
	struct rref_hold *hd = malloc(sizeof(*hd) + cap * sizeof(tw_rref *));
	if (hd == NULL)
		return; /* the nodes stay bare ids: tw_rref_from_value says so */
	hd->h.release = hold_release;
	hd->n = 0;
	hd->cap = cap;
	struct adopt ad = {.l = l, .src = src, .hd = hd};
	adopt_msg(&ad, m);
	m->hold_ = &hd->h;
}

void rref_drain(struct agent_loop *l, const tw_frame_hdr *h, tw_buf *buf,
		size_t off, size_t len)
{
	tw_in_msg m;
	if (tw_msg_decode(buf, off, len, h, NULL, &m) != TW_OK)
		return;
	if (m.nrref_ > 0)
		rref_adopt(l, h->src, &m);
	tw_in_msg_release(&m);
}

struct tw_msg_hold *rref_hold_take(tw_in_msg *m)
{
	struct tw_msg_hold *h = m->hold_;
	m->hold_ = NULL;
	return h;
}

void rref_hold_give(struct agent_loop *l, tw_in_msg *m, struct tw_msg_hold *h)
{
	struct adopt ad = {
		.l = l, .hd = (struct rref_hold *)h, .repatch = true};
	adopt_msg(&ad, m);
	m->hold_ = h;
}

/* ---- sending: each handle in a value is forked for the receiver --------- */

struct fork_rec {
	tw_guid rref, fork;
	bool owner; /* recorded in the owner's entry, else a child */
};

struct fork_out {
	tw_agent *a;
	uint32_t dst;
	uint32_t n, cap;
	struct fork_rec *recs;
};

/* Undo the forks of a message that was not sent. */
static void forks_undo(struct fork_out *fo)
{
	struct rref_ctx *x = fo->a->rref;
	for (uint32_t k = fo->n; k-- > 0;) {
		const struct fork_rec *fr = &fo->recs[k];
		struct owner_ent *dead = NULL;
		struct child *c = NULL;
		pthread_mutex_lock(&x->mu);
		if (fr->owner) {
			struct owner_ent *e = ent_find(x, fr->rref);
			int64_t i = e != NULL ? ent_user(e, fr->fork) : -1;
			if (i >= 0) {
				ent_user_del(x, e, (uint32_t)i);
				if (ent_dead(e)) {
					ent_unlink(x, e);
					dead = e;
				}
			}
		} else {
			c = child_take(x, fr->fork);
		}
		pthread_mutex_unlock(&x->mu);
		if (dead != NULL)
			ent_free(dead);
		if (c != NULL) {
			atomic_fetch_sub(&c->r->nchildren, 1);
			tw_rref_release(c->r);
			free(c);
		}
	}
	fo->n = 0;
}

/* v: an owned RREF node holding a handle (a clone's): fork it for fo->dst
 * and make v a bare id naming the fork. The node's reference goes to the
 * child (or, on the owner, is dropped: the recorded fork keeps the value). */
static tw_status fork_node(struct fork_out *fo, tw_value *v)
{
	tw_agent *a = fo->a;
	struct rref_ctx *x = a->rref;
	tw_rref *r = rref_of(v->u.rref);
	if (r->x != x)
		return tw_fail_static(TW_EINVAL, "an RRef of another agent "
						 "cannot be sent by this one");
	if (atomic_load(&r->state) == USER_FAILED)
		return tw_fail(TW_EINVAL,
			       "RRef (%u, %llu) cannot be passed on: its "
			       "creation failed",
			       r->id.rref.created_on,
			       (unsigned long long)r->id.rref.local_id);
	if (fo->n == fo->cap) {
		uint32_t cap = fo->cap ? fo->cap * 2 : 4;
		struct fork_rec *nr = realloc(fo->recs, cap * sizeof(*nr));
		if (nr == NULL)
			return tw_fail_static(TW_ENOMEM, "no memory to fork an "
							 "RRef");
		fo->recs = nr;
		fo->cap = cap;
	}
	tw_rref_id *nid = malloc(sizeof(*nid));
	struct child *c = r->owner ? NULL : malloc(sizeof(*c));
	if (nid == NULL || (!r->owner && c == NULL)) {
		free(nid);
		free(c);
		return tw_fail_static(TW_ENOMEM, "no memory to fork an RRef");
	}
	*nid = r->id;
	nid->fork = fork_mint(a);
	if (r->owner) {
		pthread_mutex_lock(&x->mu);
		struct owner_ent *e = ent_find(x, r->id.rref);
		tw_status st = e != NULL ? ent_user_add(x, e, nid->fork,
							fo->dst, true)
					 : TW_EINVAL;
		uint32_t n = e != NULL ? e->nusers : 0;
		pthread_mutex_unlock(&x->mu);
		if (st != TW_OK) {
			free(nid);
			return st == TW_EBUSY
				       ? tw_fail(TW_EBUSY,
						 "RRef (%u, %llu) has %u users, "
						 "its limit (RREF_MAX_USERS)",
						 r->id.rref.created_on,
						 (unsigned long long)
							 r->id.rref.local_id,
						 n)
				       : tw_fail_static(st, "no memory to fork "
							    "an RRef");
		}
		tw_rref_release(r);
	} else {
		*c = (struct child){.fork = nid->fork, .dst = fo->dst, .r = r};
		atomic_fetch_add(&r->nchildren, 1);
		pthread_mutex_lock(&x->mu);
		child_add(x, c);
		pthread_mutex_unlock(&x->mu);
	}
	fo->recs[fo->n++] = (struct fork_rec){
		.rref = nid->rref, .fork = nid->fork, .owner = r->owner};
	*v = (tw_value){.kind = TW_KIND_RREF, .u.rref = nid};
	return TW_OK;
}

static tw_status fork_walk(struct fork_out *fo, tw_value *v, unsigned depth)
{
	tw_status st = TW_OK;
	if (depth > TW_VALUE_MAX_DEPTH)
		return TW_OK; /* the encoder refuses it */
	switch (v->kind) {
	case TW_KIND_LIST:
	case TW_KIND_TUPLE:
		for (uint32_t i = 0; i < v->len && st == TW_OK; i++)
			st = fork_walk(fo, &v->u.items[i], depth + 1);
		break;
	case TW_KIND_DICT:
		for (uint32_t i = 0; i < v->len && st == TW_OK; i++)
			st = fork_walk(fo, &v->u.entries[i].val, depth + 1);
		break;
	case TW_KIND_RREF:
		if (v->flags & TW_VALUE_RREF_HANDLE_)
			st = fork_node(fo, v);
		break;
	default:
		break;
	}
	return st;
}

tw_status rref_encode_forked(tw_agent *a, uint32_t dst, const tw_frame_hdr *h,
			     const tw_value *payload, tw_out_msg *out)
{
	tw_value copy;
	tw_status st = tw_value_clone(&copy, payload);
	if (st != TW_OK)
		return st;
	struct fork_out fo = {.a = a, .dst = dst};
	st = fork_walk(&fo, &copy, 0);
	if (st == TW_OK) {
		st = tw_msg_encode(a->txpool, h, &copy, out);
		if (st == TW_ENOSPC)
			st = tw_msg_encode(NULL, h, &copy, out);
	}
	if (st != TW_OK)
		forks_undo(&fo);
	free(fo.recs);
	tw_value_destroy(&copy);
	return st;
}

const char *rref_value_problem(const tw_agent *a, const tw_value *v)
{
	if (!(v->flags & TW_VALUE_RREF_HANDLE_))
		return NULL;
	const tw_rref *r = rref_of(v->u.rref);
	if (r->x != a->rref)
		return "an RRef of another agent";
	if (atomic_load(&r->state) == USER_FAILED)
		return "an RRef whose creation failed (it cannot be passed on)";
	return NULL;
}

/* ---- to_here --------------------------------------------------------------- */

static tw_status clone_map(tw_future *src, void *arg, tw_value *out)
{
	(void)arg;
	return tw_value_clone(out, tw_future_value(src));
}

/* Complete to with done future from's value (moved out of a copy) or
 * error. */
static void relay(tw_future *from, tw_future *to, uint32_t self)
{
	if (tw_future_status(from) == TW_OK) {
		tw_value v;
		if (tw_future_take_value(from, &v) == TW_OK)
			tw_future_complete(to, &v);
		else
			tw_future_fail(to, TW_ENOMEM, self,
				       "no memory for a copy of the result");
		return;
	}
	const tw_error *e = tw_future_error(from);
	tw_future_fail(to, e->kind, e->origin, e->msg);
}

/*
 * How a fetch or proxy ends: its reference on r is dropped first, then out
 * completed, from done future `from` or with (kind, origin, msg). So
 * whoever out wakes finds r's references as the operation left them: a
 * release then shutdown's count of held handles cannot see the op's.
 * msg must outlive r's release (a done future's error, a local copy).
 */
static void op_settle(tw_rref *r, tw_future *out, tw_future *from,
		      tw_status kind, uint32_t origin, const char *msg)
{
	uint32_t self = r->a->rank;
	tw_rref_release(r);
	if (from != NULL)
		relay(from, out, self);
	else
		tw_future_fail(out, kind, origin, msg);
	tw_future_release(out);
}

/* r's creation failed (cf done): settle as to_here reports it. */
static void settle_creation(tw_rref *r, tw_future *cf, tw_future *out)
{
	const tw_error *e = tw_future_error(cf);
	uint32_t self = r->a->rank;
	if (e == NULL)
		op_settle(r, out, NULL, TW_EPROTO, self,
			  "the owner confirmed another RRef");
	else if (e->kind == TW_ETIMEDOUT)
		op_settle(r, out, NULL, TW_ETIMEDOUT, self,
			  TW_RREF_CREATION_TIMEOUT_MSG);
	else
		op_settle(r, out, NULL, e->kind, e->origin, e->msg);
}

/*
 * A fetch from a user. It leaves at once, also while the creation is
 * pending: RRef requests to one owner all go through one run loop
 * (call_ctl_async), hence one connection, so the owner reads it after the
 * REMOTE_CALL (one round trip for remote + to_here). Two callbacks may
 * settle it: the fetch's answer, and the creation failing first (a
 * timed-out creation reports at its own deadline, not the fetch's).
 */
struct fetch_op {
	tw_rref *r; /* the settler's to release: once claimed, the other
		     * callback must not touch it (what it needs is below) */
	tw_agent *a;
	tw_rref_id id;
	tw_future *cf; /* the creation's future (a reference) */
	tw_future *out;
	_Atomic int refs;           /* callbacks still to run */
	_Atomic int settled;        /* claimed by one of them */
	tw_future *_Atomic refused; /* the fetch failed, the creation was
				     * still pending: wait for it */
	_Atomic int resent;         /* the fetch was sent again */
	int64_t timeout_ms;
};

static void fetched_cb(tw_future *f, void *arg);

static void fop_put(struct fetch_op *op)
{
	if (atomic_fetch_sub(&op->refs, 1) != 1)
		return;
	tw_future *f = atomic_load(&op->refused);
	if (f != NULL)
		tw_future_release(f);
	tw_future_release(op->cf);
	tw_future_release(op->out);
	free(op);
}

static bool fop_claim(struct fetch_op *op)
{
	return atomic_exchange(&op->settled, 1) == 0;
}

/* The creation is settled (cf done) and so is the fetch, or it failed
 * (refused, NULL: still out): settle with the creation's error if it
 * failed, else with the failed fetch. */
static void fop_settle_after(struct fetch_op *op, tw_future *cf,
			     tw_future *refused)
{
	if (creation_state(&op->id, cf) != USER_CONFIRMED) {
		if (fop_claim(op))
			settle_creation(op->r, cf, tw_future_retain(op->out));
	} else if (refused != NULL) {
		const tw_error *e = tw_future_error(refused);
		if (e != NULL && e->kind == TW_EINVAL &&
		    e->origin == op->id.owner &&
		    atomic_exchange(&op->resent, 1) == 0) {
			/* The owner had no RRef yet, and has one now: the
			 * fetch overtook its REMOTE_CALL (reordered, or sent
			 * on a new connection). Once more, behind it. */
			tw_value v = rref_value_of(&op->id);
			tw_future *f = NULL;
			atomic_fetch_add(&op->refs, 1);
			tw_status st = call_ctl_async(op->a, op->id.owner,
						      TW_MSG_RREF_FETCH_CALL,
						      TW_MSG_RREF_FETCH_RET, &v,
						      op->timeout_ms, &f);
			if (st == TW_OK) {
				if (tw_future_then(f, fetched_cb, op) != TW_OK)
					abort(); /* first callback: no alloc */
				tw_future_release(f);
				return;
			}
			fop_put(op);
		}
		if (fop_claim(op))
			op_settle(op->r, tw_future_retain(op->out), refused,
				  TW_OK, 0, NULL);
	}
}

static void fetch_created_cb(tw_future *cf, void *arg)
{
	struct fetch_op *op = arg;
	fop_settle_after(op, cf, atomic_load(&op->refused));
	fop_put(op);
}

static void fetched_cb(tw_future *f, void *arg)
{
	struct fetch_op *op = arg;
	tw_future *cf = op->cf;
	const tw_error *fe = tw_future_error(f);
	/* Only the owner's refusal (it has no such RRef yet) may be the
	 * creation's fault; a fetch that timed out or found the owner gone
	 * says so at once, as to_here's own deadline. */
	bool refusal = fe != NULL && fe->kind == TW_EINVAL &&
		       fe->origin == op->id.owner;
	bool created = tw_future_done(cf);
	int state = created ? creation_state(&op->id, cf) : USER_PENDING;
	if (created && state != USER_CONFIRMED) {
		/* The REMOTE_CALL failed first: say why. */
		if (fop_claim(op))
			settle_creation(op->r, cf, tw_future_retain(op->out));
	} else if (!refusal || state == USER_CONFIRMED) {
		if (fop_claim(op))
			op_settle(op->r, tw_future_retain(op->out), f, TW_OK, 0,
				  NULL);
	} else {
		/* Failed while the creation may still be pending (the owner
		 * has no RRef yet: a lost or refused REMOTE_CALL): the
		 * creation's outcome says why. Published, then the creation
		 * looked at again: one of the two callbacks settles. */
		atomic_store(&op->refused, tw_future_retain(f));
		if (tw_future_done(cf))
			fop_settle_after(op, cf, f);
	}
	fop_put(op);
}

tw_status tw_rref_to_here_async(tw_rref *r, int64_t timeout_ms, tw_future **out)
{
	if (out != NULL)
		*out = NULL;
	if (r == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_rref_to_here_async: NULL "
						 "RRef or out");
	struct rref_ctx *x = r->a->rref;
	if (r->owner) {
		pthread_mutex_lock(&x->mu);
		struct owner_ent *e = ent_find(x, r->id.rref);
		tw_future *f = e != NULL && e->val != NULL
				       ? tw_future_retain(e->val)
				       : NULL;
		pthread_mutex_unlock(&x->mu);
		if (f == NULL)
			return tw_fail_static(TW_EINVAL,
					      "the owned RRef is gone");
		tw_status st = tw_future_chain(f, clone_map, NULL, out);
		tw_future_release(f);
		return st;
	}
	struct fetch_op *op = calloc(1, sizeof(*op));
	tw_status st = op != NULL ? tw_future_create(&op->out) : TW_ENOMEM;
	if (st != TW_OK) {
		free(op);
		return tw_fail_static(TW_ENOMEM, "no memory for a fetch");
	}
	op->r = tw_rref_retain(r);
	op->a = r->a;
	op->id = r->id;
	op->cf = tw_future_retain(r->cf);
	op->timeout_ms = timeout_ms;
	atomic_init(&op->refs, 2);
	*out = tw_future_retain(op->out);
	tw_value v = rref_value_of(&r->id);
	tw_future *f = NULL;
	st = call_ctl_async(r->a, r->id.owner, TW_MSG_RREF_FETCH_CALL,
			    TW_MSG_RREF_FETCH_RET, &v, timeout_ms, &f);
	if (st != TW_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", tw_errmsg(st));
		fop_claim(op);
		op_settle(r, tw_future_retain(op->out), NULL, st, r->a->rank,
			  msg);
		fop_put(op);
	} else {
		/* The fetch's answer completes op->out on its loop: a waiter
		 * of op->out may run that loop meanwhile. */
		future_share_driver(op->out, f);
		if (tw_future_then(f, fetched_cb, op) != TW_OK)
			abort(); /* the first callback needs no allocation */
		tw_future_release(f);
	}
	/* Registered second: a creation answered already is seen here. */
	if (tw_future_then(op->cf, fetch_created_cb, op) != TW_OK)
		fop_put(op); /* the fetch settles it alone */
	return TW_OK;
}

tw_status tw_rref_to_here(tw_rref *r, int64_t timeout_ms, tw_value *out,
			  tw_value *err)
{
	if (out != NULL)
		*out = tw_value_none();
	if (err != NULL)
		*err = tw_value_none();
	if (r == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_rref_to_here: NULL RRef "
						 "or out");
	tw_agent *a = r->a;
	struct agent_loop *own = NULL;
	if (agent_tls_loop != NULL && agent_tls_loop->a == a)
		own = agent_tls_loop;
	if (own != NULL && (!a->o.embedded || tw_loop_in_poll(own->loop)))
		return tw_fail_static(TW_EINVAL,
				      "tw_rref_to_here called on a run loop: "
				      "use tw_rref_to_here_async");
	tw_future *f;
	tw_status st = tw_rref_to_here_async(r, timeout_ms, &f);
	if (st != TW_OK)
		return st;
	/* Bounded by timeout_ms here: the owner's wait for its function, and
	 * a user's fetch that waits for its fork's confirmation (a fetch
	 * refused while the owner had not recorded the fork yet) as much as
	 * the fetch itself. */
	int64_t wait = timeout_ms;
	st = own != NULL ? agent_wait_own(own, f, wait)
			 : tw_future_wait(f, wait);
	if (st == TW_OK) {
		st = tw_future_take_value(f, out);
	} else if (!tw_future_done(f)) {
		st = tw_fail(TW_ETIMEDOUT, AGENT_TIMEOUT_FMT,
			     (long long)timeout_ms);
		if (err != NULL)
			tw_value_error(err, st, a->rank, tw_errmsg(st));
	} else {
		const tw_error *e = tw_future_error(f);
		if (err != NULL && e != NULL)
			tw_value_error(err, e->kind, e->origin, e->msg);
		if (e != NULL)
			agent_explain_error(a, st, e, "%s", "");
	}
	tw_future_release(f);
	return st;
}

/* ---- introspection --------------------------------------------------------- */

tw_status tw_rref_local_value(tw_rref *r, const tw_value **out)
{
	if (r == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_rref_local_value: NULL "
						 "RRef or out");
	*out = NULL;
	tw_agent *a = r->a;
	if (!r->owner)
		return tw_fail(
			TW_EINVAL,
			"RRef (%u, %llu) is owned by worker '%s', not by "
			"worker '%s': call tw_rref_to_here",
			r->id.rref.created_on,
			(unsigned long long)r->id.rref.local_id,
			agent_worker_name(a, r->id.owner), a->name);
	struct rref_ctx *x = a->rref;
	pthread_mutex_lock(&x->mu);
	struct owner_ent *e = ent_find(x, r->id.rref);
	bool running = e == NULL || e->running;
	tw_future *f = running ? NULL : e->val;
	pthread_mutex_unlock(&x->mu);
	if (running)
		return tw_fail_static(TW_EBUSY, "the RRef's function is still "
						"running");
	/* The entry, hence f, lives while r holds its self fork. */
	tw_status st = tw_future_status(f);
	if (st != TW_OK) {
		const tw_error *e2 = tw_future_error(f);
		return tw_fail(st, "the RRef's function failed: %s",
			       e2 != NULL ? e2->msg : tw_strerror(st));
	}
	*out = tw_future_value(f);
	return TW_OK;
}

tw_status tw_rref_owner(const tw_rref *r, tw_worker_info *out)
{
	if (r == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_rref_owner: NULL argument");
	return tw_agent_worker_info_by_id(r->a, r->id.owner, out);
}

const char *tw_rref_owner_name(const tw_rref *r)
{
	return r != NULL ? agent_worker_name(r->a, r->id.owner) : NULL;
}

bool tw_rref_is_owner(const tw_rref *r)
{
	return r != NULL && r->owner;
}

bool tw_rref_confirmed_by_owner(const tw_rref *r)
{
	return r != NULL && atomic_load(&r->state) == USER_CONFIRMED;
}

tw_rref_id tw_rref_get_id(const tw_rref *r)
{
	return r != NULL ? r->id : (tw_rref_id){0};
}

/* ---- proxies: fn(value, *args, **kwargs) on the owner ------------------------ */

/* The RRef named by cargs[0] (a proxy's arguments: RRef, fn, args,
 * kwargs), owned here and held by caller: its value's future, retained.
 * NULL with a reason (TW_EINVAL). */
static tw_future *resolve(tw_agent *a, const tw_value *cargs, uint32_t caller,
			  tw_status *st, bool *counted)
{
	*counted = false;
	if (cargs->kind != TW_KIND_TUPLE || cargs->len != 4 ||
	    cargs->u.items[0].kind != TW_KIND_RREF ||
	    cargs->u.items[1].kind != TW_KIND_STRING ||
	    cargs->u.items[2].kind != TW_KIND_TUPLE ||
	    cargs->u.items[3].kind != TW_KIND_DICT) {
		*st = tw_fail_static(TW_EINVAL, TW_RREF_CALL_FN
				     " takes (RRef, str fn, "
				     "tuple args, dict kwargs)");
		return NULL;
	}
	tw_rref_id id = *cargs->u.items[0].u.rref;
	struct rref_ctx *x = a->rref;
	pthread_mutex_lock(&x->mu);
	struct owner_ent *e = id.owner == a->rank ? ent_find(x, id.rref) : NULL;
	bool ok = e != NULL && (ent_user_of(e, id.fork, caller) >= 0 ||
				(caller == a->rank && e->self_refs > 0 &&
				 guid_eq(id.fork, id.rref)));
	tw_future *f = NULL;
	bool starting = ok && e->val == NULL;
	/* A call that will wait for the value counts with the parked
	 * fetches (prun_go uncounts it). */
	bool full = ok && !starting && !tw_future_done(e->val) &&
		    x->nwaits >= RREF_MAX_FETCH_WAIT_ALL;
	if (ok && !starting && !full) {
		f = tw_future_retain(e->val);
		if (!tw_future_done(f))
			x->nwaits++, *counted = true;
	} else if (!full) {
		x->st.refused++;
	}
	pthread_mutex_unlock(&x->mu);
	if (full)
		*st = tw_fail(TW_EBUSY,
			      "%u calls and fetches already wait on worker "
			      "'%s' for values not computed yet "
			      "(RREF_MAX_FETCH_WAIT_ALL)",
			      RREF_MAX_FETCH_WAIT_ALL, a->name);
	else if (starting)
		/* Only a holder that did not wait for its confirmation. */
		*st = tw_fail(TW_EBUSY,
			      TW_RREF_CALL_FN " from worker '%s': " ID_FMT
					      " is still being created",
			      agent_worker_name(a, caller), ID_ARGS(id));
	else if (f == NULL)
		*st = tw_fail(TW_EINVAL,
			      TW_RREF_CALL_FN " from worker '%s' names " ID_FMT
					      ", which is not its RRef on "
					      "worker '%s'",
			      agent_worker_name(a, caller), ID_ARGS(id),
			      a->name);
	return f;
}

struct prun {
	tw_agent *a;
	bool counted; /* in the agent's waiting count until the value */
	tw_future *val, *out;
	tw_value fn, args, kwargs; /* owned copies */
};

static void prun_free(struct prun *pr)
{
	waits_put(pr->a, pr->counted);
	tw_future_release(pr->val);
	tw_future_release(pr->out);
	tw_value_destroy(&pr->fn);
	tw_value_destroy(&pr->args);
	tw_value_destroy(&pr->kwargs);
	free(pr);
}

static void prun_done(tw_future *g, void *arg)
{
	struct prun *pr = arg;
	relay(g, pr->out, pr->a->rank);
	prun_free(pr);
}

/* The value is there (or failed): call fn(value, *args) on self. */
static void prun_go(tw_future *val, void *arg)
{
	struct prun *pr = arg;
	tw_agent *a = pr->a;
	waits_put(a, pr->counted); /* no longer waiting */
	pr->counted = false;
	if (tw_future_status(val) != TW_OK) {
		relay(val, pr->out, a->rank);
		prun_free(pr);
		return;
	}
	tw_value cargs;
	uint32_t n = pr->args.len;
	tw_status st = tw_value_tuple(&cargs, n + 1);
	tw_value first = tw_value_none();
	if (st == TW_OK)
		st = tw_value_clone(&first, tw_future_value(val));
	if (st == TW_OK) {
		tw_value_set_item(&cargs, 0, first);
		for (uint32_t i = 0; i < n; i++) {
			tw_value_set_item(&cargs, i + 1, pr->args.u.items[i]);
			pr->args.u.items[i] = tw_value_none();
		}
	}
	tw_future *g = NULL;
	if (st == TW_OK)
		st = call_self_async(a, pr->fn.u.str, &cargs, &pr->kwargs, &g);
	if (st == TW_OK || cargs.kind == TW_KIND_TUPLE)
		tw_value_destroy(&cargs);
	if (st != TW_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", tw_errmsg(st));
		tw_future_fail(pr->out, st, a->rank, msg);
		prun_free(pr);
		return;
	}
	if (tw_future_then(g, prun_done, pr) != TW_OK)
		abort(); /* the first callback needs no allocation */
	tw_future_release(g);
}

/* Complete out with fn(value of val, *args, **kwargs) run here, once val
 * is done. Takes val's reference. args, kwargs and fn (cargs[1..3]) are
 * copied. */
/* Uncount a call that waited for a value (resolve counted it). */
static void waits_put(tw_agent *a, bool counted)
{
	if (!counted)
		return;
	struct rref_ctx *x = a->rref;
	pthread_mutex_lock(&x->mu);
	x->nwaits--;
	pthread_mutex_unlock(&x->mu);
}

static void prun_start(tw_agent *a, tw_future *val, bool counted,
		       const tw_value *cargs, tw_future *out)
{
	struct prun *pr = calloc(1, sizeof(*pr));
	tw_status st = pr != NULL ? TW_OK : TW_ENOMEM;
	if (st == TW_OK) {
		pr->a = a;
		pr->counted = counted;
		pr->val = val;
		pr->out = tw_future_retain(out);
		st = tw_value_clone(&pr->fn, &cargs->u.items[1]);
	}
	if (st == TW_OK)
		st = tw_value_clone(&pr->args, &cargs->u.items[2]);
	if (st == TW_OK)
		st = tw_value_clone(&pr->kwargs, &cargs->u.items[3]);
	if (st != TW_OK) {
		tw_future_fail(out, TW_ENOMEM, a->rank,
			       "no memory for a call on an RRef");
		if (pr != NULL) {
			prun_free(pr);
		} else {
			waits_put(a, counted);
			tw_future_release(val);
		}
		return;
	}
	if (tw_future_then(val, prun_go, pr) != TW_OK) {
		tw_future_fail(out, TW_ENOMEM, a->rank,
			       "no memory for a call on an RRef");
		prun_free(pr);
	}
}

/* TW_RREF_CALL_FN: args (RRef, fn, args, kwargs), from the RRef's holder
 * (or the owner itself for its own handle). */
static tw_status rref_call_handler(tw_call_ctx *ctx, const tw_value *args,
				   const tw_value *kwargs, tw_value *result,
				   void *arg)
{
	(void)kwargs;
	(void)result;
	tw_agent *a = arg;
	tw_status st;
	bool counted;
	tw_future *val = resolve(a, args, tw_call_caller(ctx), &st, &counted);
	if (val == NULL)
		return st;
	tw_future *out;
	if ((st = tw_future_create(&out)) != TW_OK) {
		waits_put(a, counted);
		tw_future_release(val);
		return st;
	}
	prun_start(a, val, counted, args, out);
	tw_call_defer(ctx, out);
	tw_future_release(out);
	return TW_OK;
}

tw_status rref_register(tw_agent *a)
{
	return tw_agent_register(a, TW_RREF_CALL_FN, rref_call_handler, a, 0);
}

/* The proxy's arguments: (RRef r, fn, args, kwargs), borrowing the
 * caller's values (items has 4 entries). */
static tw_value proxy_args(tw_value *items, tw_rref_id *id, const char *fn,
			   const tw_value *args, const tw_value *kwargs)
{
	items[0] = rref_value_of(id);
	call_items_borrow(items + 1, fn, args, kwargs);
	return (tw_value){.kind = TW_KIND_TUPLE,
			  .flags = TW_VALUE_BORROWED,
			  .len = 4,
			  .u.items = items};
}

static tw_status proxy_check(const tw_rref *r, const char *fn,
			     const tw_value *args, const tw_value *kwargs)
{
	if (r == NULL || fn == NULL || *fn == '\0')
		return tw_fail_static(TW_EINVAL, "NULL RRef or function name");
	if (args != NULL && args->kind != TW_KIND_TUPLE &&
	    args->kind != TW_KIND_LIST)
		return tw_fail_static(TW_EINVAL, "args must be a tuple or list "
						 "(or NULL for none)");
	if (kwargs != NULL && kwargs->kind != TW_KIND_DICT)
		return tw_fail_static(TW_EINVAL, "kwargs must be a dict (or "
						 "NULL for none)");
	return TW_OK;
}

struct proxy_op {
	tw_rref *r;
	tw_value cargs; /* owned: the proxy's arguments */
	int64_t timeout_ms;
	tw_future *out;
};

/* Free op, then settle its call as op_settle does. */
static void proxy_end(struct proxy_op *op, tw_future *from, tw_status kind,
		      uint32_t origin, const char *msg)
{
	tw_rref *r = op->r;
	tw_future *out = op->out;
	tw_value_destroy(&op->cargs);
	free(op);
	op_settle(r, out, from, kind, origin, msg);
}

static void proxy_done(tw_future *f, void *arg)
{
	proxy_end(arg, f, TW_OK, 0, NULL);
}

/* r's creation is settled (cf NULL: an owner handle): send the call. */
static void proxy_send(tw_future *cf, void *arg)
{
	struct proxy_op *op = arg;
	tw_rref *r = op->r;
	if (cf != NULL && creation_state(&r->id, cf) != USER_CONFIRMED) {
		tw_future *out = op->out;
		tw_value_destroy(&op->cargs);
		free(op);
		settle_creation(r, cf, out);
		return;
	}
	tw_future *f = NULL;
	tw_status st = tw_rpc_async_id(r->a, r->id.owner, TW_RREF_CALL_FN,
				       &op->cargs, NULL, op->timeout_ms, &f);
	if (st != TW_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", tw_errmsg(st));
		proxy_end(op, NULL, st, r->a->rank, msg);
		return;
	}
	if (tw_future_then(f, proxy_done, op) != TW_OK)
		abort(); /* the first callback needs no allocation */
	tw_future_release(f);
}

tw_status tw_rref_rpc_async(tw_rref *r, const char *fn, const tw_value *args,
			    const tw_value *kwargs, int64_t timeout_ms,
			    tw_future **out)
{
	if (out != NULL)
		*out = NULL;
	tw_status st = proxy_check(r, fn, args, kwargs);
	if (st == TW_OK && out == NULL)
		st = tw_fail_static(TW_EINVAL, "NULL out");
	if (st != TW_OK)
		return st;
	struct proxy_op *op = calloc(1, sizeof(*op));
	if (op == NULL)
		return tw_fail_static(TW_ENOMEM, "no memory for an RRef call");
	tw_value items[4];
	tw_value cargs = proxy_args(items, &r->id, fn, args, kwargs);
	st = tw_value_clone(&op->cargs, &cargs);
	if (st == TW_OK)
		st = tw_future_create(&op->out);
	if (st != TW_OK) {
		tw_value_destroy(&op->cargs);
		free(op);
		return tw_fail_static(TW_ENOMEM, "no memory for an RRef call");
	}
	op->r = tw_rref_retain(r);
	op->timeout_ms = timeout_ms;
	*out = tw_future_retain(op->out);
	if (r->owner)
		proxy_send(NULL, op);
	else if (tw_future_then(r->cf, proxy_send, op) != TW_OK)
		proxy_end(op, NULL, TW_ENOMEM, r->a->rank,
			  "no memory for an RRef call");
	return TW_OK;
}

/* Wait for f as tw_rpc_sync waits for its call (embedded owners poll). */
static tw_status wait_sync(tw_agent *a, tw_future *f, tw_value *result,
			   tw_value *err)
{
	struct agent_loop *own = NULL;
	if (agent_tls_loop != NULL && agent_tls_loop->a == a)
		own = agent_tls_loop;
	tw_status st = own != NULL ? agent_wait_own(own, f, -1)
				   : tw_future_wait(f, -1);
	if (st == TW_OK) {
		if (result != NULL)
			st = tw_future_take_value(f, result);
	} else {
		const tw_error *e = tw_future_error(f);
		if (err != NULL && e != NULL)
			tw_value_error(err, e->kind, e->origin, e->msg);
		if (e != NULL)
			agent_explain_error(a, st, e, "%s", "");
	}
	return st;
}

static bool on_own_loop(tw_agent *a)
{
	struct agent_loop *own = agent_tls_loop;
	return own != NULL && own->a == a &&
	       (!a->o.embedded || tw_loop_in_poll(own->loop));
}

tw_status tw_rref_rpc_sync(tw_rref *r, const char *fn, const tw_value *args,
			   const tw_value *kwargs, int64_t timeout_ms,
			   tw_value *result, tw_value *err)
{
	if (result != NULL)
		*result = tw_value_none();
	if (err != NULL)
		*err = tw_value_none();
	if (r != NULL && on_own_loop(r->a))
		return tw_fail_static(TW_EINVAL,
				      "tw_rref_rpc_sync called on a run loop: "
				      "use tw_rref_rpc_async");
	tw_future *f;
	tw_status st = tw_rref_rpc_async(r, fn, args, kwargs, timeout_ms, &f);
	if (st != TW_OK)
		return st;
	/* The call's own deadline bounds the wait (a pending creation's
	 * too: it fails at its own). */
	st = wait_sync(r->a, f, result, err);
	tw_future_release(f);
	return st;
}

static void release_cb(tw_future *f, void *arg)
{
	(void)f;
	tw_rref_release(arg);
}

tw_status tw_rref_remote(tw_rref *r, const char *fn, const tw_value *args,
			 const tw_value *kwargs, int64_t timeout_ms,
			 tw_rref **out)
{
	if (out != NULL)
		*out = NULL;
	tw_status st = proxy_check(r, fn, args, kwargs);
	if (st != TW_OK)
		return st;
	tw_value items[4];
	tw_value cargs = proxy_args(items, &r->id, fn, args, kwargs);
	st = tw_remote_id(r->a, r->id.owner, TW_RREF_CALL_FN, &cargs, NULL,
			  timeout_ms, out);
	if (st != TW_OK || (*out)->owner)
		return st; /* a remote to self read r's value already */
	/* r stays held until the owner confirmed the new RRef: by then it
	 * has read r's value (on_remote_call), whatever r's user does. */
	tw_rref_retain(r);
	if (tw_future_then((*out)->cf, release_cb, r) != TW_OK)
		tw_rref_release(r);
	return TW_OK;
}

/* ---- members that die ---- */

void rref_member_dead(tw_agent *a, uint32_t rank)
{
	struct rref_ctx *x = a->rref;
	if (x == NULL)
		return;
	/* Unlinked under the mutex and freed after it (a value's or a
	 * handle's last reference may run callbacks), as on_user_delete and
	 * on_child_accept do: values chained through their bucket link,
	 * children through theirs. */
	struct owner_ent *freed = NULL;
	struct child *gone = NULL;
	pthread_mutex_lock(&x->mu);
	if (x->dead) {
		pthread_mutex_unlock(&x->mu);
		return;
	}
	/* Its user forks, accepted or in flight to it, on every owned
	 * value. */
	for (uint32_t b = 0; b < RREF_BUCKETS; b++) {
		struct owner_ent *e = x->buckets[b], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			uint32_t dropped = 0;
			for (uint32_t i = 0; i < e->nusers;) {
				if (e->users[i].holder == rank) {
					ent_user_del(x, e, i);
					dropped++;
				} else {
					i++;
				}
			}
			if (dropped == 0)
				continue;
			x->st.dead_users_dropped += dropped;
			if (ent_dead(e)) {
				ent_unlink(x, e);
				e->next = freed;
				freed = e;
			}
		}
	}
	/* Forks of our handles sent to it: never accepted now. */
	for (uint32_t b = 0; b < CHILD_BUCKETS; b++) {
		struct child **pp = &x->children[b];
		while (*pp != NULL) {
			struct child *c = *pp;
			if (c->dst != rank) {
				pp = &c->next;
				continue;
			}
			*pp = c->next;
			x->st.forks_pending--;
			c->next = gone;
			gone = c;
		}
	}
	pthread_mutex_unlock(&x->mu);
	while (freed != NULL) {
		struct owner_ent *e = freed;
		freed = e->next;
		ent_free(e);
	}
	while (gone != NULL) {
		struct child *c = gone;
		gone = c->next;
		atomic_fetch_sub(&c->r->nchildren, 1);
		tw_rref_release(c->r);
		free(c);
	}
}
