"""The TensorFlow GPU kernels (cc/kernels/*_gpu.cc, "the glue") run inside TensorFlow, no GPU.

`make gpu-glue-emu` builds them over the host emulation of the CUDA library; they register on the
CPU under a kernel label, beside our CPU kernels of the same ops (cc/kernels/kernel_util_gpu.h).
Each test traces a public function's forward and gradients twice in a `tf.function`, once on the
CPU kernels and once with every op of ours labelled for the glue, and compares the two: the glue's
checks, output allocation, reserve handling, skip flags, dropout call counting and half / bfloat16
conversions, which the GPU machine (PyTorch, no TensorFlow) never runs. The CUDA library's numbers
themselves are checked against PyTorch's cuDNN on a GPU (tests/gpu/test_gpu_*.py) and against
references in its emulation (tests/gpu/test_cuda_*_emulation.py).

Skipped when the library is not built (`make test` does not build it); `make gpu-check` builds it
and sets TF_RNN_OPS_GPU_LIB_REQUIRED=1, which turns the skip into a failure.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import tf_rnn_ops
from tf_rnn_ops._loader import ops
from tf_rnn_ops.layer_norm_rnn import layer_norm_rnn

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARY = os.path.join(REPO, "build", "cuda", "emu", "_tf_rnn_ops_glue_emu.so")
LABEL = "tf_rnn_ops_gpu_glue_emulation"  # kGlueEmulationLabel
GLUE_OPS = (
    "TfRnn>CudnnRNN",
    "TfRnn>CudnnRNNBackprop",
    "TfRnn>CudnnRNNParamsSize",
    "TfRnn>KerasRNNDropout",
    "TfRnn>KerasRNNDropoutBackprop",
    "TfRnn>GRUBlockCell",
    "TfRnn>GRUBlockCellGrad",
    "TfRnn>LayerNormRnn",
    "TfRnn>LayerNormRnnGrad",
)
TOL = {
    tf.float64: dict(rtol=1e-10, atol=1e-10),
    tf.float32: dict(rtol=2e-5, atol=2e-5),
    tf.float16: dict(rtol=2e-2, atol=2e-2),
    tf.bfloat16: dict(rtol=5e-2, atol=5e-2),
}


@pytest.fixture(scope="module", autouse=True)
def glue_library():
    if not os.path.exists(LIBRARY):
        if os.environ.get("TF_RNN_OPS_GPU_LIB_REQUIRED") == "1":
            pytest.fail(f"{LIBRARY} is missing: `make gpu-glue-emu` builds it")
        pytest.skip(f"{LIBRARY} not built (`make gpu-glue-emu`)")
    tf.load_library(LIBRARY)


def _numpy(t):
    return None if t is None else np.asarray(tf.cast(t, tf.float64) if t.dtype.is_floating else t)


def _both(fn):
    """fn's results from the CPU kernels and from the glue: two traces of fn, the second with every
    op of GLUE_OPS it creates (its gradients' too) labelled for the glue's kernels."""

    def run(labels):
        @tf.function
        def traced():
            with tf.compat.v1.get_default_graph()._kernel_label_map(labels):
                return fn()

        return tf.nest.map_structure(_numpy, traced())

    return run({}), run(dict.fromkeys(GLUE_OPS, LABEL))


def _assert_same(cpu, glue, tol, what=""):
    flat_cpu, flat_glue = tf.nest.flatten(cpu), tf.nest.flatten(glue)
    assert len(flat_cpu) == len(flat_glue)
    for i, (a, b) in enumerate(zip(flat_cpu, flat_glue, strict=True)):
        assert (a is None) == (b is None), (what, i)
        if a is not None:
            assert a.shape == b.shape, (what, i, a.shape, b.shape)
            np.testing.assert_allclose(b, a, **tol, err_msg=f"{what} result {i}")


def _grads(loss_fn, sources):
    with tf.GradientTape() as tape:
        tape.watch(sources)
        outputs = loss_fn()
        loss = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32) * (1.0 + 0.1 * i)) for i, o in
                         enumerate(outputs)])  # fmt: skip
    return outputs, tape.gradient(loss, sources)


def test_the_label_selects_other_kernels():
    """The labelled trace runs other kernels: the glue's reserve has the CUDA layout's size, not
    the CPU kernel's (and a label no kernel has is refused, so nothing falls back silently)."""
    rng = np.random.default_rng()
    x, h0, c0 = (
        tf.constant(rng.normal(size=s), tf.float32) for s in [(5, 3, 4), (1, 3, 6), (1, 3, 6)]
    )
    n = int(tf_rnn_ops.cudnn_rnn_params_size(1, 6, 4, T=tf.float32, S=tf.int32)[0])
    p = tf.constant(rng.normal(size=n) * 0.3, tf.float32)
    cpu, glue = _both(lambda: tf_rnn_ops.cudnn_rnn(x, h0, c0, p)[3])
    assert cpu.shape != glue.shape

    @tf.function
    def unknown():
        with tf.compat.v1.get_default_graph()._kernel_label_map({"TfRnn>CudnnRNN": "no_such"}):
            return tf_rnn_ops.cudnn_rnn(x, h0, c0, p)[0]

    with pytest.raises((tf.errors.NotFoundError, tf.errors.InvalidArgumentError)):
        unknown()


CUDNN_CASES = [
    # mode, layers, direction, num_proj, input_mode, dropout
    ("lstm", 1, "unidirectional", 0, "linear_input", 0.0),
    ("lstm", 2, "bidirectional", 3, "linear_input", 0.0),
    ("gru", 2, "unidirectional", 0, "linear_input", 0.4),
    ("gru", 1, "bidirectional", 0, "skip_input", 0.0),
    ("rnn_tanh", 1, "unidirectional", 0, "linear_input", 0.0),
    ("rnn_relu", 2, "bidirectional", 0, "linear_input", 0.0),
    ("gru_reset_before", 2, "bidirectional", 0, "linear_input", 0.3),
]


@pytest.mark.parametrize("case", CUDNN_CASES, ids=lambda c: f"{c[0]}-L{c[1]}-{c[2][:2]}-p{c[3]}")
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
@pytest.mark.parametrize("lengths", [None, [5, 1, 0, 3]], ids=["full", "varlen"])
def test_cudnn_rnn(case, dtype, time_major, lengths):
    """TfRnn>CudnnRNN and its backprop: outputs, final states and every gradient (with dropout
    between layers: the same masks, as the CPU kernels draw), both layouts, variable lengths."""
    mode, layers, direction, proj, input_mode, dropout = case
    rng = np.random.default_rng()
    T, B, H = 5, 4, 6
    n_in = H if input_mode == "skip_input" else 3
    dirs = 2 if direction == "bidirectional" else 1
    h_out = proj or H
    attrs = dict(rnn_mode=mode, direction=direction, num_proj=proj, input_mode=input_mode,
                 dropout=dropout, seed=3, seed2=5)  # fmt: skip
    n = int(tf_rnn_ops.cudnn_rnn_params_size(layers, H, n_in, T=dtype, S=tf.int32, **attrs)[0])

    def t(*shape, scale=1.0):
        return tf.constant(rng.uniform(-scale, scale, shape), dtype)

    x = t(*((T, B, n_in) if time_major else (B, T, n_in)))
    h0 = t(*((layers * dirs, B, h_out) if time_major else (B, layers * dirs, h_out)))
    c0 = t(*((layers * dirs, B, H) if time_major else (B, layers * dirs, H)))
    p = t(n, scale=0.5)
    lens = None if lengths is None else tf.constant(lengths, tf.int32)

    def fn():
        def forward():
            y, h, c, _, _ = tf_rnn_ops.cudnn_rnn(
                x, h0, c0, p, sequence_lengths=lens, time_major=time_major, **attrs
            )
            return [y, h] + ([c] if mode == "lstm" else [])

        return _grads(forward, [x, h0, c0, p])

    cpu, glue = _both(fn)
    _assert_same(cpu, glue, TOL[dtype], mode)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_cudnn_rnn_half16(dtype, mode):
    """Half and bfloat16: the glue converts to float on the "device" and back, as the CPU kernels
    compute in float; outputs and gradients agree to the type's precision."""
    rng = np.random.default_rng()
    T, B, n_in, H = 4, 3, 5, 7
    n = int(tf_rnn_ops.cudnn_rnn_params_size(1, H, n_in, T=dtype, S=tf.int32, rnn_mode=mode)[0])
    x, h0, c0 = (
        tf.constant(rng.uniform(-1, 1, s), dtype) for s in [(T, B, n_in), (1, B, H), (1, B, H)]
    )
    p = tf.constant(rng.uniform(-0.5, 0.5, n), dtype)

    def fn():
        def forward():
            y, h, c, _, _ = tf_rnn_ops.cudnn_rnn(x, h0, c0, p, rnn_mode=mode)
            return [y, h] + ([c] if mode == "lstm" else [])

        return _grads(forward, [x, h0, c0, p])

    cpu, glue = _both(fn)
    _assert_same(cpu, glue, TOL[dtype], mode)


@pytest.mark.parametrize("mode", ["lstm", "gru", "gru_reset_before"])
def test_cudnn_rnn_params_gradient_only(mode):
    """A tape that asks for the params only: the backprop skips the input's and the states'
    gradients (skip_input_backprop, skip_state_backprop); the params' gradient is unchanged."""
    rng = np.random.default_rng()
    T, B, n_in, H = 6, 3, 4, 5
    n = int(
        tf_rnn_ops.cudnn_rnn_params_size(1, H, n_in, T=tf.float64, S=tf.int32, rnn_mode=mode)[0]
    )
    x, h0, c0 = (tf.constant(rng.uniform(-1, 1, s)) for s in [(T, B, n_in), (1, B, H), (1, B, H)])
    p = tf.constant(rng.uniform(-0.5, 0.5, n))

    def fn():
        return _grads(lambda: tf_rnn_ops.cudnn_rnn(x, h0, c0, p, rnn_mode=mode)[:2], [p])

    cpu, glue = _both(fn)
    _assert_same(cpu, glue, TOL[tf.float64], mode)


@pytest.mark.parametrize("S", [tf.int32, tf.int64])
def test_params_size(S):
    def fn():
        return [tf_rnn_ops.cudnn_rnn_params_size(2, 7, 3, T=tf.float32, S=S, rnn_mode=m,
                                                 direction="bidirectional")
                for m in ("lstm", "gru", "rnn_tanh", "gru_reset_before")]  # fmt: skip

    cpu, glue = _both(fn)
    _assert_same(cpu, glue, dict(rtol=0, atol=0))


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", "gru_reset_before"])
@pytest.mark.parametrize("kind", ["masks", "zoneout", "both", "both_gate_major"])
@pytest.mark.parametrize("lengths", [None, [4, 0, 2]], ids=["full", "varlen"])
def test_keras_rnn_dropout(mode, kind, lengths):
    """TfRnn>KerasRNNDropout and its backprop: recurrent masks, a zoneout keep mask, or both (and
    both with the projected input gate-major, [G, B, T, H])."""
    rng = np.random.default_rng()
    gates = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "gru_reset_before": 3}[mode]
    T, B, H = 4, 3, 5
    gate_major = kind == "both_gate_major"
    kind = "both" if gate_major else kind
    gx = tf.constant(rng.uniform(-1, 1, (gates, B, T, H) if gate_major else (B, T, gates * H)))
    h0, c0 = (tf.constant(rng.uniform(-1, 1, (B, H))) for _ in range(2))
    r = tf.constant(rng.uniform(-0.5, 0.5, (H, gates * H)))
    # (every mode: the layers pass their bias; [2, G·H], the input side's row too, with "both")
    rb = tf.constant(rng.uniform(-0.5, 0.5, (2, gates * H) if kind == "both" else gates * H))
    masks = zoneout = None
    if kind in ("masks", "both"):
        masks = tf.constant((rng.random((gates, B, H)) < 0.7) / 0.7)
    if kind in ("zoneout", "both"):
        zoneout = tf.constant((rng.random((T, B, H)) < 0.8).astype(np.float64))
    lens = None if lengths is None else tf.constant(lengths, tf.int32)
    sources = [gx, h0, r, rb] + ([c0] if mode == "lstm" else [])

    def fn():
        def forward():
            y, h, c, _ = tf_rnn_ops.keras_rnn_dropout(
                gx, h0, c0 if mode == "lstm" else None, r, masks, rb, sequence_lengths=lens,
                rnn_mode=mode, zoneout_mask=zoneout, gate_major=gate_major,
            )  # fmt: skip
            return [y, h] + ([c] if mode == "lstm" else [])

        return _grads(forward, sources)

    cpu, glue = _both(fn)
    _assert_same(cpu, glue, TOL[tf.float64], f"{mode}-{kind}")


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("batch", [0, 1, 5])
def test_gru_block_cell(dtype, batch):
    rng = np.random.default_rng()
    n_in, H = 4, 3

    def t(*shape):
        return tf.constant(rng.uniform(-1, 1, shape), dtype)

    x, h, w_ru, w_c, b_ru, b_c = (
        t(batch, n_in),
        t(batch, H),
        t(n_in + H, 2 * H),
        t(n_in + H, H),
        t(2 * H),
        t(H),
    )

    def fn():
        return _grads(lambda: list(tf_rnn_ops.gru_block_cell(x, h, w_ru, w_c, b_ru, b_c)),
                      [x, h, w_ru, w_c, b_ru, b_c])  # fmt: skip

    cpu, glue = _both(fn)
    _assert_same(cpu, glue, TOL[dtype])


@pytest.mark.parametrize("cell", ["layer_norm_lstm", "layer_norm_gru"])
@pytest.mark.parametrize("extras", ["plain", "mask_zoneout_dropout"])
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_layer_norm_rnn(cell, extras, time_major):
    """TfRnn>LayerNormRnn and its gradient op, plain or with a step mask, zoneout and a recurrent
    dropout mask, x and y time-major or (time_major=False) in Keras' layout [B, T, ·]."""
    rng = np.random.default_rng()
    lstm = cell == "layer_norm_lstm"
    T, B, n_in, H = 4, 3, 5, 6
    gh = (4 if lstm else 3) * H

    def t(*shape, scale=1.0):
        return tf.constant(rng.uniform(-scale, scale, shape))

    x = t(T, B, n_in) if time_major else t(B, T, n_in)
    h0, c0 = t(B, H), t(B, H)
    kernel, recurrent_kernel, bias = t(n_in, gh, scale=0.5), t(H, gh, scale=0.5), t(gh)
    gamma_x, gamma_h = 1.0 + t(gh, scale=0.2), 1.0 + t(gh, scale=0.2)
    kw = dict(cell=cell, epsilon=1e-3, time_major=time_major)
    if lstm:
        kw.update(beta_x=t(gh), beta_h=t(gh), gamma_c=1.0 + t(H, scale=0.2), beta_c=t(H))
    else:
        kw.update(recurrent_bias=t(gh))
    if extras != "plain":
        kw.update(
            mask=tf.constant((rng.random((T, B)) < 0.7).astype(np.float64)),
            zoneout=0.2,
            zoneout_mask=tf.constant((rng.random((T, B, H)) < 0.8).astype(np.float64)),
            recurrent_mask=tf.constant((rng.random((B, H)) < 0.7) / 0.7),
        )
    sources = [x, h0, kernel, recurrent_kernel, bias, gamma_x, gamma_h] + ([c0] if lstm else [])

    def fn():
        def forward():
            y, h, c = layer_norm_rnn(
                x, h0, c0 if lstm else None, kernel, recurrent_kernel, bias, gamma_x, gamma_h, **kw
            )
            return [y, h] + ([c] if lstm else [])

        return _grads(forward, sources)

    cpu, glue = _both(fn)
    _assert_same(cpu, glue, TOL[tf.float64], cell)


def test_glue_refuses_bad_lengths_naming_them():
    """The glue checks with the CPU kernels' rules: a length past T is an InvalidArgumentError."""
    rng = np.random.default_rng()
    x, h0, c0 = (
        tf.constant(rng.normal(size=s), tf.float32) for s in [(3, 2, 4), (1, 2, 5), (1, 2, 5)]
    )
    n = int(tf_rnn_ops.cudnn_rnn_params_size(1, 5, 4, T=tf.float32, S=tf.int32)[0])
    p = tf.zeros([n])

    @tf.function
    def call():
        with tf.compat.v1.get_default_graph()._kernel_label_map({"TfRnn>CudnnRNN": LABEL}):
            return ops().tf_rnn_cudnn_rnn(x, h0, c0, p, tf.constant([3, 4], tf.int32))[0]

    with pytest.raises(tf.errors.InvalidArgumentError, match="sequence_lengths"):
        call()
