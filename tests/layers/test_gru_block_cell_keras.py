"""tf_rnn_ops.layers.GRUBlockCell in keras.layers.RNN: equal to keras.layers.GRU(reset_after=False)
with mapped weights (outputs and gradients), in tf.function, in training, serialized (.keras), and
exported as a SavedModel that a fresh process serves after `import tf_rnn_ops`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_rnn_ops
from tf_rnn_ops.layers import GRUBlockCell

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def fresh_rng() -> np.random.Generator:
    """Fresh random data on every run; the seed is printed (shown on failure) and can be forced
    with TF_RNN_OPS_TEST_SEED."""
    seed = int(os.environ.get("TF_RNN_OPS_TEST_SEED") or secrets.randbits(32))
    print(f"random seed {seed} (reproduce with TF_RNN_OPS_TEST_SEED={seed})")
    return np.random.default_rng(seed)


def keras_to_block(kernel, recurrent_kernel, bias):
    """docs/MATH.md, "GRU block cell": w_ru = [[k_r, k_z], [rk_r, rk_z]], w_c = [[k_h], [rk_h]]
    (Keras: z, r, h)."""
    units = recurrent_kernel.shape[0]
    z, r, h = slice(0, units), slice(units, 2 * units), slice(2 * units, 3 * units)
    w_ru = np.block(
        [[kernel[:, r], kernel[:, z]], [recurrent_kernel[:, r], recurrent_kernel[:, z]]]
    )
    w_c = np.concatenate([kernel[:, h], recurrent_kernel[:, h]], axis=0)
    return [w_ru, w_c, np.concatenate([bias[r], bias[z]]), bias[h]]


def random_keras_gru(rng, input_size, units, **kwargs):
    gru = keras.layers.GRU(units, reset_after=False, **kwargs)
    gru.build((None, None, input_size))
    gru.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in gru.get_weights()])
    return gru


@pytest.mark.parametrize("input_size,units", [(3, 5), (1, 1), (8, 16)])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_matches_keras_gru(fresh_rng, input_size, units, return_sequences):
    batch, steps = 4, 7
    gru = random_keras_gru(
        fresh_rng, input_size, units, return_sequences=return_sequences, return_state=True
    )
    rnn = keras.layers.RNN(
        GRUBlockCell(units), return_sequences=return_sequences, return_state=True
    )
    rnn.build((None, None, input_size))
    mapped = keras_to_block(*gru.get_weights())
    for a, b in zip(GRUBlockCell.weights_from_keras_gru(*gru.get_weights()), mapped, strict=True):
        np.testing.assert_array_equal(a, b)
    rnn.set_weights(mapped)
    assert [w.name for w in rnn.cell.weights] == ["w_ru", "w_c", "b_ru", "b_c"]

    x = tf.constant(fresh_rng.standard_normal((batch, steps, input_size)).astype(np.float32))
    h0 = tf.constant(fresh_rng.uniform(-1, 1, (batch, units)).astype(np.float32))
    out_weights = fresh_rng.standard_normal((batch, steps, units) if return_sequences else (1,))

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch([x, h0])
            out, state = layer(x, initial_state=h0)
            loss = tf.reduce_sum(out * out_weights) + tf.reduce_sum(state**2)
        grads = tape.gradient(loss, [x, h0] + layer.trainable_weights)
        return out, state, grads

    out_k, state_k, grads_k = run(gru)
    out_b, state_b, grads_b = run(rnn)
    np.testing.assert_allclose(out_b, out_k, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state_b, state_k, rtol=1e-5, atol=1e-6)
    for name, g_b, g_k in zip(["x", "h0"], grads_b[:2], grads_k[:2], strict=True):
        np.testing.assert_allclose(g_b, g_k, rtol=1e-4, atol=1e-5, err_msg=f"d loss / d {name}")
    mapped_grads = keras_to_block(*[g.numpy() for g in grads_k[2:]])
    for name, g_b, g_k in zip(
        ["w_ru", "w_c", "b_ru", "b_c"], grads_b[2:], mapped_grads, strict=True
    ):
        np.testing.assert_allclose(g_b, g_k, rtol=1e-4, atol=1e-5, err_msg=f"d loss / d {name}")


def small_model(input_size=2, units=6, seed=None):
    inputs = keras.Input((None, input_size))
    hidden = keras.layers.RNN(GRUBlockCell(units), name="rnn")(inputs)
    outputs = keras.layers.Dense(1)(hidden)
    return keras.Model(inputs, outputs)


def test_in_tf_function_and_fit(fresh_rng):
    model = small_model()
    # The op has no XLA kernel: Keras' jit_compile="auto" (XLA on GPU machines) must not pick XLA.
    assert not all(layer.supports_jit for layer in model._flatten_layers())
    x = fresh_rng.standard_normal((16, 5, 2)).astype(np.float32)
    y = x.sum(axis=(1, 2))[:, None]
    eager = model(x)
    np.testing.assert_allclose(tf.function(model)(x), eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tf.function(lambda t: model(t))(x), eager, rtol=1e-6, atol=1e-6)

    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, epochs=6, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.evaluate(x, y, verbose=0) < before


def test_mixed_precision_runs_close_to_float32(fresh_rng):
    x = fresh_rng.standard_normal((3, 4, 5)).astype(np.float32)
    rnn32 = keras.layers.RNN(GRUBlockCell(6), return_sequences=True)
    rnn16 = keras.layers.RNN(
        GRUBlockCell(6, dtype="mixed_float16"), return_sequences=True, dtype="mixed_float16"
    )
    rnn32.build((None, None, 5))
    rnn16.build((None, None, 5))
    rnn16.set_weights(rnn32.get_weights())
    assert all(w.dtype == "float32" for w in rnn16.weights)
    with tf.GradientTape() as tape:
        out16 = rnn16(x)
        loss = tf.reduce_sum(tf.cast(out16, tf.float32))
    assert out16.dtype == tf.float16
    assert all(g is not None for g in tape.gradient(loss, rnn16.trainable_weights))
    np.testing.assert_allclose(tf.cast(out16, tf.float32), rnn32(x), rtol=1e-2, atol=1e-2)


def test_config_and_keras_file_round_trip(fresh_rng, tmp_path):
    cell = GRUBlockCell(7, kernel_initializer="he_normal", bias_initializer="ones", name="c")
    clone = GRUBlockCell.from_config(cell.get_config())
    assert clone.units == 7
    assert isinstance(clone.kernel_initializer, keras.initializers.HeNormal)
    assert isinstance(clone.bias_initializer, keras.initializers.Ones)

    model = small_model()
    x = fresh_rng.standard_normal((3, 4, 2)).astype(np.float32)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("rnn").cell, GRUBlockCell)
    np.testing.assert_allclose(loaded(x), model(x), rtol=0, atol=0)


class _CellModule(tf.Module):
    """The raw op and its gradient in a SavedModel, independent of Keras."""

    def __init__(self, weights):
        super().__init__()
        self.weights = [tf.Variable(w) for w in weights]

    @tf.function(input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([None, 4])])
    def step(self, x, h_prev):
        with tf.GradientTape() as tape:
            tape.watch([x, h_prev])
            r, u, c, h = tf_rnn_ops.gru_block_cell(x, h_prev, *self.weights)
            loss = tf.reduce_sum(h * h) + tf.reduce_sum(c * r) + tf.reduce_sum(u)
        grads = tape.gradient(loss, [x, h_prev] + self.weights)
        return {"h": h, **{f"d{i}": g for i, g in enumerate(grads)}}


def test_saved_model_served_by_a_fresh_process(fresh_rng, tmp_path):
    """model.export(dir) and tf.saved_model.save; a new Python process that imports tf_rnn_ops
    and tf.saved_model.load()s them computes identical results."""
    model = small_model()
    x = fresh_rng.standard_normal((5, 6, 2)).astype(np.float32)
    keras_dir = str(tmp_path / "keras_export")
    model.export(keras_dir, verbose=False)

    weights = [
        fresh_rng.uniform(-0.5, 0.5, s).astype(np.float32) for s in [(7, 8), (7, 4), (8,), (4,)]
    ]
    module = _CellModule(weights)
    module_dir = str(tmp_path / "module")
    tf.saved_model.save(module, module_dir)
    cell_x = fresh_rng.standard_normal((3, 3)).astype(np.float32)
    cell_h = fresh_rng.uniform(-1, 1, (3, 4)).astype(np.float32)

    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "cell_x.npy", cell_x)
    np.save(tmp_path / "cell_h.npy", cell_h)
    script = textwrap.dedent(
        f"""
        import numpy as np
        import tensorflow as tf
        import tf_rnn_ops  # registers the TfRnn> ops before loading

        d = {str(tmp_path)!r}
        served = tf.saved_model.load(d + "/keras_export")
        np.save(d + "/served.npy", served.serve(np.load(d + "/x.npy")).numpy())
        module = tf.saved_model.load(d + "/module")
        out = module.step(np.load(d + "/cell_x.npy"), np.load(d + "/cell_h.npy"))
        np.savez(d + "/step.npz", **{{k: v.numpy() for k, v in out.items()}})
        """
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    np.testing.assert_allclose(np.load(tmp_path / "served.npy"), model(x), rtol=1e-6, atol=1e-7)
    step = np.load(tmp_path / "step.npz")
    expected = module.step(cell_x, cell_h)
    assert sorted(step.files) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(step[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
