"""`cell_reference` checked against independent implementations, in float64:

* Keras 3's own GRU / LSTM / SimpleRNN with recurrent_dropout (and input dropout) in training, the
  very masks of the reference injected into the cell's mask cache (`_dropout_mask` /
  `_recurrent_dropout_mask`, which `get_dropout_mask` returns instead of drawing), and
  GRU(reset_after=False), with and without recurrent dropout;
* the Keras 3 ports of TF Addons' LayerNormLSTMCell and haste's LayerNormGRUCell and ZoneoutWrapper
  (`upstream_ports.py`);
* masks (not right-padded), sequence lengths, go_backwards, initial states, both layouts, odd sizes
  and B = 0.
"""

from __future__ import annotations

import cell_reference as ref
import keras
import numpy as np
import pytest
import tensorflow as tf
import upstream_ports as up

TOL = dict(rtol=1e-10, atol=1e-12)
F64 = "float64"


def _rand_weights(layer, rng, scale=0.7):
    layer.set_weights([rng.uniform(-scale, scale, w.shape) for w in layer.get_weights()])


def _mask(rng, B, T):
    """A bool [B, T] mask with holes (not right-padded), some rows empty or full."""
    m = rng.random((B, T)) < 0.7
    if B > 1:
        m[0] = True
        m[-1] = False
    return m


def _keras_layer(kind, H, **kw):
    cls = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM, "rnn": keras.layers.SimpleRNN}[kind]
    return cls(H, return_sequences=True, return_state=True, dtype=F64, **kw)


def _ref_cell(kind, weights, **kw):
    if kind == "gru":
        return ref.gru_cell(*weights, **kw)
    if kind == "lstm":
        return ref.lstm_cell(*weights, **kw)
    im, rm = kw.pop("input_masks", None), kw.pop("recurrent_masks", None)
    return ref.simple_rnn_cell(
        *weights,
        input_mask=None if im is None else im[0],
        recurrent_mask=None if rm is None else rm[0],
        **kw,
    )


GATES = {"gru": 3, "lstm": 4, "rnn": 1}
NSTATES = {"gru": 1, "lstm": 2, "rnn": 1}


@pytest.mark.parametrize("kind", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize(
    "B,T,D,H,go_backwards,masked",
    [(3, 5, 4, 3, False, True), (2, 4, 1, 1, True, True), (1, 3, 3, 257, False, False),
     (4, 6, 2, 5, True, False)],
)  # fmt: skip
def test_recurrent_dropout_matches_keras_with_injected_masks(
    rng, kind, B, T, D, H, go_backwards, masked
):
    p, q = 0.3, 0.25
    layer = _keras_layer(kind, H, recurrent_dropout=p, dropout=q, go_backwards=go_backwards)
    x = rng.normal(size=(B, T, D))
    layer(x)  # build
    _rand_weights(layer, rng)
    n = GATES[kind]
    in_masks = ref.dropout_masks(rng, n, (B, D), q)
    rec_masks = ref.dropout_masks(rng, n, (B, H), p)
    # the reference's masks, in Keras' cache: the layer reuses them instead of drawing its own
    layer.cell._dropout_mask = (
        [tf.constant(m) for m in in_masks] if n > 1 else tf.constant(in_masks[0])
    )
    layer.cell._recurrent_dropout_mask = (
        [tf.constant(m) for m in rec_masks] if n > 1 else tf.constant(rec_masks[0])
    )
    h0 = [rng.normal(size=(B, H)) for _ in range(NSTATES[kind])]
    mask = _mask(rng, B, T) if masked else None
    got = layer(x, initial_state=h0, mask=mask, training=True)
    cell = _ref_cell(kind, layer.get_weights(), input_masks=in_masks, recurrent_masks=rec_masks)
    seq, _, states = ref.rnn(cell, x, h0, mask=mask, go_backwards=go_backwards)
    np.testing.assert_allclose(got[0], seq, **TOL)
    for g, s in zip(got[1:], states, strict=True):
        np.testing.assert_allclose(g, s, **TOL)
    # the masks matter: the undropped reference differs
    plain, _, _ = ref.rnn(_ref_cell(kind, layer.get_weights()), x, h0, mask=mask,
                          go_backwards=go_backwards)  # fmt: skip
    assert np.abs(plain - seq).max() > 1e-3


@pytest.mark.parametrize("kind", ["gru", "lstm", "rnn"])
def test_inference_ignores_recurrent_dropout(rng, kind):
    B, T, D, H = 3, 4, 2, 3
    layer = _keras_layer(kind, H, recurrent_dropout=0.5, dropout=0.5)
    x = rng.normal(size=(B, T, D))
    layer(x)
    _rand_weights(layer, rng)
    h0 = [np.zeros((B, H))] * NSTATES[kind]
    seq, _, _ = ref.rnn(_ref_cell(kind, layer.get_weights()), x, h0)
    np.testing.assert_allclose(layer(x, training=False)[0], seq, **TOL)


@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.4])
@pytest.mark.parametrize("B,T,D,H", [(3, 5, 4, 3), (1, 2, 1, 1), (2, 3, 3, 257), (0, 3, 2, 3)])
def test_gru_reset_before_matches_keras(rng, recurrent_dropout, B, T, D, H):
    layer = _keras_layer("gru", H, reset_after=False, recurrent_dropout=recurrent_dropout)
    x = rng.normal(size=(B, T, D))
    layer(x)
    _rand_weights(layer, rng)
    assert layer.get_weights()[2].shape == (3 * H,)  # one bias
    rec_masks = None
    if recurrent_dropout:
        rec_masks = ref.dropout_masks(rng, 3, (B, H), recurrent_dropout)
        layer.cell._recurrent_dropout_mask = [tf.constant(m) for m in rec_masks]
    h0 = rng.normal(size=(B, H))
    mask = _mask(rng, B, T)
    got = layer(x, initial_state=[h0], mask=mask, training=True)
    cell = ref.gru_cell(*layer.get_weights(), reset_after=False, recurrent_masks=rec_masks)
    seq, _, (h,) = ref.rnn(cell, x, [h0], mask=mask)
    np.testing.assert_allclose(got[0], seq, **TOL)
    np.testing.assert_allclose(got[1], h, **TOL)


def test_reference_layouts_lengths_and_zero_output(rng):
    """time-major equals batch-major; lengths equal the right-padded mask; zero_output_for_mask
    against Keras' RNN with the same flag; go_backwards reverses the processing order."""
    B, T, D, H = 4, 6, 3, 5
    layer = _keras_layer("lstm", H, zero_output_for_mask=True, go_backwards=True)
    x = rng.normal(size=(B, T, D))
    layer(x)
    _rand_weights(layer, rng)
    cell = ref.lstm_cell(*layer.get_weights())
    h0 = [rng.normal(size=(B, H)) for _ in range(2)]
    lengths = np.array([0, 6, 2, 5])
    mask = np.arange(T)[None] < lengths[:, None]
    seq, last, states = ref.rnn(cell, x, h0, lengths=lengths, go_backwards=True,
                                zero_output_for_mask=True)  # fmt: skip
    got = layer(x, initial_state=h0, mask=mask)
    np.testing.assert_allclose(got[0], seq, **TOL)
    np.testing.assert_allclose(got[1], states[0], **TOL)
    np.testing.assert_allclose(got[2], states[1], **TOL)
    tm = ref.rnn(cell, np.swapaxes(x, 0, 1), h0, time_major=True, mask=mask.T, go_backwards=True,
                 zero_output_for_mask=True)  # fmt: skip
    np.testing.assert_allclose(np.swapaxes(tm[0], 0, 1), seq, **TOL)
    np.testing.assert_allclose(tm[1], last, **TOL)
    assert np.all(seq[0] == 0.0)  # the empty row outputs zeros and keeps its initial state
    np.testing.assert_allclose(states[0][0], h0[0][0], **TOL)


# ----------------------------------------------------------------- TF Addons LayerNormLSTMCell


def _tfa_layer(H, **kw):
    cell = up.TfaLayerNormLSTMCell(H, dtype=F64, **kw)
    return keras.layers.RNN(cell, return_sequences=True, return_state=True, dtype=F64)


@pytest.mark.parametrize(
    "B,T,D,H,eps,go_backwards",
    [(3, 5, 4, 3, 1e-3, False), (1, 2, 1, 1, 1e-3, True), (2, 3, 3, 257, 1e-5, False),
     (0, 2, 3, 2, 1e-3, False)],
)  # fmt: skip
def test_layer_norm_lstm_matches_tf_addons_port(rng, B, T, D, H, eps, go_backwards):
    layer = _tfa_layer(H, norm_epsilon=eps)
    layer.go_backwards = go_backwards
    x = rng.normal(size=(B, T, D))
    layer(x)
    _rand_weights(layer, rng)
    weights = layer.get_weights()
    # TF Addons' get_weights() order under keras.layers.RNN
    paths = [w.path.split("/", 2)[2] for w in layer.weights]
    assert paths == [
        "kernel", "recurrent_kernel", "bias", "kernel_norm/gamma", "kernel_norm/beta",
        "recurrent_norm/gamma", "recurrent_norm/beta", "state_norm/gamma", "state_norm/beta",
    ]  # fmt: skip
    assert [w.shape for w in weights] == [(D, 4 * H), (H, 4 * H), (4 * H,)] + [(4 * H,)] * 4 + [
        (H,)
    ] * 2
    h0 = [rng.normal(size=(B, H)) for _ in range(2)]
    mask = _mask(rng, B, T)
    got = layer(x, initial_state=h0, mask=mask)
    seq, _, states = ref.rnn(ref.layer_norm_lstm_cell(weights, norm_epsilon=eps), x, h0, mask=mask,
                             go_backwards=go_backwards)  # fmt: skip
    np.testing.assert_allclose(got[0], seq, **TOL)
    np.testing.assert_allclose(got[1], states[0], **TOL)
    np.testing.assert_allclose(got[2], states[1], **TOL)


# ---------------------------------------------------------------------- haste LayerNormGRUCell


def _haste_weights(layer, D, H):
    """haste's LayerNormGRU weights (kernel, recurrent_kernel, bias, recurrent_bias, gamma) from
    the cell's fused kernel [D + H, 3H] and bias [6H]."""
    kernel, bias, gamma = layer.get_weights()
    return [kernel[:D], kernel[D:], bias[: 3 * H], bias[3 * H :], gamma]


@pytest.mark.parametrize(
    "B,T,D,H,go_backwards",
    [(3, 5, 4, 3, False), (1, 2, 1, 1, True), (2, 3, 3, 257, False), (0, 2, 3, 2, True)],
)
def test_layer_norm_gru_matches_haste_port(rng, B, T, D, H, go_backwards):
    cell = up.HasteLayerNormGRUCell(H, dtype=F64)
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True,
                             go_backwards=go_backwards, dtype=F64)  # fmt: skip
    x = rng.normal(size=(B, T, D))
    layer(x)
    _rand_weights(layer, rng)
    h0 = rng.normal(size=(B, H))
    mask = _mask(rng, B, T)
    got = layer(x, initial_state=[h0], mask=mask)
    seq, _, (h,) = ref.rnn(ref.layer_norm_gru_cell(_haste_weights(layer, D, H)), x, [h0],
                           mask=mask, go_backwards=go_backwards)  # fmt: skip
    np.testing.assert_allclose(got[0], seq, **TOL)
    np.testing.assert_allclose(got[1], h, **TOL)


# -------------------------------------------------------------------------- haste zoneout


def _zoneout_case(kind, H, rng, D):
    """(a Keras 3 cell, a function of its get_weights() giving the reference cell, #states)."""
    if kind == "gru":
        return keras.layers.GRUCell(H, dtype=F64), lambda w: ref.gru_cell(*w), 1
    if kind == "lstm":
        return keras.layers.LSTMCell(H, dtype=F64), lambda w: ref.lstm_cell(*w), 2
    if kind == "ln_lstm":
        cell = up.TfaLayerNormLSTMCell(H, dtype=F64)
        return cell, lambda w: ref.layer_norm_lstm_cell(w), 2
    cell = up.HasteLayerNormGRUCell(H, dtype=F64)

    def haste(w):
        kernel, bias, gamma = w
        return ref.layer_norm_gru_cell([kernel[:D], kernel[D:], bias[: 3 * H], bias[3 * H :],
                                        gamma])  # fmt: skip

    return cell, haste, 1


@pytest.mark.parametrize("kind", ["gru", "lstm", "ln_lstm", "ln_gru"])
@pytest.mark.parametrize("training", [True, False])
def test_zoneout_matches_haste_wrapper(rng, kind, training):
    """Each row's final state (rows of different lengths: the state after every prefix) of haste's
    ZoneoutWrapper equals the reference's zoned h (and the unzoned LSTM c)."""
    B, T, D, H, p = 6, 5, 3, 4, 0.35
    inner, make_ref, nstates = _zoneout_case(kind, H, rng, D)
    masks = ref.zoneout_mask(rng, (T, B, H), p)
    assert 0 < masks.mean() < 1
    wrapper = up.HasteZoneoutWrapper(inner, p, training, masks=tf.constant(masks), dtype=F64)
    layer = keras.layers.RNN(wrapper, return_state=True, unroll=True, dtype=F64)
    x = rng.normal(size=(B, T, D))
    layer(x)
    _rand_weights(layer, rng, 0.5)
    lengths = np.array([1, 2, 3, 4, 5, 0])
    mask = np.arange(T)[None] < lengths[:, None]
    h0 = [rng.normal(size=(B, H)) for _ in range(nstates)]
    wrapper.calls = 0
    got = layer(x, initial_state=h0, mask=mask)
    assert wrapper.calls == T
    cell = ref.zoneout(make_ref(inner.get_weights()), p, masks if training else None)
    seq, _, states = ref.rnn(cell, x, h0, lengths=lengths)
    for g, s in zip(got[1:], states, strict=True):
        np.testing.assert_allclose(g, s, **TOL)
    # our convention: the zoned h is the output too (rows: the output at their last valid step)
    for b in range(B - 1):
        np.testing.assert_allclose(seq[b, lengths[b] - 1], states[0][b], **TOL)
    unzoned = ref.rnn(make_ref(inner.get_weights()), x, h0, lengths=lengths)[2]
    assert np.abs(unzoned[0] - states[0]).max() > 1e-3
