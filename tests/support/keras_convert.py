"""Keras 3 layer weights <-> canonical lists / opaque params of docs/MATH.md,
"Params layout" and "Keras layers".

* GRU (reset_after=True): kernel [I, 3H] and recurrent_kernel [H, 3H] with columns z, r, h →
  canonical W_r, W_z, W_h, R_r, R_z, R_h (each the transpose of its column block); bias (2, 3H): row
  0 the input biases, row 1 the recurrent biases, reordered the same way.
* LSTM: gate order i, f, c, o equals cuDNN's; its single bias goes to b_R, with zeros in b_W.
* SimpleRNN: one bias, put in b_W (zeros in b_R). rnn_mode rnn_tanh or rnn_relu by its activation.

Works on numpy arrays and, differentiably, on TF tensors / Keras variables (so a gradient tape sees
through the conversion). Independent of `tf_rnn_ops`.
"""

from __future__ import annotations

import numpy as np
import rnn_reference as ref


def _tf():
    import tensorflow as tf

    return tf


def _is_np(a) -> bool:
    return isinstance(a, np.ndarray | np.generic)


def _T(a):
    return a.T if _is_np(a) else _tf().transpose(a)


def _split(a, n, axis):
    return np.split(a, n, axis=axis) if _is_np(a) else _tf().split(a, n, axis=axis)


def _zeros(n, like):
    return np.zeros([n], dtype=like.dtype) if _is_np(like) else _tf().zeros([n], dtype=like.dtype)


def _concat(xs, axis):
    return np.concatenate(xs, axis=axis) if _is_np(xs[0]) else _tf().concat(xs, axis=axis)


def _value(v):
    """Keras variable → its backing tf.Variable (tape-visible); arrays and tensors unchanged."""
    if _is_np(v):
        return v
    return getattr(v, "value", v)


def layer_kind(layer) -> str:
    """'gru', 'gru_reset_before', 'lstm' or 'simple_rnn' for a Keras GRU (reset_after=True /
    False) / LSTM / SimpleRNN layer."""
    name = type(layer).__name__
    if name == "GRU":
        return "gru" if layer.cell.reset_after else "gru_reset_before"
    if name == "LSTM":
        return "lstm"
    if name == "SimpleRNN":
        return "simple_rnn"
    raise ValueError(f"not a Keras GRU/LSTM/SimpleRNN layer: {name}")


def rnn_mode_of(layer) -> str:
    """The rnn_mode attribute that computes what `layer` computes."""
    kind = layer_kind(_unwrap(layer)[0])
    if kind != "simple_rnn":
        return kind
    act = _unwrap(layer)[0].cell.activation
    act = getattr(act, "__name__", str(act))
    if act not in ("tanh", "relu"):
        raise ValueError(f"SimpleRNN activation {act} has no cuDNN mode")
    return "rnn_" + act


def cell_to_canonical(kind: str, kernel, recurrent_kernel, bias=None):
    """One Keras cell's weights → (canonical weights, canonical biases) of one pseudo-layer."""
    k, rk = kernel, recurrent_kernel
    if kind == "gru":
        h = rk.shape[0]
        kz, kr, kh = _split(k, 3, 1)
        rz, rr, rh = _split(rk, 3, 1)
        weights = [_T(kr), _T(kz), _T(kh), _T(rr), _T(rz), _T(rh)]
        if bias is None:
            biases = [_zeros(h, k) for _ in range(6)]
        else:
            if tuple(bias.shape) != (2, 3 * h):
                raise ValueError(f"GRU bias must be (2, 3H), got {tuple(bias.shape)}")
            bi_z, bi_r, bi_h = _split(bias[0], 3, 0)
            br_z, br_r, br_h = _split(bias[1], 3, 0)
            biases = [bi_r, bi_z, bi_h, br_r, br_z, br_h]
        return weights, biases
    if kind == "gru_reset_before":  # one [3H] bias (z, r, h): the input biases b_W
        h = rk.shape[0]
        kz, kr, kh = _split(k, 3, 1)
        rz, rr, rh = _split(rk, 3, 1)
        weights = [_T(kr), _T(kz), _T(kh), _T(rr), _T(rz), _T(rh)]
        if bias is None:
            b_w = [_zeros(h, k) for _ in range(3)]
        else:
            if tuple(bias.shape) != (3 * h,):
                raise ValueError(f"GRU(reset_after=False) bias must be (3H,), got {bias.shape}")
            bz, br, bh = _split(bias, 3, 0)
            b_w = [br, bz, bh]
        return weights, b_w + [_zeros(h, k) for _ in range(3)]
    if kind == "lstm":
        h = rk.shape[0]
        weights = [_T(w) for w in _split(k, 4, 1)] + [_T(w) for w in _split(rk, 4, 1)]
        b = _split(bias, 4, 0) if bias is not None else [_zeros(h, k) for _ in range(4)]
        return weights, [_zeros(h, k) for _ in range(4)] + list(b)
    if kind == "simple_rnn":
        h = rk.shape[0]
        b = bias if bias is not None else _zeros(h, k)
        return [_T(k), _T(rk)], [b, _zeros(h, k)]
    raise ValueError(f"unknown kind {kind!r}")


def _cell_weights(layer, differentiable: bool):
    cell = layer.cell
    get = _value if differentiable else (lambda v: np.asarray(v))
    bias = get(cell.bias) if getattr(cell, "use_bias", True) and cell.bias is not None else None
    return get(cell.kernel), get(cell.recurrent_kernel), bias


def _unwrap(layer):
    """A Bidirectional → [forward_layer, backward_layer]; a plain RNN layer → [layer]."""
    if type(layer).__name__ == "Bidirectional":
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


def layers_to_canonical(layers, differentiable: bool = False):
    """A stack of Keras RNN layers (each plain, or Bidirectional for a bidirectional layer) →
    canonical (weights, biases), layer-major, forward before backward. numpy unless `differentiable`
    (then TF tensors read from the variables, so that a gradient tape reaches the Keras
    variables)."""
    if not isinstance(layers, list | tuple):
        layers = [layers]
    weights, biases = [], []
    for layer in layers:
        for sub in _unwrap(layer):
            w, b = cell_to_canonical(layer_kind(sub), *_cell_weights(sub, differentiable))
            weights += w
            biases += b
    return weights, biases


def layers_to_params(layers, differentiable: bool = False):
    """Opaque params (numpy, or a TF tensor when `differentiable`) for a stack of Keras layers."""
    if not isinstance(layers, list | tuple):
        layers = [layers]
    first = _unwrap(layers[0])[0]
    mode = rnn_mode_of(first)
    num_units = first.cell.units
    input_size = int(first.cell.kernel.shape[0])
    direction = "bidirectional" if len(_unwrap(layers[0])) == 2 else "unidirectional"
    w, b = layers_to_canonical(layers, differentiable)
    return ref.canonical_to_opaque(w, b, mode, len(layers), num_units, input_size, direction)


def canonical_grads_to_cell(kind: str, dweights, dbiases):
    """Gradients w.r.t. one pseudo-layer's canonical lists → gradients w.r.t. the Keras cell's
    [kernel, recurrent_kernel, bias] (numpy). LSTM's bias feeds b_R, SimpleRNN's b_W."""
    dw = [np.asarray(a) for a in dweights]
    db = [np.asarray(a) for a in dbiases]
    if kind == "gru":
        wr, wz, wh, rr, rz, rh = dw
        kernel = np.concatenate([wz.T, wr.T, wh.T], axis=1)
        rkernel = np.concatenate([rz.T, rr.T, rh.T], axis=1)
        bias = np.stack(
            [np.concatenate([db[1], db[0], db[2]]), np.concatenate([db[4], db[3], db[5]])]
        )
        return [kernel, rkernel, bias]
    if kind == "gru_reset_before":
        wr, wz, wh, rr, rz, rh = dw
        kernel = np.concatenate([wz.T, wr.T, wh.T], axis=1)
        rkernel = np.concatenate([rz.T, rr.T, rh.T], axis=1)
        return [kernel, rkernel, np.concatenate([db[1], db[0], db[2]])]
    if kind == "lstm":
        kernel = np.concatenate([w.T for w in dw[:4]], axis=1)
        rkernel = np.concatenate([w.T for w in dw[4:8]], axis=1)
        return [kernel, rkernel, np.concatenate(db[4:8])]
    if kind == "simple_rnn":
        return [dw[0].T, dw[1].T, db[0]]
    raise ValueError(f"unknown kind {kind!r}")


def set_random_weights(layer, rng: np.random.Generator, scale: float = 0.5) -> None:
    """Uniform(−scale, scale) weights and biases (Keras initialises biases to zero, which would hide
    bias-layout mistakes)."""
    layer.set_weights(
        [rng.uniform(-scale, scale, w.shape).astype(w.dtype) for w in layer.get_weights()]
    )


# ---------------------------------------------------------------------------- running Keras stacks
def make_layers(
    mode: str,
    num_layers: int,
    num_units: int,
    input_size: int,
    bidirectional: bool = False,
    rng: np.random.Generator | None = None,
    dtype: str = "float32",
    scale: float = 0.5,
):
    """A stack of built Keras layers computing what the fused op computes for `mode`
    (return_sequences, return_state, zeros at masked steps), with random weights and biases."""
    import keras

    rng = rng if rng is not None else np.random.default_rng(0)
    kw = dict(return_sequences=True, return_state=True, zero_output_for_mask=True, dtype=dtype)

    def one():
        if mode == "gru":
            return keras.layers.GRU(num_units, reset_after=True, **kw)
        if mode == "gru_reset_before":
            return keras.layers.GRU(num_units, reset_after=False, **kw)
        if mode == "lstm":
            return keras.layers.LSTM(num_units, **kw)
        if mode in ("rnn_tanh", "rnn_relu"):
            return keras.layers.SimpleRNN(num_units, activation=mode[4:], **kw)
        raise ValueError(mode)

    layers = []
    in_size = input_size
    for _ in range(num_layers):
        layer = keras.layers.Bidirectional(one(), dtype=dtype) if bidirectional else one()
        layer.build((None, None, in_size))
        set_random_weights(layer, rng, scale)
        layers.append(layer)
        in_size = num_units * (2 if bidirectional else 1)
    return layers


def run_layers(layers, x, h0, c0=None, lengths=None, training=False):
    """Runs a stack from `make_layers` on batch-major x [B, T, I] with per-pseudo-layer initial
    states h0 [dir·L, B, H] (c0 likewise for LSTM) and right-padded masks from `lengths`.

    Returns (output [B, T, dir·H], h [dir·L, B, H], c [dir·L, B, H] or None) as TF tensors."""
    tf = _tf()
    x = tf.convert_to_tensor(x)
    steps = x.shape[1]
    mask = None if lengths is None else tf.sequence_mask(lengths, maxlen=steps)
    lstm = layer_kind(_unwrap(layers[0])[0]) == "lstm"
    out, hs, cs = x, [], []
    p = 0
    for layer in layers:
        dirs = len(_unwrap(layer))
        init = []
        for d in range(dirs):
            init.append(h0[p + d])
            if lstm:
                init.append(c0[p + d])
        res = layer(out, mask=mask, initial_state=init, training=training)
        out, states = res[0], list(res[1:])
        per = 2 if lstm else 1
        for d in range(dirs):
            hs.append(states[d * per])
            if lstm:
                cs.append(states[d * per + 1])
        p += dirs
    return out, tf.stack(hs), (tf.stack(cs) if lstm else None)


def keras_trainable(layers):
    """The tf.Variables behind every Keras weight of a stack, in the order of `[cell.kernel,
    cell.recurrent_kernel, cell.bias]` per pseudo-layer (layer-major, forward first)."""
    out = []
    for layer in layers:
        for sub in _unwrap(layer):
            c = sub.cell
            out += [_value(c.kernel), _value(c.recurrent_kernel), _value(c.bias)]
    return out
