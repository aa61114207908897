// Keras' gate column order against the cells' (cc/cells/rnn_cells.h): Keras' GRU keeps its gates
// as z, r, h, the cells as r, z, h; the other cells' orders agree (LSTM i, f, c, o; simple RNN one
// gate). The one table the ops taking Keras' layouts (TfRnn>KerasRNNDropout and its backprop, on
// CPU and CUDA) permute their gate blocks with.
//
// Framework-free (plain C++17, TF_RNN_OPS_HOST_DEVICE): usable from g++, nvcc and NVRTC.
#ifndef TF_RNN_OPS_CC_CELLS_KERAS_GATE_ORDER_H_
#define TF_RNN_OPS_CC_CELLS_KERAS_GATE_ORDER_H_

#include "cc/cells/cell_math.h"
#include "cc/cells/rnn_cells.h"

namespace tf_rnn_ops {

// The Keras column block (0-based, each num_units wide) that holds the cell's gate g of `mode`.
TF_RNN_OPS_HOST_DEVICE constexpr int KerasGateBlock(RnnMode mode, int g) {
  const bool gru = mode == RnnMode::kGru || mode == RnnMode::kGruResetBefore;
  return gru && g < 2 ? 1 - g : g;
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CELLS_KERAS_GATE_ORDER_H_
