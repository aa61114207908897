"""Size limits of every op (issue 7), run as a program in its own process under a memory limit.

    python tests/hardening/limits_check.py --json OUT [--headroom-mb M] [--only NAME,...] [--big]

After TensorFlow is up (thread pools started, kernels loaded), the address space of this process is
limited (RLIMIT_AS) to what it uses plus M MiB, so that a request for more memory than the machine
has fails in malloc (TensorFlow: ResourceExhaustedError) instead of waking the OOM killer. Each case
then runs; OUT (JSON) gets, per case, {"outcome": "ok" | the exception class, "message", "shapes"}.
The caller (tests/hardening/test_hardening_limits.py) says what each case must give. The process
must survive every case: after each one that failed for lack of memory, a small call must still
succeed.

Cases (shapes whose element counts pass 2^31 or 2^63, or that need more memory than exists):
* empty tensors with dimensions up to 2^63 - 1 (valid: correctly shaped empty outputs, at once);
* dimensions whose sums or products overflow int64 (refused with InvalidArgumentError);
* fused-RNN outputs of T x B x H > 24 GiB from a small input (refused: ResourceExhaustedError);
* every op with inputs it can hold but outputs or scratch it cannot (the limit lowered to just above
  what is in use), then the same call again with the limit lifted;
* with --big (make stress, and only where about 12 GiB are free): params of more than 2^31 elements
  through ParamsToCanonical and back, checked element by element at the far end.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# TensorFlow's plain CPU allocator, not oneDNN's: a failed allocation of oneDNN's (a BFC allocator)
# waits 10 s for memory to be freed before it gives up (tsl::AllocatorRetry), which made this
# program ~85 s of idle waits (4 such failures, and the squeeze probe's), and under it TensorFlow's
# own GRUBlockCell crashed when squeezed here, so that the `squeezed_*` cases were skipped. With
# the plain allocator a failure returns at once and the squeezed cases run. Either allocator
# reaches our kernels as the same failed allocation (ResourceExhaustedError).
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))
sys.path.insert(0, _HERE)

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
import workloads as W  # noqa: E402

import tf_rnn_ops  # noqa: E402

_HARD = resource.getrlimit(resource.RLIMIT_AS)[1]
try:  # glibc: large blocks always from mmap, unmapped when freed (no dynamic threshold), so that
    # memory freed by an earlier call does not stay mapped and the limits below mean what they say.
    ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
except (OSError, AttributeError):
    pass


def under_asan() -> bool:
    """AddressSanitizer in the process (make asan): its allocator ignores RLIMIT_AS."""
    with open("/proc/self/maps") as f:
        return "libasan" in f.read()


def asan_caps_allocations() -> bool:
    """Whether ASan makes a single allocation past max_allocation_size_mb fail (return null)."""
    opts = os.environ.get("ASAN_OPTIONS", "")
    return "max_allocation_size_mb=" in opts and "allocator_may_return_null=1" in opts


def vms() -> int:
    return psutil.Process().memory_info().vms


def limit_to(extra_bytes: int | None) -> None:
    """Limits the address space to what is mapped now plus extra_bytes (None: no limit)."""
    soft = _HARD if extra_bytes is None else vms() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (soft, _HARD))


def z(shape, dtype=tf.float32):
    return tf.zeros(shape, dtype)


# ---------------------------------------------------------------------------------------- cases
def gru_empty_huge_input_size():
    I = 2**62  # noqa: E741
    kw = dict(x=z([0, I]), h_prev=z([0, 0]), w_ru=z([I, 0]), w_c=z([I, 0]), b_ru=z([0]), b_c=z([0]))
    out = tf_rnn_ops.gru_block_cell(**kw)
    grad = tf_rnn_ops.gru_block_cell_grad(
        **kw, r=z([0, 0]), u=z([0, 0]), c=z([0, 0]), d_h=z([0, 0])
    )
    return list(out) + list(grad)


def gru_empty_huge_batch():
    B = 2**63 - 1
    kw = dict(x=z([B, 0]), h_prev=z([B, 0]), w_ru=z([0, 0]), w_c=z([0, 0]), b_ru=z([0]), b_c=z([0]))
    out = tf_rnn_ops.gru_block_cell(**kw)
    e = z([B, 0])
    return list(out) + list(tf_rnn_ops.gru_block_cell_grad(**kw, r=e, u=e, c=e, d_h=e))


def gru_overflowing_sizes():
    # x.dims(1) + h_prev.dims(1) = 2^63: overflowed int64 in the checks (signed overflow, UB).
    I = H = 2**62  # noqa: E741
    return tf_rnn_ops.gru_block_cell(
        x=z([0, I]), h_prev=z([0, H]), w_ru=z([0, 0]), w_c=z([0, 0]), b_ru=z([0]), b_c=z([0])
    )


def _empty_batch_rnn(op, T, H, I, mode="rnn_tanh", direction="bidirectional", params=None):  # noqa: E741
    dirs = 2 if direction == "bidirectional" else 1
    n = W.params_size(mode, 1, H, I, dirs) if params is None else params
    return op(
        input=z([T, 0, I]), input_h=z([dirs, 0, H]), input_c=z([dirs, 0, H]), params=z([n]),
        sequence_lengths=tf.zeros([0], tf.int32), rnn_mode=mode, direction=direction,
        is_training=True,
    )  # fmt: skip


def cudnn_params_size_wraps_to_zero():
    # num_units 2^62, input_size 4, bidirectional rnn_tanh: the params size wrapped to 0 in int64,
    # so empty params passed, and the output dimension 2 * 2^62 went negative: a CHECK failure
    # (abort).
    return _empty_batch_rnn(tf_rnn_ops.cudnn_rnn, T=1, H=2**62, I=4, params=0)


def tf_cudnn_params_size_wraps_to_zero():
    return _empty_batch_rnn(tf.raw_ops.CudnnRNNV3, T=1, H=2**62, I=4, params=0)


def cudnn_empty_batch_huge_T():
    # B = 0, T = 2^62: every output is empty. The driver stepped through all T steps (a hang).
    return _empty_batch_rnn(tf_rnn_ops.cudnn_rnn, T=2**62, H=3, I=2, mode="lstm")


def cudnn_backprop_empty_batch_huge_T():
    T, H, I = 2**62, 3, 2  # noqa: E741
    out = _empty_batch_rnn(tf_rnn_ops.cudnn_rnn, T=T, H=H, I=I, mode="gru")
    n = W.params_size("gru", 1, H, I, 2)
    return tf_rnn_ops.cudnn_rnn_backprop(
        input=z([T, 0, I]), input_h=z([2, 0, H]), input_c=z([2, 0, H]), params=z([n]),
        sequence_lengths=tf.zeros([0], tf.int32), output=out[0], output_h=out[1],
        output_c=out[2], output_backprop=out[0], output_h_backprop=out[1], output_c_backprop=out[2],
        reserve_space=out[3], host_reserved=out[4], rnn_mode="gru", direction="bidirectional",
    )  # fmt: skip


def params_size_overflow():
    # (2^31 - 1) layers of 2^31 - 1 units: about 2^97 params; was returned as 120259084272.
    return tf_rnn_ops.cudnn_rnn_params_size(
        num_layers=2**31 - 1, num_units=2**31 - 1, input_size=2**31 - 1, T=tf.float32,
        S=tf.int64, direction="bidirectional",
    )  # fmt: skip


def params_size_int64_exact():
    return tf_rnn_ops.cudnn_rnn_params_size(
        num_layers=3, num_units=46341, input_size=2**20, T=tf.float32, S=tf.int64,
        rnn_mode="lstm", direction="bidirectional",
    )  # fmt: skip


def params_size_int32_too_small():
    return tf_rnn_ops.cudnn_rnn_params_size(
        num_layers=1, num_units=46341, input_size=1, T=tf.float32, S=tf.int32, rnn_mode="rnn_tanh"
    )


def canonical_to_params_huge_model():
    # 2^20 units: the output would be 4 TiB; the given weights do not match (refused before
    # allocating anything).
    return tf_rnn_ops.cudnn_rnn_canonical_to_params(
        num_layers=1, num_units=2**20, input_size=1, weights=[z([1, 1])] * 2,
        biases=[z([1])] * 2, rnn_mode="rnn_tanh",
    )  # fmt: skip


def params_to_canonical_huge_model():
    return tf_rnn_ops.cudnn_rnn_params_to_canonical(
        num_layers=1, num_units=2**20, input_size=1, params=z([10]), num_params_weights=2,
        num_params_biases=2, rnn_mode="rnn_tanh",
    )  # fmt: skip


def _huge_output_rnn(op, training, batch_major=False):
    # input [8192, 1024, 1] (32 MiB), num_units 1024: output [8192, 1024, 1024] floats = 32 GiB.
    T, B, H, I = 8192, 1024, 1024, 1  # noqa: E741
    n = W.params_size("rnn_relu", 1, H, I, 1)
    kw = dict(
        input=tf.ones([B, T, I] if batch_major else [T, B, I]),
        input_h=z([B, 1, H] if batch_major else [1, B, H]), input_c=z([0]),
        params=tf.fill([n], 0.01), sequence_lengths=tf.fill([B], T), rnn_mode="rnn_relu",
        is_training=training,
    )  # fmt: skip
    if batch_major:
        kw["time_major"] = False
    return op(**kw)


def cudnn_output_32gib_inference():
    return _huge_output_rnn(tf_rnn_ops.cudnn_rnn, False)


def cudnn_output_32gib_training():
    return _huge_output_rnn(tf_rnn_ops.cudnn_rnn, True)


def cudnn_output_32gib_batch_major():
    return _huge_output_rnn(tf_rnn_ops.cudnn_rnn, True, batch_major=True)


def tf_cudnn_output_32gib():
    return _huge_output_rnn(tf.raw_ops.CudnnRNNV3, True)


# Inputs that fit, outputs and scratch that do not (the limit lowered to just above what is in use).
def _squeezed(make_inputs, call, headrooms_mb=(1, 4, 12, 32, 80, 200)):
    """Runs call(inputs) with only so many MiB of address space to spare (each of `headrooms_mb`, so
    that allocations fail at different points: outputs, conversions, scratch), then without limit.

    Each limited call must either fail with ResourceExhaustedError or give exactly the unlimited
    result. Raises the first ResourceExhaustedError (the caller expects one), else returns the
    result.
    """
    inputs = make_inputs()
    first = None
    limited = []
    for mb in headrooms_mb:
        limit_to(mb << 20)
        try:
            limited.append(_numpy(call(inputs)))
        except tf.errors.ResourceExhaustedError as e:
            first = first or e
        finally:
            limit_to(None)
    again = _numpy(call(inputs))  # the same call, memory back: must work
    for got in limited:
        assert W.bitwise_equal(got, again), "a call under the memory limit gave another result"
    if first is not None:
        raise first
    return again


def _numpy(out):
    if isinstance(out, tf.Tensor):
        return [out.numpy()]
    if isinstance(out, tf.TensorShape):
        return [np.asarray(out.as_list())]
    return [a for o in out for a in _numpy(o)]


def tf_survives_squeeze() -> bool:
    """Whether TensorFlow's own GRUBlockCell (no tf_rnn_ops kernel) survives the squeezes of
    `_squeezed` in a fresh process. On some machines (seen on an AMD Zen 5 with TensorFlow 2.21) it
    crashes the process (SIGSEGV in TensorFlow's Python binding) at some headrooms: a TensorFlow bug
    that would make every squeezed case of ours crash the same way, so they are skipped there."""
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--json", os.devnull, "--probe-tf-squeeze"],
        capture_output=True, timeout=600,
    )  # fmt: skip
    return proc.returncode == 0


def _probe_tf_squeeze() -> None:
    try:
        _squeezed(lambda: W.gru_inputs(0, 2048, 2048, 1024),
                  lambda kw: tf.raw_ops.GRUBlockCell(**kw))  # fmt: skip
    except tf.errors.ResourceExhaustedError:
        pass


def squeezed_gru_block_cell():
    return _squeezed(lambda: W.gru_inputs(0, 2048, 2048, 1024),
                     lambda kw: tf_rnn_ops.gru_block_cell(**kw))  # fmt: skip


def squeezed_gru_block_cell_grad():
    def make():
        kw = W.gru_inputs(0, 2048, 2048, 1024)
        r, u, c, h = tf_rnn_ops.gru_block_cell(**kw)
        return dict(kw, r=r, u=u, c=c, d_h=h)

    return _squeezed(make, lambda kw: tf_rnn_ops.gru_block_cell_grad(**kw))


_SQ_RNN = dict(mode="lstm", L=2, H=256, I=64, B=64, T=128, bidi=True, varlen=True)


def squeezed_cudnn_rnn():
    return _squeezed(lambda: dict(W.rnn_inputs(0, **_SQ_RNN), is_training=True),
                     lambda kw: tf_rnn_ops.cudnn_rnn(**kw))  # fmt: skip


def squeezed_cudnn_rnn_bf16_batch_major():
    cfg = dict(_SQ_RNN, dtype=tf.bfloat16, time_major=False, mode="gru")
    return _squeezed(lambda: dict(W.rnn_inputs(0, **cfg), is_training=True),
                     lambda kw: tf_rnn_ops.cudnn_rnn(**kw))  # fmt: skip


def squeezed_cudnn_rnn_backprop():
    return _squeezed(lambda: W._backprop_kwargs(0, **_SQ_RNN),
                     lambda kw: tf_rnn_ops.cudnn_rnn_backprop(**kw))  # fmt: skip


def squeezed_tf_cudnn_rnn_backprop_v3():
    return _squeezed(lambda: W._backprop_kwargs(0, op=tf.raw_ops.CudnnRNNV3, **_SQ_RNN),
                     lambda kw: tf.raw_ops.CudnnRNNBackpropV3(**kw))  # fmt: skip


def _big_canonical():
    # rnn_tanh, num_units 46341, input_size 1: R alone has 46341^2 = 2147488281 > 2^31 elements.
    H = 46341
    return dict(num_layers=1, num_units=H, input_size=1, rnn_mode="rnn_tanh")


def squeezed_params_to_canonical():
    # float16 params of 2^31 + 139023 elements (4 GiB) are given; the outputs (4 GiB more) are not.
    return _squeezed(
        lambda: dict(_big_canonical(), params=tf.zeros([W.params_size("rnn_tanh", 1, 46341, 1, 1)],
                                                       tf.float16)),
        lambda kw: tf_rnn_ops.cudnn_rnn_params_to_canonical(**kw, num_params_weights=2,
                                                             num_params_biases=2)[1][0],
    )  # fmt: skip


def big_params_round_trip():
    """More than 2^31 elements through ParamsToCanonical and CanonicalToParams (float16)."""
    cfg = _big_canonical()
    H = 46341
    n = W.params_size("rnn_tanh", 1, H, 1, 1)  # W [H, 1], R [H, H], b_W [H], b_R [H]
    assert n > 2**31
    # Zeros, then a ramp over the last 2H + 1 elements: the last element of R (offset H + H*H - 1,
    # past 2^31) and both biases. Values k % 2039 + 1 are exact in float16.
    k = 2 * H + 1
    tail = tf.cast(tf.math.floormod(tf.range(k), 2039) + 1, tf.float16)
    params = tf.pad(tail, [[n - k, 0]])
    w, b = tf_rnn_ops.cudnn_rnn_params_to_canonical(**cfg, params=params, num_params_weights=2,
                                                    num_params_biases=2)  # fmt: skip
    del params
    got = [float(w[1][H - 1, H - 1]), float(w[1][H - 1, H - 2]), float(b[0][0]), float(b[1][-1])]
    want = [1.0, 0.0, 2.0, float((k - 1) % 2039 + 1)]
    assert got == want, (got, want)
    back = tf_rnn_ops.cudnn_rnn_canonical_to_params(**cfg, weights=list(w), biases=list(b))
    del w, b
    got_tail = back[n - k :].numpy()
    assert np.array_equal(got_tail, tail.numpy()), "tail differs after the round trip"
    assert float(tf.reduce_max(tf.abs(back[: n - k]))) == 0.0
    return [back[:1]]


CASES = {f.__name__: f for f in [
    gru_empty_huge_input_size, gru_empty_huge_batch, gru_overflowing_sizes,
    cudnn_params_size_wraps_to_zero, tf_cudnn_params_size_wraps_to_zero, cudnn_empty_batch_huge_T,
    cudnn_backprop_empty_batch_huge_T, params_size_overflow, params_size_int64_exact,
    params_size_int32_too_small, canonical_to_params_huge_model, params_to_canonical_huge_model,
    cudnn_output_32gib_inference, cudnn_output_32gib_training, cudnn_output_32gib_batch_major,
    tf_cudnn_output_32gib, squeezed_gru_block_cell, squeezed_gru_block_cell_grad,
    squeezed_cudnn_rnn, squeezed_cudnn_rnn_bf16_batch_major, squeezed_cudnn_rnn_backprop,
    squeezed_tf_cudnn_rnn_backprop_v3,
]}  # fmt: skip
BIG_CASES = {f.__name__: f for f in [squeezed_params_to_canonical, big_params_round_trip]}
NO_LIMIT = set(BIG_CASES)  # they need more than the headroom for their inputs


def _shapes(out):
    if isinstance(out, np.ndarray):
        return [list(out.shape)], out
    if isinstance(out, tf.Tensor):
        return [[int(d) for d in out.shape]], out
    if isinstance(out, tf.TensorShape):
        return [[int(d) for d in out]], None
    shapes = []
    for o in out:
        shapes += _shapes(o)[0]
    return shapes, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--headroom-mb", type=int, default=3072)
    ap.add_argument("--only", default="")
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--probe-tf-squeeze", action="store_true", help="see tf_survives_squeeze")
    args = ap.parse_args(argv)
    if args.probe_tf_squeeze:
        W.gru_fwd(0)
        W.cudnn_fwd(0)
        limit_to(args.headroom_mb << 20)
        _probe_tf_squeeze()
        return 0
    cases = dict(CASES)
    if args.big:
        cases.update(BIG_CASES)
    if args.only:
        cases = {k: v for k, v in cases.items() if k in args.only.split(",")}
    W.gru_fwd(0)  # start TensorFlow's pools and load every kernel before limiting
    W.cudnn_fwd(0)
    results = {}
    asan = under_asan()
    squeeze_ok = (
        asan or not any(name.startswith("squeezed_") for name in cases) or (tf_survives_squeeze())
    )
    for name, fn in cases.items():
        # Under ASan, RLIMIT_AS bounds nothing: the squeezed cases cannot be made, and the huge ones
        # are safe only when ASan itself refuses big allocations (make asan sets it).
        if asan and (
            name.startswith("squeezed_") or ("32gib" in name and not asan_caps_allocations())
        ):
            results[name] = {"outcome": "skipped", "why": "AddressSanitizer ignores RLIMIT_AS"}
            print(f"{name}: skipped under ASan", flush=True)
            continue
        if name.startswith("squeezed_") and not squeeze_ok:
            results[name] = {
                "outcome": "skipped",
                "why": "TensorFlow's own GRUBlockCell crashes under this squeeze here",
            }
            print(f"{name}: skipped (TensorFlow's own op crashes when squeezed here)", flush=True)
            continue
        limit_to(None if name in NO_LIMIT else args.headroom_mb << 20)
        try:
            shapes, _ = _shapes(fn())
            results[name] = {"outcome": "ok", "shapes": shapes}
        except Exception as e:  # noqa: BLE001 - reported to the caller
            results[name] = {"outcome": type(e).__name__, "message": str(e)[:2000]}
            if not isinstance(e, tf.errors.OpError):
                results[name]["traceback"] = traceback.format_exc()[-3000:]
        finally:
            limit_to(None)
        W.gru_fwd(1)  # still alive and computing
        print(f"{name}: {results[name]['outcome']}", flush=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
