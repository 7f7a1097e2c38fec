/* Internal: value operations the agent needs beyond the public API. */
#ifndef TW_RPC_VALUE_IMPL_H
#define TW_RPC_VALUE_IMPL_H

#include <tensorwire/value.h>

/*
 * tw_value_clone of a value that sits at nesting depth `depth` of a larger
 * tree (0: a root, as tw_value_clone): the depth limit
 * (TW_VALUE_MAX_DEPTH) counts from there. A call to self clones its args
 * at depth 1, where the call payload's tuple would hold them, so that it
 * refuses exactly what an encoded call refuses.
 */
tw_status value_clone_at(tw_value *dst, const tw_value *src, unsigned depth);

#endif
