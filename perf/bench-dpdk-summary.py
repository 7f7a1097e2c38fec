#!/usr/bin/env python3
"""Summarize one perf/bench-dpdk.sh run: tensorwire over the DPDK transport
beside the raw dpdk_pingpong anchor on the same vdev, measured in the same
run. Latency ratios are tw ÷ raw (lower is better), throughput ratios tw / raw
(higher is better). Prints Markdown; writes JSON.

    python3 perf/bench-dpdk-summary.py --log perf/results/bench-dpdk-<ts>.log \
        [--log another.log ...] [--json perf/results/dpdk-latest.json]
        [--cmd "sh perf/bench-dpdk.sh"]
"""
import argparse
import datetime
import json
import os
import re
import sys

from benchlog import parse_log  # perf/benchlog.py

FRAME = 1514  # bytes per frame of the raw one-way stream (tx -s 1514)


def res(items, key, prefix):
    it = items.get(key)
    if not it:
        return None
    for name, kv in it["results"].items():
        if name.startswith(prefix):
            return kv
    return None


def fnum(v, unit=""):
    if v is None:
        return "-"
    if unit == "us":
        return f"{v / 1000:.2f}" if v < 100000 else f"{v / 1000:.0f}"
    if unit == "int":
        return f"{v:,.0f}"
    return f"{v:.3f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fratio(r):
    return "-" if r is None else f"{r:.2f}x"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True, action="append",
                    help="a bench-dpdk log; repeat to merge runs (a later log's items win)")
    ap.add_argument("--json")
    ap.add_argument("--cmd", default="sh perf/bench-dpdk.sh")
    a = ap.parse_args()
    items, head = {}, []
    for lg in a.log:
        it, hd = parse_log(lg)
        items.update(it)
        head += hd
    logs = ", ".join(os.path.basename(lg) for lg in a.log)
    out = {"log": logs, "cmd": a.cmd, "header": head,
           "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "vdevs": {}, "credits": {}, "items": {}}
    for k, it in items.items():
        out["items"][k] = {kk: vv for kk, vv in it.items() if kk != "results"}
    print(f"# bench-dpdk: `{a.cmd}` (log {logs})\n")
    for h in head:
        if h.startswith(("bench-dpdk.sh", "model", "git", "dpdk", "loadavg")):
            print(f"    {h}")
    print()
    for v in ("memif", "af_packet"):
        if not any(k.startswith(v + "_") for k in items):
            continue
        rows, vj = [], {}
        ping = res(items, f"{v}_ping", "dpdk_ping")
        sync = res(items, f"{v}_tw_sync", "tw_sync_noop")
        for q, lab in (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99.9")):
            t = sync.get(q) if sync else None
            r = ping.get(q) if ping else None
            rows.append((f"no-op call {lab}, µs (raw: 64 B ping-pong)", fnum(t, "us"),
                         fnum(r, "us"), fratio(ratio(t, r)), "tw ÷ raw"))
            vj[f"sync_{q}_ns"] = {"tw": t, "raw": r, "ratio": ratio(t, r)}
        t = sync.get("calls/s") if sync else None
        r = ping.get("rt/s") if ping else None
        rows.append(("no-op calls/s, one at a time (raw: round trips/s)", fnum(t, "int"),
                     fnum(r, "int"), fratio(ratio(t, r)), "tw / raw"))
        vj["sync_calls_per_s"] = {"tw": t, "raw": r, "ratio": ratio(t, r)}
        for w in (64, 256):
            tp = res(items, f"{v}_tw_pipe", f"tw_pipe_noop_W{w}")
            rp = res(items, f"{v}_pipe{w}", f"dpdk_pipe_W{w}")
            t = tp.get("calls/s") if tp else None
            r = rp.get("echoed_frames/s") if rp else None
            rows.append((f"pipelined no-op, {w} in flight, calls/s (raw: 64 B frames/s)",
                         fnum(t, "int"), fnum(r, "int"), fratio(ratio(t, r)), "tw / raw"))
            vj[f"pipe_W{w}_per_s"] = {"tw": t, "raw": r, "ratio": ratio(t, r)}
        rx = res(items, f"{v}_stream", "dpdk_rx")
        raw_gbs = rx["rx_pps"] * FRAME / 1e9 if rx and rx.get("rx_pps") else None
        echo = items.get(f"{v}_tw_echo", {"results": {}})["results"]
        sizes = sorted(((kv.get("bytes", 0), n, kv) for n, kv in echo.items()
                        if n.startswith("tw_echo_")), key=lambda x: x[0])
        for b, n, kv in sizes:
            t = kv.get("GB/s")
            lab = n[len("tw_echo_"):]
            rows.append((f"{lab} tensor echo GB/s, 2×bytes/p50 (raw: one-way 1514 B frames)",
                         fnum(t), fnum(raw_gbs), fratio(ratio(t, raw_gbs)), "tw / raw"))
            vj[f"echo_{lab}_GBps"] = {"tw": t, "tw_best": kv.get("GB/s_best"),
                                     "p50_ns": kv.get("p50"), "raw": raw_gbs,
                                     "ratio": ratio(t, raw_gbs)}
        vj["raw_stream_pps"] = rx.get("rx_pps") if rx else None
        idle = res(items, f"{v}_tw_idle", "tw_idle")
        if idle:
            for side in ("server", "client"):
                c = idle.get(f"{side}_cores")
                rows.append((f"idle CPU, {side} process, cores (target: under 0.01)",
                             f"{c:.4f}" if c is not None else "-", "-",
                             "met" if c is not None and c < 0.01 else "missed", ""))
                vj[f"idle_{side}_cores"] = c
        out["vdevs"][v] = vj
        print(f"## {v}\n")
        print("| measure | tensorwire | raw DPDK | ratio | |")
        print("|---|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print()
        probes = []
        for k in sorted(items):
            if k.startswith(v + "_"):
                it = items[k]
                probes.append(f"{k[len(v) + 1:]} {it['foreign_cores']:.2f}/"
                              f"{fnum(it['probe_before_ns'], 'int')}-{fnum(it['probe_after_ns'], 'int')}")
        print("foreign load (cores) / shm probe before-after (ns): " + ", ".join(probes) + "\n")
    cred = {}
    for k, it in items.items():
        m = re.match(r"memif_cred(\d+)(?:_r(\d+))?$", k)
        if m:
            cred.setdefault(int(m.group(1)), []).append(it)
    if cred:
        rx = res(items, "memif_stream2", "dpdk_rx")
        raw_gbs = rx["rx_pps"] * FRAME / 1e9 if rx and rx.get("rx_pps") else None
        print("## memif: dpdk_credits and large tensors\n")
        print(f"raw one-way 1514 B frames, same run: {fnum(raw_gbs)} GB/s. "
              "Per round: GB/s from the p50 round trip (best round trip); "
              "rounds interleaved over the credit values.\n")
        print("| credits | 1 MiB GB/s | median | 64 MiB GB/s | median | 64 MiB ÷ raw | foreign load |")
        print("|---|---|---|---|---|---|---|")
        for c in sorted(cred):
            runs = cred[c]
            m1 = [it["results"].get("tw_echo_1MiB", {}) for it in runs]
            m64 = [it["results"].get("tw_echo_64MiB", {}) for it in runs]

            def each(ms):
                return ", ".join(f"{fnum(m.get('GB/s'))} ({fnum(m.get('GB/s_best'))})"
                                 for m in ms)

            def med(ms):
                v = sorted(m["GB/s"] for m in ms if m.get("GB/s") is not None)
                return v[len(v) // 2] if len(v) % 2 else (sum(v[len(v) // 2 - 1:len(v) // 2 + 1]) / 2 if v else None)

            fl = ", ".join(f"{it['foreign_cores']:.2f}" for it in runs)
            fails = sum(1 for it in runs if it["rc"] != 0)
            print(f"| {c} | {each(m1)} | {fnum(med(m1))} | {each(m64)} | {fnum(med(m64))} | "
                  f"{fratio(ratio(med(m64), raw_gbs))} | {fl}{f' ({fails} failed)' if fails else ''} |")
            out["credits"][str(c)] = {"1MiB_GBps": [m.get("GB/s") for m in m1],
                                      "1MiB_best": [m.get("GB/s_best") for m in m1],
                                      "64MiB_GBps": [m.get("GB/s") for m in m64],
                                      "64MiB_best": [m.get("GB/s_best") for m in m64],
                                      "1MiB_median": med(m1), "64MiB_median": med(m64),
                                      "foreign_cores": [it["foreign_cores"] for it in runs],
                                      "failed": fails}
        out["credits"]["raw_GBps"] = raw_gbs
        print()
    tags = {}
    for k, it in items.items():
        m = re.match(r"memif_tag(on|off)_(sync|pipe)_r(\d+)$", k)
        if m:
            tags.setdefault((m.group(1), m.group(2)), []).append(it)
    if tags:
        def med(v):
            v = sorted(x for x in v if x is not None)
            if not v:
                return None
            return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

        def vals(state, part, prefix, field):
            out_ = []
            for it in tags.get((state, part), []):
                for name, kv in it["results"].items():
                    if name.startswith(prefix):
                        out_.append(kv.get(field))
            return out_

        print("## Per-packet tags (memif): on vs off, rounds interleaved\n")
        print("Each round runs tags on then off right after it; the vCPU placement (probe) "
              "moves between items, so the last column, the median over rounds of that "
              "round's on ÷ off, is the steadier figure.\n")
        print("| measure | tags on (each round) | median | tags off (each round) | median | on ÷ off | median of rounds' on ÷ off |")
        print("|---|---|---|---|---|---|---|")
        out["tags"] = {}
        rows_ = [("rpc_sync p50 µs", "sync", "tw_sync_noop", "p50", "us"),
                 ("rpc_sync p99 µs", "sync", "tw_sync_noop", "p99", "us"),
                 ("pipelined calls/s W=64", "pipe", "tw_pipe_noop_W64", "calls/s", "int"),
                 ("pipelined calls/s W=256", "pipe", "tw_pipe_noop_W256", "calls/s", "int")]
        for label, part, prefix, field, unit in rows_:
            on = vals("on", part, prefix, field)
            off = vals("off", part, prefix, field)
            mon, moff = med(on), med(off)
            pairs = [ratio(x, y) for x, y in zip(on, off)]
            print(f"| {label} | {', '.join(fnum(x, unit) for x in on)} | {fnum(mon, unit)} | "
                  f"{', '.join(fnum(x, unit) for x in off)} | {fnum(moff, unit)} | "
                  f"{fratio(ratio(mon, moff))} | {fratio(med(pairs))} |")
            out["tags"][label] = {"on": on, "off": off, "on_median": mon,
                                  "off_median": moff, "round_ratios": pairs,
                                  "round_ratio_median": med(pairs)}
        print()
        # The placement moves a call by 2x: compare items that ran where
        # the probe read the same before and after, on against off of
        # that placement only (near: both probes < 400 ns; far: > 600).
        def place(it):
            a, b = it.get("probe_before_ns"), it.get("probe_after_ns")
            if a is None or b is None:
                return None
            if a < 400 and b < 400:
                return "near"
            if a > 600 and b > 600:
                return "far"
            return None

        print("### By placement: items whose probe read the same placement before and after\n")
        print("| measure | placement | tags on (n) | median | tags off (n) | median | on ÷ off |")
        print("|---|---|---|---|---|---|---|")
        out["tags_by_placement"] = {}
        for label, part, prefix, field, unit in rows_:
            for pl in ("near", "far"):
                got = {}
                for state in ("on", "off"):
                    got[state] = [kv.get(field)
                                  for it in tags.get((state, part), []) if place(it) == pl
                                  for name, kv in it["results"].items() if name.startswith(prefix)]
                mon, moff = med(got["on"]), med(got["off"])
                print(f"| {label} | {pl} | {len(got['on'])} | {fnum(mon, unit)} | "
                      f"{len(got['off'])} | {fnum(moff, unit)} | {fratio(ratio(mon, moff))} |")
                out["tags_by_placement"][f"{label} {pl}"] = {
                    "on": got["on"], "off": got["off"], "ratio": ratio(mon, moff)}
        print()
    bad = [k for k, it in items.items() if it["rc"] != 0]
    if bad:
        print("FAILED items (rc != 0): " + ", ".join(bad))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
