"""`make bench`: the fused RNN op against the alternatives, in one run on one machine
(the contract: docs/PERFORMANCE.md).

Measures forward inference and a full training step (forward, backward, every weight gradient) of
`tf_rnn_ops.cudnn_rnn` and of its peers (python/bench_impls.py says exactly what each runs):
`keras.layers.GRU/LSTM/SimpleRNN` (CPU step loop, no XLA), `tf.raw_ops.BlockLSTM` + its gradient, a
`tf.while_loop` over the GRU block cell, and PyTorch's CPU `nn.GRU/LSTM/RNN`; plus the machine's
large-matmul rate through TensorFlow (the ceiling) and our GFLOP/s as a fraction of it. The header
also gives the machine's float32 FMA peak (python/bench_peak.py: AVX2 and AVX-512 loops, the higher
one) and which micro-kernels our products run (AVX-512 or AVX2, by the kernel's own rule).

What runs (defaults):

1. the ceiling: a 2048³ float32 `tf.matmul` in a `tf.function` (and, for reading the RNN numbers,
   the products an RNN is made of: an input projection 6400×128×768, one recurrent step
   64×256×768, a batch-1 step 1×256×768), at the start and again at the end of the run;
2. peers at the standard shapes: B=64, T=100, I=128, H ∈ {256, 512}, unidirectional, 1 layer, for
   every mode in --modes (each peer where it has that mode);
3. the batch axis: B ∈ {1, 256} for --batch_modes at H=min(--hidden), unidirectional, 1 layer, all
   peers;
4. our op over the rest of the matrix: --modes × --hidden × {uni, bi} × {1, 2} layers at B=64, with
   the peers in --matrix_peers (PyTorch) beside it; cheapest first;
5. peak memory of a training step (python/bench_memory.py, one fresh process per measurement);
6. "streaming and small" (python/bench_streaming.py): the drop-in layers against keras.layers at
   one-step calls (B = T = 1), a 200-step generation loop and the weather example's small models,
   with the machine's FMA peak of bench_peak.py (--streaming=false leaves it out,
   --streaming_only runs it alone).

Timing: every implementation of a case is warmed up (the first call traces and optimizes), then
timed in rounds, each round running every implementation once, in rotating order, so that a change
of machine load hits all of them alike; the median over rounds is reported. Rounds stop at
--repeats, or at --min_repeats once the case has used --case_budget_s. A case whose predicted time
(from the rates measured so far) would overrun --time_budget_s is skipped and listed as such.
All use the same thread count: TensorFlow's intra-op threads = torch.set_num_threads = --threads.

GFLOP/s: forward = 2·T·B·G·H·(I_l + H) per layer and direction (G gates; I_l the layer's input
size); a training step counts as 3× forward. "×" columns: peer time / our time (> 1: ours faster).

Output: a markdown report between `<!-- bench:begin -->` and `<!-- bench:end -->` in --out_md (the
rest of that file is kept), a chart --out_png, the goal checks of the issue printed as PASS/FAIL
lines (reported, never asserted), and optionally all raw timings as JSON (--out_json).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # `import tf_rnn_ops` from the source tree

FLAGS = flags.FLAGS
flags.DEFINE_bool(
    "quick", False, "A small subset (H=256, GRU/LSTM, few repeats) to check the bench."
)
flags.DEFINE_integer("repeats", 5, "Most timed rounds per case.")
flags.DEFINE_integer("min_repeats", 3, "Fewest timed rounds per case.")
flags.DEFINE_integer("warmup", 1, "Untimed calls of each implementation before its rounds.")
flags.DEFINE_float("case_budget_s", 20.0, "Stop a case's rounds at --min_repeats after this long.")
flags.DEFINE_float(
    "time_budget_s", 1080.0,
    "The whole run's budget: timing cases predicted to end later than it allows (after keeping "
    "time for the end-of-run ceiling and the memory checks) are skipped and listed.",
)  # fmt: skip
flags.DEFINE_list("modes", ["gru", "lstm", "rnn_tanh"], "RNN modes.")
flags.DEFINE_list("hidden", ["256", "512"], "Hidden sizes.")
flags.DEFINE_list("batch", ["1", "64", "256"], "Batch sizes; --std_batch is the standard one.")
flags.DEFINE_integer("std_batch", 64, "The standard batch (the full matrix runs at it).")
flags.DEFINE_list("batch_modes", ["gru", "lstm"], "Modes measured at the non-standard batches.")
flags.DEFINE_integer("time", 100, "Sequence length T.")
flags.DEFINE_integer("input", 128, "Input size I.")
flags.DEFINE_list("directions", ["uni", "bi"], "Directions of the matrix: uni, bi.")
flags.DEFINE_list("layers", ["1", "2"], "Layer counts of the matrix.")
flags.DEFINE_list(
    "peers", ["keras", "blocklstm", "grublock", "torch"], "Peers at the standard shapes."
)
flags.DEFINE_list("matrix_peers", ["torch"], "Peers beside our op in the rest of the matrix.")
flags.DEFINE_list("phases", ["forward", "train"], "Phases: forward (inference), train.")
flags.DEFINE_integer(
    "threads", 0, "Threads for everyone (0: TensorFlow's default, os.cpu_count())."
)
flags.DEFINE_enum(
    "torch_wait_policy", "passive", ["auto", "default", "passive", "active"],
    "OMP_WAIT_POLICY for PyTorch's OpenMP threads. PyTorch's default (spinning, 'default') "
    "collapses as soon as other processes want the cores (a GRU forward 10-50x slower, seen on "
    "shared 2-core machines), and load can rise mid-run, so passive is the default; 'default' "
    "gives PyTorch's own on a machine known to be quiet; auto: passive when the 1-minute load "
    "average at the start exceeds the core count.",
)  # fmt: skip
flags.DEFINE_bool("matmul", True, "Measure the matmul ceiling.")
flags.DEFINE_bool(
    "interleave_ceiling", True,
    "Also time the 2048³ matmul in every round of every case, so that % of the ceiling compares "
    "rates measured side by side.",
)  # fmt: skip
flags.DEFINE_bool("memory", True, "Measure peak memory of a training step (subprocesses).")
flags.DEFINE_list("memory_modes", ["gru", "lstm"], "Modes of the memory check.")
flags.DEFINE_list(
    "memory_hidden", ["256", "512"], "Hidden sizes of the memory check (B=std, uni, 1 layer)."
)
flags.DEFINE_list("memory_impls", ["ours", "keras"], "Implementations of the memory check.")
flags.DEFINE_string(
    "out_md", os.path.join(ROOT, "docs", "PERFORMANCE.md"), "Markdown report ('' none)."
)
flags.DEFINE_string("out_png", os.path.join(ROOT, "docs", "bench.png"), "Chart ('' none).")
flags.DEFINE_string("out_json", "", "Raw results as JSON ('' none).")
flags.DEFINE_bool("plan", False, "Print the cases and their flops, run nothing.")
flags.DEFINE_bool("streaming", True, "Run the 'streaming and small' section (bench_streaming.py).")
flags.DEFINE_bool("streaming_only", False, "Run only the 'streaming and small' section.")
flags.DEFINE_list("stream_hidden", ["256", "1024"], "Hidden sizes of the one-step calls.")
flags.DEFINE_list("small_hidden", ["4", "32", "64"], "Hidden sizes of the small (weather) models.")
flags.DEFINE_integer("gen_steps", 200, "Steps of the generation loop (0: none).")
flags.DEFINE_integer("stream_repeats", 15, "Most timed rounds per streaming/small case.")

QUICK = {
    "repeats": 3,
    "min_repeats": 2,
    "case_budget_s": 8.0,
    "time_budget_s": 480.0,
    "modes": ["gru", "lstm"],
    "hidden": ["256"],
    "batch": ["1", "64"],
    "directions": ["uni", "bi"],
    "layers": ["1"],
    "memory_hidden": ["256"],
    "memory_impls": ["ours"],
}

MATMULS = [(2048, 2048, 2048), (6400, 128, 768), (64, 256, 768), (1, 256, 768)]
CEILING = MATMULS[0]
MEMORY_PROBE_S = 25.0  # what one memory subprocess is budgeted (it usually takes 10-20 s)


def log(msg: str) -> None:
    print(msg, flush=True)


def _apply_quick() -> None:
    for name, value in QUICK.items():
        if not FLAGS[name].present:
            FLAGS[name].value = value


# ---------------------------------------------------------------- timing


class Runner:
    """Times groups of implementations side by side and keeps every result."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.results: list[dict] = []
        self.rates: dict[tuple[str, str], list[float]] = {}  # (impl, phase) -> GFLOP/s seen

    def predict(self, case, phase, impls) -> float | None:
        """Seconds the case would take at the rates seen so far (None: no estimate)."""
        total = 0.0
        for impl in impls:
            rates = self.rates.get((impl, phase))
            if not rates:
                return None
            per_call = _flops(case, phase, impl) / (statistics.median(rates) * 1e9)
            total += per_call * (FLAGS.warmup + FLAGS.min_repeats + 1)
        return total

    def run_case(self, case, phase, impls) -> None:
        import bench_impls as bi

        rec = {"case": case, "phase": phase, "flops": case.flops(phase)}
        predicted = self.predict(case, phase, impls)
        if predicted is not None and time.monotonic() + predicted > self.deadline:
            for impl in impls:
                self.results.append(
                    dict(rec, impl=impl, skipped=f"time budget (needs ~{predicted:.0f} s)")
                )
            log(f"  skip {case.label} {phase}: predicted {predicted:.0f} s > time budget")
            return
        cands = []
        for impl in impls:
            try:
                fn = bi.IMPLS[impl](case, phase)
                for _ in range(max(FLAGS.warmup, 1)):
                    fn()
                cands.append((impl, fn))
            except bi.Skip as e:
                self.results.append(dict(rec, impl=impl, skipped=str(e), na=e.na))
            except Exception as e:  # noqa: BLE001 - a broken implementation must not stop the run
                first = (str(e).strip().splitlines() or [""])[0][:200]
                self.results.append(
                    dict(rec, impl=impl, skipped=f"error: {type(e).__name__}: {first}")
                )
                log(f"  {impl} {case.label} {phase}: {type(e).__name__}: {first}")
        times = {impl: [] for impl, _ in cands}
        start = time.monotonic()
        gc.collect()
        gc.disable()
        try:
            for r in range(FLAGS.repeats):
                k = r % max(len(cands), 1)
                for impl, fn in cands[k:] + cands[:k]:
                    t0 = time.perf_counter()
                    out = fn()
                    times[impl].append(time.perf_counter() - t0)
                    del out
                now = time.monotonic()
                if r + 1 >= FLAGS.min_repeats and (
                    now - start > FLAGS.case_budget_s or now > self.deadline
                ):
                    break
        finally:
            gc.enable()
        parts = []
        for impl, _ in cands:
            med = statistics.median(times[impl])
            gflops = _flops(case, phase, impl) / med / 1e9
            if case.batch >= FLAGS.std_batch:  # batch-1 rates would predict nothing useful
                self.rates.setdefault((impl, phase), []).append(gflops)
            self.results.append(dict(rec, impl=impl, times=times[impl], median=med, gflops=gflops))
            parts.append(f"{impl} {med * 1e3:.1f} ms")
        log(f"  {case.label} {phase}: " + ", ".join(parts))
        del cands
        gc.collect()

    def get(self, case, phase, impl) -> dict | None:
        for r in self.results:
            if r["case"] == case and r["phase"] == phase and r["impl"] == impl:
                return r
        return None


def _flops(case, phase, impl) -> float:
    import bench_impls as bi

    return bi.CEILING_FLOPS if impl == "ceiling" else case.flops(phase)


def measure_matmuls(tag: str) -> list[dict]:
    import bench_impls as bi

    out = []
    for m, k, n in MATMULS:
        fn, flops = bi.build_matmul(m, k, n)
        fn()
        reps = max(3, min(50, int(1.0 / max(_time_once(fn), 1e-6))))
        times = [_time_once(fn) for _ in range(reps)]
        med = statistics.median(times)
        out.append({"shape": (m, k, n), "when": tag, "median": med, "gflops": flops / med / 1e9})
        log(f"  matmul {m}x{k}x{n} ({tag}): {flops / med / 1e9:.1f} GFLOP/s")
    return out


def _time_once(fn) -> float:
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    del out
    return dt


# ---------------------------------------------------------------- plan


def plan():
    """[(section, case, impls)] in run order."""
    import bench_impls as bi

    T, NI, SB = FLAGS.time, FLAGS.input, FLAGS.std_batch
    hidden = [int(h) for h in FLAGS.hidden]
    batches = [int(b) for b in FLAGS.batch]
    dirs = [2 if d.startswith("bi") else 1 for d in FLAGS.directions]
    layers = [int(n) for n in FLAGS.layers]
    ceiling = ["ceiling"] if FLAGS.matmul and FLAGS.interleave_ceiling else []
    peers = ["ours", "ours_trainfwd"] + FLAGS.peers + ceiling
    out = []
    for mode in FLAGS.modes:
        for h in hidden:
            out.append(("peers", bi.Case(mode, h, SB, 1, 1, T, NI), peers))
    for b in batches:
        if b == SB:
            continue
        for mode in FLAGS.batch_modes:
            if mode in FLAGS.modes:
                out.append(("batch", bi.Case(mode, min(hidden), b, 1, 1, T, NI), peers))
    matrix = []
    for mode in FLAGS.modes:
        for h in hidden:
            for d in dirs:
                for n in layers:
                    if (d, n) != (1, 1):
                        matrix.append(bi.Case(mode, h, SB, d, n, T, NI))
    matrix.sort(key=lambda c: c.forward_flops())
    out += [("matrix", c, ["ours"] + FLAGS.matrix_peers + ceiling) for c in matrix]
    return out


# ---------------------------------------------------------------- memory


def run_memory(threads: int) -> list[dict]:
    out = []
    envs = {
        "allocator": {"TF_CPU_ALLOCATOR_USE_BFC": "true"},
        "rss": {"MALLOC_MMAP_THRESHOLD_": "65536"},
    }
    runs = [
        (int(hidden), mode, impl, metric, extra)
        for hidden in FLAGS.memory_hidden
        for mode in FLAGS.memory_modes
        for impl in FLAGS.memory_impls
        for metric, extra in envs.items()
    ]
    for hidden, mode, impl, metric, extra in runs:
        cmd = [
            sys.executable, os.path.join(HERE, "bench_memory.py"), f"--metric={metric}",
            f"--impl={impl}", f"--mode={mode}", f"--hidden={hidden}",
            f"--batch={FLAGS.std_batch}", f"--time={FLAGS.time}", f"--input={FLAGS.input}",
            f"--threads={threads}",
        ]  # fmt: skip
        env = dict(os.environ, **extra)
        for attempt in range(2):  # once more if it failed (e.g. a concurrent rebuild)
            rec = {"mode": mode, "impl": impl, "metric": metric, "hidden": hidden}
            try:
                p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
                line = [s for s in p.stdout.splitlines() if s.startswith("BENCH_MEMORY ")]
                if line:
                    rec.update(json.loads(line[-1][len("BENCH_MEMORY ") :]))
                    break
                tail = (p.stderr.strip().splitlines() or ["no output"])[-1][:200]
                rec["error"] = f"exit {p.returncode}: {tail}"
            except subprocess.TimeoutExpired:
                rec["error"] = "timed out"
                break
            if attempt == 0:
                time.sleep(10)
        out.append(rec)
        if "error" in rec:
            log(f"  memory {impl} {mode} H={hidden} {metric}: {rec['error']}")
        else:
            log(
                f"  memory {impl} {mode} H={hidden} {metric}: peak {rec['peak_bytes'] / 2**20:.1f} "
                f"MiB, reference {rec['reference_bytes'] / 2**20:.1f} MiB, "
                f"ratio {rec['ratio']:.2f}"
            )
    return out


# ---------------------------------------------------------------- environment


def environment(threads: int, tf) -> dict:
    cpu = platform.processor()
    # The family and model too: virtual machines often report a bare "AMD EPYC", which names
    # neither the generation nor its FMA width (Zen 4 splits an AVX-512 FMA in two, Zen 5 not).
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in info:
                    info[key] = value.strip()
                if not line.strip() and info:
                    break  # the first processor's block is enough
    except OSError:
        pass
    if "model name" in info:
        cpu = info["model name"]
        if "cpu family" in info and "model" in info:
            cpu += f" (family {info['cpu family']}, model {info['model']})"

    def git(*args):
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    import bench_peak

    dirty = git("status", "--porcelain", "--", "cc", "tf_rnn_ops")
    env = {
        "fma_peaks": bench_peak.fma_peaks(threads),
        "product_path": bench_peak.describe_path(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default",
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "kernel_sources_modified": bool(dirty),
        "loadavg_start": os.getloadavg()[0],
    }
    try:
        import keras

        env["keras"] = keras.__version__
    except ImportError:
        pass
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        env["torch"] = None
    return env


# ---------------------------------------------------------------- streaming and small


def run_streaming(threads: int, write: bool = True) -> str:
    """The "streaming and small" section; returns its markdown (written to --out_md if `write`)."""
    import bench_streaming

    log("section streaming and small")
    result = bench_streaming.run(FLAGS, threads, log)
    text = bench_streaming.markdown(result)
    log(text)
    if write and FLAGS.out_md:
        bench_streaming.write_markdown(FLAGS.out_md, text)
        log(f"wrote {FLAGS.out_md}")
    return text


# ---------------------------------------------------------------- main


def main(argv):
    del argv
    if FLAGS.quick:
        _apply_quick()
    t_start = time.monotonic()
    threads = FLAGS.threads or os.cpu_count() or 1
    cases = plan()
    if FLAGS.plan:
        total = 0.0
        for section, case, impls in cases:
            for phase in FLAGS.phases:
                total += case.flops(phase)
                log(
                    f"{section:7s} {case.label:40s} {phase:8s} "
                    f"{case.flops(phase) / 1e9:8.1f} GFLOP  {impls}"
                )
        log(f"total {total / 1e9:.0f} GFLOP per implementation round")
        return

    policy = FLAGS.torch_wait_policy
    if policy == "auto":
        policy = "passive" if os.getloadavg()[0] > (os.cpu_count() or 1) else "default"
    if policy != "default" and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = policy.upper()  # read when torch loads libgomp
    policy = os.environ.get("OMP_WAIT_POLICY", "default").lower()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    import bench_impls as bi

    torch = None
    if any("torch" in impls for _, _, impls in cases) or "torch" in FLAGS.memory_impls:
        torch = bi.torch_setup(threads)
        if torch is None:
            log(
                "NOTE: torch is not installed: the PyTorch peer is skipped (make bench installs it)"
            )
    import tf_rnn_ops

    if FLAGS.streaming_only:
        run_streaming(threads)
        return
    if not hasattr(tf_rnn_ops, "gru_block_cell"):
        log(
            "NOTE: tf_rnn_ops.gru_block_cell does not exist yet: the training step of the "
            "GRUBlockCell while_loop peer is skipped (its inference runs tf.raw_ops.GRUBlockCell)"
        )
    env = environment(threads, tf)
    env["torch_wait_policy"] = policy
    log(f"bench: {env}")

    reserve = (30.0 if FLAGS.matmul else 0.0) + (
        MEMORY_PROBE_S
        * len(FLAGS.memory_modes)
        * len(FLAGS.memory_impls)
        * len(FLAGS.memory_hidden)
        * 2
        if FLAGS.memory
        else 0
    )
    runner = Runner(deadline=t_start + FLAGS.time_budget_s - reserve)
    matmuls = []
    if FLAGS.matmul:
        log("ceiling (start)")
        matmuls += measure_matmuls("start")
    section = None
    for sec, case, impls in cases:
        if sec != section:
            section = sec
            log(f"section {sec}")
        for phase in FLAGS.phases:
            runner.run_case(case, phase, impls)
    if FLAGS.matmul:
        log("ceiling (end)")
        matmuls += measure_matmuls("end")
    streaming_md = run_streaming(threads, write=False) if FLAGS.streaming else None
    memory = []
    if FLAGS.memory:
        log("memory")
        memory = run_memory(threads)
    env["loadavg_end"] = os.getloadavg()[0]
    env["wall_s"] = time.monotonic() - t_start
    env["quick"] = FLAGS.quick
    env["repeats"] = (FLAGS.min_repeats, FLAGS.repeats)

    import bench_report as rep

    report = rep.Report(env, runner, matmuls, memory, cases, FLAGS)
    checks = report.goal_checks()
    log("")
    log(report.text_tables())
    log("goal checks (reported, never asserted):")
    for line in checks:
        log("  " + line)
    if FLAGS.out_md:
        report.write_markdown(FLAGS.out_md)
        if streaming_md:
            import bench_streaming

            bench_streaming.write_markdown(FLAGS.out_md, streaming_md)
        log(f"wrote {FLAGS.out_md}")
    if FLAGS.out_png:
        try:
            report.write_chart(FLAGS.out_png)
            log(f"wrote {FLAGS.out_png}")
        except ImportError:
            log("NOTE: matplotlib is not installed: no chart (make bench installs it)")
    if FLAGS.out_json:
        report.write_json(FLAGS.out_json)
        log(f"wrote {FLAGS.out_json}")
    log(f"bench done in {env['wall_s'] / 60:.1f} min")


if __name__ == "__main__":
    app.run(main)
