// packed_gemm.h's products on one thread: each checked against a double loop nest at edge sizes,
// then timed (thread CPU time, best of 5) at the RNN's shapes. The path is the library's choice:
// run it as is and with TF_RNN_OPS_NO_AVX512=1 to compare the AVX-512 and AVX2 kernels
// (docs/PERFORMANCE.md item 45). Not part of the build:
//   g++ -std=c++17 -O3 -march=x86-64-v3 -I. tools/packed_gemm_bench.cc -o /tmp/packed_gemm_bench
#include <time.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "cc/kernels/packed_gemm.h"
using namespace tf_rnn_ops;
static double cpu_s() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
int main() {
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(-1, 1);
  int bad = 0;
  // correctness
  for (int M : {1, 5, 7, 13, 64, 300})
    for (int K : {1, 3, 257, 600})
      for (int N : {1, 3, 17, 33, 48, 257, 771}) {
        std::vector<float> A(M * K), Bm(K * N);
        for (auto& v : A) v = u(g);
        for (auto& v : Bm) v = u(g);
        std::vector<float> st(PackedMatrix::PackedSize(K, N));
        PackedMatrix pm(K, N, st.data());
        pm.PackPanels(Bm.data(), N, false, 0, PackedMatrix::NumPanels(N));
        std::vector<float> C(M * N, 7.f);
        PackedGemmPanels(M, A.data(), K, pm, C.data(), N, 0, PackedMatrix::NumPanels(N));
        for (int i = 0; i < M; ++i)
          for (int j = 0; j < N; ++j) {
            double r = 0;
            for (int k = 0; k < K; ++k) r += double(A[i * K + k]) * Bm[k * N + j];
            if (std::fabs(r - C[i * N + j]) > 1e-4 * (1 + std::sqrt(K))) {
              if (bad++ < 5) printf("fwd bad M%d K%d N%d\n", M, K, N);
            }
          }
        // wgrad: C[N2=M? ] treat A as [K=M rows, M'=N] ... C[Mc, Nc] += A'[Kr, Mc]^T B'[Kr, Nc]
        int Kr = M, Mc = N, Nc = K > 300 ? 37 : K;
        std::vector<float> A2(Kr * Mc), B2(Kr * Nc);
        for (auto& v : A2) v = u(g);
        for (auto& v : B2) v = u(g);
        std::vector<double> C2(Mc * Nc, 1.0);
        int half = (Mc + 15) / 16 / 2 * 16;
        GemmTransposedA(Nc, Kr, A2.data(), Mc, B2.data(), Nc, C2.data(), Nc, 0, std::min(half, Mc));
        GemmTransposedA(Nc, Kr, A2.data(), Mc, B2.data(), Nc, C2.data(), Nc, std::min(half, Mc),
                        Mc);
        for (int i = 0; i < Mc; ++i)
          for (int j = 0; j < Nc; ++j) {
            double r = 1;
            for (int k = 0; k < Kr; ++k) r += double(A2[k * Mc + i]) * B2[k * Nc + j];
            if (std::fabs(r - C2[i * Nc + j]) > 1e-4 * (1 + std::sqrt(Kr))) {
              if (bad++ < 5) printf("wgrad bad Kr%d Mc%d Nc%d\n", Kr, Mc, Nc);
            }
          }
      }
  printf("avx512=%d correctness: %s\n", (int)UseAvx512(), bad ? "FAIL" : "ok");
  // speed
  struct S {
    int M, K, N;
  } shapes[] = {{128, 32, 128}, {128, 32, 96},  {128, 64, 256},  {3840, 7, 128},
                {64, 256, 768}, {32, 256, 768}, {512, 128, 768}, {32, 768, 256}};
  for (auto s : shapes) {
    std::vector<float> A(s.M * s.K), Bm(s.K * s.N), C(s.M * s.N);
    for (auto& v : A) v = u(g);
    for (auto& v : Bm) v = u(g);
    std::vector<float> st(PackedMatrix::PackedSize(s.K, s.N));
    PackedMatrix pm(s.K, s.N, st.data());
    pm.PackPanels(Bm.data(), s.N, false, 0, PackedMatrix::NumPanels(s.N));
    double best = 1e9;
    int reps = int(2e9 / (2.0 * s.M * s.K * s.N)) + 1;
    for (int r = 0; r < 5; ++r) {
      double t0 = cpu_s();
      for (int i = 0; i < reps; ++i)
        PackedGemmPanels(s.M, A.data(), s.K, pm, C.data(), s.N, 0, PackedMatrix::NumPanels(s.N));
      best = std::min(best, (cpu_s() - t0) / reps);
    }
    printf("PackedGemmPanels %dx%dx%d: %.1f GFLOP/s\n", s.M, s.K, s.N,
           2.0 * s.M * s.K * s.N / best / 1e9);
  }
  struct W {
    int Kr, Mc, Nc;
  } wshapes[] = {{7680, 128, 32}, {7680, 128, 7}, {512, 768, 256}, {512, 768, 128}, {6400, 96, 32}};
  for (auto s : wshapes) {
    std::vector<float> A(s.Kr * s.Mc), Bm(s.Kr * s.Nc);
    for (auto& v : A) v = u(g);
    for (auto& v : Bm) v = u(g);
    std::vector<double> C(s.Mc * s.Nc);
    double best = 1e9;
    int reps = int(2e9 / (2.0 * s.Kr * s.Mc * s.Nc)) + 1;
    for (int r = 0; r < 5; ++r) {
      double t0 = cpu_s();
      for (int i = 0; i < reps; ++i)
        GemmTransposedA(s.Nc, s.Kr, A.data(), s.Mc, Bm.data(), s.Nc, C.data(), s.Nc, 0, s.Mc);
      best = std::min(best, (cpu_s() - t0) / reps);
    }
    printf("GemmTransposedA %d rows, %dx%d: %.1f GFLOP/s\n", s.Kr, s.Mc, s.Nc,
           2.0 * s.Kr * s.Mc * s.Nc / best / 1e9);
  }
  return bad != 0;
}
