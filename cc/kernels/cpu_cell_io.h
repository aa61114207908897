// The CPU ios of the cells (cc/cells/): a cell's element-wise step over a whole batch row, run on
// SIMD vectors of consecutive units (Eigen's packets: 8 floats or 4 doubles with AVX) with the same
// vectorized exp/tanh/logistic as Eigen's array expressions. The cell's equations come from
// cc/cells/rnn_cells.h; this header only supplies the value type (CpuVec) and where each value is
// read or written (CpuCellRow, CpuCellGradRow).
#ifndef TF_RNN_OPS_CC_KERNELS_CPU_CELL_IO_H_
#define TF_RNN_OPS_CC_KERNELS_CPU_CELL_IO_H_

#include <algorithm>
#include <cstdint>

#include "Eigen/Core"
#include "cc/cells/cell_math.h"
#include "cc/cells/rnn_cells.h"

namespace tf_rnn_ops {

// kSize consecutive values of T in one SIMD register, with the arithmetic and the activations the
// cells use.
template <typename T>
struct CpuVec {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  static constexpr int kSize = Eigen::internal::unpacket_traits<Packet>::size;
  static_assert(
      kSize > 1 &&
          Eigen::internal::functor_traits<Eigen::internal::scalar_logistic_op<T>>::PacketAccess &&
          Eigen::internal::functor_traits<Eigen::internal::scalar_tanh_op<T>>::PacketAccess,
      "CpuVec needs vectorized logistic and tanh");
  Packet p;

  CpuVec() = default;
  CpuVec(T x) : p(Eigen::internal::pset1<Packet>(x)) {}  // NOLINT: V(1) in the cells
  explicit CpuVec(const Packet& q) : p(q) {}

  // n = kSize: a whole vector; n < kSize: the first n values (the others zero, never stored).
  static CpuVec Load(const T* from, int n) {
    return CpuVec(n == kSize ? Eigen::internal::ploadu<Packet>(from)
                             : Eigen::internal::ploadu_partial<Packet>(from, n));
  }
  void Store(T* to, int n) const {
    if (n == kSize) {
      Eigen::internal::pstoreu(to, p);
    } else {
      Eigen::internal::pstoreu_partial(to, p, n);
    }
  }

  friend CpuVec operator+(const CpuVec& a, const CpuVec& b) {
    return CpuVec(Eigen::internal::padd(a.p, b.p));
  }
  friend CpuVec operator-(const CpuVec& a, const CpuVec& b) {
    return CpuVec(Eigen::internal::psub(a.p, b.p));
  }
  friend CpuVec operator*(const CpuVec& a, const CpuVec& b) {
    return CpuVec(Eigen::internal::pmul(a.p, b.p));
  }
};

template <typename T>
inline CpuVec<T> Sigmoid(const CpuVec<T>& x) {
  return CpuVec<T>(Eigen::internal::scalar_logistic_op<T>().packetOp(x.p));
}
template <typename T>
inline CpuVec<T> Tanh(const CpuVec<T>& x) {
  return CpuVec<T>(Eigen::internal::scalar_tanh_op<T>().packetOp(x.p));
}
template <typename T>
inline CpuVec<T> Relu(const CpuVec<T>& x) {
  return CpuVec<T>(Eigen::internal::pmax(x.p, Eigen::internal::pzero(x.p)));
}
template <typename T>
inline CpuVec<T> ReluGrad(const CpuVec<T>& y, const CpuVec<T>& dy) {
  using Eigen::internal::pand;
  using Eigen::internal::pcmp_lt;
  return CpuVec<T>(pand(pcmp_lt(Eigen::internal::pzero(y.p), y.p), dy.p));
}

// ------------------------------------------------------------------------------------- forward
// One batch row of a step: each gate H apart; X = gx + b_w, R = gh + b_r; h_prev, c_prev, h and c
// [H] (c_prev and c only for cells with a cell state); saved[k]: the row of the cell's buffer k
// (CellBuffer::Width(H) values). gx may be saved[0] itself (the driver computes X in place of the
// activations): rnn_cells.h's cells write act only where they have read X.
template <typename T>
struct CpuCellRow {
  int64_t H = 0;
  const T* gx = nullptr;
  // gx's gate g at gx + gx_gate_offset[g] (a given input side in Keras' gate order or gate-major
  // layout, read in place), or at gx + g·H where it is null.
  const int64_t* gx_gate_offset = nullptr;
  const T* b_w = nullptr;
  const T* gh = nullptr;
  const T* b_r = nullptr;
  const T* h_prev = nullptr;
  const T* c_prev = nullptr;
  T* h = nullptr;
  T* c = nullptr;
  T* saved[kMaxCellSaved] = {};
  T* rec_in = nullptr;  // cells with several products: [H_out] the next product's input
};

// The io of units [j, j + n) of a CpuCellRow (n <= CpuVec<T>::kSize); kSave false drops the saves.
// (The fused driver saves in inference too, to scratch: its training and inference outputs must be
// bitwise the same, and two instantiations may contract multiply-adds differently.)
template <typename T, bool kSave>
class CpuForwardIo {
 public:
  using Value = CpuVec<T>;
  CpuForwardIo(const CpuCellRow<T>& row, int64_t j, int n) : row_(row), j_(j), n_(n) {}

  Value X(int g) const {
    const Value x = row_.gx_gate_offset ? Value::Load(row_.gx + row_.gx_gate_offset[g] + j_, n_)
                                        : Load(row_.gx, g);
    return x + Load(row_.b_w, g);
  }
  Value R(int g) const { return Load(row_.gh, g) + Load(row_.b_r, g); }
  Value HPrev() const { return Load(row_.h_prev, 0); }
  Value CPrev() const { return Load(row_.c_prev, 0); }
  void SetH(const Value& v) { v.Store(row_.h + j_, n_); }
  void SetC(const Value& v) { v.Store(row_.c + j_, n_); }
  void Save(int k, int g, const Value& v) {
    if constexpr (kSave) v.Store(row_.saved[k] + g * row_.H + j_, n_);
  }
  // Cells with several products: what an earlier phase saved, and the next product's input.
  Value Saved(int k, int g) const { return Load(row_.saved[k], g); }
  void SetRecurrentInput(const Value& v) { v.Store(row_.rec_in + j_, n_); }

 private:
  Value Load(const T* p, int g) const { return Value::Load(p + g * row_.H + j_, n_); }
  const CpuCellRow<T>& row_;
  int64_t j_;
  int n_;
};

// Runs Cell::Forward over units [0, H) of one row.
template <typename Cell, bool kSave, typename T>
inline void CellForwardRow(const CpuCellRow<T>& row) {
  constexpr int L = CpuVec<T>::kSize;
  int64_t j = 0;
  for (; j + L <= row.H; j += L) {
    CpuForwardIo<T, kSave> io(row, j, L);
    Cell::Forward(io);
  }
  if (j < row.H) {
    CpuForwardIo<T, kSave> io(row, j, static_cast<int>(row.H - j));
    Cell::Forward(io);
  }
}

// Runs the cell's phase `phase` (Cell::ForwardPhase) over units [0, H) of one row: cells with
// several recurrent products (CellRecurrentProducts); one-product cells run Forward.
template <typename Cell, bool kSave, typename T>
inline void CellForwardPhaseRow(const CpuCellRow<T>& row, int phase) {
  if constexpr (CellRecurrentProducts<Cell>::value == 1) {
    CellForwardRow<Cell, kSave>(row);
  } else {
    WithPhase<Cell::kRecurrentProducts>(phase, [&](auto p) {
      constexpr int L = CpuVec<T>::kSize;
      for (int64_t j = 0; j < row.H; j += L) {
        CpuForwardIo<T, kSave> io(row, j, static_cast<int>(std::min<int64_t>(L, row.H - j)));
        Cell::template ForwardPhase<decltype(p)::value>(io);
      }
    });
  }
}

// ------------------------------------------------------------------------------------ backward
// One batch row of a step's backward: saved[k] the forward's saved rows; h_prev, c_prev [H] the
// states before the step; dh [H] the grad of the cell's output; dc [H] (cell state) the grad of c
// after the step, replaced by that of c_prev; dx, dr [G·H] the grads of X and (cells with
// kDistinctRecurrentGrad) R; dh_direct [H] (kDirectHPrevGrad) the direct part of dh_prev.
template <typename T>
struct CpuCellGradRow {
  int64_t H = 0;
  const T* saved[kMaxCellSaved] = {};
  const T* h_prev = nullptr;
  const T* c_prev = nullptr;
  const T* dh = nullptr;
  T* dc = nullptr;
  T* dx = nullptr;
  T* dr = nullptr;
  T* dh_direct = nullptr;
  const T* d_rec_in = nullptr;  // several products: [H_out] the grad of the next product's input
};

template <typename T>
class CpuBackwardIo {
 public:
  using Value = CpuVec<T>;
  CpuBackwardIo(const CpuCellGradRow<T>& row, int64_t j, int n) : row_(row), j_(j), n_(n) {}

  Value Saved(int k, int g) const { return Load(row_.saved[k], g); }
  Value HPrev() const { return Load(row_.h_prev, 0); }
  Value CPrev() const { return Load(row_.c_prev, 0); }
  Value Dh() const { return Load(row_.dh, 0); }
  Value Dc() const { return Load(row_.dc, 0); }
  void SetDx(int g, const Value& v) { v.Store(row_.dx + g * row_.H + j_, n_); }
  void SetDr(int g, const Value& v) { v.Store(row_.dr + g * row_.H + j_, n_); }
  void SetDcPrev(const Value& v) { v.Store(row_.dc + j_, n_); }
  void SetDhDirect(const Value& v) { v.Store(row_.dh_direct + j_, n_); }
  Value DRecurrentInput() const { return Load(row_.d_rec_in, 0); }

 private:
  Value Load(const T* p, int g) const { return Value::Load(p + g * row_.H + j_, n_); }
  const CpuCellGradRow<T>& row_;
  int64_t j_;
  int n_;
};

// Runs Cell::Backward over units [0, H) of one row.
template <typename Cell, typename T>
inline void CellBackwardRow(const CpuCellGradRow<T>& row) {
  constexpr int L = CpuVec<T>::kSize;
  int64_t j = 0;
  for (; j + L <= row.H; j += L) {
    CpuBackwardIo<T> io(row, j, L);
    Cell::Backward(io);
  }
  if (j < row.H) {
    CpuBackwardIo<T> io(row, j, static_cast<int>(row.H - j));
    Cell::Backward(io);
  }
}

// Runs the cell's backward phase `phase` (Cell::BackwardPhase; one-product cells: Backward) over
// units [0, H) of one row.
template <typename Cell, typename T>
inline void CellBackwardPhaseRow(const CpuCellGradRow<T>& row, int phase) {
  if constexpr (CellRecurrentProducts<Cell>::value == 1) {
    CellBackwardRow<Cell>(row);
  } else {
    WithPhase<Cell::kRecurrentProducts>(phase, [&](auto p) {
      constexpr int L = CpuVec<T>::kSize;
      for (int64_t j = 0; j < row.H; j += L) {
        CpuBackwardIo<T> io(row, j, static_cast<int>(std::min<int64_t>(L, row.H - j)));
        Cell::template BackwardPhase<decltype(p)::value>(io);
      }
    });
  }
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_CPU_CELL_IO_H_
