// The CPU products of the fused RNN and the threading they run on: Eigen's contraction (CpuGemm),
// the products with a fixed weight matrix every step repeats (StepGemm, packed once per call with
// packed_gemm.h for float), the weight-gradient sums (AddWeightGrad, in double for float) and the
// row split over the intra-op pool (ParallelRows).
#ifndef TF_RNN_OPS_CC_KERNELS_CPU_GEMM_H_
#define TF_RNN_OPS_CC_KERNELS_CPU_GEMM_H_

#define EIGEN_USE_THREADS

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "cc/kernels/narrow_weight_grads.h"
#include "cc/kernels/packed_gemm.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_rnn_ops {

using CPUDevice = Eigen::ThreadPoolDevice;

// C[M, N] = op(A) · op(B) (or += when accumulate), row-major; op(A) is [M, K], op(B) is [K, N].
template <typename T>
void CpuGemm(const CPUDevice& d, bool transpose_a, bool transpose_b, int64_t M, int64_t N,
             int64_t K, const T* A, const T* B, T* C, bool accumulate) {
  if (M == 0 || N == 0) return;
  using ConstMatrix =
      Eigen::TensorMap<Eigen::Tensor<const T, 2, Eigen::RowMajor, Eigen::DenseIndex>>;
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

// Runs fn(begin, end) over [0, n) rows on the device's pool, each row costing about `row_cost`
// flops: one equal share of the rows per thread (the work of a time step is too short for Eigen's
// cost-model blocks and work stealing to pay; measured, uneven blocks cost the step products a
// third).
// Where the calling thread is not one of the pool's (TensorFlow runs an op's Compute on its
// inter-op pool), every share goes to the pool and the caller sleeps until they are done. Eigen's
// parallelFor runs one share on the caller: with as many pool threads as cores, that made one
// busy thread more than cores, the idle pool thread spun for work, and the caller's share often
// started 0.6-0.9 ms late (SimpleRNN(256) training at B = 256, T = 4: 7.4 against 6.2 ms a step;
// docs/PERFORMANCE.md item 74).
template <typename Fn>
void ParallelRows(const CPUDevice& d, int64_t n, double row_cost, Fn&& fn,
                  double min_flops = 20000) {
  if (n <= 0) return;
  const int64_t shares = std::min<int64_t>(d.numThreads(), n);
  if (n * row_cost < min_flops || shares <= 1) {  // not worth a dispatch
    fn(0, n);
    return;
  }
  auto run_share = [&fn, n, shares](int64_t t) { fn(n * t / shares, n * (t + 1) / shares); };
  Eigen::ThreadPoolInterface* pool = d.getPool();
  if (pool->CurrentThreadId() < 0) {
    Eigen::Barrier barrier(static_cast<unsigned int>(shares));
    for (int64_t t = 0; t < shares; ++t) {
      pool->Schedule([&run_share, &barrier, t] {
        run_share(t);
        barrier.Notify();
      });
    }
    barrier.Wait();
    return;
  }
  d.parallelFor(shares, Eigen::TensorOpCost(0, 0, 1e9), [&](Eigen::Index begin, Eigen::Index end) {
    for (Eigen::Index t = begin; t < end; ++t) run_share(t);
  });
}

// For a share [begin, end) of items that are groups of `panels` panels (item i: group i / panels,
// panel i % panels): fn(group, first, last) for each of its runs of one group's panels
// [first, last), so that a run's panels are one call (of GemmTransposedA: B's block packed
// once; of StepGemm<float>::RunSteps: a step's strips of rows).
template <typename Fn>
inline void ForEachPanelRun(int64_t begin, int64_t end, int64_t panels, Fn&& fn) {
  for (int64_t i = begin; i < end;) {
    const int64_t group = i / panels, first = i % panels;
    const int64_t last = std::min(end - group * panels, panels);
    fn(group, first, last);
    i = group * panels + last;
  }
}

// ParallelRows' min_flops for copies and conversions (counted as 2 flops an element): below it they
// run on the calling thread. Waking the pool's threads cost the one-step training steps more than
// copying such a block does (SimpleRNN(256), B = 64: ~half its CPU time in the pool's wake-ups and
// futexes; docs/PERFORMANCE.md, item 56).
constexpr double kCopyMinFlops = 1 << 20;

// std::copy_n for one batch row's few values: rows of up to 16 are copied inline, not by a call
// into libc's memmove (the driver copies a narrow layer's states and outputs row by row, 2-4
// calls a row and step: ~7% of SimpleRNN(1)'s training step, docs/PERFORMANCE.md item 111).
template <typename T>
inline void CopyRow(const T* from, int64_t n, T* to) {
  if (n <= 16) {
    for (int64_t i = 0; i < n; ++i) to[i] = from[i];
    return;
  }
  std::copy_n(from, n, to);
}

// Calls whose products total fewer flops than this run on the calling thread alone: waking the
// pool's threads for each of their ~10 parallel sections cost more than the second core saved
// (SimpleRNN(256) one-step training at B = 64, ~25 MFLOP a backward: half its CPU time in the
// pool's wake-ups), and one core alone streams a one-step call's weights at the machine's
// bandwidth (docs/PERFORMANCE.md, item 56). 128 MFLOP, not 64: the GRU(256) / LSTM(256) backward
// at B = 64, T = 1 (75 / 100 MFLOP) ran 25% faster on one thread, T = 2 (150 / 200 MFLOP) is
// faster on two (item 59: 64, 128 and 200 MFLOP, alternating).
constexpr double kOneThreadFlops = 128e6;
// The same for the drop-in layers' forward (TfRnn>KerasRNN), which has one parallel section a step
// where a backward has several: two threads paid from 64 MFLOP (GRU(256) / LSTM(256) B = 64 at
// T = 2, SimpleRNN(256) B = 64 at T = 8, GRU(256) B = 16 at T = 8: 10-25% less wall time a
// training step, docs/PERFORMANCE.md item 72; the one-step calls below 64 MFLOP unchanged).
constexpr double kOneThreadForwardFlops = 64e6;

// Whether p[0, n) are all zero: a product operand whose products need not run (an initial state
// no one gave: the first step's recurrent products and its rows of R's gradient are zero).
// Blocks of 256 values with no early exit inside OR-ed as bits (no float compares: GCC left those
// scalar), the sign bit dropped (-0 is zero). An element-wise all_of ran one value a cycle: ~10%
// of SimpleRNN(64)'s forward at B = 16384, over h0's 4 MB.
template <typename T>
inline bool AllZero(const T* p, int64_t n) {
  using Bits = std::conditional_t<sizeof(T) == 8, uint64_t,
                                  std::conditional_t<sizeof(T) == 4, uint32_t, uint16_t>>;
  static_assert(sizeof(T) == sizeof(Bits), "a float type of 2, 4 or 8 bytes");
  constexpr Bits kMagnitude = ~(Bits{1} << (8 * sizeof(T) - 1));
  constexpr int64_t kBlock = 256;
  for (int64_t i = 0; i < n; i += kBlock) {
    Bits any = 0;
    const int64_t end = std::min(n, i + kBlock);
    for (int64_t j = i; j < end; ++j) {
      Bits bits;
      std::memcpy(&bits, p + j, sizeof(bits));
      any |= bits;
    }
    if ((any & kMagnitude) != 0) return false;
  }
  return true;
}

// Runs fn(i0, i1) over [0, n) in blocks of 4096 values, split over the pool's threads where
// large (ParallelRows with kCopyMinFlops), each value costing about `value_flops`.
template <typename Fn>
inline void ParallelBlocks(const CPUDevice& d, int64_t n, double value_flops, Fn&& fn) {
  constexpr int64_t kBlock = 4096;  // values a row of ParallelRows
  ParallelRows(
      d, (n + kBlock - 1) / kBlock, value_flops * kBlock,
      [&](int64_t begin, int64_t end) {
        for (int64_t i0 = begin * kBlock; i0 < std::min(n, end * kBlock); i0 += kBlock) {
          fn(i0, std::min(n, i0 + kBlock));
        }
      },
      kCopyMinFlops);
}

// dst[0, n) = src[0, n) (or zeros where src is null), split over the pool's threads where it is
// large (a layer's states at a large batch: SimpleRNN(64)'s h0, hn and their grads at B = 16384
// are 4 MB each, copied on one thread). Returns whether the values copied are all zero (AllZero
// of each block while it is in cache, until one is not: a zero initial state's products are
// skipped, and checking it after the copy was a second pass, on one thread).
template <typename T>
inline bool ParallelCopy(const CPUDevice& d, const T* src, int64_t n, T* dst) {
  std::atomic<bool> nonzero{false};
  ParallelBlocks(d, n, 2.0, [&](int64_t i0, int64_t i1) {
    if (src == nullptr) {
      std::fill(dst + i0, dst + i1, T(0));
      return;
    }
    std::copy(src + i0, src + i1, dst + i0);
    if (!nonzero.load(std::memory_order_relaxed) && !AllZero(dst + i0, i1 - i0)) {
      nonzero.store(true, std::memory_order_relaxed);
    }
  });
  return !nonzero.load();
}

// AllZero split over the pool's threads where p is large (the backward's check of h0: 4 MB for
// SimpleRNN(64) at B = 16384, a serial pass on the op's thread).
template <typename T>
inline bool AllZero(const CPUDevice& d, const T* p, int64_t n) {
  std::atomic<bool> nonzero{false};
  ParallelBlocks(d, n, 1.0, [&](int64_t i0, int64_t i1) {
    if (!nonzero.load(std::memory_order_relaxed) && !AllZero(p + i0, i1 - i0)) {
      nonzero.store(true, std::memory_order_relaxed);
    }
  });
  return !nonzero.load();
}

// The per-row scratch of rnn_phase_products.h: n values, of which the first `zeroed` are zeros
// (what a product may read before the cells write it: a phase's input for rows past their
// length), zeroed by the pool's threads where large. A std::vector of n zeros was filled on the
// op's thread alone (~6% of SimpleRNN(64)'s recurrent-dropout training step at B = 16384, and
// ~10% more on two threads; docs/PERFORMANCE.md item 76).
template <typename T>
class RowScratch {
 public:
  void Reset(const CPUDevice& d, int64_t n, int64_t zeroed) {
    data_.reset(new T[std::max<int64_t>(1, n)]);
    ParallelCopy<T>(d, nullptr, zeroed, data_.get());
  }
  T* data() const { return data_.get(); }

 private:
  std::unique_ptr<T[]> data_;
};

// The device a call runs on: the op's `d`, or for a call of fewer than `one_thread_flops` flops a
// device of one thread on the same pool (ParallelRows and Eigen's products then run inline).
class CallDevice {
 public:
  CallDevice(const CPUDevice& d, double flops, double one_thread_flops = kOneThreadFlops)
      : d_(d), one_(d.getPool(), 1, d.allocator()), small_(flops < one_thread_flops) {}
  const CPUDevice& get() const { return small_ ? one_ : d_; }

 private:
  const CPUDevice& d_;
  const CPUDevice one_;
  const bool small_;
};

// A product with a fixed weight matrix that every time step (R, P) or chunk of steps (W) repeats:
// C[M, N] = A[M, K] · B, B being [K, N] or (transposed) the row-major [N, K] weights. Eigen's
// contraction would pack B again at every call; for float, B is packed once per op call (into
// `storage`, of StepGemm<float>::StorageSize floats) and every call runs the packed kernel.
template <typename T>
class StepGemm {
 public:
  static int64_t StorageSize(int64_t K, int64_t N) { return 0; }
  // (gate_src must be null and ldb 0 here: the callers copy the weights of other types into the
  // order and layout read; `stream` changes nothing: Eigen's product reads b as stored.)
  StepGemm(const CPUDevice& d, const T* b, int64_t K, int64_t N, bool transposed, T* storage,
           const int* gate_src = nullptr, int64_t block = 0, bool stream = false, int64_t ldb = 0)
      : d_(d), b_(b), K_(K), N_(N), transposed_(transposed) {}
  void Run(int64_t M, const T* A, T* C) const {
    CpuGemm<T>(d_, false, transposed_, M, N_, K_, A, b_, C, false);
  }
  static constexpr bool kRowsOnOneThread = false;  // see StepGemm<float>
  static constexpr bool kStrided = false;          // see StepGemm<float>
  void RunOnThisThread(int64_t M, const T* A, T* C) const { Run(M, A, C); }

 private:
  const CPUDevice& d_;
  const T* b_;
  int64_t K_, N_;
  bool transposed_;
};

// Weights of this size or more do not stay in the shared cache (32 MB of L3 on the Zen 5 machines
// this was measured on; a constant, not the machine's L3, which on the Intel Xeon of item 87
// reports 480 MB) between two steps: a step's products then read them from memory, and where two
// threads each read all of them (each its own rows), they read twice what one product split by
// columns reads (docs/PERFORMANCE.md item 86).
constexpr double kOneRangeMinWeightBytes = 24e6;

// The drop-in layers' forward CallDevice threshold: kOneThreadForwardFlops, but none for weights
// past the shared cache (kOneRangeMinWeightBytes), which every step reads from memory: two cores
// read them ~1.8x as fast as one (StepGemm<float>::Run splits a streamed product), more than a
// dispatch a step costs (GRU(2048) one step with a state 2.3 -> 1.6 ms, Keras' 1.8-2.0;
// GRU(1024)'s 14 MB ran slower on two: docs/PERFORMANCE.md item 88).
inline double ForwardOneThreadFlops(double weight_bytes) {
  return weight_bytes >= kOneRangeMinWeightBytes ? 0.0 : kOneThreadForwardFlops;
}

// A forward call's work in product flops, for CallDevice: the products' own (2 flops a weight
// element, row and step) and each row step's cell pass and copies, ~40 ns on one core for a
// narrow layer (LSTM(1)), what ~4,000 flops of the products take. Counting the products alone,
// a call of many narrow rows ran on one thread: LSTM(1) at B = 4096, T = 16 (2 MFLOP) 2.9 ms,
// against 1.7 on two (docs/PERFORMANCE.md item 111).
constexpr double kRowStepForwardFlops = 4096;
inline double ForwardCallFlops(int64_t T_, int64_t B, double weight_elements) {
  return double(T_) * B * (2.0 * weight_elements + kRowStepForwardFlops);
}

template <>
class StepGemm<float> {
 public:
  // Measured at batch 1 (0.4 MFLOP a step): dispatching to 2 threads made the step 3x slower.
  static constexpr double kStepMinFlops = 1e6;
  // Streamed products (see the constructor) of at most this many rows run on the calling thread,
  // where their weights are under kStreamSplitMinBytes (see Run).
  static constexpr int64_t kStreamOneThreadRows = 2;
  // (GRU(512) B = 1, T = 256 inference streamed, R and W 3.9 MB: 25 ms on one thread, 12 split;
  // docs/PERFORMANCE.md item 88.)
  static constexpr double kStreamSplitMinBytes = 1e6;
  static int64_t StorageSize(int64_t K, int64_t N) { return PackedMatrix::PackedSize(K, N); }
  // gate_src (or null): column block g (`block` wide) of the product's B is column block
  // gate_src[g] of b (transposed: B's row block g, b's column block gate_src[g]). stream: no
  // packing, every product reads b as stored (StreamGemm, or StreamGemmTransposed; for the few
  // rows of small B·T calls, where packing costs more than it saves, see RnnStreamWeights);
  // `storage` is then unused. ldb: b's row stride (0: N, transposed K), so that a product reads
  // one gate's block of Keras' [H, G·H] recurrent kernel in place (MaskedProducts).
  StepGemm(const CPUDevice& d, const float* b, int64_t K, int64_t N, bool transposed,
           float* storage, const int* gate_src = nullptr, int64_t block = 0, bool stream = false,
           int64_t ldb = 0)
      : d_(d),
        packed_(K, N, storage),
        b_(b),
        gate_src_(gate_src),
        block_(block),
        stream_(stream),
        transposed_(transposed),
        ldb_(ldb          ? ldb
             : transposed ? K
                          : N) {
    if (stream) return;
    ParallelRows(
        d, PackedMatrix::NumPanels(N), 2.0 * kNr * K,
        [&](int64_t begin, int64_t end) {
          packed_.PackPanels(b, ldb_, transposed, begin, end, gate_src, block);
        },
        kCopyMinFlops);
  }
  // The rows of a batch run their recurrences independently: the driver can give each thread a
  // range of rows for a whole chunk of steps, each step's product on that thread alone.
  static constexpr bool kRowsOnOneThread = true;
  // A's rows lda apart and C's ldc apart (0: K and N), so that a product reads and writes a
  // column block of wider rows in place (the per-gate products of recurrent dropout,
  // rnn_phase_products.h).
  static constexpr bool kStrided = true;
  void RunOnThisThread(int64_t M, const float* A, float* C, int64_t lda = 0,
                       int64_t ldc = 0) const {
    if (M == 0 || packed_.N() == 0) return;
    lda = lda ? lda : packed_.K();
    ldc = ldc ? ldc : packed_.N();
    if (stream_) {
      Stream(M, A, lda, C, ldc, 0, packed_.N());
      return;
    }
    PackedGemmPanels(M, A, lda, packed_, C, ldc, 0, PackedMatrix::NumPanels(packed_.N()));
  }
  // `steps` products of M rows in one dispatch, product s reading A + s·a_step (rows lda apart)
  // into C + s·c_step (rows ldc apart): the input projection and the input's grad of batch-major
  // rows, a step's rows T·I apart (a dispatch a step cost ~10-20 µs each). The threads take runs
  // of kMr-row strips of the steps, each reading all of the weights (as RunOnThisThread; step by
  // step where the weights are too large for that, kOneRangeMinWeightBytes, or streamed).
  void RunSteps(int64_t steps, int64_t M, const float* A, int64_t a_step, int64_t lda, float* C,
                int64_t c_step, int64_t ldc = 0) const {
    const int64_t K = packed_.K(), N = packed_.N();
    if (steps <= 0 || M == 0 || N == 0) return;
    if (stream_ || double(K) * N * sizeof(float) >= kOneRangeMinWeightBytes) {
      for (int64_t s = 0; s < steps; ++s) Run(M, A + s * a_step, C + s * c_step, lda, ldc);
      return;
    }
    lda = lda ? lda : K;
    ldc = ldc ? ldc : N;
    const int64_t strips = (M + kMr - 1) / kMr, panels = PackedMatrix::NumPanels(N);
    ParallelRows(
        d_, steps * strips, 2.0 * kMr * K * N,
        [&](int64_t begin, int64_t end) {
          ForEachPanelRun(begin, end, strips, [&](int64_t s, int64_t first, int64_t last) {
            const int64_t m0 = first * kMr, m1 = std::min(M, last * kMr);
            PackedGemmPanels(m1 - m0, A + s * a_step + m0 * lda, lda, packed_,
                             C + s * c_step + m0 * ldc, ldc, 0, panels);
          });
        },
        kStepMinFlops);
  }
  void Run(int64_t M, const float* A, float* C, int64_t lda = 0, int64_t ldc = 0) const {
    const int64_t K = packed_.K(), N = packed_.N(), panels = PackedMatrix::NumPanels(N);
    if (M == 0 || N == 0) return;
    lda = lda ? lda : K;
    ldc = ldc ? ldc : N;
    if (stream_ && M <= kStreamOneThreadRows) {
      // One or two rows' product is bound by reading the weights. Below kStreamSplitMinBytes on
      // the calling thread: split across the pool's threads, the call waited for the slower one
      // whenever the other core was busy (GRU(1024) one step: 1.97 against 1.65 ms on the machine
      // of docs/PERFORMANCE.md item 29, whose one core read at the machine's bandwidth). Above it,
      // each thread reads its own contiguous part of the weights: on the Intel Xeon of item 88
      // one core reads ~28 GB/s and two ~50.
      if (d_.numThreads() > 1 && double(K) * N * sizeof(float) >= kStreamSplitMinBytes) {
        StreamSplit(M, A, lda, C, ldc);
      } else {
        Stream(M, A, lda, C, ldc, 0, N);
      }
      return;
    }
    if (stream_) {  // 3-8 rows: bound by a core's loads, columns split across threads
      constexpr int64_t kStreamCols = 64;
      const int64_t slices = (N + kStreamCols - 1) / kStreamCols;
      ParallelRows(
          d_, slices, 2.0 * M * K * kStreamCols,
          [&](int64_t begin, int64_t end) {
            Stream(M, A, lda, C, ldc, begin * kStreamCols, std::min(N, end * kStreamCols));
          },
          kStepMinFlops);
      return;
    }
    // (Eigen's cost-model blocks came out uneven here: 120 instead of 170 GFLOP/s.) Below
    // kStepMinFlops a step runs on the calling thread: a dispatch costs about as much.
    if (K > N && M >= 2 * kMr && K * N * sizeof(float) < kOneRangeMinWeightBytes) {
      // A wide A (the backward's [B, G·H] grads) split by rows: each thread reads only its rows
      // (and all of B: not where B is too large for the shared cache, see kOneRangeMinWeightBytes).
      const int64_t strips = (M + kMr - 1) / kMr;
      ParallelRows(
          d_, strips, 2.0 * kMr * K * N,
          [&](int64_t begin, int64_t end) {
            const int64_t m0 = begin * kMr, m1 = std::min(M, end * kMr);
            PackedGemmPanels(m1 - m0, A + m0 * lda, lda, packed_, C + m0 * ldc, ldc, 0, panels);
          },
          kStepMinFlops);
      return;
    }
    ParallelRows(
        d_, panels, 2.0 * M * K * kNr,
        [&](int64_t begin, int64_t end) {
          PackedGemmPanels(M, A, lda, packed_, C, ldc, begin, end);
        },
        kStepMinFlops);
  }

 private:
  const CPUDevice& d_;
  PackedMatrix packed_;
  // A streamed product of few rows on all the pool's threads, each reading a contiguous part of b:
  // transposed (b is [N, K]), a range of C's columns each (the same sums as one thread's); else a
  // range of K each (whole rows of b), the parts' sums added into C after.
  void StreamSplit(int64_t M, const float* A, int64_t lda, float* C, int64_t ldc) const {
    const int64_t K = packed_.K(), N = packed_.N(), parts = d_.numThreads();
    if (transposed_) {
      ParallelRows(d_, N, 2.0 * M * K,
                   [&](int64_t n0, int64_t n1) { Stream(M, A, lda, C, ldc, n0, n1); });
      return;
    }
    // Part t sums k in [k(t), k(t + 1)), cut at multiples of 16 (StreamGemm's groups of rows; an
    // empty part writes zeros); part 0 into C, the others into their own M x N block of `partial`.
    auto k_at = [&](int64_t t) { return t == parts ? K : (K * t / parts) / 16 * 16; };
    std::unique_ptr<float[]> partial(new float[(parts - 1) * M * N]);
    ParallelRows(d_, parts, 1e9, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t k0 = k_at(t), k1 = k_at(t + 1);
        float* c = t == 0 ? C : partial.get() + (t - 1) * M * N;
        StreamGemm(M, A + k0, lda, k1 - k0, b_ + k0 * ldb_, ldb_, c, t == 0 ? ldc : N, 0, N,
                   gate_src_, block_);
      }
    });
    for (int64_t t = 1; t < parts; ++t) {
      const float* p = partial.get() + (t - 1) * M * N;
      for (int64_t m = 0; m < M; ++m) {
        float* c = C + m * ldc;
        for (int64_t n = 0; n < N; ++n) c[n] += p[m * N + n];
      }
    }
  }

  // The streamed product's columns [n0, n1): b read as stored, either way round.
  void Stream(int64_t M, const float* A, int64_t lda, float* C, int64_t ldc, int64_t n0,
              int64_t n1) const {
    const int64_t K = packed_.K();
    if (transposed_) {
      StreamGemmTransposed(M, A, lda, K, b_, ldb_, C, ldc, n0, n1, gate_src_, block_);
    } else {
      StreamGemm(M, A, lda, K, b_, ldb_, C, ldc, n0, n1, gate_src_, block_);
    }
  }

  const float* b_;
  const int* gate_src_;
  int64_t block_;
  bool stream_;
  bool transposed_;
  int64_t ldb_;
};

// Runs range(b0, b1, one_thread) so that each thread of the pool takes a range of the B batch rows
// through all the steps: the rows of a batch run their recurrences independently, so a thread's
// steps need nothing from the others (one dispatch a call instead of one or more a step; each
// thread's states stay in its own cache). Where the step products cannot run on one thread
// (double: Eigen's contraction), one range of all rows, the products split inside (one_thread
// false). At most one range per kMr rows (a range of fewer rows runs only the micro-kernel's short
// tiles, which cost more than their share of a whole strip: StripRows, packed_gemm.h), the rows
// split evenly (the cells' passes cost by the row; whole strips split B = 64 into 30 | 34 rows,
// B = 16 into 6 | 10: docs/PERFORMANCE.md items 80, 81); a batch of fewer than kFewBatchRows
// one range per thread of one row or more. Where the caller's rule (RnnRowsApart) says not
// rows_apart: one range of all rows, whose products split inside at every step.
constexpr int64_t kFewBatchRows = 2 * kMr;  // (RnnRowsApart's rule changes there too)
template <typename T, typename Fn>
void ForEachBatchRange(const CPUDevice& d, int64_t B, bool rows_apart, Fn&& range) {
  const bool few = B < kFewBatchRows;
  if (!StepGemm<T>::kRowsOnOneThread || d.numThreads() <= 1 || B < 2 || !rows_apart) {
    range(int64_t{0}, B, false);
    return;
  }
  const int64_t share_rows = few ? 1 : kMr;
  const int64_t shares = std::min<int64_t>(d.numThreads(), (B + share_rows - 1) / share_rows);
  // (shares <= threads: ParallelRows gives each share one item)
  ParallelRows(d, shares, 1e9,
               [&](int64_t t0, int64_t t1) { range(B * t0 / shares, B * t1 / shares, true); });
}

// A step's product over rows the calling thread owns (one_thread: the driver gave each thread a
// range of rows, see ForEachBatchRange), or over all rows, split inside.
template <typename T>
void RunStepGemm(const StepGemm<T>& gemm, bool one_thread, int64_t M, const T* A, T* C) {
  if (one_thread) {
    gemm.RunOnThisThread(M, A, C);
  } else {
    gemm.Run(M, A, C);
  }
}

// RunStepGemm with A's rows lda apart and C's ldc apart (StepGemm<T>::kStrided only).
template <typename T>
void RunStepGemm(const StepGemm<T>& gemm, bool one_thread, int64_t M, const T* A, int64_t lda, T* C,
                 int64_t ldc) {
  static_assert(StepGemm<T>::kStrided, "strided products: StepGemm<float> only");
  if (one_thread) {
    gemm.RunOnThisThread(M, A, C, lda, ldc);
  } else {
    gemm.Run(M, A, C, lda, ldc);
  }
}

// The type the weight and bias gradients are summed in over a layer's T·B rows. A float sum over
// thousands of rows loses digits with every term: measured, our float32 weight gradients were less
// accurate than TensorFlow's own float32 math (which sums B rows a step, then the steps); summed in
// double (the products in float over runs of 16 rows and groups of 128, see packed_gemm.h's
// kWgradShortRunK), they are more accurate at any number of rows (tests/test_grad_accuracy.py).
template <typename T>
struct GradSumType {
  using type = T;
};
template <>
struct GradSumType<float> {
  using type = double;
};

// Whether a weight gradient over `rows` rows may be summed in T straight into its output: always
// where T is its own sum type; for float, up to kWeightGradRunsInT runs of kWgradSubK rows, each
// run summed by itself and the runs added in float into the output (WeightGradInT). The float sum
// of 8 runs adds the error of an 8-term sum, so that the whole is still no less accurate than
// TensorFlow's float32 math over the same rows (one float product of B rows a step, then the
// tape's sum of T; tests/ops/test_grad_accuracy.py). The double buffers, a pass over twice the
// weights' size to clear, fill and convert, cost a call of few rows more than its products
// (GRU(1024) one-step training, docs/PERFORMANCE.md item 56; GRU(256) at B = 64, T = 1, item 59;
// LSTM(256) at B = 256, T = 1, item 63).
constexpr int64_t kWeightGradRunsInT = 8;
constexpr int64_t kWeightGradMaxRowsInT = kWeightGradRunsInT * kWgradSubK;  // (float)
template <typename T>
bool WeightGradsInT(int64_t rows) {
  return std::is_same<typename GradSumType<T>::type, T>::value || rows <= kWeightGradMaxRowsInT;
}

// C[M, N] += Aᵀ · B for A [K, M] and B [K, N] row-major: a chunk's share of a weight gradient,
// summed over its K = steps·batch rows.
template <typename T>
void AddWeightGrad(const CPUDevice& d, int64_t M, int64_t N, int64_t K, const T* A, const T* B,
                   typename GradSumType<T>::type* C) {
  static_assert(std::is_same<typename GradSumType<T>::type, T>::value, "float has its own");
  CpuGemm<T>(d, true, false, M, N, K, A, B, C, true);
}

// float: GemmTransposedA (the packed kernel's micro-kernel on both operands packed a block at a
// time, summing into double), the rows of C split across threads (Eigen's contraction ran these at
// ~120 GFLOP/s inside the backward).
// AddWeightGradStrided reads A's rows lda apart (a column block of wider rows, in place);
// AddWeightGrad<float> is it with lda = M. C's rows ldc apart (0: N), B's ldb apart (0: N); with
// b_mask, B's rows times their mask rows (WgradRowMask, packed_gemm.h).
//
// Two shapes that kernel serves badly, both of a small G·H (M) against many rows (K):
//  * M narrower than N: GemmTransposedA packs B's rows into kMr-wide strips (a scatter) for every
//    kb rows of K, and one panel of A kNr wide passes over them: with M = 16 the packing cost as
//    much as the products. Cᵀ = Bᵀ·A packs A's few columns instead, its panels B's contiguous
//    rows, and its tiles are added transposed into C at the end (kTransposedMaxRows).
//  * fewer panels than twice the threads: the rows of K are split too, into parts of at least
//    kWgradMinPartRows, each part's sums in its own zeroed double buffer, added to C at the end.
// Split by C's rows alone and untransposed, SimpleRNN(16)'s input-weight gradient at B = 16384 ran
// on one thread at a third of the packed kernel's rate (0.73x Keras' training step,
// docs/PERFORMANCE.md item 76).
constexpr int64_t kWgradMinPartRows = 512;
constexpr int64_t kTransposedMaxRows = 64;

inline int64_t WeightGradKParts(int64_t threads, int64_t panels, int64_t K) {
  if (threads <= 1 || panels >= 2 * threads) return 1;
  const int64_t wanted = (2 * threads + panels - 1) / panels;
  return std::max<int64_t>(1, std::min(wanted, K / kWgradMinPartRows));
}

// Whether WeightGradRowsOnThisThread sums C[M, N] += Aᵀ · B into Cᵀ [N, M]: the narrow kernel
// where the narrow side is N (NarrowWeightGrad), the packed one where M < N (AddWeightGradStrided).
inline bool WeightGradSumsTransposed(int64_t M, int64_t N) {
  if (NarrowWeightGradFits(M, N)) return N < M;
  return M < N && M <= kTransposedMaxRows;
}

// out += Aᵀ · B over K rows on the calling thread, for A [K, M] (rows lda apart; null: M = 1 and
// every value 1, B's column sums, narrow layers only) and B [K, N] (rows ldb apart); out [M, N],
// or [N, M] where WeightGradSumsTransposed.
inline void WeightGradRowsOnThisThread(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                                       const float* B, int64_t ldb, double* out) {
  if (K <= 0) return;
  if (NarrowWeightGradFits(M, N)) {
    // The wide side is a vector of each row, the narrow one broadcast: out[narrow, wide].
    const bool b_wide = N >= M;
    const int64_t wide = b_wide ? N : M, narrow = b_wide ? M : N;
    const float* w = b_wide ? B : A;
    const float* n = b_wide ? A : B;
    const int64_t ldw = b_wide ? ldb : lda, ldn = b_wide ? lda : ldb;
    if (narrow_wgrad_internal::FlatRowsFit(narrow, wide, ldw, n, ldn)) {
      narrow_wgrad_internal::SumFlat(wide, 0, K, w, n, out);
    } else {
      narrow_wgrad_internal::SumRowsOf(narrow, wide, 0, K, w, ldw, n, ldn, out);
    }
  } else if (WeightGradSumsTransposed(M, N)) {
    GemmTransposedA(M, K, B, ldb, A, lda, out, M, 0, N, nullptr);
  } else {
    GemmTransposedA(N, K, A, lda, B, ldb, out, N, 0, M, nullptr);
  }
}

// C[M, N] (rows ldc apart) += the [M, N] (or, transposed, [N, M]) sums of each of `count`
// buffers `stride` apart.
inline void AddWeightGradSums(int64_t M, int64_t N, bool transposed, const double* sums,
                              int64_t count, int64_t stride, double* C, int64_t ldc) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double sum = 0;
      for (int64_t p = 0; p < count; ++p)
        sum += sums[p * stride + (transposed ? n * M + m : m * N + n)];
      C[m * ldc + n] += sum;
    }
  }
}

// C[M, N] (rows ldc apart) += Aᵀ · B for A [K, M] (rows lda apart) and B [K, N] (rows ldb apart),
// NarrowWeightGradFits(M, N); A null: C[0, ·] += B's column sums (M = 1). The rows of K split
// across the threads where there are enough of them, each share summed into its own buffer.
inline void NarrowWeightGrad(const CPUDevice& d, int64_t M, int64_t N, int64_t K, const float* A,
                             int64_t lda, const float* B, int64_t ldb, double* C, int64_t ldc) {
  if (K <= 0) return;
  // (a share costs ~a cycle a row and broadcast: a dispatch, ~20 µs, pays from ~64 K of them)
  constexpr double kMinShareWork = 65536;
  const int64_t parts = std::clamp<int64_t>(
      static_cast<int64_t>(double(K) * std::max<int64_t>(std::min(M, N), 2) / kMinShareWork), 1,
      d.numThreads());
  std::vector<double> sums(parts * M * N, 0.0);
  ParallelRows(d, parts, 1e9, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t k0 = K * p / parts, k1 = K * (p + 1) / parts;
      WeightGradRowsOnThisThread(M, N, k1 - k0, A ? A + k0 * lda : nullptr, lda, B + k0 * ldb, ldb,
                                 sums.data() + p * M * N);
    }
  });
  AddWeightGradSums(M, N, WeightGradSumsTransposed(M, N), sums.data(), parts, M * N, C, ldc);
}

inline void AddWeightGradStrided(const CPUDevice& d, int64_t M, int64_t N, int64_t K,
                                 const float* A, int64_t lda, const float* B, double* C,
                                 int64_t ldc = 0, int64_t ldb = 0,
                                 const WgradRowMask* b_mask = nullptr) {
  ldb = ldb ? ldb : N;
  ldc = ldc ? ldc : N;
  if (b_mask == nullptr && NarrowWeightGradFits(M, N)) {
    NarrowWeightGrad(d, M, N, K, A, lda, B, ldb, C, ldc);
    return;
  }
  // (b_mask: untransposed, where B is packed in strips and the mask applied there)
  const bool transposed = b_mask == nullptr && WeightGradSumsTransposed(M, N);
  // The product run: out[rows, cols] += aᵀ·b over K, a [K, rows] and b [K, cols].
  const int64_t rows = transposed ? N : M, cols = transposed ? M : N;
  const float* a = transposed ? B : A;
  const float* b = transposed ? A : B;
  const int64_t a_ld = transposed ? ldb : lda, b_ld = transposed ? lda : ldb;
  const int64_t panels = (rows + kNr - 1) / kNr;
  const int64_t parts = WeightGradKParts(d.numThreads(), panels, K);
  // Part p's sums: C itself for part 0 untransposed, else buffer p (or p - 1), [rows, cols].
  const int64_t buffers = transposed ? parts : parts - 1;
  std::vector<double> sums(buffers * rows * cols, 0.0);
  auto part_out = [&](int64_t part) {
    return transposed ? sums.data() + part * rows * cols
                      : (part == 0 ? C : sums.data() + (part - 1) * rows * cols);
  };
  // Item i: part i / panels (rows [K·part/parts, K·(part+1)/parts) of K), panel i % panels; a
  // share's consecutive panels of one part run as one call (b's block packed once for them).
  ParallelRows(d, parts * panels, 2.0 * kNr * cols * K / parts, [&](int64_t begin, int64_t end) {
    ForEachPanelRun(begin, end, panels, [&](int64_t part, int64_t first, int64_t last) {
      const int64_t k0 = K * part / parts, k1 = K * (part + 1) / parts;
      const bool into_c = !transposed && part == 0;
      // (b_mask: b is B; the part's rows from k0 on)
      const WgradRowMask part_mask =
          b_mask ? WgradRowMask{b_mask->m, b_mask->period, b_mask->first + k0} : WgradRowMask{};
      GemmTransposedA(cols, k1 - k0, a + k0 * a_ld, a_ld, b + k0 * b_ld, b_ld, part_out(part),
                      into_c ? ldc : cols, first * kNr, std::min(rows, last * kNr),
                      b_mask ? &part_mask : nullptr);
    });
  });
  // (one part, untransposed: summed into C)
  if (buffers > 0) AddWeightGradSums(M, N, transposed, sums.data(), buffers, rows * cols, C, ldc);
}

// Weight-gradient sums of this many elements or fewer are split across threads by steps
// (AddWeightGradSteps): a buffer of them per thread.
constexpr int64_t kStepsSplitMaxSums = 1 << 16;
// (and below this many flops on the calling thread, as a step's product: StepGemm's kStepMinFlops)
constexpr double kWgradStepsMinFlops = 1e6;

// C[M, N] (rows ldc apart) += Σ_s A_sᵀ · B_s over `steps` products of K rows, A_s = A + s·a_step
// [K, M] (rows lda apart), B_s = B + s·b_step [K, N] (rows ldb apart): a weight gradient of
// batch-major rows, a product a step (x's rows T·I apart), in one dispatch rather than one a step
// (~10-20 µs each). The threads take runs of the steps (or of their parts, where the steps are
// few), each summing into its own buffer, added into C at the end; step by step
// (AddWeightGradStrided, which splits each) where C is larger than kStepsSplitMaxSums.
inline void AddWeightGradSteps(const CPUDevice& d, int64_t M, int64_t N, int64_t steps, int64_t K,
                               const float* A, int64_t a_step, int64_t lda, const float* B,
                               int64_t b_step, int64_t ldb, double* C, int64_t ldc = 0) {
  ldc = ldc ? ldc : N;
  if (steps <= 0 || K <= 0) return;
  const int64_t threads = d.numThreads();
  if (M * N > kStepsSplitMaxSums || threads <= 1) {
    for (int64_t s = 0; s < steps; ++s)
      AddWeightGradStrided(d, M, N, K, A + s * a_step, lda, B + s * b_step, C, ldc, ldb);
    return;
  }
  // Items: step i / parts, its rows' part i % parts (parts enough for two items a thread).
  const int64_t parts = std::clamp<int64_t>((2 * threads + steps - 1) / steps, 1,
                                            std::max<int64_t>(1, K / kWgradMinPartRows));
  const int64_t items = steps * parts, shares = std::min(threads, items);
  std::vector<double> sums(shares * M * N, 0.0);
  ParallelRows(
      d, shares, 2.0 * M * N * K * steps / shares,
      [&](int64_t begin, int64_t end) {
        for (int64_t share = begin; share < end; ++share) {
          for (int64_t i = items * share / shares; i < items * (share + 1) / shares; ++i) {
            const int64_t s = i / parts, part = i % parts;
            const int64_t k0 = K * part / parts, k1 = K * (part + 1) / parts;
            WeightGradRowsOnThisThread(M, N, k1 - k0, A + s * a_step + k0 * lda, lda,
                                       B + s * b_step + k0 * ldb, ldb, sums.data() + share * M * N);
          }
        }
      },
      kWgradStepsMinFlops);
  AddWeightGradSums(M, N, WeightGradSumsTransposed(M, N), sums.data(), shares, M * N, C, ldc);
}

// One of the products of AddMaskedWeightGrads: C[M, N] += Aᵀ · (B ⊙ mask), as
// AddWeightGradStrided's.
struct MaskedWeightGrad {
  const float* A;
  const float* B;
  double* C;
  WgradRowMask mask;
};

// AddWeightGradStrided(d, M, N, K, p.A, lda, p.B, p.C, 0, 0, &p.mask) for each p of `products`, in
// one dispatch whose items are all the products' panels: a thread's share is whole products and
// at most two parts of others, so the threads pack each masked B (a pass over it from memory) 4
// times for 3 products rather than 6, and meet once rather than 3 times. (Product by product, a
// GRU + recurrent dropout chunk's 3 gates, 256 x 256 over 512 rows on 2 threads, ran at 73
// GFLOP/s a core, this way at 105; docs/PERFORMANCE.md item 99.) Products of fewer panels than
// twice the threads go one at a time, where AddWeightGradStrided splits their rows of K too.
inline void AddMaskedWeightGrads(const CPUDevice& d, int64_t M, int64_t N, int64_t K, int64_t lda,
                                 const MaskedWeightGrad* products, int count) {
  const int64_t panels = (M + kNr - 1) / kNr;
  if (WeightGradKParts(d.numThreads(), panels, K) > 1) {
    for (int i = 0; i < count; ++i) {
      const MaskedWeightGrad& p = products[i];
      AddWeightGradStrided(d, M, N, K, p.A, lda, p.B, p.C, /*ldc=*/0, /*ldb=*/0, &p.mask);
    }
    return;
  }
  // Item i: product i / panels, its panel i % panels.
  ParallelRows(d, count * panels, 2.0 * kNr * N * K, [&](int64_t begin, int64_t end) {
    ForEachPanelRun(begin, end, panels, [&](int64_t product, int64_t first, int64_t last) {
      const MaskedWeightGrad& p = products[product];
      GemmTransposedA(N, K, p.A, lda, p.B, N, p.C, N, first * kNr, std::min(M, last * kNr),
                      &p.mask);
    });
  });
}

template <>
inline void AddWeightGrad<float>(const CPUDevice& d, int64_t M, int64_t N, int64_t K,
                                 const float* A, const float* B, double* C) {
  AddWeightGradStrided(d, M, N, K, A, M, B, C);
}

// Rows [m, m + kRows) of AddOuterProducts' C: each block of two packets' columns of those rows
// summed in registers over the K rows of A and B, then stored (or added to C) once: the K rows'
// sum is its own, rounded once into C, as a run of the double sums is (cpu_gemm.h's
// WeightGradsInT).
template <typename T, int kRows>
void AddOuterProductRows(int64_t m, int64_t lda, int64_t N, int64_t K, const T* A, const T* B,
                         int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  using P = typename Eigen::internal::packet_traits<T>::type;
  constexpr int64_t kP = Eigen::internal::packet_traits<T>::size;
  int64_t j0 = 0;
  for (; j0 + 2 * kP <= N; j0 += 2 * kP) {
    P sum[kRows][2];
    for (int r = 0; r < kRows; ++r) {
      sum[r][0] = sum[r][1] = Eigen::internal::pset1<P>(T(0));
    }
    for (int64_t k = 0; k < K; ++k) {
      const T* b = B + k * ldb + j0;
      const P b0 = Eigen::internal::ploadu<P>(b), b1 = Eigen::internal::ploadu<P>(b + kP);
      const T* a = A + k * lda + m;
      for (int r = 0; r < kRows; ++r) {
        const P ar = Eigen::internal::pset1<P>(a[r]);
        sum[r][0] = Eigen::internal::pmadd(ar, b0, sum[r][0]);
        sum[r][1] = Eigen::internal::pmadd(ar, b1, sum[r][1]);
      }
    }
    for (int r = 0; r < kRows; ++r) {
      T* c = C + (m + r) * ldc + j0;
      if (accumulate) {
        sum[r][0] = Eigen::internal::padd(Eigen::internal::ploadu<P>(c), sum[r][0]);
        sum[r][1] = Eigen::internal::padd(Eigen::internal::ploadu<P>(c + kP), sum[r][1]);
      }
      Eigen::internal::pstoreu(c, sum[r][0]);
      Eigen::internal::pstoreu(c + kP, sum[r][1]);
    }
  }
  for (int r = 0; r < kRows; ++r) {  // the last columns
    for (int64_t j = j0; j < N; ++j) {
      T sum = T(0);
      for (int64_t k = 0; k < K; ++k) sum += A[k * lda + m + r] * B[k * ldb + j];
      C[(m + r) * ldc + j] = accumulate ? C[(m + r) * ldc + j] + sum : sum;
    }
  }
}

// C[M, N] (+)= Aᵀ · B for few rows K (the weight gradients of a call of a step or a few: a sum of
// K outer products), A [K, M], B and C row-major, their rows lda, ldb and ldc apart (a column
// block of wider rows, in place). C is written once, four rows by two packets at a time. Eigen's
// contraction ran these shapes 1.2-7x slower in the AVX-512 build (K = 1, [1024, 3072]: 1.7 against
// 0.15 ms; its C rows 12 or 16 KB apart), and up to K = 8 in both builds (docs/PERFORMANCE.md,
// item 58).
constexpr int64_t kOuterProductMaxRows = 8;
template <typename T>
void AddOuterProducts(const CPUDevice& d, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
                      const T* B, int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  constexpr int kRows = 4;
  const int64_t blocks = (M + kRows - 1) / kRows;
  ParallelRows(d, blocks, 2.0 * kRows * N * std::max<int64_t>(K, 1), [&](int64_t p0, int64_t p1) {
    for (int64_t m = p0 * kRows; m < std::min(M, p1 * kRows);) {
      if (m + kRows <= M) {
        AddOuterProductRows<T, kRows>(m, lda, N, K, A, B, ldb, C, ldc, accumulate);
        m += kRows;
      } else {
        AddOuterProductRows<T, 1>(m, lda, N, K, A, B, ldb, C, ldc, accumulate);
        m += 1;
      }
    }
  });
}

// C[M, N] (+)= Aᵀ · B over the K rows of A [K, M] and B [K, N], summed in T (where
// WeightGradsInT allows), B's and C's rows ldb and ldc apart (0: N; a gate's or product's columns
// of a gradient in Keras' layout, in place), A's lda apart (0: M; one step's rows of a
// batch-major input): few rows as outer products (AddOuterProducts); more, for float, on the
// packed kernel in runs of kWgradSubK rows, each added to C as a whole
// (GemmTransposedAFloatRuns, C's columns split across threads); for double by Eigen's product,
// or (strided) as outer products.
template <typename T>
void WeightGradInT(const CPUDevice& d, int64_t M, int64_t N, int64_t K, const T* A, const T* B,
                   T* C, bool accumulate, int64_t ldb = 0, int64_t ldc = 0, int64_t lda = 0) {
  lda = lda ? lda : M;
  ldb = ldb ? ldb : N;
  ldc = ldc ? ldc : N;
  if constexpr (std::is_same<T, float>::value) {
    if (K > kOuterProductMaxRows) {
      const int64_t panels = (N + kNr - 1) / kNr;
      ParallelRows(d, panels, 2.0 * kNr * M * K, [&](int64_t begin, int64_t end) {
        GemmTransposedAFloatRuns(M, K, B, ldb, A, lda, C, ldc, begin * kNr, std::min(N, end * kNr),
                                 accumulate);
      });
      return;
    }
  } else {
    if (K > kOuterProductMaxRows && lda == M && ldb == N && ldc == N) {
      CpuGemm<T>(d, true, false, M, N, K, A, B, C, accumulate);
      return;
    }
  }
  AddOuterProducts(d, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

// out[r, ·] = the sums' column r in T, for r < n: `sums` [blocks·width, lds] (a weight gradient's
// double sums, transposed), out [n, ldo], the sums' row block g (`width` rows) into out's column
// block block_dst[g] (null: g). Eight output rows at a time, so that each sums row read is one
// cache line (docs/PERFORMANCE.md, item 55), on all threads.
template <typename S, typename T>
void WriteTransposedSums(const CPUDevice& d, const S* sums, int64_t lds, int64_t n, int64_t blocks,
                         int64_t width, const int* block_dst, T* out, int64_t ldo) {
  constexpr int64_t kRows = 8;
  ParallelRows(
      d, (n + kRows - 1) / kRows, 2.0 * kRows * blocks * width,
      [&](int64_t p0, int64_t p1) {
        for (int64_t r0 = p0 * kRows; r0 < std::min(n, p1 * kRows); r0 += kRows) {
          const int64_t r1 = std::min(n, r0 + kRows);
          for (int64_t g = 0; g < blocks; ++g) {
            T* to = out + (block_dst ? block_dst[g] : g) * width;
            for (int64_t j = 0; j < width; ++j) {
              const S* src = sums + (g * width + j) * lds;
              for (int64_t r = r0; r < r1; ++r) to[r * ldo + j] = static_cast<T>(src[r]);
            }
          }
        }
      },
      kCopyMinFlops);
}

// Column sums of a row-major [rows, cols] matrix, added into out[cols] (in out's type), blocks of
// columns split across threads (on one thread, the bias gradients of an LSTM(128) training step at
// B = 1024, T = 8 took 1.7 of its 57 ms).
template <typename T, typename S>
void AddColumnSums(const CPUDevice& d, int64_t rows, int64_t cols, const T* m, S* out) {
  if constexpr (std::is_same<T, float>::value && std::is_same<S, double>::value) {
    // (a row of a few values: a sum per column through memory made a chain of each row's adds)
    if (NarrowWeightGradFits(1, cols)) {
      NarrowWeightGrad(d, 1, cols, rows, nullptr, 0, m, cols, out, cols);
      return;
    }
  }
  constexpr int64_t kCols = 64;
  ParallelRows(
      d, (cols + kCols - 1) / kCols, 2.0 * rows * kCols,
      [&](int64_t c0, int64_t c1) {
        const int64_t j0 = c0 * kCols, j1 = std::min(cols, c1 * kCols);
        for (int64_t r = 0; r < rows; ++r) {
          const T* row = m + r * cols;
          for (int64_t j = j0; j < j1; ++j) out[j] += static_cast<S>(row[j]);
        }
      },
      kCopyMinFlops);
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_CPU_GEMM_H_
