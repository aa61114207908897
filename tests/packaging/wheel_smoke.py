"""Run by tests/packaging/test_wheel.py with the Python of a venv where the wheel is installed, from
a folder outside the source tree: the installed package's op, its gradient, a drop-in layer and a
SavedModel round trip, each against an independent reference. Exits non-zero on any mismatch.

    VENV/bin/python wheel_smoke.py  (prints where tf_rnn_ops and TensorFlow came from)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_rnn_ops  # noqa: E402


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def check_installed_copy() -> None:
    here = os.path.dirname(os.path.abspath(tf_rnn_ops.__file__))
    prefix = os.path.realpath(sys.prefix)
    assert os.path.realpath(here).startswith(prefix), (here, prefix)
    for name in (
        "_tf_rnn_ops.so",
        "_tf_cudnn_cpu_kernels.so",
        "_tf_rnn_ops_avx512.so",
        "_tf_cudnn_cpu_kernels_avx512.so",
        "_build_info.json",
    ):
        assert os.path.exists(os.path.join(here, name)), name
    print(
        f"tf_rnn_ops from {here}; TensorFlow {tf.__version__} from {os.path.dirname(tf.__file__)}"
    )


def check_op(rng) -> None:
    """GRUBlockCell forward against numpy float64 (TensorFlow's GRUBlockCell equations)."""
    b, i, h = 3, 5, 4
    x, h_prev = rng.normal(size=(b, i)), rng.normal(size=(b, h))
    w_ru, w_c = rng.normal(size=(i + h, 2 * h)), rng.normal(size=(i + h, h))
    b_ru, b_c = rng.normal(size=2 * h), rng.normal(size=h)
    r, u, c, h_new = (
        t.numpy()
        for t in tf_rnn_ops.gru_block_cell(
            x=x, h_prev=h_prev, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c
        )
    )
    ru = sigmoid(np.concatenate([x, h_prev], 1) @ w_ru + b_ru)
    r_ref, u_ref = ru[:, :h], ru[:, h:]
    c_ref = np.tanh(np.concatenate([x, r_ref * h_prev], 1) @ w_c + b_c)
    h_ref = u_ref * h_prev + (1 - u_ref) * c_ref
    for got, want in ((r, r_ref), (u, u_ref), (c, c_ref), (h_new, h_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    print("op: GRUBlockCell matches numpy")


def check_gradient(rng) -> None:
    """The registered gradient (our GRUBlockCellGrad) against finite differences, float64."""
    b, i, h = 2, 3, 3
    h_prev = tf.constant(rng.normal(size=(b, h)))
    w_ru, w_c = (
        tf.constant(rng.normal(size=(i + h, 2 * h))),
        tf.constant(rng.normal(size=(i + h, h))),
    )
    b_ru, b_c = tf.constant(rng.normal(size=2 * h)), tf.constant(rng.normal(size=h))

    def f(x, h_prev, w_ru):
        _, _, _, h_new = tf_rnn_ops.gru_block_cell(
            x=x, h_prev=h_prev, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c
        )
        return h_new

    # delta=1e-6 as in the other float64 checks: TensorFlow's default (1/1024) leaves a truncation
    # error of ~1e-6 in the central difference, which failed rtol=1e-6 on ~7% of random draws.
    theoretical, numerical = tf.test.compute_gradient(
        f, [tf.constant(rng.normal(size=(b, i))), h_prev, w_ru], delta=1e-6
    )
    for t, n in zip(theoretical, numerical, strict=True):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6)
    print("gradient: matches finite differences")


def check_layer(rng) -> keras.Model:
    """The drop-in GRU against keras.layers.GRU with the same weights; returns a model on it."""
    x = rng.normal(size=(3, 6, 5)).astype("float32")
    ours = tf_rnn_ops.layers.GRU(4, return_sequences=True)
    theirs = keras.layers.GRU(4, return_sequences=True)
    ours.build(x.shape)
    theirs.build(x.shape)
    ours.set_weights(
        [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in ours.get_weights()]
    )
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), rtol=1e-5, atol=1e-5)
    print("layer: tf_rnn_ops.layers.GRU matches keras.layers.GRU")
    inputs = keras.Input((6, 5))
    return keras.Model(inputs, keras.layers.Dense(2)(ours(inputs)))


def check_saved_model(model: keras.Model, rng) -> None:
    """Export, then serve from a fresh process (which imports tf_rnn_ops first)."""
    x = rng.normal(size=(2, 6, 5)).astype("float32")
    want = model(x).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "saved")
        model.export(path, verbose=False)
        np.save(os.path.join(tmp, "x.npy"), x)
        code = (
            "import os, sys, numpy as np, tensorflow as tf, tf_rnn_ops\n"
            "m = tf.saved_model.load(sys.argv[1])\n"
            "np.save(sys.argv[3], m.serve(np.load(sys.argv[2])).numpy())\n"
        )
        out = os.path.join(tmp, "y.npy")
        subprocess.run(
            [sys.executable, "-c", code, path, os.path.join(tmp, "x.npy"), out],
            check=True,
            cwd=tmp,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        )
        np.testing.assert_allclose(np.load(out), want, rtol=1e-5, atol=1e-6)
    print("SavedModel: a fresh process serves it with the same outputs")


def main() -> None:
    rng = np.random.default_rng()
    check_installed_copy()
    check_op(rng)
    check_gradient(rng)
    check_saved_model(check_layer(rng), rng)
    print("wheel smoke: OK")


if __name__ == "__main__":
    main()
