// Op registrations of TfRnn>KerasRNNDropout and its backward (CPU kernels:
// cc/kernels/keras_rnn_dropout_kernels.cc; GPU: cc/kernels/keras_rnn_dropout_kernels_gpu.cc over
// cc/cuda/keras_rnn_dropout_cuda.h). The recurrence of one Keras layer with recurrent dropout and
// zoneout; the layer computes the input side of the gates itself (tf_rnn_ops/layers/rnn.py).
#include <string>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/registration/registration.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {
namespace {

using register_op::OpDefBuilderWrapper;
using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

absl::Status Rank(InferenceContext* c, int index, const char* name, int rank, ShapeHandle* out) {
  absl::Status s = c->WithRank(c->input(index), rank, out);
  if (!s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be ", rank, "-D, got shape ", c->DebugString(c->input(index))));
  }
  return s;
}

// The forward op's inputs, which the backward op takes first too.
OpDefBuilderWrapper& ForwardInputs(OpDefBuilderWrapper& b) {
  return b.Input("projected_input: T")
      .Input("input_h: T")
      .Input("input_c: T")
      .Input("recurrent_kernel: T")
      .Input("recurrent_bias: T")
      .Input("sequence_lengths: int32")
      .Input("recurrent_masks: T")
      .Input("zoneout_mask: T");
}

// Registers the op that `build` describes on a fresh builder, as REGISTER_OP does with its chain
// (a static InitOnStartupMarker made by calling the finished builder; REGISTER_OP's chain cannot
// pass through ForwardInputs). As fused_rnn_ops.cc's RegisterOp.
template <typename Build>
InitOnStartupMarker RegisterOp(const char* name, Build build) {
  OpDefBuilderWrapper b(name);
  build(b);
  return b();
}

}  // namespace

const InitOnStartupMarker kForward TF_ATTRIBUTE_UNUSED =
    RegisterOp("TfRnn>KerasRNNDropout", [](auto& b) {
      ForwardInputs(b)
          .Output("output: T")
          .Output("output_h: T")
          .Output("output_c: T")
          .Output("reserve_space: T")
          .Attr("T: {float, double}")
          .Attr("rnn_mode: {'rnn_relu', 'rnn_tanh', 'lstm', 'gru', 'gru_reset_before'} = 'lstm'")
          .Attr("is_training: bool = true")
          .Attr("time_major: bool = false")
          .SetShapeFn([](InferenceContext* c) {
            ShapeHandle input, input_h, rkernel, unused;
            TF_RETURN_IF_ERROR(Rank(c, 0, "projected_input", 3, &input));
            TF_RETURN_IF_ERROR(Rank(c, 1, "input_h", 2, &input_h));
            TF_RETURN_IF_ERROR(Rank(c, 3, "recurrent_kernel", 2, &rkernel));
            TF_RETURN_IF_ERROR(Rank(c, 5, "sequence_lengths", 1, &unused));
            std::string rnn_mode;
            TF_RETURN_IF_ERROR(c->GetAttr("rnn_mode", &rnn_mode));
            bool time_major = false;
            TF_RETURN_IF_ERROR(c->GetAttr("time_major", &time_major));
            const DimensionHandle units = c->Dim(rkernel, 0);
            const DimensionHandle steps = c->Dim(input, time_major ? 0 : 1);
            const DimensionHandle batch = c->Dim(input, time_major ? 1 : 0);
            c->set_output(0, time_major ? c->MakeShape({steps, batch, units})
                                        : c->MakeShape({batch, steps, units}));
            c->set_output(1, input_h);
            c->set_output(2, rnn_mode == "lstm" ? c->input(2) : c->Scalar());
            c->set_output(3, c->Vector(c->UnknownDim()));
            return absl::OkStatus();
          })
          .Doc(R"doc(
The recurrence of one unidirectional Keras RNN layer with recurrent dropout and zoneout.
projected_input [B, T, G*H] ([T, B, G*H] with time_major): the input side of every gate, bias
included, in Keras' gate column order (GRU z, r, h; LSTM i, f, c, o). recurrent_kernel [H, G*H] as
Keras keeps it; recurrent_bias: GRU (reset_after=True) Keras' recurrent bias row [G*H], else empty.
recurrent_masks [G, B, H]: gate g's recurrent product is
(h_prev * masks[g]) @ recurrent_kernel[:, g]; no elements: no recurrent dropout (the plain
products). zoneout_mask: zoneout on h after each step, h = h_prev + m * (h_new - h_prev) (h is
the output and the carried state; LSTM's c is not zoned): [T, B, H] time-major in both layouts
(training: m in {0, 1}, 1 with probability 1 - rate; values not checked), a scalar k (inference:
k = 1 - rate for every unit), or no elements (no zoneout).
)doc");
    });

static InitOnStartupMarker const kBackward =
    RegisterOp("TfRnn>KerasRNNDropoutBackprop", [](auto& b) {
      ForwardInputs(b)
          .Input("output: T")
          .Input("output_h: T")
          .Input("output_c: T")
          .Input("output_backprop: T")
          .Input("output_h_backprop: T")
          .Input("output_c_backprop: T")
          .Input("reserve_space: T")
          .Output("projected_input_backprop: T")
          .Output("input_h_backprop: T")
          .Output("input_c_backprop: T")
          .Output("recurrent_kernel_backprop: T")
          .Output("recurrent_bias_backprop: T")
          .Attr("T: {float, double}")
          .Attr("rnn_mode: {'rnn_relu', 'rnn_tanh', 'lstm', 'gru', 'gru_reset_before'} = 'lstm'")
          .Attr("time_major: bool = false")
          .SetShapeFn([](InferenceContext* c) {
            for (int i = 0; i < 5; ++i) c->set_output(i, c->input(i == 0 ? 0 : i));
            return absl::OkStatus();
          })
          .Doc(R"doc(
The gradient of TfRnn>KerasRNNDropout: the grads of projected_input, input_h, input_c,
recurrent_kernel and recurrent_bias in their inputs' layouts.
)doc");
    });

}  // namespace tensorflow
