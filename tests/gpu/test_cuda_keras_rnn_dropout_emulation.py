"""TfRnn>KerasRNNDropout's CUDA library (cc/cuda/keras_rnn_dropout_cuda.h) through the host
emulation (cc/cuda/cuda_compat.h): every kernel and GEMM the GPU would run, on the CPU, against
float64 references that are not ours: Keras 3's cells with the recurrent-dropout masks injected and
haste's zoneout (tests/cells/cell_reference.py, via keras_dropout_reference.py) for the forward, and
central finite differences of them for every gradient. Every cell; masks or none; zoneout mask,
scalar or none; sequence lengths; both layouts; odd sizes; B = 0 and T = 0; bad configurations.
Skipped unless the emulation library is built (`make gpu-check` builds it and runs this file)."""

from __future__ import annotations

import ctypes
import os

import keras_dropout_reference as kref
import numpy as np
import pytest
import tfrnn_cuda_ctypes as tc

if not os.path.exists(tc.EMU_LIBRARY):
    pytest.skip(
        f"CUDA host emulation not built ({tc.EMU_LIBRARY}); `make gpu-check` builds it",
        allow_module_level=True,
    )

MODES = kref.MODES
TOL = {"float64": dict(rtol=1e-11, atol=1e-11), "float32": dict(rtol=3e-5, atol=3e-5)}


@pytest.fixture(scope="module")
def lib():
    library = tc.Library(tc.EMU_LIBRARY, tc.NumpyBackend())
    assert library.emulated
    yield library
    library.close()


def _layout(a, time_major):
    return None if a is None else (np.swapaxes(a, 0, 1) if time_major else a)


def _inputs(be, p, dtype, time_major, gate_major=False):
    cast = lambda a: None if a is None else be.from_numpy(a, dtype)  # noqa: E731
    gx = np.ascontiguousarray(_layout(p["gx"], time_major))
    if gate_major:
        gx = kref.to_gate_major(gx, p["rk"].shape[1] // p["rk"].shape[0])
    return dict(
        projected=cast(gx),
        h0=cast(p["h0"]),
        c0=cast(p["c0"]),
        rkernel=cast(p["rk"]),
        rbias=cast(p["rb"]),
        masks=cast(p["masks"]),
        zoneout=cast(p["zoneout"]),
    )


def _forward(lib, mode, p, dtype="float64", time_major=False, lengths=None, is_training=True,
             gate_major=False):  # fmt: skip
    op = lib.keras_dropout(mode, p["h0"].shape[1], dtype, time_major, gate_major)
    ins = _inputs(lib.backend, p, dtype, time_major, gate_major)
    y, hy, cy, reserve = op.forward(**ins, lengths=lengths, is_training=is_training)
    return op, ins, _layout(np.asarray(y), time_major), np.asarray(hy), cy, reserve


def _random_lengths(rng, B, T):
    lengths = rng.integers(0, T + 1, size=B)
    lengths[rng.integers(B)] = T
    return lengths


FORWARD_SIZES = [(1, 1, 1), (3, 4, 3), (2, 2, 257), (5, 3, 2)]  # (B, T, H)


@pytest.mark.parametrize("zoneout", ["none", "mask", "scalar"])
@pytest.mark.parametrize("masks", [True, False], ids=["masks", "nomasks"])
@pytest.mark.parametrize("mode", MODES)
def test_forward_matches_reference(lib, rng, mode, masks, zoneout):
    for B, T, H in FORWARD_SIZES:
        p = kref.problem(rng, mode, B, T, H, masks=masks, zoneout=zoneout)
        ry, rh, rc = kref.forward(mode, **{k: p[k] for k in ("gx", "h0", "c0", "rk", "rb")},
                                  masks=p["masks"], zoneout=p["zoneout"])  # fmt: skip
        for dtype in ("float64", "float32"):
            for time_major in (False, True):
                for training in (True, False):
                    _, _, y, hy, cy, reserve = _forward(
                        lib, mode, p, dtype, time_major, is_training=training
                    )
                    np.testing.assert_allclose(y, ry, **TOL[dtype])
                    np.testing.assert_allclose(hy, rh, **TOL[dtype])
                    if mode == "lstm":
                        np.testing.assert_allclose(np.asarray(cy), rc, **TOL[dtype])
                    assert (reserve is not None) == training


@pytest.mark.parametrize("zoneout", ["none", "mask", "scalar"])
@pytest.mark.parametrize("mode", MODES)
def test_lengths_both_layouts(lib, rng, mode, zoneout):
    B, T, H = 7, 5, 3
    lengths = _random_lengths(rng, B, T)
    p = kref.problem(rng, mode, B, T, H, zoneout=zoneout)
    ry, rh, rc = kref.forward(mode, p["gx"], p["h0"], p["c0"], p["rk"], p["rb"], p["masks"],
                              p["zoneout"], lengths)  # fmt: skip
    for time_major in (False, True):
        _, _, y, hy, cy, _ = _forward(lib, mode, p, time_major=time_major, lengths=lengths)
        np.testing.assert_allclose(y, ry, **TOL["float64"])
        np.testing.assert_allclose(hy, rh, **TOL["float64"])
        if mode == "lstm":
            np.testing.assert_allclose(np.asarray(cy), rc, **TOL["float64"])


def _check_grads(lib, rng, mode, B, T, H, masks, zoneout, time_major, lengths, rbias=True,
                 gate_major=False):  # fmt: skip
    p = kref.problem(rng, mode, B, T, H, masks=masks, zoneout=zoneout, rbias=rbias)
    if zoneout == "mask":  # any values, not only {0, 1}: the math is linear in m
        p["zoneout"] = rng.uniform(0.0, 1.0, p["zoneout"].shape)
    w = {"dy": rng.normal(size=(B, T, H)), "dh": rng.normal(size=(B, H)),
         "dc": rng.normal(size=(B, H))}  # fmt: skip
    op, ins, _, _, _, reserve = _forward(
        lib, mode, p, time_major=time_major, lengths=lengths, gate_major=gate_major
    )
    be = lib.backend
    cast = lambda a: be.from_numpy(a, "float64")  # noqa: E731
    d_proj, dh0, dc0, drk, drb = op.backward(
        tuple(ins["projected"].shape), ins["rkernel"], ins["rbias"], ins["masks"], ins["zoneout"],
        cast(np.ascontiguousarray(_layout(w["dy"], time_major))), cast(w["dh"]),
        cast(w["dc"]) if mode == "lstm" else None, reserve, lengths=lengths,
    )  # fmt: skip
    want = kref.numeric_grads(mode, p, w, lengths)
    tol = dict(rtol=1e-6, atol=1e-7)
    d_proj = np.asarray(d_proj)
    if gate_major:
        assert d_proj.shape == tuple(ins["projected"].shape)
        d_proj = kref.from_gate_major(d_proj)
    np.testing.assert_allclose(_layout(d_proj, time_major), want["gx"], **tol)
    np.testing.assert_allclose(np.asarray(dh0), want["h0"], **tol)
    np.testing.assert_allclose(np.asarray(drk), want["rk"], **tol)
    if mode == "lstm":
        np.testing.assert_allclose(np.asarray(dc0), want["c0"], **tol)
    if p["rb"] is not None:
        np.testing.assert_allclose(np.asarray(drb), want["rb"], **tol)


@pytest.mark.parametrize("zoneout", ["none", "mask", "scalar"])
@pytest.mark.parametrize("masks", [True, False], ids=["masks", "nomasks"])
@pytest.mark.parametrize("mode", MODES)
def test_grads_match_finite_differences(lib, rng, mode, masks, zoneout):
    _check_grads(lib, rng, mode, 2, 3, 2, masks, zoneout, time_major=False, lengths=None)


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("mode", MODES)
def test_grads_with_lengths(lib, rng, mode, time_major):
    B, T = 3, 4
    lengths = np.array([4, 0, 2])
    rng.shuffle(lengths)
    _check_grads(lib, rng, mode, B, T, 2, True, "mask", time_major, lengths)


@pytest.mark.parametrize("mode", ["gru", "lstm"])
def test_grads_odd_sizes(lib, rng, mode):
    _check_grads(lib, rng, mode, 1, 1, 1, True, "scalar", False, None)
    _check_grads(lib, rng, mode, 1, 2, 3, False, "none", True, None, rbias=False)


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("mode", MODES)
def test_gate_major(lib, rng, mode, time_major):
    """gate_major: the projected input and its grad as G blocks [G, B, T, H] ([G, T, B, H]) in
    Keras' gate order; outputs against the reference (lengths, masks, zoneout, an odd H), grads
    against finite differences."""
    B, T, H = 4, 3, 5
    lengths = _random_lengths(rng, B, T)
    p = kref.problem(rng, mode, B, T, H, zoneout="mask")
    ry, rh, rc = kref.forward(mode, p["gx"], p["h0"], p["c0"], p["rk"], p["rb"], p["masks"],
                              p["zoneout"], lengths)  # fmt: skip
    for dtype in ("float64", "float32"):
        _, _, y, hy, cy, _ = _forward(lib, mode, p, dtype, time_major, lengths, gate_major=True)
        np.testing.assert_allclose(y, ry, **TOL[dtype])
        np.testing.assert_allclose(hy, rh, **TOL[dtype])
        if mode == "lstm":
            np.testing.assert_allclose(np.asarray(cy), rc, **TOL[dtype])
    _check_grads(lib, rng, mode, 3, 2, 2, True, "mask", time_major, np.array([2, 0, 1]),
                 gate_major=True)  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_input_bias_row(lib, rng, mode):
    """recurrent_bias [2, G·H]: its row 0 added to the projected input (as Keras' GRU adds its
    input bias row), row 1 the recurrent bias; outputs and both rows' grads."""
    B, T, H = 3, 4, 3
    lengths = np.array([4, 0, 2])
    p = kref.problem(rng, mode, B, T, H, rbias="rows")
    ry, rh, _ = kref.forward(mode, p["gx"], p["h0"], p["c0"], p["rk"], p["rb"], p["masks"],
                             p["zoneout"], lengths)  # fmt: skip
    # (the reference's own [2, G·H] form: the row 0 added to gx by hand gives the same)
    ry1, _, _ = kref.forward(mode, p["gx"] + p["rb"][0], p["h0"], p["c0"], p["rk"], p["rb"][1],
                             p["masks"], p["zoneout"], lengths)  # fmt: skip
    np.testing.assert_allclose(ry, ry1, rtol=1e-12, atol=1e-12)
    for time_major in (False, True):
        _, _, y, hy, _, _ = _forward(lib, mode, p, time_major=time_major, lengths=lengths)
        np.testing.assert_allclose(y, ry, **TOL["float64"])
        np.testing.assert_allclose(hy, rh, **TOL["float64"])
    _check_grads(lib, rng, mode, B, T, 2, True, "mask", True, lengths, rbias="rows")
    _check_grads(lib, rng, mode, 2, 3, 2, False, "none", False, None, rbias="rows")


@pytest.mark.parametrize("masks,zoneout", [(True, "mask"), (False, "none")], ids=["masks", "plain"])
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("mode", MODES)
def test_backprop_without_state_grads(lib, rng, mode, time_major, masks, zoneout):
    """Null dh0, dc0 (what the op's skip_state_backprop, or no consumer, passes) leave out only the
    states' grads: the first step's dh_prev products are skipped, every other grad is the full
    backprop's, bit for bit."""
    B, T, H = 3, 4, 5
    lengths = np.array([4, 0, 2])
    p = kref.problem(rng, mode, B, T, H, masks=masks, zoneout=zoneout)
    op, ins, _, _, _, reserve = _forward(lib, mode, p, time_major=time_major, lengths=lengths)
    cast = lambda a: lib.backend.from_numpy(a, "float64")  # noqa: E731
    dy = cast(np.ascontiguousarray(_layout(rng.normal(size=(B, T, H)), time_major)))
    dc = cast(rng.normal(size=(B, H))) if mode == "lstm" else None
    args = (tuple(ins["projected"].shape), ins["rkernel"], ins["rbias"], ins["masks"],
            ins["zoneout"], dy, cast(rng.normal(size=(B, H))), dc, reserve)  # fmt: skip
    full = op.backward(*args, lengths=lengths)
    part = op.backward(*args, lengths=lengths, want_states=False)
    assert part[1] is None and part[2] is None and np.abs(np.asarray(full[1])).max() > 0
    for name, got, want in zip(("d_projected", "drk", "drb"), (part[0], *part[3:]),
                               (full[0], *full[3:]), strict=True):  # fmt: skip
        if want is not None:
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=name)


@pytest.mark.parametrize("mode", MODES)
def test_empty_batch_and_sequence(lib, rng, mode):
    H = 3
    for B, T in ((0, 3), (2, 0), (0, 0)):
        p = kref.problem(rng, mode, B, T, H)
        op, ins, y, hy, cy, reserve = _forward(lib, mode, p)
        assert y.shape == (B, T, H)
        np.testing.assert_array_equal(hy, p["h0"])  # nothing ran: the state passes through
        if mode == "lstm":
            np.testing.assert_array_equal(np.asarray(cy), p["c0"])
        be = lib.backend
        dh = rng.normal(size=(B, H))
        dc = rng.normal(size=(B, H))
        d_proj, dh0, dc0, drk, drb = op.backward(
            tuple(ins["projected"].shape), ins["rkernel"], ins["rbias"], ins["masks"],
            ins["zoneout"], be.zeros((B, T, H), "float64"), be.from_numpy(dh, "float64"),
            be.from_numpy(dc, "float64") if mode == "lstm" else None, reserve,
        )  # fmt: skip
        assert d_proj.shape == (B, T, kref.GATES[mode] * H)
        np.testing.assert_array_equal(np.asarray(dh0), dh)
        np.testing.assert_array_equal(np.asarray(drk), np.zeros_like(p["rk"]))
        if mode == "lstm":
            np.testing.assert_array_equal(np.asarray(dc0), dc)
        if drb is not None:
            np.testing.assert_array_equal(np.asarray(drb), np.zeros_like(p["rb"]))


def test_bad_configurations(lib, rng):
    p = kref.problem(rng, "lstm", 2, 3, 2)
    be = lib.backend
    op = lib.keras_dropout("gru", 0, "float64", False)
    d = op.desc(3, 2, True, None, None, None)
    with pytest.raises(tc.TfRnnCudaError, match="num_units"):
        op.sizes(d)
    op = lib.keras_dropout("gru", 2, "float64", False)
    d = op.desc(-1, 2, True, None, None, None)
    with pytest.raises(tc.TfRnnCudaError, match="max_time"):
        op.sizes(d)
    with pytest.raises(tc.TfRnnCudaError, match="length"):
        q = kref.problem(rng, "gru", 2, 3, 2)
        _forward(lib, "gru", q, lengths=np.array([4, 1]))
    # A mask announced but not given.
    op = lib.keras_dropout("gru", 2, "float64", False)
    d = op.desc(3, 2, True, None, p["masks"], None)
    fw, rs, _ = op.sizes(d)
    rc = lib.lib.tfrnn_keras_dropout_forward(
        lib.blas, None, ctypes.byref(d), None,
        *map(be.ptr, [be.zeros((2, 3, 6), "float64"), be.zeros((2, 2), "float64"), None,
                      be.zeros((2, 6), "float64"), None, None, None, be.zeros((2, 3, 2), "float64"),
                      None, None, be.workspace(rs), be.workspace(fw)]),
    )  # fmt: skip
    assert rc == 1 and b"masks" in lib.lib.tfrnn_last_error()
