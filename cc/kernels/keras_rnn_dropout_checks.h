// The input checks of TfRnn>KerasRNNDropout and TfRnn>KerasRNNDropoutBackprop
// (cc/ops/keras_rnn_dropout_ops.cc), shared by the CPU kernels (keras_rnn_dropout_kernels.cc) and
// the GPU kernels (keras_rnn_dropout_kernels_gpu.cc), so that both refuse the same inputs with the
// same messages; and (namespace keras_rnn) the checks that TfRnn>KerasRNN and its backprop
// (keras_rnn_kernels.cc) have too: recurrent_kernel, the states, sequence_lengths, the forward's
// results.
#ifndef TF_RNN_OPS_CC_KERNELS_KERAS_RNN_DROPOUT_CHECKS_H_
#define TF_RNN_OPS_CC_KERNELS_KERAS_RNN_DROPOUT_CHECKS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/cells/rnn_cells.h"
#include "cc/cells/zoneout.h"
#include "cc/kernels/fused_rnn_attrs.h"
#include "cc/kernels/fused_rnn_rules.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/rnn_params.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace tf_rnn_ops {
namespace keras_rnn {

// recurrent_kernel: [units, G · units], units >= 1.
inline absl::Status CheckRecurrentKernel(const tensorflow::Tensor& rkernel, RnnMode mode) {
  const int64_t G = NumGates(mode);
  if (!(rkernel.dims() == 2 && rkernel.dim_size(0) >= 1 &&
        rkernel.dim_size(1) == G * rkernel.dim_size(0))) {
    return InvalidArgument("recurrent_kernel must be [units, ", G, " * units] (", G,
                           " gates for rnn_mode ", RnnModeName(mode), "), got shape ",
                           rkernel.shape().DebugString());
  }
  return absl::OkStatus();
}

// input_h [B, H]; input_c input_h's shape where the cell has c (else not read: any shape).
inline absl::Status CheckStates(const tensorflow::Tensor& input_h,
                                const tensorflow::Tensor& input_c, RnnMode mode, int64_t B,
                                int64_t H) {
  if (!(input_h.dims() == 2 && input_h.dim_size(0) == B && input_h.dim_size(1) == H)) {
    return InvalidArgument("input_h must be [", B, ", ", H, "] (batch, units), got shape ",
                           input_h.shape().DebugString());
  }
  if (CellHasCellState(mode) && input_c.shape() != input_h.shape()) {
    return InvalidArgument("input_c must have input_h's shape ", input_h.shape().DebugString(),
                           " for lstm, got ", input_c.shape().DebugString());
  }
  return absl::OkStatus();
}

// sequence_lengths' shape: [B], or [0] (every sequence full).
inline absl::Status CheckSequenceLengthsShape(const tensorflow::Tensor& seq_lengths, int64_t B) {
  if (!(seq_lengths.dims() == 1 &&
        (seq_lengths.dim_size(0) == 0 || seq_lengths.dim_size(0) == B))) {
    return InvalidArgument("sequence_lengths must have shape [", B,
                           "] or [0] (every sequence full), got ",
                           seq_lengths.shape().DebugString());
  }
  return absl::OkStatus();
}

// sequence_lengths' values (a shape CheckSequenceLengthsShape took), each in [0, T]; *lengths: its
// host data, or null where it has no elements or every value is T (a mask of all true).
inline absl::Status CheckSequenceLengthValues(const tensorflow::Tensor& seq_lengths, int64_t B,
                                              int64_t T, const int32_t** lengths) {
  *lengths = nullptr;
  if (seq_lengths.dim_size(0) == 0) return absl::OkStatus();
  const int32_t* len = seq_lengths.flat<int32_t>().data();
  for (int64_t b = 0; b < B; ++b) {
    TF_RETURN_IF_ERROR(RuleStatus(fused_rnn::CheckSequenceLength(b, len[b], T)));
  }
  if (!fused_rnn::AllSequencesFull(len, B, T)) *lengths = len;
  return absl::OkStatus();
}

// A backprop op's inputs after the forward's: output, output_h, output_c, their three grads and
// reserve_space, from input `first` on, checked against the forward's shapes (input_h is input 1
// of both ops; output [T, B, H] or [B, T, H]; output_c input_h's shape for lstm, else a scalar)
// and reserve_space against `reserve_elements` (the device's reserve layout).
inline absl::Status CheckForwardResults(tensorflow::OpKernelContext* ctx, int first, RnnMode mode,
                                        bool time_major, int64_t T, int64_t B, int64_t H,
                                        int64_t reserve_elements) {
  using tensorflow::TensorShape;
  const TensorShape h_shape = ctx->input(1).shape();
  const TensorShape y_shape = time_major ? TensorShape({T, B, H}) : TensorShape({B, T, H});
  const TensorShape c_shape = CellHasCellState(mode) ? h_shape : TensorShape({});
  const struct {
    const char* name;
    TensorShape shape;
  } expected[] = {
      {"output", y_shape},          {"output_h", h_shape},          {"output_c", c_shape},
      {"output_backprop", y_shape}, {"output_h_backprop", h_shape}, {"output_c_backprop", c_shape}};
  for (int i = 0; i < 6; ++i) {
    const TensorShape& got = ctx->input(first + i).shape();
    if (got != expected[i].shape) {
      return InvalidArgument(expected[i].name, " must have shape ", expected[i].shape.DebugString(),
                             ", got ", got.DebugString());
    }
  }
  const tensorflow::Tensor& reserve = ctx->input(first + 6);
  if (!(reserve.dims() == 1 && reserve.NumElements() == reserve_elements)) {
    return InvalidArgument("reserve_space must be the forward's ([", reserve_elements,
                           "], run with is_training=True), got shape ",
                           reserve.shape().DebugString());
  }
  return absl::OkStatus();
}

}  // namespace keras_rnn

namespace keras_rnn_dropout {

// The ops' inputs: the forward's, then the backward's others.
enum Input : int {
  kProjected = 0,
  kInputH,
  kInputC,
  kRecurrentKernel,
  kRecurrentBias,
  kSequenceLengths,
  kRecurrentMasks,
  kZoneoutMask,
  kOutput,
  kOutputH,
  kOutputC,
  kOutputBackprop,
  kOutputHBackprop,
  kOutputCBackprop,
  kReserveSpace,
};

// What the checks of inputs 0-7 find: the sizes, the one-layer model, which options are given.
struct CheckedCall {
  int64_t T = 0, B = 0, H = 0, G = 0;
  RnnModelShape model;
  bool has_recurrent_bias = false;
  bool has_input_bias = false;  // recurrent_bias [2, G·H]: its row 0 the input side's bias
  bool has_masks = false;
  ZoneoutKind zoneout = ZoneoutKind::kNone;
  const int32_t* lengths = nullptr;  // host memory; null: every sequence full
};

// Checks the forward op's inputs 0-7 (the backward's first eight) for rnn_mode `mode`.
inline absl::Status CheckInputs(tensorflow::OpKernelContext* ctx, RnnMode mode, bool time_major,
                                bool gate_major, CheckedCall* c) {
  using tensorflow::Tensor;
  using tensorflow::TensorShape;
  const Tensor& gx = ctx->input(kProjected);
  const Tensor& input_h = ctx->input(kInputH);
  const Tensor& input_c = ctx->input(kInputC);
  const Tensor& rkernel = ctx->input(kRecurrentKernel);
  const Tensor& rbias = ctx->input(kRecurrentBias);
  const Tensor& seq_lengths = ctx->input(kSequenceLengths);
  const Tensor& masks = ctx->input(kRecurrentMasks);
  const Tensor& zoneout = ctx->input(kZoneoutMask);
  const bool tm = time_major;
  const int64_t G = NumGates(mode);
  const char* name = RnnModeName(mode);
  TF_RETURN_IF_ERROR(keras_rnn::CheckRecurrentKernel(rkernel, mode));
  const int64_t H = rkernel.dim_size(0), gh = G * H;
  if (gate_major) {
    if (!(gx.dims() == 4 && gx.dim_size(0) == G && gx.dim_size(3) == H)) {
      return InvalidArgument("projected_input must be 4-D [", G, ", ", tm ? "T, B, " : "B, T, ", H,
                             "] (gates, ", tm ? "steps, batch" : "batch, steps",
                             ", units) with gate_major, got shape ", gx.shape().DebugString());
    }
  } else if (!(gx.dims() == 3 && gx.dim_size(2) == gh)) {
    return InvalidArgument("projected_input must be 3-D [", tm ? "T, B, " : "B, T, ", gh, "] (", G,
                           " gates times units), got shape ", gx.shape().DebugString());
  }
  const int lead = gate_major ? 1 : 0;  // the steps and batch dimensions follow the gates'
  const int64_t T = gx.dim_size(lead + (tm ? 0 : 1)), B = gx.dim_size(lead + (tm ? 1 : 0));
  TF_RETURN_IF_ERROR(keras_rnn::CheckStates(input_h, input_c, mode, B, H));
  if (!(rbias.NumElements() == 0 || rbias.shape() == TensorShape({gh}) ||
        rbias.shape() == TensorShape({2, gh}))) {
    return InvalidArgument("recurrent_bias must have no elements, shape [", gh, "] (", G,
                           " gates times units) or [2, ", gh,
                           "] (the input side's bias, then the recurrent side's) for rnn_mode ",
                           name, ", got shape ", rbias.shape().DebugString());
  }
  if (!(masks.NumElements() == 0 || masks.shape() == TensorShape({G, B, H}))) {
    return InvalidArgument("recurrent_masks must be [", G, ", ", B, ", ", H,
                           "] (gates, batch, units) or have no elements (no recurrent dropout), "
                           "got shape ",
                           masks.shape().DebugString());
  }
  if (!(zoneout.NumElements() == 0 || zoneout.dims() == 0 ||
        zoneout.shape() == TensorShape({T, B, H}))) {
    return InvalidArgument("zoneout_mask must be [", T, ", ", B, ", ", H,
                           "] (steps, batch, units; time-major in both layouts), a scalar (the "
                           "keep weight 1 - p of inference) or have no elements (no zoneout), got "
                           "shape ",
                           zoneout.shape().DebugString());
  }
  TF_RETURN_IF_ERROR(keras_rnn::CheckSequenceLengthsShape(seq_lengths, B));
  fused_rnn::ModelSpec spec;
  spec.mode = mode;
  spec.num_units = H;
  spec.input_size = 1;  // the op has no W: the driver reads the projected input
  if (const std::string error = fused_rnn::MakeModelShape(spec, &c->model); !error.empty()) {
    return InvalidArgument(error, " (num_units is recurrent_kernel's first dimension)");
  }
  if (!fused_rnn::BuffersFit(c->model, T, B)) {
    return InvalidArgument(fused_rnn::BuffersTooLarge(
        absl::StrCat("projected_input (", gx.shape().DebugString(), ")")));
  }
  TF_RETURN_IF_ERROR(keras_rnn::CheckSequenceLengthValues(seq_lengths, B, T, &c->lengths));
  c->T = T;
  c->B = B;
  c->H = H;
  c->G = G;
  c->has_recurrent_bias = rbias.NumElements() > 0;
  c->has_input_bias = rbias.dims() == 2 && rbias.NumElements() > 0;
  c->has_masks = masks.NumElements() > 0;
  c->zoneout = zoneout.NumElements() == 0 ? ZoneoutKind::kNone
               : zoneout.dims() == 0      ? ZoneoutKind::kScalar
                                          : ZoneoutKind::kMask;
  return absl::OkStatus();
}

// Checks the backward op's other inputs (8-14) against c, CheckInputs' findings: the forward's
// outputs and their grads in the forward's shapes, and reserve_space of `reserve_elements` (the
// device's reserve layout).
inline absl::Status CheckBackpropInputs(tensorflow::OpKernelContext* ctx, RnnMode mode,
                                        bool time_major, const CheckedCall& c,
                                        int64_t reserve_elements) {
  return keras_rnn::CheckForwardResults(ctx, kOutput, mode, time_major, c.T, c.B, c.H,
                                        reserve_elements);
}

}  // namespace keras_rnn_dropout
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_KERAS_RNN_DROPOUT_CHECKS_H_
