"""torch.distributed.autograd over tensorwire:
``import tensorwire.distributed.autograd as dist_autograd``.

    with dist_autograd.context() as context_id:
        loss = rpc.rpc_sync("worker1", model_part, args=(x,)).sum()
        dist_autograd.backward(context_id, [loss])
        grads = dist_autograd.get_gradients(context_id)

Inside a context, rpc_sync and rpc_async of a Python function, a
TorchScript function, or a torch builtin whose arguments require grad
record a send function on the caller and a recv function on the callee
(a builtin then runs as a Python call of the torch op, so the callee's
autograd records it); the answer records the same the other way.
backward() runs the graph from the roots across every worker the
gradients flow to, in torch's FAST mode, and the gradients of the leaves
each worker reaches accumulate in the context there (get_gradients on
that worker), never in ``.grad``. Leaving the context ends it on every
worker it reached. A function named by a string ("aten::add",
"demo::f") is served without a graph and records nothing.

remote() in a context runs the function on the owner with autograd on
and keeps its result with its graph; to_here() in a context fetches the
value recording send and recv functions, so a backward pass reaches the
owner's graph (and its parameters' gradients stay in the owner's
context).
"""

import torch

from tensorwire import _C
from tensorwire.distributed import _ag_rpc, _ag_rref
from tensorwire.distributed import _ag_state as _state
from tensorwire.rpc import api as _api

__all__ = ["context", "backward", "get_gradients"]


class context:
    """A distributed autograd context, as torch's: ``with context() as
    context_id``. One per thread at a time; leaving it ends it here and on
    every worker it reached."""

    def __enter__(self):
        if _state.current() is not None:
            raise RuntimeError(
                "Already have an autograd context id for this thread.")
        _state.sweep()
        try:
            cid = _C.ag_context_new()
        except _C.RemoteError as e:
            from tensorwire.rpc import _raise_remote
            _raise_remote(e.args)
        _state.new(cid)
        _state.set_current(cid)
        self.autograd_context_id = cid
        return cid

    def __exit__(self, exc_type, exc, tb):
        cid = self.autograd_context_id
        _state.set_current(None)
        _release_context(cid)
        return False


def _release_context(context_id):
    """End a context here and everywhere it went (torch's
    _release_context)."""
    _state.drop(context_id)
    _C.ag_context_release(context_id)


def _is_valid_context(context_id):
    return _C.ag_context_valid(context_id)


def _current_context_id():
    """The calling thread's context id, or None."""
    return _state.current()


def _context_count():
    """(contexts the agent holds, contexts with Python state): both 0 once
    every context that reached this worker ended."""
    return _C.ag_context_count(), _state.count()


def _context_workers(context_id):
    """The workers a context reached from this worker, in rank order."""
    return _C.ag_context_workers(context_id)


def backward(context_id, roots, retain_graph=False):
    """Run the backward pass of context context_id from roots (scalar
    tensors of this worker) across every worker the gradients flow to
    (torch's FAST mode); returns when every worker's part is done, raising
    the first error of any of them (naming it)."""
    ctx = _state.get(context_id)
    if roots is None or len(roots) == 0:
        raise RuntimeError("No tensors provided for gradient computation.")
    roots = list(roots)
    for r in roots:
        if not r.requires_grad:
            raise RuntimeError("requires_grad not set on root")
        if r.numel() != 1:
            raise RuntimeError(
                " is not a scalar, all roots need to be scalar")
        if r.grad_fn is None:
            raise RuntimeError(" does not have a valid gradient function.")
    pending = _ag_rpc.run(ctx, roots, [torch.ones_like(r) for r in roots],
                          retain_graph)
    _ag_rpc.wait(pending)  # the first error of any worker raises


def get_gradients(context_id):
    """{tensor: gradient} of the leaves of this worker that backward passes
    of the context reached (a copy of the map, the gradients themselves)."""
    ctx = _state.get(context_id)
    with ctx.lock:
        return dict(ctx.grads)


# A call in a context goes through _ag_rpc.start; a Python worker serves
# one that came in an envelope with _ag_rpc.serve (api._run_job).
_api._ag_start = _ag_rpc.start
_api._ag_remote = _ag_rref.remote
_api._ag_to_here = _ag_rref.to_here
