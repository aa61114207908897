"""Fixed calls of every op, for the concurrency, determinism and memory checks of issue 7.

Each workload is a name and a function of a seed that calls one op (or one gradient) on inputs drawn
from that seed and returns its outputs as numpy arrays. The seed picks the inputs, so that parallel
callers can work on different data and still be compared with serial calls. `SMALL` sizes are used
for the memory check (many calls); `MEDIUM` ones are large enough that the kernels split their work
over TensorFlow's thread pool (the per-step products, the gate loops, Eigen's contractions), which
is where a race or a non-deterministic reduction would show.

Only importable where tf_rnn_ops is (the repository root on sys.path).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import tensorflow as tf

import tf_rnn_ops

GATES = tf_rnn_ops.params.NUM_GATES


def _rand(rng, shape, dtype=tf.float32, scale=0.5):
    return tf.constant(rng.uniform(-scale, scale, shape), dtype=dtype)


# ------------------------------------------------------------------------------------ GRU cell
def gru_inputs(seed, B, I, H, dtype=tf.float32):  # noqa: E741
    rng = np.random.default_rng(seed)
    return dict(
        x=_rand(rng, (B, I), dtype),
        h_prev=_rand(rng, (B, H), dtype),
        w_ru=_rand(rng, (I + H, 2 * H), dtype),
        w_c=_rand(rng, (I + H, H), dtype),
        b_ru=_rand(rng, (2 * H,), dtype),
        b_c=_rand(rng, (H,), dtype),
    )


def gru_fwd(seed, B=4, I=3, H=5, dtype=tf.float32):  # noqa: E741
    return [t.numpy() for t in tf_rnn_ops.gru_block_cell(**gru_inputs(seed, B, I, H, dtype))]


def gru_grad(seed, B=4, I=3, H=5, dtype=tf.float32):  # noqa: E741
    kw = gru_inputs(seed, B, I, H, dtype)
    r, u, c, _ = tf_rnn_ops.gru_block_cell(**kw)
    d_h = _rand(np.random.default_rng(seed + 1), (B, H), dtype)
    return [t.numpy() for t in tf_rnn_ops.gru_block_cell_grad(**kw, r=r, u=u, c=c, d_h=d_h)]


def gru_tape(seed, B=4, I=3, H=5, dtype=tf.float32):  # noqa: E741
    """The registered gradient (Python) of a loss on all four outputs."""
    kw = gru_inputs(seed, B, I, H, dtype)
    with tf.GradientTape() as tape:
        tape.watch(list(kw.values()))
        r, u, c, h = tf_rnn_ops.gru_block_cell(**kw)
        loss = tf.reduce_sum(h * h) + tf.reduce_sum(r) + 0.5 * tf.reduce_sum(u * c)
    return [g.numpy() for g in tape.gradient(loss, list(kw.values()))]


# ------------------------------------------------------------------------------------ fused RNN
def params_size(mode, L, H, I, dirs, input_mode="linear_input", P=0):  # noqa: E741
    g, ho = GATES[mode], (P or H)
    skip = input_mode == "skip_input" or (input_mode == "auto_select" and I == H)

    def block(inp):
        return g * H * (inp + ho) + P * H + 2 * g * H

    return dirs * (block(0 if skip else I) + (L - 1) * block(dirs * ho))


def rnn_inputs(seed, mode="lstm", L=2, H=6, I=4, B=3, T=5, bidi=True, P=0, dtype=tf.float32,  # noqa: E741
               dropout=0.0, varlen=True, time_major=True):  # fmt: skip
    rng = np.random.default_rng(seed)
    dirs = 2 if bidi else 1
    ho = P or H
    lengths = rng.integers(0, T + 1, B) if varlen else np.full(B, T)
    x_shape = (T, B, I) if time_major else (B, T, I)
    h_shape = (L * dirs, B, ho) if time_major else (B, L * dirs, ho)
    c_shape = (L * dirs, B, H) if time_major else (B, L * dirs, H)
    return dict(
        input=_rand(rng, x_shape, dtype),
        input_h=_rand(rng, h_shape, dtype),
        input_c=_rand(rng, c_shape, dtype) if mode == "lstm" else tf.zeros([0], dtype),
        params=_rand(rng, (params_size(mode, L, H, I, dirs, P=P),), dtype, 0.3),
        sequence_lengths=tf.constant(lengths, tf.int32),
        rnn_mode=mode,
        direction="bidirectional" if bidi else "unidirectional",
        dropout=dropout,
        seed=17,
        seed2=seed,
        num_proj=P,
        time_major=time_major,
    )


def cudnn_fwd(seed, training=True, **cfg):
    kw = rnn_inputs(seed, **cfg)
    out = tf_rnn_ops.cudnn_rnn(**kw, is_training=training)
    return [t.numpy() for t in out]


def _backprop_kwargs(seed, op=None, **cfg):
    kw = rnn_inputs(seed, **cfg)
    fwd = (op or tf_rnn_ops.cudnn_rnn)(**kw, is_training=True)
    rng = np.random.default_rng(seed + 2)
    out, h, c, reserve, host = fwd
    kw.update(
        output=out, output_h=h, output_c=c, output_backprop=_rand(rng, out.shape, out.dtype),
        output_h_backprop=_rand(rng, h.shape, h.dtype),
        output_c_backprop=_rand(rng, c.shape, c.dtype), reserve_space=reserve, host_reserved=host,
    )  # fmt: skip
    return kw


def cudnn_backprop(seed, **cfg):
    kw = _backprop_kwargs(seed, **cfg)
    return [t.numpy() for t in tf_rnn_ops.cudnn_rnn_backprop(**kw)]


def cudnn_tape(seed, op="ours", **cfg):
    """Gradients through the registered gradient (ours, or TensorFlow's for CudnnRNNV3)."""
    kw = rnn_inputs(seed, **cfg)
    fn = tf_rnn_ops.cudnn_rnn if op == "ours" else tf.raw_ops.CudnnRNNV3
    xs = [kw["input"], kw["input_h"], kw["input_c"], kw["params"]]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        out, h, c, _, _ = fn(**kw, is_training=True)
        loss = tf.reduce_sum(out * out) + tf.reduce_sum(h) + tf.reduce_sum(c * 0.5)
    return [out.numpy(), h.numpy()] + [g.numpy() for g in tape.gradient(loss, xs)]


def tf_cudnn_v3_fwd(seed, **cfg):
    kw = rnn_inputs(seed, **cfg)
    return [t.numpy() for t in tf.raw_ops.CudnnRNNV3(**kw, is_training=True)]


def tf_cudnn_v3_backprop(seed, **cfg):
    kw = _backprop_kwargs(seed, op=tf.raw_ops.CudnnRNNV3, **cfg)
    return [t.numpy() for t in tf.raw_ops.CudnnRNNBackpropV3(**kw)]


def _canonical_kwargs(seed, mode="gru", L=2, H=5, I=3, bidi=True, dtype=tf.float32):  # noqa: E741
    dirs = 2 if bidi else 1
    rng = np.random.default_rng(seed)
    return dict(
        num_layers=L, num_units=H, input_size=I,
        params=_rand(rng, (params_size(mode, L, H, I, dirs),), dtype),
        rnn_mode=mode, direction="bidirectional" if bidi else "unidirectional",
    )  # fmt: skip


def _counts(mode, L, bidi):
    dirs = 2 if bidi else 1
    return L * dirs * 2 * GATES[mode], L * dirs * 2 * GATES[mode]


def to_canonical(seed, op="ours", mode="gru", L=2, bidi=True, **cfg):
    kw = _canonical_kwargs(seed, mode=mode, L=L, bidi=bidi, **cfg)
    nw, nb = _counts(mode, L, bidi)
    fn = tf_rnn_ops.cudnn_rnn_params_to_canonical if op == "ours" else (
        tf.raw_ops.CudnnRNNParamsToCanonicalV2)  # fmt: skip
    w, b = fn(**kw, num_params_weights=nw, num_params_biases=nb)
    return [t.numpy() for t in list(w) + list(b)]


def to_params(seed, op="ours", mode="gru", L=2, bidi=True, **cfg):
    kw = _canonical_kwargs(seed, mode=mode, L=L, bidi=bidi, **cfg)
    nw, nb = _counts(mode, L, bidi)
    w, b = tf_rnn_ops.cudnn_rnn_params_to_canonical(
        **kw, num_params_weights=nw, num_params_biases=nb
    )
    kw.pop("params")
    fn = tf_rnn_ops.cudnn_rnn_canonical_to_params if op == "ours" else (
        tf.raw_ops.CudnnRNNCanonicalToParamsV2)  # fmt: skip
    return [fn(**kw, weights=list(w), biases=list(b)).numpy()]


def params_size_op(seed, op="ours"):
    fn = tf_rnn_ops.cudnn_rnn_params_size if op == "ours" else tf.raw_ops.CudnnRNNParamsSize
    return [
        fn(num_layers=1 + seed % 3, num_units=7, input_size=5, T=tf.float32, S=tf.int64,
           rnn_mode="lstm", direction="bidirectional").numpy()
    ]  # fmt: skip


def _p(fn, **fixed):
    return lambda seed: fn(seed, **fixed)


# name -> function(seed) -> list of numpy arrays. Small sizes: cheap calls (memory, threads).
# Dropout workloads use rate 1.0: each kernel's masks advance from call to call (as TensorFlow's),
# so only a rate that drops every element gives repeated calls bitwise the same outputs.
SMALL: dict[str, Callable[[int], list[np.ndarray]]] = {
    "gru_block_cell": _p(gru_fwd),
    "gru_block_cell_grad": _p(gru_grad),
    "gru_block_cell_f16": _p(gru_fwd, dtype=tf.float16),
    "cudnn_rnn_lstm": _p(cudnn_fwd, mode="lstm"),
    "cudnn_rnn_gru_inference": _p(cudnn_fwd, mode="gru", training=False),
    "cudnn_rnn_relu_batch_major": _p(cudnn_fwd, mode="rnn_relu", time_major=False),
    "cudnn_rnn_lstm_proj_dropout": _p(cudnn_fwd, mode="lstm", P=3, dropout=1.0, L=3),
    "cudnn_rnn_tanh_bf16": _p(cudnn_fwd, mode="rnn_tanh", dtype=tf.bfloat16),
    "cudnn_rnn_backprop_lstm": _p(cudnn_backprop, mode="lstm", dropout=1.0),
    "cudnn_rnn_backprop_gru": _p(cudnn_backprop, mode="gru", time_major=False),
    "cudnn_rnn_params_size": _p(params_size_op),
    "cudnn_rnn_params_to_canonical": _p(to_canonical),
    "cudnn_rnn_canonical_to_params": _p(to_params),
    "tf.CudnnRNNV3": _p(tf_cudnn_v3_fwd, mode="gru"),
    "tf.CudnnRNNBackpropV3": _p(tf_cudnn_v3_backprop, mode="lstm"),
    "tf.CudnnRNNParamsSize": _p(params_size_op, op="tf"),
    "tf.CudnnRNNParamsToCanonicalV2": _p(to_canonical, op="tf", mode="lstm"),
    "tf.CudnnRNNCanonicalToParamsV2": _p(to_params, op="tf", mode="rnn_tanh"),
}

# Gradients through the registered Python gradients (several ops per call).
TAPES: dict[str, Callable[[int], list[np.ndarray]]] = {
    "gru_block_cell_gradient": _p(gru_tape),
    "cudnn_rnn_gradient_lstm": _p(cudnn_tape, mode="lstm", dropout=1.0),
    "tf.CudnnRNNV3_gradient_gru": _p(cudnn_tape, op="tf", mode="gru"),
}

# Sizes at which the kernels use the thread pool.
_MED = dict(H=96, I=48, B=48, T=6, L=2)
MEDIUM: dict[str, Callable[[int], list[np.ndarray]]] = {
    "gru_block_cell": _p(gru_fwd, B=256, I=128, H=256),
    "gru_block_cell_grad": _p(gru_grad, B=256, I=128, H=256),
    "gru_block_cell_gradient": _p(gru_tape, B=128, I=64, H=128),
    "cudnn_rnn_lstm": _p(cudnn_fwd, mode="lstm", **_MED),
    "cudnn_rnn_gru": _p(cudnn_fwd, mode="gru", time_major=False, **_MED),
    "cudnn_rnn_lstm_proj_dropout": _p(cudnn_fwd, mode="lstm", P=40, dropout=1.0, **_MED),
    "cudnn_rnn_backprop_lstm": _p(cudnn_backprop, mode="lstm", **_MED),
    "cudnn_rnn_backprop_gru": _p(cudnn_backprop, mode="gru", dropout=1.0, **_MED),
    "cudnn_rnn_backprop_relu_f64": _p(cudnn_backprop, mode="rnn_relu", dtype=tf.float64, **_MED),
    "cudnn_rnn_gradient_lstm": _p(cudnn_tape, mode="lstm", **_MED),
    "tf.CudnnRNNV3_gradient_gru": _p(cudnn_tape, op="tf", mode="gru", **_MED),
}


def digest(arrays: list[np.ndarray]) -> str:
    """A hash of the exact bits (and shapes and dtypes) of a list of arrays."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def bitwise_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
        for x, y in zip(a, b, strict=True)
    )
