"""The cases of tests/ops/test_tf_cudnn_cpu.py, in plain Python (no TensorFlow), so that pytest can
parametrize over them and the helper scripts beside this file can build them."""

from __future__ import annotations

import itertools

# Keras 3's own cuDNN graph (keras/src/backend/tensorflow/rnn.py `_cudnn_gru` / `_cudnn_lstm`),
# traced as on a CUDA machine: (kind, time_major, masked, go_backwards).
KERAS_GPU_CASES = {
    f"{kind}-{'tm' if tm else 'bm'}-{'mask' if masked else 'full'}{'-back' if back else ''}": dict(
        kind=kind, time_major=tm, masked=masked, go_backwards=back
    )
    for kind, tm, masked, back in itertools.product(
        ("gru", "lstm"), (False, True), (False, True), (False, True)
    )
}
# A whole Keras model (Masking -> GRU -> LSTM -> Dense) exported with `model.export` as on a GPU
# machine.
KERAS_EXPORT_CASE = "keras-export-masking-gru-lstm-dense"
# Cases fine-tuned in the serving process (a few SGD steps on the loaded variables).
FINE_TUNE_CASES = ("gru-bm-mask", "lstm-tm-full-back")
FINE_TUNE_STEPS, FINE_TUNE_LR = 5, 0.5

# Sizes of every Keras-GPU case.
BATCH, STEPS, INPUT, UNITS = 4, 6, 5, 7
# Right-padded lengths: any order batch-major. Time-major, Keras checks its [T, B] mask for right
# padding along axis 1 as if it were [B, T] (_assert_valid_mask), so only lengths that are
# non-increasing with max == T pass its tf.Assert there.
LENGTHS_BATCH_MAJOR = (3, 6, 1, 4)
LENGTHS_TIME_MAJOR = (6, 4, 4, 2)

# tf.raw_ops.CudnnRNN / CudnnRNNV2 (time-major, no sequence lengths) against Keras layers:
# (op, rnn_mode, num_layers, direction).
RAW_RNN_CASES = {
    f"{op}-{mode}-{layers}l-{direction[:3]}": dict(
        op=op, mode=mode, num_layers=layers, direction=direction
    )
    for op, mode, layers, direction in (
        ("CudnnRNN", "gru", 1, "unidirectional"),
        ("CudnnRNN", "lstm", 1, "bidirectional"),
        ("CudnnRNN", "rnn_tanh", 2, "unidirectional"),
        ("CudnnRNNV2", "lstm", 2, "unidirectional"),
        ("CudnnRNNV2", "gru", 2, "bidirectional"),
        ("CudnnRNNV2", "rnn_relu", 1, "bidirectional"),
    )
}

# Params-conversion ops: (rnn_mode, num_layers, direction, input_mode, input_size, num_proj, dtype);
# num_units is 4 (auto_select with input_size 4 means skip_input).
PARAMS_UNITS = 4
PARAMS_CASES = {
    f"{mode}-{layers}l-{direction[:3]}-{input_mode}-i{isize}-p{proj}-{dtype}": dict(
        mode=mode,
        num_layers=layers,
        direction=direction,
        input_mode=input_mode,
        input_size=isize,
        num_proj=proj,
        dtype=dtype,
    )
    for mode, layers, direction, input_mode, isize, proj, dtype in (
        ("gru", 1, "unidirectional", "linear_input", 3, 0, "float32"),
        ("lstm", 2, "bidirectional", "linear_input", 5, 0, "float32"),
        ("lstm", 2, "unidirectional", "linear_input", 3, 2, "float32"),
        ("rnn_relu", 2, "bidirectional", "skip_input", 4, 0, "float64"),
        ("rnn_tanh", 1, "unidirectional", "auto_select", 6, 0, "float64"),
        ("gru", 3, "bidirectional", "auto_select", 4, 0, "float64"),
    )
}
