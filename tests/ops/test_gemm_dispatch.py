"""Both CPU builds of the op library and both product paths of packed_gemm.h against the float64
reference: on an AVX-512 CPU the x86-64-v4 libraries (`_tf_rnn_ops_avx512.so`, whose cells' passes
run 16 floats wide, and `_tf_cudnn_cpu_kernels_avx512.so`) with the AVX-512 micro-kernels; with
TF_RNN_OPS_NO_AVX512=1 the x86-64-v3 libraries with the AVX2 ones (the switch is read once per
process: hence a subprocess per path, gemm_dispatch_program.py). The AVX2 half runs on every
machine; the AVX-512 half is skipped only where the CPU lacks AVX-512F (then both runs would take
the AVX2 path). Every cell runs here, through our op and TensorFlow's CudnnRNNV3, so that the
builds the rest of the suite does not load are tested too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tf_rnn_ops import _loader

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
    # > 1,024 rows of few gate columns: the weight gradients' rows split between the threads,
    # the input's computed transposed where G·H < I (cpu_gemm.h, AddWeightGradStrided)
    "rnn_tanh:1100:2:40:5",
    "gru:1030:2:3:6:bidirectional",
    # The drop-in layers' op (few rows: weight gradients summed in float into Keras' layout), R's
    # gradient of 2100 x 2100 over 16 rows: up to 4 threads' shares of C over 1 M floats each,
    # where the AVX2 kernels too take WgradRunsColumnBlocks' order (packed_gemm.h)
    "keras:SimpleRNN:4:5:5:2100",
]


def _expected_libraries(path: str) -> list[str]:
    """The two CPU libraries the loader should pick in the subprocess, sorted (the rule of
    tf_rnn_ops/_loader.py, restated: the x86-64-v4 builds on a CPU with all of its AVX-512 subsets,
    unless switched off; TF_RNN_OPS_LIBRARY / TF_RNN_OPS_TF_CUDNN_LIBRARY override each)."""
    v4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= _loader.cpu_flags()
    suffix = "_avx512" if path == "avx512" and v4 else ""
    names = []
    for base, override in (("_tf_rnn_ops", "TF_RNN_OPS_LIBRARY"),
                           ("_tf_cudnn_cpu_kernels", "TF_RNN_OPS_TF_CUDNN_LIBRARY")):  # fmt: skip
        chosen = os.environ.get(override)
        names.append(Path(chosen).name if chosen else f"{base}{suffix}.so")
    return sorted(names)


# Row counts a thread's step product takes in every tile size of both kernels (AVX-512: strips of
# up to 14 rows, balanced: B = 29 -> ranges of 14 | 15 rows, 64 -> 11, 11, 10 a thread; AVX2: 6s,
# the last 7 or 8 rows as 4s), and T·B rows past a product's row block (the input projection).
BITWISE_CASES = [
    "gru:29:4:20:40",
    "lstm:64:3:17:50",
    "rnn_tanh:9:3:4:35",
    "lstm:13:5:20:33",
    "gru:1030:2:3:6",
]


def _run_program(path: str, seed: int, args: list[str], env_extra: dict | None = None):
    env = dict(os.environ)
    env.pop("TF_RNN_OPS_NO_AVX512", None)
    if path == "avx2":
        env["TF_RNN_OPS_NO_AVX512"] = "1"
    env.update(env_extra or {})
    support = str(REPO / "tests" / "support")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), support] + [env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(
        [sys.executable, str(HERE / "gemm_dispatch_program.py"), str(seed), *args],
        env=env, cwd=str(REPO), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
    return proc


@pytest.mark.parametrize("path", ["avx512", "avx2"])
def test_product_path_matches_reference(rng, path):
    if path == "avx512" and "avx512f" not in _loader.cpu_flags():
        pytest.skip("this CPU has no AVX-512F: the library runs the AVX2 kernels only")
    proc = _run_program(path, int(rng.integers(1 << 30)), CASES)
    loaded = next(line for line in proc.stdout.splitlines() if line.startswith("loaded"))
    assert loaded.split()[1:] == _expected_libraries(path), loaded


def test_avx512_step_products_bitwise_avx2(rng, tmp_path):
    """The AVX-512 micro-kernel (tiles of up to 14 rows) sums each output in the AVX2 kernel's
    order (6-row tiles): one library build (x86-64-v3, so that the cells' passes are the same code)
    run on both paths gives bitwise the same outputs and input and state gradients. (Not the
    weight gradients: the AVX-512 path sums them in longer blocks of rows, packed_gemm.h.)"""
    if "avx512f" not in _loader.cpu_flags():
        pytest.skip("this CPU has no AVX-512F: the library runs the AVX2 kernels only")
    seed = int(rng.integers(1 << 30))
    lib = {"TF_RNN_OPS_LIBRARY": str(REPO / "tf_rnn_ops" / "_tf_rnn_ops.so")}
    results = {}
    for path in ("avx512", "avx2"):
        out = tmp_path / f"{path}.npz"
        _run_program(path, seed, [f"--save={out}", *BITWISE_CASES], lib)
        with np.load(out) as saved:
            results[path] = {key: saved[key] for key in saved.files}
    assert sorted(results["avx512"]) == sorted(results["avx2"])
    assert len(results["avx512"]) >= 4 * len(BITWISE_CASES)
    differ = [
        key for key, value in results["avx512"].items()
        if not np.array_equal(value, results["avx2"][key])
    ]  # fmt: skip
    assert not differ, differ
