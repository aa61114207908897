// What the CPU kernels of one Keras layer's call, TfRnn>KerasRNN and TfRnn>KerasRNNDropout
// (keras_rnn_kernels.cc, keras_rnn_dropout_kernels.cc), share around the driver: the forward's
// outputs, the driver's workspace and the arguments both set alike, and calls with no batch or no
// steps.
#ifndef TF_RNN_OPS_CC_KERNELS_KERAS_RNN_CALLS_H_
#define TF_RNN_OPS_CC_KERNELS_KERAS_RNN_CALLS_H_

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/rnn_cpu_driver.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

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

// The driver's workspace: `size` values (RnnWorkspaceSize), on huge pages where the system allows.
template <typename T>
absl::Status AllocateWorkspace(tensorflow::OpKernelContext* ctx, int64_t size,
                               tensorflow::Tensor* workspace) {
  TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                        tensorflow::TensorShape({size}), workspace));
  AdviseHugePages(*workspace);
  return absl::OkStatus();
}

// The sizes, the initial states and the lengths (none: all T) of the driver's arguments (forward or
// backward).
template <typename Args>
void SetSizesAndInitialStates(int64_t T_, int64_t B, bool lstm, const tensorflow::Tensor& input_h,
                              const tensorflow::Tensor& input_c,
                              const std::vector<int32_t>& lengths, Args* a) {
  using T = std::remove_const_t<std::remove_pointer_t<decltype(a->h0)>>;
  a->seq_len = T_;
  a->batch = B;
  a->h0 = input_h.flat<T>().data();
  a->c0 = lstm ? input_c.flat<T>().data() : nullptr;
  a->lengths = lengths.empty() ? nullptr : lengths.data();
}

// The forward's arguments that both ops set alike: the sizes, the initial states, the lengths
// (none: all T) and the final states and reserve (training only). y, the weights and the ops' own
// options are the caller's.
template <typename T>
RnnForwardArgs<T> ForwardArgs(int64_t T_, int64_t B, bool lstm, const tensorflow::Tensor& input_h,
                              const tensorflow::Tensor& input_c,
                              const std::vector<int32_t>& lengths, const ForwardOutputs& out,
                              bool training) {
  RnnForwardArgs<T> a;
  SetSizesAndInitialStates(T_, B, lstm, input_h, input_c, lengths, &a);
  a.hn = out.h->flat<T>().data();
  a.cn = lstm ? out.c->flat<T>().data() : nullptr;
  a.reserve = training ? out.reserve->flat<T>().data() : nullptr;
  return a;
}

// The backward's arguments that both ops set alike: the sizes, the initial states, the lengths,
// the final states' grads, the forward's reserve and the initial states' grads. y, dy, the
// weights and their grads are the caller's.
template <typename T>
RnnBackwardArgs<T> BackwardArgs(int64_t T_, int64_t B, bool lstm, const tensorflow::Tensor& input_h,
                                const tensorflow::Tensor& input_c,
                                const std::vector<int32_t>& lengths, const tensorflow::Tensor& dhn,
                                const tensorflow::Tensor& dcn, const tensorflow::Tensor& reserve,
                                tensorflow::Tensor* dh0, tensorflow::Tensor* dc0, bool skip_state) {
  RnnBackwardArgs<T> a;
  SetSizesAndInitialStates(T_, B, lstm, input_h, input_c, lengths, &a);
  a.dhn = dhn.flat<T>().data();
  a.dcn = lstm ? dcn.flat<T>().data() : nullptr;
  a.reserve = reserve.flat<T>().data();
  a.dh0 = dh0->flat<T>().data();
  a.dc0 = lstm ? dc0->flat<T>().data() : nullptr;
  a.skip_state_grads = skip_state;
  return a;
}

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
