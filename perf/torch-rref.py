#!/usr/bin/env python3
"""torch.distributed.rpc's side of bench-rpc's rref mode (issue 13): the same
workloads as `bench-rpc --only rref`, in torch 1.13 (TensorPipe), with the
anchor's own machinery (../shared/anchors/torch_rpc/bench.py: its configs,
its quiet-machine waits and redone items, its unpinned processes), so that
perf/bench-rpc.sh can print each tensorwire figure beside torch's from the
same run.

Per config (bench.py's --configs, default the same three as bench.py), a
fresh pair of processes (worker0 -> worker1, world_size=2):
  sync_noop        rpc_sync(worker1, noop)                       (the baseline)
  remote_noop      rpc.remote(worker1, noop).to_here()           (small value: None)
  sync_echo_1MiB   rpc_sync(worker1, echo, args=(t,))            t: 1 MiB float32
  remote_echo_1MiB rpc.remote(worker1, echo, args=(t,)).to_here()
then a fresh trio (world_size=3): worker0 creates rref = rpc.remote(worker1,
noop), waits until the owner confirmed it, and times
  sync_noop_c      rpc_sync(worker2, noop)                       (the baseline)
  third_worker     rpc_sync(worker2, use_rref, args=(rref,))
where use_rref(r) returns r.to_here(): worker2 fetches the value from its
owner worker1 (the RRef is forked to worker2 by the call).

Each workload prints one line (latencies in ns, as bench-rpc's):
  RESULT torch_<workload>.<config> n= p50=ns p90=ns p99=ns p99.9=ns min=ns
         max=ns mean=ns [base_p50_ns= ratio_p50=] foreign_cores= attempts=
ratio_p50 = p50 / the baseline's p50 in the same processes.

    /usr/bin/python3 perf/torch-rref.py [--quick] [--anchor DIR] [--configs ...]

DIR (or $TW_TORCH_ANCHOR) holds bench.py; default ../shared/anchors/torch_rpc
beside the repository, else /work/shared/anchors/torch_rpc. Nothing there is
written. Run with Debian's interpreter (python3-torch 1.13).
"""
import os
import sys


def _anchor_dir():
    d = os.environ.get("TW_TORCH_ANCHOR")
    if d:
        return d
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (os.path.join(here, "..", "..", "shared", "anchors", "torch_rpc"),
              "/work/shared/anchors/torch_rpc"):
        if os.path.exists(os.path.join(d, "bench.py")):
            return os.path.abspath(d)
    return None


# --anchor before anything imports bench.py; the spawned workers inherit it
# through the environment.
for _i, _arg in enumerate(sys.argv):
    if _arg == "--anchor" and _i + 1 < len(sys.argv):
        os.environ["TW_TORCH_ANCHOR"] = os.path.abspath(sys.argv[_i + 1])
    elif _arg.startswith("--anchor="):
        os.environ["TW_TORCH_ANCHOR"] = os.path.abspath(_arg.split("=", 1)[1])
_ANCHOR = _anchor_dir()
if _ANCHOR is None or not os.path.exists(os.path.join(_ANCHOR, "bench.py")):
    sys.exit("torch-rref.py: bench.py not found (--anchor DIR or TW_TORCH_ANCHOR)")
sys.path.insert(0, _ANCHOR)
sys.dont_write_bytecode = True  # no __pycache__ beside bench.py: shared/ is read-only

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import bench as anchor  # noqa: E402  (sets GLOG_minloglevel, TP_SOCKET_IFNAME)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed.rpc as rpc  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

MIB = 1 << 20


# UDFs, module-level so they pickle by reference (__main__.<name>).
def noop():
    return None


def echo(t):
    return t


def use_rref(r):
    return r.to_here()


def proc_cpu_seconds():
    return time.process_time()


def lat_ns(ns):
    """bench-rpc's percentiles (sorted sample at index (n-1)*q), in ns."""
    s = np.sort(np.asarray(ns, dtype=np.int64))
    n = s.size
    p = lambda q: float(s[int((n - 1) * q)])
    return {"n": int(n), "p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "p99.9": p(0.999),
            "min": float(s[0]), "max": float(s[-1]), "mean": float(s.mean())}


def suite(a, peers):
    """Runs in worker0. peers: the other workers' names (for the CPU meter)."""
    own = lambda: time.process_time() + sum(rpc.rpc_sync(p, proc_cpu_seconds) for p in peers)
    meter = anchor.LoadMeter(own)
    log = lambda msg: print(f"    [worker0] {msg}", flush=True)

    def item(label, fn):
        # bench.py's item(): redo (after a quiet wait) while other processes were busy
        for attempt in range(1, a.busy_retries + 2):
            s0 = meter.snap()
            r = fn()
            load = meter.load(s0, meter.snap())
            r.update(foreign_cores=load["foreign_cpu_cores"], attempts=attempt)
            if load["foreign_cpu_cores"] < a.quiet_threshold or attempt > a.busy_retries:
                break
            log(f"{label}: foreign load {load['foreign_cpu_cores']:.2f} cores -> redo")
            meter.wait_quiet(a.quiet_wait, a.quiet_threshold, log)
        return r

    def timed(fn, n, warmup):
        ns, _ = anchor.time_calls(fn, n, warmup)
        return lat_ns(ns)

    def paired(base_fn, fn, n, warmup):
        # the baseline right before, in the same attempt (as rref_pair in bench-rpc.c)
        def run():
            b = timed(base_fn, n, warmup)
            r = timed(fn, n, warmup)
            r["base_p50_ns"] = b["p50"]
            r["ratio_p50"] = r["p50"] / b["p50"]
            return {"base": b, "it": r}
        return run

    res = {}
    if len(peers) == 1:
        p = peers[0]
        assert rpc.remote(p, noop).to_here() is None
        r = item("remote noop", paired(lambda: rpc.rpc_sync(p, noop),
                                       lambda: rpc.remote(p, noop).to_here(), a.n, a.warmup))
        res["sync_noop"], res["remote_noop"] = r["base"], dict(r["it"], foreign_cores=r["foreign_cores"],
                                                               attempts=r["attempts"])
        t = torch.arange(MIB // 4, dtype=torch.float32)
        assert torch.equal(rpc.remote(p, echo, args=(t,)).to_here(), t)
        r = item("remote echo 1 MiB", paired(lambda: rpc.rpc_sync(p, echo, args=(t,)),
                                             lambda: rpc.remote(p, echo, args=(t,)).to_here(),
                                             a.n_1m, a.warmup_1m))
        res["sync_echo_1MiB"], res["remote_echo_1MiB"] = r["base"], dict(
            r["it"], foreign_cores=r["foreign_cores"], attempts=r["attempts"])
    else:
        owner, third = peers
        rref = rpc.remote(owner, noop)
        while not rref.confirmed_by_owner():
            time.sleep(0.001)
        assert rpc.rpc_sync(third, use_rref, args=(rref,)) is None
        r = item("third worker", paired(lambda: rpc.rpc_sync(third, noop),
                                        lambda: rpc.rpc_sync(third, use_rref, args=(rref,)),
                                        a.n, a.warmup))
        res["sync_noop_c"], res["third_worker"] = r["base"], dict(
            r["it"], foreign_cores=r["foreign_cores"], attempts=r["attempts"])
        del rref
    return res


def rank_main(rank, cfg, port, world, a, out_path):
    opts = rpc.TensorPipeRpcBackendOptions(
        num_worker_threads=cfg["threads"], init_method=f"tcp://127.0.0.1:{port}", rpc_timeout=300,
        _transports=cfg["transports"], _channels=cfg["channels"])
    rpc.init_rpc(f"worker{rank}", rank=rank, world_size=world, rpc_backend_options=opts)
    if rank == 0:
        res = suite(a, [f"worker{r}" for r in range(1, world)])
        with open(out_path, "w") as f:
            json.dump(res, f)
    rpc.shutdown()


def spawn(cfg, world, a):
    fd, out_path = tempfile.mkstemp(suffix=".json", prefix="torch_rref_")
    os.close(fd)
    try:
        mp.spawn(rank_main, args=(cfg, anchor.free_port(), world, a, out_path), nprocs=world, join=True)
        with open(out_path) as f:
            return json.load(f)
    finally:
        os.unlink(out_path)


def result_line(name, r):
    keys = ("n", "p50", "p90", "p99", "p99.9", "min", "max", "mean")
    s = f"RESULT {name:<24} n={r['n']} " + " ".join(f"{k}={r[k]:.0f}ns" for k in keys[1:])
    if "ratio_p50" in r:
        s += f" base_p50_ns={r['base_p50_ns']:.0f} ratio_p50={r['ratio_p50']:.2f}"
    if "foreign_cores" in r:
        s += f" foreign_cores={r['foreign_cores']:.2f} attempts={r['attempts']}"
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["tp-auto-t16:16", "tp-auto-t4:4", "tcp-t16:16:uv:mpt_uv"],
                    help="as bench.py's (NAME:THREADS[:TRANSPORTS[:CHANNELS]])")
    ap.add_argument("--anchor", default=None, help="the folder holding bench.py")
    ap.add_argument("-n", type=int, default=5000, help="small-call samples per workload")
    ap.add_argument("--n-1m", type=int, default=1000, help="1 MiB samples per workload")
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--only", default="pair,third", help="pair (2 workers), third (3 workers), or both")
    ap.add_argument("--quick", action="store_true", help="bench.py --quick's remote+to_here size: 500 samples")
    ap.add_argument("--quiet-wait", type=float, default=30.0)
    ap.add_argument("--busy-retries", type=int, default=3)
    ap.add_argument("--quiet-threshold", type=float, default=0.15)
    ap.add_argument("--out", default=None, help="JSON of every figure")
    a = ap.parse_args()
    if a.quick:
        a.n, a.n_1m, a.warmup = 500, 100, 200
    a.warmup_1m = max(10, a.n_1m // 10)
    parts = a.only.split(",")

    m = anchor.machine_info()
    print(f"# torch-rref: torch {m['torch']} python {m['python']} ({m['python_executable']}), "
          f"bench.py from {_ANCHOR}, {'quick' if a.quick else 'full'}: n={a.n} n_1m={a.n_1m}, "
          f"processes unpinned (as bench.py)", flush=True)
    meter = anchor.LoadMeter(anchor._own_tree_cpu_s)
    log = lambda msg: print(f"   {msg}", flush=True)
    report = {"machine": m, "settings": vars(a), "configs": []}
    for spec in a.configs:
        cfg = anchor.parse_config(spec)
        res = {}
        for part, world in (("pair", 2), ("third", 3)):
            if part not in parts:
                continue
            print(f"# config {cfg['name']} ({spec}): {world} workers", flush=True)
            if a.quiet_wait > 0:
                meter.wait_quiet(a.quiet_wait, a.quiet_threshold, log)
            res.update(spawn(cfg, world, a))
        for k, r in res.items():
            print(result_line(f"torch_{k}.{cfg['name']}", r), flush=True)
        report["configs"].append({"name": cfg["name"], "spec": spec, "results": res})
    if a.out:
        with open(a.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
