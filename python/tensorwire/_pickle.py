"""The pickler of Python calls: bytes for the payload, tensors beside it.

A Python call (function, args, kwargs) and its result travel as a pickle
plus a table of out-of-band items, as torch.distributed.rpc's internal
pickler does:

    data, items = dumps(obj)      # data: bytes (protocol 5), items: list
    obj2 = loads(data, items)

Every torch tensor and numpy array met anywhere in the object graph is
*lifted*: the pickle holds only a persistent id naming its slot in
``items``, and ``items[i]`` is the very object (no copy, no
``.contiguous()``, no ``.numpy()``).  The C side sends each item as a
tensor segment (docs/wire.md), strides and all, so the bytes are never
copied into the pickle.  ``loads`` puts back the objects it is given, in
their slots; the persistent id records which kind the sender had, so a
torch tensor comes back a torch tensor and a numpy array a numpy array
(an item of the other kind, or any object with ``__dlpack__``, is
converted without a copy; see ``_as_kind``).

The same object met twice is lifted once, and comes back as one object
twice (identity kept).  Two *different* tensors that share storage (views)
travel as two segments and come back unshared, as in torch's RPC.

Persistent ids are ``("torch", i)``, ``("numpy", i)``, ``("rref", i)`` and,
for a torch.Tensor subclass, ``("torch", i, cls, state)``; ``loads``
refuses any other (the pickle comes from a peer).

What is lifted, what is refused, and why
----------------------------------------
Lifted: ``torch.Tensor`` of exactly that type, and ``numpy.ndarray`` of
exactly that type, on the CPU, strided, in a dtype the wire carries
(include/tensorwire/tensor.h): bool, uint8, int8, int16, int32, int64,
float16, bfloat16 (torch only: numpy has none), float32, float64; at most
8 dims (TW_TENSOR_MAX_DIMS).

Refused with a TypeError or ValueError raised by ``dumps`` (never a silent
copy into the pickle):

- complex64/complex128 (and torch's quantized, complex32 and numpy's
  uint16/32/64, longdouble, object, string, structured and datetime
  dtypes): the wire has no dtype for them.  For complex, send
  ``torch.view_as_real(t)`` and rebuild with ``torch.view_as_complex``.
- tensors not on the CPU, sparse or other non-strided layouts, and
  torch tensors with the lazy conjugate or negative bit set: there are no
  plain CPU bytes to point at without materialising a copy.
- numpy arrays with negative strides (``a[::-1]``): tensorwire strides are
  never negative (tensor.h); ``np.ascontiguousarray`` makes a copy you
  choose to make.
- numpy arrays in big-endian byte order: the wire is little-endian.
- more than 8 dims.

Subclasses.  A torch.Tensor subclass with its own ``__reduce_ex__``
(``torch.nn.Parameter``) pickles through it; Parameter's puts a plain
tensor inside, which is lifted, so Parameters and modules travel
zero-copy too.  Any other torch.Tensor subclass is lifted as a plain
tensor viewing the same memory (``as_subclass(torch.Tensor)``), its class
and instance ``__dict__`` recorded in the persistent id
(``("torch", i, cls, state)``) and put back by ``loads``
(``as_subclass(cls)``); torch's own reducer would have copied its storage
into the pickle.  numpy subclasses (np.matrix, masked arrays) carry state
numpy's reducer copies with the bytes, so ``dumps`` refuses them (view
them as ``np.ndarray`` first).

Functions
---------
Functions, classes and methods pickle *by reference* (module and
qualified name), as pickle and torch do: the callee imports them, and no
code travels.  A lambda or a function defined inside another cannot be
found by name; ``dumps`` raises ``pickle.PicklingError`` with pickle's
own text (what torch's RPC shows) followed by what to do.  When the
callee cannot find the name, ``loads`` raises AttributeError saying the
function must be defined in a module both workers import.

RRefs
-----
RRef objects are lifted too, so the C side can send them as RREF values
(a fork, docs/wire.md §5) rather than bytes inside the pickle.  The C
extension installs the hooks once at import time::

    tensorwire._pickle.set_rref_hooks(types, reducer=None, receiver=None)

``types``: the RRef class(es) to lift.  ``reducer(rref) -> item``: what
goes in the items list for it (default: the RRef object itself).
``receiver(item) -> object``: what ``loads`` puts in the graph for an
item in an "rref" slot (default: the item itself).  Until hooks are set,
no RRef type is known and nothing is lifted as an RRef.

Safety: unpickling runs code named by the pickle.  tensorwire only
unpickles what authenticated members of the group sent (DESIGN.md, Trust),
exactly the trust torch places in its peers; never feed ``loads`` bytes
from elsewhere.
"""

import io
import pickle

try:
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is a dependency in practice
    _np = None

try:
    import torch as _torch
except ImportError:  # pragma: no cover
    _torch = None

__all__ = ["dumps", "loads", "set_rref_hooks", "PROTOCOL", "MAX_DIMS"]

PROTOCOL = 5
MAX_DIMS = 8  # TW_TENSOR_MAX_DIMS, include/tensorwire/tensor.h

_KIND_TORCH = "torch"
_KIND_NUMPY = "numpy"
_KIND_RREF = "rref"

# dtypes the wire carries (tensor.h's tw_dtype), by library.
if _torch is not None:
    _TORCH_DTYPES = frozenset(
        {
            _torch.bool,
            _torch.uint8,
            _torch.int8,
            _torch.int16,
            _torch.int32,
            _torch.int64,
            _torch.float16,
            _torch.bfloat16,
            _torch.float32,
            _torch.float64,
        }
    )
    _Tensor = _torch.Tensor
else:  # pragma: no cover
    _TORCH_DTYPES = frozenset()
    _Tensor = None

if _np is not None:
    _NUMPY_DTYPES = frozenset(
        _np.dtype(n)
        for n in (
            "bool",
            "uint8",
            "int8",
            "int16",
            "int32",
            "int64",
            "float16",
            "float32",
            "float64",
        )
    )
    _ndarray = _np.ndarray
else:  # pragma: no cover
    _NUMPY_DTYPES = frozenset()
    _ndarray = None

_SUPPORTED = (
    "bool, uint8, int8, int16, int32, int64, float16, bfloat16 (torch only), "
    "float32, float64"
)

# RRef hooks, set by the C extension (set_rref_hooks).
_rref_types = ()
_rref_reducer = None
_rref_receiver = None


def set_rref_hooks(types, reducer=None, receiver=None):
    """Say which classes are RRefs and how to lift and restore them.

    types: a class or tuple of classes (empty: forget the hooks).
    reducer(rref) -> item placed in dumps' items list (default: rref).
    receiver(item) -> object loads puts in the graph (default: item).
    """
    global _rref_types, _rref_reducer, _rref_receiver
    if isinstance(types, type):
        types = (types,)
    types = tuple(types)
    for t in types:
        if not isinstance(t, type):
            raise TypeError(f"set_rref_hooks: {t!r} is not a class")
    for name, fn in (("reducer", reducer), ("receiver", receiver)):
        if fn is not None and not callable(fn):
            raise TypeError(f"set_rref_hooks: {name} must be callable or None")
    _rref_types, _rref_reducer, _rref_receiver = types, reducer, receiver


def _check_torch(t):
    if t.dtype not in _TORCH_DTYPES:
        hint = (
            " (send torch.view_as_real(t) and rebuild with "
            "torch.view_as_complex)"
            if t.is_complex()
            else ""
        )
        raise TypeError(
            f"tensorwire cannot send a tensor of dtype {t.dtype}: the wire "
            f"carries {_SUPPORTED}{hint}"
        )
    if t.layout != _torch.strided:
        raise TypeError(
            f"tensorwire cannot send a tensor with layout {t.layout}: only "
            "strided tensors travel as segments (call .to_dense() first)"
        )
    if t.device.type != "cpu":
        raise ValueError(
            f"tensorwire cannot send a tensor on device '{t.device}': "
            "tensors travel from CPU memory (call .cpu() first)"
        )
    if t.is_conj() or t.is_neg():
        raise ValueError(
            "tensorwire cannot send a tensor with its lazy conjugate or "
            "negative bit set: call .resolve_conj() / .resolve_neg() first"
        )
    if t.dim() > MAX_DIMS:
        raise ValueError(
            f"tensorwire cannot send a tensor of {t.dim()} dims: at most "
            f"{MAX_DIMS}"
        )


def _check_numpy(a):
    dt = a.dtype
    if dt not in _NUMPY_DTYPES:
        if dt.byteorder == ">" and dt.newbyteorder("=") in _NUMPY_DTYPES:
            raise ValueError(
                f"tensorwire cannot send a big-endian array (dtype "
                f"{dt.str}): the wire is little-endian (a.astype("
                f"a.dtype.newbyteorder('<')) converts it)"
            )
        hint = (
            " (send a.view(a.real.dtype), the real and imaginary parts as "
            "a trailing dim of 2)"
            if dt.kind == "c"
            else ""
        )
        raise TypeError(
            f"tensorwire cannot send a numpy array of dtype {dt}: the wire "
            f"carries {_SUPPORTED}{hint}"
        )
    if a.ndim > MAX_DIMS:
        raise ValueError(
            f"tensorwire cannot send an array of {a.ndim} dims: at most "
            f"{MAX_DIMS}"
        )
    if any(s < 0 for s in a.strides):
        raise ValueError(
            f"tensorwire cannot send an array with negative strides "
            f"{a.strides}: tensorwire strides are never negative "
            "(np.ascontiguousarray(a) makes a copy)"
        )


class _Pickler(pickle.Pickler):
    """Protocol-5 pickler that lifts tensors, arrays and RRefs into items."""

    def __init__(self, file, items):
        super().__init__(file, protocol=PROTOCOL)
        self._items = items
        self._slots = {}  # id(obj) -> persistent id; items keeps obj alive
        self._keep = []  # subclass tensors, whose items are views of them

    def _lift(self, obj, kind):
        pid = self._slots.get(id(obj))
        if pid is None:
            item = obj
            if kind is _KIND_RREF and _rref_reducer is not None:
                item = _rref_reducer(obj)
            pid = (kind, len(self._items))
            self._items.append(item)
            self._slots[id(obj)] = pid
        return pid

    def _lift_subclass(self, obj):
        pid = self._slots.get(id(obj))
        if pid is None:
            self._keep.append(obj)  # its id must stay its own until done
            state = getattr(obj, "__dict__", None) or None
            pid = (_KIND_TORCH, len(self._items), type(obj), state)
            self._items.append(obj.as_subclass(_Tensor))
            self._slots[id(obj)] = pid
        return pid

    def persistent_id(self, obj):
        t = type(obj)
        if t is _Tensor:
            _check_torch(obj)
            return self._lift(obj, _KIND_TORCH)
        if t is _ndarray:
            _check_numpy(obj)
            return self._lift(obj, _KIND_NUMPY)
        if _Tensor is not None and isinstance(obj, _Tensor):
            if t.__reduce_ex__ is not _Tensor.__reduce_ex__:
                return None  # Parameter: its reducer holds a plain tensor
            _check_torch(obj)
            return self._lift_subclass(obj)
        if _rref_types and isinstance(obj, _rref_types):
            return self._lift(obj, _KIND_RREF)
        if _ndarray is not None and isinstance(obj, _ndarray):
            raise TypeError(
                f"tensorwire does not send numpy array subclass "
                f"{t.__module__}.{t.__qualname__}: numpy would copy its "
                "bytes into the pickle (send a.view(np.ndarray))"
            )
        return None


def dumps(obj):
    """Pickle obj: (bytes, items), tensors/arrays/RRefs lifted into items.

    Raises pickle.PicklingError for what cannot be pickled by reference
    (lambdas, local functions), TypeError/ValueError for tensors the wire
    cannot carry (see the module docstring).
    """
    f = io.BytesIO()
    items = []
    p = _Pickler(f, items)
    try:
        p.dump(obj)
    except (pickle.PicklingError, AttributeError) as e:
        text = str(e)
        if "<lambda>" in text or "<locals>" in text or "local object" in text:
            raise pickle.PicklingError(
                f"{text}: tensorwire pickles functions by reference (module "
                "and qualified name), as torch.distributed.rpc does; define "
                "the function at the top level of a module both workers "
                "import"
            ) from e
        raise
    return f.getvalue(), items


def _as_kind(obj, kind, index):
    """items[index] as the kind the sender had, without copying bytes."""
    if kind == _KIND_TORCH:
        if isinstance(obj, _Tensor):
            return obj
        if _ndarray is not None and isinstance(obj, _ndarray):
            return _torch.from_numpy(obj)
        if hasattr(obj, "__dlpack__"):
            return _torch.from_dlpack(obj)
    else:
        if _ndarray is not None and isinstance(obj, _ndarray):
            return obj
        if _Tensor is not None and isinstance(obj, _Tensor):
            return obj.detach().numpy()
        if hasattr(obj, "__dlpack__"):
            return _np.from_dlpack(obj)
    raise pickle.UnpicklingError(
        f"tensorwire: item {index} is a {type(obj).__name__}, which cannot "
        f"become a {kind} tensor"
    )


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, items):
        super().__init__(file)
        self._items = items
        self._restored = {}

    def persistent_load(self, pid):
        subclass = (
            type(pid) is tuple
            and len(pid) == 4
            and pid[0] == _KIND_TORCH
            and isinstance(pid[2], type)
            and issubclass(pid[2], _Tensor)
            and (pid[3] is None or type(pid[3]) is dict)
        )
        if (
            type(pid) is not tuple
            or (len(pid) != 2 and not subclass)
            or pid[0] not in (_KIND_TORCH, _KIND_NUMPY, _KIND_RREF)
            or type(pid[1]) is not int
        ):
            raise pickle.UnpicklingError(
                f"tensorwire: unknown persistent id {pid!r}"
            )
        kind, i = pid[0], pid[1]
        if not 0 <= i < len(self._items):
            raise pickle.UnpicklingError(
                f"tensorwire: persistent id names item {i} of "
                f"{len(self._items)}"
            )
        obj = self._restored.get(i, self)
        if obj is self:
            item = self._items[i]
            if kind == _KIND_RREF:
                obj = _rref_receiver(item) if _rref_receiver else item
            else:
                obj = _as_kind(item, kind, i)
                if subclass:
                    obj = obj.as_subclass(pid[2])
                    if pid[3]:
                        obj.__dict__.update(pid[3])
            self._restored[i] = obj
        return obj


def loads(data, items):
    """Unpickle what dumps made, putting items back in their slots.

    Raises AttributeError when a function or class named by the pickle
    does not exist on this worker.
    """
    u = _Unpickler(io.BytesIO(data), items)
    try:
        return u.load()
    except AttributeError as e:
        raise AttributeError(
            f"{e}: tensorwire pickles functions by reference and does not "
            "send their code; define the function in a module that both "
            "the caller and the callee import"
        ) from e
