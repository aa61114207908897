"""Demo: data-parallel training on 2 worker processes with MultiWorkerMirroredStrategy.

A small sequence model on tf_rnn_ops' drop-in layers (`GRU` then `LSTM`, then a Dense head) learns
to regress the mean of a noisy sequence. `python python/demo_multiworker.py` starts 2 worker
processes on this machine (each with its own `TF_CONFIG`, on free localhost ports); each trains on
its half of every global batch and the strategy all-reduces the gradients, so both end with the
same weights — the weights one process gets by training on the whole global batch, which the demo
then computes and compares (exits 1 when they differ).

Keras 3.15's `model.fit()` does not run under MultiWorkerMirroredStrategy, even with Keras's own
layers (its `_maybe_symbolic_build` reduces a PerReplica batch), so the workers train with a custom
loop: `strategy.run(train_step)` inside a `tf.function`, `tf.nn.compute_average_loss` over the
global batch and a Keras optimizer; the chief prints Keras-style progress.

    python python/demo_multiworker.py [--steps=30 --global_batch=64 --dtype=float32]
    python python/demo_multiworker.py worker --task=0 --ports=P0,P1 --out=w0.npz  # one worker
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run from a source tree without installing the package
    sys.path.insert(0, REPO)

TIME_STEPS, FEATURES, GRU_UNITS, LSTM_UNITS = 7, 3, 8, 5


def make_data(steps: int, global_batch: int, dtype: str, seed: int):
    """`steps` global batches: x [steps, B, T, I] and y [steps, B, 1] (the mean of each sequence's
    first feature, so the model has to carry it along the sequence)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(steps, global_batch, TIME_STEPS, FEATURES)).astype(dtype)
    y = x[..., 0].mean(axis=-1, keepdims=True) + 0.05 * rng.normal(size=(steps, global_batch, 1))
    return x, y.astype(dtype)


def build_model(dtype: str, seed: int):
    """GRU -> LSTM -> Dense on tf_rnn_ops' drop-in layers, with weights drawn from `seed` (the same
    in every process)."""
    import keras
    import numpy as np

    import tf_rnn_ops

    model = keras.Sequential(
        [
            keras.Input((TIME_STEPS, FEATURES), dtype=dtype),
            tf_rnn_ops.layers.GRU(GRU_UNITS, return_sequences=True, dtype=dtype),
            tf_rnn_ops.layers.LSTM(LSTM_UNITS, dtype=dtype),
            keras.layers.Dense(1, dtype=dtype),
        ]
    )
    rng = np.random.default_rng(seed)
    model.set_weights([0.3 * rng.normal(size=w.shape).astype(dtype) for w in model.get_weights()])
    return model


def free_ports(n: int) -> list[int]:
    """n TCP ports on localhost that nothing listens on now (the OS picks them)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker(args) -> None:
    """One worker: joins the cluster of TF_CONFIG, trains, writes its final weights to --out."""
    ports = [int(p) for p in args.ports.split(",")]
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"localhost:{p}" for p in ports]},
            "task": {"type": "worker", "index": args.task},
        }
    )
    import keras
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    replicas = strategy.num_replicas_in_sync
    if args.global_batch % replicas:
        raise ValueError(f"--global_batch={args.global_batch} is not a multiple of {replicas}")
    local = args.global_batch // replicas
    x, y = make_data(args.steps, args.global_batch, args.dtype, args.seed)

    with strategy.scope():
        model = build_model(args.dtype, args.seed)
        optimizer = keras.optimizers.SGD(args.learning_rate)

    def local_slice(step: int):
        # Each replica (one per worker here) takes its own rows of the global batch.
        def value_fn(ctx):
            rows = slice(
                ctx.replica_id_in_sync_group * local, (ctx.replica_id_in_sync_group + 1) * local
            )
            return tf.constant(x[step, rows]), tf.constant(y[step, rows])

        return strategy.experimental_distribute_values_from_function(value_fn)

    @tf.function
    def train_step(inputs):
        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                per_example = tf.reduce_sum(tf.square(model(xb, training=True) - yb), axis=-1)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=args.global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        losses = strategy.run(replica_step, args=inputs)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    chief = args.task == 0
    progbar = keras.utils.Progbar(args.steps, stateful_metrics=["loss"]) if args.progress else None
    if chief and progbar:
        print(
            f"worker 0 of {len(ports)}: {replicas} replicas in sync, global batch "
            f"{args.global_batch} ({local} per worker), {args.dtype}",
            flush=True,
        )
    for step in range(args.steps):
        loss = float(train_step(local_slice(step)))
        if chief and progbar:
            progbar.update(step + 1, [("loss", loss)])
    np.savez(args.out, *[w.numpy() for w in model.weights])


def train_single_process(
    steps: int, global_batch: int, dtype: str, seed: int, learning_rate: float
):
    """The reference: one process, no strategy, the whole global batch each step."""
    import keras
    import tensorflow as tf

    x, y = make_data(steps, global_batch, dtype, seed)
    model = build_model(dtype, seed)
    optimizer = keras.optimizers.SGD(learning_rate)
    for step in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                tf.reduce_sum(tf.square(model(x[step], training=True) - y[step]), -1)
            )
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return [w.numpy() for w in model.weights]


def launch_workers(args, out_dir: str, progress_from_chief: bool) -> list[str]:
    """Starts the workers (this file, `worker` mode) on free localhost ports and waits for them
    (at most --timeout seconds). Returns their weight files."""
    ports = free_ports(args.workers)
    outs = [os.path.join(out_dir, f"worker{i}.npz") for i in range(args.workers)]
    procs = []
    for i in range(args.workers):
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "worker",
            f"--task={i}",
            f"--ports={','.join(map(str, ports))}",
            f"--out={outs[i]}",
            f"--steps={args.steps}",
            f"--global_batch={args.global_batch}",
            f"--dtype={args.dtype}",
            f"--seed={args.seed}",
            f"--learning_rate={args.learning_rate}",
        ]
        if progress_from_chief and i == 0:
            cmd.append("--progress")
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1")
        env.pop("TF_CONFIG", None)
        quiet = None if (progress_from_chief and i == 0) else subprocess.DEVNULL
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=quiet, stderr=subprocess.PIPE, text=True)
        )
    deadline = time.monotonic() + args.timeout
    try:
        for i, p in enumerate(procs):
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if p.returncode != 0:
                raise RuntimeError(f"worker {i} exited with {p.returncode}:\n{err[-3000:]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="demo", choices=["demo", "worker"])
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--ports", default="")
    parser.add_argument("--out", default="")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--global_batch", type=int, default=64)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    if args.mode == "worker":
        worker(args)
        return 0

    import numpy as np

    print(
        f"Training on {args.workers} worker processes (MultiWorkerMirroredStrategy, localhost); "
        "progress from worker 0:",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        outs = launch_workers(args, tmp, progress_from_chief=True)
        took = time.monotonic() - t0
        workers = [
            [f[k] for k in sorted(f.files, key=lambda s: int(s.split("_")[1]))]
            for f in map(np.load, outs)
        ]
    print(
        f"{args.workers} workers done in {took:.1f} s; now one process on the global batch...",
        flush=True,
    )
    reference = train_single_process(
        args.steps, args.global_batch, args.dtype, args.seed, args.learning_rate
    )
    tol = 1e-5 if args.dtype == "float32" else 1e-10
    ok = True
    for i, w in enumerate(workers):
        same_as_0 = max(float(np.max(np.abs(a - b))) for a, b in zip(w, workers[0], strict=True))
        vs_ref = max(
            float(np.max(np.abs(a - b) / (1 + np.abs(b))))
            for a, b in zip(w, reference, strict=True)
        )
        print(
            f"worker {i}: max |w - worker 0| = {same_as_0:.1e}, "
            f"max relative |w - one process| = {vs_ref:.1e}"
        )
        ok &= same_as_0 == 0.0 and vs_ref < tol
    print(
        "OK: the workers hold identical weights, equal to one process on the global batch"
        if ok
        else "FAILED: the weights differ"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
