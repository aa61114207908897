"""TfRnn>KerasRNNDropout's CUDA library calls (cc/cuda/keras_rnn_dropout_cuda.h) on a GPU against
float64 references that are not ours (PyTorch has no recurrent dropout or zoneout): Keras 3's cells
with the recurrent-dropout masks injected and haste's zoneout (tests/cells/cell_reference.py, via
keras_dropout_reference.py) for the forward at sizes up to B = 64, H = 257, and central finite
differences of them for every gradient at small sizes. Every cell; masks or none; zoneout mask,
scalar or none; sequence lengths; both layouts; float64 and float32. Needs a CUDA device and
PyTorch as the tensor holder (skipped otherwise; TF_RNN_OPS_GPU_HARNESS=emulation runs it on the
host emulation)."""

from __future__ import annotations

import zlib

import gpu_harness
import keras_dropout_reference as kref
import numpy as np
import pytest

torch = gpu_harness.require_gpu_library()

TOL = {"float64": 1e-9, "float32": 2e-4}


@pytest.fixture(scope="module")
def lib():
    library = gpu_harness.open_library(torch)
    yield library
    library.close()


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _layout(a, time_major):
    return None if a is None else (np.swapaxes(a, 0, 1) if time_major else a)


def _close(got, want, dtype, what):
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=what)


def _run(lib, mode, p, dtype, time_major, lengths, grads=None, gate_major=False):
    """(y, hy, cy[, grads]) of one call; gate_major: the projected input (and its grad) as G
    blocks [G, ·, ·, H], converted back here."""
    be = lib.backend
    cast = lambda a: None if a is None else be.from_numpy(a, dtype)  # noqa: E731
    op = lib.keras_dropout(mode, p["h0"].shape[1], dtype, time_major, gate_major)
    gx = np.ascontiguousarray(_layout(p["gx"], time_major))
    if gate_major:
        gx = kref.to_gate_major(gx, p["rk"].shape[1] // p["rk"].shape[0])
    gx = cast(gx)
    rk, rb, masks, zoneout = cast(p["rk"]), cast(p["rb"]), cast(p["masks"]), cast(p["zoneout"])
    y, hy, cy, reserve = op.forward(
        gx, cast(p["h0"]), cast(p["c0"]), rk, rb, masks, zoneout, lengths=lengths
    )
    out = [_layout(be.to_numpy(y), time_major), be.to_numpy(hy), be.to_numpy(cy)]
    if grads is not None:
        args = (tuple(gx.shape), rk, rb, masks, zoneout,
                cast(np.ascontiguousarray(_layout(grads["dy"], time_major))), cast(grads["dh"]),
                cast(grads["dc"]) if mode == "lstm" else None, reserve)  # fmt: skip
        d = [be.to_numpy(a) for a in op.backward(*args, lengths=lengths)]
        # Without the states' grads (skip_state_backprop: the first step's dh_prev products
        # skipped) the other grads are the same.
        part = op.backward(*args, lengths=lengths, want_states=False)
        assert part[1] is None and part[2] is None
        for i in (0, 3, 4):
            if d[i] is not None:
                _close(be.to_numpy(part[i]), d[i], dtype, f"grad {i} without the states' grads")
        if gate_major:
            d[0] = kref.from_gate_major(d[0])
        d[0] = _layout(d[0], time_major)
        out.append(d)
    return out


# (B, T, H); the host emulation's naive GEMMs leave the largest to a GPU
SIZES = [(1, 1, 1), (3, 5, 257)] + ([] if gpu_harness.EMULATION else [(64, 12, 128)])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("zoneout", ["none", "mask", "scalar"])
@pytest.mark.parametrize("masks", [True, False], ids=["masks", "nomasks"])
@pytest.mark.parametrize("mode", kref.MODES)
def test_forward_matches_reference(lib, mode, masks, zoneout, dtype):
    _check_outputs(lib, mode, _rng(mode, masks, zoneout, dtype), (dtype,), (False, True),
                   masks=masks, zoneout=zoneout)  # fmt: skip


def _check_outputs(lib, mode, rng, dtypes, time_majors, gate_major=False, **problem):
    """y, h and c at every size (lengths where B > 2) against the float64 reference."""
    for B, T, H in SIZES:
        p = kref.problem(rng, mode, B, T, H, **problem)
        lengths = rng.integers(0, T + 1, size=B) if B > 2 else None
        want = kref.forward(mode, p["gx"], p["h0"], p["c0"], p["rk"], p["rb"], p["masks"],
                            p["zoneout"], lengths)  # fmt: skip
        for dtype in dtypes:
            for time_major in time_majors:
                got = _run(lib, mode, p, dtype, time_major, lengths, gate_major=gate_major)
                for what, g, w in zip(("y", "h", "c"), got, want, strict=True):
                    if w is not None:
                        _close(g, w, dtype, f"{what} B={B} T={T} H={H} {dtype} tm={time_major}")


@pytest.mark.parametrize("zoneout", ["none", "mask", "scalar"])
@pytest.mark.parametrize("masks", [True, False], ids=["masks", "nomasks"])
@pytest.mark.parametrize("mode", kref.MODES)
def test_grads_match_finite_differences(lib, mode, masks, zoneout):
    rng = _rng(mode, masks, zoneout, "grad")
    for time_major, lengths in ((False, None), (True, np.array([4, 0, 2]))):
        _check_grads(lib, rng, mode, time_major, lengths, masks=masks, zoneout=zoneout)


def _check_grads(lib, rng, mode, time_major, lengths, gate_major=False, **problem):
    """Every grad of a B = 3, T = 4, H = 2 call against central finite differences."""
    B, T, H = 3, 4, 2
    p = kref.problem(rng, mode, B, T, H, **problem)
    if p["zoneout"] is not None and p["zoneout"].ndim == 3:  # any values: linear in m
        p["zoneout"] = rng.uniform(0.0, 1.0, p["zoneout"].shape)
    w = {"dy": rng.normal(size=(B, T, H)), "dh": rng.normal(size=(B, H)),
         "dc": rng.normal(size=(B, H))}  # fmt: skip
    d_proj, dh0, dc0, drk, drb = _run(lib, mode, p, "float64", time_major, lengths, w,
                                      gate_major)[3]  # fmt: skip
    want = kref.numeric_grads(mode, p, w, lengths)
    tol = dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d_proj, want["gx"], **tol)
    np.testing.assert_allclose(dh0, want["h0"], **tol)
    np.testing.assert_allclose(drk, want["rk"], **tol)
    if mode == "lstm":
        np.testing.assert_allclose(dc0, want["c0"], **tol)
    if p["rb"] is not None:
        np.testing.assert_allclose(drb, want["rb"], **tol)


@pytest.mark.parametrize("mode", kref.MODES)
def test_gate_major(lib, mode):
    """gate_major (the layers' input dropout: the projected input and its grad as [G, B, T, H]
    blocks, Keras' gate order): outputs at every size in both layouts, and every grad."""
    rng = _rng(mode, "gate_major")
    _check_outputs(lib, mode, rng, ("float64", "float32"), (False, True), gate_major=True,
                   zoneout="mask")  # fmt: skip
    _check_grads(lib, rng, mode, True, np.array([4, 0, 2]), gate_major=True, zoneout="mask")


@pytest.mark.parametrize("mode", kref.MODES)
def test_input_bias_row(lib, mode):
    """recurrent_bias [2, G·H] (the input side's bias row, then the recurrent one's: how the
    layers pass Keras GRU's bias): outputs at every size, and both rows' grads."""
    rng = _rng(mode, "rows")
    _check_outputs(lib, mode, rng, ("float64", "float32"), (False,), rbias="rows")
    _check_grads(lib, rng, mode, True, np.array([4, 0, 2]), rbias="rows")
