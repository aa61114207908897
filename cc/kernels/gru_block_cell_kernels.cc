// CPU kernels of TfRnn>GRUBlockCell and TfRnn>GRUBlockCellGrad: validate the inputs, allocate,
// call the functors of gru_block_cell_functor.h. float and double are computed natively; half and
// bfloat16 are converted to float, computed, and converted back.

#define EIGEN_USE_THREADS

#include <cstdint>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "cc/kernels/gru_block_cell_functor.h"
#include "cc/kernels/kernel_util.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

namespace tf_rnn_ops {
namespace {

using ::tensorflow::DataTypeToEnum;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::TTypes;
using CPUDevice = Eigen::ThreadPoolDevice;

// Inputs and outputs in the compute type CT: the tensors themselves when CT == T, float copies
// otherwise.
template <typename T, typename CT>
class Converted {
 public:
  static constexpr bool kSame = std::is_same_v<T, CT>;

  // The input `index` as a CT tensor.
  static absl::Status Input(OpKernelContext* ctx, int index, Tensor* out) {
    const Tensor& in = ctx->input(index);
    if constexpr (kSame) {
      *out = in;
    } else {
      TF_RETURN_IF_ERROR(ctx->allocate_temp(DataTypeToEnum<CT>::value, in.shape(), out));
      if (in.NumElements() > 0) {
        out->flat<CT>().device(ctx->eigen_device<CPUDevice>()) = in.flat<T>().template cast<CT>();
      }
    }
    return absl::OkStatus();
  }

  // Output `index`: allocated, and (when CT != T) a CT temporary in *compute to write into.
  static absl::Status Output(OpKernelContext* ctx, int index, const TensorShape& shape,
                             Tensor** out, Tensor* compute) {
    TF_RETURN_IF_ERROR(ctx->allocate_output(index, shape, out));
    if constexpr (kSame) {
      *compute = **out;
    } else {
      TF_RETURN_IF_ERROR(ctx->allocate_temp(DataTypeToEnum<CT>::value, shape, compute));
    }
    return absl::OkStatus();
  }

  // Copies a computed CT temporary back into its output.
  static void Finish(OpKernelContext* ctx, const Tensor& compute, Tensor* out) {
    if constexpr (!kSame) {
      if (out->NumElements() > 0) {
        out->flat<T>().device(ctx->eigen_device<CPUDevice>()) =
            compute.flat<CT>().template cast<T>();
      }
    }
  }
};

template <typename T>
class GRUBlockCellOp : public OpKernel {
 public:
  explicit GRUBlockCellOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    using CT = typename ComputeType<T>::type;
    using Conv = Converted<T, CT>;
    GRUBlockCellSizes s;  // the checks the GPU kernels share (kernel_util.h)
    OP_REQUIRES_OK(ctx, ValidateGRUBlockCellInputs(ctx, /*with_grad_inputs=*/false, &s));

    Tensor in_ct[6];
    for (int i = 0; i < 6; ++i) OP_REQUIRES_OK(ctx, Conv::Input(ctx, i, &in_ct[i]));
    const Tensor* in = in_ct;

    const TensorShape cell_shape({s.batch, s.cell});
    Tensor* out[4];
    Tensor out_ct[4];
    for (int i = 0; i < 4; ++i) {
      OP_REQUIRES_OK(ctx, Conv::Output(ctx, i, cell_shape, &out[i], &out_ct[i]));
    }

    Tensor x_h_prev, x_h_prevr, r_u_bar;
    const auto dt = DataTypeToEnum<CT>::value;
    const TensorShape wide({s.batch, s.input + s.cell});
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(dt, wide, &x_h_prev));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(dt, wide, &x_h_prevr));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(dt, TensorShape({s.batch, 2 * s.cell}), &r_u_bar));

    functor::GRUBlockCellFprop<CPUDevice, CT>()(
        ctx, ctx->eigen_device<CPUDevice>(), s, in[0].matrix<CT>(), in[1].matrix<CT>(),
        in[2].matrix<CT>(), in[3].matrix<CT>(), in[4].vec<CT>(), in[5].vec<CT>(),
        out_ct[0].matrix<CT>(), out_ct[1].matrix<CT>(), out_ct[2].matrix<CT>(),
        out_ct[3].matrix<CT>(), x_h_prev.matrix<CT>(), x_h_prevr.matrix<CT>(),
        r_u_bar.matrix<CT>());

    for (int i = 0; i < 4; ++i) Conv::Finish(ctx, out_ct[i], out[i]);
  }
};

template <typename T>
class GRUBlockCellGradOp : public OpKernel {
 public:
  explicit GRUBlockCellGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    using CT = typename ComputeType<T>::type;
    using Conv = Converted<T, CT>;
    GRUBlockCellSizes s;
    OP_REQUIRES_OK(ctx, ValidateGRUBlockCellInputs(ctx, /*with_grad_inputs=*/true, &s));

    Tensor in_ct[10];
    for (int i = 0; i < 10; ++i) {
      if (i == 4 || i == 5) continue;  // b_ru, b_c do not enter the gradient
      OP_REQUIRES_OK(ctx, Conv::Input(ctx, i, &in_ct[i]));
    }
    const Tensor* in = in_ct;

    const TensorShape shapes[4] = {TensorShape({s.batch, s.input}),      // d_x
                                   TensorShape({s.batch, s.cell}),       // d_h_prev
                                   TensorShape({s.batch, s.cell}),       // d_c_bar
                                   TensorShape({s.batch, 2 * s.cell})};  // d_r_bar_u_bar
    Tensor* out[4];
    Tensor out_ct[4];
    for (int i = 0; i < 4; ++i) {
      OP_REQUIRES_OK(ctx, Conv::Output(ctx, i, shapes[i], &out[i], &out_ct[i]));
    }

    Tensor d_x_c_h_prevr, d_x_ru_h_prev_ru;
    const auto dt = DataTypeToEnum<CT>::value;
    const TensorShape wide({s.batch, s.input + s.cell});
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(dt, wide, &d_x_c_h_prevr));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(dt, wide, &d_x_ru_h_prev_ru));

    functor::GRUBlockCellBprop<CPUDevice, CT>()(
        ctx, ctx->eigen_device<CPUDevice>(), s, in[0].matrix<CT>(), in[1].matrix<CT>(),
        in[2].matrix<CT>(), in[3].matrix<CT>(), in[6].matrix<CT>(), in[7].matrix<CT>(),
        in[8].matrix<CT>(), in[9].matrix<CT>(), out_ct[0].matrix<CT>(), out_ct[1].matrix<CT>(),
        out_ct[2].matrix<CT>(), out_ct[3].matrix<CT>(), d_x_c_h_prevr.matrix<CT>(),
        d_x_ru_h_prev_ru.matrix<CT>());

    for (int i = 0; i < 4; ++i) Conv::Finish(ctx, out_ct[i], out[i]);
  }
};

#define TF_RNN_OPS_REGISTER_GRU_CPU(T)                                                        \
  REGISTER_KERNEL_BUILDER(                                                                    \
      Name("TfRnn>GRUBlockCell").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),     \
      GRUBlockCellOp<T>);                                                                     \
  REGISTER_KERNEL_BUILDER(                                                                    \
      Name("TfRnn>GRUBlockCellGrad").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      GRUBlockCellGradOp<T>);

TF_RNN_OPS_REGISTER_GRU_CPU(float)
TF_RNN_OPS_REGISTER_GRU_CPU(double)
TF_RNN_OPS_REGISTER_GRU_CPU(Eigen::half)
TF_RNN_OPS_REGISTER_GRU_CPU(Eigen::bfloat16)

#undef TF_RNN_OPS_REGISTER_GRU_CPU

}  // namespace
}  // namespace tf_rnn_ops
