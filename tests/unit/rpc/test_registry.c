/* Function registry: registration, duplicates, lookups, and lookups racing
 * with registrations. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "rpc/registry.h"

static tw_status h_one(tw_call_ctx *ctx, const tw_value *args,
		       const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)ctx;
	(void)args;
	(void)kwargs;
	(void)arg;
	*result = tw_value_int(1);
	return TW_OK;
}

static tw_status h_two(tw_call_ctx *ctx, const tw_value *args,
		       const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)ctx;
	(void)args;
	(void)kwargs;
	(void)arg;
	*result = tw_value_int(2);
	return TW_OK;
}

Test(registry, add_and_find)
{
	struct registry r;
	cr_assert_eq(registry_init(&r), TW_OK);
	int tag = 7;
	cr_assert_eq(registry_add(&r, "demo::one", h_one, &tag, 0), TW_OK);
	cr_assert_eq(registry_add(&r, "demo::two", h_two, NULL, TW_FN_BLOCKING),
		     TW_OK);
	cr_assert_eq(registry_count(&r), 2);

	const struct reg_entry *e = registry_find(&r, "demo::one", 9);
	cr_assert_not_null(e);
	cr_assert_eq(e->fn, h_one);
	cr_assert_eq(e->arg, &tag);
	cr_assert_eq(e->flags, 0u);
	cr_assert_str_eq(e->name, "demo::one");

	e = registry_find(&r, "demo::two", strlen("demo::two"));
	cr_assert_not_null(e);
	cr_assert_eq(e->fn, h_two);
	cr_assert_eq(e->flags, TW_FN_BLOCKING);

	/* Lookups take a length: a prefix or a longer name is another name. */
	cr_assert_null(registry_find(&r, "demo::on", 8));
	cr_assert_null(registry_find(&r, "demo::one!", 10));
	cr_assert_not_null(registry_find(&r, "demo::one!", 9));
	cr_assert_null(registry_find(&r, "nope", 4));
	cr_assert_null(registry_find(&r, "", 0));
	cr_assert_null(registry_find(&r, NULL, 3));
	registry_fini(&r);
}

Test(registry, duplicates_and_bad_input)
{
	struct registry r;
	cr_assert_eq(registry_init(&r), TW_OK);
	cr_assert_eq(registry_add(&r, "f", h_one, NULL, 0), TW_OK);
	cr_assert_eq(registry_add(&r, "f", h_two, NULL, 0), TW_EBUSY);
	cr_assert_str_eq(tw_errmsg(TW_EBUSY),
			 "function 'f' is already registered");
	/* The first registration stays. */
	cr_assert_eq(registry_find(&r, "f", 1)->fn, h_one);
	cr_assert_eq(registry_add(&r, "", h_one, NULL, 0), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "function name is empty");
	cr_assert_eq(registry_add(&r, NULL, h_one, NULL, 0), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "function name is NULL");
	cr_assert_eq(registry_add(&r, "g", NULL, NULL, 0), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "function 'g' has no handler (fn is NULL)");
	cr_assert_eq(registry_add(&r, "g", h_one, NULL, 0x80), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "unknown flags 0x80 for function "
			 "'g' (only TW_FN_BLOCKING, 0x1, exists)");
	char big[REGISTRY_NAME_MAX + 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(registry_add(&r, big, h_one, NULL, 0), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "function name is 1025 bytes, over the limit of 1024");
	big[REGISTRY_NAME_MAX] = '\0';
	cr_assert_eq(registry_add(&r, big, h_one, NULL, 0), TW_OK);
	cr_assert_not_null(registry_find(&r, big, REGISTRY_NAME_MAX));
	cr_assert_eq(registry_count(&r), 2);
	registry_fini(&r);
}

Test(registry, many_names_grow)
{
	struct registry r;
	cr_assert_eq(registry_init(&r), TW_OK);
	char name[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "ns::fn%d", i);
		cr_assert_eq(registry_add(&r, name, (i & 1) ? h_one : h_two,
					  (void *)(intptr_t)i, 0),
			     TW_OK);
	}
	cr_assert_eq(registry_count(&r), 2000);
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "ns::fn%d", i);
		const struct reg_entry *e = registry_find(&r, name,
							  strlen(name));
		cr_assert_not_null(e, "%s", name);
		cr_assert_eq((intptr_t)e->arg, i);
		cr_assert_eq(e->fn, (i & 1) ? h_one : h_two);
	}
	registry_fini(&r);
}

/* Readers look up names (those registered before they start must always
 * be found; later ones either not yet or with the right entry) while a
 * writer keeps registering. */
struct race {
	struct registry r;
	_Atomic int stop;
	_Atomic int published; /* names 0 .. published-1 are registered */
	_Atomic long lookups;
	_Atomic int errors;
};

static void *reader(void *arg)
{
	struct race *x = arg;
	char name[32];
	unsigned seed = (unsigned)(uintptr_t)pthread_self();
	while (!atomic_load(&x->stop)) {
		int pub = atomic_load(&x->published);
		int i = (int)(rand_r(&seed) % (unsigned)(pub + 50));
		snprintf(name, sizeof(name), "race::%d", i);
		const struct reg_entry *e = registry_find(&x->r, name,
							  strlen(name));
		if (i < pub && e == NULL)
			atomic_fetch_add(&x->errors, 1);
		if (e != NULL &&
		    ((intptr_t)e->arg != i || strcmp(e->name, name) != 0))
			atomic_fetch_add(&x->errors, 1);
		atomic_fetch_add(&x->lookups, 1);
	}
	return NULL;
}

Test(registry, concurrent_register_and_lookup)
{
	static struct race x;
	memset(&x, 0, sizeof(x));
	cr_assert_eq(registry_init(&x.r), TW_OK);
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, reader, &x), 0);
	/* Let the readers get going first: on a busy 2-core machine the
	 * writer could otherwise finish before any reader ran once. */
	while (atomic_load(&x.lookups) < 100)
		sched_yield();
	char name[32];
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "race::%d", i);
		cr_assert_eq(registry_add(&x.r, name, h_one,
					  (void *)(intptr_t)i, 0),
			     TW_OK);
		atomic_store(&x.published, i + 1);
		if ((i & 63) == 0)
			sched_yield();
	}
	atomic_store(&x.stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(atomic_load(&x.errors), 0);
	cr_assert_gt(atomic_load(&x.lookups), 0);
	registry_fini(&x.r);
}
