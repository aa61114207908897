// Internal to the CUDA fused RNN (included by fused_rnn_cuda.cu.cc only): the element-wise kernels.
// The step kernels are templates over the cell (cc/cells/rnn_cells.h): one thread runs the cell's
// one definition for one unit of one batch row through the ios below, which read the gate
// pre-activations, states and saved buffers where the driver keeps them; nothing here asks which
// cell it runs. The other kernels copy states, apply dropout and sum the skip_input grads.
#ifndef TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_KERNELS_CU_H_
#define TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_KERNELS_CU_H_

#include <cstdint>
#include <cstring>

#include "cc/cells/rnn_cells.h"
#include "cc/cuda/cuda_util.h"

namespace tf_rnn_ops {
namespace cuda {
namespace {

// Time index of row b at step s of direction d; false when the row has no step s.
__device__ __forceinline__ bool StepTime(const int32_t* lens, int64_t max_time, int64_t b,
                                         int64_t s, int d, int64_t* t) {
  const int64_t len = lens != nullptr ? lens[b] : max_time;
  if (s >= len) return false;
  *t = d == 0 ? s : len - 1 - s;
  return true;
}

// What every step kernel is given about the problem and the step (the fields of ForwardStepArgs
// and BackwardStepArgs that the driver fills alike).
struct StepDims {
  int64_t B, H, Hout, GH, max_time, rows, ts, bs, s;
  const int32_t* lens;  // device, null: every row has T steps
};

// Work item i of a step kernel over [B, width] units (width H or Hout) of direction d: unit j of
// batch row b, its state row st = d·B + b; if the row has step s (`valid`), that step's row of the
// sequence buffers and its record in the per-direction reserve buffers ([dirs, rows, ·]).
struct StepUnit {
  int64_t b, j, st, row, rec;
  bool valid;
};
__device__ __forceinline__ StepUnit LocateStep(const StepDims& a, int d, int64_t i, int64_t width) {
  StepUnit u;
  u.b = i / width, u.j = i % width;
  u.st = d * a.B + u.b;
  int64_t t = 0;
  u.valid = StepTime(a.lens, a.max_time, u.b, a.s, d, &t);
  u.row = u.valid ? t * a.ts + u.b * a.bs : 0;
  u.rec = d * a.rows + u.row;
  return u;
}

// Points io_saved[k] at unit j of entry `index` of each of the cell's saved buffers (`widths`
// wide).
template <typename P>
__device__ __forceinline__ void PointAtSaved(int num_saved, P* const* buffers,
                                             const int64_t* widths, int64_t index, int64_t j,
                                             P** io_saved) {
  for (int k = 0; k < num_saved; ++k) io_saved[k] = buffers[k] + index * widths[k] + j;
}

// Copies a [dirs, B, W] block of states between layouts: element (d, b, j) at base + d·dir +
// b·bstride
// + j. A null source copies zeros.
template <typename T>
__global__ void StateCopyKernel(int64_t B, int64_t W, const T* src, int64_t src_dir, int64_t src_b,
                                T* dst, int64_t dst_dir, int64_t dst_b) {
  const int64_t d = blockIdx.y;
  TF_RNN_KERNEL_LOOP(i, B * W) {
    const int64_t b = i / W, j = i % W;
    dst[d * dst_dir + b * dst_b + j] = src != nullptr ? src[d * src_dir + b * src_b + j] : T(0);
  }
}

template <typename T>
struct ForwardStepArgs : StepDims {
  // Input projection: element (d, row, gate g, unit j) at gx[d·gx_dir + row·gx_row + g·gx_gate +
  // j].
  const T* gx;
  int64_t gx_dir, gx_row, gx_gate;
  const T* gh;  // [dirs, B, GH] recurrent products of this step (no bias)
  const T* b_w;
  const T* b_r;
  int64_t bias_dir;
  const T* h_in;  // [dirs, B, Hout]
  T* h_out;
  const T* c_in;  // cells with a cell state: [dirs, B, H]
  T* c_out;
  T* m_step;    // with projection: [dirs, B, H]
  const T* hp;  // with projection: m_step Pᵀ, [dirs, B, Hout]
  T* y;         // layer output: y[row·y_row + d·Hout + j]
  int64_t y_row;
  // Reserve ([dirs, rows, width]), all null in inference: the cell's saved buffers, the states
  // before each step, and with projection m.
  T* saved[kMaxCellSaved];
  int64_t saved_width[kMaxCellSaved];
  T* hprev;
  T* cprev;
  T* m_t;
  // Cells with several recurrent products a step: the next product's input [dirs, B, Hout], and in
  // inference the step's saved buffers [dirs, B, saved_width[k]] (what later phases read back).
  T* rec_in;
  T* step_saved[kMaxCellSaved];
};

// The cell's forward io for one unit j of one row: X(g) and R(g) with their biases, gate blocks H
// apart; saves straight into the reserve (or, in inference, for cells with several products, the
// step's saved buffers), and reads them back for later phases.
template <typename T>
struct StepForwardIo {
  using Value = T;
  const T* gx;  // X(g) = gx[g·gx_gate] + b_w[g·H]
  int64_t gx_gate;
  const T* b_w;
  const T* gh;  // R(g) = gh[g·gh_gate] + b_r[g·H]
  int64_t gh_gate;
  const T* b_r;
  int64_t H;
  T h_prev = T(0), c_prev = T(0), h = T(0), c = T(0);
  T* saved[kMaxCellSaved] = {};  // this unit's record of each saved buffer (null: not saved)
  T* rec_in = nullptr;           // this unit's entry of the next product's input

  TF_RNN_OPS_HOST_DEVICE T X(int g) const { return gx[g * gx_gate] + b_w[g * H]; }
  TF_RNN_OPS_HOST_DEVICE T R(int g) const { return gh[g * gh_gate] + b_r[g * H]; }
  TF_RNN_OPS_HOST_DEVICE T HPrev() const { return h_prev; }
  TF_RNN_OPS_HOST_DEVICE T CPrev() const { return c_prev; }
  TF_RNN_OPS_HOST_DEVICE void SetH(T v) { h = v; }
  TF_RNN_OPS_HOST_DEVICE void SetC(T v) { c = v; }
  TF_RNN_OPS_HOST_DEVICE void Save(int k, int g, T v) {
    if (saved[k] != nullptr) saved[k][g * H] = v;
  }
  TF_RNN_OPS_HOST_DEVICE T Saved(int k, int g) const { return saved[k][g * H]; }
  TF_RNN_OPS_HOST_DEVICE void SetRecurrentInput(T v) { *rec_in = v; }
};

// Phase kPhase of a step for one unit `u` (a one-product cell has only phase 0: Cell::Forward; else
// Cell::ForwardPhase<kPhase>, run after the GEMM of product kPhase), its gate g's recurrent product
// at gh[g·gh_gate]. The last phase writes the new state, the output and the state record.
template <typename T, typename Cell, bool kProj, int kPhase>
__device__ __forceinline__ void ForwardStepUnit(const ForwardStepArgs<T>& a, int d,
                                                const StepUnit& u, const T* gh, int64_t gh_gate) {
  constexpr int kProducts = CellRecurrentProducts<Cell>::value;
  constexpr bool kLast = kPhase == kProducts - 1;
  static_assert(kProducts == 1 || !Cell::kHasCellState,
                "a cell state with several products a step needs its own bookkeeping here");
  const int64_t H = a.H, Hout = a.Hout;
  const int64_t j = u.j, st = u.st, row = u.row, rec = u.rec;
  if (!u.valid) {  // past the end of this row
    if (!kLast) {  // the next product reads this row too: keep it finite
      a.rec_in[st * Hout + j] = T(0);
      return;
    }
    // carry the state
    if (!kProj) a.h_out[st * Hout + j] = a.h_in[st * Hout + j];
    if (Cell::kHasCellState) a.c_out[st * H + j] = a.c_in[st * H + j];
    if (kProj) a.m_step[st * H + j] = T(0);
    return;
  }
  StepForwardIo<T> io;
  io.gx = a.gx + d * a.gx_dir + row * a.gx_row + j;
  io.gx_gate = a.gx_gate;
  io.b_w = a.b_w + d * a.bias_dir + j;
  io.gh = gh;
  io.gh_gate = gh_gate;
  io.b_r = a.b_r + d * a.bias_dir + j;
  io.H = H;
  // A projected state is num_proj wide: it reaches the cell only through the recurrent product.
  if (!kProj) io.h_prev = a.h_in[st * Hout + j];
  if (Cell::kHasCellState) io.c_prev = a.c_in[st * H + j];
  if (a.hprev != nullptr) {
    PointAtSaved(Cell::kNumSaved, a.saved, a.saved_width, rec, j, io.saved);
  } else if (kProducts > 1) {
    PointAtSaved(Cell::kNumSaved, a.step_saved, a.saved_width, st, j, io.saved);
  }
  if constexpr (kProducts == 1) {
    Cell::Forward(io);
  } else {
    io.rec_in = a.rec_in + st * Hout + j;
    Cell::template ForwardPhase<kPhase>(io);
  }
  if (!kLast) return;
  if (Cell::kHasCellState) a.c_out[st * H + j] = io.c;
  if (kProj) {
    a.m_step[st * H + j] = io.h;
  } else {
    a.h_out[st * Hout + j] = io.h;
    a.y[row * a.y_row + d * Hout + j] = io.h;
  }
  if (a.hprev != nullptr) {
    if (!kProj) a.hprev[rec * Hout + j] = io.h_prev;
    if (Cell::kHasCellState) a.cprev[rec * H + j] = io.c_prev;
    if (kProj) a.m_t[rec * H + j] = io.h;
  }
}

// Phase kPhase of a step over every unit, after cuBLAS wrote the step's products to a.gh.
template <typename T, typename Cell, bool kProj, int kPhase>
__global__ void ForwardStepKernel(ForwardStepArgs<T> a) {
  const int d = blockIdx.y;
  TF_RNN_KERNEL_LOOP(i, a.B * a.H) {
    const StepUnit u = LocateStep(a, d, i, a.H);
    ForwardStepUnit<T, Cell, kProj, kPhase>(a, d, u, a.gh + u.st * a.GH + u.j, a.H);
  }
}

// A whole step of a one-product cell without projection in one kernel, for few rows, where a
// cuBLAS call and a launch a step cost the host more than the GPU's work (docs/PERFORMANCE.md items
// 69 and 71). A block takes a tile of kFusedRows batch rows by kFusedUnits units: one thread per
// column of R it needs (the G gates of each unit, kFusedCols), which streams its row of R from
// global memory (no barrier between its loads: they stay in flight) against h staged in shared
// memory kFusedHChunk inner indices at a time; then the cell runs on each unit of the tile.
// (The first version staged R through shared memory in chunks of 32 and waited on each chunk's
// loads one by one: 66 µs a step on an H200, 3.5x the cuBLAS path, item 71.)
constexpr int kFusedRows = 8;
constexpr int kFusedUnits = 32;
constexpr int kFusedHChunk = 128;
constexpr int kFusedLoadBatch = 8;  // h loads a thread issues before storing any
template <typename Cell>
constexpr int kFusedCols = Cell::kGates * kFusedUnits;

// r: R of direction 0, [G·H, H] row-major (gate g's rows g·H...), the next direction r_dir later.
template <typename T, typename Cell>
__global__ void FusedForwardStepKernel(ForwardStepArgs<T> a, const T* r, int64_t r_dir) {
  static_assert(CellRecurrentProducts<Cell>::value == 1, "one product a step");
  constexpr int kCols = kFusedCols<Cell>;
  constexpr int kStaged = kFusedRows * kFusedHChunk;
  TF_RNN_SHARED T h_tile[kFusedHChunk][kFusedRows];  // h_in[b0 + rr, k0 + kk] at [kk][rr]
  TF_RNN_SHARED T gh_tile[kFusedRows][kCols];        // the products, column g·kFusedUnits + unit
  const int d = blockIdx.y;
  const int64_t B = a.B, H = a.H, K = a.Hout;
  const T* rd = r + d * r_dir;
  const int64_t unit_tiles = (H + kFusedUnits - 1) / kFusedUnits;
  const int64_t tiles = (B + kFusedRows - 1) / kFusedRows * unit_tiles;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t b0 = tile / unit_tiles * kFusedRows, j0 = tile % unit_tiles * kFusedUnits;
    // Each column's products belong to one thread (the device's blocks have kCols threads).
    for (int c = threadIdx.x; c < kCols; c += blockDim.x) {
      for (int rr = 0; rr < kFusedRows; ++rr) gh_tile[rr][c] = T(0);
    }
    for (int64_t k0 = 0; k0 < K; k0 += kFusedHChunk) {
      TF_RNN_SYNC();  // the previous chunk of h is read
      for (int base = threadIdx.x; base < kStaged; base += kFusedLoadBatch * blockDim.x) {
        T v[kFusedLoadBatch];
        TF_RNN_UNROLL(kFusedLoadBatch)
        for (int u = 0; u < kFusedLoadBatch; ++u) {
          const int e = base + u * static_cast<int>(blockDim.x);
          const int64_t b = b0 + e / kFusedHChunk, k = k0 + e % kFusedHChunk;
          v[u] = e < kStaged && b < B && k < K ? a.h_in[(d * B + b) * K + k] : T(0);
        }
        TF_RNN_UNROLL(kFusedLoadBatch)
        for (int u = 0; u < kFusedLoadBatch; ++u) {
          const int e = base + u * static_cast<int>(blockDim.x);
          if (e < kStaged) h_tile[e % kFusedHChunk][e / kFusedHChunk] = v[u];
        }
      }
      TF_RNN_SYNC();
      const int n = static_cast<int>(K - k0 < kFusedHChunk ? K - k0 : kFusedHChunk);
      for (int c = threadIdx.x; c < kCols; c += blockDim.x) {
        const int64_t j = j0 + c % kFusedUnits;
        if (j >= H) continue;  // (its products stay 0; no unit reads them)
        const T* w_row = rd + ((c / kFusedUnits) * H + j) * K + k0;
        T acc[kFusedRows];
        for (int rr = 0; rr < kFusedRows; ++rr) acc[rr] = gh_tile[rr][c];
        TF_RNN_UNROLL(8)
        for (int kk = 0; kk < n; ++kk) {
          const T w = w_row[kk];
          for (int rr = 0; rr < kFusedRows; ++rr) acc[rr] += h_tile[kk][rr] * w;
        }
        for (int rr = 0; rr < kFusedRows; ++rr) gh_tile[rr][c] = acc[rr];
      }
    }
    TF_RNN_SYNC();  // every product of the tile is in gh_tile
    for (int e = threadIdx.x; e < kFusedRows * kFusedUnits; e += blockDim.x) {
      const int rr = e / kFusedUnits, uu = e % kFusedUnits;
      const int64_t b = b0 + rr, j = j0 + uu;
      if (b >= B || j >= H) continue;
      const StepUnit u = LocateStep(a, d, b * H + j, H);
      ForwardStepUnit<T, Cell, false, 0>(a, d, u, &gh_tile[rr][uu], kFusedUnits);
    }
    TF_RNN_SYNC();  // gh_tile is read before the next tile zeroes it
  }
}

// With projection, after hp = m Pᵀ: the new state and output.
template <typename T>
__global__ void ProjectionStepKernel(ForwardStepArgs<T> a) {
  const int d = blockIdx.y;
  const int64_t Hout = a.Hout;
  TF_RNN_KERNEL_LOOP(i, a.B * Hout) {
    const StepUnit u = LocateStep(a, d, i, Hout);
    const int64_t p = u.j, st = u.st;
    if (!u.valid) {
      a.h_out[st * Hout + p] = a.h_in[st * Hout + p];
      continue;
    }
    const T h = a.hp[st * Hout + p];
    a.h_out[st * Hout + p] = h;
    a.y[u.row * a.y_row + d * Hout + p] = h;
    if (a.hprev != nullptr) a.hprev[u.rec * Hout + p] = a.h_in[st * Hout + p];
  }
}

// Dropout masks are those of the CPU kernels (cc/kernels/rnn_cpu_driver.h, FillDropoutMask), so
// that a model drops the same units on either device: TensorFlow's Philox4x32-10
// (tsl/lib/random/philox_random.h) keyed by seed, its counter's high half seed2, skipped by
// (dropout_call · num_layers + layer) << 40 for each layer (DropoutStreamOffset); element i of the
// layer's input in time-major order [T, B, width] takes word i % 4 of the draw at counter + i / 4,
// made a float in [0, 1) from its 23 low bits, and is dropped when that is below p.
__device__ __forceinline__ uint32_t PhiloxWord(uint64_t seed, uint64_t seed2, uint64_t offset,
                                               int word) {
  uint32_t c0 = static_cast<uint32_t>(offset), c1 = static_cast<uint32_t>(offset >> 32);
  uint32_t c2 = static_cast<uint32_t>(seed2), c3 = static_cast<uint32_t>(seed2 >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
  }
  return word == 0 ? c0 : word == 1 ? c1 : word == 2 ? c2 : c3;
}

__device__ __forceinline__ float Uint32ToUnitFloat(uint32_t x) {
  const uint32_t bits = (127u << 23) | (x & 0x7fffffu);
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f - 1.0f;
}

// Inverted dropout of a layer's output: out = in · scale where kept, 0 where dropped; mask keeps 0
// / 1.
template <typename T>
__global__ void DropoutKernel(int64_t n, int64_t width, int64_t max_time, int64_t batch,
                              bool time_major, uint64_t seed, uint64_t seed2, uint64_t layer_offset,
                              float p, T scale, const T* in, T* out, uint8_t* mask) {
  TF_RNN_KERNEL_LOOP(i, n) {
    int64_t tm = i;  // index in time-major order
    if (!time_major) {
      const int64_t row = i / width, j = i % width;
      tm = ((row % max_time) * batch + row / max_time) * width + j;
    }
    const uint32_t word = PhiloxWord(seed, seed2, layer_offset + static_cast<uint64_t>(tm / 4),
                                     static_cast<int>(tm % 4));
    const bool keep = !(Uint32ToUnitFloat(word) < p);
    mask[i] = keep ? 1 : 0;
    out[i] = keep ? in[i] * scale : T(0);
  }
}

template <typename T>
__global__ void DropoutBackwardKernel(int64_t n, T scale, const uint8_t* mask, T* grad) {
  TF_RNN_KERNEL_LOOP(i, n) { grad[i] = mask[i] ? grad[i] * scale : T(0); }
}

template <typename T>
struct BackwardStepArgs : StepDims {
  const T* dy;  // grad of the layer output: dy[row·dy_row + d·Hout + j]; null: zero
  int64_t dy_row;
  const T* dh_in;    // [dirs, B, Hout] grad of the state after this step
  T* dh_out;         // [dirs, B, Hout] grad of the state before it (element-wise part)
  T* dc;             // cells with a cell state: [dirs, B, H], updated in place
  const T* dm_step;  // with projection: [dirs, B, H]
  T* dhtot_step;     // with projection: [dirs, B, Hout]
  T* dhtot;          // with projection: [dirs, rows, Hout]
  // Reserve of the forward ([dirs, rows, width]).
  const T* saved[kMaxCellSaved];
  int64_t saved_width[kMaxCellSaved];
  const T* hprev;
  const T* cprev;
  T* d_gx;       // [dirs, rows, GH]
  T* d_gh;       // [dirs, rows, GH] (the same buffer as d_gx unless kDistinctRecurrentGrad)
  T* d_gh_step;  // [dirs, B, GH]
  // Cells with several products a step: [dirs, B, Hout] the grad of the input that this phase
  // passed on to the next product (= d_gh_step's columns of that product times its R block).
  const T* d_rec_in;
};

// The cell's backward io for one unit j of one row, gate blocks H apart: the saved buffers from the
// reserve; the grads of X go to d_gx, those of R to d_gh (cells with kDistinctRecurrentGrad; else
// they are X's) and to the step's packed d_gh.
template <typename T, typename Cell>
struct StepBackwardIo {
  using Value = T;
  const T* saved[kMaxCellSaved] = {};
  int64_t H;
  T h_prev = T(0), c_prev = T(0), dh = T(0), dc = T(0), d_rec_in = T(0);
  T* dx;       // this unit's record of d_gx
  T* dr;       // this unit's record of d_gh (kDistinctRecurrentGrad)
  T* dr_step;  // this unit's entry of the step's d_gh
  T dc_prev = T(0), dh_direct = T(0);

  TF_RNN_OPS_HOST_DEVICE T Saved(int k, int g) const { return saved[k][g * H]; }
  TF_RNN_OPS_HOST_DEVICE T HPrev() const { return h_prev; }
  TF_RNN_OPS_HOST_DEVICE T CPrev() const { return c_prev; }
  TF_RNN_OPS_HOST_DEVICE T Dh() const { return dh; }
  TF_RNN_OPS_HOST_DEVICE T Dc() const { return dc; }
  TF_RNN_OPS_HOST_DEVICE T DRecurrentInput() const { return d_rec_in; }
  TF_RNN_OPS_HOST_DEVICE void SetDx(int g, T v) {
    dx[g * H] = v;
    if (!Cell::kDistinctRecurrentGrad) dr_step[g * H] = v;
  }
  TF_RNN_OPS_HOST_DEVICE void SetDr(int g, T v) {
    dr[g * H] = v;
    dr_step[g * H] = v;
  }
  TF_RNN_OPS_HOST_DEVICE void SetDcPrev(T v) { dc_prev = v; }
  TF_RNN_OPS_HOST_DEVICE void SetDhDirect(T v) { dh_direct = v; }
};

// Phase kPhase of a step's backward, run from the last phase down (a one-product cell has only
// phase 0: Cell::Backward; else Cell::BackwardPhase<kPhase>, each followed by the GEMM of product
// kPhase's input grad). The first phase run (the last one) clears the step's d_gh of rows without
// a step; phase 0 writes the direct part of the grad of h_prev.
template <typename T, typename Cell, bool kProj, int kPhase>
__global__ void BackwardStepKernel(BackwardStepArgs<T> a) {
  constexpr int G = Cell::kGates;
  constexpr int kProducts = CellRecurrentProducts<Cell>::value;
  static_assert(kProducts == 1 || !Cell::kHasCellState,
                "a cell state with several products a step needs its own bookkeeping here");
  const int d = blockIdx.y;
  const int64_t H = a.H, Hout = a.Hout, GH = a.GH;
  TF_RNN_KERNEL_LOOP(i, a.B * H) {
    const StepUnit u = LocateStep(a, d, i, H);
    const int64_t j = u.j, st = u.st, row = u.row, rec = u.rec;
    if (!u.valid) {  // no step here: the grads pass through
      if (kPhase == kProducts - 1) {
        for (int g = 0; g < G; ++g) a.d_gh_step[st * GH + g * H + j] = T(0);
      }
      if (!kProj && kPhase == 0) a.dh_out[st * Hout + j] = a.dh_in[st * Hout + j];
      continue;
    }
    StepBackwardIo<T, Cell> io;
    io.H = H;
    PointAtSaved(Cell::kNumSaved, a.saved, a.saved_width, rec, j, io.saved);
    if (kProj) {
      io.dh = a.dm_step[st * H + j];
    } else {
      io.h_prev = a.hprev[rec * Hout + j];
      io.dh = a.dh_in[st * Hout + j];
      if (a.dy != nullptr) io.dh += a.dy[row * a.dy_row + d * Hout + j];
    }
    if (Cell::kHasCellState) {
      io.c_prev = a.cprev[rec * H + j];
      io.dc = a.dc[st * H + j];
    }
    io.dx = a.d_gx + rec * GH + j;
    io.dr = a.d_gh + rec * GH + j;
    io.dr_step = a.d_gh_step + st * GH + j;
    if constexpr (kProducts == 1) {
      Cell::Backward(io);
    } else {
      if (kPhase < kProducts - 1) io.d_rec_in = a.d_rec_in[st * Hout + j];
      Cell::template BackwardPhase<kPhase>(io);
    }
    if (Cell::kHasCellState) a.dc[st * H + j] = io.dc_prev;
    // The part of the grad of h_prev that is not through R (zero unless kDirectHPrevGrad).
    if (!kProj && kPhase == 0) a.dh_out[st * Hout + j] = io.dh_direct;
  }
}

// With projection, before the cell: the grad of h at this step (dh_in + dy), kept per step for dP.
template <typename T>
__global__ void ProjectionBackwardKernel(BackwardStepArgs<T> a) {
  const int d = blockIdx.y;
  const int64_t Hout = a.Hout;
  TF_RNN_KERNEL_LOOP(i, a.B * Hout) {
    const StepUnit u = LocateStep(a, d, i, Hout);
    const int64_t p = u.j, st = u.st;
    if (!u.valid) {
      a.dhtot_step[st * Hout + p] = T(0);
      a.dh_out[st * Hout + p] = a.dh_in[st * Hout + p];
      continue;
    }
    T dh = a.dh_in[st * Hout + p];
    if (a.dy != nullptr) dh += a.dy[u.row * a.dy_row + d * Hout + p];
    a.dhtot_step[st * Hout + p] = dh;
    a.dhtot[u.rec * Hout + p] = dh;
    a.dh_out[st * Hout + p] = T(0);  // a projected h_prev acts through R only
  }
}

// skip_input: every gate adds the input itself, so its grad is the sum of the gates' grads (both
// directions).
template <typename T>
__global__ void SkipInputGradKernel(int64_t n_rows, int64_t H, int64_t G, int64_t dirs,
                                    int64_t rows, const T* d_gx, T* dx) {
  TF_RNN_KERNEL_LOOP(i, n_rows * H) {
    const int64_t r = i / H, j = i % H;
    T acc = T(0);
    for (int64_t d = 0; d < dirs; ++d) {
      for (int64_t g = 0; g < G; ++g) acc += d_gx[(d * rows + r) * G * H + g * H + j];
    }
    dx[r * H + j] = acc;
  }
}

}  // namespace
}  // namespace cuda
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_KERNELS_CU_H_
