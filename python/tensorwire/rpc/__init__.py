"""torch.distributed.rpc over tensorwire: ``import tensorwire.rpc as rpc``.

The same functions, classes and semantics as torch.distributed.rpc
(init_rpc, shutdown, get_worker_info, rpc_sync, rpc_async, remote, RRef,
WorkerInfo, TensorPipeRpcBackendOptions, get_rpc_timeout,
functions.async_execution), with tensorwire's agent underneath.

Trust: Python functions and their arguments arrive pickled, and
unpickling runs code. They are accepted only on connections that proved
the group's shared secret (RpcBackendOptions.secret or TW_SECRET); a
worker without one serves on loopback addresses only.
"""

import sys as _sys
from types import FunctionType as _FunctionType

from tensorwire import _C
from tensorwire.rpc.api import (  # noqa: F401
    UNSET_RPC_TIMEOUT, RpcBackendOptions, RRef, TensorPipeRpcBackendOptions,
    WorkerInfo, get_rpc_timeout, get_worker_info, init_rpc, register,
    remote, rpc_async, rpc_sync, shutdown, _set_rpc_timeout, UDF_FN)
from tensorwire.rpc import api, functions  # noqa: F401
from tensorwire import _pickle
from tensorwire import _errors as _errors_mod

# RRefs inside pickled values travel as RRefs (forked for the receiver),
# beside the pickle like tensors.
_pickle.set_rref_hooks((RRef,))

PICKLE_TAG = "tw::pickle"
LIVE_TAG = "tw::live"

def _errors_to_wire(exc, me):
    """(kind, message) for exception exc raised on this worker (me, a
    WorkerInfo): the type, the worker and the traceback (_errors)."""
    from tensorwire import _errors
    return _errors.to_wire(exc, me.name if me else "?", me.id if me else 0)


_LOCAL_KINDS = frozenset((_errors_mod.TW_ETIMEDOUT, _errors_mod.TW_EUNREACHABLE,
                          _errors_mod.TW_ESHUTDOWN, _errors_mod.TW_ENOSPC))


def _raise_remote(err):
    """Raise the exception a failed call's (kind, message, origin) stands
    for: the remote type where Python has it (_errors)."""
    from tensorwire import _errors
    from tensorwire.rpc import api
    kind, msg, origin = err
    name = None
    # What this worker's own agent says of a call (its timeout, a peer
    # unreachable, its shutdown, a full queue) is not headed "On
    # WorkerInfo(...)", as torch heads only what a callee raised.
    if not (origin == api._self_id and kind in _LOCAL_KINDS):
        try:
            name = _C.worker_info(origin)[1]
        except Exception:
            pass
    raise _errors.from_wire(kind, msg, name, origin)


def _is_builtin(func):
    """func is a torch builtin tensorwire serves as an aten:: operator."""
    if not callable(func) or isinstance(func, type):
        return False
    try:
        from tensorwire import _builtins
    except ImportError:  # no torch: no torch builtins either
        return False
    return _builtins.find_builtin(func) is not None


def _is_script(func):
    try:
        import torch
    except ImportError:
        return False
    return isinstance(func, torch.jit.ScriptFunction)


def _match_builtin(func, args, kwargs):
    """(aten qualified name, args, kwargs) for a torch builtin tensorwire
    serves, else None (it travels as a pickled Python function)."""
    if not callable(func) or isinstance(func, type):
        return None
    try:
        from tensorwire import _builtins
    except ImportError:  # no torch: no torch builtins either
        return None
    if _builtins.find_builtin(func) is None:
        return None
    return _builtins.match(func, args, kwargs)


SCRIPT_FN = "tw::py_script"  # runs a TorchScript function by name


def _script_call(func, args, kwargs):
    """A TorchScript function: called by its qualified name, as torch's
    pyRpcTorchscript; the callee runs its own compilation of the same
    function (it imports the same module) and binds the arguments to its
    schema (torch's binding errors come back as RuntimeError)."""
    try:
        import torch
    except ImportError:
        return None
    if not isinstance(func, torch.jit.ScriptFunction):
        return None
    from tensorwire import _pickle
    data, lifted = _pickle.dumps((func.qualified_name, args, kwargs))
    return SCRIPT_FN, (data, list(lifted)), {}, _unwrap_result


def _script_serve(data, lifted):
    """On the callee: the TorchScript function named, run."""
    import torch
    from tensorwire import _pickle
    name, args, kwargs = _pickle.loads(data, lifted)
    fn = torch.jit._state._python_cu.find_function(name)
    if fn is None:
        raise RuntimeError(
            "Unknown TorchScript function %s on worker %s: the callee must "
            "define it too (import the module that scripts it)"
            % (name, get_worker_info().name))
    d, l2 = _pickle.dumps(fn(*args, **kwargs))
    return (PICKLE_TAG, d, list(l2))


def _udf_call(func, args, kwargs):
    """A Python function: pickled with its arguments, tensors beside."""
    from tensorwire import _pickle
    data, lifted = _pickle.dumps((func, args, kwargs))
    return UDF_FN, (data, list(lifted)), {}, _unwrap_result


def _unwrap(value):
    if isinstance(value, tuple) and len(value) == 3 and \
       value[0] == PICKLE_TAG:
        from tensorwire import _pickle
        return _pickle.loads(value[1], value[2])
    return value


def _unwrap_result(ok, out):
    if not ok:
        _raise_remote(out)
    return _unwrap(out)


# On the callee: the function of a call without arguments, by its pickle:
# (module name, name, function). The same bytes name the same module-level
# name, which may be bound to another function since (a reload, a patch):
# an entry is used only while the name still resolves to its function.
_noarg_fns = {}


api._unwrap_result = _unwrap_result


def _noarg_fn(data, lifted):
    """The function of a call without arguments seen before (its pickle,
    no tensors), while its name still resolves to it; else None."""
    ent = None if lifted else _noarg_fns.get(data)
    if ent is not None and \
            getattr(_sys.modules.get(ent[0]), ent[1], None) is ent[2]:
        return ent[2]
    return None


def _udf_run(data, lifted):
    """On the callee: run a pickled Python function; (func, its result)."""
    func = _noarg_fn(data, lifted)
    if func is not None:
        args, kwargs = (), {}
    else:
        from tensorwire import _pickle
        func, args, kwargs = _pickle.loads(data, lifted)
        if not lifted and not args and not kwargs and \
                type(func) is _FunctionType and "." not in \
                func.__qualname__ and (data in _noarg_fns or
                                       len(_noarg_fns) < 4096):
            _noarg_fns[data] = (func.__module__, func.__qualname__, func)
    return func, func(*args, **kwargs)


def _udf_serve(data, lifted):
    """On the callee: run a pickled Python function; its result pickled
    back the same way (None travels as None)."""
    func, result = _udf_run(data, lifted)
    if result is None:
        return None
    return _udf_result(func, result)


def _udf_result(func, result, encode=None):
    """A served function's result as it travels (pickled, or as encode
    makes it; an @async_execution function's Future: a Future of that)."""
    from tensorwire.futures import Future
    if encode is None:
        encode = _pickled
    if isinstance(result, Future) and getattr(func, "_tw_async", False):
        out = Future()

        def done(f):
            try:
                out.set_result(encode(f.wait()))
            except BaseException as e:
                out.set_exception(e)
        result.add_done_callback(done)
        return out
    return encode(result)


def _pickled(obj):
    from tensorwire import _pickle
    d, l2 = _pickle.dumps(obj)
    return (PICKLE_TAG, d, list(l2))


_udf_serve._tw_async = True


# ---- values kept in RRefs ---------------------------------------------------
#
# torch's owner keeps the object a remote() call returned: local_value()
# is that object, the proxies' methods change it, and to_here() pickles it
# as it is then. tensorwire's owner keeps values in C, where a Python
# object could only be its pickle (a new copy at each local_value()). So
# the owner keeps such objects here, and C keeps a marker: (LIVE_TAG, key,
# keeper), keeper a one-byte numpy array that C holds by DLPack. C frees it
# when the RRef's value goes (its users all gone), and then the object
# goes too (a finalizer on the keeper, run by a Python thread). Values
# pickling cannot change (None, numbers, strings, bytes) and tensors that
# do not require grad (kept in C as tensors, whose in-place changes stay)
# are kept as before.

_live = {}
_live_next = iter(range(1, 1 << 62))
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes)


def _keep(obj):
    """A remote() result as C keeps it: a marker for a live object."""
    try:
        import numpy
    except ImportError:  # no keeper to be had: kept as its pickle
        numpy = None
    # A tensor that requires grad is kept as the object itself: its
    # graph and its identity (the key of its gradient in a distributed
    # autograd context) are the owner's, as in torch.
    if numpy is None or type(obj) in _IMMUTABLE or (
            _is_tensor(obj) and not obj.requires_grad):
        return _pickled(obj)
    import weakref
    key = next(_live_next)
    keeper = numpy.zeros(1, numpy.uint8)
    _live[key] = obj
    weakref.finalize(keeper, _live.pop, key, None)
    return (LIVE_TAG, key, keeper)


def _is_tensor(obj):
    t = _sys.modules.get("torch")
    return t is not None and isinstance(obj, t.Tensor)


def _is_live(value):
    return isinstance(value, tuple) and len(value) == 3 and \
        value[0] == LIVE_TAG


def _live_object(value):
    """On the owner: the object a marker stands for."""
    try:
        return _live[value[1]]
    except KeyError:
        raise RuntimeError("the RRef's value is gone from its owner "
                           "(all its users deleted it)") from None


def _live_value(rref):
    """On the owner, for a user's to_here(): the kept object (pickled
    back as it is now)."""
    return rref.local_value()


def _remote_serve(data, lifted):
    """On the owner: a pickled Python function run for remote(); its
    result kept (_keep)."""
    func, result = _udf_run(data, lifted)
    if result is None:
        return None
    return _udf_result(func, result, _keep)


_remote_serve._tw_async = True
