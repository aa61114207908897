// DEVICE_GPU kernels of TfRnn>KerasRNNDropout and TfRnn>KerasRNNDropoutBackprop over the
// framework-free CUDA library (cc/cuda/keras_rnn_dropout_cuda.h): the recurrence of one Keras layer
// with recurrent dropout masks and zoneout, Keras' layouts and gate orders. The input checks are
// the CPU kernels' (cc/kernels/keras_rnn_dropout_checks.h) and the outputs have the same shapes;
// reserve_space holds the CUDA layout's bytes (a GPU forward's reserve feeds a GPU backprop). float
// and double (the ops' types); sequence_lengths in host memory, zoneout_mask in device memory (a
// scalar k is read on the GPU). Built into tf_rnn_ops/_tf_rnn_ops_gpu.so only (cc/cuda/cuda.mk).
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "cc/cells/rnn_cells.h"
#include "cc/cuda/cuda_compat.h"
#include "cc/cuda/keras_rnn_dropout_cuda.h"
#include "cc/kernels/fused_rnn_attrs.h"
#include "cc/kernels/fused_rnn_rules.h"
#include "cc/kernels/keras_rnn_dropout_checks.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/kernel_util_gpu.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

namespace tf_rnn_ops {
namespace gpu {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;

// The ops' inputs (kProjected, ...) and their checks: keras_rnn_dropout_checks.h.
using namespace keras_rnn_dropout;  // NOLINT(build/namespaces)

// The checks of inputs 0-7 (keras_rnn_dropout_checks.h, the CPU kernel's), and the library's
// configuration of the call.
struct DropoutCall {
  RnnMode mode = RnnMode::kLstm;
  bool time_major = false;
  bool gate_major = false;
  int64_t T = 0, B = 0, H = 0, G = 0;
  cuda::KerasDropoutConfig config;
  CheckedCall checked;               // what Check found (CheckBackpropInputs reads it)
  const int32_t* lengths = nullptr;  // host memory

  absl::Status Parse(OpKernelConstruction* ctx) {
    std::string name;
    TF_RETURN_IF_ERROR(ctx->GetAttr("rnn_mode", &name));
    TF_RETURN_IF_ERROR(RuleStatus(fused_rnn::ParseRnnMode(name, &mode)));
    TF_RETURN_IF_ERROR(ctx->GetAttr("time_major", &time_major));
    return ctx->GetAttr("gate_major", &gate_major);
  }

  absl::Status Check(OpKernelContext* ctx, bool is_training) {
    CheckedCall& c = checked;
    TF_RETURN_IF_ERROR(CheckInputs(ctx, mode, time_major, gate_major, &c));
    T = c.T;
    B = c.B;
    H = c.H;
    G = c.G;
    lengths = c.lengths;
    config.mode = mode;
    config.units = H;
    config.max_time = T;
    config.batch = B;
    config.time_major = time_major;
    config.gate_major = gate_major;
    config.is_training = is_training;
    config.recurrent_bias = c.has_recurrent_bias;
    config.input_bias = c.has_input_bias;
    config.masks = c.has_masks;
    config.zoneout = c.zoneout;
    return absl::OkStatus();
  }
};

// reserve_space is a tensor of T holding the library's reserve bytes.
template <typename T>
int64_t ReserveElements(const cuda::KerasDropoutConfig& config) {
  const size_t bytes = cuda::KerasDropoutReserveBytes(config, DTypeOf<T>());
  return static_cast<int64_t>((bytes + sizeof(T) - 1) / sizeof(T));
}

template <typename T>
class KerasRnnDropoutGPUOp : public OpKernel {
 public:
  explicit KerasRnnDropoutGPUOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, call_.Parse(ctx));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("is_training", &is_training_));
  }

  void Compute(OpKernelContext* ctx) override {
    DropoutCall c = call_;
    OP_REQUIRES_OK(ctx, c.Check(ctx, is_training_));
    const bool lstm = CellHasCellState(c.mode);
    const Tensor& input_h = ctx->input(kInputH);
    const Tensor& input_c = ctx->input(kInputC);
    Tensor *output, *output_h, *output_c, *reserve;
    OP_REQUIRES_OK(
        ctx, ctx->allocate_output(
                 0, c.time_major ? TensorShape({c.T, c.B, c.H}) : TensorShape({c.B, c.T, c.H}),
                 &output));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, input_h.shape(), &output_h));
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output(2, lstm ? input_c.shape() : TensorShape({}), &output_c));
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output(3, TensorShape({ReserveElements<T>(c.config)}), &reserve));
    if (!lstm) OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, output_c));
    if (c.B == 0) return;
    GpuCall call;
    OP_REQUIRES_OK(ctx,
                   call.Init(ctx, cuda::KerasDropoutForwardWorkspaceBytes(c.config, DTypeOf<T>())));
    OP_REQUIRES_OK(
        ctx,
        FromCuda(cuda::KerasDropoutForward<T>(
            call.blas.get(), call.stream, c.config, c.lengths,
            DataOrNull<T>(ctx->input(kProjected)), DataOrNull<T>(input_h),
            lstm ? DataOrNull<T>(input_c) : nullptr, DataOrNull<T>(ctx->input(kRecurrentKernel)),
            DataOrNull<T>(ctx->input(kRecurrentBias)), DataOrNull<T>(ctx->input(kRecurrentMasks)),
            DataOrNull<T>(ctx->input(kZoneoutMask)), DataOrNull<T>(output), DataOrNull<T>(output_h),
            lstm ? DataOrNull<T>(output_c) : nullptr,
            is_training_ ? DataOrNull<T>(reserve) : nullptr, call.ws)));
  }

 private:
  DropoutCall call_;
  bool is_training_ = true;
};

template <typename T>
class KerasRnnDropoutBackpropGPUOp : public OpKernel {
 public:
  explicit KerasRnnDropoutBackpropGPUOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, call_.Parse(ctx));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_state_backprop", &skip_state_));
  }

  void Compute(OpKernelContext* ctx) override {
    DropoutCall c = call_;
    OP_REQUIRES_OK(ctx, c.Check(ctx, /*is_training=*/true));
    const bool lstm = CellHasCellState(c.mode);
    const Tensor& input_h = ctx->input(kInputH);
    const Tensor& input_c = ctx->input(kInputC);
    OP_REQUIRES_OK(ctx, CheckBackpropInputs(ctx, c.mode, c.time_major, c.checked,
                                            ReserveElements<T>(c.config)));
    const Tensor& reserve = ctx->input(kReserveSpace);
    Tensor *d_gx, *dh0, *dc0, *drk, *drb;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(kProjected).shape(), &d_gx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, input_h.shape(), &dh0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, input_c.shape(), &dc0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, ctx->input(kRecurrentKernel).shape(), &drk));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, ctx->input(kRecurrentBias).shape(), &drb));
    OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, dc0));  // overwritten for lstm; else input_c is unused
    // States' grads nobody reads (the attr, or no consumer in the graph): zeros, and the first
    // step's dh_prev products skipped (null dh0, dc0).
    const bool skip_state = StateGradsUnwanted(ctx, skip_state_, 1, 2, lstm);
    if (skip_state) OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, dh0));
    OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, drb));
    GpuCall call;
    OP_REQUIRES_OK(
        ctx, call.Init(ctx, cuda::KerasDropoutBackwardWorkspaceBytes(c.config, DTypeOf<T>())));
    OP_REQUIRES_OK(
        ctx,
        FromCuda(cuda::KerasDropoutBackward<T>(
            call.blas.get(), call.stream, c.config, c.lengths,
            DataOrNull<T>(ctx->input(kRecurrentKernel)), DataOrNull<T>(ctx->input(kRecurrentMasks)),
            DataOrNull<T>(ctx->input(kZoneoutMask)), DataOrNull<T>(ctx->input(kOutputBackprop)),
            DataOrNull<T>(ctx->input(kOutputHBackprop)),
            lstm ? DataOrNull<T>(ctx->input(kOutputCBackprop)) : nullptr, DataOrNull<T>(reserve),
            DataOrNull<T>(d_gx), skip_state ? nullptr : DataOrNull<T>(dh0),
            lstm && !skip_state ? DataOrNull<T>(dc0) : nullptr, DataOrNull<T>(drk),
            DataOrNull<T>(drb), call.ws)));
  }

 private:
  DropoutCall call_;
  bool skip_state_ = false;
};

#define TF_RNN_REGISTER_GPU(T)                                           \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>KerasRNNDropout")                  \
                              .TF_RNN_GLUE_DEVICE.TypeConstraint<T>("T") \
                              .HostMemory("sequence_lengths"),           \
                          KerasRnnDropoutGPUOp<T>);                      \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>KerasRNNDropoutBackprop")          \
                              .TF_RNN_GLUE_DEVICE.TypeConstraint<T>("T") \
                              .HostMemory("sequence_lengths"),           \
                          KerasRnnDropoutBackpropGPUOp<T>);
TF_RNN_REGISTER_GPU(float)
TF_RNN_REGISTER_GPU(double)
#undef TF_RNN_REGISTER_GPU

}  // namespace
}  // namespace gpu
}  // namespace tf_rnn_ops
