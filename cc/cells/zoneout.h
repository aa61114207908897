// Zoneout on h (haste semantics; docs/MATH.md, "Cells beyond cuDNN", Zoneout),
// defined once for every cell that has it and every device: the drop-in GRU / LSTM (the CPU driver,
// cc/kernels/rnn_cpu_driver.h, and the CUDA KerasRNNDropout kernels) and the layer-norm cells
// (cc/cells/layer_norm_cells.h's users).
//
//   h_t = h_{t-1} + k (h~_t - h_{t-1}),  k the keep value of the unit: a mask value in {0, 1}
//   (training, P(k = 1) = 1 - p) or 1 - p (inference: h_t = p h_{t-1} + (1 - p) h~_t).
//   Backward, from δ the grad of the zoned h_t: h~_t gets k δ, h_{t-1} gets (1 - k) δ besides the
//   cell's own part.
//
// Framework-free (every function TF_RNN_OPS_HOST_DEVICE): g++, nvcc and NVRTC compile it.
#ifndef TF_RNN_OPS_CC_CELLS_ZONEOUT_H_
#define TF_RNN_OPS_CC_CELLS_ZONEOUT_H_

#include "cc/cells/cell_math.h"

namespace tf_rnn_ops {

// Where the keep values come from: none (no zoneout), a mask [T, B, H] (time-major), or one
// scalar for every unit (inference: 1 - p).
enum class ZoneoutKind : int { kNone = 0, kMask = 1, kScalar = 2 };

// The zoned h of one unit.
template <typename T>
TF_RNN_OPS_HOST_DEVICE T Zoneout(T h_prev, T h_tilde, T k) {
  return h_prev + k * (h_tilde - h_prev);
}

template <typename T>
struct ZoneoutGrads {
  T d_tilde;  // the grad of h~
  T d_prev;   // the part of h_prev's grad that bypasses the cell
};
// From dh, the grad of the zoned h.
template <typename T>
TF_RNN_OPS_HOST_DEVICE ZoneoutGrads<T> ZoneoutBackward(T dh, T k) {
  return {k * dh, (T(1) - k) * dh};
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CELLS_ZONEOUT_H_
