"""The fused layer-normalized LSTM / GRU op (`TfRnn>LayerNormRnn`) and its gradient.

`layer_norm_rnn` runs one layer, one direction, over a whole sequence (time-major, or batch-major
with ``time_major=False``), with the weights
in the Keras layers' layout (`tf_rnn_ops.layers.LayerNormLSTM` / `LayerNormGRU`, TF Addons / haste
order), an optional step mask and haste's zoneout on h. The math (docs/MATH.md, "Cells beyond
cuDNN"):

* ``cell="layer_norm_lstm"`` (TF Addons' LayerNormLSTMCell, gates i, f, c, o):
  z = LN_k(x W) + LN_r(h R) + b; c = sigmoid(f) c_prev + sigmoid(i) tanh(g); c <- LN_s(c);
  h = sigmoid(o) tanh(c).
* ``cell="layer_norm_gru"`` (haste's LayerNormGRU, gates z, r, g): x^ = LN(x W; gamma_x) + b,
  h^ = LN(h R; gamma_h) + b_r (no beta); z = sigmoid(x^_z + h^_z), r = sigmoid(x^_r + h^_r),
  g = tanh(r h^_g + x^_g); h = z h_prev + (1 - z) g.
* zoneout (on h only): with `zoneout_mask` m in {0, 1} [T, B, H]: h = h_prev + m (h~ - h_prev);
  without it and `zoneout` = p > 0: h = p h_prev + (1 - p) h~.
* mask [T, B] in {0, 1} (time-major in both layouts, as zoneout_mask): a masked step keeps the
  states and outputs the carried h (the caller turns that into Keras' masked outputs).
* recurrent_mask m [B, H] (TF Addons' recurrent dropout, one mask for every step and gate):
  h R becomes (h ⊙ m) R; the carried state, zoneout and the GRU's z h_prev see h undropped.

Gradients of gradients (a gradient penalty through the layers) work too: the grad op
`TfRnn>LayerNormRnnGrad` has a gradient, the second derivative of the forward written in
TensorFlow ops (`layer_norm_rnn_forward`, on the Keras-ops cells' step math of
`tf_rnn_ops.layers.layer_norm`), differentiated twice with the masks held fixed.
"""

from __future__ import annotations

import tensorflow as tf

from tf_rnn_ops._loader import ops as _ops
from tf_rnn_ops._registry import register_gradient

__all__ = ["layer_norm_rnn"]

_CELLS = ("layer_norm_lstm", "layer_norm_gru")


def layer_norm_rnn(
    x,
    h0,
    c0,
    kernel,
    recurrent_kernel,
    bias,
    gamma_x,
    gamma_h,
    *,
    cell: str,
    epsilon: float,
    recurrent_bias=None,
    beta_x=None,
    beta_h=None,
    gamma_c=None,
    beta_c=None,
    mask=None,
    zoneout: float = 0.0,
    zoneout_mask=None,
    recurrent_mask=None,
    is_training: bool = True,
    time_major: bool = True,
):
    """Runs the fused layer-norm cell over x [T, B, I]; returns (y [T, B, H], h_n, c_n). With
    time_major=False x is [B, T, I] and y [B, T, H] (mask and zoneout_mask stay [T, B] and
    [T, B, H]).

    c0 / c_n: the LSTM's cell state [B, H] (the GRU: c0 ignored, c_n is [B, 0]). Parameters a cell
    does not use may be None. Gradients flow to every tensor input but the masks. recurrent_mask:
    None or m [B, H] (values 0 or 1 / (1 - rate)), multiplied into h_{t-1} in its product with R.
    `is_training=False` keeps nothing for backprop (faster: no reserve); its gradient, where one is
    asked for, runs the forward pass again with `is_training=True` first. (Zoneout is chosen by
    `zoneout` / `zoneout_mask`, not by this flag.)
    """
    if cell not in _CELLS:
        raise ValueError(f"layer_norm_rnn: cell must be one of {_CELLS}, got {cell!r}")
    zoneout = float(zoneout)
    if not 0.0 <= zoneout < 1.0:
        raise ValueError(f"layer_norm_rnn: zoneout must be in [0, 1), got {zoneout}")
    x = tf.convert_to_tensor(x)
    dtype = x.dtype
    empty = tf.zeros([0], dtype)

    def opt(v):
        return empty if v is None else tf.cast(v, dtype)

    y, hn, cn, _ = _ops().tf_rnn_layer_norm_rnn(
        x=x,
        h0=tf.cast(h0, dtype),
        c0=opt(c0),
        kernel=tf.cast(kernel, dtype),
        recurrent_kernel=tf.cast(recurrent_kernel, dtype),
        bias=tf.cast(bias, dtype),
        recurrent_bias=opt(recurrent_bias),
        gamma_x=tf.cast(gamma_x, dtype),
        beta_x=opt(beta_x),
        gamma_h=tf.cast(gamma_h, dtype),
        beta_h=opt(beta_h),
        gamma_c=opt(gamma_c),
        beta_c=opt(beta_c),
        mask=opt(mask),
        zoneout_mask=opt(zoneout_mask)
        if zoneout_mask is not None or not zoneout
        else tf.constant(1.0 - zoneout, dtype),
        epsilon=tf.constant(float(epsilon), dtype),
        recurrent_mask=[] if recurrent_mask is None else [tf.cast(recurrent_mask, dtype)],
        cell=cell,
        is_training=bool(is_training),
        time_major=bool(time_major),
    )
    return y, hn, cn


def _cell_attr(op) -> str:
    cell = op.get_attr("cell")
    return cell.decode() if isinstance(cell, bytes) else cell


# Both ops' inputs: the forward's 16 (13 primals, then mask, zoneout_mask, epsilon); the grad op's
# then reserve and the cotangents dy, dhn, dcn; both end with the list recurrent_mask (0 or 1).
_NUM_PRIMALS = 13
_NUM_FORWARD_INPUTS = 16
_NUM_GRAD_INPUTS = _NUM_FORWARD_INPUTS + 4


@register_gradient("TfRnn>LayerNormRnn")
def _layer_norm_rnn_grad(op, dy, dhn, dcn, _dreserve):
    y, hn, cn, reserve = op.outputs
    cell = _cell_attr(op)
    time_major = op.get_attr("time_major")
    inputs = list(op.inputs[:_NUM_FORWARD_INPUTS])
    recurrent_mask = list(op.inputs[_NUM_FORWARD_INPUTS:])
    if not op.get_attr("is_training"):  # nothing kept: run the forward pass again, keeping it
        reserve = _ops().tf_rnn_layer_norm_rnn(
            *inputs,
            recurrent_mask=recurrent_mask,
            cell=cell,
            is_training=True,
            time_major=time_major,
        )[3]
    grads = _ops().tf_rnn_layer_norm_rnn_grad(
        *inputs,
        reserve=reserve,
        dy=tf.zeros_like(y) if dy is None else dy,
        dhn=tf.zeros_like(hn) if dhn is None else dhn,
        dcn=tf.zeros_like(cn) if dcn is None else dcn,
        recurrent_mask=recurrent_mask,
        cell=cell,
        time_major=time_major,
    )
    return [*grads, None, None, None] + [None] * len(recurrent_mask)


def layer_norm_rnn_forward(
    x, h0, c0, kernel, recurrent_kernel, bias, recurrent_bias, gamma_x, beta_x, gamma_h, beta_h,
    gamma_c, beta_c, mask, zoneout_mask, epsilon, recurrent_mask=None, *, cell: str,
    time_major: bool = True,
):  # fmt: skip
    """`TfRnn>LayerNormRnn`'s forward in TensorFlow ops, the op's inputs in its order: (y, hn, cn,
    None for the GRU), x and y in the op's layout (`time_major`). The step is the cells'
    (`layer_norm_lstm_step` / `layer_norm_gru_step`, h ⊙ recurrent_mask in h's product), then
    zoneout (k [T, B, H] or a scalar), then the mask (a step with mask 0 keeps the states and
    outputs the carried h). For second-order gradients; the loop as `_reference_rnn`'s."""
    from tf_rnn_ops import _reference_rnn
    from tf_rnn_ops.layers import layer_norm as _cells

    lstm = cell == "layer_norm_lstm"
    if not time_major:
        x = tf.transpose(x, [1, 0, 2])
    units = _reference_rnn.static_dim(recurrent_kernel, 0, "H (recurrent_kernel's first dim)")
    mask = _reference_rnn.optional_input(mask, (2,), "mask")
    zoneout = _reference_rnn.optional_input(zoneout_mask, (0, 3), "zoneout_mask")

    def step(t, h, c):
        if lstm:
            h_new, c_new = _cells.layer_norm_lstm_step(
                x[t], h, c, kernel, recurrent_kernel, bias, gamma_x, beta_x, gamma_h, beta_h,
                gamma_c, beta_c, epsilon, recurrent_mask,
            )  # fmt: skip
        else:
            h_new, c_new = _cells.layer_norm_gru_step(
                x[t], h, kernel, recurrent_kernel, bias, recurrent_bias, gamma_x, gamma_h, epsilon,
                recurrent_mask,
            ), None  # fmt: skip
        if zoneout is not None:
            h_new = _reference_rnn.zone_at(zoneout, t, h_new, h)
        if mask is not None:
            valid = tf.expand_dims(mask[t] != 0, 1)
            h_new = tf.where(valid, h_new, h)
            if lstm:
                c_new = tf.where(valid, c_new, c)
        return h_new, h_new, c_new

    y, hn, cn = _reference_rnn.time_loop(
        step, x.shape[0], tf.shape(x)[0], h0, c0 if lstm else None, units
    )
    return (y if time_major else tf.transpose(y, [1, 0, 2])), hn, cn


@register_gradient("TfRnn>LayerNormRnnGrad")
def _layer_norm_rnn_grad_grad(op, *grads):
    """Second-order gradient of `layer_norm_rnn` (e.g. a gradient penalty through LayerNormLSTM /
    LayerNormGRU): `layer_norm_rnn_forward`, differentiated twice. Gradients for the 13 weight and
    state inputs and the cotangents dy, dhn, dcn; None for the masks, epsilon and the reserve (a
    function of the primals, which the formulation covers; an is_training=False forward's gradient
    reran the forward for it)."""
    from tf_rnn_ops import _reference_rnn

    inputs = list(op.inputs)
    if all(g is None for g in grads):
        return [None] * len(inputs)
    cell = _cell_attr(op)
    time_major = op.get_attr("time_major")
    fixed = inputs[_NUM_PRIMALS:_NUM_FORWARD_INPUTS]
    recurrent_mask = inputs[_NUM_GRAD_INPUTS:]  # [] or [m]

    def forward(*primals):
        return layer_norm_rnn_forward(
            *primals, *fixed, *recurrent_mask, cell=cell, time_major=time_major
        )

    g = _reference_rnn.vjp_gradient(
        forward, inputs[:_NUM_PRIMALS], inputs[_NUM_FORWARD_INPUTS + 1 : _NUM_GRAD_INPUTS], grads
    )
    return [*g[:_NUM_PRIMALS], None, None, None, None, *g[_NUM_PRIMALS:]] + [None] * len(
        recurrent_mask
    )
