/* Internal: the in-memory form of a parsed schema, shared by the parser
 * (schema.c) and binding (bind.c). */
#ifndef TW_RPC_SCHEMA_IMPL_H
#define TW_RPC_SCHEMA_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/schema.h>

#include "dataplane/list.h"

/* A type node. Children and strings live in the schema's arena. */
struct tw_type {
	uint8_t kind;       /* tw_type_kind */
	uint8_t word;       /* base types: index of the spelling (schema.c) */
	uint16_t nelems;    /* children in elems */
	uint32_t fixed_len; /* LIST: N of T[N], else 0 */
	const char *alias;  /* annotation text without parentheses, or NULL */
	const tw_type *const *elems;
};

struct schema_arg {
	const char *name; /* NUL-terminated */
	uint32_t name_len;
	bool kwarg_only;
	bool has_default;
	bool default_bcast; /* written as one number for a T[N] list */
	const tw_type *type;
	tw_value def; /* owned; NONE without a default */
};

struct schema_ret {
	const char *name; /* "" when unnamed */
	const tw_type *type;
};

struct arena_chunk;

struct tw_schema {
	/* The arena's chunks, the one being filled first (a zeroed head is
	 * an empty list). */
	SLIST_HEAD(, arena_chunk) chunks;
	const char *name;     /* "aten::add" */
	const char *overload; /* "Tensor" or "" */
	uint32_t nargs;
	uint32_t nrets;
	struct schema_arg *args;
	struct schema_ret *rets;
};

/* A bounded text writer: keeps the first size-1 bytes, counts them all. */
struct wr {
	char *buf;
	size_t size;
	size_t len;
};

void wr_init(struct wr *w, char *buf, size_t size);
void wr_putn(struct wr *w, const char *s, size_t n);
void wr_puts(struct wr *w, const char *s);
void wr_printf(struct wr *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends tw_value_format(v), cut like everything else. */
void wr_value(struct wr *w, const tw_value *v);

/* Writers behind tw_type_format / tw_type_repr / tw_schema_format. */
void schema_write_type(struct wr *w, const tw_type *t);
void schema_write_repr(struct wr *w, const tw_type *t);
void schema_write(struct wr *w, const tw_schema *s);

#endif
