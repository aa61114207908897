// The input checks of TfRnn>LayerNormRnn and TfRnn>LayerNormRnnGrad (cc/ops/layer_norm_rnn_ops.cc),
// shared by the CPU kernels (layer_norm_rnn_kernels.cc) and the GPU kernels
// (layer_norm_rnn_kernels_gpu.cc), so that both devices accept the same inputs and word their
// errors the same. Reads only shapes, and the epsilon scalar (host memory on either device).
#ifndef TF_RNN_OPS_CC_KERNELS_LAYER_NORM_RNN_CHECKS_H_
#define TF_RNN_OPS_CC_KERNELS_LAYER_NORM_RNN_CHECKS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

namespace tf_rnn_ops {
namespace layer_norm_rnn {

using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// Input indices, shared by both ops (the grad op appends reserve, dy, dhn, dcn). Both end with
// the list input recurrent_mask (N = 0 or 1 tensors; Sizes::recurrent_mask), found by name.
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
inline constexpr const char* kInputNames[kNumForwardInputs] = {"x",
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

// The checked sizes and attributes of a call.
struct Sizes {
  int64_t T = 0, B = 0, I = 0, H = 0, G = 0;
  bool time_major = true;  // x, y, dy, dx [T, B, ·]; else [B, T, ·] (the masks: [T, B] either way)
  bool lstm = false, has_mask = false, has_zoneout_mask = false, zoneout_scalar = false;
  // The recurrent dropout mask m [B, H] (h_{t-1} ⊙ m in h's product with R), or null (none).
  const Tensor* recurrent_mask = nullptr;
};

// The row of x and y (and of their grads) of step t, batch row b, in the call's layout; how many
// rows apart a step's consecutive batch rows lie; and the shape of such a sequence of `width`.
inline int64_t IoRow(const Sizes& s, int64_t t, int64_t b) {
  return s.time_major ? t * s.B + b : b * s.T + t;
}
inline int64_t IoBatchRowStride(const Sizes& s) { return s.time_major ? 1 : s.T; }
inline TensorShape IoShape(const Sizes& s, int64_t width) {
  return s.time_major ? TensorShape({s.T, s.B, width}) : TensorShape({s.B, s.T, width});
}

inline absl::Status Check(bool ok, const std::string& what) {
  return ok ? absl::OkStatus() : absl::InvalidArgumentError(what);
}

inline std::string Shape(const Tensor& t) { return t.shape().DebugString(); }

inline absl::Status CheckVector(OpKernelContext* ctx, int i, int64_t n, const char* n_what) {
  const Tensor& t = ctx->input(i);
  return Check(
      t.dims() == 1 && t.dim_size(0) == n,
      absl::StrCat(kInputNames[i], " must have shape [", n_what, "] = [", n, "], got ", Shape(t)));
}

inline absl::Status ValidateInputs(OpKernelContext* ctx, bool lstm, bool time_major, Sizes* s) {
  const Tensor& x = ctx->input(kX);
  TF_RETURN_IF_ERROR(Check(
      x.dims() == 3, absl::StrCat("x must be rank 3 (", time_major ? "[T, B, I]" : "[B, T, I]",
                                  "), got ", Shape(x))));
  s->time_major = time_major;
  s->lstm = lstm;
  s->G = lstm ? 4 : 3;
  s->T = x.dim_size(time_major ? 0 : 1);
  s->B = x.dim_size(time_major ? 1 : 0);
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
  ::tensorflow::OpInputList recurrent_mask;
  TF_RETURN_IF_ERROR(ctx->input_list("recurrent_mask", &recurrent_mask));
  TF_RETURN_IF_ERROR(Check(recurrent_mask.size() <= 1,
                           absl::StrCat("recurrent_mask must be none or one tensor [B, H], got ",
                                        recurrent_mask.size(), " tensors")));
  if (recurrent_mask.size() == 1) {
    const Tensor& rm = recurrent_mask[0];
    TF_RETURN_IF_ERROR(Check(rm.dims() == 2 && rm.dim_size(0) == s->B && rm.dim_size(1) == s->H,
                             absl::StrCat("recurrent_mask must have shape [B, H] = [", s->B, ", ",
                                          s->H, "], got ", Shape(rm))));
    s->recurrent_mask = &rm;
  }
  return absl::OkStatus();
}

// The grad op's own inputs after the forward's (ValidateInputs first): the reserve of a training
// forward (`reserve_size` elements), dy [T, B, H] (time_major=false: [B, T, H]), dhn [B, H], dcn
// [B, H] (LSTM) or [B, 0].
inline absl::Status ValidateGradInputs(OpKernelContext* ctx, const Sizes& s, int64_t reserve_size) {
  const Tensor& reserve = ctx->input(kNumForwardInputs);
  const Tensor& dy = ctx->input(kNumForwardInputs + 1);
  const Tensor& dhn = ctx->input(kNumForwardInputs + 2);
  const Tensor& dcn = ctx->input(kNumForwardInputs + 3);
  TF_RETURN_IF_ERROR(
      Check(reserve.dims() == 1 && reserve.dim_size(0) == reserve_size,
            absl::StrCat("reserve must have shape [", reserve_size,
                         "] (a forward run with is_training=true), got ", Shape(reserve))));
  const TensorShape dy_shape = IoShape(s, s.H);
  TF_RETURN_IF_ERROR(Check(
      dy.shape() == dy_shape,
      absl::StrCat("dy must have shape ", dy_shape.DebugString(), " (y's), got ", Shape(dy))));
  TF_RETURN_IF_ERROR(Check(dhn.shape() == TensorShape({s.B, s.H}),
                           absl::StrCat("dhn must have shape [B, H], got ", Shape(dhn))));
  const int64_t c_width = s.lstm ? s.H : 0;
  return Check(dcn.shape() == TensorShape({s.B, c_width}),
               absl::StrCat("dcn must have shape [B, ", c_width, "], got ", Shape(dcn)));
}

// The base of both ops' kernels, CPU and GPU: which cell the `cell` attr names, and the layout.
class LayerNormRnnBase : public ::tensorflow::OpKernel {
 public:
  explicit LayerNormRnnBase(::tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string cell;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("cell", &cell));
    lstm_ = cell == "layer_norm_lstm";
    OP_REQUIRES_OK(ctx, ctx->GetAttr("time_major", &time_major_));
  }

 protected:
  bool lstm_ = false;
  bool time_major_ = true;
};

}  // namespace layer_norm_rnn
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_LAYER_NORM_RNN_CHECKS_H_
