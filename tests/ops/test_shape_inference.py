"""The static output shapes that TfRnn>CudnnRNN's and TfRnn>KerasRNN's shape functions give a traced
graph (eager calls never run them), for every rnn_mode, both layouts, one and two directions.

The expectation is docs/MATH.md's ("Params layout", the shapes table): output [T, B, dir·H_out]
(batch-major [B, T, dir·H_out]), output_h input_h's shape, output_c input_c's shape for lstm, the
one mode with a cell state, and a scalar dummy for the others.
"""

from __future__ import annotations

import pytest
import tensorflow as tf

from tf_rnn_ops import _loader

MODES = ("rnn_relu", "rnn_tanh", "lstm", "gru", "gru_reset_before")


def _traced_outputs(fn, *specs):
    return tf.function(fn).get_concrete_function(*specs).structured_outputs


@pytest.mark.parametrize("time_major", [True, False])
@pytest.mark.parametrize("direction", ["unidirectional", "bidirectional"])
@pytest.mark.parametrize("mode", MODES)
def test_cudnn_rnn_shapes(mode, direction, time_major):
    dirs, H, T, B, n_in = (2 if direction == "bidirectional" else 1), 5, 7, 3, 4
    x = [T, B, n_in] if time_major else [B, T, n_in]
    h = [dirs, B, H] if time_major else [B, dirs, H]
    c = [dirs, None, H] if time_major else [None, dirs, H]  # partly unknown: passed through as is

    def run(x, h, c, p):
        return _loader.ops().tf_rnn_cudnn_rnn(
            input=x,
            input_h=h,
            input_c=c,
            params=p,
            sequence_lengths=tf.zeros([0], tf.int32),
            rnn_mode=mode,
            direction=direction,
            time_major=time_major,
        )

    specs = [tf.TensorSpec(s, tf.float32) for s in (x, h, c, [None])]
    y, hn, cn, reserve, host = _traced_outputs(run, *specs)
    assert y.shape.as_list() == ([T, B, dirs * H] if time_major else [B, T, dirs * H])
    assert hn.shape.as_list() == h
    assert cn.shape.as_list() == (c if mode == "lstm" else []), mode
    assert reserve.shape.as_list() == [None] and host.shape.as_list() == [None]


@pytest.mark.parametrize("time_major", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_keras_rnn_shapes(mode, time_major):
    H, T, B, n_in = 3, 6, 2, 5
    x = [T, B, n_in] if time_major else [B, T, n_in]
    g = {"lstm": 4, "gru": 3, "gru_reset_before": 3}.get(mode, 1)

    def run(x, h, c, k, rk, b):
        return _loader.ops().tf_rnn_keras_rnn(
            input=x,
            input_h=h,
            input_c=c,
            kernel=k,
            recurrent_kernel=rk,
            bias=b,
            sequence_lengths=tf.zeros([0], tf.int32),
            rnn_mode=mode,
            time_major=time_major,
        )

    shapes = (x, [B, H], [None, H], [n_in, g * H], [H, g * H], [None])
    y, hn, cn, reserve = _traced_outputs(run, *[tf.TensorSpec(s, tf.float32) for s in shapes])
    assert y.shape.as_list() == ([T, B, H] if time_major else [B, T, H])
    assert hn.shape.as_list() == [B, H]
    assert cn.shape.as_list() == ([None, H] if mode == "lstm" else []), mode
    assert reserve.shape.as_list() == [None]
