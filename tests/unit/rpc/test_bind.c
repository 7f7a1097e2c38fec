/* Unit tests for binding arguments to schemas and matching overloads: every
 * rule of torch's createStackForSchema and matchBuiltinOp, case by case. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <tensorwire/schema.h>
#include <tensorwire/tensor.h>
#include <tensorwire/value.h>

#define ADD_TENSOR                                                             \
	"aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"
#define ADD_SCALAR                                                             \
	"aten::add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor"

static tw_schema *S(const char *text)
{
	tw_schema *s = NULL;
	tw_status st = tw_schema_parse(text, &s);

	cr_assert_eq(st, TW_OK, "%s: %s", text, tw_errmsg(st));
	return s;
}

/* A fresh 2x2 float tensor value (owned). */
static tw_value T(void)
{
	tw_tensor t;
	tw_value v;
	int64_t shape[2] = {2, 2};

	cr_assert_eq(tw_tensor_zeros(&t, TW_FLOAT32, 2, shape), TW_OK);
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	tw_tensor_release(&t);
	return v;
}

static tw_value I(int64_t i)
{
	return tw_value_int(i);
}
static tw_value D(double d)
{
	return tw_value_double(d);
}
static tw_value B(bool b)
{
	return tw_value_bool(b);
}
static tw_value N(void)
{
	return tw_value_none();
}

static tw_value Str(const char *s)
{
	tw_value v;
	cr_assert_eq(tw_value_cstring(&v, s), TW_OK);
	return v;
}

/* Owned list/tuple of n values (moved in). */
static tw_value seq(tw_kind kind, int n, ...)
{
	tw_value v;
	va_list ap;

	cr_assert_eq(kind == TW_KIND_LIST ? tw_value_list(&v, (uint32_t)n)
					  : tw_value_tuple(&v, (uint32_t)n),
		     TW_OK);
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		cr_assert_eq(tw_value_set_item(&v, (uint32_t)i,
					       va_arg(ap, tw_value)),
			     TW_OK);
	va_end(ap);
	return v;
}
#define L(...) seq(TW_KIND_LIST, __VA_ARGS__)
#define TUP(...) seq(TW_KIND_TUPLE, __VA_ARGS__)

/* Owned dict: key, value, key, value ... */
static tw_value K(int n, ...)
{
	tw_value v;
	va_list ap;

	cr_assert_eq(tw_value_dict(&v, (uint32_t)n), TW_OK);
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		const char *k = va_arg(ap, const char *);
		cr_assert_eq(tw_value_dict_set(&v, (uint32_t)i, k,
					       va_arg(ap, tw_value)),
			     TW_OK);
	}
	va_end(ap);
	return v;
}

/* The last call's explanation (tw_errmsg), kept for the checks after it;
 * "" after a success. */
static char err[TW_ERRMSG_MAX];

static tw_status keep(tw_status st)
{
	snprintf(err, sizeof(err), "%s", st == TW_OK ? "" : tw_errmsg(st));
	return st;
}

#define BIND(...) keep(tw_schema_bind(__VA_ARGS__))
#define MATCH(...) keep(tw_schema_match(__VA_ARGS__))

/* Bind and expect success; bound has room for 16. */
static void bind_ok(const tw_schema *s, const tw_value *args,
		    const tw_value *kwargs, tw_value *bound)
{
	tw_status st = BIND(s, args, kwargs, bound);
	cr_assert_eq(st, TW_OK, "bind failed: %s", err);
}

/* Bind and expect TW_ETYPE with every want substring in the message. */
static void bind_bad(const tw_schema *s, const tw_value *args,
		     const tw_value *kwargs, int nwant, ...)
{
	tw_value bound[16];
	va_list ap;

	for (int i = 0; i < 16; i++)
		bound[i] = tw_value_int(99);
	tw_status st = BIND(s, args, kwargs, bound);
	cr_assert_eq(st, TW_ETYPE, "bound unexpectedly (%d)", st);
	for (size_t i = 0; i < tw_schema_nargs(s); i++)
		cr_assert_eq(bound[i].kind, TW_KIND_NONE,
			     "slot %zu not cleared", i);
	va_start(ap, nwant);
	for (int i = 0; i < nwant; i++) {
		const char *want = va_arg(ap, const char *);
		cr_assert(strstr(err, want) != NULL, "message:\n%s\nlacks:\n%s",
			  err, want);
	}
	va_end(ap);
}

/* ---- positional, keyword, default ------------------------------------- */

Test(bind, positional_then_default)
{
	tw_schema *s = S(ADD_TENSOR);
	tw_value args = TUP(2, T(), T());
	tw_value bound[3];

	bind_ok(s, &args, NULL, bound);
	cr_assert_eq(bound[0].kind, TW_KIND_TENSOR);
	cr_assert_eq(bound[0].u.tensor, args.u.items[0].u.tensor,
		     "lent, not copied");
	cr_assert(bound[0].flags & TW_VALUE_BORROWED);
	cr_assert_eq(bound[1].u.tensor, args.u.items[1].u.tensor);
	cr_assert_eq(bound[2].kind, TW_KIND_INT, "alpha from its default");
	cr_assert_eq(bound[2].u.i, 1);
	tw_schema_bound_release(bound, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(bound[i].kind, TW_KIND_NONE);
	/* Releasing did not touch the caller's values. */
	cr_assert_eq(args.u.items[0].kind, TW_KIND_TENSOR);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(bind, keywords_by_name_in_any_order)
{
	tw_schema *s = S(ADD_TENSOR);
	tw_value args = TUP(1, T());
	tw_value kw = K(2, "alpha", D(2.5), "other", T());
	tw_value bound[3];

	bind_ok(s, &args, &kw, bound);
	cr_assert_eq(bound[1].u.tensor, kw.u.entries[1].val.u.tensor);
	cr_assert_eq(bound[2].kind, TW_KIND_DOUBLE);
	cr_assert_eq(bound[2].u.d, 2.5);
	tw_schema_bound_release(bound, 3);
	tw_value_destroy(&kw);
	tw_value_destroy(&args);
	/* Everything by keyword, including self. */
	kw = K(2, "other", T(), "self", T());
	bind_ok(s, NULL, &kw, bound);
	cr_assert_eq(bound[0].u.tensor, kw.u.entries[1].val.u.tensor);
	tw_schema_bound_release(bound, 3);
	tw_value_destroy(&kw);
	tw_schema_free(s);
}

Test(bind, args_may_be_a_list_or_null)
{
	tw_schema *s = S("f(int a=1, int b=2) -> ()");
	tw_value args = L(1, I(5));
	tw_value bound[2];

	bind_ok(s, &args, NULL, bound);
	cr_assert_eq(bound[0].u.i, 5);
	cr_assert_eq(bound[1].u.i, 2);
	bind_ok(s, NULL, NULL, bound);
	cr_assert_eq(bound[0].u.i, 1);
	tw_value_destroy(&args);
	tw_schema_free(s);

	/* No arguments at all: bound may be NULL. */
	s = S("f() -> ()");
	cr_assert_eq(BIND(s, NULL, NULL, NULL), TW_OK);
	tw_value empty = TUP(0);
	tw_value ekw = K(0);
	cr_assert_eq(BIND(s, &empty, &ekw, NULL), TW_OK);
	tw_value_destroy(&empty);
	tw_value_destroy(&ekw);
	tw_schema_free(s);
}

Test(bind, containers_of_the_wrong_kind)
{
	tw_schema *s = S("f(int a) -> ()");
	tw_value bound[1] = {I(7)};
	tw_value notseq = I(1);
	tw_value args = TUP(1, I(1));

	cr_assert_eq(BIND(s, &notseq, NULL, bound), TW_EINVAL);
	cr_assert(strstr(err, "tuple or a list") != NULL);
	cr_assert_eq(bound[0].kind, TW_KIND_NONE);
	cr_assert_eq(BIND(s, &args, &args, bound), TW_EINVAL);
	cr_assert(strstr(err, "must be a dict") != NULL);
	cr_assert_eq(BIND(s, &args, NULL, NULL), TW_EINVAL);
	cr_assert_eq(BIND(NULL, &args, NULL, bound), TW_EINVAL);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

/* ---- the refusals, in torch's words ------------------------------------- */

Test(refuse, too_many_arguments)
{
	tw_schema *s = S(ADD_TENSOR);
	tw_value args = TUP(4, T(), T(), I(1), I(2));

	bind_bad(
		s, &args, NULL, 2,
		"aten::add() expected at most 3 argument(s) but received 4 argument(s).",
		"Declaration: " ADD_TENSOR);
	tw_value_destroy(&args);
	/* Keywords count too. */
	args = TUP(2, T(), T());
	tw_value kw = K(2, "alpha", I(1), "beta", I(2));
	bind_bad(
		s, &args, &kw, 1,
		"aten::add() expected at most 3 argument(s) but received 4 argument(s).");
	tw_value_destroy(&kw);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(refuse, keyword_only_given_positionally)
{
	tw_schema *s = S(ADD_TENSOR);
	tw_value args = TUP(3, T(), T(), I(1));

	bind_bad(
		s, &args, NULL, 2,
		"aten::add() takes 2 positional argument(s) but 3 was/were given.",
		"Declaration: " ADD_TENSOR);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(refuse, duplicated)
{
	tw_schema *s = S(ADD_TENSOR);
	tw_value args = TUP(2, T(), T());
	tw_value kw = K(1, "other", T());

	bind_bad(
		s, &args, &kw, 2,
		"Argument 'other' specified both as positional and keyword argument.",
		"Schema: " ADD_TENSOR);
	tw_value_destroy(&kw);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(refuse, unknown_keyword)
{
	tw_schema *s = S(ADD_TENSOR);
	tw_value args = TUP(2, T(), T());
	tw_value kw = K(1, "beta", I(1));

	bind_bad(s, &args, &kw, 2,
		 "Unknown keyword argument 'beta' for operator 'aten::add'.",
		 "Schema: " ADD_TENSOR);
	tw_value_destroy(&kw);
	/* torch names the unknown one before a duplicate. */
	tw_value_destroy(&args);
	args = TUP(1, T());
	kw = K(2, "self", T(), "bogus", I(1));
	tw_schema *f = S("f(Tensor self, int x=0, int y=0) -> ()");
	bind_bad(f, &args, &kw, 1,
		 "Unknown keyword argument 'bogus' for operator 'f'.");
	tw_schema_free(f);
	tw_value_destroy(&kw);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(refuse, repeated_keyword_in_a_raw_dict)
{
	/* Dicts built by tw_value_dict_set cannot repeat a key; a borrowed
	 * view of raw entries can. */
	tw_schema *s = S("f(int a=0, int b=0) -> ()");
	tw_kv e[2] = {
		{.key = "a", .key_len = 1, .val = I(1)},
		{.key = "a", .key_len = 1, .val = I(2)},
	};
	tw_value kw = {.kind = TW_KIND_DICT,
		       .flags = TW_VALUE_BORROWED,
		       .len = 2,
		       .u.entries = e};

	bind_bad(s, NULL, &kw, 1, "Keyword argument 'a' specified twice.");
	tw_schema_free(s);
}

Test(refuse, missing)
{
	tw_schema *s = S(ADD_TENSOR);
	tw_value args = TUP(1, T());

	bind_bad(s, &args, NULL, 2,
		 "aten::add() is missing value for argument 'other'.",
		 "Declaration: " ADD_TENSOR);
	tw_value_destroy(&args);
	/* A keyword-only argument without a default is missing too. */
	tw_schema *d = S(
		"aten::div.Tensor_mode(Tensor self, Tensor other, *, str? rounding_mode) -> Tensor");
	args = TUP(2, T(), T());
	bind_bad(d, &args, NULL, 1,
		 "aten::div() is missing value for argument 'rounding_mode'.");
	tw_value kw = K(1, "rounding_mode", N());
	tw_value bound[3];
	bind_ok(d, &args, &kw, bound);
	cr_assert_eq(bound[2].kind, TW_KIND_NONE);
	tw_value_destroy(&kw);
	tw_value_destroy(&args);
	tw_schema_free(d);
	tw_schema_free(s);
}

Test(refuse, wrong_type_names_argument_and_type)
{
	tw_schema *s = S(ADD_TENSOR);
	tw_value args = TUP(2, T(), Str("x"));

	bind_bad(
		s, &args, NULL, 4,
		"aten::add() Expected a value of type 'Tensor' for argument 'other' but instead found type 'str'.",
		"\nPosition: 1\n", "\nValue: 'x'\n",
		"\nDeclaration: " ADD_TENSOR);
	tw_value_destroy(&args);
	/* By keyword: the position is the argument's. */
	args = TUP(2, T(), T());
	tw_value kw = K(1, "alpha", Str("big"));
	bind_bad(
		s, &args, &kw, 2,
		"Expected a value of type 'number' for argument 'alpha' but instead found type 'str'.",
		"Position: 2");
	tw_value_destroy(&kw);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(refuse, torch_order_of_checks)
{
	/* A bad positional is reported before a missing argument, and a
	 * missing argument before an unknown keyword, as in torch. */
	tw_schema *s = S("f(int a, int b, int c) -> ()");
	tw_value args = TUP(1, Str("no"));
	tw_value kw = K(1, "zz", I(1));

	bind_bad(s, &args, &kw, 1,
		 "for argument 'a' but instead found type 'str'");
	tw_value_destroy(&args);
	args = TUP(1, I(1));
	bind_bad(s, &args, &kw, 1, "f() is missing value for argument 'b'.");
	tw_value_destroy(&kw);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

/* ---- types and conversions ------------------------------------------------ */

/* Does a one-argument schema take v? On success return the bound value in
 * *out (caller releases). */
static bool takes(const char *type, tw_value v, tw_value *out)
{
	char text[128];
	tw_value args = TUP(1, v);
	tw_value bound[1];

	snprintf(text, sizeof(text), "f(%s x) -> ()", type);
	tw_schema *s = S(text);
	tw_status st = BIND(s, &args, NULL, bound);
	cr_assert(st == TW_OK || st == TW_ETYPE);
	if (st == TW_OK && out != NULL) {
		/* Keep the args alive: hand them out through a clone. */
		cr_assert_eq(tw_value_clone(out, &bound[0]), TW_OK);
	}
	tw_schema_bound_release(bound, 1);
	tw_value_destroy(&args);
	tw_schema_free(s);
	return st == TW_OK;
}

Test(types, int_float_bool_are_distinct)
{
	tw_value out;

	cr_assert(takes("int", I(3), NULL));
	cr_assert_not(takes("int", B(true), NULL), "bool is not int");
	cr_assert(strstr(
		err,
		"Expected a value of type 'int' for argument 'x' but instead found type 'bool'."));
	cr_assert_not(takes("int", D(3.0), NULL), "float is not int");
	cr_assert(takes("float", D(0.5), NULL));
	cr_assert(takes("float", I(3), &out), "int converts to float");
	cr_assert_eq(out.kind, TW_KIND_DOUBLE);
	cr_assert_eq(out.u.d, 3.0);
	cr_assert_not(takes("float", B(false), NULL), "bool is not float");
	cr_assert(takes("bool", B(false), NULL));
	cr_assert_not(takes("bool", I(0), NULL), "int is not bool");
	cr_assert(takes("SymInt", I(-1), NULL));
	cr_assert(takes("ScalarType", I(6), NULL));
	cr_assert(takes("SymFloat", I(1), NULL));
}

Test(types, int_to_float_needs_no_allocation)
{
	tw_schema *s = S("f(float x) -> ()");
	tw_value args = TUP(1, I(7));
	tw_value bound[1];

	bind_ok(s, &args, NULL, bound);
	cr_assert_eq(bound[0].kind, TW_KIND_DOUBLE);
	cr_assert_eq(bound[0].u.d, 7.0);
	cr_assert_eq(bound[0].flags, 0, "an inline double owns nothing");
	tw_schema_bound_release(bound, 1);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(types, scalar_str_any_none)
{
	cr_assert(takes("Scalar", I(1), NULL));
	cr_assert(takes("Scalar", D(1.5), NULL));
	cr_assert(takes("Scalar", B(true), NULL));
	cr_assert_not(takes("Scalar", Str("1"), NULL));
	cr_assert(strstr(err, "Expected a value of type 'number'"));
	cr_assert_not(takes("Scalar", T(), NULL));
	cr_assert(takes("str", Str("hi"), NULL));
	cr_assert_not(takes("str", I(1), NULL));
	tw_value by;
	cr_assert_eq(tw_value_bytes(&by, "ab", 2), TW_OK);
	cr_assert_not(takes("str", by, NULL), "bytes are not str");
	cr_assert(strstr(err, "found type 'bytes'"));
	cr_assert(takes("Dimname", Str("N"), NULL));
	cr_assert(takes("Device", Str("cpu"), NULL));
	cr_assert_not(takes("Device", I(0), NULL));
	cr_assert(takes("Any", T(), NULL));
	cr_assert(takes("Any", N(), NULL));
	cr_assert(takes("Any", L(2, I(1), Str("x")), NULL));
	cr_assert(takes("None", N(), NULL));
	cr_assert_not(takes("NoneType", I(0), NULL));
	cr_assert(strstr(err, "Expected a value of type 'NoneType'"));
	cr_assert(takes("Tensor", T(), NULL));
	cr_assert_not(takes("Tensor", N(), NULL), "None is not a Tensor");
	cr_assert_not(takes("Tensor", I(1), NULL));
	cr_assert(strstr(
		err,
		"Expected a value of type 'Tensor' for argument 'x' but instead found type 'int'."));
}

Test(types, optional)
{
	cr_assert(takes("Tensor?", N(), NULL));
	cr_assert(takes("Tensor?", T(), NULL));
	cr_assert(takes("int?", I(1), NULL));
	cr_assert(takes("int?", N(), NULL));
	cr_assert_not(takes("int?", Str("1"), NULL));
	cr_assert(strstr(err, "Expected a value of type 'Optional[int]'"));
	tw_value out;
	cr_assert(takes("float?", I(2), &out));
	cr_assert_eq(out.kind, TW_KIND_DOUBLE);
	cr_assert(takes("Generator?", N(), NULL));
	cr_assert_not(takes("Generator?", I(1), NULL),
		      "no generators over the wire");
	cr_assert_not(takes("Generator", N(), NULL));
}

Test(types, lists_and_tuples)
{
	tw_schema *s = S("f(int[] x) -> ()");
	tw_value bound[1];

	/* A list binds as it is, lent. */
	tw_value args = TUP(1, L(2, I(1), I(2)));
	bind_ok(s, &args, NULL, bound);
	cr_assert_eq(bound[0].kind, TW_KIND_LIST);
	cr_assert_eq(bound[0].u.items, args.u.items[0].u.items);
	cr_assert(bound[0].flags & TW_VALUE_BORROWED);
	tw_schema_bound_release(bound, 1);
	tw_value_destroy(&args);
	/* A tuple binds as a list, still lent. */
	args = TUP(1, TUP(3, I(1), I(2), I(3)));
	bind_ok(s, &args, NULL, bound);
	cr_assert_eq(bound[0].kind, TW_KIND_LIST);
	cr_assert_eq(bound[0].len, 3);
	cr_assert_eq(bound[0].u.items, args.u.items[0].u.items);
	cr_assert(bound[0].flags & TW_VALUE_BORROWED);
	tw_schema_bound_release(bound, 1);
	tw_value_destroy(&args);
	/* Empty lists are fine; mixed ones are not. */
	args = TUP(1, L(0));
	bind_ok(s, &args, NULL, bound);
	tw_value_destroy(&args);
	args = TUP(1, L(2, I(1), B(true)));
	bind_bad(
		s, &args, NULL, 1,
		"Expected a value of type 'List[int]' for argument 'x' but instead found type 'List[Any]'.");
	tw_value_destroy(&args);
	args = TUP(1, L(2, Str("a"), Str("b")));
	bind_bad(s, &args, NULL, 1, "but instead found type 'List[str]'.");
	tw_value_destroy(&args);
	/* A single int is not a list unless the list has a fixed size. */
	args = TUP(1, I(1));
	bind_bad(
		s, &args, NULL, 1,
		"Expected a value of type 'List[int]' for argument 'x' but instead found type 'int'.");
	tw_value_destroy(&args);
	tw_schema_free(s);

	/* float[] converts its ints, into a new list. */
	s = S("f(float[] x) -> ()");
	args = TUP(1, L(2, I(1), D(2.5)));
	bind_ok(s, &args, NULL, bound);
	cr_assert_eq(bound[0].kind, TW_KIND_LIST);
	cr_assert_neq(bound[0].u.items, args.u.items[0].u.items);
	cr_assert_eq(bound[0].u.items[0].kind, TW_KIND_DOUBLE);
	cr_assert_eq(bound[0].u.items[0].u.d, 1.0);
	cr_assert_eq(bound[0].u.items[1].u.d, 2.5);
	tw_schema_bound_release(bound, 1); /* ASan: frees the new list */
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(types, fixed_size_list_from_one_int)
{
	tw_schema *s = S("f(int[2] x, int[1] y, float[3] z) -> ()");
	tw_value args = TUP(3, I(4), I(9), D(0.5));
	tw_value bound[3];

	bind_ok(s, &args, NULL, bound);
	cr_assert_eq(bound[0].kind, TW_KIND_LIST);
	cr_assert_eq(bound[0].len, 2);
	cr_assert_eq(bound[0].u.items[0].u.i, 4);
	cr_assert_eq(bound[0].u.items[1].u.i, 4);
	/* int[1] from one int: a view of the argument itself. */
	cr_assert_eq(bound[1].len, 1);
	cr_assert_eq(bound[1].u.items, &args.u.items[1]);
	cr_assert(bound[1].flags & TW_VALUE_BORROWED);
	cr_assert_eq(bound[2].len, 3);
	cr_assert_eq(bound[2].u.items[2].u.d, 0.5);
	tw_schema_bound_release(bound, 3);
	tw_value_destroy(&args);
	/* A list still binds; an int does not become float[N]. */
	args = TUP(3, L(2, I(1), I(2)), L(1, I(0)), I(1));
	bind_bad(
		s, &args, NULL, 1,
		"Expected a value of type 'List[float]' for argument 'z' but instead found type 'int'.");
	tw_value_destroy(&args);
	tw_schema_free(s);

	/* sum.dim_IntList(t, 0): int[1]? from one int. */
	s = S("aten::sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor");
	args = TUP(2, T(), I(0));
	tw_value b4[4];
	bind_ok(s, &args, NULL, b4);
	cr_assert_eq(b4[1].kind, TW_KIND_LIST);
	cr_assert_eq(b4[1].u.items[0].u.i, 0);
	cr_assert_eq(b4[2].kind, TW_KIND_BOOL);
	cr_assert_eq(b4[3].kind, TW_KIND_NONE);
	tw_schema_bound_release(b4, 4);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(types, tensor_lists)
{
	tw_schema *s = S("aten::cat(Tensor[] tensors, int dim=0) -> Tensor");
	tw_value bound[2];
	tw_value args = TUP(1, L(2, T(), T()));

	bind_ok(s, &args, NULL, bound);
	cr_assert_eq(bound[0].len, 2);
	cr_assert_eq(bound[0].u.items[1].kind, TW_KIND_TENSOR);
	cr_assert_eq(bound[1].u.i, 0);
	tw_schema_bound_release(bound, 2);
	tw_value_destroy(&args);
	args = TUP(2, TUP(2, T(), T()), I(1));
	bind_ok(s, &args, NULL, bound);
	cr_assert_eq(bound[0].kind, TW_KIND_LIST);
	tw_schema_bound_release(bound, 2);
	tw_value_destroy(&args);
	args = TUP(1, L(2, T(), I(1)));
	bind_bad(
		s, &args, NULL, 1,
		"aten::cat() Expected a value of type 'List[Tensor]' for argument 'tensors' but instead found type 'List[Any]'.");
	tw_value_destroy(&args);
	args = TUP(1, T());
	bind_bad(s, &args, NULL, 1, "found type 'Tensor'");
	tw_value_destroy(&args);
	tw_schema_free(s);

	/* Tensor?[] takes None elements. */
	s = S("aten::index.Tensor(Tensor self, Tensor?[] indices) -> Tensor");
	args = TUP(2, T(), L(2, N(), T()));
	bind_ok(s, &args, NULL, bound);
	tw_schema_bound_release(bound, 2);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(types, tuples_dicts_rrefs_nested)
{
	tw_value out;

	cr_assert(takes("(int, float)", TUP(2, I(1), I(2)), &out));
	cr_assert_eq(out.kind, TW_KIND_TUPLE);
	cr_assert_eq(out.u.items[1].kind, TW_KIND_DOUBLE, "converted inside");
	tw_value_destroy(&out);
	cr_assert_not(takes("(int, float)", L(2, I(1), I(2)), NULL),
		      "a list is not a tuple");
	cr_assert_not(takes("(int, float)", TUP(1, I(1)), NULL));
	cr_assert(strstr(err, "Expected a value of type 'Tuple[int, float]'"));
	cr_assert(strstr(err, "found type 'Tuple[int]'"));

	cr_assert(
		takes("Dict(str, float)", K(2, "a", I(1), "b", D(2.0)), &out));
	cr_assert_eq(out.kind, TW_KIND_DICT);
	cr_assert_str_eq(out.u.entries[0].key, "a");
	cr_assert_eq(out.u.entries[0].val.kind, TW_KIND_DOUBLE);
	tw_value_destroy(&out);
	cr_assert(takes("Dict(str, Tensor)", K(1, "w", T()), NULL));
	cr_assert_not(takes("Dict(str, int)", K(1, "a", Str("x")), NULL));
	cr_assert(strstr(err, "'Dict[str, int]'"));
	cr_assert(strstr(err, "found type 'Dict[str, str]'"));

	tw_rref_id id = {.owner = 1, .rref = {1, 2}, .fork = {1, 3}};
	tw_value r;
	cr_assert_eq(tw_value_rref(&r, &id), TW_OK);
	cr_assert(takes("RRef(Tensor)", r, NULL));
	cr_assert_not(takes("RRef", T(), NULL));
	cr_assert(strstr(err, "'RRef[Any]'"));

	/* Nested conversion: a tuple of tuples for int[][], ints for
	 * float[][]. */
	cr_assert(takes("int[][]", TUP(2, TUP(1, I(1)), L(1, I(2))), &out));
	cr_assert_eq(out.kind, TW_KIND_LIST);
	cr_assert_eq(out.u.items[0].kind, TW_KIND_LIST);
	tw_value_destroy(&out);
	cr_assert(takes("float[][]", L(1, L(2, I(1), I(2))), &out));
	cr_assert_eq(out.u.items[0].u.items[1].kind, TW_KIND_DOUBLE);
	tw_value_destroy(&out);
	cr_assert(takes("float[]?", L(1, I(3)), &out));
	cr_assert_eq(out.u.items[0].kind, TW_KIND_DOUBLE);
	tw_value_destroy(&out);
}

Test(types, defaults_are_lent_in_bound_form)
{
	tw_schema *s = S(
		"f(*, float a=1, int[2] b=3, str c='x', float[] d=[1, 2]) -> ()");
	tw_value bound[4];

	bind_ok(s, NULL, NULL, bound);
	cr_assert_eq(bound[0].kind, TW_KIND_DOUBLE);
	cr_assert_eq(bound[0].u.d, 1.0);
	cr_assert_eq(bound[1].kind, TW_KIND_LIST);
	cr_assert_eq(bound[1].len, 2);
	cr_assert_eq(bound[1].u.items, tw_schema_arg_default(s, 1)->u.items,
		     "lent");
	cr_assert(bound[1].flags & TW_VALUE_BORROWED);
	cr_assert_str_eq(bound[2].u.str, "x");
	cr_assert(bound[2].flags & TW_VALUE_BORROWED);
	cr_assert_eq(bound[3].u.items[1].kind, TW_KIND_DOUBLE);
	tw_schema_bound_release(bound, 4);
	tw_schema_free(s);
}

Test(types, builtins_bind_as_in_torch)
{
	tw_value bound[8];
	tw_schema *s = S(
		"aten::ones(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor");
	tw_value args = TUP(1, TUP(2, I(2), I(3)));
	tw_value kw = K(2, "dtype", I(6), "device", Str("cpu"));

	bind_ok(s, &args, &kw, bound);
	cr_assert_eq(bound[0].len, 2);
	cr_assert_eq(bound[1].u.i, 6);
	cr_assert_eq(bound[2].kind, TW_KIND_NONE);
	cr_assert_str_eq(bound[3].u.str, "cpu");
	tw_schema_bound_release(bound, 5);
	tw_value_destroy(&kw);
	tw_value_destroy(&args);
	/* torch's Python binding does not gather ones(2, 3) into a list. */
	args = TUP(2, I(2), I(3));
	bind_bad(
		s, &args, NULL, 1,
		"aten::ones() Expected a value of type 'List[int]' for argument 'size' but instead found type 'int'.");
	tw_value_destroy(&args);
	tw_schema_free(s);

	s = S("aten::arange.start_step(Scalar start, Scalar end, Scalar step=1, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor");
	args = TUP(2, I(0), D(10.0));
	bind_ok(s, &args, NULL, bound);
	cr_assert_eq(bound[0].kind, TW_KIND_INT, "Scalar keeps the kind");
	cr_assert_eq(bound[1].kind, TW_KIND_DOUBLE);
	cr_assert_eq(bound[2].u.i, 1);
	tw_schema_bound_release(bound, 7);
	tw_value_destroy(&args);
	tw_schema_free(s);

	s = S("aten::transpose.int(Tensor(a) self, int dim0, int dim1) -> Tensor(a)");
	args = TUP(3, T(), I(0), I(1));
	bind_ok(s, &args, NULL, bound);
	tw_schema_bound_release(bound, 3);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

/* ---- overloads ------------------------------------------------------------------ */

struct overloads {
	tw_schema *s[4];
	size_t n;
};

static struct overloads O(size_t n, ...) {
	struct overloads o = {.n = n};
	va_list ap;

	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		o.s[i] = S(va_arg(ap, const char *));
	va_end(ap);
	return o;
}

static void
O_free(struct overloads *o)
{
	for (size_t i = 0; i < o->n; i++)
		tw_schema_free(o->s[i]);
}

/* Which overload binds (-1 for none); the args/kwargs are consumed. */
static int pick(struct overloads *o, tw_value args, tw_value kw)
{
	tw_value bound[16];
	size_t chosen = 99;
	tw_status st = MATCH((const tw_schema *const *)o->s, o->n, &args, &kw,
			     &chosen, bound);
	int r = -1;

	if (st == TW_OK) {
		r = (int)chosen;
		tw_schema_bound_release(bound, tw_schema_nargs(o->s[chosen]));
	} else {
		cr_assert_eq(st, TW_ETYPE);
	}
	tw_value_destroy(&args);
	tw_value_destroy(&kw);
	return r;
}

Test(match, add_tensor_or_scalar)
{
	struct overloads o = O(2, ADD_TENSOR, ADD_SCALAR);

	cr_assert_eq(pick(&o, TUP(2, T(), T()), K(0)), 0);
	cr_assert_eq(pick(&o, TUP(2, T(), I(2)), K(0)), 1);
	cr_assert_eq(pick(&o, TUP(2, T(), D(2.5)), K(1, "alpha", I(2))), 1);
	cr_assert_eq(pick(&o, TUP(2, T(), T()), K(1, "alpha", D(0.5))), 0);
	cr_assert_eq(pick(&o, TUP(3, T(), I(1), I(2)), K(0)), 1,
		     "alpha positional only in add.Scalar");
	cr_assert_eq(pick(&o, TUP(2, T(), Str("x")), K(0)), -1);
	O_free(&o);
}

Test(match, first_that_binds_wins)
{
	/* Both bind an int: registration order decides, as in torch. */
	struct overloads o = O(2, "f.a(Scalar x) -> ()", "f.b(int x) -> ()");
	cr_assert_eq(pick(&o, TUP(1, I(1)), K(0)), 0);
	O_free(&o);
	o = O(2, "f.b(int x) -> ()", "f.a(Scalar x) -> ()");
	cr_assert_eq(pick(&o, TUP(1, I(1)), K(0)), 0);
	cr_assert_eq(pick(&o, TUP(1, D(1.0)), K(0)), 1);
	O_free(&o);
	/* A float overload registered first takes an int too. */
	o = O(2, "g.f(float x) -> ()", "g.i(int x) -> ()");
	cr_assert_eq(pick(&o, TUP(1, I(1)), K(0)), 0);
	O_free(&o);
}

Test(match, max_and_sum_overloads)
{
	struct overloads o = O(
		3, "aten::max(Tensor self) -> Tensor",
		"aten::max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)",
		"aten::max.other(Tensor self, Tensor other) -> Tensor");

	cr_assert_eq(pick(&o, TUP(1, T()), K(0)), 0);
	cr_assert_eq(pick(&o, TUP(2, T(), I(1)), K(0)), 1);
	cr_assert_eq(pick(&o, TUP(1, T()), K(1, "dim", I(0))), 1);
	cr_assert_eq(pick(&o, TUP(2, T(), T()), K(0)), 2);
	cr_assert_eq(pick(&o, TUP(2, T(), B(true)), K(0)), -1,
		     "bool is not an int dim");
	O_free(&o);

	o = O(2, "aten::sum(Tensor self, *, ScalarType? dtype=None) -> Tensor",
	      "aten::sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor");
	cr_assert_eq(pick(&o, TUP(1, T()), K(0)), 0);
	cr_assert_eq(pick(&o, TUP(1, T()), K(1, "dtype", I(6))), 0);
	cr_assert_eq(pick(&o, TUP(2, T(), I(0)), K(0)), 1);
	cr_assert_eq(pick(&o, TUP(2, T(), L(2, I(0), I(1))),
			  K(1, "keepdim", B(true))),
		     1);
	O_free(&o);
}

Test(match, no_match_lists_the_schemas_tried)
{
	struct overloads o = O(2, ADD_TENSOR, ADD_SCALAR);
	const char *want =
		"Failed to match operator name aten::add and arguments "
		"(args: (Tensor, str), kwargs: {}) to a builtin operator\n"
		"Schemas tried:\n"
		"  " ADD_TENSOR "\n"
		"    aten::add() Expected a value of type 'Tensor' for argument 'other' but instead found type 'str'.\n"
		"  " ADD_SCALAR "\n"
		"    aten::add() Expected a value of type 'number' for argument 'other' but instead found type 'str'.";

	cr_assert_eq(pick(&o, TUP(2, T(), Str("x")), K(0)), -1);
	cr_assert_str_eq(err, want);

	/* Every kind of reason, and keyword types as a dict. */
	cr_assert_eq(pick(&o, TUP(1, T()), K(1, "beta", I(1))), -1);
	cr_assert(strstr(err, "(args: (Tensor,), kwargs: {'beta': int})") !=
			  NULL,
		  "%s", err);
	cr_assert(
		strstr(err,
		       "aten::add() is missing value for argument 'other'.") !=
			NULL,
		"%s", err);
	cr_assert_null(strstr(err, "Declaration:"),
		       "the list shows each schema once");
	cr_assert_eq(pick(&o, TUP(4, T(), T(), I(1), I(2)), K(0)), -1);
	cr_assert(strstr(err,
			 "(args: (Tensor, Tensor, int, int), kwargs: {})") !=
			  NULL,
		  "%s", err);
	cr_assert(
		strstr(err,
		       "aten::add() expected at most 3 argument(s) but received 4 argument(s).") !=
		NULL);
	cr_assert_eq(pick(&o, TUP(0), K(2, "self", T(), "other", L(1, D(1.5)))),
		     -1);
	cr_assert(
		strstr(err,
		       "(args: (), kwargs: {'self': Tensor, 'other': List[float]})") !=
			NULL,
		"%s", err);
	O_free(&o);
}

Test(match, args_and_errors)
{
	struct overloads o = O(1, "f() -> ()");
	tw_value bound[1];
	size_t chosen = 7;
	tw_value bad = I(1);

	cr_assert_eq(MATCH((const tw_schema *const *)o.s, 1, NULL, NULL,
			   &chosen, NULL),
		     TW_OK);
	cr_assert_eq(chosen, 0);
	cr_assert_eq(MATCH((const tw_schema *const *)o.s, 0, NULL, NULL,
			   &chosen, bound),
		     TW_EINVAL);
	cr_assert_eq(MATCH((const tw_schema *const *)o.s, 1, &bad, NULL,
			   &chosen, bound),
		     TW_EINVAL);
	cr_assert_str_eq(err, "positional arguments must be a tuple or a list, "
			      "got int");
	tw_value args = TUP(1, I(1));
	cr_assert_eq(MATCH((const tw_schema *const *)o.s, 1, &args, NULL,
			   &chosen, bound),
		     TW_ETYPE);
	cr_assert(strstr(err, "f() expected at most 0 argument(s) but received "
			      "1 argument(s).") != NULL,
		  "%s", err);
	tw_value_destroy(&args);
	O_free(&o);
}

Test(messages, truncated_not_overflowed)
{
	tw_schema *s = S(ADD_TENSOR);
	tw_value args = TUP(1, T());
	tw_value bound[3];

	cr_assert_eq(tw_schema_bind(s, &args, NULL, bound), TW_ETYPE);
	cr_assert_str_eq(tw_errmsg(TW_ETYPE),
			 "aten::add() is missing value for argument 'other'. "
			 "Declaration: " ADD_TENSOR);
	tw_value_destroy(&args);
	/* A huge value in a message is cut at TW_ERRMSG_MAX, not overflowed
	 * (ASan watches the thread's buffer). */
	tw_value big;
	cr_assert_eq(tw_value_list(&big, 5000), TW_OK);
	for (uint32_t i = 0; i < 5000; i++)
		big.u.items[i] = tw_value_int(123456789);
	args = TUP(2, T(), big);
	cr_assert_eq(tw_schema_bind(s, &args, NULL, bound), TW_ETYPE);
	const char *m = tw_errmsg(TW_ETYPE);
	cr_assert_eq(strlen(m), TW_ERRMSG_MAX - 1);
	cr_assert(strncmp(m,
			  "aten::add() Expected a value of type 'Tensor' for "
			  "argument 'other' but instead found type "
			  "'List[int]'.",
			  90) == 0,
		  "%s", m);
	tw_value_destroy(&args);
	tw_schema_free(s);
}

/* A successful bind records nothing: the thread's last failure stays. */
Test(messages, success_leaves_the_last_reason)
{
	tw_schema *s = S(ADD_TENSOR);
	tw_value args = TUP(1, T());
	tw_value bound[3];

	cr_assert_eq(tw_schema_bind(s, &args, NULL, bound), TW_ETYPE);
	tw_value_destroy(&args);
	args = TUP(2, T(), T());
	cr_assert_eq(tw_schema_bind(s, &args, NULL, bound), TW_OK);
	tw_schema_bound_release(bound, 3);
	cr_assert(strstr(tw_errmsg(TW_ETYPE), "missing value") != NULL);
	/* Asked for another kind, it is that kind's description. */
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), tw_strerror(TW_EINVAL));
	tw_value_destroy(&args);
	tw_schema_free(s);
}

Test(messages, value_type_repr)
{
	char buf[128];
	tw_value v = L(2, L(1, I(1)), L(0));

	tw_value_type_repr(&v, buf, sizeof(buf));
	cr_assert_str_eq(buf, "List[List[int]]");
	tw_value_destroy(&v);
	v = TUP(0);
	tw_value_type_repr(&v, buf, sizeof(buf));
	cr_assert_str_eq(buf, "Tuple[()]");
	tw_value_destroy(&v);
	v = TUP(3, T(), N(), D(1));
	cr_assert_eq(tw_value_type_repr(&v, buf, sizeof(buf)),
		     strlen("Tuple[Tensor, NoneType, float]"));
	cr_assert_str_eq(buf, "Tuple[Tensor, NoneType, float]");
	tw_value_destroy(&v);
	v = K(1, "a", B(true));
	tw_value_type_repr(&v, buf, sizeof(buf));
	cr_assert_str_eq(buf, "Dict[str, bool]");
	tw_value_destroy(&v);
	v = L(0);
	tw_value_type_repr(&v, buf, sizeof(buf));
	cr_assert_str_eq(buf, "List[Any]");
	tw_value_destroy(&v);
	/* Deep nesting is cut. */
	v = I(1);
	for (int i = 0; i < 20; i++)
		v = L(1, v);
	tw_value_type_repr(&v, buf, sizeof(buf));
	cr_assert(strstr(buf, "...") != NULL, "%s", buf);
	tw_value_destroy(&v);
}
