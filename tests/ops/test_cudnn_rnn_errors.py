"""Malformed input to the fused RNN ops: each an InvalidArgumentError (or, from a shape function in
graph mode, a ValueError) whose message names the problem; never a crash."""

from __future__ import annotations

import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf

import tf_rnn_ops

ERRORS = (tf.errors.InvalidArgumentError, ValueError)
# lstm, 2 layers, bidirectional, H=3, I=2, B=3, T=4, time-major
L, D, H, I, B, T = 2, 2, 3, 2, 3, 4  # noqa: E741


def _valid(mode="lstm", direction="bidirectional", **kw):
    rng = np.random.default_rng(0)
    p = ref.Problem(rng, mode, L, H, I, B, T, direction, lengths=[4, 0, 2], **kw)
    return p.op_kwargs(tf.float32, is_training=True)


def _f(shape, value=0.5):
    return tf.fill(shape, tf.constant(value, tf.float32))


def _params_size(**kw):
    cfg = dict(mode="lstm", num_layers=L, num_units=H, input_size=I, direction="bidirectional")
    cfg.update(kw)
    return ref.params_size(**cfg)


# "input" by itself (not input_h, input_c, input_size, nor TensorFlow's "with input shapes")
INPUT = r"\binput\b(?!_| shapes)"

# (id, changes to the valid kwargs, regex the message must match)
CASES = [
    ("input_rank2", dict(input=_f([T, B])), INPUT),
    ("input_rank4", dict(input=_f([T, B, I, 1])), INPUT),
    ("input_h_rank2", dict(input_h=_f([D * L, B])), r"input_h"),
    ("input_c_rank2", dict(input_c=_f([D * L, B])), r"input_c"),
    ("params_rank2", dict(params=_f([_params_size(), 1])), r"params"),
    ("input_size_vs_params", dict(input=_f([T, B, I + 1])), r"params|input_size"),
    ("input_h_batch", dict(input_h=_f([D * L, B + 1, H])), r"input_h|batch"),
    (
        "input_h_units",
        dict(input_h=_f([D * L, B, H + 1]), input_c=_f([D * L, B, H + 1])),
        r"params|input_h|num_units",
    ),  # fmt: skip
    (
        "input_h_not_multiple_of_dirs",
        dict(input_h=_f([3, B, H]), input_c=_f([3, B, H])),
        r"input_h|direction|layers",
    ),  # fmt: skip
    ("input_c_batch", dict(input_c=_f([D * L, B + 1, H])), r"input_c"),
    ("input_c_units", dict(input_c=_f([D * L, B, H + 1])), r"input_c"),
    ("input_c_layers", dict(input_c=_f([D * L + 2, B, H])), r"input_c"),
    ("lengths_negative", dict(sequence_lengths=tf.constant([4, -1, 2])), r"sequence_lengths"),
    ("lengths_too_long", dict(sequence_lengths=tf.constant([4, 5, 2])), r"sequence_lengths"),
    ("lengths_wrong_size", dict(sequence_lengths=tf.constant([4, 1])), r"sequence_lengths"),
    ("lengths_rank2", dict(sequence_lengths=tf.constant([[4, 1, 2]])), r"sequence_lengths"),
    ("lengths_scalar", dict(sequence_lengths=tf.constant(4)), r"sequence_lengths"),
    ("params_one_short", dict(params=_f([_params_size() - 1])), r"params"),
    ("params_one_long", dict(params=_f([_params_size() + 1])), r"params"),
    ("params_empty", dict(params=_f([0])), r"params"),
    (
        "num_proj_too_big",
        dict(
            num_proj=H + 1, input_h=_f([D * L, B, H + 1]), params=_f([_params_size(num_proj=H + 1)])
        ),
        r"num_proj",
    ),
    ("num_proj_negative", dict(num_proj=-1), r"num_proj"),
    ("dropout_negative", dict(dropout=-0.1), r"dropout"),
    ("dropout_big", dict(dropout=1.5), r"dropout"),
    ("dropout_nan", dict(dropout=float("nan")), r"dropout"),
    ("rnn_mode", dict(rnn_mode="bogus"), r"rnn_mode"),
    ("input_mode", dict(input_mode="bogus"), r"input_mode"),
    ("direction", dict(direction="sideways"), r"direction"),
    ("skip_input_size", dict(input_mode="skip_input"), r"skip_input|input_size|num_units"),
    ("batch_major_h_layout", dict(time_major=False, input=_f([B, T, I])), r"input_h|batch"),
]

MODE_CASES = [
    ("num_proj_gru", "gru", dict(num_proj=2, input_h=_f([D * L, B, 2])), r"num_proj"),
    ("num_proj_rnn_tanh", "rnn_tanh", dict(num_proj=2, input_h=_f([D * L, B, 2])), r"num_proj"),
    ("gru_input_h_units", "gru", dict(input_h=_f([D * L, B, H + 1])), r"params|input_h|num_units"),
    ("relu_params", "rnn_relu", dict(params=_f([7])), r"params"),
]


def _call_eager(kw):
    out = tf_rnn_ops.cudnn_rnn(**kw)
    return [t.numpy() for t in out]


def _call_graph(kw):
    tensors = {k: v for k, v in kw.items() if isinstance(v, tf.Tensor)}
    attrs = {k: v for k, v in kw.items() if not isinstance(v, tf.Tensor)}
    f = tf.function(lambda t: tf_rnn_ops.cudnn_rnn(**t, **attrs))
    return [t.numpy() for t in f(tensors)]


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("name,change,pattern", CASES, ids=[c[0] for c in CASES])
def test_forward_rejects(name, change, pattern, graph):
    kw = _valid()
    kw.update(change)
    with pytest.raises(ERRORS, match=pattern):
        (_call_graph if graph else _call_eager)(kw)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("name,mode,change,pattern", MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_forward_rejects_mode(name, mode, change, pattern, graph):
    kw = _valid(mode)
    kw.update(change)
    with pytest.raises(ERRORS, match=pattern):
        (_call_graph if graph else _call_eager)(kw)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def test_output_size_overflow_names_input_h(graph):
    """An (empty) input_h whose last dimension times 2 directions overflows int64: the shape
    function's own Multiply used to fail with a message naming nothing the user passed (found by
    make stress's fuzzer)."""
    kw = dict(
        input=tf.zeros([3, 0, 1]), input_h=tf.zeros([2, 0, 2**62]), input_c=tf.zeros([2, 0, 1]),
        params=tf.zeros([24]), sequence_lengths=tf.zeros([0], tf.int32), rnn_mode="gru",
        direction="bidirectional", is_training=False,
    )  # fmt: skip
    with pytest.raises(ERRORS, match=r"input_h"):
        (_call_graph if graph else _call_eager)(kw)


def test_valid_baseline_runs():
    """The unmodified arguments of the cases above are accepted (so each case tests one change)."""
    for mode in ref.MODES:
        _call_eager(_valid(mode))
        _call_graph(_valid(mode))


def test_dtype_mismatch_is_rejected():
    kw = _valid()
    kw["params"] = tf.cast(kw["params"], tf.float64)
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)):
        _call_eager(kw)


def _backprop_kwargs(mode="lstm"):
    kw = _valid(mode)
    out, h, c, reserve, host = tf_rnn_ops.cudnn_rnn(**kw)
    kw.pop("is_training")
    kw.update(
        output=out, output_h=h, output_c=c, output_backprop=tf.ones_like(out),
        output_h_backprop=tf.ones_like(h), output_c_backprop=tf.ones_like(c),
        reserve_space=reserve, host_reserved=host,
    )  # fmt: skip
    return kw


BACKPROP_CASES = [
    (
        "reserve_space_short",
        lambda kw: dict(reserve_space=kw["reserve_space"][:-1]),
        r"reserve_space",
    ),  # fmt: skip
    ("reserve_space_empty", lambda kw: dict(reserve_space=tf.zeros([0])), r"reserve_space"),
    (
        "output_backprop_shape",
        lambda kw: dict(output_backprop=kw["output_backprop"][:, :-1]),
        r"output_backprop must have the output's shape \[4,3,6\], got \[4,2,6\]",
    ),  # fmt: skip
    (
        "output_h_backprop_shape",
        lambda kw: dict(output_h_backprop=kw["output_h_backprop"][:-1]),
        r"output_h_backprop must have input_h's shape",
    ),  # fmt: skip
    (
        "output_c_backprop_shape",
        lambda kw: dict(output_c_backprop=kw["output_c_backprop"][:, :-1]),
        r"output_c_backprop must have input_c's shape",
    ),  # fmt: skip
    (
        "output_shape",
        lambda kw: dict(output=kw["output"][:-1]),
        r"output must have shape \[4,3,6\] \(from input and input_h\), got \[3,3,6\]",
    ),  # fmt: skip
    (
        "output_h_shape",
        lambda kw: dict(output_h=kw["output_h"][:-1]),
        r"output_h must have input_h's shape \[4,3,3\], got \[3,3,3\]",
    ),  # fmt: skip
    (
        "output_c_shape",
        lambda kw: dict(output_c=kw["output_c"][:, :-1]),
        r"output_c must have input_c's shape \[4,3,3\], got \[4,2,3\]",
    ),  # fmt: skip
    ("params_size", lambda kw: dict(params=kw["params"][:-1]), r"params"),
    ("lengths", lambda kw: dict(sequence_lengths=tf.constant([4, 9, 2])), r"sequence_lengths"),
    ("dropout", lambda kw: dict(dropout=1.5), r"dropout"),
]


@pytest.mark.parametrize("name,change,pattern", BACKPROP_CASES, ids=[c[0] for c in BACKPROP_CASES])
def test_backprop_rejects(name, change, pattern):
    kw = _backprop_kwargs()
    kw.update(change(kw))
    with pytest.raises(ERRORS, match=pattern):
        res = tf_rnn_ops.cudnn_rnn_backprop(**kw)
        [t.numpy() for t in res]


def test_backprop_baseline_runs():
    kw = _backprop_kwargs()
    [t.numpy() for t in tf_rnn_ops.cudnn_rnn_backprop(**kw)]


@pytest.mark.parametrize(
    "kw,pattern",
    [
        (dict(num_layers=0), r"num_layers"),
        (dict(num_layers=-1), r"num_layers"),
        (dict(num_units=0), r"num_units"),
        (dict(input_size=-2), r"input_size"),
        (dict(rnn_mode="gru", num_proj=2), r"num_proj"),
        (dict(num_proj=9), r"num_proj"),
        (dict(input_mode="skip_input"), r"skip_input|input_size|num_units"),
        (dict(rnn_mode="bogus"), r"rnn_mode"),
    ],
)
def test_params_size_rejects(kw, pattern):
    args = dict(num_layers=2, num_units=3, input_size=2, T=tf.float32, S=tf.int32)
    args.update(kw)
    with pytest.raises(ERRORS, match=pattern):
        tf_rnn_ops.cudnn_rnn_params_size(**args).numpy()
