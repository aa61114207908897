"""GPU benchmark of the CUDA fused RNN against PyTorch's cuDNN nn.GRU / nn.LSTM (same weights, same
shapes): forward inference and a full training step (forward + backward with input, state and weight
gradients), timed with CUDA events. The shapes of docs/PERFORMANCE.md: batch 64, time 100, input
128, hidden 256 and 512; batch 1 (latency) and batch 256 (throughput).

    python3 tests/gpu/bench_gpu.py [--modes gru,lstm,gru_reset_before] [--tf32] [--layers 1]
                                   [--graphs] [--json out.json]

`--graphs` also times each call captured once into a CUDA graph and replayed (ours and cuDNN's):
the time a step loses to launching its kernels one by one, which a graph-capturing op would save.

`gru_reset_before` (Keras reset_after=False) has no cuDNN form: its peer is cuDNN's GRU of the same
shapes (the same FLOPs but one recurrent product a step where ours has two), and its outputs are
checked against the float64 reference (cuda_rnn_reference.rnn_forward) instead of PyTorch's.

Each configuration's outputs are first checked against PyTorch's (the figures of a wrong
computation are not printed). `TF_RNN_OPS_GPU_HARNESS=emulation ... --dry-run` runs the whole
script on the CPU (host emulation, PyTorch's CPU modules, tiny shapes, wall-clock timing):
`make gpu-check` does, so that a broken benchmark shows up before a GPU session.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cuda_rnn_reference as ref  # noqa: E402
import gpu_harness  # noqa: E402

SHAPES = [  # batch, time, input, hidden
    (64, 100, 128, 256),
    (64, 100, 128, 512),
    (1, 100, 128, 256),
    (256, 100, 128, 256),
]
DRY_RUN_SHAPES = [(3, 5, 4, 6), (1, 2, 3, 5)]


class OursPrepared:
    """One configuration with every buffer allocated once, so that only the kernels are timed."""

    def __init__(self, torch, lib, shape, steps, batch, params, x, h0, c0, dtype="float32"):
        self.torch, self.lib, self.shape = torch, lib, shape
        rnn = lib.rnn(shape, dtype)
        be = lib.backend
        n = shape.num_dirs * shape.num_layers
        self.x, self.h0, self.c0, self.params = x, h0, c0, params
        self.y = be.empty((steps, batch, shape.num_dirs * shape.h_out), dtype)
        self.hy = be.empty((n, batch, shape.h_out), dtype)
        self.cy = be.empty((n, batch, shape.num_units), dtype) if c0 is not None else None
        self.dy = torch.randn_like(self.y)
        self.dhy = torch.randn_like(self.hy)
        self.dcy = None if self.cy is None else torch.randn_like(self.cy)
        self.dx, self.dh0 = torch.empty_like(x), torch.empty_like(h0)
        self.dc0 = None if c0 is None else torch.empty_like(c0)
        self.dparams = torch.empty_like(params)
        fw_inf, _, _ = rnn.sizes(steps, batch, False)
        fw_tr, rs, bw = rnn.sizes(steps, batch, True)
        self.ws_inf, self.ws_tr = be.workspace(fw_inf), be.workspace(fw_tr)
        self.reserve, self.ws_bw = be.workspace(rs), be.workspace(bw)
        self.desc_inf = rnn.desc(steps, batch, False)
        self.desc_tr = rnn.desc(steps, batch, True)
        p = be.ptr
        self.fwd_inf = [p(a) for a in (x, h0, c0, params, self.y, self.hy, self.cy)]
        self.fwd_inf += [None, p(self.ws_inf)]
        self.fwd_tr = [p(a) for a in (x, h0, c0, params, self.y, self.hy, self.cy)]
        self.fwd_tr += [p(self.reserve), p(self.ws_tr)]
        self.bwd = [p(a) for a in (x, params, self.dy, self.dhy, self.dcy, self.reserve, self.dx)]
        self.bwd += [p(a) for a in (self.dh0, self.dc0, self.dparams, self.ws_bw)]

    def _stream(self):
        if gpu_harness.EMULATION:
            return self.lib.backend.stream
        return self.torch.cuda.current_stream().cuda_stream

    def inference(self):
        c = self.lib.lib.tfrnn_rnn_forward(
            self.lib.blas, self._stream(), ctypes.byref(self.desc_inf), None, *self.fwd_inf
        )
        self.lib.check(c)

    def train_step(self):
        s = self._stream()
        lib = self.lib.lib
        c = lib.tfrnn_rnn_forward(self.lib.blas, s, ctypes.byref(self.desc_tr), None, *self.fwd_tr)
        self.lib.check(c)
        c = lib.tfrnn_rnn_backward(self.lib.blas, s, ctypes.byref(self.desc_tr), None, *self.bwd)
        self.lib.check(c)


def time_ms(torch, fn, warmup, iters, repeats=5):
    """Median over `repeats` of the mean time of `iters` calls, in ms (CUDA events; wall clock
    in the emulation)."""
    for _ in range(warmup):
        fn()
    emulated = gpu_harness.EMULATION
    if not emulated:
        torch.cuda.synchronize()
    best = []
    for _ in range(repeats):
        if emulated:
            start = time.perf_counter()
            for _ in range(iters):
                fn()
            best.append((time.perf_counter() - start) * 1e3 / iters)
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        best.append(start.elapsed_time(end) / iters)
    best.sort()
    return best[len(best) // 2]


def graph_replay(torch, fn):
    """fn captured into a CUDA graph (after warm-up calls on the capturing stream), as a function
    that replays it; or the reason the capture failed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            fn()
    except Exception as e:  # noqa: BLE001 - reported in the table instead of a time
        torch.cuda.synchronize()
        return f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    return graph.replay


def check_outputs(torch, ours, module, state, tol):
    """Our inference output and final state against PyTorch's (same weights), or for a mode cuDNN
    does not have against the float64 reference; raises if they differ."""
    ours.inference()
    if ours.shape.mode not in ("gru", "lstm", "rnn_relu", "rnn_tanh"):
        cpu = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
        c0 = None if ours.c0 is None else cpu(ours.c0)
        want_y, want_h, _ = ref.rnn_forward(
            ours.shape, cpu(ours.params), cpu(ours.x), cpu(ours.h0), c0
        )
        want_y, want_h = torch.from_numpy(want_y), torch.from_numpy(want_h)
        ours_y, ours_h = ours.y.cpu(), ours.hy.cpu()
        for name, got, want in (("y", ours_y, want_y), ("h", ours_h, want_h)):
            err = float((got.double() - want).abs().max()) if got.numel() else 0.0
            if err > tol * max(1.0, float(want.abs().max()) if want.numel() else 1.0):
                raise AssertionError(
                    f"bench_gpu: our {name} differs from the reference by {err:.3g}"
                )
        return
    with torch.no_grad():
        want_y, want_state = module(ours.x, state)
    want_h = want_state[0] if isinstance(want_state, tuple) else want_state
    for name, got, want in (("y", ours.y, want_y), ("h", ours.hy, want_h)):
        err = float((got.double() - want.double()).abs().max()) if got.numel() else 0.0
        scale = max(1.0, float(want.double().abs().max())) if want.numel() else 1.0
        if err > tol * scale:
            raise AssertionError(f"bench_gpu: our {name} differs from PyTorch's by {err:.3g}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="gru,lstm,gru_reset_before")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in cuDNN and in our GEMMs")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument(
        "--graphs", action="store_true", help="also time each call replayed from a CUDA graph"
    )
    ap.add_argument(
        "--fused-steps",
        type=int,
        default=0,
        choices=(0, 1),
        help="our forward steps: 0 a cuBLAS GEMM and a gate kernel (default), 1 one fused kernel",
    )
    ap.add_argument("--shapes", default=None, help="B,T,I,H;... in place of the default shapes")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny shapes, one timed call each (with TF_RNN_OPS_GPU_HARNESS=emulation: no GPU)",
    )
    args = ap.parse_args(argv)

    import torch

    emulated = gpu_harness.EMULATION
    if emulated and not args.dry_run:
        ap.error("the host emulation only runs --dry-run (its timings mean nothing)")
    if not os.path.exists(gpu_harness.LIBRARY) or not (emulated or torch.cuda.is_available()):
        print(f"bench_gpu: needs a CUDA device and {gpu_harness.LIBRARY}; skipped")
        return 0
    shapes = DRY_RUN_SHAPES if args.dry_run else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in item.split(",")) for item in args.shapes.split(";")]
    if args.dry_run:
        args.warmup, args.iters = 1, 1
    lib = gpu_harness.open_library(torch, tf32=args.tf32)
    lib.set_fused_steps(args.fused_steps)
    device = "host emulation" if emulated else torch.cuda.get_device_name()
    print(
        f"device: {device}  torch {torch.__version__}  "
        f"cuDNN {torch.backends.cudnn.version()}  tf32={args.tf32}  layers={args.layers}  "
        f"fused_steps={args.fused_steps}"
    )
    header = (
        f"{'mode':5} {'B':>4} {'T':>4} {'I':>4} {'H':>4} | {'ours inf':>9} {'cudnn inf':>9}"
        f" {'ratio':>6} | {'ours train':>10} {'cudnn train':>11} {'ratio':>6} | ours TFLOP/s"
    )
    print(header)
    print("-" * len(header))
    results = []
    for mode in args.modes.split(","):
        for batch, steps, isz, hsz in shapes:
            shape = ref.RnnShape(mode, args.layers, hsz, isz)
            # The peer of a mode cuDNN lacks (gru_reset_before): cuDNN's GRU of the same shapes,
            # whose params have the same layout and serve as ours.
            peer = (
                ref.RnnShape("gru", args.layers, hsz, isz) if mode == "gru_reset_before" else shape
            )
            module = gpu_harness.torch_module(torch, peer, "float32")
            params = gpu_harness.opaque_from_torch(torch, module, peer)
            n = args.layers
            dev = gpu_harness.DEVICE
            x = torch.randn(steps, batch, isz, device=dev)
            h0 = torch.zeros(n, batch, hsz, device=dev)
            c0 = torch.zeros(n, batch, hsz, device=dev) if mode == "lstm" else None
            ours = OursPrepared(torch, lib, shape, steps, batch, params, x, h0, c0)
            state = (h0, c0) if mode == "lstm" else h0
            check_outputs(torch, ours, module, state, tol=2e-2 if args.tf32 else 1e-3)

            def torch_inf(module=module, x=x, state=state):
                with torch.no_grad():
                    module(x, state)

            xg = x.clone().requires_grad_(True)
            dy = torch.randn(steps, batch, hsz, device=dev)

            def torch_train(module=module, xg=xg, state=state, dy=dy):
                module.zero_grad(set_to_none=True)
                out, _ = module(xg, state)
                out.backward(dy)

            t = {
                "ours_inference_ms": time_ms(torch, ours.inference, args.warmup, args.iters),
                "cudnn_inference_ms": time_ms(torch, torch_inf, args.warmup, args.iters),
                "ours_train_ms": time_ms(torch, ours.train_step, args.warmup, args.iters),
                "cudnn_train_ms": time_ms(torch, torch_train, args.warmup, args.iters),
            }
            if args.graphs and not emulated:
                # also check that the replayed graph computes what the direct call did
                replays = {}
                for name, fn in (
                    ("ours_inference", ours.inference),
                    ("cudnn_inference", torch_inf),
                    ("ours_train", ours.train_step),
                    ("cudnn_train", torch_train),
                ):
                    replay = graph_replay(torch, fn)
                    if isinstance(replay, str):
                        t[f"{name}_graph_failed"] = replay
                        continue
                    replays[name] = replay
                    t[f"{name}_graph_ms"] = time_ms(torch, replay, args.warmup, args.iters)
                if "ours_inference" in replays:
                    y_direct = ours.y.clone()
                    ours.y.zero_()
                    replays["ours_inference"]()
                    torch.cuda.synchronize()
                    t["graph_same_y"] = bool(torch.equal(ours.y, y_direct))
            gates = shape.gates * hsz
            flops = 2.0 * steps * batch * gates * (isz + hsz) * args.layers
            row = dict(mode=mode, batch=batch, time=steps, input=isz, hidden=hsz, **t)
            row["fused_steps"] = args.fused_steps
            results.append(row)
            print(
                f"{mode:5} {batch:4} {steps:4} {isz:4} {hsz:4} | "
                f"{t['ours_inference_ms']:8.3f}m {t['cudnn_inference_ms']:8.3f}m "
                f"{t['cudnn_inference_ms'] / t['ours_inference_ms']:6.2f} | "
                f"{t['ours_train_ms']:9.3f}m {t['cudnn_train_ms']:10.3f}m "
                f"{t['cudnn_train_ms'] / t['ours_train_ms']:6.2f} | "
                f"{flops / t['ours_inference_ms'] / 1e9:5.1f} inf, "
                f"{3 * flops / t['ours_train_ms'] / 1e9:5.1f} train"
            )
    print("(ms per call; ratio = cuDNN time / ours, above 1 means ours is faster)")
    if args.graphs and not emulated:
        print("\nreplayed from a CUDA graph (ms; direct-call time / graph time in brackets):")
        for r in results:
            cells = []
            for name in ("ours_inference", "cudnn_inference", "ours_train", "cudnn_train"):
                g = r.get(f"{name}_graph_ms")
                direct = r[f"{name}_ms"]
                cells.append(
                    f"{name} {g:.3f} ({direct / g:.2f}x)"
                    if g
                    else f"{name} failed: {r.get(f'{name}_graph_failed')}"
                )
            print(
                f"{r['mode']:5} {r['batch']:4} {r['hidden']:4} | "
                + " | ".join(cells)
                + f" | same y: {r.get('graph_same_y')}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    lib.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
