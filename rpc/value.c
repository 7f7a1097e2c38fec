/* tw_value in memory: construction, ownership, deep copy, equality and Python-like printing. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/value.h>

#include "dataplane/err.h"
#include "rpc/tcache.h"
#include "rpc/value_impl.h"
#include "utf8.h"
#include "value_wire.h"

/*
 * Ownership in one sentence: a node with TW_VALUE_BORROWED set owns nothing
 * below it (its storage, and so the children stored there, belong to
 * someone else); any other node owns its storage and its children.
 *
 * Nesting: destroy walks any tree; clone, equal and format stop at
 * TW_VALUE_MAX_DEPTH nested containers (a list holding a list has depth 2),
 * which is what decoders accept, so the recursion depth stays bounded.
 *
 * Constructors build into locals and store to *out only on success: on
 * failure the caller's value is untouched.
 *
 * Every failure says why (tw_errmsg): fixed reasons with tw_fail_static,
 * which costs no formatting, on the paths a decoder or a handler may take
 * often; formatted ones where a number or a kind helps.
 */

#define STR_(x) #x
#define STR(x) STR_(x)

#define MAX_LEN (UINT32_MAX - 1u) /* longest string, bytes or message */

/* The tw_tensor records of TENSOR values, kept per thread for the next
 * one: a call's result is cloned out of its message and destroyed by the
 * caller, a handler's echo cloned and destroyed once its answer is
 * encoded. */
static struct tcache tensor_recs = TCACHE_INIT(32);
static _Thread_local struct tcache_list tensor_recs_tls;

static bool kind_valid(unsigned kind)
{
	return kind < TW_KIND_COUNT_;
}

static bool is_container(unsigned kind)
{
	return kind == TW_KIND_LIST || kind == TW_KIND_TUPLE ||
	       kind == TW_KIND_DICT;
}

/* ---- construction ---------------------------------------------------- */

/* An owned, NUL-terminated copy of len bytes (p may be NULL when len is 0). */
static char *dup_bytes(const void *p, size_t len)
{
	char *s = malloc(len + 1);
	if (s == NULL)
		return NULL;
	if (len > 0)
		memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

static tw_status make_blob(tw_value *out, tw_kind kind, const void *p,
			   size_t len)
{
	const char *what = kind == TW_KIND_STRING ? "string" : "bytes";
	if (out == NULL || (p == NULL && len > 0))
		return tw_fail(TW_EINVAL,
			       "%s value: out is NULL, or the bytes "
			       "are NULL with a length",
			       what);
	if (len > MAX_LEN)
		return tw_fail(TW_EOVERFLOW,
			       "%s value of %zu bytes, over the "
			       "limit of %u",
			       what, len, MAX_LEN);
	if (kind == TW_KIND_STRING && !tw_utf8_valid(p, len))
		return tw_fail_static(TW_EINVAL, "string value is not valid "
						 "UTF-8");
	char *s = dup_bytes(p, len);
	if (s == NULL)
		return tw_fail(TW_ENOMEM,
			       "out of memory for a %s value of %zu "
			       "bytes",
			       what, len);
	tw_value v = {.kind = (uint8_t)kind, .len = (uint32_t)len};
	v.u.str = s;
	*out = v;
	return TW_OK;
}

tw_status tw_value_string(tw_value *out, const char *s, size_t len)
{
	return make_blob(out, TW_KIND_STRING, s, len);
}

tw_status tw_value_cstring(tw_value *out, const char *s)
{
	if (s == NULL)
		return tw_fail_static(TW_EINVAL, "tw_value_cstring: s is NULL");
	return make_blob(out, TW_KIND_STRING, s, strlen(s));
}

tw_status tw_value_bytes(tw_value *out, const void *p, size_t len)
{
	return make_blob(out, TW_KIND_BYTES, p, len);
}

/*
 * The borrow forms cannot report errors, so a request they cannot honour
 * (NULL with a length, or a length over the limit) yields NONE, which any
 * consumer expecting a string rejects with TW_ETYPE.
 */
static tw_value make_borrow(tw_kind kind, const void *p, size_t len)
{
	tw_value v = tw_value_none();
	if ((p == NULL && len > 0) || len > MAX_LEN)
		return v;
	v.kind = (uint8_t)kind;
	v.flags = TW_VALUE_BORROWED;
	v.len = (uint32_t)len;
	/* Keep the "str is never NULL" invariant for empty borrows. */
	v.u.str = p != NULL ? p : "";
	return v;
}

tw_value tw_value_string_borrow(const char *s, size_t len)
{
	return make_borrow(TW_KIND_STRING, s, len);
}

tw_value tw_value_bytes_borrow(const void *p, size_t len)
{
	return make_borrow(TW_KIND_BYTES, p, len);
}

/* A TENSOR value holding a new reference to t's bytes; t already checked. */
static tw_status make_tensor(tw_value *out, const tw_tensor *t)
{
	tw_tensor *copy = tcache_get(&tensor_recs_tls);
	if (copy == NULL)
		copy = malloc(sizeof(*copy));
	if (copy == NULL)
		return tw_fail_static(TW_ENOMEM, "out of memory for a tensor "
						 "value");
	tw_tensor_ref(copy, t);
	tw_value v = {.kind = TW_KIND_TENSOR};
	v.u.tensor = copy;
	*out = v;
	return TW_OK;
}

tw_status tw_value_tensor(tw_value *out, const tw_tensor *t)
{
	if (out == NULL || t == NULL)
		return tw_fail_static(TW_EINVAL, "tw_value_tensor: out or t is "
						 "NULL");
	/* Refuse a malformed descriptor here rather than at send time. */
	size_t span;
	tw_status st = tw_tensor_span(t, &span);
	if (st != TW_OK)
		return st;
	return make_tensor(out, t);
}

static tw_status make_seq(tw_value *out, tw_kind kind, uint32_t n)
{
	if (out == NULL)
		return tw_fail(TW_EINVAL, "%s value: out is NULL",
			       tw_kind_name(kind));
	tw_value v = {.kind = (uint8_t)kind, .len = n};
	if (n > 0) {
		/* All-zero bytes are a NONE value: calloc initialises slots. */
		v.u.items = calloc(n, sizeof(tw_value));
		if (v.u.items == NULL)
			return tw_fail(TW_ENOMEM,
				       "out of memory for a %s of %u "
				       "items",
				       tw_kind_name(kind), n);
	}
	*out = v;
	return TW_OK;
}

tw_status tw_value_list(tw_value *out, uint32_t n)
{
	return make_seq(out, TW_KIND_LIST, n);
}

tw_status tw_value_tuple(tw_value *out, uint32_t n)
{
	return make_seq(out, TW_KIND_TUPLE, n);
}

tw_status tw_value_dict(tw_value *out, uint32_t n)
{
	if (out == NULL)
		return tw_fail_static(TW_EINVAL, "dict value: out is NULL");
	tw_value v = {.kind = TW_KIND_DICT, .len = n};
	if (n > 0) {
		/* A NULL key marks an entry not yet set. */
		v.u.entries = calloc(n, sizeof(tw_kv));
		if (v.u.entries == NULL)
			return tw_fail(TW_ENOMEM,
				       "out of memory for a dict of "
				       "%u entries",
				       n);
	}
	*out = v;
	return TW_OK;
}

tw_status tw_value_set_item(tw_value *container, uint32_t i, tw_value child)
{
	if (container == NULL)
		return tw_fail_static(TW_EINVAL, "tw_value_set_item: container "
						 "is NULL");
	if (!kind_valid(child.kind))
		return tw_fail(TW_EINVAL,
			       "tw_value_set_item: the child has an "
			       "unknown kind %u",
			       child.kind);
	if (container->kind != TW_KIND_LIST && container->kind != TW_KIND_TUPLE)
		return tw_fail(TW_ETYPE,
			       "tw_value_set_item: the container is "
			       "of kind '%s', not a list or tuple",
			       tw_kind_name((tw_kind)container->kind));
	/* Writing into borrowed storage would change someone else's tree. */
	if (container->flags & TW_VALUE_BORROWED)
		return tw_fail_static(TW_EINVAL,
				      "tw_value_set_item: the "
				      "container is borrowed (its storage is "
				      "someone else's)");
	if (i >= container->len)
		return tw_fail(TW_EINVAL,
			       "tw_value_set_item: index %u out of "
			       "range for a %s of %u",
			       i, tw_kind_name((tw_kind)container->kind),
			       container->len);
	/* Moving a container into itself would make a cycle that destroy
	 * never leaves; the direct case costs one compare to refuse. */
	if (is_container(child.kind) && child.len > 0 &&
	    child.u.items == container->u.items)
		return tw_fail_static(TW_EINVAL,
				      "tw_value_set_item: a container "
				      "cannot hold itself");
	tw_value_destroy(&container->u.items[i]);
	container->u.items[i] = child;
	return TW_OK;
}

tw_status tw_value_dict_set(tw_value *dict, uint32_t i, const char *key,
			    tw_value child)
{
	if (dict == NULL || key == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_value_dict_set: dict or key "
				      "is NULL");
	if (!kind_valid(child.kind))
		return tw_fail(TW_EINVAL,
			       "tw_value_dict_set: the child has an "
			       "unknown kind %u",
			       child.kind);
	if (dict->kind != TW_KIND_DICT)
		return tw_fail(TW_ETYPE,
			       "tw_value_dict_set: the value is of "
			       "kind '%s', not a dict",
			       tw_kind_name((tw_kind)dict->kind));
	if (dict->flags & TW_VALUE_BORROWED)
		return tw_fail_static(TW_EINVAL,
				      "tw_value_dict_set: the dict is "
				      "borrowed (its storage is someone "
				      "else's)");
	if (i >= dict->len)
		return tw_fail(TW_EINVAL,
			       "tw_value_dict_set: index %u out of "
			       "range for a dict of %u",
			       i, dict->len);
	if (is_container(child.kind) && child.len > 0 &&
	    child.u.entries == dict->u.entries)
		return tw_fail_static(TW_EINVAL,
				      "tw_value_dict_set: a container "
				      "cannot hold itself");
	size_t klen = strlen(key);
	if (klen > MAX_LEN)
		return tw_fail(TW_EOVERFLOW,
			       "dict key of %zu bytes, over the "
			       "limit of %u",
			       klen, MAX_LEN);
	if (!tw_utf8_valid(key, klen))
		return tw_fail_static(TW_EINVAL, "dict key is not valid UTF-8");

	/* Linear: dicts here are keyword arguments, a handful of entries,
	 * and an index would cost more than it saves. */
	tw_kv *e = dict->u.entries;
	for (uint32_t j = 0; j < dict->len; j++) {
		if (j != i && e[j].key != NULL && e[j].key_len == klen &&
		    memcmp(e[j].key, key, klen) == 0)
			return tw_fail(TW_EINVAL,
				       "dict key '%.64s' is already "
				       "used by entry %u",
				       key, j);
	}

	char *k = dup_bytes(key, klen);
	if (k == NULL)
		return tw_fail(TW_ENOMEM,
			       "out of memory for a dict key of %zu "
			       "bytes",
			       klen);
	free((void *)e[i].key);
	tw_value_destroy(&e[i].val);
	e[i].key = k;
	e[i].key_len = (uint32_t)klen;
	e[i].val = child;
	return TW_OK;
}

tw_status tw_value_rref(tw_value *out, const tw_rref_id *id)
{
	if (out == NULL || id == NULL)
		return tw_fail_static(TW_EINVAL, "tw_value_rref: out or id is "
						 "NULL");
	tw_rref_id *copy = malloc(sizeof(*copy));
	if (copy == NULL)
		return tw_fail_static(TW_ENOMEM, "out of memory for an rref "
						 "value");
	*copy = *id;
	tw_value v = {.kind = TW_KIND_RREF};
	v.u.rref = copy;
	*out = v;
	return TW_OK;
}

/* One allocation: the tw_error, then its message and NUL. */
static tw_status make_error(tw_value *out, tw_status kind, uint32_t origin,
			    const char *msg, size_t len)
{
	tw_error *e = malloc(sizeof(*e) + len + 1);
	if (e == NULL)
		return tw_fail(TW_ENOMEM,
			       "out of memory for an error value "
			       "with a message of %zu bytes",
			       len);
	char *m = (char *)(e + 1);
	if (len > 0)
		memcpy(m, msg, len);
	m[len] = '\0';
	e->kind = kind;
	e->origin = origin;
	e->msg = m;
	e->msg_len = (uint32_t)len;
	tw_value v = {.kind = TW_KIND_ERROR};
	v.u.err = e;
	*out = v;
	return TW_OK;
}

tw_status tw_value_error(tw_value *out, tw_status kind, uint32_t origin,
			 const char *msg)
{
	if (out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_value_error: out is NULL");
	/* An error must say what failed: TW_OK is not a failure. */
	if ((unsigned)kind == TW_OK || (unsigned)kind >= TW_STATUS_COUNT_)
		return tw_fail(TW_EINVAL,
			       "tw_value_error: kind %d is not a "
			       "failure status",
			       (int)kind);
	/* Error paths often have no message to give: NULL reads as "". */
	if (msg == NULL)
		msg = "";
	size_t len = strlen(msg);
	if (len > MAX_LEN)
		return tw_fail(TW_EOVERFLOW,
			       "error message of %zu bytes, over "
			       "the limit of %u",
			       len, MAX_LEN);
	return make_error(out, kind, origin, msg, len);
}

/* ---- destruction ----------------------------------------------------- */

void tw_value_destroy(tw_value *v)
{
	if (v == NULL)
		return;
	if (v->flags & TW_VALUE_BORROWED) {
		*v = tw_value_none();
		return;
	}
	switch (v->kind) {
	case TW_KIND_STRING:
	case TW_KIND_BYTES:
		free((void *)v->u.str);
		break;
	case TW_KIND_TENSOR:
		if (v->u.tensor != NULL)
			tw_tensor_release(v->u.tensor);
		tcache_put(&tensor_recs, &tensor_recs_tls, v->u.tensor);
		break;
	case TW_KIND_LIST:
	case TW_KIND_TUPLE:
		for (uint32_t i = 0; v->u.items != NULL && i < v->len; i++)
			tw_value_destroy(&v->u.items[i]);
		free(v->u.items);
		break;
	case TW_KIND_DICT:
		for (uint32_t i = 0; v->u.entries != NULL && i < v->len; i++) {
			free((void *)v->u.entries[i].key);
			tw_value_destroy(&v->u.entries[i].val);
		}
		free(v->u.entries);
		break;
	case TW_KIND_RREF:
		if (v->flags & TW_VALUE_RREF_HANDLE_)
			rref_id_release(v->u.rref);
		else
			free(v->u.rref);
		break;
	case TW_KIND_ERROR:
		free(v->u.err);
		break;
	default:
		/* Scalars own nothing; an unknown kind cannot be freed safely. */
		break;
	}
	*v = tw_value_none();
}

/* ---- deep copy ------------------------------------------------------- */

static tw_status clone_rec(tw_value *dst, const tw_value *src, unsigned depth);

static tw_status clone_seq(tw_value *dst, const tw_value *src, unsigned depth)
{
	tw_value v;
	tw_status st = make_seq(&v, (tw_kind)src->kind, src->len);
	if (st != TW_OK)
		return st;
	for (uint32_t i = 0; i < src->len; i++) {
		st = clone_rec(&v.u.items[i], &src->u.items[i], depth + 1);
		if (st != TW_OK) {
			tw_value_destroy(&v);
			return st;
		}
	}
	*dst = v;
	return TW_OK;
}

static tw_status clone_dict(tw_value *dst, const tw_value *src, unsigned depth)
{
	tw_value v;
	tw_status st = tw_value_dict(&v, src->len);
	if (st != TW_OK)
		return st;
	for (uint32_t i = 0; i < src->len; i++) {
		const tw_kv *se = &src->u.entries[i];
		tw_kv *de = &v.u.entries[i];
		if (se->key == NULL)
			continue; /* unset entry stays unset */
		/* Keys were validated when set (or decoded); copy as-is. */
		char *k = dup_bytes(se->key, se->key_len);
		if (k == NULL) {
			tw_value_destroy(&v);
			return tw_fail_static(TW_ENOMEM,
					      "out of memory copying a "
					      "dict key");
		}
		de->key = k;
		de->key_len = se->key_len;
		st = clone_rec(&de->val, &se->val, depth + 1);
		if (st != TW_OK) {
			tw_value_destroy(&v);
			return st;
		}
	}
	*dst = v;
	return TW_OK;
}

/* No UTF-8 re-check: the source is already a string (validated when made
 * or decoded, or vouched for by whoever borrowed it in). */
static tw_status clone_blob(tw_value *dst, const tw_value *src)
{
	if (src->u.str == NULL && src->len > 0)
		return tw_fail_static(TW_EINVAL,
				      "tw_value_clone: a string or "
				      "bytes value without its bytes");
	char *s = dup_bytes(src->u.str, src->len);
	if (s == NULL)
		return tw_fail(TW_ENOMEM, "out of memory copying %u bytes",
			       src->len);
	tw_value v = {.kind = src->kind, .len = src->len};
	v.u.str = s;
	*dst = v;
	return TW_OK;
}

static tw_status clone_rec(tw_value *dst, const tw_value *src, unsigned depth)
{
	if (is_container(src->kind) && depth >= TW_VALUE_MAX_DEPTH)
		return tw_fail_static(
			TW_EOVERFLOW,
			"tw_value_clone: more than "
			"TW_VALUE_MAX_DEPTH (" STR(
				TW_VALUE_MAX_DEPTH) ") nested containers");
	if (is_container(src->kind) && src->len > 0 && src->u.items == NULL)
		return tw_fail_static(TW_EINVAL, "tw_value_clone: a container "
						 "without its items");

	switch (src->kind) {
	case TW_KIND_NONE:
	case TW_KIND_BOOL:
	case TW_KIND_INT:
	case TW_KIND_DOUBLE:
		*dst = *src;
		dst->flags = 0;
		return TW_OK;
	case TW_KIND_STRING:
	case TW_KIND_BYTES:
		return clone_blob(dst, src);
	case TW_KIND_TENSOR:
		if (src->u.tensor == NULL)
			return tw_fail_static(TW_EINVAL,
					      "tw_value_clone: a tensor "
					      "value without its tensor");
		/* A decoded message's tensor was checked by the decoder
		 * (value_wire.h); the clone does not carry the mark. */
		if ((src->flags &
		     (TW_VALUE_BORROWED | TW_VALUE_WIRE_CHECKED_)) ==
		    (TW_VALUE_BORROWED | TW_VALUE_WIRE_CHECKED_))
			return make_tensor(dst, src->u.tensor);
		return tw_value_tensor(dst, src->u.tensor);
	case TW_KIND_LIST:
	case TW_KIND_TUPLE:
		return clone_seq(dst, src, depth);
	case TW_KIND_DICT:
		return clone_dict(dst, src, depth);
	case TW_KIND_RREF:
		if (src->u.rref == NULL)
			return tw_fail_static(TW_EINVAL,
					      "tw_value_clone: an rref "
					      "value without its id");
		if (src->flags & TW_VALUE_RREF_HANDLE_) {
			/* The same handle, one more reference. */
			rref_id_retain(src->u.rref);
			*dst = (tw_value){.kind = TW_KIND_RREF,
					  .flags = TW_VALUE_RREF_HANDLE_,
					  .u.rref = src->u.rref};
			return TW_OK;
		}
		return tw_value_rref(dst, src->u.rref);
	case TW_KIND_ERROR:
		if (src->u.err == NULL ||
		    (src->u.err->msg == NULL && src->u.err->msg_len > 0))
			return tw_fail_static(TW_EINVAL,
					      "tw_value_clone: an "
					      "error value without its error");
		return make_error(dst, src->u.err->kind, src->u.err->origin,
				  src->u.err->msg, src->u.err->msg_len);
	}
	return tw_fail(TW_EINVAL, "tw_value_clone: unknown kind %u", src->kind);
}

tw_status value_clone_at(tw_value *dst, const tw_value *src, unsigned depth)
{
	if (dst == NULL || src == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_value_clone: dst or src is "
				      "NULL");
	/* Through a local: dst may alias src, and fails leave dst alone. */
	tw_value v;
	tw_status st = clone_rec(&v, src, depth);
	if (st == TW_OK)
		*dst = v;
	return st;
}

tw_status tw_value_clone(tw_value *dst, const tw_value *src)
{
	return value_clone_at(dst, src, 0);
}

/* ---- equality -------------------------------------------------------- */

static bool equal_rec(const tw_value *a, const tw_value *b, unsigned depth);

static bool bytes_equal(const char *a, uint32_t alen, const char *b,
			uint32_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static uint32_t dict_count(const tw_value *d)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < d->len; i++)
		n += d->u.entries[i].key != NULL;
	return n;
}

static const tw_kv *dict_find(const tw_value *d, const char *key, uint32_t len)
{
	for (uint32_t i = 0; i < d->len; i++) {
		const tw_kv *e = &d->u.entries[i];
		if (e->key != NULL && bytes_equal(e->key, e->key_len, key, len))
			return e;
	}
	return NULL;
}

/* Dicts compare as Python's: same keys, equal values, order aside. */
static bool dict_equal(const tw_value *a, const tw_value *b, unsigned depth)
{
	if (dict_count(a) != dict_count(b))
		return false;
	for (uint32_t i = 0; i < a->len; i++) {
		const tw_kv *ea = &a->u.entries[i];
		if (ea->key == NULL)
			continue;
		/* Usually both sides list keys in the same order (a clone, a
		 * decoded copy): try the same slot before searching. */
		const tw_kv *eb = NULL;
		if (i < b->len && b->u.entries[i].key != NULL &&
		    bytes_equal(b->u.entries[i].key, b->u.entries[i].key_len,
				ea->key, ea->key_len))
			eb = &b->u.entries[i];
		else
			eb = dict_find(b, ea->key, ea->key_len);
		if (eb == NULL || !equal_rec(&ea->val, &eb->val, depth + 1))
			return false;
	}
	return true;
}

static bool double_equal(double x, double y)
{
	if (isnan(x) && isnan(y))
		return true;
	uint64_t bx, by;
	memcpy(&bx, &x, sizeof(bx));
	memcpy(&by, &y, sizeof(by));
	return bx == by;
}

static bool equal_rec(const tw_value *a, const tw_value *b, unsigned depth)
{
	if (a->kind != b->kind)
		return false;
	if (is_container(a->kind)) {
		if (depth >= TW_VALUE_MAX_DEPTH)
			return false;
		/* A dict's len counts slots, set or not: dict_equal compares
		 * the keys actually present. */
		if (a->kind != TW_KIND_DICT && a->len != b->len)
			return false;
		if (a->len > 0 && (a->u.items == NULL || b->u.items == NULL))
			return false;
	}

	switch (a->kind) {
	case TW_KIND_NONE:
		return true;
	case TW_KIND_BOOL:
		return a->u.b == b->u.b;
	case TW_KIND_INT:
		return a->u.i == b->u.i;
	case TW_KIND_DOUBLE:
		return double_equal(a->u.d, b->u.d);
	case TW_KIND_STRING:
	case TW_KIND_BYTES:
		return bytes_equal(a->u.str, a->len, b->u.str, b->len);
	case TW_KIND_TENSOR:
		return a->u.tensor != NULL && b->u.tensor != NULL &&
		       tw_tensor_equal(a->u.tensor, b->u.tensor);
	case TW_KIND_LIST:
	case TW_KIND_TUPLE:
		for (uint32_t i = 0; i < a->len; i++)
			if (!equal_rec(&a->u.items[i], &b->u.items[i],
				       depth + 1))
				return false;
		return true;
	case TW_KIND_DICT:
		return dict_equal(a, b, depth);
	case TW_KIND_RREF: {
		const tw_rref_id *x = a->u.rref, *y = b->u.rref;
		if (x == NULL || y == NULL)
			return false;
		return x->owner == y->owner &&
		       x->rref.created_on == y->rref.created_on &&
		       x->rref.local_id == y->rref.local_id &&
		       x->fork.created_on == y->fork.created_on &&
		       x->fork.local_id == y->fork.local_id;
	}
	case TW_KIND_ERROR: {
		const tw_error *x = a->u.err, *y = b->u.err;
		if (x == NULL || y == NULL)
			return false;
		return x->kind == y->kind && x->origin == y->origin &&
		       bytes_equal(x->msg, x->msg_len, y->msg, y->msg_len);
	}
	}
	return false;
}

bool tw_value_equal(const tw_value *a, const tw_value *b)
{
	if (a == NULL || b == NULL)
		return false;
	return equal_rec(a, b, 0);
}

/* ---- accessors ------------------------------------------------------- */

/* The accessors' refusals: what was asked of what. */
static tw_status null_arg(void)
{
	return tw_fail_static(TW_EINVAL, "value accessor: the value or an out "
					 "pointer is NULL");
}

static tw_status not_a(const tw_value *v, const char *want)
{
	return tw_fail(TW_ETYPE, "expected %s, got a value of kind '%s'", want,
		       tw_kind_name((tw_kind)v->kind));
}

tw_status tw_value_get_bool(const tw_value *v, bool *out)
{
	if (v == NULL || out == NULL)
		return null_arg();
	if (v->kind != TW_KIND_BOOL)
		return not_a(v, "a bool");
	*out = v->u.b;
	return TW_OK;
}

tw_status tw_value_get_int(const tw_value *v, int64_t *out)
{
	if (v == NULL || out == NULL)
		return null_arg();
	if (v->kind != TW_KIND_INT)
		return not_a(v, "an int");
	*out = v->u.i;
	return TW_OK;
}

tw_status tw_value_get_double(const tw_value *v, double *out)
{
	if (v == NULL || out == NULL)
		return null_arg();
	/* As Python and torch schemas: an int is acceptable as a float. */
	if (v->kind == TW_KIND_INT) {
		*out = (double)v->u.i;
		return TW_OK;
	}
	if (v->kind != TW_KIND_DOUBLE)
		return not_a(v, "a double or an int");
	*out = v->u.d;
	return TW_OK;
}

tw_status tw_value_get_string(const tw_value *v, const char **s, size_t *len)
{
	if (v == NULL || s == NULL)
		return null_arg();
	if (v->kind != TW_KIND_STRING)
		return not_a(v, "a string");
	*s = v->u.str;
	if (len != NULL)
		*len = v->len;
	return TW_OK;
}

tw_status tw_value_get_bytes(const tw_value *v, const void **p, size_t *len)
{
	if (v == NULL || p == NULL || len == NULL)
		return null_arg();
	if (v->kind != TW_KIND_BYTES)
		return not_a(v, "bytes");
	*p = v->u.str;
	*len = v->len;
	return TW_OK;
}

tw_status tw_value_get_tensor(const tw_value *v, const tw_tensor **out)
{
	if (v == NULL || out == NULL)
		return null_arg();
	if (v->kind != TW_KIND_TENSOR)
		return not_a(v, "a tensor");
	*out = v->u.tensor;
	return TW_OK;
}

tw_status tw_value_get_item(const tw_value *v, uint32_t i, const tw_value **out)
{
	if (v == NULL || out == NULL)
		return null_arg();
	if (v->kind != TW_KIND_LIST && v->kind != TW_KIND_TUPLE)
		return not_a(v, "a list or tuple");
	if (i >= v->len || v->u.items == NULL)
		return tw_fail(TW_EINVAL,
			       "index %u out of range for a %s of %u", i,
			       tw_kind_name((tw_kind)v->kind), v->len);
	*out = &v->u.items[i];
	return TW_OK;
}

tw_status tw_value_dict_get(const tw_value *v, const char *key,
			    const tw_value **out)
{
	if (v == NULL || key == NULL || out == NULL)
		return null_arg();
	if (v->kind != TW_KIND_DICT)
		return not_a(v, "a dict");
	size_t klen = strlen(key);
	/* Absent is often expected (an optional keyword argument): a fixed
	 * reason, no formatting. */
	if (klen > MAX_LEN || v->u.entries == NULL)
		return tw_fail_static(TW_ENOENT, "no such key in the dict");
	const tw_kv *e = dict_find(v, key, (uint32_t)klen);
	if (e == NULL)
		return tw_fail_static(TW_ENOENT, "no such key in the dict");
	*out = &e->val;
	return TW_OK;
}

const char *tw_kind_name(tw_kind kind)
{
	static const char *const names[TW_KIND_COUNT_] = {
		[TW_KIND_NONE] = "none",     [TW_KIND_BOOL] = "bool",
		[TW_KIND_INT] = "int",       [TW_KIND_DOUBLE] = "double",
		[TW_KIND_STRING] = "string", [TW_KIND_BYTES] = "bytes",
		[TW_KIND_TENSOR] = "tensor", [TW_KIND_LIST] = "list",
		[TW_KIND_TUPLE] = "tuple",   [TW_KIND_DICT] = "dict",
		[TW_KIND_RREF] = "rref",     [TW_KIND_ERROR] = "error",
	};
	if ((unsigned)kind >= TW_KIND_COUNT_)
		return "?";
	return names[kind];
}

/* ---- formatting ------------------------------------------------------ */

/*
 * snprintf semantics: text beyond size - 1 is counted but not written, so
 * callers can size a second attempt from the return value.
 */
struct fmt {
	char *buf;
	size_t size;
	size_t len; /* length of the full text so far */
};

static void put(struct fmt *f, const char *s, size_t n)
{
	if (f->size > 0 && f->len < f->size - 1) {
		size_t room = f->size - 1 - f->len;
		memcpy(f->buf + f->len, s, n < room ? n : room);
	}
	f->len = n > SIZE_MAX - f->len ? SIZE_MAX : f->len + n;
}

static void puts_(struct fmt *f, const char *s)
{
	put(f, s, strlen(s));
}

static void putc_(struct fmt *f, char c)
{
	put(f, &c, 1);
}

static void putf(struct fmt *f, const char *fmtstr, ...)
	__attribute__((format(printf, 2, 3)));

static void putf(struct fmt *f, const char *fmtstr, ...)
{
	char tmp[192];
	va_list ap;
	va_start(ap, fmtstr);
	int n = vsnprintf(tmp, sizeof(tmp), fmtstr, ap);
	va_end(ap);
	/* Every caller formats numbers into far less than tmp holds. */
	if (n > 0)
		put(f, tmp,
		    (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* IEEE half <-> single, round to nearest even, for printing halves. */
static float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1F;
	uint32_t man = h & 0x3FF;
	uint32_t bits;
	if (exp == 0) {
		float f = (float)man * 0x1p-24f; /* zero or subnormal: exact */
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7F800000u | (man << 13);
	else
		bits = sign | ((exp + 112) << 23) | (man << 13);
	float f;
	memcpy(&f, &bits, sizeof(f));
	return f;
}

static uint16_t f32_to_f16(float f)
{
	uint32_t x;
	memcpy(&x, &f, sizeof(x));
	uint32_t sign = (x >> 16) & 0x8000;
	uint32_t exp = (x >> 23) & 0xFF;
	uint32_t man = x & 0x7FFFFF;
	if (exp == 0xFF)
		return (uint16_t)(sign | 0x7C00 | (man ? 0x200 : 0));
	int e = (int)exp - 127 + 15;
	if (e >= 31)
		return (uint16_t)(sign | 0x7C00);
	if (e <= 0) {
		if (e < -10)
			return (uint16_t)sign;
		man |= 0x800000;
		unsigned shift = (unsigned)(14 - e);
		uint32_t h = man >> shift;
		uint32_t rem = man & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (h & 1)))
			h++;
		return (uint16_t)(sign | h);
	}
	uint32_t h = sign | ((uint32_t)e << 10) | (man >> 13);
	uint32_t rem = man & 0x1FFF;
	/* A carry out of the mantissa correctly bumps the exponent. */
	if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
		h++;
	return (uint16_t)h;
}

static float bf16_to_f32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;
	memcpy(&f, &bits, sizeof(f));
	return f;
}

static uint16_t f32_to_bf16(float f)
{
	uint32_t x;
	memcpy(&x, &f, sizeof(x));
	if ((x & 0x7FFFFFFFu) > 0x7F800000u)
		return (uint16_t)((x >> 16) | 0x40); /* NaN stays NaN */
	x += 0x7FFF + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

/* Precision a real is printed at: the shortest text that reads back as
 * the same value of this type. */
enum real_type { REAL_F64, REAL_F32, REAL_F16, REAL_BF16 };

static bool reads_back(const char *text, double x, enum real_type rt)
{
	double y = strtod(text, NULL);
	switch (rt) {
	case REAL_F64:
		return y == x;
	case REAL_F32:
		return (float)y == (float)x;
	case REAL_F16:
		return f32_to_f16((float)y) == f32_to_f16((float)x);
	case REAL_BF16:
		return f32_to_bf16((float)y) == f32_to_bf16((float)x);
	}
	return false;
}

/*
 * Python's repr of a float: the shortest round-tripping digits, positional
 * when the decimal exponent is in [-4, 16), scientific otherwise. The text
 * is assembled here rather than by printf so it never depends on the
 * locale's decimal point. py_float appends ".0" to integral values, as
 * Python does for floats; tensor elements go without, as in the examples.
 */
static void put_real(struct fmt *f, double x, enum real_type rt, bool py_float)
{
	if (isnan(x)) {
		puts_(f, "nan");
		return;
	}
	if (isinf(x)) {
		puts_(f, x < 0 ? "-inf" : "inf");
		return;
	}

	char tmp[64];
	int prec;
	for (prec = 1; prec < 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, x);
		if (reads_back(tmp, x, rt))
			break;
	}
	if (prec == 17)
		snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, x);

	/* Split "-d.ddde+XX" into its digits and decimal exponent. */
	char digits[24];
	int nd = 0;
	const char *p = tmp;
	for (; *p != '\0' && *p != 'e' && *p != 'E'; p++)
		if (*p >= '0' && *p <= '9' && nd < (int)sizeof(digits) - 1)
			digits[nd++] = *p;
	digits[nd] = '\0';
	int exp10 = (*p != '\0') ? atoi(p + 1) : 0;
	/* Trailing zeros carry no information ("%.0e" of 100 is "1e+02"). */
	while (nd > 1 && digits[nd - 1] == '0')
		digits[--nd] = '\0';

	if (signbit(x))
		putc_(f, '-');
	if (exp10 >= -4 && exp10 < 16) {
		if (exp10 < 0) {
			puts_(f, "0.");
			for (int i = -1; i > exp10; i--)
				putc_(f, '0');
			put(f, digits, (size_t)nd);
			return;
		}
		int int_digits = exp10 + 1;
		for (int i = 0; i < int_digits; i++)
			putc_(f, i < nd ? digits[i] : '0');
		if (nd > int_digits) {
			putc_(f, '.');
			put(f, digits + int_digits, (size_t)(nd - int_digits));
		} else if (py_float) {
			puts_(f, ".0");
		}
		return;
	}
	putc_(f, digits[0]);
	if (nd > 1) {
		putc_(f, '.');
		put(f, digits + 1, (size_t)(nd - 1));
	}
	putf(f, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
}

/* Python picks ' unless the text holds ' and no ". */
static char pick_quote(const char *s, size_t len)
{
	bool single = memchr(s, '\'', len) != NULL;
	bool dbl = memchr(s, '"', len) != NULL;
	return single && !dbl ? '"' : '\'';
}

/* Escape shared by str and bytes repr; false when c is not one of them. */
static bool put_common_escape(struct fmt *f, uint8_t c, char quote)
{
	switch (c) {
	case '\\':
		puts_(f, "\\\\");
		return true;
	case '\n':
		puts_(f, "\\n");
		return true;
	case '\r':
		puts_(f, "\\r");
		return true;
	case '\t':
		puts_(f, "\\t");
		return true;
	}
	if (c == (uint8_t)quote) {
		putc_(f, '\\');
		putc_(f, (char)c);
		return true;
	}
	return false;
}

static void put_str_repr(struct fmt *f, const char *s, size_t len)
{
	if (s == NULL)
		len = 0;
	char q = len > 0 ? pick_quote(s, len) : '\'';
	putc_(f, q);
	size_t i = 0;
	while (i < len) {
		uint8_t c = (uint8_t)s[i];
		if (put_common_escape(f, c, q)) {
			i++;
			continue;
		}
		uint32_t cp;
		size_t n = tw_utf8_decode(s + i, len - i, &cp);
		if (n == 0) {
			/* Only a borrowed string can get here; show the byte. */
			putf(f, "\\x%02x", c);
			i++;
		} else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
			/* C0/C1 controls, as Python's repr shows them. */
			putf(f, "\\x%02x", (unsigned)cp);
			i += n;
		} else {
			put(f, s + i, n);
			i += n;
		}
	}
	putc_(f, q);
}

static void put_bytes_repr(struct fmt *f, const uint8_t *p, size_t len)
{
	if (p == NULL)
		len = 0;
	char q = len > 0 ? pick_quote((const char *)p, len) : '\'';
	putc_(f, 'b');
	putc_(f, q);
	for (size_t i = 0; i < len; i++) {
		if (put_common_escape(f, p[i], q))
			continue;
		if (p[i] >= 0x20 && p[i] < 0x7F)
			putc_(f, (char)p[i]);
		else
			putf(f, "\\x%02x", p[i]);
	}
	putc_(f, q);
}

/* Elements a tensor shows before "...". */
#define FMT_TENSOR_ELEMS 3

static void put_elem(struct fmt *f, tw_dtype dtype, const uint8_t *p)
{
	/* memcpy: tensor data need not be aligned for its dtype. */
	switch (dtype) {
	case TW_BOOL:
		puts_(f, *p ? "True" : "False");
		return;
	case TW_UINT8:
		putf(f, "%u", *p);
		return;
	case TW_INT8: {
		int8_t v;
		memcpy(&v, p, sizeof(v));
		putf(f, "%d", v);
		return;
	}
	case TW_INT16: {
		int16_t v;
		memcpy(&v, p, sizeof(v));
		putf(f, "%d", v);
		return;
	}
	case TW_INT32: {
		int32_t v;
		memcpy(&v, p, sizeof(v));
		putf(f, "%" PRId32, v);
		return;
	}
	case TW_INT64: {
		int64_t v;
		memcpy(&v, p, sizeof(v));
		putf(f, "%" PRId64, v);
		return;
	}
	case TW_FLOAT16: {
		uint16_t v;
		memcpy(&v, p, sizeof(v));
		put_real(f, f16_to_f32(v), REAL_F16, false);
		return;
	}
	case TW_BFLOAT16: {
		uint16_t v;
		memcpy(&v, p, sizeof(v));
		put_real(f, bf16_to_f32(v), REAL_BF16, false);
		return;
	}
	case TW_FLOAT32: {
		float v;
		memcpy(&v, p, sizeof(v));
		put_real(f, v, REAL_F32, false);
		return;
	}
	case TW_FLOAT64: {
		double v;
		memcpy(&v, p, sizeof(v));
		put_real(f, v, REAL_F64, false);
		return;
	}
	default:
		putc_(f, '?');
		return;
	}
}

/* tensor(float32[2, 3], data=[1, 2, 3, ...]) */
static void put_tensor(struct fmt *f, const tw_tensor *t)
{
	int64_t numel;
	if (t == NULL || tw_tensor_numel(t, &numel) != TW_OK) {
		puts_(f, "tensor(<invalid>)");
		return;
	}
	putf(f, "tensor(%s[", tw_dtype_name((tw_dtype)t->dtype));
	for (unsigned d = 0; d < t->ndim; d++)
		putf(f, d ? ", %" PRId64 : "%" PRId64, t->shape[d]);
	puts_(f, "], data=[");

	size_t esize = tw_dtype_size((tw_dtype)t->dtype);
	int64_t shown = numel < FMT_TENSOR_ELEMS ? numel : FMT_TENSOR_ELEMS;
	for (int64_t n = 0; n < shown; n++) {
		/* Unravel the flat index; offsets stay within the span that
		 * tw_tensor_numel's validation proved fits in int64. */
		int64_t rest = n, off = 0;
		for (unsigned d = t->ndim; d-- > 0;) {
			int64_t idx = rest % t->shape[d];
			rest /= t->shape[d];
			if (idx != 0)
				off += idx * t->strides[d];
		}
		if (n > 0)
			puts_(f, ", ");
		put_elem(f, (tw_dtype)t->dtype,
			 (const uint8_t *)t->data + off * (int64_t)esize);
	}
	if (numel > shown)
		puts_(f, ", ...");
	puts_(f, "])");
}

static void format_rec(struct fmt *f, const tw_value *v, unsigned depth)
{
	if (is_container(v->kind)) {
		if (depth >= TW_VALUE_MAX_DEPTH) {
			puts_(f, "...");
			return;
		}
		if (v->len > 0 && v->u.items == NULL) {
			puts_(f, "<invalid>");
			return;
		}
	}

	switch (v->kind) {
	case TW_KIND_NONE:
		puts_(f, "None");
		return;
	case TW_KIND_BOOL:
		puts_(f, v->u.b ? "True" : "False");
		return;
	case TW_KIND_INT:
		putf(f, "%" PRId64, v->u.i);
		return;
	case TW_KIND_DOUBLE:
		put_real(f, v->u.d, REAL_F64, true);
		return;
	case TW_KIND_STRING:
		put_str_repr(f, v->u.str, v->len);
		return;
	case TW_KIND_BYTES:
		put_bytes_repr(f, (const uint8_t *)v->u.str, v->len);
		return;
	case TW_KIND_TENSOR:
		put_tensor(f, v->u.tensor);
		return;
	case TW_KIND_LIST:
	case TW_KIND_TUPLE: {
		bool list = v->kind == TW_KIND_LIST;
		putc_(f, list ? '[' : '(');
		for (uint32_t i = 0; i < v->len; i++) {
			if (i > 0)
				puts_(f, ", ");
			format_rec(f, &v->u.items[i], depth + 1);
		}
		/* (1,) is a tuple; (1) would be a parenthesised int. */
		if (!list && v->len == 1)
			putc_(f, ',');
		putc_(f, list ? ']' : ')');
		return;
	}
	case TW_KIND_DICT: {
		bool first = true;
		putc_(f, '{');
		for (uint32_t i = 0; i < v->len; i++) {
			const tw_kv *e = &v->u.entries[i];
			if (e->key == NULL)
				continue; /* not set yet: not in the dict */
			if (!first)
				puts_(f, ", ");
			first = false;
			put_str_repr(f, e->key, e->key_len);
			puts_(f, ": ");
			format_rec(f, &e->val, depth + 1);
		}
		putc_(f, '}');
		return;
	}
	case TW_KIND_RREF: {
		const tw_rref_id *r = v->u.rref;
		if (r == NULL) {
			puts_(f, "RRef(<invalid>)");
			return;
		}
		putf(f,
		     "RRef(owner=%" PRIu32 ", rref=(%" PRIu32 ",%" PRIu64
		     "), fork=(%" PRIu32 ",%" PRIu64 "))",
		     r->owner, r->rref.created_on, r->rref.local_id,
		     r->fork.created_on, r->fork.local_id);
		return;
	}
	case TW_KIND_ERROR: {
		const tw_error *e = v->u.err;
		if (e == NULL) {
			puts_(f, "Error(<invalid>)");
			return;
		}
		putf(f, "Error(%s from worker %" PRIu32 ": ",
		     tw_status_name(e->kind), e->origin);
		if (e->msg != NULL)
			put(f, e->msg, e->msg_len);
		putc_(f, ')');
		return;
	}
	}
	putf(f, "<invalid kind %u>", v->kind);
}

size_t tw_value_format(const tw_value *v, char *buf, size_t size)
{
	struct fmt f = {.buf = buf, .size = buf != NULL ? size : 0};
	if (v == NULL)
		puts_(&f, "<null>");
	else
		format_rec(&f, v, 0);
	if (f.size > 0)
		f.buf[f.len < f.size ? f.len : f.size - 1] = '\0';
	return f.len;
}
