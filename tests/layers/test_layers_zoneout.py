"""`zoneout=` on tf_rnn_ops.layers.GRU (both reset_after) and LSTM: the fused op
(TfRnn>KerasRNNDropout), training and inference, alone or with (recurrent) dropout; and Keras' loop
with zoneout where the op cannot run (XLA, standard_ops, TFLite, use_cudnn=False, activations the op
lacks).

Reference, never our own output: Keras 3's own cells (float64, same weights) wrapped in haste's
zoneout and run by keras.layers.RNN (tests/support/zoneout_keras.py), with the layer's keep mask
injected (the layer draws it in `_zoneout_mask`; here replaced by a fixed mask) and Keras' dropout
masks injected into both cells: outputs, final states, gradients of the input, initial states and
every weight. Keras masks (any pattern), go_backwards, return_state, Bidirectional, B = 0, odd
sizes, a symbolic training flag, serialization, the drawn masks' statistics, bad arguments. Keras'
loop: the same reference, the fused path with the same seed, tests/cells/cell_reference.py's float64
numpy cells (inference), the TFLite interpreter and a SavedModel of standard ops.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from zoneout_keras import ZoneoutInputCell, processed_masks

import tf_rnn_ops
from tf_rnn_ops import layers as L
from tf_rnn_ops.layers import _zoneout

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cells"))
import cell_reference as ref  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-10)
RATE = 0.3
KINDS = [("GRU", {}), ("GRU", {"reset_after": False}), ("LSTM", {})]
KIND_IDS = ["gru", "gru_reset_before", "lstm"]


def _pair(name, rng, H, n_in, use_cudnn="auto", **kwargs):
    """Ours (float64, zoneout=RATE) and the Keras reference RNN on its cell, same weights."""
    ours = getattr(L, name)(H, zoneout=RATE, dtype="float64", use_cudnn=use_cudnn, **kwargs)
    layer_kw = {
        k: kwargs.pop(k)
        for k in ("return_sequences", "return_state", "go_backwards")
        if k in kwargs
    }
    cell = getattr(keras.layers, name + "Cell")(H, dtype="float64", **kwargs)
    ref = keras.layers.RNN(ZoneoutInputCell(cell, dtype="float64"), dtype="float64", **layer_kw)
    ours.build((None, None, n_in))
    ref.build((None, None, n_in + H))
    ours.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    return ours, ref


def _dropout_masks(rng, cell, B, n_in, H):
    count = getattr(cell, "dropout_mask_count", None)

    def draw(shape, rate):
        if not 0 < rate < 1:
            return None
        one = lambda: tf.constant((rng.uniform(size=shape) >= rate) / (1 - rate))  # noqa: E731
        return one() if count is None else [one() for _ in range(count)]

    return draw((B, n_in), cell.dropout), draw((B, H), cell.recurrent_dropout)


def _run(layer, x, training, mask=None, init=None, dropout=None, where="eager"):
    """Outputs (flattened list) and gradients w.r.t. x, the initial states and the weights; `where`
    the layer runs: "eager", "xla" (one tf.function(jit_compile=True)) or "standard" (inside
    tf_rnn_ops.standard_ops())."""
    if dropout is not None:
        cell = layer.cell.cell if isinstance(layer.cell, ZoneoutInputCell) else layer.cell
        cell._dropout_mask, cell._recurrent_dropout_mask = dropout
    x = tf.constant(x)
    init = None if init is None else [tf.constant(s) for s in init]

    def run(x, init):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if init is not None:
                tape.watch(init)
            out = layer(x, mask=mask, initial_state=init, training=training)
            outs = out if isinstance(out, list | tuple) else [out]
            weights = np.random.default_rng(7)  # the same cotangents for ours and the reference
            loss = sum(tf.reduce_sum(o * weights.normal(size=o.shape)) for o in outs)
        return outs, tape.gradient(loss, [x] + (init or []) + layer.trainable_weights)

    if where == "xla":
        outs, grads = tf.function(run, jit_compile=True)(x, init)
    elif where == "standard":
        with tf_rnn_ops.standard_ops():
            outs, grads = run(x, init)
    else:
        outs, grads = run(x, init)
    return [np.asarray(o) for o in outs], [np.asarray(g) for g in grads]


def _compare(name, kw, rng, B, T, n_in, H, *, training=True, valid=None, init=False,
             dropout=False, where="eager", use_cudnn="auto", **layer_kw):  # fmt: skip
    kw = dict(kw, **layer_kw)
    if dropout:
        kw.update(dropout=0.2, recurrent_dropout=0.3)
    ours, ref = _pair(name, rng, H, n_in, use_cudnn=use_cudnn, **kw)
    x = rng.normal(size=(B, T, n_in))
    zm = np.floor(1 - RATE + rng.uniform(size=(T, B, H)))
    ours._zoneout_mask = lambda _x: tf.constant(zm)
    go_back = kw.get("go_backwards", False)
    m = processed_masks(zm, valid, go_back) if training else np.full((B, T, H), 1 - RATE)
    mask = None if valid is None else tf.constant(valid)
    states = None
    if init:
        states = [rng.normal(size=(B, H)) for _ in range(2 if name == "LSTM" else 1)]
    dm = _dropout_masks(rng, ours.cell, B, n_in, H) if dropout and training else None
    got = _run(ours, x, training, mask, states, dm, where)
    want = _run(ref, np.concatenate([x, m], -1), training, mask, states, dm)
    for a, b in zip(got[0], want[0], strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    # the reference's input grad has the mask channels too
    want_grads = [want[1][0][..., :n_in]] + want[1][1:]
    for i, (a, b) in enumerate(zip(got[1], want_grads, strict=True)):
        np.testing.assert_allclose(a, b, **TOL, err_msg=f"gradient {i}")
    if x.size > 8:  # (a tiny problem may draw an all-zero keep mask: no input gradient)
        assert np.abs(got[1][0]).sum() > 0


@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_matches_keras_cell_with_zoneout(rng, kind, training):
    _compare(*kind, rng, 3, 5, 2, 4, training=training, init=True, return_sequences=True,
             return_state=True)  # fmt: skip


@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_with_dropout_mask_and_go_backwards(rng, kind, training):
    B, T = 6, 5
    valid = rng.uniform(size=(B, T)) < 0.7  # any pattern, a row with no valid step too
    valid[0] = False
    valid[1] = True
    _compare(*kind, rng, B, T, 3, 5, training=training, valid=valid, dropout=True,
             go_backwards=True, return_sequences=True)  # fmt: skip


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("size", [(1, 1, 1, 1), (2, 3, 2, 257), (3, 1, 2, 3)], ids=str)
def test_odd_sizes(rng, kind, size):
    _compare(*kind, rng, *size, return_sequences=True)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_right_padded_lengths_last_output(rng, kind):
    B, T = 5, 6
    lengths = rng.integers(1, T + 1, B)
    valid = np.arange(T)[None, :] < lengths[:, None]
    _compare(*kind, rng, B, T, 2, 3, valid=valid, dropout=True)


@pytest.mark.parametrize("where", ["eager", "xla", "standard", "use_cudnn_false"])
@pytest.mark.parametrize("name", ["GRU", "LSTM"])
def test_empty_batch(name, where):
    layer = getattr(L, name)(3, zoneout=RATE, return_sequences=True, return_state=True,
                             use_cudnn=False if where == "use_cudnn_false" else "auto")  # fmt: skip
    for training in (True, False):
        call = lambda x, training=training: layer(x, training=training)  # noqa: E731
        if where != "eager":  # Keras' own LSTMCell fails on a static batch of 0: trace it dynamic
            spec = [tf.TensorSpec((None, 4, 2))]
            call = tf.function(call, jit_compile=where == "xla", input_signature=spec)
        with tf_rnn_ops.standard_ops() if where == "standard" else contextlib.nullcontext():
            out = call(tf.zeros((0, 4, 2)))
        assert out[0].shape == (0, 4, 3) and all(s.shape == (0, 3) for s in out[1:])


@pytest.mark.parametrize("where", ["eager", "xla"])
@pytest.mark.parametrize("kind", KINDS[::2], ids=KIND_IDS[::2])
def test_bidirectional(rng, kind, where):
    """Bidirectional(ours) against two reference RNNs (the backward one on go_backwards), each with
    its own injected keep mask; fused, and Keras' loop under XLA."""
    name, kw = kind
    B, T, n_in, H = 4, 5, 2, 3
    ours = keras.layers.Bidirectional(
        getattr(L, name)(H, zoneout=RATE, dtype="float64", **kw), dtype="float64"
    )
    ours.build((None, T, n_in))
    ours.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in ours.get_weights()])
    weights = ours.get_weights()
    x = rng.normal(size=(B, T, n_in))
    valid = np.arange(T)[None, :] < rng.integers(1, T + 1, B)[:, None]
    outs = []
    for i, (layer, back) in enumerate(((ours.forward_layer, False), (ours.backward_layer, True))):
        zm = np.floor(1 - RATE + rng.uniform(size=(T, B, H)))
        layer._zoneout_mask = lambda _x, zm=zm: tf.constant(zm)
        cell = getattr(keras.layers, name + "Cell")(H, dtype="float64", **kw)
        ref = keras.layers.RNN(ZoneoutInputCell(cell, dtype="float64"), go_backwards=back,
                               dtype="float64")  # fmt: skip
        ref.build((None, T, n_in + H))
        n = len(weights) // 2
        ref.set_weights(weights[i * n : (i + 1) * n])
        m = processed_masks(zm, valid, back)
        outs.append(ref(np.concatenate([x, m], -1), mask=tf.constant(valid), training=True))
    call = lambda x: ours(x, mask=tf.constant(valid), training=True)  # noqa: E731
    got = tf.function(call, jit_compile=True)(x) if where == "xla" else call(x)
    np.testing.assert_allclose(got, np.concatenate(outs, -1), **TOL)


@pytest.mark.parametrize("use_cudnn", ["auto", False], ids=["fused", "keras_loop"])
@pytest.mark.parametrize("name", ["GRU", "LSTM"])
def test_symbolic_training_flag_keeps_zoneout(rng, name, use_cudnn):
    """A training tensor picks the training call (the injected mask) or the inference one, fused
    or in Keras' loop."""
    layer = getattr(L, name)(4, zoneout=RATE, dtype="float64", return_sequences=True,
                             use_cudnn=use_cudnn)  # fmt: skip
    x = tf.constant(rng.normal(size=(3, 5, 2)))
    zm = np.floor(1 - RATE + rng.uniform(size=(5, 3, 4)))
    layer._zoneout_mask = lambda _x: tf.constant(zm)
    f = tf.function(lambda x, training: layer(x, training=training))
    for flag in (True, False):
        np.testing.assert_allclose(
            f(x, tf.constant(flag)), layer(x, training=flag), rtol=1e-12, atol=1e-12
        )
    assert not np.allclose(layer(x, training=True), layer(x, training=False))


@pytest.mark.parametrize("name", ["GRU", "LSTM"])
def test_drawn_masks(name):
    """The layer's own masks: {0, 1}, mean 1 - p, fresh per step, row and call."""
    layer = getattr(L, name)(50, zoneout=RATE, seed=3)
    x = tf.zeros((40, 50, 2))
    a, b = np.asarray(layer._zoneout_mask(x)), np.asarray(layer._zoneout_mask(x))
    assert a.shape == (50, 40, 50)
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert abs(a.mean() - (1 - RATE)) < 0.01
    assert (
        0.3 < (a != b).mean() and 0.3 < (a[0] != a[1]).mean() and 0.3 < (a[:, 0] != a[:, 1]).mean()
    )
    # through a call: training differs between calls, inference does not
    layer = getattr(L, name)(3, zoneout=RATE, seed=4, return_sequences=True)
    x = tf.random.normal((4, 6, 2))
    assert not np.allclose(layer(x, training=True), layer(x, training=True))
    np.testing.assert_array_equal(layer(x, training=False), layer(x, training=False))


@pytest.mark.parametrize("name", ["GRU", "LSTM"])
def test_serialization_round_trip(rng, name):
    layer = getattr(L, name)(3, zoneout=0.25, return_sequences=True)
    assert layer.get_config()["zoneout"] == 0.25
    clone = type(layer).from_config(layer.get_config())
    assert clone.zoneout == 0.25 and clone.get_config() == layer.get_config()
    model = keras.Sequential([keras.Input((5, 2)), layer])
    x = rng.normal(size=(2, 5, 2)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert loaded.layers[0].zoneout == 0.25
        np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), rtol=1e-6)
        export = os.path.join(d, "saved")
        model.export(export, verbose=False)  # SavedModel: the inference form
        restored = tf.saved_model.load(export)
        served = restored.serve(tf.constant(x))
        np.testing.assert_allclose(served, model(x, training=False), rtol=1e-6)


def test_zero_zoneout_keeps_the_plain_path():
    """zoneout=0 (the default): the config leaves it out (a plain Keras GRU loads it) and the plain
    op runs, not the dropout op."""
    layer = L.GRU(3, return_sequences=True)
    assert "zoneout" not in layer.get_config()
    f = tf.function(lambda x: layer(x, training=True))
    graph = f.get_concrete_function(tf.TensorSpec((2, 4, 2))).graph
    types = {op.type for op in graph.get_operations()}
    assert "TfRnn>KerasRNN" in types and "TfRnn>KerasRNNDropout" not in types


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(zoneout=-0.1), "zoneout"),
        (dict(zoneout=1.0), "zoneout"),
        (dict(zoneout=float("nan")), "zoneout"),
        (dict(zoneout="0.1x"), "zoneout"),
        (dict(zoneout=True), "zoneout"),
        (dict(zoneout=0.1, activation="relu", use_cudnn=True), "activation"),
    ],
)
@pytest.mark.parametrize("name", ["GRU", "LSTM"])
def test_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(L, name)(3, **kwargs)


# Where the fused op cannot run: Keras' step loop with zoneout (`_zoneout.keras_loop`).
ELSEWHERE = ["xla", "standard", "use_cudnn_false"]


@pytest.mark.parametrize("where", ELSEWHERE)
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_keras_loop_matches_keras_cell_with_zoneout(rng, kind, where):
    """Under XLA, in standard_ops and with use_cudnn=False: the reference with the same injected
    keep mask (as the fused path above), training and inference, with dropout, a mask of any
    pattern, go_backwards, initial states, return_state; outputs and gradients."""
    B, T = 4, 5
    valid = rng.uniform(size=(B, T)) < 0.7
    valid[0], valid[1] = False, True
    run_kw = dict(use_cudnn=False) if where == "use_cudnn_false" else dict(where=where)
    # (XLA inference: test_inference_matches_numpy_reference; each XLA compile costs seconds)
    for training in (True,) if where == "xla" else (True, False):
        _compare(*kind, rng, B, T, 3, 4, training=training, valid=valid, init=True, dropout=True,
                 go_backwards=True, return_sequences=True, return_state=True,
                 **run_kw)  # fmt: skip


@pytest.mark.parametrize(
    "kind",
    [
        ("GRU", {"activation": "relu"}),
        ("GRU", {"recurrent_activation": "hard_sigmoid", "reset_after": False}),
        ("LSTM", {"activation": "softsign"}),
    ],  # fmt: skip
    ids=["gru_relu", "gru_reset_before_hard_sigmoid", "lstm_softsign"],
)
def test_activation_the_op_lacks(rng, kind):
    """An activation the fused op cannot compute runs Keras' loop with zoneout (the reference cell
    has the same activation)."""
    valid = np.arange(5)[None, :] < rng.integers(1, 6, 3)[:, None]
    for training in (True, False):
        _compare(*kind, rng, 3, 5, 2, 3, training=training, valid=valid, dropout=True,
                 return_sequences=True)  # fmt: skip


@pytest.mark.parametrize("where", ["standard", "use_cudnn_false"])
@pytest.mark.parametrize("name", ["GRU", "LSTM"])
def test_same_seed_same_numbers_as_fused(rng, name, where):
    """Nothing injected: a layer with the same seed and weights draws the same dropout and keep
    masks (in the same order) in Keras' loop as on the fused op, so the same outputs and gradients
    in training. (Not under XLA: there TensorFlow's stateless random ops, Keras' dropout masks
    included, give other numbers for the same seed.)"""
    rates = dict(dropout=0.2, recurrent_dropout=0.3)

    def make(use_cudnn):
        layer = getattr(L, name)(5, zoneout=RATE, **rates, seed=11,
                                 return_sequences=True, return_state=True, dtype="float64",
                                 use_cudnn=use_cudnn)  # fmt: skip
        layer.build((None, None, 3))
        return layer

    fused = make("auto")
    fused.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in fused.get_weights()])
    other = make(False if where == "use_cudnn_false" else "auto")
    other.set_weights(fused.get_weights())
    x = rng.normal(size=(4, 6, 3))
    mask = tf.constant(rng.uniform(size=(4, 6)) < 0.8)
    want = _run(fused, x, True, mask)
    got = _run(other, x, True, mask, where="standard" if where == "standard" else "eager")
    for a, b in zip(got[0] + got[1], want[0] + want[1], strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    inference = _run(fused, x, False, mask)[0][0]
    assert not np.allclose(got[0][0], inference)  # the training masks were applied


@pytest.mark.parametrize("where", ["eager", "xla", "standard"])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_inference_matches_numpy_reference(rng, kind, where):
    """Inference (h_t = p h_{t-1} + (1 - p) h~_t) on the fused op, under XLA and in standard_ops,
    against tests/cells/cell_reference.py's float64 cells and zoneout."""
    name, kw = kind
    B, T, n_in, H = 3, 5, 2, 4
    layer = getattr(L, name)(H, zoneout=RATE, dtype="float64", return_sequences=True,
                             return_state=True, **kw)  # fmt: skip
    layer.build((None, None, n_in))
    weights = [rng.uniform(-0.6, 0.6, w.shape) for w in layer.get_weights()]
    layer.set_weights(weights)
    x = rng.normal(size=(B, T, n_in))
    init = [rng.normal(size=(B, H)) for _ in range(2 if name == "LSTM" else 1)]
    if name == "LSTM":
        step = ref.lstm_cell(*weights)
    else:
        step = ref.gru_cell(*weights, reset_after=kw.get("reset_after", True))
    seq, _, states = ref.rnn(ref.zoneout(step, RATE), x, init)
    got, _ = _run(layer, x, False, init=init, where=where)
    for a, b in zip(got, [seq, *states], strict=True):
        np.testing.assert_allclose(a, b, **TOL)


def _tflite_run(content: bytes, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=content)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops and not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("batch", [3, None], ids=["fixed_batch", "dynamic_batch"])
def test_tflite_conversion(rng, batch):
    """A zoneout GRU / LSTM model converts with builtin ops only; the interpreter's outputs equal
    the fused op's inference."""
    inp = keras.Input((6, 4), batch_size=batch)
    h = keras.layers.Bidirectional(L.GRU(5, zoneout=RATE, return_sequences=True))(inp)
    h = L.LSTM(3, zoneout=RATE, go_backwards=True)(h)
    model = keras.Model(inp, h)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype)
                       for w in model.get_weights()])  # fmt: skip
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    np.testing.assert_allclose(_tflite_run(content, x), model(x, training=False), rtol=1e-5,
                               atol=1e-5)  # fmt: skip


def test_standard_ops_saved_model(tmp_path, rng):
    """Exported inside standard_ops(): no custom op in the SavedModel; loaded, it serves the fused
    op's inference."""
    model = keras.Sequential([
        keras.Input((5, 2)),
        L.GRU(4, zoneout=RATE, return_sequences=True, go_backwards=True),
        L.LSTM(3, zoneout=RATE),
    ])  # fmt: skip
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype)
                       for w in model.get_weights()])  # fmt: skip
    path = str(tmp_path / "standard")
    with tf_rnn_ops.standard_ops():
        model.export(path, verbose=False)
    assert b"TfRnn" not in (tmp_path / "standard" / "saved_model.pb").read_bytes()
    x = rng.normal(size=(2, 5, 2)).astype(np.float32)
    restored = tf.saved_model.load(path)  # (kept: its functions need its variables)
    served = restored.serve(tf.constant(x))
    np.testing.assert_allclose(served, model(x, training=False), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.7])
def test_keep_mask_16_bit_draws(rate):
    """`_zoneout.keep_mask` under TensorFlow: U from 16 random bits, two values a 32-bit draw. The
    keep rate is 1 - ceil(p 2^16) / 2^16 (within 5 sigma over 3.3M values, an odd last dimension),
    the two halves of a draw are independent (neighbours agree as often as independent values
    would), and a rate beyond 1 - 2^-16 keeps nothing."""
    seed = keras.random.SeedGenerator(int(np.random.default_rng().integers(1 << 30)))
    m = np.asarray(_zoneout.keep_mask((200, 64, 257), rate, "float32", seed))
    assert m.shape == (200, 64, 257) and set(np.unique(m)) <= {0.0, 1.0}
    keep = 1 - np.ceil(rate * 65536) / 65536
    assert abs(m.mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / m.size)
    same = (m[..., 0:256:2] == m[..., 1:257:2]).mean()  # a draw's two halves
    want = keep**2 + (1 - keep) ** 2
    assert abs(same - want) < 5 * np.sqrt(want * (1 - want) / (m.size / 2))
    assert abs(m[..., 256].mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / (200 * 64))
    assert np.asarray(_zoneout.keep_mask((3, 5), 1 - 2**-17, "float64", seed)).sum() == 0
