"""Drop-in replacements for `keras.layers.GRU`, `LSTM` and `SimpleRNN` on the fused op.

Their contract: docs/MATH.md, "Keras layers".

Each class subclasses its Keras namesake, so the constructor arguments, defaults, weights (names,
shapes, initializers, regularizers, constraints), config, stateful states, initial states, masks and
input-dropout masks are Keras' own; only the loop over time (`inner_loop`) runs through
`tf_rnn_ops.keras_rnn` (batch-major; the op reads the cell's kernel, recurrent_kernel and bias as
Keras keeps them, so a call converts no weights: one-step calls with states cost one pass over the
weights) instead of Keras' step loop. The results equal Keras' step loop:

* masks: any mask (not only right-padded) is handled exactly: the valid steps of each sequence are
  packed to the front (a right-padded mask packs to itself), run with sequence_lengths = their
  count, and the outputs are scattered back with Keras' rule for masked steps (the previous output,
  or zeros with `zero_output_for_mask`, which `Bidirectional` sets when returning sequences); masked
  steps leave the state unchanged.
* go_backwards: like Keras, the whole padded sequence (and mask) is reversed and the outputs are
  returned in that reversed order.
* dropout (on inputs): Keras' cached per-sequence mask, applied before the op.
* recurrent_dropout while training: the masks come from Keras' own cell methods (its G per-gate
  input masks, then its recurrent masks, in the order its cell draws them, so the same seed gives
  Keras' masks); the layer computes the gates' input side, (x ⊙ d_k) W_k for each gate k, and
  `keras_rnn_dropout` (TfRnn>KerasRNNDropout) runs the masked recurrence (`_dropout_loop`).
* zoneout (GRU and LSTM only, `zoneout=p`, our one addition to Keras' arguments; haste's semantics,
  docs/MATH.md, "Cells beyond cuDNN", Zoneout): on h only (never the LSTM's c), the
  zoned h is the output and the carried state. Training: h_t = h_{t-1} + m_t ⊙ (h~_t - h_{t-1}), m_t
  in {0, 1} fresh per step, row and unit with P(1) = 1 - p (`_zoneout_mask`: [T, B, H] from the
  cell's seed generator, drawn after Keras' dropout masks; row b's k-th valid step processed reads
  m[k, b]); inference: h_t = p h_{t-1} + (1 - p) h~_t. Fused wherever the op may run (training and
  inference, with or without dropout): the layer computes the gates' input side as for recurrent
  dropout and TfRnn>KerasRNNDropout runs the recurrence with the keep mask (or the scalar 1 - p).
  Where only Keras' loop can run (an activation the op lacks, use_cudnn=False, XLA, TFLite,
  standard_ops): Keras' loop with the same rule and the same keep mask (`_zoneout.keras_loop`), so
  the same seed gives the same numbers (under XLA TensorFlow's random ops draw other masks for a
  seed, Keras' dropout masks too). A symbolic training flag selects between the two calls
  (tf.cond). zoneout=0 (the default) leaves every other path as it was.
* float16 / bfloat16 (mixed precision): the op computes in float32 (float32 weights, inputs cast
  up); Keras casts the results to the compute dtype.

Options the op cannot express fall back to Keras' step loop (the superclass), never to a different
computation: a non-default activation / recurrent_activation (SimpleRNN: other than tanh or relu),
recurrent_dropout with a symbolic training flag (or a rate of 1), input dropout while training
with `implementation=1` and no recurrent dropout, and `use_cudnn=False`. `use_cudnn=True` with an
activation the op cannot compute is refused at construction.

Where TensorFlow sees a GPU, a GRU or LSTM that Keras would run on cuDNN (use_cudnn 'auto' or True,
no recurrent dropout, tanh / sigmoid, a bias, not unrolled, GRU reset_after=True) and that has no
zoneout runs Keras' own cuDNN path (`_keras_cudnn_runs`): the op that reads Keras' weight layout,
TfRnn>KerasRNN, has CPU kernels only, and TensorFlow would otherwise place it on the CPU, far slower
than cuDNN. The rest beside a GPU: with our GPU kernels loaded (`make gpu`,
`_loader.load_gpu_kernels`), recurrent dropout and zoneout run TfRnn>KerasRNNDropout, and the other
calls (SimpleRNN, GRU reset_after=False, no bias, unroll) TfRnn>CudnnRNN on the weights packed into
opaque params per call (`run_fused(opaque=True)`), both with GPU kernels; without them, our ops
would run on the CPU with copies both ways, so the layer runs Keras' own path (its cuDNN or step
loop; zoneout: Keras' step loop with zoneout), Keras' speed by construction.

Where the op cannot go — inside an XLA compilation, while the TFLite converter traces, inside
`tf_rnn_ops.standard_ops()` — the layers trace Keras' formulation instead (`_formulation`), so an
explicit `jit_compile=True` is honoured; `supports_jit` answers False only while Keras resolves
`jit_compile="auto"`, which then keeps the op, as for Keras' cuDNN path. Integer inputs are cast to
the compute dtype, as Keras' step loop promotes them.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import activations
from keras import ops as kops

from tf_rnn_ops import _loader, _modes
from tf_rnn_ops.cudnn_rnn import cudnn_rnn, keras_rnn, keras_rnn_dropout
from tf_rnn_ops.layers import _formulation, _zoneout
from tf_rnn_ops.layers._inference_masks import InferenceDrawsNoMasks
from tf_rnn_ops.layers._shared import (
    compute_dtype,
    pack_valid_steps,
    read_variable,
    scatter_outputs,
)
from tf_rnn_ops.params import keras_to_opaque

__all__ = ["GRU", "LSTM", "SimpleRNN"]


_TANH = (activations.tanh, tf.tanh, tf.math.tanh, tf.nn.tanh, kops.tanh)
_SIGMOID = (activations.sigmoid, tf.sigmoid, tf.math.sigmoid, tf.nn.sigmoid, kops.sigmoid)
_RELU = (activations.relu, tf.nn.relu, kops.relu)


def _gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (where Keras' own GRU / LSTM take cuDNN)."""
    return bool(tf.config.list_logical_devices("GPU"))


def _is(fn, candidates) -> bool:
    return any(fn is c for c in candidates)


def _input_side(x, masks, kernel, units):
    """The gates' input side for x [B, T, I] and kernel [I, G·H], without a bias (the op adds the
    layers' bias): x W [B, T, G·H]; with one input dropout mask d [B, I] (SimpleRNN) (x ⊙ d) W;
    with the G masks d_g of a cell of several gates, gate-major [G, B, T, H]: block g is
    (x ⊙ d_g) W_g, all G in one batched product over the masked copies [G, B·T, I] (the op's
    gate_major: where the G products were joined on the last axis, the concat and its gradient's
    G slices were passes over [B, T, G·H], 2 ms of an LSTM(256) step at B = 64, T = 100,
    docs/PERFORMANCE.md item 82; an einsum transposed them, item 48). Products over all B·T rows,
    not B small ones."""
    n_in = tf.shape(x)[2]
    if masks is None:
        gx = tf.matmul(tf.reshape(x, [-1, n_in]), kernel)
    elif len(masks) == 1:
        gx = tf.matmul(tf.reshape(x * masks[0][:, tf.newaxis, :], [-1, n_in]), kernel)
    else:
        gates = len(masks)
        dropped = x[tf.newaxis] * tf.stack(masks)[:, :, tf.newaxis, :]  # [G, B, T, I]
        per_gate = tf.transpose(tf.reshape(kernel, [n_in, gates, units]), [1, 0, 2])
        gx = tf.matmul(tf.reshape(dropped, [gates, -1, n_in]), per_gate)  # [G, B·T, H]
        return tf.reshape(gx, tf.concat([[gates], tf.shape(x)[:2], [units]], 0))
    return tf.reshape(gx, tf.concat([tf.shape(x)[:2], [tf.shape(kernel)[1]]], 0))


def run_fused(
    rnn_mode,
    x,
    states,
    weights,
    mask=None,
    go_backwards=False,
    zero_output_for_mask=False,
    return_sequences=True,
    recurrent_masks=None,
    zoneout=None,
    opaque=False,
    input_side=None,
):
    """Keras' RNN loop (`keras.backend.rnn` semantics for these arguments) on the fused op.

    x [B, T, I]; states: [h] or [h, c] ([B, H] each); weights: the Keras cell's (kernel,
    recurrent_kernel, bias or None), read by the op as they are (`keras_rnn`: no conversion per
    call); all in the compute dtype; mask: [B, T] bool or None (any pattern).
    Returns (last_output [B, H], outputs [B, T, H] or [B, 1, H], new_states list).

    The graph holds no more than the call needs (a one-step call, B = T = 1 with states, is
    dominated by TensorFlow's per-op work, not by the op): without a mask the last output is the
    op's final h (the same values as its output at the last step: every sequence is full), so a
    call is the op and the weight reads; a mask on one step (T = 1 known when the graph is built)
    needs no packing (`_one_step_masked`); a one-step sequence needs no reversing.

    With recurrent dropout (`recurrent_masks` [G, B, H], see `_run_op`) or zoneout (`zoneout`: the
    keep mask [T, B, H], mask[k, b] for row b's k-th valid step processed, as the packed sequences
    read it; or the scalar keep weight 1 - p of inference): weights are (None, recurrent_kernel,
    recurrent bias or None) and `input_side` maps x (reversed for go_backwards, its valid steps
    packed first) to the projected input, [B, T, G·H] or gate-major [G, B, T, H] (`_input_side`):
    reordering x moves I values a step where the projected input has G·H.

    opaque: without masks or zoneout, TfRnn>CudnnRNN on the weights packed into opaque params
    (`keras_to_opaque`, a few ops per call) in place of TfRnn>KerasRNN, which has no GPU kernel.
    """
    lstm = rnn_mode in _modes.CELL_STATE_MODES
    kernel, recurrent_kernel, bias = weights
    h0 = states[0]
    c0 = states[1] if lstm else None
    one_step = x.shape[1] == 1
    if go_backwards and not one_step:  # Keras reverses the whole padded sequence and its mask
        x = tf.reverse(x, [1])
        if mask is not None:
            mask = tf.reverse(mask, [1])
    project = input_side or (lambda steps: steps)
    if mask is None:
        y, h, c = _run_op(
            rnn_mode, project(x), h0, c0, weights, recurrent_masks, zoneout=zoneout, opaque=opaque
        )
        outputs = y
        last = h  # = y[:, -1] (T >= 1), without a slice op
    elif one_step:
        last, outputs, h, c = _one_step_masked(
            rnn_mode, project(x), h0, c0, weights, mask, recurrent_masks, zoneout, opaque
        )
    else:
        packed, packing = pack_valid_steps(x, mask)
        y, h, c = _run_op(
            rnn_mode, project(packed), h0, c0, weights, recurrent_masks, packing.lengths, zoneout,
            opaque,
        )  # fmt: skip
        # step t shows the output of the last valid step <= t (Keras carries the previous output
        # through masked steps; zeros before the first valid step or with zero_output_for_mask)
        outputs = scatter_outputs(y, packing, zero_masked=zero_output_for_mask)
        last = outputs[:, -1]
    new_states = [h] + ([c] if lstm else [])
    if not return_sequences:
        outputs = last[:, tf.newaxis]
    return last, outputs, new_states


def _run_op(
    rnn_mode, x, h0, c0, weights, recurrent_masks=None, lengths=None, zoneout=None, opaque=False
):
    """The op of one call: `keras_rnn` on x and the cell's weights (with `opaque`: `cudnn_rnn` on
    them packed into opaque params), or, with recurrent_masks or zoneout, `keras_rnn_dropout` on the
    projected input x and weights (None, recurrent_kernel, recurrent bias). Returns (y, h, c)."""
    if recurrent_masks is None and zoneout is None and opaque:
        params = keras_to_opaque(rnn_mode, *weights)
        lstm = c0 is not None
        y, h, c, _, _ = cudnn_rnn(
            x, h0[:, tf.newaxis], c0[:, tf.newaxis] if lstm else tf.zeros([0], x.dtype), params,
            sequence_lengths=lengths, rnn_mode=rnn_mode, time_major=False, is_training=True,
        )  # fmt: skip
        return y, h[:, 0], c[:, 0] if lstm else None
    if recurrent_masks is None and zoneout is None:
        y, h, c, _ = keras_rnn(
            x, h0, c0, *weights, sequence_lengths=lengths, rnn_mode=rnn_mode, is_training=True
        )
        return y, h, c
    _, recurrent_kernel, recurrent_bias = weights
    y, h, c, _ = keras_rnn_dropout(
        x, h0, c0, recurrent_kernel, recurrent_masks, recurrent_bias, sequence_lengths=lengths,
        rnn_mode=rnn_mode, is_training=True, zoneout_mask=zoneout, gate_major=x.shape.rank == 4,
    )  # fmt: skip
    return y, h, c


def _one_step_masked(
    rnn_mode, x, h0, c0, weights, mask, recurrent_masks=None, zoneout=None, opaque=False
):
    """`run_fused` for x [B, 1, I] with a mask [B, 1]: no packing (one step packs to itself) and no
    scatter. A valid row runs its step; a masked one keeps its states (sequence length 0) and
    outputs zeros, Keras' output before any valid step, with or without zero_output_for_mask.
    Returns (last [B, H], outputs [B, 1, H], h, c)."""
    valid = tf.cast(mask, tf.bool)  # [B, 1]
    lengths = tf.cast(valid[:, 0], tf.int32)
    y, h, c = _run_op(rnn_mode, x, h0, c0, weights, recurrent_masks, lengths, zoneout, opaque)
    last = tf.where(valid, h, tf.zeros_like(h))  # valid [B, 1] broadcasts over the units
    return last, last[:, tf.newaxis], h, c


class _FusedRNNMixin(InferenceDrawsNoMasks):
    """`inner_loop` on the fused op for a Keras GRU / LSTM / SimpleRNN subclass (an inference call
    draws no dropout masks: `_inference_masks`)."""

    _zoneout = 0.0  # GRU and LSTM take `zoneout=` (their `zoneout` property); SimpleRNN none

    def _init_fused(self):
        self._fused_mode = self._fusable_mode()
        if self._cudnn_choice is True and self._fused_mode is None:
            raise ValueError(
                f"{type(self).__name__}(use_cudnn=True): the fused op cannot compute "
                f"{self._unfusable_reason()}. Pass use_cudnn='auto' to fall back to the Keras step "
                "loop for this option."
            )

    def _set_zoneout(self, zoneout) -> None:
        """Checks and stores the zoneout rate (before `_init_fused`)."""
        try:
            rate = float(zoneout)
        except (TypeError, ValueError):
            rate = float("nan")
        if isinstance(zoneout, bool) or not 0.0 <= rate < 1.0:
            raise ValueError(
                f"{type(self).__name__}: zoneout must be a rate in [0, 1), got {zoneout!r}"
            )
        self._zoneout = rate

    def _zoneout_mask(self, x):
        """The training keep mask [T, B, H] for x [B, T, ·] (`_zoneout.keep_mask`: 1 with
        probability 1 - p), drawn with the cell's seed generator after Keras' dropout masks (which
        keras.layers.RNN.call draws before `inner_loop`), in the fused op's dtype whichever loop
        runs, so the same seed gives the same mask on either."""
        shape = tf.stack([tf.shape(x)[1], tf.shape(x)[0], self.cell.units])
        dtype = compute_dtype(tf.as_dtype(x.dtype))
        mask = _zoneout.keep_mask(shape, self._zoneout, dtype, self.cell.seed_generator)
        return tf.cast(mask, x.dtype)

    def _zoneout_keras_loop(self, how, sequences, initial_state, mask, training):
        """Zoneout where the fused op cannot run (`how` from `_formulation.formulation()`, or None
        for an option the op lacks): Keras' step loop with zoneout on h, the keep mask drawn as
        for the fused op (a symbolic training flag: both, chosen when the graph runs)."""

        def run(train: bool):
            keep = self._zoneout_mask(sequences) if train else 1.0 - self._zoneout
            return _formulation.standard_inner_loop(
                self, how, sequences, initial_state, mask, train, zoneout=keep
            )

        if isinstance(training, bool | type(None)):
            return run(bool(training))
        return tf.cond(tf.cast(training, tf.bool), lambda: run(True), lambda: run(False))

    def _keras_cudnn_runs(self) -> bool:
        """Whether Keras' own GRU / LSTM would run cuDNN for this call (its `inner_loop` and the
        TensorFlow backend's `cudnn_ok`: a GPU visible to TensorFlow, use_cudnn 'auto' or True, no
        recurrent dropout, cuDNN's options); then so does this layer, zoneout aside. TfRnn>KerasRNN
        has no GPU kernel: on the CPU beside a GPU it would be far slower than cuDNN."""
        return self._cudnn_options() and _gpu_visible()

    def _cudnn_options(self) -> bool:
        """`_keras_cudnn_runs` but for the GPU: the layer's options are ones Keras runs on cuDNN."""
        # _fused_mode "gru" / "lstm": tanh and sigmoid (GRU reset_after=True), as cuDNN needs.
        if self._fused_mode not in ("gru", "lstm") or not self._op_may_run():
            return False
        return not (
            self._zoneout or self.cell.recurrent_dropout or self.unroll or not self.cell.use_bias
        )

    def _keras_path_beside_gpu(self, sequences, initial_state, mask, training):
        """Keras' own path (cuDNN, or its step loop on the GPU; zoneout: Keras' step loop with
        zoneout), for a call beside a GPU that our GPU kernels cannot serve (not built, or not
        loadable here): our ops would run on the CPU with copies both ways."""
        if self._zoneout:
            return self._zoneout_keras_loop(None, sequences, initial_state, mask, training)
        return super().inner_loop(sequences, initial_state, mask, training=training)

    def _op_may_run(self) -> bool:
        """Whether the fused op computes the cell's options and use_cudnn allows it (zoneout then
        always runs on it; else Keras' step loop with zoneout, `_zoneout_keras_loop`)."""
        return getattr(self, "_fused_mode", None) is not None and self._cudnn_choice is not False

    @property
    def _cudnn_choice(self):
        """'auto', True or False: Keras' `use_cudnn` (a private setting on SimpleRNN)."""
        return self.use_cudnn

    # Subclasses: the rnn_mode the cell's options map to, or None; and why not.
    def _fusable_mode(self):
        raise NotImplementedError

    def _unfusable_reason(self) -> str:
        raise NotImplementedError

    def _input_dropout_active(self, training) -> bool:
        return bool(training) and 0.0 < self.cell.dropout < 1.0

    def _recurrent_dropout_active(self, training) -> bool:
        return training is True and 0.0 < self.cell.recurrent_dropout < 1.0

    def _can_fuse(self, training) -> bool:
        if not self._op_may_run():
            return False
        if not isinstance(training, bool | type(None)):
            return False  # a symbolic training flag: let Keras' loop decide per step
        if training and self.cell.recurrent_dropout >= 1.0:
            return False  # Keras' cells skip a mask of rate 1 their own ways
        if self._recurrent_dropout_active(training):
            return True  # the input and recurrent masks go to TfRnn>KerasRNNDropout
        if training and self.cell.dropout and getattr(self.cell, "implementation", 2) == 1:
            # Keras' implementation=1 step loop applies its input dropout mask its own way
            return False
        return True

    @property
    def supports_jit(self) -> bool:
        # Under XLA the layer traces Keras' formulation (see _formulation), so an explicit
        # jit_compile=True is honoured; jit_compile="auto" keeps the fused op where it may run,
        # as Keras' own GRU/LSTM keep cuDNN.
        if not self._op_may_run():
            return True
        return not _formulation.resolving_auto_jit()

    @supports_jit.setter
    def supports_jit(self, value) -> None:
        pass  # Keras' Layer.__init__ sets it; the property above decides

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if tf.nest.is_nested(mask):
            mask = tf.nest.flatten(mask)[0]
        if not sequences.dtype.is_floating:  # Keras' step loop promotes integers so
            sequences = tf.cast(sequences, self.compute_dtype)
        how = _formulation.formulation()
        if self._zoneout and (how is not None or not self._op_may_run()):
            return self._zoneout_keras_loop(how, sequences, initial_state, mask, training)
        if how is not None:  # XLA, TFLite or an export of standard ops: Keras' formulation
            return _formulation.standard_inner_loop(
                self, how, sequences, initial_state, mask, training
            )
        if not self._zoneout and not self._can_fuse(training):  # (zoneout here: fused)
            # Keras' step loop, straight (Keras' own GRU/LSTM.inner_loop would first try its
            # cuDNN path, which only runs on GPUs and cannot do these options either)
            return keras.layers.RNN.inner_loop(
                self, sequences, initial_state, mask=mask, training=training
            )
        beside_gpu = _gpu_visible()
        if beside_gpu and self._cudnn_options():  # Keras' own loop: cuDNN on the GPU
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if beside_gpu and not _loader.load_gpu_kernels():
            return self._keras_path_beside_gpu(sequences, initial_state, mask, training)
        states = list(initial_state) if tf.nest.is_nested(initial_state) else [initial_state]
        cell = self.cell
        dtype = compute_dtype(tf.as_dtype(sequences.dtype))
        x = tf.cast(sequences, dtype)
        states = [tf.cast(s, dtype) for s in states]  # 16-bit states: the op computes in float32
        if self._zoneout:
            if isinstance(training, bool | type(None)):
                return self._dropout_loop(x, states, mask, bool(training))
            # a symbolic training flag: both fused calls, chosen when the graph runs
            return tf.cond(
                tf.cast(training, tf.bool),
                lambda: self._dropout_loop(x, states, mask, True),
                lambda: self._dropout_loop(x, states, mask, False),
            )
        if self._recurrent_dropout_active(training):
            return self._dropout_loop(x, states, mask, training)
        if self._input_dropout_active(training):
            dp_mask = cell.get_dropout_mask(sequences[:, 0, :])  # Keras' cached mask
            x = x * tf.cast(dp_mask, dtype)[:, tf.newaxis, :]
        bias = read_variable(cell.bias) if cell.use_bias else None
        weights = (
            tf.cast(read_variable(cell.kernel), dtype),
            tf.cast(read_variable(cell.recurrent_kernel), dtype),
            None if bias is None else tf.cast(bias, dtype),
        )
        return run_fused(
            self._fused_mode,
            x,
            states,
            weights,
            mask=mask,
            go_backwards=self.go_backwards,
            zero_output_for_mask=self.zero_output_for_mask,
            return_sequences=self.return_sequences,
            opaque=beside_gpu,  # TfRnn>KerasRNN has no GPU kernel; TfRnn>CudnnRNN has
        )

    def _dropout_loop(self, x, states, mask, training):
        """Training with recurrent dropout, or zoneout (training or not): the dropout masks drawn
        by Keras' own cell methods in the order its cell draws them at its first step (so the same
        seed gives Keras' masks), then the zoneout mask (`_zoneout_mask`; inference: the scalar
        1 - p), the input side of every gate computed here ((x ⊙ d_k) W_k, `_input_side`; TensorFlow
        differentiates it) and the recurrence, with the bias, by TfRnn>KerasRNNDropout."""
        cell = self.cell
        dtype = x.dtype
        units = cell.units
        dp = None
        if self._input_dropout_active(training):
            dp = cell.get_dropout_mask(x[:, 0, :])
        rec = None
        if self._recurrent_dropout_active(training):
            rec = cell.get_recurrent_dropout_mask(states[0])
        zoneout = None
        if self._zoneout:
            zoneout = self._zoneout_mask(x) if training else tf.constant(1.0 - self._zoneout, dtype)
        kernel = tf.cast(read_variable(cell.kernel), dtype)
        recurrent_kernel = tf.cast(read_variable(cell.recurrent_kernel), dtype)
        bias = tf.cast(read_variable(cell.bias), dtype) if cell.use_bias else None
        masks = None
        if dp is not None:  # (SimpleRNN: one mask, one product)
            masks = [tf.cast(m, dtype) for m in (dp if isinstance(dp, list | tuple) else [dp])]
        # The bias goes to the op as it is (GRU reset_after's [2, 3H] too: input row, recurrent
        # row): the op adds it and sums its grad with the passes it already makes, where on the
        # input side it was a BiasAdd and a BiasAddGrad over [B·T, G·H] (docs/PERFORMANCE.md
        # items 78, 79).
        rmask = None
        if rec is not None:
            rmask = tf.stack(rec if isinstance(rec, list | tuple) else [rec])
            rmask = tf.cast(rmask, dtype)
        return run_fused(
            self._fused_mode,
            x,
            states,
            (None, recurrent_kernel, bias),
            mask=mask,
            go_backwards=self.go_backwards,
            zero_output_for_mask=self.zero_output_for_mask,
            return_sequences=self.return_sequences,
            recurrent_masks=rmask,
            zoneout=zoneout,
            input_side=lambda steps: _input_side(steps, masks, kernel, units),
        )

    def get_config(self):
        config = super().get_config()
        config["use_cudnn"] = self.use_cudnn
        # Only a nonzero zoneout is saved: a model without it stays loadable as plain Keras layers.
        if isinstance(self, GRU | LSTM) and self._zoneout:
            config["zoneout"] = self._zoneout
        return config


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class GRU(_FusedRNNMixin, keras.layers.GRU):
    """`keras.layers.GRU` on the fused op (same arguments, weights and results; see module doc).

    The fused path needs activation tanh and recurrent_activation sigmoid (the defaults);
    reset_after=True runs the op's gru mode, reset_after=False its gru_reset_before mode (Keras v1
    form). Other options run Keras' step loop. `zoneout=p` in [0, 1): haste's zoneout on h (see
    module doc; on either path)."""

    def __init__(self, units, *args, use_cudnn="auto", zoneout=0.0, **kwargs):
        self._set_zoneout(zoneout)
        super().__init__(units, *args, use_cudnn=use_cudnn, **kwargs)
        self._init_fused()

    @property
    def zoneout(self) -> float:
        """The zoneout rate p on h (haste semantics; 0: none)."""
        return self._zoneout

    def _fusable_mode(self):
        c = self.cell
        ok = _is(c.activation, _TANH) and _is(c.recurrent_activation, _SIGMOID)
        if not ok:
            return None
        return "gru" if c.reset_after else "gru_reset_before"

    def _unfusable_reason(self):
        c = self.cell
        if not _is(c.activation, _TANH):
            return f"activation={activations.serialize(c.activation)!r} (only 'tanh')"
        return (
            f"recurrent_activation={activations.serialize(c.recurrent_activation)!r} "
            "(only 'sigmoid')"
        )


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class LSTM(_FusedRNNMixin, keras.layers.LSTM):
    """`keras.layers.LSTM` on the fused op (same arguments, weights and results; see module doc).

    The fused path needs activation tanh and recurrent_activation sigmoid (the defaults); other
    options run Keras' step loop. `zoneout=p` in [0, 1): haste's zoneout on h only (c is not
    zoned; see module doc; on either path)."""

    def __init__(self, units, *args, use_cudnn="auto", zoneout=0.0, **kwargs):
        self._set_zoneout(zoneout)
        super().__init__(units, *args, use_cudnn=use_cudnn, **kwargs)
        self._init_fused()

    @property
    def zoneout(self) -> float:
        """The zoneout rate p on h (haste semantics; 0: none)."""
        return self._zoneout

    def _fusable_mode(self):
        c = self.cell
        ok = _is(c.activation, _TANH) and _is(c.recurrent_activation, _SIGMOID)
        return "lstm" if ok else None

    def _unfusable_reason(self):
        c = self.cell
        if not _is(c.activation, _TANH):
            return f"activation={activations.serialize(c.activation)!r} (only 'tanh')"
        return (
            f"recurrent_activation={activations.serialize(c.recurrent_activation)!r} "
            "(only 'sigmoid')"
        )


@keras.saving.register_keras_serializable(package="tf_rnn_ops")
class SimpleRNN(_FusedRNNMixin, keras.layers.SimpleRNN):
    """`keras.layers.SimpleRNN` on the fused op (same arguments, weights and results; see module
    doc). activation 'tanh' or 'relu' run the op (rnn_tanh / rnn_relu); others Keras' step loop.

    Like Keras' SimpleRNN it has no `use_cudnn` attribute; the keyword `use_cudnn` ('auto' by
    default, True: refuse options the op cannot compute, False: always Keras' step loop) is still
    accepted, kept privately and written to the config only when not 'auto' (older saved configs
    carry it)."""

    def __init__(self, units, *args, use_cudnn="auto", **kwargs):
        if use_cudnn not in ("auto", True, False):
            raise ValueError(
                "Invalid value for argument `use_cudnn`: expected one of {'auto', True, False}, "
                f"got {use_cudnn!r}"
            )
        super().__init__(units, *args, **kwargs)
        self._use_cudnn = use_cudnn
        self._init_fused()

    @property
    def _cudnn_choice(self):
        return self._use_cudnn

    def get_config(self):
        config = keras.layers.SimpleRNN.get_config(self)
        if self._use_cudnn != "auto":
            config["use_cudnn"] = self._use_cudnn
        # Keras' SimpleRNN leaves its seed out of the config (GRU and LSTM keep theirs), so a
        # clone, a reloaded model or a `Bidirectional` copy draws its dropout masks unseeded;
        # Keras' constructor takes it, so the config still loads there.
        config["seed"] = self.cell.seed
        return config

    def _fusable_mode(self):
        act = self.cell.activation
        if _is(act, _TANH):
            return "rnn_tanh"
        if _is(act, _RELU):
            return "rnn_relu"
        return None

    def _unfusable_reason(self):
        return f"activation={activations.serialize(self.cell.activation)!r} (only 'tanh' or 'relu')"

    def _input_dropout_active(self, training) -> bool:
        # SimpleRNNCell applies its dropout mask whenever it has one (dropout > 0)
        return bool(training) and self.cell.dropout > 0
