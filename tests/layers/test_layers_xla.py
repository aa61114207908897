"""The drop-in layers under XLA (`tf.function(jit_compile=True)`,
`model.compile(jit_compile=True)`): they trace Keras' formulation there, so XLA compiles them and
the numbers are Keras'; they no longer veto XLA for the model; `jit_compile="auto"` still keeps the
fused op (like Keras' cuDNN path); the op functions called directly under XLA raise an error that
names the layers."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_rnn_ops
from tf_rnn_ops import layers as L

TOL = dict(rtol=1e-5, atol=1e-5)

# SimpleRNN under XLA is also in the model test below (make test); here it runs in make test-slow
KINDS = [
    pytest.param("GRU", {}, id="gru"),
    pytest.param("LSTM", {}, id="lstm"),
    pytest.param("SimpleRNN", {}, id="rnn_tanh", marks=pytest.mark.slow),
    pytest.param("SimpleRNN", {"activation": "relu"}, id="rnn_relu", marks=pytest.mark.slow),
]


def _pair(name, rng, units, in_dim, **kwargs):
    ours = getattr(L, name)(units, **kwargs)
    ref = getattr(keras.layers, name)(units, **kwargs)
    for layer in (ours, ref):
        layer.build((None, None, in_dim))
    ours.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    return ref, ours


def _op_types(concrete) -> set[str]:
    types = {op.type for op in concrete.graph.get_operations()}
    for fn in concrete.graph._functions.values():  # nested functions (while bodies, ...)
        types |= {node.op for node in fn.cached_definition.node_def}
    return types


@pytest.mark.parametrize("name,kw", KINDS)
@pytest.mark.parametrize(
    "sizes,options",
    [
        pytest.param((3, 5, 4, 7), dict(return_sequences=True), id="seq"),
        pytest.param((1, 1, 1, 1), dict(return_state=True), id="tiny", marks=pytest.mark.slow),
        pytest.param(
            (2, 6, 3, 5),
            dict(go_backwards=True, return_sequences=True, return_state=True),
            id="backwards",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_jit_function_matches_keras(name, kw, sizes, options, rng):
    batch, steps, in_dim, units = sizes
    ref, ours = _pair(name, rng, units, in_dim, **kw, **options)
    x = tf.constant(rng.standard_normal((batch, steps, in_dim)).astype(np.float32))
    mask = np.ones((batch, steps), bool)
    if steps > 2:
        mask[0, steps // 2 :] = False  # right padding
        mask[-1, 1] = False  # a hole
    mask = tf.constant(mask)

    def run(layer, x, mask):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = tf.nest.flatten(layer(x, mask=mask))
            loss = sum(tf.reduce_sum(o * (i + 1.0)) for i, o in enumerate(out))
        return out, tape.gradient(loss, [x] + ours_weights(layer))

    def ours_weights(layer):
        return list(layer.trainable_weights)

    jitted = tf.function(run, jit_compile=True)
    out, grads = jitted(ours, x, mask)
    ref_out, ref_grads = run(ref, x, mask)
    for a, b in zip(out + grads, ref_out + ref_grads, strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    types = _op_types(jitted.get_concrete_function(ours, x, mask))
    assert not any(t.startswith("TfRnn") for t in types), sorted(types)


@pytest.mark.parametrize(
    "name",
    [
        "LSTM",
        pytest.param("GRU", marks=pytest.mark.slow),
        pytest.param("SimpleRNN", marks=pytest.mark.slow),
    ],
)
def test_bidirectional_under_jit(name, rng):
    ref, ours = (
        keras.layers.Bidirectional(getattr(mod, name)(4, return_sequences=True))
        for mod in (keras.layers, L)
    )
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    ref.build(x.shape)
    ours.build(x.shape)
    ours.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    got = tf.function(lambda a: ours(a), jit_compile=True)(x)
    np.testing.assert_allclose(got, ref(x), **TOL)


def test_model_compile_jit_true_is_honoured_and_trains_like_keras(rng):
    """No veto, no warning: the model trains under XLA, each step as Keras' own layers do."""
    x = rng.uniform(-1, 1, (12, 6, 3)).astype(np.float32)
    y = rng.uniform(-1, 1, (12, 1)).astype(np.float32)

    def model(mod):
        inp = keras.Input((6, 3))
        h = keras.layers.Bidirectional(mod.LSTM(4, return_sequences=True))(inp)
        h = mod.GRU(5, return_sequences=True)(h)
        h = mod.SimpleRNN(3)(h)
        return keras.Model(inp, keras.layers.Dense(1)(h))

    ours, ref = model(L), model(keras.layers)
    ours.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ours.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=True)
    assert ours.jit_compile is True
    ref.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=False)
    h_ours = ours.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history["loss"]
    h_ref = ref.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(h_ours, h_ref, rtol=1e-4)
    for a, b in zip(ours.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.predict(x, verbose=0), ref.predict(x, verbose=0), **TOL)


def test_jit_auto_keeps_the_fused_op_on_gpu_machines(monkeypatch):
    """Keras resolves jit_compile="auto" to XLA only where a non-CPU device exists: there our layers
    answer supports_jit=False (as Keras' cuDNN layers do), so the fused op keeps running."""
    real = tf.config.list_physical_devices

    class _FakeGPU:
        device_type = "GPU"
        name = "/physical_device:GPU:0"

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda *a: [*real(*a), _FakeGPU()])
    dense_only = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    dense_only.compile(loss="mse", jit_compile="auto")
    assert dense_only.jit_compile is True  # the fake device makes Keras consider XLA
    for name in ("GRU", "LSTM", "SimpleRNN"):
        m = keras.Sequential([keras.Input((4, 3)), getattr(L, name)(2)])
        m.compile(loss="mse", jit_compile="auto")
        assert m.jit_compile is False, name
        assert m.layers[0].supports_jit  # outside "auto" resolution: XLA is fine
    fallback = keras.Sequential([keras.Input((4, 3)), L.GRU(2, use_cudnn=False)])
    fallback.compile(loss="mse", jit_compile="auto")
    assert fallback.jit_compile is True  # never runs the op: nothing to keep


def test_op_functions_under_xla_name_the_layers():
    x = tf.zeros([2, 1, 3])
    h = tf.zeros([1, 1, 4])

    @tf.function(jit_compile=True)
    def fused():
        return tf_rnn_ops.cudnn_rnn(input=x, input_h=h, input_c=h, params=tf.zeros([100]))

    with pytest.raises(ValueError, match=r"cudnn_rnn.*no XLA kernel.*tf_rnn_ops\.layers\.GRU"):
        fused()

    @tf.function(jit_compile=True)
    def size():
        return tf_rnn_ops.cudnn_rnn_params_size(
            num_layers=1, num_units=4, input_size=3, T=tf.float32, S=tf.int32
        )

    with pytest.raises(ValueError, match="cudnn_rnn_params_size.*XLA"):
        size()

    @tf.function(jit_compile=True)
    def keras_layout():
        return tf_rnn_ops.keras_rnn(
            x, h[0], None, tf.zeros([3, 8]), tf.zeros([2, 8]), rnn_mode="lstm"
        )

    with pytest.raises(ValueError, match=r"keras_rnn.*no XLA kernel.*tf_rnn_ops\.layers\.GRU"):
        keras_layout()
    # outside XLA the same calls still run
    assert int(tf.function(size.python_function)()[0]) > 0
