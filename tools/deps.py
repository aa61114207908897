"""Prints the pinned requirements from pyproject.toml, one per line (the one place they are listed).

Usage: python tools/deps.py [EXTRA ...]
"""

import pathlib
import sys

import tomllib

project = tomllib.loads((pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text())[
    "project"
]
deps = list(project["dependencies"])
for extra in sys.argv[1:]:
    deps += project["optional-dependencies"][extra]
print("\n".join(deps))
