"""tensorwire._pickle: tensors and arrays lifted out of the pickle, zero-copy."""
import pickle

import numpy as np
import pytest
import torch

from tensorwire import _pickle
from tensorwire._pickle import dumps, loads


def udf(x, y=1):
    return x + y


class Holder:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class MyTensor(torch.Tensor):
    pass


class FakeRRef:
    def __init__(self, n):
        self.n = n


def roundtrip(obj):
    data, items = dumps(obj)
    return loads(data, items), data, items


def test_torch_and_numpy_are_lifted_not_copied():
    t = torch.arange(1 << 16, dtype=torch.float32)
    a = np.arange(1 << 16, dtype=np.int64)
    obj = (udf, (t, {"a": [a, 3]}), {"y": Holder(t=t, note="x")})
    back, data, items = roundtrip(obj)
    # one slot per distinct object, the very objects given
    assert len(items) == 2
    assert items[0] is t and items[1] is a
    # the pickle holds no tensor bytes: far smaller than either tensor
    assert len(data) < 1000
    assert t.numpy().tobytes()[:64] not in data
    fn, args, kwargs = back
    assert fn is udf
    assert args[0] is t                      # identity: no copy
    assert args[1]["a"][0] is a
    assert kwargs["y"].t is t                # same object twice -> one slot
    assert kwargs["y"].t.data_ptr() == t.data_ptr()
    assert args[1]["a"][0].ctypes.data == a.ctypes.data


def test_pickle_is_protocol_5():
    data, _ = dumps([1, 2])
    assert data[:2] == b"\x80\x05"


def test_kind_is_kept_and_converted_without_copy():
    t = torch.ones(4)
    a = np.zeros(4, dtype=np.float32)
    data, items = dumps([t, a])
    assert items[0] is t and items[1] is a
    # the C side may hand back the other library's object (or a DLPack
    # producer): each slot still comes back as the kind the sender had,
    # sharing memory
    t2, a2 = loads(data, [a.copy(), torch.zeros(4)])
    assert isinstance(t2, torch.Tensor) and isinstance(a2, np.ndarray)
    src_np = np.full(4, 7.0, dtype=np.float32)
    src_t = torch.full((4,), 5.0)
    t3, a3 = loads(data, [src_np, src_t])
    assert t3.data_ptr() == src_np.ctypes.data
    assert a3.ctypes.data == src_t.data_ptr()


def test_non_contiguous_kept_as_given():
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    v = base.t()[1:, ::2]
    assert not v.is_contiguous()
    an = np.arange(24).reshape(4, 6).T[:, ::2]
    assert not an.flags.c_contiguous
    back, _, items = roundtrip([v, an])
    assert items[0] is v and items[1] is an
    assert back[0] is v and back[0].stride() == v.stride()
    assert back[1] is an and back[1].strides == an.strides


@pytest.mark.parametrize(
    "dtype",
    [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32,
     torch.int64, torch.float16, torch.bfloat16, torch.float32,
     torch.float64],
)
def test_every_wire_dtype_torch(dtype):
    t = torch.zeros(3, dtype=dtype)
    back, _, items = roundtrip({"t": t})
    assert items[0] is t and back["t"] is t


@pytest.mark.parametrize(
    "dtype",
    ["bool", "uint8", "int8", "int16", "int32", "int64", "float16",
     "float32", "float64"],
)
def test_every_wire_dtype_numpy(dtype):
    a = np.zeros((2, 2), dtype=dtype)
    back, _, items = roundtrip([a])
    assert items[0] is a and back[0] is a


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_torch_refused(dtype):
    with pytest.raises(TypeError, match="view_as_real"):
        dumps([torch.zeros(2, dtype=dtype)])


@pytest.mark.parametrize("dtype", ["complex64", "uint16", "uint32",
                                   "uint64", "object", "U3"])
def test_unsupported_numpy_dtypes_refused(dtype):
    with pytest.raises(TypeError, match="cannot send a numpy array of dtype"):
        dumps([np.zeros(2, dtype=dtype)])


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_refusals_say_why():
    with pytest.raises(ValueError, match="negative strides"):
        dumps(np.arange(4)[::-1])
    with pytest.raises(ValueError, match="little-endian"):
        dumps(np.zeros(2, dtype=">f4"))
    with pytest.raises(ValueError, match="at most 8"):
        dumps(torch.zeros([1] * 9))
    with pytest.raises(ValueError, match="at most 8"):
        dumps(np.zeros([1] * 9))
    with pytest.raises(TypeError, match="layout"):
        dumps(torch.zeros(2, 2).to_sparse())
    with pytest.raises(TypeError, match="subclass"):
        dumps(np.matrix([[1.0]]))
    with pytest.raises(ValueError, match="conjugate or negative"):
        dumps(torch.zeros(2, dtype=torch.float32)._neg_view())


def test_parameters_and_modules_travel_zero_copy():
    m = torch.nn.Linear(3, 2)
    back, data, items = roundtrip(m)
    assert isinstance(back, torch.nn.Linear)
    ptrs = {it.data_ptr() for it in items}
    assert m.weight.data_ptr() in ptrs and m.bias.data_ptr() in ptrs
    assert back.weight.data_ptr() == m.weight.data_ptr()
    assert isinstance(back.weight, torch.nn.Parameter)


def test_zero_dim_and_empty():
    s = torch.tensor(3.5)
    e = np.zeros((0, 5), dtype=np.float32)
    back, _, items = roundtrip((s, e))
    assert back[0] is s and back[1] is e


def test_functions_by_reference():
    data, items = dumps(udf)
    assert items == []
    assert b"udf" in data and b"test_pickle" in data
    assert loads(data, []) is udf
    assert loads(*dumps(torch.add)) is torch.add


def test_lambda_and_local_refused_with_clear_error():
    with pytest.raises(pickle.PicklingError, match="by reference"):
        dumps(lambda: 1)

    def local():
        pass

    with pytest.raises(pickle.PicklingError, match="top level of a module"):
        dumps((local, ()))


def test_missing_function_on_callee_is_attribute_error():
    data, items = dumps(udf)
    data = data.replace(b"udf", b"fud")
    with pytest.raises(AttributeError, match="both the caller and the callee"):
        loads(data, items)


def test_foreign_persistent_ids_refused():
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("evil", 0) if obj == "x" else None
    import io
    f = io.BytesIO()
    P(f, protocol=5).dump(["x"])
    with pytest.raises(pickle.UnpicklingError, match="unknown persistent id"):
        loads(f.getvalue(), [torch.ones(1)])
    data, items = dumps([torch.ones(1)])
    with pytest.raises(pickle.UnpicklingError, match="item 0 of 0"):
        loads(data, [])


def test_rref_hooks():
    r = FakeRRef(7)
    try:
        # unknown until the C side says which classes are RRefs
        _, items = dumps([r])
        assert items == []
        _pickle.set_rref_hooks(FakeRRef, reducer=lambda x: ("fork", x.n),
                               receiver=lambda it: FakeRRef(it[1] + 100))
        t = torch.ones(2)
        data, items = dumps({"r": r, "again": r, "t": t})
        assert len(items) == 2                      # r lifted once
        assert items[0] == ("fork", 7) and items[1] is t
        back = loads(data, items)
        assert isinstance(back["r"], FakeRRef) and back["r"].n == 107
        assert back["again"] is back["r"]
        assert back["t"] is t
        # default hooks: the RRef object itself is the item
        _pickle.set_rref_hooks((FakeRRef,))
        data, items = dumps([r])
        assert items[0] is r and loads(data, items)[0] is r
    finally:
        _pickle.set_rref_hooks(())
    with pytest.raises(TypeError):
        _pickle.set_rref_hooks([1])


def test_nested_dumps_are_independent():
    # a __reduce__ that pickles something itself must not disturb the
    # outer table (torch's pickler saves and restores a thread-local one)
    t_inner = torch.ones(1)

    class Inner:
        def __reduce__(self):
            dumps(t_inner)
            return (dict, ())

    t = torch.zeros(2)
    data, items = dumps([t, Inner(), t])
    assert len(items) == 1 and items[0] is t


def test_tensor_subclass_lifted_and_restored():
    base = torch.arange(8, dtype=torch.float32)
    m = base.as_subclass(MyTensor)
    m.tag = "kept"
    back, data, items = roundtrip({"m": m, "again": m})
    assert len(items) == 1 and type(items[0]) is torch.Tensor
    assert items[0].data_ptr() == base.data_ptr()      # a view, no copy
    assert len(data) < 1000
    r = back["m"]
    assert type(r) is MyTensor and r.tag == "kept"
    assert r.data_ptr() == base.data_ptr()
    assert back["again"] is r


def test_subclass_pid_validated():
    data, items = dumps(torch.zeros(1).as_subclass(MyTensor))
    assert b"MyTensor" in data
    # a pid naming a class that is not a tensor subclass is refused
    bad = data.replace(b"MyTensor", b"FakeRRef")
    with pytest.raises(pickle.UnpicklingError, match="unknown persistent id"):
        loads(bad, items)
