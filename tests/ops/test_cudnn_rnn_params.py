"""Params size and canonical <-> opaque conversion against the numpy layout of docs/MATH.md, "Params
layout", and the published reference value."""

from __future__ import annotations

import inspect

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
                for input_mode in ("linear_input", "skip_input", "auto_select"):
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
