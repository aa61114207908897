"""The CUDA layer's drivers and kernels, run on the CPU through its host emulation
(cc/cuda/cuda_compat.h): every kernel body and every GEMM the GPU would run, in float64, against the
numpy references of docs/MATH.md ("GRU block cell", "Fused RNN cells") and against finite
differences. Needs no GPU; skipped unless the emulation library is built (`make gpu-check` builds it
and runs this file)."""

from __future__ import annotations

import os

import cuda_rnn_reference as ref
import numpy as np
import pytest
import tfrnn_cuda_ctypes as tc

if not os.path.exists(tc.EMU_LIBRARY):
    pytest.skip(
        f"CUDA host emulation not built ({tc.EMU_LIBRARY}); `make gpu-check` builds it",
        allow_module_level=True,
    )


@pytest.fixture(scope="module", params=[1, 0], ids=["fused_steps", "gemm_steps"])
def lib(request):
    """The emulated library, its forward steps one fused kernel each (FusedForwardStepKernel), or
    a GEMM and a gate kernel each: every test runs both ways."""
    library = tc.Library(tc.EMU_LIBRARY, tc.NumpyBackend())
    assert library.emulated
    previous = library.set_fused_steps(request.param)
    yield library
    library.set_fused_steps(previous)
    library.close()


def _rand(rng, *shape, scale=0.5):
    return rng.uniform(-scale, scale, size=shape)


# ------------------------------------------------------------------------------------- GRU cell
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch,isz,hsz", [(3, 4, 5), (1, 1, 1), (2, 0, 3), (4, 6, 2)])
def test_gru_block_cell_matches_spec(lib, dtype, batch, isz, hsz):
    rng = np.random.default_rng(batch * 100 + isz * 10 + hsz)
    x, h = _rand(rng, batch, isz), _rand(rng, batch, hsz)
    w_ru, w_c = _rand(rng, isz + hsz, 2 * hsz), _rand(rng, isz + hsz, hsz)
    b_ru, b_c = _rand(rng, 2 * hsz), _rand(rng, hsz)
    d_h = _rand(rng, batch, hsz)
    be = lib.backend
    ins = [be.from_numpy(a, dtype) for a in (x, h, w_ru, w_c, b_ru, b_c)]
    got = lib.gru_block_cell(*ins, dtype=dtype)
    want = ref.gru_block_cell(x, h, w_ru, w_c, b_ru, b_c)
    tol = 1e-12 if dtype == "float64" else 2e-6
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
    got_grad = lib.gru_block_cell_grad(
        *ins, *[be.from_numpy(a, dtype) for a in (*want[:3], d_h)], dtype=dtype
    )
    want_grad = ref.gru_block_cell_grad(x, h, w_ru, w_c, b_ru, b_c, *want[:3], d_h)
    for g, w in zip(got_grad, want_grad, strict=True):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype_code", [-1, 2, 7])
def test_gru_block_cell_rejects_an_unknown_dtype(lib, dtype_code):
    # Rejected before any pointer is read (all null here), with the code in the message.
    null = [None] * 11
    forward = lib.lib.tfrnn_gru_block_cell_forward(None, None, dtype_code, 2, 3, 4, *null)
    assert forward != 0
    assert f"unknown dtype {dtype_code}" in lib.lib.tfrnn_last_error().decode()
    null = [None] * 15
    backward = lib.lib.tfrnn_gru_block_cell_backward(None, None, dtype_code, 2, 3, 4, *null)
    assert backward != 0
    assert f"unknown dtype {dtype_code}" in lib.lib.tfrnn_last_error().decode()
    assert lib.lib.tfrnn_gru_block_cell_workspace_bytes(dtype_code, 2, 3, 4) == -1


def test_gru_block_cell_empty_batch(lib):
    z = np.zeros((0, 3))
    outs = lib.gru_block_cell(
        z, np.zeros((0, 2)), np.ones((5, 4)), np.ones((5, 2)), np.ones(4), np.ones(2), "float64"
    )
    assert all(o.shape == (0, 2) for o in outs)


# ------------------------------------------------------------------------------------ fused RNN
CASES = [
    # mode, layers, units, input, dirs, proj, skip
    ("rnn_tanh", 1, 3, 4, 1, 0, False),
    ("rnn_relu", 2, 4, 3, 2, 0, False),
    ("lstm", 2, 3, 4, 1, 0, False),
    ("lstm", 2, 4, 3, 2, 2, False),
    ("gru", 1, 3, 2, 2, 0, False),
    ("gru", 3, 3, 3, 1, 0, True),
    ("lstm", 2, 3, 3, 2, 0, True),
    # gru_reset_before: two recurrent products a step ([R_r; R_z] h, then R_h (r ⊙ h))
    ("gru_reset_before", 2, 3, 4, 2, 0, False),
    ("gru_reset_before", 1, 1, 1, 1, 0, False),
    ("gru_reset_before", 3, 3, 3, 1, 0, True),
]


def _case_id(case):
    mode, layers, units, isz, dirs, proj, skip = case
    return f"{mode}-L{layers}-H{units}-I{isz}-d{dirs}-p{proj}{'-skip' if skip else ''}"


def _problem(case, rng, steps=5, batch=3, time_major=True):
    mode, layers, units, isz, dirs, proj, skip = case
    shape = ref.RnnShape(mode, layers, units, isz, dirs, proj, skip)
    hout = shape.h_out
    seq = (steps, batch) if time_major else (batch, steps)
    x = _rand(rng, *seq, isz, scale=1.0)
    n = dirs * layers

    def state(w):
        return _rand(rng, *((n, batch, w) if time_major else (batch, n, w)))

    h0, c0 = state(hout), state(units)
    params = _rand(rng, shape.params_size(), scale=0.6)
    return shape, x, h0, c0, params


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
@pytest.mark.parametrize("lengths", [None, [5, 2, 0]], ids=["full", "varlen"])
def test_forward_matches_reference(lib, case, time_major, lengths):
    rng = np.random.default_rng(7)
    shape, x, h0, c0, params = _problem(case, rng, time_major=time_major)
    rnn = lib.rnn(shape, "float64", time_major=time_major)
    assert rnn.params_size() == shape.params_size()
    c_in = c0 if shape.mode == "lstm" else None
    for training in (False, True):
        y, hy, cy, _ = rnn.forward(x, h0, c_in, params, lengths, is_training=training)
        wy, why, wcy = ref.rnn_forward(shape, params, x, h0, c_in, lengths, time_major)
        np.testing.assert_allclose(y, wy, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(hy, why, rtol=1e-12, atol=1e-12)
        if shape.mode == "lstm":
            np.testing.assert_allclose(cy, wcy, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "case",
    [("lstm", 2, 4, 3, 2, 2, False), ("gru_reset_before", 2, 5, 3, 2, 0, False)],
    ids=_case_id,
)
def test_forward_float32(lib, case):
    rng = np.random.default_rng(3)
    shape, x, h0, c0, params = _problem(case, rng)
    c_in = c0 if shape.mode == "lstm" else None
    rnn = lib.rnn(shape, "float32")
    f32 = [None if a is None else np.asarray(a, np.float32) for a in (x, h0, c_in, params)]
    for training in (False, True):
        y, hy, cy, _ = rnn.forward(*f32, lengths=[5, 1, 3], is_training=training)
        wy, why, wcy = ref.rnn_forward(shape, params, x, h0, c_in, [5, 1, 3])
        for g, w in ((y, wy), (hy, why), (cy, wcy)):
            if w is not None:
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_gru_reset_before_wide_odd_units(lib, time_major):
    """257 units (more than one block of threads per row), odd batch, variable lengths: the
    forward against the float64 reference, the backprop against finite differences."""
    rng = np.random.default_rng(257)
    case = ("gru_reset_before", 1, 257, 5, 2, 0, False)
    shape, x, h0, c0, params = _problem(case, rng, steps=3, batch=3, time_major=time_major)
    params *= 0.2  # keep the 257-wide products off the saturated ends of σ and tanh
    rnn = lib.rnn(shape, "float64", time_major=time_major)
    lengths = [3, 1, 2]
    y, hy, _, _ = rnn.forward(x, h0, None, params, lengths, is_training=True)
    wy, why, _ = ref.rnn_forward(shape, params, x, h0, None, lengths, time_major)
    np.testing.assert_allclose(y, wy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hy, why, rtol=1e-12, atol=1e-12)
    _check_grads(rnn, shape, x, h0, c0, params, lengths, rng, n_dirs=2)


@pytest.mark.parametrize("mode", ["gru", "lstm", "rnn_tanh"])
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_wide_steps_match_reference(lib, mode, time_major):
    """150 units and 19 rows, both directions, variable lengths: FusedForwardStepKernel's tiles
    (8 rows by 32 units) end inside the batch and the units, and h is staged in 2 chunks of the
    inner dimension (128 and 22); the forward against the float64 reference, inference and
    training."""
    rng = np.random.default_rng()
    case = (mode, 2, 150, 6, 2, 0, False)
    batch, steps = 19, 3
    shape, x, h0, c0, params = _problem(case, rng, steps=steps, batch=batch, time_major=time_major)
    params *= 0.2  # keep the 150-wide products off the saturated ends of σ and tanh
    lengths = list(rng.integers(0, steps + 1, batch))
    lengths[0] = steps
    c_in = c0 if mode == "lstm" else None
    rnn = lib.rnn(shape, "float64", time_major=time_major)
    wy, why, wcy = ref.rnn_forward(shape, params, x, h0, c_in, lengths, time_major)
    for training in (False, True):
        y, hy, cy, _ = rnn.forward(x, h0, c_in, params, lengths, is_training=training)
        np.testing.assert_allclose(y, wy, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(hy, why, rtol=1e-12, atol=1e-12)
        if mode == "lstm":
            np.testing.assert_allclose(cy, wcy, rtol=1e-12, atol=1e-12)
    if mode == "gru":  # the backprop reads what the fused forward saved in the reserve
        _check_grads(rnn, shape, x, h0, c0, params, lengths, rng)


def test_spec_reference_value(lib):
    """docs/MATH.md, "Params layout": rnn_relu, 2 layers, 8 units, input 4, batch 4, 2 steps,
    everything 1 -> 130688."""
    shape = ref.RnnShape("rnn_relu", 2, 8, 4)
    rnn = lib.rnn(shape, "float32")
    ones = np.ones
    y, hy, _, _ = rnn.forward(
        ones((2, 4, 4), np.float32),
        ones((2, 4, 8), np.float32),
        None,
        ones(shape.params_size(), np.float32),
    )
    assert float(y.sum() + hy.sum()) == 130688.0


def _loss_and_grads(rnn, x, h0, c0, params, lengths, weights):
    """L = Σ wy·y + Σ wh·hy (+ Σ wc·cy) with the backprop's grads of x, h0, c0, params."""
    wy, wh, wc = weights
    y, hy, cy, reserve = rnn.forward(x, h0, c0, params, lengths, is_training=True)
    loss = float((wy * y).sum() + (wh * hy).sum() + (0 if cy is None else (wc * cy).sum()))
    grads = rnn.backward(x, params, wy, wh, wc if cy is not None else None, reserve, lengths)
    return loss, grads


def _loss(rnn, x, h0, c0, params, lengths, weights):
    wy, wh, wc = weights
    y, hy, cy, _ = rnn.forward(x, h0, c0, params, lengths, is_training=True)
    return float((wy * y).sum() + (wh * hy).sum() + (0 if cy is None else (wc * cy).sum()))


def _check_grads(rnn, shape, x, h0, c0, params, lengths, rng, n_dirs=4, eps=1e-6):
    lstm = shape.mode == "lstm"
    c_in = c0 if lstm else None
    y, hy, cy, _ = rnn.forward(x, h0, c_in, params, lengths, is_training=True)
    weights = (
        rng.standard_normal(y.shape),
        rng.standard_normal(hy.shape),
        rng.standard_normal(cy.shape) if lstm else None,
    )
    _, (dx, dh0, dc0, dparams) = _loss_and_grads(rnn, x, h0, c_in, params, lengths, weights)
    inputs = {"x": x, "h0": h0, "params": params}
    grads = {"x": dx, "h0": dh0, "params": dparams}
    if lstm:
        inputs["c0"], grads["c0"] = c0, dc0
    for name, value in inputs.items():
        for _ in range(n_dirs):
            v = rng.standard_normal(value.shape)
            args = dict(inputs)
            args[name] = value + eps * v
            plus = _loss(
                rnn, args["x"], args["h0"], args.get("c0"), args["params"], lengths, weights
            )
            args[name] = value - eps * v
            minus = _loss(
                rnn, args["x"], args["h0"], args.get("c0"), args["params"], lengths, weights
            )
            numeric = (plus - minus) / (2 * eps)
            analytic = float((grads[name] * v).sum())
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
@pytest.mark.parametrize("lengths", [None, [4, 2, 0]], ids=["full", "varlen"])
def test_backprop_matches_finite_differences(lib, case, time_major, lengths):
    rng = np.random.default_rng(11)
    shape, x, h0, c0, params = _problem(case, rng, steps=4, time_major=time_major)
    if shape.mode == "rnn_relu":  # keep away from the kink of relu
        params = np.abs(params) * 0.5
    rnn = lib.rnn(shape, "float64", time_major=time_major)
    _check_grads(rnn, shape, x, h0, c0, params, lengths, rng)


RESET_BEFORE_CASES = [c for c in CASES if c[0] == "gru_reset_before"]


@pytest.mark.parametrize("case", RESET_BEFORE_CASES, ids=_case_id)
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
@pytest.mark.parametrize("lengths", [None, [5, 2, 0]], ids=["full", "varlen"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gru_reset_before_grads_match_reference(lib, case, time_major, lengths, dtype):
    """Every gradient (dx, dh0, each params element) against the float64 numpy backprop of
    docs/MATH.md, "Cells beyond cuDNN" (GRU with reset before):
    cuda_rnn_reference.gru_reset_before_grads."""
    rng = np.random.default_rng(31)
    shape, x, h0, _, params = _problem(case, rng, time_major=time_major)
    rnn = lib.rnn(shape, dtype, time_major=time_major)
    cast = (lambda a: np.asarray(a, np.float32)) if dtype == "float32" else (lambda a: a)
    y, hy, _, reserve = rnn.forward(cast(x), cast(h0), None, cast(params), lengths, True)
    dy, dhy = rng.standard_normal(y.shape), rng.standard_normal(hy.shape)
    got = rnn.backward(cast(x), cast(params), cast(dy), cast(dhy), None, reserve, lengths)
    want = ref.gru_reset_before_grads(shape, params, x, h0, dy, dhy, lengths, time_major)
    tol = 1e-11 if dtype == "float64" else 2e-5
    for name, g, w in zip(("dx", "dh0", "dparams"), (got[0], got[1], got[3]), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("mode", ["gru", "gru_reset_before"])
def test_backprop_with_dropout(lib, mode):
    """Dropout masks are fixed by the seed: the forward is a smooth function of the inputs and the
    backprop must be its exact gradient (it reads the masks from the reserve)."""
    rng = np.random.default_rng(5)
    shape, x, h0, c0, params = _problem((mode, 3, 4, 3, 2, 0, False), rng, steps=4)
    rnn = lib.rnn(shape, "float64", dropout=0.4, seed=1234)
    _check_grads(rnn, shape, x, h0, c0, params, [4, 3, 1], rng)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[5], CASES[7]], ids=_case_id)
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
@pytest.mark.parametrize("unwanted", ["dx", "states"])
def test_backprop_without_unwanted_grads(lib, case, time_major, unwanted):
    """A null dx (TfRnn>CudnnRNNBackprop's skip_input_backprop: the first layer's d_gx W left
    out) or null dh0, dc0 (skip_state_backprop: the first step's dh_prev products left out) leave
    out only those grads: the others equal the full backprop's, bit for bit, on every layer and
    direction."""
    rng = np.random.default_rng(12)
    shape, x, h0, c0, params = _problem(case, rng, steps=4, time_major=time_major)
    lstm = shape.mode == "lstm"
    rnn = lib.rnn(shape, "float64", time_major=time_major, dropout=0.3, seed=3)
    lengths = [4, 0, 3]
    y, hy, cy, reserve = rnn.forward(x, h0, c0 if lstm else None, params, lengths, True)
    dy, dhy = rng.standard_normal(y.shape), rng.standard_normal(hy.shape)
    dcy = rng.standard_normal(cy.shape) if lstm else None
    full = rnn.backward(x, params, dy, dhy, dcy, reserve, lengths)
    part = rnn.backward(x, params, dy, dhy, dcy, reserve, lengths, want_dx=unwanted != "dx",
                        want_states=unwanted != "states")  # fmt: skip
    left_out = (0,) if unwanted == "dx" else (1, 2)
    for i, name in enumerate(("dx", "dh0", "dc0", "dparams")):
        if i in left_out:
            assert part[i] is None
            assert full[i] is None or np.abs(full[i]).max() > 0
        elif full[i] is not None:
            np.testing.assert_array_equal(part[i], full[i], err_msg=name)


def test_dropout_is_deterministic_and_drops(lib):
    rng = np.random.default_rng(6)
    shape, x, h0, c0, params = _problem(("rnn_tanh", 2, 64, 3, 1, 0, False), rng, steps=6)
    rnn = lib.rnn(shape, "float64", dropout=0.5, seed=99)
    a = rnn.forward(x, h0, None, params, is_training=True)
    b = rnn.forward(x, h0, None, params, is_training=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[3], b[3])
    other = lib.rnn(shape, "float64", dropout=0.5, seed=100).forward(
        x, h0, None, params, is_training=True
    )
    assert not np.array_equal(a[0], other[0])
    # inference ignores dropout
    inf = rnn.forward(x, h0, None, params)
    want = ref.rnn_forward(shape, params, x, h0)
    np.testing.assert_allclose(inf[0], want[0], rtol=1e-12, atol=1e-12)
    # the layer-1 input has about half of its units dropped. White box: in the reserve it follows
    # layer 0's activations and previous states, [rows, 64] doubles each (multiples of 256 bytes).
    rows, width = 6 * 3, 64
    start = 2 * rows * width * 8
    layer_in = np.frombuffer(a[3][start : start + rows * width * 8].tobytes(), np.float64)
    assert 0.35 < np.mean(layer_in == 0) < 0.65


def test_zero_lengths_and_empty(lib):
    rng = np.random.default_rng(8)
    shape, x, h0, c0, params = _problem(("lstm", 2, 3, 2, 2, 0, False), rng)
    rnn = lib.rnn(shape, "float64")
    y, hy, cy, _ = rnn.forward(x, h0, c0, params, lengths=[0, 0, 0])
    assert not y.any()
    np.testing.assert_array_equal(hy, h0)
    np.testing.assert_array_equal(cy, c0)
    # T = 0
    y, hy, cy, _ = rnn.forward(np.zeros((0, 3, 2)), h0, c0, params)
    assert y.shape == (0, 3, 6)
    np.testing.assert_array_equal(hy, h0)


def test_gru_reset_before_zero_lengths_and_empty(lib):
    """Zero lengths carry the state and give zero outputs and grads through; B = 0 and T = 0 are
    empty problems (the backprop writes zero dparams)."""
    rng = np.random.default_rng(18)
    case = ("gru_reset_before", 2, 3, 2, 2, 0, False)
    shape, x, h0, _, params = _problem(case, rng, steps=4)
    rnn = lib.rnn(shape, "float64")
    y, hy, _, reserve = rnn.forward(x, h0, None, params, lengths=[0, 0, 0], is_training=True)
    assert not y.any()
    np.testing.assert_array_equal(hy, h0)
    dhy = rng.standard_normal(hy.shape)
    dx, dh0, _, dparams = rnn.backward(
        x, params, rng.standard_normal(y.shape), dhy, None, reserve, [0, 0, 0]
    )
    assert not dx.any() and not dparams.any()
    np.testing.assert_array_equal(dh0, dhy)
    # B = 0
    for tm in (True, False):
        empty = lib.rnn(shape, "float64", time_major=tm)
        xe = np.zeros((4, 0, 2) if tm else (0, 4, 2))
        he = np.zeros((4, 0, 3) if tm else (0, 4, 3))
        y, hy, _, reserve = empty.forward(xe, he, None, params, is_training=True)
        assert y.shape == ((4, 0, 6) if tm else (0, 4, 6)) and hy.shape == he.shape
        dx, dh0, _, dparams = empty.backward(xe, params, np.zeros(y.shape), he, None, reserve)
        assert dx.shape == xe.shape and dh0.shape == he.shape
        assert dparams.shape == params.shape and not dparams.any()
    # T = 0
    y, hy, _, _ = rnn.forward(np.zeros((0, 3, 2)), h0, None, params)
    assert y.shape == (0, 3, 6)
    np.testing.assert_array_equal(hy, h0)


def test_bad_lengths_are_invalid_argument(lib):
    rng = np.random.default_rng(9)
    shape, x, h0, c0, params = _problem(("gru", 1, 3, 2, 1, 0, False), rng)
    rnn = lib.rnn(shape, "float64")
    for bad in ([5, 6, 1], [1, -1, 2]):
        with pytest.raises(tc.TfRnnCudaError, match="sequence_lengths") as info:
            rnn.forward(x, h0, None, params, lengths=bad)
        assert info.value.code == 1


def test_invalid_configs(lib):
    bad = [
        ref.RnnShape("gru", 1, 3, 2, num_proj=2),  # projection is lstm only
        ref.RnnShape("lstm", 1, 3, 2, skip_input=True),  # skip_input needs input == units
        ref.RnnShape("lstm", 0, 3, 2),
        ref.RnnShape("lstm", 1, 3, 2, num_dirs=3),
    ]
    for shape in bad:
        with pytest.raises(tc.TfRnnCudaError) as info:
            lib.rnn(shape).params_size()
        assert info.value.code == 1
    # The fused family's rules (cc/kernels/fused_rnn_rules.h), worded as the TensorFlow kernels
    # word them: input_size >= 1 as cuDNN (this layer took 0 before), and sizes checked as the int64
    # the C API is given (num_layers 2^32 + 1 was narrowed to 1 layer).
    rules = [
        (ref.RnnShape("lstm", 1, 3, 0), r"input_size must be >= 1, got 0"),
        (ref.RnnShape("gru", 2**32 + 1, 3, 2), r"num_layers \(4294967297\) must be at most"),
        (ref.RnnShape("lstm", 1, 3, 4, skip_input=True), r"skip_input needs input_size \(4\)"),
        (ref.RnnShape("lstm", 1, 3, 2, num_proj=4), r"num_proj \(4\) must not exceed num_units"),
    ]
    for shape, message in rules:
        with pytest.raises(tc.TfRnnCudaError, match=message) as info:
            lib.rnn(shape).params_size()
        assert info.value.code == 1
    with pytest.raises(tc.TfRnnCudaError, match="dropout"):
        lib.rnn(ref.RnnShape("lstm", 2, 3, 2), dropout=1.5).params_size()
    assert lib.rnn(ref.RnnShape("lstm", 2, 3, 2), dropout=1.0).params_size() > 0  # [0, 1] as TF


def test_inference_needs_no_reserve_and_less_workspace(lib):
    rnn = lib.rnn(ref.RnnShape("lstm", 3, 16, 8, 2, 0, False), "float32")
    fw_inf, rs_inf, _ = rnn.sizes(50, 8, False)
    fw_tr, rs_tr, bw = rnn.sizes(50, 8, True)
    assert rs_inf == 0 and rs_tr > 0 and bw > 0
    assert fw_tr <= fw_inf + rs_tr


# ------------------------------------------------------------------------- the CPU kernels' results
def _cpu_ops():
    """tf_rnn_ops with its CPU kernels, or a skip (it needs `make build`)."""
    pytest.importorskip("tensorflow")
    try:
        import tf_rnn_ops
    except ImportError as e:
        pytest.skip(f"tf_rnn_ops not importable ({e})")
    return tf_rnn_ops


CROSS_CASES = [
    # mode, layers, units, input, dirs, proj, skip, time_major, lengths, dropout
    ("lstm", 2, 4, 3, 2, 2, False, False, [5, 2, 0], 0.3),
    ("gru", 3, 3, 3, 1, 0, True, True, [5, 5, 1], 0.5),
    ("rnn_relu", 2, 4, 3, 2, 0, False, True, None, 0.0),
    ("rnn_tanh", 1, 3, 2, 1, 0, False, False, [3, 4, 5], 0.0),
    ("gru_reset_before", 2, 5, 3, 2, 0, False, False, [5, 2, 0], 0.3),
    ("gru_reset_before", 3, 3, 3, 1, 0, True, True, [5, 5, 1], 0.5),
]


@pytest.mark.parametrize("case", CROSS_CASES, ids=lambda c: f"{c[0]}-L{c[1]}-d{c[4]}")
def test_same_results_as_the_cpu_kernels(lib, case):
    """The CUDA layer and the CPU kernels compute the same op: same outputs, same gradients, and
    the same dropout masks for the same seeds (TensorFlow's Philox)."""
    tf_rnn_ops = _cpu_ops()
    mode, layers, units, isz, dirs, proj, skip, time_major, lengths, dropout = case
    rng = np.random.default_rng(21)
    shape, x, h0, c0, params = _problem(case[:7], rng, time_major=time_major)
    lstm = mode == "lstm"
    # Fresh seeds: the CPU op counts its calls per kernel (attributes), and each call draws the
    # next masks of its stream; new attributes start a new kernel at call 0, as `rnn` does.
    seeds = dict(seed=int(np.random.default_rng().integers(1, 2**31)), seed2=11)
    attrs = dict(
        rnn_mode=mode,
        input_mode="skip_input" if skip else "linear_input",
        direction="bidirectional" if dirs == 2 else "unidirectional",
        dropout=dropout,
        num_proj=proj,
        time_major=time_major,
        **seeds,
    )
    lens = None if lengths is None else np.asarray(lengths, np.int32)
    c_in = c0 if lstm else np.zeros_like(h0)
    out = tf_rnn_ops.cudnn_rnn(x, h0, c_in, params, lens, is_training=True, **attrs)
    rnn = lib.rnn(shape, "float64", time_major=time_major, dropout=dropout, **seeds)
    y, hy, cy, reserve = rnn.forward(x, h0, c0 if lstm else None, params, lengths, is_training=True)
    np.testing.assert_allclose(y, out[0].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hy, out[1].numpy(), rtol=1e-10, atol=1e-12)
    if lstm:
        np.testing.assert_allclose(cy, out[2].numpy(), rtol=1e-10, atol=1e-12)
    dy, dhy = rng.standard_normal(y.shape), rng.standard_normal(hy.shape)
    dcy = rng.standard_normal(c0.shape) if lstm else np.zeros_like(c_in)
    grads = tf_rnn_ops.cudnn_rnn_backprop(
        x, h0, c_in, params, lens, *out[:3], dy, dhy, dcy, out[3], out[4], **attrs
    )
    ours = rnn.backward(x, params, dy, dhy, dcy if lstm else None, reserve, lengths)
    for name, got, want in zip(("dx", "dh0", "dc0", "dparams"), ours, grads, strict=True):
        if got is not None:
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


# ------------------------------------------------------------------------------- 16-bit floats
def _float32_specimens(rng):
    special = np.array(
        [0.0, -0.0, 1.0, -1.0, 65504, 65519.99, 65520, 65536, 1e9, np.inf, -np.inf, np.nan,
         2.0**-14, 2.0**-24, 2.0**-25, 1.5 * 2.0**-25, 2.0**-26, 3.0 * 2.0**-25, 1e-30,
         3.3895314e38, 3.4e38, 1.00390625, 1.01171875, 1.0009765625, 1.0029296875],
        dtype=np.float32,
    )  # fmt: skip
    bits = rng.integers(0, 2**32, size=20000, dtype=np.uint64).astype(np.uint32)
    randoms = bits.view(np.float32)
    scaled = (rng.standard_normal(20000) * 10.0 ** rng.uniform(-9, 6, 20000)).astype(np.float32)
    return np.concatenate([special, -special, randoms, scaled])


@pytest.mark.parametrize("kind", ["float16", "bfloat16"])
def test_half16_conversions_are_exact(lib, kind):
    dtype = np.float16 if kind == "float16" else pytest.importorskip("ml_dtypes").bfloat16
    f = _float32_specimens(np.random.default_rng(4))
    half = np.empty(f.shape, np.uint16)
    lib.convert_half16(kind, False, f, half)
    with np.errstate(over="ignore", invalid="ignore"):
        want = f.astype(dtype)
    nan = np.isnan(f)
    np.testing.assert_array_equal(half[~nan], want[~nan].view(np.uint16))
    assert np.isnan(half[nan].view(dtype).astype(np.float32)).all()
    # and back: every 16-bit pattern
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    back = np.empty(every.shape, np.float32)
    lib.convert_half16(kind, True, every, back)
    want = every.view(dtype).astype(np.float32)
    same = (back.view(np.uint32) == want.view(np.uint32)) | (np.isnan(back) & np.isnan(want))
    assert same.all()
