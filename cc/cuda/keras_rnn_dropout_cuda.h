// TfRnn>KerasRNNDropout and its backprop on CUDA, framework-free (raw device pointers, a stream
// and a cuBLAS handle): the recurrence of one unidirectional Keras layer with recurrent dropout
// and zoneout (docs/MATH.md, "Cells beyond cuDNN": Recurrent dropout, Zoneout). The layer computes
// the input side of every gate itself; this runs the steps over the cells of cc/cells/rnn_cells.h
// (rnn_relu, rnn_tanh, lstm, gru, gru_reset_before) with the fused driver's step kernels
// (fused_rnn_cuda_kernels.cu.h) and layouts (fused_rnn_cuda_layout.h).
//
// Layouts (row-major, dense), Keras' gate column order (cc/cells/keras_gate_order.h):
//   projected  [B, T, G·H] ([T, B, G·H] time_major): the input side of every gate (and its bias,
//     but for an input_bias row); with gate_major [G, B, T, H] ([G, T, B, H]), and so d_projected;
//   h0, hy, c0, cy [B, H] (c: lstm only); y [B, T, H] ([T, B, H]);
//   recurrent_kernel [H, G·H] (Keras'); recurrent_bias [G·H] or null (gru: Keras' recurrent
//     row, inside the reset product; other cells: the same as a bias in projected), or with
//     input_bias [2, G·H]: the input side's bias (added to projected), then the recurrent one;
//   masks [G, B, H] or null: gate g's recurrent product is (input ⊙ masks[g]) U_g, its input
//     h_{t-1} (or, gru_reset_before's candidate, r ⊙ h_{t-1});
//   zoneout: null, [T, B, H] time-major whatever the layout (h_t = h_{t-1} + m (h~_t − h_{t-1}),
//     values unchecked), or one scalar k applied to every unit (kScalar); on h only (LSTM's c is
//     not zoned); the zoned h is the output and the carried state.
// Sequence lengths are host memory (int32 [B], or null for all T): a row's steps past its length
// keep its state and output zeros.
//
// Per step: per recurrent product of the cell one GEMM on the canonical (cell-order) copy of
// recurrent_kernel, or, with masks, one GEMM per gate on (input ⊙ mask_g); the cell's step kernel;
// the zoneout kernel. The backprop mirrors it: d_input = Σ_g (δ_g U_gᵀ) ⊙ mask_g, and
// dU_g = Σ_t (input_t ⊙ mask_g)ᵀ δ_g,t as one GEMM per gate over all steps. The reserve (training
// only) holds the cell's saved buffers and the states each step read; workspace and reserve must be
// 256-byte aligned device memory of the sizes below.
#ifndef TF_RNN_OPS_CC_CUDA_KERAS_RNN_DROPOUT_CUDA_H_
#define TF_RNN_OPS_CC_CUDA_KERAS_RNN_DROPOUT_CUDA_H_

#include <cstddef>
#include <cstdint>

#include "cc/cells/cell_math.h"
#include "cc/cells/zoneout.h"
#include "cc/cuda/cuda_compat.h"
#include "cc/cuda/fused_rnn_cuda.h"

namespace tf_rnn_ops {
namespace cuda {

using ::tf_rnn_ops::ZoneoutKind;  // cc/cells/zoneout.h

struct KerasDropoutConfig {
  RnnMode mode = RnnMode::kLstm;
  int64_t units = 0;     // H
  int64_t max_time = 0;  // T
  int64_t batch = 0;     // B
  bool time_major = false;
  bool gate_major = false;      // projected (and its grad) [G, B, T, H] ([G, T, B, H] time-major)
  bool is_training = false;     // false: no reserve
  bool recurrent_bias = false;  // recurrent_bias given
  bool input_bias = false;      // recurrent_bias is [2, G·H] (its row 0 the input side's)
  bool masks = false;           // recurrent masks [G, B, H] given
  ZoneoutKind zoneout = ZoneoutKind::kNone;
};

// InvalidArgument for a configuration the rules refuse (units >= 1 and the size bounds of the
// fused family, cc/kernels/fused_rnn_rules.h; an input bias only with a recurrent bias; T, B >= 0).
Status ValidateKerasDropoutConfig(const KerasDropoutConfig& config);
size_t KerasDropoutForwardWorkspaceBytes(const KerasDropoutConfig& config, DType dtype);
size_t KerasDropoutReserveBytes(const KerasDropoutConfig& config,
                                DType dtype);  // 0 unless training
size_t KerasDropoutBackwardWorkspaceBytes(const KerasDropoutConfig& config, DType dtype);

// Forward. c0 / cy: lstm only (else ignored); hy, cy may be null (not wanted); reserve null unless
// is_training.
template <typename T>
Status KerasDropoutForward(cublasHandle_t blas, cudaStream_t stream,
                           const KerasDropoutConfig& config, const int32_t* host_seq_lengths,
                           const T* projected, const T* h0, const T* c0, const T* recurrent_kernel,
                           const T* recurrent_bias, const T* masks, const T* zoneout, T* y, T* hy,
                           T* cy, void* reserve, void* workspace);

// Backprop of a training forward with the same config, lengths, kernel, masks and zoneout. dy, dhy,
// dcy may be null (zeros); dh0, dc0 may be null (not wanted: a null dh0 skips the first step's
// dh_prev products). Writes every element of d_projected, dh0, dc0 (lstm), d_recurrent_kernel and
// d_recurrent_bias (recurrent_bias' shape; with none, ignored).
template <typename T>
Status KerasDropoutBackward(cublasHandle_t blas, cudaStream_t stream,
                            const KerasDropoutConfig& config, const int32_t* host_seq_lengths,
                            const T* recurrent_kernel, const T* masks, const T* zoneout,
                            const T* dy, const T* dhy, const T* dcy, const void* reserve,
                            T* d_projected, T* dh0, T* dc0, T* d_recurrent_kernel,
                            T* d_recurrent_bias, void* workspace);

}  // namespace cuda
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CUDA_KERAS_RNN_DROPOUT_CUDA_H_
