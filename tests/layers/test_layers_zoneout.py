"""`zoneout=` on tf_rnn_ops.layers.GRU (both reset_after) and LSTM: always the fused op
(TfRnn>KerasRNNDropout), training and inference, alone or with (recurrent) dropout.

Reference, never our own output: Keras 3's own cells (float64, same weights) wrapped in haste's
zoneout and run by keras.layers.RNN (tests/support/zoneout_keras.py), with the layer's keep mask
injected (the layer draws it in `_zoneout_mask`; here replaced by a fixed mask) and Keras' dropout
masks injected into both cells: outputs, final states, gradients of the input, initial states and
every weight. Keras masks (any pattern), go_backwards, return_state, Bidirectional, B = 0, odd
sizes, a symbolic training flag, serialization, the drawn masks' statistics, bad arguments.
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from zoneout_keras import ZoneoutInputCell, processed_masks

from tf_rnn_ops import layers as L

TOL = dict(rtol=1e-10, atol=1e-10)
RATE = 0.3
KINDS = [("GRU", {}), ("GRU", {"reset_after": False}), ("LSTM", {})]
KIND_IDS = ["gru", "gru_reset_before", "lstm"]


def _pair(name, rng, H, n_in, **kwargs):
    """Ours (float64, zoneout=RATE) and the Keras reference RNN on its cell, same weights."""
    ours = getattr(L, name)(H, zoneout=RATE, dtype="float64", **kwargs)
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


def _run(layer, x, training, mask=None, init=None, dropout=None):
    """Outputs (flattened list) and gradients w.r.t. x, the initial states and the weights."""
    if dropout is not None:
        cell = layer.cell.cell if isinstance(layer.cell, ZoneoutInputCell) else layer.cell
        cell._dropout_mask, cell._recurrent_dropout_mask = dropout
    x = tf.constant(x)
    init = None if init is None else [tf.constant(s) for s in init]
    with tf.GradientTape() as tape:
        tape.watch(x)
        if init is not None:
            tape.watch(init)
        out = layer(x, mask=mask, initial_state=init, training=training)
        outs = out if isinstance(out, list | tuple) else [out]
        weights = np.random.default_rng(7)  # the same cotangents for ours and the reference
        loss = sum(tf.reduce_sum(o * weights.normal(size=o.shape)) for o in outs)
    grads = tape.gradient(loss, [x] + (init or []) + layer.trainable_weights)
    return [np.asarray(o) for o in outs], [np.asarray(g) for g in grads]


def _compare(name, kw, rng, B, T, n_in, H, *, training=True, valid=None, init=False,
             dropout=False, **layer_kw):  # fmt: skip
    kw = dict(kw, **layer_kw)
    if dropout:
        kw.update(dropout=0.2, recurrent_dropout=0.3)
    ours, ref = _pair(name, rng, H, n_in, **kw)
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
    got = _run(ours, x, training, mask, states, dm)
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


@pytest.mark.parametrize("name", ["GRU", "LSTM"])
def test_empty_batch(name):
    layer = getattr(L, name)(3, zoneout=RATE, return_sequences=True, return_state=True)
    for training in (True, False):
        out = layer(tf.zeros((0, 4, 2)), training=training)
        assert out[0].shape == (0, 4, 3) and all(s.shape == (0, 3) for s in out[1:])


@pytest.mark.parametrize("kind", KINDS[::2], ids=KIND_IDS[::2])
def test_bidirectional(rng, kind):
    """Bidirectional(ours) against two reference RNNs (the backward one on go_backwards), each with
    its own injected keep mask."""
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
    got = ours(x, mask=tf.constant(valid), training=True)
    np.testing.assert_allclose(got, np.concatenate(outs, -1), **TOL)


@pytest.mark.parametrize("name", ["GRU", "LSTM"])
def test_symbolic_training_flag_keeps_zoneout(rng, name):
    """A training tensor picks the fused training call (the injected mask) or the inference one."""
    layer = getattr(L, name)(4, zoneout=RATE, dtype="float64", return_sequences=True)
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
        (dict(zoneout=0.1, activation="relu"), "activation"),
        (dict(zoneout=0.1, use_cudnn=False), "use_cudnn=False"),
    ],
)
@pytest.mark.parametrize("name", ["GRU", "LSTM"])
def test_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(L, name)(3, **kwargs)


def test_xla_is_refused():
    layer = L.LSTM(3, zoneout=0.1)
    f = tf.function(lambda x: layer(x, training=True), jit_compile=True)
    with pytest.raises(ValueError, match="zoneout"):
        f(tf.zeros((2, 4, 2)))
