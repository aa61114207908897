"""Zoneout in the fused op (TfRnn>KerasRNNDropout, through the drop-in GRU / LSTM) on a TensorFlow
pool of a given number of intra-op threads, against Keras' cells in float64 wrapped in haste's
zoneout (tests/support/zoneout_keras.py) with the same keep masks (and, in one case, the same
dropout masks): run in a subprocess by test_keras_rnn_zoneout_op.py, since the pool's size is fixed
once TensorFlow starts.

usage: zoneout_row_range_program.py THREADS SEED ROUNDS [B:T:IN:H]  (default 37:12:3:16)

float32 with B >= 12, or fewer rows with small step products in a call of 64 MFLOP or more
(RnnRowsApart), runs the driver's row ranges (each thread its rows through a chunk of steps,
no barrier): the zoneout pass and its backward split must stay within each thread's rows. Prints
"ok", or each failing case and round, and exits 1.
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
from zoneout_keras import ZoneoutInputCell, processed_masks  # noqa: E402

import tf_rnn_ops  # noqa: E402

B, T, IN, H = (int(v) for v in (sys.argv[4] if len(sys.argv) > 4 else "37:12:3:16").split(":"))
RATE = 0.3
CASES = [("GRU", {"reset_after": False}), ("GRU", {}), ("LSTM", {}), ("LSTM", {"dropout": 0.2,
         "recurrent_dropout": 0.3})]  # fmt: skip


def run(layer, x, mask, wy, dropout):
    cell = layer.cell.cell if isinstance(layer.cell, ZoneoutInputCell) else layer.cell
    cell._dropout_mask, cell._recurrent_dropout_mask = dropout
    return row_range.layer_outputs_and_grads(layer, x, mask, wy)


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
        weights[1] *= min(1.0, 4 / np.sqrt(H))  # (wider layers: a recurrence that is not chaotic)
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
        x32, dp32 = tf.constant(x, tf.float32), [as_t(m, tf.float32) for m in dp]
        failures += row_range.compare_rounds(
            f"{name}{kw}",
            lambda ours=ours, x32=x32, mask=mask, wy=wy, dp32=dp32: run(ours, x32, mask, wy, dp32),
            want,
            ROUNDS,
        )
    return row_range.report(failures)


if __name__ == "__main__":
    sys.exit(main())
