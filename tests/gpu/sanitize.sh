#!/usr/bin/env bash
# compute-sanitizer over a small subset of the GPU tests, on a GPU machine after tests/gpu/run.sh has
# built build/cuda/libtf_rnn_ops_cuda.so: memcheck (out-of-bounds and misaligned accesses, API errors)
# over every kernel family's forward and backward, racecheck (shared memory) over the layer-norm
# kernels' block reductions with more units than threads. PyTorch's caching allocator is off, so that
# each buffer is its own allocation and an access past its end is caught.
#
#   bash tests/gpu/sanitize.sh            PYTHON=python3, SANITIZER=compute-sanitizer, OUT=dir (logs)
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
CS=${SANITIZER:-$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")}
LOGS=${OUT:-build/cuda/sanitize}
mkdir -p "$LOGS"
export PYTORCH_NO_CUDA_MEMORY_CACHING=1 TF_RNN_OPS_GPU_TESTS_REQUIRED=1 PYTHONUNBUFFERED=1
pytest=("$PY" -m pytest -q -p no:cacheprovider --confcutdir=tests/gpu)
status=0

memcheck_k="test_grads_match_finite_differences or test_gradients_match_finite_differences"
memcheck_k+=" or (test_matches_cudnn and float32 and varlen and tm) or (test_matches_spec and float32)"
memcheck_k+=" or test_dropout_backprop_matches_finite_differences or test_conversions_match_torch"
"$CS" --tool memcheck --error-exitcode 9 --print-limit 20 "${pytest[@]}" tests/gpu/test_gpu_*.py \
  -k "$memcheck_k" >"$LOGS/memcheck.log" 2>&1 || status=$?
echo "memcheck: rc=$status"
tail -5 "$LOGS/memcheck.log"

rc=0
"$CS" --tool racecheck --error-exitcode 9 --print-limit 20 "${pytest[@]}" \
  tests/gpu/test_gpu_layer_norm_rnn.py -k "test_gradients_along_random_directions and float32 and 600" \
  >"$LOGS/racecheck.log" 2>&1 || rc=$?
echo "racecheck: rc=$rc"
tail -5 "$LOGS/racecheck.log"
[ "$status" = 0 ] && status=$rc
exit "$status"
