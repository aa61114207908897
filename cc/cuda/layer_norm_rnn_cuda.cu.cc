// The fused layer-normalized LSTM / GRU on CUDA (layer_norm_rnn_cuda.h): the step kernels and the
// driver, one template over the cell.
//
// A layer-norm cell needs the mean and variance over a row's whole gate vector before any gate, so
// (as haste's LayerNorm kernels) a step kernel gives each batch row one block (blockIdx.y, a
// grid-stride loop over the rows): the block's threads sum their share of the row, the sums meet
// in shared memory (BlockSum), and each thread then runs the cell for its units j (all G gates of
// unit j: the element-wise math needs no other thread). Every value a thread writes in a pass is
// read in a later pass by the same thread, or after a BlockSum (which ends with a barrier).
//
// The cells' per-unit math (the normalize / denormalize and LN's input grad, the pre-activations,
// which gate gets tanh, the c / h update, their grads, zoneout) is cc/cells/layer_norm_cells.h's,
// the same functions the CPU row pass (cc/kernels/layer_norm_cpu_rows.h) calls; what is here is
// the GPU's walk over a row: GpuRow<Cell> below (the block sums, a thread per unit j). The driver
// and the kernels take the cell (LayerNormLstmCell / LayerNormGruCell) as a template argument.
//
// Host emulation (cc/cuda/cuda_compat.h): a block is one thread there (BlockSum of one value, the
// barriers vanish), so the emulation checks the math of every pass, not the block's cooperation.
#include "cc/cuda/layer_norm_rnn_cuda.h"

#include <cstdint>

#include "cc/cells/cell_math.h"
#include "cc/cells/layer_norm_cells.h"
#include "cc/cuda/cuda_util.h"

#if !defined(__CUDACC_RTC__)
#include <algorithm>
#include <string>
#endif

namespace tf_rnn_ops {
namespace cuda {
namespace layer_norm {

// Threads of a step kernel's block (a power of two: BlockSum's tree).
constexpr int kLnThreads = 256;

// The sum of every thread's `v` in the block, returned to all of them. `buf`: kLnThreads shared
// values; ends with a barrier, so the caller may write what the summed values were read from.
template <typename T>
__device__ T BlockSum(T v, T* buf) {
  buf[threadIdx.x] = v;
  TF_RNN_SYNC();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    TF_RNN_SYNC();
  }
  const T sum = buf[0];
  TF_RNN_SYNC();
  return sum;
}

// The units j of a row this thread runs.
#define TF_RNN_LN_UNITS(j, n) for (int64_t j = threadIdx.x; j < (n); j += blockDim.x)

using layer_norm_cells::Denormalized;
using layer_norm_cells::InvStd;
using layer_norm_cells::LayerNormGruCell;
using layer_norm_cells::LayerNormLstmCell;
using layer_norm_cells::Normalized;
using layer_norm_cells::NormalizeInputGrad;
using layer_norm_cells::Zoneout;
using layer_norm_cells::ZoneoutBackward;

// The parameters of a layer (bias, bias_h, the γs and βs, eps), as the CPU's.
template <typename T>
using RowParams = layer_norm_cells::LayerNormParams<T>;

// mean and 1/sqrt(var + eps) of v[0, n) (two passes: the mean, then the centered squares).
template <typename T>
__device__ T MeanInv(const T* v, int64_t n, T eps, T* buf, T* mean) {
  T acc = T(0);
  TF_RNN_LN_UNITS(j, n) { acc += v[j]; }
  const T m = BlockSum(acc, buf) / static_cast<T>(n);
  acc = T(0);
  TF_RNN_LN_UNITS(j, n) {
    const T d = v[j] - m;
    acc += d * d;
  }
  const T var = BlockSum(acc, buf) / static_cast<T>(n);
  *mean = m;
  return InvStd(var, eps);
}

// One row's buffers in the forward: gx, gh [G·H] (xW and hR, normalized in place: xhat_x,
// xhat_h), act [G·H], c_hat [H] (LSTM), stats [3].
template <typename T>
struct FwdRow {
  T *gx, *gh, *act, *c_hat, *stats;
};

// One row's saved values and grads in the backward. dht: the grad of h~ [H]; dc: the grad of c
// (in: after the step, out: of c_prev); dh: adds the grad of h_prev the cell passes on directly.
// dzx / dzh: the grads of the x side's / h side's LN outputs (the terms of the gates' sums) [G·H];
// dcn [H] (LSTM): the grad of LN_c's output; dgx / dgh: the grads of xW and hR [G·H].
template <typename T>
struct BwdRow {
  const T *xhat_x, *xhat_h, *act, *c_hat, *c_prev, *h_prev, *stats, *dht;
  T *dh, *dc, *dzx, *dzh, *dcn, *dgx, *dgh;
};

// LN's input grad (NormalizeInputGrad) for both sides at once, from the sums the thread gathered
// (of dz γ and dz γ xhat, each side).
template <typename T, int G>
__device__ void BothNormalizeGrads(const RowParams<T>& p, int64_t H, const BwdRow<T>& r,
                                   const T* dzh, T sx1, T sx2, T sh1, T sh2, T* buf) {
  const T n = static_cast<T>(G * H);
  const T mx1 = BlockSum(sx1, buf) / n, mx2 = BlockSum(sx2, buf) / n;
  const T mh1 = BlockSum(sh1, buf) / n, mh2 = BlockSum(sh2, buf) / n;
  const T ix = r.stats[0], ih = r.stats[1];
  TF_RNN_LN_UNITS(j, H) {
    for (int g = 0; g < G; ++g) {
      const int64_t k = g * H + j;
      r.dgx[k] = NormalizeInputGrad(r.dzx[k], p.gamma_x[k], r.xhat_x[k], ix, mx1, mx2);
      r.dgh[k] = NormalizeInputGrad(dzh[k], p.gamma_h[k], r.xhat_h[k], ih, mh1, mh2);
    }
  }
}

// ------------------------------------------------------------------------------------ rows
// The row pass of a cell on the GPU: Forward(p, H, row, h_prev, c, h~, buf) and Backward(p, H,
// row, buf), run by every thread of the row's block.
template <typename Cell>
struct GpuRow;

// LayerNormLSTM. c: the state [H] (in: c_prev, out: c); h_prev unused (it acts through R only).
template <>
struct GpuRow<LayerNormLstmCell> {
  using Cell = LayerNormLstmCell;

  template <typename T>
  __device__ static void Forward(const RowParams<T>& p, int64_t H, const FwdRow<T>& r,
                                 const T* /*h_prev*/, T* c, T* h_tilde, T* buf) {
    const int64_t GH = 4 * H;
    T mx, mh;
    const T ix = MeanInv(r.gx, GH, p.eps, buf, &mx);
    const T ih = MeanInv(r.gh, GH, p.eps, buf, &mh);
    T acc = T(0);
    TF_RNN_LN_UNITS(j, H) {
      T a[4];
      for (int g = 0; g < 4; ++g) {
        const int64_t k = g * H + j;
        const T xx = Normalized(r.gx[k], mx, ix), hh = Normalized(r.gh[k], mh, ih);
        r.gx[k] = xx;
        r.gh[k] = hh;
        const T z = Cell::Preactivation(Denormalized(xx, p.gamma_x[k], p.beta_x[k]),
                                        Denormalized(hh, p.gamma_h[k], p.beta_h[k]), p.bias[k]);
        a[g] = Cell::IsTanhGate(g) ? Tanh(z) : Sigmoid(z);
        r.act[k] = a[g];
      }
      const T cr = Cell::CellUpdate(a[0], a[1], a[2], c[j]);
      r.c_hat[j] = cr;
      acc += cr;
    }
    const T mc = BlockSum(acc, buf) / static_cast<T>(H);
    acc = T(0);
    TF_RNN_LN_UNITS(j, H) {
      const T d = r.c_hat[j] - mc;
      acc += d * d;
    }
    const T ic = InvStd(BlockSum(acc, buf) / static_cast<T>(H), p.eps);
    TF_RNN_LN_UNITS(j, H) {
      const T ch = Normalized(r.c_hat[j], mc, ic);
      r.c_hat[j] = ch;
      const T cn = Denormalized(ch, p.gamma_c[j], p.beta_c[j]);
      c[j] = cn;
      h_tilde[j] = Cell::HTilde(r.act[3 * H + j], Tanh(cn));
    }
    if (threadIdx.x == 0) {
      r.stats[0] = ix;
      r.stats[1] = ih;
      r.stats[2] = ic;
    }
  }

  // The h side's pre-LN grad is the x side's (both LNs feed the same z): dzh = dzx.
  template <typename T>
  __device__ static void Backward(const RowParams<T>& p, int64_t H, const BwdRow<T>& r, T* buf) {
    T s1 = T(0), s2 = T(0);
    TF_RNN_LN_UNITS(j, H) {
      const T ch = r.c_hat[j];
      const T tc = Tanh(Denormalized(ch, p.gamma_c[j], p.beta_c[j]));
      const auto og = Cell::OutputBackward(r.dht[j], r.act[3 * H + j], tc, r.dc[j]);
      r.dzx[3 * H + j] = og.d_o;
      r.dcn[j] = og.d_c;
      s1 += og.d_c * p.gamma_c[j];
      s2 += og.d_c * p.gamma_c[j] * ch;
    }
    const T m1 = BlockSum(s1, buf) / static_cast<T>(H);
    const T m2 = BlockSum(s2, buf) / static_cast<T>(H);
    const T ic = r.stats[2];
    T sx1 = T(0), sx2 = T(0), sh1 = T(0), sh2 = T(0);
    TF_RNN_LN_UNITS(j, H) {
      const T dcr = NormalizeInputGrad(r.dcn[j], p.gamma_c[j], r.c_hat[j], ic, m1, m2);
      const auto ug =
          Cell::CellUpdateBackward(dcr, r.act[j], r.act[H + j], r.act[2 * H + j], r.c_prev[j]);
      r.dc[j] = ug.d_c_prev;
      r.dzx[j] = ug.d_i;
      r.dzx[H + j] = ug.d_f;
      r.dzx[2 * H + j] = ug.d_g;
      for (int q = 0; q < 4; ++q) {
        const int64_t k = q * H + j;
        const T dz = r.dzx[k];
        sx1 += dz * p.gamma_x[k];
        sx2 += dz * p.gamma_x[k] * r.xhat_x[k];
        sh1 += dz * p.gamma_h[k];
        sh2 += dz * p.gamma_h[k] * r.xhat_h[k];
      }
    }
    BothNormalizeGrads<T, 4>(p, H, r, r.dzx, sx1, sx2, sh1, sh2, buf);
  }
};

// LayerNormGRU.
template <>
struct GpuRow<LayerNormGruCell> {
  using Cell = LayerNormGruCell;

  template <typename T>
  __device__ static void Forward(const RowParams<T>& p, int64_t H, const FwdRow<T>& r,
                                 const T* h_prev, T* /*c*/, T* h_tilde, T* buf) {
    const int64_t GH = 3 * H;
    T mx, mh;
    const T ix = MeanInv(r.gx, GH, p.eps, buf, &mx);
    const T ih = MeanInv(r.gh, GH, p.eps, buf, &mh);
    TF_RNN_LN_UNITS(j, H) {
      T xn[3], hn[3];
      for (int g = 0; g < 3; ++g) {
        const int64_t k = g * H + j;
        const T xx = Normalized(r.gx[k], mx, ix), hh = Normalized(r.gh[k], mh, ih);
        r.gx[k] = xx;
        r.gh[k] = hh;
        xn[g] = Denormalized(xx, p.gamma_x[k], p.bias[k]);
        hn[g] = Denormalized(hh, p.gamma_h[k], p.bias_h[k]);
      }
      const T z = Sigmoid(Cell::GatePreactivation(xn[0], hn[0]));
      const T rr = Sigmoid(Cell::GatePreactivation(xn[1], hn[1]));
      const T g = Tanh(Cell::CandidatePreactivation(rr, xn[2], hn[2]));
      r.act[j] = z;
      r.act[H + j] = rr;
      r.act[2 * H + j] = g;
      h_tilde[j] = Cell::HTilde(z, g, h_prev[j]);
    }
    if (threadIdx.x == 0) {
      r.stats[0] = ix;
      r.stats[1] = ih;
      r.stats[2] = T(0);
    }
  }

  // Adds z dh~ to dh (the grad of h_prev not through R).
  template <typename T>
  __device__ static void Backward(const RowParams<T>& p, int64_t H, const BwdRow<T>& r, T* buf) {
    T sx1 = T(0), sx2 = T(0), sh1 = T(0), sh2 = T(0);
    TF_RNN_LN_UNITS(j, H) {
      const int64_t k = 2 * H + j;
      const T hg = Denormalized(r.xhat_h[k], p.gamma_h[k], p.bias_h[k]);
      const auto u = Cell::Backward(r.dht[j], r.act[j], r.act[H + j], r.act[k], hg, r.h_prev[j]);
      r.dzx[j] = u.d_z;
      r.dzx[H + j] = u.d_r;
      r.dzx[k] = u.d_g;
      r.dzh[j] = u.d_z;
      r.dzh[H + j] = u.d_r;
      r.dzh[k] = u.d_h_side_g;
      r.dh[j] += u.d_h_prev;
      for (int q = 0; q < 3; ++q) {
        const int64_t kq = q * H + j;
        sx1 += r.dzx[kq] * p.gamma_x[kq];
        sx2 += r.dzx[kq] * p.gamma_x[kq] * r.xhat_x[kq];
        sh1 += r.dzh[kq] * p.gamma_h[kq];
        sh2 += r.dzh[kq] * p.gamma_h[kq] * r.xhat_h[kq];
      }
    }
    BothNormalizeGrads<T, 3>(p, H, r, r.dzh, sx1, sx2, sh1, sh2, buf);
  }
};

// ------------------------------------------------------------------------------------ kernels
// A forward step's buffers, each at the step's first row (row b at b·width; y's at b·y_stride: H
// time-major, T·H batch-major).
template <typename T>
struct FwdStepArgs {
  int64_t B, H, y_stride;
  RowParams<T> p;
  const T* mask;   // [B] or null
  const T* zmask;  // [B, H] (kMask), [1] (kScalar) or null
  int zoneout;     // ZoneoutKind
  T *gx, *gh, *act, *c_hat, *h_prev, *c_prev, *h_tilde, *stats;
  T *h, *c, *y;  // the states [B, H] (in/out), the step's output rows
};

template <typename T, typename Cell>
__global__ void LnForwardStepKernel(FwdStepArgs<T> a) {
  TF_RNN_SHARED T buf[kLnThreads];
  const int64_t H = a.H, GH = Cell::kGates * H;
  for (int64_t b = blockIdx.y; b < a.B; b += gridDim.y) {
    T* h = a.h + b * H;
    T* c = Cell::kHasCellState ? a.c + b * H : nullptr;
    T* h_prev = a.h_prev + b * H;
    T* y = a.y + b * a.y_stride;
    TF_RNN_LN_UNITS(j, H) {
      h_prev[j] = h[j];
      if (Cell::kHasCellState) a.c_prev[b * H + j] = c[j];
    }
    if (a.mask != nullptr && a.mask[b] == T(0)) {  // the states kept; the output is the carried h
      TF_RNN_LN_UNITS(j, H) {
        y[j] = h[j];
        a.h_tilde[b * H + j] = h[j];
        if (Cell::kHasCellState) a.c_hat[b * H + j] = T(0);  // read (times a zero grad) by dγc
      }
      continue;
    }
    const FwdRow<T> row{a.gx + b * GH, a.gh + b * GH, a.act + b * GH,
                        Cell::kHasCellState ? a.c_hat + b * H : nullptr, a.stats + b * 3};
    T* ht = a.h_tilde + b * H;
    GpuRow<Cell>::Forward(a.p, H, row, h_prev, c, ht, buf);
    // Zoneout on h (never c): h = h_prev + k (h~ − h_prev); the zoned h is the output and state.
    TF_RNN_LN_UNITS(j, H) {
      T v = ht[j];
      if (a.zoneout == static_cast<int>(ZoneoutKind::kMask)) {
        v = Zoneout(h_prev[j], v, a.zmask[b * H + j]);
      } else if (a.zoneout == static_cast<int>(ZoneoutKind::kScalar)) {
        v = Zoneout(h_prev[j], v, a.zmask[0]);
      }
      h[j] = v;
      y[j] = v;
    }
  }
}

// dy's and dgx's rows in x's layout (dy_stride: H or T·H; dgx_stride: G·H or T·G·H), so that
// dX = dGX Wᵀ and dW = Xᵀ dGX run over all rows in either layout; the others time-major.
template <typename T>
struct BwdStepArgs {
  int64_t B, H, dy_stride, dgx_stride;
  RowParams<T> p;
  const T* mask;
  const T* zmask;
  int zoneout;
  const T *xhat_x, *xhat_h, *act, *c_hat, *c_prev, *h_prev, *stats, *dy;
  T* dht;  // [B, H] scratch: the grad of h~
  T *dh, *dc, *dzx, *dzh, *dcn, *dgx, *dgh;
};

// dh (in: the grad of h after the step) becomes the grad of h_prev but for the R product, which
// the driver's GEMM adds.
template <typename T, typename Cell>
__global__ void LnBackwardStepKernel(BwdStepArgs<T> a) {
  TF_RNN_SHARED T buf[kLnThreads];
  const int64_t H = a.H, GH = Cell::kGates * H;
  for (int64_t b = blockIdx.y; b < a.B; b += gridDim.y) {
    T* dh = a.dh + b * H;
    const T* dy = a.dy + b * a.dy_stride;
    T* dgx = a.dgx + b * a.dgx_stride;
    if (a.mask != nullptr && a.mask[b] == T(0)) {  // the states passed through; y was h_prev
      TF_RNN_LN_UNITS(j, H) {
        dh[j] += dy[j];
        if (Cell::kHasCellState) a.dcn[b * H + j] = T(0);
        for (int g = 0; g < Cell::kGates; ++g) {
          const int64_t k = b * GH + g * H + j;
          a.dzx[k] = a.dgh[k] = dgx[g * H + j] = T(0);
          if (Cell::kHasRecurrentBias) a.dzh[k] = T(0);
        }
      }
      continue;
    }
    T* dht = a.dht + b * H;
    TF_RNN_LN_UNITS(j, H) {
      const T dsum = dy[j] + dh[j];
      if (a.zoneout == static_cast<int>(ZoneoutKind::kNone)) {
        dht[j] = dsum;
        dh[j] = T(0);
      } else {
        const T k =
            a.zoneout == static_cast<int>(ZoneoutKind::kMask) ? a.zmask[b * H + j] : a.zmask[0];
        const auto zg = ZoneoutBackward(dsum, k);
        dht[j] = zg.d_tilde;
        dh[j] = zg.d_prev;
      }
    }
    const BwdRow<T> row{a.xhat_x + b * GH,
                        a.xhat_h + b * GH,
                        a.act + b * GH,
                        Cell::kHasCellState ? a.c_hat + b * H : nullptr,
                        Cell::kHasCellState ? a.c_prev + b * H : nullptr,
                        a.h_prev + b * H,
                        a.stats + b * 3,
                        dht,
                        dh,
                        Cell::kHasCellState ? a.dc + b * H : nullptr,
                        a.dzx + b * GH,
                        Cell::kHasRecurrentBias ? a.dzh + b * GH : nullptr,
                        Cell::kHasCellState ? a.dcn + b * H : nullptr,
                        dgx,
                        a.dgh + b * GH};
    GpuRow<Cell>::Backward(a.p, H, row, buf);
  }
}

// out = g ⊙ v over n values (the γ grads' per-row terms: g a grad, v a saved value), 0 where g
// is 0: a masked row's saved values may never have been written (the CPU kernel's reserve leaves
// them so), and 0 · NaN would not be 0.
template <typename T>
__global__ void LnMulKernel(int64_t n, const T* g, const T* v, T* out) {
  TF_RNN_KERNEL_LOOP(i, n) { out[i] = g[i] == T(0) ? T(0) : g[i] * v[i]; }
}

// The recurrent mask m [B, H] on n values v of rows [.., B, H] (m repeats every `period` = B·H
// values): out = v ⊙ m, or out += v ⊙ m (accumulate != 0). Forward: h ⊙ m, R's input; backward:
// dh_prev += (dGH Rᵀ) ⊙ m, and h_prev ⊙ m of every step, dR's input.
template <typename T>
__global__ void LnRecurrentMaskKernel(int64_t n, int64_t period, const T* v, const T* m,
                                      int accumulate, T* out) {
  TF_RNN_KERNEL_LOOP(i, n) {
    const T d = v[i] * m[i % period];
    out[i] = accumulate != 0 ? out[i] + d : d;
  }
}

}  // namespace layer_norm

#if !defined(__CUDACC_RTC__)
// -------------------------------------------------------------------------------------- host
namespace {
using layer_norm::kLnThreads;

// The cell's type for `kind`: the one place the driver's entry points pick it.
template <typename F>
Status DispatchLayerNormCell(LayerNormCellKind kind, F&& f) {
  if (kind == LayerNormCellKind::kLstm) return f(layer_norm_cells::LayerNormLstmCell());
  return f(layer_norm_cells::LayerNormGruCell());
}

// Grid of a step kernel: one block per batch row (at most 65535; the kernels loop over the rest).
dim3 RowGrid(int64_t B) {
  return dim3(1, static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(B, 65535))));
}

// out (+)= v ⊙ m over n values, m [B, H] repeated every `period` values (LnRecurrentMaskKernel).
template <typename T>
Status RecurrentMask(cudaStream_t stream, int64_t n, int64_t period, const T* v, const T* m,
                     bool accumulate, T* out) {
  auto kernel = &layer_norm::LnRecurrentMaskKernel<T>;
  TF_RNN_LAUNCH(kernel, BlocksFor(n), kThreadsPerBlock, stream, n, period, v, m, accumulate ? 1 : 0,
                out);
  TF_RNN_CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

template <typename T>
layer_norm::RowParams<T> RowParamsOf(const LayerNormRnnConfig& c, const LayerNormRnnParams<T>& p) {
  return {p.bias,   p.recurrent_bias,         p.gamma_x, p.beta_x, p.gamma_h, p.beta_h, p.gamma_c,
          p.beta_c, static_cast<T>(c.epsilon)};
}

// The inference workspace (training works in the reserve): xW for all rows, the step's other rows;
// and, with a recurrent mask, h ⊙ m [B, H] (R's input; training too).
template <typename T>
struct ForwardWorkspace {
  T *gx, *gh, *act, *c_hat, *h_prev, *c_prev, *h_tilde, *stats, *h_masked;
  ForwardWorkspace(const LayerNormRnnConfig& c, void* base) {
    Carver carve(base);
    const int64_t B = c.batch, H = c.num_units, GH = c.gates() * H, rows = c.max_time * B;
    const bool inference = !c.is_training;
    gx = carve.Take<T>(inference ? rows * GH : 0);
    gh = carve.Take<T>(inference ? B * GH : 0);
    act = carve.Take<T>(inference ? B * GH : 0);
    c_hat = carve.Take<T>(inference ? B * H : 0);
    h_prev = carve.Take<T>(inference ? B * H : 0);
    c_prev = carve.Take<T>(inference ? B * H : 0);
    h_tilde = carve.Take<T>(inference ? B * H : 0);
    stats = carve.Take<T>(inference ? B * 3 : 0);
    h_masked = carve.Take<T>(c.has_recurrent_mask ? B * H : 0);
    size = carve.size();
  }
  size_t size;
};

// With a recurrent mask, also h_prev ⊙ m of every row (dR's input) and a step's dGH Rᵀ [B, H].
template <typename T>
struct BackwardWorkspace {
  T *dgx, *dgh, *dzx, *dzh, *dcn, *dht, *prod, *ones, *h_masked, *dh_r;
  BackwardWorkspace(const LayerNormRnnConfig& c, void* base) {
    Carver carve(base);
    const int64_t B = c.batch, H = c.num_units, GH = c.gates() * H, rows = c.max_time * B;
    dgx = carve.Take<T>(rows * GH);
    dgh = carve.Take<T>(rows * GH);
    dzx = carve.Take<T>(rows * GH);
    dzh = carve.Take<T>(c.lstm() ? 0 : rows * GH);
    dcn = carve.Take<T>(c.lstm() ? rows * H : 0);
    dht = carve.Take<T>(B * H);
    prod = carve.Take<T>(rows * GH);
    ones = carve.Take<T>(rows);
    h_masked = carve.Take<T>(c.has_recurrent_mask ? rows * H : 0);
    dh_r = carve.Take<T>(c.has_recurrent_mask ? B * H : 0);
    size = carve.size();
  }
  size_t size;
};

template <typename T, typename Cell>
Status Forward(cublasHandle_t blas, cudaStream_t stream, const LayerNormRnnConfig& c, const T* x,
               const T* h0, const T* c0, const LayerNormRnnParams<T>& params, const T* mask,
               const T* zoneout_mask, const T* recurrent_mask, T* y, T* hn, T* cn, T* reserve,
               void* workspace) {
  const int64_t T_ = c.max_time, B = c.batch, I = c.input_size, H = c.num_units;
  const int64_t GH = Cell::kGates * H, rows = T_ * B;
  TF_RNN_CUBLAS_CHECK(cublasSetStream(blas, stream));
  if (B * H > 0) {
    TF_RNN_CUDA_CHECK(cudaMemcpyAsync(hn, h0, B * H * sizeof(T), cudaMemcpyDeviceToDevice, stream));
    if (Cell::kHasCellState) {
      TF_RNN_CUDA_CHECK(
          cudaMemcpyAsync(cn, c0, B * H * sizeof(T), cudaMemcpyDeviceToDevice, stream));
    }
  }
  if (rows == 0) return Status::Ok();
  const LayerNormReserveLayout rl(rows, H, GH, Cell::kHasCellState);
  const ForwardWorkspace<T> ws(c, workspace);
  const bool training = c.is_training;
  // xW for every row, time-major in either layout (the reserve's order): into the reserve's
  // xhat_x (training) or the workspace. Batch-major x: a strided batch of T products, step t's B
  // rows of x T·I apart.
  T* gx_all = training ? reserve + rl.xhat_x : ws.gx;
  if (c.time_major) {
    TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, rows, GH, I, T(1), x, I, 0,
                                           params.kernel, GH, 0, T(0), gx_all, GH, 0));
  } else {
    TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, B, GH, I, T(1), x, T_ * I, I,
                                           params.kernel, GH, 0, T(0), gx_all, GH, B * GH,
                                           /*batch=*/T_));
  }
  layer_norm::FwdStepArgs<T> a{};
  a.B = B;
  a.H = H;
  a.y_stride = c.time_major ? H : T_ * H;
  a.p = RowParamsOf(c, params);
  a.zoneout = static_cast<int>(c.zoneout);
  a.h = hn;
  a.c = Cell::kHasCellState ? cn : nullptr;
  auto kernel = &layer_norm::LnForwardStepKernel<T, Cell>;
  for (int64_t t = 0; t < T_; ++t) {
    const int64_t r0 = t * B;
    auto at = [&](int64_t region, int64_t width) { return reserve + region + r0 * width; };
    a.gx = gx_all + r0 * GH;
    a.gh = training ? at(rl.xhat_h, GH) : ws.gh;
    a.act = training ? at(rl.act, GH) : ws.act;
    a.c_hat = training ? at(rl.c_hat, H) : ws.c_hat;
    a.h_prev = training ? at(rl.h_prev, H) : ws.h_prev;
    a.c_prev = training ? at(rl.c_prev, H) : ws.c_prev;
    a.h_tilde = training ? at(rl.h_tilde, H) : ws.h_tilde;
    a.stats = training ? at(rl.stats, 3) : ws.stats;
    a.mask = c.has_mask ? mask + r0 : nullptr;
    a.zmask = c.zoneout == ZoneoutKind::kMask     ? zoneout_mask + r0 * H
              : c.zoneout == ZoneoutKind::kScalar ? zoneout_mask
                                                  : nullptr;
    a.y = y + (c.time_major ? r0 : t) * H;
    // R's input: h, or h ⊙ m (recurrent dropout; the kernel reads the undropped h).
    const T* h_in = hn;
    if (c.has_recurrent_mask) {
      TF_RNN_RETURN_IF_ERROR(
          RecurrentMask(stream, B * H, B * H, hn, recurrent_mask, false, ws.h_masked));
      h_in = ws.h_masked;
    }
    TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, B, GH, H, T(1), h_in, H, 0,
                                           params.recurrent_kernel, GH, 0, T(0), a.gh, GH, 0));
    TF_RNN_LAUNCH(kernel, RowGrid(B), kLnThreads, stream, a);
    TF_RNN_CUDA_CHECK(cudaGetLastError());
  }
  return Status::Ok();
}

// dst[n] = the column sums of src [rows, n] (a GEMM with the ones vector).
template <typename T>
Status ColumnSums(cublasHandle_t blas, cudaStream_t stream, int64_t rows, int64_t n, const T* ones,
                  const T* src, T* dst) {
  return RowMajorGemm<T>(blas, stream, false, false, 1, n, rows, T(1), ones, rows, 0, src, n, 0,
                         T(0), dst, n, 0);
}

// dst[n] = Σ_rows a ⊙ b (the γ grads).
template <typename T>
Status ProductSums(cublasHandle_t blas, cudaStream_t stream, int64_t rows, int64_t n, const T* ones,
                   const T* a, const T* b, T* prod, T* dst) {
  auto kernel = &layer_norm::LnMulKernel<T>;
  TF_RNN_LAUNCH(kernel, BlocksFor(rows * n), kThreadsPerBlock, stream, rows * n, a, b, prod);
  TF_RNN_CUDA_CHECK(cudaGetLastError());
  return ColumnSums(blas, stream, rows, n, ones, prod, dst);
}

template <typename T, typename Cell>
Status Backward(cublasHandle_t blas, cudaStream_t stream, const LayerNormRnnConfig& c, const T* x,
                const LayerNormRnnParams<T>& params, const T* mask, const T* zoneout_mask,
                const T* recurrent_mask, const T* reserve, const T* dy, const T* dhn, const T* dcn,
                T* dx, T* dh0, T* dc0, const LayerNormRnnGrads<T>& grads, void* workspace) {
  const int64_t T_ = c.max_time, B = c.batch, I = c.input_size, H = c.num_units;
  const int64_t GH = Cell::kGates * H, rows = T_ * B;
  TF_RNN_CUBLAS_CHECK(cublasSetStream(blas, stream));
  if (B * H > 0) {
    TF_RNN_CUDA_CHECK(
        cudaMemcpyAsync(dh0, dhn, B * H * sizeof(T), cudaMemcpyDeviceToDevice, stream));
    if (Cell::kHasCellState) {
      TF_RNN_CUDA_CHECK(
          cudaMemcpyAsync(dc0, dcn, B * H * sizeof(T), cudaMemcpyDeviceToDevice, stream));
    }
  }
  // The param grads the cell has; zeros when there are no rows.
  T* const param_grads[] = {grads.kernel, grads.recurrent_kernel, grads.bias, grads.gamma_x,
                            grads.gamma_h};
  const int64_t param_sizes[] = {I * GH, H * GH, GH, GH, GH};
  if (rows == 0) {
    for (int k = 0; k < 5; ++k)
      TF_RNN_RETURN_IF_ERROR(Zero(stream, param_sizes[k], param_grads[k]));
    if constexpr (Cell::kHasBetas) {
      TF_RNN_RETURN_IF_ERROR(Zero(stream, GH, grads.beta_x));
      TF_RNN_RETURN_IF_ERROR(Zero(stream, GH, grads.beta_h));
    }
    if constexpr (Cell::kHasRecurrentBias) {
      TF_RNN_RETURN_IF_ERROR(Zero(stream, GH, grads.recurrent_bias));
    }
    if constexpr (Cell::kHasCellState) {
      TF_RNN_RETURN_IF_ERROR(Zero(stream, H, grads.gamma_c));
      TF_RNN_RETURN_IF_ERROR(Zero(stream, H, grads.beta_c));
    }
    return Status::Ok();
  }
  const LayerNormReserveLayout rl(rows, H, GH, Cell::kHasCellState);
  const BackwardWorkspace<T> ws(c, workspace);
  layer_norm::BwdStepArgs<T> a{};
  a.B = B;
  a.H = H;
  a.dy_stride = c.time_major ? H : T_ * H;
  a.dgx_stride = c.time_major ? GH : T_ * GH;
  a.p = RowParamsOf(c, params);
  a.zoneout = static_cast<int>(c.zoneout);
  a.dht = ws.dht;
  a.dh = dh0;
  a.dc = Cell::kHasCellState ? dc0 : nullptr;
  auto kernel = &layer_norm::LnBackwardStepKernel<T, Cell>;
  for (int64_t t = T_ - 1; t >= 0; --t) {
    const int64_t r0 = t * B;
    auto at = [&](int64_t region, int64_t width) { return reserve + region + r0 * width; };
    a.xhat_x = at(rl.xhat_x, GH);
    a.xhat_h = at(rl.xhat_h, GH);
    a.act = at(rl.act, GH);
    a.c_hat = at(rl.c_hat, H);
    a.c_prev = at(rl.c_prev, H);
    a.h_prev = at(rl.h_prev, H);
    a.stats = at(rl.stats, 3);
    a.dy = dy + (c.time_major ? r0 : t) * H;
    a.mask = c.has_mask ? mask + r0 : nullptr;
    a.zmask = c.zoneout == ZoneoutKind::kMask     ? zoneout_mask + r0 * H
              : c.zoneout == ZoneoutKind::kScalar ? zoneout_mask
                                                  : nullptr;
    a.dzx = ws.dzx + r0 * GH;
    a.dzh = Cell::kHasRecurrentBias ? ws.dzh + r0 * GH : nullptr;
    a.dcn = Cell::kHasCellState ? ws.dcn + r0 * H : nullptr;
    a.dgx = ws.dgx + (c.time_major ? r0 : t) * GH;
    a.dgh = ws.dgh + r0 * GH;
    TF_RNN_LAUNCH(kernel, RowGrid(B), kLnThreads, stream, a);
    TF_RNN_CUDA_CHECK(cudaGetLastError());
    if (c.has_recurrent_mask) {  // dh_prev += (dGH_t Rᵀ) ⊙ m
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, B, H, GH, T(1), a.dgh, GH,
                                             0, params.recurrent_kernel, GH, 0, T(0), ws.dh_r, H,
                                             0));
      TF_RNN_RETURN_IF_ERROR(
          RecurrentMask(stream, B * H, B * H, ws.dh_r, recurrent_mask, true, dh0));
    } else {  // dh_prev += dGH_t Rᵀ
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, B, H, GH, T(1), a.dgh, GH,
                                             0, params.recurrent_kernel, GH, 0, T(1), dh0, H, 0));
    }
  }
  // dGX's rows are x's (and dx's), so both products below run over all rows in either layout.
  if (dx != nullptr) {  // dX = dGX Wᵀ
    TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, rows, I, GH, T(1), ws.dgx, GH,
                                           0, params.kernel, GH, 0, T(0), dx, I, 0));
  }
  // dW = Xᵀ dGX, dR = H_prevᵀ dGH over all rows (R's input: H_prev ⊙ m with a recurrent mask).
  TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, true, false, I, GH, rows, T(1), x, I, 0,
                                         ws.dgx, GH, 0, T(0), grads.kernel, GH, 0));
  const T* h_prev_all = reserve + rl.h_prev;
  if (c.has_recurrent_mask) {
    TF_RNN_RETURN_IF_ERROR(
        RecurrentMask(stream, rows * H, B * H, h_prev_all, recurrent_mask, false, ws.h_masked));
    h_prev_all = ws.h_masked;
  }
  TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, true, false, H, GH, rows, T(1), h_prev_all,
                                         H, 0, ws.dgh, GH, 0, T(0), grads.recurrent_kernel, GH, 0));
  TF_RNN_RETURN_IF_ERROR(Fill(stream, rows, T(1), ws.ones));
  // The x side's LN feeds z (LSTM) / x^ (GRU) with the bias: db = Σ dzx, dγx = Σ dzx ⊙ xhat_x.
  const T* dzh = Cell::kHasRecurrentBias ? ws.dzh : ws.dzx;
  TF_RNN_RETURN_IF_ERROR(ColumnSums(blas, stream, rows, GH, ws.ones, ws.dzx, grads.bias));
  TF_RNN_RETURN_IF_ERROR(ProductSums(blas, stream, rows, GH, ws.ones, ws.dzx, reserve + rl.xhat_x,
                                     ws.prod, grads.gamma_x));
  TF_RNN_RETURN_IF_ERROR(ProductSums(blas, stream, rows, GH, ws.ones, dzh, reserve + rl.xhat_h,
                                     ws.prod, grads.gamma_h));
  if constexpr (Cell::kHasBetas) {
    TF_RNN_RETURN_IF_ERROR(ColumnSums(blas, stream, rows, GH, ws.ones, ws.dzx, grads.beta_x));
    TF_RNN_RETURN_IF_ERROR(ColumnSums(blas, stream, rows, GH, ws.ones, dzh, grads.beta_h));
  }
  if constexpr (Cell::kHasRecurrentBias) {
    TF_RNN_RETURN_IF_ERROR(ColumnSums(blas, stream, rows, GH, ws.ones, dzh, grads.recurrent_bias));
  }
  if constexpr (Cell::kHasCellState) {
    TF_RNN_RETURN_IF_ERROR(ColumnSums(blas, stream, rows, H, ws.ones, ws.dcn, grads.beta_c));
    TF_RNN_RETURN_IF_ERROR(ProductSums(blas, stream, rows, H, ws.ones, ws.dcn, reserve + rl.c_hat,
                                       ws.prod, grads.gamma_c));
  }
  return Status::Ok();
}

}  // namespace

Status ValidateLayerNormRnnConfig(const LayerNormRnnConfig& c) {
  if (c.cell != LayerNormCellKind::kLstm && c.cell != LayerNormCellKind::kGru) {
    return Status::InvalidArgument("layer-norm RNN: unknown cell " +
                                   std::to_string(static_cast<int>(c.cell)));
  }
  if (c.max_time < 0 || c.batch < 0 || c.input_size < 0) {
    return Status::InvalidArgument("layer-norm RNN: max_time, batch and input_size must be >= 0");
  }
  if (c.num_units <= 0) {
    return Status::InvalidArgument("layer-norm RNN: the cell size H must be positive, got " +
                                   std::to_string(c.num_units));
  }
  if (c.zoneout != ZoneoutKind::kNone && c.zoneout != ZoneoutKind::kMask &&
      c.zoneout != ZoneoutKind::kScalar) {
    return Status::InvalidArgument("layer-norm RNN: unknown zoneout kind " +
                                   std::to_string(static_cast<int>(c.zoneout)));
  }
  if (!(c.epsilon > 0)) {
    return Status::InvalidArgument("layer-norm RNN: epsilon must be positive, got " +
                                   std::to_string(c.epsilon));
  }
  // Every buffer's element count (the largest: [T·B, G·H]) within int64.
  const int64_t limit = INT64_MAX / 16;
  const int64_t GH = c.gates() * c.num_units;
  if (c.batch > 0 && c.max_time > limit / c.batch) {
    return Status::InvalidArgument("layer-norm RNN: T·B too large");
  }
  const int64_t rows = c.max_time * c.batch;
  if (GH > limit / c.num_units || (rows > 0 && GH > limit / rows) ||
      (c.input_size > 0 && GH > limit / c.input_size)) {
    return Status::InvalidArgument("layer-norm RNN: sizes too large");
  }
  return Status::Ok();
}

namespace {
// The recurrent mask's pointer agrees with has_recurrent_mask (null is fine where nothing is read:
// no rows).
Status CheckRecurrentMask(const LayerNormRnnConfig& c, const void* recurrent_mask) {
  if (!c.has_recurrent_mask && recurrent_mask != nullptr) {
    return Status::InvalidArgument(
        "layer-norm RNN: a recurrent_mask given, but the config says has_recurrent_mask = false");
  }
  if (c.has_recurrent_mask && recurrent_mask == nullptr && c.max_time * c.batch > 0) {
    return Status::InvalidArgument(
        "layer-norm RNN: has_recurrent_mask, but the recurrent_mask [B, H] is null");
  }
  return Status::Ok();
}
}  // namespace

int64_t LayerNormRnnReserveElements(const LayerNormRnnConfig& c) {
  const int64_t H = c.num_units;
  return LayerNormReserveLayout(c.is_training ? c.max_time * c.batch : 0, H, c.gates() * H,
                                c.lstm())
      .size;
}

size_t LayerNormRnnForwardWorkspaceBytes(const LayerNormRnnConfig& c, size_t elem_size) {
  return elem_size == sizeof(double) ? ForwardWorkspace<double>(c, nullptr).size
                                     : ForwardWorkspace<float>(c, nullptr).size;
}

size_t LayerNormRnnBackwardWorkspaceBytes(const LayerNormRnnConfig& c, size_t elem_size) {
  return elem_size == sizeof(double) ? BackwardWorkspace<double>(c, nullptr).size
                                     : BackwardWorkspace<float>(c, nullptr).size;
}

template <typename T>
Status LayerNormRnnForward(cublasHandle_t blas, cudaStream_t stream, const LayerNormRnnConfig& c,
                           const T* x, const T* h0, const T* c0,
                           const LayerNormRnnParams<T>& params, const T* mask,
                           const T* zoneout_mask, const T* recurrent_mask, T* y, T* hn, T* cn,
                           T* reserve, void* workspace) {
  TF_RNN_RETURN_IF_ERROR(ValidateLayerNormRnnConfig(c));
  TF_RNN_RETURN_IF_ERROR(CheckRecurrentMask(c, recurrent_mask));
  return DispatchLayerNormCell(c.cell, [&](auto cell) {
    return Forward<T, decltype(cell)>(blas, stream, c, x, h0, c0, params, mask, zoneout_mask,
                                      recurrent_mask, y, hn, cn, reserve, workspace);
  });
}

template <typename T>
Status LayerNormRnnBackward(cublasHandle_t blas, cudaStream_t stream, const LayerNormRnnConfig& c,
                            const T* x, const LayerNormRnnParams<T>& params, const T* mask,
                            const T* zoneout_mask, const T* recurrent_mask, const T* reserve,
                            const T* dy, const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0,
                            const LayerNormRnnGrads<T>& grads, void* workspace) {
  TF_RNN_RETURN_IF_ERROR(ValidateLayerNormRnnConfig(c));
  TF_RNN_RETURN_IF_ERROR(CheckRecurrentMask(c, recurrent_mask));
  if (!c.is_training) {
    return Status::InvalidArgument(
        "layer-norm RNN backward: needs the reserve of a training forward (is_training)");
  }
  return DispatchLayerNormCell(c.cell, [&](auto cell) {
    return Backward<T, decltype(cell)>(blas, stream, c, x, params, mask, zoneout_mask,
                                       recurrent_mask, reserve, dy, dhn, dcn, dx, dh0, dc0, grads,
                                       workspace);
  });
}

#define TF_RNN_INSTANTIATE_LAYER_NORM_RNN(T)                                                    \
  template Status LayerNormRnnForward<T>(                                                       \
      cublasHandle_t, cudaStream_t, const LayerNormRnnConfig&, const T*, const T*, const T*,    \
      const LayerNormRnnParams<T>&, const T*, const T*, const T*, T*, T*, T*, T*, void*);       \
  template Status LayerNormRnnBackward<T>(                                                      \
      cublasHandle_t, cudaStream_t, const LayerNormRnnConfig&, const T*,                        \
      const LayerNormRnnParams<T>&, const T*, const T*, const T*, const T*, const T*, const T*, \
      const T*, T*, T*, T*, const LayerNormRnnGrads<T>&, void*);
TF_RNN_INSTANTIATE_LAYER_NORM_RNN(float)
TF_RNN_INSTANTIATE_LAYER_NORM_RNN(double)
#undef TF_RNN_INSTANTIATE_LAYER_NORM_RNN

#endif  // __CUDACC_RTC__

}  // namespace cuda
}  // namespace tf_rnn_ops
