"""The cuDNN-style fused RNN ops (SPEC.md §4) and the gradient of the forward op.

Each function takes the keyword arguments of its `tf.raw_ops` namesake and returns the same
outputs in the same order:

=================================  ==========================================
`cudnn_rnn`                        `tf.raw_ops.CudnnRNNV3`
`cudnn_rnn_backprop`               `tf.raw_ops.CudnnRNNBackpropV3`
`cudnn_rnn_params_size`            `tf.raw_ops.CudnnRNNParamsSize`
`cudnn_rnn_params_to_canonical`    `tf.raw_ops.CudnnRNNParamsToCanonicalV2`
`cudnn_rnn_canonical_to_params`    `tf.raw_ops.CudnnRNNCanonicalToParamsV2`
=================================  ==========================================

Unlike TensorFlow's, these run on CPU. `sequence_lengths` may also be None (every sequence is full;
as the lengths are int32, that needs T <= 2^31 - 1 unless the batch is empty).

`dropout` is any probability in [0, 1], as in TensorFlow's op definitions (NaN, < 0 or > 1 is an
InvalidArgumentError). It acts only with `is_training=True`, on the input of every layer but the
first (inverted: kept elements scaled by 1 / (1 - dropout)); at 1 every between-layer input is
dropped, as cuDNN does. The params ops accept and ignore it. The masks come from TensorFlow's Philox
generator keyed by (`seed`, `seed2`) and advance from call to call of the same op kernel, as
TensorFlow's GPU kernels keep a dropout state that advances: a training loop (eager, or a traced
step) sees fresh masks at every step, while a new kernel with the same seeds (a newly traced
function, a new process) replays the same sequence. The backprop reads the masks of its forward
call from reserve_space. TensorFlow's own CudnnRNN* ops, served by our CPU kernels, do the same.
"""

from __future__ import annotations

import tensorflow as tf

from tf_rnn_ops._loader import ops as _ops
from tf_rnn_ops._registry import register_gradient

__all__ = [
    "cudnn_rnn",
    "cudnn_rnn_backprop",
    "cudnn_rnn_params_size",
    "cudnn_rnn_params_to_canonical",
    "cudnn_rnn_canonical_to_params",
]


_INT32_MAX = 2**31 - 1


# Why full lengths cannot be given for a T past int32 (after "input has <T>").
_TOO_MANY_STEPS = (
    "time steps (T), but sequence_lengths is int32 (as in tf.raw_ops.CudnnRNNV3) and holds at "
    f"most 2^31 - 1 = {_INT32_MAX}: without sequence_lengths every sequence is full, which cannot "
    "be said for this T. Run the sequence in chunks of at most 2^31 - 1 steps (output_h/output_c "
    "of one chunk as input_h/input_c of the next)"
)


def _static_size(t) -> int | None:
    """The number of elements of a tensor-like when known before running, else None."""
    try:
        return tf.TensorShape(getattr(t, "shape", None)).num_elements()
    except (TypeError, ValueError):
        return None


def _checked_batch(batch: tf.Tensor, input_h) -> tf.Tensor:
    """batch, or 0 where input_h has fewer elements than batch (a call the op refuses anyway)."""
    try:
        h_size = tf.size(input_h, out_type=tf.int64)
    except (TypeError, ValueError):  # not a tensor: the op names input_h
        return batch
    return tf.where(batch <= h_size, batch, tf.zeros_like(batch))


def _full_lengths(input: tf.Tensor, input_h, time_major: bool, op: str) -> tf.Tensor:
    """sequence_lengths for `sequence_lengths=None`: [B] int32, every entry T.

    Dimensions are read as int64, so that any T works when B = 0 (the lengths are empty); a T past
    int32 with B > 0 is refused (ValueError when the shape is known, else InvalidArgumentError at
    run time), never wrapped. The lengths (4 bytes per row) are not built for a call that the op
    refuses on its shapes before it reads them: an input of another rank, or an input_h with fewer
    elements than input has rows (input_h is [layers * dirs, B, H]; with a B of up to 2^63 - 1 in
    an empty input, the lengths alone could ask for any amount of memory).
    """
    t_axis, b_axis = (0, 1) if time_major else (1, 0)
    static = input.shape
    if static.rank is not None and static.rank != 3:
        return tf.zeros([0], tf.int32)  # not [T, B, I]: the op refuses the input
    h_size = _static_size(input_h)
    if static.rank is not None:
        steps, batch = static[t_axis], static[b_axis]
        if batch is not None and (batch == 0 or (h_size is not None and h_size < batch)):
            return tf.zeros([0], tf.int32)  # no rows, or input_h too small: the op refuses it
        if steps is not None and batch is not None and h_size is not None:
            if steps > _INT32_MAX:
                raise ValueError(f"{op}: input has {steps} {_TOO_MANY_STEPS}.")
            return tf.fill([batch], tf.constant(steps, tf.int32))
        if steps is not None and steps <= _INT32_MAX:  # only B unknown (Keras): no Assert
            batch = _checked_batch(tf.shape(input, out_type=tf.int64)[b_axis], input_h)
            return tf.fill([batch], tf.constant(steps, tf.int32))
    # Some dimension known only at run time. Padded with zeros so that an input of another rank
    # still reaches the op, which names the problem.
    shape = tf.concat([tf.shape(input, out_type=tf.int64), tf.zeros([2], tf.int64)], 0)
    steps, batch = shape[t_axis], _checked_batch(shape[b_axis], input_h)
    fits = tf.logical_or(tf.equal(batch, 0), steps <= _INT32_MAX)
    check = tf.debugging.Assert(fits, [f"{op}: input has", steps, _TOO_MANY_STEPS])
    with tf.control_dependencies([check]):
        return tf.fill([batch], tf.cast(tf.minimum(steps, _INT32_MAX), tf.int32))


def cudnn_rnn(
    input,
    input_h,
    input_c,
    params,
    sequence_lengths=None,
    rnn_mode="lstm",
    input_mode="linear_input",
    direction="unidirectional",
    dropout=0,
    seed=0,
    seed2=0,
    num_proj=0,
    is_training=True,
    time_major=True,
    name=None,
):
    """A multi-layer RNN over whole sequences (as `tf.raw_ops.CudnnRNNV3`).

    Returns (output, output_h, output_c, reserve_space, host_reserved).
    """
    with tf.name_scope(name or "CudnnRNN"):
        input = tf.convert_to_tensor(input)
        if sequence_lengths is None:
            sequence_lengths = _full_lengths(input, input_h, time_major, "cudnn_rnn")
        return _ops().tf_rnn_cudnn_rnn(
            input=input,
            input_h=input_h,
            input_c=input_c,
            params=params,
            sequence_lengths=sequence_lengths,
            rnn_mode=rnn_mode,
            input_mode=input_mode,
            direction=direction,
            dropout=dropout,
            seed=seed,
            seed2=seed2,
            num_proj=num_proj,
            is_training=is_training,
            time_major=time_major,
        )


def cudnn_rnn_backprop(
    input,
    input_h,
    input_c,
    params,
    sequence_lengths,
    output,
    output_h,
    output_c,
    output_backprop,
    output_h_backprop,
    output_c_backprop,
    reserve_space,
    host_reserved,
    rnn_mode="lstm",
    input_mode="linear_input",
    direction="unidirectional",
    dropout=0,
    seed=0,
    seed2=0,
    num_proj=0,
    time_major=True,
    name=None,
):
    """Backprop of `cudnn_rnn` from its reserve_space (as `tf.raw_ops.CudnnRNNBackpropV3`).

    Returns (input_backprop, input_h_backprop, input_c_backprop, params_backprop).
    """
    with tf.name_scope(name or "CudnnRNNBackprop"):
        input = tf.convert_to_tensor(input)
        if sequence_lengths is None:
            sequence_lengths = _full_lengths(input, input_h, time_major, "cudnn_rnn_backprop")
        return _ops().tf_rnn_cudnn_rnn_backprop(
            input=input,
            input_h=input_h,
            input_c=input_c,
            params=params,
            sequence_lengths=sequence_lengths,
            output=output,
            output_h=output_h,
            output_c=output_c,
            output_backprop=output_backprop,
            output_h_backprop=output_h_backprop,
            output_c_backprop=output_c_backprop,
            reserve_space=reserve_space,
            host_reserved=host_reserved,
            rnn_mode=rnn_mode,
            input_mode=input_mode,
            direction=direction,
            dropout=dropout,
            seed=seed,
            seed2=seed2,
            num_proj=num_proj,
            time_major=time_major,
        )


def cudnn_rnn_params_size(
    num_layers,
    num_units,
    input_size,
    T,
    S,
    rnn_mode="lstm",
    input_mode="linear_input",
    direction="unidirectional",
    dropout=0,
    seed=0,
    seed2=0,
    num_proj=0,
    name=None,
):
    """The exact size of the opaque params (as `tf.raw_ops.CudnnRNNParamsSize`): [1] of dtype S."""
    return _ops().tf_rnn_cudnn_rnn_params_size(
        num_layers=num_layers,
        num_units=num_units,
        input_size=input_size,
        T=T,
        S=S,
        rnn_mode=rnn_mode,
        input_mode=input_mode,
        direction=direction,
        dropout=dropout,
        seed=seed,
        seed2=seed2,
        num_proj=num_proj,
        name=name,
    )


def cudnn_rnn_params_to_canonical(
    num_layers,
    num_units,
    input_size,
    params,
    num_params_weights,
    num_params_biases,
    rnn_mode="lstm",
    input_mode="linear_input",
    direction="unidirectional",
    dropout=0,
    seed=0,
    seed2=0,
    num_proj=0,
    name=None,
):
    """Opaque params to canonical (weights, biases), as `tf.raw_ops.CudnnRNNParamsToCanonicalV2`."""
    return _ops().tf_rnn_cudnn_rnn_params_to_canonical(
        num_layers=num_layers,
        num_units=num_units,
        input_size=input_size,
        params=params,
        num_params_weights=num_params_weights,
        num_params_biases=num_params_biases,
        rnn_mode=rnn_mode,
        input_mode=input_mode,
        direction=direction,
        dropout=dropout,
        seed=seed,
        seed2=seed2,
        num_proj=num_proj,
        name=name,
    )


def cudnn_rnn_canonical_to_params(
    num_layers,
    num_units,
    input_size,
    weights,
    biases,
    rnn_mode="lstm",
    input_mode="linear_input",
    direction="unidirectional",
    dropout=0,
    seed=0,
    seed2=0,
    num_proj=0,
    name=None,
):
    """Canonical weights and biases to opaque params (`tf.raw_ops.CudnnRNNCanonicalToParamsV2`)."""
    return _ops().tf_rnn_cudnn_rnn_canonical_to_params(
        num_layers=num_layers,
        num_units=num_units,
        input_size=input_size,
        weights=weights,
        biases=biases,
        rnn_mode=rnn_mode,
        input_mode=input_mode,
        direction=direction,
        dropout=dropout,
        seed=seed,
        seed2=seed2,
        num_proj=num_proj,
        name=name,
    )


_FORWARD_ATTRS = ("rnn_mode", "input_mode", "direction", "dropout", "seed", "seed2")


def _zeros_if_none(grad, like):
    return tf.zeros_like(like) if grad is None else grad


def _skipped_inputs(op) -> tuple:
    """Indices of `op`'s inputs whose gradient is not wanted.

    Only a GradientTape knows (eager, or traced in a `tf.function`, as in a Keras training step);
    `tf.gradients` asks for every input.
    """
    try:
        return tuple(op.skip_input_indices or ())
    except AttributeError:
        return ()


@register_gradient("TfRnn>CudnnRNN")
def _cudnn_rnn_grad(op, *grads):
    """Gradient of the fused RNN: its backprop op, fed the forward's reserve_space.

    When the tape does not need the input's gradient (a model's training step: the data is not a
    variable), the backprop op skips the first layer's input-gradient products.
    """
    if not op.get_attr("is_training"):
        raise ValueError(
            "The gradient of tf_rnn_ops.cudnn_rnn needs the forward pass run with is_training=True "
            "(with is_training=False it keeps nothing for backprop)."
        )
    attrs = {a: op.get_attr(a) for a in _FORWARD_ATTRS}
    skip_input_backprop = 0 in _skipped_inputs(op)
    bp = _ops().tf_rnn_cudnn_rnn_backprop(
        input=op.inputs[0],
        input_h=op.inputs[1],
        input_c=op.inputs[2],
        params=op.inputs[3],
        sequence_lengths=op.inputs[4],
        output=op.outputs[0],
        output_h=op.outputs[1],
        output_c=op.outputs[2],
        output_backprop=_zeros_if_none(grads[0], op.outputs[0]),
        output_h_backprop=_zeros_if_none(grads[1], op.outputs[1]),
        output_c_backprop=_zeros_if_none(grads[2], op.outputs[2]),
        reserve_space=op.outputs[3],
        host_reserved=op.outputs[4],
        num_proj=op.get_attr("num_proj"),
        time_major=op.get_attr("time_major"),
        skip_input_backprop=skip_input_backprop,
        **attrs,
    )
    return None if skip_input_backprop else bp[0], bp[1], bp[2], bp[3], None
