// TensorFlow glue of the CUDA layer: DEVICE_GPU kernels of the TfRnn> GRU block cell and fused RNN ops.
//
// Built into its own library, tf_rnn_ops/_tf_rnn_ops_gpu.so (`make gpu`), loaded after the main library
// (which registers the ops) and only where TensorFlow has a GPU; a CPU-only installation never loads it.
// The kernels validate with the CPU kernels' own checks (RnnAttrs / RnnInputs, kernel_util.h),
// allocate outputs and scratch through TensorFlow, and call the framework-free CUDA layer on the op's
// stream with the device's cuBLAS handle (ScopedBlas). float and double natively; half and bfloat16
// computed in float (inputs converted on the GPU, outputs converted back), as the CPU kernels do.
#define EIGEN_USE_GPU

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cc/cuda/convert_cuda.h"
#include "cc/cuda/cuda_compat.h"
#include "cc/cuda/fused_rnn_cuda.h"
#include "cc/cuda/gru_block_cell_cuda.h"
#include "cc/kernels/cudnn_rnn_kernels.h"
#include "cc/kernels/kernel_util.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"
#include "tsl/platform/tensor_float_32_utils.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_rnn_ops {
namespace {

using tensorflow::DEVICE_GPU;

absl::Status FromCuda(const cuda::Status& s) {
  if (s.ok()) return absl::OkStatus();
  if (s.code() == cuda::StatusCode::kInvalidArgument) return absl::InvalidArgumentError(s.message());
  return absl::InternalError(absl::StrCat("tf_rnn_ops CUDA kernel failed: ", s.message()));
}

cudaStream_t StreamOf(OpKernelContext* ctx) { return ctx->eigen_gpu_device().stream(); }

// The cuBLAS handle of the op's device, bound to the op's stream, held under the device's lock until
// this object goes (the end of Compute, once everything is enqueued). One handle per device, as
// TensorFlow's own BLAS support has: a handle per host thread would give each of TensorFlow's many
// inter-op threads its own handle and cuBLAS workspace, allocated outside TensorFlow's allocator. TF32
// is allowed for float32 products when TensorFlow allows it
// (tf.config.experimental.enable_tensor_float_32_execution).
class ScopedBlas {
 public:
  absl::Status Init(cudaStream_t stream) {
    int device = 0;
    cudaError_t err = cudaStreamGetDevice(stream, &device);
    if (err == cudaSuccess) err = cudaSetDevice(device);  // a handle belongs to the current device
    if (err != cudaSuccess) {
      return absl::InternalError(absl::StrCat("tf_rnn_ops: no CUDA device for the op's stream: ",
                                              cudaGetErrorString(err)));
    }
    DeviceBlas& blas = OfDevice(device);
    lock_ = std::unique_lock<std::mutex>(blas.mu);
    if (blas.handle == nullptr) {
      const cublasStatus_t st = cublasCreate(&blas.handle);
      if (st != CUBLAS_STATUS_SUCCESS) {
        blas.handle = nullptr;
        return absl::InternalError(absl::StrCat("tf_rnn_ops: cublasCreate failed: ", cublasGetStatusString(st)));
      }
    }
    const cublasMath_t math =
        tsl::tensor_float_32_execution_enabled() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    if (cublasSetMathMode(blas.handle, math) != CUBLAS_STATUS_SUCCESS ||
        cublasSetPointerMode(blas.handle, CUBLAS_POINTER_MODE_HOST) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(blas.handle, stream) != CUBLAS_STATUS_SUCCESS) {
      return absl::InternalError("tf_rnn_ops: could not configure the cuBLAS handle");
    }
    handle_ = blas.handle;
    return absl::OkStatus();
  }
  cublasHandle_t get() const { return handle_; }

 private:
  struct DeviceBlas {
    std::mutex mu;
    cublasHandle_t handle = nullptr;  // lives as long as the process
  };
  static DeviceBlas& OfDevice(int device) {
    static std::mutex mu;
    static auto* devices = new std::unordered_map<int, std::unique_ptr<DeviceBlas>>();
    std::lock_guard<std::mutex> lock(mu);
    std::unique_ptr<DeviceBlas>& entry = (*devices)[device];
    if (entry == nullptr) entry = std::make_unique<DeviceBlas>();
    return *entry;
  }

  std::unique_lock<std::mutex> lock_;
  cublasHandle_t handle_ = nullptr;
};

// Device scratch of `bytes` bytes, 256-byte aligned, alive as long as `holder`.
absl::Status Scratch(OpKernelContext* ctx, size_t bytes, Tensor* holder, void** out) {
  *out = nullptr;
  if (bytes == 0) return absl::OkStatus();
  TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DT_INT8,
                                        TensorShape({static_cast<int64_t>(bytes) + 256}), holder));
  const uintptr_t p = reinterpret_cast<uintptr_t>(holder->flat<int8_t>().data());
  *out = reinterpret_cast<void*>((p + 255) / 256 * 256);
  return absl::OkStatus();
}

template <typename T>
cuda::DType DTypeOf() {
  return sizeof(T) == sizeof(double) ? cuda::DType::kFloat64 : cuda::DType::kFloat32;
}

template <typename T>
absl::Status ZeroTensor(OpKernelContext* ctx, Tensor* t) {
  if (t->NumElements() == 0) return absl::OkStatus();
  const cudaError_t err = cudaMemsetAsync(t->flat<T>().data(), 0, t->NumElements() * sizeof(T), StreamOf(ctx));
  if (err != cudaSuccess) return absl::InternalError(cudaGetErrorString(err));
  return absl::OkStatus();
}

template <typename T>
const T* DataOrNull(const Tensor& t) {
  return t.NumElements() > 0 ? t.flat<T>().data() : nullptr;
}
template <typename T>
T* DataOrNull(Tensor* t) {
  return t->NumElements() > 0 ? t->flat<T>().data() : nullptr;
}

// The type the CUDA layer computes in for tensors of type T: float for half and bfloat16.
template <typename T>
using Acc = typename ComputeType<T>::type;
template <typename T>
constexpr bool kIsHalf16 = !std::is_same_v<Acc<T>, T>;  // half, bfloat16: computed in float
template <typename T>
cuda::Half16 Half16Of() {
  return std::is_same_v<T, Eigen::bfloat16> ? cuda::Half16::kBFloat16 : cuda::Half16::kFloat16;
}

// An input in the compute type: the tensor's own data, or a float copy made on the GPU (kept in holder).
template <typename T>
absl::Status InputAs(OpKernelContext* ctx, const Tensor& t, Tensor* holder, const Acc<T>** out) {
  if constexpr (!kIsHalf16<T>) {
    *out = DataOrNull<T>(t);
    return absl::OkStatus();
  } else {
    *out = nullptr;
    if (t.NumElements() == 0) return absl::OkStatus();
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DT_FLOAT, t.shape(), holder));
    float* dst = holder->flat<float>().data();
    TF_RETURN_IF_ERROR(FromCuda(cuda::Half16ToFloat(StreamOf(ctx), Half16Of<T>(), t.NumElements(),
                                                    reinterpret_cast<const uint16_t*>(t.flat<T>().data()), dst)));
    *out = dst;
    return absl::OkStatus();
  }
}

// An output in the compute type: the tensor's own data, or float scratch (in holder) that OutputDone
// converts into the tensor.
template <typename T>
absl::Status OutputAs(OpKernelContext* ctx, Tensor* t, Tensor* holder, Acc<T>** out) {
  if constexpr (!kIsHalf16<T>) {
    *out = DataOrNull<T>(t);
    return absl::OkStatus();
  } else {
    *out = nullptr;
    if (t->NumElements() == 0) return absl::OkStatus();
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DT_FLOAT, t->shape(), holder));
    *out = holder->flat<float>().data();
    return absl::OkStatus();
  }
}

template <typename T>
absl::Status OutputDone(OpKernelContext* ctx, Tensor* t, const Tensor& holder) {
  if constexpr (kIsHalf16<T>) {
    if (t->NumElements() == 0) return absl::OkStatus();
    return FromCuda(cuda::FloatToHalf16(StreamOf(ctx), Half16Of<T>(), t->NumElements(), holder.flat<float>().data(),
                                        reinterpret_cast<uint16_t*>(t->flat<T>().data())));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------
// GRU block cell: the CPU kernels' checks (cc/kernels/kernel_util.h).

template <typename T>
class GruBlockCellGpuOp : public OpKernel {
 public:
  explicit GruBlockCellGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    GRUBlockCellSizes s;
    OP_REQUIRES_OK(ctx, ValidateGRUBlockCellInputs(ctx, /*with_grad_inputs=*/false, &s));
    Tensor* out[4];
    for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(ctx, ctx->allocate_output(i, TensorShape({s.batch, s.cell}), &out[i]));
    if (s.batch == 0 || s.cell == 0) return;
    const cudaStream_t stream = StreamOf(ctx);
    ScopedBlas blas;
    OP_REQUIRES_OK(ctx, blas.Init(stream));
    Tensor in_holder[6], out_holder[4], ws_holder;
    const Acc<T>* in[6];
    Acc<T>* o[4];
    for (int i = 0; i < 6; ++i) OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(i), &in_holder[i], &in[i]));
    for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, out[i], &out_holder[i], &o[i]));
    void* ws;
    OP_REQUIRES_OK(ctx, Scratch(ctx, cuda::GruBlockCellWorkspaceBytes(s.batch, s.input, s.cell, sizeof(Acc<T>)),
                                &ws_holder, &ws));
    OP_REQUIRES_OK(ctx, FromCuda(cuda::GruBlockCellForward<Acc<T>>(blas.get(), stream, s.batch, s.input, s.cell,
                                                                   in[0], in[1], in[2], in[3], in[4], in[5], o[0],
                                                                   o[1], o[2], o[3], ws)));
    for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, out[i], out_holder[i]));
  }
};

template <typename T>
class GruBlockCellGradGpuOp : public OpKernel {
 public:
  explicit GruBlockCellGradGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    GRUBlockCellSizes s;
    OP_REQUIRES_OK(ctx, ValidateGRUBlockCellInputs(ctx, /*with_grad_inputs=*/true, &s));
    Tensor* out[4];
    const TensorShape shapes[4] = {TensorShape({s.batch, s.input}), TensorShape({s.batch, s.cell}),
                                   TensorShape({s.batch, s.cell}), TensorShape({s.batch, 2 * s.cell})};
    for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(ctx, ctx->allocate_output(i, shapes[i], &out[i]));
    if (s.batch == 0) return;
    if (s.cell == 0) {  // nothing depends on x
      OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, out[0]));
      return;
    }
    const cudaStream_t stream = StreamOf(ctx);
    ScopedBlas blas;
    OP_REQUIRES_OK(ctx, blas.Init(stream));
    Tensor in_holder[10], out_holder[4], ws_holder;
    const Acc<T>* in[10];
    Acc<T>* o[4];
    for (int i = 0; i < 10; ++i) OP_REQUIRES_OK(ctx, InputAs<T>(ctx, ctx->input(i), &in_holder[i], &in[i]));
    for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, out[i], &out_holder[i], &o[i]));
    void* ws;
    OP_REQUIRES_OK(ctx, Scratch(ctx, cuda::GruBlockCellWorkspaceBytes(s.batch, s.input, s.cell, sizeof(Acc<T>)),
                                &ws_holder, &ws));
    OP_REQUIRES_OK(ctx, FromCuda(cuda::GruBlockCellBackward<Acc<T>>(
                            blas.get(), stream, s.batch, s.input, s.cell, in[0], in[1], in[2], in[3], in[4], in[5],
                            in[6], in[7], in[8], in[9], o[0], o[1], o[2], o[3], ws)));
    for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, out[i], out_holder[i]));
  }
};

// ---------------------------------------------------------------------------------------------------
// Fused RNN: inputs and attributes checked by the CPU kernels' RnnAttrs / RnnInputs.

cuda::RnnConfig MakeConfig(const RnnAttrs& attrs, const RnnInputs& in, bool is_training) {
  cuda::RnnConfig config;
  config.shape = in.shape;
  config.max_time = in.seq_len;
  config.batch = in.batch;
  config.time_major = attrs.time_major;
  config.is_training = is_training;
  config.dropout = is_training ? attrs.dropout : 0.0;
  config.seed = static_cast<uint64_t>(attrs.seed);  // as the CPU kernels: the same dropout masks
  config.seed2 = static_cast<uint64_t>(attrs.seed2);
  return config;
}

// reserve_space is a tensor of T holding the compute type's reserve bytes.
template <typename T>
int64_t ReserveElementsFor(const cuda::RnnConfig& config) {
  const size_t bytes = cuda::RnnReserveBytes(config, DTypeOf<Acc<T>>());
  return static_cast<int64_t>((bytes + sizeof(T) - 1) / sizeof(T));
}

template <typename T>
class CudnnRnnForwardGpuOp : public OpKernel {
 public:
  explicit CudnnRnnForwardGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, attrs_.Parse(ctx)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& input_h = ctx->input(1);
    const Tensor& input_c = ctx->input(2);
    const Tensor& params = ctx->input(3);
    RnnInputs in;
    OP_REQUIRES_OK(ctx, in.Check(attrs_, input, input_h, input_c, params, &ctx->input(4)));
    const RnnModelShape& s = in.shape;
    const bool lstm = s.mode == RnnMode::kLstm;
    cuda::RnnConfig config = MakeConfig(attrs_, in, attrs_.is_training);
    // As the CPU kernel: each call that draws dropout masks takes the next ones of this kernel.
    if (cuda::RnnUsesDropout(config)) config.dropout_call = dropout_calls_.fetch_add(1, std::memory_order_relaxed);

    Tensor *output, *output_h, *output_c, *reserve, *host_reserved;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.OutputShape(attrs_), &output));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, input_h.shape(), &output_h));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, lstm ? input_c.shape() : TensorShape({}), &output_c));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({ReserveElementsFor<T>(config)}), &reserve));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({0}), &host_reserved));
    if (!lstm) OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, output_c));
    if (in.batch == 0) return;

    const cudaStream_t stream = StreamOf(ctx);
    ScopedBlas blas;
    OP_REQUIRES_OK(ctx, blas.Init(stream));
    Tensor hx, hh, hc, hp, hy, hhy, hcy, ws_holder;
    const Acc<T>*x, *h0, *c0 = nullptr, *w;
    Acc<T>*y, *hn, *cn = nullptr;
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, input, &hx, &x));
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, input_h, &hh, &h0));
    if (lstm) OP_REQUIRES_OK(ctx, InputAs<T>(ctx, input_c, &hc, &c0));
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, params, &hp, &w));
    OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, output, &hy, &y));
    OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, output_h, &hhy, &hn));
    if (lstm) OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, output_c, &hcy, &cn));
    void* ws;
    OP_REQUIRES_OK(ctx, Scratch(ctx, cuda::RnnForwardWorkspaceBytes(config, DTypeOf<Acc<T>>()), &ws_holder, &ws));
    void* reserve_data = config.is_training && reserve->NumElements() > 0 ? reserve->flat<T>().data() : nullptr;
    OP_REQUIRES_OK(ctx, FromCuda(cuda::RnnForward<Acc<T>>(blas.get(), stream, config, in.lengths_or_null(), x, h0,
                                                          c0, w, y, hn, cn, reserve_data, ws)));
    OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, output, hy));
    OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, output_h, hhy));
    if (lstm) OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, output_c, hcy));
  }

 private:
  RnnAttrs attrs_;
  std::atomic<uint64_t> dropout_calls_{0};  // calls so far that drew dropout masks
};

template <typename T>
class CudnnRnnBackwardGpuOp : public OpKernel {
 public:
  explicit CudnnRnnBackwardGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_input_backprop", &skip_input_backprop_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& input_h = ctx->input(1);
    const Tensor& input_c = ctx->input(2);
    const Tensor& params = ctx->input(3);
    const Tensor& output_backprop = ctx->input(8);
    const Tensor& output_h_backprop = ctx->input(9);
    const Tensor& output_c_backprop = ctx->input(10);
    const Tensor& reserve = ctx->input(11);
    RnnInputs in;
    OP_REQUIRES_OK(ctx, in.Check(attrs_, input, input_h, input_c, params, &ctx->input(4)));
    const RnnModelShape& s = in.shape;
    const bool lstm = s.mode == RnnMode::kLstm;
    OP_REQUIRES_OK(ctx, in.CheckBackprop(attrs_, input_h, input_c, ctx->input(5), ctx->input(6), ctx->input(7),
                                         output_backprop, output_h_backprop, output_c_backprop));
    const cuda::RnnConfig config = MakeConfig(attrs_, in, true);
    const int64_t reserve_n = ReserveElementsFor<T>(config);
    OP_REQUIRES(ctx, reserve.dims() == 1 && reserve.NumElements() == reserve_n,
                InvalidArgument("reserve_space has shape ", reserve.shape().DebugString(),
                                " but this model needs [", reserve_n,
                                "]: pass the reserve_space of a forward pass run with is_training=true and the "
                                "same attributes and shapes"));

    Tensor *dx_t, *dh0_t, *dc0_t, *dparams_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, input.shape(), &dx_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, input_h.shape(), &dh0_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, input_c.shape(), &dc0_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, params.shape(), &dparams_t));
    if (!lstm) OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, dc0_t));  // other modes ignore input_c
    if (in.batch == 0) {
      OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, dparams_t));
      return;
    }

    const cudaStream_t stream = StreamOf(ctx);
    ScopedBlas blas;
    OP_REQUIRES_OK(ctx, blas.Init(stream));
    Tensor hx, hp, hdy, hdhy, hdcy, hdx, hdh0, hdc0, hdp, ws_holder;
    const Acc<T>*x, *w, *dy, *dhy, *dcy = nullptr;
    Acc<T>*dx, *dh0, *dc0 = nullptr, *dparams;
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, input, &hx, &x));
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, params, &hp, &w));
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, output_backprop, &hdy, &dy));
    OP_REQUIRES_OK(ctx, InputAs<T>(ctx, output_h_backprop, &hdhy, &dhy));
    if (lstm) OP_REQUIRES_OK(ctx, InputAs<T>(ctx, output_c_backprop, &hdcy, &dcy));
    if (skip_input_backprop_) {  // nobody wants d_input: zeros, and the first layer's d_gx W is skipped
      OP_REQUIRES_OK(ctx, ZeroTensor<T>(ctx, dx_t));
      dx = nullptr;
    } else {
      OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, dx_t, &hdx, &dx));
    }
    OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, dh0_t, &hdh0, &dh0));
    if (lstm) OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, dc0_t, &hdc0, &dc0));
    OP_REQUIRES_OK(ctx, OutputAs<T>(ctx, dparams_t, &hdp, &dparams));
    void* ws;
    OP_REQUIRES_OK(ctx, Scratch(ctx, cuda::RnnBackwardWorkspaceBytes(config, DTypeOf<Acc<T>>()), &ws_holder, &ws));
    const void* reserve_data = reserve.NumElements() > 0 ? reserve.flat<T>().data() : nullptr;
    OP_REQUIRES_OK(ctx, FromCuda(cuda::RnnBackward<Acc<T>>(blas.get(), stream, config, in.lengths_or_null(), x, w,
                                                           dy, dhy, dcy, reserve_data, dx, dh0, dc0, dparams, ws)));
    if (!skip_input_backprop_) OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, dx_t, hdx));
    OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, dh0_t, hdh0));
    if (lstm) OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, dc0_t, hdc0));
    OP_REQUIRES_OK(ctx, OutputDone<T>(ctx, dparams_t, hdp));
  }

 private:
  RnnAttrs attrs_;
  bool skip_input_backprop_ = false;
};

#define TF_RNN_REGISTER_GPU(T)                                                                                \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>GRUBlockCell").Device(DEVICE_GPU).TypeConstraint<T>("T"),              \
                          GruBlockCellGpuOp<T>);                                                              \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>GRUBlockCellGrad").Device(DEVICE_GPU).TypeConstraint<T>("T"),          \
                          GruBlockCellGradGpuOp<T>);                                                          \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNN")                                                             \
                              .Device(DEVICE_GPU)                                                             \
                              .TypeConstraint<T>("T")                                                         \
                              .HostMemory("sequence_lengths")                                                 \
                              .HostMemory("host_reserved"),                                                   \
                          CudnnRnnForwardGpuOp<T>);                                                           \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNNBackprop")                                                     \
                              .Device(DEVICE_GPU)                                                             \
                              .TypeConstraint<T>("T")                                                         \
                              .HostMemory("sequence_lengths")                                                 \
                              .HostMemory("host_reserved"),                                                   \
                          CudnnRnnBackwardGpuOp<T>);

TF_RNN_REGISTER_GPU(float)
TF_RNN_REGISTER_GPU(double)
TF_RNN_REGISTER_GPU(Eigen::half)
TF_RNN_REGISTER_GPU(Eigen::bfloat16)
#undef TF_RNN_REGISTER_GPU

// The params size is host arithmetic: the CPU kernel, with every input and output in host memory, so that
// graphs placed on the GPU need no copies for it.
#define TF_RNN_REGISTER_PARAMS_SIZE_GPU(T, S)                   \
  REGISTER_KERNEL_BUILDER(Name("TfRnn>CudnnRNNParamsSize")      \
                              .Device(DEVICE_GPU)               \
                              .TypeConstraint<T>("T")           \
                              .TypeConstraint<S>("S")           \
                              .HostMemory("num_layers")         \
                              .HostMemory("num_units")          \
                              .HostMemory("input_size")         \
                              .HostMemory("params_size"),       \
                          CudnnRnnParamsSizeOp<T, S>);
TF_RNN_REGISTER_PARAMS_SIZE_GPU(float, int32_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(float, int64_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(double, int32_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(double, int64_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(Eigen::half, int32_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(Eigen::half, int64_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(Eigen::bfloat16, int32_t)
TF_RNN_REGISTER_PARAMS_SIZE_GPU(Eigen::bfloat16, int64_t)
#undef TF_RNN_REGISTER_PARAMS_SIZE_GPU

}  // namespace
}  // namespace tf_rnn_ops
