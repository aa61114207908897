// What every OpKernel of the fused RNN family reads and checks, on either device: the attributes
// (FusedRnnAttrs), where each tensor of the op version at hand is (FusedRnnIO), the input, input_h,
// input_c, params and sequence_lengths checks (FusedRnnInputs) and the outputs every forward and
// backprop allocates. The rules themselves are fused_rnn_rules.h's; this header only reads them out
// of TensorFlow's tensors and attributes, and includes neither the CPU driver nor any CUDA header.
#ifndef TF_RNN_OPS_CC_KERNELS_FUSED_RNN_ATTRS_H_
#define TF_RNN_OPS_CC_KERNELS_FUSED_RNN_ATTRS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/kernels/fused_rnn_rules.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/rnn_params.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace tf_rnn_ops {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

// A rules message ("" for valid) as a status.
inline absl::Status RuleStatus(const std::string& message) {
  return message.empty() ? absl::OkStatus() : absl::InvalidArgumentError(message);
}

// Attributes shared by the whole family; absent ones (in older op versions) take their defaults.
struct FusedRnnAttrs {
  RnnMode mode = RnnMode::kLstm;
  fused_rnn::InputMode input_mode = fused_rnn::InputMode::kLinearInput;
  int num_dirs = 1;
  float dropout = 0;
  int64_t seed = 0, seed2 = 0;
  int num_proj = 0;
  bool time_major = true;
  bool is_training = true;

  absl::Status Parse(OpKernelConstruction* ctx) {
    std::string s;
    TF_RETURN_IF_ERROR(ctx->GetAttr("rnn_mode", &s));
    TF_RETURN_IF_ERROR(RuleStatus(fused_rnn::ParseRnnMode(s, &mode)));
    TF_RETURN_IF_ERROR(ctx->GetAttr("input_mode", &s));
    TF_RETURN_IF_ERROR(RuleStatus(fused_rnn::ParseInputMode(s, &input_mode)));
    TF_RETURN_IF_ERROR(ctx->GetAttr("direction", &s));
    TF_RETURN_IF_ERROR(RuleStatus(fused_rnn::ParseDirection(s, &num_dirs)));
    if (ctx->HasAttr("dropout")) TF_RETURN_IF_ERROR(ctx->GetAttr("dropout", &dropout));
    TF_RETURN_IF_ERROR(RuleStatus(fused_rnn::CheckDropout(dropout)));
    if (ctx->HasAttr("seed")) TF_RETURN_IF_ERROR(ctx->GetAttr("seed", &seed));
    if (ctx->HasAttr("seed2")) TF_RETURN_IF_ERROR(ctx->GetAttr("seed2", &seed2));
    if (ctx->HasAttr("num_proj")) TF_RETURN_IF_ERROR(ctx->GetAttr("num_proj", &num_proj));
    TF_RETURN_IF_ERROR(RuleStatus(fused_rnn::CheckNumProj(mode, num_proj)));
    if (ctx->HasAttr("time_major")) TF_RETURN_IF_ERROR(ctx->GetAttr("time_major", &time_major));
    if (ctx->HasAttr("is_training")) TF_RETURN_IF_ERROR(ctx->GetAttr("is_training", &is_training));
    return absl::OkStatus();
  }

  // The model shape from the sizes known at run time (fused_rnn::MakeModelShape).
  absl::Status Model(int64_t num_layers, int64_t num_units, int64_t input_size,
                     RnnModelShape* shape) const {
    fused_rnn::ModelSpec m;
    m.mode = mode;
    m.input_mode = input_mode;
    m.num_dirs = num_dirs;
    m.num_layers = num_layers;
    m.num_units = num_units;
    m.input_size = input_size;
    m.num_proj = num_proj;
    return RuleStatus(fused_rnn::MakeModelShape(m, shape));
  }

  // Whether a training call draws dropout masks (fused_rnn::UsesDropout).
  bool UsesDropout(const RnnModelShape& s) const {
    return fused_rnn::UsesDropout(is_training, dropout, s.num_layers);
  }

  const char* RnnModeName() const { return tf_rnn_ops::RnnModeName(mode); }
};

// Where the tensors of the op version a kernel serves are, read by name from its definition:
// TensorFlow's CudnnRNN (V1), V2, V3 and our TfRnn> ops differ in whether sequence_lengths (an
// input) and host_reserved (an output of the forward, an input of the backprop) exist. -1: absent.
struct FusedRnnIO {
  int input = -1, input_h = -1, input_c = -1, params = -1, sequence_lengths = -1;
  // The backprop's forward results, their grads and the reserve_space.
  int output = -1, output_h = -1, output_c = -1;
  int output_backprop = -1, output_h_backprop = -1, output_c_backprop = -1, reserve_space = -1;
  int host_reserved = -1;  // the forward's output

  absl::Status Init(const OpKernel& kernel, bool backprop) {
    TF_RETURN_IF_ERROR(Input(kernel, "input", &input));
    TF_RETURN_IF_ERROR(Input(kernel, "input_h", &input_h));
    TF_RETURN_IF_ERROR(Input(kernel, "input_c", &input_c));
    TF_RETURN_IF_ERROR(Input(kernel, "params", &params));
    sequence_lengths = Optional(kernel.InputRange("sequence_lengths", &start_, &stop_));
    if (backprop) {
      TF_RETURN_IF_ERROR(Input(kernel, "output", &output));
      TF_RETURN_IF_ERROR(Input(kernel, "output_h", &output_h));
      TF_RETURN_IF_ERROR(Input(kernel, "output_c", &output_c));
      TF_RETURN_IF_ERROR(Input(kernel, "output_backprop", &output_backprop));
      TF_RETURN_IF_ERROR(Input(kernel, "output_h_backprop", &output_h_backprop));
      TF_RETURN_IF_ERROR(Input(kernel, "output_c_backprop", &output_c_backprop));
      TF_RETURN_IF_ERROR(Input(kernel, "reserve_space", &reserve_space));
    } else {
      host_reserved = Optional(kernel.OutputRange("host_reserved", &start_, &stop_));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Input(const OpKernel& kernel, const char* name, int* index) {
    TF_RETURN_IF_ERROR(kernel.InputRange(name, &start_, &stop_));
    *index = start_;
    return absl::OkStatus();
  }
  int Optional(const absl::Status& found) const { return found.ok() ? start_ : -1; }

  int start_ = 0, stop_ = 0;
};

// Everything the forward and backprop kernels check about input, input_h, input_c, params and
// sequence_lengths; fills the model shape and sizes.
struct FusedRnnInputs {
  RnnModelShape shape;
  int64_t seq_len = 0, batch = 0;
  std::vector<int32_t> lengths;  // empty: every row runs all steps

  // The op's own tensors, where `io` says they are.
  absl::Status Check(OpKernelContext* ctx, const FusedRnnAttrs& attrs, const FusedRnnIO& io) {
    return Check(attrs, ctx->input(io.input), ctx->input(io.input_h), ctx->input(io.input_c),
                 ctx->input(io.params),
                 io.sequence_lengths >= 0 ? &ctx->input(io.sequence_lengths) : nullptr);
  }

  absl::Status Check(const FusedRnnAttrs& attrs, const Tensor& input, const Tensor& input_h,
                     const Tensor& input_c, const Tensor& params, const Tensor* sequence_lengths) {
    const bool tm = attrs.time_major;
    if (input.dims() != 3) {
      return InvalidArgument("input must be 3-D [", tm ? "T, B, I" : "B, T, I", "], got shape ",
                             input.shape().DebugString());
    }
    if (input_h.dims() != 3) {
      return InvalidArgument("input_h must be 3-D, got shape ", input_h.shape().DebugString());
    }
    if (params.dims() != 1) {
      return InvalidArgument("params must be 1-D, got shape ", params.shape().DebugString());
    }
    seq_len = input.dim_size(tm ? 0 : 1);
    batch = input.dim_size(tm ? 1 : 0);
    const int64_t input_size = input.dim_size(2);
    const int64_t h_layers = input_h.dim_size(tm ? 0 : 1), h_batch = input_h.dim_size(tm ? 1 : 0);
    const int64_t h_out = input_h.dim_size(2);
    if (h_batch != batch) {
      return InvalidArgument("input_h batch size (", h_batch, ") must equal input's (", batch, ")");
    }
    if (h_layers % attrs.num_dirs != 0 || h_layers == 0) {
      return InvalidArgument("input_h's num_layers * num_dirs dimension (", h_layers,
                             ") must be a positive multiple of num_dirs (", attrs.num_dirs, ")");
    }
    const bool lstm = CellHasCellState(attrs.mode);
    int64_t num_units = h_out;
    if (lstm) {
      if (!(input_c.dims() == 3 && input_c.dim_size(tm ? 0 : 1) == h_layers &&
            input_c.dim_size(tm ? 1 : 0) == batch)) {
        return InvalidArgument(
            "input_c must have shape ",
            tm ? "[num_layers * num_dirs, B, num_units]" : "[B, num_layers * num_dirs, num_units]",
            " matching input_h ", input_h.shape().DebugString(), ", got ",
            input_c.shape().DebugString());
      }
      num_units = input_c.dim_size(2);
      if (attrs.num_proj > 0 && h_out != attrs.num_proj) {
        return InvalidArgument("input_h's last dimension (", h_out, ") must equal num_proj (",
                               attrs.num_proj, ")");
      }
      if (attrs.num_proj == 0 && num_units != h_out) {
        return InvalidArgument("input_c's last dimension (", num_units, ") must equal input_h's (",
                               h_out, ")");
      }
    }
    if (const absl::Status st =
            attrs.Model(h_layers / attrs.num_dirs, num_units, input_size, &shape);
        !st.ok()) {
      // The model's sizes are not inputs of these ops: say which tensor dimension each came from.
      return absl::Status(
          st.code(), absl::StrCat(st.message(), " (num_layers is input_h's dimension ", h_layers,
                                  " / num_dirs, num_units the last dimension of ",
                                  lstm ? "input_c" : "input_h", ", input_size that of input)"));
    }
    if (params.NumElements() != shape.ParamsSize()) {
      return InvalidArgument("params has ", params.NumElements(), " elements, but the model needs ",
                             shape.ParamsSize(), " (num_layers ", shape.num_layers,
                             " from input_h, num_units ", num_units, ", input_size ", input_size,
                             " from input, num_proj ", shape.num_proj,
                             "; see cudnn_rnn_params_size)");
    }
    // Outputs, reserve_space and scratch buffers: a batch and length for which they could exceed
    // 2^62 elements (and overflow the int64 size arithmetic) are refused.
    if (!fused_rnn::BuffersFit(shape, seq_len, batch)) {
      return InvalidArgument(fused_rnn::BuffersTooLarge(
          absl::StrCat("input (", input.shape().DebugString(), ") and input_h (",
                       input_h.shape().DebugString(), ")")));
    }
    lengths.clear();
    if (sequence_lengths != nullptr) {
      if (sequence_lengths->dims() != 1 || sequence_lengths->dim_size(0) != batch) {
        return InvalidArgument("sequence_lengths must have shape [", batch, "], got ",
                               sequence_lengths->shape().DebugString());
      }
      const auto len = sequence_lengths->flat<int32_t>();
      lengths.assign(len.data(), len.data() + batch);
      for (int64_t b = 0; b < batch; ++b) {
        TF_RETURN_IF_ERROR(RuleStatus(fused_rnn::CheckSequenceLength(b, lengths[b], seq_len)));
      }
      // cudnn_rnn passes T for each row where it was given none.
      if (fused_rnn::AllSequencesFull(lengths.data(), batch, seq_len)) lengths.clear();
    }
    return absl::OkStatus();
  }
  const int32_t* lengths_or_null() const { return lengths.empty() ? nullptr : lengths.data(); }

  // The shape of `output` (after Check).
  TensorShape OutputShape(const FusedRnnAttrs& attrs) const {
    return attrs.time_major ? TensorShape({seq_len, batch, shape.output_size()})
                            : TensorShape({batch, seq_len, shape.output_size()});
  }

  // The backprop's forward results and their grads (after Check): output, output_h, output_c,
  // output_backprop, output_h_backprop, output_c_backprop. output_c and its grad only for lstm.
  absl::Status CheckBackprop(OpKernelContext* ctx, const FusedRnnAttrs& attrs,
                             const FusedRnnIO& io) const {
    const Tensor& input_h = ctx->input(io.input_h);
    const Tensor& input_c = ctx->input(io.input_c);
    const Tensor& output = ctx->input(io.output);
    const Tensor& output_h = ctx->input(io.output_h);
    const Tensor& output_c = ctx->input(io.output_c);
    const Tensor& output_backprop = ctx->input(io.output_backprop);
    const Tensor& output_h_backprop = ctx->input(io.output_h_backprop);
    const Tensor& output_c_backprop = ctx->input(io.output_c_backprop);
    const TensorShape out_shape = OutputShape(attrs);
    if (output.shape() != out_shape) {
      return InvalidArgument("output must have shape ", out_shape.DebugString(),
                             " (from input and input_h), got ", output.shape().DebugString());
    }
    if (output_h.shape() != input_h.shape()) {
      return InvalidArgument("output_h must have input_h's shape ", input_h.shape().DebugString(),
                             ", got ", output_h.shape().DebugString());
    }
    if (output_backprop.shape() != out_shape) {
      return InvalidArgument("output_backprop must have the output's shape ",
                             out_shape.DebugString(), ", got ",
                             output_backprop.shape().DebugString());
    }
    if (output_h_backprop.shape() != input_h.shape()) {
      return InvalidArgument("output_h_backprop must have input_h's shape ",
                             input_h.shape().DebugString(), ", got ",
                             output_h_backprop.shape().DebugString());
    }
    if (CellHasCellState(shape.mode)) {
      if (output_c.shape() != input_c.shape()) {
        return InvalidArgument("output_c must have input_c's shape ", input_c.shape().DebugString(),
                               ", got ", output_c.shape().DebugString());
      }
      if (output_c_backprop.shape() != input_c.shape()) {
        return InvalidArgument("output_c_backprop must have input_c's shape ",
                               input_c.shape().DebugString(), ", got ",
                               output_c_backprop.shape().DebugString());
      }
    }
    return absl::OkStatus();
  }
};

// The forward's outputs, allocated alike on both devices: output, output_h, output_c (a scalar
// unless lstm; its value is the caller's to set), reserve_space of `reserve_elements`, and
// host_reserved (empty) where the op version has it.
struct FusedRnnForwardOutputs {
  Tensor *output = nullptr, *output_h = nullptr, *output_c = nullptr, *reserve = nullptr;

  absl::Status Allocate(OpKernelContext* ctx, const FusedRnnAttrs& attrs, const FusedRnnIO& io,
                        const FusedRnnInputs& in, int64_t reserve_elements) {
    const bool lstm = CellHasCellState(in.shape.mode);
    TF_RETURN_IF_ERROR(ctx->allocate_output(0, in.OutputShape(attrs), &output));
    TF_RETURN_IF_ERROR(ctx->allocate_output(1, ctx->input(io.input_h).shape(), &output_h));
    TF_RETURN_IF_ERROR(ctx->allocate_output(
        2, lstm ? ctx->input(io.input_c).shape() : TensorShape({}), &output_c));
    TF_RETURN_IF_ERROR(ctx->allocate_output(3, TensorShape({reserve_elements}), &reserve));
    if (io.host_reserved >= 0) {
      Tensor* host_reserved;
      TF_RETURN_IF_ERROR(ctx->allocate_output(io.host_reserved, TensorShape({0}), &host_reserved));
    }
    return absl::OkStatus();
  }
};

// The backprop's outputs, the grads of input, input_h, input_c and params, each of its input's
// shape; first checks that the reserve_space is the one a forward of this model gives
// (`reserve_elements`).
struct FusedRnnBackwardOutputs {
  Tensor *dx = nullptr, *dh0 = nullptr, *dc0 = nullptr, *dparams = nullptr;

  absl::Status Allocate(OpKernelContext* ctx, const FusedRnnIO& io, int64_t reserve_elements) {
    const Tensor& reserve = ctx->input(io.reserve_space);
    if (reserve.dims() != 1 || reserve.NumElements() != reserve_elements) {
      return InvalidArgument(
          fused_rnn::ReserveSpaceMismatch(reserve.shape().DebugString(), reserve_elements));
    }
    TF_RETURN_IF_ERROR(ctx->allocate_output(0, ctx->input(io.input).shape(), &dx));
    TF_RETURN_IF_ERROR(ctx->allocate_output(1, ctx->input(io.input_h).shape(), &dh0));
    TF_RETURN_IF_ERROR(ctx->allocate_output(2, ctx->input(io.input_c).shape(), &dc0));
    TF_RETURN_IF_ERROR(ctx->allocate_output(3, ctx->input(io.params).shape(), &dparams));
    return absl::OkStatus();
  }
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_FUSED_RNN_ATTRS_H_
