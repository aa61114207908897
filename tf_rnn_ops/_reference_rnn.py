"""The fused RNNs' forward passes in plain TensorFlow ops, for second-order gradients.

`cudnn_rnn`'s kernels compute the forward and its backprop in C++. The backprop ops' own gradient
(a gradient of a gradient: a gradient penalty through an RNN) is the second derivative of the
forward, which this module provides by re-running the forward as TensorFlow ops and letting nested
`tf.GradientTape`s differentiate it twice (`backprop_vjp_gradient`). It is written from the math:

* Gates per pseudo-layer (one layer, one direction) with canonical matrices W_k [H, in] (absent
  for layer 0 with skip_input: W_k x becomes x), R_k [H, H_out], separate biases b_Wk, b_Rk:
  - rnn_tanh / rnn_relu: h' = act(W x + b_W + R h + b_R).
  - lstm (gates i, f, c, o): i, f, o = σ(W_k x + b_Wk + R_k h + b_Rk), g = tanh(…);
    c' = f ∘ c + i ∘ g, m = o ∘ tanh(c'), h' = m, or P m with a projection P [num_proj, H].
  - gru (gates r, z, h): r, z = σ(W_k x + b_Wk + R_k h + b_Rk),
    h~ = tanh(W_h x + b_Wh + r ∘ (R_h h + b_Rh)), h' = (1 − z) ∘ h~ + z ∘ h.
  - gru_reset_before: the same but h~ = tanh(W_h x + b_Wh + R_h (r ∘ h) + b_Rh).
* Sequence lengths: a step t ≥ len_b leaves row b's state unchanged and outputs zeros. The
  backward direction runs t = T−1 … 0, so it reads each sequence's valid part reversed.
* Layers: layer l + 1 reads layer l's output (both directions concatenated, forward first), times
  the dropout mask of layer l + 1 where the forward ran with dropout in training.
* 16-bit types are computed in float32, like the kernels.

`keras_rnn_dropout_forward` is the same step math for `TfRnn>KerasRNNDropout` (one layer, Keras'
weight layout, per-gate recurrent-dropout masks, zoneout); `vjp_gradient` differentiates any such
forward twice (also for `tf_rnn_ops.layer_norm_rnn`'s op).

The opaque params are split by `tf_rnn_ops.params.opaque_to_canonical`. The loop over time is a
Python loop when executing eagerly and a `tf.while_loop` in a graph (the number of time steps may
then be known at run time only, and tracing stays fast: an unrolled double backward of 50 steps
took ~7x longer to trace). The other sizes (layers, units, input size) must be known.
"""

from __future__ import annotations

import tensorflow as tf

from tf_rnn_ops import params as _params
from tf_rnn_ops._modes import SAVED_BUFFERS, keras_gate_permutation

__all__ = [
    "rnn_forward",
    "keras_rnn_dropout_forward",
    "reserve_layout",
    "dropout_masks_from_reserve",
    "backprop_vjp_gradient",
    "vjp_gradient",
]

_HALF_TYPES = (tf.float16, tf.bfloat16)


def static_dim(t: tf.Tensor, axis: int, what: str) -> int:
    dim = t.shape[axis] if t.shape.rank is not None else None
    if dim is None:
        raise ValueError(
            f"second-order gradients of the fused RNNs need {what} known when the graph is built "
            f"(they fix the layout of the weights), but a tensor has shape {t.shape}"
        )
    return int(dim)


def model_sizes(input, input_h, input_c, rnn_mode: str, direction: str, time_major: bool):
    """(num_layers, num_units, input_size, steps) from the static shapes, as the kernels read them:
    num_layers from input_h, num_units the last dimension of input_c (lstm) or input_h. steps is
    None where the number of time steps is known only at run time."""
    dirs = _params.num_dirs(direction)
    num_layers = static_dim(input_h, 0 if time_major else 1, "num_layers (input_h)") // dirs
    if rnn_mode == "lstm":
        num_units = static_dim(input_c, 2, "num_units (input_c's last dimension)")
    else:
        num_units = static_dim(input_h, 2, "num_units (input_h's last dimension)")
    input_size = static_dim(input, 2, "input_size (input's last dimension)")
    steps = input.shape[0 if time_major else 1] if input.shape.rank is not None else None
    return num_layers, num_units, input_size, steps


def _cell_step(rnn_mode, x_parts, h, c, recurrent):
    """One step of a cell (the math in the module docstring), in either weight layout.

    x_parts: the input side of each gate, bias included, [B, H] each, in canonical gate order
    (lstm i, f, c, o; gru r, z, h); h [B, H_out]; c [B, H] (lstm, else None); recurrent(v, g0, g1):
    the recurrent pre-activations (bias included) of canonical gates g0 … g1 − 1 on v, a list of
    [B, H]. Returns (h', c') before any projection (lstm: h' = o ∘ tanh(c')).
    """
    if rnn_mode in ("rnn_tanh", "rnn_relu"):
        pre = x_parts[0] + recurrent(h, 0, 1)[0]
        return (tf.tanh(pre) if rnn_mode == "rnn_tanh" else tf.nn.relu(pre)), c
    if rnn_mode == "lstm":
        gi, gf, gc, go = (x + r for x, r in zip(x_parts, recurrent(h, 0, 4), strict=True))
        c_new = tf.sigmoid(gf) * c + tf.sigmoid(gi) * tf.tanh(gc)
        return tf.sigmoid(go) * tf.tanh(c_new), c_new
    x_r, x_z, x_h = x_parts
    if rnn_mode == "gru_reset_before":  # the reset gate scales h before R_h
        h_r, h_z = recurrent(h, 0, 2)
        r = tf.sigmoid(x_r + h_r)
        cand = tf.tanh(x_h + recurrent(r * h, 2, 3)[0])
    else:
        h_r, h_z, h_h = recurrent(h, 0, 3)
        r = tf.sigmoid(x_r + h_r)
        cand = tf.tanh(x_h + r * h_h)
    z = tf.sigmoid(x_z + h_z)
    return (1 - z) * cand + z * h, c


def _pseudo_layer_step(rnn_mode, xw_t, h, c, R, P, b_r):
    """One step: xw_t [B, G·H] the input part (with b_W), h [B, H_out], c [B, H] (lstm)."""
    units = R.shape[0] // _params.NUM_GATES[rnn_mode]

    def recurrent(v, g0, g1):
        rows = slice(g0 * units, g1 * units)
        return tf.split(tf.matmul(v, R[rows], transpose_b=True) + b_r[rows], g1 - g0, axis=1)

    x_parts = tf.split(xw_t, _params.NUM_GATES[rnn_mode], axis=1)
    h_new, c_new = _cell_step(rnn_mode, x_parts, h, c, recurrent)
    return (h_new if P is None else tf.matmul(h_new, P, transpose_b=True)), c_new


def rnn_forward(
    input,
    input_h,
    input_c,
    params,
    sequence_lengths=None,
    *,
    rnn_mode: str = "lstm",
    input_mode: str = "linear_input",
    direction: str = "unidirectional",
    num_proj: int = 0,
    time_major: bool = True,
    dropout_masks=None,
):
    """The forward pass of `cudnn_rnn` in TensorFlow ops: (output, output_h, output_c).

    Shapes and arguments as `tf_rnn_ops.cudnn_rnn`; output_c is None unless rnn_mode is lstm.
    dropout_masks: None, or per layer l ≥ 1 (a list indexed by l − 1) the multiplier of layer l's
    input, time-major [T, B, dirs·H_out]. Computed in float32 for 16-bit inputs (the results then
    are float32 too).
    """
    lstm = rnn_mode == "lstm"
    num_layers, num_units, input_size, steps = model_sizes(
        input, input_h, input_c, rnn_mode, direction, time_major
    )
    dirs = _params.num_dirs(direction)
    g = _params.NUM_GATES[rnn_mode]
    layout = (rnn_mode, num_layers, num_units, input_size, direction, input_mode, num_proj)
    skip = _params.uses_skip_input(input_mode, input_size, num_units)
    dtype = tf.float32 if input.dtype in _HALF_TYPES else input.dtype

    def cast(t):
        return tf.cast(t, dtype) if t.dtype != dtype else t

    x, h0, c0, p = cast(input), cast(input_h), cast(input_c) if lstm else None, cast(params)
    if not time_major:
        x = tf.transpose(x, [1, 0, 2])
        h0 = tf.transpose(h0, [1, 0, 2])
        if lstm:
            c0 = tf.transpose(c0, [1, 0, 2])
    batch = tf.shape(x)[1]
    steps_t = tf.shape(x)[0]
    if sequence_lengths is None:
        lengths = tf.fill([batch], steps_t)
    else:
        lengths = tf.cast(sequence_lengths, tf.int32)
    weights, biases = _params.opaque_to_canonical(p, *layout)
    h_out = _params.output_size(rnn_mode, num_units, num_proj)

    layer_in = x
    hs, cs = [], []
    iw = ib = 0
    for layer in range(num_layers):
        if layer > 0 and dropout_masks is not None:
            layer_in = layer_in * cast(dropout_masks[layer - 1])
        outs = []
        for d in range(dirs):
            has_w = not (layer == 0 and skip)
            n_w = (2 * g if has_w else g) + (1 if num_proj else 0)
            mats = weights[iw : iw + n_w]
            iw += n_w
            b_w = tf.concat(biases[ib : ib + g], 0)
            b_r = tf.concat(biases[ib + g : ib + 2 * g], 0)
            ib += 2 * g
            if has_w:
                w_all = tf.concat(mats[:g], 0)  # [G·H, in]
                rest = mats[g:]
                xw = tf.tensordot(layer_in, w_all, [[2], [1]]) + b_w  # [T, B, G·H]
            else:
                rest = mats
                xw = tf.tile(layer_in, [1, 1, g]) + b_w
            R = tf.concat(rest[:g], 0)  # [G·H, H_out]
            P = rest[g] if num_proj else None
            h = h0[layer * dirs + d]
            c = c0[layer * dirs + d] if lstm else None

            def step(t, h, c, xw=xw, R=R, P=P, b_r=b_r):
                valid = tf.expand_dims(t < lengths, 1)
                h_new, c_new = _pseudo_layer_step(rnn_mode, xw[t], h, c, R, P, b_r)
                out = tf.where(valid, h_new, tf.zeros_like(h_new))
                h = tf.where(valid, h_new, h)
                if lstm:
                    c = tf.where(valid, c_new, c)
                return out, h, c

            out, h, c = time_loop(step, steps, steps_t, h, c, h_out, reverse=d == 1)
            outs.append(out)
            hs.append(h)
            if lstm:
                cs.append(c)
        layer_in = tf.concat(outs, axis=2) if dirs > 1 else outs[0]
    output, output_h = layer_in, tf.stack(hs)
    output_c = tf.stack(cs) if lstm else None
    if not time_major:
        output = tf.transpose(output, [1, 0, 2])
        output_h = tf.transpose(output_h, [1, 0, 2])
        if lstm:
            output_c = tf.transpose(output_c, [1, 0, 2])
    return output, output_h, output_c


def optional_input(t, ranks: tuple[int, ...], what: str):
    """t, or None where the op's input says "absent" (no elements); the forms an op input takes
    are told apart by rank (a [0] placeholder has rank 1), so the rank must be known."""
    if t is None:
        return None
    rank = t.shape.rank
    if rank is None:
        raise ValueError(
            f"second-order gradients need the rank of {what} known when the graph is built, but "
            f"it has shape {t.shape}"
        )
    if rank in ranks and t.shape.num_elements() != 0:
        return t
    return None


def _lengths_or_full(sequence_lengths, batch, steps_t):
    """[B] int32 lengths from an op's sequence_lengths ([B], or [0]: every sequence full)."""
    if sequence_lengths is None:
        return tf.fill([batch], steps_t)
    lengths = tf.cast(sequence_lengths, tf.int32)
    # [0] becomes B entries T; [B] stays (B − size = 0 entries appended)
    return tf.concat([lengths, tf.fill([batch - tf.size(lengths)], steps_t)], 0)


def zone_at(zoneout, t, h_new, h_prev):
    """Zoneout at step t (`tf_rnn_ops.layers._zoneout.zone`): zoneout is a keep mask [T, B, H]
    (step t's slice) or a scalar 1 - p, as the fused ops take it."""
    from tf_rnn_ops.layers._zoneout import zone

    return zone(h_new, h_prev, zoneout if zoneout.shape.rank == 0 else zoneout[t])


def keras_rnn_dropout_forward(
    projected_input,
    input_h,
    input_c,
    recurrent_kernel,
    recurrent_bias=None,
    sequence_lengths=None,
    recurrent_masks=None,
    zoneout_mask=None,
    *,
    rnn_mode: str,
    time_major: bool = False,
):
    """The forward pass of `TfRnn>KerasRNNDropout` (`tf_rnn_ops.keras_rnn_dropout`) in TensorFlow
    ops: (output, output_h, output_c, None for all but lstm).

    docs/MATH.md, "Cells beyond cuDNN" (Recurrent dropout, Zoneout): Keras' gate column order;
    gate g's recurrent product is (h ⊙ m_g) U_g (+ the recurrent bias; a [2, G·H] bias's row 0
    added to the projected input), the same masks at every step; zoneout
    h_t = h_{t−1} + k_t ⊙ (h̃_t − h_{t−1}) on the valid steps, k [T, B, H] time-major in both
    layouts or a scalar; a step t ≥ length keeps the states and outputs zeros.
    Absent options may be None or the op's empty placeholders.
    """
    lstm = rnn_mode == "lstm"
    g = _params.NUM_GATES[rnn_mode]
    gx = projected_input if time_major else tf.transpose(projected_input, [1, 0, 2])
    units = static_dim(recurrent_kernel, 0, "units (recurrent_kernel's first dimension)")
    steps, steps_t, batch = gx.shape[0], tf.shape(gx)[0], tf.shape(gx)[1]
    lengths = _lengths_or_full(sequence_lengths, batch, steps_t)
    masks = optional_input(recurrent_masks, (3,), "recurrent_masks")
    zoneout = optional_input(zoneout_mask, (0, 3), "zoneout_mask")
    rbias = optional_input(recurrent_bias, (1, 2), "recurrent_bias")
    if rbias is not None and rbias.shape.rank == 2:  # [2, G·H]: the input side's bias row first
        gx, rbias = gx + rbias[0], rbias[1]
    u = tf.split(recurrent_kernel, g, axis=1)
    b = tf.split(rbias, g) if rbias is not None else None
    keras_gate = keras_gate_permutation(rnn_mode)  # canonical gate -> Keras' block

    def recurrent(v, g0, g1):
        out = []
        for k in keras_gate[g0:g1]:
            a = tf.matmul(v if masks is None else v * masks[k], u[k])
            out.append(a if b is None else a + b[k])
        return out

    def step(t, h, c):
        x_parts = tf.split(gx[t], g, axis=1)
        h_new, c_new = _cell_step(rnn_mode, [x_parts[k] for k in keras_gate], h, c, recurrent)
        if zoneout is not None:
            h_new = zone_at(zoneout, t, h_new, h)
        valid = tf.expand_dims(t < lengths, 1)
        out = tf.where(valid, h_new, tf.zeros_like(h_new))
        h = tf.where(valid, h_new, h)
        if lstm:
            c = tf.where(valid, c_new, c)
        return out, h, c

    out, h, c = time_loop(step, steps, steps_t, input_h, input_c if lstm else None, units)
    return (out if time_major else tf.transpose(out, [1, 0, 2])), h, c


def time_loop(step, steps, steps_t, h, c, h_out, reverse: bool = False):
    """(outputs [T, B, H_out], final h, final c) of `step(t, h, c)` -> (output, h, c) over the
    steps (backwards with `reverse`): a Python loop when executing eagerly (`steps` is known), a
    `tf.while_loop` over `steps_t` (a tensor) in a graph. c may be None."""
    if not tf.executing_eagerly():
        return _while_loop(step, steps_t, h, c, reverse=reverse, h_out=h_out)
    out = [None] * steps
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        out[t], h, c = step(t, h, c)
    return (tf.stack(out) if steps else tf.zeros([0, tf.shape(h)[0], h_out], h.dtype)), h, c


def _while_loop(step, steps, h, c, reverse: bool, h_out: int):
    """The loop over time for a number of steps known only at run time: (outputs [T, B, H_out],
    final h, final c); `step(t, h, c)` -> (output, h, c). c may be None (not lstm)."""
    outputs = tf.TensorArray(h.dtype, size=steps, element_shape=tf.TensorShape([None, h_out]))
    lstm = c is not None
    carry_c = c if lstm else tf.zeros([], h.dtype)  # a while_loop carries tensors only

    def body(i, h, carry_c, outputs):
        t = steps - 1 - i if reverse else i
        out, h, c_new = step(t, h, carry_c if lstm else None)
        return i + 1, h, (c_new if lstm else carry_c), outputs.write(t, out)

    _, h, carry_c, outputs = tf.while_loop(
        lambda i, *_: i < steps, body, [tf.constant(0), h, carry_c, outputs]
    )
    return outputs.stack(), h, (carry_c if lstm else None)


def reserve_layout(
    rnn_mode: str,
    num_layers: int,
    num_units: int,
    direction: str,
    num_proj: int,
    has_dropout: bool,
    save_hprev: bool,
) -> tuple[int, list[int]]:
    """The layout of the CPU kernels' reserve_space (cc/kernels/rnn_layouts.h, RnnReserveLayout),
    in units of T·B compute-type elements: (its size, the offset of the dropout mask of each layer
    1 … L−1, or [] without dropout).

    Per layer, then per direction: the cell's saved buffers (`_modes.SAVED_BUFFERS`, in order), with
    a projection the unprojected outputs [T, B, H], then the state before each step [T, B, H_out]
    where saved (`save_hprev`: 16-bit types; or a layer whose output dropout scales); then, for
    layer l ≥ 1, its input [T, B, dirs·H_out] and (with dropout) its mask, same shape. All
    time-major.
    """
    dirs = _params.num_dirs(direction)
    h_out = _params.output_size(rnn_mode, num_units, num_proj)
    ow = dirs * h_out
    per_step = sum(h_units * num_units + fixed for _, h_units, fixed in SAVED_BUFFERS[rnn_mode])
    pos, masks_at = 0, []
    for layer in range(num_layers):
        output_scaled = has_dropout and layer + 1 < num_layers
        for _ in range(dirs):
            pos += per_step
            if num_proj:
                pos += num_units
            if save_hprev or output_scaled:
                pos += h_out
        if layer > 0:
            pos += ow  # the layer's input
            if has_dropout:
                masks_at.append(pos)
                pos += ow
    return pos, masks_at


def dropout_masks_from_reserve(
    reserve_space,
    dtype: tf.DType,
    rnn_mode: str,
    num_layers: int,
    num_units: int,
    input_size: int,
    direction: str,
    num_proj: int,
    steps,
    batch,
):
    """The dropout masks the forward kernel drew (training, dropout > 0), read from reserve_space
    (`reserve_layout`), which is in the compute type (float32 for 16-bit types, whose reserve_space
    packs two elements per float32). Returns the masks of layers 1 … L−1 as a list,
    [T, B, dirs·H_out] each.
    """
    ow = _params.num_dirs(direction) * _params.output_size(rnn_mode, num_units, num_proj)
    save_hprev = dtype in _HALF_TYPES
    size, masks_at = reserve_layout(
        rnn_mode, num_layers, num_units, direction, num_proj, True, save_hprev
    )
    steps, batch = tf.cast(steps, tf.int64), tf.cast(batch, tf.int64)
    tb = steps * batch
    if save_hprev:
        n = size * tb
        flat = tf.bitcast(tf.reshape(reserve_space[: 2 * n], [-1, 2]), tf.float32)
    else:
        flat = reserve_space
    return [
        tf.reshape(flat[at * tb : (at + ow) * tb], tf.stack([steps, batch, ow])) for at in masks_at
    ]


def backprop_vjp_gradient(
    forward_inputs,
    cotangents,
    upstream,
    sequence_lengths=None,
    dropout_masks=None,
    **attrs,
):
    """The gradient of a fused-RNN backprop op, whose outputs are the VJP of the forward.

    forward_inputs: (input, input_h, input_c, params); cotangents: (output_backprop,
    output_h_backprop, output_c_backprop) at which the backprop op takes the VJP; upstream: the
    gradients arriving at its outputs (input_backprop, input_h_backprop, input_c_backprop,
    params_backprop), None where none arrives. Returns `vjp_gradient`'s 7 tensors in the inputs'
    dtypes (16-bit types computed in float32). attrs: rnn_mode, input_mode, direction, num_proj,
    time_major as in `rnn_forward`.
    """
    dtype = forward_inputs[0].dtype
    compute = tf.float32 if dtype in _HALF_TYPES else dtype
    ups = list(upstream)
    if attrs["rnn_mode"] != "lstm":
        ups[2] = None  # input_c does not enter the math; its backprop is zeros

    def forward(*theta):
        return rnn_forward(*theta, sequence_lengths, dropout_masks=dropout_masks, **attrs)

    grads = vjp_gradient(
        forward,
        [tf.cast(t, compute) for t in forward_inputs],
        [tf.cast(t, compute) for t in cotangents],
        [None if u is None else tf.cast(u, compute) for u in ups],
    )
    return [tf.cast(g_, dtype) for g_ in grads]


def vjp_gradient(forward, primals, cotangents, upstream):
    """The gradient of an op whose outputs are the VJP of `forward` (a backprop op).

    forward(*primals) returns the forward outputs (None for one that does not exist, e.g. a GRU's
    c); cotangents: one per forward output, at which the op takes the VJP v(θ, d) = (∂f/∂θ)ᵀ d;
    upstream: the gradients arriving at the op's outputs v (one per primal), None where none
    arrives. Returns the gradients of Σ ⟨v, upstream⟩ with respect to θ (a second derivative of f)
    and d (the JVP of f along upstream), in that order; zeros where unconnected.
    """
    zero = tf.UnconnectedGradients.ZERO
    primals, cotangents = list(primals), list(cotangents)
    with tf.GradientTape() as outer:
        outer.watch(primals + cotangents)
        with tf.GradientTape() as inner:
            inner.watch(primals)
            outputs = forward(*primals)
        pairs = [(o, d) for o, d in zip(outputs, cotangents, strict=True) if o is not None]
        vjp = inner.gradient(
            [o for o, _ in pairs], primals, output_gradients=[d for _, d in pairs],
            unconnected_gradients=zero,
        )  # fmt: skip
        terms = [tf.reduce_sum(v * u) for v, u in zip(vjp, upstream, strict=True) if u is not None]
        total = tf.add_n(terms) if terms else tf.zeros([], primals[0].dtype)
    return outer.gradient(total, primals + cotangents, unconnected_gradients=zero)
