"""`make bench` (part): the drop-in layers under XLA, against Keras' own layers, in one run.

Under `model.compile(jit_compile=True)` our GRU/LSTM trace Keras' formulation (the fused op has no
XLA kernel), so a jit-compiled training step should take what Keras' own layer takes under XLA;
beside them, both without XLA (ours: the fused op; Keras: its step loop). Shapes of Keras' weather
forecasting example by default (LSTM(32) over 120 steps of 7 features, batch 256). Reported as ms
per training step (median of rounds, every implementation once per round in rotating order) and as
ratios against "ours, XLA". Never asserted.

    python python/bench_xla.py [--batch 256 --steps 120 --input 7 --units 32 --rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import bench_peak

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # `import tf_rnn_ops` from the source tree
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_rnn_ops  # noqa: E402


def _step_fn(model, jit: bool):
    opt = keras.optimizers.Adam(1e-3)
    opt.build(model.trainable_variables)

    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--input", "--features", dest="input", type=int, default=7, help="input size I")
    p.add_argument("--units", type=int, default=32)
    p.add_argument("--layer", default="LSTM", choices=["GRU", "LSTM", "SimpleRNN"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=5, help="training steps per timed call")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((args.batch, args.steps, args.input)), tf.float32)
    y = tf.constant(rng.standard_normal((args.batch, 1)), tf.float32)

    def model(mod):
        inp = keras.Input((args.steps, args.input))
        return keras.Model(inp, keras.layers.Dense(1)(getattr(mod, args.layer)(args.units)(inp)))

    impls = {
        "ours, XLA": _step_fn(model(tf_rnn_ops.layers), True),
        "Keras, XLA": _step_fn(model(keras.layers), True),
        "ours, fused op (no XLA)": _step_fn(model(tf_rnn_ops.layers), False),
        "Keras, step loop (no XLA)": _step_fn(model(keras.layers), False),
    }
    for fn in impls.values():  # trace and compile
        fn(x, y).numpy()
    times = {name: [] for name in impls}
    names = list(impls)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            for _ in range(args.calls):
                loss = impls[name](x, y)
            loss.numpy()
            times[name].append((time.perf_counter() - t0) / args.calls * 1e3)
    base = statistics.median(times["ours, XLA"])
    print(
        f"{args.layer}({args.units}), B={args.batch}, T={args.steps}, I={args.input}: "
        f"training step, ms (median of {args.rounds} rounds of {args.calls}); "
        + bench_peak.describe_path()
    )
    for name in names:
        ms = statistics.median(times[name])
        print(f"  {name:28s} {ms:9.2f} ms   {ms / base:5.2f}x of ours, XLA")


if __name__ == "__main__":
    main()
