"""The CUDA fused RNN against PyTorch's cuDNN nn.GRU / nn.LSTM / nn.RNN with the same weights:
forward, input / state / weight gradients, variable lengths (pack_padded_sequence), bidirectional,
multi-layer, projection, batch-major; skip_input, zero lengths and dropout against the float64
reference of docs/MATH.md and finite differences. gru_reset_before (Keras GRU reset_after=False),
which PyTorch lacks, against the float64 numpy forward and backprop of cuda_rnn_reference. Needs a
CUDA device and PyTorch (skipped otherwise)."""

from __future__ import annotations

import cuda_rnn_reference as ref
import gpu_harness
import numpy as np
import pytest

torch = gpu_harness.require_gpu_library()


@pytest.fixture(scope="module", params=[1, 0], ids=["fused_steps", "gemm_steps"])
def lib(request):
    """The library, its forward steps one fused kernel each (FusedForwardStepKernel), or a cuBLAS
    GEMM and a gate kernel each: every test runs both ways."""
    library = gpu_harness.open_library(torch)
    previous = library.set_fused_steps(request.param)
    yield library
    library.set_fused_steps(previous)
    library.close()


TOL = {"float64": 1e-9, "float32": 2e-4}


def _close(got, want, dtype, what):
    got, want = got.detach().double().cpu().numpy(), want.detach().double().cpu().numpy()
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=what)


def _run_torch(module, shape, x, h0, c0, lengths, batch_first, grads):
    """PyTorch forward (packed when lengths are given), backward of Σ gy·y + Σ gh·hy (+ Σ gc·cy)."""
    x = x.clone().requires_grad_(True)
    h0 = h0.clone().requires_grad_(True)
    c0 = None if c0 is None else c0.clone().requires_grad_(True)
    inp = x
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
        )
    state = (h0, c0) if shape.mode == "lstm" else h0
    out, st = module(inp, state)
    if lengths is not None:
        steps = x.shape[1] if batch_first else x.shape[0]
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=batch_first, total_length=steps
        )
    hy, cy = st if shape.mode == "lstm" else (st, None)
    gy, gh, gc = grads
    loss = (out * gy).sum() + (hy * gh).sum() + (0 if cy is None else (cy * gc).sum())
    module.zero_grad()
    loss.backward()
    return out, hy, cy, x.grad, h0.grad, None if c0 is None else c0.grad


def _compare(lib, shape, dtype, steps, batch, lengths, time_major, seed=0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tdt = getattr(torch, dtype)
    module = gpu_harness.torch_module(torch, shape, dtype, batch_first=not time_major)
    if shape.skip_input:
        gpu_harness.set_skip_input_weights(torch, module, shape)
    n = shape.num_dirs * shape.num_layers

    def rand(*s):
        u = torch.rand(*s, generator=gen, dtype=torch.float64) - 0.5
        return u.to(gpu_harness.DEVICE, tdt)

    seq = (steps, batch) if time_major else (batch, steps)
    x = rand(*seq, shape.input_size)
    h0 = rand(n, batch, shape.h_out)  # PyTorch's states are [L·dirs, B, H] in both layouts
    c0 = rand(n, batch, shape.num_units) if shape.mode == "lstm" else None
    gy = rand(*seq, shape.num_dirs * shape.h_out)
    gh = rand(n, batch, shape.h_out)
    gc = rand(n, batch, shape.num_units) if shape.mode == "lstm" else None
    want = _run_torch(module, shape, x, h0, c0, lengths, not time_major, (gy, gh, gc))
    want_dparams = gpu_harness.opaque_from_torch(torch, module, shape, grads=True)

    def ours_state(s):  # ours: [B, L·dirs, H] when batch-major
        return None if s is None else (s if time_major else s.transpose(0, 1).contiguous())

    rnn = lib.rnn(shape, dtype, time_major=time_major)
    params = gpu_harness.opaque_from_torch(torch, module, shape)
    assert params.numel() == rnn.params_size() == shape.params_size()
    y, hy, cy, reserve = rnn.forward(
        x, ours_state(h0), ours_state(c0), params, lengths, is_training=True
    )
    y_inf, hy_inf, _, _ = rnn.forward(x, ours_state(h0), ours_state(c0), params, lengths)
    dx, dh0, dc0, dparams = rnn.backward(
        x, params, gy, ours_state(gh), ours_state(gc), reserve, lengths
    )
    # Without the states' grads (skip_state_backprop: the first step's dh_prev products skipped)
    # the other grads are the same.
    dx_ns, dh0_ns, dc0_ns, dparams_ns = rnn.backward(
        x, params, gy, ours_state(gh), ours_state(gc), reserve, lengths, want_states=False
    )
    lib.backend.synchronize()
    assert dh0_ns is None and dc0_ns is None
    _close(dx_ns, dx, dtype, "dx without the states' grads")
    _close(dparams_ns, dparams, dtype, "dparams without the states' grads")
    back = ours_state  # the same transpose maps ours to PyTorch's layout
    _close(y, want[0], dtype, "y")
    _close(y_inf, want[0], dtype, "y (inference)")
    _close(back(hy), want[1], dtype, "hy")
    _close(back(hy_inf), want[1], dtype, "hy (inference)")
    if shape.mode == "lstm":
        _close(back(cy), want[2], dtype, "cy")
        _close(back(dc0), want[5], dtype, "dc0")
    _close(dx, want[3], dtype, "dx")
    _close(back(dh0), want[4], dtype, "dh0")
    _close(dparams, want_dparams, dtype, "dparams")


MODES = ["rnn_relu", "rnn_tanh", "lstm", "gru"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers,dirs", [(1, 1), (2, 2), (3, 1)], ids=["L1", "L2-bi", "L3"])
@pytest.mark.parametrize("lengths", [None, [7, 3, 1, 6, 7]], ids=["full", "varlen"])
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_matches_cudnn(lib, dtype, mode, layers, dirs, lengths, time_major):
    shape = ref.RnnShape(mode, layers, 8, 6, dirs)
    _compare(lib, shape, dtype, 7, 5, lengths, time_major)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layers,dirs", [(1, 1), (2, 2)], ids=["L1", "L2-bi"])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5]], ids=["full", "varlen"])
def test_lstm_projection_matches_cudnn(lib, dtype, layers, dirs, lengths):
    shape = ref.RnnShape("lstm", layers, 8, 5, dirs, num_proj=3)
    _compare(lib, shape, dtype, 6, 3, lengths, True)


@pytest.mark.parametrize("mode", MODES)
def test_skip_input_matches_cudnn_with_identity_input_weights(lib, mode):
    shape = ref.RnnShape(mode, 2, 8, 8, 2, skip_input=True)
    _compare(lib, shape, "float64", 5, 4, [5, 2, 4, 1], True)


@pytest.mark.parametrize("mode", ["gru", "lstm", "rnn_tanh"])
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_odd_wide_sizes(lib, mode, time_major):
    """257 units, 19 rows, both directions, variable lengths: the fused step kernel's tiles end
    inside the batch and the units and h is staged in three chunks (128, 128, 1)."""
    shape = ref.RnnShape(mode, 1, 257, 33, 2)
    lengths = [6, 1, 2, 5, 6, 3, 2, 6, 4, 1, 6, 5, 5, 2, 3, 6, 1, 4, 6]  # (PyTorch: none 0)
    _compare(lib, shape, "float64", 6, 19, lengths, time_major)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_larger_float32(lib, mode):
    shape = ref.RnnShape(mode, 2, 128, 64, 2)
    _compare(lib, shape, "float32", 20, 32, list(range(20, 4, -1)) * 2, True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "layers,dirs,skip", [(1, 1, False), (2, 2, False), (2, 1, True)], ids=["L1", "L2-bi", "L2-skip"]
)
@pytest.mark.parametrize("lengths", [None, [7, 3, 1, 6, 0]], ids=["full", "varlen"])
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_gru_reset_before_matches_float64_reference(
    lib, dtype, layers, dirs, skip, lengths, time_major
):
    """No PyTorch module has the reset-before GRU: forward (training and inference) and every
    gradient against the float64 numpy references."""
    rng = np.random.default_rng(layers * 10 + dirs)
    units = 8
    shape = ref.RnnShape(
        "gru_reset_before", layers, units, units if skip else 6, dirs, skip_input=skip
    )
    n, steps, batch = dirs * layers, 7, 5
    seq = (steps, batch) if time_major else (batch, steps)
    state = (n, batch, units) if time_major else (batch, n, units)
    x = rng.uniform(-1, 1, (*seq, shape.input_size))
    h0 = rng.uniform(-1, 1, state)
    params = rng.uniform(-0.5, 0.5, shape.params_size())
    dy = rng.standard_normal((*seq, dirs * units))
    dhy = rng.standard_normal(state)
    be = lib.backend
    dev = [be.from_numpy(a, dtype) for a in (x, h0, params, dy, dhy)]
    rnn = lib.rnn(shape, dtype, time_major=time_major)
    y, hy, _, reserve = rnn.forward(dev[0], dev[1], None, dev[2], lengths, is_training=True)
    y_inf, hy_inf, _, _ = rnn.forward(dev[0], dev[1], None, dev[2], lengths)
    dx, dh0, _, dparams = rnn.backward(dev[0], dev[2], dev[3], dev[4], None, reserve, lengths)
    be.synchronize()
    wy, why, _ = ref.rnn_forward(shape, params, x, h0, None, lengths, time_major)
    wdx, wdh0, wdp = ref.gru_reset_before_grads(shape, params, x, h0, dy, dhy, lengths, time_major)
    checks = [(y, wy, "y"), (y_inf, wy, "y (inference)"), (hy, why, "hy")]
    checks += [(hy_inf, why, "hy (inference)"), (dx, wdx, "dx"), (dh0, wdh0, "dh0")]
    for got, want, what in [*checks, (dparams, wdp, "dparams")]:
        _close(got, torch.from_numpy(want), dtype, what)


def test_against_numpy_reference_with_zero_lengths(lib):
    rng = np.random.default_rng(1)
    shape = ref.RnnShape("lstm", 2, 6, 4, 2, num_proj=3)
    x = rng.uniform(-1, 1, (5, 4, 4))
    h0 = rng.uniform(-1, 1, (4, 4, 3))
    c0 = rng.uniform(-1, 1, (4, 4, 6))
    params = rng.uniform(-0.5, 0.5, shape.params_size())
    lengths = [5, 0, 2, 0]
    be = lib.backend
    rnn = lib.rnn(shape, "float64")
    y, hy, cy, _ = rnn.forward(*[be.from_numpy(a, "float64") for a in (x, h0, c0, params)], lengths)
    wy, why, wcy = ref.rnn_forward(shape, params, x, h0, c0, lengths)
    for got, want in ((y, wy), (hy, why), (cy, wcy)):
        np.testing.assert_allclose(be.to_numpy(got), want, rtol=1e-12, atol=1e-12)


def test_dropout_backprop_matches_finite_differences(lib):
    """With dropout the masks come from the seed: the training forward is deterministic and
    smooth in its inputs, and the backprop (which reads the masks from the reserve) is its
    gradient."""
    rng = np.random.default_rng(2)
    shape = ref.RnnShape("gru", 3, 6, 4, 2)
    be = lib.backend
    rnn = lib.rnn(shape, "float64", dropout=0.3, seed=42)
    x = be.from_numpy(rng.uniform(-1, 1, (5, 3, 4)), "float64")
    h0 = be.from_numpy(rng.uniform(-1, 1, (6, 3, 6)), "float64")
    params = be.from_numpy(rng.uniform(-0.5, 0.5, shape.params_size()), "float64")
    lengths = [5, 3, 2]
    wy = be.from_numpy(rng.standard_normal((5, 3, 12)), "float64")

    def loss(xv, pv):
        y, _, _, _ = rnn.forward(xv, h0, None, pv, lengths, is_training=True)
        return float((y * wy).sum())

    y, _, _, reserve = rnn.forward(x, h0, None, params, lengths, is_training=True)
    y2, _, _, reserve2 = rnn.forward(x, h0, None, params, lengths, is_training=True)
    assert torch.equal(y, y2) and torch.equal(reserve, reserve2)
    dx, _, _, dparams = rnn.backward(x, params, wy, None, None, reserve, lengths)
    eps = 1e-6
    for value, grad, is_x in ((x, dx, True), (params, dparams, False)):
        for _ in range(3):
            v = torch.randn_like(value)
            plus = loss(value + eps * v, params) if is_x else loss(x, value + eps * v)
            minus = loss(value - eps * v, params) if is_x else loss(x, value - eps * v)
            numeric = (plus - minus) / (2 * eps)
            assert float((grad * v).sum()) == pytest.approx(numeric, rel=1e-6, abs=1e-8)


def test_inference_forward_is_deterministic_and_ignores_dropout(lib):
    shape = ref.RnnShape("lstm", 2, 16, 8, 2)
    module = gpu_harness.torch_module(torch, shape, "float32")
    params = gpu_harness.opaque_from_torch(torch, module, shape)
    rnn = lib.rnn(shape, "float32", dropout=0.5, seed=3)
    x = torch.randn(9, 4, 8, device=gpu_harness.DEVICE)
    h0 = torch.zeros(4, 4, 16, device=gpu_harness.DEVICE)
    a = rnn.forward(x, h0, h0, params)[0]
    b = rnn.forward(x, h0, h0, params)[0]
    assert torch.equal(a, b)
    with torch.no_grad():
        want, _ = module(x)
    _close(a, want, "float32", "y")


def test_bad_lengths(lib):
    shape = ref.RnnShape("gru", 1, 4, 3)
    rnn = lib.rnn(shape, "float32")
    x = torch.zeros(3, 2, 3, device=gpu_harness.DEVICE)
    h0 = torch.zeros(1, 2, 4, device=gpu_harness.DEVICE)
    p = torch.zeros(shape.params_size(), device=gpu_harness.DEVICE)
    with pytest.raises(gpu_harness.tc.TfRnnCudaError, match="sequence_lengths"):
        rnn.forward(x, h0, None, p, [4, 1])
