"""Loading and serving without the package: a model with the drop-in layers, exported inside
`tf_rnn_ops.standard_ops()`, is a SavedModel of standard TensorFlow ops that a fresh process which
never imports tf_rnn_ops loads and runs with Keras' numbers; our `.keras` file loads there as plain
Keras layers through `custom_objects`; without them, Keras' error names the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf

import tf_rnn_ops
from tf_rnn_ops import layers as L

TOL = dict(rtol=1e-5, atol=1e-5)
STEPS, VOCAB = 9, 11


def _build(mod):
    inp = keras.Input((STEPS,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 4, mask_zero=True)(inp)  # masks: variable lengths
    h = keras.layers.Bidirectional(mod.LSTM(5, return_sequences=True))(h)
    h = mod.GRU(3, return_sequences=True, go_backwards=True)(h)
    h = mod.SimpleRNN(4, activation="relu")(h)
    return keras.Model(inp, keras.layers.Dense(2)(h))


def _models(rng):
    ours, ref = _build(L), _build(keras.layers)
    ours.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in ours.get_weights()])
    ref.set_weights(ours.get_weights())
    return ours, ref


def _tokens(rng, batch):
    x = rng.integers(1, VOCAB, (batch, STEPS)).astype(np.int32)
    for row in range(batch):
        x[row, rng.integers(0, STEPS + 1) :] = 0  # right padding, some rows empty or full
    return x


def _fresh_python(tmp_path, script: str) -> dict:
    """Runs script in a new interpreter that cannot import tf_rnn_ops; returns the JSON it prints
    last."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    guard = textwrap.dedent(
        """
        import sys
        class _NoTfRnnOps:
            def find_spec(self, name, path=None, target=None):
                if name == "tf_rnn_ops" or name.startswith("tf_rnn_ops."):
                    raise ImportError("this process must not import tf_rnn_ops")
        sys.meta_path.insert(0, _NoTfRnnOps())
        """
    )
    check = '\nassert not any(m.startswith("tf_rnn_ops") for m in sys.modules), "imported"\n'
    proc = subprocess.run(
        [sys.executable, "-c", guard + textwrap.dedent(script) + check],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_saved_model_of_standard_ops_serves_without_the_package(tmp_path, rng):
    ours, ref = _models(rng)
    x = _tokens(rng, 6)
    ours(x)  # the fused op has been traced and run before: export must trace afresh
    with tf_rnn_ops.standard_ops():
        ours.export(str(tmp_path / "exported"), verbose=False)
        tf.saved_model.save(ours, str(tmp_path / "saved"))
    for name in ("exported", "saved"):
        graph = (tmp_path / name / "saved_model.pb").read_bytes()
        assert b"TfRnn" not in graph and b"TfRnn" not in graph.lower(), name
    np.save(tmp_path / "x.npy", x)
    got = _fresh_python(
        tmp_path,
        """
        import json, numpy as np, tensorflow as tf
        x = np.load("x.npy")
        exported = tf.saved_model.load("exported")  # kept: its variables live in it
        served = exported.serve(x).numpy()
        saved = tf.saved_model.load("saved")
        sig = saved.signatures["serving_default"]
        (called,) = sig(tf.constant(x)).values()
        print(json.dumps({"serve": served.tolist(), "signature": called.numpy().tolist()}))
        """,
    )
    want = ref(x)
    np.testing.assert_allclose(np.array(got["serve"]), want, **TOL)
    np.testing.assert_allclose(np.array(got["signature"]), want, **TOL)
    np.testing.assert_allclose(ours(x), want, **TOL)  # outside the block: the op again


def test_export_outside_the_block_keeps_the_op(tmp_path, rng):
    """The default export carries the op (a process needs tf_rnn_ops to load it): the block is what
    makes it portable."""
    ours, _ = _models(rng)
    ours.export(str(tmp_path / "fused"), verbose=False)
    assert b"TfRnn" in (tmp_path / "fused" / "saved_model.pb").read_bytes()


def test_keras_file_loads_as_plain_keras_layers(tmp_path, rng):
    ours, ref = _models(rng)
    ours.save(tmp_path / "model.keras")
    x = _tokens(rng, 5)
    np.save(tmp_path / "x.npy", x)
    got = _fresh_python(
        tmp_path,
        """
        import json, keras, numpy as np
        try:
            keras.models.load_model("model.keras")
            message = None
        except Exception as e:  # Keras cannot find our classes here
            message = str(e)
        custom_objects = {
            "tf_rnn_ops>GRU": keras.layers.GRU,
            "tf_rnn_ops>LSTM": keras.layers.LSTM,
            "tf_rnn_ops>SimpleRNN": keras.layers.SimpleRNN,
        }
        model = keras.models.load_model("model.keras", custom_objects=custom_objects)
        kinds = sorted({type(l).__module__.split(".")[0] for l in model._flatten_layers()})
        out = model(np.load("x.npy")).numpy().tolist()
        print(json.dumps({"message": message, "kinds": kinds, "out": out}))
        """,
    )
    assert got["kinds"] == ["keras"]
    np.testing.assert_allclose(np.array(got["out"]), ref(x), **TOL)
    # Keras' own message, and it names our package (the saved module and registered name)
    assert "Could not locate class" in got["message"]
    assert "tf_rnn_ops" in got["message"]
