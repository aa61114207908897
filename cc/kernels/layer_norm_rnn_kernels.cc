// CPU kernels of TfRnn>LayerNormRnn and TfRnn>LayerNormRnnGrad (cc/ops/layer_norm_rnn_ops.cc): the
// fused layer-normalized LSTM / GRU (cc/cells/layer_norm_cells.h) over a whole sequence, with a
// step mask and haste's zoneout on h, weights in the Keras layers' layout (no conversion per call).
//
// The driver here owns the products and the state; the cells own the row pass. Its structure
// follows CpuRnn (cc/kernels/rnn_cpu_driver.h) so that the loop can move there (see
// docs/ARCHITECTURE.md): each thread of the intra-op pool takes a range of batch rows through all
// the steps (ForEachRowRange; one dispatch a call), and a step of a range is
//   forward:  GX = x_t W and GH = h_prev R for the range's rows (W and R packed once a call,
//             packed_gemm.h, the products on this thread), then each row's cell Forward (both LNs,
//             the gates, LSTM's LN of c), then zoneout and the mask;
//   backward: each row's cell Backward into dGX, dGH, then dh_prev += dGH Rᵀ for the range's rows;
//             after the loop dX = dGX Wᵀ, dW = Xᵀ dGX and dR = H_prevᵀ dGH over all rows.
// Training (is_training) keeps, per row of every step, in the reserve (an output, the grad op's
// input): xhat_x, xhat_h, act [G·H]; c_hat, h_prev, c_prev, h~ [H]; stats [3] (see ReserveLayout).
// Inference writes no reserve (scratch rows per range) and gives bitwise the same outputs.

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/cells/layer_norm_cells.h"
#include "cc/kernels/cpu_gemm.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/errors.h"

namespace tf_rnn_ops {
namespace {

using layer_norm_cells::LayerNormGrads;
using layer_norm_cells::LayerNormGruCell;
using layer_norm_cells::LayerNormLstmCell;
using layer_norm_cells::LayerNormParams;
using layer_norm_cells::RowSaved;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// Input indices, shared by both ops (the grad op appends reserve, dy, dhn, dcn).
enum Input : int {
  kX = 0,
  kH0,
  kC0,
  kKernel,
  kRecurrentKernel,
  kBias,
  kRecurrentBias,
  kGammaX,
  kBetaX,
  kGammaH,
  kBetaH,
  kGammaC,
  kBetaC,
  kMask,
  kZoneoutMask,
  kEpsilon,
  kNumForwardInputs,
};
constexpr const char* kInputNames[kNumForwardInputs] = {"x",
                                                        "h0",
                                                        "c0",
                                                        "kernel",
                                                        "recurrent_kernel",
                                                        "bias",
                                                        "recurrent_bias",
                                                        "gamma_x",
                                                        "beta_x",
                                                        "gamma_h",
                                                        "beta_h",
                                                        "gamma_c",
                                                        "beta_c",
                                                        "mask",
                                                        "zoneout_mask",
                                                        "epsilon"};

// Offsets (in elements) of the reserve's regions, each [T·B, width].
struct ReserveLayout {
  int64_t xhat_x, xhat_h, act, c_hat, h_prev, c_prev, h_tilde, stats, size;
  // The LSTM's c_hat and c_prev are empty for the GRU.
  ReserveLayout(int64_t rows, int64_t H, int64_t GH, bool lstm) {
    int64_t o = 0;
    auto take = [&](int64_t w) {
      const int64_t at = o;
      o += rows * w;
      return at;
    };
    xhat_x = take(GH);
    xhat_h = take(GH);
    act = take(GH);
    c_hat = take(lstm ? H : 0);
    h_prev = take(H);
    c_prev = take(lstm ? H : 0);
    h_tilde = take(H);
    stats = take(3);
    size = o;
  }
};

// The checked sizes and attributes of a call.
struct Sizes {
  int64_t T = 0, B = 0, I = 0, H = 0, G = 0;
  bool lstm = false, has_mask = false, has_zoneout_mask = false, zoneout_scalar = false;
};

absl::Status Check(bool ok, const std::string& what) {
  return ok ? absl::OkStatus() : absl::InvalidArgumentError(what);
}

std::string Shape(const Tensor& t) { return t.shape().DebugString(); }

absl::Status CheckVector(OpKernelContext* ctx, int i, int64_t n, const char* n_what) {
  const Tensor& t = ctx->input(i);
  return Check(
      t.dims() == 1 && t.dim_size(0) == n,
      absl::StrCat(kInputNames[i], " must have shape [", n_what, "] = [", n, "], got ", Shape(t)));
}

absl::Status ValidateInputs(OpKernelContext* ctx, bool lstm, Sizes* s) {
  const Tensor& x = ctx->input(kX);
  TF_RETURN_IF_ERROR(
      Check(x.dims() == 3, absl::StrCat("x must be rank 3 [T, B, I], got ", Shape(x))));
  s->lstm = lstm;
  s->G = lstm ? 4 : 3;
  s->T = x.dim_size(0);
  s->B = x.dim_size(1);
  s->I = x.dim_size(2);
  const Tensor& rk = ctx->input(kRecurrentKernel);
  TF_RETURN_IF_ERROR(
      Check(rk.dims() == 2 && rk.dim_size(1) == s->G * rk.dim_size(0),
            absl::StrCat("recurrent_kernel must have shape [H, ", s->G, "·H], got ", Shape(rk))));
  s->H = rk.dim_size(0);
  TF_RETURN_IF_ERROR(Check(s->H > 0, "recurrent_kernel: the cell size H must be positive"));
  const int64_t GH = s->G * s->H;
  const Tensor& k = ctx->input(kKernel);
  TF_RETURN_IF_ERROR(Check(k.dims() == 2 && k.dim_size(0) == s->I && k.dim_size(1) == GH,
                           absl::StrCat("kernel must have shape [x.dims(2), G·H] = [", s->I, ", ",
                                        GH, "], got ", Shape(k))));
  const Tensor& h0 = ctx->input(kH0);
  TF_RETURN_IF_ERROR(
      Check(h0.dims() == 2 && h0.dim_size(0) == s->B && h0.dim_size(1) == s->H,
            absl::StrCat("h0 must have shape [B, H] = [", s->B, ", ", s->H, "], got ", Shape(h0))));
  // Every buffer of a call (y, the reserve, the products' rows: T·B rows of at most
  // 3·G·H + 5·H + 3 elements) within 2^62 elements, so that no int64 size overflows: an empty x
  // (I = 0) can have any T and B.
  const double row_elements = 3.0 * static_cast<double>(GH) + 5.0 * static_cast<double>(s->H) + 3.0;
  TF_RETURN_IF_ERROR(Check(
      static_cast<double>(s->T) * static_cast<double>(s->B) * row_elements <= 4611686018427387904.0,
      absl::StrCat("x ", Shape(x), " has T·B = ", s->T, " × ", s->B, " rows of ", row_elements,
                   " elements of the cell's buffers each (H = ", s->H,
                   "): more than 2^62 elements in all")));
  TF_RETURN_IF_ERROR(CheckVector(ctx, kBias, GH, "G·H"));
  TF_RETURN_IF_ERROR(CheckVector(ctx, kGammaX, GH, "G·H"));
  TF_RETURN_IF_ERROR(CheckVector(ctx, kGammaH, GH, "G·H"));
  if (lstm) {
    const Tensor& c0 = ctx->input(kC0);
    TF_RETURN_IF_ERROR(Check(
        c0.dims() == 2 && c0.dim_size(0) == s->B && c0.dim_size(1) == s->H,
        absl::StrCat("c0 must have shape [B, H] = [", s->B, ", ", s->H, "], got ", Shape(c0))));
    TF_RETURN_IF_ERROR(CheckVector(ctx, kBetaX, GH, "G·H"));
    TF_RETURN_IF_ERROR(CheckVector(ctx, kBetaH, GH, "G·H"));
    TF_RETURN_IF_ERROR(CheckVector(ctx, kGammaC, s->H, "H"));
    TF_RETURN_IF_ERROR(CheckVector(ctx, kBetaC, s->H, "H"));
  } else {
    TF_RETURN_IF_ERROR(CheckVector(ctx, kRecurrentBias, GH, "G·H"));
  }
  const Tensor& mask = ctx->input(kMask);
  if (mask.dims() != 1 || mask.dim_size(0) != 0) {
    TF_RETURN_IF_ERROR(
        Check(mask.dims() == 2 && mask.dim_size(0) == s->T && mask.dim_size(1) == s->B,
              absl::StrCat("mask must have shape [T, B] = [", s->T, ", ", s->B,
                           "] or [0] (no mask), got ", Shape(mask))));
    s->has_mask = true;
  }
  const Tensor& eps = ctx->input(kEpsilon);
  TF_RETURN_IF_ERROR(
      Check(eps.dims() == 0, absl::StrCat("epsilon must be a scalar, got ", Shape(eps))));
  const double eps_value = eps.dtype() == tensorflow::DT_FLOAT
                               ? static_cast<double>(eps.scalar<float>()())
                               : eps.scalar<double>()();
  TF_RETURN_IF_ERROR(
      Check(eps_value > 0, absl::StrCat("epsilon must be positive, got ", eps_value)));
  const Tensor& zm = ctx->input(kZoneoutMask);
  if (zm.dims() == 0) {
    s->zoneout_scalar = true;  // one keep value for every unit (inference zoneout: 1 - p)
  } else if (zm.dims() != 1 || zm.dim_size(0) != 0) {
    TF_RETURN_IF_ERROR(
        Check(zm.dims() == 3 && zm.dim_size(0) == s->T && zm.dim_size(1) == s->B &&
                  zm.dim_size(2) == s->H,
              absl::StrCat("zoneout_mask must have shape [T, B, H] = [", s->T, ", ", s->B, ", ",
                           s->H, "], be a scalar, or [0] (none), got ", Shape(zm))));
    s->has_zoneout_mask = true;
  }
  return absl::OkStatus();
}

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
          reserve + rl.c_hat + r * H, reserve + rl.stats + r * 3};
}

// Runs range(b0, b1, one_thread) so that each thread of the pool takes a range of batch rows (whole
// kMr-row strips of the packed micro-kernel) through all the steps: the rows of a batch run their
// recurrences independently, so a thread's steps need nothing from the others (one dispatch a call
// instead of two a step; each thread's states stay in its own cache). As CpuRnn::ForEachRowRange
// (cc/kernels/rnn_cpu_driver.h): where the batch is small or the products cannot run on one thread
// (double: Eigen's contraction), one range of all rows, its products split inside (one_thread
// false).
template <typename T, typename Fn>
void ForEachRowRange(const CPUDevice& d, int64_t B, Fn&& range) {
  if (!StepGemm<T>::kRowsOnOneThread || d.numThreads() <= 1 || B < 2 * kMr) {
    range(int64_t{0}, B, false);
    return;
  }
  const int64_t strips = (B + kMr - 1) / kMr;
  ParallelRows(d, strips, 1e9, [&](int64_t begin, int64_t end) {
    range(begin * kMr, std::min(B, end * kMr), true);
  });
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

class LayerNormRnnBase : public OpKernel {
 public:
  explicit LayerNormRnnBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string cell;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("cell", &cell));
    lstm_ = cell == "layer_norm_lstm";
  }

 protected:
  bool lstm_ = false;
};

// ------------------------------------------------------------------------------------- forward
// A step of a row range: xW and h R of its rows (the packed kernel, on this thread), then each
// row's cell pass. Training writes what backward needs into the reserve (the products straight
// into the xhat regions, normalized there in place); inference (is_training false) writes no
// reserve: the products and the saved values go to per-range scratch rows.
template <typename T>
class LayerNormRnnOp : public LayerNormRnnBase {
 public:
  explicit LayerNormRnnOp(OpKernelConstruction* ctx) : LayerNormRnnBase(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("is_training", &is_training_));
  }

  void Compute(OpKernelContext* ctx) override {
    Sizes s;
    OP_REQUIRES_OK(ctx, ValidateInputs(ctx, lstm_, &s));
    const int64_t T_ = s.T, B = s.B, I = s.I, H = s.H, GH = s.G * H, rows = T_ * B;
    const bool training = is_training_;
    const ReserveLayout rl(training ? rows : 0, H, GH, lstm_);
    Tensor *y, *hn, *cn, *reserve_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({T_, B, H}), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, H}), &hn));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, lstm_ ? H : 0}), &cn));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({rl.size}), &reserve_t));
    T* reserve = reserve_t->flat<T>().data();
    // Not zeroed (100 MB at B = 64, T = 100, H = 256 for the LSTM): every value backward reads is
    // written here (masked rows: h_prev, c_prev only).
    T* h = hn->flat<T>().data();
    T* c_state = cn->flat<T>().data();  // the LSTM's c, carried in place ([B, 0] for the GRU)
    std::copy_n(ctx->input(kH0).flat<T>().data(), B * H, h);
    if (lstm_) std::copy_n(ctx->input(kC0).flat<T>().data(), B * H, c_state);
    if (rows == 0) return;
    T* yp = y->flat<T>().data();
    const LayerNormParams<T> p = ParamsOf<T>(ctx, s);
    const T* x = ctx->input(kX).flat<T>().data();
    const T* mask = s.has_mask ? ctx->input(kMask).flat<T>().data() : nullptr;
    const T* zmask = s.has_zoneout_mask ? ctx->input(kZoneoutMask).flat<T>().data() : nullptr;
    // The keep value of every unit with a scalar zoneout_mask (h = h_prev + k (h~ - h_prev)).
    const T zk = s.zoneout_scalar ? ctx->input(kZoneoutMask).scalar<T>()() : T(1);
    const CPUDevice& d = ctx->eigen_cpu_device();
    // W and R packed once a call; every step's products of every range read them.
    std::vector<T> packed(StepGemm<T>::StorageSize(I, GH) + StepGemm<T>::StorageSize(H, GH));
    const StepGemm<T> w_gemm(d, ctx->input(kKernel).flat<T>().data(), I, GH, false, packed.data());
    const StepGemm<T> r_gemm(d, ctx->input(kRecurrentKernel).flat<T>().data(), H, GH, false,
                             packed.data() + StepGemm<T>::StorageSize(I, GH));
    ForEachRowRange<T>(d, B, [&](int64_t b0, int64_t b1, bool one_thread) {
      const int64_t n = b1 - b0;
      // Inference scratch: the range's xW and hR rows (normalized in place), one row's act,
      // c_hat, stats, h~ and h_prev. Training: c_new only.
      std::vector<T> scratch(training ? H : 2 * n * GH + GH + 4 * H + 3);
      T* c_new = scratch.data();
      T* gx_s = c_new + H;
      T* gh_s = gx_s + (training ? 0 : n * GH);
      T* act_s = gh_s + (training ? 0 : n * GH);
      T* c_hat_s = act_s + GH;
      T* ht_s = c_hat_s + H;
      T* hprev_s = ht_s + H;
      T* stats_s = hprev_s + H;
      for (int64_t t = 0; t < T_; ++t) {
        const int64_t r0 = t * B + b0;
        T* gx = training ? reserve + rl.xhat_x + r0 * GH : gx_s;
        T* gh = training ? reserve + rl.xhat_h + r0 * GH : gh_s;
        StepProduct(w_gemm, one_thread, n, I, GH, x + r0 * I, gx);
        StepProduct(r_gemm, one_thread, n, H, GH, h + b0 * H, gh);
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t r = t * B + b;
          T* hb = h + b * H;
          T* cb = lstm_ ? c_state + b * H : nullptr;
          T* hprev = training ? reserve + rl.h_prev + r * H : hprev_s;
          std::copy_n(hb, H, hprev);
          if (training && lstm_) std::copy_n(cb, H, reserve + rl.c_prev + r * H);
          if (mask && mask[r] == T(0)) {  // the states kept; the output is the carried h
            std::copy_n(hb, H, yp + r * H);
            continue;
          }
          T* gxr = gx + (b - b0) * GH;
          T* ghr = gh + (b - b0) * GH;
          const RowSaved<T> sv = training ? SavedRow(reserve, rl, r, H, GH)
                                          : RowSaved<T>{gxr, ghr, act_s, c_hat_s, stats_s};
          T* ht = training ? reserve + rl.h_tilde + r * H : ht_s;
          if (lstm_) {
            LayerNormLstmCell::Forward(p, H, gxr, ghr, cb, sv, c_new, ht);
            std::copy_n(c_new, H, cb);
          } else {
            LayerNormGruCell::Forward(p, H, gxr, ghr, hb, sv, c_new, ht);
          }
          // Zoneout on h (never c): the zoned h is the output and the carried state.
          if (zmask) {
            const T* m = zmask + r * H;
            for (int64_t j = 0; j < H; ++j) hb[j] = hprev[j] + m[j] * (ht[j] - hprev[j]);
          } else if (s.zoneout_scalar) {
            for (int64_t j = 0; j < H; ++j) hb[j] = hprev[j] + zk * (ht[j] - hprev[j]);
          } else {
            std::copy_n(ht, H, hb);
          }
          std::copy_n(hb, H, yp + r * H);
        }
      }
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
    OP_REQUIRES_OK(ctx, ValidateInputs(ctx, lstm_, &s));
    const int64_t T_ = s.T, B = s.B, I = s.I, H = s.H, GH = s.G * H, rows = T_ * B;
    const ReserveLayout rl(rows, H, GH, lstm_);
    const Tensor& reserve_t = ctx->input(kNumForwardInputs);
    const Tensor& dy_t = ctx->input(kNumForwardInputs + 1);
    const Tensor& dhn_t = ctx->input(kNumForwardInputs + 2);
    const Tensor& dcn_t = ctx->input(kNumForwardInputs + 3);
    OP_REQUIRES(ctx, reserve_t.dims() == 1 && reserve_t.dim_size(0) == rl.size,
                absl::InvalidArgumentError(absl::StrCat(
                    "reserve must have shape [", rl.size,
                    "] (a forward run with is_training=true), got ", Shape(reserve_t))));
    OP_REQUIRES(ctx, dy_t.shape() == TensorShape({T_, B, H}),
                absl::InvalidArgumentError(
                    absl::StrCat("dy must have shape [T, B, H], got ", Shape(dy_t))));
    OP_REQUIRES(
        ctx, dhn_t.shape() == TensorShape({B, H}),
        absl::InvalidArgumentError(absl::StrCat("dhn must have shape [B, H], got ", Shape(dhn_t))));
    OP_REQUIRES(ctx, dcn_t.shape() == TensorShape({B, lstm_ ? H : 0}),
                absl::InvalidArgumentError(absl::StrCat("dcn must have shape [B, ", lstm_ ? H : 0,
                                                        "], got ", Shape(dcn_t))));
    // One grad output per forward input but the two masks, each the input's shape, zeroed.
    T* out[kMask];
    for (int i = 0; i < kMask; ++i) {
      Tensor* o;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, ctx->input(i).shape(), &o));
      out[i] = o->flat<T>().data();
      std::fill_n(out[i], o->NumElements(), T(0));
    }
    T* dh = out[kH0];
    T* dc = lstm_ ? out[kC0] : nullptr;
    std::copy_n(dhn_t.flat<T>().data(), B * H, dh);
    if (lstm_) std::copy_n(dcn_t.flat<T>().data(), B * H, dc);
    if (rows == 0) return;
    const LayerNormParams<T> p = ParamsOf<T>(ctx, s);
    const T* mask = s.has_mask ? ctx->input(kMask).flat<T>().data() : nullptr;
    const T* zmask = s.has_zoneout_mask ? ctx->input(kZoneoutMask).flat<T>().data() : nullptr;
    // The keep value of every unit with a scalar zoneout_mask (h = h_prev + k (h~ - h_prev)).
    const T zk = s.zoneout_scalar ? ctx->input(kZoneoutMask).scalar<T>()() : T(1);
    T* reserve = const_cast<T*>(reserve_t.flat<T>().data());  // read only (SavedRow's type)
    const T* dy = dy_t.flat<T>().data();
    // Every row of dGX, dGH is written by its step (masked rows: zeros), so no zero fill.
    std::unique_ptr<T[]> dgx(new T[rows * GH]), dgh(new T[rows * GH]);
    std::vector<T> dh_rec(B * H);
    const CPUDevice& d = ctx->eigen_cpu_device();
    std::vector<T> packed(StepGemm<T>::StorageSize(GH, H));
    const StepGemm<T> rt_gemm(d, ctx->input(kRecurrentKernel).flat<T>().data(), GH, H, true,
                              packed.data());
    // The LN and bias param grads, in the order bias, bias_h, gamma_x, beta_x, gamma_h, beta_h
    // ([G·H] each), gamma_c, beta_c ([H] each).
    const int64_t n_param_grads = 6 * GH + 2 * H;
    std::vector<double> param_sums(n_param_grads, 0.0);
    std::mutex sums_mutex;
    ForEachRowRange<T>(d, B, [&](int64_t b0, int64_t b1, bool one_thread) {
      const int64_t n = b1 - b0;
      std::vector<T> local(n_param_grads), dtilde(H), dz(GH), dh_prev(n * H);
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
          const T* dyr = dy + r * H;
          T* dgx_r = dgx.get() + r * GH;
          T* dgh_r = dgh.get() + r * GH;
          if (mask && mask[r] == T(0)) {  // the states passed through; the output was h_prev
            for (int64_t j = 0; j < H; ++j) dhp[j] = dhb[j] + dyr[j];
            std::fill_n(dgx_r, GH, T(0));
            std::fill_n(dgh_r, GH, T(0));
            continue;
          }
          for (int64_t j = 0; j < H; ++j) {
            const T dsum = dyr[j] + dhb[j];
            if (zmask) {
              const T m = zmask[r * H + j];
              dtilde[j] = m * dsum;
              dhp[j] = (T(1) - m) * dsum;
            } else if (s.zoneout_scalar) {
              dtilde[j] = zk * dsum;
              dhp[j] = (T(1) - zk) * dsum;
            } else {
              dtilde[j] = dsum;
              dhp[j] = T(0);
            }
          }
          const RowSaved<T> sv = SavedRow(reserve, rl, r, H, GH);
          if (lstm_) {
            LayerNormLstmCell::Backward(p, H, reserve + rl.c_prev + r * H, sv, dtilde.data(),
                                        dc + b * H, dz.data(), dgx_r, dgh_r, lg, dhp);
          } else {
            LayerNormGruCell::Backward(p, H, reserve + rl.h_prev + r * H, sv, dtilde.data(),
                                       static_cast<T*>(nullptr), dz.data(), dgx_r, dgh_r, lg, dhp);
          }
        }
        for (int64_t j = 0; j < n_param_grads; ++j) sums[j] += static_cast<double>(l[j]);
        // dh_prev += dGH_t Rᵀ over the range's rows (zero rows for masked steps).
        StepProduct(rt_gemm, one_thread, n, GH, H, dgh.get() + (t * B + b0) * GH,
                    dh_rec.data() + b0 * H);
        for (int64_t i = 0; i < n * H; ++i) dh[b0 * H + i] = dh_prev[i] + dh_rec[b0 * H + i];
      }
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
    CpuGemm<T>(d, false, true, rows, I, GH, dgx.get(), W, out[kX], false);
    // dW = Xᵀ dGX [I, G·H] and dR = H_prevᵀ dGH [H, G·H]: Eigen's contraction (measured, 1.5×
    // the rate of GemmTransposedA at these shapes) over runs of kWeightGradRows rows, each run's
    // float product added into double sums (for float; a float sum over all T·B rows loses digits
    // with every term, see GradSumType).
    using S = typename GradSumType<T>::type;
    constexpr int64_t kWeightGradRows = 1024;
    std::vector<S> wsum(std::is_same<S, T>::value ? 0 : std::max(I, H) * GH);
    std::vector<T> wrun(std::is_same<S, T>::value ? 0 : std::max(I, H) * GH);
    auto weight_grad = [&](int64_t M, const T* A, const T* D, T* dst) {
      if constexpr (std::is_same<S, T>::value) {
        CpuGemm<T>(d, true, false, M, GH, rows, A, D, dst, false);
      } else {
        std::fill_n(wsum.begin(), M * GH, S(0));
        for (int64_t k0 = 0; k0 < rows; k0 += kWeightGradRows) {
          const int64_t k = std::min(kWeightGradRows, rows - k0);
          CpuGemm<T>(d, true, false, M, GH, k, A + k0 * M, D + k0 * GH, wrun.data(), false);
          for (int64_t i = 0; i < M * GH; ++i) wsum[i] += static_cast<S>(wrun[i]);
        }
        for (int64_t i = 0; i < M * GH; ++i) dst[i] = static_cast<T>(wsum[i]);
      }
    };
    weight_grad(I, X, dgx.get(), out[kKernel]);
    weight_grad(H, reserve + rl.h_prev, dgh.get(), out[kRecurrentKernel]);
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
