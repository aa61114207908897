// Kernel launches of the NVRTC build (cuda_compat.h, TF_RNN_CUDA_NVRTC): host code compiled by g++
// against CUDA 12's headers, kernels compiled by NVRTC 12 at build time (cc/cuda/nvrtc_build.py)
// into CUBIN for each SASS architecture and PTX for the newest, embedded in the library.
//
// Each .cu.cc becomes one module. nvrtc_build.py lists the kernels the host code instantiates (the
// __global__ functions in its object), has NVRTC compile the same file for them
// (nvrtcAddNameExpression / nvrtcGetLoweredName), checks that every one is in the module under the
// name g++ gave it, and writes a table {host function address, lowered name} that registers itself
// (Register). Launch(kernel, ...) looks the address up, loads the module into the current context
// once (the CUBIN of the device's architecture, else the PTX), and launches with cuLaunchKernel.
// The driver is reached through cudaGetDriverEntryPoint, so nothing links libcuda.so: the library
// needs libcudart.so.12 (and cuBLAS) only.
//
// Framework-free, like all of cc/cuda/; used only when TF_RNN_CUDA_NVRTC is defined.
#ifndef TF_RNN_OPS_CC_CUDA_NVRTC_LAUNCH_H_
#define TF_RNN_OPS_CC_CUDA_NVRTC_LAUNCH_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <tuple>
#include <utility>

namespace tf_rnn_ops {
namespace cuda {
namespace nvrtc {

// One compiled image of a module: CUBIN for sm_<arch> (ptx false), or PTX for compute_<arch>.
struct Image {
  int arch;
  bool ptx;
  const unsigned char* data;  // a PTX image ends with a NUL
  size_t size;
};

// A kernel of a module: its host function's address (the key) and its name in the images.
struct Kernel {
  const void* host;
  const char* lowered_name;
};

struct Module {
  const char* source;  // e.g. "cc/cuda/fused_rnn_cuda.cu.cc"
  const Image* images;
  size_t num_images;
  const Kernel* kernels;
  size_t num_kernels;
};

// Called by the generated tables' static initializers; returns true.
bool Register(const Module* module);

// The registered kernels, one line each: "<source> <lowered name> <arch>[,<arch>...]" with
// "ptx<arch>" for the PTX (exported as tfrnn_nvrtc_kernels() for the checks:
// tests/packaging/test_nvrtc_build.py).
const char* KernelList();

// The kernel of `host` in the module loaded for the current context, and launches it with
// `args` (pointers to the parameters, in order). Returns the driver's error as a cudaError_t
// (CUDA's driver and runtime share the codes of every error a launch can return), or
// cudaErrorInvalidDeviceFunction when no registered module has the kernel.
cudaError_t LaunchKernel(const void* host, dim3 grid, dim3 block, size_t shared_bytes,
                         cudaStream_t stream, void** args);

// The error of this thread's last failed Launch (then cleared), else cudaGetLastError()'s: what
// cuda_compat.h's cudaGetLastError means in the NVRTC build.
cudaError_t GetLastError();
void SetLaunchError(cudaError_t error);

// The parameter `a` becomes: an implicit conversion to the kernel's parameter type, as a call
// would do; an argument that does not convert does not compile.
template <typename P>
P Param(P value) {
  return value;
}

// kernel<<<grid, block, 0, stream>>>(a...) for a kernel compiled by NVRTC: each argument is
// converted to the kernel's declared parameter type P first and passed by address, so the driver
// gets exactly the layout the kernel expects.
template <typename... P, typename... A>
void Launch(void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t stream, A&&... a) {
  static_assert(sizeof...(P) == sizeof...(A), "wrong number of kernel arguments");
  std::tuple<P...> params(Param<P>(std::forward<A>(a))...);
  cudaError_t error = std::apply(
      [&](P&... p) {
        void* args[sizeof...(P) + 1] = {static_cast<void*>(&p)...};
        return LaunchKernel(reinterpret_cast<const void*>(kernel), grid, block, 0, stream, args);
      },
      params);
  if (error != cudaSuccess) SetLaunchError(error);
}

}  // namespace nvrtc
}  // namespace cuda
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CUDA_NVRTC_LAUNCH_H_
