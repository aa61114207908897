"""tf_rnn_ops.cudnn_rnn (float32) against Keras 3 GRU(reset_after=True), LSTM and SimpleRNN (tanh,
relu) with converted weights (docs/MATH.md, "Keras layers"): outputs, final states and gradients
w.r.t. inputs, initial states and every Keras weight and bias; right-padded masks ↔
sequence_lengths; both layouts."""

from __future__ import annotations

import keras_convert as kc
import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf

import tf_rnn_ops

TOL = dict(rtol=1e-5, atol=1e-5)


def _close(actual, expected, rtol, atol, err_msg):
    """assert_allclose with atol scaled by the tensor's magnitude (max(1, max|expected|)): float32
    gradients summed over B·T terms carry ~1e-7·sum noise, in Keras as in ours (checked against a
    float64 Keras run: both float32 errors are the same size)."""
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=err_msg)


def _swap(a):
    return None if a is None else tf.transpose(a, [1, 0, 2])


def _compare(rng, mode, layers, batch, steps, input_size, lengths, time_major, tol=TOL):
    dirs = len(kc._unwrap(layers[0]))
    num_layers = len(layers)
    units = kc._unwrap(layers[0])[0].cell.units
    lstm = mode == "lstm"
    n = dirs * num_layers
    f32 = np.float32
    x = tf.constant(rng.uniform(-1, 1, (batch, steps, input_size)).astype(f32))
    h0 = tf.constant(rng.uniform(-1, 1, (n, batch, units)).astype(f32))
    c0 = tf.constant(rng.uniform(-1, 1, (n, batch, units)).astype(f32)) if lstm else None
    gy = tf.constant(rng.normal(size=(batch, steps, dirs * units)).astype(f32))
    gh = tf.constant(rng.normal(size=(n, batch, units)).astype(f32))
    gc = tf.constant(rng.normal(size=(n, batch, units)).astype(f32)) if lstm else None
    lens = lengths if lengths is not None else np.full([batch], steps, np.int32)
    kvars = kc.keras_trainable(layers)
    srcs = [x, h0] + ([c0] if lstm else [])

    def loss(out, h, c):
        val = tf.reduce_sum(out * gy) + tf.reduce_sum(h * gh)
        return val + tf.reduce_sum(c * gc) if lstm else val

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(srcs)
        k_out, k_h, k_c = kc.run_layers(layers, x, h0, c0, lengths)
        k_loss = loss(k_out, k_h, k_c)
    k_grads = tape.gradient(k_loss, srcs + kvars)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(srcs)
        params = kc.layers_to_params(layers, differentiable=True)
        tape.watch(params)
        res = tf_rnn_ops.cudnn_rnn(
            input=x if not time_major else _swap(x),
            input_h=h0 if time_major else _swap(h0),
            input_c=(c0 if time_major else _swap(c0))
            if lstm
            else tf.zeros_like(h0 if time_major else _swap(h0)),
            params=params,
            sequence_lengths=tf.constant(lens, tf.int32),
            rnn_mode=mode,
            direction="bidirectional" if dirs == 2 else "unidirectional",
            is_training=True,
            time_major=time_major,
        )
        out = _swap(res[0]) if time_major else res[0]
        h = res[1] if time_major else _swap(res[1])
        c = (res[2] if time_major else _swap(res[2])) if lstm else None
        o_loss = loss(out, h, c)
    o_grads = tape.gradient(o_loss, srcs + kvars)
    d_params = tape.gradient(o_loss, params).numpy()

    np.testing.assert_allclose(out.numpy(), k_out.numpy(), **tol, err_msg="output")
    np.testing.assert_allclose(h.numpy(), k_h.numpy(), **tol, err_msg="output_h")
    if lstm:
        np.testing.assert_allclose(c.numpy(), k_c.numpy(), **tol, err_msg="output_c")
    names = ["input", "input_h"] + (["input_c"] if lstm else [])
    for i in range(num_layers * dirs):
        names += [f"kernel[{i}]", f"recurrent_kernel[{i}]", f"bias[{i}]"]
    for name, a, e in zip(names, o_grads, k_grads, strict=True):
        assert a is not None, f"no gradient for {name}"
        _close(np.asarray(a), np.asarray(e), **tol, err_msg=f"d {name}")

    # The params gradient itself, split through canonical: LSTM's b_W and b_R get the same gradient
    # (both equal Keras' bias gradient), SimpleRNN's b_R gets b_W's, GRU's b_Wr/b_Wz b_Rr/b_Rz's.
    kind = kc.layer_kind(kc._unwrap(layers[0])[0])
    direction = "bidirectional" if dirs == 2 else "unidirectional"
    layout = ref.pseudo_layers(mode, num_layers, units, input_size, direction)
    dw, db = ref.opaque_to_canonical(d_params, mode, num_layers, units, input_size, direction)
    iw = ib = 0
    for p, (ws, bs) in enumerate(layout):
        cell_w = dw[iw : iw + len(ws)]
        cell_b = db[ib : ib + len(bs)]
        iw, ib = iw + len(ws), ib + len(bs)
        back = kc.canonical_grads_to_cell(kind, cell_w, cell_b)
        kgrads = k_grads[len(srcs) + 3 * p : len(srcs) + 3 * p + 3]
        for what, a, e in zip(("kernel", "recurrent_kernel", "bias"), back, kgrads, strict=True):
            _close(a, np.asarray(e), **tol, err_msg=f"d_params {what}[{p}]")
        # additive biases get equal gradients: all gates but GRU's h gate (b_Rh is multiplied by r)
        g = len(cell_b) // 2
        n_eq = 2 if mode == "gru" else g
        _close(cell_b[:n_eq], cell_b[g : g + n_eq], **tol, err_msg=f"d b_W vs d b_R [{p}]")


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
@pytest.mark.parametrize("lengths", ["full", "varlen"])
def test_one_layer_vs_keras(rng, mode, time_major, lengths):
    batch, steps, input_size, units = 5, 6, 3, 7
    layers = kc.make_layers(mode, 1, units, input_size, rng=rng)
    lens = None if lengths == "full" else ref.random_lengths(rng, batch, steps)
    _compare(rng, mode, layers, batch, steps, input_size, lens, time_major)


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_bidirectional_stack_vs_keras(rng, mode, time_major):
    """Two Bidirectional Keras layers = one 2-layer bidirectional fused op."""
    batch, steps, input_size, units = 4, 5, 3, 5
    layers = kc.make_layers(mode, 2, units, input_size, True, rng)
    lens = ref.random_lengths(rng, batch, steps)
    _compare(rng, mode, layers, batch, steps, input_size, lens, time_major)


@pytest.mark.parametrize("mode", ref.MODES)
def test_three_layer_stack_vs_keras(rng, mode):
    batch, steps, input_size, units = 3, 4, 2, 3
    layers = kc.make_layers(mode, 3, units, input_size, False, rng)
    _compare(rng, mode, layers, batch, steps, input_size, ref.random_lengths(rng, 3, 4), False)


@pytest.mark.parametrize("mode", ref.MODES)
def test_wide_vs_keras(rng, mode):
    """257 units, input size 1 (scale keeps activations out of saturation)."""
    layers = kc.make_layers(mode, 1, 257, 1, False, rng, scale=0.1)
    _compare(rng, mode, layers, 3, 3, 1, np.array([3, 0, 2], np.int32), True)


@pytest.mark.parametrize("mode", ref.MODES)
def test_batch_of_20_vs_keras(rng, mode):
    """A batch of 20: the packed per-step product's 6-row strips, three full and one of 2 rows."""
    batch, steps, input_size, units = 20, 4, 3, 5
    layers = kc.make_layers(mode, 1, units, input_size, True, rng)
    _compare(
        rng, mode, layers, batch, steps, input_size, ref.random_lengths(rng, batch, steps), True
    )


@pytest.mark.parametrize("mode", ref.MODES)
def test_several_chunks_vs_keras(rng, mode):
    """float32 over several of the driver's 512-row chunks of steps (B=40: 13 steps a chunk, T=30:
    13 + 13 + 4), two bidirectional layers, variable lengths."""
    batch, steps, input_size, units = 40, 30, 3, 6
    layers = kc.make_layers(mode, 2, units, input_size, True, rng)
    lens = ref.random_lengths(rng, batch, steps)
    _compare(rng, mode, layers, batch, steps, input_size, lens, True)


# (Not rnn_relu: at 260 units float32 rounding flips some pre-activations across relu's kink, and
# Keras's gradient and ours then differ by design.)
@pytest.mark.parametrize("mode", ["gru", "lstm", "rnn_tanh"])
def test_wide_gates_vs_keras(rng, mode):
    """float32 with G·H >= 256 and 64 rows a step (chunks of 8 steps: 512 rows, 256 a thread): the
    backward's D_gx·W runs each thread's rows in two L2 blocks (PackedGemmPanels), and the
    weight-gradient products (GemmTransposedA) run two 256-row K blocks, over input widths (40,
    2·H) that are no multiple of its 6-column strips and gate widths no multiple of 16."""
    units = {"gru": 90, "lstm": 70}.get(mode, 260)
    batch, steps, input_size = 64, 9, 40
    layers = kc.make_layers(
        mode, 2, units, input_size, True, rng, scale=0.3 if units < 100 else 0.1
    )
    lens = ref.random_lengths(rng, batch, steps)
    # Sums of up to 520 float32 terms, in another order than Keras's: ~5e-5 apart.
    tol = dict(rtol=1e-4, atol=2e-4)
    _compare(rng, mode, layers, batch, steps, input_size, lens, True, tol=tol)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_bigger_vs_keras(rng, mode, time_major):
    batch, steps, input_size, units = 17, 31, 9, 33
    layers = kc.make_layers(mode, 2, units, input_size, True, rng, scale=0.3)
    lens = ref.random_lengths(rng, batch, steps)
    _compare(rng, mode, layers, batch, steps, input_size, lens, time_major)
