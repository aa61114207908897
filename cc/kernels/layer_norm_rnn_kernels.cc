// CPU kernels of TfRnn>LayerNormRnn and TfRnn>LayerNormRnnGrad (cc/ops/layer_norm_rnn_ops.cc): the
// fused layer-normalized LSTM / GRU (cc/cells/layer_norm_cells.h) over a whole sequence, with a
// step mask and haste's zoneout on h, weights in the Keras layers' layout (no conversion per call).
//
// The driver here owns the products and the state; the cells own the row pass:
//   forward:  GX = X W for all steps in one product; a step: GH = h_prev R, then each row's cell
//             Forward (both LNs, the gates, LSTM's LN of c), then zoneout and the mask;
//   backward: a step runs each row's cell Backward into dGX, dGH, then dh_prev += dGH Rᵀ; after
//             the loop dW = Xᵀ dGX, dX = dGX Wᵀ and dR = H_prevᵀ dGH, one product each.
// The reserve (an output, the grad op's input) holds, per row of every step: xhat_x, xhat_h, act
// [G·H]; c_hat, h_prev, c_prev, h~ [H]; stats [3] (see ReserveLayout).

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
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
template <typename T>
class LayerNormRnnOp : public LayerNormRnnBase {
 public:
  using LayerNormRnnBase::LayerNormRnnBase;

  void Compute(OpKernelContext* ctx) override {
    Sizes s;
    OP_REQUIRES_OK(ctx, ValidateInputs(ctx, lstm_, &s));
    const int64_t T_ = s.T, B = s.B, I = s.I, H = s.H, GH = s.G * H, rows = T_ * B;
    const ReserveLayout rl(rows, H, GH, lstm_);
    Tensor *y, *hn, *cn, *reserve_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({T_, B, H}), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, H}), &hn));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, lstm_ ? H : 0}), &cn));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({rl.size}), &reserve_t));
    T* reserve = reserve_t->flat<T>().data();
    // Not zeroed (100 MB at B = 64, T = 100, H = 256 for the LSTM, a fifth of the call): every
    // value backward reads is written here (masked rows: h_prev, c_prev only).
    T* h = hn->flat<T>().data();
    std::vector<T> c_state(B * H, T(0));
    std::copy_n(ctx->input(kH0).flat<T>().data(), B * H, h);
    if (lstm_) std::copy_n(ctx->input(kC0).flat<T>().data(), B * H, c_state.data());
    T* yp = y->flat<T>().data();
    if (rows == 0) {
      if (lstm_) std::copy(c_state.begin(), c_state.end(), cn->flat<T>().data());
      return;
    }
    const LayerNormParams<T> p = ParamsOf<T>(ctx, s);
    const T* mask = s.has_mask ? ctx->input(kMask).flat<T>().data() : nullptr;
    const T* zmask = s.has_zoneout_mask ? ctx->input(kZoneoutMask).flat<T>().data() : nullptr;
    // The keep value of every unit with a scalar zoneout_mask (h = h_prev + k (h~ - h_prev)).
    const T zk = s.zoneout_scalar ? ctx->input(kZoneoutMask).scalar<T>()() : T(1);
    const CPUDevice& d = ctx->eigen_cpu_device();
    // GX = X W, all steps at once, into xhat_x (normalized in place by the cells).
    CpuGemm<T>(d, false, false, rows, GH, I, ctx->input(kX).flat<T>().data(),
               ctx->input(kKernel).flat<T>().data(), reserve + rl.xhat_x, false);
    std::vector<T> packed(StepGemm<T>::StorageSize(H, GH));
    const StepGemm<T> step_gemm(d, ctx->input(kRecurrentKernel).flat<T>().data(), H, GH, false,
                                packed.data());
    const double row_cost = 30.0 * GH;
    for (int64_t t = 0; t < T_; ++t) {
      T* gh = reserve + rl.xhat_h + t * B * GH;
      step_gemm.Run(B, h, gh);
      ParallelRows(d, B, row_cost, [&](int64_t b0, int64_t b1) {
        std::vector<T> c_new(H);
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t r = t * B + b;
          T* hb = h + b * H;
          T* cb = c_state.data() + b * H;
          T* hprev = reserve + rl.h_prev + r * H;
          std::copy_n(hb, H, hprev);
          if (lstm_) std::copy_n(cb, H, reserve + rl.c_prev + r * H);
          if (mask && mask[r] == T(0)) {  // the states kept; the output is the carried h
            std::copy_n(hb, H, yp + r * H);
            continue;
          }
          const RowSaved<T> sv = SavedRow(reserve, rl, r, H, GH);
          T* ht = reserve + rl.h_tilde + r * H;
          if (lstm_) {
            LayerNormLstmCell::Forward(p, H, sv.xhat_x, sv.xhat_h, cb, sv, c_new.data(), ht);
            std::copy_n(c_new.data(), H, cb);
          } else {
            LayerNormGruCell::Forward(p, H, sv.xhat_x, sv.xhat_h, hb, sv, c_new.data(), ht);
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
      });
    }
    if (lstm_) std::copy(c_state.begin(), c_state.end(), cn->flat<T>().data());
  }
};

// ------------------------------------------------------------------------------------ backward
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
                absl::InvalidArgumentError(absl::StrCat("reserve must have shape [", rl.size,
                                                        "], got ", Shape(reserve_t))));
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
    const LayerNormGrads<T> g{out[kBias],
                              lstm_ ? nullptr : out[kRecurrentBias],
                              out[kGammaX],
                              lstm_ ? out[kBetaX] : nullptr,
                              out[kGammaH],
                              lstm_ ? out[kBetaH] : nullptr,
                              lstm_ ? out[kGammaC] : nullptr,
                              lstm_ ? out[kBetaC] : nullptr};
    const T* mask = s.has_mask ? ctx->input(kMask).flat<T>().data() : nullptr;
    const T* zmask = s.has_zoneout_mask ? ctx->input(kZoneoutMask).flat<T>().data() : nullptr;
    // The keep value of every unit with a scalar zoneout_mask (h = h_prev + k (h~ - h_prev)).
    const T zk = s.zoneout_scalar ? ctx->input(kZoneoutMask).scalar<T>()() : T(1);
    T* reserve = const_cast<T*>(reserve_t.flat<T>().data());  // read only (SavedRow's type)
    const T* dy = dy_t.flat<T>().data();
    std::vector<T> dgx(rows * GH, T(0)), dgh(rows * GH, T(0)), dh_prev(B * H), dh_rec(B * H);
    const CPUDevice& d = ctx->eigen_cpu_device();
    std::vector<T> packed(StepGemm<T>::StorageSize(GH, H));
    const StepGemm<T> step_gemm(d, ctx->input(kRecurrentKernel).flat<T>().data(), GH, H, true,
                                packed.data());
    // The param grads: each share of rows sums into its own, then adds them here under the lock.
    const int64_t n_param_grads = 6 * GH + 2 * H;
    std::mutex grads_mutex;
    const double row_cost = 40.0 * GH;
    for (int64_t t = T_ - 1; t >= 0; --t) {
      ParallelRows(d, B, row_cost, [&](int64_t b0, int64_t b1) {
        std::vector<T> local(n_param_grads, T(0)), dtilde(H), dz(GH);
        T* l = local.data();
        const LayerNormGrads<T> lg{l,
                                   g.bias_h ? l + GH : nullptr,
                                   l + 2 * GH,
                                   g.beta_x ? l + 3 * GH : nullptr,
                                   l + 4 * GH,
                                   g.beta_h ? l + 5 * GH : nullptr,
                                   g.gamma_c ? l + 6 * GH : nullptr,
                                   g.beta_c ? l + 6 * GH + H : nullptr};
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t r = t * B + b;
          T* dhp = dh_prev.data() + b * H;
          const T* dhb = dh + b * H;
          const T* dyr = dy + r * H;
          if (mask && mask[r] == T(0)) {  // the states passed through; the output was h_prev
            for (int64_t j = 0; j < H; ++j) dhp[j] = dhb[j] + dyr[j];
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
          T* dgx_r = dgx.data() + r * GH;
          T* dgh_r = dgh.data() + r * GH;
          if (lstm_) {
            LayerNormLstmCell::Backward(p, H, reserve + rl.c_prev + r * H, sv, dtilde.data(),
                                        dc + b * H, dz.data(), dgx_r, dgh_r, lg, dhp);
          } else {
            LayerNormGruCell::Backward(p, H, reserve + rl.h_prev + r * H, sv, dtilde.data(),
                                       static_cast<T*>(nullptr), dz.data(), dgx_r, dgh_r, lg, dhp);
          }
        }
        std::lock_guard<std::mutex> lock(grads_mutex);
        T* const outs[] = {g.bias, g.bias_h, g.gamma_x, g.beta_x, g.gamma_h, g.beta_h};
        for (int k = 0; k < 6; ++k) {
          if (outs[k] == nullptr) continue;
          for (int64_t j = 0; j < GH; ++j) outs[k][j] += l[k * GH + j];
        }
        if (g.gamma_c) {
          for (int64_t j = 0; j < H; ++j) {
            g.gamma_c[j] += l[6 * GH + j];
            g.beta_c[j] += l[6 * GH + H + j];
          }
        }
      });
      // dh_prev += dGH_t Rᵀ (zero rows for masked steps).
      step_gemm.Run(B, dgh.data() + t * B * GH, dh_rec.data());
      for (int64_t i = 0; i < B * H; ++i) dh[i] = dh_prev[i] + dh_rec[i];
    }
    const T* X = ctx->input(kX).flat<T>().data();
    const T* W = ctx->input(kKernel).flat<T>().data();
    CpuGemm<T>(d, false, true, rows, I, GH, dgx.data(), W, out[kX], false);
    CpuGemm<T>(d, true, false, I, GH, rows, X, dgx.data(), out[kKernel], false);
    CpuGemm<T>(d, true, false, H, GH, rows, reserve + rl.h_prev, dgh.data(), out[kRecurrentKernel],
               false);
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
