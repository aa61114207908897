// The params OpKernels of the fused RNN family, host arithmetic and copies only (the same kernels
// serve the CPU and, with every tensor in host memory, the GPU): the params size, and the
// conversions between the opaque params and the canonical weights and biases (layout: docs/MATH.md,
// "Params layout"; RnnModelShape, rnn_params.h).
#ifndef TF_RNN_OPS_CC_KERNELS_FUSED_RNN_PARAMS_KERNELS_H_
#define TF_RNN_OPS_CC_KERNELS_FUSED_RNN_PARAMS_KERNELS_H_

#include <cstdint>
#include <cstring>
#include <limits>

#include "cc/kernels/fused_rnn_attrs.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/rnn_params.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace tf_rnn_ops {

// Reads the scalar int32 inputs num_layers, num_units, input_size into a model shape.
inline absl::Status ModelFromScalars(OpKernelContext* ctx, const FusedRnnAttrs& attrs,
                                     RnnModelShape* shape) {
  int64_t v[3];
  const char* names[3] = {"num_layers", "num_units", "input_size"};
  for (int i = 0; i < 3; ++i) {
    const Tensor* scalar;
    TF_RETURN_IF_ERROR(ctx->input(names[i], &scalar));
    const Tensor& t = *scalar;
    if (!tensorflow::TensorShapeUtils::IsScalar(t.shape())) {
      return InvalidArgument(names[i], " must be a scalar, got shape ", t.shape().DebugString());
    }
    v[i] = t.scalar<int32_t>()();
  }
  return attrs.Model(v[0], v[1], v[2], shape);
}

template <typename T, typename Index>
class FusedRnnParamsSizeOp : public OpKernel {
 public:
  explicit FusedRnnParamsSizeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
  }
  void Compute(OpKernelContext* ctx) override {
    RnnModelShape s;
    OP_REQUIRES_OK(ctx, ModelFromScalars(ctx, attrs_, &s));
    const int64_t size = s.ParamsSize();
    OP_REQUIRES(ctx, size <= std::numeric_limits<Index>::max(),
                InvalidArgument("params size ", size, " does not fit the output type"));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({1}), &out));
    out->flat<Index>()(0) = static_cast<Index>(size);
  }

 private:
  FusedRnnAttrs attrs_;
};

// The number of canonical weights and biases the op was built for (V1: num_params for both).
inline absl::Status CanonicalCounts(OpKernelConstruction* ctx, int* num_weights, int* num_biases) {
  if (ctx->HasAttr("num_params")) {
    TF_RETURN_IF_ERROR(ctx->GetAttr("num_params", num_weights));
    *num_biases = *num_weights;
    return absl::OkStatus();
  }
  TF_RETURN_IF_ERROR(ctx->GetAttr("num_params_weights", num_weights));
  return ctx->GetAttr("num_params_biases", num_biases);
}

inline absl::Status CheckCanonicalCounts(const RnnModelShape& s, int num_weights, int num_biases) {
  if (num_weights != s.TotalWeights() || num_biases != s.TotalBiases()) {
    return InvalidArgument("num_layers ", s.num_layers,
                           " with rnn_mode, direction, input_mode and "
                           "num_proj as given makes ",
                           s.TotalWeights(), " canonical weights and ", s.TotalBiases(),
                           " biases, but num_params_weights is ", num_weights,
                           " and num_params_biases ", num_biases);
  }
  return absl::OkStatus();
}

// Visits the canonical tensors in order: fn(is_bias, index, offset in opaque params, rows, cols).
template <typename Fn>
void ForEachCanonical(const RnnModelShape& s, Fn&& fn) {
  int wi = 0, bi = 0;
  for (int l = 0; l < s.num_layers; ++l) {
    const auto blk = s.LayerBlock(l);
    for (int d = 0; d < s.num_dirs; ++d) {
      int64_t offset = s.BlockOffset(l, d);
      for (int k = 0; k < s.NumWeights(l); ++k) {
        int64_t rows, cols;
        s.WeightShape(l, k, &rows, &cols);
        fn(false, wi++, offset, rows, cols);
        offset += rows * cols;
      }
      offset = s.BlockOffset(l, d) + blk.b_w;
      for (int k = 0; k < s.NumBiases(); ++k) {
        fn(true, bi++, offset, s.num_units, int64_t{1});
        offset += s.num_units;
      }
    }
  }
}

template <typename T>
class FusedRnnParamsToCanonicalOp : public OpKernel {
 public:
  explicit FusedRnnParamsToCanonicalOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
    OP_REQUIRES_OK(ctx, CanonicalCounts(ctx, &num_weights_, &num_biases_));
    int stop;
    OP_REQUIRES_OK(ctx, InputRange("params", &params_, &stop));
    OP_REQUIRES_OK(ctx, OutputRange("weights", &weights_, &stop));
    OP_REQUIRES_OK(ctx, OutputRange("biases", &biases_, &stop));
  }
  void Compute(OpKernelContext* ctx) override {
    RnnModelShape s;
    OP_REQUIRES_OK(ctx, ModelFromScalars(ctx, attrs_, &s));
    OP_REQUIRES_OK(ctx, CheckCanonicalCounts(s, num_weights_, num_biases_));
    const Tensor& params = ctx->input(params_);
    OP_REQUIRES(
        ctx, params.dims() == 1 && params.NumElements() == s.ParamsSize(),
        InvalidArgument("params must be 1-D with ", s.ParamsSize(),
                        " elements for this model, got shape ", params.shape().DebugString()));
    const T* p = params.flat<T>().data();
    absl::Status status;
    ForEachCanonical(s, [&](bool is_bias, int i, int64_t offset, int64_t rows, int64_t cols) {
      if (!status.ok()) return;
      Tensor* out;
      const TensorShape shape = is_bias ? TensorShape({rows}) : TensorShape({rows, cols});
      status = ctx->allocate_output((is_bias ? biases_ : weights_) + i, shape, &out);
      if (status.ok() && rows * cols > 0)
        std::memcpy(out->flat<T>().data(), p + offset, rows * cols * sizeof(T));
    });
    OP_REQUIRES_OK(ctx, status);
  }

 private:
  FusedRnnAttrs attrs_;
  int num_weights_ = 0, num_biases_ = 0;
  int params_ = 0, weights_ = 0, biases_ = 0;  // input and output indices
};

template <typename T>
class FusedRnnCanonicalToParamsOp : public OpKernel {
 public:
  explicit FusedRnnCanonicalToParamsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
    OP_REQUIRES_OK(ctx, CanonicalCounts(ctx, &num_weights_, &num_biases_));
    int stop;
    OP_REQUIRES_OK(ctx, InputRange("weights", &weights_, &stop));
    OP_REQUIRES_OK(ctx, InputRange("biases", &biases_, &stop));
  }
  void Compute(OpKernelContext* ctx) override {
    RnnModelShape s;
    OP_REQUIRES_OK(ctx, ModelFromScalars(ctx, attrs_, &s));
    OP_REQUIRES_OK(ctx, CheckCanonicalCounts(s, num_weights_, num_biases_));
    // Every size is checked before the output is allocated: the scalars alone may describe a model
    // far larger than memory, which weights of the right sizes could never be.
    absl::Status status;
    ForEachCanonical(s, [&](bool is_bias, int i, int64_t offset, int64_t rows, int64_t cols) {
      if (!status.ok()) return;
      const Tensor& t = ctx->input((is_bias ? biases_ : weights_) + i);
      if (t.NumElements() != rows * cols) {
        status = InvalidArgument(
            is_bias ? "biases[" : "weights[", i, "] has shape ", t.shape().DebugString(),
            " but the model of num_layers ", s.num_layers, ", num_units ", s.num_units,
            ", input_size ", s.input_size, ", num_proj ", s.num_proj, " needs ",
            is_bias ? absl::StrCat("[", rows, "]") : absl::StrCat("[", rows, ", ", cols, "]"),
            " (or as many elements)");
      }
    });
    OP_REQUIRES_OK(ctx, status);
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({s.ParamsSize()}), &out));
    T* p = out->flat<T>().data();
    ForEachCanonical(s, [&](bool is_bias, int i, int64_t offset, int64_t rows, int64_t cols) {
      const Tensor& t = ctx->input((is_bias ? biases_ : weights_) + i);
      if (rows * cols > 0) std::memcpy(p + offset, t.flat<T>().data(), rows * cols * sizeof(T));
    });
  }

 private:
  FusedRnnAttrs attrs_;
  int num_weights_ = 0, num_biases_ = 0;
  int weights_ = 0, biases_ = 0;  // input indices
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_FUSED_RNN_PARAMS_KERNELS_H_
