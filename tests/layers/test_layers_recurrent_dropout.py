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


def _matches_keras_float64(rng, name, kw, batch, steps, units, scale=0.6):
    """float32 training call of our layer against Keras' in float64, same weights (uniform in
    ±scale) and masks, a nonzero initial state (step 0's rows join R's gradient): outputs and every
    gradient, each within 1e-4 of its array's largest magnitude (float32's rounding over many
    steps)."""
    kw = dict(kw, dropout=0.25, recurrent_dropout=0.3, return_sequences=True)
    ours = getattr(L, name)(units, **kw)
    ref = getattr(keras.layers, name)(units, dtype="float64", **kw)
    for layer in (ours, ref):
        layer.build((None, steps, IN))
    weights = [rng.uniform(-scale, scale, w.shape) for w in ours.get_weights()]
    ours.set_weights([w.astype(np.float32) for w in weights])
    ref.set_weights(weights)
    x = rng.normal(size=(batch, steps, IN))
    init = rng.normal(size=(batch, units)) * 0.5
    n_states = 2 if name == "LSTM" else 1
    count = getattr(ref.cell, "dropout_mask_count", None)

    def draw(shape, rate):
        one = lambda: (rng.uniform(size=shape) >= rate) / (1 - rate)  # noqa: E731
        return one() if count is None else [one() for _ in range(count)]

    masks = (draw((batch, IN), 0.25), draw((batch, units), 0.3))
    cast = lambda dtype: tf.nest.map_structure(lambda m: tf.constant(m, dtype), masks)  # noqa: E731
    got = _grads(ours, [(ours.cell, cast(tf.float32))], tf.constant(x, tf.float32),
                 init=[tf.constant(init, tf.float32)] * n_states)  # fmt: skip
    want = _grads(ref, [(ref.cell, cast(tf.float64))], tf.constant(x),
                  init=[tf.constant(init)] * n_states)  # fmt: skip
    pairs = list(zip(got[0], want[0], strict=True)) + list(zip(got[1], want[1], strict=True))
    for i, (a, b) in enumerate(pairs):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(1.0, np.abs(b).max()),
                                   err_msg=f"item {i} (outputs, then gradients)")  # fmt: skip


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_matches_keras_over_many_rows(rng, kind):
    """37 x 29 = 1073 rows: R's gradient summed in double on the packed kernel in blocks of 512
    rows; GRU and LSTM multiply each gate's mask into h_prev as the kernel packs it (the second
    block starts at batch index 31: its rows must find their own mask rows), SimpleRNN reads its
    one masked copy."""
    _matches_keras_float64(rng, *kind, batch=37, steps=29, units=H)


@pytest.mark.parametrize("reset_after", [True, False])
def test_matches_keras_with_rows_split_across_threads(rng, reset_after):
    """GRU(48), B = 41, T = 120 (a call of over 128 MFLOP: on all threads): R's gradient of a chunk
    of 67 steps (2747 rows, 3 panels of 16 gate columns) is split by rows across 2 or more threads,
    the second part from row 1373, batch index 20: each part's packing must start at its own
    mask row."""
    _matches_keras_float64(
        rng, "GRU", {"reset_after": reset_after}, batch=41, steps=120, units=48, scale=0.25
    )


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
