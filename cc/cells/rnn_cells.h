// The fused RNN's cells, each defined once (docs/MATH.md, "Fused RNN cells"): rnn_relu, rnn_tanh,
// lstm, gru. The CPU driver (cc/kernels/rnn_cpu_driver.h), the reserve-space and workspace layouts,
// the params sizes (cc/kernels/rnn_params.h) and the CUDA kernels all read these definitions; the
// only place that maps an RnnMode to its cell type is DispatchCell below.
//
// Framework-free (plain C++17; every function is TF_RNN_OPS_HOST_DEVICE): usable from g++ and nvcc.
//
// What every cell sees, for one batch row at one step, gate after gate, each gate H = num_units
// wide, in cuDNN's gate order (rnn_relu / rnn_tanh: [h]; lstm: [i, f, c, o]; gru: [r, z, h]):
//   X(g) = (W x_t + b_W)_g      the input side (hoisted: all steps of a chunk in one product)
//   R(g) = (R h_{t-1} + b_R)_g  the recurrent side (one product a step)
// ----------------------------------------------------------------------------- a cell type states
//   kMode, kName           its rnn_mode value and spelling;
//   kGates                 G, the number of W (and R) matrices per layer and direction;
//   kHasCellState          the state tuple: (h) or (h, c) (c is H wide; h is H_out wide);
//   kSupportsProjection    whether num_proj (a projection P of the output, h = P m) is allowed;
//   kSaved[kNumSaved]      the per-step buffers it saves for backprop, names and widths
//                          (CellBuffer::Width(H)); buffer 0 is always "act", the G gate
//                          activations (G·H wide: the driver computes X in place of them, so a cell
//                          writes act block g at unit j only after reading X(g) at unit j);
//   kCellStateBuffer       the saved buffer holding c after the step (-1: no cell state): backprop
//                          reads c_{t-1} from it;
//   kDistinctRecurrentGrad whether the grads of R(g) differ from those of X(g) (gru: the reset gate
//                          scales the candidate's recurrent part); else one buffer serves both;
//   kDirectHPrevGrad       whether dh_{t-1} has a part not passing through R (gru: z dh);
//   Forward(io), Backward(io)  the element-wise step for one unit j (or a vector of units) of a
//                          row.
// ------------------------------------------------------------------------------------- the io
// Forward and Backward are templates over an io object that the caller provides; `typename
// Io::Value` is the value type V (T for one unit: UnitForwardIo / UnitBackwardIo in unit_io.h, used
// by the CUDA kernels; a CPU SIMD vector of consecutive units in cc/kernels/cpu_cell_io.h). The
// calls a cell may make (g: gate, k: saved buffer, block g of it):
//   forward:  V X(g), V R(g), V HPrev(), V CPrev();  SetH(V) (the output: h, or m before the
//             projection), SetC(V), Save(k, g, V)
//   backward: V Saved(k, g), V HPrev(), V CPrev(), V Dh() (grad of the output), V Dc() (grad of c
//             from the later steps);  SetDx(g, V) (grad of X(g)), SetDr(g, V) (grad of R(g), only
//             with kDistinctRecurrentGrad), SetDcPrev(V), SetDhDirect(V) (only with
//             kDirectHPrevGrad)
// An io may drop saves (inference). The driver owns the products, the states, the layouts and the
// threading, and asks nothing else of a cell.
// --------------------------------------------------------- how the next cells plug in (issue 20)
//   * Cells with several recurrent products a step (GruResetBeforeCell below, Keras'
//     reset_after=False: (r ⊙ h_{t-1}) U_h needs r first) state kRecurrentProducts, the gate range
//     of each product (kProductGates) and its input (kProductInput: h_{t-1}, or a saved buffer that
//     the previous phase wrote), and ForwardPhase<p>(io) / BackwardPhase<p>(io) in place of
//     Forward / Backward. Phase p reads R(g) of its own gates only (and may read back what earlier
//     phases saved: io.Saved(k, g)); it passes the next product's input on with
//     io.SetRecurrentInput(V). The CPU driver (rnn_cpu_driver.h, PhaseProducts) runs, for p in
//     [0, kRecurrentProducts), product p then phase p; backward from the last phase down, phase p
//     reading the grad of the input it passed on as io.DRecurrentInput(). Every other cell is one
//     phase (CellRecurrentProducts: 1). The CUDA driver (cc/cuda/fused_rnn_cuda.cu.cc) runs the
//     same sequence: per product a GEMM on R's gate block, then the phase's kernel.
//   * Recurrent dropout (Keras: a mask per gate on h_{t-1} before each gate's recurrent product):
//     a driver option, not a cell: with kRecurrentProducts = G it becomes G products over masked
//     copies of h_{t-1}, the masks a saved buffer of the step ("rec_mask", width G·H_out, drawn
//     once per call); the cell's element-wise math does not change.
//   * Zoneout (haste: on h only, h_t = h_{t-1} + m ⊙ (h~_t - h_{t-1}); cc/cells/zoneout.h): a
//     driver pass after the cell's step, the mask an op input [T, B, H] (or one keep value in
//     inference), not a saved buffer; Backward is unchanged and the driver splits dh by the mask.
//   * Layer-norm cells: normalise a row's whole gate vector (a reduction over G·H) before the
//     gates. The cell would state kRowPrepass = true and a PrepareRow(row) hook that the driver
//     calls once per row before Forward's unit loop (and its grad after Backward's), with γ/β as
//     extra params (rnn_params.h's Block gets the cell's extra param blocks) and the row statistics
//     a saved buffer of fixed width (CellBuffer::fixed, e.g. {"ln_stats", 0, 4}).
#ifndef TF_RNN_OPS_CC_CELLS_RNN_CELLS_H_
#define TF_RNN_OPS_CC_CELLS_RNN_CELLS_H_

#include <cstdint>
#include <type_traits>

#include "cc/cells/cell_math.h"

namespace tf_rnn_ops {

// A per-step buffer a cell saves for backprop: `h_units` · H + `fixed` values a batch row.
struct CellBuffer {
  const char* name;
  int h_units;
  int fixed;
  TF_RNN_OPS_HOST_DEVICE constexpr int64_t Width(int64_t H) const { return h_units * H + fixed; }
};

// The largest kNumSaved of the cells (fixed-size arrays of buffer pointers in the ios).
constexpr int kMaxCellSaved = 2;

// ---------------------------------------------------------------------------------- simple RNN
// h = act(X + R), act = relu or tanh. Saves the activation (h itself).
template <bool kRelu>
struct SimpleRnnCell {
  static constexpr RnnMode kMode = kRelu ? RnnMode::kRnnRelu : RnnMode::kRnnTanh;
  static constexpr const char* kName = kRelu ? "rnn_relu" : "rnn_tanh";
  static constexpr int kGates = 1;
  static constexpr bool kHasCellState = false;
  static constexpr bool kSupportsProjection = false;
  enum : int { kAct = 0, kNumSaved = 1 };
  static constexpr CellBuffer kSaved[kNumSaved] = {{"act", kGates, 0}};
  static constexpr int kCellStateBuffer = -1;
  static constexpr bool kDistinctRecurrentGrad = false;
  static constexpr bool kDirectHPrevGrad = false;

  template <typename Io>
  TF_RNN_OPS_HOST_DEVICE static void Forward(Io& io) {
    using V = typename Io::Value;
    const V a = io.X(0) + io.R(0);
    V h;
    if constexpr (kRelu) {
      h = Relu(a);
    } else {
      h = Tanh(a);
    }
    io.Save(kAct, 0, h);
    io.SetH(h);
  }

  template <typename Io>
  TF_RNN_OPS_HOST_DEVICE static void Backward(Io& io) {
    using V = typename Io::Value;
    const V h = io.Saved(kAct, 0);
    if constexpr (kRelu) {
      io.SetDx(0, ReluGrad(h, io.Dh()));
    } else {
      io.SetDx(0, io.Dh() * (V(1) - h * h));
    }
  }
};
using RnnReluCell = SimpleRnnCell<true>;
using RnnTanhCell = SimpleRnnCell<false>;

// ---------------------------------------------------------------------------------------- LSTM
// Gates i, f, c, o:  i = σ(.), f = σ(.), g = tanh(.), o = σ(.);  c = f c_prev + i g;  m = o tanh(c)
// (m is h, or is projected: h = P m). Saves the four activations and c.
struct LstmCell {
  static constexpr RnnMode kMode = RnnMode::kLstm;
  static constexpr const char* kName = "lstm";
  static constexpr int kGates = 4;
  static constexpr bool kHasCellState = true;
  static constexpr bool kSupportsProjection = true;
  enum : int { kAct = 0, kC = 1, kNumSaved = 2 };
  static constexpr CellBuffer kSaved[kNumSaved] = {{"act", kGates, 0}, {"c", 1, 0}};
  static constexpr int kCellStateBuffer = kC;
  static constexpr bool kDistinctRecurrentGrad = false;
  static constexpr bool kDirectHPrevGrad = false;

  template <typename Io>
  TF_RNN_OPS_HOST_DEVICE static void Forward(Io& io) {
    using V = typename Io::Value;
    const V i = Sigmoid(io.X(0) + io.R(0));
    io.Save(kAct, 0, i);
    const V f = Sigmoid(io.X(1) + io.R(1));
    io.Save(kAct, 1, f);
    const V g = Tanh(io.X(2) + io.R(2));
    io.Save(kAct, 2, g);
    const V o = Sigmoid(io.X(3) + io.R(3));
    io.Save(kAct, 3, o);
    const V c = f * io.CPrev() + i * g;
    io.Save(kC, 0, c);
    io.SetC(c);
    io.SetH(o * Tanh(c));
  }

  template <typename Io>
  TF_RNN_OPS_HOST_DEVICE static void Backward(Io& io) {
    using V = typename Io::Value;
    const V i = io.Saved(kAct, 0), f = io.Saved(kAct, 1), g = io.Saved(kAct, 2);
    const V o = io.Saved(kAct, 3);
    const V tc = Tanh(io.Saved(kC, 0));
    const V dm = io.Dh();
    const V dc = io.Dc() + dm * o * (V(1) - tc * tc);  // the grad of c after this step, in full
    io.SetDx(0, dc * g * i * (V(1) - i));
    io.SetDx(1, dc * io.CPrev() * f * (V(1) - f));
    io.SetDx(2, dc * i * (V(1) - g * g));
    io.SetDx(3, dm * tc * o * (V(1) - o));
    io.SetDcPrev(dc * f);
  }
};

// ----------------------------------------------------------------------------------------- GRU
// Gates r, z, h; cuDNN's form, the reset gate applied after the recurrent product:
//   r = σ(.), z = σ(.), n = tanh(X_h + r R_h);  h = (1 - z) n + z h_prev.
// Saves r, z, n and R_h (the recurrent part of the candidate, needed for dr).
struct GruCell {
  static constexpr RnnMode kMode = RnnMode::kGru;
  static constexpr const char* kName = "gru";
  static constexpr int kGates = 3;
  static constexpr bool kHasCellState = false;
  static constexpr bool kSupportsProjection = false;
  enum : int { kAct = 0, kGhn = 1, kNumSaved = 2 };
  static constexpr CellBuffer kSaved[kNumSaved] = {{"act", kGates, 0}, {"ghn", 1, 0}};
  static constexpr int kCellStateBuffer = -1;
  static constexpr bool kDistinctRecurrentGrad = true;
  static constexpr bool kDirectHPrevGrad = true;

  template <typename Io>
  TF_RNN_OPS_HOST_DEVICE static void Forward(Io& io) {
    using V = typename Io::Value;
    const V r = Sigmoid(io.X(0) + io.R(0));
    io.Save(kAct, 0, r);
    const V z = Sigmoid(io.X(1) + io.R(1));
    io.Save(kAct, 1, z);
    const V ghn = io.R(2);
    const V n = Tanh(io.X(2) + r * ghn);
    io.Save(kAct, 2, n);
    io.Save(kGhn, 0, ghn);
    io.SetH((V(1) - z) * n + z * io.HPrev());
  }

  template <typename Io>
  TF_RNN_OPS_HOST_DEVICE static void Backward(Io& io) {
    using V = typename Io::Value;
    const V r = io.Saved(kAct, 0), z = io.Saved(kAct, 1), n = io.Saved(kAct, 2);
    const V dh = io.Dh();
    const V dn = dh * (V(1) - z) * (V(1) - n * n);
    const V dz = dh * (io.HPrev() - n) * z * (V(1) - z);
    const V dr = dn * io.Saved(kGhn, 0) * r * (V(1) - r);
    io.SetDx(0, dr);
    io.SetDr(0, dr);
    io.SetDx(1, dz);
    io.SetDr(1, dz);
    io.SetDx(2, dn);
    io.SetDr(2, dn * r);
    io.SetDhDirect(dh * z);
  }
};

// ------------------------------------------------------------------------- GRU, reset before
// Gates r, z, h; Keras' reset_after=False form (GRUBlockCell's math), the reset gate applied to the
// state before the candidate's recurrent product:
//   r = σ(X_r + R_r), z = σ(X_z + R_z), n = tanh(X_h + (r ⊙ h_prev) U_h + b_Rh);
//   h = (1 - z) n + z h_prev.
// Two recurrent products a step (kRecurrentProducts): phase 0 multiplies h_prev by R's [r, z]
// blocks and computes r, z and r ⊙ h_prev (the input of the next product, also saved as "rh" for
// dU_h); phase 1 multiplies r ⊙ h_prev by U_h and finishes the step. The grads of R(g) are those of
// X(g) (one buffer); dh_prev = z dh + r ⊙ d(r ⊙ h_prev) + the product through [U_r, U_z].
struct GruResetBeforeCell {
  static constexpr RnnMode kMode = RnnMode::kGruResetBefore;
  static constexpr const char* kName = "gru_reset_before";
  static constexpr int kGates = 3;
  static constexpr bool kHasCellState = false;
  static constexpr bool kSupportsProjection = false;
  enum : int { kAct = 0, kRh = 1, kNumSaved = 2 };
  static constexpr CellBuffer kSaved[kNumSaved] = {{"act", kGates, 0}, {"rh", 1, 0}};
  static constexpr int kCellStateBuffer = -1;
  static constexpr bool kDistinctRecurrentGrad = false;
  static constexpr bool kDirectHPrevGrad = true;
  // The products of a step: product p covers gates [kProductGates[p], kProductGates[p + 1]) of R
  // and multiplies h_prev (p = 0) or the saved buffer kProductInput[p] (what phase p - 1 passed on
  // through SetRecurrentInput).
  static constexpr int kRecurrentProducts = 2;
  static constexpr int kProductGates[kRecurrentProducts + 1] = {0, 2, 3};
  static constexpr int kProductInput[kRecurrentProducts] = {-1, kRh};

  template <int kPhase, typename Io>
  TF_RNN_OPS_HOST_DEVICE static void ForwardPhase(Io& io) {
    using V = typename Io::Value;
    if constexpr (kPhase == 0) {
      const V r = Sigmoid(io.X(0) + io.R(0));
      io.Save(kAct, 0, r);
      io.Save(kAct, 1, Sigmoid(io.X(1) + io.R(1)));
      const V rh = r * io.HPrev();
      io.Save(kRh, 0, rh);
      io.SetRecurrentInput(rh);
    } else {
      const V z = io.Saved(kAct, 1);
      const V n = Tanh(io.X(2) + io.R(2));
      io.Save(kAct, 2, n);
      io.SetH((V(1) - z) * n + z * io.HPrev());
    }
  }

  // From the last phase down: phase 1 the grads of the candidate and of z; phase 0, given the grad
  // of r ⊙ h_prev (DRecurrentInput, the product of phase 1's grads with U_h), those of r and
  // h_prev.
  template <int kPhase, typename Io>
  TF_RNN_OPS_HOST_DEVICE static void BackwardPhase(Io& io) {
    using V = typename Io::Value;
    const V z = io.Saved(kAct, 1);
    const V dh = io.Dh();
    if constexpr (kPhase == 1) {
      const V n = io.Saved(kAct, 2);
      io.SetDx(2, dh * (V(1) - z) * (V(1) - n * n));
      io.SetDx(1, dh * (io.HPrev() - n) * z * (V(1) - z));
    } else {
      const V r = io.Saved(kAct, 0);
      const V drh = io.DRecurrentInput();
      io.SetDx(0, drh * io.HPrev() * r * (V(1) - r));
      io.SetDhDirect(dh * z + drh * r);
    }
  }
};

// The number of recurrent products in a cell's step: its kRecurrentProducts, else 1 (the whole
// [G·H] product on h_prev, then Forward / Backward).
template <typename Cell, typename = void>
struct CellRecurrentProducts : std::integral_constant<int, 1> {};
template <typename Cell>
struct CellRecurrentProducts<Cell, std::void_t<decltype(Cell::kRecurrentProducts)>>
    : std::integral_constant<int, Cell::kRecurrentProducts> {};

// Calls fn(std::integral_constant<int, P>()) for P == p, p in [0, N).
template <int N, int P = 0, typename Fn>
TF_RNN_OPS_HOST_DEVICE void WithPhase(int p, Fn&& fn) {
  if constexpr (P < N) {
    if (p == P) {
      fn(std::integral_constant<int, P>());
    } else {
      WithPhase<N, P + 1>(p, fn);
    }
  }
}

// ------------------------------------------------------------------------------ mode -> cell
// Calls fn(Cell()) with the cell type of `mode` and returns its result (every instantiation must
// return the same type). The one place that maps an RnnMode to a cell.
template <typename Fn>
TF_RNN_OPS_HOST_DEVICE constexpr decltype(auto) DispatchCell(RnnMode mode, Fn&& fn) {
  switch (mode) {
    case RnnMode::kRnnRelu:
      return fn(RnnReluCell());
    case RnnMode::kRnnTanh:
      return fn(RnnTanhCell());
    case RnnMode::kLstm:
      return fn(LstmCell());
    case RnnMode::kGruResetBefore:
      return fn(GruResetBeforeCell());
    case RnnMode::kGru:
      break;
  }
  return fn(GruCell());
}

// The facts of a mode's cell, for code that holds the mode at run time.
TF_RNN_OPS_HOST_DEVICE constexpr int NumGates(RnnMode mode) {
  return DispatchCell(mode, [](auto cell) { return decltype(cell)::kGates; });
}
TF_RNN_OPS_HOST_DEVICE constexpr bool CellHasCellState(RnnMode mode) {
  return DispatchCell(mode, [](auto cell) { return decltype(cell)::kHasCellState; });
}
TF_RNN_OPS_HOST_DEVICE constexpr bool CellSupportsProjection(RnnMode mode) {
  return DispatchCell(mode, [](auto cell) { return decltype(cell)::kSupportsProjection; });
}
TF_RNN_OPS_HOST_DEVICE constexpr bool CellHasDistinctRecurrentGrad(RnnMode mode) {
  return DispatchCell(mode, [](auto cell) { return decltype(cell)::kDistinctRecurrentGrad; });
}
TF_RNN_OPS_HOST_DEVICE constexpr int CellRecurrentProductCount(RnnMode mode) {
  return DispatchCell(mode, [](auto cell) { return CellRecurrentProducts<decltype(cell)>::value; });
}
// The rnn_mode attribute's spelling, for messages.
TF_RNN_OPS_HOST_DEVICE constexpr const char* RnnModeName(RnnMode mode) {
  return DispatchCell(mode, [](auto cell) { return decltype(cell)::kName; });
}

}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CELLS_RNN_CELLS_H_
