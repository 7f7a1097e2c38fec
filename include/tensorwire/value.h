/* tensorwire values: tw_value, the dynamically typed argument/result tree. */
#ifndef TENSORWIRE_VALUE_H
#define TENSORWIRE_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/status.h>
#include <tensorwire/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Kinds. Values are the wire tags of docs/wire.md: append only. */
typedef enum tw_kind {
	TW_KIND_NONE = 0,
	TW_KIND_BOOL = 1,
	TW_KIND_INT = 2, /* int64 */
	TW_KIND_DOUBLE = 3,
	TW_KIND_STRING =
		4, /* UTF-8, NUL-terminated in memory, len excludes it */
	TW_KIND_BYTES = 5,
	TW_KIND_TENSOR = 6,
	TW_KIND_LIST = 7,
	TW_KIND_TUPLE = 8,
	TW_KIND_DICT = 9, /* string keys, unique, in insertion order */
	TW_KIND_RREF = 10,
	TW_KIND_ERROR = 11,
	TW_KIND_COUNT_ /* not a kind */
} tw_kind;

/* Nesting deeper than this is refused by constructors' users and decoders. */
#define TW_VALUE_MAX_DEPTH 64

/* Globally unique id, as torch's GloballyUniqueId: (creator, local counter). */
typedef struct tw_guid {
	uint32_t created_on; /* worker id */
	uint64_t local_id;
} tw_guid;

/* What travels for an RRef (torch's RRefForkData without the type string). */
typedef struct tw_rref_id {
	uint32_t owner; /* worker id of the owner */
	tw_guid rref;   /* which RRef */
	tw_guid fork;   /* which user reference of it */
} tw_rref_id;

/* A failure as a value: kind keeps its meaning across workers. */
typedef struct tw_error {
	tw_status kind;
	uint32_t origin;  /* worker id where it was raised */
	const char *msg;  /* NUL-terminated */
	uint32_t msg_len; /* bytes, excluding the NUL */
} tw_error;

typedef struct tw_value tw_value;
typedef struct tw_kv tw_kv;

/*
 * A value is 16 bytes, passed and stored by value. Scalars live inline;
 * everything else points at storage the value owns, unless TW_VALUE_BORROWED
 * is set, in which case the storage belongs to someone else (a decoded
 * message, a static string) and tw_value_destroy leaves it alone.
 *
 * Ownership rules:
 *  - Constructors that take pointers copy what they point at (strings, bytes,
 *    keys, error messages) or take a new reference (tensors); the *_borrow
 *    forms instead point at caller memory, which must outlive the value.
 *  - A container owns its children. Storing a value into a container slot
 *    (tw_value_set_item, tw_value_dict_set) moves it: the caller must not
 *    destroy it afterwards.
 *  - tw_value_destroy frees an owned tree and leaves *v as NONE.
 *  - Values produced by a decoder are borrowed from the decoded message and
 *    valid until the message is released; tw_value_clone makes an owned copy
 *    (tensor bytes are shared by reference, never copied).
 *
 * Errors: every function here that fails says why (tw_errmsg, status.h):
 * "index 3 out of range for a list of 2", "expected an int, got a value
 * of kind 'string'", "dict key 'x' is already used by entry 0",
 * "tw_value_clone: more than TW_VALUE_MAX_DEPTH (64) nested containers".
 */
struct tw_value {
	uint8_t kind;  /* tw_kind */
	uint8_t flags; /* TW_VALUE_* */
	uint16_t reserved_;
	uint32_t len; /* string/bytes length, or item/entry count */
	union {
		bool b;
		int64_t i;
		double d;
		const char *str;   /* STRING (NUL-terminated), BYTES */
		tw_value *items;   /* LIST, TUPLE */
		tw_kv *entries;    /* DICT */
		tw_tensor *tensor; /* TENSOR */
		tw_rref_id *rref;  /* RREF */
		tw_error *err;     /* ERROR */
	} u;
};

#define TW_VALUE_BORROWED 0x01u /* storage not owned: destroy ignores it */

struct tw_kv {
	const char *key; /* NUL-terminated */
	uint32_t key_len;
	uint32_t reserved_;
	tw_value val;
};

_Static_assert(sizeof(tw_value) == 16, "tw_value must stay 16 bytes");

/* Scalars: no allocation, nothing to destroy. */
static inline tw_value tw_value_none(void)
{
	tw_value v = {0};
	v.kind = TW_KIND_NONE;
	return v;
}
static inline tw_value tw_value_bool(bool b)
{
	tw_value v = {0};
	v.kind = TW_KIND_BOOL;
	v.u.b = b;
	return v;
}
static inline tw_value tw_value_int(int64_t i)
{
	tw_value v = {0};
	v.kind = TW_KIND_INT;
	v.u.i = i;
	return v;
}
static inline tw_value tw_value_double(double d)
{
	tw_value v = {0};
	v.kind = TW_KIND_DOUBLE;
	v.u.d = d;
	return v;
}

/* Strings and bytes. Lengths are limited to UINT32_MAX - 1 (TW_EOVERFLOW).
 * tw_value_string copies and checks UTF-8 (TW_EINVAL when invalid);
 * tw_value_string_borrow points at s, which must be NUL-terminated at len
 * and outlive the value. */
tw_status tw_value_string(tw_value *out, const char *s, size_t len);
tw_status tw_value_cstring(tw_value *out, const char *s);
tw_value tw_value_string_borrow(const char *s, size_t len);
tw_status tw_value_bytes(tw_value *out, const void *p, size_t len);
tw_value tw_value_bytes_borrow(const void *p, size_t len);

/* A tensor value holding its own reference to t's buffer. */
tw_status tw_value_tensor(tw_value *out, const tw_tensor *t);

/* Containers of n slots, each initialised to NONE. */
tw_status tw_value_list(tw_value *out, uint32_t n);
tw_status tw_value_tuple(tw_value *out, uint32_t n);

/* A dict with room for n entries, all empty keys until set. */
tw_status tw_value_dict(tw_value *out, uint32_t n);

/* Move child into slot i of a list or tuple (destroying what was there).
 * On error child is untouched and still the caller's. */
tw_status tw_value_set_item(tw_value *container, uint32_t i, tw_value child);

/* Set entry i of a dict: copies key, moves child. TW_EINVAL if i is out of
 * range or key is already used by another entry. */
tw_status tw_value_dict_set(tw_value *dict, uint32_t i, const char *key,
			    tw_value child);

tw_status tw_value_rref(tw_value *out, const tw_rref_id *id);

/* An error value; msg is copied (printf-style formatting by the caller). */
tw_status tw_value_error(tw_value *out, tw_status kind, uint32_t origin,
			 const char *msg);

/* Free an owned tree (no-op on borrowed storage); leaves *v NONE. */
void tw_value_destroy(tw_value *v);

/* Deep copy into owned storage; tensors share bytes (new buffer refs). */
tw_status tw_value_clone(tw_value *dst, const tw_value *src);

/* Deep equality; tensors compare dtype, shape and elements; doubles compare
 * bitwise-equal or both NaN. */
bool tw_value_equal(const tw_value *a, const tw_value *b);

/* Accessors: TW_ETYPE when the kind does not match (the reason names the
 * kind found), TW_EINVAL for NULL arguments. */
tw_status tw_value_get_bool(const tw_value *v, bool *out);
tw_status tw_value_get_int(const tw_value *v, int64_t *out);
tw_status tw_value_get_double(const tw_value *v, double *out); /* int widens */
tw_status tw_value_get_string(const tw_value *v, const char **s, size_t *len);
tw_status tw_value_get_bytes(const tw_value *v, const void **p, size_t *len);
tw_status tw_value_get_tensor(const tw_value *v, const tw_tensor **out);
/* Item i of a list or tuple (TW_EINVAL when out of range). */
tw_status tw_value_get_item(const tw_value *v, uint32_t i,
			    const tw_value **out);
/* Value stored under key in a dict; TW_ENOENT when absent (a fixed
 * reason: probing for an optional key costs no formatting). */
tw_status tw_value_dict_get(const tw_value *v, const char *key,
			    const tw_value **out);

/* Name of a kind ("tensor"), "?" when unknown. */
const char *tw_kind_name(tw_kind kind);

/* Python-like rendering into buf (always NUL-terminated when size > 0);
 * returns the length the full text needs, as snprintf. Tensors print as
 * tensor(float32[2, 3], ...) with their first elements. */
size_t tw_value_format(const tw_value *v, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
