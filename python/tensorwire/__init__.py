"""tensorwire: RPC for tensors, torch.distributed.rpc's API over a polling
dataplane (io_uring, DPDK).

``import tensorwire.rpc as rpc`` is the torch-compatible entry: porting
from ``torch.distributed.rpc`` is a change of import.

Trust: a worker unpickles the Python functions and arguments other
workers send it, and unpickling runs code. tensorwire accepts those calls
only on authenticated connections: every connection opens with a mutual
HMAC challenge on the group's shared secret (``rpc_backend_options.secret``
or ``TW_SECRET``). Without a secret a worker serves on loopback addresses
only. Never give the secret to anyone you would not let run code on every
worker.
"""



__all__ = ["rpc"]
