"""What the row-range tests share: launching a program of tests/ops on a TensorFlow pool of a
given size (in a subprocess: the pool's size is fixed once TensorFlow starts), and, inside such a
program, setting the pool, running a layer under a tape and comparing rounds against a reference.

Used by tests/ops/test_row_range_threads.py, test_keras_rnn_dropout_op.py,
test_keras_rnn_zoneout_op.py and their programs (row_range_program.py,
dropout_row_range_program.py, zoneout_row_range_program.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OPS = Path(__file__).resolve().parent.parent / "ops"
REPO = OPS.parent.parent


def run_program(name: str, *args, timeout: float = 900) -> subprocess.CompletedProcess:
    """Runs tests/ops/<name> with args on the CPU (the repository importable), capturing output."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run(
        [sys.executable, str(OPS / name), *(str(a) for a in args)],
        env=env, cwd=str(REPO), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def passed(done: subprocess.CompletedProcess) -> bool:
    """Whether a program exited 0 and printed "ok" last."""
    return done.returncode == 0 and done.stdout.strip().endswith("ok")


# ------------------------------------------------------------------ inside a program (TensorFlow)
def set_pool(threads: int) -> None:
    """TensorFlow's intra-op pool of `threads` threads (before any op runs), one inter-op thread."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def layer_outputs_and_grads(layer, x, mask, wy) -> list:
    """A training call of `layer` on x: [y, d x, d weights...] of sum(y * wy), in float64 numpy."""
    import numpy as np
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, mask=mask, training=True)
        loss = tf.reduce_sum(y * tf.cast(wy, y.dtype))
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return [np.asarray(y, np.float64)] + [np.asarray(g, np.float64) for g in grads]


def compare_rounds(label: str, run_ours, want: list, rounds: int, tol: float = 1e-4) -> list[str]:
    """Runs run_ours() `rounds` times against want (a race shows in some rounds only); returns a
    line per item that differs, naming the case, round, item and worst index."""
    import numpy as np

    failures = []
    for r in range(rounds):
        for i, (a, b) in enumerate(zip(run_ours(), want, strict=True)):
            if not np.allclose(a, b, rtol=tol, atol=tol):
                worst = np.unravel_index(np.argmax(np.abs(a - b)), a.shape)
                failures.append(f"{label} round {r} item {i} {worst}")
    return failures


def report(failures: list[str]) -> int:
    """Prints "ok" or the failures; the program's exit status."""
    print("\n".join(failures) if failures else "ok")
    return 1 if failures else 0
