"""TfRnn>GRUBlockCell / GRUBlockCellGrad kernels: against TensorFlow's kernels, a numpy float64
implementation of docs/MATH.md, "GRU block cell", the 16-bit types, empty sizes and malformed
inputs."""

from __future__ import annotations

import itertools
import os
import re
import secrets

import numpy as np
import pytest
import tensorflow as tf

import tf_rnn_ops
from tf_rnn_ops import gru_block_cell, gru_block_cell_grad

INPUTS = ("x", "h_prev", "w_ru", "w_c", "b_ru", "b_c")
GRAD_INPUTS = INPUTS + ("r", "u", "c", "d_h")


@pytest.fixture
def fresh_rng() -> np.random.Generator:
    """Fresh random data on every run; the seed is printed (shown on failure) and can be forced
    with TF_RNN_OPS_TEST_SEED."""
    seed = int(os.environ.get("TF_RNN_OPS_TEST_SEED") or secrets.randbits(32))
    print(f"random seed {seed} (reproduce with TF_RNN_OPS_TEST_SEED={seed})")
    return np.random.default_rng(seed)


def make_inputs(rng, batch, input_size, cell):
    """Random inputs with weights scaled so that the gates are neither saturated nor linear."""
    scale = 1.0 / np.sqrt(max(input_size + cell, 1))
    return dict(
        x=rng.standard_normal((batch, input_size)),
        h_prev=rng.uniform(-1, 1, (batch, cell)),
        w_ru=rng.standard_normal((input_size + cell, 2 * cell)) * 1.5 * scale,
        w_c=rng.standard_normal((input_size + cell, cell)) * 1.5 * scale,
        b_ru=rng.standard_normal(2 * cell) * 0.5,
        b_c=rng.standard_normal(cell) * 0.5,
    )


def cast_all(d, dtype):
    return {k: np.asarray(v).astype(dtype) for k, v in d.items()}


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference_forward(x, h_prev, w_ru, w_c, b_ru, b_c):
    """docs/MATH.md, "GRU block cell", forward, in numpy."""
    cell = h_prev.shape[1]
    ru_bar = np.concatenate([x, h_prev], axis=1) @ w_ru + b_ru
    r, u = sigmoid(ru_bar[:, :cell]), sigmoid(ru_bar[:, cell:])
    c = np.tanh(np.concatenate([x, h_prev * r], axis=1) @ w_c + b_c)
    h = u * h_prev + (1 - u) * c
    return r, u, c, h


def reference_grad(x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h):
    """docs/MATH.md, "GRU block cell", grad kernel, in numpy."""
    input_size = x.shape[1]
    d_c_bar = d_h * (1 - u) * (1 - c * c)
    d_u_bar = d_h * (h_prev - c) * u * (1 - u)
    d_xh_c = d_c_bar @ w_c.T
    d_x_c, d_h_prevr = d_xh_c[:, :input_size], d_xh_c[:, input_size:]
    d_r_bar = d_h_prevr * h_prev * r * (1 - r)
    d_r_bar_u_bar = np.concatenate([d_r_bar, d_u_bar], axis=1)
    d_xh_ru = d_r_bar_u_bar @ w_ru.T
    d_x = d_xh_ru[:, :input_size] + d_x_c
    d_h_prev = d_xh_ru[:, input_size:] + d_h_prevr * r + d_h * u
    return d_x, d_h_prev, d_c_bar, d_r_bar_u_bar


def assert_all_close(actual, expected, rtol, atol, what=""):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        a = np.asarray(a, dtype=np.float64)
        e = np.asarray(e, dtype=np.float64)
        assert a.shape == e.shape, f"{what} output {i}: shape {a.shape} != {e.shape}"
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"{what} output {i}")


SIZES = (1, 3, 257)
SHAPES = list(itertools.product(SIZES, SIZES, SIZES)) + [(0, 3, 4), (0, 257, 1), (5, 0, 3)]


def gemm_atol(expected, depth):
    """An absolute tolerance for float32 results of sums over `depth` products computed in another
    order (TensorFlow's kernels use oneDNN's GEMM, ours Eigen's): eps * sqrt(depth) * magnitude."""
    magnitude = max([1.0] + [float(np.max(np.abs(e), initial=0)) for e in expected])
    return 2e-7 * np.sqrt(depth + 1) * magnitude


@pytest.mark.parametrize("batch,input_size,cell", SHAPES)
def test_matches_tensorflow_float32(fresh_rng, batch, input_size, cell):
    inputs = cast_all(make_inputs(fresh_rng, batch, input_size, cell), np.float32)
    ours = gru_block_cell(**inputs)
    theirs = tf.raw_ops.GRUBlockCell(**inputs)
    assert [t.shape for t in ours] == [(batch, cell)] * 4
    atol = gemm_atol([t.numpy() for t in theirs], input_size + cell)
    assert_all_close(ours, theirs, rtol=1e-5, atol=atol, what="GRUBlockCell")

    r, u, c, _ = (t.numpy() for t in theirs)
    d_h = fresh_rng.standard_normal((batch, cell)).astype(np.float32)
    grad_inputs = dict(inputs, r=r, u=u, c=c, d_h=d_h)
    ours = gru_block_cell_grad(**grad_inputs)
    theirs = tf.raw_ops.GRUBlockCellGrad(**grad_inputs)
    assert [tuple(t.shape) for t in ours] == [
        (batch, input_size),
        (batch, cell),
        (batch, cell),
        (batch, 2 * cell),
    ]
    # TensorFlow's d_h_prev agrees with docs/MATH.md (d_h_prev_ru + d_h_prevr * r + d_h * u):
    # checked against numpy in float64 below; here the two kernels must agree on everything.
    atol = gemm_atol([t.numpy() for t in theirs], input_size + 2 * cell)
    assert_all_close(ours, theirs, rtol=1e-5, atol=atol, what="GRUBlockCellGrad")


@pytest.mark.parametrize("batch,input_size,cell", [(1, 1, 1), (3, 5, 4), (16, 33, 17), (2, 0, 3)])
def test_float64_matches_numpy_spec(fresh_rng, batch, input_size, cell):
    inputs = make_inputs(fresh_rng, batch, input_size, cell)
    expected = reference_forward(**inputs)
    ours = gru_block_cell(**inputs)
    assert all(t.dtype == tf.float64 for t in ours)
    assert_all_close(ours, expected, rtol=1e-12, atol=1e-12, what="forward")

    r, u, c, _ = expected
    d_h = fresh_rng.standard_normal((batch, cell))
    ours = gru_block_cell_grad(**inputs, r=r, u=u, c=c, d_h=d_h)
    expected = reference_grad(**inputs, r=r, u=u, c=c, d_h=d_h)
    assert_all_close(ours, expected, rtol=1e-12, atol=1e-12, what="grad")


@pytest.mark.parametrize(
    "dtype,tol", [(np.float16, 4e-3), (tf.bfloat16.as_numpy_dtype, 3e-2)], ids=["half", "bf16"]
)
def test_16bit_close_to_float32(fresh_rng, dtype, tol):
    batch, input_size, cell = 7, 12, 9
    low = cast_all(make_inputs(fresh_rng, batch, input_size, cell), dtype)
    as_f32 = cast_all(low, np.float32)  # the same (rounded) values in float32
    ours = gru_block_cell(**low)
    assert all(t.dtype == tf.as_dtype(dtype) for t in ours)
    assert_all_close(ours, gru_block_cell(**as_f32), rtol=tol, atol=tol, what="forward")

    r, u, c, _ = ours
    d_h = fresh_rng.standard_normal((batch, cell)).astype(dtype)
    ours = gru_block_cell_grad(**low, r=r, u=u, c=c, d_h=d_h)
    f32 = gru_block_cell_grad(
        **as_f32,
        **cast_all(dict(r=r.numpy(), u=u.numpy(), c=c.numpy(), d_h=d_h), np.float32),
    )
    assert all(t.dtype == tf.as_dtype(dtype) for t in ours)
    assert_all_close(ours, f32, rtol=tol, atol=2 * tol, what="grad")


@pytest.mark.parametrize(
    "batch,input_size,cell", [(0, 3, 4), (0, 0, 0), (3, 0, 4), (3, 4, 0), (0, 4, 0), (2, 0, 0)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_empty_sizes(fresh_rng, batch, input_size, cell, dtype):
    inputs = cast_all(make_inputs(fresh_rng, batch, input_size, cell), dtype)
    r, u, c, h = gru_block_cell(**inputs)
    for t in (r, u, c, h):
        assert t.shape == (batch, cell)
    expected = reference_forward(**cast_all(inputs, np.float64))
    assert_all_close((r, u, c, h), expected, rtol=1e-2, atol=1e-2)
    d_h = np.ones((batch, cell), dtype)
    d_x, d_h_prev, d_c_bar, d_r_bar_u_bar = gru_block_cell_grad(**inputs, r=r, u=u, c=c, d_h=d_h)
    assert d_x.shape == (batch, input_size)
    assert d_h_prev.shape == (batch, cell)
    assert d_c_bar.shape == (batch, cell)
    assert d_r_bar_u_bar.shape == (batch, 2 * cell)
    if cell == 0:  # d_x is a sum over an empty dimension (TensorFlow's kernel leaves it unset)
        np.testing.assert_array_equal(d_x.numpy(), np.zeros((batch, input_size)))
    expected = reference_grad(
        **cast_all(inputs, np.float64), r=r.numpy(), u=u.numpy(), c=c.numpy(), d_h=d_h
    )
    assert_all_close((d_x, d_h_prev, d_c_bar, d_r_bar_u_bar), expected, rtol=1e-2, atol=1e-2)


def test_shape_inference_infers_every_output():
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 5]),  # x: B unknown
            tf.TensorSpec([None, None]),  # h_prev: H unknown here
            tf.TensorSpec([None, 8]),  # w_ru: 2H = 8
            tf.TensorSpec([None, None]),
            tf.TensorSpec([None]),
            tf.TensorSpec([None]),
        ]
    )
    def fwd(x, h_prev, w_ru, w_c, b_ru, b_c):
        outs = gru_block_cell(x, h_prev, w_ru, w_c, b_ru, b_c)
        for t in outs:
            assert t.shape.as_list() == [None, 4], t.shape
        grads = gru_block_cell_grad(x, h_prev, w_ru, w_c, b_ru, b_c, *outs[:3], outs[3])
        shapes = [t.shape.as_list() for t in grads]
        assert shapes == [[None, 5], [None, 4], [None, 4], [None, 8]], shapes
        return outs

    fwd.get_concrete_function()

    # the input size from the weights when x's is unknown, the batch from any [B, H] input
    unknown = tf.TensorSpec([None, None])

    @tf.function(
        input_signature=[unknown, tf.TensorSpec([None, 3]), tf.TensorSpec([7, 6]), unknown]
        + [tf.TensorSpec([None])] * 2
        + [unknown] * 3
        + [tf.TensorSpec([2, None])]
    )
    def bwd(x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h):
        shapes = [
            t.shape.as_list()
            for t in gru_block_cell_grad(x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h)
        ]
        assert shapes == [[2, 4], [2, 3], [2, 3], [2, 6]], shapes
        return 0

    bwd.get_concrete_function()


# ----------------------------------------------------------------------------- malformed inputs

NB, NI, NH = 3, 4, 5  # batch, input and cell size
GOOD_SHAPES = dict(
    x=(NB, NI),
    h_prev=(NB, NH),
    w_ru=(NI + NH, 2 * NH),
    w_c=(NI + NH, NH),
    b_ru=(2 * NH,),
    b_c=(NH,),
    r=(NB, NH),
    u=(NB, NH),
    c=(NB, NH),
    d_h=(NB, NH),
)


def malformed_cases(names):
    """(input name, its bad shape): a wrong rank, and every dimension off by one."""
    for name in names:
        shape = GOOD_SHAPES[name]
        yield name, shape + (1,)
        yield name, shape[:-1]
        for d in range(len(shape)):
            yield name, tuple(s + (1 if i == d else 0) for i, s in enumerate(shape))


CASES = [("fwd", n, s) for n, s in malformed_cases(INPUTS)] + [
    ("grad", n, s) for n, s in malformed_cases(GRAD_INPUTS)
]


def _call(kind, arrays):
    if kind == "fwd":
        return gru_block_cell(**{k: arrays[k] for k in INPUTS})
    return gru_block_cell_grad(**arrays)


def _names(message: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(\.dims|\s|')", message) is not None


@pytest.mark.parametrize("kind,name,shape", CASES, ids=[f"{k}-{n}-{s}" for k, n, s in CASES])
def test_malformed_input_is_an_error_naming_it(kind, name, shape):
    arrays = {k: np.zeros(s, np.float32) for k, s in GOOD_SHAPES.items()}
    arrays[name] = np.zeros(shape, np.float32)

    # eager: the kernel's InvalidArgumentError
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _call(kind, arrays)
    assert _names(info.value.message, name), info.value.message
    assert re.search(r"\(=\d+\)|rank", info.value.message), info.value.message

    # graph with static shapes: the shape function's ValueError
    with tf.Graph().as_default(), pytest.raises(ValueError) as info:
        _call(kind, {k: tf.constant(v) for k, v in arrays.items()})
    assert _names(str(info.value), name), str(info.value)

    # graph with unknown shapes: the kernel's error at run time
    specs = [tf.TensorSpec(None, tf.float32) for _ in arrays]
    fn = tf.function(
        lambda *a: _call(kind, dict(zip(arrays, a, strict=True))), input_signature=specs
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        fn(*arrays.values())
    assert _names(info.value.message, name), info.value.message


@pytest.mark.parametrize(
    "kind,name", [("fwd", n) for n in INPUTS] + [("grad", n) for n in GRAD_INPUTS]
)
def test_wrong_dtype_is_an_error_naming_it(kind, name):
    tensors = {k: tf.zeros(s, tf.float32) for k, s in GOOD_SHAPES.items()}
    for bad in (tf.float64, tf.int32):
        args = dict(tensors, **{name: tf.zeros(GOOD_SHAPES[name], bad)})
        with pytest.raises(TypeError, match=rf"'{name}'"):
            _call(kind, args)
        with tf.Graph().as_default(), pytest.raises(TypeError, match=rf"'{name}'"):
            _call(kind, {k: tf.zeros(v.shape, v.dtype) for k, v in args.items()})


def test_all_inputs_int_is_a_type_error():
    with pytest.raises(TypeError, match="'x'"):
        gru_block_cell(**{k: tf.zeros(GOOD_SHAPES[k], tf.int32) for k in INPUTS})


def test_same_keywords_as_raw_ops():
    import inspect

    for ours, theirs in [
        (tf_rnn_ops.gru_block_cell, tf.raw_ops.GRUBlockCell),
        (tf_rnn_ops.gru_block_cell_grad, tf.raw_ops.GRUBlockCellGrad),
    ]:
        ours_params = list(inspect.signature(ours).parameters)
        theirs_params = list(inspect.signature(theirs).parameters)
        assert ours_params == theirs_params
    rng = np.random.default_rng()
    inputs = cast_all(make_inputs(rng, 2, 3, 4), np.float32)
    out = tf_rnn_ops.gru_block_cell(**inputs)
    assert out._fields == tf.raw_ops.GRUBlockCell(**inputs)._fields
    grad = tf_rnn_ops.gru_block_cell_grad(**inputs, r=out.r, u=out.u, c=out.c, d_h=out.h)
    assert grad._fields == ("d_x", "d_h_prev", "d_c_bar", "d_r_bar_u_bar")
