"""python/bench_peak.py, the benchmarks' one FMA-peak measurement and product-path report.

No timing: the peak loop's source must build in both variants (AVX2 and AVX-512) where a C++
compiler is present, and run and print a rate where the CPU has the variant; the product path
must follow the rule of `UseAvx512()` in cc/kernels/packed_gemm.h (docs/ARCHITECTURE.md, "From the
Python call to the kernel", item 6), TF_RNN_OPS_NO_AVX512 included.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from python_programs import python_program

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load():
    return python_program("bench_peak")


bp = _load()
CXX = os.environ.get("CXX", "g++")


@pytest.mark.skipif(shutil.which(CXX) is None, reason="no C++ compiler")
@pytest.mark.parametrize("variant", sorted(bp.VARIANTS))
def test_peak_source_builds_and_runs(variant, tmp_path):
    exe = str(tmp_path / f"fma_peak_{variant}")
    bp.compile_peak(variant, exe, CXX)
    # The variant's own vector width is what the build selected (not the other branch).
    asm = subprocess.run(
        [CXX, "-O3", *bp.VARIANTS[variant][1], "-fopenmp", "-S", exe + ".cc", "-o", "-"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    zmm = re.search(r"vfmadd\w*ps\s+%zmm", asm) is not None
    ymm = re.search(r"vfmadd\w*ps\s+%ymm", asm) is not None
    assert (zmm, ymm) == ((True, False) if variant == "avx512" else (False, True))
    flags = bp.cpu_flags()
    if flags is None or bp.VARIANTS[variant][2] not in flags:
        pytest.skip(f"the CPU lacks {bp.VARIANTS[variant][2]}: built, not run")
    out = subprocess.run([exe, "1", "1000"], check=True, capture_output=True, text=True, timeout=60)
    assert float(out.stdout.strip().splitlines()[-1]) > 0


def test_peaks_skip_what_cannot_run(monkeypatch):
    # A CPU without AVX-512F: that variant is not run (no SIGILL), and the ceiling is AVX2's.
    monkeypatch.setattr(bp, "cpu_flags", lambda: {"avx2", "fma"})
    peaks = bp.fma_peaks(1, iters=1000)
    assert peaks["avx512"] is None
    assert bp.ceiling(peaks) == peaks["avx2"]


def test_ceiling_is_the_higher_rate():
    assert bp.ceiling({"avx2": 232.0, "avx512": 482.0}) == 482.0
    assert bp.ceiling({"avx2": 232.0, "avx512": None}) == 232.0
    assert bp.ceiling({"avx2": None, "avx512": None}) is None
    text = bp.describe_peaks({"avx2": 232.0, "avx512": 482.0})
    assert text.startswith("482.0 GFLOP/s") and "AVX-512" in text and "232.0" in text
    assert bp.describe_peaks({"avx2": None, "avx512": None}) == "n/a"


@pytest.mark.parametrize(
    ("value", "flags", "want"),
    [
        (None, {"avx2", "avx512f"}, "AVX-512"),
        ("", {"avx2", "avx512f"}, "AVX-512"),
        ("0", {"avx2", "avx512f"}, "AVX-512"),
        ("1", {"avx2", "avx512f"}, "AVX2"),
        ("yes", {"avx2", "avx512f"}, "AVX2"),
        (None, {"avx2", "fma"}, "AVX2"),
    ],
)
def test_product_path_follows_the_env_switch(monkeypatch, value, flags, want):
    monkeypatch.setattr(bp.platform, "machine", lambda: "x86_64")
    environ = {} if value is None else {"TF_RNN_OPS_NO_AVX512": value}
    assert bp.product_path(environ, flags) == want
    # The default environment is os.environ.
    if value is None:
        monkeypatch.delenv("TF_RNN_OPS_NO_AVX512", raising=False)
    else:
        monkeypatch.setenv("TF_RNN_OPS_NO_AVX512", value)
    assert bp.product_path(flags=flags) == want
    monkeypatch.setattr(bp, "cpu_flags", lambda: flags)
    assert f"the {want} micro-kernels" in bp.describe_path()


def test_product_path_mirrors_the_kernel_rule():
    # The rule bench_peak.py mirrors is still the kernel's: the same variable, "0" and empty
    # meaning on, and the CPU's avx512f.
    with open(os.path.join(REPO, "cc", "kernels", "packed_gemm.h")) as f:
        src = f.read()
    body = src[src.index("inline bool UseAvx512()") :]
    body = body[: body.index("\n}\n")]
    assert 'std::getenv("TF_RNN_OPS_NO_AVX512")' in body
    assert "off[0] != '\\0'" in body and 'std::strcmp(off, "0") != 0' in body
    assert '__builtin_cpu_supports("avx512f")' in body


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("training", [False, True])
def test_rnn_product_flops_counts_each_step(steps, training):
    # Summed a step at a time: x_t W every step; h_{t-1} R, dG_t Rᵀ (into h_{t-1}) and
    # h_{t-1}ᵀ dG_t only where h_{t-1} is not the zero initial state; x_tᵀ dG_t every step.
    B, n_in, H, G = 3, 7, 11, 4
    expected = 0
    for t in range(steps):
        recurrent = 1 if t > 0 else 0
        expected += 2 * B * G * H * (n_in + recurrent * H)
        if training:
            expected += 2 * B * G * H * (n_in + 2 * recurrent * H)
    assert bp.rnn_product_flops(B, steps, n_in, H, G, training) == expected


def test_describe_goal_flags_what_no_kernel_can_reach():
    # 1 GFLOP at 100 GFLOP/s: 10 ms at the peak.
    assert bp.floor_ms(1e9, 100.0) == pytest.approx(10.0)
    within = bp.describe_goal(2.0, 40.0, 1e9, 100.0)  # asks for 20 ms
    assert "<= 20.0 ms" in within and "needs 50% of peak" in within
    assert "unreachable" not in within
    beyond = bp.describe_goal(4.0, 20.0, 1e9, 100.0)  # asks for 5 ms
    assert "needs 200% of peak" in beyond and "unreachable" in beyond
    assert "n/a" in bp.describe_goal(3.0, 30.0, 1e9, None)


def test_issue20_benchmark_knows_each_cases_goal(monkeypatch):
    # Every case of bench_cells20.py has its goal (None: zoneout, which the issue sets none for),
    # so that each printed line can say what its goal asks.
    monkeypatch.syspath_prepend(os.path.join(REPO, "python"))  # (its `import bench_peak`)
    cells = python_program("bench_cells20")
    assert set(cells.GOALS) == set(cells.CASES)
    assert all(cells.GOALS[c] is None for c in cells.CASES if "zoneout" in c)
    assert all(cells.GOALS[c] == 5.0 for c in cells.CASES if "dropout" in c)


def test_kernel_gates_reads_the_layers_kernel():
    # The benchmarks' gate counts come from the built layers: [I, G·H] kernels, G = 1, 3, 4.
    import tensorflow as tf

    from tf_rnn_ops import layers as L

    x = tf.zeros([2, 3, 5])
    for cls, gates in [(L.SimpleRNN, 1), (L.GRU, 3), (L.LSTM, 4), (L.LayerNormGRU, 3),
                       (L.LayerNormLSTM, 4)]:  # fmt: skip
        layer = cls(7)
        layer(x)
        assert bp.kernel_gates(layer, 7) == gates, cls.__name__
