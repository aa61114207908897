// The layer-normalized cells (docs/MATH.md, "Cells beyond cuDNN"), each defined once: LayerNormLSTM
// (TF Addons' LayerNormLSTMCell) and LayerNormGRU (haste's LayerNormGRU), with haste's zoneout on
// h.
//
//   LayerNormLSTM (gates i, f, c, o):  z = LN_k(xW) + LN_r(hR) + b;
//                  c = σ(f) c_prev + σ(i) tanh(g);  c <- LN_s(c) (the normalized c is carried);
//                  h = σ(o) tanh(c).
//   LayerNormGRU (gates z, r, g):  x^ = LN(xW; γ_0) + b, h^ = LN(hR; γ_1) + b_r (no β);
//                  z = σ(x^_z + h^_z), r = σ(x^_r + h^_r), g = tanh(r h^_g + x^_g);
//                  h = z h_prev + (1 - z) g.
//   LN(v) = (v - mean) / sqrt(var + eps) γ + β over the row (biased variance).
//   Zoneout (a pass after the cell, on h only): training h = h_prev + m (h~ - h_prev), m in {0, 1};
//   inference h = p h_prev + (1 - p) h~.
//
// Unlike the cells of rnn_cells.h, a layer-norm cell needs the whole gate vector of a row before
// any gate (the mean and variance over G·H), so its step is a row pass. This header holds what the
// CPU and the GPU share: every per-unit formula of both cells (the LN's normalize / denormalize
// and input grad, the pre-activations, which gate gets tanh, the c / h update, their grads,
// zoneout's forward and backward), the params struct and the reserve's layout. What stays
// device-specific is how a row is walked: the reductions (LN's mean and variance, the grad's two
// means) and the activations' vectorization.
//   CPU: cc/kernels/layer_norm_cpu_rows.h (lane sums; Eigen's packet σ / tanh over a gate
//        block, then these per-unit combinations), driven by cc/kernels/layer_norm_rnn_kernels.cc.
//   GPU: cc/cuda/layer_norm_rnn_cuda.cu.cc (a block per row, block sums; a thread per unit j).
//
// Framework-free (no TensorFlow, no Eigen; every function TF_RNN_OPS_HOST_DEVICE): g++, nvcc and
// NVRTC compile it.
#ifndef TF_RNN_OPS_CC_CELLS_LAYER_NORM_CELLS_H_
#define TF_RNN_OPS_CC_CELLS_LAYER_NORM_CELLS_H_

#include <cmath>
#include <cstdint>

#include "cc/cells/cell_math.h"
#include "cc/cells/zoneout.h"

namespace tf_rnn_ops {
namespace layer_norm_cells {

// ------------------------------------------------------------------------------ LN per unit
// 1 / sqrt(var + eps).
template <typename T>
TF_RNN_OPS_HOST_DEVICE T InvStd(T var, T eps) {
  return T(1) / std::sqrt(var + eps);
}

// xhat = (v - mean) · inv.
template <typename T>
TF_RNN_OPS_HOST_DEVICE T Normalized(T v, T mean, T inv) {
  return (v - mean) * inv;
}

// LN's output from xhat: xhat γ + β (β: the GRU's biases b, b_r stand in for it).
template <typename T>
TF_RNN_OPS_HOST_DEVICE T Denormalized(T xhat, T gamma, T beta) {
  return xhat * gamma + beta;
}

// The grad of LN's input at one unit from the grad dy of its output there: with g = dy γ,
// dv = inv (g - mean(g) - xhat mean(g xhat)); mg = mean(dy γ), mgx = mean(dy γ xhat) over the row.
template <typename T>
TF_RNN_OPS_HOST_DEVICE T NormalizeInputGrad(T dy, T gamma, T xhat, T inv, T mg, T mgx) {
  return inv * (dy * gamma - mg - xhat * mgx);
}

// Zoneout (per unit, forward and backward): cc/cells/zoneout.h.
using ::tf_rnn_ops::Zoneout;
using ::tf_rnn_ops::ZoneoutBackward;

// ------------------------------------------------------------------------------ the params
// The parameters of one layer, in the layer's own layout. gamma_c / beta_c: LSTM only; beta_x /
// beta_h: null for the GRU (haste's LN has no β); bias_h: the GRU's b_r (null for the LSTM).
template <typename T>
struct LayerNormParams {
  const T* bias;    // [G·H], added after both LNs (LSTM: b; GRU: b on the x side)
  const T* bias_h;  // GRU: b_r [G·H] on the recurrent side; LSTM: null
  const T *gamma_x, *beta_x, *gamma_h, *beta_h;  // [G·H]
  const T *gamma_c, *beta_c;                     // LSTM: [H]
  T eps;
};

// ---------------------------------------------------------------------------------- LSTM
struct LayerNormLstmCell {
  static constexpr int kGates = 4;
  static constexpr bool kHasCellState = true;
  static constexpr bool kHasBetas = true;           // beta_x, beta_h (LN's shifts)
  static constexpr bool kHasRecurrentBias = false;  // the GRU's b_r
  static constexpr const char* kName = "layer_norm_lstm";

  // Gate g's activation: tanh for the candidate c (g = 2), σ for i, f, o.
  static TF_RNN_OPS_HOST_DEVICE constexpr bool IsTanhGate(int g) { return g == 2; }

  // A gate's pre-activation from its two LN outputs (Denormalized with γx, βx and γh, βh).
  template <typename T>
  static TF_RNN_OPS_HOST_DEVICE T Preactivation(T x_side, T h_side, T bias) {
    return x_side + h_side + bias;
  }
  // c before its LN, from the activated gates.
  template <typename T>
  static TF_RNN_OPS_HOST_DEVICE T CellUpdate(T i, T f, T g, T c_prev) {
    return f * c_prev + i * g;
  }
  // h~ from σ(o) and tanh of the carried (LN'd) c.
  template <typename T>
  static TF_RNN_OPS_HOST_DEVICE T HTilde(T o, T tanh_c) {
    return o * tanh_c;
  }

  template <typename T>
  struct OutputGrads {
    T d_o;  // the grad of o's pre-activation
    T d_c;  // the grad of the carried c (LN_c's output)
  };
  // dh: the grad of h~; dc_next: the grad of c from the later steps.
  template <typename T>
  static TF_RNN_OPS_HOST_DEVICE OutputGrads<T> OutputBackward(T dh, T o, T tanh_c, T dc_next) {
    return {dh * tanh_c * o * (T(1) - o), dc_next + dh * o * (T(1) - tanh_c * tanh_c)};
  }

  template <typename T>
  struct UpdateGrads {
    T d_i, d_f, d_g;  // the grads of the pre-activations of i, f, c
    T d_c_prev;
  };
  // dc: the grad of CellUpdate's result (LN_c's input).
  template <typename T>
  static TF_RNN_OPS_HOST_DEVICE UpdateGrads<T> CellUpdateBackward(T dc, T i, T f, T g, T c_prev) {
    return {dc * g * i * (T(1) - i), dc * c_prev * f * (T(1) - f), dc * i * (T(1) - g * g), dc * f};
  }
};

// ----------------------------------------------------------------------------------- GRU
struct LayerNormGruCell {
  static constexpr int kGates = 3;
  static constexpr bool kHasCellState = false;
  static constexpr bool kHasBetas = false;
  static constexpr bool kHasRecurrentBias = true;
  static constexpr const char* kName = "layer_norm_gru";

  // Gate g's activation: tanh for the candidate g (g = 2), σ for z, r.
  static TF_RNN_OPS_HOST_DEVICE constexpr bool IsTanhGate(int g) { return g == 2; }

  // The pre-activation of z or r from x^ and h^ (Denormalized with γx, b and γh, b_r).
  template <typename T>
  static TF_RNN_OPS_HOST_DEVICE T GatePreactivation(T x_side, T h_side) {
    return x_side + h_side;
  }
  // The candidate's pre-activation: r h^_g + x^_g.
  template <typename T>
  static TF_RNN_OPS_HOST_DEVICE T CandidatePreactivation(T r, T x_side, T h_side) {
    return r * h_side + x_side;
  }
  template <typename T>
  static TF_RNN_OPS_HOST_DEVICE T HTilde(T z, T g, T h_prev) {
    return z * h_prev + (T(1) - z) * g;
  }

  template <typename T>
  struct UnitGrads {
    T d_z, d_r, d_g;  // the grads of the pre-activations (= of x^'s gates)
    T d_h_side_g;     // the grad of h^_g (r d_g); h^_z, h^_r take d_z, d_r
    T d_h_prev;       // the part of h_prev's grad not through R (z dh)
  };
  // dh: the grad of h~; h_side_g: h^_g.
  template <typename T>
  static TF_RNN_OPS_HOST_DEVICE UnitGrads<T> Backward(T dh, T z, T r, T g, T h_side_g, T h_prev) {
    const T dg = dh * (T(1) - z) * (T(1) - g * g);
    return {dh * (h_prev - g) * z * (T(1) - z), dg * h_side_g * r * (T(1) - r), dg, dg * r, dh * z};
  }
};

// ----------------------------------------------------------------------------- the reserve
// Offsets (in elements) of the reserve's regions, each [T·B, width] with rows t·B + b: the
// normalized x and h sides xhat_x, xhat_h and the gate activations act [G·H]; the LSTM's
// normalized c (c_hat) [H]; h_prev [H]; the LSTM's c_prev [H]; h~ (before zoneout) [H]; stats [3]
// (1/σ of the x side, the h side and the LSTM's c). One layout for the CPU and the GPU kernels:
// TensorFlow may place the forward and the grad op on different devices.
struct LayerNormReserveLayout {
  int64_t xhat_x, xhat_h, act, c_hat, h_prev, c_prev, h_tilde, stats, size;
  static constexpr int kStats = 3;
  // The LSTM's c_hat and c_prev are empty for the GRU.
  LayerNormReserveLayout(int64_t rows, int64_t H, int64_t GH, bool lstm) {
    int64_t o = 0;
    auto take = [&](int64_t w) {
      const int64_t at = o;
      o += rows * w;
      return at;
    };
    xhat_x = take(GH);
    xhat_h = take(GH);
    act = take(GH);
    c_hat = take(lstm ? H : 0);
    h_prev = take(H);
    c_prev = take(lstm ? H : 0);
    h_tilde = take(H);
    stats = take(kStats);
    size = o;
  }
};

}  // namespace layer_norm_cells
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CELLS_LAYER_NORM_CELLS_H_
