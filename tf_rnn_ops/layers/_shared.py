"""What the Keras layers share: reading weights, the compute dtype, and running masked sequences.

A Keras mask may have any pattern (not only right-padded), but the fused op runs the first
`sequence_lengths[b]` steps of each sequence. `pack_valid_steps` moves the valid steps of each
sequence to the front, in order (a right-padded mask packs to itself), and gives their count;
after the op ran on the packed sequences, `scatter_outputs` puts every output back at its step:
step t shows the output of the last valid step <= t (Keras carries the previous output through
masked steps), zeros before the first valid step, and zeros at every masked step with
`zero_masked` (Keras' `zero_output_for_mask`, and the Cudnn* layers). Masked steps leave the state
unchanged, as the op leaves it after a sequence's last valid step.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

try:  # reading float32 weights under a mixed-precision autocast scope
    from keras.src.backend.common.variables import AutocastScope as _AutocastScope
except ImportError:  # pragma: no cover - Keras internals moved; fall back to the autocast value
    _AutocastScope = None

__all__ = ["Packing", "compute_dtype", "pack_valid_steps", "read_variable", "scatter_outputs"]


def read_variable(variable):
    """A Keras variable's value in its own dtype (not autocast), as a tape-visible tensor."""
    if variable is None:
        return None
    if _AutocastScope is not None:
        with _AutocastScope(None):
            return tf.convert_to_tensor(variable.value)
    return tf.convert_to_tensor(variable.value)


def compute_dtype(dtype: tf.DType) -> tf.DType:
    """The dtype the op computes in for inputs of `dtype`: float32 for float16 / bfloat16."""
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


class Packing(NamedTuple):
    """How `pack_valid_steps` packed a batch: what `scatter_outputs` needs to undo it."""

    mask: tf.Tensor  # [B, T] bool: the valid steps
    lengths: tf.Tensor  # [B] int32: the number of valid steps (the op's sequence_lengths)


def pack_valid_steps(x: tf.Tensor, mask) -> tuple[tf.Tensor, Packing]:
    """x [B, T, ...] with its mask [B, T] (bool or 0/1, any pattern) → (the valid steps of each
    sequence moved to the front in order, then the masked ones; the `Packing`)."""
    mask = tf.cast(mask, tf.bool)
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    steps = tf.shape(x)[1]
    t = tf.range(steps)[tf.newaxis, :]
    # valid steps first, in order (a right-padded mask gives the identity)
    order = tf.argsort(tf.where(mask, t, t + steps), axis=1, stable=True)
    return tf.gather(x, order, axis=1, batch_dims=1), Packing(mask, lengths)


def scatter_outputs(y: tf.Tensor, packing: Packing, zero_masked: bool) -> tf.Tensor:
    """The op's outputs y [B, T, H] on the packed sequences → at each step t the output of the
    last valid step <= t; zeros before the first valid step, and at every masked step when
    `zero_masked`."""
    seen = tf.cumsum(tf.cast(packing.mask, tf.int32), axis=1)  # valid steps up to t
    outputs = tf.gather(y, tf.maximum(seen - 1, 0), axis=1, batch_dims=1)
    keep = packing.mask if zero_masked else seen > 0  # (a valid step has seen > 0)
    return tf.where(keep[:, :, tf.newaxis], outputs, tf.zeros_like(outputs))
