"""Tables, goal checks and the chart of `python/bench.py` (its docstring says what is measured)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import statistics
import sys

import bench_peak
from bench_impls import TITLES

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
PEER_ORDER = ["keras", "blocklstm", "grublock", "torch"]
COLORS = {
    "ours": "#d62728",
    "keras": "#1f77b4",
    "blocklstm": "#9467bd",
    "grublock": "#8c564b",
    "torch": "#ff7f0e",
}
MODE_TITLE = {"gru": "GRU", "lstm": "LSTM", "rnn_tanh": "RNN tanh", "rnn_relu": "RNN relu"}

DOC_HEAD = """# Performance

How the fused RNN op compares with what a TensorFlow user has today and with PyTorch on CPU. The
section between the `bench` markers is written by `make bench` (`python/bench.py`); re-running
replaces it and keeps the rest of this file.

The contract: speed is measured by `make bench` (programs under `python/`), as ratios against peers
timed in the same run, never asserted in tests. The fused op must beat what a TensorFlow user has
today (`keras.layers.GRU/LSTM` on CPU, TensorFlow's `BlockLSTM`, a step loop over
`tf.raw_ops.GRUBlockCell`) and is measured against PyTorch's CPU `nn.GRU` / `nn.LSTM` and the
machine's large-matmul rate (the ceiling). Standard shapes: batch 64, time 100, input 128, hidden
256 and 512, and batch 1 (latency) and 256 (throughput); forward inference and a full training step
(forward, backward, every weight gradient). Regimes that count as much as the big batch: a one-step
call (B = T = 1, states in and out), small models (hidden 32-64), bidirectional and multi-layer
stacks; a drop-in layer slower than the Keras layer it replaces in any of them must choose the
faster path itself. The inference forward (is_training=False) must be faster than the
is_training=True forward. Identical ops inside one `tf.function` are merged by TensorFlow's graph
optimizer: repeat work across calls, not inside one graph. Each change's prediction and result go
into the optimisation log below.

"""


_POLICY_NOTE = (
    ": PyTorch's default spinning OpenMP threads run 10-50× slower as soon as other processes "
    "want the cores; `--torch_wait_policy=default` measures them on a quiet machine"
)


_HOW = (
    "Each implementation of a case is warmed up, then timed in rounds that run every "
    "implementation once in rotating order; the median of {lo}–{hi} rounds is shown. "
    "Forward = inference (our op with is_training=False; torch under no_grad). Training = "
    "forward + backward + every weight gradient, as the vector-Jacobian product of the output "
    "sequence with a fixed cotangent, gradients w.r.t. the input, the initial state(s) and all "
    "weights. GFLOP/s counts 2·T·B·G·H·(I_l + H) per layer and direction for the forward and 3× "
    "that for a training step; % ceiling is against the 2048³ tf.matmul rate timed in the same "
    "rounds as the case (the `matmul GFLOP/s` column; the machine's load moves it), else the "
    "run's best, {ceil}. `ms (×)` cells: the peer's median time and peer time / our time "
    "(> 1: ours is faster); `is_training=True fwd`: our forward with the training bookkeeping, "
    "no backward (inference must be faster: × > 1). "
    "Exactly what each implementation runs: `python/bench_impls.py`."
)
_MEMORY_HOW = (
    "Measured in a fresh process per row (`python/bench_memory.py`), after one warm-up step, "
    "above what is live before the step (inputs, weights, cotangent). `allocator`: peak bytes "
    "in use of TensorFlow's CPU allocator (BFC, TF_CPU_ALLOCATOR_USE_BFC=true; it sees every "
    "tensor, not a kernel's own malloc). `rss`: peak resident set sampled every ~0.2 ms (glibc "
    "told to map each large block on its own, MALLOC_MMAP_THRESHOLD_). Activations = what a "
    "reverse pass must keep: T·B·k·H floats per layer and direction, k = 5 for GRU (r, z, h̃, "
    "R_h·h+b_Rh, h), 6 for LSTM (i, f, g, o, c, h), 1 for rnn_tanh; gradients = the step's "
    "results."
)


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else (f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}")


def _x(r: float) -> str:
    return f"{r:.2f}×"


def _mib(b: float) -> str:
    return f"{b / 2**20:.1f}"


class Report:
    def __init__(self, env, runner, matmuls, memory, cases, flags):
        self.env = env
        self.runner = runner
        self.matmuls = matmuls
        self.memory = memory
        self.cases = cases
        self.flags = flags
        ceil = [m["gflops"] for m in matmuls if m["shape"] == (2048, 2048, 2048)]
        self.ceiling = max(ceil) if ceil else None  # the machine's rate: best of start/end medians

    # ------------------------------------------------------------ lookups

    def get(self, case, phase, impl):
        r = self.runner.get(case, phase, impl)
        return r if r and "median" in r else None

    def ratio(self, case, phase, impl):
        ours, peer = self.get(case, phase, "ours"), self.get(case, phase, impl)
        if ours and peer:
            return peer["median"] / ours["median"]
        return None

    def _section(self, name):
        return [(c, impls) for s, c, impls in self.cases if s == name]

    def _std(self, mode, hidden, batch=None):
        for c, _ in self._section("peers") + self._section("batch"):
            if (c.mode, c.hidden, c.dirs, c.layers) == (mode, hidden, 1, 1) and c.batch == (
                batch or self.flags.std_batch
            ):
                return c
        return None

    def ceiling_for(self, case, phase):
        """The 2048³ matmul rate timed in the same rounds as the case, else the run's."""
        r = self.get(case, phase, "ceiling")
        return r["gflops"] if r else self.ceiling

    def _rate(self, case, phase):
        ours = self.get(case, phase, "ours")
        if not ours:
            return "—"
        ceil = self.ceiling_for(case, phase)
        pct = f" ({100 * ours['gflops'] / ceil:.0f}%)" if ceil else ""
        return f"{ours['gflops']:.1f}{pct}"

    def _ceil_cell(self, case, phases):
        vals = [self.get(case, p, "ceiling") for p in phases]
        return " / ".join(f"{v['gflops']:.0f}" if v else "—" for v in vals)

    def spread(self) -> str:
        xs = [
            (max(r["times"]) - min(r["times"])) / r["median"]
            for r in self.runner.results
            if "median" in r and len(r["times"]) > 1
        ]
        return f"{100 * statistics.median(xs):.0f}%" if xs else "n/a"

    # ------------------------------------------------------------ tables

    def _cell(self, case, phase, impl):
        r = self.runner.get(case, phase, impl)
        if r is None:
            return "—"
        if "median" not in r:
            return "skip¹" if "time budget" in r["skipped"] else "n/a"
        if impl == "ours":
            return f"**{_ms(r['median'])}**"
        return f"{_ms(r['median'])} ({_x(self.ratio(case, phase, impl) or float('nan'))})"

    def peers_table(self) -> str:
        rows = self._section("peers") + self._section("batch")
        peers = [p for p in PEER_ORDER if any(p in impls for _, impls in rows)]
        extra = [p for p in ("ours_trainfwd",) if any(p in impls for _, impls in rows)]
        ceil = any("ceiling" in impls for _, impls in rows)
        head = ["mode", "H", "B", "phase", "ours ms", "ours GFLOP/s (% ceiling)"]
        head += [f"{TITLES[p]} ms (×)" for p in peers]
        head += ["is_training=True fwd ms (×)" for _ in extra]
        head += ["matmul GFLOP/s"] if ceil else []
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for case, impls in rows:
            for phase in self.flags.phases:
                cells = [MODE_TITLE[case.mode], str(case.hidden), str(case.batch), phase]
                cells += [self._cell(case, phase, "ours"), self._rate(case, phase)]
                cells += [self._cell(case, phase, p) if p in impls else "—" for p in peers + extra]
                cells += [self._ceil_cell(case, [phase])] if ceil else []
                lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def matrix_table(self) -> str:
        rows = [(c, i) for c, i in self._section("peers")] + self._section("matrix")
        rows.sort(key=lambda ci: (ci[0].mode, ci[0].hidden, ci[0].dirs, ci[0].layers))
        peers = [p for p in self.flags.matrix_peers if p in PEER_ORDER]
        head = ["mode", "H", "dir", "L", "GFLOP fwd"]
        for phase in self.flags.phases:
            head += [f"{phase} ms", f"{phase} GFLOP/s (% ceiling)"]
            head += [f"{TITLES[p]} {phase} ms (×)" for p in peers]
        if len(self.flags.phases) == 2:
            head.append("train / fwd")
        ceil = any("ceiling" in impls for _, impls in rows)
        head += [f"matmul GFLOP/s ({' / '.join(self.flags.phases)})"] if ceil else []
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for case, impls in rows:
            cells = [
                MODE_TITLE[case.mode], str(case.hidden), "bi" if case.dirs == 2 else "uni",
                str(case.layers), f"{case.forward_flops() / 1e9:.1f}",
            ]  # fmt: skip
            for phase in self.flags.phases:
                cells.append(self._cell(case, phase, "ours"))
                cells.append(self._rate(case, phase))
                cells += [self._cell(case, phase, p) if p in impls else "—" for p in peers]
            if len(self.flags.phases) == 2:
                f, t = self.get(case, "forward", "ours"), self.get(case, "train", "ours")
                cells.append(f"{t['median'] / f['median']:.2f}" if f and t else "—")
            cells += [self._ceil_cell(case, self.flags.phases)] if ceil else []
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def matmul_table(self) -> str:
        lines = ["| float32 tf.matmul M×K×N | GFLOP/s (start) | GFLOP/s (end) |", "|---|---|---|"]
        shapes = []
        for m in self.matmuls:
            if m["shape"] not in shapes:
                shapes.append(m["shape"])
        for s in shapes:
            vals = {m["when"]: m["gflops"] for m in self.matmuls if m["shape"] == s}
            cells = [f"{vals[w]:.1f}" if w in vals else "—" for w in ("start", "end")]
            lines.append(f"| {s[0]}×{s[1]}×{s[2]} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def memory_table(self) -> str:
        lines = [
            "| impl | mode | H | metric | peak MiB | activations MiB | gradients MiB "
            "| peak / (act. + grads) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in self.memory:
            head = (
                f"| {TITLES[m['impl']]} | {MODE_TITLE[m['mode']]} | {m['hidden']} | "
                f"{m['metric']} | "
            )
            if "error" in m:
                lines.append(f"{head}error: {m['error'][:80]} | | | |")
                continue
            lines.append(
                f"{head}"
                f"{_mib(m['peak_bytes'])} | {_mib(m['activation_bytes'])} | "
                f"{_mib(m['grad_bytes'])} | "
                f"{m['ratio']:.2f} |"
            )
        return "\n".join(lines)

    def skipped(self) -> list[str]:
        out = []
        for r in self.runner.results:
            if "skipped" in r and not r.get("na"):
                out.append(f"{TITLES[r['impl']]}, {r['case'].label}, {r['phase']}: {r['skipped']}")
        return out

    # ------------------------------------------------------------ goals

    def goal_checks(self) -> list[str]:
        out = []
        sb = self.flags.std_batch
        hidden = sorted(int(h) for h in self.flags.hidden)

        def verdict(ok):
            return "PASS" if ok else "FAIL"

        for mode, need_keras, need_torch in (("gru", 3.0, 1.5), ("lstm", 2.0, 1.0)):
            for h in hidden:
                case = self._std(mode, h)
                if case is None:
                    continue
                rk, rt = self.ratio(case, "train", "keras"), self.ratio(case, "train", "torch")
                name = (
                    f"{MODE_TITLE[mode]} training ≥{need_keras:g}× keras & ≥{need_torch:g}× torch"
                )
                where = f"(B={sb}, T={case.time}, H={h})"
                if rk is None or rt is None:
                    out.append(f"N/A  {name} {where}: keras {rk}, torch {rt} not measured")
                    continue
                ok = rk >= need_keras and rt >= need_torch
                out.append(f"{verdict(ok)} {name} {where}: keras {_x(rk)}, torch {_x(rt)}")
        for mode in ("gru", "lstm"):
            case = self._std(mode, 512)
            name = f"{MODE_TITLE[mode]} forward at H=512 ≥70% of the matmul rate"
            ours = self.get(case, "forward", "ours") if case else None
            ceil = self.ceiling_for(case, "forward") if case else None
            if ours is None or not ceil:
                out.append(f"N/A  {name}: not measured")
                continue
            frac = ours["gflops"] / ceil
            side = " (side by side)" if self.get(case, "forward", "ceiling") else ""
            out.append(
                f"{verdict(frac >= 0.7)} {name} (B={sb}): {ours['gflops']:.1f} of {ceil:.1f} "
                f"GFLOP/s{side} = {100 * frac:.0f}%"
            )
        for mode in ("gru", "lstm"):
            case = self._std(mode, min(hidden), 1)
            name = f"{MODE_TITLE[mode]} batch-1 forward no slower than torch"
            r = self.ratio(case, "forward", "torch") if case else None
            if r is None:
                out.append(f"N/A  {name}: not measured")
                continue
            o, t = self.get(case, "forward", "ours"), self.get(case, "forward", "torch")
            out.append(
                f"{verdict(r >= 1.0)} {name} (H={case.hidden}): ours {_ms(o['median'])} ms, "
                f"torch {_ms(t['median'])} ms ({_x(r)})"
            )
        for hidden, mode in [
            (int(h), m) for h in self.flags.memory_hidden for m in self.flags.memory_modes
        ]:
            ms = {
                m["metric"]: m
                for m in self.memory
                if m["impl"] == "ours" and m["mode"] == mode and m["hidden"] == hidden
            }
            name = f"{MODE_TITLE[mode]} training-step peak memory ≤1.3× what backprop must keep"
            a, s = ms.get("allocator"), ms.get("rss")
            if not a or "error" in a:
                out.append(f"N/A  {name} (H={hidden}): not measured")
                continue
            extra = f"; RSS {s['ratio']:.2f}×" if s and "error" not in s else ""
            out.append(
                f"{verdict(a['ratio'] <= 1.3)} {name} (H={hidden}): "
                f"allocator peak {_mib(a['peak_bytes'])} MiB / (activations "
                f"{_mib(a['activation_bytes'])} + gradients {_mib(a['grad_bytes'])}) MiB = "
                f"{a['ratio']:.2f}×{extra}"
            )
        fwd = [
            (c, self.ratio(c, "forward", "ours_trainfwd"))
            for c, impls in self._section("peers") + self._section("batch")
            if "ours_trainfwd" in impls
        ]
        fwd = [(c, x) for c, x in fwd if x is not None]
        if fwd:
            bad = [
                f"{MODE_TITLE[c.mode]} H={c.hidden} B={c.batch} {_x(x)}" for c, x in fwd if x < 1
            ]
            out.append(
                f"{verdict(not bad)} inference forward (is_training=False) faster than the "
                f"is_training=True forward: {len(fwd) - len(bad)} of {len(fwd)} shapes, "
                f"is_training=True / inference time {min(x for _, x in fwd):.2f}–"
                f"{max(x for _, x in fwd):.2f}×" + (f" (slower: {'; '.join(bad)})" if bad else "")
            )
        slower, n = [], 0
        for r in self.runner.results:
            x = self.ratio(r["case"], r["phase"], r["impl"]) if "median" in r else None
            if r["impl"] in ("keras", "blocklstm", "grublock") and x is not None:
                n += 1
                if x < 1.0:
                    c = r["case"]
                    where = f"{MODE_TITLE[c.mode]} H={c.hidden} B={c.batch} {r['phase']}"
                    slower.append((x, f"{r['impl']} {where} {_x(x)}"))
        if n:
            slower.sort()
            worst = "; ".join(s for _, s in slower[:4]) + ("; ..." if len(slower) > 4 else "")
            out.append(
                f"{verdict(not slower)} ours faster than every TensorFlow alternative: "
                f"{n - len(slower)} of {n} comparisons" + (f" (slowest: {worst})" if slower else "")
            )
        return out

    # ------------------------------------------------------------ output

    def text_tables(self) -> str:
        parts = []
        if self.matmuls:
            parts += ["ceiling:", self.matmul_table(), ""]
        parts += ["peers:", self.peers_table(), "", "matrix:", self.matrix_table(), ""]
        if self.memory:
            parts += ["memory:", self.memory_table(), ""]
        return "\n".join(parts)

    def markdown(self) -> str:
        e = self.env
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        args = " ".join(sys.argv[1:])
        cmd = f"`python/bench.py {args}`" if args else "`python/bench.py`, default flags"
        kernel = (
            " (kernel sources modified, uncommitted)" if e.get("kernel_sources_modified") else ""
        )
        ceil = f"{self.ceiling:.1f} GFLOP/s" if self.ceiling else "not measured"
        policy = e.get("torch_wait_policy")
        lo, hi = e["repeats"]
        lines = [
            BEGIN,
            "",
            f"## Benchmark results{' (quick subset)' if e.get('quick') else ''}",
            "",
            f"Generated by `make bench` ({cmd}) on {when}, commit "
            f"`{e.get('commit')}`{kernel}, in {e['wall_s'] / 60:.1f} min. Machine: {e['cpu']}, "
            f"{e['cores']} cores; {e['threads']} threads for everyone (TensorFlow intra-op, "
            f"torch.set_num_threads); load average {e['loadavg_start']:.1f} at the start, "
            f"{e['loadavg_end']:.1f} at the end (other work on the machine makes timings noisy: "
            f"read the ratios, which are measured side by side; the median spread (max − min) / "
            f"median of a case's rounds was {self.spread()}). TensorFlow {e['tensorflow']}, "
            f"Keras {e.get('keras')}, PyTorch {e.get('torch')} (OMP_WAIT_POLICY "
            f"{policy}{_POLICY_NOTE if policy == 'passive' else ''}), "
            f"Python {e['python']}. Float32 FMA peak, {e['threads']} threads: "
            f"{bench_peak.describe_peaks(e.get('fma_peaks', {}))} (`python/bench_peak.py`); "
            f"{e.get('product_path', bench_peak.describe_path())}.",
            "",
            f"How it is measured: float32, T={self.flags.time}, I={self.flags.input}. "
            + _HOW.format(lo=lo, hi=hi, ceil=ceil),
            "",
            "### Goal checks (issue 6; reported, never asserted)",
            "",
        ]
        lines += [
            f"- `{c.split(' ', 1)[0]}` {c.split(' ', 1)[1].strip()}" for c in self.goal_checks()
        ]
        if self.matmuls:
            lines += ["", "### Ceiling: the machine's float32 matmul rate through TensorFlow", ""]
            lines += [self.matmul_table()]
        lines += [
            "",
            f"### Against the alternatives (unidirectional, 1 layer; B={self.flags.std_batch} and "
            "the batch axis)",
            "",
            self.peers_table(),
            "",
            f"### Our op over the matrix (B={self.flags.std_batch})",
            "",
            self.matrix_table(),
        ]
        if self.memory:
            lines += [
                "",
                f"### Peak memory of one training step (B={self.flags.std_batch}, "
                f"H={', '.join(self.flags.memory_hidden)}, unidirectional, 1 layer)",
                "",
                _MEMORY_HOW,
                "",
                self.memory_table(),
            ]
        skipped = self.skipped()
        if skipped:
            lines += ["", "Not measured in this run (¹ time budget, or an error):", ""]
            lines += [f"- {s}" for s in skipped]
        lines += ["", "![bench](bench.png)", "", END]
        return "\n".join(lines)

    def write_markdown(self, path: str) -> None:
        block = self.markdown()
        text = DOC_HEAD
        if os.path.exists(path):
            with open(path) as f:
                text = f.read()
        if BEGIN in text and END in text:
            pre, rest = text.split(BEGIN, 1)
            _, post = rest.split(END, 1)
            text = pre + block + post
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def write_json(self, path: str) -> None:
        def enc(o):
            if dataclasses.is_dataclass(o):
                return dataclasses.asdict(o)
            raise TypeError(type(o))

        data = {
            "env": self.env,
            "ceiling_gflops": self.ceiling,
            "matmuls": self.matmuls,
            "results": self.runner.results,
            "memory": self.memory,
            "goal_checks": self.goal_checks(),
        }
        with open(path, "w") as f:
            json.dump(data, f, indent=1, default=enc)

    def write_chart(self, path: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        std = [c for c, _ in self._section("peers")]
        other = [c for c, _ in self._section("batch")]
        panels = [(std, phase, f"B={self.flags.std_batch}") for phase in self.flags.phases]
        if other:
            panels += [(other, phase, "batch axis") for phase in self.flags.phases]
        ncols = len(self.flags.phases)
        nrows = (len(panels) + ncols - 1) // ncols
        fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, 4.6 * nrows), squeeze=False)
        for ax, (cases, phase, title) in zip(axes.flat, panels, strict=False):
            impls = ["ours"] + [p for p in PEER_ORDER if any(self.get(c, phase, p) for c in cases)]
            width = 0.8 / len(impls)
            every = []
            for j, impl in enumerate(impls):
                xs, ys = [], []
                for i, c in enumerate(cases):
                    r = self.get(c, phase, impl)
                    if r:
                        xs.append(i + (j - (len(impls) - 1) / 2) * width)
                        ys.append(r["median"] * 1e3)
                        if impl != "ours":
                            x = self.ratio(c, phase, impl)
                            ax.text(xs[-1], ys[-1] * 1.06, f"{x:.1f}×", ha="center",
                                    va="bottom", fontsize=6.5)  # fmt: skip
                ax.bar(xs, ys, width, label=TITLES[impl], color=COLORS[impl])
                every += ys
            ax.set_yscale("log")
            if every:  # one bottom for all bars (log bars have no zero), room for labels and legend
                ax.set_ylim(min(every) / 3, max(every) * 6)
            ax.set_xticks(range(len(cases)))
            labels = [f"{MODE_TITLE[c.mode]}\nH={c.hidden} B={c.batch}" for c in cases]
            ax.set_xticklabels(labels, fontsize=8)
            ax.set_ylabel("ms (median, log scale)")
            what = "training step" if phase == "train" else "forward (inference)"
            ax.set_title(f"{what}, {title}, T={cases[0].time if cases else ''}", fontsize=10)
            ax.grid(axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", ncol=3, framealpha=0.85)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.suptitle(
            "tf_rnn_ops.cudnn_rnn vs alternatives "
            "(labels: peer time / our time; > 1 = ours faster)",
            fontsize=11,
        )
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)


def median(xs):
    return statistics.median(xs)
