// The scalar building blocks of every cell definition in cc/cells/: the host/device qualifier, the
// RnnMode enum (the values of the fused ops' rnn_mode attribute) and the scalar activations.
//
// Framework-free (no TensorFlow, no Eigen): compiles under g++ and nvcc alike. A cell's equations
// are written once, as templates over a value type V (see rnn_cells.h): V = T, one unit j of a
// batch row (the CUDA kernels, the reference loops), or a CPU vector of consecutive units
// (cc/kernels, where these functions have vector overloads found by argument-dependent lookup).
#ifndef TF_RNN_OPS_CC_CELLS_CELL_MATH_H_
#define TF_RNN_OPS_CC_CELLS_CELL_MATH_H_

#include <cmath>
#include <cstdint>

// Inline on the host, __host__ __device__ under nvcc: every element-wise function of a cell.
#if defined(__CUDACC__)
#define TF_RNN_OPS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TF_RNN_OPS_HOST_DEVICE inline
#endif

namespace tf_rnn_ops {

// The fused RNN's cells (the rnn_mode attribute). rnn_cells.h's DispatchCell maps each to its cell
// type; nothing else asks which mode it runs.
enum class RnnMode : int {
  kRnnRelu = 0,
  kRnnTanh = 1,
  kLstm = 2,
  kGru = 3,
  kGruResetBefore = 4,
};
constexpr int kNumRnnModes = 5;  // the modes are 0 .. kNumRnnModes - 1

// ------------------------------------------------------------------------- scalar activations
// σ(x) = 1 / (1 + e^-x).
template <typename T>
TF_RNN_OPS_HOST_DEVICE T Sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <typename T>
TF_RNN_OPS_HOST_DEVICE T Tanh(T x) {
  return std::tanh(x);
}

// max(x, 0).
template <typename T>
TF_RNN_OPS_HOST_DEVICE T Relu(T x) {
  return x > T(0) ? x : T(0);
}

// The grad of relu's input from its output y and the grad dy of its output: dy where y > 0, else 0.
template <typename T>
TF_RNN_OPS_HOST_DEVICE T ReluGrad(T y, T dy) {
  return y > T(0) ? dy : T(0);
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CELLS_CELL_MATH_H_
