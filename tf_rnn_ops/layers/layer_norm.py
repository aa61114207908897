"""Layer-normalized LSTM and GRU cells and layers for Keras 3, with zoneout (docs/MATH.md,
"Cells beyond cuDNN").

* `LayerNormLSTMCell` / `LayerNormLSTM`: TF Addons' `LayerNormLSTMCell` semantics and weights
  (tensorflow/addons `tensorflow_addons/rnn/layer_norm_lstm_cell.py`; TF Addons reached end of life
  in 2024): a model trained with `keras.layers.RNN(tfa.rnn.LayerNormLSTMCell(H))` loads its weights
  (`set_weights(get_weights())`, same order) and gives the same outputs.
* `LayerNormGRUCell` / `LayerNormGRU`: haste's `LayerNormGRU` semantics and weights (lmnt-com/haste
  `frameworks/tf/layer_norm_gru_cell.py`, `lib/layer_norm_gru_forward_gpu.cu.cc`).
* `dropout` on `LayerNormGRUCell` / `LayerNormGRU` (haste's): DropConnect on the recurrent kernel,
  R ⊙ m / (1 - rate) with one {0, 1} mask m like R drawn per call, in training.
* `dropout` / `recurrent_dropout` on `LayerNormLSTMCell` / `LayerNormLSTM` (TF Addons' arguments):
  in training, one mask on the input and one on h_{t-1} (before its product with the recurrent
  kernel) drawn per call and kept for every step, scaled by 1 / (1 - rate) (Keras'
  `DropoutRNNCell`, as TF Addons' cell used only the first of its masks).
* `zoneout=p` on both: haste's zoneout (`frameworks/tf/zoneout_wrapper.py` and its fused kernels),
  on h only (never on the LSTM's c); training: h_t = h_{t-1} + m (h~_t - h_{t-1}) with
  m ~ Bernoulli(1 - p) per unit, step and row; inference: h_t = p h_{t-1} + (1 - p) h~_t. The zoned
  h is both the output and the carried state.

The cells are written in Keras ops (any backend) and work inside `keras.layers.RNN` (masks,
go_backwards, initial and stateful states, `keras.layers.Bidirectional`). The layers are
`keras.layers.RNN` subclasses over these cells whose step loop is the fused op
`TfRnn>LayerNormRnn` (`tf_rnn_ops.layer_norm_rnn`, training and inference, zoneout, dropout,
recurrent dropout and DropConnect included) under the TensorFlow backend in float32 / float64;
elsewhere (mixed precision, other backends) Keras's loop over the cells, as also inside an XLA
compilation (`jit_compile=True`), while the TFLite converter traces, and inside
`with tf_rnn_ops.standard_ops():` (a SavedModel of standard TensorFlow ops only). Their
constructor arguments are those of the cells (units, norm_epsilon, zoneout, dropout, the LSTM's
recurrent_dropout, initializers / regularizers / constraints as Keras' LSTM, seed) and
return_sequences, return_state, go_backwards, stateful, unroll. A SavedModel exported normally
holds the custom op (import `tf_rnn_ops` before loading it); exported inside
`tf_rnn_ops.standard_ops()` it holds standard ops only.
"""

from __future__ import annotations

import inspect

import keras
from keras import constraints, initializers, ops, regularizers

# Keras' RNN layer draws and resets the masks of cells that are DropoutRNNCells (once per call);
# Keras 3 does not export the class.
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from tf_rnn_ops.layers._inference_masks import InferenceDrawsNoMasks
from tf_rnn_ops.layers._zoneout import ZoneoutMixin

__all__ = ["LayerNormGRU", "LayerNormGRUCell", "LayerNormLSTM", "LayerNormLSTMCell"]


def _check_units(owner: str, units) -> int:
    if isinstance(units, bool) or int(units) != units or int(units) <= 0:
        raise ValueError(f"{owner}: units must be a positive integer, got {units!r}")
    return int(units)


def _check_rate(owner: str, name: str, rate) -> float:
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a number in [0, 1), got {rate!r}") from None
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {rate}")
    return rate


def _check_epsilon(owner: str, eps) -> float:
    eps = float(eps)
    if not eps > 0.0:
        raise ValueError(f"{owner}: norm_epsilon must be positive, got {eps}")
    return eps


def _layer_norm(v, gamma, beta, eps):
    """(v - mean) / sqrt(var + eps) * gamma (+ beta), over the last axis, biased variance.
    float16 / bfloat16 (mixed precision) normalize in float32, as Keras' LayerNormalization."""
    dtype = keras.backend.standardize_dtype(v.dtype)
    if dtype in ("float16", "bfloat16"):
        v, gamma = ops.cast(v, "float32"), ops.cast(gamma, "float32")
        beta = None if beta is None else ops.cast(beta, "float32")
    mean = ops.mean(v, axis=-1, keepdims=True)
    centered = v - mean
    var = ops.mean(ops.square(centered), axis=-1, keepdims=True)
    out = centered * ops.rsqrt(var + eps) * gamma
    out = out if beta is None else out + beta
    return ops.cast(out, dtype)


def _dropped_h(h_prev, recurrent_mask):
    """h_{t-1} as its product with the recurrent kernel sees it (TF Addons' recurrent dropout)."""
    return h_prev if recurrent_mask is None else h_prev * recurrent_mask


def layer_norm_lstm_step(
    x, h_prev, c_prev, kernel, recurrent_kernel, bias, gamma_x, beta_x, gamma_h, beta_h, gamma_c,
    beta_c, eps, recurrent_mask=None,
):  # fmt: skip
    """One step of TF Addons' LayerNormLSTMCell before zoneout: (h~, c) (docs/MATH.md, "Cells
    beyond cuDNN", LayerNormLSTM), h_prev ⊙ recurrent_mask in h's product. Keras ops; also the
    second-order formulation of the fused op (`tf_rnn_ops.layer_norm_rnn`)."""
    h_in = _dropped_h(h_prev, recurrent_mask)
    z = _layer_norm(ops.matmul(x, kernel), gamma_x, beta_x, eps)
    z = z + _layer_norm(ops.matmul(h_in, recurrent_kernel), gamma_h, beta_h, eps) + bias
    i, f, g, o = ops.split(z, 4, axis=-1)
    c = ops.sigmoid(f) * c_prev + ops.sigmoid(i) * ops.tanh(g)
    c = _layer_norm(c, gamma_c, beta_c, eps)
    return ops.sigmoid(o) * ops.tanh(c), c


def layer_norm_gru_step(
    x, h_prev, kernel, recurrent_kernel, bias, recurrent_bias, gamma_x, gamma_h, eps,
    recurrent_mask=None,
):  # fmt: skip
    """One step of haste's LayerNormGRU before zoneout: h~ (docs/MATH.md, "Cells beyond cuDNN",
    LayerNormGRU), h_prev ⊙ recurrent_mask in h's product only (the fused op's option; the
    cell's z h_prev sees h undropped). Keras ops; also the second-order formulation of the fused
    op."""
    h_in = _dropped_h(h_prev, recurrent_mask)
    xh = _layer_norm(ops.matmul(x, kernel), gamma_x, None, eps) + bias
    hh = _layer_norm(ops.matmul(h_in, recurrent_kernel), gamma_h, None, eps) + recurrent_bias
    x_z, x_r, x_g = ops.split(xh, 3, axis=-1)
    h_z, h_r, h_g = ops.split(hh, 3, axis=-1)
    z = ops.sigmoid(x_z + h_z)
    r = ops.sigmoid(x_r + h_r)
    g = ops.tanh(r * h_g + x_g)
    return z * h_prev + (1.0 - z) * g


_RATE_ARGS = ("dropout", "recurrent_dropout")  # constructor arguments checked by _check_rate

_SERIALIZED_BY = (
    ("_initializer", initializers),
    ("_regularizer", regularizers),
    ("_constraint", constraints),
)


def _serializer_of(name: str):
    """The keras module that gets / serializes constructor argument `name`, or None (as is)."""
    return next((module for suffix, module in _SERIALIZED_BY if name.endswith(suffix)), None)


class _LayerNormCell(ZoneoutMixin, keras.layers.Layer):
    """What the two cells share: their constructor arguments stored as attributes (initializers,
    regularizers and constraints through Keras' `get`), checked, and returned by `get_config`."""

    # The constructor arguments after units, norm_epsilon and zoneout, in get_config's order.
    _arg_names: tuple[str, ...] = ()

    def _store_args(self, args: dict) -> None:
        """Stores units, norm_epsilon, zoneout, `_arg_names` (the dropout rates checked) and seed
        from the constructor's `locals()`; sets the seed generator of the zoneout and dropout masks
        and output_size."""
        name = type(self).__name__
        self.units = _check_units(name, args["units"])
        self.norm_epsilon = _check_epsilon(name, args["norm_epsilon"])
        self.zoneout = _check_rate(name, "zoneout", args["zoneout"])
        for key in self._arg_names:
            module = _serializer_of(key)
            if key in _RATE_ARGS:
                value = _check_rate(name, key, args[key])
            else:
                value = module.get(args[key]) if module else args[key]
            setattr(self, key, value)
        self.seed = args["seed"]
        self.seed_generator = keras.random.SeedGenerator(seed=self.seed)
        self.output_size = self.units

    def get_config(self):
        config = {"units": self.units, "norm_epsilon": self.norm_epsilon, "zoneout": self.zoneout}
        for key in self._arg_names:
            module = _serializer_of(key)
            value = getattr(self, key)
            config[key] = module.serialize(value) if module else value
        config["seed"] = self.seed
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class LayerNormLSTMCell(DropoutRNNCell, _LayerNormCell):
    """An LSTM cell with layer normalization (TF Addons' `LayerNormLSTMCell`), its dropout, and
    zoneout.

    z = LN_k(x W) + LN_r(h_{t-1} R) + b over the 4H gate vector (gates i, f, c, o), each LN with its
    own gamma and beta; c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g); c_t <- LN_s(c_t) (the
    normalized c is the carried state); h_t = sigmoid(o) tanh(c_t). LN(v) = (v - mean) /
    sqrt(var + norm_epsilon) * gamma + beta, biased variance.

    Weights (`get_weights()` order, TF Addons' under `keras.layers.RNN`): kernel [I, 4H],
    recurrent_kernel [H, 4H], bias [4H], kernel_norm_gamma, kernel_norm_beta [4H],
    recurrent_norm_gamma, recurrent_norm_beta [4H], state_norm_gamma, state_norm_beta [H].

    Args:
        units: the cell size H.
        norm_epsilon: the LN epsilon (TF Addons' default 1e-3).
        zoneout: zoneout rate p on h, in [0, 1) (haste semantics; see the module docstring).
        kernel_initializer, recurrent_initializer, bias_initializer: as Keras' LSTMCell.
        unit_forget_bias: add 1 to the forget gate's bias at initialization (forces
            bias_initializer "zeros" for the other gates), as Keras and TF Addons.
        norm_gamma_initializer, norm_beta_initializer: initializers of the LN gains and shifts.
        kernel_regularizer, recurrent_regularizer, bias_regularizer, kernel_constraint,
            recurrent_constraint, bias_constraint: as Keras' LSTMCell.
        dropout, recurrent_dropout: TF Addons' rates in [0, 1) of the input's and of h_{t-1}'s
            dropout (before the recurrent product; zoneout still sees the undropped h_{t-1}), in
            training: one mask each a call of `keras.layers.RNN`, kept for all its steps.
        seed: seed of the zoneout and dropout masks.

    Call: `cell(x [B, I], [h, c], training)` returns `(h, [h, c])`.
    """

    _arg_names = (
        "kernel_initializer", "recurrent_initializer", "bias_initializer", "unit_forget_bias",
        "norm_gamma_initializer", "norm_beta_initializer", "kernel_regularizer",
        "recurrent_regularizer", "bias_regularizer", "kernel_constraint", "recurrent_constraint",
        "bias_constraint", "dropout", "recurrent_dropout",
    )  # fmt: skip

    def __init__(
        self,
        units,
        norm_epsilon=1e-3,
        zoneout=0.0,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        norm_gamma_initializer="ones",
        norm_beta_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._store_args(locals())
        self.unit_forget_bias = bool(unit_forget_bias)
        self.state_size = [self.units, self.units]

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"{type(self).__name__}: the last dimension of the inputs must be known, "
                f"got {input_shape}"
            )
        H = self.units
        self.kernel = self.add_weight(
            shape=(int(input_dim), 4 * H), name="kernel", initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint,
        )  # fmt: skip
        self.recurrent_kernel = self.add_weight(
            shape=(H, 4 * H), name="recurrent_kernel", initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer, constraint=self.recurrent_constraint,
        )  # fmt: skip
        if self.unit_forget_bias:
            base = self.bias_initializer

            def bias_initializer(shape, dtype=None):
                return ops.concatenate(
                    [
                        base((H,), dtype=dtype),
                        initializers.get("ones")((H,), dtype=dtype),
                        base((2 * H,), dtype=dtype),
                    ]
                )
        else:
            bias_initializer = self.bias_initializer
        self.bias = self.add_weight(
            shape=(4 * H,), name="bias", initializer=bias_initializer,
            regularizer=self.bias_regularizer, constraint=self.bias_constraint,
        )  # fmt: skip
        for prefix, size in (("kernel_norm", 4 * H), ("recurrent_norm", 4 * H), ("state_norm", H)):
            for part, init in (("gamma", self.norm_gamma_initializer),
                               ("beta", self.norm_beta_initializer)):  # fmt: skip
                weight = self.add_weight(shape=(size,), name=f"{prefix}_{part}", initializer=init)
                setattr(self, f"{prefix}_{part}", weight)

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states[0], states[1]
        recurrent_mask = None
        if training and self.dropout:
            inputs = inputs * self.get_dropout_mask(inputs)
        if training and self.recurrent_dropout:
            recurrent_mask = self.get_recurrent_dropout_mask(h_prev)
        h, c = layer_norm_lstm_step(
            inputs, h_prev, c_prev, self.kernel, self.recurrent_kernel, self.bias,
            self.kernel_norm_gamma, self.kernel_norm_beta, self.recurrent_norm_gamma,
            self.recurrent_norm_beta, self.state_norm_gamma, self.state_norm_beta,
            self.norm_epsilon, recurrent_mask,
        )  # fmt: skip
        h = self._zoneout(h, h_prev, training)
        return h, [h, c]

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype) for _ in range(2)]


def _per_gate_initializer(initializer, gates: int):
    """haste's initialization: `initializer` run on each gate's [rows, H] block, concatenated."""

    def initialize(shape, dtype=None):
        rows, cols = shape
        return ops.concatenate(
            [initializer((rows, cols // gates), dtype=dtype) for _ in range(gates)], axis=-1
        )

    return initialize


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class LayerNormGRUCell(DropoutRNNCell, _LayerNormCell):
    """A GRU cell with layer normalization (haste's `LayerNormGRU`), its DropConnect, and zoneout.

    x^ = LN(x W; gamma_0) + b, h^ = LN(h_{t-1} R; gamma_1) + b_r, each LN over the 3H gate vector
    with a gain and no shift, LN(v; g) = (v - mean) / sqrt(var + norm_epsilon) * g (biased
    variance, haste's epsilon 1e-5); gates z, r, g: z = sigmoid(x^_z + h^_z),
    r = sigmoid(x^_r + h^_r), g = tanh(r h^_g + x^_g), h_t = z h_{t-1} + (1 - z) g.

    Weights (`get_weights()` order, haste's): kernel [I, 3H], recurrent_kernel [H, 3H], bias [3H],
    recurrent_bias [3H], gamma [2, 3H].

    Args:
        units: the cell size H.
        norm_epsilon: the LN epsilon (haste's 1e-5).
        zoneout: zoneout rate p on h, in [0, 1) (haste semantics; see the module docstring).
        kernel_initializer, recurrent_initializer: run on each gate's block (haste's
            "glorot_uniform" on [I, H] and "orthogonal" on [H, H] per gate).
        bias_initializer, recurrent_bias_initializer, gamma_initializer: "zeros", "zeros", "ones".
        kernel_regularizer, recurrent_regularizer, bias_regularizer, kernel_constraint,
            recurrent_constraint, bias_constraint: as Keras' GRUCell (the bias ones apply to both
            bias vectors).
        dropout: haste's DropConnect rate in [0, 1) on the recurrent kernel, in training: R is
            replaced by R ⊙ m / (1 - rate), m a {0, 1} mask like R (1 with probability
            1 - rate) drawn once a call of `keras.layers.RNN` (haste's TensorFlow layer also
            drops R in inference; here, as in its PyTorch layer, training only).
        seed: seed of the zoneout and DropConnect masks.

    Call: `cell(x [B, I], [h], training)` returns `(h, [h])`.
    """

    _arg_names = (
        "kernel_initializer", "recurrent_initializer", "bias_initializer",
        "recurrent_bias_initializer", "gamma_initializer", "kernel_regularizer",
        "recurrent_regularizer", "bias_regularizer", "kernel_constraint", "recurrent_constraint",
        "bias_constraint", "dropout",
    )  # fmt: skip
    recurrent_dropout = 0.0  # (DropoutRNNCell's other rate: haste has no dropout on h)

    def __init__(
        self,
        units,
        norm_epsilon=1e-5,
        zoneout=0.0,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        recurrent_bias_initializer="zeros",
        gamma_initializer="ones",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._store_args(locals())
        self.state_size = self.units

    def get_dropout_mask(self, step_input):
        """The DropConnect mask of this call, like the recurrent kernel (drawn at the first request
        of a call of keras.layers.RNN, kept for its steps, cleared after it), or None."""
        mask = getattr(self, "_dropout_mask", None)
        if mask is None and self.dropout > 0:
            mask = self._dropout_mask = self._create_dropout_mask(
                self.recurrent_kernel, self.dropout
            )
        return mask

    def dropped_recurrent_kernel(self, training):
        """The recurrent kernel the step uses: haste's DropConnect in training."""
        if training and self.dropout:
            mask = ops.cast(self.get_dropout_mask(None), self.recurrent_kernel.dtype)
            return self.recurrent_kernel * mask
        return self.recurrent_kernel

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"{type(self).__name__}: the last dimension of the inputs must be known, "
                f"got {input_shape}"
            )
        H = self.units
        self.kernel = self.add_weight(
            shape=(int(input_dim), 3 * H), name="kernel",
            initializer=_per_gate_initializer(self.kernel_initializer, 3),
            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint,
        )  # fmt: skip
        self.recurrent_kernel = self.add_weight(
            shape=(H, 3 * H), name="recurrent_kernel",
            initializer=_per_gate_initializer(self.recurrent_initializer, 3),
            regularizer=self.recurrent_regularizer, constraint=self.recurrent_constraint,
        )  # fmt: skip
        self.bias = self.add_weight(
            shape=(3 * H,), name="bias", initializer=self.bias_initializer,
            regularizer=self.bias_regularizer, constraint=self.bias_constraint,
        )  # fmt: skip
        self.recurrent_bias = self.add_weight(
            shape=(3 * H,), name="recurrent_bias", initializer=self.recurrent_bias_initializer,
            regularizer=self.bias_regularizer, constraint=self.bias_constraint,
        )  # fmt: skip
        self.gamma = self.add_weight(shape=(2, 3 * H), name="gamma",
                                     initializer=self.gamma_initializer)  # fmt: skip

    def call(self, inputs, states, training=False):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        h = layer_norm_gru_step(
            inputs, h_prev, self.kernel, self.dropped_recurrent_kernel(training), self.bias,
            self.recurrent_bias,
            self.gamma[0], self.gamma[1], self.norm_epsilon,
        )  # fmt: skip
        h = self._zoneout(h, h_prev, training)
        return h, [h]

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]


_RNN_ARGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll")


class _CellLayer(InferenceDrawsNoMasks, keras.layers.RNN):
    """A `keras.layers.RNN` whose config is its cell's arguments (as Keras' LSTM / GRU); an
    inference call draws no dropout masks (`_inference_masks`)."""

    _cell_class: type = keras.layers.Layer

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        cell_args = {k: kwargs.pop(k) for k in list(kwargs) if k in self._cell_kwargs()}
        cell = self._cell_class(
            units,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name=f"{type(self).__name__.lower()}_cell",
            **cell_args,
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)

    # The fused op's cell (tf_rnn_ops.layer_norm_rnn), set by the subclasses.
    _fused_cell: str = ""

    def _fused_weights(self) -> dict:
        """The cell's weights as `layer_norm_rnn`'s keyword arguments."""
        raise NotImplementedError

    def _dropped(self, sequences, weights):
        """The input [B, T, I] and `_fused_weights` of a training call with the cell's dropout
        applied (its masks of this call, drawn by keras.layers.RNN.call)."""
        raise NotImplementedError

    def inner_loop(self, sequences, initial_state, mask, training=False):
        """The fused op where it applies (TensorFlow backend, float32 / float64, this layer's own
        cell); Keras' step loop over the cell otherwise (other backends, mixed precision), and
        where the custom op cannot go: inside an XLA compilation, while the TFLite converter
        traces, and inside `tf_rnn_ops.standard_ops()` (a SavedModel of standard ops), as the
        drop-in GRU / LSTM do (`tf_rnn_ops.layers._formulation`)."""
        if keras.backend.backend() == "tensorflow":
            from tf_rnn_ops.layers import _formulation

            how = _formulation.formulation()
            if how is not None:
                return _formulation.standard_inner_loop(
                    self, how, sequences, initial_state, mask, training
                )
        fused = self._fused_inner_loop(sequences, initial_state, mask, training)
        if fused is not None:
            return fused
        return super().inner_loop(sequences, initial_state, mask, training=training)

    @property
    def supports_jit(self) -> bool:
        """True: under XLA the layer traces its Keras-ops cells (see `inner_loop`), so an explicit
        `jit_compile=True` is honoured; False only while Keras resolves `jit_compile="auto"`,
        which then keeps the fused op (as Keras' own GRU / LSTM keep cuDNN)."""
        if keras.backend.backend() != "tensorflow":
            return True
        from tf_rnn_ops.layers import _formulation

        return not _formulation.resolving_auto_jit()

    @supports_jit.setter
    def supports_jit(self, value) -> None:
        pass  # Keras' Layer.__init__ sets it; the property above decides

    def _fused_inner_loop(self, sequences, initial_state, mask, training):
        if keras.backend.backend() != "tensorflow" or type(self.cell) is not self._cell_class:
            return None
        dtype = keras.backend.standardize_dtype(sequences.dtype)
        if dtype not in ("float32", "float64") or not isinstance(training, (bool, type(None))):
            return None
        import tensorflow as tf

        from tf_rnn_ops.layer_norm_rnn import layer_norm_rnn

        cell = self.cell
        weights = self._fused_weights()
        if training:
            sequences, weights = self._dropped(sequences, weights)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        # x and y in Keras' layout, read and written in place by the op's kernels on either
        # device (the transposes were ~6% of a CPU inference call; docs/PERFORMANCE.md items 105,
        # 106). The masks are time-major.
        x = tf.reverse(sequences, [1]) if self.go_backwards else sequences
        mask_bt = None if mask is None else tf.cast(mask, dtype)  # [B, T], in x's step order
        if self.go_backwards and mask_bt is not None:
            mask_bt = tf.reverse(mask_bt, [1])
        step_mask = None if mask_bt is None else tf.transpose(mask_bt)
        zoneout_mask = None
        if training and cell.zoneout:
            # All steps' masks at once, [T, B, H], through the cell's own draw.
            steps_batch = tf.gather(tf.shape(sequences), [1, 0])  # [T, B]
            zoneout_mask = cell.zoneout_mask_of_shape(
                tf.concat([steps_batch, [cell.units]], 0), dtype
            )
        states = (
            list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        )
        y, hn, cn = layer_norm_rnn(
            x, states[0], states[1] if len(states) > 1 else None,
            cell=self._fused_cell, epsilon=cell.norm_epsilon, mask=step_mask,
            zoneout=cell.zoneout, zoneout_mask=zoneout_mask, is_training=bool(training),
            time_major=False, **weights,
        )  # fmt: skip
        if mask_bt is not None:
            # The op outputs the carried h at a masked step; Keras outputs the previous step's
            # output (zeros before the first valid step), or zeros with zero_output_for_mask.
            keep = mask_bt if self.zero_output_for_mask else tf.cumsum(mask_bt, axis=1)
            y = tf.where(keep[:, :, None] > 0, y, tf.zeros_like(y))
        last_output = y[:, -1] if sequences.shape[1] != 0 else tf.zeros_like(hn)
        return last_output, y, [hn, cn] if self._fused_cell == "layer_norm_lstm" else [hn]

    @classmethod
    def _cell_kwargs(cls) -> set:
        params = inspect.signature(cls._cell_class.__init__).parameters
        return {p for p in params if p not in ("self", "units", "kwargs")}

    @property
    def units(self) -> int:
        return self.cell.units

    @property
    def norm_epsilon(self) -> float:
        return self.cell.norm_epsilon

    @property
    def zoneout(self) -> float:
        return self.cell.zoneout

    @property
    def dropout(self) -> float:
        return self.cell.dropout

    def get_config(self):
        cell_config = self.cell.get_config()
        config = {k: cell_config[k] for k in ["units", *sorted(self._cell_kwargs())]}
        base = super().get_config()
        del base["cell"]
        return {**base, **config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class LayerNormLSTM(_CellLayer):
    """A layer-normalized LSTM layer: `keras.layers.RNN` over `LayerNormLSTMCell`, its loop the
    fused op (see the module docstring).

    Args: `units`, the cell's arguments (`norm_epsilon=1e-3`, `zoneout=0.0`, initializers,
    `unit_forget_bias`, regularizers, constraints, `dropout=0.0`, `recurrent_dropout=0.0`,
    `seed`; see `LayerNormLSTMCell`), and
    `return_sequences`, `return_state`, `go_backwards`, `stateful`, `unroll` as Keras' LSTM (plus
    the `keras.layers.RNN` / `Layer` keywords: name, dtype, zero_output_for_mask, ...).

    Weights: the cell's (TF Addons' `LayerNormLSTMCell` order). Masks, initial states
    (`initial_state=[h, c]`), stateful states and `keras.layers.Bidirectional` work as for Keras'
    LSTM.
    """

    _cell_class = LayerNormLSTMCell
    _fused_cell = "layer_norm_lstm"

    @property
    def recurrent_dropout(self) -> float:
        return self.cell.recurrent_dropout

    def _dropped(self, sequences, weights):
        cell = self.cell
        if cell.dropout:  # one mask on every step's input
            sequences = sequences * cell.get_dropout_mask(sequences[:, 0, :])[:, None, :]
        if cell.recurrent_dropout:  # one mask on h_{t-1} for every step, in the op
            h_like = ops.zeros((ops.shape(sequences)[0], cell.units), sequences.dtype)
            weights = dict(weights, recurrent_mask=cell.get_recurrent_dropout_mask(h_like))
        return sequences, weights

    def _fused_weights(self) -> dict:
        c = self.cell
        return {
            "kernel": c.kernel, "recurrent_kernel": c.recurrent_kernel, "bias": c.bias,
            "gamma_x": c.kernel_norm_gamma, "beta_x": c.kernel_norm_beta,
            "gamma_h": c.recurrent_norm_gamma, "beta_h": c.recurrent_norm_beta,
            "gamma_c": c.state_norm_gamma, "beta_c": c.state_norm_beta,
        }  # fmt: skip


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class LayerNormGRU(_CellLayer):
    """A layer-normalized GRU layer: `keras.layers.RNN` over `LayerNormGRUCell`, its loop the
    fused op (see the module docstring).

    Args: `units`, the cell's arguments (`norm_epsilon=1e-5`, `zoneout=0.0`, initializers,
    regularizers, constraints, `dropout=0.0` (haste's DropConnect on the recurrent kernel),
    `seed`; see `LayerNormGRUCell`), and `return_sequences`,
    `return_state`, `go_backwards`, `stateful`, `unroll` as Keras' GRU (plus the
    `keras.layers.RNN` / `Layer` keywords).

    Weights: the cell's (haste's `LayerNormGRU` order).
    """

    _cell_class = LayerNormGRUCell
    _fused_cell = "layer_norm_gru"

    def _fused_weights(self) -> dict:
        c = self.cell
        gamma = keras.ops.convert_to_tensor(c.gamma)
        return {
            "kernel": c.kernel, "recurrent_kernel": c.recurrent_kernel, "bias": c.bias,
            "recurrent_bias": c.recurrent_bias, "gamma_x": gamma[0], "gamma_h": gamma[1],
        }  # fmt: skip

    def _dropped(self, sequences, weights):
        weights = dict(weights, recurrent_kernel=self.cell.dropped_recurrent_kernel(True))
        return sequences, weights
