#!/usr/bin/python3
"""bench-ab-summary.py OUT: perf/bench-ab.sh's rounds as a markdown table.

Per transport and figure: A's median and range, and per round the ratios
B/A, C/A and A2/A (the A/A ratio: the noise between paired rounds), as
median (min-max). Latency ratios above 1 and calls/s ratios below 1 are
slower than A.
"""
import statistics
import sys

NAMES = {"B": "B ÷ A", "C": "C ÷ A", "A2": "A again ÷ A (A/A)"}


def load(path):
    rows = {}
    for line in open(path):
        f = line.split()
        rnd, side, tr, name = f[0], f[1], f[2], f[4]
        kv = dict(x.split("=", 1) for x in f[5:] if "=" in x)
        if "p50" in kv:
            unit, v = "p50", float(kv["p50"].rstrip("ns"))
        else:
            unit, v = "calls/s", float(kv["calls/s"])
        rows.setdefault((tr, name, unit), {}).setdefault(rnd, {})[side] = v
    return rows


def show(v, unit):
    return f"{v / 1000:.2f} µs" if unit == "p50" else f"{v / 1000:.0f}k"


def main():
    rows = load(sys.argv[1])
    sides = [s for s in ("B", "C", "A2")
             if any(s in d for r in rows.values() for d in r.values())]
    print("| transport | figure | A: median (range) | "
          + " | ".join(NAMES[s] + ": median (range)" for s in sides)
          + " | rounds |")
    print("|---|---|---|" + "---|" * len(sides) + "---|")
    for (tr, name, unit), rs in sorted(rows.items()):
        a = [d["A"] for d in rs.values() if "A" in d]
        if not a:
            continue
        cells = []
        for s in sides:
            q = [d[s] / d["A"] for d in rs.values() if s in d and "A" in d]
            cells.append(f"{statistics.median(q):.2f} ({min(q):.2f}-"
                         f"{max(q):.2f})" if q else "-")
        print(f"| {tr} | {name} {unit} | {show(statistics.median(a), unit)} "
              f"({show(min(a), unit)}-{show(max(a), unit)}) | "
              + " | ".join(cells) + f" | {len(rs)} |")


if __name__ == "__main__":
    main()
