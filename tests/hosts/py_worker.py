"""A tensorwire.rpc worker of test_hosts.py's Python phase, run in its own
network namespace: py_worker.py RANK WORLD tcp://RDV:PORT SECRET_FILE.

Joins on the wildcard address with the group's secret, then calls every
other worker: a torch builtin (run as the C aten:: operator there),
pickled Python functions with small and 4 MiB tensors, 200 rpc_async calls
in flight, remote().to_here(), and an RRef of its own passed to the peer,
which fetches it back across the namespaces. Answers as host_worker does:
"ok JSON" (or "err JSON") with its calls' tally; then waits for a line
"shutdown SECONDS", runs rpc.shutdown(graceful=True, timeout=SECONDS)
and answers "ok {"ms", "type", "msg"}" (the exception it raised, if
any)."""

import json
import sys
import time

import torch

import tensorwire.rpc as rpc

import hosts_udf as U


def main():
    rank, world, rdv, secret_file = (int(sys.argv[1]), int(sys.argv[2]),
                                     sys.argv[3], sys.argv[4])
    with open(secret_file) as f:
        secret = f.read().strip()
    opts = rpc.TensorPipeRpcBackendOptions(
        init_method=rdv, secret=secret, num_worker_threads=4,
        rpc_timeout=60, init_timeout=60, same_host=False,
        transport_options={"listen_host": "0.0.0.0"})
    rpc.init_rpc("w%d" % rank, rank=rank, world_size=world,
                 rpc_backend_options=opts)
    out = {"ok": True, "calls": 0, "bytes": 0, "fail": []}

    def expect(what, cond):
        out["calls"] += 1
        if not cond:
            out["ok"] = False
            out["fail"].append(what)

    t0 = time.monotonic()
    g = torch.Generator().manual_seed(rank)
    big = torch.randn(1 << 20, generator=g)  # 4 MiB of float32
    for k in range(1, world):
        peer = "w%d" % ((rank + k) % world)
        try:
            x = torch.arange(8, dtype=torch.float32) + rank
            expect("torch.add on " + peer,
                   torch.equal(rpc.rpc_sync(peer, torch.add, args=(x, 1)),
                               x + 1))
            expect("scale on " + peer,
                   torch.equal(rpc.rpc_sync(peer, U.scale, args=(x, 3)),
                               x * 3))
            expect("where on " + peer,
                   rpc.rpc_sync(peer, U.where) == peer)
            back = rpc.rpc_sync(peer, U.echo, args=(big,))
            expect("4 MiB echo on " + peer, torch.equal(back, big))
            out["bytes"] += 2 * big.numel() * 4
            del back
            expect("4 MiB checksum on " + peer,
                   rpc.rpc_sync(peer, U.checksum, args=(big,)) ==
                   U.checksum(big))
            futs = [rpc.rpc_async(peer, torch.mul, args=(x, i))
                    for i in range(200)]
            expect("200 rpc_async on " + peer,
                   all(torch.equal(f.wait(), x * i)
                       for i, f in enumerate(futs)))
            out["calls"] += 199
            del futs
            rr = rpc.remote(peer, U.scale, args=(x, 5))
            expect("remote().to_here() on " + peer,
                   torch.equal(rr.to_here(), x * 5))
            mine = rpc.RRef(x * 7)
            expect("an RRef fetched back by " + peer,
                   torch.equal(rpc.rpc_sync(peer, U.fetch, args=(mine,)),
                               x * 7))
            del rr, mine
        except Exception as e:  # noqa: BLE001
            out["ok"] = False
            out["fail"].append("%s: %s: %s" % (peer, type(e).__name__, e))
    out["ms"] = (time.monotonic() - t0) * 1000
    print("%s %s" % ("ok" if out["ok"] else "err", json.dumps(out)),
          flush=True)
    line = sys.stdin.readline().split()
    timeout = float(line[1]) if len(line) == 2 and line[0] == "shutdown" \
        else 0
    res = {"type": None, "msg": ""}
    t0 = time.monotonic()
    try:
        rpc.shutdown(graceful=True, timeout=timeout)
    except Exception as e:  # noqa: BLE001
        res = {"type": type(e).__name__, "msg": str(e)}
    res["ms"] = (time.monotonic() - t0) * 1000
    print("ok " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
