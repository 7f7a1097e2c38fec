/* Unit tests for the schema language: a corpus of valid schemas (every
 * builtin verbatim from native_functions.yaml) that round-trip through the
 * canonical text, a corpus of invalid ones with position and message, and
 * the accessors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <tensorwire/schema.h>

/* The builtins tensorwire implements, exactly as torch's
 * aten/src/ATen/native/native_functions.yaml writes them (its "func:"
 * lines), plus overloads they are matched against. */
static const char *const builtins[] = {
	"add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
	"add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
	"sub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
	"sub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
	"mul.Tensor(Tensor self, Tensor other) -> Tensor",
	"mul.Scalar(Tensor self, Scalar other) -> Tensor",
	"div.Tensor(Tensor self, Tensor other) -> Tensor",
	"div.Scalar(Tensor self, Scalar other) -> Tensor",
	"div.Tensor_mode(Tensor self, Tensor other, *, str? rounding_mode) -> Tensor",
	"neg(Tensor self) -> Tensor",
	"abs(Tensor self) -> Tensor",
	"relu(Tensor self) -> Tensor",
	"sigmoid(Tensor self) -> Tensor",
	"tanh(Tensor self) -> Tensor",
	"exp(Tensor self) -> Tensor",
	"log(Tensor self) -> Tensor",
	"sqrt(Tensor self) -> Tensor",
	"pow.Tensor_Tensor(Tensor self, Tensor exponent) -> Tensor",
	"pow.Tensor_Scalar(Tensor self, Scalar exponent) -> Tensor",
	"sum(Tensor self, *, ScalarType? dtype=None) -> Tensor",
	"sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
	"mean(Tensor self, *, ScalarType? dtype=None) -> Tensor",
	"mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
	"max(Tensor self) -> Tensor",
	"max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)",
	"max.other(Tensor self, Tensor other) -> Tensor",
	"min(Tensor self) -> Tensor",
	"min.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)",
	"min.other(Tensor self, Tensor other) -> Tensor",
	"argmax(Tensor self, int? dim=None, bool keepdim=False) -> Tensor",
	"matmul(Tensor self, Tensor other) -> Tensor",
	"mm(Tensor self, Tensor mat2) -> Tensor",
	"t(Tensor(a) self) -> Tensor(a)",
	"transpose.int(Tensor(a) self, int dim0, int dim1) -> Tensor(a)",
	"reshape(Tensor(a) self, SymInt[] shape) -> Tensor(a)",
	"view(Tensor(a) self, SymInt[] size) -> Tensor(a)",
	"cat(Tensor[] tensors, int dim=0) -> Tensor",
	"stack(Tensor[] tensors, int dim=0) -> Tensor",
	"clone(Tensor self, *, MemoryFormat? memory_format=None) -> Tensor",
	"ones(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
	"zeros(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
	"full(SymInt[] size, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
	"arange.start_step(Scalar start, Scalar end, Scalar step=1, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
	"rand(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
	"randn(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Other schemas in their canonical form (the text prints back the same):
 * real aten schemas with alias annotations, out variants, fixed-size
 * lists, returns of every shape, and everything else the language has. */
static const char *const canonical[] = {
	/* from native_functions.yaml */
	"add_.Tensor(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)",
	"add.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)",
	"abs.out(Tensor self, *, Tensor(a!) out) -> Tensor(a!)",
	"_backward(Tensor self, Tensor[] inputs, Tensor? gradient=None, bool? retain_graph=None, bool create_graph=False) -> ()",
	"split.Tensor(Tensor(a -> *) self, SymInt split_size, int dim=0) -> Tensor(a)[]",
	"unbind.int(Tensor(a -> *) self, int dim=0) -> Tensor(a)[]",
	"conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=1, SymInt[2] padding=0, SymInt[2] dilation=1, SymInt groups=1) -> Tensor",
	"max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> Tensor",
	"layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, bool cudnn_enable=True) -> Tensor",
	"index.Tensor(Tensor self, Tensor?[] indices) -> Tensor",
	"sum.dim_DimnameList(Tensor self, Dimname[1] dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
	"std.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) -> Tensor",
	"max.dim_max(Tensor self, int dim, bool keepdim=False, *, Tensor(a!) max, Tensor(b!) max_values) -> (Tensor(a!) values, Tensor(b!) indices)",
	"rand.generator(SymInt[] size, *, Generator? generator, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
	"nan_to_num(Tensor self, float? nan=None, float? posinf=None, float? neginf=None) -> Tensor",
	"topk(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True) -> (Tensor values, Tensor indices)",
	"_foreach_add.List(Tensor[] self, Tensor[] other, *, Scalar alpha=1) -> Tensor[]",
	"embedding_bag(Tensor weight, Tensor indices, Tensor offsets, bool scale_grad_by_freq=False, int mode=0, bool sparse=False, Tensor? per_sample_weights=None, bool include_last_offset=False) -> (Tensor, Tensor, Tensor, Tensor)",
	"as_strided(Tensor(a) self, SymInt[] size, SymInt[] stride, SymInt? storage_offset=None) -> Tensor(a)",
	"native_batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor)",
	/* the rest of the language */
	"aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
	"demo::echo(Any x) -> Any",
	"demo::noargs() -> ()",
	"demo::pair(int a, float b) -> (int, float)",
	"demo::tuple_ret(int a) -> ((int, float))",
	"demo::tuple_list_ret(int a) -> ((str, Tensor)[])",
	"demo::named(int a) -> int result",
	"demo::nested(int[][] grid, (int, (str, bool)) t, Tensor?[]? maybe) -> int[][]",
	"demo::dict(Dict(str, Tensor) d, Dict(str, int[])? opt=None) -> Dict(str, float)",
	"demo::rref(RRef r, RRef(Tensor) t, RRef(int)[] many) -> RRef(Any)",
	"demo::none(None a, NoneType b) -> None",
	"demo::sym(SymInt a, SymFloat b, SymBool c, SymInt[] d) -> SymInt",
	"demo::alias(Tensor(a|b) x, Tensor(*) y, Tensor(a! -> a|b) z, Tensor[](c) w, Tensor(d)[](e) v) -> Tensor(a)",
	"demo::ints(int a=0, int b=-1, int c=9223372036854775807, int d=-9223372036854775808) -> ()",
	"demo::floats(float a=0.0, float b=-2.5, float c=1e-05, float d=1e+16, float e=-inf, float f=inf, float g=nan, float h=0.1) -> ()",
	"demo::scalars(Scalar a=1, Scalar b=1.0, Scalar c=True, Scalar? d=None) -> ()",
	"demo::strings(str a=\"\", str b=\"it's\", str c=\"tab\\there\\n\", str d=\"q\\\"uote\\\\\", str e=\"\xc3\xa9t\xc3\xa9\") -> ()",
	"demo::lists(int[] a=[], int[] b=[0, 1], float[] c=[1.0, 2.5], bool[3] d=[True, False, True], str[] e=[\"x\", \"y\"], int?[] f=[1, None]) -> ()",
	"demo::bcast(int[2] a=1, float[3] b=0.5, int[1]? c=0, bool[2] d=True) -> ()",
	"demo::device(Device d=\"cpu\", Device? e=None, Any f=None, Any g=1.5) -> ()",
};

/* Schemas whose canonical text differs from how they are written: the
 * text, then the canonical text. */
static const char *const normalised[][2] = {
	{"  aten::neg ( Tensor self )->Tensor  ",
	 "aten::neg(Tensor self) -> Tensor"},
	{"f(\n\tint a,\n\t*,\n\tint b\n) ->\n(int x,int y)",
	 "f(int a, *, int b) -> (int x, int y)"},
	{"f(float p=2, float q=1.) -> ()", "f(float p=2.0, float q=1.0) -> ()"},
	{"f(float base=10.0, float x=1e-4, float y=0.0001, float z=12345678901234567890.0) -> ()",
	 "f(float base=10.0, float x=0.0001, float y=0.0001, float z=1.2345678901234567e+19) -> ()"},
	{"f(str a='linear', str b='\"\\'\\\\') -> ()",
	 "f(str a=\"linear\", str b=\"\\\"'\\\\\") -> ()"},
	{"f(int[] dim=[-2,-1]) -> ()", "f(int[] dim=[-2, -1]) -> ()"},
	{"f(int reduction=Mean, int r2=Sum, Layout l=strided, MemoryFormat m=contiguous_format) -> ()",
	 "f(int reduction=1, int r2=2, Layout l=0, MemoryFormat m=0) -> ()"},
	{"f(RRef[Tensor] r, RRef [ int ] s) -> RRef[]",
	 "f(RRef(Tensor) r, RRef(int) s) -> RRef[]"},
	{"f(Tensor( a ! -> * | b ) x) -> (Tensor)",
	 "f(Tensor(a! -> *|b) x) -> Tensor"},
	{"f(int [ 2 ] ? a = 3) -> ( )", "f(int[2]? a=3) -> ()"},
	{"f(float a=-0.0, float b=-0) -> ()",
	 "f(float a=-0.0, float b=0.0) -> ()"},
	{"f(float a=1e400, float b=-nan) -> ()",
	 "f(float a=inf, float b=nan) -> ()"},
};

static tw_schema *parse_ok(const char *text)
{
	tw_schema *s = NULL;
	tw_status st = tw_schema_parse(text, &s);

	cr_assert_eq(st, TW_OK, "parse failed for %s: %s", text, tw_errmsg(st));
	cr_assert_not_null(s);
	return s;
}

static char *format_alloc(const tw_schema *s)
{
	size_t n = tw_schema_format(s, NULL, 0);
	char *t = malloc(n + 1);

	cr_assert_not_null(t);
	cr_assert_eq(tw_schema_format(s, t, n + 1), n);
	cr_assert_eq(strlen(t), n);
	return t;
}

/* parse(text) prints as want (NULL: whatever it prints), parse(print) is
 * equal and prints the same again. */
static void round_trip(const char *text, const char *want)
{
	tw_schema *s = parse_ok(text);
	char *t = format_alloc(s);

	if (want != NULL)
		cr_assert_str_eq(t, want, "canonical text of %s", text);
	tw_schema *again = parse_ok(t);
	cr_assert(tw_schema_equal(s, again), "round trip changed %s", text);
	cr_assert(tw_schema_equal(again, s));
	char *t2 = format_alloc(again);
	cr_assert_str_eq(t2, t);
	free(t2);
	free(t);
	tw_schema_free(again);
	tw_schema_free(s);
}

Test(corpus, builtins_verbatim)
{
	char qualified[512];

	for (size_t i = 0; i < COUNT(builtins); i++) {
		round_trip(builtins[i], builtins[i]);
		snprintf(qualified, sizeof(qualified), "aten::%s", builtins[i]);
		round_trip(qualified, qualified);
	}
}

Test(corpus, canonical)
{
	for (size_t i = 0; i < COUNT(canonical); i++)
		round_trip(canonical[i], canonical[i]);
}

Test(corpus, normalised)
{
	for (size_t i = 0; i < COUNT(normalised); i++)
		round_trip(normalised[i][0], normalised[i][1]);
}

Test(corpus, size)
{
	/* The issue asks for at least 40 valid schemas. */
	cr_assert_geq(COUNT(builtins) + COUNT(canonical) + COUNT(normalised),
		      40);
}

/* ---- invalid schemas --------------------------------------------------- */

struct bad {
	const char *text;
	size_t pos;
	const char *msg;
};

static const struct bad bad_corpus[] = {
	{"", 0, "expected a schema name"},
	{"   ", 3, "expected a schema name"},
	{"9f(int a) -> ()", 0, "expected a schema name"},
	{"aten::(Tensor self) -> Tensor", 6, "expected a name after '::'"},
	{"aten:add(Tensor self) -> Tensor", 4, "expected '::' after namespace"},
	{"aten::add.(Tensor self) -> Tensor", 10,
	 "expected an overload name after '.'"},
	{"aten::add", 9, "expected '(' after schema name 'aten::add'"},
	{"aten::add(Tensor self -> Tensor", 22,
	 "expected ')' or ',' after argument 'self'"},
	{"aten::add(Tensor self, Tensor other", 35,
	 "expected ')' or ',' after argument 'other'"},
	{"aten::add(Tensor self, Tensor other) Tensor", 37,
	 "expected '->' after the arguments"},
	{"aten::add(Tensor self) ->", 25, "expected a return type after '->'"},
	{"aten::add(Tensor self) -> Tensor extra junk", 39,
	 "unexpected text after the schema"},
	{"aten::add(Tensr self) -> Tensor", 10, "unknown type 'Tensr'"},
	{"aten::add(Tensor) -> Tensor", 16,
	 "expected an argument name after its type"},
	{"aten::add(Tensor self, Tensor self) -> Tensor", 30,
	 "duplicate argument name 'self'"},
	{"f(*, *, Tensor a) -> ()", 5, "'*' given twice"},
	{"f(Tensor a, *) -> ()", 13, "expected ',' and an argument after '*'"},
	{"f(Tensor a,) -> ()", 11, "expected an argument after ','"},
	{"f(int a=1.5) -> ()", 8,
	 "default value of argument 'a' does not fit type 'int'"},
	{"f(int a=True) -> ()", 8,
	 "default value of argument 'a' does not fit type 'int'"},
	{"f(Tensor a=None) -> ()", 11, "does not fit type 'Tensor'"},
	{"f(int[] a=1) -> ()", 10, "does not fit type 'int[]'"},
	{"f(int[2] a=[1, 2.5]) -> ()", 15, "does not fit type 'int[2]'"},
	{"f(int a=[1]) -> ()", 8, "does not fit type 'int'"},
	{"f(bool a=1) -> ()", 9, "does not fit type 'bool'"},
	{"f(str a=1) -> ()", 8, "does not fit type 'str'"},
	{"f(int[0] a) -> ()", 6, "list size must be 1 .. 1024"},
	{"f(int[2000] a) -> ()", 6, "list size must be 1 .. 1024"},
	{"f(int[x] a) -> ()", 6, "expected ']' or a list size"},
	{"f(int?? a) -> ()", 6, "type is already optional"},
	{"f(Tensor(a a) -> ()", 11,
	 "expected ')' to close the alias annotation"},
	{"f(Tensor() a) -> ()", 9, "expected an alias set name or '*'"},
	{"f(Dict(int, Tensor) d) -> ()", 7, "Dict keys must be str"},
	{"f(Dict(str Tensor) d) -> ()", 11,
	 "expected ',' after the Dict key type"},
	{"f(Dict d) -> ()", 7, "expected '(' after Dict"},
	{"f(RRef(int x) -> ()", 11, "expected ')' to close RRef"},
	{"f(Future(int) x) -> ()", 2, "unknown type 'Future'"},
	{"f(str s=\"abc) -> ()", 8, "unterminated string"},
	{"f(str s=\"a\\qb\") -> ()", 10, "invalid escape in string"},
	{"f(str s='\x01') -> ()", 9, "control character in string"},
	{"f(str s='\xff') -> ()", 8, "string is not valid UTF-8"},
	{"f(int a=99999999999999999999) -> ()", 8, "integer out of range"},
	{"f(float a=1e) -> ()", 12, "expected digits in the exponent"},
	{"f(int a=12abc) -> ()", 8, "invalid number"},
	{"f(int a=Bogus) -> ()", 8, "unsupported default value 'Bogus'"},
	{"f(Tensor a=-) -> ()", 11, "expected a default value"},
	{"f(int[1]? a=[[1]]) -> ()", 13,
	 "nested list defaults are not supported"},
	{"f(int[] a=[1 2]) -> ()", 13, "expected ']' or ',' in list default"},
	{"f(Tensor a, ...) -> ()", 12, "varargs '...' are not supported"},
	{"f(Tensor a) -> ...", 15, "varargs '...' are not supported"},
	{"f(Tensor a) -> (Tensor, Tensor", 30,
	 "expected ')' or ',' after return type"},
	{"f((int, float a) -> ()", 14, "expected ')' or ',' in tuple type"},
	{"f(, int a) -> ()", 2, "expected a type"},
	{"f(int a) -> (,)", 13, "expected a type"},
	/* failures after defaults were made: they are freed (ASan) */
	{"f(str a='x', int[] b=[1, 2], int c=1.5) -> ()", 35,
	 "default value of argument 'c'"},
	{"f(str a='x') -> (Tensor, ", 25, "expected a type"},
};

/* The byte offset a parse error's message ends with (" at <pos>"). */
static size_t msg_pos(const char *msg)
{
	const char *at = strrchr(msg, ' ');
	cr_assert(at != NULL && at - msg >= 3 &&
			  strncmp(at - 3, " at ", 4) == 0,
		  "message '%s' does not end with a position", msg);
	return (size_t)strtoull(at + 1, NULL, 10);
}

static void expect_bad(const char *text, size_t len, size_t pos,
		       const char *msg)
{
	tw_schema *s = (tw_schema *)0x1;
	char at[32];
	tw_status st = tw_schema_parse_len(text, len, &s);

	cr_assert_eq(st, TW_EINVAL, "accepted: %s", text);
	cr_assert_null(s);
	const char *m = tw_errmsg(st);
	cr_assert(strstr(m, msg) != NULL, "%s: message '%s' lacks '%s'", text,
		  m, msg);
	cr_assert_eq(msg_pos(m), pos, "%s: position %zu, want %zu (%s)", text,
		     msg_pos(m), pos, m);
	snprintf(at, sizeof(at), " at %zu", pos);
	size_t ml = strlen(m), al = strlen(at);
	cr_assert(ml >= al && strcmp(m + ml - al, at) == 0,
		  "message '%s' does not end with '%s'", m, at);
}

Test(invalid, corpus)
{
	cr_assert_geq(COUNT(bad_corpus), 30);
	for (size_t i = 0; i < COUNT(bad_corpus); i++)
		expect_bad(bad_corpus[i].text, strlen(bad_corpus[i].text),
			   bad_corpus[i].pos, bad_corpus[i].msg);
}

Test(invalid, nesting_is_bounded)
{
	char text[256];

	/* Tuples: the 17th level fails, at its '('. */
	snprintf(text, sizeof(text), "f(%.20s int%.20s a) -> ()",
		 "((((((((((((((((((((", "))))))))))))))))))))");
	expect_bad(text, strlen(text), 2 + 16, "types nested deeper than 16");
	/* Suffixes count too: int plus 15 list levels is the limit. */
	snprintf(text, sizeof(text), "f(int%.30s a) -> ()",
		 "[][][][][][][][][][][][][][][]");
	tw_schema *s = parse_ok(text);
	tw_schema_free(s);
	snprintf(text, sizeof(text), "f(int%.32s a) -> ()",
		 "[][][][][][][][][][][][][][][][]");
	expect_bad(text, strlen(text), 5 + 15 * 2,
		   "types nested deeper than 16");
	/* A long run of open parentheses is refused at the limit, not by
	 * running out of stack. */
	size_t n = 100000;
	char *deep = malloc(n + 16);
	cr_assert_not_null(deep);
	memcpy(deep, "f(", 2);
	memset(deep + 2, '(', n);
	expect_bad(deep, n + 2, 2 + 16, "types nested deeper than 16");
	free(deep);
}

Test(invalid, argument_count_is_bounded)
{
	char text[2048];
	size_t n = 0;

	n += (size_t)snprintf(text + n, sizeof(text) - n, "f(");
	for (int i = 0; i < TW_SCHEMA_MAX_ARGS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "int a%d, ",
				      i);
	size_t pos = n;
	snprintf(text + n, sizeof(text) - n, "int last) -> ()");
	expect_bad(text, strlen(text), pos, "more than 64 arguments");
	/* 64 is fine. */
	snprintf(text + pos - 2, sizeof(text) - pos + 2, ") -> ()");
	tw_schema *s = parse_ok(text);
	cr_assert_eq(tw_schema_nargs(s), 64);
	tw_schema_free(s);
}

Test(invalid, never_reads_past_len)
{
	/* A NUL inside the bytes is just a bad character. */
	static const char with_nul[] = "f(int a)\0 -> ()";
	expect_bad(with_nul, sizeof(with_nul) - 1, 8,
		   "expected '->' after the arguments");
	/* A buffer cut anywhere: every prefix of a valid schema is refused
	 * cleanly (ASan checks that nothing past len is read). */
	const char *full =
		"aten::sum.dim_IntList(Tensor(a!) self, int[1]? dim=[0, 1], "
		"bool keepdim=False, *, str s='x', float f=-1e-05) -> (Tensor(a) x, Tensor[] y)";
	size_t len = strlen(full);
	for (size_t cut = 0; cut < len; cut++) {
		char *copy = malloc(cut ? cut : 1);
		cr_assert_not_null(copy);
		memcpy(copy, full, cut);
		tw_schema *s = NULL;
		tw_status st = tw_schema_parse_len(copy, cut, &s);
		if (st == TW_OK) {
			/* Only cuts that end after a complete return parse. */
			cr_assert(cut > len - 3, "prefix %zu parsed", cut);
			tw_schema_free(s);
		} else {
			cr_assert_eq(st, TW_EINVAL);
			cr_assert_leq(msg_pos(tw_errmsg(st)), cut);
		}
		free(copy);
	}
	tw_schema *s = NULL;
	cr_assert_eq(tw_schema_parse_len(full, len, &s), TW_OK);
	tw_schema_free(s);
}

Test(invalid, null_arguments)
{
	tw_schema *s = (tw_schema *)0x1;

	cr_assert_eq(tw_schema_parse(NULL, &s), TW_EINVAL);
	cr_assert_null(s);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "no schema text at 0");
	cr_assert_eq(tw_schema_parse("f() -> ()", NULL), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "tw_schema_parse: out is NULL");
	s = (tw_schema *)0x1;
	cr_assert_eq(tw_schema_parse("f(", &s), TW_EINVAL);
	cr_assert_null(s);
	tw_schema_free(NULL);
}

Test(invalid, long_names_keep_the_position)
{
	char text[600];
	char name[300];

	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(text, sizeof(text), "f(int %s", name);
	expect_bad(text, strlen(text), strlen(text),
		   "expected ')' or ',' after argument 'xxxx");
}

/* ---- reading a schema -------------------------------------------------- */

static void expect_type(const tw_type *t, const char *spelled, const char *repr)
{
	char buf[128];

	cr_assert_not_null(t);
	cr_assert_eq(tw_type_format(t, buf, sizeof(buf)), strlen(spelled));
	cr_assert_str_eq(buf, spelled);
	cr_assert_eq(tw_type_repr(t, buf, sizeof(buf)), strlen(repr));
	cr_assert_str_eq(buf, repr);
}

Test(read, add_tensor)
{
	tw_schema *s = parse_ok(
		"aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor");

	cr_assert_str_eq(tw_schema_name(s), "aten::add");
	cr_assert_str_eq(tw_schema_overload(s), "Tensor");
	cr_assert_eq(tw_schema_nargs(s), 3);
	cr_assert_eq(tw_schema_nreturns(s), 1);
	cr_assert_str_eq(tw_schema_arg_name(s, 0), "self");
	cr_assert_str_eq(tw_schema_arg_name(s, 2), "alpha");
	cr_assert_not(tw_schema_arg_kwarg_only(s, 1));
	cr_assert(tw_schema_arg_kwarg_only(s, 2));
	cr_assert_null(tw_schema_arg_default(s, 0));
	const tw_value *d = tw_schema_arg_default(s, 2);
	cr_assert_not_null(d);
	cr_assert_eq(d->kind, TW_KIND_INT);
	cr_assert_eq(d->u.i, 1);
	cr_assert_eq(tw_type_kind_of(tw_schema_arg_type(s, 0)), TW_TYPE_TENSOR);
	cr_assert_eq(tw_type_kind_of(tw_schema_arg_type(s, 2)), TW_TYPE_SCALAR);
	expect_type(tw_schema_arg_type(s, 2), "Scalar", "number");
	expect_type(tw_schema_return_type(s, 0), "Tensor", "Tensor");
	cr_assert_str_eq(tw_schema_return_name(s, 0), "");
	/* Out of range. */
	cr_assert_null(tw_schema_arg_name(s, 3));
	cr_assert_null(tw_schema_arg_type(s, 3));
	cr_assert_null(tw_schema_arg_default(s, 3));
	cr_assert_null(tw_schema_return_type(s, 1));
	tw_schema_free(s);
}

Test(read, names_without_namespace_or_overload)
{
	tw_schema *s = parse_ok("relu(Tensor self) -> Tensor");
	cr_assert_str_eq(tw_schema_name(s), "relu");
	cr_assert_str_eq(tw_schema_overload(s), "");
	tw_schema_free(s);
	s = parse_ok("my_ns::fn_2() -> ()");
	cr_assert_str_eq(tw_schema_name(s), "my_ns::fn_2");
	cr_assert_eq(tw_schema_nargs(s), 0);
	cr_assert_eq(tw_schema_nreturns(s), 0);
	tw_schema_free(s);
}

Test(read, types)
{
	tw_schema *s = parse_ok(
		"f(SymInt[] a, int[1]? b, Tensor(a!)[] c, Tensor?[] d, (int, str) e, "
		"Dict(str, float[]) g, RRef r, RRef(Tensor) q, ScalarType? h, "
		"Layout l, Device v, Generator? gen, Dimname n, Any x, NoneType z, "
		"bool[3] m, float[2] fl) -> (Tensor(a) values, Tensor indices)");

	expect_type(tw_schema_arg_type(s, 0), "SymInt[]", "List[int]");
	expect_type(tw_schema_arg_type(s, 1), "int[1]?", "Optional[List[int]]");
	expect_type(tw_schema_arg_type(s, 2), "Tensor(a!)[]", "List[Tensor]");
	expect_type(tw_schema_arg_type(s, 3), "Tensor?[]",
		    "List[Optional[Tensor]]");
	expect_type(tw_schema_arg_type(s, 4), "(int, str)", "Tuple[int, str]");
	expect_type(tw_schema_arg_type(s, 5), "Dict(str, float[])",
		    "Dict[str, List[float]]");
	expect_type(tw_schema_arg_type(s, 6), "RRef", "RRef[Any]");
	expect_type(tw_schema_arg_type(s, 7), "RRef(Tensor)", "RRef[Tensor]");
	expect_type(tw_schema_arg_type(s, 8), "ScalarType?", "Optional[int]");
	expect_type(tw_schema_arg_type(s, 9), "Layout", "int");
	expect_type(tw_schema_arg_type(s, 10), "Device", "Device");
	expect_type(tw_schema_arg_type(s, 11), "Generator?",
		    "Optional[Generator]");
	expect_type(tw_schema_arg_type(s, 12), "Dimname", "str");
	expect_type(tw_schema_arg_type(s, 13), "Any", "Any");
	expect_type(tw_schema_arg_type(s, 14), "NoneType", "NoneType");
	expect_type(tw_schema_arg_type(s, 15), "bool[3]", "List[bool]");

	const tw_type *t = tw_schema_arg_type(s, 1);
	cr_assert_eq(tw_type_kind_of(t), TW_TYPE_OPTIONAL);
	cr_assert_eq(tw_type_nelems(t), 1);
	const tw_type *l = tw_type_elem(t, 0);
	cr_assert_eq(tw_type_kind_of(l), TW_TYPE_LIST);
	cr_assert_eq(tw_type_fixed_len(l), 1);
	cr_assert_eq(tw_type_kind_of(tw_type_elem(l, 0)), TW_TYPE_INT);
	cr_assert_null(tw_type_elem(l, 1));

	t = tw_schema_arg_type(s, 2);
	cr_assert_null(tw_type_alias(t));
	cr_assert_str_eq(tw_type_alias(tw_type_elem(t, 0)), "a!");
	cr_assert_eq(tw_type_fixed_len(t), 0);

	t = tw_schema_arg_type(s, 4);
	cr_assert_eq(tw_type_kind_of(t), TW_TYPE_TUPLE);
	cr_assert_eq(tw_type_nelems(t), 2);
	cr_assert_eq(tw_type_kind_of(tw_type_elem(t, 1)), TW_TYPE_STR);

	t = tw_schema_arg_type(s, 5);
	cr_assert_eq(tw_type_kind_of(t), TW_TYPE_DICT);
	cr_assert_eq(tw_type_nelems(t), 2);
	cr_assert_eq(tw_type_kind_of(tw_type_elem(t, 1)), TW_TYPE_LIST);

	t = tw_schema_arg_type(s, 6); /* bare RRef: of Any */
	cr_assert_eq(tw_type_kind_of(t), TW_TYPE_RREF);
	cr_assert_eq(tw_type_nelems(t), 1);
	cr_assert_eq(tw_type_kind_of(tw_type_elem(t, 0)), TW_TYPE_ANY);
	cr_assert_eq(tw_type_kind_of(tw_schema_arg_type(s, 10)),
		     TW_TYPE_DEVICE);
	cr_assert_eq(
		tw_type_kind_of(tw_type_elem(tw_schema_arg_type(s, 11), 0)),
		TW_TYPE_GENERATOR);

	cr_assert_eq(tw_schema_nreturns(s), 2);
	cr_assert_str_eq(tw_schema_return_name(s, 0), "values");
	cr_assert_str_eq(tw_type_alias(tw_schema_return_type(s, 0)), "a");
	cr_assert_str_eq(tw_schema_return_name(s, 1), "indices");
	tw_schema_free(s);
}

Test(read, defaults)
{
	tw_schema *s = parse_ok(
		"f(float a=1, float b=1e-05, int[2] c=3, int[] d=[0, 1], str e='x', "
		"float f=-inf, Scalar g=2.5, int? h=None, bool i=True, float[] j=[1, 2]) -> ()");
	const tw_value *d;

	d = tw_schema_arg_default(s, 0);
	cr_assert_eq(d->kind, TW_KIND_DOUBLE, "float defaults are floats");
	cr_assert_eq(d->u.d, 1.0);
	d = tw_schema_arg_default(s, 1);
	cr_assert_eq(d->u.d, 1e-05);
	d = tw_schema_arg_default(s, 2);
	cr_assert_eq(d->kind, TW_KIND_LIST, "int[2] c=3 is [3, 3]");
	cr_assert_eq(d->len, 2);
	cr_assert_eq(d->u.items[0].u.i, 3);
	cr_assert_eq(d->u.items[1].u.i, 3);
	d = tw_schema_arg_default(s, 3);
	cr_assert_eq(d->len, 2);
	cr_assert_eq(d->u.items[1].u.i, 1);
	d = tw_schema_arg_default(s, 4);
	cr_assert_eq(d->kind, TW_KIND_STRING);
	cr_assert_str_eq(d->u.str, "x");
	d = tw_schema_arg_default(s, 5);
	cr_assert(isinf(d->u.d) && d->u.d < 0);
	d = tw_schema_arg_default(s, 6);
	cr_assert_eq(d->kind, TW_KIND_DOUBLE);
	d = tw_schema_arg_default(s, 7);
	cr_assert_eq(d->kind, TW_KIND_NONE);
	d = tw_schema_arg_default(s, 8);
	cr_assert_eq(d->kind, TW_KIND_BOOL);
	cr_assert(d->u.b);
	d = tw_schema_arg_default(s, 9);
	cr_assert_eq(d->u.items[0].kind, TW_KIND_DOUBLE);
	cr_assert_eq(d->u.items[1].u.d, 2.0);
	tw_schema_free(s);
}

Test(format, truncates_like_snprintf)
{
	const char *text = "aten::mm(Tensor self, Tensor mat2) -> Tensor";
	tw_schema *s = parse_ok(text);
	char small[10];

	memset(small, 'z', sizeof(small));
	size_t n = tw_schema_format(s, small, sizeof(small));
	cr_assert_eq(n, strlen(text));
	cr_assert_str_eq(small, "aten::mm(");
	cr_assert_eq(tw_schema_format(s, small, 0), strlen(text));
	cr_assert_eq(small[0], 'a', "size 0 writes nothing");
	cr_assert_eq(tw_schema_format(s, NULL, 0), strlen(text));
	cr_assert_eq(tw_schema_format(NULL, small, sizeof(small)), 0);
	cr_assert_str_eq(small, "");
	tw_schema_free(s);
}

Test(equal, differences_matter)
{
	static const char *const variants[] = {
		"f(int a) -> ()",           "g(int a) -> ()",
		"f.x(int a) -> ()",         "f(int b) -> ()",
		"f(SymInt a) -> ()",        "f(int a=1) -> ()",
		"f(int a=2) -> ()",         "f(*, int a) -> ()",
		"f(int a) -> int",          "f(int a) -> int x",
		"f(int[] a) -> ()",         "f(int[2] a) -> ()",
		"f(int? a) -> ()",          "f(Tensor a) -> ()",
		"f(Tensor(a) a) -> ()",     "f(Tensor(b) a) -> ()",
		"f(int[2] a=[1, 1]) -> ()", "f(int[2] a=1) -> ()",
		"f(Scalar a=1) -> ()",      "f(Scalar a=1.0) -> ()",
		"f(RRef a) -> ()",          "f(RRef(Any) a) -> ()",
	};
	tw_schema *s[COUNT(variants)];

	for (size_t i = 0; i < COUNT(variants); i++)
		s[i] = parse_ok(variants[i]);
	for (size_t i = 0; i < COUNT(variants); i++)
		for (size_t j = 0; j < COUNT(variants); j++)
			cr_assert_eq(tw_schema_equal(s[i], s[j]), i == j,
				     "%s vs %s", variants[i], variants[j]);
	for (size_t i = 0; i < COUNT(variants); i++)
		tw_schema_free(s[i]);
	cr_assert(tw_schema_equal(NULL, NULL));
}
