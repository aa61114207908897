// CPU OpKernels of the cuDNN-style fused RNN family. They validate, convert layouts and dtypes, and call
// the driver (rnn_cpu_driver.h). Each kernel adapts to the variant of the op it is registered for (V1,
// V2, V3: whether sequence_lengths, host_reserved, num_proj and time_major exist), so the same classes
// serve our TfRnn> ops and TensorFlow's own CudnnRNN* ops (cc/tf_cudnn/).
#ifndef TF_RNN_OPS_CC_KERNELS_CUDNN_RNN_KERNELS_H_
#define TF_RNN_OPS_CC_KERNELS_CUDNN_RNN_KERNELS_H_

#define EIGEN_USE_THREADS

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "cc/kernels/rnn_cpu_driver.h"
#include "cc/kernels/rnn_params.h"
#include "cc/kernels/kernel_util.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace tf_rnn_ops {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

// Attributes shared by the whole family; absent ones (in older op versions) take their defaults.
struct RnnAttrs {
  RnnMode mode = RnnMode::kLstm;
  std::string input_mode = "linear_input";
  int num_dirs = 1;
  float dropout = 0;
  int64_t seed = 0, seed2 = 0;
  int num_proj = 0;
  bool time_major = true;
  bool is_training = true;

  absl::Status Parse(OpKernelConstruction* ctx) {
    std::string s;
    TF_RETURN_IF_ERROR(ctx->GetAttr("rnn_mode", &s));
    if (s == "rnn_relu") {
      mode = RnnMode::kRnnRelu;
    } else if (s == "rnn_tanh") {
      mode = RnnMode::kRnnTanh;
    } else if (s == "lstm") {
      mode = RnnMode::kLstm;
    } else if (s == "gru") {
      mode = RnnMode::kGru;
    } else {
      return InvalidArgument("rnn_mode must be rnn_relu, rnn_tanh, lstm or gru, got '", s,
                                     "'");
    }
    TF_RETURN_IF_ERROR(ctx->GetAttr("input_mode", &input_mode));
    if (input_mode != "linear_input" && input_mode != "skip_input" && input_mode != "auto_select") {
      return InvalidArgument(
          "input_mode must be linear_input, skip_input or auto_select, got '", input_mode, "'");
    }
    TF_RETURN_IF_ERROR(ctx->GetAttr("direction", &s));
    if (s != "unidirectional" && s != "bidirectional") {
      return InvalidArgument("direction must be unidirectional or bidirectional, got '", s,
                                     "'");
    }
    num_dirs = s == "bidirectional" ? 2 : 1;
    if (ctx->HasAttr("dropout")) TF_RETURN_IF_ERROR(ctx->GetAttr("dropout", &dropout));
    // As TensorFlow's GPU kernels: any probability in [0, 1]. Dropout acts only in training, between
    // layers; at 1 every between-layer input is dropped (as cuDNN does), and the params ops ignore it.
    if (!(dropout >= 0 && dropout <= 1)) {
      return InvalidArgument("dropout must be in [0, 1], got ", dropout);
    }
    if (ctx->HasAttr("seed")) TF_RETURN_IF_ERROR(ctx->GetAttr("seed", &seed));
    if (ctx->HasAttr("seed2")) TF_RETURN_IF_ERROR(ctx->GetAttr("seed2", &seed2));
    if (ctx->HasAttr("num_proj")) TF_RETURN_IF_ERROR(ctx->GetAttr("num_proj", &num_proj));
    if (num_proj < 0) return InvalidArgument("num_proj must be >= 0, got ", num_proj);
    if (num_proj > 0 && mode != RnnMode::kLstm) {
      return InvalidArgument("num_proj (", num_proj, ") is only supported for rnn_mode lstm");
    }
    if (ctx->HasAttr("time_major")) TF_RETURN_IF_ERROR(ctx->GetAttr("time_major", &time_major));
    if (ctx->HasAttr("is_training")) TF_RETURN_IF_ERROR(ctx->GetAttr("is_training", &is_training));
    return absl::OkStatus();
  }

  // The model shape from the sizes known at run time; checks what only they can tell.
  absl::Status Model(int64_t num_layers, int64_t num_units, int64_t input_size,
                     RnnModelShape* shape) const {
    if (num_layers < 1) return InvalidArgument("num_layers must be >= 1, got ", num_layers);
    if (num_units < 1) return InvalidArgument("num_units must be >= 1, got ", num_units);
    if (input_size < 1) return InvalidArgument("input_size must be >= 1, got ", input_size);
    if (num_proj > num_units) {
      return InvalidArgument("num_proj (", num_proj, ") must not exceed num_units (",
                                     num_units, ")");
    }
    TF_RETURN_IF_ERROR(CheckModelSize(num_layers, num_units, input_size));
    shape->mode = mode;
    shape->num_layers = static_cast<int>(num_layers);
    shape->num_dirs = num_dirs;
    shape->num_units = num_units;
    shape->num_proj = num_proj;
    shape->input_size = input_size;
    shape->skip_input = input_mode == "skip_input" ||
                        (input_mode == "auto_select" && input_size == num_units);
    if (input_mode == "skip_input" && input_size != num_units) {
      return InvalidArgument("input_mode skip_input needs input_size (", input_size,
                                     ") == num_units (", num_units, ")");
    }
    return absl::OkStatus();
  }

  // The most elements any tensor or buffer of the family may have: beyond any memory, and low enough
  // that the int64 size and offset arithmetic of the kernels and the driver cannot overflow.
  static constexpr double kMaxElements = 4611686018427387904.0;  // 2^62

  // Refuses models whose canonical lists would not fit an int count or whose params would have more
  // than kMaxElements elements, before any size is computed in integers (overflowing there once gave
  // wrong params sizes and a negative output dimension, a CHECK failure that aborted the process).
  absl::Status CheckModelSize(int64_t num_layers, int64_t num_units, int64_t input_size) const {
    const int64_t gates = NumGates(mode);
    const int64_t max_layers = std::numeric_limits<int>::max() / (num_dirs * (2 * gates + 1));
    if (num_layers > max_layers) {
      return InvalidArgument("num_layers (", num_layers, ") must be at most ", max_layers,
                             " for rnn_mode ", RnnModeName(), " and ", num_dirs, " direction(s)");
    }
    const double g = gates, h = num_units, p = num_proj, ho = num_proj > 0 ? p : h;
    const bool skip = input_mode == "skip_input" ||
                      (input_mode == "auto_select" && input_size == num_units);
    auto block = [&](double in) { return g * h * (in + ho) + p * h + 2 * g * h; };
    const double size = num_dirs * (block(skip ? 0.0 : double(input_size)) +
                                    double(num_layers - 1) * block(num_dirs * ho));
    if (size > kMaxElements) {
      return InvalidArgument("num_layers (", num_layers, "), num_units (", num_units,
                             "), input_size (", input_size, ") and num_proj (", num_proj,
                             ") give a model with about ", size,
                             " params, more than the 2^62 elements a tensor may have");
    }
    return absl::OkStatus();
  }

  const char* RnnModeName() const { return tf_rnn_ops::RnnModeName(mode); }
};

// Asks the kernel to back the 2 MiB-aligned part of a large buffer with transparent huge pages, where
// the system leaves that to madvise (the default). Large tensors often come fresh from mmap, and each
// call first-touches its outputs and scratch; measured (GRU B=64 H=256 training step): ~1,700 page
// faults a step without, a few with, about 1 ms of 90. Only a hint: nothing changes where huge pages
// are off or unavailable.
inline void AdviseHugePages(const Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (t.TotalBytes() < 2 * kHuge) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.tensor_data().data());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + t.TotalBytes()) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

// 3-D [d0, d1, d2] tensor data in T to [d1, d0, d2] (swap) or [d0, d1, d2] (copy) in Acc.
template <typename T, typename Acc>
void ConvertLayout(const CpuDevice& d, const T* src, int64_t d0, int64_t d1, int64_t d2, bool swap,
                   Acc* dst) {
  if (d0 * d1 * d2 == 0) return;
  Eigen::TensorMap<Eigen::Tensor<const T, 3, Eigen::RowMajor, Eigen::DenseIndex>> in(src, d0, d1, d2);
  if (swap) {
    Eigen::TensorMap<Eigen::Tensor<Acc, 3, Eigen::RowMajor, Eigen::DenseIndex>> out(dst, d1, d0, d2);
    const Eigen::array<Eigen::DenseIndex, 3> perm = {1, 0, 2};
    out.device(d) = in.template cast<Acc>().shuffle(perm);  // cast first: Eigen cannot shuffle 16-bit blocks into float
  } else {
    Eigen::TensorMap<Eigen::Tensor<Acc, 3, Eigen::RowMajor, Eigen::DenseIndex>> out(dst, d0, d1, d2);
    out.device(d) = in.template cast<Acc>();
  }
}

// A tensor's data seen in the compute type and driver layout: the tensor's own buffer when that
// already fits, else a converted temporary.
template <typename T>
class ComputeView {
 public:
  using Acc = typename ComputeType<T>::type;
  // `swap`: the tensor is [d1, d0, d2] in the driver's terms (batch-major) and must be transposed.
  absl::Status Init(OpKernelContext* ctx, const Tensor& t, bool swap) {
    if (std::is_same<T, Acc>::value && !swap) {
      data_ = reinterpret_cast<const Acc*>(t.flat<T>().data());
      return absl::OkStatus();
    }
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<Acc>::value,
                                          TensorShape({t.NumElements()}), &temp_));
    Acc* out = temp_.flat<Acc>().data();
    const CpuDevice& d = ctx->eigen_device<CpuDevice>();
    if (t.dims() == 3) {
      ConvertLayout<T, Acc>(d, t.flat<T>().data(), t.dim_size(0), t.dim_size(1), t.dim_size(2), swap,
                            out);
    } else {
      ConvertLayout<T, Acc>(d, t.flat<T>().data(), 1, 1, t.NumElements(), false, out);
    }
    data_ = out;
    return absl::OkStatus();
  }
  const Acc* data() const { return data_; }

 private:
  Tensor temp_;
  const Acc* data_ = nullptr;
};

// An output written by the driver in the compute type and driver layout; Finish() converts it into
// the output tensor when they differ.
template <typename T>
class ComputeOutput {
 public:
  using Acc = typename ComputeType<T>::type;
  // The driver's layout is [d0, d1, d2]; the tensor's is [d1, d0, d2] when `swap`.
  absl::Status Init(OpKernelContext* ctx, Tensor* out, int64_t d0, int64_t d1, int64_t d2, bool swap) {
    out_ = out;
    d0_ = d0, d1_ = d1, d2_ = d2, swap_ = swap;
    if (std::is_same<T, Acc>::value && !swap) {
      data_ = reinterpret_cast<Acc*>(out->flat<T>().data());
      return absl::OkStatus();
    }
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<Acc>::value,
                                          TensorShape({d0 * d1 * d2}), &temp_));
    data_ = temp_.flat<Acc>().data();
    return absl::OkStatus();
  }
  Acc* data() const { return data_; }
  void Finish(OpKernelContext* ctx) {
    if (data_ == reinterpret_cast<Acc*>(out_->flat<T>().data())) return;
    ConvertLayout<Acc, T>(ctx->eigen_device<CpuDevice>(), data_, d0_, d1_, d2_, swap_,
                          out_->flat<T>().data());
  }

 private:
  Tensor* out_ = nullptr;
  Tensor temp_;
  Acc* data_ = nullptr;
  int64_t d0_ = 0, d1_ = 0, d2_ = 0;
  bool swap_ = false;
};

// Everything the forward and backprop kernels check about input, input_h, input_c, params and
// sequence_lengths; fills the model shape and sizes.
struct RnnInputs {
  RnnModelShape shape;
  int64_t seq_len = 0, batch = 0;
  std::vector<int32_t> lengths;  // empty: every row runs all steps

  absl::Status Check(const RnnAttrs& attrs, const Tensor& input, const Tensor& input_h,
                     const Tensor& input_c, const Tensor& params, const Tensor* sequence_lengths) {
    const bool tm = attrs.time_major;
    if (input.dims() != 3) {
      return InvalidArgument("input must be 3-D [", tm ? "T, B, I" : "B, T, I",
                                     "], got shape ", input.shape().DebugString());
    }
    if (input_h.dims() != 3) {
      return InvalidArgument("input_h must be 3-D, got shape ", input_h.shape().DebugString());
    }
    if (params.dims() != 1) {
      return InvalidArgument("params must be 1-D, got shape ", params.shape().DebugString());
    }
    seq_len = input.dim_size(tm ? 0 : 1);
    batch = input.dim_size(tm ? 1 : 0);
    const int64_t input_size = input.dim_size(2);
    const int64_t h_layers = input_h.dim_size(tm ? 0 : 1), h_batch = input_h.dim_size(tm ? 1 : 0);
    const int64_t h_out = input_h.dim_size(2);
    if (h_batch != batch) {
      return InvalidArgument("input_h batch size (", h_batch, ") must equal input's (", batch,
                                     ")");
    }
    if (h_layers % attrs.num_dirs != 0 || h_layers == 0) {
      return InvalidArgument("input_h's num_layers * num_dirs dimension (", h_layers,
                                     ") must be a positive multiple of num_dirs (", attrs.num_dirs,
                                     ")");
    }
    const bool lstm = attrs.mode == RnnMode::kLstm;
    int64_t num_units = h_out;
    if (lstm) {
      if (!(input_c.dims() == 3 && input_c.dim_size(tm ? 0 : 1) == h_layers &&
            input_c.dim_size(tm ? 1 : 0) == batch)) {
        return InvalidArgument("input_c must have shape ",
                                       tm ? "[num_layers * num_dirs, B, num_units]"
                                          : "[B, num_layers * num_dirs, num_units]",
                                       " matching input_h ", input_h.shape().DebugString(),
                                       ", got ", input_c.shape().DebugString());
      }
      num_units = input_c.dim_size(2);
      if (attrs.num_proj > 0 && h_out != attrs.num_proj) {
        return InvalidArgument("input_h's last dimension (", h_out, ") must equal num_proj (",
                                       attrs.num_proj, ")");
      }
      if (attrs.num_proj == 0 && num_units != h_out) {
        return InvalidArgument("input_c's last dimension (", num_units,
                                       ") must equal input_h's (", h_out, ")");
      }
    }
    if (const absl::Status st = attrs.Model(h_layers / attrs.num_dirs, num_units, input_size, &shape);
        !st.ok()) {
      // The model's sizes are not inputs of these ops: say which tensor dimension each came from.
      return absl::Status(
          st.code(), absl::StrCat(st.message(), " (num_layers is input_h's dimension ", h_layers,
                                  " / num_dirs, num_units the last dimension of ",
                                  lstm ? "input_c" : "input_h",
                                  ", input_size that of input)"));
    }
    if (params.NumElements() != shape.ParamsSize()) {
      return InvalidArgument("params has ", params.NumElements(), " elements, but the model needs ",
                             shape.ParamsSize(), " (num_layers ", shape.num_layers,
                             " from input_h, num_units ", num_units, ", input_size ", input_size,
                             " from input, num_proj ", shape.num_proj,
                             "; see cudnn_rnn_params_size)");
    }
    // Outputs, reserve_space and scratch buffers, bounded generously: a batch and length for which
    // they could exceed RnnAttrs::kMaxElements (and overflow the int64 size arithmetic) are refused.
    {
      const double g = shape.gates(), h = shape.num_units, ho = shape.h_out();
      const double ow = shape.output_size(), ld = double(shape.num_layers) * shape.num_dirs;
      const double in = std::max<double>(input_size, ow);
      const double rows = double(seq_len) * double(batch) + double(batch) + 1;
      const double per_row = ld * (2 * g * h + 4 * h + 2 * ho + 2 * ow) + 4 * (ow + in + g * h + h);
      const double packed = 2 * (g * h + 16) * (ho + h + 16);
      if (rows * per_row + packed > RnnAttrs::kMaxElements) {
        return InvalidArgument("input (", input.shape().DebugString(), ") and input_h (",
                               input_h.shape().DebugString(),
                               ") need buffers of more than the 2^62 elements a tensor may have");
      }
    }
    lengths.clear();
    if (sequence_lengths != nullptr) {
      if (sequence_lengths->dims() != 1 || sequence_lengths->dim_size(0) != batch) {
        return InvalidArgument("sequence_lengths must have shape [", batch, "], got ",
                                       sequence_lengths->shape().DebugString());
      }
      const auto len = sequence_lengths->flat<int32_t>();
      lengths.assign(len.data(), len.data() + batch);
      for (int64_t b = 0; b < batch; ++b) {
        if (lengths[b] < 0 || lengths[b] > seq_len) {
          return InvalidArgument("sequence_lengths[", b, "] = ", lengths[b],
                                         " is outside [0, ", seq_len, "] (the number of time steps)");
        }
      }
    }
    return absl::OkStatus();
  }
  const int32_t* lengths_or_null() const { return lengths.empty() ? nullptr : lengths.data(); }

  // The shape of `output` (after Check).
  TensorShape OutputShape(const RnnAttrs& attrs) const {
    return attrs.time_major ? TensorShape({seq_len, batch, shape.output_size()})
                            : TensorShape({batch, seq_len, shape.output_size()});
  }

  // The backprop's forward results and their grads (after Check): output, output_h, output_c,
  // output_backprop, output_h_backprop, output_c_backprop. output_c and its grad only for lstm.
  absl::Status CheckBackprop(const RnnAttrs& attrs, const Tensor& input_h, const Tensor& input_c,
                             const Tensor& output, const Tensor& output_h, const Tensor& output_c,
                             const Tensor& output_backprop, const Tensor& output_h_backprop,
                             const Tensor& output_c_backprop) const {
    const TensorShape out_shape = OutputShape(attrs);
    if (output.shape() != out_shape) {
      return InvalidArgument("output must have shape ", out_shape.DebugString(),
                             " (from input and input_h), got ", output.shape().DebugString());
    }
    if (output_h.shape() != input_h.shape()) {
      return InvalidArgument("output_h must have input_h's shape ", input_h.shape().DebugString(),
                             ", got ", output_h.shape().DebugString());
    }
    if (output_backprop.shape() != out_shape) {
      return InvalidArgument("output_backprop must have the output's shape ",
                             out_shape.DebugString(), ", got ", output_backprop.shape().DebugString());
    }
    if (output_h_backprop.shape() != input_h.shape()) {
      return InvalidArgument("output_h_backprop must have input_h's shape ",
                             input_h.shape().DebugString(), ", got ",
                             output_h_backprop.shape().DebugString());
    }
    if (shape.mode == RnnMode::kLstm) {
      if (output_c.shape() != input_c.shape()) {
        return InvalidArgument("output_c must have input_c's shape ", input_c.shape().DebugString(),
                               ", got ", output_c.shape().DebugString());
      }
      if (output_c_backprop.shape() != input_c.shape()) {
        return InvalidArgument("output_c_backprop must have input_c's shape ",
                               input_c.shape().DebugString(), ", got ",
                               output_c_backprop.shape().DebugString());
      }
    }
    return absl::OkStatus();
  }
};

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

template <typename T>
class CudnnRnnForwardOp : public OpKernel {
 public:
  using Acc = typename ComputeType<T>::type;
  static constexpr bool kSaveHprev = SaveHprev<T>();
  explicit CudnnRnnForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& input_h = ctx->input(1);
    const Tensor& input_c = ctx->input(2);
    const Tensor& params = ctx->input(3);
    const bool has_lengths = ctx->num_inputs() > 4;
    RnnInputs in;
    OP_REQUIRES_OK(ctx, in.Check(attrs_, input, input_h, input_c, params,
                                 has_lengths ? &ctx->input(4) : nullptr));
    const RnnModelShape& s = in.shape;
    const bool lstm = s.mode == RnnMode::kLstm, swap = !attrs_.time_major;
    const int64_t T_ = in.seq_len, B = in.batch, ld = int64_t(s.num_layers) * s.num_dirs;

    Tensor *output, *output_h, *output_c, *reserve;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.OutputShape(attrs_), &output));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, input_h.shape(), &output_h));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, lstm ? input_c.shape() : TensorShape({}), &output_c));
    const bool training = attrs_.is_training;
    // Each call that draws dropout masks takes the next masks of this kernel's stream, as
    // TensorFlow's GPU kernels advance their dropout state: a training loop sees fresh masks at
    // every step, and a new kernel with the same seeds replays the same sequence.
    const uint64_t dropout_call = training && attrs_.dropout > 0 && s.num_layers > 1
                                      ? dropout_calls_.fetch_add(1, std::memory_order_relaxed)
                                      : 0;
    const int64_t reserve_n =
        training ? RnnReserveLayout(s, T_, B, attrs_.dropout > 0, kSaveHprev).size : 0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({ReserveElements<T>(reserve_n)}), &reserve));
    AdviseHugePages(*output);
    AdviseHugePages(*reserve);
    if (ctx->num_outputs() > 4) {
      Tensor* host_reserved;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({0}), &host_reserved));
    }
    if (!lstm) output_c->scalar<T>()() = T(0);
    // An empty batch leaves every output empty: nothing to run (the driver would still step through
    // all T time steps, which an empty input lets be up to 2^63 - 1).
    if (B == 0) return;

    ComputeView<T> x, h0, c0, w;
    OP_REQUIRES_OK(ctx, x.Init(ctx, input, swap));
    OP_REQUIRES_OK(ctx, h0.Init(ctx, input_h, swap));
    if (lstm) OP_REQUIRES_OK(ctx, c0.Init(ctx, input_c, swap));
    OP_REQUIRES_OK(ctx, w.Init(ctx, params, false));
    ComputeOutput<T> y, hn, cn;
    OP_REQUIRES_OK(ctx, y.Init(ctx, output, T_, B, s.output_size(), swap));
    OP_REQUIRES_OK(ctx, hn.Init(ctx, output_h, ld, B, s.h_out(), swap));
    if (lstm) OP_REQUIRES_OK(ctx, cn.Init(ctx, output_c, ld, B, s.num_units, swap));

    Tensor workspace;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<Acc>::value,
                                           TensorShape({RnnWorkspaceSize<Acc>(s, T_, B, false)}),
                                           &workspace));
    AdviseHugePages(workspace);
    RnnForwardArgs<Acc> a;
    a.seq_len = T_;
    a.batch = B;
    a.x = x.data();
    a.h0 = h0.data();
    a.c0 = lstm ? c0.data() : nullptr;
    a.params = w.data();
    a.lengths = in.lengths_or_null();
    a.y = y.data();
    a.hn = hn.data();
    a.cn = lstm ? cn.data() : nullptr;
    a.reserve = training ? reinterpret_cast<Acc*>(reserve->flat<T>().data()) : nullptr;
    a.save_hprev = kSaveHprev;
    a.dropout = attrs_.dropout;
    a.seed = static_cast<uint64_t>(attrs_.seed);
    a.seed2 = static_cast<uint64_t>(attrs_.seed2);
    a.dropout_call = dropout_call;
    CpuRnn<Acc>(ctx->eigen_device<CpuDevice>(), s).Forward(a, workspace.flat<Acc>().data());
    y.Finish(ctx);
    hn.Finish(ctx);
    if (lstm) cn.Finish(ctx);
  }

 private:
  RnnAttrs attrs_;
  std::atomic<uint64_t> dropout_calls_{0};  // calls so far that drew dropout masks
};

template <typename T>
class CudnnRnnBackwardOp : public OpKernel {
 public:
  using Acc = typename ComputeType<T>::type;
  static constexpr bool kSaveHprev = SaveHprev<T>();
  explicit CudnnRnnBackwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
    // Only TfRnn>CudnnRNNBackprop has it (TensorFlow's CudnnRNNBackprop ops share this kernel).
    if (ctx->HasAttr("skip_input_backprop")) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("skip_input_backprop", &skip_input_backprop_));
    }
  }

  void Compute(OpKernelContext* ctx) override {
    // V3 has sequence_lengths after params; V2/V3 end with host_reserved.
    const bool has_lengths = ctx->num_inputs() == 13;
    const int k = has_lengths ? 5 : 4;  // index of `output`
    const Tensor& input = ctx->input(0);
    const Tensor& input_h = ctx->input(1);
    const Tensor& input_c = ctx->input(2);
    const Tensor& params = ctx->input(3);
    const Tensor& output_backprop = ctx->input(k + 3);
    const Tensor& output_h_backprop = ctx->input(k + 4);
    const Tensor& output_c_backprop = ctx->input(k + 5);
    const Tensor& reserve = ctx->input(k + 6);
    const Tensor& output = ctx->input(k);
    RnnInputs in;
    OP_REQUIRES_OK(ctx, in.Check(attrs_, input, input_h, input_c, params,
                                 has_lengths ? &ctx->input(4) : nullptr));
    const RnnModelShape& s = in.shape;
    const bool lstm = s.mode == RnnMode::kLstm, swap = !attrs_.time_major;
    const int64_t T_ = in.seq_len, B = in.batch, ld = int64_t(s.num_layers) * s.num_dirs;
    OP_REQUIRES_OK(ctx, in.CheckBackprop(attrs_, input_h, input_c, output, ctx->input(k + 1),
                                         ctx->input(k + 2), output_backprop, output_h_backprop,
                                         output_c_backprop));
    const int64_t reserve_n = RnnReserveLayout(s, T_, B, attrs_.dropout > 0, kSaveHprev).size;
    OP_REQUIRES(ctx, reserve.dims() == 1 && reserve.NumElements() == ReserveElements<T>(reserve_n),
                InvalidArgument(
                    "reserve_space has shape ", reserve.shape().DebugString(), " but this model needs [",
                    ReserveElements<T>(reserve_n),
                    "]: pass the reserve_space of a forward pass run with is_training=true and the "
                    "same attributes and shapes"));

    Tensor *dx_t, *dh0_t, *dc0_t, *dparams_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, input.shape(), &dx_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, input_h.shape(), &dh0_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, input_c.shape(), &dc0_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, params.shape(), &dparams_t));
    AdviseHugePages(*dx_t);
    AdviseHugePages(*dparams_t);
    if (!lstm) dc0_t->flat<T>().setZero();  // other modes ignore input_c
    if (B == 0) {  // every gradient but params' is empty, and params' is zero (as in the forward)
      dparams_t->flat<T>().setZero();
      return;
    }

    ComputeView<T> x, h0, c0, w, y, dy, dhn, dcn;
    OP_REQUIRES_OK(ctx, x.Init(ctx, input, swap));
    OP_REQUIRES_OK(ctx, y.Init(ctx, output, swap));
    OP_REQUIRES_OK(ctx, h0.Init(ctx, input_h, swap));
    OP_REQUIRES_OK(ctx, w.Init(ctx, params, false));
    OP_REQUIRES_OK(ctx, dy.Init(ctx, output_backprop, swap));
    OP_REQUIRES_OK(ctx, dhn.Init(ctx, output_h_backprop, swap));
    if (lstm) {
      OP_REQUIRES_OK(ctx, c0.Init(ctx, input_c, swap));
      OP_REQUIRES_OK(ctx, dcn.Init(ctx, output_c_backprop, swap));
    }
    ComputeOutput<T> dx, dh0, dc0, dparams;
    if (skip_input_backprop_) {
      dx_t->flat<T>().setZero();
    } else {
      OP_REQUIRES_OK(ctx, dx.Init(ctx, dx_t, T_, B, s.input_size, swap));
    }
    OP_REQUIRES_OK(ctx, dh0.Init(ctx, dh0_t, ld, B, s.h_out(), swap));
    if (lstm) OP_REQUIRES_OK(ctx, dc0.Init(ctx, dc0_t, ld, B, s.num_units, swap));
    OP_REQUIRES_OK(ctx, dparams.Init(ctx, dparams_t, 1, 1, s.ParamsSize(), false));

    Tensor workspace;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<Acc>::value,
                                           TensorShape({RnnWorkspaceSize<Acc>(s, T_, B, true)}),
                                           &workspace));
    AdviseHugePages(workspace);
    RnnBackwardArgs<Acc> a;
    a.seq_len = T_;
    a.batch = B;
    a.x = x.data();
    a.h0 = h0.data();
    a.c0 = lstm ? c0.data() : nullptr;
    a.params = w.data();
    a.lengths = in.lengths_or_null();
    a.dy = dy.data();
    a.dhn = dhn.data();
    a.dcn = lstm ? dcn.data() : nullptr;
    a.reserve = reinterpret_cast<const Acc*>(reserve.flat<T>().data());
    a.save_hprev = kSaveHprev;
    a.y = y.data();
    a.dropout = attrs_.dropout;
    a.dx = skip_input_backprop_ ? nullptr : dx.data();
    a.dh0 = dh0.data();
    a.dc0 = lstm ? dc0.data() : nullptr;
    a.dparams = dparams.data();
    CpuRnn<Acc>(ctx->eigen_device<CpuDevice>(), s).Backward(a, workspace.flat<Acc>().data());
    if (!skip_input_backprop_) dx.Finish(ctx);
    dh0.Finish(ctx);
    if (lstm) dc0.Finish(ctx);
    dparams.Finish(ctx);
  }

 private:
  RnnAttrs attrs_;
  bool skip_input_backprop_ = false;
};

// Reads the scalar int32 inputs num_layers, num_units, input_size into a model shape.
inline absl::Status ModelFromScalars(OpKernelContext* ctx, const RnnAttrs& attrs,
                                     RnnModelShape* shape) {
  int64_t v[3];
  const char* names[3] = {"num_layers", "num_units", "input_size"};
  for (int i = 0; i < 3; ++i) {
    const Tensor& t = ctx->input(i);
    if (!tensorflow::TensorShapeUtils::IsScalar(t.shape())) {
      return InvalidArgument(names[i], " must be a scalar, got shape ",
                                     t.shape().DebugString());
    }
    v[i] = t.scalar<int32_t>()();
  }
  return attrs.Model(v[0], v[1], v[2], shape);
}

template <typename T, typename Index>
class CudnnRnnParamsSizeOp : public OpKernel {
 public:
  explicit CudnnRnnParamsSizeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
  }
  void Compute(OpKernelContext* ctx) override {
    RnnModelShape s;
    OP_REQUIRES_OK(ctx, ModelFromScalars(ctx, attrs_, &s));
    const int64_t size = s.ParamsSize();
    OP_REQUIRES(ctx, size <= std::numeric_limits<Index>::max(),
                InvalidArgument("params size ", size, " does not fit the output type"));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({1}), &out));
    out->flat<Index>()(0) = static_cast<Index>(size);
  }

 private:
  RnnAttrs attrs_;
};

// The number of canonical weights and biases the op was built for (V1: num_params for both).
inline absl::Status CanonicalCounts(OpKernelConstruction* ctx, int* num_weights, int* num_biases) {
  if (ctx->HasAttr("num_params")) {
    TF_RETURN_IF_ERROR(ctx->GetAttr("num_params", num_weights));
    *num_biases = *num_weights;
    return absl::OkStatus();
  }
  TF_RETURN_IF_ERROR(ctx->GetAttr("num_params_weights", num_weights));
  return ctx->GetAttr("num_params_biases", num_biases);
}

inline absl::Status CheckCanonicalCounts(const RnnModelShape& s, int num_weights, int num_biases) {
  if (num_weights != s.TotalWeights() || num_biases != s.TotalBiases()) {
    return InvalidArgument("num_layers ", s.num_layers, " with rnn_mode, direction, input_mode and "
                           "num_proj as given makes ", s.TotalWeights(), " canonical weights and ",
                           s.TotalBiases(), " biases, but num_params_weights is ", num_weights,
                           " and num_params_biases ", num_biases);
  }
  return absl::OkStatus();
}

// Visits the canonical tensors in order: fn(is_bias, index, offset in opaque params, rows, cols).
template <typename Fn>
void ForEachCanonical(const RnnModelShape& s, Fn&& fn) {
  int wi = 0, bi = 0;
  for (int l = 0; l < s.num_layers; ++l) {
    const auto blk = s.LayerBlock(l);
    for (int d = 0; d < s.num_dirs; ++d) {
      int64_t offset = s.BlockOffset(l, d);
      for (int k = 0; k < s.NumWeights(l); ++k) {
        int64_t rows, cols;
        s.WeightShape(l, k, &rows, &cols);
        fn(false, wi++, offset, rows, cols);
        offset += rows * cols;
      }
      offset = s.BlockOffset(l, d) + blk.b_w;
      for (int k = 0; k < s.NumBiases(); ++k) {
        fn(true, bi++, offset, s.num_units, int64_t{1});
        offset += s.num_units;
      }
    }
  }
}

template <typename T>
class CudnnRnnParamsToCanonicalOp : public OpKernel {
 public:
  explicit CudnnRnnParamsToCanonicalOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
    OP_REQUIRES_OK(ctx, CanonicalCounts(ctx, &num_weights_, &num_biases_));
  }
  void Compute(OpKernelContext* ctx) override {
    RnnModelShape s;
    OP_REQUIRES_OK(ctx, ModelFromScalars(ctx, attrs_, &s));
    OP_REQUIRES_OK(ctx, CheckCanonicalCounts(s, num_weights_, num_biases_));
    const Tensor& params = ctx->input(3);
    OP_REQUIRES(ctx, params.dims() == 1 && params.NumElements() == s.ParamsSize(),
                InvalidArgument("params must be 1-D with ", s.ParamsSize(),
                                        " elements for this model, got shape ",
                                        params.shape().DebugString()));
    const T* p = params.flat<T>().data();
    absl::Status status;
    ForEachCanonical(s, [&](bool is_bias, int i, int64_t offset, int64_t rows, int64_t cols) {
      if (!status.ok()) return;
      Tensor* out;
      const TensorShape shape = is_bias ? TensorShape({rows}) : TensorShape({rows, cols});
      status = ctx->allocate_output(is_bias ? num_weights_ + i : i, shape, &out);
      if (status.ok() && rows * cols > 0)
        std::memcpy(out->flat<T>().data(), p + offset, rows * cols * sizeof(T));
    });
    OP_REQUIRES_OK(ctx, status);
  }

 private:
  RnnAttrs attrs_;
  int num_weights_ = 0, num_biases_ = 0;
};

template <typename T>
class CudnnRnnCanonicalToParamsOp : public OpKernel {
 public:
  explicit CudnnRnnCanonicalToParamsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Parse(ctx));
    OP_REQUIRES_OK(ctx, CanonicalCounts(ctx, &num_weights_, &num_biases_));
  }
  void Compute(OpKernelContext* ctx) override {
    RnnModelShape s;
    OP_REQUIRES_OK(ctx, ModelFromScalars(ctx, attrs_, &s));
    OP_REQUIRES_OK(ctx, CheckCanonicalCounts(s, num_weights_, num_biases_));
    // Every size is checked before the output is allocated: the scalars alone may describe a model
    // far larger than memory, which weights of the right sizes could never be.
    absl::Status status;
    ForEachCanonical(s, [&](bool is_bias, int i, int64_t offset, int64_t rows, int64_t cols) {
      if (!status.ok()) return;
      const Tensor& t = ctx->input(3 + (is_bias ? num_weights_ : 0) + i);
      if (t.NumElements() != rows * cols) {
        status = InvalidArgument(
            is_bias ? "biases[" : "weights[", i, "] has shape ", t.shape().DebugString(),
            " but the model of num_layers ", s.num_layers, ", num_units ", s.num_units,
            ", input_size ", s.input_size, ", num_proj ", s.num_proj, " needs ",
            is_bias ? absl::StrCat("[", rows, "]") : absl::StrCat("[", rows, ", ", cols, "]"),
            " (or as many elements)");
      }
    });
    OP_REQUIRES_OK(ctx, status);
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({s.ParamsSize()}), &out));
    T* p = out->flat<T>().data();
    ForEachCanonical(s, [&](bool is_bias, int i, int64_t offset, int64_t rows, int64_t cols) {
      const Tensor& t = ctx->input(3 + (is_bias ? num_weights_ : 0) + i);
      if (rows * cols > 0) std::memcpy(p + offset, t.flat<T>().data(), rows * cols * sizeof(T));
    });
  }

 private:
  RnnAttrs attrs_;
  int num_weights_ = 0, num_biases_ = 0;
};

// TfRnn>KerasRNN: one unidirectional layer from a Keras cell's own weights (kernel [I, G·H],
// recurrent_kernel [H, G·H], bias as Keras shapes it), so that a Keras layer's call converts
// nothing (converting to opaque params and packing them cost more than a one-step call's work).
// The driver reads the kernels in place: packed once per call, or, for few rows (B·T <=
// kStreamMaxRows, float), streamed as stored. The reserve_space is that of TfRnn>CudnnRNN for the
// same model, so the gradient runs TfRnn>CudnnRNNBackprop (tf_rnn_ops/cudnn_rnn.py).
template <typename T>
class KerasRnnForwardOp : public OpKernel {
 public:
  explicit KerasRnnForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string mode;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("rnn_mode", &mode));
    if (mode == "rnn_relu") {
      mode_ = RnnMode::kRnnRelu;
    } else if (mode == "rnn_tanh") {
      mode_ = RnnMode::kRnnTanh;
    } else if (mode == "lstm") {
      mode_ = RnnMode::kLstm;
    } else if (mode == "gru") {
      mode_ = RnnMode::kGru;
    } else {
      ctx->CtxFailure(InvalidArgument("rnn_mode must be rnn_relu, rnn_tanh, lstm or gru, got '",
                                      mode, "'"));
      return;
    }
    OP_REQUIRES_OK(ctx, ctx->GetAttr("is_training", &is_training_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("time_major", &time_major_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& input_h = ctx->input(1);
    const Tensor& input_c = ctx->input(2);
    const Tensor& kernel = ctx->input(3);
    const Tensor& rkernel = ctx->input(4);
    const Tensor& bias = ctx->input(5);
    const Tensor& seq_lengths = ctx->input(6);
    const bool tm = time_major_, lstm = mode_ == RnnMode::kLstm, gru = mode_ == RnnMode::kGru;
    const int64_t G = NumGates(mode_);
    OP_REQUIRES(ctx, input.dims() == 3,
                InvalidArgument("input must be 3-D [", tm ? "T, B, I" : "B, T, I", "], got shape ",
                                input.shape().DebugString()));
    const int64_t T_ = input.dim_size(tm ? 0 : 1), B = input.dim_size(tm ? 1 : 0);
    const int64_t I = input.dim_size(2);
    OP_REQUIRES(ctx, rkernel.dims() == 2 && rkernel.dim_size(0) >= 1 &&
                         rkernel.dim_size(1) == G * rkernel.dim_size(0),
                InvalidArgument("recurrent_kernel must be [units, ", G, " * units] (", G,
                                " gates for rnn_mode ", RnnModeName(), "), got shape ",
                                rkernel.shape().DebugString()));
    const int64_t H = rkernel.dim_size(0), gh = G * H;
    OP_REQUIRES(ctx, kernel.dims() == 2 && kernel.dim_size(0) == I && kernel.dim_size(1) == gh,
                InvalidArgument("kernel must be [input size ", I, ", ", gh,
                                "] (input's last dimension; recurrent_kernel's columns), got shape ",
                                kernel.shape().DebugString()));
    OP_REQUIRES(ctx, I >= 1, InvalidArgument("input's last dimension (input size) must be >= 1"));
    OP_REQUIRES(ctx, input_h.dims() == 2 && input_h.dim_size(0) == B && input_h.dim_size(1) == H,
                InvalidArgument("input_h must be [", B, ", ", H, "] (batch, units), got shape ",
                                input_h.shape().DebugString()));
    if (lstm) {
      OP_REQUIRES(ctx, input_c.shape() == input_h.shape(),
                  InvalidArgument("input_c must have input_h's shape ",
                                  input_h.shape().DebugString(), " for lstm, got ",
                                  input_c.shape().DebugString()));
    }
    const TensorShape bias_shape = gru ? TensorShape({2, gh}) : TensorShape({gh});
    OP_REQUIRES(ctx, bias.NumElements() == 0 || bias.shape() == bias_shape,
                InvalidArgument("bias must have shape ", bias_shape.DebugString(),
                                " (Keras' for rnn_mode ", RnnModeName(),
                                ") or no elements (use_bias=False), got ",
                                bias.shape().DebugString()));
    OP_REQUIRES(ctx, seq_lengths.dims() == 1 &&
                         (seq_lengths.dim_size(0) == 0 || seq_lengths.dim_size(0) == B),
                InvalidArgument("sequence_lengths must have shape [", B,
                                "] or [0] (every sequence full), got ",
                                seq_lengths.shape().DebugString()));
    RnnModelShape s;
    s.mode = mode_;
    s.num_layers = 1;
    s.num_dirs = 1;
    s.num_units = H;
    s.num_proj = 0;
    s.input_size = I;
    s.skip_input = false;
    {  // the same bound as RnnInputs::Check: int64 size arithmetic stays far from overflow
      const double rows = double(T_) * double(B) + double(B) + 1, g = G, h = H;
      const double per_row = (2 * g * h + 8 * h) + 4 * (h + std::max<double>(I, h) + g * h + h);
      const double weights = g * h * (double(I) + h + 16) * 2;
      OP_REQUIRES(ctx, rows * per_row + weights <= RnnAttrs::kMaxElements,
                  InvalidArgument("input (", input.shape().DebugString(), ") and kernels (",
                                  kernel.shape().DebugString(),
                                  ") need buffers of more than the 2^62 elements a tensor may "
                                  "have"));
    }
    std::vector<int32_t> lengths;
    if (seq_lengths.dim_size(0) > 0) {
      const auto len = seq_lengths.flat<int32_t>();
      lengths.assign(len.data(), len.data() + B);
      for (int64_t b = 0; b < B; ++b) {
        OP_REQUIRES(ctx, lengths[b] >= 0 && lengths[b] <= T_,
                    InvalidArgument("sequence_lengths[", b, "] = ", lengths[b], " is outside [0, ",
                                    T_, "] (the number of time steps)"));
      }
    }

    Tensor *output, *output_h, *output_c, *reserve;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tm ? TensorShape({T_, B, H})
                                                   : TensorShape({B, T_, H}), &output));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, input_h.shape(), &output_h));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, lstm ? input_c.shape() : TensorShape({}), &output_c));
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
    const int* gate_src = gru ? kGruSrc : nullptr;
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
      } else {
        std::copy_n(kb, gh, lstm ? b_r : b_w);  // Keras' one bias: b_R (lstm) or b_W (rnn)
      }
    }
    const T* kptr = kernel.flat<T>().data();
    const T* rptr = rkernel.flat<T>().data();
    Tensor permuted;
    if (gru && !std::is_same<T, float>::value) {
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
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
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
    CpuRnn<T>(ctx->eigen_device<CpuDevice>(), s).Forward(a, workspace.flat<T>().data());
    y.Finish(ctx);
  }

 private:
  const char* RnnModeName() const { return tf_rnn_ops::RnnModeName(mode_); }

  RnnMode mode_ = RnnMode::kLstm;
  bool is_training_ = true;
  bool time_major_ = false;
};

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_CUDNN_RNN_KERNELS_H_
