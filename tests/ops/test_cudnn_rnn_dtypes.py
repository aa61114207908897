"""float16 and bfloat16 (computed in float32 internally) close to float32, forward and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import rnn_reference as ref
import tensorflow as tf

import tf_rnn_ops

# Inputs are rounded to the low precision first, so both runs see the same values; what remains is
# the rounding of outputs (and of intermediates the kernel stores).
TOLS = {tf.float16: 4e-3, tf.bfloat16: 3e-2}


def _results(p, dtype, d):
    kw = p.op_kwargs(dtype, is_training=True)
    srcs = [kw["input"], kw["input_h"], kw["input_c"], kw["params"]]
    with tf.GradientTape() as tape:
        tape.watch(srcs)
        out, h, c, _, _ = tf_rnn_ops.cudnn_rnn(**kw)
        loss = tf.reduce_sum(tf.cast(out, tf.float32) * d[0]) + tf.reduce_sum(
            tf.cast(h, tf.float32) * d[1]
        )
        if p.is_lstm:
            loss += tf.reduce_sum(tf.cast(c, tf.float32) * d[2])
    grads = tape.gradient(loss, srcs)
    vals = [out, h] + ([c] if p.is_lstm else [])
    for v in vals:
        assert v.dtype == dtype
    names = ["output", "output_h"] + (["output_c"] if p.is_lstm else [])
    names += ["d_input", "d_input_h"] + (["d_input_c"] if p.is_lstm else []) + ["d_params"]
    gs = [grads[0], grads[1]] + ([grads[2]] if p.is_lstm else []) + [grads[3]]
    for g in gs:
        assert g.dtype == dtype
    return names, [np.asarray(tf.cast(v, tf.float32)) for v in vals + gs]


@pytest.mark.parametrize("mode", ref.MODES)
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("time_major", [True, False], ids=["tm", "bm"])
def test_low_precision_close_to_float32(rng, mode, dtype, time_major):
    p = ref.Problem(
        rng, mode, 2, 8, 5, batch=4, steps=6, direction="bidirectional", time_major=time_major
    )
    # round the problem to the low precision
    for name in ("x", "h0", "c0", "params"):
        setattr(p, name, tf.cast(tf.cast(getattr(p, name), dtype), tf.float64).numpy())
    d = [tf.constant(a, tf.float32) for a in p.cotangents(rng) if a is not None]
    names, low = _results(p, dtype, d)
    _, ref32 = _results(p, tf.float32, d)
    tol = TOLS[dtype]
    for name, a, e in zip(names, low, ref32, strict=True):
        scale = max(1.0, float(np.max(np.abs(e))) if e.size else 1.0)
        err = float(np.max(np.abs(a - e))) if e.size else 0.0
        assert err <= tol * scale, f"{name}: max error {err:.3g} > {tol * scale:.3g}"
