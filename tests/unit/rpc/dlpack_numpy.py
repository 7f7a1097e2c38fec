"""DLPack interop: NumPy (and torch, when installed) take a tensorwire tensor
without a copy. Run by test_dlpack: dlpack_numpy.py <path/to/libtensorwire.so>.
Exit 0 on success, 77 when numpy is missing (the test then skips), else fail."""
import ctypes
import gc
import sys

SKIP = 77

try:
    import numpy as np
except ImportError:
    print("numpy not installed", file=sys.stderr)
    sys.exit(SKIP)

MAX_DIMS = 8
TW_FLOAT32 = 8
TW_INT64 = 5


class TwTensor(ctypes.Structure):
    """Mirror of struct tw_tensor (include/tensorwire/tensor.h)."""
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("buf", ctypes.c_void_p),
        ("dtype", ctypes.c_uint8),
        ("ndim", ctypes.c_uint8),
        ("reserved_", ctypes.c_uint16),
        ("reserved2_", ctypes.c_uint32),
        ("shape", ctypes.c_int64 * MAX_DIMS),
        ("strides", ctypes.c_int64 * MAX_DIMS),
    ]


class TwBufHead(ctypes.Structure):
    """The leading, public fields of struct tw_buf (include/tensorwire/buf.h)."""
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("refcnt", ctypes.c_uint32),
    ]


lib = ctypes.CDLL(sys.argv[1])
lib.tw_tensor_alloc.argtypes = [ctypes.POINTER(TwTensor), ctypes.c_int,
                                ctypes.c_uint, ctypes.POINTER(ctypes.c_int64)]
lib.tw_tensor_alloc.restype = ctypes.c_int
lib.tw_tensor_init.argtypes = [ctypes.POINTER(TwTensor), ctypes.c_int,
                               ctypes.c_uint, ctypes.POINTER(ctypes.c_int64),
                               ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p,
                               ctypes.c_void_p]
lib.tw_tensor_init.restype = ctypes.c_int
lib.tw_tensor_to_dlpack.argtypes = [ctypes.POINTER(TwTensor),
                                    ctypes.POINTER(ctypes.c_void_p)]
lib.tw_tensor_to_dlpack.restype = ctypes.c_int
lib.tw_tensor_release.argtypes = [ctypes.POINTER(TwTensor)]
lib.tw_tensor_release.restype = None

PyCapsule_New = ctypes.pythonapi.PyCapsule_New
PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
PyCapsule_New.restype = ctypes.py_object


def check(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)


def refcnt(t):
    return TwBufHead.from_address(t.buf).refcnt


def alloc(dtype, shape):
    t = TwTensor()
    dims = (ctypes.c_int64 * len(shape))(*shape)
    check(lib.tw_tensor_alloc(ctypes.byref(t), dtype, len(shape), dims) == 0,
          "tw_tensor_alloc")
    return t


def export(t):
    """A fresh "dltensor" capsule owning a DLManagedTensor of t."""
    mt = ctypes.c_void_p()
    check(lib.tw_tensor_to_dlpack(ctypes.byref(t), ctypes.byref(mt)) == 0,
          "tw_tensor_to_dlpack")
    # No capsule destructor: every consumer here takes ownership (renames
    # the capsule "used_dltensor") and calls the deleter itself.
    return PyCapsule_New(mt.value, b"dltensor", None)


class Producer:
    """The two methods of the Python array API's DLPack protocol."""

    def __init__(self, t):
        self.t = t

    def __dlpack__(self, stream=None, **kwargs):
        return export(self.t)

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU, device 0


def numpy_contiguous():
    t = alloc(TW_FLOAT32, [2, 3])
    vals = (ctypes.c_float * 6).from_address(t.data)
    for i in range(6):
        vals[i] = i * 1.5
    arr = np.from_dlpack(Producer(t))
    check(arr.ctypes.data == t.data, "numpy shares the tensor's bytes")
    check(arr.dtype == np.float32 and arr.shape == (2, 3), "dtype and shape")
    check(arr.strides == (12, 4), "byte strides")
    check(arr.tolist() == [[0.0, 1.5, 3.0], [4.5, 6.0, 7.5]], "values")
    check(refcnt(t) == 2, "the export holds a buffer reference")
    vals[5] = 42.0  # written through C, seen by numpy: same memory
    check(arr[1, 2] == 42.0, "a write is visible through the array")
    del arr
    gc.collect()
    check(refcnt(t) == 1, "numpy called the deleter when the array went")
    lib.tw_tensor_release(ctypes.byref(t))


def numpy_transposed_view():
    m = alloc(TW_INT64, [2, 3])
    vals = (ctypes.c_int64 * 6).from_address(m.data)
    for i in range(6):
        vals[i] = i
    v = TwTensor()
    shape = (ctypes.c_int64 * 2)(3, 2)
    strides = (ctypes.c_int64 * 2)(1, 3)
    check(lib.tw_tensor_init(ctypes.byref(v), TW_INT64, 2, shape, strides,
                             m.data, m.buf) == 0, "tw_tensor_init view")
    lib.tw_tensor_release(ctypes.byref(m))  # the view keeps the buffer
    arr = np.from_dlpack(Producer(v))
    check(arr.ctypes.data == v.data, "numpy shares the view's bytes")
    check(arr.strides == (8, 24), "strided view kept as strides")
    check(arr.tolist() == [[0, 3], [1, 4], [2, 5]], "transposed values")
    del arr
    gc.collect()
    check(refcnt(v) == 1, "deleter ran")
    lib.tw_tensor_release(ctypes.byref(v))


def torch_from_dlpack():
    try:
        import torch
        import torch.utils.dlpack
    except ImportError:
        print("torch not installed: torch interop not tested")
        return
    t = alloc(TW_FLOAT32, [4])
    vals = (ctypes.c_float * 4).from_address(t.data)
    for i in range(4):
        vals[i] = float(i)
    tt = torch.utils.dlpack.from_dlpack(export(t))
    check(tt.data_ptr() == t.data, "torch shares the tensor's bytes")
    check(tt.tolist() == [0.0, 1.0, 2.0, 3.0], "torch values")
    check(refcnt(t) == 2, "torch holds the export")
    del tt
    gc.collect()
    check(refcnt(t) == 1, "torch called the deleter")
    lib.tw_tensor_release(ctypes.byref(t))
    print("torch", torch.__version__, "ok")


numpy_contiguous()
numpy_transposed_view()
torch_from_dlpack()
print("numpy", np.__version__, "ok")
