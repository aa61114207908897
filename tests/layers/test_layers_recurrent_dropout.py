"""Training with recurrent_dropout: tf_rnn_ops.layers.GRU (both reset_after), LSTM and SimpleRNN
run TfRnn>KerasRNNDropout; compared with their Keras 3 namesakes on the same weights with the same
dropout masks injected into both cells (Keras caches a call's masks on the cell: `_dropout_mask`,
`_recurrent_dropout_mask`): outputs, final states, gradients of the input, initial states and every
weight; masks, go_backwards, return_sequences=False, Bidirectional; equal seeds give Keras' masks;
a symbolic training flag keeps Keras' loop."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_rnn_ops import layers as L

TOL = dict(rtol=2e-5, atol=2e-5)
B, T, IN, H = 5, 6, 3, 4
KINDS = [
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("LSTM", {}),
    ("SimpleRNN", {}),
    ("SimpleRNN", {"activation": "relu"}),
]
KIND_IDS = ["gru", "gru_reset_before", "lstm", "rnn_tanh", "rnn_relu"]


def _pair(name, rng, **kwargs):
    ours = getattr(L, name)(H, **kwargs)
    ref = getattr(keras.layers, name)(H, **kwargs)
    for layer in (ours, ref):
        layer.build((None, T, IN))
    ours.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    return ref, ours


def _draw_masks(rng, cell, batch=B):
    """Keras-style masks for `cell`: lists of G (GRU/LSTM) or one tensor (SimpleRNN) per side."""
    count = getattr(cell, "dropout_mask_count", None)

    def draw(shape, rate):
        if rate == 0:
            return None
        one = lambda: tf.constant(  # noqa: E731
            ((rng.uniform(size=shape) >= rate) / (1 - rate)).astype(np.float32)
        )
        return one() if count is None else [one() for _ in range(count)]

    return draw((batch, IN), cell.dropout), draw((batch, H), cell.recurrent_dropout)


def _inject(cell, masks):
    cell._dropout_mask, cell._recurrent_dropout_mask = masks


def _grads(layer, cells_masks, x, mask=None, init=None):
    """Outputs and gradients w.r.t. x, the initial states and the trainable weights, one call with
    training=True after injecting each (cell, masks)."""
    srcs = [x] + list(init or [])
    with tf.GradientTape() as tape:
        tape.watch(srcs)
        for cell, masks in cells_masks:
            _inject(cell, masks)
        kw = {} if init is None else {"initial_state": list(init)}
        out = layer(x, mask=mask, training=True, **kw)
        outs = out if isinstance(out, list | tuple) else [out]
        loss = sum(tf.reduce_sum(tf.sin(3.0 * o)) for o in outs)
    grads = tape.gradient(loss, srcs + layer.trainable_weights)
    return [np.asarray(o) for o in outs], grads


def _compare(a, b):
    (oa, ga), (ob, gb) = a, b
    for x, y in zip(oa, ob, strict=True):
        np.testing.assert_allclose(x, y, **TOL)
    for i, (x, y) in enumerate(zip(ga, gb, strict=True)):
        assert (x is None) == (y is None), i
        if x is not None:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL, err_msg=f"grad {i}")


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("dropout", [0.0, 0.25], ids=["rec", "rec+in"])
def test_matches_keras_with_injected_masks(rng, kind, dropout):
    name, kw = kind
    ref, ours = _pair(name, rng, dropout=dropout, recurrent_dropout=0.3, return_state=True, **kw)
    assert ours._can_fuse(True)
    x = tf.constant(rng.normal(size=(B, T, IN)).astype(np.float32))
    n_states = 2 if name == "LSTM" else 1
    init = [tf.constant(rng.normal(size=(B, H)).astype(np.float32)) for _ in range(n_states)]
    masks = _draw_masks(rng, ref.cell)
    _compare(_grads(ours, [(ours.cell, masks)], x, init=init),
             _grads(ref, [(ref.cell, masks)], x, init=init))  # fmt: skip
    # the cached masks are cleared after the call, as Keras' are
    assert ours.cell._recurrent_dropout_mask is None


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_matches_keras_over_more_rows(rng, kind):
    """29 x 5 = 145 rows: R's gradient summed per gate in float runs of 32 rows on the packed
    kernel, straight into Keras' layout (the few-row calls of WeightGradsInT, up to 256 rows)."""
    name, kw = kind
    ref, ours = _pair(name, rng, dropout=0.25, recurrent_dropout=0.3, return_sequences=True, **kw)
    x = tf.constant(rng.normal(size=(29, 5, IN)).astype(np.float32))
    masks = _draw_masks(rng, ref.cell, batch=29)
    _compare(_grads(ours, [(ours.cell, masks)], x), _grads(ref, [(ref.cell, masks)], x))


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_masks_go_backwards_last_output(rng, kind):
    name, kw = kind
    x = tf.constant(rng.normal(size=(B, T, IN)).astype(np.float32))
    mask = np.ones((B, T), bool)
    mask[1, 3:] = False
    mask[2, :] = False
    mask[3, [0, 4]] = False  # not right-padded
    for go_backwards, return_sequences in ((True, True), (False, False)):
        ref, ours = _pair(
            name, rng, dropout=0.2, recurrent_dropout=0.4, go_backwards=go_backwards,
            return_sequences=return_sequences, **kw,
        )  # fmt: skip
        masks = _draw_masks(rng, ref.cell)
        _compare(_grads(ours, [(ours.cell, masks)], x, mask=tf.constant(mask)),
                 _grads(ref, [(ref.cell, masks)], x, mask=tf.constant(mask)))  # fmt: skip


@pytest.mark.parametrize("kind", KINDS[:3], ids=KIND_IDS[:3])
def test_bidirectional(rng, kind):
    name, kw = kind
    ref_l, ours_l = _pair(name, rng, recurrent_dropout=0.3, return_sequences=True, **kw)
    ours = keras.layers.Bidirectional(ours_l)
    ref = keras.layers.Bidirectional(ref_l)
    for layer in (ours, ref):
        layer.build((None, T, IN))
    ref.set_weights(ours.get_weights())
    x = tf.constant(rng.normal(size=(B, T, IN)).astype(np.float32))
    fw, bw = _draw_masks(rng, ref.forward_layer.cell), _draw_masks(rng, ref.forward_layer.cell)
    _compare(
        _grads(ours, [(ours.forward_layer.cell, fw), (ours.backward_layer.cell, bw)], x),
        _grads(ref, [(ref.forward_layer.cell, fw), (ref.backward_layer.cell, bw)], x),
    )


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_same_seed_gives_keras_masks(rng, kind):
    name, kw = kind
    ours = getattr(L, name)(H, dropout=0.3, recurrent_dropout=0.4, seed=7, **kw)
    ref = getattr(keras.layers, name)(H, dropout=0.3, recurrent_dropout=0.4, seed=7, **kw)
    for layer in (ours, ref):
        layer.build((None, T, IN))
    ours.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    x = tf.constant(rng.normal(size=(B, T, IN)).astype(np.float32))
    for _ in range(2):  # a second call draws new masks, the same in both
        np.testing.assert_allclose(ours(x, training=True), ref(x, training=True), **TOL)
    # inference: no dropout, the plain fused op
    np.testing.assert_allclose(ours(x, training=False), ref(x, training=False), **TOL)


def test_symbolic_training_flag_keeps_keras_loop():
    layer = L.GRU(H, recurrent_dropout=0.3)
    assert not layer._can_fuse(tf.constant(True))
    assert layer._can_fuse(True)
    assert not L.LSTM(H, recurrent_dropout=1.0)._can_fuse(True)


@pytest.mark.parametrize("name", ["GRU", "LSTM", "SimpleRNN"])
def test_no_bias(rng, name):
    ref, ours = _pair(name, rng, dropout=0.2, recurrent_dropout=0.3, use_bias=False)
    x = tf.constant(rng.normal(size=(B, T, IN)).astype(np.float32))
    masks = _draw_masks(rng, ref.cell)
    _compare(_grads(ours, [(ours.cell, masks)], x), _grads(ref, [(ref.cell, masks)], x))


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_mixed_precision_with_initial_state(rng, kind):
    """mixed_float16: the op computes in float32 (16-bit inputs and states cast up), the output is
    float16 and matches Keras' float16 step loop with the same seed (so the same masks)."""
    name, kw = kind
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        ours = getattr(L, name)(H, dropout=0.25, recurrent_dropout=0.5, seed=3, **kw)
        ref = getattr(keras.layers, name)(H, dropout=0.25, recurrent_dropout=0.5, seed=3, **kw)
        for layer in (ours, ref):
            layer.build((None, T, IN))
        weights = [rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in ours.get_weights()]
        ours.set_weights(weights)
        ref.set_weights(weights)
        x = tf.constant(rng.normal(size=(B, T, IN)).astype(np.float16))
        states = [tf.constant(rng.normal(size=(B, H)).astype(np.float16))]
        if name == "LSTM":
            states.append(tf.constant(rng.normal(size=(B, H)).astype(np.float16)))
        got = ours(x, initial_state=states, training=True)
        want = ref(x, initial_state=states, training=True)
        assert got.dtype == want.dtype == tf.float16
        np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)
    finally:
        keras.config.set_dtype_policy(policy)
