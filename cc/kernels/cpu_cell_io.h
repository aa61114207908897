// The CPU ios of the cells (cc/cells/): a cell's element-wise step over a whole batch row, run on
// SIMD vectors of consecutive units (Eigen's packets: 16 floats or 8 doubles with AVX-512, 8 or 4
// with AVX2; a row's last few units on the narrowest packet that holds them) with the same
// vectorized exp/tanh/logistic as Eigen's array expressions. The cell's equations come from
// cc/cells/rnn_cells.h; this header only supplies the value type (CpuVec) and where each value is
// read or written (CpuCellRow, CpuCellGradRow).
#ifndef TF_RNN_OPS_CC_KERNELS_CPU_CELL_IO_H_
#define TF_RNN_OPS_CC_KERNELS_CPU_CELL_IO_H_

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "Eigen/Core"
#include "cc/cells/cell_math.h"
#include "cc/cells/rnn_cells.h"

namespace tf_rnn_ops {

namespace cpu_vec_internal {
// What LoadFirst / StoreFirst dispatch on: T and the packet's width in bytes (std::is_same on the
// packet types drops their vector attributes, with a warning).
template <typename T, typename Packet>
struct PacketKind {
  static constexpr int kBytes = sizeof(Packet);
  static constexpr bool kFloat = std::is_same<T, float>::value;
  static constexpr bool kDouble = std::is_same<T, double>::value;
};
#if defined(__AVX2__) && !(defined(__AVX512F__) && defined(__AVX512VL__))
// AVX2's masks: lane i (of 32 or 64 bits) all ones where i < n.
inline __m256i FirstLanes32x8(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i FirstLanes64x4(int n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
inline __m128i FirstLanes32x4(int n) {
  return _mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(0, 1, 2, 3));
}
inline __m128i FirstLanes64x2(int n) {
  return _mm_cmpgt_epi64(_mm_set1_epi64x(n), _mm_set_epi64x(1, 0));
}
#endif

// The first n < size values of a packet from / to memory, the others zero. Eigen's ploadu_partial /
// pstoreu_partial have no x86 specializations: their generic forms copy the values one by one
// through a stack array and load / store it whole, and the load waits for the scalar stores it
// cannot forward from (a row's last, partial vector of every gate took most of a step's cell pass
// at H < 16; docs/PERFORMANCE.md item 110). Masked loads and stores, where the ISA has them; they
// touch no memory past n values.
template <typename Packet, typename T>
inline Packet LoadFirst(const T* from, int n) {
  using K [[maybe_unused]] = PacketKind<T, Packet>;
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const unsigned mask = (1u << n) - 1;
  if constexpr (K::kFloat && K::kBytes == 64) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>(mask), from);
  } else if constexpr (K::kDouble && K::kBytes == 64) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>(mask), from);
  } else if constexpr (K::kFloat && K::kBytes == 32) {
    return _mm256_maskz_loadu_ps(static_cast<__mmask8>(mask), from);
  } else if constexpr (K::kDouble && K::kBytes == 32) {
    return _mm256_maskz_loadu_pd(static_cast<__mmask8>(mask), from);
  } else if constexpr (K::kFloat && K::kBytes == 16) {
    return _mm_maskz_loadu_ps(static_cast<__mmask8>(mask), from);
  } else if constexpr (K::kDouble && K::kBytes == 16) {
    return _mm_maskz_loadu_pd(static_cast<__mmask8>(mask), from);
  }
#elif defined(__AVX2__)
  if constexpr (K::kFloat && K::kBytes == 32) {
    return _mm256_maskload_ps(from, FirstLanes32x8(n));
  } else if constexpr (K::kDouble && K::kBytes == 32) {
    return _mm256_maskload_pd(from, FirstLanes64x4(n));
  } else if constexpr (K::kFloat && K::kBytes == 16) {
    return _mm_maskload_ps(from, FirstLanes32x4(n));
  } else if constexpr (K::kDouble && K::kBytes == 16) {
    return _mm_maskload_pd(from, FirstLanes64x2(n));
  }
#endif
  return Eigen::internal::ploadu_partial<Packet>(from, n);
}
template <typename T, typename Packet>
inline void StoreFirst(T* to, const Packet& p, int n) {
  using K [[maybe_unused]] = PacketKind<T, Packet>;
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const unsigned mask = (1u << n) - 1;
  if constexpr (K::kFloat && K::kBytes == 64) {
    return _mm512_mask_storeu_ps(to, static_cast<__mmask16>(mask), p);
  } else if constexpr (K::kDouble && K::kBytes == 64) {
    return _mm512_mask_storeu_pd(to, static_cast<__mmask8>(mask), p);
  } else if constexpr (K::kFloat && K::kBytes == 32) {
    return _mm256_mask_storeu_ps(to, static_cast<__mmask8>(mask), p);
  } else if constexpr (K::kDouble && K::kBytes == 32) {
    return _mm256_mask_storeu_pd(to, static_cast<__mmask8>(mask), p);
  } else if constexpr (K::kFloat && K::kBytes == 16) {
    return _mm_mask_storeu_ps(to, static_cast<__mmask8>(mask), p);
  } else if constexpr (K::kDouble && K::kBytes == 16) {
    return _mm_mask_storeu_pd(to, static_cast<__mmask8>(mask), p);
  }
#elif defined(__AVX2__)
  if constexpr (K::kFloat && K::kBytes == 32) {
    return _mm256_maskstore_ps(to, FirstLanes32x8(n), p);
  } else if constexpr (K::kDouble && K::kBytes == 32) {
    return _mm256_maskstore_pd(to, FirstLanes64x4(n), p);
  } else if constexpr (K::kFloat && K::kBytes == 16) {
    return _mm_maskstore_ps(to, FirstLanes32x4(n), p);
  } else if constexpr (K::kDouble && K::kBytes == 16) {
    return _mm_maskstore_pd(to, FirstLanes64x2(n), p);
  }
#endif
  Eigen::internal::pstoreu_partial(to, p, n);
}
}  // namespace cpu_vec_internal

// The packet types of T: Full, the widest (Eigen's packet_traits), and the narrower ones that
// Eigen halves it into, down to 16 bytes.
template <typename T>
using FullPacket = typename Eigen::internal::packet_traits<T>::type;
template <typename Packet>
using HalfPacket = typename Eigen::internal::unpacket_traits<Packet>::half;
template <typename Packet>
constexpr int PacketSize() {
  return Eigen::internal::unpacket_traits<Packet>::size;
}
template <typename Packet>
struct PacketTag {
  using type = Packet;
};

// kSize consecutive values of T in one SIMD register (by default the widest; the narrower ones
// take a row's last few units, ForEachPacket), with the arithmetic and the activations the cells
// use.
template <typename T, typename P = FullPacket<T>>
struct CpuVec {
  using Packet = P;
  static constexpr int kSize = PacketSize<Packet>();
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
                             : cpu_vec_internal::LoadFirst<Packet>(from, n));
  }
  void Store(T* to, int n) const {
    if (n == kSize) {
      Eigen::internal::pstoreu(to, p);
    } else {
      cpu_vec_internal::StoreFirst(to, p, n);
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

// The last n < full size units of a row: f(PacketTag<P>{}) with P the narrowest packet of T that
// holds them. Rows narrower than a full vector (H < 16 floats with AVX-512) or their last few units
// run on xmm / ymm registers: with the full width, each row's activations cost as many cycles (a
// zmm division in tanh: ~16) for 4 units as for 16 (docs/PERFORMANCE.md item 110).
template <typename Packet, typename F>
inline void WithTailPacket(int n, F&& f) {
  using Half = HalfPacket<Packet>;
  if constexpr (PacketSize<Half>() < PacketSize<Packet>()) {
    if (n <= PacketSize<Half>()) return WithTailPacket<Half>(n, f);
  }
  f(PacketTag<Packet>{});
}

// (Eigen's packets as template arguments lose their may_alias attribute, with a warning at
// -Wall; nothing here aliases through them. Eigen's own headers silence the same warning.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
// f(j, n, PacketTag<P>{}) over the units [0, H) of a row: n = the full size from j = 0, the rest in
// the narrowest packet that holds it (WithTailPacket). A row's values do not depend on its address.
template <typename T, typename F>
inline void ForEachPacket(int64_t H, F&& f) {
  constexpr int L = PacketSize<FullPacket<T>>();
  int64_t j = 0;
  for (; j + L <= H; j += L) f(j, L, PacketTag<FullPacket<T>>{});
  if (j < H) {
    const int n = static_cast<int>(H - j);
    WithTailPacket<FullPacket<T>>(n, [&](auto tag) { f(j, n, tag); });
  }
}

// Whether ForEachPacket ends a row of H units with a partial (masked) packet.
template <typename T>
inline bool RowEndsInPartialPacket(int64_t H) {
  constexpr int L = PacketSize<FullPacket<T>>();
  const int n = static_cast<int>(H % L);
  bool partial = false;
  if (n > 0) {
    WithTailPacket<FullPacket<T>>(
        n, [&](auto tag) { partial = n < PacketSize<typename decltype(tag)::type>(); });
  }
  return partial;
}
#pragma GCC diagnostic pop

template <typename T, typename P>
inline CpuVec<T, P> Sigmoid(const CpuVec<T, P>& x) {
  return CpuVec<T, P>(Eigen::internal::scalar_logistic_op<T>().packetOp(x.p));
}
template <typename T, typename P>
inline CpuVec<T, P> Tanh(const CpuVec<T, P>& x) {
  return CpuVec<T, P>(Eigen::internal::scalar_tanh_op<T>().packetOp(x.p));
}
template <typename T, typename P>
inline CpuVec<T, P> Relu(const CpuVec<T, P>& x) {
  return CpuVec<T, P>(Eigen::internal::pmax(x.p, Eigen::internal::pzero(x.p)));
}
template <typename T, typename P>
inline CpuVec<T, P> ReluGrad(const CpuVec<T, P>& y, const CpuVec<T, P>& dy) {
  using Eigen::internal::pand;
  using Eigen::internal::pcmp_lt;
  return CpuVec<T, P>(pand(pcmp_lt(Eigen::internal::pzero(y.p), y.p), dy.p));
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

// The io of units [j, j + n) of a CpuCellRow (n <= Packet's size); kSave false drops the saves.
// (The fused driver saves in inference too, to scratch: its training and inference outputs must be
// bitwise the same, and two instantiations may contract multiply-adds differently.)
template <typename T, bool kSave, typename Packet = FullPacket<T>>
class CpuForwardIo {
 public:
  using Value = CpuVec<T, Packet>;
  CpuForwardIo(const CpuCellRow<T>& row, int64_t j, int n) : row_(row), j_(j), n_(n) {}

  EIGEN_ALWAYS_INLINE Value X(int g) const {
    const Value x = row_.gx_gate_offset ? Value::Load(row_.gx + row_.gx_gate_offset[g] + j_, n_)
                                        : Load(row_.gx, g);
    return x + Load(row_.b_w, g);
  }
  EIGEN_ALWAYS_INLINE Value R(int g) const { return Load(row_.gh, g) + Load(row_.b_r, g); }
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
  ForEachPacket<T>(row.H, [&](int64_t j, int n, auto tag) {
    CpuForwardIo<T, kSave, typename decltype(tag)::type> io(row, j, n);
    Cell::Forward(io);
  });
}

// Runs the cell's phase `phase` (Cell::ForwardPhase) over units [0, H) of one row: cells with
// several recurrent products (CellRecurrentProducts); one-product cells run Forward.
template <typename Cell, bool kSave, typename T>
inline void CellForwardPhaseRow(const CpuCellRow<T>& row, int phase) {
  if constexpr (CellRecurrentProducts<Cell>::value == 1) {
    CellForwardRow<Cell, kSave>(row);
  } else {
    WithPhase<Cell::kRecurrentProducts>(phase, [&](auto p) {
      ForEachPacket<T>(row.H, [&](int64_t j, int n, auto tag) {
        CpuForwardIo<T, kSave, typename decltype(tag)::type> io(row, j, n);
        Cell::template ForwardPhase<decltype(p)::value>(io);
      });
    });
  }
}

// A vector of rows of a one-unit layer (H = 1), lane i row r0 + i: a row's gate g at gx and gh's
// stride (gh's 0: every row reads one zero row), its saved buffer k at saved_stride[k], its states
// one value a row. Each gate is then a whole vector where a row filled one lane of one: LSTM(1)'s
// cell pass was ~500 instructions a row step (docs/PERFORMANCE.md item 112).
template <typename T>
struct CpuUnitRows {
  const T* gx = nullptr;
  int64_t gx_stride = 0;
  const T* gh = nullptr;
  int64_t gh_stride = 0;
  const T* b_w = nullptr;  // [G]
  const T* b_r = nullptr;  // [G]
  const T* h_prev = nullptr;
  const T* c_prev = nullptr;
  T* h = nullptr;
  T* c = nullptr;
  T* saved[kMaxCellSaved] = {};
  int64_t saved_stride[kMaxCellSaved] = {};
};

// (Eigen's packet as a template argument: see ForEachPacket.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
// One value of each of a vector of rows, `stride` apart (1: adjacent), and back.
template <typename T>
inline CpuVec<T, FullPacket<T>> GatherUnitRows(const T* from, int64_t stride) {
  using Value = CpuVec<T, FullPacket<T>>;
  return stride == 1 ? Value::Load(from, Value::kSize)
                     : Value(Eigen::internal::pgather<T, FullPacket<T>>(from, stride));
}
template <typename T>
inline void ScatterUnitRows(const CpuVec<T, FullPacket<T>>& v, T* to, int64_t stride) {
  if (stride == 1) {
    v.Store(to, v.kSize);
  } else {
    Eigen::internal::pscatter<T, FullPacket<T>>(to, v.p, stride);
  }
}

template <typename T>
class CpuUnitRowsForwardIo {
 public:
  using Packet = FullPacket<T>;
  using Value = CpuVec<T, Packet>;
  static constexpr int kRows = Value::kSize;
  explicit CpuUnitRowsForwardIo(const CpuUnitRows<T>& rows) : r_(rows) {}

  EIGEN_ALWAYS_INLINE Value X(int g) const {
    return GatherUnitRows<T>(r_.gx + g, r_.gx_stride) + Value(r_.b_w[g]);
  }
  EIGEN_ALWAYS_INLINE Value R(int g) const {
    return GatherUnitRows<T>(r_.gh + g, r_.gh_stride) + Value(r_.b_r[g]);
  }
  Value HPrev() const { return Value::Load(r_.h_prev, kRows); }
  Value CPrev() const { return Value::Load(r_.c_prev, kRows); }
  void SetH(const Value& v) { v.Store(r_.h, kRows); }
  void SetC(const Value& v) { v.Store(r_.c, kRows); }
  void Save(int k, int g, const Value& v) {
    ScatterUnitRows(v, r_.saved[k] + g, r_.saved_stride[k]);
  }

 private:
  const CpuUnitRows<T>& r_;
};

// Runs Cell::Forward over the kRows rows of `rows` (one-product cells, H = 1).
template <typename Cell, typename T>
inline void CellForwardUnitRows(const CpuUnitRows<T>& rows) {
  static_assert(CellRecurrentProducts<Cell>::value == 1, "one recurrent product a step");
  CpuUnitRowsForwardIo<T> io(rows);
  Cell::Forward(io);
}

// The backward's vector of rows of a one-unit layer (see CpuUnitRows): the saved buffers and
// h_prev at their strides (h_prev's: y's rows where the backward reads the states in place), a
// row's grads of its gates at d_stride (G) in dx and dr; c_prev, dh, dc, dh_direct one value a row.
template <typename T>
struct CpuUnitGradRows {
  const T* saved[kMaxCellSaved] = {};
  int64_t saved_stride[kMaxCellSaved] = {};
  const T* h_prev = nullptr;
  int64_t h_prev_stride = 1;
  const T* c_prev = nullptr;
  const T* dh = nullptr;
  T* dc = nullptr;
  T* dx = nullptr;
  T* dr = nullptr;
  int64_t d_stride = 0;
  T* dh_direct = nullptr;
};

template <typename T>
class CpuUnitRowsBackwardIo {
 public:
  using Value = CpuVec<T, FullPacket<T>>;
  static constexpr int kRows = Value::kSize;
  explicit CpuUnitRowsBackwardIo(const CpuUnitGradRows<T>& rows) : r_(rows) {}

  EIGEN_ALWAYS_INLINE Value Saved(int k, int g) const {
    return GatherUnitRows<T>(r_.saved[k] + g, r_.saved_stride[k]);
  }
  Value HPrev() const { return GatherUnitRows<T>(r_.h_prev, r_.h_prev_stride); }
  Value CPrev() const { return Value::Load(r_.c_prev, kRows); }
  Value Dh() const { return Value::Load(r_.dh, kRows); }
  Value Dc() const { return Value::Load(r_.dc, kRows); }
  void SetDx(int g, const Value& v) { ScatterUnitRows(v, r_.dx + g, r_.d_stride); }
  void SetDr(int g, const Value& v) { ScatterUnitRows(v, r_.dr + g, r_.d_stride); }
  void SetDcPrev(const Value& v) { v.Store(r_.dc, kRows); }
  void SetDhDirect(const Value& v) { v.Store(r_.dh_direct, kRows); }

 private:
  const CpuUnitGradRows<T>& r_;
};

// Runs Cell::Backward over the kRows rows of `rows` (one-product cells, H = 1).
template <typename Cell, typename T>
inline void CellBackwardUnitRows(const CpuUnitGradRows<T>& rows) {
  static_assert(CellRecurrentProducts<Cell>::value == 1, "one recurrent product a step");
  CpuUnitRowsBackwardIo<T> io(rows);
  Cell::Backward(io);
}
#pragma GCC diagnostic pop

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

template <typename T, typename Packet = FullPacket<T>>
class CpuBackwardIo {
 public:
  using Value = CpuVec<T, Packet>;
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
  ForEachPacket<T>(row.H, [&](int64_t j, int n, auto tag) {
    CpuBackwardIo<T, typename decltype(tag)::type> io(row, j, n);
    Cell::Backward(io);
  });
}

// Runs the cell's backward phase `phase` (Cell::BackwardPhase; one-product cells: Backward) over
// units [0, H) of one row.
template <typename Cell, typename T>
inline void CellBackwardPhaseRow(const CpuCellGradRow<T>& row, int phase) {
  if constexpr (CellRecurrentProducts<Cell>::value == 1) {
    CellBackwardRow<Cell>(row);
  } else {
    WithPhase<Cell::kRecurrentProducts>(phase, [&](auto p) {
      ForEachPacket<T>(row.H, [&](int64_t j, int n, auto tag) {
        CpuBackwardIo<T, typename decltype(tag)::type> io(row, j, n);
        Cell::template BackwardPhase<decltype(p)::value>(io);
      });
    });
  }
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_CPU_CELL_IO_H_
