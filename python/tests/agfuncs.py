"""Bodies and functions of the distributed autograd tests
(test_autograd.py), imported by the same name on every worker.

Parameters live on the worker that uses them: param(name) is a leaf made
from a seed of its name, the same on every worker, so rank 0 can build
the same computation locally (local_params) and compare gradients."""

import os
import threading
import time
import zlib

import torch

import tensorwire.distributed.autograd as dist_autograd
import tensorwire.rpc as rpc
from tensorwire.distributed import _ag_state

_params = {}


def _init(name, dtype):
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(4, 4, generator=g, dtype=torch.float64).to(dtype)


def param(name, dtype):
    """This worker's parameter `name`, a leaf that requires grad."""
    p = _params.get((name, dtype))
    if p is None:
        p = _params[(name, dtype)] = _init(name, dtype).requires_grad_()
    return p


def layer(name, x, params=None):
    w = param(name, x.dtype) if params is None else params(name, x.dtype)
    return torch.tanh(x @ w)


def chain(x, name, to, name2):
    """layer(name) here, then layer(name2) on worker `to` (nested)."""
    return rpc.rpc_sync(to, layer, args=(name2, layer(name, x)))


def grads_of(cid, names, dtype):
    """{name: this worker's gradient of param(name) in context cid}."""
    g = dist_autograd.get_gradients(cid)
    return {n: g.get(param(n, dtype)) for n in names}


def counts():
    return dist_autograd._context_count()


# ---- the computations: on rank 0, x a leaf of rank 0 -------------------------
#
# Each is (function of (x, layer_fn), {worker: parameter names}); layer_fn
# is None for the distributed run and a local layer for the reference.

def _on(worker, name, x, lf):
    if lf is not None:
        return lf(name, x)
    return rpc.rpc_sync(worker, layer, args=(name, x))


def c_two(x, lf):
    return _on("worker1", "A", x, lf)


def c_three(x, lf):
    """worker1 calls worker2 itself (the context travels on)."""
    if lf is not None:
        return lf("C", lf("B", x))
    return rpc.rpc_async("worker1", chain,
                         args=(x, "B", "worker2", "C")).wait()


def c_twice(x, lf):
    """worker1 visited twice, its parameter A used on both visits."""
    h = _on("worker1", "A", x, lf)
    h = _on("worker2", "C", h, lf)
    return _on("worker1", "A", h, lf)


def c_loop(x, lf):
    """worker1 calls back into worker0 (the caller) for its parameter P."""
    if lf is not None:
        return lf("P", lf("B", x))
    return rpc.rpc_sync("worker1", chain, args=(x, "B", "worker0", "P"))


def c_builtin(x, lf):
    """A torch builtin with grad-requiring arguments, on worker1."""
    return rpc.rpc_sync("worker1", torch.matmul,
                        args=(x, param("W", x.dtype)))


CASES = {
    "two": (c_two, {"worker1": ["A"]}),
    "three": (c_three, {"worker1": ["B"], "worker2": ["C"]}),
    "twice": (c_twice, {"worker1": ["A"], "worker2": ["C"]}),
    "loop": (c_loop, {"worker1": ["B"], "worker0": ["P"]}),
    "builtin": (c_builtin, {}),
}


def _x(dtype):
    g = torch.Generator().manual_seed(7)
    return torch.randn(3, 4, generator=g, dtype=torch.float64).to(dtype)


def _local(case, dtype, passes):
    """The reference: the same computation run here with torch's own
    autograd, gradients in .grad (passes backward passes, graph kept)."""
    fresh = {}

    def lp(name, dt):
        if name not in fresh:
            fresh[name] = _init(name, dt).requires_grad_()
        return fresh[name]
    fn, _ = CASES[case]
    x = _x(dtype).requires_grad_()
    if case == "builtin":
        w = _init("W", dtype).requires_grad_()
        fresh["W"] = w
        y = torch.matmul(x, w)
    else:
        y = fn(x, lambda n, h: layer(n, h, lp))
    loss = (y * y).sum()
    for _ in range(passes):
        loss.backward(retain_graph=True)
    out = {"x": x.grad}
    out.update({n: p.grad for n, p in fresh.items()})
    return out


def wait_contexts_gone(world, seconds=20):
    """Every worker's contexts (agent and Python state) back to zero;
    the counts seen last."""
    end = time.monotonic() + seconds
    while True:
        seen = [rpc.rpc_sync("worker%d" % r, counts) for r in range(world)]
        if all(c == (0, 0) for c in seen) or time.monotonic() > end:
            return seen
        time.sleep(0.02)


def body_grads(rank, world, case, dtname, passes=1):
    """(distributed gradients, local gradients, x.grad after, counts)."""
    dtype = getattr(torch, dtname)
    fn, where = CASES[case]
    x = _x(dtype).requires_grad_()
    with dist_autograd.context() as cid:
        y = fn(x, None)
        loss = (y * y).sum()
        for _ in range(passes):
            dist_autograd.backward(cid, [loss], retain_graph=passes > 1)
        mine = dist_autograd.get_gradients(cid)
        dist = {"x": mine.get(x)}
        if case == "builtin":
            # torch.matmul ran on worker1 over copies of x and W: their
            # gradients are worker1's (its recv leaves) -> sent back here.
            dist["W"] = mine.get(param("W", dtype))
        for w, names in where.items():
            if w == "worker0":
                dist.update(grads_of(cid, names, dtype))
            else:
                dist.update(rpc.rpc_sync(w, grads_of,
                                         args=(cid, names, dtype)))
        reached = dist_autograd._context_workers(cid)
    return {"dist": dist, "local": _local(case, dtype, passes),
            "x_grad": x.grad, "counts": wait_contexts_gone(world),
            "reached": reached}


# ---- errors ------------------------------------------------------------------

class _BadBackward(torch.autograd.Function):
    """x * 2 whose backward raises ValueError, or ends the process when
    die is set."""

    @staticmethod
    def forward(ctx, x, die):
        ctx.die = die
        return x * 2

    @staticmethod
    def backward(ctx, g):
        if ctx.die:
            os._exit(3)
        raise ValueError("boom in backward")


def bad_layer(x):
    return _BadBackward.apply(x, False)


def _msg(fn, *args):
    try:
        fn(*args)
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)
    return None


def body_errors(rank, world):
    out = {}
    x = torch.ones(2, requires_grad=True)
    with dist_autograd.context() as cid:
        loss = (x * 3).sum()
        out["nested"] = _msg(lambda: dist_autograd.context().__enter__())
        out["no_roots"] = _msg(dist_autograd.backward, cid, [])
        out["no_grad"] = _msg(dist_autograd.backward, cid,
                              [torch.ones(1)])
        out["not_scalar"] = _msg(dist_autograd.backward, cid,
                                 [torch.ones(3, requires_grad=True) * 2])
        out["no_fn"] = _msg(dist_autograd.backward, cid,
                            [torch.ones(1, requires_grad=True)])
    out["cid"] = cid
    out["after_backward"] = _msg(dist_autograd.backward, cid, [loss])
    out["after_grads"] = _msg(dist_autograd.get_gradients, cid)
    out["unknown"] = _msg(dist_autograd.backward, 424242, [loss])
    out["release_unknown"] = _msg(dist_autograd._release_context, 424242)
    with dist_autograd.context() as cid:
        y = rpc.rpc_sync("worker1", bad_layer, args=(x,))
        out["remote"] = _msg(dist_autograd.backward, cid, [y.sum()])
    # A context still works after a failed one, on the same thread.
    with dist_autograd.context() as cid:
        y = rpc.rpc_sync("worker1", torch.mul, args=(x, 2.0))
        dist_autograd.backward(cid, [y.sum()])
        out["after_error"] = dist_autograd.get_gradients(cid)[x]
    out["counts"] = wait_contexts_gone(world)
    return out


# ---- a worker that dies ------------------------------------------------------

def crash():
    os._exit(3)


def open_context_and_call(to):
    """A context of this worker that reaches `to` and is never ended here
    (this worker dies with it)."""
    cid = dist_autograd.context().__enter__()
    try:
        rpc.rpc_sync(to, layer, args=("A", torch.ones(2, 4,
                                                      requires_grad=True)))
    finally:
        _ag_state.set_current(None)
    return cid


_done = threading.Event()  # worker0 is done with worker1 (all_dead)


def _finish():
    _done.set()


def all_dead(rank, world):
    """worker2 dies with a context of its own open on worker1 and one of
    worker0's on the path of a backward pass. The others shut down at
    once (no barrier with a dead member), worker1 when worker0 is done."""
    if rank != 0:
        _done.wait(120)
        return None
    try:
        return _dead_body()
    finally:
        rpc.rpc_sync("worker1", _finish)


def _dead_body():
    out = {}
    x = _x(torch.float64).requires_grad_()
    cid2 = rpc.rpc_sync("worker2", open_context_and_call, args=("worker1",))
    out["w1_before"] = rpc.rpc_sync("worker1", counts)
    out["w1_has_cid2"] = rpc.rpc_sync("worker1", dist_autograd._is_valid_context,
                                      args=(cid2,))
    with dist_autograd.context() as cid:
        y = c_three(x, None)
        rpc.rpc_async("worker2", crash)
        time.sleep(0.2)
        t0 = time.monotonic()
        out["error"] = _msg(dist_autograd.backward, cid, [y.sum()])
        out["seconds"] = time.monotonic() - t0
    end = time.monotonic() + 20
    while time.monotonic() < end:
        c1 = rpc.rpc_sync("worker1", counts)
        if c1 == (0, 0):
            break
        time.sleep(0.05)
    out["w1_after"] = c1
    out["w0_after"] = counts()
    return out


# ---- RRefs to remote parameters, DistributedOptimizer ------------------------

def make_param(name, dtname):
    """A fresh parameter, kept by the owner of the RRef remote() makes."""
    return _init(name, getattr(torch, dtname)).requires_grad_()


def layer_of(rref, x):
    """On the parameter's owner: the layer over its local value."""
    return torch.tanh(x @ rref.local_value())


def _step_x(step, dtype):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(3, 4, generator=g, dtype=torch.float64).to(dtype)


def _model(x, a_fn, c_fn):
    y = torch.tanh(a_fn(x) @ c_fn())
    return (y * y).sum()


def body_rref_grads(rank, world, dtname):
    """Gradients through remote() and to_here() in a context, of
    parameters held by RRefs on worker1 and worker2."""
    dtype = getattr(torch, dtname)
    ra = rpc.remote("worker1", make_param, args=("A", dtname))
    rc = rpc.remote("worker2", make_param, args=("C", dtname))
    x = _x(dtype).requires_grad_()
    with dist_autograd.context() as cid:
        loss = _model(
            x, lambda h: rpc.remote("worker1", layer_of,
                                    args=(ra, h)).to_here(),
            rc.to_here)
        dist_autograd.backward(cid, [loss])
        dist = {"x": dist_autograd.get_gradients(cid).get(x),
                "A": rpc.rpc_sync("worker1", _owned_grad, args=(cid, ra)),
                "C": rpc.rpc_sync("worker2", _owned_grad, args=(cid, rc))}
    a = _init("A", dtype).requires_grad_()
    c = _init("C", dtype).requires_grad_()
    xl = _x(dtype).requires_grad_()
    _model(xl, lambda h: torch.tanh(h @ a), lambda: c).backward()
    return {"dist": dist, "local": {"x": xl.grad, "A": a.grad,
                                     "C": c.grad},
            "x_grad": x.grad, "counts": wait_contexts_gone(world)}


def _owned_grad(cid, rref):
    return dist_autograd.get_gradients(cid).get(rref.local_value())


def body_optim(rank, world, optname, dtname, steps=10):
    """A DistributedOptimizer training loop over parameters on worker1
    and worker2, and the same loop run locally: both sets of weights."""
    from tensorwire.distributed.optim import DistributedOptimizer
    dtype = getattr(torch, dtname)
    cls = getattr(torch.optim, optname)
    ra = rpc.remote("worker1", make_param, args=("A", dtname))
    rc = rpc.remote("worker2", make_param, args=("C", dtname))
    # A bad argument raises from the constructor, as torch's (the
    # owners' optimizers are made before it returns).
    try:
        DistributedOptimizer(cls, [ra, rc], lr=-1.0)
        bad_lr = None
    except Exception as e:
        bad_lr = "%s: %s" % (type(e).__name__, e)
    # A remote() in a context left at once: the owner runs it after the
    # context ended there, and must not make the context again.
    with dist_autograd.context():
        late = rpc.remote("worker1", layer_of, args=(ra, _step_x(0, dtype)))
    opt = DistributedOptimizer(cls, [ra, rc], lr=0.05)
    for step in range(steps):
        x = _step_x(step, dtype)
        with dist_autograd.context() as cid:
            loss = _model(
                x, lambda h: rpc.rpc_sync("worker1", layer_of,
                                          args=(ra, h)), rc.to_here)
            dist_autograd.backward(cid, [loss])
            opt.step(cid)
    dist = {"A": ra.to_here().detach(), "C": rc.to_here().detach()}
    a = _init("A", dtype).requires_grad_()
    c = _init("C", dtype).requires_grad_()
    lopt = cls([a, c], lr=0.05)
    for step in range(steps):
        lopt.zero_grad()
        _model(_step_x(step, dtype), lambda h: torch.tanh(h @ a),
               lambda: c).backward()
        lopt.step()
    del late
    return {"dist": dist, "local": {"A": a.detach(), "C": c.detach()},
            "init": _init("A", dtype), "counts": wait_contexts_gone(world),
            "bad_lr": bad_lr}


def dying_layer(x):
    """A layer whose worker dies in the middle of its backward part."""
    return _BadBackward.apply(x, True)


def chain_to_dying(x, to):
    return rpc.rpc_sync(to, dying_layer, args=(layer("B", x),))


def all_die_in_backward(rank, world):
    """worker2 dies in the middle of its part of a backward pass that
    worker1 started for worker0: worker0's backward fails, naming it,
    within the call timeout; the context ends everywhere left."""
    if rank != 0:
        _done.wait(120)
        return None
    try:
        out = {}
        x = _x(torch.float64).requires_grad_()
        with dist_autograd.context() as cid:
            y = rpc.rpc_sync("worker1", chain_to_dying, args=(x, "worker2"))
            t0 = time.monotonic()
            out["error"] = _msg(dist_autograd.backward, cid, [y.sum()])
            out["seconds"] = time.monotonic() - t0
        end = time.monotonic() + 20
        while time.monotonic() < end:
            out["w1_after"] = rpc.rpc_sync("worker1", counts)
            if out["w1_after"] == (0, 0):
                break
            time.sleep(0.05)
        out["w0_after"] = counts()
        return out
    finally:
        rpc.rpc_sync("worker1", _finish)
