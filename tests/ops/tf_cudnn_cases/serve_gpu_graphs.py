"""Serves, in a fresh process, the SavedModels that save_gpu_graphs.py wrote
(tests/ops/test_tf_cudnn_cpu.py).

Usage: serve_gpu_graphs.py SAVED_DIR OUT_DIR without|with

* without: does not import tf_rnn_ops; loads each SavedModel, calls it and records the error
  (OUT_DIR/errors.json).
* with: `import tf_rnn_ops` first; then per case calls the loaded function, takes gradients with
  tf.GradientTape (through TensorFlow's registered gradient of CudnnRNNV3) w.r.t. the inputs and the
  loaded variables, and for cases.FINE_TUNE_CASES runs SGD steps on the loaded variables
  (OUT_DIR/<case>.npz).
"""

from __future__ import annotations

import json
import os
import sys

import cases as C
import numpy as np
import tensorflow as tf


def load(saved_dir, name):
    return tf.saved_model.load(os.path.join(saved_dir, name)), dict(
        np.load(os.path.join(saved_dir, f"{name}.npz"))
    )


def serve_args(d):
    return [tf.constant(d[k]) for k in ("x", "h0", "c0", "mask")]


def without(saved_dir, out_dir):
    errors = {}
    for name in list(C.KERAS_GPU_CASES) + [C.KERAS_EXPORT_CASE]:
        m, d = load(saved_dir, name)
        try:
            if name == C.KERAS_EXPORT_CASE:
                m.serve(tf.constant(d["x"]))
            else:
                m.serve(*serve_args(d))
            errors[name] = None
        except Exception as e:  # noqa: BLE001 - the test asserts on the type and message
            errors[name] = f"{type(e).__name__}: {e}"
    result = {
        "errors": errors,
        "tf_rnn_ops_imported": any(m.startswith("tf_rnn_ops") for m in sys.modules),
    }
    with open(os.path.join(out_dir, "errors.json"), "w") as f:
        json.dump(result, f, indent=1)


def with_package(saved_dir, out_dir):
    import tf_rnn_ops  # noqa: F401 - gives TensorFlow's CudnnRNN* ops CPU kernels

    for name, spec in C.KERAS_GPU_CASES.items():
        lstm = spec["kind"] == "lstm"
        m, d = load(saved_dir, name)
        x, h0, c0, mask = serve_args(d)
        variables = [m.kernel, m.recurrent_kernel, m.bias]
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0])
            r = m.serve(x, h0, c0, mask)
            # Unweighted at padded steps: cuDNN's outputs there are constant zeros.
            loss = tf.reduce_sum(r["outputs"] * d["gy"]) + tf.reduce_sum(r["h"] * d["gh"])
            if lstm:
                loss += tf.reduce_sum(r["c"] * d["gc"])
        grads = tape.gradient(loss, [x, h0, c0] + variables)
        out = {k: v.numpy() for k, v in r.items()}
        for key, g in zip(
            ("dx", "dh0", "dc0", "dkernel", "drecurrent_kernel", "dbias"), grads, strict=True
        ):
            if g is not None:
                out[key] = tf.convert_to_tensor(g).numpy()

        if name in C.FINE_TUNE_CASES:
            valid = d["valid"][..., None].astype(np.float32)
            losses = []
            for _ in range(C.FINE_TUNE_STEPS + 1):
                with tf.GradientTape() as tape:
                    y = m.serve(x, h0, c0, mask)["outputs"]
                    err = (y - d["ft_target"]) * valid
                    ft_loss = tf.reduce_sum(err * err) / float(valid.sum() * C.UNITS)
                losses.append(float(ft_loss))
                for v, dv in zip(variables, tape.gradient(ft_loss, variables), strict=True):
                    v.assign_sub(C.FINE_TUNE_LR * tf.convert_to_tensor(dv))
            out["ft_losses"] = np.array(losses)
        np.savez(os.path.join(out_dir, f"{name}.npz"), **out)

    # The whole exported Keras model.
    m, d = load(saved_dir, C.KERAS_EXPORT_CASE)
    with open(os.path.join(saved_dir, "manifest.json")) as f:
        names = json.load(f)["cases"][C.KERAS_EXPORT_CASE]["variable_names"]
    by_name = {v.name: v for v in m.trainable_variables}
    variables = [by_name[n] for n in names]
    x = tf.constant(d["x"])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = m.serve(x)
        loss = tf.reduce_sum(y * d["gy"])
    grads = tape.gradient(loss, [x] + variables)
    out = {"y": y.numpy(), "dx": grads[0].numpy()}
    for i, g in enumerate(grads[1:]):
        out[f"dvar{i}"] = tf.convert_to_tensor(g).numpy()
    np.savez(os.path.join(out_dir, f"{C.KERAS_EXPORT_CASE}.npz"), **out)


if __name__ == "__main__":
    saved, out, how = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    {"without": without, "with": with_package}[how](saved, out)
