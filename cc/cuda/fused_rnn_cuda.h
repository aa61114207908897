// The cuDNN-style fused multi-layer RNN (docs/MATH.md, "Fused RNN cells" and "Params layout") on
// CUDA, framework-free: raw device pointers, a stream and a cuBLAS handle. Our own kernels, not
// cuDNN; same semantics and the same opaque params layout (cc/kernels/rnn_params.h) as the CPU
// path.
//
// Per layer and direction the forward does one GEMM for the input projection of all time steps
// (gx = x Wᵀ, both directions in one strided-batched call), then per step one GEMM for the
// recurrent part (gh = h Rᵀ, both directions at once), one fused kernel for the gates (the cell's
// one definition, cc/cells/rnn_cells.h), and for an LSTM with projection one more GEMM and kernel;
// a cell with several recurrent products a step (gru_reset_before) runs a GEMM and a kernel per
// product (cc/cuda/README.md, "Fused RNN design").
// The backprop walks the steps in reverse with one GEMM per step (dh_prev = d_gh R) and forms the
// weight gradients as one GEMM over all steps each (dW = d_gxᵀ x, dR = d_ghᵀ h_prev, dP = dhᵀ m)
// and the bias gradients as column sums.
//
// Layouts (row-major, dense): time_major: x [T, B, I], y [T, B, dirs·H_out], h [dirs·L, B, H_out],
// c [dirs·L, B, H]; batch-major: x [B, T, I], y [B, T, dirs·H_out], h [B, dirs·L, H_out], c [B,
// dirs·L, H]. params: the opaque layout of RnnModelShape. Sequence lengths are host memory (int32
// [B], or null for all T); a row b runs over t < len_b, its outputs at t >= len_b are zero, its
// final state is the one after its last valid step (for the backward direction, after t = 0).
//
// `reserve` (training only) carries from the forward to the backprop everything the backprop needs
// (gate activations, previous states, layer inputs, dropout masks), so it never recomputes the
// forward. Workspace and reserve sizes come from the functions below; both must be 256-byte aligned
// device memory. The functions only enqueue work on `stream` (and set the handle's stream to it: a
// handle serves one caller at a time; its pointer mode must be host).
#ifndef TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_H_
#define TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_H_

#include <cstddef>
#include <cstdint>

#include "cc/cuda/cuda_compat.h"
#include "cc/kernels/rnn_params.h"

namespace tf_rnn_ops {
namespace cuda {

enum class DType : int { kFloat32 = 0, kFloat64 = 1 };

struct RnnConfig {
  RnnModelShape shape;   // mode, skip_input, layers, directions, num_units, num_proj, input_size
  int64_t max_time = 0;  // T
  int64_t batch = 0;     // B
  bool time_major = true;
  bool is_training = false;  // false: no reserve, no dropout
  double dropout = 0.0;  // probability of dropping a unit of a layer's output (all but the last)
  uint64_t seed = 0,
           seed2 = 0;  // dropout masks: a pure function of (seed, seed2, dropout_call, layer,
                       // position), the same as the CPU kernels' (TensorFlow's Philox)
  uint64_t dropout_call = 0;  // the caller's count of earlier calls that drew masks: each call's
                              // masks are the next stretch of the stream (rnn_cpu_driver.h,
                              // DropoutStreamOffset)
};

// InvalidArgument for a configuration the fused family's rules refuse
// (cc/kernels/fused_rnn_rules.h: num_layers, num_units and input_size >= 1, skip_input only with
// input_size == num_units, num_proj for lstm only and at most num_units, dropout in [0, 1], the
// size bounds), or negative max_time or batch.
Status ValidateRnnConfig(const RnnConfig& config);
// InvalidArgument for a length < 0 or > T; sets *max_len to the longest (T when lengths is null).
Status ValidateSequenceLengths(const RnnConfig& config, const int32_t* host_lengths,
                               int64_t* max_len);

bool RnnUsesDropout(const RnnConfig& config);

// How the forward runs a step of a one-product cell without projection (process-wide): 0 (the
// default) a cuBLAS GEMM and a gate kernel, 1 one fused kernel (FusedForwardStepKernel, being
// measured: docs/PERFORMANCE.md item 71). For tests and benchmarks; returns the previous setting.
int SetFusedSteps(int mode);
size_t RnnForwardWorkspaceBytes(const RnnConfig& config, DType dtype);
size_t RnnReserveBytes(const RnnConfig& config, DType dtype);  // 0 unless is_training
size_t RnnBackwardWorkspaceBytes(const RnnConfig& config, DType dtype);

// Forward. h0 / c0 may be null (zeros), hy / cy null (not wanted); c0, cy are ignored unless mode
// is lstm; reserve may be null unless is_training.
template <typename T>
Status RnnForward(cublasHandle_t blas, cudaStream_t stream, const RnnConfig& config,
                  const int32_t* host_seq_lengths, const T* x, const T* h0, const T* c0,
                  const T* params, T* y, T* hy, T* cy, void* reserve, void* workspace);

// Backprop of a training forward with the same config, lengths, x and params. dy, dhy, dcy may be
// null (zeros); dx, dh0, dc0 may be null (not wanted: a null dx skips the first layer's d_gx W
// products, a null dh0 the first step's dh_prev products). Writes dx, dh0, dc0 (lstm only) and
// every element of dparams.
template <typename T>
Status RnnBackward(cublasHandle_t blas, cudaStream_t stream, const RnnConfig& config,
                   const int32_t* host_seq_lengths, const T* x, const T* params, const T* dy,
                   const T* dhy, const T* dcy, const void* reserve, T* dx, T* dh0, T* dc0,
                   T* dparams, void* workspace);

}  // namespace cuda
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_H_
