"""Float64 numpy references of docs/MATH.md, "GRU block cell" and "Fused RNN cells", written from
the description alone (no code shared with the CUDA layer), plus the opaque params layout of "Params
layout"."""

from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path

import numpy as np

# The package's table of gate counts, read by path (tf_rnn_ops/_modes.py is a file of constants;
# this harness runs without TensorFlow, so it does not import the package).
GATES: dict[str, int] = runpy.run_path(
    str(Path(__file__).resolve().parents[2] / "tf_rnn_ops" / "_modes.py")
)["NUM_GATES"]
MODE_IDS = {"rnn_relu": 0, "rnn_tanh": 1, "lstm": 2, "gru": 3}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------ docs/MATH.md, "GRU block cell"
def gru_block_cell(x, h_prev, w_ru, w_c, b_ru, b_c):
    """Forward of the GRU block cell: returns r, u, c, h."""
    hsz = h_prev.shape[1]
    ru = sigmoid(np.concatenate([x, h_prev], 1) @ w_ru + b_ru)
    r, u = ru[:, :hsz], ru[:, hsz:]
    c = np.tanh(np.concatenate([x, h_prev * r], 1) @ w_c + b_c)
    h = u * h_prev + (1 - u) * c
    return r, u, c, h


def gru_block_cell_grad(x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h):
    """The grad kernel: returns d_x, d_h_prev, d_c_bar, d_r_bar_u_bar."""
    isz = x.shape[1]
    d_c_bar = d_h * (1 - u) * (1 - c * c)
    d_u_bar = d_h * (h_prev - c) * u * (1 - u)
    d_xh_c = d_c_bar @ w_c.T
    d_x_c, d_h_prevr = d_xh_c[:, :isz], d_xh_c[:, isz:]
    d_r_bar = d_h_prevr * h_prev * r * (1 - r)
    d_r_bar_u_bar = np.concatenate([d_r_bar, d_u_bar], 1)
    d_xh_ru = d_r_bar_u_bar @ w_ru.T
    d_x = d_xh_ru[:, :isz] + d_x_c
    d_h_prev = d_xh_ru[:, isz:] + d_h_prevr * r + d_h * u
    return d_x, d_h_prev, d_c_bar, d_r_bar_u_bar


# ----------------------------------------------------------------- docs/MATH.md, "Fused RNN cells"
@dataclasses.dataclass(frozen=True)
class RnnShape:
    mode: str
    num_layers: int
    num_units: int
    input_size: int
    num_dirs: int = 1
    num_proj: int = 0
    skip_input: bool = False

    @property
    def gates(self) -> int:
        return GATES[self.mode]

    @property
    def h_out(self) -> int:
        return self.num_proj if self.num_proj else self.num_units

    def layer_input(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.num_dirs * self.h_out

    def has_w(self, layer: int) -> bool:
        return not (self.skip_input and layer == 0)

    def block_parts(self, layer: int):
        """(name, shape) of the parts of one pseudo-layer's opaque block, in order."""
        gh = self.gates * self.num_units
        parts = []
        if self.has_w(layer):
            parts.append(("W", (gh, self.layer_input(layer))))
        parts.append(("R", (gh, self.h_out)))
        if self.num_proj:
            parts.append(("P", (self.num_proj, self.num_units)))
        parts += [("bW", (gh,)), ("bR", (gh,))]
        return parts

    def params_size(self) -> int:
        return sum(
            int(np.prod(s))
            for layer in range(self.num_layers)
            for _ in range(self.num_dirs)
            for _, s in self.block_parts(layer)
        )

    def unpack(self, params):
        """Opaque params -> {(layer, dir): {"W", "R", "P", "bW", "bR"}} of views."""
        out, offset = {}, 0
        for layer in range(self.num_layers):
            for d in range(self.num_dirs):
                block = {}
                for name, shape in self.block_parts(layer):
                    n = int(np.prod(shape))
                    block[name] = params[offset : offset + n].reshape(shape)
                    offset += n
                out[(layer, d)] = block
        assert offset == len(params)
        return out

    def pack(self, blocks, dtype=np.float64):
        chunks = []
        for layer in range(self.num_layers):
            for d in range(self.num_dirs):
                for name, shape in self.block_parts(layer):
                    a = np.asarray(blocks[(layer, d)][name], dtype=dtype)
                    assert a.shape == shape, (name, a.shape, shape)
                    chunks.append(a.reshape(-1))
        return np.concatenate(chunks)


def _cell(mode, gx, gh, h, c, hsz):
    """One step for a batch: gx, gh [B, G·H] with biases; returns (h or m, c)."""
    if mode in ("rnn_relu", "rnn_tanh"):
        a = gx + gh
        return (np.maximum(a, 0) if mode == "rnn_relu" else np.tanh(a)), c
    if mode == "lstm":
        i = sigmoid(gx[:, :hsz] + gh[:, :hsz])
        f = sigmoid(gx[:, hsz : 2 * hsz] + gh[:, hsz : 2 * hsz])
        g = np.tanh(gx[:, 2 * hsz : 3 * hsz] + gh[:, 2 * hsz : 3 * hsz])
        o = sigmoid(gx[:, 3 * hsz :] + gh[:, 3 * hsz :])
        c_new = f * c + i * g
        return o * np.tanh(c_new), c_new
    r = sigmoid(gx[:, :hsz] + gh[:, :hsz])
    z = sigmoid(gx[:, hsz : 2 * hsz] + gh[:, hsz : 2 * hsz])
    n = np.tanh(gx[:, 2 * hsz :] + r * gh[:, 2 * hsz :])
    return (1 - z) * n + z * h, c


def rnn_forward(shape: RnnShape, params, x, h0, c0=None, lengths=None, time_major=True):
    """The fused RNN without dropout. x: [T, B, I] (or [B, T, I]); h0: [dirs·L, B, H_out] (or
    [B, dirs·L, H_out]); c0 likewise with H. Returns y, hy, cy in the same layouts (cy is None
    unless lstm)."""
    x = np.asarray(x, np.float64)
    h0 = np.asarray(h0, np.float64)
    if not time_major:
        x = x.transpose(1, 0, 2)
        h0 = h0.transpose(1, 0, 2)
        c0 = None if c0 is None else np.asarray(c0).transpose(1, 0, 2)
    steps, batch, _ = x.shape
    hsz, hout, dirs = shape.num_units, shape.h_out, shape.num_dirs
    lens = np.full(batch, steps) if lengths is None else np.asarray(lengths)
    c0 = (
        np.zeros((dirs * shape.num_layers, batch, hsz))
        if c0 is None
        else np.asarray(c0, np.float64)
    )
    blocks = shape.unpack(np.asarray(params, np.float64))
    hy, cy = np.zeros_like(h0), np.zeros_like(c0)
    inp = x
    for layer in range(shape.num_layers):
        out = np.zeros((steps, batch, dirs * hout))
        for d in range(dirs):
            p = blocks[(layer, d)]
            h, c = h0[layer * dirs + d].copy(), c0[layer * dirs + d].copy()
            for s in range(steps):
                valid = s < lens
                t = np.where(valid, s if d == 0 else lens - 1 - s, 0)
                xs = inp[t, np.arange(batch)]
                if shape.has_w(layer):
                    gx = xs @ p["W"].T + p["bW"]
                else:
                    gx = np.tile(xs, shape.gates) + p["bW"]
                gh = h @ p["R"].T + p["bR"]
                h_new, c_new = _cell(shape.mode, gx, gh, h, c, hsz)
                if shape.num_proj:
                    h_new = h_new @ p["P"].T
                h = np.where(valid[:, None], h_new, h)
                c = np.where(valid[:, None], c_new, c)
                rows = np.nonzero(valid)[0]
                out[t[rows], rows, d * hout : (d + 1) * hout] = h_new[rows]
            hy[layer * dirs + d], cy[layer * dirs + d] = h, c
        inp = out
    y = inp
    if not time_major:
        y, hy, cy = y.transpose(1, 0, 2), hy.transpose(1, 0, 2), cy.transpose(1, 0, 2)
    return y, hy, (cy if shape.mode == "lstm" else None)
