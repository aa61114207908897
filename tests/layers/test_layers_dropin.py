"""tf_rnn_ops.layers.GRU / LSTM / SimpleRNN against their Keras 3 namesakes with the same weights:
outputs, final states and gradients (inputs, initial states, every weight) over return_sequences,
return_state, go_backwards, initial states, masks (right-padded, empty rows, not right-padded,
Embedding(mask_zero=True)), zero_output_for_mask, use_bias, input dropout, stateful, unroll,
initializers/regularizers/constraints, mixed precision; fallbacks to Keras' step loop; XLA
opt-out; beside a (pretended) GPU, Keras' cuDNN path where Keras takes it, else an op with GPU
kernels or (without ours) Keras' own path."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_rnn_ops
from tf_rnn_ops import layers as L

TOL = dict(rtol=1e-5, atol=1e-5)
B, T, IN, H = 4, 7, 3, 5

# (class name, extra constructor kwargs) of every fused configuration
KINDS = [
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("LSTM", {}),
    ("SimpleRNN", {}),
    ("SimpleRNN", {"activation": "relu"}),
]
KIND_IDS = ["gru", "gru_reset_before", "lstm", "rnn_tanh", "rnn_relu"]


def _pair(name, rng, **kwargs):
    """(keras layer, our layer), built for [B, T, IN] inputs, with the same random weights."""
    ours = getattr(L, name)(H, **kwargs)
    ref = getattr(keras.layers, name)(H, **kwargs)
    for layer in (ours, ref):
        layer.build((None, T, IN))
    ours.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    return ref, ours


def _masks(rng):
    right = np.ones((B, T), bool)
    right[1, 4:] = False
    right[2, :] = False  # an empty sequence
    right[3, 1:] = False
    holes = right.copy()
    holes[0, [1, 5]] = False  # not right-padded
    holes[3, :] = [False, True, False, True, True, False, True]
    return {"none": None, "right": right, "holes": holes}


def _n_states(layer):
    return 2 if isinstance(layer.cell, keras.layers.LSTMCell) else 1


def _run(layer, x, mask, init, training, cot):
    """Outputs (as a list) and gradients w.r.t. x, initial states and the trainable weights."""
    srcs = [x] + list(init or [])
    with tf.GradientTape() as tape:
        tape.watch(srcs)
        res = layer(
            x,
            mask=None if mask is None else tf.constant(mask),
            initial_state=init,
            training=training,
        )
        res = list(res) if isinstance(res, list | tuple) else [res]
        loss = sum(
            tf.reduce_sum(tf.cast(r, tf.float32) * c) for r, c in zip(res, cot, strict=False)
        )
    grads = tape.gradient(loss, srcs + [v.value for v in layer.trainable_weights])
    return res, grads


def _compare(ref, ours, rng, mask=None, with_init=False, training=False, tol=TOL, x=None):
    x = tf.constant(rng.uniform(-1, 1, (B, T, IN)).astype(np.float32)) if x is None else x
    init = None
    if with_init:
        init = [
            tf.constant(rng.uniform(-1, 1, (B, H)).astype(np.float32))
            for _ in range(_n_states(ours))
        ]
    shapes = ours.compute_output_shape((B, T, IN))
    shapes = [shapes] if not ours.return_state else list(shapes)
    cot = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in shapes]
    r_out, r_grads = _run(ref, x, mask, init, training, cot)
    o_out, o_grads = _run(ours, x, mask, init, training, cot)
    assert len(r_out) == len(o_out)
    for i, (a, b) in enumerate(zip(o_out, r_out, strict=False)):
        assert a.shape == b.shape and a.dtype == b.dtype, (i, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol, err_msg=f"output {i}")
    names = ["d_x"] + [f"d_state{i}" for i in range(len(init or []))]
    names += [f"d_{v.path}" for v in ours.trainable_weights]
    for n, a, b in zip(names, o_grads, r_grads, strict=True):
        assert (a is None) == (b is None), n
        if a is not None:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol, err_msg=n)
    return o_out


def _uses_op(layer, training=False):
    return layer._can_fuse(training)


OPTS = {
    "seq_state": dict(return_sequences=True, return_state=True),
    "last_back": dict(return_sequences=False, return_state=True, go_backwards=True),
    "seq_back_zero": dict(return_sequences=True, go_backwards=True, zero_output_for_mask=True),
    "last_zero": dict(return_sequences=False, zero_output_for_mask=True),
}


def _equals_keras_cases():
    """Every kind × options × mask kind; the fast run keeps masks with holes (the hardest case:
    packing, carried outputs, empty rows) for every option, and the other masks for one option."""
    for kind, kind_id in zip(KINDS, KIND_IDS, strict=False):
        for opt_id in OPTS:
            for mask_kind in ("holes", "right", "none"):
                fast = mask_kind == "holes" or opt_id == "seq_state"
                yield pytest.param(
                    kind,
                    mask_kind,
                    opt_id,
                    id=f"{kind_id}-{opt_id}-{mask_kind}",
                    marks=() if fast else pytest.mark.slow,
                )


@pytest.mark.parametrize("kind,mask_kind,opt_id", list(_equals_keras_cases()))
def test_equals_keras(rng, kind, mask_kind, opt_id):
    name, extra = kind
    ref, ours = _pair(name, rng, **extra, **OPTS[opt_id])
    assert _uses_op(ours)
    _compare(ref, ours, rng, mask=_masks(rng)[mask_kind], with_init=mask_kind != "none")


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_weights_same_as_keras(rng, kind):
    name, extra = kind
    ref, ours = _pair(name, rng, **extra)
    assert [w.path.split("/", 1)[1] for w in ours.weights] == [
        w.path.split("/", 1)[1] for w in ref.weights
    ]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in ref.weights]
    # set_weights both ways
    ref.set_weights([w * 2 for w in ours.get_weights()])
    ours.set_weights(ref.get_weights())
    for a, b in zip(ours.get_weights(), ref.get_weights(), strict=False):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_no_bias(rng, kind):
    name, extra = kind
    ref, ours = _pair(name, rng, use_bias=False, return_sequences=True, **extra)
    assert len(ours.weights) == 2 and _uses_op(ours)
    _compare(ref, ours, rng, mask=_masks(rng)["right"])


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_input_dropout_in_training(rng, kind):
    name, extra = kind
    ref, ours = _pair(name, rng, dropout=0.4, seed=11, return_sequences=True, **extra)
    assert _uses_op(ours, training=True)
    out = _compare(ref, ours, rng, mask=_masks(rng)["right"], training=True)
    # the dropout really acted: inference differs
    x = tf.constant(rng.uniform(-1, 1, (B, T, IN)).astype(np.float32))
    assert not np.allclose(ours(x, training=True), ours(x, training=False))
    assert out[0].shape == (B, T, H)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_stateful(rng, kind):
    name, extra = kind
    ours = getattr(L, name)(H, stateful=True, return_sequences=True, **extra)
    ref = getattr(keras.layers, name)(H, stateful=True, return_sequences=True, **extra)
    for layer in (ours, ref):
        layer.build((B, T, IN))
    ours.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    for step in range(3):
        if step == 2:
            ours.reset_states()
            ref.reset_states()
        x = tf.constant(rng.uniform(-1, 1, (B, T, IN)).astype(np.float32))
        np.testing.assert_allclose(ours(x), ref(x), **TOL)
        for a, b in zip(ours.states, ref.states, strict=False):
            np.testing.assert_allclose(a.numpy(), b.numpy(), **TOL)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_unroll(rng, kind):
    name, extra = kind
    ref, ours = _pair(name, rng, unroll=True, return_sequences=True, return_state=True, **extra)
    assert _uses_op(ours)
    _compare(ref, ours, rng, mask=_masks(rng)["right"])


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("GRU", dict(activation="relu")),
        ("GRU", dict(recurrent_activation="hard_sigmoid")),
        ("LSTM", dict(activation="softsign")),
        ("LSTM", dict(recurrent_activation="hard_sigmoid")),
        ("SimpleRNN", dict(activation="sigmoid")),
        ("GRU", dict(use_cudnn=False)),
    ],
    ids=["gru_relu", "gru_hardsig", "lstm_softsign", "lstm_hardsig", "rnn_sigmoid",
         "gru_use_cudnn_false"],
)  # fmt: skip
def test_fallback_equals_keras(rng, name, kwargs):
    ref, ours = _pair(name, rng, return_sequences=True, return_state=True, **kwargs)
    assert not _uses_op(ours)
    assert ours.supports_jit  # the step loop is XLA-compatible
    _compare(ref, ours, rng, mask=_masks(rng)["right"], with_init=True)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_recurrent_dropout_runs_fused_with_keras_masks(rng, kind):
    # training: TfRnn>KerasRNNDropout on masks drawn by Keras' cell methods (the same seed gives
    # Keras' masks; more in tests/layers/test_layers_recurrent_dropout.py)
    name, extra = kind
    ref, ours = _pair(
        name, rng, dropout=0.3, recurrent_dropout=0.3, seed=5, return_sequences=True, **extra
    )
    assert _uses_op(ours, training=True) and _uses_op(ours, training=False)
    _compare(ref, ours, rng, mask=_masks(rng)["right"], training=True)
    _compare(ref, ours, rng, mask=_masks(rng)["right"], training=False)


@pytest.mark.parametrize(
    "name,kwargs,option",
    [
        ("GRU", dict(activation="relu"), "activation='relu'"),
        ("LSTM", dict(recurrent_activation="hard_sigmoid"), "recurrent_activation='hard_sigmoid'"),
        ("SimpleRNN", dict(activation="sigmoid"), "activation='sigmoid'"),
    ],
)
def test_use_cudnn_true_refuses_what_the_op_cannot_do(name, kwargs, option):
    with pytest.raises(ValueError, match=option.replace("(", r"\(")):
        getattr(L, name)(H, use_cudnn=True, **kwargs)


def test_initializers_regularizers_constraints(rng):
    kw = dict(
        kernel_initializer=keras.initializers.GlorotNormal(seed=1),
        recurrent_initializer=keras.initializers.Orthogonal(seed=2),
        bias_initializer=keras.initializers.RandomUniform(-0.1, 0.1, seed=3),
        kernel_regularizer=keras.regularizers.L2(0.01),
        recurrent_regularizer=keras.regularizers.L1(0.02),
        bias_regularizer=keras.regularizers.L1L2(0.01, 0.01),
        activity_regularizer=keras.regularizers.L2(0.03),
        kernel_constraint=keras.constraints.MaxNorm(0.5),
        recurrent_constraint=keras.constraints.UnitNorm(),
        bias_constraint=keras.constraints.NonNeg(),
    )
    for name in ("GRU", "LSTM", "SimpleRNN"):
        ours = getattr(L, name)(H, **kw)
        ref = getattr(keras.layers, name)(H, **kw)
        ours.build((None, T, IN))
        ref.build((None, T, IN))
        for a, b in zip(
            ours.get_weights(), ref.get_weights(), strict=False
        ):  # same seeded initializers
            np.testing.assert_array_equal(a, b)
        x = tf.constant(rng.uniform(-1, 1, (B, T, IN)).astype(np.float32))
        np.testing.assert_allclose(ours(x), ref(x), **TOL)
        np.testing.assert_allclose(sum(ours.losses), sum(ref.losses), rtol=1e-5)
        assert len(ours.losses) == len(ref.losses) >= 3
        for v in ours.weights:
            assert v.constraint is not None


def test_embedding_mask_zero_model_like_keras(rng):
    """Sequential(Embedding(mask_zero) → Bidirectional(GRU) → LSTM(go_backwards) → Dense) equals
    the same model of Keras layers: predictions, loss and gradients; and it trains with fit."""
    vocab, steps, n = 10, 9, 16
    ids = rng.integers(1, vocab, (n, steps))
    for b, k in enumerate(rng.integers(0, steps + 1, n)):
        ids[b, k:] = 0  # right-padded, some empty
    y = rng.integers(0, 2, (n, 1)).astype(np.float32)

    def model(lib):
        return keras.Sequential(
            [
                keras.Input((steps,), dtype="int32"),
                keras.layers.Embedding(vocab, 4, mask_zero=True),
                keras.layers.Bidirectional(lib.GRU(6, return_sequences=True)),
                lib.LSTM(5, go_backwards=True),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )

    ref, ours = model(keras.layers), model(L)
    ours.set_weights(ref.get_weights())
    loss_fn = keras.losses.BinaryCrossentropy()
    results = []
    for m in (ref, ours):
        with tf.GradientTape() as tape:
            pred = m(ids, training=True)
            loss = loss_fn(y, pred)
        results.append([pred, loss] + tape.gradient(loss, [v.value for v in m.trainable_weights]))
    for i, (a, b) in enumerate(zip(results[1], results[0], strict=True)):
        a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)  # embedding grads are sparse
        np.testing.assert_allclose(a, b, **TOL, err_msg=f"result {i}")
    ours.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy")
    hist = ours.fit(ids, y, batch_size=8, epochs=3, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]


def test_tf_function_equals_eager(rng):
    for name in ("GRU", "LSTM", "SimpleRNN"):
        layer = getattr(L, name)(H, return_sequences=True, return_state=True)
        x = tf.constant(rng.uniform(-1, 1, (B, T, IN)).astype(np.float32))
        mask = tf.constant(_masks(rng)["holes"])
        eager = layer(x, mask=mask)

        @tf.function
        def f(x, mask, layer=layer):
            with tf.GradientTape() as tape:
                out = layer(x, mask=mask)
                loss = tf.reduce_sum(out[0])
            return out, tape.gradient(loss, layer.trainable_weights)

        graph, grads = f(x, mask)
        for a, b in zip(graph, eager, strict=False):
            np.testing.assert_allclose(a, b, **TOL)
        assert all(g is not None for g in grads)
        # the graph runs the fused op
        ops = {op.type for op in f.get_concrete_function(x, mask).graph.get_operations()}
        assert "TfRnn>KerasRNN" in ops, sorted(ops)


def test_mixed_precision(rng):
    """mixed_float16: float16 results computed in float32 through the op, close to Keras' float16
    step loop and to the float32 layer; gradients reach the float32 variables."""
    for name in ("GRU", "LSTM", "SimpleRNN"):
        ref, ours = _pair(name, rng, return_sequences=True, return_state=True)
        mixed = getattr(L, name)(H, return_sequences=True, dtype="mixed_float16")
        mixed_ref = getattr(keras.layers, name)(H, return_sequences=True, dtype="mixed_float16")
        for m in (mixed, mixed_ref):
            m.build((None, T, IN))
            m.set_weights(ours.get_weights())
        x = tf.constant(rng.uniform(-1, 1, (B, T, IN)).astype(np.float32))
        mask = tf.constant(_masks(rng)["right"])
        with tf.GradientTape() as tape:
            out = mixed(x, mask=mask)
            loss = tf.reduce_sum(tf.cast(out, tf.float32))
        grads = tape.gradient(loss, mixed.trainable_weights)
        assert out.dtype == tf.float16
        assert all(g is not None and g.dtype == tf.float32 for g in grads)
        full = ours(x, mask=mask)[0]
        np.testing.assert_allclose(np.asarray(out, np.float32), full, atol=2e-3)
        np.testing.assert_allclose(
            np.asarray(out, np.float32), np.asarray(mixed_ref(x, mask=mask), np.float32), atol=1e-2
        )


def test_jit_compile_auto_trains(rng):
    x = rng.uniform(-1, 1, (16, T, IN)).astype(np.float32)
    y = rng.uniform(-1, 1, (16, 1)).astype(np.float32)
    m = keras.Sequential([keras.Input((T, IN)), L.GRU(H), keras.layers.Dense(1)])
    m.compile(optimizer="adam", loss="mse", jit_compile="auto")
    before = [w.copy() for w in m.get_weights()]
    hist = m.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert m.jit_compile is False  # resolved from supports_jit, like Keras' cuDNN layers
    assert np.all(np.isfinite(hist.history["loss"]))
    assert any(not np.array_equal(a, b) for a, b in zip(before, m.get_weights(), strict=False))
    # an explicit jit_compile=True is honoured: under XLA the layer traces Keras' formulation
    # (tests/layers/test_layers_xla.py checks the numbers)
    m.compile(optimizer="adam", loss="mse", jit_compile=True)
    assert m.jit_compile is True
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_keras_layers_registered_by_import():
    for name in ("GRU", "LSTM", "SimpleRNN"):
        cls = getattr(tf_rnn_ops.layers, name)
        assert keras.saving.get_registered_name(cls) == f"tf_rnn_ops>{name}"
        layer = cls(3, go_backwards=True, dropout=0.1, use_cudnn=False)
        clone = cls.from_config(layer.get_config())
        assert type(clone) is cls and clone.get_config() == layer.get_config()


def test_implementation_1_dropout_falls_back_in_training(rng):
    """implementation=1 draws one input dropout mask per gate: the step loop computes it. (Keras'
    own layer fails there in training unless use_cudnn=False: its inner_loop broadcasts the list of
    masks for its cuDNN path before falling back; ours goes to the step loop directly.)"""
    for name in ("GRU", "LSTM"):
        kw = dict(implementation=1, dropout=0.3, seed=2, return_sequences=True)
        ours = getattr(L, name)(H, **kw)
        ref = getattr(keras.layers, name)(H, use_cudnn=False, **kw)
        for layer in (ours, ref):
            layer.build((None, T, IN))
        ours.set_weights(
            [rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in ref.get_weights()]
        )
        ref.set_weights(ours.get_weights())
        assert not _uses_op(ours, training=True) and _uses_op(ours, training=False)
        _compare(ref, ours, rng, mask=_masks(rng)["right"], training=True)
        _compare(ref, ours, rng, mask=_masks(rng)["right"], training=False)


def _traced_ops(layer, batch, steps=3, features=2, training=False):
    """The op types of the graph a call on [batch, steps, features] traces (batch None: unknown)."""
    f = tf.function(lambda x: layer(x, training=training))
    spec = tf.TensorSpec([batch, steps, features], tf.float32)
    return {op.type for op in f.get_concrete_function(spec).graph.get_operations()}


@pytest.mark.parametrize(
    "name,units,batch,kwargs",
    [
        ("SimpleRNN", 256, 64, {}),  # one large product a step: still the op (AVX-512 products)
        ("SimpleRNN", 1024, 1, {}),
        ("SimpleRNN", 256, None, {}),  # batch unknown when traced
        ("SimpleRNN", 256, 64, {"activation": "relu"}),
        ("GRU", 256, 64, {}),
        ("LSTM", 256, 64, {}),
    ],
)
def test_path_is_the_op_at_every_size(name, units, batch, kwargs):
    """No size rule sends a fusable layer to Keras' loop: with the products on AVX-512 where the CPU
    has it, the op beat Keras' loop at every size measured, SimpleRNN's large single product
    included (docs/PERFORMANCE.md's log); shapes only, no timing."""
    ops = _traced_ops(getattr(L, name)(units, **kwargs), batch)
    assert "TfRnn>KerasRNN" in ops
    assert "While" not in ops and "StatelessWhile" not in ops  # not Keras' step loop


def test_recurrent_dropout_path_is_the_op_at_every_size():
    """Training with recurrent dropout runs TfRnn>KerasRNNDropout, small or large."""
    for units in (128, 256):
        ops = _traced_ops(L.SimpleRNN(units, recurrent_dropout=0.3), 64, training=True)
        assert "TfRnn>KerasRNNDropout" in ops


@pytest.mark.parametrize(
    "name,kwargs,op_type",
    [
        ("LSTM", {}, "TfRnn>KerasRNNBackprop"),
        ("GRU", {"reset_after": False}, "TfRnn>KerasRNNBackprop"),
        ("GRU", {"recurrent_dropout": 0.2}, "TfRnn>KerasRNNDropoutBackprop"),
        ("LSTM", {"recurrent_dropout": 0.2}, "TfRnn>KerasRNNDropoutBackprop"),
    ],
)
def test_training_step_skips_unwanted_gradients(rng, name, kwargs, op_type):
    """A training step (the tape wants the weights' grads only) tells the backprop op to skip the
    products of the input's and the initial states' grads; one that asks for the states' grads
    gets them, equal to Keras'. Traced, as Keras traces its train step."""
    B, T, IN, H = 3, 4, 5, 6
    ours = getattr(L, name)(H, return_sequences=True, **kwargs)
    ref = getattr(keras.layers, name)(H, return_sequences=True, **kwargs)
    for layer in (ours, ref):
        layer.build((B, T, IN))
    ref.set_weights(ours.get_weights())
    x = tf.constant(rng.normal(size=(B, T, IN)).astype(np.float32))
    h0 = tf.constant(rng.normal(size=(B, H)).astype(np.float32))
    states = [h0, h0 * 0.5] if name == "LSTM" else [h0]

    def step(layer, with_states):
        with tf.GradientTape() as tape:
            if with_states:
                tape.watch(states)
                y = layer(x, initial_state=states, training=False)
            else:
                y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, layer.trainable_weights + (states if with_states else []))

    train = tf.function(lambda: step(ours, False))
    bp = [o for o in train.get_concrete_function().graph.get_operations() if o.type == op_type]
    assert len(bp) == 1, op_type
    assert bp[0].get_attr("skip_state_backprop") is True
    if op_type == "TfRnn>KerasRNNBackprop":
        assert bp[0].get_attr("skip_input_backprop") is True
    with_states = tf.function(lambda: step(ours, True))
    for op in with_states.get_concrete_function().graph.get_operations():
        if op.type == "TfRnn>KerasRNNBackprop":
            assert op.get_attr("skip_state_backprop") is False
    if "recurrent_dropout" not in kwargs:  # (Keras' masks differ: values compared elsewhere)
        got, want = with_states(), step(ref, True)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)


@pytest.fixture
def visible_gpu(monkeypatch):
    """TensorFlow pretends to see a GPU (`tf.config.list_logical_devices("GPU")`, what Keras' and
    our layers ask); ops still run on the CPU, where TensorFlow's CudnnRNNV3 has our kernels."""
    real = tf.config.list_logical_devices

    def devices(device_type=None):
        if device_type == "GPU":
            return [tf.config.LogicalDevice("/device:GPU:0", "GPU")]
        return real(device_type)

    monkeypatch.setattr(tf.config, "list_logical_devices", devices)


@pytest.mark.parametrize("name", ["GRU", "LSTM"])
@pytest.mark.parametrize("mask_kind", ["none", "right"])
def test_gpu_machine_runs_keras_cudnn_path(rng, visible_gpu, name, mask_kind):
    """Where TensorFlow sees a GPU, a GRU / LSTM that Keras runs on cuDNN runs Keras' cuDNN path
    too (TfRnn>KerasRNN has no GPU kernel): the traced graph holds CudnnRNNV3 and not our op, and
    outputs and gradients equal Keras' layer's."""
    ref, ours = _pair(name, rng, return_sequences=True, return_state=True)
    assert ours._keras_cudnn_runs()
    ops = _traced_ops(ours, B)
    assert "CudnnRNNV3" in ops and not any(op.startswith("TfRnn>") for op in ops)
    _compare(ref, ours, rng, mask=_masks(rng)[mask_kind], with_init=True, training=True)


@pytest.fixture(params=[True, False], ids=["gpu_kernels", "no_gpu_kernels"])
def gpu_kernels(request, monkeypatch):
    """Whether our GPU kernels loaded (`_loader.load_gpu_kernels`), pretended either way."""
    monkeypatch.setattr(tf_rnn_ops._loader, "load_gpu_kernels", lambda: request.param)
    return request.param


# Beside a GPU, what Keras' cuDNN path cannot compute: (class, kwargs, the op that carries it with
# our GPU kernels loaded). Without them, Keras' own path (its step loop, a While).
BEYOND_CUDNN = [
    ("GRU", {"reset_after": False}, "TfRnn>CudnnRNN"),  # no cuDNN form: opaque params
    ("SimpleRNN", {}, "TfRnn>CudnnRNN"),
    ("SimpleRNN", {"activation": "relu"}, "TfRnn>CudnnRNN"),
    ("LSTM", {"use_bias": False}, "TfRnn>CudnnRNN"),  # Keras' cuDNN path needs a bias
    ("GRU", {"unroll": True}, "TfRnn>CudnnRNN"),
    ("GRU", {"recurrent_dropout": 0.3}, "TfRnn>KerasRNNDropout"),
    ("LSTM", {"zoneout": 0.2}, "TfRnn>KerasRNNDropout"),
]
BEYOND_CUDNN_IDS = [
    "gru_reset_before", "rnn_tanh", "rnn_relu", "lstm_no_bias", "gru_unroll", "gru_rec_dropout",
    "lstm_zoneout",
]  # fmt: skip


@pytest.mark.parametrize("name,kwargs,op_type", BEYOND_CUDNN, ids=BEYOND_CUDNN_IDS)
def test_gpu_machine_beyond_cudnn(visible_gpu, gpu_kernels, name, kwargs, op_type):
    """Beside a GPU, what Keras' cuDNN path cannot compute runs an op with GPU kernels where ours
    loaded (TfRnn>KerasRNN has none: never it), else Keras' own path (our ops would run on the CPU
    with copies both ways)."""
    layer = getattr(L, name)(H, **kwargs)
    assert not layer._keras_cudnn_runs()
    ops = _traced_ops(layer, B, training=True)
    assert "CudnnRNNV3" not in ops and "TfRnn>KerasRNN" not in ops
    if gpu_kernels:
        assert op_type in ops
    else:
        assert not any(op.startswith("TfRnn>") for op in ops), ops
        assert ("While" in ops) != bool(kwargs.get("unroll")), ops  # unrolled: Keras' steps


def test_gpu_machine_use_cudnn_false(visible_gpu, gpu_kernels):
    """use_cudnn=False: Keras' step loop beside a GPU too, as asked."""
    ops = _traced_ops(L.LSTM(H, use_cudnn=False), B, training=True)
    assert "While" in ops and not any(op.startswith("TfRnn>") for op in ops)


@pytest.mark.parametrize("mask_kind", ["none", "right", "holes"])
@pytest.mark.parametrize("name,kwargs", [k[:2] for k in BEYOND_CUDNN[:5]], ids=BEYOND_CUDNN_IDS[:5])
def test_gpu_machine_beyond_cudnn_values(rng, visible_gpu, gpu_kernels, name, kwargs, mask_kind):
    """Either way beside a GPU (TfRnn>CudnnRNN on the opaque params, or Keras' own loop), outputs,
    final states and every gradient equal Keras' layer's, with masks and initial states."""
    ref, ours = _pair(name, rng, return_sequences=True, return_state=True, **kwargs)
    _compare(ref, ours, rng, mask=_masks(rng)[mask_kind], with_init=True, training=True)
    one_step_ref, one_step = _pair(name, rng, return_state=True, go_backwards=True, **kwargs)
    x = tf.constant(rng.uniform(-1, 1, (B, 1, IN)).astype(np.float32))
    _compare(one_step_ref, one_step, rng, mask=_masks(rng)[mask_kind][:, :1] if mask_kind != "none"
             else None, with_init=True, x=x)  # fmt: skip


def test_without_gpu_the_op_runs(rng):
    """No GPU visible (this machine): the plain GRU runs TfRnn>KerasRNN, not Keras' cuDNN path."""
    layer = L.GRU(H)
    assert not layer._keras_cudnn_runs()
    assert "TfRnn>KerasRNN" in _traced_ops(layer, B)
