"""Writes, on this CPU machine, the SavedModels that Keras 3 writes on a CUDA GPU machine, and the
Keras CPU reference values to serve them against (tests/ops/test_tf_cudnn_cpu.py, issue 9).

Usage: save_gpu_graphs.py OUT_DIR

This process must NOT import tf_rnn_ops: TensorFlow has no CPU kernel for CudnnRNNV3 here, and a
graph may hold an op without a kernel, exactly as a GPU machine's export does. It writes, per case
of cases.KERAS_GPU_CASES, OUT_DIR/<case>/ (a SavedModel of a tf.Module whose tf.function `serve` is
Keras's `_cudnn_gru` / `_cudnn_lstm` over the layer's weights as tf.Variables) and
OUT_DIR/<case>.npz (inputs, loss weights, Keras outputs and gradients); OUT_DIR/<KERAS_EXPORT_CASE>/
(`model.export` of a Keras model whose GRU and LSTM take their cuDNN path); OUT_DIR/manifest.json
(what this process saw).

"As on a GPU machine" is two patches while tracing: `tf.sysconfig.get_build_info()["is_cuda_build"]`
reads True (so `_cudnn_gru` swaps the z and r gates into cuDNN's order, as it does only on CUDA
builds), and, for the whole-model export, Keras's `_is_gpu_available()` reads True (so the layers
pick `_cudnn_*`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from unittest import mock

import cases as C
import numpy as np
import tensorflow as tf

keras_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")
import keras  # noqa: E402

F32 = np.float32


@contextlib.contextmanager
def as_on_a_cuda_machine(gpu_available: bool = False):
    info = dict(tf.sysconfig.get_build_info())
    info["is_cuda_build"] = True
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(tf.sysconfig, "get_build_info", lambda: dict(info)))
        if gpu_available:
            stack.enter_context(mock.patch.object(keras_rnn, "_is_gpu_available", lambda: True))
        yield


def saved_op_types(path: str) -> list[str]:
    """Every op type in the SavedModel's graph and function library."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    types = []
    for mg in sm.meta_graphs:
        types += [n.op for n in mg.graph_def.node]
        for fn in mg.graph_def.library.function:
            types += [n.op for n in fn.node_def]
    return types


class KerasCudnnGraph(tf.Module):
    """The layer's weights as tf.Variables and `serve`: Keras's own cuDNN graph over them."""

    def __init__(self, kind, time_major, masked, go_backwards, kernel, recurrent_kernel, bias):
        super().__init__()
        self.kernel = tf.Variable(kernel, name="kernel")
        self.recurrent_kernel = tf.Variable(recurrent_kernel, name="recurrent_kernel")
        self.bias = tf.Variable(bias, name="bias")

        def serve(x, h0, c0, mask):
            m = mask if masked else None
            if kind == "gru":
                last, outputs, (h,) = keras_rnn._cudnn_gru(
                    x,
                    h0,
                    self.kernel,
                    self.recurrent_kernel,
                    self.bias,
                    m,
                    time_major,
                    go_backwards,
                    True,
                )
                return {"last": last, "outputs": outputs, "h": h}
            last, outputs, (h, c) = keras_rnn._cudnn_lstm(
                x,
                h0,
                c0,
                self.kernel,
                self.recurrent_kernel,
                self.bias,
                m,
                time_major,
                go_backwards,
                True,
            )
            return {"last": last, "outputs": outputs, "h": h, "c": c}

        state = tf.TensorSpec([None, C.UNITS], tf.float32)
        self.serve = tf.function(
            serve,
            input_signature=[
                tf.TensorSpec([None, None, C.INPUT], tf.float32),
                state,
                state,
                tf.TensorSpec([None, None], tf.bool),
            ],
        )


def keras_layer(kind, go_backwards, weights, **kw):
    cls = keras.layers.GRU if kind == "gru" else keras.layers.LSTM
    layer = cls(C.UNITS, go_backwards=go_backwards, **kw)
    layer.build((None, None, C.INPUT))
    layer.set_weights(weights)
    return layer


def keras_case(name, spec, rng, out_dir, manifest):
    kind, tm, masked, back = spec["kind"], spec["time_major"], spec["masked"], spec["go_backwards"]
    lstm = kind == "lstm"
    B, T, n_in, H = C.BATCH, C.STEPS, C.INPUT, C.UNITS
    g = 4 if lstm else 3
    weights = [
        rng.uniform(-0.5, 0.5, (n_in, g * H)).astype(F32),
        rng.uniform(-0.5, 0.5, (H, g * H)).astype(F32),
        rng.uniform(-0.5, 0.5, (g * H,) if lstm else (2, g * H)).astype(F32),
    ]
    lengths = np.array(
        (C.LENGTHS_TIME_MAJOR if tm else C.LENGTHS_BATCH_MAJOR) if masked else (T,) * B, np.int32
    )
    steps = np.arange(T)[None, :]
    mask_bm = steps < lengths[:, None]  # [B, T], right-padded
    # Where the (processing-order) outputs are valid: the first len steps, or the last len steps
    # with go_backwards. Elsewhere cuDNN's outputs are 0; Keras' CPU path may carry the last output.
    valid_bm = (steps >= T - lengths[:, None]) if back else mask_bm
    x_bm = rng.uniform(-1, 1, (B, T, n_in)).astype(F32)
    x_bm[~mask_bm] = 0.0
    h0 = rng.uniform(-1, 1, (B, H)).astype(F32)
    c0 = rng.uniform(-1, 1, (B, H)).astype(F32)
    gy_bm = rng.normal(size=(B, T, H)).astype(F32)
    gh = rng.normal(size=(B, H)).astype(F32)
    gc = rng.normal(size=(B, H)).astype(F32)

    # Keras' CPU path (no patches: this machine has no GPU), batch-major.
    layer = keras_layer(kind, back, weights, return_sequences=True, return_state=True)
    variables = [v.value for v in layer.trainable_weights]  # kernel, recurrent_kernel, bias
    xt, h0t, c0t = tf.constant(x_bm), tf.constant(h0), tf.constant(c0)
    with tf.GradientTape() as tape:
        tape.watch([xt, h0t, c0t])
        res = layer(
            xt,
            initial_state=[h0t, c0t] if lstm else h0t,
            mask=tf.constant(mask_bm) if masked else None,
        )
        out, h = res[0], res[1]
        loss = tf.reduce_sum(out * gy_bm * valid_bm[..., None]) + tf.reduce_sum(h * gh)
        if lstm:
            loss += tf.reduce_sum(res[2] * gc)
    grads = tape.gradient(loss, [xt, h0t, c0t] + variables)

    to_layout = (lambda a: np.swapaxes(a, 0, 1)) if tm else (lambda a: a)
    data = dict(
        x=to_layout(x_bm),
        h0=h0,
        c0=c0,
        mask=to_layout(mask_bm),
        valid=to_layout(valid_bm),
        gy=to_layout(gy_bm),
        gh=gh,
        gc=gc,
        lengths=lengths,
        kernel=weights[0],
        recurrent_kernel=weights[1],
        bias=weights[2],
        ref_outputs=to_layout(out.numpy()),
        ref_h=h.numpy(),
        ref_dx=to_layout(grads[0].numpy()),
        ref_dh0=grads[1].numpy(),
        ref_dkernel=grads[3].numpy(),
        ref_drecurrent_kernel=grads[4].numpy(),
        ref_dbias=grads[5].numpy(),
    )
    if lstm:
        data.update(ref_c=res[2].numpy(), ref_dc0=grads[2].numpy())

    if name in C.FINE_TUNE_CASES:  # Keras' loss over the same SGD steps as the serving process's
        target_bm = rng.uniform(-1, 1, (B, T, H)).astype(F32)
        ft = keras_layer(kind, back, weights, return_sequences=True)
        ft_vars = [v.value for v in ft.trainable_weights]
        losses = []
        for _ in range(C.FINE_TUNE_STEPS + 1):
            with tf.GradientTape() as tape:
                y = ft(
                    xt,
                    initial_state=[h0t, c0t] if lstm else h0t,
                    mask=tf.constant(mask_bm) if masked else None,
                )
                err = (y - target_bm) * valid_bm[..., None]
                ft_loss = tf.reduce_sum(err * err) / float(valid_bm.sum() * H)
            losses.append(float(ft_loss))
            for v, dv in zip(ft_vars, tape.gradient(ft_loss, ft_vars), strict=True):
                v.assign_sub(C.FINE_TUNE_LR * dv)
        data.update(ft_target=to_layout(target_bm), ref_ft_losses=np.array(losses))

    np.savez(os.path.join(out_dir, f"{name}.npz"), **data)

    module = KerasCudnnGraph(kind, tm, masked, back, *weights)
    path = os.path.join(out_dir, name)
    with as_on_a_cuda_machine():
        module.serve.get_concrete_function()
        tf.saved_model.save(module, path)
    manifest["cases"][name] = {"op_types": sorted(set(saved_op_types(path)))}


def keras_export_case(rng, out_dir, manifest):
    """A Keras model as trained and exported on a GPU machine: Masking -> GRU -> LSTM -> Dense."""
    B, T, n_in, H = C.BATCH, C.STEPS, C.INPUT, C.UNITS

    def make():
        return keras.Sequential(
            [
                keras.Input((T, n_in)),
                keras.layers.Masking(0.0),
                keras.layers.GRU(H, return_sequences=True),
                keras.layers.LSTM(5),
                keras.layers.Dense(3),
            ]
        )

    ref = make()
    weights = [rng.uniform(-0.5, 0.5, w.shape).astype(F32) for w in ref.get_weights()]
    ref.set_weights(weights)
    lengths = np.array(C.LENGTHS_BATCH_MAJOR, np.int32)
    x = rng.uniform(-1, 1, (B, T, n_in)).astype(F32)
    x[np.arange(T)[None, :] >= lengths[:, None]] = 0.0
    gy = rng.normal(size=(B, 3)).astype(F32)
    xt = tf.constant(x)
    variables = [v.value for v in ref.trainable_weights]
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = ref(xt)
        loss = tf.reduce_sum(y * gy)
    grads = tape.gradient(loss, [xt] + variables)
    data = dict(x=x, gy=gy, ref_y=y.numpy(), ref_dx=grads[0].numpy())
    for i, dv in enumerate(grads[1:]):
        data[f"ref_dvar{i}"] = dv.numpy()
    np.savez(os.path.join(out_dir, f"{C.KERAS_EXPORT_CASE}.npz"), **data)

    gpu_model = make()
    gpu_model.set_weights(weights)
    # The exported variables' names, in the order of ref_dvar0, ref_dvar1, ...
    names = [v.value.name for v in gpu_model.trainable_weights]
    path = os.path.join(out_dir, C.KERAS_EXPORT_CASE)
    with as_on_a_cuda_machine(gpu_available=True):
        gpu_model.export(path, format="tf_saved_model", verbose=False)
    manifest["cases"][C.KERAS_EXPORT_CASE] = {
        "op_types": sorted(set(saved_op_types(path))),
        "n_cudnn_rnn_v3": saved_op_types(path).count("CudnnRNNV3"),
        "variable_names": names,
    }


def main(out_dir: str) -> None:
    from tensorflow.python.framework import kernels

    os.makedirs(out_dir, exist_ok=True)
    manifest = {
        "cpu_kernels_for_CudnnRNNV3": [
            k.device_type for k in kernels.get_registered_kernels_for_op("CudnnRNNV3").kernel
        ],
        "cases": {},
    }
    rng = np.random.default_rng(9)
    for name, spec in C.KERAS_GPU_CASES.items():
        keras_case(name, spec, rng, out_dir, manifest)
    keras_export_case(rng, out_dir, manifest)
    manifest["tf_rnn_ops_imported"] = any(m.startswith("tf_rnn_ops") for m in sys.modules)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
