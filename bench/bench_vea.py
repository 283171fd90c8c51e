"""Cost of VEA side by side with the baseline, on the engine benchmark's tiny LLaVA-1.5- and Qwen2-VL-shaped models.

    python -m bench.bench_vea                      # both shapes, 11 round-robin repetitions (~4 minutes)
    python -m bench.bench_vea --shapes llava --reps 5
    python -m bench.bench_vea --clock wall --threads 2    # as bench.bench_engine, on a quiet machine

Same models, batch (1) and answer length (2 tokens) as `bench.bench_engine`; every workload once per
repetition, round-robin, after warm-up, so load drifts hit all of them alike. On a shared machine wall times
mean little, so `--clock cpu` (the default) measures this process's CPU time with one thread (torch and
OpenBLAS): the work done, nearly independent of what else runs (the table still reports the load).
Every workload answers the same prepared batch; VEA also prepares its hinted prompt (part of its cost).

Cost model (V vision tower, P prompt forward, D one decode step, T answer tokens, R the capture's
recomputed last-prompt rows, M the evidence maps and the highlight, Q the tokenisation of the hinted
prompt): baseline V + P + (T-1) D; VEA (V + P + R) [attribution: one prompt forward with capture] + M + Q +
V + P' + (T-1) D [answer], P' the prompt with the hint's ~20 tokens more. So VEA / baseline ~ 2 + (R + M +
Q + P' - P) / baseline: the second pass is unavoidable (the image changes), the rest is what VEA adds.
The attribution layer is given (the tiny 4-layer LM has no published set; profiling is a one-off per model,
not part of the per-sample cost).
"""
from __future__ import annotations

import os

# One OpenBLAS thread, set before numpy loads: idle BLAS threads spin, which a CPU clock would count as work.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import statistics  # noqa: E402
import time  # noqa: E402
from functools import lru_cache  # noqa: E402

import torch  # noqa: E402

from bench.bench_engine import busy_cpu_seconds, load, shape_line  # noqa: E402
from bench.workload import (ANSWER_TOKENS, SHAPES, WORKLOADS, Workload, batch_images, batch_inputs,  # noqa: E402
                            build_vlm)
from common.cli import OneLineParser  # noqa: E402
from methods.vea import VEA  # noqa: E402
from methods.vea_profile import attribute  # noqa: E402

LAYERS = "2"  # one layer of four: ceil(0.1 L), as profiling would keep
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
# (label, numerator, denominator, target)
RATIOS = (
    ("VEA (defaults: alpha 0.5, sigma 0.5, lambda 10, hint) / baseline", "vea", "baseline", "<= 2.2"),
    ("VEA without the hint / baseline", "vea_no_hint", "baseline", ""),
    ("attribution pass alone (one prompt forward with capture) / baseline", "vea_attribution", "baseline", ""),
)


@lru_cache(maxsize=None)
def _batch(family: str, rows: int) -> tuple[tuple, tuple]:
    images, questions = batch_images(family, rows)  # the shapes are named after their families
    return tuple(images), tuple(questions)


def _vea(setting: VEA):
    def run(vlm, inputs):
        images, questions = _batch(vlm.family, inputs["input_ids"].shape[0])
        return setting.run(vlm, list(images), list(questions), max_new_tokens=ANSWER_TOKENS, inputs=inputs)
    return run


def _attribution(vlm, inputs):
    return attribute(vlm, inputs, _batch(vlm.family, inputs["input_ids"].shape[0])[0])


TIMED = {w.name: w for w in (
    WORKLOADS["baseline"],
    Workload("vea", _vea(VEA(layers=LAYERS))),
    Workload("vea_no_hint", _vea(VEA(layers=LAYERS, hint=False))),
    Workload("vea_attribution", _attribution),
)}


def time_round_robin(vlm, inputs, reps: int, warmup: int, clock) -> tuple[dict[str, list[float]], float]:
    """Seconds per call of each workload over `reps` round-robin repetitions, and the cores other processes
    used meanwhile (from /proc/stat)."""
    for _ in range(warmup):
        for workload in TIMED.values():
            workload.run(vlm, inputs)
    times: dict[str, list[float]] = {name: [] for name in TIMED}
    wall, own, busy = time.perf_counter(), time.process_time(), busy_cpu_seconds()
    for _ in range(reps):
        for name, workload in TIMED.items():
            start = clock()
            workload.run(vlm, inputs)
            times[name].append(clock() - start)
    external = (busy_cpu_seconds() - busy - (time.process_time() - own)) / (time.perf_counter() - wall)
    return times, max(0.0, external)


def ratio_table(times: dict[str, list[float]]) -> str:
    """Medians per workload, then each ratio as the median of the within-repetition ratios (and, in
    brackets, the ratio of the medians)."""
    median = {name: statistics.median(values) for name, values in times.items()}
    rows = ["| workload | median ms | min ms |", "|---|---|---|"]
    rows += [f"| {name} | {1000 * median[name]:.1f} | {1000 * min(values):.1f} |" for name, values in times.items()]
    rows += ["", "| ratio | paired median (ratio of medians) | target |", "|---|---|---|"]
    for label, num, den, target in RATIOS:
        paired = statistics.median(a / b for a, b in zip(times[num], times[den]))
        rows.append(f"| {label} | {paired:.2f} ({median[num] / median[den]:.2f}) | {target} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--reps", type=int, default=11, help="timed round-robin repetitions")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="cpu",
                        help="cpu: this process's CPU time (robust on a shared machine); wall: elapsed time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 for cpu, 2 for wall)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or (1 if args.clock == "cpu" else 2))
    for shape in args.shapes.split(","):
        before = load()
        vlm = build_vlm(shape)
        inputs = batch_inputs(vlm, shape, 1)
        print(f"\n## {shape_line(shape, vlm, inputs)}\n")
        times, external = time_round_robin(vlm, inputs, args.reps, args.warmup, CLOCKS[args.clock])
        print(f"batch 1, {args.clock} time, {args.reps} round-robin repetitions after {args.warmup} warm-up ones; "
              f"other processes used {external:.2f} cores meanwhile; 1-min load average {before:.2f} before, "
              f"{load():.2f} after\n\n{ratio_table(times)}\n", flush=True)


if __name__ == "__main__":
    main()
