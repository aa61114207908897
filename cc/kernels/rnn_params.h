// The one description of the fused RNN's model shape and params layout (docs/MATH.md, "Params
// layout"), framework-free so that the CPU kernels, the CUDA layer and the params-conversion ops
// all read the same facts. The gate count of each mode comes from its cell (cc/cells/rnn_cells.h).
//
// Canonical params, per layer (layer-major), per direction (forward first):
//   weights: W_g [H, in] for each gate g (absent for layer 0 with skip_input), R_g [H, H_out] for
//   each
//            gate, and for lstm with num_proj the projection P [num_proj, H];
//   biases:  b_W,g [H] for each gate, then b_R,g [H] for each gate.
// Opaque params: for each pseudo-layer (layer, direction) in that order, its canonical weights
// flattened in order, followed by its canonical biases. Within a pseudo-layer the gate matrices of
// W (and of R) are therefore contiguous and form one row-major [G·H, in] matrix (and [G·H, H_out]).
#ifndef TF_RNN_OPS_CC_KERNELS_RNN_PARAMS_H_
#define TF_RNN_OPS_CC_KERNELS_RNN_PARAMS_H_

#include <algorithm>
#include <cstdint>

#include "cc/cells/rnn_cells.h"

namespace tf_rnn_ops {

struct RnnModelShape {
  RnnMode mode = RnnMode::kLstm;
  bool skip_input = false;  // input_mode skip_input (or auto_select with input_size == num_units)
  int num_layers = 1;
  int num_dirs = 1;
  int64_t num_units = 0;   // H
  int64_t num_proj = 0;    // 0: no projection (lstm only)
  int64_t input_size = 0;  // I

  int gates() const { return NumGates(mode); }
  int64_t h_out() const { return num_proj > 0 ? num_proj : num_units; }
  int64_t output_size() const { return num_dirs * h_out(); }  // width of a layer's output
  int64_t LayerInputSize(int layer) const { return layer == 0 ? input_size : output_size(); }
  int64_t MaxLayerInputSize() const {  // the widest layer input (scratch sized for every layer)
    return num_layers > 1 ? std::max(input_size, output_size()) : input_size;
  }
  bool HasInputWeights(int layer) const { return !(skip_input && layer == 0); }

  // Offsets of one pseudo-layer's parts inside its opaque block.
  struct Block {
    int64_t w = 0;    // [G·H, in] (size 0 with skip_input on layer 0)
    int64_t r = 0;    // [G·H, H_out]
    int64_t p = 0;    // [H_out, H] (num_proj only)
    int64_t b_w = 0;  // [G·H]
    int64_t b_r = 0;  // [G·H]
    int64_t size = 0;
  };
  Block LayerBlock(int layer) const {
    const int64_t gh = gates() * num_units;
    Block b;
    b.w = 0;
    b.r = b.w + (HasInputWeights(layer) ? gh * LayerInputSize(layer) : 0);
    b.p = b.r + gh * h_out();
    b.b_w = b.p + (num_proj > 0 ? num_proj * num_units : 0);
    b.b_r = b.b_w + gh;
    b.size = b.b_r + gh;
    return b;
  }
  // Offset of the block of (layer, dir) in the opaque params.
  int64_t BlockOffset(int layer, int dir) const {
    int64_t offset = 0;
    for (int l = 0; l < layer; ++l) offset += num_dirs * LayerBlock(l).size;
    return offset + dir * LayerBlock(layer).size;
  }
  int64_t ParamsSize() const { return BlockOffset(num_layers, 0); }

  // Canonical lists: counts per pseudo-layer and in all.
  int NumWeights(int layer) const {
    return (HasInputWeights(layer) ? gates() : 0) + gates() + (num_proj > 0 ? 1 : 0);
  }
  int NumBiases() const { return 2 * gates(); }
  int TotalWeights() const {
    int n = 0;
    for (int l = 0; l < num_layers; ++l) n += num_dirs * NumWeights(l);
    return n;
  }
  int TotalBiases() const { return num_layers * num_dirs * NumBiases(); }

  // Shape [rows, cols] of canonical weight k (0 <= k < NumWeights(layer)) of a pseudo-layer of
  // `layer`.
  void WeightShape(int layer, int k, int64_t* rows, int64_t* cols) const {
    const int num_w = HasInputWeights(layer) ? gates() : 0;
    if (k < num_w) {
      *rows = num_units;
      *cols = LayerInputSize(layer);
    } else if (k < num_w + gates()) {
      *rows = num_units;
      *cols = h_out();
    } else {  // projection
      *rows = num_proj;
      *cols = num_units;
    }
  }
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_RNN_PARAMS_H_
