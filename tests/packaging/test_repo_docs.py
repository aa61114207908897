"""The repository's own reference documents stay whole and its citations of them stay valid.

docs/MATH.md has its sections in a fixed order (code and tests cite them by name as
`docs/MATH.md, "<section>"`); every such citation names one of them; and the repository cites no
document outside itself (the facts a reader needs are written into docs/ and the docstrings).
"""

from __future__ import annotations

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MATH_SECTIONS = [
    "GRU block cell",
    "Fused RNN cells",
    "Params layout",
    "Dropout",
    "Keras layers",
    "Cells beyond cuDNN",
]
TEXT_SUFFIXES = (".py", ".md", ".h", ".cc", ".sh", ".mk", ".toml", ".bzl", ".cfg")
TEXT_NAMES = ("Makefile", "BUILD", "WORKSPACE")
SKIP_DIRS = {".git", ".venv", "build", "dist", "third_party", "__pycache__", ".hypothesis"}
# The outside document's name, spelled so that this file does not contain it.
OUTSIDE_SPEC = re.compile(r"\b" + "SP" + r"EC\b")
# Where no file may cite that outside specification: the whole repository.
NO_OUTSIDE_SPEC_DIRS = [
    "cc",
    "tf_rnn_ops",
    "tests",
    "python",
    "tools",
    "docs",
    "README.md",
    "Makefile",
    "BUILD",
    "bazel.mk",
]


def _text_files(*roots: str):
    for root in roots:
        path = os.path.join(REPO, root)
        if os.path.isfile(path):
            yield path
            continue
        for d, dirs, files in os.walk(path):
            dirs[:] = [x for x in dirs if x not in SKIP_DIRS and not x.startswith("bazel-")]
            for f in files:
                if f.endswith(TEXT_SUFFIXES) or f in TEXT_NAMES:
                    yield os.path.join(d, f)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_math_doc_sections_in_order():
    text = _read(os.path.join(REPO, "docs", "MATH.md"))
    assert re.findall(r"^## (.+)$", text, re.M) == MATH_SECTIONS


def test_math_doc_citations_name_a_section():
    cited = re.compile(r'docs/MATH\.md,\s+(?:#\s*)?"([^"]+)"', re.M)
    bad = []
    for path in _text_files("."):
        # A citation may be wrapped across comment lines: join them first.
        text = re.sub(r"\n\s*(?://|#)\s*", " ", _read(path))
        for section in cited.findall(text):
            section = " ".join(section.split())  # wrapped across lines
            if section not in MATH_SECTIONS and section != "<section>":  # the form, as written
                bad.append(f"{os.path.relpath(path, REPO)}: {section!r}")
    assert not bad, "citations of docs/MATH.md naming no section:\n" + "\n".join(bad)


def test_no_citation_of_an_outside_spec():
    bad = [
        os.path.relpath(path, REPO)
        for path in _text_files(*NO_OUTSIDE_SPEC_DIRS)
        if OUTSIDE_SPEC.search(_read(path))
    ]
    assert not bad, f"files citing the outside specification (write the facts into docs/): {bad}"
