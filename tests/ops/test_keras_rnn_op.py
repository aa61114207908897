"""`tf_rnn_ops.keras_rnn` (op TfRnn>KerasRNN): one RNN layer from a Keras cell's own weights.

References, never our own output: the numpy float64 forward of tests/support/rnn_reference.py on the
canonical weights that tests/support/keras_convert.py makes of the Keras weights, Keras' own layers
with the same weights, and `tf.test.compute_gradient` (float64) for the gradient. Sizes cover both
paths of the kernel: B·T <= 8 (float: the weights streamed as stored) and larger (packed), odd sizes
(H = 1, 3, 257), B = 0, T = 0, variable lengths, both layouts, no bias.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import rnn_reference
import tensorflow as tf
from keras_convert import cell_to_canonical
from rnn_reference import random_lengths, rnn_forward

import tf_rnn_ops

MODES = tf_rnn_ops.params.RNN_MODES
GATES = tf_rnn_ops.params.NUM_GATES
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _kind(mode: str) -> str:
    return "simple_rnn" if mode.startswith("rnn_") else mode


def _weights(rng, mode, n_in, H, dtype, use_bias=True, scale=0.5):
    g = GATES[mode]
    k = rng.uniform(-scale, scale, (n_in, g * H)).astype(dtype)
    r = rng.uniform(-scale, scale, (H, g * H)).astype(dtype)
    if not use_bias:
        return k, r, None
    shape = (2, 3 * H) if mode == "gru" else (g * H,)
    return k, r, rng.uniform(-scale, scale, shape).astype(dtype)


def _reference(mode, x, h0, c0, k, r, b, lengths=None, time_major=False):
    """numpy float64 forward of the same layer: (y, h, c)."""
    w, bs = cell_to_canonical(_kind(mode), k, r, b)
    w = [np.asarray(a, np.float64) for a in w]
    bs = [np.asarray(a, np.float64) for a in bs]
    axis = 0 if time_major else 1
    y, h, c = rnn_forward(
        np.asarray(x, np.float64),
        np.expand_dims(np.asarray(h0, np.float64), axis),
        None if c0 is None else np.expand_dims(np.asarray(c0, np.float64), axis),
        w,
        bs,
        mode=mode,
        sequence_lengths=lengths,
        time_major=time_major,
    )
    return y, np.take(h, 0, axis=axis), None if c is None else np.take(c, 0, axis=axis)


def _problem(rng, mode, B, T, n_in, H, dtype, time_major=False):
    x = rng.normal(size=(T, B, n_in) if time_major else (B, T, n_in)).astype(dtype)
    h0 = rng.normal(size=(B, H)).astype(dtype) * 0.5
    c0 = rng.normal(size=(B, H)).astype(dtype) * 0.5 if mode == "lstm" else None
    return x, h0, c0


SIZES = [  # (B, T, n_in, H): one-step calls, streamed (B·T <= 8) and packed, odd sizes
    (1, 1, 5, 3),
    (1, 1, 7, 257),
    (3, 2, 4, 1),
    (2, 4, 9, 17),
    (1, 9, 3, 5),
    (5, 7, 6, 33),
    (8192, 1, 3, 64),  # states of 512K values: copied by both threads (ParallelCopy)
    (64, 20, 9, 6),  # float: x and y in place past 16 steps, the input products in one dispatch
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "B{}T{}I{}H{}".format(*s))
def test_forward_matches_reference(rng, mode, size, dtype):
    B, T, n_in, H = size
    x, h0, c0 = _problem(rng, mode, B, T, n_in, H, dtype)
    k, r, b = _weights(rng, mode, n_in, H, dtype)
    for training in (True, False):
        y, h, c, _ = tf_rnn_ops.keras_rnn(x, h0, c0, k, r, b, rnn_mode=mode, is_training=training)
        ry, rh, rc = _reference(mode, x, h0, c0, k, r, b)
        np.testing.assert_allclose(y, ry, **TOL[dtype])
        np.testing.assert_allclose(h, rh, **TOL[dtype])
        if mode == "lstm":
            np.testing.assert_allclose(c, rc, **TOL[dtype])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B,T", [(1, 3), (4, 2), (6, 5), (64, 7)])
def test_lengths_time_major_and_no_bias(rng, mode, B, T):
    n_in, H = 4, 3
    lengths = random_lengths(rng, B, T)
    for time_major in (False, True):
        x, h0, c0 = _problem(rng, mode, B, T, n_in, H, np.float32, time_major)
        for use_bias in (True, False):
            k, r, b = _weights(rng, mode, n_in, H, np.float32, use_bias)
            y, h, c, _ = tf_rnn_ops.keras_rnn(
                x, h0, c0, k, r, b, sequence_lengths=lengths, rnn_mode=mode, time_major=time_major
            )
            ry, rh, rc = _reference(mode, x, h0, c0, k, r, b, lengths, time_major)
            np.testing.assert_allclose(y, ry, **TOL[np.float32])
            np.testing.assert_allclose(h, rh, **TOL[np.float32])
            if mode == "lstm":
                np.testing.assert_allclose(c, rc, **TOL[np.float32])


@pytest.mark.parametrize("mode", ["gru", "lstm"])
def test_empty_batch_and_no_steps(rng, mode):
    k, r, b = _weights(rng, mode, 4, 3, np.float32)
    x, h0, c0 = _problem(rng, mode, 0, 5, 4, 3, np.float32)
    y, h, c, _ = tf_rnn_ops.keras_rnn(x, h0, c0, k, r, b, rnn_mode=mode)
    assert y.shape == (0, 5, 3) and h.shape == (0, 3)
    x, h0, c0 = _problem(rng, mode, 2, 0, 4, 3, np.float32)
    y, h, c, _ = tf_rnn_ops.keras_rnn(x, h0, c0, k, r, b, rnn_mode=mode)
    assert y.shape == (2, 0, 3)
    np.testing.assert_array_equal(h, h0)  # no step: the state passes through
    if mode == "lstm":
        np.testing.assert_array_equal(c, c0)


@pytest.mark.parametrize("kind", ["gru", "lstm", "simple_rnn"])
@pytest.mark.parametrize("H", [1, 256])
def test_one_step_call_equals_keras_layer(rng, kind, H):
    """The drop-in layer's one-step call with states (text generation, decoding) equals Keras'
    layer with the same weights, in a tf.function."""
    n_in = 7
    cls = {"gru": "GRU", "lstm": "LSTM", "simple_rnn": "SimpleRNN"}[kind]
    ours = getattr(tf_rnn_ops.layers, cls)(H, return_sequences=True, return_state=True)
    ref = getattr(keras.layers, cls)(H, return_sequences=True, return_state=True)
    x = rng.normal(size=(1, 1, n_in)).astype(np.float32)
    states = [rng.normal(size=(1, H)).astype(np.float32) for _ in range(2 if kind == "lstm" else 1)]
    ref(x, initial_state=states)
    ours(x, initial_state=states)
    ref.set_weights([w + rng.uniform(-0.1, 0.1, w.shape) for w in ref.get_weights()])
    ours.set_weights(ref.get_weights())
    a = tf.function(lambda: ours(x, initial_state=states))()
    b = ref(x, initial_state=states)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(1, 1, 3, 2), (2, 3, 2, 3), (3, 4, 2, 2), (2, 2, 5, 9)], ids=str)
def test_gradient_matches_numerical(rng, mode, size):
    """float64: the registered gradient (backprop op + the map back to Keras' layout) against
    finite differences, w.r.t. the input, both states and the three Keras weights, with lengths.
    (2, 2, 5, 9): G·H of 27-36 columns, so that the few-row weight sums run their vector blocks
    (AddOuterProducts: two packets of columns, four rows) and their tails."""
    B, T, n_in, H = size
    x, h0, c0 = _problem(rng, mode, B, T, n_in, H, np.float64)
    if c0 is None:
        c0 = np.zeros([B, H])
    k, r, b = _weights(rng, mode, n_in, H, np.float64)
    lengths = random_lengths(rng, B, T) if B > 1 else None
    wy = rng.normal(size=(B, T, H))
    wh = rng.normal(size=(B, H))
    wc = rng.normal(size=(B, H))

    def loss(x, h0, c0, k, r, b):
        y, h, c, _ = tf_rnn_ops.keras_rnn(
            x, h0, c0, k, r, b, sequence_lengths=lengths, rnn_mode=mode
        )
        out = tf.reduce_sum(y * wy) + tf.reduce_sum(h * wh)
        if mode == "lstm":
            out += tf.reduce_sum(c * wc)
        return out

    args = [tf.constant(a) for a in (x, h0, c0, k, r, b)]
    theoretical, numerical = tf.test.compute_gradient(loss, args, delta=1e-6)
    for i, (t, n) in enumerate(zip(theoretical, numerical, strict=True)):
        if mode != "lstm" and i == 2:
            np.testing.assert_array_equal(t, 0)  # input_c is ignored
            continue
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6, err_msg=f"input {i}")


def test_gradient_of_weights_equals_keras_layer(rng):
    """float32 GRU, B·T both streamed and packed: d(loss)/d(weights) through the drop-in layer
    equal Keras' own layer's, in Keras' layout."""
    for B, T in ((1, 1), (4, 6)):
        ours = tf_rnn_ops.layers.GRU(5, return_sequences=True)
        ref = keras.layers.GRU(5, return_sequences=True)
        x = tf.constant(rng.normal(size=(B, T, 3)).astype(np.float32))
        ref(x)
        ours(x)
        ref.set_weights([w + rng.uniform(-0.2, 0.2, w.shape) for w in ref.get_weights()])
        ours.set_weights(ref.get_weights())
        grads = []
        for layer in (ours, ref):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(layer(x)))
            grads.append(tape.gradient(loss, layer.trainable_weights))
        for g1, g2 in zip(*grads, strict=True):
            np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise(rng):
    k, r, b = _weights(rng, "gru", 4, 3, np.float32)
    x, h0, _ = _problem(rng, "gru", 2, 3, 4, 3, np.float32)
    cases = [
        (dict(kernel=k[:3]), "kernel"),
        (dict(recurrent_kernel=r[:, :5]), "recurrent_kernel"),
        (dict(bias=b[0]), "bias"),
        (dict(input_h=h0[:1]), "input_h"),
        (dict(sequence_lengths=np.array([1, 4], np.int32)), "sequence_lengths"),
        (dict(sequence_lengths=np.array([1], np.int32)), "sequence_lengths"),
    ]
    base = dict(input=x, input_h=h0, input_c=None, kernel=k, recurrent_kernel=r, bias=b)
    for change, word in cases:
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=word):
            tf_rnn_ops.keras_rnn(**{**base, **change}, rnn_mode="gru")
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="input_c"):
        tf_rnn_ops.keras_rnn(
            x, h0, h0[:1], *_weights(rng, "lstm", 4, 3, np.float32), rnn_mode="lstm"
        )


def test_gradient_needs_training_forward(rng):
    k, r, b = _weights(rng, "gru", 2, 2, np.float32)
    x, h0, _ = _problem(rng, "gru", 1, 1, 2, 2, np.float32)
    x = tf.constant(x)
    with pytest.raises(ValueError, match="is_training=True"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf_rnn_ops.keras_rnn(x, h0, None, k, r, b, rnn_mode="gru", is_training=False)[0]
        tape.gradient(y, x)


@pytest.mark.parametrize("mode", ["gru", "lstm"])
@pytest.mark.parametrize("B,T", [(0, 3), (2, 0)])
def test_gradient_of_empty_calls(rng, mode, B, T):
    """No rows or no steps: zero weight gradients, and with no steps the states' gradients pass
    straight through (h_T = h_0, LSTM's c_T = c_0)."""
    k, r, b = (tf.constant(a) for a in _weights(rng, mode, 4, 3, np.float32))
    x, h0, c0 = _problem(rng, mode, B, T, 4, 3, np.float32)
    h0, c0 = tf.constant(h0), tf.constant(c0 if mode == "lstm" else np.zeros([0], np.float32))
    wh, wc = (rng.normal(size=(B, 3)).astype(np.float32) for _ in range(2))
    with tf.GradientTape() as tape:
        tape.watch([h0, c0, k, r, b])
        y, h, c, reserve = tf_rnn_ops.keras_rnn(x, h0, c0, k, r, b, rnn_mode=mode)
        loss = tf.reduce_sum(y) + tf.reduce_sum(h * wh)
        if mode == "lstm":
            loss += tf.reduce_sum(c * wc)
    dh0, dc0, dk, dr, db = tape.gradient(loss, [h0, c0, k, r, b])
    np.testing.assert_array_equal(dh0, wh)
    if mode == "lstm":
        np.testing.assert_array_equal(dc0, wc)
    for g in (dk, dr, db):
        np.testing.assert_array_equal(g, 0)
    # The op itself with skip_state_backprop: the states' grads are zeros, not the final states'.
    _, dh0, dc0, *_ = tf_rnn_ops._loader.ops().tf_rnn_keras_rnn_backprop(
        input=x, input_h=h0, input_c=c0, kernel=k, recurrent_kernel=r, bias=b,
        sequence_lengths=np.zeros([0], np.int32), output=y, output_h=h, output_c=c,
        output_backprop=tf.ones_like(y), output_h_backprop=wh,
        output_c_backprop=wc if mode == "lstm" else tf.zeros_like(c), reserve_space=reserve,
        rnn_mode=mode, skip_state_backprop=True,
    )  # fmt: skip
    np.testing.assert_array_equal(dh0, 0)
    np.testing.assert_array_equal(dc0, 0)


@pytest.mark.parametrize("op", ["keras_rnn", "keras_rnn_dropout", "cudnn_rnn"])
@pytest.mark.parametrize("mode", ["gru", "rnn_tanh"])
@pytest.mark.parametrize("B,T", [(3, 4), (0, 2)])
def test_ignored_input_c_grad_is_zeros_whatever_else_is_watched(rng, op, mode, B, T):
    """A cell without c (GRU, SimpleRNN) ignores input_c: its gradient is zeros of its shape,
    whether the tape watches input_h too or input_c alone. (With input_c alone, the registered
    gradients skip the states' backprop, skip_state_backprop: it returned None for input_c,
    found by the fuzzer, tests/hardening/fuzz_ops.py.) input_h's grad is checked against the run
    that watches both."""
    H, n_in = 3, 2
    x = tf.constant(rng.normal(size=(B, T, n_in)))
    h0 = tf.constant(rng.normal(size=(B, H)))
    c0 = tf.constant(rng.normal(size=(B, H)))  # given, and ignored
    k, r, b = (tf.constant(a) for a in _weights(rng, mode, n_in, H, np.float64))
    wy = tf.constant(rng.normal(size=(B, T, H)))

    def output():
        if op == "keras_rnn":
            return tf_rnn_ops.keras_rnn(x, h0, c0, k, r, b, rnn_mode=mode)[0]
        if op == "keras_rnn_dropout":
            masks = tf.constant(rng.choice([0.0, 2.0], (GATES[mode], B, H)))
            bias = tf.reshape(b, [-1])[-GATES[mode] * H :]  # the recurrent side's
            return tf_rnn_ops.keras_rnn_dropout(
                tf.matmul(x, k), h0, c0, r, masks, recurrent_bias=bias, rnn_mode=mode
            )[0]
        p = rnn_reference.Problem(
            rng, mode, num_units=H, input_size=n_in, batch=B, steps=T, time_major=False
        )
        kw = p.op_kwargs(tf.float64, input=x, input_h=h0[:, None], input_c=c0[:, None])
        kw.pop("sequence_lengths")
        return tf_rnn_ops.cudnn_rnn(**kw)[0]

    grads = {}
    for watched in ((c0,), (h0, c0)):
        with tf.GradientTape() as tape:
            tape.watch(watched)
            loss = tf.reduce_sum(output() * wy)
        grads[len(watched)] = tape.gradient(loss, watched)
    dc_alone, (dh, dc) = grads[1][0], grads[2]
    for g in (dc_alone, dc):
        assert g is not None and g.shape == c0.shape
        np.testing.assert_array_equal(g, 0)
    assert dh is not None and dh.shape == h0.shape


@pytest.mark.parametrize("cls", ["GRU", "LSTM", "SimpleRNN"])
def test_layer_call_converts_no_weights(rng, cls):
    """The per-call cost of the drop-in layers holds no weight conversion: a one-step call's graph
    (and a training step's forward) feeds the Keras variables to TfRnn>KerasRNN as they are, with
    no transposes, concatenations or splits of the weights."""
    layer = getattr(tf_rnn_ops.layers, cls)(8, return_state=True)
    n_states = 2 if cls == "LSTM" else 1
    x = tf.constant(rng.normal(size=(1, 1, 5)).astype(np.float32))
    states = [tf.zeros([1, 8]) for _ in range(n_states)]
    layer(x, initial_state=states)
    fn = tf.function(lambda x, s: layer(x, initial_state=s))
    ops = [op.type for op in fn.get_concrete_function(x, states).graph.get_operations()]
    assert "TfRnn>KerasRNN" in ops, ops
    for conversion in ("Transpose", "ConcatV2", "Split", "SplitV", "Pack", "Reshape"):
        assert conversion not in ops, (conversion, ops)


def _reference_grads(mode, x, h0, c0, k, r, b, lengths, time_major, wy, wh, wc):
    """float64 TensorFlow autodiff of the reference forward (tests/support/rnn_reference.py, TF
    backend) on the canonical weights made of the Keras ones (keras_convert): the grads of
    Σ wy·y + Σ wh·h (+ Σ wc·c) w.r.t. x, h0, c0, kernel, recurrent_kernel, bias."""
    f64 = [tf.constant(np.asarray(a, np.float64)) for a in (x, h0, c0, k, r)]
    f64.append(None if b is None else tf.constant(np.asarray(b, np.float64)))
    watched = [a for a in f64 if a is not None]
    axis = 0 if time_major else 1
    with tf.GradientTape() as tape:
        tape.watch(watched)
        xx, hh, cc, kk, rr, bb = f64
        w, bs = cell_to_canonical(_kind(mode), kk, rr, bb)
        y, h, c = rnn_forward(
            xx, tf.expand_dims(hh, axis), tf.expand_dims(cc, axis) if mode == "lstm" else None,
            w, bs, mode=mode, sequence_lengths=lengths, time_major=time_major,
            backend=rnn_reference.tf_backend(),
        )  # fmt: skip
        loss = tf.reduce_sum(y * wy) + tf.reduce_sum(tf.squeeze(h, axis) * wh)
        if mode == "lstm":
            loss += tf.reduce_sum(tf.squeeze(c, axis) * wc)
    grads = tape.gradient(loss, watched, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return grads + [None] * (len(f64) - len(watched))


GRAD_SIZES = [  # (B, T, n_in, H): rows B·T <= 64 (float sums straight into the outputs) and more
    (1, 1, 5, 257),
    (3, 1, 4, 1),
    (4, 8, 3, 17),
    (3, 11, 4, 9),
    (5, 7, 6, 33),
    (65, 1, 3, 5),
    (3, 5, 100, 800),  # GRU / LSTM: the forward streams 8 MB+ of weights (B <= 8, T <= 8)
    # Past 2·kMr rows over R of 10 MB+ (GRU's 18 MB, LSTM's 24): one row range, each step's
    # products split by columns (RnnRowsApart), the LSTM backward's dh = dG·Rᵀ too (24 MB+,
    # StepGemm::Run); the forward streams
    # (GRU, LSTM: B·T <= 128 over 8 MB+) or packs (B·T > 256; LSTM's 24 MB stream up to 256).
    (13, 3, 8, 1232),
    (12, 22, 5, 1232),
    # B <= 2 over 4 MB+ (GRU, LSTM): the forward streams at any T, on two threads (64 MFLOP+)
    # each summing part of R's rows; B·T = 8 (every mode streams): the backward's dh = dG·Rᵀ
    # split by columns on two threads from 128 MFLOP (GRU, LSTM), one thread (SimpleRNN)
    (1, 40, 16, 600),
    (2, 4, 16, 1232),
    # 204 rows (<= 256: the weight gradients' float runs straight into Keras' layout): with
    # AVX-512, R's gradient (600 rows of C) in two blocks of K (192 + 12 rows), each over column
    # blocks of 320 and strips of 6 rows (packed_gemm.h, GemmTransposedAFloatRuns512)
    (17, 12, 7, 600),
    (64, 3, 5, 9),  # batch-major, B >= 32: x, y, dy, dx read in place (KerasIoInPlace)
    (34, 18, 6, 7),
    (66, 9, 4, 7),  # the same past 256 rows (the weight gradients summed in double)
    # In place past 16 steps on two threads, every step's products in one dispatch
    # (StepGemm::RunSteps, AddWeightGradSteps: SimpleRNN's W, each thread its steps), and (GRU,
    # LSTM) W's sums past kStepsSplitMaxSums, the chunk's rows of x gathered for one product.
    (64, 20, 300, 80),
    # Calls of two threads (> 128 MFLOP) with few gate columns (G·H <= 64) over many rows: the
    # weight gradients' rows split between the threads, and where G·H < n_in the input's
    # computed transposed (cpu_gemm.h, AddWeightGradStrided).
    (8192, 2, 128, 16),  # batch-major in place: each step's rows of W's gradient in two parts
    (8193, 2, 130, 16),  # time-major: a product a chunk
    (8200, 1, 3, 64),  # states' grads of 512K values: copied or zeroed by both threads
    # Narrow layers (cpu_gemm.h, NarrowWeightGrad: G·H and n_in or H within one SIMD vector),
    # rows enough for both threads' shares: batch-major (a product a step, x's rows T·I apart;
    # H = 1: R's gradient and the bias sums one lane wide) and time-major, where G·H > n_in
    # (GRU, LSTM) puts the broadcast side on B's columns (Cᵀ) and G·H < n_in (SimpleRNN) on A's.
    (4100, 16, 3, 1),
    (2049, 8, 5, 3),
]

# Small layers (R of <= 40 K values) of full rows (no lengths) and B >= 64: the backward reads
# each step's h_prev and c_prev where they lie (y, h0, c0, the reserve; rnn_cpu_driver.h,
# states_in_place), R's gradient a product a step over them: batch-major (y's rows T·H apart),
# time-major, H = 4, 5 (one or two cells' rows within a vector; GRU(5) and LSTM(4) at G·H 15, 16)
# and wider than a vector (H = 21, 33: R's sums on the packed kernel, GRU(33) / LSTM(33) with
# G·H past two panels).
FULL_ROW_SIZES = [
    (4100, 16, 3, 1),
    (65, 9, 4, 4),
    (130, 5, 6, 5),
    (64, 1, 2, 3),
    (96, 7, 5, 21),
    (67, 6, 4, 33),
]


@pytest.mark.parametrize("zero_state", [False, True, "last_row"], ids=["state", "zero", "last_row"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", GRAD_SIZES, ids=lambda s: "B{}T{}I{}H{}".format(*s))
def test_float32_gradient_matches_reference(rng, mode, size, zero_state):
    """float32 gradients against float64 autodiff of the reference (_check_float32_gradients),
    random sequence lengths."""
    _check_float32_gradients(rng, mode, size, zero_state)


@pytest.mark.parametrize(
    "zero_state, lengths_kind",
    [(False, "none"), (True, "none"), (False, "all_full"), (True, "last_short")],
    ids=["state", "zero", "all_full", "zero_last_short"],
)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", FULL_ROW_SIZES, ids=lambda s: "B{}T{}I{}H{}".format(*s))
def test_float32_gradient_of_full_rows_matches_reference(rng, mode, size, zero_state, lengths_kind):
    """test_float32_gradient_matches_reference over full rows (FULL_ROW_SIZES): no sequence
    lengths; lengths of T for every row (a mask of all true, which the op takes as none); and all
    but the last row full, which must keep the lengths."""
    _check_float32_gradients(rng, mode, size, zero_state, lengths_kind)


def _check_float32_gradients(rng, mode, size, zero_state, lengths_kind="random"):
    """float32 gradients of every input and weight (TfRnn>KerasRNNBackprop, every mode) against
    float64 autodiff of the reference, both layouts, lengths (lengths_kind: random where B > 1,
    none, all full, all full but the last row's T - 1), no bias, and with the input or the
    input and the states not watched (skip_input_backprop, skip_state_backprop: the weights' grads
    unchanged). zero_state: zero initial states (a layer called without them), where the kernels
    skip the first step's recurrent products and its rows of R's gradient; last_row: zero but for
    the last batch row's h (and c), which the forward's zero check (run while the state is copied,
    in blocks over the threads) must see."""
    B, T, n_in, H = size
    time_major = B % 2 == 1
    use_bias = (B + T) % 3 != 0
    x, h0, c0 = _problem(rng, mode, B, T, n_in, H, np.float32, time_major)
    if c0 is None:
        c0 = np.zeros([B, H], np.float32)
    if zero_state:
        last = (h0[-1:].copy(), c0[-1:].copy())
        h0, c0 = np.zeros_like(h0), np.zeros_like(c0)
        if zero_state == "last_row":
            h0[-1:], c0[-1:] = last
    # (at H = 1232, weights of ±0.3 make a relu RNN's states grow to ~1e6 in 11 steps, at H = 600
    # to ~1e18 in 40: float32's digits, not the kernels, would then decide the test)
    scale = 0.3 if H < 500 else 1.0 / np.sqrt(H)
    k, r, b = _weights(rng, mode, n_in, H, np.float32, use_bias=use_bias, scale=scale)
    lengths = None
    if lengths_kind == "random" and B > 1:
        lengths = random_lengths(rng, B, T)
    elif lengths_kind in ("all_full", "last_short"):
        lengths = random_lengths(rng, B, T, kind="full")
        if lengths_kind == "last_short":
            lengths[-1] = T - 1
    y_shape = (T, B, H) if time_major else (B, T, H)
    wy, wh, wc = (rng.normal(size=s).astype(np.float32) for s in (y_shape, (B, H), (B, H)))
    want = _reference_grads(mode, x, h0, c0, k, r, b, lengths, time_major, wy, wh, wc)
    args = [tf.constant(a) for a in (x, h0, c0, k, r)] + [
        tf.constant(b if b is not None else np.zeros([0], np.float32))
    ]
    for first_watched in (0, 1, 3):  # everything; all but the input; the weights only
        with tf.GradientTape() as tape:
            tape.watch(args[first_watched:])
            y, h, c, _ = tf_rnn_ops.keras_rnn(
                *args, sequence_lengths=lengths, rnn_mode=mode, time_major=time_major
            )
            loss = tf.reduce_sum(y * wy) + tf.reduce_sum(h * wh)
            if mode == "lstm":
                loss += tf.reduce_sum(c * wc)
        # (the tape skips what is not among the sources asked for, watched or not)
        got = [None] * first_watched + tape.gradient(
            loss, args[first_watched:], unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        for i, name in enumerate(("input", "input_h", "input_c", "kernel", "recurrent_kernel")):
            if i < first_watched:
                continue
            scale = max(1.0, float(np.max(np.abs(want[i]))))
            np.testing.assert_allclose(
                got[i], want[i], rtol=1e-4, atol=2e-5 * scale, err_msg=f"{name}, {first_watched=}"
            )
        if b is not None:
            np.testing.assert_allclose(got[5], want[5], rtol=1e-4, atol=2e-4, err_msg="bias")

    # tf.gradients in a graph passes no skip attrs: the kernel skips the gradients no consumer
    # reads (output_required), and those asked for stay right.
    for first_asked in (1, 3):

        @tf.function
        def graph_grads(first_asked=first_asked):
            y, h, c, _ = tf_rnn_ops.keras_rnn(
                *args, sequence_lengths=lengths, rnn_mode=mode, time_major=time_major
            )
            loss = tf.reduce_sum(y * wy) + tf.reduce_sum(h * wh)
            if mode == "lstm":
                loss += tf.reduce_sum(c * wc)
            return tf.gradients(
                loss, args[first_asked:5], unconnected_gradients=tf.UnconnectedGradients.ZERO
            )

        for i, g in enumerate(graph_grads(), start=first_asked):
            scale = max(1.0, float(np.max(np.abs(want[i]))))
            np.testing.assert_allclose(
                g, want[i], rtol=1e-4, atol=2e-5 * scale, err_msg=f"graph, {i=}, {first_asked=}"
            )


def test_backprop_op_bad_inputs_raise(rng):
    """TfRnn>KerasRNNBackprop refuses forward results and reserves of other shapes, by name."""
    k, r, b = _weights(rng, "gru", 4, 3, np.float32)
    x, h0, _ = _problem(rng, "gru", 2, 3, 4, 3, np.float32)
    y, h, c, reserve = tf_rnn_ops.keras_rnn(x, h0, None, k, r, b, rnn_mode="gru")
    ops = tf_rnn_ops._loader.ops()
    base = dict(
        input=x, input_h=h0, input_c=np.zeros([0], np.float32), kernel=k, recurrent_kernel=r,
        bias=b, sequence_lengths=np.zeros([0], np.int32), output=y, output_h=h, output_c=c,
        output_backprop=y, output_h_backprop=h, output_c_backprop=c, reserve_space=reserve,
    )  # fmt: skip
    cases = [
        (dict(output=y[:, :2]), "output"),
        (dict(output_backprop=y[:1]), "output_backprop"),
        (dict(output_h_backprop=h[:, :2]), "output_h_backprop"),
        (dict(reserve_space=reserve[:-1]), "reserve_space"),
        (dict(kernel=k[:, :5]), "kernel"),
    ]
    for change, word in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=word):
            ops.tf_rnn_keras_rnn_backprop(**{**base, **change}, rnn_mode="gru")
