"""The cuDNN-style fused RNN ops and the gradients of the forward and backprop ops.

The math of each mode: docs/MATH.md, "Fused RNN cells"; the opaque params: "Params layout".

Each function takes the keyword arguments of its `tf.raw_ops` namesake and returns the same
outputs in the same order:

=================================  ==========================================
`cudnn_rnn`                        `tf.raw_ops.CudnnRNNV3`
`cudnn_rnn_backprop`               `tf.raw_ops.CudnnRNNBackpropV3`
`cudnn_rnn_params_size`            `tf.raw_ops.CudnnRNNParamsSize`
`cudnn_rnn_params_to_canonical`    `tf.raw_ops.CudnnRNNParamsToCanonicalV2`
`cudnn_rnn_canonical_to_params`    `tf.raw_ops.CudnnRNNCanonicalToParamsV2`
=================================  ==========================================

`keras_rnn` (no TensorFlow namesake) runs one unidirectional layer from a Keras cell's own weights,
with no conversion per call; the drop-in layers use it.

Unlike TensorFlow's, these run on CPU. `sequence_lengths` may also be None (every sequence is full;
as the lengths are int32, that needs T <= 2^31 - 1 unless the batch is empty).

Gradients of gradients (e.g. a gradient penalty through an RNN) work too: the backprop op
`TfRnn>CudnnRNNBackprop`, and TensorFlow's CudnnRNNBackprop/V2/V3 where TensorFlow registers no
gradient, get one from the forward written in TensorFlow ops (`tf_rnn_ops._reference_rnn`),
differentiated twice; with dropout in training it uses the forward's masks from reserve_space.
`keras_rnn_dropout`'s backprop op (`TfRnn>KerasRNNDropoutBackprop`) gets one the same way, its
recurrent-dropout and zoneout masks (inputs of the op) held fixed.

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

import dataclasses
import inspect

import tensorflow as tf

from tf_rnn_ops._loader import ops as _ops
from tf_rnn_ops._registry import register_gradient, register_gradient_if_missing
from tf_rnn_ops._xla import refuse_under_xla

__all__ = [
    "cudnn_rnn",
    "cudnn_rnn_backprop",
    "cudnn_rnn_params_size",
    "cudnn_rnn_params_to_canonical",
    "cudnn_rnn_canonical_to_params",
    "keras_rnn",
    "keras_rnn_dropout",
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


# ----------------------------------------------------------------------------- the op wrappers
# The five wrappers below take the keyword arguments of their tf.raw_ops namesakes. Each is built
# by `_wrapper` from a table: the op's inputs, the attrs every op of the family takes (the model's
# attributes, with TensorFlow's defaults), the op's own further attrs, and `name`. Their signatures
# are real ones (`inspect.signature`, `help()` show every parameter and its default).
_MODEL_ATTRS: tuple[tuple[str, object], ...] = (
    ("rnn_mode", "lstm"),
    ("input_mode", "linear_input"),
    ("direction", "unidirectional"),
    ("dropout", 0),
    ("seed", 0),
    ("seed2", 0),
    ("num_proj", 0),
)


@dataclasses.dataclass(frozen=True)
class _OpTable:
    """One wrapper: the generated op function it calls and its parameters, in order."""

    op: str  # the generated op function (`tf_rnn_ops._loader.ops()`'s attribute)
    inputs: tuple[str, ...]  # inputs without a default
    optional: tuple[tuple[str, object], ...] = ()  # inputs with a default, after `inputs`
    attrs: tuple[tuple[str, object], ...] = ()  # attrs after the model's
    # The sequence ops: run in tf.name_scope(name or `scope`); `sequence_lengths` None is filled.
    scope: str | None = None


def _wrapper(public_name: str, table: _OpTable, doc: str):
    """The public function `public_name` with the parameters of `table`, calling its op."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter(n, kind) for n in table.inputs] + [
        inspect.Parameter(n, kind, default=d)
        for n, d in (*table.optional, *_MODEL_ATTRS, *table.attrs, ("name", None))
    ]
    signature = inspect.Signature(parameters)
    names = tuple(signature.parameters)
    allowed = frozenset(names)
    required = frozenset(table.inputs)
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}

    def refuse(args, kwargs):
        try:
            signature.bind(*args, **kwargs)
        except TypeError as e:  # as a Python function's: a TypeError naming the function
            raise TypeError(f"{public_name}(): {e}") from None

    def wrapper(*args, **kwargs):
        # Binds the arguments as Python does (Signature.bind would cost as much again as the
        # op's own Python wrapper; it only words the TypeError).
        given = kwargs
        if args:
            if len(args) > len(names) or not kwargs.keys().isdisjoint(names[: len(args)]):
                refuse(args, kwargs)
            given = dict(zip(names, args, strict=False))
            given.update(kwargs)
        if not (allowed >= given.keys() >= required):
            refuse(args, kwargs)
        arguments = {**defaults, **given}
        name = arguments.pop("name")
        refuse_under_xla(public_name)
        op = getattr(_ops(), table.op)
        if table.scope is None:
            return op(name=name, **arguments)
        with tf.name_scope(name or table.scope):
            arguments["input"] = tf.convert_to_tensor(arguments["input"])
            if arguments["sequence_lengths"] is None:
                arguments["sequence_lengths"] = _full_lengths(
                    arguments["input"], arguments["input_h"], arguments["time_major"], public_name
                )
            return op(**arguments)

    wrapper.__name__ = wrapper.__qualname__ = public_name
    wrapper.__module__ = __name__
    wrapper.__doc__ = doc
    wrapper.__signature__ = signature
    return wrapper


_SEQUENCE_INPUTS = ("input", "input_h", "input_c", "params")
_MODEL_SIZES = ("num_layers", "num_units", "input_size")

cudnn_rnn = _wrapper(
    "cudnn_rnn",
    _OpTable(
        op="tf_rnn_cudnn_rnn",
        inputs=_SEQUENCE_INPUTS,
        optional=(("sequence_lengths", None),),
        attrs=(("is_training", True), ("time_major", True)),
        scope="CudnnRNN",
    ),
    """A multi-layer RNN over whole sequences (as `tf.raw_ops.CudnnRNNV3`).

    Returns (output, output_h, output_c, reserve_space, host_reserved).
    """,
)

cudnn_rnn_backprop = _wrapper(
    "cudnn_rnn_backprop",
    _OpTable(
        op="tf_rnn_cudnn_rnn_backprop",
        inputs=(
            *_SEQUENCE_INPUTS,
            "sequence_lengths",
            "output",
            "output_h",
            "output_c",
            "output_backprop",
            "output_h_backprop",
            "output_c_backprop",
            "reserve_space",
            "host_reserved",
        ),
        attrs=(("time_major", True),),
        scope="CudnnRNNBackprop",
    ),
    """Backprop of `cudnn_rnn` from its reserve_space (as `tf.raw_ops.CudnnRNNBackpropV3`).

    Returns (input_backprop, input_h_backprop, input_c_backprop, params_backprop).
    """,
)

cudnn_rnn_params_size = _wrapper(
    "cudnn_rnn_params_size",
    _OpTable(op="tf_rnn_cudnn_rnn_params_size", inputs=(*_MODEL_SIZES, "T", "S")),
    """The exact size of the opaque params (as `tf.raw_ops.CudnnRNNParamsSize`): [1] of dtype S.""",
)

cudnn_rnn_params_to_canonical = _wrapper(
    "cudnn_rnn_params_to_canonical",
    _OpTable(
        op="tf_rnn_cudnn_rnn_params_to_canonical",
        inputs=(*_MODEL_SIZES, "params", "num_params_weights", "num_params_biases"),
    ),
    """Opaque params to canonical (weights, biases), as `tf.raw_ops.CudnnRNNParamsToCanonicalV2`.
    """,
)

cudnn_rnn_canonical_to_params = _wrapper(
    "cudnn_rnn_canonical_to_params",
    _OpTable(
        op="tf_rnn_cudnn_rnn_canonical_to_params", inputs=(*_MODEL_SIZES, "weights", "biases")
    ),
    """Canonical weights and biases to opaque params (`tf.raw_ops.CudnnRNNCanonicalToParamsV2`).
    """,
)


def _zeros_if_none(grad, like):
    return tf.zeros_like(like) if grad is None else grad


def _refuse_without_training(op, fn: str) -> None:
    """A gradient needs the forward's reserve_space, which is_training=False leaves empty."""
    if not op.get_attr("is_training"):
        raise ValueError(
            f"The gradient of tf_rnn_ops.{fn} needs the forward pass run with is_training=True "
            "(with is_training=False it keeps nothing for backprop)."
        )


def _skipped_inputs(op) -> tuple:
    """Indices of `op`'s inputs whose gradient is not wanted.

    Only a GradientTape knows (eager, or traced in a `tf.function`, as in a Keras training step);
    `tf.gradients` asks for every input.
    """
    try:
        return tuple(op.skip_input_indices or ())
    except AttributeError:
        return ()


def _states_skipped(op, lstm: bool) -> bool:
    """Whether the tape wants neither initial state's gradient (inputs 1 and 2: input_h, and
    input_c where the cell has one): a layer called without initial states."""
    skipped = _skipped_inputs(op)
    return 1 in skipped and (not lstm or 2 in skipped)


def _state_grads(op, skip_state_backprop: bool, bp) -> tuple:
    """The initial states' gradients (input_h's, input_c's) from the backprop op's results `bp`.
    Skipped, they are None, but for the input_c of a cell without one (GRU, SimpleRNN: ignored,
    so skipping does not wait for it) that the tape still asks for: zeros of its shape, as the
    backprop op gives it, whichever other inputs are watched."""
    if not skip_state_backprop:
        return bp[1], bp[2]
    return None, None if 2 in _skipped_inputs(op) else tf.zeros_like(op.inputs[2])


@register_gradient("TfRnn>CudnnRNN")
def _cudnn_rnn_grad(op, *grads):
    """Gradient of the fused RNN: its backprop op, fed the forward's reserve_space.

    When the tape does not need the input's gradient (a model's training step: the data is not a
    variable), the backprop op skips the first layer's input-gradient products.
    """
    _refuse_without_training(op, "cudnn_rnn")
    attrs = {a: op.get_attr(a) for a, _ in _MODEL_ATTRS}
    skip_input_backprop = 0 in _skipped_inputs(op)
    skip_state_backprop = _states_skipped(op, _str_attr(attrs["rnn_mode"]) == "lstm")
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
        time_major=op.get_attr("time_major"),
        skip_input_backprop=skip_input_backprop,
        skip_state_backprop=skip_state_backprop,
        **attrs,
    )
    states = _state_grads(op, skip_state_backprop, bp)
    return None if skip_input_backprop else bp[0], *states, bp[3], None


def keras_rnn(
    input,
    input_h,
    input_c,
    kernel,
    recurrent_kernel,
    bias=None,
    sequence_lengths=None,
    rnn_mode="lstm",
    is_training=True,
    time_major=False,
    name=None,
):
    """One unidirectional RNN layer from a Keras cell's weights, as they are (op `TfRnn>KerasRNN`).

    input [B, T, I] ([T, B, I] with time_major); input_h, input_c [B, H] (input_c: lstm only, else
    ignored; may be None); kernel [I, G·H] and recurrent_kernel [H, G·H] with Keras' gate column
    order (GRU z, r, h with reset_after=True; LSTM i, f, c, o; SimpleRNN for rnn_tanh / rnn_relu);
    bias as Keras shapes it (GRU [2, 3H], LSTM [4H], SimpleRNN [H]) or None (use_bias=False);
    sequence_lengths [B] int32 or None (every sequence full). float32 or float64.

    The same computation as `cudnn_rnn` on `params.keras_to_opaque(...)` for one layer, without the
    conversion, which would cost more than a one-step call (B = T = 1) does. Returns (output [B, T,
    H], output_h [B, H], output_c ([B, H] for lstm, else a scalar 0), reserve_space); differentiable
    w.r.t. input, states and the three weights (in Keras layout) when run with is_training=True.
    """
    refuse_under_xla("keras_rnn")
    with tf.name_scope(name or "KerasRNN"):
        input = tf.convert_to_tensor(input)
        dtype = input.dtype
        if input_c is None:
            input_c = tf.zeros([0], dtype)
        if bias is None:
            bias = tf.zeros([0], dtype)
        if sequence_lengths is None:
            sequence_lengths = tf.zeros([0], tf.int32)
        return _ops().tf_rnn_keras_rnn(
            input=input,
            input_h=input_h,
            input_c=input_c,
            kernel=kernel,
            recurrent_kernel=recurrent_kernel,
            bias=bias,
            sequence_lengths=sequence_lengths,
            rnn_mode=rnn_mode,
            is_training=is_training,
            time_major=time_major,
        )


@register_gradient("TfRnn>KerasRNN")
def _keras_rnn_grad(op, *grads):
    """Gradient of `keras_rnn`: TfRnn>KerasRNNBackprop, which reads the weights and writes their
    gradients in Keras' layout (nothing converted per call)."""
    _refuse_without_training(op, "keras_rnn")
    mode = _str_attr(op.get_attr("rnn_mode"))
    time_major = op.get_attr("time_major")
    x, h0, c0, kernel, rkernel, bias, lengths = op.inputs
    y, hn, cn, reserve = op.outputs
    lstm = mode == "lstm"
    skip_input_backprop = 0 in _skipped_inputs(op)
    skip_state_backprop = _states_skipped(op, lstm)
    bp = _ops().tf_rnn_keras_rnn_backprop(
        input=x,
        input_h=h0,
        input_c=c0,
        kernel=kernel,
        recurrent_kernel=rkernel,
        bias=bias,
        sequence_lengths=lengths,
        output=y,
        output_h=hn,
        output_c=cn,
        output_backprop=_zeros_if_none(grads[0], y),
        output_h_backprop=_zeros_if_none(grads[1], hn),
        output_c_backprop=_zeros_if_none(grads[2], cn) if lstm else tf.zeros_like(cn),
        reserve_space=reserve,
        rnn_mode=mode,
        time_major=time_major,
        skip_input_backprop=skip_input_backprop,
        skip_state_backprop=skip_state_backprop,
    )
    states = _state_grads(op, skip_state_backprop, bp)
    return (None if skip_input_backprop else bp[0], *states, *bp[3:6], None)


def keras_rnn_dropout(
    projected_input,
    input_h,
    input_c,
    recurrent_kernel,
    recurrent_masks,
    recurrent_bias=None,
    sequence_lengths=None,
    rnn_mode="lstm",
    is_training=True,
    time_major=False,
    name=None,
    zoneout_mask=None,
    gate_major=False,
):
    """The recurrence of one Keras layer with recurrent dropout and / or zoneout (op
    `TfRnn>KerasRNNDropout`; CPU kernels, and GPU kernels in the GPU library).

    projected_input [B, T, G·H] ([T, B, G·H] with time_major): the input side of every gate, bias
    included (with input dropout: (x ⊙ d_k) W_k + b_k for each gate k), in Keras' gate column order
    (GRU z, r, h; LSTM i, f, c, o); input_h, input_c [B, H] (input_c: lstm only, else None);
    recurrent_kernel [H, G·H] as Keras keeps it; recurrent_masks [G, B, H] (Keras' gate order,
    entries 0 or 1/(1-p)): gate g's recurrent product is (h_{t-1} ⊙ masks[g]) U_g, the same masks
    at every step, or None (no recurrent dropout: the plain recurrent products); recurrent_bias
    [G·H] (Keras' gate order) added to every gate's recurrent side: Keras GRU reset_after=True's
    recurrent row (inside the reset gate's product), for the other modes the same as a bias in
    projected_input; or [2, G·H], a bias added to projected_input (Keras GRU's input row), then
    that recurrent one (Keras GRU's [2, 3H] bias as it is); or None. The layers pass their bias
    here: the op sums its grad in a pass it already makes;
    sequence_lengths [B] int32 or None;
    zoneout_mask: haste's zoneout on h after every step, h_t = h_{t-1} + m ⊙ (h~_t - h_{t-1}) (the
    zoned h is the output and the carried state; LSTM's c is not zoned): [T, B, H] time-major in
    both layouts (training: m in {0, 1}, 1 with probability 1 - rate), a scalar 1 - rate
    (inference: rate·h_{t-1} + (1 - rate)·h~_t), or None (no zoneout). float32 or float64.
    gate_major: projected_input is [G, B, T, H] ([G, T, B, H] with time_major) instead, gate g's
    input side in block g (Keras' gate order); its gradient likewise (the layers' per-gate products
    with input dropout, one batched product, no concat and no slices of its gradient).
    Returns (output, output_h, output_c, reserve_space) as `keras_rnn`; differentiable w.r.t.
    projected_input, the states, recurrent_kernel and recurrent_bias (not the masks) when run with
    is_training=True.
    """
    refuse_under_xla("keras_rnn_dropout")
    with tf.name_scope(name or "KerasRNNDropout"):
        projected_input = tf.convert_to_tensor(projected_input)
        dtype = projected_input.dtype
        if input_c is None:
            input_c = tf.zeros([0], dtype)
        if recurrent_bias is None:
            recurrent_bias = tf.zeros([0], dtype)
        if sequence_lengths is None:
            sequence_lengths = tf.zeros([0], tf.int32)
        if recurrent_masks is None:
            recurrent_masks = tf.zeros([0], dtype)
        if zoneout_mask is None:
            zoneout_mask = tf.zeros([0], dtype)
        return _ops().tf_rnn_keras_rnn_dropout(
            projected_input=projected_input,
            input_h=input_h,
            input_c=input_c,
            recurrent_kernel=recurrent_kernel,
            recurrent_bias=recurrent_bias,
            sequence_lengths=sequence_lengths,
            recurrent_masks=recurrent_masks,
            zoneout_mask=zoneout_mask,
            rnn_mode=rnn_mode,
            is_training=is_training,
            time_major=time_major,
            gate_major=gate_major,
        )


@register_gradient("TfRnn>KerasRNNDropout")
def _keras_rnn_dropout_grad(op, *grads):
    """Gradient of `keras_rnn_dropout`: TfRnn>KerasRNNDropoutBackprop (no gradient for the
    dropout and zoneout masks and the lengths; none for the states when the tape wants none)."""
    _refuse_without_training(op, "keras_rnn_dropout")
    gx, h0, c0, rkernel, rbias, lengths, masks, zoneout_mask = op.inputs
    y, hn, cn, reserve = op.outputs
    mode = op.get_attr("rnn_mode")
    skip_state_backprop = _states_skipped(op, _str_attr(mode) == "lstm")

    bp = _ops().tf_rnn_keras_rnn_dropout_backprop(
        projected_input=gx,
        input_h=h0,
        input_c=c0,
        recurrent_kernel=rkernel,
        recurrent_bias=rbias,
        sequence_lengths=lengths,
        recurrent_masks=masks,
        zoneout_mask=zoneout_mask,
        output=y,
        output_h=hn,
        output_c=cn,
        output_backprop=_zeros_if_none(grads[0], y),
        output_h_backprop=_zeros_if_none(grads[1], hn),
        output_c_backprop=_zeros_if_none(grads[2], cn),
        reserve_space=reserve,
        rnn_mode=mode,
        time_major=op.get_attr("time_major"),
        gate_major=op.get_attr("gate_major"),
        skip_state_backprop=skip_state_backprop,
    )
    states = _state_grads(op, skip_state_backprop, bp)
    return bp[0], *states, bp[3], bp[4], None, None, None


# ----------------------------------------------------------------- second-order: backprop gradients
# The backprop ops' skip attrs and the outputs each returns as zeros (nothing flows back through
# those): skip_input_backprop input_backprop's, skip_state_backprop the states' grads.
_ZEROED_OUTPUTS = {"skip_input_backprop": (0,), "skip_state_backprop": (1, 2)}
_SKIP_ATTRS = {
    "TfRnn>CudnnRNNBackprop": ("skip_input_backprop", "skip_state_backprop"),
    "TfRnn>KerasRNNBackprop": ("skip_input_backprop", "skip_state_backprop"),
    "TfRnn>KerasRNNDropoutBackprop": ("skip_state_backprop",),
}


def _upstream_past_zeroed_outputs(op, grads) -> list:
    """The grads arriving at a backprop op's outputs, None at those its skip attrs zeroed."""
    grads = list(grads)
    for attr in _SKIP_ATTRS.get(op.type, ()):
        if op.get_attr(attr):
            for i in _ZEROED_OUTPUTS[attr]:
                grads[i] = None
    return grads


def _backprop_gradient(op, grads, lengths_at: int | None):
    """Gradient of a fused-RNN backprop op (`TfRnn>CudnnRNNBackprop`, TensorFlow's
    CudnnRNNBackprop/V2/V3): the second derivative of the forward, from its TensorFlow-ops
    formulation (`tf_rnn_ops._reference_rnn`), differentiated twice.

    The op's outputs are the VJP of the forward at (input, input_h, input_c, params) with the
    cotangents (output_backprop, output_h_backprop, output_c_backprop); these seven inputs get
    gradients. output, output_h, output_c, reserve_space (and sequence_lengths, host_reserved) get
    None: they are functions of the forward inputs, whose dependence the formulation already covers
    (with dropout, the masks are read from reserve_space and held fixed, as the kernel does; this
    knows the CPU kernels' layout only, and refuses a reserve_space placed on a GPU).
    `lengths_at`: the index of sequence_lengths among the inputs (V3 and ours), else None.
    """
    from tf_rnn_ops import _reference_rnn

    inputs = list(op.inputs)
    k = 5 if lengths_at is not None else 4  # index of `output`
    forward_inputs = inputs[:4]
    cotangents = inputs[k + 3 : k + 6]
    upstream = _upstream_past_zeroed_outputs(op, grads)
    none_after = [None] * (len(inputs) - 4)
    if all(u is None for u in upstream):
        return [None] * len(inputs)

    has_v3_attrs = lengths_at is not None  # V1/V2 have neither num_proj nor time_major
    attrs = dict(
        rnn_mode=_str_attr(op.get_attr("rnn_mode")),
        input_mode=_str_attr(op.get_attr("input_mode")),
        direction=_str_attr(op.get_attr("direction")),
        num_proj=op.get_attr("num_proj") if has_v3_attrs else 0,
        time_major=op.get_attr("time_major") if has_v3_attrs else True,
    )
    lengths = inputs[lengths_at] if lengths_at is not None else None
    masks = None
    num_layers, num_units, input_size, steps = _reference_rnn.model_sizes(
        forward_inputs[0], forward_inputs[1], forward_inputs[2], attrs["rnn_mode"],
        attrs["direction"], attrs["time_major"],
    )  # fmt: skip
    if op.get_attr("dropout") > 0 and num_layers > 1:
        if "GPU" in (getattr(inputs[k + 6], "device", "") or "").upper():
            raise ValueError(
                f"The gradient of {op.type} (a second-order gradient) with dropout between layers "
                "reads the forward's dropout masks from the CPU kernels' reserve_space, and this "
                "reserve_space comes from a GPU kernel, whose layout differs. Run the RNN on CPU "
                "for it, or train with dropout=0."
            )
        shape = tf.shape(forward_inputs[0])
        batch = shape[1 if attrs["time_major"] else 0]
        if steps is None:  # known at run time only
            steps = shape[0 if attrs["time_major"] else 1]
        masks = _reference_rnn.dropout_masks_from_reserve(
            inputs[k + 6], forward_inputs[0].dtype, attrs["rnn_mode"], num_layers, num_units,
            input_size, attrs["direction"], attrs["num_proj"], steps, batch,
        )  # fmt: skip
    g = _reference_rnn.backprop_vjp_gradient(
        forward_inputs, cotangents, upstream, sequence_lengths=lengths, dropout_masks=masks,
        **attrs,
    )  # fmt: skip
    out = g[:4] + none_after
    out[k + 3 : k + 6] = g[4:]
    return out


@register_gradient("TfRnn>KerasRNNBackprop")
def _keras_rnn_backprop_grad(op, *grads):
    """Second-order gradient of `keras_rnn` (a gradient penalty through a drop-in layer): its
    forward in TensorFlow ops, the input side x·W + b_W, then
    `_reference_rnn.keras_rnn_dropout_forward` with no masks, differentiated twice. Gradients for
    the six primals (input, the states, the three weights) and the three cotangents; None for the
    lengths, the forward's outputs and reserve_space (functions of the primals, which the
    formulation covers)."""
    from tf_rnn_ops import _reference_rnn

    inputs = list(op.inputs)
    grads = _upstream_past_zeroed_outputs(op, grads)
    if all(g is None for g in grads):
        return [None] * len(inputs)
    mode = _str_attr(op.get_attr("rnn_mode"))
    time_major = op.get_attr("time_major")
    lengths = inputs[6]

    def forward(x, h0, c0, kernel, rkernel, bias):
        gx = tf.einsum("...i,ij->...j", x, kernel)
        rbias = None
        if bias.shape.num_elements() != 0:
            if mode == "gru":  # Keras' [2, 3H]: the input row, then the recurrent row
                gx, rbias = gx + bias[0], bias[1]
            else:
                gx = gx + bias
        return _reference_rnn.keras_rnn_dropout_forward(
            gx, h0, c0, rkernel, rbias, lengths, rnn_mode=mode, time_major=time_major
        )

    g = _reference_rnn.vjp_gradient(forward, inputs[:6], inputs[10:13], grads)
    return [*g[:6], None, None, None, None, *g[6:], None]


@register_gradient("TfRnn>KerasRNNDropoutBackprop")
def _keras_rnn_dropout_backprop_grad(op, *grads):
    """Second-order gradient of `keras_rnn_dropout` (a gradient penalty through a layer with
    recurrent dropout or zoneout): its forward in TensorFlow ops
    (`_reference_rnn.keras_rnn_dropout_forward`), differentiated twice, with the op's masks held
    fixed. Gradients for projected_input, the states, recurrent_kernel and recurrent_bias (the
    primals) and the three cotangents; None for the lengths, the masks, the forward's outputs and
    reserve_space (functions of the primals, which the formulation covers; read from no reserve,
    so this is the same on every device)."""
    from tf_rnn_ops import _reference_rnn

    inputs = list(op.inputs)
    grads = _upstream_past_zeroed_outputs(op, grads)
    if all(g is None for g in grads):
        return [None] * len(inputs)
    gx, h0, c0, rkernel, rbias, lengths, masks, zoneout = inputs[:8]
    gate_major = op.get_attr("gate_major")

    def forward(*primals):
        projected = primals[0]
        if gate_major:  # [G, ·, ·, H] -> [·, ·, G·H], the formulation's layout
            s = tf.shape(projected)
            projected = tf.reshape(tf.transpose(projected, [1, 2, 0, 3]), [s[1], s[2], -1])
        return _reference_rnn.keras_rnn_dropout_forward(
            projected, *primals[1:4], primals[4], lengths, masks, zoneout,
            rnn_mode=_str_attr(op.get_attr("rnn_mode")), time_major=op.get_attr("time_major"),
        )  # fmt: skip

    g = _reference_rnn.vjp_gradient(forward, [gx, h0, c0, rkernel, rbias], inputs[11:14], grads)
    return [*g[:5], None, None, None, None, None, None, *g[5:], None]


def _str_attr(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


@register_gradient("TfRnn>CudnnRNNBackprop")
def _cudnn_rnn_backprop_grad(op, *grads):
    """Second-order gradient of `TfRnn>CudnnRNN` (e.g. a gradient penalty through an RNN)."""
    return _backprop_gradient(op, grads, lengths_at=4)


def _register_tf_backprop_gradients() -> None:
    """Gradients for TensorFlow's CudnnRNNBackprop/V2/V3, where TensorFlow registers none (so a
    future TensorFlow with its own keeps it)."""
    for op_type, lengths_at in (
        ("CudnnRNNBackprop", None),
        ("CudnnRNNBackpropV2", None),
        ("CudnnRNNBackpropV3", 4),
    ):

        def grad(op, *grads, _at=lengths_at):
            return _backprop_gradient(op, grads, _at)

        grad.__doc__ = f"Second-order gradient through TensorFlow's {op_type} (our formulation)."
        register_gradient_if_missing(op_type)(grad)


_register_tf_backprop_gradients()
