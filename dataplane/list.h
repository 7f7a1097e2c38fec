/* Internal: the one list idiom. BSD <sys/queue.h> (as DPDK and SPDK use
 * it), with the macros glibc's copy lacks. Singly linked tail queues
 * (STAILQ) for FIFOs, tail queues (TAILQ) where an element leaves from the
 * middle, LIST where an element must unlink itself without its head; all
 * intrusive: an element embeds its entry, nothing allocates. SLIST where
 * elements are pushed at the head and nothing needs the tail or an O(1)
 * unlink (a stack). TAILQ and STAILQ heads need their INIT (an all-zero
 * head is not empty); LIST and SLIST heads are empty when zeroed.
 *
 * Exceptions: the timer wheel (timer.c) keeps circular lists with a
 * sentinel per slot, so a timer is cancelled in O(1) knowing neither its
 * slot nor whether it sits in the wheel or the overflow list. A future's
 * callbacks (rpc/future.c) are a lock-free stack, pushed by a CAS on its
 * head. The per-thread free lists (rpc/tcache.h) link freed objects of
 * any type through their first bytes: there is no entry to embed. */
#ifndef TW_DATAPLANE_LIST_H
#define TW_DATAPLANE_LIST_H

#include <stddef.h>
#include <sys/queue.h>

#ifndef STAILQ_FOREACH_SAFE
#define STAILQ_FOREACH_SAFE(var, head, field, tvar)                            \
	for ((var) = STAILQ_FIRST((head));                                     \
	     (var) && ((tvar) = STAILQ_NEXT((var), field), 1); (var) = (tvar))
#endif

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                             \
	for ((var) = TAILQ_FIRST((head));                                      \
	     (var) && ((tvar) = TAILQ_NEXT((var), field), 1); (var) = (tvar))
#endif

/* The last element, or NULL: stqh_last points at its entry. */
#ifndef STAILQ_LAST
#define STAILQ_LAST(head, type, field)                                         \
	(STAILQ_EMPTY((head))                                                  \
		 ? NULL                                                        \
		 : (struct type *)(void *)((char *)(head)->stqh_last -         \
					   offsetof(struct type, field)))
#endif

/* Move what follows elm (on head) to rest, which is left empty when
 * nothing does: O(1), as FreeBSD's. */
#ifndef STAILQ_SPLIT_AFTER
#define STAILQ_SPLIT_AFTER(head, elm, rest, field)                             \
	do {                                                                   \
		if (STAILQ_NEXT((elm), field) == NULL) {                       \
			STAILQ_INIT((rest));                                   \
		} else {                                                       \
			STAILQ_FIRST((rest)) = STAILQ_NEXT((elm), field);      \
			(rest)->stqh_last = (head)->stqh_last;                 \
			STAILQ_NEXT((elm), field) = NULL;                      \
			(head)->stqh_last = &STAILQ_NEXT((elm), field);        \
		}                                                              \
	} while (0)
#endif

/* Unlink the element after elm: a walk that keeps the previous element
 * removes in O(1). */
#ifndef SLIST_REMOVE_AFTER
#define SLIST_REMOVE_AFTER(elm, field)                                         \
	do {                                                                   \
		SLIST_NEXT((elm), field) =                                     \
			SLIST_NEXT(SLIST_NEXT((elm), field), field);           \
	} while (0)
#endif

#ifndef STAILQ_REMOVE_AFTER
#define STAILQ_REMOVE_AFTER(head, elm, field)                                  \
	do {                                                                   \
		if ((STAILQ_NEXT(elm, field) = STAILQ_NEXT(                    \
			     STAILQ_NEXT(elm, field), field)) == NULL)         \
			(head)->stqh_last = &STAILQ_NEXT((elm), field);        \
	} while (0)
#endif

#endif
