"""torch's own distributed autograd tests that apply, ported (agtorch.py),
run in one group of three workers."""
import pytest

import agtorch
import rpcgroup


@pytest.fixture(scope="module")
def results():
    return rpcgroup.run("agtorch:body_all", world=3, timeout=300)


@pytest.mark.parametrize("name", agtorch.TESTS)
def test_ported(results, name):
    assert results[name] is None, results[name]


def test_contexts_all_ended(results):
    assert all(c == (0, 0) for c in results["_counts"]), results["_counts"]
