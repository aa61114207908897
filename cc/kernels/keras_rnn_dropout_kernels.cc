// TfRnn>KerasRNNDropout and TfRnn>KerasRNNDropoutBackprop: CPU kernels (the GPU's:
// keras_rnn_dropout_kernels_gpu.cc). One unidirectional layer of a Keras cell with recurrent
// dropout and zoneout, its recurrence only: the layer
// computes the input side of every gate itself (gx = concat_k((x ⊙ d_k) W_k) + b), and the op runs
// the steps with the masked recurrent products of the CPU driver (rnn_cpu_driver.h,
// MaskedProducts in rnn_phase_products.h) on the cell's own recurrent_kernel (the plain products
// where recurrent_masks has no elements), and zoneout on h after each step where zoneout_mask is
// given (the driver's zoneout pass). Inputs and gate column orders are Keras'; the kernels permute
// the GRU's z, r, h blocks into the cells' r, z, h.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cc/cells/keras_gate_order.h"
#include "cc/kernels/fused_rnn_cpu_views.h"
#include "cc/kernels/fused_rnn_kernels.h"
#include "cc/kernels/fused_rnn_rules.h"
#include "cc/kernels/keras_rnn_calls.h"
#include "cc/kernels/keras_rnn_dropout_checks.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/rnn_cpu_driver.h"
#include "cc/kernels/rnn_params.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

namespace tf_rnn_ops {
namespace {

// OP_REQUIRES and OP_REQUIRES_OK for the checks of a function that returns false on failure.
#define DC_REQUIRES(CTX, EXP, STATUS)                  \
  do {                                                 \
    if (!(EXP)) {                                      \
      (CTX)->CtxFailure(__FILE__, __LINE__, (STATUS)); \
      return false;                                    \
    }                                                  \
  } while (0)
#define DC_REQUIRES_OK(CTX, ...)                 \
  do {                                           \
    const absl::Status _s = (__VA_ARGS__);       \
    if (!_s.ok()) {                              \
      (CTX)->CtxFailure(__FILE__, __LINE__, _s); \
      return false;                              \
    }                                            \
  } while (0)

// The ops' inputs (kProjected, ...) and their checks: keras_rnn_dropout_checks.h.
using namespace keras_rnn_dropout;  // NOLINT(build/namespaces)

// What both kernels check and convert: the shapes of the forward op's inputs (0-7), the model, and
// the inputs in the driver's layout and canonical gate order.
template <typename T>
class DropoutCall {
 public:
  explicit DropoutCall(OpKernelConstruction* ctx) {
    std::string mode;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("rnn_mode", &mode));
    OP_REQUIRES_OK(ctx, RuleStatus(fused_rnn::ParseRnnMode(mode, &mode_)));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("time_major", &time_major_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("gate_major", &gate_major_));
  }

  // Checks inputs 0-7; on success T_, B, H, G, s, lengths and the zoneout inputs are set.
  bool Check(OpKernelContext* ctx) {
    CheckedCall& c = checked;
    DC_REQUIRES_OK(ctx, CheckInputs(ctx, mode_, time_major_, gate_major_, &c));
    T_ = c.T;
    B = c.B;
    H = c.H;
    G = c.G;
    s = c.model;
    has_masks = c.has_masks;
    const Tensor& zoneout = ctx->input(kZoneoutMask);
    zoneout_mask = c.zoneout == ZoneoutKind::kMask ? zoneout.flat<T>().data() : nullptr;
    zoneout_keep = c.zoneout == ZoneoutKind::kScalar ? zoneout.scalar<T>()() : T(1);
    lengths.clear();
    if (c.lengths != nullptr) lengths.assign(c.lengths, c.lengths + B);
    return true;
  }

  // The canonical gate g's Keras column block (the table the CUDA kernels use too).
  int Src(int g) const { return KerasGateBlock(mode_, g); }

  // Keras' gate order is the cells' own (all but the GRU's): the inputs are read where they lie.
  bool KerasOrderIsCanonical() const {
    for (int g = 0; g < G; ++g)
      if (Src(g) != g) return false;
    return true;
  }
  // The GRU's permutation for the driver (RnnBackwardArgs::grad_gate_src), or null.
  const int* GateSrc() {
    for (int g = 0; g < G && g < 4; ++g) gate_src_[g] = Src(g);
    return KerasOrderIsCanonical() ? nullptr : gate_src_;
  }
  // Where the projected input's canonical gate g starts from its row's start (RnnForwardArgs::
  // projected_gate_offset: Keras' column block, or gate-major block), or null (block g, g·H).
  const int64_t* GateOffsets() {
    if (KerasOrderIsCanonical() && !gate_major_) return nullptr;
    for (int g = 0; g < G && g < 4; ++g) gate_offset_[g] = Src(g) * (gate_major_ ? T_ * B : 1) * H;
    return gate_offset_;
  }
  // Elements from a row of the projected input to the next (0: G·H, the gates side by side).
  int64_t RowStride() const { return gate_major_ ? H : 0; }

  // Converts the inputs into the driver's layout and gate order (temporaries in `this`). The
  // projected input (the forward's; the backward never reads it) is read in place in its layout
  // and Keras' gate order (`gx_batch_major`, `gx_gate_offset`: a reordered copy was a pass over
  // [T, B, G·H] and ~20% of the GRU(64) forward at B = 1024, T = 16; PERFORMANCE item 77).
  // recurrent_kernel: read in place, its gate blocks through rk_gate_src (float: the products
  // permute them), or (another type than float where the order differs) a copy in the canonical
  // gate order.
  bool Convert(OpKernelContext* ctx, bool projected) {
    const int64_t gh = G * H;
    const auto dt = tensorflow::DataTypeToEnum<T>::value;
    const bool canonical = KerasOrderIsCanonical();
    const bool copy_rk = !canonical && !std::is_same<T, float>::value;
    DC_REQUIRES_OK(
        ctx, ctx->allocate_temp(
                 dt, TensorShape({(copy_rk ? H * gh : 0) + (canonical ? 0 : G * B * H) + 2 * gh}),
                 &temp_));
    AdviseHugePages(temp_);
    T* at = temp_.flat<T>().data();
    gx = projected ? ctx->input(kProjected).flat<T>().data() : nullptr;
    gx_batch_major = projected && !time_major_;
    gx_gate_offset = projected ? GateOffsets() : nullptr;
    const Tensor& r_in = ctx->input(kRecurrentKernel);
    const T* r = r_in.flat<T>().data();
    rk = r;
    rk_gate_src = canonical ? nullptr : GateSrc();
    if (copy_rk) {
      T* out = at;
      at += H * gh;
      for (int64_t k = 0; k < H; ++k)
        for (int g = 0; g < G; ++g) std::copy_n(r + k * gh + Src(g) * H, H, out + k * gh + g * H);
      rk = out;
      rk_gate_src = nullptr;
    }
    if (!has_masks) {
      masks = nullptr;  // the plain recurrent products
    } else if (canonical) {
      masks = ctx->input(kRecurrentMasks).flat<T>().data();
    } else {
      T* out = at;
      masks = out;
      at += G * B * H;
      const T* m = ctx->input(kRecurrentMasks).flat<T>().data();
      for (int g = 0; g < G; ++g) {
        ParallelCopy(ctx->eigen_device<CPUDevice>(), m + Src(g) * B * H, B * H, out + g * B * H);
      }
    }
    b_w = at;
    b_r = at + gh;
    std::fill_n(b_w, 2 * gh, T(0));
    // recurrent_bias [G·H] (the recurrent side's) or [2, G·H] (the input side's, then the
    // recurrent side's), in the canonical gate order.
    const Tensor& rbias = ctx->input(kRecurrentBias);
    if (rbias.NumElements() > 0) {
      const T* rows = rbias.flat<T>().data();
      if (checked.has_input_bias) {
        for (int g = 0; g < G; ++g) std::copy_n(rows + Src(g) * H, H, b_w + g * H);
        rows += gh;
      }
      for (int g = 0; g < G; ++g) std::copy_n(rows + Src(g) * H, H, b_r + g * H);
    }
    return true;
  }

  RnnMode mode_ = RnnMode::kLstm;
  bool time_major_ = false;
  bool gate_major_ = false;  // projected input [G, B, T, H] ([G, T, B, H] time-major)
  int64_t T_ = 0, B = 0, H = 0, G = 0;
  RnnModelShape s;
  CheckedCall checked;  // what Check found (CheckBackpropInputs reads it)
  std::vector<int32_t> lengths;
  const T *gx = nullptr, *masks = nullptr;  // the projected input and masks (maybe the inputs')
  const T* rk = nullptr;                    // recurrent_kernel [H, G·H], see Convert
  const int* rk_gate_src = nullptr;         // its canonical gate g's column block, or null
  T *b_w = nullptr, *b_r = nullptr;
  bool has_masks = false;
  bool gx_batch_major = false;              // gx is [B, T, G·H] (else [T, B, G·H])
  const int64_t* gx_gate_offset = nullptr;  // gx's canonical gate g at gx_gate_offset[g], or g·H
  const T* zoneout_mask = nullptr;          // [T, B, H], or null: zoneout_keep for every unit
  T zoneout_keep = T(1);                    // 1: no zoneout

 private:
  Tensor temp_;
  int gate_src_[4] = {0, 1, 2, 3};
  int64_t gate_offset_[4] = {};
};

template <typename T>
class KerasRnnDropoutOp : public OpKernel {
 public:
  explicit KerasRnnDropoutOp(OpKernelConstruction* ctx) : OpKernel(ctx), call_(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("is_training", &is_training_));
  }

  void Compute(OpKernelContext* ctx) override {
    DropoutCall<T> c(call_);
    if (!c.Check(ctx)) return;
    const Tensor& input_h = ctx->input(kInputH);
    const Tensor& input_c = ctx->input(kInputC);
    const bool tm = c.time_major_, lstm = CellHasCellState(c.mode_);
    const int64_t T_ = c.T_, B = c.B, H = c.H;
    const int64_t reserve_n =
        is_training_ ? RnnReserveLayout(c.s, T_, B, /*has_dropout=*/false, false).size : 0;
    keras_rnn::ForwardOutputs out;
    OP_REQUIRES_OK(ctx, out.Allocate<T>(ctx, tm, T_, B, H, lstm, input_h, input_c, reserve_n));
    if (out.PassEmptyCall<T>(T_, B, lstm, input_h, input_c)) return;
    if (!c.Convert(ctx, /*projected=*/true)) return;
    const bool stream = RnnStreamForwardWeights<T>(T_, B, H * c.G * H);  // (R alone)
    Tensor workspace;
    OP_REQUIRES_OK(ctx, keras_rnn::AllocateWorkspace<T>(
                            ctx, RnnWorkspaceSize<T>(c.s, T_, B, false, stream), &workspace));
    RnnForwardArgs<T> a =
        keras_rnn::ForwardArgs<T>(T_, B, lstm, input_h, input_c, c.lengths, out, is_training_);
    // y written where it lies in either layout: with the input side given no step reads x, so
    // batch-major rows cost nothing (a transposed copy was a pass over y; PERFORMANCE item 77).
    a.y = out.y->flat<T>().data();
    a.io_batch_major = !tm;
    a.recurrent_kernel = c.rk;
    a.gate_src = c.rk_gate_src;
    a.stream_weights = stream;
    a.bias_w = c.b_w;
    a.bias_r = c.b_r;
    a.projected = c.gx;
    a.projected_batch_major = c.gx_batch_major;
    a.projected_gate_offset = c.gx_gate_offset;
    a.projected_row_stride = c.RowStride();
    a.rec_masks = c.masks;
    a.zoneout_mask = c.zoneout_mask;
    a.zoneout_keep = c.zoneout_keep;
    // (one thread for small calls, as TfRnn>KerasRNN's forward: a zoneout layer's one-step
    // generation step; the input side is given, so the recurrent products are the call's flops)
    const double weight_elements = double(H) * c.G * H;
    const CallDevice device(ctx->eigen_device<CPUDevice>(),
                            ForwardCallFlops(T_, B, weight_elements),
                            ForwardOneThreadFlops(weight_elements * sizeof(T)));
    CpuRnn<T>(device.get(), c.s).Forward(a, workspace.flat<T>().data());
  }

 private:
  DropoutCall<T> call_;
  bool is_training_ = true;
};

template <typename T>
class KerasRnnDropoutBackpropOp : public OpKernel {
 public:
  explicit KerasRnnDropoutBackpropOp(OpKernelConstruction* ctx) : OpKernel(ctx), call_(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_state_backprop", &skip_state_));
  }

  void Compute(OpKernelContext* ctx) override {
    DropoutCall<T> c(call_);
    if (!c.Check(ctx)) return;
    const bool tm = c.time_major_, lstm = CellHasCellState(c.mode_);
    const int64_t T_ = c.T_, B = c.B, H = c.H, G = c.G, gh = G * H;
    const Tensor& input_h = ctx->input(kInputH);
    const Tensor& input_c = ctx->input(kInputC);
    const RnnReserveLayout rl(c.s, T_, B, /*has_dropout=*/false, false);
    OP_REQUIRES_OK(ctx, CheckBackpropInputs(ctx, c.mode_, tm, c.checked, rl.size));
    const Tensor& reserve = ctx->input(kReserveSpace);
    const bool skip_state = StateGradsUnwanted(ctx, skip_state_, 1, 2, lstm);
    Tensor *d_gx, *dh0, *dc0, *drk, *drb;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &d_gx));
    AdviseHugePages(*d_gx);
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, input_h.shape(), &dh0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, input_c.shape(), &dc0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, ctx->input(3).shape(), &drk));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, ctx->input(4).shape(), &drb));
    // (an input_c given to a cell without one gets zeros; an LSTM's dc0 is written by the driver,
    // or by PassEmptyCallBackward)
    if (!lstm) std::fill_n(dc0->flat<T>().data(), dc0->NumElements(), T(0));
    std::fill_n(drb->flat<T>().data(), drb->NumElements(), T(0));
    if (keras_rnn::PassEmptyCallBackward<T>(T_, B, lstm, skip_state, ctx->input(kOutputHBackprop),
                                            ctx->input(kOutputCBackprop), dh0, dc0, {drk})) {
      return;
    }
    if (!c.Convert(ctx, /*projected=*/false)) return;
    const auto dt = tensorflow::DataTypeToEnum<T>::value;
    RnnBackwardArgs<T> a = keras_rnn::BackwardArgs<T>(
        T_, B, lstm, input_h, input_c, c.lengths, ctx->input(kOutputHBackprop),
        ctx->input(kOutputCBackprop), reserve, dh0, dc0, skip_state);
    a.y = ctx->input(kOutput).flat<T>().data();  // (read in place, as the forward wrote y)
    a.dy = ctx->input(kOutputBackprop).flat<T>().data();
    a.io_batch_major = !tm;
    a.rec_masks = c.masks;
    a.zoneout_mask = c.zoneout_mask;
    a.zoneout_keep = c.zoneout_keep;
    // The grads of the projected input go straight into the output, in its layout and Keras' gate
    // order.
    a.d_projected = d_gx->flat<T>().data();
    a.projected_batch_major = !tm;
    a.d_projected_gate_offset = c.GateOffsets();
    a.projected_row_stride = c.RowStride();
    // R read and its gradient written in Keras' layout (RnnBackwardArgs::recurrent_kernel), as
    // TfRnn>KerasRNNBackprop does: a call converts nothing (the round trip through params cost a
    // one-step GRU(1024) training step with recurrent dropout ~60% of its time).
    const bool stream = RnnStreamWeights<T>(T_, B);
    Tensor bias_grads, workspace;
    const bool want_bias = drb->NumElements() > 0;
    const int64_t bias_rows = c.checked.has_input_bias ? 2 : 1;  // (as recurrent_bias)
    OP_REQUIRES_OK(
        ctx, ctx->allocate_temp(dt, TensorShape({want_bias ? bias_rows * gh : 0}), &bias_grads));
    OP_REQUIRES_OK(ctx, keras_rnn::AllocateWorkspace<T>(
                            ctx,
                            RnnWorkspaceSize<T>(c.s, T_, B, /*backward=*/true, stream,
                                                /*keras_grads=*/true),
                            &workspace));
    a.recurrent_kernel = c.rk;
    a.gate_src = c.rk_gate_src;
    a.d_recurrent_kernel = drk->flat<T>().data();
    a.grad_gate_src = c.GateSrc();
    // The bias' grads: its recurrent side's, and with a [2, G·H] bias its input side's (a bias in
    // the given projected input is differentiated where the layer adds it).
    T* const bias_sums = want_bias ? bias_grads.flat<T>().data() : nullptr;
    a.d_bias_w = want_bias && c.checked.has_input_bias ? bias_sums : nullptr;
    a.d_bias_r = want_bias ? bias_sums + (bias_rows - 1) * gh : nullptr;
    a.stream_weights = stream;
    const CallDevice device(ctx->eigen_device<CPUDevice>(), 4.0 * T_ * B * H * gh);
    CpuRnn<T>(device.get(), c.s).Backward(a, workspace.flat<T>().data());
    if (want_bias) {  // the bias' grads, from the canonical gate order
      T* db = drb->flat<T>().data();
      for (int64_t row = 0; row < bias_rows; ++row) {
        for (int g = 0; g < G; ++g) {
          std::copy_n(bias_sums + row * gh + g * H, H, db + row * gh + c.Src(g) * H);
        }
      }
    }
  }

 private:
  DropoutCall<T> call_;
  bool skip_state_ = false;
};

}  // namespace

#define TF_RNN_REGISTER(T)                                                                         \
  REGISTER_KERNEL_BUILDER(                                                                         \
      Name("TfRnn>KerasRNNDropout").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),         \
      KerasRnnDropoutOp<T>);                                                                       \
  REGISTER_KERNEL_BUILDER(                                                                         \
      Name("TfRnn>KerasRNNDropoutBackprop").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      KerasRnnDropoutBackpropOp<T>);
TF_RNN_REGISTER(float)
TF_RNN_REGISTER(double)
#undef TF_RNN_REGISTER

}  // namespace tf_rnn_ops
