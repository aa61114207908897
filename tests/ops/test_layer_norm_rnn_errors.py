"""Regressions of TfRnn>LayerNormRnn / TfRnn>LayerNormRnnGrad's input checks found by the fuzzer
(tests/hardening/fuzz_ops.py, families layer_norm and layer_norm_grad).

* An empty x [T, B, 0] (I = 0 is a valid input size) can have any T·B rows: the kernels sized y
  [T, B, H] and the reserve from T·B without a bound, so that x [2^62, 1, 0] asked the allocator
  for 2^62 elements (ResourceExhaustedError, or a wrapped int64 size). They now refuse a call whose
  buffers pass 2^62 elements, naming x; T·B = 0 (B = 0, any T) still runs.
* The forward's shape function refused an x or h0 of another rank with TensorFlow's own message,
  which names no input ("Shape must be rank 3 but is rank 2"): it now names x / h0.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tf_rnn_ops._loader import ops

CELLS = ("layer_norm_lstm", "layer_norm_gru")


def _inputs(cell, T, B, I, H, dtype=tf.float32):  # noqa: E741
    """The op's 16 inputs for x [T, B, I] (zeros; x built empty when it has no elements)."""
    lstm = cell == "layer_norm_lstm"
    gh = (4 if lstm else 3) * H
    rng = np.random.default_rng(0)

    def t(*shape):
        return tf.constant(rng.standard_normal(shape), dtype)

    empty = tf.zeros([0], dtype)
    return dict(
        x=tf.zeros([T, B, I], dtype),
        h0=t(B, H),
        c0=t(B, H) if lstm else empty,
        kernel=t(I, gh),
        recurrent_kernel=t(H, gh),
        bias=t(gh),
        recurrent_bias=empty if lstm else t(gh),
        gamma_x=t(gh),
        beta_x=t(gh) if lstm else empty,
        gamma_h=t(gh),
        beta_h=t(gh) if lstm else empty,
        gamma_c=t(H) if lstm else empty,
        beta_c=t(H) if lstm else empty,
        mask=empty,
        zoneout_mask=empty,
        epsilon=tf.constant(1e-3, dtype),
    )


@pytest.mark.parametrize("is_training", [True, False])
@pytest.mark.parametrize("T", [2**62, 2**63 - 1])
@pytest.mark.parametrize("cell", CELLS)
def test_empty_x_of_too_many_rows_is_refused_naming_x(cell, T, is_training):
    kw = _inputs(cell, T, 1, 0, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"} x \[.*rows.*2\^62"):
        ops().tf_rnn_layer_norm_rnn(**kw, recurrent_mask=[], cell=cell, is_training=is_training)
    c_width = 1 if cell == "layer_norm_lstm" else 0
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"} x \[.*rows.*2\^62"):
        ops().tf_rnn_layer_norm_rnn_grad(
            **kw, reserve=tf.zeros([0]), dy=tf.zeros([T, 1, 0]), dhn=tf.zeros([1, 1]),
            dcn=tf.zeros([1, c_width]), recurrent_mask=[], cell=cell,
        )  # fmt: skip


@pytest.mark.parametrize("cell", CELLS)
def test_empty_x_of_no_rows_runs_for_any_T(cell):
    H, B = 3, 0
    kw = _inputs(cell, 2**62, B, 2, H)
    y, hn, cn, reserve = ops().tf_rnn_layer_norm_rnn(**kw, recurrent_mask=[], cell=cell)
    assert y.shape == (2**62, B, H) and hn.shape == (B, H) and reserve.shape == (0,)
    assert cn.shape == (B, H if cell == "layer_norm_lstm" else 0)
    grads = ops().tf_rnn_layer_norm_rnn_grad(
        **kw, reserve=reserve, dy=tf.zeros(y.shape), dhn=hn, dcn=cn, recurrent_mask=[], cell=cell
    )
    assert [tuple(g.shape) for g in grads] == [tuple(v.shape) for v in list(kw.values())[:13]]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("name", "shape", "rank"), [("x", [2, 3], 3), ("h0", [2, 3, 4], 2)])
def test_graph_rank_errors_name_the_input(cell, name, shape, rank):
    kw = _inputs(cell, 2, 3, 4, 5)
    specs = {n: tf.TensorSpec(v.shape, v.dtype) for n, v in kw.items()}
    specs[name] = tf.TensorSpec(shape, tf.float32)

    def run(**inputs):
        return ops().tf_rnn_layer_norm_rnn(**inputs, recurrent_mask=[], cell=cell)

    with pytest.raises(ValueError, match=rf"{name} must be {rank}-D, got shape \["):
        tf.function(run).get_concrete_function(**specs)
