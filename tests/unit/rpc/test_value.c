/* Unit tests for tw_value: construction, ownership, clone, equality, format. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <tensorwire/value.h>

#include "dataplane/err.h"
#include "rpc/utf8.h"

static int released;
static void count_release(void *ctx, void *data, size_t size)
{
	(void)ctx;
	(void)data;
	(void)size;
	released++;
}

/* Format v and compare with want; also checks the returned length. */
static void expect_format(const tw_value *v, const char *want)
{
	char buf[512];
	size_t n = tw_value_format(v, buf, sizeof(buf));
	cr_assert_str_eq(buf, want);
	cr_assert_eq(n, strlen(want));
}

Test(scalar, roundtrip_and_type_checks)
{
	bool b;
	int64_t i;
	double d;
	const char *s;
	size_t len;

	tw_value v = tw_value_none();
	cr_assert_eq(v.kind, TW_KIND_NONE);
	cr_assert_eq(tw_value_get_bool(&v, &b), TW_ETYPE);

	v = tw_value_bool(true);
	cr_assert_eq(tw_value_get_bool(&v, &b), TW_OK);
	cr_assert(b);
	cr_assert_eq(tw_value_get_int(&v, &i), TW_ETYPE, "bool is not int");

	v = tw_value_int(INT64_MIN);
	cr_assert_eq(tw_value_get_int(&v, &i), TW_OK);
	cr_assert_eq(i, INT64_MIN);
	cr_assert_eq(tw_value_get_double(&v, &d), TW_OK,
		     "int widens to double");
	cr_assert_eq(d, (double)INT64_MIN);
	cr_assert_eq(tw_value_get_string(&v, &s, &len), TW_ETYPE);

	v = tw_value_double(-2.25);
	cr_assert_eq(tw_value_get_double(&v, &d), TW_OK);
	cr_assert_eq(d, -2.25);
	cr_assert_eq(tw_value_get_int(&v, &i), TW_ETYPE,
		     "double never narrows");
	tw_value_destroy(&v); /* scalars: harmless */
	cr_assert_eq(v.kind, TW_KIND_NONE);

	cr_assert_eq(tw_value_get_int(NULL, &i), TW_EINVAL);
	cr_assert_eq(tw_value_get_int(&v, NULL), TW_EINVAL);
	tw_value_destroy(NULL);
}

Test(string, owned_copy)
{
	char src[] = "héllo";
	tw_value v;
	cr_assert_eq(tw_value_cstring(&v, src), TW_OK);
	src[0] = 'X'; /* the value has its own copy */
	const char *s;
	size_t len;
	cr_assert_eq(tw_value_get_string(&v, &s, &len), TW_OK);
	cr_assert_eq(len, 6);
	cr_assert_str_eq(s, "héllo");
	cr_assert_eq(s[len], '\0');
	cr_assert_eq(v.flags & TW_VALUE_BORROWED, 0);
	const void *p;
	cr_assert_eq(tw_value_get_bytes(&v, &p, &len), TW_ETYPE,
		     "string is not bytes");
	tw_value_destroy(&v);

	/* Embedded NUL is a valid code point; length says where it ends. */
	cr_assert_eq(tw_value_string(&v, "a\0b", 3), TW_OK);
	cr_assert_eq(tw_value_get_string(&v, &s, &len), TW_OK);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(s, "a\0b", 4), 0);
	tw_value_destroy(&v);

	cr_assert_eq(tw_value_string(&v, NULL, 0), TW_OK, "empty from NULL");
	cr_assert_eq(tw_value_get_string(&v, &s, &len), TW_OK);
	cr_assert_eq(len, 0);
	cr_assert_str_eq(s, "");
	tw_value_destroy(&v);

	tw_value keep = tw_value_int(7);
	cr_assert_eq(tw_value_string(&keep, NULL, 3), TW_EINVAL);
	cr_assert_eq(tw_value_cstring(&keep, NULL), TW_EINVAL);
	cr_assert_eq(tw_value_string(NULL, "x", 1), TW_EINVAL);
	cr_assert_eq(tw_value_string(&keep, "x", (size_t)UINT32_MAX),
		     TW_EOVERFLOW);
	cr_assert_eq(keep.kind, TW_KIND_INT, "failure leaves out untouched");
}

Test(string, invalid_utf8_rejected)
{
	static const struct {
		const char *s;
		size_t len;
		const char *what;
	} bad[] = {
		{"\xC0\x80", 2, "overlong NUL"},
		{"\xC1\xBF", 2, "overlong 2-byte"},
		{"\xE0\x80\x80", 3, "overlong 3-byte"},
		{"\xE0\x9F\xBF", 3, "overlong U+07FF"},
		{"\xF0\x80\x80\x80", 4, "overlong 4-byte"},
		{"\xF0\x8F\xBF\xBF", 4, "overlong U+FFFF"},
		{"\xED\xA0\x80", 3, "surrogate U+D800"},
		{"\xED\xBF\xBF", 3, "surrogate U+DFFF"},
		{"\xF4\x90\x80\x80", 4, "U+110000"},
		{"\xF5\x80\x80\x80", 4, "F5 lead"},
		{"\xFF", 1, "FF"},
		{"\x80", 1, "lone continuation"},
		{"a\xE2\x82", 3, "truncated"},
		{"\xE2\x28\xA1", 3, "bad continuation"},
		{"abcdefgh\xC3", 9, "truncated after ASCII run"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tw_value v = tw_value_none();
		cr_assert_eq(tw_value_string(&v, bad[i].s, bad[i].len),
			     TW_EINVAL, "%s", bad[i].what);
		cr_assert_not(tw_utf8_valid(bad[i].s, bad[i].len), "%s",
			      bad[i].what);
		cr_assert_eq(v.kind, TW_KIND_NONE);
	}

	static const struct {
		const char *s;
		size_t len;
	} good[] = {
		{"\x7F", 1},
		{"\xC2\x80", 2},         /* U+0080 */
		{"\xE0\xA0\x80", 3},     /* U+0800 */
		{"\xED\x9F\xBF", 3},     /* U+D7FF */
		{"\xEE\x80\x80", 3},     /* U+E000 */
		{"\xEF\xBF\xBF", 3},     /* U+FFFF */
		{"\xF0\x90\x80\x80", 4}, /* U+10000 */
		{"\xF4\x8F\xBF\xBF", 4}, /* U+10FFFF */
		{"0123456789abcdef\xE2\x82\xAC", 19},
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		tw_value v;
		cr_assert_eq(tw_value_string(&v, good[i].s, good[i].len), TW_OK,
			     "good %zu", i);
		tw_value_destroy(&v);
	}
	cr_assert(tw_utf8_valid(NULL, 0));
	cr_assert_not(tw_utf8_valid(NULL, 1));
}

Test(bytes, owned_and_borrowed)
{
	const uint8_t raw[4] = {0, 0xFF, 'a', 0};
	tw_value v;
	cr_assert_eq(tw_value_bytes(&v, raw, sizeof(raw)), TW_OK);
	const void *p;
	size_t len;
	cr_assert_eq(tw_value_get_bytes(&v, &p, &len), TW_OK);
	cr_assert_eq(len, 4);
	cr_assert_neq(p, (const void *)raw);
	cr_assert_eq(memcmp(p, raw, 4), 0);

	tw_value b = tw_value_bytes_borrow(raw, sizeof(raw));
	cr_assert_eq(b.flags, TW_VALUE_BORROWED);
	cr_assert_eq(tw_value_get_bytes(&b, &p, &len), TW_OK);
	cr_assert_eq(p, (const void *)raw);
	cr_assert(tw_value_equal(&v, &b), "ownership does not affect equality");

	tw_value_destroy(&b); /* stack memory: freeing it would trip ASan */
	cr_assert_eq(b.kind, TW_KIND_NONE);
	tw_value_destroy(&v);

	cr_assert_eq(tw_value_bytes(&v, NULL, 0), TW_OK);
	tw_value_destroy(&v);
	cr_assert_eq(tw_value_bytes(&v, NULL, 1), TW_EINVAL);
	b = tw_value_bytes_borrow(NULL, 5);
	cr_assert_eq(b.kind, TW_KIND_NONE, "impossible borrow yields NONE");
}

Test(string, borrowed_not_freed)
{
	char mem[] = "borrowed";
	tw_value v = tw_value_string_borrow(mem, 8);
	cr_assert_eq(v.kind, TW_KIND_STRING);
	cr_assert_eq(v.flags, TW_VALUE_BORROWED);
	const char *s;
	cr_assert_eq(tw_value_get_string(&v, &s, NULL), TW_OK);
	cr_assert_eq(s, mem);

	/* Moved into an owned list, it is still not freed with the list. */
	tw_value l;
	cr_assert_eq(tw_value_list(&l, 1), TW_OK);
	cr_assert_eq(tw_value_set_item(&l, 0, v), TW_OK);
	tw_value_destroy(&l);
	cr_assert_str_eq(mem, "borrowed");

	v = tw_value_string_borrow(NULL, 0);
	cr_assert_eq(tw_value_get_string(&v, &s, NULL), TW_OK);
	cr_assert_str_eq(s, "");
}

Test(tensor, value_holds_reference)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_zeros(&t, TW_INT32, 1, (int64_t[]){4}), TW_OK);
	tw_value v;
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	cr_assert_eq(tw_buf_refcnt(t.buf), 2);
	const tw_tensor *got;
	cr_assert_eq(tw_value_get_tensor(&v, &got), TW_OK);
	cr_assert_eq(got->data, t.data);
	cr_assert_eq(got->buf, t.buf);
	tw_value_destroy(&v);
	cr_assert_eq(tw_buf_refcnt(t.buf), 1);

	tw_tensor bad = t;
	bad.ndim = 9;
	v = tw_value_none();
	cr_assert_eq(tw_value_tensor(&v, &bad), TW_EINVAL);
	cr_assert_eq(tw_value_tensor(&v, NULL), TW_EINVAL);
	cr_assert_eq(v.kind, TW_KIND_NONE);
	cr_assert_eq(tw_buf_refcnt(t.buf), 1);
	tw_tensor_release(&t);
}

Test(container, list_tuple_items)
{
	tw_value l;
	cr_assert_eq(tw_value_list(&l, 3), TW_OK);
	cr_assert_eq(l.len, 3);
	const tw_value *it;
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(tw_value_get_item(&l, i, &it), TW_OK);
		cr_assert_eq(it->kind, TW_KIND_NONE, "slots start as NONE");
	}
	cr_assert_eq(tw_value_set_item(&l, 0, tw_value_int(1)), TW_OK);
	tw_value s;
	cr_assert_eq(tw_value_cstring(&s, "two"), TW_OK);
	cr_assert_eq(tw_value_set_item(&l, 1, s), TW_OK);
	/* Replacing a slot destroys the old child (LeakSanitizer checks). */
	cr_assert_eq(tw_value_cstring(&s, "deux"), TW_OK);
	cr_assert_eq(tw_value_set_item(&l, 1, s), TW_OK);

	cr_assert_eq(tw_value_cstring(&s, "lost?"), TW_OK);
	cr_assert_eq(tw_value_set_item(&l, 3, s), TW_EINVAL, "out of range");
	tw_value notcont = tw_value_int(0);
	cr_assert_eq(tw_value_set_item(&notcont, 0, s), TW_ETYPE);
	tw_value bogus = {.kind = 200};
	cr_assert_eq(tw_value_set_item(&l, 2, bogus), TW_EINVAL);
	cr_assert_eq(tw_value_set_item(&l, 2, l), TW_EINVAL,
		     "a list into itself");
	tw_value_destroy(&s); /* still ours after the failures */

	cr_assert_eq(tw_value_get_item(&l, 1, &it), TW_OK);
	cr_assert_str_eq(it->u.str, "deux");
	cr_assert_eq(tw_value_get_item(&l, 3, &it), TW_EINVAL);
	int64_t i;
	cr_assert_eq(tw_value_get_int(&l.u.items[0], &i), TW_OK);
	cr_assert_eq(i, 1);
	cr_assert_eq(tw_value_get_item(&notcont, 0, &it), TW_ETYPE);
	tw_value_destroy(&l);
	cr_assert_eq(l.kind, TW_KIND_NONE);

	tw_value t;
	cr_assert_eq(tw_value_tuple(&t, 0), TW_OK);
	cr_assert_eq(t.kind, TW_KIND_TUPLE);
	cr_assert_eq(tw_value_get_item(&t, 0, &it), TW_EINVAL);
	tw_value_destroy(&t);
}

Test(container, dict_keys)
{
	tw_value d;
	cr_assert_eq(tw_value_dict(&d, 3), TW_OK);
	const tw_value *got;
	cr_assert_eq(tw_value_dict_get(&d, "a", &got), TW_ENOENT,
		     "unset entries are absent");

	char key[] = "alpha";
	cr_assert_eq(tw_value_dict_set(&d, 0, key, tw_value_int(1)), TW_OK);
	key[0] = 'X'; /* the dict copied the key */
	cr_assert_eq(tw_value_dict_set(&d, 1, "beta", tw_value_int(2)), TW_OK);

	/* Same key in another slot: rejected, child still the caller's. */
	tw_value s;
	cr_assert_eq(tw_value_cstring(&s, "dup"), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 2, "alpha", s), TW_EINVAL);
	cr_assert_eq(tw_value_dict_set(&d, 2, "beta", s), TW_EINVAL);
	cr_assert_eq(tw_value_dict_set(&d, 3, "gamma", s), TW_EINVAL,
		     "out of range");
	cr_assert_eq(tw_value_dict_set(&d, 2, NULL, s), TW_EINVAL);
	cr_assert_eq(tw_value_dict_set(&d, 2, "\xC0\x80", s), TW_EINVAL,
		     "bad UTF-8 key");
	tw_value l = tw_value_int(0);
	cr_assert_eq(tw_value_dict_set(&l, 0, "k", s), TW_ETYPE);
	cr_assert_eq(tw_value_dict_set(&d, 2, "self", d), TW_EINVAL,
		     "a dict into itself");
	/* Re-setting a slot under its own key replaces the value. */
	cr_assert_eq(tw_value_dict_set(&d, 0, "alpha", s), TW_OK);

	cr_assert_eq(tw_value_dict_get(&d, "alpha", &got), TW_OK);
	cr_assert_str_eq(got->u.str, "dup");
	cr_assert_eq(tw_value_dict_get(&d, "beta", &got), TW_OK);
	cr_assert_eq(got->u.i, 2);
	cr_assert_eq(tw_value_dict_get(&d, "gamma", &got), TW_ENOENT);
	cr_assert_eq(tw_value_dict_get(&d, "alph", &got), TW_ENOENT);
	cr_assert_eq(tw_value_dict_get(&l, "alpha", &got), TW_ETYPE);
	cr_assert_eq(tw_value_dict_get(&d, NULL, &got), TW_EINVAL);

	/* Renaming slot 1 frees its old key and value. */
	cr_assert_eq(tw_value_dict_set(&d, 1, "gamma", tw_value_bool(false)),
		     TW_OK);
	cr_assert_eq(tw_value_dict_get(&d, "beta", &got), TW_ENOENT);
	expect_format(&d, "{'alpha': 'dup', 'gamma': False}");
	tw_value_destroy(&d);
}

Test(rref_error, constructors)
{
	tw_rref_id id = {.owner = 1, .rref = {1, 5}, .fork = {2, 7}};
	tw_value r;
	cr_assert_eq(tw_value_rref(&r, &id), TW_OK);
	cr_assert_neq(r.u.rref, &id);
	cr_assert_eq(r.u.rref->fork.local_id, 7);
	cr_assert_eq(tw_value_rref(&r, NULL), TW_EINVAL);
	expect_format(&r, "RRef(owner=1, rref=(1,5), fork=(2,7))");
	tw_value_destroy(&r);
	tw_rref_id max = {
		UINT32_MAX, {UINT32_MAX, UINT64_MAX}, {UINT32_MAX, UINT64_MAX}};
	cr_assert_eq(tw_value_rref(&r, &max), TW_OK);
	expect_format(
		&r,
		"RRef(owner=4294967295, rref=(4294967295,18446744073709551615), "
		"fork=(4294967295,18446744073709551615))");
	tw_value_destroy(&r);

	char msg[] = "bad shape";
	tw_value e;
	cr_assert_eq(tw_value_error(&e, TW_EVALUE, 3, msg), TW_OK);
	msg[0] = 'X';
	cr_assert_eq(e.u.err->kind, TW_EVALUE);
	cr_assert_eq(e.u.err->origin, 3);
	cr_assert_str_eq(e.u.err->msg, "bad shape");
	cr_assert_eq(e.u.err->msg_len, 9);
	expect_format(&e, "Error(TW_EVALUE from worker 3: bad shape)");
	tw_value_destroy(&e);

	tw_value keep = tw_value_int(1);
	cr_assert_eq(tw_value_error(&keep, TW_OK, 0, "x"), TW_EINVAL,
		     "TW_OK is no error");
	cr_assert_eq(tw_value_error(&keep, TW_STATUS_COUNT_, 0, "x"),
		     TW_EINVAL);
	cr_assert_eq(tw_value_error(&keep, (tw_status)-1, 0, "x"), TW_EINVAL);
	cr_assert_eq(keep.kind, TW_KIND_INT);

	cr_assert_eq(tw_value_error(&e, TW_ETIMEDOUT, 0, NULL), TW_OK);
	cr_assert_eq(e.u.err->msg_len, 0);
	cr_assert_str_eq(e.u.err->msg, "");
	tw_value_destroy(&e);
}

/* depth nested lists: [[[...[7]...]]]. */
static tw_value nest(unsigned depth)
{
	tw_value v = tw_value_int(7);
	for (unsigned i = 0; i < depth; i++) {
		tw_value l;
		cr_assert_eq(tw_value_list(&l, 1), TW_OK);
		cr_assert_eq(tw_value_set_item(&l, 0, v), TW_OK);
		v = l;
	}
	return v;
}

Test(nesting, depth_64_clone_equal_destroy)
{
	tw_value deep = nest(TW_VALUE_MAX_DEPTH);
	tw_value copy;
	cr_assert_eq(tw_value_clone(&copy, &deep), TW_OK);
	cr_assert(tw_value_equal(&deep, &copy));

	/* Change the innermost int: the trees differ at the bottom. */
	tw_value *p = &copy;
	while (p->kind == TW_KIND_LIST)
		p = &p->u.items[0];
	p->u.i = 8;
	cr_assert_not(tw_value_equal(&deep, &copy));

	char small[32];
	size_t need = tw_value_format(&deep, small, sizeof(small));
	cr_assert_eq(need, 2 * TW_VALUE_MAX_DEPTH + 1);
	cr_assert_eq(strlen(small), sizeof(small) - 1);

	tw_value_destroy(&copy);
	tw_value_destroy(&deep);

	/* One level deeper than decoders accept: clone refuses, format
	 * elides, destroy still frees everything. */
	tw_value too = nest(TW_VALUE_MAX_DEPTH + 1);
	tw_value dst = tw_value_int(5);
	cr_assert_eq(tw_value_clone(&dst, &too), TW_EOVERFLOW);
	cr_assert_eq(dst.kind, TW_KIND_INT, "failed clone leaves dst alone");
	cr_assert_not(tw_value_equal(&too, &too),
		      "beyond the limit nothing is vouched for");
	char big[512];
	tw_value_format(&too, big, sizeof(big));
	cr_assert_not_null(strstr(big, "[...]"));
	tw_value_destroy(&too);
}

Test(clone, tree_with_tensors_shares_bytes)
{
	static float mem[4] = {1, 2, 3, 4};
	tw_buf *buf;
	released = 0;
	cr_assert_eq(tw_buf_from_user(mem, sizeof(mem), count_release, NULL,
				      &buf),
		     TW_OK);
	tw_tensor t;
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 1, (int64_t[]){4}, NULL,
				    mem, buf),
		     TW_OK);
	tw_buf_release(buf);

	/* {'w': tensor, 'xs': [tensor, 'name', b'\x01'], 'r': (1.5,)} */
	tw_value tree, xs, tup, tv;
	cr_assert_eq(tw_value_dict(&tree, 3), TW_OK);
	cr_assert_eq(tw_value_tensor(&tv, &t), TW_OK);
	cr_assert_eq(tw_value_dict_set(&tree, 0, "w", tv), TW_OK);
	cr_assert_eq(tw_value_list(&xs, 3), TW_OK);
	cr_assert_eq(tw_value_tensor(&tv, &t), TW_OK);
	cr_assert_eq(tw_value_set_item(&xs, 0, tv), TW_OK);
	tw_value s;
	cr_assert_eq(tw_value_cstring(&s, "name"), TW_OK);
	cr_assert_eq(tw_value_set_item(&xs, 1, s), TW_OK);
	cr_assert_eq(tw_value_bytes(&s, "\x01", 1), TW_OK);
	cr_assert_eq(tw_value_set_item(&xs, 2, s), TW_OK);
	cr_assert_eq(tw_value_dict_set(&tree, 1, "xs", xs), TW_OK);
	cr_assert_eq(tw_value_tuple(&tup, 1), TW_OK);
	cr_assert_eq(tw_value_set_item(&tup, 0, tw_value_double(1.5)), TW_OK);
	cr_assert_eq(tw_value_dict_set(&tree, 2, "r", tup), TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(tw_buf_refcnt(buf), 2);

	tw_value copy;
	cr_assert_eq(tw_value_clone(&copy, &tree), TW_OK);
	cr_assert(tw_value_equal(&tree, &copy));
	cr_assert_eq(tw_buf_refcnt(buf), 4, "two new refs, no new bytes");
	const tw_value *w;
	cr_assert_eq(tw_value_dict_get(&copy, "w", &w), TW_OK);
	cr_assert_eq(w->u.tensor->data, (void *)mem);
	cr_assert_neq(copy.u.entries, tree.u.entries,
		      "containers are deep-copied");
	cr_assert_neq(copy.u.entries[0].key, tree.u.entries[0].key);

	tw_value_destroy(&tree);
	cr_assert_eq(tw_buf_refcnt(buf), 2);
	cr_assert_eq(released, 0);
	tw_value_destroy(&copy);
	cr_assert_eq(released, 1, "last reference gone with the clone");
}

Test(clone, borrowed_source_yields_owned_copy)
{
	/* A borrowed list, as a decoder would hand out: its storage lives in
	 * someone else's memory (here, the stack). */
	char text[] = "in message";
	tw_value items[2];
	items[0] = tw_value_string_borrow(text, strlen(text));
	items[1] = tw_value_int(3);
	tw_value borrowed = {
		.kind = TW_KIND_LIST, .flags = TW_VALUE_BORROWED, .len = 2};
	borrowed.u.items = items;

	tw_value own;
	cr_assert_eq(tw_value_clone(&own, &borrowed), TW_OK);
	cr_assert_eq(own.flags, 0);
	cr_assert_neq(own.u.items, items);
	cr_assert_eq(own.u.items[0].flags, 0);
	cr_assert_neq(own.u.items[0].u.str, text);
	cr_assert(tw_value_equal(&own, &borrowed));
	text[0] = 'X';
	cr_assert_not(tw_value_equal(&own, &borrowed),
		      "the copy no longer tracks the message");

	/* Writing into borrowed storage is refused. */
	cr_assert_eq(tw_value_set_item(&borrowed, 1, tw_value_none()),
		     TW_EINVAL);
	tw_value_destroy(&borrowed); /* leaves the stack alone */
	cr_assert_eq(items[1].u.i, 3);
	tw_value_destroy(&own);

	/* Clone into itself: the old tree is not destroyed, only replaced. */
	tw_value sv;
	cr_assert_eq(tw_value_cstring(&sv, "self"), TW_OK);
	tw_value orig = sv;
	cr_assert_eq(tw_value_clone(&sv, &sv), TW_OK);
	cr_assert(tw_value_equal(&sv, &orig));
	tw_value_destroy(&orig);
	tw_value_destroy(&sv);
}

Test(clone, every_kind)
{
	tw_rref_id id = {4, {4, 1}, {5, 2}};
	tw_value vals[12];
	vals[0] = tw_value_none();
	vals[1] = tw_value_bool(false);
	vals[2] = tw_value_int(-9);
	vals[3] = tw_value_double(NAN);
	cr_assert_eq(tw_value_cstring(&vals[4], "s"), TW_OK);
	cr_assert_eq(tw_value_bytes(&vals[5], "b", 1), TW_OK);
	tw_tensor t;
	cr_assert_eq(tw_tensor_zeros(&t, TW_BOOL, 0, NULL), TW_OK);
	cr_assert_eq(tw_value_tensor(&vals[6], &t), TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(tw_value_list(&vals[7], 0), TW_OK);
	cr_assert_eq(tw_value_tuple(&vals[8], 2), TW_OK);
	cr_assert_eq(tw_value_dict(&vals[9], 0), TW_OK);
	cr_assert_eq(tw_value_rref(&vals[10], &id), TW_OK);
	cr_assert_eq(tw_value_error(&vals[11], TW_ENOFUNC, 2,
				    "no such function"),
		     TW_OK);
	for (int i = 0; i < 12; i++) {
		tw_value c;
		cr_assert_eq(tw_value_clone(&c, &vals[i]), TW_OK, "kind %d", i);
		cr_assert_eq(c.kind, vals[i].kind);
		cr_assert(tw_value_equal(&c, &vals[i]), "kind %d", i);
		for (int j = 0; j < 12; j++)
			if (j != i)
				cr_assert_not(tw_value_equal(&c, &vals[j]),
					      "%d vs %d", i, j);
		tw_value_destroy(&c);
	}
	for (int i = 0; i < 12; i++)
		tw_value_destroy(&vals[i]);

	tw_value c;
	tw_value bogus = {.kind = 99};
	cr_assert_eq(tw_value_clone(&c, &bogus), TW_EINVAL);
	cr_assert_eq(tw_value_clone(NULL, &bogus), TW_EINVAL);
	cr_assert_eq(tw_value_clone(&c, NULL), TW_EINVAL);
}

Test(equal, doubles_dicts_kinds)
{
	tw_value a = tw_value_double(NAN), b = tw_value_double(-NAN);
	cr_assert(tw_value_equal(&a, &b), "both NaN");
	a = tw_value_double(0.0);
	b = tw_value_double(-0.0);
	cr_assert_not(tw_value_equal(&a, &b), "bitwise: 0.0 and -0.0 differ");
	a = tw_value_double(1.0);
	b = tw_value_int(1);
	cr_assert_not(tw_value_equal(&a, &b), "kinds differ");
	a = tw_value_bool(true);
	cr_assert_not(tw_value_equal(&a, &b));
	cr_assert_not(tw_value_equal(NULL, &b));

	/* Dicts compare as Python's: insertion order does not matter. */
	tw_value d1, d2;
	cr_assert_eq(tw_value_dict(&d1, 2), TW_OK);
	cr_assert_eq(tw_value_dict(&d2, 2), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d1, 0, "x", tw_value_int(1)), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d1, 1, "y", tw_value_int(2)), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d2, 0, "y", tw_value_int(2)), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d2, 1, "x", tw_value_int(1)), TW_OK);
	cr_assert(tw_value_equal(&d1, &d2));
	cr_assert_eq(tw_value_dict_set(&d2, 1, "z", tw_value_int(1)), TW_OK);
	cr_assert_not(tw_value_equal(&d1, &d2));
	tw_value_destroy(&d1);
	tw_value_destroy(&d2);

	/* Lists are ordered; tuples are not lists. */
	tw_value l1, l2, t1;
	cr_assert_eq(tw_value_list(&l1, 2), TW_OK);
	cr_assert_eq(tw_value_list(&l2, 2), TW_OK);
	cr_assert_eq(tw_value_tuple(&t1, 2), TW_OK);
	cr_assert(tw_value_equal(&l1, &l2));
	cr_assert_not(tw_value_equal(&l1, &t1));
	cr_assert_eq(tw_value_set_item(&l1, 0, tw_value_int(1)), TW_OK);
	cr_assert_eq(tw_value_set_item(&l2, 1, tw_value_int(1)), TW_OK);
	cr_assert_not(tw_value_equal(&l1, &l2));
	tw_value_destroy(&l1);
	tw_value_destroy(&l2);
	tw_value_destroy(&t1);

	/* Tensors by content, whatever the layout. */
	tw_tensor x, y;
	cr_assert_eq(tw_tensor_zeros(&x, TW_INT8, 1, (int64_t[]){3}), TW_OK);
	cr_assert_eq(tw_tensor_zeros(&y, TW_INT8, 1, (int64_t[]){3}), TW_OK);
	tw_value tx, ty;
	cr_assert_eq(tw_value_tensor(&tx, &x), TW_OK);
	cr_assert_eq(tw_value_tensor(&ty, &y), TW_OK);
	cr_assert(tw_value_equal(&tx, &ty));
	((int8_t *)y.data)[2] = 1;
	cr_assert_not(tw_value_equal(&tx, &ty));
	tw_value_destroy(&tx);
	tw_value_destroy(&ty);
	tw_tensor_release(&x);
	tw_tensor_release(&y);
}

Test(format, scalars)
{
	tw_value v = tw_value_none();
	expect_format(&v, "None");
	v = tw_value_bool(true);
	expect_format(&v, "True");
	v = tw_value_bool(false);
	expect_format(&v, "False");
	v = tw_value_int(3);
	expect_format(&v, "3");
	v = tw_value_int(INT64_MIN);
	expect_format(&v, "-9223372036854775808");

	/* Python's repr of floats. */
	static const struct {
		double d;
		const char *want;
	} reals[] = {
		{1.5, "1.5"},
		{1.0, "1.0"},
		{-0.0, "-0.0"},
		{0.1, "0.1"},
		{100.0, "100.0"},
		{1e15, "1000000000000000.0"},
		{1e16, "1e+16"},
		{1.5e300, "1.5e+300"},
		{0.0001, "0.0001"},
		{0.00001, "1e-05"},
		{123.456, "123.456"},
		{1.0 / 3.0, "0.3333333333333333"},
		{5e-324, "5e-324"},
		{1.7976931348623157e308, "1.7976931348623157e+308"},
		{NAN, "nan"},
		{INFINITY, "inf"},
		{-INFINITY, "-inf"},
	};
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		v = tw_value_double(reals[i].d);
		expect_format(&v, reals[i].want);
	}
}

Test(format, strings_and_bytes)
{
	tw_value v;
	cr_assert_eq(tw_value_cstring(&v, "str"), TW_OK);
	expect_format(&v, "'str'");
	tw_value_destroy(&v);
	cr_assert_eq(tw_value_cstring(&v, "it's"), TW_OK);
	expect_format(&v, "\"it's\"");
	tw_value_destroy(&v);
	cr_assert_eq(tw_value_cstring(&v, "'\"\\\n\t\x01é"), TW_OK);
	expect_format(&v, "'\\'\"\\\\\\n\\t\\x01é'");
	tw_value_destroy(&v);
	cr_assert_eq(tw_value_cstring(&v, "\xC2\x85"), TW_OK); /* U+0085 NEL */
	expect_format(&v, "'\\x85'");
	tw_value_destroy(&v);
	cr_assert_eq(tw_value_string(&v, "", 0), TW_OK);
	expect_format(&v, "''");
	tw_value_destroy(&v);

	cr_assert_eq(tw_value_bytes(&v,
				    "\x00\x01\xff"
				    "a'",
				    5),
		     TW_OK);
	expect_format(&v, "b\"\\x00\\x01\\xffa'\"");
	tw_value_destroy(&v);
	cr_assert_eq(tw_value_bytes(&v, NULL, 0), TW_OK);
	expect_format(&v, "b''");
	tw_value_destroy(&v);

	/* An unchecked borrowed string shows bad bytes as escapes. */
	v = tw_value_string_borrow("a\xFF", 2);
	expect_format(&v, "'a\\xff'");
}

Test(format, containers_rref_error_tensor)
{
	tw_value l, t1, t0, t2, d, e;
	cr_assert_eq(tw_value_list(&l, 3), TW_OK);
	cr_assert_eq(tw_value_set_item(&l, 0, tw_value_int(1)), TW_OK);
	cr_assert_eq(tw_value_set_item(&l, 1, tw_value_double(2.5)), TW_OK);
	expect_format(&l, "[1, 2.5, None]");
	cr_assert_eq(tw_value_tuple(&t1, 1), TW_OK);
	cr_assert_eq(tw_value_set_item(&t1, 0, tw_value_int(1)), TW_OK);
	expect_format(&t1, "(1,)");
	cr_assert_eq(tw_value_tuple(&t0, 0), TW_OK);
	expect_format(&t0, "()");
	cr_assert_eq(tw_value_tuple(&t2, 2), TW_OK);
	expect_format(&t2, "(None, None)");
	cr_assert_eq(tw_value_list(&e, 0), TW_OK);
	expect_format(&e, "[]");
	cr_assert_eq(tw_value_dict(&d, 2), TW_OK);
	expect_format(&d, "{}");
	cr_assert_eq(tw_value_dict_set(&d, 0, "k", l), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 1, "t", t1), TW_OK);
	expect_format(&d, "{'k': [1, 2.5, None], 't': (1,)}");
	tw_value_destroy(&d);
	tw_value_destroy(&t0);
	tw_value_destroy(&t2);
	tw_value_destroy(&e);

	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, TW_FLOAT32, 2, (int64_t[]){2, 3}),
		     TW_OK);
	for (int i = 0; i < 6; i++)
		((float *)t.data)[i] = (float)(i + 1);
	tw_value tv;
	cr_assert_eq(tw_value_tensor(&tv, &t), TW_OK);
	expect_format(&tv, "tensor(float32[2, 3], data=[1, 2, 3, ...])");
	tw_value_destroy(&tv);
	tw_tensor_release(&t);
}

Test(format, tensor_every_dtype)
{
	static const struct {
		tw_dtype dt;
		uint8_t bytes[8];
		const char *want;
	} cases[] = {
		{TW_BOOL, {1, 0}, "tensor(bool[2], data=[True, False])"},
		{TW_UINT8, {255, 7}, "tensor(uint8[2], data=[255, 7])"},
		{TW_INT8, {0x80, 7}, "tensor(int8[2], data=[-128, 7])"},
		{TW_INT16,
		 {0x00, 0x80, 1, 0},
		 "tensor(int16[2], data=[-32768, 1])"},
		{TW_INT32,
		 {0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0},
		 "tensor(int32[2], data=[-1, 2])"},
		/* 1.0 (0x3C00), 0.1 (0x2E66) */
		{TW_FLOAT16,
		 {0x00, 0x3C, 0x66, 0x2E},
		 "tensor(float16[2], data=[1, 0.1])"},
		/* 1.0 (0x3F80), 0.1 (0x3DCD) */
		{TW_BFLOAT16,
		 {0x80, 0x3F, 0xCD, 0x3D},
		 "tensor(bfloat16[2], data=[1, 0.1])"},
		/* 0.1f, -2.5f */
		{TW_FLOAT32,
		 {0xCD, 0xCC, 0xCC, 0x3D, 0x00, 0x00, 0x20, 0xC0},
		 "tensor(float32[2], data=[0.1, -2.5])"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t es = tw_dtype_size(cases[i].dt);
		tw_tensor t;
		cr_assert_eq(tw_tensor_alloc(&t, cases[i].dt, 1,
					     (int64_t[]){2}),
			     TW_OK);
		memcpy(t.data, cases[i].bytes, 2 * es);
		tw_value v;
		cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
		expect_format(&v, cases[i].want);
		tw_value_destroy(&v);
		tw_tensor_release(&t);
	}

	/* int64 and float64, scalar and empty, and a strided view. */
	int64_t i64 = INT64_MAX;
	tw_tensor t;
	cr_assert_eq(tw_tensor_init(&t, TW_INT64, 0, NULL, NULL, &i64, NULL),
		     TW_OK);
	tw_value v;
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	expect_format(&v, "tensor(int64[], data=[9223372036854775807])");
	tw_value_destroy(&v);
	double f64[4] = {0.5, 1e100, NAN, 4};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT64, 2, (int64_t[]){2, 2},
				    (int64_t[]){1, 2}, f64, NULL),
		     TW_OK);
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	expect_format(&v,
		      "tensor(float64[2, 2], data=[0.5, nan, 1e+100, ...])");
	tw_value_destroy(&v);
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT64, 2, (int64_t[]){0, 2}, NULL,
				    NULL, NULL),
		     TW_OK);
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	expect_format(&v, "tensor(float64[0, 2], data=[])");
	tw_value_destroy(&v);
}

Test(format, truncation_is_safe)
{
	tw_value d;
	cr_assert_eq(tw_value_dict(&d, 2), TW_OK);
	tw_value s;
	cr_assert_eq(tw_value_cstring(&s, "a longer string value"), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 0, "key", s), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 1, "n", tw_value_double(0.1)),
		     TW_OK);
	const char *full = "{'key': 'a longer string value', 'n': 0.1}";
	size_t n = strlen(full);

	cr_assert_eq(tw_value_format(&d, NULL, 0), n, "sizing call");
	cr_assert_eq(tw_value_format(&d, NULL, 10), n,
		     "NULL buffer never written");
	for (size_t size = 0; size <= n + 2; size++) {
		/* Exactly size bytes from the heap: ASan catches any overrun. */
		char *buf = malloc(size ? size : 1);
		cr_assert_not_null(buf);
		memset(buf, '#', size ? size : 1);
		cr_assert_eq(tw_value_format(&d, buf, size), n, "size %zu",
			     size);
		if (size == 0) {
			cr_assert_eq(buf[0], '#', "size 0 writes nothing");
		} else {
			size_t w = size - 1 < n ? size - 1 : n;
			cr_assert_eq(buf[w], '\0', "size %zu terminated", size);
			cr_assert_eq(strncmp(buf, full, w), 0,
				     "size %zu prefix", size);
		}
		free(buf);
	}
	tw_value_destroy(&d);

	char small[4];
	cr_assert_eq(tw_value_format(NULL, small, sizeof(small)),
		     strlen("<null>"));
	cr_assert_str_eq(small, "<nu");
	tw_value bogus = {.kind = 77};
	char buf[64];
	tw_value_format(&bogus, buf, sizeof(buf));
	cr_assert_str_eq(buf, "<invalid kind 77>");
}

Test(kind, names)
{
	static const char *const want[] = {"none",   "bool",   "int",
					   "double", "string", "bytes",
					   "tensor", "list",   "tuple",
					   "dict",   "rref",   "error"};
	for (unsigned k = 0; k < TW_KIND_COUNT_; k++)
		cr_assert_str_eq(tw_kind_name((tw_kind)k), want[k]);
	cr_assert_str_eq(tw_kind_name(TW_KIND_COUNT_), "?");
	cr_assert_str_eq(tw_kind_name((tw_kind)-1), "?");
}

/* A dict's unset slots are not entries: the wire skips them, so a dict with
 * spare slots must equal its decoded (compact) copy. */
Test(value, dict_equal_ignores_unset_slots)
{
	tw_value a, b;
	cr_assert_eq(tw_value_dict(&a, 4), TW_OK);
	cr_assert_eq(tw_value_dict(&b, 2), TW_OK);
	cr_assert_eq(tw_value_dict_set(&a, 1, "x", tw_value_int(1)), TW_OK);
	cr_assert_eq(tw_value_dict_set(&a, 3, "y", tw_value_int(2)), TW_OK);
	cr_assert_eq(tw_value_dict_set(&b, 0, "y", tw_value_int(2)), TW_OK);
	cr_assert(!tw_value_equal(&a, &b), "b lacks x");
	cr_assert_eq(tw_value_dict_set(&b, 1, "x", tw_value_int(1)), TW_OK);
	cr_assert(tw_value_equal(&a, &b));
	cr_assert(tw_value_equal(&b, &a));
	tw_value_destroy(&a);
	tw_value_destroy(&b);
}

/* ---- reasons (tw_errmsg, status.h) --------------------------------------- */

Test(errmsg, value_refusals_say_why)
{
	tw_value l, d, s;
	const tw_value *out;
	int64_t i;
	cr_assert_eq(tw_value_list(&l, 2), TW_OK);
	cr_assert_eq(tw_value_get_item(&l, 3, &out), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "index 3 out of range for a list of 2");
	cr_assert_eq(tw_value_cstring(&s, "x"), TW_OK);
	cr_assert_eq(tw_value_get_int(&s, &i), TW_ETYPE);
	cr_assert_str_eq(tw_errmsg(TW_ETYPE),
			 "expected an int, got a value of kind 'string'");
	cr_assert_eq(tw_value_set_item(&s, 0, tw_value_int(1)), TW_ETYPE);
	cr_assert_str_eq(tw_errmsg(TW_ETYPE),
			 "tw_value_set_item: the container "
			 "is of kind 'string', not a list or tuple");
	cr_assert_eq(tw_value_set_item(&l, 2, tw_value_int(1)), TW_EINVAL);
	cr_assert_str_eq(
		tw_errmsg(TW_EINVAL),
		"tw_value_set_item: index 2 out of range for a list of 2");
	cr_assert_eq(tw_value_dict(&d, 2), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 0, "k", tw_value_int(1)), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 1, "k", tw_value_int(2)), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "dict key 'k' is already used by entry 0");
	cr_assert_eq(tw_value_dict_get(&d, "nope", &out), TW_ENOENT);
	cr_assert_str_eq(tw_errmsg(TW_ENOENT), "no such key in the dict");
	tw_value t;
	cr_assert_eq(tw_value_string(&t, "\xc3", 1), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "string value is not valid UTF-8");
	cr_assert_eq(tw_value_error(&t, TW_OK, 0, "x"), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tw_value_error: kind 0 is not a failure status");
	tw_value deep = tw_value_int(0);
	for (int k = 0; k <= TW_VALUE_MAX_DEPTH; k++) {
		tw_value c;
		cr_assert_eq(tw_value_list(&c, 1), TW_OK);
		cr_assert_eq(tw_value_set_item(&c, 0, deep), TW_OK);
		deep = c;
	}
	cr_assert_eq(tw_value_clone(&t, &deep), TW_EOVERFLOW);
	cr_assert_str_eq(tw_errmsg(TW_EOVERFLOW),
			 "tw_value_clone: more than "
			 "TW_VALUE_MAX_DEPTH (64) nested containers");
	tw_value_destroy(&deep);
	tw_value_destroy(&l);
	tw_value_destroy(&d);
	tw_value_destroy(&s);
}
