// TfRnn>KerasRNNDropout and its backprop on CUDA (keras_rnn_dropout_cuda.h): a driver over the
// fused RNN's step kernels (fused_rnn_cuda_kernels.cu.h) for one unidirectional layer, one template
// over the cell that DispatchCell picks, plus the kernels of this op: the Keras <-> cell gate-order
// permutation, the recurrent masks and zoneout. Sequence buffers keep the user's row order
// (row(t, b) = t·B + b time-major, b·T + t batch-major), as in the fused driver.
#include "cc/cells/zoneout.h"
#include "cc/cuda/fused_rnn_cuda_kernels.cu.h"

namespace tf_rnn_ops {
namespace cuda {
namespace {

// The Keras column block of each cell gate (cc/cells/keras_gate_order.h), by value.
struct GatePerm {
  int block[4];
};

// Cell gate order <-> Keras': to_keras false: dst[r, g·H + j] = src[r, block[g]·H + j] (with
// gate_major, src[block[g], r, j]: Keras' gate blocks [G, rows, H]); true: the inverse. rows × G·H
// elements.
template <typename T>
__global__ void PermuteGatesKernel(int64_t rows, int64_t G, int64_t H, GatePerm perm, bool to_keras,
                                   bool gate_major, const T* src, T* dst) {
  const int64_t GH = G * H;
  TF_RNN_KERNEL_LOOP(i, rows * GH) {
    const int64_t r = i / GH, col = i % GH, g = col / H, j = col % H;
    const int64_t k =
        gate_major ? (perm.block[g] * rows + r) * H + j : r * GH + perm.block[g] * H + j;
    if (to_keras) {
      dst[k] = src[i];
    } else {
      dst[i] = src[k];
    }
  }
}

// out[r, j] = in[r, j] · mask[b, j] with b = (r / b_div) % B: the rows of a step ([B, H]: b_div 1)
// or of a whole sequence buffer (time-major: b_div 1; batch-major: b_div T).
template <typename T>
__global__ void MaskRowsKernel(int64_t rows, int64_t H, int64_t b_div, int64_t B, const T* in,
                               const T* mask, T* out) {
  TF_RNN_KERNEL_LOOP(i, rows * H) {
    const int64_t r = i / H, j = i % H;
    out[i] = in[i] * mask[((r / b_div) % B) * H + j];
  }
}

// The inputs of one product's per-gate GEMMs (one strided batch): out[g][e] = in[e] · m_{g0 + g}[e]
// for its `gates` gates, e over the n = B·H elements of a step; m_g (cell order) is block
// perm.block[g] of the Keras-ordered [G, B, H] masks.
template <typename T>
__global__ void MaskGatesKernel(int64_t n, int g0, int gates, GatePerm perm, const T* in,
                                const T* masks, T* out) {
  TF_RNN_KERNEL_LOOP(i, n * gates) {
    const int64_t g = i / n, e = i % n;
    out[i] = in[e] * masks[perm.block[g0 + g] * n + e];
  }
}

// The grad of one product's input from its per-gate grads src[g] (one strided batch):
// dst = (accumulate ? dst : 0) + Σ_g src[g] ⊙ m_{g0 + g}, over n elements, gates in order.
template <typename T>
__global__ void MaskedGateSumKernel(int64_t n, int g0, int gates, GatePerm perm, const T* src,
                                    const T* masks, bool accumulate, T* dst) {
  TF_RNN_KERNEL_LOOP(i, n) {
    T sum = accumulate ? dst[i] : T(0);
    for (int g = 0; g < gates; ++g) sum += src[g * n + i] * masks[perm.block[g0 + g] * n + i];
    dst[i] = sum;
  }
}

template <typename T>
__global__ void AddKernel(int64_t n, const T* src, T* dst) {
  TF_RNN_KERNEL_LOOP(i, n) { dst[i] += src[i]; }
}

// The zoneout mask of unit j of row b at time t: the scalar, or m[t, b, j] (time-major).
template <typename T>
__device__ __forceinline__ T ZoneoutAt(const T* zoneout, bool scalar, int64_t t, int64_t B,
                                       int64_t H, int64_t b, int64_t j) {
  return scalar ? zoneout[0] : zoneout[(t * B + b) * H + j];
}

// After the step's last phase: h_t = h_{t-1} + m (h~_t − h_{t-1}) for the rows with step s (the
// others carried their state already), written to the state and the output.
template <typename T>
__global__ void ZoneoutForwardKernel(StepDims a, bool scalar, const T* zoneout, const T* h_in,
                                     T* h_out, T* y) {
  TF_RNN_KERNEL_LOOP(i, a.B * a.H) {
    const StepUnit u = LocateStep(a, 0, i, a.H);
    if (!u.valid) continue;
    const T m = ZoneoutAt(zoneout, scalar, a.s, a.B, a.H, u.b, u.j);
    const T h = Zoneout(h_in[i], h_out[i], m);
    h_out[i] = h;
    y[u.row * a.H + u.j] = h;
  }
}

// Before the step's backward: δ = dh_in + dy_t, the grad of the zoned h_t; the cell's h~_t gets
// m δ (d_cell), h_{t−1} (1 − m) δ (d_carry) besides the cell's own. Rows without step s pass dh_in
// through.
template <typename T>
__global__ void ZoneoutBackwardKernel(StepDims a, bool scalar, const T* zoneout, const T* dh_in,
                                      const T* dy, T* d_cell, T* d_carry) {
  TF_RNN_KERNEL_LOOP(i, a.B * a.H) {
    const StepUnit u = LocateStep(a, 0, i, a.H);
    if (!u.valid) {
      d_cell[i] = dh_in[i];
      d_carry[i] = T(0);
      continue;
    }
    const T delta = dh_in[i] + (dy != nullptr ? dy[u.row * a.H + u.j] : T(0));
    const T m = ZoneoutAt(zoneout, scalar, a.s, a.B, a.H, u.b, u.j);
    const ZoneoutGrads<T> g = ZoneoutBackward(delta, m);
    d_cell[i] = g.d_tilde;
    d_carry[i] = g.d_prev;
  }
}

}  // namespace
}  // namespace cuda
}  // namespace tf_rnn_ops

#if !defined(__CUDACC_RTC__)  // NVRTC (cc/cuda/cuda_compat.h) compiles the kernels above only
#include <string>

#include "cc/cells/keras_gate_order.h"
#include "cc/cells/rnn_cells.h"
#include "cc/cuda/cuda_util.h"
#include "cc/cuda/fused_rnn_cuda.h"
#include "cc/cuda/fused_rnn_cuda_layout.h"
#include "cc/cuda/fused_rnn_cuda_steps.h"
#include "cc/cuda/keras_rnn_dropout_cuda.h"
#include "cc/kernels/fused_rnn_rules.h"

namespace tf_rnn_ops {
namespace cuda {
namespace {

// The fused driver's configuration of the op's one layer (its layouts and kernels read it): one
// direction, no input weights read (input_size 1, as the CPU kernel's model).
Status ToRnnConfig(const KerasDropoutConfig& c, RnnConfig* config) {
  if (c.mode != RnnMode::kRnnRelu && c.mode != RnnMode::kRnnTanh && c.mode != RnnMode::kLstm &&
      c.mode != RnnMode::kGru && c.mode != RnnMode::kGruResetBefore) {
    return Status::InvalidArgument("KerasRNNDropout: unknown rnn_mode " +
                                   std::to_string(static_cast<int>(c.mode)));
  }
  fused_rnn::ModelSpec spec;
  spec.mode = c.mode;
  spec.num_units = c.units;
  spec.input_size = 1;
  const std::string error = fused_rnn::MakeModelShape(spec, &config->shape);
  if (!error.empty()) return Status::InvalidArgument("KerasRNNDropout: " + error);
  config->max_time = c.max_time;
  config->batch = c.batch;
  config->time_major = c.time_major;
  config->is_training = c.is_training;
  return ValidateRnnConfig(*config);
}

Status CheckPointers(const KerasDropoutConfig& c, const void* masks, const void* zoneout) {
  if (c.masks && masks == nullptr)
    return Status::InvalidArgument("KerasRNNDropout: recurrent masks announced but null");
  if (c.zoneout != ZoneoutKind::kNone && zoneout == nullptr)
    return Status::InvalidArgument("KerasRNNDropout: a zoneout mask announced but null");
  return Status::Ok();
}

GatePerm PermOf(RnnMode mode) {
  GatePerm p{};
  for (int g = 0; g < 4; ++g) p.block[g] = KerasGateBlock(mode, g);
  return p;
}

// The buffers of this op beyond the fused driver's (carved after them).
template <typename T>
struct Extra {
  T* rk;      // [H, G·H] recurrent_kernel in the cells' gate order (Keras' row layout)
  T* b_w;     // [G·H] the input bias in the cells' gate order, or zeros (in the projected input)
  T* b_r;     // [G·H] the recurrent bias in the cells' gate order, or zeros
  T* tmp;     // [G, B, H] a masked product's per-gate inputs, or their grads
  T* masked;  // backward with masks: [rows, H] a product's input over all steps, masked
  T* drk;     // backward: [H, G·H] dU in the cells' gate order
  T* db;      // backward: [G·H]
  T* d_cell;  // backward with zoneout: [B, H]
  T* d_carry;
  size_t bytes = 0;

  static Extra Carve(const KerasDropoutConfig& c, void* base, bool backward) {
    const int64_t H = c.units, GH = NumGates(c.mode) * H, B = c.batch;
    Extra e{};
    Carver carver(base);
    e.rk = carver.Take<T>(H * GH);
    e.b_w = carver.Take<T>(GH);
    e.b_r = carver.Take<T>(GH);
    e.tmp = carver.Take<T>(NumGates(c.mode) * B * H);
    e.masked = backward && c.masks ? carver.Take<T>(c.max_time * B * H) : nullptr;
    e.drk = backward ? carver.Take<T>(H * GH) : nullptr;
    e.db = backward ? carver.Take<T>(GH) : nullptr;
    const bool zone = backward && c.zoneout != ZoneoutKind::kNone;
    e.d_cell = zone ? carver.Take<T>(B * H) : nullptr;
    e.d_carry = zone ? carver.Take<T>(B * H) : nullptr;
    e.bytes = carver.size();
    return e;
  }
};

inline void* After(void* base, size_t bytes) {
  return base == nullptr ? nullptr : static_cast<char*>(base) + bytes;
}

template <typename T, typename Cell>
size_t ForwardBytes(const KerasDropoutConfig& c, const RnnConfig& rc) {
  return ForwardWorkspace<T, Cell>::Carve(rc, nullptr).bytes +
         Extra<T>::Carve(c, nullptr, false).bytes;
}
template <typename T, typename Cell>
size_t BackwardBytes(const KerasDropoutConfig& c, const RnnConfig& rc) {
  return BackwardWorkspace<T, Cell>::Carve(rc, nullptr).bytes +
         Extra<T>::Carve(c, nullptr, true).bytes;
}
template <typename T, typename Cell>
size_t ReserveBytes(const KerasDropoutConfig&, const RnnConfig& rc) {
  return ReserveLayout<T, Cell>::Carve(rc, nullptr).bytes;
}

template <typename T>
Status Permute(cudaStream_t stream, int64_t rows, int64_t G, int64_t H, const GatePerm& perm,
               bool to_keras, const T* src, T* dst, bool gate_major = false) {
  if (rows * G * H <= 0) return Status::Ok();
  auto kernel = &PermuteGatesKernel<T>;
  TF_RNN_LAUNCH(kernel, BlocksFor(rows * G * H), kThreadsPerBlock, stream, rows, G, H, perm,
                to_keras, gate_major, src, dst);
  return CudaStatus(cudaGetLastError(), "PermuteGatesKernel");
}

template <typename T>
Status MaskRows(cudaStream_t stream, int64_t rows, int64_t H, int64_t b_div, int64_t B, const T* in,
                const T* mask, T* out) {
  if (rows * H <= 0) return Status::Ok();
  auto kernel = &MaskRowsKernel<T>;
  TF_RNN_LAUNCH(kernel, BlocksFor(rows * H), kThreadsPerBlock, stream, rows, H, b_div, B, in, mask,
                out);
  return CudaStatus(cudaGetLastError(), "MaskRowsKernel");
}

template <typename T>
Status MaskGates(cudaStream_t stream, int64_t n, int g0, int gates, const GatePerm& perm,
                 const T* in, const T* masks, T* out) {
  if (n * gates <= 0) return Status::Ok();
  auto kernel = &MaskGatesKernel<T>;
  TF_RNN_LAUNCH(kernel, BlocksFor(n * gates), kThreadsPerBlock, stream, n, g0, gates, perm, in,
                masks, out);
  return CudaStatus(cudaGetLastError(), "MaskGatesKernel");
}

// Gate g's recurrent mask (cell order) within the Keras-ordered [G, B, H] masks.
template <typename T>
const T* GateMask(const T* masks, const GatePerm& perm, int g, int64_t B, int64_t H) {
  return masks + perm.block[g] * B * H;
}

template <typename T>
Status CopyRows(cudaStream_t stream, int64_t n, const T* src, T* dst) {
  if (n <= 0 || dst == nullptr) return Status::Ok();
  if (src == nullptr) return Zero<T>(stream, n, dst);
  return CudaStatus(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToDevice, stream),
                    "cudaMemcpyAsync");
}

// ---------------------------------------------------------------------------------------------------
// Forward.

template <typename T, typename Cell>
Status CellForward(cublasHandle_t blas, cudaStream_t stream, const KerasDropoutConfig& c,
                   const RnnConfig& config, const int32_t* host_seq_lengths, const T* projected,
                   const T* h0, const T* c0, const T* rkernel, const T* rbias, const T* masks,
                   const T* zoneout, T* y, T* hy, T* cy, void* reserve, void* workspace) {
  int64_t max_len = 0;
  TF_RNN_RETURN_IF_ERROR(ValidateSequenceLengths(config, host_seq_lengths, &max_len));
  const Dims D(config);
  const int64_t B = D.B, H = D.H, G = D.G, GH = D.GH;
  if (B == 0) return Status::Ok();
  const size_t fused_bytes = ForwardWorkspace<T, Cell>::Carve(config, nullptr).bytes;
  if (workspace == nullptr) return Status::InvalidArgument("KerasRNNDropout: no workspace");
  if (c.is_training && reserve == nullptr &&
      ReserveLayout<T, Cell>::Carve(config, nullptr).bytes > 0)
    return Status::InvalidArgument("KerasRNNDropout: the reserve space is missing");
  TF_RNN_CUBLAS_CHECK(cublasSetStream(blas, stream));
  const ForwardWorkspace<T, Cell> ws = ForwardWorkspace<T, Cell>::Carve(config, workspace);
  const Extra<T> ex = Extra<T>::Carve(c, After(workspace, fused_bytes), false);
  const ReserveLayout<T, Cell> rs = ReserveLayout<T, Cell>::Carve(config, reserve);
  const GatePerm perm = PermOf(c.mode);
  if (c.is_training) TF_RNN_CUDA_CHECK(cudaMemsetAsync(reserve, 0, rs.bytes, stream));
  const int32_t* lens = nullptr;
  if (host_seq_lengths != nullptr) {
    TF_RNN_CUDA_CHECK(cudaMemcpyAsync(ws.lens, host_seq_lengths, B * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, stream));
    lens = ws.lens;
  }
  // The inputs in the cells' gate order.
  TF_RNN_RETURN_IF_ERROR(
      Permute<T>(stream, D.rows, G, H, perm, false, projected, ws.gx, c.gate_major));
  TF_RNN_RETURN_IF_ERROR(Permute<T>(stream, H, G, H, perm, false, rkernel, ex.rk));
  if (rbias != nullptr && c.input_bias) {  // [2, G·H]: the input side's row, the recurrent one's
    TF_RNN_RETURN_IF_ERROR(Permute<T>(stream, 1, G, H, perm, false, rbias, ex.b_w));
    rbias += GH;
  } else {
    TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, GH, ex.b_w));
  }
  if (rbias != nullptr) {
    TF_RNN_RETURN_IF_ERROR(Permute<T>(stream, 1, G, H, perm, false, rbias, ex.b_r));
  } else {
    TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, GH, ex.b_r));
  }
  TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.rows * H, y));
  TF_RNN_RETURN_IF_ERROR(CopyRows<T>(stream, B * H, h0, ws.h[0]));
  if (Cell::kHasCellState) TF_RNN_RETURN_IF_ERROR(CopyRows<T>(stream, B * H, c0, ws.c[0]));

  ForwardStepArgs<T> a{};
  static_cast<StepDims&>(a) = StepDimsOf(D, lens);
  a.gx = ws.gx, a.gx_dir = 0, a.gx_row = GH, a.gx_gate = H;
  a.gh = ws.gh;
  a.b_w = ex.b_w, a.b_r = ex.b_r, a.bias_dir = 0;
  a.y = y, a.y_row = H;
  for (int k = 0; k < Cell::kNumSaved; ++k) a.saved_width[k] = Cell::kSaved[k].Width(H);
  if (c.is_training) {
    for (int k = 0; k < Cell::kNumSaved; ++k) a.saved[k] = rs.saved[k][0];
    a.hprev = rs.hprev[0], a.cprev = rs.cprev[0];
  }
  a.rec_in = ws.rec_in;
  for (int k = 0; k < Cell::kNumSaved; ++k) a.step_saved[k] = ws.step_saved[k];
  const bool zone = c.zoneout != ZoneoutKind::kNone;
  const dim3 grid(BlocksFor(B * H));
  int cur = 0;
  for (int64_t s = 0; s < max_len; ++s) {
    a.s = s;
    a.h_in = ws.h[cur], a.h_out = ws.h[1 - cur];
    a.c_in = ws.c[cur], a.c_out = ws.c[1 - cur];
    for (int p = 0; p < Products<Cell>::kCount; ++p) {
      const T* in = p == 0 ? ws.h[cur] : ws.rec_in;
      const int g0 = Products<Cell>::Begin(p), g1 = Products<Cell>::End(p);
      if (c.masks) {  // gate g: (in ⊙ m_g) U_g, the product's gates one strided batch
        TF_RNN_RETURN_IF_ERROR(MaskGates<T>(stream, B * H, g0, g1 - g0, perm, in, masks, ex.tmp));
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, B, H, H, T(1), ex.tmp, H,
                                               B * H, ex.rk + g0 * H, GH, H, T(0), ws.gh + g0 * H,
                                               GH, H, g1 - g0));
      } else {  // in U over the product's gates
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, B, (g1 - g0) * H, H,
                                               T(1), in, H, 0, ex.rk + g0 * H, GH, 0, T(0),
                                               ws.gh + g0 * H, GH, 0));
      }
      void (*kernel)(ForwardStepArgs<T>) = ForwardStepKernelFor<T, Cell>(false, p);
      TF_RNN_LAUNCH(kernel, grid, kThreadsPerBlock, stream, a);
      TF_RNN_CUDA_CHECK(cudaGetLastError());
    }
    if (zone) {
      auto kernel = &ZoneoutForwardKernel<T>;
      TF_RNN_LAUNCH(kernel, grid, kThreadsPerBlock, stream, static_cast<const StepDims&>(a),
                    c.zoneout == ZoneoutKind::kScalar, zoneout, a.h_in, a.h_out, y);
      TF_RNN_CUDA_CHECK(cudaGetLastError());
    }
    cur = 1 - cur;
  }
  TF_RNN_RETURN_IF_ERROR(CopyRows<T>(stream, B * H, ws.h[cur], hy));
  if (Cell::kHasCellState) TF_RNN_RETURN_IF_ERROR(CopyRows<T>(stream, B * H, ws.c[cur], cy));
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------------
// Backprop.

template <typename T, typename Cell>
Status CellBackward(cublasHandle_t blas, cudaStream_t stream, const KerasDropoutConfig& c,
                    const RnnConfig& config, const int32_t* host_seq_lengths, const T* rkernel,
                    const T* masks, const T* zoneout, const T* dy, const T* dhy, const T* dcy,
                    const void* reserve, T* d_projected, T* dh0, T* dc0, T* drk, T* drb,
                    void* workspace) {
  int64_t max_len = 0;
  TF_RNN_RETURN_IF_ERROR(ValidateSequenceLengths(config, host_seq_lengths, &max_len));
  const Dims D(config);
  const int64_t B = D.B, H = D.H, G = D.G, GH = D.GH;
  TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, H * GH, drk));
  const int64_t bias_rows = c.input_bias ? 2 : 1;  // (recurrent_bias' shape)
  if (c.recurrent_bias && drb != nullptr)
    TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, bias_rows * GH, drb));
  if (B == 0) return Status::Ok();
  if (workspace == nullptr)
    return Status::InvalidArgument("KerasRNNDropout backprop: no workspace");
  if (reserve == nullptr && ReserveLayout<T, Cell>::Carve(config, nullptr).bytes > 0)
    return Status::InvalidArgument("KerasRNNDropout backprop: the reserve space is missing");
  TF_RNN_CUBLAS_CHECK(cublasSetStream(blas, stream));
  const size_t fused_bytes = BackwardWorkspace<T, Cell>::Carve(config, nullptr).bytes;
  const BackwardWorkspace<T, Cell> ws = BackwardWorkspace<T, Cell>::Carve(config, workspace);
  const Extra<T> ex = Extra<T>::Carve(c, After(workspace, fused_bytes), true);
  const ReserveLayout<T, Cell> rs =
      ReserveLayout<T, Cell>::Carve(config, const_cast<void*>(reserve));
  const GatePerm perm = PermOf(c.mode);
  const int32_t* lens = nullptr;
  if (host_seq_lengths != nullptr) {
    TF_RNN_CUDA_CHECK(cudaMemcpyAsync(ws.lens, host_seq_lengths, B * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, stream));
    lens = ws.lens;
  }
  const int64_t gemm_rows = config.time_major ? max_len * B : D.rows;
  const int64_t b_div = config.time_major ? 1 : D.T;
  TF_RNN_RETURN_IF_ERROR(Fill<T>(stream, gemm_rows, T(1), ws.ones));
  TF_RNN_RETURN_IF_ERROR(Permute<T>(stream, H, G, H, perm, false, rkernel, ex.rk));
  TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.rows * GH, ws.d_gx));
  if (Cell::kDistinctRecurrentGrad) TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, D.rows * GH, ws.d_gh));
  TF_RNN_RETURN_IF_ERROR(CopyRows<T>(stream, B * H, dhy, ws.dh[0]));
  if (Cell::kHasCellState) TF_RNN_RETURN_IF_ERROR(CopyRows<T>(stream, B * H, dcy, ws.dc));

  BackwardStepArgs<T> a{};
  static_cast<StepDims&>(a) = StepDimsOf(D, lens);
  a.dy_row = H;
  a.dc = ws.dc;
  for (int k = 0; k < Cell::kNumSaved; ++k) {
    a.saved[k] = rs.saved[k][0], a.saved_width[k] = Cell::kSaved[k].Width(H);
  }
  a.hprev = rs.hprev[0], a.cprev = rs.cprev[0];
  a.d_gx = ws.d_gx, a.d_gh = ws.d_gh, a.d_gh_step = ws.d_gh_step;
  a.d_rec_in = ws.d_rec_in;
  const bool zone = c.zoneout != ZoneoutKind::kNone;
  const dim3 grid(BlocksFor(B * H));
  int cur = 0;
  for (int64_t s = max_len - 1; s >= 0; --s) {
    a.s = s;
    a.dh_out = ws.dh[1 - cur];
    if (zone) {  // split the grad of the zoned h between the cell and the carried state
      auto kernel = &ZoneoutBackwardKernel<T>;
      TF_RNN_LAUNCH(kernel, grid, kThreadsPerBlock, stream, static_cast<const StepDims&>(a),
                    c.zoneout == ZoneoutKind::kScalar, zoneout, ws.dh[cur], dy, ex.d_cell,
                    ex.d_carry);
      TF_RNN_CUDA_CHECK(cudaGetLastError());
      a.dh_in = ex.d_cell, a.dy = nullptr;
    } else {
      a.dh_in = ws.dh[cur], a.dy = dy;
    }
    for (int p = Products<Cell>::kCount - 1; p >= 0; --p) {
      void (*kernel)(BackwardStepArgs<T>) = BackwardStepKernelFor<T, Cell>(false, p);
      TF_RNN_LAUNCH(kernel, grid, kThreadsPerBlock, stream, a);
      TF_RNN_CUDA_CHECK(cudaGetLastError());
      // The grad of product p's input: into dh_prev (p = 0, added to the direct part the phase
      // wrote) or into what phase p - 1 reads (d_rec_in). The first step's dh_prev is dh0 alone.
      if (p == 0 && s == 0 && dh0 == nullptr) continue;
      T* dst = p == 0 ? ws.dh[1 - cur] : ws.d_rec_in;
      const int g0 = Products<Cell>::Begin(p), g1 = Products<Cell>::End(p);
      if (c.masks) {  // Σ_g (δ_g U_gᵀ) ⊙ m_g: the gates' products one strided batch
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, B, H, H, T(1),
                                               ws.d_gh_step + g0 * H, GH, H, ex.rk + g0 * H, GH, H,
                                               T(0), ex.tmp, H, B * H, g1 - g0));
        auto sum = &MaskedGateSumKernel<T>;
        TF_RNN_LAUNCH(sum, grid, kThreadsPerBlock, stream, B * H, g0, g1 - g0, perm, ex.tmp, masks,
                      p == 0, dst);
        TF_RNN_CUDA_CHECK(cudaGetLastError());
      } else {
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, B, H, (g1 - g0) * H, T(1),
                                               ws.d_gh_step + g0 * H, GH, 0, ex.rk + g0 * H, GH, 0,
                                               p == 0 ? T(1) : T(0), dst, H, 0));
      }
    }
    if (zone) {
      auto add = &AddKernel<T>;
      TF_RNN_LAUNCH(add, grid, kThreadsPerBlock, stream, B * H, ex.d_carry, ws.dh[1 - cur]);
      TF_RNN_CUDA_CHECK(cudaGetLastError());
    }
    cur = 1 - cur;
  }
  TF_RNN_RETURN_IF_ERROR(CopyRows<T>(stream, B * H, ws.dh[cur], dh0));
  if (Cell::kHasCellState) TF_RNN_RETURN_IF_ERROR(CopyRows<T>(stream, B * H, ws.dc, dc0));

  // dU per product (or, with masks, per gate on the masked inputs), one GEMM over all steps.
  TF_RNN_RETURN_IF_ERROR(Zero<T>(stream, H * GH, ex.drk));
  for (int p = 0; p < Products<Cell>::kCount; ++p) {
    const T* in = p == 0 ? rs.hprev[0] : rs.saved[Products<Cell>::Input(p)][0];
    const int g0 = Products<Cell>::Begin(p), g1 = Products<Cell>::End(p);
    if (c.masks) {
      for (int g = g0; g < g1; ++g) {
        TF_RNN_RETURN_IF_ERROR(MaskRows<T>(stream, gemm_rows, H, b_div, B, in,
                                           GateMask(masks, perm, g, B, H), ex.masked));
        TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, true, false, H, H, gemm_rows, T(1),
                                               ex.masked, H, 0, ws.d_gh + g * H, GH, 0, T(0),
                                               ex.drk + g * H, GH, 0));
      }
    } else {
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, true, false, H, (g1 - g0) * H, gemm_rows,
                                             T(1), in, H, 0, ws.d_gh + g0 * H, GH, 0, T(0),
                                             ex.drk + g0 * H, GH, 0));
    }
  }
  TF_RNN_RETURN_IF_ERROR(Permute<T>(stream, H, G, H, perm, true, ex.drk, drk));
  if (c.recurrent_bias && drb != nullptr) {  // db_w = Σ_rows d_gx (input_bias), db_r = Σ_rows d_gh
    for (int64_t row = 0; row < bias_rows; ++row) {
      const T* grads = row + 1 < bias_rows ? ws.d_gx : ws.d_gh;
      TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, 1, GH, gemm_rows, T(1),
                                             ws.ones, gemm_rows, 0, grads, GH, 0, T(0), ex.db, GH,
                                             0));
      TF_RNN_RETURN_IF_ERROR(Permute<T>(stream, 1, G, H, perm, true, ex.db, drb + row * GH));
    }
  }
  return Permute<T>(stream, D.rows, G, H, perm, true, ws.d_gx, d_projected, c.gate_major);
}

template <typename T, typename Cell>
size_t Sizes(const KerasDropoutConfig& c, const RnnConfig& rc, int which) {
  if (which == 0) return ForwardBytes<T, Cell>(c, rc);
  if (which == 1) return ReserveBytes<T, Cell>(c, rc);
  return BackwardBytes<T, Cell>(c, rc);
}

size_t SizeOf(const KerasDropoutConfig& c, DType dtype, int which) {
  RnnConfig rc;
  if (!ToRnnConfig(c, &rc).ok()) return 0;
  if (which == 1 && !c.is_training) return 0;
  const bool f64 = dtype == DType::kFloat64;
  const auto sizes = DispatchCell(c.mode, [f64](auto cell) {
    using Cell = decltype(cell);
    return f64 ? &Sizes<double, Cell> : &Sizes<float, Cell>;
  });
  return sizes(c, rc, which);
}

}  // namespace

Status ValidateKerasDropoutConfig(const KerasDropoutConfig& config) {
  if (config.input_bias && !config.recurrent_bias)
    return Status::InvalidArgument("KerasRNNDropout: an input bias row without a recurrent_bias");
  RnnConfig rc;
  return ToRnnConfig(config, &rc);
}
size_t KerasDropoutForwardWorkspaceBytes(const KerasDropoutConfig& config, DType dtype) {
  return SizeOf(config, dtype, 0);
}
size_t KerasDropoutReserveBytes(const KerasDropoutConfig& config, DType dtype) {
  return SizeOf(config, dtype, 1);
}
size_t KerasDropoutBackwardWorkspaceBytes(const KerasDropoutConfig& config, DType dtype) {
  return SizeOf(config, dtype, 2);
}

template <typename T>
Status KerasDropoutForward(cublasHandle_t blas, cudaStream_t stream,
                           const KerasDropoutConfig& config, const int32_t* host_seq_lengths,
                           const T* projected, const T* h0, const T* c0, const T* recurrent_kernel,
                           const T* recurrent_bias, const T* masks, const T* zoneout, T* y, T* hy,
                           T* cy, void* reserve, void* workspace) {
  RnnConfig rc;
  TF_RNN_RETURN_IF_ERROR(ToRnnConfig(config, &rc));
  TF_RNN_RETURN_IF_ERROR(CheckPointers(config, masks, zoneout));
  const auto forward =
      DispatchCell(config.mode, [](auto cell) { return &CellForward<T, decltype(cell)>; });
  return forward(blas, stream, config, rc, host_seq_lengths, projected, h0, c0, recurrent_kernel,
                 config.recurrent_bias ? recurrent_bias : nullptr, config.masks ? masks : nullptr,
                 zoneout, y, hy, cy, reserve, workspace);
}

template <typename T>
Status KerasDropoutBackward(cublasHandle_t blas, cudaStream_t stream,
                            const KerasDropoutConfig& config, const int32_t* host_seq_lengths,
                            const T* recurrent_kernel, const T* masks, const T* zoneout,
                            const T* dy, const T* dhy, const T* dcy, const void* reserve,
                            T* d_projected, T* dh0, T* dc0, T* d_recurrent_kernel,
                            T* d_recurrent_bias, void* workspace) {
  RnnConfig rc;
  TF_RNN_RETURN_IF_ERROR(ToRnnConfig(config, &rc));
  if (!config.is_training) {
    return Status::InvalidArgument(
        "KerasRNNDropout backprop: needs the reserve of a forward with is_training");
  }
  TF_RNN_RETURN_IF_ERROR(CheckPointers(config, masks, zoneout));
  const auto backward =
      DispatchCell(config.mode, [](auto cell) { return &CellBackward<T, decltype(cell)>; });
  return backward(blas, stream, config, rc, host_seq_lengths, recurrent_kernel, masks, zoneout, dy,
                  dhy, dcy, reserve, d_projected, dh0, dc0, d_recurrent_kernel, d_recurrent_bias,
                  workspace);
}

#define TF_RNN_INSTANTIATE_KERAS_DROPOUT(T)                                                        \
  template Status KerasDropoutForward<T>(cublasHandle_t, cudaStream_t, const KerasDropoutConfig&,  \
                                         const int32_t*, const T*, const T*, const T*, const T*,   \
                                         const T*, const T*, const T*, T*, T*, T*, void*, void*);  \
  template Status KerasDropoutBackward<T>(                                                         \
      cublasHandle_t, cudaStream_t, const KerasDropoutConfig&, const int32_t*, const T*, const T*, \
      const T*, const T*, const T*, const T*, const void*, T*, T*, T*, T*, T*, void*);
TF_RNN_INSTANTIATE_KERAS_DROPOUT(float)
TF_RNN_INSTANTIATE_KERAS_DROPOUT(double)
#undef TF_RNN_INSTANTIATE_KERAS_DROPOUT

}  // namespace cuda
}  // namespace tf_rnn_ops
#endif  // __CUDACC_RTC__
