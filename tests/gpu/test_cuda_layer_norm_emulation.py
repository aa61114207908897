"""The CUDA layer's fused layer-norm LSTM / GRU (cc/cuda/layer_norm_rnn_cuda.h, the math of
`TfRnn>LayerNormRnn`), run on the CPU through the host emulation (cc/cuda/cuda_compat.h), against
the float64 references of tests/cells/cell_reference.py (TF Addons' LayerNormLSTMCell, haste's
LayerNormGRU and zoneout): forward in training and inference, every gradient against central finite
differences of the reference, both layouts (x, y and their grads time-major or batch-major), step
masks, zoneout masks and scalar keep values, TF Addons' recurrent dropout mask (h_{t-1} * m in h's
product with R only), odd sizes, B = 0, T = 0, float32, bad descriptions. The emulation runs a
block as one thread, so it checks every pass's math, not the block reductions' cooperation (the
GPU tests do: tests/gpu/test_gpu_*.py). Needs no GPU or TensorFlow; skipped unless the emulation
library is built (`make gpu-check`)."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
import tfrnn_cuda_ctypes as tc
from layer_norm_reference import (
    CELLS,
    EPS,
    finite_difference_grads,
    library_grads,
    loss_weights,
    make_case,
    make_params,
    recurrent_dropout_mask,
    reference,
    run,
)

if not os.path.exists(tc.EMU_LIBRARY):
    pytest.skip(
        f"CUDA host emulation not built ({tc.EMU_LIBRARY}); `make gpu-check` builds it",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def lib():
    library = tc.Library(tc.EMU_LIBRARY, tc.NumpyBackend())
    assert library.emulated
    yield library
    library.close()


@pytest.fixture
def rng(request) -> np.random.Generator:
    """Fresh data per test, reproducible from its id (run.sh runs tests/gpu without the package's
    conftest.py)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


FORWARD_CASES = [
    # T, B, D, H, masked, zoneout
    (3, 2, 3, 4, False, None),
    (4, 3, 2, 3, True, None),
    (3, 2, 3, 2, False, "mask"),
    (3, 3, 1, 3, True, "scalar"),
    (1, 1, 1, 1, False, None),
    (2, 1, 5, 257, True, "mask"),
    (2, 3, 0, 3, False, None),  # D = 0: the x side is all zeros, LN of a constant row
]


GRAD_CASES = [
    # T, B, D, H, masked, zoneout
    (3, 2, 3, 2, False, None),
    (3, 3, 2, 3, True, "mask"),
    (2, 2, 2, 2, True, "scalar"),
    (2, 1, 1, 1, False, None),
    (3, 2, 2, 3, False, "mask"),
    (2, 3, 1, 2, False, "scalar"),
]


def _h_prev_region(cell, reserve, T, B, H):
    """The reserve's h_prev rows [T, B, H] (LayerNormReserveLayout: xhat_x, xhat_h, act [G·H],
    c_hat [H] (LSTM), h_prev [H], ...)."""
    lstm, rows = cell == "layer_norm_lstm", T * B
    G = 4 if lstm else 3
    start = rows * (3 * G * H + (H if lstm else 0))
    return reserve[start : start + rows * H].reshape(T, B, H)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,D,H,masked,zoneout", FORWARD_CASES)
@pytest.mark.parametrize("recurrent_dropout", [False, True])
def test_forward_matches_reference(lib, rng, cell, T, B, D, H, masked, zoneout, recurrent_dropout):
    """Training and inference against the reference; with recurrent_dropout, h_{t-1} * m in h's
    product with R: the state carried, zoneout, the step mask's carried h and the GRU's z h_{t-1}
    see h undropped, and so does the reserve's h_prev."""
    p = make_params(rng, cell, D, H)
    x, h0, c0, mask, zm = make_case(rng, cell, T, B, D, H, masked, zoneout)
    rm = recurrent_dropout_mask(rng, B, H) if recurrent_dropout else None
    want = reference(cell, p, x, h0, c0, mask, zm, recurrent_mask=rm)
    got_train = run(lib, cell, "float64", p, x, h0, c0, mask, zm, True, recurrent_mask=rm)
    got_infer = run(lib, cell, "float64", p, x, h0, c0, mask, zm, False, recurrent_mask=rm)
    for got in (got_train, got_infer):
        np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-12)
        if cell == "layer_norm_lstm":
            np.testing.assert_allclose(got[2], want[2], rtol=1e-10, atol=1e-12)
    # Inference computes the same way as training: the same bits, and no reserve.
    np.testing.assert_array_equal(got_train[0], got_infer[0])
    assert got_infer[3] is None and got_train[3].size > 0
    if rm is None:
        return
    # The mask matters where a step runs (its values are 0 or 1/0.7, never 1) ...
    if mask is None or mask.any():
        undropped = reference(cell, p, x, h0, c0, mask, zm)[0]
        assert not np.allclose(undropped, want[0], rtol=1e-6, atol=1e-8)
    # ... and the reserve keeps h_prev undropped: h0, then each step's state (y).
    h_prev = _h_prev_region(cell, got_train[3], T, B, H)
    np.testing.assert_array_equal(h_prev[0], h0)
    np.testing.assert_array_equal(h_prev[1:], got_train[0][:-1])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,D,H,masked,zoneout", GRAD_CASES)
@pytest.mark.parametrize("recurrent_dropout", [False, True])
def test_gradients_match_finite_differences(
    lib, rng, cell, T, B, D, H, masked, zoneout, recurrent_dropout
):
    """Every gradient against central finite differences of the reference. With
    recurrent_dropout: dh_prev gets (dGH Rᵀ) * m, dR = Σ (h_prev * m)ᵀ dGH; the finite
    differences hold the recurrent mask fixed (as the step and zoneout masks)."""
    p = make_params(rng, cell, D, H)
    x, h0, c0, mask, zm = make_case(rng, cell, T, B, D, H, masked, zoneout)
    rm = recurrent_dropout_mask(rng, B, H) if recurrent_dropout else None
    wy, wh, wc = loss_weights(rng, T, B, H)
    want = finite_difference_grads(cell, p, x, h0, c0, mask, zm, wy, wh, wc, recurrent_mask=rm)
    got = library_grads(lib, cell, "float64", p, x, h0, c0, mask, zm, wy, wh, wc, recurrent_mask=rm)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)


BATCH_MAJOR_CASES = [
    # T, B, D, H, masked, zoneout, recurrent_dropout
    (3, 2, 3, 4, False, None, False),
    (4, 3, 2, 3, True, "mask", True),
    (3, 3, 1, 3, True, "scalar", False),
    (1, 1, 1, 1, False, None, True),
    (2, 3, 0, 3, False, None, False),
]


def _bt(a):
    """[T, B, ·] <-> [B, T, ·]."""
    return np.ascontiguousarray(np.swapaxes(a, 0, 1))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,D,H,masked,zoneout,recurrent_dropout", BATCH_MAJOR_CASES)
def test_batch_major_matches_reference_and_finite_differences(
    lib, rng, cell, T, B, D, H, masked, zoneout, recurrent_dropout
):
    """time_major=False: x, y, dx and dy [B, T, ·] (the step and zoneout masks time-major): the
    outputs of training and inference against the reference, every gradient against central
    finite differences, and the reserve's rows in the time-major call's order."""
    p = make_params(rng, cell, D, H)
    x, h0, c0, mask, zm = make_case(rng, cell, T, B, D, H, masked, zoneout)
    rm = recurrent_dropout_mask(rng, B, H) if recurrent_dropout else None
    want = reference(cell, p, x, h0, c0, mask, zm, recurrent_mask=rm)
    args = (lib, cell, "float64", p, _bt(x), h0, c0, mask, zm)
    got_train = run(*args, True, recurrent_mask=rm, time_major=False)
    got_infer = run(*args, False, recurrent_mask=rm, time_major=False)
    for got in (got_train, got_infer):
        assert got[0].shape == (B, T, H)
        np.testing.assert_allclose(got[0], _bt(want[0]), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-12)
        if cell == "layer_norm_lstm":
            np.testing.assert_allclose(got[2], want[2], rtol=1e-10, atol=1e-12)
    # The reserve's rows in time-major order: its xhat_x and h_prev regions (written for every
    # row; a masked row leaves some others unwritten) are the time-major call's.
    reserve = run(lib, cell, "float64", p, x, h0, c0, mask, zm, True, recurrent_mask=rm)[3]
    xhat_x = slice(0, T * B * (4 if cell == "layer_norm_lstm" else 3) * H)
    np.testing.assert_allclose(got_train[3][xhat_x], reserve[xhat_x], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(
        _h_prev_region(cell, got_train[3], T, B, H), _h_prev_region(cell, reserve, T, B, H)
    )
    wy, wh, wc = loss_weights(rng, T, B, H)
    want_grads = finite_difference_grads(
        cell, p, x, h0, c0, mask, zm, wy, wh, wc, recurrent_mask=rm
    )
    got_grads = library_grads(
        *args, _bt(wy), wh, wc, recurrent_mask=rm, time_major=False
    )  # fmt: skip
    assert got_grads["x"].shape == (B, T, D)
    got_grads["x"] = _bt(got_grads["x"])
    assert set(got_grads) == set(want_grads)
    for name in want_grads:
        np.testing.assert_allclose(
            got_grads[name], want_grads[name], rtol=1e-5, atol=1e-7, err_msg=name
        )


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("recurrent_dropout", [False, True])
def test_float32_matches_float64(lib, rng, cell, recurrent_dropout):
    T, B, D, H = 3, 3, 4, 5
    p = make_params(rng, cell, D, H)
    x, h0, c0, mask, zm = make_case(rng, cell, T, B, D, H, True, "mask")
    rm = recurrent_dropout_mask(rng, B, H) if recurrent_dropout else None
    wy, wh, wc = loss_weights(rng, T, B, H)
    want_y = reference(cell, p, x, h0, c0, mask, zm, recurrent_mask=rm)[0]
    got_y = run(lib, cell, "float32", p, x, h0, c0, mask, zm, recurrent_mask=rm)[0]
    np.testing.assert_allclose(got_y, want_y, rtol=1e-4, atol=1e-5)
    args = (lib, cell, "float64", p, x, h0, c0, mask, zm, wy, wh, wc)
    want = library_grads(*args, recurrent_mask=rm)
    got = library_grads(*args[:2], "float32", *args[3:], recurrent_mask=rm)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=2e-3, atol=2e-4, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B", [(3, 0), (0, 2)])
@pytest.mark.parametrize("recurrent_dropout", [False, True])
def test_empty_batch_or_sequence(lib, rng, cell, T, B, recurrent_dropout):
    D, H = 3, 2
    p = make_params(rng, cell, D, H)
    x, h0, c0, _, _ = make_case(rng, cell, T, B, D, H)
    rm = recurrent_dropout_mask(rng, B, H) if recurrent_dropout else None
    y, hn, cn, reserve = run(lib, cell, "float64", p, x, h0, c0, None, None, recurrent_mask=rm)
    assert y.shape == (T, B, H) and reserve.size == 0
    np.testing.assert_array_equal(hn, h0)
    if cell == "layer_norm_lstm":
        np.testing.assert_array_equal(cn, c0)
    wy, wh, wc = loss_weights(rng, T, B, H)
    got = library_grads(
        lib, cell, "float64", p, x, h0, c0, None, None, wy, wh, wc, recurrent_mask=rm
    )
    np.testing.assert_array_equal(got["h0"], wh)
    for name in p:
        np.testing.assert_array_equal(got[name], np.zeros_like(p[name]), err_msg=name)


def test_reserve_size_is_the_cpu_kernels(lib):
    """The reserve has the CPU kernel's layout (cc/kernels/layer_norm_rnn_kernels.cc): per row
    3 G·H + (LSTM: 2 H) + 2 H + 3."""
    for cell, G, extra in (("layer_norm_lstm", 4, 2), ("layer_norm_gru", 3, 0)):
        op = lib.layer_norm_rnn(cell)
        T, B, D, H = 5, 3, 2, 7
        d = op.desc(np.zeros((T, B, D)), np.zeros((B, H)), True, None, None, 1e-3)
        rs, _, _ = op.sizes(d)
        assert rs == T * B * (3 * G * H + extra * H + 2 * H + 3)
        d = op.desc(np.zeros((T, B, D)), np.zeros((B, H)), False, None, None, 1e-3)
        assert op.sizes(d)[0] == 0


@pytest.mark.parametrize("is_training", [True, False])
def test_recurrent_mask_keeps_the_reserve_and_grows_the_workspaces(lib, is_training):
    """The reserve's layout is the same with a recurrent mask (its h_prev is undropped); the
    workspaces hold h * m of a step (forward) and h_prev * m of every row and a step's dGH Rᵀ
    (backward)."""
    T, B, D, H = 5, 3, 2, 7
    for cell in ("layer_norm_lstm", "layer_norm_gru"):
        op = lib.layer_norm_rnn(cell)
        x, h0, rm = np.zeros((T, B, D)), np.zeros((B, H)), np.ones((B, H))
        rs0, fw0, bw0 = op.sizes(op.desc(x, h0, is_training, None, None, 1e-3))
        rs1, fw1, bw1 = op.sizes(op.desc(x, h0, is_training, None, None, 1e-3, rm))
        assert rs1 == rs0
        assert fw1 >= fw0 + B * H * 8
        assert bw1 >= bw0 + (T * B * H + B * H) * 8


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("cell", 5, "unknown layer-norm cell"),
        ("zoneout", 3, "unknown zoneout kind"),
        ("epsilon", 0.0, "epsilon must be positive"),
        ("num_units", 0, "cell size H must be positive"),
        ("batch", -1, "must be >= 0"),
        ("dtype", 7, "unknown dtype"),
    ],
)
def test_bad_descriptions_are_refused(lib, field, value, message):
    op = lib.layer_norm_rnn("layer_norm_lstm")
    d = op.desc(np.zeros((2, 2, 2)), np.zeros((2, 3)), True, None, None, 1e-3)
    setattr(d, field, value)
    with pytest.raises(tc.TfRnnCudaError, match=message):
        op.sizes(d)


def test_backward_needs_a_training_description(lib, rng):
    cell = "layer_norm_gru"
    p = make_params(rng, cell, 2, 2)
    op = lib.layer_norm_rnn(cell)
    d = op.desc(np.zeros((1, 1, 2)), np.zeros((1, 2)), False, None, None, 1e-3)
    ptrs = tc.LayerNormParams()
    rc = lib.lib.tfrnn_layer_norm_rnn_backward(
        lib.blas, None, d, None, ptrs, None, None, None, None, None, None, None, None, None,
        None, ptrs, None
    )  # fmt: skip
    assert rc == 1 and b"is_training" in lib.lib.tfrnn_last_error()
    del p


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize(
    "flag,given,message",
    [(1, False, "recurrent_mask \\[B, H\\] is null"), (0, True, "has_recurrent_mask = false")],
)
def test_recurrent_mask_must_agree_with_the_description(lib, rng, direction, flag, given, message):
    """The C API sees a pointer, not a shape: it refuses a description whose has_recurrent_mask
    disagrees with the pointer (null with the flag where rows are read, given without it)."""
    cell = "layer_norm_lstm"
    T, B, D, H = 2, 2, 3, 3
    p = make_params(rng, cell, D, H)
    x, h0, c0, _, _ = make_case(rng, cell, T, B, D, H)
    op = lib.layer_norm_rnn(cell)
    rm = recurrent_dropout_mask(rng, B, H)
    reserve = op.forward(x, h0, c0, p, recurrent_mask=rm)[3] if direction == "backward" else None
    real_desc = op.desc

    def desc(*args, **kwargs):
        d = real_desc(*args, **kwargs)
        d.has_recurrent_mask = flag
        return d

    op.desc = desc
    mask_arg = rm if given else None
    with pytest.raises(tc.TfRnnCudaError, match=message):
        if direction == "forward":
            op.forward(x, h0, c0, p, recurrent_mask=mask_arg)
        else:
            wy, wh, wc = loss_weights(rng, T, B, H)
            op.backward(x, h0, p, reserve, wy, wh, wc, recurrent_mask=mask_arg)


def _cpu_op_inputs(tf, cell, p, x, h0, c0, mask, zm, dtype, recurrent_mask=None):
    """The CPU op's forward inputs (TfRnn>LayerNormRnn, cc/ops/layer_norm_rnn_ops.cc)."""
    empty = tf.zeros([0], dtype)

    def t(v):
        return empty if v is None else tf.constant(v, dtype)

    names = ("kernel", "recurrent_kernel", "bias", "recurrent_bias", "gamma_x", "beta_x")
    names += ("gamma_h", "beta_h", "gamma_c", "beta_c")
    out = dict(x=t(x), h0=t(h0), c0=t(c0 if cell == "layer_norm_lstm" else None))
    out.update({k: t(p.get(k)) for k in names})
    out.update(mask=t(mask), zoneout_mask=t(zm), epsilon=tf.constant(EPS[cell], dtype))
    out.update(recurrent_mask=[] if recurrent_mask is None else [t(recurrent_mask)])
    return out


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("recurrent_dropout", [False, True])
def test_reserve_is_interchangeable_with_the_cpu_kernels(lib, rng, cell, recurrent_dropout):
    """A forward on one device and its gradient on the other (TensorFlow may place them so): the
    CPU op's reserve in the CUDA backward, and the CUDA reserve in the CPU grad op, both give the
    finite-difference grads of the float64 reference; with a recurrent dropout mask too (both
    devices' reserves keep h_prev undropped)."""
    _check_reserve_interchangeable(lib, rng, cell, recurrent=recurrent_dropout)


def _check_reserve_interchangeable(lib, rng, cell, recurrent):
    tf = pytest.importorskip("tensorflow")
    ops = pytest.importorskip("tf_rnn_ops._loader").ops()
    T, B, D, H = 3, 3, 2, 3
    p = make_params(rng, cell, D, H)
    x, h0, c0, mask, zm = make_case(rng, cell, T, B, D, H, True, "mask")
    mask[T - 1, 0] = 0.0  # at least one masked row
    rm = recurrent_dropout_mask(rng, B, H) if recurrent else None
    wy, wh, wc = loss_weights(rng, T, B, H)
    want = finite_difference_grads(cell, p, x, h0, c0, mask, zm, wy, wh, wc, recurrent_mask=rm)
    inputs = _cpu_op_inputs(tf, cell, p, x, h0, c0, mask, zm, tf.float64, rm)
    cpu_reserve = ops.tf_rnn_layer_norm_rnn(**inputs, cell=cell, is_training=True)[3].numpy()
    op = lib.layer_norm_rnn(cell)
    kw = dict(mask=mask, zoneout=zm, epsilon=EPS[cell], recurrent_mask=rm)
    cuda_reserve = op.forward(x, h0, c0, p, **kw)[3]
    assert cuda_reserve.shape == cpu_reserve.shape
    # What the CPU forward leaves unwritten for masked rows (act, c_hat, h~, stats: uninitialized
    # memory there) as NaN: the backward must not read it.
    lstm, rows, G = cell == "layer_norm_lstm", T * B, (4 if cell == "layer_norm_lstm" else 3)
    widths = [G * H] * 3 + [H if lstm else 0, H, H if lstm else 0, H, 3]
    starts = np.concatenate([[0], np.cumsum([rows * w for w in widths])])
    masked = np.flatnonzero(mask.reshape(-1) == 0)
    for region in (2, 3, 6, 7):  # act, c_hat, h_tilde, stats
        for r in masked:
            w = widths[region]
            cpu_reserve[starts[region] + r * w : starts[region] + (r + 1) * w] = np.nan
    # The CPU reserve in the CUDA backward.
    dx, dh0, dc0, grads = op.backward(x, h0, p, cpu_reserve, wy, wh, wc, **kw)
    got = dict(grads, x=dx, h0=dh0, **({"c0": dc0} if cell == "layer_norm_lstm" else {}))
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)
    # The CUDA reserve in the CPU grad op.
    dcn = wc if cell == "layer_norm_lstm" else np.zeros((B, 0))
    outs = ops.tf_rnn_layer_norm_rnn_grad(
        **inputs, reserve=tf.constant(cuda_reserve), dy=tf.constant(wy), dhn=tf.constant(wh),
        dcn=tf.constant(dcn), cell=cell,
    )  # fmt: skip
    names = ("x", "h0", "c0", "kernel", "recurrent_kernel", "bias", "recurrent_bias", "gamma_x")
    names += ("beta_x", "gamma_h", "beta_h", "gamma_c", "beta_c")
    for name, g in zip(names, outs, strict=True):
        if name in want:
            np.testing.assert_allclose(g.numpy(), want[name], rtol=1e-5, atol=1e-7, err_msg=name)
