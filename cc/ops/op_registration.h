// What the op registration files share: registering an op from a builder callback, an input rank
// check whose error names the input, rnn_mode's spec and cell state, and the shape function of the
// one-layer Keras ops (TfRnn>KerasRNN in fused_rnn_ops.cc, TfRnn>KerasRNNDropout in
// keras_rnn_dropout_ops.cc), whose outputs are the same.
#ifndef TF_RNN_OPS_CC_OPS_OP_REGISTRATION_H_
#define TF_RNN_OPS_CC_OPS_OP_REGISTRATION_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/cells/rnn_cells.h"
#include "cc/kernels/fused_rnn_rules.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/registration/registration.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {
namespace tf_rnn_op_registration {

// Registers the op that `build` describes on a fresh builder, as REGISTER_OP does with its chain
// (tensorflow/core/framework/registration/registration.h: a static InitOnStartupMarker made by
// calling the finished builder). REGISTER_OP's chain cannot pass through a helper that adds inputs
// or attrs in its middle, and an op def keeps its attrs in the order they were added.
template <typename Build>
InitOnStartupMarker RegisterOp(const char* name, Build build) {
  register_op::OpDefBuilderWrapper b(name);
  build(b);
  return b();
}

// Like WithRank, with an error that names the input.
inline absl::Status NamedRank(shape_inference::InferenceContext* c, int index, const char* name,
                              int rank, shape_inference::ShapeHandle* out) {
  absl::Status s = c->WithRank(c->input(index), rank, out);
  if (!s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be ", rank, "-D, got shape ", c->DebugString(c->input(index))));
  }
  return s;
}

// rnn_mode's spec: every cell's name, in RnnMode order (the attr's allowed values), lstm the
// default. Every op with an rnn_mode attr takes it from here, so a new cell is a new rnn_mode of
// each without an edit to the registrations.
inline std::string RnnModeAttr() {
  std::string spec = "rnn_mode: {";
  for (int m = 0; m < ::tf_rnn_ops::kNumRnnModes; ++m) {
    absl::StrAppend(&spec, m == 0 ? "" : ", ", "'",
                    ::tf_rnn_ops::RnnModeName(static_cast<::tf_rnn_ops::RnnMode>(m)), "'");
  }
  return absl::StrCat(spec, "} = '", ::tf_rnn_ops::RnnModeName(::tf_rnn_ops::RnnMode::kLstm), "'");
}

// Whether the op's rnn_mode has a cell state c (CellHasCellState): output_c is then input_c's
// shape, else a scalar.
inline absl::Status HasCellState(shape_inference::InferenceContext* c, bool* has_c) {
  std::string name;
  TF_RETURN_IF_ERROR(c->GetAttr("rnn_mode", &name));
  ::tf_rnn_ops::RnnMode mode;
  const std::string error = ::tf_rnn_ops::fused_rnn::ParseRnnMode(name, &mode);
  if (!error.empty()) return absl::InvalidArgumentError(error);
  *has_c = ::tf_rnn_ops::CellHasCellState(mode);
  return absl::OkStatus();
}

// Where a one-layer Keras op has the inputs its outputs' shapes come from.
struct KerasLayerInputs {
  int input;  // [B, T, ·] ([T, B, ·] with time_major)
  const char* input_name;
  int kernel;            // [I, G·H], or -1: the op has none
  int recurrent_kernel;  // [H, G·H]
  int sequence_lengths;  // [B] or [0]
  int gate_dims = 0;     // 1: the input has a leading gates dimension, [G, B, T, H]
};

// Outputs of a one-layer Keras op: output [B, T, H] ([T, B, H] with time_major), output_h as
// input_h (input 1), output_c as input_c (input 2) or a scalar, reserve_space a vector.
inline absl::Status KerasLayerShape(shape_inference::InferenceContext* c,
                                    const KerasLayerInputs& in) {
  shape_inference::ShapeHandle input, input_h, rkernel, unused;
  TF_RETURN_IF_ERROR(NamedRank(c, in.input, in.input_name, 3 + in.gate_dims, &input));
  TF_RETURN_IF_ERROR(NamedRank(c, 1, "input_h", 2, &input_h));
  if (in.kernel >= 0) TF_RETURN_IF_ERROR(NamedRank(c, in.kernel, "kernel", 2, &unused));
  TF_RETURN_IF_ERROR(NamedRank(c, in.recurrent_kernel, "recurrent_kernel", 2, &rkernel));
  TF_RETURN_IF_ERROR(NamedRank(c, in.sequence_lengths, "sequence_lengths", 1, &unused));
  bool has_c = false;
  TF_RETURN_IF_ERROR(HasCellState(c, &has_c));
  bool time_major = false;
  TF_RETURN_IF_ERROR(c->GetAttr("time_major", &time_major));
  const shape_inference::DimensionHandle units = c->Dim(rkernel, 0);
  const shape_inference::DimensionHandle steps = c->Dim(input, in.gate_dims + (time_major ? 0 : 1));
  const shape_inference::DimensionHandle batch = c->Dim(input, in.gate_dims + (time_major ? 1 : 0));
  c->set_output(
      0, time_major ? c->MakeShape({steps, batch, units}) : c->MakeShape({batch, steps, units}));
  c->set_output(1, input_h);
  c->set_output(2, has_c ? c->input(2) : c->Scalar());
  c->set_output(3, c->Vector(c->UnknownDim()));
  return absl::OkStatus();
}

}  // namespace tf_rnn_op_registration
}  // namespace tensorflow

#endif  // TF_RNN_OPS_CC_OPS_OP_REGISTRATION_H_
