#!/usr/bin/env python3
"""Summarize one perf/bench-rpc.sh run: tensorwire's figures beside the anchors
measured in the same run (raw io_uring TCP, memcpy, torch.distributed.rpc),
ratios, and the targets met or missed. Prints Markdown; writes JSON.

    python3 perf/bench-rpc-summary.py --log perf/results/bench-rpc-<ts>.log \
        [--torch torch-<ts>.json] [--json perf/results/latest.json]
"""
import argparse
import datetime
import json
import os
import re
import sys

from benchlog import parse_log  # perf/benchlog.py


def first_result(items, key, prefix=""):
    it = items.get(key)
    if not it:
        return None
    for name, kv in it["results"].items():
        if name.startswith(prefix):
            return kv
    return None


def torch_best(tj):
    """Per metric, the best figure over torch's configs (the hardest comparison)."""
    if not tj:
        return None
    cfgs = [c for c in tj.get("configs", []) if c.get("results")]
    if not cfgs:
        return None

    def pick(getter, better):
        best = None
        for c in cfgs:
            try:
                v = getter(c["results"])
            except (KeyError, TypeError):
                continue
            if v is None:
                continue
            if best is None or better(v, best[0]):
                best = (v, c["name"])
        return best

    lo = lambda a, b: a < b
    hi = lambda a, b: a > b
    out = {
        "p50_us": pick(lambda r: r["sync_noop"]["p50_us"], lo),
        "p99_us": pick(lambda r: r["sync_noop"]["p99_us"], lo),
        "p999_us": pick(lambda r: r["sync_noop"]["p999_us"], lo),
        "configs": [c["name"] for c in cfgs],
        "foreign_cores_max": max(c.get("machine_load", {}).get("foreign_cpu_cores", 0) for c in cfgs),
        "quick": bool(tj.get("settings", {}).get("quick")),
    }
    for w in (64, 256):
        out[f"async_w{w}"] = pick(lambda r, w=w: r["async_noop"][str(w)]["calls_per_s"], hi)
    for size in tj.get("settings", {}).get("sizes", []):
        out[f"echo_{size}_gbps"] = pick(lambda r, s=size: r["tensor_echo"][str(s)]["gbps_median"], hi)
        out[f"echo_{size}_p50_us"] = pick(lambda r, s=size: r["tensor_echo"][str(s)]["p50_us"], lo)
    return out


FAR_NS = 500  # placement probe above this: the vCPUs are far apart


def pairs(items):
    """The paired rounds (bench-rpc.sh: pair<r>_stream/_echo64/_pp1k/_lat1k/_pp1m/_lat1m):
    per round and target, the ratio and whether both items of the pair saw the
    same vCPU placement (every probe near, or every probe far)."""
    rounds = sorted({int(m.group(1)) for k in items for m in [re.match(r"pair(\d+)_", k)] if m})
    out = []
    for r in rounds:
        g = lambda suffix, prefix="": first_result(items, f"pair{r}_{suffix}", prefix)

        def same(*keys):
            pr = [x for k in keys for it in [items.get(f"pair{r}_{k}")] if it
                  for x in (it["probe_before_ns"], it["probe_after_ns"]) if x]
            return bool(pr) and len({x > FAR_NS for x in pr}) == 1

        row = {"round": r}
        st, e64 = g("stream", "stream_"), g("echo64", "tw_echo_64MiB")
        row["echo64"] = None if not (st and e64) else e64["GB/s"] / st["GB/s"]
        row["echo64_same"] = same("stream", "echo64")
        row["stream_gbps"], row["echo64_gbps"] = st and st["GB/s"], e64 and e64["GB/s"]
        p1k, p1m = g("pp1k"), g("pp1m")
        # Each echo its own item (lat1k, lat1m); logs before them had one
        # "lat" item for both.
        k1k = "lat1k" if f"pair{r}_lat1k" in items else "lat"
        k1m = "lat1m" if f"pair{r}_lat1m" in items else "lat"
        l1k, l1m = g(k1k, "tw_echolat_1KiB"), g(k1m, "tw_echolat_1MiB")
        row["echo1k"] = None if not (p1k and l1k) else l1k["p50"] / p1k["p50"]
        row["echo1k_same"] = same("pp1k", k1k)
        row["echo1m"] = None if not (p1m and l1m) else l1m["p50"] / p1m["p50"]
        row["echo1m_same"] = same("pp1m", k1m)
        row["probes"] = {k: (it["probe_before_ns"], it["probe_after_ns"])
                         for k in ("stream", "echo64", "pp1k", k1k, "pp1m", k1m)
                         for it in [items.get(f"pair{r}_{k}")] if it}
        out.append(row)
    return out


# Issue 13's rows: (label, tensorwire's RESULT, torch-rref.py's workload,
# the baseline's label). tensorwire's RESULT carries its baseline's p50
# (sync_p50_ns, measured just before in the same processes), torch's too
# (base_p50_ns).
RREF_ROWS = (
    ("remote + to_here, small value (None)", "tw_remote_to_here_noop", "remote_noop",
     "no-op rpc_sync"),
    ("remote + to_here, 1 MiB float32 tensor", "tw_remote_to_here_1MiB", "remote_echo_1MiB",
     "rpc_sync echo 1 MiB"),
    ("RRef through a third worker: A rpc_sync(C, use_rref, (rref owned by B,))",
     "tw_rref_third_worker", "third_worker", "no-op rpc_sync A → C"),
)


def torch_rref_best(it, workload):
    """torch-rref.py's figures for one workload: the config with the lowest p50
    (the hardest comparison, as torch_best), as (config, kv)."""
    best = None
    for name, kv in (it or {}).get("results", {}).items():
        wl, _, cfg = name.partition(".")
        if wl == f"torch_{workload}" and "p50" in kv and (best is None or kv["p50"] < best[1]["p50"]):
            best = (cfg, kv)
    return best


def median(v):
    v = sorted(v)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def same_host(items, p, target):
    """Issue 15's same-host rows: bench-rpc --transport shm (items sh_sync,
    sh_pipe, sh_echo) beside UCX's ucx_perftest over shared memory (ucx_lat,
    ucx_mr, ucx_bw1m, ucx_bw64m: perf/ucx-pair.sh), and the targets."""
    sh = {}
    for k in ("sh_sync", "sh_pipe", "sh_echo"):
        sh.update((items.get(k) or {}).get("results", {}))
    ucx = {k: first_result(items, k) for k in ("ucx_lat", "ucx_mr", "ucx_bw1m", "ucx_bw64m")}
    if not sh and not any(ucx.values()):
        return []
    g = lambda kv, k: None if kv is None else kv.get(k)
    sync = sh.get("tw_sync_noop")
    p50 = g(sync, "p50") and sync["p50"] / 1e3
    one_way = g(ucx["ucx_lat"], "p50_us")
    rtt = one_way and 2 * one_way
    rate = g(ucx["ucx_mr"], "msgs/s")
    e1m, e64 = sh.get("tw_echo_1MiB"), sh.get("tw_echo_64MiB")
    b1m, b64 = g(ucx["ucx_bw1m"], "GB/s"), g(ucx["ucx_bw64m"], "GB/s")
    p("Same host (issue 15): tensorwire's same-host transport (`bench-rpc --transport shm`: rings in "
      "shared memory, met over io_uring) beside UCX's `ucx_perftest` over shared memory "
      "(`perf/ucx-pair.sh`, UCX_TLS=shm,self), both pinned cpu0/cpu1. UCX latency is its 64 B tag "
      "ping-pong, one way (half the round trip, p50); its bandwidth is one way, a window in flight; "
      "tensorwire's echo GB/s counts both directions (2 × bytes / median round trip). GB = 1e9 B.")
    p("")
    p("| measurement | tensorwire shm | UCX shm | tw ÷ UCX |")
    p("|---|---|---|---|")
    rows = []

    def row(label, twv, uv, spec):
        p(f"| {label} | {fmt(twv, spec)} | {fmt(uv, spec)} | {ratio(twv, uv)} |")
        rows.append({"measurement": label, "tensorwire": twv, "ucx": uv,
                     "tw_over_ucx": None if not (twv and uv) else twv / uv})

    row("no-op call p50 µs (UCX: 64 B tag round trip, 2 × one way)", p50, rtt, "{:.2f}")
    row("no-op call p99 µs", g(sync, "p99") and sync["p99"] / 1e3, None, "{:.2f}")
    for w in (64, 256):
        kv = sh.get(f"tw_pipe_noop_W{w}")
        row(f"pipelined no-op calls/s, {w} in flight (UCX: 64 B tag msgs/s)", g(kv, "calls/s"), rate, "{:,.0f}")
    row("1 MiB echo GB/s (UCX: 1 MiB tag bandwidth)", g(e1m, "GB/s"), b1m, "{:.2f}")
    row("64 MiB echo GB/s (UCX: 64 MiB tag bandwidth)", g(e64, "GB/s"), b64, "{:.2f}")
    p("")
    p("| target (issue 15, same host) | measured | needed | |")
    p("|---|---|---|---|")
    r = None if not (p50 and rtt) else p50 / rtt
    target("same-host no-op p50 ÷ UCX shm round trip (2 × one-way tag latency)", r, "≤", 1, "x",
           None if r is None else r <= 1)
    best = max((x for x in (g(sh.get(f"tw_pipe_noop_W{w}"), "calls/s") for w in (64, 256)) if x),
               default=None)
    r = best and best / 1e6
    target("same-host pipelined calls/s (best of W=64, 256)", r, "≥", 4, " M/s", None if r is None else r >= 4)
    r = g(e64, "GB/s")
    target("same-host 64 MiB echo GB/s", r, "≥", 10, " GB/s", None if r is None else r >= 10)
    r = None if not (r and b64) else r / b64
    target("same-host 64 MiB echo GB/s ÷ UCX shm 64 MiB bandwidth", r, "≥", 2, "x",
           None if r is None else r >= 2)
    p("")
    return rows


def fmt(v, spec="{:.1f}", none="-"):
    return none if v is None else spec.format(v)


def ratio(a, b, spec="{:.2f}x"):
    if a is None or b is None or b == 0:
        return "-"
    return spec.format(a / b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--torch", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--cmd", default="sh perf/bench-rpc.sh")
    a = ap.parse_args()

    items, head = parse_log(a.log)
    tj = None
    if a.torch and os.path.exists(a.torch):
        with open(a.torch) as f:
            tj = json.load(f)
    tb = torch_best(tj)

    pp64 = first_result(items, "pp64")
    pp1k = first_result(items, "pp1k")
    pp1m = first_result(items, "pp1m")
    pipe = {w: first_result(items, f"pipe{w}") for w in (64, 256)}
    stream = first_result(items, "stream64m")
    mc1m = first_result(items, "memcpy", "memcpy_1048576")
    mc64m = first_result(items, "memcpy", "memcpy_67108864")
    # tensorwire's parts (tw_sync, tw_pipe, tw_echo, tw_lat; or one "tw" item)
    tw, tw_mode = {}, ""
    for k, it in items.items():
        if k == "tw" or k.startswith("tw_"):
            tw.update(it["results"])
            tw_mode = tw_mode or next((n for n in it["notes"] if n.startswith("bench-rpc client=")), "")
    sync = tw.get("tw_sync_noop")

    us = lambda kv, k: None if kv is None or k not in kv else kv[k] / 1e3
    tval = lambda k: None if tb is None or tb.get(k) is None else tb[k][0]
    tcfg = lambda k: "" if tb is None or tb.get(k) is None else f" ({tb[k][1]})"

    out = []
    p = out.append
    p(f"## bench-rpc results ({datetime.date.today().isoformat()})")
    p("")
    p(f"Command: `{a.cmd}`. {tw_mode}.")
    for h in head:
        if h.startswith(("bench-rpc.sh", "model name", "loadavg", "tcp_congestion")):
            p(f"`{h}`  ")
    p("")
    # The main tables and targets, unless this run left out all of their
    # items (--only rref): computed all the same, not printed.
    has_main = tb is not None or any(k in items for k in (
        "pp64", "tw_sync", "pipe64", "pipe256", "tw_pipe", "stream64m", "memcpy", "tw_echo",
        "pp1k", "pp1m", "tw_lat")) or bool(pairs(items))
    p = out.append if has_main else [].append
    p("Latency in µs (p50 unless noted), throughput in calls/s; GB = 1e9 B. Ratios are "
      "tensorwire ÷ anchor; the torch column is the best of torch's configs in this run.")
    p("")
    p("| measurement | tensorwire | raw io_uring anchor | tw ÷ raw | torch.distributed.rpc | torch ÷ tw |")
    p("|---|---|---|---|---|---|")
    rows = []

    def row(label, twv, anv, tov, spec, inv=False):
        # inv: throughput, where tensorwire ÷ torch is the interesting ratio
        r_an = ratio(twv, anv)
        r_to = ratio(twv, tov) if inv else ratio(tov, twv)
        p(f"| {label} | {fmt(twv, spec)} | {fmt(anv, spec)} | {r_an} | {fmt(tov, spec)} | {r_to}{' (tw ÷ torch)' if inv and r_to != '-' else ''} |")
        rows.append({"measurement": label, "tensorwire": twv, "anchor": anv, "tw_over_anchor": None if not (twv and anv) else twv / anv,
                     "torch": tov, "torch_over_tw" if not inv else "tw_over_torch":
                     None if not (twv and tov) else (twv / tov if inv else tov / twv)})

    row("no-op call, p50 (64 B ping-pong)", us(sync, "p50"), us(pp64, "p50"), tval("p50_us"), "{:.1f}")
    row("no-op call, p90", us(sync, "p90"), us(pp64, "p90"), None, "{:.1f}")
    row("no-op call, p99", us(sync, "p99"), us(pp64, "p99"), tval("p99_us"), "{:.1f}")
    row("no-op call, p99.9", us(sync, "p99.9"), us(pp64, "p99.9"), tval("p999_us"), "{:.1f}")
    row("no-op call, mean", us(sync, "mean"), us(pp64, "mean"), None, "{:.1f}")
    for w in (64, 256):
        kv = tw.get(f"tw_pipe_noop_W{w}")
        row(f"pipelined no-op, {w} in flight [calls/s] (raw: 64 B msgs/s)",
            kv and kv.get("calls/s"), pipe[w] and pipe[w].get("msgs/s"), tval(f"async_w{w}"), "{:,.0f}", inv=True)
    e1k, e1m = tw.get("tw_echolat_1KiB"), tw.get("tw_echolat_1MiB")
    row("1 KiB tensor echo, p50 (raw: 1 KiB ping-pong)", us(e1k, "p50"), us(pp1k, "p50"), tval(f"echo_{1 << 10}_p50_us"), "{:.1f}")
    row("1 KiB tensor echo, p99", us(e1k, "p99"), us(pp1k, "p99"), None, "{:.1f}")
    row("1 MiB tensor echo, p50 (raw: 1 MiB ping-pong)", us(e1m, "p50"), us(pp1m, "p50"), tval(f"echo_{1 << 20}_p50_us"), "{:.0f}")
    row("1 MiB tensor echo, p99", us(e1m, "p99"), us(pp1m, "p99"), None, "{:.0f}")
    p("")

    # Tensor echo bandwidth.
    p("Tensor echo (float32, `bench::echo(x) -> x`): median round trip and GB/s = 2 × bytes / median. "
      "Raw anchor: 2 × bytes / p50 of the io_uring ping-pong of the same size (1 MiB), and the one-way "
      "io_uring TCP stream of 64 MiB messages (16 and 64 MiB). memcpy: single-thread glibc, "
      "pre-faulted, bytes counted once (1 MiB column for ≤ 1 MiB, 64 MiB column above).")
    p("")
    p("| tensor | tw median RTT µs | tw GB/s | raw io_uring GB/s | tw ÷ raw | memcpy GB/s | tw ÷ memcpy | torch GB/s | tw ÷ torch |")
    p("|---|---|---|---|---|---|---|---|---|")
    raw1m = None if pp1m is None else 2 * (1 << 20) / pp1m["p50"]
    echo_rows = []
    for size, lab in ((4 << 10, "4KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB"), (16 << 20, "16MiB"), (64 << 20, "64MiB")):
        kv = tw.get(f"tw_echo_{lab}")
        g = kv and kv.get("GB/s")
        rtt = us(kv, "p50")
        raw = raw1m if size == 1 << 20 else (stream.get("GB/s") if stream and size >= 16 << 20 else None)
        mc = (mc1m if size <= 1 << 20 else mc64m)
        mcv = mc and mc.get("median")
        tg = tval(f"echo_{size}_gbps")
        p(f"| {lab.replace('KiB', ' KiB').replace('MiB', ' MiB')} | {fmt(rtt, '{:.1f}')} | {fmt(g, '{:.3f}')} | {fmt(raw, '{:.2f}')} | {ratio(g, raw)} "
          f"| {fmt(mcv, '{:.1f}')} | {ratio(g, mcv)} | {fmt(tg, '{:.3f}')} | {ratio(g, tg)} |")
        echo_rows.append({"bytes": size, "tw_rtt_us": rtt, "tw_gbps": g, "raw_gbps": raw, "memcpy_gbps": mcv,
                          "torch_gbps": tg, "exact": bool(kv and kv.get("exact") == 1)})
    p("")

    # Targets.
    targets = []

    def target(name, value, cmp_, limit, unit, ok):
        targets.append({"target": name, "value": value, "limit": limit, "compare": cmp_,
                        "met": ok})
        mark = "n/a" if ok is None else ("met" if ok else "MISSED")
        p(f"| {name} | {fmt(value, '{:.2f}')}{unit} | {cmp_} {limit}{unit} | **{mark}** |")

    p("| target | measured | needed | |")
    p("|---|---|---|---|")
    r = None if not (sync and pp64) else sync["p50"] / pp64["p50"]
    target("small-call p50 ÷ raw io_uring ping-pong p50", r, "≤", 1.5, "x", None if r is None else r <= 1.5)
    t50 = tval("p50_us")
    r = None if not (sync and t50) else t50 / (sync["p50"] / 1e3)
    target("torch p50 ÷ tensorwire p50", r, "≥", 10, "x", None if r is None else r >= 10)
    for w in (64, 256):
        kv = tw.get(f"tw_pipe_noop_W{w}")
        tc = tval(f"async_w{w}")
        r = None if not (kv and tc) else kv["calls/s"] / tc
        target(f"pipelined calls/s, W={w}: tensorwire ÷ torch", r, "≥", 5, "x", None if r is None else r >= 5)
    # The three near-1.0x targets: the median over the paired rounds (pairs
    # in one placement) when there are at least 3 such, else the one item.
    pr = pairs(items)
    paired = {}
    for k in ("echo64", "echo1k", "echo1m"):
        kept = [x[k] for x in pr if x[k] is not None and x[f"{k}_same"]]
        paired[k] = (median(kept), len(kept), len(pr)) if len(kept) >= 3 else None
    e64 = tw.get("tw_echo_64MiB")

    def near1(key, name, single, cmp_, limit):
        if paired[key]:
            m, n, tot = paired[key]
            target(f"{name} (median of {n}/{tot} paired rounds)", m, cmp_, limit, "x",
                   m >= limit if cmp_ == "≥" else m <= limit)
        else:
            target(name, single, cmp_, limit, "x",
                   None if single is None else (single >= limit if cmp_ == "≥" else single <= limit))

    near1("echo64", "64 MiB echo GB/s ÷ raw io_uring stream GB/s",
          None if not (e64 and stream) else e64["GB/s"] / stream["GB/s"], "≥", 0.8)
    near1("echo1k", "1 KiB echo p50 ÷ raw 1 KiB ping-pong p50",
          None if not (e1k and pp1k) else e1k["p50"] / pp1k["p50"], "≤", 1.0)
    near1("echo1m", "1 MiB echo p50 ÷ raw 1 MiB ping-pong p50",
          None if not (e1m and pp1m) else e1m["p50"] / pp1m["p50"], "≤", 1.0)
    # Issue 15's io_uring targets.
    r = None if not (sync and pp64) else sync["p50"] / pp64["p50"]
    target("io_uring single call p50 ÷ raw ping-pong p50 (issue 15)", r, "≤", 1.05, "x",
           None if r is None else r <= 1.05)
    kv = tw.get("tw_pipe_noop_W256")
    r = kv and kv.get("calls/s") and kv["calls/s"] / 1e6
    target("io_uring pipelined calls/s, W=256 (issue 15)", r, "≥", 3, " M/s", None if r is None else r >= 3)
    p("")
    if pr:
        p("Paired rounds (anchor and tensorwire back to back, the anchor first in odd rounds; ratios as in the targets; "
          "* = the pair's placement probes disagree, left out of the median):")
        p("")
        p("| round | stream GB/s | 64 MiB echo GB/s | echo ÷ stream | 1 KiB echo ÷ ping-pong | 1 MiB echo ÷ ping-pong | probes ns (stream, echo64, pp1k, lat1k, pp1m, lat1m) |")
        p("|---|---|---|---|---|---|---|")
        for x in pr:
            mk = lambda k: "-" if x[k] is None else f"{x[k]:.2f}x{'' if x[k + '_same'] else '*'}"
            probes = ", ".join(f"{fmt(a, '{:.0f}')}/{fmt(b, '{:.0f}')}" for a, b in x["probes"].values())
            p(f"| {x['round']} | {fmt(x['stream_gbps'], '{:.2f}')} | {fmt(x['echo64_gbps'], '{:.2f}')} | {mk('echo64')} | "
              f"{mk('echo1k')} | {mk('echo1m')} | {probes} |")
        p("")
    p = out.append
    if not has_main:
        targets.clear()
    same_rows = same_host(items, p, target)

    # Issue 13: remote + to_here and an RRef through a third worker, each
    # beside rpc_sync in the same processes and beside torch's.
    trr = items.get("torch_rref")
    rref_rows = []
    if any(tw.get(k) for _, k, _, _ in RREF_ROWS):
        p("remote + to_here (issue 13): `bench-rpc --only rref` (tensorwire) and `perf/torch-rref.py` "
          "(torch, right after it, on bench.py's configs; the torch columns are the config with the "
          "lowest p50 for that row). Each ratio to rpc_sync is to the baseline measured just before "
          "in the same processes: tensorwire's and torch's own. µs.")
        p("")
        p("| measurement | tw p50 | tw p99 | tw baseline p50 | tw ÷ baseline | torch p50 | torch p99 "
          "| torch ÷ its baseline | torch ÷ tw |")
        p("|---|---|---|---|---|---|---|---|---|")
        for label, key, wl, base in RREF_ROWS:
            kv = tw.get(key)
            tb_ = torch_rref_best(trr, wl)
            tkv = tb_ and tb_[1]
            twp50, tp50 = us(kv, "p50"), us(tkv, "p50")
            p(f"| {label} (baseline: {base}) | {fmt(twp50)} | {fmt(us(kv, 'p99'))} | "
              f"{fmt(us(kv, 'sync_p50_ns'))} | {fmt(kv and kv.get('ratio_p50'), '{:.2f}x')} | "
              f"{fmt(tp50)}{f' ({tb_[0]})' if tb_ else ''} | {fmt(us(tkv, 'p99'))} | "
              f"{fmt(tkv and tkv.get('ratio_p50'), '{:.2f}x')} | {ratio(tp50, twp50, '{:.1f}x')} |")
            rref_rows.append({"measurement": label, "baseline": base, "tw_result": key,
                              "tw_p50_us": twp50, "tw_p99_us": us(kv, "p99"),
                              "tw_baseline_p50_us": us(kv, "sync_p50_ns"),
                              "tw_over_baseline": kv and kv.get("ratio_p50"),
                              "torch_config": tb_ and tb_[0], "torch_p50_us": tp50, "torch_p99_us": us(tkv, "p99"),
                              "torch_baseline_p50_us": us(tkv, "base_p50_ns"),
                              "torch_over_its_baseline": tkv and tkv.get("ratio_p50"),
                              "torch_over_tw": None if not (tp50 and twp50) else tp50 / twp50})
        p("")
        p("| target (issue 13) | measured | needed | |")
        p("|---|---|---|---|")
        small = tw.get("tw_remote_to_here_noop")
        r = small and small.get("ratio_p50")
        target("remote + to_here small p50 ÷ no-op rpc_sync p50 (same processes)", r, "≤", 2.5, "x",
               None if r is None else r <= 2.5)
        tsm = torch_rref_best(trr, "remote_noop")
        r = None if not (small and tsm) else tsm[1]["p50"] / small["p50"]
        target("torch remote + to_here small p50 ÷ tensorwire's", r, "≥", 10, "x", None if r is None else r >= 10)
        p("")

    # Conditions per item: placement probe and foreign load.
    p("Conditions per item (shm ping-pong placement probe before/after, in ns: ~150 usual, ~630 far, "
      "see limits README pitfall 1; CPU used by other processes during the item; the attempt kept; "
      "TCP segments retransmitted machine-wide during it):")
    p("")
    p("| item | probe ns | foreign cores | attempt | TCP retransmits | wall s |")
    p("|---|---|---|---|---|---|")
    for k, it in items.items():
        p(f"| {k} | {fmt(it['probe_before_ns'], '{:.0f}')}/{fmt(it['probe_after_ns'], '{:.0f}')} | "
          f"{it['foreign_cores']:.2f} | {it['attempt']} | {fmt(it['tcp_retrans'], '{:.0f}')} | {fmt(it['wall_s'], '{:.1f}')} |")
    if tb is not None:
        p(f"\ntorch: configs {', '.join(tb['configs'])}{' (--quick)' if tb['quick'] else ''}; "
          f"max foreign load during a config {tb['foreign_cores_max']:.2f} cores.")
    elif has_main:
        p("\ntorch: not run (skipped or not installed): its targets are n/a.")
    if trr:
        fc = [kv.get("foreign_cores", 0) for kv in trr["results"].values()]
        p(f"\ntorch_rref: {', '.join(n[len('torch-rref: '):] for n in trr['notes'] if n.startswith('torch-rref: '))}; "
          f"max foreign load during a measurement {max(fc, default=0):.2f} cores.")
    elif rref_rows:
        p("\ntorch_rref: not run (--no-torch, or torch not installed): its columns and target are n/a.")
    probes = [x for it in items.values() for x in (it["probe_before_ns"], it["probe_after_ns"]) if x]
    if probes and max(probes) > 2.5 * min(probes):
        p(f"\nWARNING: the vCPU placement changed during the run (probe {min(probes):.0f}..{max(probes):.0f} ns): "
          "ratios across items in different states are off by up to 4x.")
    bad = [k for k, it in items.items() if it["rc"] != 0]
    if bad:
        p(f"\nWARNING: items failed: {', '.join(bad)}")
    print("\n".join(out))

    if a.json:
        doc = {"date_utc": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
               "command": a.cmd, "log": os.path.abspath(a.log), "header": head, "tensorwire_mode": tw_mode,
               "items": items, "torch_best": tb, "rows": rows, "echo": echo_rows, "targets": targets,
               "rref": rref_rows, "same_host": same_rows,
               "pairs": pr}
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
