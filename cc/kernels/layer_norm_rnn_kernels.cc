// CPU kernels of TfRnn>LayerNormRnn and TfRnn>LayerNormRnnGrad (cc/ops/layer_norm_rnn_ops.cc): the
// fused layer-normalized LSTM / GRU (cc/cells/layer_norm_cells.h) over a whole sequence, with a
// step mask, haste's zoneout on h and TF Addons' recurrent dropout (h_{t-1} ⊙ m in h's product with
// R only), weights in the Keras layers' layout (no conversion per call).
//
// The driver here owns the products and the state; the cells own the row pass. Its structure
// follows CpuRnn (cc/kernels/rnn_cpu_driver.h) so that the loop can move there (see
// docs/ARCHITECTURE.md): each thread of the intra-op pool takes a range of batch rows through all
// the steps (ForEachBatchRange; one dispatch a call), and a step of a range is
//   forward:  GX = x_t W and GH = (h_prev ⊙ m) R for the range's rows (W and R packed once a call,
//             packed_gemm.h, the products on this thread), then each row's cell Forward (both LNs,
//             the gates, LSTM's LN of c), then zoneout and the mask;
//   backward: each row's cell Backward into dGX, dGH, then dh_prev += (dGH Rᵀ) ⊙ m for the range's
//             rows; after the loop dX = dGX Wᵀ, dW = Xᵀ dGX and dR = (H_prev ⊙ m)ᵀ dGH over all
//             rows.
// (m: the recurrent_mask [B, H], or none: all ones.) x, y and their grads are time-major or, with
// time_major=false, batch-major (IoRow): a step's rows of a batch-major x are T·I apart, which the
// packed products read in place; dGX is kept in x's row order, the reserve and dGH time-major.
// Training (is_training) keeps, per row of every step, in the reserve (an output, the grad op's
// input): xhat_x, xhat_h, act [G·H]; c_hat, h_prev, c_prev, h~ [H]; stats [3] (see ReserveLayout).
// Inference writes no reserve (scratch rows per range) and gives bitwise the same outputs.

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/cells/layer_norm_cells.h"
#include "cc/kernels/cpu_gemm.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/layer_norm_cpu_rows.h"
#include "cc/kernels/layer_norm_rnn_checks.h"
#include "cc/kernels/rnn_layouts.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/errors.h"

namespace tf_rnn_ops {
namespace {

// The inputs' indices, Sizes and the checks (shared with the GPU kernels).
using namespace layer_norm_rnn;  // NOLINT(build/namespaces)

using layer_norm_cells::CpuRow;
using layer_norm_cells::LayerNormGrads;
using layer_norm_cells::LayerNormGruCell;
using layer_norm_cells::LayerNormLstmCell;
using layer_norm_cells::LayerNormParams;
using layer_norm_cells::RowSaved;
using layer_norm_cells::StreamFence;
using layer_norm_cells::StreamOut;
using layer_norm_cells::Zoneout;
using layer_norm_cells::ZoneoutBackward;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// The reserve's regions (one layout with the CUDA kernels, cc/cells/layer_norm_cells.h).
using ReserveLayout = layer_norm_cells::LayerNormReserveLayout;

template <typename T>
LayerNormParams<T> ParamsOf(OpKernelContext* ctx, const Sizes& s) {
  auto p = [&](int i) { return ctx->input(i).flat<T>().data(); };
  LayerNormParams<T> out;
  out.bias = p(kBias);
  out.bias_h = s.lstm ? nullptr : p(kRecurrentBias);
  out.gamma_x = p(kGammaX);
  out.gamma_h = p(kGammaH);
  out.beta_x = s.lstm ? p(kBetaX) : nullptr;
  out.beta_h = s.lstm ? p(kBetaH) : nullptr;
  out.gamma_c = s.lstm ? p(kGammaC) : nullptr;
  out.beta_c = s.lstm ? p(kBetaC) : nullptr;
  out.eps = ctx->input(kEpsilon).scalar<T>()();
  return out;
}

template <typename T>
RowSaved<T> SavedRow(T* reserve, const ReserveLayout& rl, int64_t r, int64_t H, int64_t GH) {
  return {reserve + rl.xhat_x + r * GH, reserve + rl.xhat_h + r * GH, reserve + rl.act + r * GH,
          reserve + rl.c_hat + r * H, reserve + rl.stats + r * ReserveLayout::kStats};
}

// Asks for row r's saved values (and its dy) ahead of its backward pass: each region's row is a
// new 4 KB page at G·H = 1024 floats, where the hardware's stream prefetchers stop, so without this
// every row of the backward began with misses to memory (the reserve is ~100 MB, far beyond the
// caches).
template <typename T>
void PrefetchRow(const T* reserve, const ReserveLayout& rl, int64_t r, int64_t H, int64_t GH,
                 bool lstm, const T* dy_row) {
  constexpr int64_t kLine = 64 / sizeof(T);
  auto ahead = [](const T* p, int64_t n) {
    for (int64_t i = 0; i < n; i += kLine) __builtin_prefetch(p + i);
  };
  ahead(reserve + rl.xhat_x + r * GH, GH);
  ahead(reserve + rl.xhat_h + r * GH, GH);
  ahead(reserve + rl.act + r * GH, GH);
  ahead(reserve + (lstm ? rl.c_hat : rl.h_prev) + r * H, H);
  ahead(reserve + (lstm ? rl.c_prev : rl.h_prev) + r * H, H);
  ahead(dy_row, H);
}

// C[M, N] = A[M, K] · B by `gemm` (zeros when K == 0: the packed kernel then writes nothing).
template <typename T>
void StepProduct(const StepGemm<T>& gemm, bool one_thread, int64_t M, int64_t K, int64_t N,
                 const T* A, T* C) {
  if (K == 0) {
    std::fill_n(C, M * N, T(0));
    return;
  }
  RunStepGemm(gemm, one_thread, M, A, C);
}

// StepProduct with A's rows lda apart (a step's rows of a batch-major x: T·I apart). Other types
// than float gather them into `rows` first (their product reads A contiguous).
template <typename T>
void StepProductRows(const StepGemm<T>& gemm, bool one_thread, int64_t M, int64_t K, int64_t N,
                     const T* A, int64_t lda, T* rows, T* C) {
  if (lda == K || K == 0 || M <= 1) {
    StepProduct(gemm, one_thread, M, K, N, A, C);
  } else if constexpr (StepGemm<T>::kStrided) {
    RunStepGemm(gemm, one_thread, M, A, lda, C, N);
  } else {
    for (int64_t i = 0; i < M; ++i) std::copy_n(A + i * lda, K, rows + i * K);
    StepProduct(gemm, one_thread, M, K, N, rows, C);
  }
}

// ------------------------------------------------------------------------------------- forward
// A step of a row range: xW and h R of its rows (the packed kernel, on this thread), then each
// row's cell pass, both in per-range scratch rows (the products normalized in place); training
// then streams what backward needs out to the reserve (StreamOut), inference writes no reserve.
template <typename T>
class LayerNormRnnOp : public LayerNormRnnBase {
 public:
  explicit LayerNormRnnOp(OpKernelConstruction* ctx) : LayerNormRnnBase(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("is_training", &is_training_));
  }

  void Compute(OpKernelContext* ctx) override {
    Sizes s;
    OP_REQUIRES_OK(ctx, ValidateInputs(ctx, lstm_, time_major_, &s));
    const int64_t T_ = s.T, B = s.B, I = s.I, H = s.H, GH = s.G * H, rows = T_ * B;
    const bool training = is_training_;
    const ReserveLayout rl(training ? rows : 0, H, GH, lstm_);
    Tensor *y, *hn, *cn, *reserve_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, IoShape(s, H), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, H}), &hn));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, lstm_ ? H : 0}), &cn));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({rl.size}), &reserve_t));
    AdviseHugePages(*y);
    AdviseHugePages(*reserve_t);
    T* reserve = reserve_t->flat<T>().data();
    // Not zeroed (100 MB at B = 64, T = 100, H = 256 for the LSTM): every value backward reads is
    // written here (masked rows: h_prev, c_prev only).
    T* h = hn->flat<T>().data();
    T* c_state = cn->flat<T>().data();  // the LSTM's c, carried in place ([B, 0] for the GRU)
    std::copy_n(ctx->input(kH0).flat<T>().data(), B * H, h);
    if (lstm_) std::copy_n(ctx->input(kC0).flat<T>().data(), B * H, c_state);
    if (rows == 0) return;
    // A zero initial state (a layer called without one): the first step's hR is zero, not computed.
    const bool h0_zero = AllZero(h, B * H);
    T* yp = y->flat<T>().data();
    const LayerNormParams<T> p = ParamsOf<T>(ctx, s);
    const T* x = ctx->input(kX).flat<T>().data();
    const T* mask = s.has_mask ? ctx->input(kMask).flat<T>().data() : nullptr;
    const T* zmask = s.has_zoneout_mask ? ctx->input(kZoneoutMask).flat<T>().data() : nullptr;
    // The keep value of every unit with a scalar zoneout_mask (h = h_prev + k (h~ - h_prev)).
    const T zk = s.zoneout_scalar ? ctx->input(kZoneoutMask).scalar<T>()() : T(1);
    // h~ is y's row unless zoneout mixes h_prev in (one copy a row fewer: the copies were ~2.5%
    // of a LayerNormLSTM inference call, docs/PERFORMANCE.md item 107).
    const bool zoned = zmask != nullptr || s.zoneout_scalar;
    const T* rmask = s.recurrent_mask ? s.recurrent_mask->flat<T>().data() : nullptr;
    const CallDevice device(ctx->eigen_cpu_device(), 2.0 * rows * (I + H) * GH);
    const CPUDevice& d = device.get();
    // W and R packed once a call; every step's products of every range read them. A call of a
    // few rows (one-step decoding), or of few rows a step over few steps of large weights, reads
    // them as stored instead: packing would cost more than its products (RnnStreamForwardWeights,
    // as TfRnn>KerasRNN).
    const bool stream = RnnStreamForwardWeights<T>(T_, B, (I + H) * GH);
    const int64_t w_size = stream ? 0 : StepGemm<T>::StorageSize(I, GH);
    Tensor packed_t;
    T* packed;
    OP_REQUIRES_OK(ctx,
                   AllocateScratch(ctx, w_size + (stream ? 0 : StepGemm<T>::StorageSize(H, GH)),
                                   &packed_t, &packed));
    const StepGemm<T> w_gemm(d, ctx->input(kKernel).flat<T>().data(), I, GH, false, packed, nullptr,
                             0, stream);
    const StepGemm<T> r_gemm(d, ctx->input(kRecurrentKernel).flat<T>().data(), H, GH, false,
                             packed + w_size, nullptr, 0, stream);
    const bool rows_apart = RnnRowsApart<T>(2.0 * rows * (I + H) * GH, B, (I + H) * GH, stream);
    ForEachBatchRange<T>(d, B, rows_apart, [&](int64_t b0, int64_t b1, bool one_thread) {
      const int64_t n = b1 - b0;
      // Scratch: the range's xW and hR rows (normalized in place), one row's act, c_hat, stats,
      // h~ (with zoneout; else it goes straight to y's row) and c_new; training streams a row's
      // saved values out to the reserve (StreamOut: no read of the lines it writes, as writing
      // there in place did).
      std::vector<T> scratch(2 * n * GH + GH + 3 * H + 3);
      std::vector<T> dropped_h(rmask ? n * H : 0);  // the range's h ⊙ m, R's operand
      // (a step's x rows gathered: batch-major x, types without strided products)
      std::vector<T> x_rows(s.time_major || StepGemm<T>::kStrided ? 0 : n * I);
      T* c_new = scratch.data();
      T* gx = c_new + H;
      T* gh = gx + n * GH;
      T* act_s = gh + n * GH;
      T* c_hat_s = act_s + GH;
      T* ht_s = c_hat_s + H;
      T* stats_s = ht_s + H;
      for (int64_t t = 0; t < T_; ++t) {
        StepProductRows(w_gemm, one_thread, n, I, GH, x + IoRow(s, t, b0) * I,
                        IoBatchRowStride(s) * I, x_rows.data(), gx);
        if (t == 0 && h0_zero) {
          std::fill_n(gh, n * GH, T(0));
        } else {
          if (rmask) {
            for (int64_t i = 0; i < n * H; ++i) dropped_h[i] = h[b0 * H + i] * rmask[b0 * H + i];
          }
          StepProduct(r_gemm, one_thread, n, H, GH, rmask ? dropped_h.data() : h + b0 * H, gh);
        }
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t r = t * B + b;
          T* hb = h + b * H;  // h_prev until the row's output is copied in at its end
          T* cb = lstm_ ? c_state + b * H : nullptr;
          if (training) {
            StreamOut(hb, H, reserve + rl.h_prev + r * H);
            if (lstm_) StreamOut(cb, H, reserve + rl.c_prev + r * H);
          }
          T* yr = yp + IoRow(s, t, b) * H;
          if (mask && mask[r] == T(0)) {  // the states kept; the output is the carried h
            std::copy_n(hb, H, yr);
            continue;
          }
          T* gxr = gx + (b - b0) * GH;
          T* ghr = gh + (b - b0) * GH;
          const RowSaved<T> sv{gxr, ghr, act_s, c_hat_s, stats_s};
          T* ht = zoned ? ht_s : yr;
          if (lstm_) {
            CpuRow<LayerNormLstmCell>::Forward(p, H, gxr, ghr, cb, sv, c_new, ht);
            std::copy_n(c_new, H, cb);
          } else {
            CpuRow<LayerNormGruCell>::Forward(p, H, gxr, ghr, hb, sv, c_new, ht);
          }
          if (training) {
            const RowSaved<T> saved = SavedRow(reserve, rl, r, H, GH);
            StreamOut(gxr, GH, saved.xhat_x);
            StreamOut(ghr, GH, saved.xhat_h);
            StreamOut(act_s, GH, saved.act);
            if (lstm_) StreamOut(c_hat_s, H, saved.c_hat);
            std::copy_n(stats_s, ReserveLayout::kStats, saved.stats);
            StreamOut(ht, H, reserve + rl.h_tilde + r * H);
          }
          // Zoneout on h (never c): the zoned h is the output and the carried state.
          if (zmask) {
            const T* m = zmask + r * H;
            for (int64_t j = 0; j < H; ++j) yr[j] = Zoneout(hb[j], ht[j], m[j]);
          } else if (s.zoneout_scalar) {
            for (int64_t j = 0; j < H; ++j) yr[j] = Zoneout(hb[j], ht[j], zk);
          }
          std::copy_n(yr, H, hb);
        }
      }
      if (training) StreamFence();
    });
  }

 private:
  bool is_training_ = true;
};

// ------------------------------------------------------------------------------------ backward
// A step of a row range, from the last: each row's cell Backward into dGX, dGH (the pre-LN grads
// of xW and hR, kept for all steps), then dh_prev += dGH Rᵀ for the range's rows on this thread.
// The LN and bias param grads: each range sums a step's rows in T, adds that into its own double
// sums, and the ranges' sums meet under a lock at the end. After the loop dX = dGX Wᵀ, dW = Xᵀ dGX
// and dR = H_prevᵀ dGH over all T·B rows (the weight grads summed in double for float).
template <typename T>
class LayerNormRnnGradOp : public LayerNormRnnBase {
 public:
  using LayerNormRnnBase::LayerNormRnnBase;

  void Compute(OpKernelContext* ctx) override {
    Sizes s;
    OP_REQUIRES_OK(ctx, ValidateInputs(ctx, lstm_, time_major_, &s));
    const int64_t T_ = s.T, B = s.B, I = s.I, H = s.H, GH = s.G * H, rows = T_ * B;
    const ReserveLayout rl(rows, H, GH, lstm_);
    OP_REQUIRES_OK(ctx, ValidateGradInputs(ctx, s, rl.size));
    const Tensor& reserve_t = ctx->input(kNumForwardInputs);
    const Tensor& dy_t = ctx->input(kNumForwardInputs + 1);
    const Tensor& dhn_t = ctx->input(kNumForwardInputs + 2);
    const Tensor& dcn_t = ctx->input(kNumForwardInputs + 3);
    // One grad output per forward input but the two masks, each the input's shape, zeroed; but
    // for W's and R's, which the weight gradients below write whole wherever there are rows (a
    // product that does not accumulate, or the transposed double sums): their zeroing, a pass of
    // one thread over R's size, was ~20% of a LayerNormLSTM(2048) one-step training step.
    T* out[kMask];
    for (int i = 0; i < kMask; ++i) {
      Tensor* o;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, ctx->input(i).shape(), &o));
      AdviseHugePages(*o);
      out[i] = o->flat<T>().data();
      const bool written_whole = rows > 0 && (i == kKernel || i == kRecurrentKernel);
      if (!written_whole) std::fill_n(out[i], o->NumElements(), T(0));
    }
    T* dh = out[kH0];
    T* dc = lstm_ ? out[kC0] : nullptr;
    std::copy_n(dhn_t.flat<T>().data(), B * H, dh);
    if (lstm_) std::copy_n(dcn_t.flat<T>().data(), B * H, dc);
    if (rows == 0) return;
    // The first step's dGH Rᵀ is h0's grad alone: skipped where no consumer reads h0's grad (in a
    // graph whose initial states are no variables, as output_required says for x's below).
    const bool h0_grad_wanted = ctx->output_required(kH0);
    // Step 0's rows of dR are h0ᵀ dGH = 0 where h0 is zero: left out.
    const int64_t r_skip = AllZero(ctx->input(kH0).flat<T>().data(), B * H) ? B : 0;
    const LayerNormParams<T> p = ParamsOf<T>(ctx, s);
    const T* mask = s.has_mask ? ctx->input(kMask).flat<T>().data() : nullptr;
    const T* zmask = s.has_zoneout_mask ? ctx->input(kZoneoutMask).flat<T>().data() : nullptr;
    // The keep value of every unit with a scalar zoneout_mask (h = h_prev + k (h~ - h_prev)).
    const T zk = s.zoneout_scalar ? ctx->input(kZoneoutMask).scalar<T>()() : T(1);
    const T* rmask = s.recurrent_mask ? s.recurrent_mask->flat<T>().data() : nullptr;
    T* reserve = const_cast<T*>(reserve_t.flat<T>().data());  // read only (SavedRow's type)
    const T* dy = dy_t.flat<T>().data();
    // Every row of dGX, dGH is written by its step (masked rows: zeros), so no zero fill.
    Tensor grads_t;
    T* dgx;
    OP_REQUIRES_OK(ctx, AllocateScratch(ctx, 2 * rows * GH, &grads_t, &dgx));
    T* const dgh = dgx + rows * GH;
    std::vector<T> dh_rec(B * H);
    const CallDevice device(ctx->eigen_cpu_device(), 4.0 * rows * (I + H) * GH);
    const CPUDevice& d = device.get();
    // Few rows read R as stored, as the forward does (RnnStreamWeights): packing Rᵀ cost a one-step
    // LayerNormLSTM(1024) training step 38% of its time.
    const bool stream = RnnStreamWeights<T>(T_, B);
    Tensor packed_t;
    T* packed;
    OP_REQUIRES_OK(ctx, AllocateScratch(ctx, stream ? 1 : StepGemm<T>::StorageSize(GH, H),
                                        &packed_t, &packed));
    const StepGemm<T> rt_gemm(d, ctx->input(kRecurrentKernel).flat<T>().data(), GH, H, true, packed,
                              nullptr, 0, stream);
    // The LN and bias param grads, in the order bias, bias_h, gamma_x, beta_x, gamma_h, beta_h
    // ([G·H] each), gamma_c, beta_c ([H] each).
    const int64_t n_param_grads = 6 * GH + 2 * H;
    std::vector<double> param_sums(n_param_grads, 0.0);
    std::mutex sums_mutex;
    const bool rows_apart = RnnRowsApart<T>(4.0 * rows * (I + H) * GH, B, H * GH, stream);
    ForEachBatchRange<T>(d, B, rows_apart, [&](int64_t b0, int64_t b1, bool one_thread) {
      const int64_t n = b1 - b0;
      // dgx_row: a row's dGX, streamed out to dgx (StreamOut; only the products after the loop
      // read it)
      std::vector<T> local(n_param_grads), dtilde(H), dz(GH), dh_prev(n * H), dgx_row(GH);
      std::vector<double> sums(n_param_grads, 0.0);
      T* l = local.data();
      const LayerNormGrads<T> lg{l,
                                 lstm_ ? nullptr : l + GH,
                                 l + 2 * GH,
                                 lstm_ ? l + 3 * GH : nullptr,
                                 l + 4 * GH,
                                 lstm_ ? l + 5 * GH : nullptr,
                                 lstm_ ? l + 6 * GH : nullptr,
                                 lstm_ ? l + 6 * GH + H : nullptr};
      for (int64_t t = T_ - 1; t >= 0; --t) {
        std::fill(local.begin(), local.end(), T(0));
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t r = t * B + b;
          T* dhp = dh_prev.data() + (b - b0) * H;
          const T* dhb = dh + b * H;
          // (dy and dGX in x's layout: dX = dGX Wᵀ and dW = Xᵀ dGX below read them as x's rows)
          const T* dyr = dy + IoRow(s, t, b) * H;
          T* dgx_r = dgx + IoRow(s, t, b) * GH;
          T* dgh_r = dgh + r * GH;
          if (mask && mask[r] == T(0)) {  // the states passed through; the output was h_prev
            for (int64_t j = 0; j < H; ++j) dhp[j] = dhb[j] + dyr[j];
            std::fill_n(dgx_r, GH, T(0));
            std::fill_n(dgh_r, GH, T(0));
            continue;
          }
          if (b + 1 < b1) {
            PrefetchRow(reserve, rl, r + 1, H, GH, lstm_, dy + IoRow(s, t, b + 1) * H);
          }
          if (zmask) {
            const T* m = zmask + r * H;
            for (int64_t j = 0; j < H; ++j) {
              const auto zg = ZoneoutBackward(dyr[j] + dhb[j], m[j]);
              dtilde[j] = zg.d_tilde;
              dhp[j] = zg.d_prev;
            }
          } else if (s.zoneout_scalar) {
            for (int64_t j = 0; j < H; ++j) {
              const auto zg = ZoneoutBackward(dyr[j] + dhb[j], zk);
              dtilde[j] = zg.d_tilde;
              dhp[j] = zg.d_prev;
            }
          } else {
            for (int64_t j = 0; j < H; ++j) dtilde[j] = dyr[j] + dhb[j];
            std::fill_n(dhp, H, T(0));
          }
          const RowSaved<T> sv = SavedRow(reserve, rl, r, H, GH);
          if (lstm_) {
            CpuRow<LayerNormLstmCell>::Backward(p, H, reserve + rl.c_prev + r * H, sv,
                                                dtilde.data(), dc + b * H, dz.data(),
                                                dgx_row.data(), dgh_r, lg, dhp);
          } else {
            CpuRow<LayerNormGruCell>::Backward(p, H, reserve + rl.h_prev + r * H, sv, dtilde.data(),
                                               static_cast<T*>(nullptr), dz.data(), dgx_row.data(),
                                               dgh_r, lg, dhp);
          }
          StreamOut(dgx_row.data(), GH, dgx_r);
        }
        for (int64_t j = 0; j < n_param_grads; ++j) sums[j] += static_cast<double>(l[j]);
        if (t == 0 && !h0_grad_wanted) {
          std::fill_n(dh + b0 * H, n * H, T(0));  // (read by no one)
          continue;
        }
        // dh_prev += (dGH_t Rᵀ) ⊙ m over the range's rows (zero rows for masked steps).
        StepProduct(rt_gemm, one_thread, n, GH, H, dgh + (t * B + b0) * GH, dh_rec.data() + b0 * H);
        const T* rec = dh_rec.data() + b0 * H;
        if (rmask) {
          const T* m = rmask + b0 * H;
          for (int64_t i = 0; i < n * H; ++i) dh[b0 * H + i] = dh_prev[i] + rec[i] * m[i];
        } else {
          for (int64_t i = 0; i < n * H; ++i) dh[b0 * H + i] = dh_prev[i] + rec[i];
        }
      }
      StreamFence();
      std::lock_guard<std::mutex> lock(sums_mutex);
      for (int64_t j = 0; j < n_param_grads; ++j) param_sums[j] += sums[j];
    });
    T* const param_outs[] = {out[kBias],   lstm_ ? nullptr : out[kRecurrentBias],
                             out[kGammaX], lstm_ ? out[kBetaX] : nullptr,
                             out[kGammaH], lstm_ ? out[kBetaH] : nullptr};
    for (int k = 0; k < 6; ++k) {
      if (param_outs[k] == nullptr) continue;
      for (int64_t j = 0; j < GH; ++j) param_outs[k][j] = static_cast<T>(param_sums[k * GH + j]);
    }
    if (lstm_) {
      for (int64_t j = 0; j < H; ++j) {
        out[kGammaC][j] = static_cast<T>(param_sums[6 * GH + j]);
        out[kBetaC][j] = static_cast<T>(param_sums[6 * GH + H + j]);
      }
    }
    const T* X = ctx->input(kX).flat<T>().data();
    const T* W = ctx->input(kKernel).flat<T>().data();
    // R's operand in the forward: h_prev, or h_prev ⊙ m (the reserve keeps h_prev undropped:
    // zoneout, the step mask and the GRU's z h_prev read it).
    const T* h_operand = reserve + rl.h_prev;
    Tensor dropped_t;
    if (rmask) {
      T* dropped;
      OP_REQUIRES_OK(ctx, AllocateScratch(ctx, rows * H, &dropped_t, &dropped));
      ParallelRows(d, rows, static_cast<double>(H), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const T* hp = h_operand + r * H;
          const T* m = rmask + (r % B) * H;
          for (int64_t j = 0; j < H; ++j) dropped[r * H + j] = hp[j] * m[j];
        }
      });
      h_operand = dropped;
    }
    // dX = dGX W (rows x G·H x I, as many FLOPs as dW): only where a consumer reads it. In a
    // graph (tf.function, a Keras training step) whose input is data, nothing does: the executor
    // marks the output not required and it stays zero.
    if (ctx->output_required(kX)) {
      CpuGemm<T>(d, false, true, rows, I, GH, dgx, W, out[kX], false);
    }
    // dW = Xᵀ dGX [I, G·H] and dR = H_prevᵀ dGH [H, G·H] over all T·B rows by AddWeightGrad
    // (cpu_gemm.h; for float the packed kernel, on zmm where the machine has AVX-512, summed in
    // double: a float sum over T·B rows loses digits with every term, see GradSumType), into
    // their transposes [G·H, ·] (the gate grads are the wide operand), transposed at the end.
    // (Before: Eigen's contraction on ymm over runs of 1024 rows, ~30% of the training step at
    // B = 64, H = 256; docs/PERFORMANCE.md.)
    // Where the sums may run in T (WeightGradsInT: double, or few rows of float, as a one-step
    // call's), one product writes each straight into its output.
    // (dR over rows [r_skip, rows): step 0's are zero with a zero h0.)
    const T* const dgh_r = dgh + r_skip * GH;
    h_operand += r_skip * H;
    if (WeightGradsInT<T>(rows)) {
      WeightGradInT<T>(d, I, GH, rows, X, dgx, out[kKernel], false);
      WeightGradInT<T>(d, H, GH, rows - r_skip, h_operand, dgh_r, out[kRecurrentKernel], false);
      return;
    }
    using S = typename GradSumType<T>::type;
    // wsum's rows are M + 8 sums apart (a float kernel writes them with that stride), so that
    // the rows the transposition below reads together do not all fall in one set of the cache.
    constexpr bool kPadded = std::is_same<T, float>::value;
    const int64_t pad = kPadded ? 8 : 0;
    Tensor wsum_t;
    S* wsum;
    OP_REQUIRES_OK(ctx, AllocateScratch(ctx, (std::max(I, H) + pad) * GH, &wsum_t, &wsum));
    // (The clearing and the transposition on all threads: on one, ~9% of a LayerNormLSTM(1024)
    // training step at B = 16, T = 32; docs/PERFORMANCE.md item 93.)
    auto weight_grad = [&](int64_t M, int64_t K, const T* A, const T* D, T* dst) {
      const int64_t ldw = M + pad;
      ParallelCopy<S>(d, nullptr, ldw * GH, wsum);  // (zeros)
      if (K == 0) {
        // (nothing to add)
      } else if constexpr (kPadded) {
        AddWeightGradStrided(d, GH, M, K, D, GH, A, wsum, ldw);
      } else {
        AddWeightGrad<T>(d, GH, M, K, D, A, wsum);
      }
      // dst = wsumᵀ (WriteTransposedSums: read column by column, every element missed the cache,
      // 72% of a LayerNormLSTM(1024) one-step training step; docs/PERFORMANCE.md).
      WriteTransposedSums(d, wsum, ldw, M, 1, GH, nullptr, dst, GH);
    };
    weight_grad(I, rows, X, dgx, out[kKernel]);
    weight_grad(H, rows - r_skip, h_operand, dgh_r, out[kRecurrentKernel]);
  }
};

#define REGISTER(T)                                                                           \
  REGISTER_KERNEL_BUILDER(                                                                    \
      Name("TfRnn>LayerNormRnn").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),     \
      LayerNormRnnOp<T>);                                                                     \
  REGISTER_KERNEL_BUILDER(                                                                    \
      Name("TfRnn>LayerNormRnnGrad").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      LayerNormRnnGradOp<T>);
REGISTER(float);
REGISTER(double);
#undef REGISTER

}  // namespace
}  // namespace tf_rnn_ops
