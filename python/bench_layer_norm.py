"""Side-by-side timing of the fused layer-norm layers against their peer, the same cells in Keras
ops inside `keras.layers.RNN` (tf_rnn_ops.layers.LayerNormLSTMCell / LayerNormGRUCell), in one run:

    python python/bench_layer_norm.py [--rounds N] [--batch B] [--steps T] [--input I] [--units H]

Cells: LayerNormLSTM, LayerNormGRU, and LayerNormLSTM with TF Addons' dropout and
recurrent_dropout (0.2 each; the fused op takes h's mask as its recurrent_mask). Prints, per cell,
the median milliseconds of inference (a forward call) and of a training step
(forward, backward, every gradient) for both, and the peer / fused ratio (the goal: >= 3x, both),
with the time the goal asks for against the products' time at the machine's FMA peak
(`bench_peak.describe_goal`).
Rounds alternate between the two, so that changes of machine load hit both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import bench_peak

# `make bench` runs this file directly: `import tf_rnn_ops` from the source tree.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


GOAL = 3.0  # issue 20: >= 3x the same cell in Keras ops, inference and training


def _median_ms(fn, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--units", type=int, default=256)
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from tf_rnn_ops import layers as L

    B, T, D, H = args.batch, args.steps, args.input, args.units
    x = tf.random.normal([B, T, D])
    print(f"B={B} T={T} I={D} H={H}, median ms over {args.rounds} rounds")
    print(bench_peak.describe_path())
    peaks = bench_peak.fma_peaks(bench_peak.threads_used())
    print(f"FMA peak: {bench_peak.describe_peaks(peaks)}")
    peak = bench_peak.ceiling(peaks)
    dropouts = {"dropout": 0.2, "recurrent_dropout": 0.2}
    for name, fused_cls, cell_cls, kw in (
        ("LayerNormLSTM", L.LayerNormLSTM, L.LayerNormLSTMCell, {}),
        ("LayerNormGRU", L.LayerNormGRU, L.LayerNormGRUCell, {}),
        ("LayerNormLSTM+rd", L.LayerNormLSTM, L.LayerNormLSTMCell, dropouts),
    ):
        fused = fused_cls(H, return_sequences=True, **kw)
        peer = keras.layers.RNN(cell_cls(H, **kw), return_sequences=True)
        fused(x)
        peer(x)
        peer.set_weights(fused.get_weights())
        fns = {}
        for label, layer in (("fused", fused), ("keras", peer)):

            @tf.function
            def infer(layer=layer):
                return layer(x, training=False)

            @tf.function
            def train(layer=layer):
                with tf.GradientTape() as tape:
                    y = layer(x, training=True)
                    loss = tf.reduce_sum(y * y)
                return tape.gradient(loss, layer.trainable_weights)

            fns[label] = (infer, train)
            infer().numpy()
            [g.numpy() for g in train()]
        times = {(k, m): [] for k in fns for m in ("infer", "train")}
        for _ in range(args.rounds):
            for k, (infer, train) in fns.items():
                times[(k, "infer")] += _median_ms(lambda f=infer: f().numpy(), 1)
                times[(k, "train")] += _median_ms(lambda f=train: [g.numpy() for g in f()], 1)
        for mode in ("infer", "train"):
            f = statistics.median(times[("fused", mode)])
            k = statistics.median(times[("keras", mode)])
            gates = bench_peak.kernel_gates(fused, H)
            flops = bench_peak.rnn_product_flops(B, T, D, H, gates, training=mode == "train")
            goal = bench_peak.describe_goal(GOAL, k, flops, peak)
            print(f"{name:16s} {mode}: fused {f:8.1f} ms  keras.layers.RNN(cell) {k:8.1f} ms  "
                  f"ratio {k / f:5.2f}x; {goal}")  # fmt: skip


if __name__ == "__main__":
    main()
