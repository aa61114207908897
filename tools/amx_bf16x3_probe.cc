// Would AMX-BF16 speed up the recurrent step product at float32 accuracy? (docs/PERFORMANCE.md
// item 98). Each float of h and of R is split into three bfloat16 parts (x = x0 + x1 + x2, exact
// by truncation), and h · R is summed from the six products whose parts weigh at least 2^-16
// (h0R0, h1R0, h0R1, h2R0, h1R1, h0R2) with TDPBF16PS, float32 accumulation: "bf16x3", the
// usual way to get float32 accuracy from bfloat16 units. The probe checks that accuracy against
// double sums, then times one thread's step product (rows of h × K × N, the shape of a 2-thread
// GRU(256) step over B = 64: 32 × 256 × 768) on 1 or 2 threads, and the bare TDPBF16PS rate.
// Not part of the build; Linux on a CPU with AMX-BF16 (Sapphire Rapids or later):
//   g++ -std=c++17 -O3 -march=sapphirerapids tools/amx_bf16x3_probe.cc -o /tmp/amx_probe -lpthread
//   /tmp/amx_probe [threads=2] [rows=32 K=256 N=768]
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace {

// The tile configuration's memory layout (palette 1), as LDTILECFG reads it.
struct TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// All 8 tiles 16 rows of 64 bytes (C: 16 x 16 float; A, B: 16 x 32 bfloat16).
__attribute__((target("amx-tile"))) void LoadFullTiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = 16;
    config.bytes_per_row[t] = 64;
  }
  _tile_loadconfig(&config);
}

// Linux hands out the AMX tile state only on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
bool RequestAmx() { return syscall(SYS_arch_prctl, 0x1023, 18) == 0; }

uint16_t TruncateToBf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u >> 16;
}
float Bf16ToFloat(uint16_t b) {
  const uint32_t u = uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// x = parts[0] + parts[1] + parts[2] exactly (24 mantissa bits, 8 a part) for normal floats.
void SplitBf16x3(float x, uint16_t* parts) {
  for (int i = 0; i < 3; ++i) {
    parts[i] = TruncateToBf16(x);
    x -= Bf16ToFloat(parts[i]);
  }
}

struct Shape {
  int rows, k, n;  // rows a multiple of 32, k of 32, n of 32
};

// C = A · B on split operands. a_parts: [3][rows][k]; b_parts: [3][n / 16][k / 2][16][2] (each
// 16-column panel in TDPBF16PS's pair-interleaved layout, contiguous). Tiles: 2 × 2 accumulators
// (32 × 32 of C), two A tiles, two B tiles. The B part is the outer loop so that each B tile,
// read from L2, serves every A part that pairs with it.
__attribute__((target("amx-tile,amx-bf16"))) void ProductBf16x3(const Shape& s,
                                                                const uint16_t* a_parts,
                                                                const uint16_t* b_parts, float* c,
                                                                int repeats) {
  LoadFullTiles();
  const size_t a_part = size_t{1} * s.rows * s.k, b_part = size_t{1} * s.k * s.n;
  const size_t panel = size_t{16} * s.k;
  for (int r = 0; r < repeats; ++r)
    for (int m0 = 0; m0 < s.rows; m0 += 32)
      for (int n0 = 0; n0 < s.n; n0 += 32) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int k0 = 0; k0 < s.k; k0 += 32) {
#pragma GCC unroll 3
          for (int j = 0; j < 3; ++j) {
            const uint16_t* b = b_parts + j * b_part + (n0 / 16) * panel + (k0 / 2) * 32;
            _tile_loadd(6, b, 64);
            _tile_loadd(7, b + panel, 64);
#pragma GCC unroll 3
            for (int i = 0; i + j < 3; ++i) {
              const uint16_t* a = a_parts + i * a_part + size_t{1} * m0 * s.k + k0;
              _tile_loadd(4, a, s.k * 2);
              _tile_loadd(5, a + 16 * s.k, s.k * 2);
              _tile_dpbf16ps(0, 4, 6);
              _tile_dpbf16ps(1, 4, 7);
              _tile_dpbf16ps(2, 5, 6);
              _tile_dpbf16ps(3, 5, 7);
            }
          }
        }
        float* out = c + size_t{1} * m0 * s.n + n0;
        _tile_stored(0, out, s.n * 4);
        _tile_stored(1, out + 16, s.n * 4);
        _tile_stored(2, out + 16 * s.n, s.n * 4);
        _tile_stored(3, out + 16 * s.n + 16, s.n * 4);
      }
  _tile_release();
}

// TDPBF16PS on register-resident tiles: the unit's own rate, nothing loaded.
__attribute__((target("amx-tile,amx-bf16"))) double BareNsPerTdp() {
  LoadFullTiles();
  alignas(64) static uint16_t zeros[16 * 32] = {};
  _tile_loadd(4, zeros, 64);
  _tile_loadd(5, zeros, 64);
  _tile_loadd(6, zeros, 64);
  _tile_loadd(7, zeros, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const long n = 1000000;
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  _tile_release();
  return s / (4.0 * n) * 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  Shape s{32, 256, 768};
  if (argc > 4) s = {std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4])};
  if (s.rows <= 0 || s.k <= 0 || s.n <= 0 || s.rows % 32 || s.k % 32 || s.n % 32) {
    std::fprintf(stderr, "rows, K and N must be positive multiples of 32\n");
    return 2;
  }
  if (!__builtin_cpu_supports("amx-bf16") || !RequestAmx()) {
    std::printf("no AMX-BF16 here (or the kernel refused the tile state): nothing to measure\n");
    return 0;
  }
  std::mt19937 gen(std::random_device{}());
  std::normal_distribution<float> normal;
  std::vector<float> a(size_t{1} * s.rows * s.k), b(size_t{1} * s.k * s.n);
  for (float& x : a) x = normal(gen);
  for (float& x : b) x = normal(gen);
  std::vector<uint16_t> a_parts(3 * a.size()), b_parts(3 * b.size());
  const size_t panel = size_t{16} * s.k;
  uint16_t p[3];
  for (int m = 0; m < s.rows; ++m)
    for (int k = 0; k < s.k; ++k) {
      SplitBf16x3(a[size_t{1} * m * s.k + k], p);
      for (int i = 0; i < 3; ++i) a_parts[i * a.size() + size_t{1} * m * s.k + k] = p[i];
    }
  for (int k = 0; k < s.k; ++k)
    for (int n = 0; n < s.n; ++n) {
      SplitBf16x3(b[size_t{1} * k * s.n + n], p);
      for (int i = 0; i < 3; ++i)
        b_parts[i * b.size() + (n / 16) * panel + (k / 2) * 32 + (n % 16) * 2 + k % 2] = p[i];
    }

  // Accuracy: |error| / sum |a_k b_k| against double sums, beside float32's own epsilon.
  std::vector<std::vector<float>> c(threads, std::vector<float>(size_t{1} * s.rows * s.n));
  ProductBf16x3(s, a_parts.data(), b_parts.data(), c[0].data(), 1);
  double worst = 0;
  for (int m = 0; m < s.rows; ++m)
    for (int n = 0; n < s.n; ++n) {
      double exact = 0, magnitude = 0;
      for (int k = 0; k < s.k; ++k) {
        const double t = double{a[size_t{1} * m * s.k + k]} * b[size_t{1} * k * s.n + n];
        exact += t;
        magnitude += std::fabs(t);
      }
      worst = std::max(worst, std::fabs(c[0][size_t{1} * m * s.n + n] - exact) / magnitude);
    }
  std::printf("bf16x3 worst |error| / sum|ab|: %.3g (float32 epsilon 1.19e-07)\n", worst);

  // Speed: each thread its own output, the same split weights (as the op's threads share R).
  const int repeats = 2000;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      RequestAmx();
      ProductBf16x3(s, a_parts.data(), b_parts.data(), c[t].data(), repeats);
    });
  for (std::thread& t : pool) t.join();
  const double us =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats * 1e6;
  std::printf(
      "%d thread(s), %d x %d x %d: %.1f us a product, %.0f float32-equivalent GFLOP/s a core\n",
      threads, s.rows, s.k, s.n, us, 2.0 * s.rows * s.k * s.n / us * 1e-3);
  const double ns = BareNsPerTdp();
  std::printf("bare TDPBF16PS: %.2f ns each, %.0f bf16 GFLOP/s (%.0f float32-equivalent, /6)\n", ns,
              2.0 * 8192 / ns, 2.0 * 8192 / ns / 6);
  return 0;
}
