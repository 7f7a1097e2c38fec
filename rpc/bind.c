/* Binding a call's arguments to a schema, and choosing among overloads, with
 * torch's rules and torch's messages. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/schema.h>

#include "dataplane/err.h"
#include "schema_impl.h"

/*
 * Binding walks the schema once, deciding for every argument where its
 * value comes from (a positional, a keyword, the default) and whether the
 * value can be lent as it is or must be converted; nothing is allocated
 * until every argument has passed, so a failed bind costs no allocation.
 *
 * Messages are written only on failure: binding and matching first try
 * silently and format the reasons (tw_errmsg) only when nothing binds, as
 * torch does with render_errors, so a call that binds pays nothing for
 * them.
 *
 * Recursion follows the schema's type tree (at most TW_SCHEMA_MAX_DEPTH
 * deep), never the value tree, except in tw_value_type_repr which stops at
 * REPR_DEPTH.
 */

enum fit { FIT_NO = 0, FIT_EXACT = 1, FIT_CONVERT = 2 };

/* How much of a message to write. */
enum why_mode {
	WHY_FULL,  /* torch's message, with Position/Value/Declaration */
	WHY_SHORT, /* the first sentence only, for the list in a no-match */
};

struct why {
	struct wr *w;
	enum why_mode mode;
};

/* ---- value types as torch prints them ------------------------------------ */

#define REPR_DEPTH 8

static void write_value_type(struct wr *w, const tw_value *v, unsigned depth);

/* The element type of a list: the first element's, if all share its kind. */
static void write_elem_type(struct wr *w, const tw_value *items, uint32_t n,
			    unsigned depth)
{
	if (n == 0) {
		wr_puts(w, "Any");
		return;
	}
	for (uint32_t i = 1; i < n; i++) {
		if (items[i].kind != items[0].kind) {
			wr_puts(w, "Any");
			return;
		}
	}
	write_value_type(w, &items[0], depth + 1);
}

static void write_value_type(struct wr *w, const tw_value *v, unsigned depth)
{
	if (depth > REPR_DEPTH) {
		wr_puts(w, "...");
		return;
	}
	switch (v->kind) {
	case TW_KIND_NONE:
		wr_puts(w, "NoneType");
		break;
	case TW_KIND_BOOL:
		wr_puts(w, "bool");
		break;
	case TW_KIND_INT:
		wr_puts(w, "int");
		break;
	case TW_KIND_DOUBLE:
		wr_puts(w, "float");
		break;
	case TW_KIND_STRING:
		wr_puts(w, "str");
		break;
	case TW_KIND_BYTES:
		wr_puts(w, "bytes");
		break;
	case TW_KIND_TENSOR:
		wr_puts(w, "Tensor");
		break;
	case TW_KIND_RREF:
		wr_puts(w, "RRef");
		break;
	case TW_KIND_ERROR:
		wr_puts(w, "Error");
		break;
	case TW_KIND_LIST:
		wr_puts(w, "List[");
		write_elem_type(w, v->u.items, v->len, depth);
		wr_puts(w, "]");
		break;
	case TW_KIND_TUPLE:
		wr_puts(w, "Tuple[");
		if (v->len == 0)
			wr_puts(w, "()");
		for (uint32_t i = 0; i < v->len; i++) {
			if (i)
				wr_puts(w, ", ");
			write_value_type(w, &v->u.items[i], depth + 1);
		}
		wr_puts(w, "]");
		break;
	case TW_KIND_DICT: {
		wr_puts(w, "Dict[str, ");
		bool same = v->len > 0;
		for (uint32_t i = 1; same && i < v->len; i++)
			same = v->u.entries[i].val.kind ==
			       v->u.entries[0].val.kind;
		if (same)
			write_value_type(w, &v->u.entries[0].val, depth + 1);
		else
			wr_puts(w, "Any");
		wr_puts(w, "]");
		break;
	}
	default:
		wr_puts(w, "?");
		break;
	}
}

size_t tw_value_type_repr(const tw_value *v, char *buf, size_t size)
{
	struct wr w;

	wr_init(&w, buf, size);
	if (v != NULL)
		write_value_type(&w, v, 0);
	return w.len;
}

/* ---- checking --------------------------------------------------------------- */

static enum fit worse(enum fit a, enum fit b)
{
	if (a == FIT_NO || b == FIT_NO)
		return FIT_NO;
	return a > b ? a : b;
}

/* Can v be bound to t, and as it is or only converted? */
static enum fit check(const tw_type *t, const tw_value *v)
{
	switch (t->kind) {
	case TW_TYPE_TENSOR:
		return v->kind == TW_KIND_TENSOR ? FIT_EXACT : FIT_NO;
	case TW_TYPE_INT:
		/* bool is not an int in TorchScript's type system. */
		return v->kind == TW_KIND_INT ? FIT_EXACT : FIT_NO;
	case TW_TYPE_FLOAT:
		if (v->kind == TW_KIND_DOUBLE)
			return FIT_EXACT;
		return v->kind == TW_KIND_INT ? FIT_CONVERT : FIT_NO;
	case TW_TYPE_BOOL:
		return v->kind == TW_KIND_BOOL ? FIT_EXACT : FIT_NO;
	case TW_TYPE_STR:
	case TW_TYPE_DEVICE:
		return v->kind == TW_KIND_STRING ? FIT_EXACT : FIT_NO;
	case TW_TYPE_SCALAR:
		return (v->kind == TW_KIND_INT || v->kind == TW_KIND_DOUBLE ||
			v->kind == TW_KIND_BOOL)
			       ? FIT_EXACT
			       : FIT_NO;
	case TW_TYPE_ANY:
		return FIT_EXACT;
	case TW_TYPE_NONE:
		return v->kind == TW_KIND_NONE ? FIT_EXACT : FIT_NO;
	case TW_TYPE_RREF:
		return v->kind == TW_KIND_RREF ? FIT_EXACT : FIT_NO;
	case TW_TYPE_OPTIONAL:
		if (v->kind == TW_KIND_NONE)
			return FIT_EXACT;
		return check(t->elems[0], v);
	case TW_TYPE_LIST: {
		const tw_type *e = t->elems[0];
		/* torch: a single int (float) stands for N of them in
		 * int[N] (float[N]). */
		if (t->fixed_len != 0 &&
		    ((e->kind == TW_TYPE_INT && v->kind == TW_KIND_INT) ||
		     (e->kind == TW_TYPE_FLOAT && v->kind == TW_KIND_DOUBLE)))
			return FIT_CONVERT;
		if (v->kind != TW_KIND_LIST && v->kind != TW_KIND_TUPLE)
			return FIT_NO;
		enum fit f = v->kind == TW_KIND_TUPLE ? FIT_CONVERT : FIT_EXACT;
		for (uint32_t i = 0; i < v->len && f != FIT_NO; i++)
			f = worse(f, check(e, &v->u.items[i]));
		return f;
	}
	case TW_TYPE_TUPLE: {
		if (v->kind != TW_KIND_TUPLE || v->len != t->nelems)
			return FIT_NO;
		enum fit f = FIT_EXACT;
		for (uint32_t i = 0; i < v->len && f != FIT_NO; i++)
			f = worse(f, check(t->elems[i], &v->u.items[i]));
		return f;
	}
	case TW_TYPE_DICT: {
		if (v->kind != TW_KIND_DICT)
			return FIT_NO;
		enum fit f = FIT_EXACT;
		for (uint32_t i = 0; i < v->len && f != FIT_NO; i++)
			f = worse(f, check(t->elems[1], &v->u.entries[i].val));
		return f;
	}
	case TW_TYPE_GENERATOR: /* only None, through Generator? */
	default:
		return FIT_NO;
	}
}

/* ---- converting --------------------------------------------------------------- */

static bool has_storage(unsigned kind)
{
	return kind != TW_KIND_NONE && kind != TW_KIND_BOOL &&
	       kind != TW_KIND_INT && kind != TW_KIND_DOUBLE;
}

/* A view of v that owns nothing. */
static tw_value lend(const tw_value *v)
{
	tw_value b = *v;
	if (has_storage(b.kind))
		b.flags |= TW_VALUE_BORROWED;
	return b;
}

static tw_status convert(const tw_type *t, const tw_value *v, tw_value *out);

/* Element i of a new container: lent when it fits as is. */
static tw_status convert_child(const tw_type *t, const tw_value *v,
			       tw_value *out)
{
	if (check(t, v) == FIT_EXACT) {
		*out = lend(v);
		return TW_OK;
	}
	return convert(t, v, out);
}

/* A new list or tuple of n converted items. */
static tw_status convert_seq(tw_kind kind, const tw_type *const *types,
			     bool same_type, const tw_value *items, uint32_t n,
			     tw_value *out)
{
	tw_value seq;
	tw_status st = kind == TW_KIND_LIST ? tw_value_list(&seq, n)
					    : tw_value_tuple(&seq, n);
	if (st != TW_OK)
		return st;
	for (uint32_t i = 0; i < n; i++) {
		tw_value c;
		st = convert_child(types[same_type ? 0 : i], &items[i], &c);
		if (st != TW_OK) {
			tw_value_destroy(&seq);
			return st;
		}
		tw_value_set_item(&seq, i, c);
	}
	*out = seq;
	return TW_OK;
}

/* Make the bound form of v for t; check(t, v) said FIT_CONVERT. */
static tw_status convert(const tw_type *t, const tw_value *v, tw_value *out)
{
	switch (t->kind) {
	case TW_TYPE_FLOAT:
		*out = tw_value_double((double)v->u.i);
		return TW_OK;
	case TW_TYPE_OPTIONAL:
		return convert(t->elems[0], v, out);
	case TW_TYPE_LIST:
		if (v->kind == TW_KIND_INT || v->kind == TW_KIND_DOUBLE) {
			if (t->fixed_len == 1) {
				/* A one-item view of v itself. */
				*out = (tw_value){.kind = TW_KIND_LIST,
						  .flags = TW_VALUE_BORROWED,
						  .len = 1,
						  .u.items = (tw_value *)v};
				return TW_OK;
			}
			tw_value l;
			tw_status st = tw_value_list(&l, t->fixed_len);
			if (st != TW_OK)
				return st;
			for (uint32_t i = 0; i < t->fixed_len; i++)
				l.u.items[i] = *v;
			*out = l;
			return TW_OK;
		}
		if (v->kind == TW_KIND_TUPLE) {
			bool exact = true;
			for (uint32_t i = 0; exact && i < v->len; i++)
				exact = check(t->elems[0], &v->u.items[i]) ==
					FIT_EXACT;
			if (exact) {
				/* Lists and tuples share their layout. */
				*out = lend(v);
				out->kind = TW_KIND_LIST;
				return TW_OK;
			}
		}
		return convert_seq(TW_KIND_LIST, t->elems, true, v->u.items,
				   v->len, out);
	case TW_TYPE_TUPLE:
		return convert_seq(TW_KIND_TUPLE, t->elems, false, v->u.items,
				   v->len, out);
	case TW_TYPE_DICT: {
		tw_value d;
		tw_status st = tw_value_dict(&d, v->len);
		if (st != TW_OK)
			return st;
		for (uint32_t i = 0; i < v->len; i++) {
			const tw_kv *kv = &v->u.entries[i];
			tw_value c;
			st = convert_child(t->elems[1], &kv->val, &c);
			if (st == TW_OK) {
				st = tw_value_dict_set(
					&d, i, kv->key ? kv->key : "", c);
				if (st != TW_OK)
					tw_value_destroy(&c);
			}
			if (st != TW_OK) {
				tw_value_destroy(&d);
				return st;
			}
		}
		*out = d;
		return TW_OK;
	}
	default:
		/* check() never asks to convert anything else. */
		return TW_EINVAL;
	}
}

/* ---- messages ------------------------------------------------------------------ */

static void why_decl(struct why *y, const tw_schema *s, const char *label)
{
	if (y->mode == WHY_FULL) {
		wr_puts(y->w, label);
		schema_write(y->w, s);
	}
}

static void why_type(struct why *y, const tw_schema *s, size_t i,
		     const tw_value *v)
{
	struct wr *w = y->w;

	wr_printf(w, "%s() Expected a value of type '", s->name);
	schema_write_repr(w, s->args[i].type);
	wr_printf(w, "' for argument '%s' but instead found type '",
		  s->args[i].name);
	write_value_type(w, v, 0);
	wr_puts(w, "'.");
	if (y->mode == WHY_FULL) {
		wr_printf(w, "\nPosition: %zu\nValue: ", i);
		wr_value(w, v);
		wr_puts(w, "\n");
		why_decl(y, s, "Declaration: ");
	}
}

static const char *key_of(const tw_kv *kv)
{
	return kv->key != NULL ? kv->key : "";
}

static bool key_is(const tw_kv *kv, const struct schema_arg *a)
{
	return kv->key != NULL && kv->key_len == a->name_len &&
	       memcmp(kv->key, a->name, a->name_len) == 0;
}

/* Every keyword was not consumed: say which, as torch's findErrorInKwargs. */
static void why_kwargs(struct why *y, const tw_schema *s, const tw_value *kw,
		       size_t npos)
{
	struct wr *w = y->w;

	for (uint32_t k = 0; k < kw->len; k++) {
		uint32_t i;
		for (i = 0; i < s->nargs; i++)
			if (key_is(&kw->u.entries[k], &s->args[i]))
				break;
		if (i == s->nargs) {
			wr_printf(
				w,
				"Unknown keyword argument '%s' for operator '%s'.",
				key_of(&kw->u.entries[k]), s->name);
			why_decl(y, s, " Schema: ");
			return;
		}
	}
	for (uint32_t i = 0; i < npos && i < s->nargs; i++) {
		for (uint32_t k = 0; k < kw->len; k++) {
			if (key_is(&kw->u.entries[k], &s->args[i])) {
				wr_printf(
					w,
					"Argument '%s' specified both as positional and keyword argument.",
					s->args[i].name);
				why_decl(y, s, " Schema: ");
				return;
			}
		}
	}
	/* Only a dict with a repeated key gets here. */
	for (uint32_t k = 0; k < kw->len; k++) {
		for (uint32_t j = 0; j < k; j++) {
			const tw_kv *a = &kw->u.entries[j],
				    *b = &kw->u.entries[k];
			if (a->key_len == b->key_len &&
			    strcmp(key_of(a), key_of(b)) == 0) {
				wr_printf(
					w,
					"Keyword argument '%s' specified twice.",
					key_of(b));
				why_decl(y, s, " Schema: ");
				return;
			}
		}
	}
	wr_puts(w, "Keyword arguments do not match.");
	why_decl(y, s, " Schema: ");
}

/* ---- binding ------------------------------------------------------------------- */

static bool seq_ok(const tw_value *v)
{
	return v == NULL || v->kind == TW_KIND_LIST || v->kind == TW_KIND_TUPLE;
}

static bool dict_ok(const tw_value *v)
{
	return v == NULL || v->kind == TW_KIND_DICT;
}

static const tw_kv *find_kwarg(const tw_value *kw, const struct schema_arg *a)
{
	for (uint32_t k = 0; kw != NULL && k < kw->len; k++)
		if (key_is(&kw->u.entries[k], a))
			return &kw->u.entries[k];
	return NULL;
}

static void clear(tw_value *bound, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bound[i] = tw_value_none();
}

/*
 * torch's createStackForSchema, check by check and in its order. y NULL:
 * no message. bound has s->nargs slots, all NONE on failure.
 */
static tw_status bind(const tw_schema *s, const tw_value *args,
		      const tw_value *kwargs, tw_value *bound, struct why *y)
{
	const tw_value *src[TW_SCHEMA_MAX_ARGS];
	uint8_t fit[TW_SCHEMA_MAX_ARGS];
	size_t npos = args != NULL ? args->len : 0;
	size_t nkw = kwargs != NULL ? kwargs->len : 0;
	size_t used = 0;

	clear(bound, s->nargs);
	if (npos + nkw > s->nargs) {
		if (y != NULL) {
			wr_printf(y->w,
				  "%s() expected at most %" PRIu32
				  " argument(s) but received %zu argument(s).",
				  s->name, s->nargs, npos + nkw);
			why_decl(y, s, " Declaration: ");
		}
		return TW_ETYPE;
	}
	for (size_t i = 0; i < npos; i++) {
		const struct schema_arg *a = &s->args[i];
		if (a->kwarg_only) {
			if (y != NULL) {
				wr_printf(
					y->w,
					"%s() takes %zu positional argument(s) but %zu was/were given.",
					s->name, i, npos);
				why_decl(y, s, " Declaration: ");
			}
			return TW_ETYPE;
		}
		src[i] = &args->u.items[i];
		fit[i] = (uint8_t)check(a->type, src[i]);
		if (fit[i] == FIT_NO) {
			if (y != NULL)
				why_type(y, s, i, src[i]);
			return TW_ETYPE;
		}
	}
	for (size_t i = npos; i < s->nargs; i++) {
		const struct schema_arg *a = &s->args[i];
		const tw_kv *kv = find_kwarg(kwargs, a);
		if (kv != NULL) {
			src[i] = &kv->val;
			fit[i] = (uint8_t)check(a->type, src[i]);
			if (fit[i] == FIT_NO) {
				if (y != NULL)
					why_type(y, s, i, src[i]);
				return TW_ETYPE;
			}
			used++;
		} else if (a->has_default) {
			/* Stored already in bound form (ints made floats,
			 * T[N] broadcasts expanded) by the parser. */
			src[i] = &a->def;
			fit[i] = FIT_EXACT;
		} else {
			if (y != NULL) {
				wr_printf(
					y->w,
					"%s() is missing value for argument '%s'.",
					s->name, a->name);
				why_decl(y, s, " Declaration: ");
			}
			return TW_ETYPE;
		}
	}
	if (used != nkw) {
		if (y != NULL)
			why_kwargs(y, s, kwargs, npos);
		return TW_ETYPE;
	}
	for (size_t i = 0; i < s->nargs; i++) {
		if (fit[i] == FIT_EXACT) {
			bound[i] = lend(src[i]);
			continue;
		}
		tw_status st = convert(s->args[i].type, src[i], &bound[i]);
		if (st != TW_OK) {
			tw_schema_bound_release(bound, i);
			clear(bound, s->nargs);
			return st;
		}
	}
	return TW_OK;
}

/* args or kwargs of the wrong kind: say which, and what it was. */
static tw_status bad_call(const tw_value *args, const tw_value *kwargs)
{
	char got[128];
	if (!seq_ok(args)) {
		tw_value_type_repr(args, got, sizeof(got));
		return tw_fail(TW_EINVAL,
			       "positional arguments must be a "
			       "tuple or a list, got %s",
			       got);
	}
	tw_value_type_repr(kwargs, got, sizeof(got));
	return tw_fail(TW_EINVAL, "keyword arguments must be a dict, got %s",
		       got);
}

tw_status tw_schema_bind(const tw_schema *s, const tw_value *args,
			 const tw_value *kwargs, tw_value *bound)
{
	if (s == NULL || (bound == NULL && s->nargs > 0))
		return tw_fail_static(TW_EINVAL,
				      "tw_schema_bind: no schema or "
				      "no room for the bound arguments");
	if (!seq_ok(args) || !dict_ok(kwargs)) {
		clear(bound, s->nargs);
		return bad_call(args, kwargs);
	}
	/* Silently first: a bind that succeeds formats nothing, and the
	 * message buffer below stays untouched. */
	tw_status st = bind(s, args, kwargs, bound, NULL);
	if (st == TW_OK)
		return TW_OK;
	if (st != TW_ETYPE) /* a conversion's allocation failed */
		return tw_fail_wrap(st, st, "%s(): converting the arguments",
				    s->name);
	char msg[TW_ERRMSG_MAX];
	struct wr w;
	struct why y = {.w = &w, .mode = WHY_FULL};
	wr_init(&w, msg, sizeof(msg));
	(void)bind(s, args, kwargs, bound, &y); /* fails again, saying why */
	return tw_fail(TW_ETYPE, "%s", msg);
}

void tw_schema_bound_release(tw_value *bound, size_t n)
{
	for (size_t i = 0; bound != NULL && i < n; i++)
		tw_value_destroy(&bound[i]);
}

/* (args: (Tensor, str), kwargs: {'alpha': int}) as Python would show the
 * types of a tuple and a dict. */
static void write_call_types(struct wr *w, const tw_value *args,
			     const tw_value *kwargs)
{
	uint32_t n = args != NULL ? args->len : 0;

	wr_puts(w, "(args: (");
	for (uint32_t i = 0; i < n; i++) {
		if (i)
			wr_puts(w, ", ");
		write_value_type(w, &args->u.items[i], 1);
	}
	if (n == 1)
		wr_puts(w, ",");
	wr_puts(w, "), kwargs: {");
	for (uint32_t k = 0; kwargs != NULL && k < kwargs->len; k++) {
		if (k)
			wr_puts(w, ", ");
		wr_printf(w, "'%s': ", key_of(&kwargs->u.entries[k]));
		write_value_type(w, &kwargs->u.entries[k].val, 1);
	}
	wr_puts(w, "})");
}

tw_status tw_schema_match(const tw_schema *const *overloads, size_t n,
			  const tw_value *args, const tw_value *kwargs,
			  size_t *chosen, tw_value *bound)
{
	if (overloads == NULL || n == 0)
		return tw_fail_static(TW_EINVAL,
				      "tw_schema_match: no overloads "
				      "to match");
	for (size_t i = 0; i < n; i++) {
		if (overloads[i] == NULL ||
		    (bound == NULL && overloads[i]->nargs > 0))
			return tw_fail(TW_EINVAL,
				       "tw_schema_match: overload %zu "
				       "is NULL, or no room for its bound "
				       "arguments",
				       i);
	}
	if (!seq_ok(args) || !dict_ok(kwargs))
		return bad_call(args, kwargs);
	for (size_t i = 0; i < n; i++) {
		tw_status st = bind(overloads[i], args, kwargs, bound, NULL);
		if (st == TW_OK) {
			if (chosen != NULL)
				*chosen = i;
			return TW_OK;
		}
		if (st != TW_ETYPE) /* out of memory: no point trying others */
			return tw_fail_wrap(st, st,
					    "%s(): converting the "
					    "arguments",
					    overloads[i]->name);
	}
	/* None binds: bind again, this time saying why. */
	char msg[TW_ERRMSG_MAX];
	struct wr w;
	wr_init(&w, msg, sizeof(msg));
	wr_printf(&w, "Failed to match operator name %s and arguments ",
		  overloads[0]->name);
	write_call_types(&w, args, kwargs);
	wr_puts(&w, " to a builtin operator\nSchemas tried:");
	for (size_t i = 0; i < n; i++) {
		struct why y = {.w = &w, .mode = WHY_SHORT};
		wr_puts(&w, "\n  ");
		schema_write(&w, overloads[i]);
		wr_puts(&w, "\n    ");
		/* Cannot bind now if it did not before; release if it does. */
		if (bind(overloads[i], args, kwargs, bound, &y) == TW_OK)
			tw_schema_bound_release(bound, overloads[i]->nargs);
	}
	return tw_fail(TW_ETYPE, "%s", msg);
}
