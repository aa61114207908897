#!/usr/bin/env bash
# Finds cuBLAS of one CUDA major version (headers and libcublas.so.MAJOR) for the CUDA layer and prints
#   inc=DIR   the directory of cublas_v2.h
#   lib=FILE  libcublas.so.MAJOR (linked by path: the library records only its soname)
#
# Looks, in order, at $CUBLAS_ROOT, the NVIDIA pip packages in the site-packages of the Pythons in $PYTHONS
# (where `pip install tensorflow[and-cuda]` puts CUDA 12's nvidia-cublas-cu12: nvidia/cublas; PyTorch's
# CUDA 13 builds use nvidia/cu13), and SITE (the first argument, a pip --target folder). Failing all, and
# only when $CUBLAS_PIN is set, it installs $CUBLAS_PIN there with `pip install --target` by $PIP_PYTHON:
# the whole wheel, so that its libcublasLt.so.MAJOR is there too and the built library can be loaded.
# A CUDA toolkit's own cuBLAS ($CUDA_HOME) is used only when CUBLAS_FROM_CUDA_HOME=1: it is the one
# TensorFlow and PyTorch do not load.
set -euo pipefail

site=${1:?usage: find_cublas.sh SITE MAJOR}
major=${2:?usage: find_cublas.sh SITE MAJOR}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
PYTHONS=${PYTHONS:-python3}
PIP_PYTHON=${PIP_PYTHON:-python3}
CUBLAS_PIN=${CUBLAS_PIN:-}

# try ROOT: prints inc= / lib= and exits when ROOT has include/cublas_v2.h and libcublas.so.MAJOR.
try() {
  local root=$1 inc d
  for inc in "$root/include" "$root/targets/x86_64-linux/include"; do
    [ -f "$inc/cublas_v2.h" ] || continue
    for d in "$root/lib" "$root/lib64" "$root/targets/x86_64-linux/lib"; do
      if [ -f "$d/libcublas.so.$major" ]; then
        echo "inc=$(cd "$inc" && pwd)"
        echo "lib=$(cd "$d" && pwd)/libcublas.so.$major"
        exit 0
      fi
    done
  done
}

# The pip packages' layouts: nvidia-cublas-cu12 (nvidia/cublas), nvidia-cublas 13 (nvidia/cu13).
try_site() {
  try "$1/nvidia/cublas"
  try "$1/nvidia/cu$major"
}

[ -n "${CUBLAS_ROOT:-}" ] && try "$CUBLAS_ROOT"
[ "${CUBLAS_FROM_CUDA_HOME:-0}" = 1 ] && try "$CUDA_HOME"
for py in $PYTHONS; do
  command -v "$py" >/dev/null 2>&1 || [ -x "$py" ] || continue
  for dir in $("$py" -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null); do
    [ -d "$dir/nvidia" ] && try_site "$dir"
  done
done
# SITE holds the pinned version or is installed anew (the pin may have changed since).
if [ -n "$CUBLAS_PIN" ] && [ -d "$site" ]; then
  want="$(echo "${CUBLAS_PIN%%==*}" | tr - _)-${CUBLAS_PIN##*==}.dist-info"
  [ -d "$site/$want" ] || { echo "find_cublas.sh: $site is not $CUBLAS_PIN: reinstalling" >&2; rm -rf "$site"; }
fi
try_site "$site"

if [ -z "$CUBLAS_PIN" ]; then
  echo "find_cublas.sh: no cuBLAS $major (libcublas.so.$major and its headers) found; set CUBLAS_ROOT" >&2
  exit 1
fi
echo "find_cublas.sh: no cuBLAS $major found; installing $CUBLAS_PIN with pip into $site" >&2
rm -rf "$site"
"$PIP_PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --no-compile --target "$site" "$CUBLAS_PIN" >&2
try_site "$site"
echo "find_cublas.sh: the installed $CUBLAS_PIN has no cublas_v2.h / libcublas.so.$major" >&2
exit 1
