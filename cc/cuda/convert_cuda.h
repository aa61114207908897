// 16-bit floats (IEEE half, bfloat16) to float and back on CUDA, for the kernels that take half and
// bfloat16 tensors and compute in float (README, API). Bit-exact conversions (round to nearest
// even), the same code on host and device.
#ifndef TF_RNN_OPS_CC_CUDA_CONVERT_CUDA_H_
#define TF_RNN_OPS_CC_CUDA_CONVERT_CUDA_H_

#include <cstdint>

#include "cc/cuda/cuda_compat.h"

namespace tf_rnn_ops {
namespace cuda {

enum class Half16 : int { kFloat16 = 0, kBFloat16 = 1 };

// dst[i] = float(src[i]) for n 16-bit values (their bit patterns).
Status Half16ToFloat(cudaStream_t stream, Half16 kind, int64_t n, const uint16_t* src, float* dst);
// dst[i] = the 16-bit value nearest to src[i] (ties to even; overflow to ±inf; NaN stays NaN).
Status FloatToHalf16(cudaStream_t stream, Half16 kind, int64_t n, const float* src, uint16_t* dst);

}  // namespace cuda
}  // namespace tf_rnn_ops

#endif  // TF_RNN_OPS_CC_CUDA_CONVERT_CUDA_H_
