// 16-bit float conversions (convert_cuda.h): portable bit manipulation, so that the host emulation
// tests exactly the code the GPU runs.
#if !defined(__CUDACC_RTC__)  // NVRTC (cc/cuda/cuda_compat.h) compiles the kernels alone
#include "cc/cuda/convert_cuda.h"
#endif

#include <cstring>

#include "cc/cuda/cuda_util.h"

namespace tf_rnn_ops {
namespace cuda {
namespace {

__host__ __device__ __forceinline__ uint32_t FloatBits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}
__host__ __device__ __forceinline__ float BitsFloat(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

__host__ __device__ __forceinline__ float BFloat16ToFloat(uint16_t h) {
  return BitsFloat(static_cast<uint32_t>(h) << 16);
}

__host__ __device__ __forceinline__ uint16_t FloatToBFloat16(float f) {
  const uint32_t x = FloatBits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((x >> 16) | 0x40u);        // quiet NaN
  const uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);  // ties to even; overflows to inf
  return static_cast<uint16_t>(rounded >> 16);
}

__host__ __device__ __forceinline__ float Float16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant · 2^-24, exact in float
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return BitsFloat(FloatBits(v) | sign);
  }
  if (exp == 31) return BitsFloat(sign | 0x7f800000u | (mant << 13));  // inf, NaN
  return BitsFloat(sign | ((exp + 112u) << 23) | (mant << 13));
}

__host__ __device__ __forceinline__ uint16_t FloatToFloat16(float f) {
  const uint32_t bits = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t x = bits & 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (x >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65536 (or inf): inf
  if (x < 0x38800000u) {  // below 2^-14: a subnormal half, mantissa = |f| · 2^24 rounded to even
    const uint32_t shift = 126u - (x >> 23);  // 14..: |f| = m · 2^(e-150) with the implicit bit
    if (shift > 24u) return sign;             // below 2^-25: rounds to zero
    const uint32_t m = (x & 0x7fffffu) | 0x800000u;
    const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    const uint32_t r = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
    return static_cast<uint16_t>(sign | r);  // r == 0x400 is the smallest normal, as it should be
  }
  uint32_t h = ((x >> 23) - 112u) << 10 | ((x >> 13) & 0x3ffu);
  const uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carries into the exponent, up to inf
  return static_cast<uint16_t>(sign | h);
}

__global__ void Half16ToFloatKernel(int64_t n, bool bf16, const uint16_t* src, float* dst) {
  TF_RNN_KERNEL_LOOP(i, n) { dst[i] = bf16 ? BFloat16ToFloat(src[i]) : Float16ToFloat(src[i]); }
}

__global__ void FloatToHalf16Kernel(int64_t n, bool bf16, const float* src, uint16_t* dst) {
  TF_RNN_KERNEL_LOOP(i, n) { dst[i] = bf16 ? FloatToBFloat16(src[i]) : FloatToFloat16(src[i]); }
}

}  // namespace

#if !defined(__CUDACC_RTC__)  // the host code
Status Half16ToFloat(cudaStream_t stream, Half16 kind, int64_t n, const uint16_t* src, float* dst) {
  if (n <= 0) return Status::Ok();
  auto kernel = &Half16ToFloatKernel;
  TF_RNN_LAUNCH(kernel, BlocksFor(n), kThreadsPerBlock, stream, n, kind == Half16::kBFloat16, src,
                dst);
  return CudaStatus(cudaGetLastError(), "Half16ToFloatKernel");
}

Status FloatToHalf16(cudaStream_t stream, Half16 kind, int64_t n, const float* src, uint16_t* dst) {
  if (n <= 0) return Status::Ok();
  auto kernel = &FloatToHalf16Kernel;
  TF_RNN_LAUNCH(kernel, BlocksFor(n), kThreadsPerBlock, stream, n, kind == Half16::kBFloat16, src,
                dst);
  return CudaStatus(cudaGetLastError(), "FloatToHalf16Kernel");
}

#endif  // __CUDACC_RTC__

}  // namespace cuda
}  // namespace tf_rnn_ops
