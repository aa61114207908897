// DEVICE_GPU kernels of TfRnn>GRUBlockCell and TfRnn>GRUBlockCellGrad: the CPU kernels' checks
// (ValidateGRUBlockCellInputs, kernel_util.h), outputs allocated through TensorFlow, and the
// framework-free CUDA library (cc/cuda/gru_block_cell_cuda.h) on the op's stream. float and double
// natively; half and bfloat16 computed in float. Built into tf_rnn_ops/_tf_rnn_ops_gpu.so only
// (cc/cuda/cuda.mk), which a CPU-only installation never loads.
#include <cstdint>

#include "cc/cuda/cuda_compat.h"
#include "cc/cuda/gru_block_cell_cuda.h"
#include "cc/kernels/kernel_util.h"
#include "cc/kernels/kernel_util_gpu.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"

namespace tf_rnn_ops {
namespace gpu {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;

// What both kernels do once their outputs are allocated: the op's stream and cuBLAS handle, the
// kInputs inputs and the four outputs as Acc<T> device buffers (16-bit types converted to float),
// the library's workspace, the call `run(blas, stream, in, out, workspace)` and the outputs
// converted back.
template <typename T, int kInputs, typename Run>
void RunCellOnGpu(OpKernelContext* ctx, const GRUBlockCellSizes& s, Tensor* const (&out)[4],
                  Run&& run) {
  GpuCall call;
  OP_REQUIRES_OK(ctx, call.Init(ctx, cuda::GruBlockCellWorkspaceBytes(s.batch, s.input, s.cell,
                                                                      sizeof(Acc<T>))));
  Tensor in_holder[kInputs], out_holder[4];
  const Acc<T>* in[kInputs];
  Acc<T>* o[4];
  for (int i = 0; i < kInputs; ++i)
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(i), &in_holder[i], &in[i]));
  for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, out[i], &out_holder[i], &o[i]));
  OP_REQUIRES_OK(ctx, FromCuda(run(call.blas.get(), call.stream, in, o, call.ws)));
  for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, out[i], out_holder[i]));
}

template <typename T>
class GRUBlockCellGPUOp : public OpKernel {
 public:
  explicit GRUBlockCellGPUOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    GRUBlockCellSizes s;
    OP_REQUIRES_OK(ctx, ValidateGRUBlockCellInputs(ctx, /*with_grad_inputs=*/false, &s));
    Tensor* out[4];
    for (int i = 0; i < 4; ++i)
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, TensorShape({s.batch, s.cell}), &out[i]));
    if (s.batch == 0 || s.cell == 0) return;
    // inputs x, h_prev, w_ru, w_c, b_ru, b_c; outputs r, u, c, h
    RunCellOnGpu<T, 6>(ctx, s, out,
                       [&](cublasHandle_t blas, cudaStream_t stream, const Acc<T>* const* in,
                           Acc<T>* const* o, void* ws) {
                         return cuda::GruBlockCellForward<Acc<T>>(
                             blas, stream, s.batch, s.input, s.cell, in[0], in[1], in[2], in[3],
                             in[4], in[5], o[0], o[1], o[2], o[3], ws);
                       });
  }
};

template <typename T>
class GRUBlockCellGradGPUOp : public OpKernel {
 public:
  explicit GRUBlockCellGradGPUOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    GRUBlockCellSizes s;
    OP_REQUIRES_OK(ctx, ValidateGRUBlockCellInputs(ctx, /*with_grad_inputs=*/true, &s));
    Tensor* out[4];
    const TensorShape shapes[4] = {TensorShape({s.batch, s.input}), TensorShape({s.batch, s.cell}),
                                   TensorShape({s.batch, s.cell}),
                                   TensorShape({s.batch, 2 * s.cell})};
    for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(ctx, ctx->allocate_output(i, shapes[i], &out[i]));
    if (s.batch == 0) return;
    if (s.cell == 0) {  // nothing depends on x
      OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, out[0]));
      return;
    }
    // inputs x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h; outputs d_x, d_h_prev, d_c_bar,
    // d_r_bar_u_bar
    RunCellOnGpu<T, 10>(ctx, s, out,
                        [&](cublasHandle_t blas, cudaStream_t stream, const Acc<T>* const* in,
                            Acc<T>* const* o, void* ws) {
                          return cuda::GruBlockCellBackward<Acc<T>>(
                              blas, stream, s.batch, s.input, s.cell, in[0], in[1], in[2], in[3],
                              in[4], in[5], in[6], in[7], in[8], in[9], o[0], o[1], o[2], o[3], ws);
                        });
  }
};

#define TF_RNN_REGISTER_GPU(T)                                                                  \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>GRUBlockCell").TF_RNN_GLUE_DEVICE.TypeConstraint<T>("T"), \
                          GRUBlockCellGPUOp<T>);                                                \
  REGISTER_KERNEL_BUILDER(                                                                      \
      Name("TfRnn>GRUBlockCellGrad").TF_RNN_GLUE_DEVICE.TypeConstraint<T>("T"),                 \
      GRUBlockCellGradGPUOp<T>);

TF_RNN_REGISTER_GPU(float)
TF_RNN_REGISTER_GPU(double)
TF_RNN_REGISTER_GPU(Eigen::half)
TF_RNN_REGISTER_GPU(Eigen::bfloat16)
#undef TF_RNN_REGISTER_GPU

}  // namespace
}  // namespace gpu
}  // namespace tf_rnn_ops
