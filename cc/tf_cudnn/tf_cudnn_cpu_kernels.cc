// CPU kernels for TensorFlow's own CudnnRNN* ops (which TensorFlow ships for GPU only), so that a
// model trained and exported on a GPU machine serves and fine-tunes on CPU. They are the fused-RNN
// kernel classes of fused_rnn_kernels.h and fused_rnn_params_kernels.h, registered under
// TensorFlow's op names.
//
// Each op gets our kernel only if TensorFlow has no CPU kernel for it when this library is loaded:
// a future TensorFlow with its own CPU kernels keeps them, and nothing registers twice.
#include <memory>
#include <string>

#include "cc/kernels/fused_rnn_kernels.h"
#include "cc/kernels/fused_rnn_params_kernels.h"
#include "tensorflow/core/framework/kernel_def_builder.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tf_rnn_ops {
namespace {

using tensorflow::KernelDefBuilder;
using tensorflow::kernel_factory::OpKernelRegistrar;

bool HasCpuKernel(const char* op) {
  const tensorflow::KernelList kernels = tensorflow::GetRegisteredKernelsForOp(op);
  for (const auto& k : kernels.kernel()) {
    if (k.device_type() == tensorflow::DEVICE_CPU) return true;
  }
  return false;
}

template <typename Kernel>
OpKernel* Create(OpKernelConstruction* ctx) {
  return new Kernel(ctx);
}

// Registers Kernel<T> for `op` for each compute dtype T; `extra` adds constraints (host memory, S).
template <template <typename> class Kernel, typename Extra>
void RegisterForAllTypes(const char* op, Extra extra) {
  auto one = [&](auto type_tag) {
    using T = decltype(type_tag);
    KernelDefBuilder b(op);
    b.Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T");
    extra(b);
    // The registrar and its KernelDef live as long as the process, like REGISTER_KERNEL_BUILDER's.
    new OpKernelRegistrar(b.Build(), op, &Create<Kernel<T>>);
  };
  one(float());
  one(double());
  one(Eigen::half());
  one(Eigen::bfloat16());
}

template <typename T>
using ParamsSizeInt32 = FusedRnnParamsSizeOp<T, int32_t>;
template <typename T>
using ParamsSizeInt64 = FusedRnnParamsSizeOp<T, int64_t>;

const bool kRegistered = [] {
  auto none = [](KernelDefBuilder&) {};
  for (const char* op : {"CudnnRNN", "CudnnRNNV2", "CudnnRNNV3"}) {
    if (!HasCpuKernel(op)) RegisterForAllTypes<FusedRnnForwardOp>(op, none);
  }
  for (const char* op : {"CudnnRNNBackprop", "CudnnRNNBackpropV2", "CudnnRNNBackpropV3"}) {
    if (!HasCpuKernel(op)) RegisterForAllTypes<FusedRnnBackwardOp>(op, none);
  }
  if (!HasCpuKernel("CudnnRNNParamsSize")) {
    auto host = [](KernelDefBuilder& b) {
      b.HostMemory("num_layers").HostMemory("num_units").HostMemory("input_size");
    };
    RegisterForAllTypes<ParamsSizeInt32>("CudnnRNNParamsSize", [&](KernelDefBuilder& b) {
      host(b);
      b.TypeConstraint<int32_t>("S");
    });
    RegisterForAllTypes<ParamsSizeInt64>("CudnnRNNParamsSize", [&](KernelDefBuilder& b) {
      host(b);
      b.TypeConstraint<int64_t>("S");
    });
  }
  for (const char* op : {"CudnnRNNParamsToCanonical", "CudnnRNNParamsToCanonicalV2"}) {
    if (!HasCpuKernel(op)) RegisterForAllTypes<FusedRnnParamsToCanonicalOp>(op, none);
  }
  for (const char* op : {"CudnnRNNCanonicalToParams", "CudnnRNNCanonicalToParamsV2"}) {
    if (!HasCpuKernel(op)) RegisterForAllTypes<FusedRnnCanonicalToParamsOp>(op, none);
  }
  return true;
}();

}  // namespace
}  // namespace tf_rnn_ops
