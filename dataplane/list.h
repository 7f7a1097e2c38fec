/* Internal: the one list idiom. BSD <sys/queue.h> (as DPDK and SPDK use
 * it), with the macros glibc's copy lacks. Singly linked tail queues
 * (STAILQ) for FIFOs, tail queues (TAILQ) where an element leaves from the
 * middle, LIST where an element must unlink itself without its head; all
 * intrusive: an element embeds its entry, nothing allocates. TAILQ and
 * STAILQ heads need their INIT (an all-zero head is not empty); a LIST
 * head is empty when zeroed.
 *
 * One exception: the timer wheel (timer.c) keeps circular lists with a
 * sentinel per slot, so a timer is cancelled in O(1) knowing neither its
 * slot nor whether it sits in the wheel or the overflow list. */
#ifndef TW_DATAPLANE_LIST_H
#define TW_DATAPLANE_LIST_H

#include <sys/queue.h>

#ifndef STAILQ_FOREACH_SAFE
#define STAILQ_FOREACH_SAFE(var, head, field, tvar)                     \
	for ((var) = STAILQ_FIRST((head));                               \
	     (var) && ((tvar) = STAILQ_NEXT((var), field), 1);           \
	     (var) = (tvar))
#endif

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                      \
	for ((var) = TAILQ_FIRST((head));                                \
	     (var) && ((tvar) = TAILQ_NEXT((var), field), 1);            \
	     (var) = (tvar))
#endif

#ifndef STAILQ_REMOVE_AFTER
#define STAILQ_REMOVE_AFTER(head, elm, field)                           \
	do {                                                             \
		if ((STAILQ_NEXT(elm, field) =                           \
			     STAILQ_NEXT(STAILQ_NEXT(elm, field), field)) == \
		    NULL)                                                \
			(head)->stqh_last = &STAILQ_NEXT((elm), field);  \
	} while (0)
#endif

#endif
