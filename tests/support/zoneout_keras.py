"""A Keras reference for zoneout on the drop-in GRU / LSTM: Keras' own cell wrapped in haste's
zoneout (docs/MATH.md, "Cells beyond cuDNN", Zoneout), run by
`keras.layers.RNN`, with the keep masks injected as extra input channels (so each step reads its
own mask row; Keras' loop handles masks, go_backwards and initial states as for any cell). The
zoned h is the output and the carried state; c is not zoned.

`processed_masks` turns a layer's keep mask [T, B, H] (row b's k-th valid step processed reads
mask[k, b], the drop-in layers' convention) into those channels [B, T, H] at the input positions.
"""

from __future__ import annotations

import keras
import numpy as np


class ZoneoutInputCell(keras.layers.Layer):
    """`cell` with zoneout; the step input is [x, m] (m: the H keep weights of the step)."""

    def __init__(self, cell, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.units = cell.units
        self.state_size = cell.state_size
        self.output_size = cell.units

    def build(self, input_shape):
        self.cell.build((input_shape[0], input_shape[-1] - self.units))

    def call(self, inputs, states, training=False):
        x, m = inputs[:, : -self.units], inputs[:, -self.units :]
        states = list(states) if isinstance(states, list | tuple) else [states]
        _, new_states = self.cell(x, states, training=training)
        new_states = list(new_states) if isinstance(new_states, list | tuple) else [new_states]
        h = states[0] + m * (new_states[0] - states[0])
        return h, [h, *new_states[1:]]


def processed_masks(zoneout_mask, valid, go_backwards: bool) -> np.ndarray:
    """zoneout_mask [T, B, H] by valid step processed; valid [B, T] bool (or None: all steps) →
    [B, T, H] at the input positions (masked positions: ones, never read)."""
    zm = np.asarray(zoneout_mask)
    T, B, H = zm.shape
    valid = np.ones((B, T), bool) if valid is None else np.asarray(valid, bool)
    out = np.ones((B, T, H))
    order = range(T - 1, -1, -1) if go_backwards else range(T)
    for b in range(B):
        k = 0
        for t in order:
            if valid[b, t]:
                out[b, t] = zm[k, b]
                k += 1
    return out
