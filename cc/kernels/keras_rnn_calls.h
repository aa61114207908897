// What the CPU kernels of one Keras layer's call, TfRnn>KerasRNN and TfRnn>KerasRNNDropout
// (keras_rnn_kernels.cc, keras_rnn_dropout_kernels.cc), share around the driver: the forward's
// outputs, and calls with no batch or no steps.
#ifndef TF_RNN_OPS_CC_KERNELS_KERAS_RNN_CALLS_H_
#define TF_RNN_OPS_CC_KERNELS_KERAS_RNN_CALLS_H_

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "absl/status/status.h"
#include "cc/kernels/kernel_util.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace tf_rnn_ops {
namespace keras_rnn {

// The forward's outputs, in the ops' order: y, h, c, reserve_space.
struct ForwardOutputs {
  tensorflow::Tensor *y = nullptr, *h = nullptr, *c = nullptr, *reserve = nullptr;

  // y [T, B, H] (time_major) or [B, T, H]; h input_h's shape; c input_c's for LSTM, else a scalar
  // 0; reserve [reserve_size] (0 at inference).
  template <typename T>
  absl::Status Allocate(tensorflow::OpKernelContext* ctx, bool time_major, int64_t T_, int64_t B,
                        int64_t H, bool lstm, const tensorflow::Tensor& input_h,
                        const tensorflow::Tensor& input_c, int64_t reserve_size) {
    using tensorflow::TensorShape;
    TF_RETURN_IF_ERROR(ctx->allocate_output(
        0, time_major ? TensorShape({T_, B, H}) : TensorShape({B, T_, H}), &y));
    TF_RETURN_IF_ERROR(ctx->allocate_output(1, input_h.shape(), &h));
    TF_RETURN_IF_ERROR(ctx->allocate_output(2, lstm ? input_c.shape() : TensorShape({}), &c));
    TF_RETURN_IF_ERROR(ctx->allocate_output(3, TensorShape({reserve_size}), &reserve));
    AdviseHugePages(*y);
    AdviseHugePages(*reserve);
    if (!lstm) c->scalar<T>()() = T(0);
    return absl::OkStatus();
  }

  // A call with no batch or no steps runs nothing: the states pass through. Whether it is one.
  template <typename T>
  bool PassEmptyCall(int64_t T_, int64_t B, bool lstm, const tensorflow::Tensor& input_h,
                     const tensorflow::Tensor& input_c) const {
    if (B > 0 && T_ > 0) return false;
    std::copy_n(input_h.flat<T>().data(), input_h.NumElements(), h->flat<T>().data());
    if (lstm) std::copy_n(input_c.flat<T>().data(), input_c.NumElements(), c->flat<T>().data());
    return true;
  }
};

// The backward of a call with no batch or no steps: the final states' grads pass back to the
// initial states' (zeros where skip_state), every output in `zeroed` is zero.
// Whether the call is one.
template <typename T>
bool PassEmptyCallBackward(int64_t T_, int64_t B, bool lstm, bool skip_state,
                           const tensorflow::Tensor& dhn, const tensorflow::Tensor& dcn,
                           tensorflow::Tensor* dh0, tensorflow::Tensor* dc0,
                           std::initializer_list<tensorflow::Tensor*> zeroed) {
  if (B > 0 && T_ > 0) return false;
  for (tensorflow::Tensor* t : zeroed) std::fill_n(t->flat<T>().data(), t->NumElements(), T(0));
  if (skip_state) {
    std::fill_n(dh0->flat<T>().data(), dh0->NumElements(), T(0));
    if (lstm) std::fill_n(dc0->flat<T>().data(), dc0->NumElements(), T(0));
  } else {
    std::copy_n(dhn.flat<T>().data(), dh0->NumElements(), dh0->flat<T>().data());
    if (lstm) std::copy_n(dcn.flat<T>().data(), dc0->NumElements(), dc0->flat<T>().data());
  }
  return true;
}

}  // namespace keras_rnn
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_KERAS_RNN_CALLS_H_
