// The fused multi-layer RNN on CUDA: the driver (host), one template over the cell
// (cc/cells/rnn_cells.h) that the entry points below pick with DispatchCell. See fused_rnn_cuda.h;
// the element-wise kernels are in fused_rnn_cuda_kernels.cu.h, the buffer layouts in
// fused_rnn_cuda_layout.h, the checks and sizes in fused_rnn_cuda_checks.cu.cc.
//
// Sequence buffers (x, y, the layer inputs and every per-step record in the reserve) share one row
// order: row(t, b) = t·B + b (time-major) or b·T + t (batch-major), so the big GEMMs never need a
// transpose. Step s of direction d works on time t = s (forward) or t = len_b − 1 − s (backward)
// for the rows with s < len_b; the other rows carry their state through unchanged. Per-direction
// buffers are stacked [dirs, ...] so that one strided-batched GEMM and one kernel launch
// (blockIdx.y = direction) serve both directions of a layer.
#if defined(__CUDACC_RTC__)  // NVRTC (cc/cuda/cuda_compat.h): this file's kernels, no host code
#include "cc/cuda/fused_rnn_cuda_kernels.cu.h"
#else
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>

#include "cc/cells/rnn_cells.h"
#include "cc/cuda/cuda_util.h"
#include "cc/cuda/fused_rnn_cuda.h"
#include "cc/cuda/fused_rnn_cuda_kernels.cu.h"
#include "cc/cuda/fused_rnn_cuda_layout.h"
#include "cc/cuda/fused_rnn_cuda_steps.h"

namespace tf_rnn_ops {
namespace cuda {
namespace {

std::atomic<int> fused_steps_mode{0};  // SetFusedSteps

// Whether the forward's steps run FusedForwardStepKernel: one-product cells without projection,
// when asked. Not yet by default: its first version was slower than the cuBLAS path on an H200,
// the second is unmeasured (docs/PERFORMANCE.md item 71); once faster, few rows should take it.
template <typename Cell>
bool UseFusedSteps(const Dims& D) {
  if constexpr (CellRecurrentProducts<Cell>::value != 1) {
    return false;
  } else {
    return !D.proj && fused_steps_mode.load(std::memory_order_relaxed) == 1;
  }
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
Status CopyState(cudaStream_t stream, const Dims& D, int64_t width, const T* src,
                 StateView src_view, T* dst, StateView dst_view) {
  auto kernel = &StateCopyKernel<T>;
  TF_RNN_LAUNCH(kernel, dim3(BlocksFor(D.B * width), static_cast<unsigned>(D.dirs)),
                kThreadsPerBlock, stream, D.B, width,
                src != nullptr ? src + src_view.offset : nullptr, src_view.dir_stride,
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
  const size_t ws =
      backward ? RnnBackwardWorkspaceBytes(config, dtype) : RnnForwardWorkspaceBytes(config, dtype);
  if (ws > 0 && workspace == nullptr)
    return Status::InvalidArgument("fused RNN: the workspace is missing");
  if ((config.is_training || backward) && RnnReserveBytes(config, dtype) > 0 &&
      reserve == nullptr) {
    return Status::InvalidArgument("fused RNN: the reserve space is missing");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------------
// Forward.

template <typename T, typename Cell>
Status CellForward(cublasHandle_t blas, cudaStream_t stream, const RnnConfig& config,
                   const int32_t* host_seq_lengths, const T* x, const T* h0, const T* c0,
                   const T* params, T* y, T* hy, T* cy, void* reserve, void* workspace) {
  TF_RNN_RETURN_IF_ERROR(ValidateRnnConfig(config));
  int64_t max_len = 0;
  TF_RNN_RETURN_IF_ERROR(ValidateSequenceLengths(config, host_seq_lengths, &max_len));
  const Dims D(config);
  const RnnModelShape& sh = config.shape;
  if (D.B == 0) return Status::Ok();  // every output is empty
  TF_RNN_RETURN_IF_ERROR(CheckBuffers<T>(config, reserve, workspace, false));
  TF_RNN_CUBLAS_CHECK(cublasSetStream(blas, stream));

  const ForwardWorkspace<T, Cell> ws = ForwardWorkspace<T, Cell>::Carve(config, workspace);
  const ReserveLayout<T, Cell> rs = ReserveLayout<T, Cell>::Carve(config, reserve);
  const bool training = config.is_training;
  const bool dropout = RnnUsesDropout(config);
  // Records of steps that never run stay zero, so that the backprop's GEMMs over all rows see
  // zeros.
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
    static_cast<StepDims&>(a) = StepDimsOf(D, lens);
    if (sh.HasInputWeights(layer)) {  // gx = x Wᵀ for all steps, both directions
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, gemm_rows, D.GH, in_w, T(1),
                                             in, in_w, 0, pl + blk.w, in_w, pstride, T(0), ws.gx,
                                             D.GH, D.rows * D.GH, D.dirs));
      a.gx = ws.gx, a.gx_dir = D.rows * D.GH, a.gx_row = D.GH, a.gx_gate = D.H;
    } else {  // skip_input: every gate adds the input itself
      a.gx = in, a.gx_dir = 0, a.gx_row = in_w, a.gx_gate = 0;
    }
    a.gh = ws.gh;
    a.b_w = pl + blk.b_w, a.b_r = pl + blk.b_r, a.bias_dir = pstride;
    a.m_step = ws.m_step, a.hp = ws.hp;
    a.y = out, a.y_row = D.outw;
    for (int k = 0; k < Cell::kNumSaved; ++k) a.saved_width[k] = Cell::kSaved[k].Width(D.H);
    if (training) {
      for (int k = 0; k < Cell::kNumSaved; ++k) a.saved[k] = rs.saved[k][l];
      a.hprev = rs.hprev[l], a.cprev = rs.cprev[l], a.m_t = rs.m[l];
    }

    TF_RNN_RETURN_IF_ERROR(
        CopyState<T>(stream, D, D.Hout, h0, UserState(config, l, D.Hout), ws.h[0], ws_h));
    if (Cell::kHasCellState) {
      TF_RNN_RETURN_IF_ERROR(
          CopyState<T>(stream, D, D.H, c0, UserState(config, l, D.H), ws.c[0], ws_c));
    }
    a.rec_in = ws.rec_in;
    for (int k = 0; k < Cell::kNumSaved; ++k) a.step_saved[k] = ws.step_saved[k];
    const bool fused_steps = UseFusedSteps<Cell>(D);
    const dim3 grid_fused(static_cast<unsigned>((D.B + kFusedRows - 1) / kFusedRows *
                                                ((D.H + kFusedUnits - 1) / kFusedUnits)),
                          static_cast<unsigned>(D.dirs));
    int cur = 0;
    for (int64_t s = 0; s < max_len; ++s) {
      a.s = s;
      a.h_in = ws.h[cur], a.h_out = ws.h[1 - cur];
      a.c_in = ws.c[cur], a.c_out = ws.c[1 - cur];
      if constexpr (Products<Cell>::kCount == 1) {
        if (fused_steps) {
          auto kernel = &FusedForwardStepKernel<T, Cell>;
          TF_RNN_LAUNCH(kernel, grid_fused, kFusedCols<Cell>, stream, a, pl + blk.r, pstride);
          TF_RNN_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "FusedForwardStepKernel"));
          cur = 1 - cur;
          continue;
        }
      }
      for (int p = 0; p < Products<Cell>::kCount; ++p) {
        // gh's gate columns of product p = its input · (R's rows of those gates)ᵀ; then phase p
        const int64_t g0 = Products<Cell>::Begin(p) * D.H;
        const int64_t n = Products<Cell>::End(p) * D.H - g0;
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, D.B, n, D.Hout, T(1),
                                               p == 0 ? ws.h[cur] : ws.rec_in, D.Hout, D.B * D.Hout,
                                               pl + blk.r + g0 * D.Hout, D.Hout, pstride, T(0),
                                               ws.gh + g0, D.GH, D.B * D.GH, D.dirs));
        TF_RNN_RETURN_IF_ERROR((LaunchForwardStep<T, Cell>(D.proj, p, grid_h, stream, a)));
      }
      if (D.proj) {  // h = m Pᵀ
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, D.B, D.Hout, D.H, T(1),
                                               ws.m_step, D.H, D.B * D.H, pl + blk.p, D.H, pstride,
                                               T(0), ws.hp, D.Hout, D.B * D.Hout, D.dirs));
        auto finish = &ProjectionStepKernel<T>;
        TF_RNN_LAUNCH(finish, grid_hout, kThreadsPerBlock, stream, a);
        TF_RNN_CUDA_CHECK(cudaGetLastError());
      }
      cur = 1 - cur;
    }
    if (hy != nullptr) {
      TF_RNN_RETURN_IF_ERROR(
          CopyState<T>(stream, D, D.Hout, ws.h[cur], ws_h, hy, UserState(config, l, D.Hout)));
    }
    if (Cell::kHasCellState && cy != nullptr) {
      TF_RNN_RETURN_IF_ERROR(
          CopyState<T>(stream, D, D.H, ws.c[cur], ws_c, cy, UserState(config, l, D.H)));
    }
    if (dropout && l < D.L - 1) {
      auto kernel = &DropoutKernel<T>;
      TF_RNN_LAUNCH(
          kernel, BlocksFor(D.rows * D.outw), kThreadsPerBlock, stream, D.rows * D.outw, D.outw,
          D.T, D.B, config.time_major, config.seed, config.seed2,
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

template <typename T, typename Cell>
Status CellBackward(cublasHandle_t blas, cudaStream_t stream, const RnnConfig& config,
                    const int32_t* host_seq_lengths, const T* x, const T* params, const T* dy,
                    const T* dhy, const T* dcy, const void* reserve, T* dx, T* dh0, T* dc0,
                    T* dparams, void* workspace) {
  TF_RNN_RETURN_IF_ERROR(ValidateRnnConfig(config));
  if (!config.is_training) {
    return Status::InvalidArgument(
        "fused RNN backprop: needs the reserve of a forward with is_training");
  }
  int64_t max_len = 0;
  TF_RNN_RETURN_IF_ERROR(ValidateSequenceLengths(config, host_seq_lengths, &max_len));
  const Dims D(config);
  const RnnModelShape& sh = config.shape;
  TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, sh.ParamsSize(), dparams));
  if (D.B == 0) return Status::Ok();
  TF_RNN_RETURN_IF_ERROR(CheckBuffers<T>(config, const_cast<void*>(reserve), workspace, true));
  TF_RNN_CUBLAS_CHECK(cublasSetStream(blas, stream));

  const BackwardWorkspace<T, Cell> ws = BackwardWorkspace<T, Cell>::Carve(config, workspace);
  const ReserveLayout<T, Cell> rs =
      ReserveLayout<T, Cell>::Carve(config, const_cast<void*>(reserve));
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
    if (Cell::kDistinctRecurrentGrad) {
      TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.dirs * D.rows * D.GH, ws.d_gh));
    }
    if (D.proj) TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.dirs * D.rows * D.Hout, ws.dhtot));
    TF_RNN_RETURN_IF_ERROR(
        CopyState<T>(stream, D, D.Hout, dhy, UserState(config, l, D.Hout), ws.dh[0], ws_h));
    if (Cell::kHasCellState) {
      TF_RNN_RETURN_IF_ERROR(
          CopyState<T>(stream, D, D.H, dcy, UserState(config, l, D.H), ws.dc, ws_c));
    }

    BackwardStepArgs<T> a{};
    static_cast<StepDims&>(a) = StepDimsOf(D, lens);
    a.dy = d_out, a.dy_row = D.outw;
    a.dc = ws.dc, a.dm_step = ws.dm_step, a.dhtot_step = ws.dhtot_step, a.dhtot = ws.dhtot;
    for (int k = 0; k < Cell::kNumSaved; ++k) {
      a.saved[k] = rs.saved[k][l], a.saved_width[k] = Cell::kSaved[k].Width(D.H);
    }
    a.hprev = rs.hprev[l], a.cprev = rs.cprev[l];
    a.d_gx = ws.d_gx, a.d_gh = ws.d_gh, a.d_gh_step = ws.d_gh_step;
    a.d_rec_in = ws.d_rec_in;
    int cur = 0;
    for (int64_t s = max_len - 1; s >= 0; --s) {
      a.s = s;
      a.dh_in = ws.dh[cur], a.dh_out = ws.dh[1 - cur];
      if (D.proj) {  // dm = dh P
        auto pre = &ProjectionBackwardKernel<T>;
        TF_RNN_LAUNCH(pre, grid_hout, kThreadsPerBlock, stream, a);
        TF_RNN_CUDA_CHECK(cudaGetLastError());
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, D.B, D.H, D.Hout, T(1),
                                               ws.dhtot_step, D.Hout, D.B * D.Hout, pl + blk.p, D.H,
                                               pstride, T(0), ws.dm_step, D.H, D.B * D.H, D.dirs));
      }
      for (int p = Products<Cell>::kCount - 1; p >= 0; --p) {
        // Phase p, then the grad of product p's input: d_gh's gate columns of product p times R's
        // rows of those gates; product 0's is added to dh_prev, a later one's is what phase p - 1
        // passed on (d_rec_in).
        TF_RNN_RETURN_IF_ERROR((LaunchBackwardStep<T, Cell>(D.proj, p, grid_h, stream, a)));
        // The first step's product 0 feeds only dh0 (every direction reads h0 at s = 0).
        if (p == 0 && s == 0 && dh0 == nullptr) continue;
        const int64_t g0 = Products<Cell>::Begin(p) * D.H;
        const int64_t n = Products<Cell>::End(p) * D.H - g0;
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(
            blas, stream, false, false, D.B, D.Hout, n, T(1), ws.d_gh_step + g0, D.GH, D.B * D.GH,
            pl + blk.r + g0 * D.Hout, D.Hout, pstride, p == 0 ? T(1) : T(0),
            p == 0 ? ws.dh[1 - cur] : ws.d_rec_in, D.Hout, D.B * D.Hout, D.dirs));
      }
      cur = 1 - cur;
    }
    if (dh0 != nullptr) {
      TF_RNN_RETURN_IF_ERROR(
          CopyState<T>(stream, D, D.Hout, ws.dh[cur], ws_h, dh0, UserState(config, l, D.Hout)));
    }
    if (Cell::kHasCellState && dc0 != nullptr) {
      TF_RNN_RETURN_IF_ERROR(
          CopyState<T>(stream, D, D.H, ws.dc, ws_c, dc0, UserState(config, l, D.H)));
    }

    // Weight and bias grads, each one GEMM over all steps (both directions batched).
    if (sh.HasInputWeights(layer)) {  // dW = d_gxᵀ x
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, true, false, D.GH, in_w, gemm_rows, T(1),
                                             ws.d_gx, D.GH, D.rows * D.GH, in, in_w, 0, T(0),
                                             dpl + blk.w, in_w, pstride, D.dirs));
    }
    // dR = d_ghᵀ h_prev, a gate block per product: product p > 0 multiplied the cell's saved
    // buffer Products::Input(p) (Hout wide), not h_prev.
    for (int p = 0; p < Products<Cell>::kCount; ++p) {
      const int64_t g0 = Products<Cell>::Begin(p) * D.H;
      const int64_t n = Products<Cell>::End(p) * D.H - g0;
      const T* input = rs.hprev[l];
      int64_t input_w = D.Hout;
      if (p > 0) {
        input = rs.saved[Products<Cell>::Input(p)][l];
        input_w = Cell::kSaved[Products<Cell>::Input(p)].Width(D.H);
      }
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, true, false, n, D.Hout, gemm_rows, T(1),
                                             ws.d_gh + g0, D.GH, D.rows * D.GH, input, input_w,
                                             D.rows * input_w, T(0), dpl + blk.r + g0 * D.Hout,
                                             D.Hout, pstride, D.dirs));
    }
    if (D.proj) {  // dP = dhᵀ m
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(
          blas, stream, true, false, D.Hout, D.H, gemm_rows, T(1), ws.dhtot, D.Hout,
          D.rows * D.Hout, rs.m[l], D.H, D.rows * D.H, T(0), dpl + blk.p, D.H, pstride, D.dirs));
    }
    // db_W = Σ_rows d_gx, db_R = Σ_rows d_gh
    TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, 1, D.GH, gemm_rows, T(1),
                                           ws.ones, gemm_rows, 0, ws.d_gx, D.GH, D.rows * D.GH,
                                           T(0), dpl + blk.b_w, D.GH, pstride, D.dirs));
    TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, 1, D.GH, gemm_rows, T(1),
                                           ws.ones, gemm_rows, 0, ws.d_gh, D.GH, D.rows * D.GH,
                                           T(0), dpl + blk.b_r, D.GH, pstride, D.dirs));

    // Grad of the layer's input, summed over the directions; not wanted for layer 0 when dx is
    // null.
    if (d_in == nullptr) break;
    TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.rows * in_w, d_in));
    if (sh.HasInputWeights(layer)) {  // dx = Σ_d d_gx W
      for (int64_t d = 0; d < D.dirs; ++d) {
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(
            blas, stream, false, false, gemm_rows, in_w, D.GH, T(1), ws.d_gx + d * D.rows * D.GH,
            D.GH, 0, pl + d * pstride + blk.w, in_w, 0, d == 0 ? T(0) : T(1), d_in, in_w, 0));
      }
    } else {
      auto kernel = &SkipInputGradKernel<T>;
      TF_RNN_LAUNCH(kernel, BlocksFor(gemm_rows * D.H), kThreadsPerBlock, stream, gemm_rows, D.H,
                    D.G, D.dirs, D.rows, ws.d_gx, d_in);
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

}  // namespace

int SetFusedSteps(int mode) {
  return fused_steps_mode.exchange(mode == 1 ? 1 : 0, std::memory_order_relaxed);
}

template <typename T>
Status RnnForward(cublasHandle_t blas, cudaStream_t stream, const RnnConfig& config,
                  const int32_t* host_seq_lengths, const T* x, const T* h0, const T* c0,
                  const T* params, T* y, T* hy, T* cy, void* reserve, void* workspace) {
  TF_RNN_RETURN_IF_ERROR(ValidateRnnConfig(config));
  const auto forward =
      DispatchCell(config.shape.mode, [](auto cell) { return &CellForward<T, decltype(cell)>; });
  return forward(blas, stream, config, host_seq_lengths, x, h0, c0, params, y, hy, cy, reserve,
                 workspace);
}

template <typename T>
Status RnnBackward(cublasHandle_t blas, cudaStream_t stream, const RnnConfig& config,
                   const int32_t* host_seq_lengths, const T* x, const T* params, const T* dy,
                   const T* dhy, const T* dcy, const void* reserve, T* dx, T* dh0, T* dc0,
                   T* dparams, void* workspace) {
  TF_RNN_RETURN_IF_ERROR(ValidateRnnConfig(config));
  const auto backward =
      DispatchCell(config.shape.mode, [](auto cell) { return &CellBackward<T, decltype(cell)>; });
  return backward(blas, stream, config, host_seq_lengths, x, params, dy, dhy, dcy, reserve, dx, dh0,
                  dc0, dparams, workspace);
}

#define TF_RNN_INSTANTIATE_FUSED_RNN(T)                                                            \
  template Status RnnForward<T>(cublasHandle_t, cudaStream_t, const RnnConfig&, const int32_t*,    \
                                const T*, const T*, const T*, const T*, T*, T*, T*, void*, void*); \
  template Status RnnBackward<T>(cublasHandle_t, cudaStream_t, const RnnConfig&, const int32_t*,   \
                                 const T*, const T*, const T*, const T*, const T*, const void*,    \
                                 T*, T*, T*, T*, void*);
TF_RNN_INSTANTIATE_FUSED_RNN(float)
TF_RNN_INSTANTIATE_FUSED_RNN(double)
#undef TF_RNN_INSTANTIATE_FUSED_RNN

}  // namespace cuda
}  // namespace tf_rnn_ops
#endif  // __CUDACC_RTC__
