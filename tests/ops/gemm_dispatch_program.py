"""The float32 fused op (forward and gradients) against the float64 reference of docs/MATH.md, on
whichever library build and product kernels this process runs: run in a subprocess by
test_gemm_dispatch.py, once as is (on an AVX-512 CPU the x86-64-v4 libraries and the AVX-512
kernels of packed_gemm.h) and once with TF_RNN_OPS_NO_AVX512=1 (the x86-64-v3 libraries, AVX2
kernels), since the loader and the libraries read the switch once per process. Each case runs
through our op and, for TensorFlow's modes, through TensorFlow's own CudnnRNNV3 (whose CPU kernels
are the second library's build). Prints the libraries it loaded.

usage: gemm_dispatch_program.py SEED [--save=PATH.npz] MODE:B:T:I:H[:bidirectional] |
       keras:LAYER:B:T:I:H ...

--save: also writes our op's float32 outputs and its gradients of the input and the initial
state(s) of every MODE case (keys "CASE/quantity", CASE as given), for test_gemm_dispatch.py to
compare the two product paths bitwise.

Each case's sizes pick the kernels' edges: H = 1 and 3 (one panel, mostly padding), H = 257
(K = 257 > kKc: two K blocks; G·H = 771: an odd number of 16-column panels, the last 3 wide), B
not a multiple of the 6-row strips, B >= 12 (per-thread row ranges), T·B > 256 (several weight-
gradient row blocks), B = 0. Prints "ok", or each failing case with the quantity and its worst
error, and exits 1.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import rnn_reference as ref
import tensorflow as tf

import tf_rnn_ops

TF_CUDNN_MODES = ("lstm", "gru", "rnn_tanh", "rnn_relu")  # TensorFlow's CudnnRNN rnn_mode values


def run_case(
    rng, mode: str, B: int, T: int, n_in: int, H: int, direction: str, op, saved: dict | None = None
) -> list[str]:
    p = ref.Problem(
        rng, mode, num_layers=1, num_units=H, input_size=n_in, batch=B, steps=T,
        direction=direction, lengths="varlen",
    )  # fmt: skip
    out_ref, h_ref, c_ref = p.reference()
    d_out, d_h, d_c = p.cotangents(rng)
    grads_ref = p.reference_grads(d_out, d_h, d_c)

    kwargs = p.op_kwargs(tf.float32, is_training=True)
    srcs = [kwargs["input"], kwargs["input_h"], kwargs["input_c"], kwargs["params"]]
    with tf.GradientTape() as tape:
        tape.watch(srcs)
        out, h, c, _, _ = op(**kwargs)
        loss = tf.reduce_sum(tf.cast(out, tf.float64) * d_out)
        loss += tf.reduce_sum(tf.cast(h, tf.float64) * d_h)
        if p.is_lstm:
            loss += tf.reduce_sum(tf.cast(c, tf.float64) * d_c)
    grads = tape.gradient(loss, srcs)

    pairs = [("output", out, out_ref), ("output_h", h, h_ref)]
    if p.is_lstm:
        pairs.append(("output_c", c, c_ref))
    names = ("d_input", "d_input_h", "d_input_c", "d_params")
    for name, g, e in zip(names, grads, grads_ref, strict=True):
        if e is not None:
            pairs.append((name, g, e))
    if saved is not None:  # (not the weight gradients: see test_gemm_dispatch.py)
        saved.update({name: np.asarray(got) for name, got, _ in pairs if name != "d_params"})
    return compare(pairs, n_in, H, T)


def compare(pairs, n_in: int, H: int, T: int) -> list[str]:
    """The (name, got, want) pairs whose error exceeds the bound, each described."""
    failures = []
    for name, got, want in pairs:
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
        if want.size == 0:
            continue
        # float32 products over up to max(I, H) terms a step and T·B rows for the weight grads:
        # relative to the quantity's own scale, far below any wrong lane, row or block (O(1)).
        scale = max(1.0, float(np.abs(want).max()))
        err = np.abs(got - want)
        bound = 2e-6 * np.sqrt(max(n_in, H) * max(T, 1)) * (np.abs(want) + scale)
        if not np.all(err <= bound):
            at = tuple(int(v) for v in np.unravel_index(np.argmax(err - bound), err.shape))
            failures.append(f"{name}: error {err.max():.3g} (scale {scale:.3g}) at {at}")
    return failures


def run_keras_case(rng, cls: str, B: int, T: int, n_in: int, H: int) -> list[str]:
    """The drop-in layer (TfRnn>KerasRNN, whose weight gradients of few rows are summed in float
    straight into Keras' layout) against the Keras layer with the same weights: outputs and every
    weight gradient, in float32 both (`compare`'s bound, on Keras' float32 sums)."""
    import keras

    x = tf.constant(rng.standard_normal((B, T, n_in)), tf.float32)
    dy = tf.constant(rng.standard_normal((B, T, H)), tf.float32)
    results = []
    for module in (keras.layers, tf_rnn_ops.layers):
        layer = getattr(module, cls)(H, return_sequences=True)
        layer.build(x.shape)
        if results:
            layer.set_weights(results[0][2])
        else:
            layer.set_weights([rng.uniform(-0.5, 0.5, w.shape) / np.sqrt(H) for w in layer.weights])
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(y * dy)
        grads = tape.gradient(loss, layer.trainable_weights)
        results.append((y, grads, layer.get_weights()))
    (y_want, g_want, _), (y_got, g_got, _) = results
    weight_grads = [
        (f"d_weight{i}", g, w) for i, (g, w) in enumerate(zip(g_got, g_want, strict=True))
    ]
    return compare([("output", y_got, y_want), *weight_grads], n_in, H, T)


def main() -> int:
    rng = np.random.default_rng(int(sys.argv[1]))
    specs = sys.argv[2:]
    save = specs[0].removeprefix("--save=") if specs and specs[0].startswith("--save=") else None
    specs = specs[1:] if save else specs
    failures, saved = [], {}
    for spec in specs:
        if spec.startswith("keras:"):
            cls, *sizes = spec.split(":")[1:]
            for msg in run_keras_case(rng, cls, *(int(v) for v in sizes)):
                failures.append(f"{spec} {msg}")
            continue
        mode, *rest = spec.split(":")
        direction = "bidirectional" if rest[-1] == "bidirectional" else "unidirectional"
        B, T, n_in, H = (int(v) for v in rest[:4])
        ops = {"TfRnn>CudnnRNN": tf_rnn_ops.cudnn_rnn}
        if mode in TF_CUDNN_MODES:
            ops["CudnnRNNV3"] = tf.raw_ops.CudnnRNNV3
        for name, op in ops.items():
            ours = {} if save and name == "TfRnn>CudnnRNN" else None
            for msg in run_case(rng, mode, B, T, n_in, H, direction, op, ours):
                failures.append(f"{spec} {name} {msg}")
            saved.update({f"{spec}/{key}": value for key, value in (ours or {}).items()})
    if save:
        np.savez(save, **saved)
    # The libraries this process mapped (tf_rnn_ops/_loader.py picks the build), for the test.
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "_tf_rnn_ops" in line or "_tf_cudnn_cpu" in line}
    print("loaded", *sorted(os.path.basename(path) for path in paths))
    print("\n".join(failures) or "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
