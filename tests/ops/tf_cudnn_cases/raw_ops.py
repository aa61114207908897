"""TensorFlow's own CudnnRNN / CudnnRNNV2 / params ops on CPU after `import tf_rnn_ops`, against
Keras and against tf_rnn_ops's own ops (tests/ops/test_tf_cudnn_cpu.py, issue 9).

Usage: raw_ops.py OUT_DIR

Writes OUT_DIR/loader.json (the kernel registry before and after `import tf_rnn_ops`, and after
importing again), OUT_DIR/rnn-<case>.npz per cases.RAW_RNN_CASES and OUT_DIR/params-<case>.npz per
cases.PARAMS_CASES. The test compares; this script only computes (so a failure shows its numbers).
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import cases as C
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import kernels

# TensorFlow's own CudnnRNN* ops, from its op registry (not a copy of the loader's list, so the
# test sees an op that the loader would leave without a CPU kernel).
OPS = tuple(sorted(name for name in dir(tf.raw_ops) if name.startswith("CudnnRNN")))


def num_gates(mode: str) -> int:
    """The gate count of `mode`, from tf_rnn_ops' table (imported here, not at the top: `loader`
    reads the kernel registry before the package is first imported)."""
    from tf_rnn_ops.params import NUM_GATES

    return NUM_GATES[mode]


def cpu_kernels():
    """op -> sorted list of its CPU KernelDefs, each as a string."""
    return {
        op: sorted(
            str(k).replace("\n", " ")
            for k in kernels.get_registered_kernels_for_op(op).kernel
            if k.device_type == "CPU"
        )
        for op in OPS
    }


# ------------------------------------------------------------------------------- loader, import twi
def loader(out_dir):
    before = cpu_kernels()
    import tf_rnn_ops

    info = {
        "before": {op: len(v) for op, v in before.items()},
        "ops_without_cpu_kernel": tf_rnn_ops._loader.ops_without_cpu_kernel(),
        "loaded_for": tf_rnn_ops._loader.load_tf_cudnn_cpu_kernels(),
    }
    after = cpu_kernels()
    info["after"] = {op: len(v) for op, v in after.items()}
    info["after_duplicates"] = {op: len(v) - len(set(v)) for op, v in after.items()}
    # Import again: a plain second import, a reload of the package and its loader (which loads the
    # libraries through TensorFlow once more), and the kernel library loaded once more through the
    # loader's own loading (its checks and errors), bypassing the "only where missing" rule.
    import tf_rnn_ops as again  # noqa: F401

    importlib.reload(tf_rnn_ops._loader)
    importlib.reload(tf_rnn_ops)
    tf_rnn_ops._loader.load_tf_cudnn_cpu_kernels()
    tf_rnn_ops._loader._load(tf_rnn_ops._loader.TF_CUDNN_LIBRARY_PATH, kernels_only=True)
    info["after_reimport"] = {op: len(v) for op, v in cpu_kernels().items()}
    info["after_reimport_same"] = cpu_kernels() == after
    info["ops_without_cpu_kernel_after_reimport"] = tf_rnn_ops._loader.ops_without_cpu_kernel()
    # Still computes (the 2016 TensorFlow cuDNN test's reference value, docs/MATH.md, "Params
    # layout").
    p = tf.ones(
        tf.raw_ops.CudnnRNNParamsSize(
            num_layers=2, num_units=8, input_size=4, T=tf.float32, S=tf.int32, rnn_mode="rnn_relu"
        )
    )
    y, h, _, _ = tf.raw_ops.CudnnRNN(
        input=tf.ones([2, 4, 4]),
        input_h=tf.ones([2, 4, 8]),
        input_c=tf.ones([2, 4, 8]),
        params=p,
        rnn_mode="rnn_relu",
        is_training=False,
    )
    info["relu_reference_sum"] = float(tf.reduce_sum(y) + tf.reduce_sum(h))
    with open(os.path.join(out_dir, "loader.json"), "w") as f:
        json.dump(info, f, indent=1)


# -------------------------------------------------------------------- Keras <-> cuDNN canonical, nu
def keras_to_canonical(mode, kernel, recurrent_kernel, bias, for_grad=False):
    """The Keras mapping of docs/MATH.md, "Keras layers", for one pseudo-layer: (weights [out, in]
    list, biases list).

    for_grad: map gradients instead (a bias that Keras has once and cuDNN twice, b_W and b_R, gets
    the same gradient in both)."""
    H = recurrent_kernel.shape[0]
    g = num_gates(mode)
    order = [1, 0, 2] if mode == "gru" else list(range(g))  # Keras z, r, h -> cuDNN r, z, h

    def blocks(m):
        return [np.ascontiguousarray(m[..., k * H : (k + 1) * H]) for k in order]

    weights = [b.T for b in blocks(kernel)] + [b.T for b in blocks(recurrent_kernel)]
    if mode == "gru":
        biases = blocks(bias[0]) + blocks(bias[1])
    elif mode == "lstm":  # Keras' bias -> b_R; b_W = 0
        biases = (blocks(bias) if for_grad else [np.zeros(H, bias.dtype)] * g) + blocks(bias)
    else:  # SimpleRNN: Keras' bias -> b_W; b_R = 0
        biases = blocks(bias) + (blocks(bias) if for_grad else [np.zeros(H, bias.dtype)])
    return weights, biases


def opaque(per_pseudo_layer):
    """Opaque params: per pseudo-layer its matrices flattened, then its biases."""
    return np.concatenate([np.concatenate([a.ravel() for a in w + b]) for w, b in per_pseudo_layer])


def keras_layer(mode, units, go_backwards):
    kw = dict(return_sequences=True, return_state=True, go_backwards=go_backwards)
    import keras

    if mode == "gru":
        return keras.layers.GRU(units, **kw)
    if mode == "lstm":
        return keras.layers.LSTM(units, **kw)
    return keras.layers.SimpleRNN(units, activation="relu" if mode == "rnn_relu" else "tanh", **kw)


# --------------------------------------------------------------------------- CudnnRNN / CudnnRNNV2
def rnn_case(name, spec, rng, out_dir):
    op, mode, L, direction = spec["op"], spec["mode"], spec["num_layers"], spec["direction"]
    dirs = 2 if direction == "bidirectional" else 1
    lstm = mode == "lstm"
    T, B, n_in, H = 5, 3, 4, 6
    f32 = np.float32

    # Keras layers, one per layer and direction, random weights.
    layers, pseudo = [], []
    for li in range(L):
        in_size = n_in if li == 0 else dirs * H
        for d in range(dirs):
            layer = keras_layer(mode, H, go_backwards=d == 1)
            layer.build((None, None, in_size))
            layer.set_weights(
                [rng.uniform(-0.5, 0.5, w.shape).astype(f32) for w in layer.get_weights()]
            )
            layers.append(layer)
            pseudo.append(keras_to_canonical(mode, *layer.get_weights()))
    params_np = opaque(pseudo)

    x = tf.constant(rng.uniform(-1, 1, (T, B, n_in)).astype(f32))
    h0 = tf.constant(rng.uniform(-1, 1, (L * dirs, B, H)).astype(f32))
    c0 = tf.constant(rng.uniform(-1, 1, (L * dirs, B, H)).astype(f32)) if lstm else tf.constant(0.0)
    params = tf.constant(params_np)
    gy = rng.normal(size=(T, B, dirs * H)).astype(f32)
    gh = rng.normal(size=(L * dirs, B, H)).astype(f32)
    gc = rng.normal(size=(L * dirs, B, H)).astype(f32)

    def loss_of(y, h, c):
        loss = tf.reduce_sum(y * gy) + tf.reduce_sum(h * gh)
        return loss + tf.reduce_sum(c * gc) if lstm else loss

    # Keras: layer by layer, both directions, batch-major; go_backwards outputs come reversed.
    kvars = [v.value for layer in layers for v in layer.trainable_weights]
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        inp = tf.transpose(x, [1, 0, 2])
        hs, cs = [], []
        for li in range(L):
            outs = []
            for d in range(dirs):
                k = li * dirs + d
                init = [h0[k], c0[k]] if lstm else h0[k]
                res = layers[k](inp, initial_state=init)
                outs.append(res[0] if d == 0 else tf.reverse(res[0], [1]))
                hs.append(res[1])
                if lstm:
                    cs.append(res[2])
            inp = tf.concat(outs, -1)
        k_y, k_h = tf.transpose(inp, [1, 0, 2]), tf.stack(hs)
        k_c = tf.stack(cs) if lstm else None
        k_loss = loss_of(k_y, k_h, k_c)
    kg = tape.gradient(k_loss, [x, h0, c0] + kvars)
    dparams_ref = opaque(
        [
            keras_to_canonical(mode, *[g.numpy() for g in kg[3 + 3 * k : 6 + 3 * k]], for_grad=True)
            for k in range(L * dirs)
        ]
    )

    attrs = dict(rnn_mode=mode, input_mode="linear_input", direction=direction)
    fwd = getattr(tf.raw_ops, op)
    bwd = getattr(tf.raw_ops, op.replace("CudnnRNN", "CudnnRNNBackprop"))
    with tf.GradientTape() as tape:  # TensorFlow's registered gradient -> CudnnRNNBackprop(V2)
        tape.watch([x, h0, c0, params])
        res = fwd(input=x, input_h=h0, input_c=c0, params=params, is_training=True, **attrs)
        loss = loss_of(res[0], res[1], res[2])
    grads = tape.gradient(loss, [x, h0, c0, params])
    out = dict(
        y=res[0].numpy(),
        h=res[1].numpy(),
        c=res[2].numpy(),
        ref_y=k_y.numpy(),
        ref_h=k_h.numpy(),
        dx=grads[0].numpy(),
        dh0=grads[1].numpy(),
        dparams=grads[3].numpy(),
        ref_dx=kg[0].numpy(),
        ref_dh0=kg[1].numpy(),
        ref_dparams=dparams_ref,
        output_dtypes=np.array([t.dtype.name for t in res]),
    )
    if lstm:
        out.update(ref_c=k_c.numpy(), dc0=grads[2].numpy(), ref_dc0=kg[2].numpy())

    # tf.gradients in a graph: the backprop kernel skips the grads no consumer reads
    # (output_required): the input's alone, then the input's and the states'.
    @tf.function
    def graph_grads(x, h0, c0, params, states):
        res = fwd(input=x, input_h=h0, input_c=c0, params=params, is_training=True, **attrs)
        sources = ([h0, c0] if lstm else [h0]) if states else []
        return tf.gradients(loss_of(res[0], res[1], res[2]), sources + [params])

    g_states = graph_grads(x, h0, c0, params, states=True)
    out.update(graph_dh0=g_states[0].numpy(), graph_states_dparams=g_states[-1].numpy())
    if lstm:
        out["graph_dc0"] = g_states[1].numpy()
    out["graph_dparams"] = graph_grads(x, h0, c0, params, states=False)[0].numpy()

    # The backprop op called directly with the forward's outputs (V2: host_reserved passed back).
    bargs = dict(
        input=x,
        input_h=h0,
        input_c=c0,
        params=params,
        output=res[0],
        output_h=res[1],
        output_c=res[2],
        output_backprop=tf.constant(gy),
        output_h_backprop=tf.constant(gh),
        output_c_backprop=tf.constant(gc) if lstm else tf.zeros_like(res[2]),
        reserve_space=res[3],
        **attrs,
    )
    if op == "CudnnRNNV2":
        out["host_reserved_dtype"] = np.array(res[4].dtype.name)
        out["host_reserved_shape"] = np.array(res[4].shape.as_list())
        bargs["host_reserved"] = res[4]
    direct = bwd(**bargs)
    out.update(
        direct_dx=direct[0].numpy(), direct_dh0=direct[1].numpy(), direct_dparams=direct[3].numpy()
    )
    if lstm:
        out["direct_dc0"] = direct[2].numpy()

    # Inference (is_training=False) gives the same outputs.
    inf = fwd(input=x, input_h=h0, input_c=c0, params=params, is_training=False, **attrs)
    out.update(inf_y=inf[0].numpy(), inf_h=inf[1].numpy(), inf_c=inf[2].numpy())
    # Half precision runs too (computing in float32 inside).
    half = fwd(
        input=tf.cast(x, tf.float16),
        input_h=tf.cast(h0, tf.float16),
        input_c=tf.cast(c0, tf.float16),
        params=tf.cast(params, tf.float16),
        is_training=False,
        **attrs,
    )
    out["half_y"] = tf.cast(half[0], tf.float32).numpy()
    np.savez(os.path.join(out_dir, f"rnn-{name}.npz"), **out)


# ---------------------------------------------------------------------------------- params ops
def canonical_shapes(mode, L, dirs, H, n_in, proj, skip):
    """Per pseudo-layer (layer-major, forward first): (its weight shapes, its bias shapes)."""
    g, ho = num_gates(mode), proj or H
    per_pseudo_layer = []
    for li in range(L):
        in_size = n_in if li == 0 else dirs * ho
        for _ in range(dirs):
            weights = [] if (li == 0 and skip) else [(H, in_size)] * g
            weights += [(H, ho)] * g
            if proj:
                weights.append((proj, H))
            per_pseudo_layer.append((weights, [(H,)] * (2 * g)))
    return per_pseudo_layer


def params_case(name, spec, rng, out_dir):
    import tf_rnn_ops

    mode, L, direction = spec["mode"], spec["num_layers"], spec["direction"]
    input_mode, n_in, proj, dtype = (
        spec["input_mode"],
        spec["input_size"],
        spec["num_proj"],
        spec["dtype"],
    )
    H, dirs = C.PARAMS_UNITS, 2 if direction == "bidirectional" else 1
    skip = input_mode == "skip_input" or (input_mode == "auto_select" and n_in == H)
    pseudo = [
        (
            [rng.uniform(-1, 1, s).astype(dtype) for s in ws],
            [rng.uniform(-1, 1, s).astype(dtype) for s in bs],
        )
        for ws, bs in canonical_shapes(mode, L, dirs, H, n_in, proj, skip)
    ]
    params = opaque(pseudo)
    weights = [w for ws, _ in pseudo for w in ws]
    biases = [b for _, bs in pseudo for b in bs]

    tdt = tf.as_dtype(dtype)
    common = dict(num_layers=L, num_units=H, input_size=n_in)
    attrs = dict(rnn_mode=mode, input_mode=input_mode, direction=direction)
    out = dict(size_expected=params.size)
    for S in (tf.int32, tf.int64):
        kw = dict(common, T=tdt, S=S, num_proj=proj, **attrs)
        out[f"size_tf_{S.name}"] = tf.raw_ops.CudnnRNNParamsSize(**kw).numpy()
        out[f"size_ours_{S.name}"] = tf_rnn_ops.cudnn_rnn_params_size(**kw).numpy()

    counts = dict(num_params_weights=len(weights), num_params_biases=len(biases))
    v2 = dict(common, params=tf.constant(params), num_proj=proj, **counts, **attrs)
    tf_w, tf_b = tf.raw_ops.CudnnRNNParamsToCanonicalV2(**v2)
    our_w, our_b = tf_rnn_ops.cudnn_rnn_params_to_canonical(**v2)
    for tag, ws, bs in (("tf_v2", tf_w, tf_b), ("ours", our_w, our_b)):
        for i, w in enumerate(ws):
            out[f"{tag}_w{i}"] = w.numpy()
        for i, b in enumerate(bs):
            out[f"{tag}_b{i}"] = b.numpy()
    for i, w in enumerate(weights):
        out[f"expected_w{i}"] = w
    for i, b in enumerate(biases):
        out[f"expected_b{i}"] = b

    back = dict(common, weights=tf_w, biases=tf_b, num_proj=proj, **attrs)
    out["params"] = params
    out["tf_v2_params"] = tf.raw_ops.CudnnRNNCanonicalToParamsV2(**back).numpy()
    out["ours_params"] = tf_rnn_ops.cudnn_rnn_canonical_to_params(**back).numpy()
    # From the expected canonical lists (not from the op's own output).
    back["weights"], back["biases"] = (
        [tf.constant(w) for w in weights],
        [tf.constant(b) for b in biases],
    )
    out["tf_v2_params_from_expected"] = tf.raw_ops.CudnnRNNCanonicalToParamsV2(**back).numpy()

    if not proj and len(weights) == len(biases):  # V1: one num_params for both lists
        v1 = dict(common, params=tf.constant(params), num_params=len(weights), **attrs)
        w1, b1 = tf.raw_ops.CudnnRNNParamsToCanonical(**v1)
        for i, w in enumerate(w1):
            out[f"tf_v1_w{i}"] = w.numpy()
        for i, b in enumerate(b1):
            out[f"tf_v1_b{i}"] = b.numpy()
        out["tf_v1_params"] = tf.raw_ops.CudnnRNNCanonicalToParams(
            **common, weights=w1, biases=b1, **attrs
        ).numpy()
    out["n_weights"], out["n_biases"] = len(weights), len(biases)
    np.savez(os.path.join(out_dir, f"params-{name}.npz"), **out)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    loader(out_dir)
    rng = np.random.default_rng(99)
    for name, spec in C.RAW_RNN_CASES.items():
        rnn_case(name, spec, rng, out_dir)
    for name, spec in C.PARAMS_CASES.items():
        params_case(name, spec, rng, out_dir)


if __name__ == "__main__":
    main(sys.argv[1])
