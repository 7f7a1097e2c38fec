"""Frames that cost the receiver memory before they are validated, and
frames of another version or type (issue 12, items 2 and 6; docs/wire.md
1.1, 3, 6.1).

Strangers announcing 1 GiB frames, 1,700 connections of 49 bytes each, a
member's frame that stalls half way, a frame of wire version 2, unknown
message types, a bad magic."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twattack as T  # noqa: E402

C = T.Checks()
GIB = 1 << 30
# How long a worker may take to close stalled or unauthenticated
# connections (its handshake deadline / stall timeout); generous.
DEADLINE_S = float(os.environ.get("TW_SEC_DEADLINE_S", "30"))


# w0's stall timeout for partial frames: shorter than its default (30 s) so
# that the member's stalled frame is closed well within DEADLINE_S.
STALL_MS = 5000


def case(name, attack, bound_mb=None):
    def run():
        g = T.Group(w0_args=("--stall-timeout-ms", str(STALL_MS)))
        try:
            w = g.watch()
            attack(g, w)
            C.survived(g, w, name, bound_mb)
        finally:
            g.close()
    C.run(name, run)


def big_header(total=GIB, src=1):
    # A CALL announcing a 1 GiB frame: one tensor segment of the rest.
    return T.header(T.CALL, 64, total, seg_count=1, req_id=1, src=src, dst=0)


def open_many(port, n, timeout=10.0):
    """n connections from the attacker's address, non-blocking connects in
    batches; those the worker never completes count as refused."""
    conns = []
    deadline = time.monotonic() + timeout
    while len(conns) < n and time.monotonic() < deadline:
        try:
            c = T.Conn(port, timeout=2.0)
        except OSError:
            break
        conns.append(c)
    return conns


def push(items, deadline_s):
    """items: [conn, bytes]; send what the worker will take, never blocking,
    until all is sent or deadline_s passes. Returns bytes sent."""
    for c, _ in items:
        c.s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and any(x[1] for x in items):
        progress = False
        for x in items:
            if not x[1]:
                continue
            try:
                n = x[0].s.send(x[1][:1 << 20])
                x[1] = x[1][n:]
                sent += n
                progress = progress or n > 0
            except BlockingIOError:
                pass
            except OSError:
                x[1] = b""
        if not progress:
            time.sleep(0.01)
    return sent


def giant_headers(g, w):
    """100 strangers (no handshake) each announce a 1 GiB frame and send
    2 MiB of it. Before authentication the frame limit is small: nothing
    may be committed."""
    conns = open_many(g.port, 100)
    sent = push([[c, big_header() + bytes(2 << 20)] for c in conns], 10)
    T.log("%d connections, %.0f MiB sent, w0 RSS +%.0f MiB" %
          (len(conns), sent / 1048576, w.grew_mb()))
    closed = T.count_closed(conns, 5)
    C.check("giant_headers: strangers' 1 GiB frames refused (closed)",
            g.w0.alive() and not w.killed and closed >= len(conns) * 9 // 10, "%d of %d" % (closed, len(conns)))
    for c in conns:
        c.close()


def partial_frames(g, w):
    """1,700 connections send 49 bytes each: a header announcing 1 GiB and
    one byte (83 KB in all). w0 must not commit memory for them, and its
    handshake deadline must close them. One member connection (after a
    valid handshake) stalls the same way: the stall timeout closes it."""
    T.raise_fd_limit(8192)
    fds0 = T.fd_count(g.w0.pid)
    member = g.conn(1)
    member.send(big_header() + b"\0")
    conns = []
    t0 = time.monotonic()
    while len(conns) < 1700 and time.monotonic() - t0 < 20:
        try:
            c = T.Conn(g.port, timeout=2.0)
        except OSError as e:
            T.log("connect %d failed: %s" % (len(conns), e))
            break
        if not c.try_send(big_header() + b"\0"):
            c.eof = True
        conns.append(c)
        if w.killed:
            break
    T.log("%d connections of 49 bytes in %.1f s; w0 RSS +%.0f MiB%s" %
          (len(conns), time.monotonic() - t0, w.grew_mb(),
           " (killed by the watchdog)" if w.killed else ""))
    closed = T.count_closed(conns + [member], DEADLINE_S)
    up = g.w0.alive() and not w.killed  # a dead worker closes everything
    held = T.fd_count(g.w0.pid) if up else None
    # The worker may close them (handshake deadline) or cap how many it
    # holds and leave the rest queued in the kernel: either way it must not
    # hold them all.
    C.check("partial_frames: w0 does not hold 1,700 stalled strangers "
            "(deadline or cap)",
            held is not None and held <= fds0 + 1024,
            "w0 holds %s files (%d before); %d of %d closed within %.0f s" %
            (held, fds0, sum(1 for c in conns if c.eof), len(conns),
             DEADLINE_S))
    C.check("partial_frames: a member's stalled frame closed by the stall "
            "timeout", up and member.eof, "closed %d" % closed)
    for c in conns:
        c.close()
    member.close()


def version2(g, w):
    """A CALL of wire version 2: EXCEPTION(TW_EVERSION) naming both
    versions, to src with the request's id, in version 1; then close."""
    c = g.conn(1)
    c.send(T.call_frame("demo::add", (1, 2), req_id=77, src=1, dst=0,
                        version=2))
    f = c.recv_frame(3.0)
    ok = (f is not None and f.type == T.EXCEPTION and f.version == 1 and
          f.req_id == 77 and isinstance(f.value, T.Error) and
          f.value.kind == T.EVERSION)
    C.check("version2: answered EXCEPTION(TW_EVERSION)", ok, repr(f))
    if ok:
        C.check("version2: the message names both versions",
                "2" in f.value.msg and "1" in f.value.msg, f.value.msg)
    C.check("version2: then closed", c.eof or c.closed_within(3.0))
    c.close()
    # A newer peer's first frame, before any handshake (its HELLO would
    # be version 2 too): it still hears why.
    c = T.Conn(g.port)
    c.send(T.call_frame("demo::add", (1, 2), req_id=78, src=1, dst=0,
                        version=2))
    f = c.recv_frame(3.0)
    C.check("version2: answered before the handshake too",
            f is not None and f.type == T.EXCEPTION and f.req_id == 78 and
            isinstance(f.value, T.Error) and f.value.kind == T.EVERSION,
            repr(f))
    C.check("version2: then closed (before the handshake)",
            c.eof or c.closed_within(3.0))
    c.close()


def unknown_types(g, w):
    """Message types 0, 17 (the first unassigned) and 255 (and an AUTH
    frame after the handshake is done, which a data connection never
    expects): the stream is refused and closed, nothing answered as a
    result."""
    for t in (0, 17, 255):
        c = g.conn(1)
        payload, _ = T.encode_value(None)
        c.send(T.header(t, len(payload), 48 + len(payload), req_id=5, src=1,
                        dst=0) + payload)
        f = c.recv_frame(2.0)
        C.check("unknown_types: type %d not answered with a result" % t,
                f is None or f.type != T.RET, repr(f))
        C.check("unknown_types: type %d closes the connection" % t,
                c.eof or c.closed_within(3.0))
        c.close()


def autograd_types(g, w):
    """AG_BACKWARD (15) with a payload of the wrong shape is refused with
    an EXCEPTION and the connection kept; AG_CLEANUP (16) of a context
    this worker never held is acknowledged (docs/wire.md 5.2)."""
    c = g.conn(1)
    payload, _ = T.encode_value(None)
    c.send(T.header(15, len(payload), 48 + len(payload), req_id=7, src=1,
                    dst=0) + payload)
    f = c.recv_frame(3.0)
    C.check("autograd_types: a malformed AG_BACKWARD is refused",
            f is not None and f.type == T.EXCEPTION and f.req_id == 7,
            repr(f))
    payload, _ = T.encode_value(12345)
    c.send(T.header(16, len(payload), 48 + len(payload), req_id=8, src=1,
                    dst=0) + payload)
    f = c.recv_frame(3.0)
    C.check("autograd_types: an unknown context's AG_CLEANUP is "
            "acknowledged", f is not None and f.type == 11 and
            f.req_id == 8, repr(f))
    C.check("autograd_types: the connection stays", not c.eof and
            not c.closed_within(0.3))
    c.close()


def bad_magic(g, w):
    c = g.conn(1)
    fr = bytearray(T.call_frame("demo::add", (1, 2), req_id=6))
    fr[0:4] = b"HTTP"
    c.send(bytes(fr))
    f = c.recv_frame(2.0)
    C.check("bad_magic: not answered with a result",
            f is None or f.type != T.RET, repr(f))
    C.check("bad_magic: connection closed", c.eof or c.closed_within(3.0))
    c.close()


def garbage(g, w):
    """Random bytes on many stranger connections (framing lost at once)."""
    conns = open_many(g.port, 50)
    for c in conns:
        c.try_send(os.urandom(4096))
    closed = T.count_closed(conns, 5)
    C.check("garbage: random bytes close the connection",
            closed == len(conns), "%d of %d" % (closed, len(conns)))
    for c in conns:
        c.close()


def wire_example():
    """The attacker speaks the documented format: it builds docs/wire.md's
    worked example (section 7) byte for byte, read from the document."""
    import re
    import struct
    doc = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "../../docs/wire.md")
    text = open(doc, encoding="utf-8").read()
    block = text.split("## 7. Worked example", 1)[1].split("```", 2)[1]
    want = bytearray()
    for line in block.splitlines():
        m = re.match(r"^([0-9a-f]{4})    (.*)$", line)
        if not m:
            continue
        cols = m.group(2)[:49].split()
        if len(cols) >= 3 and cols[1] == "\u00d7":
            want += bytes.fromhex(cols[0]) * int(cols[2])
            continue
        for c in cols:
            if re.fullmatch(r"[0-9a-f]{2}", c):
                want.append(int(c, 16))
    t = T.Tensor(T.DT_INT32, [2], data=struct.pack("<ii", 1, -1))
    got = T.frame(T.CALL, ("add", (5, t), {}), req_id=7, src=1, dst=2)
    C.check("wire_example: docs/wire.md section 7 built byte for byte",
            bytes(want) == got and len(got) == 136,
            "doc %d bytes %s\nours %d bytes %s" %
            (len(want), bytes(want).hex(), len(got), got.hex())
            if bytes(want) != got else "")


C.run("wire_example", wire_example)
case("giant_headers", giant_headers, bound_mb=64)
case("partial_frames", partial_frames, bound_mb=128)
case("version2", version2)
case("unknown_types", unknown_types)
case("autograd_types", autograd_types)
case("bad_magic", bad_magic)
case("garbage", garbage)
C.finish()
