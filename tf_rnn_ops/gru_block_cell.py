"""The GRU block cell ops (docs/MATH.md, "GRU block cell") and the gradient of the forward op.

`gru_block_cell` takes the keyword arguments of `tf.raw_ops.GRUBlockCell` and returns the same
outputs (r, u, c, h) in the same order; `gru_block_cell_grad` likewise for
`tf.raw_ops.GRUBlockCellGrad` (d_x, d_h_prev, d_c_bar, d_r_bar_u_bar).

The registered gradient of `TfRnn>GRUBlockCell` is correct for a loss on any of r, u, c and h
(TensorFlow's own wrapper used only the gradient arriving at h). The grad kernel computes the
backprop of a gradient at h alone; the gradients at r, u and c enter as follows. With
g_c = d_c + d_h (1 - u) and g_u = d_u + d_h (h_prev - c) the total gradients at c and u,

    d_c_bar = g_c (1 - c^2)            d_u_bar = g_u u (1 - u)
    d_h_prevr = (d_c_bar . w_c^T)[:, I:]
    d_r_bar = (d_h_prevr h_prev + d_r) r (1 - r)
    [d_x, d_h_prev] = [d_r_bar, d_u_bar] . w_ru^T + [d_c_bar . w_c^T][:, :I] | d_h_prevr r + d_h u

* d_c = 0: the kernel with d_h is exact except for d_r and d_u, which add
  delta = [d_r r (1 - r), d_u u (1 - u)] to d_r_bar_u_bar and delta . w_ru^T to [d_x, d_h_prev].
* d_c != 0: the kernel is called with u := 0 and d_h := g_c, which makes its d_c_bar = g_c (1 - c^2)
  exact, and with it d_h_prevr, the d_r_bar from d_h_prevr, and everything flowing through w_c; it
  leaves d_u_bar = 0 and drops d_h u from d_h_prev. So delta = [d_r r (1 - r), g_u u (1 - u)] is
  added as above, and d_h u to d_h_prev.

Only the extra product delta . w_ru^T is needed, and none when the gradients at r, u and c are
absent or statically zero (the usual case: a loss that depends on h only).

TensorFlow never registered a gradient for its own `GRUBlockCell` (tf.raw_ops.GRUBlockCell); where
it has none, importing tf_rnn_ops registers the same gradient for it (computed with our grad op).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf

from tf_rnn_ops._loader import ops as _ops
from tf_rnn_ops._registry import register_gradient, register_gradient_if_missing

try:  # the eager context's zeros cache, where the tape's zero gradients come from
    from tensorflow.python.eager import context as _eager_context
except ImportError:  # pragma: no cover - TensorFlow internals moved; values are checked instead
    _eager_context = None

# The largest zeros the eager context caches (tensorflow/python/eager/context.py).
_TAPE_ZEROS_MAX_SIZE = 10_000

__all__ = ["gru_block_cell", "gru_block_cell_grad"]


_DTYPES = (tf.float32, tf.float64, tf.float16, tf.bfloat16)


def _check_dtypes(fn: str, **inputs) -> None:
    """A TypeError naming the input when a tensor input has a wrong or mismatched dtype.

    (Without it, eager execution reports only "input #1 ... float ... double", or an attr error.)
    Inputs that are not yet tensors (numpy arrays, lists) are converted by the op as usual.
    """
    first = None
    for name, value in inputs.items():
        if not isinstance(value, (tf.Tensor, tf.Variable)):
            continue
        dtype = value.dtype
        if dtype not in _DTYPES:
            allowed = ", ".join(d.name for d in _DTYPES)
            raise TypeError(f"{fn}: input '{name}' has dtype {dtype.name}, not one of {allowed}")
        if first is None:
            first = (name, dtype)
        elif dtype != first[1]:
            raise TypeError(
                f"{fn}: input '{name}' has dtype {dtype.name}, but input '{first[0]}' has "
                f"{first[1].name} (all inputs must have the same dtype)"
            )


def gru_block_cell(x, h_prev, w_ru, w_c, b_ru, b_c, name=None):
    """One GRU cell step (as `tf.raw_ops.GRUBlockCell`); returns (r, u, c, h), each [B, H].

    x [B, I], h_prev [B, H], w_ru [I+H, 2H] (columns r | u), w_c [I+H, H], b_ru [2H], b_c [H];
    dtype float32, float64, float16 or bfloat16 (the 16-bit types are computed in float32).
    """
    _check_dtypes("gru_block_cell", x=x, h_prev=h_prev, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c)
    return _ops().tf_rnn_gru_block_cell(
        x=x, h_prev=h_prev, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c, name=name
    )


def gru_block_cell_grad(x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h, name=None):
    """Backprop of one GRU cell step for a gradient d_h at h (as `tf.raw_ops.GRUBlockCellGrad`).

    Returns (d_x [B, I], d_h_prev [B, H], d_c_bar [B, H], d_r_bar_u_bar [B, 2H]).
    """
    _check_dtypes(
        "gru_block_cell_grad",
        x=x,
        h_prev=h_prev,
        w_ru=w_ru,
        w_c=w_c,
        b_ru=b_ru,
        b_c=b_c,
        r=r,
        u=u,
        c=c,
        d_h=d_h,
    )
    return _ops().tf_rnn_gru_block_cell_grad(
        x=x,
        h_prev=h_prev,
        w_ru=w_ru,
        w_c=w_c,
        b_ru=b_ru,
        b_c=b_c,
        r=r,
        u=u,
        c=c,
        d_h=d_h,
        name=name,
    )


def _is_tape_zeros(grad, shape: tuple) -> bool:
    """Whether `grad` (of `shape`) is the zeros the eager tape feeds for an output that got no
    gradient.

    TensorFlow's tape takes them from its context's zeros cache (tensors of up to 10,000
    elements), so they are recognized by identity with the cached tensor, without reading a value.
    """
    if _eager_context is None:  # pragma: no cover - TensorFlow internals moved
        return False
    try:
        ctx = _eager_context.context()
        cached = ctx.zeros_cache().get((shape, grad.dtype.as_datatype_enum, ctx.device_name))
    except (AttributeError, TypeError):  # pragma: no cover - TensorFlow internals moved
        return False
    return cached is grad


@functools.lru_cache(maxsize=64)
def _on_cpu(device: str) -> bool:
    """Whether a tensor's device string names a CPU (parsed once per device)."""
    return tf.DeviceSpec.from_string(device).device_type in (None, "CPU")


def _is_zero(grad) -> bool:
    """Whether an incoming gradient is absent or zero, where that is cheap to know.

    Eager: the tape's cached zeros (by identity); another tensor on the CPU by its values (its
    numpy view shares the tensor's memory); a tensor on a GPU is taken as nonzero (reading it would
    wait for the device). In a graph: statically known to be zero. Skipping a zero gradient only
    skips work: the result is the same either way.
    """
    if grad is None:
        return True
    if not isinstance(grad, tf.Tensor):
        return False
    if tf.executing_eagerly():
        shape = tuple(grad.shape)
        if math.prod(shape) <= _TAPE_ZEROS_MAX_SIZE and _is_tape_zeros(grad, shape):
            return True
        return _on_cpu(grad.device) and not np.any(grad.numpy())
    if grad.op.type == "ZerosLike":  # what tf.gradients feeds for an unused output
        return True
    value = tf.get_static_value(grad)  # Const, and Fill of a constant
    return value is not None and not np.any(value)


@register_gradient("TfRnn>GRUBlockCell")
def _gru_block_cell_gradient(op, d_r, d_u, d_c, d_h):
    """d_x, d_h_prev, d_w_ru, d_w_c, d_b_ru, d_b_c for gradients at any of r, u, c, h."""
    x, h_prev, w_ru, w_c, b_ru, b_c = op.inputs
    r, u, c, h = op.outputs
    one = tf.ones([], dtype=r.dtype)
    with_r, with_u, with_c = (not _is_zero(g) for g in (d_r, d_u, d_c))
    if d_h is None:
        d_h = tf.zeros_like(h)

    if not with_c:
        d_x, d_h_prev, d_c_bar, d_r_bar_u_bar = gru_block_cell_grad(
            x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h
        )
        extra_u = d_u * u * (one - u) if with_u else None
    else:
        # u := 0 and d_h := g_c: the kernel's d_c_bar (and all that flows from it) is exact.
        g_c = d_h * (one - u) + d_c
        d_x, d_h_prev, d_c_bar, d_r_bar_u_bar = gru_block_cell_grad(
            x, h_prev, w_ru, w_c, b_ru, b_c, r, tf.zeros_like(u), c, g_c
        )
        d_h_prev = d_h_prev + d_h * u
        g_u = d_h * (h_prev - c)
        if with_u:
            g_u = g_u + d_u
        extra_u = g_u * u * (one - u)
    extra_r = d_r * r * (one - r) if with_r else None

    if extra_r is not None or extra_u is not None:
        if extra_r is None:
            extra_r = tf.zeros_like(r)
        if extra_u is None:
            extra_u = tf.zeros_like(u)
        delta = tf.concat([extra_r, extra_u], axis=1)
        d_r_bar_u_bar = d_r_bar_u_bar + delta
        d_x_h_prev = tf.matmul(delta, w_ru, transpose_b=True)  # [B, I + H]
        input_size = tf.shape(x)[1]
        d_x = d_x + d_x_h_prev[:, :input_size]
        d_h_prev = d_h_prev + d_x_h_prev[:, input_size:]

    x_h_prev = tf.concat([x, h_prev], axis=1)
    x_h_prevr = tf.concat([x, h_prev * r], axis=1)
    d_w_ru = tf.matmul(x_h_prev, d_r_bar_u_bar, transpose_a=True)
    d_w_c = tf.matmul(x_h_prevr, d_c_bar, transpose_a=True)
    d_b_ru = tf.reduce_sum(d_r_bar_u_bar, axis=0)
    d_b_c = tf.reduce_sum(d_c_bar, axis=0)
    return d_x, d_h_prev, d_w_ru, d_w_c, d_b_ru, d_b_c


# ------------------------------------------------------------ second-order: the grad op's gradient
def _gru_block_cell_grad_formula(x, h_prev, w_ru, w_c, r, u, c, d_h):
    """What the grad op computes, as TensorFlow ops, with r, u, c taken as given (its inputs):

    d_c_bar = d_h (1 - u) (1 - c^2)          d_u_bar = d_h (h_prev - c) u (1 - u)
    [d_x_c, d_h_prevr] = d_c_bar . w_c^T      d_r_bar = d_h_prevr h_prev r (1 - r)
    [d_x_ru, d_h_ru] = [d_r_bar, d_u_bar] . w_ru^T
    d_x = d_x_ru + d_x_c                      d_h_prev = d_h_ru + d_h_prevr r + d_h u
    """
    one = tf.ones([], dtype=d_h.dtype)
    input_size = tf.shape(x)[1]
    d_c_bar = d_h * (one - u) * (one - c * c)
    d_u_bar = d_h * (h_prev - c) * u * (one - u)
    d_xh_c = tf.matmul(d_c_bar, w_c, transpose_b=True)
    d_h_prevr = d_xh_c[:, input_size:]
    d_r_bar = d_h_prevr * h_prev * r * (one - r)
    d_r_bar_u_bar = tf.concat([d_r_bar, d_u_bar], axis=1)
    d_xh_ru = tf.matmul(d_r_bar_u_bar, w_ru, transpose_b=True)
    d_x = d_xh_ru[:, :input_size] + d_xh_c[:, :input_size]
    d_h_prev = d_xh_ru[:, input_size:] + d_h_prevr * r + d_h * u
    return d_x, d_h_prev, d_c_bar, d_r_bar_u_bar


def _gru_block_cell_grad_gradient(op, *grads):
    """Gradient of the grad op (a second derivative of the cell) for its inputs (x, h_prev, w_ru,
    w_c, b_ru, b_c, r, u, c, d_h): its formula differentiated with r, u and c as independent inputs,
    as the op takes them. x, b_ru and b_c do not enter it (zeros). 16-bit types in float32."""
    if all(g is None for g in grads):
        return [None] * 10
    x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h = op.inputs
    dtype = x.dtype
    compute = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
    srcs = [tf.cast(t, compute) for t in (h_prev, w_ru, w_c, r, u, c, d_h)]
    xc = tf.cast(x, compute)
    with tf.GradientTape() as tape:
        tape.watch(srcs)
        outs = _gru_block_cell_grad_formula(xc, *srcs)
    ups = [
        tf.zeros_like(o) if g is None else tf.cast(g, compute)
        for o, g in zip(outs, grads, strict=True)
    ]
    d_h_prev, d_w_ru, d_w_c, d_r, d_u, d_c, d_d_h = (
        tf.cast(g, dtype)
        for g in tape.gradient(
            outs, srcs, output_gradients=ups, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
    )
    zeros = tf.zeros_like
    return [zeros(x), d_h_prev, d_w_ru, d_w_c, zeros(b_ru), zeros(b_c), d_r, d_u, d_c, d_d_h]


register_gradient("TfRnn>GRUBlockCellGrad")(_gru_block_cell_grad_gradient)


# The same for TensorFlow's own GRUBlockCellGrad (same inputs and outputs), where TensorFlow
# registers none (so a future TensorFlow with its own keeps it).
register_gradient_if_missing("GRUBlockCellGrad")(_gru_block_cell_grad_gradient)


# TensorFlow's own GRUBlockCell (tf.raw_ops.GRUBlockCell) has the same inputs, outputs and math, but
# TensorFlow never registered its gradient. The same gradient serves it, computed by our grad op
# (TensorFlow's GRUBlockCellGrad kernel leaves d_x uninitialised when H = 0).
@register_gradient_if_missing("GRUBlockCell")
def _tf_gru_block_cell_gradient(op, d_r, d_u, d_c, d_h):
    """The gradient of TensorFlow's GRUBlockCell, for gradients at any of r, u, c, h."""
    return _gru_block_cell_gradient(op, d_r, d_u, d_c, d_h)
