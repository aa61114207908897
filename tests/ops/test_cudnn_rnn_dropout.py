"""Dropout and is_training (docs/MATH.md, "Dropout"): dropout between layers only, in training only,
with inverted scaling; deterministic for the same seeds; the backprop op reuses the forward's masks;
is_training=False computes the same forward and refuses a gradient."""

from __future__ import annotations

import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf
from dropout_identity import B, T, identity_problem, read_mask
from tensorflow.python.eager import context

import tf_rnn_ops

TOL = dict(rtol=1e-9, atol=1e-10)


def _run(p, **kw):
    return tf_rnn_ops.cudnn_rnn(**p.op_kwargs(**kw))


def _check_equals_reference(p, res):
    out, h, c = p.reference()
    np.testing.assert_allclose(res[0].numpy(), out, **TOL)
    np.testing.assert_allclose(res[1].numpy(), h, **TOL)
    if p.is_lstm:
        np.testing.assert_allclose(res[2].numpy(), c, **TOL)


@pytest.mark.parametrize("mode", ref.MODES)
def test_inference_ignores_dropout(rng, mode):
    p = ref.Problem(rng, mode, 3, 3, 2, batch=3, steps=4, direction="bidirectional")
    _check_equals_reference(p, _run(p, is_training=False, dropout=0.5, seed=3, seed2=4))


@pytest.mark.parametrize("mode", ref.MODES)
def test_single_layer_has_nothing_to_drop(rng, mode):
    """Dropout applies to each layer's output except the last: one layer is unaffected."""
    p = ref.Problem(rng, mode, 1, 3, 2, batch=3, steps=4, direction="bidirectional")
    _check_equals_reference(p, _run(p, is_training=True, dropout=0.5, seed=3, seed2=4))


@pytest.mark.parametrize("mode", ref.MODES)
def test_training_dropout_deterministic_and_seeded(rng, mode):
    """A new kernel with the same seeds draws the same masks (each kernel's masks then advance
    from call to call: tests/ops/test_dropout_stream.py)."""
    p = ref.Problem(rng, mode, 3, 4, 2, batch=4, steps=5, direction="bidirectional", lengths="full")
    context.context().clear_kernel_cache()
    a = _run(p, is_training=True, dropout=0.5, seed=1, seed2=2)
    context.context().clear_kernel_cache()
    b = _run(p, is_training=True, dropout=0.5, seed=1, seed2=2)
    for k in range(3):
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=f"output {k}")
    c = _run(p, is_training=True, dropout=0.5, seed=5, seed2=2)
    d = _run(p, is_training=True, dropout=0.5, seed=1, seed2=9)
    assert not np.array_equal(a[0].numpy(), c[0].numpy()), "seed does not change the masks"
    assert not np.array_equal(a[0].numpy(), d[0].numpy()), "seed2 does not change the masks"
    # it does drop something: training differs from inference
    e = _run(p, is_training=False, dropout=0.5, seed=1, seed2=2)
    assert not np.allclose(a[0].numpy(), e[0].numpy())
    # layer 0's final states do not see any dropout (it acts on layer outputs fed to the next layer)
    _, h, c0 = p.reference()
    np.testing.assert_allclose(a[1].numpy()[:2], h[:2], **TOL)
    if p.is_lstm:
        np.testing.assert_allclose(a[2].numpy()[:2], c0[:2], **TOL)


@pytest.mark.parametrize("rate", [0.3, 0.75])
def test_dropout_masks_are_inverted_bernoulli(rng, rate):
    """rnn_relu with positive layer-0 outputs and an identity layer 1 (W = I, R = 0, b = 0): layer
    1's output is mask ∘ layer-0 output, so mask = out1/out0 must be 0 or 1/(1−p), 0 with rate ≈
    p."""
    kw, out0, _ = identity_problem(rng)
    out1 = tf_rnn_ops.cudnn_rnn(**kw, sequence_lengths=tf.fill([B], T), dropout=rate, seed=11,
                                seed2=12)[0].numpy()  # fmt: skip
    read_mask(out1, out0, rate)


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("which", ["input", "input_h", "params"])
def test_dropout_gradient_matches_numerical(rng, mode, which):
    """With the same seeds a new kernel's first training forward is deterministic (each call below
    runs on a new kernel), so finite differences of it are valid; the backprop op must use the
    forward's masks."""
    p = ref.Problem(rng, mode, 2, 3, 2, batch=2, steps=3, direction="bidirectional",
                    lengths=[3, 2])  # fmt: skip
    kw = p.op_kwargs(is_training=True, dropout=0.4, seed=7, seed2=11)

    def f(t):
        args = dict(kw)
        args[which] = t
        context.context().clear_kernel_cache()
        out, h, c, _, _ = tf_rnn_ops.cudnn_rnn(**args)
        parts = [tf.reshape(out, [-1]), tf.reshape(h, [-1])]
        if p.is_lstm:
            parts.append(tf.reshape(c, [-1]))
        return tf.concat(parts, 0)

    # the masks really are on: the forward differs from the dropout-free one
    assert not np.allclose(f(kw[which]).numpy()[: p.reference()[0].size], p.reference()[0].ravel())
    theo, num = tf.test.compute_gradient(f, [kw[which]], delta=1e-6)
    np.testing.assert_allclose(theo[0], num[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("direction", ref.DIRECTIONS)
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_inference_forward_equals_training_forward(rng, mode, direction, time_major):
    p = ref.Problem(rng, mode, 2, 3, 2, batch=3, steps=4, direction=direction,
                    time_major=time_major)  # fmt: skip
    a = _run(p, is_training=True)
    b = _run(p, is_training=False)
    for k in range(3 if p.is_lstm else 2):
        np.testing.assert_allclose(b[k].numpy(), a[k].numpy(), rtol=1e-13, atol=1e-14)
    a32 = tf_rnn_ops.cudnn_rnn(**p.op_kwargs(tf.float32, is_training=True))
    b32 = tf_rnn_ops.cudnn_rnn(**p.op_kwargs(tf.float32, is_training=False))
    np.testing.assert_allclose(b32[0].numpy(), a32[0].numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_gradient_without_is_training_raises(rng, mode):
    p = ref.Problem(rng, mode, 1, 3, 2, batch=2, steps=3)
    kw = p.op_kwargs(is_training=False)
    with pytest.raises(Exception, match="is_training") as info:
        with tf.GradientTape() as tape:
            tape.watch(kw["input"])
            out = tf_rnn_ops.cudnn_rnn(**kw)[0]
        tape.gradient(out, kw["input"])
    assert not isinstance(info.value, AssertionError | SystemError)


def test_gradient_without_is_training_raises_in_graph(rng):
    p = ref.Problem(rng, "gru", 1, 3, 2, batch=2, steps=3)
    kw = p.op_kwargs(is_training=False)
    x = kw.pop("input")

    @tf.function
    def f(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = tf_rnn_ops.cudnn_rnn(input=x, **kw)[0]
        return tape.gradient(out, x)

    with pytest.raises(Exception, match="is_training"):
        f(x)
