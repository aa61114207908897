"""`tf_rnn_ops.layers.LayerNormLSTM` / `LayerNormGRU` and their cells against the float64
references of `cell_reference` (which are checked against TF Addons' and haste's cells in
test_cell_reference_checks.py): outputs and states with masks, go_backwards, initial states, odd
sizes and B = 0; zoneout in training (the masks the cell drew, recorded) and inference; the
upstream weight orders (TF Addons' and haste's weights load and give the same outputs); stateful,
Bidirectional; finite-difference gradients; `.keras` and SavedModel round trips; bad arguments."""

from __future__ import annotations

import json

import cell_reference as ref
import keras
import numpy as np
import pytest
import tensorflow as tf
import upstream_ports as up

from tf_rnn_ops import layers as L
from tf_rnn_ops.layers.layer_norm import LayerNormGRUCell, LayerNormLSTMCell

TOL = dict(rtol=1e-10, atol=1e-12)
F64 = "float64"
KINDS = ("lstm", "gru")


def _layer(kind, H, **kw):
    cls = L.LayerNormLSTM if kind == "lstm" else L.LayerNormGRU
    kw.setdefault("dtype", F64)
    return cls(H, **kw)


def _nstates(kind):
    return 2 if kind == "lstm" else 1


def _ref_cell(kind, weights, eps=None):
    if kind == "lstm":
        return ref.layer_norm_lstm_cell(weights, norm_epsilon=1e-3 if eps is None else eps)
    return ref.layer_norm_gru_cell(weights, norm_epsilon=1e-5 if eps is None else eps)


def _randomize(layer, rng, scale=0.7):
    layer.set_weights([rng.uniform(-scale, scale, w.shape) for w in layer.get_weights()])


def _mask(rng, B, T):
    m = rng.random((B, T)) < 0.7
    if B > 1:
        m[0], m[-1] = True, False
    return m


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "B,T,D,H,go_backwards,masked,eps",
    [(3, 5, 4, 3, False, True, None), (1, 1, 1, 1, True, False, None),
     (2, 3, 3, 257, False, True, 1e-4), (0, 3, 2, 3, True, True, None),
     (4, 6, 2, 5, True, True, 0.3)],
)  # fmt: skip
def test_layer_matches_reference(rng, kind, B, T, D, H, go_backwards, masked, eps):
    kw = {} if eps is None else {"norm_epsilon": eps}
    layer = _layer(kind, H, return_sequences=True, return_state=True, go_backwards=go_backwards,
                   **kw)  # fmt: skip
    x = rng.normal(size=(B, T, D))
    layer(x)
    _randomize(layer, rng)
    h0 = [rng.normal(size=(B, H)) for _ in range(_nstates(kind))]
    mask = _mask(rng, B, T) if masked else None
    got = layer(x, initial_state=h0, mask=mask)
    seq, _, states = ref.rnn(_ref_cell(kind, layer.get_weights(), eps), x, h0, mask=mask,
                             go_backwards=go_backwards)  # fmt: skip
    assert len(got) == 1 + _nstates(kind)
    np.testing.assert_allclose(got[0], seq, **TOL)
    for g, s in zip(got[1:], states, strict=True):
        np.testing.assert_allclose(g, s, **TOL)
    # return_sequences=False: the last output
    last_layer = _layer(kind, H, go_backwards=go_backwards, **kw)
    last_layer(x)
    last_layer.set_weights(layer.get_weights())
    _, last, _ = ref.rnn(_ref_cell(kind, layer.get_weights(), eps), x, h0, mask=mask,
                         go_backwards=go_backwards)  # fmt: skip
    np.testing.assert_allclose(last_layer(x, initial_state=h0, mask=mask), last, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_layer_close_to_reference(rng, kind):
    B, T, D, H = 4, 7, 5, 6
    layer = _layer(kind, H, return_sequences=True, dtype="float32")
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    layer(x)
    _randomize(layer, rng)
    got = layer(x)
    assert got.dtype == "float32"
    h0 = [np.zeros((B, H))] * _nstates(kind)
    seq, _, _ = ref.rnn(_ref_cell(kind, layer.get_weights()), x, h0)
    np.testing.assert_allclose(got, seq, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_mixed_precision_close_to_float32(rng, kind):
    B, T, D, H = 3, 6, 4, 5
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    full = _layer(kind, H, return_sequences=True, dtype="float32")
    half = _layer(kind, H, return_sequences=True, dtype="mixed_float16")
    full(x)
    half(x)
    _randomize(full, rng)
    half.set_weights(full.get_weights())
    got = half(x)
    assert keras.backend.standardize_dtype(got.dtype) == "float16"
    assert all(w.dtype == "float32" for w in half.weights)
    np.testing.assert_allclose(np.asarray(got, np.float32), full(x), rtol=2e-2, atol=2e-2)


def test_training_in_a_function_draws_fresh_masks_and_learns(rng):
    model = keras.Sequential(
        [
            keras.Input((5, 3)),
            L.LayerNormLSTM(4, zoneout=0.3, return_sequences=True),
            L.LayerNormGRU(2, zoneout=0.2),
        ]
    )
    x = rng.normal(size=(8, 5, 3)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    train = tf.function(lambda x: model(x, training=True))
    assert np.abs(train(x) - train(x)).max() > 1e-4
    infer = tf.function(lambda x: model(x, training=False))
    np.testing.assert_array_equal(infer(x), infer(x))
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


class _Recorder:
    """Records the zoneout masks the cells draw (wrapping the real `zoneout_mask_of_shape`), one
    [B, H] mask a step: the Keras loop draws one a step, the fused op all steps' at once
    ([T, B, H], split)."""

    def __init__(self, monkeypatch, cls):
        self.masks = []
        original = cls.zoneout_mask_of_shape

        def zoneout_mask_of_shape(cell, shape, dtype):
            m = original(cell, shape, dtype)
            m_np = np.asarray(m)
            self.masks.extend(list(m_np) if m_np.ndim == 3 else [m_np])
            return m

        monkeypatch.setattr(cls, "zoneout_mask_of_shape", zoneout_mask_of_shape)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_zoneout_training_uses_drawn_masks(rng, monkeypatch, kind, go_backwards):
    B, T, D, H, p = 5, 6, 3, 4, 0.3
    cls = LayerNormLSTMCell if kind == "lstm" else LayerNormGRUCell
    recorder = _Recorder(monkeypatch, cls)
    layer = _layer(kind, H, zoneout=p, return_sequences=True, return_state=True,
                   go_backwards=go_backwards, seed=int(rng.integers(1 << 30)))  # fmt: skip
    x = rng.normal(size=(B, T, D))
    layer(x)
    _randomize(layer, rng)
    assert recorder.masks == []  # inference draws nothing
    h0 = [rng.normal(size=(B, H)) for _ in range(_nstates(kind))]
    mask = _mask(rng, B, T)
    got = layer(x, initial_state=h0, mask=mask, training=True)
    # Keras' TensorFlow loop runs the first step once more, before its while loop, for the output
    # shapes; the loop's T calls are the last T
    assert len(recorder.masks) in (T, T + 1)
    masks = np.stack(recorder.masks[-T:])
    assert masks.shape == (T, B, H)
    assert set(np.unique(masks)) == {0.0, 1.0}
    assert 0.4 < masks.mean() < 0.95  # Bernoulli(1 - p): 0.7 expected
    cell = ref.zoneout(_ref_cell(kind, layer.get_weights()), p, masks)
    seq, _, states = ref.rnn(cell, x, h0, mask=mask, go_backwards=go_backwards)
    np.testing.assert_allclose(got[0], seq, **TOL)
    for g, s in zip(got[1:], states, strict=True):
        np.testing.assert_allclose(g, s, **TOL)
    # a second call draws fresh masks
    drawn = len(recorder.masks)
    layer(x, initial_state=h0, mask=mask, training=True)
    assert not np.array_equal(np.stack(recorder.masks[drawn:][-T:]), masks)


@pytest.mark.parametrize("kind", KINDS)
def test_zoneout_inference_mixes_previous_state(rng, kind):
    B, T, D, H, p = 3, 5, 2, 3, 0.4
    layer = _layer(kind, H, zoneout=p, return_sequences=True, return_state=True)
    x = rng.normal(size=(B, T, D))
    layer(x)
    _randomize(layer, rng)
    h0 = [rng.normal(size=(B, H)) for _ in range(_nstates(kind))]
    mask = _mask(rng, B, T)
    got = layer(x, initial_state=h0, mask=mask)  # training defaults to False
    cell = ref.zoneout(_ref_cell(kind, layer.get_weights()), p)
    seq, _, states = ref.rnn(cell, x, h0, mask=mask)
    np.testing.assert_allclose(got[0], seq, **TOL)
    for g, s in zip(got[1:], states, strict=True):
        np.testing.assert_allclose(g, s, **TOL)
    plain = ref.rnn(_ref_cell(kind, layer.get_weights()), x, h0, mask=mask)[0]
    assert np.abs(plain - seq).max() > 1e-3


@pytest.mark.parametrize("H,D", [(3, 4), (1, 1)])
def test_tf_addons_weights_load(rng, H, D):
    """A `keras.layers.RNN(LayerNormLSTMCell(H))` of TF Addons (the Keras 3 port): its weights,
    in its get_weights() order, load into LayerNormLSTM and give the same outputs and states."""
    B, T = 3, 4
    tfa = keras.layers.RNN(up.TfaLayerNormLSTMCell(H, dtype=F64), return_sequences=True,
                           return_state=True, dtype=F64)  # fmt: skip
    ours = _layer("lstm", H, return_sequences=True, return_state=True)
    x = rng.normal(size=(B, T, D))
    tfa(x)
    ours(x)
    _randomize(tfa, rng)
    ours.set_weights(tfa.get_weights())
    for a, b in zip(ours(x), tfa(x), strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    assert [w.shape for w in ours.weights] == [w.shape for w in tfa.weights]
    # TF Addons' defaults: unit_forget_bias (forget-gate bias 1), gammas 1, betas 0
    fresh_ours = _layer("lstm", H)
    fresh_ours(x)
    fresh_tfa = keras.layers.RNN(up.TfaLayerNormLSTMCell(H, dtype=F64), dtype=F64)
    fresh_tfa(x)
    for a, b in list(zip(fresh_ours.get_weights(), fresh_tfa.get_weights(), strict=True))[2:]:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "dropout,recurrent_dropout,cell_in_rnn",
    [(0.3, 0.0, False), (0.0, 0.4, False), (0.25, 0.35, False), (0.3, 0.4, True)],
    ids=["input", "recurrent", "both", "cell in keras.layers.RNN"],
)
def test_tf_addons_dropout(rng, dropout, recurrent_dropout, cell_in_rnn):
    """TF Addons' dropout / recurrent_dropout in training: with the same masks given to both
    cells (each cell's cached mask of the call), LayerNormLSTM (the fused op: x ⊙ m_x before it,
    m_h its recurrent_mask) or our cell inside keras.layers.RNN gives the outputs,
    states and weight gradients of the TF Addons port; with lengths (a mask) and go_backwards. In
    inference the rates change nothing."""
    B, T, D, H = 4, 5, 3, 6
    kw = dict(dropout=dropout, recurrent_dropout=recurrent_dropout)
    tfa = keras.layers.RNN(up.TfaLayerNormLSTMCell(H, dtype=F64, **kw), return_sequences=True,
                           return_state=True, go_backwards=True, dtype=F64)  # fmt: skip
    if cell_in_rnn:
        ours = keras.layers.RNN(LayerNormLSTMCell(H, dtype=F64, **kw), return_sequences=True,
                                return_state=True, go_backwards=True, dtype=F64)  # fmt: skip
    else:
        ours = _layer("lstm", H, return_sequences=True, return_state=True, go_backwards=True, **kw)
    x = rng.normal(size=(B, T, D))
    mask = _mask(rng, B, T)
    tfa(x)
    ours(x)
    _randomize(tfa, rng)
    ours.set_weights(tfa.get_weights())
    keep_x = (rng.random((B, D)) >= dropout) / (1.0 - dropout)
    keep_h = (rng.random((B, H)) >= recurrent_dropout) / (1.0 - recurrent_dropout)

    def run(layer):
        with tf.GradientTape() as tape:
            layer.cell._dropout_mask = tf.constant(keep_x) if dropout else None
            layer.cell._recurrent_dropout_mask = tf.constant(keep_h) if recurrent_dropout else None
            out = layer(x, mask=mask, training=True)
            loss = sum(tf.reduce_sum(o * rng_w) for o, rng_w in zip(out, weights_out, strict=True))
        return out, tape.gradient(loss, layer.trainable_weights)

    weights_out = [rng.normal(size=s) for s in ((B, T, H), (B, H), (B, H))]
    (got, d_got), (want, d_want) = run(ours), run(tfa)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    for a, b in zip(d_got, d_want, strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    plain = tfa(x, mask=mask)  # inference: no dropout
    assert np.abs(np.asarray(plain[0]) - np.asarray(want[0])).max() > 1e-3
    for a, b in zip(ours(x, mask=mask, training=False), plain, strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    if not cell_in_rnn:  # the fused op runs, with h_{t-1}'s mask as its recurrent_mask
        graph = tf.function(lambda: ours(x, training=True)).get_concrete_function().graph
        fused = [op for op in graph.get_operations() if op.type == "TfRnn>LayerNormRnn"]
        assert len(fused) == 1
        assert fused[0].get_attr("N") == (1 if recurrent_dropout else 0)
    # a fresh draw per call, scaled by 1 / (1 - rate)
    drawn = ours.cell._create_dropout_mask(tf.ones((64, 64), F64), 0.25).numpy()
    assert set(np.unique(drawn)) == {0.0, 1.0 / 0.75}


@pytest.mark.parametrize("kind", KINDS)
def test_layer_passes_keras_layout_to_the_op(rng, kind):
    """The layer hands x [B, T, I] to the op as it is (time_major=False: no transposes of x and
    y) and pins it to no device (its CPU and GPU kernels both take Keras' layout), training and
    inference alike."""
    B, T, D, H = 3, 5, 4, 6
    layer = _layer(kind, H, return_sequences=True, zoneout=0.2)
    x = tf.constant(rng.normal(size=(B, T, D)))
    layer(x)
    for training in (True, False):
        graph = tf.function(lambda t=training: layer(x, training=t)).get_concrete_function().graph
        fused = [op for op in graph.get_operations() if op.type == "TfRnn>LayerNormRnn"]
        assert len(fused) == 1
        assert fused[0].get_attr("time_major") is False
        assert fused[0].device == ""
        assert fused[0].inputs[0].shape == (B, T, D)
        assert not [op for op in graph.get_operations() if op.type == "Transpose"]


def test_dropout_rates_checked_and_configured():
    with pytest.raises(ValueError, match="recurrent_dropout"):
        L.LayerNormLSTM(3, recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="dropout"):
        LayerNormLSTMCell(3, dropout=-0.1)
    with pytest.raises(ValueError, match="dropout must be a number"):
        L.LayerNormGRU(3, dropout="half")
    with pytest.raises(ValueError, match="dropout"):
        LayerNormGRUCell(3, dropout=float("nan"))
    layer = L.LayerNormLSTM(3, dropout=0.2, recurrent_dropout=0.1)
    config = layer.get_config()
    assert (config["dropout"], config["recurrent_dropout"]) == (0.2, 0.1)
    again = L.LayerNormLSTM.from_config(config)
    assert (again.cell.dropout, again.cell.recurrent_dropout) == (0.2, 0.1)


def test_haste_weights_load(rng):
    """haste's LayerNormGRU weights (kernel, recurrent_kernel, bias, recurrent_bias, gamma; the
    Keras 3 port of its cell keeps kernel and bias fused) load into LayerNormGRU."""
    B, T, D, H = 3, 4, 5, 2
    haste = keras.layers.RNN(up.HasteLayerNormGRUCell(H, dtype=F64), return_sequences=True,
                             dtype=F64)  # fmt: skip
    ours = _layer("gru", H, return_sequences=True)
    x = rng.normal(size=(B, T, D))
    haste(x)
    ours(x)
    _randomize(haste, rng)
    kernel, bias, gamma = haste.get_weights()
    ours.set_weights([kernel[:D], kernel[D:], bias[: 3 * H], bias[3 * H :], gamma])
    assert [w.path.rsplit("/", 1)[1] for w in ours.weights] == [
        "kernel", "recurrent_kernel", "bias", "recurrent_bias", "gamma",
    ]  # fmt: skip
    np.testing.assert_allclose(ours(x), haste(x), **TOL)


@pytest.mark.parametrize("cell_in_rnn", [False, True], ids=["layer (fused)", "cell in RNN"])
def test_haste_dropconnect(rng, cell_in_rnn):
    """haste's `dropout` (DropConnect: its layer hands the op tf.nn.dropout(R)): with the same
    mask, LayerNormGRU (fused) or our cell inside keras.layers.RNN in training gives the outputs of
    the haste port whose recurrent kernel is R ⊙ mask, and R's gradient is the port's times the
    mask; with lengths and go_backwards. Inference ignores the rate; a fresh mask is like R."""
    B, T, D, H, rate = 4, 5, 3, 6, 0.3
    kw = dict(return_sequences=True, return_state=True, go_backwards=True, dtype=F64)
    haste = keras.layers.RNN(up.HasteLayerNormGRUCell(H, dtype=F64), **kw)
    if cell_in_rnn:
        ours = keras.layers.RNN(LayerNormGRUCell(H, dropout=rate, dtype=F64), **kw)
    else:
        ours = _layer("gru", H, dropout=rate, **kw)
    x = rng.normal(size=(B, T, D))
    mask = _mask(rng, B, T)
    haste(x)
    ours(x)
    _randomize(ours, rng)
    kernel, recurrent_kernel, bias, recurrent_bias, gamma = ours.get_weights()
    keep = (rng.random((H, 3 * H)) >= rate) / (1.0 - rate)
    haste.set_weights([np.concatenate([kernel, recurrent_kernel * keep]),
                       np.concatenate([bias, recurrent_bias]), gamma])  # fmt: skip
    w_out = [rng.normal(size=s) for s in ((B, T, H), (B, H))]

    def run(layer, training):
        with tf.GradientTape() as tape:
            if layer is ours:
                layer.cell._dropout_mask = tf.constant(keep)
            out = layer(x, mask=mask, training=training)
            loss = sum(tf.reduce_sum(o * w) for o, w in zip(out, w_out, strict=True))
        return out, tape.gradient(loss, layer.trainable_weights)

    (got, d_got), (want, d_want) = run(ours, True), run(haste, False)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    np.testing.assert_allclose(d_got[0], d_want[0][:D], **TOL)  # kernel
    np.testing.assert_allclose(d_got[1], d_want[0][D:] * keep, **TOL)  # recurrent kernel
    np.testing.assert_allclose(d_got[4], d_want[2], **TOL)  # gamma
    plain = ours(x, mask=mask, training=False)
    assert np.abs(np.asarray(plain[0]) - np.asarray(want[0])).max() > 1e-3
    ours.cell._dropout_mask = None
    assert ours.cell.get_dropout_mask(None).shape == (H, 3 * H)
    ours.cell.reset_dropout_mask()
    if not cell_in_rnn:  # the fused op runs with DropConnect; inference draws no mask like R
        for training in (True, False):
            fn = tf.function(lambda t=training: ours(x, training=t))
            types = {op.type for op in fn.get_concrete_function().graph.get_operations()}
            assert "TfRnn>LayerNormRnn" in types
            assert any("Random" in t for t in types) == training, types
    config = ours.get_config() if not cell_in_rnn else ours.cell.get_config()
    assert config["dropout"] == rate


def test_initializers_follow_upstream(rng):
    """LayerNormGRU initializes each gate block on its own (haste: orthogonal [H, H] per gate)."""
    H = 4
    layer = _layer("gru", H)
    layer(rng.normal(size=(2, 3, 5)))
    U = layer.get_weights()[1]
    for k in range(3):
        block = U[:, k * H : (k + 1) * H]
        np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-10)
    np.testing.assert_array_equal(layer.get_weights()[4], np.ones((2, 3 * H)))


@pytest.mark.parametrize("kind", KINDS)
def test_stateful_continues_the_sequence(rng, kind):
    B, T, D, H = 2, 6, 3, 4
    layer = _layer(kind, H, stateful=True, return_sequences=True)
    whole = _layer(kind, H, return_sequences=True)
    x = rng.normal(size=(B, T, D))
    layer(x[:, :3])
    whole(x)
    _randomize(whole, rng)
    layer.set_weights(whole.get_weights())
    layer.reset_state()
    parts = np.concatenate([layer(x[:, :3]), layer(x[:, 3:])], axis=1)
    np.testing.assert_allclose(parts, whole(x), **TOL)
    layer.reset_state()
    np.testing.assert_allclose(layer(x[:, :3]), whole(x[:, :3]), **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional(rng, kind):
    B, T, D, H = 3, 5, 2, 3
    bi = keras.layers.Bidirectional(_layer(kind, H, return_sequences=True), dtype=F64)
    x = rng.normal(size=(B, T, D))
    mask = np.arange(T)[None] < np.array([5, 2, 0])[:, None]  # right-padded
    bi(x)
    _randomize(bi, rng)
    got = bi(x, mask=mask)
    n = len(bi.forward_layer.get_weights())
    fw_w, bw_w = bi.get_weights()[:n], bi.get_weights()[n:]
    assert bi.backward_layer.go_backwards and type(bi.backward_layer) is type(bi.forward_layer)
    h0 = [np.zeros((B, H))] * _nstates(kind)
    fw = ref.rnn(_ref_cell(kind, fw_w), x, h0, mask=mask, zero_output_for_mask=True)[0]
    bw = ref.rnn(_ref_cell(kind, bw_w), x, h0, mask=mask, go_backwards=True,
                 zero_output_for_mask=True)[0]  # fmt: skip
    np.testing.assert_allclose(got, np.concatenate([fw, bw[:, ::-1]], axis=-1), **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(rng, kind):
    """The tape's gradient of a random projection of every output, along random directions of
    the input and of each weight, against central differences (float64; zoneout at inference
    and a mask with a hole included)."""
    B, T, D, H = 2, 4, 2, 3
    layer = _layer(kind, H, zoneout=0.25, return_sequences=True)
    x = tf.Variable(rng.normal(size=(B, T, D)))
    layer(x)
    _randomize(layer, rng)
    mask = tf.constant([[True, True, True, True], [True, False, True, False]])
    proj = tf.constant(rng.normal(size=(B, T, H)))

    def loss():
        return float(tf.reduce_sum(layer(x, mask=mask) * proj))

    variables = [x, *layer.weights]
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(layer(x, mask=mask) * proj)
    grads = tape.gradient(value, variables)
    eps = 1e-6
    for v, g in zip(variables, grads, strict=True):
        assert g is not None, v.name
        for _ in range(1):
            d = rng.normal(size=v.shape)
            w0 = v.numpy()
            v.assign(w0 + eps * d)
            plus = loss()
            v.assign(w0 - eps * d)
            minus = loss()
            v.assign(w0)
            numerical = (plus - minus) / (2 * eps)
            np.testing.assert_allclose(np.sum(np.asarray(g) * d), numerical, rtol=1e-6,
                                       atol=1e-8, err_msg=v.name)  # fmt: skip


STEPS, VOCAB = 7, 9


def _model(rng):
    """Both layers, masks from an Embedding, Bidirectional, go_backwards, zoneout, return_state."""
    inp = keras.Input((STEPS,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 4, mask_zero=True)(inp)
    h = keras.layers.Bidirectional(L.LayerNormLSTM(3, zoneout=0.2, return_sequences=True))(h)
    h, state = L.LayerNormGRU(5, go_backwards=True, norm_epsilon=1e-4, return_state=True)(h)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Concatenate()([h, state])))
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype)
                       for w in model.get_weights()])  # fmt: skip
    return model


def _ids(rng, n=5):
    ids = rng.integers(1, VOCAB, (n, STEPS)).astype(np.int32)
    for row, k in enumerate(rng.integers(0, STEPS + 1, n)):
        ids[row, k:] = 0
    return ids


def test_keras_file_round_trip(rng, tmp_path):
    model = _model(rng)
    ids = _ids(rng)
    want = model(ids)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [type(a) for a in loaded._flatten_layers()] == [type(a) for a in model._flatten_layers()]
    configs = [json.loads(json.dumps(m.get_config())) for m in (model, loaded)]
    assert configs[0] == configs[1]
    np.testing.assert_allclose(loaded(ids), want, rtol=1e-6, atol=1e-6)
    # the registered names
    assert keras.saving.get_registered_name(L.LayerNormLSTM) == "tf_rnn_ops>LayerNormLSTM"
    assert keras.saving.get_registered_name(LayerNormGRUCell) == "tf_rnn_ops>LayerNormGRUCell"


def test_cells_serialize_inside_keras_rnn(rng):
    for cell in (LayerNormLSTMCell(3, zoneout=0.1, norm_epsilon=1e-4, seed=3),
                 LayerNormGRUCell(2, kernel_regularizer="l2")):  # fmt: skip
        layer = keras.layers.RNN(cell)
        clone = keras.layers.deserialize(keras.layers.serialize(layer))
        assert type(clone.cell) is type(cell)
        assert clone.cell.get_config() == cell.get_config()


def _small_model(rng):
    inp = keras.Input((STEPS, 3))
    h = L.LayerNormLSTM(2, return_sequences=True, zoneout=0.3)(inp)
    out = L.LayerNormGRU(3, go_backwards=True)(h)
    model = keras.Model(inp, out)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype)
                       for w in model.get_weights()])  # fmt: skip
    return model


def _export_round_trip(model, x, tmp_path):
    want = model(x)
    model.export(str(tmp_path / "exported"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "exported"))
    np.testing.assert_allclose(served.serve(tf.constant(x)), want, rtol=1e-6, atol=1e-6)


def test_saved_model_export_round_trip(rng, tmp_path):
    x = rng.normal(size=(4, STEPS, 3)).astype(np.float32)
    _export_round_trip(_small_model(rng), x, tmp_path)


@pytest.mark.slow
def test_saved_model_export_round_trip_masked_bidirectional(rng, tmp_path):
    _export_round_trip(_model(rng), _ids(rng), tmp_path)


@pytest.mark.parametrize(
    "cls,kwargs,words",
    [(L.LayerNormLSTM, {"units": 0}, "units"), (L.LayerNormGRU, {"units": 2.5}, "units"),
     (L.LayerNormLSTM, {"units": 3, "zoneout": 1.0}, "zoneout"),
     (L.LayerNormGRU, {"units": 3, "zoneout": -0.1}, "zoneout"),
     (LayerNormGRUCell, {"units": 3, "norm_epsilon": 0.0}, "norm_epsilon"),
     (LayerNormLSTMCell, {"units": 3, "norm_epsilon": -1.0}, "norm_epsilon")],
)  # fmt: skip
def test_bad_arguments_raise_value_error(cls, kwargs, words):
    with pytest.raises(ValueError, match=words):
        cls(**kwargs)


def test_unknown_input_size_raises_value_error():
    with pytest.raises(ValueError, match="last dimension"):
        LayerNormGRUCell(3).build((2, None))


def _op_types(concrete) -> set[str]:
    types = {op.type for op in concrete.graph.get_operations()}
    for fn in concrete.graph._functions.values():  # nested functions (while bodies, ...)
        types |= {node.op for node in fn.cached_definition.node_def}
    return types


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("go_backwards", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_xla_traces_the_keras_ops_cells_with_the_fused_numbers(rng, kind, go_backwards):
    """Under jit_compile=True the layer traces its Keras-ops cells in Keras' loop (XLA cannot
    compile the custom op): outputs, states and every gradient as the fused op's, with a mask."""
    B, T, D, H = 3, 5, 4, 6
    layer = _layer(kind, H, return_sequences=True, return_state=True, go_backwards=go_backwards)
    x = tf.constant(rng.normal(size=(B, T, D)))
    layer(x)
    _randomize(layer, rng)
    mask = np.ones((B, T), bool)
    mask[0, 3:] = False  # right padding
    mask[2, 1] = False  # a hole
    mask = tf.constant(mask)

    def run(x, mask):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, mask=mask, training=True)
            loss = sum(tf.reduce_sum(o * (i + 1.0)) for i, o in enumerate(out))
        return out, tape.gradient(loss, [x, *layer.trainable_weights])

    fused, jitted = tf.function(run), tf.function(run, jit_compile=True)
    want, want_grads = fused(x, mask)
    got, got_grads = jitted(x, mask)
    assert any(t.startswith("TfRnn") for t in _op_types(fused.get_concrete_function(x, mask)))
    assert not any(t.startswith("TfRnn") for t in _op_types(jitted.get_concrete_function(x, mask)))
    for a, b in zip([*got, *got_grads], [*want, *want_grads], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", KINDS)
def test_model_compiles_and_trains_with_jit_compile(rng, kind):
    """model.compile(jit_compile=True) is honoured (the layers do not veto XLA) and a fit step
    runs; jit_compile="auto" keeps the fused op (Keras asks supports_jit while resolving it)."""
    x = rng.normal(size=(4, 5, 3)).astype(np.float32)
    y = rng.normal(size=(4, 6)).astype(np.float32)
    model = keras.Sequential([keras.Input((5, 3)), _layer(kind, 6, dtype="float32")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=True)
    assert model.jit_compile is True
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert model.layers[0].supports_jit is True


@pytest.mark.parametrize("kind", KINDS)
def test_standard_ops_export_holds_no_custom_op(rng, tmp_path, kind):
    """Exported inside tf_rnn_ops.standard_ops() the SavedModel holds standard ops only (the
    Keras-ops cells in Keras' loop) and serves the fused layer's numbers; outside the block the
    export keeps the op."""
    import tf_rnn_ops

    model = keras.Sequential([keras.Input((5, 4)), _layer(kind, 6, return_sequences=True)])
    _randomize(model.layers[0], rng)
    x = rng.normal(size=(3, 5, 4))
    want = model(x)
    with tf_rnn_ops.standard_ops():
        model.export(str(tmp_path / "standard"), verbose=False)
    model.export(str(tmp_path / "fused"), verbose=False)
    assert b"TfRnn" not in (tmp_path / "standard" / "saved_model.pb").read_bytes()
    assert b"TfRnn" in (tmp_path / "fused" / "saved_model.pb").read_bytes()
    loaded = tf.saved_model.load(str(tmp_path / "standard"))  # kept: its variables live in it
    np.testing.assert_allclose(loaded.serve(x), want, rtol=1e-9, atol=1e-11)
