// The dropout between the fused RNN's layers on CPU: Philox masks drawn from (seed, seed2) and the
// call's index alone (docs/MATH.md, "Dropout").
#ifndef TF_RNN_OPS_CC_KERNELS_RNN_DROPOUT_H_
#define TF_RNN_OPS_CC_KERNELS_RNN_DROPOUT_H_

#include <cstdint>

#include "tensorflow/core/lib/random/philox_random.h"
#include "tensorflow/core/lib/random/random_distributions.h"

namespace tf_rnn_ops {

// Where the dropout mask of layer `layer` (>= 1) starts in the Philox stream of (seed, seed2) at
// the `call`-th call of a kernel that draws masks (counted from 0 per kernel instance, as
// TensorFlow's GPU kernels advance their dropout state from call to call): each (call, layer) has
// its own stretch of 2^40 draws (4 elements each), call 0 those of layer << 40. The stretches
// repeat after 2^24 / num_layers calls. The CUDA kernels (cc/cuda/fused_rnn_cuda.cu.cc) use the
// same offsets.
inline uint64_t DropoutStreamOffset(uint64_t call, int num_layers, int layer) {
  return (call * static_cast<uint64_t>(num_layers) + static_cast<uint64_t>(layer)) << 40;
}

// The dropout scales (0 or 1/(1-p)) of the input of each layer >= 1, from (seed, seed2) and the
// call's index alone. dropout = 1 drops every element (each uniform draw is below 1), as cuDNN
// does.
template <typename T>
void FillDropoutMask(uint64_t seed, uint64_t seed2, uint64_t stream_offset, float dropout,
                     int64_t n, T* mask) {
  tensorflow::random::PhiloxRandom gen(seed, seed2);
  gen.Skip(stream_offset);
  tensorflow::random::UniformDistribution<tensorflow::random::PhiloxRandom, float> uniform;
  const T scale = dropout < 1 ? T(1) / (T(1) - T(dropout)) : T(0);
  for (int64_t i = 0; i < n;) {
    const auto sample = uniform(&gen);
    for (int k = 0; k < sample.kElementCount && i < n; ++k, ++i) {
      mask[i] = sample[k] < dropout ? T(0) : scale;
    }
  }
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_RNN_DROPOUT_H_
