// The model rules of the fused RNN family in one place, framework-free (no TensorFlow, no CUDA):
// the spelling of the attributes, what a model may be (sizes and their bounds), the sequence and
// buffer bounds, and the messages of every refusal. The CPU OpKernels and the TensorFlow GPU
// kernels (fused_rnn_attrs.h) and the CUDA library with its C API
// (cc/cuda/fused_rnn_cuda_checks.cc) all check with these functions, so the three accept the same
// models and word their errors the same.
//
// A check returns "" when the value is valid, else the message of an invalid-argument error.
// The math and the params layout these sizes describe: docs/MATH.md, "Fused RNN cells" and "Params
// layout"; the sizes themselves come from RnnModelShape (rnn_params.h).
#ifndef TF_RNN_OPS_CC_KERNELS_FUSED_RNN_RULES_H_
#define TF_RNN_OPS_CC_KERNELS_FUSED_RNN_RULES_H_

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <string>

#include "cc/cells/rnn_cells.h"
#include "cc/kernels/rnn_params.h"

namespace tf_rnn_ops {
namespace fused_rnn {

// The most elements any tensor or buffer of the family may have: beyond any memory, and low enough
// that the int64 size and offset arithmetic of the kernels and the drivers cannot overflow.
constexpr double kMaxElements = 4611686018427387904.0;  // 2^62

// The largest product of num_units and the widest layer input or output: every product that
// RnnModelShape::LayerBlock forms is at most that, and a block at most 17 times it, so that the
// size of a block fits int64 and the model size below is LayerBlock's own. A model beyond it would
// have about 2^58 params or more: no memory holds it.
constexpr double kMaxUnitsTimesWidth = 288230376151711744.0;  // 2^58

// input_mode: resolved with the sizes into RnnModelShape::skip_input.
enum class InputMode : int { kLinearInput = 0, kSkipInput = 1, kAutoSelect = 2 };

namespace internal {
inline std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}
inline std::string Num(int64_t v) { return std::to_string(v); }
inline std::string Num(int v) { return std::to_string(v); }
}  // namespace internal

// ---------------------------------------------------------------------------------------------------
// Attribute spellings.

// The spellings are the cells' own (kName, through RnnModeName): every mode of the enum, in order.
inline std::string ParseRnnMode(const std::string& s, RnnMode* mode) {
  std::string all;
  for (int m = 0; m < kNumRnnModes; ++m) {
    const char* name = RnnModeName(static_cast<RnnMode>(m));
    if (s == name) {
      *mode = static_cast<RnnMode>(m);
      return "";
    }
    all += (m == 0 ? "" : m + 1 == kNumRnnModes ? " or " : ", ") + std::string(name);
  }
  return "rnn_mode must be " + all + ", got '" + s + "'";
}

inline std::string ParseInputMode(const std::string& s, InputMode* input_mode) {
  if (s == "linear_input") {
    *input_mode = InputMode::kLinearInput;
  } else if (s == "skip_input") {
    *input_mode = InputMode::kSkipInput;
  } else if (s == "auto_select") {
    *input_mode = InputMode::kAutoSelect;
  } else {
    return "input_mode must be linear_input, skip_input or auto_select, got '" + s + "'";
  }
  return "";
}

inline std::string ParseDirection(const std::string& s, int* num_dirs) {
  if (s == "unidirectional") {
    *num_dirs = 1;
  } else if (s == "bidirectional") {
    *num_dirs = 2;
  } else {
    return "direction must be unidirectional or bidirectional, got '" + s + "'";
  }
  return "";
}

// ---------------------------------------------------------------------------------------------------
// Attribute values.

// As TensorFlow's GPU kernels: any probability in [0, 1]. Dropout acts only in training, between
// layers; at 1 every between-layer input is dropped (as cuDNN does), and the params ops ignore it.
inline std::string CheckDropout(double dropout) {
  if (!(dropout >= 0 && dropout <= 1))
    return "dropout must be in [0, 1], got " + internal::Num(dropout);
  return "";
}

// A training call draws dropout masks only when there is a layer boundary to drop at.
inline bool UsesDropout(bool is_training, double dropout, int64_t num_layers) {
  return is_training && dropout > 0 && num_layers > 1;
}

// num_proj: 0 (no projection) or positive, lstm only; num_units bounds it once known (CheckModel).
inline std::string CheckNumProj(RnnMode mode, int64_t num_proj) {
  if (num_proj < 0) return "num_proj must be >= 0, got " + internal::Num(num_proj);
  if (num_proj > 0 && !CellSupportsProjection(mode)) {
    return "num_proj (" + internal::Num(num_proj) + ") is only supported for rnn_mode lstm";
  }
  return "";
}

// The skip_input rule: the first layer adds its input to every gate instead of multiplying it by W,
// with input_mode skip_input, or auto_select when input_size == num_units. skip_input with other
// sizes is refused (CheckModel).
inline bool ResolveSkipInput(InputMode input_mode, int64_t input_size, int64_t num_units) {
  return input_mode == InputMode::kSkipInput ||
         (input_mode == InputMode::kAutoSelect && input_size == num_units);
}

// ---------------------------------------------------------------------------------------------------
// The model.

// What a model is made of, in the types it is read in (attributes and int64 tensor dimensions).
struct ModelSpec {
  RnnMode mode = RnnMode::kLstm;
  InputMode input_mode = InputMode::kLinearInput;
  int64_t num_dirs = 1;
  int64_t num_layers = 1;
  int64_t num_units = 0;
  int64_t input_size = 0;
  int64_t num_proj = 0;
};

// Every rule of a model: num_layers >= 1, num_units >= 1, input_size >= 1 (as cuDNN: a model reads
// its input), 0 <= num_proj <= num_units (lstm only), one or two directions, skip_input only with
// input_size == num_units, and a size that the params, their canonical lists and the int64 size
// arithmetic can hold. On success fills *shape (skip_input resolved).
inline std::string MakeModelShape(const ModelSpec& m, RnnModelShape* shape) {
  using internal::Num;
  const int mode = static_cast<int>(m.mode);
  if (mode < 0 || mode >= kNumRnnModes) {
    return "unknown rnn_mode " + Num(mode);
  }
  if (m.num_dirs != 1 && m.num_dirs != 2) return "num_dirs must be 1 or 2, got " + Num(m.num_dirs);
  if (m.num_layers < 1) return "num_layers must be >= 1, got " + Num(m.num_layers);
  if (m.num_units < 1) return "num_units must be >= 1, got " + Num(m.num_units);
  if (m.input_size < 1) return "input_size must be >= 1, got " + Num(m.input_size);
  const std::string proj = CheckNumProj(m.mode, m.num_proj);
  if (!proj.empty()) return proj;
  if (m.num_proj > m.num_units) {
    return "num_proj (" + Num(m.num_proj) + ") must not exceed num_units (" + Num(m.num_units) +
           ")";
  }
  // The canonical lists (2 G + 1 tensors per layer and direction at most) must fit an int count.
  const int64_t gates = NumGates(m.mode);
  const int64_t max_layers = INT_MAX / (m.num_dirs * (2 * gates + 1));
  if (m.num_layers > max_layers) {
    return "num_layers (" + Num(m.num_layers) + ") must be at most " + Num(max_layers) +
           " for rnn_mode " + RnnModeName(m.mode) + " and " + Num(m.num_dirs) + " direction(s)";
  }
  auto sizes = [&m] {  // for the messages below only: a valid model builds no string
    return "num_layers (" + Num(m.num_layers) + "), num_units (" + Num(m.num_units) +
           "), input_size (" + Num(m.input_size) + ") and num_proj (" + Num(m.num_proj) + ")";
  };
  const double width = std::max(
      double(m.input_size), double(m.num_dirs) * double(m.num_proj > 0 ? m.num_proj : m.num_units));
  if (double(m.num_units) * width > kMaxUnitsTimesWidth) {
    return sizes() +
           " give a model of about 2^58 params or more: num_units times the widest layer "
           "input or output must be at most 2^58 (a tensor may have at most 2^62 elements)";
  }
  RnnModelShape s;
  s.mode = m.mode;
  s.num_layers = static_cast<int>(m.num_layers);
  s.num_dirs = static_cast<int>(m.num_dirs);
  s.num_units = m.num_units;
  s.num_proj = m.num_proj;
  s.input_size = m.input_size;
  s.skip_input = ResolveSkipInput(m.input_mode, m.input_size, m.num_units);
  // Every layer above the first has the same block; summed in double, as the layers may be many.
  const double size =
      s.num_dirs *
      (double(s.LayerBlock(0).size) +
       (s.num_layers > 1 ? double(s.num_layers - 1) * double(s.LayerBlock(1).size) : 0));
  if (size > kMaxElements) {
    return sizes() + " give a model with about " + Num(size) +
           " params, more than the 2^62 elements a tensor may have";
  }
  if (m.input_mode == InputMode::kSkipInput && m.input_size != m.num_units) {
    return "input_mode skip_input needs input_size (" + Num(m.input_size) + ") == num_units (" +
           Num(m.num_units) + ")";
  }
  *shape = s;
  return "";
}

// The rules of an already resolved shape (the CUDA library's and the C API's input).
inline std::string CheckModelShape(const RnnModelShape& s) {
  ModelSpec m;
  m.mode = s.mode;
  m.input_mode = s.skip_input ? InputMode::kSkipInput : InputMode::kLinearInput;
  m.num_dirs = s.num_dirs;
  m.num_layers = s.num_layers;
  m.num_units = s.num_units;
  m.input_size = s.input_size;
  m.num_proj = s.num_proj;
  RnnModelShape unused;
  return MakeModelShape(m, &unused);
}

// ---------------------------------------------------------------------------------------------------
// Sequences and buffers.

// One row's length: in [0, seq_len].
inline std::string CheckSequenceLength(int64_t b, int64_t len, int64_t seq_len) {
  if (len < 0 || len > seq_len) {
    return "sequence_lengths[" + internal::Num(b) + "] = " + internal::Num(len) +
           " is outside [0, " + internal::Num(seq_len) + "] (the number of time steps)";
  }
  return "";
}

// Whether every one of batch lengths is seq_len. Such lengths are passed on as none, a call with an
// all-true mask being one without: the kernels' full-row paths (rnn_cpu_driver.h: states read in
// place, single-gate cells' flat rows, one-unit cells' unit rows) then take it.
inline bool AllSequencesFull(const int32_t* len, int64_t batch, int64_t seq_len) {
  for (int64_t b = 0; b < batch; ++b) {
    if (len[b] != seq_len) return false;
  }
  return true;
}

// Whether the outputs, reserve_space and scratch of a call over seq_len x batch stay below
// kMaxElements (and so the int64 size arithmetic far from overflow): a generous bound of every
// buffer of the CPU driver and of the CUDA library, per row of the sequence and per layer.
inline bool BuffersFit(const RnnModelShape& s, int64_t seq_len, int64_t batch) {
  const double g = s.gates(), h = s.num_units, ho = s.h_out();
  const double ow = s.output_size(), ld = double(s.num_layers) * s.num_dirs;
  const double in = s.input_size > ow ? double(s.input_size) : ow;
  const double rows = double(seq_len) * double(batch) + double(batch) + 1;
  const double per_row = ld * (2 * g * h + 4 * h + 2 * ho + 2 * ow) + 4 * (ow + in + g * h + h);
  const double packed = 2 * (g * h + 16) * (in + ho + h + 16);  // packed or permuted weights
  return rows * per_row + packed <= kMaxElements;
}

// The message when BuffersFit is false; `what` names the inputs that set the sizes.
inline std::string BuffersTooLarge(const std::string& what) {
  return what + " need buffers of more than the 2^62 elements a tensor may have";
}

// A backprop's reserve_space must be the forward's: `shape` is the one given, `needed` its size.
inline std::string ReserveSpaceMismatch(const std::string& shape, int64_t needed) {
  return "reserve_space has shape " + shape + " but this model needs [" + internal::Num(needed) +
         "]: pass the reserve_space of a forward pass run with is_training=true and the same "
         "attributes and shapes";
}

}  // namespace fused_rnn
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_KERNELS_FUSED_RNN_RULES_H_
