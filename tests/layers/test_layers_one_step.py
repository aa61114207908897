"""One-step calls (T = 1, states in and out: text generation, decoding, streaming) of the drop-in
layers: what their graphs run, and their results against Keras' layers with the same weights, with
and without a mask, over return_sequences, go_backwards and zero_output_for_mask."""

from __future__ import annotations

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_rnn_ops import layers as L

TOL = dict(rtol=1e-5, atol=1e-5)
IN, H = 3, 5
KINDS = [
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("LSTM", {}),
    ("SimpleRNN", {}),
]
KIND_IDS = ["gru", "gru_reset_before", "lstm", "rnn_tanh"]
# What a one-step call without a mask may run: the inputs, the three weight reads, the op and its
# constant empty inputs (no c0 / sequence_lengths), the outputs.
ONE_STEP_OPS = {"Placeholder", "ReadVariableOp", "Const", "TfRnn>KerasRNN", "Identity", "NoOp"}
PACKING_OPS = {"TopKV2", "GatherV2", "Cumsum", "Range", "ReverseV2", "Sum"}


def _pair(name, rng, **kwargs):
    ours = getattr(L, name)(H, **kwargs)
    ref = getattr(keras.layers, name)(H, **kwargs)
    for layer in (ours, ref):
        layer.build((None, 1, IN))
    ours.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    return ref, ours


def _n_states(name):
    return 2 if name == "LSTM" else 1


def _executed_ops(fn, *args) -> collections.Counter:
    """The op types a call of `fn` runs: what its outputs depend on (TensorFlow prunes the rest)."""
    cf = fn.get_concrete_function(*args)
    seen, stack = set(), [t.op for t in cf.outputs]
    while stack:
        op = stack.pop()
        if op.name not in seen:
            seen.add(op.name)
            stack += [t.op for t in op.inputs] + list(op.control_inputs)
    return collections.Counter(cf.graph.get_operation_by_name(n).type for n in seen)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_one_step_call_runs_the_op_and_the_weight_reads_only(rng, kind, return_sequences):
    """No slice, cast, transpose or packing op around the op: the last output is the op's h."""
    name, extra = kind
    layer = getattr(L, name)(H, return_state=True, return_sequences=return_sequences, **extra)
    x = tf.constant(rng.normal(size=(1, 1, IN)).astype(np.float32))
    states = [tf.constant(rng.normal(size=(1, H)).astype(np.float32))] * _n_states(name)
    layer(x, initial_state=states)
    ops = _executed_ops(tf.function(lambda x, s: layer(x, initial_state=s)), x, states)
    assert set(ops) <= ONE_STEP_OPS, ops
    assert ops["TfRnn>KerasRNN"] == 1 and ops["ReadVariableOp"] == 3, ops


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_one_step_masked_call_packs_nothing(rng, kind):
    name, extra = kind
    layer = getattr(L, name)(H, return_state=True, go_backwards=True, **extra)
    x = tf.constant(rng.normal(size=(3, 1, IN)).astype(np.float32))
    states = [tf.constant(rng.normal(size=(3, H)).astype(np.float32))] * _n_states(name)
    mask = tf.constant([[True], [False], [True]])
    layer(x, initial_state=states, mask=mask)
    fn = tf.function(lambda x, s, m: layer(x, initial_state=s, mask=m))
    ops = _executed_ops(fn, x, states, mask)
    assert ops["TfRnn>KerasRNN"] == 1, ops
    assert not set(ops) & PACKING_OPS, ops


OPTS = {
    "last": dict(return_state=True),
    "seq": dict(return_sequences=True, return_state=True),
    "last_back_zero": dict(return_state=True, go_backwards=True, zero_output_for_mask=True),
    "seq_zero": dict(return_sequences=True, zero_output_for_mask=True),
}


def _outputs_and_grads(layer, x, states, mask, cot):
    with tf.GradientTape() as tape:
        tape.watch([x] + states)
        res = layer(x, initial_state=states, mask=mask)
        res = list(res) if isinstance(res, list | tuple) else [res]
        loss = sum(tf.reduce_sum(r * c) for r, c in zip(res, cot, strict=True))
    grads = tape.gradient(loss, [x] + states + [v.value for v in layer.trainable_weights])
    return res, grads


@pytest.mark.parametrize("batch,mask_rows", [(5, [1, 0, 1, 1, 0]), (1, [0]), (1, [1]), (3, None)])
@pytest.mark.parametrize("opt_id", list(OPTS))
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_one_step_equals_keras(rng, kind, opt_id, batch, mask_rows):
    """Outputs, states and the gradients of x, the states and every weight, as Keras' step loop
    gives them; a masked row keeps its states and outputs zeros."""
    name, extra = kind
    ref, ours = _pair(name, rng, **extra, **OPTS[opt_id])
    x = tf.constant(rng.uniform(-1, 1, (batch, 1, IN)).astype(np.float32))
    states = [
        tf.constant(rng.uniform(-1, 1, (batch, H)).astype(np.float32))
        for _ in range(_n_states(name))
    ]
    mask = None if mask_rows is None else tf.constant(np.array(mask_rows, bool)[:, None])
    shapes = ours.compute_output_shape((batch, 1, IN))
    shapes = list(shapes) if ours.return_state else [shapes]
    cot = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in shapes]
    r_out, r_grads = _outputs_and_grads(ref, x, states, mask, cot)
    o_out, o_grads = _outputs_and_grads(ours, x, states, mask, cot)
    for i, (a, b) in enumerate(zip(o_out, r_out, strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype, (i, a.shape, b.shape)
        np.testing.assert_allclose(a, b, **TOL, err_msg=f"output {i}")
    for i, (a, b) in enumerate(zip(o_grads, r_grads, strict=True)):
        assert (a is None) == (b is None), i
        if a is not None:
            np.testing.assert_allclose(a, b, **TOL, err_msg=f"gradient {i}")
    if mask_rows is not None and ours.return_state:  # masked rows: states unchanged
        for s0, s1 in zip(states, o_out[1:], strict=True):
            masked = ~np.array(mask_rows, bool)
            np.testing.assert_array_equal(np.asarray(s1)[masked], np.asarray(s0)[masked])
