#!/usr/bin/env bash
# Every GPU check in one call, for a borrowed GPU machine's few minutes (PyTorch with CUDA 13, nvcc,
# pytest-xdist, no TensorFlow: the project's H200 machine). Logs and JSON go to OUT (12 files):
#   1. the nvcc build: tests/gpu/run.sh with GPU_ONLY=1 (every GPU test, the three benchmarks);
#   2. tests/gpu/sanitize.sh on that build (memcheck, racecheck);
#   3. the NVRTC build (the launcher TensorFlow's `make gpu` build uses) with CUDA 13's NVRTC and
#      runtime from PyTorch's packages, in build/nvrtc13, and every GPU test on it;
#   4. the forward's step kinds against each other (bench_gpu.py --fused-steps 0 / 1 --graphs on
#      the nvcc build, few to many rows: docs/PERFORMANCE.md item 71's open question).
# Steps 1-3 ran on an H200 in sessions 35 and 36 (docs/PERFORMANCE.md items 66, 69): ~4.5 minutes.
#
#   OUT=dir bash tests/gpu/device_check.sh       PYTHON=python3, CUDA_ARCHS="90", JOBS=8 (pytest -n)
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-build/device_check}
ARCHS=${CUDA_ARCHS:-90}
xdist=(-n "${JOBS:-8}")
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0

rc=0
GPU_ONLY=1 CUDA_ARCHS="$ARCHS" OUT="$OUT" timeout 300 bash tests/gpu/run.sh "${xdist[@]}" -rfE \
  --tb=short >"$OUT/run.log" 2>&1 || rc=$?
echo "1. nvcc build, tests and benchmarks: rc=$rc"
grep -E "^[0-9]+ (passed|failed)|Error" "$OUT/run.log" | tail -3
status=$rc

rc=0
OUT="$OUT" timeout 240 bash tests/gpu/sanitize.sh || rc=$?
echo "2. sanitizers: rc=$rc"
[ "$status" = 0 ] && status=$rc

rc=0
site=$("$PY" -c 'import os, nvidia; print(os.path.dirname(list(nvidia.__path__)[0]))')
lib=$site/nvidia/cu13/lib
make -f cc/cuda/cuda.mk -j"$(nproc)" PYTHON="$PY" BUILD=build/nvrtc13 CUDA_ARCHS="$ARCHS" \
  CUBLAS_MAJOR=13 CUDA_COMPILER=nvrtc NVRTC="$lib/libnvrtc.so.13" CUDART="$lib/libcudart.so.13" \
  CUDART_INC=/usr/local/cuda/include:/usr/local/cuda/include/cccl gpu-lib >"$OUT/nvrtc_build.log" 2>&1 ||
  rc=$?
if [ "$rc" = 0 ]; then
  TF_RNN_OPS_CUDA_LIB="$PWD/build/nvrtc13/cuda/libtf_rnn_ops_cuda.so" TF_RNN_OPS_GPU_TESTS_REQUIRED=1 \
    timeout 150 "$PY" -m pytest -q -p no:cacheprovider --confcutdir=tests/gpu "${xdist[@]}" -rfE \
    --tb=short tests/gpu/test_gpu_*.py >"$OUT/nvrtc_tests.log" 2>&1 || rc=$?
  grep -E "^[0-9]+ (passed|failed)" "$OUT/nvrtc_tests.log" | tail -1
else
  tail -5 "$OUT/nvrtc_build.log"
fi
echo "3. NVRTC build (CUDA 13) and tests: rc=$rc"
[ "$status" = 0 ] && status=$rc

rc=0
shapes="1,100,128,256;8,100,128,256;32,100,128,256;64,100,128,256;128,100,128,256;64,100,128,512"
for f in 0 1; do
  timeout 90 "$PY" tests/gpu/bench_gpu.py --modes gru,lstm,rnn_tanh --fused-steps "$f" --graphs \
    --shapes "$shapes" --json "$OUT/fused_steps$f.json" >"$OUT/fused_steps$f.log" 2>&1 || rc=$?
done
echo "4. forward step kinds (fused_steps0.log, fused_steps1.log): rc=$rc"
grep -hE "^(gru|lstm|rnn_tanh) " "$OUT/fused_steps0.log" "$OUT/fused_steps1.log" | head -40
[ "$status" = 0 ] && status=$rc
exit "$status"
