"""torch.distributed.rpc.functions: async_execution."""

import functools

__all__ = ["async_execution"]


def async_execution(fn):
    """Mark fn as returning a Future: the callee answers the call when that
    future completes, not when fn returns (torch's @rpc.functions.
    async_execution). Works for Python functions called by rpc_sync,
    rpc_async and remote."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    wrapper._tw_async = True
    wrapper._wrapped_async_rpc_function = fn  # torch's mark, for code that
    return wrapper                            # tests for it
