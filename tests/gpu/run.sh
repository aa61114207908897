#!/usr/bin/env bash
# The GPU harness, in one command, on a machine with an NVIDIA GPU, nvcc and PyTorch (no TensorFlow, no
# network needed): builds the CUDA layer with nvcc here, runs the GPU tests (against PyTorch's cuDNN RNNs
# and the numpy references of docs/MATH.md), then the benchmark against cuDNN.
#
#   bash tests/gpu/run.sh [pytest args...]       PYTHON=python3, BENCH_ARGS="--tf32", OUT=dir (JSON)
#
# GPU_ONLY=1 leaves out the host-emulation build and tests (CI runs those; on a borrowed GPU machine the
# minutes are the GPU's), CUDA_ARCHS="90" builds fewer architectures (the device's own is always added).
# A failing test does not stop the benchmarks (each checks its outputs before timing); the exit status
# is the tests' then.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "tests/gpu/run.sh needs a CUDA device visible to PyTorch"
print("torch", torch.__version__, "CUDA", torch.version.cuda, "on", torch.cuda.get_device_name())
PY
command -v nvidia-smi >/dev/null && nvidia-smi -L || true

# Build (framework-free library + host emulation) for this GPU's architecture too, with this machine's nvcc
# (CUDA_HOME) and the cuBLAS of PyTorch's CUDA major version: TensorFlow's is CUDA 12 (libcublas.so.12,
# what `make gpu` links), but a PyTorch built for CUDA 13 brings only libcublas.so.13 (nvidia/cu13) and
# nothing can be installed here. The kernels are the same; which cuBLAS served them is printed below.
cap=$("$PY" -c 'import torch; a, b = torch.cuda.get_device_capability(); print(f"{a}{b}")')
cublas_major=${CUBLAS_MAJOR:-$("$PY" -c 'import torch; print(torch.version.cuda.split(".")[0])')}
archs=${CUDA_ARCHS:-"80 90"}
case " $archs " in *" $cap "*) ;; *) archs="$archs $cap" ;; esac
# A library built elsewhere for another cuBLAS must not be reused: build/cuda/cublasN.env differs per N.
rm -f build/cuda/libtf_rnn_ops_cuda.so
targets=(gpu-lib gpu-emu)
tests=(tests/gpu)
if [ "${GPU_ONLY:-0}" = 1 ]; then
  targets=(gpu-lib)
  tests=(tests/gpu/test_gpu_*.py)
fi
make -f cc/cuda/cuda.mk -j"$(nproc)" PYTHON="$PY" CUDA_ARCHS="$archs" CUBLAS_MAJOR="$cublas_major" "${targets[@]}"
command -v "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" >/dev/null && "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" --version | tail -1
readelf -d build/cuda/libtf_rnn_ops_cuda.so | grep -E 'NEEDED|RUNPATH' || true
"$PY" - <<'PY'
import sys
sys.path.insert(0, "tests/gpu")
import torch  # noqa: F401  (first, as the tests do: its cuBLAS may be the one used)
import tfrnn_cuda_ctypes as t
soname = t.built_cublas("build/cuda/libtf_rnn_ops_cuda.so")
print("built against", soname, "- loads", t.preload_cublas(soname))
PY

export TF_RNN_OPS_GPU_TESTS_REQUIRED=1
# --confcutdir: only tests/gpu's own set-up (the package's conftest may import TensorFlow one day).
tests_status=0
"$PY" -m pytest -q -p no:cacheprovider --confcutdir=tests/gpu "${tests[@]}" "$@" || tests_status=$?

bench_json=()
[ -n "${OUT:-}" ] && bench_json=(--json "$OUT/bench_gpu.json")
# shellcheck disable=SC2086
"$PY" tests/gpu/bench_gpu.py ${BENCH_ARGS:-} "${bench_json[@]}" || bench_status=$?

# TfRnn>KerasRNNDropout's CUDA kernels: masks / zoneout against the same op without them.
kd_json=()
[ -n "${OUT:-}" ] && kd_json=(--json "$OUT/bench_gpu_keras_dropout.json")
"$PY" tests/gpu/bench_gpu_keras_dropout.py "${kd_json[@]}" || bench_status=$?

# TfRnn>LayerNormRnn's CUDA kernels against the plain fused and cuDNN cells of the same shapes.
ln_json=()
[ -n "${OUT:-}" ] && ln_json=(--json "$OUT/bench_gpu_layer_norm.json")
"$PY" tests/gpu/bench_gpu_layer_norm.py "${ln_json[@]}" || bench_status=$?
[ "$tests_status" != 0 ] && exit "$tests_status"
exit "${bench_status:-0}"
