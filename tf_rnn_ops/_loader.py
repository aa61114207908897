"""Loads the compiled op libraries once, with an error that says how to build them."""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import json
import os
import sys
import types
import warnings
from collections.abc import Iterable

# The package names no TensorFlow distribution as a dependency (either `tensorflow-cpu` or
# `tensorflow`, the GPU build, 2.21 will do), so say which to install when there is none.
_INSTALL_TENSORFLOW = (
    "install TensorFlow 2.21 in this environment: `pip install tensorflow-cpu==2.21.0` (CPU) or "
    "`pip install tensorflow==2.21.0` (TensorFlow's GPU build), or install this package with one "
    "of them: `pip install tf_rnn_ops[cpu]` / `tf_rnn_ops[and-cuda]`"
)
try:
    import tensorflow as tf
except ModuleNotFoundError as e:
    if e.name != "tensorflow":
        raise
    raise ImportError(
        f"tf_rnn_ops needs TensorFlow, and none is installed: {_INSTALL_TENSORFLOW}."
    ) from e

_HERE = os.path.dirname(os.path.abspath(__file__))

# Each CPU library is built twice (Makefile): for x86-64-v3 (AVX2, FMA; runs everywhere we support)
# and for x86-64-v4, which adds these AVX-512 subsets. The second runs the cells' element-wise
# passes 16 floats wide; it is loaded where the CPU has every one of them.
X86_64_V4_FLAGS = ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
AVX512_SUFFIX = "_avx512"


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (empty where it cannot be read)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def avx512_wanted(environ=os.environ) -> bool:
    """False where TF_RNN_OPS_NO_AVX512 turns AVX-512 off (set, and neither empty nor "0": the
    same rule as the products' switch in cc/kernels/packed_gemm.h)."""
    return environ.get("TF_RNN_OPS_NO_AVX512", "") in ("", "0")


def library_variant(path: str, flags: Iterable[str] | None = None, environ=os.environ) -> str:
    """`path` (the x86-64-v3 build), or its x86-64-v4 twin `<name>_avx512.so` where that file
    exists, the CPU has every flag of X86_64_V4_FLAGS and AVX-512 is not turned off."""
    root, ext = os.path.splitext(path)
    twin = root + AVX512_SUFFIX + ext
    flags = cpu_flags() if flags is None else flags
    if avx512_wanted(environ) and set(X86_64_V4_FLAGS) <= set(flags) and os.path.exists(twin):
        return twin
    return path


# TF_RNN_OPS_LIBRARY points the loader at another build of the same library (e.g. Bazel's), taken
# as it is. /proc/cpuinfo is read once for both libraries.
_CPU_FLAGS = cpu_flags()
LIBRARY_PATH = os.environ.get("TF_RNN_OPS_LIBRARY") or library_variant(
    os.path.join(_HERE, "_tf_rnn_ops.so"), _CPU_FLAGS
)
TF_CUDNN_LIBRARY_PATH = os.environ.get("TF_RNN_OPS_TF_CUDNN_LIBRARY") or library_variant(
    os.path.join(_HERE, "_tf_cudnn_cpu_kernels.so"), _CPU_FLAGS
)
# DEVICE_GPU kernels of the TfRnn> ops (`make gpu`): loaded only where TensorFlow sees a GPU.
GPU_LIBRARY_PATH = os.path.join(_HERE, "_tf_rnn_ops_gpu.so")
# TensorFlow's own ops that TensorFlow ships GPU kernels for only; the library above adds CPU ones.
TF_CUDNN_OPS = (
    "CudnnRNN",
    "CudnnRNNV2",
    "CudnnRNNV3",
    "CudnnRNNBackprop",
    "CudnnRNNBackpropV2",
    "CudnnRNNBackpropV3",
    "CudnnRNNParamsSize",
    "CudnnRNNParamsToCanonical",
    "CudnnRNNParamsToCanonicalV2",
    "CudnnRNNCanonicalToParams",
    "CudnnRNNCanonicalToParamsV2",
)
_BUILD_INFO_PATH = os.path.join(_HERE, "_build_info.json")

_HOW_TO_BUILD = (
    "Build it from the source tree with `make build` (or install the package with "
    "`pip install .`, or `pip install --no-build-isolation .` in an environment that has "
    "TensorFlow 2.21)."
)


def _series(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _check_built_for_this_tensorflow() -> None:
    try:
        with open(_BUILD_INFO_PATH) as f:
            built_for = json.load(f).get("tensorflow_version")
    except (OSError, ValueError):
        return  # no record (e.g. a Bazel build): loading will tell
    if built_for and built_for != tf.__version__:
        raise ImportError(
            f"tf_rnn_ops was built against TensorFlow {built_for}, but TensorFlow {tf.__version__} "
            f"is installed: {_INSTALL_TENSORFLOW.replace('2.21', _series(built_for))}; or, in a "
            f"source checkout, rebuild it for this TensorFlow (`make clean build`)."
        )


def _load(path: str, kernels_only: bool = False) -> types.ModuleType | None:
    if not os.path.exists(path):
        raise ImportError(f"tf_rnn_ops: the op library {path} is missing. {_HOW_TO_BUILD}")
    if not os.environ.get("TF_RNN_OPS_LIBRARY"):
        _check_built_for_this_tensorflow()
    try:
        if kernels_only:
            tf.load_library(path)
            return None
        return tf.load_op_library(path)
    except (tf.errors.NotFoundError, OSError) as e:
        raise ImportError(
            f"tf_rnn_ops: could not load {path} into TensorFlow {tf.__version__} (was it built "
            f"against another version?): {e}. {_HOW_TO_BUILD}"
        ) from e


@functools.cache
def ops() -> types.ModuleType:
    """The generated Python module of the `TfRnn>` ops (loaded once)."""
    return _load(LIBRARY_PATH)


def ops_without_cpu_kernel() -> list[str]:
    """TensorFlow's CudnnRNN* ops that have no CPU kernel registered (now)."""
    from tensorflow.python.framework import kernels

    return [
        op
        for op in TF_CUDNN_OPS
        if not any(k.device_type == "CPU" for k in kernels.get_registered_kernels_for_op(op).kernel)
    ]


@functools.cache
def load_tf_cudnn_cpu_kernels() -> list[str]:
    """Gives TensorFlow's own CudnnRNN* ops our CPU kernels where TensorFlow has none.

    The library registers each op's kernel only if TensorFlow has no CPU kernel for it, so a future
    TensorFlow with its own keeps them. Returns the ops that got ours.
    """
    missing = ops_without_cpu_kernel()
    if missing:
        _load(TF_CUDNN_LIBRARY_PATH, kernels_only=True)
    return missing


# ---------------------------------------------------------------- GPU kernels
# `make gpu` records what it built the GPU library with as a string in the library itself
# (`TFRNN_GPU_BUILD_INFO{json}`, cc/cuda/cuda.mk), read from the file before anything is loaded.
_GPU_BUILD_INFO_MARKER = b"TFRNN_GPU_BUILD_INFO"
# Where NVIDIA's pip packages keep each CUDA library the GPU library may need, relative to
# site-packages: nvidia-cublas-cu12 and nvidia-cuda-runtime-cu12 (the ones `tensorflow[and-cuda]`
# installs) and nvidia-cublas 13 (PyTorch's CUDA 13 builds).
_CUBLAS_PACKAGE_DIRS = {
    "libcublas.so.12": "nvidia/cublas/lib",
    "libcublas.so.13": "nvidia/cu13/lib",
    "libcudart.so.12": "nvidia/cuda_runtime/lib",
}
_HOW_TO_GET_CUBLAS = (
    "install TensorFlow's CUDA libraries: pip install 'tensorflow[and-cuda]==2.21.0' (it brings "
    "nvidia-cublas-cu12 and nvidia-cuda-runtime-cu12)"
)


@dataclasses.dataclass(frozen=True)
class GpuBuildInfo:
    """What the GPU library was built with (cc/cuda/cuda.mk)."""

    cuda: tuple[int, int]  # the CUDA version of the compiler (NVRTC or nvcc) and its runtime
    sass: tuple[int, ...]  # architectures with machine code, e.g. (80, 90) for sm_80 and sm_90
    ptx: int  # the architecture of the PTX the driver compiles for newer GPUs, e.g. 90
    cublas: str  # the cuBLAS it needs, e.g. "libcublas.so.12"
    # The CUDA runtime it needs ("libcudart.so.12": the NVRTC build), or None when linked statically
    # (the nvcc build).
    cudart: str | None = None


def read_gpu_build_info(path: str) -> GpuBuildInfo | None:
    """The build information recorded in the GPU library at `path`, or None if it has none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    start = data.find(_GPU_BUILD_INFO_MARKER)
    if start < 0:
        return None
    start += len(_GPU_BUILD_INFO_MARKER)
    end = data.find(b"\0", start)
    try:
        info = json.loads(data[start : end if end >= 0 else None])
        major, minor = (int(v) for v in str(info["cuda"]).split(".")[:2])
        return GpuBuildInfo(
            cuda=(major, minor),
            sass=tuple(int(a) for a in info["sass"]),
            ptx=int(info["ptx"]),
            cublas=str(info["cublas"]),
            cudart=str(info["cudart"]) if info.get("cudart") else None,
        )
    except (ValueError, KeyError, TypeError):
        return None


def _cuda_driver_version() -> int | None:
    """The CUDA version the installed NVIDIA driver supports (cuDriverGetVersion), or None."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
        return version.value
    except (OSError, AttributeError):
        return None


def _gpu_compute_capabilities(gpus) -> list[tuple[int, int] | None]:
    """Each visible GPU's compute capability as TensorFlow reports it (None where it does not)."""
    capabilities = []
    for gpu in gpus:
        try:
            cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except (ValueError, RuntimeError):
            cc = None
        capabilities.append(tuple(cc) if cc else None)
    return capabilities


def _code_for(capability: tuple[int, int], info: GpuBuildInfo) -> str | None:
    """How the library serves a GPU of this compute capability: "sass" (machine code: sm_80 runs
    on 8.x, sm_90 on 9.x), "ptx" (its PTX, compiled by the driver: newer GPUs) or None."""
    major, minor = capability
    if any(a // 10 == major and minor >= a % 10 for a in info.sass):
        return "sass"
    if 10 * major + minor >= info.ptx:
        return "ptx"
    return None


def _cuda_version_str(version: int) -> str:
    major, minor = divmod(version // 10, 100)
    return f"{major}.{minor}"


def gpu_kernels_unusable_reason(
    capabilities: list[tuple[int, int] | None], driver_version: int | None, info: GpuBuildInfo
) -> str | None:
    """Why the GPU library built as `info` cannot serve these GPUs with this driver, or None.

    The runtime of CUDA X.Y (linked statically) runs on any driver for CUDA X or newer (CUDA's minor
    version compatibility); PTX compiled by the driver needs a driver for CUDA X.Y or newer. Once
    loaded, TensorFlow places our ops on the GPU: a GPU the library has no code for, or a driver too
    old for it, would then fail every call instead of running the ops on CPU.
    """
    if driver_version is None:
        return "no CUDA driver version could be read (libcuda.so.1)"
    built = f"{info.cuda[0]}.{info.cuda[1]}"
    if driver_version < 1000 * info.cuda[0]:
        return (
            f"the NVIDIA driver supports CUDA {_cuda_version_str(driver_version)}, but the kernels "
            f"are built with CUDA {built}, which needs a driver for CUDA {info.cuda[0]} or newer "
            "(install a newer driver)"
        )
    code = ", ".join(f"sm_{a}" for a in info.sass) + f" and compute_{info.ptx} PTX"
    for i, cc in enumerate(capabilities):
        if cc is None:
            return f"TensorFlow reports no compute capability for GPU {i}"
        how = _code_for(cc, info)
        if how is None:
            return (
                f"GPU {i} has compute capability {cc[0]}.{cc[1]}; the kernels are built for "
                f"{min(info.sass) // 10}.{min(info.sass) % 10} and newer ({code})"
            )
        if how == "ptx" and driver_version < 1000 * info.cuda[0] + 10 * info.cuda[1]:
            return (
                f"GPU {i} (compute capability {cc[0]}.{cc[1]}) runs the kernels' "
                f"compute_{info.ptx} PTX, which the driver must compile: that needs a driver for "
                f"CUDA {built} or newer, this one supports CUDA {_cuda_version_str(driver_version)}"
            )
    return None


def _site_packages_dirs() -> list[str]:
    """Where to look for NVIDIA's pip packages, as TensorFlow does: next to TensorFlow (its run
    paths point at ../nvidia/...), next to this package, then the rest of sys.path."""
    dirs = [os.path.dirname(os.path.dirname(os.path.abspath(tf.__file__))), os.path.dirname(_HERE)]
    return dirs + [os.path.abspath(p or ".") for p in sys.path]


def _loaded_library(soname: str) -> str | None:
    """The file of `soname` if this process has already loaded it (e.g. TensorFlow's cuBLAS)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if os.path.basename(path) == soname and os.path.isfile(path):
                    return path
    except OSError:
        pass
    return None


def find_cuda_library(soname: str) -> str | None:
    """The file of `soname` (e.g. libcublas.so.12): the one already loaded (TensorFlow's), else the
    one in an NVIDIA pip package next to TensorFlow, this package or on sys.path; None if none."""
    sub = _CUBLAS_PACKAGE_DIRS.get(soname)
    if sub is None:
        return None
    loaded = _loaded_library(soname)
    if loaded is not None:
        return loaded
    for d in _site_packages_dirs():
        candidate = os.path.join(d, sub, soname)
        if os.path.isfile(candidate):
            return candidate
    return None


def _load_cublas(soname: str) -> str | None:
    """Loads `soname` before the GPU library needs it (find_cuda_library), else by name (the
    system's library path). None when loaded, else why not."""
    path = find_cuda_library(soname)
    try:
        ctypes.CDLL(path or soname, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        return f"{soname} could not be loaded ({e}); {_HOW_TO_GET_CUBLAS}"
    return None


def load_gpu_library(path: str | None = None) -> str | None:
    """Loads the GPU library (its DEVICE_GPU kernels) and the cuBLAS it needs into TensorFlow,
    whether or not a GPU is visible. Returns None when loaded, else why not; never raises."""
    path = path or GPU_LIBRARY_PATH
    info = read_gpu_build_info(path)
    if info is None:
        return f"{path} records no build information (rebuild it with `make gpu`)"
    for soname in ([info.cudart] if info.cudart else []) + [info.cublas]:
        reason = _load_cublas(soname)
        if reason is not None:
            return reason
    try:
        _load(path, kernels_only=True)
    except ImportError as e:
        return str(e)
    return None


def _gpu_kernels_not_loaded_reason() -> str | None:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return ""  # nothing to serve: no warning
    info = read_gpu_build_info(GPU_LIBRARY_PATH)
    if info is None:
        return f"{GPU_LIBRARY_PATH} records no build information (rebuild it with `make gpu`)"
    reason = gpu_kernels_unusable_reason(
        _gpu_compute_capabilities(gpus), _cuda_driver_version(), info
    )
    return reason if reason is not None else load_gpu_library(GPU_LIBRARY_PATH)


@functools.cache
def load_gpu_kernels() -> bool:
    """Loads the CUDA kernels of our ops when they were built, TensorFlow has a GPU, the GPUs and
    driver can run them and their cuBLAS loads. Otherwise warns once, saying why, and leaves the
    ops on CPU: `import tf_rnn_ops` never fails because of the GPU library."""
    if not os.path.exists(GPU_LIBRARY_PATH):
        return False
    try:
        reason = _gpu_kernels_not_loaded_reason()
    except Exception as e:  # noqa: BLE001 - whatever it is, the CPU kernels still serve
        reason = f"{type(e).__name__}: {e}"
    if reason == "":
        return False
    if reason is not None:
        warnings.warn(
            f"tf_rnn_ops: GPU kernels not loaded: {reason}. The ops run on CPU.",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True
