"""The fused op on a TensorFlow pool of a given number of intra-op threads, against Keras' layers
(float64, the same weights): run in a subprocess by test_row_range_threads.py, since the pool's size
is fixed once TensorFlow starts.

usage: row_range_program.py THREADS SEED ROUNDS MODE:B:T:I:H[:lengths] ...

float32 is the type whose step products run on one thread for a range of rows
(ForEachBatchRange, B >= 12 with 2+ threads): each thread takes its own rows through a chunk
of steps with no barrier between them, so one thread may be a phase ahead of another (cells with
two recurrent products a step, GRU reset-before). Every case runs the op ROUNDS times against one
reference (a race shows in some rounds only). Prints "ok", or each failing case with its round,
output and worst index and exits 1.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import row_range  # noqa: E402

THREADS = int(sys.argv[1])
row_range.set_pool(THREADS)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_rnn_ops  # noqa: E402

GATES = {"gru": 3, "gru_reset_before": 3, "lstm": 4}


def keras_layer(mode: str, H: int):
    kw = dict(return_sequences=True, return_state=True, dtype="float64")
    if mode == "lstm":
        return keras.layers.LSTM(H, use_cudnn=False, **kw)
    return keras.layers.GRU(H, reset_after=mode == "gru", use_cudnn=False, **kw)


def run_case(
    rng, mode: str, B: int, T: int, n_in: int, H: int, with_lengths: bool, rounds: int
) -> str | None:
    g = GATES[mode]
    # Wider layers get smaller recurrent weights: at H = 256 and ±0.5 the recurrence is chaotic,
    # and float32's rounding grows past any bound over 90 steps (~2 in the outputs).
    k = rng.uniform(-0.5, 0.5, (n_in, g * H))
    r = rng.uniform(-0.5, 0.5, (H, g * H)) * min(1.0, 8 / np.sqrt(H))
    b = rng.uniform(-0.5, 0.5, (2, 3 * H) if mode == "gru" else (g * H,))
    x = rng.normal(size=(B, T, n_in))
    h0 = rng.normal(size=(B, H)) * 0.5
    c0 = rng.normal(size=(B, H)) * 0.5
    lengths = np.full(B, T, np.int32)
    if with_lengths:
        lengths = rng.integers(0, T + 1, B).astype(np.int32)
        lengths[0] = T
    valid = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float64)[..., None]
    wy = rng.normal(size=(B, T, H)) * valid
    wh = rng.normal(size=(B, H))
    wc = rng.normal(size=(B, H))

    def loss(y, h, c):
        out = tf.reduce_sum(y * wy) + tf.reduce_sum(h * wh)
        return out + (tf.reduce_sum(c * wc) if mode == "lstm" else 0.0)

    # The reference: Keras' own step loop in float64 (masked steps keep the state).
    layer = keras_layer(mode, H)
    layer.build((B, T, n_in))
    layer.set_weights([k, r, b])
    ref_args = [tf.constant(a) for a in (x, h0, c0)]
    with tf.GradientTape() as tape:
        tape.watch(ref_args)
        states = [ref_args[1], ref_args[2]] if mode == "lstm" else [ref_args[1]]
        out = layer(ref_args[0], initial_state=states, mask=tf.constant(valid[..., 0] > 0))
        y_ref, h_ref = out[0] * valid, out[1]
        c_ref = out[2] if mode == "lstm" else None
        loss_ref = loss(y_ref, h_ref, c_ref)
    grads_ref = tape.gradient(loss_ref, ref_args + layer.trainable_weights)

    args = [tf.constant(a, tf.float32) for a in (x, h0, c0, k, r, b)]
    names = ["d_input", "d_input_h", "d_input_c", "d_kernel", "d_recurrent_kernel", "d_bias"]
    if mode != "lstm":
        grads_ref[2] = tf.zeros_like(ref_args[2])
    for i in range(rounds):  # the reference once, the op `rounds` times: a race shows in some only
        with tf.GradientTape() as tape:
            tape.watch(args)
            y, h, c, _ = tf_rnn_ops.keras_rnn(
                args[0], args[1], args[2] if mode == "lstm" else None, args[3], args[4], args[5],
                sequence_lengths=tf.constant(lengths), rnn_mode=mode,
            )  # fmt: skip
            lo = loss(tf.cast(y, tf.float64), tf.cast(h, tf.float64), tf.cast(c, tf.float64))
        grads = tape.gradient(lo, args)
        if mode != "lstm":
            grads[2] = tf.zeros_like(args[2])
        pairs = [("output", y, y_ref), ("output_h", h, h_ref)]
        if mode == "lstm":
            pairs.append(("output_c", c, c_ref))
        pairs += list(zip(names, grads, grads_ref, strict=True))
        for name, got, want in pairs:
            got = np.asarray(got, np.float64)
            want = np.asarray(want, np.float64)
            err = np.abs(got - want)
            bound = 2e-4 * (1.0 + np.abs(want)) * max(1.0, np.sqrt(T))
            if not np.all(err <= bound):
                where = np.unravel_index(np.argmax(err - bound), err.shape)
                at = tuple(int(v) for v in where)
                return f"round {i}: {name}: max error {err.max():.3g} at index {at}"
    return None


def main() -> int:
    seed, rounds = int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(seed)
    failures = []
    for spec in sys.argv[4:]:
        mode, *sizes = spec.split(":")
        with_lengths = sizes[-1] == "lengths"
        B, T, n_in, H = (int(v) for v in sizes[:4])
        msg = run_case(rng, mode, B, T, n_in, H, with_lengths, rounds)
        if msg:
            failures.append(f"{spec} {msg}")
    return row_range.report(failures)


if __name__ == "__main__":
    sys.exit(main())
