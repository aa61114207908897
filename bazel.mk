# `make bazel`: the Bazel build (WORKSPACE, BUILD) of the same op libraries, and the op tests run on them.
# Included at the end of the Makefile (uses its PY and STAMP). Offline: Bazel 4.2 from Debian's
# bazel-bootstrap (installed with apt-get when there is no `bazel`), TensorFlow from .venv, and local
# stand-ins for the repositories Bazel would otherwise download (third_party/).
#
#   make bazel            configure, build //:libs, run //:op_tests (pytest on the Bazel-built libraries)
#   make bazel-build      configure and build only: bazel-bin/tf_rnn_ops/_tf_rnn_ops.so
#   make bazel-clean      bazel clean --expunge, and forget the configuration
#
# BAZEL_FLAGS go to every build/test (e.g. BAZEL_FLAGS=--jobs=4); PYTEST_ARGS reach pytest.
# Outputs: Bazel's output base (~/.cache/bazel by default), a disk cache in ~/.cache/tf_rnn_ops
# (see tools/configure_bazel.py), the bazel-* symlinks here (git-ignored).

BAZEL                 ?= bazel
BAZEL_FLAGS           ?=
BAZEL_CONFIGURE_FLAGS ?=
BAZEL_APT_PACKAGE     ?= bazel-bootstrap
BAZEL_SUDO            := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: bazel bazel-install bazel-configure bazel-build bazel-clean

bazel-install: ## install Debian's bazel-bootstrap (Bazel 4.2) with apt-get when there is no bazel
	@command -v $(firstword $(BAZEL)) >/dev/null 2>&1 || { \
	  echo "bazel is missing: installing Debian's $(BAZEL_APT_PACKAGE) (Bazel 4.2) with apt-get"; \
	  $(BAZEL_SUDO) apt-get update -q && \
	  $(BAZEL_SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $(BAZEL_APT_PACKAGE); }

# Writes .tf_configure.bazelrc from tf.sysconfig of the venv's TensorFlow (only when it changes).
bazel-configure: $(if $(NO_VENV),,$(STAMP)) ## write .tf_configure.bazelrc from the venv's TensorFlow
	$(PY) tools/configure_bazel.py $(BAZEL_CONFIGURE_FLAGS)

bazel-build: bazel-install bazel-configure ## build the op libraries with Bazel (//:libs)
	$(BAZEL) build $(BAZEL_FLAGS) //:libs

bazel: bazel-install bazel-configure ## Bazel build, then //:op_tests (tests/ops, tests/cells) on its libraries
	$(BAZEL) test $(BAZEL_FLAGS) --test_output=all --test_env=PYTEST_ARGS='$(PYTEST_ARGS)' \
	  //:libs //:op_tests

bazel-clean: ## bazel clean --expunge, and forget the configuration
	-command -v $(firstword $(BAZEL)) >/dev/null 2>&1 && $(BAZEL) clean --expunge
	rm -f .tf_configure.bazelrc
