// CPU kernel registrations of the TfRnn> fused RNN ops (the classes live in fused_rnn_kernels.h and
// fused_rnn_params_kernels.h; TfRnn>KerasRNN's in keras_rnn_kernels.cc).
#include "cc/kernels/fused_rnn_kernels.h"

#include "cc/kernels/fused_rnn_params_kernels.h"

namespace tf_rnn_ops {

#define TF_RNN_REGISTER_CPU(T)                                                              \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("TfRnn>CudnnRNN").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),         \
      FusedRnnForwardOp<T>);                                                                \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("TfRnn>CudnnRNNBackprop").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      FusedRnnBackwardOp<T>);                                                               \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNNParamsSize")                                  \
                              .Device(tensorflow::DEVICE_CPU)                               \
                              .TypeConstraint<T>("T")                                       \
                              .TypeConstraint<int32_t>("S")                                 \
                              .HostMemory("num_layers")                                     \
                              .HostMemory("num_units")                                      \
                              .HostMemory("input_size")                                     \
                              .HostMemory("params_size"),                                   \
                          FusedRnnParamsSizeOp<T, int32_t>);                                \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNNParamsSize")                                  \
                              .Device(tensorflow::DEVICE_CPU)                               \
                              .TypeConstraint<T>("T")                                       \
                              .TypeConstraint<int64_t>("S")                                 \
                              .HostMemory("num_layers")                                     \
                              .HostMemory("num_units")                                      \
                              .HostMemory("input_size")                                     \
                              .HostMemory("params_size"),                                   \
                          FusedRnnParamsSizeOp<T, int64_t>);                                \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNNParamsToCanonical")                           \
                              .Device(tensorflow::DEVICE_CPU)                               \
                              .TypeConstraint<T>("T"),                                      \
                          FusedRnnParamsToCanonicalOp<T>);                                  \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNNCanonicalToParams")                           \
                              .Device(tensorflow::DEVICE_CPU)                               \
                              .TypeConstraint<T>("T"),                                      \
                          FusedRnnCanonicalToParamsOp<T>);

TF_RNN_REGISTER_CPU(float)
TF_RNN_REGISTER_CPU(double)
TF_RNN_REGISTER_CPU(Eigen::half)
TF_RNN_REGISTER_CPU(Eigen::bfloat16)
#undef TF_RNN_REGISTER_CPU

}  // namespace tf_rnn_ops
