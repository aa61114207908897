"""The weight-gradient product reading its operands in place (cc/kernels/packed_gemm.h,
GemmTransposedA where B has no mask and its rows and A's are close: WgradInPlace512 on AVX-512,
WgradInPlace on the AVX2 kernels) against the same product packed, and against a double loop.

A small C++ program (the header alone, built for x86-64-v3 as the library is; its AVX-512 kernels
run unless TF_RNN_OPS_NO_AVX512=1, as in the library) runs GemmTransposedA on operands whose rows
are close (the in-place reads) and on copies of them with rows far apart (the packed path, the same
values): the double sums must be bitwise the same (the same runs, groups and blocks of K) and within
float rounding of a double reference. Each operand ends where a page with no access begins, so that
a read past A's last panel row or B's last strip row (the masked loads of a partial panel, the
strip's broadcasts) kills the program. Split ranges of C's rows (m_begin, m_end in multiples of 16,
as the callers split them) are covered too.
Both paths; the AVX-512 one skipped on a CPU without AVX-512F. Skipped without a C++ compiler or
the sources.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tf_rnn_ops._loader import cpu_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CXX = os.environ.get("CXX", "g++")

PROGRAM = r"""
#include <sys/mman.h>
#include <unistd.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>
#include "cc/kernels/packed_gemm.h"
using namespace tf_rnn_ops;

// n floats ending where a page with no access begins.
float* Guarded(size_t n) {
  const size_t page = sysconf(_SC_PAGESIZE);
  const size_t bytes = (n * sizeof(float) + page - 1) / page * page;
  char* map = static_cast<char*>(mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (map == MAP_FAILED || mprotect(map + bytes, page, PROT_NONE) != 0) std::exit(3);
  return reinterpret_cast<float*>(map + bytes) - n;
}

int main(int, char** argv) {
  // (the rule of the path that runs: AVX-512, or the AVX2 kernels with TF_RNN_OPS_NO_AVX512=1)
  auto in_place_rule = [](int64_t N, int64_t lda, int64_t ldb) {
    return UseAvx512() ? packed_gemm_internal::WgradInPlace512(N, lda, ldb)
                       : packed_gemm_internal::WgradInPlace(N, lda, ldb);
  };
  std::mt19937 g(std::strtoul(argv[1], nullptr, 10));
  std::uniform_real_distribution<float> u(-1, 1);
  struct Shape { int M, N, lda, ldb; };
  const Shape shapes[] = {{32, 32, 32, 32}, {31, 29, 31, 29}, {17, 5, 20, 7}, {64, 64, 64, 64},
                          {96, 32, 96, 32}, {128, 20, 128, 512}, {33, 40, 64, 1024},
                          {1, 1, 1, 1}, {16, 3, 16, 3}, {48, 48, 48, 48}, {64, 257, 64, 257},
                          {50, 13, 50, 700}};
  int bad = 0, in_place = 0, cases = 0;
  for (const Shape& s : shapes) {
    for (int K : {1, 15, 16, 17, 129, 600, 1100}) {
      // the last row holds only the columns it needs: its end is the page's
      const size_t na = size_t(K - 1) * s.lda + s.M, nb = size_t(K - 1) * s.ldb + s.N;
      float* A = Guarded(na);
      float* B = Guarded(nb);
      for (size_t i = 0; i < na; ++i) A[i] = u(g);
      for (size_t i = 0; i < nb; ++i) B[i] = u(g);
      // The same values with rows far apart: packed.
      const int lda_far = s.lda + 160, ldb_far = s.ldb + 1100;
      std::vector<float> A_far(size_t(K) * lda_far), B_far(size_t(K) * ldb_far);
      for (int k = 0; k < K; ++k) {
        std::memcpy(&A_far[size_t(k) * lda_far], A + size_t(k) * s.lda, s.M * sizeof(float));
        std::memcpy(&B_far[size_t(k) * ldb_far], B + size_t(k) * s.ldb, s.N * sizeof(float));
      }
      std::vector<double> c0(size_t(s.M) * s.N);
      for (double& v : c0) v = u(g);
      std::vector<double> near = c0, far = c0;
      // C's rows in two ranges (a split at 16), as the callers' threads take them
      const int split = s.M > 16 ? 16 : s.M;
      for (auto [m0, m1] : {std::pair{0, split}, std::pair{split, s.M}}) {
        GemmTransposedA(s.N, K, A, s.lda, B, s.ldb, near.data(), s.N, m0, m1);
        GemmTransposedA(s.N, K, A_far.data(), lda_far, B_far.data(), ldb_far, far.data(), s.N, m0,
                        m1);
      }
      in_place += in_place_rule(s.N, s.lda, s.ldb) && !in_place_rule(s.N, lda_far, ldb_far);
      ++cases;
      for (int m = 0; m < s.M; ++m) {
        for (int n = 0; n < s.N; ++n) {
          double ref = c0[size_t(m) * s.N + n];
          for (int k = 0; k < K; ++k)
            ref += double(A[size_t(k) * s.lda + m]) * B[size_t(k) * s.ldb + n];
          const double got = near[size_t(m) * s.N + n];
          if (std::memcmp(&got, &far[size_t(m) * s.N + n], sizeof(double)) != 0 ||
              std::fabs(got - ref) > 1e-5 * (1 + std::sqrt(double(K)))) {
            if (bad++ < 5)
              std::printf("M %d N %d K %d lda %d ldb %d at (%d, %d): %.9g packed %.9g ref %.9g\n",
                          s.M, s.N, K, s.lda, s.ldb, m, n, got, far[size_t(m) * s.N + n], ref);
          }
        }
      }
    }
  }
  std::printf("avx512 %d in_place %d of %d bad %d\n", int(UseAvx512()), in_place, cases, bad);
  return bad != 0;
}
"""


# Per path: the line the program must end with (the cases read in place, of 84).
EXPECTED = {
    "avx512": "avx512 1 in_place 84 of 84 bad 0",
    "avx2": "avx512 0 in_place 49 of 84 bad 0",
}


@pytest.mark.parametrize("path", ["avx512", "avx2"])
def test_in_place_weight_gradients_bitwise_packed(path, rng, tmp_path):
    if shutil.which(CXX) is None:
        pytest.skip(f"no C++ compiler ({CXX})")
    if not os.path.exists(os.path.join(REPO, "cc", "kernels", "packed_gemm.h")):
        pytest.skip("no C++ sources here (Bazel's runfiles hold the tests and libraries only)")
    if path == "avx512" and "avx512f" not in cpu_flags():
        pytest.skip("this CPU has no AVX-512F: the AVX-512 kernels do not run")
    src, exe = tmp_path / "wgrad_in_place.cc", tmp_path / "wgrad_in_place"
    src.write_text(PROGRAM)
    subprocess.run(
        [CXX, "-std=c++17", "-O2", "-march=x86-64-v3", "-Wall", "-Wextra", "-Werror",
         "-I", REPO, str(src), "-o", str(exe)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    env = dict(os.environ)
    env.pop("TF_RNN_OPS_NO_AVX512", None)  # (read by UseAvx512: "1" runs the AVX2 kernels)
    if path == "avx2":
        env["TF_RNN_OPS_NO_AVX512"] = "1"
    run = subprocess.run([str(exe), str(int(rng.integers(1 << 30)))], capture_output=True,
                         text=True, env=env)  # fmt: skip
    assert run.returncode == 0, f"exit {run.returncode} (a signal if < 0): {run.stdout}"
    assert run.stdout.splitlines()[-1] == EXPECTED[path], run.stdout
