// TfRnn>KerasRNN's CPU kernel and its registration. It runs the fused family's CPU driver
// (rnn_cpu_driver.h) on a Keras cell's own weights and checks with the family's rules
// (fused_rnn_rules.h).
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

// TfRnn>KerasRNN: one unidirectional layer from a Keras cell's own weights (kernel [I, G·H],
// recurrent_kernel [H, G·H], bias as Keras shapes it), so that a Keras layer's call converts
// nothing (converting to opaque params and packing them cost more than a one-step call's work).
// The driver reads the kernels in place: packed once per call, or, for few rows (B·T <=
// kStreamMaxRows, float), streamed as stored. The reserve_space is that of TfRnn>CudnnRNN for the
// same model, so the gradient runs TfRnn>CudnnRNNBackprop (tf_rnn_ops/cudnn_rnn.py).
template <typename T>
class KerasRnnOp : public OpKernel {
 public:
  // The op's inputs (cc/ops/fused_rnn_ops.cc, TfRnn>KerasRNN).
  enum Input {
    kInput = 0,
    kInputH,
    kInputC,
    kKernel,
    kRecurrentKernel,
    kBias,
    kSequenceLengths,
  };

  explicit KerasRnnOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string mode;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("rnn_mode", &mode));
    OP_REQUIRES_OK(ctx, RuleStatus(fused_rnn::ParseRnnMode(mode, &mode_)));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("is_training", &is_training_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("time_major", &time_major_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(kInput);
    const Tensor& input_h = ctx->input(kInputH);
    const Tensor& input_c = ctx->input(kInputC);
    const Tensor& kernel = ctx->input(kKernel);
    const Tensor& rkernel = ctx->input(kRecurrentKernel);
    const Tensor& bias = ctx->input(kBias);
    const Tensor& seq_lengths = ctx->input(kSequenceLengths);
    const bool tm = time_major_, lstm = CellHasCellState(mode_), gru = mode_ == RnnMode::kGru;
    const int64_t G = NumGates(mode_);
    // Keras GRU with reset_after=False: the same z, r, h column blocks, one [3H] input bias.
    const bool gru_reset_before = mode_ == RnnMode::kGruResetBefore;
    const bool keras_gru = gru || gru_reset_before;
    OP_REQUIRES(ctx, input.dims() == 3,
                InvalidArgument("input must be 3-D [", tm ? "T, B, I" : "B, T, I", "], got shape ",
                                input.shape().DebugString()));
    const int64_t T_ = input.dim_size(tm ? 0 : 1), B = input.dim_size(tm ? 1 : 0);
    const int64_t I = input.dim_size(2);
    OP_REQUIRES_OK(ctx, keras_rnn::CheckRecurrentKernel(rkernel, mode_));
    const int64_t H = rkernel.dim_size(0), gh = G * H;
    OP_REQUIRES(
        ctx, kernel.dims() == 2 && kernel.dim_size(0) == I && kernel.dim_size(1) == gh,
        InvalidArgument("kernel must be [input size ", I, ", ", gh,
                        "] (input's last dimension; recurrent_kernel's columns), got shape ",
                        kernel.shape().DebugString()));
    OP_REQUIRES_OK(ctx, keras_rnn::CheckStates(input_h, input_c, mode_, B, H));
    const TensorShape bias_shape = gru ? TensorShape({2, gh}) : TensorShape({gh});
    OP_REQUIRES(
        ctx, bias.NumElements() == 0 || bias.shape() == bias_shape,
        InvalidArgument("bias must have shape ", bias_shape.DebugString(), " (Keras' for rnn_mode ",
                        RnnModeName(), ") or no elements (use_bias=False), got ",
                        bias.shape().DebugString()));
    OP_REQUIRES_OK(ctx, keras_rnn::CheckSequenceLengthsShape(seq_lengths, B));
    // The fused family's rules for one unidirectional layer (input_size >= 1 among them), and its
    // buffer bound.
    fused_rnn::ModelSpec spec;
    spec.mode = mode_;
    spec.num_units = H;
    spec.input_size = I;
    RnnModelShape s;
    if (const std::string error = fused_rnn::MakeModelShape(spec, &s); !error.empty()) {
      ctx->CtxFailure(InvalidArgument(error,
                                      " (input_size is input's last dimension, num_units "
                                      "recurrent_kernel's first)"));
      return;
    }
    OP_REQUIRES(ctx, fused_rnn::BuffersFit(s, T_, B),
                InvalidArgument(fused_rnn::BuffersTooLarge(
                    absl::StrCat("input (", input.shape().DebugString(), ") and kernels (",
                                 kernel.shape().DebugString(), ")"))));
    const int32_t* len = nullptr;
    OP_REQUIRES_OK(ctx, keras_rnn::CheckSequenceLengthValues(seq_lengths, B, T_, &len));
    std::vector<int32_t> lengths;
    if (len != nullptr) lengths.assign(len, len + B);

    Tensor *output, *output_h, *output_c, *reserve;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            0, tm ? TensorShape({T_, B, H}) : TensorShape({B, T_, H}), &output));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, input_h.shape(), &output_h));
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output(2, lstm ? input_c.shape() : TensorShape({}), &output_c));
    const int64_t reserve_n =
        is_training_ ? RnnReserveLayout(s, T_, B, /*has_dropout=*/false, false).size : 0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({reserve_n}), &reserve));
    AdviseHugePages(*output);
    AdviseHugePages(*reserve);
    if (!lstm) output_c->scalar<T>()() = T(0);
    if (B == 0 || T_ == 0) {  // nothing to run: the states pass through
      if (B > 0) {
        std::copy_n(input_h.flat<T>().data(), B * H, output_h->flat<T>().data());
        if (lstm) std::copy_n(input_c.flat<T>().data(), B * H, output_c->flat<T>().data());
      }
      return;
    }

    // Batch-major [B, T, ·] is the driver's [T, B, ·] as it is in memory when B or T is 1.
    const bool swap = !tm && B > 1 && T_ > 1;
    ComputeView<T> x;
    OP_REQUIRES_OK(ctx, x.Init(ctx, input, swap));
    ComputeOutput<T> y;
    OP_REQUIRES_OK(ctx, y.Init(ctx, output, T_, B, H, swap));

    // Biases in the canonical gate order (2·G·H values); the GRU's kernels are permuted only where
    // the products cannot read them permuted (other types than float: Eigen's product).
    static const int kGruSrc[3] = {1, 0, 2};  // canonical r, z, h from Keras' z, r, h blocks
    const int* gate_src = keras_gru ? kGruSrc : nullptr;
    Tensor biases;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                           TensorShape({2 * gh}), &biases));
    T* b_w = biases.flat<T>().data();
    T* b_r = b_w + gh;
    std::fill_n(b_w, 2 * gh, T(0));
    if (bias.NumElements() > 0) {
      const T* kb = bias.flat<T>().data();
      if (gru) {
        for (int g = 0; g < 3; ++g) {
          std::copy_n(kb + gate_src[g] * H, H, b_w + g * H);
          std::copy_n(kb + gh + gate_src[g] * H, H, b_r + g * H);
        }
      } else if (gru_reset_before) {
        for (int g = 0; g < 3; ++g) std::copy_n(kb + gate_src[g] * H, H, b_w + g * H);
      } else {
        std::copy_n(kb, gh, lstm ? b_r : b_w);  // Keras' one bias: b_R (lstm) or b_W (rnn)
      }
    }
    const T* kptr = kernel.flat<T>().data();
    const T* rptr = rkernel.flat<T>().data();
    Tensor permuted;
    if (keras_gru && !std::is_same<T, float>::value) {
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                             TensorShape({(I + H) * gh}), &permuted));
      T* pk = permuted.flat<T>().data();
      for (int64_t row = 0; row < I + H; ++row) {
        const T* src = row < I ? kptr + row * gh : rptr + (row - I) * gh;
        for (int g = 0; g < 3; ++g) std::copy_n(src + gate_src[g] * H, H, pk + row * gh + g * H);
      }
      kptr = pk;
      rptr = pk + I * gh;
      gate_src = nullptr;
    }

    const bool stream = RnnStreamWeights<T>(T_, B);
    Tensor workspace;
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                      TensorShape({RnnWorkspaceSize<T>(s, T_, B, false, stream)}),
                                      &workspace));
    AdviseHugePages(workspace);
    RnnForwardArgs<T> a;
    a.seq_len = T_;
    a.batch = B;
    a.x = x.data();
    a.h0 = input_h.flat<T>().data();
    a.c0 = lstm ? input_c.flat<T>().data() : nullptr;
    a.lengths = lengths.empty() ? nullptr : lengths.data();
    a.y = y.data();
    a.hn = output_h->flat<T>().data();
    a.cn = lstm ? output_c->flat<T>().data() : nullptr;
    a.reserve = is_training_ ? reserve->flat<T>().data() : nullptr;
    a.kernel = kptr;
    a.recurrent_kernel = rptr;
    a.bias_w = b_w;
    a.bias_r = b_r;
    a.gate_src = gate_src;
    a.stream_weights = stream;
    CpuRnn<T>(ctx->eigen_device<CPUDevice>(), s).Forward(a, workspace.flat<T>().data());
    y.Finish(ctx);
  }

 private:
  const char* RnnModeName() const { return tf_rnn_ops::RnnModeName(mode_); }

  RnnMode mode_ = RnnMode::kLstm;
  bool is_training_ = true;
  bool time_major_ = false;
};

}  // namespace

// TfRnn>KerasRNN: float and double (the Keras layers compute 16-bit types in float32).
REGISTER_KERNEL_BUILDER(
    Name("TfRnn>KerasRNN").Device(tensorflow::DEVICE_CPU).TypeConstraint<float>("T"),
    KerasRnnOp<float>);
REGISTER_KERNEL_BUILDER(
    Name("TfRnn>KerasRNN").Device(tensorflow::DEVICE_CPU).TypeConstraint<double>("T"),
    KerasRnnOp<double>);

}  // namespace tf_rnn_ops
