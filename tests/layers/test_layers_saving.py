"""Serialization and distribution of the tf_rnn_ops Keras layers: `.keras` save/load round trip,
a Keras model's `.keras` weights loaded into the same model built from tf_rnn_ops layers,
`model.export` served by `tf.saved_model.load` in a fresh process after `import tf_rnn_ops`, and
training under `tf.distribute.MirroredStrategy` on two logical CPU devices (a fresh process: logical
devices are fixed before TensorFlow initializes) with the same updated weights as one device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_rnn_ops import layers as L

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOL = dict(rtol=1e-5, atol=1e-5)
VOCAB, STEPS = 11, 9


def _ids(rng, n=12):
    ids = rng.integers(1, VOCAB, (n, STEPS))
    for i, k in enumerate(rng.integers(0, STEPS + 1, n)):
        ids[i, k:] = 0
    return ids.astype(np.int32)


def _model(lib=L, cudnn=True):
    """Every tf_rnn_ops layer kind in one functional model on a masked Embedding."""
    inp = keras.Input((STEPS,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 4, mask_zero=True)(inp)
    x = keras.layers.Bidirectional(lib.GRU(5, return_sequences=True))(x)
    x = lib.LSTM(4, return_sequences=True, go_backwards=True)(x)
    x = lib.SimpleRNN(3, activation="relu", return_sequences=True)(x)
    if cudnn:
        x = L.CudnnLSTM(4, num_layers=2, direction="bidirectional", num_proj=2,
                        return_sequences=True)(x)  # fmt: skip
        x = L.CudnnGRU(3, return_sequences=True)(x)
        x = L.CudnnRNNTanh(3, return_sequences=True)(x)
        x = L.CudnnRNNRelu(3, num_layers=2)(x)
    else:
        x = lib.GRU(3)(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inp, out)


def _small_model():
    inp = keras.Input((STEPS,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 4, mask_zero=True)(inp)
    x = keras.layers.Bidirectional(L.GRU(4, return_sequences=True))(x)
    x = L.CudnnLSTM(3, num_layers=2, direction="bidirectional")(x)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))


def _randomize(model, rng):
    model.set_weights(
        [rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()]
    )


def _run_python(code: str, cwd, timeout=240):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_keras_file_round_trip(rng, tmp_path):
    model = _model()
    _randomize(model, rng)
    ids = _ids(rng)
    want = model.predict(ids, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [type(a) for a in loaded.layers] == [type(a) for a in model.layers]
    configs = [json.loads(json.dumps(a.get_config())) for a in (model, loaded)]
    assert configs[0] == configs[1]
    np.testing.assert_allclose(loaded.predict(ids, verbose=0), want, **TOL)


def test_keras_model_weights_load_into_tf_rnn_ops_model(rng, tmp_path):
    """A model of keras.layers GRU/LSTM/SimpleRNN saved as .keras: its weights load into the same
    architecture built from tf_rnn_ops.layers (and back), with the same predictions."""
    keras_model = _model(keras.layers, cudnn=False)
    _randomize(keras_model, rng)
    ids = _ids(rng)
    path = str(tmp_path / "keras_model.keras")
    keras_model.save(path)
    ours = _model(L, cudnn=False)
    ours.load_weights(path)
    np.testing.assert_allclose(ours.predict(ids, verbose=0), keras_model.predict(ids, verbose=0),
                               **TOL)  # fmt: skip
    # and back: our weights file into a Keras model
    wpath = str(tmp_path / "ours.weights.h5")
    _randomize(ours, rng)
    ours.save_weights(wpath)
    keras_model.load_weights(wpath)
    np.testing.assert_allclose(keras_model.predict(ids, verbose=0), ours.predict(ids, verbose=0),
                               **TOL)  # fmt: skip


def test_saved_model_served_in_fresh_process(rng, tmp_path):
    model = _model()
    _randomize(model, rng)
    ids = _ids(rng, 7)
    want = model.predict(ids, verbose=0)
    export_dir = str(tmp_path / "exported")
    model.export(export_dir, verbose=False)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "want.npy", want)
    out = _run_python(
        f"""
        import numpy as np
        import tensorflow as tf
        import tf_rnn_ops  # registers the TfRnn> ops the SavedModel uses
        served = tf.saved_model.load({export_dir!r})
        ids = np.load("ids.npy")
        got = served.serve(tf.constant(ids)).numpy()
        np.testing.assert_allclose(got, np.load("want.npy"), rtol=1e-5, atol=1e-5)
        print("SERVED", got.shape)
        """,
        cwd=tmp_path,
    )
    assert "SERVED (7, 1)" in out


def test_mirrored_strategy_two_cpus_same_as_one_device(rng, tmp_path):
    ids = _ids(rng, 16)
    y = rng.integers(0, 2, (16, 1)).astype(np.float32)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "y.npy", y)
    init = _small_model()
    _randomize(init, rng)
    init.save_weights(str(tmp_path / "init.weights.h5"))
    out = _run_python(
        f"""
        import sys
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from test_layers_saving import _small_model

        ids, y = np.load("ids.npy"), np.load("y.npy")

        def train(strategy):
            with strategy.scope():
                model = _small_model()
                model.load_weights("init.weights.h5")
                model.compile(optimizer=keras.optimizers.SGD(0.3), loss="binary_crossentropy")
            model.fit(ids, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
            return model.get_weights()

        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert mirrored.num_replicas_in_sync == 2
        two = train(mirrored)
        one = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
        init = _small_model()
        init.load_weights("init.weights.h5")
        moved = 0
        for a, b, c in zip(two, one, init.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            moved += int(not np.array_equal(b, c))
        print("SAME_WEIGHTS", len(two), "moved", moved)
        """,
        cwd=tmp_path,
    )
    assert "SAME_WEIGHTS" in out
    n, moved = int(out.split()[1]), int(out.split()[3])
    assert moved == n  # training changed every weight


def test_tf_function_and_saved_model_signature_shapes(rng):
    """A dynamic-length batch through a tf.function with an unknown time dimension."""
    model = _model()
    _randomize(model, rng)

    @tf.function(input_signature=[tf.TensorSpec([None, STEPS], tf.int32)])
    def serve(ids):
        return model(ids, training=False)

    ids = _ids(rng, 5)
    np.testing.assert_allclose(serve(tf.constant(ids)), model(ids), **TOL)


def _dropout_model(seed):
    """Every layer kind with the options that draw random masks in training."""
    inp = keras.Input((STEPS,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 4, mask_zero=True)(inp)
    x = keras.layers.Bidirectional(
        L.LSTM(5, dropout=0.2, recurrent_dropout=0.3, return_sequences=True, seed=seed)
    )(x)
    x = L.GRU(4, recurrent_dropout=0.2, zoneout=0.1, return_sequences=True, seed=seed)(x)
    x = L.GRU(3, reset_after=False, dropout=0.3, return_sequences=True, seed=seed)(x)
    x = L.SimpleRNN(3, dropout=0.1, recurrent_dropout=0.2, return_sequences=True, seed=seed)(x)
    x = L.LayerNormLSTM(3, dropout=0.1, recurrent_dropout=0.2, zoneout=0.1, seed=seed,
                        return_sequences=True)(x)  # fmt: skip
    x = L.LayerNormGRU(3, dropout=0.2, zoneout=0.1, seed=seed)(x)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))


def test_tf_saved_model_save_of_trained_dropout_layers(rng, tmp_path):
    """`tf.saved_model.save` of a trained model whose RNN layers have dropout, recurrent dropout,
    DropConnect and zoneout (Keras' own layers fail there: keras.layers.RNN draws their masks in
    inference calls too, so the serving function reads the seed generator's state, which the
    SavedModel does not track). Ours draw no mask at inference; the loaded model serves the same
    predictions."""
    model = _dropout_model(int(rng.integers(1 << 20)))
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    ids = _ids(rng, 16)
    model.fit(ids, rng.integers(0, 2, (16, 1)).astype(np.float32), batch_size=8, verbose=0)
    _randomize(model, rng)
    want = model.predict(ids, verbose=0)
    tf.saved_model.save(model, str(tmp_path / "sm"))
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    (got,) = served(tf.constant(ids)).values()
    np.testing.assert_allclose(got.numpy(), want, **TOL)


@pytest.mark.parametrize("training", [False, True])
def test_inference_calls_draw_no_dropout_masks(rng, training):
    """An inference trace of every dropout option holds no random op and leaves every seed
    generator where it was; a training trace draws (the masks Keras' cells draw)."""
    model = _dropout_model(int(rng.integers(1 << 20)))
    states = [v for v in model.variables if "seed_generator_state" in v.path]
    assert len(states) == 7  # one per RNN layer (both directions of Bidirectional)
    before = [v.numpy().copy() for v in states]
    fn = tf.function(lambda ids: model(ids, training=training))
    graph = fn.get_concrete_function(tf.TensorSpec((None, STEPS), tf.int32)).graph
    random_ops = [op.type for op in graph.get_operations() if "Random" in op.type]
    fn(tf.constant(_ids(rng, 4)))
    moved = sum(not np.array_equal(b, v.numpy()) for b, v in zip(before, states, strict=True))
    if training:
        assert random_ops and moved == len(states)
    else:
        assert random_ops == [] and moved == 0
