"""Randomized configurations of the layers against their independent peers, options crossed.

The other layer tests take one option at a time (or a few fixed crossings); a user's model crosses
them. Each case here draws a whole configuration from its own seed: layer kind, sizes (units,
inputs, batch down to 0, steps), return_sequences / return_state, go_backwards, use_bias, GRU's
reset_after, SimpleRNN's relu, unroll, input and recurrent dropout with a layer seed, a mask
(right-padded, left-padded, holes, an all-masked row), initial states, float32 / float64. It then
runs ours and the peer, both holding the same weights, in inference and in training (a fresh pair
for each: the seed generators start alike), and compares the outputs and the gradients of a
weighted sum of every output w.r.t. the input, the initial states and every weight:

* the drop-in GRU / LSTM / SimpleRNN against `keras.layers`' (with dropout: the same seed gives
  Keras' masks, docs/MATH.md "Keras layers"); Keras' LSTM fails at B = 0, where ours must still
  give zero weight gradients;
* `keras.layers.Bidirectional` over either (merge modes, states for both directions, stateful
  layers over two calls);
* LayerNormLSTM / LayerNormGRU against `keras.layers.RNN` over the same cell, which runs the
  cell's Keras-ops step (zoneout in training is left out: there the cell draws its masks step by
  step, the layer all at once, docs/MATH.md "Zoneout").

`make test` runs 16 cases of each; `make stress` (TF_RNN_OPS_STRESS=1) runs
TF_RNN_OPS_STRESS_RANDOM_CONFIGS (default 300). TF_RNN_OPS_TEST_SEED moves every case's seed.
"""

from __future__ import annotations

import os
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_rnn_ops import layers as L

_STRESS = os.environ.get("TF_RNN_OPS_STRESS", "") not in ("", "0")
_CASES = int(os.environ.get("TF_RNN_OPS_STRESS_RANDOM_CONFIGS", "300")) if _STRESS else 16


def _case_rng(family: str, index: int) -> np.random.Generator:
    seed = zlib.crc32(f"{family}-{index}".encode()) ^ int(
        os.environ.get("TF_RNN_OPS_TEST_SEED", "0")
    )
    return np.random.default_rng(seed)


def _mask(rng, kind: str, B: int, T: int):
    if kind == "none":
        return None
    if kind == "right":
        return tf.constant(np.arange(T)[None] < rng.integers(0, T + 1, B)[:, None])
    if kind == "left":
        return tf.constant(np.arange(T)[None] >= T - rng.integers(0, T + 1, B)[:, None])
    mask = rng.random((B, T)) < 0.6
    if kind == "masked_row" and B:
        mask[0] = False
    return tf.constant(mask)


def _outputs(layer, x, init, mask, training):
    """(outputs, grads of a weighted sum of them w.r.t. x, the initial states and the weights)."""
    with tf.GradientTape() as tape:
        sources = [x] + list(init or [])
        tape.watch(sources)
        out = layer(x, initial_state=init, mask=mask, training=training)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        loss = sum(
            tf.reduce_sum(tf.reshape(o, [-1]) * tf.cast(tf.linspace(0.5, 1.5, tf.size(o)), o.dtype))
            for o in outs
        )
    grads = tape.gradient(
        loss, sources + layer.trainable_weights, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    return [np.asarray(o) for o in outs], [np.asarray(g) for g in grads]


def _assert_same(ours, peer, dtype, what):
    tol = 1e-9 if dtype == "float64" else 3e-5
    (outs, grads), (peer_outs, peer_grads) = ours, peer
    assert len(outs) == len(peer_outs) and len(grads) == len(peer_grads), what
    for i, (a, b) in enumerate(zip(outs, peer_outs, strict=True)):
        assert a.shape == b.shape, f"{what}: output {i} {a.shape} vs {b.shape}"
        np.testing.assert_allclose(
            a, b, rtol=10 * tol, atol=10 * tol, err_msg=f"{what}: output {i}"
        )
    for i, (a, b) in enumerate(zip(grads, peer_grads, strict=True)):
        assert a.shape == b.shape, f"{what}: grad {i} {a.shape} vs {b.shape}"
        scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
        np.testing.assert_allclose(
            a, b, rtol=100 * tol, atol=100 * tol * scale, err_msg=f"{what}: grad {i}"
        )


def _same_weights(rng, weights, n_in: int, *layers):
    """Builds the layers for n_in input features and gives them all `weights`, drawn from the
    first layer's shapes where None; returns them."""
    for layer in layers:
        layer.build((None, None, n_in))
    if weights is None:
        weights = [rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in layers[0].get_weights()]
    for layer in layers:
        layer.set_weights(weights)
    return weights


def _draw_inputs(rng, lstm: bool):
    """dtype, sizes (units, inputs, batch, steps), a mask (or None), x and initial states (or
    None) of a case."""
    dtype = "float64" if rng.integers(3) == 0 else "float32"
    H, I, B, T = (  # noqa: E741
        int(rng.choice([1, 2, 3, 5, 8, 17])),  # units
        int(rng.choice([1, 2, 4, 7])),  # inputs
        int(rng.choice([0, 1, 2, 3, 5, 9])),  # batch
        int(rng.choice([1, 2, 3, 6, 11])),  # steps
    )
    mask = _mask(rng, str(rng.choice(["none", "right", "left", "holes", "masked_row"])), B, T)
    x = tf.constant(rng.normal(size=(B, T, I)).astype(dtype))
    init = None
    if rng.integers(2):
        init = [tf.constant(rng.normal(size=(B, H)).astype(dtype)) for _ in range(1 + lstm)]
    return dtype, (H, I, B, T), mask, x, init


@pytest.mark.parametrize("index", range(_CASES))
def test_drop_in_layers_against_keras(index):
    rng = _case_rng("drop_in", index)
    cls = str(rng.choice(["GRU", "LSTM", "SimpleRNN"]))
    kw = dict(
        return_sequences=bool(rng.integers(2)), return_state=bool(rng.integers(2)),
        go_backwards=bool(rng.integers(2)), use_bias=bool(rng.integers(4) > 0),
        seed=int(rng.integers(1 << 20)),
    )  # fmt: skip
    if cls == "GRU":
        kw["reset_after"] = bool(rng.integers(3) > 0)
    if cls == "LSTM":
        kw["unit_forget_bias"] = bool(rng.integers(2))
    if cls == "SimpleRNN" and rng.integers(3) == 0:
        kw["activation"] = "relu"
    if rng.integers(6) == 0:
        kw["unroll"] = True
    for rate in ("dropout", "recurrent_dropout"):
        if rng.integers(3) == 0:
            kw[rate] = 0.3
    dtype, (H, I, B, T), mask, x, init = _draw_inputs(rng, lstm=cls == "LSTM")  # noqa: E741
    weights = None
    for training in (False, True):
        ours = getattr(L, cls)(H, dtype=dtype, **kw)
        peer = getattr(keras.layers, cls)(H, dtype=dtype, **kw)
        weights = _same_weights(rng, weights, I, ours, peer)
        what = f"{cls} {kw} {dtype} H={H} I={I} B={B} T={T} {training=}"
        got = _outputs(ours, x, init, mask, training)
        try:
            want = _outputs(peer, x, init, mask, training)
        except tf.errors.InvalidArgumentError:
            assert cls == "LSTM" and B == 0, what  # Keras' LSTMCell: "Biases must be 1D" at B = 0
            for g in got[1]:
                np.testing.assert_array_equal(g, 0, err_msg=what)
            continue
        _assert_same(got, want, dtype, what)


@pytest.mark.parametrize("index", range(_CASES))
def test_bidirectional_against_keras(index):
    rng = _case_rng("bidirectional", index)
    cls = str(rng.choice(["GRU", "LSTM", "SimpleRNN", "LayerNormLSTM", "LayerNormGRU"]))
    layer_kw = dict(return_sequences=bool(rng.integers(2)), return_state=bool(rng.integers(2)))
    stateful = bool(rng.integers(5) == 0) and not layer_kw["return_state"]  # (Keras' Bidirectional
    # fails on stateful layers that return states: compute_mask multiplies a generator)
    cell_kw = {"seed": int(rng.integers(1 << 20))}
    if rng.integers(3) == 0:
        cell_kw["dropout"] = 0.3
    if rng.integers(3) == 0 and cls != "LayerNormGRU":
        cell_kw["recurrent_dropout"] = 0.3
    if cls.startswith("LayerNorm") and rng.integers(3) == 0:
        cell_kw["zoneout"] = 0.2
    merge = str(rng.choice(["concat", "sum", "mul", "ave"]))
    H = int(rng.choice([1, 3, 8]))
    I, B, T = int(rng.choice([1, 4])), int(rng.choice([1, 2, 5])), int(rng.choice([1, 3, 7]))  # noqa: E741
    mask = _mask(rng, str(rng.choice(["none", "right", "holes"])), B, T)
    x = tf.constant(rng.normal(size=(B, T, I)).astype(np.float32))
    init = None
    if not stateful and rng.integers(2):
        n = 2 * (1 + ("LSTM" in cls))
        init = [tf.constant(rng.normal(size=(B, H)).astype(np.float32)) for _ in range(n)]
    weights = None

    def bidirectional(ours: bool):
        nonlocal weights
        if ours:
            inner = getattr(L, cls)(H, stateful=stateful, **layer_kw, **cell_kw)
        elif cls.startswith("LayerNorm"):
            cell = getattr(L, cls + "Cell")(H, **cell_kw)
            inner = keras.layers.RNN(cell, stateful=stateful, **layer_kw)
        else:
            inner = getattr(keras.layers, cls)(H, stateful=stateful, **layer_kw, **cell_kw)
        layer = keras.layers.Bidirectional(inner, merge_mode=merge)
        layer.build((B if stateful else None, None, I))
        if weights is None:
            weights = [rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in layer.get_weights()]
        layer.set_weights(weights)
        return layer

    for training in (True, False):
        if training and "zoneout" in cell_kw:
            continue  # keras.layers.RNN(cell) draws zoneout masks step by step
        if training and cls == "SimpleRNN" and len(cell_kw) > 1:
            continue  # Keras' SimpleRNN config drops the seed: its copies draw unseeded masks
        what = (
            f"{cls} {layer_kw} {cell_kw} {merge=} {stateful=} H={H} I={I} B={B} T={T} {training=}"
        )
        results = []
        for ours in (True, False):
            layer = bidirectional(ours)
            for _ in range(
                2 if stateful else 1
            ):  # stateful: the second call starts from the first's
                result = _outputs(layer, x, init, mask, training)
            results.append(result)
        _assert_same(*results, "float32", what)


@pytest.mark.parametrize("index", range(_CASES))
def test_layer_norm_layers_against_their_cells_in_keras_rnn(index):
    rng = _case_rng("layer_norm", index)
    cls = str(rng.choice(["LSTM", "GRU"]))
    layer_kw = dict(
        return_sequences=bool(rng.integers(2)), return_state=bool(rng.integers(2)),
        go_backwards=bool(rng.integers(2)),
    )  # fmt: skip
    cell_kw = {"seed": int(rng.integers(1 << 20))}
    if rng.integers(3) == 0:
        cell_kw["dropout"] = 0.3
    if cls == "LSTM" and rng.integers(3) == 0:
        cell_kw["recurrent_dropout"] = 0.3
    if rng.integers(3) == 0:
        cell_kw["zoneout"] = 0.3
    if rng.integers(3) == 0:
        cell_kw["norm_epsilon"] = float(rng.choice([1e-5, 0.1]))
    dtype, (H, I, B, T), mask, x, init = _draw_inputs(rng, lstm=cls == "LSTM")  # noqa: E741
    weights = None
    for training in (False, True):
        if training and "zoneout" in cell_kw:
            continue  # the cell draws zoneout masks step by step, the layer all at once
        ours = getattr(L, "LayerNorm" + cls)(H, dtype=dtype, **layer_kw, **cell_kw)
        cell = getattr(L, f"LayerNorm{cls}Cell")(H, dtype=dtype, **cell_kw)
        peer = keras.layers.RNN(cell, dtype=dtype, **layer_kw)
        weights = _same_weights(rng, weights, I, ours, peer)
        what = f"LayerNorm{cls} {layer_kw} {cell_kw} {dtype} H={H} I={I} B={B} T={T} {training=}"
        _assert_same(
            _outputs(ours, x, init, mask, training), _outputs(peer, x, init, mask, training),
            dtype, what,
        )  # fmt: skip
