// The CUDA fused RNN's checks and sizes (fused_rnn_cuda.h): the configuration by the fused family's
// rules (cc/kernels/fused_rnn_rules.h), the sequence lengths, and the bytes of the reserve and the
// workspaces, each the layout of the configuration's cell (fused_rnn_cuda_layout.h) carved without
// a base.
#include <algorithm>
#include <cstdint>
#include <string>

#include "cc/cells/rnn_cells.h"
#include "cc/cuda/fused_rnn_cuda.h"
#include "cc/cuda/fused_rnn_cuda_layout.h"
#include "cc/kernels/fused_rnn_rules.h"

namespace tf_rnn_ops {
namespace cuda {
namespace {

// The bytes of Layout<T, Cell> for the configuration's cell, in the dtype's T; 0 for an invalid
// one.
template <template <typename, typename> class Layout, typename T, typename Cell>
size_t LayoutBytes(const RnnConfig& config) {
  return Layout<T, Cell>::Carve(config, nullptr).bytes;
}

template <template <typename, typename> class Layout>
size_t Bytes(const RnnConfig& config, DType dtype) {
  if (!ValidateRnnConfig(config).ok()) return 0;
  const bool f64 = dtype == DType::kFloat64;
  const auto bytes = DispatchCell(config.shape.mode, [f64](auto cell) {
    using Cell = decltype(cell);
    return f64 ? &LayoutBytes<Layout, double, Cell> : &LayoutBytes<Layout, float, Cell>;
  });
  return bytes(config);
}

}  // namespace

// The fused family's rules (cc/kernels/fused_rnn_rules.h), as the TensorFlow kernels check them,
// and what only this layer is given: negative sequence sizes.
Status ValidateRnnConfig(const RnnConfig& config) {
  auto invalid = [](const std::string& message) {
    return Status::InvalidArgument("fused RNN: " + message);
  };
  std::string error = fused_rnn::CheckModelShape(config.shape);
  if (error.empty()) error = fused_rnn::CheckDropout(config.dropout);
  if (!error.empty()) return invalid(error);
  if (config.max_time < 0 || config.batch < 0) {
    return invalid("max_time (" + std::to_string(config.max_time) + ") and batch (" +
                   std::to_string(config.batch) + ") must be >= 0");
  }
  if (!fused_rnn::BuffersFit(config.shape, config.max_time, config.batch)) {
    return invalid(fused_rnn::BuffersTooLarge("max_time (" + std::to_string(config.max_time) +
                                              ") and batch (" + std::to_string(config.batch) +
                                              ")"));
  }
  return Status::Ok();
}

Status ValidateSequenceLengths(const RnnConfig& config, const int32_t* host_lengths,
                               int64_t* max_len) {
  *max_len = config.max_time;
  if (host_lengths == nullptr) return Status::Ok();
  int64_t longest = 0;
  for (int64_t b = 0; b < config.batch; ++b) {
    const int64_t len = host_lengths[b];
    const std::string error = fused_rnn::CheckSequenceLength(b, len, config.max_time);
    if (!error.empty()) return Status::InvalidArgument(error);
    longest = std::max(longest, len);
  }
  *max_len = longest;
  return Status::Ok();
}

bool RnnUsesDropout(const RnnConfig& config) {
  return fused_rnn::UsesDropout(config.is_training, config.dropout, config.shape.num_layers);
}

size_t RnnForwardWorkspaceBytes(const RnnConfig& config, DType dtype) {
  return Bytes<ForwardWorkspace>(config, dtype);
}

size_t RnnReserveBytes(const RnnConfig& config, DType dtype) {
  return Bytes<ReserveLayout>(config, dtype);
}

size_t RnnBackwardWorkspaceBytes(const RnnConfig& config, DType dtype) {
  return Bytes<BackwardWorkspace>(config, dtype);
}

}  // namespace cuda
}  // namespace tf_rnn_ops
