"""Both CPU product paths of packed_gemm.h against the float64 reference: the AVX-512 micro-kernels
(chosen at run time where the CPU has AVX-512F) and the AVX2 ones (forced by TF_RNN_OPS_NO_AVX512=1,
read once per process: hence a subprocess per path, gemm_dispatch_program.py).
The library is built for x86-64-v3, so the AVX2 half runs on every machine; the AVX-512 half is
skipped only where the CPU lacks AVX-512F (then both runs would take the AVX2 path).
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
]


def _cpu_has_avx512f() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(
        line.startswith("flags") and "avx512f" in line.split() for line in flags.splitlines()
    )


@pytest.mark.parametrize("path", ["avx512", "avx2"])
def test_product_path_matches_reference(rng, path):
    if path == "avx512" and not _cpu_has_avx512f():
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
