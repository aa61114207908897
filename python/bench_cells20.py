"""Issue 20's cells side by side with Keras in one run: the training step (forward, backward, every
gradient) of the drop-in layer against the Keras layer with the same options and weights.

    python python/bench_cells20.py [--rounds N] [--batch B --steps T --input I --units H]

Cases: GRU(reset_after=False) (fused as rnn_mode gru_reset_before; goal >= 1.5x Keras); recurrent
dropout (item 1; recurrent_dropout = 0.2 and dropout = 0.2, TfRnn>KerasRNNDropout; goal >= 5x
Keras) for GRU (both reset_after), LSTM and SimpleRNN, and with recurrent_dropout = 0.2 alone (the
issue's own case, `*_rec_dropout_only`: the plain input product) for GRU and LSTM; zoneout (item
3; zoneout = 0.1, always TfRnn>KerasRNNDropout) for GRU and LSTM, whose only peer is the same
zoneout written in Keras ops around Keras' own cell inside keras.layers.RNN (Keras has no zoneout;
haste's fused kernels are CUDA only). `--cases a,b` runs some of them. Prints one line per case:
the median milliseconds of each and the ratio Keras / ours (rounds alternate between the two, so
that changes of machine load hit both alike), and where the case has a goal, the time it asks
for against the products' time at the machine's FMA peak (`bench_peak.describe_goal`: on a CPU
of narrow FMAs a goal can lie beyond the peak). Speed is measured here, never asserted in
tests; results go to docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import bench_peak

_DROP = {"recurrent_dropout": 0.2, "dropout": 0.2}
CASES = {
    "gru_reset_before": ("GRU", {"reset_after": False}),
    "gru_rec_dropout": ("GRU", _DROP),
    "gru_rec_dropout_only": ("GRU", {"recurrent_dropout": 0.2}),  # the issue's own case
    "gru_reset_before_rec_dropout": ("GRU", {"reset_after": False, **_DROP}),
    "lstm_rec_dropout": ("LSTM", _DROP),
    "lstm_rec_dropout_only": ("LSTM", {"recurrent_dropout": 0.2}),
    "simple_rnn_rec_dropout": ("SimpleRNN", _DROP),
    "gru_zoneout": ("GRU", {"zoneout": 0.1}),
    "lstm_zoneout": ("LSTM", {"zoneout": 0.1}),
}
# Issue 20's goals, Keras / ours in a training step (zoneout has none).
GOALS = {
    "gru_reset_before": 1.5,
    "gru_rec_dropout": 5.0,
    "gru_rec_dropout_only": 5.0,
    "gru_reset_before_rec_dropout": 5.0,
    "lstm_rec_dropout": 5.0,
    "lstm_rec_dropout_only": 5.0,
    "simple_rnn_rec_dropout": 5.0,
    "gru_zoneout": None,
    "lstm_zoneout": None,
}


def _keras_zoneout_rnn(keras, cls, units, rate):
    """The peer of zoneout: Keras' cell with haste's zoneout in Keras ops (a fresh {0, 1} mask per
    step, h = h_prev + m (h~ - h_prev); c not zoned) inside keras.layers.RNN."""

    class ZoneoutCell(keras.layers.Layer):
        def __init__(self, cell, **kwargs):
            super().__init__(**kwargs)
            self.cell, self.state_size, self.output_size = cell, cell.state_size, cell.units
            self.seed_generator = keras.random.SeedGenerator(1)

        def build(self, input_shape):
            self.cell.build(input_shape)

        def call(self, inputs, states, training=False):
            states = list(states) if isinstance(states, list | tuple) else [states]
            _, new = self.cell(inputs, states, training=training)
            new = list(new) if isinstance(new, list | tuple) else [new]
            u = keras.random.uniform(keras.ops.shape(states[0]), seed=self.seed_generator)
            m = keras.ops.floor(1.0 - rate + u) if training else 1.0 - rate
            h = states[0] + m * (new[0] - states[0])
            return h, [h, *new[1:]]

    cell = getattr(keras.layers, cls + "Cell")(units)
    return keras.layers.RNN(ZoneoutCell(cell), return_sequences=True)


def _step_fn(tf, layer, x):
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, layer.trainable_weights)

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--input", "--inputs", dest="input", type=int, default=128, help="input size I"
    )
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import keras
    import numpy as np
    import tensorflow as tf

    import tf_rnn_ops

    B, T, n_in, H = args.batch, args.steps, args.input, args.units
    print(bench_peak.describe_path(), flush=True)
    peaks = bench_peak.fma_peaks(bench_peak.threads_used())
    print(f"FMA peak: {bench_peak.describe_peaks(peaks)}", flush=True)
    peak = bench_peak.ceiling(peaks)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((B, T, n_in)).astype(np.float32))
    for case in args.cases.split(","):
        cls, kw = CASES[case]
        ours = getattr(tf_rnn_ops.layers, cls)(H, return_sequences=True, **kw)
        no_cudnn = {} if cls == "SimpleRNN" else {"use_cudnn": False}  # SimpleRNN has no cuDNN
        if "zoneout" in kw:
            theirs = _keras_zoneout_rnn(keras, cls, H, kw["zoneout"])
        else:
            theirs = getattr(keras.layers, cls)(H, return_sequences=True, **no_cudnn, **kw)
        ours.build(x.shape)
        theirs.build(x.shape)
        theirs.set_weights(ours.get_weights())
        fns = {"ours": _step_fn(tf, ours, x), "keras": _step_fn(tf, theirs, x)}
        times = {name: [] for name in fns}
        for fn in fns.values():
            fn()  # trace and warm up
        for _ in range(args.rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                [g.numpy() for g in fn()]
                times[name].append(1e3 * (time.perf_counter() - t0))
        med = {name: statistics.median(t) for name, t in times.items()}
        goal = GOALS[case]
        gates = bench_peak.kernel_gates(ours, H)
        flops = bench_peak.rnn_product_flops(B, T, n_in, H, gates, training=True)
        floor = (
            "" if goal is None else "; " + bench_peak.describe_goal(goal, med["keras"], flops, peak)
        )
        print(
            f"{case} B={B} T={T} I={n_in} H={H}: training step ours {med['ours']:.1f} ms, "
            f"keras {med['keras']:.1f} ms, keras/ours {med['keras'] / med['ours']:.2f}x{floor}",
            flush=True,
        )


if __name__ == "__main__":
    main()
