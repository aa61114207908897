#!/usr/bin/env bash
# Finds CUDA 12's compiler and runtime from pip for the NVRTC build (`make gpu`, CUDA_COMPILER=nvrtc) and
# prints
#   nvrtc=FILE    libnvrtc.so.12        (nvidia-cuda-nvrtc-cu12: the device compiler, used at build time)
#   cudart=FILE   libcudart.so.12       (nvidia-cuda-runtime-cu12: linked by file, soname only)
#   inc=DIRS      the header folders, ':'-separated: cuda_runtime.h (nvidia-cuda-runtime-cu12), crt/
#                 (nvidia-cuda-nvcc-cu12: the runtime headers include crt/host_config.h), nv/target
#                 (nvidia-cuda-cccl-cu12: cuda_fp16.h includes it)
#
# Each comes from the NVIDIA pip packages in the site-packages of the Pythons in $PYTHONS (where
# `pip install tensorflow[and-cuda]` puts the first three), else from SITE (the first argument, a
# pip --target folder), where `pip install --target` by $PIP_PYTHON puts the pins $CUDA12_PINS (the
# `gpu` extra's, separated by white space) of those not found. Never at test time: only `make gpu` runs this.
set -euo pipefail

site=${1:?usage: find_cuda12.sh SITE}
PYTHONS=${PYTHONS:-python3}
PIP_PYTHON=${PIP_PYTHON:-python3}
CUDA12_PINS=${CUDA12_PINS:-}

# package dist name -> the file that says it is there, relative to site-packages
declare -A marker=(
  [nvidia-cuda-nvrtc-cu12]=nvidia/cuda_nvrtc/lib/libnvrtc.so.12
  [nvidia-cuda-runtime-cu12]=nvidia/cuda_runtime/lib/libcudart.so.12
  [nvidia-cuda-nvcc-cu12]=nvidia/cuda_nvcc/include/crt/host_config.h
  [nvidia-cuda-cccl-cu12]=nvidia/cuda_cccl/include/nv/target
)
declare -A found=()

dirs=()
for py in $PYTHONS; do
  command -v "$py" >/dev/null 2>&1 || [ -x "$py" ] || continue
  for dir in $("$py" -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null); do
    [ -d "$dir/nvidia" ] && dirs+=("$dir")
  done
done
locate() {
  local pkg dir
  for pkg in "${!marker[@]}"; do
    [ -n "${found[$pkg]:-}" ] && continue
    for dir in "$@"; do
      if [ -e "$dir/${marker[$pkg]}" ]; then
        found[$pkg]=$dir
        break
      fi
    done
  done
}
[ ${#dirs[@]} -gt 0 ] && locate "${dirs[@]}"

# The pins of what no Python here has go to SITE, used only as it was made for exactly those pins
# (a stamp lists them).
needed=()
for pkg in $(printf '%s\n' "${!marker[@]}" | sort); do
  [ -n "${found[$pkg]:-}" ] && continue
  # shellcheck disable=SC2086 # the pins, split on white space
  pin=$(printf '%s\n' $CUDA12_PINS | grep "^$pkg==" || true)
  [ -n "$pin" ] || { echo "find_cuda12.sh: no $pkg found and no pin for it" >&2; exit 1; }
  needed+=("$pin")
done
if [ ${#needed[@]} -gt 0 ]; then
  stamp="$site/.pins"
  if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${needed[*]}" ]; }; then
    echo "find_cuda12.sh: installing ${needed[*]} with pip into $site" >&2
    rm -rf "$site"
    "$PIP_PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --no-compile --target "$site" "${needed[@]}" >&2
    printf '%s' "${needed[*]}" > "$stamp"
  fi
  locate "$(cd "$site" && pwd)"
  for pkg in "${!marker[@]}"; do
    [ -n "${found[$pkg]:-}" ] || { echo "find_cuda12.sh: $pkg has no ${marker[$pkg]}" >&2; exit 1; }
  done
fi

echo "nvrtc=${found[nvidia-cuda-nvrtc-cu12]}/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
echo "cudart=${found[nvidia-cuda-runtime-cu12]}/nvidia/cuda_runtime/lib/libcudart.so.12"
echo "inc=${found[nvidia-cuda-runtime-cu12]}/nvidia/cuda_runtime/include:${found[nvidia-cuda-nvcc-cu12]}/nvidia/cuda_nvcc/include:${found[nvidia-cuda-cccl-cu12]}/nvidia/cuda_cccl/include"
