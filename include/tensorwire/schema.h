/* tensorwire schemas: torch-style function schemas, argument binding and
 * overload matching. */
#ifndef TENSORWIRE_SCHEMA_H
#define TENSORWIRE_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/status.h>
#include <tensorwire/value.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A schema is what torch writes in native_functions.yaml and TorchScript
 * prints for a function:
 *
 *   aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor
 *   ns::name.overload(type name[=default], ..., *, kwarg-only ...) -> returns
 *
 * The namespace ("aten::") and the overload (".Tensor") are optional.
 * Returns are one type with an optional name, or a parenthesised list of
 * them ("-> (Tensor values, Tensor indices)", "-> ()").
 *
 * Types (the word as written is kept for printing; the kind decides binding):
 *   Tensor                                  TW_TYPE_TENSOR
 *   int SymInt ScalarType Layout MemoryFormat   TW_TYPE_INT
 *   float SymFloat                          TW_TYPE_FLOAT
 *   bool SymBool                            TW_TYPE_BOOL
 *   str Dimname                             TW_TYPE_STR
 *   Scalar                                  TW_TYPE_SCALAR (int, float, bool)
 *   Any                                     TW_TYPE_ANY
 *   None NoneType                           TW_TYPE_NONE
 *   Device                                  TW_TYPE_DEVICE (a string)
 *   Generator                               TW_TYPE_GENERATOR (only None binds)
 *   RRef, RRef(T), RRef[T]                  TW_TYPE_RREF
 *   T[]  T[N]                               TW_TYPE_LIST (N: fixed size)
 *   T?                                      TW_TYPE_OPTIONAL
 *   (T1, T2, ...)                           TW_TYPE_TUPLE
 *   Dict(str, T)                            TW_TYPE_DICT (string keys only)
 * Alias annotations such as Tensor(a), Tensor(a!), Tensor(a -> *),
 * Tensor(a|b), Tensor(a!)[] are parsed, kept and printed, and mean nothing
 * to tensorwire.
 *
 * Defaults: integers, floats (1e-05, -inf, inf, nan), True, False, None
 * (optional types, Any and None only), strings in single or double quotes
 * (escapes \\ \' \" \n \t \r), lists of those ([0, 1], []), a bare number
 * for a fixed-size list (int[2] stride=1 means [1, 1], as in torch), and the
 * names torch uses for int enums: Mean (1), Sum (2), strided (0),
 * contiguous_format (0).
 *
 * Limits: TW_SCHEMA_MAX_ARGS arguments, TW_SCHEMA_MAX_ARGS returns, types
 * nested at most TW_SCHEMA_MAX_DEPTH deep, fixed list sizes 1 ..
 * TW_SCHEMA_MAX_FIXED. Varargs ("...") are not supported.
 *
 * A parsed schema is immutable: any number of threads may format, bind and
 * match with it at once.
 */

#define TW_SCHEMA_MAX_ARGS 64
#define TW_SCHEMA_MAX_DEPTH 16
#define TW_SCHEMA_MAX_FIXED 1024

typedef struct tw_schema tw_schema;
typedef struct tw_type tw_type;

typedef enum tw_type_kind {
	TW_TYPE_TENSOR = 0,
	TW_TYPE_INT = 1,
	TW_TYPE_FLOAT = 2,
	TW_TYPE_BOOL = 3,
	TW_TYPE_STR = 4,
	TW_TYPE_SCALAR = 5,
	TW_TYPE_ANY = 6,
	TW_TYPE_NONE = 7,
	TW_TYPE_DEVICE = 8,
	TW_TYPE_GENERATOR = 9,
	TW_TYPE_RREF = 10,     /* elem 0: the referenced type (Any when bare) */
	TW_TYPE_LIST = 11,     /* elem 0: element type */
	TW_TYPE_OPTIONAL = 12, /* elem 0: the type that is optional */
	TW_TYPE_TUPLE = 13,    /* elems 0 .. count-1 */
	TW_TYPE_DICT = 14,     /* elem 0: key (str), elem 1: value */
} tw_type_kind;

/*
 * Parse a NUL-terminated schema. On success *out is a new schema (free with
 * tw_schema_free). On failure *out is NULL and tw_errmsg says why and where:
 * the message ends with " at <byte offset>", e.g. "expected ')' or ','
 * after argument 'other' at 42". TW_EINVAL for text that is not a schema
 * we support, TW_ENOMEM when memory ran out. Never reads past the
 * terminating NUL.
 */
tw_status tw_schema_parse(const char *text, tw_schema **out);

/* Same over len bytes that need not be NUL-terminated; a NUL byte inside
 * them is an error. */
tw_status tw_schema_parse_len(const char *text, size_t len, tw_schema **out);

/* Free a schema (NULL is fine). Values bound from its defaults must be
 * released first. */
void tw_schema_free(tw_schema *s);

/*
 * Print the canonical text of s into buf (always NUL-terminated when size >
 * 0); returns the length the whole text needs, as snprintf. Parsing the
 * text gives a schema equal to s (tw_schema_equal), and printing that gives
 * the same text. It is torch's own text for every builtin tensorwire
 * implements (and for most of native_functions.yaml): one space after
 * commas, "*, " before keyword-only arguments, one return bare and several
 * in parentheses. Defaults print as Python would (float 2 as 2.0, 1e-05,
 * strings in double quotes), Mean/Sum/strided/contiguous_format as their
 * numbers, a broadcast T[N] default as its one number.
 */
size_t tw_schema_format(const tw_schema *s, char *buf, size_t size);

/* Structural equality: names, argument names, types (as written, alias
 * annotations included), defaults, kwarg-only markers and returns. */
bool tw_schema_equal(const tw_schema *a, const tw_schema *b);

/* ---- reading a schema ---- */

/* "aten::add" (namespace included when written, overload not). */
const char *tw_schema_name(const tw_schema *s);
/* "Tensor" for aten::add.Tensor, "" when there is none. */
const char *tw_schema_overload(const tw_schema *s);
size_t tw_schema_nargs(const tw_schema *s);
size_t tw_schema_nreturns(const tw_schema *s);
/* Argument i (i < nargs): name, type, default (NULL when it has none; owned
 * by the schema) and whether it may only be passed by keyword. */
const char *tw_schema_arg_name(const tw_schema *s, size_t i);
const tw_type *tw_schema_arg_type(const tw_schema *s, size_t i);
const tw_value *tw_schema_arg_default(const tw_schema *s, size_t i);
bool tw_schema_arg_kwarg_only(const tw_schema *s, size_t i);
/* Return i (i < nreturns): type and name ("" when unnamed). */
const tw_type *tw_schema_return_type(const tw_schema *s, size_t i);
const char *tw_schema_return_name(const tw_schema *s, size_t i);

tw_type_kind tw_type_kind_of(const tw_type *t);
/* Number of element types: 1 for list, optional and rref, 2 for dict, the
 * element count for a tuple, 0 otherwise. */
size_t tw_type_nelems(const tw_type *t);
const tw_type *tw_type_elem(const tw_type *t, size_t i);
/* N of a fixed-size list T[N]; 0 for T[] and every other type. */
uint32_t tw_type_fixed_len(const tw_type *t);
/* Alias annotation as written between the parentheses, normalised
 * ("a!", "a -> *"), or NULL when there is none. */
const char *tw_type_alias(const tw_type *t);
/* Schema spelling: "SymInt[]", "Tensor(a!)", "int[1]?". snprintf-like. */
size_t tw_type_format(const tw_type *t, char *buf, size_t size);
/* torch's repr_str of the type, as used in its error messages:
 * "List[int]", "Optional[Tensor]", "number" for Scalar. snprintf-like. */
size_t tw_type_repr(const tw_type *t, char *buf, size_t size);

/* The type torch would give value v, as its error messages print it:
 * "Tensor", "int", "float", "bool", "str", "NoneType", "List[int]",
 * "Tuple[Tensor, str]", "Dict[str, float]", "RRef". snprintf-like. */
size_t tw_value_type_repr(const tw_value *v, char *buf, size_t size);

/* ---- binding ---- */

/*
 * Bind a call's arguments to s, as torch does when Python calls an operator
 * or a TorchScript function (createStackForSchema):
 *  - positional args (a tuple or list; NULL means none) fill the arguments
 *    that are not keyword-only, in order;
 *  - kwargs (a dict; NULL means none) fill the others by name;
 *  - a default fills what is still missing.
 * Types are checked with torch's rules: Tensor takes a tensor; int an int
 * (never a bool); float a float or an int (converted); bool a bool; str and
 * Device a string; Scalar an int, float or bool; Any anything; None only
 * None; T? None or a T; T[] a list or tuple of T (also a single int or float
 * for int[N] / float[N], repeated N times); (T1, T2) a tuple of that length;
 * Dict(str, T) a dict of T; RRef an rref.
 *
 * On success bound[0 .. tw_schema_nargs(s)) hold the values in schema order,
 * converted as the types require: an int bound to float is a double, a
 * tuple bound to a list is a list. Slots borrow from args, kwargs and the
 * schema's defaults wherever no conversion is needed (and int-to-float
 * needs none), so those must outlive them; only a conversion that builds a
 * new list (an int repeated for int[N], a list converted element by
 * element) allocates. Release every slot with tw_schema_bound_release (or
 * tw_value_destroy on each): it frees what binding allocated and nothing
 * else.
 *
 * On failure every slot is NONE and tw_errmsg gives torch's message for
 * the first problem in torch's order, ending with the schema:
 *   aten::add() expected at most 3 argument(s) but received 4 argument(s).
 *   aten::add() takes 2 positional argument(s) but 3 was/were given.
 *   aten::add() Expected a value of type 'Tensor' for argument 'other' but
 *     instead found type 'str'. (then Position, Value and Declaration lines)
 *   aten::add() is missing value for argument 'other'.
 *   Unknown keyword argument 'beta' for operator 'aten::add'.
 *   Argument 'other' specified both as positional and keyword argument.
 * Returns TW_ETYPE for every binding failure, TW_EINVAL when args is not a
 * tuple or list or kwargs not a dict (tw_errmsg says which), TW_ENOMEM.
 * The message is formatted on failure only; a successful bind records
 * nothing.
 */
tw_status tw_schema_bind(const tw_schema *s, const tw_value *args,
			 const tw_value *kwargs, tw_value *bound);

/* Release n bound slots and leave them NONE. */
void tw_schema_bound_release(tw_value *bound, size_t n);

/*
 * Pick the overload for a call, as torch's RPC does for builtin operators
 * (matchBuiltinOp): try overloads[0 .. n) in order and take the first that
 * binds. On success *chosen is its index and bound holds its arguments (see
 * tw_schema_bind); bound must have room for the largest tw_schema_nargs of
 * the overloads. The overloads should share a name.
 *
 * When none binds, TW_ETYPE, and tw_errmsg gives torch's message followed
 * by every schema tried and why it did not bind (cut at TW_ERRMSG_MAX
 * bytes, status.h, when the overloads are many):
 *   Failed to match operator name aten::add and arguments (args: (Tensor,
 *   str), kwargs: {}) to a builtin operator. Schemas tried:
 *     aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor
 *       Expected a value of type 'Tensor' for argument 'other' but instead
 *       found type 'str'.
 *     ...
 * Only that message costs formatting: overloads that do not bind are
 * tried silently first, as torch does (render_errors). TW_EINVAL when n is
 * 0 or args/kwargs have the wrong kind (tw_errmsg says which), TW_ENOMEM.
 */
tw_status tw_schema_match(const tw_schema *const *overloads, size_t n,
			  const tw_value *args, const tw_value *kwargs,
			  size_t *chosen, tw_value *bound);

#ifdef __cplusplus
}
#endif
#endif
