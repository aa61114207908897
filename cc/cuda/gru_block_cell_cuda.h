// GRU block cell (docs/MATH.md, "GRU block cell") on CUDA, framework-free: raw device pointers, a
// stream and a cuBLAS handle.
//
// All matrices are row-major and dense: x [B, I], h_prev [B, H], w_ru [I+H, 2H] (columns [r | u],
// rows [x-part ; h-part]), w_c [I+H, H], b_ru [2H], b_c [H]; outputs r, u, c, h, d_h_prev, d_c_bar
// [B, H], d_x [B, I], d_r_bar_u_bar [B, 2H]. `workspace` is device memory of at least
// GruBlockCellWorkspaceBytes(B, I, H, sizeof(T)) bytes (aligned to 256 bytes). The functions only
// enqueue work on `stream` (they set the handle's stream to it); nothing is synchronized.
#ifndef TF_RNN_OPS_CC_CUDA_GRU_BLOCK_CELL_CUDA_H_
#define TF_RNN_OPS_CC_CUDA_GRU_BLOCK_CELL_CUDA_H_

#include <cstddef>
#include <cstdint>

#include "cc/cuda/cuda_compat.h"

namespace tf_rnn_ops {
namespace cuda {

// Scratch bytes needed by both the forward and the grad (the larger of the two).
size_t GruBlockCellWorkspaceBytes(int64_t batch, int64_t input_size, int64_t cell_size,
                                  size_t elem_size);

// Forward: [r_bar, u_bar] = [x, h_prev] w_ru + b_ru; r, u = σ(.); c = tanh([x, h_prev ∘ r] w_c +
// b_c); h = u ∘ h_prev + (1 − u) ∘ c. Two GEMMs (K = I + H) and three fused element-wise kernels.
template <typename T>
Status GruBlockCellForward(cublasHandle_t blas, cudaStream_t stream, int64_t batch,
                           int64_t input_size, int64_t cell_size, const T* x, const T* h_prev,
                           const T* w_ru, const T* w_c, const T* b_ru, const T* b_c, T* r, T* u,
                           T* c, T* h, void* workspace);

// Grad kernel: from r, u, c of the forward and d_h, computes d_x, d_h_prev, d_c_bar and
// d_r_bar_u_bar (docs/MATH.md, "GRU block cell"). b_ru and b_c are not needed by the math; they are
// accepted for symmetry with the op.
template <typename T>
Status GruBlockCellBackward(cublasHandle_t blas, cudaStream_t stream, int64_t batch,
                            int64_t input_size, int64_t cell_size, const T* x, const T* h_prev,
                            const T* w_ru, const T* w_c, const T* b_ru, const T* b_c, const T* r,
                            const T* u, const T* c, const T* d_h, T* d_x, T* d_h_prev, T* d_c_bar,
                            T* d_r_bar_u_bar, void* workspace);

}  // namespace cuda
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CUDA_GRU_BLOCK_CELL_CUDA_H_
