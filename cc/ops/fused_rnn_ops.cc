// Op registrations of the cuDNN-style fused RNN family (README's API section; docs/MATH.md, "Fused
// RNN cells"), under the TfRnn> namespace so that TensorFlow's own CudnnRNN* ops stay untouched.
// Inputs, outputs and attributes are those of CudnnRNNV3, CudnnRNNBackpropV3, CudnnRNNParamsSize,
// CudnnRNNParamsToCanonicalV2 and CudnnRNNCanonicalToParamsV2.
//
// The attrs the ops share are added by one helper, ModelAttrs: rnn_mode's spellings are the cells'
// names (cc/cells/rnn_cells.h), so a new cell is a new rnn_mode of every op without an edit here.
// tests/packaging/op_defs.json pins the resulting signatures.
#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "cc/cells/rnn_cells.h"
#include "cc/kernels/fused_rnn_rules.h"
#include "cc/ops/op_registration.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/registration/registration.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {
namespace {

using register_op::OpDefBuilderWrapper;
using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;
using tf_rnn_op_registration::HasCellState;
using tf_rnn_op_registration::KerasLayerShape;
using tf_rnn_op_registration::NamedRank;
using tf_rnn_op_registration::RegisterOp;
using tf_rnn_op_registration::RnnModeAttr;

// Which of the family's attrs an op has: TfRnn>KerasRNN (one unidirectional layer from Keras
// weights) only rnn_mode; the cuDNN-style ops the whole model description of CudnnRNNV3.
enum class Attrs { kRnnMode, kCudnnModel };

// Adds the family's shared attrs, in this order: rnn_mode, then (kCudnnModel) input_mode,
// direction, dropout, seed, seed2, num_proj. Each op calls it after its own leading attrs.
OpDefBuilderWrapper& ModelAttrs(OpDefBuilderWrapper& b, Attrs attrs) {
  b.Attr(RnnModeAttr());
  if (attrs == Attrs::kRnnMode) return b;
  return b.Attr("input_mode: {'linear_input', 'skip_input', 'auto_select'} = 'linear_input'")
      .Attr("direction: {'unidirectional', 'bidirectional'} = 'unidirectional'")
      .Attr("dropout: float = 0.0")
      .Attr("seed: int = 0")
      .Attr("seed2: int = 0")
      .Attr("num_proj: int = 0");
}

// num_layers, num_units, input_size (inputs 0-2 of the params ops): scalars.
absl::Status ModelScalarsShape(InferenceContext* c) {
  static constexpr const char* kNames[] = {"num_layers", "num_units", "input_size"};
  ShapeHandle unused;
  for (int i = 0; i < 3; ++i) TF_RETURN_IF_ERROR(NamedRank(c, i, kNames[i], 0, &unused));
  return absl::OkStatus();
}

// Output shapes of the forward op from input, input_h and input_c (docs/MATH.md, "Params layout").
absl::Status ForwardShape(InferenceContext* c) {
  ShapeHandle input, input_h, params;
  TF_RETURN_IF_ERROR(NamedRank(c, 0, "input", 3, &input));
  TF_RETURN_IF_ERROR(NamedRank(c, 1, "input_h", 3, &input_h));
  TF_RETURN_IF_ERROR(NamedRank(c, 3, "params", 1, &params));
  std::string direction;
  TF_RETURN_IF_ERROR(c->GetAttr("direction", &direction));
  bool has_c = false;
  TF_RETURN_IF_ERROR(HasCellState(c, &has_c));
  bool time_major = true;
  if (!c->GetAttr("time_major", &time_major).ok()) time_major = true;
  const int dir_count = direction == "bidirectional" ? 2 : 1;
  // The output's last dimension is dir_count x input_h's; refused here when that overflows
  // (TensorFlow's Multiply would name neither input_h nor direction).
  const DimensionHandle h_out = c->Dim(input_h, 2);
  if (c->ValueKnown(h_out) && c->Value(h_out) > std::numeric_limits<int64_t>::max() / dir_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input_h's last dimension (", c->Value(h_out), ") times 2 directions (direction ",
        direction, ") overflows int64: the output would have no valid shape"));
  }
  DimensionHandle output_size;
  TF_RETURN_IF_ERROR(c->Multiply(h_out, dir_count, &output_size));
  const DimensionHandle steps = c->Dim(input, time_major ? 0 : 1);
  const DimensionHandle batch = c->Dim(input, time_major ? 1 : 0);
  c->set_output(0, time_major ? c->MakeShape({steps, batch, output_size})
                              : c->MakeShape({batch, steps, output_size}));
  c->set_output(1, input_h);
  c->set_output(2, has_c ? c->input(2) : c->Scalar());
  c->set_output(3, c->Vector(c->UnknownDim()));
  if (c->num_outputs() > 4) c->set_output(4, c->Vector(c->UnknownDim()));
  return absl::OkStatus();
}

const InitOnStartupMarker kCudnnRnn TF_ATTRIBUTE_UNUSED =
    RegisterOp("TfRnn>CudnnRNN", [](OpDefBuilderWrapper& b) {
      b.Input("input: T")
          .Input("input_h: T")
          .Input("input_c: T")
          .Input("params: T")
          .Input("sequence_lengths: int32")
          .SetIsStateful()
          .Output("output: T")
          .Output("output_h: T")
          .Output("output_c: T")
          .Output("reserve_space: T")
          .Output("host_reserved: int8")
          .Attr("T: {half, bfloat16, float, double}");
      ModelAttrs(b, Attrs::kCudnnModel)
          .Attr("is_training: bool = true")
          .Attr("time_major: bool = true")
          .SetShapeFn(ForwardShape)
          .Doc(R"doc(
A multi-layer RNN (rnn_relu, rnn_tanh, lstm or gru) over a whole sequence, with cuDNN's semantics and
params layout; the interface of CudnnRNNV3, on CPU as well.
)doc");
    });

const InitOnStartupMarker kKerasRnn TF_ATTRIBUTE_UNUSED =
    RegisterOp("TfRnn>KerasRNN", [](OpDefBuilderWrapper& b) {
      b.Input("input: T")
          .Input("input_h: T")
          .Input("input_c: T")
          .Input("kernel: T")
          .Input("recurrent_kernel: T")
          .Input("bias: T")
          .Input("sequence_lengths: int32")
          .Output("output: T")
          .Output("output_h: T")
          .Output("output_c: T")
          .Output("reserve_space: T")
          .Attr("T: {float, double}");
      ModelAttrs(b, Attrs::kRnnMode)
          .Attr("is_training: bool = true")
          .Attr("time_major: bool = false")
          .SetShapeFn([](InferenceContext* c) {
            return KerasLayerShape(c, {0, "input", /*kernel=*/3, 4, 6});
          })
          .Doc(R"doc(
One unidirectional RNN layer (rnn_relu, rnn_tanh, lstm, gru or gru_reset_before) from a Keras cell's
own weights, so that nothing is converted per call: kernel [I, G*H] and recurrent_kernel [H, G*H]
with Keras' gate column order (GRU z, r, h; LSTM i, f, c, o), bias as Keras shapes it (gru: Keras
GRU reset_after=True, [2, 3H] input then recurrent biases; gru_reset_before: Keras GRU
reset_after=False, [3H]; LSTM [4H]; SimpleRNN [H]) or with no elements (use_bias=False). input [B, T, I]
([T, B, I] with time_major), input_h and input_c [B, H] (input_c read for lstm only), sequence_lengths
[B] or [0] (every sequence full). Outputs: output [B, T, H], output_h, output_c (lstm; else a scalar 0)
and reserve_space: that of TfRnn>CudnnRNN for the same one-layer model, which its gradient passes to
TfRnn>KerasRNNBackprop.
)doc");
    });

const InitOnStartupMarker kKerasRnnBackprop TF_ATTRIBUTE_UNUSED =
    RegisterOp("TfRnn>KerasRNNBackprop", [](OpDefBuilderWrapper& b) {
      b.Input("input: T")
          .Input("input_h: T")
          .Input("input_c: T")
          .Input("kernel: T")
          .Input("recurrent_kernel: T")
          .Input("bias: T")
          .Input("sequence_lengths: int32")
          .Input("output: T")
          .Input("output_h: T")
          .Input("output_c: T")
          .Input("output_backprop: T")
          .Input("output_h_backprop: T")
          .Input("output_c_backprop: T")
          .Input("reserve_space: T")
          .Output("input_backprop: T")
          .Output("input_h_backprop: T")
          .Output("input_c_backprop: T")
          .Output("kernel_backprop: T")
          .Output("recurrent_kernel_backprop: T")
          .Output("bias_backprop: T")
          .Attr("T: {float, double}");
      ModelAttrs(b, Attrs::kRnnMode)
          .Attr("time_major: bool = false")
          .Attr("skip_input_backprop: bool = false")
          .Attr("skip_state_backprop: bool = false")
          .SetShapeFn([](InferenceContext* c) {
            for (int i = 0; i < 6; ++i) c->set_output(i, c->input(i));
            return absl::OkStatus();
          })
          .Doc(R"doc(
Backprop of TfRnn>KerasRNN from the reserve_space of its training forward pass, in Keras' layouts:
the grads of input, input_h, input_c, kernel, recurrent_kernel and bias in their inputs' shapes
(input_c_backprop zeros, bias_backprop empty where they are not read). rnn_mode: any of
TfRnn>KerasRNN's. skip_input_backprop: as TfRnn>CudnnRNNBackprop's. skip_state_backprop: when true,
input_h_backprop and input_c_backprop are returned as zeros and the first step's product that would
compute them is skipped (set by the registered gradient where the tape wants the grads of neither
state, as for a layer called without initial states).
)doc");
    });

const InitOnStartupMarker kCudnnRnnBackprop TF_ATTRIBUTE_UNUSED =
    RegisterOp("TfRnn>CudnnRNNBackprop", [](OpDefBuilderWrapper& b) {
      b.Input("input: T")
          .Input("input_h: T")
          .Input("input_c: T")
          .Input("params: T")
          .Input("sequence_lengths: int32")
          .Input("output: T")
          .Input("output_h: T")
          .Input("output_c: T")
          .Input("output_backprop: T")
          .Input("output_h_backprop: T")
          .Input("output_c_backprop: T")
          .Input("reserve_space: T")
          .Input("host_reserved: int8")
          .SetIsStateful()
          .Output("input_backprop: T")
          .Output("input_h_backprop: T")
          .Output("input_c_backprop: T")
          .Output("params_backprop: T")
          .Attr("T: {half, bfloat16, float, double}");
      ModelAttrs(b, Attrs::kCudnnModel)
          .Attr("time_major: bool = true")
          .Attr("skip_input_backprop: bool = false")
          .Attr("skip_state_backprop: bool = false")
          .SetShapeFn([](InferenceContext* c) {
            for (int i = 0; i < 4; ++i) c->set_output(i, c->input(i));
            return absl::OkStatus();
          })
          .Doc(R"doc(
Backprop of TfRnn>CudnnRNN from the reserve_space of its training forward pass (nothing is recomputed);
the interface of CudnnRNNBackpropV3.

skip_input_backprop: when true, input_backprop is returned as zeros and the first layer's products
that would compute it are skipped (the registered gradient sets it when the tape does not need the
input's gradient: a model's training step).
skip_state_backprop: when true, input_h_backprop and input_c_backprop are returned as zeros and
each layer's first-step product that would compute them is skipped (set by the registered
gradient where the tape wants the grads of neither state).
)doc");
    });

const InitOnStartupMarker kCudnnRnnParamsSize TF_ATTRIBUTE_UNUSED =
    RegisterOp("TfRnn>CudnnRNNParamsSize", [](OpDefBuilderWrapper& b) {
      b.Input("num_layers: int32")
          .Input("num_units: int32")
          .Input("input_size: int32")
          .Output("params_size: S")
          .Attr("T: {half, bfloat16, float, double}")
          .Attr("S: {int32, int64}");
      ModelAttrs(b, Attrs::kCudnnModel)
          .SetShapeFn([](InferenceContext* c) {
            TF_RETURN_IF_ERROR(ModelScalarsShape(c));
            c->set_output(0, c->Vector(1));
            return absl::OkStatus();
          })
          .Doc("The exact number of elements of the opaque params of a TfRnn>CudnnRNN model.");
    });

const InitOnStartupMarker kCudnnRnnParamsToCanonical TF_ATTRIBUTE_UNUSED =
    RegisterOp("TfRnn>CudnnRNNParamsToCanonical", [](OpDefBuilderWrapper& b) {
      b.Input("num_layers: int32")
          .Input("num_units: int32")
          .Input("input_size: int32")
          .Input("params: T")
          .Output("weights: num_params_weights * T")
          .Output("biases: num_params_biases * T")
          .Attr("T: {half, bfloat16, float, double}")
          .Attr("num_params_weights: int >= 1")
          .Attr("num_params_biases: int >= 1");
      ModelAttrs(b, Attrs::kCudnnModel)
          .SetShapeFn([](InferenceContext* c) {
            ShapeHandle unused;
            TF_RETURN_IF_ERROR(ModelScalarsShape(c));
            TF_RETURN_IF_ERROR(NamedRank(c, 3, "params", 1, &unused));
            int num_weights, num_biases;
            TF_RETURN_IF_ERROR(c->GetAttr("num_params_weights", &num_weights));
            TF_RETURN_IF_ERROR(c->GetAttr("num_params_biases", &num_biases));
            for (int i = 0; i < num_weights; ++i)
              c->set_output(i, c->Matrix(c->UnknownDim(), c->UnknownDim()));
            for (int i = 0; i < num_biases; ++i)
              c->set_output(num_weights + i, c->Vector(c->UnknownDim()));
            return absl::OkStatus();
          })
          .Doc("Splits opaque params into the canonical weights ([out, in] each) and biases.");
    });

const InitOnStartupMarker kCudnnRnnCanonicalToParams TF_ATTRIBUTE_UNUSED =
    RegisterOp("TfRnn>CudnnRNNCanonicalToParams", [](OpDefBuilderWrapper& b) {
      b.Input("num_layers: int32")
          .Input("num_units: int32")
          .Input("input_size: int32")
          .Input("weights: num_params_weights * T")
          .Input("biases: num_params_biases * T")
          .Output("params: T")
          .Attr("T: {half, bfloat16, float, double}")
          .Attr("num_params_weights: int >= 1")
          .Attr("num_params_biases: int >= 1");
      ModelAttrs(b, Attrs::kCudnnModel)
          .SetShapeFn([](InferenceContext* c) {
            c->set_output(0, c->Vector(c->UnknownDim()));
            return absl::OkStatus();
          })
          .Doc(
              "Packs canonical weights and biases into the opaque params (inverse of "
              "ParamsToCanonical).");
    });

}  // namespace
}  // namespace tensorflow
