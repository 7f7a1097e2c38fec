/* libFuzzer target for tw_schema_parse: any bytes are refused with a
 * position and a reason, or parse to a schema whose canonical text parses
 * back to an equal schema and prints the same; binding canned calls to it
 * must not crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/schema.h>
#include <tensorwire/tensorwire.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A check failed: crash so the fuzzer keeps the input. */
static void fail(void)
{
	abort();
}

static char *format(const tw_schema *s)
{
	size_t n = tw_schema_format(s, NULL, 0);
	char *t = malloc(n + 1);

	if (t == NULL)
		return NULL;
	if (tw_schema_format(s, t, n + 1) != n || strlen(t) != n)
		fail();
	return t;
}

/* Calls of every shape bind() cares about, over scalars only (no tensor
 * allocation in the loop). */
static void try_binds(const tw_schema *s)
{
	tw_value bound[TW_SCHEMA_MAX_ARGS];
	tw_value items[6], pair[2], args, kw;
	tw_kv kv[2];
	size_t n = tw_schema_nargs(s);

	pair[0] = tw_value_int(1);
	pair[1] = tw_value_int(2);
	items[0] = tw_value_int(3);
	items[1] = tw_value_double(0.5);
	items[2] = tw_value_bool(true);
	items[3] = tw_value_none();
	items[4] = (tw_value){.kind = TW_KIND_LIST,
			      .flags = TW_VALUE_BORROWED,
			      .len = 2,
			      .u.items = pair};
	items[5] = (tw_value){.kind = TW_KIND_TUPLE,
			      .flags = TW_VALUE_BORROWED,
			      .len = 2,
			      .u.items = pair};
	for (uint32_t k = 0; k <= 6; k++) {
		args = (tw_value){.kind = TW_KIND_TUPLE,
				  .flags = TW_VALUE_BORROWED,
				  .len = k,
				  .u.items = items};
		for (int withkw = 0; withkw < 2; withkw++) {
			uint32_t nk = 0;
			if (withkw && n > 0) {
				kv[0] = (tw_kv){
					.key = tw_schema_arg_name(s, n - 1),
					.key_len = (uint32_t)strlen(
						tw_schema_arg_name(s, n - 1)),
					.val = items[k % 6]};
				nk = 1;
			}
			kw = (tw_value){.kind = TW_KIND_DICT,
					.flags = TW_VALUE_BORROWED,
					.len = nk,
					.u.entries = kv};
			tw_status st = tw_schema_bind(s, &args, &kw, bound);
			if (st == TW_OK) {
				tw_schema_bound_release(bound, n);
			} else {
				if (st != TW_ETYPE && st != TW_ENOMEM)
					fail();
				if (tw_errmsg(st)[0] == '\0' ||
				    tw_errmsg(st) == tw_strerror(st))
					fail(); /* every refusal says why */
				for (size_t i = 0; i < n; i++)
					if (bound[i].kind != TW_KIND_NONE)
						fail();
			}
			size_t chosen;
			const tw_schema *one[2] = {s, s};
			st = tw_schema_match(one, 2, &args, &kw, &chosen,
					     bound);
			if (st == TW_OK)
				tw_schema_bound_release(bound, n);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tw_schema *s = NULL, *again = NULL;
	tw_status st;

	st = tw_schema_parse_len((const char *)data, size, &s);
	if (st != TW_OK) {
		/* Every refusal says where and why: " at <pos>" ends it. */
		const char *m = tw_errmsg(st);
		const char *at = strrchr(m, ' ');
		if (s != NULL || (st != TW_EINVAL && st != TW_ENOMEM) ||
		    at == NULL || at - m < 3 ||
		    strncmp(at - 3, " at ", 4) != 0 ||
		    strtoull(at + 1, NULL, 10) > size)
			fail();
		return 0;
	}
	char *text = format(s);
	if (text == NULL)
		goto out;
	st = tw_schema_parse(text, &again);
	if (st == TW_ENOMEM)
		goto out;
	if (st != TW_OK || !tw_schema_equal(s, again))
		fail();
	char *text2 = format(again);
	if (text2 != NULL) {
		if (strcmp(text, text2) != 0)
			fail();
		free(text2);
	}
	/* Reading every part must be safe. */
	for (size_t i = 0; i < tw_schema_nargs(s); i++) {
		char ty[64];
		tw_type_format(tw_schema_arg_type(s, i), ty, sizeof(ty));
		tw_type_repr(tw_schema_arg_type(s, i), ty, sizeof(ty));
		(void)tw_schema_arg_default(s, i);
	}
	try_binds(s);
out:
	free(text);
	tw_schema_free(again);
	tw_schema_free(s);
	return 0;
}
