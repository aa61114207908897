// The CPU row pass of the layer-norm cells (cc/cells/layer_norm_cells.h): one batch row at a time,
// the whole row's xW and hR (G·H each, gates in the layer's own column order) in, the cell's state
// and h~ out, what backward needs saved. The per-unit math is the cells' (shared with the CUDA
// kernels); what is here is how the CPU walks a row: the LN reductions as lane sums (vectorized,
// independent of the row's address), the activations in Eigen's packet functions over a gate
// block at a time (also independent of the address), and the cells' per-unit combinations in plain
// loops (which the compiler vectorizes). Driven by cc/kernels/layer_norm_rnn_kernels.cc; CPU only
// (Eigen).
#ifndef TF_RNN_OPS_CC_KERNELS_LAYER_NORM_CPU_ROWS_H_
#define TF_RNN_OPS_CC_KERNELS_LAYER_NORM_CPU_ROWS_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "Eigen/Core"
#include "cc/cells/layer_norm_cells.h"
#include "cc/kernels/cpu_cell_io.h"

namespace tf_rnn_ops {
namespace layer_norm_cells {

// dst[0, n) = src[0, n) with non-temporal stores where the vector width allows: for the
// reserve, which the forward writes once and only the grad op reads back, after the whole
// sequence (~100 MB at B = 64, T = 100, H = 256: ordinary stores first read every line they
// write; docs/PERFORMANCE.md). The ends outside dst's aligned vectors use ordinary stores.
// StreamFence() after a range's last StreamOut orders them before what other threads do next.
template <typename T>
inline void StreamOut(const T* src, int64_t n, T* dst) {
  std::copy_n(src, n, dst);
}
inline void StreamFence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}
#if defined(__AVX512F__) || defined(__AVX__)
template <>
inline void StreamOut<float>(const float* src, int64_t n, float* dst) {
#if defined(__AVX512F__)
  constexpr int64_t kWidth = 16;
#else
  constexpr int64_t kWidth = 8;
#endif
  constexpr uintptr_t kAlign = kWidth * sizeof(float);
  const uintptr_t off = reinterpret_cast<uintptr_t>(dst) % kAlign;
  int64_t j = 0;  // dst + j: the first aligned vector
  if (off % sizeof(float) != 0) {
    j = n;  // (no float array lies so; ordinary stores throughout)
  } else if (off != 0) {
    j = std::min<int64_t>(n, static_cast<int64_t>((kAlign - off) / sizeof(float)));
  }
  std::copy_n(src, j, dst);
  for (; j + kWidth <= n; j += kWidth) {
#if defined(__AVX512F__)
    _mm512_stream_ps(dst + j, _mm512_loadu_ps(src + j));
#else
    _mm256_stream_ps(dst + j, _mm256_loadu_ps(src + j));
#endif
  }
  std::copy_n(src + j, n - j, dst + j);
}
#endif

// v <- σ(v) / tanh(v) over n values, every value through the packet function (CpuVec, the fused
// cells' own; the last few values in the narrowest packet that holds them, ForEachPacket). Eigen's
// array expression over a Map peeled the values before v's first 64-byte boundary and after the
// last into its scalar function (a call of expf each): up to 30 of a gate's values went scalar, and
// their results depended on where the row lay in memory (docs/PERFORMANCE.md item 104).
template <typename T, typename F>
inline void PacketsInPlace(T* v, int64_t n, F f) {
  ForEachPacket<T>(n, [&](int64_t j, int w, auto tag) {
    using V = CpuVec<T, typename decltype(tag)::type>;
    f(V::Load(v + j, w)).Store(v + j, w);
  });
}
template <typename T>
inline void SigmoidInPlace(T* v, int64_t n) {
  PacketsInPlace(v, n, [](const auto& x) { return Sigmoid(x); });
}
template <typename T>
inline void TanhInPlace(T* v, int64_t n) {
  PacketsInPlace(v, n, [](const auto& x) { return Tanh(x); });
}

// Gate g's activation (the cell's IsTanhGate) over the gate's H values of a row, vectorized.
template <typename Cell, typename T>
inline void ActivateGate(int g, T* v, int64_t H) {
  if (Cell::IsTanhGate(g)) {
    TanhInPlace(v, H);
  } else {
    SigmoidInPlace(v, H);
  }
}

// The sums of f(j) and g(j) for j in [0, n), each in kLanes lanes (lane k sums j = k mod kLanes)
// added up at the end: the compiler vectorizes the lanes, and the order of the sums does not
// depend on where the row lies in memory (Eigen's reductions start at the first aligned value, so
// the same row at two addresses could sum differently: inference, which works in scratch rows, and
// training, in the reserve, must give bitwise the same outputs). 64 lanes are 8 ymm accumulators
// a sum for float: enough independent adds to hide the FMA's latency (with 16, two chains, the
// sums ran at a quarter of the loads' rate: docs/PERFORMANCE.md). Two sums share one pass.
constexpr int kLanes = 64;
// The lanes' sum as a tree of halves (vector adds; a chain of 64 scalar adds cost ~200 cycles a
// sum).
template <typename T>
inline T AddLanes(T* acc) {
  for (int w = kLanes / 2; w > 0; w /= 2) {
    for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
  }
  return acc[0];
}
template <typename T, typename F, typename G>
inline void LaneSums2(int64_t n, F f, G g, T* sum_f, T* sum_g) {
  T af[kLanes] = {}, ag[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      af[k] += f(j + k);
      ag[k] += g(j + k);
    }
  }
  for (int k = 0; j < n; ++j, ++k) {
    af[k] += f(j);
    ag[k] += g(j);
  }
  *sum_f = AddLanes(af);
  *sum_g = AddLanes(ag);
}
template <typename T, typename F>
inline T LaneSum(int64_t n, F f) {
  T acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) acc[k] += f(j + k);
  }
  for (int k = 0; j < n; ++j, ++k) acc[k] += f(j);
  return AddLanes(acc);
}

// xhat = (v - mean) / sqrt(var + eps) over n values; returns 1 / sqrt(var + eps). In place allowed.
// Two vectorized sums in T (the mean, then the centered squares: no cancellation as with
// sum/sum-of-squares) and the normalizing pass; the row is in L1 throughout. (Before: the sums in
// double, scalar, a 4-cycle add chain per value: most of the row pass, docs/PERFORMANCE.md.)
template <typename T>
inline T Normalize(const T* v, int64_t n, T eps, T* xhat) {
  const T mean = LaneSum<T>(n, [v](int64_t j) { return v[j]; }) / static_cast<T>(n);
  const T var = LaneSum<T>(n, [v, mean](int64_t j) { return (v[j] - mean) * (v[j] - mean); }) /
                static_cast<T>(n);
  const T inv = InvStd(var, eps);
  for (int64_t j = 0; j < n; ++j) xhat[j] = Normalized(v[j], mean, inv);
  return inv;
}

// The grad of LN's input from the grad `dy` of its output (NormalizeInputGrad per unit).
// Accumulates dγ += dy xhat and dβ += dy (dbeta may be null). dv may alias dy (each value read
// before it is written).
template <typename T>
inline void NormalizeGrad(const T* dy, const T* xhat, const T* gamma, T inv, int64_t n, T* dgamma,
                          T* dbeta, T* dv) {
  T sg, sgx;
  LaneSums2<T>(
      n, [=](int64_t j) { return dy[j] * gamma[j]; },
      [=](int64_t j) { return dy[j] * gamma[j] * xhat[j]; }, &sg, &sgx);
  const T mg = sg / static_cast<T>(n), mgx = sgx / static_cast<T>(n);
  for (int64_t j = 0; j < n; ++j) dgamma[j] += dy[j] * xhat[j];
  if (dbeta) {
    for (int64_t j = 0; j < n; ++j) dbeta[j] += dy[j];
  }
  for (int64_t j = 0; j < n; ++j)
    dv[j] = NormalizeInputGrad(dy[j], gamma[j], xhat[j], inv, mg, mgx);
}

// The param grads of one layer (accumulated over rows and steps), as LayerNormParams; null where
// the cell has no such param.
template <typename T>
struct LayerNormGrads {
  T *bias, *bias_h, *gamma_x, *beta_x, *gamma_h, *beta_h, *gamma_c, *beta_c;
};

// One row's saved values (pointers into the reserve, or inference's scratch): xhat_x, xhat_h, act
// [G·H]; c_hat [H] (LSTM); stats [3]: 1/σ of the x side, the h side and (LSTM) c.
template <typename T>
struct RowSaved {
  T *xhat_x, *xhat_h, *act, *c_hat, *stats;
};

// The row pass of a cell: Forward(p, H, gx, gh, c_or_h_prev, saved, c, h~) and Backward(p, H,
// c_or_h_prev, saved, dh~, dc, dz, dgx, dgh, grads, dh_prev).
template <typename Cell>
struct CpuRow;

// ----------------------------------------------------------------------------------- LSTM
template <>
struct CpuRow<LayerNormLstmCell> {
  using Cell = LayerNormLstmCell;

  // gx, gh: the row's xW and hR [4H] (overwritten); writes c [H] and h~ [H].
  template <typename T>
  static void Forward(const LayerNormParams<T>& p, int64_t H, T* gx, T* gh, const T* c_prev,
                      const RowSaved<T>& s, T* c, T* h) {
    const int64_t GH = 4 * H;
    s.stats[0] = Normalize(gx, GH, p.eps, s.xhat_x);
    s.stats[1] = Normalize(gh, GH, p.eps, s.xhat_h);
    T* a = s.act;
    for (int64_t j = 0; j < GH; ++j) {
      a[j] = Cell::Preactivation(Denormalized(s.xhat_x[j], p.gamma_x[j], p.beta_x[j]),
                                 Denormalized(s.xhat_h[j], p.gamma_h[j], p.beta_h[j]), p.bias[j]);
    }
    for (int g = 0; g < 4; ++g) ActivateGate<Cell>(g, a + g * H, H);
    for (int64_t j = 0; j < H; ++j) {
      c[j] = Cell::CellUpdate(a[j], a[H + j], a[2 * H + j], c_prev[j]);
    }
    s.stats[2] = Normalize(c, H, p.eps, s.c_hat);
    for (int64_t j = 0; j < H; ++j) {
      c[j] = Denormalized(s.c_hat[j], p.gamma_c[j], p.beta_c[j]);
      h[j] = c[j];
    }
    TanhInPlace(h, H);
    for (int64_t j = 0; j < H; ++j) h[j] = Cell::HTilde(a[3 * H + j], h[j]);
  }

  // dh: grad of h~ [H]; dc: grad of c after this step [H] (overwritten with the grad of c_prev).
  // Writes dgx and dgh [4H] (grads of xW and hR); accumulates the param grads; adds nothing to
  // dh_prev directly (the LSTM's h_prev acts only through R). The first H of dgx and dgh serve as
  // scratch before the last two passes write them, so that no loop writes what another of its
  // pointers reads (with the __restrict helpers below the per-unit loops vectorize; in place,
  // they ran scalar: docs/PERFORMANCE.md).
  template <typename T>
  static void Backward(const LayerNormParams<T>& p, int64_t H, const T* c_prev,
                       const RowSaved<T>& s, const T* dh, T* dc, T* dz, T* dgx, T* dgh,
                       const LayerNormGrads<T>& d, T* /*dh_prev*/) {
    const T* a = s.act;
    T* dcn = dgx;  // H scratch: grad of LN_s's output, then of its input (in place)
    T* tcs = dgh;  // H scratch: tanh(c)
    DenormalizeRow(H, s.c_hat, p.gamma_c, p.beta_c, tcs);
    TanhInPlace(tcs, H);
    OutputRowBackward(H, dh, a + 3 * H, tcs, dc, dz + 3 * H, dcn);
    NormalizeGrad(dcn, s.c_hat, p.gamma_c, s.stats[2], H, d.gamma_c, d.beta_c, dcn);
    UpdateRowBackward(H, dcn, a, c_prev, dc, dz);
    const int64_t GH = 4 * H;
    for (int64_t j = 0; j < GH; ++j) d.bias[j] += dz[j];
    NormalizeGrad(dz, s.xhat_x, p.gamma_x, s.stats[0], GH, d.gamma_x, d.beta_x, dgx);
    NormalizeGrad(dz, s.xhat_h, p.gamma_h, s.stats[1], GH, d.gamma_h, d.beta_h, dgh);
  }

 private:
  template <typename T>
  static void DenormalizeRow(int64_t H, const T* __restrict xhat, const T* __restrict gamma,
                             const T* __restrict beta, T* __restrict out) {
    for (int64_t j = 0; j < H; ++j) out[j] = Denormalized(xhat[j], gamma[j], beta[j]);
  }
  // OutputBackward per unit: the o gate's grad into d_o, the carried c's into d_c.
  template <typename T>
  static void OutputRowBackward(int64_t H, const T* __restrict dh, const T* __restrict o,
                                const T* __restrict tanh_c, const T* __restrict dc_next,
                                T* __restrict d_o, T* __restrict d_c) {
    for (int64_t j = 0; j < H; ++j) {
      const auto og = Cell::OutputBackward(dh[j], o[j], tanh_c[j], dc_next[j]);
      d_o[j] = og.d_o;
      d_c[j] = og.d_c;
    }
  }
  // CellUpdateBackward per unit: dz's i, f, c blocks and the grad of c_prev into dc.
  template <typename T>
  static void UpdateRowBackward(int64_t H, const T* __restrict dcn, const T* __restrict a,
                                const T* __restrict c_prev, T* __restrict dc, T* __restrict dz) {
    for (int64_t j = 0; j < H; ++j) {
      const auto ug = Cell::CellUpdateBackward(dcn[j], a[j], a[H + j], a[2 * H + j], c_prev[j]);
      dc[j] = ug.d_c_prev;
      dz[j] = ug.d_i;
      dz[H + j] = ug.d_f;
      dz[2 * H + j] = ug.d_g;
    }
  }
};

// ------------------------------------------------------------------------------------ GRU
template <>
struct CpuRow<LayerNormGruCell> {
  using Cell = LayerNormGruCell;

  template <typename T>
  static void Forward(const LayerNormParams<T>& p, int64_t H, T* gx, T* gh, const T* h_prev,
                      const RowSaved<T>& s, T* /*c*/, T* h) {
    const int64_t GH = 3 * H;
    s.stats[0] = Normalize(gx, GH, p.eps, s.xhat_x);
    s.stats[1] = Normalize(gh, GH, p.eps, s.xhat_h);
    T* a = s.act;
    for (int64_t j = 0; j < 2 * H; ++j) {
      a[j] = Cell::GatePreactivation(Denormalized(s.xhat_x[j], p.gamma_x[j], p.bias[j]),
                                     Denormalized(s.xhat_h[j], p.gamma_h[j], p.bias_h[j]));
    }
    ActivateGate<Cell>(0, a, H);
    ActivateGate<Cell>(1, a + H, H);
    for (int64_t j = 0; j < H; ++j) {  // the candidate needs r
      const int64_t k = 2 * H + j;
      a[k] =
          Cell::CandidatePreactivation(a[H + j], Denormalized(s.xhat_x[k], p.gamma_x[k], p.bias[k]),
                                       Denormalized(s.xhat_h[k], p.gamma_h[k], p.bias_h[k]));
    }
    ActivateGate<Cell>(2, a + 2 * H, H);
    for (int64_t j = 0; j < H; ++j) h[j] = Cell::HTilde(a[j], a[2 * H + j], h_prev[j]);
  }

  // c_prev is h_prev here. dz: [3H] scratch. Adds z dh to dh_prev.
  template <typename T>
  static void Backward(const LayerNormParams<T>& p, int64_t H, const T* h_prev,
                       const RowSaved<T>& s, const T* dh, T* /*dc*/, T* dz, T* dgx, T* dgh,
                       const LayerNormGrads<T>& d, T* dh_prev) {
    const T* a = s.act;
    const int64_t GH = 3 * H;
    UnitsBackward(H, dh, a, s.xhat_h + 2 * H, p.gamma_h + 2 * H, p.bias_h + 2 * H, h_prev, dz, dgh,
                  dh_prev);
    for (int64_t j = 0; j < GH; ++j) {
      d.bias[j] += dz[j];
      d.bias_h[j] += dgh[j];
    }
    NormalizeGrad(dz, s.xhat_x, p.gamma_x, s.stats[0], GH, d.gamma_x, static_cast<T*>(nullptr),
                  dgx);
    NormalizeGrad(dgh, s.xhat_h, p.gamma_h, s.stats[1], GH, d.gamma_h, static_cast<T*>(nullptr),
                  dgh);
  }

 private:
  // Cell::Backward per unit (no pointer aliases another: the loop vectorizes): dz's z, r, g
  // blocks, dgh's (the grads of h^, LN'd backwards after), z dh added to dh_prev.
  template <typename T>
  static void UnitsBackward(int64_t H, const T* __restrict dh, const T* __restrict a,
                            const T* __restrict xhat_hg, const T* __restrict gamma_hg,
                            const T* __restrict bias_hg, const T* __restrict h_prev,
                            T* __restrict dz, T* __restrict dgh, T* __restrict dh_prev) {
    for (int64_t j = 0; j < H; ++j) {
      const auto u = Cell::Backward(dh[j], a[j], a[H + j], a[2 * H + j],
                                    Denormalized(xhat_hg[j], gamma_hg[j], bias_hg[j]), h_prev[j]);
      dz[j] = u.d_z;
      dz[H + j] = u.d_r;
      dz[2 * H + j] = u.d_g;
      dgh[j] = u.d_z;  // the grad of h^ (LN'd backwards in place below)
      dgh[H + j] = u.d_r;
      dgh[2 * H + j] = u.d_h_side_g;
      dh_prev[j] += u.d_h_prev;
    }
  }
};

}  // namespace layer_norm_cells
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_LAYER_NORM_CPU_ROWS_H_
