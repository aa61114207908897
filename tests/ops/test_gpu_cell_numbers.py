"""tests/gpu/data/gru_block_cell_cpu.npz, the CPU kernels' numbers that the GPU tests compare the
CUDA GRU block cell with (tests/gpu/cpu_cell_numbers.py), must still be what the CPU kernels
compute, and right by docs/MATH.md, "GRU block cell" (the float64 numpy reference). Regenerate it
with `python tests/gpu/cpu_cell_numbers.py` when the CPU kernels' numbers legitimately change."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import tf_rnn_ops

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gpu"))
import cpu_cell_numbers as cn  # noqa: E402
import cuda_rnn_reference as ref  # noqa: E402  (docs/MATH.md's equations in float64 numpy)

DATA = cn.load()
KEYS = [cn.key(case, dtype) for case in cn.CASES for dtype in cn.DTYPES]


def test_every_case_is_in_the_file():
    assert sorted(DATA) == sorted(KEYS)
    for k in KEYS:
        assert sorted(DATA[k]) == sorted(cn.INPUTS + cn.FORWARD + cn.GRAD), k


@pytest.mark.parametrize("k", KEYS)
def test_file_holds_what_the_cpu_kernels_compute(k):
    d = DATA[k]
    got = cn.cpu_numbers(tf_rnn_ops, {name: d[name] for name in cn.INPUTS})
    tol = 1e-12 if d["x"].dtype == np.float64 else 2e-6
    for name in cn.FORWARD + cn.GRAD:
        assert got[name].dtype == d[name].dtype
        np.testing.assert_allclose(got[name], d[name], rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("k", KEYS)
def test_file_is_right_by_the_spec(k):
    d = {name: a.astype(np.float64) for name, a in DATA[k].items()}
    cell = [d[n] for n in ("x", "h_prev", "w_ru", "w_c", "b_ru", "b_c")]
    want = ref.gru_block_cell(*cell)
    tol = 1e-12 if DATA[k]["x"].dtype == np.float64 else 1e-5
    for name, w in zip(cn.FORWARD, want, strict=True):
        np.testing.assert_allclose(d[name], w, rtol=tol, atol=tol, err_msg=name)
    want = ref.gru_block_cell_grad(*cell, d["r"], d["u"], d["c"], d["d_h"])
    for name, w in zip(cn.GRAD, want, strict=True):
        np.testing.assert_allclose(d[name], w, rtol=tol * 5, atol=tol * 5, err_msg=name)
