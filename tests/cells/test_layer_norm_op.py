"""The fused layer-norm op `TfRnn>LayerNormRnn` (tf_rnn_ops.layer_norm_rnn) against the float64
references of `cell_reference` (TF Addons' LayerNormLSTMCell, haste's LayerNormGRU, haste's zoneout
with injected masks): outputs and states with odd sizes (1, 3, 257), B = 0, T = 0, variable lengths,
training and inference zoneout; finite-difference gradients (float64) of every weight, x and the
initial states; float32; bad inputs; and that the layers take the fused op (with gradients that
match Keras' autodiff of the Keras-ops cells inside keras.layers.RNN)."""

from __future__ import annotations

import cell_reference as ref
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_rnn_ops import layers as L
from tf_rnn_ops.layer_norm_rnn import layer_norm_rnn, layer_norm_rnn_forward
from tf_rnn_ops.layers.layer_norm import LayerNormGRUCell, LayerNormLSTMCell

KINDS = ("lstm", "gru")
TOL = dict(rtol=1e-10, atol=1e-12)


def _weights(rng, kind, D, H):
    """Random weights in the layer's get_weights() order; gains near 1 (well-conditioned LNs)."""
    u = lambda *s: rng.uniform(-0.7, 0.7, s)  # noqa: E731
    if kind == "lstm":
        G = 4 * H
        return [u(D, G), u(H, G), u(G), 1 + u(G), u(G), 1 + u(G), u(G), 1 + u(H), u(H)]
    G = 3 * H
    return [u(D, G), u(H, G), u(G), u(G), 1 + u(2, G)]


def _op_kwargs(kind, w):
    if kind == "lstm":
        W, U, b, gk, bk, gr, br, gs, bs = w
        return dict(kernel=W, recurrent_kernel=U, bias=b, gamma_x=gk, beta_x=bk, gamma_h=gr,
                    beta_h=br, gamma_c=gs, beta_c=bs, cell="layer_norm_lstm",
                    epsilon=1e-3)  # fmt: skip
    W, U, b, br, g = w
    return dict(kernel=W, recurrent_kernel=U, bias=b, recurrent_bias=br, gamma_x=g[0],
                gamma_h=g[1], cell="layer_norm_gru", epsilon=1e-5)  # fmt: skip


def _ref_cell(kind, w, recurrent_mask=None):
    if kind == "lstm":
        return ref.layer_norm_lstm_cell(w, norm_epsilon=1e-3, recurrent_mask=recurrent_mask)
    return ref.layer_norm_gru_cell(w, norm_epsilon=1e-5, recurrent_mask=recurrent_mask)


def _recurrent_mask(rng, B, H, rate=0.3):
    """TF Addons' recurrent dropout mask on h_{t-1}: 0 or 1 / (1 - rate), one per row and unit;
    each row keeps a unit (with every unit dropped, nothing depends on R: its gradient would be
    zero whatever the kernel did)."""
    keep = rng.uniform(size=(B, H)) >= rate
    keep[np.arange(B), rng.integers(0, H, size=B)] = True
    return keep / (1.0 - rate)


def _run(kind, x, states, w, time_major=True, **kw):
    """The op on time-major x [T, B, I]; with time_major=False on x transposed to [B, T, I], its
    y transposed back to [T, B, H] (so that both layouts meet the same time-major references)."""
    c0 = states[1] if kind == "lstm" else None
    if time_major:
        return layer_norm_rnn(x, states[0], c0, **_op_kwargs(kind, w), **kw)
    y, hn, cn = layer_norm_rnn(
        tf.transpose(x, [1, 0, 2]), states[0], c0, **_op_kwargs(kind, w), time_major=False, **kw
    )
    return tf.transpose(y, [1, 0, 2]), hn, cn


def _lengths(rng, B, T):
    lengths = rng.integers(1, T + 1, size=B)
    if B > 1:
        lengths[0] = T
    return lengths


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("zoneout", ["none", "train", "infer"])
@pytest.mark.parametrize("T,B,D,H", [(1, 1, 1, 1), (5, 3, 4, 3), (3, 2, 3, 257), (4, 0, 2, 3),
                                     (0, 2, 2, 3)])  # fmt: skip
@pytest.mark.parametrize("recurrent_dropout", [False, True])
@pytest.mark.parametrize("time_major", [True, False], ids=["time_major", "batch_major"])
def test_forward_matches_reference(rng, kind, zoneout, T, B, D, H, recurrent_dropout, time_major):
    """recurrent_dropout: a recurrent_mask on h_{t-1} in its product with R (TF Addons' recurrent
    dropout), with zoneout and the step mask still seeing h undropped. batch_major: x [B, T, I]
    and y [B, T, H] (time_major=False; the masks stay time-major)."""
    w = _weights(rng, kind, D, H)
    x = rng.normal(size=(T, B, D))
    states = [rng.normal(size=(B, H)) for _ in range(2 if kind == "lstm" else 1)]
    lengths = _lengths(rng, B, T) if T else np.zeros(B, int)
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)  # [T, B]
    p, masks, kw = 0.3, None, {}
    if zoneout == "train":
        masks = ref.zoneout_mask(rng, (T, B, H), p)
        kw = dict(zoneout=p, zoneout_mask=masks)
    elif zoneout == "infer":
        kw = dict(zoneout=p)
    rm = _recurrent_mask(rng, B, H) if recurrent_dropout else None
    y, hn, cn = _run(kind, x, states, w, time_major, mask=mask, recurrent_mask=rm, **kw)
    cell = _ref_cell(kind, w, rm)
    if zoneout != "none":
        cell = ref.zoneout(cell, p, masks)
    seq, _, ref_states = ref.rnn(cell, x, states, time_major=True, lengths=lengths if T else None)
    # Past a row's length the op outputs the carried h (the reference repeats the last output:
    # the same, since every row has a valid first step).
    np.testing.assert_allclose(y, seq, **TOL)
    np.testing.assert_allclose(hn, ref_states[0], **TOL)
    if kind == "lstm":
        np.testing.assert_allclose(cn, ref_states[1], **TOL)
    else:
        assert cn.shape == (B, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_close_to_reference(rng, kind):
    T, B, D, H = 6, 4, 5, 7
    w = _weights(rng, kind, D, H)
    x = rng.normal(size=(T, B, D))
    states = [rng.normal(size=(B, H)) for _ in range(2 if kind == "lstm" else 1)]
    w32 = [a.astype(np.float32) for a in w]
    st32 = [s.astype(np.float32) for s in states]
    y, hn, _ = _run(kind, x.astype(np.float32), st32, w32)
    assert y.dtype == tf.float32
    seq, _, _ = ref.rnn(_ref_cell(kind, w), x, states, time_major=True)
    np.testing.assert_allclose(y, seq, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("is_training", [True, False])
@pytest.mark.parametrize(
    "T,B,H",
    [(1, 1, 257), (4, 2, 33), (1, 8, 5), (3, 3, 17), (3, 3, 850), (7, 25, 33), (20, 37, 17)]
    + [(3, 13, 1232), (3, 90, 403)],
)
@pytest.mark.parametrize("recurrent_dropout", [False, True])
def test_float32_close_to_reference_with_masks(rng, kind, is_training, T, B, H, recurrent_dropout):
    """float32 against the float64 reference with variable lengths and zoneout masks: outputs,
    states and (training) the gradients of every weight and state. Calls of at most 8 rows (T·B:
    one-step decoding) read W and R as stored instead of packing them; 9 rows (3, 3) pack, but
    the forward at H = 850 streams (8 MB+ of weights over few rows and steps); B >= 12 (7, 25):
    each intra-op thread takes a range of batch rows through all the steps, its products on the
    packed kernel on that thread, and every range must give the reference's rows;
    is_training=False (no reserve) the same. (3, 13, 1232): 13 rows a step over weights of 18 and
    24 MB (GRU, LSTM) stream (AVX-512: calls of at most 128 rows over 4 MB+), both as one row range
    split by columns (10 MB+: RnnRowsApart), their backward too. recurrent_dropout: with a
    recurrent_mask on h_{t-1} (the forward's product of h ⊙ m, the backward's (dGH Rᵀ) ⊙ m and
    (H_prev ⊙ m)ᵀ dGH; over 256 rows, (20, 37), R's gradient sums in double; (3, 90, 403), 270
    rows, those sums cleared and transposed into the outputs on both threads, the last block of
    rows 3 short)."""
    D = 9
    w = _weights(rng, kind, D, H)
    x = rng.normal(size=(T, B, D))
    states = [rng.normal(size=(B, H)) for _ in range(2 if kind == "lstm" else 1)]
    lengths = _lengths(rng, B, T)
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)
    p = 0.3
    masks = ref.zoneout_mask(rng, (T, B, H), p)
    rm = _recurrent_mask(rng, B, H) if recurrent_dropout else None
    f32 = lambda a: tf.constant(np.asarray(a, np.float32))  # noqa: E731
    w32, st32 = [f32(a) for a in w], [f32(s) for s in states]
    with tf.GradientTape() as tape:
        tape.watch(w32 + st32)
        y, hn, cn = _run(kind, f32(x), st32, w32, mask=f32(mask), zoneout=p,
                         zoneout_mask=f32(masks), is_training=is_training,
                         recurrent_mask=None if rm is None else f32(rm))  # fmt: skip
        loss = tf.reduce_sum(tf.sin(y)) + tf.reduce_sum(hn * hn)
    seq, _, ref_states = ref.rnn(ref.zoneout(_ref_cell(kind, w, rm), p, masks), x, states,
                                 time_major=True, lengths=lengths)  # fmt: skip
    np.testing.assert_allclose(y, seq, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(hn, ref_states[0], rtol=1e-4, atol=2e-5)
    if kind == "lstm":
        np.testing.assert_allclose(cn, ref_states[1], rtol=1e-4, atol=2e-5)
    if not is_training:
        return
    got = tape.gradient(loss, w32 + st32)
    # The reference gradient: TensorFlow's autodiff of the Keras-ops cells' step in float64.
    w64, st64 = [tf.constant(a) for a in w], [tf.constant(s) for s in states]
    with tf.GradientTape() as tape:
        tape.watch(w64 + st64)
        kw = _op_kwargs(kind, w64)
        y, hn, _ = layer_norm_rnn_forward(
            tf.constant(x), st64[0], st64[1] if kind == "lstm" else None, kw["kernel"],
            kw["recurrent_kernel"], kw["bias"], kw.get("recurrent_bias"), kw["gamma_x"],
            kw.get("beta_x"), kw["gamma_h"], kw.get("beta_h"), kw.get("gamma_c"),
            kw.get("beta_c"), tf.constant(mask), tf.constant(masks),
            tf.constant(kw["epsilon"], tf.float64), None if rm is None else tf.constant(rm),
            cell=kw["cell"],
        )  # fmt: skip
        loss = tf.reduce_sum(tf.sin(y)) + tf.reduce_sum(hn * hn)
    want = tape.gradient(loss, w64 + st64)
    for g, e in zip(got, want, strict=True):
        scale = max(1.0, float(np.max(np.abs(e))))
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=2e-5 * scale)


@pytest.mark.parametrize("kind", KINDS)
def test_inference_mode_keeps_no_reserve(rng, kind):
    """is_training=False: an empty reserve (the grad op refuses it by name); the gradient of such a
    call runs the forward pass again with is_training=True (checked against Keras' autodiff in
    test_layer_takes_fused_op_and_grads_match_keras_loop, whose calls are inference calls)."""
    T, B, D, H = 3, 2, 4, 5
    w = _weights(rng, kind, D, H)
    x = rng.normal(size=(T, B, D))
    states = [rng.normal(size=(B, H)) for _ in range(2)]
    args = dict(_op_kwargs(kind, w))
    cell, eps = args.pop("cell"), args.pop("epsilon")
    empty = np.zeros([0])
    inputs = dict(x=x, h0=states[0], c0=states[1] if kind == "lstm" else empty,
                  recurrent_bias=empty, beta_x=empty, beta_h=empty, gamma_c=empty, beta_c=empty,
                  mask=empty, zoneout_mask=empty, epsilon=np.float64(eps),
                  recurrent_mask=[])  # fmt: skip
    inputs.update(args)
    from tf_rnn_ops._loader import ops

    outs = {
        t: ops().tf_rnn_layer_norm_rnn(**inputs, cell=cell, is_training=t) for t in (True, False)
    }
    assert outs[False][3].shape == (0,) and outs[True][3].shape[0] > 0
    for a, b in zip(outs[False][:3], outs[True][:3], strict=True):
        np.testing.assert_array_equal(a, b)
    y, hn, cn, reserve = outs[False]
    two_masks = dict(inputs, recurrent_mask=[np.ones((B, H))] * 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="recurrent_mask .*got 2 tensors"):
        ops().tf_rnn_layer_norm_rnn(**two_masks, cell=cell)
    with pytest.raises(tf.errors.InvalidArgumentError, match="reserve"):
        ops().tf_rnn_layer_norm_rnn_grad(**inputs, reserve=reserve, dy=tf.ones_like(y),
                                         dhn=tf.zeros_like(hn), dcn=tf.zeros_like(cn),
                                         cell=cell)  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "B,T,D,H",
    [(26, 6, 5, 19), (26, 45, 5, 19), (5, 120, 5, 19), (26, 45, 16, 150), (5, 60, 64, 240)],
)
def test_float32_row_range_gradients_match_keras_autodiff(rng, kind, B, T, D, H):
    """The float32 forward and backward with row ranges (each thread's rows through all steps,
    param grads summed per range then merged; weight grads in runs of rows summed in double)
    against Keras' float64 autodiff of the Keras-ops cells in keras.layers.RNN, with a mask. B = 26,
    T = 45: 1170 rows, several of the weight products' 256-row blocks, the last one short. Calls
    below 128 MFLOP run on one thread (H = 19); past it, B = 26 splits into ranges of 13 rows and
    B = 5, with small step products, into ranges of 2 and 3 (RnnRowsApart), on the test's pool
    of 2 threads or more."""
    cls = L.LayerNormLSTM if kind == "lstm" else L.LayerNormGRU
    layer = cls(H, return_sequences=True, return_state=True, dtype="float32")
    x = rng.normal(size=(B, T, D))
    layer(tf.constant(x, tf.float32))
    w = [rng.uniform(-0.7, 0.7, a.shape) for a in layer.get_weights()]
    layer.set_weights(w)
    peer = _keras_loop_layer(kind, layer)
    peer(tf.constant(x))
    peer.set_weights(w)
    mask = rng.random((B, T)) < 0.8
    mask[:, 0] = True
    w_out = rng.normal(size=(B, T, H))

    def grads(lay, dtype):
        xt = tf.constant(x, dtype)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            out = lay(xt, mask=tf.constant(mask), training=True)
            loss = tf.reduce_sum(out[0] * tf.constant(w_out, dtype)) + tf.reduce_sum(out[1])
        return tape.gradient(loss, [xt, *lay.trainable_weights])

    for k, (a, b) in enumerate(zip(grads(layer, tf.float32), grads(peer, tf.float64), strict=True)):
        scale = np.abs(b).max()
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4 * scale, err_msg=f"gradient {k}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("zoneout", ["none", "train", "infer"])
@pytest.mark.parametrize("recurrent_dropout", [False, True])
@pytest.mark.parametrize("zero_state", [False, True], ids=["state", "zero_state"])
def test_gradients_finite_differences(rng, kind, zoneout, recurrent_dropout, zero_state):
    """zero_state: zero initial states (a layer called without them), where the kernels skip the
    first step's hR and its rows of dR; each probe of a state moves it off zero (the full path)."""
    _check_gradients(rng, kind, zoneout, recurrent_dropout, zero_state, time_major=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("zoneout", ["none", "train", "infer"])
@pytest.mark.parametrize("recurrent_dropout", [False, True])
@pytest.mark.parametrize("zero_state", [False, True], ids=["state", "zero_state"])
def test_gradients_finite_differences_batch_major(
    rng, kind, zoneout, recurrent_dropout, zero_state
):
    """The op with time_major=False: x, y, dy and dx [B, T, ·], dGX in their row order."""
    _check_gradients(rng, kind, zoneout, recurrent_dropout, zero_state, time_major=False)


def _check_gradients(rng, kind, zoneout, recurrent_dropout, zero_state, time_major):
    """Finite differences (float64) of every input's gradient through a loss of y, hn and cn."""
    T, B, D, H = 4, 3, 2, 3
    w = _weights(rng, kind, D, H)
    x = rng.normal(size=(T, B, D))
    states = [rng.normal(size=(B, H)) for _ in range(2 if kind == "lstm" else 1)]
    if zero_state:
        states = [np.zeros_like(s) for s in states]
    lengths = np.array([T, 2, 1])
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)
    kw = {}
    if zoneout == "train":
        kw = dict(zoneout=0.4, zoneout_mask=ref.zoneout_mask(rng, (T, B, H), 0.4))
    elif zoneout == "infer":
        kw = dict(zoneout=0.4)
    if recurrent_dropout:
        kw["recurrent_mask"] = _recurrent_mask(rng, B, H, 0.4)
    wy = rng.normal(size=(T, B, H))
    wh = rng.normal(size=(B, H))

    def loss(x, *args):
        n = len(states)
        y, hn, cn = _run(kind, x, list(args[:n]), list(args[n:]), time_major, mask=mask, **kw)
        out = tf.reduce_sum(y * wy) + tf.reduce_sum(hn * hn * wh)
        if kind == "lstm":
            out += tf.reduce_sum(tf.sin(cn))
        return out

    args = [tf.constant(a) for a in [x, *states, *w]]
    theoretical, numerical = tf.test.compute_gradient(loss, args, delta=1e-6)
    for k, (t, n) in enumerate(zip(theoretical, numerical, strict=True)):
        assert np.abs(n).max() > 0 or k == 0, f"argument {k}: a zero numerical gradient"
        np.testing.assert_allclose(t, n, rtol=1e-5, atol=1e-6, err_msg=f"argument {k}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,B", [(1, 3), (3, 0)], ids=["zero_h0_one_step", "B0"])
def test_weight_grads_whole_after_another_call(rng, kind, dtype, T, B):
    """The grad op writes W's and R's gradients whole without zeroing them first: R's over no rows
    (one step from a zero h0, whose rows of dR are left out) must still be zeros, and every
    gradient of a B = 0 call, each right after a call of the same weights' shapes whose gradients
    were large (memory the allocator may hand out again)."""
    D, H = 5, 7
    w = [a.astype(dtype) for a in _weights(rng, kind, D, H)]
    n = 2 if kind == "lstm" else 1

    def grads(x, states):
        args = [tf.constant(a) for a in [*states, *w]]
        with tf.GradientTape() as tape:
            tape.watch(args)
            y, hn, _ = _run(kind, tf.constant(x), list(args[:n]), list(args[n:]))
            loss = tf.reduce_sum(y) + tf.reduce_sum(hn)
        return tape.gradient(loss, args[n:], unconnected_gradients="zero")

    dirty = grads(100 * rng.normal(size=(6, 4, D)).astype(dtype),
                  [rng.normal(size=(4, H)).astype(dtype) for _ in range(n)])  # fmt: skip
    assert np.abs(dirty[1]).max() > 0
    states = [np.zeros((B, H), dtype) for _ in range(n)]
    got = grads(rng.normal(size=(T, B, D)).astype(dtype), states)
    assert np.all(got[1].numpy() == 0), "R's gradient over no rows"
    if B == 0:
        for k, g in enumerate(got):
            assert np.all(g.numpy() == 0), f"weight {k}'s gradient at B = 0"
    else:
        assert np.abs(got[0]).max() > 0  # (W's gradient: one step's rows)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "T,B,D,H", [(7, 37, 19, 33), (3, 1, 1, 257), (1, 64, 128, 16), (3, 2, 5, 9), (4, 3, 300, 40)]
)
def test_float32_batch_major_same_as_time_major(rng, kind, T, B, D, H):
    """float32, sizes where the products read a step's rows of a batch-major x in place (T·I
    apart), the weights packed or (few rows: 3 × 2, 4 × 3 of large weights) streamed, the batch
    split across threads or not: the outputs are bitwise those of the
    time-major call (each row's products and pass are the same), and so is every gradient summed
    step by step; dx (one product over all rows, whose blocking may depend on where a row lies:
    the AVX2 build differs in the last bit) and W's gradient (a sum over all rows in x's row
    order) to float32 rounding."""
    w = [a.astype(np.float32) for a in _weights(rng, kind, D, H)]
    x = rng.normal(size=(T, B, D)).astype(np.float32)
    states = [rng.normal(size=(B, H)).astype(np.float32) for _ in range(2 if kind == "lstm" else 1)]
    lengths = _lengths(rng, B, T)
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float32)
    kw = dict(
        mask=mask,
        recurrent_mask=_recurrent_mask(rng, B, H).astype(np.float32),
        zoneout=0.3,
        zoneout_mask=ref.zoneout_mask(rng, (T, B, H), 0.3).astype(np.float32),
    )
    wy = tf.constant(rng.normal(size=(T, B, H)).astype(np.float32))

    def run(time_major):
        args = [tf.constant(a) for a in [x, *states, *w]]
        n = len(states)
        with tf.GradientTape() as tape:
            tape.watch(args)
            y, hn, cn = _run(kind, args[0], args[1 : n + 1], args[n + 1 :], time_major, **kw)
            loss = tf.reduce_sum(y * wy) + tf.reduce_sum(hn) + tf.reduce_sum(cn)
        return [y, hn, cn], tape.gradient(loss, args)

    (out_t, grads_t), (out_b, grads_b) = run(True), run(False)
    for k, (a, b) in enumerate(zip(out_t, out_b, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"output {k}")
    n = len(states)
    for k, (a, b) in enumerate(zip(grads_t, grads_b, strict=True)):
        if k in (0, n + 1):  # dx's and W's: products over all rows, in another row order
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=f"gradient {k}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"gradient {k}")


@pytest.mark.parametrize("kind", KINDS)
def test_batch_major_bad_inputs_raise(rng, kind):
    """time_major=False: the errors name the batch-major shapes (x's, and dy's in the grad op)."""
    from tf_rnn_ops._loader import ops

    T, B, D, H = 2, 3, 3, 4
    w = _weights(rng, kind, D, H)
    states = [rng.normal(size=(B, H)) for _ in range(2)]
    kw = _op_kwargs(kind, w)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=r"\[B, T, I\]"):
        layer_norm_rnn(rng.normal(size=(B, T)), states[0], states[1], time_major=False, **kw)
    with pytest.raises(tf.errors.InvalidArgumentError, match="h0"):  # B is x's first dim
        layer_norm_rnn(rng.normal(size=(T, B, D)), states[0], states[1], time_major=False, **kw)
    x = tf.constant(rng.normal(size=(B, T, D)))
    y, hn, cn, reserve = ops().tf_rnn_layer_norm_rnn(
        *_raw_inputs(kind, x, states, w), recurrent_mask=[], cell=kw["cell"], time_major=False
    )
    assert y.shape == (B, T, H)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"dy must have shape \[3,2,4\]"):
        ops().tf_rnn_layer_norm_rnn_grad(
            *_raw_inputs(kind, x, states, w), reserve=reserve, dy=tf.zeros([T, B, H], tf.float64),
            dhn=hn, dcn=cn, recurrent_mask=[], cell=kw["cell"], time_major=False,
        )  # fmt: skip


def _raw_inputs(kind, x, states, w):
    """The forward op's 16 inputs (no masks, no zoneout) for `_op_kwargs`' weights."""
    kw = _op_kwargs(kind, w)
    empty = tf.zeros([0], tf.float64)
    opt = lambda k: tf.constant(kw[k]) if k in kw else empty  # noqa: E731
    c0 = tf.constant(states[1]) if kind == "lstm" else empty
    names = ("kernel", "recurrent_kernel", "bias", "recurrent_bias", "gamma_x", "beta_x",
             "gamma_h", "beta_h", "gamma_c", "beta_c")  # fmt: skip
    epsilon = tf.constant(kw["epsilon"], tf.float64)
    return [x, tf.constant(states[0]), c0, *map(opt, names), empty, empty, epsilon]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_inputs_raise(rng, kind):
    T, B, D, H = 2, 2, 3, 4
    w = _weights(rng, kind, D, H)
    x = rng.normal(size=(T, B, D))
    states = [rng.normal(size=(B, H)) for _ in range(2)]
    with pytest.raises(tf.errors.InvalidArgumentError, match="kernel"):
        _run(kind, rng.normal(size=(T, B, D + 1)), states, w)
    with pytest.raises(tf.errors.InvalidArgumentError, match="h0"):
        _run(kind, x, [rng.normal(size=(B + 1, H)), states[1]], w)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask"):
        _run(kind, x, states, w, mask=np.ones((T + 1, B)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="zoneout_mask"):
        _run(kind, x, states, w, zoneout=0.5, zoneout_mask=np.ones((T, B, H + 1)))
    for bad in (np.ones((B, H + 1)), np.ones((B + 1, H)), np.ones(H)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"recurrent_mask .*\[B, H\]"):
            _run(kind, x, states, w, recurrent_mask=bad)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="x"):
        _run(kind, rng.normal(size=(T, B)), states, w)
    with pytest.raises(ValueError, match="zoneout"):
        _run(kind, x, states, w, zoneout=1.0)
    kw = _op_kwargs(kind, w)
    kw["cell"] = "lstm"
    with pytest.raises(ValueError, match="cell"):
        layer_norm_rnn(x, states[0], states[1], **kw)
    kw = _op_kwargs(kind, w)
    kw["epsilon"] = 0.0
    with pytest.raises(tf.errors.InvalidArgumentError, match="epsilon"):
        layer_norm_rnn(x, states[0], states[1], **kw)


def _keras_loop_layer(kind, fused_layer):
    """The same weights in keras.layers.RNN over the Keras-ops cell (the merged, unfused path)."""
    cell_cls = LayerNormLSTMCell if kind == "lstm" else LayerNormGRUCell
    cfg = fused_layer.get_config()
    rnn = keras.layers.RNN(
        cell_cls(fused_layer.units, zoneout=cfg["zoneout"], dtype="float64"),
        return_sequences=True, return_state=True, go_backwards=cfg["go_backwards"],
        dtype="float64",
    )  # fmt: skip
    return rnn


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_layer_takes_fused_op_and_grads_match_keras_loop(rng, monkeypatch, kind, go_backwards):
    B, T, D, H = 4, 5, 3, 6
    cls = L.LayerNormLSTM if kind == "lstm" else L.LayerNormGRU
    layer = cls(H, return_sequences=True, return_state=True, go_backwards=go_backwards,
                zoneout=0.25, dtype="float64")  # fmt: skip
    x = tf.constant(rng.normal(size=(B, T, D)))
    layer(x)
    layer.set_weights([rng.uniform(-0.7, 0.7, a.shape) for a in layer.get_weights()])
    peer = _keras_loop_layer(kind, layer)
    peer(x)
    peer.set_weights(layer.get_weights())
    mask = tf.constant(rng.random((B, T)) < 0.7)
    h0 = [tf.constant(rng.normal(size=(B, H))) for _ in range(2 if kind == "lstm" else 1)]
    w_out = rng.normal(size=(B, T, H))

    def grads(lay):
        with tf.GradientTape() as tape:
            tape.watch(h0)
            out = lay(x, initial_state=h0, mask=mask)  # inference zoneout: deterministic
            loss = tf.reduce_sum(out[0] * w_out) + sum(tf.reduce_sum(s * s) for s in out[1:])
        return out, tape.gradient(loss, [*lay.trainable_weights, *h0])

    peer_out, peer_grads = grads(peer)

    def no_loop(*a, **k):
        raise AssertionError("the fused layer ran Keras' step loop")

    monkeypatch.setattr(keras.layers.RNN, "inner_loop", no_loop)
    out, got = grads(layer)
    for a, b in zip(out, peer_out, strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    for a, b in zip(got, peer_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", KINDS)
def test_graph_gradients_with_and_without_input_grad(rng, kind):
    """In a tf.function (a Keras training step's graph), the backward op skips the input's gradient
    product when nothing reads it (the executor marks that output not required), and the initial
    state's (zeros: the first step's products are skipped too): the weight gradients, taken
    without and with the input's, and the input's gradient where asked for, all match Keras'
    float64 autodiff of the Keras-ops cells in keras.layers.RNN."""
    B, T, D, H = 13, 7, 5, 9
    cls = L.LayerNormLSTM if kind == "lstm" else L.LayerNormGRU
    layer = cls(H, return_sequences=True, dtype="float64")
    x = tf.constant(rng.normal(size=(B, T, D)))
    layer(x)
    layer.set_weights([rng.uniform(-0.7, 0.7, a.shape) for a in layer.get_weights()])
    peer = _keras_loop_layer(kind, layer)
    peer(x)
    peer.set_weights(layer.get_weights())
    w_out = tf.constant(rng.normal(size=(B, T, H)))

    def step(lay, with_x):
        @tf.function
        def fn():
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = lay(x, training=True)
                out = out[0] if isinstance(out, list | tuple) else out
                loss = tf.reduce_sum(out * w_out)
            return tape.gradient(loss, ([x] if with_x else []) + list(lay.trainable_weights))

        return [g.numpy() for g in fn()]

    want = step(peer, True)
    for with_x in (False, True):
        got = step(layer, with_x)
        expect = want if with_x else want[1:]
        assert len(got) == len(expect)
        for k, (a, b) in enumerate(zip(got, expect, strict=True)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=f"{with_x} grad {k}")


@pytest.mark.parametrize("kind", KINDS)
def test_graph_written_before_recurrent_mask_still_runs(rng, kind):
    """A GraphDef (SavedModel) written before recurrent_mask existed has no such input and no attr
    N: importing fills in N's default (0, no input) and the op runs as it did."""
    T, B, D, H = 3, 2, 4, 5
    w = _weights(rng, kind, D, H)
    x = rng.normal(size=(T, B, D))
    states = [rng.normal(size=(B, H)) for _ in range(2 if kind == "lstm" else 1)]

    @tf.function
    def run():
        return _run(kind, tf.constant(x), [tf.constant(s) for s in states],
                    [tf.constant(a) for a in w])[0]  # fmt: skip

    graph = run.get_concrete_function().graph
    old = graph.as_graph_def()
    nodes = [n for n in old.node if n.op == "TfRnn>LayerNormRnn"]
    assert len(nodes) == 1 and nodes[0].attr["N"].i == 0
    del nodes[0].attr["N"]  # as written before the input existed
    out_name = run.get_concrete_function().outputs[0].name
    imported = tf.compat.v1.wrap_function(
        lambda: tf.graph_util.import_graph_def(old, return_elements=[out_name]), []
    )
    seq, _, _ = ref.rnn(_ref_cell(kind, w), x, states, time_major=True)
    np.testing.assert_allclose(imported()[0], seq, **TOL)
