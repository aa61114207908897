"""ctypes binding of the CUDA layer's C API (cc/cuda/c_api.h), over two kinds of buffers:

* torch CUDA tensors (the real library, build/cuda/libtf_rnn_ops_cuda.so, on a machine with a GPU);
* numpy arrays (the host emulation, build/cuda/emu/libtf_rnn_ops_cuda_emu.so, anywhere).
"""

from __future__ import annotations

import ctypes
import json
import os
import runpy
import sys

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GPU_LIBRARY = os.environ.get("TF_RNN_OPS_CUDA_LIB") or os.path.join(
    REPO, "build", "cuda", "libtf_rnn_ops_cuda.so"
)
EMU_LIBRARY = os.environ.get("TF_RNN_OPS_CUDA_EMU_LIB") or os.path.join(
    REPO, "build", "cuda", "emu", "libtf_rnn_ops_cuda_emu.so"
)

DTYPES = {"float32": 0, "float64": 1}
# The C API's rnn_mode values (c_api.h): the index in the package's mode table, read by path
# (tf_rnn_ops/_modes.py imports nothing; this binding runs without TensorFlow).
MODES: dict[str, int] = {
    mode: i
    for i, mode in enumerate(
        runpy.run_path(os.path.join(REPO, "tf_rnn_ops", "_modes.py"))["RNN_MODES"]
    )
}
ERRORS = {1: "invalid argument", 2: "CUDA error", 3: "cuBLAS error"}

_VP = ctypes.c_void_p
_I64 = ctypes.c_int64


class RnnDesc(ctypes.Structure):
    _fields_ = [
        ("dtype", _I64),
        ("rnn_mode", _I64),
        ("skip_input", _I64),
        ("num_layers", _I64),
        ("num_dirs", _I64),
        ("num_units", _I64),
        ("num_proj", _I64),
        ("input_size", _I64),
        ("max_time", _I64),
        ("batch", _I64),
        ("time_major", _I64),
        ("is_training", _I64),
        ("dropout", ctypes.c_double),
        ("seed", ctypes.c_uint64),
        ("seed2", ctypes.c_uint64),
    ]


class KerasDropoutDesc(ctypes.Structure):
    _fields_ = [
        ("dtype", _I64),
        ("rnn_mode", _I64),
        ("num_units", _I64),
        ("max_time", _I64),
        ("batch", _I64),
        ("time_major", _I64),
        ("is_training", _I64),
        ("has_recurrent_bias", _I64),
        ("has_masks", _I64),
        ("zoneout", _I64),
        ("has_input_bias", _I64),
        ("gate_major", _I64),
    ]


ZONEOUT_KINDS = {"none": 0, "mask": 1, "scalar": 2}


class TfRnnCudaError(RuntimeError):
    def __init__(self, code: int, message: str):
        super().__init__(f"{ERRORS.get(code, code)}: {message}")
        self.code = code


def _declare(lib):
    i32p = ctypes.POINTER(ctypes.c_int32)
    descp = ctypes.POINTER(RnnDesc)
    kdescp = ctypes.POINTER(KerasDropoutDesc)
    sigs = {
        "tfrnn_api_version": (ctypes.c_int, []),
        "tfrnn_is_host_emulation": (ctypes.c_int, []),
        "tfrnn_last_error": (ctypes.c_char_p, []),
        "tfrnn_blas_create": (ctypes.c_int, [ctypes.POINTER(_VP)]),
        "tfrnn_blas_destroy": (ctypes.c_int, [_VP]),
        "tfrnn_blas_set_tf32": (ctypes.c_int, [_VP, ctypes.c_int]),
        "tfrnn_set_fused_steps": (ctypes.c_int, [ctypes.c_int]),
        "tfrnn_gru_block_cell_workspace_bytes": (_I64, [ctypes.c_int, _I64, _I64, _I64]),
        "tfrnn_gru_block_cell_forward": (
            ctypes.c_int,
            [_VP, _VP, ctypes.c_int, _I64, _I64, _I64] + [_VP] * 11,
        ),
        "tfrnn_gru_block_cell_backward": (
            ctypes.c_int,
            [_VP, _VP, ctypes.c_int, _I64, _I64, _I64] + [_VP] * 15,
        ),
        "tfrnn_convert_half16": (
            ctypes.c_int,
            [_VP, ctypes.c_int, ctypes.c_int, _I64, _VP, _VP],
        ),
        "tfrnn_rnn_params_size": (_I64, [descp]),
        "tfrnn_rnn_sizes": (
            ctypes.c_int,
            [descp, ctypes.POINTER(_I64), ctypes.POINTER(_I64), ctypes.POINTER(_I64)],
        ),
        "tfrnn_rnn_forward": (ctypes.c_int, [_VP, _VP, descp, i32p] + [_VP] * 9),
        "tfrnn_rnn_backward": (ctypes.c_int, [_VP, _VP, descp, i32p] + [_VP] * 11),
        "tfrnn_keras_dropout_sizes": (
            ctypes.c_int,
            [kdescp, ctypes.POINTER(_I64), ctypes.POINTER(_I64), ctypes.POINTER(_I64)],
        ),
        "tfrnn_keras_dropout_forward": (ctypes.c_int, [_VP, _VP, kdescp, i32p] + [_VP] * 12),
        "tfrnn_keras_dropout_backward": (ctypes.c_int, [_VP, _VP, kdescp, i32p] + [_VP] * 13),
    }
    sigs.update(_layer_norm_sigs())
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


class KerasDropout:
    """TfRnn>KerasRNNDropout's recurrence (cc/cuda/keras_rnn_dropout_cuda.h) for one rnn_mode and
    num_units: Keras' layouts and gate column orders."""

    def __init__(self, lib: Library, mode: str, units: int, dtype: str, time_major: bool,
                 gate_major: bool = False):  # fmt: skip
        self.lib, self.mode, self.units, self.dtype = lib, mode, units, dtype
        self.time_major = time_major
        self.gate_major = gate_major  # projected [G, B, T, H] ([G, T, B, H]), and its grad

    def desc(self, max_time, batch, is_training, rbias, masks, zoneout):
        return KerasDropoutDesc(
            DTYPES[self.dtype],
            MODES[self.mode],
            self.units,
            max_time,
            batch,
            int(self.time_major),
            int(is_training),
            int(rbias is not None),
            int(masks is not None),
            ZONEOUT_KINDS[_zoneout_kind(zoneout)],
            int(rbias is not None and len(tuple(rbias.shape)) == 2),
            int(self.gate_major),
        )

    def sizes(self, d):
        fw, rs, bw = _I64(), _I64(), _I64()
        self.lib.check(
            self.lib.lib.tfrnn_keras_dropout_sizes(
                ctypes.byref(d), ctypes.byref(fw), ctypes.byref(rs), ctypes.byref(bw)
            )
        )
        return fw.value, rs.value, bw.value

    def _tb(self, projected):
        return self._steps_batch(tuple(projected.shape))

    def _steps_batch(self, projected_shape):
        a, b = projected_shape[int(self.gate_major)], projected_shape[int(self.gate_major) + 1]
        return (a, b) if self.time_major else (b, a)

    def forward(self, projected, h0, c0, rkernel, rbias=None, masks=None, zoneout=None,
                lengths=None, is_training=True):  # fmt: skip
        """Returns (y, hy, cy, reserve); cy is None unless lstm, reserve None unless training."""
        be, H = self.lib.backend, self.units
        steps, batch = self._tb(projected)
        seq = (steps, batch) if self.time_major else (batch, steps)
        y = be.empty(seq + (H,), self.dtype)
        hy = be.empty((batch, H), self.dtype)
        cy = be.empty((batch, H), self.dtype) if self.mode == "lstm" else None
        d = self.desc(steps, batch, is_training, rbias, masks, zoneout)
        fw, rs, _ = self.sizes(d)
        ws, reserve = be.workspace(fw), (be.workspace(rs) if is_training else None)
        lens = FusedRnn._lengths(lengths)
        ptrs = [projected, h0, c0, rkernel, rbias, masks, zoneout, y, hy, cy, reserve, ws]
        self.lib.check(
            self.lib.lib.tfrnn_keras_dropout_forward(
                self.lib.blas,
                be.stream,
                ctypes.byref(d),
                None if lens is None else lens[1],
                *map(be.ptr, ptrs),
            )
        )
        return y, hy, cy, reserve

    def backward(self, projected_shape, rkernel, rbias, masks, zoneout, dy, dhy, dcy, reserve,
                 lengths=None, want_states=True):  # fmt: skip
        """Returns (d_projected, dh0, dc0, d_recurrent_kernel, d_recurrent_bias); dh0 and dc0 are
        None (not computed) unless want_states."""
        be, H = self.lib.backend, self.units
        steps, batch = self._steps_batch(tuple(projected_shape))
        d = self.desc(steps, batch, True, rbias, masks, zoneout)
        _, _, bw = self.sizes(d)
        d_proj = be.empty(tuple(projected_shape), self.dtype)
        dh0 = be.empty((batch, H), self.dtype) if want_states else None
        dc0 = be.empty((batch, H), self.dtype) if self.mode == "lstm" and want_states else None
        drk = be.empty(tuple(rkernel.shape), self.dtype)
        drb = be.empty(tuple(rbias.shape), self.dtype) if rbias is not None else None
        ws = be.workspace(bw)
        lens = FusedRnn._lengths(lengths)
        ptrs = [rkernel, masks, zoneout, dy, dhy, dcy, reserve, d_proj, dh0, dc0, drk, drb, ws]
        self.lib.check(
            self.lib.lib.tfrnn_keras_dropout_backward(
                self.lib.blas,
                be.stream,
                ctypes.byref(d),
                None if lens is None else lens[1],
                *map(be.ptr, ptrs),
            )
        )
        return d_proj, dh0, dc0, drk, drb


def _zoneout_kind(zoneout) -> str:
    if zoneout is None:
        return "none"
    # A mask is [T, B, H]; one value (0-d, or [1] as numpy's ascontiguousarray makes it) is k.
    return "mask" if len(tuple(zoneout.shape)) == 3 else "scalar"


class NumpyBackend:
    """Host arrays, for the emulation library."""

    name = "numpy"
    stream = None

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def from_numpy(self, a, dtype):
        return np.ascontiguousarray(a, dtype=dtype)

    def holds(self, a, dtype):
        """Whether `a` is already a buffer of this backend in `dtype` (passed as it is)."""
        return isinstance(a, np.ndarray) and a.dtype == np.dtype(dtype) and a.flags.c_contiguous

    def to_numpy(self, a):
        return None if a is None else np.asarray(a)

    def ptr(self, a):
        if a is None:
            return None
        assert a.flags.c_contiguous
        return a.ctypes.data

    def workspace(self, nbytes):
        # 256-byte aligned host memory
        raw = np.zeros(int(nbytes) + 256, dtype=np.uint8)
        off = (-raw.ctypes.data) % 256
        return raw[off : off + int(nbytes)] if nbytes else None

    def synchronize(self):
        pass


class TorchBackend:
    """torch CUDA tensors on the current stream, for the real library (or CPU tensors, for the
    emulation library)."""

    name = "torch"

    def __init__(self, device="cuda"):
        import torch

        self.torch = torch
        self.device = device
        self._dtypes = {"float32": torch.float32, "float64": torch.float64}

    @property
    def stream(self):
        if self.device == "cpu":
            return None
        return self.torch.cuda.current_stream().cuda_stream

    def empty(self, shape, dtype):
        return self.torch.empty(shape, dtype=self._dtypes[dtype], device=self.device)

    def zeros(self, shape, dtype):
        return self.torch.zeros(shape, dtype=self._dtypes[dtype], device=self.device)

    def from_numpy(self, a, dtype):
        t = self.torch.as_tensor(np.asarray(a), dtype=self._dtypes[dtype], device=self.device)
        return t.contiguous()

    def holds(self, a, dtype):
        """Whether `a` is already a buffer of this backend in `dtype` (passed as it is)."""
        torch = self.torch
        return (
            isinstance(a, torch.Tensor)
            and a.device.type == self.device
            and a.dtype == self._dtypes[dtype]
            and a.is_contiguous()
        )

    def to_numpy(self, a):
        return None if a is None else a.detach().double().cpu().numpy()

    def ptr(self, a):
        if a is None:
            return None
        assert a.is_contiguous() and a.device.type == self.device
        return a.data_ptr()

    def workspace(self, nbytes):
        if not nbytes:
            return None
        if self.device == "cpu":  # 256-byte aligned host memory
            raw = self.torch.zeros(int(nbytes) + 256, dtype=self.torch.uint8)
            off = (-raw.data_ptr()) % 256
            return raw[off : off + int(nbytes)]
        return self.torch.empty(int(nbytes), dtype=self.torch.uint8, device=self.device)

    def synchronize(self):
        if self.device != "cpu":
            self.torch.cuda.synchronize()


# Where NVIDIA's pip packages keep each cuBLAS (nvidia-cublas-cu12, the CUDA 12 one TensorFlow uses;
# nvidia-cublas 13, PyTorch's cu13 builds), relative to site-packages.
CUBLAS_PACKAGE_DIRS = {"libcublas.so.12": "nvidia/cublas/lib", "libcublas.so.13": "nvidia/cu13/lib"}
CUDA12_SITE = os.path.join(REPO, "build", "cuda12", "site")  # `make gpu`'s nvidia-cublas-cu12


def built_cublas(path: str) -> str | None:
    """The cuBLAS soname the library at `path` was built against (its TFRNN_GPU_BUILD_INFO string,
    cc/cuda/cuda.mk), or None (the emulation library has none)."""
    with open(path, "rb") as f:
        data = f.read()
    start = data.find(b"TFRNN_GPU_BUILD_INFO")
    if start < 0:
        return None
    start += len(b"TFRNN_GPU_BUILD_INFO")
    return json.loads(data[start : data.find(b"\0", start)])["cublas"]


def preload_cublas(soname: str) -> str:
    """Loads `soname` for the CUDA library, which records only the soname (no run path): PyTorch's
    own when it is that one (already loaded, or in its nvidia package), else the nvidia package on
    sys.path or in build/cuda12/site. Returns the file loaded (or the soname)."""
    sub = CUBLAS_PACKAGE_DIRS.get(soname, "")
    for d in [*sys.path, CUDA12_SITE]:
        candidate = os.path.join(os.path.abspath(d or "."), sub, soname)
        if sub and os.path.isfile(candidate):
            ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
            return candidate
    ctypes.CDLL(soname, mode=ctypes.RTLD_GLOBAL)
    return soname


class Library:
    def __init__(self, path: str, backend):
        soname = built_cublas(path)
        self.cublas = preload_cublas(soname) if soname else None
        self.lib = ctypes.CDLL(path)
        _declare(self.lib)
        self.backend = backend
        self.emulated = bool(self.lib.tfrnn_is_host_emulation())
        handle = _VP()
        self.check(self.lib.tfrnn_blas_create(ctypes.byref(handle)))
        self.blas = handle

    def close(self):
        if self.blas is not None:
            self.lib.tfrnn_blas_destroy(self.blas)
            self.blas = None

    def check(self, rc: int):
        if rc != 0:
            raise TfRnnCudaError(rc, self.lib.tfrnn_last_error().decode())

    def set_tf32(self, enable: bool):
        self.check(self.lib.tfrnn_blas_set_tf32(self.blas, int(enable)))

    def set_fused_steps(self, mode: int) -> int:
        """The fused RNN's forward steps (process-wide): 0 a cuBLAS GEMM and a gate kernel (the
        default), 1 one fused kernel where the cell allows. Returns the previous setting."""
        return self.lib.tfrnn_set_fused_steps(int(mode))

    # ------------------------------------------------------------------------------ GRU block cell
    def gru_block_cell(self, x, h_prev, w_ru, w_c, b_ru, b_c, dtype):
        be = self.backend
        batch, isz = x.shape
        hsz = h_prev.shape[1]
        outs = [be.empty((batch, hsz), dtype) for _ in range(4)]
        ws = be.workspace(
            self.lib.tfrnn_gru_block_cell_workspace_bytes(DTYPES[dtype], batch, isz, hsz)
        )
        args = [x, h_prev, w_ru, w_c, b_ru, b_c, *outs, ws]
        self.check(
            self.lib.tfrnn_gru_block_cell_forward(
                self.blas, be.stream, DTYPES[dtype], batch, isz, hsz, *map(be.ptr, args)
            )
        )
        return outs

    def gru_block_cell_grad(self, x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h, dtype):
        be = self.backend
        batch, isz = x.shape
        hsz = h_prev.shape[1]
        d_x = be.empty((batch, isz), dtype)
        d_h_prev = be.empty((batch, hsz), dtype)
        d_c_bar = be.empty((batch, hsz), dtype)
        d_rbub = be.empty((batch, 2 * hsz), dtype)
        ws = be.workspace(
            self.lib.tfrnn_gru_block_cell_workspace_bytes(DTYPES[dtype], batch, isz, hsz)
        )
        args = [x, h_prev, w_ru, w_c, b_ru, b_c, r, u, c, d_h, d_x, d_h_prev, d_c_bar, d_rbub, ws]
        self.check(
            self.lib.tfrnn_gru_block_cell_backward(
                self.blas, be.stream, DTYPES[dtype], batch, isz, hsz, *map(be.ptr, args)
            )
        )
        return d_x, d_h_prev, d_c_bar, d_rbub

    def convert_half16(self, kind: str, to_float: bool, src, dst):
        """kind: "float16" or "bfloat16"; src / dst: buffers of the same number of elements."""
        be = self.backend
        n = int(np.prod(src.shape))
        k = {"float16": 0, "bfloat16": 1}[kind]
        rc = self.lib.tfrnn_convert_half16(be.stream, k, int(to_float), n, be.ptr(src), be.ptr(dst))
        self.check(rc)

    def layer_norm_rnn(self, cell: str, dtype: str = "float64", time_major: bool = True):
        """The fused layer-norm LSTM / GRU (cell: "layer_norm_lstm" or "layer_norm_gru"), x, y
        and their grads time-major or (time_major=False) batch-major."""
        return LayerNormRnn(self, cell, dtype, time_major)

    # ------------------------------------------------------------------------------ fused RNN
    def rnn(self, shape, dtype="float64", time_major=True, dropout=0.0, seed=0, seed2=0):
        return FusedRnn(self, shape, dtype, time_major, dropout, seed, seed2)

    def keras_dropout(self, mode, units, dtype="float64", time_major=False, gate_major=False):
        return KerasDropout(self, mode, units, dtype, time_major, gate_major)


class FusedRnn:
    """One fused RNN configuration (shape: cuda_rnn_reference.RnnShape)."""

    def __init__(self, lib: Library, shape, dtype, time_major, dropout, seed, seed2):
        self.lib, self.shape, self.dtype = lib, shape, dtype
        self.time_major, self.dropout, self.seed, self.seed2 = time_major, dropout, seed, seed2

    def desc(self, max_time, batch, is_training):
        s = self.shape
        return RnnDesc(
            DTYPES[self.dtype],
            MODES[s.mode],
            int(s.skip_input),
            s.num_layers,
            s.num_dirs,
            s.num_units,
            s.num_proj,
            s.input_size,
            max_time,
            batch,
            int(self.time_major),
            int(is_training),
            float(self.dropout),
            int(self.seed),
            int(self.seed2),
        )

    def _tb(self, x):
        steps, batch = (x.shape[0], x.shape[1]) if self.time_major else (x.shape[1], x.shape[0])
        return steps, batch

    def params_size(self):
        n = self.lib.lib.tfrnn_rnn_params_size(ctypes.byref(self.desc(1, 1, False)))
        if n < 0:
            self.lib.check(1)
        return n

    def sizes(self, max_time, batch, is_training):
        fw, rs, bw = _I64(), _I64(), _I64()
        d = self.desc(max_time, batch, is_training)
        self.lib.check(
            self.lib.lib.tfrnn_rnn_sizes(
                ctypes.byref(d), ctypes.byref(fw), ctypes.byref(rs), ctypes.byref(bw)
            )
        )
        return fw.value, rs.value, bw.value

    def state_shape(self, batch, width):
        n = self.shape.num_dirs * self.shape.num_layers
        return (n, batch, width) if self.time_major else (batch, n, width)

    @staticmethod
    def _lengths(lengths):
        if lengths is None:
            return None
        arr = np.ascontiguousarray(lengths, dtype=np.int32)
        return arr, arr.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))

    def forward(self, x, h0, c0, params, lengths=None, is_training=False):
        be, s = self.lib.backend, self.shape
        steps, batch = self._tb(x)
        seq = (steps, batch) if self.time_major else (batch, steps)
        y = be.empty(seq + (s.num_dirs * s.h_out,), self.dtype)
        hy = be.empty(self.state_shape(batch, s.h_out), self.dtype)
        cy = (
            be.empty(self.state_shape(batch, s.num_units), self.dtype) if s.mode == "lstm" else None
        )
        fw, rs, _ = self.sizes(steps, batch, is_training)
        ws = be.workspace(fw)
        reserve = be.workspace(rs) if is_training else None
        lens = self._lengths(lengths)
        d = self.desc(steps, batch, is_training)
        self.lib.check(
            self.lib.lib.tfrnn_rnn_forward(
                self.lib.blas,
                be.stream,
                ctypes.byref(d),
                None if lens is None else lens[1],
                *map(be.ptr, [x, h0, c0, params, y, hy, cy, reserve, ws]),
            )
        )
        return y, hy, cy, reserve

    def backward(
        self, x, params, dy, dhy, dcy, reserve, lengths=None, want_dx=True, want_states=True
    ):
        """Returns (dx, dh0, dc0, dparams); dx is None (not computed) unless want_dx, dh0 and dc0
        unless want_states."""
        be, s = self.lib.backend, self.shape
        steps, batch = self._tb(x)
        dx = be.empty(tuple(x.shape), self.dtype) if want_dx else None
        dh0 = be.empty(self.state_shape(batch, s.h_out), self.dtype) if want_states else None
        dc0 = (
            be.empty(self.state_shape(batch, s.num_units), self.dtype)
            if s.mode == "lstm" and want_states
            else None
        )
        dparams = be.empty((self.params_size(),), self.dtype)
        _, _, bw = self.sizes(steps, batch, True)
        ws = be.workspace(bw)
        lens = self._lengths(lengths)
        d = self.desc(steps, batch, True)
        self.lib.check(
            self.lib.lib.tfrnn_rnn_backward(
                self.lib.blas,
                be.stream,
                ctypes.byref(d),
                None if lens is None else lens[1],
                *map(be.ptr, [x, params, dy, dhy, dcy, reserve, dx, dh0, dc0, dparams, ws]),
            )
        )
        return dx, dh0, dc0, dparams


# ---------------------------------------------------------------------------- layer-norm RNN
LN_CELLS = {"layer_norm_lstm": 0, "layer_norm_gru": 1}
LN_PARAMS = (
    "kernel",
    "recurrent_kernel",
    "bias",
    "recurrent_bias",
    "gamma_x",
    "beta_x",
    "gamma_h",
    "beta_h",
    "gamma_c",
    "beta_c",
)


class LayerNormDesc(ctypes.Structure):
    _fields_ = [
        ("dtype", _I64),
        ("cell", _I64),
        ("max_time", _I64),
        ("batch", _I64),
        ("input_size", _I64),
        ("num_units", _I64),
        ("is_training", _I64),
        ("has_mask", _I64),
        ("zoneout", _I64),
        ("epsilon", ctypes.c_double),
        ("has_recurrent_mask", _I64),
        ("time_major", _I64),
    ]


class LayerNormParams(ctypes.Structure):
    _fields_ = [(name, _VP) for name in LN_PARAMS]


def _layer_norm_sigs():
    descp, paramsp = ctypes.POINTER(LayerNormDesc), ctypes.POINTER(LayerNormParams)
    i64p = ctypes.POINTER(_I64)
    return {
        "tfrnn_layer_norm_rnn_sizes": (ctypes.c_int, [descp, i64p, i64p, i64p]),
        "tfrnn_layer_norm_rnn_forward": (
            ctypes.c_int,
            [_VP, _VP, descp, _VP, _VP, _VP, paramsp] + [_VP] * 8,
        ),
        "tfrnn_layer_norm_rnn_backward": (
            ctypes.c_int,
            [_VP, _VP, descp, _VP, paramsp] + [_VP] * 10 + [paramsp, _VP],
        ),
    }


class LayerNormRnn:
    """TfRnn>LayerNormRnn's math on the CUDA layer: x [T, B, I] (time_major) or [B, T, I], y and
    the grads of both in x's layout; params a dict of LN_PARAMS (the ones the cell has); mask
    [T, B] or None; zoneout: None, a keep mask [T, B, H] or a float keep value (1 - p) (the masks
    time-major in both layouts); recurrent_mask: None or TF Addons' recurrent dropout mask [B, H]
    (h_{t-1} * m in h's product with R; the backward takes the forward's)."""

    def __init__(self, lib: Library, cell: str, dtype: str, time_major: bool = True):
        self.lib, self.cell, self.dtype = lib, cell, dtype
        self.lstm = cell == "layer_norm_lstm"
        self.time_major = time_major

    def steps_batch(self, x) -> tuple[int, int]:
        """(T, B) of x in this call's layout."""
        return (x.shape[0], x.shape[1]) if self.time_major else (x.shape[1], x.shape[0])

    def desc(self, x, h0, is_training, mask, zoneout, epsilon, recurrent_mask=None):
        kind = 0 if zoneout is None else (2 if np.ndim(zoneout) == 0 else 1)
        T, B = self.steps_batch(x)
        return LayerNormDesc(
            DTYPES[self.dtype],
            LN_CELLS[self.cell],
            T,
            B,
            x.shape[2],
            h0.shape[1],
            int(is_training),
            int(mask is not None),
            kind,
            float(epsilon),
            int(recurrent_mask is not None),
            int(self.time_major),
        )

    def sizes(self, desc):
        rs, fw, bw = _I64(), _I64(), _I64()
        self.lib.check(
            self.lib.lib.tfrnn_layer_norm_rnn_sizes(
                ctypes.byref(desc), ctypes.byref(rs), ctypes.byref(fw), ctypes.byref(bw)
            )
        )
        return rs.value, fw.value, bw.value

    def _buf(self, a):
        """numpy arrays are copied to the backend; its own buffers (a benchmark's) pass as is."""
        if a is None:
            return None
        be = self.lib.backend
        return a if be.holds(a, self.dtype) else be.from_numpy(a, self.dtype)

    def _params(self, bufs):
        ptr = self.lib.backend.ptr
        return LayerNormParams(*(ptr(bufs.get(name)) for name in LN_PARAMS))

    def forward(
        self,
        x,
        h0,
        c0,
        params,
        mask=None,
        zoneout=None,
        epsilon=1e-3,
        is_training=True,
        recurrent_mask=None,
    ):
        """Returns (y, hn, cn, reserve) as backend buffers (cn None for the GRU)."""
        be = self.lib.backend
        d = self.desc(x, h0, is_training, mask, zoneout, epsilon, recurrent_mask)
        (T, B), H = self.steps_batch(x), h0.shape[1]
        rs, fw, _ = self.sizes(d)
        self._inputs = {k: self._buf(v) for k, v in params.items()}
        ins = [self._buf(a) for a in (x, h0, c0 if self.lstm else None, mask)]
        zm = None if zoneout is None else self._buf(np.reshape(zoneout, (-1,)))
        rm = self._buf(recurrent_mask)
        y_shape = (T, B, H) if self.time_major else (B, T, H)
        y, hn = be.empty(y_shape, self.dtype), be.empty((B, H), self.dtype)
        cn = be.empty((B, H), self.dtype) if self.lstm else None
        reserve = be.empty((rs,), self.dtype) if is_training else None
        ws = be.workspace(fw)
        p = self._params(self._inputs)
        self.lib.check(
            self.lib.lib.tfrnn_layer_norm_rnn_forward(
                self.lib.blas,
                be.stream,
                ctypes.byref(d),
                *map(be.ptr, ins[:3]),
                ctypes.byref(p),
                *map(be.ptr, [ins[3], zm, rm, y, hn, cn, reserve, ws]),
            )
        )
        return y, hn, cn, reserve

    def backward(
        self,
        x,
        h0,
        params,
        reserve,
        dy,
        dhn,
        dcn,
        mask=None,
        zoneout=None,
        epsilon=1e-3,
        recurrent_mask=None,
    ):
        """Returns (dx, dh0, dc0, grads): grads a dict of the cell's param grads."""
        be = self.lib.backend
        d = self.desc(x, h0, True, mask, zoneout, epsilon, recurrent_mask)
        B, H = self.steps_batch(x)[1], h0.shape[1]
        _, _, bw = self.sizes(d)
        pin = {k: self._buf(v) for k, v in params.items()}
        grads = {k: be.empty(np.shape(v), self.dtype) for k, v in params.items()}
        xb, mb, rm = self._buf(x), self._buf(mask), self._buf(recurrent_mask)
        zm = None if zoneout is None else self._buf(np.reshape(zoneout, (-1,)))
        dyb, dhb = self._buf(dy), self._buf(dhn)
        dcb = self._buf(dcn) if self.lstm else None
        dx, dh0 = be.empty(tuple(x.shape), self.dtype), be.empty((B, H), self.dtype)
        dc0 = be.empty((B, H), self.dtype) if self.lstm else None
        ws = be.workspace(bw)
        p, g = self._params(pin), self._params(grads)
        self.lib.check(
            self.lib.lib.tfrnn_layer_norm_rnn_backward(
                self.lib.blas,
                be.stream,
                ctypes.byref(d),
                be.ptr(xb),
                ctypes.byref(p),
                *map(be.ptr, [mb, zm, rm, reserve, dyb, dhb, dcb, dx, dh0, dc0]),
                ctypes.byref(g),
                be.ptr(ws),
            )
        )
        return dx, dh0, dc0, grads
