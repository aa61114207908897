// Single-precision matrix products for the RNN kernels' time steps: the right-hand matrix packed into
// 16-column panels once per op call (the recurrent weights, which every time step reuses), and a 6x16
// AVX2/FMA micro-kernel whose twelve accumulators live in registers, reading 6 rows of the left-hand
// matrix in place. Measured on the 2-core AMD EPYC (Zen 3) of our machines, the micro-kernel runs at
// ~98 GFLOP/s a core, against ~42 for Eigen's contraction at a step's 64x256x768, which packs the
// weights again at every call (docs/PERFORMANCE.md).
//
// C[M, N] = A[M, K] · op(B)[K, N], every matrix row-major with a leading dimension; op(B) is B or its
// transpose. Framework-free: callers split the column panels, or the rows, across threads.
// Builds without AVX2/FMA (and types other than float, which the driver sends to Eigen) fall back to
// a plain loop nest over the same packed layout.
#ifndef TF_RNN_OPS_CC_KERNELS_PACKED_GEMM_H_
#define TF_RNN_OPS_CC_KERNELS_PACKED_GEMM_H_

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TF_RNN_HAVE_AVX2 1
#else
#define TF_RNN_HAVE_AVX2 0
#endif

namespace tf_rnn_ops {

// Blocking: kNr columns per B panel (two 8-float registers), kMr rows of A per micro-kernel call,
// kKc values of K per block, so that a B panel block (kKc·kNr floats, 16 KB) stays in L1 while the
// rows of A stream from L1/L2.
constexpr int64_t kNr = 16;
constexpr int64_t kMr = 6;
constexpr int64_t kKc = 256;

// op(B)[K, N] packed: K is cut into blocks of kKc; within block kb, panel p holds for each k of the
// block the kNr values op(B)[k, p·kNr ..) (zero past N), contiguously.
class PackedMatrix {
 public:
  static int64_t NumPanels(int64_t N) { return (N + kNr - 1) / kNr; }
  static int64_t PackedSize(int64_t K, int64_t N) { return NumPanels(N) * kNr * K; }

  // `storage` must hold PackedSize(K, N) floats; PackPanels over [0, NumPanels(N)) then fills it,
  // split across threads as the caller likes. transposed: `b` is row-major [N, K] (leading dimension
  // ldb), else row-major [K, N].
  PackedMatrix(int64_t K, int64_t N, float* storage) : K_(K), N_(N), data_(storage) {}
  void PackPanels(const float* b, int64_t ldb, bool transposed, int64_t p_begin, int64_t p_end) {
    for (int64_t p = p_begin; p < p_end; ++p) PackPanel(b, ldb, transposed, p);
  }

  int64_t K() const { return K_; }
  int64_t N() const { return N_; }
  // The kc x kNr block of panel p starting at k0 (a multiple of kKc).
  const float* block(int64_t k0, int64_t p) const {
    const int64_t kc = std::min(kKc, K_ - k0);
    return data_ + k0 * NumPanels(N_) * kNr + p * kc * kNr;
  }

 private:
  void PackPanel(const float* b, int64_t ldb, bool transposed, int64_t p) {
    const int64_t n0 = p * kNr, width = std::min(kNr, N_ - n0);
    for (int64_t k0 = 0; k0 < K_; k0 += kKc) {
      const int64_t kc = std::min(kKc, K_ - k0);
      float* dst = const_cast<float*>(block(k0, p));
      if (transposed) {
        for (int64_t j = 0; j < width; ++j) {
          const float* src = b + (n0 + j) * ldb + k0;
          for (int64_t k = 0; k < kc; ++k) dst[k * kNr + j] = src[k];
        }
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          std::memcpy(dst + k * kNr, b + (k0 + k) * ldb + n0, width * sizeof(float));
        }
      }
      if (width < kNr) {
        for (int64_t k = 0; k < kc; ++k) std::fill(dst + k * kNr + width, dst + (k + 1) * kNr, 0.f);
      }
    }
  }

  int64_t K_, N_;
  float* data_;
};

namespace packed_gemm_internal {

// C[rows, width] (+)= A[rows, kc] · panel[kc, kNr] for rows <= kMr, width <= kNr, A row-major with
// leading dimension lda (A is not packed: its rows stream from L1/L2 as well as a packed copy would,
// measured, and packing it was serial work at every step). The accumulators are named variables:
// GCC keeps an array of __m256 in memory and stores it at every k (the first version of this
// kernel, at a third of the speed).
template <int kRows>
inline void MicroKernel(int64_t kc, const float* a0, int64_t lda, const float* panel, float* c,
                        int64_t ldc, int64_t width, bool accumulate) {
#if TF_RNN_HAVE_AVX2
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  // Rows past kRows are never read (their pointers are only formed).
  const float *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda, *a4 = a3 + lda, *a5 = a4 + lda;
  for (int64_t k = 0; k < kc; ++k, panel += kNr) {
    const __m256 b0 = _mm256_loadu_ps(panel), b1 = _mm256_loadu_ps(panel + 8);
    __m256 a = _mm256_broadcast_ss(a0 + k);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    if constexpr (kRows > 1) {
      a = _mm256_broadcast_ss(a1 + k);
      c10 = _mm256_fmadd_ps(a, b0, c10);
      c11 = _mm256_fmadd_ps(a, b1, c11);
    }
    if constexpr (kRows > 2) {
      a = _mm256_broadcast_ss(a2 + k);
      c20 = _mm256_fmadd_ps(a, b0, c20);
      c21 = _mm256_fmadd_ps(a, b1, c21);
    }
    if constexpr (kRows > 3) {
      a = _mm256_broadcast_ss(a3 + k);
      c30 = _mm256_fmadd_ps(a, b0, c30);
      c31 = _mm256_fmadd_ps(a, b1, c31);
    }
    if constexpr (kRows > 4) {
      a = _mm256_broadcast_ss(a4 + k);
      c40 = _mm256_fmadd_ps(a, b0, c40);
      c41 = _mm256_fmadd_ps(a, b1, c41);
    }
    if constexpr (kRows > 5) {
      a = _mm256_broadcast_ss(a5 + k);
      c50 = _mm256_fmadd_ps(a, b0, c50);
      c51 = _mm256_fmadd_ps(a, b1, c51);
    }
  }
  const __m256 acc[kMr][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                              {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < kRows; ++i, c += ldc) {
    __m256 lo = acc[i][0], hi = acc[i][1];
    if (width == kNr) {
      if (accumulate) {
        lo = _mm256_add_ps(lo, _mm256_loadu_ps(c));
        hi = _mm256_add_ps(hi, _mm256_loadu_ps(c + 8));
      }
      _mm256_storeu_ps(c, lo);
      _mm256_storeu_ps(c + 8, hi);
    } else {
      alignas(32) float tmp[kNr];
      _mm256_store_ps(tmp, lo);
      _mm256_store_ps(tmp + 8, hi);
      for (int64_t j = 0; j < width; ++j) c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
    }
  }
#else
  float acc[kMr][kNr] = {};
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < kRows; ++i)
      for (int64_t j = 0; j < kNr; ++j) acc[i][j] += a0[i * lda + k] * panel[k * kNr + j];
  for (int i = 0; i < kRows; ++i, c += ldc)
    for (int64_t j = 0; j < width; ++j) c[j] = accumulate ? c[j] + acc[i][j] : acc[i][j];
#endif
}

inline void Strip(int64_t rows, int64_t kc, const float* a, int64_t lda, const float* panel,
                  float* c, int64_t ldc, int64_t width, bool accumulate) {
  switch (rows) {
    case 6: MicroKernel<6>(kc, a, lda, panel, c, ldc, width, accumulate); break;
    case 5: MicroKernel<5>(kc, a, lda, panel, c, ldc, width, accumulate); break;
    case 4: MicroKernel<4>(kc, a, lda, panel, c, ldc, width, accumulate); break;
    case 3: MicroKernel<3>(kc, a, lda, panel, c, ldc, width, accumulate); break;
    case 2: MicroKernel<2>(kc, a, lda, panel, c, ldc, width, accumulate); break;
    case 1: MicroKernel<1>(kc, a, lda, panel, c, ldc, width, accumulate); break;
    default: break;
  }
}

}  // namespace packed_gemm_internal

// C[M, N] = A[M, K] · B for a packed B (A row-major, leading dimension lda), over the column
// panels [p_begin, p_end) (callers split the panels across threads).
inline void PackedGemmPanels(int64_t M, const float* A, int64_t lda, const PackedMatrix& b, float* C,
                             int64_t ldc, int64_t p_begin, int64_t p_end) {
  const int64_t K = b.K(), N = b.N();
  for (int64_t p = p_begin; p < p_end; ++p) {
    const int64_t n0 = p * kNr, width = std::min(kNr, N - n0);
    if (K == 0) {
      for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc + n0, C + i * ldc + n0 + width, 0.f);
      continue;
    }
    for (int64_t k0 = 0; k0 < K; k0 += kKc) {
      const int64_t kc = std::min(kKc, K - k0);
      const float* panel = b.block(k0, p);
      for (int64_t m0 = 0; m0 < M; m0 += kMr) {
        packed_gemm_internal::Strip(std::min(kMr, M - m0), kc, A + m0 * lda + k0, lda, panel,
                                    C + m0 * ldc + n0, ldc, width, k0 > 0);
      }
    }
  }
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_PACKED_GEMM_H_
