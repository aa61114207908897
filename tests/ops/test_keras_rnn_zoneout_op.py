"""Zoneout in `tf_rnn_ops.keras_rnn_dropout` (ops TfRnn>KerasRNNDropout and its backprop, input
`zoneout_mask`): haste's zoneout on h after every step, alone (recurrent_masks empty: the plain
recurrent products) or with recurrent dropout; training (a {0, 1} mask [T, B, H]) and inference
(a scalar keep weight 1 - p).

References, never our own output: the float64 numpy cells of tests/cells/cell_reference.py wrapped
in its `zoneout` (written from haste's code, checked in tests/cells) and run by its `rnn` loop, and
`tf.test.compute_gradient` (float64) for the gradients. Odd sizes (1, 3, 257), B = 0, T = 0,
variable lengths, both layouts, bad input.
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
from tf_rnn_ops.cudnn_rnn import _ops

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cells"))
import cell_reference as ref  # noqa: E402

GATES = tf_rnn_ops.params.NUM_GATES
MODES = ["gru", "gru_reset_before", "lstm", "rnn_tanh", "rnn_relu"]
TOL = {np.float32: dict(rtol=3e-5, atol=3e-5), np.float64: dict(rtol=1e-11, atol=1e-11)}
RATE = 0.35


def _problem(rng, mode, B, T, H, use_bias=True, dropout=True):
    """Random projected input gx [B, T, G·H] (Keras' column order), recurrent kernel, bias, states,
    recurrent-dropout masks (or None) and a zoneout mask [T, B, H], all float64."""
    g = GATES[mode]
    gx = rng.normal(size=(B, T, g * H))
    r = rng.uniform(-0.6, 0.6, (H, g * H))
    rb = rng.uniform(-0.5, 0.5, (g * H,)) if use_bias and mode == "gru" else None
    h0 = rng.normal(size=(B, H)) * 0.5
    c0 = rng.normal(size=(B, H)) * 0.5
    rm = ref.dropout_masks(rng, g, (B, H), 0.3) if dropout else None
    zm = ref.zoneout_mask(rng, (T, B, H), RATE)
    return gx, r, rb, h0, c0, rm, zm


def _reference(mode, gx, r, rb, h0, c0, rm, zm, lengths=None):
    """The layer's recurrence in float64: the cell on x = gx with an identity kernel (gx is the
    input side, bias included), zoneout with the mask zm (None: inference)."""
    g, H = GATES[mode], r.shape[0]
    k = np.eye(g * H)
    if mode in ("gru", "gru_reset_before"):
        bias = np.zeros((2, g * H)) if mode == "gru" else np.zeros(g * H)
        if rb is not None:
            bias[1] = rb
        cell = ref.gru_cell(k, r, bias, reset_after=mode == "gru", recurrent_masks=rm)
    elif mode == "lstm":
        cell = ref.lstm_cell(k, r, np.zeros(g * H), recurrent_masks=rm)
    else:
        cell = ref.simple_rnn_cell(
            k, r, np.zeros(H), activation=mode[4:], recurrent_mask=None if rm is None else rm[0]
        )
    cell = ref.zoneout(cell, RATE, zm)
    states = [h0, c0] if mode == "lstm" else [h0]
    y, _, st = ref.rnn(cell, gx, states, lengths=lengths, zero_output_for_mask=True)
    return y, st[0], st[1] if mode == "lstm" else None


def _run(mode, gx, r, rb, h0, c0, rm, zm, lengths=None, time_major=False, dtype=np.float64, **kw):
    cast = lambda a: None if a is None else np.asarray(a, dtype)  # noqa: E731
    if time_major:
        gx = np.swapaxes(gx, 0, 1)
    y, h, c, _ = tf_rnn_ops.keras_rnn_dropout(
        cast(gx), cast(h0), cast(c0) if mode == "lstm" else None, cast(r),
        None if rm is None else cast(np.stack(rm)), cast(rb), sequence_lengths=lengths,
        rnn_mode=mode, time_major=time_major, zoneout_mask=cast(zm), **kw,
    )  # fmt: skip
    y = np.asarray(y)
    return (np.swapaxes(y, 0, 1) if time_major else y), np.asarray(h), np.asarray(c)


def _check(got, want, mode, tol):
    for a, b in zip(got[: 3 if mode == "lstm" else 2], want, strict=False):
        np.testing.assert_allclose(a, b, **tol)


SIZES = [(1, 1, 1), (3, 4, 3), (2, 3, 257), (13, 3, 5)]  # (B, T, H)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("dropout", [False, True], ids=["zoneout", "zoneout+dropout"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "B{}T{}H{}".format(*s))
def test_forward_matches_reference(rng, mode, size, dropout, dtype):
    B, T, H = size
    gx, r, rb, h0, c0, rm, zm = _problem(rng, mode, B, T, H, dropout=dropout)
    want = _reference(mode, gx, r, rb, h0, c0, rm, zm)
    for training in (True, False):  # the op's is_training changes the reserve, not the math
        got = _run(mode, gx, r, rb, h0, c0, rm, zm, dtype=dtype, is_training=training)
        _check(got, want, mode, TOL[dtype])
    # inference: the scalar keep weight 1 - p
    want = _reference(mode, gx, r, rb, h0, c0, rm, None)
    got = _run(mode, gx, r, rb, h0, c0, rm, np.array(1 - RATE), dtype=dtype, is_training=False)
    _check(got, want, mode, TOL[dtype])


@pytest.mark.parametrize("mode", MODES)
def test_zoneout_changes_the_result(rng, mode):
    """The mask is read: all-ones is no zoneout (the plain op), all-zeros keeps h0 everywhere."""
    B, T, H = 3, 4, 5
    gx, r, rb, h0, c0, rm, _ = _problem(rng, mode, B, T, H)
    plain = _run(mode, gx, r, rb, h0, c0, rm, None)
    ones = _run(mode, gx, r, rb, h0, c0, rm, np.ones((T, B, H)))
    _check(ones, plain, mode, dict(rtol=1e-14, atol=1e-14))  # h + 1 · (h~ - h): rounding
    y, h, _ = _run(mode, gx, r, rb, h0, c0, rm, np.zeros((T, B, H)))
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(y, np.broadcast_to(h0[:, None], y.shape))


@pytest.mark.parametrize("mode", MODES)
def test_lengths_layouts_and_no_bias(rng, mode):
    B, T, H = 14, 5, 4
    lengths = random_lengths(rng, B, T)
    for time_major in (False, True):
        for use_bias, dropout in ((True, False), (False, True)):
            gx, r, rb, h0, c0, rm, zm = _problem(rng, mode, B, T, H, use_bias, dropout)
            got = _run(mode, gx, r, rb, h0, c0, rm, zm, lengths, time_major)
            want = _reference(mode, gx, r, rb, h0, c0, rm, zm, lengths)
            _check(got, want, mode, TOL[np.float64])


@pytest.mark.parametrize("mode", ["gru", "lstm"])
def test_empty_batch_and_no_steps(rng, mode):
    for B, T in ((0, 4), (3, 0)):
        gx, r, rb, h0, c0, rm, zm = _problem(rng, mode, B, T, 3)
        y, h, c = _run(mode, gx, r, rb, h0, c0, rm, zm)
        assert y.shape == (B, T, 3) and h.shape == (B, 3)
        np.testing.assert_array_equal(h, h0)  # no step: the states pass through
        if mode == "lstm":
            np.testing.assert_array_equal(c, c0)


@pytest.mark.parametrize("dropout", [False, True], ids=["zoneout", "zoneout+dropout"])
@pytest.mark.parametrize("mode", MODES)
def test_gradient_matches_numeric(rng, mode, dropout):
    B, T, H = 3, 4, 3
    gx, r, rb, h0, c0, rm, zm = _problem(rng, mode, B, T, H, dropout=dropout)
    lengths = np.array([4, 2, 3], np.int32)
    wy, wh, wc = rng.normal(size=(B, T, H)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    lstm, gru = mode == "lstm", mode == "gru"
    masks = None if rm is None else tf.constant(np.stack(rm))

    for zoneout in (tf.constant(zm), tf.constant(1 - RATE, tf.float64)):

        def loss(gx, h0, c0, r, rb, zoneout=zoneout):
            y, h, c, _ = tf_rnn_ops.keras_rnn_dropout(
                gx, h0, c0 if lstm else None, r, masks, rb if gru else None,
                sequence_lengths=lengths, rnn_mode=mode, zoneout_mask=zoneout,
            )  # fmt: skip
            out = tf.reduce_sum(y * wy) + tf.reduce_sum(h * wh)
            return out + tf.reduce_sum(c * wc) if lstm else out

        args = [tf.constant(a) for a in (gx, h0, c0, r, rb if gru else np.zeros(3))]
        theoretical, numerical = tf.test.compute_gradient(loss, args, delta=1e-6)
        for i, (t, n) in enumerate(zip(theoretical, numerical, strict=True)):
            np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6, err_msg=f"input {i}")
            if i < 2:
                assert np.abs(t).sum() > 0


def _good(B=2, T=3, H=4, mode="lstm"):
    g = GATES[mode]
    return dict(
        projected_input=np.zeros((B, T, g * H), np.float32),
        input_h=np.zeros((B, H), np.float32),
        input_c=np.zeros((B, H), np.float32),
        recurrent_kernel=np.zeros((H, g * H), np.float32),
        recurrent_masks=None,
        zoneout_mask=np.ones((T, B, H), np.float32),
    )


BAD = [
    (dict(zoneout_mask=np.ones((2, 3, 4), np.float32)), "zoneout_mask"),  # batch-major
    (dict(zoneout_mask=np.ones((3, 2, 5), np.float32)), "zoneout_mask"),
    (dict(zoneout_mask=np.ones((3, 2), np.float32)), "zoneout_mask"),
    (dict(zoneout_mask=np.ones((1,), np.float32)), "zoneout_mask"),
    (dict(zoneout_mask=np.ones((1, 3, 2, 4), np.float32)), "zoneout_mask"),
    (dict(recurrent_masks=np.ones((3, 2, 4), np.float32)), "recurrent_masks"),
    (dict(recurrent_masks=np.ones((4, 2), np.float32)), "recurrent_masks"),
]


@pytest.mark.parametrize("change,match", BAD)
def test_bad_input_is_refused(change, match):
    args = _good()
    args.update(change)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=match):
        tf_rnn_ops.keras_rnn_dropout(**args, rnn_mode="lstm")


@pytest.mark.parametrize("change,match", BAD)
def test_backprop_op_refuses_bad_input(change, match):
    """The backward op checks the same inputs (its own call, not only through the gradient)."""
    args = _good()
    y, hn, cn, reserve = tf_rnn_ops.keras_rnn_dropout(**args, rnn_mode="lstm")
    args.update(change)
    bp_args = {k: tf.zeros([0]) if v is None else tf.constant(v) for k, v in args.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        _ops().tf_rnn_keras_rnn_dropout_backprop(
            **bp_args, recurrent_bias=tf.zeros([0]), sequence_lengths=tf.zeros([0], tf.int32),
            output=y, output_h=hn, output_c=cn, output_backprop=tf.zeros_like(y),
            output_h_backprop=tf.zeros_like(hn), output_c_backprop=tf.zeros_like(cn),
            reserve_space=reserve, rnn_mode="lstm",
        )  # fmt: skip


@pytest.mark.parametrize(
    "threads,rounds,shape",
    [
        (8, 3, "37:12:3:16"),
        pytest.param(2, 4, "37:12:3:16", marks=pytest.mark.slow),
        (2, 2, "5:60:16:384"),
    ],
)
def test_row_ranges_on_threads(threads, rounds, shape):
    """float32, B = 37, and B = 5 in calls past 64 MFLOP (ranges of 2 and 3 rows, RnnRowsApart):
    the driver's row ranges (a thread's rows through a chunk of steps, no barrier) with zoneout,
    against Keras' cells in float64 with the same masks (zoneout_row_range_program.py, in a
    subprocess: the pool's size is fixed at start)."""
    done = row_range.run_program("zoneout_row_range_program.py", threads, 5, rounds, shape)
    assert row_range.passed(done), done.stdout + done.stderr


GRAD_SIZES = [(1, 1, 257), (3, 1, 4), (4, 8, 17), (3, 11, 9), (13, 3, 5), (13, 6, 5)]  # (B, T, H)


@pytest.mark.parametrize("dropout", [False, True], ids=["zoneout", "zoneout+dropout"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", GRAD_SIZES, ids=lambda s: "B{}T{}H{}".format(*s))
def test_float32_gradient_matches_reference(rng, mode, size, dropout):
    """Zoneout, alone or with recurrent dropout, in float32 (the Keras-layout backward of every
    cell: plain, per-product or masked products, R read in place), both layouts, lengths: every
    gradient against float64 autodiff of the TF-ops formulation
    (`_reference_rnn.keras_rnn_dropout_forward`, not the kernels), at sizes on the streamed
    (<= 8 rows), float-sum (<= 64 rows: two runs of 32) and double-sum paths."""
    from tf_rnn_ops import _reference_rnn

    B, T, H = size
    time_major = B % 2 == 1
    gx, r, rb, h0, c0, rm, zm = _problem(rng, mode, B, T, H, dropout=dropout)
    masks = None if rm is None else np.stack(rm)
    if time_major:
        gx = np.swapaxes(gx, 0, 1)
    lengths = random_lengths(rng, B, T) if B > 1 else None
    lstm, gru = mode == "lstm", mode == "gru"
    y_shape = (T, B, H) if time_major else (B, T, H)
    wy, wh, wc = (rng.normal(size=s) for s in (y_shape, (B, H), (B, H)))
    rb = rb if gru else np.zeros([0])

    def grads(dtype, fn):
        args = [tf.constant(np.asarray(a, dtype)) for a in (gx, h0, c0, r, rb)]
        with tf.GradientTape() as tape:
            tape.watch(args)
            y, h, c = fn(*args)[:3]
            loss = tf.reduce_sum(y * wy.astype(dtype)) + tf.reduce_sum(h * wh.astype(dtype))
            if lstm:
                loss += tf.reduce_sum(c * wc.astype(dtype))
        return tape.gradient(loss, args, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def ours(gx, h0, c0, r, rb):
        return tf_rnn_ops.keras_rnn_dropout(
            gx, h0, c0 if lstm else None, r, None if masks is None else masks.astype(np.float32),
            rb if gru else None, sequence_lengths=lengths, rnn_mode=mode, time_major=time_major,
            zoneout_mask=zm.astype(np.float32),
        )  # fmt: skip

    def reference(gx, h0, c0, r, rb):
        return _reference_rnn.keras_rnn_dropout_forward(
            gx, h0, c0 if lstm else None, r, rb if gru else None, lengths,
            None if masks is None else tf.constant(masks), tf.constant(zm), rnn_mode=mode,
            time_major=time_major,
        )  # fmt: skip

    got, want = grads(np.float32, ours), grads(np.float64, reference)
    for i, name in enumerate(("projected_input", "input_h", "input_c", "recurrent_kernel", "bias")):
        if (name == "input_c" and not lstm) or (name == "bias" and not gru):
            continue
        scale = max(1.0, float(np.max(np.abs(want[i]))))
        np.testing.assert_allclose(got[i], want[i], rtol=1e-4, atol=2e-5 * scale, err_msg=name)
