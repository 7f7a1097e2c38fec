# Make the in-tree package importable (python/tensorwire) without installing.
import os
import sys

# Appended: a build tree on PYTHONPATH (with tensorwire._C) comes first.
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "dpdk: a test over the DPDK transport (root, vdevs); "
        "runs only with TW_TEST_DPDK=1, serialized with the other DPDK "
        "tests (meson test --suite dpdk python_dpdk)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TW_TEST_DPDK") == "1":
        return
    skip = pytest.mark.skip(
        reason="DPDK test: run serialized with the other DPDK tests, "
        "`flock /tmp/tw-dpdk.lock meson test -C build --suite dpdk "
        "python_dpdk` (or TW_TEST_DPDK=1)")
    for item in items:
        if "dpdk" in item.keywords:
            item.add_marker(skip)
