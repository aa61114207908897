// DEVICE_GPU kernels of TfRnn>LayerNormRnn and TfRnn>LayerNormRnnGrad
// (cc/ops/layer_norm_rnn_ops.cc): the CPU kernels' checks (layer_norm_rnn_checks.h), outputs
// allocated as the CPU kernels do (the reserve has the same shape on either device), and the
// framework-free CUDA library (cc/cuda/layer_norm_rnn_cuda.h) on the op's stream. float and double.
// epsilon is read in host memory (the checks read its value); a scalar zoneout_mask (the inference
// keep value) stays on the device, where the kernels read it. Built into
// tf_rnn_ops/_tf_rnn_ops_gpu.so only (cc/cuda/cuda.mk), which a CPU-only installation never loads.
#include <cstdint>
#include <string>

#include "cc/cuda/cuda_compat.h"
#include "cc/cuda/layer_norm_rnn_cuda.h"
#include "cc/kernels/kernel_util_gpu.h"
#include "cc/kernels/layer_norm_rnn_checks.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"

namespace tf_rnn_ops {
namespace gpu {
namespace {

using namespace layer_norm_rnn;  // NOLINT(build/namespaces): the inputs' indices and checks
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;

// The library's description of a checked call.
cuda::LayerNormRnnConfig ConfigOf(OpKernelContext* ctx, const Sizes& s, bool is_training) {
  cuda::LayerNormRnnConfig c;
  c.cell = s.lstm ? cuda::LayerNormCellKind::kLstm : cuda::LayerNormCellKind::kGru;
  c.max_time = s.T;
  c.batch = s.B;
  c.input_size = s.I;
  c.num_units = s.H;
  c.time_major = s.time_major;
  c.is_training = is_training;
  c.has_mask = s.has_mask;
  c.has_recurrent_mask = s.recurrent_mask != nullptr;
  c.zoneout = s.has_zoneout_mask ? cuda::ZoneoutKind::kMask
              : s.zoneout_scalar ? cuda::ZoneoutKind::kScalar
                                 : cuda::ZoneoutKind::kNone;
  const Tensor& eps = ctx->input(kEpsilon);
  c.epsilon = eps.dtype() == tensorflow::DT_FLOAT ? static_cast<double>(eps.scalar<float>()())
                                                  : eps.scalar<double>()();
  return c;
}

// The parameters the cell has (null for the others: the checks did not look at them).
template <typename T>
cuda::LayerNormRnnParams<T> ParamsOf(OpKernelContext* ctx, const Sizes& s) {
  auto p = [&](int i, bool used) {
    return used ? ctx->input(i).flat<T>().data() : static_cast<const T*>(nullptr);
  };
  return {p(kKernel, true),           p(kRecurrentKernel, true), p(kBias, true),
          p(kRecurrentBias, !s.lstm), p(kGammaX, true),          p(kBetaX, s.lstm),
          p(kGammaH, true),           p(kBetaH, s.lstm),         p(kGammaC, s.lstm),
          p(kBetaC, s.lstm)};
}

template <typename T>
const T* MaskOf(OpKernelContext* ctx, const Sizes& s) {
  return s.has_mask ? ctx->input(kMask).flat<T>().data() : nullptr;
}
template <typename T>
const T* ZoneoutOf(OpKernelContext* ctx, const Sizes& s) {
  return s.has_zoneout_mask || s.zoneout_scalar ? ctx->input(kZoneoutMask).flat<T>().data()
                                                : nullptr;
}

// The recurrent dropout mask [B, H] (the list input recurrent_mask, N = 1), or null.
template <typename T>
const T* RecurrentMaskOf(const Sizes& s) {
  return s.recurrent_mask != nullptr ? s.recurrent_mask->flat<T>().data() : nullptr;
}

template <typename T>
class LayerNormRnnGpuOp : public LayerNormRnnBase {
 public:
  explicit LayerNormRnnGpuOp(OpKernelConstruction* ctx) : LayerNormRnnBase(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("is_training", &is_training_));
  }

  void Compute(OpKernelContext* ctx) override {
    Sizes s;
    OP_REQUIRES_OK(ctx, ValidateInputs(ctx, lstm_, time_major_, &s));
    const cuda::LayerNormRnnConfig config = ConfigOf(ctx, s, is_training_);
    OP_REQUIRES_OK(ctx, FromCuda(cuda::ValidateLayerNormRnnConfig(config)));
    Tensor *y, *hn, *cn, *reserve;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, IoShape(s, s.H), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({s.B, s.H}), &hn));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({s.B, lstm_ ? s.H : 0}), &cn));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            3, TensorShape({cuda::LayerNormRnnReserveElements(config)}), &reserve));
    GpuCall call;
    OP_REQUIRES_OK(ctx, call.Init(ctx, cuda::LayerNormRnnForwardWorkspaceBytes(config, sizeof(T))));
    OP_REQUIRES_OK(ctx, FromCuda(cuda::LayerNormRnnForward<T>(
                            call.blas.get(), call.stream, config, ctx->input(kX).flat<T>().data(),
                            ctx->input(kH0).flat<T>().data(),
                            lstm_ ? ctx->input(kC0).flat<T>().data() : nullptr, ParamsOf<T>(ctx, s),
                            MaskOf<T>(ctx, s), ZoneoutOf<T>(ctx, s), RecurrentMaskOf<T>(s),
                            y->flat<T>().data(), hn->flat<T>().data(), cn->flat<T>().data(),
                            reserve->flat<T>().data(), call.ws)));
  }

 private:
  bool is_training_ = true;
};

template <typename T>
class LayerNormRnnGradGpuOp : public LayerNormRnnBase {
 public:
  using LayerNormRnnBase::LayerNormRnnBase;

  void Compute(OpKernelContext* ctx) override {
    Sizes s;
    OP_REQUIRES_OK(ctx, ValidateInputs(ctx, lstm_, time_major_, &s));
    const cuda::LayerNormRnnConfig config = ConfigOf(ctx, s, /*is_training=*/true);
    OP_REQUIRES_OK(ctx, FromCuda(cuda::ValidateLayerNormRnnConfig(config)));
    OP_REQUIRES_OK(ctx, ValidateGradInputs(ctx, s, cuda::LayerNormRnnReserveElements(config)));
    // One grad output per forward input but the two masks and epsilon, each the input's shape;
    // those of inputs the cell does not use are zeros.
    T* out[kMask];
    Tensor* out_t[kMask];
    for (int i = 0; i < kMask; ++i) {
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, ctx->input(i).shape(), &out_t[i]));
      out[i] = out_t[i]->flat<T>().data();
    }
    const cuda::LayerNormRnnParams<T> params = ParamsOf<T>(ctx, s);
    const T* const used[kMask] = {nullptr,
                                  nullptr,
                                  nullptr,
                                  params.kernel,
                                  params.recurrent_kernel,
                                  params.bias,
                                  params.recurrent_bias,
                                  params.gamma_x,
                                  params.beta_x,
                                  params.gamma_h,
                                  params.beta_h,
                                  params.gamma_c,
                                  params.beta_c};
    for (int i = kKernel; i < kMask; ++i) {
      if (used[i] == nullptr) OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, out_t[i]));
    }
    if (!lstm_) OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, out_t[kC0]));
    auto grad = [&](int i) { return used[i] != nullptr ? out[i] : nullptr; };
    const cuda::LayerNormRnnGrads<T> grads{
        grad(kKernel), grad(kRecurrentKernel), grad(kBias),  grad(kRecurrentBias), grad(kGammaX),
        grad(kBetaX),  grad(kGammaH),          grad(kBetaH), grad(kGammaC),        grad(kBetaC)};
    GpuCall call;
    OP_REQUIRES_OK(ctx,
                   call.Init(ctx, cuda::LayerNormRnnBackwardWorkspaceBytes(config, sizeof(T))));
    OP_REQUIRES_OK(ctx, FromCuda(cuda::LayerNormRnnBackward<T>(
                            call.blas.get(), call.stream, config, ctx->input(kX).flat<T>().data(),
                            params, MaskOf<T>(ctx, s), ZoneoutOf<T>(ctx, s), RecurrentMaskOf<T>(s),
                            ctx->input(kNumForwardInputs).flat<T>().data(),
                            ctx->input(kNumForwardInputs + 1).flat<T>().data(),
                            ctx->input(kNumForwardInputs + 2).flat<T>().data(),
                            lstm_ ? ctx->input(kNumForwardInputs + 3).flat<T>().data() : nullptr,
                            out[kX], out[kH0], lstm_ ? out[kC0] : nullptr, grads, call.ws)));
  }
};

#define TF_RNN_REGISTER_GPU(T)                                                                    \
  REGISTER_KERNEL_BUILDER(                                                                        \
      Name("TfRnn>LayerNormRnn").TF_RNN_GLUE_DEVICE.TypeConstraint<T>("T").HostMemory("epsilon"), \
      LayerNormRnnGpuOp<T>);                                                                      \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>LayerNormRnnGrad")                                          \
                              .TF_RNN_GLUE_DEVICE.TypeConstraint<T>("T")                          \
                              .HostMemory("epsilon"),                                             \
                          LayerNormRnnGradGpuOp<T>);

TF_RNN_REGISTER_GPU(float)
TF_RNN_REGISTER_GPU(double)
#undef TF_RNN_REGISTER_GPU

}  // namespace
}  // namespace gpu
}  // namespace tf_rnn_ops
