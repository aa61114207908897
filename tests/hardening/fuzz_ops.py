"""Property-based fuzzing of every op of the package (issue 7), run as a program in its own process.

    python tests/hardening/fuzz_ops.py [--examples N] [--ops gru,cudnn,...] [--seed S]
                                       [--last-case F] [--no-graph]

For each op family, hypothesis draws a case: a valid configuration (random mode, direction, input
mode, layers, sizes, batch, steps, layout, dtype, lengths, projection, dropout, seed) to which 0 to
2 mutations are applied: a wrong rank, a dimension off by one or random, a huge dimension of an
empty tensor, params of a wrong size, sequence lengths negative / past T / of a wrong length or
rank, bad attribute values, mixed dtypes, NaN / Inf contents, an empty tensor. A model of
docs/MATH.md says whether the case is valid, invalid, or (for a few lenient corners) either. The op
is then called eagerly, and built in a graph from placeholders of fully, partly or not at all known
shapes. Properties:

* valid  -> the eager call returns outputs of exactly the expected shapes and dtypes;
* invalid -> it raises InvalidArgumentError, ValueError or TypeError whose message names the problem
  (an input or attribute of the op; for a single mutation, the very input or attribute mutated);
* every graph construction either succeeds with static shapes compatible with the eager outputs, or
  raises ValueError/TypeError naming an input or attribute, and never rejects a case the kernel
  takes;
* the process never dies: the caller runs this program in a subprocess and reports a signal as a
  crash, with the case being run (written to --last-case before every call);
* memory stays bounded: once TensorFlow is up, the address space is limited (RLIMIT_AS) to what is
  mapped plus --headroom-mb (default 4096), so that a case asking for more fails (a
  ResourceExhaustedError is not an accepted error: a failure naming the case) instead of growing
  the process past what a CI machine has. Not under AddressSanitizer, whose shadow memory needs
  the address space (make asan caps single allocations with max_allocation_size_mb instead).

Families: our TfRnn> ops (gru, gru_grad, cudnn, cudnn_backprop, params_size, to_canonical,
to_params; keras_rnn: TfRnn>KerasRNN, keras_rnn_grad: its registered gradient through a
GradientTape, which runs TfRnn>KerasRNNBackprop on the forward's reserve_space, keras_rnn_backprop:
that op called directly, fed a training forward's inputs, outputs and reserve; layer_norm,
layer_norm_grad: TfRnn>LayerNormRnn and TfRnn>LayerNormRnnGrad, the latter fed a forward's inputs
and reserve; keras_rnn_dropout, keras_rnn_dropout_backprop: TfRnn>KerasRNNDropout and
TfRnn>KerasRNNDropoutBackprop, the latter fed a training forward's inputs, outputs and reserve) and
TensorFlow's own CudnnRNN* ops served by our CPU kernels (tf_cudnn_v1, tf_cudnn_v2, tf_cudnn_v3,
tf_backprop_v3, tf_params_size, tf_to_canonical, tf_to_params). Exit status: 0 when every
property held, 1 when one failed (hypothesis prints the shrunk case).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import sys
import traceback
import warnings
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))
sys.path.insert(0, _REPO)
sys.path.insert(0, _HERE)

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
from hypothesis import HealthCheck, given, reject, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import UnsatisfiedAssumption  # noqa: E402

import tf_rnn_ops  # noqa: E402
from tf_rnn_ops._loader import ops as _ops  # noqa: E402

warnings.filterwarnings("ignore")

VALID, INVALID, EITHER = "valid", "invalid", "either"
ERRORS = (tf.errors.InvalidArgumentError, ValueError, TypeError)
GATES = tf_rnn_ops.params.NUM_GATES
# TensorFlow's own CudnnRNN ops (the tf_* families) know cuDNN's modes only, not gru_reset_before.
TF_MODES = [m for m in sorted(GATES) if m != "gru_reset_before"]


def _modes(flavor: str) -> list[str]:
    return sorted(GATES) if flavor == "ours" else TF_MODES


INPUT_MODES = tf_rnn_ops.params.INPUT_MODES
DIRECTIONS = tf_rnn_ops.params.DIRECTIONS
FLOATS = ("float32", "float64", "float16", "bfloat16")
HUGE = (2**31 - 1, 2**31, 2**32 + 3, 2**40, 2**62, 2**63 - 1)
NONFINITE = (float("nan"), float("inf"), float("-inf"))
MAX_ELEMENTS = 2**62  # the kernels' limit (cc/kernels/fused_rnn_rules.h, fused_rnn::kMaxElements)
INT_MAX = 2**31 - 1
MAX_BUILT = 1 << 22  # elements of the largest tensor a case may hold (16 MiB of float32)

# --------------------------------------------------------------------------------------- cases
# A case is plain data: {"family", "inputs": {name: spec}, "attrs": {...}, "expect", "expected"
# (output shapes when valid), "mutated" (names changed by a single mutation, or None)}. A tensor
# spec is ("t", shape, dtype, fill); a list of them is a list input. Cases print as their
# reproducer.


def _t(shape, dtype="float32", fill="normal"):
    return ("t", tuple(int(d) for d in shape), dtype, fill)


def _int_t(values, shape=None, dtype="int32"):
    values = np.asarray(values, dtype=np.int64)
    if shape is not None:
        values = values.reshape(shape)
    return ("i", values.tolist(), tuple(values.shape), dtype)


def build(spec, rng):
    """The tensor (or list of tensors) of a spec."""
    if isinstance(spec, list):
        return [build(s, rng) for s in spec]
    if spec is None:
        return None
    kind = spec[0]
    if kind == "i":
        _, values, shape, dtype = spec
        return tf.constant(np.asarray(values, dtype=np.int64).reshape(shape), dtype=dtype)
    if kind == "f":  # given values (epsilon)
        _, values, shape, dtype = spec
        return tf.cast(tf.constant(np.asarray(values, np.float64).reshape(shape)), dtype)
    _, shape, dtype, fill = spec
    n = math.prod(shape)
    if n > MAX_BUILT:  # a mutation removed the 0 beside a huge dimension: not a case to build
        reject()
    if n == 0:  # dimensions up to 2^63 - 1 when another is 0
        try:
            return tf.zeros(shape, dtype)
        except tf.errors.InvalidArgumentError:  # TensorFlow refuses the shape itself ([2^62, 2, 0])
            reject()
    if dtype not in FLOATS:
        return tf.zeros(shape, dtype)
    if fill == "normal":
        a = rng.standard_normal(n)
    elif fill == "zeros":
        a = np.zeros(n)
    elif fill == "big":
        a = rng.standard_normal(n) * 1e30
    elif fill == "binary":  # a mask in {0, 1}
        a = rng.integers(0, 2, n).astype(np.float64)
    elif fill == "keep":  # a keep probability
        a = np.full(n, 0.7)
    else:  # "nonfinite": a mix of NaN, +-Inf and numbers
        a = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, 1.0, -3.0]), n)
    return tf.cast(tf.constant(a.reshape(shape), tf.float64), dtype)


# ----------------------------------------------------------------------------------- strategies
fills = st.sampled_from(["normal", "normal", "normal", "zeros", "nonfinite", "big"])


@st.composite
def dtypes(draw):
    return draw(st.sampled_from(["float32"] * 6 + ["float64", "float16", "bfloat16"]))


@st.composite
def random_shape(draw, max_rank=4):
    rank = draw(st.integers(0, max_rank))
    return tuple(draw(st.integers(0, 5)) for _ in range(rank))


def _mutate_shape(draw, shape):
    """A different shape: rank changed, one dimension changed, or huge-but-empty."""
    how = draw(st.sampled_from(["rank+", "rank-", "dim", "dim", "random", "empty_huge"]))
    shape = list(shape)
    if how == "rank+":
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(0, 3)))
    elif how == "rank-" and shape:
        del shape[draw(st.integers(0, len(shape) - 1))]
    elif how == "dim" and shape:
        i = draw(st.integers(0, len(shape) - 1))
        # (a dimension stays within int64: 2^63 - 1 + 1 is no shape at all)
        shape[i] = min(max(0, shape[i] + draw(st.sampled_from([-2, -1, 1, 2, 7]))), 2**63 - 1)
    elif how == "empty_huge" and len(shape) >= 2:
        i, j = draw(st.permutations(range(len(shape))))[:2]
        shape[i], shape[j] = 0, draw(st.sampled_from(HUGE))
    else:
        shape = list(draw(random_shape()))
    return tuple(shape)


# ------------------------------------------------------------------------------ GRU block cell
GRU_INPUTS = ("x", "h_prev", "w_ru", "w_c", "b_ru", "b_c")
GRU_GRAD_INPUTS = GRU_INPUTS + ("r", "u", "c", "d_h")


def _gru_shapes(B, I, H):  # noqa: E741
    s = dict(x=(B, I), h_prev=(B, H), w_ru=(I + H, 2 * H), w_c=(I + H, H), b_ru=(2 * H,), b_c=(H,))
    s.update(r=(B, H), u=(B, H), c=(B, H), d_h=(B, H))
    return s


def _gru_valid(shapes, dts, grad):
    names = GRU_GRAD_INPUTS if grad else GRU_INPUTS
    if len({dts[n] for n in names}) != 1 or dts["x"] not in FLOATS:
        return False
    x, hp = shapes["x"], shapes["h_prev"]
    if len(x) != 2 or len(hp) != 2:
        return False
    B, I, H = x[0], x[1], hp[1]  # noqa: E741
    want = _gru_shapes(B, I, H)
    return all(tuple(shapes[n]) == want[n] for n in names)


@st.composite
def gru_cases(draw, grad=False):
    names = GRU_GRAD_INPUTS if grad else GRU_INPUTS
    B, I, H = (draw(st.integers(0, 4)) for _ in range(3))  # noqa: E741
    if draw(st.integers(0, 9)) == 0:  # huge, and every tensor stays empty (H = 0; B or I = 0)
        H = 0
        if draw(st.booleans()):
            B, I = 0, draw(st.sampled_from(HUGE))  # noqa: E741
        else:
            B, I = draw(st.sampled_from(HUGE)), 0  # noqa: E741
    shapes = {n: s for n, s in _gru_shapes(B, I, H).items() if n in names}
    dt = draw(dtypes())
    dts = dict.fromkeys(names, dt)
    fill = {n: draw(fills) if draw(st.integers(0, 4)) == 0 else "normal" for n in names}
    mutated = []
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        n = draw(st.sampled_from(names))
        if draw(st.integers(0, 7)) == 0:
            dts[n] = draw(st.sampled_from(["float32", "float64", "float16", "int32"]))
        else:
            shapes[n] = _mutate_shape(draw, shapes[n])
        mutated.append(n)
    valid = _gru_valid(shapes, dts, grad)
    expected = None
    if valid:
        Bv, Iv, Hv = shapes["x"][0], shapes["x"][1], shapes["h_prev"][1]
        expected = [(Bv, Iv), (Bv, Hv), (Bv, Hv), (Bv, 2 * Hv)] if grad else [(Bv, Hv)] * 4
    return dict(
        family="gru_grad" if grad else "gru",
        inputs={n: _t(shapes[n], dts[n], fill[n]) for n in names},
        attrs={},
        expect=VALID if valid else INVALID,
        expected=expected,
        out_dtype=dt,
        mutated=set(mutated) if len(set(mutated)) == 1 else None,
    )


# ------------------------------------------------------------------------------ fused RNN model
def _params_size(mode, L, H, I, dirs, input_mode, P):  # noqa: E741
    """Exact opaque params size (python ints: no overflow), per docs/MATH.md, "Params layout"."""
    g, ho = GATES[mode], (P or H)
    skip = input_mode == "skip_input" or (input_mode == "auto_select" and I == H)

    def block(inp):
        return g * H * (inp + ho) + P * H + 2 * g * H

    return dirs * (block(0 if skip else I) + (L - 1) * block(dirs * ho))


def _model_error(mode, L, H, I, dirs, input_mode, P, dropout=0.0, modes=GATES):  # noqa: E741
    """None when the model attributes/sizes are acceptable, else the name of what is wrong.
    modes: the op's rnn_modes (TensorFlow's own ops: TF_MODES)."""
    if mode not in modes:
        return "rnn_mode"
    if input_mode not in INPUT_MODES:
        return "input_mode"
    if dirs is None:
        return "direction"
    if not (0 <= dropout <= 1):
        return "dropout"
    if P < 0 or (P > 0 and mode != "lstm"):
        return "num_proj"
    if L < 1:
        return "num_layers"
    if H < 1:
        return "num_units"
    if I < 1:
        return "input_size"
    if P > H:
        return "num_proj"
    if L > INT_MAX // (dirs * (2 * GATES[mode] + 1)):
        return "num_layers"
    size = _params_size(mode, L, H, I, dirs, input_mode, P)
    if size > MAX_ELEMENTS:
        return "num_units" if abs(size / MAX_ELEMENTS - 1) > 1e-3 else "either"
    if input_mode == "skip_input" and I != H:
        return "input_mode"
    return None


def _dirs(direction):
    return {"unidirectional": 1, "bidirectional": 2}.get(direction)


@st.composite
def rnn_config(draw, small=False, flavor="ours"):
    mode = draw(st.sampled_from(_modes(flavor)))
    direction = draw(st.sampled_from(DIRECTIONS))
    L = draw(st.integers(1, 2 if small else 3))
    H = draw(st.integers(1, 4))
    input_mode = draw(
        st.sampled_from(["linear_input", "linear_input", "skip_input", "auto_select"])
    )
    I = H if input_mode == "skip_input" or draw(st.booleans()) else draw(st.integers(1, 4))  # noqa: E741
    P = draw(st.integers(1, H)) if mode == "lstm" and draw(st.integers(0, 3)) == 0 else 0
    B = draw(st.integers(0, 3))
    T = draw(st.integers(0, 4))
    if not small and draw(st.integers(0, 12)) == 0:  # huge but empty: B = 0, T huge
        B, T = 0, draw(st.sampled_from(HUGE[:4]))
    return dict(
        mode=mode,
        direction=direction,
        L=L,
        H=H,
        I=I,
        P=P,
        B=B,
        T=T,
        input_mode=input_mode,
        time_major=draw(st.booleans()),
        is_training=draw(st.booleans()) or small,
        dropout=draw(st.sampled_from([0.0, 0.0, 0.0, 0.5])),
        seed=draw(st.sampled_from([0, 1, 7, -1, 2**63 - 1, -(2**63)])),
        seed2=draw(st.sampled_from([0, 3, 2**40])),
        dtype=draw(dtypes()),
    )


def _rnn_shapes(c):
    d, ho = _dirs(c["direction"]), c["P"] or c["H"]
    ld, B, T = c["L"] * d, c["B"], c["T"]
    tm = c["time_major"]
    return dict(
        input=(T, B, c["I"]) if tm else (B, T, c["I"]),
        input_h=(ld, B, ho) if tm else (B, ld, ho),
        input_c=(ld, B, c["H"]) if tm else (B, ld, c["H"]),
        params=(_params_size(c["mode"], c["L"], c["H"], c["I"], d, c["input_mode"], c["P"]),),
    )


RNN_TENSORS = ("input", "input_h", "input_c", "params")
RNN_ATTRS = ("rnn_mode", "input_mode", "direction", "dropout", "seed", "seed2", "num_proj")


def _rnn_attrs(c):
    return dict(
        rnn_mode=c["mode"], input_mode=c["input_mode"], direction=c["direction"],
        dropout=c["dropout"], seed=c["seed"], seed2=c["seed2"], num_proj=c["P"],
        time_major=c["time_major"],
    )  # fmt: skip


def _rnn_check(shapes, dts, attrs, lengths, ints_ok=True, modes=GATES):
    """(validity, output shapes) of the forward op per docs/MATH.md, "Fused RNN cells", from the
    inputs as given; modes: the op's rnn_modes (TensorFlow's own ops: TF_MODES)."""
    mode, tm = attrs["rnn_mode"], attrs.get("time_major", True)
    dirs = _dirs(attrs["direction"])
    P = attrs.get("num_proj", 0)
    if mode not in modes or attrs["input_mode"] not in INPUT_MODES or dirs is None:
        return INVALID, None
    dropout = attrs.get("dropout", 0.0)
    if not (0 <= dropout <= 1) or P < 0 or (P > 0 and mode != "lstm"):
        return INVALID, None
    used = ["input", "input_h", "params"] + (["input_c"] if mode == "lstm" else [])
    if len({dts[n] for n in RNN_TENSORS}) != 1 or dts["input"] not in FLOATS or not ints_ok:
        return INVALID, None
    x, h, p = shapes["input"], shapes["input_h"], shapes["params"]
    if len(x) != 3 or len(h) != 3 or len(p) != 1:
        return INVALID, None
    T, B = (x[0], x[1]) if tm else (x[1], x[0])
    I = x[2]  # noqa: E741
    hl, hb, ho = (h[0], h[1], h[2]) if tm else (h[1], h[0], h[2])
    if hb != B or hl == 0 or hl % dirs:
        return INVALID, None
    H = ho
    if mode == "lstm":
        cs = shapes["input_c"]
        if len(cs) != 3:
            return INVALID, None
        cl, cb, H = (cs[0], cs[1], cs[2]) if tm else (cs[1], cs[0], cs[2])
        if cl != hl or cb != B:
            return INVALID, None
        if (P > 0 and ho != P) or (P == 0 and H != ho):
            return INVALID, None
    err = _model_error(mode, hl // dirs, H, I, dirs, attrs["input_mode"], P, dropout, modes)
    if err == "either":
        return EITHER, None
    if err is not None:
        return INVALID, None
    if p[0] != _params_size(mode, hl // dirs, H, I, dirs, attrs["input_mode"], P):
        return INVALID, None
    if lengths is not None:
        if len(lengths[1]) != 1 or lengths[1][0] != B:
            return INVALID, None
        if any(v < 0 or v > T for v in lengths[0]):
            return INVALID, None
    del used
    out = (T, B, dirs * ho) if tm else (B, T, dirs * ho)
    return VALID, [out, tuple(h), tuple(shapes["input_c"]) if mode == "lstm" else (), None, None]


@st.composite
def lengths_for(draw, B, T):
    kind = draw(st.sampled_from(["full", "random", "random", "zero"]))
    if kind == "full":
        return [T] * B
    if kind == "zero":
        return [0] * B
    return [draw(st.integers(0, T)) for _ in range(B)] if T < 2**31 else [T] * B


def _mutate_lengths(draw, lengths, T):
    how = draw(st.sampled_from(["neg", "past", "short", "long", "rank2", "scalar", "int64"]))
    lengths = list(lengths)
    if how == "neg":
        if not lengths:
            return lengths, (len(lengths),), "int32"
        lengths[draw(st.integers(0, len(lengths) - 1))] = draw(st.sampled_from([-1, -(2**31)]))
    elif how == "past":
        if not lengths:
            return lengths, (len(lengths),), "int32"
        lengths[draw(st.integers(0, len(lengths) - 1))] = min(T + draw(st.integers(1, 3)), INT_MAX)
    elif how == "short":
        lengths = lengths[:-1] if lengths else lengths
    elif how == "long":
        lengths = lengths + [0]
    elif how == "rank2":
        return lengths, (1, len(lengths)), "int32"
    elif how == "scalar":
        return [lengths[0] if lengths else 0], (), "int32"
    elif how == "int64":
        return lengths, (len(lengths),), "int64"
    return lengths, (len(lengths),), "int32"


def _mutate_attr(draw, attrs, names):
    name = draw(st.sampled_from(names))
    if name in ("rnn_mode", "input_mode", "direction"):
        attrs[name] = draw(st.sampled_from(["bogus", "", "LSTM"] + list(GATES)))
    elif name == "dropout":
        attrs[name] = draw(st.sampled_from([-0.5, 1.0, 1.5, 0.25] + list(NONFINITE)))
    elif name == "num_proj":
        attrs[name] = draw(st.sampled_from([-1, 1, 2, 5, 2**31 - 1]))
    elif name in ("seed", "seed2"):
        attrs[name] = draw(st.sampled_from([-(2**63), 2**63 - 1, 12345]))
    elif name == "time_major":
        attrs[name] = not attrs.get(name, True)
    return name


@st.composite
def cudnn_cases(draw, flavor="ours"):
    """Forward op cases; flavor: ours (TfRnn>CudnnRNN), v3 / v2 / v1 (TensorFlow's own ops)."""
    c = draw(rnn_config(flavor=flavor))
    shapes = _rnn_shapes(c)
    dts = dict.fromkeys(RNN_TENSORS, c["dtype"])
    fill = {n: draw(fills) if draw(st.integers(0, 5)) == 0 else "normal" for n in RNN_TENSORS}
    attrs = _rnn_attrs(c)
    attrs["is_training"] = c["is_training"]
    if flavor in ("v1", "v2"):  # no num_proj, time_major, sequence_lengths
        attrs.pop("num_proj")
        attrs.pop("time_major")
        if c["P"] or not c["time_major"]:
            c = dict(c, P=0, time_major=True)
            shapes = _rnn_shapes(c)
    lengths = draw(lengths_for(c["B"], c["T"]))
    lshape, ldt = (len(lengths),), "int32"
    mutated = []
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        what = draw(st.sampled_from(["tensor", "tensor", "params", "lengths", "attr", "dtype"]))
        if what == "tensor":
            n = draw(st.sampled_from(["input", "input_h", "input_c"]))
            shapes[n] = _mutate_shape(draw, shapes[n])
            mutated.append(n)
        elif what == "params":
            k = draw(st.sampled_from([-3, -1, 1, 2, "zero", "rank2"]))
            p = shapes["params"][0]
            shapes["params"] = (0,) if k == "zero" else (p, 1) if k == "rank2" else (max(0, p + k),)
            mutated.append("params")
        elif what == "lengths" and flavor in ("ours", "v3"):
            lengths, lshape, ldt = _mutate_lengths(draw, lengths, c["T"])
            mutated.append("sequence_lengths")
        elif what == "attr":
            names = [a for a in RNN_ATTRS + ("time_major",) if a in attrs]
            mutated.append(_mutate_attr(draw, attrs, names))
        elif what == "dtype":
            n = draw(st.sampled_from(RNN_TENSORS))
            dts[n] = draw(st.sampled_from(["float32", "float64", "float16", "int32"]))
            mutated.append(n)
    if flavor == "ours" and draw(st.integers(0, 9)) == 0 and "sequence_lengths" not in mutated:
        lengths = None  # the wrapper's default: every sequence full (any T when B = 0)
    valid, expected = _rnn_check(
        shapes, dts, attrs, None if lengths is None or flavor in ("v1", "v2") else
        (lengths, lshape), ints_ok=ldt == "int32", modes=_modes(flavor),
    )  # fmt: skip
    x = shapes["input"]
    if lengths is None and len(x) == 3 and valid == VALID:
        T, B = (x[0], x[1]) if attrs.get("time_major", True) else (x[1], x[0])
        if B > 0 and T > INT_MAX:  # full lengths past int32: refused, naming T
            valid, expected = INVALID, None
    inputs = {n: _t(shapes[n], dts[n], fill[n]) for n in RNN_TENSORS}
    if flavor in ("ours", "v3"):
        inputs["sequence_lengths"] = None if lengths is None else _int_t(lengths, lshape, ldt)
    if expected is not None and flavor == "v1":
        expected = expected[:4]
    return dict(
        family="cudnn" if flavor == "ours" else f"tf_cudnn_{flavor}",
        inputs=inputs, attrs=attrs, expect=valid, expected=expected, out_dtype=dts["input"],
        mutated=set(mutated) if len(set(mutated)) == 1 else None,
    )  # fmt: skip


BACKPROP_FWD_OUTPUTS = ("output", "output_h", "output_c")
BACKPROP_GRADS = ("output_backprop", "output_h_backprop", "output_c_backprop")


@st.composite
def backprop_cases(draw, flavor="ours"):
    """Backprop op cases: a valid forward pass run here, its results fed back, then mutated."""
    c = draw(rnn_config(small=True, flavor=flavor))
    c["is_training"] = True
    shapes = _rnn_shapes(c)
    attrs = _rnn_attrs(c)
    lengths = draw(lengths_for(c["B"], c["T"]))
    fwd_inputs = {n: _t(shapes[n], c["dtype"]) for n in RNN_TENSORS}
    fwd_inputs["sequence_lengths"] = _int_t(lengths)
    mutated = []
    changes = {}  # name -> ("shape", new shape) | ("fill", fill) | ("dtype", dt) | ("slice", k)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        what = draw(st.sampled_from(["tensor", "tensor", "reserve", "attr", "dtype", "fill"]))
        if what == "tensor":
            n = draw(st.sampled_from(RNN_TENSORS + BACKPROP_FWD_OUTPUTS + BACKPROP_GRADS))
            changes[n] = ("shape", None)
            mutated.append(n)
        elif what == "reserve":
            k = draw(st.sampled_from([-1, 1, "empty", "same_size_garbage", "host_reserved"]))
            n = "host_reserved" if k == "host_reserved" else "reserve_space"
            changes[n] = ("reserve", k)
            mutated.append(n)
        elif what == "attr":
            names = ("rnn_mode", "input_mode", "direction", "dropout", "num_proj", "time_major")
            mutated.append(_mutate_attr(draw, attrs, list(names)))
        elif what == "dtype":
            n = draw(st.sampled_from(["input", "params", "output_backprop", "reserve_space"]))
            changes[n] = ("dtype", draw(st.sampled_from(["float64", "float16", "int32"])))
            mutated.append(n)
        else:
            n = draw(st.sampled_from(BACKPROP_GRADS + ("reserve_space",)))
            changes[n] = ("fill", "nonfinite")
    # New shapes are drawn now (the forward's shapes are known from the config).
    fwd_expected = _rnn_check(shapes, dict.fromkeys(RNN_TENSORS, c["dtype"]), dict(
        _rnn_attrs(c), is_training=True), (lengths, (len(lengths),)))[1]  # fmt: skip
    out_shapes = dict(
        output=fwd_expected[0],
        output_h=fwd_expected[1],
        output_c=fwd_expected[2],
        output_backprop=fwd_expected[0],
        output_h_backprop=fwd_expected[1],
        output_c_backprop=fwd_expected[2],
    )
    all_shapes = dict(shapes, **out_shapes)
    for n, (kind, _) in list(changes.items()):
        if kind == "shape":
            changes[n] = ("shape", _mutate_shape(draw, all_shapes[n]))
    return dict(
        family="cudnn_backprop" if flavor == "ours" else "tf_backprop_v3",
        fwd_inputs=fwd_inputs, fwd_attrs=dict(_rnn_attrs(c), is_training=True), attrs=attrs,
        changes=changes, config=c, lengths=lengths, mutated=set(mutated) if len(set(mutated)) == 1
        else None, all_shapes=all_shapes,
    )  # fmt: skip


def _backprop_expect(case, reserve_len):
    """(validity, expected shapes) of a backprop case, given the forward's reserve_space length."""
    c, attrs, changes = case["config"], case["attrs"], case["changes"]
    shapes = dict(case["all_shapes"])
    dts = dict.fromkeys(shapes, c["dtype"])
    reserve_ok, either = True, False
    for n, (kind, v) in changes.items():
        if kind == "shape":
            shapes[n] = v
        elif kind == "dtype":
            dts[n] = v
        elif kind == "reserve":
            if n == "host_reserved":
                either = True  # the CPU kernels keep nothing there and do not look at it
            elif v != "same_size_garbage":
                reserve_ok = False
    if dts.get("reserve_space", c["dtype"]) != c["dtype"]:
        return INVALID, None
    fwd_changed = any(attrs[a] != case["fwd_attrs"][a] for a in attrs if a in case["fwd_attrs"])
    valid, fexp = _rnn_check(
        {n: shapes[n] for n in RNN_TENSORS}, {n: dts[n] for n in RNN_TENSORS}, attrs,
        (case["lengths"], (len(case["lengths"]),)),
        modes=_modes("ours" if case["family"] == "cudnn_backprop" else "tf"),
    )  # fmt: skip
    if valid != VALID:
        return valid, None
    lstm = attrs["rnn_mode"] == "lstm"
    want = dict(
        output=fexp[0], output_h=fexp[1], output_backprop=fexp[0], output_h_backprop=fexp[1]
    )
    if lstm:
        want["output_c"] = want["output_c_backprop"] = fexp[2]
    for n, s in want.items():
        if tuple(shapes[n]) != tuple(s):
            return INVALID, None
    if any(dts[n] != dts["input"] for n in BACKPROP_FWD_OUTPUTS + BACKPROP_GRADS):
        return INVALID, None
    if not reserve_ok:
        return INVALID, None
    expected = [shapes["input"], shapes["input_h"], shapes["input_c"], shapes["params"]]
    if fwd_changed or either:
        # Attributes other than the forward's may still fit the reserve_space (e.g. dropout on one
        # layer, which keeps no mask): either outcome, but shapes when it succeeds.
        return EITHER, expected
    return VALID, expected


# ---------------------------------------------------------------------------------- params ops
@st.composite
def model_scalars(draw):
    """num_layers, num_units, input_size: small and valid, or zero/negative/huge, or not scalars."""

    def one():
        return draw(st.one_of(
            st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
            st.sampled_from([0, -1, -(2**31), 2**31 - 1, 2**20, 46341, 2**16]),
        ))  # fmt: skip

    vals = [one(), one(), one()]
    shapes = [(), (), ()]
    if draw(st.integers(0, 9)) == 0:
        i = draw(st.integers(0, 2))
        shapes[i] = draw(st.sampled_from([(1,), (2,), (1, 1), (0,)]))
    return vals, shapes


def _scalar_spec(v, shape):
    n = math.prod(shape)
    return _int_t([v] * n, shape)


def _scalars_model(vals, shapes):
    if any(s != () for s in shapes):
        return "shape"
    return None


@st.composite
def params_size_cases(draw, flavor="ours"):
    (L, H, I), shapes = draw(model_scalars())  # noqa: E741
    attrs = dict(
        rnn_mode=draw(st.sampled_from(_modes(flavor))),
        input_mode=draw(st.sampled_from(INPUT_MODES)),
        direction=draw(st.sampled_from(DIRECTIONS)),
        dropout=draw(st.sampled_from([0.0, 0.0, 0.5])),
        seed=0, seed2=0, num_proj=0,
    )  # fmt: skip
    if attrs["rnn_mode"] == "lstm" and draw(st.booleans()):
        attrs["num_proj"] = draw(st.sampled_from([1, 2, 3]))
    S = draw(st.sampled_from(["int32", "int64"]))
    T = draw(dtypes())
    mutated = []
    base_ok = _scalars_model(L, shapes) is None and _model_error(
        attrs["rnn_mode"], L, H, I, _dirs(attrs["direction"]), attrs["input_mode"],
        attrs["num_proj"], attrs["dropout"],
    ) is None  # fmt: skip
    if base_ok and S == "int32":  # the size must also fit S (else that is the error named)
        base_ok = _params_size(attrs["rnn_mode"], L, H, I, _dirs(attrs["direction"]),
                               attrs["input_mode"], attrs["num_proj"]) <= INT_MAX  # fmt: skip
    if draw(st.integers(0, 3)) == 0:
        mutated.append(_mutate_attr(draw, attrs, list(RNN_ATTRS)))
    if not base_ok:  # already invalid before the mutation: the message may name another problem
        mutated = []
    if flavor == "tf":
        attrs.pop("num_proj") if attrs["num_proj"] == 0 else None
    expect, value = INVALID, None
    if _scalars_model(L, shapes) is None:
        dirs = _dirs(attrs["direction"])
        err = _model_error(
            attrs["rnn_mode"], L, H, I, dirs, attrs["input_mode"], attrs.get("num_proj", 0),
            attrs["dropout"], _modes(flavor),
        )  # fmt: skip
        if err == "either":
            expect = EITHER
        elif err is None:
            value = _params_size(attrs["rnn_mode"], L, H, I, dirs, attrs["input_mode"],
                                 attrs.get("num_proj", 0))  # fmt: skip
            expect = VALID if (S == "int64" or value <= INT_MAX) else INVALID
    return dict(
        family="params_size" if flavor == "ours" else "tf_params_size",
        inputs=dict(num_layers=_scalar_spec(L, shapes[0]), num_units=_scalar_spec(H, shapes[1]),
                    input_size=_scalar_spec(I, shapes[2])),
        attrs=dict(attrs, T=T, S=S), expect=expect, expected=[(1,)], value=value, out_dtype=S,
        mutated=set(mutated) if len(mutated) == 1 else None,
    )  # fmt: skip


def _canonical_shapes(mode, L, H, I, dirs, input_mode, P):  # noqa: E741
    g, ho = GATES[mode], (P or H)
    skip = input_mode == "skip_input" or (input_mode == "auto_select" and I == H)
    ws, bs = [], []
    for layer in range(L):
        inp = I if layer == 0 else dirs * ho
        for _ in range(dirs):
            if not (layer == 0 and skip):
                ws += [(H, inp)] * g
            ws += [(H, ho)] * g
            if P:
                ws.append((P, H))
            bs += [(H,)] * (2 * g)
    return ws, bs


@st.composite
def canonical_cases(draw, to_params=False, flavor="ours"):
    mode = draw(st.sampled_from(_modes(flavor)))
    direction = draw(st.sampled_from(DIRECTIONS))
    dirs = _dirs(direction)
    L, H = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    input_mode = draw(st.sampled_from(INPUT_MODES))
    I = H if input_mode == "skip_input" or draw(st.booleans()) else draw(st.integers(1, 3))  # noqa: E741
    P = draw(st.integers(1, H)) if mode == "lstm" and draw(st.integers(0, 2)) == 0 else 0
    dt = draw(dtypes())
    ws, bs = _canonical_shapes(mode, L, H, I, dirs, input_mode, P)
    nw, nb = len(ws), len(bs)
    size = _params_size(mode, L, H, I, dirs, input_mode, P)
    attrs = dict(rnn_mode=mode, input_mode=input_mode, direction=direction, dropout=0.0,
                 seed=0, seed2=0, num_proj=P)  # fmt: skip
    scal, scal_shapes = [L, H, I], [(), (), ()]
    params_shape = (size,)
    dts_w, dts_b = [dt] * nw, [dt] * nb
    ws_given, bs_given = list(ws), list(bs)
    mutated, expect = [], VALID
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        what = draw(st.sampled_from(["scalar", "counts", "attr", "params", "list", "list"]))
        if what == "scalar":
            i = draw(st.integers(0, 2))
            if draw(st.booleans()):
                scal[i] = draw(st.sampled_from([0, -1, 2**31 - 1, scal[i] + 1, 46341]))
            else:
                scal_shapes[i] = draw(st.sampled_from([(1,), (2,), (0,)]))
            mutated.append(("num_layers", "num_units", "input_size")[i])
        elif what == "counts":
            if draw(st.booleans()):
                nw = max(1, nw + draw(st.sampled_from([-1, 1, 5])))
                mutated.append("num_params_weights")
            else:
                nb = max(1, nb + draw(st.sampled_from([-1, 1])))
                mutated.append("num_params_biases")
        elif what == "attr":
            mutated.append(_mutate_attr(draw, attrs, list(RNN_ATTRS)))
        elif what == "params" and not to_params:
            k = draw(st.sampled_from([-1, 1, "zero", "rank2", "dtype"]))
            if k == "dtype":  # T follows params: valid, with outputs of that dtype
                attrs["_params_dtype"] = "float64" if dt != "float64" else "float32"
            else:
                params_shape = (0,) if k == "zero" else (size, 1) if k == "rank2" else (size + k,)
            mutated.append("params")
        elif what == "list" and to_params:
            is_b = draw(st.booleans())
            lst = bs_given if is_b else ws_given
            i = draw(st.integers(0, len(lst) - 1))
            how = draw(st.sampled_from(["shape", "shape", "flat", "dtype"]))
            if how == "shape":
                lst[i] = _mutate_shape(draw, lst[i])
            elif how == "flat":  # same element count, other rank: lenient (as TensorFlow's kernel)
                lst[i] = (math.prod(lst[i]),)
                attrs.setdefault("_lenient", True)
            else:
                (dts_b if is_b else dts_w)[i] = "float64" if dt != "float64" else "float16"
            mutated.append("biases" if is_b else "weights")
    # Lists follow the counts attributes (the op's arity).
    ws_given = (ws_given + [ws[0]] * nw)[:nw]
    bs_given = (bs_given + [bs[0]] * nb)[:nb]
    dts_w, dts_b = (dts_w + [dt] * nw)[:nw], (dts_b + [dt] * nb)[:nb]
    params_dt = attrs.pop("_params_dtype", dt)
    attrs.pop("_lenient", None)
    if not to_params:
        dts_w, dts_b, dt = [params_dt] * nw, [params_dt] * nb, params_dt
    # The model's view.
    dirs2 = _dirs(attrs["direction"])
    err = None
    if any(s != () for s in scal_shapes):
        err = "scalar"
    else:
        err = _model_error(attrs["rnn_mode"], scal[0], scal[1], scal[2], dirs2,
                           attrs["input_mode"], attrs["num_proj"], attrs["dropout"],
                           _modes(flavor))  # fmt: skip
    want_w = want_b = None
    if err is None:
        if scal[0] * max(dirs2 or 1, 1) > 64 or scal[1] > 1000 or scal[2] > 10**6:
            err = "either"  # huge models: allocation may fail or succeed; either is fine
        else:
            want_w, want_b = _canonical_shapes(attrs["rnn_mode"], scal[0], scal[1], scal[2], dirs2,
                                               attrs["input_mode"], attrs["num_proj"])  # fmt: skip
            if len(want_w) != nw or len(want_b) != nb:
                err = "counts"
    if err == "either":
        expect = EITHER
    elif err is not None:
        expect = INVALID
    elif len(set(dts_w + dts_b + [params_dt])) != 1:
        expect = INVALID
    elif to_params:
        pairs = list(zip(ws_given + bs_given, want_w + want_b, strict=True))
        same = [math.prod(a) == math.prod(b) for a, b in pairs]
        exact = [tuple(a) == tuple(b) for a, b in pairs]
        # Only element counts are checked (as TensorFlow's kernel does): another shape with the
        # same count may be taken.
        expect = VALID if all(exact) else (EITHER if all(same) else INVALID)
    else:
        full = _params_size(attrs["rnn_mode"], scal[0], scal[1], scal[2], dirs2,
                            attrs["input_mode"], attrs["num_proj"])  # fmt: skip
        expect = VALID if tuple(params_shape) == (full,) else INVALID
    common = dict(
        num_layers=_scalar_spec(scal[0], scal_shapes[0]),
        num_units=_scalar_spec(scal[1], scal_shapes[1]),
        input_size=_scalar_spec(scal[2], scal_shapes[2]),
    )
    fam = "to_params" if to_params else "to_canonical"
    if to_params:
        inputs = dict(common, weights=[_t(s, d) for s, d in zip(ws_given, dts_w, strict=True)],
                      biases=[_t(s, d) for s, d in zip(bs_given, dts_b, strict=True)])  # fmt: skip
        expected = None
        if expect != INVALID and err is None:
            size = _params_size(attrs["rnn_mode"], *scal, dirs2, attrs["input_mode"],
                                attrs["num_proj"])  # fmt: skip
            expected = [(size,)]
    else:
        inputs = dict(common, params=_t(params_shape, params_dt))
        attrs["num_params_weights"], attrs["num_params_biases"] = nw, nb
        expected = (want_w or []) + (want_b or []) if expect == VALID else None
    return dict(
        family=fam if flavor == "ours" else f"tf_{fam}", inputs=inputs, attrs=attrs,
        expect=expect, expected=expected, out_dtype=dt,
        mutated=set(mutated) if len(set(mutated)) == 1 else None,
    )  # fmt: skip


# ------------------------------------------------------------------- KerasRNN (one Keras layer)
# TfRnn>KerasRNN (cc/ops/fused_rnn_ops.cc, tf_rnn_ops.keras_rnn): input [B, T, I] ([T, B, I] with
# time_major), input_h / input_c [B, H] (input_c read for lstm only), kernel [I, G·H],
# recurrent_kernel [H, G·H], bias Keras' shape ([2, 3H] gru, [G·H] else) or no elements,
# sequence_lengths [B] or [0] (every sequence full). Its gradient (keras_rnn_grad) is
# TfRnn>KerasRNNBackprop on the forward's reserve_space, reached through a GradientTape.
KERAS_TENSORS = ("input", "input_h", "input_c", "kernel", "recurrent_kernel", "bias")
KERAS_DTYPES = ("float32", "float64")


def _keras_shapes(mode, B, T, I, H, tm, bias):  # noqa: E741
    gh = GATES[mode] * H
    return dict(
        input=(T, B, I) if tm else (B, T, I), input_h=(B, H),
        input_c=(B, H) if mode == "lstm" else (0,), kernel=(I, gh), recurrent_kernel=(H, gh),
        bias=((2, gh) if mode == "gru" else (gh,)) if bias else (0,),
    )  # fmt: skip


def _keras_check(shapes, dts, attrs, lengths):
    """(validity, output shapes) of TfRnn>KerasRNN; lengths: (values, shape, dtype)."""
    mode, tm = attrs["rnn_mode"], attrs["time_major"]
    if mode not in GATES:
        return INVALID, None
    if len({dts[n] for n in KERAS_TENSORS}) != 1 or dts["input"] not in KERAS_DTYPES:
        return INVALID, None
    values, lshape, ldt = lengths
    if ldt != "int32":
        return INVALID, None
    x, rk = shapes["input"], shapes["recurrent_kernel"]
    if len(x) != 3:
        return INVALID, None
    T, B, I = (x[0], x[1], x[2]) if tm else (x[1], x[0], x[2])  # noqa: E741
    G = GATES[mode]
    if len(rk) != 2 or rk[0] < 1 or rk[1] != G * rk[0]:
        return INVALID, None
    H = rk[0]
    if tuple(shapes["kernel"]) != (I, G * H) or tuple(shapes["input_h"]) != (B, H):
        return INVALID, None
    if mode == "lstm" and tuple(shapes["input_c"]) != (B, H):
        return INVALID, None
    b = shapes["bias"]
    if math.prod(b) != 0 and tuple(b) != ((2, G * H) if mode == "gru" else (G * H,)):
        return INVALID, None
    if len(lshape) != 1 or lshape[0] not in (0, B):
        return INVALID, None
    if I < 1:  # the fused family's rule: a model reads its input
        return INVALID, None
    if lshape[0] == B and any(v < 0 or v > T for v in values):
        return INVALID, None
    out = (T, B, H) if tm else (B, T, H)
    return VALID, [out, (B, H), (B, H) if mode == "lstm" else (), None]


@st.composite
def keras_config(draw, small=False):
    mode = draw(st.sampled_from(sorted(GATES)))
    B, T = draw(st.integers(0, 3)), draw(st.integers(0, 4))
    I, H = draw(st.integers(1, 4)), draw(st.integers(1, 4))  # noqa: E741
    if not small and draw(st.integers(0, 12)) == 0:  # huge but empty: B = 0, T huge
        B, T = 0, draw(st.sampled_from(HUGE))
    return dict(
        mode=mode, B=B, T=T, I=I, H=H, time_major=draw(st.booleans()),
        bias=draw(st.integers(0, 3)) > 0,
        dtype=draw(st.sampled_from(["float32"] * 3 + ["float64"])),
        is_training=small or draw(st.booleans()),
    )  # fmt: skip


def _mutate_keras_case(draw, what, names, shapes, dts, attrs, lspec, T, B):
    """One mutation of a one-layer Keras op's case, in place: a tensor's shape or dtype, the
    lengths (values, shape, dtype) or an attr; returns the name mutated and the lengths."""
    if what == "tensor":
        n = draw(st.sampled_from(names))
        shapes[n] = _mutate_shape(draw, shapes[n])
    elif what == "lengths":
        lspec = _mutate_lengths(draw, lspec[0] or [T] * B, T)
        n = "sequence_lengths"
    elif what == "attr":
        if draw(st.booleans()):
            attrs["time_major"] = not attrs["time_major"]
            n = "time_major"
        else:
            attrs["rnn_mode"] = draw(st.sampled_from(["bogus", "LSTM"] + sorted(GATES)))
            n = "rnn_mode"
    else:
        n = draw(st.sampled_from(names))
        dts[n] = draw(st.sampled_from(["float32", "float64", "float16", "int32"]))
    return n, lspec


@st.composite
def keras_rnn_cases(draw):
    """Forward cases of TfRnn>KerasRNN, through tf_rnn_ops.keras_rnn."""
    c = draw(keras_config())
    shapes = _keras_shapes(c["mode"], c["B"], c["T"], c["I"], c["H"], c["time_major"], c["bias"])
    dts = dict.fromkeys(KERAS_TENSORS, c["dtype"])
    fill = {n: draw(fills) if draw(st.integers(0, 5)) == 0 else "normal" for n in KERAS_TENSORS}
    attrs = dict(rnn_mode=c["mode"], time_major=c["time_major"], is_training=c["is_training"])
    lengths = draw(lengths_for(c["B"], c["T"])) if draw(st.integers(0, 3)) else None
    lshape, ldt = ((len(lengths),) if lengths is not None else (0,)), "int32"
    mutated = []
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        what = draw(st.sampled_from(["tensor", "tensor", "tensor", "lengths", "attr", "dtype"]))
        n, (lengths, lshape, ldt) = _mutate_keras_case(
            draw, what, KERAS_TENSORS, shapes, dts, attrs, (lengths, lshape, ldt), c["T"], c["B"]
        )
        mutated.append(n)
    valid, expected = _keras_check(shapes, dts, attrs, (lengths or [], lshape, ldt))
    inputs = {n: _t(shapes[n], dts[n], fill[n]) for n in KERAS_TENSORS}
    if c["mode"] != "lstm" and "input_c" not in mutated and draw(st.booleans()):
        inputs["input_c"] = None  # the wrapper's default for the cells without c
    if "bias" not in mutated and not c["bias"] and draw(st.booleans()):
        inputs["bias"] = None  # use_bias=False
    inputs["sequence_lengths"] = None if lengths is None else _int_t(lengths, lshape, ldt)
    return dict(
        family="keras_rnn", inputs=inputs, attrs=attrs, expect=valid, expected=expected,
        out_dtype=dts["input"], mutated=set(mutated) if len(set(mutated)) == 1 else None,
    )  # fmt: skip


KERAS_GRADS = ("output", "output_h", "output_c")


@st.composite
def keras_rnn_grad_cases(draw):
    """The gradient of TfRnn>KerasRNN (TfRnn>KerasRNNBackprop on its reserve_space) through a
    GradientTape: a valid forward, upstream gradients of the outputs' shapes (or None, NaN / Inf,
    a wrong shape), a forward run without is_training, sources watched or not."""
    c = draw(keras_config(small=True))
    shapes = _keras_shapes(c["mode"], c["B"], c["T"], c["I"], c["H"], c["time_major"], c["bias"])
    lengths = draw(lengths_for(c["B"], c["T"])) if draw(st.booleans()) else None
    attrs = dict(rnn_mode=c["mode"], time_major=c["time_major"], is_training=True)
    lspec = (lengths or [], (len(lengths),) if lengths is not None else (0,), "int32")
    _, fexp = _keras_check(shapes, dict.fromkeys(KERAS_TENSORS, c["dtype"]), attrs, lspec)
    upstream = {n: draw(st.sampled_from(["ones", "ones", "normal", "none"])) for n in KERAS_GRADS}
    mutated = []
    if draw(st.integers(0, 2)) == 0:
        what = draw(st.sampled_from(["shape", "shape", "fill", "is_training"]))
        if what == "is_training":
            attrs["is_training"] = False
            mutated.append("is_training")
        else:
            i = draw(st.integers(0, 2))
            n = KERAS_GRADS[i]
            if what == "fill":
                upstream[n] = "nonfinite"
            else:
                upstream[n] = ("shape", _mutate_shape(draw, fexp[i]))
                mutated.append(n)
    watch = [n for n in KERAS_TENSORS if draw(st.integers(0, 4)) > 0] or ["kernel"]
    expect = VALID
    if not attrs["is_training"]:
        expect = INVALID
    elif any(isinstance(u, tuple) and tuple(u[1]) != tuple(fexp[i])
             for i, u in enumerate(upstream[n] for n in KERAS_GRADS)):  # fmt: skip
        expect = INVALID
        if c["mode"] != "lstm" and isinstance(upstream["output_c"], tuple):
            expect = EITHER  # output_c is a scalar 0 there: its gradient is not read
    elif c["B"] * c["T"] == 0 and any(isinstance(u, tuple) for u in upstream.values()):
        expect = EITHER
    expected = [shapes[n] for n in watch] if expect != INVALID else None
    inputs = {n: _t(shapes[n], c["dtype"]) for n in KERAS_TENSORS}
    inputs["sequence_lengths"] = None if lengths is None else _int_t(lengths)
    return dict(
        family="keras_rnn_grad", inputs=inputs, attrs=attrs, upstream=upstream, watch=watch,
        expect=expect, expected=expected, out_dtype=c["dtype"],
        mutated=set(mutated) if mutated else None,
    )  # fmt: skip


def _keras_grad_fn(rng):
    """A callable running keras_rnn under a tape and returning the gradients of `_watch`."""

    def fn(*, _watch, _upstream, **kw):
        attrs = {a: kw.pop(a) for a in ("rnn_mode", "time_major", "is_training")}
        with tf.GradientTape() as tape:
            for n in _watch:
                tape.watch(kw[n])
            outs = tf_rnn_ops.keras_rnn(**kw, **attrs)[:3]
        grads = []
        for n, o in zip(KERAS_GRADS, outs, strict=True):
            u = _upstream[n]
            if u == "none":
                grads.append(None)
            elif u in ("ones", "normal", "nonfinite"):
                fill = "normal" if u == "ones" else u
                grads.append(tf.ones_like(o) if u == "ones" else build(
                    _t(_shape_of(o), o.dtype.name, fill), rng))  # fmt: skip
            else:
                grads.append(build(_t(u[1], o.dtype.name), rng))
        if all(g is None for g in grads):
            grads = [tf.ones_like(o) for o in outs]
        return tape.gradient(outs, [kw[n] for n in _watch], output_gradients=grads)

    return fn


# ------------------------------------------------------------------- LayerNormRnn (LN LSTM / GRU)
# TfRnn>LayerNormRnn / TfRnn>LayerNormRnnGrad (cc/ops/layer_norm_rnn_ops.cc): x [T, B, I]
# (time_major=false: [B, T, I], and dy likewise), h0
# [B, H], c0 [B, H] (LSTM), kernel [I, G·H], recurrent_kernel [H, G·H], bias, gamma_x, gamma_h
# [G·H], recurrent_bias [G·H] (GRU), beta_x, beta_h [G·H], gamma_c, beta_c [H] (LSTM); inputs a
# cell does not use may be any shape. mask [T, B] or [0]; zoneout_mask [T, B, H], a scalar or [0];
# epsilon a positive scalar. The grad op appends reserve (the forward's), dy, dhn, dcn. Both end
# with the list recurrent_mask: none or one [B, H] (a case's "recurrent_mask" entry, when present,
# is that one tensor; _ln_op passes it as the list).
LN_INPUTS = (
    "x", "h0", "c0", "kernel", "recurrent_kernel", "bias", "recurrent_bias", "gamma_x", "beta_x",
    "gamma_h", "beta_h", "gamma_c", "beta_c", "mask", "zoneout_mask", "epsilon",
)  # fmt: skip
LN_GRAD_INPUTS = ("reserve", "dy", "dhn", "dcn")
LN_CELLS = ("layer_norm_lstm", "layer_norm_gru")
LN_LSTM_ONLY = ("c0", "beta_x", "beta_h", "gamma_c", "beta_c")
LN_RECURRENT_MASK = "recurrent_mask"


def _ln_op(name):
    """The generated op `name` with the list recurrent_mask given as one tensor or absent."""

    def call(recurrent_mask=None, **kw):
        masks = [] if recurrent_mask is None else [recurrent_mask]
        return getattr(_ops(), name)(recurrent_mask=masks, **kw)

    return call


def _ln_names(shapes, base=LN_INPUTS):
    """The inputs of a case: `base`, and recurrent_mask where the case has one."""
    return base + ((LN_RECURRENT_MASK,) if LN_RECURRENT_MASK in shapes else ())


def _ln_shapes(lstm, T, B, I, H, mask, zone, recurrent_mask=False, time_major=True):  # noqa: E741
    gh, un = (4 if lstm else 3) * H, (0,)
    extra = {LN_RECURRENT_MASK: (B, H)} if recurrent_mask else {}
    return extra | dict(
        x=(T, B, I) if time_major else (B, T, I), h0=(B, H), c0=(B, H) if lstm else un,
        kernel=(I, gh),
        recurrent_kernel=(H, gh), bias=(gh,), recurrent_bias=un if lstm else (gh,),
        gamma_x=(gh,), beta_x=(gh,) if lstm else un, gamma_h=(gh,),
        beta_h=(gh,) if lstm else un, gamma_c=(H,) if lstm else un, beta_c=(H,) if lstm else un,
        mask=(T, B) if mask else un,
        zoneout_mask={"full": (T, B, H), "scalar": (), "none": un}[zone],
        epsilon=(),
    )  # fmt: skip


def _ln_reserve_size(lstm, T, B, H):
    """The reserve's length (cc/kernels/layer_norm_rnn_kernels.cc, ReserveLayout)."""
    gh = (4 if lstm else 3) * H
    return T * B * (3 * gh + 2 * H + 3 + (2 * H if lstm else 0))


def _ln_check(shapes, dts, cell, eps, time_major, grad=False):
    """(validity, output shapes) of TfRnn>LayerNormRnn (grad: of TfRnn>LayerNormRnnGrad)."""
    names = _ln_names(shapes, LN_INPUTS + (LN_GRAD_INPUTS if grad else ()))
    if cell not in LN_CELLS:
        return INVALID, None
    if len({dts[n] for n in names}) != 1 or dts["x"] not in KERAS_DTYPES:
        return INVALID, None
    lstm = cell == "layer_norm_lstm"
    x, rk = shapes["x"], shapes["recurrent_kernel"]
    if len(x) != 3:
        return INVALID, None
    T, B, I = x if time_major else (x[1], x[0], x[2])  # noqa: E741
    G = 4 if lstm else 3
    if len(rk) != 2 or rk[1] != G * rk[0] or rk[0] < 1:
        return INVALID, None
    H = rk[0]
    want = _ln_shapes(lstm, T, B, I, H, True, "full")
    y = (T, B, H) if time_major else (B, T, H)
    used = ["kernel", "h0", "bias", "gamma_x", "gamma_h"]
    used += list(LN_LSTM_ONLY) if lstm else ["recurrent_bias"]
    if any(tuple(shapes[n]) != want[n] for n in used):
        return INVALID, None
    if tuple(shapes["mask"]) not in ((0,), (T, B)):
        return INVALID, None
    if tuple(shapes["epsilon"]) != () or not eps > 0:
        return INVALID, None
    if tuple(shapes["zoneout_mask"]) not in ((0,), (), (T, B, H)):
        return INVALID, None
    if LN_RECURRENT_MASK in shapes and tuple(shapes[LN_RECURRENT_MASK]) != (B, H):
        return INVALID, None
    if T * B * (3 * G * H + 5 * H + 3) > MAX_ELEMENTS:  # the kernels' bound on a call's buffers
        return INVALID, None
    if grad:
        g = {"reserve": (_ln_reserve_size(lstm, T, B, H),), "dy": y, "dhn": (B, H),
             "dcn": (B, H if lstm else 0)}  # fmt: skip
        if any(tuple(shapes[n]) != s for n, s in g.items()):
            return INVALID, None
        return VALID, [tuple(shapes[n]) for n in LN_INPUTS[:13]]
    return VALID, [y, (B, H), (B, H if lstm else 0), (_ln_reserve_size(lstm, T, B, H),)]


def _ln_spec(name, shape, dt, fill, eps):
    if name == "epsilon":
        return ("f", [eps] * math.prod(shape), tuple(shape), dt)
    if name in ("mask", "zoneout_mask") and fill == "normal":
        fill = "binary" if shape != () else "keep"
    return _t(shape, dt, fill)


@st.composite
def ln_config(draw, small=False):
    lstm = draw(st.booleans())
    T, B = draw(st.integers(0, 4)), draw(st.integers(0, 3))
    I, H = draw(st.integers(0, 4)), draw(st.integers(1, 4))  # noqa: E741
    if not small and draw(st.integers(0, 10)) == 0:
        if draw(st.booleans()):  # huge but empty: B = 0, T huge
            B, T = 0, draw(st.sampled_from(HUGE))
        else:  # an empty x of T·B rows past the kernels' bound (I = 0): refused, naming x
            B, T, I = max(B, 1), draw(st.sampled_from(HUGE[-2:])), 0  # noqa: E741
    return dict(
        cell=LN_CELLS[0] if lstm else LN_CELLS[1], lstm=lstm, T=T, B=B, I=I, H=H,
        mask=draw(st.booleans()) and T < 2**20,
        zone=draw(st.sampled_from(["none", "scalar", "full"] if T < 2**20 else ["none", "scalar"])),
        eps=draw(st.sampled_from([1e-3, 1e-3, 1e-5, 0.5])),
        dtype=draw(st.sampled_from(["float32"] * 3 + ["float64"])),
        is_training=small or draw(st.booleans()),
        recurrent_mask=draw(st.booleans()),
        time_major=draw(st.booleans()),
    )  # fmt: skip


def _ln_case_shapes(c):
    return _ln_shapes(c["lstm"], c["T"], c["B"], c["I"], c["H"], c["mask"], c["zone"],
                      c["recurrent_mask"], c["time_major"])  # fmt: skip


def _ln_unused(draw, shapes, lstm, B, H):
    """Inputs the cell does not read: any shape (empty, the other cell's, random)."""
    for n in ("recurrent_bias",) if lstm else LN_LSTM_ONLY:
        k = draw(st.integers(0, 5))
        if k == 1:
            shapes[n] = (B, H) if n == "c0" else (H,)
        elif k == 2:
            shapes[n] = draw(random_shape(max_rank=3))


def _ln_mutate(draw, shapes, dts, names):
    """One shape or dtype mutation of a tensor among names; returns its name."""
    n = draw(st.sampled_from(names))
    if draw(st.integers(0, 6)) == 0:
        dts[n] = draw(st.sampled_from(["float32", "float64", "float16", "int32"]))
    else:
        shapes[n] = _mutate_shape(draw, shapes[n])
    return n


@st.composite
def layer_norm_cases(draw):
    """Forward cases of TfRnn>LayerNormRnn (the generated op: every input as given)."""
    c = draw(ln_config())
    shapes = _ln_case_shapes(c)
    _ln_unused(draw, shapes, c["lstm"], c["B"], c["H"])
    names = _ln_names(shapes)
    dts = dict.fromkeys(names, c["dtype"])
    fill = {n: draw(fills) if draw(st.integers(0, 7)) == 0 else "normal" for n in names}
    cell, eps, time_major, mutated = c["cell"], c["eps"], c["time_major"], []
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        what = draw(st.sampled_from(["tensor"] * 5 + ["cell", "epsilon", "time_major"]))
        if what == "tensor":
            mutated.append(_ln_mutate(draw, shapes, dts, names))
        elif what == "cell":
            cell = draw(st.sampled_from(["bogus", "lstm"] + list(LN_CELLS)))
            mutated.append("cell")
        elif what == "time_major":  # x's first two dims swap roles: T and B read anew
            time_major = not time_major
            mutated.append("time_major")
        else:
            eps = draw(st.sampled_from([0.0, -1e-3] + list(NONFINITE)))
            mutated.append("epsilon")
    valid, expected = _ln_check(shapes, dts, cell, eps, time_major)
    if valid == VALID and not c["is_training"]:
        expected[3] = (0,)
    return dict(
        family="layer_norm",
        inputs={n: _ln_spec(n, shapes[n], dts[n], fill[n], eps) for n in names},
        attrs=dict(cell=cell, is_training=c["is_training"], time_major=time_major),
        expect=valid, expected=expected,
        out_dtype=dts["x"], mutated=set(mutated) if len(set(mutated)) == 1 else None,
    )  # fmt: skip


@st.composite
def layer_norm_grad_cases(draw):
    """TfRnn>LayerNormRnnGrad fed a valid forward's inputs and reserve (run here), with dy, dhn,
    dcn of the outputs' shapes; then 0-2 mutations: any input's shape or dtype, the reserve (one
    element more or less, empty, same-size NaN/Inf, an inference forward's), the cell."""
    c = draw(ln_config(small=True))
    shapes = _ln_case_shapes(c)
    _ln_unused(draw, shapes, c["lstm"], c["B"], c["H"])
    fwd = {n: _ln_spec(n, shapes[n], c["dtype"], "normal", c["eps"]) for n in _ln_names(shapes)}
    T, B, H = c["T"], c["B"], c["H"]
    shapes.update(reserve=(_ln_reserve_size(c["lstm"], T, B, H),),
                  dy=(T, B, H) if c["time_major"] else (B, T, H), dhn=(B, H),
                  dcn=(B, H if c["lstm"] else 0))  # fmt: skip
    names = _ln_names(shapes, LN_INPUTS + LN_GRAD_INPUTS)
    dts = dict.fromkeys(names, c["dtype"])
    changes, mutated, cell, eps = {}, [], c["cell"], c["eps"]
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        what = draw(st.sampled_from(["tensor"] * 4 + ["reserve", "cell", "fill"]))
        if what == "tensor":
            n = _ln_mutate(draw, shapes, dts, names)
            changes[n] = "shape"
            mutated.append(n)
        elif what == "reserve":
            k = draw(st.sampled_from([-1, 1, "empty", "garbage", "inference"]))
            r = _ln_reserve_size(c["lstm"], T, B, H)  # the forward's
            if k == "inference":
                shapes["reserve"] = (0,)
            elif k == "empty":
                shapes["reserve"] = (0 if r else 1,)
            elif k != "garbage":
                shapes["reserve"] = (max(0, r + k),) if r + k >= 0 else (r + 1,)
            changes["reserve"] = "garbage" if k == "garbage" else "shape"
            mutated.append("reserve")
        elif what == "cell":
            cell = LN_CELLS[1] if c["lstm"] else LN_CELLS[0]
            mutated.append("cell")
        else:
            changes[draw(st.sampled_from(["dy", "dhn", "reserve"]))] = "garbage"
    valid, expected = _ln_check(shapes, dts, cell, eps, c["time_major"], grad=True)
    return dict(
        family="layer_norm_grad", fwd_inputs=fwd,
        fwd_attrs=dict(cell=c["cell"], is_training=True, time_major=c["time_major"]),
        changes={n: (k, tuple(shapes[n]), dts[n]) for n, k in changes.items()},
        attrs=dict(cell=cell, time_major=c["time_major"]), expect=valid, expected=expected,
        out_dtype=dts["x"],
        mutated=set(mutated) if len(set(mutated)) == 1 else None,
    )  # fmt: skip


# ----------------------------------------------------- KerasRNNDropout (recurrent dropout, zoneout)
# TfRnn>KerasRNNDropout (cc/ops/keras_rnn_dropout_ops.cc): projected_input [B, T, G·H] ([T, B, G·H]
# time_major; gate_major: [G, B, T, H] / [G, T, B, H]), input_h [B, H], input_c [B, H] (lstm; any
# shape else), recurrent_kernel [H, G·H],
# recurrent_bias [G·H] or [2, G·H] (any mode) or no elements, sequence_lengths [B] or [0],
# recurrent_masks [G, B, H] or no elements, zoneout_mask [T, B, H] (time-major in both layouts), a
# scalar or no elements. TfRnn>KerasRNNDropoutBackprop appends the forward's outputs, their grads
# and its reserve_space (the cell's saved buffers, T·B rows).
DROPOUT_TENSORS = (
    "projected_input", "input_h", "input_c", "recurrent_kernel", "recurrent_bias",
    "recurrent_masks", "zoneout_mask",
)  # fmt: skip
DROPOUT_INPUTS = DROPOUT_TENSORS[:5] + ("sequence_lengths",) + DROPOUT_TENSORS[5:]
DROPOUT_GRAD_INPUTS = BACKPROP_FWD_OUTPUTS + BACKPROP_GRADS + ("reserve_space",)


def _dropout_shapes(mode, B, T, H, tm, rbias, masks, zone, gm=False):  # noqa: E741
    G = GATES[mode]
    steps_batch = (T, B) if tm else (B, T)
    return dict(
        projected_input=(G, *steps_batch, H) if gm else (*steps_batch, G * H), input_h=(B, H),
        input_c=(B, H) if mode == "lstm" else (0,), recurrent_kernel=(H, G * H),
        recurrent_bias={"rows": (2, G * H), True: (G * H,), False: (0,)}[rbias],
        recurrent_masks=(G, B, H) if masks else (0,),
        zoneout_mask={"full": (T, B, H), "scalar": (), "none": (0,)}[zone],
    )  # fmt: skip


def _dropout_reserve_size(mode, T, B, H):
    """The forward's reserve length: the cell's saved buffers (tf_rnn_ops._modes.SAVED_BUFFERS)."""
    return T * B * sum(a * H + b for _, a, b in tf_rnn_ops._modes.SAVED_BUFFERS[mode])


def _dropout_check(shapes, dts, attrs, lengths, grad_of=None):
    """(validity, output shapes) of TfRnn>KerasRNNDropout; lengths: (values, shape, dtype).
    grad_of: the forward's (mode, T, B, H) for TfRnn>KerasRNNDropoutBackprop (whose outputs are
    its first five inputs' grads)."""
    mode, tm, gm = attrs["rnn_mode"], attrs["time_major"], attrs.get("gate_major", False)
    names = DROPOUT_TENSORS + (DROPOUT_GRAD_INPUTS if grad_of else ())
    if mode not in GATES:
        return INVALID, None
    if len({dts[n] for n in names}) != 1 or dts["projected_input"] not in KERAS_DTYPES:
        return INVALID, None
    values, lshape, ldt = lengths
    if ldt != "int32":
        return INVALID, None
    x, rk = shapes["projected_input"], shapes["recurrent_kernel"]
    G = GATES[mode]
    if len(rk) != 2 or rk[0] < 1 or rk[1] != G * rk[0]:
        return INVALID, None
    H = rk[0]
    if gm and (len(x) != 4 or x[0] != G or x[3] != H):
        return INVALID, None
    if not gm and (len(x) != 3 or x[2] != G * H):
        return INVALID, None
    T, B = (x[gm], x[gm + 1]) if tm else (x[gm + 1], x[gm])
    if tuple(shapes["input_h"]) != (B, H):
        return INVALID, None
    if mode == "lstm" and tuple(shapes["input_c"]) != (B, H):
        return INVALID, None
    rb = shapes["recurrent_bias"]
    if math.prod(rb) != 0 and tuple(rb) not in ((G * H,), (2, G * H)):
        return INVALID, None
    m = shapes["recurrent_masks"]
    if math.prod(m) != 0 and tuple(m) != (G, B, H):
        return INVALID, None
    z = shapes["zoneout_mask"]
    if math.prod(z) != 0 and tuple(z) not in ((), (T, B, H)):
        return INVALID, None
    if len(lshape) != 1 or lshape[0] not in (0, B):
        return INVALID, None
    if lshape[0] == B and any(v < 0 or v > T for v in values):
        return INVALID, None
    # (the kernels' buffer bound needs T·B rows of G·H: no buildable case reaches it)
    y, h, c = ((T, B, H) if tm else (B, T, H)), (B, H), ((B, H) if mode == "lstm" else ())
    if grad_of is None:
        return VALID, [y, h, c, None]
    want = dict(output=y, output_h=h, output_c=c, output_backprop=y, output_h_backprop=h,
                output_c_backprop=c)  # fmt: skip
    if any(tuple(shapes[n]) != s for n, s in want.items()):
        return INVALID, None
    if (mode, T, B, H) != grad_of:  # another model: the forward's reserve fits it only by chance
        if tuple(shapes["reserve_space"]) == (_dropout_reserve_size(mode, T, B, H),):
            return VALID, [tuple(shapes[n]) for n in DROPOUT_TENSORS[:5]]
        return INVALID, None
    if tuple(shapes["reserve_space"]) != (_dropout_reserve_size(mode, T, B, H),):
        return INVALID, None
    return VALID, [tuple(shapes[n]) for n in DROPOUT_TENSORS[:5]]


def _dropout_spec(name, shape, dt, fill):
    if name in ("recurrent_masks", "zoneout_mask") and fill == "normal":
        fill = "binary" if shape != () else "keep"
    return _t(shape, dt, fill)


@st.composite
def dropout_config(draw, small=False):
    mode = draw(st.sampled_from(sorted(GATES)))
    B, T, H = draw(st.integers(0, 3)), draw(st.integers(0, 4)), draw(st.integers(1, 4))
    if not small and draw(st.integers(0, 12)) == 0:  # huge but empty: B = 0, T huge
        B, T = 0, draw(st.sampled_from(HUGE))
    return dict(
        mode=mode, B=B, T=T, H=H, time_major=draw(st.booleans()), gate_major=draw(st.booleans()),
        rbias=draw(st.sampled_from([False, True, "rows"])), masks=draw(st.booleans()),
        zone=draw(st.sampled_from(["none", "scalar", "full"] if T < 2**20 else ["none", "scalar"])),
        dtype=draw(st.sampled_from(["float32"] * 3 + ["float64"])),
        is_training=small or draw(st.booleans()),
    )  # fmt: skip


def _dropout_mask_mutation(draw, shapes, c):
    """A recurrent or zoneout mask of a plausible wrong shape; returns its name."""
    G, B, T, H = GATES[c["mode"]], c["B"], c["T"], c["H"]
    if draw(st.booleans()):
        shapes["recurrent_masks"] = draw(
            st.sampled_from(
                [(B, G, H), (G * B * H,), (G, B, H, 1), (1, B, H), (G, B, H + 1), (G + 1, B, H)]
            )
        )
        return "recurrent_masks"
    shapes["zoneout_mask"] = draw(
        st.sampled_from(
            [(B, T, H), (1,), (T, B), (T, B, H, 1), (T * B * H,), (T + 1, B, H), (T, B, 2 * H)]
        )
    )
    return "zoneout_mask"


@st.composite
def keras_rnn_dropout_cases(draw):
    """Forward cases of TfRnn>KerasRNNDropout (the generated op: every input as given)."""
    c = draw(dropout_config())
    shapes = _dropout_shapes(c["mode"], c["B"], c["T"], c["H"], c["time_major"], c["rbias"],
                             c["masks"], c["zone"], c["gate_major"])  # fmt: skip
    if c["mode"] != "lstm" and draw(st.integers(0, 3)) == 0:  # input_c is not read: any shape
        shapes["input_c"] = draw(random_shape(max_rank=3))
    dts = dict.fromkeys(DROPOUT_TENSORS, c["dtype"])
    fill = {n: draw(fills) if draw(st.integers(0, 7)) == 0 else "normal" for n in DROPOUT_TENSORS}
    attrs = dict(rnn_mode=c["mode"], time_major=c["time_major"], is_training=c["is_training"],
                 gate_major=c["gate_major"])  # fmt: skip
    lengths = draw(lengths_for(c["B"], c["T"])) if draw(st.integers(0, 3)) else []
    lshape, ldt = (len(lengths),), "int32"
    mutated = []
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        what = draw(st.sampled_from(["tensor"] * 3 + ["mask", "lengths", "attr", "dtype", "gm"]))
        if what == "mask":
            mutated.append(_dropout_mask_mutation(draw, shapes, c))
            continue
        if what == "gm":  # the other layout's reading of the same projected_input
            attrs["gate_major"] = not attrs["gate_major"]
            mutated.append("gate_major")
            continue
        n, (lengths, lshape, ldt) = _mutate_keras_case(
            draw, what, DROPOUT_TENSORS, shapes, dts, attrs, (lengths, lshape, ldt), c["T"], c["B"]
        )
        mutated.append(n)
    valid, expected = _dropout_check(shapes, dts, attrs, (lengths, lshape, ldt))
    if valid == VALID and not c["is_training"]:
        expected[3] = (0,)
    inputs = {n: _dropout_spec(n, shapes[n], dts[n], fill[n]) for n in DROPOUT_TENSORS}
    inputs["sequence_lengths"] = _int_t(lengths, lshape, ldt)
    return dict(
        family="keras_rnn_dropout", inputs=inputs, attrs=attrs, expect=valid, expected=expected,
        out_dtype=dts["projected_input"],
        mutated=set(mutated) if len(set(mutated)) == 1 else None,
    )  # fmt: skip


def _mutate_backprop_inputs(draw, names, shapes, dts, attrs, lspec, r0, T, B, mask=None):
    """0-2 mutations, in place, of a Keras-layout backprop op's case (the forward's inputs, its
    outputs, their grads and reserve_space): a tensor's shape or dtype, the lengths, the reserve
    (one element more or less, empty, same-size NaN/Inf, an inference forward's), an attr, NaN
    contents; `mask(draw)` (or None): a mask's plausible wrong shape, returning its name. Returns
    (changes {name: kind}, mutated names, the lengths spec)."""
    changes, mutated = {}, []
    lengths = lspec[0]
    kinds = ["tensor"] * 4 + ["lengths", "reserve", "attr", "fill"] + (["mask"] if mask else [])
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        what = draw(st.sampled_from(kinds))
        if what == "tensor":
            n = draw(st.sampled_from(names))
            if draw(st.integers(0, 6)) == 0:
                dts[n] = draw(st.sampled_from(["float32", "float64", "float16", "int32"]))
            else:
                shapes[n] = _mutate_shape(draw, shapes[n])
            changes[n] = "shape"
            mutated.append(n)
        elif what == "mask":
            n = mask(draw)
            changes[n] = "shape"
            mutated.append(n)
        elif what == "lengths":
            lspec = _mutate_lengths(draw, lengths or [T] * B, T)
            changes["sequence_lengths"] = "lengths"
            mutated.append("sequence_lengths")
        elif what == "reserve":
            k = draw(st.sampled_from([-1, 1, "empty", "garbage", "inference"]))
            if k == "inference":
                shapes["reserve_space"] = (0,)
            elif k == "empty":
                shapes["reserve_space"] = (0 if r0 else 1,)
            elif k != "garbage":
                shapes["reserve_space"] = (r0 + k,) if r0 + k >= 0 else (r0 + 1,)
            changes["reserve_space"] = "garbage" if k == "garbage" else "shape"
            mutated.append("reserve_space")
        elif what == "attr":
            if draw(st.booleans()):
                attrs["time_major"] = not attrs["time_major"]
                mutated.append("time_major")
            else:
                attrs["rnn_mode"] = draw(st.sampled_from(["bogus"] + sorted(GATES)))
                mutated.append("rnn_mode")
        else:
            changes[draw(st.sampled_from(["output_backprop", "reserve_space"]))] = "garbage"
    return changes, mutated, lspec


@st.composite
def keras_rnn_dropout_backprop_cases(draw):
    """TfRnn>KerasRNNDropoutBackprop fed a valid training forward's inputs, outputs and reserve
    (run here) and output grads of the outputs' shapes; then 0-2 mutations: any input's shape or
    dtype, a mask's plausible wrong shape, the lengths, the reserve (one element more or less,
    empty, same-size NaN/Inf, an inference forward's), rnn_mode, time_major or
    skip_state_backprop."""
    c = draw(dropout_config(small=True))
    T, B, H, mode = c["T"], c["B"], c["H"], c["mode"]
    shapes = _dropout_shapes(mode, B, T, H, c["time_major"], c["rbias"], c["masks"], c["zone"],
                             c["gate_major"])  # fmt: skip
    fwd = {n: _dropout_spec(n, shapes[n], c["dtype"], "normal") for n in DROPOUT_TENSORS}
    lengths = draw(lengths_for(B, T)) if draw(st.booleans()) else []
    fwd["sequence_lengths"] = _int_t(lengths)
    y = (T, B, H) if c["time_major"] else (B, T, H)
    cs = (B, H) if mode == "lstm" else ()
    r0 = _dropout_reserve_size(mode, T, B, H)
    shapes.update(output=y, output_h=(B, H), output_c=cs, output_backprop=y,
                  output_h_backprop=(B, H), output_c_backprop=cs, reserve_space=(r0,))  # fmt: skip
    names = DROPOUT_TENSORS + DROPOUT_GRAD_INPUTS
    dts = dict.fromkeys(names, c["dtype"])
    attrs = dict(rnn_mode=mode, time_major=c["time_major"], skip_state_backprop=draw(st.booleans()),
                 gate_major=c["gate_major"])  # fmt: skip
    lspec = (lengths, (len(lengths),), "int32")
    changes, mutated, lspec = _mutate_backprop_inputs(
        draw, names, shapes, dts, attrs, lspec, r0, T, B,
        mask=lambda draw: _dropout_mask_mutation(draw, shapes, c),
    )  # fmt: skip
    valid, expected = _dropout_check(shapes, dts, attrs, lspec, grad_of=(mode, T, B, H))
    change_specs = {
        n: ("lengths", _int_t(*lspec), None) if k == "lengths" else (k, tuple(shapes[n]), dts[n])
        for n, k in changes.items()
    }
    return dict(
        family="keras_rnn_dropout_backprop", fwd_inputs=fwd,
        fwd_attrs=dict(rnn_mode=mode, time_major=c["time_major"], is_training=True,
                       gate_major=c["gate_major"]),  # fmt: skip
        changes=change_specs, attrs=attrs, expect=valid, expected=expected,
        out_dtype=dts["projected_input"],
        mutated=set(mutated) if len(set(mutated)) == 1 else None,
    )  # fmt: skip


# ---------------------------------------------------------------------------- KerasRNNBackprop
# TfRnn>KerasRNNBackprop (cc/ops/fused_rnn_ops.cc): TfRnn>KerasRNN's seven inputs, then its outputs,
# their grads and its reserve_space; outputs the grads of the first six in their shapes.
KERAS_BP_INPUTS = KERAS_TENSORS + DROPOUT_GRAD_INPUTS


def _keras_backprop_check(shapes, dts, attrs, lengths, grad_of):
    """(validity, output shapes) of TfRnn>KerasRNNBackprop (grad_of: the forward's (mode, T, B,
    H); another model's reserve of the same size is valid: the same layout)."""
    if len({dts[n] for n in KERAS_BP_INPUTS}) != 1:
        return INVALID, None
    valid, fexp = _keras_check(shapes, dts, attrs, lengths)
    if valid != VALID:
        return INVALID, None
    y, h, c = fexp[:3]
    want = dict(output=y, output_h=h, output_c=c, output_backprop=y, output_h_backprop=h,
                output_c_backprop=c)  # fmt: skip
    if any(tuple(shapes[n]) != tuple(s) for n, s in want.items()):
        return INVALID, None
    mode = attrs["rnn_mode"]
    H = shapes["recurrent_kernel"][0]
    T, B = (y[0], y[1]) if attrs["time_major"] else (y[1], y[0])
    if tuple(shapes["reserve_space"]) != (_dropout_reserve_size(mode, T, B, H),):
        return INVALID, None
    return VALID, [tuple(shapes[n]) for n in KERAS_TENSORS]


@st.composite
def keras_rnn_backprop_cases(draw):
    """TfRnn>KerasRNNBackprop fed a valid training forward's inputs, outputs and reserve (run
    here) and output grads of the outputs' shapes; then 0-2 mutations: any input's shape or dtype,
    the lengths, the reserve (one element more or less, empty, same-size NaN/Inf, an inference
    forward's), rnn_mode, time_major, skip_input_backprop or skip_state_backprop."""
    c = draw(keras_config(small=True))
    T, B, H, mode = c["T"], c["B"], c["H"], c["mode"]
    shapes = _keras_shapes(mode, B, T, c["I"], H, c["time_major"], c["bias"])
    fwd = {n: _t(shapes[n], c["dtype"]) for n in KERAS_TENSORS}
    lengths = draw(lengths_for(B, T)) if draw(st.booleans()) else []
    fwd["sequence_lengths"] = _int_t(lengths)
    y = (T, B, H) if c["time_major"] else (B, T, H)
    cs = (B, H) if mode == "lstm" else ()
    r0 = _dropout_reserve_size(mode, T, B, H)
    shapes.update(output=y, output_h=(B, H), output_c=cs, output_backprop=y,
                  output_h_backprop=(B, H), output_c_backprop=cs, reserve_space=(r0,))  # fmt: skip
    dts = dict.fromkeys(KERAS_BP_INPUTS, c["dtype"])
    attrs = dict(rnn_mode=mode, time_major=c["time_major"], skip_input_backprop=draw(st.booleans()),
                 skip_state_backprop=draw(st.booleans()))  # fmt: skip
    lspec = (lengths, (len(lengths),), "int32")
    changes, mutated, lspec = _mutate_backprop_inputs(
        draw, KERAS_BP_INPUTS, shapes, dts, attrs, lspec, r0, T, B
    )
    valid, expected = _keras_backprop_check(shapes, dts, attrs, lspec, (mode, T, B, H))
    change_specs = {
        n: ("lengths", _int_t(*lspec), None) if k == "lengths" else (k, tuple(shapes[n]), dts[n])
        for n, k in changes.items()
    }
    return dict(
        family="keras_rnn_backprop", fwd_inputs=fwd,
        fwd_attrs=dict(rnn_mode=mode, time_major=c["time_major"], is_training=True),
        changes=change_specs, attrs=attrs, expect=valid, expected=expected,
        out_dtype=dts["input"], mutated=set(mutated) if len(set(mutated)) == 1 else None,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ running
def _op_fn(family):
    """(callable taking the inputs and attrs as keywords, input names, attr names)."""
    raw = tf.raw_ops
    table = {
        "gru": tf_rnn_ops.gru_block_cell,
        "gru_grad": tf_rnn_ops.gru_block_cell_grad,
        "cudnn": tf_rnn_ops.cudnn_rnn,
        "tf_cudnn_v3": raw.CudnnRNNV3,
        "tf_cudnn_v2": raw.CudnnRNNV2,
        "tf_cudnn_v1": raw.CudnnRNN,
        "cudnn_backprop": tf_rnn_ops.cudnn_rnn_backprop,
        "tf_backprop_v3": raw.CudnnRNNBackpropV3,
        "params_size": tf_rnn_ops.cudnn_rnn_params_size,
        "tf_params_size": raw.CudnnRNNParamsSize,
        "to_canonical": tf_rnn_ops.cudnn_rnn_params_to_canonical,
        "tf_to_canonical": raw.CudnnRNNParamsToCanonicalV2,
        "to_params": tf_rnn_ops.cudnn_rnn_canonical_to_params,
        "tf_to_params": raw.CudnnRNNCanonicalToParamsV2,
        "keras_rnn": tf_rnn_ops.keras_rnn,
        "keras_rnn_grad": _keras_grad_fn(np.random.default_rng(1)),
        "layer_norm": _ln_op("tf_rnn_layer_norm_rnn"),
        "layer_norm_grad": _ln_op("tf_rnn_layer_norm_rnn_grad"),
        "keras_rnn_dropout": lambda **kw: _ops().tf_rnn_keras_rnn_dropout(**kw),
        "keras_rnn_dropout_backprop": lambda **kw: _ops().tf_rnn_keras_rnn_dropout_backprop(**kw),
        "keras_rnn_backprop": lambda **kw: _ops().tf_rnn_keras_rnn_backprop(**kw),
    }
    return table[family]


NAMES = sorted(
    set(GRU_GRAD_INPUTS + RNN_TENSORS + RNN_ATTRS + BACKPROP_FWD_OUTPUTS + BACKPROP_GRADS)
    | {"sequence_lengths", "reserve_space", "host_reserved", "num_layers", "num_units",
       "input_size", "weights", "biases", "num_params_weights", "num_params_biases", "T", "S",
       "is_training", "time_major", "params_size", "batch", "num_dirs", "cell"}
    | set(KERAS_TENSORS + LN_INPUTS + LN_GRAD_INPUTS + DROPOUT_INPUTS + (LN_RECURRENT_MASK,)),
    key=len, reverse=True,
)  # fmt: skip


def _core_message(msg: str) -> str:
    """The message without TensorFlow's framing (function/node names, op names, input shapes)."""
    msg = re.sub(r"\{\{function_node [^}]*\}\}", "", msg)
    msg = re.sub(r"\{\{node [^}]*\}\}.*", "", msg, flags=re.S)
    msg = re.sub(r" for '.*", "", msg, flags=re.S)
    msg = re.sub(r"\[Op:[^\]]*\].*", "", msg, flags=re.S)
    return msg


def names_in(msg: str) -> set[str]:
    core = _core_message(msg)
    found = set()
    for n in NAMES:
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", core):
            found.add(n)
    m = re.search(r"input #?(\d+)", core)  # TensorFlow's own "input #2(zero-based)" / "input 2"
    if m:
        found.add(f"#{m.group(1)}")
    found.update(re.findall(r"attr '(\w+)'", core))  # TensorFlow's "Value for attr 'T' of ..."
    return found


# Names that may stand for one another in a message about a mutated input or attribute.
ALIASES = {
    "input": {"input", "input_size", "batch", "sequence_lengths"},
    "input_h": {"input_h", "num_units", "params", "num_proj", "input_c", "batch", "num_dirs"},
    "input_c": {"input_c", "input_h", "num_units", "params", "num_proj"},
    "params": {"params", "num_units", "input_size", "input_h"},
    "direction": {"direction", "input_h", "params", "num_dirs"},
    "input_mode": {"input_mode", "params", "input_size", "num_units"},
    "rnn_mode": {"rnn_mode", "params", "num_proj"},
    "num_proj": {"num_proj", "input_h", "params", "rnn_mode"},
    "time_major": {
        "time_major",
        "input_h",
        "input",
        "params",
        "input_c",
        "batch",
        "output",
        "output_backprop",
        "sequence_lengths",
    },
    "output": {"output", "output_backprop"},
    "output_h": {"output_h", "input_h"},
    "output_c": {"output_c", "input_c"},
    "output_backprop": {"output_backprop", "output"},
    "output_h_backprop": {"output_h_backprop", "input_h", "output_h"},
    "output_c_backprop": {"output_c_backprop", "input_c"},
    "dropout": {"dropout", "reserve_space"},
    "reserve_space": {"reserve_space"},
    "num_params_weights": {"num_params_weights", "weights"},
    "num_params_biases": {"num_params_biases", "biases"},
    "num_layers": {"num_layers", "params"},
    "num_units": {"num_units", "params", "num_proj", "input_mode"},
    "input_size": {"input_size", "params", "input_mode"},
    "weights": {"weights"},
    "biases": {"biases"},
}


# The same for the KerasRNN and LayerNormRnn families: a dimension read from one input is checked
# against the others (recurrent_kernel sets H; input / x set T, B, I).
_LN_H = {
    "recurrent_kernel",
    "kernel",
    "h0",
    "c0",
    "bias",
    "recurrent_bias",
    "gamma_x",
    "beta_x",
    "gamma_h",
    "beta_h",
    "gamma_c",
    "beta_c",
    "zoneout_mask",
    "reserve",
    "dy",
    "dhn",
    "dcn",
}
_KERAS_ALIASES = {
    "input": {"input", "input_h", "input_c", "kernel", "sequence_lengths", "input_size", "batch"},
    "input_h": {"input_h", "input_c"},
    "input_c": {"input_c", "input_h"},
    "kernel": {"kernel", "input_size"},
    "recurrent_kernel": {"recurrent_kernel", "kernel", "input_h", "input_c", "bias", "num_units"},
    "time_major": {"time_major", "input", "input_h", "input_c", "kernel", "sequence_lengths"},
    "rnn_mode": {"rnn_mode", "recurrent_kernel", "kernel", "bias", "input_c"},
    "output": {"output", "output_backprop"},
    "output_h": {"output_h", "output_h_backprop", "input_h"},
    "output_c": {"output_c", "output_c_backprop", "input_c"},
}
_LN_ALIASES = {
    "x": {"x", "kernel", "h0", "c0", "mask", "zoneout_mask", "reserve", "dy", "dhn", "dcn"},
    "recurrent_kernel": _LN_H,
    "cell": {"cell", "recurrent_kernel"},
    "time_major": {"time_major", "x", "h0", "c0", "mask", "zoneout_mask", "recurrent_mask", "dy"},
}
# KerasRNNDropout: recurrent_kernel sets H (and G·H), projected_input T and B; the backprop then
# checks the forward's outputs and reserve against them.
_DROPOUT_B = {"input_h", "input_c", "recurrent_masks", "zoneout_mask", "sequence_lengths"}
_DROPOUT_ALIASES = {
    "projected_input": {"projected_input"} | _DROPOUT_B,
    "recurrent_kernel": {"recurrent_kernel", "projected_input", "recurrent_bias", "num_units"}
    | _DROPOUT_B,
    "time_major": {"time_major", "projected_input"} | _DROPOUT_B,
    "rnn_mode": {"rnn_mode", "recurrent_kernel", "projected_input", "recurrent_bias", "input_c"},
    "input_h": {"input_h", "input_c"},
    "input_c": {"input_c", "input_h"},
}
_DROPOUT_OUTS = set(DROPOUT_GRAD_INPUTS)
_DROPOUT_GRAD_ALIASES = {k: v | _DROPOUT_OUTS for k, v in _DROPOUT_ALIASES.items()} | {
    n: _DROPOUT_OUTS | {"input_h", "input_c"} for n in DROPOUT_TENSORS[4:] + ("sequence_lengths",)
}  # a mask or bias of another shape may be another model's: then the outputs no longer fit
# KerasRNNBackprop: the forward's inputs set the model, then the outputs and reserve must fit it.
_KERAS_OUTS = set(DROPOUT_GRAD_INPUTS)
_KERAS_GRAD_ALIASES = {k: v | _KERAS_OUTS for k, v in _KERAS_ALIASES.items()} | {
    n: _KERAS_OUTS | {"input_h", "input_c"} for n in ("bias", "sequence_lengths")
}
FAMILY_ALIASES = {
    "keras_rnn": _KERAS_ALIASES, "keras_rnn_grad": _KERAS_ALIASES,
    "layer_norm": _LN_ALIASES, "layer_norm_grad": _LN_ALIASES,
    "keras_rnn_dropout": _DROPOUT_ALIASES, "keras_rnn_dropout_backprop": _DROPOUT_GRAD_ALIASES,
    "keras_rnn_backprop": _KERAS_GRAD_ALIASES,
}  # fmt: skip


class Failure(AssertionError):
    pass


def _flatten(out):
    if isinstance(out, tf.Tensor):
        return [out]
    flat = []
    for o in out:
        flat += _flatten(o) if isinstance(o, (list, tuple)) else [o]
    return flat


def _shape_of(t):
    return tuple(int(d) for d in t.shape)


class Runner:
    def __init__(self, last_case_path=None, graph=True):
        self.rng = np.random.default_rng(0)
        self.graph = graph
        self.last = open(last_case_path, "w") if last_case_path else None  # noqa: SIM115
        self.stats = {}

    def _note(self, case, stage):
        if self.last:
            self.last.seek(0)
            self.last.truncate()
            self.last.write(f"{stage}: {case!r}\n")
            self.last.flush()

    def _count(self, family, outcome):
        d = self.stats.setdefault(family, {})
        d[outcome] = d.get(outcome, 0) + 1

    def check_error(self, case, e, where):
        if not isinstance(e, ERRORS):
            raise Failure(f"{where}: {type(e).__name__} is not one of {ERRORS}: {e}")
        found = names_in(str(e))
        if not found:
            raise Failure(
                f"{where}: the error names no input or attribute: {type(e).__name__}: {e}"
            )
        mutated = case.get("mutated")
        if mutated and where == "eager":
            (m,) = mutated
            aliases = FAMILY_ALIASES.get(case["family"], ALIASES)
            allowed = aliases.get(m, {m}) | {m, "T"}  # "T": TensorFlow's dtype-attr message
            if not (found & allowed) and not any(f.startswith("#") for f in found):
                raise Failure(
                    f"{where}: mutated {m!r} but the error names {sorted(found)}: "
                    f"{type(e).__name__}: {_core_message(str(e))}"
                )

    def run(self, case):
        family = case["family"]
        key = zlib.crc32(repr(case).encode())
        self.rng = np.random.default_rng(key)  # values and graph shapes: a function of the case
        self.graph_mode = key % 3
        fn = _op_fn(family)
        self._note(case, "build")
        if family in ("cudnn_backprop", "tf_backprop_v3"):
            kwargs, case = self._backprop_kwargs(case)
            if kwargs is None:
                return
        elif family == "layer_norm_grad":
            kwargs = self._ln_grad_kwargs(case)
        elif family in ("keras_rnn_dropout_backprop", "keras_rnn_backprop"):
            kwargs = self._dropout_grad_kwargs(case)
        else:
            try:
                kwargs = {n: build(s, self.rng) for n, s in case["inputs"].items()}
            except tf.errors.InvalidArgumentError:  # e.g. [2^62, 2, 0]: TensorFlow's Fill refuses
                reject()
            kwargs.update(case["attrs"])
            if family == "keras_rnn_grad":
                kwargs.update(_watch=case["watch"], _upstream=case["upstream"])
        self._note(case, "eager")
        try:
            out = fn(**kwargs)
            out = _flatten(out)
            err = None
        except UnsatisfiedAssumption:  # fn built a tensor TensorFlow refuses (keras_rnn_grad's
            raise  # upstream grads, built after the forward): no case, as for the inputs above
        except Exception as e:  # noqa: BLE001 - every exception is judged below
            out, err = None, e
        expect = case["expect"]
        if err is not None:
            self._count(family, "error")
            if expect == VALID:
                raise Failure(f"eager: a valid case was refused: {type(err).__name__}: {err}")
            self.check_error(case, err, "eager")
        else:
            self._count(family, "ok")
            if expect == INVALID:
                shapes = [_shape_of(o) for o in out]
                raise Failure(f"eager: an invalid case was accepted; output shapes {shapes}")
            self._check_outputs(case, out)
        if self.graph and family not in ("cudnn_backprop", "tf_backprop_v3", "keras_rnn_grad"):
            self._note(case, "graph")
            self._graph(case, fn, kwargs, out, err)

    def _check_outputs(self, case, out):
        expected = case.get("expected")
        if expected is None:
            return
        got = [_shape_of(o) for o in out]
        if len(got) != len(expected):
            raise Failure(f"eager: {len(got)} outputs, expected {len(expected)}")
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            if e is None:  # reserve_space / host_reserved: any 1-D
                if len(g) != 1:
                    raise Failure(f"eager: output {i} has shape {g}, expected 1-D")
                continue
            if tuple(g) != tuple(e):
                raise Failure(f"eager: output {i} has shape {g}, expected {tuple(e)}")
        want_dt = case.get("out_dtype")
        if want_dt and case["family"] not in ("params_size", "tf_params_size"):
            for i, o in enumerate(out):
                if o.dtype.name not in (want_dt, "int8"):
                    raise Failure(f"eager: output {i} has dtype {o.dtype.name}, not {want_dt}")
        if case.get("value") is not None:
            v = int(out[0].numpy()[0])
            if v != case["value"]:
                raise Failure(f"params_size returned {v}, expected {case['value']}")
            if out[0].dtype.name != case["attrs"]["S"]:
                raise Failure(f"params_size has dtype {out[0].dtype.name}")

    def _graph(self, case, fn, kwargs, eager_out, eager_err):
        """Builds the op from placeholders (shape inference only) and compares with eager."""
        mode = self.graph_mode  # 0 full shapes, 1 some dims unknown, 2 unknown rank

        def ph(t):
            if isinstance(t, list):
                return [ph(x) for x in t]
            if not isinstance(t, tf.Tensor):
                return t
            shape = list(t.shape)
            if mode == 1:
                shape = [None if self.rng.integers(0, 2) else d for d in shape]
            elif mode == 2:
                shape = None
            if t.dtype in (tf.int32, tf.int64) and t.shape.rank == 0 and mode == 0:
                return tf.constant(t.numpy(), dtype=t.dtype)  # scalars known as constants
            return tf.compat.v1.placeholder(t.dtype, shape)

        g = tf.Graph()
        try:
            with g.as_default():
                gk = {k: ph(v) for k, v in kwargs.items()}
                gout = _flatten(fn(**gk))
            gerr = None
        except Exception as e:  # noqa: BLE001
            gout, gerr = None, e
        if gerr is not None:
            self._count(case["family"], "graph_error")
            if eager_err is None:
                raise Failure(
                    f"graph (shape mode {mode}): refused a case the kernel accepts: "
                    f"{type(gerr).__name__}: {gerr}"
                )
            if not case["family"].startswith("tf_"):
                self.check_error(dict(case, mutated=None), gerr, "graph")
            elif not isinstance(gerr, ERRORS):
                raise Failure(f"graph: {type(gerr).__name__}: {gerr}")
            return
        if eager_out is not None:
            if len(gout) != len(eager_out):
                raise Failure(f"graph: {len(gout)} outputs, eager {len(eager_out)}")
            for i, (s, o) in enumerate(zip(gout, eager_out, strict=True)):
                if not s.shape.is_compatible_with(o.shape):
                    raise Failure(
                        f"graph (shape mode {mode}): static shape of output {i} {s.shape} is not "
                        f"compatible with the eager result {o.shape}"
                    )

    def _ln_grad_kwargs(self, case):
        """The grad op's inputs: the forward's, its reserve, dy / dhn / dcn; then the changes."""
        kw = {n: build(s, self.rng) for n, s in case["fwd_inputs"].items()}
        y, hn, cn, reserve = _ln_op("tf_rnn_layer_norm_rnn")(**kw, **case["fwd_attrs"])
        kw.update(
            reserve=reserve,
            dy=build(_t(_shape_of(y), y.dtype.name), self.rng),
            dhn=build(_t(_shape_of(hn), y.dtype.name), self.rng),
            dcn=tf.ones_like(cn),
        )
        for n, (kind, shape, dt) in case["changes"].items():
            if kind == "garbage":
                kw[n] = build(_t(shape, dt, "nonfinite"), self.rng)
            elif n == "epsilon":
                kw[n] = build(("f", [1e-3] * math.prod(shape), shape, dt), self.rng)
            elif tuple(shape) != _shape_of(kw[n]):
                kw[n] = build(_t(shape, dt), self.rng)
            else:
                kw[n] = tf.cast(kw[n], dt)
        kw.update(case["attrs"])
        return kw

    def _dropout_grad_kwargs(self, case):
        """The backprop's inputs: the forward's, its outputs and reserve, output grads; then the
        changes."""
        kw = {n: build(s, self.rng) for n, s in case["fwd_inputs"].items()}
        forward = (
            _ops().tf_rnn_keras_rnn
            if case["family"] == "keras_rnn_backprop"
            else _ops().tf_rnn_keras_rnn_dropout
        )
        y, hn, cn, reserve = forward(**kw, **case["fwd_attrs"])
        kw.update(
            output=y, output_h=hn, output_c=cn, reserve_space=reserve,
            output_backprop=build(_t(_shape_of(y), y.dtype.name), self.rng),
            output_h_backprop=build(_t(_shape_of(hn), y.dtype.name), self.rng),
            output_c_backprop=tf.ones_like(cn),
        )  # fmt: skip
        for n, (kind, shape, dt) in case["changes"].items():
            if kind == "lengths":
                kw[n] = build(shape, self.rng)
            elif kind == "garbage":
                kw[n] = build(_t(shape, dt, "nonfinite"), self.rng)
            elif tuple(shape) != _shape_of(kw[n]):
                kw[n] = build(_dropout_spec(n, shape, dt, "normal"), self.rng)
            else:
                kw[n] = tf.cast(kw[n], dt)
        kw.update(case["attrs"])
        return kw

    def _backprop_kwargs(self, case):
        fwd = {n: build(s, self.rng) for n, s in case["fwd_inputs"].items()}
        fam_fwd = (
            tf_rnn_ops.cudnn_rnn if case["family"] == "cudnn_backprop" else tf.raw_ops.CudnnRNNV3
        )
        outs = fam_fwd(**fwd, **case["fwd_attrs"])
        output, output_h, output_c, reserve, host = outs
        kw = dict(fwd)
        kw.update(output=output, output_h=output_h, output_c=output_c,
                  output_backprop=tf.ones_like(output), output_h_backprop=tf.ones_like(output_h),
                  output_c_backprop=tf.ones_like(output_c), reserve_space=reserve,
                  host_reserved=host)  # fmt: skip
        dt = output.dtype
        for n, (kind, v) in case["changes"].items():
            if kind == "shape":
                kw[n] = build(_t(v, dt.name), self.rng)
            elif kind == "dtype":
                kw[n] = tf.cast(kw[n], v)
            elif kind == "fill":
                kw[n] = build(_t(_shape_of(kw[n]), dt.name, "nonfinite"), self.rng)
            elif kind == "reserve":
                r = kw["reserve_space"]
                n_r = int(r.shape[0])
                if v == "host_reserved":
                    kw["host_reserved"] = tf.zeros([3], tf.int8)
                elif v == "empty":
                    kw["reserve_space"] = tf.zeros([0 if n_r else 1], dt)
                elif v == "same_size_garbage":
                    kw["reserve_space"] = build(_t((n_r,), dt.name, "nonfinite"), self.rng)
                else:
                    kw["reserve_space"] = tf.zeros([n_r + v if n_r + v >= 0 else n_r + 1], dt)
        kw.update(case["attrs"])
        expect, expected = _backprop_expect(case, None)
        case = dict(case, expect=expect, expected=expected, out_dtype=dt.name)
        return kw, case


FAMILIES = {
    "gru": lambda: gru_cases(),
    "gru_grad": lambda: gru_cases(grad=True),
    "cudnn": lambda: cudnn_cases("ours"),
    "cudnn_backprop": lambda: backprop_cases("ours"),
    "params_size": lambda: params_size_cases("ours"),
    "to_canonical": lambda: canonical_cases(False, "ours"),
    "to_params": lambda: canonical_cases(True, "ours"),
    "tf_cudnn_v3": lambda: cudnn_cases("v3"),
    "tf_cudnn_v2": lambda: cudnn_cases("v2"),
    "tf_cudnn_v1": lambda: cudnn_cases("v1"),
    "tf_backprop_v3": lambda: backprop_cases("tf"),
    "tf_params_size": lambda: params_size_cases("tf"),
    "tf_to_canonical": lambda: canonical_cases(False, "tf"),
    "tf_to_params": lambda: canonical_cases(True, "tf"),
    "keras_rnn": lambda: keras_rnn_cases(),
    "keras_rnn_grad": lambda: keras_rnn_grad_cases(),
    "layer_norm": lambda: layer_norm_cases(),
    "layer_norm_grad": lambda: layer_norm_grad_cases(),
    "keras_rnn_dropout": lambda: keras_rnn_dropout_cases(),
    "keras_rnn_dropout_backprop": lambda: keras_rnn_dropout_backprop_cases(),
    "keras_rnn_backprop": lambda: keras_rnn_backprop_cases(),
}


def _under_asan() -> bool:
    with open("/proc/self/maps") as f:
        return "libasan" in f.read()


def bound_memory(headroom_mb: int) -> str:
    """Limits the address space to what is mapped now plus headroom_mb MiB; says what it did."""
    if headroom_mb <= 0:
        return "memory: no limit (--headroom-mb 0)"
    if _under_asan():
        return "memory: no RLIMIT_AS under AddressSanitizer"
    # TensorFlow's thread pools (their stacks and malloc arenas) and every kernel come up first.
    import workloads

    for fn in list(workloads.SMALL.values()) + [workloads.MEDIUM["cudnn_rnn_backprop_lstm"]]:
        fn(0)
    limit = psutil.Process().memory_info().vms + (headroom_mb << 20)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return f"memory: address space limited to {limit >> 20} MiB ({headroom_mb} MiB headroom)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=50, help="cases per op family")
    ap.add_argument("--ops", default="all", help="comma-separated families, or 'all'")
    ap.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    ap.add_argument("--last-case", default=None, help="file to hold the case being run")
    ap.add_argument("--no-graph", action="store_true", help="skip the graph-construction checks")
    ap.add_argument(
        "--headroom-mb",
        type=int,
        default=int(os.environ.get("TF_RNN_OPS_FUZZ_HEADROOM_MB", 4096)),
        help="address space allowed past what TensorFlow maps at start (0: no limit)",
    )
    args = ap.parse_args(argv)
    families = list(FAMILIES) if args.ops == "all" else args.ops.split(",")
    the_seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(
        f"fuzz_ops: seed {the_seed}, {args.examples} cases x {len(families)} families", flush=True
    )
    print(bound_memory(args.headroom_mb), flush=True)
    runner = Runner(args.last_case, graph=not args.no_graph)
    failed = []
    for fam in families:
        strategy = FAMILIES[fam]()

        @seed(the_seed)
        @settings(
            max_examples=args.examples, deadline=None, database=None, derandomize=False,
            suppress_health_check=list(HealthCheck), print_blob=True,
        )  # fmt: skip
        @given(case=strategy)
        def prop(case):
            runner.run(case)

        try:
            prop()
            print(f"  {fam}: ok {runner.stats.get(fam, {})}", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"  {fam}: FAILED: {type(e).__name__}: {e}", flush=True)
            for sub in getattr(e, "exceptions", [e]):
                print(f"    - {type(sub).__name__}: {sub}", flush=True)
                if not isinstance(sub, Failure):  # a bug of this program, or an unexpected error
                    print("".join(traceback.format_exception(sub))[-3000:], flush=True)
                for note in getattr(sub, "__notes__", []):
                    print(f"      {note}", flush=True)
            failed.append(fam)
    if failed:
        print(f"fuzz_ops: property failures in {failed} (seed {the_seed})", flush=True)
        return 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
    print(f"fuzz_ops: all properties held (peak RSS {peak} MiB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
