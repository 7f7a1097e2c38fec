#!/usr/bin/python3
"""tw-perf's CSV to PNG: a latency CDF and throughput versus offered load.

  /usr/bin/python3 perf/plot-tw-perf.py --runs RUNS.csv [--hist HIST.csv]
      [--anchors ANCHORS.csv] --out PREFIX [--title TEXT]

RUNS.csv: tw-perf --csv rows; HIST.csv: tw-perf --hist-csv buckets (one
label per histogram); ANCHORS.csv: transport,name,p50_ns,rate_per_s (the
raw ping-pong and pipelined anchors, perf/tw-perf-sweep.sh writes it).
Writes PREFIX-cdf.png (each histogram's CDF and its tail, 1 - CDF, with the
anchors' p50 as dashed lines) and PREFIX-load.png (open-loop runs: calls/s
achieved and p50/p99 latency against the rate offered; closed-loop runs'
calls/s and the anchors' rates as horizontal lines). Needs matplotlib
(Debian: python3-matplotlib).
"""
import argparse
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"uring": "tab:blue", "shm": "tab:green", "memif": "tab:red",
           "af_packet": "tab:purple"}


def colour(transport):
    return COLOURS.get(transport, "tab:gray")


def axes(axis, xlabel, ylabel, title, ylog=True):
    axis.set_xscale("log")
    if ylog:
        axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_cdf(runs, hist_rows, anchors, out, title):
    by_label = {r["label"]: r for r in runs}
    hists = defaultdict(list)
    for h in hist_rows:
        hists[h["label"]].append((int(h["low_ns"]), int(h["high_ns"]),
                                  int(h["count"])))
    fig, (ax, tail) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = ["-", "--", "-.", ":"]
    seen = defaultdict(int)
    for label, buckets in hists.items():
        buckets.sort()
        total = sum(c for _, _, c in buckets)
        if total == 0:
            continue
        xs, ys, acc = [], [], 0
        for lo, hi, c in buckets:
            acc += c
            xs.append((lo + hi) / 2 / 1e3)
            ys.append(acc / total)
        run = by_label.get(label, {})
        tr = run.get("transport", "?")
        ls = styles[seen[tr] % len(styles)]
        seen[tr] += 1
        ax.step(xs, ys, where="post", color=colour(tr), ls=ls, label=label)
        tail.step(xs, [max(1 - y, 0.5 / total) for y in ys], where="post",
                  color=colour(tr), ls=ls, label=label)
    for a in anchors:
        if a.get("p50_ns"):
            for axis in (ax, tail):
                axis.axvline(float(a["p50_ns"]) / 1e3, color=colour(a["transport"]),
                             ls=(0, (2, 2)), lw=0.9, alpha=0.8)
    axes(ax, "latency (µs, log)", "fraction of calls at or below",
         "latency CDF (dashed verticals: raw anchors' p50)", ylog=False)
    axes(tail, "latency (µs, log)", "fraction of calls above (1 - CDF)",
         "tail")
    tail.legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_load(runs, anchors, out, title):
    fig, (ax, lat) = plt.subplots(1, 2, figsize=(12, 4.8))
    open_runs = defaultdict(list)
    for r in runs:
        if r["mode"] == "open":
            open_runs[r["transport"]].append(r)
    top = 0.0
    for tr, rs in open_runs.items():
        rs.sort(key=lambda r: float(r["offered_per_s"]))
        x = [float(r["offered_per_s"]) for r in rs]
        top = max(top, max(x))
        ax.plot(x, [float(r["calls_per_s"]) for r in rs], "o-",
                color=colour(tr), label=f"{tr}: achieved")
        lat.plot(x, [int(r["p50_ns"]) / 1e3 for r in rs], "o-",
                 color=colour(tr), label=f"{tr} p50")
        lat.plot(x, [int(r["p99_ns"]) / 1e3 for r in rs], "s--",
                 color=colour(tr), label=f"{tr} p99")
    for r in runs:
        # the sweep's capacity runs, not its agreement rounds
        if r["mode"] == "closed" and int(r["inflight"]) > 1 and \
                r["transport"] in open_runs and \
                not r["label"].startswith("agree"):
            ax.axhline(float(r["calls_per_s"]), color=colour(r["transport"]),
                       ls="--", lw=0.9,
                       label=f"{r['transport']}: closed loop W={r['inflight']}")
    for a in anchors:
        if a.get("rate_per_s") and a["transport"] in open_runs and \
                "pipe" in a["name"]:
            ax.axhline(float(a["rate_per_s"]), color=colour(a["transport"]),
                       ls=":", lw=1.2, label=f"raw anchor {a['name']}")
    if top:
        ax.plot([0, top], [0, top], color="black", lw=0.6, alpha=0.5,
                label="achieved = offered")
    axes(ax, "offered load (calls/s, log)", "achieved (calls/s, log)",
         "throughput against offered load (open loop)")
    ax.legend(fontsize=7)
    axes(lat, "offered load (calls/s, log)",
         "latency from scheduled send (µs, log)", "latency against offered load")
    lat.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True)
    ap.add_argument("--hist")
    ap.add_argument("--anchors")
    ap.add_argument("--out", required=True, help="output prefix")
    ap.add_argument("--title", default="tw-perf")
    a = ap.parse_args()
    runs = read_csv(a.runs)
    anchors = read_csv(a.anchors) if a.anchors else []
    if a.hist:
        plot_cdf(runs, read_csv(a.hist), anchors, a.out + "-cdf.png", a.title)
        print(a.out + "-cdf.png")
    plot_load(runs, anchors, a.out + "-load.png", a.title)
    print(a.out + "-load.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
