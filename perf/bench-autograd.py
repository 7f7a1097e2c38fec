#!/usr/bin/python3
"""bench-autograd.py: a training step of a small MLP split over two
workers, with tensorwire's distributed autograd beside torch's, and the
same model run locally, in one run.

    PYTHONPATH=build/python flock /tmp/tw-bench.lock \\
        /usr/bin/python3 perf/bench-autograd.py [--rounds 3] [--steps 2000]
        [--hidden 64] [--batch 16] [--out FILE]

The model: x -> relu(x @ W1) on worker0 (the caller), -> relu(h @ W2) on
worker1 (rpc_sync of a Python function; W2 is worker1's), -> sum on
worker0. A step: forward in a distributed autograd context, backward from
the sum, W2's gradient stepped on worker1 (a plain SGD update inside a
second call, as DistributedOptimizer does), W1's on worker0. The same for
torch.distributed.rpc + torch.distributed.autograd (TensorPipe, its
defaults, 16 worker threads) and for the model run locally in one process
(torch's autograd, no RPC).

Each round runs a fresh process pair for tensorwire and one for torch,
one after the other (order alternating), then the local model in the
caller's process of the first. Reports per-step time: median and the
10th-90th percentile spread per round, and each layer's forward time
(the issue's target is for layers under 100 us). Nothing is pinned.
"""

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- worker1's half of the model (both stacks call it by reference) ---------

_w2 = None


def _init_w2(hidden, seed):
    import torch
    global _w2
    g = torch.Generator().manual_seed(seed)
    _w2 = (torch.randn(hidden, hidden, generator=g) / hidden ** 0.5)
    _w2.requires_grad_()


def layer2(h):
    import torch
    return torch.relu(h @ _w2)


def step_w2(autograd_module, cid, lr):
    """SGD on worker1's parameter with context cid's gradient."""
    import torch
    g = autograd_module.get_gradients(cid)[_w2]
    with torch.no_grad():
        _w2.sub_(lr * g)


def tw_step_w2(cid, lr):
    import tensorwire.distributed.autograd as dist_autograd
    step_w2(dist_autograd, cid, lr)


def torch_step_w2(cid, lr):
    import torch.distributed.autograd as dist_autograd
    step_w2(dist_autograd, cid, lr)


# ---- one process of a pair ---------------------------------------------------

def _percentiles(xs):
    xs = sorted(xs)
    n = len(xs)
    return {"median_us": xs[n // 2] * 1e6, "p10_us": xs[n // 10] * 1e6,
            "p90_us": xs[(n * 9) // 10] * 1e6}


def _model_inputs(a):
    import torch
    g = torch.Generator().manual_seed(1)
    x = torch.randn(a["batch"], a["hidden"], generator=g)
    w1 = (torch.randn(a["hidden"], a["hidden"], generator=g)
          / a["hidden"] ** 0.5).requires_grad_()
    return x, w1


def _distributed_steps(rpc, dist_autograd, step_fn, a):
    import torch
    x, w1 = _model_inputs(a)
    lr = 1e-3
    times = []
    for i in range(a["warmup"] + a["steps"]):
        t0 = time.perf_counter()
        with dist_autograd.context() as cid:
            h = torch.relu(x @ w1)
            y = rpc.rpc_sync("worker1", layer2, args=(h,))
            loss = y.sum()
            dist_autograd.backward(cid, [loss])
            g1 = dist_autograd.get_gradients(cid)[w1]
            rpc.rpc_sync("worker1", step_fn, args=(cid, lr))
            with torch.no_grad():
                w1.sub_(lr * g1)
        if i >= a["warmup"]:
            times.append(time.perf_counter() - t0)
    return times


def _local_steps(a):
    """The same model and step in one process, torch's autograd only."""
    import torch
    x, w1 = _model_inputs(a)
    g = torch.Generator().manual_seed(a["seed"])
    w2 = (torch.randn(a["hidden"], a["hidden"], generator=g)
          / a["hidden"] ** 0.5).requires_grad_()
    lr = 1e-3
    times, l1, l2 = [], [], []
    for i in range(a["warmup"] + a["steps"]):
        t0 = time.perf_counter()
        h = torch.relu(x @ w1)
        t1 = time.perf_counter()
        y = torch.relu(h @ w2)
        t2 = time.perf_counter()
        loss = y.sum()
        g1, g2 = torch.autograd.grad(loss, [w1, w2])
        with torch.no_grad():
            w1.sub_(lr * g1)
            w2.sub_(lr * g2)
        if i >= a["warmup"]:
            times.append(time.perf_counter() - t0)
            l1.append(t1 - t0)
            l2.append(t2 - t1)
    return times, l1, l2


def worker_main(stack, rank, port, a, q):
    try:
        import torch
        torch.set_num_threads(1)
        _init_w2(a["hidden"], a["seed"])
        if stack == "tensorwire":
            import tensorwire.rpc as rpc
            import tensorwire.distributed.autograd as dist_autograd
            opts = rpc.TensorPipeRpcBackendOptions(
                init_method="tcp://127.0.0.1:%d" % port,
                num_worker_threads=16)
            step_fn = tw_step_w2
        else:
            import torch.distributed.rpc as rpc
            import torch.distributed.autograd as dist_autograd
            opts = rpc.TensorPipeRpcBackendOptions(
                init_method="tcp://127.0.0.1:%d" % port,
                num_worker_threads=16)
            step_fn = torch_step_w2
        rpc.init_rpc("worker%d" % rank, rank=rank, world_size=2,
                     rpc_backend_options=opts)
        out = None
        if rank == 0:
            out = {"step": _percentiles(
                _distributed_steps(rpc, dist_autograd, step_fn, a))}
        rpc.shutdown()
        if rank == 0 and a.get("local"):
            times, l1, l2 = _local_steps(a)
            out["local"] = {"step": _percentiles(times),
                            "layer1": _percentiles(l1),
                            "layer2": _percentiles(l2)}
        q.put((rank, "ok", out))
    except BaseException:
        import traceback
        q.put((rank, "error", traceback.format_exc()))


def run_pair(stack, a, local):
    ctx = mp.get_context("spawn")
    ctx.set_executable("/usr/bin/python3")
    q = ctx.Queue()
    port = _free_port()
    args = dict(a, local=local)
    ps = [ctx.Process(target=worker_main, args=(stack, r, port, args, q))
          for r in (0, 1)]
    for p in ps:
        p.start()
    result = None
    for _ in ps:
        rank, status, value = q.get(timeout=1200)
        if status != "ok":
            raise RuntimeError("%s worker %d:\n%s" % (stack, rank, value))
        if rank == 0:
            result = value
    for p in ps:
        p.join()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--out", default=None)
    o = ap.parse_args()
    a = {"steps": o.steps, "warmup": o.warmup, "hidden": o.hidden,
         "batch": o.batch, "seed": o.seed}
    rounds = []
    for r in range(o.rounds):
        order = ("tensorwire", "torch") if r % 2 == 0 else \
            ("torch", "tensorwire")
        res = {}
        for i, stack in enumerate(order):
            res[stack] = run_pair(stack, a, local=(i == 0))
        res["local"] = res[order[0]].pop("local")
        rounds.append(res)
        tw = res["tensorwire"]["step"]["median_us"]
        th = res["torch"]["step"]["median_us"]
        lo = res["local"]["step"]["median_us"]
        print("round %d (%s first): step median tensorwire %.0f us "
              "[p10-p90 %.0f-%.0f], torch %.0f us [%.0f-%.0f], local "
              "%.0f us; torch/tensorwire %.2fx; layers %.1f / %.1f us"
              % (r + 1, order[0], tw,
                 res["tensorwire"]["step"]["p10_us"],
                 res["tensorwire"]["step"]["p90_us"], th,
                 res["torch"]["step"]["p10_us"],
                 res["torch"]["step"]["p90_us"], lo, th / tw,
                 res["local"]["layer1"]["median_us"],
                 res["local"]["layer2"]["median_us"]), flush=True)
    ratios = [x["torch"]["step"]["median_us"] /
              x["tensorwire"]["step"]["median_us"] for x in rounds]
    print("torch/tensorwire per step over %d rounds: min %.2fx, median "
          "%.2fx, max %.2fx (target >= 3x)" % (
              len(ratios), min(ratios), statistics.median(ratios),
              max(ratios)))
    if o.out:
        with open(o.out, "w") as f:
            json.dump({"settings": a, "rounds": rounds}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
