"""GRU(reset_after=False) on the fused op (rnn_mode gru_reset_before, Keras' v1 / GRUBlockCell form:
h~ = tanh(x W_h + (r ⊙ h_prev) U_h + b_h), one [3H] bias).

References, never our own output: Keras 3's own `keras.layers.GRU(reset_after=False)` step loop
with the same weights (outputs and gradients, float64), the float64 numpy cell of
tests/cells/cell_reference.py, and `tf.test.compute_gradient` (float64 finite differences) of the
op. Odd sizes (1, 3, 257), B = 0, masks with holes, go_backwards, initial states, both layouts of
the op, no bias. (The op-level suites parametrized over the package's modes —
tests/ops/test_keras_rnn_op.py, test_cudnn_rnn_reference.py — cover it too, against
tests/support/rnn_reference.py.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_rnn_ops
from tf_rnn_ops.layers import GRU

_spec = importlib.util.spec_from_file_location(
    "cell_reference", Path(__file__).resolve().parents[1] / "cells" / "cell_reference.py"
)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

F64 = "float64"
TOL = dict(rtol=1e-9, atol=1e-10)


def _pair(H, rng, use_bias=True, **kw):
    """Keras' GRU(reset_after=False) and ours, built with the same random weights."""
    ours = GRU(H, reset_after=False, use_bias=use_bias, dtype=F64, **kw)
    keras_gru = keras.layers.GRU(
        H, reset_after=False, use_bias=use_bias, dtype=F64, use_cudnn=False, **kw
    )
    return ours, keras_gru


def _build(layers, shape, rng, scale=0.7):
    for layer in layers:
        layer.build(shape)
    weights = [rng.uniform(-scale, scale, w.shape) for w in layers[0].get_weights()]
    for layer in layers:
        layer.set_weights(weights)
    return weights


def _mask(rng, B, T):
    m = rng.random((B, T)) < 0.7
    if B > 1:
        m[0] = True
        m[-1] = False
    return m


def test_layer_runs_the_fused_mode():
    layer = GRU(4, reset_after=False)
    assert layer._fused_mode == "gru_reset_before"
    # use_cudnn=True no longer refuses reset_after=False
    assert GRU(4, reset_after=False, use_cudnn=True)._fused_mode == "gru_reset_before"


@pytest.mark.parametrize(
    "B,T,n_in,H,kw",
    [
        (3, 5, 4, 7, {}),
        (1, 1, 1, 1, {}),
        (4, 6, 3, 3, {"go_backwards": True}),
        (2, 3, 5, 257, {}),
        (5, 7, 2, 6, {"use_bias": False}),
        (6, 40, 3, 5, {}),  # B·T > 8: packed weights
    ],
)
@pytest.mark.parametrize("masked", [False, True])
def test_outputs_and_gradients_match_keras(rng, B, T, n_in, H, kw, masked):
    use_bias = kw.pop("use_bias", True)
    ours, theirs = _pair(H, rng, use_bias=use_bias, return_sequences=True, return_state=True, **kw)
    _build([ours, theirs], (B, T, n_in), rng)
    x = tf.constant(rng.standard_normal((B, T, n_in)))
    h0 = tf.constant(rng.standard_normal((B, H)) * 0.5)
    mask = tf.constant(_mask(rng, B, T)) if masked else None
    dy = tf.constant(rng.standard_normal((B, T, H)))
    dh = tf.constant(rng.standard_normal((B, H)))
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch([x, h0])
            y, h = layer(x, initial_state=[h0], mask=mask, training=True)
            loss = tf.reduce_sum(y * dy) + tf.reduce_sum(h * dh)
        grads = tape.gradient(loss, [x, h0, *layer.trainable_weights])
        results.append((y.numpy(), h.numpy(), [g.numpy() for g in grads]))
    (y1, h1, g1), (y2, h2, g2) = results
    np.testing.assert_allclose(y1, y2, **TOL)
    np.testing.assert_allclose(h1, h2, **TOL)
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, **TOL)


def test_matches_float64_cell_reference(rng):
    B, T, n_in, H = 4, 9, 3, 5
    layer = GRU(H, reset_after=False, return_sequences=True, return_state=True, dtype=F64)
    weights = _build([layer], (B, T, n_in), rng)
    x = rng.standard_normal((B, T, n_in))
    h0 = rng.standard_normal((B, H))
    lengths = np.array([9, 0, 4, 1])
    mask = np.arange(T)[None, :] < lengths[:, None]
    y, h = layer(tf.constant(x), initial_state=[tf.constant(h0)], mask=tf.constant(mask))
    cell = ref.gru_cell(*weights, reset_after=False)
    y_ref, _, states = ref.rnn(cell, x, [h0], mask=mask)
    np.testing.assert_allclose(y.numpy(), y_ref, **TOL)
    np.testing.assert_allclose(h.numpy(), states[0], **TOL)


def test_batch_zero(rng):
    ours, theirs = _pair(3, rng, return_sequences=True)
    _build([ours, theirs], (0, 4, 2), rng)
    x = tf.zeros([0, 4, 2], F64)
    assert ours(x).shape == (0, 4, 3)
    np.testing.assert_array_equal(ours(x).numpy(), theirs(x).numpy())


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("lengths", [None, [3, 0, 1]])
def test_op_gradient_finite_differences(rng, time_major, lengths):
    B, T, n_in, H = 3, 3, 2, 3
    x = rng.standard_normal((T, B, n_in) if time_major else (B, T, n_in))
    h0 = rng.standard_normal((B, H)) * 0.5
    k = rng.uniform(-0.6, 0.6, (n_in, 3 * H))
    r = rng.uniform(-0.6, 0.6, (H, 3 * H))
    b = rng.uniform(-0.6, 0.6, (3 * H,))
    seq = None if lengths is None else tf.constant(lengths, tf.int32)

    def f(x, h0, k, r, b):
        y, h, _, _ = tf_rnn_ops.keras_rnn(
            x, h0, None, k, r, b, sequence_lengths=seq, rnn_mode="gru_reset_before",
            time_major=time_major,
        )  # fmt: skip
        return tf.reduce_sum(y * y) + tf.reduce_sum(tf.sin(h))

    args = [tf.constant(a) for a in (x, h0, k, r, b)]
    theoretical, numerical = tf.test.compute_gradient(f, args, delta=1e-6)
    for t, n in zip(theoretical, numerical, strict=True):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "B,T,n_in,H",
    [
        (2, 3, 4, 8),  # B·T <= 8: the kernels streamed as stored
        (5, 12, 6, 16),
        (32, 10, 5, 24),  # B >= 12: each thread a range of rows through all steps
    ],
)
def test_float32_matches_keras(rng, B, T, n_in, H):
    ours = GRU(H, reset_after=False, return_sequences=True)
    theirs = keras.layers.GRU(H, reset_after=False, return_sequences=True, use_cudnn=False)
    _build([ours, theirs], (B, T, n_in), rng)
    x = tf.constant(rng.standard_normal((B, T, n_in)).astype(np.float32))
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        results.append([y.numpy()] + [g.numpy() for g in tape.gradient(loss, [x, *layer.weights])])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_bad_bias_shape_is_an_error(rng):
    x = tf.zeros([2, 3, 4])
    h0 = tf.zeros([2, 5])
    k, r = tf.zeros([4, 15]), tf.zeros([5, 15])
    with pytest.raises(tf.errors.InvalidArgumentError, match="bias must have shape"):
        tf_rnn_ops.keras_rnn(x, h0, None, k, r, tf.zeros([2, 15]), rnn_mode="gru_reset_before")
