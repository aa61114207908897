"""`GRUBlockCell`: a Keras 3 RNN cell on the `tf_rnn_ops.gru_block_cell` op.

The cell's math: docs/MATH.md, "GRU block cell"; the layers: docs/MATH.md, "Keras layers".

Use it inside `keras.layers.RNN`::

    layer = keras.layers.RNN(tf_rnn_ops.layers.GRUBlockCell(64), return_sequences=True)

The cell computes what `keras.layers.GRU(reset_after=False)` computes (sigmoid gates, tanh
candidate), with the weights in the op's layout: w_ru [I+H, 2H] (columns r | u), w_c [I+H, H],
b_ru [2H], b_c [H], the x-rows of each matrix above the h-rows.
`GRUBlockCell.weights_from_keras_gru` converts the weights of a Keras GRU (reset_after=False) to
that layout.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_rnn_ops.gru_block_cell import gru_block_cell

__all__ = ["GRUBlockCell"]


def _stacked_initializer(top, bottom, top_rows):
    """Initializes the first `top_rows` rows with `top` and the rest with `bottom`."""

    def initialize(shape, dtype=None):
        rows, cols = shape
        return keras.ops.concatenate(
            [top((top_rows, cols), dtype=dtype), bottom((rows - top_rows, cols), dtype=dtype)],
            axis=0,
        )

    return initialize


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class GRUBlockCell(keras.layers.Layer):
    """A GRU cell (the math of `keras.layers.GRU(reset_after=False)`) on one fused op per step.

    Args:
        units: the cell size H.
        kernel_initializer: initializer of the x-rows of w_ru and w_c (default "glorot_uniform").
        recurrent_initializer: initializer of their h-rows (default "orthogonal").
        bias_initializer: initializer of b_ru and b_c (default "zeros").
        kernel_regularizer, bias_regularizer: regularizers of (w_ru, w_c) and of (b_ru, b_c).
        kernel_constraint, bias_constraint: constraints of (w_ru, w_c) and of (b_ru, b_c).
        **kwargs: passed to `keras.layers.Layer` (name, dtype, ...).

    Call: `cell(inputs [B, I], states)` with states `[h_prev [B, H]]` returns `(h, [h])`.
    float16 / bfloat16 compute dtypes (mixed precision) run the op in that dtype; the kernel
    computes them in float32 internally.
    """

    def __init__(
        self,
        units,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        units = int(units)
        if units <= 0:
            raise ValueError(f"GRUBlockCell: units must be a positive integer, got {units}")
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.state_size = units
        self.output_size = units
        # The op has no XLA kernel: keeps Keras' jit_compile="auto" (XLA on GPU machines) off.
        self.supports_jit = False

    def build(self, input_shape):
        input_size = input_shape[-1]
        if input_size is None:
            raise ValueError(
                f"GRUBlockCell: the last dimension of the inputs must be known, got {input_shape}"
            )
        input_size = int(input_size)
        units = self.units
        stacked = _stacked_initializer(
            self.kernel_initializer, self.recurrent_initializer, input_size
        )
        self.w_ru = self.add_weight(
            name="w_ru",
            shape=(input_size + units, 2 * units),
            initializer=stacked,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.w_c = self.add_weight(
            name="w_c",
            shape=(input_size + units, units),
            initializer=stacked,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.b_ru = self.add_weight(
            name="b_ru",
            shape=(2 * units,),
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )
        self.b_c = self.add_weight(
            name="b_c",
            shape=(units,),
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def call(self, inputs, states, training=None):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        dtype = self.compute_dtype
        x = tf.cast(inputs, dtype)
        h_prev = tf.cast(h_prev, dtype)
        weights = [tf.cast(keras.ops.convert_to_tensor(w), dtype) for w in self._op_weights()]
        _, _, _, h = gru_block_cell(x, h_prev, *weights)
        return h, [h]

    def _op_weights(self):
        return [self.w_ru, self.w_c, self.b_ru, self.b_c]

    def get_initial_state(self, batch_size=None):
        return [keras.ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            }
        )
        return config

    @staticmethod
    def weights_from_keras_gru(kernel, recurrent_kernel, bias=None):
        """[w_ru, w_c, b_ru, b_c] (numpy) from the weights of `keras.layers.GRU(reset_after=False)`.

        Keras' kernel [I, 3H] and recurrent_kernel [H, 3H] have columns z, r, h (z is our u);
        its bias is [3H] (None: zeros). Use with `cell.set_weights(...)`.
        """
        kernel = np.asarray(kernel)
        recurrent_kernel = np.asarray(recurrent_kernel)
        units = recurrent_kernel.shape[0]
        if bias is None:
            bias = np.zeros((3 * units,), kernel.dtype)
        bias = np.asarray(bias)
        if bias.ndim != 1:
            raise ValueError(
                "GRUBlockCell.weights_from_keras_gru: the bias must be [3 * units] "
                f"(a GRU with reset_after=False), got shape {bias.shape}"
            )

        def z_r_h(a):
            return a[..., :units], a[..., units : 2 * units], a[..., 2 * units :]

        k_z, k_r, k_h = z_r_h(kernel)
        rk_z, rk_r, rk_h = z_r_h(recurrent_kernel)
        b_z, b_r, b_h = z_r_h(bias)
        w_ru = np.concatenate(
            [np.concatenate([k_r, k_z], axis=1), np.concatenate([rk_r, rk_z], axis=1)], axis=0
        )
        w_c = np.concatenate([k_h, rk_h], axis=0)
        b_ru = np.concatenate([b_r, b_z])
        return [w_ru, w_c, b_ru, b_h.copy()]
