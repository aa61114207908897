// The fused layer-normalized LSTM / GRU (TfRnn>LayerNormRnn, docs/MATH.md "LayerNormLSTM",
// "LayerNormGRU", "The fused layer-norm op", "Zoneout") on CUDA, framework-free: raw device
// pointers, a stream and a cuBLAS handle. The same math as the CPU kernel
// (cc/kernels/layer_norm_rnn_kernels.cc): both call the cells' per-unit functions of
// cc/cells/layer_norm_cells.h.
//
// One layer, one direction, weights in the Keras layers' layout: x [T, B, I] (time_major; else
// [B, T, I], Keras' layout, and y, dx, dy likewise [B, T, ·]; the masks and the reserve are
// time-major in both), h0, c0 [B, H], kernel [I, G·H], recurrent_kernel [H, G·H] (gates i, f, c,
// o for the LSTM, z, r, g for the GRU), bias, gamma_x, gamma_h [G·H]; the LSTM's beta_x, beta_h
// [G·H] and gamma_c, beta_c [H]; the GRU's recurrent_bias [G·H]. mask: [T, B] in {0, 1} or null
// (a masked step keeps the states and outputs the carried h). Zoneout on h: zoneout_mask
// [T, B, H] (kMask), one value in device memory (kScalar: the keep value 1 − p of inference) or
// null (kNone). recurrent_mask (with has_recurrent_mask): TF Addons' recurrent dropout m [B, H],
// the same at every step (values 0 or 1/(1 − rate)): h's product with R is (h_{t−1} ⊙ m) R; the
// state carried, zoneout, the step mask's carried h and the GRU's z h_{t−1} see h undropped, and
// so does the reserve (its h_prev); null without. Outputs y [T, B, H] ([B, T, H]), hn, cn [B, H].
//
// Training (is_training) writes the reserve, LayerNormReserveLayout's regions (the CPU kernel's
// layout too, so the op's reserve is the same on either device); the backward reads
// it and never recomputes the forward. Inference writes none (workspace instead) and gives the
// same outputs. Workspace buffers: device memory of the sizes below, aligned to 256 bytes. The
// functions only enqueue work on `stream`; nothing is synchronized.
#ifndef TF_RNN_OPS_CC_CUDA_LAYER_NORM_RNN_CUDA_H_
#define TF_RNN_OPS_CC_CUDA_LAYER_NORM_RNN_CUDA_H_

#include <cstddef>
#include <cstdint>

#include "cc/cells/layer_norm_cells.h"
#include "cc/cells/zoneout.h"
#include "cc/cuda/cuda_compat.h"

namespace tf_rnn_ops {
namespace cuda {

enum class LayerNormCellKind : int { kLstm = 0, kGru = 1 };
using ::tf_rnn_ops::ZoneoutKind;  // cc/cells/zoneout.h

struct LayerNormRnnConfig {
  LayerNormCellKind cell = LayerNormCellKind::kLstm;
  int64_t max_time = 0, batch = 0, input_size = 0, num_units = 0;
  bool time_major = true;  // false: x, y and their grads [B, T, ·]
  bool is_training = true;
  bool has_mask = false;
  bool has_recurrent_mask = false;  // recurrent_mask [B, H] given (a workspace buffer for h ⊙ m)
  ZoneoutKind zoneout = ZoneoutKind::kNone;
  double epsilon = 1e-3;
  int64_t gates() const { return cell == LayerNormCellKind::kLstm ? 4 : 3; }
  bool lstm() const { return cell == LayerNormCellKind::kLstm; }
};

// The parameters (or, LayerNormRnnGrads, their grads); null where the cell has none (the GRU's
// beta_x, beta_h, gamma_c, beta_c; the LSTM's recurrent_bias).
template <typename T>
struct LayerNormRnnParams {
  const T *kernel, *recurrent_kernel, *bias, *recurrent_bias, *gamma_x, *beta_x, *gamma_h, *beta_h,
      *gamma_c, *beta_c;
};
template <typename T>
struct LayerNormRnnGrads {
  T *kernel, *recurrent_kernel, *bias, *recurrent_bias, *gamma_x, *beta_x, *gamma_h, *beta_h,
      *gamma_c, *beta_c;
};

// The reserve's regions: one layout for the CPU and the GPU kernels (cc/cells/layer_norm_cells.h).
using layer_norm_cells::LayerNormReserveLayout;

#if !defined(__CUDACC_RTC__)  // NVRTC sees the kernels (the enums above), not the host API
// Invalid sizes, cell, zoneout kind or epsilon: an InvalidArgument naming what is wrong.
Status ValidateLayerNormRnnConfig(const LayerNormRnnConfig& config);
// Elements of the reserve (0 in inference).
int64_t LayerNormRnnReserveElements(const LayerNormRnnConfig& config);
size_t LayerNormRnnForwardWorkspaceBytes(const LayerNormRnnConfig& config, size_t elem_size);
size_t LayerNormRnnBackwardWorkspaceBytes(const LayerNormRnnConfig& config, size_t elem_size);

// Forward: per call one GEMM xW for all T·B rows (batch-major x: a strided batch, one product a
// step); per step one GEMM h R (with a recurrent mask: (h ⊙ m) R, h ⊙ m written by a kernel
// first) and one kernel (one block per batch row: both LNs' reductions, the cell, the LSTM's LN
// of c, zoneout, the mask). recurrent_mask: null unless config.has_recurrent_mask.
template <typename T>
Status LayerNormRnnForward(cublasHandle_t blas, cudaStream_t stream,
                           const LayerNormRnnConfig& config, const T* x, const T* h0, const T* c0,
                           const LayerNormRnnParams<T>& params, const T* mask,
                           const T* zoneout_mask, const T* recurrent_mask, T* y, T* hn, T* cn,
                           T* reserve, void* workspace);

// Backward from the reserve of a training forward: per step (from the last) one kernel (the
// cell's grads and both LN grads of each row) and one GEMM dh_prev += dGH Rᵀ (with a recurrent
// mask: dh_prev += (dGH Rᵀ) ⊙ m, the GEMM into the workspace, then a kernel); then dx = dGX Wᵀ,
// dW = xᵀ dGX, dR = h_prevᵀ dGH (with a recurrent mask: (h_prev ⊙ m)ᵀ dGH, h_prev ⊙ m written for
// all rows first) over all steps and the bias / γ / β grads as column sums (GEMMs with a ones
// vector). dy, dhn, dcn: grads of y, hn, cn (dcn: the LSTM's; else ignored). recurrent_mask: the
// forward's (null unless config.has_recurrent_mask). Every grad of `grads` the cell has is written
// (the others are not touched).
template <typename T>
Status LayerNormRnnBackward(cublasHandle_t blas, cudaStream_t stream,
                            const LayerNormRnnConfig& config, const T* x,
                            const LayerNormRnnParams<T>& params, const T* mask,
                            const T* zoneout_mask, const T* recurrent_mask, const T* reserve,
                            const T* dy, const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0,
                            const LayerNormRnnGrads<T>& grads, void* workspace);

#endif  // __CUDACC_RTC__

}  // namespace cuda
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CUDA_LAYER_NORM_RNN_CUDA_H_
