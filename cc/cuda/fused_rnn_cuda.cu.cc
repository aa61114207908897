// The fused multi-layer RNN on CUDA: drivers (host) and kernels. See fused_rnn_cuda.h.
//
// Sequence buffers (x, y, the layer inputs and every per-step record in the reserve) share one row order:
// row(t, b) = t·B + b (time-major) or b·T + t (batch-major), so the big GEMMs never need a transpose.
// Step s of direction d works on time t = s (forward) or t = len_b − 1 − s (backward) for the rows with
// s < len_b; the other rows carry their state through unchanged. Per-direction buffers are stacked
// [dirs, ...] so that one strided-batched GEMM and one kernel launch (blockIdx.y = direction) serve
// both directions of a layer.
#include "cc/cuda/fused_rnn_cuda.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cc/cuda/cuda_util.h"
#include "cc/kernels/rnn_cell_math.h"

namespace tf_rnn_ops {
namespace cuda {
namespace {

struct Dims {
  int64_t T, B, H, Hout, G, GH, dirs, L, outw, rows;
  int64_t ts, bs;  // row(t, b) = t·ts + b·bs
  bool proj;
  RnnMode mode;
  explicit Dims(const RnnConfig& c)
      : T(c.max_time),
        B(c.batch),
        H(c.shape.num_units),
        Hout(c.shape.h_out()),
        G(c.shape.gates()),
        GH(c.shape.gates() * c.shape.num_units),
        dirs(c.shape.num_dirs),
        L(c.shape.num_layers),
        outw(c.shape.output_size()),
        rows(c.max_time * c.batch),
        ts(c.time_major ? c.batch : 1),
        bs(c.time_major ? 1 : c.max_time),
        proj(c.shape.num_proj > 0),
        mode(c.shape.mode) {}
};

// ---------------------------------------------------------------------------------------------------
// Buffer layouts.

// Reserve (training): what the backprop reads, per layer l.
template <typename T>
struct ReserveLayout {
  std::vector<T*> x_in;        // l >= 1: the layer's input (after dropout) [rows, outw]
  std::vector<uint8_t*> mask;  // l >= 1 with dropout: the dropout mask of that input [rows, outw]
  std::vector<T*> act;         // gate activations [dirs, rows, GH]
  std::vector<T*> hprev;       // the state each step read [dirs, rows, Hout]
  std::vector<T*> ghn;         // gru: R_h h + b_Rh [dirs, rows, H]
  std::vector<T*> c, cprev;    // lstm: c_t and c_{t-1} [dirs, rows, H]
  std::vector<T*> m;           // lstm with projection: m_t [dirs, rows, H]
  size_t bytes = 0;

  static ReserveLayout Carve(const RnnConfig& config, void* base) {
    ReserveLayout r;
    if (!config.is_training) return r;
    const Dims D(config);
    const bool dropout = RnnUsesDropout(config);
    Carver carver(base);
    for (int64_t l = 0; l < D.L; ++l) {
      r.x_in.push_back(l > 0 ? carver.Take<T>(D.rows * D.outw) : nullptr);
      r.mask.push_back(l > 0 && dropout ? carver.Take<uint8_t>(D.rows * D.outw) : nullptr);
      r.act.push_back(carver.Take<T>(D.dirs * D.rows * D.GH));
      r.hprev.push_back(carver.Take<T>(D.dirs * D.rows * D.Hout));
      r.ghn.push_back(D.mode == RnnMode::kGru ? carver.Take<T>(D.dirs * D.rows * D.H) : nullptr);
      r.c.push_back(D.mode == RnnMode::kLstm ? carver.Take<T>(D.dirs * D.rows * D.H) : nullptr);
      r.cprev.push_back(D.mode == RnnMode::kLstm ? carver.Take<T>(D.dirs * D.rows * D.H) : nullptr);
      r.m.push_back(D.proj ? carver.Take<T>(D.dirs * D.rows * D.H) : nullptr);
    }
    r.bytes = carver.size();
    return r;
  }
};

template <typename T>
struct ForwardWorkspace {
  int32_t* lens;   // [B]
  T* gx;           // [dirs, rows, GH] input projections of one layer
  T* gh;           // [dirs, B, GH] recurrent product of one step
  T* h[2];         // [dirs, B, Hout] state before / after a step
  T* c[2];         // lstm: [dirs, B, H]
  T* m_step;       // lstm with projection: [dirs, B, H]
  T* hp;           // lstm with projection: [dirs, B, Hout]
  T* layer[2];     // outputs of the layers below the last: [rows, outw]
  size_t bytes = 0;

  static ForwardWorkspace Carve(const RnnConfig& config, void* base) {
    const Dims D(config);
    const RnnModelShape& sh = config.shape;
    ForwardWorkspace w;
    Carver carver(base);
    w.lens = carver.Take<int32_t>(D.B);
    // Only a single skip_input layer has no input projection at all.
    const bool any_input_weights = sh.HasInputWeights(sh.num_layers - 1);
    w.gx = any_input_weights ? carver.Take<T>(D.dirs * D.rows * D.GH) : nullptr;
    w.gh = carver.Take<T>(D.dirs * D.B * D.GH);
    for (int k = 0; k < 2; ++k) {
      w.h[k] = carver.Take<T>(D.dirs * D.B * D.Hout);
      w.c[k] = D.mode == RnnMode::kLstm ? carver.Take<T>(D.dirs * D.B * D.H) : nullptr;
    }
    w.m_step = D.proj ? carver.Take<T>(D.dirs * D.B * D.H) : nullptr;
    w.hp = D.proj ? carver.Take<T>(D.dirs * D.B * D.Hout) : nullptr;
    const int num_layer_buffers =
        D.L < 2 ? 0 : (!config.is_training ? 2 : (RnnUsesDropout(config) ? 1 : 0));
    for (int k = 0; k < 2; ++k) {
      w.layer[k] = k < num_layer_buffers ? carver.Take<T>(D.rows * D.outw) : nullptr;
    }
    w.bytes = carver.size();
    return w;
  }
};

template <typename T>
struct BackwardWorkspace {
  int32_t* lens;    // [B]
  T* d_gx;          // [dirs, rows, GH] grads of the input projections (= of the biases b_W)
  T* d_gh;          // [dirs, rows, GH] grads of the recurrent products; gru only, else d_gx
  T* d_gh_step;     // [dirs, B, GH] d_gh of one step, packed for the step's GEMM
  T* dh[2];         // [dirs, B, Hout] grad of the state after / before a step
  T* dc;            // lstm: [dirs, B, H]
  T* dhtot_step;    // lstm with projection: [dirs, B, Hout] grad of h at one step
  T* dm_step;       // lstm with projection: [dirs, B, H]
  T* dhtot;         // lstm with projection: [dirs, rows, Hout] grad of h at every step (for dP)
  T* grad[2];       // grads of the layers' inputs above layer 0: [rows, outw]
  T* ones;          // [rows]
  size_t bytes = 0;

  static BackwardWorkspace Carve(const RnnConfig& config, void* base) {
    const Dims D(config);
    BackwardWorkspace w;
    Carver carver(base);
    w.lens = carver.Take<int32_t>(D.B);
    w.d_gx = carver.Take<T>(D.dirs * D.rows * D.GH);
    w.d_gh = D.mode == RnnMode::kGru ? carver.Take<T>(D.dirs * D.rows * D.GH) : w.d_gx;
    w.d_gh_step = carver.Take<T>(D.dirs * D.B * D.GH);
    for (int k = 0; k < 2; ++k) w.dh[k] = carver.Take<T>(D.dirs * D.B * D.Hout);
    w.dc = D.mode == RnnMode::kLstm ? carver.Take<T>(D.dirs * D.B * D.H) : nullptr;
    w.dhtot_step = D.proj ? carver.Take<T>(D.dirs * D.B * D.Hout) : nullptr;
    w.dm_step = D.proj ? carver.Take<T>(D.dirs * D.B * D.H) : nullptr;
    w.dhtot = D.proj ? carver.Take<T>(D.dirs * D.rows * D.Hout) : nullptr;
    for (int k = 0; k < 2; ++k) w.grad[k] = D.L > 1 ? carver.Take<T>(D.rows * D.outw) : nullptr;
    w.ones = carver.Take<T>(D.rows);
    w.bytes = carver.size();
    return w;
  }
};

// ---------------------------------------------------------------------------------------------------
// Kernels.

// Time index of row b at step s of direction d; false when the row has no step s.
__device__ __forceinline__ bool StepTime(const int32_t* lens, int64_t max_time, int64_t b, int64_t s,
                                         int d, int64_t* t) {
  const int64_t len = lens != nullptr ? lens[b] : max_time;
  if (s >= len) return false;
  *t = d == 0 ? s : len - 1 - s;
  return true;
}

// Copies a [dirs, B, W] block of states between layouts: element (d, b, j) at base + d·dir + b·bstride
// + j. A null source copies zeros.
template <typename T>
__global__ void StateCopyKernel(int64_t B, int64_t W, const T* src, int64_t src_dir, int64_t src_b, T* dst,
                                int64_t dst_dir, int64_t dst_b) {
  const int64_t d = blockIdx.y;
  TF_RNN_KERNEL_LOOP(i, B * W) {
    const int64_t b = i / W, j = i % W;
    dst[d * dst_dir + b * dst_b + j] = src != nullptr ? src[d * src_dir + b * src_b + j] : T(0);
  }
}

template <typename T>
struct ForwardStepArgs {
  int64_t B, H, Hout, GH, max_time, rows, ts, bs, s;
  const int32_t* lens;  // device, null: every row has T steps
  // Input projection: element (d, row, gate g, unit j) at gx[d·gx_dir + row·gx_row + g·gx_gate + j].
  const T* gx;
  int64_t gx_dir, gx_row, gx_gate;
  const T* gh;  // [dirs, B, GH] recurrent product of this step (no bias)
  const T* b_w;
  const T* b_r;
  int64_t bias_dir;
  const T* h_in;  // [dirs, B, Hout]
  T* h_out;
  const T* c_in;  // lstm: [dirs, B, H]
  T* c_out;
  T* m_step;    // lstm with projection: [dirs, B, H]
  const T* hp;  // lstm with projection: m_step Pᵀ, [dirs, B, Hout]
  T* y;         // layer output: y[row·y_row + d·Hout + j]
  int64_t y_row;
  // Reserve ([dirs, rows, width]); act is null in inference.
  T* act;
  T* hprev;
  T* ghn;
  T* c_t;
  T* cprev_t;
  T* m_t;
};

template <typename T, RnnMode kMode, bool kProj>
__global__ void ForwardStepKernel(ForwardStepArgs<T> a) {
  constexpr int G = NumGates(kMode);
  const int d = blockIdx.y;
  const int64_t H = a.H, Hout = a.Hout;
  TF_RNN_KERNEL_LOOP(i, a.B * H) {
    const int64_t b = i / H, j = i % H;
    const int64_t st = d * a.B + b;  // state row
    int64_t t = 0;
    if (!StepTime(a.lens, a.max_time, b, a.s, d, &t)) {  // past the end of this row: carry the state
      if (!kProj) a.h_out[st * Hout + j] = a.h_in[st * Hout + j];
      if (kMode == RnnMode::kLstm) a.c_out[st * H + j] = a.c_in[st * H + j];
      if (kProj) a.m_step[st * H + j] = T(0);
      continue;
    }
    const int64_t row = t * a.ts + b * a.bs;
    T gx[G], gh[G], act[G];
    for (int g = 0; g < G; ++g) {
      gx[g] = a.gx[d * a.gx_dir + row * a.gx_row + g * a.gx_gate + j] + a.b_w[d * a.bias_dir + g * H + j];
      gh[g] = a.gh[st * a.GH + g * H + j] + a.b_r[d * a.bias_dir + g * H + j];
    }
    T h_new = T(0), c_new = T(0), c_prev = T(0), ghn = T(0);
    if constexpr (kMode == RnnMode::kGru) {
      h_new = GruCellMath<T>::Forward(gx, gh, 1, 0, a.h_in[st * Hout + j], act, &ghn);
    } else if constexpr (kMode == RnnMode::kLstm) {
      c_prev = a.c_in[st * H + j];
      LstmCellMath<T>::Forward(gx, gh, 1, 0, c_prev, act, &c_new, &h_new);  // h_new is m
      a.c_out[st * H + j] = c_new;
    } else {
      h_new = SimpleRnnCellMath<T, kMode == RnnMode::kRnnRelu>::Forward(gx, gh, 0, act);
    }
    if (kProj) {
      a.m_step[st * H + j] = h_new;
    } else {
      a.h_out[st * Hout + j] = h_new;
      a.y[row * a.y_row + d * Hout + j] = h_new;
    }
    if (a.act != nullptr) {
      for (int g = 0; g < G; ++g) a.act[(d * a.rows + row) * a.GH + g * H + j] = act[g];
      if (!kProj) a.hprev[(d * a.rows + row) * Hout + j] = a.h_in[st * Hout + j];
      if (kMode == RnnMode::kGru) a.ghn[(d * a.rows + row) * H + j] = ghn;
      if (kMode == RnnMode::kLstm) {
        a.c_t[(d * a.rows + row) * H + j] = c_new;
        a.cprev_t[(d * a.rows + row) * H + j] = c_prev;
      }
      if (kProj) a.m_t[(d * a.rows + row) * H + j] = h_new;
    }
  }
}

// LSTM with projection, after hp = m Pᵀ: the new state and output.
template <typename T>
__global__ void ProjectionStepKernel(ForwardStepArgs<T> a) {
  const int d = blockIdx.y;
  const int64_t Hout = a.Hout;
  TF_RNN_KERNEL_LOOP(i, a.B * Hout) {
    const int64_t b = i / Hout, p = i % Hout;
    const int64_t st = d * a.B + b;
    int64_t t = 0;
    if (!StepTime(a.lens, a.max_time, b, a.s, d, &t)) {
      a.h_out[st * Hout + p] = a.h_in[st * Hout + p];
      continue;
    }
    const int64_t row = t * a.ts + b * a.bs;
    const T h = a.hp[st * Hout + p];
    a.h_out[st * Hout + p] = h;
    a.y[row * a.y_row + d * Hout + p] = h;
    if (a.hprev != nullptr) a.hprev[(d * a.rows + row) * Hout + p] = a.h_in[st * Hout + p];
  }
}

// Dropout masks are those of the CPU kernels (cc/kernels/rnn_cpu_driver.h, FillDropoutMask), so that a
// model drops the same units on either device: TensorFlow's Philox4x32-10 (tsl/lib/random/philox_random.h)
// keyed by seed, its counter's high half seed2, skipped by (dropout_call · num_layers + layer) << 40 for
// each layer (DropoutStreamOffset); element i of the
// layer's input in time-major order [T, B, width] takes word i % 4 of the draw at counter + i / 4, made a
// float in [0, 1) from its 23 low bits, and is dropped when that is below p.
__device__ __forceinline__ uint32_t PhiloxWord(uint64_t seed, uint64_t seed2, uint64_t offset, int word) {
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

// Inverted dropout of a layer's output: out = in · scale where kept, 0 where dropped; mask keeps 0 / 1.
template <typename T>
__global__ void DropoutKernel(int64_t n, int64_t width, int64_t max_time, int64_t batch, bool time_major,
                              uint64_t seed, uint64_t seed2, uint64_t layer_offset, float p, T scale,
                              const T* in, T* out, uint8_t* mask) {
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
struct BackwardStepArgs {
  int64_t B, H, Hout, GH, max_time, rows, ts, bs, s;
  const int32_t* lens;
  const T* dy;  // grad of the layer output: dy[row·dy_row + d·Hout + j]; null: zero
  int64_t dy_row;
  const T* dh_in;  // [dirs, B, Hout] grad of the state after this step
  T* dh_out;       // [dirs, B, Hout] grad of the state before it (element-wise part)
  T* dc;           // lstm: [dirs, B, H], updated in place
  const T* dm_step;  // lstm with projection: [dirs, B, H]
  T* dhtot_step;     // lstm with projection: [dirs, B, Hout]
  T* dhtot;          // lstm with projection: [dirs, rows, Hout]
  // Reserve of the forward ([dirs, rows, width]).
  const T* act;
  const T* hprev;
  const T* ghn;
  const T* c_t;
  const T* cprev_t;
  T* d_gx;       // [dirs, rows, GH]
  T* d_gh;       // [dirs, rows, GH] (gru; the same buffer as d_gx otherwise)
  T* d_gh_step;  // [dirs, B, GH]
};

template <typename T, RnnMode kMode, bool kProj>
__global__ void BackwardStepKernel(BackwardStepArgs<T> a) {
  constexpr int G = NumGates(kMode);
  const int d = blockIdx.y;
  const int64_t H = a.H, Hout = a.Hout, GH = a.GH;
  TF_RNN_KERNEL_LOOP(i, a.B * H) {
    const int64_t b = i / H, j = i % H;
    const int64_t st = d * a.B + b;
    int64_t t = 0;
    if (!StepTime(a.lens, a.max_time, b, a.s, d, &t)) {  // no step here: the grads pass through
      for (int g = 0; g < G; ++g) a.d_gh_step[st * GH + g * H + j] = T(0);
      if (!kProj) a.dh_out[st * Hout + j] = a.dh_in[st * Hout + j];
      continue;
    }
    const int64_t row = t * a.ts + b * a.bs;
    const int64_t rec = d * a.rows + row;  // record in the reserve
    T act[G], dgx[G], dgh[G];
    for (int g = 0; g < G; ++g) act[g] = a.act[rec * GH + g * H + j];
    T dh;
    if (kProj) {
      dh = a.dm_step[st * H + j];
    } else {
      dh = a.dh_in[st * Hout + j];
      if (a.dy != nullptr) dh += a.dy[row * a.dy_row + d * Hout + j];
    }
    T direct = T(0);  // the part of the grad of h_prev that is not through R
    if constexpr (kMode == RnnMode::kGru) {
      const T ghn = a.ghn[rec * H + j];
      direct = GruCellMath<T>::Backward(act, &ghn, 1, 0, a.hprev[rec * Hout + j], dh, dgx, dgh);
    } else if constexpr (kMode == RnnMode::kLstm) {
      a.dc[st * H + j] = LstmCellMath<T>::Backward(act, 1, 0, a.c_t[rec * H + j], a.cprev_t[rec * H + j], dh,
                                                   a.dc[st * H + j], dgx);
      for (int g = 0; g < G; ++g) dgh[g] = dgx[g];
    } else {
      dgx[0] = SimpleRnnCellMath<T, kMode == RnnMode::kRnnRelu>::Backward(act, 0, dh);
      dgh[0] = dgx[0];
    }
    for (int g = 0; g < G; ++g) {
      a.d_gx[rec * GH + g * H + j] = dgx[g];
      if (kMode == RnnMode::kGru) a.d_gh[rec * GH + g * H + j] = dgh[g];
      a.d_gh_step[st * GH + g * H + j] = dgh[g];
    }
    if (!kProj) a.dh_out[st * Hout + j] = direct;
  }
}

// LSTM with projection, before the cell: the grad of h at this step (dh_in + dy), kept per step for dP.
template <typename T>
__global__ void ProjectionBackwardKernel(BackwardStepArgs<T> a) {
  const int d = blockIdx.y;
  const int64_t Hout = a.Hout;
  TF_RNN_KERNEL_LOOP(i, a.B * Hout) {
    const int64_t b = i / Hout, p = i % Hout;
    const int64_t st = d * a.B + b;
    int64_t t = 0;
    if (!StepTime(a.lens, a.max_time, b, a.s, d, &t)) {
      a.dhtot_step[st * Hout + p] = T(0);
      a.dh_out[st * Hout + p] = a.dh_in[st * Hout + p];
      continue;
    }
    const int64_t row = t * a.ts + b * a.bs;
    T dh = a.dh_in[st * Hout + p];
    if (a.dy != nullptr) dh += a.dy[row * a.dy_row + d * Hout + p];
    a.dhtot_step[st * Hout + p] = dh;
    a.dhtot[(d * a.rows + row) * Hout + p] = dh;
    a.dh_out[st * Hout + p] = T(0);  // an LSTM's h_prev acts through R only
  }
}

// skip_input: every gate adds the input itself, so its grad is the sum of the gates' grads (both
// directions).
template <typename T>
__global__ void SkipInputGradKernel(int64_t n_rows, int64_t H, int64_t G, int64_t dirs, int64_t rows,
                                    const T* d_gx, T* dx) {
  TF_RNN_KERNEL_LOOP(i, n_rows * H) {
    const int64_t r = i / H, j = i % H;
    T acc = T(0);
    for (int64_t d = 0; d < dirs; ++d) {
      for (int64_t g = 0; g < G; ++g) acc += d_gx[(d * rows + r) * G * H + g * H + j];
    }
    dx[r * H + j] = acc;
  }
}

// ---------------------------------------------------------------------------------------------------
// Launch helpers.

template <typename T>
Status LaunchForwardStep(RnnMode mode, bool proj, dim3 grid, cudaStream_t stream,
                         const ForwardStepArgs<T>& a) {
  void (*kernel)(ForwardStepArgs<T>) = nullptr;
  switch (mode) {
    case RnnMode::kRnnRelu:
      kernel = &ForwardStepKernel<T, RnnMode::kRnnRelu, false>;
      break;
    case RnnMode::kRnnTanh:
      kernel = &ForwardStepKernel<T, RnnMode::kRnnTanh, false>;
      break;
    case RnnMode::kLstm:
      kernel = proj ? &ForwardStepKernel<T, RnnMode::kLstm, true> : &ForwardStepKernel<T, RnnMode::kLstm, false>;
      break;
    case RnnMode::kGru:
      kernel = &ForwardStepKernel<T, RnnMode::kGru, false>;
      break;
  }
  if (kernel == nullptr) return Status::InvalidArgument("unknown rnn mode");
  TF_RNN_LAUNCH(kernel, grid, kThreadsPerBlock, stream, a);
  return CudaStatus(cudaGetLastError(), "ForwardStepKernel");
}

template <typename T>
Status LaunchBackwardStep(RnnMode mode, bool proj, dim3 grid, cudaStream_t stream,
                          const BackwardStepArgs<T>& a) {
  void (*kernel)(BackwardStepArgs<T>) = nullptr;
  switch (mode) {
    case RnnMode::kRnnRelu:
      kernel = &BackwardStepKernel<T, RnnMode::kRnnRelu, false>;
      break;
    case RnnMode::kRnnTanh:
      kernel = &BackwardStepKernel<T, RnnMode::kRnnTanh, false>;
      break;
    case RnnMode::kLstm:
      kernel = proj ? &BackwardStepKernel<T, RnnMode::kLstm, true> : &BackwardStepKernel<T, RnnMode::kLstm, false>;
      break;
    case RnnMode::kGru:
      kernel = &BackwardStepKernel<T, RnnMode::kGru, false>;
      break;
  }
  if (kernel == nullptr) return Status::InvalidArgument("unknown rnn mode");
  TF_RNN_LAUNCH(kernel, grid, kThreadsPerBlock, stream, a);
  return CudaStatus(cudaGetLastError(), "BackwardStepKernel");
}

// A [dirs, B, W] view of the user's state tensor (h or c) at layer l.
struct StateView {
  int64_t offset, dir_stride, b_stride;
};
StateView UserState(const RnnConfig& config, int64_t layer, int64_t width) {
  const int64_t dirs = config.shape.num_dirs, pls = dirs * config.shape.num_layers;
  if (config.time_major) return {layer * dirs * config.batch * width, config.batch * width, width};
  return {layer * dirs * width, width, pls * width};
}

template <typename T>
Status CopyState(cudaStream_t stream, const Dims& D, int64_t width, const T* src, StateView src_view, T* dst,
                 StateView dst_view) {
  auto kernel = &StateCopyKernel<T>;
  TF_RNN_LAUNCH(kernel, dim3(BlocksFor(D.B * width), static_cast<unsigned>(D.dirs)), kThreadsPerBlock,
                stream, D.B, width, src != nullptr ? src + src_view.offset : nullptr, src_view.dir_stride,
                src_view.b_stride, dst + dst_view.offset, dst_view.dir_stride, dst_view.b_stride);
  return CudaStatus(cudaGetLastError(), "StateCopyKernel");
}

// The dropout scale of the CPU kernels, 1 / (1 − p) in T with p as a float (0 at p = 1, where every
// element is dropped).
template <typename T>
T DropoutScale(double p) {
  if (static_cast<float>(p) >= 1.0f) return T(0);
  return T(1) / (T(1) - static_cast<T>(static_cast<float>(p)));
}

template <typename T>
Status CheckBuffers(const RnnConfig& config, void* reserve, void* workspace, bool backward) {
  const DType dtype = sizeof(T) == sizeof(double) ? DType::kFloat64 : DType::kFloat32;
  const size_t ws = backward ? RnnBackwardWorkspaceBytes(config, dtype) : RnnForwardWorkspaceBytes(config, dtype);
  if (ws > 0 && workspace == nullptr) return Status::InvalidArgument("fused RNN: the workspace is missing");
  if ((config.is_training || backward) && RnnReserveBytes(config, dtype) > 0 && reserve == nullptr) {
    return Status::InvalidArgument("fused RNN: the reserve space is missing");
  }
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Configuration and sizes.

Status ValidateRnnConfig(const RnnConfig& config) {
  const RnnModelShape& sh = config.shape;
  const int mode = static_cast<int>(sh.mode);
  if (mode < 0 || mode > 3) return Status::InvalidArgument("fused RNN: unknown rnn_mode " + std::to_string(mode));
  if (sh.num_layers < 1) {
    return Status::InvalidArgument("fused RNN: num_layers must be at least 1, got " +
                                   std::to_string(sh.num_layers));
  }
  if (sh.num_dirs != 1 && sh.num_dirs != 2) {
    return Status::InvalidArgument("fused RNN: num_dirs must be 1 or 2, got " + std::to_string(sh.num_dirs));
  }
  if (sh.num_units < 1) {
    return Status::InvalidArgument("fused RNN: num_units must be positive, got " + std::to_string(sh.num_units));
  }
  if (sh.input_size < 0 || config.max_time < 0 || config.batch < 0 || sh.num_proj < 0) {
    return Status::InvalidArgument("fused RNN: negative input_size, max_time, batch or num_proj");
  }
  if (sh.num_proj > 0 && sh.mode != RnnMode::kLstm) {
    return Status::InvalidArgument("fused RNN: num_proj is only supported for lstm");
  }
  if (sh.skip_input && sh.input_size != sh.num_units) {
    return Status::InvalidArgument("fused RNN: skip_input needs input_size (" + std::to_string(sh.input_size) +
                                   ") == num_units (" + std::to_string(sh.num_units) + ")");
  }
  if (!(config.dropout >= 0.0 && config.dropout <= 1.0)) {
    return Status::InvalidArgument("fused RNN: dropout must be in [0, 1], got " + std::to_string(config.dropout));
  }
  return Status::Ok();
}

Status ValidateSequenceLengths(const RnnConfig& config, const int32_t* host_lengths, int64_t* max_len) {
  *max_len = config.max_time;
  if (host_lengths == nullptr) return Status::Ok();
  int64_t longest = 0;
  for (int64_t b = 0; b < config.batch; ++b) {
    const int64_t len = host_lengths[b];
    if (len < 0 || len > config.max_time) {
      return Status::InvalidArgument("sequence_lengths[" + std::to_string(b) + "] = " + std::to_string(len) +
                                     " is outside [0, max_time = " + std::to_string(config.max_time) + "]");
    }
    longest = std::max(longest, len);
  }
  *max_len = longest;
  return Status::Ok();
}

bool RnnUsesDropout(const RnnConfig& config) {
  return config.is_training && config.dropout > 0.0 && config.shape.num_layers > 1;
}

size_t RnnForwardWorkspaceBytes(const RnnConfig& config, DType dtype) {
  if (!ValidateRnnConfig(config).ok()) return 0;
  return dtype == DType::kFloat64 ? ForwardWorkspace<double>::Carve(config, nullptr).bytes
                                  : ForwardWorkspace<float>::Carve(config, nullptr).bytes;
}

size_t RnnReserveBytes(const RnnConfig& config, DType dtype) {
  if (!ValidateRnnConfig(config).ok()) return 0;
  return dtype == DType::kFloat64 ? ReserveLayout<double>::Carve(config, nullptr).bytes
                                  : ReserveLayout<float>::Carve(config, nullptr).bytes;
}

size_t RnnBackwardWorkspaceBytes(const RnnConfig& config, DType dtype) {
  if (!ValidateRnnConfig(config).ok()) return 0;
  return dtype == DType::kFloat64 ? BackwardWorkspace<double>::Carve(config, nullptr).bytes
                                  : BackwardWorkspace<float>::Carve(config, nullptr).bytes;
}

// ---------------------------------------------------------------------------------------------------
// Forward.

template <typename T>
Status RnnForward(cublasHandle_t blas, cudaStream_t stream, const RnnConfig& config,
                  const int32_t* host_seq_lengths, const T* x, const T* h0, const T* c0, const T* params,
                  T* y, T* hy, T* cy, void* reserve, void* workspace) {
  TF_RNN_RETURN_IF_ERROR(ValidateRnnConfig(config));
  int64_t max_len = 0;
  TF_RNN_RETURN_IF_ERROR(ValidateSequenceLengths(config, host_seq_lengths, &max_len));
  const Dims D(config);
  const RnnModelShape& sh = config.shape;
  if (D.B == 0) return Status::Ok();  // every output is empty
  TF_RNN_RETURN_IF_ERROR(CheckBuffers<T>(config, reserve, workspace, false));
  TF_RNN_CUBLAS_CHECK(cublasSetStream(blas, stream));

  const ForwardWorkspace<T> ws = ForwardWorkspace<T>::Carve(config, workspace);
  const ReserveLayout<T> rs = ReserveLayout<T>::Carve(config, reserve);
  const bool training = config.is_training;
  const bool dropout = RnnUsesDropout(config);
  // Records of steps that never run stay zero, so that the backprop's GEMMs over all rows see zeros.
  if (training) TF_RNN_CUDA_CHECK(cudaMemsetAsync(reserve, 0, rs.bytes, stream));
  const int32_t* lens = nullptr;
  if (host_seq_lengths != nullptr) {
    TF_RNN_CUDA_CHECK(cudaMemcpyAsync(ws.lens, host_seq_lengths, D.B * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, stream));
    lens = ws.lens;
  }
  // Rows that can hold a valid step: a prefix of max_len·B rows when time-major.
  const int64_t gemm_rows = config.time_major ? max_len * D.B : D.rows;
  const StateView ws_h{0, D.B * D.Hout, D.Hout}, ws_c{0, D.B * D.H, D.H};
  const dim3 grid_h(BlocksFor(D.B * D.H), static_cast<unsigned>(D.dirs));
  const dim3 grid_hout(BlocksFor(D.B * D.Hout), static_cast<unsigned>(D.dirs));

  for (int64_t l = 0; l < D.L; ++l) {
    const int layer = static_cast<int>(l);
    const int64_t in_w = sh.LayerInputSize(layer);
    const T* in = l == 0 ? x : (training ? rs.x_in[l] : ws.layer[(l - 1) % 2]);
    T* out;
    if (l == D.L - 1) {
      out = y;
    } else if (training) {
      out = dropout ? ws.layer[0] : rs.x_in[l + 1];
    } else {
      out = ws.layer[l % 2];
    }
    TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.rows * D.outw, out));
    const RnnModelShape::Block blk = sh.LayerBlock(layer);
    const T* pl = params + sh.BlockOffset(layer, 0);
    const int64_t pstride = blk.size;

    ForwardStepArgs<T> a{};
    a.B = D.B, a.H = D.H, a.Hout = D.Hout, a.GH = D.GH, a.max_time = D.T, a.rows = D.rows, a.ts = D.ts, a.bs = D.bs;
    a.lens = lens;
    if (sh.HasInputWeights(layer)) {  // gx = x Wᵀ for all steps, both directions
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, gemm_rows, D.GH, in_w, T(1), in, in_w, 0,
                                             pl + blk.w, in_w, pstride, T(0), ws.gx, D.GH, D.rows * D.GH,
                                             D.dirs));
      a.gx = ws.gx, a.gx_dir = D.rows * D.GH, a.gx_row = D.GH, a.gx_gate = D.H;
    } else {  // skip_input: every gate adds the input itself
      a.gx = in, a.gx_dir = 0, a.gx_row = in_w, a.gx_gate = 0;
    }
    a.gh = ws.gh;
    a.b_w = pl + blk.b_w, a.b_r = pl + blk.b_r, a.bias_dir = pstride;
    a.m_step = ws.m_step, a.hp = ws.hp;
    a.y = out, a.y_row = D.outw;
    if (training) {
      a.act = rs.act[l], a.hprev = rs.hprev[l], a.ghn = rs.ghn[l], a.c_t = rs.c[l], a.cprev_t = rs.cprev[l];
      a.m_t = rs.m[l];
    }

    TF_RNN_RETURN_IF_ERROR(CopyState<T>(stream, D, D.Hout, h0, UserState(config, l, D.Hout), ws.h[0], ws_h));
    if (D.mode == RnnMode::kLstm) {
      TF_RNN_RETURN_IF_ERROR(CopyState<T>(stream, D, D.H, c0, UserState(config, l, D.H), ws.c[0], ws_c));
    }
    int cur = 0;
    for (int64_t s = 0; s < max_len; ++s) {
      // gh = h Rᵀ
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, D.B, D.GH, D.Hout, T(1), ws.h[cur],
                                             D.Hout, D.B * D.Hout, pl + blk.r, D.Hout, pstride, T(0), ws.gh,
                                             D.GH, D.B * D.GH, D.dirs));
      a.s = s;
      a.h_in = ws.h[cur], a.h_out = ws.h[1 - cur];
      a.c_in = ws.c[cur], a.c_out = ws.c[1 - cur];
      TF_RNN_RETURN_IF_ERROR(LaunchForwardStep<T>(D.mode, D.proj, grid_h, stream, a));
      if (D.proj) {  // h = m Pᵀ
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, D.B, D.Hout, D.H, T(1), ws.m_step, D.H,
                                               D.B * D.H, pl + blk.p, D.H, pstride, T(0), ws.hp, D.Hout,
                                               D.B * D.Hout, D.dirs));
        auto finish = &ProjectionStepKernel<T>;
        TF_RNN_LAUNCH(finish, grid_hout, kThreadsPerBlock, stream, a);
        TF_RNN_CUDA_CHECK(cudaGetLastError());
      }
      cur = 1 - cur;
    }
    if (hy != nullptr) {
      TF_RNN_RETURN_IF_ERROR(CopyState<T>(stream, D, D.Hout, ws.h[cur], ws_h, hy, UserState(config, l, D.Hout)));
    }
    if (D.mode == RnnMode::kLstm && cy != nullptr) {
      TF_RNN_RETURN_IF_ERROR(CopyState<T>(stream, D, D.H, ws.c[cur], ws_c, cy, UserState(config, l, D.H)));
    }
    if (dropout && l < D.L - 1) {
      auto kernel = &DropoutKernel<T>;
      TF_RNN_LAUNCH(kernel, BlocksFor(D.rows * D.outw), kThreadsPerBlock, stream, D.rows * D.outw, D.outw, D.T,
                    D.B, config.time_major, config.seed, config.seed2,
                    (config.dropout_call * static_cast<uint64_t>(D.L) + static_cast<uint64_t>(l + 1)) << 40,
                    static_cast<float>(config.dropout), DropoutScale<T>(config.dropout), out, rs.x_in[l + 1],
                    rs.mask[l + 1]);
      TF_RNN_CUDA_CHECK(cudaGetLastError());
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------------
// Backprop.

template <typename T>
Status RnnBackward(cublasHandle_t blas, cudaStream_t stream, const RnnConfig& config,
                   const int32_t* host_seq_lengths, const T* x, const T* params, const T* dy,
                   const T* dhy, const T* dcy, const void* reserve, T* dx, T* dh0, T* dc0, T* dparams,
                   void* workspace) {
  TF_RNN_RETURN_IF_ERROR(ValidateRnnConfig(config));
  if (!config.is_training) {
    return Status::InvalidArgument("fused RNN backprop: needs the reserve of a forward with is_training");
  }
  int64_t max_len = 0;
  TF_RNN_RETURN_IF_ERROR(ValidateSequenceLengths(config, host_seq_lengths, &max_len));
  const Dims D(config);
  const RnnModelShape& sh = config.shape;
  TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, sh.ParamsSize(), dparams));
  if (D.B == 0) return Status::Ok();
  TF_RNN_RETURN_IF_ERROR(CheckBuffers<T>(config, const_cast<void*>(reserve), workspace, true));
  TF_RNN_CUBLAS_CHECK(cublasSetStream(blas, stream));

  const BackwardWorkspace<T> ws = BackwardWorkspace<T>::Carve(config, workspace);
  const ReserveLayout<T> rs = ReserveLayout<T>::Carve(config, const_cast<void*>(reserve));
  const bool dropout = RnnUsesDropout(config);
  const int32_t* lens = nullptr;
  if (host_seq_lengths != nullptr) {
    TF_RNN_CUDA_CHECK(cudaMemcpyAsync(ws.lens, host_seq_lengths, D.B * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, stream));
    lens = ws.lens;
  }
  const int64_t gemm_rows = config.time_major ? max_len * D.B : D.rows;
  TF_RNN_RETURN_IF_ERROR(Fill<T>(stream, gemm_rows, T(1), ws.ones));
  const StateView ws_h{0, D.B * D.Hout, D.Hout}, ws_c{0, D.B * D.H, D.H};
  const dim3 grid_h(BlocksFor(D.B * D.H), static_cast<unsigned>(D.dirs));
  const dim3 grid_hout(BlocksFor(D.B * D.Hout), static_cast<unsigned>(D.dirs));
  const bool gru = D.mode == RnnMode::kGru;

  const T* d_out = dy;  // grad of the current layer's output
  int gcur = 0;
  for (int64_t l = D.L - 1; l >= 0; --l) {
    const int layer = static_cast<int>(l);
    const int64_t in_w = sh.LayerInputSize(layer);
    const T* in = l == 0 ? x : rs.x_in[l];
    T* d_in = l == 0 ? dx : ws.grad[gcur];
    const RnnModelShape::Block blk = sh.LayerBlock(layer);
    const T* pl = params + sh.BlockOffset(layer, 0);
    T* dpl = dparams + sh.BlockOffset(layer, 0);
    const int64_t pstride = blk.size;

    TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.dirs * D.rows * D.GH, ws.d_gx));
    if (gru) TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.dirs * D.rows * D.GH, ws.d_gh));
    if (D.proj) TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.dirs * D.rows * D.Hout, ws.dhtot));
    TF_RNN_RETURN_IF_ERROR(CopyState<T>(stream, D, D.Hout, dhy, UserState(config, l, D.Hout), ws.dh[0], ws_h));
    if (D.mode == RnnMode::kLstm) {
      TF_RNN_RETURN_IF_ERROR(CopyState<T>(stream, D, D.H, dcy, UserState(config, l, D.H), ws.dc, ws_c));
    }

    BackwardStepArgs<T> a{};
    a.B = D.B, a.H = D.H, a.Hout = D.Hout, a.GH = D.GH, a.max_time = D.T, a.rows = D.rows, a.ts = D.ts, a.bs = D.bs;
    a.lens = lens;
    a.dy = d_out, a.dy_row = D.outw;
    a.dc = ws.dc, a.dm_step = ws.dm_step, a.dhtot_step = ws.dhtot_step, a.dhtot = ws.dhtot;
    a.act = rs.act[l], a.hprev = rs.hprev[l], a.ghn = rs.ghn[l], a.c_t = rs.c[l], a.cprev_t = rs.cprev[l];
    a.d_gx = ws.d_gx, a.d_gh = ws.d_gh, a.d_gh_step = ws.d_gh_step;
    int cur = 0;
    for (int64_t s = max_len - 1; s >= 0; --s) {
      a.s = s;
      a.dh_in = ws.dh[cur], a.dh_out = ws.dh[1 - cur];
      if (D.proj) {  // dm = dh P
        auto pre = &ProjectionBackwardKernel<T>;
        TF_RNN_LAUNCH(pre, grid_hout, kThreadsPerBlock, stream, a);
        TF_RNN_CUDA_CHECK(cudaGetLastError());
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, D.B, D.H, D.Hout, T(1), ws.dhtot_step,
                                               D.Hout, D.B * D.Hout, pl + blk.p, D.H, pstride, T(0), ws.dm_step,
                                               D.H, D.B * D.H, D.dirs));
      }
      TF_RNN_RETURN_IF_ERROR(LaunchBackwardStep<T>(D.mode, D.proj, grid_h, stream, a));
      // dh_prev += d_gh R
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, D.B, D.Hout, D.GH, T(1), ws.d_gh_step,
                                             D.GH, D.B * D.GH, pl + blk.r, D.Hout, pstride, T(1), ws.dh[1 - cur],
                                             D.Hout, D.B * D.Hout, D.dirs));
      cur = 1 - cur;
    }
    if (dh0 != nullptr) {
      TF_RNN_RETURN_IF_ERROR(CopyState<T>(stream, D, D.Hout, ws.dh[cur], ws_h, dh0, UserState(config, l, D.Hout)));
    }
    if (D.mode == RnnMode::kLstm && dc0 != nullptr) {
      TF_RNN_RETURN_IF_ERROR(CopyState<T>(stream, D, D.H, ws.dc, ws_c, dc0, UserState(config, l, D.H)));
    }

    // Weight and bias grads, each one GEMM over all steps (both directions batched).
    if (sh.HasInputWeights(layer)) {  // dW = d_gxᵀ x
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, true, false, D.GH, in_w, gemm_rows, T(1), ws.d_gx, D.GH,
                                             D.rows * D.GH, in, in_w, 0, T(0), dpl + blk.w, in_w, pstride,
                                             D.dirs));
    }
    // dR = d_ghᵀ h_prev
    TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, true, false, D.GH, D.Hout, gemm_rows, T(1), ws.d_gh, D.GH,
                                           D.rows * D.GH, rs.hprev[l], D.Hout, D.rows * D.Hout, T(0),
                                           dpl + blk.r, D.Hout, pstride, D.dirs));
    if (D.proj) {  // dP = dhᵀ m
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, true, false, D.Hout, D.H, gemm_rows, T(1), ws.dhtot,
                                             D.Hout, D.rows * D.Hout, rs.m[l], D.H, D.rows * D.H, T(0),
                                             dpl + blk.p, D.H, pstride, D.dirs));
    }
    // db_W = Σ_rows d_gx, db_R = Σ_rows d_gh
    TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, 1, D.GH, gemm_rows, T(1), ws.ones,
                                           gemm_rows, 0, ws.d_gx, D.GH, D.rows * D.GH, T(0), dpl + blk.b_w, D.GH,
                                           pstride, D.dirs));
    TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, 1, D.GH, gemm_rows, T(1), ws.ones,
                                           gemm_rows, 0, ws.d_gh, D.GH, D.rows * D.GH, T(0), dpl + blk.b_r, D.GH,
                                           pstride, D.dirs));

    // Grad of the layer's input, summed over the directions; not wanted for layer 0 when dx is null.
    if (d_in == nullptr) break;
    TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.rows * in_w, d_in));
    if (sh.HasInputWeights(layer)) {  // dx = Σ_d d_gx W
      for (int64_t d = 0; d < D.dirs; ++d) {
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, gemm_rows, in_w, D.GH, T(1),
                                               ws.d_gx + d * D.rows * D.GH, D.GH, 0, pl + d * pstride + blk.w, in_w,
                                               0, d == 0 ? T(0) : T(1), d_in, in_w, 0));
      }
    } else {
      auto kernel = &SkipInputGradKernel<T>;
      TF_RNN_LAUNCH(kernel, BlocksFor(gemm_rows * D.H), kThreadsPerBlock, stream, gemm_rows, D.H, D.G, D.dirs,
                    D.rows, ws.d_gx, d_in);
      TF_RNN_CUDA_CHECK(cudaGetLastError());
    }
    if (l > 0) {
      if (dropout) {
        auto kernel = &DropoutBackwardKernel<T>;
        TF_RNN_LAUNCH(kernel, BlocksFor(D.rows * D.outw), kThreadsPerBlock, stream, D.rows * D.outw,
                      DropoutScale<T>(config.dropout), rs.mask[l], d_in);
        TF_RNN_CUDA_CHECK(cudaGetLastError());
      }
      d_out = d_in;
      gcur = 1 - gcur;
    }
  }
  return Status::Ok();
}

#define TF_RNN_INSTANTIATE_FUSED_RNN(T)                                                                         \
  template Status RnnForward<T>(cublasHandle_t, cudaStream_t, const RnnConfig&, const int32_t*, const T*,      \
                                const T*, const T*, const T*, T*, T*, T*, void*, void*);                       \
  template Status RnnBackward<T>(cublasHandle_t, cudaStream_t, const RnnConfig&, const int32_t*, const T*,     \
                                 const T*, const T*, const T*, const T*, const void*, T*, T*, T*, T*, void*);
TF_RNN_INSTANTIATE_FUSED_RNN(float)
TF_RNN_INSTANTIATE_FUSED_RNN(double)
#undef TF_RNN_INSTANTIATE_FUSED_RNN

}  // namespace cuda
}  // namespace tf_rnn_ops
