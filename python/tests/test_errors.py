"""tensorwire._errors: remote exceptions keep their type, worker and traceback."""
import json
import traceback

import pytest
import torch.distributed.rpc as trpc

from tensorwire import _errors as E


class MyError(Exception):
    pass


class MyValueError(ValueError):
    pass


def boom(exc):
    raise exc


def raised(exc, name="w1", wid=1):
    """(kind, message, torch's text) for exc raised in boom on worker name."""
    try:
        boom(exc)
    except BaseException as e:  # noqa: B902 - StopIteration included
        kind, msg = E.to_wire(e, name, wid)
        torch_text = (
            f"On {trpc.WorkerInfo(name, wid)}:\n{e!r}\n{traceback.format_exc()}"
        )
        return kind, msg, torch_text


def test_worker_info_prints_as_torch():
    assert E.worker_info("w1", 3) == repr(trpc.WorkerInfo("w1", 3))
    assert E.worker_info("trainer-0", 0) == str(trpc.WorkerInfo("trainer-0", 0))


@pytest.mark.parametrize(
    "exc, kind",
    [
        (ValueError("bad value"), E.TW_EVALUE),
        (TypeError("bad type"), E.TW_ETYPE),
        (KeyError("k"), E.TW_ERUNTIME),
        (IndexError("i"), E.TW_ERUNTIME),
        (AttributeError("a"), E.TW_ERUNTIME),
        (StopIteration("s"), E.TW_ERUNTIME),
        (RuntimeError("r"), E.TW_ERUNTIME),
    ],
)
def test_kept_types_round_trip(exc, kind):
    k, msg, torch_text = raised(exc)
    assert k == kind
    name = type(exc).__name__
    assert msg == f"{name}: {torch_text}"          # torch's text, type first
    back = E.from_wire(k, msg, "w1", 1)
    assert type(back) is type(exc)
    assert back.args[0] == torch_text
    assert back.args[0].startswith("On WorkerInfo(id=1, name=w1):\n")
    assert f"{exc!r}\n" in back.args[0]
    assert "Traceback (most recent call last):" in back.args[0]
    assert "in boom" in back.args[0]                # remote frames kept


def test_other_types_become_runtime_error_naming_them():
    k, msg, torch_text = raised(OSError("disk"), "w2", 2)
    assert k == E.TW_ERUNTIME
    back = E.from_wire(k, msg)
    assert type(back) is RuntimeError
    # what torch 1.13 shows for a type it does not keep
    assert str(back) == "OSError: " + torch_text
    assert str(back).startswith("OSError: On WorkerInfo(id=2, name=w2):\n")

    k, msg, _ = raised(MyError("mine"))
    back = E.from_wire(k, msg)
    assert type(back) is RuntimeError
    assert str(back).startswith(
        f"{__name__}.MyError: On WorkerInfo(id=1, name=w1):\nMyError('mine')\n")

    # NotImplementedError is a RuntimeError subclass, not one of the seven
    k, msg, _ = raised(NotImplementedError("later"))
    back = E.from_wire(k, msg)
    assert type(back) is RuntimeError and str(back).startswith(
        "NotImplementedError: On WorkerInfo")


def test_subclasses_of_value_and_type_error_keep_their_base():
    try:
        json.loads("{")
    except ValueError as e:
        k, msg = E.to_wire(e, "w1", 1)
    assert k == E.TW_EVALUE
    assert msg.startswith("json.decoder.JSONDecodeError: On WorkerInfo")
    back = E.from_wire(k, msg)
    assert type(back) is ValueError and str(back) == msg

    k, msg, _ = raised(MyValueError("v"))
    back = E.from_wire(k, msg)
    assert type(back) is ValueError
    assert str(back).startswith(f"{__name__}.MyValueError: On WorkerInfo")


def test_parse():
    k, msg, torch_text = raised(KeyError("x"), "w9", 9)
    assert E.parse(msg) == ("KeyError", 9, "w9", torch_text)
    assert E.parse("no function 'f' on worker 'w1'") is None
    assert E.parse("KeyError: something else") is None


def test_foreign_messages_by_kind():
    e = E.from_wire(E.TW_EVALUE, "unsupported device 'cuda'", "w1", 1)
    assert type(e) is ValueError
    assert str(e) == "On WorkerInfo(id=1, name=w1):\nunsupported device 'cuda'"
    assert type(E.from_wire(E.TW_ETYPE, "aten::add() ...")) is TypeError
    for kind in (E.TW_ENOFUNC, E.TW_ETIMEDOUT, E.TW_ERUNTIME, E.TW_EOVERFLOW):
        e = E.from_wire(kind, "m")
        assert type(e) is RuntimeError and str(e) == "m"


def test_non_ascii_survives():
    # torch's caller decodes with unicode_escape and garbles this; we do not
    k, msg, torch_text = raised(ValueError("größe ≠ 3"))
    back = E.from_wire(k, msg)
    assert "ValueError('größe ≠ 3')" in str(back)


def test_chained_exceptions_keep_the_cause():
    def f():
        try:
            {}["k"]
        except KeyError as e:
            raise RuntimeError("lookup failed") from e
    try:
        f()
    except RuntimeError as e:
        k, msg = E.to_wire(e, "w1", 1)
    back = E.from_wire(k, msg)
    assert type(back) is RuntimeError
    assert "KeyError: 'k'" in str(back)
    assert "direct cause" in str(back)


def test_kinds_match_status_h():
    import os
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    path = os.path.join(root, "include", "tensorwire", "status.h")
    if not os.path.exists(path):
        pytest.skip("status.h not found")
    import re
    text = open(path).read()
    found = dict(re.findall(r"\b(TW_E[A-Z]+) = (\d+)", text))
    assert found, "no codes parsed"
    for name, value in found.items():
        assert getattr(E, name) == int(value), name


class BadRepr(Exception):
    def __repr__(self):
        raise ValueError("no repr")

    def __str__(self):
        raise ValueError("no str")


def test_broken_repr_still_names_type_worker_and_traceback():
    try:
        boom(BadRepr())
    except BadRepr as e:
        k, msg = E.to_wire(e, "w3", 3)
    assert k == E.TW_ERUNTIME
    back = E.from_wire(k, msg)
    assert type(back) is RuntimeError
    text = str(back)
    assert text.startswith(f"{__name__}.BadRepr: On WorkerInfo(id=3, name=w3):\n")
    assert "<repr of BadRepr failed: ValueError>" in text
    assert "in boom" in text
