// Transition shim: the per-unit entry points the CUDA kernels called before the cells moved to
// cc/cells/ (rnn_cells.h defines each cell once; unit_io.h runs one unit of it). Each wrapper below
// only forwards to its cell; delete this header once cc/cuda/ calls the cells directly.
#ifndef TF_RNN_OPS_CC_KERNELS_RNN_CELL_MATH_H_
#define TF_RNN_OPS_CC_KERNELS_RNN_CELL_MATH_H_

#include <cstdint>

#include "cc/cells/cell_math.h"
#include "cc/cells/rnn_cells.h"
#include "cc/cells/unit_io.h"

namespace tf_rnn_ops {

// Simple RNN, unit j: returns h; `act_out` (may be null) receives the saved activation.
template <typename T, bool kRelu>
struct SimpleRnnCellMath {
  static constexpr int kGates = 1;
  TF_RNN_HOST_DEVICE static T Forward(const T* gx, const T* gh, int64_t j, T* act_out) {
    UnitForwardIo<T> io(gx, gh, 0, j);
    io.saved[SimpleRnnCell<kRelu>::kAct] = act_out;
    SimpleRnnCell<kRelu>::Forward(io);
    return io.h;
  }
  TF_RNN_HOST_DEVICE static T Backward(const T* act, int64_t j, T dh) {
    T d_pre[1];
    UnitBackwardIo<T> io(0, 0);
    io.saved[SimpleRnnCell<kRelu>::kAct] = act + j;
    io.dh = dh;
    io.dx = d_pre;
    SimpleRnnCell<kRelu>::Backward(io);
    return d_pre[0];
  }
};

// LSTM, unit j of gates H apart: act_out (may be null) receives i, f, g, o; c_out and m_out c and m.
template <typename T>
struct LstmCellMath {
  static constexpr int kGates = 4;
  TF_RNN_HOST_DEVICE static void Forward(const T* gx, const T* gh, int64_t H, int64_t j, T c_prev,
                                         T* act_out, T* c_out, T* m_out) {
    UnitForwardIo<T> io(gx, gh, H, j);
    io.c_prev = c_prev;
    io.saved[LstmCell::kAct] = act_out;
    LstmCell::Forward(io);
    *c_out = io.c;
    *m_out = io.h;
  }
  // Writes the four pre-activation grads to d_pre and returns the grad of c_prev.
  TF_RNN_HOST_DEVICE static T Backward(const T* act, int64_t H, int64_t j, T c, T c_prev, T dm,
                                       T dc, T* d_pre) {
    T a[4] = {act[j], act[H + j], act[2 * H + j], act[3 * H + j]}, d[4];
    UnitBackwardIo<T> io(1, 0);  // this unit's values, gate g at [g]
    io.saved[LstmCell::kAct] = a;
    io.saved[LstmCell::kC] = &c;
    io.c_prev = c_prev;
    io.dh = dm;
    io.dc = dc;
    io.dx = d;
    LstmCell::Backward(io);
    for (int g = 0; g < 4; ++g) d_pre[g * H + j] = d[g];
    return io.dc_prev;
  }
};

// GRU, unit j of gates H apart: returns h; act_out (may be null) receives r, z, n and ghn_out[j]
// the recurrent part of the candidate.
template <typename T>
struct GruCellMath {
  static constexpr int kGates = 3;
  TF_RNN_HOST_DEVICE static T Forward(const T* gx, const T* gh, int64_t H, int64_t j, T h_prev,
                                      T* act_out, T* ghn_out) {
    UnitForwardIo<T> io(gx, gh, H, j);
    io.h_prev = h_prev;
    io.saved[GruCell::kAct] = act_out;
    io.saved[GruCell::kGhn] = act_out != nullptr ? ghn_out : nullptr;
    GruCell::Forward(io);
    return io.h;
  }
  // Writes the grads of gx (d_gx) and gh (d_gh) and returns the direct part of the grad of h_prev.
  TF_RNN_HOST_DEVICE static T Backward(const T* act, const T* ghn, int64_t H, int64_t j, T h_prev,
                                       T dh, T* d_gx, T* d_gh) {
    UnitBackwardIo<T> io(H, j);
    io.saved[GruCell::kAct] = act;
    io.saved[GruCell::kGhn] = ghn;
    io.h_prev = h_prev;
    io.dh = dh;
    io.dx = d_gx;
    io.dr = d_gh;
    GruCell::Backward(io);
    return io.dh_direct;
  }
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_RNN_CELL_MATH_H_
