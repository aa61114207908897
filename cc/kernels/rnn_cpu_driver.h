// The fused multi-layer RNN on CPU: one driver over layers and directions, templated over the cell.
//
// Works on raw pointers in the compute type T (float or double), time-major, with states packed as
// [num_layers * num_dirs, B, ·]. The OpKernels (cudnn_rnn_kernels.h) convert layouts and dtypes.
//
// Where the time goes and how it is spent (see docs/PERFORMANCE.md):
//  * the input projection of a chunk of steps (~512 rows) is one [rows, in] x [in, G·H] product;
//  * each step does one [B, H_out] x [H_out, G·H] product on R packed once per call
//    (packed_gemm.h) and one fused pass over the gates, each split evenly over the threads;
//  * backprop keeps the pre-activation grads of a chunk of steps and turns them into the chunk's
//    share of the weight gradients and the grad of the layer input: three products a chunk.
// Variable lengths: batch row b runs over steps s < len_b. The backward direction reads the valid part
// of each sequence in reverse: at step s it processes time t = len_b - 1 - s. Rows past their length
// keep their state, output zeros and pass gradients straight through.
#ifndef TF_RNN_OPS_CC_KERNELS_RNN_CPU_DRIVER_H_
#define TF_RNN_OPS_CC_KERNELS_RNN_CPU_DRIVER_H_

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "cc/kernels/packed_gemm.h"
#include "cc/kernels/rnn_cell_math.h"
#include "cc/kernels/rnn_params.h"
#include "tensorflow/core/lib/random/philox_random.h"
#include "tensorflow/core/lib/random/random_distributions.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_rnn_ops {

using CpuDevice = Eigen::ThreadPoolDevice;

// C[M, N] = op(A) · op(B) (or += when accumulate), row-major; op(A) is [M, K], op(B) is [K, N].
template <typename T>
void CpuGemm(const CpuDevice& d, bool transpose_a, bool transpose_b, int64_t M, int64_t N, int64_t K,
             const T* A, const T* B, T* C, bool accumulate) {
  if (M == 0 || N == 0) return;
  using ConstMatrix = Eigen::TensorMap<Eigen::Tensor<const T, 2, Eigen::RowMajor, Eigen::DenseIndex>>;
  using Matrix = Eigen::TensorMap<Eigen::Tensor<T, 2, Eigen::RowMajor, Eigen::DenseIndex>>;
  Matrix c(C, M, N);
  if (K == 0) {
    if (!accumulate) c.device(d) = c.constant(T(0));
    return;
  }
  ConstMatrix a(A, transpose_a ? K : M, transpose_a ? M : K);
  ConstMatrix b(B, transpose_b ? N : K, transpose_b ? K : N);
  const Eigen::array<Eigen::IndexPair<Eigen::DenseIndex>, 1> dims = {
      Eigen::IndexPair<Eigen::DenseIndex>(transpose_a ? 0 : 1, transpose_b ? 1 : 0)};
  if (accumulate) {
    c.device(d) += a.contract(b, dims);
  } else {
    c.device(d) = a.contract(b, dims);
  }
}

// Runs fn(begin, end) over [0, n) rows on the device's pool, each row costing about `row_cost` flops:
// one equal share of the rows per thread (the work of a time step is too short for Eigen's cost-model
// blocks and work stealing to pay; measured, uneven blocks cost the step products a third).
template <typename Fn>
void ParallelRows(const CpuDevice& d, int64_t n, double row_cost, Fn&& fn,
                  double min_flops = 20000) {
  if (n <= 0) return;
  const int64_t shares = std::min<int64_t>(d.numThreads(), n);
  if (n * row_cost < min_flops || shares <= 1) {  // not worth a dispatch
    fn(0, n);
    return;
  }
  d.parallelFor(shares, Eigen::TensorOpCost(0, 0, 1e9), [&](Eigen::Index begin, Eigen::Index end) {
    for (Eigen::Index t = begin; t < end; ++t) fn(n * t / shares, n * (t + 1) / shares);
  });
}

// A product with a fixed weight matrix that every time step (R, P) or chunk of steps (W) repeats:
// C[M, N] = A[M, K] · B, B being [K, N] or (transposed) the row-major [N, K] weights. Eigen's
// contraction would pack B again at every call; for float, B is packed once per op call (into
// `storage`, of StepGemm<float>::StorageSize floats) and every call runs the packed kernel.
template <typename T>
class StepGemm {
 public:
  static int64_t StorageSize(int64_t K, int64_t N) { return 0; }
  // (gate_src must be null here: the callers permute the weights of other types beforehand;
  // `stream` changes nothing: Eigen's product reads b as stored.)
  StepGemm(const CpuDevice& d, const T* b, int64_t K, int64_t N, bool transposed, T* storage,
           const int* gate_src = nullptr, int64_t block = 0, bool stream = false)
      : d_(d), b_(b), K_(K), N_(N), transposed_(transposed) {}
  void Run(int64_t M, const T* A, T* C) const {
    CpuGemm<T>(d_, false, transposed_, M, N_, K_, A, b_, C, false);
  }
  static constexpr bool kRowsOnOneThread = false;  // see StepGemm<float>
  void RunOnThisThread(int64_t M, const T* A, T* C) const { Run(M, A, C); }

 private:
  const CpuDevice& d_;
  const T* b_;
  int64_t K_, N_;
  bool transposed_;
};

template <>
class StepGemm<float> {
 public:
  // Measured at batch 1 (0.4 MFLOP a step): dispatching to 2 threads made the step 3x slower.
  static constexpr double kStepMinFlops = 1e6;
  static int64_t StorageSize(int64_t K, int64_t N) { return PackedMatrix::PackedSize(K, N); }
  // gate_src (b not transposed; or null): column block g (`block` wide) of the product's B is
  // column block gate_src[g] of b. stream (b not transposed): no packing, every product reads b
  // as stored (StreamGemm; for the few rows of small B·T calls, where packing costs more than it
  // saves, see CpuRnn::Forward's callers); `storage` is then unused.
  StepGemm(const CpuDevice& d, const float* b, int64_t K, int64_t N, bool transposed,
           float* storage, const int* gate_src = nullptr, int64_t block = 0, bool stream = false)
      : d_(d), packed_(K, N, storage), b_(b), gate_src_(gate_src), block_(block), stream_(stream) {
    if (stream) return;
    ParallelRows(d, PackedMatrix::NumPanels(N), 2.0 * kNr * K, [&](int64_t begin, int64_t end) {
      packed_.PackPanels(b, transposed ? K : N, transposed, begin, end, gate_src, block);
    });
  }
  // The rows of a batch run their recurrences independently: the driver can give each thread a
  // range of rows for a whole chunk of steps, each step's product on that thread alone.
  static constexpr bool kRowsOnOneThread = true;
  void RunOnThisThread(int64_t M, const float* A, float* C) const {
    if (M == 0 || packed_.N() == 0) return;
    if (stream_) {
      StreamGemm(M, A, packed_.K(), packed_.K(), b_, packed_.N(), C, packed_.N(), 0, packed_.N(),
                 gate_src_, block_);
      return;
    }
    PackedGemmPanels(M, A, packed_.K(), packed_, C, packed_.N(), 0,
                     PackedMatrix::NumPanels(packed_.N()));
  }
  void Run(int64_t M, const float* A, float* C) const {
    const int64_t K = packed_.K(), N = packed_.N(), panels = PackedMatrix::NumPanels(N);
    if (M == 0 || N == 0) return;
    if (stream_) {  // columns split across threads in slices of kStreamCols
      constexpr int64_t kStreamCols = 64;
      const int64_t slices = (N + kStreamCols - 1) / kStreamCols;
      ParallelRows(
          d_, slices, 2.0 * M * K * kStreamCols,
          [&](int64_t begin, int64_t end) {
            StreamGemm(M, A, K, K, b_, N, C, N, begin * kStreamCols,
                       std::min(N, end * kStreamCols), gate_src_, block_);
          },
          kStepMinFlops);
      return;
    }
    // (Eigen's cost-model blocks came out uneven here: 120 instead of 170 GFLOP/s.) Below
    // kStepMinFlops a step runs on the calling thread: a dispatch costs about as much.
    if (K > N && M >= 2 * kMr) {
      // A wide A (the backward's [B, G·H] grads) split by rows: each thread reads only its rows.
      const int64_t strips = (M + kMr - 1) / kMr;
      ParallelRows(
          d_, strips, 2.0 * kMr * K * N,
          [&](int64_t begin, int64_t end) {
            const int64_t m0 = begin * kMr, m1 = std::min(M, end * kMr);
            PackedGemmPanels(m1 - m0, A + m0 * K, K, packed_, C + m0 * N, N, 0, panels);
          },
          kStepMinFlops);
      return;
    }
    ParallelRows(
        d_, panels, 2.0 * M * K * kNr,
        [&](int64_t begin, int64_t end) { PackedGemmPanels(M, A, K, packed_, C, N, begin, end); },
        kStepMinFlops);
  }

 private:
  const CpuDevice& d_;
  PackedMatrix packed_;
  const float* b_;
  const int* gate_src_;
  int64_t block_;
  bool stream_;
};

// A step's product over rows the calling thread owns (one_thread: the driver gave each thread a range
// of rows, see CpuRnn::ForEachRowRange), or over all rows, split inside.
template <typename T>
void RunStepGemm(const StepGemm<T>& gemm, bool one_thread, int64_t M, const T* A, T* C) {
  if (one_thread) {
    gemm.RunOnThisThread(M, A, C);
  } else {
    gemm.Run(M, A, C);
  }
}

// The type the weight and bias gradients are summed in over a layer's T·B rows. A float sum over
// thousands of rows loses digits with every term: measured, our float32 weight gradients were less
// accurate than TensorFlow's own float32 math (which sums B rows a step, then the steps); summed in
// double (the products in float over runs of kWgradSubK rows, see packed_gemm.h), they are more
// accurate at any number of rows (tests/test_grad_accuracy.py).
template <typename T>
struct GradSumType {
  using type = T;
};
template <>
struct GradSumType<float> {
  using type = double;
};

// C[M, N] += Aᵀ · B for A [K, M] and B [K, N] row-major: a chunk's share of a weight gradient,
// summed over its K = steps·batch rows.
template <typename T>
void AddWeightGrad(const CpuDevice& d, int64_t M, int64_t N, int64_t K, const T* A, const T* B,
                   typename GradSumType<T>::type* C) {
  static_assert(std::is_same<typename GradSumType<T>::type, T>::value, "float has its own");
  CpuGemm<T>(d, true, false, M, N, K, A, B, C, true);
}

// float: GemmTransposedA (the packed kernel's micro-kernel on both operands packed a block at a
// time, summing into double), the rows of C split across threads (Eigen's contraction ran these at
// ~120 GFLOP/s inside the backward).
template <>
inline void AddWeightGrad<float>(const CpuDevice& d, int64_t M, int64_t N, int64_t K,
                                 const float* A, const float* B, double* C) {
  const int64_t panels = (M + kNr - 1) / kNr;
  ParallelRows(d, panels, 2.0 * kNr * N * K, [&](int64_t begin, int64_t end) {
    GemmTransposedA(N, K, A, M, B, N, C, N, begin * kNr, std::min(M, end * kNr));
  });
}

// Column sums of a row-major [rows, cols] matrix, added into out[cols] (in out's type).
template <typename T, typename S>
void AddColumnSums(int64_t rows, int64_t cols, const T* m, S* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = m + r * cols;
    for (int64_t j = 0; j < cols; ++j) out[j] += static_cast<S>(row[j]);
  }
}

// Where each piece of saved state lives in reserve_space, in units of T. What backprop can read
// elsewhere is not saved: the state before a step is the initial state or the state after the
// previous step, and a layer's states after each step are its output (y for the last layer, the next
// layer's saved input otherwise). Only where that output was changed after the fact (dropout
// scaled it) or rounded (16-bit types: `save_hprev`) are the states kept here.
struct RnnReserveLayout {
  struct LayerDir {
    int64_t act = 0;     // [T, B, G·H] gate activations (time order)
    int64_t ghn = 0;     // gru: [T, B, H] recurrent part of the candidate
    int64_t c = 0;       // lstm: [T, B, H] cell state after the step
    int64_t hprev = -1;  // [T, B, H_out] hidden state before the step, where saved
    int64_t m = 0;       // lstm with projection: [T, B, H] the unprojected output
  };
  std::vector<LayerDir> layer_dir;  // index layer * num_dirs + dir
  std::vector<int64_t> layer_input;  // layer >= 1: [T, B, dirs·H_out] its input (after dropout)
  std::vector<int64_t> dropout_mask;  // layer >= 1, dropout > 0: the scale applied to that input
  int64_t size = 0;

  RnnReserveLayout(const RnnModelShape& s, int64_t T, int64_t B, bool has_dropout,
                   bool save_hprev) {
    const int64_t tb = T * B, H = s.num_units;
    auto take = [this](int64_t n) {
      const int64_t at = size;
      size += n;
      return at;
    };
    for (int l = 0; l < s.num_layers; ++l) {
      const bool output_scaled = has_dropout && l + 1 < s.num_layers;
      for (int d = 0; d < s.num_dirs; ++d) {
        LayerDir ld;
        ld.act = take(tb * s.gates() * H);
        if (s.mode == RnnMode::kGru) ld.ghn = take(tb * H);
        if (s.mode == RnnMode::kLstm) {
          ld.c = take(tb * H);
          if (s.num_proj > 0) ld.m = take(tb * H);
        }
        if (save_hprev || output_scaled) ld.hprev = take(tb * s.h_out());
        layer_dir.push_back(ld);
      }
      layer_input.push_back(l == 0 ? -1 : take(tb * s.output_size()));
      dropout_mask.push_back(l == 0 || !has_dropout ? -1 : take(tb * s.output_size()));
    }
  }
};

// Where the dropout mask of layer `layer` (>= 1) starts in the Philox stream of (seed, seed2) at the
// `call`-th call of a kernel that draws masks (counted from 0 per kernel instance, as TensorFlow's GPU
// kernels advance their dropout state from call to call): each (call, layer) has its own stretch of
// 2^40 draws (4 elements each), call 0 those of layer << 40. The stretches repeat after
// 2^24 / num_layers calls. The CUDA kernels (cc/cuda/fused_rnn_cuda.cu.cc) use the same offsets.
inline uint64_t DropoutStreamOffset(uint64_t call, int num_layers, int layer) {
  return (call * static_cast<uint64_t>(num_layers) + static_cast<uint64_t>(layer)) << 40;
}

// The dropout scales (0 or 1/(1-p)) of the input of each layer >= 1, from (seed, seed2) and the
// call's index alone. dropout = 1 drops every element (each uniform draw is below 1), as cuDNN does.
template <typename T>
void FillDropoutMask(uint64_t seed, uint64_t seed2, uint64_t stream_offset, float dropout, int64_t n,
                     T* mask) {
  tensorflow::random::PhiloxRandom gen(seed, seed2);
  gen.Skip(stream_offset);
  tensorflow::random::UniformDistribution<tensorflow::random::PhiloxRandom, float> uniform;
  const T scale = dropout < 1 ? T(1) / (T(1) - T(dropout)) : T(0);
  for (int64_t i = 0; i < n;) {
    const auto sample = uniform(&gen);
    for (int k = 0; k < sample.kElementCount && i < n; ++k, ++i) mask[i] = sample[k] < dropout ? T(0) : scale;
  }
}

template <typename T>
struct RnnForwardArgs {
  int64_t seq_len = 0, batch = 0;
  const T* x = nullptr;        // [T, B, I]
  const T* h0 = nullptr;       // [L·dirs, B, H_out]
  const T* c0 = nullptr;       // lstm: [L·dirs, B, H]
  const T* params = nullptr;   // opaque
  const int32_t* lengths = nullptr;  // [B], or null: all T
  T* y = nullptr;              // [T, B, dirs·H_out]
  T* hn = nullptr;             // [L·dirs, B, H_out]
  T* cn = nullptr;             // lstm: [L·dirs, B, H]
  T* reserve = nullptr;        // training: RnnReserveLayout(...).size elements; null for inference
  bool save_hprev = false;     // RnnReserveLayout's: the outputs are rounded (16-bit types)
  float dropout = 0;
  uint64_t seed = 0, seed2 = 0;
  // Keras-layout weights (TfRnn>KerasRNN; one layer, one direction, no projection), read in place
  // of params when `kernel` is set: kernel [in, G·H] and recurrent_kernel [H, G·H] row-major as
  // Keras keeps them (Wᵀ and Rᵀ), bias_w and bias_r [G·H] in the canonical gate order; gate_src (or
  // null): the kernels' column block holding canonical gate g (Keras GRU's z, r, h: {1, 0, 2}).
  const T* kernel = nullptr;
  const T* recurrent_kernel = nullptr;
  const T* bias_w = nullptr;
  const T* bias_r = nullptr;
  const int* gate_src = nullptr;
  // The products read the Keras kernels as stored (no packing): see StreamGemm, RnnStreamWeights.
  bool stream_weights = false;
  uint64_t dropout_call = 0;   // this kernel's count of earlier calls that drew masks (see above)
};

template <typename T>
struct RnnBackwardArgs {
  int64_t seq_len = 0, batch = 0;
  const T* x = nullptr;
  const T* h0 = nullptr;
  const T* c0 = nullptr;
  const T* params = nullptr;
  const int32_t* lengths = nullptr;
  const T* y = nullptr;    // [T, B, dirs·H_out] the forward's output
  const T* dy = nullptr;   // [T, B, dirs·H_out]
  const T* dhn = nullptr;  // [L·dirs, B, H_out]
  const T* dcn = nullptr;  // lstm: [L·dirs, B, H]
  const T* reserve = nullptr;
  bool save_hprev = false;
  float dropout = 0;
  T* dx = nullptr;        // [T, B, I], or null: not wanted (the first layer skips its products)
  T* dh0 = nullptr;       // [L·dirs, B, H_out]
  T* dc0 = nullptr;       // lstm: [L·dirs, B, H]
  T* dparams = nullptr;   // opaque
};

// Time steps per chunk: the forward's input projection (inference) and the backward's weight-gradient
// products run over chunks of steps, so that their buffers stay small and in cache (a [T, B, G·H]
// buffer, fresh memory at every call, cost more in page faults than its products gained) while each
// product keeps about kChunkRows rows.
constexpr int64_t kChunkRows = 512;
inline int64_t RnnChunkSteps(int64_t T_, int64_t B) {
  return std::max<int64_t>(1, std::min<int64_t>(T_, (kChunkRows + B - 1) / std::max<int64_t>(B, 1)));
}
// The forward's chunks: at least kChunkRows rows, more where the rows are narrow (`width`: the
// widest of G·H and the layer inputs), so that the chunk's buffers hold about as many values as at
// kChunkRows rows of a 768-wide GRU(256). Each chunk is one dispatch of the row ranges to the
// threads: a small model (G·H = 128, B = 256) had 60 chunks of 2 steps a call.
constexpr int64_t kForwardChunkValues = kChunkRows * 768;
inline int64_t RnnForwardChunkSteps(int64_t T_, int64_t B, int64_t width) {
  const int64_t rows = std::max(kChunkRows, kForwardChunkValues / std::max<int64_t>(width, 1));
  return std::max<int64_t>(1, std::min<int64_t>(T_, (rows + B - 1) / std::max<int64_t>(B, 1)));
}

// The scratch (in units of T) for the gradient sums of a layer-direction's params block, where they
// are summed in another type than T (GradSumType): the largest block, and one T to align it.
template <typename T>
int64_t GradSumElements(const RnnModelShape& s) {
  using S = typename GradSumType<T>::type;
  if (std::is_same<S, T>::value) return 0;
  int64_t largest = 0;
  for (int l = 0; l < s.num_layers; ++l) largest = std::max(largest, s.LayerBlock(l).size);
  return largest * int64_t{sizeof(S) / sizeof(T)} + 1;
}

// Whether a forward from Keras-layout weights reads them as stored (StreamGemm) rather than packing
// them (float only): when a call has at most kStreamMaxRows rows (B·T), packing, a pass that reads
// and writes all the weights, costs more than the few products it would speed up (the bound is
// chosen, not tuned: docs/PERFORMANCE.md, optimisation log item 21).
constexpr int64_t kStreamMaxRows = 8;
template <typename T>
bool RnnStreamWeights(int64_t T_, int64_t B) {
  return std::is_same<T, float>::value && T_ * B <= kStreamMaxRows;
}

// Scratch memory (in units of T) that Forward or Backward asks of its caller. stream_weights: the
// forward reads the weights as stored (RnnForwardArgs::stream_weights) and needs no packed copies.
template <typename T>
int64_t RnnWorkspaceSize(const RnnModelShape& s, int64_t T_, int64_t B, bool backward,
                         bool stream_weights = false) {
  const int64_t tb = T_ * B, gh = s.gates() * s.num_units, H = s.num_units, ho = s.h_out();
  const int64_t cb = RnnChunkSteps(T_, B) * B;  // rows of a chunk
  const int64_t cbf = RnnForwardChunkSteps(T_, B, std::max(gh, s.MaxLayerInputSize())) * B;
  const bool proj = s.num_proj > 0, multi = s.num_layers > 1;
  const int64_t max_in = s.MaxLayerInputSize();
  // Packed copies of R, P and W (as large as the largest layer input) for the products of every
  // step or chunk (the backward packs R and P transposed, and W as stored: dX = D_gx·W).
  const int64_t packed =
      stream_weights ? 0 :
      backward ? StepGemm<T>::StorageSize(gh, ho) + (proj ? StepGemm<T>::StorageSize(ho, H) : 0) +
                     StepGemm<T>::StorageSize(gh, max_in)
               : StepGemm<T>::StorageSize(ho, gh) + (proj ? StepGemm<T>::StorageSize(H, ho) : 0) +
                     StepGemm<T>::StorageSize(max_in, gh);
  if (!backward) {
    return packed + (multi ? 2 * tb * s.output_size() : 0)  // layer outputs (inference ping-pong)
           + cbf * gh + cbf * max_in                       // gx of a chunk, gathered input
           + B * gh + 2 * B * ho + 3 * B * H               // gh, h, h_new, out, c, c_new
           + B * gh + B * H;                               // activation scratch (inference)
  }
  return packed + (multi ? tb * s.output_size() + tb * max_in : 0)  // dY below, dX of layer >= 1
         + cb * gh * (s.mode == RnnMode::kGru ? 2 : 1)            // D_gx (and D_gh) of a chunk
         + 2 * cb * max_in + cb * ho                              // gathered x and its grad, h_prev
         + (s.mode == RnnMode::kLstm ? cb * H : 0)                // c_prev
         + (proj ? cb * ho + cb * H : 0)                          // dh, gathered m (projection)
         + 3 * B * ho + 2 * B * H                                 // per-step grads
         + GradSumElements<T>(s);                                 // a block's gradient sums
}

// The cell-independent parts; Cell supplies the per-step element-wise forward and backward.
template <typename T>
class CpuRnn {
 public:
  CpuRnn(const CpuDevice& d, const RnnModelShape& s) : d_(d), s_(s) {}

  void Forward(const RnnForwardArgs<T>& a, T* workspace) const;
  void Backward(const RnnBackwardArgs<T>& a, T* workspace) const;

 private:
  int64_t Length(const int32_t* lengths, int64_t b, int64_t T_) const {
    return lengths ? lengths[b] : T_;
  }
  // The time index that direction `dir` processes at step s for a row of length len (s < len).
  static int64_t TimeAt(int dir, int64_t s, int64_t len) { return dir == 0 ? s : len - 1 - s; }

  template <typename Fn>
  void DispatchCell(Fn&& fn) const;

  // Runs step(s, b0, b1, one_thread) for the steps [s0, s1) (from s1 - 1 down when `backward`). The
  // rows of a batch run their recurrences independently, so where the batch is large enough and the
  // step products can run on one thread (float), each thread takes a range of rows (whole 6-row
  // strips of the micro-kernel) through all the steps: one dispatch a chunk, each thread's states
  // in its own cache. Otherwise every step covers all rows, its work split inside (one_thread false).
  template <typename Fn>
  void ForEachRowRange(int64_t B, int64_t s0, int64_t s1, Fn&& step, bool backward = false) const;

  template <typename Cell>
  void ForwardLayerDir(const RnnForwardArgs<T>& a, int layer, int dir, const T* x, int64_t in,
                       T* y, const RnnReserveLayout* rl, T* ws) const;
  template <typename Cell>
  void BackwardLayerDir(const RnnBackwardArgs<T>& a, int layer, int dir, const T* x, int64_t in,
                        const T* y, const T* dy, T* dx, const RnnReserveLayout& rl, T* ws) const;

  const CpuDevice& d_;
  const RnnModelShape s_;
};

// ------------------------------------------------------------------------------------------- cells
// Each cell adapter owns what differs between modes: its forward step over one batch row (writing
// the new hidden state, or m before projection for lstm), and its backward step over one row. They are
// the equations of rnn_cell_math.h (which the CUDA kernels use element by element) written as Eigen
// array expressions, so that exp/tanh and the products vectorize.
template <typename T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

template <typename T, bool kRelu>
struct SimpleRnnCpuCell {
  static constexpr RnnMode kMode = kRelu ? RnnMode::kRnnRelu : RnnMode::kRnnTanh;
  // Forward of units [u0, u0 + n) of one row, every pointer already offset by u0 and each gate H
  // apart: gx [G·H] (W x), gh [G·H] (R h), b_w and b_r [G·H]; h_prev [H_out]; c_prev [H] (lstm);
  // out [H] receives h (or m); c_new [H] (lstm); act [G·H] and ghn [H] (gru) receive what backprop
  // needs. act may be gx itself (training computes gx in place of the activations): each element of
  // act is written only after its own gx element is read.
  static void StepForward(int64_t n, int64_t H, const T* gx, const T* gh, const T* b_w,
                          const T* b_r, const T* h_prev, const T* c_prev, T* out, T* c_new, T* act,
                          T* ghn) {
    const auto a = ConstArrayMap<T>(gx, n) + ConstArrayMap<T>(b_w, n) + ConstArrayMap<T>(gh, n) +
                   ConstArrayMap<T>(b_r, n);
    if (kRelu) {
      ArrayMap<T>(out, n) = a.max(T(0));
    } else {
      ArrayMap<T>(out, n) = a.tanh();
    }
    ArrayMap<T>(act, n) = ArrayMap<T>(out, n);
  }
  // Backward one row: dh [H] is the grad of out (h or m); writes d_gx, d_gh [G·H]; dc in/out;
  // dh_direct [H_out] receives the part of the grad of h_prev not passing through R (gru only).
  static void StepBackward(int64_t H, const T* act, const T* ghn, const T* c, const T* c_prev,
                           const T* h_prev, const T* dh, T* dc, T* d_gx, T* d_gh, T* dh_direct) {
    const ConstArrayMap<T> h(act, H), g(dh, H);
    if (kRelu) {
      ArrayMap<T>(d_gx, H) = (h > T(0)).select(g, T(0));
    } else {
      ArrayMap<T>(d_gx, H) = g * (T(1) - h * h);
    }
    if (d_gh != d_gx) ArrayMap<T>(d_gh, H) = ArrayMap<T>(d_gx, H);
  }
};

template <typename T>
struct LstmCpuCell {
  static constexpr RnnMode kMode = RnnMode::kLstm;
  static void StepForward(int64_t n, int64_t H, const T* gx, const T* gh, const T* b_w,
                          const T* b_r, const T* h_prev, const T* c_prev, T* out, T* c_new, T* act,
                          T* ghn) {
    auto pre = [&](int gate) {
      return ConstArrayMap<T>(gx + gate * H, n) + ConstArrayMap<T>(b_w + gate * H, n) +
             ConstArrayMap<T>(gh + gate * H, n) + ConstArrayMap<T>(b_r + gate * H, n);
    };
    ArrayMap<T> i(act, n), f(act + H, n), g(act + 2 * H, n), o(act + 3 * H, n);
    i = pre(0).logistic();
    f = pre(1).logistic();
    g = pre(2).tanh();
    o = pre(3).logistic();
    ArrayMap<T> c(c_new, n);
    c = f * ConstArrayMap<T>(c_prev, n) + i * g;
    ArrayMap<T>(out, n) = o * c.tanh();
  }
  static void StepBackward(int64_t H, const T* act, const T* ghn, const T* c, const T* c_prev,
                           const T* h_prev, const T* dh, T* dc, T* d_gx, T* d_gh, T* dh_direct) {
    const ConstArrayMap<T> i(act, H), f(act + H, H), g(act + 2 * H, H), o(act + 3 * H, H);
    const ConstArrayMap<T> dm(dh, H);
    ArrayMap<T> dcm(dc, H);
    const auto tc = ConstArrayMap<T>(c, H).tanh().eval();
    dcm += dm * o * (T(1) - tc * tc);  // now the grad of c after this step, in full
    ArrayMap<T>(d_gx, H) = dcm * g * i * (T(1) - i);
    ArrayMap<T>(d_gx + H, H) = dcm * ConstArrayMap<T>(c_prev, H) * f * (T(1) - f);
    ArrayMap<T>(d_gx + 2 * H, H) = dcm * i * (T(1) - g * g);
    ArrayMap<T>(d_gx + 3 * H, H) = dm * tc * o * (T(1) - o);
    dcm *= f;  // grad of c_prev
    if (d_gh != d_gx) ArrayMap<T>(d_gh, 4 * H) = ArrayMap<T>(d_gx, 4 * H);
  }
};

template <typename T>
struct GruCpuCell {
  static constexpr RnnMode kMode = RnnMode::kGru;
  static void StepForward(int64_t n, int64_t H, const T* gx, const T* gh, const T* b_w,
                          const T* b_r, const T* h_prev, const T* c_prev, T* out, T* c_new, T* act,
                          T* ghn) {
    ArrayMap<T> r(act, n), z(act + H, n), cand(act + 2 * H, n), ghn_a(ghn, n);
    auto x_part = [&](int gate) {
      return ConstArrayMap<T>(gx + gate * H, n) + ConstArrayMap<T>(b_w + gate * H, n);
    };
    r = (x_part(0) + ConstArrayMap<T>(gh, n) + ConstArrayMap<T>(b_r, n)).logistic();
    z = (x_part(1) + ConstArrayMap<T>(gh + H, n) + ConstArrayMap<T>(b_r + H, n)).logistic();
    ghn_a = ConstArrayMap<T>(gh + 2 * H, n) + ConstArrayMap<T>(b_r + 2 * H, n);
    cand = (x_part(2) + r * ghn_a).tanh();
    ArrayMap<T>(out, n) = (T(1) - z) * cand + z * ConstArrayMap<T>(h_prev, n);
  }
  static void StepBackward(int64_t H, const T* act, const T* ghn, const T* c, const T* c_prev,
                           const T* h_prev, const T* dh, T* dc, T* d_gx, T* d_gh, T* dh_direct) {
    const ConstArrayMap<T> r(act, H), z(act + H, H), n(act + 2 * H, H), g(dh, H);
    ArrayMap<T> dn(d_gx + 2 * H, H), dz(d_gx + H, H), dr(d_gx, H);
    dn = g * (T(1) - z) * (T(1) - n * n);
    dz = g * (ConstArrayMap<T>(h_prev, H) - n) * z * (T(1) - z);
    dr = dn * ConstArrayMap<T>(ghn, H) * r * (T(1) - r);
    ArrayMap<T>(d_gh, 2 * H) = ArrayMap<T>(d_gx, 2 * H);
    ArrayMap<T>(d_gh + 2 * H, H) = dn * r;
    ArrayMap<T>(dh_direct, H) = g * z;
  }
};

template <typename T>
template <typename Fn>
void CpuRnn<T>::DispatchCell(Fn&& fn) const {
  switch (s_.mode) {
    case RnnMode::kRnnRelu:
      fn(SimpleRnnCpuCell<T, true>());
      break;
    case RnnMode::kRnnTanh:
      fn(SimpleRnnCpuCell<T, false>());
      break;
    case RnnMode::kLstm:
      fn(LstmCpuCell<T>());
      break;
    case RnnMode::kGru:
      fn(GruCpuCell<T>());
      break;
  }
}

template <typename T>
template <typename Fn>
void CpuRnn<T>::ForEachRowRange(int64_t B, int64_t s0, int64_t s1, Fn&& step, bool backward) const {
  auto steps = [&](int64_t b0, int64_t b1, bool one_thread) {
    if (backward) {
      for (int64_t s = s1 - 1; s >= s0; --s) step(s, b0, b1, one_thread);
    } else {
      for (int64_t s = s0; s < s1; ++s) step(s, b0, b1, one_thread);
    }
  };
  if (!StepGemm<T>::kRowsOnOneThread || d_.numThreads() <= 1 || B < 2 * kMr) {
    steps(0, B, false);
    return;
  }
  const int64_t strips = (B + kMr - 1) / kMr;
  ParallelRows(d_, strips, 1e9, [&](int64_t begin, int64_t end) {
    steps(begin * kMr, std::min(B, end * kMr), true);
  });
}

// ----------------------------------------------------------------------------------------- forward
// Zeroes the rows [t, b, :] of a [T, B, width] buffer with t >= lengths[b] (none without lengths).
template <typename T>
void ZeroRowsPastLengths(const int32_t* lengths, int64_t T_, int64_t B, int64_t width, T* buf) {
  if (lengths == nullptr) return;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = lengths[b]; t < T_; ++t) std::fill_n(buf + (t * B + b) * width, width, T(0));
}

template <typename T>
void CpuRnn<T>::Forward(const RnnForwardArgs<T>& a, T* ws) const {
  const int64_t T_ = a.seq_len, B = a.batch, tb = T_ * B, ow = s_.output_size();
  const bool training = a.reserve != nullptr;
  const bool has_dropout = training && a.dropout > 0;
  const bool multi = s_.num_layers > 1;
  RnnReserveLayout rl(s_, T_, B, has_dropout, a.save_hprev);
  // Rows past a sequence's length are never written by the steps. Zeroed: the reserve is an output
  // (same inputs, bitwise the same outputs), and the m rows (projection) take part in a
  // weight-gradient product (times zero grads), where garbage could be NaN.
  if (training) {
    const int64_t H = s_.num_units;
    for (const auto& ld : rl.layer_dir) {
      ZeroRowsPastLengths(a.lengths, T_, B, s_.gates() * H, a.reserve + ld.act);
      if (s_.mode == RnnMode::kGru) ZeroRowsPastLengths(a.lengths, T_, B, H, a.reserve + ld.ghn);
      if (s_.mode == RnnMode::kLstm) ZeroRowsPastLengths(a.lengths, T_, B, H, a.reserve + ld.c);
      if (s_.num_proj > 0) ZeroRowsPastLengths(a.lengths, T_, B, H, a.reserve + ld.m);
      if (ld.hprev >= 0) ZeroRowsPastLengths(a.lengths, T_, B, s_.h_out(), a.reserve + ld.hprev);
    }
  }
  // Layer outputs: the last layer writes y; training writes the others into the reserve (they are
  // the next layer's saved input); inference ping-pongs between two scratch buffers.
  T* scratch_out[2] = {ws, ws + (multi ? tb * ow : 0)};
  T* cell_ws = ws + (multi ? 2 * tb * ow : 0);
  const T* x = a.x;
  for (int l = 0; l < s_.num_layers; ++l) {
    const bool last = l + 1 == s_.num_layers;
    T* y = last ? a.y : training ? a.reserve + rl.layer_input[l + 1] : scratch_out[l % 2];
    ZeroRowsPastLengths(a.lengths, T_, B, ow, y);  // steps past a row's length output zeros
    DispatchCell([&](auto cell) {
      using Cell = decltype(cell);
      for (int dir = 0; dir < s_.num_dirs; ++dir)
        ForwardLayerDir<Cell>(a, l, dir, x, s_.LayerInputSize(l), y, training ? &rl : nullptr,
                              cell_ws);
    });
    if (!last && training && a.dropout > 0) {
      T* mask = a.reserve + rl.dropout_mask[l + 1];
      FillDropoutMask<T>(a.seed, a.seed2, DropoutStreamOffset(a.dropout_call, s_.num_layers, l + 1),
                         a.dropout, tb * ow, mask);
      for (int64_t i = 0; i < tb * ow; ++i) y[i] *= mask[i];
    }
    x = y;
  }
}

// Copies the rows that steps [s0, s1) of the reverse direction read (time len_b - 1 - s of row b)
// into `dst` in step order, [(s - s0)·B + b, :]; rows past a length are zero.
template <typename T>
void GatherReverseRows(const int32_t* lengths, int64_t T_, int64_t B, int64_t s0, int64_t s1,
                       int64_t width, const T* src, T* dst) {
  for (int64_t s = s0; s < s1; ++s) {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = lengths ? lengths[b] : T_;
      T* row = dst + ((s - s0) * B + b) * width;
      if (s < len) {
        std::copy_n(src + ((len - 1 - s) * B + b) * width, width, row);
      } else {
        std::fill_n(row, width, T(0));
      }
    }
  }
}

// The inverse of GatherReverseRows: the step-order rows of `src` written (or, with `add`, added)
// to the time rows of `dst` they belong to; rows past a length are skipped.
template <typename T>
void ScatterReverseRows(const int32_t* lengths, int64_t T_, int64_t B, int64_t s0, int64_t s1,
                        int64_t width, const T* src, T* dst, bool add) {
  for (int64_t s = s0; s < s1; ++s) {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = lengths ? lengths[b] : T_;
      if (s >= len) continue;
      const T* row = src + ((s - s0) * B + b) * width;
      T* out = dst + ((len - 1 - s) * B + b) * width;
      if (add) {
        for (int64_t j = 0; j < width; ++j) out[j] += row[j];
      } else {
        std::copy_n(row, width, out);
      }
    }
  }
}

// gx[rows, G·H] = x[rows, in] · Wᵀ (`w`: W packed once per call), or the input itself in every gate
// with skip_input (`w` null).
template <typename T>
void InputProjection(const RnnModelShape& s, int64_t rows, int64_t in, const T* x,
                     const StepGemm<T>* w, T* gx) {
  const int64_t gh_w = s.gates() * s.num_units, H = s.num_units;
  if (w != nullptr) {
    w->Run(rows, x, gx);
    return;
  }
  for (int64_t i = 0; i < rows; ++i)  // skip_input: in == H
    for (int g = 0; g < s.gates(); ++g) std::copy_n(x + i * in, H, gx + i * gh_w + g * H);
}

template <typename T>
template <typename Cell>
void CpuRnn<T>::ForwardLayerDir(const RnnForwardArgs<T>& a, int layer, int dir, const T* x,
                                int64_t in, T* y, const RnnReserveLayout* rl, T* ws) const {
  const int64_t T_ = a.seq_len, B = a.batch, H = s_.num_units, ho = s_.h_out(), G = s_.gates();
  const int64_t gh_w = G * H, ow = s_.output_size(), ld = int64_t(layer) * s_.num_dirs + dir;
  const int64_t max_in = s_.MaxLayerInputSize();
  const int64_t Tc = RnnForwardChunkSteps(T_, B, std::max(gh_w, max_in)), cb = Tc * B;
  const auto blk = s_.LayerBlock(layer);
  // Opaque params, or Keras-layout weights (RnnForwardArgs::kernel): then W and R are stored
  // transposed relative to params ([in, G·H], [H, G·H]), possibly with their gate blocks permuted.
  const bool keras = a.kernel != nullptr;
  const T* p = keras ? nullptr : a.params + s_.BlockOffset(layer, dir);
  const T* w = keras ? a.kernel : p + blk.w;
  const T* r = keras ? a.recurrent_kernel : p + blk.r;
  const T* proj = keras ? nullptr : p + blk.p;
  const T* b_w = keras ? a.bias_w : p + blk.b_w;
  const T* b_r = keras ? a.bias_r : p + blk.b_r;
  const int* gate_src = keras ? a.gate_src : nullptr;
  const bool stream = keras && a.stream_weights;
  const bool has_proj = s_.num_proj > 0;
  const bool training = rl != nullptr;

  T* gx_chunk = ws;                      // [cb, G·H] gx of a chunk, step order
  T* x_chunk = gx_chunk + cb * gh_w;     // [cb, in] reverse direction: its input rows, step order
  T* gh = x_chunk + cb * max_in;         // [B, G·H]
  T* h = gh + B * gh_w;                  // [B, H_out] state
  T* h_new = h + B * ho;                 // [B, H_out]
  T* out = h_new + B * ho;               // [B, H]: h (no projection) or m
  T* c = out + B * H;                    // [B, H] lstm state
  T* c_new = c + B * H;                  // [B, H]
  T* act_scratch = c_new + B * H;        // [B, G·H] activations (inference)
  T* ghn_scratch = act_scratch + B * gh_w;  // [B, H] (inference)
  T* pack = ghn_scratch + B * H;
  const StepGemm<T> recurrent(d_, r, ho, gh_w, /*transposed=*/!keras, pack, gate_src, H, stream);
  if (!stream) pack += StepGemm<T>::StorageSize(ho, gh_w);
  std::optional<StepGemm<T>> projection, input_weights;
  if (has_proj) {
    projection.emplace(d_, proj, H, ho, /*transposed=*/true, pack);
    pack += StepGemm<T>::StorageSize(H, ho);
  }
  // W, like R, is packed once: every chunk's input projection reuses it.
  if (s_.HasInputWeights(layer)) {
    input_weights.emplace(d_, w, in, gh_w, /*transposed=*/!keras, pack, gate_src, H, stream);
  }
  const bool is_gru = Cell::kMode == RnnMode::kGru;

  const RnnReserveLayout::LayerDir* sv = training ? &rl->layer_dir[ld] : nullptr;
  T* res = a.reserve;

  std::copy(a.h0 + ld * B * ho, a.h0 + (ld + 1) * B * ho, h);
  if (Cell::kMode == RnnMode::kLstm) std::copy(a.c0 + ld * B * H, a.c0 + (ld + 1) * B * H, c);

  const int32_t* lengths = a.lengths;
  int64_t s0 = 0;  // first step of the current chunk
  // Gate math of units [u0, u0 + n) of row b at step s.
  auto gates = [&](int64_t s, int64_t b, int64_t u0, int64_t n) {
    const int64_t len = Length(lengths, b, T_);
    if (s >= len) return;
    const int64_t row = TimeAt(dir, s, len) * B + b;
    // Activations go to the reserve when training (over gx), else to scratch rows.
    T* act = (training ? res + sv->act + row * gh_w : act_scratch + b * gh_w) + u0;
    const T* gx = training ? act : gx_chunk + ((s - s0) * B + b) * gh_w + u0;
    T* ghn = (training && is_gru ? res + sv->ghn + row * H : ghn_scratch + b * H) + u0;
    Cell::StepForward(n, H, gx, gh + b * gh_w + u0, b_w + u0, b_r + u0, h + b * ho + u0,
                      c + b * H + u0, out + b * H + u0, c_new + b * H + u0, act, ghn);
  };
  // (Tried, before the row ranges: one task computing the product and the gate math of a block of 16
  // units; it cost 35% more CPU than a product pass and a gate pass — docs/PERFORMANCE.md item 5.)
  for (; s0 < T_; s0 += Tc) {
    const int64_t s1 = std::min(T_, s0 + Tc);
    // The input projection of this chunk's steps, the same products whether training or not (so
    // that both give bitwise the same outputs). Training computes gx in place of the activations
    // it becomes: straight into the reserve for the forward direction (step s reads time s), by way
    // of gx_chunk for the reverse one.
    const T* xr = x + s0 * B * in;
    if (dir == 1) {
      GatherReverseRows(lengths, T_, B, s0, s1, in, x, x_chunk);
      xr = x_chunk;
    }
    T* gx_out = training && dir == 0 ? res + sv->act + s0 * B * gh_w : gx_chunk;
    InputProjection<T>(s_, (s1 - s0) * B, in, xr, input_weights ? &*input_weights : nullptr, gx_out);
    if (training && dir == 1) {
      ScatterReverseRows(lengths, T_, B, s0, s1, gh_w, gx_chunk, res + sv->act, /*add=*/false);
    }
    ForEachRowRange(B, s0, s1, [&](int64_t s, int64_t b0, int64_t b1, bool one_thread) {
      const int64_t n_rows = b1 - b0;
      RunStepGemm(recurrent, one_thread, n_rows, h + b0 * ho, gh + b0 * gh_w);
      if (one_thread) {
        for (int64_t b = b0; b < b1; ++b) gates(s, b, 0, H);
      } else {
        ParallelRows(d_, n_rows, 10.0 * gh_w, [&](int64_t begin, int64_t end) {
          for (int64_t b = b0 + begin; b < b0 + end; ++b) gates(s, b, 0, H);
        });
      }
      if (sv) {  // what backprop needs of this step, before the state moves on
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t len = Length(lengths, b, T_);
          if (s >= len) continue;
          const int64_t row = TimeAt(dir, s, len) * B + b;
          if (sv->hprev >= 0) std::copy(h + b * ho, h + (b + 1) * ho, res + sv->hprev + row * ho);
          if (Cell::kMode == RnnMode::kLstm) {
            std::copy(c_new + b * H, c_new + (b + 1) * H, res + sv->c + row * H);
            if (has_proj) std::copy(out + b * H, out + (b + 1) * H, res + sv->m + row * H);
          }
        }
      }
      const T* h_out = out;
      if (has_proj) {
        RunStepGemm(*projection, one_thread, n_rows, out + b0 * H, h_new + b0 * ho);
        h_out = h_new;
      }
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t len = Length(lengths, b, T_);
        if (s >= len) continue;
        const int64_t t = TimeAt(dir, s, len);
        std::copy(h_out + b * ho, h_out + (b + 1) * ho, h + b * ho);
        std::copy(h + b * ho, h + (b + 1) * ho, y + (t * B + b) * ow + dir * ho);
        if (Cell::kMode == RnnMode::kLstm) std::copy(c_new + b * H, c_new + (b + 1) * H, c + b * H);
      }
    });
  }
  std::copy(h, h + B * ho, a.hn + ld * B * ho);
  if (Cell::kMode == RnnMode::kLstm) std::copy(c, c + B * H, a.cn + ld * B * H);
}

// ---------------------------------------------------------------------------------------- backward
template <typename T>
void CpuRnn<T>::Backward(const RnnBackwardArgs<T>& a, T* ws) const {
  const int64_t T_ = a.seq_len, B = a.batch, tb = T_ * B, ow = s_.output_size();
  const bool multi = s_.num_layers > 1;
  RnnReserveLayout rl(s_, T_, B, a.dropout > 0, a.save_hprev);
  const int64_t max_in = s_.MaxLayerInputSize();
  T* dy_below = ws;                                // [T, B, dirs·H_out]: grad of layer l-1's output
  T* dx_buf = dy_below + (multi ? tb * ow : 0);    // [T, B, in]: grad of the input of layer l >= 1
  T* cell_ws = dx_buf + (multi ? tb * max_in : 0);
  std::fill(a.dparams, a.dparams + s_.ParamsSize(), T(0));
  const T* dy = a.dy;
  for (int l = s_.num_layers - 1; l >= 0; --l) {
    const int64_t in = s_.LayerInputSize(l);
    const T* x = l == 0 ? a.x : a.reserve + rl.layer_input[l];
    // The layer's states after each step: its output (unscaled) where the reserve has no h_prev.
    const T* y = l + 1 == s_.num_layers ? a.y : a.reserve + rl.layer_input[l + 1];
    T* dx = l == 0 ? a.dx : dx_buf;
    DispatchCell([&](auto cell) {
      using Cell = decltype(cell);
      for (int dir = 0; dir < s_.num_dirs; ++dir)
        BackwardLayerDir<Cell>(a, l, dir, x, in, y, dy, dx, rl, cell_ws);
    });
    if (l > 0) {  // through the dropout between layers l-1 and l
      const T* mask = a.dropout > 0 ? a.reserve + rl.dropout_mask[l] : nullptr;
      for (int64_t i = 0; i < tb * ow; ++i) dy_below[i] = mask ? dx[i] * mask[i] : dx[i];
      dy = dy_below;
    }
  }
}

template <typename T>
template <typename Cell>
void CpuRnn<T>::BackwardLayerDir(const RnnBackwardArgs<T>& a, int layer, int dir, const T* x,
                                 int64_t in, const T* y, const T* dy, T* dx,
                                 const RnnReserveLayout& rl, T* ws) const {
  const int64_t T_ = a.seq_len, B = a.batch, H = s_.num_units, ho = s_.h_out(), G = s_.gates();
  const int64_t gh_w = G * H, ow = s_.output_size();
  const int64_t ld = int64_t(layer) * s_.num_dirs + dir;
  const int64_t Tc = RnnChunkSteps(T_, B), cb = Tc * B;
  const int64_t max_in = s_.MaxLayerInputSize();
  const auto blk = s_.LayerBlock(layer);
  const int64_t offset = s_.BlockOffset(layer, dir);
  const T* p = a.params + offset;
  T* dp = a.dparams + offset;
  const bool has_proj = s_.num_proj > 0;
  const bool is_gru = Cell::kMode == RnnMode::kGru, is_lstm = Cell::kMode == RnnMode::kLstm;
  const auto& sv = rl.layer_dir[ld];
  const T* res = a.reserve;
  const int32_t* lengths = a.lengths;

  // Chunk buffers hold the rows of steps [s0, s1) in step order: row (s - s0)·B + b.
  T* next = ws;
  auto take = [&next](int64_t n) {
    T* at = next;
    next += n;
    return at;
  };
  // The block's weight and bias gradients, summed in S: dp itself (zeroed by Backward) where S is
  // T, else a zeroed scratch block written into dp at the end.
  using S = typename GradSumType<T>::type;
  S* gsum;
  if constexpr (std::is_same<S, T>::value) {
    gsum = dp;
  } else {
    T* raw = take(GradSumElements<T>(s_));
    const uintptr_t addr = reinterpret_cast<uintptr_t>(raw);
    gsum = reinterpret_cast<S*>((addr + alignof(S) - 1) / alignof(S) * alignof(S));
    std::fill_n(gsum, blk.size, S(0));
  }
  T* d_gx = take(cb * gh_w);                   // grads of the pre-activations (x side)
  T* d_gh = is_gru ? take(cb * gh_w) : d_gx;   // gru: differs in the candidate gate
  T* x_rows = take(cb * max_in);               // reverse direction: the gathered input
  T* dx_rows = take(cb * max_in);              // reverse direction: its grad
  T* hprev_rows = take(cb * ho);               // the state before each step
  T* cprev_rows = is_lstm ? take(cb * H) : nullptr;  // lstm: the cell state before each step
  T* dh_all = has_proj ? take(cb * ho) : nullptr;  // grad of each step's output (projection)
  T* m_rows = has_proj ? take(cb * H) : nullptr;   // reverse direction: the gathered m
  T* dh = take(B * ho);                        // grad of the state
  T* dh_rec = take(B * ho);                    // grad through R
  T* dh_direct = take(B * ho);
  T* dm = take(B * H);                         // grad of m (projection)
  T* dc = take(B * H);
  T* pack = next;
  const StepGemm<T> recurrent(d_, p + blk.r, gh_w, ho, /*transposed=*/false, pack);
  pack += StepGemm<T>::StorageSize(gh_w, ho);
  std::optional<StepGemm<T>> projection;
  if (has_proj) {
    projection.emplace(d_, p + blk.p, ho, H, /*transposed=*/false, pack);
    pack += StepGemm<T>::StorageSize(ho, H);
  }
  std::optional<StepGemm<T>> input_weights;  // dX = D_gx · W, W [G·H, in] as stored
  if (s_.HasInputWeights(layer)) input_weights.emplace(d_, p + blk.w, gh_w, in, false, pack);

  std::copy(a.dhn + ld * B * ho, a.dhn + (ld + 1) * B * ho, dh);
  if (is_lstm) std::copy(a.dcn + ld * B * H, a.dcn + (ld + 1) * B * H, dc);

  for (int64_t s1 = T_; s1 > 0; s1 -= Tc) {  // chunks from the last step back
    const int64_t s0 = std::max<int64_t>(0, s1 - Tc), rows = (s1 - s0) * B;
    // The states before each step of the chunk (zero past a row's length).
    ParallelRows(d_, B, 2.0 * (s1 - s0) * (ho + H), [&](int64_t b_begin, int64_t b_end) {
      for (int64_t s = s0; s < s1; ++s) {
        for (int64_t b = b_begin; b < b_end; ++b) {
          const int64_t len = Length(lengths, b, T_), k = (s - s0) * B + b;
          T* hp = hprev_rows + k * ho;
          T* cp = is_lstm ? cprev_rows + k * H : nullptr;
          if (s >= len) {
            std::fill_n(hp, ho, T(0));
            if (is_lstm) std::fill_n(cp, H, T(0));
            continue;
          }
          if (sv.hprev >= 0) {
            std::copy_n(res + sv.hprev + (TimeAt(dir, s, len) * B + b) * ho, ho, hp);
          } else if (s == 0) {
            std::copy_n(a.h0 + (ld * B + b) * ho, ho, hp);
          } else {
            std::copy_n(y + (TimeAt(dir, s - 1, len) * B + b) * ow + dir * ho, ho, hp);
          }
          if (is_lstm) {
            const T* src = s == 0 ? a.c0 + (ld * B + b) * H
                                  : res + sv.c + (TimeAt(dir, s - 1, len) * B + b) * H;
            std::copy_n(src, H, cp);
          }
        }
      }
    });
    ForEachRowRange(B, s0, s1, [&](int64_t s, int64_t b0, int64_t b1, bool one_thread) {
      const int64_t k = (s - s0) * B;  // this step's first chunk row
      const int64_t n_rows = b1 - b0;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t len = Length(lengths, b, T_);
        if (s >= len) {
          if (has_proj) std::fill_n(dh_all + (k + b) * ho, ho, T(0));
          continue;
        }
        const int64_t t = TimeAt(dir, s, len);
        const T* dyr = dy + (t * B + b) * ow + dir * ho;
        for (int64_t j = 0; j < ho; ++j) dh[b * ho + j] += dyr[j];
        if (has_proj) std::copy_n(dh + b * ho, ho, dh_all + (k + b) * ho);
      }
      const T* dout = dh;  // grad of the cell's own output (h, or m before projection)
      if (has_proj) {
        RunStepGemm(*projection, one_thread, n_rows, dh + b0 * ho, dm + b0 * H);
        dout = dm;
      }
      auto gate_rows = [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          const int64_t len = Length(lengths, b, T_);
          T* dgx = d_gx + (k + b) * gh_w;
          T* dgh = d_gh + (k + b) * gh_w;
          if (s >= len) {  // no step here: zero grads (the weight-gradient products read them)
            std::fill_n(dgx, gh_w, T(0));
            if (is_gru) std::fill_n(dgh, gh_w, T(0));
            continue;
          }
          const int64_t row = TimeAt(dir, s, len) * B + b;
          Cell::StepBackward(H, res + sv.act + row * gh_w, is_gru ? res + sv.ghn + row * H : nullptr,
                             is_lstm ? res + sv.c + row * H : nullptr,
                             is_lstm ? cprev_rows + (k + b) * H : nullptr, hprev_rows + (k + b) * ho,
                             dout + b * H, dc + b * H, dgx, dgh, dh_direct + b * ho);
        }
      };
      if (one_thread) {
        gate_rows(b0, b1);
      } else {
        ParallelRows(d_, n_rows, 10.0 * gh_w, [&](int64_t begin, int64_t end) {
          gate_rows(b0 + begin, b0 + end);
        });
      }
      RunStepGemm(recurrent, one_thread, n_rows, d_gh + (k + b0) * gh_w, dh_rec + b0 * ho);
      for (int64_t b = b0; b < b1; ++b) {
        if (s >= Length(lengths, b, T_)) continue;  // rows past their length pass dh through
        for (int64_t j = 0; j < ho; ++j)
          dh[b * ho + j] = dh_rec[b * ho + j] + (is_gru ? dh_direct[b * ho + j] : T(0));
      }
    }, /*backward=*/true);

    // The chunk's share of the weight and bias gradients: one product each. The forward direction
    // reads time s at step s, so its rows are the reserve's and the input's own; the reverse
    // direction's are gathered.
    const T* xr = x + s0 * B * in;
    const T* mr = has_proj ? res + sv.m + s0 * B * H : nullptr;
    if (dir == 1) {
      GatherReverseRows(lengths, T_, B, s0, s1, in, x, x_rows);
      if (has_proj) GatherReverseRows(lengths, T_, B, s0, s1, H, res + sv.m, m_rows);
      xr = x_rows, mr = m_rows;
    }
    if (s_.HasInputWeights(layer)) AddWeightGrad<T>(d_, gh_w, in, rows, d_gx, xr, gsum + blk.w);
    AddWeightGrad<T>(d_, gh_w, ho, rows, d_gh, hprev_rows, gsum + blk.r);
    if (has_proj) AddWeightGrad<T>(d_, ho, H, rows, dh_all, mr, gsum + blk.p);
    AddColumnSums(rows, gh_w, d_gx, gsum + blk.b_w);
    AddColumnSums(rows, gh_w, d_gh, gsum + blk.b_r);

    // Grad of the layer input: the forward direction writes its rows, the reverse one adds to them.
    if (dx == nullptr) continue;
    T* dxr = dir == 0 ? dx + s0 * B * in : dx_rows;
    if (input_weights) {
      input_weights->Run(rows, d_gx, dxr);
    } else {  // skip_input: in == H, every gate saw the input
      for (int64_t i = 0; i < rows; ++i) {
        T* dxi = dxr + i * in;
        std::fill_n(dxi, in, T(0));
        for (int g = 0; g < G; ++g)
          for (int64_t j = 0; j < H; ++j) dxi[j] += d_gx[i * gh_w + g * H + j];
      }
    }
    if (dir == 1) ScatterReverseRows(lengths, T_, B, s0, s1, in, dx_rows, dx, /*add=*/true);
  }
  std::copy(dh, dh + B * ho, a.dh0 + ld * B * ho);
  if (is_lstm) std::copy(dc, dc + B * H, a.dc0 + ld * B * H);
  if constexpr (!std::is_same<S, T>::value) {
    for (int64_t i = 0; i < blk.size; ++i) dp[i] = static_cast<T>(gsum[i]);
  }
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_RNN_CPU_DRIVER_H_
