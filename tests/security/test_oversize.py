"""A member sends a tensor over the frame limit (issue 12, item 2).

The sender checks first: the call fails at the caller with its own status
naming the limit, nothing is sent, and the connection goes on serving the
member's other calls (today the receiver closes it: TW_EUNREACHABLE, and
every call on that connection fails)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twattack as T  # noqa: E402

C = T.Checks()
# Over the default frame limit (1 GiB + 64 KiB, docs/wire.md 2). The member
# allocates it without touching it: it costs no memory.
OVER = (1 << 30) + (1 << 20)


def oversize(g, w):
    before = g.m1.cmd("stats")
    r = g.m1.cmd("big %d" % OVER, 120)
    T.log("oversized call: %r" % r)
    C.check("oversize: the call fails at the caller",
            r is not None and r.startswith("err "), repr(r))
    C.check("oversize: with its own status, not as a lost connection",
            r is not None and r.startswith("err ") and
            "UNREACHABLE" not in r.upper() and "TIMED" not in r.upper() and
            "unreachable" not in r, repr(r))
    after = g.m1.cmd("stats")
    T.log("m1 stats (opened closed bad) before %r after %r" % (before, after))
    closed_before = int(before.split()[2]) if before else -1
    closed_after = int(after.split()[2]) if after else -2
    C.check("oversize: m1's connection was not closed",
            closed_before == closed_after, "%r -> %r" % (before, after))
    r = g.m1.cmd("big 4096", 30)
    C.check("oversize: a small tensor goes through afterwards", r == "ok",
            repr(r))


def run():
    g = T.Group()
    try:
        w = g.watch()
        oversize(g, w)
        C.survived(g, w, "oversize")
    finally:
        g.close()


C.run("oversize", run)
C.finish()
