"""Where io_uring workers serve and what they announce (issue 19, part 2):
IPv6, wildcards, interface names, advertise_host, and bad hosts refused
naming them. All on this host's loopback; nothing here asks a DNS server
(host names are resolved from files only in the namespace suite,
tests/hosts)."""
import pytest

import rpcgroup
import tensorwire.rpc as rpc

SECRET = {"secret": "addresses test secret, 32 bytes or so"}


def _has_ipv6():
    import socket
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback here")


def _run(listen, init=None, secret=False, rank_extra=None):
    # same_host off: the calls must cross the io_uring addresses under test
    # (with it, these same-host workers would meet in shared memory).
    extra = {"transport": "uring", "same_host": False}
    if secret:
        extra.update(SECRET)
    if init:
        extra["init_method"] = init
    if listen is not None:
        extra["transport_options"] = {"listen_host": listen}
    out = rpcgroup.run("body_addresses", extra=extra, rank_extra=rank_extra)
    assert out["add"] == 3 and out["echo"], out
    assert out["back"] == [2.0, 2.0], out
    # One connection each way at least, both on this kernel.
    assert out["same_host"] >= 1, out
    assert out["shm"] == 0, out
    return out


@pytest.mark.parametrize("same_host", [None, True, False])
def test_same_host_workers_meet_in_shared_memory_unless_turned_off(
        same_host):
    """By default (and with same_host=True) two workers of this host call
    each other over the same-host transport, none falling back; with
    same_host=False over io_uring only."""
    extra = {} if same_host is None else {"same_host": same_host}
    out = rpcgroup.run("body_addresses", extra=extra)
    assert out["add"] == 3 and out["echo"], out
    assert out["back"] == [2.0, 2.0], out
    assert out["fallbacks"] == 0, out
    if same_host is False:
        assert out["shm"] == 0, out
    else:
        assert out["shm"] >= 1, out


@ipv6
def test_ipv6_loopback_group():
    out = _run("::1", init="tcp://[::1]:%d")
    for r in (0, 1):
        assert out["addr%d" % r].startswith("tcp://[::1]:"), out


@ipv6
def test_ipv6_brackets_accepted():
    out = _run("[::1]", init="tcp://[::1]:%d")
    assert out["addr1"].startswith("tcp://[::1]:"), out


@ipv6
@pytest.mark.parametrize("init,want", [
    ("tcp://[::1]:%d", "tcp://[::1]:"),
    ("tcp://127.0.0.1:%d", "tcp://127.0.0.1:")])
def test_ipv6_wildcard_announces_the_address_reaching_the_rendezvous(
        init, want):
    """[::] serves IPv4 peers too: what is announced is the address this
    worker reached the rendezvous from, of either family."""
    out = _run("::", init=init, secret=True)
    for r in (0, 1):
        assert out["addr%d" % r].startswith(want), out


def test_ipv4_wildcard_announces_the_address_reaching_the_rendezvous():
    out = _run("0.0.0.0", secret=True)
    for r in (0, 1):
        assert out["addr%d" % r].startswith("tcp://127.0.0.1:"), out


def test_interface_name():
    out = _run("lo")
    assert out["addr1"].startswith("tcp://127.0.0.1:"), out


def test_advertise_host_is_what_the_others_connect_to():
    """Served on every interface, announced as 127.0.0.5 (a NAT's outside,
    say): the others are told 127.0.0.5 and their calls reach it."""
    out = _run(None, secret=True, rank_extra={
        1: {"transport_options": {"listen_host": "0.0.0.0",
                                  "advertise_host": "127.0.0.5"}}})
    assert out["addr1"].startswith("tcp://127.0.0.5:"), out
    assert out["addr0"].startswith("tcp://127.0.0.1:"), out


@pytest.mark.parametrize("opts,words", [
    ({"listen_host": "bad name"}, ["listen_host", "'bad name'"]),
    ({"listen_host": "1.2.3"}, ["listen_host", "'1.2.3'",
                                "not an IPv4 address"]),
    ({"listen_host": "fe80::1%tw-no-such-if0"},
     ["listen_host", "fe80::1%tw-no-such-if0"]),
    ({"advertise_host": "::"}, ["advertise_host", "every interface"]),
    ({"advertise_host": "x/y"}, ["advertise_host", "'x/y'"]),
])
def test_bad_hosts_refused_naming_them(opts, words):
    o = rpc.RpcBackendOptions(
        init_method="tcp://127.0.0.1:%d" % rpcgroup.free_port(),
        init_timeout=5, transport="uring", transport_options=opts)
    with pytest.raises(RuntimeError) as e:
        rpc.init_rpc("worker0", rank=0, world_size=1, rpc_backend_options=o)
    for w in words:
        assert w in str(e.value), e.value
    with pytest.raises(RuntimeError, match="not been initialized"):
        rpc.shutdown()
