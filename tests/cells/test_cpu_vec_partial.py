"""The cells' SIMD vectors at a row's end (cc/kernels/cpu_cell_io.h): CpuVec::Load / Store of n <
kSize values, and ForEachPacket, which runs a row's last few units (or a whole row narrower than a
vector) on the narrowest packet that holds them.

The partial loads and stores are masked on AVX2 and AVX-512 (Eigen's generic partial forms went
through a stack array, docs/PERFORMANCE.md item 110). A small C++ program (the header with
TensorFlow's Eigen, built for x86-64-v3 and, on a CPU with AVX-512, x86-64-v4 as the libraries are,
and for baseline x86-64, Eigen's own fallback) checks, for float and double and every packet width
the build has (the full one and each of its halves down to 16 bytes), every n < size and every
element offset of a vector: the loaded lanes are the n values then zeros; a store writes the n
values and no other element around them; and n values that end where a page with no access begins
load and store without a fault (a full-width access there would crash the program). For every H up
to 70 it checks that ForEachPacket covers [0, H) once, in order, with full vectors and then one
packet no wider than it must be, and that RowEndsInPartialPacket says whether that packet is
partial. Skipped without a C++ compiler or the sources.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tf_rnn_ops._loader import X86_64_V4_FLAGS, cpu_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CXX = os.environ.get("CXX", "g++")

# Prints "<type> <packet sizes> bad <count>" for float and double; a fault kills it (a signal).
PROGRAM = r"""
#include <sys/mman.h>
#include <unistd.h>
#include <cstdio>
#include <random>
#include <vector>
#include "cc/kernels/cpu_cell_io.h"
using namespace tf_rnn_ops;
template <typename T, typename P>
int CheckPacket(std::mt19937& rng) {
  using V = CpuVec<T, P>;
  constexpr int L = V::kSize;
  std::uniform_real_distribution<T> u(-4, 4);
  int bad = 0;
  alignas(64) T src[3 * L], dst[3 * L], lanes[L];
  for (int offset = 0; offset < L; ++offset) {
    for (int n = 1; n < L; ++n) {
      const T fill = u(rng);
      const int at = L + offset - n / 2;
      for (int i = 0; i < 3 * L; ++i) src[i] = u(rng), dst[i] = fill;
      const V v = V::Load(src + at, n);
      Eigen::internal::pstoreu(lanes, v.p);
      for (int i = 0; i < L; ++i) bad += lanes[i] != (i < n ? src[at + i] : T(0));
      v.Store(dst + at, n);
      for (int i = 0; i < 3 * L; ++i) bad += dst[i] != (i >= at && i < at + n ? src[i] : fill);
    }
  }
  // n values ending at a page with no access: only those n may be touched.
  const long page = sysconf(_SC_PAGESIZE);
  char* map = static_cast<char*>(
      mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (map == MAP_FAILED || mprotect(map + page, page, PROT_NONE) != 0) return 1000;
  T* end = reinterpret_cast<T*>(map + page);
  for (int n = 1; n < L; ++n) {
    for (int i = 1; i <= n; ++i) end[-i] = T(i);
    const V v = V::Load(end - n, n);
    Eigen::internal::pstoreu(lanes, v.p);
    for (int i = 0; i < n; ++i) bad += lanes[i] != T(n - i);
    (v * V(T(2))).Store(end - n, n);
    for (int i = 1; i <= n; ++i) bad += end[-i] != T(2 * i);
  }
  munmap(map, 2 * page);
  std::printf(" %d", L);
  return bad;
}
template <typename T, typename P>
int CheckPackets(std::mt19937& rng) {
  int bad = CheckPacket<T, P>(rng);
  if constexpr (PacketSize<HalfPacket<P>>() < PacketSize<P>()) {
    bad += CheckPackets<T, HalfPacket<P>>(rng);
  }
  return bad;
}
template <typename T>
int CheckRows() {
  constexpr int L = PacketSize<FullPacket<T>>();
  int bad = 0;
  for (int H = 0; H <= 70; ++H) {
    std::vector<int> seen;
    ForEachPacket<T>(H, [&](int64_t j, int n, auto tag) {
      constexpr int size = PacketSize<typename decltype(tag)::type>();
      bad += j != static_cast<int64_t>(seen.size()) || n < 1 || n > size;
      // full vectors first; then one packet, the narrowest that holds the rest (16 bytes the
      // narrowest there is)
      constexpr int narrowest = 16 / static_cast<int>(sizeof(T));
      bad += j + L <= H ? size != L : j + n != H || (size > narrowest && 2 * n <= size);
      for (int i = 0; i < n; ++i) seen.push_back(static_cast<int>(j) + i);
    });
    bad += static_cast<int>(seen.size()) != H;
    // RowEndsInPartialPacket: whether the row's last packet is masked
    bool last_partial = false;
    ForEachPacket<T>(H, [&](int64_t j, int n, auto tag) {
      last_partial = n < PacketSize<typename decltype(tag)::type>();
    });
    bad += RowEndsInPartialPacket<T>(H) != last_partial;
  }
  return bad;
}
template <typename T>
int Check(const char* name, std::mt19937& rng) {
  std::printf("%s", name);
  const int bad = CheckPackets<T, FullPacket<T>>(rng) + CheckRows<T>();
  std::printf(" bad %d\n", bad);
  return bad;
}
int main() {
  std::mt19937 rng(std::random_device{}());
  return (Check<float>("float", rng) + Check<double>("double", rng)) != 0;
}
"""


def _builds():
    archs = ["x86-64", "x86-64-v3"]
    if set(X86_64_V4_FLAGS) <= set(cpu_flags()):
        archs.append("x86-64-v4")
    return archs


@pytest.mark.parametrize("arch", _builds())
def test_partial_vectors_touch_only_their_values(arch, tmp_path):
    if shutil.which(CXX) is None:
        pytest.skip(f"no C++ compiler ({CXX})")
    if not os.path.exists(os.path.join(REPO, "cc", "kernels", "cpu_cell_io.h")):
        pytest.skip("no C++ sources here (Bazel's runfiles hold the tests and libraries only)")
    import tensorflow as tf

    src, exe = tmp_path / "cpu_vec_partial.cc", tmp_path / f"cpu_vec_partial_{arch}"
    src.write_text(PROGRAM)
    subprocess.run(
        [CXX, "-std=c++17", "-O2", f"-march={arch}", "-DEIGEN_MAX_ALIGN_BYTES=64",
         "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-Wno-ignored-attributes",
         "-I", REPO, "-isystem", tf.sysconfig.get_include(), str(src), "-o", str(exe)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, f"{arch}: exit {run.returncode} (a signal if < 0): {run.stdout}"
    sizes = {"x86-64": ("4", "2"), "x86-64-v3": ("8 4", "4 2"), "x86-64-v4": ("16 8 4", "8 4 2")}
    want = f"float {sizes[arch][0]} bad 0\ndouble {sizes[arch][1]} bad 0\n"
    assert run.stdout == want
