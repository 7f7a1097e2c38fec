"""torch.distributed.rpc's API over tensorwire's C agent (tensorwire._C).

What ``func`` may be, and how each travels:

- a qualified-name string ("demo::add", "aten::add"): a function the callee
  serves, registered in C or in Python (``tensorwire.rpc.register``); its
  arguments travel as tensorwire values (tensors by DLPack, no copy);
- a torch builtin (``torch.add``): matched to the ``aten::`` operator the
  callee runs in C, without entering Python;
- any other Python callable: pickled by reference with its arguments, the
  tensors lifted out of the pickle and sent beside it, and run on the
  callee by a Python worker thread (``num_worker_threads`` of them).
"""

import os
import threading
import time
import traceback
import types

from tensorwire import _C
from tensorwire.futures import Future

__all__ = [
    "WorkerInfo", "RpcBackendOptions", "TensorPipeRpcBackendOptions",
    "init_rpc", "shutdown", "get_worker_info", "rpc_sync", "rpc_async",
    "remote", "RRef", "get_rpc_timeout", "register", "UNSET_RPC_TIMEOUT",
]

UNSET_RPC_TIMEOUT = -1.0
DEFAULT_RPC_TIMEOUT_SEC = 60.0
DEFAULT_INIT_METHOD = "env://"
UDF_FN = "tw::py_udf"  # runs a pickled Python function
REMOTE_FN = "tw::py_remote"  # the same for remote(): its result kept
KEEP_FN = "tw::py_keep"  # returns its argument (RRef(value), to self)
# As torch's: user RRefs still held at a graceful shutdown are deleted
# quietly; set False (before init_rpc: tensorwire reads it there, torch
# at shutdown) to have shutdown() raise a RuntimeError naming them.
_ignore_rref_leak = True

_STATUS = _C.status_names()
_lock = threading.Lock()
_workers = []          # the Python worker threads
_served = {}           # qualified name -> Python function (before init)
_self = None           # this worker's WorkerInfo
_self_id = None        # its id, kept after shutdown (for errors)
_ids = {}              # worker name -> id, for the group joined
# How each func travels, decided once per function: "builtin", "script"
# or "udf"; and the pickle of a plain function's call without arguments,
# which never changes (a function pickles by reference). Bounded.
_kinds = {}
_noarg = {}
_CACHE_MAX = 4096
# A pickled call's result, unpickled (set by tensorwire.rpc, which owns
# the pickling of calls).
_unwrap_result = None


class WorkerInfo:
    """A worker of the group: its id (rank) and name, as torch's."""

    __slots__ = ("id", "name")

    def __init__(self, id, name):
        self.id = id
        self.name = name

    def __eq__(self, other):
        return (isinstance(other, WorkerInfo) and self.id == other.id
                and self.name == other.name)

    def __hash__(self):
        return hash((self.id, self.name))

    def __repr__(self):
        return "WorkerInfo(id=%d, name=%s)" % (self.id, self.name)

    def __reduce__(self):
        return (WorkerInfo, (self.id, self.name))


class RpcBackendOptions:
    """torch's TensorPipeRpcBackendOptions, for tensorwire.

    init_method: "tcp://host:port" (rank 0 serves the rendezvous there) or
    "env://" (MASTER_ADDR, MASTER_PORT). rpc_timeout: the default call
    timeout in seconds (0: none). num_worker_threads: Python threads that
    run Python functions and callbacks. transport: "uring" (default) or
    "dpdk"; secret: the group's shared secret (or TW_SECRET); insecure:
    serve without one on non-loopback addresses (don't). num_loops: run
    loop threads of the agent; yield_loops: they yield the CPU while they
    spin (default: a Python worker has more threads than cores);
    lend_loops: a thread waiting for a call's answer runs the run loop
    itself meanwhile, so the call needs no hand-off between threads
    (default; tensorwire's tw_agent_opts.no_lend, docs/python.md).
    control_timeout: seconds within which a vanished host's control
    connection to rank 0 fails (default 30, at least 1). log_level: the
    library's log lines on stderr, "off", "error", "warn" (default, or
    TW_LOG_LEVEL), "info" or "debug".

    same_host: workers on this host (the same kernel: other processes,
    namespaces, containers) are reached over tensorwire's same-host
    transport, rings in shared memory between the two processes of a
    user, instead of the main transport, whatever the transport (default
    True, tensorwire's tw_agent_opts.same_host); False reaches them over
    the main transport too. As torch's TensorPipe takes its shm transport
    for a peer on the same machine: a large tensor crosses with two
    memcpy and no kernel, about a third of the CPU loopback TCP takes,
    whichever CPUs the two processes share (perf/RESULTS.md, issue 14,
    fifth pass). A worker whose same-host connection cannot be set up
    falls back to the main transport. same_host_options: that transport's
    options, a dict keyed by the fields of struct tw_shm_opts
    (include/tensorwire/shm.h), checked as transport_options are.

    transport_options: the transport's options, a dict keyed by the field
    names of its C options struct (include/tensorwire/uring.h, struct
    tw_uring_opts; include/tensorwire/dpdk.h, struct tw_dpdk_opts; every
    field is documented there); fields not given keep their defaults.
    Values: str (or None: the field's NULL) for strings, bool for flags,
    int for numbers, within the field's C type. An unknown key raises
    ValueError listing the valid ones, a value of the wrong type TypeError,
    an integer out of range ValueError, all naming the key, here and again
    in init_rpc, before anything starts. Without transport, the dict is
    io_uring's when all its keys are io_uring fields, else DPDK's when all
    are DPDK fields. For instance io_uring: {"listen_host": "127.0.0.1",
    "zc_threshold": 65536, "cc_local": "cubic"}.

    DPDK (a build with DPDK; root for the EAL) takes the EAL arguments of
    this process, its port, and tuning, e.g. two workers on one host
    joined by a memif vdev pair, each process with its own --file-prefix
    and main lcore (rank 0 the memif server; rank 1 the client, whose port
    must start after the server's: docs/python.md)::

        eal = ("-l {cpu} --no-huge -m 256 --no-pci --no-telemetry "
               "--file-prefix=tw-w{rank} --vdev=net_memif0,role={role},"
               "socket=/tw-memif-demo,socket-abstract=yes")
        opts = rpc.RpcBackendOptions(
            init_method="tcp://127.0.0.1:29500", secret="a group secret",
            transport="dpdk", transport_options={
                "eal_args": eal.format(cpu=rank, rank=rank,
                                       role="server" if rank == 0
                                       else "client"),
                "port": "net_memif0", "credits": 128,
                "rto_ns": 5000000})
        rpc.init_rpc("w%d" % rank, rank=rank, world_size=2,
                     rpc_backend_options=opts)

    A group on a non-loopback address (DPDK's) needs the secret. The EAL
    starts once per process (the first DPDK agent's eal_args) and is
    released at exit (tensorwire._C.dpdk_eal_cleanup); a tensor received
    over DPDK may share the port's buffers: drop it before shutdown."""

    def __init__(self, *, num_worker_threads=16,
                 rpc_timeout=DEFAULT_RPC_TIMEOUT_SEC,
                 init_method=DEFAULT_INIT_METHOD, transport=None,
                 secret=None, insecure=False, num_loops=1,
                 init_timeout=60.0, yield_loops=True, lend_loops=True,
                 transport_options=None, control_timeout=30.0,
                 log_level=None, same_host=True, same_host_options=None,
                 **_ignored):
        if transport_options is not None:
            _C._check_transport_options(transport, transport_options)
        if same_host_options is not None:
            _C._check_transport_options("shm", same_host_options)
        self.num_worker_threads = num_worker_threads
        self.rpc_timeout = rpc_timeout
        self.init_method = init_method
        self.transport = transport
        self.transport_options = transport_options
        self.secret = secret
        self.insecure = insecure
        self.num_loops = num_loops
        self.init_timeout = init_timeout
        # The run loops yield while they spin: a Python process has its
        # worker threads besides them, more threads than cores (and the
        # benchmark measured no-op calls ~1.5x faster with it).
        self.yield_loops = yield_loops
        self.lend_loops = lend_loops
        # How soon a vanished host's control connection fails (s), and
        # the library's log level ("off" .. "debug"; None: TW_LOG_LEVEL,
        # else "warn").
        self.control_timeout = control_timeout
        self.log_level = log_level
        self.same_host = same_host
        self.same_host_options = same_host_options


TensorPipeRpcBackendOptions = RpcBackendOptions


def _rendezvous(init_method):
    if init_method.startswith("tcp://"):
        return init_method
    if init_method.startswith("env://"):
        addr = os.environ.get("MASTER_ADDR")
        port = os.environ.get("MASTER_PORT")
        if not addr or not port:
            raise ValueError("init_method env:// needs MASTER_ADDR and "
                             "MASTER_PORT in the environment")
        return "tcp://%s:%s" % (addr, port)
    raise ValueError("init_method must be tcp://host:port or env://, got %r"
                     % (init_method,))


def _control_ms(o):
    """control_timeout (s) -> ms; None: the default, 30 s."""
    t = getattr(o, "control_timeout", None)
    return 30000 if t is None else max(0, int(round(t * 1000)))


def _log_level(name):
    """The C level for a log_level option: None leaves it (-1)."""
    if name is None:
        return -1
    levels = {"off": 0, "error": 1, "warn": 2, "warning": 2, "info": 3,
              "debug": 4}
    if isinstance(name, str) and name.lower() in levels:
        return levels[name.lower()]
    raise ValueError("log_level %r: one of off, error, warn, info, debug"
                     % (name,))


def _ms(seconds):
    """torch's timeout in seconds -> the agent's in ms (negative: the
    default, 0: none)."""
    if seconds is UNSET_RPC_TIMEOUT or seconds is None or seconds < 0:
        return -1
    return int(round(seconds * 1000))


def register(name, fn):
    """Serve Python function fn under qualified name `name` ("ns::f"), or
    under a schema ("ns::f(Tensor x, int n=2) -> Tensor"): then the agent
    checks and binds every call's arguments against it (torch's binding
    errors, defaults filled) and fn gets them positionally. Any worker, C
    or Python, calls it by name. Before init_rpc."""
    qual = name.split("(", 1)[0].strip()
    if "::" not in qual:
        raise ValueError("a qualified name is namespace::name, got %r"
                         % (name,))
    with _lock:
        if _C_agent_running():
            raise RuntimeError("register functions before init_rpc")
        _served[name.strip()] = fn


def _C_agent_running():
    return _self is not None


_CALLBACK = "callback"


def _worker_loop():
    from tensorwire.rpc import _noarg_fn, _udf_serve
    next_job = _C._next_job
    while True:
        job = next_job()
        if job is None:
            return
        try:
            if job.kind == _CALLBACK or job.fn is not _udf_serve or \
                    not _served_inline(job, _noarg_fn):
                _handle(job)
        except BaseException:  # a worker thread never dies of a job
            traceback.print_exc()
        # Dropped before waiting again: a job keeps its future (and the
        # message it came in) alive.
        del job


def _served_inline(job, noarg_fn):
    """The common call without _handle/_run_job/_udf_serve: a function
    this worker has served before, called without arguments. False
    (nothing done) for any other. Its locals go with its frame: a job's
    arguments (RRefs among them) must not outlive it."""
    func = noarg_fn(*job.args)
    if func is None:
        return False
    try:
        result = func()
    except BaseException as e:
        _fail_job(job, e)
        return True
    if result is None:
        job.complete(None)
    else:
        from tensorwire.rpc import _udf_result
        _finish_job(job, _udf_result(func, result))
    return True


def _handle(job):
    if job.kind == _CALLBACK:
        try:
            job.fn(*job.args)
        except Exception:
            traceback.print_exc()
        finally:
            job.release()
        return
    _run_job(job)


def _fail_job(job, e):
    """The caller gets e, with its type."""
    from tensorwire.rpc import _errors_to_wire
    kind, msg = _errors_to_wire(e, _self)
    job.fail(kind, msg)


def _run_job(job):
    try:
        result = job.fn(*job.args, **job.kwargs)
    except BaseException as e:
        _fail_job(job, e)
        return
    _finish_job(job, result)


def _finish_job(job, result):
    if isinstance(result, Future) and getattr(job.fn, "_tw_async", False):
        def finish(fut, job=job):
            try:
                job.complete(fut.wait())
            except BaseException as e:
                _fail_job(job, e)
        result.add_done_callback(finish)
        return
    try:
        job.complete(result)
    except BaseException as e:
        _fail_job(job, e)


def init_rpc(name, backend=None, rank=-1, world_size=None,
             rpc_backend_options=None):
    """Join the group as worker `name` (rank, world_size), as torch's."""
    global _self
    o = rpc_backend_options or RpcBackendOptions()
    if rank is None or rank < 0:
        rank = int(os.environ.get("RANK", "-1"))
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "0"))
    if rank < 0 or world_size <= 0:
        raise ValueError("init_rpc needs rank and world_size")
    from tensorwire.rpc import SCRIPT_FN, _remote_serve, _script_serve, \
        _udf_serve
    serve = dict(_served)
    serve[UDF_FN] = _udf_serve
    serve[REMOTE_FN] = _remote_serve
    serve[SCRIPT_FN] = _script_serve
    timeout_ms = _ms(o.rpc_timeout)
    with _lock:
        if _self is not None:
            raise RuntimeError("RPC is already initialized")
        try:
            _C.init(name, rank, world_size, _rendezvous(o.init_method),
                    timeout_ms=0 if timeout_ms < 0 else timeout_ms,
                    init_timeout_ms=_ms(o.init_timeout),
                    num_loops=o.num_loops, transport=o.transport,
                    secret=o.secret, insecure=o.insecure, serve=serve,
                    yield_loops=bool(getattr(o, "yield_loops", True)),
                    lend_loops=bool(getattr(o, "lend_loops", True)),
                    ignore_rref_leak=bool(_ignore_rref_leak),
                    transport_options=getattr(o, "transport_options",
                                              None),
                    control_timeout_ms=_control_ms(o),
                    log_level=_log_level(getattr(o, "log_level", None)),
                    same_host=bool(getattr(o, "same_host", True)),
                    same_host_options=getattr(o, "same_host_options", None))
        except _C.RemoteError as e:  # as torch: a RuntimeError, said why
            from tensorwire.rpc import _raise_remote
            _raise_remote(e.args)
        _cleanup_at_exit()
        wid, wname = _C.worker_info(None)
        _self = WorkerInfo(wid, wname)
        global _self_id
        _self_id = wid
        _ids.clear()
        for _ in range(max(1, o.num_worker_threads)):
            t = threading.Thread(target=_worker_loop, daemon=True,
                                 name="tensorwire-py-worker")
            t.start()
            _workers.append(t)


_eal_atexit = False


def _cleanup_at_exit():
    """Release the DPDK EAL at exit (a no-op unless a DPDK agent started
    it; it must outlive every DPDK agent of the process, so it cannot go at
    shutdown: the EAL does not start twice)."""
    global _eal_atexit
    if not _eal_atexit:
        import atexit
        atexit.register(_C.dpdk_eal_cleanup)
        _eal_atexit = True


def shutdown(graceful=True, timeout=0):
    """Leave the group: with graceful, wait for every worker's calls (and
    this worker's RRefs) first, at most timeout seconds (0: no limit), as
    torch's."""
    global _self
    with _lock:
        if _self is None:
            raise RuntimeError("RPC has not been initialized. Call "
                               "torch.distributed.rpc.init_rpc first.")
        try:
            _C.shutdown(bool(graceful), _ms(timeout) if timeout else 0)
        except _C.RemoteError as e:
            from tensorwire.rpc import _raise_remote
            _raise_remote(e.args)
        finally:
            _self = None
            _ids.clear()
            for t in _workers:
                t.join()
            _workers.clear()


def get_worker_info(worker_name=None):
    """WorkerInfo of worker_name, or of this worker."""
    try:
        wid, wname = _C.worker_info(worker_name)
    except _C.RemoteError as e:
        from tensorwire.rpc import _raise_remote
        _raise_remote(e.args)
    return WorkerInfo(wid, wname)


def get_rpc_timeout():
    """The default call timeout, in seconds (0: none)."""
    return _C.default_timeout() / 1000.0


def _set_rpc_timeout(rpc_timeout):
    _C.default_timeout(_ms(rpc_timeout) if rpc_timeout >= 0 else 0)


def _to_id(to):
    if isinstance(to, WorkerInfo):
        return to.id
    if isinstance(to, int):
        return to
    if isinstance(to, str):
        wid = _ids.get(to)
        if wid is None:
            wid = get_worker_info(to).id
            if len(_ids) < _CACHE_MAX:
                _ids[to] = wid
        return wid
    raise TypeError("to must be a worker name, a WorkerInfo or a rank, "
                    "got %s" % type(to).__name__)


def _kind(func):
    """How func travels: "builtin", "script" or "udf" (None: not
    callable)."""
    try:
        kind = _kinds.get(func)
    except TypeError:  # unhashable callable: decide each time
        kind = None
        cache = False
    else:
        cache = True
    if kind is not None:
        return kind
    from tensorwire.rpc import _is_builtin, _is_script
    if _is_builtin(func):
        kind = "builtin"
    elif _is_script(func):
        kind = "script"
    elif callable(func):
        kind = "udf"
    else:
        return None
    if cache and len(_kinds) < _CACHE_MAX and (kind == "script" or
                                                _lasting(func)):
        _kinds[func] = kind
    return kind


def _lasting(func):
    """func lives as long as its module anyway (a top-level function, an
    unbound builtin): keeping it in a cache keeps nothing else alive. A
    bound method keeps its object, a partial its arguments, a callable
    object itself, a closure its cells: cached, each would stay alive for
    the process's life (and fill the cache for good)."""
    t = type(func)
    if t is types.FunctionType:
        return func.__closure__ is None and "<" not in func.__qualname__
    if t is types.BuiltinFunctionType:
        owner = func.__self__
        return owner is None or isinstance(owner, (types.ModuleType, type))
    return t is types.MethodDescriptorType or \
        t is types.WrapperDescriptorType


def _plan(func, args, kwargs):
    """(qualified name, args, kwargs, map of the result) for func."""
    args = tuple(args) if args is not None else ()
    kwargs = dict(kwargs) if kwargs is not None else {}
    if isinstance(func, str):
        return func, args, kwargs, None
    kind = _kind(func)
    if kind == "udf" and not args and not kwargs and \
            type(func) is types.FunctionType:
        data = _noarg.get(func)
        if data is None:
            from tensorwire.rpc import _udf_call
            data = _udf_call(func, args, kwargs)[1][0]
            if len(_noarg) < _CACHE_MAX:
                _noarg[func] = data
        return UDF_FN, (data, []), {}, _unwrap_result
    if kind == "builtin":
        m = _builtins_match(func, args, kwargs)
        if m is not None:
            return m[0], m[1], m[2], None
    elif kind == "script":
        from tensorwire.rpc import _script_call
        return _script_call(func, args, kwargs)
    if kind is None:
        raise TypeError("func must be callable or a qualified name, got %s"
                        % type(func).__name__)
    from tensorwire.rpc import _udf_call
    return _udf_call(func, args, kwargs)


def _builtins_match(func, args, kwargs):
    global _builtins_match
    from tensorwire import _builtins
    _builtins_match = _builtins.match  # torch is imported by now
    return _builtins_match(func, args, kwargs)


def _start(to, func, args, kwargs, timeout, waited=False):
    """Send the call: (its C future, map of its outcome or None). waited:
    the caller waits for it next (rpc_sync), and that wait sends it."""
    # The common case first, without _plan: a plain function called
    # without arguments, whose pickle is cached.
    if not args and not kwargs and type(func) is types.FunctionType:
        data = _noarg.get(func)
        if data is not None:
            wid = _ids.get(to) if type(to) is str else None
            try:
                cf = _C.rpc_async(_to_id(to) if wid is None else wid,
                                  UDF_FN, (data, []), None, _ms(timeout),
                                  waited)
            except _C.RemoteError as e:
                from tensorwire.rpc import _raise_remote
                _raise_remote(e.args)
            return cf, _unwrap_result
    qual, a, k, mapper = _plan(func, args, kwargs)
    try:
        cf = _C.rpc_async(_to_id(to), qual, a, k, _ms(timeout), waited)
    except _C.RemoteError as e:
        from tensorwire.rpc import _raise_remote
        _raise_remote(e.args)
    return cf, mapper


def rpc_async(to, func, args=None, kwargs=None, timeout=UNSET_RPC_TIMEOUT):
    """Call func on worker `to`; a Future of its result."""
    cf, mapper = _start(to, func, args, kwargs, timeout)
    return Future(_cf=cf, _map=mapper)


def rpc_sync(to, func, args=None, kwargs=None, timeout=UNSET_RPC_TIMEOUT):
    """Call func on worker `to` and wait for its result."""
    cf, mapper = _start(to, func, args, kwargs, timeout, True)
    cf.wait(-1)
    ok, out = cf.outcome()
    if mapper is not None:
        return mapper(ok, out)
    if not ok:
        from tensorwire.rpc import _raise_remote
        _raise_remote(out)
    return out


class RRef(_C.CRRef):
    """A reference to a value kept on its owner, as torch's RRef.

    RRef(value) makes one owned by this worker, holding value itself (as
    torch's: local_value() is value; users on other workers fetch it or
    call its methods through the proxies). type_hint is accepted and
    unused. RRefs that calls return are made by tensorwire."""

    def __new__(cls, value=None, type_hint=None):
        from tensorwire.rpc import _keep
        if _self is None:
            raise RuntimeError("RPC has not been initialized. Call "
                               "torch.distributed.rpc.init_rpc first.")
        # A call to self, with no network, of a C function that returns
        # its argument (no Python worker needed): the owner's RRef, whose
        # value is the object itself (rpc._keep). Done once this returns.
        return remote(_self.id, KEEP_FN, (_keep(value),))

    def __init__(self, value=None, type_hint=None):
        pass

    def to_here(self, timeout=UNSET_RPC_TIMEOUT):
        """The value, fetched from the owner (on the owner: its own)."""
        from tensorwire.rpc import _is_live, _live_object, _live_value, \
            _unwrap_result
        # As rpc_sync, without a Future: a failed fetch's exception kept
        # by a Future forms a cycle (its traceback holds the Future's and
        # this frame) that kept this RRef alive until the collector ran.
        t0 = time.monotonic()
        cf = self._to_here_async(_ms(timeout))
        cf.wait(-1)
        ok, out = cf.outcome()
        if ok and _is_live(out):
            # A Python object the owner keeps (rpc._keep): as it is now,
            # from the owner's Python workers (as torch's fetch), within
            # what is left of the timeout.
            if self.is_owner():
                return _live_object(out)
            if timeout is not UNSET_RPC_TIMEOUT and timeout is not None \
                    and timeout > 0:
                timeout = max(timeout - (time.monotonic() - t0), 1e-3)
            return rpc_sync(self.owner().id, _live_value, (self,),
                            timeout=timeout)
        return _unwrap_result(ok, out)

    def local_value(self):
        """On the owner only: the value itself, once its function has
        returned (waits for it, as torch's OwnerRRef)."""
        from tensorwire.rpc import _is_live, _live_object, _raise_remote, \
            _unwrap
        try:
            if self.is_owner():
                self._to_here_async(-1).wait(-1)
            v = self._local_value()
        except _C.RemoteError as e:
            _raise_remote(e.args)
        return _live_object(v) if _is_live(v) else _unwrap(v)

    def owner(self):
        return WorkerInfo(*self._owner())

    def owner_name(self):
        return self._owner()[1]

    def is_owner(self):
        return self._flags()[0]

    def confirmed_by_owner(self):
        return self._flags()[1]

    def rpc_sync(self, timeout=UNSET_RPC_TIMEOUT):
        return _Proxy(self, "sync", timeout)

    def rpc_async(self, timeout=UNSET_RPC_TIMEOUT):
        return _Proxy(self, "async", timeout)

    def remote(self, timeout=UNSET_RPC_TIMEOUT):
        return _Proxy(self, "remote", timeout)

    def __repr__(self):
        owner, rref, fork = self._id()
        kind = "OwnerRRef" if self.is_owner() else "UserRRef"
        return "%s(RRefId = GloballyUniqueId(created_on=%d, local_id=%d), " \
               "ForkId = GloballyUniqueId(created_on=%d, local_id=%d))" % (
                   kind, rref[0], rref[1], fork[0], fork[1])


def _invoke_on_value(rref, name, args, kwargs):
    """On the owner: the proxies' call, name(value, *args, **kwargs) for a
    method of the value's type, as torch's proxies do; an
    @async_execution method answers when its Future completes."""
    value = rref.local_value()
    fn = getattr(type(value), name)
    out = fn(value, *args, **kwargs)
    if getattr(fn, "_tw_async", False):
        return out
    done = Future()
    done.set_result(out)
    return done


_invoke_on_value._tw_async = True


class _Proxy:
    def __init__(self, rref, how, timeout):
        self._rref, self._how, self._timeout = rref, how, timeout

    def __getattr__(self, name):
        rref, how, timeout = self._rref, self._how, self._timeout

        def call(*args, **kwargs):
            to = rref.owner().id
            if how == "remote":
                return remote(to, _invoke_on_value,
                              (rref, name, args, kwargs), timeout=timeout)
            f = rpc_async(to, _invoke_on_value, (rref, name, args, kwargs),
                          timeout=timeout)
            return f.wait() if how == "sync" else f
        return call


_C._set_rref_class(RRef)


def remote(to, func, args=None, kwargs=None, timeout=UNSET_RPC_TIMEOUT):
    """Run func on worker `to`, keep its result there; an RRef to it."""
    qual, a, k, mapper = _plan(func, args, kwargs)
    if qual == UDF_FN:
        qual = REMOTE_FN  # the owner keeps the object itself
    try:
        rref = _C.remote(_to_id(to), qual, a, k, _ms(timeout))
    except _C.RemoteError as e:
        from tensorwire.rpc import _raise_remote
        _raise_remote(e.args)
    return rref
