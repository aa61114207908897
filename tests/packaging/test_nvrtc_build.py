"""The NVRTC build of the CUDA layer (`make gpu`, CUDA_COMPILER=nvrtc; cc/cuda/nvrtc_build.py,
cc/cuda/nvrtc_launch.h): no GPU needed.

* The generator's name handling (demangled names, name expressions, NVRTC's anonymous namespaces).
* The built libraries: every kernel the host code holds (its symbols in the linked library, found
  independently of the generator's scan) is registered, and its lowered name is a function of every
  embedded image: the CUBIN of each architecture (its ELF symbol table) and the PTX (its `.entry`).
* A launch with an argument of the wrong type does not compile; the right one does.
Run by `make gpu-check` (TF_RNN_OPS_GPU_LIB_REQUIRED=1: the built parts must be there).
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CUDA_BUILD = os.path.join(REPO, "build", "cuda")
NVRTC_BUILD = os.path.join(CUDA_BUILD, "nvrtc")
CUDA_LIB = os.path.join(CUDA_BUILD, "libtf_rnn_ops_cuda.so")
# The .cu.cc files with kernels (fused_rnn_cuda_checks.cu.cc has none).
MODULES = (
    "gru_block_cell_cuda",
    "fused_rnn_cuda",
    "convert_cuda",
    "layer_norm_rnn_cuda",
    "keras_rnn_dropout_cuda",
)

_spec = importlib.util.spec_from_file_location(
    "nvrtc_build", os.path.join(REPO, "cc", "cuda", "nvrtc_build.py")
)
nvrtc_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nvrtc_build)


# ---------------------------------------------------------------- the generator's names
@pytest.mark.parametrize(
    "demangled, qualified, base",
    [
        (
            "void tf_rnn_ops::cuda::(anonymous namespace)::K<float>(long, float*)",
            "tf_rnn_ops::cuda::(anonymous namespace)::K<float>",
            "K",
        ),
        (
            "tf_rnn_ops::cuda::(anonymous namespace)::Half16ToFloatKernel(long, bool, "
            "unsigned short const*, float*)",
            "tf_rnn_ops::cuda::(anonymous namespace)::Half16ToFloatKernel",
            "Half16ToFloatKernel",
        ),
        (
            "void a::S<a::Cell<(a::Mode)2>, true>(a::Args<double>)",
            "a::S<a::Cell<(a::Mode)2>, true>",
            "S",
        ),
        (
            "void a::b::FillKernel<double>(long, double, double*)",
            "a::b::FillKernel<double>",
            "FillKernel",
        ),
    ],
)
def test_split_demangled(demangled, qualified, base):
    assert nvrtc_build.split_demangled(demangled) == (qualified, base)


def test_split_demangled_refuses_what_is_not_a_function():
    assert nvrtc_build.split_demangled("typeinfo name for a::B") is None


def test_name_expression_drops_anonymous_namespaces():
    assert (
        nvrtc_build.name_expression("a::(anonymous namespace)::K<a::(anonymous namespace)::C>")
        == "a::K<a::C>"
    )


def test_normalize_mangled_equates_nvrtc_and_gxx_anonymous_namespaces():
    nvrtc = "_ZN1a42_GLOBAL__N__00000000_4_t_cu_fafe0dce_254671KIfEEvlPT_"
    gxx = "_ZN1a12_GLOBAL__N_11KIfEEvlPT_"
    assert nvrtc_build.normalize_mangled(nvrtc) == nvrtc_build.normalize_mangled(gxx) == gxx
    # Another kernel, or another template argument, stays different.
    assert nvrtc_build.normalize_mangled(nvrtc) != nvrtc_build.normalize_mangled(
        "_ZN1a12_GLOBAL__N_11KIdEEvlPT_"
    )
    assert nvrtc_build.normalize_mangled("_ZN1a1MIiEEvPT_") == "_ZN1a1MIiEEvPT_"


def test_kernel_names_are_the_global_functions_of_cc_cuda():
    names = nvrtc_build.kernel_names(os.path.join(REPO, "cc", "cuda"))
    assert {"FillKernel", "ForwardStepKernel", "Half16ToFloatKernel", "GatesKernel"} <= names
    assert "Fill" not in names and "LaunchForwardStep" not in names


# ---------------------------------------------------------------- the built modules
def _require(path: str) -> None:
    if not os.path.exists(path):
        if os.environ.get("TF_RNN_OPS_GPU_LIB_REQUIRED"):
            pytest.fail(f"{path} is not built (make gpu)")
        pytest.skip(f"{path} is not built (make gpu)")


def _nvrtc_built() -> None:
    _require(CUDA_LIB)
    if b"libcudart.so.12" not in open(CUDA_LIB, "rb").read():
        pytest.skip("the CUDA library is the nvcc build (CUDA_COMPILER=nvcc)")
    for m in MODULES:
        _require(os.path.join(NVRTC_BUILD, f"{m}.kernels.json"))


def _elf_functions(data: bytes) -> set[str]:
    """The names of the function symbols (STT_FUNC) in an ELF64 little-endian image's .symtab."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    names = set()
    for _, sh_type, _, _, off, size, link, _, _, entsize in sections:
        if sh_type != 2:  # SHT_SYMTAB
            continue
        stroff = sections[link][4]
        for i in range(size // entsize):
            st_name, st_info = struct.unpack_from("<IB", data, off + i * entsize)
            if st_info & 0xF == 2:  # STT_FUNC
                end = data.index(b"\0", stroff + st_name)
                names.add(data[stroff + st_name : end].decode())
    return names


def _modules() -> dict[str, dict]:
    out = {}
    for m in MODULES:
        with open(os.path.join(NVRTC_BUILD, f"{m}.kernels.json")) as f:
            out[m] = json.load(f)
    return out


# Run in a fresh process: loading CUDA's libraries here would change what the loader's tests find
# already loaded.
_IN_LIBRARY = """
import ctypes, json, sys
for line in open(sys.argv[2]).read().splitlines() + open(sys.argv[3]).read().splitlines():
    key, _, value = line.partition("=")
    if key in ("cudart", "lib"):
        ctypes.CDLL(value, mode=ctypes.RTLD_GLOBAL)
lib = ctypes.CDLL(sys.argv[1])
lib.tfrnn_nvrtc_kernels.restype = ctypes.c_char_p
lib.tfrnn_last_error.restype = ctypes.c_char_p
lib.tfrnn_convert_half16.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                                     ctypes.c_void_p, ctypes.c_void_p]
src = (ctypes.c_uint16 * 3)(0x3C00, 0x4000, 0xC000)
dst = (ctypes.c_float * 3)()
status = lib.tfrnn_convert_half16(None, 0, 1, 3, ctypes.addressof(src), ctypes.addressof(dst))
print("RESULT" + json.dumps({"kernels": lib.tfrnn_nvrtc_kernels().decode(), "status": status,
                             "error": lib.tfrnn_last_error().decode(), "dst": list(dst)}))
"""


def _in_library() -> dict:
    """What the built library registered (tfrnn_nvrtc_kernels) and the result of one launch (a
    half -> float conversion of host memory), from a fresh process."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _IN_LIBRARY,
            CUDA_LIB,
            os.path.join(CUDA_BUILD, "cuda12.env"),
            os.path.join(CUDA_BUILD, "cublas12.env"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][len("RESULT") :])


def _registered() -> list[tuple[str, ...]]:
    """(source, lowered name, images) of each kernel the built library registered."""
    return [tuple(line.split(" ")) for line in _in_library()["kernels"].splitlines()]


def test_every_kernel_is_in_every_image_of_its_module():
    _nvrtc_built()
    for m, info in _modules().items():
        assert info["images"] == ["sm_80", "sm_90", "compute_90"], (m, info["images"])
        assert info["kernels"], m
        for image in info["images"]:
            path = os.path.join(
                NVRTC_BUILD, f"{m}.{image}.{'ptx' if image.startswith('compute') else 'cubin'}"
            )
            data = open(path, "rb").read()
            if image.startswith("compute"):
                entries = set(re.findall(rb"\.entry\s+([\w$]+)\s*\(", data))
                names = {e.decode() for e in entries}
                assert re.search(rb"\.target\s+sm_90\b", data), path
            else:
                names = _elf_functions(data)
            for k in info["kernels"]:
                assert k["lowered"] in names, (path, k["expression"])


def test_the_library_registers_every_kernel_its_host_code_holds():
    """The kernels' host copies in the linked library (its local symbols, read with nm: independent
    of the generator's scan objects) are exactly the registered kernels, each with all images."""
    _nvrtc_built()
    registered = _registered()
    assert registered
    assert {images for _, _, images in registered} == {"80,90,ptx90"}
    names = nvrtc_build.kernel_names(os.path.join(REPO, "cc", "cuda"))
    held = {sym for sym, _ in nvrtc_build.host_kernels(CUDA_LIB, names)}
    assert held, "no kernel symbol in the library"
    norm = nvrtc_build.normalize_mangled
    assert {norm(s) for s in held} == {norm(lowered) for _, lowered, _ in registered}
    sources = {source for source, _, _ in registered}
    assert sources == {f"cc/cuda/{m}.cu.cc" for m in MODULES}


def _compile_launch(call: str) -> subprocess.CompletedProcess:
    includes = []
    for name in ("cuda12.env", "cublas12.env"):  # each has its inc=DIR[:DIR...]
        with open(os.path.join(CUDA_BUILD, name)) as f:
            for line in f:
                if line.startswith("inc="):
                    includes += [f"-isystem{d}" for d in line.strip()[4:].split(":")]
    source = (
        '#include "cc/cuda/cuda_util.h"\n'
        "void Check(cudaStream_t stream, float* out) {\n"
        "  auto kernel = &tf_rnn_ops::cuda::FillKernel<float>;\n"
        f"  {call};\n"
        "}\n"
    )
    return subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-fsyntax-only",
            "-DTF_RNN_CUDA_NVRTC",
            f"-I{REPO}",
            *includes,
            "-x",
            "c++",
            "-",
        ],
        input=source,
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_a_launch_converts_to_the_kernels_parameter_types_or_does_not_compile():
    _nvrtc_built()
    ok = _compile_launch("TF_RNN_LAUNCH(kernel, 1, 256, stream, int64_t{3}, 1.5f, out)")
    assert ok.returncode == 0, ok.stderr
    # int -> int64_t and double -> float convert, as in a call.
    ok = _compile_launch("TF_RNN_LAUNCH(kernel, 1, 256, stream, 3, 1.5, out)")
    assert ok.returncode == 0, ok.stderr
    wrong_pointer = _compile_launch(
        "double* d = nullptr; TF_RNN_LAUNCH(kernel, 1, 256, stream, int64_t{3}, 1.5f, d)"
    )
    assert wrong_pointer.returncode != 0 and "double*" in wrong_pointer.stderr
    too_few = _compile_launch("TF_RNN_LAUNCH(kernel, 1, 256, stream, int64_t{3}, 1.5f)")
    assert too_few.returncode != 0 and "wrong number of kernel arguments" in too_few.stderr


def test_a_launch_without_a_driver_fails_with_the_kernels_name_and_does_not_crash():
    """Where no CUDA driver is (CI), the launcher cannot reach the driver API: the launch's error
    reaches the caller through cudaGetLastError, named after the kernel, as nvcc's launches do."""
    _nvrtc_built()
    try:
        ctypes.CDLL("libcuda.so.1")
        pytest.skip("a CUDA driver is installed here")
    except OSError:
        pass
    result = _in_library()
    assert result["status"] != 0
    assert "Half16ToFloatKernel" in result["error"], result["error"]
    assert result["dst"] == [0.0, 0.0, 0.0]  # nothing ran
