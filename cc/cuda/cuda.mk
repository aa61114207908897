# The CUDA layer (cc/cuda/): make fragment, included at the end of the Makefile.
#
#   make gpu        builds build/cuda/libtf_rnn_ops_cuda.so (framework-free, C API in cc/cuda/c_api.h) and
#                   tf_rnn_ops/_tf_rnn_ops_gpu.so (the DEVICE_GPU kernels, loaded only where TF has a GPU)
#   make gpu-check  what CI runs, no GPU needed: builds both (sm_80, sm_90 + PTX), checks their
#                   dependencies (CUDA 12's libcudart.so.12 and libcublas.so.12 only, no build-folder run
#                   path), the NVRTC modules' kernels (tests/packaging/test_nvrtc_build.py) and that the
#                   GPU library loads into TensorFlow with the cu12 wheels (tests/packaging/test_loader.py,
#                   the built_* tests),
#                   builds the host emulation of the CUDA layer and runs its tests
#                   (tests/gpu/test_cuda_host_emulation.py, test_cuda_layer_norm_emulation.py, and, where
#                   PyTorch is installed, the GPU tests against its CPU modules and a dry run of the GPU
#                   benchmark), and the TensorFlow GPU kernels over that emulation inside TensorFlow
#                   against the CPU kernels (`make gpu-glue-emu`, tests/gpu/test_tf_glue_emulation.py)
#   make gpu-test   on a machine with a GPU: tests/gpu/run.sh (PyTorch/cuDNN comparisons and benchmark)
#
# Without TensorFlow or a venv (a GPU machine with only PyTorch), `make -f cc/cuda/cuda.mk gpu-lib` builds the
# framework-free library alone. cuBLAS (CUBLAS_MAJOR, 12: TensorFlow 2.21's) comes from the nvidia-cublas pip
# package in a Python's site-packages (TensorFlow's or PyTorch's), or is installed with pip into
# build/cuda12/site (cc/cuda/find_cublas.sh; CUBLAS_ROOT overrides).

BUILD      ?= build
PYTHON     ?= python3
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CXX        ?= g++
# How the device code is compiled (CUDA_COMPILER):
#  nvrtc  (the default for cuBLAS 12) CUDA 12 from pip, no nvcc: NVRTC 12 (nvidia-cuda-nvrtc-cu12) compiles
#         the kernels at build time to CUBIN per architecture + PTX, embedded in the library
#         (cc/cuda/nvrtc_build.py); g++ compiles the host code against the cu12 headers and links
#         libcudart.so.12 (nvidia-cuda-runtime-cu12) dynamically; the kernels are launched through the
#         driver API (cc/cuda/nvrtc_launch.h). Pins: the `gpu` extra; cc/cuda/find_cuda12.sh installs the
#         ones no Python here has into build/cuda12/nvrtc-site.
#  nvcc   the fallback (and CUBLAS_MAJOR=13's default, tests/gpu/run.sh with a CUDA 13 PyTorch): the toolkit
#         at CUDA_HOME (CUDA 13 here; NVIDIA ships no CUDA 12 nvcc on the package index:
#         nvidia-cuda-nvcc-cu12 holds ptxas, libnvvm and the crt headers only), its cudart linked statically.
CUDA_HOME  ?= /usr/local/cuda
NVCC       ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCHS ?= 80 90
# cuBLAS: TensorFlow 2.21's own (`tensorflow[and-cuda]` brings nvidia-cublas-cu12, libcublas.so.12), pinned
# in the `gpu` extra of pyproject.toml. The harness on a machine whose PyTorch brings cuBLAS 13 may build
# the framework-free library with CUBLAS_MAJOR=13 (tests/gpu/run.sh decides).
CUBLAS_MAJOR ?= 12
CUDA_COMPILER ?= $(if $(filter 12,$(CUBLAS_MAJOR)),nvrtc,nvcc)

CUDA_BUILD    := $(BUILD)/cuda
CUDA_LIB      := $(CUDA_BUILD)/libtf_rnn_ops_cuda.so
CUDA_EMU_LIB  := $(CUDA_BUILD)/emu/libtf_rnn_ops_cuda_emu.so
GPU_LIB       := tf_rnn_ops/_tf_rnn_ops_gpu.so
CUBLAS_ENV    := $(CUDA_BUILD)/cublas$(CUBLAS_MAJOR).env
# Where `make gpu` installs the pinned nvidia-cublas-cu12 wheel (pip --target) when no Python here has it.
CUDA12_SITE   := $(BUILD)/cuda12/site
CUDA_INFO_OBJ := $(CUDA_BUILD)/obj/gpu_build_info.o
# The NVRTC build: where find_cuda12.sh installs the pins no Python here has, what it found, the modules.
CUDA12_NVRTC_SITE := $(BUILD)/cuda12/nvrtc-site
CUDA12_ENV    := $(CUDA_BUILD)/cuda12.env
NVRTC_BUILD   := $(CUDA_BUILD)/nvrtc

CUDA_KERNEL_SRCS := cc/cuda/gru_block_cell_cuda.cu.cc cc/cuda/fused_rnn_cuda.cu.cc \
                    cc/cuda/fused_rnn_cuda_checks.cu.cc cc/cuda/convert_cuda.cu.cc
CUDA_KERNEL_SRCS += cc/cuda/layer_norm_rnn_cuda.cu.cc
CUDA_KERNEL_SRCS += cc/cuda/keras_rnn_dropout_cuda.cu.cc
CUDA_KERNEL_OBJS := $(patsubst cc/cuda/%.cu.cc,$(CUDA_BUILD)/obj/%.o,$(CUDA_KERNEL_SRCS))
CUDA_CAPI_OBJ    := $(CUDA_BUILD)/obj/c_api.o
NVRTC_LAUNCH_OBJ := $(CUDA_BUILD)/obj/nvrtc_launch.o
# The TensorFlow GPU kernels (the glue): beside the CPU kernels in cc/kernels/, named *_gpu.cc.
CUDA_GLUE_SRCS   := $(wildcard cc/kernels/*_gpu.cc)
CUDA_GLUE_OBJS   := $(patsubst cc/kernels/%.cc,$(CUDA_BUILD)/obj/glue/%.o,$(CUDA_GLUE_SRCS))
# Everything the framework-free library includes: cc/cuda/ and the framework-free headers it shares with
# the CPU kernels (the cells, the params layout, the fused family's rules).
CUDA_HEADERS     := $(wildcard cc/cuda/*.h) $(wildcard cc/cells/*.h) cc/kernels/rnn_params.h \
                    cc/kernels/fused_rnn_rules.h

# Python with pip for the cuBLAS install, and the Pythons whose site-packages may hold nvidia-cublas-cu12.
CUDA_PIP_PYTHON := $(if $(wildcard .venv/bin/python),.venv/bin/python,$(PYTHON))
CUDA_PYTHONS     = $(PY) $(wildcard .venv/bin/python) $(PYTHON)
# The pinned cuBLAS of the `gpu` extra (installed only for CUDA 12; a CUDA 13 one must be present).
CUBLAS_PIN = $(if $(filter 12,$(CUBLAS_MAJOR)),$(shell $(CUDA_PIP_PYTHON) tools/deps.py gpu 2>/dev/null | grep '^nvidia-cublas-cu12'))
# The NVRTC build's other pins (nvrtc, runtime, the crt and cccl headers), one a line.
CUDA12_PINS = $(shell $(CUDA_PIP_PYTHON) tools/deps.py gpu 2>/dev/null | grep '^nvidia-cuda-')

CUDA_WARN     := -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
CUDA_GENCODE  := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
                 -gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS))
# The compiler's CUDA version (e.g. 13.0): recorded in the library for the loader's driver check.
NVCC_VERSION   = $(shell $(NVCC) --version 2>/dev/null | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
NVRTC_VERSION  = $(shell $(CUDA_PIP_PYTHON) cc/cuda/nvrtc_build.py --print-version --nvrtc $(NVRTC_LIB))
# Read when a recipe runs, after $(CUBLAS_ENV) / $(CUDA12_ENV) are made.
CUBLAS_INC     = $(shell sed -n 's/^inc=//p' $(CUBLAS_ENV))
CUBLAS_LIB     = $(shell sed -n 's/^lib=//p' $(CUBLAS_ENV))
NVRTC_LIB      = $(shell sed -n 's/^nvrtc=//p' $(CUDA12_ENV))
CUDART12_LIB   = $(shell sed -n 's/^cudart=//p' $(CUDA12_ENV))
CUDA12_INC     = $(addprefix -isystem ,$(subst :, ,$(shell sed -n 's/^inc=//p' $(CUDA12_ENV))))
# --expt-relaxed-constexpr: the host code picks a cell template with the cells' constexpr
# __host__ __device__ DispatchCell (cc/cells/rnn_cells.h), whose lambdas are constexpr host functions.
NVCC_FLAGS     = -std=c++17 -O3 -I. -isystem $(CUBLAS_INC) $(CUDA_GENCODE) --expt-relaxed-constexpr \
                 -Xcompiler -fPIC -Xcompiler -fvisibility=hidden $(addprefix -Xcompiler ,$(CUDA_WARN)) \
                 $(NVCC_EXTRA_FLAGS)
ifeq ($(CUDA_COMPILER),nvrtc)
CUDA_INC_FLAGS  = -DTF_RNN_CUDA_NVRTC $(CUDA12_INC) -isystem $(CUBLAS_INC)
else
CUDA_INC_FLAGS  = -isystem $(CUDA_HOME)/include -isystem $(CUBLAS_INC)
endif
CUDA_HOST_FLAGS = -std=c++17 -O2 -fPIC -fvisibility=hidden $(CUDA_WARN) -I. $(CUDA_INC_FLAGS)
# cudart: static, from the compiler's own toolkit (its registration stubs and runtime belong together).
# cuBLAS: linked by file, so the library records only its soname (libcublas.so.12); no run path into
# this checkout. Loaded into TensorFlow, it gets the libcublas.so.12 that tf_rnn_ops/_loader.py loads
# first (site-packages/nvidia/cublas/lib, as TensorFlow finds it) or TensorFlow already loaded.
# The NVRTC build links CUDA 12's libcudart.so.12 by file instead (soname only, found at run time like
# cuBLAS) and no libcuda: the driver API comes from cudaGetDriverEntryPoint (cc/cuda/nvrtc_launch.h).
ifeq ($(CUDA_COMPILER),nvrtc)
CUDA_LINK      = $(CUDART12_LIB) -ldl -lpthread -lrt $(CUBLAS_LIB)
else
CUDA_LINK      = -L$(CUDA_HOME)/lib64 -l:libcudart_static.a -ldl -lpthread -lrt $(CUBLAS_LIB)
endif
# Installed next to nvidia-cublas-cu12 (and nvidia-cuda-runtime-cu12) in site-packages, the GPU library
# finds them as TensorFlow does.
GPU_LIB_RPATH  := $(if $(filter 12,$(CUBLAS_MAJOR)),$$ORIGIN/../nvidia/cublas/lib,$$ORIGIN/../nvidia/cu$(CUBLAS_MAJOR)/lib)$(if $(filter nvrtc,$(CUDA_COMPILER)),:$$ORIGIN/../nvidia/cuda_runtime/lib)
.PHONY: gpu gpu-lib gpu-emu gpu-glue-emu gpu-check gpu-test gpu-clean cuda-toolkit-present cuda-compiler-present

$(CUBLAS_ENV): cc/cuda/find_cublas.sh pyproject.toml
	@mkdir -p $(dir $@)
	CUDA_HOME=$(CUDA_HOME) PYTHONS="$(CUDA_PYTHONS)" PIP_PYTHON=$(CUDA_PIP_PYTHON) CUBLAS_PIN="$(CUBLAS_PIN)" \
	  bash cc/cuda/find_cublas.sh $(CUDA12_SITE) $(CUBLAS_MAJOR) > $@.tmp
	@# Rewritten only when it changes, so that the CUDA objects are not rebuilt for nothing.
	@cat $@.tmp; cmp -s $@.tmp $@ && rm $@.tmp || mv $@.tmp $@

# NVRTC=FILE CUDART=FILE CUDART_INC=DIR[:DIR...] name the compiler, runtime and headers by hand instead
# (e.g. another CUDA major version's, for the harness on a machine with only CUDA 13: cc/cuda/README.md).
# Made on every run (it is quick once all is found) and rewritten only when it changes.
$(CUDA12_ENV): cc/cuda/find_cuda12.sh pyproject.toml FORCE
	@mkdir -p $(dir $@)
ifneq ($(NVRTC),)
	@printf 'nvrtc=%s\ncudart=%s\ninc=%s\n' "$(NVRTC)" "$(CUDART)" "$(CUDART_INC)" > $@.tmp
else
	PYTHONS="$(CUDA_PYTHONS)" PIP_PYTHON=$(CUDA_PIP_PYTHON) CUDA12_PINS="$(CUDA12_PINS)" \
	  bash cc/cuda/find_cuda12.sh $(CUDA12_NVRTC_SITE) > $@.tmp
endif
	@cat $@.tmp; cmp -s $@.tmp $@ && rm $@.tmp || mv $@.tmp $@

ifeq ($(CUDA_COMPILER),nvrtc)
CUDA_ENVS := $(CUBLAS_ENV) $(CUDA12_ENV)
# 1. g++ compiles the .cu.cc for the host (-O0: only its symbols are read), 2. nvrtc_build.py lists the
# kernels it instantiates and compiles them with NVRTC into modules, written with the source into one
# generated file, 3. which g++ compiles into the library's object.
$(NVRTC_BUILD)/%.scan.o: cc/cuda/%.cu.cc $(CUDA_HEADERS) $(CUDA_ENVS)
	@mkdir -p $(dir $@)
	$(CXX) $(CUDA_HOST_FLAGS) -O0 -g0 -x c++ -c $< -o $@

$(NVRTC_BUILD)/%.nvrtc.cc: $(NVRTC_BUILD)/%.scan.o cc/cuda/nvrtc_build.py $(wildcard cc/cuda/nvrtc_include/*)
	$(CUDA_PIP_PYTHON) cc/cuda/nvrtc_build.py --nvrtc $(NVRTC_LIB) --source cc/cuda/$*.cu.cc --scan $< \
	  --out $(NVRTC_BUILD) $(addprefix --arch ,$(CUDA_ARCHS))

$(CUDA_BUILD)/obj/%.o: $(NVRTC_BUILD)/%.nvrtc.cc $(CUDA_HEADERS) $(CUDA_ENVS)
	@mkdir -p $(dir $@)
	$(CXX) $(CUDA_HOST_FLAGS) -O3 -c $< -o $@

# Kept (make would delete them as intermediates): the generated source is what the object is built from.
.PRECIOUS: $(NVRTC_BUILD)/%.scan.o $(NVRTC_BUILD)/%.nvrtc.cc

$(NVRTC_LAUNCH_OBJ): cc/cuda/nvrtc_launch.cc cc/cuda/nvrtc_launch.h $(CUDA_ENVS)
	@mkdir -p $(dir $@)
	$(CXX) $(CUDA_HOST_FLAGS) -c $< -o $@
CUDA_RUNTIME_OBJS := $(NVRTC_LAUNCH_OBJ)
else
CUDA_ENVS := $(CUBLAS_ENV)
$(CUDA_BUILD)/obj/%.o: cc/cuda/%.cu.cc $(CUDA_HEADERS) $(CUDA_ENVS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -x cu -c $< -o $@
CUDA_RUNTIME_OBJS :=
endif
# Which build the objects are (a switch rebuilds them).
$(CUDA_BUILD)/compiler: FORCE
	@mkdir -p $(dir $@)
	@echo $(CUDA_COMPILER) | cmp -s - $@ 2>/dev/null || echo $(CUDA_COMPILER) > $@
$(CUDA_KERNEL_OBJS) $(CUDA_CAPI_OBJ) $(NVRTC_LAUNCH_OBJ): $(CUDA_BUILD)/compiler

$(CUDA_CAPI_OBJ): cc/cuda/c_api.cc $(CUDA_HEADERS) $(CUDA_ENVS)
	@mkdir -p $(dir $@)
	$(CXX) $(CUDA_HOST_FLAGS) -c $< -o $@

# What the library is built with, as a string in it that tf_rnn_ops/_loader.py reads from the file without
# loading it (cc/cuda/README.md, "Loading the glue"); rewritten only when it changes.
CUDA_BUILD_INFO = {"cuda": "$(if $(filter nvrtc,$(CUDA_COMPILER)),$(NVRTC_VERSION),$(NVCC_VERSION))", \
                   "sass": [$(subst $() $(),$(,),$(strip $(CUDA_ARCHS)))], \
                   "ptx": $(lastword $(CUDA_ARCHS)), "cublas": "libcublas.so.$(CUBLAS_MAJOR)", \
                   "compiler": "$(CUDA_COMPILER)"$(if $(filter nvrtc,$(CUDA_COMPILER)),$(,) "cudart": "$(notdir $(CUDART12_LIB))")}
, := ,
$(CUDA_BUILD)/gpu_build_info.cc: FORCE $(CUDA_ENVS)
	@mkdir -p $(dir $@)
	@printf '%s\n' 'extern const char tfrnn_gpu_build_info[] __attribute__((used)) =' \
	  '    "TFRNN_GPU_BUILD_INFO$(subst ",\",$(CUDA_BUILD_INFO))";' > $@.tmp
	@cmp -s $@.tmp $@ 2>/dev/null && rm $@.tmp || mv $@.tmp $@
FORCE:

$(CUDA_INFO_OBJ): $(CUDA_BUILD)/gpu_build_info.cc
	@mkdir -p $(dir $@)
	$(CXX) -fPIC -c $< -o $@

$(CUDA_LIB): $(CUDA_KERNEL_OBJS) $(CUDA_CAPI_OBJ) $(CUDA_RUNTIME_OBJS) $(CUDA_INFO_OBJ)
	$(CXX) -shared -o $@ $^ -Wl,--no-undefined $(CUDA_LINK)

# The TensorFlow glue: TensorFlow's headers (from the Makefile's tf_flags.mk) with GOOGLE_CUDA and Eigen's GPU
# device (EIGEN_USE_GPU, here for every glue file: it must precede every Eigen header), compiled by the host
# compiler; linked with the CUDA objects into its own library.
$(CUDA_GLUE_OBJS): $(CUDA_BUILD)/obj/glue/%.o: cc/kernels/%.cc $(CUDA_HEADERS) $(wildcard cc/kernels/*.h) \
                   $(BUILD)/tf_flags.mk $(BUILD)/cxxflags $(CUDA_ENVS) $(CUDA_BUILD)/compiler
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -DGOOGLE_CUDA=1 -DEIGEN_USE_GPU $(CUDA_INC_FLAGS) -c $< -o $@

$(GPU_LIB): $(CUDA_GLUE_OBJS) $(CUDA_KERNEL_OBJS) $(CUDA_RUNTIME_OBJS) $(CUDA_INFO_OBJ)
	$(CXX) -o $@ $(CUDA_GLUE_OBJS) $(CUDA_KERNEL_OBJS) $(CUDA_RUNTIME_OBJS) $(CUDA_INFO_OBJ) $(LDFLAGS_LIB) \
	  $(CUDA_LINK) -Wl,-rpath,'$(GPU_LIB_RPATH)'

# The host emulation (cc/cuda/cuda_compat.h): the same sources by the host compiler, for tests without a GPU.
$(CUDA_EMU_LIB): $(CUDA_KERNEL_SRCS) cc/cuda/c_api.cc $(CUDA_HEADERS)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O2 -fPIC -shared $(CUDA_WARN) -I. -DTF_RNN_CUDA_HOST_EMULATION \
	  -o $@ -x c++ $(CUDA_KERNEL_SRCS) cc/cuda/c_api.cc

# The TensorFlow glue over the host emulation, for tests without a GPU: the glue's sources and the CUDA
# library's by the host compiler with TF_RNN_CUDA_HOST_EMULATION; its kernels register on the CPU under a
# kernel label beside the CPU kernels of the same ops (cc/kernels/kernel_util_gpu.h), and
# tests/gpu/test_tf_glue_emulation.py runs them inside TensorFlow against the CPU kernels.
GLUE_EMU_LIB  := $(CUDA_BUILD)/emu/_tf_rnn_ops_glue_emu.so
GLUE_EMU_OBJS := $(patsubst cc/kernels/%.cc,$(CUDA_BUILD)/emu/glue/%.o,$(CUDA_GLUE_SRCS)) \
                 $(patsubst cc/cuda/%.cu.cc,$(CUDA_BUILD)/emu/glue/%.o,$(CUDA_KERNEL_SRCS))
GLUE_EMU_DEPS := $(CUDA_HEADERS) $(wildcard cc/kernels/*.h) $(BUILD)/tf_flags.mk $(BUILD)/cxxflags
$(CUDA_BUILD)/emu/glue/%.o: cc/kernels/%.cc $(GLUE_EMU_DEPS)
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -DTF_RNN_CUDA_HOST_EMULATION -c $< -o $@
$(CUDA_BUILD)/emu/glue/%.o: cc/cuda/%.cu.cc $(GLUE_EMU_DEPS)
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -DTF_RNN_CUDA_HOST_EMULATION -x c++ -c $< -o $@
$(GLUE_EMU_LIB): $(GLUE_EMU_OBJS)
	$(CXX) -o $@ $^ $(LDFLAGS_LIB)

gpu-lib: $(CUDA_LIB) ## the framework-free CUDA library alone (build/cuda/libtf_rnn_ops_cuda.so)

gpu-glue-emu: $(STAMP) $(BUILD)/tf_flags.mk ## the TensorFlow GPU kernels over the host emulation (no GPU needed)
	$(MAKE) -j$(JOBS) $(GLUE_EMU_LIB)

gpu-emu: $(CUDA_EMU_LIB) ## the host emulation of the CUDA layer (no GPU, no nvcc needed)

cuda-toolkit-present: ## fail with a message unless nvcc is at CUDA_HOME
	@command -v $(NVCC) >/dev/null || { echo "no nvcc at $(NVCC): install the CUDA toolkit or set CUDA_HOME" >&2; exit 1; }

# The NVRTC build needs no toolkit (its compiler comes from pip); the nvcc one needs nvcc.
cuda-compiler-present: ## fail with a message unless CUDA_COMPILER is nvrtc, or nvcc with the toolkit present
	@case "$(CUDA_COMPILER)" in nvrtc) ;; nvcc) $(MAKE) --no-print-directory cuda-toolkit-present ;; \
	  *) echo "CUDA_COMPILER=$(CUDA_COMPILER): nvrtc or nvcc" >&2; exit 1 ;; esac

gpu: cuda-compiler-present $(if $(NO_VENV),,$(STAMP)) $(BUILD)/tf_flags.mk ## the CUDA library and tf_rnn_ops/_tf_rnn_ops_gpu.so (CUDA_COMPILER=nvrtc|nvcc)
	$(MAKE) -j$(JOBS) $(CUDA_LIB) $(GPU_LIB)

gpu-check: cuda-compiler-present $(STAMP) $(BUILD)/tf_flags.mk ## CI, no GPU: build (NVRTC, CUDA 12 from pip), check the libraries, host-emulation tests
	$(MAKE) -j$(JOBS) $(CUDA_LIB) $(GPU_LIB) $(CUDA_EMU_LIB) $(GLUE_EMU_LIB)
	@nm -D --defined-only $(CUDA_LIB) | grep -q ' T tfrnn_rnn_backward$$' || { echo "C API missing" >&2; exit 1; }
	@# cc/cuda/ is framework-free: no TensorFlow, TSL, Abseil or Eigen header in any of its files.
	@! grep -nE '^#include +"(tensorflow|tsl|absl|Eigen|unsupported/Eigen)/' cc/cuda/*.h cc/cuda/*.cc \
	  || { echo "cc/cuda/ must not include TensorFlow (its glue lives in cc/kernels/*_gpu.cc)" >&2; exit 1; }
	@# The built libraries: NEEDED only libcublas.so.12 (+ libtensorflow_framework.so.2 and the system's), no
	@# run path into a build folder, and the GPU library loads into TensorFlow with nvidia-cublas-cu12.
	TF_RNN_OPS_GPU_LIB_REQUIRED=1 $(PY) -m pytest -q -p no:cacheprovider tests/packaging/test_loader.py -k "built_library or built_cuda_library"
	@# The NVRTC modules: every kernel the host code launches is in every image (SASS and PTX), the
	@# libraries register them, and a launch with a wrong argument type does not compile.
	TF_RNN_OPS_GPU_LIB_REQUIRED=1 $(PY) -m pytest -q -p no:cacheprovider tests/packaging/test_nvrtc_build.py
	$(PY) -m pytest -q -p no:cacheprovider tests/gpu/test_cuda_host_emulation.py
	$(PY) -m pytest -q -p no:cacheprovider tests/gpu/test_cuda_layer_norm_emulation.py
	$(PY) -m pytest -q -p no:cacheprovider tests/gpu/test_cuda_keras_rnn_dropout_emulation.py
	@# The TensorFlow GPU kernels themselves, inside TensorFlow over the host emulation, against the CPU kernels.
	TF_RNN_OPS_GPU_LIB_REQUIRED=1 $(PY) -m pytest -q -p no:cacheprovider tests/gpu/test_tf_glue_emulation.py
	$(PY) tests/gpu/bench_gpu_keras_dropout.py --dry-run >/dev/null && echo "bench_gpu_keras_dropout.py --dry-run: ok"
	$(PY) tests/gpu/bench_gpu_layer_norm.py --dry-run >/dev/null && echo "bench_gpu_layer_norm.py --dry-run: ok"
	@# The GPU tests' dry run on PyTorch's CPU modules, where PyTorch is installed.
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "TF_RNN_OPS_GPU_HARNESS=emulation pytest tests/gpu/test_gpu_*.py"; \
	  TF_RNN_OPS_GPU_HARNESS=emulation $(PY) -m pytest -q -p no:cacheprovider -k "not float32" \
	    tests/gpu/test_gpu_gru_block_cell.py tests/gpu/test_gpu_fused_rnn.py tests/gpu/test_gpu_convert.py \
	    tests/gpu/test_gpu_layer_norm_rnn.py tests/gpu/test_gpu_keras_rnn_dropout.py && \
	  TF_RNN_OPS_GPU_HARNESS=emulation $(PY) tests/gpu/bench_gpu.py --dry-run --layers 2 >/dev/null && \
	  echo "bench_gpu.py --dry-run: ok"; \
	else echo "PyTorch not installed: no dry run of the GPU tests"; fi

gpu-test: ## on a GPU machine: tests/gpu/run.sh (PyTorch/cuDNN comparisons and benchmark)
	bash tests/gpu/run.sh

gpu-clean: ## remove build/cuda and the GPU library
	rm -rf $(CUDA_BUILD) $(GPU_LIB)
