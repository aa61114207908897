// The GRU block cell (docs/MATH.md, "GRU block cell") as device-templated functors in the style of
// TensorFlow's core/kernels/rnn/gru_ops.h: the matrix products here, the element-wise math from its
// one definition, cc/cells/gru_block_cell.h (which the CUDA kernels use too).
//
// The functors are declared for any Device; the CPU (Eigen::ThreadPoolDevice) specialization
// below runs the matrix products as Eigen tensor contractions and the element-wise loops with
// parallelFor, both on TensorFlow's intra-op thread pool; the gates' sigmoid and tanh run on SIMD
// vectors of a row (cpu_cell_io.h's CpuVec: Eigen's vectorized logistic and tanh, the functions
// TensorFlow's kernel uses). It is defined for float and double; the kernels compute half and
// bfloat16 in float. Define EIGEN_USE_THREADS before including this header (as TensorFlow's kernels
// do).

#ifndef TF_RNN_OPS_CC_KERNELS_GRU_BLOCK_CELL_FUNCTOR_H_
#define TF_RNN_OPS_CC_KERNELS_GRU_BLOCK_CELL_FUNCTOR_H_

#include <cstdint>
#include <cstring>

#include "Eigen/Core"
#include "cc/cells/gru_block_cell.h"
#include "cc/kernels/cpu_cell_io.h"
#include "cc/kernels/kernel_util.h"  // GRUBlockCellSizes
#include "tensorflow/core/framework/tensor_types.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_rnn_ops {
namespace functor {

namespace TT = ::tensorflow;

// Forward. Scratch: x_h_prev and x_h_prevr [B, I+H], r_u_bar [B, 2H].
template <typename Device, typename T>
struct GRUBlockCellFprop {
  void operator()(TT::OpKernelContext* ctx, const Device& d, const GRUBlockCellSizes& s,
                  typename TT::TTypes<T>::ConstMatrix x, typename TT::TTypes<T>::ConstMatrix h_prev,
                  typename TT::TTypes<T>::ConstMatrix w_ru, typename TT::TTypes<T>::ConstMatrix w_c,
                  typename TT::TTypes<T>::ConstVec b_ru, typename TT::TTypes<T>::ConstVec b_c,
                  typename TT::TTypes<T>::Matrix r, typename TT::TTypes<T>::Matrix u,
                  typename TT::TTypes<T>::Matrix c, typename TT::TTypes<T>::Matrix h,
                  typename TT::TTypes<T>::Matrix x_h_prev, typename TT::TTypes<T>::Matrix x_h_prevr,
                  typename TT::TTypes<T>::Matrix r_u_bar);
};

// Backward for a gradient d_h at h. Scratch: d_x_c_h_prevr and d_x_ru_h_prev_ru [B, I+H].
template <typename Device, typename T>
struct GRUBlockCellBprop {
  void operator()(TT::OpKernelContext* ctx, const Device& d, const GRUBlockCellSizes& s,
                  typename TT::TTypes<T>::ConstMatrix x, typename TT::TTypes<T>::ConstMatrix h_prev,
                  typename TT::TTypes<T>::ConstMatrix w_ru, typename TT::TTypes<T>::ConstMatrix w_c,
                  typename TT::TTypes<T>::ConstMatrix r, typename TT::TTypes<T>::ConstMatrix u,
                  typename TT::TTypes<T>::ConstMatrix c, typename TT::TTypes<T>::ConstMatrix d_h,
                  typename TT::TTypes<T>::Matrix d_x, typename TT::TTypes<T>::Matrix d_h_prev,
                  typename TT::TTypes<T>::Matrix d_c_bar,
                  typename TT::TTypes<T>::Matrix d_r_bar_u_bar,
                  typename TT::TTypes<T>::Matrix d_x_c_h_prevr,
                  typename TT::TTypes<T>::Matrix d_x_ru_h_prev_ru);
};

#if defined(EIGEN_USE_THREADS)

namespace cpu_detail {

using Index = Eigen::Index;

// out [m, n] = a [m, k] . b [k, n]   (or . b^T when b is [n, k] and transpose_b).
template <typename T, typename A, typename B, typename Out>
void MatMul(const Eigen::ThreadPoolDevice& d, const A& a, const B& b, bool transpose_b, Out out) {
  const Eigen::array<Eigen::IndexPair<Index>, 1> dims = {
      Eigen::IndexPair<Index>(1, transpose_b ? 1 : 0)};
  out.device(d) = a.contract(b, dims);
}

// Runs body(row) for every row in [0, rows) on the pool; per_row_cycles estimates the work.
template <typename Body>
void ForEachRow(const Eigen::ThreadPoolDevice& d, Index rows, Index cols, double bytes_per_elem,
                double cycles_per_elem, Body body) {
  const Eigen::TensorOpCost cost(bytes_per_elem * cols, static_cast<double>(sizeof(float)) * cols,
                                 cycles_per_elem * cols);
  d.parallelFor(rows, cost, [&body](Index first, Index last) {
    for (Index row = first; row < last; ++row) body(row);
  });
}

}  // namespace cpu_detail

template <typename T>
struct GRUBlockCellFprop<Eigen::ThreadPoolDevice, T> {
  void operator()(TT::OpKernelContext* /*ctx*/, const Eigen::ThreadPoolDevice& d,
                  const GRUBlockCellSizes& s, typename TT::TTypes<T>::ConstMatrix x,
                  typename TT::TTypes<T>::ConstMatrix h_prev,
                  typename TT::TTypes<T>::ConstMatrix w_ru, typename TT::TTypes<T>::ConstMatrix w_c,
                  typename TT::TTypes<T>::ConstVec b_ru, typename TT::TTypes<T>::ConstVec b_c,
                  typename TT::TTypes<T>::Matrix r, typename TT::TTypes<T>::Matrix u,
                  typename TT::TTypes<T>::Matrix c, typename TT::TTypes<T>::Matrix h,
                  typename TT::TTypes<T>::Matrix x_h_prev, typename TT::TTypes<T>::Matrix x_h_prevr,
                  typename TT::TTypes<T>::Matrix r_u_bar) {
    using cpu_detail::Index;
    const Index B = s.batch, I = s.input, H = s.cell, K = I + H;
    if (B == 0 || H == 0) return;  // every output is empty

    // x_h_prev = [x, h_prev]
    cpu_detail::ForEachRow(d, B, K, 2 * sizeof(T), 1, [&](Index b) {
      if (I > 0) std::memcpy(&x_h_prev(b, 0), &x(b, 0), I * sizeof(T));
      std::memcpy(&x_h_prev(b, I), &h_prev(b, 0), H * sizeof(T));
    });

    // r_u_bar = [x, h_prev] . w_ru;  then r = sigmoid(r_bar + b_r), u = sigmoid(u_bar + b_u)
    cpu_detail::MatMul<T>(d, typename TT::TTypes<T>::ConstMatrix(x_h_prev.data(), B, K), w_ru,
                          false, r_u_bar);
    const T* b_ru_p = b_ru.data();
    cpu_detail::ForEachRow(d, B, 2 * H, 3 * sizeof(T), 30, [&](Index b) {
      const T* ru = &r_u_bar(b, 0);
      T* r_row = &r(b, 0);
      T* u_row = &u(b, 0);
      ForEachPacket<T>(H, [&](Index j, int m, auto tag) {
        using V = CpuVec<T, typename decltype(tag)::type>;
        GruBlockCell::Gate(V::Load(ru + j, m) + V::Load(b_ru_p + j, m)).Store(r_row + j, m);
        GruBlockCell::Gate(V::Load(ru + H + j, m) + V::Load(b_ru_p + H + j, m)).Store(u_row + j, m);
      });
    });

    // x_h_prevr = [x, h_prev * r]
    cpu_detail::ForEachRow(d, B, K, 3 * sizeof(T), 1, [&](Index b) {
      if (I > 0) std::memcpy(&x_h_prevr(b, 0), &x(b, 0), I * sizeof(T));
      const T* hp = &h_prev(b, 0);
      const T* r_row = &r(b, 0);
      T* out = &x_h_prevr(b, I);
      for (Index j = 0; j < H; ++j) out[j] = GruBlockCell::ResetHPrev<T>(hp[j], r_row[j]);
    });

    // c = tanh([x, h_prev * r] . w_c + b_c);  h = u * h_prev + (1 - u) * c
    cpu_detail::MatMul<T>(d, typename TT::TTypes<T>::ConstMatrix(x_h_prevr.data(), B, K), w_c,
                          false, c);
    const T* b_c_p = b_c.data();
    cpu_detail::ForEachRow(d, B, H, 4 * sizeof(T), 30, [&](Index b) {
      T* c_row = &c(b, 0);
      T* h_row = &h(b, 0);
      const T* u_row = &u(b, 0);
      const T* hp = &h_prev(b, 0);
      ForEachPacket<T>(H, [&](Index j, int m, auto tag) {
        using V = CpuVec<T, typename decltype(tag)::type>;
        GruBlockCell::Candidate(V::Load(c_row + j, m) + V::Load(b_c_p + j, m)).Store(c_row + j, m);
      });
      for (Index j = 0; j < H; ++j) h_row[j] = GruBlockCell::Hidden<T>(u_row[j], hp[j], c_row[j]);
    });
  }
};

template <typename T>
struct GRUBlockCellBprop<Eigen::ThreadPoolDevice, T> {
  void operator()(TT::OpKernelContext* /*ctx*/, const Eigen::ThreadPoolDevice& d,
                  const GRUBlockCellSizes& s, typename TT::TTypes<T>::ConstMatrix x,
                  typename TT::TTypes<T>::ConstMatrix h_prev,
                  typename TT::TTypes<T>::ConstMatrix w_ru, typename TT::TTypes<T>::ConstMatrix w_c,
                  typename TT::TTypes<T>::ConstMatrix r, typename TT::TTypes<T>::ConstMatrix u,
                  typename TT::TTypes<T>::ConstMatrix c, typename TT::TTypes<T>::ConstMatrix d_h,
                  typename TT::TTypes<T>::Matrix d_x, typename TT::TTypes<T>::Matrix d_h_prev,
                  typename TT::TTypes<T>::Matrix d_c_bar,
                  typename TT::TTypes<T>::Matrix d_r_bar_u_bar,
                  typename TT::TTypes<T>::Matrix d_x_c_h_prevr,
                  typename TT::TTypes<T>::Matrix d_x_ru_h_prev_ru) {
    using cpu_detail::Index;
    const Index B = s.batch, I = s.input, H = s.cell, K = I + H;
    if (B == 0) return;  // every output is empty
    if (H == 0) {        // d_x sums over an empty dimension; the other outputs are empty
      if (I > 0) d_x.device(d) = d_x.constant(T(0));
      return;
    }

    // d_c_bar = d_h (1 - u) (1 - c^2);  d_u_bar = d_h (h_prev - c) u (1 - u)
    cpu_detail::ForEachRow(d, B, H, 6 * sizeof(T), 8, [&](Index b) {
      const T* dh = &d_h(b, 0);
      const T* u_row = &u(b, 0);
      const T* c_row = &c(b, 0);
      const T* hp = &h_prev(b, 0);
      T* dcb = &d_c_bar(b, 0);
      T* dub = &d_r_bar_u_bar(b, H);
      for (Index j = 0; j < H; ++j) {
        dcb[j] = GruBlockCell::DCBar<T>(dh[j], u_row[j], c_row[j]);
        dub[j] = GruBlockCell::DUBar<T>(dh[j], hp[j], c_row[j], u_row[j]);
      }
    });

    // [d_x_c, d_h_prevr] = d_c_bar . w_c^T
    cpu_detail::MatMul<T>(d, typename TT::TTypes<T>::ConstMatrix(d_c_bar.data(), B, H), w_c, true,
                          d_x_c_h_prevr);

    // d_r_bar = d_h_prevr h_prev r (1 - r)
    cpu_detail::ForEachRow(d, B, H, 4 * sizeof(T), 4, [&](Index b) {
      const T* dhr = &d_x_c_h_prevr(b, I);
      const T* hp = &h_prev(b, 0);
      const T* r_row = &r(b, 0);
      T* drb = &d_r_bar_u_bar(b, 0);
      for (Index j = 0; j < H; ++j) drb[j] = GruBlockCell::DRBar<T>(dhr[j], hp[j], r_row[j]);
    });

    // [d_x_ru, d_h_prev_ru] = [d_r_bar, d_u_bar] . w_ru^T
    cpu_detail::MatMul<T>(d, typename TT::TTypes<T>::ConstMatrix(d_r_bar_u_bar.data(), B, 2 * H),
                          w_ru, true, d_x_ru_h_prev_ru);

    // d_x = d_x_ru + d_x_c;  d_h_prev = d_h_prev_ru + d_h_prevr r + d_h u
    cpu_detail::ForEachRow(d, B, K, 4 * sizeof(T), 3, [&](Index b) {
      const T* p_ru = &d_x_ru_h_prev_ru(b, 0);
      const T* p_c = &d_x_c_h_prevr(b, 0);
      T* dx = (I > 0) ? &d_x(b, 0) : nullptr;
      for (Index i = 0; i < I; ++i) dx[i] = p_ru[i] + p_c[i];
      const T* r_row = &r(b, 0);
      const T* u_row = &u(b, 0);
      const T* dh = &d_h(b, 0);
      T* dhp = &d_h_prev(b, 0);
      for (Index j = 0; j < H; ++j) {
        dhp[j] = GruBlockCell::DHPrev<T>(p_ru[I + j], p_c[I + j], r_row[j], dh[j], u_row[j]);
      }
    });
  }
};

#endif  // EIGEN_USE_THREADS

}  // namespace functor
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_GRU_BLOCK_CELL_FUNCTOR_H_
