"""GPU benchmark of TfRnn>KerasRNNDropout's CUDA library calls (cc/cuda/keras_rnn_dropout_cuda.h):
forward (inference) and a training step (forward + backward) of one Keras layer's recurrence at
batch 64, time 100, hidden 256, per cell, as ratios against the same op without recurrent masks
in the same run: with recurrent-dropout masks, with a zoneout mask, with both.

    python3 tests/gpu/bench_gpu_keras_dropout.py [--modes gru,lstm] [--json out.json]

Each configuration's output is first checked against the float64 reference
(keras_dropout_reference.py). `--dry-run` runs the whole script on the host emulation (numpy
buffers, tiny shapes, no GPU, no PyTorch): `make gpu-check` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras_dropout_reference as kref  # noqa: E402
import numpy as np  # noqa: E402
import tfrnn_cuda_ctypes as tc  # noqa: E402

SHAPES = [(64, 100, 256)]  # batch, time, hidden
DRY_RUN_SHAPES = [(3, 4, 5)]
VARIANTS = {  # name: (recurrent masks, zoneout)
    "plain": (False, "none"),
    "masks": (True, "none"),
    "zoneout": (False, "mask"),
    "masks+zoneout": (True, "mask"),
}


def open_library(dry_run: bool):
    if dry_run:
        return tc.Library(tc.EMU_LIBRARY, tc.NumpyBackend())
    import gpu_harness
    import torch

    return gpu_harness.open_library(torch)


def time_ms(lib, fn, warmup, iters, repeats=5):
    """Median over `repeats` of the mean wall time of `iters` calls between synchronizations."""
    for _ in range(warmup):
        fn()
    lib.backend.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        lib.backend.synchronize()
        times.append((time.perf_counter() - start) * 1e3 / iters)
    times.sort()
    return times[len(times) // 2]


def setup(ap, argv, warmup, iters):
    """The options these library benchmarks share (--warmup, --iters, --json, --dry-run) added to
    `ap` and parsed: (args, the opened library), or None where the library is not built."""
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--iters", type=int, default=iters)
    ap.add_argument("--json", default=None)
    ap.add_argument("--dry-run", action="store_true", help="host emulation, tiny shapes")
    args = ap.parse_args(argv)
    path = tc.EMU_LIBRARY if args.dry_run else tc.GPU_LIBRARY
    if not os.path.exists(path):
        print(f"{os.path.basename(sys.argv[0])}: needs {path}; skipped")
        return None
    if args.dry_run:
        args.warmup, args.iters = 0, 1
    return args, open_library(args.dry_run)


def finish(args, lib, results) -> int:
    """Writes the results to --json, if given, and closes the library."""
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    lib.close()
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="gru,lstm,gru_reset_before,rnn_tanh")
    opened = setup(ap, argv, warmup=2, iters=5)
    if opened is None:
        return 0
    args, lib = opened
    be = lib.backend
    rng = np.random.default_rng(0)
    results = []
    print(f"{'mode':16} {'B':>4} {'T':>4} {'H':>4} {'variant':14} {'inf ms':>8} {'train ms':>9}"
          f" {'inf x':>6} {'train x':>7}")  # fmt: skip
    for mode in args.modes.split(","):
        for B, T, H in DRY_RUN_SHAPES if args.dry_run else SHAPES:
            base = None
            for name, (masks, zoneout) in VARIANTS.items():
                p = kref.problem(rng, mode, B, T, H, masks=masks, zoneout=zoneout)
                cast = lambda a: None if a is None else be.from_numpy(a, "float32")  # noqa: E731
                ins = [cast(p[k]) for k in ("gx", "h0", "c0", "rk", "rb", "masks", "zoneout")]
                op = lib.keras_dropout(mode, H, "float32", False)
                y = be.to_numpy(op.forward(*ins, is_training=False)[0])
                want = kref.forward(mode, p["gx"], p["h0"], p["c0"], p["rk"], p["rb"],
                                    p["masks"], p["zoneout"])[0]  # fmt: skip
                err = float(np.abs(y - want).max(initial=0.0))
                if err > 1e-3 * max(1.0, float(np.abs(want).max(initial=0.0))):
                    raise AssertionError(
                        f"{mode} {name}: output differs from the reference by {err}"
                    )
                dy, dh = cast(rng.normal(size=(B, T, H))), cast(rng.normal(size=(B, H)))
                dc = cast(rng.normal(size=(B, H))) if mode == "lstm" else None

                def inference(op=op, ins=ins):
                    op.forward(*ins, is_training=False)

                def train(op=op, ins=ins, dy=dy, dh=dh, dc=dc):
                    reserve = op.forward(*ins, is_training=True)[3]
                    op.backward(tuple(ins[0].shape), ins[3], ins[4], ins[5], ins[6], dy, dh, dc,
                                reserve)  # fmt: skip

                t = (time_ms(lib, inference, args.warmup, args.iters),
                     time_ms(lib, train, args.warmup, args.iters))  # fmt: skip
                base = base or t
                row = dict(mode=mode, batch=B, time=T, hidden=H, variant=name,
                           inference_ms=t[0], train_ms=t[1])  # fmt: skip
                results.append(row)
                print(f"{mode:16} {B:4} {T:4} {H:4} {name:14} {t[0]:8.3f} {t[1]:9.3f}"
                      f" {t[0] / base[0]:6.2f} {t[1] / base[1]:7.2f}")  # fmt: skip
    print("(x: time over the same op without masks or zoneout, 'plain', in this run; the buffers")
    print(" are allocated per call, so small shapes include the allocator)")
    return finish(args, lib, results)


if __name__ == "__main__":
    sys.exit(main())
