"""Dropout masks advance from call to call (as TensorFlow's GPU kernels keep a dropout state that
advances), and a kernel created afresh with the same seeds replays the same sequence: through our
op and TensorFlow's CudnnRNN ops served by our CPU kernels, eagerly and in tf.function; each call's
masks have the right rate and scale, and the backprop uses the masks of its own forward call."""

from __future__ import annotations

import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf
from tensorflow.python.eager import context

import tf_rnn_ops

H, T, B = 32, 20, 16


def _identity_problem(rng):
    """rnn_relu, 2 layers, positive layer-0 outputs and an identity layer 1 (W = I, R = 0, b = 0):
    layer 1's output is mask * layer-0 output, so each call's mask can be read off its output."""
    w, b = ref.random_canonical(rng, "rnn_relu", 2, H, H)
    w[0], w[1] = np.abs(w[0]) * 0.2, np.abs(w[1]) * 0.05
    b[0], b[1] = np.abs(b[0]) + 0.1, np.abs(b[1])
    w[2], w[3] = np.eye(H), np.zeros([H, H])
    b[2], b[3] = np.zeros(H), np.zeros(H)
    params = ref.canonical_to_opaque(w, b, "rnn_relu", 2, H, H)
    x = rng.uniform(0.1, 1, (T, B, H))
    h0 = np.stack([rng.uniform(0, 1, (B, H)), np.zeros((B, H))])
    out0 = ref.rnn_forward(x, h0[:1], None, w[:2], b[:2], mode="rnn_relu")[0]
    assert np.all(out0 > 0)
    kw = dict(
        input=tf.constant(x), input_h=tf.constant(h0), input_c=tf.constant(h0),
        params=tf.constant(params), rnn_mode="rnn_relu", input_mode="linear_input",
        is_training=True,
    )  # fmt: skip
    return kw, out0, (x, h0, w, b)


def _call(op, kw, rate, seed, seed2):
    if op == "ours":
        return tf_rnn_ops.cudnn_rnn(**kw, dropout=rate, seed=seed, seed2=seed2)
    if op == "CudnnRNNV3":
        lengths = tf.fill([B], T)
        return tf.raw_ops.CudnnRNNV3(**kw, sequence_lengths=lengths, dropout=rate, seed=seed,
                                     seed2=seed2)  # fmt: skip
    return tf.raw_ops.CudnnRNN(**kw, dropout=rate, seed=seed, seed2=seed2)


def _mask(out1, out0, rate):
    mask = out1 / out0
    kept = mask > 0
    np.testing.assert_allclose(mask[kept], 1.0 / (1.0 - float(np.float32(rate))), rtol=1e-12)
    frac = 1.0 - kept.mean()
    assert abs(frac - rate) < 0.03, f"dropped fraction {frac:.3f} for rate {rate}"
    return kept


@pytest.mark.parametrize("op", ["ours", "CudnnRNNV3", "CudnnRNN"])
@pytest.mark.parametrize("rate", [0.3, 0.6])
def test_masks_advance_and_a_fresh_kernel_replays(rng, op, rate):
    kw, out0, _ = _identity_problem(rng)
    context.context().clear_kernel_cache()
    first = [_mask(_call(op, kw, rate, 7, 8)[0].numpy(), out0, rate) for _ in range(3)]
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    # about rate² of the elements dropped in both calls: independent masks
    both = np.mean(~first[0] & ~first[1])
    assert abs(both - rate * rate) < 0.03
    context.context().clear_kernel_cache()  # a new kernel, the same seeds: the same sequence
    again = [_mask(_call(op, kw, rate, 7, 8)[0].numpy(), out0, rate) for _ in range(3)]
    for a, b in zip(first, again, strict=False):
        np.testing.assert_array_equal(a, b)
    # other seeds, another sequence
    other = _mask(_call(op, kw, rate, 7, 9)[0].numpy(), out0, rate)
    assert not np.array_equal(other, first[0])


def test_tf_function_draws_fresh_masks_every_step(rng):
    """A traced training step draws new masks at every call; a new function replays them."""
    kw, out0, _ = _identity_problem(rng)
    tensors = {k: v for k, v in kw.items() if isinstance(v, tf.Tensor)}
    attrs = {k: v for k, v in kw.items() if not isinstance(v, tf.Tensor)}

    def make():
        return tf.function(lambda t: tf_rnn_ops.cudnn_rnn(**t, **attrs, dropout=0.5, seed=1)[0])

    f = make()
    seq = [_mask(f(tensors).numpy(), out0, 0.5) for _ in range(3)]
    assert not np.array_equal(seq[0], seq[1]) and not np.array_equal(seq[1], seq[2])
    g = make()
    for m in seq:
        np.testing.assert_array_equal(_mask(g(tensors).numpy(), out0, 0.5), m)


@pytest.mark.parametrize("op", ["ours", "CudnnRNNV3"])
def test_backprop_uses_its_own_calls_masks(rng, op):
    """The gradient of the second call equals the float64 reference's with that call's masks."""
    kw, out0, (x, h0, w, b) = _identity_problem(rng)
    rate = 0.4
    context.context().clear_kernel_cache()
    _call(op, kw, rate, 3, 4)  # call 0
    cot = rng.normal(size=(T, B, H))
    with tf.GradientTape() as tape:
        tape.watch(kw["input"])
        out = _call(op, kw, rate, 3, 4)[0]  # call 1
        loss = tf.reduce_sum(out * cot)
    got = tape.gradient(loss, kw["input"]).numpy()
    mask = _mask(out.numpy(), out0, rate) / (1.0 - float(np.float32(rate)))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        ref_out = ref.rnn_forward(xt, tf.constant(h0), None, [tf.constant(a) for a in w],
                                  [tf.constant(a) for a in b], mode="rnn_relu",
                                  dropout_masks=[mask], backend=ref.TF)[0]  # fmt: skip
        ref_loss = tf.reduce_sum(ref_out * cot)
    np.testing.assert_allclose(ref_out.numpy(), out.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got, tape.gradient(ref_loss, xt).numpy(), rtol=1e-10, atol=1e-12)
