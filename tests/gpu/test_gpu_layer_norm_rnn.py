"""The CUDA fused layer-norm LSTM / GRU (cc/cuda/layer_norm_rnn_cuda.h, the math of
`TfRnn>LayerNormRnn`) on a GPU against the float64 references of tests/cells/cell_reference.py
(TF Addons' LayerNormLSTMCell, haste's LayerNormGRU and zoneout; layer_norm_reference.py): the
forward at sizes where a block's threads share the row reductions (H up to 600, more units than
threads) and where the rows outnumber the grid (B > 65535); every gradient against finite
differences (all elements on small sizes, random directions on large ones); step masks, zoneout
masks and keep values, TF Addons' recurrent dropout mask; float64 and float32; x, y and their
grads batch-major (time_major=False) as well as time-major. Needs a CUDA
device and PyTorch (skipped otherwise; TF_RNN_OPS_GPU_HARNESS=emulation dry-runs it on the host
emulation)."""

from __future__ import annotations

import zlib

import gpu_harness
import numpy as np
import pytest
from layer_norm_reference import (
    CELLS,
    directional_check,
    finite_difference_grads,
    library_grads,
    loss_weights,
    make_case,
    make_params,
    recurrent_dropout_mask,
    reference,
    run,
)

torch = gpu_harness.require_gpu_library()


@pytest.fixture(scope="module")
def lib():
    library = gpu_harness.open_library(torch)
    yield library
    library.close()


@pytest.fixture
def rng(request) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


TOL = {"float64": dict(rtol=1e-9, atol=1e-11), "float32": dict(rtol=2e-4, atol=2e-5)}

FORWARD_CASES = [
    # T, B, D, H, masked, zoneout
    (5, 7, 33, 257, True, "mask"),
    (3, 64, 128, 256, False, None),
    (4, 3, 5, 600, False, "scalar"),
    (1, 1, 1, 1, False, None),
    (3, 5, 0, 3, True, None),
    (2, 66000, 2, 1, True, "mask"),  # more rows than a grid's y: the kernels loop over them
    (3, 0, 4, 5, False, None),
]


# recurrent_dropout: with TF Addons' recurrent dropout mask [B, H] (h_{t-1} * m in h's product with
# R only).
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B,D,H,masked,zoneout", FORWARD_CASES)
@pytest.mark.parametrize("recurrent_dropout", [False, True])
def test_forward_matches_reference(
    lib, rng, dtype, cell, T, B, D, H, masked, zoneout, recurrent_dropout
):
    p = make_params(rng, cell, D, H)
    x, h0, c0, mask, zm = make_case(rng, cell, T, B, D, H, masked, zoneout)
    rm = recurrent_dropout_mask(rng, B, H) if recurrent_dropout else None
    want = reference(cell, p, x, h0, c0, mask, zm, recurrent_mask=rm)
    train = run(lib, cell, dtype, p, x, h0, c0, mask, zm, True, recurrent_mask=rm)
    infer = run(lib, cell, dtype, p, x, h0, c0, mask, zm, False, recurrent_mask=rm)
    for got in (train, infer):
        for g, w in zip(got[:3], want, strict=True):
            if w is not None:
                np.testing.assert_allclose(g, w, **TOL[dtype])
    np.testing.assert_array_equal(train[0], infer[0])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("masked,zoneout", [(False, None), (True, "mask"), (True, "scalar")])
@pytest.mark.parametrize("recurrent_dropout", [False, True])
def test_gradients_match_finite_differences(lib, rng, cell, masked, zoneout, recurrent_dropout):
    T, B, D, H = 3, 3, 2, 3
    p = make_params(rng, cell, D, H)
    x, h0, c0, mask, zm = make_case(rng, cell, T, B, D, H, masked, zoneout)
    rm = recurrent_dropout_mask(rng, B, H) if recurrent_dropout else None
    wy, wh, wc = loss_weights(rng, T, B, H)
    want = finite_difference_grads(cell, p, x, h0, c0, mask, zm, wy, wh, wc, recurrent_mask=rm)
    got = library_grads(lib, cell, "float64", p, x, h0, c0, mask, zm, wy, wh, wc, recurrent_mask=rm)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
    "T,B,D,H,masked,zoneout",
    [(5, 7, 33, 257, True, "mask"), (3, 33, 20, 600, False, "scalar"), (4, 2, 3, 1, True, None)],
)
@pytest.mark.parametrize("recurrent_dropout", [False, True])
def test_gradients_along_random_directions(
    lib, rng, dtype, cell, T, B, D, H, masked, zoneout, recurrent_dropout
):
    p = make_params(rng, cell, D, H)
    x, h0, c0, mask, zm = make_case(rng, cell, T, B, D, H, masked, zoneout)
    rm = recurrent_dropout_mask(rng, B, H) if recurrent_dropout else None
    tol = 1e-6 if dtype == "float64" else 2e-3
    pairs = directional_check(lib, cell, dtype, p, x, h0, c0, mask, zm, rng, recurrent_mask=rm)
    for got, fd in pairs:
        assert abs(got - fd) <= tol * max(1.0, abs(fd)), (got, fd)


def _bt(a):
    """[T, B, ·] <-> [B, T, ·]."""
    return np.ascontiguousarray(np.swapaxes(a, 0, 1))


GRAD_TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
    "T,B,D,H,masked,zoneout",
    [
        (5, 7, 33, 257, True, "mask"),
        (4, 3, 5, 600, False, "scalar"),
        (3, 64, 128, 256, False, None),
        (1, 1, 1, 1, False, None),
        (3, 0, 4, 5, False, None),
    ],
)
def test_batch_major_matches_reference_and_time_major_grads(
    lib, rng, dtype, cell, T, B, D, H, masked, zoneout
):
    """time_major=False (x, y, dx, dy [B, T, ·]; the masks time-major): the outputs against the
    reference, every gradient against the time-major call's (itself checked against finite
    differences above), with a recurrent dropout mask."""
    p = make_params(rng, cell, D, H)
    x, h0, c0, mask, zm = make_case(rng, cell, T, B, D, H, masked, zoneout)
    rm = recurrent_dropout_mask(rng, B, H)
    want = reference(cell, p, x, h0, c0, mask, zm, recurrent_mask=rm)
    args = (lib, cell, dtype, p, _bt(x), h0, c0, mask, zm)
    for is_training in (True, False):
        got = run(*args, is_training, recurrent_mask=rm, time_major=False)
        assert got[0].shape == (B, T, H)
        for g, w in zip(got[:3], (_bt(want[0]), *want[1:]), strict=True):
            if w is not None:
                np.testing.assert_allclose(g, w, **TOL[dtype])
    wy, wh, wc = loss_weights(rng, T, B, H)
    kw = dict(recurrent_mask=rm)
    time_major = library_grads(lib, cell, dtype, p, x, h0, c0, mask, zm, wy, wh, wc, **kw)
    batch_major = library_grads(*args, _bt(wy), wh, wc, **kw, time_major=False)
    batch_major["x"] = _bt(batch_major["x"])
    assert set(batch_major) == set(time_major)
    for name in time_major:
        np.testing.assert_allclose(
            batch_major[name], time_major[name], **GRAD_TOL[dtype], err_msg=name
        )
