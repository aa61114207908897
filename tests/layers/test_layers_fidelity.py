"""Keras fidelity of the drop-in layers beyond the numbers: integer inputs are promoted as Keras'
step loop promotes them, no public attribute that Keras' class lacks, older SimpleRNN configs with
`use_cudnn` still load, and `standard_ops()` switches eager calls to Keras' formulation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tf_rnn_ops
from tf_rnn_ops import layers as L

NAMES = ["GRU", "LSTM", "SimpleRNN"]


def _pair(name, rng, units, in_dim, **kwargs):
    ours = getattr(L, name)(units, **kwargs)
    ref = getattr(keras.layers, name)(units, **kwargs)
    for layer in (ours, ref):
        layer.build((None, None, in_dim))
    ours.set_weights([rng.uniform(-0.1, 0.1, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    return ref, ours


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "mixed_float16"])
@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.uint8, bool])
def test_integer_inputs_as_keras(name, dtype, int_dtype, rng):
    ref, ours = _pair(name, rng, 3, 2, dtype=dtype, return_sequences=True)
    x = rng.integers(0, 120, (4, 5, 2)).astype(int_dtype)
    got, want = ours(x), ref(x)
    assert got.dtype == want.dtype
    tol = 2e-3 if dtype == "mixed_float16" else 1e-5
    np.testing.assert_allclose(
        np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=tol, atol=tol
    )


def test_keras_issue_input_of_integers():
    x = np.array([[[101, 202], [303, 404]]])  # the input of Keras' own test
    for name in NAMES:
        assert tuple(getattr(L, name)(3)(x).shape) == (1, 3)


@pytest.mark.parametrize("name", NAMES)
def test_no_public_attribute_keras_lacks(name):
    ours, ref = getattr(L, name)(3), getattr(keras.layers, name)(3)
    for layer in (ours, ref):
        layer.build((None, 4, 2))

    def public(obj):
        return {a for a in dir(obj) if not a.startswith("_")}

    extra = {"zoneout"} if name in ("GRU", "LSTM") else set()  # zoneout=, our one addition
    assert public(ours) - public(ref) == extra


def test_simple_rnn_use_cudnn_is_private_and_old_configs_load():
    assert not hasattr(L.SimpleRNN(2), "use_cudnn")
    assert "use_cudnn" not in L.SimpleRNN(2).get_config()  # the config Keras' class takes
    keras.layers.SimpleRNN.from_config(L.SimpleRNN(2).get_config())
    for value in ("auto", True, False):
        config = dict(keras.layers.SimpleRNN(2).get_config(), use_cudnn=value)
        layer = L.SimpleRNN.from_config(config)
        assert layer._use_cudnn == value
        assert layer.get_config().get("use_cudnn", "auto") == value
    with pytest.raises(ValueError, match="use_cudnn"):
        L.SimpleRNN(2, use_cudnn="yes")


def test_simple_rnn_config_keeps_the_seed():
    """Keras' SimpleRNN drops `seed` from its config (its GRU and LSTM keep it), so its clones and
    `Bidirectional`'s copies draw dropout masks unseeded; ours keeps it: two Bidirectional layers
    of the same seed give the same training outputs, as Keras' own GRU do."""
    import tensorflow as tf

    layer = L.SimpleRNN(3, recurrent_dropout=0.4, dropout=0.3, seed=11)
    assert L.SimpleRNN.from_config(layer.get_config()).cell.seed == 11
    assert keras.layers.SimpleRNN.from_config(layer.get_config()).cell.seed == 11
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 6, 2)), tf.float32)
    outs = []
    for _ in range(2):
        bi = keras.layers.Bidirectional(
            L.SimpleRNN(5, recurrent_dropout=0.4, dropout=0.3, seed=11, return_sequences=True)
        )
        bi.build(x.shape)
        bi.set_weights([np.full(w.shape, 0.2, np.float32) for w in bi.get_weights()])
        outs.append(np.asarray(bi(x, training=True)))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], np.asarray(bi(x, training=False)))  # masks applied


def _runs_op(layer, x) -> bool:
    import tensorflow as tf

    graph = tf.function(lambda a: layer(a)).get_concrete_function(x).graph
    types = {op.type for op in graph.get_operations()}
    for fn in graph._functions.values():
        types |= {node.op for node in fn.cached_definition.node_def}
    return any(t.startswith("TfRnn") for t in types)


@pytest.mark.parametrize("name", NAMES)
def test_standard_ops_block(name, rng):
    ref, ours = _pair(name, rng, 4, 3, return_sequences=True)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    assert _runs_op(ours, x)
    with tf_rnn_ops.standard_ops():
        with tf_rnn_ops.standard_ops():  # nests
            assert not _runs_op(ours, x)
        assert not _runs_op(ours, x)
        np.testing.assert_allclose(ours(x), ref(x), rtol=1e-6, atol=1e-6)  # eager too
    assert _runs_op(ours, x)
