// The row sums of NarrowWeightGrad (cpu_gemm.h): weight gradients and bias column sums of narrow
// layers (float, summed in double): C[M, N] += Σ_k A[k, ·]ᵀ B[k, ·] over K rows where both M and N
// are small: the wider of the two fits one SIMD vector and the narrower at most
// kNarrowWgradMaxBroadcasts values (SimpleRNN(1..16), LSTM(1..4), GRU(1..5): G·H and H, or G·H and
// a few inputs). Each row is one vector of the wide side, times each narrow value broadcast, into
// an accumulator per narrow value: the products are done in place from the rows as they lie, with
// no packing. The packed kernel (GemmTransposedA) packs a panel and a strip for every block of K
// and fills a 16 x 32 tile for each: at M = N = 1 it ran at ~4 ns a row, this ~0.3
// (docs/PERFORMANCE.md item 112).
//
// Accuracy as the packed kernel's (packed_gemm.h, kWgradShortRunK): runs of kWgradShortRunK rows
// summed in float registers, a group of kWgradRunsPerGroup runs added in float, groups in double.
#ifndef TF_RNN_OPS_CC_KERNELS_NARROW_WEIGHT_GRADS_H_
#define TF_RNN_OPS_CC_KERNELS_NARROW_WEIGHT_GRADS_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cc/kernels/cpu_cell_io.h"
#include "cc/kernels/packed_gemm.h"

namespace tf_rnn_ops {

constexpr int kNarrowWgradMaxBroadcasts = 16;

// Whether C [M, N] is narrow enough for NarrowWeightGrad.
inline bool NarrowWeightGradFits(int64_t M, int64_t N) {
  constexpr int64_t L = PacketSize<FullPacket<float>>();
  return M >= 1 && N >= 1 && std::max(M, N) <= L && std::min(M, N) <= kNarrowWgradMaxBroadcasts;
}

namespace narrow_wgrad_internal {

// out[q · wide + j] += Σ_{k ∈ [k0, k1)} n[k · ldn + q] · w[k · ldw + j] for q < kNarrow, j < wide
// (n null: every n value 1, a column sum of w).
template <int kNarrow>
void SumRows(int64_t wide, int64_t k0, int64_t k1, const float* w, int64_t ldw, const float* n,
             int64_t ldn, double* out) {
  using P = FullPacket<float>;
  constexpr int L = PacketSize<P>();
  namespace ei = Eigen::internal;
  // Independent accumulator sets, so that at least 8 sums are in flight (an FMA's latency on two
  // ports); kU rows at a time.
  constexpr int kU = kNarrow >= 8 ? 1 : (8 + kNarrow - 1) / kNarrow;
  const bool full = wide == L;
  auto load = [&](int64_t k) {
    return full ? ei::ploadu<P>(w + k * ldw)
                : cpu_vec_internal::LoadFirst<P>(w + k * ldw, static_cast<int>(wide));
  };
  auto add_row = [&](int64_t k, P* acc) {
    const P wv = load(k);
    for (int q = 0; q < kNarrow; ++q) {
      const P nv = ei::pset1<P>(n ? n[k * ldn + q] : 1.0f);
      acc[q] = ei::pmadd(nv, wv, acc[q]);
    }
  };
  alignas(64) float lanes[L];
  for (int64_t g0 = k0; g0 < k1; g0 += kWgradShortRunK * kWgradRunsPerGroup) {
    const int64_t g1 = std::min(k1, g0 + kWgradShortRunK * kWgradRunsPerGroup);
    P group[kNarrow];
    for (int q = 0; q < kNarrow; ++q) group[q] = ei::pset1<P>(0.0f);
    for (int64_t r0 = g0; r0 < g1; r0 += kWgradShortRunK) {
      const int64_t r1 = std::min(g1, r0 + kWgradShortRunK);
      P acc[kU][kNarrow];
      for (int u = 0; u < kU; ++u)
        for (int q = 0; q < kNarrow; ++q) acc[u][q] = ei::pset1<P>(0.0f);
      int64_t k = r0;
      for (; k + kU <= r1; k += kU)
        for (int u = 0; u < kU; ++u) add_row(k + u, acc[u]);
      for (; k < r1; ++k) add_row(k, acc[0]);
      for (int q = 0; q < kNarrow; ++q) {
        P run = acc[0][q];
        for (int u = 1; u < kU; ++u) run = ei::padd(run, acc[u][q]);
        group[q] = ei::padd(group[q], run);
      }
    }
    for (int q = 0; q < kNarrow; ++q) {
      ei::pstore(lanes, group[q]);
      for (int64_t j = 0; j < wide; ++j) out[q * wide + j] += lanes[j];
    }
  }
}

// Whether SumFlat serves a call: one narrow value (or none: column sums), rows of `wide` values
// that follow each other and tile a vector, the narrow side (if any) one value a row likewise.
inline bool FlatRowsFit(int64_t narrow, int64_t wide, int64_t ldw, const float* n, int64_t ldn) {
  constexpr int64_t L = PacketSize<FullPacket<float>>();
  return narrow == 1 && ldw == wide && L % wide == 0 && (n == nullptr || (wide == 1 && ldn == 1));
}

// SumRows<1> where FlatRowsFit: rows [k0, k1) as one array of (k1 - k0)·wide values, a vector
// covering L / wide rows (a dot product where n is given; else column sums, lane l of the sums
// column l % wide). A lane sums kWgradShortRunK rows of its column in a run as SumRows' runs do.
inline void SumFlat(int64_t wide, int64_t k0, int64_t k1, const float* w, const float* n,
                    double* out) {
  using P = FullPacket<float>;
  constexpr int64_t L = PacketSize<P>();
  namespace ei = Eigen::internal;
  constexpr int kChains = 4;  // (independent sums: an add's latency)
  const float* wf = w + k0 * wide;
  const float* nf = n ? n + k0 : nullptr;
  const int64_t total = (k1 - k0) * wide;
  auto term = [&](int64_t i, int64_t count) {
    const P wv = count == L ? ei::ploadu<P>(wf + i)
                            : cpu_vec_internal::LoadFirst<P>(wf + i, static_cast<int>(count));
    if (nf == nullptr) return wv;
    const P nv = count == L ? ei::ploadu<P>(nf + i)
                            : cpu_vec_internal::LoadFirst<P>(nf + i, static_cast<int>(count));
    return ei::pmul(wv, nv);
  };
  constexpr int64_t kRun = kWgradShortRunK * L, kGroup = kRun * kWgradRunsPerGroup;
  alignas(64) float lanes[L];
  for (int64_t g0 = 0; g0 < total; g0 += kGroup) {
    const int64_t g1 = std::min(total, g0 + kGroup);
    P group = ei::pset1<P>(0.0f);
    for (int64_t r0 = g0; r0 < g1; r0 += kRun) {
      const int64_t r1 = std::min(g1, r0 + kRun);
      P acc[kChains];
      for (int u = 0; u < kChains; ++u) acc[u] = ei::pset1<P>(0.0f);
      int64_t i = r0;
      for (; i + kChains * L <= r1; i += kChains * L)
        for (int u = 0; u < kChains; ++u) acc[u] = ei::padd(acc[u], term(i + u * L, L));
      for (; i < r1; i += L) acc[0] = ei::padd(acc[0], term(i, std::min<int64_t>(L, r1 - i)));
      group = ei::padd(group, ei::padd(ei::padd(acc[0], acc[1]), ei::padd(acc[2], acc[3])));
    }
    ei::pstore(lanes, group);
    for (int64_t l = 0; l < L; ++l) out[l % wide] += lanes[l];
  }
}

template <int kNarrow = 1>
void SumRowsOf(int64_t narrow, int64_t wide, int64_t k0, int64_t k1, const float* w, int64_t ldw,
               const float* n, int64_t ldn, double* out) {
  if constexpr (kNarrow < kNarrowWgradMaxBroadcasts) {
    if (narrow > kNarrow) {
      SumRowsOf<kNarrow + 1>(narrow, wide, k0, k1, w, ldw, n, ldn, out);
      return;
    }
  }
  SumRows<kNarrow>(wide, k0, k1, w, ldw, n, ldn, out);
}

}  // namespace narrow_wgrad_internal

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_NARROW_WEIGHT_GRADS_H_
