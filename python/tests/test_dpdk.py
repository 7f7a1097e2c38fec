"""tensorwire.rpc over the DPDK transport: two Python workers, each with
its own EAL (a unique --file-prefix, --no-huge --no-pci), joined by a
net_memif vdev pair (rank 0 the memif server, rank 1 the client, on a
unique abstract socket), as tests/integration/test_agent_dpdk.c; the
rendezvous stays TCP on 127.0.0.1. rpc_sync of a Python function, of
torch.add, and a 1 MiB tensor echo byte-exact.

Runs serialized with the other DPDK tests, as its own meson test:
`flock /tmp/tw-dpdk.lock meson test -C build --suite dpdk python_dpdk`
(which sets TW_TEST_DPDK=1); skipped otherwise, and without root or a
build without DPDK."""

import os
import shutil
import tempfile

import pytest

_C = pytest.importorskip("tensorwire._C")

import rpcgroup  # noqa: E402

pytestmark = pytest.mark.dpdk

EAL_COMMON = ("--no-huge -m 256 --no-pci --no-telemetry "
              "--log-level=warning ")


def _eal(pid, rank, sock):
    prefix = "twpy%d%s" % (pid, "s" if rank == 0 else "c")
    # Different main lcores: each EAL pins its init thread there.
    return prefix, ("-l %d " % (1 - rank if os.cpu_count() > 1 else 0) +
                    EAL_COMMON +
                    "--file-prefix=%s --vdev=net_memif0,role=%s,"
                    "socket=%s,socket-abstract=yes,mac=02:00:00:00:0b:%02x"
                    % (prefix, "server" if rank == 0 else "client", sock,
                       rank + 1))


def test_rpc_over_memif(capfd):
    if not _C.HAVE_DPDK:
        pytest.skip("tensorwire._C was built without DPDK")
    if os.geteuid() != 0:
        pytest.skip("the DPDK transport needs root (the EAL)")
    pid = os.getpid()
    sock = "/twpy-memif-%d" % pid
    prefixes, rank_extra = [], {}
    for rank in (0, 1):
        prefix, eal = _eal(pid, rank, sock)
        prefixes.append(prefix)
        rank_extra[rank] = {"transport_options": {
            "eal_args": eal, "port": "net_memif0",
            "local_ip": "10.88.1.%d" % (rank + 1), "udp_base_port": 32100,
            "credits": 128, "rto_ns": 5000000,
            # A peer silent 10 s is dead (default 1 s): this host's two
            # cores are shared with other tests, and a starved worker
            # once looked dead under the default.
            "dead_ns": 10 * 10**9}}
    rundir = tempfile.mkdtemp(prefix="twpy-dpdk-")
    try:
        out = rpcgroup.run(
            "body_dpdk", timeout=180, rank_extra=rank_extra,
            # same_host off: the two workers share this host, and the
            # memif pair between them is what is tested here.
            extra={"transport": "dpdk", "same_host": False,
                   "secret": "tensorwire-python-dpdk-test"},
            before=("dpdk_before_init", (rundir,)))
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
        # DPDK 22.11 leaves the run directory behind.
        for p in prefixes:
            shutil.rmtree("/var/run/dpdk/" + p, ignore_errors=True)
    assert out == {"add": 3, "where": "worker1", "torch_add": True,
                   "mib": True}, out
    # Both processes released the EAL at exit (tw_dpdk_eal_cleanup): every
    # port was closed by then.
    err = capfd.readouterr().err
    assert "cleanup skipped" not in err, err
