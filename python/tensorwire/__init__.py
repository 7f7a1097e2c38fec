"""tensorwire: RPC for tensors (Python side).

Kept minimal on purpose: the extension module (tensorwire._C) and the
torch-compatible tensorwire.rpc package are added by their own changes.
"""
