"""The CUDA GRU block cell (forward and grad kernel) against the float64 numpy implementation of
docs/MATH.md, "GRU block cell", and against our CPU kernels' numbers (data/gru_block_cell_cpu.npz,
written by cpu_cell_numbers.py: this machine has no TensorFlow). Needs a CUDA device and PyTorch
(skipped otherwise)."""

from __future__ import annotations

import cpu_cell_numbers as cn
import cuda_rnn_reference as ref
import gpu_harness
import numpy as np
import pytest

torch = gpu_harness.require_gpu_library()


@pytest.fixture(scope="module")
def lib():
    library = gpu_harness.open_library(torch)
    yield library
    library.close()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "batch,isz,hsz", [(1, 1, 1), (3, 4, 5), (32, 48, 64), (64, 128, 256), (5, 0, 7), (2, 300, 3)]
)
def test_matches_spec(lib, dtype, batch, isz, hsz):
    rng = np.random.default_rng(batch + 7 * isz + 13 * hsz)

    def rand(*shape):
        return rng.uniform(-0.8, 0.8, shape)

    x, h = rand(batch, isz), rand(batch, hsz)
    w_ru, w_c = rand(isz + hsz, 2 * hsz) / np.sqrt(1 + isz + hsz), rand(isz + hsz, hsz)
    b_ru, b_c, d_h = rand(2 * hsz), rand(hsz), rand(batch, hsz)
    be = lib.backend
    ins = [be.from_numpy(a, dtype) for a in (x, h, w_ru, w_c, b_ru, b_c)]
    got = lib.gru_block_cell(*ins, dtype=dtype)
    want = ref.gru_block_cell(x, h, w_ru, w_c, b_ru, b_c)
    tol = 1e-12 if dtype == "float64" else 1e-5
    for name, g, w in zip("ruch", got, want, strict=True):
        np.testing.assert_allclose(be.to_numpy(g), w, rtol=tol, atol=tol, err_msg=name)
    # the grad kernel, from the reference's r, u, c
    grad_ins = [be.from_numpy(a, dtype) for a in (*want[:3], d_h)]
    got = lib.gru_block_cell_grad(*ins, *grad_ins, dtype=dtype)
    want = ref.gru_block_cell_grad(x, h, w_ru, w_c, b_ru, b_c, *want[:3], d_h)
    tol = 1e-11 if dtype == "float64" else 5e-5
    names = ["d_x", "d_h_prev", "d_c_bar", "d_r_bar_u_bar"]
    for name, g, w in zip(names, got, want, strict=True):
        np.testing.assert_allclose(be.to_numpy(g), w, rtol=tol, atol=tol, err_msg=name)


CPU_NUMBERS = cn.load()


@pytest.mark.parametrize("k", [cn.key(case, dtype) for case in cn.CASES for dtype in cn.DTYPES])
def test_matches_the_cpu_kernels(lib, k):
    d = CPU_NUMBERS[k]
    dtype = str(d["x"].dtype)
    be = lib.backend
    ins = [be.from_numpy(d[n], dtype) for n in ("x", "h_prev", "w_ru", "w_c", "b_ru", "b_c")]
    tol = 1e-12 if dtype == "float64" else 1e-5
    got = lib.gru_block_cell(*ins, dtype=dtype)
    for name, g in zip(cn.FORWARD, got, strict=True):
        np.testing.assert_allclose(be.to_numpy(g), d[name], rtol=tol, atol=tol, err_msg=name)
    grad_ins = [be.from_numpy(d[n], dtype) for n in ("r", "u", "c", "d_h")]
    got = lib.gru_block_cell_grad(*ins, *grad_ins, dtype=dtype)
    tol = 1e-11 if dtype == "float64" else 5e-5
    for name, g in zip(cn.GRAD, got, strict=True):
        np.testing.assert_allclose(be.to_numpy(g), d[name], rtol=tol, atol=tol, err_msg=name)
