"""Distributed autograd's state on one worker: the contexts it holds in
Python, the current one of each thread, and the send and recv functions
recorded in each (docs/autograd.md).

The agent (C) owns which contexts exist: ids, the workers each reached,
cleanup across them. Python keeps, per context held here, what torch's
DistAutogradContext keeps: send functions by message id (the tensors a
message or an answer carried that require grad), recv functions (the
tensors received that require grad, each standing for its sender's send
function) and the gradients of the leaves. An ended context's Python state
is dropped when the agent says it ended (a cleanup from a peer, a dead
creator): its release hook only counts, and sweep() compares."""

import threading

from tensorwire import _C

_contexts = {}              # context id -> Ctx
_tls = threading.local()    # .id: the thread's current context
_seen = [0]                 # _C.ag_releases() at the last sweep


def no_context(cid):
    """torch's error for a context this worker does not hold."""
    return RuntimeError("Could not find autograd context with id: %d" % cid)


class Recv:
    """A message received in a context: who sent it (its send function's
    message id, on worker peer) and which of its n tensors are recv
    leaves here."""

    __slots__ = ("peer", "msg", "n", "tensors", "__weakref__")

    def __init__(self, peer, msg, n):
        self.peer, self.msg, self.n = peer, msg, n
        self.tensors = []   # kept: their ids key Ctx.recvs


class Ctx:
    __slots__ = ("id", "lock", "sends", "recvs", "grads")

    def __init__(self, cid):
        self.id = cid
        self.lock = threading.Lock()
        self.sends = {}     # message id -> [tensor or None per tensor]
        self.recvs = {}     # id(tensor) -> (Recv, index)
        self.grads = {}     # leaf tensor -> its gradient in this context

    def add_send(self, msg, tensors):
        with self.lock:
            self.sends[msg] = tensors

    def add_recv(self, rec, index, tensor):
        with self.lock:
            rec.tensors.append(tensor)
            self.recvs[id(tensor)] = (rec, index)

    def accumulate(self, leaf, grad):
        with self.lock:
            old = self.grads.get(leaf)
            self.grads[leaf] = grad if old is None else old + grad


def current():
    """The calling thread's context id, or None."""
    return getattr(_tls, "id", None)


def set_current(cid):
    """Make cid the thread's current context; the previous one."""
    prev = getattr(_tls, "id", None)
    _tls.id = cid
    return prev


def sweep():
    """Drop the Python state of the contexts that ended here since the
    last look (their cleanup came from a peer, or their creator died)."""
    n = _C.ag_releases()
    if n == _seen[0]:
        return
    _seen[0] = n
    for cid in list(_contexts):
        if not _C.ag_context_valid(cid):
            _contexts.pop(cid, None)


def new(cid):
    ctx = Ctx(cid)
    _contexts[cid] = ctx
    return ctx


def get(cid):
    """The context cid held here (its Python state made on first use: a
    peer's context reaches this worker with its first message), else
    torch's RuntimeError."""
    sweep()
    ctx = _contexts.get(cid)
    if ctx is not None:
        return ctx
    if not _C.ag_context_valid(cid):
        raise no_context(cid)
    return _contexts.setdefault(cid, Ctx(cid))


def drop(cid):
    _contexts.pop(cid, None)


def count():
    """Contexts whose Python state this worker still keeps."""
    sweep()
    return len(_contexts)
