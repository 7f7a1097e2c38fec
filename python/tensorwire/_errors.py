"""Remote exceptions: a Python exception to (kind, message) and back.

A Python function that raises on the callee is answered with an EXCEPTION
frame whose ERROR value carries a kind (a tw_status, status.h), the origin
worker id and a message (docs/wire.md §4.4).  This module makes that kind
and message on the callee (``to_wire``) and the exception the caller
raises (``from_wire``).

What the caller gets
--------------------
ValueError, TypeError, KeyError, IndexError, AttributeError, StopIteration
and RuntimeError come back as themselves.  Any other type comes back as a
RuntimeError whose message starts with the remote type's name.  A subclass
of ValueError or TypeError that is not one of those comes back as its
base (ValueError / TypeError, still caught by ``except ValueError``), its
message starting with the remote type's name like any other.

Every message says which worker raised it and carries the remote
traceback, in torch.distributed.rpc's words (torch 1.13, internal.py
``_run_function``)::

    On WorkerInfo(id=1, name=w1):
    KeyError('k')
    Traceback (most recent call last):
      File "...", line 5, in f
        ...
    KeyError: 'k'

that is ``f"On {worker_info}:\\n{exc!r}\\n{traceback}"``, where the worker
info prints as torch's WorkerInfo does.  (torch's caller also runs the text
through ``decode("unicode_escape")``, which garbles non-ASCII text; this
module does not.)

The wire format of the message
------------------------------
Only three kinds exist for Python errors: TW_EVALUE for ValueError (and
subclasses), TW_ETYPE for TypeError (and subclasses), TW_ERUNTIME for
everything else.  So the message names the Python type itself, in the
form Python prints an exception, ``<type>: <text>``::

    <type>: On WorkerInfo(id=<id>, name=<name>):\\n<repr>\\n<traceback>

``<type>`` is the type's ``__qualname__`` for builtins ("KeyError",
"StopIteration") and ``<module>.<qualname>`` otherwise
("json.decoder.JSONDecodeError", "mymod.MyError"): it matches
``[A-Za-z_][A-Za-z0-9_.]*``.  ``parse(message)`` splits it back into
(type name, worker id, worker name, text), where text starts at "On
WorkerInfo"; it returns None for any message not in this form (errors
raised by tensorwire itself, by a builtin operator, a timeout), which
``from_wire`` turns into an exception by kind alone.  A C program reading
the ERROR value sees the same text a Python user would, type first.

The exception's message (its ``args[0]``): the text (from "On WorkerInfo")
for the types kept; the whole wire message, type name first, for the
RuntimeError that stands for another type -- the text torch 1.13 shows
for such a type ("OSError: On WorkerInfo(id=0, name=w0):\\n...").
(KeyError's ``str()`` quotes its argument, as Python's KeyError always
does; ``args[0]`` is the plain text.)
"""

import builtins
import re
import traceback

__all__ = [
    "KEPT",
    "worker_info",
    "type_name",
    "format_remote",
    "to_wire",
    "parse",
    "from_wire",
]

# include/tensorwire/status.h; values are part of the wire format.
TW_OK = 0
TW_EINVAL = 1
TW_ENOMEM = 2
TW_ENOSPC = 3
TW_EOVERFLOW = 4
TW_EPROTO = 5
TW_EVERSION = 6
TW_ETIMEDOUT = 7
TW_EUNREACHABLE = 8
TW_ESHUTDOWN = 9
TW_ENOFUNC = 10
TW_EBADARGS = 11
TW_ETYPE = 12
TW_EVALUE = 13
TW_ERUNTIME = 14
TW_EAUTH = 15
TW_EBUSY = 16
TW_ENOTSUP = 17
TW_EIO = 18
TW_ENOENT = 19

# The types that keep their type across the wire (issue 14).
KEPT = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    StopIteration,
    RuntimeError,
)
_KEPT_BY_NAME = {t.__qualname__: t for t in KEPT}

_HEADER = re.compile(
    r"\A([A-Za-z_][A-Za-z0-9_.]*): "
    r"(On WorkerInfo\(id=(\d+), name=([^\n]*)\):\n)"
)


def worker_info(name, worker_id):
    """A worker as torch's WorkerInfo prints: WorkerInfo(id=1, name=w1)."""
    return f"WorkerInfo(id={int(worker_id)}, name={name})"


def type_name(tp):
    """The name the wire carries for an exception type."""
    mod = getattr(tp, "__module__", None)
    qual = getattr(tp, "__qualname__", tp.__name__)
    if mod in (None, "builtins") and getattr(builtins, qual, None) is tp:
        return qual
    return f"{mod}.{qual}"


def _safe(fn, exc, what):
    # A user's exception may break its own __repr__/__str__; the caller
    # still deserves the type, the worker and the traceback.
    try:
        return fn(exc)
    except Exception as e:  # noqa: BLE001
        return f"<{what} of {type(exc).__name__} failed: {type(e).__name__}>"


def format_remote(exc, worker_name, worker_id):
    """torch's text for exc raised on a worker: header, repr, traceback."""
    tb = _safe(
        lambda e: "".join(
            traceback.format_exception(type(e), e, e.__traceback__)),
        exc, "traceback")
    rep = _safe(repr, exc, "repr")
    return f"On {worker_info(worker_name, worker_id)}:\n{rep}\n{tb}"


def _kind_of(exc):
    if isinstance(exc, ValueError):
        return TW_EVALUE
    if isinstance(exc, TypeError):
        return TW_ETYPE
    return TW_ERUNTIME


def to_wire(exc, worker_name, worker_id):
    """(kind, message) for an exception raised on this worker.

    Call it where the exception is handled (its __traceback__ set) and
    pass this worker's name and id.
    """
    text = format_remote(exc, worker_name, worker_id)
    return _kind_of(exc), f"{type_name(type(exc))}: {text}"


def parse(message):
    """(type name, worker id, worker name, text) of a message to_wire made,
    text starting at "On WorkerInfo"; None for any other message."""
    m = _HEADER.match(message)
    if m is None:
        return None
    return m.group(1), int(m.group(3)), m.group(4), message[m.start(2):]


def from_wire(kind, message, origin_name=None, origin_id=None):
    """The exception (not raised) for an ERROR value received.

    kind: the ERROR's tw_status; message: its text; origin_name and
    origin_id: the worker it came from, used only to head a message that
    to_wire did not make (a builtin operator's failure, tensorwire's own)
    the way a Python error is headed.
    """
    parsed = parse(message)
    if parsed is not None:
        name, _, _, text = parsed
        tp = _KEPT_BY_NAME.get(name)
        if tp is not None:
            return tp(text)
        if kind == TW_EVALUE:
            return ValueError(message)
        if kind == TW_ETYPE:
            return TypeError(message)
        return RuntimeError(message)
    if origin_name is not None:
        wid = -1 if origin_id is None else origin_id
        message = f"On {worker_info(origin_name, wid)}:\n{message}"
    if kind == TW_EVALUE:
        return ValueError(message)
    if kind == TW_ETYPE:
        return TypeError(message)
    return RuntimeError(message)
