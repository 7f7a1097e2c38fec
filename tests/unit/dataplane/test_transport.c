/* Unit tests for dataplane/transport.c: providers by name, options head. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include <tensorwire/dpdk.h>
#include <tensorwire/uring.h>

#include "dataplane/transport.h"

/* A reason names what it is about; the wording may change, these words
 * may not. */
#define ASSERT_REASON(st, ...)                                                 \
	do {                                                                   \
		const char *m_ = tw_errmsg(st);                                \
		const char *w_[] = {__VA_ARGS__};                              \
		for (size_t i_ = 0; i_ < sizeof(w_) / sizeof(w_[0]); i_++)     \
			cr_assert(strstr(m_, w_[i_]) != NULL,                  \
				  "reason '%s' lacks '%s'", m_, w_[i_]);       \
	} while (0)

static tw_status p_check(const void *opts, uint32_t nloops)
{
	(void)opts, (void)nloops;
	return TW_OK;
}

static tw_status p_start(const void *opts, const struct tw_transport_group *g,
			 void **env)
{
	(void)opts, (void)g, (void)env;
	return TW_OK;
}

static tw_status p_create(void *env, uint32_t idx, tw_loop *loop,
			  const struct tw_transport_cbs *cbs,
			  tw_transport **out)
{
	(void)env, (void)idx, (void)loop, (void)cbs, (void)out;
	return TW_ENOTSUP;
}

static tw_status p_listen_addr(void *env, uint32_t idx, char *url, size_t len)
{
	(void)env, (void)idx;
	snprintf(url, len, "test://");
	return TW_OK;
}

static void p_stop(void *env)
{
	(void)env;
}

#define PROVIDER(n)                                                            \
	{                                                                      \
		.name = n, .check = p_check, .start = p_start,                 \
		.create = p_create, .listen_addr = p_listen_addr,              \
		.stop = p_stop                                                 \
	}

Test(transport, built_in_providers_by_name)
{
	const struct tw_transport_provider *u =
		tw_transport_provider_find(TW_TRANSPORT_URING);
	cr_assert_not_null(u);
	cr_assert_str_eq(u->name, "uring");
	/* Every build has a DPDK provider: without DPDK it says why. */
	const struct tw_transport_provider *d =
		tw_transport_provider_find(TW_TRANSPORT_DPDK);
	cr_assert_not_null(d);
	cr_assert_str_eq(d->name, "dpdk");
	cr_assert_null(tw_transport_provider_find("nosuch"));
	cr_assert_null(tw_transport_provider_find(""));
	cr_assert_null(tw_transport_provider_find(NULL));
	cr_assert_null(tw_transport_provider_find("URING"), "names are exact");
}

Test(transport, register_and_find)
{
	static const struct tw_transport_provider p = PROVIDER("t-one");
	cr_assert_null(tw_transport_provider_find("t-one"));
	cr_assert_eq(tw_transport_provider_register(&p), TW_OK);
	cr_assert_eq(tw_transport_provider_find("t-one"), &p);
	/* The same provider again: nothing changes. */
	cr_assert_eq(tw_transport_provider_register(&p), TW_OK);
	cr_assert_eq(tw_transport_provider_find("t-one"), &p);
}

Test(transport, a_name_is_provided_once)
{
	static const struct tw_transport_provider p = PROVIDER("t-dup");
	static const struct tw_transport_provider q = PROVIDER("t-dup");
	static const struct tw_transport_provider u = PROVIDER("uring");
	cr_assert_eq(tw_transport_provider_register(&p), TW_OK);
	tw_status st = tw_transport_provider_register(&q);
	cr_assert_eq(st, TW_EBUSY);
	ASSERT_REASON(st, "'t-dup'", "already");
	cr_assert_eq(tw_transport_provider_find("t-dup"), &p,
		     "the first stays");
	st = tw_transport_provider_register(&u);
	cr_assert_eq(st, TW_EBUSY, "a built-in name");
	ASSERT_REASON(st, "'uring'");
	cr_assert_neq(tw_transport_provider_find("uring"), &u);
}

Test(transport, a_provider_needs_a_name_and_five_functions)
{
	tw_status st = tw_transport_provider_register(NULL);
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "name");
	struct tw_transport_provider p = PROVIDER(NULL);
	cr_assert_eq(tw_transport_provider_register(&p), TW_EINVAL);
	for (int i = 0; i < 5; i++) {
		struct tw_transport_provider q = PROVIDER("t-partial");
		switch (i) {
		case 0:
			q.check = NULL;
			break;
		case 1:
			q.start = NULL;
			break;
		case 2:
			q.create = NULL;
			break;
		case 3:
			q.listen_addr = NULL;
			break;
		default:
			q.stop = NULL;
			break;
		}
		st = tw_transport_provider_register(&q);
		cr_assert_eq(st, TW_EINVAL, "function %d missing", i);
		ASSERT_REASON(st, "function");
	}
	cr_assert_null(tw_transport_provider_find("t-partial"));
}

/* Eight registrations; the ninth distinct one is refused, re-registering
 * one of the eight still works. (Registrations last for the process: this
 * test runs in a process of its own, as criterion runs every test.) */
Test(transport, at_most_eight_registrations)
{
	static char names[9][16];
	static struct tw_transport_provider ps[9];
	for (int i = 0; i < 9; i++) {
		snprintf(names[i], sizeof(names[i]), "t-cap%d", i);
		struct tw_transport_provider q = PROVIDER(names[i]);
		ps[i] = q;
	}
	for (int i = 0; i < 8; i++)
		cr_assert_eq(tw_transport_provider_register(&ps[i]), TW_OK,
			     "registration %d", i);
	tw_status st = tw_transport_provider_register(&ps[8]);
	cr_assert_eq(st, TW_ENOSPC);
	ASSERT_REASON(st, "8");
	cr_assert_null(tw_transport_provider_find("t-cap8"));
	cr_assert_eq(tw_transport_provider_register(&ps[3]), TW_OK);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(tw_transport_provider_find(names[i]), &ps[i]);
	cr_assert_not_null(tw_transport_provider_find("uring"));
}

Test(transport, options_head)
{
	cr_assert_eq(tw_transport_opts_check_head(NULL, "x", "x_init"), TW_OK,
		     "NULL: the defaults");
	struct tw_transport_opts_head h = {sizeof(h), "uring"};
	cr_assert_eq(tw_transport_opts_check_head(&h, "uring",
						  "tw_uring_opts_init"),
		     TW_OK);

	/* A size below the head's: never initialised. */
	h.opts_size = sizeof(h) - 1;
	tw_status st = tw_transport_opts_check_head(&h, "uring",
						    "tw_uring_opts_init");
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "uring", "opts_size", "tw_uring_opts_init");
	h.opts_size = 0;
	cr_assert_eq(tw_transport_opts_check_head(&h, "uring", "i"), TW_EINVAL);

	/* Another transport's options. */
	h.opts_size = sizeof(h);
	h.transport = "dpdk";
	st = tw_transport_opts_check_head(&h, "uring", "tw_uring_opts_init");
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "'dpdk'", "'uring'", "tw_uring_opts_init");

	/* No tag. */
	h.transport = NULL;
	st = tw_transport_opts_check_head(&h, "uring", "tw_uring_opts_init");
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "(none)", "'uring'");

	/* A tag is not a prefix match, and a long one is cut in the reason. */
	h.transport = "uringX";
	cr_assert_eq(tw_transport_opts_check_head(&h, "uring", "i"), TW_EINVAL);
	char longname[200];
	memset(longname, 'z', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	h.transport = longname;
	st = tw_transport_opts_check_head(&h, "uring", "i");
	cr_assert_eq(st, TW_EINVAL);
	cr_assert_lt(strlen(tw_errmsg(st)), 150, "reason: %s", tw_errmsg(st));

	/* A real options struct of a bigger size passes. */
	struct tw_dpdk_opts d;
	tw_dpdk_opts_init(&d, sizeof(d));
	cr_assert_eq(tw_transport_opts_check_head(&d, TW_TRANSPORT_DPDK,
						  "tw_dpdk_opts_init"),
		     TW_OK);
}
