"""Issue 7 (1): property-based fuzzing of every op, in a subprocess so that a crash is a failure.

tests/hardening/fuzz_ops.py draws cases for each op family (our TfRnn> ops, TfRnn>KerasRNN, its
gradient and TfRnn>KerasRNNBackprop, TfRnn>LayerNormRnn / LayerNormRnnGrad, TfRnn>KerasRNNDropout /
KerasRNNDropoutBackprop (recurrent and zoneout masks of wrong shapes, a mismatched reserve), and
TensorFlow's own CudnnRNN* ops on our CPU kernels): random ranks, shapes, dtypes, attribute values,
sequence lengths (negative, past T, of a wrong length or rank), params of wrong sizes, empty tensors
with huge dimensions, NaN/Inf contents. Every call must return outputs of the shapes a model of
docs/MATH.md predicts, or raise InvalidArgumentError/ValueError/TypeError naming the input or
attribute at fault; graph construction must agree with the kernels; and the process must never
die, nor grow past its address-space limit (what TensorFlow maps at start plus 4 GiB;
TF_RNN_OPS_FUZZ_HEADROOM_MB).

`make test` runs a few hundred cases with a fixed seed (TF_RNN_OPS_FUZZ_EXAMPLES cases per family,
default 20, TF_RNN_OPS_FUZZ_SEED); `make stress` runs thousands per family with a random seed.
"""

from __future__ import annotations

import os
import re

import pytest
import subproc

SEED = os.environ.get("TF_RNN_OPS_FUZZ_SEED", "20260501")


def _fuzz(tmp_path, examples: int, seed: str, timeout: float, ops: str = "all"):
    last = tmp_path / "last_case.txt"
    proc = subproc.run(
        "fuzz_ops.py", "--examples", str(examples), "--seed", seed, "--ops", ops,
        "--last-case", str(last), timeout=timeout, last_case=last,
    )  # fmt: skip
    assert proc.returncode == 0, subproc.describe(proc)
    assert "all properties held" in proc.stdout
    # Memory bounded (RLIMIT_AS), except under AddressSanitizer (make asan).
    assert re.search(r"memory: (address space limited|no RLIMIT_AS under Address)", proc.stdout)


def test_fuzz_every_op(tmp_path):
    _fuzz(tmp_path, int(os.environ.get("TF_RNN_OPS_FUZZ_EXAMPLES", "20")), SEED, timeout=900)


@pytest.mark.slow
@pytest.mark.skipif(not subproc.stress(), reason="make stress (TF_RNN_OPS_STRESS=1)")
@pytest.mark.parametrize(
    "ops",
    ["gru,gru_grad", "cudnn,cudnn_backprop", "params_size,to_canonical,to_params",
     "tf_cudnn_v3,tf_cudnn_v2,tf_cudnn_v1,tf_backprop_v3",
     "tf_params_size,tf_to_canonical,tf_to_params",
     "keras_rnn,keras_rnn_grad,keras_rnn_backprop", "layer_norm,layer_norm_grad",
     "keras_rnn_dropout,keras_rnn_dropout_backprop"],
)  # fmt: skip
def test_fuzz_every_op_long(tmp_path, ops):
    examples = int(os.environ.get("TF_RNN_OPS_STRESS_FUZZ_EXAMPLES", "2000"))
    seed = os.environ.get("TF_RNN_OPS_FUZZ_SEED") or str(int.from_bytes(os.urandom(4), "little"))
    _fuzz(tmp_path, examples, seed, timeout=7200, ops=ops)
