"""A short side-by-side timing of the fused op's training step (forward, backward, every gradient)
and its backward alone, for comparing two builds of the op library in one session:

    python python/bench_train_step.py [--root DIR] [--rounds N]

`--root` names the directory holding the `tf_rnn_ops` package to time (default: this source tree),
e.g. a copy of another commit with its compiled libraries; run two such processes one after the
other, several times, so that changes of machine load hit both alike. Prints one line per case:
the median milliseconds of a training step and of the backprop op alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import bench_peak

CASES = [("gru", 64, 100, 128, 256), ("lstm", 64, 100, 128, 256)]  # mode, B, T, I, H


def _time_case(tf, ops, mode: str, B: int, T: int, I: int, H: int, rounds: int) -> str:  # noqa: E741
    n = int(ops.cudnn_rnn_params_size(num_layers=1, num_units=H, input_size=I, T=tf.float32,
                                      S=tf.int32, rnn_mode=mode)[0])  # fmt: skip
    x = tf.random.normal([T, B, I])
    h0 = tf.zeros([1, B, H])
    params = tf.Variable(tf.random.normal([n], stddev=0.05))
    kw = dict(input=x, input_h=h0, input_c=h0, rnn_mode=mode)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = ops.cudnn_rnn(params=params, is_training=True, **kw)[0]
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, params)

    y, hy, cy, reserve, _ = ops.cudnn_rnn(params=params, is_training=True, **kw)
    bkw = dict(kw, params=params.read_value(), sequence_lengths=tf.fill([B], T), output=y,
               output_h=hy, output_c=cy, output_backprop=y, output_h_backprop=hy,
               output_c_backprop=cy, reserve_space=reserve,
               host_reserved=tf.zeros([0], tf.int8))  # fmt: skip
    backprop = tf.function(lambda: ops.cudnn_rnn_backprop(**bkw)[3])
    times = {"step": [], "backprop": []}
    for fn in (step, backprop):
        fn().numpy()  # trace and warm up
    for _ in range(rounds):
        for name, fn in (("step", step), ("backprop", backprop)):
            t0 = time.perf_counter()
            fn().numpy()
            times[name].append(1e3 * (time.perf_counter() - t0))
    return (f"{mode} B={B} T={T} I={I} H={H}: training step "
            f"{statistics.median(times['step']):.1f} ms, backprop op "
            f"{statistics.median(times['backprop']):.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(__file__)))
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.root))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    import tf_rnn_ops

    print(bench_peak.describe_path(), flush=True)
    for case in CASES:
        print(_time_case(tf, tf_rnn_ops, *case, args.rounds), flush=True)


if __name__ == "__main__":
    main()
