"""Cost of CLVS next to the baseline, on the engine benchmark's tiny LLaVA-1.5- and Qwen2-VL-shaped models.

    python -m bench.bench_clvs                      # both shapes, 11 round-robin repetitions (~3 minutes)
    python -m bench.bench_clvs --shapes llava --reps 5

Same models, batch (1) and answer length (2 tokens) as `bench.bench_engine`; every workload once per
repetition, round-robin, after warm-up, so load drifts hit all of them alike. On a shared machine wall
times mean little, so `--clock cpu` (the default) measures the process's CPU time with one thread: the
work done, nearly independent of what else runs (the table still reports the load). `--clock wall
--threads 2` times like bench.bench_engine on a quiet machine. The CLVS workloads run at the published
defaults (lambda 0.7, beta 0.8, tau 0.5, scope all); the random-weight models never get below tau, so
every check runs: the most expensive case.
"""
from __future__ import annotations

import statistics
import time

import torch

from bench.bench_engine import busy_cpu_seconds, load, shape_line
from bench.workload import ANSWER_TOKENS, SHAPES, Workload, batch_inputs, build_vlm
from bench.workload import WORKLOADS as ENGINE_WORKLOADS
from common.cli import OneLineParser
from intervention import CLVS, ClvsSmoothing
from intervention.clvs_grid import answer_settings

GRID = tuple(CLVS(lam=lam) for lam in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0))  # a 6-value --clvs-lambda sweep


def _clvs_forward(vlm, inputs):
    """The engine benchmark's one prompt forward (logits of the last position only), under CLVS."""
    with ClvsSmoothing(vlm):
        return ENGINE_WORKLOADS["stock_forward"].run(vlm, inputs)


def _clvs(vlm, inputs):
    return CLVS().run(vlm, inputs, ANSWER_TOKENS)


def _grid(engine: str):
    def run(vlm, inputs):
        return answer_settings(vlm, inputs, GRID, ANSWER_TOKENS, engine)
    return run


WORKLOADS = {w.name: w for w in (
    ENGINE_WORKLOADS["baseline"],
    ENGINE_WORKLOADS["stock_forward"],
    Workload("clvs_forward", _clvs_forward),
    Workload("clvs", _clvs),
    Workload("clvs_grid_prefix", _grid("prefix")),
    Workload("clvs_grid_naive", _grid("naive")),
)}
# (label, numerator, denominator, target)
RATIOS = (
    ("CLVS / baseline", "clvs", "baseline", "<= 1.1"),
    ("CLVS forward / stock SDPA forward", "clvs_forward", "stock_forward", ""),
    ("6-lambda CLVS grid, shared prompt / baseline", "clvs_grid_prefix", "baseline", ""),
    ("6-lambda CLVS grid, one generate each / baseline", "clvs_grid_naive", "baseline", "(~6)"),
)


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def time_round_robin(vlm, inputs, reps: int, warmup: int, clock) -> tuple[dict[str, list[float]], float]:
    """Seconds per call of each workload over `reps` round-robin repetitions, and the cores other
    processes used meanwhile (from /proc/stat)."""
    for _ in range(warmup):
        for workload in WORKLOADS.values():
            workload.run(vlm, inputs)
    times: dict[str, list[float]] = {name: [] for name in WORKLOADS}
    wall, own, busy = time.perf_counter(), time.process_time(), busy_cpu_seconds()
    for _ in range(reps):
        for name, workload in WORKLOADS.items():
            start = clock()
            workload.run(vlm, inputs)
            times[name].append(clock() - start)
    external = (busy_cpu_seconds() - busy - (time.process_time() - own)) / (time.perf_counter() - wall)
    return times, max(0.0, external)


def timing_table(times: dict[str, list[float]]) -> str:
    """Medians per workload, then each ratio as the median over repetitions of the ratio within one
    repetition (ratio of the medians in brackets), as bench.bench_engine reports them."""
    median = {name: statistics.median(values) for name, values in times.items()}
    rows = ["| workload | median ms | min ms |", "|---|---|---|"]
    rows += [f"| {name} | {1000 * median[name]:.1f} | {1000 * min(values):.1f} |" for name, values in times.items()]
    rows += ["", "| ratio | paired median (ratio of medians) | target |", "|---|---|---|"]
    for label, num, den, target in RATIOS:
        paired = statistics.median(a / b for a, b in zip(times[num], times[den]))
        rows.append(f"| {label} | {paired:.3f} ({median[num] / median[den]:.3f}) | {target} |")
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
    threads = args.threads or (1 if args.clock == "cpu" else 2)
    torch.set_num_threads(threads)
    for shape in args.shapes.split(","):
        before = load()
        vlm = build_vlm(shape)
        inputs = batch_inputs(vlm, shape, 1)
        print(f"\n## {shape_line(shape, vlm, inputs)}\n")
        times, external = time_round_robin(vlm, inputs, args.reps, args.warmup, CLOCKS[args.clock])
        print(f"batch 1, {args.clock} time, {args.reps} round-robin repetitions after {args.warmup} warm-up ones; "
              f"other processes used {external:.2f} cores meanwhile; 1-min load average {before:.2f} before, "
              f"{load():.2f} after\n\n{timing_table(times)}\n", flush=True)


if __name__ == "__main__":
    main()
