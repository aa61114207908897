"""A problem whose dropout masks can be read off the output, for the dropout tests.

rnn_relu, 2 layers, positive layer-0 outputs and an identity layer 1 (W = I, R = 0, b = 0): layer
1's output is mask * layer-0 output, so a call's between-layer mask is its output / the float64
layer-0 output.
"""

from __future__ import annotations

import numpy as np
import rnn_reference as ref
import tensorflow as tf

H, T, B = 32, 20, 16


def identity_problem(rng):
    """rnn_relu, 2 layers, positive layer-0 outputs and an identity layer 1 (W = I, R = 0, b = 0):
    layer 1's output is mask * layer-0 output, so each call's mask can be read off its output."""
    w, b = ref.random_canonical(rng, "rnn_relu", 2, H, H)
    w[0], w[1] = np.abs(w[0]) * 0.2, np.abs(w[1]) * 0.05
    b[0], b[1] = np.abs(b[0]) + 0.1, np.abs(b[1])
    w[2], w[3] = np.eye(H), np.zeros([H, H])
    b[2], b[3] = np.zeros(H), np.zeros(H)
    params = ref.canonical_to_opaque(w, b, "rnn_relu", 2, H, H)
    x = rng.uniform(0.1, 1, (T, B, H))
    h0 = np.stack([rng.uniform(0, 1, (B, H)), np.zeros((B, H))])
    out0 = ref.rnn_forward(x, h0[:1], None, w[:2], b[:2], mode="rnn_relu")[0]
    assert np.all(out0 > 0)
    kw = dict(
        input=tf.constant(x), input_h=tf.constant(h0), input_c=tf.constant(h0),
        params=tf.constant(params), rnn_mode="rnn_relu", input_mode="linear_input",
        is_training=True,
    )  # fmt: skip
    return kw, out0, (x, h0, w, b)


def read_mask(out1, out0, rate):
    """The kept elements of a call's mask (out1 / out0), checked: each kept one scaled by exactly
    1 / (1 - float32(rate)), the dropped fraction within 0.03 of rate."""
    mask = out1 / out0
    kept = mask > 0
    np.testing.assert_allclose(mask[kept], 1.0 / (1.0 - float(np.float32(rate))), rtol=1e-12)
    frac = 1.0 - kept.mean()
    assert abs(frac - rate) < 0.03, f"dropped fraction {frac:.3f} for rate {rate}"
    return kept
