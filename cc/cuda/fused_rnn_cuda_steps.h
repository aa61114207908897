// Host side of the step kernels (fused_rnn_cuda_kernels.cu.h), shared by the fused driver
// (fused_rnn_cuda.cu.cc) and the KerasRNNDropout driver (keras_rnn_dropout_cuda.cu.cc): which
// kernel runs a cell's phase, their launches, the step kernels' sizes, and the recurrent products
// of a step. Host code: include it where NVRTC does not compile (outside __CUDACC_RTC__).
#ifndef TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_STEPS_H_
#define TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_STEPS_H_

#include <cstdint>

#include "cc/cells/rnn_cells.h"
#include "cc/cuda/cuda_util.h"
#include "cc/cuda/fused_rnn_cuda_kernels.cu.h"
#include "cc/cuda/fused_rnn_cuda_layout.h"

namespace tf_rnn_ops {
namespace cuda {
namespace {

// The step kernels of the cell's phase `phase` (one-product cells: phase 0, the whole step), with
// or without the projection (cells with kSupportsProjection).
template <typename T, typename Cell, int kPhase = 0>
void (*ForwardStepKernelFor(bool proj, int phase))(ForwardStepArgs<T>) {
  if constexpr (kPhase < CellRecurrentProducts<Cell>::value) {
    if (phase != kPhase) return ForwardStepKernelFor<T, Cell, kPhase + 1>(proj, phase);
    if constexpr (Cell::kSupportsProjection) {
      if (proj) return &ForwardStepKernel<T, Cell, true, kPhase>;
    }
    return &ForwardStepKernel<T, Cell, false, kPhase>;
  } else {
    return nullptr;
  }
}

template <typename T, typename Cell, int kPhase = 0>
void (*BackwardStepKernelFor(bool proj, int phase))(BackwardStepArgs<T>) {
  if constexpr (kPhase < CellRecurrentProducts<Cell>::value) {
    if (phase != kPhase) return BackwardStepKernelFor<T, Cell, kPhase + 1>(proj, phase);
    if constexpr (Cell::kSupportsProjection) {
      if (proj) return &BackwardStepKernel<T, Cell, true, kPhase>;
    }
    return &BackwardStepKernel<T, Cell, false, kPhase>;
  } else {
    return nullptr;
  }
}

template <typename T, typename Cell>
Status LaunchForwardStep(bool proj, int phase, dim3 grid, cudaStream_t stream,
                         const ForwardStepArgs<T>& a) {
  void (*kernel)(ForwardStepArgs<T>) = ForwardStepKernelFor<T, Cell>(proj, phase);
  TF_RNN_LAUNCH(kernel, grid, kThreadsPerBlock, stream, a);
  return CudaStatus(cudaGetLastError(), "ForwardStepKernel");
}

template <typename T, typename Cell>
Status LaunchBackwardStep(bool proj, int phase, dim3 grid, cudaStream_t stream,
                          const BackwardStepArgs<T>& a) {
  void (*kernel)(BackwardStepArgs<T>) = BackwardStepKernelFor<T, Cell>(proj, phase);
  TF_RNN_LAUNCH(kernel, grid, kThreadsPerBlock, stream, a);
  return CudaStatus(cudaGetLastError(), "BackwardStepKernel");
}

// The recurrent products of a step (cc/cells/rnn_cells.h): product p multiplies its input (p = 0:
// the state h_prev; else what phase p - 1 passed on) by R's gate rows [Begin(p), End(p)) · H; a
// one-product cell has one product over all G gates.
template <typename Cell>
struct Products {
  static constexpr int kCount = CellRecurrentProducts<Cell>::value;
  static int64_t Begin(int p) {
    if constexpr (kCount == 1) {
      return 0;
    } else {
      return Cell::kProductGates[p];
    }
  }
  static int64_t End(int p) {
    if constexpr (kCount == 1) {
      return Cell::kGates;
    } else {
      return Cell::kProductGates[p + 1];
    }
  }
  // The saved buffer holding the input of product p > 0 (for dR).
  static int Input(int p) {
    if constexpr (kCount == 1) {
      return -1;
    } else {
      return Cell::kProductInput[p];
    }
  }
};

// The step kernels' sizes (the step s is set per step).
inline StepDims StepDimsOf(const Dims& D, const int32_t* lens) {
  StepDims dims{};
  dims.B = D.B, dims.H = D.H, dims.Hout = D.Hout, dims.GH = D.GH, dims.max_time = D.T;
  dims.rows = D.rows, dims.ts = D.ts, dims.bs = D.bs;
  dims.lens = lens;
  return dims;
}

}  // namespace
}  // namespace cuda
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_STEPS_H_
