/* Schema language: parsing torch-style function schemas, printing them back
 * canonically, comparing and reading them. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/schema.h>

#include "dataplane/err.h"
#include "schema_impl.h"
#include "utf8.h"

/*
 * The parser is recursive descent over (text, len) with an explicit depth
 * bound: only types recurse, and every type node knows its nesting level,
 * so no input can take the stack deeper than TW_SCHEMA_MAX_DEPTH frames.
 * Every read goes through peek()/at() which check the length.
 *
 * Memory: type nodes, names and alias texts live in an arena owned by the
 * schema, freed in one sweep; default values are tw_values owned by their
 * argument. While parsing, arguments sit in a fixed array on the stack and
 * are copied into the arena at the end, so an error anywhere frees
 * everything by freeing the arena and destroying those defaults.
 */

/* ---- arena -------------------------------------------------------------- */

struct arena_chunk {
	SLIST_ENTRY(arena_chunk) link; /* in its schema's chunks */
	size_t used;
	size_t cap;
	max_align_t data[];
};

#define ARENA_MIN 1024u

static void *arena_alloc(tw_schema *s, size_t n)
{
	struct arena_chunk *c = SLIST_FIRST(&s->chunks);
	size_t align = _Alignof(max_align_t);

	n = (n + align - 1) & ~(align - 1);
	if (n == 0)
		n = align;
	if (c == NULL || c->cap - c->used < n) {
		size_t cap = n > ARENA_MIN ? n : ARENA_MIN;
		c = malloc(sizeof(*c) + cap);
		if (c == NULL)
			return NULL;
		c->used = 0;
		c->cap = cap;
		SLIST_INSERT_HEAD(&s->chunks, c, link);
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

static char *arena_strndup(tw_schema *s, const char *p, size_t n)
{
	char *d = arena_alloc(s, n + 1);
	if (d == NULL)
		return NULL;
	memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

/* ---- writer ------------------------------------------------------------- */

void wr_init(struct wr *w, char *buf, size_t size)
{
	w->buf = buf;
	w->size = buf != NULL ? size : 0;
	w->len = 0;
	if (w->size > 0)
		w->buf[0] = '\0';
}

void wr_putn(struct wr *w, const char *s, size_t n)
{
	if (w->len < w->size) {
		size_t room = w->size - 1 - w->len;
		size_t k = n < room ? n : room;
		memcpy(w->buf + w->len, s, k);
		w->buf[w->len + k] = '\0';
	}
	w->len += n;
}

void wr_puts(struct wr *w, const char *s)
{
	wr_putn(w, s, strlen(s));
}

void wr_printf(struct wr *w, const char *fmt, ...)
{
	char small[256];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		wr_putn(w, small, (size_t)n);
		return;
	}
	/* Long output: print straight into the buffer's room, count the rest. */
	if (w->len < w->size) {
		va_start(ap, fmt);
		vsnprintf(w->buf + w->len, w->size - w->len, fmt, ap);
		va_end(ap);
	}
	w->len += (size_t)n;
}

void wr_value(struct wr *w, const tw_value *v)
{
	if (w->len + 1 < w->size) {
		w->len += tw_value_format(v, w->buf + w->len, w->size - w->len);
	} else {
		w->len += tw_value_format(v, NULL, 0);
	}
}

/* ---- type words ----------------------------------------------------------- */

struct word {
	const char *text;
	uint8_t kind;
};

/* Index 0 is unused so that word 0 means "no word" (containers). */
static const struct word words[] = {
	{"", TW_TYPE_ANY},
	{"Tensor", TW_TYPE_TENSOR},
	{"int", TW_TYPE_INT},
	{"SymInt", TW_TYPE_INT},
	{"ScalarType", TW_TYPE_INT},
	{"Layout", TW_TYPE_INT},
	{"MemoryFormat", TW_TYPE_INT},
	{"float", TW_TYPE_FLOAT},
	{"SymFloat", TW_TYPE_FLOAT},
	{"bool", TW_TYPE_BOOL},
	{"SymBool", TW_TYPE_BOOL},
	{"str", TW_TYPE_STR},
	{"Dimname", TW_TYPE_STR},
	{"Scalar", TW_TYPE_SCALAR},
	{"Any", TW_TYPE_ANY},
	{"None", TW_TYPE_NONE},
	{"NoneType", TW_TYPE_NONE},
	{"Device", TW_TYPE_DEVICE},
	{"Generator", TW_TYPE_GENERATOR},
	{"RRef", TW_TYPE_RREF},
	{"Dict", TW_TYPE_DICT},
};

#define WORD_COUNT (sizeof(words) / sizeof(words[0]))

static int word_find(const char *p, size_t n)
{
	for (size_t i = 1; i < WORD_COUNT; i++)
		if (strlen(words[i].text) == n &&
		    memcmp(words[i].text, p, n) == 0)
			return (int)i;
	return -1;
}

#define WORD_ANY 14 /* words[WORD_ANY] is "Any" */
static const tw_type any_type = {.kind = TW_TYPE_ANY, .word = WORD_ANY};

/* ---- parser --------------------------------------------------------------- */

struct parser {
	const char *s;
	size_t len;
	size_t pos;
	tw_schema *sc;
	tw_status st; /* TW_OK until the first failure */
	/* The first failure's explanation, recorded (tw_fail) when the parse
	 * returns: building the schema's defaults calls value constructors,
	 * which record reasons of their own on the way out. */
	char msg[512];
};

/* Names quoted in messages are cut so the message keeps its position. */
#define QUOTE_MAX 40

static bool fail(struct parser *p, size_t pos, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail(struct parser *p, size_t pos, const char *fmt, ...)
{
	if (p->st != TW_OK)
		return false;
	p->st = TW_EINVAL;
	char what[sizeof(p->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	/* Keep room for " at <pos>" whatever the text: callers find the
	 * position at the end of the message. */
	char tail[32];
	int tn = snprintf(tail, sizeof(tail), " at %zu", pos);
	size_t room = sizeof(p->msg) - 1 - (size_t)tn;
	size_t wn = strlen(what);
	if (wn > room)
		wn = room;
	memcpy(p->msg, what, wn);
	memcpy(p->msg + wn, tail, (size_t)tn + 1);
	return false;
}

static bool oom(struct parser *p)
{
	if (p->st != TW_OK)
		return false;
	p->st = TW_ENOMEM;
	snprintf(p->msg, sizeof(p->msg), "out of memory at %zu", p->pos);
	return false;
}

static int at(const struct parser *p, size_t i)
{
	return i < p->len ? (unsigned char)p->s[i] : -1;
}

static int peek(const struct parser *p)
{
	return at(p, p->pos);
}

static bool is_ident_start(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(int c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static void skip_ws(struct parser *p)
{
	for (;;) {
		int c = peek(p);
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return;
		p->pos++;
	}
}

/* Length of the identifier at pos (0 when there is none). */
static size_t ident_len(const struct parser *p, size_t pos)
{
	size_t i = pos;
	if (!is_ident_start(at(p, i)))
		return 0;
	while (is_ident_char(at(p, i)))
		i++;
	return i - pos;
}

static bool ident_is(const struct parser *p, size_t pos, size_t n,
		     const char *word)
{
	return strlen(word) == n && memcmp(p->s + pos, word, n) == 0;
}

static bool accept(struct parser *p, int c)
{
	skip_ws(p);
	if (peek(p) != c)
		return false;
	p->pos++;
	return true;
}

static bool at_arrow(const struct parser *p)
{
	return peek(p) == '-' && at(p, p->pos + 1) == '>';
}

static bool at_dots(const struct parser *p)
{
	return peek(p) == '.' && at(p, p->pos + 1) == '.' &&
	       at(p, p->pos + 2) == '.';
}

/* An identifier for a message, cut to QUOTE_MAX bytes. */
static int qlen(size_t n)
{
	return (int)(n > QUOTE_MAX ? QUOTE_MAX : n);
}

static tw_type *new_type(struct parser *p, uint8_t kind, uint8_t word,
			 size_t nelems)
{
	tw_type *t = arena_alloc(p->sc, sizeof(*t));
	if (t == NULL) {
		oom(p);
		return NULL;
	}
	t->kind = kind;
	t->word = word;
	t->nelems = (uint16_t)nelems;
	if (nelems > 0) {
		t->elems = arena_alloc(p->sc, nelems * sizeof(tw_type *));
		if (t->elems == NULL) {
			oom(p);
			return NULL;
		}
	}
	return t;
}

static void set_elem(tw_type *t, size_t i, const tw_type *e)
{
	((const tw_type **)t->elems)[i] = e;
}

/*
 * Alias annotation: '(' set ['!'] ['->' set] ')' with set = item ('|' item)*
 * and item = identifier | '*'. Stored normalised: "a|b! -> *".
 */
static bool alias_set(struct parser *p, struct wr *w)
{
	for (bool first = true;; first = false) {
		skip_ws(p);
		if (!first)
			wr_putn(w, "|", 1);
		if (peek(p) == '*') {
			p->pos++;
			wr_putn(w, "*", 1);
		} else {
			size_t n = ident_len(p, p->pos);
			if (n == 0)
				return fail(
					p, p->pos,
					"expected an alias set name or '*' in alias annotation");
			wr_putn(w, p->s + p->pos, n);
			p->pos += n;
		}
		skip_ws(p);
		if (peek(p) != '|')
			return true;
		p->pos++;
	}
}

static bool parse_alias(struct parser *p, tw_type *t)
{
	size_t open = p->pos;
	char small[128];
	struct wr w;

	wr_init(&w, small, sizeof(small));
	p->pos++; /* '(' */
	if (!alias_set(p, &w))
		return false;
	skip_ws(p);
	if (peek(p) == '!') {
		p->pos++;
		wr_putn(&w, "!", 1);
		skip_ws(p);
	}
	if (at_arrow(p)) {
		p->pos += 2;
		wr_puts(&w, " -> ");
		if (!alias_set(p, &w))
			return false;
		skip_ws(p);
	}
	if (peek(p) != ')')
		return fail(p, p->pos,
			    "expected ')' to close the alias annotation");
	p->pos++;
	if (w.len >= sizeof(small))
		return fail(p, open, "alias annotation too long");
	t->alias = arena_strndup(p->sc, small, w.len);
	return t->alias != NULL || oom(p);
}

static bool parse_type(struct parser *p, unsigned depth, const tw_type **out);

/* Element types between parentheses: (T, T, ...). */
static bool parse_tuple(struct parser *p, unsigned depth, const tw_type **out)
{
	const tw_type *elems[TW_SCHEMA_MAX_ARGS];
	size_t n = 0;

	p->pos++; /* '(' */
	skip_ws(p);
	if (peek(p) != ')') {
		for (;;) {
			if (n == TW_SCHEMA_MAX_ARGS)
				return fail(p, p->pos,
					    "more than %d tuple elements",
					    TW_SCHEMA_MAX_ARGS);
			if (!parse_type(p, depth + 1, &elems[n]))
				return false;
			n++;
			skip_ws(p);
			if (peek(p) == ')')
				break;
			if (peek(p) != ',')
				return fail(
					p, p->pos,
					"expected ')' or ',' in tuple type");
			p->pos++;
			skip_ws(p);
		}
	}
	p->pos++; /* ')' */
	tw_type *t = new_type(p, TW_TYPE_TUPLE, 0, n);
	if (t == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		set_elem(t, i, elems[i]);
	*out = t;
	return true;
}

/* Dict(str, T) */
static bool parse_dict(struct parser *p, unsigned depth, int word,
		       const tw_type **out)
{
	const tw_type *k, *v;

	if (!accept(p, '('))
		return fail(p, p->pos, "expected '(' after Dict");
	skip_ws(p);
	size_t kpos = p->pos;
	if (!parse_type(p, depth + 1, &k))
		return false;
	if (k->kind != TW_TYPE_STR || strcmp(words[k->word].text, "str") != 0 ||
	    k->alias != NULL)
		return fail(p, kpos, "Dict keys must be str");
	if (!accept(p, ','))
		return fail(p, p->pos, "expected ',' after the Dict key type");
	skip_ws(p);
	if (!parse_type(p, depth + 1, &v))
		return false;
	if (!accept(p, ')'))
		return fail(p, p->pos, "expected ')' to close Dict");
	tw_type *t = new_type(p, TW_TYPE_DICT, (uint8_t)word, 2);
	if (t == NULL)
		return false;
	set_elem(t, 0, k);
	set_elem(t, 1, v);
	*out = t;
	return true;
}

/* RRef, RRef(T) or RRef[T]; '[' followed by ']' or a digit is a list. */
static bool parse_rref(struct parser *p, unsigned depth, int word,
		       const tw_type **out)
{
	const tw_type *e = NULL;
	size_t save = p->pos;

	skip_ws(p);
	int c = peek(p);
	int close = c == '(' ? ')' : ']';
	bool param = c == '(';
	if (c == '[') {
		size_t i = p->pos + 1;
		while (at(p, i) == ' ' || at(p, i) == '\t' ||
		       at(p, i) == '\n' || at(p, i) == '\r')
			i++;
		param = at(p, i) != ']' && !is_digit(at(p, i));
	}
	if (param) {
		p->pos++;
		skip_ws(p);
		if (!parse_type(p, depth + 1, &e))
			return false;
		if (!accept(p, close))
			return fail(p, p->pos, "expected '%c' to close RRef",
				    close);
	} else {
		p->pos = save;
	}
	tw_type *t = new_type(p, TW_TYPE_RREF, (uint8_t)word, e != NULL);
	if (t == NULL)
		return false;
	if (e != NULL)
		set_elem(t, 0, e);
	*out = t;
	return true;
}

/* A size in T[N]: 1 .. TW_SCHEMA_MAX_FIXED. */
static bool parse_fixed(struct parser *p, uint32_t *n)
{
	size_t start = p->pos;
	uint64_t v = 0;

	while (is_digit(peek(p))) {
		if (v <= TW_SCHEMA_MAX_FIXED)
			v = v * 10 + (uint64_t)(peek(p) - '0');
		p->pos++;
	}
	if (v < 1 || v > TW_SCHEMA_MAX_FIXED)
		return fail(p, start, "list size must be 1 .. %d",
			    TW_SCHEMA_MAX_FIXED);
	*n = (uint32_t)v;
	return true;
}

/*
 * type := base [alias] ( '[' [N] ']' [alias] | '?' )*
 * base := word | Dict(str, T) | RRef[(T)] | '(' types ')'
 * depth is the nesting level of the node about to be made.
 */
static bool parse_type(struct parser *p, unsigned depth, const tw_type **out)
{
	const tw_type *t;
	size_t start = p->pos;

	if (depth >= TW_SCHEMA_MAX_DEPTH)
		return fail(p, start, "types nested deeper than %d",
			    TW_SCHEMA_MAX_DEPTH);
	if (peek(p) == '(') {
		if (!parse_tuple(p, depth, &t))
			return false;
	} else {
		size_t n = ident_len(p, p->pos);
		if (n == 0)
			return fail(p, start, "expected a type");
		int word = word_find(p->s + p->pos, n);
		if (word < 0)
			return fail(p, start, "unknown type '%.*s'", qlen(n),
				    p->s + p->pos);
		p->pos += n;
		if (words[word].kind == TW_TYPE_DICT) {
			if (!parse_dict(p, depth, word, &t))
				return false;
		} else if (words[word].kind == TW_TYPE_RREF) {
			if (!parse_rref(p, depth, word, &t))
				return false;
		} else {
			tw_type *b = new_type(p, words[word].kind,
					      (uint8_t)word, 0);
			if (b == NULL)
				return false;
			t = b;
		}
	}
	skip_ws(p);
	if (peek(p) == '(') {
		if (!parse_alias(p, (tw_type *)t))
			return false;
	}
	for (;;) {
		skip_ws(p);
		int c = peek(p);
		if (c != '[' && c != '?')
			break;
		if (++depth >= TW_SCHEMA_MAX_DEPTH)
			return fail(p, p->pos, "types nested deeper than %d",
				    TW_SCHEMA_MAX_DEPTH);
		if (c == '?') {
			if (t->kind == TW_TYPE_OPTIONAL)
				return fail(p, p->pos,
					    "type is already optional");
			p->pos++;
			tw_type *o = new_type(p, TW_TYPE_OPTIONAL, 0, 1);
			if (o == NULL)
				return false;
			set_elem(o, 0, t);
			t = o;
			continue;
		}
		p->pos++;
		skip_ws(p);
		uint32_t fixed = 0;
		if (is_digit(peek(p))) {
			if (!parse_fixed(p, &fixed))
				return false;
			skip_ws(p);
		}
		if (peek(p) != ']')
			return fail(p, p->pos, "expected ']' or a list size");
		p->pos++;
		tw_type *l = new_type(p, TW_TYPE_LIST, 0, 1);
		if (l == NULL)
			return false;
		l->fixed_len = fixed;
		set_elem(l, 0, t);
		t = l;
		skip_ws(p);
		if (peek(p) == '(') {
			if (!parse_alias(p, l))
				return false;
		}
	}
	*out = t;
	return true;
}

/* ---- default values ----------------------------------------------------- */

static const tw_type *strip_optional(const tw_type *t)
{
	return t->kind == TW_TYPE_OPTIONAL ? t->elems[0] : t;
}

static bool bad_default(struct parser *p, size_t pos,
			const struct schema_arg *a)
{
	char ty[64];
	struct wr w;

	wr_init(&w, ty, sizeof(ty));
	schema_write_type(&w, a->type);
	return fail(p, pos,
		    "default value of argument '%.*s' does not fit type '%s'",
		    qlen(a->name_len), a->name, ty);
}

/* A number: -?(inf|nan|digits[.digits][e[+-]digits]). */
static bool parse_number(struct parser *p, tw_value *out)
{
	size_t start = p->pos, i = p->pos;
	bool neg = false;

	if (at(p, i) == '-') {
		neg = true;
		i++;
	}
	size_t n = ident_len(p, i);
	if (n == 3 && (ident_is(p, i, n, "inf") || ident_is(p, i, n, "nan"))) {
		double d = p->s[i] == 'i' ? INFINITY : NAN;
		p->pos = i + 3;
		*out = tw_value_double(neg ? -d : d);
		return true;
	}
	if (!is_digit(at(p, i)))
		return fail(p, start, "expected a default value");
	bool real = false;
	while (is_digit(at(p, i)))
		i++;
	if (at(p, i) == '.') {
		real = true;
		i++;
		while (is_digit(at(p, i)))
			i++;
	}
	if (at(p, i) == 'e' || at(p, i) == 'E') {
		real = true;
		i++;
		if (at(p, i) == '+' || at(p, i) == '-')
			i++;
		if (!is_digit(at(p, i)))
			return fail(p, i, "expected digits in the exponent");
		while (is_digit(at(p, i)))
			i++;
	}
	if (is_ident_char(at(p, i)) || at(p, i) == '.')
		return fail(p, start, "invalid number");
	char buf[64];
	if (i - start >= sizeof(buf))
		return fail(p, start, "number too long");
	memcpy(buf, p->s + start, i - start);
	buf[i - start] = '\0';
	p->pos = i;
	if (real) {
		*out = tw_value_double(strtod(buf, NULL));
		return true;
	}
	errno = 0;
	long long v = strtoll(buf, NULL, 10);
	if (errno == ERANGE)
		return fail(p, start, "integer out of range");
	*out = tw_value_int((int64_t)v);
	return true;
}

static bool parse_string(struct parser *p, tw_value *out)
{
	size_t start = p->pos;
	int q = peek(p);
	size_t cap = 16, n = 0;
	char *b = malloc(cap);

	if (b == NULL)
		return oom(p);
	p->pos++;
	for (;;) {
		int c = peek(p);
		if (c < 0) {
			free(b);
			return fail(p, start, "unterminated string");
		}
		if (c == q) {
			p->pos++;
			break;
		}
		if (c < 0x20 || c == 0x7f) {
			free(b);
			return fail(p, p->pos, "control character in string");
		}
		if (c == '\\') {
			int e = at(p, p->pos + 1);
			switch (e) {
			case '\\':
			case '\'':
			case '"':
				c = e;
				break;
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case 'r':
				c = '\r';
				break;
			default:
				free(b);
				return fail(p, p->pos,
					    "invalid escape in string");
			}
			p->pos++;
		}
		p->pos++;
		if (n + 1 >= cap) {
			char *nb = realloc(b, cap * 2);
			if (nb == NULL) {
				free(b);
				return oom(p);
			}
			b = nb;
			cap *= 2;
		}
		b[n++] = (char)c;
	}
	if (!tw_utf8_valid(b, n)) {
		free(b);
		return fail(p, start, "string is not valid UTF-8");
	}
	tw_status st = tw_value_string(out, b, n);
	free(b);
	if (st == TW_ENOMEM)
		return oom(p);
	if (st != TW_OK)
		return fail(p, start, "string too long");
	return true;
}

/* Does constant v fit base type t (optional already stripped for lists)?
 * Converts an int to a double for float. */
static bool const_fits(const tw_type *t, tw_value *v)
{
	switch (t->kind) {
	case TW_TYPE_OPTIONAL:
		return v->kind == TW_KIND_NONE || const_fits(t->elems[0], v);
	case TW_TYPE_ANY:
		return true;
	case TW_TYPE_NONE:
		return v->kind == TW_KIND_NONE;
	case TW_TYPE_INT:
		return v->kind == TW_KIND_INT;
	case TW_TYPE_FLOAT:
		if (v->kind == TW_KIND_INT)
			*v = tw_value_double((double)v->u.i);
		return v->kind == TW_KIND_DOUBLE;
	case TW_TYPE_BOOL:
		return v->kind == TW_KIND_BOOL;
	case TW_TYPE_SCALAR:
		return v->kind == TW_KIND_INT || v->kind == TW_KIND_DOUBLE ||
		       v->kind == TW_KIND_BOOL;
	case TW_TYPE_STR:
	case TW_TYPE_DEVICE:
		return v->kind == TW_KIND_STRING;
	default:
		return false;
	}
}

/* One constant: number, True, False, None, string or an int enum name. */
static bool parse_const(struct parser *p, tw_value *out)
{
	int c = peek(p);
	size_t n = ident_len(p, p->pos);

	if (c == '"' || c == '\'')
		return parse_string(p, out);
	if (c == '[')
		return fail(p, p->pos,
			    "nested list defaults are not supported");
	if (n > 0 && !ident_is(p, p->pos, n, "inf") &&
	    !ident_is(p, p->pos, n, "nan")) {
		static const struct {
			const char *name;
			int64_t v;
		} enums[] = {
			{"Mean", 1},
			{"Sum", 2},
			{"strided", 0},
			{"contiguous_format", 0},
		};
		if (ident_is(p, p->pos, n, "True") ||
		    ident_is(p, p->pos, n, "False")) {
			*out = tw_value_bool(p->s[p->pos] == 'T');
		} else if (ident_is(p, p->pos, n, "None")) {
			*out = tw_value_none();
		} else {
			size_t i;
			for (i = 0; i < sizeof(enums) / sizeof(enums[0]); i++)
				if (ident_is(p, p->pos, n, enums[i].name))
					break;
			if (i == sizeof(enums) / sizeof(enums[0]))
				return fail(p, p->pos,
					    "unsupported default value '%.*s'",
					    qlen(n), p->s + p->pos);
			*out = tw_value_int(enums[i].v);
		}
		p->pos += n;
		return true;
	}
	return parse_number(p, out);
}

/* '[' const (',' const)* ']' or '[]' into an owned list of element type e. */
static bool parse_list_default(struct parser *p, const struct schema_arg *a,
			       const tw_type *e, tw_value *out)
{
	tw_value items[TW_SCHEMA_MAX_FIXED];
	size_t n = 0;
	bool ok = false;

	p->pos++; /* '[' */
	skip_ws(p);
	if (peek(p) == ']') {
		p->pos++;
	} else {
		for (;;) {
			size_t vpos = p->pos;
			if (n == TW_SCHEMA_MAX_FIXED) {
				fail(p, vpos, "more than %d list elements",
				     TW_SCHEMA_MAX_FIXED);
				goto out;
			}
			if (!parse_const(p, &items[n]))
				goto out;
			n++;
			if (!const_fits(e, &items[n - 1])) {
				bad_default(p, vpos, a);
				goto out;
			}
			skip_ws(p);
			if (peek(p) == ']') {
				p->pos++;
				break;
			}
			if (peek(p) != ',') {
				fail(p, p->pos,
				     "expected ']' or ',' in list default");
				goto out;
			}
			p->pos++;
			skip_ws(p);
		}
	}
	if (tw_value_list(out, (uint32_t)n) != TW_OK) {
		oom(p);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		tw_value_set_item(out, (uint32_t)i, items[i]);
		items[i] = tw_value_none();
	}
	n = 0;
	ok = true;
out:
	for (size_t i = 0; i < n; i++)
		tw_value_destroy(&items[i]);
	return ok;
}

static bool parse_default(struct parser *p, struct schema_arg *a)
{
	const tw_type *t = a->type;
	const tw_type *base = strip_optional(t);
	size_t vpos = p->pos;
	tw_value v;

	if (base->kind == TW_TYPE_LIST && peek(p) == '[') {
		if (!parse_list_default(p, a, base->elems[0], &a->def))
			return false;
		a->has_default = true;
		return true;
	}
	if (peek(p) == '[')
		return bad_default(p, vpos, a);
	if (!parse_const(p, &v))
		return false;
	if (base->kind == TW_TYPE_LIST && v.kind != TW_KIND_NONE) {
		/* torch: a single constant for T[N] stands for N copies. */
		const tw_type *e = base->elems[0];
		if (base->fixed_len == 0 || v.kind == TW_KIND_STRING ||
		    !const_fits(e, &v)) {
			tw_value_destroy(&v);
			return bad_default(p, vpos, a);
		}
		if (tw_value_list(&a->def, base->fixed_len) != TW_OK)
			return oom(p);
		for (uint32_t i = 0; i < base->fixed_len; i++)
			tw_value_set_item(&a->def, i, v);
		a->default_bcast = true;
		a->has_default = true;
		return true;
	}
	if (!const_fits(t, &v)) {
		tw_value_destroy(&v);
		return bad_default(p, vpos, a);
	}
	a->def = v;
	a->has_default = true;
	return true;
}

/* ---- schema ----------------------------------------------------------------- */

static bool parse_name(struct parser *p)
{
	size_t start = p->pos;
	size_t n = ident_len(p, p->pos);

	if (n == 0)
		return fail(p, start, "expected a schema name");
	p->pos += n;
	if (peek(p) == ':') {
		if (at(p, p->pos + 1) != ':')
			return fail(p, p->pos, "expected '::' after namespace");
		p->pos += 2;
		n = ident_len(p, p->pos);
		if (n == 0)
			return fail(p, p->pos, "expected a name after '::'");
		p->pos += n;
	}
	size_t name_end = p->pos;
	size_t ov = p->pos, ovn = 0;
	if (peek(p) == '.') {
		p->pos++;
		ov = p->pos;
		ovn = ident_len(p, p->pos);
		if (ovn == 0)
			return fail(p, p->pos,
				    "expected an overload name after '.'");
		p->pos += ovn;
	}
	p->sc->name = arena_strndup(p->sc, p->s + start, name_end - start);
	p->sc->overload = arena_strndup(p->sc, p->s + ov, ovn);
	if (p->sc->name == NULL || p->sc->overload == NULL)
		return oom(p);
	return true;
}

static bool parse_args(struct parser *p, struct schema_arg *args, size_t *nargs)
{
	bool kwarg_only = false;
	size_t n = 0;

	skip_ws(p);
	if (peek(p) == ')') {
		p->pos++;
		*nargs = 0;
		return true;
	}
	for (;;) {
		skip_ws(p);
		if (peek(p) == '*') {
			if (kwarg_only)
				return fail(p, p->pos, "'*' given twice");
			kwarg_only = true;
			p->pos++;
			if (!accept(p, ','))
				return fail(
					p, p->pos,
					"expected ',' and an argument after '*'");
			skip_ws(p);
			continue;
		}
		if (at_dots(p))
			return fail(p, p->pos,
				    "varargs '...' are not supported");
		if (n == TW_SCHEMA_MAX_ARGS)
			return fail(p, p->pos, "more than %d arguments",
				    TW_SCHEMA_MAX_ARGS);
		struct schema_arg *a = &args[n];
		if (!parse_type(p, 0, &a->type))
			return false;
		skip_ws(p);
		size_t npos = p->pos;
		size_t nl = ident_len(p, npos);
		if (nl == 0)
			return fail(p, npos,
				    "expected an argument name after its type");
		for (size_t i = 0; i < n; i++)
			if (args[i].name_len == nl &&
			    memcmp(args[i].name, p->s + npos, nl) == 0)
				return fail(p, npos,
					    "duplicate argument name '%.*s'",
					    qlen(nl), p->s + npos);
		a->name = arena_strndup(p->sc, p->s + npos, nl);
		if (a->name == NULL)
			return oom(p);
		a->name_len = (uint32_t)nl;
		a->kwarg_only = kwarg_only;
		a->def = tw_value_none();
		n++; /* from here on the error path destroys a->def */
		*nargs = n;
		p->pos += nl;
		if (accept(p, '=')) {
			skip_ws(p);
			if (!parse_default(p, a))
				return false;
		}
		skip_ws(p);
		if (peek(p) == ')') {
			p->pos++;
			return true;
		}
		if (peek(p) != ',')
			return fail(p, p->pos,
				    "expected ')' or ',' after argument '%.*s'",
				    qlen(nl), a->name);
		p->pos++;
		skip_ws(p);
		if (peek(p) == ')')
			return fail(p, p->pos,
				    "expected an argument after ','");
	}
}

static bool parse_return(struct parser *p, struct schema_ret *r)
{
	if (!parse_type(p, 0, &r->type))
		return false;
	skip_ws(p);
	size_t n = ident_len(p, p->pos);
	r->name = arena_strndup(p->sc, p->s + p->pos, n);
	if (r->name == NULL)
		return oom(p);
	p->pos += n;
	return true;
}

static bool parse_returns(struct parser *p, struct schema_ret *rets, size_t *n)
{
	skip_ws(p);
	if (at_dots(p))
		return fail(p, p->pos, "varargs '...' are not supported");
	if (peek(p) != '(') {
		if (peek(p) < 0)
			return fail(p, p->pos,
				    "expected a return type after '->'");
		*n = 1;
		return parse_return(p, &rets[0]);
	}
	p->pos++;
	skip_ws(p);
	*n = 0;
	if (peek(p) == ')') {
		p->pos++;
		return true;
	}
	for (;;) {
		if (*n == TW_SCHEMA_MAX_ARGS)
			return fail(p, p->pos, "more than %d returns",
				    TW_SCHEMA_MAX_ARGS);
		if (!parse_return(p, &rets[*n]))
			return false;
		(*n)++;
		skip_ws(p);
		if (peek(p) == ')') {
			p->pos++;
			return true;
		}
		if (peek(p) != ',')
			return fail(p, p->pos,
				    "expected ')' or ',' after return type");
		p->pos++;
		skip_ws(p);
	}
}

/* Free c and the chunks after it. From the first chunk, not the head:
 * the schema holding the head lives in one of them. */
static void free_chunks(struct arena_chunk *c)
{
	while (c != NULL) {
		struct arena_chunk *next = SLIST_NEXT(c, link);
		free(c);
		c = next;
	}
}

tw_status tw_schema_parse_len(const char *text, size_t len, tw_schema **out)
{
	struct schema_arg args[TW_SCHEMA_MAX_ARGS];
	struct schema_ret rets[TW_SCHEMA_MAX_ARGS];
	size_t nargs = 0, nrets = 0;
	tw_schema head = {0};
	struct parser p = {
		.s = text,
		.len = text != NULL ? len : 0,
		.sc = &head,
	};

	if (out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_schema_parse: out is NULL");
	*out = NULL;
	memset(args, 0, sizeof(args));
	skip_ws(&p);
	if (!parse_name(&p))
		goto fail;
	skip_ws(&p);
	if (peek(&p) != '(') {
		fail(&p, p.pos, "expected '(' after schema name '%.*s'",
		     qlen(strlen(head.name)), head.name);
		goto fail;
	}
	p.pos++;
	if (!parse_args(&p, args, &nargs))
		goto fail;
	skip_ws(&p);
	if (!at_arrow(&p)) {
		fail(&p, p.pos, "expected '->' after the arguments");
		goto fail;
	}
	p.pos += 2;
	if (!parse_returns(&p, rets, &nrets))
		goto fail;
	skip_ws(&p);
	if (p.pos != p.len) {
		fail(&p, p.pos, "unexpected text after the schema");
		goto fail;
	}

	/* Move everything into the arena under a schema of its own. */
	tw_schema *s = arena_alloc(&head, sizeof(*s));
	struct schema_arg *a = arena_alloc(&head, nargs * sizeof(*a));
	struct schema_ret *r = arena_alloc(&head, nrets * sizeof(*r));
	if (s == NULL || a == NULL || r == NULL) {
		oom(&p);
		goto fail;
	}
	memcpy(a, args, nargs * sizeof(*a));
	memcpy(r, rets, nrets * sizeof(*r));
	*s = head;
	s->chunks = head.chunks;
	s->nargs = (uint32_t)nargs;
	s->nrets = (uint32_t)nrets;
	s->args = a;
	s->rets = r;
	*out = s;
	return TW_OK;

fail:
	for (size_t i = 0; i < nargs; i++)
		tw_value_destroy(&args[i].def);
	free_chunks(SLIST_FIRST(&head.chunks));
	if (p.st == TW_OK) /* never: every path says why */
		fail(&p, p.pos, "not a schema");
	return tw_fail(p.st, "%s", p.msg);
}

tw_status tw_schema_parse(const char *text, tw_schema **out)
{
	if (text == NULL) {
		if (out != NULL)
			*out = NULL;
		return tw_fail_static(TW_EINVAL, "no schema text at 0");
	}
	return tw_schema_parse_len(text, strlen(text), out);
}

void tw_schema_free(tw_schema *s)
{
	if (s == NULL)
		return;
	for (uint32_t i = 0; i < s->nargs; i++)
		tw_value_destroy(&s->args[i].def);
	/* s itself lives in the arena. */
	free_chunks(SLIST_FIRST(&s->chunks));
}

/* ---- printing ---------------------------------------------------------------- */

static void write_alias(struct wr *w, const tw_type *t)
{
	if (t->alias != NULL) {
		wr_putn(w, "(", 1);
		wr_puts(w, t->alias);
		wr_putn(w, ")", 1);
	}
}

void schema_write_type(struct wr *w, const tw_type *t)
{
	switch (t->kind) {
	case TW_TYPE_LIST:
		schema_write_type(w, t->elems[0]);
		if (t->fixed_len)
			wr_printf(w, "[%" PRIu32 "]", t->fixed_len);
		else
			wr_putn(w, "[]", 2);
		break;
	case TW_TYPE_OPTIONAL:
		schema_write_type(w, t->elems[0]);
		wr_putn(w, "?", 1);
		break;
	case TW_TYPE_TUPLE:
		wr_putn(w, "(", 1);
		for (size_t i = 0; i < t->nelems; i++) {
			if (i)
				wr_putn(w, ", ", 2);
			schema_write_type(w, t->elems[i]);
		}
		wr_putn(w, ")", 1);
		break;
	case TW_TYPE_DICT:
		wr_puts(w, "Dict(");
		schema_write_type(w, t->elems[0]);
		wr_putn(w, ", ", 2);
		schema_write_type(w, t->elems[1]);
		wr_putn(w, ")", 1);
		break;
	case TW_TYPE_RREF:
		wr_puts(w, "RRef");
		if (t->nelems) {
			wr_putn(w, "(", 1);
			schema_write_type(w, t->elems[0]);
			wr_putn(w, ")", 1);
		}
		break;
	default:
		wr_puts(w, words[t->word].text);
		break;
	}
	write_alias(w, t);
}

void schema_write_repr(struct wr *w, const tw_type *t)
{
	static const char *const base[] = {
		[TW_TYPE_TENSOR] = "Tensor", [TW_TYPE_INT] = "int",
		[TW_TYPE_FLOAT] = "float",   [TW_TYPE_BOOL] = "bool",
		[TW_TYPE_STR] = "str",       [TW_TYPE_SCALAR] = "number",
		[TW_TYPE_ANY] = "Any",       [TW_TYPE_NONE] = "NoneType",
		[TW_TYPE_DEVICE] = "Device", [TW_TYPE_GENERATOR] = "Generator",
	};

	switch (t->kind) {
	case TW_TYPE_LIST:
		wr_puts(w, "List[");
		schema_write_repr(w, t->elems[0]);
		wr_putn(w, "]", 1);
		break;
	case TW_TYPE_OPTIONAL:
		wr_puts(w, "Optional[");
		schema_write_repr(w, t->elems[0]);
		wr_putn(w, "]", 1);
		break;
	case TW_TYPE_TUPLE:
		wr_puts(w, "Tuple[");
		if (t->nelems == 0)
			wr_puts(w, "()");
		for (size_t i = 0; i < t->nelems; i++) {
			if (i)
				wr_putn(w, ", ", 2);
			schema_write_repr(w, t->elems[i]);
		}
		wr_putn(w, "]", 1);
		break;
	case TW_TYPE_DICT:
		wr_puts(w, "Dict[");
		schema_write_repr(w, t->elems[0]);
		wr_putn(w, ", ", 2);
		schema_write_repr(w, t->elems[1]);
		wr_putn(w, "]", 1);
		break;
	case TW_TYPE_RREF:
		wr_puts(w, "RRef[");
		schema_write_repr(w, t->nelems ? t->elems[0] : &any_type);
		wr_putn(w, "]", 1);
		break;
	default:
		wr_puts(w, base[t->kind]);
		break;
	}
}

/* Python's repr of a float: the fewest digits that read back as d, fixed
 * notation for exponents -4 .. 15, always with a '.' or an exponent so that
 * it reads back as a float ("2.0", "0.5", "1e-05", "1e+16"). */
static void write_double(struct wr *w, double d)
{
	char buf[48];
	int prec;

	if (isnan(d)) {
		wr_puts(w, "nan");
		return;
	}
	if (isinf(d)) {
		wr_puts(w, d < 0 ? "-inf" : "inf");
		return;
	}
	for (prec = 1; prec < 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*e", prec - 1, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	snprintf(buf, sizeof(buf), "%.*e", prec - 1, d);
	int exp = atoi(strchr(buf, 'e') + 1);
	if (exp >= -4 && exp < 16) {
		int frac = prec - 1 - exp;
		snprintf(buf, sizeof(buf), "%.*f", frac > 0 ? frac : 0, d);
		wr_puts(w, buf);
		if (strchr(buf, '.') == NULL)
			wr_puts(w, ".0");
		return;
	}
	wr_puts(w, buf);
}

static void write_string(struct wr *w, const char *s, size_t n)
{
	wr_putn(w, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case '"':
			wr_putn(w, "\\\"", 2);
			break;
		case '\\':
			wr_putn(w, "\\\\", 2);
			break;
		case '\n':
			wr_putn(w, "\\n", 2);
			break;
		case '\t':
			wr_putn(w, "\\t", 2);
			break;
		case '\r':
			wr_putn(w, "\\r", 2);
			break;
		default:
			wr_putn(w, &s[i], 1);
			break;
		}
	}
	wr_putn(w, "\"", 1);
}

/* A default constant for a value of type t (optional stripped). */
static void write_const(struct wr *w, const tw_value *v, const tw_type *t)
{
	t = strip_optional(t);
	switch (v->kind) {
	case TW_KIND_NONE:
		wr_puts(w, "None");
		break;
	case TW_KIND_BOOL:
		wr_puts(w, v->u.b ? "True" : "False");
		break;
	case TW_KIND_INT:
		wr_printf(w, "%" PRId64, v->u.i);
		break;
	case TW_KIND_DOUBLE:
		write_double(w, v->u.d);
		break;
	case TW_KIND_STRING:
		write_string(w, v->u.str, v->len);
		break;
	case TW_KIND_LIST: {
		const tw_type *e = t->kind == TW_TYPE_LIST ? t->elems[0]
							   : &any_type;
		wr_putn(w, "[", 1);
		for (uint32_t i = 0; i < v->len; i++) {
			if (i)
				wr_putn(w, ", ", 2);
			write_const(w, &v->u.items[i], e);
		}
		wr_putn(w, "]", 1);
		break;
	}
	default:
		wr_puts(w, "?");
		break;
	}
}

static void write_arg(struct wr *w, const struct schema_arg *a)
{
	schema_write_type(w, a->type);
	wr_putn(w, " ", 1);
	wr_putn(w, a->name, a->name_len);
	if (!a->has_default)
		return;
	wr_putn(w, "=", 1);
	if (a->default_bcast) {
		const tw_type *l = strip_optional(a->type);
		write_const(w, &a->def.u.items[0], l->elems[0]);
	} else {
		write_const(w, &a->def, a->type);
	}
}

static void write_return(struct wr *w, const struct schema_ret *r)
{
	schema_write_type(w, r->type);
	if (r->name[0] != '\0') {
		wr_putn(w, " ", 1);
		wr_puts(w, r->name);
	}
}

/* Does the printed type start with '(' ? */
static bool starts_with_tuple(const tw_type *t)
{
	while (t->kind == TW_TYPE_LIST || t->kind == TW_TYPE_OPTIONAL)
		t = t->elems[0];
	return t->kind == TW_TYPE_TUPLE;
}

void schema_write(struct wr *w, const tw_schema *s)
{
	bool kw = false;

	wr_puts(w, s->name);
	if (s->overload[0] != '\0') {
		wr_putn(w, ".", 1);
		wr_puts(w, s->overload);
	}
	wr_putn(w, "(", 1);
	for (uint32_t i = 0; i < s->nargs; i++) {
		if (i)
			wr_putn(w, ", ", 2);
		if (s->args[i].kwarg_only && !kw) {
			wr_putn(w, "*, ", 3);
			kw = true;
		}
		write_arg(w, &s->args[i]);
	}
	wr_puts(w, ") -> ");
	/* torch prints one return bare unless it starts with '(' (a tuple),
	 * which would read back as a list of returns. */
	if (s->nrets == 1 && !starts_with_tuple(s->rets[0].type)) {
		write_return(w, &s->rets[0]);
		return;
	}
	wr_putn(w, "(", 1);
	for (uint32_t i = 0; i < s->nrets; i++) {
		if (i)
			wr_putn(w, ", ", 2);
		write_return(w, &s->rets[i]);
	}
	wr_putn(w, ")", 1);
}

size_t tw_schema_format(const tw_schema *s, char *buf, size_t size)
{
	struct wr w;

	wr_init(&w, buf, size);
	if (s != NULL)
		schema_write(&w, s);
	return w.len;
}

size_t tw_type_format(const tw_type *t, char *buf, size_t size)
{
	struct wr w;

	wr_init(&w, buf, size);
	if (t != NULL)
		schema_write_type(&w, t);
	return w.len;
}

size_t tw_type_repr(const tw_type *t, char *buf, size_t size)
{
	struct wr w;

	wr_init(&w, buf, size);
	if (t != NULL)
		schema_write_repr(&w, t);
	return w.len;
}

/* ---- equality and accessors ------------------------------------------------ */

static bool type_equal(const tw_type *a, const tw_type *b)
{
	if (a->kind != b->kind || a->word != b->word ||
	    a->nelems != b->nelems || a->fixed_len != b->fixed_len)
		return false;
	if ((a->alias == NULL) != (b->alias == NULL) ||
	    (a->alias != NULL && strcmp(a->alias, b->alias) != 0))
		return false;
	for (size_t i = 0; i < a->nelems; i++)
		if (!type_equal(a->elems[i], b->elems[i]))
			return false;
	return true;
}

bool tw_schema_equal(const tw_schema *a, const tw_schema *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (strcmp(a->name, b->name) != 0 ||
	    strcmp(a->overload, b->overload) != 0 || a->nargs != b->nargs ||
	    a->nrets != b->nrets)
		return false;
	for (uint32_t i = 0; i < a->nargs; i++) {
		const struct schema_arg *x = &a->args[i], *y = &b->args[i];
		if (strcmp(x->name, y->name) != 0 ||
		    x->kwarg_only != y->kwarg_only ||
		    x->has_default != y->has_default ||
		    x->default_bcast != y->default_bcast ||
		    !type_equal(x->type, y->type) ||
		    !tw_value_equal(&x->def, &y->def))
			return false;
	}
	for (uint32_t i = 0; i < a->nrets; i++)
		if (strcmp(a->rets[i].name, b->rets[i].name) != 0 ||
		    !type_equal(a->rets[i].type, b->rets[i].type))
			return false;
	return true;
}

const char *tw_schema_name(const tw_schema *s)
{
	return s->name;
}

const char *tw_schema_overload(const tw_schema *s)
{
	return s->overload;
}

size_t tw_schema_nargs(const tw_schema *s)
{
	return s->nargs;
}

size_t tw_schema_nreturns(const tw_schema *s)
{
	return s->nrets;
}

const char *tw_schema_arg_name(const tw_schema *s, size_t i)
{
	return i < s->nargs ? s->args[i].name : NULL;
}

const tw_type *tw_schema_arg_type(const tw_schema *s, size_t i)
{
	return i < s->nargs ? s->args[i].type : NULL;
}

const tw_value *tw_schema_arg_default(const tw_schema *s, size_t i)
{
	return i < s->nargs && s->args[i].has_default ? &s->args[i].def : NULL;
}

bool tw_schema_arg_kwarg_only(const tw_schema *s, size_t i)
{
	return i < s->nargs && s->args[i].kwarg_only;
}

const tw_type *tw_schema_return_type(const tw_schema *s, size_t i)
{
	return i < s->nrets ? s->rets[i].type : NULL;
}

const char *tw_schema_return_name(const tw_schema *s, size_t i)
{
	return i < s->nrets ? s->rets[i].name : NULL;
}

tw_type_kind tw_type_kind_of(const tw_type *t)
{
	return (tw_type_kind)t->kind;
}

size_t tw_type_nelems(const tw_type *t)
{
	return t->kind == TW_TYPE_RREF ? 1 : t->nelems;
}

const tw_type *tw_type_elem(const tw_type *t, size_t i)
{
	if (t->kind == TW_TYPE_RREF && t->nelems == 0)
		return i == 0 ? &any_type : NULL;
	return i < t->nelems ? t->elems[i] : NULL;
}

uint32_t tw_type_fixed_len(const tw_type *t)
{
	return t->fixed_len;
}

const char *tw_type_alias(const tw_type *t)
{
	return t->alias;
}
