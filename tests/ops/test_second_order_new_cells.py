"""Second-order gradients (a gradient of a gradient: a WGAN-GP penalty) through the ops that
test_second_order.py does not cover: `TfRnn>KerasRNNDropout` (recurrent dropout, zoneout) and
`TfRnn>LayerNormRnn`, whose backprop ops (`TfRnn>KerasRNNDropoutBackprop`,
`TfRnn>LayerNormRnnGrad`) get their gradient from a TensorFlow-ops formulation of the forward
differentiated twice, with the masks held fixed.

* The backprop op's gradient against `tf.test.compute_gradient` in float64 of the backprop op
  itself, as a function of its float inputs (the forward re-run inside, so the reserve always fits);
  its outputs projected on fixed random weights (one scalar). Every rnn_mode / cell, odd sizes
  (H = 1, 3), variable lengths (a zero one), both layouts, recurrent-dropout masks, zoneout masks
  (training) and scalars (inference), the LN op's step mask and is_training=False, B = 0; in a
  tf.function (the formulation's tf.while_loop, also with T known at run time only) as eagerly.
* The penalty's gradient with respect to the weights through the layers against independent
  formulations with the same masks: Keras' own GRU / LSTM / SimpleRNN (recurrent dropout masks
  injected into its cells), Keras' cells wrapped in zoneout (tests/support/zoneout_keras.py) and
  `keras.layers.RNN` over the Keras-ops layer-norm cells (their step loop, not the op).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from zoneout_keras import ZoneoutInputCell, processed_masks

import tf_rnn_ops
from tf_rnn_ops import layers as L
from tf_rnn_ops.cudnn_rnn import _ops
from tf_rnn_ops.layer_norm_rnn import layer_norm_rnn
from tf_rnn_ops.layers.layer_norm import LayerNormGRUCell, LayerNormLSTMCell

MODES = ["gru", "gru_reset_before", "lstm", "rnn_tanh", "rnn_relu"]
GATES = tf_rnn_ops.params.NUM_GATES


def _flat(ts):
    return tf.concat([tf.reshape(t, [-1]) for t in ts], 0)


def _check_gradient(f, args, rng):
    """compute_gradient of f (one scalar) at args: the theoretical side is the registered
    second-order gradient, the numerical side central differences of the first-order op."""
    theo, num = tf.test.compute_gradient(f, args, delta=1e-6)
    for k, (a, b) in enumerate(zip(theo, num, strict=True)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=f"input {k}")
    return theo


def _not_vacuous(theo, n):
    assert max(float(np.max(np.abs(a))) if a.size else 0.0 for a in theo[:n]) > 1e-3


# ------------------------------------------------------------- TfRnn>KerasRNNDropoutBackprop
# (B, T, H, time_major, lengths, recurrent masks, zoneout: "mask" / "scalar" / None)
DROPOUT_CASES = {
    "masks-zoneout-bm": (3, 3, 3, False, [3, 0, 2], True, "mask"),
    "masks-tm-H1": (2, 3, 1, True, [1, 3], True, None),
    "zoneout-scalar-tm": (2, 2, 3, True, None, False, "scalar"),
    "zoneout-only-bm": (2, 3, 1, False, [2, 3], False, "mask"),
}


def _dropout_problem(rng, mode, B, T, H, time_major, lengths, masks, zoneout):
    g = GATES[mode]
    shape = (T, B, g * H) if time_major else (B, T, g * H)
    c = tf.constant
    gx = c(rng.normal(size=shape))
    h0, c0 = c(rng.normal(size=(B, H)) * 0.5), c(rng.normal(size=(B, H)) * 0.5)
    rk = c(rng.uniform(-0.7, 0.7, (H, g * H)))
    rb = c(rng.uniform(-0.5, 0.5, (g * H,))) if mode == "gru" else None
    rm = None
    if masks:
        keep = rng.uniform(size=(g, B, H)) >= 0.3
        keep[:, 0] = True  # row 0 keeps every unit (H = 1 could drop every product)
        rm = c(keep / 0.7)
    zm = {
        None: None,
        "mask": c(np.floor(0.65 + rng.uniform(size=(T, B, H)))),
        "scalar": c(0.65, tf.float64),
    }[zoneout]
    lengths = None if lengths is None else c(lengths, tf.int32)
    return gx, h0, c0, rk, rb, rm, zm, lengths


def _dropout_backprop_fn(rng, mode, case):
    """(f, args): f = <outputs of the backprop op, w> as a function of its float inputs."""
    gx, h0, c0, rk, rb, rm, zm, lengths = _dropout_problem(rng, mode, *DROPOUT_CASES[case])
    time_major = DROPOUT_CASES[case][3]
    lstm = mode == "lstm"
    if not lstm:
        c0 = tf.zeros([0], tf.float64)
    if rb is None:
        rb = tf.zeros([0], tf.float64)
    kw = dict(rnn_mode=mode, time_major=time_major)
    fixed = dict(
        sequence_lengths=tf.zeros([0], tf.int32) if lengths is None else lengths,
        recurrent_masks=tf.zeros([0], tf.float64) if rm is None else rm,
        zoneout_mask=tf.zeros([0], tf.float64) if zm is None else zm,
    )
    ops = _ops()

    def run(gx, h0, c0, rk, rb):
        return ops.tf_rnn_keras_rnn_dropout(
            projected_input=gx, input_h=h0, input_c=c0, recurrent_kernel=rk, recurrent_bias=rb,
            is_training=True, **fixed, **kw,
        )  # fmt: skip

    y, yh, yc, _ = run(gx, h0, c0, rk, rb)
    cot = [tf.constant(rng.normal(size=t.shape)) for t in (y, yh, yc)]
    n = sum(int(np.prod(t.shape)) for t in (gx, h0, c0, rk, rb))
    w = tf.constant(rng.normal(size=[n]))

    def f(gx, h0, c0, rk, rb, dy, dyh, dyc):
        fw = run(gx, h0, c0, rk, rb)
        bp = ops.tf_rnn_keras_rnn_dropout_backprop(
            projected_input=gx, input_h=h0, input_c=c0, recurrent_kernel=rk, recurrent_bias=rb,
            output=fw[0], output_h=fw[1], output_c=fw[2], output_backprop=dy,
            output_h_backprop=dyh, output_c_backprop=dyc, reserve_space=fw[3], **fixed, **kw,
        )  # fmt: skip
        return tf.reshape(tf.reduce_sum(_flat(bp) * w), [1])

    return f, [gx, h0, c0, rk, rb, *cot]


@pytest.mark.parametrize("case", list(DROPOUT_CASES))
@pytest.mark.parametrize("mode", MODES)
def test_keras_rnn_dropout_backprop_gradient(rng, mode, case):
    f, args = _dropout_backprop_fn(rng, mode, case)
    # (relu is piecewise linear: on a tiny draw its second derivative may vanish everywhere)
    _not_vacuous(_check_gradient(f, args, rng), len(args) if mode == "rnn_relu" else 4)


def test_keras_rnn_dropout_backprop_gradient_in_a_graph(rng):
    """In a tf.function (the formulation loops with tf.while_loop), lengths and both masks."""
    f, args = _dropout_backprop_fn(rng, "lstm", "masks-zoneout-bm")
    with tf.GradientTape() as tape:
        tape.watch(args)
        graph = tf.function(f)(*args)
    got = tape.gradient(graph, args)
    with tf.GradientTape() as tape:
        tape.watch(args)
        eager = f(*args)
    want = tape.gradient(eager, args)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_keras_rnn_dropout_empty_batch(rng):
    """B = 0: the gradient of the gradient is empty, not an error."""
    gx = tf.zeros([0, 3, 9], tf.float64)
    h0 = tf.zeros([0, 3], tf.float64)
    rk = tf.constant(rng.normal(size=(3, 9)))
    with tf.GradientTape() as outer:
        outer.watch(rk)
        with tf.GradientTape() as inner:
            inner.watch(gx)
            y = tf_rnn_ops.keras_rnn_dropout(
                gx, h0, None, rk, tf.zeros([3, 0, 3], tf.float64), rnn_mode="gru",
                zoneout_mask=tf.zeros([3, 0, 3], tf.float64),
            )[0]  # fmt: skip
        gx_grad = inner.gradient(y, gx)
        penalty = tf.reduce_sum(gx_grad * gx_grad)
    g = outer.gradient(penalty, rk)
    assert g.shape == rk.shape and not np.any(g.numpy())


# ------------------------------------------------------------------- TfRnn>LayerNormRnnGrad
# (B, T, I, H, step mask, zoneout: "mask" / "scalar" / None, is_training, recurrent_mask)
LN_CASES = {
    "mask-zoneout": (3, 3, 2, 3, True, "mask", True, False),
    "scalar-inference-H1": (2, 3, 1, 1, False, "scalar", False, False),
    "plain": (2, 2, 3, 3, False, None, True, False),
    "recurrent-dropout-zoneout": (3, 3, 2, 3, True, "mask", True, True),
    "recurrent-dropout-inference": (2, 2, 3, 3, False, None, False, True),
}


def _ln_weights(rng, cell, I, H):  # noqa: E741
    g = 4 if cell == "layer_norm_lstm" else 3
    c = tf.constant
    w = dict(
        kernel=c(rng.uniform(-0.8, 0.8, (I, g * H))),
        recurrent_kernel=c(rng.uniform(-0.8, 0.8, (H, g * H))),
        bias=c(rng.uniform(-0.5, 0.5, (g * H,))),
        gamma_x=c(rng.uniform(0.5, 1.5, (g * H,))),
        gamma_h=c(rng.uniform(0.5, 1.5, (g * H,))),
    )
    if cell == "layer_norm_lstm":
        w.update(
            beta_x=c(rng.uniform(-0.3, 0.3, (g * H,))),
            beta_h=c(rng.uniform(-0.3, 0.3, (g * H,))),
            gamma_c=c(rng.uniform(0.5, 1.5, (H,))),
            beta_c=c(rng.uniform(-0.3, 0.3, (H,))),
        )
    else:
        w["recurrent_bias"] = c(rng.uniform(-0.5, 0.5, (g * H,)))
    return w


def _ln_backprop_fn(rng, cell, B, T, I, H, masked, zoneout, training, dropped_h):  # noqa: E741
    """(f, args) as `_dropout_backprop_fn`, for TfRnn>LayerNormRnnGrad through the op's
    registered first-order gradient (which reruns an is_training=False forward). dropped_h: a
    recurrent_mask on h_{t-1} (each row keeps a unit)."""
    lstm = cell == "layer_norm_lstm"
    weights = _ln_weights(rng, cell, I, H)
    names = list(weights)
    x = tf.constant(rng.normal(size=(T, B, I)))
    h0 = tf.constant(rng.normal(size=(B, H)) * 0.5)
    c0 = tf.constant(rng.normal(size=(B, H)) * 0.5) if lstm else None
    mask = None
    if masked:
        m = (rng.uniform(size=(T, B)) < 0.7).astype(float)
        m[:, -1] = 0  # a row with no valid step
        mask = tf.constant(m)
    zm = {"mask": np.floor(0.6 + rng.uniform(size=(T, B, H))), None: None, "scalar": None}[zoneout]
    kw = dict(
        cell=cell, epsilon=1e-3, mask=mask, is_training=training,
        zoneout=0.4 if zoneout == "scalar" else 0.0,
        zoneout_mask=None if zm is None else tf.constant(zm),
    )  # fmt: skip
    if dropped_h:
        keep = rng.uniform(size=(B, H)) >= 0.3
        keep[:, 0] = True
        kw["recurrent_mask"] = tf.constant(keep / 0.7)
    y, hn, cn = layer_norm_rnn(x, h0, c0, **weights, **kw)
    cot = [tf.constant(rng.normal(size=t.shape)) for t in (y, hn, cn)]
    primals = [x, h0] + ([c0] if lstm else []) + [weights[k] for k in names]
    w = tf.constant(rng.normal(size=[sum(int(np.prod(t.shape)) for t in primals)]))

    def f(*args):
        n = len(primals)
        x, h0 = args[0], args[1]
        c0 = args[2] if lstm else None
        ws = dict(zip(names, args[3 if lstm else 2 : n], strict=True))
        dy, dhn, dcn = args[n:]
        with tf.GradientTape() as tape:
            tape.watch(args[:n])
            y, hn, cn = layer_norm_rnn(x, h0, c0, **ws, **kw)
        grads = tape.gradient(
            [y, hn, cn], list(args[:n]), output_gradients=[dy, dhn, dcn],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )  # fmt: skip
        return tf.reshape(tf.reduce_sum(_flat(grads) * w), [1])

    return f, [*primals, *cot]


@pytest.mark.parametrize("case", list(LN_CASES))
@pytest.mark.parametrize("cell", ["layer_norm_lstm", "layer_norm_gru"])
def test_layer_norm_rnn_grad_gradient(rng, cell, case):
    f, args = _ln_backprop_fn(rng, cell, *LN_CASES[case])
    _not_vacuous(_check_gradient(f, args, rng), 4)


@pytest.mark.parametrize("cell", ["layer_norm_lstm", "layer_norm_gru"])
def test_layer_norm_empty_batch(rng, cell):
    """B = 0: the gradient of the gradient is empty, not an error."""
    weights = _ln_weights(rng, cell, 2, 3)
    x = tf.zeros([3, 0, 2], tf.float64)
    h0 = tf.zeros([0, 3], tf.float64)
    with tf.GradientTape() as outer:
        outer.watch(weights["kernel"])
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = layer_norm_rnn(x, h0, h0, cell=cell, epsilon=1e-3, **weights)[0]
        gx = inner.gradient(y, x)
        penalty = tf.reduce_sum(gx * gx)
    g = outer.gradient(penalty, weights["kernel"])
    assert g.shape == weights["kernel"].shape and not np.any(g.numpy())


@pytest.mark.parametrize("cell", ["layer_norm_lstm", "layer_norm_gru"])
def test_layer_norm_penalty_in_a_graph_with_unknown_steps(rng, cell):
    """In a tf.function whose number of steps is known at run time only (the formulation's
    tf.while_loop), with a step mask and a zoneout mask: the same as eagerly."""
    B, T, I, H = 2, 3, 2, 3  # noqa: E741
    weights = _ln_weights(rng, cell, I, H)
    x = tf.constant(rng.normal(size=(T, B, I)))
    h0 = tf.constant(rng.normal(size=(B, H)))
    mask = tf.constant([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    zm = tf.constant(np.floor(0.6 + rng.uniform(size=(T, B, H))))
    proj = tf.constant(rng.normal(size=(T, B, H)))

    def penalty_grad(x):
        with tf.GradientTape() as outer:
            outer.watch(list(weights.values()))
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = layer_norm_rnn(x, h0, h0, cell=cell, epsilon=1e-3, mask=mask,
                                   zoneout_mask=zm, **weights)[0]  # fmt: skip
                score = tf.reduce_sum(y * proj)
            gx = inner.gradient(score, x)
            penalty = tf.reduce_sum(gx * gx)
        return outer.gradient(penalty, list(weights.values()))

    graph = tf.function(penalty_grad, input_signature=[tf.TensorSpec([None, B, I], tf.float64)])
    for a, b in zip(graph(x), penalty_grad(x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------- the penalty through the layers
def _penalty(layer, x, proj, mask=None, training=True, before=None):
    """Gradient w.r.t. the layer's weights of ||d <layer(x), proj> / dx||^2, where dx leaves out
    the last `layer._extra` channels of x (a reference's zoneout masks as input channels)."""
    x = tf.constant(x)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            if before is not None:
                before()
            score = tf.reduce_sum(layer(x, mask=mask, training=training) * proj)
        gx = inner.gradient(score, x)[..., : x.shape[-1] - getattr(layer, "_extra", 0)]
        penalty = tf.reduce_sum(gx * gx)
    return [g.numpy() for g in outer.gradient(penalty, layer.trainable_weights)]


def _compare(got, want):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=f"weight {i}")
    assert max(float(np.max(np.abs(b))) for b in want) > 1e-3


DROPIN = [("GRU", {}), ("GRU", {"reset_after": False}), ("LSTM", {}), ("SimpleRNN", {})]
DROPIN_IDS = ["gru", "gru_reset_before", "lstm", "rnn_tanh"]


@pytest.mark.parametrize("kind", DROPIN, ids=DROPIN_IDS)
def test_penalty_recurrent_dropout_vs_keras(rng, kind):
    """layers.GRU / LSTM / SimpleRNN(recurrent_dropout, dropout) in training against Keras's own
    layer (its loop, differentiable twice) with the same masks injected; a mask with an empty
    row."""
    name, kw = kind
    B, T, IN, H = 3, 4, 2, 3
    kw = dict(kw, dropout=0.2, recurrent_dropout=0.3, return_sequences=True, dtype="float64")
    ours, theirs = getattr(L, name)(H, **kw), getattr(keras.layers, name)(H, **kw)
    for layer in (ours, theirs):
        layer.build((None, T, IN))
    ours.set_weights([rng.uniform(-0.7, 0.7, w.shape) for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    count = getattr(ours.cell, "dropout_mask_count", None)

    def draw(shape, rate):
        one = lambda: tf.constant((rng.uniform(size=shape) >= rate) / (1 - rate))  # noqa: E731
        return one() if count is None else [one() for _ in range(count)]

    masks = draw((B, IN), 0.2), draw((B, H), 0.3)

    def inject(cell):
        def before():  # Keras caches a call's masks on the cell
            cell._dropout_mask, cell._recurrent_dropout_mask = masks

        return before

    x = rng.uniform(-1, 1, (B, T, IN))
    mask = tf.constant([[True] * T, [True, True, False, False], [False] * T])
    proj = tf.constant(rng.normal(size=(B, T, H)))
    got = _penalty(ours, x, proj, mask, before=inject(ours.cell))
    want = _penalty(theirs, x, proj, mask, before=inject(theirs.cell))
    _compare(got, want)


@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("kind", DROPIN[:3], ids=DROPIN_IDS[:3])
def test_penalty_zoneout_vs_keras_cell(rng, kind, training):
    """layers.GRU / LSTM(zoneout=p): training with a fixed keep mask (variable lengths), inference
    with the scalar, against Keras' cell wrapped in zoneout (the mask as extra input channels)."""
    name, kw = kind
    B, T, IN, H, rate = 3, 3, 2, 3, 0.3
    ours = getattr(L, name)(H, zoneout=rate, return_sequences=True, dtype="float64", **kw)
    cell = getattr(keras.layers, name + "Cell")(H, dtype="float64", **kw)
    theirs = keras.layers.RNN(
        ZoneoutInputCell(cell, dtype="float64"), return_sequences=True, dtype="float64"
    )
    theirs._extra = H
    ours.build((None, T, IN))
    theirs.build((None, T, IN + H))
    ours.set_weights([rng.uniform(-0.7, 0.7, w.shape) for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    zm = np.floor(1 - rate + rng.uniform(size=(T, B, H)))
    ours._zoneout_mask = lambda _x: tf.constant(zm)
    valid = np.array([[True] * T, [True, True, False], [True, False, False]])
    m = processed_masks(zm, valid, False) if training else np.full((B, T, H), 1 - rate)
    x = rng.uniform(-1, 1, (B, T, IN))
    proj = tf.constant(rng.normal(size=(B, T, H)))
    mask = tf.constant(valid)
    got = _penalty(ours, x, proj, mask, training)
    want = _penalty(theirs, np.concatenate([x, m], -1), proj, mask, training)
    _compare(got, want)


LN_KINDS = {"lstm": (L.LayerNormLSTM, LayerNormLSTMCell), "gru": (L.LayerNormGRU, LayerNormGRUCell)}


@pytest.mark.parametrize("zoneout", [None, "train", "infer"])
@pytest.mark.parametrize("kind", list(LN_KINDS))
def test_penalty_layer_norm_vs_keras_ops_cells(rng, kind, zoneout):
    """LayerNormLSTM / LayerNormGRU (the fused op) against `keras.layers.RNN` over the Keras-ops
    cells (Keras' loop): no zoneout with a mask (any pattern), zoneout in training with a fixed
    keep mask (the reference: the cell without zoneout wrapped in it, mask as input channels),
    zoneout in inference (the cell's own) with a mask."""
    layer_cls, cell_cls = LN_KINDS[kind]
    B, T, IN, H, rate = 3, 3, 2, 3, 0.3
    p = rate if zoneout else 0.0
    ours = layer_cls(H, zoneout=p, return_sequences=True, dtype="float64")
    training = zoneout != "infer"
    if zoneout == "train":
        cell = cell_cls(H, dtype="float64")
        theirs = keras.layers.RNN(
            ZoneoutInputCell(cell, dtype="float64"), return_sequences=True, dtype="float64"
        )
        theirs._extra = H
        theirs.build((None, T, IN + H))
    else:
        theirs = keras.layers.RNN(
            cell_cls(H, zoneout=p, dtype="float64"), return_sequences=True, dtype="float64"
        )
        theirs.build((None, T, IN))
    ours.build((None, T, IN))
    ours.set_weights([rng.uniform(-0.7, 0.7, w.shape) for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    x = rng.uniform(-1, 1, (B, T, IN))
    proj = tf.constant(rng.normal(size=(B, T, H)))
    mask = None
    if zoneout == "train":
        zm = np.floor(1 - rate + rng.uniform(size=(T, B, H)))
        ours.cell.zoneout_mask_of_shape = lambda _shape, _dtype: tf.constant(zm)
        x_theirs = np.concatenate([x, processed_masks(zm, None, False)], -1)
    else:
        mask = tf.constant([[True] * T, [False, True, True], [True, False, False]])
        x_theirs = x
    got = _penalty(ours, x, proj, mask, training)
    want = _penalty(theirs, x_theirs, proj, mask, training)
    _compare(got, want)
