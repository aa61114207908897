"""The programs of python/ (scripts, not package modules) imported by path, for the tests that
check their functions."""

from __future__ import annotations

import importlib.util
import os
import types

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def python_program(name: str) -> types.ModuleType:
    """python/<name>.py as a fresh module named `name`."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "python", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
