"""Issue 7 (4): resident memory stays flat over many calls of every op (psutil RSS, own process).

tests/hardening/memory_check.py calls each small workload of tests/hardening/workloads.py (each op
forward and backprop, the registered gradients, TensorFlow's CudnnRNN* ops on our kernels) and the
error paths (calls refused after the inputs were read); after a warm-up it reads the RSS (glibc's
free memory trimmed first) half-way and at the end. `make test`: 1,000 calls of each kernel op;
`make stress`: 10,000 calls of every workload.

Error paths: TensorFlow's eager runtime itself keeps ~0.7 KB per raised error (seen with its own
Reshape and MatMul), so their growth is judged against that of a TensorFlow op's error measured in
the same process.
"""

from __future__ import annotations

import json

import subproc

MiB = 1 << 20
# make test: one workload per kernel (forward and backprop), plus two error paths.
FAST = [
    "gru_block_cell", "gru_block_cell_grad", "cudnn_rnn_lstm", "cudnn_rnn_backprop_gru",
    "cudnn_rnn_params_to_canonical", "cudnn_rnn_canonical_to_params", "cudnn_rnn_params_size",
    "tf.CudnnRNNBackpropV3", "error/tf_builtin", "error/cudnn_rnn_lengths",
    "error/cudnn_rnn_backprop_reserve",
]  # fmt: skip


def test_rss_is_flat(tmp_path):
    out = tmp_path / "rss.json"
    if subproc.stress():
        args, budget = ["--calls", "10000", "--warmup", "1000"], 1 * MiB
    else:
        args, budget = ["--calls", "1000", "--warmup", "200", "--only", ",".join(FAST)], 1 * MiB
    proc = subproc.run("memory_check.py", "--json", str(out), *args, timeout=7200)
    assert proc.returncode == 0, subproc.describe(proc)
    rss = json.loads(out.read_text())
    calls = int(args[1])
    base = rss.pop("error/tf_builtin")
    tf_per_call = max(0, base[2] - base[0]) / calls
    report, bad = [], []
    for name, (r0, r1, r2) in rss.items():
        grown = r2 - r0
        report.append(f"{name}: +{grown / 1024:.0f} KiB over {calls} calls")
        if name.startswith("error/"):
            allowed = 1.5 * tf_per_call * calls + budget  # TensorFlow's own per-error cost
        else:
            allowed = budget
        if grown > allowed or r2 - r1 > allowed / 2 + 256 * 1024:
            bad.append(
                f"{name}: {r0 >> 10} -> {r1 >> 10} -> {r2 >> 10} KiB "
                f"(allowed +{allowed / 1024:.0f})"
            )
    assert not bad, "RSS grows:\n" + "\n".join(bad) + "\n\nall:\n" + "\n".join(report)
