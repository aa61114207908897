"""The registered gradient of TfRnn>GRUBlockCell: numerically (float64) for losses on each of the
four outputs and on combinations, eagerly, in tf.function and with tf.gradients; against
autodiff of a plain TensorFlow implementation; 16-bit and empty inputs; re-registration."""

from __future__ import annotations

import importlib
import os
import secrets
import sys

import numpy as np
import pytest
import tensorflow as tf

import tf_rnn_ops
from tf_rnn_ops import gru_block_cell

INPUTS = ("x", "h_prev", "w_ru", "w_c", "b_ru", "b_c")
OUTPUTS = ("r", "u", "c", "h")
LOSSES = {
    "r": ("r",),
    "u": ("u",),
    "c": ("c",),
    "h": ("h",),
    "all": OUTPUTS,
    "r+u": ("r", "u"),
    "c+h": ("c", "h"),
    "r+c": ("r", "c"),
}


@pytest.fixture
def fresh_rng() -> np.random.Generator:
    """Fresh random data on every run; the seed is printed (shown on failure) and can be forced
    with TF_RNN_OPS_TEST_SEED."""
    seed = int(os.environ.get("TF_RNN_OPS_TEST_SEED") or secrets.randbits(32))
    print(f"random seed {seed} (reproduce with TF_RNN_OPS_TEST_SEED={seed})")
    return np.random.default_rng(seed)


def make_inputs(rng, batch, input_size, cell, dtype=np.float64):
    scale = 1.5 / np.sqrt(max(input_size + cell, 1))
    arrays = [
        rng.standard_normal((batch, input_size)),
        rng.uniform(-1, 1, (batch, cell)),
        rng.standard_normal((input_size + cell, 2 * cell)) * scale,
        rng.standard_normal((input_size + cell, cell)) * scale,
        rng.standard_normal(2 * cell) * 0.5,
        rng.standard_normal(cell) * 0.5,
    ]
    return [tf.constant(a.astype(dtype)) for a in arrays]


def make_loss(rng, outputs, batch, cell, dtype=np.float64):
    """A random linear functional of the selected outputs."""
    weights = {k: tf.constant(rng.standard_normal((batch, cell)).astype(dtype)) for k in outputs}

    def loss(outs):
        outs = dict(zip(OUTPUTS, outs, strict=True))
        return tf.add_n([tf.reduce_sum(outs[k] * w) for k, w in weights.items()])

    return loss


def plain_tf_cell(x, h_prev, w_ru, w_c, b_ru, b_c):
    """docs/MATH.md, "GRU block cell", in plain TensorFlow ops (differentiated by TensorFlow's own
    gradients)."""
    cell = tf.shape(h_prev)[1]
    ru_bar = tf.matmul(tf.concat([x, h_prev], 1), w_ru) + b_ru
    r, u = tf.sigmoid(ru_bar[:, :cell]), tf.sigmoid(ru_bar[:, cell:])
    c = tf.tanh(tf.matmul(tf.concat([x, h_prev * r], 1), w_c) + b_c)
    return r, u, c, u * h_prev + (1 - u) * c


@pytest.mark.parametrize(
    "mode,loss_on", [("eager", loss) for loss in LOSSES] + [("function", "all"), ("function", "u")]
)
def test_gradient_matches_numeric_float64(fresh_rng, mode, loss_on):
    batch, input_size, cell = 3, 4, 5
    inputs = make_inputs(fresh_rng, batch, input_size, cell)
    loss = make_loss(fresh_rng, LOSSES[loss_on], batch, cell)

    def f(*args):
        return loss(gru_block_cell(*args))

    if mode == "function":
        f = tf.function(f)
    theoretical, numerical = tf.test.compute_gradient(f, inputs, delta=1e-6)
    for name, t, n in zip(INPUTS, theoretical, numerical, strict=True):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-7, err_msg=f"d loss / d {name}")


def _grads_three_ways(inputs, loss):
    """The gradient of loss(gru_block_cell(inputs)): eagerly, in tf.function, via tf.gradients."""

    def eager():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = loss(gru_block_cell(*inputs))
        return tape.gradient(value, inputs)

    @tf.function
    def graph_gradients(*args):
        return tf.gradients(loss(gru_block_cell(*args)), list(args))

    return {
        "eager": eager(),
        "tf.function": tf.function(eager)(),
        "tf.gradients": graph_gradients(*inputs),
    }


@pytest.mark.parametrize(
    "loss_on,batch,input_size,cell",
    [(loss, 5, 7, 6) for loss in LOSSES]
    + [("all", 1, 1, 1), ("all", 4, 0, 3), ("all", 17, 33, 20), ("r+c", 17, 33, 20)],
)
def test_gradient_matches_autodiff_of_plain_tf(fresh_rng, loss_on, batch, input_size, cell):
    inputs = make_inputs(fresh_rng, batch, input_size, cell)
    loss = make_loss(fresh_rng, LOSSES[loss_on], batch, cell)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        value = loss(plain_tf_cell(*inputs))
    expected = tape.gradient(value, inputs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    for how, grads in _grads_three_ways(inputs, loss).items():
        for name, g, e in zip(INPUTS, grads, expected, strict=True):
            assert g is not None, f"{how}: no gradient for {name}"
            assert g.shape == e.shape, f"{how}: d {name} shape {g.shape} != {e.shape}"
            np.testing.assert_allclose(
                g.numpy(), e.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{how}: d loss / d {name}"
            )


def test_loss_on_h_only_needs_no_extra_product():
    """With gradients arriving at h only (r, u, c unused: zeros), the gradient is the grad kernel
    plus the two weight products, with no correction product."""
    inputs = [tf.TensorSpec([3, 4]), tf.TensorSpec([3, 5]), tf.TensorSpec([9, 10])]
    inputs += [tf.TensorSpec([9, 5]), tf.TensorSpec([10]), tf.TensorSpec([5])]

    @tf.function(input_signature=inputs)
    def grads(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            h = gru_block_cell(*args).h
            value = tf.reduce_sum(h * h)
        return tape.gradient(value, args)

    graph = grads.get_concrete_function().graph
    matmuls = [op for op in graph.get_operations() if op.type in ("MatMul", "BatchMatMulV2")]
    assert len(matmuls) == 2, [op.name for op in matmuls]
    assert [op.type for op in graph.get_operations()].count("TfRnn>GRUBlockCellGrad") == 1


@pytest.mark.parametrize("batch,cell", [(3, 5), (101, 100)])
def test_eager_loss_on_h_reads_no_zeros(fresh_rng, monkeypatch, batch, cell):
    """Eagerly, the zeros the tape feeds for r, u and c are known as zeros without reading them
    (the tape's cached zeros, up to 10,000 elements; larger ones by their values on the CPU), and
    the gradient equals plain TensorFlow's either way."""
    module = sys.modules["tf_rnn_ops.gru_block_cell"]
    original, found = module._is_tape_zeros, []

    def spy(grad, shape):
        found.append(original(grad, shape))
        return found[-1]

    monkeypatch.setattr(module, "_is_tape_zeros", spy)
    inputs = make_inputs(fresh_rng, batch, 4, cell)
    loss = make_loss(fresh_rng, ("h",), batch, cell)
    grads = {}
    for name, fn in (("ours", gru_block_cell), ("plain", plain_tf_cell)):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = loss(fn(*inputs))
        grads[name] = tape.gradient(value, inputs)
    assert found == ([True] * 3 if batch * cell <= 10_000 else [])  # (larger: never cached)
    for name, g, e in zip(INPUTS, grads["ours"], grads["plain"], strict=True):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("batch,input_size,cell", [(0, 3, 4), (2, 0, 3), (0, 0, 2)])
@pytest.mark.parametrize("loss_on", ["h", "all"])
def test_gradient_of_empty_sizes(fresh_rng, batch, input_size, cell, loss_on):
    inputs = make_inputs(fresh_rng, batch, input_size, cell)
    loss = make_loss(fresh_rng, LOSSES[loss_on], batch, cell)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        value = loss(plain_tf_cell(*inputs))
    expected = tape.gradient(value, inputs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    for how, grads in _grads_three_ways(inputs, loss).items():
        for name, g, e, a in zip(INPUTS, grads, expected, inputs, strict=True):
            assert g.shape == a.shape, f"{how}: d {name}"
            np.testing.assert_allclose(g.numpy(), e.numpy(), atol=1e-12, err_msg=f"{how}: {name}")


@pytest.mark.parametrize(
    "dtype,tol", [(np.float16, 1e-2), (tf.bfloat16.as_numpy_dtype, 6e-2)], ids=["half", "bf16"]
)
def test_16bit_gradient_close_to_float32(fresh_rng, dtype, tol):
    batch, input_size, cell = 4, 6, 5
    low = make_inputs(fresh_rng, batch, input_size, cell, dtype)
    f32 = [tf.cast(t, tf.float32) for t in low]
    loss_weights = [fresh_rng.standard_normal((batch, cell)) for _ in OUTPUTS]

    def grads(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outs = gru_block_cell(*inputs)
            value = tf.add_n(
                [
                    tf.reduce_sum(o * tf.constant(w, o.dtype))
                    for o, w in zip(outs, loss_weights, strict=True)
                ]
            )
        return tape.gradient(value, inputs)

    for name, g, e in zip(INPUTS, grads(low), grads(f32), strict=True):
        assert g.dtype == tf.as_dtype(dtype)
        scale = max(1.0, float(np.max(np.abs(e.numpy()))))
        np.testing.assert_allclose(
            g.numpy().astype(np.float32), e.numpy(), rtol=tol, atol=tol * scale, err_msg=name
        )


def test_reimport_does_not_raise(fresh_rng):
    # (tf_rnn_ops.gru_block_cell is the function; the module that registers the gradient is this)
    gru_module = sys.modules["tf_rnn_ops.gru_block_cell"]
    importlib.reload(gru_module)
    importlib.reload(gru_module)
    importlib.reload(tf_rnn_ops)
    import tf_rnn_ops as again  # noqa: F401

    inputs = make_inputs(fresh_rng, 2, 3, 4)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        value = tf.reduce_sum(tf_rnn_ops.gru_block_cell(*inputs).c)
    assert all(g is not None for g in tape.gradient(value, inputs))
