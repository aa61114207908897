// The extra recurrent products of cells with more than one a step (GRU reset-before: [R_r; R_z] h,
// then R_h (r ⊙ h)), forward and backward, for the CPU driver (rnn_cpu_driver.h). Generic over the
// cell: the cell states its products (CellRecurrentProducts, kProductGates; cc/cells/rnn_cells.h).
#ifndef TF_RNN_OPS_CC_KERNELS_RNN_PHASE_PRODUCTS_H_
#define TF_RNN_OPS_CC_KERNELS_RNN_PHASE_PRODUCTS_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "cc/cells/rnn_cells.h"
#include "cc/kernels/cpu_gemm.h"

namespace tf_rnn_ops {

// The recurrent products of a cell with several of them a step (CellRecurrentProducts > 1; see
// cc/cells/rnn_cells.h): product p multiplies its input (p = 0: h_prev; else the [B, H_out] rows
// the previous phase passed on through SetRecurrentInput) with R's gate columns
// [kProductGates[p], kProductGates[p + 1]) · H. Empty for one-product cells.
template <typename T, typename Cell, bool kPhased = (CellRecurrentProducts<Cell>::value > 1)>
class PhaseProducts {
 public:
  static int64_t StorageSize(int64_t, int64_t) { return 0; }
  PhaseProducts(const CPUDevice&, int64_t, int64_t, int64_t, const T*, bool, const int*, T*, bool) {
  }
  T* RecurrentInput(int64_t) { return nullptr; }
};

// Where product p's weights lie: R's gate block g0 = kProductGates[p] on, n columns (or rows,
// params' orientation) wide. Keras' [H_out, G·H] (`keras`): its column block gate_src[g] (or g),
// rows gh_w apart; params' [G·H, H_out]: rows g0·H on, contiguous.
template <typename T>
struct PhaseWeights {
  const T* b;           // the product's weights, first element
  const int* gate_src;  // Keras: gate_src shifted to the product's first gate (or null)
  int64_t ldb;          // Keras: G·H (params: 0, the product's own width)
};
template <typename T>
PhaseWeights<T> PhaseBlock(const T* r, bool keras, const int* gate_src, int g0, int64_t H,
                           int64_t ho, int64_t gh_w) {
  if (!keras) return {r + g0 * H * ho, nullptr, 0};
  if (gate_src != nullptr) return {r, gate_src + g0, gh_w};
  return {r + g0 * H, nullptr, gh_w};
}

// Gates [g0, g0 + n / H) of Keras' R (its gate blocks at gate_src[g], or g) copied into a
// contiguous [H_out, n]: a product's block, or one gate's (other types than float: Eigen's product
// reads b contiguous and in order).
template <typename T>
void CopyPhaseBlock(const T* r, const int* gate_src, int g0, int64_t n, int64_t H, int64_t ho,
                    int64_t gh_w, T* sub) {
  for (int64_t k = 0; k < ho; ++k) {
    for (int64_t col = 0; col < n; ++col) {
      const int64_t g = g0 + col / H, j = col % H;
      sub[k * n + col] = r[k * gh_w + (gate_src ? gate_src[g] : g) * H + j];
    }
  }
}

template <typename T, typename Cell>
class PhaseProducts<T, Cell, true> {
 public:
  static constexpr int kProducts = Cell::kRecurrentProducts;
  // The packed blocks' size (in T): at most StepGemm<T>::StorageSize(H_out, G·H) plus a panel a
  // product past the first (RnnWorkspaceSize).
  static int64_t StorageSize(int64_t ho, int64_t H) {
    int64_t size = 0;
    for (int p = 0; p < kProducts; ++p) size += StepGemm<T>::StorageSize(ho, Width(p, H));
    return size;
  }
  // r: R as params hold it ([G·H, H_out], `transposed`) or as Keras does ([H_out, G·H], its gate
  // blocks at gate_src[g] where given). float reads each product's block in place: packed into
  // `storage` (StorageSize), or streamed with `stream`; other types copy it (Eigen's product reads
  // b contiguous). Nothing of R is copied per call for float (a one-step GRU(1024) reset-before
  // forward copied and packed R twice: docs/PERFORMANCE.md, item 58).
  PhaseProducts(const CPUDevice& d, int64_t B, int64_t ho, int64_t H, const T* r, bool transposed,
                const int* gate_src, T* storage, bool stream)
      : ho_(ho), H_(H) {
    constexpr bool kInPlace = std::is_same<T, float>::value;
    const int64_t gh_w = int64_t(Cell::kGates) * H;
    int64_t widest = 0, copies = 0;
    for (int p = 0; p < kProducts; ++p) {
      widest = std::max(widest, Width(p, H));
      if (!kInPlace) copies += ho * Width(p, H);
    }
    widest_ = widest;
    store_.Reset(d, B * ho + B * widest + copies, /*zeroed=*/B * ho);  // (rec_in_)
    rec_in_ = store_.data();
    out_ = rec_in_ + B * ho;
    T* sub = out_ + B * widest;
    for (int p = 0; p < kProducts; ++p) {
      const int64_t n = Width(p, H);
      const int g0 = Cell::kProductGates[p];
      if constexpr (kInPlace) {
        const PhaseWeights<T> w = PhaseBlock(r, !transposed, gate_src, g0, H, ho, gh_w);
        gemm_[p].emplace(d, w.b, ho, n, transposed, storage, w.gate_src, H, stream, w.ldb);
        if (!stream) storage += StepGemm<T>::StorageSize(ho, n);
      } else if (transposed) {  // params' rows g0·H on are the product's [n, H_out]
        gemm_[p].emplace(d, r + g0 * H * ho, ho, n, /*transposed=*/true, nullptr);
      } else {
        CopyPhaseBlock(r, gate_src, g0, n, H, ho, gh_w, sub);
        gemm_[p].emplace(d, sub, ho, n, /*transposed=*/false, nullptr);
        sub += ho * n;
      }
    }
  }
  T* RecurrentInput(int64_t b) { return rec_in_ + b * ho_; }
  // Product `phase` for rows [b0, b1), into their gate columns of gh [B, gh_w].
  //
  // Its [b1 - b0, n] result goes through out_ at out_ + b0 · widest_: the rows of one call lie in
  // [b0, b1) · widest_ whatever the phase's width n <= widest_. With row ranges
  // (CpuRnn::ForEachRowRange) the threads run their rows' steps with no barrier between phases, so
  // one thread may run phase 0 (n = 2H for GRU reset-before) while another runs phase 1 (n = H):
  // based at b0 · n, as it once was, thread A's phase-0 rows [0, 2 b1_A H) overlapped thread B's
  // phase-1 rows [b0_B H, b1_B H) and overwrote them between B's product and its copy into gh
  // (wrong rows past the first range at B >= 2 kMr on 2+ threads; tests/ops/
  // test_row_range_threads.py).
  void Forward(int phase, bool one_thread, int64_t b0, int64_t b1, const T* h, T* gh,
               int64_t gh_w) const {
    const int64_t n = Width(phase, H_), g0 = Cell::kProductGates[phase] * H_;
    const T* in = phase == 0 ? h : rec_in_;
    T* rows = out_ + b0 * widest_;
    RunStepGemm(*gemm_[phase], one_thread, b1 - b0, in + b0 * ho_, rows);
    for (int64_t b = b0; b < b1; ++b) CopyRow(rows + (b - b0) * n, n, gh + b * gh_w + g0);
  }

 private:
  static int64_t Width(int p, int64_t H) {
    return int64_t(Cell::kProductGates[p + 1] - Cell::kProductGates[p]) * H;
  }
  int64_t ho_, H_, widest_ = 0;
  RowScratch<T> store_;
  T* rec_in_ = nullptr;
  T* out_ = nullptr;  // [B, widest_]: a call's rows at b0 · widest_ (see Forward)
  std::optional<StepGemm<T>> gemm_[kProducts];
};

// The backward of PhaseProducts: the grads of each product's input (phase p > 0: of what phase
// p - 1 passed on, read by its BackwardPhase as DRecurrentInput; phase 0: of h_prev) and R's
// gradient, a gate block per product.
template <typename T, typename Cell, bool kPhased = (CellRecurrentProducts<Cell>::value > 1)>
class PhaseProductGrads {
 public:
  static int64_t StorageSize(int64_t, int64_t) { return 0; }
  PhaseProductGrads(const CPUDevice&, int64_t, int64_t, int64_t, int64_t, const T*, bool,
                    const int*, T*, bool) {}
  const T* DRecurrentInput(int64_t) const { return nullptr; }
};

template <typename T, typename Cell>
class PhaseProductGrads<T, Cell, true> {
 public:
  static constexpr int kProducts = Cell::kRecurrentProducts;
  // The packed blocks' size (in T): StepGemm<T>::StorageSize(G·H, H_out), the same as R's whole.
  static int64_t StorageSize(int64_t ho, int64_t H) {
    int64_t size = 0;
    for (int p = 0; p < kProducts; ++p) size += StepGemm<T>::StorageSize(Width(p, H), ho);
    return size;
  }
  // r: R as params hold it, [G·H, H_out]; or (keras) as Keras does, [H_out, G·H], its gate blocks
  // at gate_src[g] where given, each product's block read transposed in place (float: packed into
  // `storage`, or streamed with `stream`) or a copy of it (other types). cb: the rows of a chunk
  // of steps.
  PhaseProductGrads(const CPUDevice& d, int64_t B, int64_t cb, int64_t ho, int64_t H, const T* r,
                    bool keras, const int* gate_src, T* storage, bool stream)
      : d_(d), ho_(ho), H_(H) {
    constexpr bool kInPlace = std::is_same<T, float>::value;
    const int64_t gh_w = int64_t(Cell::kGates) * H;
    int64_t widest = 0, copies = 0;
    for (int p = 0; p < kProducts; ++p) {
      widest = std::max(widest, Width(p, H));
      if (keras && !kInPlace) copies += ho * Width(p, H);
    }
    widest_ = widest;
    store_.Reset(d, B * ho + B * widest + cb * widest + cb * ho + copies,
                 /*zeroed=*/B * ho);  // (d_rec_in_)
    T* at = store_.data();
    d_rec_in_ = at;
    at += B * ho;
    cols_ = at;
    at += B * widest;
    chunk_cols_ = at;
    at += cb * widest;
    chunk_in_ = at;
    at += cb * ho;
    for (int p = 0; p < kProducts; ++p) {
      const int64_t n = Width(p, H);
      const int g0 = Cell::kProductGates[p];
      if constexpr (kInPlace) {
        const PhaseWeights<T> w = PhaseBlock(r, keras, gate_src, g0, H, ho, gh_w);
        gemm_[p].emplace(d, w.b, n, ho, /*transposed=*/keras, storage, w.gate_src, H, stream,
                         w.ldb);
        if (!stream) storage += StepGemm<T>::StorageSize(n, ho);
      } else if (!keras) {
        gemm_[p].emplace(d, r + g0 * H * ho, n, ho, /*transposed=*/false, nullptr);
      } else {
        CopyPhaseBlock(r, gate_src, g0, n, H, ho, gh_w, at);
        gemm_[p].emplace(d, at, n, ho, /*transposed=*/true, nullptr);
        at += ho * n;
      }
    }
  }
  const T* DRecurrentInput(int64_t b) const { return d_rec_in_ + b * ho_; }
  // After BackwardPhase `phase` for rows [b0, b1): the grad of the product's input, from the
  // grads of its gate columns in d_gh (the step's [B, gh_w] rows): into dh_rec (phase 0) or the
  // previous phase's DRecurrentInput.
  // The rows of a call go through cols_ at b0 · widest_, apart from other threads' rows whatever
  // phase those run (see PhaseProducts::Forward).
  void Backward(int phase, bool one_thread, int64_t b0, int64_t b1, const T* d_gh, int64_t gh_w,
                T* dh_rec) {
    const int64_t n = Width(phase, H_), g0 = Cell::kProductGates[phase] * H_;
    T* rows = cols_ + b0 * widest_;
    for (int64_t b = b0; b < b1; ++b) CopyRow(d_gh + b * gh_w + g0, n, rows + (b - b0) * n);
    T* out = phase == 0 ? dh_rec : d_rec_in_;
    RunStepGemm(*gemm_[phase], one_thread, b1 - b0, rows, out + b0 * ho_);
  }
  // R's gradient from a chunk's `rows` rows: block p += (its columns of d_gh)ᵀ · its input (p = 0:
  // hprev_rows; else saved_rows(k, scratch) gives the rows of the cell's saved buffer k in the
  // chunk's step order), summed in the opaque orientation [G·H, H_out].
  template <typename SavedRows>
  void AddWeightGrads(int64_t rows, const T* d_gh, int64_t gh_w, const T* hprev_rows,
                      SavedRows&& saved_rows, typename GradSumType<T>::type* dr) {
    for (int p = 0; p < kProducts; ++p) {
      const int64_t n = Width(p, H_), g0 = Cell::kProductGates[p] * H_;
      for (int64_t i = 0; i < rows; ++i) CopyRow(d_gh + i * gh_w + g0, n, chunk_cols_ + i * n);
      AddWeightGrad<T>(d_, n, ho_, rows, chunk_cols_, Input(p, hprev_rows, saved_rows),
                       dr + g0 * ho_);
    }
  }
  // R's gradient in Keras' layout, for calls of few rows (WeightGradsInT): Keras' [H_out, G·H]
  // (dr) (+)= each product's input ᵀ · its gates' columns of keras_d_gh, the chunk's grads in
  // Keras' gate order (canonical gate g in column block grad_gate_src[g], or g).
  template <typename SavedRows>
  void SetKerasWeightGrads(int64_t rows, const T* keras_d_gh, int64_t gh_w, const T* hprev_rows,
                           SavedRows&& saved_rows, const int* grad_gate_src, T* dr,
                           bool accumulate) {
    for (int p = 0; p < kProducts; ++p) {
      const T* in = Input(p, hprev_rows, saved_rows);
      for (int g = Cell::kProductGates[p]; g < Cell::kProductGates[p + 1]; ++g) {
        const int64_t col = (grad_gate_src ? grad_gate_src[g] : g) * H_;
        WeightGradInT(d_, ho_, H_, rows, in, keras_d_gh + col, dr + col, accumulate, gh_w, gh_w);
      }
    }
  }

 private:
  static int64_t Width(int p, int64_t H) {
    return int64_t(Cell::kProductGates[p + 1] - Cell::kProductGates[p]) * H;
  }
  // Product p's input rows: h_prev's, or those of the saved buffer the cell names.
  template <typename SavedRows>
  const T* Input(int p, const T* hprev_rows, SavedRows& saved_rows) {
    return p == 0 ? hprev_rows : saved_rows(Cell::kProductInput[p], chunk_in_);
  }
  const CPUDevice& d_;
  int64_t ho_, H_, widest_ = 0;
  RowScratch<T> store_;
  T* d_rec_in_ = nullptr;
  T* cols_ = nullptr;  // [B, widest_]: a call's rows at b0 · widest_ (see Backward)
  T* chunk_cols_ = nullptr;
  T* chunk_in_ = nullptr;
  std::optional<StepGemm<T>> gemm_[kProducts];
};

// ------------------------------------------------------------------------ recurrent dropout
// The gate range [CellProductGate(p), CellProductGate(p + 1)) of a cell's product p: the cell's
// kProductGates, or all G gates for one-product cells.
template <typename Cell>
constexpr int CellProductGate(int p) {
  if constexpr (CellRecurrentProducts<Cell>::value > 1) {
    return Cell::kProductGates[p];
  } else {
    return p == 0 ? 0 : Cell::kGates;
  }
}

// The recurrent products with recurrent dropout (Keras' recurrent_dropout, TfRnn>KerasRNNDropout),
// for any cell: each product of the cell over gates [g0, g1) becomes one product per gate g whose
// input is masked by gate g's mask, out[:, g] = (in ⊙ m_g) R_g (in: h_prev for product 0, else
// what the previous phase passed on; m_g: [B, H_out], the same at every step). Per-row scratch
// only (stage_ at b · H_out, out_ at b · H), so row ranges on several threads never share a row.
template <typename T, typename Cell>
class MaskedProducts {
 public:
  static constexpr int G = Cell::kGates;
  // r: R as Keras holds it ([H_out, G·H]), canonical gate g in column block gate_src[g] (or g);
  // masks [G, B, H_out] in the canonical gate order. float reads each gate's block in place
  // (packed, or streamed with `stream`); other types a copy of it (Eigen's product reads b
  // contiguous).
  MaskedProducts(const CPUDevice& d, int64_t B, int64_t ho, int64_t H, const T* r, const T* masks,
                 const int* gate_src = nullptr, bool stream = false)
      : B_(B), ho_(ho), H_(H), masks_(masks) {
    constexpr bool kInPlace = std::is_same<T, float>::value;
    const int64_t gh_w = int64_t(G) * H;
    const int64_t per_gate = kInPlace ? (stream ? 0 : StepGemm<T>::StorageSize(ho, H)) : ho * H;
    // (rec_in_ zeroed where a later product reads it; the rest written before it is read)
    store_.Reset(d, 2 * B * ho + B * H, CellRecurrentProducts<Cell>::value > 1 ? B * ho : 0);
    rec_in_ = store_.data();
    stage_ = rec_in_ + B * ho;
    out_ = stage_ + B * ho;
    weights_.reset(new T[std::max<int64_t>(1, G * per_gate)]);  // (written before it is read)
    T* at = weights_.get();
    for (int g = 0; g < G; ++g, at += per_gate) {
      const T* block = r + (gate_src ? gate_src[g] : g) * H;
      if constexpr (kInPlace) {
        gemm_[g].emplace(d, block, ho, H, /*transposed=*/false, at, nullptr, 0, stream, gh_w);
      } else {
        CopyPhaseBlock(r, gate_src, g, H, H, ho, gh_w, at);
        gemm_[g].emplace(d, at, ho, H, /*transposed=*/false, nullptr);
      }
    }
  }
  T* RecurrentInput(int64_t b) { return rec_in_ + b * ho_; }
  // Product `phase` for rows [b0, b1), into their gate columns of gh [B, gh_w].
  void Forward(int phase, bool one_thread, int64_t b0, int64_t b1, const T* h, T* gh,
               int64_t gh_w) const {
    const T* in = phase == 0 ? h : rec_in_;
    for (int g = CellProductGate<Cell>(phase); g < CellProductGate<Cell>(phase + 1); ++g) {
      const T* m = masks_ + g * B_ * ho_;
      for (int64_t i = b0 * ho_; i < b1 * ho_; ++i) stage_[i] = in[i] * m[i];
      if constexpr (G == 1) {  // gh's rows are the product's own: no staging
        RunStepGemm(*gemm_[g], one_thread, b1 - b0, stage_ + b0 * ho_, gh + b0 * gh_w);
      } else if constexpr (StepGemm<T>::kStrided) {  // straight into gh's gate columns
        RunStepGemm(*gemm_[g], one_thread, b1 - b0, stage_ + b0 * ho_, ho_, gh + b0 * gh_w + g * H_,
                    gh_w);
      } else {
        RunStepGemm(*gemm_[g], one_thread, b1 - b0, stage_ + b0 * ho_, out_ + b0 * H_);
        for (int64_t b = b0; b < b1; ++b) CopyRow(out_ + b * H_, H_, gh + b * gh_w + g * H_);
      }
    }
  }

 private:
  int64_t B_, ho_, H_;
  const T* masks_;
  RowScratch<T> store_;
  std::unique_ptr<T[]> weights_;  // the gates' packed blocks (float) or copies (other types)
  T* rec_in_ = nullptr;
  T* stage_ = nullptr;  // [B, H_out] masked inputs, a row at b · H_out
  T* out_ = nullptr;    // [B, H] one gate's product, a row at b · H
  std::optional<StepGemm<T>> gemm_[G];
};

// The backward of MaskedProducts: d_in = Σ_g (dgh_g R_gᵀ) ⊙ m_g over the product's gates, and
// dR_g += (in ⊙ m_g)ᵀ dgh_g (a chunk's rows: row i of batch index i mod B).
template <typename T, typename Cell>
class MaskedProductGrads {
 public:
  static constexpr int G = Cell::kGates;
  static constexpr int kProducts = CellRecurrentProducts<Cell>::value;
  // r: R as params hold it, [G·H, H_out]; or (keras) as Keras holds it, [H_out, G·H], canonical
  // gate g in column block gate_src[g] (or g), each gate's block read transposed in place (float;
  // streamed with `stream`) or a copy of it (other types). cb: the rows of a chunk of steps.
  MaskedProductGrads(const CPUDevice& d, int64_t B, int64_t cb, int64_t ho, int64_t H, const T* r,
                     const T* masks, bool keras = false, const int* gate_src = nullptr,
                     bool stream = false)
      : d_(d), B_(B), ho_(ho), H_(H), masks_(masks) {
    constexpr bool kFloat = std::is_same<T, float>::value;
    const int64_t gh_w = int64_t(G) * H;
    const int64_t per_gate = keras && !kFloat  ? ho * H
                             : keras && stream ? 0
                                               : StepGemm<T>::StorageSize(H, ho);
    weights_.reset(new T[std::max<int64_t>(1, G * per_gate)]);  // (written before it is read)
    for (int g = 0; g < G; ++g) {
      T* at = weights_.get() + g * per_gate;
      if (!keras) {
        gemm_[g].emplace(d, r + g * H * ho, H, ho, /*transposed=*/false, at);
        continue;
      }
      const T* block = r + (gate_src ? gate_src[g] : g) * H;
      if constexpr (kFloat) {
        gemm_[g].emplace(d, block, H, ho, /*transposed=*/true, at, nullptr, 0, stream, gh_w);
      } else {
        CopyPhaseBlock(r, gate_src, g, H, H, ho, gh_w, at);
        gemm_[g].emplace(d, at, H, ho, /*transposed=*/true, nullptr);
      }
    }
    store_.Reset(d, 2 * B * ho + B * H + cb * H + 2 * cb * ho, kProducts > 1 ? B * ho : 0);
    T* at = store_.data();
    d_rec_in_ = at;
    at += B * ho;
    tmp_ = at;
    at += B * ho;
    cols_ = at;
    at += B * H;
    chunk_cols_ = at;
    at += cb * H;
    chunk_in_ = at;
    at += cb * ho;
    masked_in_ = at;
  }
  const T* DRecurrentInput(int64_t b) const { return d_rec_in_ + b * ho_; }
  // After BackwardPhase `phase` for rows [b0, b1): the grad of the product's input into dh_rec
  // (phase 0) or the previous phase's DRecurrentInput.
  void Backward(int phase, bool one_thread, int64_t b0, int64_t b1, const T* d_gh, int64_t gh_w,
                T* dh_rec) {
    T* out = phase == 0 ? dh_rec : d_rec_in_;
    const int g0 = CellProductGate<Cell>(phase), g1 = CellProductGate<Cell>(phase + 1);
    for (int g = g0; g < g1; ++g) {
      if constexpr (G == 1) {  // one gate: d_gh's rows are its columns
        RunStepGemm(*gemm_[g], one_thread, b1 - b0, d_gh + b0 * gh_w, tmp_ + b0 * ho_);
      } else if constexpr (StepGemm<T>::kStrided) {  // gate g's columns read in place
        RunStepGemm(*gemm_[g], one_thread, b1 - b0, d_gh + b0 * gh_w + g * H_, gh_w,
                    tmp_ + b0 * ho_, ho_);
      } else {
        for (int64_t b = b0; b < b1; ++b) CopyRow(d_gh + b * gh_w + g * H_, H_, cols_ + b * H_);
        RunStepGemm(*gemm_[g], one_thread, b1 - b0, cols_ + b0 * H_, tmp_ + b0 * ho_);
      }
      // (two plain loops over restrict pointers: with the choice inside one loop GCC left it
      // scalar, ~40% of the GRU's step pass in the backward, docs/PERFORMANCE.md item 77)
      const T* __restrict m = masks_ + g * B_ * ho_;
      const T* __restrict d_in = tmp_;
      T* __restrict o = out;
      if (g == g0) {
        for (int64_t i = b0 * ho_; i < b1 * ho_; ++i) o[i] = d_in[i] * m[i];
      } else {
        for (int64_t i = b0 * ho_; i < b1 * ho_; ++i) o[i] += d_in[i] * m[i];
      }
    }
  }
  // R's gradient from a chunk's `rows` rows (see PhaseProductGrads::AddWeightGrads).
  template <typename SavedRows>
  void AddWeightGrads(int64_t rows, const T* d_gh, int64_t gh_w, const T* hprev_rows,
                      SavedRows&& saved_rows, typename GradSumType<T>::type* dr) {
    // float, several gates: m_g multiplied in as each gate's product packs its input (a masked
    // copy for each gate, written and read back, was ~5% of a GRU or LSTM backward). One gate
    // keeps its one masked copy: made by all threads, vectorized, it cost less than every
    // thread's packing multiplying the mask in (SimpleRNN(256), B = 64: ~0.4 ms a backward;
    // docs/PERFORMANCE.md item 81).
    // All gates' products in one dispatch (AddMaskedWeightGrads), each gate's columns of d_gh read
    // in place. (ForEachProductInput's inputs stay valid through the loop: a second product's is
    // chunk_in_, written once.)
    if constexpr (std::is_same_v<T, float> && G > 1) {
      static_assert(kProducts <= 2, "a third product's gathered input would overwrite chunk_in_");
      MaskedWeightGrad products[G];
      ForEachProductInput(rows, hprev_rows, saved_rows, [&](int g, const T* in) {
        products[g] = {d_gh + g * H_, in, dr + g * H_ * ho_, {masks_ + g * B_ * ho_, B_, 0}};
      });
      AddMaskedWeightGrads(d_, H_, ho_, rows, gh_w, products, G);
      return;
    }
    ForEachMaskedInput(rows, hprev_rows, saved_rows, [&](int g, const T* masked) {
      if constexpr (G == 1) {  // d_gh's rows are the gate's columns
        AddWeightGrad<T>(d_, H_, ho_, rows, d_gh, masked, dr + g * H_ * ho_);
      } else {  // (other types)
        for (int64_t i = 0; i < rows; ++i)
          CopyRow(d_gh + i * gh_w + g * H_, H_, chunk_cols_ + i * H_);
        AddWeightGrad<T>(d_, H_, ho_, rows, chunk_cols_, masked, dr + g * H_ * ho_);
      }
    });
  }
  // R's gradient in Keras' layout for calls of few rows (see
  // PhaseProductGrads::SetKerasWeightGrads): each gate's columns of Keras' [H_out, G·H] (dr) (+)=
  // (its product's input ⊙ m_g)ᵀ · its columns of keras_d_gh (Keras' gate order).
  template <typename SavedRows>
  void SetKerasWeightGrads(int64_t rows, const T* keras_d_gh, int64_t gh_w, const T* hprev_rows,
                           SavedRows&& saved_rows, const int* grad_gate_src, T* dr,
                           bool accumulate) {
    ForEachMaskedInput(rows, hprev_rows, saved_rows, [&](int g, const T* masked) {
      const int64_t col = (grad_gate_src ? grad_gate_src[g] : g) * H_;
      WeightGradInT(d_, ho_, H_, rows, masked, keras_d_gh + col, dr + col, accumulate, gh_w, gh_w);
    });
  }

 private:
  // Calls fn(g, in) for each gate g of each product, `in` the chunk's `rows` rows of the product's
  // input (h_prev, or the cell's saved buffer: see PhaseProductGrads::AddWeightGrads), unmasked.
  template <typename SavedRows, typename Fn>
  void ForEachProductInput(int64_t rows, const T* hprev_rows, SavedRows& saved_rows, Fn&& fn) {
    for (int p = 0; p < kProducts; ++p) {
      const T* in = hprev_rows;
      if constexpr (kProducts > 1) {
        if (p > 0) in = saved_rows(Cell::kProductInput[p], chunk_in_);
      }
      for (int g = CellProductGate<Cell>(p); g < CellProductGate<Cell>(p + 1); ++g) fn(g, in);
    }
  }
  // ForEachProductInput with `in` times m_g (row i of batch index i mod B), in masked_in_.
  template <typename SavedRows, typename Fn>
  void ForEachMaskedInput(int64_t rows, const T* hprev_rows, SavedRows& saved_rows, Fn&& fn) {
    ForEachProductInput(rows, hprev_rows, saved_rows, [&](int g, const T* in) {
      const T* m = masks_ + g * B_ * ho_;
      // (on the pool: a chunk of GRU(64) at B = 1024 is 4 MB a gate, serial on the op's thread
      // it was ~10% of the backward, docs/PERFORMANCE.md item 77)
      ParallelRows(
          d_, rows, 2.0 * ho_,
          [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
              const T* mi = m + (i % B_) * ho_;
              for (int64_t k = 0; k < ho_; ++k) masked_in_[i * ho_ + k] = in[i * ho_ + k] * mi[k];
            }
          },
          kCopyMinFlops);
      fn(g, masked_in_);
    });
  }

  const CPUDevice& d_;
  int64_t B_, ho_, H_;
  const T* masks_;
  RowScratch<T> store_;
  std::unique_ptr<T[]> weights_;  // the gates' packed blocks (float) or copies (other types)
  T* d_rec_in_ = nullptr;
  T* tmp_ = nullptr;   // [B, H_out] one gate's d_in, a row at b · H_out
  T* cols_ = nullptr;  // [B, H] one gate's columns of d_gh, a row at b · H
  T* chunk_cols_ = nullptr;
  T* chunk_in_ = nullptr;
  T* masked_in_ = nullptr;
  std::optional<StepGemm<T>> gemm_[G];
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_RNN_PHASE_PRODUCTS_H_
