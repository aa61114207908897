"""Data-parallel training over 2 worker processes (tf.distribute.MultiWorkerMirroredStrategy) with
tf_rnn_ops' drop-in GRU and LSTM layers: the workers end with identical weights, equal to one
process training on the whole global batch.

The workers are python/demo_multiworker.py in `worker` mode: each its own process with its own
TF_CONFIG, on free localhost ports, each on its half of every global batch (a custom loop with
`strategy.run`; Keras 3.15's fit() does not run under this strategy). The reference here is one
process, no strategy, plain gradient descent written out (`w -= lr * dL/dw`) on the global batch.
float64, so the only difference is the order of the gradient sums.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from python_programs import python_program

import tf_rnn_ops  # noqa: F401  (registers the ops and layers)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.slow  # 2 TensorFlow processes and a cluster: ~1 minute on 2 cores


def _demo():
    return python_program("demo_multiworker")


def _reference(demo, steps, global_batch, dtype, seed, learning_rate):
    """One process, the whole global batch, the mean loss over it, w -= lr * grad."""
    x, y = demo.make_data(steps, global_batch, dtype, seed)
    model = demo.build_model(dtype, seed)
    for step in range(steps):
        with tf.GradientTape() as tape:
            pred = model(tf.constant(x[step]), training=True)
            loss = tf.reduce_mean(tf.reduce_sum(tf.square(pred - y[step]), axis=-1))
        grads = tape.gradient(loss, model.trainable_variables)
        for v, g in zip(model.trainable_variables, grads, strict=True):
            v.assign_sub(learning_rate * g)
    return [w.numpy() for w in model.weights]


def test_two_workers_match_one_process_on_the_global_batch(tmp_path):
    demo = _demo()

    class Args:
        # 0.25: Keras keeps the learning rate as a float32 variable; this one is exact there too.
        workers, steps, global_batch, dtype, seed, learning_rate = 2, 4, 10, "float64", 7, 0.25
        timeout = 240

    outs = demo.launch_workers(Args, str(tmp_path), progress_from_chief=False)
    workers = []
    for out in outs:
        with np.load(out) as f:
            workers.append([f[k] for k in sorted(f.files, key=lambda s: int(s.split("_")[1]))])
    ref = _reference(demo, Args.steps, Args.global_batch, Args.dtype, Args.seed, Args.learning_rate)
    initial = demo.build_model(Args.dtype, Args.seed).get_weights()

    assert len(workers[0]) == len(ref) == len(initial)
    for a, b in zip(workers[0], workers[1], strict=True):
        np.testing.assert_array_equal(a, b)  # the all-reduce gives both the same update
    for w, r, w0 in zip(workers[0], ref, initial, strict=True):
        assert w.shape == r.shape
        np.testing.assert_allclose(w, r, rtol=1e-10, atol=1e-12)
        assert np.max(np.abs(w - w0)) > 1e-4  # training moved every weight tensor


def test_workers_on_their_own_half_only_would_differ():
    """The comparison can tell: training on one worker's half alone gives other weights."""
    demo = _demo()
    full = _reference(demo, 4, 10, "float64", 7, 0.25)
    x, y = demo.make_data(4, 10, "float64", 7)
    model = demo.build_model("float64", 7)
    for step in range(4):
        with tf.GradientTape() as tape:
            pred = model(tf.constant(x[step, :5]), training=True)
            loss = tf.reduce_mean(tf.reduce_sum(tf.square(pred - y[step, :5]), axis=-1))
        grads = tape.gradient(loss, model.trainable_variables)
        for v, g in zip(model.trainable_variables, grads, strict=True):
            v.assign_sub(0.25 * g)
    half = [w.numpy() for w in model.weights]
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(full, half, strict=True)) > 1e-6
