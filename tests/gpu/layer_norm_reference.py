"""Shared by the layer-norm RNN tests of the CUDA layer (test_cuda_layer_norm_emulation.py on the
host emulation, test_gpu_layer_norm_rnn.py on a GPU): random cases, the op's semantics in float64 on
tests/cells/cell_reference.py's cells (TF Addons' LayerNormLSTMCell, haste's LayerNormGRU and
zoneout; TF Addons' recurrent dropout mask), finite differences of it, and the library's outputs and
grads through the ctypes binding. numpy only (no TensorFlow)."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cells"))
import cell_reference as ref  # noqa: E402

CELLS = ("layer_norm_lstm", "layer_norm_gru")
EPS = {"layer_norm_lstm": 1e-3, "layer_norm_gru": 1e-5}


def make_params(rng, cell, D, H):
    """Random params of the op (dict of tc.LN_PARAMS names); gains near 1."""
    u = lambda *s: rng.uniform(-0.7, 0.7, s)  # noqa: E731
    G = (4 if cell == "layer_norm_lstm" else 3) * H
    p = dict(
        kernel=u(D, G), recurrent_kernel=u(H, G), bias=u(G), gamma_x=1 + u(G), gamma_h=1 + u(G)
    )
    if cell == "layer_norm_lstm":
        p.update(beta_x=u(G), beta_h=u(G), gamma_c=1 + u(H), beta_c=u(H))
    else:
        p.update(recurrent_bias=u(G))
    return p


def reference(cell, p, x, h0, c0, mask=None, zoneout=None, recurrent_mask=None):
    """The op's semantics in float64 on cell_reference's cells: a masked step keeps the states
    and outputs the carried h; zoneout on h (a keep mask [T, B, H], or a keep value k:
    h = (1 - k) h_prev + k h~); recurrent_mask [B, H]: h_{t-1} * m in h's product with R only.
    Returns y [T, B, H], hn, cn (None for the GRU)."""
    rm = recurrent_mask
    if cell == "layer_norm_lstm":
        w = [p[k] for k in ("kernel", "recurrent_kernel", "bias", "gamma_x", "beta_x")]
        w += [p[k] for k in ("gamma_h", "beta_h", "gamma_c", "beta_c")]
        step = ref.layer_norm_lstm_cell(w, norm_epsilon=EPS[cell], recurrent_mask=rm)
        states = [h0, c0]
    else:
        gamma = np.stack([p["gamma_x"], p["gamma_h"]])
        w = [p["kernel"], p["recurrent_kernel"], p["bias"], p["recurrent_bias"], gamma]
        step = ref.layer_norm_gru_cell(w, norm_epsilon=EPS[cell], recurrent_mask=rm)
        states = [h0]
    if zoneout is not None:
        if np.ndim(zoneout) == 0:
            step = ref.zoneout(step, 1.0 - float(zoneout))
        else:
            step = ref.zoneout(step, 0.0, masks=zoneout)
    states = [np.asarray(s, dtype=np.float64) for s in states]
    ys = []
    for t in range(x.shape[0]):
        _, new = step(t, np.asarray(x[t], dtype=np.float64), states)
        if mask is not None:
            keep = mask[t][:, None] != 0
            new = [np.where(keep, n, s) for n, s in zip(new, states, strict=True)]
        states = new
        ys.append(states[0])
    H = h0.shape[1]
    y = np.stack(ys) if ys else np.zeros((0, x.shape[1], H))
    return y, states[0], (states[1] if cell == "layer_norm_lstm" else None)


def make_case(rng, cell, T, B, D, H, masked=False, zoneout=None):
    x = rng.uniform(-1, 1, (T, B, D))
    h0, c0 = rng.uniform(-0.5, 0.5, (B, H)), rng.uniform(-0.5, 0.5, (B, H))
    mask = None
    if masked:
        lengths = rng.integers(0, T + 1, size=B)
        mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)
    zm = None
    if zoneout == "mask":
        zm = ref.zoneout_mask(rng, (T, B, H), 0.3)
    elif zoneout == "scalar":
        zm = np.float64(0.7)
    return x, h0, c0, mask, zm


def recurrent_dropout_mask(rng, B, H, rate=0.3):
    """TF Addons' recurrent dropout mask [B, H]: 0, or 1 / (1 - rate) with probability 1 - rate."""
    return ref.dropout_masks(rng, 1, (B, H), rate)[0]


def run(
    lib, cell, dtype, p, x, h0, c0, mask, zm, is_training=True, recurrent_mask=None, time_major=True
):
    """The library's forward: (y, hn, cn, reserve) as numpy arrays (cn, reserve may be None); x
    and y in the layout `time_major` says."""
    op = lib.layer_norm_rnn(cell, dtype, time_major)
    out = op.forward(
        x,
        h0,
        c0,
        p,
        mask=mask,
        zoneout=zm,
        epsilon=EPS[cell],
        is_training=is_training,
        recurrent_mask=recurrent_mask,
    )
    return tuple(lib.backend.to_numpy(o) for o in out)


def loss_weights(rng, T, B, H):
    """Random weights of the loss L = Σ y wy + Σ hn wh (+ Σ cn wc)."""
    return rng.uniform(-1, 1, (T, B, H)), rng.uniform(-1, 1, (B, H)), rng.uniform(-1, 1, (B, H))


def finite_difference_grads(
    cell, p, x, h0, c0, mask, zm, wy, wh, wc, delta=1e-6, recurrent_mask=None
):
    """Central differences of L = Σ y wy + Σ hn wh (+ Σ cn wc) of the float64 reference, for x,
    h0, c0 (LSTM) and every param (the masks held fixed)."""

    def loss(p_, x_, h0_, c0_):
        y, hn, cn = reference(cell, p_, x_, h0_, c0_, mask, zm, recurrent_mask)
        out = np.sum(y * wy) + np.sum(hn * wh)
        return out + (np.sum(cn * wc) if cn is not None else 0.0)

    def grad_of(name, arr, call):
        g = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + delta
            up = call()
            arr[i] = old - delta
            down = call()
            arr[i] = old
            g[i] = (up - down) / (2 * delta)
        return g

    p = {k: np.array(v, dtype=np.float64) for k, v in p.items()}
    x, h0, c0 = (np.array(a, dtype=np.float64) for a in (x, h0, c0))
    out = {}
    for name in p:
        out[name] = grad_of(name, p[name], lambda: loss(p, x, h0, c0))
    out["x"] = grad_of("x", x, lambda: loss(p, x, h0, c0))
    out["h0"] = grad_of("h0", h0, lambda: loss(p, x, h0, c0))
    if cell == "layer_norm_lstm":
        out["c0"] = grad_of("c0", c0, lambda: loss(p, x, h0, c0))
    return out


def library_grads(
    lib, cell, dtype, p, x, h0, c0, mask, zm, wy, wh, wc, recurrent_mask=None, time_major=True
):
    """The library's grads of L = Σ y wy + Σ hn wh (+ Σ cn wc), as finite_difference_grads; x,
    wy and the grad of x in the layout `time_major` says."""
    op = lib.layer_norm_rnn(cell, dtype, time_major)
    kw = dict(mask=mask, zoneout=zm, epsilon=EPS[cell], recurrent_mask=recurrent_mask)
    _, _, _, reserve = op.forward(x, h0, c0, p, **kw)
    dx, dh0, dc0, grads = op.backward(x, h0, p, reserve, wy, wh, wc, **kw)
    out = dict(grads, x=dx, h0=dh0)
    if cell == "layer_norm_lstm":
        out["c0"] = dc0
    return {k: lib.backend.to_numpy(v) for k, v in out.items()}


def directional_check(
    lib, cell, dtype, p, x, h0, c0, mask, zm, rng, directions=2, delta=1e-5, recurrent_mask=None
):
    """The library's grads against central differences of the float64 reference along random
    directions v over every input (x, h0, c0, params; the masks held fixed):
    (L(+δv) − L(−δv)) / 2δ = Σ grad · v. Cheap at any size. Returns the pairs (library, finite
    difference), one per direction."""
    wy, wh, wc = loss_weights(rng, x.shape[0], x.shape[1], h0.shape[1])
    rm = recurrent_mask
    got = library_grads(lib, cell, dtype, p, x, h0, c0, mask, zm, wy, wh, wc, recurrent_mask=rm)
    point = dict(p, x=x, h0=h0, c0=c0)

    def loss(q):
        prm = {k: q[k] for k in p}
        y, hn, cn = reference(cell, prm, q["x"], q["h0"], q["c0"], mask, zm, rm)
        return np.sum(y * wy) + np.sum(hn * wh) + (np.sum(cn * wc) if cn is not None else 0.0)

    pairs = []
    for _ in range(directions):
        v = {k: rng.uniform(-1, 1, np.shape(a)) for k, a in point.items()}
        up = loss({k: point[k] + delta * v[k] for k in point})
        down = loss({k: point[k] - delta * v[k] for k in point})
        fd = (up - down) / (2 * delta)
        lib_dot = sum(float(np.sum(got[k] * v[k])) for k in got)
        pairs.append((lib_dot, fd))
    return pairs
