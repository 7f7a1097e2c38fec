"""torch builtins to the aten:: operators tensorwire serves.

``rpc_sync(to, torch.add, args=(x, y))`` does not pickle torch.add: as in
torch.distributed.rpc, a torch builtin is matched to its ``aten::``
operator on the caller and runs on the callee as a C operator
(rpc/aten.c), without entering Python there.  This module does the
caller's half:

    find_builtin(func) -> "aten::add" | None
    match(func, args, kwargs) -> (qualname, args, kwargs)

``find_builtin`` says whether func goes as a builtin: the served
``aten::`` name, or None, in which case the call travels as a Python
function pickled by reference (tensorwire._pickle), which is also how
torch sends a builtin tensorwire does not serve (torch.sin) or a plain
Python function that calls torch (torch.nn.functional.relu).

``match`` binds the arguments to the operator's schemas as torch does
(createStackForSchema, in its order of checks), trying the overloads in
the order the callee tries them (rpc/aten.c's table, which the callee's
tw_schema_match walks), and returns:

- qualname: the name the callee registers, without overload
  ("aten::add"): the callee matches the overload again, and picks the
  same one, since it binds the same values by the same rules;
- args: a tuple, the arguments that are not keyword-only, in schema
  order, as far as the caller gave them without a gap;
- kwargs: a dict of the rest the caller gave, by their schema names.

Defaults are left to the callee.  Values are converted to what the wire
carries: torch.dtype to torch's ScalarType code (torch.float32 -> 6),
torch.layout and torch.memory_format to their codes, torch.device to its
string ("cpu"), a bool given for an int to 0/1 and an int given for a
bool to False/True (torch accepts both; the callee's binder neither), a
single int for ``int[N]`` to a list of N,
numpy scalars to Python numbers, tuples for lists to lists.  Tensors
(torch or numpy) pass through untouched.

When nothing binds, ``match`` raises RuntimeError with torch 1.13's text
(pybind_utils.h getOpWithStack / createStackForSchema, checked against
torch.ops.aten in Debian's torch 1.13): for an operator with several
overloads::

    Overloaded torch operator invoked from Python failed to many any schema:
    aten::add() Expected a value of type 'Tensor' for argument 'other' but
    instead found type 'str'.
    Position: 1
    Value: 'x'
    Declaration: aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor
    Cast error details: Unable to cast x to Tensor
    <blank line>
    ... one such paragraph per overload ...

and for an operator with one overload, that overload's paragraph alone.
("many" is torch's typo, kept.)  The schemas listed are the ones
tensorwire serves, not torch's longer list; and torch 1.13's rpc, which
tries its c10 operators first and then lists only the remaining JIT ones,
prints a list that often omits the overload that nearly matched -- the
text here lists the served overloads instead.  The exception is
BuiltinMismatch, a RuntimeError subclass, so the rpc layer may tell it
from other failures.

Where tensorwire is deliberately looser or stricter than torch's binding:
- ``input=`` is accepted for ``self`` on torch functions (torch's Python
  functions take it; its rpc binding does not);
- a complex Scalar is refused (the wire has no complex numbers);
- Tensor methods (torch.Tensor.add, a bound ``x.add``) are matched too,
  torch sending them as Python functions instead; for them, as Python's
  method call allows, trailing ints after the tensor are packed into the
  one int-list argument (``x.view(2, 3)``).  A method whose arguments do
  not bind raises BuiltinMismatch like a function; the rpc layer may
  instead fall back to pickling it, which is what torch does.
- numpy arrays are accepted where a Tensor is expected.
"""

import numbers

try:
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None
import torch

__all__ = [
    "SCHEMAS",
    "Schema",
    "BuiltinMismatch",
    "BuiltinNotServed",
    "find_builtin",
    "match",
    "match_schema",
    "overloads",
]

# rpc/aten.c's table, in its order (the order the callee tries them).
_FACTORY_OPTS = (
    "ScalarType? dtype=None, Layout? layout=None, Device? device=None, "
    "bool? pin_memory=None"
)
SCHEMAS = (
    "aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
    "aten::add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
    "aten::sub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
    "aten::sub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
    "aten::mul.Tensor(Tensor self, Tensor other) -> Tensor",
    "aten::mul.Scalar(Tensor self, Scalar other) -> Tensor",
    "aten::div.Tensor(Tensor self, Tensor other) -> Tensor",
    "aten::div.Scalar(Tensor self, Scalar other) -> Tensor",
    "aten::div.Tensor_mode(Tensor self, Tensor other, *, str? rounding_mode) -> Tensor",
    "aten::div.Scalar_mode(Tensor self, Scalar other, *, str? rounding_mode) -> Tensor",
    "aten::neg(Tensor self) -> Tensor",
    "aten::abs(Tensor self) -> Tensor",
    "aten::relu(Tensor self) -> Tensor",
    "aten::sigmoid(Tensor self) -> Tensor",
    "aten::tanh(Tensor self) -> Tensor",
    "aten::exp(Tensor self) -> Tensor",
    "aten::log(Tensor self) -> Tensor",
    "aten::sqrt(Tensor self) -> Tensor",
    "aten::pow.Tensor_Tensor(Tensor self, Tensor exponent) -> Tensor",
    "aten::pow.Scalar(Scalar self, Tensor exponent) -> Tensor",
    "aten::pow.Tensor_Scalar(Tensor self, Scalar exponent) -> Tensor",
    "aten::sum(Tensor self, *, ScalarType? dtype=None) -> Tensor",
    "aten::sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
    "aten::mean(Tensor self, *, ScalarType? dtype=None) -> Tensor",
    "aten::mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
    "aten::max(Tensor self) -> Tensor",
    "aten::max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)",
    "aten::min(Tensor self) -> Tensor",
    "aten::min.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)",
    "aten::argmax(Tensor self, int? dim=None, bool keepdim=False) -> Tensor",
    "aten::matmul(Tensor self, Tensor other) -> Tensor",
    "aten::mm(Tensor self, Tensor mat2) -> Tensor",
    "aten::t(Tensor(a) self) -> Tensor(a)",
    "aten::transpose.int(Tensor(a) self, int dim0, int dim1) -> Tensor(a)",
    "aten::reshape(Tensor(a) self, SymInt[] shape) -> Tensor(a)",
    "aten::view(Tensor(a) self, SymInt[] size) -> Tensor(a)",
    "aten::cat(Tensor[] tensors, int dim=0) -> Tensor",
    "aten::stack(Tensor[] tensors, int dim=0) -> Tensor",
    "aten::clone(Tensor self, *, MemoryFormat? memory_format=None) -> Tensor",
    "aten::ones(SymInt[] size, *, " + _FACTORY_OPTS + ") -> Tensor",
    "aten::zeros(SymInt[] size, *, " + _FACTORY_OPTS + ") -> Tensor",
    "aten::full(SymInt[] size, Scalar fill_value, *, " + _FACTORY_OPTS + ") -> Tensor",
    "aten::arange(Scalar end, *, " + _FACTORY_OPTS + ") -> Tensor",
    "aten::arange.start(Scalar start, Scalar end, *, " + _FACTORY_OPTS + ") -> Tensor",
    "aten::arange.start_step(Scalar start, Scalar end, Scalar step=1, *, " + _FACTORY_OPTS + ") -> Tensor",
    "aten::rand(SymInt[] size, *, " + _FACTORY_OPTS + ") -> Tensor",
    "aten::rand.seed(SymInt[] size, *, int seed, " + _FACTORY_OPTS + ") -> Tensor",
    "aten::randn(SymInt[] size, *, " + _FACTORY_OPTS + ") -> Tensor",
    "aten::randn.seed(SymInt[] size, *, int seed, " + _FACTORY_OPTS + ") -> Tensor",
)


class BuiltinMismatch(RuntimeError):
    """No overload of a served operator binds the arguments (torch's text)."""


class BuiltinNotServed(RuntimeError):
    """match() was given a callable that is not a served builtin."""


# ---- schemas ------------------------------------------------------------


class _Type:
    """A schema type: base word, list (fixed length or None), optional."""

    __slots__ = ("word", "elem", "fixed", "optional")

    def __init__(self, word=None, elem=None, fixed=0, optional=False):
        self.word, self.elem, self.fixed, self.optional = word, elem, fixed, optional

    def repr_str(self):
        """torch's repr_str, as its binding errors print a type."""
        if self.optional:
            return f"Optional[{self._inner_repr()}]"
        return self._inner_repr()

    def _inner_repr(self):
        if self.elem is not None:
            return f"List[{self.elem.repr_str()}]"
        return _REPR[self.word]


_REPR = {
    "Tensor": "Tensor",
    "Scalar": "number",
    "int": "int",
    "SymInt": "int",
    "ScalarType": "int",
    "Layout": "int",
    "MemoryFormat": "int",
    "bool": "bool",
    "str": "str",
    "Device": "Device",
}


def _parse_type(text):
    t = text.strip()
    optional = t.endswith("?")
    if optional:
        t = t[:-1]
    if t.endswith("]"):
        open_ = t.rindex("[")
        n = t[open_ + 1:-1]
        elem = _parse_type(t[:open_])
        return _Type(elem=elem, fixed=int(n) if n else 0, optional=optional)
    if "(" in t:  # alias annotation: Tensor(a), Tensor(a!)
        t = t[: t.index("(")]
    if t not in _REPR:
        raise ValueError(f"schema type {text!r} is not one tensorwire serves")
    return _Type(word=t, optional=optional)


_NO_DEFAULT = object()


def _parse_default(text):
    if text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        return float(text)


class _Arg:
    __slots__ = ("name", "type", "default", "kwarg_only")

    def __init__(self, name, type_, default, kwarg_only):
        self.name, self.type, self.default, self.kwarg_only = (
            name, type_, default, kwarg_only)


class Schema:
    """One parsed schema of SCHEMAS: name, overload, args, text."""

    def __init__(self, text):
        self.text = text
        head, rest = text.split("(", 1)
        self.name, _, self.overload = head.partition(".")
        args_text = rest[: _close_paren(rest)]
        self.args = []
        kwarg_only = False
        for part in _split_args(args_text):
            if part == "*":
                kwarg_only = True
                continue
            decl, eq, dflt = part.partition("=")
            type_text, _, name = decl.rpartition(" ")
            self.args.append(
                _Arg(name, _parse_type(type_text),
                     _parse_default(dflt) if eq else _NO_DEFAULT, kwarg_only))

    @property
    def qualified(self):
        """aten::add.Tensor (the overload named)."""
        return f"{self.name}.{self.overload}" if self.overload else self.name

    def __repr__(self):
        return f"Schema({self.text!r})"


def _close_paren(s):
    depth = 1
    for i, c in enumerate(s):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced schema")


def _split_args(s):
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


_BY_NAME = {}
for _text in SCHEMAS:
    _s = Schema(_text)
    _BY_NAME.setdefault(_s.name, []).append(_s)
del _text, _s


def overloads(qualname):
    """The served overloads of an aten:: name, in the callee's order."""
    return tuple(_BY_NAME.get(qualname, ()))


# ---- which callables are builtins -------------------------------------------

# torch function name -> (served aten name, overloads allowed or None: all).
# Aliases torch itself registers under their own aten name (multiply,
# divide, ...) have the served operator's schema and go to it.
_FUNCTIONS = {
    "add": ("aten::add", None),
    "sub": ("aten::sub", None),
    "subtract": ("aten::sub", None),
    "mul": ("aten::mul", None),
    "multiply": ("aten::mul", None),
    "div": ("aten::div", None),
    "divide": ("aten::div", None),
    "true_divide": ("aten::div", ("Tensor", "Scalar")),
    "neg": ("aten::neg", None),
    "negative": ("aten::neg", None),
    "abs": ("aten::abs", None),
    "absolute": ("aten::abs", None),
    "relu": ("aten::relu", None),
    "sigmoid": ("aten::sigmoid", None),
    "tanh": ("aten::tanh", None),
    "exp": ("aten::exp", None),
    "log": ("aten::log", None),
    "sqrt": ("aten::sqrt", None),
    "pow": ("aten::pow", None),
    "sum": ("aten::sum", None),
    "mean": ("aten::mean", None),
    "max": ("aten::max", None),
    "min": ("aten::min", None),
    "argmax": ("aten::argmax", None),
    "matmul": ("aten::matmul", None),
    "mm": ("aten::mm", None),
    "t": ("aten::t", None),
    "transpose": ("aten::transpose", None),
    "reshape": ("aten::reshape", None),
    "cat": ("aten::cat", None),
    "concat": ("aten::cat", None),
    "stack": ("aten::stack", None),
    "clone": ("aten::clone", None),
    "ones": ("aten::ones", None),
    "zeros": ("aten::zeros", None),
    "full": ("aten::full", None),
    "arange": ("aten::arange", None),
    "rand": ("aten::rand", None),
    "randn": ("aten::randn", None),
}

# torch.Tensor methods: those whose first argument is the tensor (self).
_METHODS = {
    name: _FUNCTIONS[name]
    for name in (
        "add", "sub", "subtract", "mul", "multiply", "div", "divide",
        "true_divide", "neg", "negative", "abs", "absolute", "relu",
        "sigmoid", "tanh", "exp", "log", "sqrt", "pow", "sum", "mean",
        "max", "min", "argmax", "matmul", "mm", "t", "transpose",
        "reshape", "clone",
    )
}
_METHODS["view"] = ("aten::view", None)

_TABLE = {}  # callable -> (aten name, allowed overloads, is_method, label)
for _name, (_aten, _allowed) in _FUNCTIONS.items():
    _TABLE[getattr(torch, _name)] = (_aten, _allowed, False, f"torch.{_name}")
for _name, (_aten, _allowed) in _METHODS.items():
    _TABLE[getattr(torch.Tensor, _name)] = (
        _aten, _allowed, True, f"torch.Tensor.{_name}")
del _name, _aten, _allowed


def _lookup(func):
    """(entry, bound self or None) for func, or (None, None)."""
    try:
        entry = _TABLE.get(func)
    except TypeError:  # unhashable callable
        return None, None
    if entry is not None:
        return entry, None
    owner = getattr(func, "__self__", None)
    if isinstance(owner, torch.Tensor):
        method = getattr(torch.Tensor, getattr(func, "__name__", ""), None)
        try:
            entry = _TABLE.get(method)
        except TypeError:
            entry = None
        if entry is not None and entry[2]:
            return entry, owner
    return None, None


def find_builtin(func):
    """The served aten:: name func runs as, or None (send it pickled)."""
    entry, _ = _lookup(func)
    return entry[0] if entry is not None else None


# ---- binding ------------------------------------------------------------------

_DTYPE_CODES = {}
for _code, _n in enumerate(
    ("uint8", "int8", "int16", "int32", "int64", "float16", "float32",
     "float64", "complex32", "complex64", "complex128", "bool", "qint8",
     "quint8", "qint32", "bfloat16", "quint4x2", "quint2x4")
):
    _dt = getattr(torch, _n, None)
    if isinstance(_dt, torch.dtype):
        _DTYPE_CODES[_dt] = _code
del _code, _n, _dt

_LAYOUT_CODES = {}
for _code, _n in enumerate(
    ("strided", "sparse_coo", "sparse_csr", "_mkldnn", "sparse_csc",
     "sparse_bsr", "sparse_bsc")
):
    _l = getattr(torch, _n, None)
    if isinstance(_l, torch.layout):
        _LAYOUT_CODES[_l] = _code
del _code, _n, _l

_MEMORY_FORMAT_CODES = {
    torch.contiguous_format: 0,
    torch.preserve_format: 1,
    torch.channels_last: 2,
    torch.channels_last_3d: 3,
}

_PYBIND_CAST = (
    "Unable to cast Python instance to C++ type (#define "
    "PYBIND11_DETAILED_ERROR_MESSAGES or compile in debug mode for details)"
)


class _NoFit(Exception):
    """A value does not fit a type; args[0]: torch's cast error details."""


def _is_tensor(v):
    return isinstance(v, torch.Tensor) or (
        _np is not None and isinstance(v, _np.ndarray))


def _as_int(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if _np is not None and isinstance(v, (_np.integer, _np.bool_)):
        return int(v)
    raise _NoFit(_PYBIND_CAST)


def _convert(t, v):
    """v converted for the wire if it fits type t, else raise _NoFit."""
    if type(v) is torch.Tensor and t.elem is None and t.word == "Tensor":
        return v  # the common case, first
    if t.optional and v is None:
        return None
    if t.elem is not None:
        if t.fixed and t.elem.word in ("int", "SymInt") and not isinstance(
                v, (list, tuple)):
            try:
                return [_as_int(v)] * t.fixed
            except _NoFit:
                pass
        if not isinstance(v, (list, tuple)):
            raise _NoFit(_PYBIND_CAST)
        return [_convert(t.elem, x) for x in v]
    w = t.word
    if w == "Tensor":
        if _is_tensor(v):
            return v
        raise _NoFit(f"Unable to cast {v} to Tensor")
    if w == "Scalar":
        if isinstance(v, (bool, int, float)):
            return v
        if _np is not None and isinstance(v, _np.bool_):
            return bool(v)
        if _np is not None and isinstance(v, _np.integer):
            return int(v)
        if _np is not None and isinstance(v, _np.floating):
            return float(v)
        if isinstance(v, numbers.Complex) and not isinstance(v, torch.Tensor):
            raise _NoFit(
                f"Cannot cast {v} to number: tensorwire's wire has no "
                "complex numbers")
        raise _NoFit(f"Cannot cast {v} to number")
    if w == "ScalarType" and isinstance(v, torch.dtype):
        return _DTYPE_CODES[v]
    if w == "Layout" and isinstance(v, torch.layout):
        return _LAYOUT_CODES[v]
    if w == "MemoryFormat" and isinstance(v, torch.memory_format):
        return _MEMORY_FORMAT_CODES[v]
    if w in ("int", "SymInt", "ScalarType", "Layout", "MemoryFormat"):
        return _as_int(v)
    if w == "bool":
        # torch (pybind's bool caster) takes an int too: keepdim=1
        if isinstance(v, (bool, int)):
            return bool(v)
        if _np is not None and isinstance(v, (_np.bool_, _np.integer)):
            return bool(v)
        raise _NoFit(_PYBIND_CAST)
    if w == "str":
        if isinstance(v, str):
            return v
        raise _NoFit(_PYBIND_CAST)
    if w == "Device":
        if isinstance(v, torch.device):
            return str(v)
        if isinstance(v, str):
            return v
        raise _NoFit(_PYBIND_CAST)
    raise AssertionError(w)  # pragma: no cover - _parse_type refuses others


def _type_error(s, i, v, details):
    a = s.args[i]
    return (
        f"{s.name}() Expected a value of type '{a.type.repr_str()}' for "
        f"argument '{a.name}' but instead found type '{type(v).__name__}'.\n"
        f"Position: {i}\nValue: {v!r}\nDeclaration: {s.text}\n"
        f"Cast error details: {details}"
    )


def _kwargs_error(s, args, kwargs):
    names = {a.name for a in s.args}
    for k in kwargs:
        if k not in names:
            return (f"Unknown keyword argument '{k}' for operator "
                    f"'{s.name}'. Schema: {s.text}")
    for a in s.args[: len(args)]:
        if a.name in kwargs:
            return (f"Argument '{a.name}' specified both as positional and "
                    f"keyword argument. Schema: {s.text}")
    return f"Keyword arguments do not match. Schema: {s.text}"  # pragma: no cover


def _bind(s, args, kwargs):
    """(wire args, wire kwargs) for schema s, or a str: why not (torch's)."""
    n = len(s.args)
    if len(args) + len(kwargs) > n:
        return (f"{s.name}() expected at most {n} argument(s) but received "
                f"{len(args) + len(kwargs)} argument(s). Declaration: {s.text}")
    values = [_NO_DEFAULT] * n
    for i, v in enumerate(args):
        if s.args[i].kwarg_only:
            return (f"{s.name}() takes {i} positional argument(s) but "
                    f"{len(args)} was/were given.  Declaration: {s.text}")
        try:
            values[i] = _convert(s.args[i].type, v)
        except _NoFit as e:
            return _type_error(s, i, v, e.args[0])
    used = 0
    for i in range(len(args), n):
        a = s.args[i]
        if a.name in kwargs:
            v = kwargs[a.name]
            try:
                values[i] = _convert(a.type, v)
            except _NoFit as e:
                return _type_error(s, i, v, e.args[0])
            used += 1
        elif a.default is _NO_DEFAULT:
            return (f"{s.name}() is missing value for argument '{a.name}'. "
                    f"Declaration: {s.text}")
    if used != len(kwargs):
        return _kwargs_error(s, args, kwargs)
    out_args, out_kwargs, gap = [], {}, False
    for a, v in zip(s.args, values):
        if v is _NO_DEFAULT:
            gap = True
        elif a.kwarg_only or gap:
            out_kwargs[a.name] = v
        else:
            out_args.append(v)
    return tuple(out_args), out_kwargs


def _pack_method_varargs(schemas, args):
    """x.view(2, 3): trailing ints packed into the one int-list argument."""
    if len(args) < 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in args[1:]):
        return args
    for s in schemas:
        pos = [a for a in s.args if not a.kwarg_only]
        if (len(pos) == 2 and pos[1].type.elem is not None
                and pos[1].type.elem.word in ("int", "SymInt")):
            return (args[0], list(args[1:]))
    return args


def match_schema(func, args=(), kwargs=None):
    """Like match, but returns (Schema chosen, args, kwargs)."""
    kwargs = dict(kwargs or {})
    args = tuple(args)
    entry, owner = _lookup(func)
    if entry is None:
        raise BuiltinNotServed(
            f"{func!r} is not a builtin operator tensorwire serves: send it "
            "as a Python function (find_builtin returns None for it)")
    qualname, allowed, is_method, _ = entry
    schemas = [s for s in _BY_NAME[qualname]
               if allowed is None or s.overload in allowed]
    if owner is not None:
        args = (owner,) + args
    if is_method:
        args = _pack_method_varargs(schemas, args)
    elif "input" in kwargs and "self" not in kwargs:
        kwargs = {("self" if k == "input" else k): v
                  for k, v in kwargs.items()}
    errors = []
    for s in schemas:
        r = _bind(s, args, kwargs)
        if not isinstance(r, str):
            return s, r[0], r[1]
        errors.append(r)
    if len(schemas) == 1:
        raise BuiltinMismatch(errors[0])
    raise BuiltinMismatch(
        "Overloaded torch operator invoked from Python failed to many any "
        "schema:\n" + "".join(e + "\n\n" for e in errors))


def match(func, args=(), kwargs=None):
    """(qualname, args, kwargs) to send for a call of a torch builtin.

    Raises BuiltinMismatch (a RuntimeError, torch's text) when no served
    overload binds, BuiltinNotServed when func is not a served builtin
    (find_builtin(func) is None).
    """
    if not kwargs and args and _all_tensors(args):
        name = _tensor_calls.get((func, len(args)))
        if name is not None:
            return name, tuple(args), {}
    s, a, k = match_schema(func, args, kwargs)
    if not kwargs and args and not k and len(a) == len(args) and \
            _all_tensors(args) and all(x is y for x, y in zip(a, args)):
        try:
            if len(_tensor_calls) < 4096:
                _tensor_calls[(func, len(args))] = s.name
        except TypeError:  # an unhashable callable
            pass
    return s.name, a, k


# A call of func with n tensors (exactly torch.Tensor) and nothing else
# binds the same overload, unchanged, every time: (func, n) -> its name.
_tensor_calls = {}


def _all_tensors(args):
    for v in args:
        if type(v) is not torch.Tensor:
            return False
    return True
