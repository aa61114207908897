"""Parity with TensorFlow's own tests and op definitions of these ops (TF 1.12-1.15's contrib
cudnn_rnn and GRU block cell kernel tests):

* dropout = 1.0 is a valid attribute everywhere (TensorFlow's op definitions put no range on it):
  inference ignores it, the params ops ignore it, training drops every between-layer input;
* the published numbers of TensorFlow's `testSimpleInference` (everything 1), through
  TensorFlow's CudnnRNN op (served by our CPU kernels) and ours, at dropout 0, 0.5 and 1;
* TensorFlow's own GRUBlockCell has a gradient after `import tf_rnn_ops`.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf

import tf_rnn_ops
from tf_rnn_ops import _registry

# TensorFlow's own CudnnRNN ops know cuDNN's modes only (not gru_reset_before).
TF_CUDNN_MODES = [m for m in ref.MODES if m != "gru_reset_before"]

gbc = importlib.import_module("tf_rnn_ops.gru_block_cell")  # the module (not the op function)

DROPOUTS = (0.0, 0.5, 1.0)

# TensorFlow's testSimpleInference (cudnn_rnn_ops_test.py): params, input, input_h and input_c all
# ones, unidirectional, inference; expected sum of output, output_h and output_c, tolerance 1e-2.
SIMPLE_INFERENCE = {
    "lstm": (231833.22, dict(num_layers=4, num_units=200, input_size=200, batch=20, steps=10)),
    "gru": (56000.0, dict(num_layers=4, num_units=200, input_size=200, batch=20, steps=10)),
    "rnn_tanh": (56000.0, dict(num_layers=4, num_units=200, input_size=200, batch=20, steps=10)),
    "rnn_relu": (130688.0, dict(num_layers=2, num_units=8, input_size=4, batch=4, steps=2)),
}


def _ones_sum_float64(mode, num_layers, num_units, input_size, batch, steps):
    """The same sum from the float64 numpy reference (all weights and biases 1)."""
    ws, bs = ref.random_canonical(np.random.default_rng(0), mode, num_layers, num_units, input_size)
    ws, bs = [np.ones_like(w) for w in ws], [np.ones_like(b) for b in bs]
    x = np.ones((steps, batch, input_size))
    h0 = np.ones((num_layers, batch, num_units))
    out, h, c = ref.rnn_forward(x, h0, h0 if mode == "lstm" else None, ws, bs, mode=mode)
    return out.sum() + h.sum() + (c.sum() if c is not None else 0.0)


def _tf_params_size(mode, num_layers, num_units, input_size, dropout=0.0):
    return tf.raw_ops.CudnnRNNParamsSize(
        num_layers=num_layers, num_units=num_units, input_size=input_size, T=tf.float32,
        S=tf.int32, rnn_mode=mode, dropout=dropout,
    )[0]  # fmt: skip


@pytest.mark.parametrize("mode", list(SIMPLE_INFERENCE))
@pytest.mark.parametrize("op", ["tf.raw_ops.CudnnRNN", "tf_rnn_ops.cudnn_rnn"])
def test_simple_inference_published_sums(mode, op):
    """TensorFlow's testSimpleInference: the published sums, at every dropout (inference)."""
    expected, shape = SIMPLE_INFERENCE[mode]
    L, H, I, B, T = (shape[k] for k in ("num_layers", "num_units", "input_size", "batch", "steps"))  # noqa: E741
    # the published number is the float64 math's (checks the number, independently of our ops)
    assert abs(_ones_sum_float64(mode, L, H, I, B, T) - expected) < 1e-2
    x, h = tf.ones([T, B, I]), tf.ones([L, B, H])
    c = h if mode == "lstm" else tf.constant([], tf.float32)
    params = tf.ones([_tf_params_size(mode, L, H, I)])
    for dropout in DROPOUTS:
        if op == "tf.raw_ops.CudnnRNN":
            y, hy, cy, _ = tf.raw_ops.CudnnRNN(
                input=x, input_h=h, input_c=c, params=params, rnn_mode=mode, dropout=dropout,
                seed=3, seed2=4, is_training=False,
            )  # fmt: skip
        else:
            y, hy, cy, _, _ = tf_rnn_ops.cudnn_rnn(
                input=x, input_h=h, input_c=c, params=params, rnn_mode=mode, dropout=dropout,
                seed=3, seed2=4, is_training=False,
            )  # fmt: skip
        total = float(tf.reduce_sum(y) + tf.reduce_sum(hy) + tf.reduce_sum(cy))
        assert abs(total - expected) <= 1e-2, (dropout, total)


def test_issue_repro_dropout_one_inference():
    """The issue's repro: TensorFlow's CudnnRNN (rnn_relu) at dropout 0, 0.5 and 1, inference."""
    x, h = tf.ones([2, 4, 4]), tf.ones([2, 4, 8])
    n = _tf_params_size("rnn_relu", 2, 8, 4)
    for d in DROPOUTS:
        y, hy, _, _ = tf.raw_ops.CudnnRNN(
            input=x, input_h=h, input_c=tf.constant([]), params=tf.ones([n]),
            rnn_mode="rnn_relu", dropout=d, is_training=False,
        )  # fmt: skip
        assert float(tf.reduce_sum(y) + tf.reduce_sum(hy)) == 130688.0


@pytest.mark.parametrize("mode", TF_CUDNN_MODES)
def test_params_ops_accept_dropout_one(rng, mode):
    """Dropout plays no role in the params ops: 1.0 gives what 0.0 gives (TF's ops and ours)."""
    L, H, I = 2, 3, 5  # noqa: E741
    sizes = [
        int(_tf_params_size(mode, L, H, I, d)) for d in DROPOUTS
    ] + [
        int(tf_rnn_ops.cudnn_rnn_params_size(
            num_layers=L, num_units=H, input_size=I, T=tf.float32, S=tf.int32, rnn_mode=mode,
            dropout=d,
        )[0]) for d in DROPOUTS
    ]  # fmt: skip
    assert sizes == [ref.params_size(mode, L, H, I)] * len(sizes)
    ws, bs = ref.random_canonical(rng, mode, L, H, I)
    expected = ref.canonical_to_opaque(ws, bs, mode, L, H, I)
    for d in DROPOUTS:
        kw = dict(num_layers=L, num_units=H, input_size=I, rnn_mode=mode, dropout=d, seed=1,
                  seed2=2)  # fmt: skip
        wt = [tf.constant(w, tf.float32) for w in ws]
        bt = [tf.constant(b, tf.float32) for b in bs]
        p_tf = tf.raw_ops.CudnnRNNCanonicalToParams(weights=wt, biases=bt, **kw)
        p_ours = tf_rnn_ops.cudnn_rnn_canonical_to_params(weights=wt, biases=bt, **kw)
        np.testing.assert_allclose(p_tf.numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(p_ours.numpy(), expected, rtol=1e-6)
        back = tf.raw_ops.CudnnRNNParamsToCanonical(params=p_tf, num_params=len(ws), **kw)
        np.testing.assert_array_equal(np.concatenate([t.numpy().ravel() for t in back[0]]),
                                      np.concatenate([w.numpy().ravel() for w in wt]))  # fmt: skip


@pytest.mark.parametrize("bad", [-0.1, 1.0000001, 1.5, float("nan")])
def test_dropout_outside_unit_interval_is_refused(bad):
    """Only NaN, < 0 or > 1 is an error (an InvalidArgumentError naming dropout)."""
    with pytest.raises(tf.errors.InvalidArgumentError, match="dropout must be in \\[0, 1\\]"):
        _tf_params_size("gru", 1, 3, 2, bad)
    p = ref.Problem(np.random.default_rng(0), "gru", 2, 3, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="dropout must be in \\[0, 1\\]"):
        tf_rnn_ops.cudnn_rnn(**p.op_kwargs(is_training=True, dropout=bad))


@pytest.mark.parametrize("mode", TF_CUDNN_MODES)
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_training_dropout_one_drops_every_between_layer_input(rng, mode, time_major):
    """Training at dropout 1: every input of layers >= 1 is zero (as cuDNN); the reference with
    zero masks, through TF's CudnnRNNV3 and ours; the gradient (which TF's tests check at dropout
    1.0) against finite differences."""
    p = ref.Problem(rng, mode, 3, 4, 3, batch=3, steps=5, direction="bidirectional",
                    time_major=time_major)  # fmt: skip
    x_shape = p.reference()[0].shape
    masks = [np.zeros(x_shape)] * 2
    out, h, c = p.reference(dropout_masks=masks)
    kw = p.op_kwargs(is_training=True, dropout=1.0, seed=5, seed2=6)
    for res in (tf_rnn_ops.cudnn_rnn(**kw), tf.raw_ops.CudnnRNNV3(**kw)):
        np.testing.assert_allclose(res[0].numpy(), out, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(res[1].numpy(), h, rtol=1e-12, atol=1e-13)
        if p.is_lstm:
            np.testing.assert_allclose(res[2].numpy(), c, rtol=1e-12, atol=1e-13)

    def f(params, x):
        args = dict(kw, params=params, input=x)
        y, hy, cy, _, _ = tf_rnn_ops.cudnn_rnn(**args)
        return tf.concat([tf.reshape(y, [-1]), tf.reshape(hy, [-1]), tf.reshape(cy, [-1])], 0)

    theo, num = tf.test.compute_gradient(f, [kw["params"], kw["input"]], delta=1e-6)
    for a, b in zip(theo, num, strict=False):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # layers >= 1 see no input: their input weights get no gradient
    assert np.any(theo[0]) and np.all(np.isfinite(theo[0]))


# ------------------------------------------------------------------ TensorFlow's GRUBlockCell
def _cell_inputs(rng, B, I, H, dtype=np.float32):  # noqa: E741
    s = 1.5 / np.sqrt(max(I + H, 1))
    return [
        rng.standard_normal((B, I)).astype(dtype),
        rng.uniform(-1, 1, (B, H)).astype(dtype),
        (rng.standard_normal((I + H, 2 * H)) * s).astype(dtype),
        (rng.standard_normal((I + H, H)) * s).astype(dtype),
        (rng.standard_normal(2 * H) * 0.5).astype(dtype),
        (rng.standard_normal(H) * 0.5).astype(dtype),
    ]


LOSSES = {"r": (0,), "u": (1,), "c": (2,), "h": (3,), "all": (0, 1, 2, 3), "c+h": (2, 3)}


def _grads(cell, arrays, weights, which):
    ts = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(ts)
        outs = cell(*ts)
        loss = tf.add_n([tf.reduce_sum(outs[k] * weights[k]) for k in which])
    return [g.numpy() for g in tape.gradient(loss, ts)]


def _tf_cell(x, h_prev, w_ru, w_c, b_ru, b_c):
    return tf.raw_ops.GRUBlockCell(x=x, h_prev=h_prev, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c)


def _our_cell(x, h_prev, w_ru, w_c, b_ru, b_c):
    return gbc.gru_block_cell(x, h_prev, w_ru, w_c, b_ru, b_c)


CELL_SIZES = [(3, 4, 5), (1, 1, 1), (2, 0, 3), (0, 3, 2), (4, 3, 0), (5, 7, 257)]


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("B,I,H", CELL_SIZES)
def test_tf_gru_block_cell_gradient_vs_float64(rng, loss, B, I, H):  # noqa: E741
    """TensorFlow's GRUBlockCell (float32 only on CPU) now has a gradient: d_x, d_h_prev, d_w_ru,
    d_w_c, d_b_ru, d_b_c for a loss on any of r, u, c, h, equal to our op's float64 gradient at the
    same inputs, within float32 rounding; H = 0 gives zeros (TF's grad kernel would leave d_x
    uninitialised there)."""
    arrays = _cell_inputs(rng, B, I, H)
    weights = [rng.standard_normal((B, H)).astype(np.float32) for _ in range(4)]
    got = _grads(_tf_cell, arrays, weights, LOSSES[loss])
    want = _grads(_our_cell, [a.astype(np.float64) for a in arrays],
                  [w.astype(np.float64) for w in weights], LOSSES[loss])  # fmt: skip
    for name, g, w in zip(("x", "h_prev", "w_ru", "w_c", "b_ru", "b_c"), got, want, strict=False):
        assert g.shape == w.shape and g.dtype == np.float32, name
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5, err_msg=name)
    if H == 0:
        assert not np.any(got[0])


@pytest.mark.parametrize("loss", list(LOSSES))
def test_tf_gru_block_cell_gradient_vs_finite_differences(rng, loss):
    """tf.test.compute_gradient on TensorFlow's op itself (float32 finite differences)."""
    arrays = _cell_inputs(rng, 3, 4, 5)
    weights = [tf.constant(rng.standard_normal((3, 5)), tf.float32) for _ in range(4)]

    def f(*ts):
        outs = _tf_cell(*ts)
        return tf.add_n([tf.reduce_sum(outs[k] * weights[k]) for k in LOSSES[loss]])

    theo, num = tf.test.compute_gradient(f, [tf.constant(a) for a in arrays], delta=1e-2)
    for a, b in zip(theo, num, strict=False):
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-3)


def test_tf_gru_block_cell_gradient_in_graph(rng):
    """tf.function and tf.gradients (a graph) reach the same gradient as the eager tape."""
    arrays = [tf.constant(a) for a in _cell_inputs(rng, 2, 3, 4)]
    eager = _grads(_tf_cell, [a.numpy() for a in arrays], [np.ones((2, 4), np.float32)] * 4, (3,))

    @tf.function
    def g(*ts):
        return tf.gradients(tf.reduce_sum(_tf_cell(*ts)[3]), ts)

    for a, b in zip(g(*arrays), eager, strict=False):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-6, atol=1e-7)


def test_gradient_registered_only_where_tensorflow_has_none():
    """GRUBlockCell's gradient is ours (TensorFlow 2.21 has none); an op TensorFlow has a gradient
    for keeps TensorFlow's."""
    from tensorflow.python.framework import ops

    # by name: a test that reloads the package makes new function objects, and the registry keeps
    # the first import's
    registered = ops._gradient_registry.lookup("GRUBlockCell")
    assert (registered.__module__, registered.__qualname__) == (
        gbc.__name__,
        gbc._tf_gru_block_cell_gradient.__qualname__,
    )
    matmul = ops._gradient_registry.lookup("MatMul")

    @_registry.register_gradient_if_missing("MatMul")
    def not_used(op, grad):  # pragma: no cover - never registered
        raise AssertionError

    assert ops._gradient_registry.lookup("MatMul") is matmul
