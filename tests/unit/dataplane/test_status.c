/* dataplane/status.c: every status has a name and a description, and the
 * thread's explanation of its last failure (tw_errmsg) keeps its contract:
 * per status, per thread, bounded. The failing calls are the library's own
 * (tw_value accessors), as a user would meet them. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <tensorwire/status.h>
#include <tensorwire/value.h>

#include "dataplane/err.h"

Test(status, every_code_has_a_name)
{
	for (int s = 0; s < TW_STATUS_COUNT_; s++) {
		const char *n = tw_status_name((tw_status)s);
		const char *d = tw_strerror((tw_status)s);
		cr_assert_not_null(n);
		cr_assert_not_null(d);
		cr_expect_eq(strncmp(n, "TW_", 3), 0, "code %d: %s", s, n);
		cr_expect_neq(strcmp(n, "TW_E?"), 0, "code %d unnamed", s);
		cr_expect_gt(strlen(d), 0);
	}
	cr_expect_str_eq(tw_status_name(TW_OK), "TW_OK");
	cr_expect_str_eq(tw_status_name(TW_EPROTO), "TW_EPROTO");
	cr_expect_str_eq(tw_status_name(TW_ENOENT), "TW_ENOENT");
	cr_expect_str_eq(tw_status_name(TW_STATUS_COUNT_), "TW_E?");
	cr_expect_str_eq(tw_status_name((tw_status)-1), "TW_E?");
	cr_expect_str_eq(tw_status_name((tw_status)1000), "TW_E?");
	cr_expect_not_null(tw_strerror((tw_status)-7));
	cr_expect_not_null(tw_strerror(TW_STATUS_COUNT_));
}

/* Asked about another status than the last failure's, tw_errmsg gives
 * that status's description, never the other reason; success records
 * nothing. */
Test(errmsg, another_kind_gets_its_description)
{
	tw_value s;
	int64_t i;
	cr_assert_eq(tw_value_cstring(&s, "x"), TW_OK);
	cr_assert_eq(tw_value_get_int(&s, &i), TW_ETYPE);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), tw_strerror(TW_EINVAL));
	cr_assert_str_eq(tw_errmsg(TW_OK), "success");
	cr_assert_str_eq(tw_errmsg((tw_status)99), "unknown status");
	const char *str;
	cr_assert_eq(tw_value_get_string(&s, &str, NULL), TW_OK);
	cr_assert_str_eq(tw_errmsg(TW_ETYPE),
			 "expected an int, got a value of kind 'string'");
	/* A failure with nothing to add clears an older reason of its kind. */
	tw_fail_static(TW_ETYPE, NULL);
	cr_assert_str_eq(tw_errmsg(TW_ETYPE), tw_strerror(TW_ETYPE));
	tw_value_destroy(&s);
}

/* TW_ERRMSG_MAX bounds every reason: longer ones are cut, not overflowed
 * (ASan watches the thread's buffer), and wrapping a reason in itself
 * (tw_fail_wrap) stays in bounds too. */
Test(errmsg, long_reasons_are_cut)
{
	size_t n = 3 * TW_ERRMSG_MAX;
	char *big = malloc(n + 1);
	cr_assert_not_null(big);
	memset(big, 'y', n);
	big[n] = '\0';
	cr_assert_eq(tw_fail(TW_EIO, "x%s", big), TW_EIO);
	const char *m = tw_errmsg(TW_EIO);
	cr_assert_eq(strlen(m), TW_ERRMSG_MAX - 1);
	cr_assert_eq(m[0], 'x');
	cr_assert_eq(m[TW_ERRMSG_MAX - 2], 'y');
	cr_assert_eq(tw_fail_wrap(TW_EPROTO, TW_EIO, "outer"), TW_EPROTO);
	m = tw_errmsg(TW_EPROTO);
	cr_assert_eq(strlen(m), TW_ERRMSG_MAX - 1);
	cr_assert(strncmp(m, "outer: xyyy", 11) == 0, "%.20s", m);
	free(big);
}

/* Reasons are per thread: two threads failing at once, over and over,
 * each read back their own. */
struct errmsg_thread {
	uint32_t len; /* its list's length: part of its message */
	atomic_int *go;
	int bad;
};

static void *errmsg_worker(void *p)
{
	struct errmsg_thread *t = p;
	tw_value l;
	char want[128];
	const tw_value *out;
	if (tw_value_list(&l, t->len) != TW_OK)
		return NULL;
	while (!atomic_load(t->go))
		;
	for (uint32_t i = 0; i < 20000; i++) {
		uint32_t idx = t->len + i % 7;
		if (tw_value_get_item(&l, idx, &out) != TW_EINVAL)
			t->bad++;
		snprintf(want, sizeof(want),
			 "index %u out of range for a list "
			 "of %u",
			 idx, t->len);
		if (strcmp(tw_errmsg(TW_EINVAL), want) != 0)
			t->bad++;
	}
	tw_value_destroy(&l);
	return NULL;
}

Test(errmsg, reasons_are_per_thread)
{
	atomic_int go = 0;
	struct errmsg_thread t[2] = {{.len = 3, .go = &go},
				     {.len = 1000, .go = &go}};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, errmsg_worker, &t[i]),
			     0);
	tw_fail_static(TW_EINVAL, "the main thread's own");
	atomic_store(&go, 1);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(t[i].bad, 0, "thread %d read another's reason", i);
	}
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "the main thread's own");
}
