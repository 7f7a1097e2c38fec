"""Start a group of real worker processes on 127.0.0.1 for a test.

Each worker is /usr/bin/python3 running ``rpcgroup.worker_main`` in a fresh
process (spawn): it joins the group, rank 0 runs the test's body, then
everyone shuts down. Bodies and the functions they call live in
``rpcfuncs`` so that both sides import them by the same name (Python
functions travel pickled by reference, as in torch)."""

import importlib
import multiprocessing as mp
import os
import pickle
import socket
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_main(rank, world, port, body, args, threads, q, extra,
                graceful=True, before=None):
    sys.path.insert(0, HERE)
    try:
        import tensorwire.rpc as rpc
        funcs = importlib.import_module("rpcfuncs")
        funcs.setup(rank)
        if before is not None:
            getattr(funcs, before[0])(rank, world, *before[1])
        extra = dict(extra)
        if os.environ.get("TW_TEST_SAME_HOST") == "0":
            extra.setdefault("same_host", False)
        init = extra.pop("init_method", "tcp://127.0.0.1:%d")
        opts = rpc.TensorPipeRpcBackendOptions(
            init_method=init % port, num_worker_threads=threads, **extra)
        rpc.init_rpc("worker%d" % rank, rank=rank, world_size=world,
                     rpc_backend_options=opts)
        result = None
        if rank == 0 or body.startswith("all_"):
            result = getattr(funcs, body)(rank, world, *args)
        rpc.shutdown(graceful=graceful)
        # Plain pickle: multiprocessing's own would share tensors through
        # file descriptors, gone once this process exits.
        q.put((rank, "ok", pickle.dumps(result)))
    except BaseException:
        q.put((rank, "error", traceback.format_exc()))
        q.close()
        q.join_thread()  # the report must leave before the process goes
        os._exit(1)


def tw_worker(rank, world, port, kind="tw-worker"):
    """A C worker as rank `rank`: tools/tw-worker (serves the demo
    functions), or python/c_caller (calls functions served in Python)."""
    import subprocess
    build = os.environ.get("TW_BUILD_DIR", "build")
    addr = "tcp://127.0.0.1:%d" % port
    if kind == "c_caller":
        return subprocess.Popen([os.path.join(build, "python", "c_caller"),
                                 str(rank), str(world), addr])
    off = (["--no-same-host"] if os.environ.get("TW_TEST_SAME_HOST") == "0"
           else [])
    return subprocess.Popen([os.path.join(build, "tools", "tw-worker"),
                             "--name", "worker%d" % rank, "--rank",
                             str(rank), "--world-size", str(world),
                             "--rendezvous", addr] + off)


def run(body, world=2, args=(), threads=4, timeout=120, extra=None,
        c_ranks=(), dead=(), nongraceful=(), c_kind="tw-worker",
        rank_extra=None, before=None):
    """Run rpcfuncs.<body>(rank, world, *args) on rank 0 (on every rank for
    bodies named all_*) in a group of `world` workers; returns rank 0's
    result, raising with the workers' tracebacks if any failed. c_ranks
    are C workers (tw-worker); dead ranks may die without a word;
    nongraceful ranks shut down at once (graceful=False). extra: options
    of every rank, rank_extra: {rank: options} over them; before: (name,
    args), rpcfuncs.<name>(rank, world, *args) runs on each rank before
    init_rpc."""
    ctx = mp.get_context("spawn")
    ctx.set_executable("/usr/bin/python3")
    q = ctx.Queue()
    port = free_port()
    def opts(r):
        o = dict(extra or {})
        o.update((rank_extra or {}).get(r, {}))
        return o
    procs = [ctx.Process(target=worker_main,
                         args=(r, world, port, body, args, threads, q,
                               opts(r), r not in nongraceful, before))
             for r in range(world) if r not in c_ranks]
    for p in procs:
        p.start()
    cprocs = [tw_worker(r, world, port, c_kind) for r in c_ranks]
    results, errors = {}, []
    try:
        for _ in range(len(procs) - len(dead)):
            rank, status, value = q.get(timeout=timeout)
            if status == "ok":
                results[rank] = pickle.loads(value)
            else:
                errors.append("worker %d:\n%s" % (rank, value))
                break
    except Exception as e:
        errors.append("group did not finish: %r" % (e,))
    for p in procs:
        p.join(timeout=5 if errors else timeout)
        if p.is_alive():
            p.kill()
            p.join()
    for c in cprocs:
        try:
            c.wait(timeout=5 if errors else timeout)
        except Exception:
            c.kill()
            c.wait()
        if c.returncode != 0 and not errors:
            errors.append("C worker exited with %s" % c.returncode)
    if errors:
        raise AssertionError("\n".join(errors))
    return results.get(0)
