"""torch's own distributed autograd tests that apply to tensorwire,
ported (torch/testing/_internal/distributed/rpc/dist_autograd_test.py,
torch 1.13): each t_<name> is torch's test_<name>, run on worker0 of a
group of three (dst: worker1; next: worker2), against
tensorwire.distributed.autograd. Their differences from torch's are
noted where there are any."""

import threading
import traceback

import torch

import tensorwire.distributed.autograd as dist_autograd
import tensorwire.rpc as rpc

LOCAL, RPC_SYNC, RPC_ASYNC, REMOTE = "local", "rpc_sync", "rpc_async", "remote"
DST = "worker1"


def _exec(mode, fn, *args):
    if mode == LOCAL:
        return fn(*args)
    if mode == RPC_SYNC:
        return rpc.rpc_sync(DST, fn, args=args)
    if mode == RPC_ASYNC:
        return rpc.rpc_async(DST, fn, args=args).wait()
    return rpc.remote(DST, fn, args=args).to_here()


def _verify(mode, roots, cid, local_grads, *tensors):
    """torch's _verify_backwards: the local run's gradients (then .grad
    cleared), or the distributed run's checked against them, .grad left
    alone (checked None: stronger than torch's test)."""
    if mode == LOCAL:
        torch.autograd.backward(roots)
        out = [t.grad for t in tensors]
        for t in tensors:
            t.grad = None
        return out
    dist_autograd.backward(cid, roots)
    grads = dist_autograd.get_gradients(cid)
    for t, lg in zip(tensors, local_grads):
        if lg is None:
            assert t not in grads
        else:
            torch.testing.assert_close(grads[t], lg)
        assert t.grad is None
    return local_grads


def _modes_check(modes, build, *tensors):
    local = None
    for mode in modes:
        with dist_autograd.context() as cid:
            roots = build(mode)
            local = _verify(mode, roots, cid, local, *tensors)


def my_py_add(t1, t2):
    return torch.add(t1, t2)


def my_scalar_add(a, b):
    return a + b


requires_grad_tensor = torch.ones(3, 3, requires_grad=True)


def ret_requires_grad():
    return requires_grad_tensor


def _grads_here(cid):
    g = dist_autograd.get_gradients(cid)
    return {"n": len(g), "grad": g.get(requires_grad_tensor)}


def _valid_here(cid):
    return dist_autograd._is_valid_context(cid)


def t_autograd_context():
    ids = []
    for _ in range(20):
        with dist_autograd.context() as cid:
            assert dist_autograd._current_context_id() == cid
            # The creator in the high bits, as torch's ids.
            assert cid >> 48 == rpc.get_worker_info().id
            ids.append(cid)
        assert not dist_autograd._is_valid_context(cid)
    assert len(set(ids)) == 20


def t_nested_context():
    with dist_autograd.context():
        try:
            with dist_autograd.context():
                pass
        except RuntimeError as e:
            assert "Already have an autograd context id for this thread" \
                in str(e)
        else:
            raise AssertionError("nested context accepted")


def _outside(fn, *args):
    """fn(*args) on another thread: outside this thread's context (a
    Python call in it would carry the context to the callee)."""
    out = []
    th = threading.Thread(target=lambda: out.append(fn(*args)))
    th.start()
    th.join()
    return out[0]


def t_no_graph_with_tensors_not_require_grad():
    # torch records no send function, and the callee learns nothing of the
    # context.
    t1, t2 = torch.ones(3, 3), torch.zeros(3, 3)
    with dist_autograd.context() as cid:
        rpc.rpc_sync(DST, torch.add, args=(t1, t2))
        assert dist_autograd._context_workers(cid) == []
        assert not _outside(rpc.rpc_sync, DST, _valid_here, (cid,))


def t_grad_only_on_return_value():
    for mode in (RPC_SYNC, REMOTE):
        with dist_autograd.context() as cid:
            if mode == RPC_SYNC:
                ret = rpc.rpc_sync(DST, ret_requires_grad)
            else:
                ret = rpc.remote(DST, ret_requires_grad).to_here()
            dist_autograd.backward(cid, [ret.sum()])
            got = rpc.rpc_sync(DST, _grads_here, args=(cid,))
            assert got["n"] == 1
            torch.testing.assert_close(got["grad"], torch.ones(3, 3))


def t_rpc_complex_args():
    for mode in (RPC_SYNC, REMOTE):
        with dist_autograd.context() as cid:
            tensors = [torch.ones(3, 3, requires_grad=i % 2 == 0)
                       for i in range(10)]
            ret = _exec(mode, torch.stack, tensors)
            torch.testing.assert_close(torch.stack(tensors), ret)
            dist_autograd.backward(cid, [ret.sum()])
            grads = dist_autograd.get_gradients(cid)
            for i, t in enumerate(tensors):
                if i % 2 == 0:
                    torch.testing.assert_close(grads[t], torch.ones(3, 3))
                else:
                    assert t not in grads
            assert dist_autograd._context_workers(cid) == [1]


def _cleaned_on(worker, cid):
    import time
    end = time.monotonic() + 10
    while rpc.rpc_sync(worker, _valid_here, args=(cid,)):
        assert time.monotonic() < end, "context %d still on %s" % (
            cid, worker)
        time.sleep(0.01)


def t_context_cleanup_tensor_with_grad():
    t1 = torch.ones(3, 3, requires_grad=True)
    t2 = torch.zeros(3, 3, requires_grad=True)
    with dist_autograd.context() as cid:
        rpc.rpc_sync(DST, torch.add, args=(t1, t2))
        assert rpc.rpc_sync(DST, _valid_here, args=(cid,))
    _cleaned_on(DST, cid)


def t_context_cleanup_no_tensors():
    # A Python call records (torch's forceGradRecording) with no tensors.
    with dist_autograd.context() as cid:
        assert rpc.rpc_sync(DST, my_scalar_add, args=(1, 1)) == 2
        assert rpc.rpc_sync(DST, _valid_here, args=(cid,))
    _cleaned_on(DST, cid)


def my_py_nested_call(t1, t2, dst, world_size, hops):
    next_dst = (dst + 1) % world_size
    if hops > 0:
        return rpc.rpc_sync("worker%d" % next_dst, my_py_nested_call,
                            args=(t1, t2, next_dst, world_size, hops - 1))
    return rpc.rpc_sync("worker%d" % next_dst, my_py_add, args=(t1, t2))


def t_context_cleanup_nested_rpc():
    t1 = torch.ones(3, 3, requires_grad=True)
    t2 = torch.zeros(3, 3, requires_grad=True)
    with dist_autograd.context() as cid:
        rpc.rpc_sync(DST, my_py_nested_call, args=(t1, t2, 1, 3, 1))
        for w in ("worker1", "worker2"):
            assert rpc.rpc_sync(w, _valid_here, args=(cid,))
    for w in ("worker1", "worker2"):
        _cleaned_on(w, cid)


def t_worker_ids_recorded():
    t1, t2 = torch.ones(3, 3), torch.zeros(3, 3)
    with dist_autograd.context() as cid:
        for w in ("worker1", "worker2"):
            rpc.rpc_sync(w, torch.add, args=(t1, t2))
        assert dist_autograd._context_workers(cid) == []
    t1.requires_grad = True
    t2.requires_grad = True
    with dist_autograd.context() as cid:
        for w in ("worker1", "worker2"):
            rpc.rpc_sync(w, torch.add, args=(t1, t2))
        assert dist_autograd._context_workers(cid) == [1, 2]


def t_error_in_context():
    with dist_autograd.context():
        t1 = torch.rand(3, 3, requires_grad=True)
        t2 = torch.rand(6, 6, requires_grad=True)
        try:
            rpc.rpc_sync(DST, torch.matmul, args=(t1, t2))
        except RuntimeError:
            pass
        else:
            raise AssertionError("mismatched matmul succeeded")


def t_backward_no_grad_on_tensor():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    with dist_autograd.context() as cid:
        loss = rpc.rpc_sync(DST, torch.add, args=(t1, t2)).sum()
        dist_autograd.backward(cid, [loss])
        assert t1.grad is None and t2.grad is None
        # Local autograd still works inside the context.
        loss_local = torch.add(t1, t2).sum()
        loss_local.backward()
        assert t1.grad is not None and t2.grad is not None


def t_backward_simple():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    _modes_check((LOCAL, RPC_SYNC, RPC_ASYNC, REMOTE),
                 lambda m: [_exec(m, torch.add, t1, t2).sum()], t1, t2)


def t_backward_simple_self():
    global DST
    DST = "worker0"
    try:
        t_backward_simple()
    finally:
        DST = "worker1"


def _ones(shape, requires_grad=False):
    return torch.ones(shape, requires_grad=requires_grad)


def my_rref_add(rref_t1, t2):
    return torch.add(rref_t1.to_here(), t2)


def my_nested_rref_add(dst, rref_t1, t2):
    return rpc.rpc_sync(dst, my_rref_add, args=(rref_t1, t2))


def _owner_grad_equals(cid, rref, expected):
    grads = dist_autograd.get_gradients(cid)
    return torch.equal(grads[rref.local_value()], expected)


def _backward_rref(callee, owner):
    t1 = torch.ones(3, 3, requires_grad=True)
    t2 = torch.zeros(3, 3, requires_grad=True)
    torch.add(t1, t2).sum().backward()
    with dist_autograd.context() as cid:
        rref_t1 = rpc.remote(owner, _ones, args=((3, 3),),
                             kwargs={"requires_grad": True})
        if callee == owner:
            rref = rpc.remote(callee, my_rref_add, args=(rref_t1, t2))
        else:
            rref = rpc.remote(callee, my_nested_rref_add,
                              args=(owner, rref_t1, t2))
        dist_autograd.backward(cid, [rref.to_here().sum()])
        grads = dist_autograd.get_gradients(cid)
        torch.testing.assert_close(grads[t2], t2.grad)
        assert rpc.rpc_sync(owner, _owner_grad_equals,
                            args=(cid, rref_t1, t1.grad))


def t_backward_rref():
    _backward_rref("worker1", "worker1")


def t_backward_rref_multi():
    _backward_rref("worker0", "worker1")


def t_backward_rref_nested():
    _backward_rref("worker1", "worker2")


def t_backward_multiple_round_trips():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3)
    t3 = torch.rand(3, 3, requires_grad=True)
    t4 = torch.rand(3, 3)
    t5 = torch.rand(3, 3, requires_grad=True)

    def build(m):
        val = _exec(m, torch.add, t1, t2)
        val = _exec(m, torch.mul, t3, val)
        s1 = _exec(m, torch.stack, (t4, val))
        s2 = _exec(m, torch.stack, (t5, val))
        val = _exec(m, torch.bmm, s1, s2)
        val = _exec(m, torch.matmul, val, val)
        return [val.sum()]
    _modes_check((LOCAL, RPC_SYNC, REMOTE), build, t1, t2, t3, t4, t5)


def t_backward_different_tensor_dims():
    t1 = torch.rand(4, 6, requires_grad=True)
    t2 = torch.rand(6, 5)
    t3 = torch.rand(5, 7, requires_grad=True)
    t4 = torch.rand(7, 9)

    def build(m):
        val = _exec(m, torch.matmul, t1, t2)
        val = _exec(m, torch.linalg.multi_dot, (val, t3, t4))
        return [val.sum()]
    _modes_check((LOCAL, RPC_SYNC, REMOTE), build, t1, t2, t3, t4)


def t_backward_unused_tensors():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    t3 = torch.rand(3, 3, requires_grad=True)

    def build(m):
        s = _exec(m, torch.stack, (t1, t2, t3))
        val = _exec(m, torch.matmul, torch.narrow(s, 0, 0, 1),
                    torch.narrow(s, 0, 2, 1))
        return [val.sum()]
    _modes_check((LOCAL, RPC_SYNC, REMOTE), build, t1, t2, t3)


def t_backward_multiple_output_tensors():
    t = torch.rand(10, 2, requires_grad=True)

    def build(m):
        parts = _exec(m, torch.split, t, 2)
        val = _exec(m, torch.linalg.multi_dot, (parts[0], parts[2],
                                                 parts[4]))
        return [val.sum()]
    _modes_check((LOCAL, RPC_SYNC, REMOTE), build, t)


def t_backward_without_context():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    res = rpc.rpc_sync(DST, torch.add, args=(t1, t2))
    try:
        dist_autograd.backward(100, [res.sum()])
    except RuntimeError as e:
        assert "Could not find autograd context with id: 100" in str(e)
    else:
        raise AssertionError("backward without a context ran")


def t_backward_without_rpc():
    with dist_autograd.context() as cid:
        t1 = torch.rand(3, 3, requires_grad=True)
        t2 = torch.rand(3, 3, requires_grad=True)
        dist_autograd.backward(cid, [torch.add(t1, t2).sum()])
        grads = dist_autograd.get_gradients(cid)
        assert len(grads) == 2
        torch.testing.assert_close(grads[t1], torch.ones(3, 3))
        torch.testing.assert_close(grads[t2], torch.ones(3, 3))


def t_backward_multiple_roots():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)

    def build(m):
        return [_exec(m, torch.add, t1, t2).sum(),
                _exec(m, torch.mul, t1, t2).sum(),
                _exec(m, torch.cos, t1).sum(),
                _exec(m, torch.div, t1, t2).sum()]
    _modes_check((LOCAL, RPC_SYNC), build, t1, t2)


def t_backward_different_dtypes():
    t1 = torch.rand(3, 3, requires_grad=True, dtype=torch.float32)
    t2 = torch.rand(3, 3, requires_grad=True, dtype=torch.float64)
    _modes_check((LOCAL, REMOTE),
                 lambda m: [_exec(m, torch.add, t1, t2).sum()], t1, t2)


def t_backward_simple_python_udf():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    _modes_check((LOCAL, REMOTE),
                 lambda m: [_exec(m, my_py_add, t1, t2).sum()], t1, t2)


def _complex_python_udf(t1, t2):
    t3 = torch.nn.functional.linear(t1, t2)
    t4 = torch.nn.functional.linear(t2, t3)
    t5 = torch.nn.functional.linear(t3, t4)
    return torch.linalg.multi_dot([t1, t2, t3, t4, t5])


def t_backward_complex_python_udf():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    _modes_check((LOCAL, REMOTE),
                 lambda m: [_exec(m, _complex_python_udf, t1, t2).sum()],
                 t1, t2)


def _nested_python_udf(t1, t2, dst):
    t3 = t1 * t2
    t4 = t1 + t2
    res = rpc.rpc_sync(dst, my_py_add, args=(t3, t4))
    return t1 * t2 * t3 * t4 * res


def t_backwards_nested_python_udf():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    t3 = t1 * t2
    t4 = t1 + t2
    (t1 * t2 * t3 * t4 * (t3 + t4)).sum().backward()
    with dist_autograd.context() as cid:
        loss = rpc.rpc_sync(DST, _nested_python_udf,
                            args=(t1, t2, "worker2")).sum()
        dist_autograd.backward(cid, [loss])
        grads = dist_autograd.get_gradients(cid)
        torch.testing.assert_close(t1.grad, grads[t1])
        torch.testing.assert_close(t2.grad, grads[t2])


def _mixed_requires_grad_operation(t1, t2):
    return t1 - t2 if t2.requires_grad else t1 * t2


def t_mixed_requires_grad():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=False)
    for mode in (RPC_SYNC, REMOTE):
        with dist_autograd.context() as cid:
            ret = _exec(mode, _mixed_requires_grad_operation, t1, t2)
            torch.testing.assert_close(t1 * t2, ret)
            dist_autograd.backward(cid, [ret.sum()])
            assert t1.requires_grad and not t2.requires_grad
            grads = dist_autograd.get_gradients(cid)
            assert t1 in grads and t2 not in grads
            torch.testing.assert_close(t2, grads[t1])


def t_backward_accumulate_grads():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    with dist_autograd.context() as cid:
        t3 = torch.matmul(t1, t2)
        torch.autograd.backward([t3.sum()], retain_graph=True)
        torch.autograd.backward([t3.sum()])
        t3 = rpc.rpc_sync(DST, torch.matmul, args=(t1, t2))
        dist_autograd.backward(cid, [t3.sum()], retain_graph=True)
        dist_autograd.backward(cid, [t3.sum()])
        grads = dist_autograd.get_gradients(cid)
        assert len(grads) == 2
        torch.testing.assert_close(t1.grad, grads[t1])
        torch.testing.assert_close(t2.grad, grads[t2])


def _nested_accumulate(t1, t2, dst):
    return rpc.rpc_sync(dst, torch.add, args=(t1, t2))


def t_nested_backward_accumulate_grads():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    with dist_autograd.context() as cid:
        loss = rpc.rpc_sync(DST, _nested_accumulate,
                            args=(t1, t2, "worker2")).sum()
        dist_autograd.backward(cid, [loss], retain_graph=True)
        dist_autograd.backward(cid, [loss])
        grads = dist_autograd.get_gradients(cid)
        torch.testing.assert_close(grads[t1], torch.full((3, 3), 2.0))


def t_multiple_backward():
    t1 = torch.rand(3, 3, requires_grad=True)
    t2 = torch.rand(3, 3, requires_grad=True)
    with dist_autograd.context() as cid:
        loss = rpc.rpc_sync(DST, torch.add, args=(t1, t2)).sum()
        for _ in range(1000):
            dist_autograd.backward(cid, [loss], retain_graph=True)
        grads = dist_autograd.get_gradients(cid)
        torch.testing.assert_close(grads[t1], torch.full((3, 3), 1000.0))


def _workload_thread(errors):
    try:
        t1 = torch.rand(3, 3, requires_grad=True)
        t2 = torch.rand(3, 3, requires_grad=True)
        with dist_autograd.context() as cid:
            t3 = rpc.rpc_sync("worker1", torch.add, args=(t1, t2))
            t4 = rpc.rpc_sync("worker1", torch.mul, args=(t2, t3))
            t5 = rpc.rpc_sync("worker1", torch.matmul, args=(t3, t4))
            t6 = rpc.rpc_sync("worker1", torch.add, args=(t4, t5))
            dist_autograd.backward(cid, [t6.sum()])
    except BaseException:
        errors.append(traceback.format_exc())


def t_async_dist_autograd():
    # torch: every other rank hammers rank 0 from 20 threads; here this
    # worker hammers worker1, each thread with its own context.
    errors = []
    threads = [threading.Thread(target=_workload_thread, args=(errors,))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def t_thread_local_context_id():
    t1, t2 = torch.rand(3, 3), torch.rand(3, 3)
    with dist_autograd.context() as cid:
        assert dist_autograd._current_context_id() == cid
        seen = []
        th = threading.Thread(
            target=lambda: seen.append(dist_autograd._current_context_id()))
        th.start()
        th.join()
        assert seen == [None]  # another thread has no context
        rpc.rpc_sync(DST, torch.add, args=(t1, t2))


TESTS = sorted(n[2:] for n in list(globals()) if n.startswith("t_"))


def body_all(rank, world):
    """Every ported test: {name: None, or its traceback}."""
    out = {}
    for name in TESTS:
        try:
            globals()["t_" + name]()
            out[name] = None
        except BaseException:
            out[name] = traceback.format_exc()
    from agfuncs import wait_contexts_gone
    out["_counts"] = wait_contexts_gone(world)
    return out
