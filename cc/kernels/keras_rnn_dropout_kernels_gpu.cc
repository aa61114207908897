// DEVICE_GPU kernels of TfRnn>KerasRNNDropout and TfRnn>KerasRNNDropoutBackprop over the
// framework-free CUDA library (cc/cuda/keras_rnn_dropout_cuda.h): the recurrence of one Keras layer
// with recurrent dropout masks and zoneout, Keras' layouts and gate orders. The checks mirror the
// CPU kernels' (cc/kernels/keras_rnn_dropout_kernels.cc; the same rules, fused_rnn_rules.h, and
// messages) and the outputs have the same shapes; reserve_space holds the CUDA layout's bytes (a
// GPU forward's reserve feeds a GPU backprop). float and double (the ops' types);
// sequence_lengths in host memory, zoneout_mask in device memory (a scalar k is read on the GPU).
// Built into tf_rnn_ops/_tf_rnn_ops_gpu.so only (cc/cuda/cuda.mk).
#define EIGEN_USE_GPU

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "cc/cells/rnn_cells.h"
#include "cc/cuda/cuda_compat.h"
#include "cc/cuda/keras_rnn_dropout_cuda.h"
#include "cc/kernels/fused_rnn_attrs.h"
#include "cc/kernels/fused_rnn_rules.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/kernel_util_gpu.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

namespace tf_rnn_ops {
namespace gpu {
namespace {

using tensorflow::DEVICE_GPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;

// The ops' inputs (cc/ops/keras_rnn_dropout_ops.cc): the forward's, then the backward's others.
enum Input {
  kProjected = 0,
  kInputH,
  kInputC,
  kRecurrentKernel,
  kRecurrentBias,
  kSequenceLengths,
  kRecurrentMasks,
  kZoneoutMask,
  kOutput,
  kOutputH,
  kOutputC,
  kOutputBackprop,
  kOutputHBackprop,
  kOutputCBackprop,
  kReserveSpace,
};

// The checks of inputs 0-7 (the CPU kernel's), and the library's configuration of the call.
struct DropoutCall {
  RnnMode mode = RnnMode::kLstm;
  bool time_major = false;
  int64_t T = 0, B = 0, H = 0, G = 0;
  cuda::KerasDropoutConfig config;
  const int32_t* lengths = nullptr;  // host memory

  absl::Status Parse(OpKernelConstruction* ctx) {
    std::string name;
    TF_RETURN_IF_ERROR(ctx->GetAttr("rnn_mode", &name));
    TF_RETURN_IF_ERROR(RuleStatus(fused_rnn::ParseRnnMode(name, &mode)));
    return ctx->GetAttr("time_major", &time_major);
  }

  absl::Status Check(OpKernelContext* ctx, bool is_training) {
    const Tensor& gx = ctx->input(kProjected);
    const Tensor& input_h = ctx->input(kInputH);
    const Tensor& input_c = ctx->input(kInputC);
    const Tensor& rkernel = ctx->input(kRecurrentKernel);
    const Tensor& rbias = ctx->input(kRecurrentBias);
    const Tensor& seq_lengths = ctx->input(kSequenceLengths);
    const Tensor& masks = ctx->input(kRecurrentMasks);
    const Tensor& zoneout = ctx->input(kZoneoutMask);
    const bool tm = time_major, lstm = CellHasCellState(mode);
    G = NumGates(mode);
    const char* name = RnnModeName(mode);
    if (rkernel.dims() != 2 || rkernel.dim_size(0) < 1 ||
        rkernel.dim_size(1) != G * rkernel.dim_size(0)) {
      return InvalidArgument("recurrent_kernel must be [units, ", G, " * units] (", G,
                             " gates for rnn_mode ", name, "), got shape ",
                             rkernel.shape().DebugString());
    }
    H = rkernel.dim_size(0);
    const int64_t gh = G * H;
    if (gx.dims() != 3 || gx.dim_size(2) != gh) {
      return InvalidArgument("projected_input must be 3-D [", tm ? "T, B, " : "B, T, ", gh, "] (",
                             G, " gates times units), got shape ", gx.shape().DebugString());
    }
    T = gx.dim_size(tm ? 0 : 1);
    B = gx.dim_size(tm ? 1 : 0);
    if (input_h.shape() != TensorShape({B, H})) {
      return InvalidArgument("input_h must be [", B, ", ", H, "] (batch, units), got shape ",
                             input_h.shape().DebugString());
    }
    if (lstm && input_c.shape() != input_h.shape()) {
      return InvalidArgument("input_c must have input_h's shape ", input_h.shape().DebugString(),
                             " for lstm, got ", input_c.shape().DebugString());
    }
    const bool gru = mode == RnnMode::kGru;
    if (!(rbias.NumElements() == 0 || (gru && rbias.shape() == TensorShape({gh})))) {
      return InvalidArgument("recurrent_bias must have no elements",
                             gru ? absl::StrCat(" or shape [", gh, "] (Keras' recurrent row)") : "",
                             " for rnn_mode ", name, ", got shape ", rbias.shape().DebugString());
    }
    if (!(masks.NumElements() == 0 || masks.shape() == TensorShape({G, B, H}))) {
      return InvalidArgument("recurrent_masks must be [", G, ", ", B, ", ", H,
                             "] (gates, batch, units) or have no elements (no recurrent dropout), "
                             "got shape ",
                             masks.shape().DebugString());
    }
    if (!(zoneout.NumElements() == 0 || zoneout.dims() == 0 ||
          zoneout.shape() == TensorShape({T, B, H}))) {
      return InvalidArgument("zoneout_mask must be [", T, ", ", B, ", ", H,
                             "] (time-major), a scalar (inference) or have no elements (no "
                             "zoneout), got shape ",
                             zoneout.shape().DebugString());
    }
    if (seq_lengths.dims() != 1 || (seq_lengths.dim_size(0) != 0 && seq_lengths.dim_size(0) != B)) {
      return InvalidArgument("sequence_lengths must have shape [", B,
                             "] or [0] (every sequence full), got ",
                             seq_lengths.shape().DebugString());
    }
    fused_rnn::ModelSpec spec;
    spec.mode = mode;
    spec.num_units = H;
    spec.input_size = 1;  // the op has no W: the driver reads the projected input
    RnnModelShape s;
    if (const std::string error = fused_rnn::MakeModelShape(spec, &s); !error.empty()) {
      return InvalidArgument(error, " (num_units is recurrent_kernel's first dimension)");
    }
    if (!fused_rnn::BuffersFit(s, T, B)) {
      return InvalidArgument(fused_rnn::BuffersTooLarge(
          absl::StrCat("projected_input (", gx.shape().DebugString(), ")")));
    }
    lengths = nullptr;
    if (seq_lengths.dim_size(0) > 0) {
      lengths = seq_lengths.flat<int32_t>().data();
      for (int64_t b = 0; b < B; ++b) {
        TF_RETURN_IF_ERROR(RuleStatus(fused_rnn::CheckSequenceLength(b, lengths[b], T)));
      }
    }
    config.mode = mode;
    config.units = H;
    config.max_time = T;
    config.batch = B;
    config.time_major = tm;
    config.is_training = is_training;
    config.recurrent_bias = rbias.NumElements() > 0;
    config.masks = masks.NumElements() > 0;
    config.zoneout = zoneout.NumElements() == 0 ? cuda::ZoneoutKind::kNone
                     : zoneout.dims() == 0      ? cuda::ZoneoutKind::kScalar
                                                : cuda::ZoneoutKind::kMask;
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
    const cudaStream_t stream = StreamOf(ctx);
    ScopedBlas blas;
    OP_REQUIRES_OK(ctx, blas.Init(stream));
    Tensor ws_holder;
    void* ws;
    OP_REQUIRES_OK(ctx,
                   Scratch(ctx, cuda::KerasDropoutForwardWorkspaceBytes(c.config, DTypeOf<T>()),
                           &ws_holder, &ws));
    OP_REQUIRES_OK(
        ctx,
        FromCuda(cuda::KerasDropoutForward<T>(
            blas.get(), stream, c.config, c.lengths, DataOrNull<T>(ctx->input(kProjected)),
            DataOrNull<T>(input_h), lstm ? DataOrNull<T>(input_c) : nullptr,
            DataOrNull<T>(ctx->input(kRecurrentKernel)), DataOrNull<T>(ctx->input(kRecurrentBias)),
            DataOrNull<T>(ctx->input(kRecurrentMasks)), DataOrNull<T>(ctx->input(kZoneoutMask)),
            DataOrNull<T>(output), DataOrNull<T>(output_h),
            lstm ? DataOrNull<T>(output_c) : nullptr,
            is_training_ ? DataOrNull<T>(reserve) : nullptr, ws)));
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
  }

  void Compute(OpKernelContext* ctx) override {
    DropoutCall c = call_;
    OP_REQUIRES_OK(ctx, c.Check(ctx, /*is_training=*/true));
    const bool lstm = CellHasCellState(c.mode);
    const Tensor& input_h = ctx->input(kInputH);
    const Tensor& input_c = ctx->input(kInputC);
    const TensorShape y_shape =
        c.time_major ? TensorShape({c.T, c.B, c.H}) : TensorShape({c.B, c.T, c.H});
    const TensorShape c_shape = lstm ? input_h.shape() : TensorShape({});
    const struct {
      int index;
      const char* name;
      TensorShape shape;
    } expected[] = {{kOutput, "output", y_shape},
                    {kOutputH, "output_h", input_h.shape()},
                    {kOutputC, "output_c", c_shape},
                    {kOutputBackprop, "output_backprop", y_shape},
                    {kOutputHBackprop, "output_h_backprop", input_h.shape()},
                    {kOutputCBackprop, "output_c_backprop", c_shape}};
    for (const auto& e : expected) {
      OP_REQUIRES(ctx, ctx->input(e.index).shape() == e.shape,
                  InvalidArgument(e.name, " must have shape ", e.shape.DebugString(), ", got ",
                                  ctx->input(e.index).shape().DebugString()));
    }
    const Tensor& reserve = ctx->input(kReserveSpace);
    const int64_t reserve_n = ReserveElements<T>(c.config);
    OP_REQUIRES(ctx, reserve.dims() == 1 && reserve.NumElements() == reserve_n,
                InvalidArgument("reserve_space must be the forward's ([", reserve_n,
                                "], run with is_training=True), got shape ",
                                reserve.shape().DebugString()));
    Tensor *d_gx, *dh0, *dc0, *drk, *drb;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(kProjected).shape(), &d_gx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, input_h.shape(), &dh0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, input_c.shape(), &dc0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, ctx->input(kRecurrentKernel).shape(), &drk));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, ctx->input(kRecurrentBias).shape(), &drb));
    OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, dc0));  // overwritten for lstm; else input_c is unused
    OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, drb));
    const cudaStream_t stream = StreamOf(ctx);
    ScopedBlas blas;
    OP_REQUIRES_OK(ctx, blas.Init(stream));
    Tensor ws_holder;
    void* ws;
    OP_REQUIRES_OK(ctx,
                   Scratch(ctx, cuda::KerasDropoutBackwardWorkspaceBytes(c.config, DTypeOf<T>()),
                           &ws_holder, &ws));
    OP_REQUIRES_OK(
        ctx,
        FromCuda(cuda::KerasDropoutBackward<T>(
            blas.get(), stream, c.config, c.lengths, DataOrNull<T>(ctx->input(kRecurrentKernel)),
            DataOrNull<T>(ctx->input(kRecurrentMasks)), DataOrNull<T>(ctx->input(kZoneoutMask)),
            DataOrNull<T>(ctx->input(kOutputBackprop)), DataOrNull<T>(ctx->input(kOutputHBackprop)),
            lstm ? DataOrNull<T>(ctx->input(kOutputCBackprop)) : nullptr, DataOrNull<T>(reserve),
            DataOrNull<T>(d_gx), DataOrNull<T>(dh0), lstm ? DataOrNull<T>(dc0) : nullptr,
            DataOrNull<T>(drk), DataOrNull<T>(drb), ws)));
  }

 private:
  DropoutCall call_;
};

#define TF_RNN_REGISTER_GPU(T)                                  \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>KerasRNNDropout")         \
                              .Device(DEVICE_GPU)               \
                              .TypeConstraint<T>("T")           \
                              .HostMemory("sequence_lengths"),  \
                          KerasRnnDropoutGPUOp<T>);             \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>KerasRNNDropoutBackprop") \
                              .Device(DEVICE_GPU)               \
                              .TypeConstraint<T>("T")           \
                              .HostMemory("sequence_lengths"),  \
                          KerasRnnDropoutBackpropGPUOp<T>);
TF_RNN_REGISTER_GPU(float)
TF_RNN_REGISTER_GPU(double)
#undef TF_RNN_REGISTER_GPU

}  // namespace
}  // namespace gpu
}  // namespace tf_rnn_ops
