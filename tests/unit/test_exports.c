/* The shared library exports exactly the public API: every function the
 * public headers declare (the list scripts/gen-exports.py wrote at build
 * time) and no other symbol. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TW_EXPORTS_LIST
#error "TW_EXPORTS_LIST (the build's exports.txt) must be defined"
#endif
#ifndef TW_SHARED_LIB
#error "TW_SHARED_LIB (the built libtensorwire.so) must be defined"
#endif

#define MAX_SYMS 4096

struct names {
	char *v[MAX_SYMS];
	size_t n;
};

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add(struct names *s, const char *name)
{
	cr_assert_lt(s->n, MAX_SYMS);
	s->v[s->n++] = strdup(name);
}

static bool has(const struct names *s, const char *name)
{
	return bsearch(&name, s->v, s->n, sizeof(s->v[0]), cmp) != NULL;
}

static void read_lines(FILE *f, struct names *s, bool nm)
{
	char line[512];
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (!nm) {
			if (line[0] != '\0')
				add(s, line);
			continue;
		}
		/* nm -D --defined-only: "ADDR TYPE NAME[@VERSION]" */
		char addr[64], type[8], name[400];
		if (sscanf(line, "%63s %7s %399s", addr, type, name) != 3)
			continue;
		name[strcspn(name, "@")] = '\0';
		add(s, name);
	}
	qsort(s->v, s->n, sizeof(s->v[0]), cmp);
}

Test(exports, exactly_the_public_api)
{
	struct names want = {0}, got = {0};
	FILE *f = fopen(TW_EXPORTS_LIST, "r");
	cr_assert_not_null(f, "%s", TW_EXPORTS_LIST);
	read_lines(f, &want, false);
	fclose(f);
	cr_assert_gt(want.n, 100, "the public API has %zu functions?", want.n);

	FILE *p = popen("nm -D --defined-only '" TW_SHARED_LIB "'", "r");
	cr_assert_not_null(p, "nm");
	read_lines(p, &got, true);
	cr_assert_eq(pclose(p), 0, "nm -D %s failed", TW_SHARED_LIB);

	size_t extra = 0, missing = 0;
	for (size_t i = 0; i < got.n; i++) {
		if (!has(&want, got.v[i])) {
			fprintf(stderr, "exported but not public: %s\n",
				got.v[i]);
			extra++;
		}
	}
	for (size_t i = 0; i < want.n; i++) {
		if (!has(&got, want.v[i])) {
			fprintf(stderr, "public but not exported: %s\n",
				want.v[i]);
			missing++;
		}
	}
	cr_expect_eq(extra, 0, "%zu symbols exported beyond the public API",
		     extra);
	cr_expect_eq(missing, 0, "%zu public functions not exported", missing);
	for (size_t i = 0; i < want.n; i++)
		free(want.v[i]);
	for (size_t i = 0; i < got.n; i++)
		free(got.v[i]);
}
