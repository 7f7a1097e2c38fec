"""Functions the test workers call on each other, and the bodies rank 0
runs (rpcgroup.run). Importable by the same name on every worker."""

import os
import time

import numpy as np
import torch

import tensorwire.rpc as rpc
from tensorwire import _C


def setup(rank):
    rpc.register("py::double", lambda x: x * 2)
    rpc.register("py::scaled(Tensor x, int k=3) -> Tensor",
                 lambda x, k: x * k)


# ---- functions called remotely ---------------------------------------------

def add(a, b=0):
    return a + b


def ident(x):
    return x


def where_am_i():
    return rpc.get_worker_info().name


def raise_(kind, text):
    if kind == "Custom":
        raise CustomError(text)
    raise {"ValueError": ValueError, "TypeError": TypeError,
           "KeyError": KeyError, "IndexError": IndexError,
           "AttributeError": AttributeError, "StopIteration": StopIteration,
           "RuntimeError": RuntimeError, "OSError": OSError}[kind](text)


class CustomError(Exception):
    pass


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def nested(to, x):
    """A call from inside a Python function (on a worker thread)."""
    return rpc.rpc_sync(to, add, args=(x, 1)) + 1


def rref_stats():
    return _C.rref_stats()


def use_rref(rref):
    """A user RRef passed in: fetch it here."""
    return rref.to_here()


def pass_on(rref, to):
    """Pass an RRef on to another worker, who fetches it."""
    return rpc.rpc_sync(to, use_rref, args=(rref,))


def make_rref(to, x):
    """An RRef made here, owned by `to`, returned to the caller."""
    return rpc.remote(to, add, args=(x, 1))


def crash():
    os._exit(3)


@rpc.functions.async_execution
def async_add(to, x):
    return rpc.rpc_async(to, add, args=(x, 1)).then(
        lambda fut: fut.wait() * 10)


@rpc.functions.async_execution
def async_chain(to, x):
    f1 = rpc.rpc_async(to, add, args=(x, 1))
    return f1.then(lambda f: rpc.rpc_sync(to, add, args=(f.wait(), 100)))


class Box:
    def __init__(self, v):
        self.v = v

    def get(self, k=1):
        return self.v * k

    @rpc.functions.async_execution
    def get_later(self, k=1):
        f = rpc.rpc_async(rpc.get_worker_info(), add, args=(self.v, k))
        return f


def make_box(v):
    return Box(v)


def owner_values(rank):
    """RRef counters (owned values) on this worker."""
    return _C.rref_stats()["owned"]


@torch.jit.script
def script_mul(x: torch.Tensor, k: int = 2) -> torch.Tensor:
    return x * k


# ---- bodies run on rank 0 ---------------------------------------------------

def body_script(rank, world):
    out = {}
    t = torch.arange(3.0)
    out["pos"] = rpc.rpc_sync("worker1", script_mul, args=(t, 3))
    out["kw"] = rpc.rpc_async("worker1", script_mul, args=(t,),
                              kwargs={"k": 4}).wait()
    out["default"] = rpc.remote("worker1", script_mul, args=(t,)).to_here()
    try:
        rpc.rpc_sync("worker1", script_mul, args=(t, "x"))
        out["bad"] = None
    except RuntimeError as e:
        out["bad"] = str(e)
    return out



def body_basics(rank, world):
    out = {}
    out["sync"] = rpc.rpc_sync("worker1", add, args=(1, 2))
    out["kw"] = rpc.rpc_sync("worker1", add, args=(1,), kwargs={"b": 5})
    out["async"] = rpc.rpc_async(1, add, args=(2, 3)).wait()
    out["info"] = rpc.rpc_sync(rpc.get_worker_info("worker1"), where_am_i)
    out["self"] = rpc.rpc_sync("worker0", where_am_i)
    out["qual"] = rpc.rpc_sync("worker1", "py::double", args=(21,))
    t = torch.ones(2)
    out["schema"] = rpc.rpc_sync("worker1", "py::scaled", args=(t,))
    out["schema_kw"] = rpc.rpc_sync("worker1", "py::scaled", args=(t,),
                                    kwargs={"k": 5})
    try:
        rpc.rpc_sync("worker1", "py::scaled", args=(t, "no"))
        out["schema_bad"] = None
    except TypeError as e:
        out["schema_bad"] = str(e)
    out["nested"] = rpc.rpc_sync("worker1", nested, args=("worker0", 5))
    out["remote"] = rpc.remote("worker1", add, args=(4, 4)).to_here()
    out["remote_self"] = rpc.remote("worker0", add, args=(4, 5)).to_here()
    out["me"] = (rpc.get_worker_info().id, rpc.get_worker_info().name)
    out["timeout"] = rpc.get_rpc_timeout()
    return out


def body_errors(rank, world):
    seen = {}
    for kind in ["ValueError", "TypeError", "KeyError", "IndexError",
                 "AttributeError", "StopIteration", "RuntimeError",
                 "OSError", "Custom"]:
        try:
            rpc.rpc_sync("worker1", raise_, args=(kind, "text-" + kind))
            seen[kind] = None
        except BaseException as e:
            seen[kind] = (type(e).__name__, str(e))
    try:
        rpc.rpc_async("worker1", raise_, args=("ValueError", "a")).wait()
    except ValueError as e:
        seen["async"] = str(e)
    return seen


def body_timeouts(rank, world):
    out = {}
    t0 = time.monotonic()
    try:
        rpc.rpc_sync("worker1", sleep, args=(2,), timeout=0.2)
        out["per_call"] = None
    except RuntimeError as e:
        out["per_call"] = str(e)
    out["per_call_s"] = time.monotonic() - t0
    out["none"] = rpc.rpc_sync("worker1", sleep, args=(0.3,), timeout=0)
    rpc.api._set_rpc_timeout(0.2)
    out["default"] = rpc.get_rpc_timeout()
    try:
        rpc.rpc_async("worker1", sleep, args=(2,)).wait()
        out["default_err"] = None
    except RuntimeError as e:
        out["default_err"] = str(e)
    rpc.api._set_rpc_timeout(60)
    time.sleep(2)  # let the sleeping calls finish before shutdown
    return out


def body_builtins(rank, world):
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    b = torch.tensor([1.0, 2.0, 3.0])
    out = {}
    out["add"] = rpc.rpc_sync("worker1", torch.add, args=(a, b),
                              kwargs={"alpha": 2})
    out["mul"] = rpc.rpc_sync("worker1", torch.mul, args=(a, 3))
    out["matmul"] = rpc.rpc_sync("worker1", torch.matmul,
                                 args=(a, a.t()))
    out["sum"] = rpc.rpc_sync("worker1", torch.sum, args=(a,))
    out["want"] = (torch.add(a, b, alpha=2), a * 3, a @ a.t(), a.sum())
    try:
        rpc.rpc_sync("worker1", torch.add, args=("x", "y"))
        out["bad"] = None
    except RuntimeError as e:
        out["bad"] = str(e)
    return out


DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32,
          torch.int64, torch.float16, torch.bfloat16, torch.float32,
          torch.float64]


def body_tensors(rank, world):
    bad = []
    g = torch.Generator().manual_seed(7)
    for dt in DTYPES:
        for n in [0, 1, 1000, 1 << 20]:
            if dt == torch.bool:
                t = torch.randint(0, 2, (n,), generator=g).bool()
            elif dt.is_floating_point:
                t = torch.randn(n, generator=g).to(dt)
            else:
                t = torch.randint(0, 100, (n,), generator=g).to(dt)
            r = rpc.rpc_sync("worker1", ident, args=(t,))
            if r.dtype != dt or not torch.equal(r, t):
                bad.append(("pickled", dt, n))
            r = rpc.rpc_sync("worker1", "py::double", args=(t,)) \
                if dt not in (torch.bool,) else t * 2
            if dt != torch.bool and not torch.equal(r, t * 2):
                bad.append(("value", dt, n))
    big = torch.randint(0, 255, (64 << 20,), dtype=torch.uint8,
                        generator=g)
    if not torch.equal(rpc.rpc_sync("worker1", ident, args=(big,)), big):
        bad.append(("64MiB", "uint8", 64 << 20))
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    view = base[:, 1::2]
    r = rpc.rpc_sync("worker1", ident, args=(view,))
    if not torch.equal(r, view) or r.stride() != view.stride():
        bad.append(("strided", r.stride(), view.stride()))
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)
    r = rpc.rpc_sync("worker1", ident, args=(arr,))
    if not isinstance(r, np.ndarray) or not np.array_equal(r, arr):
        bad.append(("numpy", type(r).__name__))
    r = rpc.rpc_sync("worker1", "py::double", args=(arr,))
    if not isinstance(r, np.ndarray) or not np.array_equal(r, arr * 2):
        bad.append(("numpy value", type(r).__name__))
    return bad


def body_rrefs(rank, world):
    out = {}
    r = rpc.remote("worker1", add, args=(torch.ones(3), 1))
    out["owner"] = (r.owner().name, r.owner_name(), r.is_owner())
    out["to_here"] = r.to_here()
    out["confirmed"] = r.confirmed_by_owner()
    out["passed"] = rpc.rpc_sync("worker2", pass_on, args=(r, "worker0"))
    out["via_third"] = rpc.rpc_sync("worker2", use_rref, args=(r,))
    ret = rpc.rpc_sync("worker2", make_rref, args=("worker1", 10))
    out["returned"] = ret.to_here()
    box = rpc.remote("worker1", make_box, args=(7,))
    out["proxy_sync"] = box.rpc_sync().get(3)
    out["proxy_async"] = box.rpc_async().get(2).wait()
    out["proxy_remote"] = box.remote().get(5).to_here()
    out["proxy_async_exec"] = box.rpc_sync().get_later(3)
    mine = rpc.remote("worker0", make_box, args=(2,))
    out["local_value"] = mine.local_value().v
    try:
        r.local_value()
        out["not_owner"] = None
    except RuntimeError as e:
        out["not_owner"] = str(e)
    del r, ret, box, mine
    time.sleep(0.5)
    out["owned_after"] = [rpc.rpc_sync(w, owner_values, args=(0,))
                          for w in ("worker0", "worker1", "worker2")]
    return out


def body_async(rank, world):
    out = {}
    out["async_exec"] = rpc.rpc_sync("worker1", async_add, args=("worker0",
                                                                   1))
    out["chain"] = rpc.rpc_sync("worker1", async_chain,
                                args=("worker0", 1))
    f = rpc.rpc_async("worker1", add, args=(1, 1))
    out["then"] = f.then(lambda x: x.wait() + 1).then(
        lambda x: x.wait() * 2).wait()
    seen = []
    f2 = rpc.rpc_async("worker1", add, args=(2, 2))
    f2.add_done_callback(lambda x: seen.append(x.value()))
    f2.wait()
    time.sleep(0.2)
    out["callback"] = seen
    from tensorwire.futures import Future, collect_all, wait_all
    fut = Future()
    fut.set_result(5)
    out["set_result"] = fut.wait()
    fut = Future()
    fut.set_exception(ValueError("v"))
    try:
        fut.wait()
    except ValueError:
        out["set_exception"] = True
    out["wait_all"] = wait_all([rpc.rpc_async("worker1", add, args=(i, 1))
                                for i in range(5)])
    t0 = time.monotonic()
    try:
        wait_all([rpc.rpc_async("worker1", sleep, args=(3,)),
                  rpc.rpc_async("worker1", raise_, args=("ValueError",
                                                         "fast"))])
        out["wait_all_fail"] = None
    except ValueError as e:
        out["wait_all_fail"] = (str(e), time.monotonic() - t0)
    fs = collect_all([rpc.rpc_async("worker1", add, args=(1, i))
                      for i in range(3)]).wait()
    out["collect_all"] = [x.wait() for x in fs]
    time.sleep(3)
    return out


def body_c_worker(rank, world):
    """rank 1 is tw-worker (C): Python calls its C functions, and its
    builtins."""
    out = {}
    out["add"] = rpc.rpc_sync("worker1", "demo::add", args=(2, 3))
    t = torch.arange(4.0)
    out["echo"] = rpc.rpc_sync("worker1", "demo::echo", args=(t,))
    out["aten"] = rpc.rpc_sync("worker1", torch.add, args=(t, t))
    try:
        rpc.rpc_sync("worker1", "demo::check_positive", args=(-1,))
        out["err"] = None
    except ValueError as e:
        out["err"] = str(e)
    return out


def body_wait(rank, world):
    """Serve until the others are done (graceful shutdown waits)."""
    return True


def body_killed(rank, world):
    """worker1 dies in the middle of a call: the caller gets an error, not
    a hang."""
    try:
        rpc.rpc_sync("worker1", crash, timeout=20)
        return None
    except RuntimeError as e:
        return str(e)


# ---- the Python workers' scheduling (one runs at a time, others on a stall)

_gate = None


def noop():
    return None


def gate_wait():
    """Blocks its worker on a hand-made Future that a later call sets."""
    global _gate
    from tensorwire.futures import Future
    _gate = Future()
    return _gate.wait() + 1


def gate_open(v):
    while _gate is None:
        time.sleep(0.001)
    _gate.set_result(v)
    return True


def body_sched(rank, world):
    out = {}
    # A function sleeping (GIL released, outside tensorwire) on worker1
    # does not hold up the calls queued behind it there.
    slow = rpc.rpc_async("worker1", sleep, args=(2,))
    time.sleep(0.1)
    t0 = time.monotonic()
    out["beside_sleep"] = [rpc.rpc_sync("worker1", add, args=(i, 1))
                           for i in range(3)]
    out["beside_sleep_s"] = time.monotonic() - t0
    slow.wait()
    # A worker blocked on a Python Future that a later call completes.
    g = rpc.rpc_async("worker1", gate_wait)
    time.sleep(0.1)
    out["gate_open"] = rpc.rpc_sync("worker1", gate_open, args=(41,))
    out["gate"] = g.wait()
    # More calls in flight than the run loop's queue holds: the caller
    # waits for room instead of failing any.
    n = 40000
    futs = [rpc.rpc_async("worker1", noop) for _ in range(n)]
    out["flood"] = sum(1 for f in futs if f.wait() is None)
    out["flood_n"] = n
    # Futures of calls: callbacks added before and after completion run.
    seen = []
    f = rpc.rpc_async("worker1", add, args=(1, 2))
    f.add_done_callback(lambda x: seen.append(("before", x.value())))
    f.wait()
    f.add_done_callback(lambda x: seen.append(("after", x.value())))
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    out["callbacks"] = sorted(seen)
    out["done"] = f.done()
    return out


# ---- transport options (test_options, test_dpdk) ---------------------------

def _listening(ip):
    """Whether a TCP socket listens on ip (IPv4, this network namespace)."""
    want = "%08X" % int.from_bytes(bytes(map(int, ip.split("."))), "little")
    with open("/proc/net/tcp") as f:
        next(f)
        return any(c[1].split(":")[0] == want and c[3] == "0A"
                   for c in (line.split() for line in f))


def body_options(rank, world):
    """io_uring's options reached the transport: each worker serves on
    the listen_host it was given, and calls cross."""
    t = torch.arange(1 << 16, dtype=torch.float32)
    return {"listen0": _listening("127.0.0.2"),
            "listen1": _listening("127.0.0.3"),
            "add": rpc.rpc_sync("worker1", add, args=(1, 2)),
            "echo": torch.equal(rpc.rpc_sync("worker1", ident, args=(t,)),
                                t)}


def body_addresses(rank, world):
    """Calls cross whatever address each worker serves on and announces;
    returns the announced addresses and how many connections were given
    same-host treatment (every worker here runs on this kernel)."""
    from tensorwire import _C
    t = torch.arange(1 << 16, dtype=torch.float32)
    out = {"add": rpc.rpc_sync("worker1", add, args=(1, 2)),
           "echo": torch.equal(rpc.rpc_sync("worker1", ident, args=(t,)), t),
           "back": rpc.rpc_sync("worker1", torch.add,
                                args=(torch.ones(2), 1)).tolist()}
    out.update({"addr%d" % r: _C.worker_addr(r) for r in range(world)})
    s = _C.agent_stats()
    out["same_host"] = s["conns_same_host"]
    out["shm"] = s["conns_shm"]
    out["fallbacks"] = s["same_host_fallbacks"]
    return out


def dpdk_before_init(rank, world, rundir):
    """The memif client (rank 1) starts its port after the server's (rank
    0) is up, as the C DPDK tests do: rank 0 says its pid, rank 1 waits
    for rank 0's first run loop thread, which starts once the port is."""
    pidfile = os.path.join(rundir, "rank0.pid")
    if rank == 0:
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(pidfile) as f:
                pid = int(f.read())
            task = "/proc/%d/task" % pid
            for tid in os.listdir(task):
                with open(os.path.join(task, tid, "comm")) as f:
                    if f.read().strip() == "tw0-loop0":
                        return
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    raise RuntimeError("rank 0's DPDK port never came up")


def body_dpdk(rank, world):
    """Compared here, not returned: a tensor received over DPDK may share
    the port's receive buffers, and one held past shutdown keeps the port
    (and the EAL) up until exit."""
    out = {}
    out["add"] = rpc.rpc_sync("worker1", add, args=(1, 2))
    out["where"] = rpc.rpc_sync("worker1", where_am_i)
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    got = rpc.rpc_sync("worker1", torch.add, args=(a, a),
                       kwargs={"alpha": 2})
    out["torch_add"] = torch.equal(got, a + 2 * a)
    del got
    g = torch.Generator().manual_seed(14)
    mib = torch.randint(0, 256, (1 << 20,), dtype=torch.uint8, generator=g)
    back = rpc.rpc_sync("worker1", ident, args=(mib,))
    out["mib"] = (back.dtype == mib.dtype and back.shape == mib.shape
                  and torch.equal(back, mib))
    del back
    return out


# ---- the caller's per-function caches keep nothing alive --------------------

class Holder:
    def __init__(self):
        self.t = torch.zeros(1 << 16)

    def get(self):
        return 1

    def __call__(self):
        return 2


def body_cache_keeps_nothing(rank, world):
    """Bound methods, callable objects and partials passed as func are
    not kept by the caller once the call is done (nor their tensors)."""
    import functools
    import gc
    import weakref
    refs = {"bound": [], "callable": [], "partial": []}
    for _ in range(20):
        h = Holder()
        refs["bound"].append(weakref.ref(h))
        assert rpc.rpc_sync("worker1", h.get) == 1
        h = Holder()
        refs["callable"].append(weakref.ref(h))
        assert rpc.rpc_sync("worker1", h) == 2
        t = torch.ones(1 << 16)
        refs["partial"].append(weakref.ref(t))
        p = functools.partial(add, t)
        assert rpc.rpc_sync("worker1", p, args=(1,)).sum() == 2 << 16
        del h, t, p
    # A sent tensor is let go of at the next call into tensorwire (the
    # run loop cannot take the GIL): one more call.
    rpc.rpc_sync("worker1", add, args=(1, 1))
    gc.collect()
    return {k: sum(r() is not None for r in v) for k, v in refs.items()}


def body_callbacks_inline(rank, world):
    """A call's future that is complete (done() says so) but was never
    waited on runs a callback added now inline, and then() of it is done
    at once, as torch's."""
    out = {}
    f = rpc.rpc_async("worker1", add, args=(2, 2))
    deadline = time.monotonic() + 10
    while not f.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    seen = []
    f.add_done_callback(lambda x: seen.append(x.value()))
    out["inline"] = list(seen)
    g = rpc.rpc_async("worker1", add, args=(3, 3))
    while not g.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    h = g.then(lambda x: x.value() + 1)
    out["then_done"] = h.done()
    out["then"] = h.wait()
    return out


# ---- the callee resolves a function by name on every call -------------------

def rebound(x=None):
    return "first"


def _rebound_second(x=None):
    return "second"


def rebind():
    """Binds rpcfuncs.rebound to another function, here (the callee)."""
    globals()["rebound"] = _rebound_second
    return True


def body_rebound(rank, world):
    """A module-level name rebound on the callee (a patch, a reload) runs
    the new function, with arguments or without, as torch's unpickling by
    name does on every call."""
    first = rpc.rpc_sync("worker1", rebound)
    rpc.rpc_sync("worker1", rebind)
    return (first, rpc.rpc_sync("worker1", rebound),
            rpc.rpc_sync("worker1", rebound, args=(1,)))


def body_beside_blocked(rank, world):
    """Calls beside a function blocked outside tensorwire (a sleep) on
    worker1 run at the usual pace, not one per monitor period (1 ms)."""
    slow = rpc.rpc_async("worker1", sleep, args=(3,))
    time.sleep(0.1)
    t0 = time.monotonic()
    n = 500
    ok = sum(rpc.rpc_sync("worker1", add, args=(i, 1)) == i + 1
             for i in range(n))
    took = time.monotonic() - t0
    slow.wait()
    return ok, n, took


def body_to_here_failed_frees(rank, world):
    """A to_here that fails (its timeout) keeps no reference to its RRef
    once the exception is gone, without the cyclic collector."""
    import gc
    gc.disable()
    try:
        try:
            rpc.remote("worker1", sleep, args=(0.5,)).to_here(timeout=0.1)
            err = None
        except RuntimeError as e:
            err = str(e)
        time.sleep(0.6)
        return err, _C.rref_stats()["users"]
    finally:
        gc.enable()


def call_back_add(a, b):
    """On worker1: a nested call back to worker0."""
    return rpc.rpc_sync("worker0", add, args=(a, b))


def body_lend(rank, world):
    """Calls whose waits run the run loop (lend_loops): sync, builtin,
    async, to_here, and a nested call back into this worker while it
    waits; all correct, and the counter says whether waits ran the
    loop."""
    from tensorwire import _C
    if rank != 0:
        return None
    ok = True
    x, y = torch.ones(3), torch.arange(3.0)
    for i in range(100):
        ok &= rpc.rpc_sync("worker1", add, args=(i, 1)) == i + 1
        ok &= torch.equal(rpc.rpc_sync("worker1", torch.add, args=(x, y)),
                          x + y)
        ok &= rpc.rpc_sync("worker1", call_back_add, args=(i, 2)) == i + 2
    futs = [rpc.rpc_async("worker1", add, args=(i, 3)) for i in range(300)]
    ok &= [f.wait() for f in futs] == [i + 3 for i in range(300)]
    r = rpc.remote("worker1", add, args=(4, 5))
    ok &= r.to_here() == 9
    return {"ok": bool(ok), "lent": _C.agent_stats()["lent_waits"]}


def _shm_rings_mapped():
    """Whether this process maps a same-host transport's rings (the sealed
    memfd dataplane/shm_map.c creates)."""
    with open("/proc/self/maps") as f:
        return "memfd:tensorwire-shm" in f.read()


def body_same_host(rank, world):
    """Calls (a 4 MiB tensor among them) to worker1 on this host; says
    whether they went over the same-host transport's rings."""
    from tensorwire import _C
    t = torch.arange(1 << 20, dtype=torch.float32)
    ok = rpc.rpc_sync("worker1", add, args=(1, 2)) == 3
    ok &= torch.equal(rpc.rpc_sync("worker1", ident, args=(t,)), t)
    return {"ok": bool(ok), "rings": _shm_rings_mapped(),
            "fallbacks": _C.agent_stats()["same_host_fallbacks"]}


_kept = []


def body_keep_rref(rank, world):
    """Holds a user RRef past shutdown (a global keeps it)."""
    _kept.append(rpc.remote("worker1", add, args=(1, 2)))
    return _kept[0].to_here()


def check_rref_leaks(rank, world):
    """Before init_rpc: shutdown reports user RRefs still held."""
    from tensorwire.rpc import api
    api._ignore_rref_leak = False


class Counter:
    """A stateful object kept in an RRef (a parameter server's kind)."""

    def __init__(self):
        self.n = 0
        self.log = []

    def incr(self, by=1):
        self.n += by
        self.log.append(by)
        return self.n

    @rpc.functions.async_execution
    def incr_later(self, by=1):
        f = rpc.rpc_async(rpc.get_worker_info(), add, args=(0, by))
        return f.then(lambda x: self.incr(x.wait()))


def live_objects(rank):
    """Python objects this worker keeps for RRefs."""
    from tensorwire import rpc as r
    return len(r._live)


def incr_via(rref, by):
    """On another worker: a method of the owner's object, by proxy."""
    return rref.rpc_sync().incr(by)


def incr_local(rref, by):
    """On the owner: the object itself, through local_value()."""
    return rref.local_value().incr(by)


@rpc.functions.async_execution
def counter_later():
    f = rpc.rpc_async(rpc.get_worker_info(), add, args=(1, 2))
    return f.then(lambda x: Counter())


def body_rref_keeps_its_object(rank, world):
    """torch's owner keeps the object remote() returned: methods called
    through the proxies or local_value() change it, to_here() sees it as
    it is, on any worker; once every user is gone the owner drops it."""
    out = {}
    c = rpc.remote("worker1", Counter)
    out["proxy"] = [c.rpc_sync().incr() for _ in range(3)]
    out["async_proxy"] = c.rpc_async().incr(10).wait()
    out["remote_proxy"] = c.remote().incr(100).to_here()
    out["async_exec"] = c.rpc_sync().incr_later(1000)
    out["local"] = rpc.rpc_sync("worker1", incr_local, args=(c, 5))
    out["third"] = rpc.rpc_sync("worker2", incr_via, args=(c, 7))
    here = c.to_here()
    out["to_here"] = (here.n, here.log)
    out["live_on_owner"] = rpc.rpc_sync("worker1", live_objects, args=(1,))
    later = rpc.remote("worker2", counter_later)
    out["async_made"] = later.rpc_sync().incr(2)
    mine = rpc.remote("worker0", Counter)
    mine.local_value().incr(4)
    out["self"] = (mine.local_value() is mine.local_value(),
                   mine.to_here() is mine.local_value(),
                   mine.to_here().n)
    del c, here, later, mine
    import gc
    gc.collect()
    deadline = time.monotonic() + 10
    while True:
        left = [rpc.rpc_sync(w, live_objects, args=(0,))
                for w in ("worker0", "worker1", "worker2")]
        owned = [rpc.rpc_sync(w, owner_values, args=(0,))
                 for w in ("worker0", "worker1", "worker2")]
        if left == [0, 0, 0] and owned == [0, 0, 0] or \
                time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out["left"], out["owned"] = left, owned
    return out


def body_rref_of_a_local_value(rank, world):
    """rpc.RRef(value), as torch's: owned here, holding value itself;
    another worker fetches it and changes it through the proxies; freed
    once dropped."""
    out = {}
    obj = Counter()
    r = rpc.RRef(obj)
    out["owner"] = (r.is_owner(), r.owner_name(), r.confirmed_by_owner())
    out["same"] = (r.local_value() is obj, r.to_here() is obj)
    out["remote_incr"] = rpc.rpc_sync("worker1", incr_via, args=(r, 3))
    out["seen_here"] = obj.n
    out["fetched"] = rpc.rpc_sync("worker1", fetch_n, args=(r,))
    t = torch.zeros(2)
    rt = rpc.RRef(t)
    rpc.rpc_sync("worker1", add_in_place_via, args=(rt,))
    out["tensor"] = t.tolist()
    out["plain"] = rpc.RRef(35).to_here()
    del r, rt
    import gc
    gc.collect()
    # Freed by the next Python thread through the package (a call here).
    deadline = time.monotonic() + 10
    while True:
        left = (rpc.rpc_sync("worker0", live_objects, args=(0,)),
                owner_values(0))
        if left == (0, 0) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out["left"] = left
    return out


def fetch_n(rref):
    return rref.to_here().n


def add_in_place_via(rref):
    """On a user: an in-place add on the owner's tensor."""
    return rpc.rpc_sync(rref.owner(), add_in_place, args=(rref,))


def add_in_place(rref):
    rref.local_value().add_(1)


def rref_of_value_here(n):
    """Served by a worker whose only Python thread runs it: RRef(value)
    needs no other."""
    return rpc.RRef([n]).local_value()[0]


def body_rref_of_value_in_a_udf(rank, world):
    t0 = time.monotonic()
    v = rpc.rpc_sync("worker1", rref_of_value_here, args=(7,), timeout=10)
    return v, time.monotonic() - t0
