// The math of the GRU block cell (SPEC.md §3), as device-templated functors in the style of
// TensorFlow's core/kernels/rnn/gru_ops.h.
//
//   Forward:   [r_bar, u_bar] = [x, h_prev] . w_ru + b_ru;  r = sigmoid(r_bar);  u = sigmoid(u_bar)
//              c = tanh([x, h_prev * r] . w_c + b_c);       h = u * h_prev + (1 - u) * c
//   Backward:  d_c_bar = d_h * (1 - u) * (1 - c * c);  d_u_bar = d_h * (h_prev - c) * u * (1 - u)
//              [d_x_c, d_h_prevr] = d_c_bar . w_c^T;   d_r_bar = d_h_prevr * h_prev * r * (1 - r)
//              [d_x_ru, d_h_prev_ru] = [d_r_bar, d_u_bar] . w_ru^T
//              d_x = d_x_ru + d_x_c;  d_h_prev = d_h_prev_ru + d_h_prevr * r + d_h * u
//
// The element-wise math lives in the small TF_RNN_OPS_HOST_DEVICE functions of namespace
// tf_rnn_ops::gru, so that a CUDA build can reuse them in its kernels (the CPU code takes the
// sigmoid and tanh from Eigen's vectorized implementations instead of gru::Sigmoid / gru::Tanh).
// The functors are declared for any Device; the CPU (Eigen::ThreadPoolDevice) specialization
// below runs the matrix products as Eigen tensor contractions and the element-wise loops with
// parallelFor, both on TensorFlow's intra-op thread pool. It is defined for float and double;
// the kernels compute half and bfloat16 in float. Define EIGEN_USE_THREADS before including this
// header (as TensorFlow's kernels do).

#ifndef TF_RNN_OPS_CC_KERNELS_GRU_BLOCK_CELL_FUNCTOR_H_
#define TF_RNN_OPS_CC_KERNELS_GRU_BLOCK_CELL_FUNCTOR_H_

#include <math.h>

#include <cstdint>
#include <cstring>

#include "Eigen/Core"
#include "cc/kernels/kernel_util.h"  // GRUBlockCellSizes
#include "tensorflow/core/framework/tensor_types.h"
#include "unsupported/Eigen/CXX11/Tensor"

#ifndef TF_RNN_OPS_HOST_DEVICE
#if defined(__CUDACC__) || defined(__HIPCC__)
#define TF_RNN_OPS_HOST_DEVICE __host__ __device__
#else
#define TF_RNN_OPS_HOST_DEVICE
#endif
#endif

namespace tf_rnn_ops {
namespace gru {

// ------------------------------------------------------------------------------ element-wise math

TF_RNN_OPS_HOST_DEVICE inline float Exp(float x) { return ::expf(x); }
TF_RNN_OPS_HOST_DEVICE inline double Exp(double x) { return ::exp(x); }
TF_RNN_OPS_HOST_DEVICE inline float Tanh(float x) { return ::tanhf(x); }
TF_RNN_OPS_HOST_DEVICE inline double Tanh(double x) { return ::tanh(x); }

// The logistic sigmoid, without overflow for large |x|.
template <typename T>
TF_RNN_OPS_HOST_DEVICE inline T Sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + Exp(-x));
  const T e = Exp(x);
  return e / (T(1) + e);
}

// h = u * h_prev + (1 - u) * c
template <typename T>
TF_RNN_OPS_HOST_DEVICE inline T Hidden(T u, T h_prev, T c) {
  return u * h_prev + (T(1) - u) * c;
}

// d_c_bar = d_h * (1 - u) * (1 - c * c)   (tanh' = 1 - c^2)
template <typename T>
TF_RNN_OPS_HOST_DEVICE inline T DCBar(T d_h, T u, T c) {
  return d_h * (T(1) - u) * (T(1) - c * c);
}

// d_u_bar = d_h * (h_prev - c) * u * (1 - u)   (sigmoid' = u (1 - u))
template <typename T>
TF_RNN_OPS_HOST_DEVICE inline T DUBar(T d_h, T h_prev, T c, T u) {
  return d_h * (h_prev - c) * u * (T(1) - u);
}

// d_r_bar = d_h_prevr * h_prev * r * (1 - r)
template <typename T>
TF_RNN_OPS_HOST_DEVICE inline T DRBar(T d_h_prevr, T h_prev, T r) {
  return d_h_prevr * h_prev * r * (T(1) - r);
}

// d_h_prev = d_h_prev_ru + d_h_prevr * r + d_h * u
template <typename T>
TF_RNN_OPS_HOST_DEVICE inline T DHPrev(T d_h_prev_ru, T d_h_prevr, T r, T d_h, T u) {
  return d_h_prev_ru + d_h_prevr * r + d_h * u;
}

}  // namespace gru

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

// A row of n contiguous values as an Eigen array, for Eigen's vectorized sigmoid (logistic) and
// tanh: the same functions as gru::Sigmoid / gru::Tanh, and the ones TensorFlow's kernel uses.
template <typename T>
using Row = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstRow = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

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
      cpu_detail::Row<T>(&r(b, 0), H) =
          (cpu_detail::ConstRow<T>(ru, H) + cpu_detail::ConstRow<T>(b_ru_p, H)).logistic();
      cpu_detail::Row<T>(&u(b, 0), H) =
          (cpu_detail::ConstRow<T>(ru + H, H) + cpu_detail::ConstRow<T>(b_ru_p + H, H)).logistic();
    });

    // x_h_prevr = [x, h_prev * r]
    cpu_detail::ForEachRow(d, B, K, 3 * sizeof(T), 1, [&](Index b) {
      if (I > 0) std::memcpy(&x_h_prevr(b, 0), &x(b, 0), I * sizeof(T));
      const T* hp = &h_prev(b, 0);
      const T* r_row = &r(b, 0);
      T* out = &x_h_prevr(b, I);
      for (Index j = 0; j < H; ++j) out[j] = hp[j] * r_row[j];
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
      cpu_detail::Row<T>(c_row, H) =
          (cpu_detail::Row<T>(c_row, H) + cpu_detail::ConstRow<T>(b_c_p, H)).tanh();
      for (Index j = 0; j < H; ++j) h_row[j] = gru::Hidden<T>(u_row[j], hp[j], c_row[j]);
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
        dcb[j] = gru::DCBar<T>(dh[j], u_row[j], c_row[j]);
        dub[j] = gru::DUBar<T>(dh[j], hp[j], c_row[j], u_row[j]);
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
      for (Index j = 0; j < H; ++j) drb[j] = gru::DRBar<T>(dhr[j], hp[j], r_row[j]);
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
        dhp[j] = gru::DHPrev<T>(p_ru[I + j], p_c[I + j], r_row[j], dh[j], u_row[j]);
      }
    });
  }
};

#endif  // EIGEN_USE_THREADS

}  // namespace functor
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_GRU_BLOCK_CELL_FUNCTOR_H_
