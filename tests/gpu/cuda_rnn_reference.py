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


def _cell(mode, gx, h, c, r_mat, b_r, hsz):
    """One step for a batch: gx [B, G·H] with its bias; the recurrent weights R [G·H, H_out] and
    b_R [G·H]; returns (h or m, c)."""
    if mode == "gru_reset_before":  # the reset gate scales h before R_h's product
        gh_rz = h @ r_mat[: 2 * hsz].T + b_r[: 2 * hsz]
        r = sigmoid(gx[:, :hsz] + gh_rz[:, :hsz])
        z = sigmoid(gx[:, hsz : 2 * hsz] + gh_rz[:, hsz:])
        n = np.tanh(gx[:, 2 * hsz :] + (r * h) @ r_mat[2 * hsz :].T + b_r[2 * hsz :])
        return (1 - z) * n + z * h, c
    gh = h @ r_mat.T + b_r
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
                h_new, c_new = _cell(shape.mode, gx, h, c, p["R"], p["bR"], hsz)
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


def gru_reset_before_grads(shape: RnnShape, params, x, h0, dy, dhy, lengths=None, time_major=True):
    """Backprop through time of the gru_reset_before stack (docs/MATH.md, "Cells beyond
    cuDNN", GRU with reset before): dh̃ = dh (1 − z)(1 − h̃²), dz = dh (h − h̃) z (1 − z),
    d(r ⊙ h) = dh̃ R_h, dr = d(r ⊙ h) h r (1 − r),
    dh_prev = z dh + r d(r ⊙ h) + [dr, dz] [R_r; R_z]; without dropout, for the loss
    Σ dy·y + Σ dhy·hy. Same layouts as rnn_forward; returns dx, dh0, dparams (the opaque
    layout)."""
    if shape.mode != "gru_reset_before" or shape.num_proj:
        raise ValueError(f"gru_reset_before_grads: mode {shape.mode!r}, num_proj {shape.num_proj}")
    x, h0 = np.asarray(x, np.float64), np.asarray(h0, np.float64)
    dy, dhy = np.asarray(dy, np.float64), np.asarray(dhy, np.float64)
    if not time_major:
        x, h0, dy, dhy = (a.transpose(1, 0, 2) for a in (x, h0, dy, dhy))
    steps, batch, _ = x.shape
    hsz, dirs = shape.num_units, shape.num_dirs
    lens = np.full(batch, steps) if lengths is None else np.asarray(lengths)
    blocks = shape.unpack(np.asarray(params, np.float64))
    grads = {k: {n: np.zeros(v.shape) for n, v in b.items()} for k, b in blocks.items()}
    # Forward, keeping each layer's input and each step's values.
    inputs, caches, inp = [], {}, x
    for layer in range(shape.num_layers):
        inputs.append(inp)
        out = np.zeros((steps, batch, dirs * hsz))
        for d in range(dirs):
            p, h = blocks[(layer, d)], h0[layer * dirs + d].copy()
            for s in range(steps):
                valid = s < lens
                t = np.where(valid, s if d == 0 else lens - 1 - s, 0)
                xs = inp[t, np.arange(batch)]
                gx = (xs @ p["W"].T if shape.has_w(layer) else np.tile(xs, 3)) + p["bW"]
                gh = h @ p["R"][: 2 * hsz].T + p["bR"][: 2 * hsz]
                r = sigmoid(gx[:, :hsz] + gh[:, :hsz])
                z = sigmoid(gx[:, hsz : 2 * hsz] + gh[:, hsz:])
                n = np.tanh(gx[:, 2 * hsz :] + (r * h) @ p["R"][2 * hsz :].T + p["bR"][2 * hsz :])
                caches[(layer, d, s)] = (valid, t, xs, h, r, z, n)
                h_new = (1 - z) * n + z * h
                rows = np.nonzero(valid)[0]
                out[t[rows], rows, d * hsz : (d + 1) * hsz] = h_new[rows]
                h = np.where(valid[:, None], h_new, h)
        inp = out
    # Backward, from the last layer down.
    dh0 = np.zeros_like(h0)
    d_out = dy
    for layer in reversed(range(shape.num_layers)):
        d_in = np.zeros_like(inputs[layer])
        for d in range(dirs):
            p, g = blocks[(layer, d)], grads[(layer, d)]
            carry = dhy[layer * dirs + d].copy()
            for s in reversed(range(steps)):
                valid, t, xs, h, r, z, n = caches[(layer, d, s)]
                m = valid[:, None].astype(np.float64)  # rows past their length pass dh through
                dh = (carry + d_out[t, np.arange(batch), d * hsz : (d + 1) * hsz]) * m
                dn = dh * (1 - z) * (1 - n * n)
                dz = dh * (h - n) * z * (1 - z)
                drh = dn @ p["R"][2 * hsz :]
                dr = drh * h * r * (1 - r)
                dgates = np.concatenate([dr, dz, dn], 1)
                if shape.has_w(layer):
                    g["W"] += dgates.T @ xs
                    dxs = dgates @ p["W"]
                else:
                    dxs = dr + dz + dn
                g["bW"] += dgates.sum(0)
                g["bR"] += dgates.sum(0)
                g["R"][: 2 * hsz] += dgates[:, : 2 * hsz].T @ h
                g["R"][2 * hsz :] += dn.T @ (r * h)
                np.add.at(d_in, (t, np.arange(batch)), dxs * m)
                dh_prev = z * dh + r * drh + dgates[:, : 2 * hsz] @ p["R"][: 2 * hsz]
                carry = np.where(valid[:, None], dh_prev, carry)
            dh0[layer * dirs + d] = carry
        d_out = d_in
    dx = d_out
    if not time_major:
        dx, dh0 = dx.transpose(1, 0, 2), dh0.transpose(1, 0, 2)
    return dx, dh0, shape.pack(grads)
