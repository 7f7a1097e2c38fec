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

from tensorwire import _C
from tensorwire.rpc.api import (  # noqa: F401
    UNSET_RPC_TIMEOUT, RpcBackendOptions, RRef, TensorPipeRpcBackendOptions,
    WorkerInfo, get_rpc_timeout, get_worker_info, init_rpc, register,
    remote, rpc_async, rpc_sync, shutdown, _set_rpc_timeout)
from tensorwire.rpc import functions  # noqa: F401

PICKLE_TAG = "tw::pickle"

_KIND = _C.status_names()
_NAME = {v: k for k, v in _KIND.items()}

# Python exception types that keep their type across workers, with the
# tensorwire kind that carries them (the others travel as their name in
# the message, and come back as RuntimeError naming it).
_KEEP = {ValueError: "TW_EVALUE", TypeError: "TW_ETYPE",
         RuntimeError: "TW_ERUNTIME"}
_BY_NAME = {"KeyError": KeyError, "IndexError": IndexError,
            "AttributeError": AttributeError,
            "StopIteration": StopIteration}


def _errors_to_wire(exc, me):
    """(kind, message) for exception exc raised on this worker: the
    message says which worker raised it and carries its traceback, as
    torch's RemoteException does."""
    import traceback
    tb = "".join(traceback.format_exception(type(exc), exc,
                                            exc.__traceback__))
    kind = _KIND["TW_ERUNTIME"]
    for t, k in _KEEP.items():
        if type(exc) is t:
            kind = _KIND[k]
    return kind, "On %s:\n%s: %s\n%s" % (me, type(exc).__name__, exc, tb)


def _raise_remote(err):
    """Raise the exception a failed call's (kind, message, origin) names."""
    kind, msg, origin = err
    name = _NAME.get(kind, "TW_ERUNTIME")
    if name == "TW_ETIMEDOUT" or name == "TW_EUNREACHABLE" or \
       name == "TW_ESHUTDOWN":
        raise RuntimeError(msg)
    if name == "TW_EVALUE":
        raise ValueError(msg)
    if name == "TW_ETYPE":
        raise TypeError(msg)
    head = msg.split(":\n", 1)
    if len(head) == 2:
        t = head[1].split(":", 1)[0]
        if t in _BY_NAME:
            raise _BY_NAME[t](msg)
    raise RuntimeError(msg)


def _match_builtin(func, args, kwargs):
    """(aten qualified name, args, kwargs) for a torch builtin, else
    None."""
    try:
        from tensorwire import _builtins
    except ImportError:
        return None
    return _builtins.match(func, args, kwargs)


def _udf_call(func, args, kwargs):
    """A Python function: pickled with its arguments, tensors beside."""
    from tensorwire import _pickle
    data, lifted = _pickle.dumps((func, args, kwargs))
    return "tw::py_udf", (data, list(lifted)), {}, _unwrap_result


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


def _udf_serve(data, lifted):
    """On the callee: run a pickled Python function; its result pickled
    back the same way."""
    from tensorwire import _pickle
    func, args, kwargs = _pickle.loads(data, lifted)
    result = func(*args, **kwargs)
    from tensorwire.futures import Future
    if isinstance(result, Future) and getattr(func, "_tw_async", False):
        out = Future()

        def done(f):
            try:
                d, l2 = _pickle.dumps(f.wait())
                out.set_result((PICKLE_TAG, d, list(l2)))
            except BaseException as e:
                out.set_exception(e)
        result.add_done_callback(done)
        return out
    d, l2 = _pickle.dumps(result)
    return (PICKLE_TAG, d, list(l2))


_udf_serve._tw_async = True
