"""A peer that sends calls and never reads the replies (issue 12, item 4).

Replies to it must not pile up without bound in w0: past a bounded reply
backlog w0 stops reading that peer (TCP flow control does the rest), so
its RSS stays bounded, and the member m1, another peer, keeps calling.

The bound is per peer (worker id): every connection of the peer is paused,
so the attacker speaks as worker 2 (m2's id, m2 idle), not as m1."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twattack as T  # noqa: E402

C = T.Checks()
TENSOR_BYTES = 64 << 10
CALLS = 8000  # 512 MiB of tensors echoed back to a peer that never reads


def no_reader(g, w):
    c = g.conn(2)
    c.s.setsockopt(T.socket.SOL_SOCKET, T.socket.SO_RCVBUF, 64 << 10)
    t = T.Tensor(T.DT_UINT8, [TENSOR_BYTES])
    one = T.call_frame("demo::echo", (t,), req_id=0, src=2, dst=0)
    c.s.setblocking(False)
    sent_calls, buf, off = 0, b"", 0
    deadline = time.monotonic() + 20
    while sent_calls < CALLS and time.monotonic() < deadline and not w.killed:
        if off == len(buf):
            # a batch of 16 calls, each its own req_id (bytes 8..16)
            parts = []
            for i in range(16):
                b = bytearray(one)
                b[8:16] = (sent_calls + i + 1).to_bytes(8, "little")
                parts.append(bytes(b))
            buf, off = b"".join(parts), 0
            sent_calls += 16
        try:
            off += c.s.send(buf[off:off + (1 << 20)])
        except BlockingIOError:
            time.sleep(0.01)
        except OSError as e:
            T.log("send failed: %s" % e)
            break
    T.log("%d calls sent (%.0f MiB) in the time given; w0 RSS +%.0f MiB" %
          (sent_calls, sent_calls * len(one) / 1048576, w.grew_mb()))
    pings = [g.m1.cmd("ping 5000", 20) for _ in range(3)]
    C.check("no_reader: m1's calls answered while a peer does not read",
            all(p == "ok 42" for p in pings), repr(pings))
    time.sleep(1.0)  # let w0 work through what it accepted
    C.survived(g, w, "no_reader")
    c.close()


def run():
    g = T.Group(world=3, start_member=False)
    g.start_member("m2", 2)
    g.m1 = g.start_member("m1", 1)
    g.wait_ready()
    try:
        w = g.watch()
        no_reader(g, w)
    finally:
        g.close()


C.run("no_reader", run)
C.finish()
