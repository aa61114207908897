// Internal to the CUDA fused RNN (fused_rnn_cuda*.cu.cc): the problem's sizes and the layouts of
// the reserve (forward to backprop) and of the forward and backprop workspaces, each a template
// over the cell (cc/cells/rnn_cells.h) whose saved buffers and state tuple they hold. Carving with
// a null base only sizes them (fused_rnn_cuda_checks.cu.cc).
//
// Sequence buffers share one row order: row(t, b) = t·B + b (time-major) or b·T + t (batch-major).
// Per-direction buffers are stacked [dirs, ...] so that one strided-batched GEMM and one kernel
// launch serve both directions of a layer.
#ifndef TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_LAYOUT_H_
#define TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_LAYOUT_H_

#include <cstdint>
#include <vector>

#include "cc/cells/rnn_cells.h"
#include "cc/cuda/cuda_util.h"
#include "cc/cuda/fused_rnn_cuda.h"

namespace tf_rnn_ops {
namespace cuda {

struct Dims {
  int64_t T, B, H, Hout, G, GH, dirs, L, outw, rows;
  int64_t ts, bs;  // row(t, b) = t·ts + b·bs
  bool proj;
  explicit Dims(const RnnConfig& c)
      : T(c.max_time),
        B(c.batch),
        H(c.shape.num_units),
        Hout(c.shape.h_out()),
        G(c.shape.gates()),
        GH(c.shape.gates() * c.shape.num_units),
        dirs(c.shape.num_dirs),
        L(c.shape.num_layers),
        outw(c.shape.output_size()),
        rows(c.max_time * c.batch),
        ts(c.time_major ? c.batch : 1),
        bs(c.time_major ? 1 : c.max_time),
        proj(c.shape.num_proj > 0) {}
};

// Reserve (training): what the backprop reads, per layer l.
template <typename T, typename Cell>
struct ReserveLayout {
  std::vector<T*> x_in;        // l >= 1: the layer's input (after dropout) [rows, outw]
  std::vector<uint8_t*> mask;  // l >= 1 with dropout: the dropout mask of that input [rows, outw]
  // The cell's saved buffers (Cell::kSaved; buffer 0 the gate activations), each
  // [dirs, rows, width], block g of a record at g·H.
  std::vector<T*> saved[Cell::kNumSaved];
  std::vector<T*> hprev;  // the state each step read [dirs, rows, Hout]
  std::vector<T*> cprev;  // cells with a cell state: c_{t-1} [dirs, rows, H]
  std::vector<T*> m;      // with projection: m_t [dirs, rows, H]
  size_t bytes = 0;

  static ReserveLayout Carve(const RnnConfig& config, void* base) {
    ReserveLayout r;
    if (!config.is_training) return r;
    const Dims D(config);
    const bool dropout = RnnUsesDropout(config);
    Carver carver(base);
    for (int64_t l = 0; l < D.L; ++l) {
      r.x_in.push_back(l > 0 ? carver.Take<T>(D.rows * D.outw) : nullptr);
      r.mask.push_back(l > 0 && dropout ? carver.Take<uint8_t>(D.rows * D.outw) : nullptr);
      for (int k = 0; k < Cell::kNumSaved; ++k) {
        r.saved[k].push_back(carver.Take<T>(D.dirs * D.rows * Cell::kSaved[k].Width(D.H)));
      }
      r.hprev.push_back(carver.Take<T>(D.dirs * D.rows * D.Hout));
      r.cprev.push_back(Cell::kHasCellState ? carver.Take<T>(D.dirs * D.rows * D.H) : nullptr);
      r.m.push_back(D.proj ? carver.Take<T>(D.dirs * D.rows * D.H) : nullptr);
    }
    r.bytes = carver.size();
    return r;
  }
};

template <typename T, typename Cell>
struct ForwardWorkspace {
  int32_t* lens;  // [B]
  T* gx;          // [dirs, rows, GH] input projections of one layer
  T* gh;          // [dirs, B, GH] recurrent product of one step
  T* h[2];        // [dirs, B, Hout] state before / after a step
  T* c[2];        // cells with a cell state: [dirs, B, H]
  T* m_step;      // with projection: [dirs, B, H]
  T* hp;          // with projection: [dirs, B, Hout]
  T* layer[2];    // outputs of the layers below the last: [rows, outw]
  // Cells with several recurrent products a step (CellRecurrentProducts > 1):
  T* rec_in;  // [dirs, B, Hout] the next product's input, as the previous phase passed it on
  // in inference, the step's saved buffers ([dirs, B, width] each), which a later phase reads back
  // (in training they go to the reserve)
  T* step_saved[Cell::kNumSaved];
  size_t bytes = 0;

  static ForwardWorkspace Carve(const RnnConfig& config, void* base) {
    const Dims D(config);
    const RnnModelShape& sh = config.shape;
    ForwardWorkspace w;
    Carver carver(base);
    w.lens = carver.Take<int32_t>(D.B);
    // Only a single skip_input layer has no input projection at all.
    const bool any_input_weights = sh.HasInputWeights(sh.num_layers - 1);
    w.gx = any_input_weights ? carver.Take<T>(D.dirs * D.rows * D.GH) : nullptr;
    w.gh = carver.Take<T>(D.dirs * D.B * D.GH);
    for (int k = 0; k < 2; ++k) {
      w.h[k] = carver.Take<T>(D.dirs * D.B * D.Hout);
      w.c[k] = Cell::kHasCellState ? carver.Take<T>(D.dirs * D.B * D.H) : nullptr;
    }
    w.m_step = D.proj ? carver.Take<T>(D.dirs * D.B * D.H) : nullptr;
    w.hp = D.proj ? carver.Take<T>(D.dirs * D.B * D.Hout) : nullptr;
    const int num_layer_buffers =
        D.L < 2 ? 0 : (!config.is_training ? 2 : (RnnUsesDropout(config) ? 1 : 0));
    for (int k = 0; k < 2; ++k) {
      w.layer[k] = k < num_layer_buffers ? carver.Take<T>(D.rows * D.outw) : nullptr;
    }
    const bool phased = CellRecurrentProducts<Cell>::value > 1;
    w.rec_in = phased ? carver.Take<T>(D.dirs * D.B * D.Hout) : nullptr;
    for (int k = 0; k < Cell::kNumSaved; ++k) {
      w.step_saved[k] = phased && !config.is_training
                            ? carver.Take<T>(D.dirs * D.B * Cell::kSaved[k].Width(D.H))
                            : nullptr;
    }
    w.bytes = carver.size();
    return w;
  }
};

template <typename T, typename Cell>
struct BackwardWorkspace {
  int32_t* lens;  // [B]
  T* d_gx;        // [dirs, rows, GH] grads of the input projections (= of the biases b_W)
  T* d_gh;        // [dirs, rows, GH] grads of the recurrent products: a buffer of its own for
                  // cells with kDistinctRecurrentGrad, else d_gx
  T* d_gh_step;   // [dirs, B, GH] d_gh of one step, packed for the step's GEMM
  T* dh[2];       // [dirs, B, Hout] grad of the state after / before a step
  T* dc;          // cells with a cell state: [dirs, B, H]
  T* dhtot_step;  // with projection: [dirs, B, Hout] grad of h at one step
  T* dm_step;     // with projection: [dirs, B, H]
  T* dhtot;       // with projection: [dirs, rows, Hout] grad of h at every step (for dP)
  T* grad[2];     // grads of the layers' inputs above layer 0: [rows, outw]
  T* ones;        // [rows]
  T* d_rec_in;    // several products a step: [dirs, B, Hout] the grad of a product's input
  size_t bytes = 0;

  static BackwardWorkspace Carve(const RnnConfig& config, void* base) {
    const Dims D(config);
    BackwardWorkspace w;
    Carver carver(base);
    w.lens = carver.Take<int32_t>(D.B);
    w.d_gx = carver.Take<T>(D.dirs * D.rows * D.GH);
    w.d_gh = Cell::kDistinctRecurrentGrad ? carver.Take<T>(D.dirs * D.rows * D.GH) : w.d_gx;
    w.d_gh_step = carver.Take<T>(D.dirs * D.B * D.GH);
    for (int k = 0; k < 2; ++k) w.dh[k] = carver.Take<T>(D.dirs * D.B * D.Hout);
    w.dc = Cell::kHasCellState ? carver.Take<T>(D.dirs * D.B * D.H) : nullptr;
    w.dhtot_step = D.proj ? carver.Take<T>(D.dirs * D.B * D.Hout) : nullptr;
    w.dm_step = D.proj ? carver.Take<T>(D.dirs * D.B * D.H) : nullptr;
    w.dhtot = D.proj ? carver.Take<T>(D.dirs * D.rows * D.Hout) : nullptr;
    for (int k = 0; k < 2; ++k) w.grad[k] = D.L > 1 ? carver.Take<T>(D.rows * D.outw) : nullptr;
    w.ones = carver.Take<T>(D.rows);
    w.d_rec_in =
        CellRecurrentProducts<Cell>::value > 1 ? carver.Take<T>(D.dirs * D.B * D.Hout) : nullptr;
    w.bytes = carver.size();
    return w;
  }
};

}  // namespace cuda
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CUDA_FUSED_RNN_CUDA_LAYOUT_H_
