"""Demo: a bidirectional 2-layer GRU built from tf_rnn_ops' Keras layers (on the fused cuDNN-style
op, running on CPU) learns a task on variable-length, masked digit sequences; it is exported as a
SavedModel and a fresh Python process serves it (after `import tf_rnn_ops`) with the same
predictions.

The task: each sequence has 1 to --max_len digits (0-9), right-padded; the label is 1 when the
sequence's FIRST digit is greater than its LAST digit. The last digit sits at a different position
in every sequence, so the model has to honour the mask that `Embedding(mask_zero=True)` propagates
(a model that reads the padding sees a 0 there), and has to carry the first digit to the end (or
the last one to the start: the backward direction reads the valid part in reverse). Chance is the
majority class rate (about 55%).

    python python/demo.py [--model=bidirectional|cudnn --units=32 --epochs=6 ...]

--model=bidirectional: keras.layers.Bidirectional(tf_rnn_ops.layers.GRU(...)) twice (the drop-in
replacement of keras.layers.GRU); --model=cudnn: one tf_rnn_ops.layers.CudnnGRU(num_layers=2,
direction="bidirectional") with a single opaque params variable.

Exits with status 1 when the test accuracy is not above --min_accuracy, or when the reloaded
SavedModel's predictions differ.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run from a source tree without installing the package
    sys.path.insert(0, REPO)

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "bidirectional", ["bidirectional", "cudnn"],
                  "bidirectional: Bidirectional(tf_rnn_ops.layers.GRU) x2; "
                  "cudnn: CudnnGRU(num_layers=2, direction='bidirectional').")  # fmt: skip
flags.DEFINE_integer("max_len", 20, "Longest sequence (lengths are uniform in 1..max_len).")
flags.DEFINE_integer("units", 32, "GRU units per direction.")
flags.DEFINE_integer("embedding_dim", 16, "Embedding size of the digits.")
flags.DEFINE_integer("train_samples", 8000, "Number of training sequences.")
flags.DEFINE_integer("test_samples", 2000, "Number of test sequences.")
flags.DEFINE_integer("epochs", 5, "Training epochs.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_float("learning_rate", 0.005, "Adam learning rate.")
flags.DEFINE_integer("seed", 1234, "Seed of the data and of the weights.")
flags.DEFINE_integer("verbose", None, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line "
                     "per epoch (default: 1 on a terminal, 2 otherwise).")  # fmt: skip
flags.DEFINE_float("min_accuracy", 0.9, "Fail unless the test accuracy exceeds this.")
flags.DEFINE_string(
    "export_dir", None, "Where to write the SavedModel (default: a temp directory)."
)


def make_data(rng, samples: int, max_len: int):
    """Token ids [samples, max_len] (digit d → id d+1, 0 = padding) and labels [samples, 1]."""
    import numpy as np

    lengths = rng.integers(1, max_len + 1, samples)
    digits = rng.integers(0, 10, (samples, max_len))
    ids = np.where(np.arange(max_len)[None, :] < lengths[:, None], digits + 1, 0).astype(np.int32)
    first = digits[:, 0]
    last = digits[np.arange(samples), lengths - 1]
    labels = (first > last).astype(np.float32)[:, None]
    return ids, labels


def build_model(kind: str, max_len: int, units: int, embedding_dim: int):
    import keras

    import tf_rnn_ops

    inputs = keras.Input((max_len,), dtype="int32", name="digits")
    x = keras.layers.Embedding(11, embedding_dim, mask_zero=True)(inputs)
    if kind == "bidirectional":
        x = keras.layers.Bidirectional(tf_rnn_ops.layers.GRU(units, return_sequences=True))(x)
        x = keras.layers.Bidirectional(tf_rnn_ops.layers.GRU(units))(x)
    else:
        x = tf_rnn_ops.layers.CudnnGRU(units, num_layers=2, direction="bidirectional")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name=f"first_gt_last_{kind}")


SERVE = """
import sys
import numpy as np
import tensorflow as tf
import tf_rnn_ops  # registers the TfRnn> ops the SavedModel calls
served = tf.saved_model.load(sys.argv[1])
ids = np.load(sys.argv[2])
np.save(sys.argv[3], served.serve(tf.constant(ids)).numpy())
"""


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel writer logs at INFO
    import keras
    import numpy as np

    import tf_rnn_ops  # noqa: F401

    keras.utils.set_random_seed(FLAGS.seed)
    rng = np.random.default_rng(FLAGS.seed)
    x_train, y_train = make_data(rng, FLAGS.train_samples, FLAGS.max_len)
    x_test, y_test = make_data(rng, FLAGS.test_samples, FLAGS.max_len)
    chance = max(y_test.mean(), 1 - y_test.mean())

    model = build_model(FLAGS.model, FLAGS.max_len, FLAGS.units, FLAGS.embedding_dim)
    model.summary()
    model.compile(
        optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        jit_compile="auto",  # no XLA on CPU: our layers keep the fused op, as Keras keeps cuDNN
    )
    verbose = FLAGS.verbose if FLAGS.verbose is not None else (1 if sys.stdout.isatty() else 2)
    start = time.time()
    model.fit(
        x_train, y_train, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
        validation_split=0.1, verbose=verbose,
    )  # fmt: skip
    train_s = time.time() - start
    loss, acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    print(f"\ntrained in {train_s:.1f} s; test loss {loss:.4f} (chance {np.log(2):.4f}), "
          f"test accuracy {acc:.4f} vs chance {chance:.4f}")  # fmt: skip

    # Export, then serve from a fresh process that only imports tf_rnn_ops.
    export_dir = FLAGS.export_dir or os.path.join(tempfile.mkdtemp(prefix="tf_rnn_ops_demo_"), "m")
    model.export(export_dir, verbose=False)
    sample = x_test[:32]
    want = model.predict(sample, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        ids_path, out_path = os.path.join(tmp, "ids.npy"), os.path.join(tmp, "out.npy")
        np.save(ids_path, sample)
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        subprocess.run(
            [sys.executable, "-c", textwrap.dedent(SERVE), export_dir, ids_path, out_path],
            check=True, env=env,
        )  # fmt: skip
        got = np.load(out_path)
    diff = float(np.max(np.abs(got - want)))
    match = diff <= 1e-5
    print(f"SavedModel {export_dir} served in a fresh process: max |difference| {diff:.2e} "
          f"over {len(sample)} sequences -> {'MATCH' if match else 'MISMATCH'}")  # fmt: skip
    for ids, p in zip(sample[:3], got[:3], strict=False):
        digits = "".join(str(i - 1) for i in ids if i)
        print(f"  {digits:>{FLAGS.max_len}}  first>last: p={p[0]:.3f} "
              f"(truth {int(int(digits[0]) > int(digits[-1]))})")  # fmt: skip

    ok = match and acc > FLAGS.min_accuracy
    if not ok:
        print(f"FAILED: accuracy {acc:.4f} (need > {FLAGS.min_accuracy}) / served {match}")
    return 0 if ok else 1


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
