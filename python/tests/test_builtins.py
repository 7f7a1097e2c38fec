"""tensorwire._builtins: torch builtins matched to the aten:: operators served."""
import os
import re

import numpy as np
import pytest
import torch

from tensorwire import _builtins as B
from tensorwire._builtins import BuiltinMismatch, find_builtin, match, match_schema

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
ATEN_C = os.path.join(ROOT, "rpc", "aten.c")

x = torch.arange(6, dtype=torch.float32).reshape(2, 3) + 1
y = torch.full((2, 3), 2.0)
sq = torch.arange(9, dtype=torch.float64).reshape(3, 3)
v = torch.arange(3, dtype=torch.float64)


def aten_c_schemas():
    text = open(ATEN_C).read()
    opts = re.search(r'#define FACTORY_OPTS\s*\\\s*("[^"]*")\s*\\\s*("[^"]*")',
                     text)
    factory = "".join(s[1:-1] for s in opts.groups())
    table = text[text.index("builtins[] = {"):]
    table = table[: table.index("};")]
    out = []
    # each entry starts {"aten::... and its schema is the adjacent string
    # literals (and FACTORY_OPTS) up to the first comma outside them
    for m in re.finditer(r'\{((?:\s*(?:"[^"]*"|FACTORY_OPTS))+)\s*,', table):
        pieces = re.findall(r'"[^"]*"|FACTORY_OPTS', m.group(1))
        out.append("".join(factory if p == "FACTORY_OPTS" else p[1:-1]
                           for p in pieces))
    return tuple(out)


@pytest.mark.skipif(not os.path.exists(ATEN_C), reason="rpc/aten.c not found")
def test_table_is_aten_c_in_its_order():
    got = aten_c_schemas()
    assert len(got) == 49
    assert got == B.SCHEMAS


# torch counterpart of every served overload: qualified name -> calls
# (func, args, kwargs) that must pick it.
CASES = {
    "aten::add.Tensor": [(torch.add, (x, y), {}), (torch.add, (x, y), {"alpha": 2}),
                         (torch.Tensor.add, (x, y), {}), (x.add, (y,), {})],
    "aten::add.Scalar": [(torch.add, (x, 3), {}), (torch.add, (x, 2.5), {"alpha": 2})],
    "aten::sub.Tensor": [(torch.sub, (x, y), {"alpha": 3}), (torch.subtract, (x, y), {})],
    "aten::sub.Scalar": [(torch.sub, (x, 1), {}), (torch.Tensor.sub, (x, 1.5), {})],
    "aten::mul.Tensor": [(torch.mul, (x, y), {}), (torch.multiply, (x, y), {})],
    "aten::mul.Scalar": [(torch.mul, (x, 3), {}), (x.mul, (True,), {})],
    "aten::div.Tensor": [(torch.div, (x, y), {}), (torch.true_divide, (x, y), {}),
                         (torch.divide, (x, y), {})],
    "aten::div.Scalar": [(torch.div, (x, 4), {}), (torch.true_divide, (x, 2), {})],
    "aten::div.Tensor_mode": [(torch.div, (x, y), {"rounding_mode": "floor"}),
                              (torch.div, (x, y), {"rounding_mode": None})],
    "aten::div.Scalar_mode": [(torch.div, (x, 4), {"rounding_mode": "trunc"})],
    "aten::neg": [(torch.neg, (x,), {}), (torch.negative, (x,), {}), (x.neg, (), {})],
    "aten::abs": [(torch.abs, (-x,), {}), (torch.absolute, (-x,), {})],
    "aten::relu": [(torch.relu, (x - 3,), {}), (torch.Tensor.relu, (x - 3,), {})],
    "aten::sigmoid": [(torch.sigmoid, (x,), {})],
    "aten::tanh": [(torch.tanh, (x,), {})],
    "aten::exp": [(torch.exp, (x,), {})],
    "aten::log": [(torch.log, (x,), {})],
    "aten::sqrt": [(torch.sqrt, (x,), {})],
    "aten::pow.Tensor_Tensor": [(torch.pow, (x, y), {})],
    "aten::pow.Scalar": [(torch.pow, (2, x), {})],
    "aten::pow.Tensor_Scalar": [(torch.pow, (x, 2), {}), (x.pow, (0.5,), {})],
    "aten::sum": [(torch.sum, (x,), {}), (torch.sum, (x,), {"dtype": torch.float64})],
    "aten::sum.dim_IntList": [(torch.sum, (x, 0), {}), (torch.sum, (x,), {"dim": (0, 1)}),
                              (torch.sum, (x, [1], True), {}),
                              (x.sum, (), {"dim": 1, "keepdim": True,
                                           "dtype": torch.float64})],
    "aten::mean": [(torch.mean, (x,), {})],
    "aten::mean.dim": [(torch.mean, (x, 1), {}), (torch.mean, (x, (0,), True), {})],
    "aten::max": [(torch.max, (x,), {})],
    "aten::max.dim": [(torch.max, (x, 1), {}), (torch.max, (x, 0, True), {}),
                      (torch.max, (x,), {"dim": 1})],
    "aten::min": [(torch.min, (x,), {})],
    "aten::min.dim": [(torch.min, (x, 1), {"keepdim": True})],
    "aten::argmax": [(torch.argmax, (x,), {}), (torch.argmax, (x, 1), {}),
                     (torch.argmax, (x,), {"keepdim": True})],
    "aten::matmul": [(torch.matmul, (sq, v), {}), (sq.matmul, (sq,), {})],
    "aten::mm": [(torch.mm, (sq, sq), {})],
    "aten::t": [(torch.t, (x,), {}), (x.t, (), {})],
    "aten::transpose.int": [(torch.transpose, (x, 0, 1), {}),
                            (torch.transpose, (x,), {"dim0": 1, "dim1": 0})],
    "aten::reshape": [(torch.reshape, (x, (3, 2)), {}), (torch.reshape, (x, [-1]), {}),
                      (x.reshape, (6,), {}), (x.reshape, (3, 2), {})],
    "aten::view": [(torch.Tensor.view, (x, (3, 2)), {}), (x.view, (6,), {}),
                   (x.view, (2, 3), {}), (x.view, (torch.Size([3, 2]),), {})],
    "aten::cat": [(torch.cat, ((x, y),), {}), (torch.cat, ([x, y], 1), {}),
                  (torch.concat, ([x, y],), {"dim": 0})],
    "aten::stack": [(torch.stack, ((x, y),), {}), (torch.stack, ([x, y],), {"dim": 2})],
    "aten::clone": [(torch.clone, (x,), {}),
                    (torch.clone, (x,), {"memory_format": torch.contiguous_format}),
                    (x.clone, (), {"memory_format": torch.preserve_format})],
    "aten::ones": [(torch.ones, ((2, 3),), {}),
                   (torch.ones, ([2],), {"dtype": torch.int32, "device": "cpu",
                                         "layout": torch.strided,
                                         "pin_memory": False})],
    "aten::zeros": [(torch.zeros, (torch.Size([2, 2]),), {"dtype": torch.bool,
                                                          "device": torch.device("cpu")})],
    "aten::full": [(torch.full, ((2, 2), 7), {}),
                   (torch.full, ((2,), 1.5), {"dtype": torch.float64})],
    "aten::arange": [(torch.arange, (5,), {}), (torch.arange, (2.5,), {"dtype": torch.float64})],
    "aten::arange.start": [(torch.arange, (1, 5), {})],
    "aten::arange.start_step": [(torch.arange, (1, 7, 2), {}), (torch.arange, (0, 1, 0.25), {})],
    "aten::rand": [(torch.rand, ((2, 3),), {})],
    "aten::rand.seed": [(torch.rand, ((2, 3),), {"seed": 5})],
    "aten::randn": [(torch.randn, ((4,),), {"dtype": torch.float64})],
    "aten::randn.seed": [(torch.randn, ((4,),), {"seed": 5, "dtype": torch.float32})],
}

# Served overloads torch has no counterpart for, and why.
NO_TORCH_COUNTERPART = {
    "aten::rand.seed": "tensorwire's own overload: a seed instead of torch's "
                       "Generator (which cannot travel); reached by "
                       "torch.rand(size, seed=n), a keyword torch.rand lacks",
    "aten::randn.seed": "as aten::rand.seed",
}

RANDOM = {"aten::rand", "aten::rand.seed", "aten::randn", "aten::randn.seed"}


def test_every_served_overload_has_a_counterpart():
    served = {B.Schema(t).qualified for t in B.SCHEMAS}
    assert len(served) == 49
    assert set(CASES) == served
    for q, calls in CASES.items():
        assert calls, q


# Served schemas whose text differs from torch 1.13's only by SymInt[] for
# torch's int[] (aten.c follows newer torch; both bind the same values).
SYMINT_FOR_INT = {"aten::rand", "aten::randn"}


def test_schemas_are_torchs_own():
    for text in B.SCHEMAS:
        s = B.Schema(text)
        if s.qualified in NO_TORCH_COUNTERPART:
            continue
        torchs = {str(t) for t in torch._C._jit_get_schemas_for_operator(s.name)}
        if s.qualified in SYMINT_FOR_INT:
            text = text.replace("SymInt[]", "int[]")
        assert text in torchs, text


def _callee_pick(qualname, args, kwargs):
    """What the callee's tw_schema_match does with what match sent."""
    for s in B.overloads(qualname):
        r = B._bind(s, args, kwargs)
        if not isinstance(r, str):
            return s
    return None


def _run_torch(s, args, kwargs):
    op = getattr(torch.ops.aten, s.name.split("::")[1])
    return getattr(op, s.overload or "default")(*args, **kwargs)


@pytest.mark.parametrize(
    "qualified, func, args, kwargs",
    [(q, f, a, k) for q, calls in CASES.items() for (f, a, k) in calls],
    ids=lambda p: p if isinstance(p, str) else "",
)
def test_counterpart_matches_and_means_the_same(qualified, func, args, kwargs):
    s, wargs, wkwargs = match_schema(func, args, kwargs)
    assert s.qualified == qualified
    qualname, a2, k2 = match(func, args, kwargs)
    assert qualname == s.name == qualified.split(".")[0]
    assert isinstance(a2, tuple) and isinstance(k2, dict)
    # every keyword is a schema name
    assert set(k2) <= {arg.name for arg in s.args}
    # the callee, matching again, picks the same overload
    assert _callee_pick(qualname, wargs, wkwargs) is s
    # values are what the wire carries: no torch.dtype/device/layout left
    for val in list(wargs) + list(wkwargs.values()):
        assert not isinstance(val, (torch.dtype, torch.device, torch.layout,
                                    torch.memory_format, tuple))
    if qualified in NO_TORCH_COUNTERPART:
        return
    # torch's own overload, given exactly what goes on the wire, computes
    # what the local call computes
    got = _run_torch(s, wargs, wkwargs)
    if qualified in RANDOM:
        want = func(*args, **kwargs)
        assert got.shape == want.shape and got.dtype == want.dtype
        return
    want = func(*args, **kwargs)
    if isinstance(want, tuple):
        assert all(torch.equal(g, w) for g, w in zip(got, want))
    else:
        assert torch.equal(got, want)


def test_tensors_pass_untouched():
    a = np.ones((2, 2), dtype=np.float32)
    _, args, _ = match(torch.add, (x, y))
    assert args[0] is x and args[1] is y
    _, args, _ = match(torch.mm, (a, a))
    assert args[0] is a
    _, args, _ = match(torch.cat, ((x, y),))
    assert args[0][0] is x and args[0][1] is y


def test_wire_forms():
    assert match(torch.sum, (x,), {"dtype": torch.float32}) == (
        "aten::sum", (x,), {"dtype": 6})
    # int[1] from an int, a bool for an int, numpy scalars
    assert match(torch.sum, (x, 0))[1][1] == [0]
    assert match(torch.max, (x, True))[1][1] == 1
    assert type(match(torch.max, (x, True))[1][1]) is int
    # torch.ops binds keepdim=1 too (torch's Python signature does not)
    assert match(torch.max, (x, 0, 1))[1][2] is True
    assert torch.equal(torch.ops.aten.max.dim(x, 0, 1)[0],
                       torch.ops.aten.max.dim(x, 0, True)[0])
    assert match(torch.add, (x, np.float32(2.5)))[1][1] == 2.5
    assert type(match(torch.add, (x, np.int64(2)))[1][1]) is int
    # keyword-only stay keywords, positional ones after a gap too
    assert match(torch.argmax, (x,), {"keepdim": True}) == (
        "aten::argmax", (x,), {"keepdim": True})
    assert match(torch.add, (), {"input": x, "other": y})[1] == (x, y)
    assert match(torch.ones, ([2],), {"device": torch.device("cpu"),
                                      "layout": torch.strided})[2] == {
        "device": "cpu", "layout": 0}
    codes = {torch.uint8: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3,
             torch.int64: 4, torch.float16: 5, torch.float32: 6,
             torch.float64: 7, torch.bool: 11, torch.bfloat16: 15}
    for dt, code in codes.items():
        assert match(torch.zeros, ([1],), {"dtype": dt})[2]["dtype"] == code


def test_find_builtin():
    assert find_builtin(torch.add) == "aten::add"
    assert find_builtin(torch.multiply) == "aten::mul"
    assert find_builtin(torch.Tensor.view) == "aten::view"
    assert find_builtin(x.add) == "aten::add"
    # not served, or not builtins: these travel pickled, as Python functions
    assert find_builtin(torch.sin) is None
    assert find_builtin(torch.nn.functional.relu) is None
    assert find_builtin(lambda t: t) is None
    assert find_builtin(len) is None
    with pytest.raises(B.BuiltinNotServed, match="Python function"):
        match(torch.sin, (x,))


# ---- torch's text when nothing matches ---------------------------------------

def _torch_text(qualname, args, kwargs):
    op = getattr(torch.ops.aten, qualname.split("::")[1])
    with pytest.raises(RuntimeError) as ei:
        op(*args, **kwargs)
    return str(ei.value)


@pytest.mark.parametrize("func, args, kwargs", [
    (torch.t, (x, 1, 2), {}),                     # expected at most
    (torch.reshape, (x, (2.0,)), {}),             # type, one overload
])
def test_single_overload_text_is_torchs(func, args, kwargs):
    with pytest.raises(BuiltinMismatch) as ei:
        match(func, args, kwargs)
    assert isinstance(ei.value, RuntimeError)
    assert str(ei.value) == _torch_text(find_builtin(func), args, kwargs)


@pytest.mark.parametrize("func, args, kwargs", [
    (torch.mul, (x, "a"), {}),                    # type, per overload
    (torch.relu, (x, 3), {}),                     # expected at most
    (torch.relu, (), {}),                         # missing value
    (torch.clone, (x, 1), {}),                    # takes N positional
    (torch.sum, (x,), {"beta": 1}),               # unknown keyword
    (torch.transpose, (x, 0), {"dim0": 1}),       # missing
    (torch.argmax, (x, "a"), {}),                 # Optional[int]
    (torch.ones, ([2],), {"device": 3.5}),        # Optional[Device]
    (torch.div, (x, x), {"rounding_mode": 3}),    # Optional[str]
    (torch.sum, (x, [0.5]), {}),                  # Optional[List[int]]
])
def test_paragraphs_are_torchs(func, args, kwargs):
    """Each paragraph is torch's own for that schema (torch lists more
    schemas than tensorwire serves, so compare paragraph by paragraph)."""
    with pytest.raises(BuiltinMismatch) as ei:
        match(func, args, kwargs)
    ours = str(ei.value)
    torchs = _torch_text(find_builtin(func), args, kwargs)
    header = "Overloaded torch operator invoked from Python failed to many any schema:\n"
    if len(B.overloads(find_builtin(func))) > 1:
        assert ours.startswith(header) and torchs.startswith(header)
        paragraphs = ours[len(header):].split("\n\n")[:-1]
    else:
        paragraphs = [ours]
    assert paragraphs
    for p in paragraphs:
        assert p in torchs, p


def test_complex_scalar_refused_with_reason():
    with pytest.raises(BuiltinMismatch, match="no complex numbers"):
        match(torch.mul, (x, 1 + 2j))
