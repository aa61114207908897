// Element-wise math of the fused RNN cells (SPEC.md §4), shared by the CPU driver and the CUDA kernels.
//
// Every cell sees, for one batch row, the pre-activations of its gates split in two parts:
//   gx = W x_t + b_W     (hoisted: computed for all time steps in one matrix product)
//   gh = R h_{t-1} + b_R (one product per step)
// laid out gate after gate, each gate `num_units` wide, in cuDNN's gate order:
//   rnn_relu / rnn_tanh: [h]        lstm: [i, f, c, o]        gru: [r, z, h]
// This header is framework-free: plain pointers, no TensorFlow or Eigen.
#ifndef TF_RNN_OPS_CC_KERNELS_RNN_CELL_MATH_H_
#define TF_RNN_OPS_CC_KERNELS_RNN_CELL_MATH_H_

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define TF_RNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TF_RNN_HOST_DEVICE inline
#endif

namespace tf_rnn_ops {

enum class RnnMode : int { kRnnRelu = 0, kRnnTanh = 1, kLstm = 2, kGru = 3 };

// Number of gates, i.e. of W (and R) matrices per layer and direction.
TF_RNN_HOST_DEVICE constexpr int NumGates(RnnMode mode) {
  return mode == RnnMode::kLstm ? 4 : mode == RnnMode::kGru ? 3 : 1;
}

// The rnn_mode attribute's spelling, for messages.
inline const char* RnnModeName(RnnMode mode) {
  switch (mode) {
    case RnnMode::kRnnRelu:
      return "rnn_relu";
    case RnnMode::kRnnTanh:
      return "rnn_tanh";
    case RnnMode::kLstm:
      return "lstm";
    case RnnMode::kGru:
      return "gru";
  }
  return "?";
}

template <typename T>
TF_RNN_HOST_DEVICE T Sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <typename T>
TF_RNN_HOST_DEVICE T Tanh(T x) {
  return std::tanh(x);
}

// ---------------------------------------------------------------------------------------------------
// Simple RNN: h = act(gx + gh). Saves the activation (h itself) for backprop.
template <typename T, bool kRelu>
struct SimpleRnnCellMath {
  static constexpr int kGates = 1;
  // Forward for unit j. `act_out` (may be null) receives the saved activation.
  TF_RNN_HOST_DEVICE static T Forward(const T* gx, const T* gh, int64_t j, T* act_out) {
    const T a = gx[j] + gh[j];
    const T h = kRelu ? (a > T(0) ? a : T(0)) : Tanh(a);
    if (act_out) act_out[j] = h;
    return h;
  }
  // Backward for unit j: from dh (grad of h) and the saved activation, the pre-activation grad.
  TF_RNN_HOST_DEVICE static T Backward(const T* act, int64_t j, T dh) {
    const T h = act[j];
    return kRelu ? (h > T(0) ? dh : T(0)) : dh * (T(1) - h * h);
  }
};

// ---------------------------------------------------------------------------------------------------
// LSTM (gates i, f, c, o):
//   i = σ(.), f = σ(.), g = tanh(.), o = σ(.);  c = f c_prev + i g;  m = o tanh(c).
// Saves the four activations (act[0..4H)) and c.
template <typename T>
struct LstmCellMath {
  static constexpr int kGates = 4;
  TF_RNN_HOST_DEVICE static void Forward(const T* gx, const T* gh, int64_t H, int64_t j, T c_prev,
                                         T* act_out, T* c_out, T* m_out) {
    const T i = Sigmoid(gx[j] + gh[j]);
    const T f = Sigmoid(gx[H + j] + gh[H + j]);
    const T g = Tanh(gx[2 * H + j] + gh[2 * H + j]);
    const T o = Sigmoid(gx[3 * H + j] + gh[3 * H + j]);
    const T c = f * c_prev + i * g;
    *c_out = c;
    *m_out = o * Tanh(c);
    if (act_out) {
      act_out[j] = i;
      act_out[H + j] = f;
      act_out[2 * H + j] = g;
      act_out[3 * H + j] = o;
    }
  }
  // dm: grad of m; dc: grad of c arriving from the next step. Writes the four pre-activation grads
  // to d_pre and returns the grad of c_prev.
  TF_RNN_HOST_DEVICE static T Backward(const T* act, int64_t H, int64_t j, T c, T c_prev, T dm,
                                       T dc, T* d_pre) {
    const T i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j];
    const T tc = Tanh(c);
    const T dc_total = dc + dm * o * (T(1) - tc * tc);
    d_pre[j] = dc_total * g * i * (T(1) - i);
    d_pre[H + j] = dc_total * c_prev * f * (T(1) - f);
    d_pre[2 * H + j] = dc_total * i * (T(1) - g * g);
    d_pre[3 * H + j] = dm * tc * o * (T(1) - o);
    return dc_total * f;
  }
};

// ---------------------------------------------------------------------------------------------------
// GRU (gates r, z, h), cuDNN's form with the reset gate applied after the recurrent product:
//   r = σ(.), z = σ(.), n = tanh(gx_h + r (R_h h + b_Rh));  h = (1 - z) n + z h_prev.
// Saves r, z, n (act[0..3H)) and the recurrent part of the candidate, gh_h (needed for dr).
template <typename T>
struct GruCellMath {
  static constexpr int kGates = 3;
  TF_RNN_HOST_DEVICE static T Forward(const T* gx, const T* gh, int64_t H, int64_t j, T h_prev,
                                      T* act_out, T* ghn_out) {
    const T r = Sigmoid(gx[j] + gh[j]);
    const T z = Sigmoid(gx[H + j] + gh[H + j]);
    const T n = Tanh(gx[2 * H + j] + r * gh[2 * H + j]);
    if (act_out) {
      act_out[j] = r;
      act_out[H + j] = z;
      act_out[2 * H + j] = n;
      ghn_out[j] = gh[2 * H + j];
    }
    return (T(1) - z) * n + z * h_prev;
  }
  // From dh (grad of h), writes the grads of gx (d_gx) and gh (d_gh), which differ in the candidate
  // gate only, and returns the direct part of the grad of h_prev (z dh; R's part comes from a product).
  TF_RNN_HOST_DEVICE static T Backward(const T* act, const T* ghn, int64_t H, int64_t j, T h_prev,
                                       T dh, T* d_gx, T* d_gh) {
    const T r = act[j], z = act[H + j], n = act[2 * H + j];
    const T dn = dh * (T(1) - z) * (T(1) - n * n);
    const T dz = dh * (h_prev - n) * z * (T(1) - z);
    const T dr = dn * ghn[j] * r * (T(1) - r);
    d_gx[j] = d_gh[j] = dr;
    d_gx[H + j] = d_gh[H + j] = dz;
    d_gx[2 * H + j] = dn;
    d_gh[2 * H + j] = dn * r;
    return dh * z;
  }
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_RNN_CELL_MATH_H_
