"""Our CPU kernels' numbers for the GRU block cell, for the GPU tests (issue 5: the CUDA cell
against our CPU kernels). The GPU machine has no TensorFlow, so the numbers travel as a file:
`data/gru_block_cell_cpu.npz` holds, per case and dtype, the inputs and what
`TfRnn>GRUBlockCell` and `TfRnn>GRUBlockCellGrad` computed from them on CPU.

    python tests/gpu/cpu_cell_numbers.py      # rewrites the file (needs TensorFlow and tf_rnn_ops)

tests/ops/test_gpu_cell_numbers.py checks, with TensorFlow, that the file still holds what the CPU
kernels compute; tests/gpu/test_gpu_gru_block_cell.py compares the CUDA cell with it.
"""

from __future__ import annotations

import os

import numpy as np

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "gru_block_cell_cpu.npz")
# batch, input size, cell size: odd sizes, an empty input, an empty batch, a wide input
CASES = [(1, 1, 1), (3, 4, 5), (17, 33, 20), (2, 300, 3), (5, 0, 7), (0, 3, 4)]
DTYPES = ["float32", "float64"]
INPUTS = ["x", "h_prev", "w_ru", "w_c", "b_ru", "b_c", "d_h"]
FORWARD = ["r", "u", "c", "h"]
GRAD = ["d_x", "d_h_prev", "d_c_bar", "d_r_bar_u_bar"]


def key(case, dtype: str) -> str:
    batch, isz, hsz = case
    return f"B{batch}_I{isz}_H{hsz}_{dtype}"


def draw_inputs(case, dtype: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    batch, isz, hsz = case

    def rand(*shape, scale=0.8):
        return rng.uniform(-scale, scale, shape).astype(dtype)

    return {
        "x": rand(batch, isz),
        "h_prev": rand(batch, hsz),
        "w_ru": rand(isz + hsz, 2 * hsz, scale=0.8 / np.sqrt(1 + isz + hsz)),
        "w_c": rand(isz + hsz, hsz),
        "b_ru": rand(2 * hsz),
        "b_c": rand(hsz),
        "d_h": rand(batch, hsz),
    }


def cpu_numbers(tf_rnn_ops, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What our CPU kernels compute from `inputs`: the forward, and the grad from its r, u, c."""
    cell = {k: inputs[k] for k in INPUTS[:6]}
    fwd = [t.numpy() for t in tf_rnn_ops.gru_block_cell(**cell)]
    out = dict(zip(FORWARD, fwd, strict=True))
    grad = tf_rnn_ops.gru_block_cell_grad(
        **cell, r=out["r"], u=out["u"], c=out["c"], d_h=inputs["d_h"]
    )
    out.update(zip(GRAD, [t.numpy() for t in grad], strict=True))
    return out


def load() -> dict[str, dict[str, np.ndarray]]:
    """{key: {name: array}} from the file."""
    with np.load(FIXTURE) as f:
        data: dict[str, dict[str, np.ndarray]] = {}
        for name in f.files:
            k, field = name.split("/")
            data.setdefault(k, {})[field] = f[name]
    return data


def main() -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # one summation order, any machine
    import tf_rnn_ops

    rng = np.random.default_rng(20261124)
    arrays = {}
    for case in CASES:
        for dtype in DTYPES:
            inputs = draw_inputs(case, dtype, rng)
            for name, a in {**inputs, **cpu_numbers(tf_rnn_ops, inputs)}.items():
                arrays[f"{key(case, dtype)}/{name}"] = a
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    np.savez_compressed(FIXTURE, **arrays)
    print(f"wrote {FIXTURE}: {len(arrays)} arrays")


if __name__ == "__main__":
    main()
