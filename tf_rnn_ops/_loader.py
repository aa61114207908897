"""Loads the compiled op libraries once, with an error that says how to build them."""

from __future__ import annotations

import ctypes
import functools
import json
import os
import types
import warnings

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
# TF_RNN_OPS_LIBRARY points the loader at another build of the same library (e.g. Bazel's).
LIBRARY_PATH = os.environ.get("TF_RNN_OPS_LIBRARY") or os.path.join(_HERE, "_tf_rnn_ops.so")
TF_CUDNN_LIBRARY_PATH = os.environ.get("TF_RNN_OPS_TF_CUDNN_LIBRARY") or os.path.join(
    _HERE, "_tf_cudnn_cpu_kernels.so"
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


# What the GPU library is built for (cc/cuda/cuda.mk): SASS for sm_80 and sm_90 and compute_90 PTX,
# on the CUDA 13 runtime (linked statically) and cuBLAS 13, which need a driver for CUDA 13.
MIN_COMPUTE_CAPABILITY = (8, 0)
MIN_DRIVER_CUDA_VERSION = 13000  # as cuDriverGetVersion reports it: 1000 * major + 10 * minor


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


def gpu_kernels_unusable_reason(
    capabilities: list[tuple[int, int] | None], driver_version: int | None
) -> str | None:
    """Why the GPU library cannot serve these GPUs, or None when it can.

    Once loaded, TensorFlow places our ops on the GPU; a GPU the library has no code for (or a
    driver too old for its runtime) would then fail every call instead of running them on CPU.
    """
    if driver_version is None:
        return "no CUDA driver version could be read (libcuda.so.1)"
    if driver_version < MIN_DRIVER_CUDA_VERSION:
        major, minor = divmod(driver_version // 10, 100)
        return (
            f"the NVIDIA driver supports CUDA {major}.{minor}, but the kernels are built with CUDA "
            f"{MIN_DRIVER_CUDA_VERSION // 1000} (install a newer driver)"
        )
    want = MIN_COMPUTE_CAPABILITY
    for i, cc in enumerate(capabilities):
        if cc is None:
            return f"TensorFlow reports no compute capability for GPU {i}"
        if cc < want:
            return (
                f"GPU {i} has compute capability {cc[0]}.{cc[1]}; the kernels are built for "
                f"{want[0]}.{want[1]} and newer"
            )
    return None


@functools.cache
def load_gpu_kernels() -> bool:
    """Loads the CUDA kernels of our ops when they were built, TensorFlow has a GPU, and the GPUs
    and driver can run them (else warns once and leaves the ops on CPU)."""
    if not os.path.exists(GPU_LIBRARY_PATH):
        return False
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False
    reason = gpu_kernels_unusable_reason(_gpu_compute_capabilities(gpus), _cuda_driver_version())
    if reason is not None:
        warnings.warn(
            f"tf_rnn_ops: GPU kernels not loaded: {reason}. The ops run on CPU.",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    _load(GPU_LIBRARY_PATH, kernels_only=True)
    return True
