"""Validates the float64 reference (tests/support/rnn_reference.py) and the Keras mapping
(tests/support/keras_convert.py) against Keras itself, so that the kernel tests compare against
something trustworthy.

Nothing here needs the compiled op library.
"""

from __future__ import annotations

import math

import keras_convert as kc
import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf

MODES = ref.MODES
F64 = dict(rtol=1e-10, atol=1e-12)


def _lengths(rng, batch, steps):
    """Variable lengths that include 0 and T whenever the batch has room for them."""
    lens = rng.integers(0, steps + 1, size=batch)
    if batch >= 1:
        lens[0] = steps
    if batch >= 2:
        lens[1] = 0
    return lens.astype(np.int32)


def _data(rng, mode, num_layers, batch, steps, input_size, num_units, dirs, h_out=None):
    h_out = h_out or num_units
    x = rng.uniform(-1, 1, (batch, steps, input_size))
    h0 = rng.uniform(-1, 1, (dirs * num_layers, batch, h_out))
    c0 = rng.uniform(-1, 1, (dirs * num_layers, batch, num_units)) if mode == "lstm" else None
    return x, h0, c0


def _tm(a):
    """[B, T, ...] <-> [T, B, ...]"""
    return None if a is None else np.swapaxes(np.asarray(a), 0, 1)


# --------------------------------------------------------------------------------- layout / params
def test_published_reference_value():
    """docs/MATH.md, "Params layout": rnn_relu, 2 layers, 8 units, input 4, batch 4, 2 steps,
    everything 1 → 130688."""
    w, b = ref.random_canonical(np.random.default_rng(0), "rnn_relu", 2, 8, 4)
    w = [np.ones_like(a) for a in w]
    b = [np.ones_like(a) for a in b]
    out, h, _ = ref.rnn_forward(np.ones([2, 4, 4]), np.ones([2, 4, 8]), None, w, b, mode="rnn_relu")
    assert out.sum() + h.sum() == 130688


@pytest.mark.parametrize("mode", MODES)
def test_params_size_formula(mode):
    g = ref.NUM_GATES[mode]
    # one layer: g·(H·I + H·H + 2H)
    assert ref.params_size(mode, 1, 5, 3) == g * (5 * 3 + 5 * 5 + 2 * 5)
    # two bidirectional layers: layer 1 reads 2H
    per_dir0 = g * (5 * 3 + 5 * 5 + 2 * 5)
    per_dir1 = g * (5 * 10 + 5 * 5 + 2 * 5)
    assert ref.params_size(mode, 2, 5, 3, "bidirectional") == 2 * (per_dir0 + per_dir1)
    # skip_input: layer 0 has no input matrices but keeps its input biases
    assert ref.params_size(mode, 1, 5, 5, input_mode="skip_input") == g * (5 * 5 + 2 * 5)
    assert ref.params_size(mode, 1, 5, 5, input_mode="auto_select") == g * (5 * 5 + 2 * 5)
    assert ref.params_size(mode, 1, 5, 4, input_mode="auto_select") == g * (5 * 4 + 5 * 5 + 2 * 5)


def test_params_size_num_proj():
    # lstm, H=6, P=2, I=3, 2 layers bidirectional: W [6,in], R [6,2], P [2,6]
    per0 = 4 * (6 * 3 + 6 * 2 + 2 * 6) + 2 * 6
    per1 = 4 * (6 * 4 + 6 * 2 + 2 * 6) + 2 * 6
    assert ref.params_size("lstm", 2, 6, 3, "bidirectional", num_proj=2) == 2 * (per0 + per1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("direction", ref.DIRECTIONS)
@pytest.mark.parametrize("input_mode", ["linear_input", "skip_input"])
def test_opaque_roundtrip(rng, mode, direction, input_mode):
    args = (mode, 3, 4, 4, direction, input_mode)
    w, b = ref.random_canonical(rng, *args)
    params = ref.canonical_to_opaque(w, b, *args)
    assert params.shape == (ref.params_size(*args),)
    w2, b2 = ref.opaque_to_canonical(params, *args)
    for a, c in zip(w + b, w2 + b2, strict=True):
        np.testing.assert_array_equal(a, c)
    # per pseudo-layer: matrices then biases
    layout = ref.pseudo_layers(*args)
    nw0, nb0 = len(layout[0][0]), len(layout[0][1])
    first = np.concatenate([a.ravel() for a in w[:nw0]] + [a.ravel() for a in b[:nb0]])
    np.testing.assert_array_equal(params[: first.size], first)
    # TF path packs identically
    tp = ref.canonical_to_opaque([tf.constant(a) for a in w], [tf.constant(a) for a in b], *args)
    np.testing.assert_array_equal(tp.numpy(), params)


def _keras_cudnn_params(layer):
    """The opaque params that Keras 3 (TF backend) builds for cuDNN
    (keras/src/backend/tensorflow/rnn.py `_cudnn_gru` / `_cudnn_lstm`, with the CUDA-build gate swap
    for GRU)."""
    from keras.src.backend.tensorflow.rnn import _standardize_cudnn_weights

    c = layer.cell
    kind = kc.layer_kind(layer)
    n = 3 if kind == "gru" else 4
    weights = tf.split(c.kernel, n, axis=1) + tf.split(c.recurrent_kernel, n, axis=1)
    if kind == "gru":
        bias = tf.split(tf.reshape(c.bias, [-1]), 6)
        weights[0], weights[1] = weights[1], weights[0]
        weights[3], weights[4] = weights[4], weights[3]
        bias[0], bias[1] = bias[1], bias[0]
        bias[3], bias[4] = bias[4], bias[3]
    else:
        bias = tf.split(tf.concat((tf.zeros_like(c.bias), c.bias), 0), 8)
    return _standardize_cudnn_weights(weights, bias, tf.constant([-1]), transpose_weights=True)


@pytest.mark.parametrize("mode", ["gru", "lstm"])
def test_opaque_equals_keras_cudnn_params(rng, mode):
    """docs/MATH.md, "Params layout": for one unidirectional layer, opaque = the concat(weights +
    biases) Keras builds."""
    (layer,) = kc.make_layers(mode, 1, 5, 3, rng=rng)
    np.testing.assert_array_equal(kc.layers_to_params([layer]), _keras_cudnn_params(layer).numpy())


@pytest.mark.parametrize("mode", MODES)
def test_canonical_grads_to_cell_inverts_mapping(rng, mode):
    """canonical_grads_to_cell is the transpose of cell_to_canonical (a linear map): <g, M w> = <Mᵀ
    g, w>."""
    (layer,) = kc.make_layers(mode, 1, 4, 3, rng=rng, dtype="float64")
    kind = kc.layer_kind(layer)
    kw = [np.asarray(v) for v in layer.get_weights()]
    w, b = kc.cell_to_canonical(kind, *kw)
    gw = [rng.normal(size=a.shape) for a in w]
    gb = [rng.normal(size=a.shape) for a in b]
    if kind == "lstm":  # the Keras bias only reaches b_R
        gb[:4] = [np.zeros_like(a) for a in gb[:4]]
    if kind == "simple_rnn":  # ... only b_W
        gb[1] = np.zeros_like(gb[1])
    lhs = sum(np.vdot(g, a) for g, a in zip(gw + gb, w + b, strict=True))
    back = kc.canonical_grads_to_cell(kind, gw, gb)
    rhs = sum(np.vdot(g, a) for g, a in zip(back, kw, strict=True))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


# -------------------------------------------------------------------------------- forward vs Keras
def _compare_with_keras(
    rng, mode, num_layers, bidirectional, batch, steps, input_size, units, lengths
):
    dirs = 2 if bidirectional else 1
    layers = kc.make_layers(
        mode, num_layers, units, input_size, bidirectional, rng, dtype="float64"
    )
    x, h0, c0 = _data(rng, mode, num_layers, batch, steps, input_size, units, dirs)
    k_out, k_h, k_c = kc.run_layers(layers, x, h0, c0, lengths)
    w, b = kc.layers_to_canonical(layers)
    direction = "bidirectional" if bidirectional else "unidirectional"
    for time_major in (True, False):
        if time_major:
            args = (_tm(x), h0, c0)
        else:
            args = (x, _tm(h0), _tm(c0))
        out, h, c = ref.rnn_forward(
            *args,
            w,
            b,
            mode=mode,
            direction=direction,
            sequence_lengths=lengths,
            time_major=time_major,
        )
        if time_major:
            out = _tm(out)
        else:
            h, c = _tm(h), _tm(c)
        np.testing.assert_allclose(out, k_out.numpy(), **F64)
        np.testing.assert_allclose(h, k_h.numpy(), **F64)
        if mode == "lstm":
            np.testing.assert_allclose(c, k_c.numpy(), **F64)
        else:
            assert c is None
    return layers


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variable", [False, True], ids=["full", "varlen"])
def test_reference_vs_keras_one_layer(rng, mode, variable):
    batch, steps = 5, 6
    lengths = _lengths(rng, batch, steps) if variable else None
    _compare_with_keras(rng, mode, 1, False, batch, steps, 3, 4, lengths)


@pytest.mark.parametrize("mode", MODES)
def test_reference_vs_keras_bidirectional_stack(rng, mode):
    """2 bidirectional layers with variable lengths (0 and T included): the backward direction reads
    the valid part of each sequence in reverse (Keras go_backwards on right-padded masked input)."""
    batch, steps = 4, 5
    _compare_with_keras(rng, mode, 2, True, batch, steps, 3, 4, _lengths(rng, batch, steps))


@pytest.mark.parametrize("mode", MODES)
def test_reference_vs_keras_three_layers(rng, mode):
    batch, steps = 3, 4
    _compare_with_keras(rng, mode, 3, False, batch, steps, 2, 3, _lengths(rng, batch, steps))


def test_reference_vs_keras_odd_sizes(rng):
    """Sizes 1 (batch, input, units) and a long-ish sequence."""
    _compare_with_keras(rng, "gru", 1, True, 1, 9, 1, 1, np.array([7], np.int32))
    _compare_with_keras(rng, "lstm", 2, False, 3, 1, 1, 1, np.array([1, 0, 1], np.int32))


@pytest.mark.parametrize("mode", MODES)
def test_reference_vs_keras_go_backwards(rng, mode):
    """A Keras go_backwards layer on right-padded masked data = our backward direction (its final
    state; its outputs reversed along the valid part)."""
    import keras

    batch, steps, inp, units = 4, 5, 3, 4
    (fwd,) = kc.make_layers(mode, 1, units, inp, rng=rng, dtype="float64")
    cfg = fwd.get_config()
    cfg["go_backwards"] = True
    bwd = type(fwd).from_config(cfg)
    bwd.build((None, None, inp))
    kc.set_random_weights(bwd, rng)
    lengths = _lengths(rng, batch, steps)
    x, h0, c0 = _data(rng, mode, 1, batch, steps, inp, units, 2)
    init = [h0[1]] + ([c0[1]] if mode == "lstm" else [])
    res = bwd(x, mask=tf.sequence_mask(lengths, steps), initial_state=init)
    k_out, k_h = res[0].numpy(), res[1].numpy()
    w0, b0 = kc.layers_to_canonical([fwd])
    w1, b1 = kc.layers_to_canonical([bwd])
    out, h, c = ref.rnn_forward(
        _tm(x),
        h0,
        c0,
        w0 + w1,
        b0 + b1,
        mode=mode,
        direction="bidirectional",
        sequence_lengths=lengths,
    )
    out = _tm(out)[:, :, units:]
    np.testing.assert_allclose(h[1], k_h, **F64)
    if mode == "lstm":
        np.testing.assert_allclose(c[1], res[2].numpy(), **F64)
    # Keras' go_backwards output k is the state after reading padded-reversed step T-1-k: at a
    # valid step t < len it is our output at t; padded steps come first in Keras' order.
    for bi, n in enumerate(lengths):
        for t in range(n):
            np.testing.assert_allclose(out[bi, t], k_out[bi, steps - 1 - t], **F64)
        np.testing.assert_array_equal(out[bi, n:], 0.0)
    del keras


# ------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("mode", MODES)
def test_tf_reference_gradients_vs_keras(rng, mode):
    """The TF-ops version of the reference gives Keras' gradients w.r.t. inputs, initial states and
    every weight and bias (a 2-layer bidirectional stack, variable lengths)."""
    batch, steps, inp, units, L = 3, 4, 2, 3, 2
    layers = kc.make_layers(mode, L, units, inp, True, rng, dtype="float64")
    x, h0, c0 = _data(rng, mode, L, batch, steps, inp, units, 2)
    lengths = _lengths(rng, batch, steps)
    lstm = mode == "lstm"
    x_t, h_t = tf.constant(x), tf.constant(h0)
    c_t = tf.constant(c0) if lstm else None
    gy = rng.normal(size=(batch, steps, 2 * units))
    gh = rng.normal(size=h0.shape)
    gc = rng.normal(size=h0.shape) if lstm else None

    def loss(out, h, c):
        val = tf.reduce_sum(out * gy) + tf.reduce_sum(h * gh)
        return val + tf.reduce_sum(c * gc) if lstm else val

    kvars = kc.keras_trainable(layers)
    with tf.GradientTape() as tape:
        tape.watch([x_t, h_t] + ([c_t] if lstm else []))
        k_loss = loss(*kc.run_layers(layers, x_t, h_t, c_t, lengths))
    src = [x_t, h_t] + ([c_t] if lstm else [])
    k_grads = tape.gradient(k_loss, src + kvars)

    with tf.GradientTape() as tape:
        tape.watch(src)
        w, b = kc.layers_to_canonical(layers, differentiable=True)
        bm = lambda a: None if a is None else tf.transpose(a, [1, 0, 2])  # noqa: E731
        out, h, c = ref.rnn_forward(
            x_t,
            bm(h_t),
            bm(c_t),
            w,
            b,
            mode=mode,
            direction="bidirectional",
            sequence_lengths=lengths,
            time_major=False,
            backend=ref.TF,
        )
        r_loss = loss(out, bm(h), bm(c))
    r_grads = tape.gradient(r_loss, src + kvars)
    np.testing.assert_allclose(r_loss.numpy(), k_loss.numpy(), **F64)
    for i, (a, e) in enumerate(zip(r_grads, k_grads, strict=True)):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(e), rtol=1e-9, atol=1e-11, err_msg=str(i)
        )


@pytest.mark.parametrize("mode", MODES)
def test_tf_reference_canonical_gradients_by_finite_differences(rng, mode):
    """Gradients of the TF reference w.r.t. the canonical lists (incl. LSTM's b_W, num_proj's P and
    skip_input) match central differences of the numpy reference."""
    num_proj = 2 if mode == "lstm" else 0
    h_out = num_proj or 3
    args = (mode, 2, 3, 3, "bidirectional", "skip_input", num_proj)
    w, b = ref.random_canonical(rng, *args)
    batch, steps = 2, 3
    x = rng.uniform(-1, 1, (steps, batch, 3))
    h0 = rng.uniform(-1, 1, (4, batch, h_out))
    c0 = rng.uniform(-1, 1, (4, batch, 3)) if mode == "lstm" else None
    lengths = np.array([3, 1], np.int32)
    gy = rng.normal(size=(steps, batch, 2 * h_out))
    kw = dict(
        mode=mode,
        direction="bidirectional",
        input_mode="skip_input",
        num_proj=num_proj,
        sequence_lengths=lengths,
    )

    def np_loss(w_, b_):
        out, h, c = ref.rnn_forward(x, h0, c0, w_, b_, **kw)
        return float(np.sum(out * gy) + np.sum(h) + (np.sum(c * c) if c is not None else 0.0))

    tw = [tf.Variable(a) for a in w]
    tb = [tf.Variable(a) for a in b]
    with tf.GradientTape() as tape:
        out, h, c = ref.rnn_forward(x, h0, c0, tw, tb, backend=ref.TF, **kw)
        loss = (
            tf.reduce_sum(out * gy)
            + tf.reduce_sum(h)
            + (tf.reduce_sum(c * c) if c is not None else 0)
        )
    grads = tape.gradient(loss, tw + tb)
    np.testing.assert_allclose(loss.numpy(), np_loss(w, b), rtol=1e-12)
    eps = 1e-6
    allv = w + b
    for k, (arr, g) in enumerate(zip(allv, grads, strict=True)):
        idx = tuple(rng.integers(0, s) for s in arr.shape)  # one random element per tensor
        plus = [a.copy() for a in allv]
        minus = [a.copy() for a in allv]
        plus[k][idx] += eps
        minus[k][idx] -= eps
        fd = (
            np_loss(plus[: len(w)], plus[len(w) :]) - np_loss(minus[: len(w)], minus[len(w) :])
        ) / (2 * eps)
        np.testing.assert_allclose(g.numpy()[idx], fd, rtol=1e-6, atol=1e-8, err_msg=f"tensor {k}")


# ---------------------------------------------------------------------------- features Keras lacks
@pytest.mark.parametrize("mode", MODES)
def test_skip_input_is_identity_input_matrices(rng, mode):
    args = (mode, 2, 4, 4, "bidirectional")
    w_lin, b = ref.random_canonical(rng, *args)
    g = ref.NUM_GATES[mode]
    # linear_input with identity input matrices for both directions of layer 0
    layout = ref.pseudo_layers(*args)
    per = len(layout[0][0])
    for d in range(2):
        for k in range(g):
            w_lin[d * per + k] = np.eye(4)
    w_skip = [a for i, a in enumerate(w_lin) if not (i < 2 * per and i % per < g)]
    assert len(w_skip) == len(ref.canonical_shapes(*args[:5], "skip_input")[0])
    x = rng.uniform(-1, 1, (5, 3, 4))
    h0 = rng.uniform(-1, 1, (4, 3, 4))
    c0 = rng.uniform(-1, 1, (4, 3, 4))
    lengths = np.array([5, 0, 2], np.int32)
    kw = dict(mode=mode, direction="bidirectional", sequence_lengths=lengths)
    a = ref.rnn_forward(x, h0, c0, w_lin, b, input_mode="linear_input", **kw)
    s = ref.rnn_forward(x, h0, c0, w_skip, b, input_mode="skip_input", **kw)
    a2 = ref.rnn_forward(x, h0, c0, w_skip, b, input_mode="auto_select", **kw)
    for u, v, v2 in zip(a, s, a2, strict=True):
        if u is not None:
            np.testing.assert_allclose(u, v, **F64)
            np.testing.assert_array_equal(v, v2)


def test_num_proj_vs_hand_written_lstm(rng):
    """lstm with a projection, written out independently for one layer: h_t = P (o ∘ tanh(c_t))."""
    H, P, I, B, T = 4, 2, 3, 3, 4  # noqa: E741
    w, b = ref.random_canonical(rng, "lstm", 1, H, I, num_proj=P)
    x = rng.uniform(-1, 1, (T, B, I))
    h = rng.uniform(-1, 1, (B, P))
    c = rng.uniform(-1, 1, (B, H))
    lengths = np.array([4, 2, 0], np.int32)
    out, oh, oc = ref.rnn_forward(
        x, h[None], c[None], w, b, mode="lstm", num_proj=P, sequence_lengths=lengths
    )
    assert out.shape == (T, B, P) and oh.shape == (1, B, P) and oc.shape == (1, B, H)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    Wi, Wf, Wc, Wo, Ri, Rf, Rc, Ro, Pm = w
    for bi in range(B):
        hh, cc = h[bi], c[bi]
        for t in range(T):
            if t >= lengths[bi]:
                np.testing.assert_array_equal(out[t, bi], 0)
                continue
            xt = x[t, bi]
            i = sig(Wi @ xt + b[0] + Ri @ hh + b[4])
            f = sig(Wf @ xt + b[1] + Rf @ hh + b[5])
            g = np.tanh(Wc @ xt + b[2] + Rc @ hh + b[6])
            o = sig(Wo @ xt + b[3] + Ro @ hh + b[7])
            cc = f * cc + i * g
            hh = Pm @ (o * np.tanh(cc))
            np.testing.assert_allclose(out[t, bi], hh, **F64)
        np.testing.assert_allclose(oh[0, bi], hh, **F64)
        np.testing.assert_allclose(oc[0, bi], cc, **F64)


@pytest.mark.parametrize("time_major", [True, False])
def test_dropout_masks_apply_between_layers(rng, time_major):
    """Explicit dropout multipliers = running the layers one by one and scaling each non-last
    output."""
    mode, L, H, I, B, T = "gru", 3, 3, 2, 2, 4  # noqa: E741
    w, b = ref.random_canonical(rng, mode, L, H, I, "bidirectional")
    x = rng.uniform(-1, 1, (T, B, I))
    h0 = rng.uniform(-1, 1, (2 * L, B, H))
    lengths = np.array([4, 3], np.int32)
    masks = [(rng.random((T, B, 2 * H)) > 0.3) / 0.7 for _ in range(L - 1)]
    conv = (lambda a: a) if time_major else _tm
    out, h, _ = ref.rnn_forward(
        conv(x),
        conv(h0),
        None,
        w,
        b,
        mode=mode,
        direction="bidirectional",
        sequence_lengths=lengths,
        time_major=time_major,
        dropout_masks=[conv(m) for m in masks],
    )
    layer_in, hs, iw, ib = x, [], 0, 0
    for layer in range(L):
        lay = ref.pseudo_layers(mode, 1, H, layer_in.shape[-1], "bidirectional")
        nw = sum(len(a) for a, _ in lay)
        nb = sum(len(c) for _, c in lay)
        o, hh, _ = ref.rnn_forward(
            layer_in,
            h0[2 * layer : 2 * layer + 2],
            None,
            w[iw : iw + nw],
            b[ib : ib + nb],
            mode=mode,
            direction="bidirectional",
            sequence_lengths=lengths,
        )
        iw, ib = iw + nw, ib + nb
        hs.append(hh)
        layer_in = o * masks[layer] if layer < L - 1 else o
    np.testing.assert_allclose(conv(out), layer_in, **F64)
    np.testing.assert_allclose(conv(h), np.concatenate(hs), **F64)


@pytest.mark.parametrize("mode", MODES)
def test_numpy_and_tf_backends_agree(rng, mode):
    num_proj = 2 if mode == "lstm" else 0
    args = (mode, 2, 3, 5, "bidirectional", "linear_input", num_proj)
    w, b = ref.random_canonical(rng, *args)
    h_out = num_proj or 3
    x = rng.uniform(-1, 1, (3, 4, 5))
    h0 = rng.uniform(-1, 1, (3, 4, h_out))
    c0 = rng.uniform(-1, 1, (3, 4, 3))
    lengths = np.array([0, 4, 1], np.int32)
    kw = dict(
        mode=mode,
        direction="bidirectional",
        num_proj=num_proj,
        sequence_lengths=lengths,
        time_major=False,
    )
    a = ref.rnn_forward(x, h0, c0, w, b, **kw)
    t = ref.rnn_forward(x, h0, c0, w, b, backend=ref.TF, **kw)
    for u, v in zip(a, t, strict=True):
        if u is None:
            assert v is None
        else:
            np.testing.assert_allclose(u, v.numpy(), **F64)


def test_empty_batch_and_empty_time(rng):
    w, b = ref.random_canonical(rng, "lstm", 2, 3, 2, "bidirectional")
    out, h, c = ref.rnn_forward(
        np.zeros([4, 0, 2]),
        np.zeros([4, 0, 3]),
        np.zeros([4, 0, 3]),
        w,
        b,
        mode="lstm",
        direction="bidirectional",
    )
    assert out.shape == (4, 0, 6) and h.shape == (4, 0, 3) and c.shape == (4, 0, 3)
    h0 = rng.normal(size=(4, 2, 3))
    c0 = rng.normal(size=(4, 2, 3))
    out, h, c = ref.rnn_forward(
        np.zeros([0, 2, 2]), h0, c0, w, b, mode="lstm", direction="bidirectional"
    )
    assert out.shape == (0, 2, 6)
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(c, c0)


def test_reference_rejects_bad_layouts():
    with pytest.raises(ValueError):
        ref.params_size("gru", 1, 4, 3, input_mode="skip_input")
    with pytest.raises(ValueError):
        ref.params_size("gru", 1, 4, 3, num_proj=2)
    with pytest.raises(ValueError):
        ref.params_size("bogus", 1, 4, 3)
    assert math.prod(ref.canonical_shapes("lstm", 1, 4, 3, num_proj=2)[0][-1]) == 8


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("time_major", [True, False])
def test_problem_reference_grads_by_finite_differences(rng, mode, time_major):
    """ref.Problem.reference_grads (used by the kernel tests) w.r.t. input, input_h, input_c and the
    opaque params, against central differences of ref.Problem.reference."""
    p = ref.Problem(
        rng, mode, 2, 3, 3, batch=3, steps=3, direction="bidirectional", input_mode="skip_input",
        num_proj=2 if mode == "lstm" else 0, time_major=time_major,
    )  # fmt: skip
    d_out, d_h, d_c = p.cotangents(rng)
    grads = p.reference_grads(d_out, d_h, d_c)

    def loss():
        out, h, c = p.reference()
        val = np.sum(out * d_out) + np.sum(h * d_h)
        return val + (np.sum(c * d_c) if c is not None else 0.0)

    def fd(arr, idx, eps=1e-6, after=lambda: None):
        old = arr[idx]
        arr[idx] = old + eps
        after()
        plus = loss()
        arr[idx] = old - eps
        after()
        minus = loss()
        arr[idx] = old
        after()
        return (plus - minus) / (2 * eps)

    def unpack():
        p.weights, p.biases = ref.opaque_to_canonical(p.params, *p.layout_args)

    targets = [(p.x, lambda: None), (p.h0, lambda: None), (p.params, unpack)]
    if p.is_lstm:
        targets.insert(2, (p.c0, lambda: None))
    exp = [grads[0], grads[1]] + ([grads[2]] if p.is_lstm else []) + [grads[3]]
    for (arr, after), g in zip(targets, exp, strict=True):
        assert g.shape == arr.shape
        for _ in range(6):
            idx = tuple(int(rng.integers(0, s)) for s in arr.shape)
            np.testing.assert_allclose(g[idx], fd(arr, idx, after=after), rtol=1e-6, atol=1e-8)
