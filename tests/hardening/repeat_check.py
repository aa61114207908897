"""Concurrency and determinism of every op (issue 7), run as a program in its own process.

    python tests/hardening/repeat_check.py --json OUT [--op-determinism] [--rounds R] [--seeds S]
                                           [--threads N] [--medium]

For every workload of workloads.py (each op forward and backprop, the registered gradients, the
16-bit paths, TensorFlow's own CudnnRNN* ops on our kernels), on inputs drawn from seeds 0..S-1:

* determinism: R repeated serial calls give bitwise the same outputs (and gradients) as the first;
* threads: the same calls from N Python threads at once (all workloads and seeds mixed, R rounds)
  give bitwise the serial results;
* graph branches: one tf.function holding the op on N different inputs as independent branches (run
  in parallel by the executor, inter-op pool of N threads) gives bitwise the serial results.

With --op-determinism, tf.config.experimental.enable_op_determinism() is on. The digests of the
serial results are written to OUT (JSON) with every mismatch found, so that the caller can also
compare two processes (with and without op determinism): they must agree bit for bit. Exit status 0
when no mismatch was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))
sys.path.insert(0, _HERE)

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--op-determinism", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--medium", action="store_true", help="also the thread-pool-sized workloads")
    args = ap.parse_args(argv)

    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.op_determinism:
        tf.config.experimental.enable_op_determinism()
    import workloads as W  # noqa: E402 - after the threading configuration

    table = dict(W.SMALL)
    table.update(W.TAPES)
    if args.medium:
        table.update({f"medium/{k}": v for k, v in W.MEDIUM.items()})
    failures: list[str] = []
    ref: dict[tuple[str, int], list] = {}
    digests: dict[str, str] = {}

    # 1. serial, repeated
    for name, fn in table.items():
        for seed in range(args.seeds):
            first = fn(seed)
            ref[(name, seed)] = first
            digests[f"{name}/{seed}"] = W.digest(first)
            for r in range(args.rounds):
                if not W.bitwise_equal(fn(seed), first):
                    failures.append(f"determinism: {name} seed {seed}: call {r + 2} differs")

    # 2. threads: every (workload, seed) R times, shuffled, from N threads at once
    tasks = [(n, s) for n in table for s in range(args.seeds)] * args.rounds
    random.Random(0).shuffle(tasks)
    lock = threading.Lock()
    barrier = threading.Barrier(args.threads)

    def worker(i):
        barrier.wait()  # start together
        for n, s in tasks[i :: args.threads]:
            out = table[n](s)
            if not W.bitwise_equal(out, ref[(n, s)]):
                with lock:
                    failures.append(f"threads: {n} seed {s} differs from the serial call")

    with ThreadPoolExecutor(args.threads) as ex:
        for f in [ex.submit(worker, i) for i in range(args.threads)]:
            f.result()

    # 3. parallel branches of one tf.function (the raw kernels: no Python math to be rewritten)
    import tf_rnn_ops  # noqa: E402

    n_br = args.threads
    branch_ops = {
        "gru_block_cell": (
            lambda s: W.gru_inputs(s, 64, 32, 64),
            lambda kw: tf_rnn_ops.gru_block_cell(**kw),
        ),
        "gru_block_cell_grad": (
            lambda s: _gru_grad_kwargs(W, s),
            lambda kw: tf_rnn_ops.gru_block_cell_grad(**kw),
        ),
        "cudnn_rnn": (
            lambda s: dict(
                W.rnn_inputs(s, mode="lstm", H=32, B=16, T=6, dropout=1.0), is_training=True
            ),
            lambda kw: tf_rnn_ops.cudnn_rnn(**kw),
        ),  # fmt: skip
        "cudnn_rnn_backprop": (
            lambda s: W._backprop_kwargs(s, mode="gru", H=32, B=16, T=6),
            lambda kw: tf_rnn_ops.cudnn_rnn_backprop(**kw),
        ),
        "tf.CudnnRNNV3": (
            lambda s: dict(W.rnn_inputs(s, mode="rnn_tanh", H=32, B=16, T=6), is_training=True),
            lambda kw: tf.raw_ops.CudnnRNNV3(**kw),
        ),
    }
    for name, (make, call) in branch_ops.items():
        inputs = [make(s) for s in range(n_br)]
        serial = [[t.numpy() for t in call(kw)] for kw in inputs]
        tensors = [{k: v for k, v in kw.items() if isinstance(v, tf.Tensor)} for kw in inputs]
        attrs = [{k: v for k, v in kw.items() if not isinstance(v, tf.Tensor)} for kw in inputs]

        @tf.function
        def branches(ts, attrs=attrs, call=call):
            return [call(dict(t, **a)) for t, a in zip(ts, attrs, strict=True)]

        for r in range(args.rounds):
            got = branches(tensors)
            for i in range(n_br):
                if not W.bitwise_equal([t.numpy() for t in got[i]], serial[i]):
                    failures.append(f"tf.function branches: {name} branch {i} round {r} differs")

    with open(args.json, "w") as f:
        json.dump({"digests": digests, "failures": failures}, f, indent=1, sort_keys=True)
    for line in failures:
        print(line)
    print(f"repeat_check: {len(table)} workloads x {args.seeds} seeds, {len(failures)} mismatches")
    return 1 if failures else 0


def _gru_grad_kwargs(W, seed):
    import numpy as np

    import tf_rnn_ops

    kw = W.gru_inputs(seed, 64, 32, 64)
    r, u, c, _ = tf_rnn_ops.gru_block_cell(**kw)
    d_h = tf.constant(np.random.default_rng(seed + 1).uniform(-1, 1, (64, 64)), tf.float32)
    return dict(kw, r=r, u=u, c=c, d_h=d_h)


if __name__ == "__main__":
    sys.exit(main())
