// Op registrations of the GRU block cell and its gradient, under the `TfRnn>` namespace.
//
// Same inputs, outputs and attributes as TensorFlow's GRUBlockCell / GRUBlockCellGrad
// (tensorflow/core/ops/rnn_ops.cc), so that the Python wrappers take the same keyword arguments.
// The shape functions infer every output shape and check every rank and every dimension that is
// known at graph-construction time, with messages that name the inputs (the kernels check the same
// at run time, with the same wording).

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {
namespace {

using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

// Checks that input `index` (called `name`) has rank `rank`.
absl::Status RankIs(InferenceContext* c, int index, const char* name, int rank, ShapeHandle* out) {
  const ShapeHandle s = c->input(index);
  if (c->RankKnown(s) && c->Rank(s) != rank) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be rank ", rank, ", but is rank ",
                                                   c->Rank(s), " (shape ", c->DebugString(s), ")"));
  }
  return c->WithRank(s, rank, out);
}

// Merges two dimensions that must be equal; the error names both and gives both sizes.
absl::Status MergeDims(InferenceContext* c, DimensionHandle a, const std::string& a_name,
                       DimensionHandle b, const std::string& b_name, DimensionHandle* out) {
  if (c->ValueKnown(a) && c->ValueKnown(b) && c->Value(a) != c->Value(b)) {
    return absl::InvalidArgumentError(
        absl::StrCat(a_name, " (=", c->Value(a), ") must equal ", b_name, " (=", c->Value(b), ")"));
  }
  return c->Merge(a, b, out);
}

// 2 * H, with an error naming h_prev when it passes int64 (InferenceContext::Multiply's own
// message names no input).
absl::Status TwiceCellSize(InferenceContext* c, DimensionHandle h, DimensionHandle* out) {
  if (c->ValueKnown(h) && c->Value(h) > std::numeric_limits<int64_t>::max() / 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("h_prev.dims(1) (=", c->Value(h),
                     ") is too large: 2 * h_prev.dims(1) must fit in 64 bits"));
  }
  return c->Multiply(h, 2, out);
}

// Inputs shared by both ops: x [B, I], h_prev [B, H], w_ru [I+H, 2H], w_c [I+H, H], b_ru [2H],
// b_c [H]. Returns the merged batch size B, input size I and cell size H.
absl::Status CheckCellInputs(InferenceContext* c, DimensionHandle* batch,
                             DimensionHandle* input_out, DimensionHandle* cell) {
  ShapeHandle x, h_prev, w_ru, w_c, b_ru, b_c;
  TF_RETURN_IF_ERROR(RankIs(c, 0, "x", 2, &x));
  TF_RETURN_IF_ERROR(RankIs(c, 1, "h_prev", 2, &h_prev));
  TF_RETURN_IF_ERROR(RankIs(c, 2, "w_ru", 2, &w_ru));
  TF_RETURN_IF_ERROR(RankIs(c, 3, "w_c", 2, &w_c));
  TF_RETURN_IF_ERROR(RankIs(c, 4, "b_ru", 1, &b_ru));
  TF_RETURN_IF_ERROR(RankIs(c, 5, "b_c", 1, &b_c));

  DimensionHandle b = c->Dim(x, 0);
  TF_RETURN_IF_ERROR(MergeDims(c, c->Dim(h_prev, 0), "h_prev.dims(0)", b, "x.dims(0)", &b));
  const DimensionHandle input_size = c->Dim(x, 1);
  DimensionHandle h = c->Dim(h_prev, 1);

  // H from w_c.dims(1), b_c.dims(0), and the halves of w_ru.dims(1), b_ru.dims(0).
  TF_RETURN_IF_ERROR(MergeDims(c, c->Dim(w_c, 1), "w_c.dims(1)", h, "h_prev.dims(1)", &h));
  TF_RETURN_IF_ERROR(MergeDims(c, c->Dim(b_c, 0), "b_c.dims(0)", h, "h_prev.dims(1)", &h));
  DimensionHandle two_h;
  TF_RETURN_IF_ERROR(TwiceCellSize(c, h, &two_h));
  TF_RETURN_IF_ERROR(
      MergeDims(c, c->Dim(w_ru, 1), "w_ru.dims(1)", two_h, "2 * h_prev.dims(1)", &two_h));
  TF_RETURN_IF_ERROR(
      MergeDims(c, c->Dim(b_ru, 0), "b_ru.dims(0)", two_h, "2 * h_prev.dims(1)", &two_h));
  if (!c->ValueKnown(h) && c->ValueKnown(two_h)) {
    // H unknown so far but 2H known (from w_ru or b_ru): H = 2H / 2, if 2H is even.
    if (c->Value(two_h) % 2 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "w_ru.dims(1) and b_ru.dims(0) must be even (2 * cell size), but are ", c->Value(two_h)));
    }
    h = c->MakeDim(c->Value(two_h) / 2);
  }

  // Rows of both weight matrices: I + H.
  DimensionHandle rows;
  if (c->ValueKnown(input_size) && c->ValueKnown(h) &&
      c->Value(input_size) > std::numeric_limits<int64_t>::max() - c->Value(h)) {
    // As the kernels say it (InferenceContext::Add's own message names no input).
    return absl::InvalidArgumentError(
        absl::StrCat("x.dims(1) (=", c->Value(input_size), ") and h_prev.dims(1) (=", c->Value(h),
                     ") are too large: x.dims(1) + h_prev.dims(1) must fit in 64 bits"));
  }
  TF_RETURN_IF_ERROR(c->Add(input_size, h, &rows));
  TF_RETURN_IF_ERROR(
      MergeDims(c, c->Dim(w_ru, 0), "w_ru.dims(0)", rows, "x.dims(1) + h_prev.dims(1)", &rows));
  TF_RETURN_IF_ERROR(
      MergeDims(c, c->Dim(w_c, 0), "w_c.dims(0)", rows, "x.dims(1) + h_prev.dims(1)", &rows));
  DimensionHandle input = input_size;
  if (!c->ValueKnown(input) && c->ValueKnown(rows) && c->ValueKnown(h)) {
    // I unknown from x: I = rows - H.
    if (c->Value(rows) < c->Value(h)) {
      return absl::InvalidArgumentError(
          absl::StrCat("w_ru.dims(0) and w_c.dims(0) (=", c->Value(rows),
                       ") must be at least h_prev.dims(1) (=", c->Value(h), ")"));
    }
    input = c->MakeDim(c->Value(rows) - c->Value(h));
  }

  *batch = b;
  *input_out = input;
  *cell = h;
  return absl::OkStatus();
}

absl::Status GRUBlockCellShape(InferenceContext* c) {
  DimensionHandle batch, input_size, cell;
  TF_RETURN_IF_ERROR(CheckCellInputs(c, &batch, &input_size, &cell));
  const ShapeHandle out = c->Matrix(batch, cell);
  for (int i = 0; i < 4; ++i) c->set_output(i, out);  // r, u, c, h
  return absl::OkStatus();
}

absl::Status GRUBlockCellGradShape(InferenceContext* c) {
  DimensionHandle batch, input_size, cell;
  TF_RETURN_IF_ERROR(CheckCellInputs(c, &batch, &input_size, &cell));
  // r, u, c, d_h: [B, H] each.
  static constexpr const char* kNames[] = {"r", "u", "c", "d_h"};
  for (int i = 0; i < 4; ++i) {
    ShapeHandle s;
    TF_RETURN_IF_ERROR(RankIs(c, 6 + i, kNames[i], 2, &s));
    TF_RETURN_IF_ERROR(MergeDims(c, c->Dim(s, 0), absl::StrCat(kNames[i], ".dims(0)"), batch,
                                 "x.dims(0)", &batch));
    TF_RETURN_IF_ERROR(MergeDims(c, c->Dim(s, 1), absl::StrCat(kNames[i], ".dims(1)"), cell,
                                 "h_prev.dims(1)", &cell));
  }
  DimensionHandle two_h;
  TF_RETURN_IF_ERROR(TwiceCellSize(c, cell, &two_h));
  c->set_output(0, c->Matrix(batch, input_size));  // d_x
  c->set_output(1, c->Matrix(batch, cell));        // d_h_prev
  c->set_output(2, c->Matrix(batch, cell));        // d_c_bar
  c->set_output(3, c->Matrix(batch, two_h));       // d_r_bar_u_bar
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("TfRnn>GRUBlockCell")
    .Attr("T: {float, double, half, bfloat16}")
    .Input("x: T")
    .Input("h_prev: T")
    .Input("w_ru: T")
    .Input("w_c: T")
    .Input("b_ru: T")
    .Input("b_c: T")
    .Output("r: T")
    .Output("u: T")
    .Output("c: T")
    .Output("h: T")
    .SetShapeFn(GRUBlockCellShape)
    .Doc(R"doc(
One step of a GRU cell (the math of TensorFlow's GRUBlockCell).

  [r_bar, u_bar] = [x, h_prev] . w_ru + b_ru;  r = sigmoid(r_bar);  u = sigmoid(u_bar)
  c = tanh([x, h_prev * r] . w_c + b_c);       h = u * h_prev + (1 - u) * c

x: [batch, input_size]. h_prev: [batch, cell_size]. w_ru: [input_size + cell_size, 2 * cell_size]
(columns r | u). w_c: [input_size + cell_size, cell_size]. b_ru: [2 * cell_size]. b_c: [cell_size].
r, u, c, h: [batch, cell_size].
)doc");

REGISTER_OP("TfRnn>GRUBlockCellGrad")
    .Attr("T: {float, double, half, bfloat16}")
    .Input("x: T")
    .Input("h_prev: T")
    .Input("w_ru: T")
    .Input("w_c: T")
    .Input("b_ru: T")
    .Input("b_c: T")
    .Input("r: T")
    .Input("u: T")
    .Input("c: T")
    .Input("d_h: T")
    .Output("d_x: T")
    .Output("d_h_prev: T")
    .Output("d_c_bar: T")
    .Output("d_r_bar_u_bar: T")
    .SetShapeFn(GRUBlockCellGradShape)
    .Doc(R"doc(
Backprop of one GRU block cell step for a gradient d_h at h (TensorFlow's GRUBlockCellGrad).

  d_c_bar = d_h * (1 - u) * (1 - c * c);  d_u_bar = d_h * (h_prev - c) * u * (1 - u)
  [d_x_c, d_h_prevr] = d_c_bar . w_c^T;   d_r_bar = d_h_prevr * h_prev * r * (1 - r)
  d_r_bar_u_bar = [d_r_bar, d_u_bar];     [d_x_ru, d_h_prev_ru] = d_r_bar_u_bar . w_ru^T
  d_x = d_x_ru + d_x_c;                   d_h_prev = d_h_prev_ru + d_h_prevr * r + d_h * u
)doc");

}  // namespace tensorflow
