// DEVICE_GPU kernels of TfRnn>CudnnRNN and TfRnn>CudnnRNNBackprop (our own CUDA kernels, not cuDNN)
// and the host-memory TfRnn>CudnnRNNParamsSize. They check with the rules every kernel of the
// family uses (fused_rnn_attrs.h, fused_rnn_rules.h), allocate the same outputs as the CPU kernels,
// and call the framework-free CUDA library (cc/cuda/fused_rnn_cuda.h) on the op's stream with the
// device's cuBLAS handle. float and double natively; half and bfloat16 computed in float (inputs
// converted on the GPU, outputs converted back), as the CPU kernels do. Built into
// tf_rnn_ops/_tf_rnn_ops_gpu.so only (cc/cuda/cuda.mk), loaded after the main library and only
// where TensorFlow has a GPU.
#include <atomic>
#include <cstdint>

#include "cc/cuda/cuda_compat.h"
#include "cc/cuda/fused_rnn_cuda.h"
#include "cc/kernels/fused_rnn_attrs.h"
#include "cc/kernels/fused_rnn_params_kernels.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/kernel_util_gpu.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"

namespace tf_rnn_ops {
namespace gpu {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;

cuda::RnnConfig MakeConfig(const FusedRnnAttrs& attrs, const FusedRnnInputs& in, bool is_training) {
  cuda::RnnConfig config;
  config.shape = in.shape;
  config.max_time = in.seq_len;
  config.batch = in.batch;
  config.time_major = attrs.time_major;
  config.is_training = is_training;
  config.dropout = is_training ? attrs.dropout : 0.0;
  config.seed = static_cast<uint64_t>(attrs.seed);  // as the CPU kernels: the same dropout masks
  config.seed2 = static_cast<uint64_t>(attrs.seed2);
  return config;
}

// reserve_space is a tensor of T holding the compute type's reserve bytes.
template <typename T>
int64_t ReserveElementsFor(const cuda::RnnConfig& config) {
  const size_t bytes = cuda::RnnReserveBytes(config, DTypeOf<Acc<T>>());
  return static_cast<int64_t>((bytes + sizeof(T) - 1) / sizeof(T));
}

template <typename T>
class FusedRnnForwardGPUOp : public OpKernel {
 public:
  explicit FusedRnnForwardGPUOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
    OP_REQUIRES_OK(ctx, io_.Init(*this, /*backprop=*/false));
  }

  void Compute(OpKernelContext* ctx) override {
    FusedRnnInputs in;
    OP_REQUIRES_OK(ctx, in.Check(ctx, attrs_, io_));
    const bool lstm = CellHasCellState(in.shape.mode);
    cuda::RnnConfig config = MakeConfig(attrs_, in, attrs_.is_training);
    FusedRnnForwardOutputs out;
    OP_REQUIRES_OK(ctx, out.Allocate(ctx, attrs_, io_, in, ReserveElementsFor<T>(config)));
    // As the CPU kernel: each call that draws dropout masks takes the next ones of this kernel.
    if (cuda::RnnUsesDropout(config)) {
      config.dropout_call = dropout_calls_.fetch_add(1, std::memory_order_relaxed);
    }
    if (!lstm) OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, out.output_c));
    if (in.batch == 0) return;

    GpuCall call;
    OP_REQUIRES_OK(ctx, call.Init(ctx, cuda::RnnForwardWorkspaceBytes(config, DTypeOf<Acc<T>>())));
    Tensor hx, hh, hc, hp, hy, hhy, hcy;
    const Acc<T>*x, *h0, *c0 = nullptr, *w;
    Acc<T>*y, *hn, *cn = nullptr;
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(io_.input), &hx, &x));
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(io_.input_h), &hh, &h0));
    if (lstm) OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(io_.input_c), &hc, &c0));
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(io_.params), &hp, &w));
    OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, out.output, &hy, &y));
    OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, out.output_h, &hhy, &hn));
    if (lstm) OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, out.output_c, &hcy, &cn));
    void* reserve_data = config.is_training && out.reserve->NumElements() > 0
                             ? out.reserve->flat<T>().data()
                             : nullptr;
    OP_REQUIRES_OK(ctx, FromCuda(cuda::RnnForward<Acc<T>>(call.blas.get(), call.stream, config,
                                                          in.lengths_or_null(), x, h0, c0, w, y, hn,
                                                          cn, reserve_data, call.ws)));
    OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, out.output, hy));
    OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, out.output_h, hhy));
    if (lstm) OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, out.output_c, hcy));
  }

 private:
  FusedRnnAttrs attrs_;
  FusedRnnIO io_;
  std::atomic<uint64_t> dropout_calls_{0};  // calls so far that drew dropout masks
};

template <typename T>
class FusedRnnBackwardGPUOp : public OpKernel {
 public:
  explicit FusedRnnBackwardGPUOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
    OP_REQUIRES_OK(ctx, io_.Init(*this, /*backprop=*/true));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_input_backprop", &skip_input_backprop_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_state_backprop", &skip_state_backprop_));
  }

  void Compute(OpKernelContext* ctx) override {
    FusedRnnInputs in;
    OP_REQUIRES_OK(ctx, in.Check(ctx, attrs_, io_));
    const bool lstm = CellHasCellState(in.shape.mode);
    OP_REQUIRES_OK(ctx, in.CheckBackprop(ctx, attrs_, io_));
    const cuda::RnnConfig config = MakeConfig(attrs_, in, true);
    FusedRnnBackwardOutputs out;
    OP_REQUIRES_OK(ctx, out.Allocate(ctx, io_, ReserveElementsFor<T>(config)));
    if (!lstm) OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, out.dc0));  // other modes ignore input_c
    if (in.batch == 0) {
      OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, out.dparams));
      return;
    }

    GpuCall call;
    OP_REQUIRES_OK(ctx, call.Init(ctx, cuda::RnnBackwardWorkspaceBytes(config, DTypeOf<Acc<T>>())));
    Tensor hx, hp, hdy, hdhy, hdcy, hdx, hdh0, hdc0, hdp;
    const Acc<T>*x, *w, *dy, *dhy, *dcy = nullptr;
    Acc<T>*dx, *dh0, *dc0 = nullptr, *dparams;
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(io_.input), &hx, &x));
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(io_.params), &hp, &w));
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(io_.output_backprop), &hdy, &dy));
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(io_.output_h_backprop), &hdhy, &dhy));
    if (lstm) OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(io_.output_c_backprop), &hdcy, &dcy));
    // Gradients nobody reads (the attrs, or no consumer in the graph): zeros, and their products
    // skipped (a null dx: the first layer's d_gx W; a null dh0: the first step's dh_prev).
    const bool skip_input = InputGradUnwanted(ctx, skip_input_backprop_, 0);
    const bool skip_state = StateGradsUnwanted(ctx, skip_state_backprop_, 1, 2, lstm);
    if (skip_input) {
      OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, out.dx));
      dx = nullptr;
    } else {
      OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, out.dx, &hdx, &dx));
    }
    if (skip_state) {
      OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, out.dh0));
      if (lstm) OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, out.dc0));  // else zeroed above
      dh0 = nullptr;
    } else {
      OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, out.dh0, &hdh0, &dh0));
      if (lstm) OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, out.dc0, &hdc0, &dc0));
    }
    OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, out.dparams, &hdp, &dparams));
    const Tensor& reserve = ctx->input(io_.reserve_space);
    const void* reserve_data = reserve.NumElements() > 0 ? reserve.flat<T>().data() : nullptr;
    OP_REQUIRES_OK(ctx, FromCuda(cuda::RnnBackward<Acc<T>>(
                            call.blas.get(), call.stream, config, in.lengths_or_null(), x, w, dy,
                            dhy, dcy, reserve_data, dx, dh0, dc0, dparams, call.ws)));
    if (!skip_input) OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, out.dx, hdx));
    if (!skip_state) {
      OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, out.dh0, hdh0));
      if (lstm) OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, out.dc0, hdc0));
    }
    OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, out.dparams, hdp));
  }

 private:
  FusedRnnAttrs attrs_;
  FusedRnnIO io_;
  bool skip_input_backprop_ = false;
  bool skip_state_backprop_ = false;
};

#define TF_RNN_REGISTER_GPU(T)                                           \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNN")                         \
                              .TF_RNN_GLUE_DEVICE.TypeConstraint<T>("T") \
                              .HostMemory("sequence_lengths")            \
                              .HostMemory("host_reserved"),              \
                          FusedRnnForwardGPUOp<T>);                      \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNNBackprop")                 \
                              .TF_RNN_GLUE_DEVICE.TypeConstraint<T>("T") \
                              .HostMemory("sequence_lengths")            \
                              .HostMemory("host_reserved"),              \
                          FusedRnnBackwardGPUOp<T>);

TF_RNN_REGISTER_GPU(float)
TF_RNN_REGISTER_GPU(double)
TF_RNN_REGISTER_GPU(Eigen::half)
TF_RNN_REGISTER_GPU(Eigen::bfloat16)
#undef TF_RNN_REGISTER_GPU

// The params size is host arithmetic: the CPU kernel, with every input and output in host memory,
// so that graphs placed on the GPU need no copies for it.
#define TF_RNN_REGISTER_PARAMS_SIZE_GPU(T, S)                            \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNNParamsSize")               \
                              .TF_RNN_GLUE_DEVICE.TypeConstraint<T>("T") \
                              .TypeConstraint<S>("S")                    \
                              .HostMemory("num_layers")                  \
                              .HostMemory("num_units")                   \
                              .HostMemory("input_size")                  \
                              .HostMemory("params_size"),                \
                          FusedRnnParamsSizeOp<T, S>);
TF_RNN_REGISTER_PARAMS_SIZE_GPU(float, int32_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(float, int64_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(double, int32_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(double, int64_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(Eigen::half, int32_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(Eigen::half, int64_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(Eigen::bfloat16, int32_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(Eigen::bfloat16, int64_t)
#undef TF_RNN_REGISTER_PARAMS_SIZE_GPU

}  // namespace
}  // namespace gpu
}  // namespace tf_rnn_ops
