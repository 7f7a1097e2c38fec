/* Distributed autograd, the part that crosses workers (docs/autograd.md):
 * contexts, the workers each reached, and their cleanup everywhere. The
 * graph and the gradients are the Python package's (torch's autograd). */
#ifndef TENSORWIRE_AUTOGRAD_H
#define TENSORWIRE_AUTOGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/agent.h>
#include <tensorwire/future.h>
#include <tensorwire/message.h>
#include <tensorwire/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Contexts a worker holds at once, its own and those its peers' calls
 * brought: past it a new one is refused (TW_EBUSY), never grown. */
#define TW_AG_MAX_CONTEXTS 65536u

/*
 * A new context of this worker: *id = (rank << 48) | n, n counting from 0,
 * as torch's DistAutogradContainer. TW_ENOTSUP for a rank past 65535 (the
 * id has 16 bits for it), TW_EOVERFLOW once 2^48 ids are used, TW_EBUSY at
 * TW_AG_MAX_CONTEXTS, TW_ESHUTDOWN once shutdown began. Any thread.
 */
tw_status tw_ag_context_new(tw_agent *a, int64_t *id);

/*
 * End context id here and, by AG_CLEANUP, on every worker it reached,
 * each of which passes it on to the workers it reached (docs/wire.md
 * §5.2). The cleanups are sent, not waited for: a worker that is gone or
 * slow does not hold the caller. TW_EINVAL for an unknown id, with torch's
 * message "Could not find autograd context with id: <id>". Any thread.
 */
tw_status tw_ag_context_release(tw_agent *a, int64_t id);

/* Whether context id is held here. */
bool tw_ag_context_valid(const tw_agent *a, int64_t id);

/*
 * Record that context id reached worker w (a forward message went to it
 * or came from it); creates the context here if it is not held yet (a
 * peer's). TW_EINVAL for a negative id or w past the world,
 * TW_EBUSY at TW_AG_MAX_CONTEXTS. The agent records this itself for the
 * messages it carries in an autograd envelope.
 */
tw_status tw_ag_context_reach(tw_agent *a, int64_t id, uint32_t w);

/* The workers context id reached, in rank order: the first cap into out;
 * returns how many there are (0 for an unknown id). */
size_t tw_ag_context_workers(const tw_agent *a, int64_t id, uint32_t *out,
			     size_t cap);

/* Contexts held here now. */
uint32_t tw_ag_context_count(const tw_agent *a);

/* A new autograd message id of this worker, (rank << 48) | n. */
int64_t tw_ag_message_id(tw_agent *a);

/*
 * fn(a, id, arg) runs whenever a context ends here: released by
 * tw_ag_context_release, by a peer's AG_CLEANUP, or because the worker
 * that created it died. It may run on a run loop: it must not block nor
 * call back into the agent. NULL removes it.
 */
typedef void (*tw_ag_release_fn)(tw_agent *a, int64_t id, void *arg);
void tw_ag_set_release_hook(tw_agent *a, tw_ag_release_fn fn, void *arg);

/* ---- the backward pass across workers (docs/wire.md §5.2) ---- */

/*
 * Serve AG_BACKWARD with fn, a handler (agent.h) called with four
 * positional arguments (int context_id, int message_id, list grads of
 * tensors or None, bool retain_graph) and no keyword arguments; it
 * answers None once this worker's part of the backward pass is done (it
 * may defer), or fails with the error, which reaches the worker that sent
 * the gradients. flags: TW_FN_BLOCKING runs it on the executor. The agent
 * answers for it an unknown context (torch's message, TW_EINVAL), and
 * without a handler TW_ENOTSUP. Set once (TW_EBUSY after), before the
 * group's first backward pass.
 */
tw_status tw_ag_set_backward_handler(tw_agent *a, tw_handler_fn fn, void *arg,
				     unsigned flags);

/*
 * Send the gradients for the send function message_id of context_id to
 * worker `to` (AG_BACKWARD), which runs its part of the backward pass: the
 * future completes with None when that part is done, or fails with its
 * error (or TW_ETIMEDOUT, TW_EUNREACHABLE as any call). grads: a list of
 * tensors or None (borrowed, read before return). timeout_ms as
 * tw_rpc_async's. TW_EINVAL for a worker that is not a peer (this one
 * included: a worker's own part runs in process).
 */
tw_status tw_ag_backward_async(tw_agent *a, uint32_t to, int64_t context_id,
			       int64_t message_id, const tw_value *grads,
			       bool retain_graph, int64_t timeout_ms,
			       tw_future **out);

/* ---- forward messages (docs/wire.md §5.2) ---- */

/*
 * tw_rpc_async_ex with autograd metadata m (tw_ag_meta, message.h): the
 * CALL travels in an autograd envelope, and m->context_id is recorded as
 * having reached `to` (created here if it was not held). m's mask must
 * have one bit per tensor in args and kwargs (the encoder refuses
 * another, TW_EINVAL, sending nothing). A call to self carries m in
 * process. The answer's metadata: tw_future_ag. Errors as
 * tw_rpc_async_ex's, and tw_ag_context_reach's.
 */
tw_status tw_rpc_async_ag(tw_agent *a, uint32_t to, const char *fn,
			  const tw_value *args, const tw_value *kwargs,
			  int64_t timeout_ms, unsigned flags,
			  const tw_ag_meta *m, tw_future **out);

/* The autograd metadata of a completed future's answer (a RET in an
 * envelope, or what its completer set): true and *out filled, the mask
 * borrowed from f (valid while f is held); false when it has none. */
bool tw_future_ag(const tw_future *f, tw_ag_meta *out);

/* Give the answer f will be (a deferred handler's future) metadata m,
 * copied: the reply then travels in an envelope. Before completing f;
 * TW_EINVAL after. */
tw_status tw_future_set_ag(tw_future *f, const tw_ag_meta *m);

/* The metadata of the call a handler serves, or NULL when it came without
 * (borrowed: valid while the handler runs; copy what a deferred answer
 * needs). The agent has recorded the context as reaching the caller. */
const tw_ag_meta *tw_call_ag(const tw_call_ctx *ctx);

/* Answer the call being served in an envelope carrying m (copied), for a
 * handler that answers by returning; a deferred one sets it on its future
 * (tw_future_set_ag). An error answer carries none. */
tw_status tw_call_set_ag(tw_call_ctx *ctx, const tw_ag_meta *m);

#ifdef __cplusplus
}
#endif
#endif
