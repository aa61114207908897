"""Float64 numpy references of the cells beyond cuDNN, written from the upstream code they follow.

Nothing here imports `tf_rnn_ops`, Keras or TensorFlow: the tests compare the package against this
module, and check this module against independent implementations (Keras 3's own cells with the
same dropout masks injected, and faithful Keras ports of the upstream cells, in `tests/cells/`).

Upstream sources (the semantics each function restates):

* `gru_cell`, `lstm_cell`, `simple_rnn_cell`: Keras 3.15 `keras/src/layers/rnn/{gru,lstm,
  simple_rnn}.py`, the cells' `implementation=1` path (the one Keras takes with
  `recurrent_dropout > 0`). Recurrent dropout: one mask per gate (GRU 3: z, r, h; LSTM 4: i, f, c,
  o; SimpleRNN 1), each [B, H] with entries in {0, 1/(1-p)}, drawn once per call and reused at
  every step; gate k's recurrent product is (h_{t-1} * m_k) U_k, while the state update (GRU's
  z * h_{t-1}, LSTM's carry) uses the undropped h_{t-1}. Input dropout likewise, one [B, I] mask
  per gate. GRU `reset_after=False` (Keras v1 form): h~ = tanh(x W_h + (r * h') U_h + b_h) with one
  bias [3H]; `reset_after=True`: bias [2, 3H] (input row, recurrent row) and
  h~ = tanh(x W_h + b_h + r * (h' U_h + b_rh)).
* `layer_norm_lstm_cell`: TF Addons `tensorflow_addons/rnn/layer_norm_lstm_cell.py`
  (`LayerNormLSTMCell`): z = LN_k(x W) + LN_r(h R) + b over the 4H gate vector (gates i, f, c, o),
  c = sigma(f) c_{t-1} + sigma(i) tanh(g), then c <- LN_s(c) (the normalized c is carried),
  h = sigma(o) tanh(c); LN(v) = (v - mean) / sqrt(var + eps) * gamma + beta, biased variance,
  eps = 1e-3 by default.
* `layer_norm_gru_cell`: haste `frameworks/tf/layer_norm_gru_cell.py` and
  `lib/layer_norm_gru_forward_gpu.cu.cc` (`LayerNormGRU`): x^ = LN(x W; gamma_0) + b,
  h^ = LN(h R; gamma_1) + b_r, LN over 3H without beta and eps = 1e-5; gates z, r, g:
  z = sigma(x^_z + h^_z), r = sigma(x^_r + h^_r), g = tanh(r * h^_g + x^_g),
  h = z h_{t-1} + (1 - z) g.
* `zoneout`: haste `frameworks/tf/zoneout_wrapper.py` and its fused kernels
  (`lib/{gru,lstm,layer_norm_gru,layer_norm_lstm}_forward_gpu.cu.cc`): on h only, never on LSTM's c.
  Training with a mask m in {0, 1} (m ~ Bernoulli(1 - p) per unit, step and row):
  h_t = h_{t-1} + m (h~_t - h_{t-1}); inference: h_t = p h_{t-1} + (1 - p) h~_t. As in the fused
  kernels, the zoned h is both the output and the carried state.
* `rnn`: Keras 3's `keras.layers.RNN` loop (`backend.rnn`): masks / sequence lengths (a masked step
  keeps the states and repeats the previous output, or outputs zeros with `zero_output_for_mask`),
  `go_backwards` (the whole padded sequence and its mask reversed, outputs in processed order),
  initial states, both layouts.

Weight orders are those of `get_weights()` of the upstream layers (see each cell).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# A cell step: (step index in processing order, x_t [B, I], states) -> (output [B, H], states).
Step = Callable[[int, np.ndarray, list], tuple]


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def layer_norm(v: np.ndarray, gamma, beta, eps: float) -> np.ndarray:
    """LN over the last axis: (v - mean) / sqrt(var + eps) * gamma + beta (biased variance)."""
    mean = v.mean(axis=-1, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=-1, keepdims=True)
    out = (v - mean) / np.sqrt(var + eps) * gamma
    return out if beta is None else out + beta


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _per_gate(masks, n: int, name: str):
    if masks is None:
        return [None] * n
    masks = [_f64(m) for m in masks]
    if len(masks) != n:
        raise ValueError(f"{name}: expected {n} masks (one per gate), got {len(masks)}")
    return masks


def _drop(v, m):
    return v if m is None else v * m


def gru_cell(
    kernel, recurrent_kernel, bias, *, reset_after: bool = True, input_masks=None,
    recurrent_masks=None,
) -> Step:  # fmt: skip
    """Keras 3 GRUCell (tanh / sigmoid, use_bias=True), gates z, r, h in that column order.

    kernel [I, 3H], recurrent_kernel [H, 3H], bias [2, 3H] (reset_after) or [3H]. input_masks /
    recurrent_masks: None or 3 masks (z, r, h) of [B, I] / [B, H] (Keras' dropout masks).
    """
    W, U, b = _f64(kernel), _f64(recurrent_kernel), _f64(bias)
    H = U.shape[0]
    if reset_after:
        bx, bh = b[0], b[1]
    else:
        bx, bh = b, np.zeros(3 * H)
    dm = _per_gate(input_masks, 3, "input_masks")
    rm = _per_gate(recurrent_masks, 3, "recurrent_masks")

    def step(t, x, states):
        h = states[0]
        g = [slice(k * H, (k + 1) * H) for k in range(3)]
        x_z, x_r, x_h = (_drop(x, dm[k]) @ W[:, g[k]] + bx[g[k]] for k in range(3))
        h_z, h_r, h_h = (_drop(h, rm[k]) for k in range(3))
        z = sigmoid(x_z + h_z @ U[:, g[0]] + bh[g[0]])
        r = sigmoid(x_r + h_r @ U[:, g[1]] + bh[g[1]])
        if reset_after:
            cand = np.tanh(x_h + r * (h_h @ U[:, g[2]] + bh[g[2]]))
        else:
            cand = np.tanh(x_h + (r * h_h) @ U[:, g[2]])
        new = z * h + (1.0 - z) * cand
        return new, [new]

    return step


def lstm_cell(kernel, recurrent_kernel, bias, *, input_masks=None, recurrent_masks=None) -> Step:
    """Keras 3 LSTMCell (tanh / sigmoid, use_bias=True), gates i, f, c, o in that column order.

    kernel [I, 4H], recurrent_kernel [H, 4H], bias [4H]; states [h, c]. input_masks /
    recurrent_masks: None or 4 masks (i, f, c, o) of [B, I] / [B, H].
    """
    W, U, b = _f64(kernel), _f64(recurrent_kernel), _f64(bias)
    H = U.shape[0]
    dm = _per_gate(input_masks, 4, "input_masks")
    rm = _per_gate(recurrent_masks, 4, "recurrent_masks")

    def step(t, x, states):
        h, c = states
        pre = [
            _drop(x, dm[k]) @ W[:, k * H : (k + 1) * H]
            + b[k * H : (k + 1) * H]
            + _drop(h, rm[k]) @ U[:, k * H : (k + 1) * H]
            for k in range(4)
        ]
        i, f, o = sigmoid(pre[0]), sigmoid(pre[1]), sigmoid(pre[3])
        c_new = f * c + i * np.tanh(pre[2])
        h_new = o * np.tanh(c_new)
        return h_new, [h_new, c_new]

    return step


def simple_rnn_cell(
    kernel, recurrent_kernel, bias, *, activation: str = "tanh", input_mask=None,
    recurrent_mask=None,
) -> Step:  # fmt: skip
    """Keras 3 SimpleRNNCell: h = act(x m_x W + b + (h m_h) U); one mask each (or None)."""
    W, U, b = _f64(kernel), _f64(recurrent_kernel), _f64(bias)
    act = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0)}[activation]
    dm, rm = _f64(input_mask), _f64(recurrent_mask)

    def step(t, x, states):
        new = act(_drop(x, dm) @ W + b + _drop(states[0], rm) @ U)
        return new, [new]

    return step


def layer_norm_lstm_cell(
    weights: Sequence, *, norm_epsilon: float = 1e-3, recurrent_mask=None
) -> Step:
    """TF Addons LayerNormLSTMCell. weights in its get_weights() order: kernel [I, 4H],
    recurrent_kernel [H, 4H], bias [4H], kernel_norm gamma, beta [4H], recurrent_norm gamma,
    beta [4H], state_norm gamma, beta [H]. States [h, c]. recurrent_mask [B, H]: its recurrent
    dropout (`h_tm1 *= rec_dp_mask[0]` before h's product; the state carried is undropped)."""
    W, U, b, gk, bk, gr, br, gs, bs = (_f64(w) for w in weights)
    H = U.shape[0]
    recurrent_mask = _f64(recurrent_mask)

    def step(t, x, states):
        h, c = states
        hd = _drop(h, recurrent_mask)
        z = layer_norm(x @ W, gk, bk, norm_epsilon) + layer_norm(hd @ U, gr, br, norm_epsilon) + b
        i, f, g, o = (z[:, k * H : (k + 1) * H] for k in range(4))
        c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        c_new = layer_norm(c_new, gs, bs, norm_epsilon)
        h_new = sigmoid(o) * np.tanh(c_new)
        return h_new, [h_new, c_new]

    return step


def layer_norm_gru_cell(
    weights: Sequence, *, norm_epsilon: float = 1e-5, recurrent_mask=None
) -> Step:
    """haste LayerNormGRU. weights in its order: kernel [I, 3H], recurrent_kernel [H, 3H],
    bias [3H], recurrent_bias [3H], gamma [2, 3H] (row 0 for x W, row 1 for h R).
    recurrent_mask [B, H]: h ⊙ m in h's product with R only (as the LSTM's; z h_prev and the
    carried state see h undropped)."""
    W, U, b, br, gamma = (_f64(w) for w in weights)
    H = U.shape[0]
    recurrent_mask = _f64(recurrent_mask)

    def step(t, x, states):
        h = states[0]
        xn = layer_norm(x @ W, gamma[0], None, norm_epsilon) + b
        hn = layer_norm(_drop(h, recurrent_mask) @ U, gamma[1], None, norm_epsilon) + br
        x_z, x_r, x_g = (xn[:, k * H : (k + 1) * H] for k in range(3))
        h_z, h_r, h_g = (hn[:, k * H : (k + 1) * H] for k in range(3))
        z = sigmoid(x_z + h_z)
        r = sigmoid(x_r + h_r)
        g = np.tanh(r * h_g + x_g)
        new = z * h + (1.0 - z) * g
        return new, [new]

    return step


def zoneout(cell: Step, rate: float, masks=None) -> Step:
    """haste zoneout on h (states[0]) only. masks: None (inference: p h_prev + (1 - p) h~) or
    [T, B, H] in {0, 1}, masks[t] for the t-th step processed (training:
    h_prev + m (h~ - h_prev)). The zoned h is the output and the carried h."""
    masks = _f64(masks)

    def step(t, x, states):
        _, new_states = cell(t, x, states)
        h_prev, h_new = states[0], new_states[0]
        if masks is None:
            h = rate * h_prev + (1.0 - rate) * h_new
        else:
            h = h_prev + masks[t] * (h_new - h_prev)
        return h, [h, *new_states[1:]]

    return step


def zoneout_mask(rng: np.random.Generator, shape, rate: float) -> np.ndarray:
    """haste's mask: floor((1 - p) + U[0, 1)), i.e. 1 with probability 1 - p."""
    return np.floor((1.0 - rate) + rng.uniform(size=shape))


def dropout_masks(rng: np.random.Generator, count: int, shape, rate: float) -> list:
    """`count` inverted-dropout masks of `shape` with entries in {0, 1/(1-rate)} (Keras')."""
    return [(rng.uniform(size=shape) >= rate) / (1.0 - rate) for _ in range(count)]


def rnn(
    cell: Step,
    x,
    initial_states: Sequence,
    *,
    time_major: bool = False,
    mask=None,
    lengths=None,
    go_backwards: bool = False,
    zero_output_for_mask: bool = False,
):
    """Runs `cell` over a whole sequence with Keras 3's RNN loop semantics.

    x: [B, T, I] (or [T, B, I] with time_major). mask: bool [B, T] (or [T, B]) or None; lengths:
    [B] (step t valid when t < lengths[b]), an alternative to mask. Returns (outputs, last_output,
    states): outputs [B, T, H] (or [T, B, H]) in the order processed (reversed with go_backwards),
    last_output [B, H] the output of the last step processed, states the final states (float64).
    """
    x = _f64(x)
    if time_major:
        x = np.swapaxes(x, 0, 1)
        mask = None if mask is None else np.swapaxes(np.asarray(mask), 0, 1)
    B, T = x.shape[0], x.shape[1]
    if lengths is not None:
        if mask is not None:
            raise ValueError("give mask or lengths, not both")
        mask = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    if mask is not None:
        mask = np.asarray(mask, dtype=bool).reshape(B, T)
    order = range(T - 1, -1, -1) if go_backwards else range(T)
    states = [_f64(s).copy() for s in initial_states]
    prev_out = None
    outputs = []
    for step_index, t in enumerate(order):
        out, new_states = cell(step_index, x[:, t], states)
        if prev_out is None:
            prev_out = np.zeros_like(out)
        if mask is not None:
            keep = mask[:, t][:, None]
            new_states = [np.where(keep, n, s) for n, s in zip(new_states, states, strict=True)]
            out = np.where(keep, out, 0.0 if zero_output_for_mask else prev_out)
        states, prev_out = new_states, out
        outputs.append(out)
    H = states[0].shape[-1]
    seq = np.stack(outputs, axis=1) if outputs else np.zeros((B, 0, H))
    last = prev_out if prev_out is not None else np.zeros((B, H))
    if time_major:
        seq = np.swapaxes(seq, 0, 1)
    return seq, last, states
