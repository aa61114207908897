"""The recurrent-dropout op (TfRnn>KerasRNNDropout, through the drop-in layers) on a TensorFlow pool
of a given number of intra-op threads, against Keras' layers in float64 with the same weights and
the same dropout masks injected into its cell: run in a subprocess by test_keras_rnn_dropout_op.py,
since the pool's size is fixed once TensorFlow starts.

usage: dropout_row_range_program.py THREADS SEED ROUNDS [B:T:IN:H]  (default 37:12:3:16)

float32 with B >= 12, or fewer rows with small step products in a call of 64 MFLOP or more
(RnnRowsApart), runs the driver's row ranges (each thread its rows through a chunk of steps,
no barrier): the masked products' per-row scratch (MaskedProducts, MaskedProductGrads) must keep
the threads apart. Prints "ok", or each failing case and round, and exits 1.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import row_range  # noqa: E402

THREADS, SEED, ROUNDS = (int(a) for a in sys.argv[1:4])
row_range.set_pool(THREADS)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_rnn_ops  # noqa: E402

B, T, IN, H = (int(v) for v in (sys.argv[4] if len(sys.argv) > 4 else "37:12:3:16").split(":"))
CASES = [("GRU", {"reset_after": False}), ("GRU", {}), ("LSTM", {}), ("SimpleRNN", {})]


def masks(rng, count, shape, rate, dtype):
    one = lambda: tf.constant(((rng.uniform(size=shape) >= rate) / (1 - rate)).astype(dtype))  # noqa: E731
    return [one() for _ in range(count)] if count else one()


def run(layer, x, mask, wy, dp, rp):
    layer.cell._dropout_mask, layer.cell._recurrent_dropout_mask = dp, rp
    return row_range.layer_outputs_and_grads(layer, x, mask, wy)


def main() -> int:
    rng = np.random.default_rng(SEED)
    failures = []
    for name, kw in CASES:
        kw = dict(kw, dropout=0.2, recurrent_dropout=0.3, return_sequences=True)
        cudnn = {} if name == "SimpleRNN" else {"use_cudnn": False}
        ref = getattr(keras.layers, name)(H, dtype="float64", **cudnn, **kw)
        ours = getattr(tf_rnn_ops.layers, name)(H, **kw)
        ref.build((None, T, IN))
        ours.build((None, T, IN))
        weights = [rng.uniform(-0.5, 0.5, w.shape) for w in ours.get_weights()]
        # (wider layers, smaller recurrent weights: at H = 384 and ±0.5 the recurrence is chaotic
        # and float32's rounding grows past the tolerance on one thread as on many)
        weights[1] *= min(1.0, 4 / np.sqrt(H))
        ref.set_weights(weights)
        ours.set_weights([w.astype(np.float32) for w in weights])
        count = getattr(ref.cell, "dropout_mask_count", None)
        seeds = rng.integers(1 << 30, size=2)
        dp = [masks(np.random.default_rng(seeds[0]), count, (B, IN), 0.2, t) for t in ("f8", "f4")]
        rp = [masks(np.random.default_rng(seeds[1]), count, (B, H), 0.3, t) for t in ("f8", "f4")]
        x = rng.normal(size=(B, T, IN))
        lengths = rng.integers(1, T + 1, B)
        mask = tf.constant(np.arange(T)[None, :] < lengths[:, None])
        wy = rng.normal(size=(B, T, H))
        want = run(ref, tf.constant(x), mask, wy, dp[0], rp[0])
        x32 = tf.constant(x.astype(np.float32))
        failures += row_range.compare_rounds(
            f"{name}{kw.get('reset_after', '')}",
            lambda ours=ours, x32=x32, mask=mask, wy=wy, dp=dp, rp=rp: run(
                ours, x32, mask, wy, dp[1], rp[1]
            ),
            want,
            ROUNDS,
        )
    return row_range.report(failures)


if __name__ == "__main__":
    sys.exit(main())
