// What the CPU and GPU OpKernels share besides the fused RNN's FusedRnnAttrs / FusedRnnInputs
// (fused_rnn_attrs.h): the error helper, the compute type of the 16-bit floats, and the GRU block
// cell's input checks, so that both devices accept the same inputs and word their errors the same.
#ifndef TF_RNN_OPS_CC_KERNELS_KERNEL_UTIL_H_
#define TF_RNN_OPS_CC_KERNELS_KERNEL_UTIL_H_

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"
#include "unsupported/Eigen/CXX11/Tensor"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace tf_rnn_ops {

// An InvalidArgument status whose message is the concatenation of the arguments (TensorFlow 2.21
// deprecates errors::InvalidArgument(...)).
template <typename... Args>
absl::Status InvalidArgument(const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(args...));
}

// Asks the kernel to back the 2 MiB-aligned part of a large buffer with transparent huge pages,
// where the system leaves that to madvise (the default). Large tensors often come fresh from mmap
// (past glibc's largest mmap threshold, 32 MB, every call), and each call first-touches its outputs
// and scratch: one page fault per 4 KB. Measured: GRU B=64 H=256 training step ~1,700 faults a
// step without, a few with, about 1 ms of 90; LayerNormLSTM's (reserve 105 MB, gate grads 52 MB)
// a third of its step in the kernel without (docs/PERFORMANCE.md). Only a hint: nothing changes
// where huge pages are off or unavailable, or where an allocator reuses the memory.
inline void AdviseHugePages(const tensorflow::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (t.TotalBytes() < 2 * kHuge) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.tensor_data().data());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + t.TotalBytes()) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

// n values of T for a kernel's scratch, owned by `holder`, from TensorFlow's allocator: it keeps
// large blocks between calls, where `new` / std::vector of tens of MB went back to the kernel at
// every call and were faulted in again (~13,000 page faults a LayerNormLSTM training step at
// B = 64, T = 100, H = 256; docs/PERFORMANCE.md); blocks too large for it to keep get 2 MB pages.
template <typename T>
absl::Status AllocateScratch(tensorflow::OpKernelContext* ctx, int64_t n,
                             tensorflow::Tensor* holder, T** data) {
  TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                        tensorflow::TensorShape({n}), holder));
  AdviseHugePages(*holder);
  *data = holder->flat<T>().data();
  return absl::OkStatus();
}

// Whether a backward kernel may skip the gradients of its initial states (outputs dh0_output and,
// where the cell has c, dc0_output) and leave them zero: the registered gradient said no one wants
// them (`skip_attr`: skip_state_backprop, from the tape's skip_input_indices), or no consumer reads
// them (a graph's executor marks such outputs not required: tf.gradients, a tf.function whose
// states are constants, and TensorFlow's own CudnnRNNBackprop ops, which take no attr).
inline bool StateGradsUnwanted(tensorflow::OpKernelContext* ctx, bool skip_attr, int dh0_output,
                               int dc0_output, bool has_c) {
  return skip_attr ||
         (!ctx->output_required(dh0_output) && !(has_c && ctx->output_required(dc0_output)));
}

// The same for the input's gradient (skip_input_backprop).
inline bool InputGradUnwanted(tensorflow::OpKernelContext* ctx, bool skip_attr, int dx_output) {
  return skip_attr || !ctx->output_required(dx_output);
}

// An output whose math a skip rule removed: zeros where a consumer reads it, else left unwritten
// (the executor reads no output it marked not required). A graph's training step asks no grad of
// its input: SimpleRNN(16) at B = 16384 spent ~10% of the step writing the [B, T, I] zeros.
template <typename T>
void ZeroOutputIfRead(tensorflow::OpKernelContext* ctx, int index, tensorflow::Tensor* t) {
  if (ctx->output_required(index)) std::fill_n(t->flat<T>().data(), t->NumElements(), T(0));
}

// The type the math runs in: float for the 16-bit types, the type itself otherwise.
template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<Eigen::half> {
  using type = float;
};
template <>
struct ComputeType<Eigen::bfloat16> {
  using type = float;
};

// ---------------------------------------------------------------------------------------------------
// GRU block cell (TfRnn>GRUBlockCell, TfRnn>GRUBlockCellGrad).

// Sizes of one cell step (also the functors' parameter, gru_block_cell_functor.h).
struct GRUBlockCellSizes {
  int64_t batch = 0;  // B
  int64_t input = 0;  // I
  int64_t cell = 0;   // H
};

namespace gru_checks {

inline absl::Status CheckRank(const tensorflow::Tensor& t, const char* name, int rank) {
  if (t.dims() != rank) {
    return InvalidArgument(name, " must be rank ", rank, ", but is rank ", t.dims(), " (shape ",
                           t.shape().DebugString(), ")");
  }
  return absl::OkStatus();
}

inline absl::Status CheckDim(const tensorflow::Tensor& t, const char* name, int dim,
                             int64_t expected, const char* expected_what) {
  if (t.dim_size(dim) != expected) {
    return InvalidArgument(name, ".dims(", dim, ") (=", t.dim_size(dim), ") must equal ",
                           expected_what, " (=", expected, ")");
  }
  return absl::OkStatus();
}

}  // namespace gru_checks

// Checks the six inputs both ops share (x, h_prev, w_ru, w_c, b_ru, b_c) and, for the gradient, r,
// u, c, d_h. Sets the sizes B, I, H.
inline absl::Status ValidateGRUBlockCellInputs(tensorflow::OpKernelContext* ctx,
                                               bool with_grad_inputs, GRUBlockCellSizes* sizes) {
  using gru_checks::CheckDim;
  using gru_checks::CheckRank;
  const tensorflow::Tensor& x = ctx->input(0);
  const tensorflow::Tensor& h_prev = ctx->input(1);
  const tensorflow::Tensor& w_ru = ctx->input(2);
  const tensorflow::Tensor& w_c = ctx->input(3);
  const tensorflow::Tensor& b_ru = ctx->input(4);
  const tensorflow::Tensor& b_c = ctx->input(5);
  TF_RETURN_IF_ERROR(CheckRank(x, "x", 2));
  TF_RETURN_IF_ERROR(CheckRank(h_prev, "h_prev", 2));
  TF_RETURN_IF_ERROR(CheckRank(w_ru, "w_ru", 2));
  TF_RETURN_IF_ERROR(CheckRank(w_c, "w_c", 2));
  TF_RETURN_IF_ERROR(CheckRank(b_ru, "b_ru", 1));
  TF_RETURN_IF_ERROR(CheckRank(b_c, "b_c", 1));

  const int64_t batch = x.dim_size(0);
  const int64_t input = x.dim_size(1);
  const int64_t cell = h_prev.dim_size(1);
  // I + H and 2 * H below must not overflow (possible only with empty tensors of huge dimensions).
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  if (cell > kMax / 2 || input > kMax - cell) {
    return InvalidArgument(
        "x.dims(1) (=", input, ") and h_prev.dims(1) (=", cell,
        ") are too large: x.dims(1) + h_prev.dims(1) and 2 * h_prev.dims(1) must fit "
        "in 64 bits");
  }
  TF_RETURN_IF_ERROR(CheckDim(h_prev, "h_prev", 0, batch, "x.dims(0)"));
  TF_RETURN_IF_ERROR(CheckDim(w_ru, "w_ru", 0, input + cell, "x.dims(1) + h_prev.dims(1)"));
  TF_RETURN_IF_ERROR(CheckDim(w_ru, "w_ru", 1, 2 * cell, "2 * h_prev.dims(1)"));
  TF_RETURN_IF_ERROR(CheckDim(w_c, "w_c", 0, input + cell, "x.dims(1) + h_prev.dims(1)"));
  TF_RETURN_IF_ERROR(CheckDim(w_c, "w_c", 1, cell, "h_prev.dims(1)"));
  TF_RETURN_IF_ERROR(CheckDim(b_ru, "b_ru", 0, 2 * cell, "2 * h_prev.dims(1)"));
  TF_RETURN_IF_ERROR(CheckDim(b_c, "b_c", 0, cell, "h_prev.dims(1)"));

  if (with_grad_inputs) {
    static constexpr const char* kNames[] = {"r", "u", "c", "d_h"};
    for (int i = 0; i < 4; ++i) {
      const tensorflow::Tensor& t = ctx->input(6 + i);
      TF_RETURN_IF_ERROR(CheckRank(t, kNames[i], 2));
      TF_RETURN_IF_ERROR(CheckDim(t, kNames[i], 0, batch, "x.dims(0)"));
      TF_RETURN_IF_ERROR(CheckDim(t, kNames[i], 1, cell, "h_prev.dims(1)"));
    }
  }
  *sizes = {batch, input, cell};
  return absl::OkStatus();
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_KERNEL_UTIL_H_
