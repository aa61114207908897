"""The layer-norm cells' shared per-unit math (cc/cells/layer_norm_cells.h), the one definition that
both the CPU row pass (cc/kernels/layer_norm_cpu_rows.h) and the CUDA kernels
(cc/cuda/layer_norm_rnn_cuda.cu.cc) call.

A small C++ program that includes only that header, compiled with `-I<repo>` and nothing else (no
TensorFlow, no Eigen: the header must stay framework-free for NVRTC), evaluates every per-unit
function in double at fresh random points. Its forward values are compared with numpy float64 of the
equations (docs/MATH.md, "Cells beyond cuDNN": LayerNormLSTM,
LayerNormGRU, Zoneout), its grads with central finite
differences of those numpy equations. Skipped without a C++ compiler or the sources.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CXX = os.environ.get("CXX", "g++")

# Reads N, then N lines of 16 doubles; prints one line of results per input line.
PROGRAM = r"""
#include <cstdio>
#include "cc/cells/layer_norm_cells.h"
using namespace tf_rnn_ops;
using namespace tf_rnn_ops::layer_norm_cells;
using L = LayerNormLstmCell;
using G = LayerNormGruCell;
int main() {
  int n = 0;
  if (std::scanf("%d", &n) != 1) return 1;
  for (int t = 0; t < n; ++t) {
    double v[16];
    for (double& x : v) if (std::scanf("%lf", &x) != 1) return 1;
    // LSTM: pre-activations zi zf zg zo, c_prev, dh, dc_next.
    double a[4];
    for (int g = 0; g < 4; ++g) {
      const double z = L::Preactivation(v[g], 0.5 * v[g], -0.25);
      a[g] = L::IsTanhGate(g) ? Tanh(z) : Sigmoid(z);
    }
    const double c = L::CellUpdate(a[0], a[1], a[2], v[4]);
    const double h = L::HTilde(a[3], Tanh(c));
    const auto og = L::OutputBackward(v[5], a[3], Tanh(c), v[6]);
    const auto ug = L::CellUpdateBackward(og.d_c, a[0], a[1], a[2], v[4]);
    std::printf("%.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g ", c, h, og.d_o, ug.d_i, ug.d_f,
                ug.d_g, ug.d_c_prev, og.d_c);
    // GRU: x^ z r g = v[7..9], h^ z r g = v[10..12], h_prev v[13], dh v[14].
    const double z = Sigmoid(G::GatePreactivation(v[7], v[10]));
    const double r = Sigmoid(G::GatePreactivation(v[8], v[11]));
    const double g = Tanh(G::CandidatePreactivation(r, v[9], v[12]));
    const double hg = G::HTilde(z, g, v[13]);
    const auto u = G::Backward(v[14], z, r, g, v[12], v[13]);
    std::printf("%.17g %.17g %.17g %.17g %.17g %.17g ", hg, u.d_z, u.d_r, u.d_g, u.d_h_side_g,
                u.d_h_prev);
    // Zoneout: h_prev v[13], h~ v[0], keep v[15], dh v[14].
    const auto zg = ZoneoutBackward(v[14], v[15]);
    std::printf("%.17g %.17g %.17g ", Zoneout(v[13], v[0], v[15]), zg.d_tilde, zg.d_prev);
    // LN over the row v[0..7) with γ = v[7..14), β = 0.3, eps 1e-3: its output, then the input
    // grad of sum(w · output) with w = v[8..15).
    constexpr int kN = 7;
    double mean = 0, var = 0, xhat[kN], mg = 0, mgx = 0;
    for (int j = 0; j < kN; ++j) mean += v[j] / kN;
    for (int j = 0; j < kN; ++j) var += (v[j] - mean) * (v[j] - mean) / kN;
    const double inv = InvStd(var, 1e-3);
    for (int j = 0; j < kN; ++j) {
      xhat[j] = Normalized(v[j], mean, inv);
      std::printf("%.17g ", Denormalized(xhat[j], v[7 + j], 0.3));
      mg += v[8 + j] * v[7 + j] / kN;
      mgx += v[8 + j] * v[7 + j] * xhat[j] / kN;
    }
    for (int j = 0; j < kN; ++j) {
      std::printf("%.17g ", NormalizeInputGrad(v[8 + j], v[7 + j], xhat[j], inv, mg, mgx));
    }
    std::printf("\n");
  }
  const LayerNormReserveLayout rl(5, 3, 12, true), rg(5, 3, 9, false);
  std::printf("%lld %lld %lld %lld %lld %lld %lld %lld %lld %lld\n", (long long)rl.xhat_h,
              (long long)rl.act, (long long)rl.c_hat, (long long)rl.h_prev, (long long)rl.c_prev,
              (long long)rl.h_tilde, (long long)rl.stats, (long long)rl.size,
              (long long)rg.h_prev, (long long)rg.size);
  return 0;
}
"""


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_unit(v):
    """c and h~ of the LSTM unit (LN of c left out: h~ = σ(o) tanh(c)); pre-activations as the
    program's (x side v, h side v/2, bias -1/4)."""
    z = v[:4] * 1.5 - 0.25
    i, f, g, o = sig(z[0]), sig(z[1]), np.tanh(z[2]), sig(z[3])
    c = f * v[4] + i * g
    return c, o * np.tanh(c)


def gru_unit(v):
    z = sig(v[7] + v[10])
    r = sig(v[8] + v[11])
    g = np.tanh(r * v[12] + v[9])
    return z * v[13] + (1 - z) * g


def layer_norm(x, gamma):
    xhat = (x - x.mean()) / np.sqrt(x.var() + 1e-3)
    return xhat * gamma + 0.3


def fd(f, v, k, eps=1e-6):
    """d f / d v[k] by central differences."""
    vp, vm = v.copy(), v.copy()
    vp[k] += eps
    vm[k] -= eps
    return (f(vp) - f(vm)) / (2 * eps)


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if shutil.which(CXX) is None:
        pytest.skip(f"no C++ compiler ({CXX})")
    if not os.path.exists(os.path.join(REPO, "cc", "cells", "layer_norm_cells.h")):
        pytest.skip("no C++ sources here (Bazel's runfiles hold the tests and libraries only)")
    d = tmp_path_factory.mktemp("ln_cells")
    src, exe = d / "ln_cells.cc", d / "ln_cells"
    src.write_text(PROGRAM)
    # -I<repo> only: the header and what it includes must need no TensorFlow or Eigen.
    subprocess.run(
        [CXX, "-std=c++17", "-O1", "-Wall", "-Werror", "-I", REPO, str(src), "-o", str(exe)],
        check=True,
        capture_output=True,
        text=True,
    )
    return str(exe)


def run(program, points):
    text = f"{len(points)}\n" + "\n".join(" ".join(repr(float(x)) for x in p) for p in points)
    out = subprocess.run([program], input=text, check=True, capture_output=True, text=True).stdout
    lines = out.strip().splitlines()
    return np.array([[float(x) for x in ln.split()] for ln in lines[:-1]]), lines[-1]


def test_per_unit_math_against_numpy_and_finite_differences(program, rng):
    points = rng.uniform(-1.5, 1.5, size=(25, 16))
    points[:, 15] = rng.uniform(0, 1, size=25)  # the zoneout keep value
    got, _ = run(program, points)
    for v, row in zip(points, got, strict=True):
        _check_point(v, row)


def _check_point(v, row):
    """One point's results `row` of the program against numpy and finite differences."""
    c, h, d_o, d_i, d_f, d_g, d_cprev, d_c = row[:8]
    dh, dc_next = v[5], v[6]

    # LSTM: L = dh h~ + dc_next c; the pre-activation of gate k moves with v[k] by 1.5.
    def loss(w):
        cc, hh = lstm_unit(w)
        return dh * hh + dc_next * cc

    ref_c, ref_h = lstm_unit(v)
    np.testing.assert_allclose([c, h], [ref_c, ref_h], rtol=1e-12, atol=1e-14)
    grads = [fd(loss, v, k) / 1.5 for k in range(4)]
    np.testing.assert_allclose([d_i, d_f, d_g, d_o], grads, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d_cprev, fd(loss, v, 4), rtol=1e-6, atol=1e-8)
    # d_c: the grad of L through c alone (its use in h~ and in the later steps).
    o = sig(v[3] * 1.5 - 0.25)

    def closs(x):
        return dc_next * x[0] + dh * o * np.tanh(x[0])

    np.testing.assert_allclose(d_c, fd(closs, np.array([ref_c]), 0), rtol=1e-6, atol=1e-8)

    # GRU: L = dh h~.
    hg, dz, dr, dg, dhg, dhp = row[8:14]
    dh_g = v[14]
    np.testing.assert_allclose(hg, gru_unit(v), rtol=1e-12, atol=1e-14)

    def gloss(w):
        return dh_g * gru_unit(w)

    np.testing.assert_allclose(dz, fd(gloss, v, 7), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dz, fd(gloss, v, 10), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dr, fd(gloss, v, 8), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dg, fd(gloss, v, 9), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dhg, fd(gloss, v, 12), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dhp, fd(gloss, v, 13), rtol=1e-6, atol=1e-8)

    # Zoneout: h = h_prev + k (h~ - h_prev), L = dh h.
    zh, zd_tilde, zd_prev = row[14:17]
    k = v[15]
    np.testing.assert_allclose(zh, v[13] + k * (v[0] - v[13]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose([zd_tilde, zd_prev], [dh_g * k, dh_g * (1 - k)], rtol=1e-12)

    # LN: output, and the input grad of sum(w · LN(x)).
    x, gamma, w = v[0:7], v[7:14], v[8:15]
    np.testing.assert_allclose(row[17:24], layer_norm(x, gamma), rtol=1e-12, atol=1e-12)
    ln_grad = [fd(lambda xx: np.sum(w * layer_norm(xx, gamma)), x, j) for j in range(7)]
    np.testing.assert_allclose(row[24:31], ln_grad, rtol=1e-5, atol=1e-7)


def test_one_reserve_layout(program):
    """The regions in order xhat_x, xhat_h, act [G·H]; c_hat [H] (LSTM); h_prev; c_prev (LSTM);
    h~ [H]; stats [3], each [rows, width]: rows 5, H 3 (LSTM G·H 12, GRU 9)."""
    _, last = run(program, [np.zeros(16)])
    rows, H = 5, 3
    lstm = [rows * 12, 2 * rows * 12, 3 * rows * 12, 3 * rows * 12 + rows * H]
    lstm += [lstm[-1] + rows * H, lstm[-1] + 2 * rows * H, lstm[-1] + 3 * rows * H]
    lstm += [lstm[-1] + 3 * rows]
    gru_h_prev = 3 * rows * 9
    gru_size = gru_h_prev + 2 * rows * H + 3 * rows
    assert [int(x) for x in last.split()] == lstm + [gru_h_prev, gru_size]
