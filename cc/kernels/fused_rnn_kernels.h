// CPU OpKernels of the cuDNN-style fused RNN family's forward and backprop. They check (the rules
// of fused_rnn_rules.h, read out by fused_rnn_attrs.h), convert layouts and dtypes
// (fused_rnn_cpu_views.h), and call the driver (rnn_cpu_driver.h). Each adapts to the version of
// the op it is registered for (V1, V2, V3: whether sequence_lengths, host_reserved, num_proj and
// time_major exist; FusedRnnIO), so the same classes serve our TfRnn> ops (fused_rnn_kernels.cc)
// and TensorFlow's own CudnnRNN* ops (cc/tf_cudnn/). The params ops: fused_rnn_params_kernels.h;
// TfRnn>KerasRNN: keras_rnn_kernels.cc.
#ifndef TF_RNN_OPS_CC_KERNELS_FUSED_RNN_KERNELS_H_
#define TF_RNN_OPS_CC_KERNELS_FUSED_RNN_KERNELS_H_

#define EIGEN_USE_THREADS

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "cc/kernels/fused_rnn_attrs.h"
#include "cc/kernels/fused_rnn_cpu_views.h"
#include "cc/kernels/fused_rnn_params_kernels.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/rnn_cpu_driver.h"
#include "cc/kernels/rnn_params.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

namespace tf_rnn_ops {

// Size in elements of T of a reserve_space holding `n` values of the compute type.
template <typename T>
int64_t ReserveElements(int64_t n) {
  using Acc = typename ComputeType<T>::type;
  return (n * static_cast<int64_t>(sizeof(Acc)) + sizeof(T) - 1) / sizeof(T);
}

// Backprop reads the state before each step from the outputs (rnn_cpu_driver.h), unless these are
// rounded to a 16-bit type: then the forward saves them in the compute type.
template <typename T>
constexpr bool SaveHprev() {
  return !std::is_same<T, typename ComputeType<T>::type>::value;
}

// The reserve_space of a model on CPU, in elements of T.
template <typename T>
int64_t CpuReserveElements(const FusedRnnAttrs& attrs, const FusedRnnInputs& in) {
  return ReserveElements<T>(
      RnnReserveLayout(in.shape, in.seq_len, in.batch, attrs.dropout > 0, SaveHprev<T>()).size);
}

// What the forward and the backprop do alike before calling the driver: the compute-type views of
// the inputs both read (x, h0, c0 where the cell has a cell state, params; transposed when
// batch-major, widened from 16-bit types), the driver's workspace, and the driver arguments these
// give.
template <typename T>
class DriverInputs {
 public:
  using Acc = typename ComputeType<T>::type;

  absl::Status Init(OpKernelContext* ctx, const FusedRnnAttrs& attrs, const FusedRnnIO& io,
                    const FusedRnnInputs& in, bool backprop) {
    const bool swap = !attrs.time_major, lstm = CellHasCellState(in.shape.mode);
    TF_RETURN_IF_ERROR(x_.Init(ctx, ctx->input(io.input), swap));
    TF_RETURN_IF_ERROR(h0_.Init(ctx, ctx->input(io.input_h), swap));
    if (lstm) TF_RETURN_IF_ERROR(c0_.Init(ctx, ctx->input(io.input_c), swap));
    TF_RETURN_IF_ERROR(params_.Init(ctx, ctx->input(io.params), false));
    TF_RETURN_IF_ERROR(ctx->allocate_temp(
        tensorflow::DataTypeToEnum<Acc>::value,
        TensorShape({RnnWorkspaceSize<Acc>(in.shape, in.seq_len, in.batch, backprop)}),
        &workspace_));
    AdviseHugePages(workspace_);
    return absl::OkStatus();
  }

  // The fields RnnForwardArgs and RnnBackwardArgs share.
  template <typename Args>
  void SetArgs(const FusedRnnAttrs& attrs, const FusedRnnInputs& in, Args* a) const {
    a->seq_len = in.seq_len;
    a->batch = in.batch;
    a->x = x_.data();
    a->h0 = h0_.data();
    a->c0 = CellHasCellState(in.shape.mode) ? c0_.data() : nullptr;
    a->params = params_.data();
    a->lengths = in.lengths_or_null();
    a->save_hprev = SaveHprev<T>();
    a->dropout = attrs.dropout;
  }

  Acc* workspace() { return workspace_.flat<Acc>().data(); }

 private:
  ComputeView<T> x_, h0_, c0_, params_;
  Tensor workspace_;
};

template <typename T>
class FusedRnnForwardOp : public OpKernel {
 public:
  using Acc = typename ComputeType<T>::type;
  explicit FusedRnnForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
    OP_REQUIRES_OK(ctx, io_.Init(*this, /*backprop=*/false));
  }

  void Compute(OpKernelContext* ctx) override {
    FusedRnnInputs in;
    OP_REQUIRES_OK(ctx, in.Check(ctx, attrs_, io_));
    const RnnModelShape& s = in.shape;
    const bool lstm = CellHasCellState(s.mode), swap = !attrs_.time_major;
    const int64_t T_ = in.seq_len, B = in.batch, ld = int64_t(s.num_layers) * s.num_dirs;
    const bool training = attrs_.is_training;

    FusedRnnForwardOutputs out;
    OP_REQUIRES_OK(
        ctx, out.Allocate(ctx, attrs_, io_, in, training ? CpuReserveElements<T>(attrs_, in) : 0));
    // Each call that draws dropout masks takes the next masks of this kernel's stream, as
    // TensorFlow's GPU kernels advance their dropout state: a training loop sees fresh masks at
    // every step, and a new kernel with the same seeds replays the same sequence.
    const uint64_t dropout_call =
        attrs_.UsesDropout(s) ? dropout_calls_.fetch_add(1, std::memory_order_relaxed) : 0;
    AdviseHugePages(*out.output);
    AdviseHugePages(*out.reserve);
    if (!lstm) out.output_c->scalar<T>()() = T(0);
    // An empty batch leaves every output empty: nothing to run (the driver would still step through
    // all T time steps, which an empty input lets be up to 2^63 - 1).
    if (B == 0) return;

    DriverInputs<T> inputs;
    OP_REQUIRES_OK(ctx, inputs.Init(ctx, attrs_, io_, in, /*backprop=*/false));
    ComputeOutput<T> y, hn, cn;
    OP_REQUIRES_OK(ctx, y.Init(ctx, out.output, T_, B, s.output_size(), swap));
    OP_REQUIRES_OK(ctx, hn.Init(ctx, out.output_h, ld, B, s.h_out(), swap));
    if (lstm) OP_REQUIRES_OK(ctx, cn.Init(ctx, out.output_c, ld, B, s.num_units, swap));

    RnnForwardArgs<Acc> a;
    inputs.SetArgs(attrs_, in, &a);
    a.y = y.data();
    a.hn = hn.data();
    a.cn = lstm ? cn.data() : nullptr;
    a.reserve = training ? reinterpret_cast<Acc*>(out.reserve->flat<T>().data()) : nullptr;
    a.seed = static_cast<uint64_t>(attrs_.seed);
    a.seed2 = static_cast<uint64_t>(attrs_.seed2);
    a.dropout_call = dropout_call;
    CpuRnn<Acc>(ctx->eigen_device<CPUDevice>(), s).Forward(a, inputs.workspace());
    y.Finish(ctx);
    hn.Finish(ctx);
    if (lstm) cn.Finish(ctx);
  }

 private:
  FusedRnnAttrs attrs_;
  FusedRnnIO io_;
  std::atomic<uint64_t> dropout_calls_{0};  // calls so far that drew dropout masks
};

template <typename T>
class FusedRnnBackwardOp : public OpKernel {
 public:
  using Acc = typename ComputeType<T>::type;
  explicit FusedRnnBackwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
    OP_REQUIRES_OK(ctx, io_.Init(*this, /*backprop=*/true));
    // Only TfRnn>CudnnRNNBackprop has them (TensorFlow's CudnnRNNBackprop ops share this kernel
    // and skip by output_required alone).
    if (ctx->HasAttr("skip_input_backprop")) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_input_backprop", &skip_input_backprop_));
      OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_state_backprop", &skip_state_backprop_));
    }
  }

  void Compute(OpKernelContext* ctx) override {
    FusedRnnInputs in;
    OP_REQUIRES_OK(ctx, in.Check(ctx, attrs_, io_));
    const RnnModelShape& s = in.shape;
    const bool lstm = CellHasCellState(s.mode), swap = !attrs_.time_major;
    const int64_t T_ = in.seq_len, B = in.batch, ld = int64_t(s.num_layers) * s.num_dirs;
    OP_REQUIRES_OK(ctx, in.CheckBackprop(ctx, attrs_, io_));
    const bool skip_input = InputGradUnwanted(ctx, skip_input_backprop_, 0);
    const bool skip_state = StateGradsUnwanted(ctx, skip_state_backprop_, 1, 2, lstm);
    FusedRnnBackwardOutputs out;
    OP_REQUIRES_OK(ctx, out.Allocate(ctx, io_, CpuReserveElements<T>(attrs_, in)));
    AdviseHugePages(*out.dx);
    AdviseHugePages(*out.dparams);
    if (!lstm) out.dc0->flat<T>().setZero();  // other modes ignore input_c
    if (B == 0) {  // every gradient but params' is empty, and params' is zero (as in the forward)
      out.dparams->flat<T>().setZero();
      return;
    }

    DriverInputs<T> inputs;
    OP_REQUIRES_OK(ctx, inputs.Init(ctx, attrs_, io_, in, /*backprop=*/true));
    ComputeView<T> y, dy, dhn, dcn;
    OP_REQUIRES_OK(ctx, y.Init(ctx, ctx->input(io_.output), swap));
    OP_REQUIRES_OK(ctx, dy.Init(ctx, ctx->input(io_.output_backprop), swap));
    OP_REQUIRES_OK(ctx, dhn.Init(ctx, ctx->input(io_.output_h_backprop), swap));
    if (lstm) OP_REQUIRES_OK(ctx, dcn.Init(ctx, ctx->input(io_.output_c_backprop), swap));
    ComputeOutput<T> dx, dh0, dc0, dparams;
    if (skip_input) {
      ZeroOutputIfRead<T>(ctx, 0, out.dx);
    } else {
      OP_REQUIRES_OK(ctx, dx.Init(ctx, out.dx, T_, B, s.input_size, swap));
    }
    OP_REQUIRES_OK(ctx, dh0.Init(ctx, out.dh0, ld, B, s.h_out(), swap));
    if (lstm) OP_REQUIRES_OK(ctx, dc0.Init(ctx, out.dc0, ld, B, s.num_units, swap));
    OP_REQUIRES_OK(ctx, dparams.Init(ctx, out.dparams, 1, 1, s.ParamsSize(), false));

    RnnBackwardArgs<Acc> a;
    inputs.SetArgs(attrs_, in, &a);
    a.dy = dy.data();
    a.dhn = dhn.data();
    a.dcn = lstm ? dcn.data() : nullptr;
    a.reserve = reinterpret_cast<const Acc*>(ctx->input(io_.reserve_space).flat<T>().data());
    a.y = y.data();
    a.dx = skip_input ? nullptr : dx.data();
    a.dh0 = dh0.data();
    a.dc0 = lstm ? dc0.data() : nullptr;
    a.skip_state_grads = skip_state;
    a.dparams = dparams.data();
    CpuRnn<Acc>(ctx->eigen_device<CPUDevice>(), s).Backward(a, inputs.workspace());
    if (!skip_input) dx.Finish(ctx);
    dh0.Finish(ctx);
    if (lstm) dc0.Finish(ctx);
    dparams.Finish(ctx);
  }

 private:
  FusedRnnAttrs attrs_;
  FusedRnnIO io_;
  bool skip_input_backprop_ = false;
  bool skip_state_backprop_ = false;
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_FUSED_RNN_KERNELS_H_
