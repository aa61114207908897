// The layer-normalized cells (docs/MATH.md, "Cells beyond cuDNN"), each defined once: LayerNormLSTM
// (TF Addons' LayerNormLSTMCell) and LayerNormGRU (haste's LayerNormGRU), with haste's zoneout on
// h.
//
// Unlike the cells of rnn_cells.h, a layer-norm cell needs the whole gate vector of a row before
// any gate (the mean and variance over G·H), so its step is a row pass: the driver
// (cc/kernels/layer_norm_rnn_kernels.cc) hands a cell one batch row at a time, the x side xW and
// the recurrent side hR of that row (G·H each, gates in the layer's own column order), and the cell
// normalizes, runs the gates and saves what its backward needs.
//
//   LayerNormLSTM (gates i, f, c, o):  z = LN_k(xW) + LN_r(hR) + b;  c = σ(f) c_prev + σ(i)
//   tanh(g);
//                  c <- LN_s(c) (the normalized c is carried);  h = σ(o) tanh(c).
//   LayerNormGRU (gates z, r, g):  x^ = LN(xW; γ_0) + b, h^ = LN(hR; γ_1) + b_r (no β);
//                  z = σ(x^_z + h^_z), r = σ(x^_r + h^_r), g = tanh(r h^_g + x^_g);
//                  h = z h_prev + (1 - z) g.
//   LN(v) = (v - mean) / sqrt(var + eps) γ + β over the row (biased variance).
//   Zoneout (a pass after the cell, on h only): training h = h_prev + m (h~ - h_prev), m in {0, 1};
//   inference h = p h_prev + (1 - p) h~.
//
// Framework-free C++17 (Eigen's array functions vectorize the activations over a row's gates).
#ifndef TF_RNN_OPS_CC_CELLS_LAYER_NORM_CELLS_H_
#define TF_RNN_OPS_CC_CELLS_LAYER_NORM_CELLS_H_

#include <cmath>
#include <cstdint>

#include "Eigen/Core"

namespace tf_rnn_ops {
namespace layer_norm_cells {

// v <- σ(v) / tanh(v) over n values, vectorized.
template <typename T>
inline void SigmoidInPlace(T* v, int64_t n) {
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> a(v, n);
  a = a.logistic();
}
template <typename T>
inline void TanhInPlace(T* v, int64_t n) {
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> a(v, n);
  a = a.tanh();
}

// The sum of f(j) for j in [0, n), in 16 lanes (lane k sums j = k mod 16) added up at the end: the
// compiler vectorizes the lanes, and the order of the sums does not depend on where the row lies in
// memory (Eigen's reductions start at the first aligned value, so the same row at two addresses
// could sum differently: inference, which works in scratch rows, and training, in the reserve, must
// give bitwise the same outputs).
template <typename T, typename F>
inline T LaneSum(int64_t n, F f) {
  constexpr int kLanes = 16;
  T acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) acc[k] += f(j + k);
  }
  for (int k = 0; j < n; ++j, ++k) acc[k] += f(j);
  T sum = T(0);
  for (int k = 0; k < kLanes; ++k) sum += acc[k];
  return sum;
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
  const T inv = T(1) / std::sqrt(var + eps);
  for (int64_t j = 0; j < n; ++j) xhat[j] = (v[j] - mean) * inv;
  return inv;
}

// The grad of LN's input from the grad `dy` of its output: g = dy γ;
// dv = inv (g - mean(g) - xhat mean(g xhat)). Accumulates dγ += dy xhat and dβ += dy (dbeta may be
// null). dv may alias dy (each value read before it is written).
template <typename T>
inline void NormalizeGrad(const T* dy, const T* xhat, const T* gamma, T inv, int64_t n, T* dgamma,
                          T* dbeta, T* dv) {
  const T mg = LaneSum<T>(n, [=](int64_t j) { return dy[j] * gamma[j]; }) / static_cast<T>(n);
  const T mgx =
      LaneSum<T>(n, [=](int64_t j) { return dy[j] * gamma[j] * xhat[j]; }) / static_cast<T>(n);
  for (int64_t j = 0; j < n; ++j) dgamma[j] += dy[j] * xhat[j];
  if (dbeta) {
    for (int64_t j = 0; j < n; ++j) dbeta[j] += dy[j];
  }
  for (int64_t j = 0; j < n; ++j) dv[j] = inv * (dy[j] * gamma[j] - mg - xhat[j] * mgx);
}

// The parameters of one layer, in the layer's own layout. gamma_c / beta_c: LSTM only; beta_x /
// beta_h: null for the GRU (haste's LN has no β).
template <typename T>
struct LayerNormParams {
  const T* bias;    // [G·H], added after both LNs (LSTM: b; GRU: b on the x side)
  const T* bias_h;  // GRU: b_r [G·H] on the recurrent side; LSTM: null
  const T *gamma_x, *beta_x, *gamma_h, *beta_h;  // [G·H]
  const T *gamma_c, *beta_c;                     // LSTM: [H]
  T eps;
};

// The param grads of one layer (accumulated over rows and steps), as LayerNormParams; null where
// the cell has no such param.
template <typename T>
struct LayerNormGrads {
  T *bias, *bias_h, *gamma_x, *beta_x, *gamma_h, *beta_h, *gamma_c, *beta_c;
};

// One row's saved values (pointers into the reserve): xhat_x, xhat_h, act [G·H]; c_hat [H] (LSTM);
// stats [3]: 1/σ of the x side, the h side and (LSTM) c.
template <typename T>
struct RowSaved {
  T *xhat_x, *xhat_h, *act, *c_hat, *stats;
};

// ----------------------------------------------------------------------------------- LSTM
struct LayerNormLstmCell {
  static constexpr int kGates = 4;
  static constexpr bool kHasCellState = true;
  static constexpr const char* kName = "layer_norm_lstm";

  // gx, gh: the row's xW and hR [4H] (overwritten); writes c [H] and h~ [H].
  template <typename T>
  static void Forward(const LayerNormParams<T>& p, int64_t H, T* gx, T* gh, const T* c_prev,
                      const RowSaved<T>& s, T* c, T* h) {
    const int64_t GH = 4 * H;
    s.stats[0] = Normalize(gx, GH, p.eps, s.xhat_x);
    s.stats[1] = Normalize(gh, GH, p.eps, s.xhat_h);
    T* a = s.act;
    for (int64_t j = 0; j < GH; ++j) {
      const T z = s.xhat_x[j] * p.gamma_x[j] + p.beta_x[j] + s.xhat_h[j] * p.gamma_h[j] +
                  p.beta_h[j] + p.bias[j];
      a[j] = z;
    }
    SigmoidInPlace(a, 2 * H);
    TanhInPlace(a + 2 * H, H);
    SigmoidInPlace(a + 3 * H, H);
    for (int64_t j = 0; j < H; ++j) c[j] = a[H + j] * c_prev[j] + a[j] * a[2 * H + j];
    s.stats[2] = Normalize(c, H, p.eps, s.c_hat);
    for (int64_t j = 0; j < H; ++j) {
      c[j] = s.c_hat[j] * p.gamma_c[j] + p.beta_c[j];
      h[j] = c[j];
    }
    TanhInPlace(h, H);
    for (int64_t j = 0; j < H; ++j) h[j] *= a[3 * H + j];
  }

  // dh: grad of h~ [H]; dc: grad of c after this step [H] (overwritten with the grad of c_prev).
  // Writes dgx and dgh [4H] (grads of xW and hR); accumulates the param grads; adds nothing to
  // dh_prev directly (the LSTM's h_prev acts only through R).
  template <typename T>
  static void Backward(const LayerNormParams<T>& p, int64_t H, const T* c_prev,
                       const RowSaved<T>& s, const T* dh, T* dc, T* dz, T* dgx, T* dgh,
                       const LayerNormGrads<T>& d, T* /*dh_prev*/) {
    const T* a = s.act;
    T* dcn = dz;          // H scratch: grad of LN_s's output, then of its input (in place)
    T* tcs = dz + 3 * H;  // tanh(c), then the o gate's grad in place
    for (int64_t j = 0; j < H; ++j) tcs[j] = s.c_hat[j] * p.gamma_c[j] + p.beta_c[j];
    TanhInPlace(tcs, H);
    for (int64_t j = 0; j < H; ++j) {
      const T tc = tcs[j];
      const T o = a[3 * H + j];
      dz[3 * H + j] = dh[j] * tc * o * (T(1) - o);
      dcn[j] = dc[j] + dh[j] * o * (T(1) - tc * tc);
    }
    NormalizeGrad(dcn, s.c_hat, p.gamma_c, s.stats[2], H, d.gamma_c, d.beta_c, dcn);
    for (int64_t j = 0; j < H; ++j) {
      const T dcr = dcn[j];
      const T i = a[j], f = a[H + j], g = a[2 * H + j];
      dc[j] = dcr * f;
      dz[j] = dcr * g * i * (T(1) - i);
      dz[H + j] = dcr * c_prev[j] * f * (T(1) - f);
      dz[2 * H + j] = dcr * i * (T(1) - g * g);
    }
    const int64_t GH = 4 * H;
    for (int64_t j = 0; j < GH; ++j) d.bias[j] += dz[j];
    NormalizeGrad(dz, s.xhat_x, p.gamma_x, s.stats[0], GH, d.gamma_x, d.beta_x, dgx);
    NormalizeGrad(dz, s.xhat_h, p.gamma_h, s.stats[1], GH, d.gamma_h, d.beta_h, dgh);
  }
};

// ------------------------------------------------------------------------------------ GRU
struct LayerNormGruCell {
  static constexpr int kGates = 3;
  static constexpr bool kHasCellState = false;
  static constexpr const char* kName = "layer_norm_gru";

  template <typename T>
  static void Forward(const LayerNormParams<T>& p, int64_t H, T* gx, T* gh, const T* h_prev,
                      const RowSaved<T>& s, T* /*c*/, T* h) {
    const int64_t GH = 3 * H;
    s.stats[0] = Normalize(gx, GH, p.eps, s.xhat_x);
    s.stats[1] = Normalize(gh, GH, p.eps, s.xhat_h);
    T* a = s.act;
    for (int64_t j = 0; j < 2 * H; ++j) {
      a[j] = s.xhat_x[j] * p.gamma_x[j] + p.bias[j] + s.xhat_h[j] * p.gamma_h[j] + p.bias_h[j];
    }
    SigmoidInPlace(a, 2 * H);
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = 2 * H + j;
      const T hg = s.xhat_h[k] * p.gamma_h[k] + p.bias_h[k];
      a[k] = a[H + j] * hg + s.xhat_x[k] * p.gamma_x[k] + p.bias[k];
    }
    TanhInPlace(a + 2 * H, H);
    for (int64_t j = 0; j < H; ++j) h[j] = a[j] * h_prev[j] + (T(1) - a[j]) * a[2 * H + j];
  }

  // c_prev is h_prev here. dz: [3H] scratch. Adds z dh to dh_prev.
  template <typename T>
  static void Backward(const LayerNormParams<T>& p, int64_t H, const T* h_prev,
                       const RowSaved<T>& s, const T* dh, T* /*dc*/, T* dz, T* dgx, T* dgh,
                       const LayerNormGrads<T>& d, T* dh_prev) {
    const T* a = s.act;
    const int64_t GH = 3 * H;
    for (int64_t j = 0; j < H; ++j) {
      const T z = a[j], r = a[H + j], g = a[2 * H + j];
      const T hg = s.xhat_h[2 * H + j] * p.gamma_h[2 * H + j] + p.bias_h[2 * H + j];
      const T dg = dh[j] * (T(1) - z) * (T(1) - g * g);
      const T dzz = dh[j] * (h_prev[j] - g) * z * (T(1) - z);
      const T dr = dg * hg * r * (T(1) - r);
      dz[j] = dzz;
      dz[H + j] = dr;
      dz[2 * H + j] = dg;
      dgh[j] = dzz;  // the grad of h^ (LN'd backwards in place below)
      dgh[H + j] = dr;
      dgh[2 * H + j] = dg * r;
      dh_prev[j] += dh[j] * z;
    }
    for (int64_t j = 0; j < GH; ++j) {
      d.bias[j] += dz[j];
      d.bias_h[j] += dgh[j];
    }
    NormalizeGrad(dz, s.xhat_x, p.gamma_x, s.stats[0], GH, d.gamma_x, static_cast<T*>(nullptr),
                  dgx);
    NormalizeGrad(dgh, s.xhat_h, p.gamma_h, s.stats[1], GH, d.gamma_h, static_cast<T*>(nullptr),
                  dgh);
  }
};

}  // namespace layer_norm_cells
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CELLS_LAYER_NORM_CELLS_H_
