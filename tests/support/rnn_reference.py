"""An independent reference of the cuDNN-style fused RNN (docs/MATH.md, "Fused RNN cells" and
"Params layout"), written from that description only.

Nothing here imports `tf_rnn_ops`: the tests compare our kernels against this module, and this
module is itself checked against Keras (tests/ops/test_cudnn_rnn_reference.py). Only the tables of
modes, gate counts and attribute spellings are the package's, read from tf_rnn_ops/_modes.py by
path (a file of constants: no package code, no library).

* `canonical_shapes`, `pseudo_layers`, `params_size`: the canonical weight/bias layout and its size.
* `canonical_to_opaque`, `opaque_to_canonical`: the opaque params layout (per pseudo-layer,
  layer-major, forward before backward: its matrices flattened in order, then its biases). They work
  on numpy arrays and, differentiably, on TensorFlow tensors.
* `rnn_forward`: the forward pass (all modes, multi-layer, bidirectional, skip_input, num_proj,
  sequence_lengths, both layouts, explicit dropout multipliers). It runs on numpy (`backend=NUMPY`,
  the default, computing in float64) or on TensorFlow ops (`backend=TF`), so that `tf.GradientTape`
  over the float64 TF version gives reference gradients.

Canonical lists (docs/MATH.md, "Params layout"): per layer, per direction (forward first), the input
matrices W_* (absent for layer 0 with skip_input), then the recurrent matrices R_*, then (lstm with
num_proj) the projection P; each matrix [out, in]. Biases: b_W* then b_R* (each [num_units]) per
layer and direction. Gate orders: lstm i, f, c, o; gru r, z, h; rnn one gate.
"""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import numpy as np


def _package_facts() -> dict:
    """The globals of tf_rnn_ops/_modes.py (the mode and attribute tables), run by path from the
    nearest folder above that holds it: importing the package would load TensorFlow and the
    compiled library."""
    for folder in Path(__file__).resolve().parents:
        path = folder / "tf_rnn_ops" / "_modes.py"
        if path.is_file():
            return runpy.run_path(str(path))
    raise FileNotFoundError(f"no tf_rnn_ops/_modes.py in a folder above {__file__}")


_FACTS = _package_facts()
MODES: tuple[str, ...] = _FACTS["RNN_MODES"]
NUM_GATES: dict[str, int] = _FACTS["NUM_GATES"]
DIRECTIONS: tuple[str, ...] = _FACTS["DIRECTIONS"]
INPUT_MODES: tuple[str, ...] = _FACTS["INPUT_MODES"]


def num_dirs(direction: str) -> int:
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}")
    return 2 if direction == "bidirectional" else 1


def uses_skip_input(input_mode: str, input_size: int, num_units: int) -> bool:
    if input_mode == "skip_input":
        return True
    if input_mode == "linear_input":
        return False
    if input_mode == "auto_select":
        return input_size == num_units
    raise ValueError(f"unknown input_mode {input_mode!r}")


def output_size(mode: str, num_units: int, num_proj: int = 0) -> int:
    """H_out: num_proj if num_proj > 0 (lstm only), else num_units."""
    if num_proj and mode != "lstm":
        raise ValueError("num_proj is only defined for lstm")
    return num_proj if num_proj else num_units


def pseudo_layers(
    mode: str,
    num_layers: int,
    num_units: int,
    input_size: int,
    direction: str = "unidirectional",
    input_mode: str = "linear_input",
    num_proj: int = 0,
) -> list[tuple[list[tuple[int, ...]], list[tuple[int, ...]]]]:
    """Per pseudo-layer (layer-major, forward before backward): (its weight shapes, its bias
    shapes)."""
    if mode not in NUM_GATES:
        raise ValueError(f"unknown rnn_mode {mode!r}")
    g = NUM_GATES[mode]
    d = num_dirs(direction)
    h_out = output_size(mode, num_units, num_proj)
    skip = uses_skip_input(input_mode, input_size, num_units)
    if skip and input_size != num_units:
        raise ValueError("skip_input needs input_size == num_units")
    out = []
    for layer in range(num_layers):
        in_size = input_size if layer == 0 else d * h_out
        for _ in range(d):
            ws: list[tuple[int, ...]] = []
            if not (layer == 0 and skip):
                ws += [(num_units, in_size)] * g
            ws += [(num_units, h_out)] * g
            if num_proj:
                ws.append((num_proj, num_units))
            bs = [(num_units,)] * (2 * g)
            out.append((ws, bs))
    return out


def canonical_shapes(*args, **kwargs) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """(weight shapes, bias shapes) of the canonical lists, same arguments as `pseudo_layers`."""
    ws, bs = [], []
    for w, b in pseudo_layers(*args, **kwargs):
        ws += w
        bs += b
    return ws, bs


def params_size(*args, **kwargs) -> int:
    """Total number of elements of the opaque params, same arguments as `pseudo_layers`."""
    ws, bs = canonical_shapes(*args, **kwargs)
    return int(sum(math.prod(s) for s in ws + bs))


def random_canonical(
    rng: np.random.Generator, *args, scale: float = 0.5, dtype=np.float64, **kwargs
):
    """Random canonical (weights, biases) lists for the layout given by `pseudo_layers`
    arguments."""
    ws, bs = canonical_shapes(*args, **kwargs)
    weights = [rng.uniform(-scale, scale, s).astype(dtype) for s in ws]
    biases = [rng.uniform(-scale, scale, s).astype(dtype) for s in bs]
    return weights, biases


def _is_tf(*arrays) -> bool:
    return any(type(a).__module__.startswith(("tensorflow", "keras")) for a in arrays)


def canonical_to_opaque(weights, biases, *args, **kwargs):
    """Packs canonical lists into opaque params (numpy, or TF differentiably for TF inputs)."""
    layout = pseudo_layers(*args, **kwargs)
    weights, biases = list(weights), list(biases)
    n_w = sum(len(w) for w, _ in layout)
    n_b = sum(len(b) for _, b in layout)
    if len(weights) != n_w or len(biases) != n_b:
        raise ValueError(
            f"expected {n_w} weights and {n_b} biases, got {len(weights)}, {len(biases)}"
        )
    tf_mode = _is_tf(*weights, *biases)
    if tf_mode:
        import tensorflow as tf

        flat = lambda a: tf.reshape(a, [-1])  # noqa: E731
    else:
        flat = lambda a: np.asarray(a).reshape(-1)  # noqa: E731
    parts = []
    iw = ib = 0
    for w_shapes, b_shapes in layout:
        for s in w_shapes:
            if tuple(weights[iw].shape) != s:
                raise ValueError(f"weight {iw} has shape {tuple(weights[iw].shape)}, expected {s}")
            parts.append(flat(weights[iw]))
            iw += 1
        for s in b_shapes:
            if tuple(biases[ib].shape) != s:
                raise ValueError(f"bias {ib} has shape {tuple(biases[ib].shape)}, expected {s}")
            parts.append(flat(biases[ib]))
            ib += 1
    if tf_mode:
        import tensorflow as tf

        return tf.concat(parts, axis=0)
    return np.concatenate(parts) if parts else np.zeros([0])


def opaque_to_canonical(params, *args, **kwargs):
    """Unpacks opaque params (numpy) into canonical (weights, biases) lists."""
    params = np.asarray(params).reshape(-1)
    layout = pseudo_layers(*args, **kwargs)
    total = sum(math.prod(s) for w, b in layout for s in w + b)
    if params.size != total:
        raise ValueError(f"params has {params.size} elements, the layout needs {total}")
    weights, biases = [], []
    off = 0
    for w_shapes, b_shapes in layout:
        for s in w_shapes:
            n = math.prod(s)
            weights.append(params[off : off + n].reshape(s))
            off += n
        for s in b_shapes:
            n = math.prod(s)
            biases.append(params[off : off + n].reshape(s))
            off += n
    return weights, biases


# ---------------------------------------------------------------------------------------- backends
class _Numpy:
    name = "numpy"

    @staticmethod
    def asarray(a):
        return np.asarray(a, dtype=np.float64)

    @staticmethod
    def lin(x, w):  # x [B, in] · w[out, in]ᵀ
        return x @ w.T

    @staticmethod
    def sigmoid(x):
        return 0.5 * (1.0 + np.tanh(0.5 * x))

    tanh = staticmethod(np.tanh)

    @staticmethod
    def relu(x):
        return np.maximum(x, 0.0)

    where = staticmethod(np.where)

    @staticmethod
    def stack(xs):
        return np.stack(xs, axis=0)

    @staticmethod
    def concat(xs):
        return np.concatenate(xs, axis=-1)

    @staticmethod
    def transpose(x, perm):
        return np.transpose(x, perm)

    @staticmethod
    def zeros(shape, like):
        return np.zeros(shape, dtype=like.dtype)

    @staticmethod
    def shape(x):
        return tuple(int(s) for s in x.shape)


class _TF:
    name = "tf"

    def __init__(self):
        import tensorflow as tf

        self.tf = tf

    def asarray(self, a):
        if isinstance(a, np.ndarray):
            return self.tf.constant(a)
        return self.tf.convert_to_tensor(a)

    def lin(self, x, w):
        return self.tf.matmul(x, w, transpose_b=True)

    def sigmoid(self, x):
        return self.tf.sigmoid(x)

    def tanh(self, x):
        return self.tf.tanh(x)

    def relu(self, x):
        return self.tf.nn.relu(x)

    def where(self, c, a, b):
        a = self.tf.convert_to_tensor(a)
        return self.tf.where(c, a, self.tf.zeros_like(a) + b)

    def stack(self, xs):
        return self.tf.stack(xs, axis=0)

    def concat(self, xs):
        return self.tf.concat(xs, axis=-1)

    def transpose(self, x, perm):
        return self.tf.transpose(x, perm)

    def zeros(self, shape, like):
        return self.tf.zeros(shape, dtype=like.dtype)

    @staticmethod
    def shape(x):
        return tuple(int(s) for s in x.shape)


NUMPY = _Numpy()
_TF_BACKEND = None


def tf_backend():
    global _TF_BACKEND
    if _TF_BACKEND is None:
        _TF_BACKEND = _TF()
    return _TF_BACKEND


class _LazyTF:
    def __getattr__(self, name):
        return getattr(tf_backend(), name)


TF = _LazyTF()


# ------------------------------------------------------------------------------------------ forward
def _cell_step(be, mode, x, h, c, W, R, P, bW, bR):
    """One step of one pseudo-layer. W is None with skip_input (W x → x for every gate)."""
    g = NUM_GATES[mode]

    def xin(k):
        return x if W is None else be.lin(x, W[k])

    if mode in ("rnn_tanh", "rnn_relu"):
        pre = xin(0) + bW[0] + be.lin(h, R[0]) + bR[0]
        h_new = be.tanh(pre) if mode == "rnn_tanh" else be.relu(pre)
        return h_new, c
    if mode == "lstm":
        pre = [xin(k) + bW[k] + be.lin(h, R[k]) + bR[k] for k in range(g)]
        i, f, gg, o = be.sigmoid(pre[0]), be.sigmoid(pre[1]), be.tanh(pre[2]), be.sigmoid(pre[3])
        c_new = f * c + i * gg
        m = o * be.tanh(c_new)
        h_new = m if P is None else be.lin(m, P)
        return h_new, c_new
    if mode == "gru":
        r = be.sigmoid(xin(0) + bW[0] + be.lin(h, R[0]) + bR[0])
        z = be.sigmoid(xin(1) + bW[1] + be.lin(h, R[1]) + bR[1])
        hh = be.tanh(xin(2) + bW[2] + r * (be.lin(h, R[2]) + bR[2]))
        return (1.0 - z) * hh + z * h, c
    if mode == "gru_reset_before":  # Keras reset_after=False: r scales h before the product
        r = be.sigmoid(xin(0) + bW[0] + be.lin(h, R[0]) + bR[0])
        z = be.sigmoid(xin(1) + bW[1] + be.lin(h, R[1]) + bR[1])
        hh = be.tanh(xin(2) + bW[2] + be.lin(r * h, R[2]) + bR[2])
        return (1.0 - z) * hh + z * h, c
    raise ValueError(f"unknown rnn_mode {mode!r}")


def rnn_forward(
    x,
    h0,
    c0,
    weights,
    biases,
    *,
    mode: str,
    direction: str = "unidirectional",
    input_mode: str = "linear_input",
    num_proj: int = 0,
    sequence_lengths=None,
    time_major: bool = True,
    dropout_masks=None,
    backend=NUMPY,
):
    """The forward pass of docs/MATH.md, "Fused RNN cells". Returns (output, output_h, output_c).

    x: [T, B, I] (time_major) or [B, T, I]; h0: [dir·L, B, H_out] or [B, dir·L, H_out]; c0 likewise
    with num_units (lstm; ignored and may be None otherwise, in which case output_c is None). L is
    inferred from h0. sequence_lengths: ints [B] or None (all T). dropout_masks: None, or per layer
    l < L−1 a multiplier (already scaled, e.g. keep/(1−p)) in the layout of `output`, applied to
    layer l's output before layer l+1 reads it.
    """
    be = backend
    x = be.asarray(x)
    h0 = be.asarray(h0)
    lstm = mode == "lstm"
    if mode not in NUM_GATES:
        raise ValueError(f"unknown rnn_mode {mode!r}")
    D = num_dirs(direction)
    if not time_major:
        x = be.transpose(x, (1, 0, 2))
        h0 = be.transpose(h0, (1, 0, 2))
    T, B, n_in = be.shape(x)
    num_layers = be.shape(h0)[0] // D
    num_units = int(biases[0].shape[0])
    h_out = output_size(mode, num_units, num_proj)
    if be.shape(h0) != (D * num_layers, B, h_out):
        raise ValueError(f"input_h has shape {be.shape(h0)}, expected {(D * num_layers, B, h_out)}")
    if lstm:
        c0 = be.asarray(c0)
        if not time_major:
            c0 = be.transpose(c0, (1, 0, 2))
        if be.shape(c0) != (D * num_layers, B, num_units):
            raise ValueError(f"input_c has shape {be.shape(c0)}")
    layout = pseudo_layers(mode, num_layers, num_units, n_in, direction, input_mode, num_proj)
    weights = [be.asarray(w) for w in weights]
    biases = [be.asarray(b) for b in biases]
    if sequence_lengths is None:
        lens = np.full([B], T, dtype=np.int64)
    else:
        lens = np.asarray(sequence_lengths, dtype=np.int64).reshape(-1)
        if lens.shape != (B,) or np.any(lens < 0) or np.any(lens > T):
            raise ValueError(f"bad sequence_lengths {lens} for T={T}, B={B}")
    if dropout_masks is not None:
        dropout_masks = [be.asarray(m) for m in dropout_masks]
        if not time_major:
            dropout_masks = [be.transpose(m, (1, 0, 2)) for m in dropout_masks]
    g = NUM_GATES[mode]

    layer_in = x
    hs, cs = [], []
    iw = ib = 0
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            w_shapes, b_shapes = layout[layer * D + d]
            mats = weights[iw : iw + len(w_shapes)]
            iw += len(w_shapes)
            bvec = biases[ib : ib + len(b_shapes)]
            ib += len(b_shapes)
            for m, s in zip(mats, w_shapes, strict=True):
                if be.shape(m) != s:
                    raise ValueError(f"weight shape {be.shape(m)} != {s}")
            if layer == 0 and uses_skip_input(input_mode, n_in, num_units):
                W, rest = None, mats
            else:
                W, rest = mats[:g], mats[g:]
            R, P = rest[:g], (rest[g] if num_proj else None)
            bW, bR = bvec[:g], bvec[g:]
            p = layer * D + d
            h = h0[p]
            c = c0[p] if lstm else None
            out = [None] * T
            steps = range(T) if d == 0 else range(T - 1, -1, -1)
            for t in steps:
                valid = (t < lens)[:, None]
                h_new, c_new = _cell_step(be, mode, layer_in[t], h, c, W, R, P, bW, bR)
                h = be.where(valid, h_new, h)
                if lstm:
                    c = be.where(valid, c_new, c)
                out[t] = be.where(valid, h_new, 0.0)
            outs.append(be.stack(out) if T else be.zeros((0, B, h_out), like=x))
            hs.append(h)
            if lstm:
                cs.append(c)
        layer_out = be.concat(outs) if D > 1 else outs[0]
        if dropout_masks is not None and layer < num_layers - 1:
            layer_out = layer_out * dropout_masks[layer]
        layer_in = layer_out
    output = layer_in
    output_h = be.stack(hs)
    output_c = be.stack(cs) if lstm else None
    if not time_major:
        output = be.transpose(output, (1, 0, 2))
        output_h = be.transpose(output_h, (1, 0, 2))
        if lstm:
            output_c = be.transpose(output_c, (1, 0, 2))
    return output, output_h, output_c


# ----------------------------------------------------------------------------- random test problems
def random_lengths(rng: np.random.Generator, batch: int, steps: int, kind: str = "varlen"):
    """int32 [batch] lengths: "full" (all T) or "varlen" (random, with T and 0 if batch allows)."""
    if kind == "full":
        return np.full([batch], steps, np.int32)
    lens = rng.integers(0, steps + 1, size=batch)
    if batch >= 1:
        lens[0] = steps
    if batch >= 2:
        lens[1] = 0
    return lens.astype(np.int32)


class Problem:
    """Random inputs, canonical weights and opaque params for one configuration of the fused RNN, in
    float64 numpy, with the keyword arguments of the op and the reference's answers."""

    def __init__(
        self,
        rng: np.random.Generator,
        mode: str,
        num_layers: int = 1,
        num_units: int = 3,
        input_size: int = 2,
        batch: int = 2,
        steps: int = 3,
        direction: str = "unidirectional",
        input_mode: str = "linear_input",
        num_proj: int = 0,
        time_major: bool = True,
        lengths="varlen",
        scale: float = 0.5,
    ):
        self.mode, self.num_layers, self.num_units = mode, num_layers, num_units
        self.input_size, self.batch, self.steps = input_size, batch, steps
        self.direction, self.input_mode, self.num_proj = direction, input_mode, num_proj
        self.time_major = time_major
        self.dirs = num_dirs(direction)
        self.h_out = output_size(mode, num_units, num_proj)
        self.layout_args = (
            mode,
            num_layers,
            num_units,
            input_size,
            direction,
            input_mode,
            num_proj,
        )
        self.weights, self.biases = random_canonical(rng, *self.layout_args, scale=scale)
        self.params = canonical_to_opaque(self.weights, self.biases, *self.layout_args)
        n = self.dirs * num_layers
        x = rng.uniform(-1, 1, (steps, batch, input_size))
        h0 = rng.uniform(-1, 1, (n, batch, self.h_out))
        c0 = rng.uniform(-1, 1, (n, batch, num_units))
        if isinstance(lengths, str):
            lengths = random_lengths(rng, batch, steps, lengths)
        self.lengths = np.asarray(lengths, np.int32)
        # stored in the op's layout
        self.x = x if time_major else np.swapaxes(x, 0, 1).copy()
        self.h0 = h0 if time_major else np.swapaxes(h0, 0, 1).copy()
        self.c0 = c0 if time_major else np.swapaxes(c0, 0, 1).copy()
        self.is_lstm = mode == "lstm"

    @property
    def attrs(self) -> dict:
        return dict(
            rnn_mode=self.mode,
            input_mode=self.input_mode,
            direction=self.direction,
            num_proj=self.num_proj,
            time_major=self.time_major,
        )

    def op_kwargs(self, dtype=None, **overrides) -> dict:
        """Keyword arguments for `cudnn_rnn` (TF tensors of `dtype`, default float64)."""
        import tensorflow as tf

        dtype = dtype or tf.float64
        kw = dict(
            input=tf.constant(self.x, dtype),
            input_h=tf.constant(self.h0, dtype),
            input_c=tf.constant(self.c0, dtype),
            params=tf.constant(self.params, dtype),
            sequence_lengths=tf.constant(self.lengths, tf.int32),
            **self.attrs,
        )
        kw.update(overrides)
        return kw

    def reference(self, dropout_masks=None):
        """(output, output_h, output_c or None) in float64."""
        return rnn_forward(
            self.x,
            self.h0,
            self.c0 if self.is_lstm else None,
            self.weights,
            self.biases,
            mode=self.mode,
            direction=self.direction,
            input_mode=self.input_mode,
            num_proj=self.num_proj,
            sequence_lengths=self.lengths,
            time_major=self.time_major,
            dropout_masks=dropout_masks,
        )

    def cotangents(self, rng: np.random.Generator):
        """Random upstream gradients (d_output, d_output_h, d_output_c or None)."""
        out, h, c = self.reference()
        return (
            rng.normal(size=out.shape),
            rng.normal(size=h.shape),
            rng.normal(size=c.shape) if c is not None else None,
        )

    def reference_grads(self, d_out, d_h, d_c=None):
        """Gradients of Σ out·d_out + Σ h·d_h (+ Σ c·d_c) w.r.t. (input, input_h, input_c or None,
        params), from tf.GradientTape over the float64 TF-ops reference."""
        import tensorflow as tf

        x, h0 = tf.constant(self.x), tf.constant(self.h0)
        c0 = tf.constant(self.c0) if self.is_lstm else None
        ws = [tf.constant(w) for w in self.weights]
        bs = [tf.constant(b) for b in self.biases]
        srcs = [x, h0] + ([c0] if self.is_lstm else []) + ws + bs
        with tf.GradientTape() as tape:
            tape.watch(srcs)
            out, h, c = rnn_forward(
                x,
                h0,
                c0,
                ws,
                bs,
                mode=self.mode,
                direction=self.direction,
                input_mode=self.input_mode,
                num_proj=self.num_proj,
                sequence_lengths=self.lengths,
                time_major=self.time_major,
                backend=TF,
            )
            loss = tf.reduce_sum(out * d_out) + tf.reduce_sum(h * d_h)
            if self.is_lstm and d_c is not None:
                loss += tf.reduce_sum(c * d_c)
        g = tape.gradient(loss, srcs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        g = [a.numpy() for a in g]
        dx, dh0 = g[0], g[1]
        dc0 = g[2] if self.is_lstm else None
        rest = g[3:] if self.is_lstm else g[2:]
        nw = len(self.weights)
        dparams = canonical_to_opaque(rest[:nw], rest[nw:], *self.layout_args)
        return dx, dh0, dc0, dparams
