"""Reading the logs of perf/bench-rpc.sh and perf/bench-dpdk.sh (both write
items with perf/bench-lib.sh): shared by their summarizers."""
import re

TOKEN = re.compile(r"^\(?([A-Za-z0-9_./()]+?)=([-+0-9.eE]+)([A-Za-z/%]*)\)?,?$")


def parse_kv(tokens):
    """key=value tokens of a RESULT line, values as floats (units dropped)."""
    out = {}
    for t in tokens:
        m = TOKEN.match(t)
        if not m:
            continue
        try:
            out[m.group(1)] = float(m.group(2))
        except ValueError:
            pass
    return out


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def parse_log(path):
    """Items of the kept attempts and the log's header lines: key ->
    {attempt, rc, foreign_cores, probe_before_ns, probe_after_ns, tcp_retrans,
    wall_s, cmds, results{name: kv}, notes}. Discarded attempts are skipped."""
    items, cur, head = {}, None, []
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("DISCARDED "):
            cur = None
            continue
        if line.startswith("ITEM "):
            kv = dict(t.split("=", 1) for t in line.split()[1:] if "=" in t)
            cur = {"attempt": int(kv.get("attempt", 1)), "rc": int(kv.get("rc", 0)),
                   "foreign_cores": float(kv.get("foreign_cores", 0)),
                   "probe_before_ns": num(kv.get("probe_before_ns")),
                   "probe_after_ns": num(kv.get("probe_after_ns")),
                   "tcp_retrans": num(kv.get("tcp_retrans")),
                   "wall_s": num(kv.get("wall_s")), "cmds": [], "results": {}, "notes": []}
            items[kv["key"]] = cur
            continue
        if cur is None:
            if line.startswith("# "):
                head.append(line[2:])
            continue
        if line.startswith("CMD "):
            cur["cmds"].append(line[4:])
        elif line.startswith("RESULT "):
            parts = line.split()
            cur["results"][parts[1]] = parse_kv(parts[2:])
        elif line.startswith("# "):
            cur["notes"].append(line[2:])
    return items, head
