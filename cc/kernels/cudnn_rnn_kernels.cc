// CPU kernel registrations of the TfRnn> fused RNN ops (the classes live in cudnn_rnn_kernels.h).
#include "cc/kernels/cudnn_rnn_kernels.h"

namespace tf_rnn_ops {

#define TF_RNN_REGISTER_CPU(T)                                                                   \
  REGISTER_KERNEL_BUILDER(                                                                       \
      Name("TfRnn>CudnnRNN").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),             \
      CudnnRnnForwardOp<T>);                                                                     \
  REGISTER_KERNEL_BUILDER(                                                                       \
      Name("TfRnn>CudnnRNNBackprop").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),     \
      CudnnRnnBackwardOp<T>);                                                                    \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNNParamsSize")                                       \
                              .Device(tensorflow::DEVICE_CPU)                                    \
                              .TypeConstraint<T>("T")                                            \
                              .TypeConstraint<int32_t>("S")                                      \
                              .HostMemory("num_layers")                                          \
                              .HostMemory("num_units")                                           \
                              .HostMemory("input_size")                                          \
                              .HostMemory("params_size"),                                        \
                          CudnnRnnParamsSizeOp<T, int32_t>);                                     \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNNParamsSize")                                       \
                              .Device(tensorflow::DEVICE_CPU)                                    \
                              .TypeConstraint<T>("T")                                            \
                              .TypeConstraint<int64_t>("S")                                      \
                              .HostMemory("num_layers")                                          \
                              .HostMemory("num_units")                                           \
                              .HostMemory("input_size")                                          \
                              .HostMemory("params_size"),                                        \
                          CudnnRnnParamsSizeOp<T, int64_t>);                                     \
  REGISTER_KERNEL_BUILDER(                                                                       \
      Name("TfRnn>CudnnRNNParamsToCanonical").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      CudnnRnnParamsToCanonicalOp<T>);                                                           \
  REGISTER_KERNEL_BUILDER(                                                                       \
      Name("TfRnn>CudnnRNNCanonicalToParams").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      CudnnRnnCanonicalToParamsOp<T>);

// TfRnn>KerasRNN: float and double (the Keras layers compute 16-bit types in float32).
REGISTER_KERNEL_BUILDER(
    Name("TfRnn>KerasRNN").Device(tensorflow::DEVICE_CPU).TypeConstraint<float>("T"),
    KerasRnnForwardOp<float>);
REGISTER_KERNEL_BUILDER(
    Name("TfRnn>KerasRNN").Device(tensorflow::DEVICE_CPU).TypeConstraint<double>("T"),
    KerasRnnForwardOp<double>);

TF_RNN_REGISTER_CPU(float)
TF_RNN_REGISTER_CPU(double)
TF_RNN_REGISTER_CPU(Eigen::half)
TF_RNN_REGISTER_CPU(Eigen::bfloat16)
#undef TF_RNN_REGISTER_CPU

}  // namespace tf_rnn_ops
