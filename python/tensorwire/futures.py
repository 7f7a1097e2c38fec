"""Futures: torch.futures.Future's API (wait, value, done, then,
add_done_callback, set_result, set_exception) and wait_all / collect_all.

A future backed by a call waits for it with the GIL released; callbacks of
such a future run on the agent's Python worker threads, never on a run
loop. A future made by hand (``Future()``) runs its callbacks in the
thread that completes it, as torch's does."""

import threading

from tensorwire import _C

__all__ = ["Future", "wait_all", "collect_all"]


# Guards every future's completion state; held only for a few loads and
# stores, never while a callback runs or a thread waits.
_state = threading.Lock()


class Future:
    # A call's future costs the caller no hand-off: only when a callback is
    # added is the call's completion hooked (a job for a Python worker);
    # wait() and done() settle it in the calling thread otherwise.
    __slots__ = ("_done", "_value", "_exc", "_callbacks", "_cf", "_map",
                 "_srcs", "_cond", "_hooked", "__weakref__")

    def __init__(self, *, _cf=None, _map=None):
        self._done = False
        self._value = None
        self._exc = None
        self._callbacks = None
        self._cf = _cf
        self._map = _map
        self._srcs = ()  # futures this one waits for (then, collect_all)
        self._cond = None  # made by the first thread that blocks on it
        self._hooked = False

    # -- completion --------------------------------------------------------
    def _settle_from_c(self):
        if self._done:
            return
        value = exc = None
        try:
            ok, out = self._cf.outcome()
            if self._map is not None:
                value = self._map(ok, out)
            elif ok:
                value = out
            else:
                from tensorwire.rpc import _raise_remote
                _raise_remote(out)
        except BaseException as e:  # the call's error, as an exception
            exc = e
        self._finish(value, exc)

    def _finish(self, value, exc):
        with _state:
            if self._done:
                return False
            self._value, self._exc, self._done = value, exc, True
            callbacks, self._callbacks = self._callbacks, None
            cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()
        if callbacks:
            for cb in callbacks:
                self._run(cb)
        return True

    def _run(self, cb):
        try:
            cb(self)
        except Exception:  # torch logs a callback's error and goes on
            import traceback
            traceback.print_exc()

    def set_result(self, result):
        if not self._finish(result, None):
            raise RuntimeError("Future can only be marked completed once")

    def set_exception(self, exc):
        if not isinstance(exc, BaseException):
            raise TypeError("set_exception needs an exception")
        if not self._finish(None, exc):
            raise RuntimeError("Future can only be marked completed once")

    # -- reading -----------------------------------------------------------
    def done(self):
        if self._done:
            return True
        return self._cf is not None and self._cf.done()

    def wait(self):
        if not self._done:
            cf = self._cf
            if cf is not None:
                # Wait on the call itself (GIL released), and settle here:
                # waiting must not need a free Python worker.
                cf.wait(-1)
                self._settle_from_c()
            for src in self._srcs:
                # A then()/collect_all future: its sources settled here
                # run its callbacks in this thread, so waiting needs no
                # worker.
                try:
                    src.wait()
                except BaseException:
                    pass
            if not self._done:
                self._block()
        if self._exc is not None:
            raise self._exc
        return self._value

    def _block(self):
        # Made before taking _state: no Python code may run under it (a
        # signal handler or a finalizer run there that completes a future
        # would wait for _state, held by its own thread, for ever).
        new = None
        if self._cond is None:
            new = threading.Condition(threading.Lock())
        with _state:
            if self._done:
                return
            if self._cond is None:
                self._cond = new
            cond = self._cond
        # A Python worker waiting here lets the others take the queue
        # (what completes this may be a job queued behind it).
        _C._worker_blocked(True)
        try:
            with cond:
                while not self._done:
                    cond.wait()
        finally:
            _C._worker_blocked(False)

    def value(self):
        if not self.done():
            raise RuntimeError("Future is not completed yet")
        return self.wait()

    def add_done_callback(self, callback):
        if not self._done and self._cf is not None and self._cf.done():
            # The call is over: settled here, the callback runs inline
            # as torch's does for a completed future (a worker's job
            # would run it later, and never after shutdown).
            self._settle_from_c()
        hook = False
        fresh = [] if self._callbacks is None else None  # see _block
        with _state:
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = fresh if fresh is not None else []
                self._callbacks.append(callback)
                hook = self._cf is not None and not self._hooked
                self._hooked = self._hooked or hook
                run = False
            else:
                run = True
        if hook:
            # Settled on a Python worker when the call completes (at once
            # if it already has).
            self._cf.add_done_callback(_settler(self))
        if run:
            self._run(callback)

    def then(self, callback):
        out = Future()
        out._srcs = (self,)

        def chain(fut):
            try:
                out.set_result(callback(fut))
            except BaseException as e:
                out.set_exception(e)

        self.add_done_callback(chain)
        return out

    def __repr__(self):
        return "tensorwire.futures.Future(done=%s)" % self.done()


def _settler(fut):
    return lambda cf: fut._settle_from_c()


def wait_all(futures):
    """Wait for every future and return their values; the first failure
    (the first to fail, in time) raises at once without waiting for the
    rest, as torch's wait_all. Call futures wait with the GIL released."""
    futures = list(futures)
    cfs = [f._cf for f in futures if f._cf is not None]
    if len(cfs) == len(futures) and not _C.wait_all(cfs):
        for f in futures:
            if f._cf.done():
                f._settle_from_c()
                if f._exc is not None:
                    raise f._exc
    return [f.wait() for f in futures]


def collect_all(futures):
    """A future completed, once every one of futures is, with the list of
    them (failed ones included), as torch's collect_all."""
    futures = list(futures)
    out = Future()
    out._srcs = tuple(futures)
    if not futures:
        out.set_result([])
        return out
    left = [len(futures)]
    lock = threading.Lock()

    def one(_):
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            out.set_result(futures)

    for f in futures:
        f.add_done_callback(one)
    return out
