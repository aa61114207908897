// The C API of the CUDA layer (c_api.h): argument conversion and error reporting only.
#include "cc/cuda/c_api.h"

#include <string>

#include "cc/cuda/convert_cuda.h"
#include "cc/cuda/cuda_compat.h"
#include "cc/cuda/fused_rnn_cuda.h"
#include "cc/cuda/gru_block_cell_cuda.h"
#include "cc/cuda/keras_rnn_dropout_cuda.h"
#include "cc/cuda/layer_norm_rnn_cuda.h"
#include "cc/kernels/fused_rnn_rules.h"

namespace {

using tf_rnn_ops::RnnMode;
using tf_rnn_ops::cuda::DType;
using tf_rnn_ops::cuda::RnnConfig;
using tf_rnn_ops::cuda::Status;
using tf_rnn_ops::cuda::StatusCode;

thread_local std::string last_error;

int Report(const Status& status) {
  if (status.ok()) return TFRNN_OK;
  last_error = status.message();
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      return TFRNN_INVALID_ARGUMENT;
    case StatusCode::kCudaError:
      return TFRNN_CUDA_ERROR;
    default:
      return TFRNN_CUBLAS_ERROR;
  }
}

int InvalidArgument(const std::string& message) { return Report(Status::InvalidArgument(message)); }

// f(T{}) for the element type T that `dtype` names (float or double), so that an entry point spells
// its call once for both; an error for any other dtype.
template <typename F>
int ForDtype(int dtype, F&& f) {
  if (dtype == TFRNN_FLOAT32) return f(float{});
  if (dtype == TFRNN_FLOAT64) return f(double{});
  return InvalidArgument("unknown dtype " + std::to_string(dtype));
}

bool ValidDType(int64_t dtype) { return dtype == TFRNN_FLOAT32 || dtype == TFRNN_FLOAT64; }

Status ToConfig(const tfrnn_rnn_desc* desc, RnnConfig* config) {
  if (desc == nullptr) return Status::InvalidArgument("null tfrnn_rnn_desc");
  if (!ValidDType(desc->dtype))
    return Status::InvalidArgument("unknown dtype " + std::to_string(desc->dtype));
  if (desc->rnn_mode < 0 || desc->rnn_mode >= tf_rnn_ops::kNumRnnModes) {
    return Status::InvalidArgument("unknown rnn_mode " + std::to_string(desc->rnn_mode));
  }
  // The model from the description's int64 sizes, by the fused family's rules (no narrowing first).
  tf_rnn_ops::fused_rnn::ModelSpec model;
  model.mode = static_cast<RnnMode>(desc->rnn_mode);
  model.input_mode = desc->skip_input != 0 ? tf_rnn_ops::fused_rnn::InputMode::kSkipInput
                                           : tf_rnn_ops::fused_rnn::InputMode::kLinearInput;
  model.num_dirs = desc->num_dirs;
  model.num_layers = desc->num_layers;
  model.num_units = desc->num_units;
  model.input_size = desc->input_size;
  model.num_proj = desc->num_proj;
  const std::string error = tf_rnn_ops::fused_rnn::MakeModelShape(model, &config->shape);
  if (!error.empty()) return Status::InvalidArgument("fused RNN: " + error);
  config->max_time = desc->max_time;
  config->batch = desc->batch;
  config->time_major = desc->time_major != 0;
  config->is_training = desc->is_training != 0;
  config->dropout = desc->dropout;
  config->seed = desc->seed;
  config->seed2 = desc->seed2;
  return tf_rnn_ops::cuda::ValidateRnnConfig(*config);
}

Status ToKerasDropoutConfig(const tfrnn_keras_dropout_desc* desc,
                            tf_rnn_ops::cuda::KerasDropoutConfig* config) {
  if (desc == nullptr) return Status::InvalidArgument("null tfrnn_keras_dropout_desc");
  if (!ValidDType(desc->dtype))
    return Status::InvalidArgument("unknown dtype " + std::to_string(desc->dtype));
  if (desc->rnn_mode < 0 || desc->rnn_mode >= tf_rnn_ops::kNumRnnModes) {
    return Status::InvalidArgument("unknown rnn_mode " + std::to_string(desc->rnn_mode));
  }
  if (desc->zoneout < TFRNN_ZONEOUT_NONE || desc->zoneout > TFRNN_ZONEOUT_SCALAR) {
    return Status::InvalidArgument("unknown zoneout kind " + std::to_string(desc->zoneout));
  }
  config->mode = static_cast<RnnMode>(desc->rnn_mode);
  config->units = desc->num_units;
  config->max_time = desc->max_time;
  config->batch = desc->batch;
  config->time_major = desc->time_major != 0;
  config->is_training = desc->is_training != 0;
  config->recurrent_bias = desc->has_recurrent_bias != 0;
  config->input_bias = desc->has_input_bias != 0;
  config->gate_major = desc->gate_major != 0;
  config->masks = desc->has_masks != 0;
  config->zoneout = static_cast<tf_rnn_ops::cuda::ZoneoutKind>(desc->zoneout);
  return tf_rnn_ops::cuda::ValidateKerasDropoutConfig(*config);
}

cudaStream_t AsStream(void* stream) { return static_cast<cudaStream_t>(stream); }
cublasHandle_t AsBlas(void* blas) { return static_cast<cublasHandle_t>(blas); }

#if defined(TF_RNN_CUDA_HOST_EMULATION)
int emulated_blas_handle = 0;
#endif

// ---- layer-norm RNN
Status ToLayerNormConfig(const tfrnn_layer_norm_rnn_desc* desc,
                         tf_rnn_ops::cuda::LayerNormRnnConfig* config) {
  using tf_rnn_ops::cuda::LayerNormCellKind;
  using tf_rnn_ops::cuda::ZoneoutKind;
  if (desc == nullptr) return Status::InvalidArgument("null tfrnn_layer_norm_rnn_desc");
  if (!ValidDType(desc->dtype))
    return Status::InvalidArgument("unknown dtype " + std::to_string(desc->dtype));
  if (desc->cell != TFRNN_LAYER_NORM_LSTM && desc->cell != TFRNN_LAYER_NORM_GRU)
    return Status::InvalidArgument("unknown layer-norm cell " + std::to_string(desc->cell));
  if (desc->zoneout < TFRNN_ZONEOUT_NONE || desc->zoneout > TFRNN_ZONEOUT_SCALAR)
    return Status::InvalidArgument("unknown zoneout kind " + std::to_string(desc->zoneout));
  config->cell =
      desc->cell == TFRNN_LAYER_NORM_LSTM ? LayerNormCellKind::kLstm : LayerNormCellKind::kGru;
  config->max_time = desc->max_time;
  config->batch = desc->batch;
  config->input_size = desc->input_size;
  config->num_units = desc->num_units;
  config->is_training = desc->is_training != 0;
  config->has_mask = desc->has_mask != 0;
  config->has_recurrent_mask = desc->has_recurrent_mask != 0;
  config->time_major = desc->time_major != 0;
  config->zoneout = static_cast<ZoneoutKind>(desc->zoneout);
  config->epsilon = desc->epsilon;
  return tf_rnn_ops::cuda::ValidateLayerNormRnnConfig(*config);
}

template <typename T>
tf_rnn_ops::cuda::LayerNormRnnParams<T> LayerNormParamsOf(const tfrnn_layer_norm_rnn_params& p) {
  auto c = [](void* v) { return static_cast<const T*>(v); };
  return {c(p.kernel), c(p.recurrent_kernel), c(p.bias),   c(p.recurrent_bias), c(p.gamma_x),
          c(p.beta_x), c(p.gamma_h),          c(p.beta_h), c(p.gamma_c),        c(p.beta_c)};
}

template <typename T>
tf_rnn_ops::cuda::LayerNormRnnGrads<T> LayerNormGradsOf(const tfrnn_layer_norm_rnn_params& p) {
  auto c = [](void* v) { return static_cast<T*>(v); };
  return {c(p.kernel), c(p.recurrent_kernel), c(p.bias),   c(p.recurrent_bias), c(p.gamma_x),
          c(p.beta_x), c(p.gamma_h),          c(p.beta_h), c(p.gamma_c),        c(p.beta_c)};
}

template <typename T>
int LayerNormForward(void* blas, void* stream, const tf_rnn_ops::cuda::LayerNormRnnConfig& config,
                     const void* x, const void* h0, const void* c0,
                     const tfrnn_layer_norm_rnn_params& params, const void* mask,
                     const void* zoneout_mask, const void* recurrent_mask, void* y, void* hn,
                     void* cn, void* reserve, void* workspace) {
  return Report(tf_rnn_ops::cuda::LayerNormRnnForward<T>(
      AsBlas(blas), AsStream(stream), config, static_cast<const T*>(x), static_cast<const T*>(h0),
      static_cast<const T*>(c0), LayerNormParamsOf<T>(params), static_cast<const T*>(mask),
      static_cast<const T*>(zoneout_mask), static_cast<const T*>(recurrent_mask),
      static_cast<T*>(y), static_cast<T*>(hn), static_cast<T*>(cn), static_cast<T*>(reserve),
      workspace));
}

template <typename T>
int LayerNormBackward(void* blas, void* stream, const tf_rnn_ops::cuda::LayerNormRnnConfig& config,
                      const void* x, const tfrnn_layer_norm_rnn_params& params, const void* mask,
                      const void* zoneout_mask, const void* recurrent_mask, const void* reserve,
                      const void* dy, const void* dhn, const void* dcn, void* dx, void* dh0,
                      void* dc0, const tfrnn_layer_norm_rnn_params& grads, void* workspace) {
  return Report(tf_rnn_ops::cuda::LayerNormRnnBackward<T>(
      AsBlas(blas), AsStream(stream), config, static_cast<const T*>(x),
      LayerNormParamsOf<T>(params), static_cast<const T*>(mask),
      static_cast<const T*>(zoneout_mask), static_cast<const T*>(recurrent_mask),
      static_cast<const T*>(reserve), static_cast<const T*>(dy), static_cast<const T*>(dhn),
      static_cast<const T*>(dcn), static_cast<T*>(dx), static_cast<T*>(dh0), static_cast<T*>(dc0),
      LayerNormGradsOf<T>(grads), workspace));
}

}  // namespace

namespace {
template <typename T>
int KerasDropoutForwardAs(void* blas, void* stream,
                          const tf_rnn_ops::cuda::KerasDropoutConfig& config,
                          const int32_t* lengths, const void* projected, const void* h0,
                          const void* c0, const void* rkernel, const void* rbias, const void* masks,
                          const void* zoneout, void* y, void* hy, void* cy, void* reserve,
                          void* workspace) {
  return Report(tf_rnn_ops::cuda::KerasDropoutForward<T>(
      AsBlas(blas), AsStream(stream), config, lengths, static_cast<const T*>(projected),
      static_cast<const T*>(h0), static_cast<const T*>(c0), static_cast<const T*>(rkernel),
      static_cast<const T*>(rbias), static_cast<const T*>(masks), static_cast<const T*>(zoneout),
      static_cast<T*>(y), static_cast<T*>(hy), static_cast<T*>(cy), reserve, workspace));
}

template <typename T>
int KerasDropoutBackwardAs(void* blas, void* stream,
                           const tf_rnn_ops::cuda::KerasDropoutConfig& config,
                           const int32_t* lengths, const void* rkernel, const void* masks,
                           const void* zoneout, const void* dy, const void* dhy, const void* dcy,
                           const void* reserve, void* d_projected, void* dh0, void* dc0, void* drk,
                           void* drb, void* workspace) {
  return Report(tf_rnn_ops::cuda::KerasDropoutBackward<T>(
      AsBlas(blas), AsStream(stream), config, lengths, static_cast<const T*>(rkernel),
      static_cast<const T*>(masks), static_cast<const T*>(zoneout), static_cast<const T*>(dy),
      static_cast<const T*>(dhy), static_cast<const T*>(dcy), reserve, static_cast<T*>(d_projected),
      static_cast<T*>(dh0), static_cast<T*>(dc0), static_cast<T*>(drk), static_cast<T*>(drb),
      workspace));
}
}  // namespace

extern "C" {

int tfrnn_api_version(void) { return 1; }

int tfrnn_is_host_emulation(void) {
#if defined(TF_RNN_CUDA_HOST_EMULATION)
  return 1;
#else
  return 0;
#endif
}

const char* tfrnn_last_error(void) { return last_error.c_str(); }

int tfrnn_blas_create(void** blas) {
  if (blas == nullptr) return InvalidArgument("tfrnn_blas_create: null output");
#if defined(TF_RNN_CUDA_HOST_EMULATION)
  *blas = &emulated_blas_handle;
  return TFRNN_OK;
#else
  cublasHandle_t handle = nullptr;
  const int rc = Report(tf_rnn_ops::cuda::CublasStatus(cublasCreate(&handle), "cublasCreate"));
  *blas = handle;
  return rc;
#endif
}

int tfrnn_blas_destroy(void* blas) {
#if defined(TF_RNN_CUDA_HOST_EMULATION)
  (void)blas;
  return TFRNN_OK;
#else
  if (blas == nullptr) return TFRNN_OK;
  return Report(tf_rnn_ops::cuda::CublasStatus(cublasDestroy(AsBlas(blas)), "cublasDestroy"));
#endif
}

int tfrnn_blas_set_tf32(void* blas, int enable) {
#if defined(TF_RNN_CUDA_HOST_EMULATION)
  (void)blas;
  (void)enable;
  return TFRNN_OK;
#else
  return Report(tf_rnn_ops::cuda::CublasStatus(
      cublasSetMathMode(AsBlas(blas), enable ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
      "cublasSetMathMode"));
#endif
}

int tfrnn_set_fused_steps(int mode) { return tf_rnn_ops::cuda::SetFusedSteps(mode); }

int64_t tfrnn_gru_block_cell_workspace_bytes(int dtype, int64_t batch, int64_t input_size,
                                             int64_t cell_size) {
  if (!ValidDType(dtype)) return -1;
  return static_cast<int64_t>(tf_rnn_ops::cuda::GruBlockCellWorkspaceBytes(
      batch, input_size, cell_size, dtype == TFRNN_FLOAT64 ? sizeof(double) : sizeof(float)));
}

int tfrnn_gru_block_cell_forward(void* blas, void* stream, int dtype, int64_t batch,
                                 int64_t input_size, int64_t cell_size, const void* x,
                                 const void* h_prev, const void* w_ru, const void* w_c,
                                 const void* b_ru, const void* b_c, void* r, void* u, void* c,
                                 void* h, void* workspace) {
  return ForDtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    return Report(tf_rnn_ops::cuda::GruBlockCellForward<T>(
        AsBlas(blas), AsStream(stream), batch, input_size, cell_size, static_cast<const T*>(x),
        static_cast<const T*>(h_prev), static_cast<const T*>(w_ru), static_cast<const T*>(w_c),
        static_cast<const T*>(b_ru), static_cast<const T*>(b_c), static_cast<T*>(r),
        static_cast<T*>(u), static_cast<T*>(c), static_cast<T*>(h), workspace));
  });
}

int tfrnn_gru_block_cell_backward(void* blas, void* stream, int dtype, int64_t batch,
                                  int64_t input_size, int64_t cell_size, const void* x,
                                  const void* h_prev, const void* w_ru, const void* w_c,
                                  const void* b_ru, const void* b_c, const void* r, const void* u,
                                  const void* c, const void* d_h, void* d_x, void* d_h_prev,
                                  void* d_c_bar, void* d_r_bar_u_bar, void* workspace) {
  return ForDtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    return Report(tf_rnn_ops::cuda::GruBlockCellBackward<T>(
        AsBlas(blas), AsStream(stream), batch, input_size, cell_size, static_cast<const T*>(x),
        static_cast<const T*>(h_prev), static_cast<const T*>(w_ru), static_cast<const T*>(w_c),
        static_cast<const T*>(b_ru), static_cast<const T*>(b_c), static_cast<const T*>(r),
        static_cast<const T*>(u), static_cast<const T*>(c), static_cast<const T*>(d_h),
        static_cast<T*>(d_x), static_cast<T*>(d_h_prev), static_cast<T*>(d_c_bar),
        static_cast<T*>(d_r_bar_u_bar), workspace));
  });
}

int tfrnn_convert_half16(void* stream, int kind, int to_float, int64_t n, const void* src,
                         void* dst) {
  using tf_rnn_ops::cuda::Half16;
  if (kind != 0 && kind != 1) return InvalidArgument("unknown 16-bit kind " + std::to_string(kind));
  const Half16 k = kind == 1 ? Half16::kBFloat16 : Half16::kFloat16;
  if (to_float) {
    return Report(tf_rnn_ops::cuda::Half16ToFloat(
        AsStream(stream), k, n, static_cast<const uint16_t*>(src), static_cast<float*>(dst)));
  }
  return Report(tf_rnn_ops::cuda::FloatToHalf16(
      AsStream(stream), k, n, static_cast<const float*>(src), static_cast<uint16_t*>(dst)));
}

int64_t tfrnn_rnn_params_size(const tfrnn_rnn_desc* desc) {
  RnnConfig config;
  const Status status = ToConfig(desc, &config);
  if (!status.ok()) {
    Report(status);
    return -1;
  }
  return config.shape.ParamsSize();
}

int tfrnn_rnn_sizes(const tfrnn_rnn_desc* desc, int64_t* forward_workspace_bytes,
                    int64_t* reserve_bytes, int64_t* backward_workspace_bytes) {
  RnnConfig config;
  const Status status = ToConfig(desc, &config);
  if (!status.ok()) return Report(status);
  const DType dtype = desc->dtype == TFRNN_FLOAT64 ? DType::kFloat64 : DType::kFloat32;
  if (forward_workspace_bytes) {
    *forward_workspace_bytes =
        static_cast<int64_t>(tf_rnn_ops::cuda::RnnForwardWorkspaceBytes(config, dtype));
  }
  if (reserve_bytes)
    *reserve_bytes = static_cast<int64_t>(tf_rnn_ops::cuda::RnnReserveBytes(config, dtype));
  if (backward_workspace_bytes) {
    *backward_workspace_bytes =
        static_cast<int64_t>(tf_rnn_ops::cuda::RnnBackwardWorkspaceBytes(config, dtype));
  }
  return TFRNN_OK;
}

int tfrnn_rnn_forward(void* blas, void* stream, const tfrnn_rnn_desc* desc,
                      const int32_t* host_seq_lengths, const void* x, const void* h0,
                      const void* c0, const void* params, void* y, void* hy, void* cy,
                      void* reserve, void* workspace) {
  RnnConfig config;
  const Status status = ToConfig(desc, &config);
  if (!status.ok()) return Report(status);
  if (desc->dtype == TFRNN_FLOAT64) {
    using T = double;
    return Report(tf_rnn_ops::cuda::RnnForward<T>(
        AsBlas(blas), AsStream(stream), config, host_seq_lengths, static_cast<const T*>(x),
        static_cast<const T*>(h0), static_cast<const T*>(c0), static_cast<const T*>(params),
        static_cast<T*>(y), static_cast<T*>(hy), static_cast<T*>(cy), reserve, workspace));
  }
  using T = float;
  return Report(tf_rnn_ops::cuda::RnnForward<T>(
      AsBlas(blas), AsStream(stream), config, host_seq_lengths, static_cast<const T*>(x),
      static_cast<const T*>(h0), static_cast<const T*>(c0), static_cast<const T*>(params),
      static_cast<T*>(y), static_cast<T*>(hy), static_cast<T*>(cy), reserve, workspace));
}

int tfrnn_rnn_backward(void* blas, void* stream, const tfrnn_rnn_desc* desc,
                       const int32_t* host_seq_lengths, const void* x, const void* params,
                       const void* dy, const void* dhy, const void* dcy, const void* reserve,
                       void* dx, void* dh0, void* dc0, void* dparams, void* workspace) {
  RnnConfig config;
  const Status status = ToConfig(desc, &config);
  if (!status.ok()) return Report(status);
  if (desc->dtype == TFRNN_FLOAT64) {
    using T = double;
    return Report(tf_rnn_ops::cuda::RnnBackward<T>(
        AsBlas(blas), AsStream(stream), config, host_seq_lengths, static_cast<const T*>(x),
        static_cast<const T*>(params), static_cast<const T*>(dy), static_cast<const T*>(dhy),
        static_cast<const T*>(dcy), reserve, static_cast<T*>(dx), static_cast<T*>(dh0),
        static_cast<T*>(dc0), static_cast<T*>(dparams), workspace));
  }
  using T = float;
  return Report(tf_rnn_ops::cuda::RnnBackward<T>(
      AsBlas(blas), AsStream(stream), config, host_seq_lengths, static_cast<const T*>(x),
      static_cast<const T*>(params), static_cast<const T*>(dy), static_cast<const T*>(dhy),
      static_cast<const T*>(dcy), reserve, static_cast<T*>(dx), static_cast<T*>(dh0),
      static_cast<T*>(dc0), static_cast<T*>(dparams), workspace));
}

int tfrnn_layer_norm_rnn_sizes(const tfrnn_layer_norm_rnn_desc* desc, int64_t* reserve_elements,
                               int64_t* forward_workspace_bytes,
                               int64_t* backward_workspace_bytes) {
  tf_rnn_ops::cuda::LayerNormRnnConfig config;
  const Status status = ToLayerNormConfig(desc, &config);
  if (!status.ok()) return Report(status);
  const size_t elem = desc->dtype == TFRNN_FLOAT64 ? sizeof(double) : sizeof(float);
  if (reserve_elements) *reserve_elements = tf_rnn_ops::cuda::LayerNormRnnReserveElements(config);
  if (forward_workspace_bytes) {
    *forward_workspace_bytes =
        static_cast<int64_t>(tf_rnn_ops::cuda::LayerNormRnnForwardWorkspaceBytes(config, elem));
  }
  if (backward_workspace_bytes) {
    *backward_workspace_bytes =
        static_cast<int64_t>(tf_rnn_ops::cuda::LayerNormRnnBackwardWorkspaceBytes(config, elem));
  }
  return TFRNN_OK;
}

int tfrnn_keras_dropout_sizes(const tfrnn_keras_dropout_desc* desc,
                              int64_t* forward_workspace_bytes, int64_t* reserve_bytes,
                              int64_t* backward_workspace_bytes) {
  tf_rnn_ops::cuda::KerasDropoutConfig config;
  const Status status = ToKerasDropoutConfig(desc, &config);
  if (!status.ok()) return Report(status);
  const DType dtype = desc->dtype == TFRNN_FLOAT64 ? DType::kFloat64 : DType::kFloat32;
  if (forward_workspace_bytes) {
    *forward_workspace_bytes =
        static_cast<int64_t>(tf_rnn_ops::cuda::KerasDropoutForwardWorkspaceBytes(config, dtype));
  }
  if (reserve_bytes) {
    *reserve_bytes =
        static_cast<int64_t>(tf_rnn_ops::cuda::KerasDropoutReserveBytes(config, dtype));
  }
  if (backward_workspace_bytes) {
    *backward_workspace_bytes =
        static_cast<int64_t>(tf_rnn_ops::cuda::KerasDropoutBackwardWorkspaceBytes(config, dtype));
  }
  return TFRNN_OK;
}

int tfrnn_layer_norm_rnn_forward(void* blas, void* stream, const tfrnn_layer_norm_rnn_desc* desc,
                                 const void* x, const void* h0, const void* c0,
                                 const tfrnn_layer_norm_rnn_params* params, const void* mask,
                                 const void* zoneout_mask, const void* recurrent_mask, void* y,
                                 void* hn, void* cn, void* reserve, void* workspace) {
  tf_rnn_ops::cuda::LayerNormRnnConfig config;
  const Status status = ToLayerNormConfig(desc, &config);
  if (!status.ok()) return Report(status);
  if (params == nullptr) return InvalidArgument("null tfrnn_layer_norm_rnn_params");
  if (desc->dtype == TFRNN_FLOAT64) {
    return LayerNormForward<double>(blas, stream, config, x, h0, c0, *params, mask, zoneout_mask,
                                    recurrent_mask, y, hn, cn, reserve, workspace);
  }
  return LayerNormForward<float>(blas, stream, config, x, h0, c0, *params, mask, zoneout_mask,
                                 recurrent_mask, y, hn, cn, reserve, workspace);
}

int tfrnn_layer_norm_rnn_backward(void* blas, void* stream, const tfrnn_layer_norm_rnn_desc* desc,
                                  const void* x, const tfrnn_layer_norm_rnn_params* params,
                                  const void* mask, const void* zoneout_mask,
                                  const void* recurrent_mask, const void* reserve, const void* dy,
                                  const void* dhn, const void* dcn, void* dx, void* dh0, void* dc0,
                                  const tfrnn_layer_norm_rnn_params* grads, void* workspace) {
  tf_rnn_ops::cuda::LayerNormRnnConfig config;
  const Status status = ToLayerNormConfig(desc, &config);
  if (!status.ok()) return Report(status);
  if (params == nullptr || grads == nullptr)
    return InvalidArgument("null tfrnn_layer_norm_rnn_params");
  if (desc->dtype == TFRNN_FLOAT64) {
    return LayerNormBackward<double>(blas, stream, config, x, *params, mask, zoneout_mask,
                                     recurrent_mask, reserve, dy, dhn, dcn, dx, dh0, dc0, *grads,
                                     workspace);
  }
  return LayerNormBackward<float>(blas, stream, config, x, *params, mask, zoneout_mask,
                                  recurrent_mask, reserve, dy, dhn, dcn, dx, dh0, dc0, *grads,
                                  workspace);
}

int tfrnn_keras_dropout_forward(void* blas, void* stream, const tfrnn_keras_dropout_desc* desc,
                                const int32_t* host_seq_lengths, const void* projected,
                                const void* h0, const void* c0, const void* recurrent_kernel,
                                const void* recurrent_bias, const void* masks, const void* zoneout,
                                void* y, void* hy, void* cy, void* reserve, void* workspace) {
  tf_rnn_ops::cuda::KerasDropoutConfig config;
  const Status status = ToKerasDropoutConfig(desc, &config);
  if (!status.ok()) return Report(status);
  auto run =
      desc->dtype == TFRNN_FLOAT64 ? &KerasDropoutForwardAs<double> : &KerasDropoutForwardAs<float>;
  return run(blas, stream, config, host_seq_lengths, projected, h0, c0, recurrent_kernel,
             recurrent_bias, masks, zoneout, y, hy, cy, reserve, workspace);
}

int tfrnn_keras_dropout_backward(void* blas, void* stream, const tfrnn_keras_dropout_desc* desc,
                                 const int32_t* host_seq_lengths, const void* recurrent_kernel,
                                 const void* masks, const void* zoneout, const void* dy,
                                 const void* dhy, const void* dcy, const void* reserve,
                                 void* d_projected, void* dh0, void* dc0, void* d_recurrent_kernel,
                                 void* d_recurrent_bias, void* workspace) {
  tf_rnn_ops::cuda::KerasDropoutConfig config;
  const Status status = ToKerasDropoutConfig(desc, &config);
  if (!status.ok()) return Report(status);
  auto run = desc->dtype == TFRNN_FLOAT64 ? &KerasDropoutBackwardAs<double>
                                          : &KerasDropoutBackwardAs<float>;
  return run(blas, stream, config, host_seq_lengths, recurrent_kernel, masks, zoneout, dy, dhy, dcy,
             reserve, d_projected, dh0, dc0, d_recurrent_kernel, d_recurrent_bias, workspace);
}

}  // extern "C"
