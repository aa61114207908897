"""Writes make variables for compiling against the installed TensorFlow (from tf.sysconfig)."""

import json
import sys

import tensorflow as tf

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
