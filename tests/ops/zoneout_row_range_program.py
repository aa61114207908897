"""Zoneout in the fused op (TfRnn>KerasRNNDropout, through the drop-in GRU / LSTM) on a TensorFlow
pool of a given number of intra-op threads, against Keras' cells in float64 wrapped in haste's
zoneout (tests/support/zoneout_keras.py) with the same keep masks (and, in one case, the same
dropout masks): run in a subprocess by test_keras_rnn_zoneout_op.py, since the pool's size is fixed
once TensorFlow starts.

usage: zoneout_row_range_program.py THREADS SEED ROUNDS

float32 with B >= 12 runs the driver's row ranges (each thread its rows through a chunk of steps,
no barrier): the zoneout pass and its backward split must stay within each thread's rows. Prints
"ok", or each failing case and round, and exits 1.
"""

from __future__ import annotations

import os
import sys

import tensorflow as tf

THREADS, SEED, ROUNDS = (int(a) for a in sys.argv[1:4])
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from zoneout_keras import ZoneoutInputCell, processed_masks  # noqa: E402

import tf_rnn_ops  # noqa: E402

B, T, IN, H, RATE = 37, 12, 3, 16, 0.3
CASES = [("GRU", {"reset_after": False}), ("GRU", {}), ("LSTM", {}), ("LSTM", {"dropout": 0.2,
         "recurrent_dropout": 0.3})]  # fmt: skip


def run(layer, x, mask, wy, dropout):
    cell = layer.cell.cell if isinstance(layer.cell, ZoneoutInputCell) else layer.cell
    cell._dropout_mask, cell._recurrent_dropout_mask = dropout
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, mask=mask, training=True)
        loss = tf.reduce_sum(y * tf.cast(wy, y.dtype))
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return [np.asarray(y, np.float64)] + [np.asarray(g, np.float64) for g in grads]


def main() -> int:
    rng = np.random.default_rng(SEED)
    failures = []
    for name, kw in CASES:
        ours = getattr(tf_rnn_ops.layers, name)(H, zoneout=RATE, return_sequences=True, **kw)
        cell = getattr(keras.layers, name + "Cell")(H, dtype="float64", **kw)
        ref = keras.layers.RNN(
            ZoneoutInputCell(cell, dtype="float64"), return_sequences=True, dtype="float64"
        )
        ours.build((None, T, IN))
        ref.build((None, T, IN + H))
        weights = [rng.uniform(-0.5, 0.5, w.shape) for w in ours.get_weights()]
        ref.set_weights(weights)
        ours.set_weights([w.astype(np.float32) for w in weights])
        zm = np.floor(1 - RATE + rng.uniform(size=(T, B, H)))
        ours._zoneout_mask = lambda _x, zm=zm: tf.constant(zm, tf.float32)
        lengths = rng.integers(1, T + 1, B)
        valid = np.arange(T)[None, :] < lengths[:, None]
        x = rng.normal(size=(B, T, IN))
        aug = np.concatenate([x, processed_masks(zm, valid, False)], -1)
        dp = [None, None]
        if kw.get("dropout"):
            keep = lambda shape, p: (rng.uniform(size=shape) >= p) / (1 - p)  # noqa: E731
            dp = [[keep((B, IN), 0.2) for _ in range(4)], [keep((B, H), 0.3) for _ in range(4)]]
        as_t = lambda m, t: None if m is None else [tf.constant(a, t) for a in m]  # noqa: E731
        mask = tf.constant(valid)
        wy = rng.normal(size=(B, T, H))
        want = run(ref, tf.constant(aug), mask, wy, [as_t(m, tf.float64) for m in dp])
        want[1] = want[1][..., :IN]
        for r in range(ROUNDS):
            got = run(ours, tf.constant(x, tf.float32), mask, wy, [as_t(m, tf.float32) for m in dp])
            for i, (a, b) in enumerate(zip(got, want, strict=True)):
                if not np.allclose(a, b, rtol=1e-4, atol=1e-4):
                    worst = np.unravel_index(np.argmax(np.abs(a - b)), a.shape)
                    failures.append(f"{name}{kw} round {r} item {i} {worst}")
    print("\n".join(failures) if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
