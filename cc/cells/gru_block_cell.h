// The element-wise math of the GRU block cell (TensorFlow's GRUBlockCell; docs/MATH.md, "GRU block
// cell"), defined once for the CPU functor (cc/kernels/gru_block_cell_functor.h) and the CUDA
// kernels. Framework-free; every function is TF_RNN_HOST_DEVICE and a template over the value type V
// (T for one element; a CPU vector of consecutive elements, see cc/kernels/cpu_cell_io.h).
//
//   Forward:   [r_bar, u_bar] = [x, h_prev] . w_ru + b_ru;  r = sigmoid(r_bar);  u = sigmoid(u_bar)
//              c = tanh([x, h_prev * r] . w_c + b_c);       h = u * h_prev + (1 - u) * c
//   Backward:  d_c_bar = d_h * (1 - u) * (1 - c * c);  d_u_bar = d_h * (h_prev - c) * u * (1 - u)
//              [d_x_c, d_h_prevr] = d_c_bar . w_c^T;   d_r_bar = d_h_prevr * h_prev * r * (1 - r)
//              [d_x_ru, d_h_prev_ru] = [d_r_bar, d_u_bar] . w_ru^T
//              d_x = d_x_ru + d_x_c;  d_h_prev = d_h_prev_ru + d_h_prevr * r + d_h * u
// (Unlike the fused gru cell of rnn_cells.h, the reset gate applies before the candidate's product,
// and the gate order is [r, u].)
#ifndef TF_RNN_OPS_CC_CELLS_GRU_BLOCK_CELL_H_
#define TF_RNN_OPS_CC_CELLS_GRU_BLOCK_CELL_H_

#include "cc/cells/cell_math.h"

namespace tf_rnn_ops {

struct GruBlockCell {
  static constexpr int kGates = 3;  // r, u, c

  // r = σ(r_bar + b_r), u = σ(u_bar + b_u).
  template <typename V>
  TF_RNN_HOST_DEVICE static V Gate(V pre) {
    return Sigmoid(pre);
  }
  // c = tanh(c_bar + b_c).
  template <typename V>
  TF_RNN_HOST_DEVICE static V Candidate(V pre) {
    return Tanh(pre);
  }
  // The input of the candidate's product from h_prev: h_prev * r.
  template <typename V>
  TF_RNN_HOST_DEVICE static V ResetHPrev(V h_prev, V r) {
    return h_prev * r;
  }
  // h = u * h_prev + (1 - u) * c.
  template <typename V>
  TF_RNN_HOST_DEVICE static V Hidden(V u, V h_prev, V c) {
    return u * h_prev + (V(1) - u) * c;
  }
  // d_c_bar = d_h * (1 - u) * (1 - c * c)   (tanh' = 1 - c^2).
  template <typename V>
  TF_RNN_HOST_DEVICE static V DCBar(V d_h, V u, V c) {
    return d_h * (V(1) - u) * (V(1) - c * c);
  }
  // d_u_bar = d_h * (h_prev - c) * u * (1 - u)   (sigmoid' = u (1 - u)).
  template <typename V>
  TF_RNN_HOST_DEVICE static V DUBar(V d_h, V h_prev, V c, V u) {
    return d_h * (h_prev - c) * u * (V(1) - u);
  }
  // d_r_bar = d_h_prevr * h_prev * r * (1 - r).
  template <typename V>
  TF_RNN_HOST_DEVICE static V DRBar(V d_h_prevr, V h_prev, V r) {
    return d_h_prevr * h_prev * r * (V(1) - r);
  }
  // d_h_prev = d_h_prev_ru + d_h_prevr * r + d_h * u.
  template <typename V>
  TF_RNN_HOST_DEVICE static V DHPrev(V d_h_prev_ru, V d_h_prevr, V r, V d_h, V u) {
    return d_h_prev_ru + d_h_prevr * r + d_h * u;
  }
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CELLS_GRU_BLOCK_CELL_H_
