"""The fused RNN's modes, gates and attribute spellings: the one Python statement of these facts.

Every Python module of the package, the tests and the benchmarks read them from here. The math of
each mode is in docs/MATH.md, "Fused RNN cells"; the order of the weights in docs/MATH.md, "Params
layout".

This file imports nothing, so that numpy-only code (the float64 references of the tests, the
GPU harness, the benchmark tables) can load it by path without importing the package, which loads
TensorFlow and the compiled library::

    facts = runpy.run_path("<repo>/tf_rnn_ops/_modes.py")
    facts["NUM_GATES"]["gru"]  # 3
"""

from __future__ import annotations

# The spellings of the op attr `rnn_mode`, in the order of the C++ enum RnnMode (its value is the
# index here: rnn_relu 0, rnn_tanh 1, lstm 2, gru 3, gru_reset_before 4). gru is cuDNN's GRU (Keras
# reset_after=True: the reset gate scales the recurrent product); gru_reset_before Keras'
# reset_after=False form (GRUBlockCell's math: the reset gate scales h before the product), on our
# CPU and CUDA kernels only (cuDNN has no such cell).
RNN_MODES: tuple[str, ...] = ("rnn_relu", "rnn_tanh", "lstm", "gru", "gru_reset_before")

# The gates of each mode in canonical (cuDNN) order: one weight matrix per gate and input (W for
# the layer's input, R for the recurrent state), and one bias b_W and one b_R per gate.
GATE_ORDER: dict[str, tuple[str, ...]] = {
    "rnn_relu": ("h",),
    "rnn_tanh": ("h",),
    "lstm": ("i", "f", "c", "o"),
    "gru": ("r", "z", "h"),
    "gru_reset_before": ("r", "z", "h"),
}

# The same gates in the column order of the Keras cell's kernel, recurrent_kernel and bias (GRU:
# z, r, h, either reset_after; LSTM: as cuDNN; SimpleRNN: its one block).
KERAS_GATE_ORDER: dict[str, tuple[str, ...]] = {
    "rnn_relu": ("h",),
    "rnn_tanh": ("h",),
    "lstm": ("i", "f", "c", "o"),
    "gru": ("z", "r", "h"),
    "gru_reset_before": ("z", "r", "h"),
}

# Number of gates (G) of each mode: the weights of a pseudo-layer are G·H rows of W and of R.
NUM_GATES: dict[str, int] = {mode: len(gates) for mode, gates in GATE_ORDER.items()}

# The per-step buffers each mode's cell saves for backprop, in the order reserve_space holds them
# per layer and direction (the cell's kSaved in cc/cells/rnn_cells.h): (name, width in units of
# num_units, fixed width), a buffer [T, B, width·H + fixed]. Buffer 0 is always "act", the G gate
# activations; then lstm its cell states c, gru the recurrent part of the candidate (R_h h + b_Rh,
# "ghn"), gru_reset_before r ∘ h_prev ("rh").
SAVED_BUFFERS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "rnn_relu": (("act", 1, 0),),
    "rnn_tanh": (("act", 1, 0),),
    "lstm": (("act", 4, 0), ("c", 1, 0)),
    "gru": (("act", 3, 0), ("ghn", 1, 0)),
    "gru_reset_before": (("act", 3, 0), ("rh", 1, 0)),
}

# Modes with a cell state c besides h (input_c / output_c are used; otherwise ignored).
CELL_STATE_MODES: tuple[str, ...] = ("lstm",)

# Modes that may have a projection (num_proj > 0: h = P·(o ∘ tanh(c)), H_out = num_proj).
PROJECTION_MODES: tuple[str, ...] = ("lstm",)

# The spellings of the op attr `direction` (1 and 2 directions) and of `input_mode`.
DIRECTIONS: tuple[str, ...] = ("unidirectional", "bidirectional")
INPUT_MODES: tuple[str, ...] = ("linear_input", "skip_input", "auto_select")


def keras_gate_permutation(rnn_mode: str) -> list[int]:
    """For each canonical gate, the index of its block in the Keras cell's columns (GRU [1, 0, 2]:
    canonical r, z, h are Keras' blocks 1, 0, 2)."""
    keras = KERAS_GATE_ORDER[rnn_mode]
    return [keras.index(gate) for gate in GATE_ORDER[rnn_mode]]
