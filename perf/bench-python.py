#!/usr/bin/python3
"""bench-python.py: tensorwire.rpc beside torch.distributed.rpc, one run.

    PYTHONPATH=build/python /usr/bin/python3 perf/bench-python.py [--quick]
        [--rounds N] [--torch-config SPEC] [--threads 16] [--anchor DIR]
        [--build DIR] [--out FILE]

The workloads and statistics are those of torch's anchor benchmark,
../shared/anchors/torch_rpc/bench.py, and so is the code that measures
them: for torch this script runs bench.py itself (it writes its results as
JSON); for tensorwire it imports the same bench.py in two spawned worker
processes on 127.0.0.1 (worker0 -> worker1, world_size 2), points that
module's `rpc` at tensorwire.rpc and calls its run_suite(), so the warm-up,
iteration counts, timers, percentiles, calls/s and GB/s are computed by the
very same lines for both. Both get the same settings, passed explicitly.

  1. rpc_sync no-op Python function         p50/p99 [us], calls/s
  2. rpc_sync builtin torch.add, 1-elt       p50/p99 [us]
  3. rpc_async no-op, windows 1/16/64/256    calls/s
  4. remote() + to_here(), 16-elt tensor     p50/p99 [us]
  5. tensor echo 4 KiB .. 64 MiB             median RTT [us], GB/s = 2*bytes/median
  6. a remote ValueError                     p50 [us]
  (0. idle CPU of each process, and the foreign CPU load of each item)

Each round runs tensorwire then torch (odd rounds) or torch then tensorwire
(even rounds), each in a fresh process pair, one after the other (never at
the same time: torch's shm transport spins one core per process). torch's
agent: --torch-config (bench.py's NAME:THREADS[:TRANSPORTS[:CHANNELS]]),
default its defaults with 16 worker threads (tp-auto-t16:16: TensorPipe
picks shm + cma here); tensorwire's: its defaults (io_uring TCP loopback,
one run loop) with --threads Python worker threads (16, as torch's).
Nothing is pinned: neither benchmark pins, and on 2 vCPUs the callee's
run loop, its Python worker and the caller would share whatever pinning
gave them anyway.

Prints one line per workload: tensorwire, torch, the ratio (always "how
many times better tensorwire is": torch/tw for latencies, tw/torch for
rates) and, for the issue's targets, met or MISSED. Writes the whole of
both results (bench.py's JSON for torch) to perf/results/ as JSON.
"""

import argparse
import datetime
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Issue 14 item 9: (label, key, how many times better, at least)
TARGETS = {
    "sync_noop.p50_us": 5.0,
    "sync_builtin_add.p50_us": 10.0,
    "async_noop.64.calls_per_s": 20.0,
    "async_noop.256.calls_per_s": 20.0,
    "tensor_echo.67108864.gbps_median": 2.0,
}


def default_anchor():
    for d in (os.path.join(ROOT, "..", "shared", "anchors", "torch_rpc"),
              "/work/shared/anchors/torch_rpc"):
        if os.path.exists(os.path.join(d, "bench.py")):
            return os.path.abspath(d)
    return None


def settings(a):
    """bench.py's settings (its defaults, or its --quick ones): the same
    values go to both sides."""
    s = dict(warmup=1000, sync_iters=20000, add_iters=10000,
             windows=[1, 16, 64, 256], async_calls=20000, remote_iters=5000,
             sizes=[4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20],
             payload_warmup=3, payload_min_iters=10, payload_max_iters=500,
             payload_seconds=2.0, err_iters=2000, idle_seconds=1.0,
             quiet_wait=30.0, busy_retries=3, quiet_threshold=0.15,
             callee_stderr=os.devnull, probe_only=False)
    if a.quick:  # bench.py --quick
        s.update(warmup=200, sync_iters=2000, add_iters=1000, async_calls=2000,
                 remote_iters=500, err_iters=200, payload_seconds=0.5,
                 payload_max_iters=100)
    if a.sizes:
        s["sizes"] = a.sizes
    if a.quiet_wait is not None:
        s["quiet_wait"] = a.quiet_wait
    if a.busy_retries is not None:
        s["busy_retries"] = a.busy_retries
    return s


def bench_argv(s):
    """bench.py's command-line options for settings s."""
    return ["--warmup", str(s["warmup"]), "--sync-iters", str(s["sync_iters"]),
            "--add-iters", str(s["add_iters"]),
            "--windows", ",".join(map(str, s["windows"])),
            "--async-calls", str(s["async_calls"]),
            "--remote-iters", str(s["remote_iters"]),
            "--sizes", ",".join(map(str, s["sizes"])),
            "--payload-warmup", str(s["payload_warmup"]),
            "--payload-min-iters", str(s["payload_min_iters"]),
            "--payload-max-iters", str(s["payload_max_iters"]),
            "--payload-seconds", str(s["payload_seconds"]),
            "--err-iters", str(s["err_iters"]),
            "--idle-seconds", str(s["idle_seconds"]),
            "--quiet-wait", str(s["quiet_wait"]),
            "--busy-retries", str(s["busy_retries"]),
            "--quiet-threshold", str(s["quiet_threshold"])]


# ---- tensorwire: bench.py's run_suite over tensorwire.rpc -------------------

def tw_rank(rank, anchor, port, s, threads, out_path, pid_path):
    """A spawned tensorwire worker: bench.py's rank_main with tensorwire."""
    sys.path.insert(0, anchor)
    import bench  # the anchor's module: its UDFs pickle as bench.<name>
    import tensorwire.rpc as twrpc
    bench.rpc = twrpc  # run_suite's rpc_sync/rpc_async/remote: tensorwire's
    if rank == 1:
        with open(pid_path, "w") as f:  # for `perf record -p`
            f.write(str(os.getpid()))
        if s["callee_stderr"]:
            sys.stderr = open(s["callee_stderr"], "a")
    opts = twrpc.TensorPipeRpcBackendOptions(
        num_worker_threads=threads, init_method="tcp://127.0.0.1:%d" % port,
        rpc_timeout=300)
    twrpc.init_rpc("worker%d" % rank, rank=rank, world_size=2,
                   rpc_backend_options=opts)
    if rank == 0:
        res = bench.run_suite(argparse.Namespace(**s))
        with open(out_path, "w") as f:
            json.dump(res, f, default=float)
    twrpc.shutdown()


def run_tensorwire(anchor, s, threads, log):
    sys.path.insert(0, anchor)
    import bench
    meter = bench.LoadMeter(bench._own_tree_cpu_s)
    quiet = meter.wait_quiet(s["quiet_wait"], s["quiet_threshold"], log) \
        if s["quiet_wait"] > 0 else None
    fd, out_path = tempfile.mkstemp(suffix=".json", prefix="tw_pybench_")
    os.close(fd)
    pid_path = out_path + ".callee-pid"
    ctx = mp.get_context("spawn")
    ctx.set_executable(sys.executable)
    port = bench.free_port()
    t0 = time.perf_counter()
    s0 = meter.snap()
    procs = [ctx.Process(target=tw_rank,
                         args=(r, anchor, port, s, threads, out_path, pid_path))
             for r in range(2)]
    try:
        for p in procs:
            p.start()
        # Rank 0 finishing first; a failed rank is reported at once.
        while any(p.is_alive() for p in procs):
            if any(p.exitcode not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
        for p in procs:
            p.join(timeout=30)
        bad = [(r, p.exitcode) for r, p in enumerate(procs) if p.exitcode != 0]
        if bad:
            raise RuntimeError("tensorwire worker(s) failed: %s" % bad)
        with open(out_path) as f:
            res = json.load(f)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        for path in (out_path, pid_path):
            if os.path.exists(path):
                os.unlink(path)
    load = meter.load(s0, meter.snap())
    log("foreign CPU load during run: %.2f cores, steal %.2f"
        % (load["foreign_cpu_cores"], load["steal_cores"]))
    return {"name": "tensorwire", "threads": threads, "quiet_wait": quiet,
            "machine_load": load, "results": res,
            "wall_s": time.perf_counter() - t0}


# ---- torch: bench.py itself -------------------------------------------------

def run_torch(anchor, s, cfg, log):
    fd, out_path = tempfile.mkstemp(suffix=".json", prefix="torch_pybench_")
    os.close(fd)
    cmd = [sys.executable, os.path.join(anchor, "bench.py"), "--configs", cfg,
           "--out", out_path] + bench_argv(s)
    log("running: " + " ".join(cmd))
    t0 = time.perf_counter()
    # bench.py's PYTHONPATH: without the build tree (plain torch).
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    try:
        p = subprocess.run(cmd, cwd=tempfile.gettempdir(), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        if p.returncode != 0:
            sys.stdout.write(p.stdout)
            raise RuntimeError("bench.py exited with %d" % p.returncode)
        with open(out_path) as f:
            report = json.load(f)
    finally:
        os.unlink(out_path)
    report["stdout"] = p.stdout
    report["command"] = " ".join(cmd)
    report["wall_s"] = time.perf_counter() - t0
    return report


# ---- comparison -------------------------------------------------------------

def get(res, key):
    v = res
    for k in key.split("."):
        v = v[k]
    return v


def rows(s):
    """(label, key, unit, format, higher is better)"""
    r = [("1 no-op rpc_sync p50", "sync_noop.p50_us", "us", "%.1f", False),
         ("1 no-op rpc_sync p99", "sync_noop.p99_us", "us", "%.1f", False),
         ("1 no-op rpc_sync calls/s", "sync_noop.calls_per_s", "/s", "%.0f", True),
         ("1 no-op CPU us/call (both)", "sync_noop.cpu_us_per_call_both_procs", "us", "%.1f", False),
         ("2 builtin torch.add p50", "sync_builtin_add.p50_us", "us", "%.1f", False),
         ("2 builtin torch.add p99", "sync_builtin_add.p99_us", "us", "%.1f", False)]
    for w in s["windows"]:
        r.append(("3 rpc_async window %d" % w, "async_noop.%d.calls_per_s" % w,
                  "/s", "%.0f", True))
    r += [("4 remote+to_here p50", "remote_to_here.p50_us", "us", "%.1f", False),
          ("4 remote+to_here p99", "remote_to_here.p99_us", "us", "%.1f", False)]
    for sz in s["sizes"]:
        name = fmt_size(sz)
        r.append(("5 echo %s median RTT" % name, "tensor_echo.%d.p50_us" % sz,
                  "us", "%.0f", False))
        r.append(("5 echo %s GB/s" % name, "tensor_echo.%d.gbps_median" % sz,
                  "GB/s", "%.3f", True))
    r += [("6 ValueError p50", "error_valueerror.p50_us", "us", "%.1f", False),
          ("0 idle CPU worker0", "idle_cpu_cores.worker0", "cores", "%.2f", False),
          ("0 idle CPU worker1", "idle_cpu_cores.worker1", "cores", "%.2f", False)]
    return r


def fmt_size(n):
    for unit, k in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k and n % k == 0:
            return "%d %s" % (n // k, unit)
    return "%d B" % n


def compare(s, tw, torch_res):
    out = []
    for label, key, unit, fmt, higher in rows(s):
        try:
            a, b = float(get(tw, key)), float(get(torch_res, key))
        except (KeyError, TypeError):
            continue
        if key.startswith("idle_cpu"):
            ratio = None
        elif higher:
            ratio = a / b if b else None
        else:
            ratio = b / a if a else None
        target = TARGETS.get(key)
        out.append({"label": label, "key": key, "unit": unit, "fmt": fmt,
                    "tensorwire": a, "torch": b, "x_better": ratio,
                    "target": target,
                    "met": None if target is None or ratio is None
                    else ratio >= target})
    return out


def print_comparison(cmp, torch_name, rnd):
    print("\n== round %d: tensorwire vs torch (%s); x = times better for "
          "tensorwire" % (rnd, torch_name))
    print("%-30s %12s %12s %6s %8s  %s" % ("workload", "tensorwire", "torch",
                                         "unit", "x", "target"))
    for c in cmp:
        x = "%.2fx" % c["x_better"] if c["x_better"] is not None else "-"
        t = ""
        if c["target"] is not None:
            t = ">= %gx %s" % (c["target"], "met" if c["met"] else "MISSED")
        print("%-30s %12s %12s %6s %8s  %s" % (
            c["label"], c["fmt"] % c["tensorwire"], c["fmt"] % c["torch"],
            c["unit"], x, t), flush=True)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="bench.py's --quick settings (~10x fewer iterations)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="tensorwire/torch pairs, order alternating")
    ap.add_argument("--torch-config", default="tp-auto-t16:16",
                    help="bench.py's --configs entry for torch (default: its "
                    "defaults with 16 worker threads)")
    ap.add_argument("--threads", type=int, default=16,
                    help="tensorwire's num_worker_threads (16, as torch's)")
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")],
                    help="echo payload sizes in bytes (default bench.py's)")
    ap.add_argument("--quiet-wait", type=float,
                    help="bench.py's: wait up to this many s for a quiet machine "
                    "before each side and each redone item (default 30)")
    ap.add_argument("--busy-retries", type=int,
                    help="bench.py's: redo an item disturbed by other processes "
                    "up to N times (default 3)")
    ap.add_argument("--no-torch", action="store_true",
                    help="tensorwire only (no ratios)")
    ap.add_argument("--anchor", default=default_anchor(),
                    help="the folder of torch's bench.py")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build tree (its python/ has tensorwire._C)")
    ap.add_argument("--out", help="JSON file (default perf/results/"
                    "bench-python-<timestamp>.json)")
    a = ap.parse_args()
    if not a.anchor:
        ap.error("bench.py not found: --anchor DIR")
    pydir = os.path.join(os.path.abspath(a.build), "python")
    if os.path.isdir(pydir):
        sys.path.insert(0, pydir)
        os.environ["PYTHONPATH"] = pydir + (
            os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    os.environ.setdefault("GLOG_minloglevel", "1")
    os.environ.setdefault("TP_SOCKET_IFNAME", "lo")
    import tensorwire  # noqa: F401  fail early without a build
    sys.path.insert(0, a.anchor)
    import bench

    s = settings(a)
    ts = datetime.datetime.now(datetime.timezone.utc)
    out = a.out or os.path.join(ROOT, "perf", "results",
                                "bench-python-%s.json" % ts.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    report = {"command": " ".join([sys.executable] + sys.argv),
              "git": git, "machine": bench.machine_info(),
              "settings": dict(s, threads=a.threads, torch_config=a.torch_config,
                               quick=a.quick, rounds=a.rounds),
              "loadavg_start": open("/proc/loadavg").read().split()[:3],
              "rounds": []}
    m = report["machine"]
    print("# bench-python %s git %s: %d cpus, %s, kernel %s, torch %s, python %s"
          % (m["date_utc"], git, m["nproc"], m["cpu_model"], m["kernel"],
             m["torch"], m["python"]), flush=True)
    log = lambda msg: print("   " + msg, flush=True)
    t_all = time.perf_counter()
    for rnd in range(1, a.rounds + 1):
        order = ["tw", "torch"] if rnd % 2 else ["torch", "tw"]
        if a.no_torch:
            order = ["tw"]
        got = {}
        for side in order:
            t0 = time.perf_counter()
            if side == "tw":
                print("== round %d: tensorwire (%d Python worker threads)"
                      % (rnd, a.threads), flush=True)
                got["tw"] = run_tensorwire(a.anchor, s, a.threads, log)
            else:
                print("== round %d: torch (bench.py --configs %s)"
                      % (rnd, a.torch_config), flush=True)
                got["torch"] = run_torch(a.anchor, s, a.torch_config, log)
                c = got["torch"]["configs"][0]
                sel = c.get("selection") or {}
                log("torch transport %s, channel %s, foreign CPU load %.2f cores"
                    % (sel.get("transport_selected"), sel.get("channel_selected"),
                       c["machine_load"]["foreign_cpu_cores"]))
            log("done in %.1f s" % (time.perf_counter() - t0))
        entry = {"round": rnd, "order": order, "tensorwire": got["tw"],
                 "torch": got.get("torch")}
        if "torch" in got:
            c = got["torch"]["configs"][0]
            entry["comparison"] = compare(s, got["tw"]["results"], c["results"])
            print_comparison(entry["comparison"], c["name"], rnd)
        else:
            print("\n== round %d: tensorwire only" % rnd)
            for label, key, unit, fmt, _ in rows(s):
                try:
                    print("%-30s %12s %6s" % (label, fmt % get(got["tw"]["results"], key), unit))
                except (KeyError, TypeError):
                    pass
        report["rounds"].append(entry)
    report["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    report["wall_time_s"] = time.perf_counter() - t_all
    with open(out, "w") as f:
        json.dump(report, f, indent=1, default=float)
    print("\n# wrote %s (total %.0f s)" % (out, report["wall_time_s"]))


if __name__ == "__main__":
    main()
