// The CUDA layer's one view of the CUDA runtime and cuBLAS, and the Status its functions return.
//
// Normally this is <cuda_runtime.h> and <cublas_v2.h>. Compiled with TF_RNN_CUDA_HOST_EMULATION (by
// a host compiler, no nvcc, no GPU) it is a small stand-in instead: "device" pointers are host
// pointers, a kernel launch runs the kernel body on the calling thread (every kernel of this layer
// is a grid-stride loop over x with y/z as plain indices, and no thread talks to another, so one
// host thread per (y, z) block computes exactly what the GPU computes), and the GEMMs are plain
// loops (cuda_blas.h). That build lets the drivers and kernels be tested on machines without a GPU
// (tests/gpu/test_cuda_host_emulation.py); it is never shipped.
//
// The NVRTC build (`make gpu`, CUDA_COMPILER=nvrtc: CUDA 12 from pip, no nvcc) compiles every
// *.cu.cc twice:
//  * by NVRTC (`__CUDACC_RTC__`, cc/cuda/nvrtc_build.py) for the device: the kernels and what they
//    call, nothing else. The host code of a .cu.cc is hidden from it with `#if !defined(
//    __CUDACC_RTC__)`; NVRTC has no C++ library, so cc/cuda/nvrtc_include/ stands in for the few
//    standard headers the kernels and cells include. This header then declares only the handle
//    types.
//  * by g++ (TF_RNN_CUDA_NVRTC) for the host, against CUDA 12's headers: <<<>>> does not exist
//  there,
//    so TF_RNN_LAUNCH calls nvrtc::Launch (cc/cuda/nvrtc_launch.h), which finds the kernel by its
//    host function's address in the module NVRTC built and launches it through the driver API. The
//    kernels' bodies are compiled by g++ too, as placeholders that never run (their addresses are
//    the keys; blockIdx & co. are constant zeros there), so `__global__`, `__device__` and
//    `__host__` mean nothing to g++.
#ifndef TF_RNN_OPS_CC_CUDA_CUDA_COMPAT_H_
#define TF_RNN_OPS_CC_CUDA_CUDA_COMPAT_H_

#if defined(__CUDACC_RTC__)

// NVRTC, device code only: the handle types the API headers' declarations name.
typedef struct CUstream_st* cudaStream_t;
typedef struct cublasContext* cublasHandle_t;

#else  // not NVRTC

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#if defined(TF_RNN_CUDA_HOST_EMULATION)

#include <cstring>

#ifndef __global__
#define __global__
#endif
#ifndef __device__
#define __device__
#endif
#ifndef __host__
#define __host__
#endif
#ifndef __forceinline__
#define __forceinline__ inline
#endif

typedef int cudaError_t;
static constexpr cudaError_t cudaSuccess = 0;
typedef struct TfRnnEmulatedStream* cudaStream_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr) {
  if (bytes) std::memset(p, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                                   cudaStream_t = nullptr) {
  if (bytes && dst != src) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }

typedef struct TfRnnEmulatedBlas* cublasHandle_t;
typedef int cublasStatus_t;
static constexpr cublasStatus_t CUBLAS_STATUS_SUCCESS = 0;
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) {
  return CUBLAS_STATUS_SUCCESS;
}
inline const char* cublasGetStatusString(cublasStatus_t) { return "emulated cuBLAS error"; }

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
namespace tf_rnn_ops {
namespace cuda {
namespace emu {
inline thread_local dim3 block_idx(0, 0, 0), thread_idx(0, 0, 0), block_dim(1, 1, 1),
    grid_dim(1, 1, 1);
// Runs `body` once per (y, z) block with one thread per block: the x grid-stride loop covers all of
// x.
template <typename F>
void Launch(dim3 grid, dim3 /*block*/, cudaStream_t /*stream*/, F&& body) {
  block_dim = dim3(1, 1, 1);
  thread_idx = dim3(0, 0, 0);
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      block_idx = dim3(0, y, z);
      grid_dim = dim3(1, grid.y, grid.z);
      body();
    }
  }
}
}  // namespace emu
}  // namespace cuda
}  // namespace tf_rnn_ops
#define blockIdx ::tf_rnn_ops::cuda::emu::block_idx
#define threadIdx ::tf_rnn_ops::cuda::emu::thread_idx
#define blockDim ::tf_rnn_ops::cuda::emu::block_dim
#define gridDim ::tf_rnn_ops::cuda::emu::grid_dim

// Launches the kernel named by the function pointer `kernel` (a plain variable, so that template
// arguments need no parentheses).
#define TF_RNN_LAUNCH(kernel, grid, block, stream, ...) \
  ::tf_rnn_ops::cuda::emu::Launch((grid), (block), (stream), [&]() { (kernel)(__VA_ARGS__); })

#elif defined(TF_RNN_CUDA_NVRTC)  // g++ with CUDA 12's headers; the kernels come from NVRTC

#include <cublas_v2.h>
#include <cuda_runtime.h>

// CUDA's headers define these as GNU attributes that g++ does not know; on the host they mean
// nothing (the kernels' host copies only stand for the kernels: cc/cuda/nvrtc_launch.h).
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
namespace tf_rnn_ops {
namespace cuda {
namespace nvrtc {
// What the kernels' host copies read for the built-in indices: they never run.
inline constexpr uint3 kHostIndex = {0, 0, 0};
inline constexpr uint3 kHostDim = {1, 1, 1};
}  // namespace nvrtc
}  // namespace cuda
}  // namespace tf_rnn_ops
#define blockIdx ::tf_rnn_ops::cuda::nvrtc::kHostIndex
#define threadIdx ::tf_rnn_ops::cuda::nvrtc::kHostIndex
#define blockDim ::tf_rnn_ops::cuda::nvrtc::kHostDim
#define gridDim ::tf_rnn_ops::cuda::nvrtc::kHostDim

#include "cc/cuda/nvrtc_launch.h"

// Launches through the driver API (nvrtc::Launch converts each argument to the kernel's parameter
// type, so a wrong one does not compile); its error is the next cudaGetLastError()'s.
#define TF_RNN_LAUNCH(kernel, grid, block, stream, ...) \
  ::tf_rnn_ops::cuda::nvrtc::Launch((kernel), (grid), (block), (stream), __VA_ARGS__)
#define cudaGetLastError ::tf_rnn_ops::cuda::nvrtc::GetLastError

#else  // nvcc

#include <cublas_v2.h>
#include <cuda_runtime.h>

#define TF_RNN_LAUNCH(kernel, grid, block, stream, ...) \
  (kernel)<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)

#endif  // TF_RNN_CUDA_HOST_EMULATION, TF_RNN_CUDA_NVRTC

namespace tf_rnn_ops {
namespace cuda {

enum class StatusCode : int { kOk = 0, kInvalidArgument = 1, kCudaError = 2, kCublasError = 3 };

// What every function of the CUDA layer returns: ok, or a code and a message for the caller to
// raise.
class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string message) {
    return Status(StatusCode::kInvalidArgument, std::move(message));
  }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status CudaStatus(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return Status::Ok();
  return Status(StatusCode::kCudaError, std::string(what) + ": " + cudaGetErrorString(error));
}
inline Status CublasStatus(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Status(StatusCode::kCublasError, std::string(what) + ": " + cublasGetStatusString(status));
}

}  // namespace cuda
}  // namespace tf_rnn_ops

#define TF_RNN_RETURN_IF_ERROR(expr)               \
  do {                                             \
    ::tf_rnn_ops::cuda::Status _tf_rnn_s = (expr); \
    if (!_tf_rnn_s.ok()) return _tf_rnn_s;         \
  } while (0)
#define TF_RNN_CUDA_CHECK(expr) \
  TF_RNN_RETURN_IF_ERROR(::tf_rnn_ops::cuda::CudaStatus((expr), #expr))
#define TF_RNN_CUBLAS_CHECK(expr) \
  TF_RNN_RETURN_IF_ERROR(::tf_rnn_ops::cuda::CublasStatus((expr), #expr))

#endif  // __CUDACC_RTC__

#endif  // TF_RNN_OPS_CC_CUDA_CUDA_COMPAT_H_
