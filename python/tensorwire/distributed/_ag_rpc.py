"""Distributed autograd across workers (docs/autograd.md): the send and
recv functions recorded for the calls made in a context, and the backward
pass (torch's FAST mode) that follows them.

- start(): on the caller, a call made in a context goes in an autograd
  envelope; the tensors it sends that require grad become a send function
  under a fresh message id, and the answer's tensors its mask marks
  become recv leaves.
- serve(): on the callee, a call that came in an envelope: the marked
  tensors become recv leaves, the function runs with autograd on and the
  context current, and the result's grad-requiring tensors become a send
  function named in the answer's envelope.
- run(): a backward pass from some tensors of this worker's graph:
  torch.autograd.grad over the leaves they reach; a plain leaf's gradient
  is added to the context, a recv leaf's goes to its sender's send
  function (AG_BACKWARD), whose worker runs its part the same way and
  answers when every part it caused is done, with the first error.
"""

import torch

from tensorwire import _C
from tensorwire.distributed import _ag_state as state
from tensorwire.futures import Future, collect_all
from tensorwire.rpc import api

try:
    from numpy import ndarray as _ndarray
except ImportError:  # no numpy: no arrays among the values
    _ndarray = ()


def _tensors(value, out):
    """The tensors of a value in the order the converter makes segments
    of them (torch tensors and numpy arrays; RRefs are not tensors)."""
    if isinstance(value, (torch.Tensor, _ndarray)):
        out.append(value)
    elif isinstance(value, (tuple, list)):
        for v in value:
            _tensors(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _tensors(v, out)
    return out


def _needs_grad(t):
    return isinstance(t, torch.Tensor) and t.requires_grad


def _mask(tensors):
    """(grad_mask bytes, [tensor or None]) over tensors: bit i of byte
    i // 8 set for a tensor that requires grad (docs/wire.md §5.2)."""
    mask = bytearray((len(tensors) + 7) // 8)
    sent = [None] * len(tensors)
    for i, t in enumerate(tensors):
        if _needs_grad(t):
            mask[i >> 3] |= 1 << (i & 7)
            sent[i] = t
    return bytes(mask), sent


def _record_recv(ctx, peer, meta, tensors):
    """The tensors meta's mask marks become recv leaves of ctx, standing
    for send function meta[1] of worker peer."""
    mask = meta[2]
    rec = None
    for i, t in enumerate(tensors):
        if not mask[i >> 3] >> (i & 7) & 1:
            continue
        if not isinstance(t, torch.Tensor) or not (
                t.is_floating_point() or t.is_complex()):
            continue  # a peer's mask on a tensor that cannot have grad
        if rec is None:
            rec = state.Recv(peer, meta[1], len(tensors))
        t.requires_grad_(True)
        ctx.add_recv(rec, i, t)


def _any_grad(args, kwargs):
    return any(_needs_grad(t) for t in _tensors((args, kwargs), []))


# ---- the caller ------------------------------------------------------------

def start(to, func, args, kwargs, timeout, waited):
    """rpc_async/rpc_sync in a context: (C future, map of the outcome), or
    None when the call goes as any call (no context on this thread; a
    function named by a string, which a C or registered function serves
    without a graph; a builtin none of whose arguments requires grad, as
    torch records none for it)."""
    cid = state.current()
    if cid is None or isinstance(func, str):
        return None
    ctx = state.get(cid)
    kind = api._kind(func)
    args = tuple(args) if args is not None else ()
    kwargs = dict(kwargs) if kwargs is not None else {}
    if kind == "builtin":
        if not _any_grad(args, kwargs):
            return None
        # Run by the callee's Python, whose autograd records it.
        from tensorwire.rpc import _udf_call
        qual, a, k, mapper = _udf_call(func, args, kwargs)
    elif kind in ("udf", "script"):
        qual, a, k, mapper = api._plan(func, args, kwargs)
    else:
        return None
    mask, sent = _mask(_tensors(a, []))
    msg = _C.ag_message_id()
    recorded = any(t is not None for t in sent)
    if recorded:
        ctx.add_send(msg, sent)
    to_id = api._to_id(to)
    try:
        cf = _C.rpc_async(to_id, qual, a, k, api._ms(timeout), waited,
                          (cid, msg, mask))
    except _C.RemoteError as e:
        if recorded:
            ctx.sends.pop(msg, None)
        from tensorwire.rpc import _raise_remote
        _raise_remote(e.args)

    def answer(ok, out):
        if ok:
            meta = cf.ag()
            if meta is not None:
                _record_recv(ctx, to_id, meta, _tensors(out, []))
        return mapper(ok, out)
    return cf, answer


# ---- the callee ------------------------------------------------------------

def serve(job):
    """Run a call that came in an autograd envelope (a Python worker's
    job) and answer it in one."""
    cid, msg, mask = job.ag
    try:
        ctx = state.get(cid)
        args, kwargs = job.args, job.kwargs
        _record_recv(ctx, job.caller, (cid, msg, mask),
                     _tensors((args, kwargs), []))
        prev = state.set_current(cid)
        try:
            with torch.enable_grad():
                result = job.fn(*args, **kwargs)
        finally:
            state.set_current(prev)
    except BaseException as e:
        api._fail_job(job, e)
        return
    from tensorwire.futures import Future
    if isinstance(result, Future) and getattr(job.fn, "_tw_async", False):
        def finish(fut):
            try:
                _answer(job, ctx, fut.wait())
            except BaseException as e:
                api._fail_job(job, e)
        result.add_done_callback(finish)
        return
    _answer(job, ctx, result)


def _answer(job, ctx, result):
    mask, sent = _mask(_tensors(result, []))
    try:
        if any(t is not None for t in sent):
            msg = _C.ag_message_id()
            ctx.add_send(msg, sent)
            job.complete(result, (ctx.id, msg, mask))
        else:
            job.complete(result)
    except BaseException as e:
        api._fail_job(job, e)


# ---- the backward pass -----------------------------------------------------

def _leaves(outputs):
    """The leaves of this worker's graph that outputs reach (recv leaves
    among them), each once, in the order met."""
    leaves, seen_leaf, seen = [], set(), set()
    stack = []
    for t in outputs:
        if t.grad_fn is not None:
            stack.append(t.grad_fn)
        elif t.requires_grad and id(t) not in seen_leaf:
            seen_leaf.add(id(t))
            leaves.append(t)
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        v = getattr(fn, "variable", None)
        if v is not None:  # AccumulateGrad: a leaf
            if id(v) not in seen_leaf:
                seen_leaf.add(id(v))
                leaves.append(v)
            continue
        for nxt, _ in fn.next_functions:
            if nxt is not None:
                stack.append(nxt)
    return leaves


def run(ctx, outputs, grad_outputs, retain_graph):
    """This worker's part of a backward pass from outputs (with
    grad_outputs): the futures of the parts it caused, of None or failing
    with their error: CFutures for other workers' (AG_BACKWARD), Futures
    for this worker's own (a call to self)."""
    leaves = _leaves(outputs)
    if not leaves:
        return []
    # The graph is kept whatever retain_graph says: in FAST mode a node
    # between two entry points (a send function and the roots, or two
    # send functions: a nested call's arguments computed from what came
    # in) runs once from each, and the second would find its buffers
    # freed. It goes with the context (its send and recv functions) and
    # the caller's tensors. (torch instead runs one graph task per worker
    # over all of a context's send functions, which waits for every one
    # of them: a send function that gets no gradient hangs it.)
    grads = torch.autograd.grad(outputs, leaves, grad_outputs,
                                retain_graph=True, allow_unused=True)
    onward = {}
    for leaf, g in zip(leaves, grads):
        if g is None:
            continue
        r = ctx.recvs.get(id(leaf))
        if r is None:
            ctx.accumulate(leaf, g)
            continue
        rec, i = r
        gl = onward.get(rec)
        if gl is None:
            gl = onward[rec] = [None] * rec.n
        gl[i] = g if gl[i] is None else gl[i] + g
    pending = []
    me = api._self_id
    for rec, gl in onward.items():
        if rec.peer == me:  # a call to self: its part runs here
            part = backward_part(ctx.id, rec.msg, gl, retain_graph)
            if type(part) is api.After:
                pending.extend(part)
            else:
                pending.append(part)
            continue
        try:
            cf = _C.ag_backward_async(rec.peer, ctx.id, rec.msg, gl,
                                      retain_graph, -1)
        except _C.RemoteError as e:
            # The parts already started still add into the context: let
            # them end before this raises, or get_gradients would see
            # gradients still moving.
            try:
                wait(pending)
            except Exception:
                pass
            from tensorwire.rpc import _raise_remote
            _raise_remote(e.args)
        pending.append(cf)
    return pending


def wait(pending):
    """Wait for the parts run() caused; the first error raises."""
    cfs = [p for p in pending if not isinstance(p, Future)]
    if cfs and not _C.wait_all(cfs):
        for cf in cfs:
            if cf.done():
                ok, out = cf.outcome()
                if not ok:
                    from tensorwire.rpc import _raise_remote
                    _raise_remote(out)
    for p in pending:
        if isinstance(p, Future):
            p.wait()


def _all(pending):
    """What the backward handler answers with: api.After(the CFutures)
    when every part it waits for is another worker's (the agent answers
    when they are done, no Python on the way), else a Future done when
    every one of pending is, failing with the first error among them."""
    if all(not isinstance(p, Future) for p in pending):
        return api.After(pending)
    pending = [p if isinstance(p, Future) else Future(_cf=p)
               for p in pending]
    if len(pending) == 1:
        return pending[0]

    def check(fut):
        for f in fut.wait():
            f.wait()  # raises its error
    return collect_all(pending).then(check)


def backward_part(context_id, message_id, grads, retain_graph):
    """AG_BACKWARD's handler (tw_ag_set_backward_handler): the gradients
    for send function message_id of context_id, run back through this
    worker's graph and on; answered when every part it caused is done
    (_all), holding no Python worker meanwhile: the parts of one pass may
    come back here many times over."""
    ctx = state.get(context_id)
    sent = ctx.sends.get(message_id)
    if sent is None:
        raise RuntimeError("Could not find send function for autograd "
                           "message id %d in context %d"
                           % (message_id, context_id))
    outs, gouts = [], []
    for t, g in zip(sent, grads):
        if t is not None and g is not None:
            outs.append(t)
            gouts.append(g)
    return _all(run(ctx, outs, gouts, retain_graph) if outs else [])
