"""Shared pytest setup for every folder under tests/: quiet TensorFlow logs, the helper modules of
tests/support/ on sys.path (`import rnn_reference as ref` from any test folder), a reproducible
per-test RNG. The folders are described in tests/README.md."""

from __future__ import annotations

import os
import sys
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Only tests/support/ goes on sys.path, not tests/ itself: the folder names `ops`, `layers` and
# `packaging` would otherwise be importable as namespace packages beside real ones. pytest's default
# "prepend" import mode puts each test file's own folder (none has an __init__.py) first on sys.path
# and imports the file under its basename: a test imports the helpers beside it
# (tests/hardening/subproc.py) by their plain names, and test file basenames must be unique across
# the folders.
SUPPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A numpy Generator seeded from the test's id (and TF_RNN_OPS_TEST_SEED if set), so that every
    test draws its own fresh random data and a failure reproduces."""
    seed = zlib.crc32(request.node.nodeid.encode()) ^ int(
        os.environ.get("TF_RNN_OPS_TEST_SEED", "0")
    )
    return np.random.default_rng(seed)
