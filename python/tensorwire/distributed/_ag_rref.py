"""remote() and RRef.to_here() in a distributed autograd context
(docs/autograd.md, "RRefs").

remote(): the owner runs the function with autograd on and the context
current, and keeps the result with its graph (a tensor that requires grad
is kept as the object itself, rpc._keep). The caller's grad-requiring
arguments become a send function as for rpc_async; they travel listed
beside the call's arguments (the pickle lifts a tensor once, so the list
and the arguments hold the same objects on the owner), which is how the
owner knows its recv leaves: the call goes as REMOTE_CALL without an
envelope, and both sides record the context reaching the other
(tw_ag_context_reach), so that its end reaches the owner.

to_here(): a user fetches the value with a Python call to the owner in
the context's envelope (_ag_rpc.start), whose answer records a send
function over the value's grad-requiring tensors on the owner and recv
leaves here. The owner's own to_here() is the value itself, graph and
all."""

import torch

from tensorwire import _C
from tensorwire.distributed import _ag_rpc
from tensorwire.distributed import _ag_state as state
from tensorwire.rpc import api


def remote(to, func, args, kwargs, timeout):
    """An RRef, or None when the call goes as any remote() (no context on
    this thread; a function named by a string; a TorchScript function; a
    builtin none of whose arguments requires grad)."""
    cid = state.current()
    if cid is None or isinstance(func, str):
        return None
    kind = api._kind(func)
    args = tuple(args) if args is not None else ()
    kwargs = dict(kwargs) if kwargs is not None else {}
    if kind == "builtin" and not _ag_rpc._any_grad(args, kwargs):
        return None
    if kind not in ("builtin", "udf"):
        return None
    ctx = state.get(cid)
    sent = [t for t in _ag_rpc._tensors((args, kwargs), [])
            if _ag_rpc._needs_grad(t)]
    msg = _C.ag_message_id()
    if sent:
        ctx.add_send(msg, sent)
    to_id = api._to_id(to)
    _C.ag_context_reach(cid, to_id)
    return api._remote_plain(
        to_id, _owner_run, (cid, msg, api._self_id, sent, func, args,
                            kwargs), None, timeout)


def _owner_run(cid, msg, caller, received, func, args, kwargs):
    """On the owner: func run in context cid, its arguments in `received`
    recv leaves for the caller's send function msg."""
    _C.ag_context_reach(cid, caller)
    ctx = state.get(cid)
    if received:
        rec = state.Recv(caller, msg, len(received))
        for i, t in enumerate(received):
            t.requires_grad_(True)
            ctx.add_recv(rec, i, t)
    prev = state.set_current(cid)
    try:
        with torch.enable_grad():
            return func(*args, **kwargs)
    finally:
        state.set_current(prev)


def to_here(rref, timeout):
    """The value in the thread's context (a tuple (value,)), or None when
    there is no context."""
    if state.current() is None:
        return None
    if rref.is_owner():
        return (rref.local_value(),)
    return (api.rpc_sync(rref.owner().id, _value, (rref,), timeout=timeout),)


def _value(rref):
    """On the owner: the value, answered in the caller's context."""
    return rref.local_value()
