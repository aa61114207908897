// TfRnn>KerasRNN's and TfRnn>KerasRNNBackprop's CPU kernels and their registrations. They run the
// fused family's CPU driver (rnn_cpu_driver.h) on a Keras cell's own weights and check with the
// family's rules (fused_rnn_rules.h).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cc/kernels/fused_rnn_attrs.h"
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

// The ops' inputs (cc/ops/fused_rnn_ops.cc): TfRnn>KerasRNN's, then the backprop's others.
enum KerasRnnInput : int {
  kInput = 0,
  kInputH,
  kInputC,
  kKernel,
  kRecurrentKernel,
  kBias,
  kSequenceLengths,
  kOutput,
  kOutputH,
  kOutputC,
  kOutputBackprop,
  kOutputHBackprop,
  kOutputCBackprop,
  kReserveSpace,
};

// What TfRnn>KerasRNN and TfRnn>KerasRNNBackprop share: the checks of the forward's inputs (0-6),
// the one-layer model, and the weights as the driver reads them (RnnForwardArgs::kernel).
template <typename T>
class KerasRnnCall {
 public:
  explicit KerasRnnCall(OpKernelConstruction* ctx) {
    std::string mode;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("rnn_mode", &mode));
    OP_REQUIRES_OK(ctx, RuleStatus(fused_rnn::ParseRnnMode(mode, &mode_)));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("time_major", &time_major_));
  }

  // Checks inputs 0-6; on success the sizes, the model and the lengths are set.
  absl::Status Check(OpKernelContext* ctx) {
    const Tensor& input = ctx->input(kInput);
    const Tensor& kernel = ctx->input(kKernel);
    const Tensor& rkernel = ctx->input(kRecurrentKernel);
    const Tensor& bias = ctx->input(kBias);
    const Tensor& seq_lengths = ctx->input(kSequenceLengths);
    const bool tm = time_major_;
    G = NumGates(mode_);
    if (input.dims() != 3) {
      return InvalidArgument("input must be 3-D [", tm ? "T, B, I" : "B, T, I", "], got shape ",
                             input.shape().DebugString());
    }
    T_ = input.dim_size(tm ? 0 : 1), B = input.dim_size(tm ? 1 : 0), I = input.dim_size(2);
    TF_RETURN_IF_ERROR(keras_rnn::CheckRecurrentKernel(rkernel, mode_));
    H = rkernel.dim_size(0);
    const int64_t gh = G * H;
    if (!(kernel.dims() == 2 && kernel.dim_size(0) == I && kernel.dim_size(1) == gh)) {
      return InvalidArgument("kernel must be [input size ", I, ", ", gh,
                             "] (input's last dimension; recurrent_kernel's columns), got shape ",
                             kernel.shape().DebugString());
    }
    TF_RETURN_IF_ERROR(
        keras_rnn::CheckStates(ctx->input(kInputH), ctx->input(kInputC), mode_, B, H));
    const TensorShape bias_shape = Gru() ? TensorShape({2, gh}) : TensorShape({gh});
    if (!(bias.NumElements() == 0 || bias.shape() == bias_shape)) {
      return InvalidArgument("bias must have shape ", bias_shape.DebugString(),
                             " (Keras' for rnn_mode ", RnnModeName(mode_),
                             ") or no elements (use_bias=False), got ", bias.shape().DebugString());
    }
    TF_RETURN_IF_ERROR(keras_rnn::CheckSequenceLengthsShape(seq_lengths, B));
    // The fused family's rules for one unidirectional layer (input_size >= 1 among them), and its
    // buffer bound.
    fused_rnn::ModelSpec spec;
    spec.mode = mode_;
    spec.num_units = H;
    spec.input_size = I;
    if (const std::string error = fused_rnn::MakeModelShape(spec, &s); !error.empty()) {
      return InvalidArgument(error,
                             " (input_size is input's last dimension, num_units "
                             "recurrent_kernel's first)");
    }
    if (!fused_rnn::BuffersFit(s, T_, B)) {
      return InvalidArgument(fused_rnn::BuffersTooLarge(
          absl::StrCat("input (", input.shape().DebugString(), ") and kernels (",
                       kernel.shape().DebugString(), ")")));
    }
    const int32_t* len = nullptr;
    TF_RETURN_IF_ERROR(keras_rnn::CheckSequenceLengthValues(seq_lengths, B, T_, &len));
    lengths.clear();
    if (len != nullptr) lengths.assign(len, len + B);
    return absl::OkStatus();
  }

  // The weights as the driver reads them: the kernels in place, or (the GRU's in other types than
  // float, whose products cannot read gate blocks permuted: Eigen's) copies in the canonical gate
  // order; the biases in the canonical order (2·G·H values: b_W, then b_R). Sets kernel,
  // recurrent_kernel, bias_w, bias_r and gate_src.
  absl::Status ReadWeights(OpKernelContext* ctx) {
    const int64_t gh = G * H;
    const auto dt = tensorflow::DataTypeToEnum<T>::value;
    const Tensor& bias = ctx->input(kBias);
    TF_RETURN_IF_ERROR(ctx->allocate_temp(dt, TensorShape({2 * gh}), &biases_));
    T* b_w = biases_.flat<T>().data();
    T* b_r = b_w + gh;
    std::fill_n(b_w, 2 * gh, T(0));
    const int* src = KerasGru() ? kGruSrc : nullptr;
    if (bias.NumElements() > 0) {
      const T* kb = bias.flat<T>().data();
      if (Gru()) {
        for (int g = 0; g < 3; ++g) {
          std::copy_n(kb + src[g] * H, H, b_w + g * H);
          std::copy_n(kb + gh + src[g] * H, H, b_r + g * H);
        }
      } else if (KerasGru()) {
        for (int g = 0; g < 3; ++g) std::copy_n(kb + src[g] * H, H, b_w + g * H);
      } else {  // Keras' one bias: b_R (lstm) or b_W (rnn)
        std::copy_n(kb, gh, CellHasCellState(mode_) ? b_r : b_w);
      }
    }
    bias_w = b_w;
    bias_r = b_r;
    const Tensor& kernel_in = ctx->input(kKernel);
    const Tensor& rkernel_in = ctx->input(kRecurrentKernel);
    kernel = kernel_in.flat<T>().data();
    recurrent_kernel = rkernel_in.flat<T>().data();
    gate_src = src;
    if (src != nullptr && !std::is_same<T, float>::value) {
      TF_RETURN_IF_ERROR(ctx->allocate_temp(dt, TensorShape({(I + H) * gh}), &permuted_));
      T* pk = permuted_.flat<T>().data();
      for (int64_t row = 0; row < I + H; ++row) {
        const T* from = row < I ? kernel + row * gh : recurrent_kernel + (row - I) * gh;
        for (int g = 0; g < 3; ++g) std::copy_n(from + src[g] * H, H, pk + row * gh + g * H);
      }
      kernel = pk;
      recurrent_kernel = pk + I * gh;
      gate_src = nullptr;
    }
    return absl::OkStatus();
  }

  bool Gru() const { return mode_ == RnnMode::kGru; }
  // Keras' GRU, either form (reset_after=False: the same z, r, h column blocks, one [3H] bias).
  bool KerasGru() const { return Gru() || mode_ == RnnMode::kGruResetBefore; }

  static constexpr int kGruSrc[3] = {1, 0, 2};  // canonical r, z, h from Keras' z, r, h blocks
  RnnMode mode_ = RnnMode::kLstm;
  bool time_major_ = false;
  int64_t T_ = 0, B = 0, I = 0, H = 0, G = 0;
  RnnModelShape s;
  std::vector<int32_t> lengths;
  const T *kernel = nullptr, *recurrent_kernel = nullptr, *bias_w = nullptr, *bias_r = nullptr;
  const int* gate_src = nullptr;

 private:
  Tensor biases_, permuted_;
};

// TfRnn>KerasRNN: one unidirectional layer from a Keras cell's own weights (kernel [I, G·H],
// recurrent_kernel [H, G·H], bias as Keras shapes it), so that a Keras layer's call converts
// nothing (converting to opaque params and packing them cost more than a one-step call's work).
// The driver reads the kernels in place: packed once per call, or, for few rows (B·T <=
// kStreamMaxRows, float), streamed as stored. The reserve_space is that of TfRnn>CudnnRNN for the
// same model; the gradient runs TfRnn>KerasRNNBackprop (tf_rnn_ops/cudnn_rnn.py).
template <typename T>
class KerasRnnOp : public OpKernel {
 public:
  explicit KerasRnnOp(OpKernelConstruction* ctx) : OpKernel(ctx), call_(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("is_training", &is_training_));
  }

  void Compute(OpKernelContext* ctx) override {
    KerasRnnCall<T> c(call_);
    OP_REQUIRES_OK(ctx, c.Check(ctx));
    const Tensor& input_h = ctx->input(kInputH);
    const Tensor& input_c = ctx->input(kInputC);
    const bool tm = c.time_major_, lstm = CellHasCellState(c.mode_);
    const int64_t T_ = c.T_, B = c.B, H = c.H;
    const int64_t reserve_n =
        is_training_ ? RnnReserveLayout(c.s, T_, B, /*has_dropout=*/false, false).size : 0;
    keras_rnn::ForwardOutputs out;
    OP_REQUIRES_OK(ctx, out.Allocate<T>(ctx, tm, T_, B, H, lstm, input_h, input_c, reserve_n));
    if (out.PassEmptyCall<T>(T_, B, lstm, input_h, input_c)) return;

    const KerasIo io = KerasIoFor<T>(tm, T_, B);
    ComputeView<T> x;
    OP_REQUIRES_OK(ctx, x.Init(ctx, ctx->input(kInput), io.swap));
    ComputeOutput<T> y;
    OP_REQUIRES_OK(ctx, y.Init(ctx, out.y, T_, B, H, io.swap));
    OP_REQUIRES_OK(ctx, c.ReadWeights(ctx));

    const bool stream = RnnStreamForwardWeights<T>(T_, B, (c.I + H) * c.G * H);
    Tensor workspace;
    OP_REQUIRES_OK(ctx, keras_rnn::AllocateWorkspace<T>(
                            ctx, RnnWorkspaceSize<T>(c.s, T_, B, false, stream), &workspace));
    RnnForwardArgs<T> a =
        keras_rnn::ForwardArgs<T>(T_, B, lstm, input_h, input_c, c.lengths, out, is_training_);
    a.x = x.data();
    a.y = y.data();
    a.kernel = c.kernel;
    a.recurrent_kernel = c.recurrent_kernel;
    a.bias_w = c.bias_w;
    a.bias_r = c.bias_r;
    a.gate_src = c.gate_src;
    a.stream_weights = stream;
    a.io_batch_major = io.in_place;
    const double weight_elements = double(c.I + H) * c.G * H;
    const CallDevice device(ctx->eigen_device<CPUDevice>(),
                            ForwardCallFlops(T_, B, weight_elements),
                            ForwardOneThreadFlops(weight_elements * sizeof(T)));
    CpuRnn<T>(device.get(), c.s).Forward(a, workspace.flat<T>().data());
    y.Finish(ctx);
  }

 private:
  KerasRnnCall<T> call_;
  bool is_training_ = true;
};

// TfRnn>KerasRNNBackprop: the gradient of TfRnn>KerasRNN from its reserve_space, in Keras' layouts:
// the driver reads the kernels in place and sums the weight gradients in Keras' orientation
// (RnnBackwardArgs::recurrent_kernel), so that a call converts nothing (the round trip through
// opaque params cost a one-step GRU(1024) training step 10 of its 16 ms). Every mode,
// gru_reset_before too (its two recurrent products read R's blocks in place: PhaseProductGrads).
template <typename T>
class KerasRnnBackpropOp : public OpKernel {
 public:
  explicit KerasRnnBackpropOp(OpKernelConstruction* ctx) : OpKernel(ctx), call_(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_input_backprop", &skip_input_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_state_backprop", &skip_state_));
  }

  void Compute(OpKernelContext* ctx) override {
    KerasRnnCall<T> c(call_);
    OP_REQUIRES_OK(ctx, c.Check(ctx));
    const bool tm = c.time_major_, lstm = CellHasCellState(c.mode_);
    const int64_t T_ = c.T_, B = c.B, H = c.H, I = c.I, gh = c.G * H;
    const Tensor& input_h = ctx->input(kInputH);
    const Tensor& input_c = ctx->input(kInputC);
    OP_REQUIRES_OK(ctx, keras_rnn::CheckForwardResults(
                            ctx, kOutput, c.mode_, tm, T_, B, H,
                            RnnReserveLayout(c.s, T_, B, /*has_dropout=*/false, false).size));
    const Tensor& dhn = ctx->input(kOutputHBackprop);
    const Tensor& dcn = ctx->input(kOutputCBackprop);
    const Tensor& reserve = ctx->input(kReserveSpace);
    const bool skip_input = InputGradUnwanted(ctx, skip_input_, 0);
    const bool skip_state = StateGradsUnwanted(ctx, skip_state_, 1, 2, lstm);
    Tensor *dx, *dh0, *dc0, *dkernel, *drkernel, *dbias;
    for (int i = 0; i < 6; ++i) {
      Tensor** out[] = {&dx, &dh0, &dc0, &dkernel, &drkernel, &dbias};
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, ctx->input(i).shape(), out[i]));
    }
    // (an input_c given to a cell without one gets zeros; an LSTM's dc0 is written by the driver,
    // or by PassEmptyCallBackward)
    if (!lstm) std::fill_n(dc0->flat<T>().data(), dc0->NumElements(), T(0));
    if (keras_rnn::PassEmptyCallBackward<T>(T_, B, lstm, skip_state, dhn, dcn, dh0, dc0,
                                            {dx, dkernel, drkernel, dbias})) {
      return;
    }
    OP_REQUIRES_OK(ctx, c.ReadWeights(ctx));
    const KerasIo io = KerasIoFor<T>(tm, T_, B);  // (the forward's)
    ComputeView<T> x, y, dy;
    OP_REQUIRES_OK(ctx, x.Init(ctx, ctx->input(kInput), io.swap));
    OP_REQUIRES_OK(ctx, y.Init(ctx, ctx->input(kOutput), io.swap));
    OP_REQUIRES_OK(ctx, dy.Init(ctx, ctx->input(kOutputBackprop), io.swap));
    ComputeOutput<T> dx_out;
    if (skip_input) {
      ZeroOutputIfRead<T>(ctx, 0, dx);
    } else {
      OP_REQUIRES_OK(ctx, dx_out.Init(ctx, dx, T_, B, I, io.swap));
    }
    const auto dt = tensorflow::DataTypeToEnum<T>::value;
    const bool stream = RnnStreamWeights<T>(T_, B);
    Tensor workspace, bias_grads;
    OP_REQUIRES_OK(ctx, keras_rnn::AllocateWorkspace<T>(
                            ctx,
                            RnnWorkspaceSize<T>(c.s, T_, B, /*backward=*/true, stream,
                                                /*keras_grads=*/true),
                            &workspace));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(dt, TensorShape({2 * gh}), &bias_grads));
    RnnBackwardArgs<T> a = keras_rnn::BackwardArgs<T>(T_, B, lstm, input_h, input_c, c.lengths, dhn,
                                                      dcn, reserve, dh0, dc0, skip_state);
    a.x = x.data();
    a.y = y.data();
    a.dy = dy.data();
    a.dx = skip_input ? nullptr : dx_out.data();
    a.kernel = c.kernel;
    a.recurrent_kernel = c.recurrent_kernel;
    a.gate_src = c.gate_src;
    a.d_kernel = dkernel->flat<T>().data();
    a.d_recurrent_kernel = drkernel->flat<T>().data();
    if (dbias->NumElements() > 0) {  // (no bias: none summed)
      a.d_bias_w = bias_grads.flat<T>().data();
      a.d_bias_r = a.d_bias_w + gh;
    }
    a.grad_gate_src = c.KerasGru() ? KerasRnnCall<T>::kGruSrc : nullptr;
    a.stream_weights = stream;
    a.io_batch_major = io.in_place;
    // The products: twice the forward's flops.
    const CallDevice device(ctx->eigen_device<CPUDevice>(), 4.0 * T_ * B * (I + H) * gh);
    CpuRnn<T>(device.get(), c.s).Backward(a, workspace.flat<T>().data());
    if (!skip_input) dx_out.Finish(ctx);
    // The bias grads in Keras' shape: the GRU's [2, 3H] rows (b_W, b_R), else the one bias that
    // both sides of the gates add (lstm: b_R's; rnn: b_W's, the same grads).
    if (dbias->NumElements() > 0) {
      T* db = dbias->flat<T>().data();
      const T* from = CellHasCellState(c.mode_) ? a.d_bias_r : a.d_bias_w;
      for (int64_t g = 0; g < c.G; ++g) {
        const int64_t to = (a.grad_gate_src ? a.grad_gate_src[g] : g) * H;
        std::copy_n(from + g * H, H, db + to);
        if (c.Gru()) std::copy_n(a.d_bias_r + g * H, H, db + gh + to);
      }
    }
  }

 private:
  KerasRnnCall<T> call_;
  bool skip_input_ = false;
  bool skip_state_ = false;
};

}  // namespace

// TfRnn>KerasRNN and its backprop: float and double (the Keras layers compute 16-bit types in
// float32).
REGISTER_KERNEL_BUILDER(
    Name("TfRnn>KerasRNN").Device(tensorflow::DEVICE_CPU).TypeConstraint<float>("T"),
    KerasRnnOp<float>);
REGISTER_KERNEL_BUILDER(
    Name("TfRnn>KerasRNN").Device(tensorflow::DEVICE_CPU).TypeConstraint<double>("T"),
    KerasRnnOp<double>);
REGISTER_KERNEL_BUILDER(
    Name("TfRnn>KerasRNNBackprop").Device(tensorflow::DEVICE_CPU).TypeConstraint<float>("T"),
    KerasRnnBackpropOp<float>);
REGISTER_KERNEL_BUILDER(
    Name("TfRnn>KerasRNNBackprop").Device(tensorflow::DEVICE_CPU).TypeConstraint<double>("T"),
    KerasRnnBackpropOp<double>);

}  // namespace tf_rnn_ops
