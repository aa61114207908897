"""Both CPU builds of the op library and both product paths of packed_gemm.h against the float64
reference: on an AVX-512 CPU the x86-64-v4 library (`_tf_rnn_ops_avx512.so`, whose cells' passes
run 16 floats wide) with the AVX-512 micro-kernels; with TF_RNN_OPS_NO_AVX512=1 the x86-64-v3
library with the AVX2 ones (the switch is read once per process: hence a subprocess per path,
gemm_dispatch_program.py). The AVX2 half runs on every machine; the AVX-512 half is skipped only
where the CPU lacks AVX-512F (then both runs would take the AVX2 path). Every cell runs here, so
that the build the rest of the suite does not load is tested too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# MODE:B:T:I:H[:bidirectional]; see gemm_dispatch_program.py for the edges each one reaches.
CASES = [
    "gru:3:4:2:1",
    "lstm:7:5:4:3:bidirectional",
    "gru:7:3:5:257",
    "lstm:13:25:20:33",
    "gru:0:3:4:5",
    "gru_reset_before:5:4:3:19",
    "rnn_tanh:9:3:4:35",
    "rnn_relu:4:5:3:17:bidirectional",
]


def _cpu_flags() -> set[str]:
    """The CPU's flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return set()
    return next((set(ln.split(":", 1)[1].split()) for ln in lines if ln.startswith("flags")), set())


def _expected_library(path: str) -> str:
    """The op library the loader should pick in the subprocess (tf_rnn_ops/_loader.py's rule,
    restated: the x86-64-v4 build on a CPU with all of its AVX-512 subsets, unless switched off)."""
    override = os.environ.get("TF_RNN_OPS_LIBRARY")
    if override:
        return Path(override).name
    v4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= _cpu_flags()
    return "_tf_rnn_ops_avx512.so" if path == "avx512" and v4 else "_tf_rnn_ops.so"


@pytest.mark.parametrize("path", ["avx512", "avx2"])
def test_product_path_matches_reference(rng, path):
    if path == "avx512" and "avx512f" not in _cpu_flags():
        pytest.skip("this CPU has no AVX-512F: the library runs the AVX2 kernels only")
    env = dict(os.environ)
    env.pop("TF_RNN_OPS_NO_AVX512", None)
    if path == "avx2":
        env["TF_RNN_OPS_NO_AVX512"] = "1"
    support = str(REPO / "tests" / "support")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), support] + [env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(
        [sys.executable, str(HERE / "gemm_dispatch_program.py"), str(int(rng.integers(1 << 30))),
         *CASES],
        env=env, cwd=str(REPO), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
    loaded = next(line for line in proc.stdout.splitlines() if line.startswith("loaded"))
    assert loaded.split()[1:] == [_expected_library(path)], loaded
