"""Builds the wheel: compiles the op libraries with the Makefile against the TensorFlow of the
building Python, and tags the wheel with what those libraries need.

- `make wheel` (or `pip wheel --no-build-isolation .` in an environment with TensorFlow 2.21)
  compiles against that TensorFlow. `pip install .` with build isolation compiles against the
  `tensorflow-cpu==2.21.0` that pip puts in the isolated build environment; the result loads into
  either distribution (`tensorflow` or `tensorflow-cpu` 2.21), which share one C++ ABI.
- The libraries go straight into the wheel's build directory: the checkout's own
  `tf_rnn_ops/*.so` and `build/` (from `make build`) are reused when they were compiled against
  the same TensorFlow, and never overwritten with libraries for another one.
- The tag is `py3-none-manylinux_2_X_x86_64`: the libraries use no Python C API (TensorFlow loads
  them), and X is the lowest glibc level whose manylinux policy has every GLIBC/GLIBCXX/CXXABI
  symbol version they ask for (tools/platform_tag.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:  # setuptools >= 70.1
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # older setuptools: the `wheel` package's
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:  # `--no-build-isolation` in an environment without the build requirements
        raise SystemExit(
            "tf_rnn_ops: building needs setuptools>=70.1 or the `wheel` package, and TensorFlow "
            "2.21, in the building environment. With --no-build-isolation, install them first "
            "(`pip install wheel tensorflow-cpu==2.21.0`, or `tensorflow==2.21.0`), or drop "
            "--no-build-isolation and pip brings them into an isolated build environment."
        ) from None

HERE = os.path.dirname(os.path.abspath(__file__))
# The x86-64-v3 libraries, then their x86-64-v4 twins (Makefile; tf_rnn_ops/_loader.py picks).
LIBRARIES = (
    "_tf_rnn_ops.so",
    "_tf_cudnn_cpu_kernels.so",
    "_tf_rnn_ops_avx512.so",
    "_tf_cudnn_cpu_kernels_avx512.so",
)


def _platform_tag_module():
    spec = importlib.util.spec_from_file_location(
        "_platform_tag", os.path.join(HERE, "tools", "platform_tag.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tensorflow_flags(build_info: str) -> dict[str, str]:
    """The make variables tools/tf_flags.py prints for this Python's TensorFlow (and writes the
    `_build_info.json` that ties the libraries to it)."""
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "tools", "tf_flags.py"), build_info],
        capture_output=True,
        text=True,
        cwd=HERE,
    )
    if proc.returncode != 0:  # tools/tf_flags.py says what is missing and what to do
        raise SystemExit(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?")
    flags = dict(line.split(" := ", 1) for line in proc.stdout.splitlines() if " := " in line)
    return flags


def _object_dir(tf_include: str) -> str:
    """Where make keeps the objects: the checkout's `build/` when `make build` compiled them against
    this same TensorFlow, else a folder of their own for this TensorFlow."""
    try:
        with open(os.path.join(HERE, "build", "tf_flags.mk")) as f:
            if f"TF_INCLUDE := {tf_include}\n" in f.read():
                return "build"
    except OSError:
        pass
    return os.path.join("build", "tf-" + hashlib.sha256(tf_include.encode()).hexdigest()[:12])


class BuildPyWithOps(build_py):
    """Copies the Python sources, then compiles the op libraries into the build directory."""

    def run(self):
        super().run()
        for tool in ("make", os.environ.get("CXX", "g++")):
            if shutil.which(tool) is None:
                raise SystemExit(
                    f"tf_rnn_ops: `{tool}` is needed to compile the op libraries (install make and "
                    "a C++17 compiler, e.g. `apt-get install build-essential`)."
                )
        out = os.path.join(os.path.abspath(self.build_lib), "tf_rnn_ops")
        os.makedirs(out, exist_ok=True)
        build_info = os.path.join(out, "_build_info.json")
        flags = _tensorflow_flags(build_info)
        obj = _object_dir(flags["TF_INCLUDE"])
        for name in LIBRARIES:  # build_py copied the checkout's: always link our own
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        os.makedirs(os.path.join(HERE, obj), exist_ok=True)
        subprocess.check_call(
            [
                "make",
                "lib",
                f"PY={sys.executable}",
                "NO_VENV=1",
                f"BUILD={obj}",
                f"LIB={os.path.join(out, LIBRARIES[0])}",
                f"TF_CUDNN_LIB={os.path.join(out, LIBRARIES[1])}",
                f"LIB_AVX512={os.path.join(out, LIBRARIES[2])}",
                f"TF_CUDNN_LIB_AVX512={os.path.join(out, LIBRARIES[3])}",
                f"BUILD_INFO={build_info}",
            ],
            cwd=HERE,
        )


class BdistWheelTagged(bdist_wheel):
    """Tags the wheel `py3-none-<manylinux level the libraries need>`."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        out = os.path.join(
            os.path.abspath(self.get_finalized_command("build_py").build_lib), "tf_rnn_ops"
        )
        libs = [os.path.join(out, name) for name in LIBRARIES]
        if plat.startswith("linux_") and all(os.path.exists(p) for p in libs):
            tag = _platform_tag_module()
            plat = tag.manylinux_tag(tag.needed_versions(libs))
        return "py3", "none", plat


class BinaryDistribution(Distribution):
    def has_ext_modules(self):  # the wheel holds compiled libraries: a platform wheel
        return True


setup(
    cmdclass={"build_py": BuildPyWithOps, "bdist_wheel": BdistWheelTagged},
    distclass=BinaryDistribution,
)
