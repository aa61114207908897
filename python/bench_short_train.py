"""Training steps of short sequences: the drop-in layers against Keras' own, where a call's work is
small and its per-call costs show (a one-step training step, truncated backpropagation through few
steps, small batches), and small layers over many rows (H = 16-64 at B = 1024-16384), where the
passes over the states and the weight gradients' few columns count. The drop-in layers must never
be slower than the Keras layer they replace.

    python python/bench_short_train.py [--rounds N] [--cases GRU:1:1:1024,...]

A case is layer:B:T:H (I = 128), where layer may carry options after "+": GRU+rb is
GRU(reset_after=False), +rd recurrent_dropout=0.2 (masks drawn per call, as in Keras). Each round
runs at least `--calls` training steps (forward, backward, every weight gradient, results fetched),
and 50 ms of Keras', of either layer, alternating, so that changes of machine load hit both alike;
prints the median milliseconds a step and the ratio Keras / ours, and beside them the process's
median CPU time a step (all threads; it varies less than the wall time on a shared machine, and
shows how many cores each keeps busy). Speed is measured here, never asserted in tests; results
go to docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import bench_peak
from bench_cells20 import _step_fn

CASES = (
    "GRU:1:1:256,GRU:1:1:1024,LSTM:1:1:1024,GRU:8:1:512,GRU:64:1:256,LSTM:64:1:256,"
    "SimpleRNN:64:1:256,GRU:64:2:256,LSTM:8:4:512,LSTM:64:8:256,GRU+rb:1:1:1024,GRU+rb:64:1:256,"
    "GRU+rd:1:1:1024,LSTM+rd:64:1:256,SimpleRNN:16384:1:16,SimpleRNN:16384:1:64,"
    "SimpleRNN+rd:16384:1:64,GRU+rd:1024:16:64"
)
OPTIONS = {"rb": {"reset_after": False}, "rd": {"recurrent_dropout": 0.2}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=5, help="least steps timed together a round")
    parser.add_argument("--cases", default=CASES, help="comma-separated layer:B:T:H")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import keras
    import numpy as np
    import tensorflow as tf

    import tf_rnn_ops

    print(bench_peak.describe_path(), flush=True)
    rng = np.random.default_rng(0)
    for case in args.cases.split(","):
        layer, B, T, H = case.split(":")
        cls, *opts = layer.split("+")
        kwargs = {k: v for opt in opts for k, v in OPTIONS[opt].items()}
        B, T, H = int(B), int(T), int(H)
        x = tf.constant(rng.standard_normal((B, T, 128)).astype(np.float32))
        ours = getattr(tf_rnn_ops.layers, cls)(H, return_sequences=True, **kwargs)
        theirs = getattr(keras.layers, cls)(H, return_sequences=True, **kwargs)
        ours.build(x.shape)
        theirs.build(x.shape)
        theirs.set_weights(ours.get_weights())
        fns = {"ours": _step_fn(tf, ours, x), "keras": _step_fn(tf, theirs, x)}
        times = {name: [] for name in fns}
        cpu_times = {name: [] for name in fns}
        for fn in fns.values():
            fn()  # trace and warm up
        t0 = time.perf_counter()
        [g.numpy() for g in fns["keras"]()]
        calls = max(args.calls, int(0.05 / (time.perf_counter() - t0)))  # rounds of >= 50 ms
        for _ in range(args.rounds):
            for name, fn in fns.items():
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    [g.numpy() for g in fn()]
                times[name].append(1e3 * (time.perf_counter() - t0) / calls)
                cpu_times[name].append(1e3 * (time.process_time() - c0) / calls)
        med = {name: statistics.median(t) for name, t in times.items()}
        cpu = {name: statistics.median(t) for name, t in cpu_times.items()}
        print(
            f"{layer} B={B} T={T} I=128 H={H}: training step ours {med['ours']:.2f} ms, "
            f"keras {med['keras']:.2f} ms, keras/ours {med['keras'] / med['ours']:.2f}x "
            f"(CPU time a step: ours {cpu['ours']:.2f} ms, keras {cpu['keras']:.2f} ms)",
            flush=True,
        )


if __name__ == "__main__":
    main()
