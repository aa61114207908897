// How the CPU OpKernels of the fused RNN family hand tensors to the driver (rnn_cpu_driver.h): a
// tensor's data seen in the compute type and the driver's time-major layout (ComputeView), an
// output written there and converted back (ComputeOutput). (The huge-page hint for large buffers,
// AdviseHugePages: kernel_util.h.)
#ifndef TF_RNN_OPS_CC_KERNELS_FUSED_RNN_CPU_VIEWS_H_
#define TF_RNN_OPS_CC_KERNELS_FUSED_RNN_CPU_VIEWS_H_

#define EIGEN_USE_THREADS

#include <cstdint>
#include <type_traits>

#include "cc/kernels/kernel_util.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_rnn_ops {

using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using CPUDevice = Eigen::ThreadPoolDevice;

// 3-D [d0, d1, d2] tensor data in T to [d1, d0, d2] (swap) or [d0, d1, d2] (copy) in Acc.
template <typename T, typename Acc>
void ConvertLayout(const CPUDevice& d, const T* src, int64_t d0, int64_t d1, int64_t d2, bool swap,
                   Acc* dst) {
  if (d0 * d1 * d2 == 0) return;
  Eigen::TensorMap<Eigen::Tensor<const T, 3, Eigen::RowMajor, Eigen::DenseIndex>> in(src, d0, d1,
                                                                                     d2);
  if (swap) {
    Eigen::TensorMap<Eigen::Tensor<Acc, 3, Eigen::RowMajor, Eigen::DenseIndex>> out(dst, d1, d0,
                                                                                    d2);
    const Eigen::array<Eigen::DenseIndex, 3> perm = {1, 0, 2};
    out.device(d) = in.template cast<Acc>().shuffle(
        perm);  // cast first: Eigen cannot shuffle 16-bit blocks into float
  } else {
    Eigen::TensorMap<Eigen::Tensor<Acc, 3, Eigen::RowMajor, Eigen::DenseIndex>> out(dst, d0, d1,
                                                                                    d2);
    out.device(d) = in.template cast<Acc>();
  }
}

// A tensor's data seen in the compute type and driver layout: the tensor's own buffer when that
// already fits, else a converted temporary.
template <typename T>
class ComputeView {
 public:
  using Acc = typename ComputeType<T>::type;
  // `swap`: the tensor is [d1, d0, d2] in the driver's terms (batch-major) and must be transposed.
  absl::Status Init(OpKernelContext* ctx, const Tensor& t, bool swap) {
    if (std::is_same<T, Acc>::value && !swap) {
      data_ = reinterpret_cast<const Acc*>(t.flat<T>().data());
      return absl::OkStatus();
    }
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<Acc>::value,
                                          TensorShape({t.NumElements()}), &temp_));
    Acc* out = temp_.flat<Acc>().data();
    const CPUDevice& d = ctx->eigen_device<CPUDevice>();
    if (t.dims() == 3) {
      ConvertLayout<T, Acc>(d, t.flat<T>().data(), t.dim_size(0), t.dim_size(1), t.dim_size(2),
                            swap, out);
    } else {
      ConvertLayout<T, Acc>(d, t.flat<T>().data(), 1, 1, t.NumElements(), false, out);
    }
    data_ = out;
    return absl::OkStatus();
  }
  const Acc* data() const { return data_; }

 private:
  Tensor temp_;
  const Acc* data_ = nullptr;
};

// An output written by the driver in the compute type and driver layout; Finish() converts it into
// the output tensor when they differ.
template <typename T>
class ComputeOutput {
 public:
  using Acc = typename ComputeType<T>::type;
  // The driver's layout is [d0, d1, d2]; the tensor's is [d1, d0, d2] when `swap`.
  absl::Status Init(OpKernelContext* ctx, Tensor* out, int64_t d0, int64_t d1, int64_t d2,
                    bool swap) {
    out_ = out;
    d0_ = d0, d1_ = d1, d2_ = d2, swap_ = swap;
    if (std::is_same<T, Acc>::value && !swap) {
      data_ = reinterpret_cast<Acc*>(out->flat<T>().data());
      return absl::OkStatus();
    }
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<Acc>::value,
                                          TensorShape({d0 * d1 * d2}), &temp_));
    data_ = temp_.flat<Acc>().data();
    return absl::OkStatus();
  }
  Acc* data() const { return data_; }
  void Finish(OpKernelContext* ctx) {
    if (data_ == reinterpret_cast<Acc*>(out_->flat<T>().data())) return;
    ConvertLayout<Acc, T>(ctx->eigen_device<CPUDevice>(), data_, d0_, d1_, d2_, swap_,
                          out_->flat<T>().data());
  }

 private:
  Tensor* out_ = nullptr;
  Tensor temp_;
  Acc* data_ = nullptr;
  int64_t d0_ = 0, d1_ = 0, d2_ = 0;
  bool swap_ = false;
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_FUSED_RNN_CPU_VIEWS_H_
