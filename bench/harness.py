"""The round-robin timing the per-method benchmarks share (bench_clvs, bench_vea).

Same models, batch (1) and answer length (2 tokens) as `bench.bench_engine`; every workload once per
repetition, round-robin, after warm-up, so load drifts hit all of them alike. On a shared machine wall
times mean little, so `--clock cpu` (the default) measures this process's CPU time with one thread: the
work done, nearly independent of what else runs (the table still reports the load). `--clock wall
--threads 2` times like `bench.bench_engine` on a quiet machine.
"""
from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Callable, Sequence

from bench.shapes import SHAPES, check_bench_args
from common.cli import OneLineParser

# torch and the models (`bench.workload`, `bench.engine_timing`) are imported once the arguments are checked, so
# `--help` and argument errors answer at once.
if TYPE_CHECKING:
    from bench.workload import Workload

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
Ratio = tuple[str, str, str, str]  # (label, numerator workload, denominator workload, target)


def time_round_robin(workloads: dict[str, Workload], vlm, inputs, reps: int, warmup: int,
                     clock) -> tuple[dict[str, list[float]], float]:
    """Seconds per call of each workload over `reps` round-robin repetitions, and the cores other processes
    used meanwhile (from /proc/stat)."""
    from bench.engine_timing import busy_cpu_seconds

    for _ in range(warmup):
        for workload in workloads.values():
            workload.run(vlm, inputs)
    times: dict[str, list[float]] = {name: [] for name in workloads}
    wall, own, busy = time.perf_counter(), time.process_time(), busy_cpu_seconds()
    for _ in range(reps):
        for name, workload in workloads.items():
            start = clock()
            workload.run(vlm, inputs)
            times[name].append(clock() - start)
    external = (busy_cpu_seconds() - busy - (time.process_time() - own)) / (time.perf_counter() - wall)
    return times, max(0.0, external)


def ratio_table(times: dict[str, list[float]], ratios: Sequence[Ratio], digits: int = 3) -> str:
    """Medians and minima per workload, then each ratio as the median over repetitions of the ratio within
    one repetition (the two calls ran seconds apart, so a load change hits both), and in brackets the ratio
    of the medians."""
    median = {name: statistics.median(values) for name, values in times.items()}
    rows = ["| workload | median ms | min ms |", "|---|---|---|"]
    rows += [f"| {name} | {1000 * median[name]:.1f} | {1000 * min(values):.1f} |" for name, values in times.items()]
    rows += ["", "| ratio | paired median (ratio of medians) | target |", "|---|---|---|"]
    for label, num, den, target in ratios:
        paired = statistics.median(a / b for a, b in zip(times[num], times[den]))
        rows.append(f"| {label} | {paired:.{digits}f} ({median[num] / median[den]:.{digits}f}) | {target} |")
    return "\n".join(rows)


def build_parser(prog: str, description: str) -> OneLineParser:
    """The command line every per-method benchmark shares."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--shapes", default=",".join(SHAPES),
                        help="comma-separated: " + ", ".join(SHAPES) + " (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=11, help="timed round-robin repetitions (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions first (default: %(default)s)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="cpu",
                        help="cpu: this process's CPU time (robust on a shared machine); wall: elapsed time "
                             "(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 for cpu, 2 for wall)")
    return parser


def parse_args(prog: str, description: str, argv=None):
    """The arguments, checked (a bad shape or count is one error line), and the shapes to time."""
    parser = build_parser(prog, description)
    args = parser.parse_args(argv)
    return args, check_bench_args(parser, args)


def main(prog: str, description: str, workloads: Callable[[], dict[str, Workload]], ratios: Sequence[Ratio],
         argv=None) -> None:
    """The command line of one per-method benchmark: time the workloads (`workloads()` builds them, importing
    torch, once the arguments are checked) on each shape, print the tables."""
    args, shapes = parse_args(prog, description, argv)
    import torch  # here, not at the top: see the module's imports

    from bench.engine_timing import load, shape_line
    from bench.workload import batch_inputs, build_vlm

    torch.set_num_threads(args.threads or (1 if args.clock == "cpu" else 2))
    timed = workloads()
    for shape in shapes:
        before = load()
        vlm = build_vlm(shape)
        inputs = batch_inputs(vlm, shape, 1)
        print(f"\n## {shape_line(shape, vlm, inputs)}\n")
        times, external = time_round_robin(timed, vlm, inputs, args.reps, args.warmup, CLOCKS[args.clock])
        print(f"batch 1, {args.clock} time, {args.reps} round-robin repetitions after {args.warmup} warm-up ones; "
              f"other processes used {external:.2f} cores meanwhile; 1-min load average {before:.2f} before, "
              f"{load():.2f} after\n\n{ratio_table(times, ratios)}\n", flush=True)
