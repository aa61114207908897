# Issue 7, hardening (included at the end of the Makefile):
#   make stress   the long versions of the tests in tests/hardening: thousands of fuzz cases per op,
#                 10,000-call memory runs, more threads rounds, >2^31-element params (where ~12 GiB
#                 are free); and 300 random layer configurations a family against their peers
#                 (tests/layers/test_layers_random_configs.py)
#   make asan     the op libraries built with AddressSanitizer + UndefinedBehaviorSanitizer into
#                 build/asan/, and the op tests run against them (ASAN_TESTS less ASAN_IGNORE),
#                 sanitizers preloaded into Python; any report stops the run (halt_on_error,
#                 abort_on_error).

.PHONY: stress asan asan-build

stress: build ## the long versions of the hardening tests (tests/hardening) and of the layers' random configurations
	TF_RNN_OPS_STRESS=1 $(PY) -m pytest -q -p no:cacheprovider tests/hardening \
	  tests/layers/test_layers_random_configs.py $(PYTEST_ARGS)

ASAN_DIR      := $(BUILD)/asan
ASAN_LIB      := $(ASAN_DIR)/_tf_rnn_ops.so
ASAN_TF_CUDNN := $(ASAN_DIR)/_tf_cudnn_cpu_kernels.so
# UBSan's null / nonnull-attribute / returns-nonnull-attribute checks are left out: with them GCC 12
# cannot fold `&function == nullptr` in constant expressions, which Abseil's headers need (a null
# dereference is still caught, by ASan, as a SEGV report).
ASAN_SAN      := -fsanitize=address,undefined -fno-sanitize=null,nonnull-attribute,returns-nonnull-attribute \
                 -fno-sanitize-recover=all
# -O1 keeps the sanitized build quick to compile and run; -march as the x86-64-v3 build, so that the
# same AVX2/FMA kernels are checked (the x86-64-v4 build, the same sources, is not sanitized);
# without -DNDEBUG, so that Eigen's asserts and TF's DCHECKs check too.
ASAN_CXXFLAGS  = $(filter-out -O% -DNDEBUG,$(ALL_CXXFLAGS)) -O1 -g -fno-omit-frame-pointer $(ASAN_SAN)
ASAN_LIB_OBJS := $(patsubst %.cc,$(ASAN_DIR)/obj/%.o,$(LIB_SRCS))
ASAN_TF_OBJS  := $(patsubst %.cc,$(ASAN_DIR)/obj/%.o,$(TF_CUDNN_SRCS))
# The op tests, selected by folder (tests/README.md): every op-level test (tests/ops, and the cells
# of tests/cells once it exists; float32 and float64, so both the packed micro-kernel with the
# row-range threading of the CPU driver and Eigen's path run under the sanitizers), the GRUBlockCell
# layer's tests (its ops through Keras: tf.function, fit, a SavedModel served by a fresh process),
# and the hardening tests: fuzzing and size limits. Left out (ASAN_IGNORE): test_hardening_memory.py
# (ASan's quarantine and shadow memory grow the resident set by design, which is what it measures)
# and test_hardening_repeat.py (concurrency and determinism in fresh processes, slow at -O1; the op
# tests already run every op under the sanitizers). tests/packaging/test_op_test_selection.py checks
# the selection.
ASAN_TESTS    ?= tests/ops $(wildcard tests/cells) tests/layers/test_gru_block_cell_keras.py \
                 tests/hardening
ASAN_IGNORE   ?= tests/hardening/test_hardening_memory.py tests/hardening/test_hardening_repeat.py
# Python and TensorFlow keep memory until exit by design: no leak check. Reports abort the process.
# ASan's allocator ignores RLIMIT_AS: single allocations past 8 GiB fail instead (returning null, as
# malloc would), which the size-limit tests of tests/hardening/test_hardening_limits.py rely on.
ASAN_RUN_ENV = \
  LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libubsan.so)" \
  ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_odr_violation=0:allocator_may_return_null=1:max_allocation_size_mb=8192$(if $(ASAN_EXTRA_OPTIONS),:$(ASAN_EXTRA_OPTIONS)) \
  UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1 \
  TF_RNN_OPS_LIBRARY=$(abspath $(ASAN_LIB)) TF_RNN_OPS_TF_CUDNN_LIBRARY=$(abspath $(ASAN_TF_CUDNN)) \
  TF_RNN_OPS_FUZZ_EXAMPLES=$(or $(ASAN_FUZZ_EXAMPLES),5)

$(ASAN_DIR)/obj/%.o: %.cc $(BUILD)/tf_flags.mk
	@mkdir -p $(dir $@)
	$(CXX) $(ASAN_CXXFLAGS) -c $< -o $@

$(ASAN_LIB): $(ASAN_LIB_OBJS)
	$(CXX) -o $@ $(ASAN_LIB_OBJS) $(ASAN_SAN) $(LDFLAGS_LIB)

$(ASAN_TF_CUDNN): $(ASAN_TF_OBJS)
	$(CXX) -o $@ $(ASAN_TF_OBJS) $(ASAN_SAN) $(LDFLAGS_LIB)

# The header dependencies the compiler wrote: silent, since they exist only after a first build.
-include $(ASAN_LIB_OBJS:.o=.d) $(ASAN_TF_OBJS:.o=.d)

asan-build: $(STAMP) $(BUILD)/tf_flags.mk ## the op libraries with ASan + UBSan, into build/asan/
	$(MAKE) -j$(JOBS) $(ASAN_LIB) $(ASAN_TF_CUDNN)

# First make sure the sanitized libraries are the ones loaded (and only they), then run the tests.
asan: asan-build ## the op tests (ASAN_TESTS) on the sanitized libraries
	nm -u $(ASAN_LIB) | grep -q __asan_report_load && nm -u $(ASAN_LIB) | grep -q __ubsan_handle_
	$(ASAN_RUN_ENV) $(PY) -c "import tf_rnn_ops; m = open('/proc/self/maps').read(); \
	  assert '$(abspath $(ASAN_LIB))' in m and '$(abspath $(ASAN_TF_CUDNN))' in m, 'not loaded'; \
	  assert not any('tf_rnn_ops/_tf_rnn_ops' + v + '.so' in m for v in ('', '_avx512')), \
	  'a normal build is loaded'; print('asan: libraries loaded')"
	$(ASAN_RUN_ENV) $(PY) -m pytest -q -p no:cacheprovider -m "not slow" $(ASAN_TESTS) \
	  $(addprefix --ignore=,$(ASAN_IGNORE)) $(PYTEST_ARGS)
