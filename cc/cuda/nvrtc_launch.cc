// The NVRTC build's launcher (nvrtc_launch.h): the registry of embedded modules, their loading into
// each context and cuLaunchKernel, all through the driver entry points cudart hands out.
#if defined(TF_RNN_CUDA_NVRTC)

#include "cc/cuda/nvrtc_launch.h"

#include <cuda.h>

#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tf_rnn_ops {
namespace cuda {
namespace nvrtc {
namespace {

// The driver functions used, as CUDA 12.0 declared them (cudaGetDriverEntryPoint hands out the
// version that matches the runtime's CUDA 12 headers; none of these changed within CUDA 12).
struct Driver {
  CUresult (*ctx_get_current)(CUcontext*) = nullptr;
  CUresult (*ctx_get_device)(CUdevice*) = nullptr;
  CUresult (*device_get_attribute)(int*, CUdevice_attribute, CUdevice) = nullptr;
  CUresult (*module_load_data)(CUmodule*, const void*) = nullptr;
  CUresult (*module_get_function)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*launch_kernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                            unsigned, CUstream, void**, void**) = nullptr;
  cudaError_t error = cudaSuccess;  // why the driver could not be reached
};

template <typename F>
cudaError_t Entry(const char* name, F* fn) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 13000
  // CUDA 13 deprecates the unversioned lookup. Driver's prototypes are CUDA 12's: ask for that ABI
  // (CUDA 13's cuCtxGetDevice, for one, takes a context too; called with one argument it reads a
  // stray register as the context and fails, as a GPU run of a CUDA 13 NVRTC build showed).
  cudaError_t error = cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &found);
#else
  cudaError_t error = cudaGetDriverEntryPoint(name, &p, cudaEnableDefault, &found);
#endif
  if (error != cudaSuccess) return error;
  if (found != cudaDriverEntryPointSuccess || p == nullptr) return cudaErrorSymbolNotFound;
  *fn = reinterpret_cast<F>(p);
  return cudaSuccess;
}

const Driver& GetDriver() {
  static const Driver driver = [] {
    Driver d;
    for (cudaError_t e :
         {Entry("cuCtxGetCurrent", &d.ctx_get_current), Entry("cuCtxGetDevice", &d.ctx_get_device),
          Entry("cuDeviceGetAttribute", &d.device_get_attribute),
          Entry("cuModuleLoadData", &d.module_load_data),
          Entry("cuModuleGetFunction", &d.module_get_function),
          Entry("cuLaunchKernel", &d.launch_kernel)}) {
      if (e != cudaSuccess && d.error == cudaSuccess) d.error = e;
    }
    return d;
  }();
  return driver;
}

struct Registry {
  std::mutex mu;
  std::vector<const Module*> modules;
  std::unordered_map<const void*, std::pair<const Module*, const char*>> kernels;
  // Per context: each module's CUmodule (loaded on first use) and each kernel's CUfunction.
  std::map<std::pair<CUcontext, const Module*>, CUmodule> loaded;
  std::map<std::pair<CUcontext, const void*>, CUfunction> functions;
  std::string list;
};

Registry& GetRegistry() {
  static Registry* registry = new Registry;  // never destroyed: launches may come during exit
  return *registry;
}

// The image for a device of compute capability major.minor: the CUBIN of its major architecture
// (sm_80 runs on 8.x, sm_90 on 9.x), else the PTX when the device is newer than it.
const Image* PickImage(const Module& m, int major, int minor) {
  const int cc = major * 10 + minor;
  for (size_t i = 0; i < m.num_images; ++i) {
    const Image& im = m.images[i];
    if (!im.ptx && im.arch / 10 == major && im.arch <= cc) return &im;
  }
  for (size_t i = 0; i < m.num_images; ++i) {
    if (m.images[i].ptx && m.images[i].arch <= cc) return &m.images[i];
  }
  return nullptr;
}

thread_local cudaError_t launch_error = cudaSuccess;

}  // namespace

bool Register(const Module* module) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.modules.push_back(module);
  for (size_t i = 0; i < module->num_kernels; ++i) {
    r.kernels.emplace(module->kernels[i].host,
                      std::make_pair(module, module->kernels[i].lowered_name));
    std::string archs;
    for (size_t j = 0; j < module->num_images; ++j) {
      archs += (archs.empty() ? "" : ",") + std::string(module->images[j].ptx ? "ptx" : "") +
               std::to_string(module->images[j].arch);
    }
    r.list +=
        std::string(module->source) + " " + module->kernels[i].lowered_name + " " + archs + "\n";
  }
  return true;
}

const char* KernelList() {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.list.c_str();
}

cudaError_t LaunchKernel(const void* host, dim3 grid, dim3 block, size_t shared_bytes,
                         cudaStream_t stream, void** args) {
  const Driver& d = GetDriver();
  if (d.error != cudaSuccess) return d.error;
  CUcontext ctx = nullptr;
  CUresult res = d.ctx_get_current(&ctx);
  if (res == CUDA_SUCCESS && ctx == nullptr) {
    // No context yet on this thread: let the runtime make its primary context current.
    const cudaError_t e = cudaFree(nullptr);
    if (e != cudaSuccess) return e;
    res = d.ctx_get_current(&ctx);
  }
  if (res != CUDA_SUCCESS) return static_cast<cudaError_t>(res);
  if (ctx == nullptr) return cudaErrorDeviceUninitialized;

  Registry& r = GetRegistry();
  CUfunction fn = nullptr;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    auto f = r.functions.find({ctx, host});
    if (f != r.functions.end()) {
      fn = f->second;
    } else {
      auto k = r.kernels.find(host);
      if (k == r.kernels.end()) return cudaErrorInvalidDeviceFunction;
      const Module* m = k->second.first;
      auto l = r.loaded.find({ctx, m});
      CUmodule mod = nullptr;
      if (l != r.loaded.end()) {
        mod = l->second;
      } else {
        CUdevice dev = 0;
        int major = 0, minor = 0;
        res = d.ctx_get_device(&dev);
        if (res == CUDA_SUCCESS) {
          res = d.device_get_attribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
        }
        if (res == CUDA_SUCCESS) {
          res = d.device_get_attribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
        }
        if (res != CUDA_SUCCESS) return static_cast<cudaError_t>(res);
        const Image* image = PickImage(*m, major, minor);
        if (image == nullptr) return cudaErrorNoKernelImageForDevice;
        res = d.module_load_data(&mod, image->data);
        if (res != CUDA_SUCCESS) return static_cast<cudaError_t>(res);
        r.loaded.emplace(std::make_pair(ctx, m), mod);
      }
      res = d.module_get_function(&fn, mod, k->second.second);
      if (res != CUDA_SUCCESS) return static_cast<cudaError_t>(res);
      r.functions.emplace(std::make_pair(ctx, host), fn);
    }
  }
  res = d.launch_kernel(fn, grid.x, grid.y, grid.z, block.x, block.y, block.z,
                        static_cast<unsigned>(shared_bytes), reinterpret_cast<CUstream>(stream),
                        args, nullptr);
  return static_cast<cudaError_t>(res);
}

cudaError_t GetLastError() {
  const cudaError_t pending = launch_error;
  launch_error = cudaSuccess;
  const cudaError_t runtime = ::cudaGetLastError();
  return pending != cudaSuccess ? pending : runtime;
}

void SetLaunchError(cudaError_t error) { launch_error = error; }

}  // namespace nvrtc
}  // namespace cuda
}  // namespace tf_rnn_ops

// For the checks (tests/packaging/test_nvrtc_build.py): what the library registered.
extern "C" __attribute__((visibility("default"))) const char* tfrnn_nvrtc_kernels() {
  return ::tf_rnn_ops::cuda::nvrtc::KernelList();
}

#endif  // TF_RNN_CUDA_NVRTC
