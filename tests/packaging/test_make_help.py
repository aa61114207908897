"""`make help` lists every target of the Makefile and its fragments, one line each.

The list is generated from the `## ` comment on each rule line, so a target without one is missing
from it: every target declared .PHONY in the project's make files must have that comment, and must
appear in `make help`'s output exactly once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Not targets a user runs: FORCE is the always-out-of-date prerequisite of generated files.
INTERNAL = {"FORCE"}


def _make_files() -> list[str]:
    """The make files `make help` reads: the Makefile's own MAKE_FILES list."""
    with open(os.path.join(REPO, "Makefile")) as f:
        text = f.read()
    m = re.search(r"^MAKE_FILES\s*:=\s*(.+)$", text, re.M)
    assert m, "the Makefile has no MAKE_FILES list"
    return m.group(1).split()


def _read(path: str) -> str:
    with open(os.path.join(REPO, path)) as f:
        return f.read().replace("\\\n", " ")  # continuation lines joined


def _phony_targets() -> dict[str, str]:
    """Every target named in a .PHONY line of the make files, with the file that declares it."""
    targets = {}
    for path in _make_files():
        for line in _read(path).splitlines():
            if line.startswith(".PHONY:"):
                for t in line.split(":", 1)[1].split():
                    targets[t] = path
    return targets


def test_make_files_are_included():
    """Each fragment of MAKE_FILES is pulled in by a plain `include` (a missing one is an error)."""
    makefile = _read("Makefile")
    for path in _make_files()[1:]:
        assert re.search(rf"^include {re.escape(path)}$", makefile, re.M), path
    assert not re.search(r"^-include .*\.mk$", makefile, re.M), "a fragment included silently"


def test_every_phony_target_has_a_help_line():
    targets = _phony_targets()
    assert {"build", "test", "lint", "format", "gpu-check", "bazel", "asan"} <= set(targets)
    for target, path in sorted(targets.items()):
        if target in INTERNAL:
            continue
        rule = re.search(rf"^{re.escape(target)}:[^=\n]*?## (.+)$", _read(path), re.M)
        assert rule, f"{path}: target {target!r} has no `## ` description on its rule line"
        assert rule.group(1).strip(), f"{path}: target {target!r} has an empty description"


def test_make_help_lists_every_target_once():
    if shutil.which("make") is None:
        pytest.skip("no make here")
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    listed = [line.split()[1] for line in out.splitlines() if line.startswith("make ")]
    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    expected = set(_phony_targets()) - INTERNAL
    assert set(listed) == expected, (
        f"missing: {sorted(expected - set(listed))}, unknown: {sorted(set(listed) - expected)}"
    )
    assert all(len(line.split(None, 2)) == 3 for line in out.splitlines()), out
