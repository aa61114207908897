"""tf_rnn_ops.cudnn_rnn (float64) against the independent float64 reference
(tests/support/rnn_reference.py): every mode × direction × input mode × layout × num_proj,
multi-layer, variable lengths (0 and T included); forward values and gradients w.r.t. input,
input_h, input_c and params."""

from __future__ import annotations

import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf

import tf_rnn_ops

TOL = dict(rtol=1e-9, atol=1e-10)


def _configs():
    out = []
    for mode in ref.MODES:
        for direction in ref.DIRECTIONS:
            for input_mode in ("linear_input", "skip_input"):
                for time_major in (True, False):
                    projs = (0, 2) if mode == "lstm" else (0,)
                    for num_proj in projs:
                        out.append((mode, direction, input_mode, time_major, num_proj))
    return out


CONFIGS = _configs()


def _id(c):
    mode, direction, input_mode, time_major, num_proj = c
    return f"{mode}-{direction[:3]}-{input_mode[:4]}-{'tm' if time_major else 'bm'}" + (
        f"-proj{num_proj}" if num_proj else ""
    )


def _problem(rng, cfg, **kw):
    mode, direction, input_mode, time_major, num_proj = cfg
    num_units = kw.pop("num_units", 3)
    input_size = num_units if input_mode == "skip_input" else kw.pop("input_size", 2)
    kw.setdefault("num_layers", 2)
    kw.setdefault("batch", 3)
    kw.setdefault("steps", 4)
    return ref.Problem(
        rng,
        mode,
        num_units=num_units,
        input_size=input_size,
        direction=direction,
        input_mode=input_mode,
        num_proj=num_proj,
        time_major=time_major,
        **kw,
    )


def _check_forward(p, res, tol=TOL):
    out, h, c = p.reference()
    assert len(res) == 5
    np.testing.assert_allclose(res[0].numpy(), out, **tol, err_msg="output")
    np.testing.assert_allclose(res[1].numpy(), h, **tol, err_msg="output_h")
    if p.is_lstm:
        np.testing.assert_allclose(res[2].numpy(), c, **tol, err_msg="output_c")
    else:
        assert tuple(res[2].shape) == (), (
            f"output_c of {p.mode} should be a [] dummy: {res[2].shape}"
        )
    assert res[4].dtype == tf.int8, "host_reserved must be int8"


def _op_grads(p, d_out, d_h, d_c, dtype=tf.float64, **kw):
    kwargs = p.op_kwargs(dtype, is_training=True, **kw)
    srcs = [kwargs["input"], kwargs["input_h"], kwargs["input_c"], kwargs["params"]]
    with tf.GradientTape() as tape:
        tape.watch(srcs)
        out, h, c, _, _ = tf_rnn_ops.cudnn_rnn(**kwargs)
        loss = tf.reduce_sum(out * tf.cast(d_out, dtype)) + tf.reduce_sum(h * tf.cast(d_h, dtype))
        if p.is_lstm:
            loss += tf.reduce_sum(c * tf.cast(d_c, dtype))
    return tape.gradient(loss, srcs)


def _check_grads(p, grads, d_out, d_h, d_c, tol=TOL):
    exp = p.reference_grads(d_out, d_h, d_c)
    names = ["input", "input_h", "input_c", "params"]
    for name, g, e in zip(names, grads, exp, strict=True):
        if name == "input_c" and not p.is_lstm:
            # input_c is ignored by non-LSTM modes: no gradient, or a zero one
            assert g is None or not np.any(np.asarray(g)), "input_c gradient of a non-lstm mode"
            continue
        assert g is not None, f"no gradient for {name}"
        g = np.asarray(tf.convert_to_tensor(g))
        assert g.shape == e.shape, f"d_{name} shape {g.shape} != {e.shape}"
        if name == "params":
            # report which canonical tensor differs
            gw, gb = ref.opaque_to_canonical(g, *p.layout_args)
            ew, eb = ref.opaque_to_canonical(e, *p.layout_args)
            for k, (a, b) in enumerate(zip(gw, ew, strict=True)):
                np.testing.assert_allclose(a, b, **tol, err_msg=f"d_params: canonical weight {k}")
            for k, (a, b) in enumerate(zip(gb, eb, strict=True)):
                np.testing.assert_allclose(a, b, **tol, err_msg=f"d_params: canonical bias {k}")
        np.testing.assert_allclose(g, e, **tol, err_msg=f"d_{name}")


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_forward_matches_reference(rng, cfg):
    p = _problem(rng, cfg)
    _check_forward(p, tf_rnn_ops.cudnn_rnn(**p.op_kwargs(is_training=True)))
    _check_forward(p, tf_rnn_ops.cudnn_rnn(**p.op_kwargs(is_training=False)))


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_gradients_match_reference(rng, cfg):
    p = _problem(rng, cfg)
    d = p.cotangents(rng)
    _check_grads(p, _op_grads(p, *d), *d)


@pytest.mark.parametrize("mode", ref.MODES)
def test_three_layers_auto_select(rng, mode):
    """auto_select = skip_input iff input_size == num_units; 3 layers."""
    for input_size in (3, 2):
        p = ref.Problem(
            rng, mode, num_layers=3, num_units=3, input_size=input_size, batch=3, steps=5,
            input_mode="auto_select", direction="bidirectional",
        )  # fmt: skip
        _check_forward(p, tf_rnn_ops.cudnn_rnn(**p.op_kwargs()))
        d = p.cotangents(rng)
        _check_grads(p, _op_grads(p, *d), *d)


@pytest.mark.parametrize(
    "mode,num_units,input_size,batch,steps",
    [
        ("gru", 257, 1, 3, 2),
        ("lstm", 1, 3, 257, 3),
        ("rnn_tanh", 1, 1, 1, 1),
        ("rnn_relu", 3, 257, 2, 3),
    ],
)
def test_odd_sizes(rng, mode, num_units, input_size, batch, steps):
    p = ref.Problem(rng, mode, 1, num_units, input_size, batch, steps, "bidirectional")
    _check_forward(p, tf_rnn_ops.cudnn_rnn(**p.op_kwargs()))
    d = p.cotangents(rng)
    _check_grads(p, _op_grads(p, *d), *d)


@pytest.mark.parametrize("mode", ref.MODES)
def test_longer_sequence(rng, mode):
    p = ref.Problem(rng, mode, 2, 5, 4, batch=4, steps=23, direction="bidirectional")
    _check_forward(p, tf_rnn_ops.cudnn_rnn(**p.op_kwargs()))
    d = p.cotangents(rng)
    _check_grads(p, _op_grads(p, *d), *d)


@pytest.mark.parametrize(
    "mode,num_proj,input_mode",
    [("gru", 0, "linear_input"), ("lstm", 2, "linear_input"), ("lstm", 0, "skip_input"),
     ("rnn_relu", 0, "linear_input")],
)  # fmt: skip
def test_steps_in_several_chunks(rng, mode, num_proj, input_mode):
    """T·B above the driver's 512-row chunks (RnnChunkSteps): B=37 gives chunks of 14 steps, so
    T=61 runs 4 · 14 + 5, with variable lengths, both directions, two layers."""
    p = _problem(
        rng, (mode, "bidirectional", input_mode, True, num_proj), batch=37, steps=61,
    )  # fmt: skip
    _check_forward(p, tf_rnn_ops.cudnn_rnn(**p.op_kwargs(is_training=True)))
    _check_forward(p, tf_rnn_ops.cudnn_rnn(**p.op_kwargs(is_training=False)))
    d = p.cotangents(rng)
    _check_grads(p, _op_grads(p, *d), *d)


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("time_major", [True, False])
def test_all_lengths_zero_returns_initial_state(rng, mode, time_major):
    p = ref.Problem(
        rng, mode, 2, 3, 2, batch=3, steps=4, direction="bidirectional", time_major=time_major,
        lengths=[0, 0, 0],
    )  # fmt: skip
    res = tf_rnn_ops.cudnn_rnn(**p.op_kwargs())
    np.testing.assert_array_equal(res[0].numpy(), 0.0)
    np.testing.assert_array_equal(res[1].numpy(), p.h0)
    if p.is_lstm:
        np.testing.assert_array_equal(res[2].numpy(), p.c0)
    d = p.cotangents(rng)
    _check_grads(p, _op_grads(p, *d), *d)


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("time_major", [True, False])
def test_empty_batch(rng, mode, time_major):
    p = ref.Problem(
        rng, mode, 2, 3, 2, batch=0, steps=4, direction="bidirectional", time_major=time_major
    )
    res = tf_rnn_ops.cudnn_rnn(**p.op_kwargs())
    out, h, c = p.reference()
    assert res[0].shape == out.shape and res[1].shape == h.shape
    if p.is_lstm:
        assert res[2].shape == c.shape
    d = p.cotangents(rng)
    grads = _op_grads(p, *d)
    for g, src in zip(grads, [p.x, p.h0, p.c0, p.params], strict=True):
        if g is not None:
            assert tuple(g.shape) == src.shape
    np.testing.assert_array_equal(np.asarray(grads[3]), 0.0)  # no data: no params gradient


@pytest.mark.parametrize("mode", ref.MODES)
def test_zero_steps_is_empty_or_rejected(rng, mode):
    """T = 0 is not in the contract: an empty output with the initial state, or an
    InvalidArgumentError; never a crash."""
    p = ref.Problem(rng, mode, 1, 3, 2, batch=2, steps=0, lengths=[0, 0])
    try:
        res = tf_rnn_ops.cudnn_rnn(**p.op_kwargs())
    except tf.errors.InvalidArgumentError:
        return
    assert tuple(res[0].shape) == (0, 2, 3)
    np.testing.assert_array_equal(res[1].numpy(), p.h0)


@pytest.mark.parametrize("mode", ["gru", "rnn_tanh", "rnn_relu"])
def test_non_lstm_ignores_input_c(rng, mode):
    """Other modes ignore input_c: any value/shape (Keras passes a scalar 0) gives the same
    result."""
    p = ref.Problem(rng, mode, 1, 3, 2, batch=2, steps=3)
    a = tf_rnn_ops.cudnn_rnn(**p.op_kwargs())
    b = tf_rnn_ops.cudnn_rnn(**p.op_kwargs(input_c=tf.constant(0.0, tf.float64)))
    c = tf_rnn_ops.cudnn_rnn(
        **p.op_kwargs(input_c=tf.fill(p.c0.shape, tf.constant(7.0, tf.float64)))
    )
    for r in (a, b, c):
        _check_forward(p, r)


@pytest.mark.parametrize("mode", ref.MODES)
def test_graph_mode_equals_eager(rng, mode):
    p = ref.Problem(rng, mode, 2, 3, 2, batch=3, steps=4, direction="bidirectional")
    kw = p.op_kwargs()
    tensors = {k: v for k, v in kw.items() if isinstance(v, tf.Tensor)}
    attrs = {k: v for k, v in kw.items() if not isinstance(v, tf.Tensor)}

    @tf.function
    def f(t):
        with tf.GradientTape() as tape:
            tape.watch([t["input"], t["params"]])
            res = tf_rnn_ops.cudnn_rnn(**t, **attrs)
            loss = tf.reduce_sum(res[0]) + tf.reduce_sum(res[1])
        return res[:3], tape.gradient(loss, [t["input"], t["params"]])

    res, g = f(tensors)
    _check_forward(p, list(res) + [None, tf.zeros([0], tf.int8)])
    d_out = np.ones_like(p.reference()[0])
    d_h = np.ones_like(p.reference()[1])
    dx, _, _, dp = p.reference_grads(d_out, d_h, None)
    np.testing.assert_allclose(g[0].numpy(), dx, **TOL)
    np.testing.assert_allclose(g[1].numpy(), dp, **TOL)


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("time_major", [True, False])
def test_backprop_op_called_directly(rng, mode, time_major):
    """cudnn_rnn_backprop takes CudnnRNNBackpropV3's keyword arguments and returns its 4 outputs."""
    p = ref.Problem(
        rng, mode, 2, 3, 2, batch=3, steps=4, direction="bidirectional", time_major=time_major
    )
    kw = p.op_kwargs(is_training=True)
    out, h, c, reserve, host = tf_rnn_ops.cudnn_rnn(**kw)
    d_out, d_h, d_c = p.cotangents(rng)
    kw.pop("is_training")
    res = tf_rnn_ops.cudnn_rnn_backprop(
        output=out,
        output_h=h,
        output_c=c,
        output_backprop=tf.constant(d_out),
        output_h_backprop=tf.constant(d_h),
        output_c_backprop=tf.constant(d_c) if p.is_lstm else tf.zeros_like(c),
        reserve_space=reserve,
        host_reserved=host,
        **kw,
    )
    assert len(res) == 4
    _check_grads(p, list(res), d_out, d_h, d_c)


def _backprop_ops(concrete_fn):
    return [op for op in concrete_fn.graph.get_operations() if op.type == "TfRnn>CudnnRNNBackprop"]


@pytest.mark.parametrize(
    "cfg",
    [("gru", "bidirectional", "linear_input", True, 0), ("lstm", "unidirectional", "linear_input",
     False, 2), ("rnn_tanh", "bidirectional", "skip_input", True, 0)],
    ids=_id,
)  # fmt: skip
@pytest.mark.parametrize("first", [0, 1, 3], ids=["all", "no_input", "params_only"])
@pytest.mark.parametrize("traced", [True, False])
def test_gradients_when_the_input_needs_none(rng, cfg, first, traced):
    """A tape that does not ask for the input's gradient (a model's training step: the data is no
    variable), or for neither the input's nor the initial states' (a layer called without states),
    still gets every other gradient right, and the backprop op is told to skip their products; a
    tape that asks gets them. Eagerly and in a tf.function."""
    p = _problem(rng, cfg, batch=5, steps=6)
    d = p.cotangents(rng)
    kwargs = p.op_kwargs(tf.float64, is_training=True)
    names = ["input", "input_h", "input_c", "params"]
    srcs = [kwargs[n] for n in names[first:]]

    def grads():
        with tf.GradientTape() as tape:
            tape.watch(srcs)
            out, h, c, _, _ = tf_rnn_ops.cudnn_rnn(**kwargs)
            loss = tf.reduce_sum(out * d[0]) + tf.reduce_sum(h * d[1])
            if p.is_lstm:
                loss += tf.reduce_sum(c * d[2])
        return tape.gradient(loss, srcs)

    if traced:
        grads = tf.function(grads)
        (bp,) = _backprop_ops(grads.get_concrete_function())
        assert bp.get_attr("skip_input_backprop") is (first > 0)
        assert bp.get_attr("skip_state_backprop") is (first > 2)
    got = grads()
    exp = p.reference_grads(*d)[first:]
    for name, g, e in zip(names[first:], got, exp, strict=True):
        if name == "input_c" and not p.is_lstm:
            continue
        np.testing.assert_allclose(np.asarray(g), e, **TOL, err_msg=f"d_{name}")


def test_tf_gradients_computes_the_input_gradient(rng):
    """tf.gradients (graph mode) cannot say which inputs need no gradient: nothing is skipped."""
    p = _problem(rng, ("gru", "unidirectional", "linear_input", True, 0))
    d = p.cotangents(rng)
    kwargs = p.op_kwargs(tf.float64, is_training=True)

    @tf.function
    def grads():
        out, h, _, _, _ = tf_rnn_ops.cudnn_rnn(**kwargs)
        loss = tf.reduce_sum(out * d[0]) + tf.reduce_sum(h * d[1])
        return tf.gradients(loss, [kwargs["input"], kwargs["params"]])

    got = grads()
    (bp,) = _backprop_ops(grads.get_concrete_function())
    assert bp.get_attr("skip_input_backprop") is False
    assert bp.get_attr("skip_state_backprop") is False
    exp = p.reference_grads(*d)
    np.testing.assert_allclose(got[0].numpy(), exp[0], **TOL, err_msg="d_input")
    np.testing.assert_allclose(got[1].numpy(), exp[3], **TOL, err_msg="d_params")


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("H", [1, 3, 4, 5, 12, 21])
def test_training_forward_of_rows_ending_in_a_partial_vector(rng, mode, H):
    """Training computes each step's input side in place of the activations it becomes, except
    where a row ends in a partial SIMD vector (H = 1, 3, 5, 12, 21 with AVX-512; 4 and 12 are whole
    vectors on AVX2 and AVX-512 resp.), where it reads it from the chunk's scratch as inference
    does (docs/PERFORMANCE.md item 111). float32, both directions, variable lengths, batch and
    steps enough for both threads: the training forward equals the inference forward bitwise and
    the float64 reference; the gradients (from the reserve the training forward wrote), float64
    and float32, equal the reference's."""
    p = ref.Problem(rng, mode, 1, H, 3, batch=67, steps=21, direction="bidirectional")
    _check_float32_training_forward_and_grads(rng, p)


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("H", [1, 5, 16, 17])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_full_rows_of_narrow_layers(rng, mode, H, num_layers):
    """Full rows (no lengths) of narrow layers: SimpleRNN cells of H <= 16 run a step's rows
    through the cell as one row of their units (rnn_cpu_driver.h, CellRunsFlat; H = 17 does not),
    forward and backward; the other one-product cells at H = 1 a vector of rows at a time
    (CpuUnitRows: 70 rows, 4 vectors of 16 and 6 rows one at a time). Both directions, two layers
    (the second's input the first's outputs), training and inference, both threads taking a share.
    The training forward equals the inference forward bitwise and the float64 reference; the
    gradients, float64 and float32, equal the reference's."""
    p = ref.Problem(
        rng, mode, num_layers, H, 3, batch=70, steps=6, direction="bidirectional", lengths="full"
    )
    _check_float32_training_forward_and_grads(rng, p)


def _check_float32_training_forward_and_grads(rng, p):
    """The float32 training forward equals the inference forward bitwise and the float64
    reference; the gradients from its reserve, float64 and float32, equal the reference's."""
    train = tf_rnn_ops.cudnn_rnn(**p.op_kwargs(tf.float32, is_training=True))
    infer = tf_rnn_ops.cudnn_rnn(**p.op_kwargs(tf.float32, is_training=False))
    for k, want in enumerate(p.reference()):
        if want is None:
            continue
        np.testing.assert_array_equal(train[k].numpy(), infer[k].numpy())
        np.testing.assert_allclose(train[k].numpy(), want, rtol=2e-5, atol=2e-5)
    d = p.cotangents(rng)
    _check_grads(p, _op_grads(p, *d), *d)
    _check_grads(p, _op_grads(p, *d, dtype=tf.float32), *d, tol=dict(rtol=2e-3, atol=2e-3))
