"""The streamed products of `keras_rnn` (B·T <= 8; B <= 2 at any T over weights of 4 MB or more;
B <= 8 and T <= 8 over 8 MB or more; with AVX-512, 3 <= B <= 8 and T <= 16 over 4 MB or more,
9 <= B <= 64 with B·T <= 128 over 4 MB or more, and 9 <= B <= 32 with B·T <= 256 over 24 MB or
more: RnnStreamForwardWeights, the weights read as stored, no packing).

Every row count the streamed product sees (1-8 rows of the input projection and of the recurrent
product), with the sizes that reach each of its code paths: one or two rows on the calling thread
(two rows of C per pass over B), 3-8 rows split by columns across threads (steps from 1 MFLOP),
K % 4 != 0 (the last rows of B one at a time), widths that are not a multiple of the 8-float
vectors, and the GRU's gate blocks read out of order (runs of columns sorted by their place in B).
One or two rows over 1 MB of weights or more in a call on two threads (64 MFLOP or more, or
weights of 24 MB or more) split the rows of the weights between the threads, each summing its
part, the parts added after (StepGemm<float>::StreamSplit).
Compared with a numpy float64 forward of the Keras cell math (tests/support/rnn_reference.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from keras_convert import cell_to_canonical
from rnn_reference import rnn_forward

import tf_rnn_ops

MODES = tf_rnn_ops.params.RNN_MODES
GATES = tf_rnn_ops.params.NUM_GATES


def _kind(mode: str) -> str:
    return "simple_rnn" if mode.startswith("rnn_") else mode


def _reference(mode, x, h0, c0, k, r, b):
    w, bs = cell_to_canonical(_kind(mode), k, r, b)
    y, h, c = rnn_forward(
        np.asarray(x, np.float64),
        np.asarray(h0, np.float64)[:, np.newaxis],
        None if c0 is None else np.asarray(c0, np.float64)[:, np.newaxis],
        [np.asarray(a, np.float64) for a in w],
        [np.asarray(a, np.float64) for a in bs],
        mode=mode,
        time_major=False,
    )
    return y, h[:, 0], None if c is None else c[:, 0]


SIZES = [  # (B, T, I, H): B·T <= 8 rows; products of 1, 2, 3, 5, 8 rows
    (1, 1, 3, 1),  # K = 3 < 4: only the row-at-a-time tail
    (1, 1, 257, 257),  # one row, every width odd, K % 4 = 1
    (2, 1, 6, 13),  # two rows, no full vector in a gate block
    (2, 4, 9, 17),  # input projection of 8 rows, recurrent of 2
    (3, 1, 257, 257),  # three rows from 1 MFLOP: columns split across threads
    (5, 1, 130, 64),  # a pair, a pair and a single row
    (8, 1, 31, 200),  # eight rows split across threads
    (1, 8, 64, 300),  # input projection of 8 rows, recurrent of 1, 8 steps
    # B·T > 8, few rows a step over few steps of weights the caches cannot keep (>= 8 MB; GRU and
    # LSTM here, SimpleRNN's 2.9 and 4.4 MB are packed): 15 and 64 rows of input projection
    (3, 5, 100, 800),
    (8, 8, 31, 1030),
    # with AVX-512 (3-8 rows on zmm) also up to 16 steps of 4 MB+: GRU and LSTM (4.2, 5.6 MB)
    (4, 12, 64, 560),
    # with AVX-512, 9-64 rows a step in calls of at most 128 rows over 4 MB+ (GRU's 6.8 MB and
    # LSTM's 9 MB here; SimpleRNN's 2.3 MB packed): each thread its rows; and R of 10 MB+, one
    # range split by columns
    (12, 3, 64, 720),
    (37, 2, 16, 1232),
    # up to 256 rows at B <= 32 over 24 MB+ (LSTM; GRU's 18 MB packed)
    (13, 12, 16, 1232),
    # B <= 2 over 4 MB+ at any T (GRU, LSTM; SimpleRNN's 1.6 MB packed), calls of 64 MFLOP+ on
    # two threads: the recurrent product's 600 / 650 rows of R split in two parts (at 288 / 320)
    (1, 40, 16, 600),
    (2, 33, 9, 650),
    # one step with a state over 24 MB+ (LSTM): two threads from the first flop
    (1, 1, 16, 1232),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "B{}T{}I{}H{}".format(*s))
def test_streamed_forward_matches_reference(rng, mode, size):
    B, T, n_in, H = size
    g = GATES[mode]
    x = rng.normal(size=(B, T, n_in)).astype(np.float32)
    h0 = (rng.normal(size=(B, H)) * 0.5).astype(np.float32)
    c0 = (rng.normal(size=(B, H)) * 0.5).astype(np.float32) if mode == "lstm" else None
    scale = 1.0 / np.sqrt(n_in + H)
    k = rng.uniform(-scale, scale, (n_in, g * H)).astype(np.float32)
    r = rng.uniform(-scale, scale, (H, g * H)).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, (2, 3 * H) if mode == "gru" else (g * H,)).astype(np.float32)
    ry, rh, rc = _reference(mode, x, h0, c0, k, r, b)
    for training in (True, False):
        y, h, c, _ = tf_rnn_ops.keras_rnn(x, h0, c0, k, r, b, rnn_mode=mode, is_training=training)
        np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h, rh, rtol=1e-5, atol=1e-5)
        if mode == "lstm":
            np.testing.assert_allclose(c, rc, rtol=1e-5, atol=1e-5)
