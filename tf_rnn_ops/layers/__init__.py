"""Keras 3 layers on the tf_rnn_ops kernels (docs/MATH.md, "Keras layers")."""

from tf_rnn_ops.layers._formulation import standard_ops  # noqa: F401
from tf_rnn_ops.layers.cudnn import CudnnGRU, CudnnLSTM, CudnnRNNRelu, CudnnRNNTanh  # noqa: F401
from tf_rnn_ops.layers.gru_block_cell import GRUBlockCell  # noqa: F401
from tf_rnn_ops.layers.layer_norm import (  # noqa: F401
    LayerNormGRU,
    LayerNormGRUCell,
    LayerNormLSTM,
    LayerNormLSTMCell,
)
from tf_rnn_ops.layers.rnn import GRU, LSTM, SimpleRNN  # noqa: F401
