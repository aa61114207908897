// The fused multi-layer RNN on CPU: one driver over layers and directions, templated over the cell
// (cc/cells/rnn_cells.h). The driver owns the products, the states, the reserve layout, variable
// lengths and the threading; the cell owns the element-wise step (run on SIMD vectors of a row by
// cpu_cell_io.h) and states, through its traits, what else differs: a cell state (kHasCellState),
// its saved buffers (kSaved), separate grads for R (kDistinctRecurrentGrad), a direct part of
// dh_prev (kDirectHPrevGrad). Nothing here asks which cell it runs.
//
// One step, forward: gh = h_prev · Rᵀ (the cell's recurrent product: one [B, H_out] x [H_out, G·H]
// for one-product cells), then the cell's element-wise pass per row (X from the chunk's input
// projection, saved buffers into the reserve), then the projection (num_proj) and the state update.
// A cell with more than one recurrent product in its step (GruResetBeforeCell, Keras' GRU
// reset_after=False) turns the product and the pass into a loop over the cell's phases: product p
// on R's gate block p (PhaseProducts, PhaseProductGrads), then phase p (see rnn_cells.h).
//
// Works on raw pointers in the compute type T (float or double), time-major, with states packed as
// [num_layers * num_dirs, B, ·]. The OpKernels (fused_rnn_kernels.h) convert layouts and dtypes.
//
// Where the time goes and how it is spent (see docs/PERFORMANCE.md):
//  * the input projection of a chunk of steps (~512 rows) is one [rows, in] x [in, G·H] product;
//  * each step does one [B, H_out] x [H_out, G·H] product on R packed once per call
//    (packed_gemm.h) and one fused pass over the gates, each split evenly over the threads;
//  * backprop keeps the pre-activation grads of a chunk of steps and turns them into the chunk's
//    share of the weight gradients and the grad of the layer input: three products a chunk.
// Variable lengths: batch row b runs over steps s < len_b. The backward direction reads the valid
// part of each sequence in reverse: at step s it processes time t = len_b - 1 - s. Rows past their
// length keep their state, output zeros and pass gradients straight through.
#ifndef TF_RNN_OPS_CC_KERNELS_RNN_CPU_DRIVER_H_
#define TF_RNN_OPS_CC_KERNELS_RNN_CPU_DRIVER_H_

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "cc/cells/rnn_cells.h"
#include "cc/cells/zoneout.h"
#include "cc/kernels/cpu_cell_io.h"
#include "cc/kernels/cpu_gemm.h"
#include "cc/kernels/rnn_dropout.h"
#include "cc/kernels/rnn_layouts.h"
#include "cc/kernels/rnn_params.h"
#include "cc/kernels/rnn_phase_products.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_rnn_ops {

template <typename T>
struct RnnForwardArgs {
  int64_t seq_len = 0, batch = 0;
  const T* x = nullptr;              // [T, B, I]
  const T* h0 = nullptr;             // [L·dirs, B, H_out]
  const T* c0 = nullptr;             // cells with a cell state (lstm): [L·dirs, B, H]
  const T* params = nullptr;         // opaque
  const int32_t* lengths = nullptr;  // [B], or null: all T
  T* y = nullptr;                    // [T, B, dirs·H_out]
  T* hn = nullptr;                   // [L·dirs, B, H_out]
  T* cn = nullptr;                   // cells with a cell state: [L·dirs, B, H]
  T* reserve = nullptr;     // training: RnnReserveLayout(...).size elements; null for inference
  bool save_hprev = false;  // RnnReserveLayout's: the outputs are rounded (16-bit types)
  float dropout = 0;
  uint64_t seed = 0, seed2 = 0;
  // Keras-layout weights (TfRnn>KerasRNN; one layer, one direction, no projection), read in place
  // of params when `kernel` is set: kernel [in, G·H] and recurrent_kernel [H, G·H] row-major as
  // Keras keeps them (Wᵀ and Rᵀ), bias_w and bias_r [G·H] in the canonical gate order; gate_src (or
  // null): the kernels' column block holding canonical gate g (Keras GRU's z, r, h: {1, 0, 2}).
  const T* kernel = nullptr;
  const T* recurrent_kernel = nullptr;
  const T* bias_w = nullptr;
  const T* bias_r = nullptr;
  const int* gate_src = nullptr;
  // The products read the Keras kernels as stored (no packing): see StreamGemm, RnnStreamWeights.
  bool stream_weights = false;
  uint64_t dropout_call = 0;  // this kernel's count of earlier calls that drew masks (see above)
  // Recurrent dropout (TfRnn>KerasRNNDropout; one layer, one direction, Keras-layout
  // recurrent_kernel, with gate_src null where rec_masks is given): `projected` [T, B, G·H] the
  // input side of every gate (the cell still adds bias_w and bias_r, where the op puts the layers'
  // bias: [G·H] as bias_r, GRU reset_after's two rows as both), read in place of the input
  // projection (kernel null, no W); `rec_masks` [G, B, H_out] the per-gate masks of the recurrent
  // products (MaskedProducts), canonical gate order. `projected_batch_major`: projected's rows are
  // [B, T] instead (Keras' layout, read in place: no transposed copy); `projected_gate_offset`:
  // its canonical gate g at element projected_gate_offset[g] from a row's start (Keras' order, or
  // gate-major blocks [G, rows, H], read in place: no reordered copy), or g·H where null;
  // `projected_row_stride`: elements from a row to the next (0: G·H; gate-major: H).
  const T* projected = nullptr;
  bool projected_batch_major = false;
  const int64_t* projected_gate_offset = nullptr;
  int64_t projected_row_stride = 0;
  const T* rec_masks = nullptr;
  // Zoneout on h (haste; docs/MATH.md, "Cells beyond cuDNN", Zoneout): after
  // the cell's step, h_t = h_{t-1} + m ⊙ (h~_t - h_{t-1}) with m = zoneout_mask [T, B, H_out] (row
  // (t·B + b), t the time the step processes), or the scalar zoneout_keep where the mask is null
  // (1: no zoneout). The zoned h is the output and the carried state; c is not zoned. One layer,
  // one direction, no projection.
  const T* zoneout_mask = nullptr;
  T zoneout_keep = T(1);
  // x and y are [B, T, ·] (Keras' layout), read and written in place: no transposed copies
  // (one layer, one direction; TfRnn>KerasRNN: float, each step's input products read its rows
  // T·I apart, KerasIoInPlace; TfRnn>KerasRNNDropout: any batch-major call, it has no x).
  bool io_batch_major = false;
};

template <typename T>
struct RnnBackwardArgs {
  int64_t seq_len = 0, batch = 0;
  const T* x = nullptr;
  const T* h0 = nullptr;
  const T* c0 = nullptr;
  const T* params = nullptr;
  const int32_t* lengths = nullptr;
  const T* y = nullptr;    // [T, B, dirs·H_out] the forward's output
  const T* dy = nullptr;   // [T, B, dirs·H_out]
  const T* dhn = nullptr;  // [L·dirs, B, H_out]
  const T* dcn = nullptr;  // lstm: [L·dirs, B, H]
  const T* reserve = nullptr;
  bool save_hprev = false;
  float dropout = 0;
  T* dx = nullptr;   // [T, B, I], or null: not wanted (the first layer skips its products)
  T* dh0 = nullptr;  // [L·dirs, B, H_out]
  T* dc0 = nullptr;  // lstm: [L·dirs, B, H]
  // dh0 and dc0 not wanted (the tape needs no initial state's grad: a layer called without
  // states): they are set to zero, and each layer's product that would compute them is skipped.
  bool skip_state_grads = false;
  T* dparams = nullptr;  // opaque
  // Recurrent dropout (see RnnForwardArgs): rec_masks as there; d_projected [T, B, G·H], where
  // set, receives the grads of the projected input in place of dx and the W gradient; rows [B, T]
  // with `projected_batch_major`, canonical gate g at element d_projected_gate_offset[g] from a
  // row's start where that is set (Keras GRU's z, r, h: blocks {1, 0, 2}; gate-major blocks), rows
  // projected_row_stride apart where that is nonzero (as RnnForwardArgs'). One direction.
  const T* rec_masks = nullptr;
  T* d_projected = nullptr;
  bool projected_batch_major = false;
  const int64_t* d_projected_gate_offset = nullptr;
  int64_t projected_row_stride = 0;
  // Zoneout (see RnnForwardArgs): with δ the grad of the zoned h_t, the cell's h~_t gets m ⊙ δ and
  // h_{t-1} gets (1 - m) ⊙ δ besides the cell's own part.
  const T* zoneout_mask = nullptr;
  T zoneout_keep = T(1);
  // Keras-layout weights and gradients (TfRnn>KerasRNNBackprop and TfRnn>KerasRNNDropoutBackprop;
  // one layer, one direction, no projection, a cell with one recurrent product), in place of params
  // and dparams when `recurrent_kernel` is set: kernel, recurrent_kernel and gate_src as
  // RnnForwardArgs' (no kernel with d_projected); d_kernel [in, G·H] and d_recurrent_kernel [H,
  // G·H] receive the weight gradients in Keras' layout, canonical gate g in column block
  // grad_gate_src[g] (or g where it is null), d_bias_w and d_bias_r [G·H] the bias gradients in the
  // canonical gate order (null: not wanted, not summed). So a call converts nothing, and where its
  // sums may run in T (WeightGradsInT), the products write the weight gradients directly.
  const T* kernel = nullptr;
  const T* recurrent_kernel = nullptr;
  const int* gate_src = nullptr;
  T* d_kernel = nullptr;
  T* d_recurrent_kernel = nullptr;
  T* d_bias_w = nullptr;
  T* d_bias_r = nullptr;
  const int* grad_gate_src = nullptr;
  bool stream_weights = false;  // the products read the Keras kernels as stored (RnnForwardArgs')
  bool io_batch_major = false;  // x, y, dy and dx [B, T, ·] (RnnForwardArgs')
};

// The element offset of the given input side's row of step t, batch row b (`projected`, or its
// grads `d_projected`), from RnnForwardArgs' or RnnBackwardArgs' layout fields: rows [T, B] or
// batch-major [B, T], projected_row_stride apart (0: gh, the gates side by side).
template <typename Args>
inline int64_t ProjectedRowOffset(const Args& a, int64_t t, int64_t b, int64_t gh) {
  const int64_t row = a.projected_batch_major ? b * a.seq_len + t : t * a.batch + b;
  return row * (a.projected_row_stride ? a.projected_row_stride : gh);
}

// The zoneout keep weight of unit j: the mask row's, or the scalar where there is no mask.
template <typename T>
inline T ZoneoutKeep(const T* m_row, T keep, int64_t j) {
  return m_row != nullptr ? m_row[j] : keep;
}

// Whether a step's rows of a layer may run through the cell as one row of their units (the
// driver's gates_flat): cells of one gate and no cell state whose element-wise step reads neither
// h_prev nor another row's values and saves its activations alone (SimpleRNN), narrow enough that
// a row fills at most one AVX-512 vector (the biases are repeated once per batch row for it).
constexpr int64_t kFlatRowsMaxUnits = 16;
template <typename Cell>
bool CellRunsFlat(int64_t H, int64_t ho) {
  return Cell::kGates == 1 && !Cell::kHasCellState && CellRecurrentProducts<Cell>::value == 1 &&
         Cell::kNumSaved == 1 && H == ho && H <= kFlatRowsMaxUnits;
}

// Whether a cell's rows (full ones, lengths aside) run a vector of rows at a time, each gate
// gathered at the row stride (CpuUnitRows, CpuUnitGradRows): cells of several gates, one recurrent
// product a step, at H = 1 without a projection.
template <typename Cell>
bool CellRunsUnitRows(int64_t H, int64_t ho) {
  return !CellRunsFlat<Cell>(H, ho) && CellRecurrentProducts<Cell>::value == 1 && H == 1 && ho == 1;
}

template <typename T>
class CpuRnn {
 public:
  CpuRnn(const CPUDevice& d, const RnnModelShape& s) : d_(d), s_(s) {}

  void Forward(const RnnForwardArgs<T>& a, T* workspace) const;
  void Backward(const RnnBackwardArgs<T>& a, T* workspace) const;

 private:
  int64_t Length(const int32_t* lengths, int64_t b, int64_t T_) const {
    return lengths ? lengths[b] : T_;
  }
  // The time index that direction `dir` processes at step s for a row of length len (s < len).
  static int64_t TimeAt(int dir, int64_t s, int64_t len) { return dir == 0 ? s : len - 1 - s; }
  // In a loop over step s's batch rows (up to b_end) of a batch-major buffer, asks for the row of
  // b + kIoPrefetchRows: its `width` values from column `col` of rows `ld` apart (PrefetchValues;
  // nothing for time-major rows, which follow each other).
  template <int kWrite = 0>
  void PrefetchRowAhead(const IoRows& io_row, const int32_t* lengths, int dir, int64_t s, int64_t b,
                        int64_t b_end, const T* buf, int64_t ld, int64_t col, int64_t width) const {
    if (!io_row.batch_major || b + kIoPrefetchRows >= b_end) return;
    const int64_t ahead = b + kIoPrefetchRows, len = Length(lengths, ahead, io_row.T_);
    if (s < len) PrefetchValues<kWrite>(buf + io_row(TimeAt(dir, s, len), ahead) * ld + col, width);
  }

  // Runs step(s, b0, b1, one_thread) for the steps [s0, s1) (from s1 - 1 down when `backward`) over
  // the row ranges of ForEachBatchRange (cpu_gemm.h): one dispatch a chunk. No barrier keeps the
  // threads in step: one thread's step may run its rows' phase or step while another runs a
  // different one, so a step may write shared scratch only in places of its own rows that no phase
  // or step of other rows uses (rnn_phase_products.h's out_ and cols_).
  // rows_apart: ForEachBatchRange's (RnnRowsApart).
  template <typename Fn>
  void ForEachRowRange(int64_t B, int64_t s0, int64_t s1, bool rows_apart, Fn&& step,
                       bool backward = false) const;

  template <typename Cell>
  void ForwardLayerDir(const RnnForwardArgs<T>& a, int layer, int dir, const T* x, int64_t in, T* y,
                       const RnnReserveLayout* rl, T* ws) const;
  template <typename Cell>
  void BackwardLayerDir(const RnnBackwardArgs<T>& a, int layer, int dir, const T* x, int64_t in,
                        const T* y, const T* dy, T* dx, const RnnReserveLayout& rl, T* ws) const;

  const CPUDevice& d_;
  const RnnModelShape s_;
};

template <typename T>
template <typename Fn>
void CpuRnn<T>::ForEachRowRange(int64_t B, int64_t s0, int64_t s1, bool rows_apart, Fn&& step,
                                bool backward) const {
  auto steps = [&](int64_t b0, int64_t b1, bool one_thread) {
    if (backward) {
      for (int64_t s = s1 - 1; s >= s0; --s) step(s, b0, b1, one_thread);
    } else {
      for (int64_t s = s0; s < s1; ++s) step(s, b0, b1, one_thread);
    }
  };
  ForEachBatchRange<T>(d_, B, rows_apart, steps);
}

// ----------------------------------------------------------------------------------------- forward
template <typename T>
void CpuRnn<T>::Forward(const RnnForwardArgs<T>& a, T* ws) const {
  const int64_t T_ = a.seq_len, B = a.batch, tb = T_ * B, ow = s_.output_size();
  const bool training = a.reserve != nullptr;
  const bool has_dropout = training && a.dropout > 0;
  const bool multi = s_.num_layers > 1;
  RnnReserveLayout rl(s_, T_, B, has_dropout, a.save_hprev);
  // Rows past a sequence's length are never written by the steps. Zeroed: the reserve is an output
  // (same inputs, bitwise the same outputs), and the m rows (projection) take part in a
  // weight-gradient product (times zero grads), where garbage could be NaN.
  if (training) {
    const int64_t H = s_.num_units;
    for (const auto& ld : rl.layer_dir) {
      for (int k = 0; k < ld.num_saved; ++k)
        ZeroRowsPastLengths(a.lengths, T_, B, ld.saved_width[k], a.reserve + ld.saved[k]);
      if (ld.m >= 0) ZeroRowsPastLengths(a.lengths, T_, B, H, a.reserve + ld.m);
      if (ld.hprev >= 0) ZeroRowsPastLengths(a.lengths, T_, B, s_.h_out(), a.reserve + ld.hprev);
    }
  }
  // Layer outputs: the last layer writes y; training writes the others into the reserve (they are
  // the next layer's saved input); inference ping-pongs between two scratch buffers.
  T* scratch_out[2] = {ws, ws + (multi ? tb * ow : 0)};
  T* cell_ws = ws + (multi ? 2 * tb * ow : 0);
  const T* x = a.x;
  for (int l = 0; l < s_.num_layers; ++l) {
    const bool last = l + 1 == s_.num_layers;
    T* y = last ? a.y : training ? a.reserve + rl.layer_input[l + 1] : scratch_out[l % 2];
    ZeroRowsPastLengths(a.lengths, T_, B, ow, y, a.io_batch_major);  // past a length: zeros
    DispatchCell(s_.mode, [&](auto cell) {
      using Cell = decltype(cell);
      for (int dir = 0; dir < s_.num_dirs; ++dir)
        ForwardLayerDir<Cell>(a, l, dir, x, s_.LayerInputSize(l), y, training ? &rl : nullptr,
                              cell_ws);
    });
    if (!last && training && a.dropout > 0) {
      T* mask = a.reserve + rl.dropout_mask[l + 1];
      FillDropoutMask<T>(a.seed, a.seed2, DropoutStreamOffset(a.dropout_call, s_.num_layers, l + 1),
                         a.dropout, tb * ow, mask);
      for (int64_t i = 0; i < tb * ow; ++i) y[i] *= mask[i];
    }
    x = y;
  }
}

// gx[rows, G·H] = x[rows, in] · Wᵀ (`w`: W packed once per call), or the input itself in every gate
// with skip_input (`w` null).
template <typename T>
void InputProjection(const RnnModelShape& s, int64_t rows, int64_t in, const T* x,
                     const StepGemm<T>* w, T* gx) {
  const int64_t gh_w = s.gates() * s.num_units, H = s.num_units;
  if (w != nullptr) {
    w->Run(rows, x, gx);
    return;
  }
  for (int64_t i = 0; i < rows; ++i)  // skip_input: in == H
    for (int g = 0; g < s.gates(); ++g) std::copy_n(x + i * in, H, gx + i * gh_w + g * H);
}

template <typename T>
template <typename Cell>
void CpuRnn<T>::ForwardLayerDir(const RnnForwardArgs<T>& a, int layer, int dir, const T* x,
                                int64_t in, T* y, const RnnReserveLayout* rl, T* ws) const {
  const int64_t T_ = a.seq_len, B = a.batch, H = s_.num_units, ho = s_.h_out(), G = s_.gates();
  const int64_t gh_w = G * H, ow = s_.output_size(), ld = int64_t(layer) * s_.num_dirs + dir;
  const int64_t max_in = s_.MaxLayerInputSize();
  const int64_t Tc = RnnChunkSteps(T_, B, std::max(gh_w, max_in)), cb = Tc * B;
  const auto blk = s_.LayerBlock(layer);
  // Opaque params, or Keras-layout weights (RnnForwardArgs::kernel): then W and R are stored
  // transposed relative to params ([in, G·H], [H, G·H]), possibly with their gate blocks permuted.
  const bool keras = a.recurrent_kernel != nullptr;
  const T* p = keras ? nullptr : a.params + s_.BlockOffset(layer, dir);
  const T* w = keras ? a.kernel : p + blk.w;
  const T* r = keras ? a.recurrent_kernel : p + blk.r;
  const T* proj = keras ? nullptr : p + blk.p;
  const T* b_w = keras ? a.bias_w : p + blk.b_w;
  const T* b_r = keras ? a.bias_r : p + blk.b_r;
  const int* gate_src = keras ? a.gate_src : nullptr;
  // (with masks the products are MaskedProducts': R itself is never multiplied, not packed)
  const bool stream = keras && (a.stream_weights || a.rec_masks != nullptr);
  const bool has_proj = s_.num_proj > 0;
  const bool training = rl != nullptr;
  // Training computes gx where the cell then saves its activations, except in rows that end in a
  // partial vector: there a gate's masked store of its activations held up the next gate's load of
  // gx until the store left the core (a load overlapping a masked store's vector is not forwarded
  // from it). LSTM(1) training's cell pass took 2.6× inference's (docs/PERFORMANCE.md item 111).
  const bool gx_in_place = training && !RowEndsInPartialPacket<T>(H);
  const bool zoning = a.zoneout_mask != nullptr || a.zoneout_keep != T(1);
  const IoRows io_row{a.io_batch_major, T_, B};

  T* gx_chunk = ws;                   // [cb, G·H] gx of a chunk, step order
  T* x_chunk = gx_chunk + cb * gh_w;  // [cb, in] reverse direction: its input rows, step order
  T* gh = x_chunk + cb * max_in;      // [B, G·H]
  T* h = gh + B * gh_w;               // [B, H_out] state
  T* h_new = h + B * ho;              // [B, H_out]
  T* out = h_new + B * ho;            // [B, H]: h (no projection) or m
  T* c = out + B * H;                 // [B, H] cell state (cells with one)
  T* c_new = c + B * H;               // [B, H]
  T* save_scratch = c_new + B * H;    // [B, CellSavedWidth] the saved buffers (inference)
  T* pack = save_scratch + B * CellSavedWidth(s_.mode, H);
  // Cells with several recurrent products a step (CellRecurrentProducts) multiply R's blocks one
  // product at a time (PhaseProducts: product p multiplies its input, h then what the previous
  // phase passed on, with the gate columns of R that the cell names), packed each by itself.
  constexpr int kProducts = CellRecurrentProducts<Cell>::value;
  const bool pack_r = !stream && kProducts == 1;
  const StepGemm<T> recurrent(d_, r, ho, gh_w, /*transposed=*/!keras, pack, gate_src, H, !pack_r);
  if (pack_r) pack += StepGemm<T>::StorageSize(ho, gh_w);
  std::optional<PhaseProducts<T, Cell>> phases;  // (recurrent dropout: MaskedProducts instead)
  if (a.rec_masks == nullptr) {
    phases.emplace(d_, B, ho, H, r, !keras, gate_src, pack, stream);
    if (!stream) pack += PhaseProducts<T, Cell>::StorageSize(ho, H);
  }
  std::optional<StepGemm<T>> projection, input_weights;
  if (has_proj) {
    projection.emplace(d_, proj, H, ho, /*transposed=*/true, pack);
    pack += StepGemm<T>::StorageSize(H, ho);
  }
  // W, like R, is packed once: every chunk's input projection reuses it.
  if (s_.HasInputWeights(layer) && a.projected == nullptr) {
    input_weights.emplace(d_, w, in, gh_w, /*transposed=*/!keras, pack, gate_src, H, stream);
  }
  // (the call's flops: the input projection's too where the driver computes it)
  const int64_t in_w = input_weights ? in : 0;
  const bool rows_apart =
      RnnRowsApart<T>(2.0 * T_ * B * (in_w + ho) * gh_w, B, ho * gh_w, keras && a.stream_weights);

  const RnnReserveLayout::LayerDir* sv = training ? &rl->layer_dir[ld] : nullptr;
  T* res = a.reserve;
  std::optional<MaskedProducts<T, Cell>> masked;  // recurrent dropout
  if (a.rec_masks != nullptr) {
    masked.emplace(d_, B, ho, H, r, a.rec_masks, gate_src, keras && a.stream_weights);
  }

  // A zero initial state (a layer called without one): the first step's recurrent products are of
  // zeros (h, r ⊙ h, h ⊙ m), so their columns of gh are set to zero, not computed.
  const bool h0_zero = ParallelCopy(d_, a.h0 + ld * B * ho, B * ho, h);
  if constexpr (Cell::kHasCellState) ParallelCopy(d_, a.c0 + ld * B * H, B * H, c);
  // One-product cells read that step's gh from one zero row (filling [B, G·H] with zeros was a
  // pass over 4 MB for SimpleRNN(64) at B = 16384; docs/PERFORMANCE.md item 76).
  const bool zero_row_first = h0_zero && kProducts == 1;
  const std::vector<T> zero_gh(zero_row_first ? gh_w : 0, T(0));

  const int32_t* lengths = a.lengths;
  int64_t s0 = 0;  // first step of the current chunk
  // The given input side's row of time t, batch row b (a.projected).
  auto projected_row = [&](int64_t t, int64_t b) {
    return a.projected + ProjectedRowOffset(a, t, b, gh_w);
  };
  // Where row b's saved buffers lie at step s (a row of length len): the reserve's rows in
  // training, scratch rows in inference; and its computed gx, over the activations' row where
  // training computed it there (gx_in_place).
  auto saved_at = [&](int64_t s, int64_t len, int64_t b, T** saved) {
    T* at = save_scratch;
    for (int k = 0; k < Cell::kNumSaved; ++k) {
      const int64_t width = Cell::kSaved[k].Width(H);
      saved[k] = training ? res + sv->saved[k] + (TimeAt(dir, s, len) * B + b) * sv->saved_width[k]
                          : at + b * width;
      at += B * width;
    }
  };
  auto gx_at = [&](int64_t s, int64_t b, T* const* saved) -> const T* {
    return training && gx_in_place ? saved[0] : gx_chunk + ((s - s0) * B + b) * gh_w;
  };
  // The cell's element-wise step for row b at step s.
  auto gates = [&](int64_t s, int64_t b, int phase) {
    const int64_t len = Length(lengths, b, T_);
    if (s >= len) return;
    CpuCellRow<T> cr;
    cr.H = H;
    cr.b_w = b_w;
    cr.gh = s == 0 && zero_row_first ? zero_gh.data() : gh + b * gh_w;
    cr.b_r = b_r;
    cr.h_prev = h + b * ho;
    cr.c_prev = c + b * H;
    cr.h = out + b * H;
    cr.c = c_new + b * H;
    cr.rec_in = masked ? masked->RecurrentInput(b) : phases->RecurrentInput(b);
    cr.gx_gate_offset = a.projected != nullptr ? a.projected_gate_offset : nullptr;
    // Training: the saved buffers go to the reserve, the activations over gx where gx was
    // computed there (gx_in_place).
    // Inference: to scratch rows. One instantiation for both, so that both compute bitwise the
    // same outputs (the compiler's choices of fused multiply-adds could differ between two).
    // A given input side (a.projected) is read where it lies, at the row's time: no copy.
    saved_at(s, len, b, cr.saved);
    cr.gx = a.projected != nullptr ? projected_row(TimeAt(dir, s, len), b) : gx_at(s, b, cr.saved);
    CellForwardPhaseRow<Cell, /*kSave=*/true>(cr, phase);
  };
  // Single-gate cells (SimpleRNN) of narrow full rows: a step's rows lie one after the other in
  // every buffer the cell reads and writes, so the cell runs over rows [r0, r1) as one row of
  // (r1 - r0)·H units, the biases repeated for each row (bias_rows: b_w's, then b_r's): whole
  // vectors where each row of H < 16 filled part of one (docs/PERFORMANCE.md item 112). Not for
  // step 0 from a zero state, where every row reads one zero row of gh.
  const bool flat = CellRunsFlat<Cell>(H, ho) && lengths == nullptr && a.projected == nullptr;
  std::vector<T> bias_rows;
  if (flat) {
    bias_rows.resize(2 * B * H);
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(b_w, H, bias_rows.data() + b * H);
      std::copy_n(b_r, H, bias_rows.data() + (B + b) * H);
    }
  }
  auto gates_flat = [&](int64_t s, int64_t r0, int64_t r1) {
    CpuCellRow<T> cr;
    cr.H = (r1 - r0) * H;
    cr.b_w = bias_rows.data() + r0 * H;
    cr.b_r = bias_rows.data() + (B + r0) * H;
    cr.gh = gh + r0 * gh_w;
    cr.h_prev = h + r0 * ho;
    cr.h = out + r0 * H;
    saved_at(s, T_, r0, cr.saved);
    cr.gx = gx_at(s, r0, cr.saved);
    CellForwardPhaseRow<Cell, /*kSave=*/true>(cr, 0);
  };
  // Cells of several gates at H = 1 over full rows: a vector of rows at a time, each gate gathered
  // from the rows' gx and gh (CpuUnitRows).
  const bool unit_rows =
      CellRunsUnitRows<Cell>(H, ho) && lengths == nullptr && a.projected == nullptr;
  constexpr int64_t kUnitRows = CpuUnitRowsForwardIo<T>::kRows;
  auto gates_unit_rows = [&](int64_t s, int64_t r0) {
    CpuUnitRows<T> u;
    const bool gh_zero = s == 0 && zero_row_first;
    u.gh = gh_zero ? zero_gh.data() : gh + r0 * gh_w;
    u.gh_stride = gh_zero ? 0 : gh_w;
    u.b_w = b_w;
    u.b_r = b_r;
    u.h_prev = h + r0;
    u.c_prev = c + r0;
    u.h = out + r0;
    u.c = c_new + r0;
    saved_at(s, T_, r0, u.saved);
    for (int k = 0; k < Cell::kNumSaved; ++k) u.saved_stride[k] = Cell::kSaved[k].Width(H);
    u.gx = gx_at(s, r0, u.saved);
    u.gx_stride = gh_w;
    if constexpr (kProducts == 1) CellForwardUnitRows<Cell>(u);
  };
  auto gate_rows = [&](int64_t s, int64_t r0, int64_t r1, int phase) {
    if (flat && !(s == 0 && zero_row_first)) {
      gates_flat(s, r0, r1);
      return;
    }
    int64_t b = r0;
    if (unit_rows) {
      for (; b + kUnitRows <= r1; b += kUnitRows) gates_unit_rows(s, b);
    }
    for (; b < r1; ++b) gates(s, b, phase);
  };
  // (Tried, before the row ranges: one task computing the product and the gate math of a block of
  // 16 units; it cost 35% more CPU than a product pass and a gate pass — docs/PERFORMANCE.md
  // item 5.)
  for (; s0 < T_; s0 += Tc) {
    const int64_t s1 = std::min(T_, s0 + Tc);
    // The input projection of this chunk's steps, the same products whether training or not (so
    // that both give bitwise the same outputs). Training computes gx in place of the activations
    // it becomes (gx_in_place): straight into the reserve for the forward direction (step s reads
    // time s), by way of gx_chunk for the reverse one.
    // (A given input side, a.projected, is read in place by `gates`: nothing to compute here.
    // Copying it into the reserve cost a pass over [T, B, G·H] in and out of memory.)
    T* gx_out = gx_in_place && dir == 0 ? res + sv->saved[0] + s0 * B * gh_w : gx_chunk;
    if (a.projected == nullptr && a.io_batch_major) {  // each step's rows, T·I apart
      if constexpr (StepGemm<T>::kStrided) {
        input_weights->RunSteps(s1 - s0, B, x + s0 * in, in, T_ * in, gx_out, B * gh_w);
      }
    } else if (a.projected == nullptr) {
      const T* xr = x + s0 * B * in;
      if (dir == 1) {
        GatherReverseRows(lengths, T_, B, s0, s1, in, x, x_chunk);
        xr = x_chunk;
      }
      InputProjection<T>(s_, (s1 - s0) * B, in, xr, input_weights ? &*input_weights : nullptr,
                         gx_out);
      if (gx_in_place && dir == 1) {
        ScatterReverseRows(lengths, T_, B, s0, s1, gh_w, gx_chunk, res + sv->saved[0],
                           /*add=*/false);
      }
    }
    ForEachRowRange(
        B, s0, s1, rows_apart,
        [&](int64_t s, int64_t b0, int64_t b1, bool one_thread) {
          const int64_t n_rows = b1 - b0;
          for (int phase = 0; phase < kProducts; ++phase) {
            if (s == 0 && zero_row_first) {
              // (the gates read zero_gh)
            } else if (s == 0 && h0_zero) {
              const int64_t g0 = CellProductGate<Cell>(phase) * H;
              const int64_t g1 = CellProductGate<Cell>(phase + 1) * H;
              for (int64_t b = b0; b < b1; ++b)
                std::fill(gh + b * gh_w + g0, gh + b * gh_w + g1, T(0));
            } else if (masked) {
              masked->Forward(phase, one_thread, b0, b1, h, gh, gh_w);
            } else if constexpr (kProducts == 1) {
              RunStepGemm(recurrent, one_thread, n_rows, h + b0 * ho, gh + b0 * gh_w);
            } else {
              phases->Forward(phase, one_thread, b0, b1, h, gh, gh_w);
            }
            if (one_thread) {
              gate_rows(s, b0, b1, phase);
            } else {
              ParallelRows(d_, n_rows, 10.0 * gh_w, [&](int64_t begin, int64_t end) {
                gate_rows(s, b0 + begin, b0 + end, phase);
              });
            }
          }
          if (sv) {  // what backprop needs of this step, before the state moves on
            for (int64_t b = b0; b < b1; ++b) {
              const int64_t len = Length(lengths, b, T_);
              if (s >= len) continue;
              const int64_t row = TimeAt(dir, s, len) * B + b;
              if (sv->hprev >= 0) CopyRow(h + b * ho, ho, res + sv->hprev + row * ho);
              if (has_proj) CopyRow(out + b * H, H, res + sv->m + row * H);
            }
          }
          T* h_out = out;
          if (has_proj) {
            RunStepGemm(*projection, one_thread, n_rows, out + b0 * H, h_new + b0 * ho);
            h_out = h_new;
          }
          // The last step writes the final states straight into hn and cn (a copy of h after the
          // loop was one more pass over [B, H_out] and one more wake-up of the pool).
          const bool last_step = s == T_ - 1;
          T* const hn = a.hn + ld * B * ho;
          T* const cn = Cell::kHasCellState ? a.cn + ld * B * H : nullptr;
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t len = Length(lengths, b, T_);
            PrefetchRowAhead</*kWrite=*/1>(io_row, lengths, dir, s, b, b1, y, ow, dir * ho, ho);
            if (s >= len) {
              if (last_step) {  // (the state its last valid step left)
                CopyRow(h + b * ho, ho, hn + b * ho);
                if constexpr (Cell::kHasCellState) CopyRow(c + b * H, H, cn + b * H);
              }
              continue;
            }
            const int64_t t = TimeAt(dir, s, len);
            if (zoning) {  // h_t = h_{t-1} + m ⊙ (h~_t - h_{t-1})
              const T* m = a.zoneout_mask ? a.zoneout_mask + (t * B + b) * ho : nullptr;
              T* hz = h_out + b * ho;
              const T* hp = h + b * ho;
              for (int64_t j = 0; j < ho; ++j) {
                hz[j] = Zoneout(hp[j], hz[j], ZoneoutKeep(m, a.zoneout_keep, j));
              }
            }
            CopyRow(h_out + b * ho, ho, y + io_row(t, b) * ow + dir * ho);
            CopyRow(h_out + b * ho, ho, (last_step ? hn : h) + b * ho);
            if constexpr (Cell::kHasCellState) {
              CopyRow(c_new + b * H, H, (last_step ? cn : c) + b * H);
            }
          }
        },
        /*backward=*/false);
  }
  if (T_ == 0) {  // (no step: the states pass through)
    ParallelCopy(d_, h, B * ho, a.hn + ld * B * ho);
    if constexpr (Cell::kHasCellState) ParallelCopy(d_, c, B * H, a.cn + ld * B * H);
  }
}

// ---------------------------------------------------------------------------------------- backward
template <typename T>
void CpuRnn<T>::Backward(const RnnBackwardArgs<T>& a, T* ws) const {
  const int64_t T_ = a.seq_len, B = a.batch, tb = T_ * B, ow = s_.output_size();
  const bool multi = s_.num_layers > 1;
  RnnReserveLayout rl(s_, T_, B, a.dropout > 0, a.save_hprev);
  const int64_t max_in = s_.MaxLayerInputSize();
  T* dy_below = ws;                              // [T, B, dirs·H_out]: grad of layer l-1's output
  T* dx_buf = dy_below + (multi ? tb * ow : 0);  // [T, B, in]: grad of the input of layer l >= 1
  T* cell_ws = dx_buf + (multi ? tb * max_in : 0);
  if (a.dparams != nullptr) std::fill(a.dparams, a.dparams + s_.ParamsSize(), T(0));
  const T* dy = a.dy;
  for (int l = s_.num_layers - 1; l >= 0; --l) {
    const int64_t in = s_.LayerInputSize(l);
    const T* x = l == 0 ? a.x : a.reserve + rl.layer_input[l];
    // The layer's states after each step: its output (unscaled) where the reserve has no h_prev.
    const T* y = l + 1 == s_.num_layers ? a.y : a.reserve + rl.layer_input[l + 1];
    T* dx = l == 0 ? a.dx : dx_buf;
    DispatchCell(s_.mode, [&](auto cell) {
      using Cell = decltype(cell);
      for (int dir = 0; dir < s_.num_dirs; ++dir)
        BackwardLayerDir<Cell>(a, l, dir, x, in, y, dy, dx, rl, cell_ws);
    });
    if (l > 0) {  // through the dropout between layers l-1 and l
      const T* mask = a.dropout > 0 ? a.reserve + rl.dropout_mask[l] : nullptr;
      for (int64_t i = 0; i < tb * ow; ++i) dy_below[i] = mask ? dx[i] * mask[i] : dx[i];
      dy = dy_below;
    }
  }
}

// The forward direction's grads of the given input side for steps [s0, s1) (d_gx: row (s - s0)·B +
// b, canonical gate order) into a.d_projected in its layout and gate order (RnnBackwardArgs).
// Split over the batch rows on the pool (a chunk of SimpleRNN(64) at B = 16384 is 4 MB).
template <typename T>
void StoreProjectedGrads(const CPUDevice& d, const RnnBackwardArgs<T>& a, int64_t s0, int64_t s1,
                         const T* d_gx, int64_t gh_w, int G) {
  const int64_t B = a.batch, H = gh_w / G;
  ParallelRows(
      d, B, 2.0 * (s1 - s0) * gh_w,
      [&](int64_t b_begin, int64_t b_end) {
        for (int64_t s = s0; s < s1; ++s) {
          for (int64_t b = b_begin; b < b_end; ++b) {
            const T* src = d_gx + ((s - s0) * B + b) * gh_w;
            T* dst = a.d_projected + ProjectedRowOffset(a, s, b, gh_w);
            if (a.d_projected_gate_offset == nullptr) {
              std::copy_n(src, gh_w, dst);
            } else {
              for (int g = 0; g < G; ++g)
                std::copy_n(src + g * H, H, dst + a.d_projected_gate_offset[g]);
            }
          }
        }
      },
      kCopyMinFlops);
}

template <typename T>
template <typename Cell>
void CpuRnn<T>::BackwardLayerDir(const RnnBackwardArgs<T>& a, int layer, int dir, const T* x,
                                 int64_t in, const T* y, const T* dy, T* dx,
                                 const RnnReserveLayout& rl, T* ws) const {
  const int64_t T_ = a.seq_len, B = a.batch, H = s_.num_units, ho = s_.h_out(), G = s_.gates();
  const int64_t gh_w = G * H, ow = s_.output_size();
  const int64_t ld = int64_t(layer) * s_.num_dirs + dir;
  const int64_t max_in = s_.MaxLayerInputSize();
  const int64_t Tc = RnnChunkSteps(T_, B, std::max(gh_w, max_in)), cb = Tc * B;
  const auto blk = s_.LayerBlock(layer);
  const int64_t offset = s_.BlockOffset(layer, dir);
  // Opaque params, or Keras-layout weights (RnnBackwardArgs::recurrent_kernel): then R and W are
  // read transposed ([H, G·H] and [in, G·H] as stored, their gate blocks through gate_src) and the
  // gradients are summed in Keras' orientation, [in | H, G·H] (canonical gate order until written).
  const bool keras = a.recurrent_kernel != nullptr;
  const T* p = keras ? nullptr : a.params + offset;
  T* dp = keras ? nullptr : a.dparams + offset;
  constexpr int kProducts = CellRecurrentProducts<Cell>::value;
  // Keras-layout weight gradients summed in T into the outputs (and, for float, not in double;
  // cells with several products and the masked products per product or gate:
  // SetKerasWeightGrads).
  const bool keras_direct_sums = keras && WeightGradsInT<T>(T_ * B);
  const bool has_proj = s_.num_proj > 0;
  // The bias gradients the call wants: a Keras-layout call leaves d_bias_w / d_bias_r null where
  // no one reads them (a layer without a bias, or the given input side's, which its producer
  // differentiates): each is a pass over a chunk's grads.
  const bool want_bias_w = !keras || a.d_bias_w != nullptr;
  const bool want_bias_r = !keras || a.d_bias_r != nullptr;
  constexpr bool kHasC = Cell::kHasCellState;
  const auto& sv = rl.layer_dir[ld];
  const T* res = a.reserve;
  const int32_t* lengths = a.lengths;
  const bool zoning = a.zoneout_mask != nullptr || a.zoneout_keep != T(1);
  const IoRows io_row{a.io_batch_major, T_, B};

  // Chunk buffers hold the rows of steps [s0, s1) in step order: row (s - s0)·B + b.
  T* next = ws;
  auto take = [&next](int64_t n) {
    T* at = next;
    next += n;
    return at;
  };
  // The block's weight and bias gradients, summed in S: dp itself (zeroed by Backward) where S is
  // T, else a zeroed scratch block written into dp at the end.
  // With keras: W's sums [G·H, in] at 0, R's [G·H, H] at G·H·in, the biases' after them (the
  // opaque block's orientation and sizes; transposed into Keras' at the end: the products summing
  // into [in, G·H] ran the GRU(256) training step 8% slower); with keras_direct_sums the biases'
  // alone.
  using S = typename GradSumType<T>::type;
  S* gsum;
  const int64_t weight_sums = keras_direct_sums ? 0 : (in + ho) * gh_w;
  if (std::is_same<S, T>::value && !keras) {
    gsum = reinterpret_cast<S*>(dp);
  } else {
    T* raw = take(GradSumElements<T>(s_, keras));
    const uintptr_t addr = reinterpret_cast<uintptr_t>(raw);
    gsum = reinterpret_cast<S*>((addr + alignof(S) - 1) / alignof(S) * alignof(S));
    std::fill_n(gsum, keras ? weight_sums + 2 * gh_w : blk.size, S(0));
  }
  S* const gsum_w = keras ? gsum : gsum + blk.w;
  S* const gsum_r = keras ? gsum + gh_w * in : gsum + blk.r;
  S* const gsum_bw = keras ? gsum + weight_sums : gsum + blk.b_w;
  S* const gsum_br = gsum_bw + gh_w;
  // keras_direct_sums with grad_gate_src: a chunk's grads in Keras' gate order, for the products.
  T* const keras_order_rows = keras_direct_sums && a.grad_gate_src ? take(2 * cb * gh_w) : nullptr;
  // Grads of the pre-activations, x side (with a.d_projected, the forward direction writes them
  // straight into its rows: see the chunk loop) and R's side.
  T* d_gx_buf = take(cb * gh_w);
  T* d_gh_buf = Cell::kDistinctRecurrentGrad ? take(cb * gh_w) : nullptr;
  T* x_rows = take(cb * max_in);                   // reverse direction: the gathered input
  T* dx_rows = take(cb * max_in);                  // reverse direction: its grad
  T* hprev_rows = take(cb * ho);                   // the state before each step
  T* cprev_rows = kHasC ? take(cb * H) : nullptr;  // the cell state before each step
  T* dh_all = has_proj ? take(cb * ho) : nullptr;  // grad of each step's output (projection)
  T* m_rows = has_proj ? take(cb * H) : nullptr;   // reverse direction: the gathered m
  T* dh = take(B * ho);                            // grad of the state
  T* dh_rec = take(B * ho);                        // grad through R
  T* dh_direct = take(B * ho);
  T* dm = take(B * H);  // grad of m (projection); zoneout (no projection): m ⊙ δ
  T* dc = take(B * H);
  T* pack = next;
  const bool stream = keras && a.stream_weights;
  const int64_t in_w = s_.HasInputWeights(layer) && a.d_projected == nullptr ? in : 0;
  const bool rows_apart = RnnRowsApart<T>(4.0 * T_ * B * (in_w + ho) * gh_w, B, ho * gh_w, stream);
  // (with masks the products are MaskedProductGrads': R itself is never multiplied, not packed)
  const bool stream_r = stream || (keras && a.rec_masks != nullptr);
  // (cells with several products a step multiply R's blocks one product at a time, packed each by
  // itself: PhaseProductGrads)
  const bool pack_r = !stream_r && kProducts == 1;
  const T* const r_weights = keras ? a.recurrent_kernel : p + blk.r;
  const StepGemm<T> recurrent(d_, r_weights, gh_w, ho, /*transposed=*/keras, pack, a.gate_src, H,
                              !pack_r);
  if (pack_r) pack += StepGemm<T>::StorageSize(gh_w, ho);
  std::optional<PhaseProductGrads<T, Cell>> phases;  // (recurrent dropout: MaskedProductGrads)
  if (a.rec_masks == nullptr) {
    phases.emplace(d_, B, cb, ho, H, r_weights, keras, a.gate_src, pack, stream_r);
    if (!stream_r) pack += PhaseProductGrads<T, Cell>::StorageSize(ho, H);
  }
  std::optional<StepGemm<T>> projection;
  if (has_proj) {
    projection.emplace(d_, p + blk.p, ho, H, /*transposed=*/false, pack);
    pack += StepGemm<T>::StorageSize(ho, H);
  }
  std::optional<StepGemm<T>> input_weights;  // dX = D_gx · W, W [G·H, in] as stored
  if (s_.HasInputWeights(layer) && a.d_projected == nullptr && dx != nullptr) {
    input_weights.emplace(d_, keras ? a.kernel : p + blk.w, gh_w, in, /*transposed=*/keras, pack,
                          a.gate_src, H, stream);
  }
  std::optional<MaskedProductGrads<T, Cell>> masked;  // recurrent dropout
  if (a.rec_masks != nullptr) {
    masked.emplace(d_, B, cb, ho, H, r_weights, a.rec_masks, keras, a.gate_src, stream);
  }

  ParallelCopy(d_, a.dhn + ld * B * ho, B * ho, dh);
  if constexpr (kHasC) ParallelCopy(d_, a.dcn + ld * B * H, B * H, dc);
  const bool h0_zero = AllZero(d_, a.h0 + ld * B * ho, B * ho);  // (see the weight gradients)
  // Small layers of many rows read each step's states before it where they lie (h0 and c0, y and
  // the reserve's c) rather than in a chunk's copies (hprev_rows, cprev_rows), and R's gradient is
  // a product a step over those rows: at G·H <= 16 the copies cost as much as the cells' step
  // (docs/PERFORMANCE.md item 112), and up to kStatesInPlaceMaxSums of R's sums they still cost
  // more than the products a step (item 114). The forward direction over full rows (step s is
  // time s), where y holds the states (no saved hprev: see RnnReserveLayout).
  const bool states_in_place = std::is_same<T, float>::value && dir == 0 && lengths == nullptr &&
                               sv.hprev < 0 && kProducts == 1 && a.rec_masks == nullptr &&
                               !keras_direct_sums && B >= kStatesInPlaceMinBatch &&
                               gh_w * ho <= kStatesInPlaceMaxSums;
  auto hprev_at = [&](int64_t s, int64_t b) -> const T* {  // (states_in_place)
    return s == 0 ? a.h0 + (ld * B + b) * ho : y + io_row(s - 1, b) * ow;
  };
  auto cprev_at = [&](int64_t s, int64_t b) -> const T* {  // (states_in_place, kHasC)
    if (s == 0) return a.c0 + (ld * B + b) * H;
    return res + sv.saved[Cell::kCellStateBuffer] + ((s - 1) * B + b) * H;
  };
  // Single-gate cells of narrow full rows: a step's rows as one row (see the forward's gates_flat).
  const bool flat = CellRunsFlat<Cell>(H, ho) && lengths == nullptr;
  // Cells of several gates at H = 1 over full rows: a vector of rows at a time (the forward's
  // gates_unit_rows; CpuUnitGradRows).
  const bool unit_rows = CellRunsUnitRows<Cell>(H, ho) && lengths == nullptr;
  constexpr int64_t kUnitRows = CpuUnitRowsBackwardIo<T>::kRows;
  const bool in_place_d_projected = a.d_projected != nullptr && !a.projected_batch_major &&
                                    a.d_projected_gate_offset == nullptr &&
                                    a.projected_row_stride == 0;

  for (int64_t s1 = T_; s1 > 0; s1 -= Tc) {  // chunks from the last step back
    const int64_t s0 = std::max<int64_t>(0, s1 - Tc), rows = (s1 - s0) * B;
    // The chunk's grads of the given input side are d_projected's rows [s0·B, s1·B) in the
    // forward direction (step s is time s) where it is time-major in the canonical gate order:
    // written there, not copied (a pass over [T, B, G·H]); else stored from d_gx_buf per chunk.
    T* const d_gx = in_place_d_projected && dir == 0 ? a.d_projected + s0 * B * gh_w : d_gx_buf;
    T* const d_gh = Cell::kDistinctRecurrentGrad ? d_gh_buf : d_gx;
    // The states before each step of the chunk (zero past a row's length).
    if (!states_in_place)
      ParallelRows(
          d_, B, 2.0 * (s1 - s0) * (ho + H),
          [&](int64_t b_begin, int64_t b_end) {
            auto copy_h = [&](int64_t s, int64_t b) {
              const int64_t len = Length(lengths, b, T_);
              T* hp = hprev_rows + ((s - s0) * B + b) * ho;
              if (s >= len) {
                std::fill_n(hp, ho, T(0));
              } else if (sv.hprev >= 0) {
                CopyRow(res + sv.hprev + (TimeAt(dir, s, len) * B + b) * ho, ho, hp);
              } else if (s == 0) {
                CopyRow(a.h0 + (ld * B + b) * ho, ho, hp);
              } else {
                CopyRow(y + io_row(TimeAt(dir, s - 1, len), b) * ow + dir * ho, ho, hp);
              }
            };
            if (sv.hprev < 0 && io_row.batch_major) {
              // A batch row's outputs are adjacent in a batch-major y: read in memory order, row by
              // row. (Step by step, each row a new page: the copies were 3.5% of the op thread's
              // samples in a GRU + recurrent dropout training step, now 2.3%; docs/PERFORMANCE.md
              // item 101.)
              for (int64_t b = b_begin; b < b_end; ++b) {
                for (int64_t s = s0; s < s1; ++s) copy_h(s, b);
              }
            } else {
              for (int64_t s = s0; s < s1; ++s) {
                for (int64_t b = b_begin; b < b_end; ++b) copy_h(s, b);
              }
            }
            if constexpr (kHasC) {  // c after the previous step, from the cell's saved buffer
              const int64_t c_saved = sv.saved[Cell::kCellStateBuffer];
              for (int64_t s = s0; s < s1; ++s) {
                for (int64_t b = b_begin; b < b_end; ++b) {
                  const int64_t len = Length(lengths, b, T_);
                  T* cp = cprev_rows + ((s - s0) * B + b) * H;
                  if (s >= len) {
                    std::fill_n(cp, H, T(0));
                    continue;
                  }
                  const T* src = s == 0 ? a.c0 + (ld * B + b) * H
                                        : res + c_saved + (TimeAt(dir, s - 1, len) * B + b) * H;
                  CopyRow(src, H, cp);
                }
              }
            }
          },
          kCopyMinFlops);
    ForEachRowRange(
        B, s0, s1, rows_apart,
        [&](int64_t s, int64_t b0, int64_t b1, bool one_thread) {
          const int64_t k = (s - s0) * B;  // this step's first chunk row
          const int64_t n_rows = b1 - b0;
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t len = Length(lengths, b, T_);
            PrefetchRowAhead(io_row, lengths, dir, s, b, b1, dy, ow, dir * ho, ho);
            if (s >= len) {
              if (has_proj) std::fill_n(dh_all + (k + b) * ho, ho, T(0));
              continue;
            }
            const int64_t t = TimeAt(dir, s, len);
            const T* dyr = dy + io_row(t, b) * ow + dir * ho;
            for (int64_t j = 0; j < ho; ++j) dh[b * ho + j] += dyr[j];
            if (zoning) {  // the cell's h~ gets m ⊙ δ (dm: free without a projection)
              const T* m = a.zoneout_mask ? a.zoneout_mask + (t * B + b) * ho : nullptr;
              for (int64_t j = 0; j < ho; ++j) {
                dm[b * ho + j] =
                    ZoneoutBackward(dh[b * ho + j], ZoneoutKeep(m, a.zoneout_keep, j)).d_tilde;
              }
            }
            if (has_proj) CopyRow(dh + b * ho, ho, dh_all + (k + b) * ho);
          }
          // grad of the cell's own output (h, or m before projection)
          const T* dout = zoning ? dm : dh;
          if (has_proj) {
            RunStepGemm(*projection, one_thread, n_rows, dh + b0 * ho, dm + b0 * H);
            dout = dm;
          }
          int phase = 0;  // the phase gate_rows runs (one-product cells: their Backward)
          auto gate_rows = [&](int64_t begin, int64_t end) {
            if (flat) {  // rows [begin, end) as one row (see the forward's gates_flat)
              CpuCellGradRow<T> gr;
              gr.H = (end - begin) * H;
              gr.saved[0] =
                  res + sv.saved[0] + (TimeAt(dir, s, T_) * B + begin) * sv.saved_width[0];
              gr.dh = dout + begin * H;  // (CellRunsFlat: the cell reads no state)
              gr.dx = d_gx + (k + begin) * gh_w;
              gr.dr = d_gh + (k + begin) * gh_w;
              CellBackwardPhaseRow<Cell>(gr, 0);
              return;
            }
            int64_t b = begin;
            if constexpr (kProducts == 1) {
              for (; unit_rows && b + kUnitRows <= end; b += kUnitRows) {
                CpuUnitGradRows<T> u;
                const int64_t row = TimeAt(dir, s, T_) * B + b;
                for (int i = 0; i < Cell::kNumSaved; ++i) {
                  u.saved[i] = res + sv.saved[i] + row * sv.saved_width[i];
                  u.saved_stride[i] = sv.saved_width[i];
                }
                u.h_prev = states_in_place ? hprev_at(s, b) : hprev_rows + k + b;
                if (states_in_place) u.h_prev_stride = hprev_at(s, b + 1) - u.h_prev;
                if constexpr (kHasC)
                  u.c_prev = states_in_place ? cprev_at(s, b) : cprev_rows + k + b;
                u.dh = dout + b;
                u.dc = dc + b;
                u.dx = d_gx + (k + b) * gh_w;
                u.dr = d_gh + (k + b) * gh_w;
                u.d_stride = gh_w;
                u.dh_direct = dh_direct + b;
                CellBackwardUnitRows<Cell>(u);
              }
            }
            for (; b < end; ++b) {
              const int64_t len = Length(lengths, b, T_);
              T* dgx = d_gx + (k + b) * gh_w;
              T* dgh = d_gh + (k + b) * gh_w;
              if (s >= len) {  // no step here: zero grads (the weight-gradient products read them)
                std::fill_n(dgx, gh_w, T(0));
                if (Cell::kDistinctRecurrentGrad) std::fill_n(dgh, gh_w, T(0));
                continue;
              }
              const int64_t row = TimeAt(dir, s, len) * B + b;
              CpuCellGradRow<T> gr;
              gr.H = H;
              for (int k = 0; k < Cell::kNumSaved; ++k) {
                gr.saved[k] = res + sv.saved[k] + row * sv.saved_width[k];
              }
              gr.h_prev = states_in_place ? hprev_at(s, b) : hprev_rows + (k + b) * ho;
              gr.c_prev = !kHasC            ? nullptr
                          : states_in_place ? cprev_at(s, b)
                                            : cprev_rows + (k + b) * H;
              gr.dh = dout + b * H;
              gr.dc = dc + b * H;
              gr.dx = dgx;
              gr.dr = dgh;
              gr.dh_direct = dh_direct + b * ho;
              gr.d_rec_in = masked ? masked->DRecurrentInput(b) : phases->DRecurrentInput(b);
              CellBackwardPhaseRow<Cell>(gr, phase);
            }
          };
          // Step 0's grad of h_prev is h0's alone: with skip_state_grads, not computed.
          const bool last_for_state = s == 0 && a.skip_state_grads;
          for (phase = kProducts - 1; phase >= 0; --phase) {
            if (one_thread) {
              gate_rows(b0, b1);
            } else {
              ParallelRows(d_, n_rows, 10.0 * gh_w,
                           [&](int64_t begin, int64_t end) { gate_rows(b0 + begin, b0 + end); });
            }
            if (phase == 0 && last_for_state) {
              // (phase 0's product is the one into h_prev's grad; later phases' feed phase 0)
            } else if (masked) {
              masked->Backward(phase, one_thread, b0, b1, d_gh + k * gh_w, gh_w, dh_rec);
            } else if constexpr (kProducts == 1) {
              RunStepGemm(recurrent, one_thread, n_rows, d_gh + (k + b0) * gh_w, dh_rec + b0 * ho);
            } else {
              phases->Backward(phase, one_thread, b0, b1, d_gh + k * gh_w, gh_w, dh_rec);
            }
          }
          if (last_for_state) return;
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t len = Length(lengths, b, T_);
            if (s >= len) continue;  // rows past their length pass dh through
            if (zoning) {            // h_{t-1} gets (1 - m) ⊙ δ besides the cell's part
              const T* m =
                  a.zoneout_mask ? a.zoneout_mask + (TimeAt(dir, s, len) * B + b) * ho : nullptr;
              for (int64_t j = 0; j < ho; ++j) {
                dh_rec[b * ho + j] +=
                    ZoneoutBackward(dh[b * ho + j], ZoneoutKeep(m, a.zoneout_keep, j)).d_prev;
              }
            }
            if constexpr (Cell::kDirectHPrevGrad) {
              for (int64_t j = 0; j < ho; ++j) {
                dh[b * ho + j] = dh_rec[b * ho + j] + dh_direct[b * ho + j];
              }
            } else {
              CopyRow(dh_rec + b * ho, ho, dh + b * ho);
            }
          }
        },
        /*backward=*/true);

    // The chunk's share of the weight and bias gradients: one product each. The forward direction
    // reads time s at step s, so its rows are the reserve's and the input's own; the reverse
    // direction's are gathered.
    const bool projected = a.d_projected != nullptr;  // no x, no W: d_gx is the result
    const T* xr = projected ? nullptr : x + s0 * B * in;
    const T* mr = has_proj ? res + sv.m + s0 * B * H : nullptr;
    if (dir == 1) {
      if (!projected) GatherReverseRows(lengths, T_, B, s0, s1, in, x, x_rows);
      if (has_proj) GatherReverseRows(lengths, T_, B, s0, s1, H, res + sv.m, m_rows);
      xr = x_rows, mr = m_rows;
    }
    auto saved_rows = [&](int k, T* buf) -> const T* {
      const int64_t width = sv.saved_width[k];
      if (dir == 0) return res + sv.saved[k] + s0 * B * width;
      GatherReverseRows(lengths, T_, B, s0, s1, width, res + sv.saved[k], buf);
      return buf;
    };
    // R's gradient: step 0's rows add h0ᵀ · grads = 0 where the initial state is zero (a layer
    // called without one), so they are left out (all of a one-step call's).
    const int64_t r_skip = s0 == 0 && h0_zero ? B : 0, r_rows = rows - r_skip;
    const T* const hprev_r = hprev_rows + r_skip * ho;
    auto saved_rows_r = [&](int k, T* buf) -> const T* {
      return saved_rows(k, buf) + r_skip * sv.saved_width[k];
    };
    if (keras_direct_sums) {  // straight into the outputs (WeightGradsInT), Keras' gate order
      const bool first = s1 == T_;
      auto keras_order = [&](const T* grads, T* buf) -> const T* {
        if (a.grad_gate_src == nullptr) return grads;
        for (int64_t i = 0; i < rows; ++i)
          for (int g = 0; g < G; ++g)
            std::copy_n(grads + i * gh_w + g * H, H, buf + i * gh_w + a.grad_gate_src[g] * H);
        return buf;
      };
      const T* kx = keras_order(d_gx, keras_order_rows);
      const T* kh =
          Cell::kDistinctRecurrentGrad ? keras_order(d_gh, keras_order_rows + cb * gh_w) : kx;
      if (!projected && a.io_batch_major) {  // a product a step: its rows of x T·I apart
        for (int64_t s = s0; s < s1; ++s) {
          WeightGradInT<T>(d_, in, gh_w, B, x + s * in, kx + (s - s0) * B * gh_w, a.d_kernel,
                           !first || s > s0, /*ldb=*/0, /*ldc=*/0, /*lda=*/T_ * in);
        }
      } else if (!projected) {
        WeightGradInT<T>(d_, in, gh_w, rows, xr, kx, a.d_kernel, !first);
      }
      // (With r_rows = 0 these write zeros, or add nothing.)
      const T* const kh_r = kh + r_skip * gh_w;
      if (masked) {
        masked->SetKerasWeightGrads(r_rows, kh_r, gh_w, hprev_r, saved_rows_r, a.grad_gate_src,
                                    a.d_recurrent_kernel, !first);
      } else if constexpr (kProducts == 1) {
        WeightGradInT<T>(d_, ho, gh_w, r_rows, hprev_r, kh_r, a.d_recurrent_kernel, !first);
      } else {
        phases->SetKerasWeightGrads(r_rows, kh_r, gh_w, hprev_r, saved_rows_r, a.grad_gate_src,
                                    a.d_recurrent_kernel, !first);
      }
    } else if (s_.HasInputWeights(layer) && !projected) {
      if (!a.io_batch_major) {
        AddWeightGrad<T>(d_, gh_w, in, rows, d_gx, xr, gsum_w);
      } else if constexpr (std::is_same<T, float>::value) {
        if (gh_w * in <= kStepsSplitMaxSums) {  // a product a step, x's rows T·I apart
          AddWeightGradSteps(d_, gh_w, in, s1 - s0, B, d_gx, B * gh_w, gh_w, x + s0 * in, in,
                             T_ * in, gsum_w);
        } else {
          // The chunk's rows of x gathered in step order, one product: products of a step's B rows
          // each packed their own blocks, a dispatch each (GRU(256) training at B = 64, T = 100
          // 7% slower in place than transposed; docs/PERFORMANCE.md item 113).
          ParallelRows(
              d_, B, 2.0 * (s1 - s0) * in,
              [&](int64_t b0, int64_t b1) {
                for (int64_t b = b0; b < b1; ++b) {
                  for (int64_t s = s0; s < s1; ++s) {
                    CopyRow(x + io_row(s, b) * in, in, x_rows + ((s - s0) * B + b) * in);
                  }
                }
              },
              kCopyMinFlops);
          AddWeightGrad<T>(d_, gh_w, in, rows, d_gx, x_rows, gsum_w);
        }
      }
    }
    const T* const d_gh_r = d_gh + r_skip * gh_w;
    if (keras_direct_sums || r_rows == 0) {
      // (above; or nothing to add)
    } else if (masked) {
      masked->AddWeightGrads(r_rows, d_gh_r, gh_w, hprev_r, saved_rows_r, gsum_r);
    } else if (states_in_place) {  // a product a step, its rows of h_prev where they lie
      if constexpr (std::is_same<T, float>::value) {
        int64_t s = s0;
        if (s == 0) {  // h0's rows
          if (!h0_zero) {
            AddWeightGradStrided(d_, gh_w, ho, B, d_gh, gh_w, hprev_at(0, 0), gsum_r, /*ldc=*/0,
                                 /*ldb=*/hprev_at(0, 1) - hprev_at(0, 0));
          }
          ++s;
        }
        if (s < s1) {  // y's, a step's rows hprev_at(s + 1, 0) - hp after the last's
          const T* hp = hprev_at(s, 0);
          AddWeightGradSteps(d_, gh_w, ho, s1 - s, B, d_gh + (s - s0) * B * gh_w, B * gh_w, gh_w,
                             hp, hprev_at(s + 1, 0) - hp, hprev_at(s, 1) - hp, gsum_r);
        }
      }
    } else if constexpr (kProducts == 1) {
      AddWeightGrad<T>(d_, gh_w, ho, r_rows, d_gh_r, hprev_r, gsum_r);
    } else {
      phases->AddWeightGrads(r_rows, d_gh_r, gh_w, hprev_r, saved_rows_r, gsum_r);
    }
    if (has_proj) AddWeightGrad<T>(d_, ho, H, rows, dh_all, mr, gsum + blk.p);
    // (cells whose two sides of the gates get the same grads: one sum, copied after the chunks)
    if (want_bias_w || (!Cell::kDistinctRecurrentGrad && want_bias_r))
      AddColumnSums(d_, rows, gh_w, d_gx, gsum_bw);
    if (Cell::kDistinctRecurrentGrad && want_bias_r) AddColumnSums(d_, rows, gh_w, d_gh, gsum_br);

    if (projected) {  // the grads of the given input side: d_gx's rows
      if (dir == 1) {
        ScatterReverseRows(lengths, T_, B, s0, s1, gh_w, d_gx, a.d_projected, /*add=*/false);
      } else if (!in_place_d_projected) {  // (else the forward direction wrote them in place)
        StoreProjectedGrads(d_, a, s0, s1, d_gx, gh_w, int(G));
      }
      continue;
    }
    // Grad of the layer input: the forward direction writes its rows, the reverse one adds to them.
    if (dx == nullptr) continue;
    T* dxr = dir == 0 ? dx + s0 * B * in : dx_rows;
    if (input_weights && a.io_batch_major) {  // a product a step into its rows, T·I apart
      if constexpr (StepGemm<T>::kStrided) {
        input_weights->RunSteps(s1 - s0, B, d_gx, B * gh_w, gh_w, dx + s0 * in, in, T_ * in);
      }
    } else if (input_weights) {
      input_weights->Run(rows, d_gx, dxr);
    } else {  // skip_input: in == H, every gate saw the input
      for (int64_t i = 0; i < rows; ++i) {
        T* dxi = dxr + i * in;
        std::fill_n(dxi, in, T(0));
        for (int g = 0; g < G; ++g)
          for (int64_t j = 0; j < H; ++j) dxi[j] += d_gx[i * gh_w + g * H + j];
      }
    }
    if (dir == 1) ScatterReverseRows(lengths, T_, B, s0, s1, in, dx_rows, dx, /*add=*/true);
  }
  if (!Cell::kDistinctRecurrentGrad) std::copy_n(gsum_bw, gh_w, gsum_br);
  // (zeros with skip_state_grads)
  ParallelCopy(d_, a.skip_state_grads ? nullptr : dh, B * ho, a.dh0 + ld * B * ho);
  if constexpr (kHasC)
    ParallelCopy(d_, a.skip_state_grads ? nullptr : dc, B * H, a.dc0 + ld * B * H);
  if (keras) {
    // The sums [G·H, n] to T in Keras' [n, G·H], gate blocks to grad_gate_src's.
    auto write_transposed = [&](const S* sums, int64_t n, T* out) {
      if (keras_direct_sums) return;
      WriteTransposedSums(d_, sums, n, n, G, H, a.grad_gate_src, out, gh_w);
    };
    if (a.d_projected == nullptr) write_transposed(gsum_w, in, a.d_kernel);
    write_transposed(gsum_r, ho, a.d_recurrent_kernel);
    for (int64_t j = 0; j < gh_w; ++j) {
      if (want_bias_w) a.d_bias_w[j] = static_cast<T>(gsum_bw[j]);
      if (want_bias_r) a.d_bias_r[j] = static_cast<T>(gsum_br[j]);
    }
  } else if constexpr (!std::is_same<S, T>::value) {
    for (int64_t i = 0; i < blk.size; ++i) dp[i] = static_cast<T>(gsum[i]);
  }
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_RNN_CPU_DRIVER_H_
