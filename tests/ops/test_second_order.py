"""Second-order gradients (gradients of gradients, e.g. a WGAN-GP gradient penalty through an RNN).

* The gradient of the backprop ops (`TfRnn>CudnnRNNBackprop`, TensorFlow's CudnnRNNBackprop V1/V2/V3
  on our CPU kernels) against `tf.test.compute_gradient` in float64 of the backprop op itself, as a
  function of its float inputs (input, input_h, input_c, params, and the three cotangents); the
  forward is re-run inside, so the op always reads a reserve_space that fits its inputs.
  The op's outputs are projected on fixed random weights (one scalar), which keeps the theoretical
  Jacobian to one backward pass while still checking the full gradient of every input. Larger
  configurations (2-3 layers, bidirectional, skip_input, projection, dropout) check one random
  direction per input by central differences; their full checks are marked slow.
* A gradient penalty (loss = ||d f(x)/dx||^2, gradient w.r.t. the weights) through our drop-in
  layers against Keras's own layers with the same weights, and through TensorFlow's CudnnRNNV3 /
  CudnnRNN (their TF-registered first-order gradients call CudnnRNNBackprop*) against the
  independent TF-ops reference of tests/support/rnn_reference.py differentiated twice by
  GradientTape.
* float32 and the 16-bit types against float64; graphs (where the formulation loops with a
  tf.while_loop; eagerly it runs a Python loop), also with a number of steps known only at run time.
* The gradient of the GRU block cell's grad op (ours and TensorFlow's) against compute_gradient of
  the grad op, and a gradient penalty through the cell against its equations.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf
from tensorflow.python.eager import context

import tf_rnn_ops
from tf_rnn_ops import layers as L

# TensorFlow's own CudnnRNN ops know cuDNN's modes only (not gru_reset_before).
TF_CUDNN_MODES = [m for m in ref.MODES if m != "gru_reset_before"]


def _flat(ts):
    return tf.concat([tf.reshape(t, [-1]) for t in ts], 0)


def _backprop_fn(p, rng, dropout=0.0, seed=0, seed2=0, op="ours"):
    """(f, args): f(*args) = <outputs of the backprop op, w> for fixed random w, as a function of
    the op's seven float inputs (the forward re-run inside, so reserve_space always matches)."""
    kw = p.op_kwargs(is_training=True, dropout=dropout, seed=seed, seed2=seed2)
    lengths = kw.pop("sequence_lengths")
    attrs = {k: kw.pop(k) for k in list(kw) if k not in ("input", "input_h", "input_c", "params")}
    bp_attrs = {k: v for k, v in attrs.items() if k != "is_training"}
    forward, backprop = (
        (tf_rnn_ops.cudnn_rnn, tf_rnn_ops.cudnn_rnn_backprop)
        if op == "ours"
        else (tf.raw_ops.CudnnRNNV3, tf.raw_ops.CudnnRNNBackpropV3)  # our CPU kernels
    )
    y, yh, yc, _, _ = forward(**kw, sequence_lengths=lengths, **attrs)
    cot = [tf.constant(rng.normal(size=t.shape)) for t in (y, yh, yc)]
    n_out = sum(int(np.prod(t.shape)) for t in (kw["input"], kw["input_h"], kw["input_c"]))
    w = tf.constant(rng.normal(size=[n_out + p.params.size]))

    def f(x, h, c, params, dy, dyh, dyc):
        if dropout and tf.executing_eagerly():
            # the masks advance from call to call of a kernel: a fresh kernel draws its first
            # call's masks, so every evaluation of f (and a new trace of it) sees the same ones
            context.context().clear_kernel_cache()
        fw = forward(
            input=x, input_h=h, input_c=c, params=params, sequence_lengths=lengths, **attrs
        )
        bp = backprop(
            input=x, input_h=h, input_c=c, params=params, sequence_lengths=lengths,
            output=fw[0], output_h=fw[1], output_c=fw[2], output_backprop=dy,
            output_h_backprop=dyh, output_c_backprop=dyc, reserve_space=fw[3],
            host_reserved=fw[4], **bp_attrs,
        )  # fmt: skip
        return tf.reshape(tf.reduce_sum(_flat(bp) * w), [1])

    return f, [kw["input"], kw["input_h"], kw["input_c"], kw["params"], *cot]


def _backprop_check(p, rng, **kwargs):
    """tf.test.compute_gradient of the backprop op (projected on random weights: one scalar, so the
    theoretical side is one backward pass; the numerical side perturbs every input element).
    Asserts the two agree."""
    f, args = _backprop_fn(p, rng, **kwargs)
    theo, num = tf.test.compute_gradient(f, args, delta=1e-6)
    for k, (a, b) in enumerate(zip(theo, num, strict=True)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=f"input {k}")
    # not vacuous: the second derivative is there
    assert max(float(np.max(np.abs(a))) if a.size else 0.0 for a in theo[:4]) > 1e-3


def _backprop_check_directional(p, rng, function=False, **kwargs):
    """The same check along one random direction per input (central differences in float64): two
    evaluations per input instead of two per element, for the larger configurations. `function`:
    in a tf.function (a graph: the formulation loops with tf.while_loop)."""
    f, args = _backprop_fn(p, rng, **kwargs)
    with tf.GradientTape() as tape:
        tape.watch(args)
        # `function`: the second-order gradient in a graph (a new trace: its kernels are fresh);
        # the finite differences below run eagerly
        value = tf.function(f)(*args) if function else f(*args)
    grads = tape.gradient(value, args, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    eps = 1e-5
    sizes = []
    for k, (a, g) in enumerate(zip(args, grads, strict=True)):
        v = tf.constant(rng.normal(size=a.shape))
        plus = [a + eps * v if i == k else b for i, b in enumerate(args)]
        minus = [a - eps * v if i == k else b for i, b in enumerate(args)]
        numerical = float((f(*plus) - f(*minus))[0]) / (2 * eps)
        theoretical = float(tf.reduce_sum(g * v))
        np.testing.assert_allclose(theoretical, numerical, rtol=1e-6, atol=1e-7,
                                   err_msg=f"input {k}")  # fmt: skip
        sizes.append(abs(theoretical))
    assert max(sizes[:4]) > 1e-3  # not vacuous


# Every mode; the sizes odd where they can be (num_units 3); a zero and a partial length.
SMALL = dict(num_layers=1, num_units=3, input_size=2, batch=3, steps=3, lengths=[3, 0, 2])
LARGE = {
    "bi-2layers-bm": dict(
        num_layers=2, num_units=3, input_size=2, batch=3, steps=3, lengths=[3, 0, 2],
        direction="bidirectional", time_major=False,
    ),
    "bi-2layers-tm": dict(
        num_layers=2, num_units=3, input_size=1, batch=2, steps=3, lengths=[1, 3],
        direction="bidirectional", time_major=True,
    ),
}  # fmt: skip
PROJ_SKIP = dict(
    num_layers=2, num_units=3, input_size=3, batch=2, steps=3, direction="bidirectional",
    input_mode="skip_input", num_proj=2, time_major=False, lengths=[1, 3],
)  # fmt: skip


@pytest.mark.parametrize("mode", ref.MODES)
def test_backprop_op_gradient(rng, mode):
    _backprop_check(ref.Problem(rng, mode, **SMALL), rng)


@pytest.mark.parametrize("case", list(LARGE))
@pytest.mark.parametrize("mode", ref.MODES)
def test_backprop_op_gradient_layers_bidirectional(rng, mode, case):
    _backprop_check_directional(ref.Problem(rng, mode, **LARGE[case]), rng)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(LARGE))
@pytest.mark.parametrize("mode", ref.MODES)
def test_backprop_op_gradient_layers_bidirectional_full(rng, mode, case):
    _backprop_check(ref.Problem(rng, mode, **LARGE[case]), rng)


def test_backprop_op_gradient_lstm_proj_skip_input(rng):
    _backprop_check_directional(ref.Problem(rng, "lstm", **PROJ_SKIP), rng)


@pytest.mark.slow
def test_backprop_op_gradient_lstm_proj_skip_input_full(rng):
    _backprop_check(ref.Problem(rng, "lstm", **PROJ_SKIP), rng)


@pytest.mark.parametrize(
    "function",
    [False, pytest.param(True, marks=pytest.mark.slow)],  # tracing the graph: ~1 min
    ids=["eager", "function"],
)
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_backprop_op_gradient_with_dropout(rng, mode, function):
    """Training with dropout between layers: the masks come from reserve_space (a gradient that
    ignored them, or drew others, would not match the finite differences of the seeded forward)."""
    p = ref.Problem(rng, mode, 3, 3, 2, batch=2, steps=3, lengths=[3, 2], time_major=False,
                    direction="bidirectional")  # fmt: skip
    _backprop_check_directional(p, rng, function=function, dropout=0.5, seed=3, seed2=4)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_backprop_op_gradient_with_dropout_full(rng, mode):
    p = ref.Problem(rng, mode, 2, 3, 2, batch=2, steps=3, lengths=[3, 2], time_major=False)
    _backprop_check(p, rng, dropout=0.5, seed=3, seed2=4)


def test_dropout_from_a_gpu_reserve_space_is_refused(rng):
    """The masks are read in the CPU kernels' reserve_space layout: a forward placed on a GPU (here
    only requested: soft placement runs it on CPU) gets a clear error, not wrong numbers."""
    p = ref.Problem(rng, "gru", 2, 3, 2, batch=2, steps=3, lengths="full")
    kw = p.op_kwargs(is_training=True, dropout=0.5, seed=1, seed2=2)
    x, w = kw.pop("input"), kw.pop("params")

    @tf.function
    def penalty_grad(x):
        with tf.GradientTape() as outer:
            outer.watch(w)
            with tf.GradientTape() as inner:
                inner.watch(x)
                with tf.device("/device:GPU:0"):
                    y = tf_rnn_ops.cudnn_rnn(input=x, params=w, **kw)[0]
                score = tf.reduce_sum(y)
            gx = inner.gradient(score, x)
            penalty = tf.reduce_sum(gx * gx)
        return outer.gradient(penalty, w)

    with pytest.raises(ValueError, match="reserve_space comes from a GPU kernel"):
        penalty_grad(x)


# (mode, layers, direction, num_proj, dropout): every mode alone, in 3 bidirectional layers with
# dropout, and lstm with a projection.
RESERVE_CASES = [
    (mode, *case)
    for mode in ref.MODES
    for case in ((1, "unidirectional", 0, 0.0), (3, "bidirectional", 0, 0.5))
] + [("lstm", 2, "unidirectional", 2, 0.5)]


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16])
@pytest.mark.parametrize("mode,layers,direction,num_proj,dropout", RESERVE_CASES)
def test_reference_reserve_layout_is_the_kernels(
    rng, mode, layers, direction, num_proj, dropout, dtype
):
    """The second-order reference reads the dropout masks at `_reference_rnn.reserve_layout`'s
    offsets, built from the cells' saved-buffer table (`_modes.SAVED_BUFFERS`): its size is the
    kernel's reserve_space (16-bit types: two elements per float32 value), for every mode."""
    from tf_rnn_ops import _reference_rnn

    T, B, I, H = 3, 5, 2, 4  # noqa: E741
    dirs = 2 if direction == "bidirectional" else 1
    size = tf_rnn_ops.params.params_size(mode, layers, H, I, direction, num_proj=num_proj)
    h_out = num_proj or H

    def t(*shape):
        return tf.constant(rng.uniform(-1, 1, shape), dtype)

    reserve = tf_rnn_ops.cudnn_rnn(
        input=t(T, B, I),
        input_h=t(layers * dirs, B, h_out),
        input_c=t(layers * dirs, B, H),
        params=t(size),
        rnn_mode=mode,
        direction=direction,
        num_proj=num_proj,
        dropout=dropout,
        seed=1,
        is_training=True,
    )[3]
    half = dtype != tf.float32
    units, masks_at = _reference_rnn.reserve_layout(
        mode, layers, H, direction, num_proj, dropout > 0, save_hprev=half
    )
    assert reserve.shape[0] == units * T * B * (2 if half else 1)
    assert len(masks_at) == (layers - 1 if dropout > 0 else 0)


@pytest.mark.parametrize("mode", TF_CUDNN_MODES)
def test_tf_backprop_v3_gradient(rng, mode):
    """TensorFlow's CudnnRNNBackpropV3 (served by our CPU kernel) gets the same gradient."""
    p = ref.Problem(rng, mode, 2, 3, 2, batch=3, steps=2, direction="bidirectional",
                    lengths=[2, 1, 0], time_major=False)  # fmt: skip
    _backprop_check_directional(p, rng, op="tf")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["gru", "lstm"])
def test_tf_backprop_v3_gradient_full(rng, mode):
    p = ref.Problem(rng, mode, 1, 3, 2, batch=3, steps=2, lengths=[2, 1, 0])
    _backprop_check(p, rng, op="tf")


def test_empty_batch(rng):
    """B = 0: the gradient of the gradient is empty, not an error."""
    p = ref.Problem(rng, "gru", 2, 3, 2, batch=0, steps=3, direction="bidirectional", lengths=[])
    kw = p.op_kwargs()
    x, w = kw["input"], kw["params"]
    with tf.GradientTape() as outer:
        outer.watch(w)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf_rnn_ops.cudnn_rnn(**kw)[0]
        gx = inner.gradient(y, x)
        penalty = tf.reduce_sum(gx * gx)
    gw = outer.gradient(penalty, w)
    assert gw.shape == w.shape and not np.any(gw.numpy())


# ------------------------------------------------------------------ gradient penalty (WGAN-GP)
def _penalty_grads_tensors(fn, x, weights, proj):
    """Gradient w.r.t. `weights` of ||d <fn(x), proj> / dx||^2 (a WGAN-GP-style penalty)."""
    with tf.GradientTape() as outer:
        outer.watch(weights)
        with tf.GradientTape() as inner:
            inner.watch(x)
            score = tf.reduce_sum(fn(x) * proj)
        gx = inner.gradient(score, x)
        penalty = tf.reduce_sum(gx * gx)
    return outer.gradient(penalty, weights)


def _vars(layer):
    return [v.value for v in layer.trainable_weights]


def _penalty_grads(fn, x, weights, proj):
    return [g.numpy() for g in _penalty_grads_tensors(fn, x, weights, proj)]


@pytest.mark.parametrize("name", ["GRU", "LSTM", "SimpleRNN"])
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "function"])
def test_gradient_penalty_layers_vs_keras(rng, name, graph):
    if graph and name == "SimpleRNN":
        pytest.skip("GRU and LSTM cover tf.function; tracing the second-order graph is slow")
    B, T, IN, H = 3, 4, 3, 5
    ours = getattr(L, name)(H, return_sequences=True, dtype="float64")
    theirs = getattr(keras.layers, name)(H, return_sequences=True, dtype="float64")
    for layer in (ours, theirs):
        layer.build((None, T, IN))
    ours.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    x = tf.constant(rng.uniform(-1, 1, (B, T, IN)))
    proj = tf.constant(rng.normal(size=(B, T, H)))

    def grads(layer):
        def run():
            return _penalty_grads_tensors(layer, x, _vars(layer), proj)

        return [g.numpy() for g in (tf.function(run)() if graph else run())]

    got, want = grads(ours), grads(theirs)
    assert len(got) == len(want) == len(theirs.trainable_weights)
    for g, w in zip(got, want, strict=True):
        assert np.max(np.abs(w)) > 1e-4
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-10)


def test_gradient_penalty_layer_with_mask_vs_keras(rng):
    """Variable lengths (a right-padded mask, one empty row) through the drop-in GRU."""
    B, T, IN, H = 3, 4, 2, 3
    ours = L.GRU(H, dtype="float64")
    theirs = keras.layers.GRU(H, dtype="float64")
    for layer in (ours, theirs):
        layer.build((None, T, IN))
    ours.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    x = tf.constant(rng.uniform(-1, 1, (B, T, IN)))
    mask = tf.constant([[True] * 4, [True, True, False, False], [False] * 4])
    proj = tf.constant(rng.normal(size=(B, H)))
    got = _penalty_grads(lambda t: ours(t, mask=mask), x, _vars(ours), proj)
    want = _penalty_grads(lambda t: theirs(t, mask=mask), x, _vars(theirs), proj)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-10)


def _reference_penalty(p, proj):
    """Gradient w.r.t. the opaque params of ||d <output, proj> / d input||^2 from the independent
    TF-ops reference (tests/support/rnn_reference.py), differentiated twice."""
    x = tf.constant(p.x)
    ws = [tf.constant(w) for w in p.weights]
    bs = [tf.constant(b) for b in p.biases]
    with tf.GradientTape() as outer:
        outer.watch(ws + bs)
        with tf.GradientTape() as inner:
            inner.watch(x)
            out = ref.rnn_forward(
                x, p.h0, p.c0 if p.is_lstm else None, ws, bs, mode=p.mode, direction=p.direction,
                input_mode=p.input_mode, num_proj=p.num_proj, sequence_lengths=p.lengths,
                time_major=p.time_major, backend=ref.TF,
            )[0]  # fmt: skip
            score = tf.reduce_sum(out * proj)
        gx = inner.gradient(score, x)
        penalty = tf.reduce_sum(gx * gx)
    g = outer.gradient(penalty, ws + bs)
    return ref.canonical_to_opaque([a.numpy() for a in g[: len(ws)]],
                                   [a.numpy() for a in g[len(ws):]], *p.layout_args)  # fmt: skip


@pytest.mark.parametrize("mode", TF_CUDNN_MODES)
def test_gradient_penalty_tf_cudnn_rnn_v3(rng, mode):
    """Through TensorFlow's own CudnnRNNV3 (our CPU kernel) and its TF-registered gradient."""
    p = ref.Problem(rng, mode, 2, 3, 2, batch=3, steps=3, direction="bidirectional",
                    time_major=False, lengths=[3, 1, 2])  # fmt: skip
    kw = p.op_kwargs(is_training=True)
    proj = tf.constant(rng.normal(size=ref.rnn_forward(
        p.x, p.h0, p.c0, p.weights, p.biases, mode=mode, direction=p.direction,
        sequence_lengths=p.lengths, time_major=False)[0].shape))  # fmt: skip
    got = _penalty_grads(lambda x: tf.raw_ops.CudnnRNNV3(**dict(kw, input=x))[0],
                         kw["input"], [kw["params"]], proj)[0]  # fmt: skip
    np.testing.assert_allclose(got, _reference_penalty(p, proj), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("op", ["CudnnRNN", "CudnnRNNV2"])
def test_gradient_penalty_tf_cudnn_rnn_v1_v2(rng, op):
    """TensorFlow's CudnnRNN / CudnnRNNV2, whose gradients call CudnnRNNBackprop / V2."""
    p = ref.Problem(rng, "lstm", 2, 3, 2, batch=2, steps=3, direction="bidirectional",
                    lengths="full")  # fmt: skip
    kw = p.op_kwargs(is_training=True)
    kw = {k: kw[k] for k in ("input", "input_h", "input_c", "params", "rnn_mode", "direction")}
    proj = tf.constant(rng.normal(size=(3, 2, 6)))
    got = _penalty_grads(lambda x: getattr(tf.raw_ops, op)(**dict(kw, input=x))[0],
                         kw["input"], [kw["params"]], proj)[0]  # fmt: skip
    np.testing.assert_allclose(got, _reference_penalty(p, proj), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    "dtype,tol", [(tf.float32, 1e-5), (tf.float16, 3e-3), (tf.bfloat16, 2e-2)], ids=str
)
def test_gradient_penalty_other_dtypes_with_dropout(rng, dtype, tol):
    """float32 and the 16-bit types (computed in float32; their reserve_space packs the float32
    dropout masks two elements per float32) against float64, with dropout between layers in
    training: the same seeds draw the same masks in every dtype, and the float64 second-order
    gradient with dropout is checked against finite differences above."""
    p = ref.Problem(rng, "lstm", 2, 3, 2, batch=3, steps=3, lengths=[3, 1, 2],
                    direction="bidirectional")  # fmt: skip
    proj = rng.normal(size=(3, 3, 6))

    def penalty_grad(dt):
        context.context().clear_kernel_cache()  # each dtype's first call: the same masks
        kw = p.op_kwargs(dt, is_training=True, dropout=0.5, seed=1, seed2=2)
        x, w = kw.pop("input"), kw.pop("params")
        fn = lambda t: tf.cast(tf_rnn_ops.cudnn_rnn(input=t, params=w, **kw)[0], tf.float64)  # noqa: E731
        with tf.GradientTape() as outer:
            outer.watch(w)
            with tf.GradientTape() as inner:
                inner.watch(x)
                score = tf.reduce_sum(fn(x) * proj)
            gx = tf.cast(inner.gradient(score, x), tf.float64)
            penalty = tf.reduce_sum(gx * gx)
        return tf.cast(outer.gradient(penalty, w), tf.float64).numpy()

    want = penalty_grad(tf.float64)
    got = penalty_grad(dtype)
    assert np.max(np.abs(got - want)) <= tol * np.max(np.abs(want))


@pytest.mark.parametrize("mode", ["gru", pytest.param("lstm", marks=pytest.mark.slow)])
def test_gradient_penalty_time_steps_unknown_in_graph(rng, mode):
    """A graph whose number of time steps is known only at run time, batch-major, variable
    lengths."""
    p = ref.Problem(rng, mode, 2, 3, 2, batch=3, steps=4, direction="bidirectional",
                    time_major=False, lengths=[4, 0, 3])  # fmt: skip
    kw = p.op_kwargs(is_training=True)
    x, w = kw.pop("input"), kw.pop("params")
    proj = tf.constant(rng.normal(size=(3, 4, 6)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 2], tf.float64)])
    def penalty_grad(x):
        with tf.GradientTape() as outer:
            outer.watch(w)
            with tf.GradientTape() as inner:
                inner.watch(x)
                score = tf.reduce_sum(tf_rnn_ops.cudnn_rnn(input=x, params=w, **kw)[0] * proj)
            gx = inner.gradient(score, x)
            penalty = tf.reduce_sum(gx * gx)
        return outer.gradient(penalty, w)

    np.testing.assert_allclose(
        penalty_grad(x).numpy(), _reference_penalty(p, proj), rtol=1e-9, atol=1e-10
    )


# ------------------------------------------------------------------------ GRU block cell grad op
def _cell_inputs(rng, B, n_in, H, dtype=np.float64):
    def u(*s):
        return tf.constant(rng.uniform(-1, 1, s).astype(dtype))

    x, h = u(B, n_in), u(B, H)
    w_ru, w_c, b_ru, b_c = u(n_in + H, 2 * H), u(n_in + H, H), u(2 * H), u(H)
    # r, u, c in their ranges, but independent inputs of the grad op (not from a forward)
    r = tf.constant(rng.uniform(0.05, 0.95, (B, H)).astype(dtype))
    z = tf.constant(rng.uniform(0.05, 0.95, (B, H)).astype(dtype))
    c = tf.constant(rng.uniform(-0.9, 0.9, (B, H)).astype(dtype))
    return [x, h, w_ru, w_c, b_ru, b_c, r, z, c, u(B, H)]


_GRAD_OPS = {
    "tf_rnn_ops": tf_rnn_ops.gru_block_cell_grad,
    "tf.raw_ops": lambda *a: tf.raw_ops.GRUBlockCellGrad(
        **dict(
            zip(["x", "h_prev", "w_ru", "w_c", "b_ru", "b_c", "r", "u", "c", "d_h"], a, strict=True)
        )
    ),
}


@pytest.mark.parametrize("sizes", [(3, 2, 4), (1, 1, 1), (2, 0, 3)], ids=["3-2-4", "1-1-1", "I0"])
def test_gru_block_cell_grad_op_gradient(rng, sizes):
    args = _cell_inputs(rng, *sizes)
    w = tf.constant(rng.normal(size=[sizes[0] * (sizes[1] + 4 * sizes[2])]))
    theo, num = tf.test.compute_gradient(
        lambda *a: tf.reshape(tf.reduce_sum(_flat(tf_rnn_ops.gru_block_cell_grad(*a)) * w), [1]),
        args,
        delta=1e-6,
    )
    for k, (a, b) in enumerate(zip(theo, num, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-8, err_msg=f"input {k}")
    assert np.max(np.abs(theo[1])) > 1e-3


def test_tf_gru_block_cell_grad_op_gradient(rng):
    """TensorFlow's own GRUBlockCellGrad (float32 only): finite differences in float32."""
    args = _cell_inputs(rng, 3, 2, 4, np.float32)
    w = tf.constant(rng.normal(size=[3 * (2 + 4 * 4)]).astype(np.float32))
    theo, num = tf.test.compute_gradient(
        lambda *a: tf.reshape(tf.reduce_sum(_flat(_GRAD_OPS["tf.raw_ops"](*a)) * w), [1]),
        args,
        delta=1e-2,
    )
    for k, (a, b) in enumerate(zip(theo, num, strict=True)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3, err_msg=f"input {k}")


@pytest.mark.parametrize("outputs", ["h", "r_u_c_h"])
def test_gru_block_cell_hessian_through_the_cell(rng, outputs):
    """A gradient penalty through the cell (forward op, its gradient, the grad op's gradient)
    against the cell's equations written as TF ops, differentiated twice; with a score on h alone,
    and on all of r, u, c, h (the cell's gradient then calls the grad op with u := 0)."""
    x, h, w_ru, w_c, b_ru, b_c = _cell_inputs(rng, 3, 2, 4)[:6]
    projs = [tf.constant(rng.normal(size=(3, 4))) for _ in range(4)]
    if outputs == "h":
        projs[:3] = [tf.zeros([3, 4], tf.float64)] * 3

    def cell_ref(x):
        ru = tf.sigmoid(tf.matmul(tf.concat([x, h], 1), w_ru) + b_ru)
        r, u = tf.split(ru, 2, 1)
        c = tf.tanh(tf.matmul(tf.concat([x, r * h], 1), w_c) + b_c)
        return r, u, c, u * h + (1 - u) * c

    def score(outs):
        return tf.add_n([tf.reduce_sum(o * q) for o, q in zip(outs, projs, strict=True)])

    weights = [w_ru, w_c, b_ru, b_c]
    one = tf.ones([1], tf.float64)
    got = _penalty_grads(
        lambda t: score(tf_rnn_ops.gru_block_cell(t, h, *weights)) * one, x, weights, one
    )
    want = _penalty_grads(lambda t: score(cell_ref(t)) * one, x, weights, one)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
