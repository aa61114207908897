"""The float32 CPU driver's row ranges (ForEachBatchRange, cpu_gemm.h) on 2 and 8 intra-op threads.

With B >= 12 (two 6-row strips) and 2+ threads, each thread runs its range of rows (B split evenly,
one range at most per 6 rows: ranges of any length, not whole strips) through a chunk
of steps with no barrier between threads; so do fewer rows whose step products are small, down to
one row a range. Cells with two recurrent products a step (GRU
reset-before, Keras' reset_after=False) once staged each product's rows in a buffer shared by the
phases at a phase-dependent offset, so a thread a phase ahead overwrote another's rows (wrong rows
past the first range, forward and backward). 8 threads on a 2-core machine make the threads drift
apart often (`make test`); 2 threads, the CI machine's pool, and the one-product cells run under
`make test-slow`.

The reference is Keras' own step loop in float64 with the same weights (outputs and the gradients
of every input and weight), computed once per case while the op runs `rounds` times: see
row_range_program.py, run in a subprocess because TensorFlow fixes its pool's size at start.
"""

from __future__ import annotations

import subprocess

import pytest
import row_range

RESET_BEFORE = [
    "gru_reset_before:12:30:3:40:lengths",
    "gru_reset_before:20:30:5:33",
    "gru_reset_before:32:30:3:48",
    "gru_reset_before:37:30:4:64:lengths",
]
ONE_PRODUCT = ["gru:20:20:3:17", "lstm:37:20:3:16:lengths"]  # the same row ranges
# Fewer than 12 rows with small step products (RnnRowsApart, rnn_layouts.h): a range per thread
# of one row or more (B = 2: a row each; B = 11 on 8 threads: one or two rows); each call past the
# one-thread thresholds (64 MFLOP forward, 128 backward), so that its pool runs the ranges.
FEW_ROWS = [
    "gru_reset_before:5:60:64:256:lengths",
    "gru:11:40:48:160",
    "lstm:7:50:32:200:lengths",
    "gru:2:90:64:256",
]


def _run(threads: int, seed: int, rounds: int, cases: list[str]) -> subprocess.CompletedProcess:
    return row_range.run_program("row_range_program.py", threads, seed, rounds, *cases)


@pytest.mark.parametrize(
    "threads,rounds,cases",
    [
        # Without the fix (rnn_phase_products.h staged rows at b0 · n, n the phase's width), this
        # failed in 2-3 of its 4 shapes within 12 rounds on the 2-core development machine (~45 s).
        (8, 20, RESET_BEFORE),
        (8, 3, FEW_ROWS),
        (2, 3, FEW_ROWS),
        # The CI machine's pool (where the bug was first seen); on a quiet 2-core machine the
        # threads rarely drift a phase apart, so this one alone would seldom catch it.
        pytest.param(2, 10, RESET_BEFORE + ONE_PRODUCT, marks=pytest.mark.slow),
        pytest.param(8, 10, ONE_PRODUCT, marks=pytest.mark.slow),
    ],
)
def test_row_ranges_match_keras(rng, threads, rounds, cases):
    proc = _run(threads, int(rng.integers(1 << 30)), rounds, cases)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
