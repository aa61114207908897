"""The "streaming and small" section of `make bench`: the drop-in layers where the big-batch
benchmark does not look, side by side with `keras.layers` in one run.

Cases (each a `tf.function`, the layer class the only difference; weights copied from the Keras
layer):

1. one-step call: B = 1, T = 1, states in and out (text generation, seq2seq decoding, streaming),
   GRU and LSTM, I = 256, H in --stream_hidden (256, 1024);
2. generation: the text-generation tutorial's loop (Embedding(65, 256) → GRU(1024, return_state) →
   Dense(65), then a categorical sample), --gen_steps calls of one step each from Python;
3. small models: the weather example's shape B = 256, T = 120, I = 7 with H in --small_hidden
   (4, 32, 64; 4: rows narrower than a SIMD vector), GRU and LSTM: inference (a layer call) and a
   training step (forward, backward and every weight gradient through a GradientTape).

Timing: warm-up, then rounds that run every implementation of a case once, in rotating order; the
median over rounds is reported, and "×" = Keras' time / ours (> 1: ours faster). The one-step cases
also time a third implementation, "floor": our layer's `tf.function` traced with the op replaced by
one `IdentityN` over its inputs (the weight reads stay; no kernel work), what a call of ours would
cost with a kernel that took no time; "max ×" = Keras / floor bounds the ratio any kernel could
reach in that run. Each call's process CPU time is kept beside its wall time (`Case.cpu`): under
load, CPU time moves less than wall time. GFLOP/s counts
2·B·T·G·H·(I + H) a forward (3× for a training step) and is given against the machine's physical
float32 FMA peak, measured at the start of the section by `bench_peak.py` (a register-resident FMA
loop in AVX2 and, where the CPU has it, AVX-512; the higher rate is the peak; "n/a" where neither
can be built or run).
"""

from __future__ import annotations

import os
import statistics
import time

import bench_peak

BEGIN, END = "<!-- streaming:begin -->", "<!-- streaming:end -->"
GATES = {"gru": 3, "lstm": 4}


class Case:
    """One comparison: `build(impl)` returns a no-argument callable for each of `impls`; `flops`
    per call."""

    def __init__(self, group: str, label: str, flops: float, build, impls=("keras", "ours")):
        self.group, self.label, self.flops, self.build = group, label, flops, build
        self.impls = tuple(impls)
        self.times: dict[str, list[float]] = {}  # wall seconds per call
        self.cpu: dict[str, list[float]] = {}  # process CPU seconds per call


def _layer(impl: str, kind: str, units: int, **kwargs):
    import keras

    import tf_rnn_ops

    mod = keras.layers if impl == "keras" else tf_rnn_ops.layers
    return getattr(mod, {"gru": "GRU", "lstm": "LSTM"}[kind])(units, **kwargs)


def _pair(kind: str, units: int, x, **kwargs):
    """(keras layer, our layer) built on x, ours holding Keras' weights."""
    ref, ours = _layer("keras", kind, units, **kwargs), _layer("ours", kind, units, **kwargs)
    ref(x)
    ours(x)
    ours.set_weights(ref.get_weights())
    return {"keras": ref, "ours": ours}


def _no_work_keras_rnn(
    input, input_h, input_c, kernel, recurrent_kernel, bias=None, sequence_lengths=None, **_
):
    """`tf_rnn_ops.keras_rnn` without its work, for the "floor" timing: one `IdentityN` over the
    op's inputs (so the graph still reads every weight), the states passed through, y = h (one
    step)."""
    import tensorflow as tf

    args = [input, input_h, kernel, recurrent_kernel]
    args += [t for t in (input_c, bias, sequence_lengths) if t is not None]
    outs = tf.raw_ops.IdentityN(input=args)
    h = outs[1]
    c = outs[4] if input_c is not None else tf.zeros([], h.dtype)
    return h[:, tf.newaxis], h, c, tf.zeros([0], h.dtype)


def one_step_case(kind: str, hidden: int, inputs: int = 256) -> Case:
    from unittest import mock

    import tensorflow as tf

    from tf_rnn_ops.layers import rnn as rnn_layers

    x = tf.random.normal([1, 1, inputs])
    states = [tf.random.normal([1, hidden]) for _ in range(2 if kind == "lstm" else 1)]
    layers = _pair(kind, hidden, x, return_state=True)

    def build(impl):
        layer = layers["ours" if impl == "floor" else impl]
        fn = tf.function(lambda x, s: layer(x, initial_state=s))
        if impl == "floor":  # traced now, with the op replaced; later calls reuse this graph
            with mock.patch.object(rnn_layers, "keras_rnn", _no_work_keras_rnn):
                fn.get_concrete_function(x, states)
        return lambda: fn(x, states)

    flops = 2.0 * GATES[kind] * hidden * (inputs + hidden)
    label = f"{kind.upper()} B=1 T=1 I={inputs} H={hidden}"
    return Case("one-step", label, flops, build, impls=("keras", "ours", "floor"))


def generation_case(steps: int, units: int = 1024, vocab: int = 65, embed: int = 256) -> Case:
    """The TensorFlow text-generation tutorial's model and `OneStep` loop (sampling included)."""
    import keras
    import tensorflow as tf

    ids = tf.constant([[7]])
    models = {}
    for impl in ("keras", "ours"):
        inp = keras.Input([None], batch_size=1, dtype="int32")
        state = keras.Input([units], batch_size=1)
        e = keras.layers.Embedding(vocab, embed)(inp)
        y, h = _layer(impl, "gru", units, return_sequences=True, return_state=True)(
            e, initial_state=state
        )
        models[impl] = keras.Model([inp, state], [keras.layers.Dense(vocab)(y), h])
    models["ours"].set_weights(models["keras"].get_weights())

    def build(impl):
        model = models[impl]

        @tf.function
        def one_step(ids, h):
            logits, h = model([ids, h])
            nxt = tf.random.categorical(logits[:, -1, :], num_samples=1, dtype=tf.int32)
            return nxt, h

        def run():
            x, h = ids, tf.zeros([1, units])
            for _ in range(steps):
                x, h = one_step(x, h)
            return x

        return run

    flops = steps * 2.0 * 3 * units * (embed + units)
    return Case("generation", f"{steps}-step generation, GRU({units}) I={embed}", flops, build)


def small_cases(kind: str, hidden: int, batch=256, steps=120, inputs=7) -> list[Case]:
    import tensorflow as tf

    x = tf.random.normal([batch, steps, inputs])
    layers = _pair(kind, hidden, x)
    fwd = 2.0 * batch * steps * GATES[kind] * hidden * (inputs + hidden)
    label = f"{kind.upper()} B={batch} T={steps} I={inputs} H={hidden}"

    def build_infer(impl):
        layer = layers[impl]
        fn = tf.function(lambda x: layer(x, training=False))
        return lambda: fn(x)

    def build_train(impl):
        layer = layers[impl]

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(layer(x, training=True)))
            return tape.gradient(loss, layer.trainable_weights)

        return lambda: step(x)

    return [
        Case("small inference", label, fwd, build_infer),
        Case("small training", label, 3 * fwd, build_train),
    ]


def run_case(case: Case, repeats: int, budget_s: float, log) -> None:
    fns = {impl: case.build(impl) for impl in case.impls}
    for fn in fns.values():  # trace, then warm
        fn()
        fn()
    order = list(fns)
    start = time.monotonic()
    for r in range(repeats):
        k = r % len(order)
        for impl in order[k:] + order[:k]:
            t0, c0 = time.perf_counter(), time.process_time()
            fns[impl]()
            case.times.setdefault(impl, []).append(time.perf_counter() - t0)
            case.cpu.setdefault(impl, []).append(time.process_time() - c0)
        if r >= 2 and time.monotonic() - start > budget_s:
            break
    ms = {i: statistics.median(case.times[i]) * 1e3 for i in case.impls}
    cpu = {i: statistics.median(case.cpu[i]) * 1e3 for i in case.impls}
    floor = f", floor {ms['floor']:.3f} ms" if "floor" in ms else ""
    log(
        f"  {case.group}: {case.label}: keras {ms['keras']:.3f} ms, ours {ms['ours']:.3f} ms "
        f"({ms['keras'] / ms['ours']:.2f}x){floor}; CPU "
        + ", ".join(f"{i} {v:.3f}" for i, v in cpu.items())
        + " ms"
    )


def run(flags, threads: int, log) -> dict:
    """Runs the section: {'peak': GFLOP/s or None, 'peaks': bench_peak.fma_peaks(), 'path':
    bench_peak.describe_path(), 'cases': [Case], 'load': (start, end)}."""
    load0 = os.getloadavg()[0]
    peaks = bench_peak.fma_peaks(threads)
    peak, path = bench_peak.ceiling(peaks), bench_peak.describe_path()
    log(f"streaming and small: FMA peak {bench_peak.describe_peaks(peaks)} ({threads} threads)")
    log(f"streaming and small: {path}")
    cases = []
    for kind in ("gru", "lstm"):
        for h in flags.stream_hidden:
            cases.append(one_step_case(kind, int(h)))
    if flags.gen_steps > 0:
        cases.append(generation_case(flags.gen_steps))
    for kind in ("gru", "lstm"):
        for h in flags.small_hidden:
            cases += small_cases(kind, int(h))
    for case in cases:
        run_case(case, flags.stream_repeats, flags.case_budget_s, log)
    load = (load0, os.getloadavg()[0])
    return {"peak": peak, "peaks": peaks, "path": path, "cases": cases, "load": load}


def _goal(case: Case) -> tuple[float, str]:
    """(the ratio asked for, its wording) of a case, as issue 15 states the goals."""
    if case.group == "one-step":
        return 2.0, "≥ 2× (floor 1×)"
    return 1.0, "≥ 1×"


def markdown(result: dict) -> str:
    peak = result["peak"]
    peaks = bench_peak.describe_peaks(result.get("peaks", {"avx2": peak}))
    lines = [
        "### Streaming and small sizes (drop-in layers against keras.layers)",
        "",
        "`python/bench_streaming.py`, in every `make bench` (alone: `python/bench.py "
        "--streaming_only`). Each row: the same `tf.function` with the layer class swapped, "
        "Keras' weights in both; median of rotating rounds; × = Keras / ours; floor: ours with "
        "the op replaced by an `IdentityN` of its inputs (no kernel work), max × = Keras / floor. "
        "% FMA peak: "
        "our GFLOP/s against the machine's physical float32 FMA peak "
        f"({peaks}, all threads, measured in the same run: the higher of the AVX2 and AVX-512 "
        f"loops of `python/bench_peak.py`); {result.get('path', bench_peak.describe_path())}. "
        f"Load average {result['load'][0]:.1f} at the start, {result['load'][1]:.1f} at the end.",
        "",
        "| case | shape | keras ms | ours ms | × | goal | floor ms | max × | ours GFLOP/s "
        "| % FMA peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    for c in result["cases"]:
        k = statistics.median(c.times["keras"]) * 1e3
        o = statistics.median(c.times["ours"]) * 1e3
        gf = c.flops / (o / 1e3) / 1e9
        want, wording = _goal(c)
        pct = f"{100 * gf / peak:.2f}%" if peak else "n/a"
        floor, best = "–", "–"
        if "floor" in c.times:
            f = statistics.median(c.times["floor"]) * 1e3
            floor, best = f"{f:.3f}", f"{k / f:.2f}"
        lines.append(
            f"| {c.group} | {c.label} | {k:.3f} | {o:.3f} | {k / o:.2f} | {wording} | {floor} "
            f"| {best} | {gf:.2f} | {pct} |"
        )
        status = "PASS" if k / o >= want else ("FLOOR" if k / o >= 1.0 else "FAIL")
        bound = f"; a kernel taking no time: {best}×" if best != "–" else ""
        checks.append(f"`{status}` {c.group} {c.label}: {k / o:.2f}× ({wording}{bound})")
    return "\n".join(lines + ["", "Goal checks (reported, never asserted):", ""] +
                     [f"- {c}" for c in checks])  # fmt: skip


def write_markdown(path: str, text: str) -> None:
    """Puts `text` between the section's markers in `path` (appended the first time)."""
    try:
        with open(path) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + block + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(doc)
