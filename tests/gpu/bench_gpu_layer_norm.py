"""GPU benchmark of TfRnn>LayerNormRnn's CUDA library calls (cc/cuda/layer_norm_rnn_cuda.h):
LayerNormLSTM and LayerNormGRU, forward (inference) and a training step (forward + backward with
every gradient), at batch 64 and 256, time 100, input 128, hidden 256, against the plain cells of
the same shapes in the same run: our fused LSTM / GRU (tests/gpu/bench_gpu.py's prepared calls)
and PyTorch's cuDNN nn.LSTM / nn.GRU. There is no layer-norm RNN in cuDNN: the ratios say what the
two layer norms a step cost over the fastest plain step. Each shape also runs batch-major
(time_major=False: x, y and their grads [B, T, ·], the layers' call) beside the time-major call.

    python3 tests/gpu/bench_gpu_layer_norm.py [--cells layer_norm_lstm,layer_norm_gru]
                                              [--json out.json]

Each shape's output over its first steps is first checked against the float64 reference
(layer_norm_reference.py: TF Addons' LayerNormLSTMCell, haste's LayerNormGRU). `--dry-run` runs the
whole script on the host emulation (numpy buffers, tiny shapes, no PyTorch, no peers): `make
gpu-check` does.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import layer_norm_reference as lnref  # noqa: E402
import numpy as np  # noqa: E402
from bench_gpu_keras_dropout import finish, setup, time_ms  # noqa: E402

SHAPES = [(64, 100, 128, 256), (256, 100, 128, 256)]  # batch, time, input, hidden
DRY_RUN_SHAPES = [(3, 4, 5, 6)]
CHECK_STEPS = 10  # float32 against float64 over the first steps (no chaos to amplify the rounding)
PLAIN_MODE = {"layer_norm_lstm": "lstm", "layer_norm_gru": "gru"}


class LayerNormPrepared:
    """One cell and shape with its inputs on the device once; the calls allocate their outputs."""

    def __init__(self, lib, cell, rng, B, T, D, H, time_major=True):
        self.op = lib.layer_norm_rnn(cell, "float32", time_major)
        self.cell, self.be, self.time_major = cell, lib.backend, time_major
        x, h0, c0, _, _ = lnref.make_case(rng, cell, T, B, D, H)
        self.host = dict(params=lnref.make_params(rng, cell, D, H), x=x, h0=h0, c0=c0)
        cast = lambda a: self.be.from_numpy(a, "float32")  # noqa: E731
        self.params = {k: cast(v) for k, v in self.host["params"].items()}
        self.x, self.h0, self.c0 = cast(self.layout(x)), cast(h0), cast(c0)
        dy, dh, dc = lnref.loss_weights(rng, T, B, H)
        self.dy, self.dh, self.dc = cast(self.layout(dy)), cast(dh), cast(dc)
        self.eps = lnref.EPS[cell]

    def layout(self, a):
        """a [T, B, ·] in this call's layout."""
        return a if self.time_major else np.ascontiguousarray(np.swapaxes(a, 0, 1))

    def check(self, steps):
        """Raises unless the output of the first `steps` steps matches the float64 reference."""
        h = self.host
        x = h["x"][:steps]
        y = self.be.to_numpy(self.op.forward(self.layout(x), h["h0"], h["c0"], h["params"],
                                             epsilon=self.eps, is_training=False)[0])  # fmt: skip
        y = self.layout(y)  # back to [T, B, H]
        want = lnref.reference(self.cell, h["params"], x, h["h0"], h["c0"])[0]
        err = float(np.abs(y - want).max(initial=0.0))
        if err > 1e-3 * max(1.0, float(np.abs(want).max(initial=0.0))):
            raise AssertionError(f"{self.cell}: output differs from the reference by {err}")

    def inference(self):
        self.op.forward(self.x, self.h0, self.c0, self.params, epsilon=self.eps, is_training=False)

    def train_step(self):
        reserve = self.op.forward(self.x, self.h0, self.c0, self.params, epsilon=self.eps)[3]
        self.op.backward(self.x, self.h0, self.params, reserve, self.dy, self.dh, self.dc,
                         epsilon=self.eps)  # fmt: skip


def plain_peers(lib, mode, B, T, D, H):
    """{name: (inference, train_step)} of our fused `mode` and PyTorch's cuDNN one, same shapes."""
    import bench_gpu
    import cuda_rnn_reference as ref
    import gpu_harness
    import torch

    shape = ref.RnnShape(mode, 1, H, D)
    module = gpu_harness.torch_module(torch, shape, "float32")
    params = gpu_harness.opaque_from_torch(torch, module, shape)
    x = torch.randn(T, B, D, device="cuda")
    h0 = torch.zeros(1, B, H, device="cuda")
    c0 = torch.zeros(1, B, H, device="cuda") if mode == "lstm" else None
    ours = bench_gpu.OursPrepared(torch, lib, shape, T, B, params, x, h0, c0)
    state = (h0, c0) if mode == "lstm" else h0
    bench_gpu.check_outputs(torch, ours, module, state, tol=1e-3)
    xg, dy = x.clone().requires_grad_(True), torch.randn(T, B, H, device="cuda")

    def cudnn_inference():
        with torch.no_grad():
            module(x, state)

    def cudnn_train():
        module.zero_grad(set_to_none=True)
        out, _ = module(xg, state)
        out.backward(dy)

    return {f"fused {mode}": (ours.inference, ours.train_step),
            f"cudnn {mode}": (cudnn_inference, cudnn_train)}  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="layer_norm_lstm,layer_norm_gru")
    opened = setup(ap, argv, warmup=3, iters=10)  # --dry-run: no peers either
    if opened is None:
        return 0
    args, lib = opened
    rng = np.random.default_rng(0)
    results = []
    print(f"{'cell':16} {'B':>4} {'T':>4} {'I':>4} {'H':>4} {'peer':12} {'LN inf ms':>9}"
          f" {'peer inf':>9} {'LN train':>9} {'peer train':>10}"
          f" {'inf x':>6} {'train x':>7}")  # fmt: skip
    for cell in args.cells.split(","):
        for B, T, D, H in DRY_RUN_SHAPES if args.dry_run else SHAPES:
            ln = LayerNormPrepared(lib, cell, rng, B, T, D, H)
            ln.check(min(T, CHECK_STEPS))
            t_ln = (time_ms(lib, ln.inference, args.warmup, args.iters),
                    time_ms(lib, ln.train_step, args.warmup, args.iters))  # fmt: skip
            peers = {} if args.dry_run else plain_peers(lib, PLAIN_MODE[cell], B, T, D, H)
            row = dict(cell=cell, batch=B, time=T, input=D, hidden=H,
                       inference_ms=t_ln[0], train_ms=t_ln[1])  # fmt: skip
            if not peers:
                print(f"{cell:16} {B:4} {T:4} {D:4} {H:4} {'-':12} {t_ln[0]:9.3f} {'-':>9}"
                      f" {t_ln[1]:9.3f}")  # fmt: skip
            for name, (inf, train) in peers.items():
                t = (time_ms(lib, inf, args.warmup, args.iters),
                     time_ms(lib, train, args.warmup, args.iters))  # fmt: skip
                row[f"{name} inference_ms"], row[f"{name} train_ms"] = t
                print(f"{cell:16} {B:4} {T:4} {D:4} {H:4} {name:12} {t_ln[0]:9.3f} {t[0]:9.3f}"
                      f" {t_ln[1]:9.3f} {t[1]:10.3f} {t_ln[0] / t[0]:6.2f}"
                      f" {t_ln[1] / t[1]:7.2f}")  # fmt: skip
            bm = LayerNormPrepared(lib, cell, rng, B, T, D, H, time_major=False)
            bm.check(min(T, CHECK_STEPS))
            t_bm = (time_ms(lib, bm.inference, args.warmup, args.iters),
                    time_ms(lib, bm.train_step, args.warmup, args.iters))  # fmt: skip
            row["batch_major inference_ms"], row["batch_major train_ms"] = t_bm
            print(f"{cell:16} {B:4} {T:4} {D:4} {H:4} {'batch-major':12} {t_bm[0]:9.3f}"
                  f" {'':9} {t_bm[1]:9.3f}  x, y [B, T, ·]: time_major=False")  # fmt: skip
            results.append(row)
    print("(ms per call; x: the layer-norm cell's time over the plain peer's, in this run)")
    return finish(args, lib, results)


if __name__ == "__main__":
    sys.exit(main())
