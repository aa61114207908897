"""tf.test.compute_gradient (float64, numerical vs. the registered gradient) for input, input_h,
input_c and params in every mode, small sizes."""

from __future__ import annotations

import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf

import tf_rnn_ops


def _max_error(p, which, dropout=0.0, seed=0, seed2=0, zero_state=False):
    kw = p.op_kwargs(is_training=True, dropout=dropout, seed=seed, seed2=seed2)
    if zero_state:  # as a layer called without initial states
        kw["input_h"] = tf.zeros_like(kw["input_h"])
        kw["input_c"] = tf.zeros_like(kw["input_c"])
    names = ["input", "input_h", "input_c", "params"]
    idx = names.index(which)

    def f(t):
        args = dict(kw)
        args[which] = t
        out, h, c, _, _ = tf_rnn_ops.cudnn_rnn(**args)
        parts = [tf.reshape(out, [-1]), tf.reshape(h, [-1])]
        if p.is_lstm:
            parts.append(tf.reshape(c, [-1]))
        return tf.concat(parts, 0)

    theo, num = tf.test.compute_gradient(f, [kw[names[idx]]], delta=1e-6)
    assert theo[0].shape == num[0].shape
    return float(np.max(np.abs(theo[0] - num[0]))) if theo[0].size else 0.0


CASES = [(mode, direction) for mode in ref.MODES for direction in ref.DIRECTIONS]


@pytest.mark.parametrize("mode,direction", CASES)
@pytest.mark.parametrize("which", ["input", "input_h", "input_c", "params"])
def test_compute_gradient(rng, mode, direction, which):
    if which == "input_c" and mode != "lstm":
        pytest.skip("input_c is ignored by non-lstm modes")
    p = ref.Problem(rng, mode, 2, 2, 2, batch=3, steps=3, direction=direction,
                    lengths=[3, 0, 2])  # fmt: skip
    assert _max_error(p, which) < 1e-7


@pytest.mark.parametrize("which", ["input", "input_h", "input_c", "params"])
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_compute_gradient_lstm_proj_skip(rng, which, time_major):
    p = ref.Problem(
        rng, "lstm", 2, 3, 3, batch=2, steps=3, direction="bidirectional",
        input_mode="skip_input", num_proj=2, time_major=time_major, lengths=[1, 3],
    )  # fmt: skip
    assert _max_error(p, which) < 1e-7


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("which", ["input_h", "params"])
def test_compute_gradient_at_zero_initial_state(rng, mode, which):
    """At zero initial states the kernels skip the first step's recurrent products and its rows of
    R's gradient; each numerical probe of input_h moves one entry off zero (the full path), so
    both paths meet here. Two bidirectional layers (the reverse direction's first step is each
    row's last time), lengths with an empty row."""
    p = ref.Problem(rng, mode, 2, 2, 3, batch=3, steps=3, direction="bidirectional",
                    lengths=[3, 0, 2])  # fmt: skip
    assert _max_error(p, which, zero_state=True) < 1e-7
