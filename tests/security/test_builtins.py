"""Builtins and demo functions with what a peer controls (issue 12, items 3
and 6).

A member (past the handshake: an insider, or a compromised worker) asks
w0's factories for 16 GiB, broadcasts two 4-byte stride-0 tensors to 2^32
elements, sums a stride-0 tensor of 2^34 elements, overflows demo::add and
asks demo::slow to sleep -1 ms. Each must be refused (an EXCEPTION, soon)
or bounded (run off the loop), w0's RSS must stay bounded and the member
m1's small calls must keep working meanwhile."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twattack as T  # noqa: E402

C = T.Checks()
HUGE = 1 << 32  # elements: 16 GiB of float32


def case(name, attack, bound_mb=None):
    def run():
        g = T.Group()
        try:
            w = g.watch()
            attack(g, w)
            C.survived(g, w, name, bound_mb)
        finally:
            g.close()
    C.run(name, run)


def refused(name, fn, args, kwargs=None, timeout=10.0):
    """The call must come back as an EXCEPTION within timeout."""
    def attack(g, w):
        c = g.conn(1)
        c.send(T.call_frame(fn, args, kwargs, req_id=21, src=1, dst=0))
        f = T.wait_reply(c, 21, timeout)
        C.check("%s: refused with an EXCEPTION" % name,
                f is not None and f.type == T.EXCEPTION,
                repr(f) if f is not None else
                "no answer in %.0f s (w0 %s, RSS +%.0f MiB)" %
                (timeout, "alive" if g.w0.alive() and not w.killed else "dead",
                 w.grew_mb()))
        c.close()
    return attack


def stride0(dims):
    """A float32 tensor of shape dims whose strides are all 0: 4 bytes on
    the wire stand for every element."""
    return T.Tensor(T.DT_FLOAT32, dims, [0] * len(dims), data=b"\0\0\x80\x3f")


def pings_meanwhile(g, label, n=5, timeout_ms=5000):
    """m1's small calls while w0 works on something big: each must come
    back within a generous deadline."""
    ok = 0
    last = None
    for _ in range(n):
        last = g.m1.cmd("ping %d" % timeout_ms, timeout_ms / 1000 + 10)
        if last == "ok 42":
            ok += 1
    C.check("%s: m1's small calls answered meanwhile" % label, ok == n,
            "%d of %d, last %r" % (ok, n, last))


def sum_stride0(g, w):
    """aten::sum over 2^34 elements of one 4-byte segment: refused, or
    run where it does not hold w0's run loop (m1's calls go on)."""
    c = g.conn(1)
    c.send(T.call_frame("aten::sum", (stride0([1 << 34]),), req_id=31, src=1,
                        dst=0))
    time.sleep(0.2)
    pings_meanwhile(g, "sum_stride0")
    f = T.wait_reply(c, 31, 0.5)
    T.log("the sum's answer so far: %r" % (f,))
    c.close()


def demo_add_overflow(g, w):
    for a, b in ((1 << 62, 1 << 62), ((1 << 63) - 1, 1), (-(1 << 63), -1)):
        c = g.conn(1)
        c.send(T.call_frame("demo::add", (a, b), req_id=41, src=1, dst=0))
        f = T.wait_reply(c, 41, 5.0)
        C.check("demo_add_overflow: %d + %d refused" % (a, b),
                f is not None and f.type == T.EXCEPTION, repr(f))
        c.close()


def small_ok(g, w):
    """Control: small builtin calls answer as before."""
    c = g.conn(1)
    c.send(T.call_frame("aten::ones", ([2, 3],), req_id=51, src=1, dst=0))
    f = T.wait_reply(c, 51, 5.0)
    C.check("small_ok: aten::ones([2, 3]) answers a tensor",
            f is not None and f.type == T.RET and isinstance(f.value, tuple)
            and f.value[0] == "tensor" and f.value[2] == [2, 3], repr(f))
    c.send(T.call_frame("aten::sum", (stride0([1000]),), req_id=52, src=1,
                        dst=0))
    f = T.wait_reply(c, 52, 5.0)
    C.check("small_ok: aten::sum of a small stride-0 tensor answers",
            f is not None and f.type == T.RET, repr(f))
    c.close()


case("small_ok", small_ok)
case("ones_16GiB", refused("ones_16GiB", "aten::ones", ([HUGE],)))
case("zeros_16GiB", refused("zeros_16GiB", "aten::zeros", ([HUGE],)))
case("full_16GiB", refused("full_16GiB", "aten::full", ([HUGE], 1.5)))
case("arange_16GiB", refused("arange_16GiB", "aten::arange", (1 << 31,)))
case("rand_16GiB", refused("rand_16GiB", "aten::rand", ([HUGE],)))
case("randn_16GiB", refused("randn_16GiB", "aten::randn", ([HUGE],)))
case("ones_negative", refused("ones_negative", "aten::ones", ([-1],)))
case("broadcast_add_16GiB",
     refused("broadcast_add_16GiB", "aten::add",
             (stride0([1 << 16, 1]), stride0([1, 1 << 16]))))
case("sum_stride0_2e34", sum_stride0)
case("demo_add_overflow", demo_add_overflow)
case("demo_slow_negative",
     refused("demo_slow_negative", "demo::slow", (-1,), timeout=5.0))
C.finish()
