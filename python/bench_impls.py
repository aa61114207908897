"""The implementations `python/bench.py` times, each built for one case and one phase.

Every builder takes a `Case` and a phase ("forward": inference; "train": forward + backward + every
weight gradient) and returns a zero-argument callable that runs that work once, or raises `Skip`
with the reason when the implementation cannot run the case. Inputs are function arguments and
weights are variables (TensorFlow) or parameters (PyTorch), so nothing constant-folds away; each
call is one execution of a traced graph, so the graph optimizer never merges repeated work.

Implementations (`IMPLS`):

* ours       `tf_rnn_ops.cudnn_rnn` in a `tf.function` (time-major); inference with
             is_training=False; training = the op (is_training=True) + `tape.gradient` w.r.t. input,
             initial state(s) and the opaque params.
* keras      `keras.layers.GRU` / `LSTM` / `SimpleRNN` (Keras' CPU step loop, return_sequences and
             return_state) called in a `tf.function` with jit_compile=False; batch-major input;
             gradients w.r.t. input, initial state(s) and every trainable weight. Unidirectional,
             one layer.
* blocklstm  `tf.raw_ops.BlockLSTM` (no peephole, no cell clip) and TensorFlow's registered gradient
             (BlockLSTMGrad) through `tf.GradientTape`. LSTM, unidirectional, one layer.
* grublock   a `tf.while_loop` over time of a GRU block cell: inference runs TensorFlow's own
             `tf.raw_ops.GRUBlockCell`; training runs `tf_rnn_ops.gru_block_cell` (the same op with
             a registered gradient; TensorFlow registers none for its own). GRU, unidirectional,
             one layer. Its GRU is the reset_before variant (Keras reset_after=False); same flops.
* torch      PyTorch CPU `nn.GRU` / `nn.LSTM` / `nn.RNN(tanh)` (time-major), `torch.no_grad()` for
             inference, `torch.autograd.grad` w.r.t. input, initial state(s) and every parameter.

The loss of every training step is the same: the vector-Jacobian product of the output sequence with
a fixed random cotangent `dy` (no reduction that an optimizer could simplify).
"""

from __future__ import annotations

import dataclasses
import math
import runpy
import zlib
from pathlib import Path

import numpy as np

# The package's table of gate counts, read by path (tf_rnn_ops/_modes.py is a file of constants):
# importing the package here would load TensorFlow into every peer's process.
NUM_GATES: dict[str, int] = runpy.run_path(
    str(Path(__file__).resolve().parents[1] / "tf_rnn_ops" / "_modes.py")
)["NUM_GATES"]
PHASES = ("forward", "train")


class Skip(Exception):
    """The implementation cannot run this case (the message says why). na: by design (a peer
    without that mode or shape), as opposed to something missing that a report should list."""

    def __init__(self, message: str, na: bool = True):
        super().__init__(message)
        self.na = na


@dataclasses.dataclass(frozen=True)
class Case:
    mode: str  # gru | lstm | rnn_tanh | rnn_relu
    hidden: int
    batch: int
    dirs: int  # 1 or 2
    layers: int
    time: int = 100
    input: int = 128

    @property
    def direction(self) -> str:
        return "bidirectional" if self.dirs == 2 else "unidirectional"

    @property
    def label(self) -> str:
        d = "bi" if self.dirs == 2 else "uni"
        return (
            f"{self.mode} H={self.hidden} B={self.batch} {d} L={self.layers} "
            f"T={self.time} I={self.input}"
        )

    def forward_flops(self) -> float:
        """2·T·B·G·H·(I_l + H) per layer and direction (I_l = dirs·H above layer 0)."""
        g = NUM_GATES[self.mode]
        total = 0.0
        for layer in range(self.layers):
            in_size = self.input if layer == 0 else self.dirs * self.hidden
            total += (
                self.dirs * 2.0 * self.time * self.batch * g * self.hidden * (in_size + self.hidden)
            )
        return total

    def flops(self, phase: str) -> float:
        """Forward flops; a training step counts as 3× forward (forward, data and weight grads)."""
        return self.forward_flops() * (3.0 if phase == "train" else 1.0)


def _rng(case: Case, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr((case, salt)).encode()))


def _uniform(rng, shape, scale):
    return rng.uniform(-scale, scale, size=shape).astype(np.float32)


# ---------------------------------------------------------------- TensorFlow helpers


def _tf():
    import tensorflow as tf

    return tf


def _bind(fn, *args):
    def run():
        return fn(*args)

    return run


# ---------------------------------------------------------------- ours


def build_ours(case: Case, phase: str):
    tf = _tf()
    import tf_rnn_ops
    from tf_rnn_ops import params as P

    rng = _rng(case)
    T, B, NI, H, L, D = case.time, case.batch, case.input, case.hidden, case.layers, case.dirs
    lstm = case.mode == "lstm"
    n = P.params_size(case.mode, L, H, NI, case.direction)
    params = tf.Variable(_uniform(rng, [n], 1.0 / math.sqrt(H)), name="params")
    x = tf.constant(rng.standard_normal((T, B, NI), dtype=np.float32))
    h0 = tf.constant(_uniform(rng, (L * D, B, H), 0.5))
    c0 = tf.constant(_uniform(rng, (L * D, B, H), 0.5)) if lstm else tf.zeros([0])
    kw = dict(rnn_mode=case.mode, direction=case.direction, time_major=True)

    if phase == "forward":

        @tf.function(jit_compile=False)
        def fwd(x, h0, c0):
            y, h, c, _, _ = tf_rnn_ops.cudnn_rnn(
                input=x, input_h=h0, input_c=c0, params=params, is_training=False, **kw
            )
            return y, h, c

        return _bind(fwd, x, h0, c0)

    dy = tf.constant(rng.standard_normal((T, B, D * H), dtype=np.float32))

    @tf.function(jit_compile=False)
    def train(x, h0, c0, dy):
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0])
            y, _, _, _, _ = tf_rnn_ops.cudnn_rnn(
                input=x, input_h=h0, input_c=c0, params=params, is_training=True, **kw
            )
        sources = [x, h0] + ([c0] if lstm else []) + [params]
        return tape.gradient(y, sources, output_gradients=dy)

    return _bind(train, x, h0, c0, dy)


def build_ours_trainfwd(case: Case, phase: str):
    """Our forward run with is_training=True (bookkeeping for backprop, no backward): the inference
    forward must be faster than this (docs/MATH.md, "Fused RNN cells")."""
    if phase != "forward":
        raise Skip("ours_trainfwd: forward phase only")
    tf = _tf()
    import tf_rnn_ops
    from tf_rnn_ops import params as P

    rng = _rng(case)
    T, B, NI, H, L, D = case.time, case.batch, case.input, case.hidden, case.layers, case.dirs
    n = P.params_size(case.mode, L, H, NI, case.direction)
    params = tf.Variable(_uniform(rng, [n], 1.0 / math.sqrt(H)), name="params")
    x = tf.constant(rng.standard_normal((T, B, NI), dtype=np.float32))
    h0 = tf.constant(_uniform(rng, (L * D, B, H), 0.5))
    c0 = tf.constant(_uniform(rng, (L * D, B, H), 0.5)) if case.mode == "lstm" else tf.zeros([0])

    @tf.function(jit_compile=False)
    def fwd(x, h0, c0):
        return tf_rnn_ops.cudnn_rnn(
            input=x, input_h=h0, input_c=c0, params=params, is_training=True,
            rnn_mode=case.mode, direction=case.direction, time_major=True,
        )  # fmt: skip

    return _bind(fwd, x, h0, c0)


# ---------------------------------------------------------------- keras


def build_keras(case: Case, phase: str):
    if case.dirs != 1 or case.layers != 1:
        raise Skip("keras peer: unidirectional 1-layer cases only")
    if case.mode not in ("gru", "lstm", "rnn_tanh"):
        raise Skip(f"keras peer: no layer for {case.mode}")
    tf = _tf()
    import keras

    rng = _rng(case, 1)
    T, B, NI, H = case.time, case.batch, case.input, case.hidden
    lstm = case.mode == "lstm"
    cls = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM, "rnn_tanh": keras.layers.SimpleRNN}
    layer = cls[case.mode](H, return_sequences=True, return_state=True)
    layer.build((B, T, NI))
    x = tf.constant(rng.standard_normal((B, T, NI), dtype=np.float32))
    states = [tf.constant(_uniform(rng, (B, H), 0.5)) for _ in range(2 if lstm else 1)]

    if phase == "forward":

        @tf.function(jit_compile=False)
        def fwd(x, states):
            return layer(x, initial_state=states, training=False)

        return _bind(fwd, x, states)

    dy = tf.constant(rng.standard_normal((B, T, H), dtype=np.float32))
    weights = list(layer.trainable_variables)

    @tf.function(jit_compile=False)
    def train(x, states, dy):
        with tf.GradientTape() as tape:
            tape.watch([x] + list(states))
            out = layer(x, initial_state=states, training=True)
        return tape.gradient(out[0], [x] + list(states) + weights, output_gradients=dy)

    return _bind(train, x, states, dy)


# ---------------------------------------------------------------- BlockLSTM


def build_blocklstm(case: Case, phase: str):
    if case.mode != "lstm" or case.dirs != 1 or case.layers != 1:
        raise Skip("BlockLSTM peer: LSTM unidirectional 1-layer only")
    tf = _tf()
    rng = _rng(case, 2)
    T, B, NI, H = case.time, case.batch, case.input, case.hidden
    w = tf.Variable(_uniform(rng, (NI + H, 4 * H), 1.0 / math.sqrt(H)))
    b = tf.Variable(np.zeros(4 * H, np.float32))
    peep = tf.zeros([H])  # use_peephole=False: unused
    x = tf.constant(rng.standard_normal((T, B, NI), dtype=np.float32))
    h0 = tf.constant(_uniform(rng, (B, H), 0.5))
    c0 = tf.constant(_uniform(rng, (B, H), 0.5))
    seq_len_max = tf.constant(T, tf.int64)

    def block(x, c0, h0):
        return tf.raw_ops.BlockLSTM(
            seq_len_max=seq_len_max, x=x, cs_prev=c0, h_prev=h0, w=w, wci=peep, wcf=peep,
            wco=peep, b=b, forget_bias=0.0, cell_clip=-1.0, use_peephole=False,
        )  # fmt: skip

    if phase == "forward":

        @tf.function(jit_compile=False)
        def fwd(x, c0, h0):
            out = block(x, c0, h0)
            return out.h, out.cs

        return _bind(fwd, x, c0, h0)

    dy = tf.constant(rng.standard_normal((T, B, H), dtype=np.float32))

    @tf.function(jit_compile=False)
    def train(x, c0, h0, dy):
        with tf.GradientTape() as tape:
            tape.watch([x, c0, h0])
            out = block(x, c0, h0)
        return tape.gradient(out.h, [x, c0, h0, w, b], output_gradients=dy)

    return _bind(train, x, c0, h0, dy)


# ---------------------------------------------------------------- GRU block cell loop


def build_grublock(case: Case, phase: str):
    if case.mode != "gru" or case.dirs != 1 or case.layers != 1:
        raise Skip("GRUBlockCell loop peer: GRU unidirectional 1-layer only")
    tf = _tf()
    if phase == "forward":
        cell = tf.raw_ops.GRUBlockCell
    else:
        import tf_rnn_ops

        cell = getattr(tf_rnn_ops, "gru_block_cell", None)
        if cell is None:
            raise Skip(
                "GRUBlockCell loop peer (training): tf_rnn_ops.gru_block_cell does not exist yet "
                "(TensorFlow registers no gradient for its own GRUBlockCell)",
                na=False,
            )
    rng = _rng(case, 3)
    T, B, NI, H = case.time, case.batch, case.input, case.hidden
    s = 1.0 / math.sqrt(H)
    w_ru = tf.Variable(_uniform(rng, (NI + H, 2 * H), s))
    w_c = tf.Variable(_uniform(rng, (NI + H, H), s))
    b_ru = tf.Variable(np.ones(2 * H, np.float32))
    b_c = tf.Variable(np.zeros(H, np.float32))
    x = tf.constant(rng.standard_normal((T, B, NI), dtype=np.float32))
    h0 = tf.constant(_uniform(rng, (B, H), 0.5))

    def loop(x, h0):
        xs = tf.TensorArray(tf.float32, size=T).unstack(x)
        ys = tf.TensorArray(tf.float32, size=T)

        def body(t, h, ys):
            _, _, _, h = cell(x=xs.read(t), h_prev=h, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c)
            return t + 1, h, ys.write(t, h)

        _, h, ys = tf.while_loop(lambda t, h, ys: t < T, body, (tf.constant(0), h0, ys))
        return ys.stack(), h

    if phase == "forward":

        @tf.function(jit_compile=False)
        def fwd(x, h0):
            return loop(x, h0)

        return _bind(fwd, x, h0)

    dy = tf.constant(rng.standard_normal((T, B, H), dtype=np.float32))

    @tf.function(jit_compile=False)
    def train(x, h0, dy):
        with tf.GradientTape() as tape:
            tape.watch([x, h0])
            y, _ = loop(x, h0)
        return tape.gradient(y, [x, h0, w_ru, w_c, b_ru, b_c], output_gradients=dy)

    return _bind(train, x, h0, dy)


# ---------------------------------------------------------------- PyTorch


def torch_setup(threads: int):
    """Imports torch with `threads` intra-op threads (and 1 inter-op thread); None if missing."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (or parallel work already ran)
        pass
    return torch


def build_torch(case: Case, phase: str):
    try:
        import torch
    except ImportError as e:
        raise Skip(
            "torch is not installed (make bench installs the `bench` extra)", na=False
        ) from e
    if case.mode not in ("gru", "lstm", "rnn_tanh", "rnn_relu"):
        raise Skip(f"torch peer: no module for {case.mode}")
    T, B, NI, H, L, D = case.time, case.batch, case.input, case.hidden, case.layers, case.dirs
    torch.manual_seed(0)
    bi = D == 2
    if case.mode == "gru":
        net = torch.nn.GRU(NI, H, num_layers=L, bidirectional=bi)
    elif case.mode == "lstm":
        net = torch.nn.LSTM(NI, H, num_layers=L, bidirectional=bi)
    else:
        act = "tanh" if case.mode == "rnn_tanh" else "relu"
        net = torch.nn.RNN(NI, H, num_layers=L, nonlinearity=act, bidirectional=bi)
    net = net.float()
    lstm = case.mode == "lstm"
    x = torch.randn(T, B, NI)
    h0 = torch.rand(L * D, B, H) - 0.5
    c0 = torch.rand(L * D, B, H) - 0.5

    def state(h, c):
        return (h, c) if lstm else h

    if phase == "forward":

        def fwd():
            with torch.no_grad():
                return net(x, state(h0, c0))

        return fwd

    dy = torch.randn(T, B, D * H)
    xg, hg, cg = (
        x.clone().requires_grad_(),
        h0.clone().requires_grad_(),
        c0.clone().requires_grad_(),
    )
    weights = list(net.parameters())
    sources = [xg, hg] + ([cg] if lstm else []) + weights

    def train():
        y, _ = net(xg, state(hg, cg))
        return torch.autograd.grad(y, sources, grad_outputs=dy)

    return train


# ---------------------------------------------------------------- matmul ceiling


CEILING_SHAPE = (2048, 2048, 2048)
CEILING_FLOPS = 2.0 * 2048**3
_ceiling_fn = None


def build_ceiling(case: Case, phase: str):
    """The 2048³ matmul, timed in the same rounds as a case (one traced function for all cases)."""
    global _ceiling_fn
    if _ceiling_fn is None:
        _ceiling_fn = build_matmul(*CEILING_SHAPE)[0]
    return _ceiling_fn


def build_matmul(m: int, k: int, n: int):
    """A tf.function [m,k]·[k,n] float32 product; returns (callable, flops)."""
    tf = _tf()
    rng = np.random.default_rng(m * 7 + k * 3 + n)
    a = tf.constant(rng.standard_normal((m, k), dtype=np.float32))
    b = tf.constant(rng.standard_normal((k, n), dtype=np.float32))

    @tf.function(jit_compile=False)
    def mm(a, b):
        return tf.matmul(a, b)

    return _bind(mm, a, b), 2.0 * m * k * n


IMPLS = {
    "ours": build_ours,
    "ours_trainfwd": build_ours_trainfwd,
    "ceiling": build_ceiling,
    "keras": build_keras,
    "blocklstm": build_blocklstm,
    "grublock": build_grublock,
    "torch": build_torch,
}

TITLES = {
    "ours": "tf_rnn_ops.cudnn_rnn",
    "ours_trainfwd": "ours, is_training=True forward",
    "ceiling": "2048³ tf.matmul",
    "keras": "keras.layers (CPU loop)",
    "blocklstm": "tf.raw_ops.BlockLSTM",
    "grublock": "GRUBlockCell while_loop",
    "torch": "torch.nn (CPU)",
}
