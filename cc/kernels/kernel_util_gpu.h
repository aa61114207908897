// What the TensorFlow GPU kernels of this package share (cc/kernels/*_gpu.cc): errors of the CUDA
// library as statuses, the op's stream and the device's cuBLAS handle, scratch from TensorFlow's
// allocator (GpuCall: the three as every call sets them up), and half / bfloat16 tensors seen in
// float (the type the CUDA library computes in for them). Compiled into the GPU library
// (cc/cuda/cuda.mk) and, for tests without a GPU, over the host emulation of the CUDA library
// (TF_RNN_CUDA_HOST_EMULATION: `make gpu-glue-emu`): then the same kernels register on the CPU
// under the kernel label kGlueEmulationLabel, beside the CPU kernels of the same ops, the stream
// and the cuBLAS handle are the emulation's, and "device" memory is host memory. The GPU build
// defines EIGEN_USE_GPU (and GOOGLE_CUDA) for every glue file on its command line, before any
// Eigen header; the emulation defines neither.
#ifndef TF_RNN_OPS_CC_KERNELS_KERNEL_UTIL_GPU_H_
#define TF_RNN_OPS_CC_KERNELS_KERNEL_UTIL_GPU_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/cuda/convert_cuda.h"
#include "cc/cuda/cuda_compat.h"
#include "cc/cuda/fused_rnn_cuda.h"
#include "cc/kernels/kernel_util.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"
#include "tsl/platform/tensor_float_32_utils.h"
#include "unsupported/Eigen/CXX11/Tensor"

// The device of the glue's kernel registrations: `Name("...").TF_RNN_GLUE_DEVICE`.
#if defined(TF_RNN_CUDA_HOST_EMULATION)
#define TF_RNN_GLUE_DEVICE \
  Device(::tensorflow::DEVICE_CPU).Label(::tf_rnn_ops::gpu::kGlueEmulationLabel)
#else
#define TF_RNN_GLUE_DEVICE Device(::tensorflow::DEVICE_GPU)
#endif

namespace tf_rnn_ops {
namespace gpu {

// The kernel label of the glue built over the host emulation (tests/gpu/test_tf_glue_emulation.py).
inline constexpr char kGlueEmulationLabel[] = "tf_rnn_ops_gpu_glue_emulation";

using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

inline absl::Status FromCuda(const cuda::Status& s) {
  if (s.ok()) return absl::OkStatus();
  if (s.code() == cuda::StatusCode::kInvalidArgument)
    return absl::InvalidArgumentError(s.message());
  return absl::InternalError(absl::StrCat("tf_rnn_ops CUDA kernel failed: ", s.message()));
}

#if defined(TF_RNN_CUDA_HOST_EMULATION)
inline cudaStream_t StreamOf(OpKernelContext*) { return nullptr; }  // the emulation has none
#else
inline cudaStream_t StreamOf(OpKernelContext* ctx) { return ctx->eigen_gpu_device().stream(); }
#endif

// The cuBLAS handle of the op's device, bound to the op's stream, held under the device's lock
// until this object goes (the end of Compute, once everything is enqueued). One handle per device,
// as TensorFlow's own BLAS support has: a handle per host thread would give each of TensorFlow's
// many inter-op threads its own handle and cuBLAS workspace, allocated outside TensorFlow's
// allocator. TF32 is allowed for float32 products when TensorFlow allows it
// (tf.config.experimental.enable_tensor_float_32_execution).
class ScopedBlas {
 public:
  absl::Status Init(cudaStream_t stream) {
#if defined(TF_RNN_CUDA_HOST_EMULATION)
    (void)stream;  // the emulation's GEMMs take no handle
    return absl::OkStatus();
#else
    int device = 0;
    cudaError_t err = cudaStreamGetDevice(stream, &device);
    if (err == cudaSuccess) err = cudaSetDevice(device);  // a handle belongs to the current device
    if (err != cudaSuccess) {
      return absl::InternalError(absl::StrCat("tf_rnn_ops: no CUDA device for the op's stream: ",
                                              cudaGetErrorString(err)));
    }
    DeviceBlas& blas = OfDevice(device);
    lock_ = std::unique_lock<std::mutex>(blas.mu);
    if (blas.handle == nullptr) {
      const cublasStatus_t st = cublasCreate(&blas.handle);
      if (st != CUBLAS_STATUS_SUCCESS) {
        blas.handle = nullptr;
        return absl::InternalError(
            absl::StrCat("tf_rnn_ops: cublasCreate failed: ", cublasGetStatusString(st)));
      }
    }
    const cublasMath_t math =
        tsl::tensor_float_32_execution_enabled() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    if (cublasSetMathMode(blas.handle, math) != CUBLAS_STATUS_SUCCESS ||
        cublasSetPointerMode(blas.handle, CUBLAS_POINTER_MODE_HOST) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(blas.handle, stream) != CUBLAS_STATUS_SUCCESS) {
      return absl::InternalError("tf_rnn_ops: could not configure the cuBLAS handle");
    }
    handle_ = blas.handle;
    return absl::OkStatus();
#endif
  }
  cublasHandle_t get() const { return handle_; }

 private:
  struct DeviceBlas {
    std::mutex mu;
    cublasHandle_t handle = nullptr;  // lives as long as the process
  };
  static DeviceBlas& OfDevice(int device) {
    static std::mutex mu;
    static auto* devices = new std::unordered_map<int, std::unique_ptr<DeviceBlas>>();
    std::lock_guard<std::mutex> lock(mu);
    std::unique_ptr<DeviceBlas>& entry = (*devices)[device];
    if (entry == nullptr) entry = std::make_unique<DeviceBlas>();
    return *entry;
  }

  std::unique_lock<std::mutex> lock_;
  cublasHandle_t handle_ = nullptr;
};

// Device scratch of `bytes` bytes, 256-byte aligned, alive as long as `holder`.
inline absl::Status Scratch(OpKernelContext* ctx, size_t bytes, Tensor* holder, void** out) {
  *out = nullptr;
  if (bytes == 0) return absl::OkStatus();
  TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DT_INT8,
                                        TensorShape({static_cast<int64_t>(bytes) + 256}), holder));
  const uintptr_t p = reinterpret_cast<uintptr_t>(holder->flat<int8_t>().data());
  *out = reinterpret_cast<void*>((p + 255) / 256 * 256);
  return absl::OkStatus();
}

// What every GPU kernel's call to the CUDA library sets up: the op's stream, the device's cuBLAS
// handle bound to it (held until this object goes), and the library's workspace of
// `workspace_bytes` (Scratch).
struct GpuCall {
  cudaStream_t stream = nullptr;
  ScopedBlas blas;
  Tensor ws_holder;
  void* ws = nullptr;

  absl::Status Init(OpKernelContext* ctx, size_t workspace_bytes) {
    stream = StreamOf(ctx);
    TF_RETURN_IF_ERROR(blas.Init(stream));
    return Scratch(ctx, workspace_bytes, &ws_holder, &ws);
  }
};

template <typename T>
inline cuda::DType DTypeOf() {
  return sizeof(T) == sizeof(double) ? cuda::DType::kFloat64 : cuda::DType::kFloat32;
}

template <typename T>
absl::Status ZeroTensor(OpKernelContext* ctx, Tensor* t) {
  if (t->NumElements() == 0) return absl::OkStatus();
  const cudaError_t err =
      cudaMemsetAsync(t->flat<T>().data(), 0, t->NumElements() * sizeof(T), StreamOf(ctx));
  if (err != cudaSuccess) return absl::InternalError(cudaGetErrorString(err));
  return absl::OkStatus();
}

template <typename T>
const T* DataOrNull(const Tensor& t) {
  return t.NumElements() > 0 ? t.flat<T>().data() : nullptr;
}
template <typename T>
T* DataOrNull(Tensor* t) {
  return t->NumElements() > 0 ? t->flat<T>().data() : nullptr;
}

// The type the CUDA layer computes in for tensors of type T: float for half and bfloat16.
template <typename T>
using Acc = typename ComputeType<T>::type;
template <typename T>
constexpr bool kIsHalf16 = !std::is_same_v<Acc<T>, T>;  // half, bfloat16: computed in float
template <typename T>
cuda::Half16 Half16Of() {
  return std::is_same_v<T, Eigen::bfloat16> ? cuda::Half16::kBFloat16 : cuda::Half16::kFloat16;
}

// An input in the compute type: the tensor's own data, or a float copy made on the GPU (kept in
// holder).
template <typename T>
absl::Status InputAs(OpKernelContext* ctx, const Tensor& t, Tensor* holder, const Acc<T>** out) {
  if constexpr (!kIsHalf16<T>) {
    *out = DataOrNull<T>(t);
    return absl::OkStatus();
  } else {
    *out = nullptr;
    if (t.NumElements() == 0) return absl::OkStatus();
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DT_FLOAT, t.shape(), holder));
    float* dst = holder->flat<float>().data();
    TF_RETURN_IF_ERROR(
        FromCuda(cuda::Half16ToFloat(StreamOf(ctx), Half16Of<T>(), t.NumElements(),
                                     reinterpret_cast<const uint16_t*>(t.flat<T>().data()), dst)));
    *out = dst;
    return absl::OkStatus();
  }
}

// An output in the compute type: the tensor's own data, or float scratch (in holder) that
// OutputDone converts into the tensor.
template <typename T>
absl::Status OutputAs(OpKernelContext* ctx, Tensor* t, Tensor* holder, Acc<T>** out) {
  if constexpr (!kIsHalf16<T>) {
    *out = DataOrNull<T>(t);
    return absl::OkStatus();
  } else {
    *out = nullptr;
    if (t->NumElements() == 0) return absl::OkStatus();
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DT_FLOAT, t->shape(), holder));
    *out = holder->flat<float>().data();
    return absl::OkStatus();
  }
}

template <typename T>
absl::Status OutputDone(OpKernelContext* ctx, Tensor* t, const Tensor& holder) {
  if constexpr (kIsHalf16<T>) {
    if (t->NumElements() == 0) return absl::OkStatus();
    return FromCuda(cuda::FloatToHalf16(StreamOf(ctx), Half16Of<T>(), t->NumElements(),
                                        holder.flat<float>().data(),
                                        reinterpret_cast<uint16_t*>(t->flat<T>().data())));
  }
  return absl::OkStatus();
}

}  // namespace gpu
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_KERNEL_UTIL_GPU_H_
