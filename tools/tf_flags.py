"""Writes make variables for compiling against the installed TensorFlow (from tf.sysconfig).

Refuses, with what to do, when this Python has no TensorFlow 2.21 (either distribution).
"""

import json
import sys

SERIES = "2.21"
_WHAT_TO_DO = (
    f"tf_rnn_ops compiles against the TensorFlow {SERIES} of the Python that builds it "
    f"({sys.executable}), and {{problem}}. Install it there (`pip install "
    f"tensorflow-cpu=={SERIES}.0`, or `tensorflow=={SERIES}.0` for TensorFlow's GPU build), or let "
    f"pip build in isolation (`pip install .` without --no-build-isolation), or use `make build`, "
    f"which makes .venv with everything."
)
try:
    import tensorflow as tf
except ImportError as e:
    sys.exit(_WHAT_TO_DO.format(problem=f"importing TensorFlow failed there ({e})"))
if not tf.__version__.startswith(SERIES + "."):
    sys.exit(_WHAT_TO_DO.format(problem=f"TensorFlow {tf.__version__} is installed there"))

cflags = tf.sysconfig.get_compile_flags()
lflags = tf.sysconfig.get_link_flags()
print("TF_CFLAGS := " + " ".join(cflags))
print("TF_LFLAGS := " + " ".join(lflags))
print("TF_INCLUDE := " + tf.sysconfig.get_include())
print("TF_LIBDIR := " + tf.sysconfig.get_lib())
print("TF_VERSION := " + tf.__version__)
if len(sys.argv) > 1:  # also record the version the library is built against, for the loader
    with open(sys.argv[1], "w") as f:
        json.dump(
            {"tensorflow_version": tf.__version__, "cxx11_abi": tf.sysconfig.CXX11_ABI_FLAG}, f
        )
