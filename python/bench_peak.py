"""The machine's float32 FMA peak and the product path the library takes: one definition for every
benchmark that prints a peak, a "% FMA peak" or the machine.

The peak is measured, not computed from a datasheet: a register-resident loop (`PEAK_SOURCE`:
every thread runs 12 independent FMA chains, no memory) built with the system's C++ compiler in
two variants, AVX2 (8-float ymm FMAs, `-mavx2 -mfma`) and AVX-512 (16-float zmm FMAs,
`-mavx512f`). The AVX-512 variant runs only where the CPU reports avx512f (or, where
/proc/cpuinfo cannot be read, where running it does not die of SIGILL). The ceiling is the higher
of the two rates: on AMD Zen 5 (2 threads) AVX2 gives ~232 GFLOP/s and AVX-512 ~482, so a share
against the AVX2 rate alone overstates ours by 2x on AVX-512 machines.

`product_path()` says which micro-kernels the library's float products run (docs/ARCHITECTURE.md,
"The float products and AVX-512"): it mirrors `UseAvx512()` in cc/kernels/packed_gemm.h — AVX-512
where the CPU has AVX-512F and TF_RNN_OPS_NO_AVX512 is unset, empty or "0"; AVX2 otherwise. The
library exposes no query, so this reads the same two facts through the loader
(`_loader.cpu_flags`, `_loader.avx512_wanted`, whose switch rule is packed_gemm.h's); keep the two
rules in step.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
from collections.abc import Mapping

# One source, two variants: the compiler flags of VARIANTS pick the register width.
PEAK_SOURCE = r"""
#include <immintrin.h>
#include <omp.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMADD _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define STOREU _mm512_storeu_ps
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMADD _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define STOREU _mm256_storeu_ps
#else
#error "build with -mavx2 -mfma or -mavx512f"
#endif
#define FMA12(b, c) \
  a0 = FMADD(a0, b, c); a1 = FMADD(a1, b, c); a2 = FMADD(a2, b, c); a3 = FMADD(a3, b, c); \
  a4 = FMADD(a4, b, c); a5 = FMADD(a5, b, c); a6 = FMADD(a6, b, c); a7 = FMADD(a7, b, c); \
  a8 = FMADD(a8, b, c); a9 = FMADD(a9, b, c); a10 = FMADD(a10, b, c); a11 = FMADD(a11, b, c);
int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : omp_get_max_threads();
  const long iters = argc > 2 ? atol(argv[2]) : 20000000;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      vec b = SET1(0.999999f), c = SET1(1e-7f);
      vec a0 = SET1(1), a1 = SET1(2), a2 = SET1(3), a3 = SET1(4), a4 = SET1(5), a5 = SET1(6);
      vec a6 = SET1(7), a7 = SET1(8), a8 = SET1(9), a9 = SET1(10), a10 = SET1(11), a11 = SET1(12);
      for (long i = 0; i < iters; ++i) { FMA12(b, c) }
      vec s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));
      s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));
      float out[LANES]; STOREU(out, s); sink += out[0];
    }
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double gf = threads * (double)iters * 12 * LANES * 2 / sec / 1e9;
    if (gf > best) best = gf;
    if (sink == 42) printf("x");
  }
  printf("%.3f\n", best);
}
"""

# variant -> (name in reports, compiler flags, the /proc/cpuinfo flag the CPU must report)
VARIANTS: dict[str, tuple[str, list[str], str]] = {
    "avx2": ("AVX2", ["-mavx2", "-mfma"], "avx2"),
    "avx512": ("AVX-512", ["-mavx512f"], "avx512f"),
}


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (read by the loader, tf_rnn_ops/_loader.py), or
    None where there are none to read."""
    from tf_rnn_ops import _loader

    return set(_loader.cpu_flags()) or None


def compile_peak(variant: str, exe: str, cxx: str | None = None) -> None:
    """Builds PEAK_SOURCE's `variant` into `exe`; raises OSError / CalledProcessError on failure."""
    cxx = cxx or os.environ.get("CXX", "g++")
    src = exe + ".cc"
    with open(src, "w") as f:
        f.write(PEAK_SOURCE)
    subprocess.run(
        [cxx, "-O3", *VARIANTS[variant][1], "-fopenmp", src, "-o", exe],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def fma_peaks(threads: int, iters: int = 20_000_000) -> dict[str, float | None]:
    """GFLOP/s of each variant's loop on `threads` threads (best of 5), None for a variant the
    compiler cannot build or the CPU cannot run (the AVX-512 one is not run where /proc/cpuinfo
    lacks avx512f; a SIGILL counts as cannot run)."""
    flags = cpu_flags()
    out: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory() as d:
        for variant, (_, _, needs) in VARIANTS.items():
            out[variant] = None
            if flags is not None and needs not in flags:
                continue
            exe = os.path.join(d, f"fma_peak_{variant}")
            try:
                compile_peak(variant, exe)
                run = subprocess.run(
                    [exe, str(threads), str(iters)],
                    check=True, capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                out[variant] = float(run.stdout.strip().splitlines()[-1])
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass
    return out


def ceiling(peaks: Mapping[str, float | None]) -> float | None:
    """The machine's FMA peak: the higher of the variants' rates (None if none ran)."""
    rates = [r for r in peaks.values() if r]
    return max(rates) if rates else None


def describe_peaks(peaks: Mapping[str, float | None]) -> str:
    """E.g. '482.1 GFLOP/s with AVX-512 FMAs, AVX2 231.9', or 'n/a'."""
    top = ceiling(peaks)
    if top is None:
        return "n/a"
    best = max((v for v in peaks if peaks[v]), key=lambda v: peaks[v])
    rest = ", ".join(
        f"{VARIANTS[v][0]} {peaks[v]:.1f}" if peaks[v] else f"{VARIANTS[v][0]} n/a"
        for v in VARIANTS
        if v != best
    )
    return f"{top:.1f} GFLOP/s with {VARIANTS[best][0]} FMAs, {rest}"


def rnn_product_flops(
    batch: int, steps: int, inputs: int, units: int, gates: int, training: bool
) -> float:
    """The FLOPs (2 a multiply-add) of the products a layer call of one direction cannot avoid,
    with a zero initial state and no gradient for x: forward x W over all T steps and h R over the
    last T - 1 (the first h is zero); a training step adds dGH Rᵀ for the last T - 1 steps (the
    first gives h0's grad, unneeded), R's gradient over the last T - 1 and W's over all T. Every
    implementation does at least these at the FMA rate (the gate math and the LN passes come on
    top), so `floor_ms` of them bounds what any kernel can reach on this machine."""
    gh = gates * units
    rec = max(steps - 1, 0)
    forward = 2.0 * batch * gh * (steps * inputs + rec * units)
    backward = 2.0 * batch * gh * (steps * inputs + 2 * rec * units)
    return forward + (backward if training else 0.0)


def floor_ms(flops: float, peak_gflops: float | None) -> float | None:
    """Milliseconds of `flops` at the FMA peak (None where the peak is unknown)."""
    return None if not peak_gflops else flops / (peak_gflops * 1e6)


def describe_goal(goal: float, peer_ms: float, flops: float, peak_gflops: float | None) -> str:
    """Whether a speed goal `goal`× the peer can be met here: the time it asks for against the
    products' time at the FMA peak, e.g. 'goal 5x: <= 45.6 ms, the products at the FMA peak
    44.7 ms: needs 98% of peak' (with ', beyond the peak: unreachable on this CPU' past 100%: a
    peer's time moves little with the FMA width, the floor in proportion to it)."""
    target = peer_ms / goal
    floor = floor_ms(flops, peak_gflops)
    if floor is None:
        return f"goal {goal:g}x: <= {target:.1f} ms (FMA peak n/a)"
    share = 100.0 * floor / target
    beyond = ", beyond the peak: unreachable on this CPU" if share > 100.0 else ""
    return (
        f"goal {goal:g}x: <= {target:.1f} ms, the products at the FMA peak {floor:.1f} ms: "
        f"needs {share:.0f}% of peak{beyond}"
    )


def kernel_gates(layer, units: int) -> int:
    """The gates G of a built recurrent layer: its kernel (its first weight) is [I, G·H]."""
    return layer.get_weights()[0].shape[1] // units


def threads_used() -> int:
    """The cores this process may run on (TensorFlow's default intra-op pool size)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def product_path(environ: Mapping[str, str] | None = None, flags: set[str] | None = None) -> str:
    """'AVX-512' or 'AVX2' ('portable' off x86, 'unknown' without /proc/cpuinfo): the
    micro-kernels the library's float products run in a process with this environment on this
    CPU, by the rule of UseAvx512() in cc/kernels/packed_gemm.h (the CPU
    reports avx512f and TF_RNN_OPS_NO_AVX512 is unset, empty or "0"). The kernel reads the
    variable once per process: set it before the first product."""
    environ = os.environ if environ is None else environ
    flags = cpu_flags() if flags is None else flags
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "portable"  # packed_gemm.h's plain loop nest
    if flags is None:
        return "unknown"  # no /proc/cpuinfo: the kernel asks the CPU itself
    from tf_rnn_ops import _loader

    return "AVX-512" if _loader.avx512_wanted(environ) and "avx512f" in flags else "AVX2"


def library_build() -> str:
    """The build of the op library this process loads, by tf_rnn_ops/_loader.py's rule:
    'x86-64-v4' (`_tf_rnn_ops_avx512.so`, where the CPU has AVX-512 F/BW/CD/DQ/VL and
    TF_RNN_OPS_NO_AVX512 does not turn it off) or 'x86-64-v3'. Needs `tf_rnn_ops` importable."""
    from tf_rnn_ops import _loader

    v4 = _loader.LIBRARY_PATH.endswith(_loader.AVX512_SUFFIX + ".so")
    return "x86-64-v4" if v4 else "x86-64-v3"


def describe_path(environ: Mapping[str, str] | None = None) -> str:
    """One line for a benchmark header: the product path, the library's build, and why."""
    environ = os.environ if environ is None else environ
    path = product_path(environ)
    off = environ.get("TF_RNN_OPS_NO_AVX512", "")
    why = f"TF_RNN_OPS_NO_AVX512={off}" if off else "TF_RNN_OPS_NO_AVX512 unset"
    return (
        f"our float products on the {path} micro-kernels, the cells' passes built for "
        f"{library_build()} ({why})"
    )
