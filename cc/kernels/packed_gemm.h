// Single-precision matrix products for the RNN kernels, on register-tiled micro-kernels: a 6x16
// AVX2/FMA kernel (twelve ymm accumulators) and, chosen at run time where the CPU has AVX-512F,
// kernels over two adjacent 16-column panels (same packed layouts): the products with packed
// weights in tiles of up to 14 rows (kMr512: 28 zmm accumulators), the weight gradients in 6:
//  * PackedGemmPanels: C = A · B with B (the weights: R and P at every time step, W for a chunk's
//    input projection and for the backward's dX = D_gx·W) packed into 16-column panels once per op
//    call, A read in place. Eigen's contraction packs the weights again at every call.
//  * GemmTransposedA: C += Aᵀ · B for the weight gradients, both operands row-major [rows, ·],
//    summed in float over short runs of rows and in double beyond (see kWgradSubK).
// Each output of PackedGemmPanels is the same chain of FMAs in the same order on both paths: the
// AVX-512 path gives bitwise the AVX2 path's results, only faster
// (tests/ops/test_gemm_dispatch.py). The weight-gradient kernels sum a block of K alike on both,
// but the AVX-512 blocks are longer (kWgradMaxKb512): past the AVX2 block's rows their float groups
// start at other rows, and the sums differ in the last bits. On one core of an AMD EPYC Zen 5
// (full-width AVX-512; FMA peak 241 GFLOP/s a core with zmm, 116 with ymm), PackedGemmPanels at a
// step's 32-64 x 256 x 768 ran at 205-225 GFLOP/s on zmm with 6-row tiles (108-116 on ymm),
// GemmTransposedA over 512 rows at 150-160 (80-90): docs/PERFORMANCE.md item 45. On the Intel Xeon
// of item 96 (219 a core) the 6-row tiles ran a step's product at 150-165, L2-bound, the 14-row
// ones at 170-190. Every matrix is row-major with a leading dimension. Framework-free: callers
// split the work across threads. Builds without AVX2/FMA (and types other than float, which the
// driver sends to Eigen) fall back to a plain loop nest over the same layouts.
//
// Dispatch: the baseline build of the library is x86-64-v3 (AVX2); the AVX-512 kernels are separate
// functions compiled with __attribute__((target("avx512f"))) (distinct names: never one inline
// symbol compiled two ways), called when UseAvx512() says so: the CPU reports AVX-512F and the
// environment variable TF_RNN_OPS_NO_AVX512 is unset, empty or "0" (read once per process; tests
// set it to run the AVX2 path on an AVX-512 machine, tests/ops/test_gemm_dispatch.py). The
// x86-64-v4 build (loaded on AVX-512 CPUs, tf_rnn_ops/_loader.py) compiles the same code.
#ifndef TF_RNN_OPS_CC_KERNELS_PACKED_GEMM_H_
#define TF_RNN_OPS_CC_KERNELS_PACKED_GEMM_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TF_RNN_OPS_HAVE_AVX2 1
#else
#define TF_RNN_OPS_HAVE_AVX2 0
#endif

// The AVX-512 kernels need the compiler's target attribute and CPU check (GCC, Clang on x86).
#if TF_RNN_OPS_HAVE_AVX2 && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define TF_RNN_OPS_HAVE_AVX512_DISPATCH 1
#define TF_RNN_OPS_TARGET_AVX512 __attribute__((target("avx512f")))
#else
#define TF_RNN_OPS_HAVE_AVX512_DISPATCH 0
#endif

namespace tf_rnn_ops {

// Blocking: kNr columns per B panel (two 8-float registers), kMr rows of A per AVX2 micro-kernel
// call (AVX-512 PackedGemmPanels: up to kMr512), kKc values of K per block, so that a B panel
// block (kKc·kNr floats, 16 KB) stays in L1 while the rows of A stream from L1/L2.
constexpr int64_t kNr = 16;
constexpr int64_t kMr = 6;
constexpr int64_t kKc = 256;

// Whether the products run the AVX-512 kernels (see the top of this file): decided once per
// process.
inline bool UseAvx512() {
#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
  static const bool use = [] {
    const char* off = std::getenv("TF_RNN_OPS_NO_AVX512");
    if (off != nullptr && off[0] != '\0' && std::strcmp(off, "0") != 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return use;
#else
  return false;
#endif
}

namespace packed_gemm_internal {
// fn(std::integral_constant<int, R>()) for R = rows, 1 <= rows <= kMax (else nothing): a tile of R
// rows is its micro-kernel's instantiation for R, and every caller picks it from the rows it has
// left. ForRows512: the same for the AVX-512 kernels, compiled for AVX-512 so that fn (a lambda
// carrying TF_RNN_OPS_TARGET_AVX512: it does not take its enclosing function's target) inlines
// into it. (Called through ForRows, the AVX-512 step product ran 8-10% slower: a call a tile.)
template <int kMax, typename Fn>
inline void ForRows(int64_t rows, Fn&& fn) {
  if constexpr (kMax >= 1) {
    if (rows == kMax) {
      fn(std::integral_constant<int, kMax>());
    } else {
      ForRows<kMax - 1>(rows, std::forward<Fn>(fn));
    }
  }
}

// dst[k·kNr + j] = rows[j][col + k] for k < n, j < width: a run of a transposed panel's block,
// element by element.
inline void TransposeRows(const float* const* rows, int64_t width, int64_t col, int64_t n,
                          float* dst) {
  for (int64_t j = 0; j < width; ++j)
    for (int64_t k = 0; k < n; ++k) dst[k * kNr + j] = rows[j][col + k];
}

#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
// dst[k·kNr + j] = rows[j][col + k] for k < n, j < kNr (16): a transposed panel's block, 16 x 16
// tiles transposed in registers (each tile's 16 rows read 64 bytes at a time, its 16 columns
// written as whole lines), the last k < 16 one by one. (The shuffles' masked forms with full
// masks: GCC 12's unmasked ones warn of an uninitialized operand, as AddToDouble512 notes.)
TF_RNN_OPS_TARGET_AVX512 inline void TransposeRows16(const float* const* rows, int64_t col,
                                                     int64_t n, float* dst) {
  static_assert(kNr == 16, "a zmm register per panel row");
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    __m512 t[16], u[16], v[16];
    for (int i = 0; i < 8; ++i) {
      const __m512 a = _mm512_loadu_ps(rows[2 * i] + col + k);
      const __m512 b = _mm512_loadu_ps(rows[2 * i + 1] + col + k);
      t[2 * i] = _mm512_maskz_unpacklo_ps(0xFFFF, a, b);
      t[2 * i + 1] = _mm512_maskz_unpackhi_ps(0xFFFF, a, b);
    }
    for (int i = 0; i < 4; ++i) {
      const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
      const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
      u[4 * i] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xFF, a, c));
      u[4 * i + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xFF, a, c));
      u[4 * i + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xFF, b, d));
      u[4 * i + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xFF, b, d));
    }
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm512_maskz_shuffle_f32x4(0xFFFF, u[i], u[4 + i], 0x88);
      v[4 + i] = _mm512_maskz_shuffle_f32x4(0xFFFF, u[i], u[4 + i], 0xdd);
      v[8 + i] = _mm512_maskz_shuffle_f32x4(0xFFFF, u[8 + i], u[12 + i], 0x88);
      v[12 + i] = _mm512_maskz_shuffle_f32x4(0xFFFF, u[8 + i], u[12 + i], 0xdd);
    }
    float* out = dst + k * kNr;
    for (int i = 0; i < 4; ++i) {
      _mm512_storeu_ps(out + i * kNr, _mm512_maskz_shuffle_f32x4(0xFFFF, v[i], v[8 + i], 0x88));
      _mm512_storeu_ps(out + (4 + i) * kNr,
                       _mm512_maskz_shuffle_f32x4(0xFFFF, v[4 + i], v[12 + i], 0x88));
      _mm512_storeu_ps(out + (8 + i) * kNr,
                       _mm512_maskz_shuffle_f32x4(0xFFFF, v[i], v[8 + i], 0xdd));
      _mm512_storeu_ps(out + (12 + i) * kNr,
                       _mm512_maskz_shuffle_f32x4(0xFFFF, v[4 + i], v[12 + i], 0xdd));
    }
  }
  TransposeRows(rows, kNr, col + k, n - k, dst + k * kNr);
}
#endif
}  // namespace packed_gemm_internal

// op(B)[K, N] packed: K is cut into blocks of kKc; within block kb, panel p holds for each k of the
// block the kNr values op(B)[k, p·kNr ..) (zero past N), contiguously.
class PackedMatrix {
 public:
  static int64_t NumPanels(int64_t N) { return (N + kNr - 1) / kNr; }
  static int64_t PackedSize(int64_t K, int64_t N) { return NumPanels(N) * kNr * K; }

  // `storage` must hold PackedSize(K, N) floats; PackPanels over [0, NumPanels(N)) then fills it,
  // split across threads as the caller likes. transposed: `b` is row-major [N, K] (leading
  // dimension ldb), else row-major [K, N].
  PackedMatrix(int64_t K, int64_t N, float* storage) : K_(K), N_(N), data_(storage) {}
  // gate_src (null: none): op(B)'s column block g, `gate_width` columns wide, is column block
  // gate_src[g] of `b` (a Keras GRU kernel's z, r, h read in r, z, h order); transposed, op(B)'s
  // row block g (the backward's D·Rᵀ with R as Keras keeps it).
  // Row-major b is copied in tiles of kPackTileRows rows by kPackTilePanels panels: panel by
  // panel, each row's 64 bytes came from a new page of b (ldb floats apart, all in one L1 set
  // where ldb is a multiple of 1024) and the pass ran at 3-6 GB/s on one core (GRU(2048)'s R,
  // 50 MB: 16-18 ms, tiles 7-9; docs/PERFORMANCE.md item 88).
  void PackPanels(const float* b, int64_t ldb, bool transposed, int64_t p_begin, int64_t p_end,
                  const int* gate_src = nullptr, int64_t gate_width = 0) {
    if (transposed) {
      for (int64_t p = p_begin; p < p_end; ++p)
        PackPanelTransposed(b, ldb, p, gate_src, gate_width);
      return;
    }
    for (int64_t k0 = 0; k0 < K_; k0 += kKc) {
      const int64_t kc = std::min(kKc, K_ - k0);
      for (int64_t p0 = p_begin; p0 < p_end; p0 += kPackTilePanels) {
        const int64_t p1 = std::min(p_end, p0 + kPackTilePanels);
        for (int64_t t0 = 0; t0 < kc; t0 += kPackTileRows) {
          const int64_t t1 = std::min(kc, t0 + kPackTileRows);
          for (int64_t p = p0; p < p1; ++p) PackRows(b, ldb, p, k0, t0, t1, gate_src, gate_width);
        }
      }
    }
  }

  int64_t K() const { return K_; }
  int64_t N() const { return N_; }
  // The kc x kNr block of panel p starting at k0 (a multiple of kKc).
  const float* block(int64_t k0, int64_t p) const {
    const int64_t kc = std::min(kKc, K_ - k0);
    return data_ + k0 * NumPanels(N_) * kNr + p * kc * kNr;
  }

 private:
  static constexpr int64_t kPackTileRows = 16, kPackTilePanels = 8;

  // Rows [k0 + t0, k0 + t1) of row-major b into block k0 of panel p.
  void PackRows(const float* b, int64_t ldb, int64_t p, int64_t k0, int64_t t0, int64_t t1,
                const int* gate_src, int64_t gate_width) {
    const int64_t n0 = p * kNr, width = std::min(kNr, N_ - n0);
    float* dst = const_cast<float*>(block(k0, p));
    const float* rows = b + k0 * ldb;
    const int64_t g0 = gate_src ? n0 / gate_width : 0;
    if (width == kNr && (gate_src == nullptr || (n0 + kNr - 1) / gate_width == g0)) {
      // (most panels: one run of b's columns, a copy of a fixed size)
      const float* src = rows + (gate_src ? gate_src[g0] * gate_width + n0 - g0 * gate_width : n0);
      for (int64_t k = t0; k < t1; ++k) {
        std::memcpy(dst + k * kNr, src + k * ldb, sizeof(float) * kNr);
      }
      return;
    }
    for (int64_t j = 0; j < width;) {  // runs of columns within one gate block
      const int64_t g = gate_src ? (n0 + j) / gate_width : 0;
      const int64_t end = gate_src ? std::min(width, (g + 1) * gate_width - n0) : width;
      const int64_t src = gate_src ? gate_src[g] * gate_width + (n0 + j - g * gate_width) : n0 + j;
      for (int64_t k = t0; k < t1; ++k) {
        std::memcpy(dst + k * kNr + j, rows + k * ldb + src, (end - j) * sizeof(float));
      }
      j = end;
    }
    for (int64_t k = t0; k < t1; ++k) std::fill(dst + k * kNr + width, dst + (k + 1) * kNr, 0.f);
  }

  // Panel p of b, row-major [N, K] (op(B) = bᵀ). A full panel on AVX-512 in 16 x 16 tiles
  // (TransposeRows16): element by element it ran at 3.5-4.5 GB/s on one core (the backward's Rᵀ
  // of 17-67 MB: 3.7-19 ms; docs/PERFORMANCE.md item 92).
  void PackPanelTransposed(const float* b, int64_t ldb, int64_t p, const int* gate_src,
                           int64_t gate_width) {
    const int64_t n0 = p * kNr, width = std::min(kNr, N_ - n0);
    const float* rows[kNr];
    for (int64_t j = 0; j < width; ++j) rows[j] = b + (n0 + j) * ldb;
#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
    const bool tiles = width == kNr && UseAvx512();
#endif
    for (int64_t k0 = 0; k0 < K_; k0 += kKc) {
      const int64_t kc = std::min(kKc, K_ - k0);
      float* dst = const_cast<float*>(block(k0, p));
      for (int64_t k = 0; k < kc;) {  // runs of k within one gate block
        const int64_t at = k0 + k, g = gate_src ? at / gate_width : 0;
        const int64_t end = gate_src ? std::min(kc, (g + 1) * gate_width - k0) : kc;
        const int64_t col = gate_src ? gate_src[g] * gate_width + at - g * gate_width : at;
#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
        if (tiles) {
          packed_gemm_internal::TransposeRows16(rows, col, end - k, dst + k * kNr);
          k = end;
          continue;
        }
#endif
        packed_gemm_internal::TransposeRows(rows, width, col, end - k, dst + k * kNr);
        k = end;
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

// Holds a vector in a register for the loop body: an empty asm the compiler must assume reads and
// changes it. Where a kernel multiplies few rows (its tiles of 1-5 rows, the single-panel AVX-512
// step kernel, the AVX2 weight-gradient kernel) GCC otherwise folds the panel's loads into every
// multiply-add that reads them: a load per FMA, not one per k, and the AVX-512 step kernel's
// 4-row tile ran 1.6x the time of its 6-row one (docs/PERFORMANCE.md, item 80).
#define TF_RNN_OPS_IN_REGISTERS(a, b) asm("" : "+v"(a), "+v"(b))

// A tile of rows <= kMr by width <= kNr: tile(r, j) = sum over k < kc of a(r, k) · b(k, j).
//   a: row-major [rows, kc], a(r, k) at a[r·lda + k] (a time step's states or gate grads, read in
//      place: packing them was serial work at every step, and their rows stream from L1/L2 as well
//      as a packed copy would, measured).
//   b: a packed panel, b(k, j) at b[k·kNr + j], zero past width.
//   The tile is added to (accumulate) or stored in C: C(r, j) at c[r·ldc + j]. (The weight-gradient
//   products have their own kernel, WgradMicroKernel.)
// The accumulators are named variables: GCC keeps an array of __m256 in memory and stores it at
// every k (the first version of this kernel, at a third of the speed).
template <int kRows>
inline void MicroKernel(int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                        int64_t ldc, int64_t width, bool accumulate) {
#if TF_RNN_OPS_HAVE_AVX2
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  // Row r is a + r·lda, indexed by k. (Rows past kRows are never read; their pointers are only
  // formed.)
  const float *a0 = a, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda, *a4 = a3 + lda,
              *a5 = a4 + lda;
  for (int64_t k = 0, ak = 0; k < kc; ++k, ++ak, b += kNr) {
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    TF_RNN_OPS_IN_REGISTERS(b0, b1);
    __m256 av = _mm256_broadcast_ss(a0 + ak);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    if constexpr (kRows > 1) {
      av = _mm256_broadcast_ss(a1 + ak);
      c10 = _mm256_fmadd_ps(av, b0, c10);
      c11 = _mm256_fmadd_ps(av, b1, c11);
    }
    if constexpr (kRows > 2) {
      av = _mm256_broadcast_ss(a2 + ak);
      c20 = _mm256_fmadd_ps(av, b0, c20);
      c21 = _mm256_fmadd_ps(av, b1, c21);
    }
    if constexpr (kRows > 3) {
      av = _mm256_broadcast_ss(a3 + ak);
      c30 = _mm256_fmadd_ps(av, b0, c30);
      c31 = _mm256_fmadd_ps(av, b1, c31);
    }
    if constexpr (kRows > 4) {
      av = _mm256_broadcast_ss(a4 + ak);
      c40 = _mm256_fmadd_ps(av, b0, c40);
      c41 = _mm256_fmadd_ps(av, b1, c41);
    }
    if constexpr (kRows > 5) {
      av = _mm256_broadcast_ss(a5 + ak);
      c50 = _mm256_fmadd_ps(av, b0, c50);
      c51 = _mm256_fmadd_ps(av, b1, c51);
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
  float tile[kMr][kNr] = {};
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < kRows; ++i)
      for (int64_t j = 0; j < width; ++j) tile[i][j] += a[i * lda + k] * b[k * kNr + j];
  for (int i = 0; i < kRows; ++i) {
    for (int64_t j = 0; j < width; ++j) {
      float& out = c[i * ldc + j];
      out = accumulate ? out + tile[i][j] : tile[i][j];
    }
  }
#endif
}

inline void Strip(int64_t rows, int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                  int64_t ldc, int64_t width, bool accumulate) {
  ForRows<kMr>(rows, [&](auto r) { MicroKernel<r>(kc, a, lda, b, c, ldc, width, accumulate); });
}

// The rows of a block's next strip, `left` rows still to do: kMr, but the last 7 or 8 as two
// strips of 4 (not 6 and 1 or 2). Each row of a tile is 2 accumulators: a 1- or 2-row tile has too
// few multiply-adds in flight to cover their latency, a 4-row one enough (AVX-512, K = 256,
// N = 768, one core: 8 rows 0.0141 -> 0.0127 ms, 32 rows (B = 64's share a thread) 0.0476 ->
// 0.0462; docs/PERFORMANCE.md item 81).
inline int64_t StripRows(int64_t left) { return left == 7 || left == 8 ? 4 : std::min(kMr, left); }

#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
// The AVX-512 step kernel's rows (MicroKernel512): its 2·kMr512 accumulators, the two panel rows
// and a broadcast take 31 of the 32 zmm registers. A step's product reads its panels from L2 (a
// K = 256 pair is 32 KB; with a thread's rows of A beside it, more than L1 holds): each panel load
// now serves 14 rows' FMAs where it served 6, and the 6-row tiles ran at ~150-165 GFLOP/s of one
// core's ~219 on the Intel Xeon of docs/PERFORMANCE.md item 96 (14 rows: 170-190).
constexpr int64_t kMr512 = 14;

// The rows of a block's next AVX-512 strip, `left` rows still to do: the fewest strips of at most
// kMr512 rows, their rows as even as can be (32 rows as 11, 11, 10, not 14, 14, 4: the short
// tiles have too few FMAs in flight to cover their latency, see StripRows).
inline int64_t StripRows512(int64_t left) {
  const int64_t strips = (left + kMr512 - 1) / kMr512;
  return (left + strips - 1) / strips;
}

// ForRows for the AVX-512 kernels (see there).
template <int kMax, typename Fn>
TF_RNN_OPS_TARGET_AVX512 inline void ForRows512(int64_t rows, Fn&& fn) {
  if constexpr (kMax >= 1) {
    if (rows == kMax) {
      fn(std::integral_constant<int, kMax>());
    } else {
      ForRows512<kMax - 1>(rows, std::forward<Fn>(fn));
    }
  }
}

// The mask of the first n (<= 16) of 16 lanes.
inline __mmask16 LaneMask(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max<int64_t>(n, 0)) - 1);
}

// MicroKernel on AVX-512: a tile of rows <= kMr512 by width <= 2·kNr (kTwo) or <= kNr, from panel
// `b` and (kTwo) the next panel `b_next` (each b(k, j) at [k·kNr + j], zero past width). The same
// FMAs per output, in the same order, as MicroKernel. (The accumulator array lives in registers:
// every loop over it unrolled, GCC replaces it by 2·kRows zmm variables.)
template <int kRows, bool kTwo>
TF_RNN_OPS_TARGET_AVX512 inline void MicroKernel512(int64_t kc, const float* a, int64_t lda,
                                                    const float* b, const float* b_next, float* c,
                                                    int64_t ldc, int64_t width, bool accumulate) {
  static_assert(kRows >= 1 && kRows <= kMr512, "a tile's accumulators fit the zmm registers");
  __m512 acc[kRows][2];
#pragma GCC unroll 16
  for (int i = 0; i < kRows; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, b += kNr, b_next += kNr) {
    __m512 b0 = _mm512_loadu_ps(b), b1 = kTwo ? _mm512_loadu_ps(b_next) : b0;
    TF_RNN_OPS_IN_REGISTERS(b0, b1);
#pragma GCC unroll 16
    for (int i = 0; i < kRows; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * lda + k]);
      acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
      if constexpr (kTwo) acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
    }
  }
  const __mmask16 m0 = LaneMask(width), m1 = LaneMask(width - kNr);
#pragma GCC unroll 16
  for (int i = 0; i < kRows; ++i, c += ldc) {
    __m512 lo = acc[i][0];
    if (accumulate) lo = _mm512_add_ps(lo, _mm512_maskz_loadu_ps(m0, c));
    _mm512_mask_storeu_ps(c, m0, lo);
    if constexpr (kTwo) {
      __m512 hi = acc[i][1];
      if (accumulate) hi = _mm512_add_ps(hi, _mm512_maskz_loadu_ps(m1, c + kNr));
      _mm512_mask_storeu_ps(c + kNr, m1, hi);
    }
  }
}

template <bool kTwo>
TF_RNN_OPS_TARGET_AVX512 inline void Strip512(int64_t rows, int64_t kc, const float* a, int64_t lda,
                                              const float* b, const float* b_next, float* c,
                                              int64_t ldc, int64_t width, bool accumulate) {
  ForRows512<kMr512>(rows, [&](auto r) TF_RNN_OPS_TARGET_AVX512 {
    MicroKernel512<r, kTwo>(kc, a, lda, b, b_next, c, ldc, width, accumulate);
  });
}

// PackedGemmPanels' loops (see there) with pairs of panels per micro-kernel call.
TF_RNN_OPS_TARGET_AVX512 inline void PackedGemmPanels512(int64_t M, const float* A, int64_t lda,
                                                         const PackedMatrix& b, float* C,
                                                         int64_t ldc, int64_t p_begin,
                                                         int64_t p_end, int64_t mc) {
  const int64_t K = b.K(), N = b.N();
  for (int64_t mb = 0; mb < M; mb += mc) {
    const int64_t me = std::min(M, mb + mc);
    for (int64_t p = p_begin; p < p_end; p += 2) {
      const bool two = p + 1 < p_end;
      const int64_t n0 = p * kNr, width = std::min((two ? 2 : 1) * kNr, N - n0);
      for (int64_t k0 = 0; k0 < K; k0 += kKc) {
        const int64_t kc = std::min(kKc, K - k0);
        const float* panel = b.block(k0, p);
        for (int64_t m0 = mb, rows; m0 < me; m0 += rows) {
          rows = StripRows512(me - m0);
          if (two) {
            Strip512<true>(rows, kc, A + m0 * lda + k0, lda, panel, panel + kc * kNr,
                           C + m0 * ldc + n0, ldc, width, k0 > 0);
          } else {
            Strip512<false>(rows, kc, A + m0 * lda + k0, lda, panel, panel, C + m0 * ldc + n0, ldc,
                            width, k0 > 0);
          }
        }
      }
    }
  }
}
#endif  // TF_RNN_OPS_HAVE_AVX512_DISPATCH

}  // namespace packed_gemm_internal

// C[M, N] = A[M, K] · B for a packed B (A row-major, leading dimension lda), over the column
// panels [p_begin, p_end) (callers split the panels, or the rows, across threads). Rows are taken
// in blocks whose kKc-wide slice of A (kMcFloats) stays in L2 while every panel passes over it: a
// time step's rows are one block; the backward's D_gx·W (K = G·H) runs several.
inline void PackedGemmPanels(int64_t M, const float* A, int64_t lda, const PackedMatrix& b,
                             float* C, int64_t ldc, int64_t p_begin, int64_t p_end) {
  constexpr int64_t kMcFloats = int64_t{1} << 16;  // 256 KB
  const int64_t K = b.K(), N = b.N();
  if (K == 0) {
    for (int64_t p = p_begin; p < p_end; ++p) {
      const int64_t n0 = p * kNr, width = std::min(kNr, N - n0);
      for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc + n0, C + i * ldc + n0 + width, 0.f);
    }
    return;
  }
  const int64_t mc = std::max<int64_t>(kMr, kMcFloats / std::min(K, kKc) / kMr * kMr);
#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
  if (UseAvx512()) {
    packed_gemm_internal::PackedGemmPanels512(M, A, lda, b, C, ldc, p_begin, p_end, mc);
    return;
  }
#endif
  for (int64_t mb = 0; mb < M; mb += mc) {
    const int64_t me = std::min(M, mb + mc);
    for (int64_t p = p_begin; p < p_end; ++p) {
      const int64_t n0 = p * kNr, width = std::min(kNr, N - n0);
      for (int64_t k0 = 0; k0 < K; k0 += kKc) {
        const int64_t kc = std::min(kKc, K - k0);
        const float* panel = b.block(k0, p);
        for (int64_t m0 = mb, rows; m0 < me; m0 += rows) {
          rows = packed_gemm_internal::StripRows(me - m0);
          packed_gemm_internal::Strip(rows, kc, A + m0 * lda + k0, lda, panel, C + m0 * ldc + n0,
                                      ldc, width, k0 > 0);
        }
      }
    }
  }
}

// The weight-gradient products sum over T·B rows (up to millions): a float sum that long loses
// digits with every term (error growing with the number of terms). Each tile of the double sums
// (GemmTransposedA) is therefore summed in float registers over runs of kWgradShortRunK rows only,
// a group of kWgradRunsPerGroup runs (128 rows) added in float, and the groups in double: at worst
// the error of a 16-term float sum and an 8-term one, whatever the number of rows (TensorFlow's
// float32 math sums B rows a step in float, then the T steps: B + T terms). Until
// docs/PERFORMANCE.md item 94 every run of 32 rows went into a double tile: its worst case 32
// terms, its RMS error 0.95-1.0x the groups' (the groups' adds round larger partial sums), and
// its conversions and double adds ~20% of the vector ports' work (the groups' ~2%): the products
// 1.06-1.13x on AVX-512. kWgradSubK: the runs of the float sums (GemmTransposedAFloatRuns, added
// into float outputs), which decide which calls may take those (cpu_gemm.h, WeightGradsInT).
constexpr int64_t kWgradShortRunK = 16;
constexpr int64_t kWgradRunsPerGroup = 8;
constexpr int64_t kWgradSubK = 32;

// A mask multiplied into GemmTransposedA's B as it is packed: B's row k (counted from the
// product's first row) times m[((first + k) mod period)·N + n], column n of N. The recurrent
// dropout masks, one [B, H] a gate: row i of a chunk's h_prev is batch index i mod B. (Applied in
// a pass of their own, a masked copy of h_prev for every gate, written and read back: ~6% of a
// GRU + recurrent dropout backward; docs/PERFORMANCE.md item 81.)
struct WgradRowMask {
  const float* m;  // [period, N]
  int64_t period;
  int64_t first;
};

namespace packed_gemm_internal {

#if TF_RNN_OPS_HAVE_AVX2
// t[0..8) = v, in double.
inline void StoreAsDouble(__m256 v, double* t) {
  _mm256_store_pd(t, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  _mm256_store_pd(t + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

// t[0..8) += v, in double.
inline void AddToDouble(__m256 v, double* t) {
  _mm256_store_pd(t, _mm256_add_pd(_mm256_load_pd(t), _mm256_cvtps_pd(_mm256_castps256_ps128(v))));
  _mm256_store_pd(
      t + 4, _mm256_add_pd(_mm256_load_pd(t + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
}
#endif

// Where a weight-gradient tile's operands lie for the AVX2 kernels with kInPlace (see
// GemmTransposedA): a strip's a(k, i) at a[k·strip_ld + i], a panel's b(k, j) at b[k·panel_ld + j]
// for j < width, zero past it. (Packed: a[k·kMr + i], b[k·kNr + j]; WgradOperands512 on AVX-512.)
// Passed by value: by reference, the micro-kernels called out of line ran ~5% slower.
struct WgradOperands {
  int64_t strip_ld = kMr, panel_ld = kNr, width = kNr;
};

#if TF_RNN_OPS_HAVE_AVX2
// The lanes j < n (of 8) of a masked load.
inline __m256i LaneMask8(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::clamp<int64_t>(n, 0, 8))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The float sums over rows [k0, k1) of a weight-gradient tile (a, b packed as WgradMicroKernel
// reads them, or, kInPlace, where `at` says), in registers: acc[i][h] holds row i's columns
// [8h, 8h + 8).
template <int kRows, bool kInPlace = false>
inline void WgradRunSums(int64_t k0, int64_t k1, const float* a, const float* b,
                         __m256 (&acc)[kMr][2], WgradOperands at = {}) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const int64_t a_step = kInPlace ? at.strip_ld : kMr, b_step = kInPlace ? at.panel_ld : kNr;
  const __m256i lo = kInPlace ? LaneMask8(at.width) : __m256i{};
  const __m256i hi = kInPlace ? LaneMask8(at.width - 8) : __m256i{};
  const float* ak = a + k0 * a_step;
  const float* bk = b + k0 * b_step;
  for (int64_t k = k0; k < k1; ++k, ak += a_step, bk += b_step) {
    __m256 b0, b1;
    if (kInPlace && at.width < kNr) {  // (a partial panel's; vmaskmovps is slower than a load)
      b0 = _mm256_maskload_ps(bk, lo), b1 = _mm256_maskload_ps(bk + 8, hi);
    } else {
      b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
    }
    TF_RNN_OPS_IN_REGISTERS(b0, b1);
    __m256 av = _mm256_broadcast_ss(ak);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    if constexpr (kRows > 1) {
      av = _mm256_broadcast_ss(ak + 1);
      c10 = _mm256_fmadd_ps(av, b0, c10);
      c11 = _mm256_fmadd_ps(av, b1, c11);
    }
    if constexpr (kRows > 2) {
      av = _mm256_broadcast_ss(ak + 2);
      c20 = _mm256_fmadd_ps(av, b0, c20);
      c21 = _mm256_fmadd_ps(av, b1, c21);
    }
    if constexpr (kRows > 3) {
      av = _mm256_broadcast_ss(ak + 3);
      c30 = _mm256_fmadd_ps(av, b0, c30);
      c31 = _mm256_fmadd_ps(av, b1, c31);
    }
    if constexpr (kRows > 4) {
      av = _mm256_broadcast_ss(ak + 4);
      c40 = _mm256_fmadd_ps(av, b0, c40);
      c41 = _mm256_fmadd_ps(av, b1, c41);
    }
    if constexpr (kRows > 5) {
      av = _mm256_broadcast_ss(ak + 5);
      c50 = _mm256_fmadd_ps(av, b0, c50);
      c51 = _mm256_fmadd_ps(av, b1, c51);
    }
  }
  const __m256 sums[kMr][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                               {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < kRows; ++i) acc[i][0] = sums[i][0], acc[i][1] = sums[i][1];
}
#endif

// C(j, r) += sum over k < kc of a(r, k) · b(k, j), C(j, r) at c[j·ldc + r] in double, for r < kRows
// and j < width: a is a packed strip of kMr columns of the weight-gradient product's right operand,
// a(r, k) at a[k·kMr + r]; b a packed kNr-column panel of its left operand (zero past width).
// Runs of kWgradShortRunK values of k are summed in float registers, groups of them in float, the
// groups in double (see kWgradShortRunK). kInPlace (AVX2 builds only): a and b where `at` says.
template <int kRows, bool kInPlace = false>
inline void WgradMicroKernel(int64_t kc, const float* a, const float* b, double* c, int64_t ldc,
                             int64_t width, WgradOperands at = {}) {
  alignas(32) double tile[kMr][kNr];
  for (int64_t g0 = 0; g0 < kc; g0 += kWgradShortRunK * kWgradRunsPerGroup) {
    const int64_t g1 = std::min(kc, g0 + kWgradShortRunK * kWgradRunsPerGroup);
#if TF_RNN_OPS_HAVE_AVX2
    __m256 group[kMr][2];
    WgradRunSums<kRows, kInPlace>(g0, std::min(g1, g0 + kWgradShortRunK), a, b, group, at);
    for (int64_t r0 = g0 + kWgradShortRunK; r0 < g1; r0 += kWgradShortRunK) {
      __m256 acc[kMr][2];
      WgradRunSums<kRows, kInPlace>(r0, std::min(g1, r0 + kWgradShortRunK), a, b, acc, at);
      for (int i = 0; i < kRows; ++i) {
        for (int h = 0; h < 2; ++h) group[i][h] = _mm256_add_ps(group[i][h], acc[i][h]);
      }
    }
    // The first group sets the tile (clearing it cost GemmTransposedA ~4%, a `rep stos` a call).
    for (int i = 0; i < kRows; ++i) {
      for (int h = 0; h < 2; ++h) {
        if (g0 == 0) {
          StoreAsDouble(group[i][h], tile[i] + 8 * h);
        } else {
          AddToDouble(group[i][h], tile[i] + 8 * h);
        }
      }
    }
#else
    static_assert(!kInPlace, "the plain loops read packed operands");
    float group[kMr][kNr] = {};
    for (int64_t r0 = g0; r0 < g1; r0 += kWgradShortRunK) {
      float run[kMr][kNr] = {};
      for (int64_t k = r0; k < std::min(g1, r0 + kWgradShortRunK); ++k)
        for (int i = 0; i < kRows; ++i)
          for (int64_t j = 0; j < kNr; ++j) run[i][j] += a[k * kMr + i] * b[k * kNr + j];
      for (int i = 0; i < kRows; ++i)
        for (int64_t j = 0; j < kNr; ++j) group[i][j] += run[i][j];
    }
    for (int i = 0; i < kRows; ++i)
      for (int64_t j = 0; j < kNr; ++j) tile[i][j] = (g0 == 0 ? 0.0 : tile[i][j]) + group[i][j];
#endif
  }
  for (int64_t j = 0; j < width; ++j, c += ldc) {
    for (int i = 0; i < kRows; ++i) c[i] += tile[i][j];
  }
}

template <bool kInPlace = false>
inline void WgradStrip(int64_t rows, int64_t kc, const float* a, const float* b, double* c,
                       int64_t ldc, int64_t width, WgradOperands at = {}) {
  ForRows<kMr>(rows, [&](auto r) { WgradMicroKernel<r, kInPlace>(kc, a, b, c, ldc, width, at); });
}

// GemmTransposedA's blocks (see there): at most kWgradMaxKb rows of K at a time, B's packed block
// at most kWgradBlockFloats floats (L2). The AVX-512 kernels take twice both (kWgradMaxKb512,
// kWgradBlockFloats512: the CPUs that have them have L2s of 1 MB or more): each tile's sums are
// added into C once a block, and at 256 rows a block those adds, the tile's set-up and the packing
// were ~12% of the product's time (docs/PERFORMANCE.md item 78). (GemmTransposedA512's strips
// since take up to kWgradStripFloats512, below; GemmTransposedAFloatRuns512 packs its panels too,
// in half as many floats as its strips.)
constexpr int64_t kWgradMaxKb = 256;
constexpr int64_t kWgradBlockFloats = int64_t{1} << 16;
constexpr int64_t kWgradMaxKb512 = 512;
constexpr int64_t kWgradBlockFloats512 = int64_t{1} << 17;
// GemmTransposedA512 (the double sums) takes blocks of up to kWgradMaxKb512 rows whatever N, B's
// strips up to 4 MB (the L3's, read once a panel): every block reads and writes all of the double C
// (100 MB for R's gradient at H = 2048, G·H = 6144), and at N = 2048 strips in L2 (64 rows) cost
// more in those passes than the L3's reads do (one core of the Intel Xeon: 73 -> 112 GFLOP/s; N =
// 1024 97 -> 111; N <= 512 within noise; docs/PERFORMANCE.md item 90).
constexpr int64_t kWgradStripFloats512 = int64_t{1} << 20;

// B's rows [0, kb) (row-major, leading dimension ldb, N columns) packed in strips of kMr columns:
// strip s at b_pack[s·kb·kMr + k·kMr + r]; with mask_rows, row k times mask_rows[k] column by
// column (see WgradRowMask). (Fixed-length copy loops: std::copy_n of these few floats became
// `rep movsq`, whose start-up cost made the packing 17% of the time.)
template <bool kMasked>
inline void PackWgradStripsOf(int64_t N, int64_t kb, const float* B, int64_t ldb,
                              const float* const* mask_rows, float* b_pack) {
  auto value = [&](int64_t k, int64_t n) {
    if constexpr (kMasked) {
      return B[k * ldb + n] * mask_rows[k][n];
    } else {
      return B[k * ldb + n];
    }
  };
  for (int64_t n0 = 0; n0 < N; n0 += kMr) {
    float* strip = b_pack + n0 * kb;
    if (N - n0 >= kMr) {
      for (int64_t k = 0; k < kb; ++k) {
        for (int64_t r = 0; r < kMr; ++r) strip[k * kMr + r] = value(k, n0 + r);
      }
    } else {
      for (int64_t k = 0; k < kb; ++k) {
        for (int64_t r = 0; r < N - n0; ++r) strip[k * kMr + r] = value(k, n0 + r);
      }
    }
  }
}

inline void PackWgradStrips(int64_t N, int64_t kb, const float* B, int64_t ldb,
                            const float* const* mask_rows, float* b_pack) {
  if (mask_rows != nullptr) {
    PackWgradStripsOf<true>(N, kb, B, ldb, mask_rows, b_pack);
  } else {
    PackWgradStripsOf<false>(N, kb, B, ldb, nullptr, b_pack);
  }
}

// The mask rows of B's rows [k0, k0 + kb) (see WgradRowMask) into rows[0, kb); none without a mask.
inline const float* const* WgradMaskRows(const WgradRowMask* mask, int64_t N, int64_t k0,
                                         int64_t kb, const float** rows) {
  if (mask == nullptr) return nullptr;
  int64_t r = (mask->first + k0) % mask->period;
  for (int64_t k = 0; k < kb; ++k) {
    rows[k] = mask->m + r * N;
    if (++r == mask->period) r = 0;
  }
  return rows;
}

// A's rows [0, kb), columns [0, width) (leading dimension lda) packed kPw wide, zero past width:
// panel(k, j) at panel[k·kPw + j].
template <int64_t kPw>
inline void PackWgradPanel(int64_t kb, const float* A, int64_t lda, int64_t width, float* panel) {
  if (width == kPw) {
    for (int64_t k = 0; k < kb; ++k) {
      for (int64_t j = 0; j < kPw; ++j) panel[k * kPw + j] = A[k * lda + j];
    }
  } else {
    for (int64_t k = 0; k < kb; ++k) {
      for (int64_t j = 0; j < kPw; ++j) panel[k * kPw + j] = j < width ? A[k * lda + j] : 0.f;
    }
  }
}

// Storage for B's packed strips of kb_max rows (PackWgradStrips), kept per thread: no allocation
// per call.
inline float* WgradStripStorage(int64_t kb_max, int64_t N) {
  thread_local std::vector<float> storage;
  storage.resize(kb_max * ((N + kMr - 1) / kMr) * kMr);
  return storage.data();
}

// The loops of the weight-gradient products on the AVX2 micro-kernels (GemmTransposedA,
// GemmTransposedAFloatRuns): K in blocks of at most kb_max rows; each block of B packed in strips
// of kMr columns (into b_pack; times b_mask, where given), each kNr-wide panel of A's columns
// [m_begin, m_end) packed in turn and passed over every strip:
// strip_fn(rows, kb, strip, panel, n0, m0, width, k0).
template <typename StripFn>
inline void WgradBlocks(int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                        int64_t ldb, const WgradRowMask* b_mask, int64_t m_begin, int64_t m_end,
                        int64_t kb_max, float* b_pack, StripFn&& strip_fn) {
  alignas(64) float a_panel[kWgradMaxKb * kNr];
  const float* mask_rows[kWgradMaxKb];
  for (int64_t k0 = 0; k0 < K; k0 += kb_max) {
    const int64_t kb = std::min(kb_max, K - k0);
    PackWgradStrips(N, kb, B + k0 * ldb, ldb, WgradMaskRows(b_mask, N, k0, kb, mask_rows), b_pack);
    for (int64_t m0 = m_begin; m0 < m_end; m0 += kNr) {
      const int64_t width = std::min(kNr, m_end - m0);
      PackWgradPanel<kNr>(kb, A + k0 * lda + m0, lda, width, a_panel);
      for (int64_t n0 = 0; n0 < N; n0 += kMr) {
        strip_fn(std::min(kMr, N - n0), kb, b_pack + n0 * kb, a_panel, n0, m0, width, k0);
      }
    }
  }
}

// The loops of GemmTransposedA's products that read A and B where they lie (WgradInPlace512,
// WgradInPlace): K in blocks of at most kb_max rows, those of the packed loops (so the same sums),
// C's rows [m_begin, m_end) in panels of A kPw columns wide, N in strips of kMr columns:
// tile_fn(rows, kb, strip, panel, c, width), strip = B + k0·ldb + n0, panel = A + k0·lda + m0,
// c = C + m0·ldc + n0.
template <int64_t kPw, typename TileFn>
inline void WgradInPlaceTiles(int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                              int64_t ldb, double* C, int64_t ldc, int64_t m_begin, int64_t m_end,
                              int64_t kb_max, TileFn&& tile_fn) {
  for (int64_t k0 = 0; k0 < K; k0 += kb_max) {
    const int64_t kb = std::min(kb_max, K - k0);
    for (int64_t m0 = m_begin; m0 < m_end; m0 += kPw) {
      const int64_t width = std::min(kPw, m_end - m0);
      for (int64_t n0 = 0; n0 < N; n0 += kMr) {
        tile_fn(std::min(kMr, N - n0), kb, B + k0 * ldb + n0, A + k0 * lda + m0, C + m0 * ldc + n0,
                width);
      }
    }
  }
}

// Storage for the packed panels of A (PackWgradPanel) of WgradRunsColumnBlocks, kept per thread
// as WgradStripStorage's.
inline float* WgradPanelStorage(int64_t floats) {
  thread_local std::vector<float> storage;
  storage.resize(floats);
  return storage.data();
}

// The loops of GemmTransposedAFloatRuns in another order than WgradBlocks': for each block of K
// (at most kb_max rows), B's strips and all of A's kPw-wide panels of a block of C's columns (in
// at most half of block_floats, the strips' budget) are packed, and each strip of C's rows passes
// over the whole column block, so that C is read and written a row segment at a time in memory
// order. WgradBlocks' order (a panel over every strip) walks C down a column panel, a line of each
// row G·H floats apart, where no prefetcher follows: for the C of 16 MB of R's gradient at H = 2048
// (K = 64) it ran at 64 GFLOP/s on zmm, this at 120-128 (one core; docs/PERFORMANCE.md items 89,
// 95).
// tile_fn(rows, kb, strip, panel, c, width, add): C's tile at c, rows x width, (+)= the runs.
template <int64_t kPw, typename TileFn>
inline void WgradRunsColumnBlocks(int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                                  int64_t ldb, float* C, int64_t ldc, int64_t m_begin,
                                  int64_t m_end, bool accumulate, int64_t kb_max,
                                  int64_t block_floats, TileFn&& tile_fn) {
  const int64_t cols_max = std::max<int64_t>(kPw, block_floats / 2 / kb_max / kPw * kPw);
  float* b_pack = WgradStripStorage(kb_max, N);
  float* a_pack = WgradPanelStorage(kb_max * cols_max);
  for (int64_t k0 = 0; k0 < K; k0 += kb_max) {
    const int64_t kb = std::min(kb_max, K - k0);
    const bool add = accumulate || k0 > 0;
    PackWgradStrips(N, kb, B + k0 * ldb, ldb, /*mask_rows=*/nullptr, b_pack);
    for (int64_t j0 = m_begin; j0 < m_end; j0 += cols_max) {
      const int64_t j1 = std::min(m_end, j0 + cols_max);
      for (int64_t m0 = j0; m0 < j1; m0 += kPw) {
        PackWgradPanel<kPw>(kb, A + k0 * lda + m0, lda, std::min(kPw, j1 - m0),
                            a_pack + (m0 - j0) * kb);
      }
      for (int64_t n0 = 0; n0 < N; n0 += kMr) {
        for (int64_t m0 = j0; m0 < j1; m0 += kPw) {
          tile_fn(std::min(kMr, N - n0), kb, b_pack + n0 * kb, a_pack + (m0 - j0) * kb,
                  C + n0 * ldc + m0, std::min(kPw, j1 - m0), add);
        }
      }
    }
  }
}

#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
// t[0..16) = v, in double.
TF_RNN_OPS_TARGET_AVX512 inline void StoreAsDouble512(__m512 v, double* t) {
  const __m512d v64 = _mm512_castps_pd(v);
  const __m256 lo = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, v64, 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, v64, 1));
  _mm512_store_pd(t, _mm512_maskz_cvtps_pd(0xFF, lo));
  _mm512_store_pd(t + 8, _mm512_maskz_cvtps_pd(0xFF, hi));
}

// t[0..16) += v, in double.
TF_RNN_OPS_TARGET_AVX512 inline void AddToDouble512(__m512 v, double* t) {
  // (Masked forms with full masks, i.e. the plain instructions: GCC 12's unmasked intrinsics warn
  // of their undefined source operand, -Wmaybe-uninitialized.)
  const __m512d v64 = _mm512_castps_pd(v);
  const __m256 lo = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, v64, 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, v64, 1));
  _mm512_store_pd(t, _mm512_add_pd(_mm512_load_pd(t), _mm512_maskz_cvtps_pd(0xFF, lo)));
  _mm512_store_pd(t + 8, _mm512_add_pd(_mm512_load_pd(t + 8), _mm512_maskz_cvtps_pd(0xFF, hi)));
}

// c[j·ldc + i] += tile[i][j] for i < kRows, j < width (< kPw, and tile's columns written up to
// width rounded up to 8): each 8 columns' kRows rows transposed in registers and added as one
// masked vector a column. (The scalar loop was ~10% of the weight-gradient product's time,
// docs/PERFORMANCE.md item 78.)
template <int kRows, int64_t kPw>
TF_RNN_OPS_TARGET_AVX512 inline void AddTileTransposed512(const double (&tile)[kMr][kPw],
                                                          int64_t width, double* c, int64_t ldc) {
  const __mmask8 rows = static_cast<__mmask8>((1u << kRows) - 1);
  for (int64_t j0 = 0; j0 < width; j0 += 8, c += 8 * ldc) {
    __m512d r[8];
    for (int i = 0; i < 8; ++i)
      r[i] = i < kRows ? _mm512_load_pd(tile[i] + j0) : _mm512_setzero_pd();
    // Pairs of rows interleaved, then 128-bit lanes gathered twice: col[j] = (r[0][j], ...,
    // r[7][j]). (Masked forms with full masks: see AddToDouble512.)
    __m512d t[8], u[8], col[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm512_maskz_unpacklo_pd(0xFF, r[i], r[i + 1]);
      t[i + 1] = _mm512_maskz_unpackhi_pd(0xFF, r[i], r[i + 1]);
    }
    for (int h = 0; h < 8; h += 4) {                                          // rows h..h+3
      u[h] = _mm512_maskz_shuffle_f64x2(0xFF, t[h], t[h + 2], 0x88);          // columns 0, 4
      u[h + 1] = _mm512_maskz_shuffle_f64x2(0xFF, t[h], t[h + 2], 0xdd);      // 2, 6
      u[h + 2] = _mm512_maskz_shuffle_f64x2(0xFF, t[h + 1], t[h + 3], 0x88);  // 1, 5
      u[h + 3] = _mm512_maskz_shuffle_f64x2(0xFF, t[h + 1], t[h + 3], 0xdd);  // 3, 7
    }
    col[0] = _mm512_maskz_shuffle_f64x2(0xFF, u[0], u[4], 0x88);
    col[4] = _mm512_maskz_shuffle_f64x2(0xFF, u[0], u[4], 0xdd);
    col[2] = _mm512_maskz_shuffle_f64x2(0xFF, u[1], u[5], 0x88);
    col[6] = _mm512_maskz_shuffle_f64x2(0xFF, u[1], u[5], 0xdd);
    col[1] = _mm512_maskz_shuffle_f64x2(0xFF, u[2], u[6], 0x88);
    col[5] = _mm512_maskz_shuffle_f64x2(0xFF, u[2], u[6], 0xdd);
    col[3] = _mm512_maskz_shuffle_f64x2(0xFF, u[3], u[7], 0x88);
    col[7] = _mm512_maskz_shuffle_f64x2(0xFF, u[3], u[7], 0xdd);
    const int64_t n = std::min<int64_t>(8, width - j0);
    for (int64_t j = 0; j < n; ++j) {
      double* cj = c + j * ldc;
      _mm512_mask_storeu_pd(cj, rows, _mm512_add_pd(_mm512_maskz_loadu_pd(rows, cj), col[j]));
    }
  }
}

// One row of a weight-gradient kernel step on zmm: the row's a value times the k-th row of one or
// two panels (kTwo), into its accumulators. (Named accumulators, as in MicroKernel.)
#define TF_RNN_OPS_ZMM_ROW(R, AV)                                   \
  if constexpr (kRows > R) {                                        \
    const __m512 av = _mm512_set1_ps(AV);                           \
    c##R##0 = _mm512_fmadd_ps(av, b0, c##R##0);                     \
    if constexpr (kTwo) c##R##1 = _mm512_fmadd_ps(av, b1, c##R##1); \
  }

// Where a weight-gradient tile's operands lie on zmm: packed (a strip's a(k, i) at a[k·kMr + i], a
// panel's b(k, j) at b[k·2·kNr + j], zero past its width) or, kInPlace, read where they lie:
// a(k, i) at a[k·strip_ld + i], b(k, j) at b[k·panel_ld + j] for the lanes of lo (j < 16) and hi
// (16 + j), zero in the others (see GemmTransposedA512).
template <bool kInPlace>
struct WgradOperands512 {
  int64_t strip_ld = kMr, panel_ld = 2 * kNr;
  __mmask16 lo = 0xFFFF, hi = 0xFFFF;
};

// The float sums of k in [k0, k1) of a weight-gradient tile on zmm (a, b as `at` says):
// acc[i] = row i's sums over the panel's one or two (kTwo) halves.
template <int kRows, bool kTwo, bool kInPlace = false>
TF_RNN_OPS_TARGET_AVX512 inline void WgradRunSums512(int64_t k0, int64_t k1, const float* a,
                                                     const float* b, __m512 (&acc)[kMr][2],
                                                     const WgradOperands512<kInPlace>& at = {}) {
  constexpr int64_t kPw = 2 * kNr;
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const int64_t a_step = kInPlace ? at.strip_ld : kMr, b_step = kInPlace ? at.panel_ld : kPw;
  const float* ak = a + k0 * a_step;
  const float* bk = b + k0 * b_step;
  // (Unrolled 4 times: the double sums' products 1.03-1.06x, docs/PERFORMANCE.md item 94. The
  // AVX2 loop, WgradRunSums, runs 1.05x faster as it is.)
#pragma GCC unroll 4
  for (int64_t k = k0; k < k1; ++k, ak += a_step, bk += b_step) {
    __m512 b0, b1;
    if constexpr (kInPlace) {
      b0 = _mm512_maskz_loadu_ps(at.lo, bk);
      b1 = kTwo ? _mm512_maskz_loadu_ps(at.hi, bk + kNr) : b0;
    } else {
      b0 = _mm512_loadu_ps(bk), b1 = kTwo ? _mm512_loadu_ps(bk + kNr) : b0;
    }
    TF_RNN_OPS_IN_REGISTERS(b0, b1);
    TF_RNN_OPS_ZMM_ROW(0, ak[0])
    TF_RNN_OPS_ZMM_ROW(1, ak[1])
    TF_RNN_OPS_ZMM_ROW(2, ak[2])
    TF_RNN_OPS_ZMM_ROW(3, ak[3])
    TF_RNN_OPS_ZMM_ROW(4, ak[4])
    TF_RNN_OPS_ZMM_ROW(5, ak[5])
  }
  acc[0][0] = c00, acc[0][1] = c01, acc[1][0] = c10, acc[1][1] = c11, acc[2][0] = c20;
  acc[2][1] = c21, acc[3][0] = c30, acc[3][1] = c31, acc[4][0] = c40, acc[4][1] = c41;
  acc[5][0] = c50, acc[5][1] = c51;
}

// WgradMicroKernel on AVX-512, for a panel 2·kNr wide (a, b as `at` says): width <= 2·kNr (kTwo)
// or <= kNr. The same runs, groups and double sums, in the same order, as WgradMicroKernel.
template <int kRows, bool kTwo, bool kInPlace>
TF_RNN_OPS_TARGET_AVX512 inline void WgradMicroKernel512(int64_t kc, const float* a, const float* b,
                                                         double* c, int64_t ldc, int64_t width,
                                                         const WgradOperands512<kInPlace>& at) {
  constexpr int64_t kPw = 2 * kNr;
  alignas(64) double tile[kMr][kPw];  // (set by the first group; see WgradMicroKernel)
  for (int64_t g0 = 0; g0 < kc; g0 += kWgradShortRunK * kWgradRunsPerGroup) {
    const int64_t g1 = std::min(kc, g0 + kWgradShortRunK * kWgradRunsPerGroup);
    __m512 group[kMr][2];  // (in registers: 12 more zmm)
    WgradRunSums512<kRows, kTwo>(g0, std::min(g1, g0 + kWgradShortRunK), a, b, group, at);
    for (int64_t r0 = g0 + kWgradShortRunK; r0 < g1; r0 += kWgradShortRunK) {
      __m512 acc[kMr][2];
      WgradRunSums512<kRows, kTwo>(r0, std::min(g1, r0 + kWgradShortRunK), a, b, acc, at);
      for (int i = 0; i < kRows; ++i) {
        group[i][0] = _mm512_add_ps(group[i][0], acc[i][0]);
        if constexpr (kTwo) group[i][1] = _mm512_add_ps(group[i][1], acc[i][1]);
      }
    }
    for (int i = 0; i < kRows; ++i) {
      for (int h = 0; h < (kTwo ? 2 : 1); ++h) {
        if (g0 == 0) {
          StoreAsDouble512(group[i][h], tile[i] + kNr * h);
        } else {
          AddToDouble512(group[i][h], tile[i] + kNr * h);
        }
      }
    }
  }
  AddTileTransposed512<kRows>(tile, width, c, ldc);
}

template <bool kTwo, bool kInPlace>
TF_RNN_OPS_TARGET_AVX512 inline void WgradStrip512(int64_t rows, int64_t kc, const float* a,
                                                   const float* b, double* c, int64_t ldc,
                                                   int64_t width,
                                                   const WgradOperands512<kInPlace>& at) {
  ForRows512<kMr>(rows, [&](auto r) TF_RNN_OPS_TARGET_AVX512 {
    WgradMicroKernel512<r, kTwo>(kc, a, b, c, ldc, width, at);
  });
}

// Whether GemmTransposedA512 reads A's panels and B's strips where they lie rather than packed: B
// without a mask, A's rows at most 64 floats apart (128 where N <= 32) and B's at most 1024 (its
// strips' rows a few broadcasts each, A's panel rows whole vectors). There the packing cost more
// than it saved: consecutive rows share lines and pages, and the prefetchers follow them. One core
// of the Intel Xeon (docs/PERFORMANCE.md item 115), K = 4096, packed -> in place, GFLOP/s: C of
// 32 x 32 88 -> 134, 48 x 48 91 -> 113, 64 x 64 103 -> 119, 32 x 512 73 -> 96, 96 x 32 94 -> 107;
// wider A slower in place (128 x 128 126 -> 113, 768 x 256 137 -> 95). The same sums, bit for bit.
inline bool WgradInPlace512(int64_t N, int64_t lda, int64_t ldb) {
  return ldb <= 1024 && (lda <= 64 || (lda <= 128 && N <= 32));
}

// The packed strips' loop of GemmTransposedA512 over one panel (see there): each strip's share of
// the next panel's rows of A and tiles of C prefetched first.
template <bool kTwo>
TF_RNN_OPS_TARGET_AVX512 inline void WgradPackedPanel512(int64_t N, int64_t kb, const float* b_pack,
                                                         const float* a_panel, double* c,
                                                         int64_t ldc, int64_t width,
                                                         const float* a_next, int64_t lda,
                                                         const double* c_next) {
  constexpr int64_t kPw = 2 * kNr;
  const int64_t strips = (N + kMr - 1) / kMr;
  const int64_t a_share = (kb + strips - 1) / strips;
  const int64_t c_share = ((kPw * ldc + 7) / 8 + strips - 1) / strips;  // 64-byte lines
  for (int64_t n0 = 0, s = 0; n0 < N; n0 += kMr, ++s) {
    if (a_next != nullptr) {
      for (int64_t k = s * a_share; k < std::min(kb, (s + 1) * a_share); ++k) {
        __builtin_prefetch(a_next + k * lda);
        __builtin_prefetch(a_next + k * lda + kNr);
      }
      for (int64_t l = s * c_share; l < (s + 1) * c_share; ++l) {
        __builtin_prefetch(c_next + l * 8, 1);
      }
    }
    WgradStrip512<kTwo>(std::min(kMr, N - n0), kb, b_pack + n0 * kb, a_panel, c + n0, ldc, width,
                        WgradOperands512<false>{});
  }
}

// GemmTransposedA's loops (see there) with panels of A 2·kNr columns wide.
TF_RNN_OPS_TARGET_AVX512 inline void GemmTransposedA512(int64_t N, int64_t K, const float* A,
                                                        int64_t lda, const float* B, int64_t ldb,
                                                        const WgradRowMask* b_mask, double* C,
                                                        int64_t ldc, int64_t m_begin, int64_t m_end,
                                                        int64_t kb_max, float* b_pack) {
  constexpr int64_t kPw = 2 * kNr;
  if (b_mask == nullptr && WgradInPlace512(N, lda, ldb)) {
    // (The lambda marked for AVX-512 too: a lambda does not take its enclosing function's target.)
    WgradInPlaceTiles<kPw>(
        N, K, A, lda, B, ldb, C, ldc, m_begin, m_end, kb_max,
        [ldb, lda, ldc](int64_t rows, int64_t kb, const float* strip, const float* panel, double* c,
                        int64_t width) TF_RNN_OPS_TARGET_AVX512 {
          // (B's rows are the strips', A's the panel's)
          const WgradOperands512<true> at{ldb, lda, LaneMask(width), LaneMask(width - kNr)};
          if (width > kNr) {
            WgradStrip512<true>(rows, kb, strip, panel, c, ldc, width, at);
          } else {
            WgradStrip512<false>(rows, kb, strip, panel, c, ldc, width, at);
          }
        });
    return;
  }
  alignas(64) float a_panel[kWgradMaxKb512 * kPw];  // 64 KB: L1 and L2
  const float* mask_rows[kWgradMaxKb512];
  for (int64_t k0 = 0; k0 < K; k0 += kb_max) {
    const int64_t kb = std::min(kb_max, K - k0);
    PackWgradStrips(N, kb, B + k0 * ldb, ldb, WgradMaskRows(b_mask, N, k0, kb, mask_rows), b_pack);
    for (int64_t m0 = m_begin; m0 < m_end; m0 += kPw) {
      const int64_t width = std::min(kPw, m_end - m0);
      PackWgradPanel<kPw>(kb, A + k0 * lda + m0, lda, width, a_panel);
      // Each strip asks for a share of the next panel's rows of A (each row a new cache line and,
      // G·H floats apart, a new page: no hardware prefetcher follows them) and of its tiles of C,
      // so that the next panel's packing and tile sums find them in cache (docs/PERFORMANCE.md).
      const bool prefetch = m0 + kPw < m_end;
      const float* a_next = prefetch ? A + k0 * lda + m0 + kPw : nullptr;
      const double* c_next = C + (m0 + kPw) * ldc;
      if (width > kNr) {
        WgradPackedPanel512<true>(N, kb, b_pack, a_panel, C + m0 * ldc, ldc, width, a_next, lda,
                                  c_next);
      } else {
        WgradPackedPanel512<false>(N, kb, b_pack, a_panel, C + m0 * ldc, ldc, width, a_next, lda,
                                   c_next);
      }
    }
  }
}

// WgradRunsMicroKernel on AVX-512: a tile of kRows rows of C by a panel 2·kNr wide (b(k, j) at
// b[k·2·kNr + j], zero past width), C's row i at c + i·ldc, its columns [0, width) written (the
// masks: LaneMask(width), LaneMask(width - kNr)). The same runs, sums and order as
// WgradRunsMicroKernel.
template <int kRows>
TF_RNN_OPS_TARGET_AVX512 inline void WgradRunsMicroKernel512(int64_t kc, const float* a,
                                                             const float* b, float* c, int64_t ldc,
                                                             __mmask16 lo_mask, __mmask16 hi_mask,
                                                             bool accumulate) {
  for (int64_t k0 = 0; k0 < kc; k0 += kWgradSubK) {
    __m512 acc[kMr][2];
    WgradRunSums512<kRows, /*kTwo=*/true>(k0, std::min(kc, k0 + kWgradSubK), a, b, acc);
    const bool add = accumulate || k0 > 0;
    for (int i = 0; i < kRows; ++i) {
      float* row = c + i * ldc;
      __m512 lo = acc[i][0], hi = acc[i][1];
      if (add) {
        lo = _mm512_add_ps(_mm512_maskz_loadu_ps(lo_mask, row), lo);
        hi = _mm512_add_ps(_mm512_maskz_loadu_ps(hi_mask, row + kNr), hi);
      }
      _mm512_mask_storeu_ps(row, lo_mask, lo);
      _mm512_mask_storeu_ps(row + kNr, hi_mask, hi);
    }
  }
}

// GemmTransposedAFloatRuns on AVX-512: WgradRunsColumnBlocks' loops, panels 2·kNr wide (at most
// kWgradBlockFloats512 floats of strips, half that of panels: L2).
TF_RNN_OPS_TARGET_AVX512 inline void GemmTransposedAFloatRuns512(
    int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
    int64_t ldc, int64_t m_begin, int64_t m_end, bool accumulate) {
  constexpr int64_t kPw = 2 * kNr;
  // (Blocks of K a multiple of kWgradSubK where they can be, so that the runs are whole.)
  const int64_t kb_max = std::max<int64_t>(
      kWgradSubK, std::min(kWgradBlockFloats512 / N, kWgradMaxKb) / kWgradSubK * kWgradSubK);
  // (The lambda marked for AVX-512 too: a lambda does not take its enclosing function's target.)
  auto tile = [ldc](int64_t rows, int64_t kb, const float* strip, const float* panel, float* c,
                    int64_t width, bool add) TF_RNN_OPS_TARGET_AVX512 {
    const __mmask16 lo = LaneMask(width), hi = LaneMask(width - kNr);
    ForRows512<kMr>(rows, [&](auto r) TF_RNN_OPS_TARGET_AVX512 {
      WgradRunsMicroKernel512<r>(kb, strip, panel, c, ldc, lo, hi, add);
    });
  };
  WgradRunsColumnBlocks<kPw>(N, K, A, lda, B, ldb, C, ldc, m_begin, m_end, accumulate, kb_max,
                             kWgradBlockFloats512, tile);
}
#undef TF_RNN_OPS_ZMM_ROW
#endif  // TF_RNN_OPS_HAVE_AVX512_DISPATCH

// WgradInPlace512 for the AVX2 kernels (GemmTransposedA without AVX-512; their panels a cache line
// wide, cheaper to pack): A's rows at most 32 floats apart and B's at most 1024, or 64 and 256
// where N <= 64. One core of the Intel Xeon on the AVX2 kernels (TF_RNN_OPS_NO_AVX512=1), K =
// 4096, packed -> in place, GFLOP/s: C of 16 x 32 40 -> 60, 32 x 32 65 -> 74, 32 x 512 56 -> 71,
// 64 x 64 71 -> 76, 64 x 16 52 -> 57; slower past the limits (64 x 64 with B's rows 512 apart
// 75 -> 68, 64 x 256 74 -> 71, 96 x 32 73 -> 71, 128 x 20 60 -> 47; docs/PERFORMANCE.md item 115).
inline bool WgradInPlace(int64_t N, int64_t lda, int64_t ldb) {
  return (lda <= 32 && ldb <= 1024) || (lda <= 64 && N <= 64 && ldb <= 256);
}
}  // namespace packed_gemm_internal

// C[M, N] += Aᵀ · B over the rows [m_begin, m_end) of C (callers split them across threads, in
// multiples of kNr), for A [K, M] and B [K, N] float row-major with leading dimensions lda, ldb,
// into a double C: the weight gradients, sums over a chunk's steps·batch rows (dW = D_gxᵀ·X,
// dR = D_ghᵀ·H_prev), accumulated in double over the chunks (see kWgradSubK). The tiles are Cᵀ's:
// kNr (AVX-512: 2·kNr) columns of A (the gate grads, M = G·H wide) against kMr columns of B. K is
// cut into blocks of kb rows so that all of B's block, packed in strips of kMr columns, stays in
// L2 (256 KB; AVX-512: up to 4 MB in L3, kWgradStripFloats512); each kb x kNr panel of A is packed
// (16 KB at most, AVX-512 64 KB) and passes over every strip. b_mask: B's rows times their mask
// rows as they are packed. Measured on one core of a Zen 3 at the chunk's shapes (512 rows, G·H =
// 768, N = 128 or 256): 87-89 GFLOP/s against Eigen's 60-80, before the double accumulation. (Read
// in place, each k of a panel is a new cache line and, G·H floats apart, often a new page: 75.)
inline void GemmTransposedA(int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                            int64_t ldb, double* C, int64_t ldc, int64_t m_begin, int64_t m_end,
                            const WgradRowMask* b_mask = nullptr) {
  using namespace packed_gemm_internal;  // NOLINT(build/namespaces): its block constants
  if (m_end <= m_begin || N == 0 || K == 0) return;
#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
  if (UseAvx512()) {
    const int64_t kb_max = std::clamp<int64_t>(kWgradStripFloats512 / N, 16, kWgradMaxKb512);
    GemmTransposedA512(N, K, A, lda, B, ldb, b_mask, C, ldc, m_begin, m_end, kb_max,
                       WgradStripStorage(kb_max, N));
    return;
  }
#endif
  const int64_t kb_max = std::clamp<int64_t>(kWgradBlockFloats / N, 16, kWgradMaxKb);
#if TF_RNN_OPS_HAVE_AVX2
  if (b_mask == nullptr && WgradInPlace(N, lda, ldb)) {
    packed_gemm_internal::WgradInPlaceTiles<kNr>(
        N, K, A, lda, B, ldb, C, ldc, m_begin, m_end, kb_max,
        [ldb, lda, ldc](int64_t rows, int64_t kb, const float* strip, const float* panel, double* c,
                        int64_t width) {
          packed_gemm_internal::WgradStrip<true>(rows, kb, strip, panel, c, ldc, width,
                                                 {ldb, lda, width});
        });
    return;
  }
#endif
  float* b_pack = WgradStripStorage(kb_max, N);
  packed_gemm_internal::WgradBlocks(
      N, K, A, lda, B, ldb, b_mask, m_begin, m_end, kb_max, b_pack,
      [&](int64_t rows, int64_t kb, const float* strip, const float* panel, int64_t n0, int64_t m0,
          int64_t width, int64_t /*k0*/) {
        packed_gemm_internal::WgradStrip(rows, kb, strip, panel, C + m0 * ldc + n0, ldc, width);
      });
}

namespace packed_gemm_internal {

// c(r, j) (+)= sum over k < kc of a(r, k) · b(k, j), c(r, j) at c[r·ldc + j] in float, for
// r < kRows and j < width: a, b packed as for WgradMicroKernel. Each run of kWgradSubK values of k
// is summed in float registers and added to c as a whole (the first run of a call that does not
// accumulate stores it): the float sums of GemmTransposedAFloatRuns.
template <int kRows>
inline void WgradRunsMicroKernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                 int64_t width, bool accumulate) {
#if TF_RNN_OPS_HAVE_AVX2
  for (int64_t k0 = 0; k0 < kc; k0 += kWgradSubK) {
    const int64_t k1 = std::min(kc, k0 + kWgradSubK);
    __m256 acc[kMr][2];
    WgradRunSums<kRows>(k0, k1, a, b, acc);
    const bool add = accumulate || k0 > 0;
    for (int i = 0; i < kRows; ++i) {
      float* row = c + i * ldc;
      if (width == kNr) {
        __m256 lo = acc[i][0], hi = acc[i][1];
        if (add) {
          lo = _mm256_add_ps(_mm256_loadu_ps(row), lo);
          hi = _mm256_add_ps(_mm256_loadu_ps(row + 8), hi);
        }
        _mm256_storeu_ps(row, lo);
        _mm256_storeu_ps(row + 8, hi);
      } else {
        alignas(32) float sum[kNr];
        _mm256_store_ps(sum, acc[i][0]);
        _mm256_store_ps(sum + 8, acc[i][1]);
        for (int64_t j = 0; j < width; ++j) row[j] = add ? row[j] + sum[j] : sum[j];
      }
    }
  }
#else
  for (int64_t k0 = 0; k0 < kc; k0 += kWgradSubK) {
    float sum[kMr][kNr] = {};
    for (int64_t k = k0; k < std::min(kc, k0 + kWgradSubK); ++k)
      for (int i = 0; i < kRows; ++i)
        for (int64_t j = 0; j < kNr; ++j) sum[i][j] += a[k * kMr + i] * b[k * kNr + j];
    for (int i = 0; i < kRows; ++i) {
      float* row = c + i * ldc;
      for (int64_t j = 0; j < width; ++j)
        row[j] = accumulate || k0 > 0 ? row[j] + sum[i][j] : sum[i][j];
    }
  }
#endif
}

inline void WgradRunsStrip(int64_t rows, int64_t kc, const float* a, const float* b, float* c,
                           int64_t ldc, int64_t width, bool accumulate) {
  ForRows<kMr>(rows, [&](auto r) { WgradRunsMicroKernel<r>(kc, a, b, c, ldc, width, accumulate); });
}

}  // namespace packed_gemm_internal

// The AVX2 kernels take WgradRunsColumnBlocks' order for a C of at least this many floats (a
// call's share, 4 MB): 2.8-3.6x at R's gradient of H = 2048 (K = 16-64), 1.1-1.25x at H = 1024,
// but ~10% slower than WgradBlocks' at C's of 0.2-0.5 M floats (one core of the Intel Xeon with
// TF_RNN_OPS_NO_AVX512; docs/PERFORMANCE.md item 95).
constexpr int64_t kWgradRunsColumnBlocksMinFloats = int64_t{1} << 20;

// C[N, M] (+)= Bᵀ · A over the columns [m_begin, m_end) of C (callers split them across threads,
// in multiples of kNr), for A [K, M] and B [K, N] float row-major with leading dimensions lda, ldb,
// into a float C (leading dimension ldc) that accumulates (else is overwritten): a weight gradient
// of few rows straight into Keras' [in, G·H] layout, A the gate grads, B the layer's input or
// h_prev. The loops and packing of GemmTransposedA, C's tile transposed (rows of C: B's columns;
// contiguous columns: A's), and float sums: each run of kWgradSubK rows summed in registers, the
// runs added to C one at a time. Its error is one such run's plus that of a float sum of K /
// kWgradSubK terms, which for the rows it is used for (cpu_gemm.h's WeightGradsInT) is no more than
// TensorFlow's float32 math's (B rows a step in one float product, then the tape's sum of T).
// With AVX-512 (GemmTransposedAFloatRuns512), and for large C, the same runs in another loop order
// (WgradRunsColumnBlocks).
inline void GemmTransposedAFloatRuns(int64_t N, int64_t K, const float* A, int64_t lda,
                                     const float* B, int64_t ldb, float* C, int64_t ldc,
                                     int64_t m_begin, int64_t m_end, bool accumulate) {
  using packed_gemm_internal::kWgradBlockFloats;
  using packed_gemm_internal::kWgradMaxKb;
  if (m_end <= m_begin || N == 0) return;
  if (K == 0) {
    if (!accumulate) {
      for (int64_t n = 0; n < N; ++n) std::fill(C + n * ldc + m_begin, C + n * ldc + m_end, 0.f);
    }
    return;
  }
#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
  if (UseAvx512()) {
    packed_gemm_internal::GemmTransposedAFloatRuns512(N, K, A, lda, B, ldb, C, ldc, m_begin, m_end,
                                                      accumulate);
    return;
  }
#endif
  // (Blocks of K a multiple of kWgradSubK where they can be, so that the runs are whole.)
  const int64_t kb_max =
      std::max<int64_t>(16, std::min(kWgradBlockFloats / N, kWgradMaxKb) / kWgradSubK * kWgradSubK);
  if (N * (m_end - m_begin) >= kWgradRunsColumnBlocksMinFloats) {
    packed_gemm_internal::WgradRunsColumnBlocks<kNr>(
        N, K, A, lda, B, ldb, C, ldc, m_begin, m_end, accumulate, kb_max, kWgradBlockFloats,
        [ldc](int64_t rows, int64_t kb, const float* strip, const float* panel, float* c,
              int64_t width, bool add) {
          packed_gemm_internal::WgradRunsStrip(rows, kb, strip, panel, c, ldc, width, add);
        });
    return;
  }
  packed_gemm_internal::WgradBlocks(
      N, K, A, lda, B, ldb, /*b_mask=*/nullptr, m_begin, m_end, kb_max,
      packed_gemm_internal::WgradStripStorage(kb_max, N),
      [&](int64_t rows, int64_t kb, const float* strip, const float* panel, int64_t n0, int64_t m0,
          int64_t width, int64_t k0) {
        packed_gemm_internal::WgradRunsStrip(rows, kb, strip, panel, C + n0 * ldc + m0, ldc, width,
                                             accumulate || k0 > 0);
      });
}

namespace packed_gemm_internal {

// C's columns [dst, dst + w) += the rows' a · B's rows k..k+3 at columns [src, src + w), for
// `rows` (1 or 2) rows of A and C: each loaded vector of B serves both rows (a product of 2-8 rows
// is bound by loads, not FMAs, in this form).
inline void StreamRun4(int rows, const float* A, int64_t lda, int64_t k, const float* B,
                       int64_t ldb, int64_t src, float* C, int64_t ldc, int64_t dst, int64_t w) {
  const float *b0 = B + k * ldb + src, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
  const float* a = A + k;
  float* c = C + dst;
  int64_t j = 0;
  if (rows == 2) {
    const float* a_ = a + lda;
    float* c_ = c + ldc;
#if TF_RNN_OPS_HAVE_AVX2
    const __m256 v0 = _mm256_set1_ps(a[0]), v1 = _mm256_set1_ps(a[1]), v2 = _mm256_set1_ps(a[2]),
                 v3 = _mm256_set1_ps(a[3]), u0 = _mm256_set1_ps(a_[0]), u1 = _mm256_set1_ps(a_[1]),
                 u2 = _mm256_set1_ps(a_[2]), u3 = _mm256_set1_ps(a_[3]);
    for (; j + 8 <= w; j += 8) {
      const __m256 x0 = _mm256_loadu_ps(b0 + j), x1 = _mm256_loadu_ps(b1 + j),
                   x2 = _mm256_loadu_ps(b2 + j), x3 = _mm256_loadu_ps(b3 + j);
      __m256 p = _mm256_loadu_ps(c + j), q = _mm256_loadu_ps(c_ + j);
      p = _mm256_fmadd_ps(v0, x0, p);
      q = _mm256_fmadd_ps(u0, x0, q);
      p = _mm256_fmadd_ps(v1, x1, p);
      q = _mm256_fmadd_ps(u1, x1, q);
      p = _mm256_fmadd_ps(v2, x2, p);
      q = _mm256_fmadd_ps(u2, x2, q);
      p = _mm256_fmadd_ps(v3, x3, p);
      q = _mm256_fmadd_ps(u3, x3, q);
      _mm256_storeu_ps(c + j, p);
      _mm256_storeu_ps(c_ + j, q);
    }
#endif
    for (; j < w; ++j) {
      c[j] += a[0] * b0[j] + a[1] * b1[j] + a[2] * b2[j] + a[3] * b3[j];
      c_[j] += a_[0] * b0[j] + a_[1] * b1[j] + a_[2] * b2[j] + a_[3] * b3[j];
    }
    return;
  }
#if TF_RNN_OPS_HAVE_AVX2
  const __m256 v0 = _mm256_set1_ps(a[0]), v1 = _mm256_set1_ps(a[1]), v2 = _mm256_set1_ps(a[2]),
               v3 = _mm256_set1_ps(a[3]);
  for (; j + 8 <= w; j += 8) {
    __m256 acc = _mm256_loadu_ps(c + j);
    acc = _mm256_fmadd_ps(v0, _mm256_loadu_ps(b0 + j), acc);
    acc = _mm256_fmadd_ps(v1, _mm256_loadu_ps(b1 + j), acc);
    acc = _mm256_fmadd_ps(v2, _mm256_loadu_ps(b2 + j), acc);
    acc = _mm256_fmadd_ps(v3, _mm256_loadu_ps(b3 + j), acc);
    _mm256_storeu_ps(c + j, acc);
  }
#endif
  for (; j < w; ++j) c[j] += a[0] * b0[j] + a[1] * b1[j] + a[2] * b2[j] + a[3] * b3[j];
}

#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
// StreamRun4 on zmm for kRows (1-4) rows of A and C: each loaded vector of B serves every row.
// Against the ymm form's pairs of rows, a product of 3-8 rows issues ~2.3x fewer instructions
// (B's vectors loaded once for 4 rows, 16 floats an instruction). prefetch (the first group of
// rows only): B's rows kStreamPrefetchRows ahead, so that their trip from memory overlaps this
// group's multiply-adds (one core, K = 1024, 2048 of 4096 columns, B from memory: 8 rows 0.78 ms
// in ymm pairs -> 0.63 zmm -> 0.45 with the prefetch; from L3 0.53 -> 0.28 -> 0.35;
// docs/PERFORMANCE.md item 84). Each C value gets the multiply-adds of the ymm form's vector loop,
// in its order.
constexpr int64_t kStreamPrefetchRows = 8;
template <int kRows>
TF_RNN_OPS_TARGET_AVX512 inline void StreamRun4Zmm(const float* A, int64_t lda, int64_t k,
                                                   const float* B, int64_t ldb, int64_t src,
                                                   float* C, int64_t ldc, int64_t dst, int64_t w,
                                                   bool prefetch) {
  const float *b0 = B + k * ldb + src, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
  __m512 a[kRows][4];
  for (int r = 0; r < kRows; ++r) {
    for (int i = 0; i < 4; ++i) a[r][i] = _mm512_set1_ps(A[r * lda + k + i]);
  }
  for (int64_t j = 0; j < w; j += 16) {
    if (prefetch) {  // B's rows two groups ahead (k + 8..11), where they come from memory
      const float* q = b0 + kStreamPrefetchRows * ldb + j;
      for (int i = 0; i < 4; ++i) {
        _mm_prefetch(reinterpret_cast<const char*>(q + i * ldb), _MM_HINT_T0);
      }
    }
    const __mmask16 m = LaneMask(w - j);
    const __m512 x0 = _mm512_maskz_loadu_ps(m, b0 + j), x1 = _mm512_maskz_loadu_ps(m, b1 + j),
                 x2 = _mm512_maskz_loadu_ps(m, b2 + j), x3 = _mm512_maskz_loadu_ps(m, b3 + j);
    for (int r = 0; r < kRows; ++r) {
      float* c = C + r * ldc + dst + j;
      __m512 p = _mm512_maskz_loadu_ps(m, c);
      p = _mm512_fmadd_ps(a[r][0], x0, p);
      p = _mm512_fmadd_ps(a[r][1], x1, p);
      p = _mm512_fmadd_ps(a[r][2], x2, p);
      p = _mm512_fmadd_ps(a[r][3], x3, p);
      _mm512_mask_storeu_ps(c, m, p);
    }
  }
}

// C's columns [dst, dst + w) += A's rows · B's rows k..k+15 at columns [src, src + w), for all M
// rows of A and C: each group of 16 loaded vectors of B (one per row of B) serves every row, and
// each C vector is loaded and stored once per 16 multiply-adds (StreamRun4Zmm: once per 4, a
// product of 8-16 rows was bound by that traffic: Intel Xeon, one core, K = 1024, 1536 columns,
// 8 rows 0.45 -> 0.35 ms, 16 rows 0.91 -> 0.69; docs/PERFORMANCE.md item 87). The rows run one
// after the other (interleaving 2-8 rows' chains measured slower), and nothing is prefetched (B's
// next 16 rows at these columns: 5-15% slower there). Each C value gets StreamRun4Zmm's
// multiply-adds, in its order.
TF_RNN_OPS_TARGET_AVX512 inline void StreamRun16Zmm(int64_t M, const float* A, int64_t lda,
                                                    int64_t k, const float* B, int64_t ldb,
                                                    int64_t src, float* C, int64_t ldc, int64_t dst,
                                                    int64_t w) {
  const float* b = B + k * ldb + src;
  for (int64_t j = 0; j < w; j += 16) {
    const __mmask16 m = LaneMask(w - j);
    __m512 x[16];
    for (int i = 0; i < 16; ++i) x[i] = _mm512_maskz_loadu_ps(m, b + i * ldb + j);
    const float* a = A + k;
    float* c = C + dst + j;
    for (int64_t r = 0; r < M; ++r, a += lda, c += ldc) {
      __m512 p = _mm512_maskz_loadu_ps(m, c);
      for (int i = 0; i < 16; ++i) p = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), x[i], p);
      _mm512_mask_storeu_ps(c, m, p);
    }
  }
}

// StreamRun4Zmm for `rows` (1-4) rows.
TF_RNN_OPS_TARGET_AVX512 inline void StreamRows4Zmm(int rows, const float* A, int64_t lda,
                                                    int64_t k, const float* B, int64_t ldb,
                                                    int64_t src, float* C, int64_t ldc, int64_t dst,
                                                    int64_t w, bool prefetch) {
  switch (rows) {
    case 1:
      return StreamRun4Zmm<1>(A, lda, k, B, ldb, src, C, ldc, dst, w, prefetch);
    case 2:
      return StreamRun4Zmm<2>(A, lda, k, B, ldb, src, C, ldc, dst, w, prefetch);
    case 3:
      return StreamRun4Zmm<3>(A, lda, k, B, ldb, src, C, ldc, dst, w, prefetch);
    default:
      return StreamRun4Zmm<4>(A, lda, k, B, ldb, src, C, ldc, dst, w, prefetch);
  }
}
#endif  // TF_RNN_OPS_HAVE_AVX512_DISPATCH

}  // namespace packed_gemm_internal

// C[M, n_begin:n_end) = A[M, K] · B[K, n_begin:n_end) for a few rows M, with B read as stored
// (row-major, leading dimension ldb; no packing) in one pass: each group of 4 rows of B is scaled
// by A's 4 values and added into C's rows (two rows of C per pass over a loaded vector of B; with
// AVX-512 and 3 rows or more, groups of 16 rows of B serve all rows, StreamRun16Zmm). For
// B = 1 (one-step calls: generation, decoding, streaming) a step's product is memory-bound: packing
// B first would read and write it once more than the product reads it. So B is read in its own
// order: C's columns are cut into runs that are contiguous in B, the runs sorted by their place in
// B, and every group of 4 rows of B is read along all the runs before the next group (runs of 512
// columns, or of the gate blocks alone, made the prefetchers restart every 2-4 KB: 14 GB/s against
// 19 at GRU(1024), docs/PERFORMANCE.md item 29). C's rows stay in L2: at most kStreamCBytes of C
// per pass. gate_src (or null): C's column block g (`block` wide) comes from B's column block
// gate_src[g]. C's rows have leading dimension ldc, A's lda.
inline void StreamGemm(int64_t M, const float* A, int64_t lda, int64_t K, const float* B,
                       int64_t ldb, float* C, int64_t ldc, int64_t n_begin, int64_t n_end,
                       const int* gate_src = nullptr, int64_t block = 0) {
  constexpr int64_t kStreamCBytes = 256 << 10;
  constexpr int kMaxRuns = 8;
  const int64_t pass_cols = std::max<int64_t>(512, kStreamCBytes / 4 / std::max<int64_t>(M, 1));
  struct Run {
    int64_t dst, src, w;
  };
  for (int64_t p0 = n_begin; p0 < n_end;) {
    // The runs of this pass: at most pass_cols columns, kMaxRuns runs, sorted by src.
    Run runs[kMaxRuns];
    int n_runs = 0;
    int64_t p1 = p0;
    while (p1 < n_end && p1 - p0 < pass_cols && n_runs < kMaxRuns) {
      int64_t j1 = std::min(n_end, p0 + pass_cols), src = p1;
      if (gate_src != nullptr) {
        const int64_t g = p1 / block;
        j1 = std::min(j1, (g + 1) * block);
        src = gate_src[g] * block + (p1 - g * block);
      }
      Run r{p1, src, j1 - p1};
      int at = n_runs++;
      for (; at > 0 && runs[at - 1].src > r.src; --at) runs[at] = runs[at - 1];
      runs[at] = r;
      p1 = j1;
    }
    for (int64_t m = 0; m < M; ++m) std::fill_n(C + m * ldc + p0, p1 - p0, 0.f);
    int64_t k = 0;
#if TF_RNN_OPS_HAVE_AVX512_DISPATCH
    if (UseAvx512() && M >= 3) {  // (1-2 rows: bound by memory, the ymm pairs as fast or faster)
      for (; k + 16 <= K; k += 16) {
        for (int r = 0; r < n_runs; ++r) {
          packed_gemm_internal::StreamRun16Zmm(M, A, lda, k, B, ldb, runs[r].src, C, ldc,
                                               runs[r].dst, runs[r].w);
        }
      }
      for (; k + 4 <= K; k += 4) {
        for (int64_t m = 0; m < M; m += 4) {
          const int rows = int(std::min<int64_t>(4, M - m));
          for (int r = 0; r < n_runs; ++r) {
            packed_gemm_internal::StreamRows4Zmm(
                rows, A + m * lda, lda, k, B, ldb, runs[r].src, C + m * ldc, ldc, runs[r].dst,
                runs[r].w, m == 0 && k + packed_gemm_internal::kStreamPrefetchRows < K);
          }
        }
      }
    }
#endif
    for (; k + 4 <= K; k += 4) {
      for (int64_t m = 0; m < M; m += 2) {
        const int rows = M - m >= 2 ? 2 : 1;
        for (int r = 0; r < n_runs; ++r) {
          packed_gemm_internal::StreamRun4(rows, A + m * lda, lda, k, B, ldb, runs[r].src,
                                           C + m * ldc, ldc, runs[r].dst, runs[r].w);
        }
      }
    }
    for (; k < K; ++k) {  // the last K % 4 rows of B
      for (int r = 0; r < n_runs; ++r) {
        const float* b0 = B + k * ldb + runs[r].src;
        for (int64_t m = 0; m < M; ++m) {
          const float a0 = A[m * lda + k];
          float* c = C + m * ldc + runs[r].dst;
          for (int64_t j = 0; j < runs[r].w; ++j) c[j] += a0 * b0[j];
        }
      }
    }
    p0 = p1;
  }
}

// C[M, n_begin:n_end) = A[M, K] · op(B) with op(B)[k, n] = B[n, k] (B row-major [N, K], leading
// dimension ldb), for a few rows M, B read as stored in one pass: each row of B is one dot product
// with each row of A (the backward's D · Rᵀ of a one-step call, R as Keras keeps it; packing Rᵀ
// first cost a GRU(1024) one-step training step more than the product: docs/PERFORMANCE.md, item
// 56). gate_src (or null): op(B)'s row block g (`block` wide) is B's column block gate_src[g]. A's
// rows lda apart, C's ldc.
inline void StreamGemmTransposed(int64_t M, const float* A, int64_t lda, int64_t K, const float* B,
                                 int64_t ldb, float* C, int64_t ldc, int64_t n_begin, int64_t n_end,
                                 const int* gate_src = nullptr, int64_t block = 0) {
  typedef float V __attribute__((vector_size(32), aligned(4)));  // 8 floats, unaligned loads
  constexpr int kW = 8, kMaxRows = 8;
  // The runs of k within one gate block: [k0, k1) of A, from B's column src.
  const int64_t n_runs = gate_src ? (K + block - 1) / block : 1;
  for (int64_t m0 = 0; m0 < M; m0 += kMaxRows) {
    const int rows = int(std::min<int64_t>(kMaxRows, M - m0));
    for (int64_t n = n_begin; n < n_end; ++n) {
      const float* b_row = B + n * ldb;
      V acc[kMaxRows] = {};
      float tail[kMaxRows] = {};
      for (int64_t run = 0; run < n_runs; ++run) {
        const int64_t k0 = gate_src ? run * block : 0, k1 = gate_src ? std::min(K, k0 + block) : K;
        const float* b = b_row + (gate_src ? gate_src[run] * block : 0) - k0;
        int64_t k = k0;
        for (; k + kW <= k1; k += kW) {
          const V bv = *reinterpret_cast<const V*>(b + k);
          for (int r = 0; r < rows; ++r) {
            acc[r] += *reinterpret_cast<const V*>(A + (m0 + r) * lda + k) * bv;
          }
        }
        for (; k < k1; ++k) {
          for (int r = 0; r < rows; ++r) tail[r] += A[(m0 + r) * lda + k] * b[k];
        }
      }
      for (int r = 0; r < rows; ++r) {
        float sum = tail[r];
        for (int i = 0; i < kW; ++i) sum += acc[r][i];
        C[(m0 + r) * ldc + n] = sum;
      }
    }
  }
}

}  // namespace tf_rnn_ops

#undef TF_RNN_OPS_IN_REGISTERS

#endif  // TF_RNN_OPS_CC_KERNELS_PACKED_GEMM_H_
