"""Whether the graph being traced will be compiled by XLA (the op library has no XLA kernels)."""

from __future__ import annotations

import tensorflow as tf

try:  # TensorFlow internals: the XLA context that tf.function(jit_compile=True) traces under
    from tensorflow.python.ops.control_flow_util import (
        GraphOrParentsInXlaContext as _graph_in_xla,
    )
except ImportError:  # pragma: no cover - moved in another TensorFlow; treat as "not XLA"
    _graph_in_xla = None

__all__ = ["in_xla_context", "refuse_under_xla"]


def in_xla_context() -> bool:
    """True while tracing a graph that XLA compiles (`tf.function(jit_compile=True)`, Keras'
    `model.compile(jit_compile=True)`), or a function nested in one."""
    if _graph_in_xla is None or tf.executing_eagerly():
        return False
    return bool(_graph_in_xla(tf.compat.v1.get_default_graph()))


def refuse_under_xla(op_name: str) -> None:
    """Raise a ValueError that names the layer path when `op_name` is traced for XLA."""
    if in_xla_context():
        raise ValueError(
            f"tf_rnn_ops.{op_name}: the op has no XLA kernel and cannot run inside an XLA "
            "compilation (tf.function(jit_compile=True) or model.compile(jit_compile=True)). Use "
            "the Keras layers tf_rnn_ops.layers.GRU / LSTM / SimpleRNN instead: under XLA they "
            "trace Keras' own formulation with the same weights and results."
        )
