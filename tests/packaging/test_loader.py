"""The loader's handling of the GPU library: it is loaded only for GPUs and a driver it can run
on and with its cuBLAS found; otherwise `import tf_rnn_ops` warns once, says why, and leaves the
ops on CPU (once loaded, TensorFlow would place them on the GPU and every call would fail there).

The last tests check the built library itself (`make gpu`), where it exists: its dependencies are
TensorFlow's CUDA 12 set only, it has no run path into a build folder, and it loads into TensorFlow
with the cuBLAS wheel TensorFlow uses. `make gpu-check` runs them with
TF_RNN_OPS_GPU_LIB_REQUIRED=1, so there they fail instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tf_rnn_ops import _loader

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Built with CUDA 13.0 (the toolkit on this machine), and as a CUDA 12.9 toolkit would build it.
CUDA13 = _loader.GpuBuildInfo(cuda=(13, 0), sass=(80, 90), ptx=90, cublas="libcublas.so.12")
CUDA129 = _loader.GpuBuildInfo(cuda=(12, 9), sass=(80, 90), ptx=90, cublas="libcublas.so.12")


@pytest.mark.parametrize(
    "info,capabilities,driver",
    [
        (CUDA13, [(9, 0)], 13000),
        (CUDA13, [(8, 0)], 13000),
        (CUDA13, [(8, 6), (8, 9)], 13020),  # sm_80 machine code runs on every 8.x
        (CUDA13, [(10, 0)], 13000),  # compute_90 PTX, compiled by a CUDA 13.0 driver
        (CUDA13, [(12, 0), (9, 0)], 14000),
        (
            CUDA129,
            [(9, 0)],
            12000,
        ),  # CUDA 12.9's runtime on a CUDA 12.0 driver (minor version compat)
        (CUDA129, [(10, 0)], 12090),
    ],
)
def test_usable_gpus(info, capabilities, driver):
    assert _loader.gpu_kernels_unusable_reason(capabilities, driver, info) is None


@pytest.mark.parametrize(
    "info,capabilities,driver,pattern",
    [
        (
            CUDA13,
            [(7, 5)],
            13000,
            r"GPU 0 has compute capability 7\.5; the kernels are built for 8\.0",
        ),
        (CUDA13, [(9, 0), (6, 1)], 13000, r"GPU 1 has compute capability 6\.1"),
        (
            CUDA13,
            [(9, 0)],
            12080,
            r"driver supports CUDA 12\.8, but the kernels are built with CUDA 13\.0, which needs a "
            r"driver for CUDA 13",
        ),
        (CUDA129, [(9, 0)], 11080, r"driver supports CUDA 11\.8.*needs a driver for CUDA 12 "),
        (
            CUDA129,
            [(9, 0), (10, 0)],
            12050,
            r"GPU 1 \(compute capability 10\.0\) runs the kernels' compute_90 PTX.*CUDA 12\.9 or "
            r"newer, this one supports CUDA 12\.5",
        ),
        (CUDA13, [(9, 0)], None, r"no CUDA driver version"),
        (CUDA13, [None], 13000, r"no compute capability for GPU 0"),
    ],
)
def test_unusable_gpus(info, capabilities, driver, pattern):
    reason = _loader.gpu_kernels_unusable_reason(capabilities, driver, info)
    assert reason is not None
    assert re.search(pattern, reason), reason


def _write_library(path, info: dict | None, rng) -> str:
    """A stand-in library: random bytes, then (if given) the build string as cuda.mk embeds it."""
    data = rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
    data = data.replace(b"TFRNN", b"tfrnn")
    if info is not None:
        data += b"\0TFRNN_GPU_BUILD_INFO" + json.dumps(info).encode() + b"\0"
    data += rng.integers(0, 256, 100, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    return str(path)


def test_reads_the_build_information(tmp_path):
    rng = np.random.default_rng()
    sass = sorted(int(a) for a in rng.choice([70, 75, 80, 86, 89, 90, 100, 120], 3, replace=False))
    info = {"cuda": "12.9", "sass": sass, "ptx": sass[-1], "cublas": "libcublas.so.12"}
    got = _loader.read_gpu_build_info(_write_library(tmp_path / "lib.so", info, rng))
    assert got == _loader.GpuBuildInfo(
        cuda=(12, 9), sass=tuple(sass), ptx=sass[-1], cublas="libcublas.so.12"
    )


def test_the_nvrtc_build_loads_its_cuda_runtime_before_cublas(tmp_path, monkeypatch):
    """The NVRTC build records the dynamic CUDA runtime it needs; the loader loads it first (from
    nvidia/cuda_runtime/lib, like cuBLAS), and a missing one is the reason nothing loads."""
    info = {"cuda": "12.9", "sass": [80, 90], "ptx": 90, "cublas": "libcublas.so.12"}
    info |= {"compiler": "nvrtc", "cudart": "libcudart.so.12"}
    path = _write_library(tmp_path / "lib.so", info, np.random.default_rng())
    got = _loader.read_gpu_build_info(path)
    assert got.cudart == "libcudart.so.12" and got.cublas == "libcublas.so.12"
    loaded = []

    def fake_load(soname):
        loaded.append(soname)
        return None if soname != missing else f"{soname} could not be loaded"

    monkeypatch.setattr(_loader, "_load_cublas", fake_load)
    monkeypatch.setattr(_loader, "_load", lambda p, kernels_only=False: loaded.append(p))
    missing = None
    assert _loader.load_gpu_library(path) is None
    assert loaded == ["libcudart.so.12", "libcublas.so.12", path]
    loaded.clear()
    missing = "libcudart.so.12"
    assert _loader.load_gpu_library(path) == "libcudart.so.12 could not be loaded"
    assert loaded == ["libcudart.so.12"]
    # The runtime is found in its NVIDIA package like cuBLAS.
    (tmp_path / "site/nvidia/cuda_runtime/lib").mkdir(parents=True)
    (tmp_path / "site/nvidia/cuda_runtime/lib/libcudart.so.12").write_bytes(b"")
    monkeypatch.setattr(_loader, "_loaded_library", lambda soname: None)
    monkeypatch.setattr(_loader, "_site_packages_dirs", lambda: [str(tmp_path / "site")])
    assert _loader.find_cuda_library("libcudart.so.12") == str(
        tmp_path / "site/nvidia/cuda_runtime/lib/libcudart.so.12"
    )


@pytest.mark.parametrize(
    "info",
    [None, {"cuda": "13.0", "sass": [80]}, {"cuda": "x", "sass": [], "ptx": 9, "cublas": "l"}],
)
def test_no_or_bad_build_information(tmp_path, info):
    path = _write_library(tmp_path / "lib.so", info, np.random.default_rng())
    assert _loader.read_gpu_build_info(path) is None
    assert _loader.read_gpu_build_info(str(tmp_path / "missing.so")) is None


def test_finds_cublas_in_nvidia_packages_on_the_path(tmp_path, monkeypatch):
    for soname, sub in [
        ("libcublas.so.12", "nvidia/cublas/lib"),
        ("libcublas.so.13", "nvidia/cu13/lib"),
    ]:
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / soname).write_bytes(b"")
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    assert _loader.find_cuda_library("libcublas.so.12") == str(
        tmp_path / "nvidia/cublas/lib/libcublas.so.12"
    )
    assert _loader.find_cuda_library("libcublas.so.13") == str(
        tmp_path / "nvidia/cu13/lib/libcublas.so.13"
    )
    assert _loader.find_cuda_library("libcublas.so.11") is None


def test_prefers_the_cublas_already_loaded(tmp_path, monkeypatch):
    """TensorFlow's own cuBLAS, once loaded, is the one used, not another copy on the path."""
    for d in ("loaded", "on_path"):
        (tmp_path / d / "nvidia/cublas/lib").mkdir(parents=True)
        (tmp_path / d / "nvidia/cublas/lib/libcublas.so.12").write_bytes(b"")
    loaded = tmp_path / "loaded/nvidia/cublas/lib/libcublas.so.12"
    maps = tmp_path / "maps"
    maps.write_text(
        f"7f0000000000-7f0000001000 r-xp 00000000 08:01 42 {tmp_path}/other/libfoo.so.1\n"
        f"7f0000001000-7f0000002000 r-xp 00000000 08:01 43 {loaded}\n"
    )
    monkeypatch.setattr(sys, "path", [str(tmp_path / "on_path"), *sys.path])
    assert _loader.find_cuda_library("libcublas.so.12") == str(
        tmp_path / "on_path/nvidia/cublas/lib/libcublas.so.12"
    )
    real_open = open
    monkeypatch.setattr(
        "builtins.open",
        lambda f, *a, **k: real_open(maps if f == "/proc/self/maps" else f, *a, **k),
    )
    assert _loader.find_cuda_library("libcublas.so.12") == str(loaded)


class _Fake:
    """Mocks what the loader asks of the machine; records the libraries it would load."""

    def __init__(self, monkeypatch, gpus, capabilities, driver, load_error=None, cublas_error=None):
        self.loaded = []
        self.cublas = []
        monkeypatch.setattr(_loader, "GPU_LIBRARY_PATH", __file__)  # a file that exists
        monkeypatch.setattr(_loader, "read_gpu_build_info", lambda path: CUDA13)
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus)
        monkeypatch.setattr(_loader, "_gpu_compute_capabilities", lambda _: capabilities)
        monkeypatch.setattr(_loader, "_cuda_driver_version", lambda: driver)
        monkeypatch.setattr(_loader, "find_cuda_library", lambda soname: None)

        def fake_cdll(name, mode=0):
            if cublas_error is not None:
                raise OSError(cublas_error)
            self.cublas.append(name)

        monkeypatch.setattr(_loader.ctypes, "CDLL", fake_cdll)

        def fake_load(path, kernels_only=False):
            if load_error is not None:
                raise load_error
            self.loaded.append(path)

        monkeypatch.setattr(_loader, "_load", fake_load)


def test_loads_for_a_usable_gpu(monkeypatch):
    fake = _Fake(monkeypatch, ["gpu0"], [(9, 0)], 13000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _loader.load_gpu_kernels.__wrapped__() is True
    assert fake.cublas == ["libcublas.so.12"]
    assert fake.loaded == [__file__]


def test_warns_and_stays_on_cpu_for_an_old_gpu(monkeypatch):
    fake = _Fake(monkeypatch, ["gpu0"], [(7, 5)], 13000)
    with pytest.warns(RuntimeWarning, match=r"GPU kernels not loaded: GPU 0 has compute capab"):
        assert _loader.load_gpu_kernels.__wrapped__() is False
    assert fake.loaded == []


def test_warns_and_stays_on_cpu_for_an_old_driver(monkeypatch):
    fake = _Fake(monkeypatch, ["gpu0"], [(9, 0)], 12090)
    with pytest.warns(RuntimeWarning, match=r"CUDA 12\.9.*The ops run on CPU"):
        assert _loader.load_gpu_kernels.__wrapped__() is False
    assert fake.loaded == []


def test_warns_and_stays_on_cpu_without_cublas(monkeypatch):
    """The issue's failure: no CUDA 12 cuBLAS where the GPU library looks for it."""
    error = "libcublas.so.12: cannot open shared object file: No such file or directory"
    fake = _Fake(monkeypatch, ["gpu0"], [(9, 0)], 13000, cublas_error=error)
    with pytest.warns(RuntimeWarning) as record:
        assert _loader.load_gpu_kernels.__wrapped__() is False
    assert len(record) == 1
    message = str(record[0].message)
    assert "libcublas.so.12 could not be loaded" in message and "tensorflow[and-cuda]" in message
    assert message.endswith("The ops run on CPU.")
    assert fake.loaded == []


def test_warns_and_stays_on_cpu_when_the_library_does_not_load(monkeypatch):
    error = ImportError("tf_rnn_ops: could not load x.so: libcublasLt.so.12: cannot open shared")
    _Fake(monkeypatch, ["gpu0"], [(9, 0)], 13000, load_error=error)
    with pytest.warns(
        RuntimeWarning, match=r"not loaded: tf_rnn_ops: could not load x\.so: libcublasLt"
    ):
        assert _loader.load_gpu_kernels.__wrapped__() is False


def test_warns_and_stays_on_cpu_on_any_other_error(monkeypatch):
    _Fake(monkeypatch, ["gpu0"], [(9, 0)], 13000)

    def broken(_):
        raise RuntimeError("device details unavailable")

    monkeypatch.setattr(_loader, "_gpu_compute_capabilities", broken)
    with pytest.warns(RuntimeWarning, match=r"RuntimeError: device details unavailable"):
        assert _loader.load_gpu_kernels.__wrapped__() is False


def test_warns_for_a_library_without_build_information(monkeypatch):
    fake = _Fake(monkeypatch, ["gpu0"], [(9, 0)], 13000)
    monkeypatch.setattr(_loader, "read_gpu_build_info", lambda path: None)
    with pytest.warns(RuntimeWarning, match=r"records no build information"):
        assert _loader.load_gpu_kernels.__wrapped__() is False
    assert fake.loaded == [] and fake.cublas == []


def test_nothing_without_a_gpu(monkeypatch):
    fake = _Fake(monkeypatch, [], [], 13000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _loader.load_gpu_kernels.__wrapped__() is False
    assert fake.loaded == [] and fake.cublas == []


def test_this_machine():
    """On this CPU-only machine: no GPU, so the real helpers say what they can."""
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    assert _loader._gpu_compute_capabilities([]) == []
    driver = _loader._cuda_driver_version()
    assert driver is None or driver > 0


# ---------------------------------------------------------------- the built GPU library (make gpu)
GPU_LIBS = {
    # file: (sonames it may need besides the system's and the CUDA runtime, the run path it must
    # have besides the CUDA runtime's)
    _loader.GPU_LIBRARY_PATH: (
        {"libcublas.so.12", "libtensorflow_framework.so.2"},
        "$ORIGIN/../nvidia/cublas/lib",
    ),
    os.path.join(REPO, "build", "cuda", "libtf_rnn_ops_cuda.so"): ({"libcublas.so.12"}, None),
}
SYSTEM_LIBS = {
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libstdc++.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
}
# Where `make gpu` installs the pinned nvidia-cublas-cu12 when no Python here has it, and the NVRTC
# build's nvidia-cuda-runtime-cu12 & co. (cc/cuda/find_cuda12.sh).
CUDA12_SITE = os.path.join(REPO, "build", "cuda12", "site")
CUDA12_NVRTC_SITE = os.path.join(REPO, "build", "cuda12", "nvrtc-site")


def _require(path: str) -> None:
    if not os.path.exists(path):
        if os.environ.get("TF_RNN_OPS_GPU_LIB_REQUIRED"):
            pytest.fail(f"{path} is not built (make gpu)")
        pytest.skip(f"{path} is not built (make gpu)")


@pytest.mark.parametrize("path", sorted(GPU_LIBS))
def test_built_library_needs_only_cuda12_cublas(path):
    _require(path)
    allowed, runpath = GPU_LIBS[path]
    info = _loader.read_gpu_build_info(path)
    assert info is not None and info.cublas == "libcublas.so.12"
    assert set(info.sass) >= {80, 90} and info.ptx >= 90
    dynamic = subprocess.run(
        ["readelf", "-d", path], check=True, capture_output=True, text=True
    ).stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic))
    assert "libcublas.so.12" in needed
    if info.cudart is not None:
        # The NVRTC build: CUDA 12's runtime, dynamically, found like cuBLAS; never libcuda (the
        # driver API comes through cudaGetDriverEntryPoint).
        assert info.cudart == "libcudart.so.12" and info.cuda[0] == 12
        assert "libcudart.so.12" in needed
        allowed = allowed | {"libcudart.so.12"}
        if runpath:
            runpath += ":$ORIGIN/../nvidia/cuda_runtime/lib"
    assert needed <= allowed | SYSTEM_LIBS, (
        f"unexpected dependencies: {needed - allowed - SYSTEM_LIBS}"
    )
    paths = re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*?)\]", dynamic)
    assert paths == ([runpath] if runpath else []), paths


def _python(code: str, pythonpath: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    env["PYTHONPATH"] = os.pathsep.join([REPO, *pythonpath])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )


_LOAD_AND_REPORT = """
import json
from tensorflow.python.framework import kernels
from tf_rnn_ops import _loader
reason = _loader.load_gpu_library()
devices = {op: sorted({k.device_type for k in kernels.get_registered_kernels_for_op(op).kernel})
           for op in ("TfRnn>GRUBlockCell", "TfRnn>GRUBlockCellGrad", "TfRnn>CudnnRNN",
                      "TfRnn>CudnnRNNBackprop", "TfRnn>LayerNormRnn", "TfRnn>LayerNormRnnGrad",
                      "TfRnn>KerasRNNDropout", "TfRnn>KerasRNNDropoutBackprop")}
cublas = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libcublas" in line})
print("RESULT" + json.dumps({"reason": reason, "devices": devices, "cublas": cublas}))
"""


def _report(proc: subprocess.CompletedProcess) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][len("RESULT") :])


def test_built_library_loads_into_tensorflow_with_the_cu12_cublas_wheel():
    """Loaded (in a fresh process) with nvidia-cublas-cu12 on the path, as `tensorflow[and-cuda]`
    installs it: the DEVICE_GPU kernels register, and cuBLAS comes from that wheel."""
    _require(_loader.GPU_LIBRARY_PATH)
    if not os.path.exists(os.path.join(CUDA12_SITE, "nvidia", "cublas", "lib", "libcublas.so.12")):
        pytest.skip(f"no nvidia-cublas-cu12 in {CUDA12_SITE} (make gpu installs it there)")
    report = _report(_python(_LOAD_AND_REPORT, [CUDA12_SITE, CUDA12_NVRTC_SITE]))
    assert report["reason"] is None
    for op, devices in report["devices"].items():
        assert devices == ["CPU", "GPU"], (op, devices)
    wheel_lib = os.path.realpath(os.path.join(CUDA12_SITE, "nvidia", "cublas", "lib"))
    assert report["cublas"], "no libcublas mapped"
    assert all(os.path.dirname(os.path.realpath(p)) == wheel_lib for p in report["cublas"]), report


def test_built_library_without_cublas_says_why_and_loads_nothing():
    """Without any libcublas.so.12 (the issue's machine): a reason naming it, no GPU kernels, and
    `import tf_rnn_ops` still works."""
    _require(_loader.GPU_LIBRARY_PATH)
    if _loader.find_cuda_library("libcublas.so.12"):
        pytest.skip("this Python's site-packages have nvidia-cublas-cu12")
    report = _report(
        _python(_LOAD_AND_REPORT.replace("import json", "import json, tf_rnn_ops"), [])
    )
    if report["reason"] is None:
        pytest.skip("libcublas.so.12 is loadable from the system's library path here")
    # The first CUDA library missing: the NVRTC build needs libcudart.so.12 before cuBLAS.
    assert re.search(
        r"lib(cudart|cublas)\.so\.12 could not be loaded .*tensorflow\[and-cuda\]", report["reason"]
    )
    for op, devices in report["devices"].items():
        assert devices == ["CPU"], (op, devices)
    assert report["cublas"] == []


def test_harness_loads_the_built_cuda_library_with_its_cublas():
    """tests/gpu's ctypes binding reads the cuBLAS the framework-free library was built against and
    loads it first (the library has no run path): here nvidia-cublas-cu12 from build/cuda12/site."""
    path = os.path.join(REPO, "build", "cuda", "libtf_rnn_ops_cuda.so")
    _require(path)
    if not os.path.exists(os.path.join(CUDA12_SITE, "nvidia", "cublas", "lib", "libcublas.so.12")):
        pytest.skip(f"no nvidia-cublas-cu12 in {CUDA12_SITE} (make gpu installs it there)")
    code = f"""
import ctypes, json, sys
sys.path.insert(0, {os.path.join(REPO, "tests", "gpu")!r})
import tfrnn_cuda_ctypes as tc
soname = tc.built_cublas({path!r})
loaded = tc.preload_cublas(soname)
# The NVRTC build needs CUDA 12's runtime too (a CUDA 12 PyTorch has it loaded already).
cudart = {os.path.join(CUDA12_NVRTC_SITE, "nvidia", "cuda_runtime", "lib", "libcudart.so.12")!r}
if b"libcudart.so.12" in open({path!r}, "rb").read() and __import__("os").path.exists(cudart):
    ctypes.CDLL(cudart, mode=ctypes.RTLD_GLOBAL)
lib = ctypes.CDLL({path!r})
print("RESULT" + json.dumps({{"soname": soname, "loaded": loaded, "api": lib.tfrnn_api_version(),
                             "emulated": lib.tfrnn_is_host_emulation()}}))
"""
    report = _report(_python(code, []))
    assert report["soname"] == "libcublas.so.12"
    assert os.path.realpath(report["loaded"]) == os.path.realpath(
        os.path.join(CUDA12_SITE, "nvidia", "cublas", "lib", "libcublas.so.12")
    )
    assert report["api"] >= 1 and report["emulated"] == 0


# ---------------------------------------------------------------- the two CPU builds
V4 = frozenset(_loader.X86_64_V4_FLAGS) | {"avx2", "fma", "sse4_2"}


@pytest.mark.parametrize(
    "flags,environ,twin_exists,want_twin",
    [
        (V4, {}, True, True),
        (V4, {"TF_RNN_OPS_NO_AVX512": ""}, True, True),
        (V4, {"TF_RNN_OPS_NO_AVX512": "0"}, True, True),
        (V4, {"TF_RNN_OPS_NO_AVX512": "1"}, True, False),
        (V4, {"TF_RNN_OPS_NO_AVX512": "yes"}, True, False),
        (V4, {}, False, False),  # a build without the twin (Bazel's, an old wheel)
        (V4 - {"avx512vl"}, {}, True, False),  # AVX-512F alone is not x86-64-v4
        (frozenset({"avx2", "fma"}), {}, True, False),
        (frozenset(), {}, True, False),  # flags unknown: the build that runs everywhere
    ],
)
def test_library_variant_picks_the_x86_64_v4_build_only_where_it_runs(
    tmp_path, flags, environ, twin_exists, want_twin
):
    base = tmp_path / "_tf_rnn_ops.so"
    base.write_bytes(b"")
    twin = tmp_path / "_tf_rnn_ops_avx512.so"
    if twin_exists:
        twin.write_bytes(b"")
    got = _loader.library_variant(str(base), flags=flags, environ=environ)
    assert got == str(twin if want_twin else base)


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512vl\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert _loader.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512f", "avx512vl"}
    assert _loader.cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize(
    "name,override,load",
    [
        ("_tf_rnn_ops.so", "TF_RNN_OPS_LIBRARY", _loader.ops),
        (
            "_tf_cudnn_cpu_kernels.so",
            "TF_RNN_OPS_TF_CUDNN_LIBRARY",
            _loader.load_tf_cudnn_cpu_kernels,
        ),
    ],
)
def test_this_process_loaded_the_build_the_rule_picks(name, override, load):
    """The library mapped into this process is the one `library_variant` names for this CPU and
    environment (both builds are made by `make build`; the override variable replaces the rule),
    and the other build is not mapped as well (each op and kernel registered once)."""
    if load() == []:
        pytest.skip("TensorFlow has its own CPU kernels for the CudnnRNN ops: nothing loaded")
    stem = name[: -len(".so")]
    with open("/proc/self/maps") as f:
        mapped = {
            os.path.realpath(line.split()[-1])
            for line in f
            if os.path.basename(line.split()[-1]) in (name, stem + _loader.AVX512_SUFFIX + ".so")
        }
    base = os.path.join(os.path.dirname(_loader.__file__), name)
    want = os.environ.get(override) or _loader.library_variant(base)
    assert mapped == {os.path.realpath(want)}, mapped
