# tf_rnn_ops: every entry point. `make demo` and `make test` work on a fresh machine: they create
# .venv, install the pinned dependencies from pyproject.toml and compile the op library first.

PYTHON ?= python3
VENV   := .venv
# PY may name another Python that has tensorflow-cpu (setup.py builds with the installing Python and
# NO_VENV=1); by default everything runs in the project's own .venv.
PY     ?= $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
BUILD  := build
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

LIB          := tf_rnn_ops/_tf_rnn_ops.so
TF_CUDNN_LIB := tf_rnn_ops/_tf_cudnn_cpu_kernels.so
# The same two libraries compiled for x86-64-v4 (AVX-512 F/BW/CD/DQ/VL): tf_rnn_ops/_loader.py loads
# them instead where the CPU has all five (and TF_RNN_OPS_NO_AVX512 is unset, empty or "0"), so that
# the cells' element-wise passes (Eigen's packets) run 16 floats wide too, not only the products
# (packed_gemm.h chooses its AVX-512 kernels at run time in either build). docs/ARCHITECTURE.md.
LIB_AVX512          := tf_rnn_ops/_tf_rnn_ops_avx512.so
TF_CUDNN_LIB_AVX512 := tf_rnn_ops/_tf_cudnn_cpu_kernels_avx512.so
BUILD_INFO   := tf_rnn_ops/_build_info.json

# Sources of the main library: op registrations and CPU kernels (the GPU kernels, cc/kernels/*_gpu.cc,
# go into the GPU library: cc/cuda/cuda.mk).
LIB_SRCS := $(wildcard cc/ops/*.cc) $(filter-out %_gpu.cc,$(wildcard cc/kernels/*.cc))
LIB_OBJS := $(patsubst %.cc,$(BUILD)/obj/%.o,$(LIB_SRCS))
LIB_OBJS_AVX512 := $(patsubst %.cc,$(BUILD)/obj-avx512/%.o,$(LIB_SRCS))
# CPU kernels for TensorFlow's own CudnnRNN* ops: a library of its own, loaded only where TensorFlow
# has no CPU kernel for them (see tf_rnn_ops/_loader.py).
TF_CUDNN_SRCS := $(wildcard cc/tf_cudnn/*.cc)
TF_CUDNN_OBJS := $(patsubst %.cc,$(BUILD)/obj/%.o,$(TF_CUDNN_SRCS))
TF_CUDNN_OBJS_AVX512 := $(patsubst %.cc,$(BUILD)/obj-avx512/%.o,$(TF_CUDNN_SRCS))

CXX      ?= g++
# -DNDEBUG as TensorFlow's own build and Bazel's -c opt (Eigen's asserts and TF's DCHECKs off); make asan
# keeps them on.
CXXFLAGS ?= -O3 -DNDEBUG -march=x86-64-v3 -mtune=generic
WARN     := -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
# TensorFlow's own headers are included as system headers so that -Wall speaks only of our files.
TF_SYS_CFLAGS = $(patsubst -I%,-isystem %,$(TF_CFLAGS))
ALL_CXXFLAGS = -std=c++17 -fPIC -fvisibility=hidden -fvisibility-inlines-hidden $(CXXFLAGS) $(WARN) \
               $(TF_SYS_CFLAGS) -I. -MMD -MP $(EXTRA_CXXFLAGS)
# The x86-64-v4 objects: the same command with a later -march. GCC 12 warns from its own
# avx512fintrin.h (the `__Y = __Y` of `_mm512_undefined_*`, GCC bug 105593) wherever Eigen's packets
# inline it; the x86-64-v3 objects, the same sources, keep both warnings on for our code.
ALL_CXXFLAGS_AVX512 = $(ALL_CXXFLAGS) -march=x86-64-v4 -Wno-uninitialized -Wno-maybe-uninitialized
LDFLAGS_LIB = -shared -Wl,--no-undefined -Wl,-z,defs $(TF_LFLAGS) $(EXTRA_LDFLAGS)

.PHONY: all venv build lib wheel test test-slow test-wheel test-wheel-tensorflow test-multiworker \
        demo demo-multiworker bench lint format clean distclean help FORCE

all: build ## the default: same as `make build`

# The make files of this project: this one and the fragments included at its end. `make help` reads
# each target's description from the `## ` comment on its rule line, so the list cannot drift from the
# targets (tests/packaging/test_make_help.py checks that every .PHONY target has one).
MAKE_FILES := Makefile cc/cuda/cuda.mk bazel.mk tools/hardening.mk

help: ## this list: every target with its one-line description
	@awk -F':[^#]*## ' '/^[A-Za-z0-9][A-Za-z0-9_.-]*:[^=]*## / {printf "make %-22s %s\n", $$1, $$2}' \
	  $(MAKE_FILES)

# ---------------------------------------------------------------- environment
$(STAMP): pyproject.toml tools/deps.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $$($(PYTHON) tools/deps.py cpu test)
	touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies of pyproject.toml (`cpu`, `test`)

# Compiler and linker flags from tf.sysconfig of the installed TensorFlow (C++17, CXX11 ABI).
$(BUILD)/tf_flags.mk: $(if $(NO_VENV),,$(STAMP)) tools/tf_flags.py
	@mkdir -p $(BUILD)
	$(PY) tools/tf_flags.py $(BUILD_INFO) > $@.tmp && mv $@.tmp $@

# Made by the rule above before anything else is read (make remakes an included file first); goals
# that need no TensorFlow do not include it, so they neither create .venv nor import TensorFlow.
ifneq ($(filter-out clean distclean help venv lint format,$(or $(MAKECMDGOALS),all)),)
include $(BUILD)/tf_flags.mk
endif

# ---------------------------------------------------------------- C++
# The compile command, rewritten only when it changes: objects are rebuilt when the flags change
# (TensorFlow's include path among them), not each time tf_flags.mk is written anew with the same.
# Each build's flags (target- and pattern-specific COMPILE_FLAGS): x86-64-v3 in obj/, v4 in
# obj-avx512/.
$(BUILD)/cxxflags $(BUILD)/obj/%.o: COMPILE_FLAGS = $(ALL_CXXFLAGS)
$(BUILD)/cxxflags-avx512 $(BUILD)/obj-avx512/%.o: COMPILE_FLAGS = $(ALL_CXXFLAGS_AVX512)

$(BUILD)/cxxflags $(BUILD)/cxxflags-avx512: FORCE $(BUILD)/tf_flags.mk
	@mkdir -p $(dir $@)
	@echo '$(CXX) $(COMPILE_FLAGS)' | cmp -s - $@ 2>/dev/null || echo '$(CXX) $(COMPILE_FLAGS)' > $@
FORCE:

$(BUILD)/obj/%.o: %.cc $(BUILD)/cxxflags | $(BUILD)/tf_flags.mk
	@mkdir -p $(dir $@)
	$(CXX) $(COMPILE_FLAGS) -c $< -o $@

$(BUILD)/obj-avx512/%.o: %.cc $(BUILD)/cxxflags-avx512 | $(BUILD)/tf_flags.mk
	@mkdir -p $(dir $@)
	$(CXX) $(COMPILE_FLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
$(TF_CUDNN_LIB): $(TF_CUDNN_OBJS)
$(LIB_AVX512): $(LIB_OBJS_AVX512)
$(TF_CUDNN_LIB_AVX512): $(TF_CUDNN_OBJS_AVX512)
$(LIB) $(TF_CUDNN_LIB) $(LIB_AVX512) $(TF_CUDNN_LIB_AVX512):
	$(CXX) -o $@ $^ $(LDFLAGS_LIB)

# The header dependencies the compiler wrote (-MMD): silent, since they exist only after a first build.
-include $(LIB_OBJS:.o=.d) $(TF_CUDNN_OBJS:.o=.d) $(LIB_OBJS_AVX512:.o=.d) $(TF_CUDNN_OBJS_AVX512:.o=.d)

ALL_LIBS = $(LIB) $(TF_CUDNN_LIB) $(LIB_AVX512) $(TF_CUDNN_LIB_AVX512)

build: $(STAMP) $(BUILD)/tf_flags.mk ## compile the op libraries into tf_rnn_ops/ (creates .venv first)
	$(MAKE) -j$(JOBS) $(ALL_LIBS)

# The libraries alone, for a Python given as PY (used by setup.py with NO_VENV=1).
lib: $(BUILD)/tf_flags.mk ## the op libraries alone, with the Python given as PY (setup.py: NO_VENV=1)
	$(MAKE) -j$(JOBS) $(ALL_LIBS)

# ---------------------------------------------------------------- wheel
# The wheel, built by setup.py with .venv's TensorFlow: it links the objects `make build` compiled
# and tags the wheel with the manylinux level the libraries need (tools/platform_tag.py).
WHEEL_DIR := dist
wheel: build ## dist/tf_rnn_ops-*.whl with the compiled libraries
	rm -f $(WHEEL_DIR)/tf_rnn_ops-*.whl
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-build-isolation --no-deps \
	    -w $(WHEEL_DIR) .
	@ls $(WHEEL_DIR)/tf_rnn_ops-*.whl

# The wheel installed with pip in a fresh venv beside tensorflow-cpu (or, for test-wheel-tensorflow,
# TensorFlow's GPU build `tensorflow`), then used from outside the source tree
# (tests/packaging/test_wheel.py).
test-wheel: wheel ## install the wheel in a fresh venv beside tensorflow-cpu and test it there
	TF_RNN_OPS_WHEEL_DIR=$(WHEEL_DIR) $(PY) -m pytest -q -m "wheel and not tensorflow_gpu_build" \
	    tests/packaging/test_wheel.py $(PYTEST_ARGS)

test-wheel-tensorflow: wheel ## the same over TensorFlow's GPU build `tensorflow` (downloads ~570 MB)
	TF_RNN_OPS_WHEEL_DIR=$(WHEEL_DIR) $(PY) -m pytest -q -m tensorflow_gpu_build \
	    tests/packaging/test_wheel.py $(PYTEST_ARGS)

# ---------------------------------------------------------------- entry points
# Every folder of tests/ (tests/README.md); PYTEST_ARGS reach pytest (e.g. PYTEST_ARGS=tests/ops).
test: build ## the test suite without the slow and wheel tests (CI's first step)
	$(PY) -m pytest -q -m "not slow and not wheel" tests $(PYTEST_ARGS)

test-slow: build ## the tests marked slow
	$(PY) -m pytest -q -m "slow and not wheel" tests $(PYTEST_ARGS)

# 2 worker processes on localhost train with MultiWorkerMirroredStrategy (a slow test: CI runs it).
test-multiworker: build ## 2 worker processes: their weights equal one process on the global batch
	$(PY) -m pytest -q tests/packaging/test_multiworker.py $(PYTEST_ARGS)

# The main job: the GRU block cell learns the adding problem, then a bidirectional 2-layer model on
# the fused op learns a masked variable-length task; each is exported and served by a fresh process.
demo: build ## train, export and serve the GRU block cell and a 2-layer fused model
	$(PY) python/demo_gru_block_cell.py
	$(PY) python/demo.py $(DEMO_ARGS)

# Data-parallel training on 2 worker processes (MultiWorkerMirroredStrategy), checked against one.
demo-multiworker: build ## 2 worker processes train with MultiWorkerMirroredStrategy
	$(PY) python/demo_multiworker.py $(DEMO_ARGS)

bench: build ## speed against Keras, PyTorch and TensorFlow's kernels (installs the `bench` extra)
	$(PY) -m pip install --quiet --disable-pip-version-check $$($(PY) tools/deps.py bench)
	$(PY) python/bench.py $(BENCH_ARGS)
	$(PY) python/bench_xla.py
	$(PY) python/bench_layer_norm.py
	$(PY) python/bench_cells20.py
	$(PY) python/bench_short_train.py

# C++: one style, .clang-format (Google's, 100 columns), with the clang-format pinned in pyproject.toml.
CLANG_FORMAT ?= $(VENV)/bin/clang-format
CXX_FORMAT_FILES = $(shell find cc -name '*.h' -o -name '*.cc' | sort)

lint: $(STAMP) ## ruff (check and format) over the Python, clang-format --dry-run over cc/
	$(PY) -m ruff check tf_rnn_ops python tests tools
	$(PY) -m ruff format --check tf_rnn_ops python tests tools
	$(CLANG_FORMAT) --dry-run --Werror $(CXX_FORMAT_FILES)

format: $(STAMP) ## rewrite the C++ of cc/ with clang-format and the Python with ruff format
	$(CLANG_FORMAT) -i $(CXX_FORMAT_FILES)
	$(PY) -m ruff format tf_rnn_ops python tests tools

clean: ## remove the build folder, the compiled libraries and dist/
	rm -rf $(BUILD) tf_rnn_ops/*.so $(BUILD_INFO) $(WHEEL_DIR) tf_rnn_ops.egg-info

distclean: clean ## clean, and remove .venv
	rm -rf $(VENV)

# The fragments, each with its own targets (listed by `make help`): the CUDA layer, the Bazel build,
# the hardening runs. `include`, not `-include`: a missing fragment is an error, not a silent loss of
# targets.
include cc/cuda/cuda.mk
include bazel.mk
include tools/hardening.mk
