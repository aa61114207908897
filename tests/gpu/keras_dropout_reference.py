"""Float64 references for TfRnn>KerasRNNDropout's CUDA library calls
(cc/cuda/keras_rnn_dropout_cuda.h): the Keras 3 cells of tests/cells/cell_reference.py (recurrent
dropout: one mask per gate on the recurrent product's input) with its haste `zoneout` wrapper, run
by its Keras `rnn` loop, and central finite differences of them for the gradients. Shared by the
host-emulation tests and the GPU tests; needs numpy only (no TensorFlow, no PyTorch)."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cells"))
import cell_reference as cref  # noqa: E402

GATES = {"rnn_relu": 1, "rnn_tanh": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3}
MODES = list(GATES)


def problem(rng, mode, B, T, H, *, masks=True, zoneout="mask", rbias=True, rate=0.3):
    """Random inputs in Keras' layouts (batch-major), float64: dict with gx [B, T, G·H], h0, c0,
    rk [H, G·H], rb ([G·H] when rbias, [2, G·H] when rbias == "rows", else None), masks
    ([G, B, H] or None), zoneout (None, [T, B, H] in {0, 1}, or a 0-d array)."""
    G = GATES[mode]
    # U's entries shrink as 1/sqrt(H) past H = 4 (spectral radius ~0.7 at every H): with
    # U(-0.6, 0.6) at H = 256 the recurrence is chaotic and float32 leaves float64 after ~20 steps.
    rk_limit = 0.6 * min(1.0, 2.0 / np.sqrt(H))
    p = {
        "gx": rng.normal(size=(B, T, G * H)) * 0.8,
        "h0": rng.normal(size=(B, H)) * 0.5,
        "c0": rng.normal(size=(B, H)) * 0.5,
        "rk": rng.uniform(-rk_limit, rk_limit, (H, G * H)),
        "rb": rng.uniform(-0.5, 0.5, (2, G * H) if rbias == "rows" else G * H) if rbias else None,
        "masks": np.stack(cref.dropout_masks(rng, G, (B, H), rate)) if masks else None,
    }
    if zoneout == "mask":
        p["zoneout"] = cref.zoneout_mask(rng, (T, B, H), rate)
    elif zoneout == "scalar":
        p["zoneout"] = np.asarray(rng.uniform(0.2, 0.9))
    else:
        p["zoneout"] = None
    return p


def to_gate_major(a, gates):
    """[·, ·, G·H] -> [G, ·, ·, H]: the ops' gate_major layout of a projected input."""
    return np.ascontiguousarray(np.moveaxis(a.reshape(*a.shape[:2], gates, -1), 2, 0))


def from_gate_major(a):
    """[G, ·, ·, H] -> [·, ·, G·H]."""
    return np.moveaxis(a, 0, 2).reshape(a.shape[1], a.shape[2], -1)


def forward(mode, gx, h0, c0, rk, rb=None, masks=None, zoneout=None, lengths=None):
    """(y [B, T, H], h_T, c_T or None), all float64, batch-major. The projected input enters the
    Keras cell as its input through an identity kernel; rb is GRU reset_after's recurrent bias
    row, the other cells' (one) bias, or [2, G·H]: a bias added to the projected input, then that
    one."""
    gx = np.asarray(gx, np.float64)
    if rb is not None and np.ndim(rb) == 2:
        gx, rb = gx + np.asarray(rb[0], np.float64), rb[1]
    B, T, GH = gx.shape
    G = GATES[mode]
    H = GH // G
    eye = np.eye(GH)
    rm = None if masks is None else [np.asarray(m, np.float64) for m in masks]
    rb = np.zeros(GH) if rb is None else np.asarray(rb, np.float64)
    if mode == "gru":
        cell = cref.gru_cell(eye, rk, np.stack([np.zeros(GH), rb]), reset_after=True,
                             recurrent_masks=rm)  # fmt: skip
    elif mode == "gru_reset_before":
        cell = cref.gru_cell(eye, rk, rb, reset_after=False, recurrent_masks=rm)
    elif mode == "lstm":
        cell = cref.lstm_cell(eye, rk, rb, recurrent_masks=rm)
    else:
        cell = cref.simple_rnn_cell(
            eye, rk, rb, activation=mode[4:], recurrent_mask=None if rm is None else rm[0]
        )
    if zoneout is not None:
        z = np.asarray(zoneout, np.float64)
        z = np.full((T, B, H), float(z)) if z.ndim == 0 else z
        cell = cref.zoneout(cell, 0.0, masks=z)
    states = [h0, c0] if mode == "lstm" else [h0]
    y, _, st = cref.rnn(cell, gx, states, lengths=lengths, zero_output_for_mask=True)
    return y, st[0], (st[1] if mode == "lstm" else None)


def loss(mode, p, w, lengths=None):
    """Σ y·wy + Σ h_T·wh (+ Σ c_T·wc): the scalar whose gradient the backprop computes with
    dy = wy, dhy = wh, dcy = wc."""
    y, h, c = forward(mode, p["gx"], p["h0"], p["c0"], p["rk"], p["rb"], p["masks"],
                      p["zoneout"], lengths)  # fmt: skip
    out = np.sum(y * w["dy"]) + np.sum(h * w["dh"])
    if c is not None:
        out += np.sum(c * w["dc"])
    return out


def numeric_grads(mode, p, w, lengths=None, eps=1e-6):
    """Central differences of `loss` for gx, h0, c0 (lstm), rk and rb (when given)."""
    names = (
        ["gx", "h0", "rk"]
        + (["c0"] if mode == "lstm" else [])
        + (["rb"] if p["rb"] is not None else [])
    )
    grads = {}
    for name in names:
        base = p[name]
        g = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            orig = base[idx]
            base[idx] = orig + eps
            up = loss(mode, p, w, lengths)
            base[idx] = orig - eps
            down = loss(mode, p, w, lengths)
            base[idx] = orig
            g[idx] = (up - down) / (2 * eps)
        grads[name] = g
    return grads
