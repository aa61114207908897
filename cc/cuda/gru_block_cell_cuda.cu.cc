// GRU block cell on CUDA (docs/MATH.md, "GRU block cell"): cuBLAS GEMMs for the products, fused
// kernels for the rest, whose element-wise math is the cell's one definition
// (cc/cells/gru_block_cell.h).
#if !defined(__CUDACC_RTC__)  // NVRTC (cc/cuda/cuda_compat.h) compiles the kernels alone
#include "cc/cuda/gru_block_cell_cuda.h"
#endif

#include "cc/cells/gru_block_cell.h"
#include "cc/cuda/cuda_util.h"

namespace tf_rnn_ops {
namespace cuda {
namespace {

// xh = [x, h_prev]: [B, I + H].
template <typename T>
__global__ void ConcatInputsKernel(int64_t batch, int64_t input_size, int64_t cell_size, const T* x,
                                   const T* h_prev, T* xh) {
  const int64_t width = input_size + cell_size;
  TF_RNN_KERNEL_LOOP(i, batch * width) {
    const int64_t b = i / width, k = i % width;
    xh[i] = k < input_size ? x[b * input_size + k] : h_prev[b * cell_size + (k - input_size)];
  }
}

// r, u = σ(ru_bar + b_ru); the h-part of xh becomes h_prev ∘ r (the input of the candidate's
// product).
template <typename T>
__global__ void GatesKernel(int64_t batch, int64_t input_size, int64_t cell_size, const T* ru_bar,
                            const T* b_ru, const T* h_prev, T* r, T* u, T* xh) {
  const int64_t H = cell_size;
  TF_RNN_KERNEL_LOOP(i, batch * H) {
    const int64_t b = i / H, j = i % H;
    const T rv = GruBlockCell::Gate(ru_bar[b * 2 * H + j] + b_ru[j]);
    const T uv = GruBlockCell::Gate(ru_bar[b * 2 * H + H + j] + b_ru[H + j]);
    r[i] = rv;
    u[i] = uv;
    xh[b * (input_size + H) + input_size + j] = GruBlockCell::ResetHPrev(h_prev[i], rv);
  }
}

// c = tanh(c_bar + b_c) (c holds c_bar on entry); h = u ∘ h_prev + (1 − u) ∘ c.
template <typename T>
__global__ void CandidateKernel(int64_t batch, int64_t cell_size, const T* b_c, const T* u,
                                const T* h_prev, T* c, T* h) {
  TF_RNN_KERNEL_LOOP(i, batch * cell_size) {
    const T cv = GruBlockCell::Candidate(c[i] + b_c[i % cell_size]);
    c[i] = cv;
    h[i] = GruBlockCell::Hidden(u[i], h_prev[i], cv);
  }
}

// d_c_bar = d_h ∘ (1 − u) ∘ (1 − c²); d_u_bar = d_h ∘ (h_prev − c) ∘ u ∘ (1 − u) (the u-half of
// d_r_bar_u_bar).
template <typename T>
__global__ void GradCandidateKernel(int64_t batch, int64_t cell_size, const T* u, const T* c,
                                    const T* h_prev, const T* d_h, T* d_c_bar, T* d_r_bar_u_bar) {
  const int64_t H = cell_size;
  TF_RNN_KERNEL_LOOP(i, batch * H) {
    const int64_t b = i / H, j = i % H;
    const T uv = u[i], cv = c[i], dh = d_h[i];
    d_c_bar[i] = GruBlockCell::DCBar(dh, uv, cv);
    d_r_bar_u_bar[b * 2 * H + H + j] = GruBlockCell::DUBar(dh, h_prev[i], cv, uv);
  }
}

// From d_h_prevr (the h-part of d_c_bar w_cᵀ): d_r_bar = d_h_prevr ∘ h_prev ∘ r ∘ (1 − r) (the
// r-half of d_r_bar_u_bar) and the element-wise part of d_h_prev, d_h_prevr ∘ r + d_h ∘ u.
template <typename T>
__global__ void GradResetKernel(int64_t batch, int64_t cell_size, const T* r, const T* u,
                                const T* h_prev, const T* d_h, const T* d_h_prevr, T* d_r_bar_u_bar,
                                T* d_h_prev) {
  const int64_t H = cell_size;
  TF_RNN_KERNEL_LOOP(i, batch * H) {
    const int64_t b = i / H, j = i % H;
    const T rv = r[i], dhr = d_h_prevr[i];
    d_r_bar_u_bar[b * 2 * H + j] = GruBlockCell::DRBar(dhr, h_prev[i], rv);
    // The product's part (d_h_prev_ru) is added by a GEMM afterwards: zero here.
    d_h_prev[i] = GruBlockCell::DHPrev(T(0), dhr, rv, d_h[i], u[i]);
  }
}

}  // namespace
}  // namespace cuda
}  // namespace tf_rnn_ops

#if !defined(__CUDACC_RTC__)  // the host code
namespace tf_rnn_ops {
namespace cuda {
namespace {

template <typename T>
struct ForwardScratch {
  T* xh;      // [B, I + H]
  T* ru_bar;  // [B, 2H]
  static ForwardScratch Carve(int64_t B, int64_t I, int64_t H, void* base, size_t* bytes) {
    Carver carver(base);
    ForwardScratch s;
    s.xh = carver.Take<T>(B * (I + H));
    s.ru_bar = carver.Take<T>(B * 2 * H);
    if (bytes) *bytes = carver.size();
    return s;
  }
};

template <typename T>
struct BackwardScratch {
  T* d_h_prevr;  // [B, H]
  static BackwardScratch Carve(int64_t B, int64_t /*I*/, int64_t H, void* base, size_t* bytes) {
    Carver carver(base);
    BackwardScratch s;
    s.d_h_prevr = carver.Take<T>(B * H);
    if (bytes) *bytes = carver.size();
    return s;
  }
};

Status CheckSizes(int64_t batch, int64_t input_size, int64_t cell_size) {
  if (batch < 0 || input_size < 0 || cell_size < 0) {
    return Status::InvalidArgument("GRU block cell: negative size (batch " + std::to_string(batch) +
                                   ", input_size " + std::to_string(input_size) + ", cell_size " +
                                   std::to_string(cell_size) + ")");
  }
  return Status::Ok();
}

template <typename T>
size_t WorkspaceBytesFor(int64_t B, int64_t I, int64_t H) {
  size_t fwd = 0, bwd = 0;
  ForwardScratch<T>::Carve(B, I, H, nullptr, &fwd);
  BackwardScratch<T>::Carve(B, I, H, nullptr, &bwd);
  return std::max(fwd, bwd);
}

}  // namespace

size_t GruBlockCellWorkspaceBytes(int64_t batch, int64_t input_size, int64_t cell_size,
                                  size_t elem_size) {
  if (batch < 0 || input_size < 0 || cell_size < 0) return 0;
  return elem_size == sizeof(double) ? WorkspaceBytesFor<double>(batch, input_size, cell_size)
                                     : WorkspaceBytesFor<float>(batch, input_size, cell_size);
}

template <typename T>
Status GruBlockCellForward(cublasHandle_t blas, cudaStream_t stream, int64_t batch,
                           int64_t input_size, int64_t cell_size, const T* x, const T* h_prev,
                           const T* w_ru, const T* w_c, const T* b_ru, const T* b_c, T* r, T* u,
                           T* c, T* h, void* workspace) {
  TF_RNN_RETURN_IF_ERROR(CheckSizes(batch, input_size, cell_size));
  const int64_t B = batch, I = input_size, H = cell_size;
  if (B == 0 || H == 0) return Status::Ok();  // every output is empty
  TF_RNN_CUBLAS_CHECK(cublasSetStream(blas, stream));
  const ForwardScratch<T> s = ForwardScratch<T>::Carve(B, I, H, workspace, nullptr);
  const unsigned blocks = BlocksFor(B * (I + H));

  auto concat = &ConcatInputsKernel<T>;
  TF_RNN_LAUNCH(concat, blocks, kThreadsPerBlock, stream, B, I, H, x, h_prev, s.xh);
  TF_RNN_CUDA_CHECK(cudaGetLastError());
  // [r_bar, u_bar] = [x, h_prev] w_ru
  TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, B, 2 * H, I + H, T(1), s.xh,
                                         I + H, 0, w_ru, 2 * H, 0, T(0), s.ru_bar, 2 * H, 0));
  auto gates = &GatesKernel<T>;
  TF_RNN_LAUNCH(gates, BlocksFor(B * H), kThreadsPerBlock, stream, B, I, H, s.ru_bar, b_ru, h_prev,
                r, u, s.xh);
  TF_RNN_CUDA_CHECK(cudaGetLastError());
  // c_bar = [x, h_prev ∘ r] w_c, written to c and finished in place.
  TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, false, B, H, I + H, T(1), s.xh, I + H,
                                         0, w_c, H, 0, T(0), c, H, 0));
  auto candidate = &CandidateKernel<T>;
  TF_RNN_LAUNCH(candidate, BlocksFor(B * H), kThreadsPerBlock, stream, B, H, b_c, u, h_prev, c, h);
  TF_RNN_CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

template <typename T>
Status GruBlockCellBackward(cublasHandle_t blas, cudaStream_t stream, int64_t batch,
                            int64_t input_size, int64_t cell_size, const T* /*x*/, const T* h_prev,
                            const T* w_ru, const T* w_c, const T* /*b_ru*/, const T* /*b_c*/,
                            const T* r, const T* u, const T* c, const T* d_h, T* d_x, T* d_h_prev,
                            T* d_c_bar, T* d_r_bar_u_bar, void* workspace) {
  TF_RNN_RETURN_IF_ERROR(CheckSizes(batch, input_size, cell_size));
  const int64_t B = batch, I = input_size, H = cell_size;
  if (B == 0) return Status::Ok();
  if (H == 0) return Zero<T>(stream, B * I, d_x);  // nothing depends on x
  TF_RNN_CUBLAS_CHECK(cublasSetStream(blas, stream));
  const BackwardScratch<T> s = BackwardScratch<T>::Carve(B, I, H, workspace, nullptr);

  auto grad_candidate = &GradCandidateKernel<T>;
  TF_RNN_LAUNCH(grad_candidate, BlocksFor(B * H), kThreadsPerBlock, stream, B, H, u, c, h_prev, d_h,
                d_c_bar, d_r_bar_u_bar);
  TF_RNN_CUDA_CHECK(cudaGetLastError());
  // [d_x_c, d_h_prevr] = d_c_bar w_cᵀ, as two products over the row blocks of w_c.
  TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, B, I, H, T(1), d_c_bar, H, 0,
                                         w_c, H, 0, T(0), d_x, I, 0));
  TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, B, H, H, T(1), d_c_bar, H, 0,
                                         w_c + I * H, H, 0, T(0), s.d_h_prevr, H, 0));
  auto grad_reset = &GradResetKernel<T>;
  TF_RNN_LAUNCH(grad_reset, BlocksFor(B * H), kThreadsPerBlock, stream, B, H, r, u, h_prev, d_h,
                s.d_h_prevr, d_r_bar_u_bar, d_h_prev);
  TF_RNN_CUDA_CHECK(cudaGetLastError());
  // [d_x_ru, d_h_prev_ru] = d_r_bar_u_bar w_ruᵀ, accumulated onto d_x and d_h_prev.
  TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, B, I, 2 * H, T(1),
                                         d_r_bar_u_bar, 2 * H, 0, w_ru, 2 * H, 0, T(1), d_x, I, 0));
  TF_RNN_RETURN_IF_ERROR(RowMajorGemm<T>(blas, stream, false, true, B, H, 2 * H, T(1),
                                         d_r_bar_u_bar, 2 * H, 0, w_ru + I * 2 * H, 2 * H, 0, T(1),
                                         d_h_prev, H, 0));
  return Status::Ok();
}

#define TF_RNN_INSTANTIATE_GRU_BLOCK_CELL(T)                                                       \
  template Status GruBlockCellForward<T>(cublasHandle_t, cudaStream_t, int64_t, int64_t, int64_t,  \
                                         const T*, const T*, const T*, const T*, const T*,         \
                                         const T*, T*, T*, T*, T*, void*);                         \
  template Status GruBlockCellBackward<T>(cublasHandle_t, cudaStream_t, int64_t, int64_t, int64_t, \
                                          const T*, const T*, const T*, const T*, const T*,        \
                                          const T*, const T*, const T*, const T*, const T*, T*,    \
                                          T*, T*, T*, void*);
TF_RNN_INSTANTIATE_GRU_BLOCK_CELL(float)
TF_RNN_INSTANTIATE_GRU_BLOCK_CELL(double)
#undef TF_RNN_INSTANTIATE_GRU_BLOCK_CELL

}  // namespace cuda
}  // namespace tf_rnn_ops
#endif  // __CUDACC_RTC__
