"""The op tests that run against other builds of the libraries: Bazel's `//:op_tests` (OP_TESTS in
BUILD) and `make asan` (ASAN_TESTS less ASAN_IGNORE in tools/hardening.mk) both select every test of
tests/ops and tests/cells, and every test file of the ops by name wherever it sits
(test_gru_block_cell*.py, test_cudnn_rnn*.py: the selections named them so before the tests moved
into folders, and tests/layers/test_gru_block_cell_keras.py went out of both with the move).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BY_NAME = ("test_gru_block_cell*.py", "test_cudnn_rnn*.py")


def _required() -> set[str]:
    tests = REPO / "tests"
    files = {p for folder in ("ops", "cells") for p in (tests / folder).glob("test_*.py")}
    files |= {p for pattern in BY_NAME for p in tests.rglob(pattern)}
    return {p.relative_to(REPO).as_posix() for p in files}


def _bazel_op_tests() -> set[str]:
    """BUILD's OP_TESTS, its Starlark expression evaluated with a glob over this tree."""
    text = (REPO / "BUILD").read_text()
    m = re.search(r"^OP_TESTS = (.+?)\n\n", text, re.M | re.S)
    assert m, "BUILD has no OP_TESTS"

    def glob(patterns, exclude=()):
        found = set()
        for pattern in patterns:
            found |= {p.relative_to(REPO).as_posix() for p in REPO.glob(pattern)}
        return sorted(f for f in found if not any(fnmatch.fnmatch(f, e) for e in exclude))

    files = eval(m.group(1), {"__builtins__": {}, "glob": glob})  # noqa: S307 - our own BUILD
    for f in files:
        assert (REPO / f).is_file(), f"BUILD's OP_TESTS names {f}, which does not exist"
    return set(files)


def _make_list(text: str, name: str) -> list[str]:
    """The words of a make variable; $(wildcard X) is X where X exists, else nothing."""
    m = re.search(rf"^{name}\s*\?=(.*)$", text, re.M)
    assert m, f"tools/hardening.mk has no {name}"
    value = re.sub(
        r"\$\(wildcard ([^)]*)\)",
        lambda w: " ".join(x for x in w.group(1).split() if (REPO / x).exists()),
        m.group(1),
    )
    words = value.split()
    assert not [w for w in words if "$" in w], f"{name}: a make function this test cannot read"
    return words


def _asan_tests() -> set[str]:
    """ASAN_TESTS (files, and folders as pytest collects them: test_*.py below) less ASAN_IGNORE."""
    text = (REPO / "tools" / "hardening.mk").read_text().replace("\\\n", " ")
    files = set()
    for word in _make_list(text, "ASAN_TESTS"):
        path = REPO / word
        if path.is_dir():
            files |= {p.relative_to(REPO).as_posix() for p in path.rglob("test_*.py")}
        else:
            assert path.is_file(), f"ASAN_TESTS names {word}, which does not exist"
            files.add(word)
    return files - set(_make_list(text, "ASAN_IGNORE"))


def test_required_tests_exist():
    required = _required()
    assert "tests/layers/test_gru_block_cell_keras.py" in required
    assert any(f.startswith("tests/ops/test_cudnn_rnn") for f in required)


def test_bazel_selects_every_op_test():
    missing = _required() - _bazel_op_tests()
    assert not missing, f"BUILD's OP_TESTS leaves out {sorted(missing)}"


def test_make_asan_selects_every_op_test():
    missing = _required() - _asan_tests()
    assert not missing, f"tools/hardening.mk's ASAN_TESTS leaves out {sorted(missing)}"
