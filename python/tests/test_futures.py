"""tensorwire.futures.Future made by hand, in one process (no group)."""

import subprocess
import sys

import pytest

pytest.importorskip("tensorwire._C")

# A signal handler (or a finalizer the collector runs) completes a future
# while the interrupted thread is blocking on another one for the first
# time: Future._block made its Condition under the module-wide _state lock,
# running Python code there, so the handler's set_result waited for a lock
# its own thread held, for ever.
_HANDLER = r"""
import signal, threading, time
from tensorwire.futures import Future

def handler(sig, frame):
    Future().set_result(1)

signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
end = time.monotonic() + 2
n = 0
while time.monotonic() < end:
    f = Future()
    threading.Timer(0.0002, f.set_result, (n,)).start()
    assert f.wait() == n
    n += 1
signal.setitimer(signal.ITIMER_REAL, 0)
print("ok", n)
"""


def test_a_signal_handler_completing_a_future_does_not_deadlock():
    try:
        p = subprocess.run([sys.executable, "-c", _HANDLER],
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("deadlocked: a handler's set_result waited for "
                    "futures._state held by its own thread")
    assert p.returncode == 0 and p.stdout.startswith("ok"), \
        p.stdout + p.stderr[-2000:]
