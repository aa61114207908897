#!/usr/bin/env python3
"""Compiles the kernels of one cc/cuda/*.cu.cc with NVRTC 12 for the library (nvrtc_launch.h).

    nvrtc_build.py --nvrtc libnvrtc.so.12 --source cc/cuda/X.cu.cc --scan X.scan.o --out DIR \
        --arch 80 --arch 90 [--ptx 90]

1. The kernels: the __global__ functions (their names found in cc/cuda/) that the host object
   `--scan` (the file compiled by g++ with TF_RNN_CUDA_NVRTC) defines: every kernel its host code
   launches is instantiated there, since a launch takes the kernel's address.
2. NVRTC compiles the source (host code hidden by `__CUDACC_RTC__`, cc/cuda/cuda_compat.h) with
   those name expressions to CUBIN for each --arch and PTX for --ptx (default: the last --arch);
   every kernel's lowered name must be g++'s mangled name of the same function (anonymous namespaces
   aside, which NVRTC names per file) and appear in every image, or the build fails.
3. Writes DIR/X.<sm_NN|compute_NN>.{cubin,ptx}, DIR/X.kernels.json (what was checked) and
   DIR/X.nvrtc.cc: the source itself followed by the images (.incbin) and the table that registers
   {host address, lowered name} (compiled by g++ into the library instead of the source).
Only the standard library and ctypes: runs with any Python 3.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NVRTC_INCLUDE = "cc/cuda/nvrtc_include"
_GLOBAL_RE = re.compile(r"__global__\s+void\s+(\w+)\s*\(")
_ANON = "(anonymous namespace)::"


def kernel_names(directory: str) -> set[str]:
    """The names of the __global__ functions defined in `directory`'s sources."""
    names: set[str] = set()
    for name in sorted(os.listdir(directory)):
        if name.endswith((".h", ".cc")):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                names.update(_GLOBAL_RE.findall(f.read()))
    return names


def split_demangled(demangled: str) -> tuple[str, str] | None:
    """(qualified name with template arguments, unqualified base name) of a demangled function
    symbol, e.g. "void a::(anonymous namespace)::K<float>(long, float*)" -> ("a::(anonymous
    namespace)::K<float>", "K"); None for what is not a function."""
    depth = 0
    paren = -1
    for i, ch in enumerate(demangled):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0 and not demangled.startswith(_ANON[:-2], i):
            paren = i
            break
    if paren < 0:
        return None
    qualified = demangled[:paren]
    if qualified.startswith("void "):  # a template function's demangled name has its return type
        qualified = qualified[len("void ") :]
    depth = 0
    last = 0
    for i, ch in enumerate(qualified):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0 and qualified.startswith("::", i):
            last = i + 2
    base = qualified[last:].split("<", 1)[0]
    return qualified, base


def name_expression(qualified: str) -> str:
    """The NVRTC name expression of a kernel: its qualified name, the anonymous namespaces left out
    (their members are found through the enclosing namespace)."""
    return qualified.replace(_ANON, "")


def normalize_mangled(name: str) -> str:
    """A mangled name with every anonymous namespace's identifier replaced by g++'s
    (`12_GLOBAL__N_1`): NVRTC makes them unique per file."""
    out = []
    i = 0
    while i < len(name):
        m = re.compile(r"(\d+)_GLOBAL__N_").match(name, i)
        if m is not None:
            length = int(m.group(1))
            start = m.start() + len(m.group(1))
            out.append("12_GLOBAL__N_1")
            i = start + length
            continue
        out.append(name[i])
        i += 1
    return "".join(out)


def host_kernels(scan_object: str, names: set[str]) -> list[tuple[str, str]]:
    """(mangled symbol, qualified name) of each kernel the host object defines."""
    nm = subprocess.run(
        ["nm", "--defined-only", scan_object], check=True, capture_output=True, text=True
    ).stdout
    symbols = [f[2] for f in (line.split() for line in nm.splitlines()) if len(f) == 3]
    symbols = [s for s in symbols if s.startswith("_Z")]
    demangled = subprocess.run(
        ["c++filt"], input="\n".join(symbols), check=True, capture_output=True, text=True
    ).stdout.splitlines()
    kernels = {}
    for symbol, d in zip(symbols, demangled, strict=True):
        parts = split_demangled(d)
        if parts is not None and parts[1] in names:
            kernels[symbol] = parts[0]
    return sorted(kernels.items())


class Nvrtc:
    """The few NVRTC calls this needs, over ctypes."""

    def __init__(self, path: str):
        # NVRTC opens its builtins library by soname; where no run path leads to it (CUDA 13's pip
        # layout), loading it from NVRTC's own folder first lets that lookup find it.
        folder = os.path.dirname(os.path.abspath(path))
        for builtins in sorted(glob.glob(os.path.join(folder, "libnvrtc-builtins.so.*"))):
            ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(path)
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "version")
        self.version = (major.value, minor.value)

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"nvrtc {what}: {self.lib.nvrtcGetErrorString(status).decode()}")

    def compile(
        self, source: str, path: str, expressions: list[str], options: list[str], ptx: bool
    ) -> tuple[bytes, dict[str, str]]:
        """(image, {expression: lowered name}); raises with NVRTC's log on an error."""
        prog = ctypes.c_void_p()
        self._check(
            self.lib.nvrtcCreateProgram(
                ctypes.byref(prog), source.encode(), path.encode(), 0, None, None
            ),
            "create",
        )
        try:
            for e in expressions:
                self._check(self.lib.nvrtcAddNameExpression(prog, e.encode()), f"name {e}")
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            status = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            self.lib.nvrtcGetProgramLog(prog, log)
            if status != 0:
                raise RuntimeError(
                    f"NVRTC could not compile {path} ({' '.join(options)}):\n"
                    + log.value.decode(errors="replace")
                )
            get_size, get = (
                (self.lib.nvrtcGetPTXSize, self.lib.nvrtcGetPTX)
                if ptx
                else (self.lib.nvrtcGetCUBINSize, self.lib.nvrtcGetCUBIN)
            )
            self._check(get_size(prog, ctypes.byref(size)), "image size")
            image = ctypes.create_string_buffer(size.value)
            self._check(get(prog, image), "image")
            lowered = {}
            for e in expressions:
                name = ctypes.c_char_p()
                self._check(
                    self.lib.nvrtcGetLoweredName(prog, e.encode(), ctypes.byref(name)), "lowered"
                )
                lowered[e] = name.value.decode()
            return image.raw, lowered
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def image_has_kernel(image: bytes, lowered: str, ptx: bool) -> bool:
    """Whether the CUBIN's string table / the PTX's entries name the kernel."""
    if ptx:
        entry = rb"\.entry\s+" + re.escape(lowered.encode()) + rb"\s*\("
        return re.search(entry, image) is not None
    return b"\0" + lowered.encode() + b"\0" in image


def write_registry(path: str, source: str, stem: str, images, kernels) -> None:
    """The generated TU: the source, the images (.incbin) and the self-registering table."""
    lines = [
        f"// Generated by cc/cuda/nvrtc_build.py from {source}: do not edit.",
        f'#include "{source}"',
        '#include "cc/cuda/nvrtc_launch.h"',
        "",
    ]
    ident = re.sub(r"\W", "_", stem)
    decls = []
    for tag, file, _, _ in images:
        sym = f"tfrnn_nvrtc_{ident}_{tag}"
        lines.append(
            f'__asm__(".section .rodata\\n.balign 16\\n.globl {sym}\\n.hidden {sym}\\n'
            f'{sym}:\\n.incbin \\"{file}\\"\\n.byte 0\\n.previous");'
        )
        decls.append(sym)
    lines.append('extern "C" {')
    lines += [f"extern const unsigned char {sym}[];" for sym in decls]
    lines += ["}", "", "namespace {", ""]
    lines.append("const ::tf_rnn_ops::cuda::nvrtc::Image kTfRnnNvrtcImages[] = {")
    for (_, file, arch, ptx), sym in zip(images, decls, strict=True):
        size = os.path.getsize(file) + (1 if ptx else 0)
        lines.append(f"    {{{arch}, {'true' if ptx else 'false'}, {sym}, {size}}},")
    lines.append("};")
    lines.append("const ::tf_rnn_ops::cuda::nvrtc::Kernel kTfRnnNvrtcKernels[] = {")
    for k in kernels:
        lines.append(
            f'    {{reinterpret_cast<const void*>(&{k["expression"]}),\n     "{k["lowered"]}"}},'
        )
    lines.append("};")
    lines += [
        "const ::tf_rnn_ops::cuda::nvrtc::Module kTfRnnNvrtcModule = {",
        f'    "{source}", kTfRnnNvrtcImages, {len(images)}, kTfRnnNvrtcKernels, {len(kernels)}}};',
        "const bool kTfRnnNvrtcRegistered =",
        "    ::tf_rnn_ops::cuda::nvrtc::Register(&kTfRnnNvrtcModule);",
        "",
        "}  // namespace",
        "",
    ]
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvrtc", required=True, help="libnvrtc.so.12")
    ap.add_argument("--print-version", action="store_true", help="print NVRTC's version, e.g. 12.9")
    ap.add_argument("--source", help="the .cu.cc, relative to the repository")
    ap.add_argument("--scan", help="its host object (g++, TF_RNN_CUDA_NVRTC)")
    ap.add_argument("--out", help="the output folder")
    ap.add_argument("--arch", type=int, action="append", help="SASS, e.g. 80")
    ap.add_argument("--ptx", type=int, help="the PTX's architecture (default: the last --arch)")
    ap.add_argument("--registry", help="the generated .cc (default: OUT/STEM.nvrtc.cc)")
    args = ap.parse_args(argv)
    if args.print_version:
        major, minor = Nvrtc(args.nvrtc).version
        print(f"{major}.{minor}")
        return 0
    if not (args.source and args.scan and args.out and args.arch):
        ap.error("--source, --scan, --out and --arch are needed")

    stem = os.path.basename(args.source).split(".")[0]
    os.makedirs(args.out, exist_ok=True)
    found = host_kernels(args.scan, kernel_names(os.path.join(REPO, "cc", "cuda")))
    kernels = [
        {"host_symbol": sym, "expression": name_expression(q), "qualified": q} for sym, q in found
    ]
    images = []  # (tag, file, arch, ptx)
    checked: dict[str, list[str]] = {k["host_symbol"]: [] for k in kernels}
    if kernels:
        nvrtc = Nvrtc(args.nvrtc)
        with open(os.path.join(REPO, args.source), encoding="utf-8") as f:
            text = f.read()
        expressions = [k["expression"] for k in kernels]
        ptx_arch = args.ptx or args.arch[-1]
        # -default-device: the unannotated constexpr helpers of the cells (rnn_cells.h) are device
        # functions here (for nvcc, --expt-relaxed-constexpr makes them so).
        common = [
            "-std=c++17",
            "-default-device",
            f"-I{REPO}",
            f"-I{os.path.join(REPO, NVRTC_INCLUDE)}",
        ]
        targets = [(f"sm_{a}", a, False) for a in args.arch] + [
            (f"compute_{ptx_arch}", ptx_arch, True)
        ]
        for tag, arch, ptx in targets:
            image, lowered = nvrtc.compile(
                text, args.source, expressions, [*common, f"--gpu-architecture={tag}"], ptx
            )
            for k in kernels:
                name = lowered[k["expression"]]
                if normalize_mangled(name) != normalize_mangled(k["host_symbol"]):
                    raise SystemExit(
                        f"{args.source}: {k['expression']}: NVRTC names it {name}, g++ "
                        f"{k['host_symbol']}: the launch could not find it"
                    )
                if not image_has_kernel(image, name, ptx):
                    raise SystemExit(f"{args.source}: {tag} has no {name}")
                k["lowered"] = name
                checked[k["host_symbol"]].append(tag)
            file = os.path.join(args.out, f"{stem}.{tag}.{'ptx' if ptx else 'cubin'}")
            with open(file + ".tmp", "wb") as f:
                f.write(image.rstrip(b"\0") if ptx else image)
            os.replace(file + ".tmp", file)
            images.append((tag, file, arch, ptx))
        version = ".".join(map(str, nvrtc.version))
    else:
        version = None
    for k in kernels:
        k["images"] = checked[k["host_symbol"]]
    with open(os.path.join(args.out, f"{stem}.kernels.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "source": args.source,
                "nvrtc": version,
                "images": [t for t, *_ in images],
                "kernels": kernels,
            },
            f,
            indent=1,
        )
    write_registry(
        args.registry or os.path.join(args.out, f"{stem}.nvrtc.cc"),
        args.source,
        stem,
        images,
        kernels,
    )
    print(
        f"nvrtc_build.py: {args.source}: {len(kernels)} kernels, "
        f"{', '.join(t for t, *_ in images) or 'no images'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
