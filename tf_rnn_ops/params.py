"""Weights of the fused RNN: Keras layer weights <-> canonical lists <-> opaque params.

The layout is that of docs/MATH.md, "Params layout", summed up here.

This module is the one place in the package that knows the Keras gate mapping and the opaque layout.

Canonical lists (as `cudnn_rnn_params_to_canonical` returns them): per layer, per direction (forward
first), the input matrices W_* (absent for layer 0 with skip_input), the recurrent matrices R_*,
then (lstm with num_proj) the projection P; each matrix [out, in] (the transpose of a Keras kernel
block). Biases: b_W* then b_R*, each [num_units]. Gate orders: lstm i, f, c, o; gru r, z, h; rnn
one gate.

Opaque params: for each pseudo-layer (layer-major, forward before backward) its matrices flattened
in order, then its biases. The pseudo-layers of one layer are contiguous, so a layer's params are a
slice.

Keras mapping (`keras_to_canonical` / `canonical_to_keras`), per pseudo-layer:

* GRU (reset_after=True): kernel [I, 3H] and recurrent_kernel [H, 3H] have columns z, r, h → swapped
  to r, z, h; bias (2, 3H): row 0 the input biases b_W, row 1 the recurrent biases b_R.
* LSTM: gate order i, f, c, o equals cuDNN's; Keras' single bias [4H] goes to b_R (zeros in b_W).
* SimpleRNN (rnn_tanh / rnn_relu): its single bias [H] goes to b_W (zeros in b_R).
* No bias (use_bias=False): zero biases.

Every conversion is plain TensorFlow (differentiable, so gradients reach Keras variables) or numpy
(for numpy inputs); none needs the compiled library.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import tensorflow as tf

from tf_rnn_ops import _modes

__all__ = [
    "RNN_MODES",
    "NUM_GATES",
    "GATE_ORDER",
    "KERAS_GATE_ORDER",
    "CELL_STATE_MODES",
    "PROJECTION_MODES",
    "DIRECTIONS",
    "INPUT_MODES",
    "MAX_ELEMENTS",
    "MAX_UNITS_TIMES_WIDTH",
    "max_num_layers",
    "check_model",
    "num_dirs",
    "uses_skip_input",
    "output_size",
    "pseudo_layer_shapes",
    "canonical_shapes",
    "params_size",
    "layer_param_ranges",
    "canonical_to_opaque",
    "opaque_to_canonical",
    "keras_to_canonical",
    "canonical_to_keras",
    "keras_to_opaque",
    "opaque_grad_to_keras",
    "keras_initial_canonical",
]

# The mode and attribute tables (defined once, in tf_rnn_ops/_modes.py), re-exported here.
RNN_MODES = _modes.RNN_MODES
NUM_GATES = _modes.NUM_GATES
GATE_ORDER = _modes.GATE_ORDER
KERAS_GATE_ORDER = _modes.KERAS_GATE_ORDER
CELL_STATE_MODES = _modes.CELL_STATE_MODES
PROJECTION_MODES = _modes.PROJECTION_MODES
DIRECTIONS = _modes.DIRECTIONS
INPUT_MODES = _modes.INPUT_MODES


# The size bounds of a model, the C++ rules' own numbers (cc/kernels/fused_rnn_rules.h): the most
# elements a tensor may have (low enough that the kernels' int64 size arithmetic cannot overflow),
# and the largest product of num_units and the widest layer input or output (a model beyond it would
# have about 2^58 params or more). num_layers is bounded by `max_num_layers`.
MAX_ELEMENTS = 2**62
MAX_UNITS_TIMES_WIDTH = 2**58
_INT_MAX = 2**31 - 1


def _check_mode(rnn_mode: str) -> None:
    if rnn_mode not in NUM_GATES:
        raise ValueError(f"rnn_mode must be one of {RNN_MODES}, got {rnn_mode!r}")


def num_dirs(direction: str) -> int:
    """1 for 'unidirectional', 2 for 'bidirectional'."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return 2 if direction == "bidirectional" else 1


def uses_skip_input(input_mode: str, input_size: int, num_units: int) -> bool:
    """Whether layer 0 has no input matrices (auto_select: skip iff input_size == num_units)."""
    if input_mode == "skip_input":
        return True
    if input_mode == "linear_input":
        return False
    if input_mode == "auto_select":
        return input_size == num_units
    raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")


def output_size(rnn_mode: str, num_units: int, num_proj: int = 0) -> int:
    """H_out: num_proj if num_proj > 0 (lstm only), else num_units."""
    _check_mode(rnn_mode)
    if num_proj and rnn_mode not in PROJECTION_MODES:
        raise ValueError(
            f"num_proj is only defined for {' and '.join(PROJECTION_MODES)}, not {rnn_mode!r}"
        )
    if num_proj < 0:
        raise ValueError(f"num_proj must be >= 0, got {num_proj}")
    return num_proj if num_proj else num_units


def max_num_layers(rnn_mode: str, direction: str = "unidirectional") -> int:
    """The most layers a model of this mode and direction may have: its canonical lists (2·G + 1
    tensors per layer and direction at most) must be countable in a C++ int, as the ops count
    them."""
    _check_mode(rnn_mode)
    return _INT_MAX // (num_dirs(direction) * (2 * NUM_GATES[rnn_mode] + 1))


def _pseudo_layer_sizes(
    rnn_mode: str, num_units: int, input_size: int, direction: str, input_mode: str, num_proj: int
) -> tuple[int, int]:
    """Params of a pseudo-layer of layer 0 and of any later layer (they all have the same):
    G·H·(in + H_out + 2) + P·H, `in` the layer's input size (0 for layer 0 with skip_input)."""
    g, d = NUM_GATES[rnn_mode], num_dirs(direction)
    h_out = output_size(rnn_mode, num_units, num_proj)
    first_in = 0 if uses_skip_input(input_mode, input_size, num_units) else input_size
    return tuple(
        g * num_units * (in_size + h_out + 2) + num_proj * num_units
        for in_size in (first_in, d * h_out)
    )


def _check_size(
    rnn_mode: str,
    num_layers: int,
    num_units: int,
    input_size: int,
    direction: str,
    input_mode: str,
    num_proj: int,
) -> None:
    """The size bounds of a model whose other rules hold, in the C++ rules' order and words
    (fused_rnn_rules.h, MakeModelShape; its double arithmetic too, so the same models pass)."""
    d = num_dirs(direction)
    h_out = output_size(rnn_mode, num_units, num_proj)
    sizes = (
        f"num_layers ({num_layers}), num_units ({num_units}), input_size ({input_size}) and "
        f"num_proj ({num_proj})"
    )
    width = max(float(input_size), float(d) * float(h_out))
    if float(num_units) * width > MAX_UNITS_TIMES_WIDTH:
        raise ValueError(
            f"{sizes} give a model of about 2^58 params or more: num_units times the widest layer "
            "input or output must be at most 2^58 (a tensor may have at most 2^62 elements)"
        )
    first, later = _pseudo_layer_sizes(
        rnn_mode, num_units, input_size, direction, input_mode, num_proj
    )
    size = d * (float(first) + (float(num_layers - 1) * float(later) if num_layers > 1 else 0.0))
    if size > MAX_ELEMENTS:
        raise ValueError(
            f"{sizes} give a model with about {size:g} params, more than the 2^62 elements a "
            "tensor may have"
        )


def check_model(
    rnn_mode: str,
    num_layers: int,
    num_units: int,
    input_size: int | None,
    direction: str = "unidirectional",
    input_mode: str = "linear_input",
    num_proj: int = 0,
    dropout: float = 0.0,
) -> None:
    """Checks a model's attributes and sizes against the rules of the fused op (the rules its C++
    kernels and the CUDA layer apply); a ValueError naming the first one broken.

    rnn_mode, direction and input_mode one of `RNN_MODES`, `DIRECTIONS`, `INPUT_MODES`;
    num_layers >= 1, num_units >= 1, input_size >= 1; num_proj >= 0, lstm only, at most num_units;
    num_layers at most `max_num_layers`, num_units times the widest layer input or output at most
    `MAX_UNITS_TIMES_WIDTH`, and at most `MAX_ELEMENTS` params (the C++ rules' bounds and messages);
    skip_input needs input_size == num_units; dropout in [0, 1]. `input_size` None: not known yet
    (a layer before it is built); the rules that need it are then left for later.
    """
    _check_mode(rnn_mode)
    num_dirs(direction)
    if input_mode not in INPUT_MODES:
        raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
    for name, value in (("num_layers", num_layers), ("num_units", num_units)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if input_size is not None and input_size < 1:
        raise ValueError(f"input_size must be >= 1, got {input_size}")
    output_size(rnn_mode, num_units, num_proj)  # num_proj >= 0, lstm only
    if num_proj > num_units:
        raise ValueError(f"num_proj ({num_proj}) must not exceed num_units ({num_units})")
    max_layers = max_num_layers(rnn_mode, direction)
    if num_layers > max_layers:
        raise ValueError(
            f"num_layers ({num_layers}) must be at most {max_layers} for rnn_mode {rnn_mode} and "
            f"{num_dirs(direction)} direction(s)"
        )
    if input_size is not None:
        _check_size(rnn_mode, num_layers, num_units, input_size, direction, input_mode, num_proj)
    if input_size is not None and input_mode == "skip_input" and input_size != num_units:
        raise ValueError(
            f"input_mode skip_input needs input_size ({input_size}) == num_units ({num_units})"
        )
    if not 0.0 <= dropout <= 1.0:  # also refuses NaN
        raise ValueError(f"dropout must be in [0, 1], got {dropout}")


def pseudo_layer_shapes(
    rnn_mode: str,
    num_layers: int,
    num_units: int,
    input_size: int,
    direction: str = "unidirectional",
    input_mode: str = "linear_input",
    num_proj: int = 0,
) -> list[tuple[list[tuple[int, int]], list[tuple[int]]]]:
    """Per pseudo-layer (layer-major, forward before backward): (weight shapes, bias shapes).

    The sizes must keep the rules of `check_model` (ValueError otherwise)."""
    check_model(rnn_mode, num_layers, num_units, input_size, direction, input_mode, num_proj)
    g = NUM_GATES[rnn_mode]
    h_out = output_size(rnn_mode, num_units, num_proj)
    d = num_dirs(direction)
    skip = uses_skip_input(input_mode, input_size, num_units)
    out = []
    for layer in range(num_layers):
        in_size = input_size if layer == 0 else d * h_out
        for _ in range(d):
            ws: list[tuple[int, int]] = []
            if not (layer == 0 and skip):
                ws += [(num_units, in_size)] * g
            ws += [(num_units, h_out)] * g
            if num_proj:
                ws.append((num_proj, num_units))
            out.append((ws, [(num_units,)] * (2 * g)))
    return out


def canonical_shapes(*args, **kwargs) -> tuple[list[tuple[int, int]], list[tuple[int]]]:
    """(weight shapes, bias shapes) of the canonical lists; arguments as `pseudo_layer_shapes`."""
    ws, bs = [], []
    for w, b in pseudo_layer_shapes(*args, **kwargs):
        ws += w
        bs += b
    return ws, bs


def params_size(
    rnn_mode: str,
    num_layers: int,
    num_units: int,
    input_size: int,
    direction: str = "unidirectional",
    input_mode: str = "linear_input",
    num_proj: int = 0,
) -> int:
    """Number of elements of the opaque params; arguments as `pseudo_layer_shapes` (the sum of its
    shapes' sizes, without listing them: every layer above the first has the same size). Equals
    what the op `cudnn_rnn_params_size` returns."""
    if input_size is None:
        raise ValueError("params_size needs input_size (a layer's: known once it is built)")
    check_model(rnn_mode, num_layers, num_units, input_size, direction, input_mode, num_proj)
    first, later = _pseudo_layer_sizes(
        rnn_mode, num_units, input_size, direction, input_mode, num_proj
    )
    return num_dirs(direction) * (first + (num_layers - 1) * later)


def layer_param_ranges(*args, **kwargs) -> list[tuple[int, int]]:
    """[start, end) of each layer's slice of the opaque params (all its directions); arguments as
    `pseudo_layer_shapes`. The slice is the opaque params of that layer run as a 1-layer RNN."""
    layout = pseudo_layer_shapes(*args, **kwargs)
    d = num_dirs(kwargs.get("direction", args[4] if len(args) > 4 else "unidirectional"))
    ranges, pos = [], 0
    for i in range(0, len(layout), d):
        start = pos
        for ws, bs in layout[i : i + d]:
            pos += sum(math.prod(s) for s in ws + bs)
        ranges.append((start, pos))
    return ranges


def _is_numpy(*arrays) -> bool:
    return all(isinstance(a, np.ndarray | np.generic) for a in arrays)


def canonical_to_opaque(weights, biases, *args, **kwargs):
    """Packs canonical (weights, biases) into the opaque params vector. Arguments after the lists
    as `pseudo_layer_shapes` (they fix and check the layout). numpy in → numpy out; otherwise a TF
    tensor, differentiable w.r.t. the inputs."""
    layout = pseudo_layer_shapes(*args, **kwargs)
    weights, biases = list(weights), list(biases)
    n_w = sum(len(w) for w, _ in layout)
    n_b = sum(len(b) for _, b in layout)
    if len(weights) != n_w or len(biases) != n_b:
        raise ValueError(
            f"expected {n_w} canonical weights and {n_b} biases, got {len(weights)} and "
            f"{len(biases)}"
        )
    use_np = _is_numpy(*weights, *biases)
    parts = []
    iw = ib = 0
    for w_shapes, b_shapes in layout:
        for shape in w_shapes:
            if tuple(weights[iw].shape) != shape:
                raise ValueError(
                    f"canonical weight {iw} has shape {tuple(weights[iw].shape)}, expected {shape}"
                )
            parts.append(weights[iw])
            iw += 1
        for shape in b_shapes:
            if tuple(biases[ib].shape) != shape:
                raise ValueError(
                    f"canonical bias {ib} has shape {tuple(biases[ib].shape)}, expected {shape}"
                )
            parts.append(biases[ib])
            ib += 1
    if use_np:
        return np.concatenate([np.reshape(p, [-1]) for p in parts])
    return tf.concat([tf.reshape(p, [-1]) for p in parts], axis=0)


def opaque_to_canonical(params, *args, **kwargs):
    """Unpacks the opaque params into canonical (weights, biases) lists (numpy in → numpy out,
    otherwise TF tensors). Arguments after `params` as `pseudo_layer_shapes`."""
    layout = pseudo_layer_shapes(*args, **kwargs)
    use_np = _is_numpy(params)
    size = sum(math.prod(s) for ws, bs in layout for s in ws + bs)
    n = int(np.size(params)) if use_np else params.shape[0]
    if n is not None and n != size:
        raise ValueError(f"opaque params have {n} elements, the layout needs {size}")
    reshape = np.reshape if use_np else tf.reshape
    weights, biases, pos = [], [], 0
    for ws, bs in layout:
        for shapes, out in ((ws, weights), (bs, biases)):
            for s in shapes:
                k = math.prod(s)
                out.append(reshape(params[pos : pos + k], s))
                pos += k
    return weights, biases


# ------------------------------------------------------------------------------- Keras mapping
def _ops_for(*arrays):
    if _is_numpy(*[a for a in arrays if a is not None]):
        return (
            lambda a: a.T,
            lambda a, n, axis: np.split(a, n, axis=axis),
            lambda xs, axis: np.concatenate(xs, axis=axis),
            lambda n, like: np.zeros([n], dtype=like.dtype),
            lambda xs: np.stack(xs),
        )
    return (
        tf.transpose,
        lambda a, n, axis: tf.split(a, n, axis=axis),
        lambda xs, axis: tf.concat(xs, axis=axis),
        lambda n, like: tf.zeros([n], dtype=like.dtype),
        lambda xs: tf.stack(xs),
    )


def _keras_kind(rnn_mode: str) -> str:
    _check_mode(rnn_mode)
    return "simple_rnn" if rnn_mode.startswith("rnn_") else rnn_mode


# Which canonical biases Keras' bias maps to: both rows of GRU's (2, 3H) bias (b_W, b_R), LSTM's
# [4H] the recurrent biases b_R, SimpleRNN's [H] and GRU reset_after=False's [3H] the input biases
# b_W (the others are zeros).
_KERAS_BIAS_HALVES = {
    "gru": ("W", "R"),
    "gru_reset_before": ("W",),
    "lstm": ("R",),
    "simple_rnn": ("W",),
}


def _gate_blocks(rnn_mode: str, split, concat):
    """(to_canonical, to_keras): Keras column blocks → list in canonical gate order, and back."""
    g = NUM_GATES[rnn_mode]
    perm = _modes.keras_gate_permutation(rnn_mode)  # canonical gate i is Keras block perm[i]
    inverse = [perm.index(j) for j in range(g)]

    def to_canonical(m, axis):
        if g == 1:
            return [m]
        blocks = split(m, g, axis)
        return [blocks[k] for k in perm]

    def to_keras(blocks, axis):
        return blocks[0] if g == 1 else concat([blocks[i] for i in inverse], axis)

    return to_canonical, to_keras


def _check_keras_shapes(rnn_mode: str, kernel, recurrent_kernel, bias) -> tuple[int, int]:
    """(G, H) of one Keras cell's weights; ValueError where the shapes do not fit together."""
    g = NUM_GATES[rnn_mode]
    h = int(recurrent_kernel.shape[1]) // g
    # rows of the recurrent kernel: H (H_out with an LSTM projection)
    if tuple(kernel.shape)[1:] != (g * h,) or tuple(recurrent_kernel.shape)[1:] != (g * h,):
        raise ValueError(
            f"{rnn_mode}: kernel {tuple(kernel.shape)} / recurrent_kernel "
            f"{tuple(recurrent_kernel.shape)} do not fit {g} gates of {h} units"
        )
    if bias is not None and _keras_kind(rnn_mode) == "gru" and tuple(bias.shape) != (2, 3 * h):
        raise ValueError(
            f"GRU bias must be (2, {3 * h}) (reset_after=True), got {tuple(bias.shape)}"
        )
    return g, h


def keras_to_canonical(rnn_mode: str, kernel, recurrent_kernel, bias=None):
    """One Keras cell's (kernel, recurrent_kernel, bias) → canonical (weights, biases) of one
    pseudo-layer. rnn_mode 'gru' (Keras GRU, reset_after=True), 'gru_reset_before' (Keras GRU,
    reset_after=False: one [3H] bias, the input biases), 'lstm', or 'rnn_tanh'/'rnn_relu' (Keras
    SimpleRNN). bias None (use_bias=False) → zero biases."""
    kind = _keras_kind(rnn_mode)
    T, split, concat, zeros, _ = _ops_for(kernel, recurrent_kernel, bias)
    g, h = _check_keras_shapes(rnn_mode, kernel, recurrent_kernel, bias)
    gates, _ = _gate_blocks(rnn_mode, split, concat)
    weights = [T(w) for w in gates(kernel, 1)] + [T(w) for w in gates(recurrent_kernel, 1)]
    halves = {"W": None, "R": None}
    if bias is not None:
        if kind == "gru":
            halves = {"W": gates(bias[0], 0), "R": gates(bias[1], 0)}
        else:
            halves[_KERAS_BIAS_HALVES[kind][0]] = gates(bias, 0)
    biases = []
    for half in ("W", "R"):
        biases += halves[half] or [zeros(h, kernel) for _ in range(g)]
    return weights, biases


def canonical_to_keras(rnn_mode: str, weights, biases, use_bias: bool = True):
    """Canonical (weights, biases) of one pseudo-layer → the Keras cell's [kernel,
    recurrent_kernel, bias] (bias omitted when not `use_bias`). The inverse of
    `keras_to_canonical` where Keras can express the biases: LSTM's b_W + b_R are summed (Keras has
    one bias, and only the sum enters the math), likewise SimpleRNN's."""
    kind = _keras_kind(rnn_mode)
    T, split, concat, _, stack = _ops_for(*weights, *biases)
    _, keras_cols = _gate_blocks(rnn_mode, split, concat)
    g = NUM_GATES[rnn_mode]
    w, b = list(weights), list(biases)
    out = [keras_cols([T(a) for a in w[:g]], 1), keras_cols([T(a) for a in w[g : 2 * g]], 1)]
    if kind == "gru":
        bias = stack([keras_cols(b[:g], 0), keras_cols(b[g : 2 * g], 0)])
    else:
        bias = keras_cols([b[i] + b[g + i] for i in range(g)], 0)
    return out + [bias] if use_bias else out


def _gate_block_ops(rnn_mode: str, *arrays):
    """(reshape, gather) for numpy arrays or TensorFlow tensors, and the canonical gates' Keras
    blocks (`perm`, None where the orders agree): what keras_to_opaque and opaque_grad_to_keras
    move [G, H, ·] gate blocks with."""
    perm = _modes.keras_gate_permutation(rnn_mode)
    perm = None if perm == sorted(perm) else perm
    if _is_numpy(*[a for a in arrays if a is not None]):
        return np.reshape, lambda a, idx: np.take(a, idx, axis=0), perm
    return tf.reshape, tf.gather, perm


def keras_to_opaque(rnn_mode: str, kernel, recurrent_kernel, bias=None):
    """One Keras cell's weights → the opaque params of a 1-layer unidirectional RNN (what Keras
    builds for cuDNN).

    One transpose per matrix (and one gather of its [G, H, ·] gate blocks where Keras' gate order
    is not the canonical one: GRU), not a split, a transpose and a reshape per gate: the gradient
    of every drop-in layer's training step runs this, and at short sequences those ~30 small ops
    cost as much as the step (docs/PERFORMANCE.md, item 54)."""
    T, _, concat, zeros, _ = _ops_for(kernel, recurrent_kernel, bias)
    reshape, gather, perm = _gate_block_ops(rnn_mode, kernel, recurrent_kernel, bias)
    g, h = _check_keras_shapes(rnn_mode, kernel, recurrent_kernel, bias)

    def canonical(m):
        """Keras' [G·H, ·] gate blocks (a transposed matrix or a bias) → canonical, flattened."""
        t = reshape(m, [g, h, -1])
        return reshape(t if perm is None else gather(t, perm), [-1])

    kind = _keras_kind(rnn_mode)
    halves = {"W": None, "R": None}
    if bias is not None:
        if kind == "gru":
            halves = {"W": bias[0], "R": bias[1]}
        else:
            halves[_KERAS_BIAS_HALVES[kind][0]] = bias
    biases = [zeros(g * h, kernel) if halves[k] is None else canonical(halves[k]) for k in "WR"]
    return concat([canonical(T(kernel)), canonical(T(recurrent_kernel)), *biases], 0)


def opaque_grad_to_keras(rnn_mode: str, dparams, num_units: int, input_size: int):
    """The gradient w.r.t. a Keras cell's (kernel, recurrent_kernel, bias) from the gradient w.r.t.
    the opaque params `keras_to_opaque` made of them (the transpose of that linear map, in as few
    ops): the weight blocks as `canonical_to_keras`; the bias from the biases Keras' bias went to:
    GRU's b_W and b_R rows, LSTM's b_R, SimpleRNN's b_W (the other, constant zeros, get no
    gradient)."""
    T, _, _, _, stack = _ops_for(dparams)
    reshape, gather, perm = _gate_block_ops(rnn_mode, dparams)
    g, h, n_in = NUM_GATES[rnn_mode], num_units, input_size
    inverse = None if perm is None else [perm.index(k) for k in range(g)]
    ends = list(itertools.accumulate([g * h * n_in, g * h * h, g * h, g * h]))
    d_w, d_r, d_bw, d_br = (dparams[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True))

    def keras(flat, rows: int):
        """Canonical gate blocks, flattened, → Keras' [G·H, rows] (Keras block k is canonical gate
        inverse[k])."""
        t = reshape(flat, [g, h, rows])
        return reshape(t if inverse is None else gather(t, inverse), [g * h, rows])

    halves = {"W": d_bw, "R": d_br}
    rows = [
        reshape(keras(halves[half], 1), [-1]) for half in _KERAS_BIAS_HALVES[_keras_kind(rnn_mode)]
    ]
    bias = stack(rows) if len(rows) > 1 else rows[0]
    return T(keras(d_w, n_in)), T(keras(d_r, h)), bias


def keras_initial_canonical(
    rnn_mode: str,
    num_layers: int,
    num_units: int,
    input_size: int,
    direction: str = "unidirectional",
    input_mode: str = "linear_input",
    num_proj: int = 0,
    kernel_initializer=None,
    recurrent_initializer=None,
    bias_initializer=None,
    unit_forget_bias: bool = False,
    dtype="float32",
):
    """Canonical (weights, biases) initialized the way a stack of Keras layers would be: per
    pseudo-layer a Keras-shaped kernel [in, G·H] from `kernel_initializer` (glorot_uniform), a
    recurrent kernel [H_out, G·H] from `recurrent_initializer` (orthogonal) and a Keras-shaped bias
    from `bias_initializer` (zeros): GRU (2, 3H), LSTM [4H] (with 1 for the forget gate when
    `unit_forget_bias`, as Keras LSTM), SimpleRNN [H]; mapped as `keras_to_canonical`. The LSTM
    projection (num_proj, Keras-shaped [H, P]) comes from `kernel_initializer`. With skip_input,
    layer 0's input matrices are dropped."""
    import keras

    k_init = keras.initializers.get(kernel_initializer or "glorot_uniform")
    r_init = keras.initializers.get(recurrent_initializer or "orthogonal")
    b_init = keras.initializers.get(bias_initializer or "zeros")
    g = NUM_GATES[rnn_mode]
    h = num_units
    h_out = output_size(rnn_mode, num_units, num_proj)
    layout = pseudo_layer_shapes(
        rnn_mode, num_layers, num_units, input_size, direction, input_mode, num_proj
    )

    def init(fn, shape):
        return tf.convert_to_tensor(fn(shape, dtype=dtype))

    weights, biases = [], []
    for ws, _ in layout:
        has_input = len(ws) - g - (1 if num_proj else 0) > 0
        in_size = ws[0][1] if has_input else num_units
        kernel = init(k_init, (in_size, g * h))
        rkernel = init(r_init, (h_out, g * h))
        if rnn_mode == "gru":
            bias = init(b_init, (2, 3 * h))
        elif rnn_mode == "lstm" and unit_forget_bias:
            bias = tf.concat(
                [init(b_init, (h,)), tf.ones([h], dtype=dtype), init(b_init, (2 * h,))], axis=0
            )
        else:
            bias = init(b_init, (g * h,))
        w, b = keras_to_canonical(rnn_mode, kernel, rkernel, bias)
        if not has_input:
            w = w[g:]
        if num_proj:
            w.append(tf.transpose(init(k_init, (num_units, num_proj))))
        weights += w
        biases += b
    return weights, biases
