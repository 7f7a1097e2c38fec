"""Distributed autograd (tensorwire.distributed.autograd), multi-process:
gradients across two and three workers equal torch's own on the same
computation run locally; contexts end everywhere; torch's errors."""
import pytest
import torch

import rpcgroup

TOL = {"float32": 1e-6, "float64": 1e-12}


def _close(a, b, tol):
    assert a is not None and b is not None
    assert a.dtype == b.dtype and a.shape == b.shape
    # Relative to the gradient's size (1,000 passes sum 1,000 of them).
    scale = max(1.0, b.abs().max().item())
    assert (a - b).abs().max().item() <= tol * scale, (a, b)


def _check(out, dtname):
    assert out["x_grad"] is None  # never into .grad
    assert set(out["dist"]) == set(out["local"])
    for name, g in out["local"].items():
        _close(out["dist"][name], g, TOL[dtname])
    assert all(c == (0, 0) for c in out["counts"]), out["counts"]


@pytest.mark.parametrize("dtname", ["float32", "float64"])
def test_two_workers(dtname):
    out = rpcgroup.run("agfuncs:body_grads", world=2, args=("two", dtname))
    _check(out, dtname)
    assert out["reached"] == [1]


@pytest.mark.parametrize("dtname", ["float32", "float64"])
@pytest.mark.parametrize("case", ["three", "twice", "loop"])
def test_three_workers(case, dtname):
    out = rpcgroup.run("agfuncs:body_grads", world=3, args=(case, dtname))
    _check(out, dtname)


def test_builtin_with_grad_runs_where_recorded():
    out = rpcgroup.run("agfuncs:body_grads", world=2,
                       args=("builtin", "float64"))
    _check(out, "float64")


def test_thousand_backward_passes_retain_graph():
    out = rpcgroup.run("agfuncs:body_grads", world=3,
                       args=("twice", "float64", 1000), timeout=300)
    _check(out, "float64")


def test_errors_are_torchs():
    out = rpcgroup.run("agfuncs:body_errors", world=2)
    cid = out["cid"]
    unknown = "Could not find autograd context with id: %d"
    assert out["nested"] == ("RuntimeError: Already have an autograd "
                             "context id for this thread.")
    assert out["after_backward"] == "RuntimeError: " + unknown % cid
    assert out["after_grads"] == "RuntimeError: " + unknown % cid
    assert out["unknown"] == "RuntimeError: " + unknown % 424242
    assert out["release_unknown"] == "RuntimeError: " + unknown % 424242
    assert "No tensors provided for gradient computation" in out["no_roots"]
    assert "requires_grad not set on" in out["no_grad"]
    assert "is not a scalar, all roots need to be scalar" in \
        out["not_scalar"]
    assert "does not have a valid gradient function" in out["no_fn"]
    # The error raised in worker1's part of the backward pass, its type
    # and the worker named.
    assert out["remote"].startswith("ValueError"), out["remote"]
    assert "boom in backward" in out["remote"]
    assert "worker1" in out["remote"]
    assert torch.equal(out["after_error"], torch.full((2,), 2.0))
    assert all(c == (0, 0) for c in out["counts"]), out["counts"]


def test_dead_worker_on_the_path():
    out = rpcgroup.run("agfuncs:all_dead", world=3, dead=(2,),
                       nongraceful=(0, 1),
                       extra={"rpc_timeout": 10})
    assert out["w1_has_cid2"]
    assert out["w1_before"][0] >= 1
    # The backward pass through the dead worker fails, naming it, within
    # the call timeout (10 s), not a hang.
    assert out["error"] is not None and "worker2" in out["error"], out
    assert out["seconds"] < 10, out
    # Its own context on worker1 ended with it; worker0's ended too.
    assert out["w1_after"] == (0, 0), out
    assert out["w0_after"] == (0, 0), out


@pytest.mark.parametrize("dtname", ["float32", "float64"])
def test_rrefs_to_remote_parameters(dtname):
    out = rpcgroup.run("agfuncs:body_rref_grads", world=3, args=(dtname,))
    _check(out, dtname)


@pytest.mark.parametrize("optname", ["SGD", "Adam"])
def test_distributed_optimizer_matches_local(optname):
    out = rpcgroup.run("agfuncs:body_optim", world=3,
                       args=(optname, "float64"))
    for name, w in out["local"].items():
        _close(out["dist"][name], w, TOL["float64"])
    # It trained: the weights moved.
    assert not torch.equal(out["dist"]["A"], out["init"])
    assert all(c == (0, 0) for c in out["counts"]), out["counts"]
    assert out["bad_lr"] is not None and \
        "Invalid learning rate" in out["bad_lr"], out["bad_lr"]


def test_worker_dying_in_its_backward_part():
    out = rpcgroup.run("agfuncs:all_die_in_backward", world=3, dead=(2,),
                       nongraceful=(0, 1), extra={"rpc_timeout": 10})
    assert out["error"] is not None and "worker2" in out["error"], out
    assert out["seconds"] < 10, out  # within the timeout, not a hang
    assert out["w1_after"] == (0, 0), out
    assert out["w0_after"] == (0, 0), out
