"""Futures: torch.futures.Future's API (wait, value, done, then,
add_done_callback, set_result, set_exception) and wait_all / collect_all.

A future backed by a call waits for it with the GIL released; callbacks of
such a future run on the agent's Python worker threads, never on a run
loop. A future made by hand (``Future()``) runs its callbacks in the
thread that completes it, as torch's does."""

import threading

__all__ = ["Future", "wait_all", "collect_all"]


class Future:
    def __init__(self, *, _cf=None, _map=None):
        self._cond = threading.Condition()
        self._done = False
        self._value = None
        self._exc = None
        self._callbacks = []
        self._cf = _cf
        self._map = _map
        self._srcs = ()  # futures this one waits for (then, collect_all)
        if _cf is not None:
            _cf.add_done_callback(lambda cf: self._settle_from_c())

    # -- completion --------------------------------------------------------
    def _settle_from_c(self):
        with self._cond:
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
        with self._cond:
            if self._done:
                return False
            self._value, self._exc, self._done = value, exc, True
            callbacks, self._callbacks = self._callbacks, []
            self._cond.notify_all()
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
        with self._cond:
            if self._done:
                return True
        return self._cf is not None and self._cf.done()

    def wait(self):
        if self._cf is not None:
            # Wait on the call itself (GIL released), and settle here:
            # waiting must not need a free Python worker.
            self._cf.wait(-1)
            self._settle_from_c()
        for src in self._srcs:
            # A then()/collect_all future: its sources settled here run
            # its callbacks in this thread, so waiting needs no worker.
            try:
                src.wait()
            except BaseException:
                pass
        with self._cond:
            while not self._done:
                self._cond.wait()
        if self._exc is not None:
            raise self._exc
        return self._value

    def value(self):
        if not self.done():
            raise RuntimeError("Future is not completed yet")
        return self.wait()

    def add_done_callback(self, callback):
        with self._cond:
            if not self._done:
                self._callbacks.append(callback)
                return
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


def wait_all(futures):
    """Wait for every future and return their values; the first failure
    (the first to fail, in time) raises at once without waiting for the
    rest, as torch's wait_all. Call futures wait with the GIL released."""
    from tensorwire import _C
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
