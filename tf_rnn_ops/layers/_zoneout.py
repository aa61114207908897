"""Zoneout on h (haste semantics; docs/MATH.md, "Cells beyond cuDNN", Zoneout), defined once for
the Python side of every layer that has it: the layer-norm cells (`ZoneoutMixin`) and the drop-in
GRU / LSTM when they run Keras' step loop (`keras_loop`); the fused ops apply the same rule in C++
(cc/cells/zoneout.h).

    h_t = h_{t-1} + k (h~_t - h_{t-1}),  k in {0, 1} with P(k = 1) = 1 - p (training, haste's
    floor(1 - p + U[0, 1))), or k = 1 - p (inference: p h_{t-1} + (1 - p) h~_t).

On h only (the LSTM's c is not zoned); the zoned h is both the output and the carried state.
Written in Keras ops (any backend), except `keras_loop`, which the TensorFlow-only drop-in layers
use.
"""

from __future__ import annotations

import math

import keras
from keras import ops

__all__ = ["ZoneoutMixin", "keep_mask", "keras_loop", "zone"]


def keep_mask(shape, rate: float, dtype, seed):
    """A {0, 1} keep mask of `shape`, 1 with probability 1 - rate (haste's floor(1 - p + U)),
    drawn from `seed` (a `keras.random.SeedGenerator`). Under the TensorFlow backend U has 16
    random bits (`_keep_mask_tf`); elsewhere it is `keras.random.uniform`'s."""
    if keras.backend.backend() == "tensorflow":
        return _keep_mask_tf(shape, rate, dtype, seed)
    u = keras.random.uniform(shape, dtype=dtype, seed=seed)
    return ops.floor(ops.cast(1.0 - rate, dtype) + u)


def _keep_mask_tf(shape, rate: float, dtype, seed):
    """`keep_mask` with U = k / 2^16, k 16 random bits: floor(1 - p + U) = 1 iff k >= p 2^16, so
    P(keep) is 1 - p to 2^-16 (ceil(p 2^16) / 2^16 is the rate applied). Two values a draw of 32
    bits, against one float a draw (TensorFlow's stateless uniform: a [T, B, H] mask of a GRU(256)
    training step at B = 64, T = 100 took 2.5 ms of its ~33, this 1.3; docs/PERFORMANCE.md)."""
    import tensorflow as tf
    from keras.src.backend.tensorflow.random import _cast_seed
    from keras.src.random.seed_generator import draw_seed

    threshold = math.ceil(rate * 65536)
    shape = tf.cast(tf.convert_to_tensor(shape), tf.int32)
    n = shape[-1]
    pairs = (n + 1) // 2
    words = tf.random.stateless_uniform(
        tf.concat([shape[:-1], [pairs]], 0),
        seed=_cast_seed(draw_seed(seed)),
        minval=None,
        maxval=None,
        dtype=tf.uint32,
    )
    bits = tf.reshape(tf.bitcast(words, tf.uint16), tf.concat([shape[:-1], [2 * pairs]], 0))
    bits = bits[..., :n]  # (an odd last dimension: the last word's second half unused)
    if threshold > 65535:  # p > 1 - 2^-16: no k reaches it
        return tf.zeros_like(bits, dtype=dtype)
    return tf.cast(bits >= tf.constant(threshold, tf.uint16), dtype)


def zone(h_new, h_prev, keep):
    """The zoned h: h_prev + keep (h_new - h_prev); keep a mask like h or the scalar 1 - p."""
    return h_prev + keep * (h_new - h_prev)


class ZoneoutMixin:
    """Zoneout inside a cell's step. Needs `self.zoneout` and `self.seed_generator`."""

    def zoneout_mask(self, h):
        """A fresh keep mask like h (`zoneout_mask_of_shape`)."""
        return self.zoneout_mask_of_shape(ops.shape(h), h.dtype)

    def zoneout_mask_of_shape(self, shape, dtype):
        """A fresh keep mask of `shape` (`keep_mask` with the cell's rate and seed generator)."""
        return keep_mask(shape, self.zoneout, dtype, self.seed_generator)

    def _zoneout(self, h_new, h_prev, training):
        if not self.zoneout:
            return h_new
        keep = self.zoneout_mask(h_new) if training else 1.0 - self.zoneout  # (weakly typed)
        return zone(h_new, h_prev, keep)


def keras_loop(layer, sequences, initial_state, mask, training, keep, unroll: bool):
    """Keras' step loop (`keras.layers.RNN.inner_loop`: its `rnn`, masks, go_backwards, the cell's
    own dropout) over `layer.cell` with zoneout on its h (`zone`).

    keep: the training keep mask [T, B, H], keep[k, b] for row b's k-th valid step processed (the
    fused op's convention: the same mask gives the same numbers), or the scalar 1 - p. A mask rides
    along the inputs as H extra channels, each at the input step that reads it, so Keras' loop
    (which reverses for go_backwards and skips masked steps) hands each step its own."""
    import tensorflow as tf
    from keras.src import backend  # Keras' `rnn` (the loop of keras.layers.RNN.inner_loop)

    cell = layer.cell
    units = cell.units
    dtype = sequences.dtype
    # (a Python float straight to the dtype: tf.cast would round it through float32 first)
    keep = tf.cast(keep, dtype) if tf.is_tensor(keep) else tf.constant(keep, dtype)
    per_step = keep.shape.rank != 0
    if per_step:
        sequences = tf.concat([sequences, _at_input_steps(keep, mask, layer.go_backwards)], -1)
    cell_kwargs = {"training": training} if cell._call_has_training_arg else {}

    def step(inputs, states):
        x, k = (inputs[:, :-units], inputs[:, -units:]) if per_step else (inputs, keep)
        _, new_states = cell(x, states, **cell_kwargs)
        new_states = list(new_states) if tf.nest.is_nested(new_states) else [new_states]
        h = zone(new_states[0], states[0], k)
        return h, [h, *new_states[1:]]

    states = list(initial_state) if tf.nest.is_nested(initial_state) else [initial_state]
    return backend.rnn(
        step,
        sequences,
        states,
        go_backwards=layer.go_backwards,
        mask=mask,
        unroll=unroll,
        input_length=sequences.shape[1],
        zero_output_for_mask=layer.zero_output_for_mask,
        return_all_outputs=layer.return_sequences,
    )


def _at_input_steps(keep, mask, go_backwards: bool):
    """keep [T, B, H] by valid step processed → [B, T, H] at the input step that reads it (a
    masked step gets a row too, unused: Keras' loop discards what a masked step computes)."""
    import tensorflow as tf

    by_step = tf.transpose(keep, [1, 0, 2])  # [B, k, H]
    if mask is None:  # every step valid: the k-th processed is step k (reversed: T - 1 - k)
        return tf.reverse(by_step, [1]) if go_backwards else by_step
    valid = tf.cast(mask, tf.int32)
    if go_backwards:
        valid = tf.reverse(valid, [1])
    k = tf.maximum(tf.cumsum(valid, axis=1) - 1, 0)  # [B, T]: the processed index in loop order
    out = tf.gather(by_step, k, axis=1, batch_dims=1)
    return tf.reverse(out, [1]) if go_backwards else out
