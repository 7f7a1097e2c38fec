"""An attacker's toolkit for tensorwire, stdlib only (run with /usr/bin/python3).

Builds frames byte for byte as docs/wire.md says (header 1.1, values 4,
messages 5, the AUTH handshake 5.1), talks to real worker processes over
127.0.0.0/8, and watches them: alive, resident memory (VmRSS) sampled all
along an attack, and an honest member (sec_member) whose calls must keep
working.

Everything a test may need to adapt when the fixes land is a constant or
an environment variable near the top:
  TW_WORKER, TW_SEC_MEMBER   the binaries (meson passes them)
  TW_SEC_AUTH                auto (probe), on, off: does the worker speak
                             the AUTH handshake (wire.md 5.1)?
  TW_SEC_RSS_MB              RSS bound over the worker's baseline (256)
  TW_SEC_KEEP                keep worker logs (print their paths)
"""

import hashlib
import hmac
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

# ---- constants from docs/wire.md -------------------------------------------

MAGIC = 0x50525754
VERSION = 1
HDR = struct.Struct("<IBBHQIIIIIIQ")  # 48 bytes, 1.1
assert HDR.size == 48

CALL, RET, EXCEPTION, REMOTE_CALL, REMOTE_RET = 1, 2, 3, 4, 5
RREF_FETCH_CALL, RREF_FETCH_RET, RREF_USER_DELETE = 6, 7, 8
RREF_FORK_REQUEST, RREF_CHILD_ACCEPT, ACK, JOIN, SHUTDOWN, AUTH = 9, 10, 11, 12, 13, 14

K_NONE, K_BOOL, K_INT, K_DOUBLE, K_STRING, K_BYTES, K_TENSOR = 0, 1, 2, 3, 4, 5, 6
K_LIST, K_TUPLE, K_DICT, K_RREF, K_ERROR = 7, 8, 9, 10, 11

STATUS = {1: "TW_EINVAL", 2: "TW_ENOMEM", 3: "TW_ENOSPC", 4: "TW_EOVERFLOW",
          5: "TW_EPROTO", 6: "TW_EVERSION", 7: "TW_ETIMEDOUT",
          8: "TW_EUNREACHABLE", 9: "TW_ESHUTDOWN", 10: "TW_ENOFUNC",
          11: "TW_EBADARGS", 12: "TW_ETYPE", 13: "TW_EVALUE",
          14: "TW_ERUNTIME", 15: "TW_EAUTH", 16: "TW_EBUSY",
          17: "TW_ENOTSUP", 18: "TW_EIO", 19: "TW_ENOENT"}
EINVAL, ENOMEM, EOVERFLOW, EPROTO, EVERSION, EAUTH = 1, 2, 4, 5, 6, 15

DT_UINT8, DT_INT32, DT_INT64, DT_FLOAT32 = 1, 4, 5, 8
DT_SIZE = {0: 1, 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 2, 8: 4, 9: 8}

# AUTH (wire.md 5.1, rpc/auth.h)
AUTH_LABEL = b"tensorwire auth v1\0"
AUTH_HELLO, AUTH_CHALLENGE, AUTH_PROOF = 1, 2, 3
CTX_DATA, CTX_RDV = 1, 2
ID_RDV = 0xFFFFFFFF
# The header of an AUTH frame: src = the sender's id, dst = the id it means
# to reach (the rendezvous server is ID_RDV). If the implementation settles
# on other header fields for AUTH frames, change them here.
AUTH_HDR_DST_RDV = ID_RDV

# Where attacks come from: a loopback address of its own, so per-host
# limits hit the attacker and not the members (who use 127.0.0.1).
ATTACKER_HOST = "127.0.0.66"

# ---- values (wire.md 4) -----------------------------------------------------


def uvarint(n):
    assert n >= 0
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF


class Tensor:
    """A tensor descriptor and its segment bytes. nbytes defaults to the
    span (wire.md 4.3); data defaults to nbytes zero bytes."""

    def __init__(self, dtype, shape, strides=None, data=None, nbytes=None):
        self.dtype, self.shape = dtype, list(shape)
        if strides is None:
            strides, acc = [], 1
            for d in reversed(self.shape):
                strides.insert(0, acc)
                acc *= d
        self.strides = list(strides)
        if nbytes is None:
            numel = 1
            for d in self.shape:
                numel *= d
            if numel == 0:
                nbytes = 0
            else:
                nbytes = (1 + sum((d - 1) * s for d, s in
                                  zip(self.shape, self.strides))) * DT_SIZE[dtype]
        self.nbytes = nbytes
        self.data = data if data is not None else bytes(nbytes)


class Rref:
    def __init__(self, owner=0, rc=0, rl=0, fc=0, fl=0):
        self.f = (owner, rc, rl, fc, fl)


class Error:
    def __init__(self, kind, origin, msg):
        self.kind, self.origin, self.msg = kind, origin, msg

    def __repr__(self):
        return "Error(%s, origin %d, %r)" % (STATUS.get(self.kind, self.kind),
                                             self.origin, self.msg)


def _enc(v, out, tensors):
    if v is None:
        out.append(K_NONE)
    elif isinstance(v, bool):
        out += bytes([K_BOOL, int(v)])
    elif isinstance(v, int):
        out.append(K_INT)
        out += uvarint(zigzag(v))
    elif isinstance(v, float):
        out.append(K_DOUBLE)
        out += struct.pack("<d", v)
    elif isinstance(v, str):
        b = v.encode()
        out.append(K_STRING)
        out += uvarint(len(b)) + b + b"\0"
    elif isinstance(v, (bytes, bytearray)):
        out.append(K_BYTES)
        out += uvarint(len(v)) + bytes(v)
    elif isinstance(v, Tensor):
        out += bytes([K_TENSOR, v.dtype, len(v.shape)])
        for d in v.shape:
            out += uvarint(d)
        for s in v.strides:
            out += uvarint(s)
        out += uvarint(v.nbytes) + uvarint(len(tensors))
        tensors.append(v)
    elif isinstance(v, list):
        out.append(K_LIST)
        out += uvarint(len(v))
        for x in v:
            _enc(x, out, tensors)
    elif isinstance(v, tuple):
        out.append(K_TUPLE)
        out += uvarint(len(v))
        for x in v:
            _enc(x, out, tensors)
    elif isinstance(v, dict):
        out.append(K_DICT)
        out += uvarint(len(v))
        for k, x in v.items():
            kb = k.encode()
            out += uvarint(len(kb)) + kb + b"\0"
            _enc(x, out, tensors)
    elif isinstance(v, Rref):
        out.append(K_RREF)
        for x in v.f:
            out += uvarint(x)
    elif isinstance(v, Error):
        mb = v.msg.encode()
        out += bytes([K_ERROR, v.kind]) + uvarint(v.origin)
        out += uvarint(len(mb)) + mb + b"\0"
    else:
        raise TypeError(type(v))


def encode_value(v):
    """(payload bytes, [tensors in segment order])"""
    out, tensors = bytearray(), []
    _enc(v, out, tensors)
    return bytes(out), tensors


def header(type_, payload_len, total_len, seg_count=0, req_id=0, src=0, dst=0,
           timeout_ms=0, version=VERSION, flags=0, magic=MAGIC, reserved=0):
    return HDR.pack(magic, version, type_, flags, req_id, src, dst, timeout_ms,
                    payload_len, seg_count, reserved, total_len)


def align64(n):
    return (n + 63) & ~63


def frame(type_, value, req_id=0, src=0, dst=0, timeout_ms=0, version=VERSION):
    """A whole, well-formed frame carrying one value (tensors as segments)."""
    payload, tensors = encode_value(value)
    nseg = len(tensors)
    head = 48 + 8 * nseg + len(payload)
    if nseg:
        head = align64(head)
    body = bytearray()
    off = head
    for i, t in enumerate(tensors):
        if i:
            pad = align64(off) - off
            body += bytes(pad)
            off += pad
        body += t.data
        off += len(t.data)
    total = off
    out = bytearray(header(type_, len(payload), total, nseg, req_id, src, dst,
                           timeout_ms, version))
    for t in tensors:
        out += struct.pack("<Q", len(t.data))
    out += payload
    out += bytes(head - len(out))
    out += body
    return bytes(out)


def call_value(fn, args=(), kwargs=None):
    return (fn, tuple(args), dict(kwargs or {}))


# ---- decoding (what comes back) ---------------------------------------------


class _Rd:
    def __init__(self, b):
        self.b, self.i = b, 0

    def u8(self):
        self.i += 1
        return self.b[self.i - 1]

    def take(self, n):
        self.i += n
        if self.i > len(self.b):
            raise ValueError("truncated value")
        return self.b[self.i - n:self.i]

    def uv(self):
        n, sh = 0, 0
        while True:
            c = self.u8()
            n |= (c & 0x7F) << sh
            sh += 7
            if not c & 0x80:
                return n


def _dec(r):
    k = r.u8()
    if k == K_NONE:
        return None
    if k == K_BOOL:
        return bool(r.u8())
    if k == K_INT:
        z = r.uv()
        return (z >> 1) ^ -(z & 1)
    if k == K_DOUBLE:
        return struct.unpack("<d", r.take(8))[0]
    if k in (K_STRING, K_BYTES):
        n = r.uv()
        b = r.take(n)
        if k == K_STRING:
            r.take(1)
            return b.decode("utf-8", "replace")
        return bytes(b)
    if k == K_TENSOR:
        dt, nd = r.u8(), r.u8()
        shape = [r.uv() for _ in range(nd)]
        strides = [r.uv() for _ in range(nd)]
        nbytes, seg = r.uv(), r.uv()
        return ("tensor", dt, shape, strides, nbytes, seg)
    if k in (K_LIST, K_TUPLE):
        items = [_dec(r) for _ in range(r.uv())]
        return items if k == K_LIST else tuple(items)
    if k == K_DICT:
        d = {}
        for _ in range(r.uv()):
            n = r.uv()
            key = r.take(n).decode()
            r.take(1)
            d[key] = _dec(r)
        return d
    if k == K_RREF:
        return Rref(*[r.uv() for _ in range(5)])
    if k == K_ERROR:
        kind = r.u8()
        origin = r.uv()
        n = r.uv()
        msg = r.take(n).decode("utf-8", "replace")
        r.take(1)
        return Error(kind, origin, msg)
    raise ValueError("unknown tag %d" % k)


def decode_value(payload):
    return _dec(_Rd(payload))


class Frame:
    def __init__(self, raw):
        (self.magic, self.version, self.type, self.flags, self.req_id,
         self.src, self.dst, self.timeout_ms, self.payload_len,
         self.seg_count, _, self.total_len) = HDR.unpack_from(raw, 0)
        self.raw = raw
        po = 48 + 8 * self.seg_count
        self.payload = raw[po:po + self.payload_len]
        try:
            self.value = decode_value(self.payload)
        except Exception as e:  # noqa: BLE001 - report, do not crash
            self.value = ("undecodable", str(e))

    def __repr__(self):
        return "Frame(type %d v%d req %d src %d dst %d: %r)" % (
            self.type, self.version, self.req_id, self.src, self.dst,
            self.value)


# ---- the handshake (wire.md 5.1) ---------------------------------------------


def auth_msg(step, ctx, frm, to, nonce=bytes(32), mac=bytes(32)):
    return (b"TWA" + bytes([1, step, ctx, 0, 0]) + struct.pack("<II", frm, to)
            + nonce + mac)


def auth_mac(key, role, ctx, client_id, server_id, nc, ns):
    msg = (AUTH_LABEL + role + bytes([ctx]) +
           struct.pack("<II", client_id, server_id) + nc + ns)
    return hmac.new(key, msg, hashlib.sha256).digest()


def parse_auth(b):
    if not isinstance(b, bytes) or len(b) != 80 or b[:3] != b"TWA":
        return None
    frm, to = struct.unpack_from("<II", b, 8)
    return {"step": b[4], "ctx": b[5], "from": frm, "to": to,
            "nonce": b[16:48], "mac": b[48:80]}


class AuthFailed(Exception):
    pass


# ---- connections ---------------------------------------------------------------


class Conn:
    """One TCP connection to a worker (or the rendezvous), from
    ATTACKER_HOST unless told otherwise."""

    def __init__(self, port, host="127.0.0.1", src_host=ATTACKER_HOST,
                 timeout=5.0):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if src_host:
            self.s.bind((src_host, 0))
        self.s.settimeout(timeout)
        self.s.connect((host, port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.sent = []  # AUTH payloads we sent, for replay attacks

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, b):
        self.s.sendall(b)

    def try_send(self, b):
        """send; False if the peer has closed/reset the connection."""
        try:
            self.s.sendall(b)
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                return False
            try:
                d = self.s.recv(1 << 20)
            except (ConnectionResetError, OSError):
                d = b""
            if not d:
                self.eof = True
                return False
            self.buf += d
            return True

    def recv_frame(self, timeout=5.0):
        """The next frame, or None on timeout / close (then self.eof)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 48:
                total = struct.unpack_from("<Q", self.buf, 40)[0]
                if total < 48 or total > (64 << 20):
                    raise ValueError("peer sent a frame of %d bytes" % total)
                if len(self.buf) >= total:
                    raw, self.buf = self.buf[:total], self.buf[total:]
                    return Frame(raw)
            if not self._fill(deadline):
                return None

    def closed_within(self, timeout):
        """True if the peer closes the connection within timeout (frames it
        sends meanwhile are read and dropped)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                return False
            self.buf = b""
        return True

    # -- the handshake, as a client --
    def send_auth(self, step, ctx, frm, to, nonce=bytes(32), mac=bytes(32),
                  hdr_dst=None):
        m = auth_msg(step, ctx, frm, to, nonce, mac)
        self.sent.append(m)
        self.send(frame(AUTH, m, src=frm, dst=to if hdr_dst is None else hdr_dst))

    def handshake(self, self_id, server_id, key, ctx=CTX_DATA, timeout=3.0,
                  proof_anyway=False):
        """Run the client's side. Returns True when done, False when the
        server never answered the HELLO (a worker without the handshake).
        Raises AuthFailed (with the server's EXCEPTION, or our own finding
        that its MAC is wrong) otherwise. With proof_anyway, a PROOF is sent
        even when the server's MAC does not verify (an attacker's move)."""
        nc = os.urandom(32)
        hdr_dst = AUTH_HDR_DST_RDV if ctx == CTX_RDV else server_id
        self.send_auth(AUTH_HELLO, ctx, self_id, server_id, nc, hdr_dst=hdr_dst)
        f = self.recv_frame(timeout)
        if f is None:
            if self.eof:
                raise AuthFailed("server closed after HELLO")
            return False
        if f.type == EXCEPTION:
            raise AuthFailed("server refused HELLO: %r" % (f.value,))
        ch = parse_auth(f.value) if f.type == AUTH else None
        if ch is None or ch["step"] != AUTH_CHALLENGE:
            raise AuthFailed("expected CHALLENGE, got %r" % (f,))
        ns = ch["nonce"]
        want = auth_mac(key, b"S", ctx, self_id, server_id, nc, ns)
        good = hmac.compare_digest(want, ch["mac"])
        if not good and not proof_anyway:
            raise AuthFailed("server's MAC does not verify (another secret)")
        proof = auth_mac(key, b"C", ctx, self_id, server_id, nc, ns)
        self.send_auth(AUTH_PROOF, ctx, self_id, server_id, bytes(32), proof,
                       hdr_dst=hdr_dst)
        if not good:
            raise AuthFailed("server's MAC does not verify (another secret)")
        return True


def count_closed(conns, timeout):
    """How many of conns the peer closes within timeout (all watched at
    once; what they send meanwhile is read and dropped)."""
    deadline = time.monotonic() + timeout
    live = {c.s.fileno(): c for c in conns if not c.eof}
    p = select.poll()
    for fd in live:
        p.register(fd, select.POLLIN)
    while live:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in p.poll(min(left, 0.2) * 1000):
            c = live.get(fd)
            if c is None:
                continue
            try:
                d = c.s.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                c.eof = True
                del live[fd]
                p.unregister(fd)
    return sum(1 for c in conns if c.eof)


_auth_cache = {}


def auth_supported(port, self_id, server_id, key):
    """Does the worker at port speak the AUTH handshake? TW_SEC_AUTH=on/off
    overrides the probe (a HELLO; no answer within 3 s = no)."""
    mode = os.environ.get("TW_SEC_AUTH", "auto")
    if mode in ("on", "off"):
        return mode == "on"
    # One probe per binary: every worker of a run is the same build.
    if TW_WORKER not in _auth_cache:
        c = Conn(port)
        try:
            _auth_cache[TW_WORKER] = c.handshake(self_id, server_id, key)
        except AuthFailed:
            _auth_cache[TW_WORKER] = True
        finally:
            c.close()
        log("worker speaks the AUTH handshake: %s" % _auth_cache[TW_WORKER])
    return _auth_cache[TW_WORKER]


def member_conn(port, self_id, server_id, key, src_host=ATTACKER_HOST):
    """A connection that passed the handshake as self_id (a member that
    knows the secret: what an insider or a compromised member can do), or a
    plain one to a worker without the handshake."""
    need = auth_supported(port, self_id, server_id, key)
    c = Conn(port, src_host=src_host)
    if need:
        c.handshake(self_id, server_id, key)
    return c


def call_frame(fn, args=(), kwargs=None, req_id=1, src=1, dst=0, timeout_ms=0,
               version=VERSION):
    return frame(CALL, call_value(fn, args, kwargs), req_id, src, dst,
                 timeout_ms, version)


def wait_reply(c, req_id, timeout=5.0):
    """The response to req_id, skipping others; None on timeout/close."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        f = c.recv_frame(left)
        if f is None:
            return None
        if f.req_id == req_id and f.type in (RET, EXCEPTION):
            return f


# ---- processes ------------------------------------------------------------------


def log(*a):
    print("[%7.2f]" % (time.monotonic() - _T0), *a, flush=True)


_T0 = time.monotonic()


def raise_fd_limit(n=8192):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n)) if hard != resource.RLIM_INFINITY else max(soft, n)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    """user + system CPU time of a process so far."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def fd_count(pid):
    """Files a process holds open (its connections among them)."""
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return 0


def binary(env, default_rel):
    p = os.environ.get(env)
    if p:
        return p
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "../../build", default_rel))


TW_WORKER = binary("TW_WORKER", "tools/tw-worker")
TW_SEC_MEMBER = binary("TW_SEC_MEMBER", "tests/security/sec_member")
SECRET = b"sec-suite-secret-0123456789"


def _help_has(flag):
    try:
        out = subprocess.run([TW_WORKER, "--help"], capture_output=True,
                             timeout=10).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return flag in out


class Proc:
    """A child process whose output goes to a log file; stdin a pipe."""

    def __init__(self, name, argv, env_extra=None, stdin=False, nofile=None):
        env = dict(os.environ)
        # MALLOC_PERTURB_ (meson sets it) would touch what a worker mallocs
        # and so change its RSS.
        for k in ("TW_SECRET", "TW_SECRET_FILE", "MALLOC_PERTURB_"):
            env.pop(k, None)
        if ASAN:
            env.update(ASAN_ENV)
        env.update(env_extra or {})
        self.name = name
        self.logf = tempfile.NamedTemporaryFile(prefix="twsec-%s-" % name,
                                                suffix=".log", delete=False)
        self.p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE if stdin else self.logf,
                                  stderr=self.logf,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  preexec_fn=(lambda: resource.setrlimit(
                                      resource.RLIMIT_NOFILE, (nofile, nofile)))
                                  if nofile else None)
        self.pid = self.p.pid
        self._out = b""

    def alive(self):
        return self.p.poll() is None

    def kill(self):
        if self.alive():
            try:
                self.p.send_signal(signal.SIGKILL)
            except OSError:
                pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def log_text(self):
        try:
            with open(self.logf.name, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_log(self, needle, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.log_text()
            if needle in t:
                return t
            if not self.alive():
                return None
            time.sleep(0.05)
        return None

    # line protocol with sec_member
    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self._out:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return None
            d = os.read(fd, 4096)
            if not d:
                return None
            self._out += d
        line, self._out = self._out.split(b"\n", 1)
        return line.decode(errors="replace")

    def cmd(self, line, timeout=30.0):
        try:
            self.p.stdin.write((line + "\n").encode())
            self.p.stdin.flush()
        except OSError:
            return None
        return self.readline(timeout)


def worker_argv(name, rank, world, rdv_port, extra=()):
    return [TW_WORKER, "--name", name, "--rank", str(rank), "--world-size",
            str(world), "--rendezvous", "tcp://127.0.0.1:%d" % rdv_port,
            "--yield", "--init-timeout-ms", "60000"] + list(extra)


def secret_env(secret):
    """How a worker gets the secret: the environment (the agent reads
    TW_SECRET itself). Returns (env, extra argv)."""
    if secret is None:
        return {}, []
    return {"TW_SECRET": secret.decode()}, []


class RssWatch:
    """Samples a process's VmRSS every 20 ms on a thread; kills it past a
    hard cap so a failing test cannot take the machine down with it."""

    def __init__(self, pid, hard_cap_mb=None):
        if hard_cap_mb is None:
            hard_cap_mb = 3072 if ASAN else 1536
        self.pid, self.cap = pid, hard_cap_mb * 1024
        self.max_kb = rss_kb(pid) or 0
        self.base_kb = self.max_kb
        self.killed = False
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self._stop.is_set():
            r = rss_kb(self.pid)
            if r is None:
                return
            self.max_kb = max(self.max_kb, r)
            if r > self.cap and not self.killed:
                self.killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.02)

    def stop(self):
        self._stop.set()
        self.t.join(2)

    def grew_mb(self):
        return (self.max_kb - self.base_kb) / 1024.0


def _is_asan(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# Under AddressSanitizer: a small quarantine (freed memory would count as
# RSS), huge requests fail instead of aborting, leaks are not our subject
# here (workers are killed); bounds twice as wide for the shadow memory.
ASAN = _is_asan(TW_WORKER)
ASAN_ENV = {"ASAN_OPTIONS": "quarantine_size_mb=16:detect_leaks=0:"
            "allocator_may_return_null=1:abort_on_error=0",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
RSS_BOUND_MB = float(os.environ.get("TW_SEC_RSS_MB", "256")) * (2 if ASAN else 1)
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "ERROR: ThreadSanitizer")
SANITIZER_REPORTS = []


class Group:
    """w0 (a real tw-worker, the target, rank 0, hosting the rendezvous) and
    m1 (sec_member, rank 1, an honest member that calls w0 on command)."""

    def __init__(self, secret=SECRET, world=2, start_member=True,
                 w0_nofile=None, w0_args=()):
        raise_fd_limit()
        self.secret = secret
        self.key = secret or b""
        self.rdv_port = free_port()
        self.procs = []
        self.world = world
        env, extra = secret_env(secret)
        self.w0 = self.spawn("w0", worker_argv("w0", 0, world, self.rdv_port,
                                               list(extra) + list(w0_args)),
                             env, nofile=w0_nofile)
        self.m1 = None
        self.port = None
        if start_member:
            self.m1 = self.start_member("m1", 1)
            self.wait_ready()

    def spawn(self, name, argv, env, stdin=False, nofile=None):
        p = Proc(name, argv, env, stdin, nofile)
        self.procs.append(p)
        return p

    def start_member(self, name, rank, secret="group", init_timeout_ms=60000):
        sec = self.secret if secret == "group" else secret
        env, _ = secret_env(sec)
        return self.spawn(name, [TW_SEC_MEMBER, "--name", name, "--rank",
                                 str(rank), "--world-size", str(self.world),
                                 "--rendezvous",
                                 "tcp://127.0.0.1:%d" % self.rdv_port,
                                 "--target", "w0", "--init-timeout-ms",
                                 str(init_timeout_ms)], env, stdin=True)

    def wait_ready(self, timeout=60.0, line=None):
        """m1 joined (its "ready" line: read here unless given), w0 serves;
        learns w0's data port and makes m1's first call."""
        if line is None:
            line = self.m1.readline(timeout)
        if line is None or not line.startswith("ready"):
            raise SystemExit("FAIL: member m1 did not join: %r\n%s" %
                             (line, self.m1.log_text()))
        t = self.w0.wait_log("serving at tcp://", timeout)
        if t is None:
            raise SystemExit("FAIL: w0 did not start:\n" + self.w0.log_text())
        addr = t.split("serving at tcp://", 1)[1].split(",", 1)[0]
        self.port = int(addr.rsplit(":", 1)[1])
        log("group up: w0 pid %d data port %d, rendezvous %d; m1 pid %d" %
            (self.w0.pid, self.port, self.rdv_port, self.m1.pid))
        # a first call: m1's connection to w0 is up before any attack
        r = self.m1.cmd("ping")
        if r != "ok 42":
            raise SystemExit("FAIL: first ping before any attack: %r" % r)

    def conn(self, self_id=1):
        """An authenticated connection to w0's data port as self_id."""
        return member_conn(self.port, self_id, 0, self.key)

    def watch(self):
        return RssWatch(self.w0.pid)

    def close(self):
        for p in self.procs:
            p.kill()
        keep = os.environ.get("TW_SEC_KEEP")
        for p in self.procs:
            t = p.log_text()
            if any(m in t for m in SANITIZER_MARKS):
                # print it whole: scripts/test.sh reads the test log
                log("sanitizer report from %s (pid %d):\n%s" %
                    (p.name, p.pid, t))
                SANITIZER_REPORTS.append(p.name)
            if keep:
                log("log of %s: %s" % (p.name, p.logf.name))
            else:
                try:
                    os.unlink(p.logf.name)
                except OSError:
                    pass


# ---- checks ------------------------------------------------------------------------


class Checks:
    """Collects named checks; a test script runs several and exits 1 if any
    failed, printing which (so one run tells every outcome)."""

    def __init__(self):
        self.failed = []
        self.passed = []

    def check(self, name, ok, detail=""):
        (self.passed if ok else self.failed).append(name)
        log("%s %s%s" % ("PASS" if ok else "FAIL", name,
                         (": " + detail) if detail else ""))
        return ok

    def run(self, name, fn):
        """fn() runs a case and calls check(); an exception is a failure.
        Arguments on the command line pick cases by name."""
        if len(sys.argv) > 1 and name not in sys.argv[1:]:
            return
        log("== %s" % name)
        try:
            fn()
        except SystemExit as e:
            self.check(name, False, str(e))
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            self.check(name, False, "%s: %s" % (type(e).__name__, e))

    def survived(self, g, watch, name, bound_mb=None):
        """The standard verdict after an attack on g.w0."""
        bound = RSS_BOUND_MB if bound_mb is None else bound_mb
        if watch is not None:
            watch.stop()
        alive = g.w0.alive() and not (watch and watch.killed)
        self.check(name + ": w0 alive", alive,
                   "" if alive else "w0 died (rc %r)%s\n%s" %
                   (g.w0.p.poll(), " killed by the RSS watchdog" if watch and
                    watch.killed else "", g.w0.log_text()[-2000:]))
        if watch is not None:
            self.check(name + ": w0 RSS bounded", watch.grew_mb() <= bound,
                       "grew %.0f MiB (bound %.0f, base %.0f MiB)" %
                       (watch.grew_mb(), bound, watch.base_kb / 1024))
        r = g.m1.cmd("ping 10000") if alive else None
        self.check(name + ": member's call works", r == "ok 42", repr(r))

    def finish(self):
        if SANITIZER_REPORTS:
            self.check("no sanitizer reports from any worker", False,
                       ", ".join(SANITIZER_REPORTS))
        log("%d passed, %d failed%s" % (len(self.passed), len(self.failed),
                                        (": " + ", ".join(self.failed))
                                        if self.failed else ""))
        sys.exit(1 if self.failed else 0)
