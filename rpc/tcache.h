/* Per-thread free lists of same-size heap objects (futures, tensor
 * records): a call takes one and gives it back, mostly on one thread, and
 * malloc would otherwise see both on every call. A thread's list is freed
 * when it exits. A free object's first pointer-sized bytes hold the link. */
#ifndef TW_RPC_TCACHE_H
#define TW_RPC_TCACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* Under AddressSanitizer nothing is kept: a use after the last release is
 * reported rather than hidden by a reuse. */
#if defined(__SANITIZE_ADDRESS__)
#define TCACHE_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TCACHE_OFF 1
#endif
#endif
#ifndef TCACHE_OFF
#define TCACHE_OFF 0
#endif

/* One per thread and kind of object (_Thread_local, zeroed). */
struct tcache_list {
	void *head;
	uint32_t n;
	bool keyed; /* the exit destructor is registered */
};

/* One per kind of object. */
struct tcache {
	pthread_mutex_t mu; /* creates key once */
	pthread_key_t key;
	int key_state; /* 0 not yet, 1 made, -1 failed */
	uint32_t max;  /* objects kept per thread */
};
/* clang-format off */
#define TCACHE_INIT(max_) {PTHREAD_MUTEX_INITIALIZER, 0, 0, (max_)}
/* clang-format on */

static void tcache_drain(void *arg)
{
	struct tcache_list *l = arg;
	while (l->head != NULL) {
		void *o = l->head;
		l->head = *(void **)o;
		free(o);
	}
	l->n = 0;
	/* A put by a later destructor registers again (and is drained in
	 * glibc's next destructor round). */
	l->keyed = false;
}

/* An object of this thread's list, or NULL. */
static inline void *tcache_get(struct tcache_list *l)
{
	void *o = l->head;
	if (o == NULL)
		return NULL;
	l->head = *(void **)o;
	l->n--;
	return o;
}

/* Keep o (malloc'ed, at least a pointer in size) for the next get, or
 * free it. */
static inline void tcache_put(struct tcache *c, struct tcache_list *l, void *o)
{
	if (o == NULL)
		return;
	if (TCACHE_OFF || l->n + 1 > c->max) {
		free(o);
		return;
	}
	if (__builtin_expect(!l->keyed, 0)) {
		/* Without a destructor a thread's list would leak at exit:
		 * then nothing is kept on this thread. */
		pthread_mutex_lock(&c->mu);
		if (c->key_state == 0)
			c->key_state = pthread_key_create(&c->key,
							  tcache_drain) == 0
					       ? 1
					       : -1;
		int ks = c->key_state;
		pthread_mutex_unlock(&c->mu);
		if (ks != 1 || pthread_setspecific(c->key, l) != 0) {
			free(o);
			return;
		}
		l->keyed = true;
	}
	*(void **)o = l->head;
	l->head = o;
	l->n++;
}

#endif
