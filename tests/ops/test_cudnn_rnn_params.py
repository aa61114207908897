"""Params size and canonical <-> opaque conversion against the numpy layout of docs/MATH.md, "Params
layout", and the published reference value."""

from __future__ import annotations

import inspect
import pydoc
import re

import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf

import tf_rnn_ops


def _configs():
    out = []
    for mode in ref.MODES:
        for direction in ref.DIRECTIONS:
            for num_layers, num_units, input_size in ((1, 3, 2), (3, 5, 5), (2, 1, 257)):
                for input_mode in ref.INPUT_MODES:
                    if input_mode == "skip_input" and input_size != num_units:
                        continue
                    for num_proj in (0, 2) if mode == "lstm" and num_units > 2 else (0,):
                        out.append(
                            (
                                mode,
                                num_layers,
                                num_units,
                                input_size,
                                direction,
                                input_mode,
                                num_proj,
                            )
                        )
    return out


CONFIGS = _configs()


def _id(c):
    return "-".join(str(a)[:5] for a in c)


def _attrs(cfg):
    mode, _, _, _, direction, input_mode, num_proj = cfg
    return dict(rnn_mode=mode, direction=direction, input_mode=input_mode, num_proj=num_proj)


def _sizes(cfg):
    return dict(num_layers=cfg[1], num_units=cfg[2], input_size=cfg[3])


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
@pytest.mark.parametrize("s_dtype", [tf.int32, tf.int64])
def test_params_size(cfg, s_dtype):
    size = tf_rnn_ops.cudnn_rnn_params_size(**_sizes(cfg), T=tf.float32, S=s_dtype, **_attrs(cfg))
    assert size.dtype == s_dtype
    assert size.numpy().reshape(-1).tolist() == [ref.params_size(*cfg)]
    ws, bs = ref.canonical_shapes(*cfg)
    assert ref.params_size(*cfg) == sum(int(np.prod(s)) for s in ws + bs)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_canonical_to_params_and_back(rng, cfg):
    w, b = ref.random_canonical(rng, *cfg)
    params = tf_rnn_ops.cudnn_rnn_canonical_to_params(
        **_sizes(cfg), weights=[tf.constant(a) for a in w], biases=[tf.constant(a) for a in b],
        **_attrs(cfg),
    )  # fmt: skip
    np.testing.assert_array_equal(params.numpy(), ref.canonical_to_opaque(w, b, *cfg))
    w2, b2 = tf_rnn_ops.cudnn_rnn_params_to_canonical(
        **_sizes(cfg), params=params, num_params_weights=len(w), num_params_biases=len(b),
        **_attrs(cfg),
    )  # fmt: skip
    assert len(w2) == len(w) and len(b2) == len(b)
    for k, (a, e) in enumerate(zip(w2, w, strict=True)):
        assert tuple(a.shape) == e.shape, f"weight {k}: {a.shape} != {e.shape}"
        np.testing.assert_array_equal(a.numpy(), e, err_msg=f"weight {k}")
    for k, (a, e) in enumerate(zip(b2, b, strict=True)):
        assert tuple(a.shape) == e.shape, f"bias {k}: {a.shape} != {e.shape}"
        np.testing.assert_array_equal(a.numpy(), e, err_msg=f"bias {k}")


@pytest.mark.parametrize("cfg", CONFIGS[::3], ids=_id)
def test_params_to_canonical_of_random_params(rng, cfg):
    """ParamsToCanonical splits any opaque vector the way the numpy layout does."""
    params = rng.normal(size=ref.params_size(*cfg)).astype(np.float32)
    w, b = ref.opaque_to_canonical(params, *cfg)
    w2, b2 = tf_rnn_ops.cudnn_rnn_params_to_canonical(
        **_sizes(cfg), params=tf.constant(params), num_params_weights=len(w),
        num_params_biases=len(b), **_attrs(cfg),
    )  # fmt: skip
    for a, e in zip(list(w2) + list(b2), w + b, strict=True):
        np.testing.assert_array_equal(a.numpy(), e)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32, tf.float64])
def test_conversion_dtypes(rng, dtype):
    cfg = ("gru", 2, 3, 2, "bidirectional", "linear_input", 0)
    w, b = ref.random_canonical(rng, *cfg)
    wt = [tf.cast(a, dtype) for a in w]
    bt = [tf.cast(a, dtype) for a in b]
    params = tf_rnn_ops.cudnn_rnn_canonical_to_params(**_sizes(cfg), weights=wt, biases=bt,
                                                      **_attrs(cfg))  # fmt: skip
    assert params.dtype == dtype
    exp = ref.canonical_to_opaque([a.numpy() for a in wt], [a.numpy() for a in bt], *cfg)
    np.testing.assert_array_equal(params.numpy(), exp)


def test_wrong_number_of_canonical_tensors_is_rejected(rng):
    cfg = ("lstm", 1, 3, 2, "unidirectional", "linear_input", 0)
    w, b = ref.random_canonical(rng, *cfg)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=r"(?i)weight|bias"):
        tf_rnn_ops.cudnn_rnn_canonical_to_params(
            **_sizes(cfg), weights=[tf.constant(a) for a in w[:-1]],
            biases=[tf.constant(a) for a in b], **_attrs(cfg),
        )  # fmt: skip
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=r"(?i)weight|bias"):
        tf_rnn_ops.cudnn_rnn_params_to_canonical(
            **_sizes(cfg), params=tf.constant(ref.canonical_to_opaque(w, b, *cfg)),
            num_params_weights=len(w) + 1, num_params_biases=len(b), **_attrs(cfg),
        )  # fmt: skip


def test_wrong_canonical_size_is_rejected(rng):
    cfg = ("gru", 1, 3, 2, "unidirectional", "linear_input", 0)
    w, b = ref.random_canonical(rng, *cfg)
    # TensorFlow's own op checks sizes only (a transposed matrix passes), so only the size is asked
    w[3] = w[3][:, :-1]
    with pytest.raises(
        (tf.errors.InvalidArgumentError, ValueError), match=r"(?i)weight|shape|size"
    ):
        tf_rnn_ops.cudnn_rnn_canonical_to_params(
            **_sizes(cfg), weights=[tf.constant(a) for a in w],
            biases=[tf.constant(a) for a in b], **_attrs(cfg),
        )  # fmt: skip


def test_wrong_params_size_in_to_canonical(rng):
    cfg = ("gru", 1, 3, 2, "unidirectional", "linear_input", 0)
    w, b = ref.random_canonical(rng, *cfg)
    params = ref.canonical_to_opaque(w, b, *cfg)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=r"(?i)params"):
        tf_rnn_ops.cudnn_rnn_params_to_canonical(
            **_sizes(cfg), params=tf.constant(params[:-1]), num_params_weights=len(w),
            num_params_biases=len(b), **_attrs(cfg),
        )  # fmt: skip


def test_published_reference_value():
    """docs/MATH.md, "Params layout" (TensorFlow's cuDNN test): rnn_relu, 2 layers, 8 units, input
    4, batch 4, 2 steps, everything 1, unidirectional, inference: sum(output) + sum(output_h) =
    130688."""
    size = tf_rnn_ops.cudnn_rnn_params_size(
        num_layers=2, num_units=8, input_size=4, T=tf.float32, S=tf.int32, rnn_mode="rnn_relu"
    )
    n = int(size.numpy().reshape(-1)[0])
    out, h, _, _, _ = tf_rnn_ops.cudnn_rnn(
        input=tf.ones([2, 4, 4]),
        input_h=tf.ones([2, 4, 8]),
        input_c=tf.ones([2, 4, 8]),
        params=tf.ones([n]),
        sequence_lengths=tf.fill([4], 2),
        rnn_mode="rnn_relu",
        is_training=False,
    )
    assert float(tf.reduce_sum(out) + tf.reduce_sum(h)) == 130688.0


@pytest.mark.parametrize(
    "ours,theirs",
    [
        ("cudnn_rnn", "CudnnRNNV3"),
        ("cudnn_rnn_backprop", "CudnnRNNBackpropV3"),
        ("cudnn_rnn_params_size", "CudnnRNNParamsSize"),
        ("cudnn_rnn_params_to_canonical", "CudnnRNNParamsToCanonicalV2"),
        ("cudnn_rnn_canonical_to_params", "CudnnRNNCanonicalToParamsV2"),
    ],
)
def test_signature_matches_raw_op(ours, theirs):
    """README, "Using the ops": the same keyword arguments as the tf.raw_ops namesake."""
    mine = set(inspect.signature(getattr(tf_rnn_ops, ours)).parameters)
    raw = set(inspect.signature(getattr(tf.raw_ops, theirs)).parameters)
    assert mine == raw, f"missing {raw - mine}, extra {mine - raw}"
    # The same order and defaults (positional calls work as for the raw op), and help() shows them.
    fn = getattr(tf_rnn_ops, ours)
    mine = inspect.signature(fn).parameters
    raw = inspect.signature(getattr(tf.raw_ops, theirs)).parameters
    assert list(mine) == list(raw)
    for name, p in raw.items():
        if p.default is not inspect.Parameter.empty:
            assert mine[name].default == p.default, name
    text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
    assert f"{ours}({', '.join(list(mine)[:3])}" in text and theirs in text
    assert "rnn_mode='lstm'" in text and "name=None" in text
    required = {n: None for n, p in mine.items() if p.default is inspect.Parameter.empty}
    with pytest.raises(TypeError, match=rf"{ours}\(\): got an unexpected keyword argument 'bogus'"):
        fn(**required, bogus=1)


def test_wrappers_take_positional_and_keyword_arguments():
    size = tf_rnn_ops.cudnn_rnn_params_size(1, 3, 2, tf.float32, tf.int32, "gru")
    assert int(size[0]) == ref.params_size("gru", 1, 3, 2)
    with pytest.raises(TypeError, match=r"cudnn_rnn_params_size\(\): multiple values"):
        tf_rnn_ops.cudnn_rnn_params_size(1, 3, 2, tf.float32, tf.int32, num_layers=1)
    with pytest.raises(TypeError, match=r"cudnn_rnn_params_size\(\): missing .*'T'"):
        tf_rnn_ops.cudnn_rnn_params_size(1, 3, 2)


_VALID_MODEL = dict(
    rnn_mode="gru",
    num_layers=1,
    num_units=3,
    input_size=2,
    direction="unidirectional",
    input_mode="linear_input",
    num_proj=0,
)


@pytest.mark.parametrize(
    "change,what",
    [
        (dict(input_size=0), "input_size must be >= 1"),
        (dict(input_size=-1), "input_size must be >= 1"),
        (dict(num_units=0), "num_units must be >= 1"),
        (dict(num_layers=0), "num_layers must be >= 1"),
        (dict(rnn_mode="lstm", num_proj=4), r"num_proj \(4\) must not exceed num_units \(3\)"),
        (dict(num_proj=1), "num_proj"),
        (dict(input_mode="skip_input"), r"skip_input needs input_size \(2\) == num_units \(3\)"),
        (dict(rnn_mode="LSTM"), "rnn_mode"),
        (dict(direction="both"), "direction"),
        (dict(input_mode="linear"), "input_mode"),
    ],
)
def test_model_rules_are_the_ops(change, what):
    """`params.check_model` (the rules checked in Python, by `params` and the layers) refuses what
    the op refuses, naming the same thing; the model next to it is accepted by both."""
    model = {**_VALID_MODEL, **change}
    with pytest.raises(ValueError, match=what):
        tf_rnn_ops.params.check_model(**model)
    with pytest.raises(ValueError, match=what):
        tf_rnn_ops.params.params_size(**model)
    with pytest.raises(tf.errors.InvalidArgumentError, match=what.split(" ")[0]):
        tf_rnn_ops.cudnn_rnn_params_size(T=tf.float32, S=tf.int32, **model)
    tf_rnn_ops.params.check_model(**_VALID_MODEL)
    size = tf_rnn_ops.cudnn_rnn_params_size(T=tf.float32, S=tf.int32, **_VALID_MODEL)
    assert int(size[0]) == tf_rnn_ops.params.params_size(**_VALID_MODEL)


@pytest.mark.parametrize("dropout", [-0.1, 1.5, float("nan")])
def test_dropout_rule(dropout):
    with pytest.raises(ValueError, match="dropout must be in"):
        tf_rnn_ops.params.check_model(**_VALID_MODEL, dropout=dropout)
    for ok in (0.0, 1.0):
        tf_rnn_ops.params.check_model(**_VALID_MODEL, dropout=ok)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_python_params_size_is_the_layouts(cfg):
    """`params.params_size` (summed without listing the layers) against the numpy layout."""
    assert tf_rnn_ops.params.params_size(*cfg) == ref.params_size(*cfg)


def _op_refusal(model) -> str:
    """The message of the op's refusal of `model` (the C++ rules, fused_rnn_rules.h), without what
    TensorFlow wraps around it ("{{function_node …}} " before, " [Op:…]" after)."""
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        tf_rnn_ops.cudnn_rnn_params_size(T=tf.float32, S=tf.int64, **model)
    message = re.sub(r"^\{\{function_node [^}]*\}\} ", "", err.value.message)
    return re.sub(r" \[Op:[^\]]*\]$", "", message)


@pytest.mark.parametrize(
    "model,bound",
    [
        # num_layers past INT_MAX / (dirs * (2 G + 1)): the canonical lists' count.
        (dict(rnn_mode="rnn_relu", num_layers=10**9), r"at most 715827882 for rnn_mode rnn_relu"),
        (
            dict(rnn_mode="lstm", num_layers=10**9, direction="bidirectional"),
            r"at most 119304647 for rnn_mode lstm and 2 direction",
        ),
        (dict(rnn_mode="gru_reset_before", num_layers=2**31 - 1), r"at most 306783378 "),
        # num_units times the widest layer input or output past 2^58.
        (dict(rnn_mode="gru", num_units=2**29, input_size=2**30), r"must be at most 2\^58"),
        (
            dict(rnn_mode="rnn_tanh", num_units=2**29 + 1, input_size=1, direction="bidirectional"),
            r"must be at most 2\^58",
        ),
        # Within that, more than 2^62 params in all.
        (
            dict(rnn_mode="lstm", num_layers=16, num_units=2**28, input_size=2**30),
            r"with about 1\.00881e\+19 params, more than the 2\^62",
        ),
    ],
)
def test_python_refuses_the_models_the_ops_refuse_by_size(model, bound):
    """The size bounds of the C++ rules, mirrored by `params.check_model` with the same numbers and
    words, so that the Python helpers refuse at once what they would otherwise loop over (10^9
    layers) or list; the op's message is the reference."""
    model = {**_VALID_MODEL, **model}
    expected = _op_refusal(model)
    assert re.search(bound, expected), expected
    for fn in (
        tf_rnn_ops.params.check_model,
        tf_rnn_ops.params.params_size,
        tf_rnn_ops.params.pseudo_layer_shapes,
        tf_rnn_ops.params.canonical_shapes,
        tf_rnn_ops.params.layer_param_ranges,
        tf_rnn_ops.params.keras_initial_canonical,
    ):
        with pytest.raises(ValueError) as err:
            fn(**model)
        assert str(err.value) == expected, fn.__name__


@pytest.mark.parametrize("mode,direction", [("lstm", "bidirectional"), ("gru", "unidirectional")])
def test_python_and_op_agree_at_the_layer_bound(mode, direction):
    """The most layers allowed: accepted by both, and the same size (summed, not listed); one more:
    refused by both."""
    bound = tf_rnn_ops.params.max_num_layers(mode, direction)
    model = dict(_VALID_MODEL, rnn_mode=mode, direction=direction, num_layers=bound)
    tf_rnn_ops.params.check_model(**model)
    size = tf_rnn_ops.cudnn_rnn_params_size(T=tf.float32, S=tf.int64, **model)
    assert int(size[0]) == tf_rnn_ops.params.params_size(**model)
    model["num_layers"] = bound + 1
    expected = _op_refusal(model)
    with pytest.raises(ValueError) as err:
        tf_rnn_ops.params.params_size(**model)
    assert str(err.value) == expected


def test_gate_tables_match_the_op_and_keras():
    """The one mode table (tf_rnn_ops/_modes.py) against the op's params sizes and Keras' kernel
    widths: G·H·(I + H) weights and 2·G·H biases per pseudo-layer, Keras' kernel [I, G·H]."""
    import keras

    from tf_rnn_ops import _modes

    keras_cells = {
        "gru": keras.layers.GRUCell,
        "gru_reset_before": lambda units: keras.layers.GRUCell(units, reset_after=False),
        "lstm": keras.layers.LSTMCell,
        "rnn_tanh": keras.layers.SimpleRNNCell,
        "rnn_relu": keras.layers.SimpleRNNCell,
    }
    assert set(_modes.RNN_MODES) == set(_modes.NUM_GATES) == set(keras_cells)
    hidden, inputs = 5, 3
    for mode in _modes.RNN_MODES:
        g = _modes.NUM_GATES[mode]
        size = tf_rnn_ops.cudnn_rnn_params_size(
            num_layers=1, num_units=hidden, input_size=inputs, T=tf.float32, S=tf.int32,
            rnn_mode=mode,
        )  # fmt: skip
        assert int(size[0]) == g * hidden * (inputs + hidden) + 2 * g * hidden, mode
        cell = keras_cells[mode](hidden)
        cell.build((None, inputs))
        assert tuple(cell.kernel.shape) == (inputs, g * hidden), mode
        perm = _modes.keras_gate_permutation(mode)
        assert sorted(perm) == list(range(g)), mode
        assert [_modes.KERAS_GATE_ORDER[mode][k] for k in perm] == list(_modes.GATE_ORDER[mode])
    for mode in set(_modes.RNN_MODES) - set(_modes.PROJECTION_MODES):
        with pytest.raises(tf.errors.InvalidArgumentError, match="num_proj"):
            tf_rnn_ops.cudnn_rnn_params_size(
                num_layers=1, num_units=hidden, input_size=inputs, T=tf.float32, S=tf.int32,
                rnn_mode=mode, num_proj=2,
            )  # fmt: skip


@pytest.mark.parametrize("mode", ["gru", "gru_reset_before", "lstm", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("n_in,H", [(5, 3), (1, 1), (7, 257)])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("as_tensors", [True, False], ids=["tf", "numpy"])
def test_keras_weights_to_opaque_and_grads_back(rng, mode, n_in, H, use_bias, as_tensors):
    """`params.keras_to_opaque` (the layers' training gradient converts every call with it) and
    `opaque_grad_to_keras`, on TensorFlow tensors (one transpose per matrix) and numpy arrays (the
    canonical route), against the tests' own Keras mapping (tests/support/keras_convert.py) and
    params layout (rnn_reference): the same values exactly."""
    import keras_convert as kc

    from tf_rnn_ops import params

    kind = "simple_rnn" if mode.startswith("rnn_") else mode
    G = {"gru": 3, "gru_reset_before": 3, "lstm": 4, "simple_rnn": 1}[kind]
    kernel = rng.standard_normal((n_in, G * H))
    rkernel = rng.standard_normal((H, G * H))
    bias = None
    if use_bias:
        bias = rng.standard_normal((2, 3 * H) if kind == "gru" else (G * H,))
    w, b = kc.cell_to_canonical(kind, kernel, rkernel, bias)
    want = ref.canonical_to_opaque(w, b, mode, 1, H, n_in, "unidirectional")
    wrap = tf.constant if as_tensors else np.asarray
    got = params.keras_to_opaque(mode, wrap(kernel), wrap(rkernel),
                                 None if bias is None else wrap(bias))  # fmt: skip
    np.testing.assert_array_equal(np.asarray(got), want)

    dparams = rng.standard_normal(want.shape)
    dw, db = ref.opaque_to_canonical(dparams, mode, 1, H, n_in, "unidirectional")
    want_grads = kc.canonical_grads_to_cell(kind, dw, db)
    got_grads = params.opaque_grad_to_keras(mode, wrap(dparams), H, n_in)
    names = ("kernel", "recurrent_kernel", "bias")
    for name, g, e in zip(names, got_grads, want_grads, strict=True):
        np.testing.assert_array_equal(np.asarray(g), e, err_msg=name)
