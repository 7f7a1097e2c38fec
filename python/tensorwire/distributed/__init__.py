"""torch.distributed's distributed autograd and optimizer over tensorwire:
``import tensorwire.distributed.autograd as dist_autograd`` and
``from tensorwire.distributed.optim import DistributedOptimizer``."""
