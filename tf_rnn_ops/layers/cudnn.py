"""cuDNN-style multi-layer RNN layers on the fused op: `CudnnGRU`, `CudnnLSTM`, `CudnnRNNTanh`,
`CudnnRNNRelu` (docs/MATH.md, "Keras layers").

One layer object is a whole stack: `num_layers` layers, 'unidirectional' or 'bidirectional', with
one opaque params variable (`opaque_params`, in the layout of docs/MATH.md, "Params layout")
holding every weight and bias.

Layout. Batch-major by default (`time_major=False`): inputs [B, T, I], outputs [B, T, dir·H_out].
With `time_major=True`: inputs [T, B, I], outputs [T, B, dir·H_out]. States (initial and returned)
have the op's layout: [B, dir·L, H_out] batch-major, [dir·L, B, H_out] time-major (pseudo-layer
index = layer·dir + direction); CudnnLSTM has a second state c with H = num_units. H_out is num_proj
when CudnnLSTM has a projection, else num_units.

Returns, as Keras RNN layers do: the whole output sequence (`return_sequences=True`) or the last
output (default) — per direction of the last layer its final state ([B, dir·H_out]; zeros for an
empty sequence), i.e. what `Bidirectional(..., return_sequences=False)` returns — followed, with
`return_state=True`, by the final states h (and c).

Masks (Keras masks, e.g. from `Embedding(mask_zero=True)`, [B, T], or [T, B] with time_major) become
sequence_lengths: the valid steps of each sequence run (any mask pattern: valid steps are packed to
the front, and the outputs scattered back), outputs at masked steps are zeros, and the output mask
is the input mask when returning sequences. `sequence_lengths` ([B] int32) may also be passed
directly.

`dropout` (between layers, training only, inverted scaling; 1.0 drops every between-layer input, as
cuDNN) is the fused op's own: its masks advance from call to call, so a training loop sees fresh
masks at every step, as on TensorFlow's GPU kernels. `seed` (an int, or None for one drawn at
random when the layer is made) seeds the op's mask stream: a new op kernel with the same seed (a
newly traced function, a new process) replays the same sequence of masks.

Initialization, like a stack of Keras layers: per pseudo-layer a Keras-shaped kernel from
`kernel_initializer` (glorot_uniform), recurrent kernel from `recurrent_initializer` (orthogonal)
and bias from `bias_initializer` (zeros), mapped to canonical and packed (CudnnLSTM:
`unit_forget_bias` puts 1 in the forget gate's recurrent bias, as Keras LSTM).

float16 / bfloat16 (mixed precision): the op computes in float32 with the float32 params.
"""

from __future__ import annotations

import random

import keras
import tensorflow as tf

from tf_rnn_ops import params as _params
from tf_rnn_ops.cudnn_rnn import (
    cudnn_rnn,
    cudnn_rnn_canonical_to_params,
    cudnn_rnn_params_to_canonical,
)
from tf_rnn_ops.layers._shared import (
    compute_dtype,
    pack_valid_steps,
    read_variable,
    scatter_outputs,
)

__all__ = ["CudnnGRU", "CudnnLSTM", "CudnnRNNTanh", "CudnnRNNRelu"]


class _CudnnRNN(keras.layers.Layer):
    """Base of the cuDNN-style layers; subclasses set `_rnn_mode`."""

    _rnn_mode: str = ""

    def __init__(
        self,
        num_units,
        num_layers=1,
        direction="unidirectional",
        input_mode="linear_input",
        dropout=0.0,
        seed=None,
        time_major=False,
        return_sequences=False,
        return_state=False,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        params_regularizer=None,
        params_constraint=None,
        num_proj=0,
        unit_forget_bias=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_proj = int(num_proj or 0)
        self._check_model(
            num_layers=int(num_layers),
            num_units=int(num_units),
            input_size=None,  # known at build
            direction=direction,
            input_mode=input_mode,
            num_proj=num_proj,
            dropout=float(dropout),
        )
        self.num_units = int(num_units)
        self.num_layers = int(num_layers)
        self.direction = direction
        self.input_mode = input_mode
        self.dropout = float(dropout)
        self.seed = seed
        self.time_major = bool(time_major)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.params_regularizer = keras.regularizers.get(params_regularizer)
        self.params_constraint = keras.constraints.get(params_constraint)
        self.num_proj = num_proj
        self.unit_forget_bias = bool(unit_forget_bias)
        self.num_dirs = _params.num_dirs(direction)
        self.output_units = _params.output_size(self._rnn_mode, self.num_units, num_proj)
        self.input_size = None
        # The op's (seed, seed2): the layer's seed, or one drawn now (not saved in the config).
        self._op_seeds = (int(seed), 0) if seed is not None else (random.getrandbits(31) + 1, 0)
        self.supports_masking = True
        self.supports_jit = False  # the op has no XLA kernel
        self.input_spec = keras.layers.InputSpec(ndim=3)

    # ------------------------------------------------------------------ layout
    @property
    def _lstm(self) -> bool:
        return self._rnn_mode in _params.CELL_STATE_MODES

    def _check_model(self, **model) -> None:
        """`params.check_model` for this layer's mode; its ValueError names the layer."""
        try:
            _params.check_model(**{"rnn_mode": self._rnn_mode, **model})
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None

    def _layout_args(self, **overrides):
        """The model's layout: the keyword arguments of the `params` functions and of the params
        ops (`rnn_mode`, `num_layers`, `num_units`, `input_size`, `direction`, `input_mode`,
        `num_proj`), with `overrides` applied."""
        args = dict(
            rnn_mode=self._rnn_mode,
            num_layers=self.num_layers,
            num_units=self.num_units,
            input_size=self.input_size,
            direction=self.direction,
            input_mode=self.input_mode,
            num_proj=self.num_proj,
        )
        args.update(overrides)
        return args

    def params_size(self) -> int:
        """Number of elements of the opaque params (after build)."""
        return _params.params_size(**self._layout_args())

    def canonical_weight_shapes(self):
        """(weight shapes, bias shapes) of the canonical lists (after build)."""
        return _params.canonical_shapes(**self._layout_args())

    def build(self, input_shape):
        input_size = input_shape[-1]
        if input_size is None:
            raise ValueError(
                f"{type(self).__name__} needs a known input size (last dimension); got input "
                f"shape {input_shape}"
            )
        self._check_model(**self._layout_args(input_size=int(input_size)))
        self.input_size = int(input_size)
        size = _params.params_size(**self._layout_args())
        self.opaque_params = self.add_weight(
            name="opaque_params",
            shape=(size,),
            initializer=self._initial_params,
            regularizer=self.params_regularizer,
            constraint=self.params_constraint,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3, axes={-1: self.input_size})

    def _initial_params(self, shape, dtype=None):
        weights, biases = _params.keras_initial_canonical(
            **self._layout_args(),
            kernel_initializer=self.kernel_initializer,
            recurrent_initializer=self.recurrent_initializer,
            bias_initializer=self.bias_initializer,
            unit_forget_bias=self.unit_forget_bias,
        )
        packed = _params.canonical_to_opaque(weights, biases, **self._layout_args())
        return tf.cast(packed, dtype or "float32")

    # ------------------------------------------------------------------ canonical weights
    def _check_built(self, what):
        if not self.built:
            raise ValueError(f"{type(self).__name__}.{what}: build the layer first (call it once)")

    def get_canonical_weights(self):
        """The params as canonical (weights, biases) numpy lists (in the order of docs/MATH.md,
        "Params layout"; each weight [out, in]), through the op `cudnn_rnn_params_to_canonical`."""
        self._check_built("get_canonical_weights")
        w_shapes, b_shapes = self.canonical_weight_shapes()
        weights, biases = cudnn_rnn_params_to_canonical(
            params=read_variable(self.opaque_params),
            num_params_weights=len(w_shapes),
            num_params_biases=len(b_shapes),
            **self._layout_args(),
        )
        return [w.numpy() for w in weights], [b.numpy() for b in biases]

    def set_canonical_weights(self, weights, biases):
        """Sets the params from canonical (weights, biases) lists (shapes as
        `canonical_weight_shapes()`), through the op `cudnn_rnn_canonical_to_params`."""
        self._check_built("set_canonical_weights")
        w_shapes, b_shapes = self.canonical_weight_shapes()
        weights, biases = list(weights), list(biases)
        if len(weights) != len(w_shapes) or len(biases) != len(b_shapes):
            raise ValueError(
                f"{type(self).__name__}.set_canonical_weights: expected {len(w_shapes)} weights "
                f"and {len(b_shapes)} biases, got {len(weights)} and {len(biases)}"
            )
        for kind, got, want in [("weight", weights, w_shapes), ("bias", biases, b_shapes)]:
            for i, (a, s) in enumerate(zip(got, want, strict=True)):
                if tuple(a.shape) != tuple(s):
                    raise ValueError(
                        f"{type(self).__name__}.set_canonical_weights: {kind} {i} has shape "
                        f"{tuple(a.shape)}, expected {tuple(s)}"
                    )
        dtype = self.opaque_params.dtype
        packed = cudnn_rnn_canonical_to_params(
            weights=[tf.convert_to_tensor(a, dtype) for a in weights],
            biases=[tf.convert_to_tensor(a, dtype) for a in biases],
            **self._layout_args(),
        )
        self.opaque_params.assign(packed)

    # ------------------------------------------------------------------ call
    def _zero_states(self, batch, dtype):
        n = self.num_dirs * self.num_layers
        shape_h = (
            [n, batch, self.output_units] if self.time_major else [batch, n, self.output_units]
        )
        shape_c = [n, batch, self.num_units] if self.time_major else [batch, n, self.num_units]
        states = [tf.zeros(shape_h, dtype)]
        if self._lstm:
            states.append(tf.zeros(shape_c, dtype))
        return states

    def _run_op(self, x, h0, c0, params, lengths, time_major, training):
        """The stack on x (its layout per `time_major`); returns (y, h, c)."""
        attrs = dict(
            rnn_mode=self._rnn_mode,
            direction=self.direction,
            num_proj=self.num_proj,
            time_major=time_major,
            is_training=True,  # (for the gradient; dropout only when training)
            dropout=self.dropout if training else 0.0,
            seed=self._op_seeds[0],
            seed2=self._op_seeds[1],
        )
        y, h, c, _, _ = cudnn_rnn(
            input=x, input_h=h0, input_c=c0, params=params, sequence_lengths=lengths,
            input_mode=self.input_mode, **attrs,
        )  # fmt: skip
        return y, h, c

    def call(self, inputs, initial_state=None, mask=None, training=None, sequence_lengths=None):
        out_dtype = inputs.dtype
        dtype = compute_dtype(tf.as_dtype(inputs.dtype))
        x = tf.cast(inputs, dtype)
        batch = tf.shape(x)[1 if self.time_major else 0]
        if initial_state is None:
            states = self._zero_states(batch, dtype)
        else:
            states = (
                list(initial_state) if isinstance(initial_state, list | tuple) else [initial_state]
            )
            if len(states) != (2 if self._lstm else 1):
                raise ValueError(
                    f"{type(self).__name__}: initial_state must be "
                    f"{'[h, c]' if self._lstm else '[h]'}, got {len(states)} tensors"
                )
            states = [tf.cast(s, dtype) for s in states]
        h0 = states[0]
        c0 = states[1] if self._lstm else tf.zeros([0], dtype)
        params = tf.cast(read_variable(self.opaque_params), dtype)
        training = bool(training)

        if tf.nest.is_nested(mask):
            mask = tf.nest.flatten(mask)[0]
        lengths = None
        if sequence_lengths is not None:
            lengths = tf.cast(sequence_lengths, tf.int32)
            y, h, c = self._run_op(x, h0, c0, params, lengths, self.time_major, training)
        elif mask is None:
            y, h, c = self._run_op(x, h0, c0, params, None, self.time_major, training)
        else:
            # pack the valid steps to the front (batch-major), run, scatter the outputs back
            mask = tf.cast(mask, tf.bool)
            if self.time_major:
                x = tf.transpose(x, [1, 0, 2])
                mask = tf.transpose(mask)
                h0 = tf.transpose(h0, [1, 0, 2])
                c0 = tf.transpose(c0, [1, 0, 2]) if self._lstm else c0
            packed, packing = pack_valid_steps(x, mask)
            lengths = packing.lengths
            y, h, c = self._run_op(packed, h0, c0, params, lengths, False, training)
            y = scatter_outputs(y, packing, zero_masked=True)
            if self.time_major:
                y = tf.transpose(y, [1, 0, 2])
                h = tf.transpose(h, [1, 0, 2])
                c = tf.transpose(c, [1, 0, 2]) if self._lstm else c

        if self.return_sequences:
            output = y
        else:
            d = self.num_dirs
            last = h[-d:] if self.time_major else tf.transpose(h[:, -d:], [1, 0, 2])
            output = tf.concat(tf.unstack(last, num=d), axis=-1)  # [B, d·H_out]
            if lengths is not None:  # an empty sequence's last output is zeros, as in Keras
                output = tf.where((lengths > 0)[:, tf.newaxis], output, tf.zeros_like(output))
        output = tf.cast(output, out_dtype)
        if not self.return_state:
            return output
        result = [output, tf.cast(h, out_dtype)]
        if self._lstm:
            result.append(tf.cast(c, out_dtype))
        return tuple(result)

    # ------------------------------------------------------------------ Keras plumbing
    def compute_output_shape(self, inputs_shape, initial_state_shape=None):
        input_shape = tuple(inputs_shape)
        steps, batch = (input_shape[0], input_shape[1]) if self.time_major else input_shape[:2]
        width = self.num_dirs * self.output_units
        if self.return_sequences:
            out = (steps, batch, width) if self.time_major else (batch, steps, width)
        else:
            out = (batch, width)
        if not self.return_state:
            return out
        n = self.num_dirs * self.num_layers
        h = (n, batch, self.output_units) if self.time_major else (batch, n, self.output_units)
        shapes = [out, h]
        if self._lstm:
            shapes.append(
                (n, batch, self.num_units) if self.time_major else (batch, n, self.num_units)
            )
        return tuple(shapes)

    def compute_mask(self, inputs, mask=None):
        if tf.nest.is_nested(mask):
            mask = tf.nest.flatten(mask)[0]
        out_mask = mask if self.return_sequences else None
        if self.return_state:
            return [out_mask] + [None] * (2 if self._lstm else 1)
        return out_mask

    def get_config(self):
        config = super().get_config()
        config.update(
            num_units=self.num_units,
            num_layers=self.num_layers,
            direction=self.direction,
            input_mode=self.input_mode,
            dropout=self.dropout,
            seed=self.seed,
            time_major=self.time_major,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            params_regularizer=keras.regularizers.serialize(self.params_regularizer),
            params_constraint=keras.constraints.serialize(self.params_constraint),
        )
        return config


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class CudnnGRU(_CudnnRNN):
    """A stack of GRU layers (cuDNN's GRU: reset gate after the recurrent matmul, as Keras
    GRU(reset_after=True)) on the fused op. See the module doc for arguments and layouts."""

    _rnn_mode = "gru"

    def __init__(self, num_units, **kwargs):
        super().__init__(num_units, **kwargs)


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class CudnnLSTM(_CudnnRNN):
    """A stack of LSTM layers on the fused op, optionally with a projection (`num_proj` > 0:
    h = P·(o ∘ tanh(c)), H_out = num_proj). `unit_forget_bias` (default True, as Keras LSTM)
    initializes the forget gate's bias to 1. See the module doc for arguments and layouts."""

    _rnn_mode = "lstm"

    def __init__(self, num_units, num_proj=0, unit_forget_bias=True, **kwargs):
        super().__init__(num_units, num_proj=num_proj, unit_forget_bias=unit_forget_bias, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(num_proj=self.num_proj, unit_forget_bias=self.unit_forget_bias)
        return config


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class CudnnRNNTanh(_CudnnRNN):
    """A stack of simple RNN layers, h_t = tanh(W x_t + b_W + R h_{t-1} + b_R), on the fused op."""

    _rnn_mode = "rnn_tanh"

    def __init__(self, num_units, **kwargs):
        super().__init__(num_units, **kwargs)


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class CudnnRNNRelu(_CudnnRNN):
    """A stack of simple RNN layers, h_t = relu(W x_t + b_W + R h_{t-1} + b_R), on the fused op."""

    _rnn_mode = "rnn_relu"

    def __init__(self, num_units, **kwargs):
        super().__init__(num_units, **kwargs)
