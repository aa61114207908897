"""tf_rnn_ops.layers.CudnnGRU / CudnnLSTM / CudnnRNNTanh / CudnnRNNRelu: equal to a stack of Keras
layers (Bidirectional wrappers for 'bidirectional') with the same canonical weights — outputs, final
states and gradients w.r.t. inputs, initial states and every weight — with masks of any pattern;
num_proj / skip_input / between-layer dropout against the independent reference (rnn_reference);
params size (Python vs op), Keras-like initialization, canonical weights in and out, layouts,
mixed precision, jit_compile="auto"."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf

import tf_rnn_ops
from tf_rnn_ops import layers as L
from tf_rnn_ops import params as P

TOL = dict(rtol=1e-5, atol=1e-5)
B, T, IN, H = 4, 6, 3, 5
CLASSES = {
    "gru": L.CudnnGRU,
    "lstm": L.CudnnLSTM,
    "rnn_tanh": L.CudnnRNNTanh,
    "rnn_relu": L.CudnnRNNRelu,
}


def _keras_layer(mode, return_sequences):
    kw = dict(
        return_sequences=return_sequences,
        return_state=True,
        zero_output_for_mask=return_sequences,
    )
    if mode == "gru":
        return keras.layers.GRU(H, **kw)
    if mode == "lstm":
        return keras.layers.LSTM(H, **kw)
    return keras.layers.SimpleRNN(H, activation=mode[4:], **kw)


def _keras_stack(rng, mode, num_layers, bidirectional, return_sequences):
    layers, in_size = [], IN
    for i in range(num_layers):
        layer = _keras_layer(mode, return_sequences or i < num_layers - 1)
        if bidirectional:
            layer = keras.layers.Bidirectional(layer)
        layer.build((None, None, in_size))
        layer.set_weights(
            [rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()]
        )
        layers.append(layer)
        in_size = H * (2 if bidirectional else 1)
    return layers


def _subs(layer):
    return (
        [layer.forward_layer, layer.backward_layer] if hasattr(layer, "forward_layer") else [layer]
    )


def _canonical_from_keras(mode, layers, grads=None):
    """Canonical lists of a Keras stack (or, given per-sub-layer [dk, drk, db] `grads`, the
    gradient w.r.t. the canonical lists: Keras' single LSTM / SimpleRNN bias feeds both b_W and
    b_R)."""
    weights, biases, k = [], [], 0
    for layer in layers:
        for sub in _subs(layer):
            if grads is None:
                c = sub.cell
                w, b = P.keras_to_canonical(
                    mode, c.kernel.numpy(), c.recurrent_kernel.numpy(), c.bias.numpy()
                )
            else:
                w, b = P.keras_to_canonical(mode, *[np.asarray(g) for g in grads[k]])
                k += 1
                g = P.NUM_GATES[mode]
                if mode == "lstm":
                    b[:g] = b[g:]
                elif mode != "gru":
                    b[g:] = b[:g]
            weights += w
            biases += b
    return weights, biases


def _masks():
    m = np.ones((B, T), bool)
    m[1, 3:] = False
    m[2, :] = False
    m[3, [0, 2, 5]] = False  # not right-padded
    return m


def _compare_stack(rng, mode, num_layers, bidirectional, return_sequences, masked):
    d = 2 if bidirectional else 1
    n = d * num_layers
    keras_layers = _keras_stack(rng, mode, num_layers, bidirectional, return_sequences)
    ours = CLASSES[mode](
        H,
        num_layers=num_layers,
        direction="bidirectional" if bidirectional else "unidirectional",
        return_sequences=return_sequences,
        return_state=True,
    )
    ours.build((None, None, IN))
    ours.set_canonical_weights(*_canonical_from_keras(mode, keras_layers))
    lstm = mode == "lstm"

    x = tf.constant(rng.uniform(-1, 1, (B, T, IN)).astype(np.float32))
    h0 = tf.constant(rng.uniform(-1, 1, (B, n, H)).astype(np.float32))
    c0 = tf.constant(rng.uniform(-1, 1, (B, n, H)).astype(np.float32)) if lstm else None
    mask = tf.constant(_masks()) if masked else None
    out_shape = (B, T, d * H) if return_sequences else (B, d * H)
    gy = tf.constant(rng.normal(size=out_shape).astype(np.float32))
    gh = tf.constant(rng.normal(size=(B, n, H)).astype(np.float32))
    gc = tf.constant(rng.normal(size=(B, n, H)).astype(np.float32)) if lstm else None
    srcs = [x, h0] + ([c0] if lstm else [])

    def loss(out, h, c):
        val = tf.reduce_sum(out * gy) + tf.reduce_sum(h * gh)
        return val + tf.reduce_sum(c * gc) if lstm else val

    # Keras stack
    kvars = [
        v.value for layer in keras_layers for s in _subs(layer) for v in
        (s.cell.kernel, s.cell.recurrent_kernel, s.cell.bias)
    ]  # fmt: skip
    with tf.GradientTape() as tape:
        tape.watch(srcs)
        y, hs, cs, p = x, [], [], 0
        for layer in keras_layers:
            init = []
            for k in range(d):
                init.append(h0[:, p + k])
                if lstm:
                    init.append(c0[:, p + k])
            res = layer(y, mask=mask, initial_state=init)
            y, states = res[0], list(res[1:])
            per = 2 if lstm else 1
            for k in range(d):
                hs.append(states[k * per])
                if lstm:
                    cs.append(states[k * per + 1])
            p += d
        k_h, k_c = tf.stack(hs, 1), (tf.stack(cs, 1) if lstm else None)
        k_loss = loss(y, k_h, k_c)
    k_grads = tape.gradient(k_loss, srcs + kvars)

    with tf.GradientTape() as tape:
        tape.watch(srcs)
        res = ours(x, mask=mask, initial_state=[h0, c0] if lstm else [h0])
        o_loss = loss(*res) if lstm else loss(res[0], res[1], None)
    o_grads = tape.gradient(o_loss, srcs + [ours.opaque_params.value])

    np.testing.assert_allclose(res[0], y, **TOL, err_msg="output")
    np.testing.assert_allclose(res[1], k_h, **TOL, err_msg="h")
    if lstm:
        np.testing.assert_allclose(res[2], k_c, **TOL, err_msg="c")
    for name, a, b in zip(
        ["d_x", "d_h0", "d_c0"], o_grads[: len(srcs)], k_grads[: len(srcs)], strict=False
    ):
        np.testing.assert_allclose(a, b, **TOL, err_msg=name)
    per_sub = [k_grads[len(srcs) + 3 * i : len(srcs) + 3 * i + 3] for i in range(n)]
    want_w, want_b = _canonical_from_keras(mode, keras_layers, grads=per_sub)
    got_w, got_b = P.opaque_to_canonical(o_grads[-1].numpy(), **ours._layout_args())
    for i, (a, b) in enumerate(zip(got_w + got_b, want_w + want_b, strict=True)):
        np.testing.assert_allclose(a, b, **TOL, err_msg=f"d canonical {i}")


@pytest.mark.parametrize("mode", list(CLASSES))
@pytest.mark.parametrize(
    "bidirectional,return_sequences,masked",
    [(True, True, True), (False, False, True), (True, False, False), (False, True, False)],
    ids=["bi-seq-mask", "uni-last-mask", "bi-last", "uni-seq"],
)
def test_equals_keras_stack(rng, mode, bidirectional, return_sequences, masked):
    _compare_stack(rng, mode, 2, bidirectional, return_sequences, masked)


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(CLASSES))
def test_three_layers_equal_keras_stack(rng, mode):
    _compare_stack(rng, mode, 3, True, True, True)
    _compare_stack(rng, mode, 1, False, False, True)


def test_params_size_python_equals_op_and_layer():
    for mode in P.RNN_MODES:
        for direction in P.DIRECTIONS:
            for input_mode, in_size in (("linear_input", 3), ("skip_input", 5), ("auto_select", 5)):
                for proj in (0, 2) if mode == "lstm" else (0,):
                    args = (mode, 2, 5, in_size, direction, input_mode, proj)
                    op = tf_rnn_ops.cudnn_rnn_params_size(
                        num_layers=2, num_units=5, input_size=in_size, T=tf.float32, S=tf.int32,
                        rnn_mode=mode, direction=direction, input_mode=input_mode, num_proj=proj,
                    )  # fmt: skip
                    assert int(op[0]) == P.params_size(*args), args
                    ranges = P.layer_param_ranges(*args)
                    assert ranges[0][0] == 0 and ranges[-1][1] == P.params_size(*args)
    layer = L.CudnnLSTM(5, num_layers=2, direction="bidirectional", num_proj=2)
    layer.build((None, None, 3))
    assert layer.opaque_params.shape == (
        P.params_size("lstm", 2, 5, 3, "bidirectional", "linear_input", 2),
    )
    assert len(layer.weights) == 1


@pytest.mark.parametrize("mode", list(CLASSES))
def test_initialized_like_keras(mode):
    units, in_size = 16, 7
    layer = CLASSES[mode](units, num_layers=2, direction="bidirectional")
    layer.build((None, None, in_size))
    weights, biases = layer.get_canonical_weights()
    g = P.NUM_GATES[mode]
    per = 2 * g
    for pl in range(4):
        w = weights[pl * per : (pl + 1) * per]
        kernel = np.concatenate([a.T for a in w[:g]], axis=1)  # Keras-shaped [in, G·H]
        rkernel = np.concatenate([a.T for a in w[g:]], axis=1)  # [H, G·H], orthogonal rows
        fan_in, fan_out = kernel.shape
        assert np.abs(kernel).max() <= np.sqrt(6 / (fan_in + fan_out)) + 1e-6  # glorot_uniform
        np.testing.assert_allclose(rkernel @ rkernel.T, np.eye(units), atol=1e-5)
        b = biases[pl * per : (pl + 1) * per]
        for k, v in enumerate(b):
            forget_r = mode == "lstm" and k == g + 1
            np.testing.assert_array_equal(v, np.ones(units) if forget_r else np.zeros(units))
    # without the forget bias
    plain = L.CudnnLSTM(units, unit_forget_bias=False)
    plain.build((None, None, in_size))
    assert all(not b.any() for b in plain.get_canonical_weights()[1])


def test_canonical_weights_round_trip_and_errors(rng):
    layer = L.CudnnLSTM(4, num_layers=2, direction="bidirectional", num_proj=3)
    layer.build((None, None, 2))
    w_shapes, b_shapes = layer.canonical_weight_shapes()
    w = [rng.normal(size=s).astype(np.float32) for s in w_shapes]
    b = [rng.normal(size=s).astype(np.float32) for s in b_shapes]
    layer.set_canonical_weights(w, b)
    w2, b2 = layer.get_canonical_weights()
    for a, c in zip(w + b, w2 + b2, strict=True):
        np.testing.assert_array_equal(a, c)
    # the op's packing equals the Python one
    np.testing.assert_array_equal(
        layer.opaque_params.numpy(), P.canonical_to_opaque(w, b, **layer._layout_args())
    )
    with pytest.raises(ValueError, match="weight 1 has shape"):
        layer.set_canonical_weights([w[0], w[1].T] + w[2:], b)
    with pytest.raises(ValueError, match="expected"):
        layer.set_canonical_weights(w[:-1], b)
    with pytest.raises(ValueError, match="build the layer"):
        L.CudnnGRU(3).get_canonical_weights()


@pytest.mark.parametrize(
    "mode,kwargs,in_size",
    [
        ("lstm", dict(num_proj=3, num_layers=2, direction="bidirectional"), 4),
        ("gru", dict(input_mode="skip_input", num_layers=2), H),
        ("rnn_tanh", dict(input_mode="auto_select", direction="bidirectional"), H),
        ("lstm", dict(input_mode="auto_select", num_proj=2), 3),
    ],
    ids=["lstm_proj", "gru_skip", "tanh_auto_skip", "lstm_auto_linear_proj"],
)
def test_vs_reference(rng, mode, kwargs, in_size):
    """Projection and skip_input (no Keras counterpart) against rnn_reference.rnn_forward, with
    masks (right-padded: the reference takes sequence_lengths) and initial states."""
    layer = CLASSES[mode](H, return_sequences=True, return_state=True, **kwargs)
    layer.build((None, None, in_size))
    w_shapes, b_shapes = layer.canonical_weight_shapes()
    w = [rng.uniform(-0.5, 0.5, s).astype(np.float32) for s in w_shapes]
    b = [rng.uniform(-0.5, 0.5, s).astype(np.float32) for s in b_shapes]
    layer.set_canonical_weights(w, b)
    n = layer.num_dirs * layer.num_layers
    lens = np.array([T, 0, 2, 5], np.int32)
    x = rng.uniform(-1, 1, (B, T, in_size)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (B, n, layer.output_units)).astype(np.float32)
    c0 = rng.uniform(-1, 1, (B, n, H)).astype(np.float32)
    init = [h0, c0] if mode == "lstm" else [h0]
    res = layer(x, initial_state=init, mask=tf.sequence_mask(lens, T))
    want = ref.rnn_forward(
        x, h0, c0, w, b, mode=mode, direction=layer.direction, input_mode=layer.input_mode,
        num_proj=layer.num_proj, sequence_lengths=lens, time_major=False,
    )  # fmt: skip
    for name, a, e in zip(["output", "h", "c"], res, want, strict=False):
        np.testing.assert_allclose(a, e, **TOL, err_msg=name)
    # sequence_lengths passed directly: the same
    res2 = layer(x, initial_state=init, sequence_lengths=lens)
    for a, e in zip(res2, res, strict=False):
        np.testing.assert_allclose(a, e, **TOL)


def test_time_major_equals_batch_major(rng):
    for masked in (False, True):
        bm = L.CudnnLSTM(H, num_layers=2, direction="bidirectional", return_sequences=True,
                         return_state=True)  # fmt: skip
        tm = L.CudnnLSTM.from_config({**bm.get_config(), "time_major": True, "name": "tm"})
        bm.build((None, None, IN))
        tm.build((None, None, IN))
        tm.set_weights(bm.get_weights())
        x = rng.uniform(-1, 1, (B, T, IN)).astype(np.float32)
        h0 = rng.uniform(-1, 1, (B, 4, H)).astype(np.float32)
        c0 = rng.uniform(-1, 1, (B, 4, H)).astype(np.float32)
        mask = _masks() if masked else None
        a = bm(x, initial_state=[h0, c0], mask=mask)
        tr = lambda v: np.transpose(v, (1, 0, 2))  # noqa: E731
        b = tm(tr(x), initial_state=[tr(h0), tr(c0)], mask=None if mask is None else mask.T)
        for u, v in zip(a, b, strict=False):
            np.testing.assert_allclose(u, tr(v.numpy()), **TOL)
        last = L.CudnnLSTM.from_config({**tm.get_config(), "return_sequences": False, "name": "l"})
        last.build((None, None, IN))
        last.set_weights(bm.get_weights())
        out = last(tr(x), initial_state=[tr(h0), tr(c0)], mask=None if mask is None else mask.T)
        assert out[0].shape == (B, 2 * H)


def test_dropout_between_layers(rng):
    """Training: the fused op's dropout between layers. At rate 1 every between-layer input is
    dropped (the reference with zero masks); at 0.4 each call draws fresh masks, layer 0's final
    states see none, and gradients flow; inference: no dropout."""
    lens = np.array([T, 3, 0, 5], np.int32)
    x = rng.uniform(-1, 1, (B, T, IN)).astype(np.float32)
    h0 = np.zeros((B, 6, H), np.float32)
    mask = tf.sequence_mask(lens, T)
    kw = dict(mode="gru", direction="bidirectional", sequence_lengths=lens, time_major=False)
    for rate in (1.0, 0.4):
        layer = L.CudnnGRU(H, num_layers=3, direction="bidirectional", dropout=rate, seed=7,
                           return_sequences=True, return_state=True)  # fmt: skip
        layer.build((None, None, IN))
        w, b = layer.get_canonical_weights()
        out_train = layer(x, mask=mask, training=True)
        plain = ref.rnn_forward(x, h0, None, w, b, **kw)
        if rate == 1.0:
            zeros = [np.zeros((B, T, 2 * H))] * 2
            want = ref.rnn_forward(x, h0, None, w, b, dropout_masks=zeros, **kw)
            for a, e in zip(out_train, want, strict=False):
                np.testing.assert_allclose(a, e, **TOL)
        else:
            again = layer(x, mask=mask, training=True)
            assert not np.allclose(again[0], out_train[0])  # fresh masks
            assert not np.allclose(out_train[0], plain[0])  # masks applied
            # layer 0's final states (pseudo-layers 0, 1) see no dropout
            np.testing.assert_allclose(out_train[1][:, :2], plain[1][:, :2], **TOL)
        infer = layer(x, mask=mask, training=False)
        for a, e in zip(infer, plain, strict=False):
            np.testing.assert_allclose(a, e, **TOL)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x, mask=mask, training=True)[0])
        g = tape.gradient(loss, layer.trainable_weights)
        assert np.all(np.isfinite(g[0])) and np.any(g[0] != 0)


def test_embedding_mask_and_fit_with_jit_auto(rng):
    vocab, steps = 12, 8
    ids = rng.integers(1, vocab, (16, steps))
    for i, n in enumerate(rng.integers(1, steps + 1, 16)):
        ids[i, n:] = 0
    y = (ids % 2).sum(axis=1, keepdims=True) % 2
    model = keras.Sequential(
        [
            keras.Input((steps,), dtype="int32"),
            keras.layers.Embedding(vocab, 4, mask_zero=True),
            L.CudnnGRU(6, num_layers=2, direction="bidirectional", return_sequences=True),
            L.CudnnLSTM(5),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    emb, gru = model.layers[0], model.layers[1]
    masked = gru(emb(ids), mask=tf.not_equal(ids, 0))
    direct = keras.Model(model.inputs[0], gru.output)(ids)
    np.testing.assert_allclose(direct, masked, **TOL)  # the Embedding's mask reached the layer
    assert not np.any(np.asarray(direct)[ids == 0])  # zeros at masked steps
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile="auto")
    before = [w.copy() for w in model.get_weights()]
    hist = model.fit(ids, y, batch_size=8, epochs=2, verbose=0)
    assert model.jit_compile is False
    assert np.all(np.isfinite(hist.history["loss"]))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=False))


def test_mixed_precision(rng):
    layer = L.CudnnLSTM(H, num_layers=2, return_sequences=True, dtype="mixed_float16")
    full = L.CudnnLSTM(H, num_layers=2, return_sequences=True)
    layer.build((None, None, IN))
    full.build((None, None, IN))
    layer.set_weights(full.get_weights())
    assert layer.opaque_params.dtype == "float32"
    x = rng.uniform(-1, 1, (B, T, IN)).astype(np.float32)
    with tf.GradientTape() as tape:
        out = layer(x, mask=_masks())
        loss = tf.reduce_sum(tf.cast(out, tf.float32))
    grad = tape.gradient(loss, layer.trainable_weights)[0]
    assert out.dtype == tf.float16 and grad.dtype == tf.float32
    np.testing.assert_allclose(np.asarray(out, np.float32), full(x, mask=_masks()), atol=2e-3)


def test_config_round_trip():
    for cls in CLASSES.values():
        extra = dict(num_proj=2, unit_forget_bias=False) if cls is L.CudnnLSTM else {}
        layer = cls(
            4, num_layers=3, direction="bidirectional", dropout=0.25, seed=3, time_major=True,
            return_sequences=True, return_state=True, input_mode="auto_select",
            kernel_initializer="he_normal", params_regularizer="l2", **extra,
        )  # fmt: skip
        clone = cls.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        assert keras.saving.get_registered_name(cls) == f"tf_rnn_ops>{cls.__name__}"
    with pytest.raises(ValueError, match="direction"):
        L.CudnnGRU(3, direction="both")
    with pytest.raises(ValueError, match="num_proj"):
        L.CudnnGRU(3, num_proj=2)
    with pytest.raises(ValueError, match="dropout"):
        L.CudnnGRU(3, dropout=1.5)
    with pytest.raises(ValueError, match="skip_input"):
        L.CudnnGRU(3, input_mode="skip_input").build((None, None, 4))


@pytest.mark.parametrize("cls", list(CLASSES.values()), ids=lambda c: c.__name__)
def test_model_rules_name_the_layer(cls):
    """The layers check their model with `params.check_model` (the op's rules): input_size >= 1 at
    build (the op refuses an input of width 0), the other rules at construction."""
    with pytest.raises(ValueError, match=rf"{cls.__name__}: input_size must be >= 1, got 0"):
        cls(3).build((None, None, 0))
    with pytest.raises(ValueError, match=rf"{cls.__name__}: input_size must be >= 1"):
        cls(3)(tf.zeros([2, 4, 0]))
    with pytest.raises(ValueError, match=rf"{cls.__name__}: num_units must be >= 1"):
        cls(0)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: num_layers must be >= 1"):
        cls(3, num_layers=0)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: input_mode must be one of"):
        cls(3, input_mode="linear")
    with pytest.raises(ValueError, match=rf"{cls.__name__}: dropout must be in \[0, 1\]"):
        cls(3, dropout=float("nan"))
    cls(3).build((None, None, 1))  # the smallest input the op takes
