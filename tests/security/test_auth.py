"""Authentication on the data port (issue 12, item 1; docs/wire.md 5.1).

A stranger without the handshake, a wrong secret, no secret, a replayed
handshake, a HELLO meant for another worker and a spoofed source id after
a valid handshake: none of them may run a function on w0, w0 survives and
the member m1 keeps calling."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twattack as T  # noqa: E402

C = T.Checks()


def no_result(c, req_id, timeout=2.0):
    """A CALL must not have run: no RET. Returns what came instead."""
    f = T.wait_reply(c, req_id, timeout)
    return f is None or f.type != T.RET, f


def add_call(req_id, src=1, dst=0):
    return T.call_frame("demo::add", (40, 2), req_id=req_id, src=src, dst=dst)


def case(name, attack):
    def run():
        g = T.Group()
        try:
            w = g.watch()
            attack(g)
            C.survived(g, w, name)
        finally:
            g.close()
    C.run(name, run)


def stranger_call(g):
    # No handshake at all: the first frame is a CALL.
    c = T.Conn(g.port)
    c.try_send(add_call(7))
    ok, f = no_result(c, 7)
    C.check("stranger_call: CALL without handshake not served", ok, repr(f))
    C.check("stranger_call: connection closed",
            c.eof or c.closed_within(3.0))
    c.close()


def bad_key(key):
    def attack(g):
        c = T.Conn(g.port)
        refused = False
        try:
            done = c.handshake(1, 0, key, proof_anyway=True)
            T.log("handshake with a bad key: server answered nothing" if not done
                  else "handshake with a bad key: completed (!)")
        except T.AuthFailed as e:
            refused = True
            T.log("handshake refused as expected: %s" % e)
        C.check("bad key %r: the server's MAC does not verify for us" % key,
                refused)
        c.try_send(add_call(8))
        ok, f = no_result(c, 8)
        C.check("bad key %r: CALL after the failed handshake not served" % key,
                ok, repr(f))
        C.check("bad key %r: connection closed" % key,
                c.eof or c.closed_within(3.0))
        c.close()
    return attack


def replay(g):
    # A member's handshake, recorded; then replayed on a new connection by
    # someone who does not know the secret.
    a = T.Conn(g.port)
    done = a.handshake(1, 0, g.key)
    hello, proof = a.sent[0], a.sent[-1]
    a.close()
    c = T.Conn(g.port)
    c.send(T.frame(T.AUTH, hello, src=1, dst=0))
    f = c.recv_frame(3.0)
    C.check("replay: the recorded handshake worked on its own", done,
            "no handshake on this worker" if not done else "")
    if f is not None and f.type == T.AUTH:
        c.send(T.frame(T.AUTH, proof, src=1, dst=0))
    c.try_send(add_call(9))
    ok, f = no_result(c, 9)
    C.check("replay: CALL after a replayed PROOF not served", ok, repr(f))
    C.check("replay: connection closed", c.eof or c.closed_within(3.0))
    c.close()


def reflect(g):
    # The server's own MAC reflected back as the PROOF.
    c = T.Conn(g.port)
    nc = os.urandom(32)
    c.send_auth(T.AUTH_HELLO, T.CTX_DATA, 1, 0, nc)
    f = c.recv_frame(3.0)
    ch = T.parse_auth(f.value) if f is not None and f.type == T.AUTH else None
    if ch is not None:
        c.send_auth(T.AUTH_PROOF, T.CTX_DATA, 1, 0, bytes(32), ch["mac"])
    c.try_send(add_call(10))
    ok, f = no_result(c, 10)
    C.check("reflect: CALL after a reflected MAC not served", ok, repr(f))
    c.close()


def wrong_target(g):
    # A HELLO meant for worker 5: refused (TW_EAUTH), nothing served.
    c = T.Conn(g.port)
    refused = False
    try:
        c.handshake(1, 5, g.key)
    except T.AuthFailed as e:
        refused = True
        T.log("refused: %s" % e)
    C.check("wrong_target: HELLO for another worker refused", refused)
    c.try_send(add_call(11))
    ok, f = no_result(c, 11)
    C.check("wrong_target: CALL not served", ok, repr(f))
    c.close()


def spoof(g):
    # A valid handshake as worker 1, then frames claiming worker 0 (w0
    # itself) and an id outside the group: refused and counted; the
    # connection's own calls may go on or the connection may close, but a
    # spoofed call never runs.
    c = g.conn(1)
    c.send(add_call(12, src=0))
    ok, f = no_result(c, 12)
    C.check("spoof: CALL claiming src 0 not served", ok, repr(f))
    if not c.eof:
        c.try_send(add_call(13, src=7))
        ok, f = no_result(c, 13)
        C.check("spoof: CALL claiming src 7 not served", ok, repr(f))
    c.close()
    # and an honest CALL from the same attacker, as itself, still works
    c = g.conn(1)
    c.send(add_call(14, src=1))
    f = T.wait_reply(c, 14, 5.0)
    C.check("spoof: a call as itself after the handshake works",
            f is not None and f.type == T.RET and f.value == 42, repr(f))
    c.close()


def silent(g):
    # Unauthenticated connections that say nothing: closed by the handshake
    # deadline (generous bound: 20 s).
    conns = [T.Conn(g.port) for _ in range(8)]
    import time
    deadline = time.monotonic() + 20
    closed = 0
    for c in conns:
        if c.closed_within(max(0.1, deadline - time.monotonic())):
            closed += 1
        c.close()
    C.check("silent: idle unauthenticated connections closed by a deadline",
            closed == len(conns), "%d of %d closed within 20 s" %
            (closed, len(conns)))


def auth_vector():
    """twattack computes MAC("S") and MAC("C") as rpc/auth.c does (so its
    'legitimate member' really is one once workers demand the handshake)."""
    import subprocess
    for key, ctx in ((T.SECRET, T.CTX_DATA), (T.SECRET, T.CTX_RDV),
                     (b"", T.CTX_DATA)):
        out = subprocess.run([T.TW_SEC_MEMBER, "--auth-vector", key.decode(),
                              str(ctx)], capture_output=True, timeout=30)
        f = out.stdout.decode().split()
        ok = out.returncode == 0 and len(f) == 4
        if ok:
            nc, ns, mac_s, mac_c = (bytes.fromhex(x) for x in f)
            sid = T.ID_RDV if ctx == T.CTX_RDV else 0
            ok = (T.auth_mac(key, b"S", ctx, 1, sid, nc, ns) == mac_s and
                  T.auth_mac(key, b"C", ctx, 1, sid, nc, ns) == mac_c)
        C.check("auth_vector: MACs agree with rpc/auth.c (key %r, ctx %d)" %
                (key, ctx), ok, "" if ok else "%r %r" % (out.stdout, out.stderr))


C.run("auth_vector", auth_vector)
case("stranger_call", stranger_call)
case("wrong_secret", bad_key(b"not-the-group-secret"))
case("no_secret", bad_key(b""))
case("replay", replay)
case("reflect", reflect)
case("wrong_target", wrong_target)
case("spoofed_src", spoof)
case("handshake_deadline", silent)
C.finish()
