// The fused RNN's memory on CPU: where each saved piece of state lives in reserve_space
// (RnnReserveLayout, from the saved buffers the cells declare in cc/cells/rnn_cells.h), the chunks
// of time steps the products run over, the workspace a call asks of its caller, and the helpers
// that move rows between time order and a direction's step order.
#ifndef TF_RNN_OPS_CC_KERNELS_RNN_LAYOUTS_H_
#define TF_RNN_OPS_CC_KERNELS_RNN_LAYOUTS_H_

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cc/cells/rnn_cells.h"
#include "cc/kernels/cpu_gemm.h"
#include "cc/kernels/rnn_params.h"

namespace tf_rnn_ops {

// Where each piece of saved state lives in reserve_space, in units of T: per layer and direction,
// the buffers the cell saves (rnn_cells.h: kSaved, in its order; buffer 0 the gate activations),
// then the driver's own. What backprop can read elsewhere is not saved: the state before a step is
// the initial state or the state after the previous step, and a layer's states after each step are
// its output (y for the last layer, the next layer's saved input otherwise). Only where that output
// was changed after the fact (dropout scaled it) or rounded (16-bit types: `save_hprev`) are the
// states kept here.
struct RnnReserveLayout {
  struct LayerDir {
    int num_saved = 0;
    int64_t saved[kMaxCellSaved] = {};        // the cell's buffer k: [T, B, saved_width[k]]
    int64_t saved_width[kMaxCellSaved] = {};  // (time order)
    int64_t hprev = -1;  // [T, B, H_out] hidden state before the step, where saved
    int64_t m = -1;      // with a projection: [T, B, H] the cell's output before it
  };
  std::vector<LayerDir> layer_dir;    // index layer * num_dirs + dir
  std::vector<int64_t> layer_input;   // layer >= 1: [T, B, dirs·H_out] its input (after dropout)
  std::vector<int64_t> dropout_mask;  // layer >= 1, dropout > 0: the scale applied to that input
  int64_t size = 0;

  RnnReserveLayout(const RnnModelShape& s, int64_t T, int64_t B, bool has_dropout,
                   bool save_hprev) {
    const int64_t tb = T * B, H = s.num_units;
    auto take = [this](int64_t n) {
      const int64_t at = size;
      size += n;
      return at;
    };
    for (int l = 0; l < s.num_layers; ++l) {
      const bool output_scaled = has_dropout && l + 1 < s.num_layers;
      for (int d = 0; d < s.num_dirs; ++d) {
        LayerDir ld;
        DispatchCell(s.mode, [&](auto cell) {
          using Cell = decltype(cell);
          static_assert(Cell::kNumSaved <= kMaxCellSaved, "raise kMaxCellSaved");
          ld.num_saved = Cell::kNumSaved;
          for (int k = 0; k < Cell::kNumSaved; ++k) {
            ld.saved_width[k] = Cell::kSaved[k].Width(H);
            ld.saved[k] = take(tb * ld.saved_width[k]);
          }
        });
        if (s.num_proj > 0) ld.m = take(tb * H);
        if (save_hprev || output_scaled) ld.hprev = take(tb * s.h_out());
        layer_dir.push_back(ld);
      }
      layer_input.push_back(l == 0 ? -1 : take(tb * s.output_size()));
      dropout_mask.push_back(l == 0 || !has_dropout ? -1 : take(tb * s.output_size()));
    }
  }
};

// The values a batch row of one step saves for backprop: the widths of the cell's saved buffers.
inline int64_t CellSavedWidth(RnnMode mode, int64_t H) {
  return DispatchCell(mode, [H](auto cell) {
    using Cell = decltype(cell);
    int64_t width = 0;
    for (int k = 0; k < Cell::kNumSaved; ++k) width += Cell::kSaved[k].Width(H);
    return width;
  });
}

// Time steps per chunk: the forward's input projection (inference) and the backward's
// weight-gradient products run over chunks of steps, so that their buffers stay small and in cache
// (a [T, B, G·H] buffer, fresh memory at every call, cost more in page faults than its products
// gained) while each product keeps at least kChunkRows rows. Narrow rows (`width`: the widest of
// G·H and the layer inputs) get more rows, so that a chunk's buffers hold about as many values as
// at kChunkRows rows of a 768-wide GRU(256): each chunk is a few dispatches to the threads (the
// row ranges, the products), and a small model (G·H = 128, B = 256) had 60 chunks of 2 steps a
// call, forward and backward (docs/PERFORMANCE.md's log).
constexpr int64_t kChunkRows = 512;
constexpr int64_t kChunkValues = kChunkRows * 768;
inline int64_t RnnChunkSteps(int64_t T_, int64_t B, int64_t width) {
  const int64_t rows = std::max(kChunkRows, kChunkValues / std::max<int64_t>(width, 1));
  return std::max<int64_t>(1, std::min<int64_t>(T_, (rows + B - 1) / std::max<int64_t>(B, 1)));
}

// The scratch (in units of T) for the gradient sums of a layer-direction's params block, where they
// are summed in another type than T (GradSumType): the largest block, and one T to align it.
// keras (Keras-layout gradients, RnnBackwardArgs::recurrent_kernel): always, in S.
template <typename T>
int64_t GradSumElements(const RnnModelShape& s, bool keras = false) {
  using S = typename GradSumType<T>::type;
  if (std::is_same<S, T>::value && !keras) return 0;
  int64_t largest = 0;
  for (int l = 0; l < s.num_layers; ++l) largest = std::max(largest, s.LayerBlock(l).size);
  return largest * int64_t{sizeof(S) / sizeof(T)} + 1;
}

// Whether a call reads Keras-layout weights as stored (StreamGemm) rather than packing them (float
// only). Packing is a pass that reads and writes all the weights; it pays where the packed
// products then run faster than streamed ones: many rows a step, or weights the caches keep
// between the steps. So a call of at most kStreamMaxRows rows (B·T) streams (docs/PERFORMANCE.md
// item 22), and so does a forward of few rows a step over few steps whose weights the caches
// cannot keep, where every step's product reads them from memory either way: LSTM(1024) B = 4,
// T = 3 inference 2.8 -> 1.0 ms, Keras' 1.2 (item 83; at T = 16, or weights of 5 MB, packing kept
// up or won). The backward keeps the first rule: there, streamed products of 16 rows and more
// were slower than the packed ones (item 83).
// With AVX-512, products of 3-8 rows stream on zmm four rows a pass (StreamRun4Zmm, item 84), and
// streaming then also won over 16 steps and from 4 MB of weights (LSTM(1024) B = 4, T = 16
// inference 4.6 -> 3.3 ms, Keras' 4.6; LSTM(512) B = 4, T = 5 0.64 -> 0.50).
constexpr int64_t kStreamMaxRows = 8;
constexpr int64_t kStreamForwardMaxBatch = 8;
constexpr int64_t kStreamForwardMaxSteps = 8;
constexpr double kStreamForwardMinWeightBytes = 8e6;
constexpr int64_t kStreamZmmMinBatch = 3;
constexpr int64_t kStreamZmmMaxSteps = 16;
constexpr double kStreamZmmMinWeightBytes = 4e6;
// Past 8 rows a step, on zmm: calls of at most 128 rows in all (B·T) over 4 MB of weights or more,
// where packing's pass over the weights costs more than the streamed steps lose to the packed ones
// (docs/PERFORMANCE.md item 86: LSTM(1024) B = 12, T = 2 inference 2.9 -> 0.95 ms, Keras' 1.3;
// LSTM(2048) B = 64, T = 2 13.9 -> 8.3; at T = 32 packing won; from 8 MB until the 16-row passes
// of item 87, item 88: LSTM(512), 5.2 MB, B = 16, T = 2 1.6 -> 1.0-1.2, Keras' 1.3; SimpleRNN(1024)
// B = 16, T = 2 1.4 -> 1.0, Keras' 1.2; at 2 MB mixed); up to 256 rows at B <= 32 over
// weights the shared cache cannot keep (kOneRangeMinWeightBytes), read from memory at every step
// either way (LSTM(2048) B = 16, T = 16 47 -> 42 ms; B = 48, T = 4 was not faster).
// One or two rows a step over 4 MB of weights or more: streamed at any number of steps, each
// step's product split across the threads by rows of the weights (StepGemm<float>::Run): the
// packed product of one row reads the panels no faster than the split stream reads the weights
// as stored, and the packing pass is saved (Intel Xeon, item 88: GRU(2048) B = 1, T = 16
// inference 27 -> 15 ms, Keras' 18; GRU(1024) B = 1, T = 64 22 -> 18; LSTM(512), 5.2 MB, B = 2,
// T = 256 35 -> 28). Under 4 MB it was mixed: GRU(512), 3.9 MB, B = 1, T = 256 15 -> 12 ms, but
// B = 2, T = 64 7.0 -> 8.5.
constexpr int64_t kStreamFewRowsMaxBatch = 2;
constexpr double kStreamFewRowsMinWeightBytes = 4e6;
constexpr int64_t kStreamManyRowsMaxBatch = 64;
constexpr int64_t kStreamManyRowsMaxRows = 128;
constexpr int64_t kStreamPastCacheMaxBatch = 32;
constexpr int64_t kStreamPastCacheMaxRows = 256;
template <typename T>
bool RnnStreamWeights(int64_t T_, int64_t B) {
  return std::is_same<T, float>::value && T_ * B <= kStreamMaxRows;
}
// The forward's choice: weight_elements, the products' weights (kernel and recurrent kernel, or
// the recurrent kernel alone where the input side is computed outside the op).
template <typename T>
bool RnnStreamForwardWeights(int64_t T_, int64_t B, int64_t weight_elements) {
  if (RnnStreamWeights<T>(T_, B)) return true;
  if (!std::is_same<T, float>::value) return false;
  const double bytes = static_cast<double>(weight_elements) * sizeof(T);
  if (B <= kStreamFewRowsMaxBatch && bytes >= kStreamFewRowsMinWeightBytes) return true;
  if (B > kStreamForwardMaxBatch) {
    const bool past_cache = bytes >= kOneRangeMinWeightBytes && B <= kStreamPastCacheMaxBatch;
    const int64_t max_rows = past_cache ? kStreamPastCacheMaxRows : kStreamManyRowsMaxRows;
    return UseAvx512() && B <= kStreamManyRowsMaxBatch && T_ * B <= max_rows &&
           bytes >= kStreamZmmMinWeightBytes;
  }
  if (T_ <= kStreamForwardMaxSteps && bytes >= kStreamForwardMinWeightBytes) return true;
  return UseAvx512() && B >= kStreamZmmMinBatch && T_ <= kStreamZmmMaxSteps &&
         bytes >= kStreamZmmMinWeightBytes;
}

// Whether each thread of a call takes its own rows of the batch for all the steps
// (ForEachBatchRange's rows_apart) rather than one range of all rows whose products split by
// columns at every step. Apart, a thread runs its steps without waiting for the other (a split step
// waits for both: ~10-20 us a dispatch on the machines measured), but each thread reads all the
// weights a step.
// - kFewBatchRows (2·kMr) rows or more: apart, unless the weights a step reads are too large for
//   a core's fast reads (kOneRangeMinStepWeightBytes) and the batch small enough that a step's
//   products are bound by reading them (kOneRangeMaxBatch): there two threads reading all of them
//   each step read twice what one split product reads (docs/PERFORMANCE.md item 86: LSTM(2048), R
//   67 MB, B = 16, T = 32 inference 111 -> 91 ms; B = 64 235 -> 195). 10 MB, not item 86's 24 (the
//   Zen 5 L3 kept less than that beside everything else): on the Intel Xeon of item 88 a core reads
//   ~29 GB/s from 4 MB to 64 MB alike (its L3 no faster than that), and one range was faster from
//   12 MB (SimpleRNN(2048), R 16.8 MB, B = 16, T = 16 17 -> 14-15 ms; GRU(1024), R 12.6 MB,
//   13.8 -> 11-12; LSTM(1024) 17.5-18.3 -> 14.5-15; training unchanged); LSTM(512)'s 4.2 MB ran
//   slower as one range.
// - Fewer: one range, unless the step products are small and the weights stay in the caches, where
//   each thread reading all of them costs little (item 85: GRU(256) B = 8, T = 40 inference
//   2.2 -> 0.7 ms; GRU(384) B = 2 2.3 -> 1.0): not past 16 MFLOP a step, nor past 4.5 MB of
//   weights (LSTM(512)'s R, 4.2 MB, in; the layer-norm LSTM(512)'s W and R, 5.2 MB, ran slower
//   apart), nor for a forward that streams large weights (RnnStreamForwardWeights: tuned with the
//   split), nor in a call under kOneThreadForwardFlops, where one dispatch costs more than a
//   second core saves (the recurrent-dropout op's forward has no one-thread device of its own).
// step_weight_elements: the weights a step's products read (each B rows by them, 2 flops a
// multiply-add); call_flops: the whole call's.
constexpr double kFewRowsApartMaxStepFlops = 16e6;
constexpr double kFewRowsApartMaxWeightBytes = 4.5e6;
constexpr int64_t kOneRangeMaxBatch = 64;
constexpr double kOneRangeMinStepWeightBytes = 10e6;
template <typename T>
bool RnnRowsApart(double call_flops, int64_t B, int64_t step_weight_elements, bool stream) {
  const double bytes = static_cast<double>(step_weight_elements) * sizeof(T);
  if (B >= kFewBatchRows) {
    return B > kOneRangeMaxBatch || bytes < kOneRangeMinStepWeightBytes;
  }
  const double step_flops = 2.0 * B * static_cast<double>(step_weight_elements);
  return !stream && call_flops >= kOneThreadForwardFlops &&
         step_flops < kFewRowsApartMaxStepFlops && bytes <= kFewRowsApartMaxWeightBytes;
}

// Whether a Keras layer's batch-major call has the driver read x and y (and dy, dx) in place
// (RnnForwardArgs::io_batch_major) rather than in transposed copies (float only). Each step's
// input products then run by themselves, B rows each (all the steps' in one dispatch:
// StepGemm::RunSteps, AddWeightGradSteps). Measured (docs/PERFORMANCE.md item 75): SimpleRNN(256)
// training at B = 256, T = 4 9% faster, SimpleRNN(128) B = 1024, T = 8 9%; GRU(256) B = 16, T = 8
// and LSTM(128) B = 32, T = 50 10% slower (a dispatch a step then). At any T since item 113, where
// the steps' products became one dispatch: the copies (a pass over x, y, dy and dx each, ~1 ms of
// SimpleRNN(128)'s training step at B = 256, T = 32) cost more, GRU(256) at B = 64, T = 100 9%
// faster; from B = 32 (LSTM(128) at B = 32, T = 50 6% faster, SimpleRNN(64) B = 32, T = 100 24%;
// GRU(256) B = 16, T = 8 and GRU(64) B = 8, T = 100 4-6% slower).
constexpr int64_t kInPlaceMinBatch = 32;
template <typename T>
bool KerasIoInPlace(int64_t B) {
  return std::is_same<T, float>::value && B >= kInPlaceMinBatch;
}

// How a Keras call's x and y (and dy, dx) reach the driver: batch-major ones read in place
// (KerasIoInPlace; TfRnn>KerasRNN, `may_read_in_place`), or transposed into copies (swap);
// [B, T, ·] is the driver's [T, B, ·] as it is in memory where B or T is 1 (neither).
struct KerasIo {
  bool in_place = false, swap = false;
};
template <typename T>
KerasIo KerasIoFor(bool time_major, int64_t T_, int64_t B, bool may_read_in_place = true) {
  KerasIo io;
  if (time_major || B <= 1 || T_ <= 1) return io;
  io.in_place = may_read_in_place && KerasIoInPlace<T>(B);
  io.swap = !io.in_place;
  return io;
}

// Scratch memory (in units of T) that Forward or Backward asks of its caller. stream_weights: the
// products read the Keras weights as stored (RnnForwardArgs::stream_weights, or the backward's)
// and need no packed copies; keras_grads: a backward with Keras-layout gradients.
template <typename T>
int64_t RnnWorkspaceSize(const RnnModelShape& s, int64_t T_, int64_t B, bool backward,
                         bool stream_weights = false, bool keras_grads = false) {
  const int64_t tb = T_ * B, gh = s.gates() * s.num_units, H = s.num_units, ho = s.h_out();
  const int64_t cb = RnnChunkSteps(T_, B, std::max(gh, s.MaxLayerInputSize())) * B;  // chunk rows
  const bool proj = s.num_proj > 0, multi = s.num_layers > 1;
  const int64_t max_in = s.MaxLayerInputSize();
  // Packed copies of R, P and W (as large as the largest layer input) for the products of every
  // step or chunk (the backward packs R and P transposed, and W as stored: dX = D_gx·W). Cells with
  // several recurrent products pack R's blocks one per product (PhaseProducts): forward, each
  // product's last panel may be partly empty, one more panel each; backward, the same size.
  const int64_t extra_panels = CellRecurrentProductCount(s.mode) - 1;
  const int64_t packed =
      stream_weights ? 0
      : backward ? StepGemm<T>::StorageSize(gh, ho) + (proj ? StepGemm<T>::StorageSize(ho, H) : 0) +
                       StepGemm<T>::StorageSize(gh, max_in)
                 : StepGemm<T>::StorageSize(ho, gh) + (proj ? StepGemm<T>::StorageSize(H, ho) : 0) +
                       StepGemm<T>::StorageSize(max_in, gh) +
                       extra_panels * StepGemm<T>::StorageSize(ho, 1);
  if (!backward) {
    return packed + (multi ? 2 * tb * s.output_size() : 0)  // layer outputs (inference ping-pong)
           + cb * gh + cb * max_in                          // gx of a chunk, gathered input
           + B * gh + 2 * B * ho + 3 * B * H                // gh, h, h_new, out, c, c_new
           + B * CellSavedWidth(s.mode, H);                 // saved buffers (inference scratch)
  }
  return packed + (multi ? tb * s.output_size() + tb * max_in : 0)   // dY below, dX of layer >= 1
         + cb * gh * (CellHasDistinctRecurrentGrad(s.mode) ? 2 : 1)  // D_gx (and D_gh) of a chunk
         + 2 * cb * max_in + cb * ho                // gathered x and its grad, h_prev
         + (CellHasCellState(s.mode) ? cb * H : 0)  // c_prev
         + (proj ? cb * ho + cb * H : 0)            // dh, gathered m (projection)
         + 3 * B * ho + 2 * B * H                   // per-step grads
         + GradSumElements<T>(s, keras_grads)       // a block's gradient sums
         + (keras_grads ? 2 * cb * gh : 0);         // a chunk's grads in Keras' gate order
}

// ------------------------------------------------------------------------------ time-order rows
// The row of time t, batch row b in a [T, B, ·] buffer, or a [B, T, ·] one (batch_major: the
// Keras layers' x and y, read in place, RnnForwardArgs::io_batch_major).
struct IoRows {
  bool batch_major;
  int64_t T_, B;
  int64_t operator()(int64_t t, int64_t b) const { return batch_major ? b * T_ + t : t * B + b; }
};

// The batch from which the backward of a small layer reads each step's states in place
// (rnn_cpu_driver.h, states_in_place): R's gradient is then a product of B rows a step.
constexpr int64_t kStatesInPlaceMinBatch = 64;
// ... and the largest R (G·H · H values) it does that for. Training steps, in place against the
// chunk's copies (docs/PERFORMANCE.md item 114): SimpleRNN(64) at B = 256, T = 32 and GRU(32) /
// LSTM(32) at B = 512-1024, T = 16 15-18% faster, GRU(64) / LSTM(64) / SimpleRNN(128) at B = 64,
// T = 100 9-10%, SimpleRNN(192) (36.9 K) 6%; GRU(128) (49 K), LSTM(128) and SimpleRNN(256) (64 K)
// 2-6% slower at B = 64-512 (not profiled; likely each thread's double sums of R, a buffer of its
// own, and the products a step of B rows).
constexpr int64_t kStatesInPlaceMaxSums = 40 * 1024;
// (R's gradient in place is then AddWeightGradSteps' one dispatch, not its product a step.)
static_assert(kStatesInPlaceMaxSums <= kStepsSplitMaxSums, "states in place past one dispatch");

// A step's rows of a batch-major buffer are T·width values apart (a page at T·width = 1024 floats),
// a pattern no hardware prefetcher follows: the loops over them ask for the row kIoPrefetchRows
// ahead, each cache line of its n values (kWrite: for a store). Without it the GRU(64) backward's
// pass adding dy into dh at B = 1024, T = 16 waited on every row (docs/PERFORMANCE.md item 77;
// the same row of the next step instead, a whole step ahead, was no faster).
constexpr int64_t kIoPrefetchRows = 16;
template <int kWrite = 0, typename T>
inline void PrefetchValues(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 64 / int64_t(sizeof(T))) __builtin_prefetch(p + i, kWrite);
}

// Zeroes the rows [t, b, :] of a [T, B, width] buffer (batch_major: [B, T, width]) with
// t >= lengths[b] (none without lengths).
template <typename T>
void ZeroRowsPastLengths(const int32_t* lengths, int64_t T_, int64_t B, int64_t width, T* buf,
                         bool batch_major = false) {
  if (lengths == nullptr) return;
  const IoRows row{batch_major, T_, B};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = lengths[b]; t < T_; ++t) std::fill_n(buf + row(t, b) * width, width, T(0));
}

// Copies the rows that steps [s0, s1) of the reverse direction read (time len_b - 1 - s of row b)
// into `dst` in step order, [(s - s0)·B + b, :]; rows past a length are zero.
template <typename T>
void GatherReverseRows(const int32_t* lengths, int64_t T_, int64_t B, int64_t s0, int64_t s1,
                       int64_t width, const T* src, T* dst) {
  for (int64_t s = s0; s < s1; ++s) {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = lengths ? lengths[b] : T_;
      T* row = dst + ((s - s0) * B + b) * width;
      if (s < len) {
        CopyRow(src + ((len - 1 - s) * B + b) * width, width, row);
      } else {
        std::fill_n(row, width, T(0));
      }
    }
  }
}

// The inverse of GatherReverseRows: the step-order rows of `src` written (or, with `add`, added)
// to the time rows of `dst` they belong to; rows past a length are skipped.
template <typename T>
void ScatterReverseRows(const int32_t* lengths, int64_t T_, int64_t B, int64_t s0, int64_t s1,
                        int64_t width, const T* src, T* dst, bool add) {
  for (int64_t s = s0; s < s1; ++s) {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = lengths ? lengths[b] : T_;
      if (s >= len) continue;
      const T* row = src + ((s - s0) * B + b) * width;
      T* out = dst + ((len - 1 - s) * B + b) * width;
      if (add) {
        for (int64_t j = 0; j < width; ++j) out[j] += row[j];
      } else {
        CopyRow(row, width, out);
      }
    }
  }
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_RNN_LAYOUTS_H_
