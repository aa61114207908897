"""The layer-norm cells' CPU activations (cc/kernels/layer_norm_cpu_rows.h: SigmoidInPlace,
TanhInPlace over a gate block) give the same bits wherever the block lies in memory.

The row pass runs them on per-range scratch rows whose address (its 64-byte offset) depends on the
heap, and on gate blocks H floats apart; an activation whose values depended on the address (as
when Eigen's array expression sent the values before the first aligned packet and after the last
through its scalar function) would make a call's outputs depend on the heap. A small C++ program
(the header with TensorFlow's Eigen, built for x86-64-v3 and, on a CPU with AVX-512, x86-64-v4 as
the libraries are) applies both to fresh random rows of odd and even lengths at every float offset
of a 64-byte line: every offset must give the bits of offset 0, and the values must match numpy
float64's σ and tanh to float32 accuracy. Skipped without a C++ compiler or the sources.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from tf_rnn_ops._loader import X86_64_V4_FLAGS, cpu_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CXX = os.environ.get("CXX", "g++")
LENGTHS = (1, 3, 15, 16, 17, 31, 256, 257)
OFFSETS = 16  # floats: every offset within a 64-byte line

# Reads n and n floats (hex bits); writes, for each offset, the n sigmoids then the n tanhs (bits).
PROGRAM = r"""
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>
#include "cc/kernels/layer_norm_cpu_rows.h"
using namespace tf_rnn_ops::layer_norm_cells;
int main() {
  long n = 0;
  if (std::scanf("%ld", &n) != 1) return 1;
  std::vector<float> row(n);
  for (float& v : row) {
    uint32_t bits;
    if (std::scanf("%x", &bits) != 1) return 1;
    std::memcpy(&v, &bits, 4);
  }
  alignas(64) static float buffer[64 + 1024];
  for (int offset = 0; offset < 16; ++offset) {
    float* at = buffer + offset;
    for (int f = 0; f < 2; ++f) {
      std::memcpy(at, row.data(), n * sizeof(float));
      if (f == 0) SigmoidInPlace(at, n); else TanhInPlace(at, n);
      for (long j = 0; j < n; ++j) {
        uint32_t bits;
        std::memcpy(&bits, at + j, 4);
        std::printf("%08x ", bits);
      }
    }
    std::printf("\n");
  }
  return 0;
}
"""


def _builds():
    archs = ["x86-64-v3"]
    if set(X86_64_V4_FLAGS) <= set(cpu_flags()):
        archs.append("x86-64-v4")
    return archs


@pytest.fixture(scope="module", params=_builds())
def program(request, tmp_path_factory):
    if shutil.which(CXX) is None:
        pytest.skip(f"no C++ compiler ({CXX})")
    if not os.path.exists(os.path.join(REPO, "cc", "kernels", "layer_norm_cpu_rows.h")):
        pytest.skip("no C++ sources here (Bazel's runfiles hold the tests and libraries only)")
    import tensorflow as tf

    d = tmp_path_factory.mktemp("ln_activations")
    src, exe = d / "ln_activations.cc", d / f"ln_activations_{request.param}"
    src.write_text(PROGRAM)
    subprocess.run(
        [CXX, "-std=c++17", "-O2", f"-march={request.param}", "-DEIGEN_MAX_ALIGN_BYTES=64",
         "-I", REPO, "-isystem", tf.sysconfig.get_include(), str(src), "-o", str(exe)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return str(exe)


@pytest.mark.parametrize("n", LENGTHS)
def test_activations_same_bits_at_every_address(program, n):
    rng = np.random.default_rng()
    row = (rng.standard_normal(n) * 4).astype(np.float32)
    stdin = f"{n}\n" + " ".join(f"{b:08x}" for b in row.view(np.uint32)) + "\n"
    out = subprocess.run([program], input=stdin, check=True, capture_output=True, text=True).stdout
    lines = out.split("\n")[:OFFSETS]
    assert len(lines) == OFFSETS
    bits = np.array([[int(w, 16) for w in line.split()] for line in lines], dtype=np.uint32)
    assert bits.shape == (OFFSETS, 2 * n)
    for offset in range(1, OFFSETS):
        differ = np.flatnonzero(bits[offset] != bits[0])
        assert differ.size == 0, f"offset {offset} floats: values {differ.tolist()} differ"
    values = bits[0].view(np.float32).astype(np.float64)
    x = row.astype(np.float64)
    np.testing.assert_allclose(values[:n], 1.0 / (1.0 + np.exp(-x)), rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(values[n:], np.tanh(x), rtol=2e-6, atol=2e-7)
