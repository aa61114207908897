"""Faithful Keras 3 ports of upstream cells that cannot be installed here, as independent checks of
`cell_reference` (the ports compose the upstream code's own building blocks; nothing here imports
`cell_reference` or `tf_rnn_ops`).

* `TfaLayerNormLSTMCell`: TF Addons `tensorflow_addons/rnn/layer_norm_lstm_cell.py` (TF Addons is
  end-of-life and does not install beside TensorFlow 2.21). As upstream: a subclass of Keras'
  `LSTMCell` with three `keras.layers.LayerNormalization` sublayers (kernel_norm, recurrent_norm,
  state_norm) built after the LSTM weights, and its `call`. Its dropout: upstream draws four masks
  each with tf.keras 2's `get_dropout_mask_for_cell(..., count=4)` (cached for the call) and uses
  the first; the port takes Keras 3's one cached mask (`get_dropout_mask`), the same draw.
* `HasteLayerNormGRUCell`: haste `frameworks/tf/layer_norm_gru_cell.py`: one [I + H, 3H] kernel
  split into kernel / recurrent_kernel, one [6H] bias split into bias / recurrent_bias, gamma
  [2, 3H], and its `_layer_norm` on `tf.nn.moments` + `tf.nn.batch_normalization` (eps 1e-5).
* `HasteZoneoutWrapper`: haste `frameworks/tf/zoneout_wrapper.py`: zoneout on the wrapped cell's h
  (state[0]) only; as upstream the wrapper's *output* is the inner cell's, its new *state* is
  zoned. `_build_mask` can be given the masks to use (upstream draws floor(1 - p + U)).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


class TfaLayerNormLSTMCell(keras.layers.LSTMCell):
    """TF Addons' LayerNormLSTMCell, ported to Keras 3."""

    def __init__(
        self,
        units,
        norm_gamma_initializer="ones",
        norm_beta_initializer="zeros",
        norm_epsilon=1e-3,
        **kwargs,
    ):
        super().__init__(units, **kwargs)
        self.norm_gamma_initializer = keras.initializers.get(norm_gamma_initializer)
        self.norm_beta_initializer = keras.initializers.get(norm_beta_initializer)
        self.norm_epsilon = norm_epsilon
        self.kernel_norm = self._create_norm_layer("kernel_norm")
        self.recurrent_norm = self._create_norm_layer("recurrent_norm")
        self.state_norm = self._create_norm_layer("state_norm")

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel_norm.build([input_shape[0], self.units * 4])
        self.recurrent_norm.build([input_shape[0], self.units * 4])
        self.state_norm.build([input_shape[0], self.units])

    def call(self, inputs, states, training=None):
        h_tm1 = states[0]  # previous memory state
        c_tm1 = states[1]  # previous carry state

        dp_mask = self.get_dropout_mask(inputs)
        rec_dp_mask = self.get_recurrent_dropout_mask(h_tm1)
        if training and 0.0 < self.dropout < 1.0:
            inputs = inputs * dp_mask
        z = self.kernel_norm(ops.matmul(inputs, self.kernel))

        if training and 0.0 < self.recurrent_dropout < 1.0:
            h_tm1 = h_tm1 * rec_dp_mask
        z += self.recurrent_norm(ops.matmul(h_tm1, self.recurrent_kernel))
        if self.use_bias:
            z = z + self.bias
        z = ops.split(z, 4, axis=1)
        c, o = self._compute_carry_and_output_fused(z, c_tm1)
        c = self.state_norm(c)
        h = o * self.activation(c)
        return h, [h, c]

    def _create_norm_layer(self, name):
        return keras.layers.LayerNormalization(
            beta_initializer=self.norm_beta_initializer,
            gamma_initializer=self.norm_gamma_initializer,
            epsilon=self.norm_epsilon,
            name=name,
            dtype=self.dtype_policy,
        )


class HasteLayerNormGRUCell(keras.layers.Layer):
    """haste's LayerNormGRUCell (a tf.compat.v1 RNNCell upstream), ported to a Keras 3 cell."""

    def __init__(self, num_units, **kwargs):
        super().__init__(**kwargs)
        self.num_units = num_units
        self.state_size = num_units
        self.output_size = num_units

    def build(self, shape):
        num_units = self.num_units
        input_size = int(shape[-1])
        self._kernel = self.add_weight(
            name="kernel", shape=(input_size + num_units, num_units * 3),
            initializer="glorot_uniform",
        )  # fmt: skip
        self._bias = self.add_weight(name="bias", shape=(num_units * 6,), initializer="zeros")
        self.gamma = self.add_weight(name="gamma", shape=(2, num_units * 3), initializer="ones")
        self.input_size = input_size

    def call(self, inputs, states):
        state = states[0]
        kernel, recurrent_kernel = tf.split(
            tf.convert_to_tensor(self._kernel), [self.input_size, self.num_units], axis=0
        )
        bias, recurrent_bias = tf.split(tf.convert_to_tensor(self._bias), 2, axis=0)
        gamma = tf.convert_to_tensor(self.gamma)
        x = self._layer_norm(inputs @ kernel, gamma[0]) + bias
        h_proj = self._layer_norm(state @ recurrent_kernel, gamma[1]) + recurrent_bias
        h_z, h_r, h_g = tf.split(h_proj, 3, axis=-1)
        x_z, x_r, x_g = tf.split(x, 3, axis=-1)
        z = tf.nn.sigmoid(h_z + x_z)
        r = tf.nn.sigmoid(h_r + x_r)
        g = tf.nn.tanh(r * h_g + x_g)
        h = z * state + (1 - z) * g
        return h, [h]

    def _layer_norm(self, x, gamma):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return tf.nn.batch_normalization(x, mean, variance, None, gamma, 1e-5)


class HasteZoneoutWrapper(keras.layers.Layer):
    """haste's ZoneoutWrapper around a Keras cell. masks: None (upstream's random mask) or a
    [T, B, H] tensor, the t-th call (eager, so one call per step) using masks[t]."""

    def __init__(self, cell, rate, training, masks=None, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.rate = rate
        self.training = training
        self.masks = masks
        self.calls = 0

    @property
    def state_size(self):
        return self.cell.state_size

    @property
    def output_size(self):
        return self.cell.output_size

    def build(self, input_shape):
        self.cell.build(input_shape)

    def call(self, inputs, states):
        output, new_state = self.cell(inputs, states)
        self.calls += 1
        if not self.rate:
            return output, new_state
        zoned_out_h = self._apply_zoneout(new_state[0], states[0])
        return output, [zoned_out_h, *new_state[1:]]

    def _apply_zoneout(self, new_tensor, old_tensor):
        if self.training:
            mask = self._build_mask(tf.shape(new_tensor))
            zoned_out = (new_tensor - old_tensor) * mask + old_tensor
        else:
            zoned_out = self.rate * old_tensor + (1.0 - self.rate) * new_tensor
        return zoned_out

    def _build_mask(self, shape):
        if self.masks is not None:
            return tf.cast(self.masks[self.calls - 1], self.compute_dtype)
        mask = 1 - self.rate
        mask += tf.random.uniform(shape)
        return tf.floor(mask)
