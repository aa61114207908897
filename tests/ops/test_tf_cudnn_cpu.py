"""Issue 9: serve GPU-trained cuDNN RNN models on CPU.

After `import tf_rnn_ops`, TensorFlow's OWN ops CudnnRNN, CudnnRNNV2, CudnnRNNV3,
CudnnRNNBackprop(V2, V3), CudnnRNNParamsSize, CudnnRNNParamsToCanonical(V2) and
CudnnRNNCanonicalToParams(V2) have CPU kernels (ours, registered only where TensorFlow has none).

* A GPU machine's Keras 3 graph, built here: keras/src/backend/tensorflow/rnn.py `_cudnn_gru` /
  `_cudnn_lstm` traced with `tf.sysconfig.get_build_info()["is_cuda_build"]` reading True (the z/r
  gate swap, the params concat, CudnnRNNV3 with lengths from a right-padded mask), batch- and
  time-major, with and without a mask, go_backwards too; saved as a SavedModel by a process that
  never imports tf_rnn_ops (tf_cudnn_cases/save_gpu_graphs.py), plus a whole Keras model exported
  with `model.export` whose GRU and LSTM took their cuDNN path. In fresh processes
  (tf_cudnn_cases/serve_gpu_graphs.py): without tf_rnn_ops, calling it fails with TensorFlow's "No
  OpKernel was registered" error; with it, it serves Keras's CPU outputs and gradients
  (TensorFlow's registered gradient of CudnnRNNV3 -> CudnnRNNBackpropV3) and fine-tunes.
* tf.raw_ops.CudnnRNN / CudnnRNNV2 (time-major, no lengths) against Keras layers with the same
  weights (params built per docs/MATH.md, "Params layout"), gradients through TensorFlow's
  registered gradients (a tape, and tf.gradients in a graph whose unread grads the kernel skips),
  V2's host_reserved.
* The params ops against tf_rnn_ops's own and the layout of docs/MATH.md, "Params layout"; round
  trips.
* The kernel registry after `import tf_rnn_ops`, and after importing again.

TensorFlow is imported only in the subprocesses (tf_cudnn_cases/); this process compares their
numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CASES_DIR = HERE / "tf_cudnn_cases"
sys.path.insert(0, str(CASES_DIR))
import cases as C  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)
NO_KERNEL = "No OpKernel was registered to support Op 'CudnnRNNV3'"


def _run(script: str, *args: str, timeout: int = 600) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_RNN_OPS_LIBRARY", None)
    env.pop("TF_RNN_OPS_TF_CUDNN_LIBRARY", None)
    proc = subprocess.run(
        [sys.executable, str(CASES_DIR / script), *args],
        env=env,
        cwd=str(args[0]) if args else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{script} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    )


def _close(actual, expected, what, rtol=TOL["rtol"], atol=TOL["atol"]):
    """assert_allclose, atol scaled by max(1, max|expected|): float32 gradients summed over B·T
    terms carry ~1e-7·|sum| rounding, in Keras as in ours."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


# ------------------------------------------------------------------------------------------- fixtur
@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """The GPU machine's SavedModels and Keras's CPU reference values (no tf_rnn_ops in that
    process)."""
    out = tmp_path_factory.mktemp("gpu_saved_models")
    _run("save_gpu_graphs.py", str(out))
    return out


@pytest.fixture(scope="module")
def manifest(saved) -> dict:
    return json.loads((saved / "manifest.json").read_text())


@pytest.fixture(scope="module")
def unserved(saved, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("served_without_package")
    _run("serve_gpu_graphs.py", str(saved), str(out), "without")
    return json.loads((out / "errors.json").read_text())


@pytest.fixture(scope="module")
def served(saved, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("served_with_package")
    _run("serve_gpu_graphs.py", str(saved), str(out), "with")
    return out


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw_ops")
    _run("raw_ops.py", str(out))
    return out


def _npz(path: Path) -> dict:
    with np.load(path) as f:
        return dict(f)


# ------------------------------------------------------------------- the GPU machine's Keras graph
def test_saved_by_a_process_without_our_kernels(manifest):
    assert manifest["tf_rnn_ops_imported"] is False
    assert "CPU" not in manifest["cpu_kernels_for_CudnnRNNV3"]


@pytest.mark.parametrize("case", list(C.KERAS_GPU_CASES))
def test_saved_graph_is_keras_cudnn_graph(manifest, case):
    ops = set(manifest["cases"][case]["op_types"])
    assert "CudnnRNNV3" in ops, sorted(ops)
    # The cuDNN path, not Keras's CPU step loop.
    assert not ops & {"While", "StatelessWhile", "TensorListReserve"}, sorted(ops)


def test_exported_keras_model_took_the_cudnn_path(manifest):
    entry = manifest["cases"][C.KERAS_EXPORT_CASE]
    assert entry["n_cudnn_rnn_v3"] == 2, entry["op_types"]  # the GRU and the LSTM
    assert not set(entry["op_types"]) & {"While", "StatelessWhile"}


@pytest.mark.parametrize("case", list(C.KERAS_GPU_CASES) + [C.KERAS_EXPORT_CASE])
def test_without_tf_rnn_ops_the_saved_model_has_no_kernel(unserved, case):
    assert unserved["tf_rnn_ops_imported"] is False
    err = unserved["errors"][case]
    assert err is not None, "served without tf_rnn_ops: TensorFlow now has its own CPU kernel?"
    assert NO_KERNEL in err, err


@pytest.mark.parametrize("case", list(C.KERAS_GPU_CASES))
def test_served_outputs_equal_keras(saved, served, case):
    d, r = _npz(saved / f"{case}.npz"), _npz(served / f"{case}.npz")
    valid = d["valid"][..., None]
    # At valid steps, Keras's outputs; at padded steps cuDNN's zeros (where Keras's CPU path may
    # repeat the last output).
    _close(
        np.where(valid, r["outputs"], 0), np.where(valid, d["ref_outputs"], 0), f"{case}: outputs"
    )
    assert not np.any(np.where(valid, 0, r["outputs"])), f"{case}: nonzero outputs at padded steps"
    _close(r["h"], d["ref_h"], f"{case}: final h")
    _close(r["last"], d["ref_h"], f"{case}: last output")
    if "ref_c" in d:
        _close(r["c"], d["ref_c"], f"{case}: final c")


@pytest.mark.parametrize("case", list(C.KERAS_GPU_CASES))
def test_served_gradients_equal_keras(saved, served, case):
    d, r = _npz(saved / f"{case}.npz"), _npz(served / f"{case}.npz")
    keys = ["dx", "dh0", "dkernel", "drecurrent_kernel", "dbias"]
    if C.KERAS_GPU_CASES[case]["kind"] == "lstm":
        keys.append("dc0")
    for k in keys:
        assert k in r, f"{case}: no gradient for {k[1:]}"
        _close(r[k], d[f"ref_{k}"], f"{case}: gradient w.r.t. {k[1:]}")


@pytest.mark.parametrize("case", C.FINE_TUNE_CASES)
def test_fine_tuning_the_loaded_variables(saved, served, case):
    d, r = _npz(saved / f"{case}.npz"), _npz(served / f"{case}.npz")
    losses = r["ft_losses"]
    assert losses[-1] < losses[0] and np.all(np.diff(losses) < 0), losses
    # The same SGD steps on Keras's CPU layer give the same losses.
    _close(losses, d["ref_ft_losses"], f"{case}: fine-tuning losses", rtol=1e-4, atol=1e-6)


def test_served_exported_keras_model(saved, served, manifest):
    d = _npz(saved / f"{C.KERAS_EXPORT_CASE}.npz")
    r = _npz(served / f"{C.KERAS_EXPORT_CASE}.npz")
    _close(r["y"], d["ref_y"], "model output")
    _close(r["dx"], d["ref_dx"], "gradient w.r.t. the model input")
    for i, name in enumerate(manifest["cases"][C.KERAS_EXPORT_CASE]["variable_names"]):
        _close(r[f"dvar{i}"], d[f"ref_dvar{i}"], f"gradient w.r.t. {name}")


# ---------------------------------------------------------------------- CudnnRNN / CudnnRNNV2
@pytest.mark.parametrize("case", list(C.RAW_RNN_CASES))
def test_raw_cudnn_rnn_equals_keras(raw, case):
    r = _npz(raw / f"rnn-{case}.npz")
    _close(r["y"], r["ref_y"], f"{case}: output")
    _close(r["h"], r["ref_h"], f"{case}: output_h")
    if "ref_c" in r:
        _close(r["c"], r["ref_c"], f"{case}: output_c")
    else:
        assert r["c"].shape == (), "non-LSTM output_c is a dummy of shape []"
    # Inference computes the same; float16 (computed in float32 inside) is close.
    _close(r["inf_y"], r["y"], f"{case}: is_training=false output", rtol=0, atol=0)
    _close(r["inf_h"], r["h"], f"{case}: is_training=false output_h", rtol=0, atol=0)
    _close(r["inf_c"], r["c"], f"{case}: is_training=false output_c", rtol=0, atol=0)
    _close(r["half_y"], r["y"], f"{case}: float16 output", rtol=0, atol=2e-2)


@pytest.mark.parametrize("case", list(C.RAW_RNN_CASES))
def test_raw_cudnn_rnn_gradients_equal_keras(raw, case):
    r = _npz(raw / f"rnn-{case}.npz")
    keys = ["dx", "dh0", "dparams"] + (["dc0"] if "ref_dc0" in r else [])
    for k in keys:
        _close(r[k], r[f"ref_{k}"], f"{case}: gradient w.r.t. {k[1:]}")
        # The backprop op called directly equals the tape's (which called it through TF's gradient).
        _close(r[f"direct_{k}"], r[k], f"{case}: direct backprop {k[1:]}", rtol=0, atol=0)
    # tf.gradients in a graph, where the kernel leaves out the grads nobody reads.
    _close(r["graph_dh0"], r["ref_dh0"], f"{case}: graph gradient w.r.t. h0")
    if "ref_dc0" in r:
        _close(r["graph_dc0"], r["ref_dc0"], f"{case}: graph gradient w.r.t. c0")
    _close(r["graph_states_dparams"], r["ref_dparams"], f"{case}: graph params (states asked)")
    _close(r["graph_dparams"], r["ref_dparams"], f"{case}: graph params (params alone)")


@pytest.mark.parametrize("case", [c for c, s in C.RAW_RNN_CASES.items() if s["op"] == "CudnnRNNV2"])
def test_v2_host_reserved_is_int8_and_accepted_back(raw, case):
    r = _npz(raw / f"rnn-{case}.npz")
    assert list(r["output_dtypes"]) == ["float32"] * 4 + ["int8"]
    assert str(r["host_reserved_dtype"]) == "int8"
    assert r["host_reserved_shape"].size == 1  # 1-D (may be empty)
    assert "direct_dparams" in r  # CudnnRNNBackpropV2 ran with it


# ------------------------------------------------------------------------------- params ops
@pytest.mark.parametrize("case", list(C.PARAMS_CASES))
def test_params_ops_agree_and_round_trip(raw, case):
    r = _npz(raw / f"params-{case}.npz")
    for S in ("int32", "int64"):
        assert r[f"size_tf_{S}"].tolist() == [int(r["size_expected"])], (S, r[f"size_tf_{S}"])
        assert r[f"size_ours_{S}"].tolist() == [int(r["size_expected"])], (S, r[f"size_ours_{S}"])
    nw, nb = int(r["n_weights"]), int(r["n_biases"])
    tags = ["tf_v2", "ours"] + (["tf_v1"] if "tf_v1_w0" in r else [])
    for tag in tags:
        assert f"{tag}_w{nw - 1}" in r and f"{tag}_w{nw}" not in r, f"{tag}: {nw} weights expected"
        assert f"{tag}_b{nb - 1}" in r and f"{tag}_b{nb}" not in r, f"{tag}: {nb} biases expected"
        for i in range(nw):
            _close(
                r[f"{tag}_w{i}"], r[f"expected_w{i}"], f"{case}: {tag} weights[{i}]", rtol=0, atol=0
            )
        for i in range(nb):
            _close(
                r[f"{tag}_b{i}"], r[f"expected_b{i}"], f"{case}: {tag} biases[{i}]", rtol=0, atol=0
            )
    keys = ["tf_v2_params", "ours_params", "tf_v2_params_from_expected"]
    keys += ["tf_v1_params"] if "tf_v1_params" in r else []
    for k in keys:
        assert r[k].dtype == r["params"].dtype, k
        _close(r[k], r["params"], f"{case}: {k}", rtol=0, atol=0)


# ------------------------------------------------------------------------------- loader, import twi
def test_every_cudnn_op_has_a_cpu_kernel_after_import(raw):
    info = json.loads((raw / "loader.json").read_text())
    ops = list(info["before"])
    assert len(ops) == 11
    assert info["ops_without_cpu_kernel"] == []
    # TensorFlow (CPU build) had none; ours were registered for every op.
    assert all(n == 0 for n in info["before"].values()), info["before"]
    assert sorted(info["loaded_for"]) == sorted(ops)
    for op, n in info["after"].items():
        # float, double, half, bfloat16 (CudnnRNNParamsSize: each with S = int32 and int64).
        assert n == (8 if op == "CudnnRNNParamsSize" else 4), (op, n)
        assert info["after_duplicates"][op] == 0, op
    assert info["relu_reference_sum"] == 130688.0


def test_importing_twice_is_harmless(raw):
    info = json.loads((raw / "loader.json").read_text())
    assert info["after_reimport_same"], (info["after"], info["after_reimport"])
    assert info["ops_without_cpu_kernel_after_reimport"] == []
