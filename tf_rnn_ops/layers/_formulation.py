"""When the drop-in layers trace Keras' own formulation instead of the fused op.

The fused op is a custom op: XLA cannot compile it, the TFLite converter has no builtin for it, and
a SavedModel that contains it loads only where `tf_rnn_ops` is imported. In these three cases the
layers of `tf_rnn_ops.layers.rnn` trace the formulation of their Keras namesakes instead (Keras'
step loop, `keras.layers.RNN.inner_loop`, with the same weights, so the same numbers):

* inside an XLA compilation (`tf.function(jit_compile=True)`, `model.compile(jit_compile=True)`);
* while `tf.lite.TFLiteConverter` traces a model (`from_keras_model(...).convert()`); there a
  full-sequence LSTM traces a function that declares the Keras LSTM interface
  (`api_implements="lstm_<uuid>"`), which the converter fuses into TFLite's builtin
  `UNIDIRECTIONAL_SEQUENCE_LSTM` when the batch size is fixed (see `lite_lstm`);
* inside `with tf_rnn_ops.standard_ops():` — for exporting a SavedModel (`model.export`,
  `tf.saved_model.save`) of standard TensorFlow ops only, which TensorFlow Serving, TF.js or any
  process without this package can load.

The drop-in GRU / LSTM with `zoneout=p` trace the same loop with zoneout on h
(`_zoneout.keras_loop`: the keep mask the layer draws for the fused op, so the same seed gives the
same numbers), here and for the options the fused op lacks.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import uuid
from collections.abc import Iterator

import tensorflow as tf

from tf_rnn_ops._xla import in_xla_context
from tf_rnn_ops.layers import _zoneout

__all__ = ["standard_ops", "formulation", "resolving_auto_jit", "lite_lstm"]

_lock = threading.Lock()
_depth = 0  # open `standard_ops()` blocks, process-wide (tracing may run on other threads)

# Frames of these modules on the stack mean "the TFLite converter is tracing this call".
_LITE_MODULES = ("tensorflow.lite.python.", "tensorflow.lite.python")
_MAX_FRAMES = 400


@contextlib.contextmanager
def standard_ops() -> Iterator[None]:
    """Within this block, the drop-in layers `tf_rnn_ops.layers.GRU`, `LSTM` and `SimpleRNN` trace
    Keras' own formulation (standard TensorFlow ops, the same weights and results) instead of the
    fused op.

    Use it to export a model trained with these layers as a SavedModel that any TensorFlow (stock
    TensorFlow Serving, TF.js, a process that never imports `tf_rnn_ops`) can load::

        with tf_rnn_ops.standard_ops():
            model.export("exported")  # or tf.saved_model.save(model, "exported")

    Only graphs traced inside the block are affected: functions already traced (a Keras model's
    cached `predict_function`, a `tf.function` called before) keep the op. The setting is
    process-wide while the block is open. Blocks nest.
    """
    global _depth
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1


def _lite_converter_on_stack() -> bool:
    frame = sys._getframe(2)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return False
        name = frame.f_globals.get("__name__", "")
        if name.startswith(_LITE_MODULES):
            return True
        frame = frame.f_back
    return False


def formulation() -> str | None:
    """Which formulation the layers trace now: "xla" (inside an XLA compilation), "lite" (the TFLite
    converter is tracing), "standard" (inside `standard_ops()`), or None (the fused op)."""
    if tf.executing_eagerly():
        return "standard" if _depth else None
    if in_xla_context():
        return "xla"
    if _lite_converter_on_stack():
        return "lite"
    if _depth:
        return "standard"
    return None


def resolving_auto_jit() -> bool:
    """True while Keras resolves `jit_compile="auto"` (`Trainer._resolve_auto_jit_compile`).

    The layers then answer `supports_jit = False`, as Keras' own GRU/LSTM do on their cuDNN path, so
    that "auto" keeps the fused op; an explicit `jit_compile=True` is honoured (the layers trace
    Keras' formulation under XLA)."""
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return False
        if frame.f_code.co_name == "_resolve_auto_jit_compile":
            return True
        frame = frame.f_back
    return False


def _lstm_body(inputs, init_h, init_c, kernel, recurrent_kernel, bias, go_backwards):
    """Keras' LSTM (activation tanh, recurrent_activation sigmoid, implementation 2) over a
    batch-major sequence, in standard TensorFlow ops; returns the five outputs of tf.keras 2's
    `standard_lstm` (last output, full outputs, h, c, a runtime tag)."""
    x = tf.transpose(inputs, [1, 0, 2])  # [T, B, I]
    if go_backwards:
        x = tf.reverse(x, [0])
    proj = tf.einsum("tbi,ij->tbj", x, kernel) + bias

    def step(carry, z_x):
        h, c = carry
        z = z_x + tf.matmul(h, recurrent_kernel)
        zi, zf, zc, zo = tf.split(z, 4, axis=1)
        c = tf.sigmoid(zf) * c + tf.sigmoid(zi) * tf.tanh(zc)
        h = tf.sigmoid(zo) * tf.tanh(c)
        return h, c

    hs, cs = tf.scan(step, proj, initializer=(init_h, init_c))
    outputs = tf.transpose(hs, [1, 0, 2])
    steps = tf.shape(x)[0]
    new_h = tf.cond(steps > 0, lambda: hs[-1], lambda: init_h)
    new_c = tf.cond(steps > 0, lambda: cs[-1], lambda: init_c)
    last = new_h
    runtime = tf.constant(0.0, dtype=tf.float32, name="runtime")
    return last, outputs, new_h, new_c, runtime


def lite_lstm(inputs, init_h, init_c, kernel, recurrent_kernel, bias, go_backwards=False):
    """An LSTM over a batch-major sequence, traced as a function that declares the Keras LSTM
    interface of tf.keras 2 (attributes `api_implements="lstm_<uuid>"`, `time_major`,
    `go_backwards`; arguments inputs, init_h, init_c, kernel [I, 4H], recurrent_kernel [H, 4H],
    bias [4H] in Keras' gate order i, f, c, o; five outputs).

    TFLite's converter replaces such a function by its builtin `UNIDIRECTIONAL_SEQUENCE_LSTM` when
    only the first two outputs are used (no returned state) and the batch size and weights have
    static shapes; otherwise it converts the body (standard ops). Returns (last [B, H], outputs
    [B, T, H], h [B, H], c [B, H]).
    """
    fn = tf.function(
        _lstm_body,
        autograph=False,
        experimental_attributes={
            "api_implements": f"lstm_{uuid.uuid4()}",
            "time_major": False,
            "go_backwards": bool(go_backwards),
        },
    )
    last, outputs, h, c, _ = fn(
        inputs, init_h, init_c, kernel, recurrent_kernel, bias, go_backwards=bool(go_backwards)
    )
    return last, outputs, h, c


def standard_inner_loop(layer, how: str | None, sequences, initial_state, mask, training,
                        zoneout=None):  # fmt: skip
    """`inner_loop` of a drop-in layer in Keras' formulation (`how` from `formulation()`; None: a
    layer option the fused op lacks).

    Keras' step loop (`keras.layers.RNN.inner_loop`, not Keras' GRU/LSTM.inner_loop, whose cuDNN
    path XLA and TFLite cannot take either); with `zoneout` (the keep mask [T, B, H] or the scalar
    1 - p, as the fused op takes it) the same loop with zoneout on h (`_zoneout.keras_loop`). For
    "lite": with a dynamic batch size and known steps the loop is unrolled (TFLite's converter
    cannot lower a loop's output list without the batch size); else a full-sequence LSTM (no
    mask, inference, float32, not stateful, no zoneout) goes through `lite_lstm`, which the
    converter fuses."""
    import keras

    # The converter lowers a loop's output list only for a known batch size (Keras' own layers
    # fail here): with a dynamic batch and known steps, unroll Keras' loop instead (no list).
    lite_unroll = how == "lite" and sequences.shape[0] is None and sequences.shape[1] is not None
    if zoneout is not None:
        return _zoneout.keras_loop(
            layer, sequences, initial_state, mask, training, zoneout,
            unroll=layer.unroll or lite_unroll,
        )  # fmt: skip
    if lite_unroll:
        unroll = layer.unroll
        layer.unroll = True
        try:
            return keras.layers.RNN.inner_loop(
                layer, sequences, initial_state, mask=mask, training=training
            )
        finally:
            layer.unroll = unroll
    if how == "lite" and _lite_lstm_applies(layer, sequences, mask, training):
        cell = layer.cell
        states = list(initial_state) if tf.nest.is_nested(initial_state) else [initial_state]
        kernel = tf.convert_to_tensor(cell.kernel)
        recurrent = tf.convert_to_tensor(cell.recurrent_kernel)
        units = recurrent.shape[0]
        bias = tf.convert_to_tensor(cell.bias) if cell.use_bias else tf.zeros([4 * units])
        last, outputs, h, c = lite_lstm(
            sequences, states[0], states[1], kernel, recurrent, bias, layer.go_backwards
        )
        if not layer.return_sequences:
            outputs = last[:, tf.newaxis]
        return last, outputs, [h, c]
    return keras.layers.RNN.inner_loop(
        layer, sequences, initial_state, mask=mask, training=training
    )


def _lite_lstm_applies(layer, sequences, mask, training) -> bool:
    if getattr(layer, "_fused_mode", None) != "lstm" or mask is not None or layer.stateful:
        return False
    if training is not False and training is not None:
        return False
    return sequences.dtype == tf.float32 and layer.cell.compute_dtype == "float32"
