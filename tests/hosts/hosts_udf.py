"""Python functions the Python phase of test_hosts.py calls across
namespaces (pickled by reference: every worker imports this module by the
same name)."""

import torch

import tensorwire.rpc as rpc


def scale(x, k):
    return x * k


def echo(x):
    return x


def where():
    return rpc.get_worker_info().name


def fetch(rref):
    """A user RRef passed in from another host: fetch it here."""
    return rref.to_here()


def checksum(x):
    return int(x.view(torch.uint8).to(torch.int64).sum())
