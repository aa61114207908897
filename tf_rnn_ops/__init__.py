"""tf_rnn_ops: fused GRU/LSTM/RNN kernels for TensorFlow, their gradients and Keras 3 layers.

`import tf_rnn_ops` loads the compiled op libraries (once), registers the gradients and the Keras
layers, and gives TensorFlow's own CudnnRNN* ops CPU kernels where TensorFlow has none.
"""

from tf_rnn_ops import _loader

_loader.ops()  # fail at import, with a message that says how to build, when the library is missing
_loader.load_tf_cudnn_cpu_kernels()  # serve TensorFlow's own CudnnRNN* ops on CPU
_loader.load_gpu_kernels()  # CUDA kernels, where built and a GPU is visible

# Op wrappers (each with the keyword signature of its tf.raw_ops namesake) and their gradients; the
# Keras layers (registered as Keras serializables) and the weight conversions.
from tf_rnn_ops import layers, params  # noqa: E402
from tf_rnn_ops.cudnn_rnn import (  # noqa: E402
    cudnn_rnn,
    cudnn_rnn_backprop,
    cudnn_rnn_canonical_to_params,
    cudnn_rnn_params_size,
    cudnn_rnn_params_to_canonical,
    keras_rnn,
    keras_rnn_dropout,
)
from tf_rnn_ops.gru_block_cell import gru_block_cell, gru_block_cell_grad  # noqa: E402
from tf_rnn_ops.layers._formulation import standard_ops  # noqa: E402

__all__ = [
    "cudnn_rnn",
    "cudnn_rnn_backprop",
    "cudnn_rnn_canonical_to_params",
    "cudnn_rnn_params_size",
    "cudnn_rnn_params_to_canonical",
    "gru_block_cell",
    "gru_block_cell_grad",
    "keras_rnn",
    "keras_rnn_dropout",
    "layers",
    "params",
    "standard_ops",
]
