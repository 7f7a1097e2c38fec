"""RpcBackendOptions.transport_options: the dict of a transport's C options
struct fields. Bad keys, types and ranges raise, naming the key, before
anything starts; a good io_uring dict reaches the transport of a real
two-worker group on 127.0.0.1."""

import select
import socket

import pytest

pytest.importorskip("tensorwire._C")

import rpcgroup  # noqa: E402
import tensorwire.rpc as rpc  # noqa: E402
from tensorwire import _C  # noqa: E402

URING_KEYS = ["listen_host", "recv_buf_size", "recv_buf_count", "max_queued",
              "zc_threshold", "large_frame", "sockbuf", "rx_pool_buf_size",
              "rx_pool_count", "large_cache_bytes", "zc_same_host",
              "busy_poll_conns", "busy_poll_ns", "cc_local", "cc_remote",
              "asm_worker_bytes", "asm_host_bytes", "stall_timeout_ms",
              "max_conns_per_host", "max_conns", "user_timeout_ms",
              "connect_timeout_ms", "listen_port", "advertise_host",
              "rto_max_ms"]
DPDK_KEYS = ["eal_args", "port", "local_ip", "udp_base_port", "mtu",
             "rx_desc", "tx_desc", "mbufs", "mbuf_cache", "ext_mbufs",
             "steer_ring", "no_offload", "no_flow", "credits", "rx_window",
             "rto_ns", "dead_ns", "idle_wake_ns", "max_sessions",
             "max_queued", "zc_threshold", "rx_pool_buf_size",
             "rx_pool_count", "burst", "sw_udp_csum_off", "no_pkt_tag",
             "asm_bytes", "asm_stall_ns", "ooo_max", "rexmit_max",
             "accept_timeout_ns", "ack_delay_ns"]
SHM_KEYS = ["dir", "socket_mode", "ring_size", "max_queued",
            "rx_pool_buf_size", "rx_pool_count", "large_frame",
            "large_cache_bytes", "asm_worker_bytes", "stall_timeout_ms",
            "max_conns", "connect_timeout_ms", "no_rings", "cma_threshold"]

# (transport, options, exception, words its message holds)
BAD = [
    ("uring", {"bogus": 1}, ValueError, ["'bogus'", "'uring'"] + URING_KEYS),
    ("dpdk", {"credits": 64, "eal_arg": "-l 0"}, ValueError,
     ["'eal_arg'", "'dpdk'"] + DPDK_KEYS),
    ("uring", {"credits": 64}, ValueError, ["'credits'", "listen_host"]),
    ("dpdk", {"opts_size": 8}, ValueError, ["'opts_size'"]),
    ("dpdk", {"transport": "uring"}, ValueError, ["'transport'"]),
    (None, {"eal_args": "-l 0", "listen_host": "127.0.0.1"}, ValueError,
     ["'eal_args'", "transport='dpdk'"]),
    ("dpdk", {1: 2}, ValueError, ["1", "eal_args"]),
    ("dpdk", {"credits": "128"}, TypeError, ["'credits'", "int", "str"]),
    ("dpdk", {"credits": 128.0}, TypeError, ["'credits'", "float"]),
    ("dpdk", {"credits": True}, TypeError, ["'credits'", "bool"]),
    ("dpdk", {"no_flow": 1}, TypeError, ["'no_flow'", "bool"]),
    ("dpdk", {"eal_args": ["-l", "0"]}, TypeError, ["'eal_args'", "list"]),
    ("uring", {"listen_host": b"127.0.0.1"}, TypeError,
     ["'listen_host'", "bytes"]),
    ("uring", {"zc_same_host": "yes"}, TypeError, ["'zc_same_host'"]),
    ("dpdk", {"port": "net_\0memif0"}, ValueError, ["'port'", "NUL"]),
    ("dpdk", {"udp_base_port": 65536}, ValueError,
     ["'udp_base_port'", "65536", "65535"]),
    ("dpdk", {"credits": -1}, ValueError, ["'credits'", "-1"]),
    ("dpdk", {"credits": 1 << 32}, ValueError, ["'credits'", "4294967295"]),
    ("dpdk", {"rto_ns": 1 << 64}, ValueError, ["'rto_ns'"]),
    ("uring", {"asm_worker_bytes": -5}, ValueError, ["'asm_worker_bytes'"]),
    ("uring", {"sockbuf": 1 << 31}, ValueError, ["'sockbuf'"]),
    ("uring", {"sockbuf": -(1 << 31) - 1}, ValueError, ["'sockbuf'"]),
    ("uring", [("listen_host", "127.0.0.1")], TypeError, ["dict", "list"]),
    ("tcp", {"listen_host": "127.0.0.1"}, ValueError,
     ["'tcp'", "'uring'", "'dpdk'"]),
]


def _ids(case):
    return "%s-%s" % (case[0], case[2].__name__)


@pytest.mark.parametrize("transport,options,exc,words", BAD,
                         ids=[_ids(c) + "-%d" % i for i, c in enumerate(BAD)])
def test_bad_options_raise_before_any_network(transport, options, exc, words):
    # At construction...
    with pytest.raises(exc) as e:
        rpc.RpcBackendOptions(transport=transport, transport_options=options)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    # ... and in init_rpc (options changed afterwards), before it reaches
    # the rendezvous: a listener there sees no connection. Rank 0 would
    # have failed to serve on the listener's port instead (RemoteError).
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(8)
        port = ls.getsockname()[1]
        for rank in (0, 1):
            o = rpc.RpcBackendOptions(
                init_method="tcp://127.0.0.1:%d" % port, init_timeout=2,
                transport=transport)
            o.transport_options = options
            with pytest.raises(exc) as e:
                rpc.init_rpc("worker%d" % rank, rank=rank, world_size=2,
                             rpc_backend_options=o)
            for w in words:
                assert w in str(e.value), (w, str(e.value))
        ready, _, _ = select.select([ls], [], [], 0.3)
        assert not ready, "init_rpc reached the rendezvous"
    with pytest.raises(RuntimeError, match="not been initialized"):
        rpc.shutdown()


def test_good_values_at_the_edges_are_accepted():
    ok = [
        ("dpdk", {"eal_args": "-l 0 --no-huge", "port": "net_memif0",
                  "credits": 128, "rto_ns": 5000000}),
        ("dpdk", {"udp_base_port": 0, "mtu": 65535, "credits": 0,
                  "rx_window": (1 << 32) - 1, "zc_threshold": (1 << 64) - 1,
                  "no_offload": True, "no_flow": False,
                  "sw_udp_csum_off": True, "eal_args": None,
                  "local_ip": None}),
        ("uring", {"sockbuf": -1, "large_cache_bytes": (1 << 64) - 1,
                   "cc_remote": None, "cc_local": "",
                   "zc_same_host": True}),
        ("uring", {}),
        # Without transport: the struct whose fields the keys are.
        (None, {"listen_host": "127.0.0.1", "max_queued": 8}),
        (None, {"eal_args": "-l 0", "credits": 32}),
        (None, None),
    ]
    for transport, options in ok:
        _C._check_transport_options(transport, options)
        o = rpc.RpcBackendOptions(transport=transport,
                                  transport_options=options)
        assert o.transport_options is options


def test_a_value_the_transport_refuses_fails_init_with_its_reason():
    # The dict is well-formed; the transport checks the value itself.
    o = rpc.RpcBackendOptions(
        init_method="tcp://127.0.0.1:%d" % rpcgroup.free_port(),
        init_timeout=5, transport="uring",
        transport_options={"recv_buf_count": 3})
    with pytest.raises(RuntimeError) as e:
        rpc.init_rpc("worker0", rank=0, world_size=1, rpc_backend_options=o)
    assert "recv_buf_count 3" in str(e.value), e.value
    assert "power of 2" in str(e.value), e.value
    with pytest.raises(RuntimeError, match="not been initialized"):
        rpc.shutdown()


def test_uring_options_reach_a_real_group():
    opts = {"zc_threshold": 4096, "zc_same_host": True,
            "recv_buf_count": 128, "busy_poll_conns": 2,
            "stall_timeout_ms": 20000, "cc_local": "reno"}
    out = rpcgroup.run(
        "body_options", extra={"transport": "uring"},
        rank_extra={0: {"transport_options":
                        dict(opts, listen_host="127.0.0.2")},
                    1: {"transport_options":
                        dict(opts, listen_host="127.0.0.3")}})
    assert out == {"listen0": True, "listen1": True, "add": 3,
                   "echo": True}, out


def test_transport_implied_by_uring_options():
    out = rpcgroup.run(
        "body_options",
        rank_extra={0: {"transport_options": {"listen_host": "127.0.0.2"}},
                    1: {"transport_options": {"listen_host": "127.0.0.3"}}})
    assert out["add"] == 3 and out["listen0"] and out["listen1"], out


@pytest.mark.parametrize("lend", [True, False])
def test_lend_loops(lend):
    """lend_loops (default on): a waiting thread runs the run loop, and
    every kind of call is right either way; off, no wait runs it."""
    out = rpcgroup.run("body_lend", extra={"lend_loops": lend})
    assert out["ok"], out
    if lend:
        assert out["lent"] > 0, out
    else:
        assert out["lent"] == 0, out


@pytest.mark.parametrize("extra,rings", [
    ({}, True), ({"transport": "uring"}, True),
    ({"same_host": False}, False), ({"same_host": True}, True)])
def test_same_host_transport(extra, rings):
    """Workers on one host take the same-host transport unless told not
    to (same_host: default on)."""
    out = rpcgroup.run("body_same_host", extra=extra)
    assert out == {"ok": True, "rings": rings, "fallbacks": 0}, out


def test_same_host_options_are_checked_and_reach_the_transport():
    with pytest.raises(ValueError, match="'ring_sz'"):
        rpc.TensorPipeRpcBackendOptions(same_host_options={"ring_sz": 1})
    with pytest.raises(TypeError, match="'no_rings'"):
        rpc.TensorPipeRpcBackendOptions(same_host_options={"no_rings": 1})
    # no_rings: the same-host connections keep every frame on their
    # socket, so no rings are mapped; a ring_size the transport refuses
    # fails init with its reason.
    out = rpcgroup.run("body_same_host",
                       extra={"same_host_options": {"no_rings": True}})
    assert out == {"ok": True, "rings": False, "fallbacks": 0}, out
    with pytest.raises(AssertionError, match="ring_size"):
        rpcgroup.run("body_same_host",
                     extra={"same_host_options": {"ring_size": 12345}})


def _header_fields(header, struct):
    """The field names of a C options struct, read from its header."""
    import os
    import re
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "..", "include", "tensorwire")
    with open(os.path.join(root, header)) as f:
        text = f.read()
    body = text[text.index("struct %s {" % struct):]
    body = re.sub(r"/\*.*?\*/", "", body[:body.index("\n};")], flags=re.S)
    names = []
    for m in re.finditer(r"^\s*(?:const\s+)?\w+\s+\*?\s*([\w, *]+);", body,
                         re.M):
        names += [n.strip().lstrip("*") for n in m.group(1).split(",")]
    return [n for n in names if n not in ("opts_size", "transport")]


@pytest.mark.parametrize("transport,header,struct,listed", [
    ("uring", "uring.h", "tw_uring_opts", URING_KEYS),
    ("dpdk", "dpdk.h", "tw_dpdk_opts", DPDK_KEYS),
    ("shm", "shm.h", "tw_shm_opts", SHM_KEYS)])
def test_every_field_of_the_header_is_an_option(transport, header, struct,
                                                 listed):
    """transport_options carries every field of the C struct: the keys the
    error lists are the header's fields (a field added to the header and
    not to _topts.c fails here)."""
    fields = _header_fields(header, struct)
    assert fields == listed, (fields, listed)
    with pytest.raises(ValueError) as e:
        _C._check_transport_options(transport, {"bogus": 1})
    named = str(e.value).split("valid keys: ", 1)[1].split(", ")
    assert named == fields, (named, str(e.value))


def test_control_timeout_and_log_level_are_checked():
    with pytest.raises(ValueError, match="log_level 'loud'"):
        rpc.init_rpc("worker0", rank=0, world_size=1,
                     rpc_backend_options=rpc.RpcBackendOptions(
                         init_method="tcp://127.0.0.1:%d"
                         % rpcgroup.free_port(), log_level="loud"))
    o = rpc.RpcBackendOptions(
        init_method="tcp://127.0.0.1:%d" % rpcgroup.free_port(),
        init_timeout=5, control_timeout=0.5)
    with pytest.raises(RuntimeError, match="control_timeout_ms 500"):
        rpc.init_rpc("worker0", rank=0, world_size=1, rpc_backend_options=o)
    with pytest.raises(RuntimeError, match="not been initialized"):
        rpc.shutdown()


def test_control_timeout_and_log_level_reach_a_group():
    out = rpcgroup.run("body_options", extra={
        "control_timeout": 5.0, "log_level": "error"},
        rank_extra={0: {"transport_options": {"listen_host": "127.0.0.2"}},
                    1: {"transport_options": {"listen_host": "127.0.0.3"}}})
    assert out["add"] == 3, out
