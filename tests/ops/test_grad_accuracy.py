"""float32 weight and bias gradients at least as accurate as TensorFlow's own float32 math.

The fused backward sums the weight and bias gradients over all T·B rows of a layer; TensorFlow's
float32 formulation of the same cells (per-step matmuls, the tape summing the steps) sums B rows a
step in float, then the T steps. Both are measured against the float64 reference (the same math in
float64), array by array, at TensorFlow's own "large" training sizes (T = 32, B = 16, 128 units,
time-major, one layer; the tolerance of its test, rtol = atol = 3e-6) and at T·B up to 64k rows: our
largest error must not exceed TensorFlow's. Through our op and TensorFlow's CudnnRNNV3 (served by
the same CPU kernel), and through the drop-in layers' op (`keras_rnn`, whose calls of few rows sum
in float straight into the Keras-layout outputs).
"""

from __future__ import annotations

import keras_convert
import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf

import tf_rnn_ops


def _tf_math_grads(p, d_out, d_h, d_c, dtype):
    """Gradients (params as canonical arrays, then dx) of the reference cells written in TF ops
    and run in `dtype`: TensorFlow's own math for the same cells."""
    cast = lambda a: tf.constant(np.asarray(a), dtype)  # noqa: E731
    x, h0 = cast(p.x), cast(p.h0)
    c0 = cast(p.c0) if p.is_lstm else None
    ws, bs = [cast(w) for w in p.weights], [cast(b) for b in p.biases]
    srcs = ws + bs + [x]
    with tf.GradientTape() as tape:
        tape.watch(srcs)
        out, h, c = ref.rnn_forward(x, h0, c0, ws, bs, mode=p.mode, time_major=p.time_major,
                                    backend=ref.TF)  # fmt: skip
        loss = tf.reduce_sum(out * cast(d_out)) + tf.reduce_sum(h * cast(d_h))
        if p.is_lstm:
            loss += tf.reduce_sum(c * cast(d_c))
    return [g.numpy().astype(np.float64) for g in tape.gradient(loss, srcs)]


def _op_grads(p, d_out, d_h, d_c, op):
    """The same gradients through the fused op in float32 (params split into canonical arrays)."""
    kw = p.op_kwargs(tf.float32, is_training=True)
    kw.pop("sequence_lengths")
    if op == "CudnnRNNV3":
        kw["sequence_lengths"] = tf.fill([p.batch], p.steps)
    srcs = [kw["params"], kw["input"]]
    with tf.GradientTape() as tape:
        tape.watch(srcs)
        fn = tf_rnn_ops.cudnn_rnn if op == "ours" else tf.raw_ops.CudnnRNNV3
        out, h, c = fn(**kw)[:3]
        loss = tf.reduce_sum(out * tf.constant(d_out, tf.float32))
        loss += tf.reduce_sum(h * tf.constant(d_h, tf.float32))
        if p.is_lstm:
            loss += tf.reduce_sum(c * tf.constant(d_c, tf.float32))
    dparams, dx = (g.numpy().astype(np.float64) for g in tape.gradient(loss, srcs))
    ws, bs = ref.opaque_to_canonical(dparams, *p.layout_args)
    return list(ws) + list(bs) + [dx]


def _f32(a):
    """a rounded to float32 (kept in float64): the inputs every variant sees exactly."""
    return np.asarray(a, np.float32).astype(np.float64)


def _tf_test_problem(rng, mode, steps, batch, units, input_size, recurrent=True):
    """As TensorFlow's training tests: params, input and initial states uniform and non-negative,
    the loss the sum of all outputs, so that the gradient sums run over same-signed terms (where a
    long float sum loses most); the weights scaled by 2 / (I + H) so that the gates do not
    saturate. Without `recurrent`, R = 0: every step's gate gradients are then exact (rnn_relu:
    the output's), and the weight and bias gradients' error is their sums' alone."""
    p = ref.Problem(rng, mode, 1, units, input_size, batch=batch, steps=steps, lengths="full")
    scale = 2.0 / (input_size + units)
    n_w = len(p.weights)
    p.weights = [_f32(rng.uniform(0, scale, w.shape)) for w in p.weights]
    if not recurrent:
        for k in range(n_w // 2, n_w):  # [W..., R...] per the canonical order of one layer
            p.weights[k] = np.zeros_like(p.weights[k])
    p.biases = [_f32(rng.uniform(0, 0.5, b.shape)) for b in p.biases]
    p.params = ref.canonical_to_opaque(p.weights, p.biases, *p.layout_args)
    p.x, p.h0, p.c0 = (_f32(rng.uniform(0, 1, a.shape)) for a in (p.x, p.h0, p.c0))
    return p


def _compare(
    rng, mode, steps, batch, units, input_size, ops=("ours",), recurrent=True, tf_tolerance=False
):
    """Asserts, per weight and bias gradient array, that ours is (with `tf_tolerance`) within
    TensorFlow's test tolerance (rtol = atol = 3e-6) of the float64 math and no less accurate than
    TensorFlow's float32 math:
    in each array's largest error where the sums alone decide it (`recurrent` False); else (the
    cells' own float32 rounding, through T steps, adds an error of about the same size to either,
    which decides the largest error of the arrays with small gradients) in the RMS error over all of
    them (the previous build's was 1.2-6x TensorFlow's per array at T = 32, B = 16)."""
    p = _tf_test_problem(rng, mode, steps, batch, units, input_size, recurrent)
    out, h, c = p.reference()
    d_out = _f32(rng.uniform(0, 1, out.shape))
    d_h, d_c = np.ones_like(h), (np.ones_like(c) if c is not None else None)
    want = _tf_math_grads(p, d_out, d_h, d_c, tf.float64)
    tf32 = _tf_math_grads(p, d_out, d_h, d_c, tf.float32)
    names = [f"w{i}" for i in range(len(p.weights))] + [f"b{i}" for i in range(len(p.biases))]
    for op in ops:
        got = _op_grads(p, d_out, d_h, d_c, op)
        report, sq_ours, sq_tf = [], 0.0, 0.0
        for name, g, t, w in zip(names, got, tf32, want, strict=False):  # (dx last: not compared)
            ours, theirs = np.max(np.abs(g - w)), np.max(np.abs(t - w))
            sq_ours, sq_tf = sq_ours + np.sum((g - w) ** 2), sq_tf + np.sum((t - w) ** 2)
            report.append(f"{op} {name}: largest error ours {ours:.3g}, TensorFlow float32 "
                          f"{theirs:.3g} (largest |gradient| {np.max(np.abs(w)):.3g})")  # fmt: skip
            if tf_tolerance:
                np.testing.assert_allclose(g, w, rtol=3e-6, atol=3e-6, err_msg=report[-1])
            if not recurrent:
                assert ours <= theirs, "\n".join(report)
        print("\n".join(report))
        assert sq_ours <= sq_tf, f"RMS: ours {np.sqrt(sq_ours):.3g}, TF {np.sqrt(sq_tf):.3g}"


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_tf_large_training_case(rng, mode):
    """TensorFlow's "large" training case: T = 32, B = 16, 128 units, time-major, one layer."""
    _compare(rng, mode, 32, 16, 128, 64, ops=("ours", "CudnnRNNV3"), tf_tolerance=True)


@pytest.mark.parametrize("steps,batch", [(32, 16), (64, 64), (1000, 3), (1, 257)])
def test_sums_alone(rng, steps, batch):
    """Where only the sums err (rnn_relu, R = 0: exact gate gradients): at 512 rows of 16 a step,
    4k rows of 64, 3k rows of 3, one step of 257 rows."""
    _compare(rng, "rnn_relu", steps, batch, 32, 24, recurrent=False)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_longer_recurrent_sums(rng, mode):
    """4k rows of 64 a step through the recurrent cells."""
    _compare(rng, mode, 64, 64, 16, 5)


# Keras' kind of each mode's cell, and the canonical biases it has none of (zero here, so that the
# Keras weights compute the reference's cell exactly).
KERAS_KIND = {"gru": ("gru", ()), "gru_reset_before": ("gru_reset_before", (3, 4, 5)),
              "lstm": ("lstm", (0, 1, 2, 3)), "rnn_tanh": ("simple_rnn", (1,))}  # fmt: skip


def _compare_keras(rng, mode, steps, batch, units, input_size):
    """As `_compare` (the RMS error over the arrays, recurrent cells), through `keras_rnn` on the
    same cell's Keras weights (the tests' own mapping, keras_convert), in Keras' layout; printing
    the ratio of the errors."""
    kind, no_bias = KERAS_KIND[mode]
    p = _tf_test_problem(rng, mode, steps, batch, units, input_size)
    for i in no_bias:
        p.biases[i] = np.zeros_like(p.biases[i])
    out, h, c = p.reference()
    d_out = _f32(rng.uniform(0, 1, out.shape))
    d_h, d_c = np.ones_like(h), (np.ones_like(c) if c is not None else None)
    n_w = len(p.weights)

    def keras_layout(grads):  # canonical grads -> [kernel, recurrent_kernel, bias] grads
        return keras_convert.canonical_grads_to_cell(kind, grads[:n_w], grads[n_w:-1])

    want = keras_layout(_tf_math_grads(p, d_out, d_h, d_c, tf.float64))
    tf32 = keras_layout(_tf_math_grads(p, d_out, d_h, d_c, tf.float32))
    # (the same linear map takes the canonical weights to the Keras cell's)
    weights = [tf.constant(w, tf.float32) for w in keras_layout(p.weights + p.biases + [None])]
    h0 = p.h0[0] if p.time_major else p.h0[:, 0]
    c0 = (p.c0[0] if p.time_major else p.c0[:, 0]) if p.is_lstm else None
    with tf.GradientTape() as tape:
        tape.watch(weights)
        y, hn, cn, _ = tf_rnn_ops.keras_rnn(
            tf.constant(p.x, tf.float32), tf.constant(h0, tf.float32),
            None if c0 is None else tf.constant(c0, tf.float32), *weights, rnn_mode=mode,
            time_major=p.time_major,
        )  # fmt: skip
        loss = tf.reduce_sum(y * d_out.astype(np.float32)) + tf.reduce_sum(hn * d_h)
        if p.is_lstm:
            loss += tf.reduce_sum(cn * d_c)
    got = [g.numpy().astype(np.float64) for g in tape.gradient(loss, weights)]
    sq_ours = sum(np.sum((g - w) ** 2) for g, w in zip(got, want, strict=True))
    sq_tf = sum(np.sum((t - w) ** 2) for t, w in zip(tf32, want, strict=True))
    print(f"{mode} T={steps} B={batch}: RMS error ours / TensorFlow float32 "
          f"{np.sqrt(sq_ours / sq_tf):.2f}")  # fmt: skip
    # At so few rows the cells' own float32 rounding decides most of either's error (ours and
    # TensorFlow's round the gates differently): ours within 1.5x TensorFlow's RMS error.
    assert sq_ours <= 1.5**2 * sq_tf, f"RMS: ours {np.sqrt(sq_ours):.3g}, TF {np.sqrt(sq_tf):.3g}"


@pytest.mark.parametrize("mode", sorted(KERAS_KIND))
@pytest.mark.parametrize(
    "steps,batch",
    [(1, 8), (1, 32), (1, 64), (2, 29), (8, 8), (5, 37), (16, 16), (1, 256), (3, 100)],
)
def test_keras_layout_sums(rng, mode, steps, batch):
    """The drop-in layers' gradient at T·B rows where the sums run in float into the outputs
    (WeightGradsInT: as outer products up to 8 rows, then runs of 32 rows on the packed kernel, the
    runs added in float up to 256 rows, as are GRU reset-before's per-product sums) and beyond
    (300 rows, in double)."""
    _compare_keras(rng, mode, steps, batch, 48, 20)


@pytest.mark.slow
@pytest.mark.parametrize("steps,batch", [(256, 256), (4096, 16)])
def test_64k_rows(rng, steps, batch):
    """T·B = 65536 rows, the sums alone and through GRU cells (where, over 4096 steps, the cells'
    float32 rounding leaves TensorFlow's float32 math too outside the 3e-6 of its short case)."""
    _compare(rng, "rnn_relu", steps, batch, 16, 8, recurrent=False)
    _compare(rng, "gru", steps, batch, 8, 3)
