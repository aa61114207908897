// Op registrations of TfRnn>KerasRNNDropout and its backward (CPU kernels:
// cc/kernels/keras_rnn_dropout_kernels.cc; GPU: cc/kernels/keras_rnn_dropout_kernels_gpu.cc over
// cc/cuda/keras_rnn_dropout_cuda.h). The recurrence of one Keras layer with recurrent dropout and
// zoneout; the layer computes the input side of the gates itself (tf_rnn_ops/layers/rnn.py).
#include "cc/ops/op_registration.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/registration/registration.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {
namespace {

using register_op::OpDefBuilderWrapper;
using shape_inference::InferenceContext;
using tf_rnn_op_registration::KerasLayerShape;
using tf_rnn_op_registration::RegisterOp;
using tf_rnn_op_registration::RnnModeAttr;

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

}  // namespace

const InitOnStartupMarker kForward TF_ATTRIBUTE_UNUSED =
    RegisterOp("TfRnn>KerasRNNDropout", [](auto& b) {
      ForwardInputs(b)
          .Output("output: T")
          .Output("output_h: T")
          .Output("output_c: T")
          .Output("reserve_space: T")
          .Attr("T: {float, double}")
          .Attr(RnnModeAttr())
          .Attr("is_training: bool = true")
          .Attr("time_major: bool = false")
          .Attr("gate_major: bool = false")
          .SetShapeFn([](InferenceContext* c) {
            bool gate_major = false;
            TF_RETURN_IF_ERROR(c->GetAttr("gate_major", &gate_major));
            return KerasLayerShape(c,
                                   {0, "projected_input", /*kernel=*/-1, 3, 5, gate_major ? 1 : 0});
          })
          .Doc(R"doc(
The recurrence of one unidirectional Keras RNN layer with recurrent dropout and zoneout.
projected_input [B, T, G*H] ([T, B, G*H] with time_major): the input side of every gate, bias
included, in Keras' gate column order (GRU z, r, h; LSTM i, f, c, o). recurrent_kernel [H, G*H] as
Keras keeps it; recurrent_bias [G*H] (Keras' gate order) added to every gate's recurrent side
(GRU reset_after=True: Keras' recurrent bias row, inside the reset gate's product; the other modes:
the same as a bias in projected_input, whose grad this op then sums), or [2, G*H]: a bias added to
projected_input (Keras GRU's input bias row), then that recurrent bias; or empty.
recurrent_masks [G, B, H]: gate g's recurrent product is
(h_prev * masks[g]) @ recurrent_kernel[:, g]; no elements: no recurrent dropout (the plain
products). gate_major: projected_input is [G, B, T, H] ([G, T, B, H] with time_major) instead,
gate g's input side (Keras' gate order) in block g; its grad likewise. zoneout_mask: zoneout on h
after each step, h = h_prev + m * (h_new - h_prev) (h is
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
          .Attr(RnnModeAttr())
          .Attr("time_major: bool = false")
          .Attr("gate_major: bool = false")
          .Attr("skip_state_backprop: bool = false")
          .SetShapeFn([](InferenceContext* c) {
            for (int i = 0; i < 5; ++i) c->set_output(i, c->input(i == 0 ? 0 : i));
            return absl::OkStatus();
          })
          .Doc(R"doc(
The gradient of TfRnn>KerasRNNDropout: the grads of projected_input, input_h, input_c,
recurrent_kernel and recurrent_bias in their inputs' layouts. skip_state_backprop: as
TfRnn>KerasRNNBackprop's (input_h_backprop and input_c_backprop zeros).
)doc");
    });

}  // namespace tensorflow
