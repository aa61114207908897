// Op registrations of the fused layer-normalized RNNs (cc/kernels/layer_norm_rnn_kernels.cc,
// cc/cells/layer_norm_cells.h): TfRnn>LayerNormRnn and its gradient TfRnn>LayerNormRnnGrad.
//
// One layer, one direction, weights in the Keras layers' layout (tf_rnn_ops/layers/layer_norm.py):
// kernel [I, G·H], recurrent_kernel [H, G·H] in the cell's own gate order (layer_norm_lstm: i, f,
// c, o; layer_norm_gru: z, r, g). Inputs a cell does not use (the GRU's c0, beta_x, beta_h,
// gamma_c, beta_c; the LSTM's recurrent_bias) may be any shape; their grads are zeros of that
// shape. x [T, B, I] and y [T, B, H] (their grads likewise), or with time_major=false [B, T, I] and
// [B, T, H] (Keras' layout: the layers call the op without transposes); mask and zoneout_mask are
// time-major in both layouts. mask: [T, B] in {0, 1} (a masked step keeps the states and outputs
// the carried h) or [0]; zoneout_mask: the keep mask k of zoneout on h, h = h_prev + k (h~ -
// h_prev): [T, B, H] in {0, 1} (training), a scalar 1 - p (inference: h = p h_prev + (1 - p) h~),
// or [0] (no zoneout). epsilon: the LN epsilon, a scalar.
// is_training: false writes no reserve (an empty one; the gradient then needs a run with true).
// recurrent_mask: N = 0 tensors (none) or one [B, H]: TF Addons' recurrent dropout, h_{t-1} ⊙ m
// in h's product with R at every step (the state carried, zoneout and the GRU's z h_prev see h
// undropped). A list input with an empty default, the last input of both ops, so that graphs
// written before it (no such input) still load and their kernels' input indices stay as they were.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

namespace {

// Like WithRank, with an error that names the input (TensorFlow's names none).
absl::Status NamedRank(InferenceContext* c, int index, const char* name, int rank,
                       ShapeHandle* out) {
  if (!c->WithRank(c->input(index), rank, out).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be ", rank, "-D, got shape ", c->DebugString(c->input(index))));
  }
  return absl::OkStatus();
}

}  // namespace

// REGISTER_OP(name) with the forward op's inputs and the attrs both ops share: the grad op takes
// these inputs first (then reserve, dy, dhn, dcn). (A macro: REGISTER_OP's builder chain cannot
// call a function.)
#define TF_RNN_REGISTER_LAYER_NORM_RNN_OP(name)            \
  REGISTER_OP(name)                                        \
      .Input("x: T")                                       \
      .Input("h0: T")                                      \
      .Input("c0: T")                                      \
      .Input("kernel: T")                                  \
      .Input("recurrent_kernel: T")                        \
      .Input("bias: T")                                    \
      .Input("recurrent_bias: T")                          \
      .Input("gamma_x: T")                                 \
      .Input("beta_x: T")                                  \
      .Input("gamma_h: T")                                 \
      .Input("beta_h: T")                                  \
      .Input("gamma_c: T")                                 \
      .Input("beta_c: T")                                  \
      .Input("mask: T")                                    \
      .Input("zoneout_mask: T")                            \
      .Input("epsilon: T")                                 \
      .Attr("T: {float, double}")                          \
      .Attr("cell: {'layer_norm_lstm', 'layer_norm_gru'}") \
      .Attr("time_major: bool = true")

TF_RNN_REGISTER_LAYER_NORM_RNN_OP("TfRnn>LayerNormRnn")
    .Input("recurrent_mask: N * T")
    .Attr("N: int >= 0 = 0")
    .Output("y: T")
    .Output("hn: T")
    .Output("cn: T")
    .Output("reserve: T")
    .Attr("is_training: bool = true")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, h0;
      TF_RETURN_IF_ERROR(NamedRank(c, 0, "x", 3, &x));
      TF_RETURN_IF_ERROR(NamedRank(c, 1, "h0", 2, &h0));
      std::string cell;
      TF_RETURN_IF_ERROR(c->GetAttr("cell", &cell));
      bool time_major = true;
      TF_RETURN_IF_ERROR(c->GetAttr("time_major", &time_major));
      auto B = c->Dim(x, time_major ? 1 : 0), H = c->Dim(h0, 1);
      c->set_output(0, c->MakeShape({c->Dim(x, 0), c->Dim(x, 1), H}));
      c->set_output(1, c->MakeShape({B, H}));
      c->set_output(2, c->MakeShape({B, cell == "layer_norm_lstm" ? H : c->MakeDim(0)}));
      bool is_training = true;
      TF_RETURN_IF_ERROR(c->GetAttr("is_training", &is_training));
      c->set_output(3, c->Vector(is_training ? InferenceContext::kUnknownDim : 0));
      return absl::OkStatus();
    });

TF_RNN_REGISTER_LAYER_NORM_RNN_OP("TfRnn>LayerNormRnnGrad")
    .Input("reserve: T")
    .Input("dy: T")
    .Input("dhn: T")
    .Input("dcn: T")
    .Input("recurrent_mask: N * T")
    .Attr("N: int >= 0 = 0")
    .Output("dx: T")
    .Output("dh0: T")
    .Output("dc0: T")
    .Output("dkernel: T")
    .Output("drecurrent_kernel: T")
    .Output("dbias: T")
    .Output("drecurrent_bias: T")
    .Output("dgamma_x: T")
    .Output("dbeta_x: T")
    .Output("dgamma_h: T")
    .Output("dbeta_h: T")
    .Output("dgamma_c: T")
    .Output("dbeta_c: T")
    .SetShapeFn([](InferenceContext* c) {
      for (int i = 0; i < 13; ++i) c->set_output(i, c->input(i));
      return absl::OkStatus();
    });

#undef TF_RNN_REGISTER_LAYER_NORM_RNN_OP

}  // namespace tensorflow
