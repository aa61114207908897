"""TFLite conversion of models with the drop-in layers: `tf.lite.TFLiteConverter.from_keras_model`
converts them with builtin ops only (the layers trace Keras' formulation while the converter traces
the model), a full-sequence LSTM into TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM, and the
interpreter's results equal Keras' layers with the same weights."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_rnn_ops import layers as L

TOL = dict(rtol=1e-5, atol=1e-5)
BATCH, STEPS, IN = 3, 6, 4


def _interpreter(content: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    return interpreter


def _invoke(interpreter, x):
    """All outputs for x; the state tensors of fused LSTMs are reset first (TFLite keeps them as
    variables between invocations)."""
    interpreter.reset_all_variables()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    details = sorted(interpreter.get_output_details(), key=lambda d: d["name"])
    return [interpreter.get_tensor(d["index"]) for d in details]


def _ops(interpreter) -> set[str]:
    return {op["op_name"] for op in interpreter._get_ops_details()}


def _convert(build, rng):
    """(tflite bytes, our model, Keras' model with the same weights)."""
    ours, ref = build(L), build(keras.layers)
    ours.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    content = tf.lite.TFLiteConverter.from_keras_model(ours).convert()
    return content, ours, ref


def _builtin_only(ops: set[str]):
    assert ops, "no ops"
    assert not any(op.startswith("Flex") or op == "CUSTOM" or "TfRnn" in op for op in ops), ops


def test_stack_converts_with_builtin_ops_and_fused_lstm(rng):
    def build(mod):
        inp = keras.Input((STEPS, IN), batch_size=BATCH)
        h = mod.LSTM(5, return_sequences=True)(inp)
        h = keras.layers.Bidirectional(mod.GRU(3, return_sequences=True))(h)
        h = keras.layers.Bidirectional(mod.LSTM(4, return_sequences=True), merge_mode="sum")(h)
        h = mod.SimpleRNN(7, activation="relu", return_sequences=True)(h)
        h = mod.SimpleRNN(2)(h)
        return keras.Model(inp, h)

    content, ours, ref = _convert(build, rng)
    interpreter = _interpreter(content)
    ops = _ops(interpreter)
    _builtin_only(ops)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops, ops
    for _ in range(2):
        x = rng.standard_normal((BATCH, STEPS, IN)).astype(np.float32)
        (got,) = _invoke(interpreter, x)
        np.testing.assert_allclose(got, ref(x), **TOL)
        np.testing.assert_allclose(got, ours(x), **TOL)


def test_lstm_alone_is_one_fused_op(rng):
    """Keras 3's own LSTM converts into a WHILE loop; ours into TFLite's fused LSTM (backwards
    too)."""

    def build(mod):
        inp = keras.Input((STEPS, IN), batch_size=BATCH)
        h = mod.LSTM(6, return_sequences=True, go_backwards=True)(inp)
        return keras.Model(inp, mod.LSTM(3, use_bias=False)(h))

    content, _, ref = _convert(build, rng)
    interpreter = _interpreter(content)
    ops = _ops(interpreter)
    _builtin_only(ops)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops and "WHILE" not in ops, ops
    x = rng.standard_normal((BATCH, STEPS, IN)).astype(np.float32)
    (got,) = _invoke(interpreter, x)
    np.testing.assert_allclose(got, ref(x), **TOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["GRU", "LSTM", "SimpleRNN"])
def test_returned_states_convert_as_a_loop(name, rng):
    """A layer whose states are used (return_state) cannot be the fused op (TFLite's returns no
    state): the converter keeps the loop, still builtin ops, still Keras' numbers."""

    def build(mod):
        inp = keras.Input((STEPS, IN), batch_size=BATCH)
        out = getattr(mod, name)(4, return_state=True)(inp)
        return keras.Model(inp, keras.layers.Concatenate()(out))

    content, _, ref = _convert(build, rng)
    interpreter = _interpreter(content)
    _builtin_only(_ops(interpreter))
    x = rng.standard_normal((BATCH, STEPS, IN)).astype(np.float32)
    (got,) = _invoke(interpreter, x)
    np.testing.assert_allclose(got, ref(x), **TOL)


def test_dynamic_batch_converts_unrolled(rng):
    """With the batch size left open, Keras 3's own layers do not convert with builtin ops (the
    converter cannot lower their loop's output list); ours unroll their known steps and do, and the
    interpreter serves any batch size."""

    def build(mod):
        inp = keras.Input((STEPS, IN))
        h = keras.layers.Bidirectional(mod.LSTM(3, return_sequences=True))(inp)
        h = mod.GRU(4, return_sequences=True, go_backwards=True)(h)
        return keras.Model(inp, mod.SimpleRNN(2)(h))

    content, _, ref = _convert(build, rng)
    interpreter = _interpreter(content)
    ops = _ops(interpreter)
    _builtin_only(ops)
    assert "WHILE" not in ops, ops
    index = interpreter.get_input_details()[0]["index"]
    for batch in (1, 5):
        interpreter.resize_tensor_input(index, (batch, STEPS, IN))
        interpreter.allocate_tensors()
        x = rng.standard_normal((batch, STEPS, IN)).astype(np.float32)
        (got,) = _invoke(interpreter, x)
        np.testing.assert_allclose(got, ref(x), **TOL)
