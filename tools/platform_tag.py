"""The wheel platform tag that says what the compiled op libraries need from the system.

Each library asks the dynamic linker for versioned symbols (`GLIBC_2.27`, `GLIBCXX_3.4.30`, ...);
the lowest `manylinux_2_X` level whose policy provides all of them is the tag. The table below is
the x86_64 column of the manylinux policies (PEP 600, as auditwheel defines them): for each glibc
level, the newest libstdc++ (`GLIBCXX`), C++ ABI (`CXXABI`) and libgcc (`GCC`) symbol versions it
guarantees.
The level never goes below TensorFlow 2.21's own (`manylinux_2_27`): the libraries link
`libtensorflow_framework.so.2`, which that wheel brings.

What no wheel tag can say: the libraries are compiled for x86-64-v3 (AVX2, FMA, BMI2; Haswell or
Zen 1 and newer; their x86-64-v4 twins are loaded only on CPUs with AVX-512), and
`libtensorflow_framework.so.2` comes from the installed TensorFlow, not from this wheel.

Usage: python tools/platform_tag.py LIB.so ...   (prints the tag and the versions that set it)
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys

# manylinux_2_X (x86_64): newest GLIBCXX, CXXABI and GCC symbol versions the policy allows.
MANYLINUX_X86_64: list[tuple[int, str, str, str]] = [
    (17, "3.4.19", "1.3.7", "4.8.0"),
    (24, "3.4.22", "1.3.10", "4.8.0"),
    (27, "3.4.24", "1.3.11", "7.0.0"),
    (28, "3.4.24", "1.3.11", "7.0.0"),
    (31, "3.4.28", "1.3.12", "7.0.0"),
    (34, "3.4.29", "1.3.13", "7.0.0"),
    (35, "3.4.30", "1.3.13", "12.0.0"),
    (36, "3.4.30", "1.3.13", "12.0.0"),
    (37, "3.4.30", "1.3.13", "12.0.0"),
    (38, "3.4.30", "1.3.13", "12.0.0"),
    (39, "3.4.33", "1.3.15", "14.0.0"),
    (40, "3.4.33", "1.3.15", "14.0.0"),
    (41, "3.4.33", "1.3.15", "14.0.0"),
]
# TensorFlow 2.21's wheels are manylinux_2_27: nothing that loads into them can ask for less.
MIN_GLIBC_MINOR = 27

_VERSION_RE = re.compile(r"\b(GLIBC|GLIBCXX|CXXABI|GCC)_([0-9]+(?:\.[0-9]+)*)\b")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def needed_versions(paths: list[str]) -> dict[str, str]:
    """The newest version each of GLIBC, GLIBCXX, CXXABI and GCC is asked for by these ELF files
    (their "version needs", as `readelf --version-info` prints them)."""
    newest: dict[str, str] = {}
    for path in paths:
        out = subprocess.run(
            ["readelf", "--version-info", "--wide", path],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        # Only the "Version needs" section: what the file asks of others, not what it defines.
        needs = out.split("Version needs section", 1)[-1] if "Version needs section" in out else ""
        if "GLIBC_ABI_DT_RELR" in needs:  # packed relative relocations: glibc 2.36
            needs += " GLIBC_2.36"
        for name, version in _VERSION_RE.findall(needs):
            if name not in newest or _key(version) > _key(newest[name]):
                newest[name] = version
    return newest


def manylinux_tag(needed: dict[str, str], machine: str | None = None) -> str:
    """The lowest manylinux_2_X tag that provides `needed` (else `linux_<machine>`)."""
    machine = machine or platform.machine()
    if machine != "x86_64":
        return f"linux_{machine}"
    glibc = needed.get("GLIBC", "2.0")
    glibc_minor = max(_key(glibc)[1] if len(_key(glibc)) > 1 else 0, MIN_GLIBC_MINOR)
    for level, glibcxx, cxxabi, gcc in MANYLINUX_X86_64:
        if level < glibc_minor:
            continue
        allowed = {"GLIBCXX": glibcxx, "CXXABI": cxxabi, "GCC": gcc}
        if all(_key(needed[k]) <= _key(v) for k, v in allowed.items() if k in needed):
            return f"manylinux_2_{level}_{machine}"
    return f"linux_{machine}"


def main(argv: list[str]) -> None:
    needed = needed_versions(argv)
    print(manylinux_tag(needed))
    print(" ".join(f"{k}_{v}" for k, v in sorted(needed.items())), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
