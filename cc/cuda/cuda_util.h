// Internal helpers of the CUDA layer (included by its .cu.cc files only): row-major GEMMs on
// cuBLAS, launch shapes, element-wise utility kernels and a carver for workspace / reserve buffers.
#ifndef TF_RNN_OPS_CC_CUDA_CUDA_UTIL_H_
#define TF_RNN_OPS_CC_CUDA_CUDA_UTIL_H_

#include <cstdint>
#if !defined(__CUDACC_RTC__)  // NVRTC (cuda_compat.h) sees the kernels, not the host code
#include <algorithm>
#include <climits>
#include <cstddef>
#include <string>
#endif

#include "cc/cuda/cuda_compat.h"

namespace tf_rnn_ops {
namespace cuda {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 8192;  // the kernels are grid-stride loops: more blocks buy nothing

#if !defined(__CUDACC_RTC__)
// Blocks in x for `n` work items (at least 1, so that a launch over 0 items is still valid).
inline unsigned BlocksFor(int64_t n) {
  const int64_t blocks = (n + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, kMaxBlocks)));
}
#endif  // __CUDACC_RTC__

// Shared memory and the block barrier in device code; on the host (the emulation, the NVRTC
// build's host placeholders) a block is one thread: a plain array and nothing to wait for.
// TF_RNN_UNROLL(n): `#pragma unroll n` for the device compilers only (g++ would warn).
#if defined(__CUDA_ARCH__)
#define TF_RNN_SHARED __shared__
#define TF_RNN_SYNC() __syncthreads()
#define TF_RNN_PRAGMA(x) _Pragma(#x)
#define TF_RNN_UNROLL(n) TF_RNN_PRAGMA(unroll n)
#else
#define TF_RNN_SHARED
#define TF_RNN_SYNC() ((void)0)
#define TF_RNN_UNROLL(n)
#endif

// The grid-stride loop every kernel of this layer uses for its x dimension.
#define TF_RNN_KERNEL_LOOP(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

#if !defined(__CUDACC_RTC__)
// ---------------------------------------------------------------------------------------------------
// Buffers carved out of one allocation, each aligned to 256 bytes. With a null base only the size
// is computed (every pointer is null), so the same code sizes and carves.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename U>
  U* Take(int64_t count) {
    offset_ = (offset_ + 255) / 256 * 256;
    U* p = (base_ != nullptr && count > 0) ? reinterpret_cast<U*>(base_ + offset_) : nullptr;
    offset_ += static_cast<size_t>(count > 0 ? count : 0) * sizeof(U);
    return p;
  }
  size_t size() const { return (offset_ + 255) / 256 * 256; }

 private:
  char* base_;
  size_t offset_ = 0;
};
#endif  // __CUDACC_RTC__

// ---------------------------------------------------------------------------------------------------
// Element-wise kernels.
template <typename T>
__global__ void FillKernel(int64_t n, T value, T* out) {
  TF_RNN_KERNEL_LOOP(i, n) { out[i] = value; }
}

// C[b][i, j] *= beta for a strided batch of [rows, cols] matrices with leading dimension ldc.
template <typename T>
__global__ void ScaleMatrixKernel(int64_t rows, int64_t cols, int64_t ldc, int64_t stride, T beta,
                                  T* c) {
  T* m = c + blockIdx.y * stride;
  TF_RNN_KERNEL_LOOP(i, rows * cols) {
    const int64_t r = i / cols, k = i % cols;
    m[r * ldc + k] = beta == T(0) ? T(0) : beta * m[r * ldc + k];
  }
}

#if !defined(__CUDACC_RTC__)
template <typename T>
Status Fill(cudaStream_t stream, int64_t n, T value, T* out) {
  if (n <= 0) return Status::Ok();
  auto kernel = &FillKernel<T>;
  TF_RNN_LAUNCH(kernel, BlocksFor(n), kThreadsPerBlock, stream, n, value, out);
  return CudaStatus(cudaGetLastError(), "FillKernel");
}

template <typename T>
Status Zero(cudaStream_t stream, int64_t n, T* out) {
  if (n <= 0) return Status::Ok();
  return CudaStatus(cudaMemsetAsync(out, 0, static_cast<size_t>(n) * sizeof(T), stream),
                    "cudaMemsetAsync");
}

// ---------------------------------------------------------------------------------------------------
// Row-major GEMM on (column-major) cuBLAS, for a strided batch:
//   C[i] (M x N, leading dim ldc) = alpha * op(A[i]) (M x K) * op(B[i]) (K x N) + beta * C[i]
// where A[i] = A + i * stride_a (a stride of 0 shares one matrix), op(A) = A (stored M x K, lda >=
// K) or A^T (stored K x M, lda >= M), likewise B. A row-major matrix is the column-major view of
// its transpose, so this is cuBLAS's C^T = op(B)^T op(A)^T with the operands swapped.
inline Status CheckBlasDims(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                            int64_t batch) {
  for (int64_t v : {m, n, k, lda, ldb, ldc, batch}) {
    if (v < 0 || v > INT_MAX) {
      return Status::InvalidArgument("a matrix dimension (" + std::to_string(v) +
                                     ") does not fit the 32-bit sizes of cuBLAS");
    }
  }
  return Status::Ok();
}

#if defined(TF_RNN_CUDA_HOST_EMULATION)

template <typename T>
Status Gemm(cublasHandle_t, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
            const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b,
            T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch = 1) {
  TF_RNN_RETURN_IF_ERROR(CheckBlasDims(m, n, k, lda, ldb, ldc, batch));
  for (int64_t p = 0; p < batch; ++p) {
    const T* ap = a + p * stride_a;
    const T* bp = b + p * stride_b;
    T* cp = c + p * stride_c;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t q = 0; q < k; ++q) {
          const double av = trans_a ? ap[q * lda + i] : ap[i * lda + q];
          const double bv = trans_b ? bp[j * ldb + q] : bp[q * ldb + j];
          acc += av * bv;
        }
        T& out = cp[i * ldc + j];
        out = static_cast<T>(alpha * acc + (beta == T(0) ? T(0) : beta * out));
      }
    }
  }
  return Status::Ok();
}

#else  // real cuBLAS

inline cublasStatus_t GemmStridedBatchedCall(cublasHandle_t h, cublasOperation_t ta,
                                             cublasOperation_t tb, int m, int n, int k,
                                             const float* alpha, const float* a, int lda,
                                             long long sa, const float* b, int ldb, long long sb,
                                             const float* beta, float* c, int ldc, long long sc,
                                             int batch) {
  if (batch == 1) return cublasSgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                                   sc, batch);
}
inline cublasStatus_t GemmStridedBatchedCall(cublasHandle_t h, cublasOperation_t ta,
                                             cublasOperation_t tb, int m, int n, int k,
                                             const double* alpha, const double* a, int lda,
                                             long long sa, const double* b, int ldb, long long sb,
                                             const double* beta, double* c, int ldc, long long sc,
                                             int batch) {
  if (batch == 1) return cublasDgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                                   sc, batch);
}

template <typename T>
Status Gemm(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
            T alpha, const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
            int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch = 1) {
  TF_RNN_RETURN_IF_ERROR(CheckBlasDims(m, n, k, lda, ldb, ldc, batch));
  // Column-major: C^T (n x m) = op(B)^T (n x k) * op(A)^T (k x m).
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  return CublasStatus(
      GemmStridedBatchedCall(
          handle, op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha,
          b, static_cast<int>(std::max<int64_t>(1, ldb)), stride_b, a,
          static_cast<int>(std::max<int64_t>(1, lda)), stride_a, &beta, c,
          static_cast<int>(std::max<int64_t>(1, ldc)), stride_c, static_cast<int>(batch)),
      "cublas gemm");
}

#endif  // TF_RNN_CUDA_HOST_EMULATION

// The GEMM the drivers call: handles the degenerate sizes itself (nothing to do for an empty C; C =
// beta C for an empty inner dimension), so that cuBLAS only sees valid leading dimensions.
template <typename T>
Status RowMajorGemm(cublasHandle_t handle, cudaStream_t stream, bool trans_a, bool trans_b,
                    int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                    int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
                    int64_t ldc, int64_t stride_c, int64_t batch = 1) {
  if (m <= 0 || n <= 0 || batch <= 0) return Status::Ok();
  if (k <= 0) {
    if (beta == T(1)) return Status::Ok();
    if (batch > 65535) return Status::InvalidArgument("too many matrices in a batch");
    auto kernel = &ScaleMatrixKernel<T>;
    TF_RNN_LAUNCH(kernel, dim3(BlocksFor(m * n), static_cast<unsigned>(batch)), kThreadsPerBlock,
                  stream, m, n, ldc, stride_c, beta, c);
    return CudaStatus(cudaGetLastError(), "ScaleMatrixKernel");
  }
  return Gemm<T>(handle, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta,
                 c, ldc, stride_c, batch);
}
#endif  // __CUDACC_RTC__

}  // namespace cuda
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CUDA_CUDA_UTIL_H_
