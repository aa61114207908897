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
BUILD_INFO   := tf_rnn_ops/_build_info.json

# Sources of the main library: op registrations and CPU kernels (the GPU kernels, cc/kernels/*_gpu.cc,
# go into the GPU library: cc/cuda/cuda.mk).
LIB_SRCS := $(wildcard cc/ops/*.cc) $(filter-out %_gpu.cc,$(wildcard cc/kernels/*.cc))
LIB_OBJS := $(patsubst %.cc,$(BUILD)/obj/%.o,$(LIB_SRCS))
# CPU kernels for TensorFlow's own CudnnRNN* ops: a library of its own, loaded only where TensorFlow
# has no CPU kernel for them (see tf_rnn_ops/_loader.py).
TF_CUDNN_SRCS := $(wildcard cc/tf_cudnn/*.cc)
TF_CUDNN_OBJS := $(patsubst %.cc,$(BUILD)/obj/%.o,$(TF_CUDNN_SRCS))

CXX      ?= g++
# -DNDEBUG as TensorFlow's own build and Bazel's -c opt (Eigen's asserts and TF's DCHECKs off); make asan
# keeps them on.
CXXFLAGS ?= -O3 -DNDEBUG -march=x86-64-v3 -mtune=generic
WARN     := -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
# TensorFlow's own headers are included as system headers so that -Wall speaks only of our files.
TF_SYS_CFLAGS = $(patsubst -I%,-isystem %,$(TF_CFLAGS))
ALL_CXXFLAGS = -std=c++17 -fPIC -fvisibility=hidden -fvisibility-inlines-hidden $(CXXFLAGS) $(WARN) \
               $(TF_SYS_CFLAGS) -I. -MMD -MP $(EXTRA_CXXFLAGS)
LDFLAGS_LIB = -shared -Wl,--no-undefined -Wl,-z,defs $(TF_LFLAGS) $(EXTRA_LDFLAGS)

.PHONY: all venv build lib wheel test test-slow test-wheel test-wheel-tensorflow test-multiworker \
        demo demo-multiworker bench lint clean distclean help FORCE

all: build

help:
	@echo "make demo | test | build | bench | test-slow | lint | clean"
	@echo "make wheel                  dist/tf_rnn_ops-*.whl with the compiled libraries"
	@echo "make test-wheel             install the wheel in a fresh venv with tensorflow-cpu, run it there"
	@echo "make test-wheel-tensorflow  the same over TensorFlow's GPU build (downloads ~570 MB)"
	@echo "make demo-multiworker       2 worker processes train with MultiWorkerMirroredStrategy"
	@echo "make test-multiworker       its test: the workers' weights = one process on the global batch"

# ---------------------------------------------------------------- environment
$(STAMP): pyproject.toml tools/deps.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $$($(PYTHON) tools/deps.py cpu test)
	touch $@

venv: $(STAMP)

# Compiler and linker flags from tf.sysconfig of the installed TensorFlow (C++17, CXX11 ABI).
$(BUILD)/tf_flags.mk: $(if $(NO_VENV),,$(STAMP)) tools/tf_flags.py
	@mkdir -p $(BUILD)
	$(PY) tools/tf_flags.py $(BUILD_INFO) > $@.tmp && mv $@.tmp $@

ifneq ($(filter-out clean distclean help venv lint,$(or $(MAKECMDGOALS),all)),)
-include $(BUILD)/tf_flags.mk
endif

# ---------------------------------------------------------------- C++
# The compile command, rewritten only when it changes: objects are rebuilt when the flags change
# (TensorFlow's include path among them), not each time tf_flags.mk is written anew with the same.
$(BUILD)/cxxflags: FORCE $(BUILD)/tf_flags.mk
	@mkdir -p $(dir $@)
	@echo '$(CXX) $(ALL_CXXFLAGS)' | cmp -s - $@ 2>/dev/null || echo '$(CXX) $(ALL_CXXFLAGS)' > $@
FORCE:

$(BUILD)/obj/%.o: %.cc $(BUILD)/cxxflags | $(BUILD)/tf_flags.mk
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	$(CXX) -o $@ $(LIB_OBJS) $(LDFLAGS_LIB)

$(TF_CUDNN_LIB): $(TF_CUDNN_OBJS)
	$(CXX) -o $@ $(TF_CUDNN_OBJS) $(LDFLAGS_LIB)

-include $(LIB_OBJS:.o=.d) $(TF_CUDNN_OBJS:.o=.d)

build: $(STAMP) $(BUILD)/tf_flags.mk
	$(MAKE) -j$(JOBS) $(LIB) $(TF_CUDNN_LIB)

# The libraries alone, for a Python given as PY (used by setup.py with NO_VENV=1).
lib: $(BUILD)/tf_flags.mk
	$(MAKE) -j$(JOBS) $(LIB) $(TF_CUDNN_LIB)

# ---------------------------------------------------------------- wheel
# The wheel, built by setup.py with .venv's TensorFlow: it links the objects `make build` compiled
# and tags the wheel with the manylinux level the libraries need (tools/platform_tag.py).
WHEEL_DIR := dist
wheel: build
	rm -f $(WHEEL_DIR)/tf_rnn_ops-*.whl
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-build-isolation --no-deps \
	    -w $(WHEEL_DIR) .
	@ls $(WHEEL_DIR)/tf_rnn_ops-*.whl

# The wheel installed with pip in a fresh venv beside tensorflow-cpu (or, for test-wheel-tensorflow,
# TensorFlow's GPU build `tensorflow`), then used from outside the source tree (tests/test_wheel.py).
test-wheel: wheel
	TF_RNN_OPS_WHEEL_DIR=$(WHEEL_DIR) $(PY) -m pytest -q -m "wheel and not tensorflow_gpu_build" \
	    tests/test_wheel.py $(PYTEST_ARGS)

test-wheel-tensorflow: wheel
	TF_RNN_OPS_WHEEL_DIR=$(WHEEL_DIR) $(PY) -m pytest -q -m tensorflow_gpu_build \
	    tests/test_wheel.py $(PYTEST_ARGS)

# ---------------------------------------------------------------- entry points
test: build
	$(PY) -m pytest -q -m "not slow and not wheel" tests $(PYTEST_ARGS)

test-slow: build
	$(PY) -m pytest -q -m "slow and not wheel" tests $(PYTEST_ARGS)

# 2 worker processes on localhost train with MultiWorkerMirroredStrategy (a slow test: CI runs it).
test-multiworker: build
	$(PY) -m pytest -q tests/test_multiworker.py $(PYTEST_ARGS)

# The main job: the GRU block cell learns the adding problem, then a bidirectional 2-layer model on
# the fused op learns a masked variable-length task; each is exported and served by a fresh process.
demo: build
	$(PY) python/demo_gru_block_cell.py
	$(PY) python/demo.py $(DEMO_ARGS)

# Data-parallel training on 2 worker processes (MultiWorkerMirroredStrategy), checked against one.
demo-multiworker: build
	$(PY) python/demo_multiworker.py $(DEMO_ARGS)

bench: build
	$(PY) -m pip install --quiet --disable-pip-version-check $$($(PY) tools/deps.py bench)
	$(PY) python/bench.py $(BENCH_ARGS)
	$(PY) python/bench_xla.py

lint: $(STAMP)
	$(PY) -m ruff check tf_rnn_ops python tests tools
	$(PY) -m ruff format --check tf_rnn_ops python tests tools

clean:
	rm -rf $(BUILD) tf_rnn_ops/*.so $(BUILD_INFO) $(WHEEL_DIR) tf_rnn_ops.egg-info

distclean: clean
	rm -rf $(VENV)
-include cc/cuda/cuda.mk
-include bazel.mk
-include tools/hardening.mk
