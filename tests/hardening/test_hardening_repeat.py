"""Issue 7 (2, 3): concurrency and determinism of every op, each in a fresh process.

tests/hardening/repeat_check.py runs every workload of tests/hardening/workloads.py (each op forward
and backprop, the registered gradients, float16/bfloat16 paths, TensorFlow's own CudnnRNN* ops on
our kernels; small inputs and inputs large enough for the kernels to use the thread pool):

* repeated serial calls with the same inputs and seeds give bitwise the same outputs and gradients;
* the same calls from 8 Python threads at once give bitwise the serial results;
* the ops as 8 parallel branches of one tf.function give bitwise the serial results.

It runs twice, without and with tf.config.experimental.enable_op_determinism(); the two processes
must also agree bit for bit. `make stress` repeats more rounds on more seeds.
"""

from __future__ import annotations

import json

import subproc


def _run(tmp_path, name, *extra):
    out = tmp_path / f"{name}.json"
    rounds, seeds = ("6", "4") if subproc.stress() else ("2", "2")
    proc = subproc.run(
        "repeat_check.py", "--json", str(out), "--rounds", rounds, "--seeds", seeds,
        "--threads", "8", "--medium", *extra, timeout=3600,
    )  # fmt: skip
    assert proc.returncode == 0, subproc.describe(proc)
    return json.loads(out.read_text())


def test_threads_branches_and_repeats_are_bitwise_identical(tmp_path):
    plain = _run(tmp_path, "plain")
    det = _run(tmp_path, "op_determinism", "--op-determinism")
    assert plain["failures"] == [] and det["failures"] == []
    assert plain["digests"].keys() == det["digests"].keys()
    differ = [k for k in plain["digests"] if plain["digests"][k] != det["digests"][k]]
    assert not differ, f"results differ with enable_op_determinism(): {differ}"
