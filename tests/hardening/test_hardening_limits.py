"""Issue 7 (5): size limits. Shapes past 2^31 or 2^63 elements, and requests for more memory than
the machine has, give correct results or clear errors, never a crash, a hang or a wrong answer.

tests/hardening/limits_check.py runs each case in one subprocess whose address space is limited
(RLIMIT_AS: what it uses plus 3 GiB, or just above what it uses for the `squeezed_*` cases), so that
an allocation past it fails in malloc instead of waking the OOM killer on this 24 GiB machine.
"""

from __future__ import annotations

import json

import pytest
import subproc

OK = "ok"
IAE = "InvalidArgumentError"
REE = "ResourceExhaustedError"

H62 = 2**62
# case -> (expected outcome, output shapes when ok / regex the message must match when an error)
EXPECT = {
    # Empty tensors with dimensions up to 2^63 - 1: correctly shaped empty outputs.
    "gru_empty_huge_input_size": (OK, [[0, 0]] * 4 + [[0, H62], [0, 0], [0, 0], [0, 0]]),
    "gru_empty_huge_batch": (OK, [[2**63 - 1, 0]] * 8),
    "cudnn_empty_batch_huge_T": (OK, [[H62, 0, 6], [2, 0, 3], [2, 0, 3], [0], [0]]),
    "cudnn_backprop_empty_batch_huge_T": (OK, [[H62, 0, 2], [2, 0, 3], [2, 0, 3], [126]]),
    # Sums and products past int64: refused, naming the sizes.
    "gru_overflowing_sizes": (IAE, r"x\.dims\(1\).*h_prev\.dims\(1\).*too large"),
    "cudnn_params_size_wraps_to_zero": (IAE, r"num_units \(4611686018427387904\).*2\^62"),
    "tf_cudnn_params_size_wraps_to_zero": (IAE, r"num_units \(4611686018427387904\).*2\^62"),
    "params_size_overflow": (IAE, r"num_layers \(2147483647\) must be at most"),
    "params_size_int64_exact": (OK, [[1]]),
    "params_size_int32_too_small": (IAE, r"params size 2147627304 does not fit"),
    "canonical_to_params_huge_model": (IAE, r"weights\[0\] has shape \[1,1\].*num_units 1048576"),
    "params_to_canonical_huge_model": (IAE, r"params must be 1-D with \d+ elements"),
    # More memory than exists: ResourceExhaustedError before any work.
    "cudnn_output_32gib_inference": (
        REE,
        r"OOM when allocating tensor with shape\[8192,1024,1024\]",
    ),
    "cudnn_output_32gib_training": (
        REE,
        r"OOM when allocating tensor with shape\[8192,1024,1024\]",
    ),
    "cudnn_output_32gib_batch_major": (
        REE,
        r"OOM when allocating tensor with shape\[1024,8192,1024\]",
    ),
    "tf_cudnn_output_32gib": (REE, r"OOM when allocating tensor with shape\[8192,1024,1024\]"),
    # Inputs that fit, outputs or scratch that do not; then the same call succeeds with memory back.
    "squeezed_gru_block_cell": (REE, r"OOM when allocating"),
    "squeezed_gru_block_cell_grad": (REE, r"OOM when allocating"),
    "squeezed_cudnn_rnn": (REE, r"OOM when allocating"),
    "squeezed_cudnn_rnn_bf16_batch_major": (REE, r"OOM when allocating"),
    "squeezed_cudnn_rnn_backprop": (REE, r"OOM when allocating"),
    "squeezed_tf_cudnn_rnn_backprop_v3": (REE, r"OOM when allocating"),
}
BIG_EXPECT = {
    "squeezed_params_to_canonical": (REE, r"OOM when allocating"),
    "big_params_round_trip": (OK, [[1]]),
}


def _check(results, expect):
    bad = []
    for name, (outcome, detail) in expect.items():
        got = results[name]
        if got["outcome"] == "skipped":  # under AddressSanitizer (make asan): no RLIMIT_AS
            continue
        if got["outcome"] != outcome:
            bad.append(f"{name}: expected {outcome}, got {json.dumps(got)[:1500]}")
        elif outcome == OK and got["shapes"] != detail:
            bad.append(f"{name}: output shapes {got['shapes']}, expected {detail}")
        elif outcome != OK:
            import re

            if not re.search(detail, got["message"]):
                bad.append(f"{name}: message does not match {detail!r}: {got['message'][:600]}")
    assert not bad, "\n".join(bad)


def test_size_limits(tmp_path):
    out = tmp_path / "limits.json"
    proc = subproc.run("limits_check.py", "--json", str(out), timeout=1800)
    assert proc.returncode == 0, subproc.describe(proc)
    _check(json.loads(out.read_text()), EXPECT)


def _free_gib():
    import psutil

    return psutil.virtual_memory().available / 2**30


@pytest.mark.slow
@pytest.mark.skipif(not subproc.stress(), reason="make stress (TF_RNN_OPS_STRESS=1)")
def test_more_than_2_31_elements(tmp_path):
    """Params of 2^31 + 139023 float16 elements through ParamsToCanonical and back (about 8 GiB)."""
    if _free_gib() < 12:
        pytest.skip(f"needs about 12 GiB free, {_free_gib():.1f} GiB available")
    out = tmp_path / "big.json"
    proc = subproc.run(
        "limits_check.py", "--json", str(out), "--big", "--only", ",".join(BIG_EXPECT), timeout=3600
    )
    assert proc.returncode == 0, subproc.describe(proc)
    _check(json.loads(out.read_text()), BIG_EXPECT)


def _lstm_kwargs(T, B, I=2, H=3, time_major=True):  # noqa: E741
    """An LSTM call with default sequence_lengths; tensors empty when B = 0 or I = 0."""
    import tensorflow as tf

    n = 4 * H * (I + H) + 8 * H
    x = tf.zeros([T, B, I] if time_major else [B, T, I])
    h = tf.zeros([1, B, H] if time_major else [B, 1, H])
    return dict(input=x, input_h=h, input_c=h, params=tf.zeros([n]), rnn_mode="lstm",
                time_major=time_major)  # fmt: skip


def _traced_variants(time_major, x_shape):
    """cudnn_rnn (default lengths) traced with what is known of input's shape: nothing, the rank,
    or all but the batch (as Keras traces); the other tensors of unknown shape."""
    import tensorflow as tf

    import tf_rnn_ops

    T, I = (x_shape[0], x_shape[2]) if time_major else (x_shape[1], x_shape[2])  # noqa: E741
    batch_unknown = [T, None, I] if time_major else [None, T, I]
    fns = []
    for x_spec in (None, [None, None, None], batch_unknown):
        sig = [tf.TensorSpec(x_spec, tf.float32)] + [tf.TensorSpec(None, tf.float32)] * 3

        @tf.function(input_signature=sig)
        def f(x, h, c, p):
            return tf_rnn_ops.cudnn_rnn(input=x, input_h=h, input_c=c, params=p, rnn_mode="lstm",
                                        time_major=time_major)[:3]  # fmt: skip

        fns.append(f)
    return fns


@pytest.mark.parametrize("time_major", [True, False])
@pytest.mark.parametrize("T", [2**31 - 1, 2**31, 2**62])
def test_default_lengths_with_huge_T(T, time_major):
    """sequence_lengths=None (every sequence full) with T past int32: an empty batch runs (its
    lengths are empty), forward and backprop, eagerly and in tf.functions of unknown shapes."""
    import tf_rnn_ops

    kw = _lstm_kwargs(T, 0, time_major=time_major)
    want = (T, 0, 3) if time_major else (0, T, 3)
    out = tf_rnn_ops.cudnn_rnn(**kw)
    assert tuple(out[0].shape) == want
    assert [tuple(o.shape) for o in out[1:3]] == [tuple(kw["input_h"].shape)] * 2
    grads = tf_rnn_ops.cudnn_rnn_backprop(
        **kw, sequence_lengths=None, output=out[0], output_h=out[1], output_c=out[2],
        output_backprop=out[0], output_h_backprop=out[1], output_c_backprop=out[2],
        reserve_space=out[3], host_reserved=out[4],
    )  # fmt: skip
    assert tuple(grads[0].shape) == tuple(kw["input"].shape)
    assert tuple(grads[3].shape) == tuple(kw["params"].shape)

    for traced in _traced_variants(time_major, kw["input"].shape):
        got = traced(kw["input"], kw["input_h"], kw["input_c"], kw["params"])[0]
        assert tuple(got.shape) == want


@pytest.mark.parametrize("time_major", [True, False])
def test_default_lengths_refuse_T_past_int32(time_major):
    """B > 0 and T = 2^31 (an empty input: I = 0): full lengths cannot be int32. Refused, naming
    T, with ValueError when the shape is known and InvalidArgumentError when it is known only at
    run time; never wrapped to a negative or short length."""
    import tensorflow as tf

    import tf_rnn_ops

    T = 2**31
    kw = _lstm_kwargs(T, 2, I=0, time_major=time_major)
    with pytest.raises(ValueError, match=rf"input has {T} time steps \(T\).*sequence_lengths"):
        tf_rnn_ops.cudnn_rnn(**kw)
    with pytest.raises(ValueError, match=rf"cudnn_rnn_backprop: input has {T} time steps"):
        tf_rnn_ops.cudnn_rnn_backprop(
            **kw, sequence_lengths=None, output=kw["input"], output_h=kw["input_h"],
            output_c=kw["input_c"], output_backprop=kw["input"], output_h_backprop=kw["input_h"],
            output_c_backprop=kw["input_c"], reserve_space=kw["params"],
            host_reserved=tf.zeros([0], tf.int8),
        )  # fmt: skip

    for traced in _traced_variants(time_major, kw["input"].shape):
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=rf"input has\]? \[?{T}\]? \[?time steps \(T\)"
        ):
            traced(kw["input"], kw["input_h"], kw["input_c"], kw["params"])


@pytest.mark.parametrize("time_major", [True, False])
def test_default_lengths_are_full(rng, time_major):
    """sequence_lengths=None gives bitwise the results of explicit full lengths, eagerly and with
    the shape known only in part at trace time."""
    import numpy as np
    import tensorflow as tf

    import tf_rnn_ops

    T, B, I, H = 5, 3, 2, 4  # noqa: E741
    n = 4 * H * (I + H) + 8 * H
    x = tf.constant(rng.standard_normal([T, B, I] if time_major else [B, T, I]), tf.float32)
    h = tf.constant(rng.standard_normal([1, B, H] if time_major else [B, 1, H]), tf.float32)
    p = tf.constant(rng.standard_normal([n]) * 0.3, tf.float32)
    common = dict(input=x, input_h=h, input_c=h, params=p, rnn_mode="lstm", time_major=time_major)
    want = tf_rnn_ops.cudnn_rnn(**common, sequence_lengths=tf.fill([B], T))[:3]
    got = tf_rnn_ops.cudnn_rnn(**common)[:3]

    traced = [f(x, h, h, p) for f in _traced_variants(time_major, x.shape)]
    for g in [got, *traced]:
        for a, b in zip(g, want, strict=True):
            assert np.array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("time_major", [True, False])
@pytest.mark.parametrize("B", [2**40, 2**62])
def test_default_lengths_not_built_for_a_refused_batch(B, time_major):
    """An empty input (T = 0) with a huge batch and an input_h of another batch: the op refuses
    input_h. The default lengths ([B] int32) were built first: a ResourceExhaustedError here, and
    8 GiB at B = 2^31 - 1 (the fuzzer's ~16 GB RSS); now they are not built (eagerly or traced)."""
    import tensorflow as tf

    import tf_rnn_ops

    x = tf.zeros([0, B, 2] if time_major else [B, 0, 2])
    h = tf.zeros([1, 0, 3] if time_major else [0, 1, 3])
    p = tf.zeros([4 * 3 * (2 + 3) + 8 * 3])
    want = rf"input_h batch size \(0\) must equal input's \({B}\)"
    with pytest.raises(tf.errors.InvalidArgumentError, match=want):
        tf_rnn_ops.cudnn_rnn(input=x, input_h=h, input_c=h, params=p, time_major=time_major)
    for traced in _traced_variants(time_major, x.shape):
        with pytest.raises(tf.errors.InvalidArgumentError, match=want):
            traced(x, h, h, p)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize(
    "I, H, want",
    [
        (2**63 - 1, 1, r"x\.dims\(1\) \(=9223372036854775807\) and h_prev\.dims\(1\) \(=1\)"),
        (0, 2**62, r"h_prev\.dims\(1\) \(=4611686018427387904\) is too large: 2 \* h_prev"),
    ],
)  # fmt: skip
def test_gru_shape_functions_name_overflowing_dims(I, H, want, grad):  # noqa: E741
    """Graph construction with empty tensors of huge known dimensions: x.dims(1) + h_prev.dims(1)
    or 2 * h_prev.dims(1) past int64 are refused naming x and h_prev (TensorFlow's own Add and
    Multiply say only "Dimension size overflow")."""
    import tensorflow as tf

    import tf_rnn_ops

    with tf.Graph().as_default():
        z = tf.compat.v1.placeholder
        kw = dict(x=z(tf.float32, [0, I]), h_prev=z(tf.float32, [0, H]),
                  w_ru=z(tf.float32, None), w_c=z(tf.float32, None), b_ru=z(tf.float32, None),
                  b_c=z(tf.float32, None))  # fmt: skip
        if grad:
            kw.update(r=z(tf.float32, None), u=z(tf.float32, None), c=z(tf.float32, None),
                      d_h=z(tf.float32, None))  # fmt: skip
        op = tf_rnn_ops.gru_block_cell_grad if grad else tf_rnn_ops.gru_block_cell
        with pytest.raises(ValueError, match=want):
            op(**kw)


@pytest.mark.parametrize("time_major", [True, False])
def test_model_size_errors_name_input_h(time_major):
    """The fused ops take num_layers from input_h's dimension: a dimension of 2^31 - 1 (empty
    tensors) is refused with a message saying so, for ours and TensorFlow's CudnnRNNV3."""
    import tensorflow as tf

    import tf_rnn_ops

    L = 2**31 - 1
    x = tf.zeros([0, 0, 1])
    h = tf.zeros([L, 0, 1] if time_major else [0, L, 1])
    kw = dict(input=x, input_h=h, input_c=h, params=tf.zeros([12]), rnn_mode="gru",
              sequence_lengths=tf.zeros([0], tf.int32), time_major=time_major)  # fmt: skip
    want = r"num_layers \(2147483647\) must be at most .*num_layers is input_h's dimension"
    for op in (tf_rnn_ops.cudnn_rnn, tf.raw_ops.CudnnRNNV3):
        with pytest.raises(tf.errors.InvalidArgumentError, match=want):
            op(**kw)
