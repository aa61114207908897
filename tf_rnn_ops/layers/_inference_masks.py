"""Inference calls that draw no dropout masks, for the `keras.layers.RNN` subclasses.

`keras.layers.RNN.call` draws its cell's dropout masks before every call, training or not, and
Keras' cells apply them only in training. So an inference call of a layer with `dropout` or
`recurrent_dropout` paid for G random draws (LayerNormGRU's DropConnect mask: R's size, 3M numbers
at H = 1024 for a one-step generation call) and a seed-generator update, and its graph read and
wrote the seed generator's state, which `tf.saved_model.save` cannot export (the state is not a
tracked child of the model: "Tried to export a function which references an 'untracked'
resource"; Keras' own layers fail there). An inference call of these layers caches the scalar 1
as every mask instead: what inference applies, and no random op. Training calls draw exactly as
Keras does. (An inference call therefore leaves the seed generator where it was, where Keras'
advances it: the masks of a later training call follow the training calls only.)
"""

from __future__ import annotations

from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

__all__ = ["InferenceDrawsNoMasks"]


class InferenceDrawsNoMasks:
    """Mixin before `keras.layers.RNN` (or a subclass) in the bases: see the module docstring."""

    _inference_call = False  # set for the duration of a call with training False / None

    def call(self, sequences, initial_state=None, mask=None, training=False):
        self._inference_call = training is False or training is None
        try:
            return super().call(
                sequences, initial_state=initial_state, mask=mask, training=training
            )
        finally:
            self._inference_call = False

    def _maybe_config_dropout_masks(self, cell, input_sequence, input_state):
        if not (self._inference_call and isinstance(cell, DropoutRNNCell)):
            # training (or a symbolic training flag): Keras' draws
            super()._maybe_config_dropout_masks(cell, input_sequence, input_state)
            return
        # The cached masks the cell's get_*_mask returns for the call's steps (a list for a cell
        # of per-gate masks), so that no step draws one either; Keras resets them after the call.
        count = getattr(cell, "dropout_mask_count", None)
        unit = 1.0 if count is None else [1.0] * count
        if cell.dropout > 0:
            cell._dropout_mask = unit
        if cell.recurrent_dropout > 0:
            cell._recurrent_dropout_mask = unit
