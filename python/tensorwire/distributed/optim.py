"""torch.distributed.optim's DistributedOptimizer over tensorwire:
``from tensorwire.distributed.optim import DistributedOptimizer``.

    opt = DistributedOptimizer(torch.optim.SGD, [rref1, rref2], lr=0.05)
    with dist_autograd.context() as context_id:
        ...
        dist_autograd.backward(context_id, [loss])
        opt.step(context_id)

Each parameter's owner keeps an optimizer over the parameters it owns
(torch's _LocalOptimizer, made by an rpc_async the constructor waits
for: a bad argument raises there); step(context_id) steps them all at
once, each with the gradients the context holds on that owner."""

import threading

from tensorwire.distributed import autograd as dist_autograd
from tensorwire.rpc import api as rpc

__all__ = ["DistributedOptimizer"]


class _LocalOptimizer:
    """On an owner: optimizer_class over the parameters it owns."""

    # As torch's: one step at a time per worker, whoever asks.
    global_lock = threading.Lock()

    def __init__(self, optimizer_class, local_params_rref, *args, **kwargs):
        self._local_params = [r.local_value() for r in local_params_rref]
        self.optim = optimizer_class(self._local_params, *args, **kwargs)

    def step(self, autograd_ctx_id):
        grads = dist_autograd.get_gradients(autograd_ctx_id)
        with _LocalOptimizer.global_lock:
            for p in self._local_params:
                if p in grads:
                    p.grad = grads[p]
            self.optim.step()


def _new_local_optimizer(optim_cls, local_params_rref, *args, **kwargs):
    # An RRef the owner makes, answered by value: the caller waits for
    # it, so a bad argument raises from the constructor, as torch's.
    return rpc.RRef(
        _LocalOptimizer(optim_cls, local_params_rref, *args, **kwargs))


def _local_optimizer_step(local_optim_rref, autograd_ctx_id):
    local_optim_rref.local_value().step(autograd_ctx_id)


def _wait_all(futs):
    """Every future's value; after all of them are done, the first error
    raises (torch's _wait_for_all)."""
    values, errors = [], []
    for f in futs:
        try:
            values.append(f.wait())
        except Exception as e:  # wait for all, raise the first
            errors.append(e)
    if errors:
        raise errors[0]
    return values


class DistributedOptimizer:
    """optimizer_class (a torch.optim optimizer) over parameters on their
    owners, params_rref being RRefs to them; extra arguments go to each
    owner's optimizer_class."""

    def __init__(self, optimizer_class, params_rref, *args, **kwargs):
        per_owner = {}
        for r in params_rref:
            per_owner.setdefault(r.owner().id, []).append(r)
        futs = [rpc.rpc_async(owner, _new_local_optimizer,
                              args=(optimizer_class, rrefs) + args,
                              kwargs=kwargs)
                for owner, rrefs in per_owner.items()]
        self.remote_optimizers = _wait_all(futs)

    def step(self, context_id):
        """Step every owner's parameters with the gradients context
        context_id holds there; raises the first owner's error."""
        if not dist_autograd._is_valid_context(context_id):
            raise dist_autograd._state.no_context(context_id)
        _wait_all([rpc.rpc_async(o.owner().id, _local_optimizer_step,
                                 args=(o, context_id))
                   for o in self.remote_optimizers])
