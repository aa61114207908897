"""`tf_rnn_ops.keras_rnn_dropout` (ops TfRnn>KerasRNNDropout and its backprop): the recurrence of a
Keras layer with recurrent dropout, on the projected input.

References, never our own output: the float64 numpy cells of tests/cells/cell_reference.py
(Keras 3's implementation=1 step with injected per-gate masks, checked against Keras itself in
tests/cells/test_cell_reference_checks.py) run by its `rnn` loop, and `tf.test.compute_gradient`
(float64) for the gradient. Odd sizes (1, 3, 257), B = 0, T = 0, variable lengths, both layouts,
a batch large enough for the driver's row ranges, bad input.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import row_range
import tensorflow as tf
from rnn_reference import random_lengths

import tf_rnn_ops

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cells"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gpu"))
import cell_reference as ref  # noqa: E402
import keras_dropout_reference as kref  # noqa: E402  (the gate-major conversion, shared)

GATES = tf_rnn_ops.params.NUM_GATES
MODES = ["gru", "gru_reset_before", "lstm", "rnn_tanh", "rnn_relu"]
TOL = {np.float32: dict(rtol=3e-5, atol=3e-5), np.float64: dict(rtol=1e-11, atol=1e-11)}


def _problem(rng, mode, B, T, n_in, H, rate=0.3, use_bias=True):
    """Random weights, states, input and Keras-style masks (G per side), all float64."""
    g = GATES[mode]
    k = rng.uniform(-0.6, 0.6, (n_in, g * H))
    r = rng.uniform(-0.6, 0.6, (H, g * H))
    b = None
    if use_bias:
        b = rng.uniform(-0.5, 0.5, (2, 3 * H) if mode == "gru" else (g * H,))
    x = rng.normal(size=(B, T, n_in))
    h0 = rng.normal(size=(B, H)) * 0.5
    c0 = rng.normal(size=(B, H)) * 0.5
    dm = ref.dropout_masks(rng, g, (B, n_in), rate)
    rm = ref.dropout_masks(rng, g, (B, H), rate)
    return k, r, b, x, h0, c0, dm, rm


def _projected(mode, x, k, b, dm):
    """concat_k((x ⊙ d_k) W_k) + input bias, Keras' column order (what the layer computes)."""
    g = GATES[mode]
    H = k.shape[1] // g
    cols = [(x * dm[j][:, None, :]) @ k[:, j * H : (j + 1) * H] for j in range(g)]
    gx = np.concatenate(cols, axis=-1)
    if b is not None:
        gx = gx + (b[0] if mode == "gru" else b)
    return gx


def _reference(mode, k, r, b, x, h0, c0, dm, rm, lengths=None):
    g, H = GATES[mode], r.shape[0]
    bias = b if b is not None else (np.zeros((2, 3 * H)) if mode == "gru" else np.zeros(g * H))
    if mode in ("gru", "gru_reset_before"):
        cell = ref.gru_cell(
            k, r, bias, reset_after=mode == "gru", input_masks=dm, recurrent_masks=rm
        )
    elif mode == "lstm":
        cell = ref.lstm_cell(k, r, bias, input_masks=dm, recurrent_masks=rm)
    else:
        cell = ref.simple_rnn_cell(
            k, r, bias, activation=mode[4:], input_mask=dm[0], recurrent_mask=rm[0]
        )
    states = [h0, c0] if mode == "lstm" else [h0]
    y, _, st = ref.rnn(cell, x, states, lengths=lengths, zero_output_for_mask=True)
    return y, st[0], st[1] if mode == "lstm" else None


def _run(
    mode, gx, h0, c0, r, b, rm, lengths=None, time_major=False, dtype=np.float64,
    recurrent_bias=None, **kw,
):  # fmt: skip
    cast = lambda a: None if a is None else np.asarray(a, dtype)  # noqa: E731
    if time_major:
        gx = np.swapaxes(gx, 0, 1)
    rb = b[1] if (b is not None and mode == "gru" and recurrent_bias is None) else recurrent_bias
    y, h, c, _ = tf_rnn_ops.keras_rnn_dropout(
        cast(gx), cast(h0), cast(c0) if mode == "lstm" else None, cast(r),
        cast(np.stack(rm)), cast(rb), sequence_lengths=lengths, rnn_mode=mode,
        time_major=time_major, **kw,
    )  # fmt: skip
    y = np.asarray(y)
    return (np.swapaxes(y, 0, 1) if time_major else y), np.asarray(h), np.asarray(c)


# (B, T, I, H); 29 x 5 = 145 rows: the float weight-gradient runs of few-row calls (WeightGradsInT)
SIZES = [(1, 1, 1, 1), (3, 4, 2, 3), (2, 3, 3, 257), (13, 3, 2, 5), (29, 5, 7, 19)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "B{}T{}I{}H{}".format(*s))
def test_forward_matches_reference(rng, mode, size, dtype):
    B, T, n_in, H = size
    k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, n_in, H)
    gx = _projected(mode, x, k, b, dm)
    ry, rh, rc = _reference(mode, k, r, b, x, h0, c0, dm, rm)
    for training in (True, False):
        y, h, c = _run(mode, gx, h0, c0, r, b, rm, dtype=dtype, is_training=training)
        np.testing.assert_allclose(y, ry, **TOL[dtype])
        np.testing.assert_allclose(h, rh, **TOL[dtype])
        if mode == "lstm":
            np.testing.assert_allclose(c, rc, **TOL[dtype])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B,T", [(3, 5), (8, 8), (13, 4), (20, 6), (13, 11), (13, 20)])
def test_forward_streams_large_recurrent_kernels(rng, mode, B, T):
    """Few rows over few steps of a recurrent kernel of 8 MB or more (H = 1420: 8 MB for
    SimpleRNN, 24 and 32 for GRU and LSTM): B <= 8 rows a step over T <= 8 steps, and (AVX-512)
    9-64 rows in calls of at most 128 rows, up to 256 at B <= 32 over 24 MB+ (GRU's and LSTM's R),
    read R as stored (RnnStreamForwardWeights); past those rows R is packed (SimpleRNN 13 x 11,
    all at 13 x 20). Past 2·kMr rows GRU's and LSTM's R (10 MB+) runs as one row range, each
    step's product split by columns (RnnRowsApart). With lengths, in float32 against
    the float64 reference; training and inference give the same outputs."""
    H = 1420
    k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, 3, H)
    r = r * 2.0 / np.sqrt(H)  # (U(-0.6, 0.6) would saturate every unit)
    lengths = rng.integers(0, T + 1, B).astype(np.int32)
    gx = _projected(mode, x, k, b, dm)
    ry, rh, rc = _reference(mode, k, r, b, x, h0, c0, dm, rm, lengths=lengths)
    for training in (True, False):
        y, h, c = _run(mode, gx, h0, c0, r, b, rm, lengths=lengths, dtype=np.float32,
                       is_training=training)  # fmt: skip
        np.testing.assert_allclose(y, ry, **TOL[np.float32])
        np.testing.assert_allclose(h, rh, **TOL[np.float32])
        if mode == "lstm":
            np.testing.assert_allclose(c, rc, **TOL[np.float32])


@pytest.mark.parametrize("mode", MODES)
def test_lengths_layouts_and_no_bias(rng, mode):
    B, T, n_in, H = 14, 5, 3, 4
    lengths = random_lengths(rng, B, T)
    for time_major in (False, True):
        for use_bias in (True, False):
            k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, n_in, H, use_bias=use_bias)
            gx = _projected(mode, x, k, b, dm)
            y, h, c = _run(mode, gx, h0, c0, r, b, rm, lengths, time_major)
            ry, rh, rc = _reference(mode, k, r, b, x, h0, c0, dm, rm, lengths)
            np.testing.assert_allclose(y, ry, **TOL[np.float64])
            np.testing.assert_allclose(h, rh, **TOL[np.float64])
            if mode == "lstm":
                np.testing.assert_allclose(c, rc, **TOL[np.float64])


def _two_rows(rng, mode, b):
    """A [2, G·H] recurrent_bias with Keras' bias b's effect: GRU reset_after's own [2, 3H]; for
    the other cells b split at random between the rows (both add to the gate once)."""
    if mode == "gru":
        return b
    row0 = rng.uniform(-0.5, 0.5, b.shape)
    return np.stack([row0, b - row0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "mode,form",
    [(m, "recurrent") for m in MODES if m != "gru"] + [(m, "rows") for m in MODES],
)
def test_bias_on_the_op_side(rng, mode, form, dtype):
    """The layers pass their bias to the op, the projected input without one: "recurrent", a
    [G·H] recurrent_bias for the cells whose bias adds to the gate once (all but GRU reset_after);
    "rows", [2, G·H], the input side's bias row then the recurrent side's (Keras GRU's [2, 3H] as
    it is). Against Keras' cell with its bias."""
    B, T, n_in, H = 13, 5, 3, 257
    lengths = random_lengths(rng, B, T)
    k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, n_in, H)
    r = r * 2.0 / np.sqrt(H)  # (U(-0.6, 0.6) at H = 257: rnn_relu's states grow past float32)
    gx = _projected(mode, x, k, None, dm)
    ry, rh, rc = _reference(mode, k, r, b, x, h0, c0, dm, rm, lengths)
    rb = b if form == "recurrent" else _two_rows(rng, mode, b)
    for time_major in (False, True):
        y, h, c = _run(mode, gx, h0, c0, r, None, rm, lengths, time_major, dtype, recurrent_bias=rb)
        np.testing.assert_allclose(y, ry, **TOL[dtype])
        np.testing.assert_allclose(h, rh, **TOL[dtype])
        if mode == "lstm":
            np.testing.assert_allclose(c, rc, **TOL[dtype])


@pytest.mark.parametrize("mode", ["gru", "lstm"])
def test_empty_batch_and_no_steps(rng, mode):
    for B, T in ((0, 4), (3, 0)):
        k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, 2, 3)
        gx = _projected(mode, x, k, b, dm)
        y, h, c = _run(mode, gx, h0, c0, r, b, rm)
        assert y.shape == (B, T, 3) and h.shape == (B, 3)
        np.testing.assert_array_equal(h, h0)  # no step: the states pass through
        if mode == "lstm":
            np.testing.assert_array_equal(c, c0)


@pytest.mark.parametrize("mode", ["gru", "lstm"])
@pytest.mark.parametrize("B,T", [(0, 3), (2, 0)])
def test_gradient_of_empty_calls(rng, mode, B, T):
    """No rows or no steps: a zero gradient of R, and with no steps the states' gradients pass
    straight through (h_T = h_0, LSTM's c_T = c_0)."""
    k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, 2, 3)
    gx, masks = tf.constant(_projected(mode, x, k, b, dm)), tf.constant(np.stack(rm))
    h0, c0, r = tf.constant(h0), tf.constant(c0), tf.constant(r)
    wh, wc = (rng.normal(size=(B, 3)) for _ in range(2))
    with tf.GradientTape() as tape:
        tape.watch([h0, c0, r])
        _, h, c, _ = tf_rnn_ops.keras_rnn_dropout(
            gx, h0, c0 if mode == "lstm" else None, r, masks, b[1] if mode == "gru" else None,
            rnn_mode=mode,
        )  # fmt: skip
        loss = tf.reduce_sum(h * wh) + (tf.reduce_sum(c * wc) if mode == "lstm" else 0.0)
    dh0, dc0, dr = tape.gradient(loss, [h0, c0, r])
    np.testing.assert_array_equal(dh0, wh)
    if mode == "lstm":
        np.testing.assert_array_equal(dc0, wc)
    np.testing.assert_array_equal(dr, 0)


@pytest.mark.parametrize("mode", MODES)
def test_gradient_matches_numeric(rng, mode):
    B, T, n_in, H = 3, 4, 2, 3
    k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, n_in, H)
    gx = _projected(mode, x, k, b, dm)
    lengths = np.array([4, 2, 3], np.int32)
    masks = tf.constant(np.stack(rm))
    wy, wh, wc = rng.normal(size=(B, T, H)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    lstm, gru = mode == "lstm", mode == "gru"

    def loss(gx, h0, c0, r, rb):
        y, h, c, _ = tf_rnn_ops.keras_rnn_dropout(
            gx, h0, c0 if lstm else None, r, masks, rb, sequence_lengths=lengths, rnn_mode=mode
        )
        out = tf.reduce_sum(y * wy) + tf.reduce_sum(h * wh)
        return out + tf.reduce_sum(c * wc) if lstm else out

    # (every mode takes a recurrent bias, [G·H] or [2, G·H]: the layers pass theirs there, and
    # its grad is the op's)
    for rb in (b[1] if gru else b, _two_rows(rng, mode, b)):
        args = [tf.constant(a) for a in (gx, h0, c0, r, rb)]
        theoretical, numerical = tf.test.compute_gradient(loss, args, delta=1e-6)
        for i, (t, n) in enumerate(zip(theoretical, numerical, strict=True)):
            np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6, err_msg=f"input {i}")
            if i == 0:  # steps past a length get no gradient
                assert np.abs(t).sum() > 0


def _flat_outputs(mode, gx, h0, c0, r, rb, masks, lengths, **kw):
    """keras_rnn_dropout's y, h and c in one vector (a function for tf.test.compute_gradient)."""
    y, h, c, _ = tf_rnn_ops.keras_rnn_dropout(
        gx, h0, c0 if mode == "lstm" else None, r, masks, rb if mode == "gru" else None,
        sequence_lengths=np.array(lengths, np.int32), rnn_mode=mode, **kw,
    )  # fmt: skip
    return tf.concat([tf.reshape(y, [-1]), tf.reshape(h, [-1]), tf.reshape(c, [-1])], 0)


def _assert_matches_numeric(fn, args):
    """fn's gradients w.r.t. args (float64) against numerical ones; returns both Jacobians."""
    theoretical, numerical = tf.test.compute_gradient(fn, args, delta=1e-6)
    for i, (t, n) in enumerate(zip(theoretical, numerical, strict=True)):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6, err_msg=f"input {i}")
    return theoretical, numerical


@pytest.mark.parametrize("mode", MODES)
def test_zero_initial_state(rng, mode):
    """Zero initial states (a layer called without them): the kernels skip the first step's
    recurrent products, masked, and its rows of R's gradient. The forward in float32 against the
    reference (one step at H = 257; 145 rows), the gradients against numerical ones at the zero
    state (each probe of input_h moves one entry off zero: the full path)."""
    for B, T, n_in, H in ((2, 1, 3, 257), (29, 5, 7, 19)):
        k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, n_in, H)
        h0, c0 = np.zeros_like(h0), np.zeros_like(c0)
        gx = _projected(mode, x, k, b, dm)
        ry, rh, rc = _reference(mode, k, r, b, x, h0, c0, dm, rm)
        for training in (True, False):
            y, h, c = _run(mode, gx, h0, c0, r, b, rm, dtype=np.float32, is_training=training)
            np.testing.assert_allclose(y, ry, **TOL[np.float32])
            np.testing.assert_allclose(h, rh, **TOL[np.float32])
            if mode == "lstm":
                np.testing.assert_allclose(c, rc, **TOL[np.float32])
    B, T, n_in, H = 3, 3, 2, 3
    k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, n_in, H)
    gx = _projected(mode, x, k, b, dm)
    masks = tf.constant(np.stack(rm))

    def loss(gx, h0, c0, r, rb):
        return _flat_outputs(mode, gx, h0, c0, r, rb, masks, [3, 0, 2])

    rb = b[1] if mode == "gru" else np.zeros(3)
    zeros = np.zeros((B, H))
    args = [tf.constant(a) for a in (gx, zeros, zeros, r, rb)]
    theoretical, _ = _assert_matches_numeric(loss, args)
    assert np.abs(theoretical[3]).sum() > 0  # R's gradient: the later steps' rows


@pytest.mark.parametrize("mode", MODES)
def test_gradient_without_the_states(rng, mode):
    """With the states unwatched (skip_state_backprop: the first step's product for their grads
    is skipped) the other grads are still right: against numerical ones, nonzero states, lengths
    with an empty row, zoneout, float64."""
    B, T, n_in, H = 3, 4, 2, 3
    k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, n_in, H)
    gx = _projected(mode, x, k, b, dm)
    masks = tf.constant(np.stack(rm))
    zoneout = tf.constant((rng.uniform(size=(T, B, H)) > 0.3).astype(np.float64))
    h0, c0 = tf.constant(h0), tf.constant(c0)

    def loss(gx, r, rb):
        return _flat_outputs(mode, gx, h0, c0, r, rb, masks, [4, 0, 2], zoneout_mask=zoneout)

    rb = b[1] if mode == "gru" else np.zeros(3)
    args = [tf.constant(a) for a in (gx, r, rb)]
    _, numerical = _assert_matches_numeric(loss, args)

    # tf.gradients in a graph passes no attr: the kernel skips what no consumer reads
    # (output_required); the vector-Jacobian product against the numerical Jacobian.
    w = rng.normal(size=numerical[0].shape[0])

    @tf.function
    def graph_grads(gx, r, rb):
        vjp = tf.tensordot(loss(gx, r, rb), tf.constant(w), 1)
        return tf.gradients(vjp, [gx, r, rb], unconnected_gradients=tf.UnconnectedGradients.ZERO)

    for i, (g, n) in enumerate(zip(graph_grads(*args), numerical, strict=True)):
        np.testing.assert_allclose(np.reshape(g, [-1]), w @ n, rtol=1e-6, atol=1e-6, err_msg=i)

    @tf.function
    def grads():
        with tf.GradientTape() as tape:
            tape.watch(args)
            out = tf.reduce_sum(loss(*args))
        return tape.gradient(out, args)

    ops = grads.get_concrete_function().graph.get_operations()
    (bp,) = [o for o in ops if o.type == "TfRnn>KerasRNNDropoutBackprop"]
    assert bp.get_attr("skip_state_backprop") is True


def _good(B=2, T=3, H=4, mode="lstm"):
    g = GATES[mode]
    return dict(
        projected_input=np.zeros((B, T, g * H), np.float32),
        input_h=np.zeros((B, H), np.float32),
        input_c=np.zeros((B, H), np.float32),
        recurrent_kernel=np.zeros((H, g * H), np.float32),
        recurrent_masks=np.ones((g, B, H), np.float32),
    )


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(projected_input=np.zeros((2, 3, 15), np.float32)), "projected_input"),
        (dict(input_h=np.zeros((3, 4), np.float32)), "input_h"),
        (dict(input_c=np.zeros((2, 5), np.float32)), "input_c"),
        (dict(recurrent_kernel=np.zeros((4, 15), np.float32)), "recurrent_kernel"),
        (dict(recurrent_masks=np.ones((3, 2, 4), np.float32)), "recurrent_masks"),
        (dict(recurrent_bias=np.zeros((15,), np.float32)), "recurrent_bias"),
        (dict(recurrent_bias=np.zeros((1, 16), np.float32)), "recurrent_bias"),
        (dict(recurrent_bias=np.zeros((3, 16), np.float32)), "recurrent_bias"),
        (dict(recurrent_bias=np.zeros((2, 15), np.float32)), "recurrent_bias"),
        (dict(sequence_lengths=np.array([1, 4], np.int32)), "sequence_length"),
        (dict(sequence_lengths=np.array([1, 2, 3], np.int32)), "sequence_lengths"),
    ],
)
def test_bad_input_is_refused(change, match):
    args = _good()
    args.update(change)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=match):
        tf_rnn_ops.keras_rnn_dropout(**args, rnn_mode="lstm")


def test_gradient_needs_training(rng):
    args = {k: tf.constant(v) for k, v in _good().items()}
    with tf.GradientTape() as tape:
        tape.watch(args["projected_input"])
        y, *_ = tf_rnn_ops.keras_rnn_dropout(**args, rnn_mode="lstm", is_training=False)
    with pytest.raises(ValueError, match="is_training=True"):
        tape.gradient(y, args["projected_input"])


@pytest.mark.parametrize(
    "threads,rounds,shape",
    [
        (8, 4, "37:12:3:16"),
        pytest.param(2, 4, "37:12:3:16", marks=pytest.mark.slow),
        (2, 2, "5:60:16:384"),
        (2, 1, "13:3:3:1420"),
    ],
)
def test_row_ranges_on_threads(threads, rounds, shape):
    """float32, B = 37, and B = 5 in calls past 64 MFLOP (ranges of 2 and 3 rows, RnnRowsApart):
    the driver's row ranges (a thread's rows through a chunk of steps, no barrier) with the masked
    products, against Keras in float64 with the same masks (dropout_row_range_program.py, in a
    subprocess: the pool's size is fixed at start). B = 13 at H = 1420: GRU's and LSTM's R of
    10 MB+ run as one range, each step's masked products split by columns, forward and backward
    (RnnRowsApart); SimpleRNN's 8 MB keeps the rows apart."""
    done = row_range.run_program("dropout_row_range_program.py", threads, 5, rounds, shape)
    assert row_range.passed(done), done.stdout + done.stderr


def _gate_major(gx, g, time_major=False):
    """[B, T, G·H] -> [G, B, T, H] ([G, T, B, H] with time_major): the op's gate_major layout."""
    return kref.to_gate_major(np.swapaxes(gx, 0, 1) if time_major else gx, g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode", MODES)
def test_gate_major_matches_reference(rng, mode, dtype):
    """gate_major: the projected input as G blocks [G, B, T, H] ([G, T, B, H]), Keras' gate order:
    the float64 reference's outputs in both layouts, with lengths, masks, zoneout, training or
    not, at odd sizes (H = 257: rows not on vector boundaries)."""
    g = GATES[mode]
    for B, T, n_in, H in [(1, 1, 1, 1), (14, 5, 3, 4), (3, 2, 2, 257)]:
        k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, n_in, H)
        lengths = random_lengths(rng, B, T)
        gx = _projected(mode, x, k, b, dm)
        ry, rh, rc = _reference(mode, k, r, b, x, h0, c0, dm, rm, lengths)
        for time_major in (False, True):
            for training in (True, False):
                cast = lambda a: None if a is None else np.asarray(a, dtype)  # noqa: E731
                y, h, c, _ = tf_rnn_ops.keras_rnn_dropout(
                    cast(_gate_major(gx, g, time_major)), cast(h0),
                    cast(c0) if mode == "lstm" else None, cast(r), cast(np.stack(rm)),
                    cast(b[1] if mode == "gru" else None), sequence_lengths=lengths,
                    rnn_mode=mode, time_major=time_major, is_training=training, gate_major=True,
                )  # fmt: skip
                y = np.swapaxes(y, 0, 1) if time_major else np.asarray(y)
                np.testing.assert_allclose(y, ry, **TOL[dtype])
                np.testing.assert_allclose(h, rh, **TOL[dtype])
                if mode == "lstm":
                    np.testing.assert_allclose(c, rc, **TOL[dtype])


@pytest.mark.parametrize(
    "mode,time_major,second_order",
    [(m, tm, False) for m in MODES for tm in (False, True)] + [("gru", True, True)],
)
def test_gate_major_gradient_matches_numeric(rng, mode, time_major, second_order):
    """The grads of a gate-major call (its projected input's in the same [G, ·, ·, H] layout),
    against numerical ones in float64, with lengths and a zoneout mask; and (one case: the
    formulation's own layout change) the second-order gradient, the backprop op's, against
    numerical ones of the first-order gradient."""
    B, T, n_in, H = 3, 4, 2, 3
    g = GATES[mode]
    k, r, b, x, h0, c0, dm, rm = _problem(rng, mode, B, T, n_in, H)
    gx = _gate_major(_projected(mode, x, k, b, dm), g, time_major)
    lengths = [4, 2, 3]
    zoneout = tf.constant(ref.zoneout_mask(rng, (T, B, H), 0.3))
    masks = tf.constant(np.stack(rm))
    args = [tf.constant(a) for a in (gx, h0, c0, r, b[1] if mode == "gru" else b)]

    def outputs(gx, h0, c0, r, rb):
        return _flat_outputs(mode, gx, h0, c0, r, rb, masks, lengths, time_major=time_major,
                             zoneout_mask=zoneout, gate_major=True)  # fmt: skip

    theoretical, _ = _assert_matches_numeric(outputs, args)
    assert np.abs(theoretical[0]).sum() > 0
    if not second_order:
        return
    w = rng.normal(size=theoretical[0].shape[0])

    def first_order(gx):
        with tf.GradientTape() as tape:
            tape.watch([gx, args[3]])
            out = tf.tensordot(outputs(gx, *args[1:]), tf.constant(w), 1)
        return tf.concat([tf.reshape(t, [-1]) for t in tape.gradient(out, [gx, args[3]])], 0)

    _assert_matches_numeric(first_order, [args[0]])


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 16), (3, 2, 3, 4), (4, 2, 3, 5), (4, 2, 3, 4, 1)],
    ids=["3-D", "3 gates", "H 5", "5-D"],
)
def test_gate_major_bad_shape_is_refused(shape):
    args = _good()
    args["projected_input"] = np.zeros(shape, np.float32)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="projected_input"):
        tf_rnn_ops.keras_rnn_dropout(**args, rnn_mode="lstm", gate_major=True)
