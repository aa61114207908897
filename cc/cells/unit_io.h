// The scalar ios of the cells in rnn_cells.h: one unit j of one batch row, gate blocks and saved
// buffers read and written through plain pointers at [g · stride + j] (stride = H for a row's
// [G·H] vectors; stride 1, j 0 for a thread's own G-long arrays), states passed by value. This is
// how the CUDA kernels (one thread a unit) and scalar reference loops run a cell:
//
//   UnitForwardIo<T> io(gx, gh, H, j);
//   io.h_prev = h_in[j];  io.c_prev = c_in[j];  io.saved[GruCell::kAct] = act;  ...
//   GruCell::Forward(io);
//   h_out[j] = io.h;
//
// Framework-free; every member is TF_RNN_HOST_DEVICE.
#ifndef TF_RNN_OPS_CC_CELLS_UNIT_IO_H_
#define TF_RNN_OPS_CC_CELLS_UNIT_IO_H_

#include <cstdint>

#include "cc/cells/cell_math.h"
#include "cc/cells/rnn_cells.h"

namespace tf_rnn_ops {

template <typename T>
struct UnitForwardIo {
  using Value = T;
  TF_RNN_HOST_DEVICE UnitForwardIo(const T* gx_in, const T* gh_in, int64_t stride_in, int64_t j_in)
      : gx(gx_in), gh(gh_in), stride(stride_in), j(j_in) {}

  // Inputs: the pre-activations X (gx) and R (gh), gate g of unit j at [g · stride + j]; the states.
  const T* gx;
  const T* gh;
  int64_t stride;
  int64_t j;
  T h_prev = T(0);
  T c_prev = T(0);  // cells with kHasCellState
  // Outputs: the cell's output (h, or m before a projection), the new cell state, and the saved
  // buffers (block g of buffer k at saved[k][g · stride + j]; null: not saved).
  T h = T(0);
  T c = T(0);
  T* saved[kMaxCellSaved] = {};

  TF_RNN_HOST_DEVICE T X(int g) const { return gx[g * stride + j]; }
  TF_RNN_HOST_DEVICE T R(int g) const { return gh[g * stride + j]; }
  TF_RNN_HOST_DEVICE T HPrev() const { return h_prev; }
  TF_RNN_HOST_DEVICE T CPrev() const { return c_prev; }
  TF_RNN_HOST_DEVICE void SetH(T v) { h = v; }
  TF_RNN_HOST_DEVICE void SetC(T v) { c = v; }
  TF_RNN_HOST_DEVICE void Save(int k, int g, T v) {
    if (saved[k] != nullptr) saved[k][g * stride + j] = v;
  }
};

template <typename T>
struct UnitBackwardIo {
  using Value = T;
  TF_RNN_HOST_DEVICE UnitBackwardIo(int64_t stride_in, int64_t j_in) : stride(stride_in), j(j_in) {}

  int64_t stride;
  int64_t j;
  // Inputs: the saved buffers (as UnitForwardIo wrote them), the states before the step, the grad
  // of the cell's output and (cells with kHasCellState) of c after the step.
  const T* saved[kMaxCellSaved] = {};
  T h_prev = T(0);
  T c_prev = T(0);
  T dh = T(0);
  T dc = T(0);
  // Outputs: the grads of X (dx) and, for cells with kDistinctRecurrentGrad, of R (dr), gate g at
  // [g · stride + j]; the grad of c_prev; the direct part of the grad of h_prev (kDirectHPrevGrad;
  // the rest comes from the product with R).
  T* dx = nullptr;
  T* dr = nullptr;
  T dc_prev = T(0);
  T dh_direct = T(0);

  TF_RNN_HOST_DEVICE T Saved(int k, int g) const { return saved[k][g * stride + j]; }
  TF_RNN_HOST_DEVICE T HPrev() const { return h_prev; }
  TF_RNN_HOST_DEVICE T CPrev() const { return c_prev; }
  TF_RNN_HOST_DEVICE T Dh() const { return dh; }
  TF_RNN_HOST_DEVICE T Dc() const { return dc; }
  TF_RNN_HOST_DEVICE void SetDx(int g, T v) { dx[g * stride + j] = v; }
  TF_RNN_HOST_DEVICE void SetDr(int g, T v) { dr[g * stride + j] = v; }
  TF_RNN_HOST_DEVICE void SetDcPrev(T v) { dc_prev = v; }
  TF_RNN_HOST_DEVICE void SetDhDirect(T v) { dh_direct = v; }
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CELLS_UNIT_IO_H_
