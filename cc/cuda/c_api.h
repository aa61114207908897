/* A small C API over the CUDA layer (build/cuda/libtf_rnn_ops_cuda.so), for ctypes harnesses and
 * other foreign callers. Pointers are device pointers except `host_seq_lengths`; `stream` is a
 * cudaStream_t (null: the legacy default stream) and `blas` a handle from tfrnn_blas_create, used
 * by one thread at a time (each call binds it to its `stream`) and left in host pointer mode.
 * Functions return TFRNN_OK or an error code; tfrnn_last_error() describes the last error of the
 * calling thread. Sizes are in bytes; workspace / reserve buffers must be 256-byte aligned (any
 * allocator of CUDA memory is). */
#ifndef TF_RNN_OPS_CC_CUDA_C_API_H_
#define TF_RNN_OPS_CC_CUDA_C_API_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TFRNN_EXPORT __attribute__((visibility("default")))

enum { TFRNN_OK = 0, TFRNN_INVALID_ARGUMENT = 1, TFRNN_CUDA_ERROR = 2, TFRNN_CUBLAS_ERROR = 3 };
enum { TFRNN_FLOAT32 = 0, TFRNN_FLOAT64 = 1 };
/* rnn_mode values: the order of tf_rnn_ops::RnnMode. */
enum {
  TFRNN_RNN_RELU = 0,
  TFRNN_RNN_TANH = 1,
  TFRNN_LSTM = 2,
  TFRNN_GRU = 3,
  TFRNN_GRU_RESET_BEFORE = 4 /* Keras GRU reset_after=False (docs/MATH.md) */
};

TFRNN_EXPORT int tfrnn_api_version(void); /* 1 */
/* 1 when built as the host emulation (no GPU: "device" pointers are host pointers). */
TFRNN_EXPORT int tfrnn_is_host_emulation(void);
TFRNN_EXPORT const char* tfrnn_last_error(void);

TFRNN_EXPORT int tfrnn_blas_create(void** blas);
TFRNN_EXPORT int tfrnn_blas_destroy(void* blas);
/* Lets float32 GEMMs use TF32 tensor cores (cuBLAS's default is full float32). */
TFRNN_EXPORT int tfrnn_blas_set_tf32(void* blas, int enable);

/* The fused RNN's forward steps (process-wide): 0 a cuBLAS GEMM and a gate kernel a step (the
   default), 1 one fused kernel a step where the cell allows (tests, benchmarks). Returns the
   previous setting. */
TFRNN_EXPORT int tfrnn_set_fused_steps(int mode);

/* ---- GRU block cell (docs/MATH.md, "GRU block cell") */
TFRNN_EXPORT int64_t tfrnn_gru_block_cell_workspace_bytes(int dtype, int64_t batch,
                                                          int64_t input_size, int64_t cell_size);
TFRNN_EXPORT int tfrnn_gru_block_cell_forward(void* blas, void* stream, int dtype, int64_t batch,
                                              int64_t input_size, int64_t cell_size, const void* x,
                                              const void* h_prev, const void* w_ru, const void* w_c,
                                              const void* b_ru, const void* b_c, void* r, void* u,
                                              void* c, void* h, void* workspace);
TFRNN_EXPORT int tfrnn_gru_block_cell_backward(void* blas, void* stream, int dtype, int64_t batch,
                                               int64_t input_size, int64_t cell_size, const void* x,
                                               const void* h_prev, const void* w_ru,
                                               const void* w_c, const void* b_ru, const void* b_c,
                                               const void* r, const void* u, const void* c,
                                               const void* d_h, void* d_x, void* d_h_prev,
                                               void* d_c_bar, void* d_r_bar_u_bar, void* workspace);

/* ---- 16-bit floats: kind 0 = IEEE half, 1 = bfloat16; to_float 1: 16-bit -> float32, 0: back
 * (round to nearest even). n elements. */
TFRNN_EXPORT int tfrnn_convert_half16(void* stream, int kind, int to_float, int64_t n,
                                      const void* src, void* dst);

/* ---- fused RNN (docs/MATH.md, "Fused RNN cells", "Params layout") */
typedef struct tfrnn_rnn_desc {
  int64_t dtype;      /* TFRNN_FLOAT32 / TFRNN_FLOAT64 */
  int64_t rnn_mode;   /* TFRNN_RNN_RELU ... TFRNN_GRU_RESET_BEFORE */
  int64_t skip_input; /* 0 / 1 (resolved input_mode) */
  int64_t num_layers;
  int64_t num_dirs; /* 1 / 2 */
  int64_t num_units;
  int64_t num_proj; /* 0: none */
  int64_t input_size;
  int64_t max_time;
  int64_t batch;
  int64_t time_major;  /* 0 / 1 */
  int64_t is_training; /* 0 / 1 */
  double dropout;
  uint64_t seed; /* dropout masks as TensorFlow's Philox(seed, seed2) in the CPU kernels */
  uint64_t seed2;
} tfrnn_rnn_desc;

/* Number of elements of the opaque params; -1 for an invalid description. */
TFRNN_EXPORT int64_t tfrnn_rnn_params_size(const tfrnn_rnn_desc* desc);
TFRNN_EXPORT int tfrnn_rnn_sizes(const tfrnn_rnn_desc* desc, int64_t* forward_workspace_bytes,
                                 int64_t* reserve_bytes, int64_t* backward_workspace_bytes);
/* host_seq_lengths: int32 [batch] in host memory, or null (all max_time). */
TFRNN_EXPORT int tfrnn_rnn_forward(void* blas, void* stream, const tfrnn_rnn_desc* desc,
                                   const int32_t* host_seq_lengths, const void* x, const void* h0,
                                   const void* c0, const void* params, void* y, void* hy, void* cy,
                                   void* reserve, void* workspace);
/* dy, dhy, dcy may be null (zeros); dx, dh0, dc0 null when not wanted. */
TFRNN_EXPORT int tfrnn_rnn_backward(void* blas, void* stream, const tfrnn_rnn_desc* desc,
                                    const int32_t* host_seq_lengths, const void* x,
                                    const void* params, const void* dy, const void* dhy,
                                    const void* dcy, const void* reserve, void* dx, void* dh0,
                                    void* dc0, void* dparams, void* workspace);

/* ---- fused layer-normalized LSTM / GRU with zoneout (TfRnn>LayerNormRnn; docs/MATH.md,
 * "The fused layer-norm op"; cc/cuda/layer_norm_rnn_cuda.h for every buffer's shape) */
enum { TFRNN_LAYER_NORM_LSTM = 0, TFRNN_LAYER_NORM_GRU = 1 };
/* zoneout (both op families below): 0 none, 1 a keep mask [T, B, H], 2 one keep value (1 - p) in
 * device memory. */
enum { TFRNN_ZONEOUT_NONE = 0, TFRNN_ZONEOUT_MASK = 1, TFRNN_ZONEOUT_SCALAR = 2 };
typedef struct tfrnn_layer_norm_rnn_desc {
  int64_t dtype; /* TFRNN_FLOAT32 / TFRNN_FLOAT64 */
  int64_t cell;  /* TFRNN_LAYER_NORM_LSTM / TFRNN_LAYER_NORM_GRU */
  int64_t max_time;
  int64_t batch;
  int64_t input_size;
  int64_t num_units;
  int64_t is_training; /* 0 / 1 */
  int64_t has_mask;    /* 0 / 1: a step mask [T, B] */
  int64_t zoneout;     /* TFRNN_ZONEOUT_* */
  double epsilon;
  int64_t has_recurrent_mask; /* 0 / 1: a recurrent dropout mask [B, H] (recurrent_mask below) */
  int64_t time_major; /* 1: x, y, dx, dy [T, B, ·]; 0: [B, T, ·] (the masks time-major in both) */
} tfrnn_layer_norm_rnn_desc;
/* The parameters (forward: inputs) or their grads (backward: outputs); null where the cell has
 * none (the GRU's beta_x, beta_h, gamma_c, beta_c; the LSTM's recurrent_bias). */
typedef struct tfrnn_layer_norm_rnn_params {
  void* kernel;
  void* recurrent_kernel;
  void* bias;
  void* recurrent_bias;
  void* gamma_x;
  void* beta_x;
  void* gamma_h;
  void* beta_h;
  void* gamma_c;
  void* beta_c;
} tfrnn_layer_norm_rnn_params;
/* reserve_elements: the reserve's element count (0 in inference); workspaces in bytes.
 * recurrent_mask (forward and backward): [B, H] with has_recurrent_mask, else null (h_{t-1} ⊙ m in
 * h's product with R only; the backward takes the forward's). */
TFRNN_EXPORT int tfrnn_layer_norm_rnn_sizes(const tfrnn_layer_norm_rnn_desc* desc,
                                            int64_t* reserve_elements,
                                            int64_t* forward_workspace_bytes,
                                            int64_t* backward_workspace_bytes);
TFRNN_EXPORT int tfrnn_layer_norm_rnn_forward(void* blas, void* stream,
                                              const tfrnn_layer_norm_rnn_desc* desc, const void* x,
                                              const void* h0, const void* c0,
                                              const tfrnn_layer_norm_rnn_params* params,
                                              const void* mask, const void* zoneout_mask,
                                              const void* recurrent_mask, void* y, void* hn,
                                              void* cn, void* reserve, void* workspace);
/* dx may be null (not wanted). */
TFRNN_EXPORT int tfrnn_layer_norm_rnn_backward(
    void* blas, void* stream, const tfrnn_layer_norm_rnn_desc* desc, const void* x,
    const tfrnn_layer_norm_rnn_params* params, const void* mask, const void* zoneout_mask,
    const void* recurrent_mask, const void* reserve, const void* dy, const void* dhn,
    const void* dcn, void* dx, void* dh0, void* dc0, const tfrnn_layer_norm_rnn_params* grads,
    void* workspace);
/* ---- TfRnn>KerasRNNDropout (docs/MATH.md, "Cells beyond cuDNN": Recurrent dropout,
 * Zoneout): one unidirectional
 * Keras layer's recurrence with recurrent dropout masks and zoneout, Keras' layouts and gate
 * column orders (cc/cuda/keras_rnn_dropout_cuda.h). */
typedef struct tfrnn_keras_dropout_desc {
  int64_t dtype;
  int64_t rnn_mode;
  int64_t num_units;
  int64_t max_time;
  int64_t batch;
  int64_t time_major;
  int64_t is_training;
  int64_t has_recurrent_bias; /* recurrent_bias [G*H] (with has_input_bias [2, G*H]) */
  int64_t has_masks;          /* recurrent_masks [G, B, H] */
  int64_t zoneout;            /* TFRNN_ZONEOUT_*: [T, B, H] time-major, or one scalar */
  int64_t has_input_bias;     /* recurrent_bias [2, G*H]: the input side's row, the recurrent's */
  int64_t gate_major;         /* projected, d_projected [G, B, T, H] ([G, T, B, H] time-major) */
} tfrnn_keras_dropout_desc;

TFRNN_EXPORT int tfrnn_keras_dropout_sizes(const tfrnn_keras_dropout_desc* desc,
                                           int64_t* forward_workspace_bytes, int64_t* reserve_bytes,
                                           int64_t* backward_workspace_bytes);
/* projected [B, T, G*H] ([T, B, G*H] time-major; gate_major: [G, B, T, H] / [G, T, B, H]); h0, c0
 * [B, H] (c0 lstm only; null: zeros);
 * hy, cy may be null. */
TFRNN_EXPORT int tfrnn_keras_dropout_forward(
    void* blas, void* stream, const tfrnn_keras_dropout_desc* desc, const int32_t* host_seq_lengths,
    const void* projected, const void* h0, const void* c0, const void* recurrent_kernel,
    const void* recurrent_bias, const void* masks, const void* zoneout, void* y, void* hy, void* cy,
    void* reserve, void* workspace);
/* dy, dhy, dcy may be null (zeros); dh0, dc0 null when not wanted. */
TFRNN_EXPORT int tfrnn_keras_dropout_backward(
    void* blas, void* stream, const tfrnn_keras_dropout_desc* desc, const int32_t* host_seq_lengths,
    const void* recurrent_kernel, const void* masks, const void* zoneout, const void* dy,
    const void* dhy, const void* dcy, const void* reserve, void* d_projected, void* dh0, void* dc0,
    void* d_recurrent_kernel, void* d_recurrent_bias, void* workspace);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TF_RNN_OPS_CC_CUDA_C_API_H_ */
