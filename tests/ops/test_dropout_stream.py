"""Dropout masks advance from call to call (as TensorFlow's GPU kernels keep a dropout state that
advances), and a kernel created afresh with the same seeds replays the same sequence: through our
op and TensorFlow's CudnnRNN ops served by our CPU kernels, eagerly and in tf.function; each call's
masks have the right rate and scale, and the backprop uses the masks of its own forward call."""

from __future__ import annotations

import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf
from dropout_identity import B, H, T, identity_problem, read_mask
from tensorflow.python.eager import context

import tf_rnn_ops


def _call(op, kw, rate, seed, seed2):
    if op == "ours":
        return tf_rnn_ops.cudnn_rnn(**kw, dropout=rate, seed=seed, seed2=seed2)
    if op == "CudnnRNNV3":
        lengths = tf.fill([B], T)
        return tf.raw_ops.CudnnRNNV3(**kw, sequence_lengths=lengths, dropout=rate, seed=seed,
                                     seed2=seed2)  # fmt: skip
    return tf.raw_ops.CudnnRNN(**kw, dropout=rate, seed=seed, seed2=seed2)


@pytest.mark.parametrize("op", ["ours", "CudnnRNNV3", "CudnnRNN"])
@pytest.mark.parametrize("rate", [0.3, 0.6])
def test_masks_advance_and_a_fresh_kernel_replays(rng, op, rate):
    kw, out0, _ = identity_problem(rng)
    context.context().clear_kernel_cache()
    first = [read_mask(_call(op, kw, rate, 7, 8)[0].numpy(), out0, rate) for _ in range(3)]
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    # about rate² of the elements dropped in both calls: independent masks
    both = np.mean(~first[0] & ~first[1])
    assert abs(both - rate * rate) < 0.03
    context.context().clear_kernel_cache()  # a new kernel, the same seeds: the same sequence
    again = [read_mask(_call(op, kw, rate, 7, 8)[0].numpy(), out0, rate) for _ in range(3)]
    for a, b in zip(first, again, strict=False):
        np.testing.assert_array_equal(a, b)
    # other seeds, another sequence
    other = read_mask(_call(op, kw, rate, 7, 9)[0].numpy(), out0, rate)
    assert not np.array_equal(other, first[0])


def test_tf_function_draws_fresh_masks_every_step(rng):
    """A traced training step draws new masks at every call; a new function replays them."""
    kw, out0, _ = identity_problem(rng)
    tensors = {k: v for k, v in kw.items() if isinstance(v, tf.Tensor)}
    attrs = {k: v for k, v in kw.items() if not isinstance(v, tf.Tensor)}

    def make():
        return tf.function(lambda t: tf_rnn_ops.cudnn_rnn(**t, **attrs, dropout=0.5, seed=1)[0])

    f = make()
    seq = [read_mask(f(tensors).numpy(), out0, 0.5) for _ in range(3)]
    assert not np.array_equal(seq[0], seq[1]) and not np.array_equal(seq[1], seq[2])
    g = make()
    for m in seq:
        np.testing.assert_array_equal(read_mask(g(tensors).numpy(), out0, 0.5), m)


@pytest.mark.parametrize("op", ["ours", "CudnnRNNV3"])
def test_backprop_uses_its_own_calls_masks(rng, op):
    """The gradient of the second call equals the float64 reference's with that call's masks."""
    kw, out0, (x, h0, w, b) = identity_problem(rng)
    rate = 0.4
    context.context().clear_kernel_cache()
    _call(op, kw, rate, 3, 4)  # call 0
    cot = rng.normal(size=(T, B, H))
    with tf.GradientTape() as tape:
        tape.watch(kw["input"])
        out = _call(op, kw, rate, 3, 4)[0]  # call 1
        loss = tf.reduce_sum(out * cot)
    got = tape.gradient(loss, kw["input"]).numpy()
    mask = read_mask(out.numpy(), out0, rate) / (1.0 - float(np.float32(rate)))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        ref_out = ref.rnn_forward(xt, tf.constant(h0), None, [tf.constant(a) for a in w],
                                  [tf.constant(a) for a in b], mode="rnn_relu",
                                  dropout_masks=[mask], backend=ref.TF)[0]  # fmt: skip
        ref_loss = tf.reduce_sum(ref_out * cot)
    np.testing.assert_allclose(ref_out.numpy(), out.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got, tape.gradient(ref_loss, xt).numpy(), rtol=1e-10, atol=1e-12)
