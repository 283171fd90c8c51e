"""Cost of the peer decoding methods (VCD, DoLa) side by side with the baseline, on CPU.

    python -m bench.bench_methods                      # both shapes, 5 repetitions
    python -m bench.bench_methods --shapes llava --reps 3

The same tiny models and batch as `bench.bench_engine`, timed round-robin (one call of each workload per
repetition, after warm-up, so load drifts hit all alike). Every workload answers the same batch with a
2-token answer (`bench.workload.ANSWER_TOKENS`). Two clocks: wall time, and the CPU time of this process
(`time.process_time`), which other processes on a shared machine disturb far less (they steal cores,
which stretches the wall clock, but do not add to our CPU time; with `--threads 1` no thread of ours
spins waiting for another either). The table says how busy the machine was.

Cost model (V vision tower, P prompt forward, D one decode step, T answer tokens, |J| candidate layers,
H one lm_head projection of one position): baseline V + P + (T-1) D; VCD 2 (V + P + (T-1) D) plus the
noise (a few elementwise passes over the pixels); DoLa V + P + (T-1) D + T |J| H plus per-step
log-softmaxes over the vocabulary.
"""
from __future__ import annotations

import argparse
import statistics
import time

from bench.shapes import SHAPES, check_bench_args
from common.cli import OneLineParser

TIMED = ("baseline", "vcd", "dola", "dola_all_layers")
# (label, numerator, denominator, target)
RATIOS = (
    ("VCD / baseline", "vcd", "baseline", "<= 2.1"),
    ("DoLa (high bucket) / baseline", "dola", "baseline", "<= 1.1"),
    ("DoLa (every early exit a candidate) / baseline", "dola_all_layers", "baseline", "<= 1.1"),
)


def time_calls(workloads: dict, vlm, inputs, names, reps: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    """{clock: {workload: seconds per call}} over `reps` round-robin repetitions after `warmup` ones;
    `workloads`: `bench.workload.WORKLOADS`."""
    for _ in range(warmup):
        for name in names:
            workloads[name].run(vlm, inputs)
    times = {"wall": {name: [] for name in names}, "cpu": {name: [] for name in names}}
    for _ in range(reps):
        for name in names:
            wall, cpu = time.perf_counter(), time.process_time()
            workloads[name].run(vlm, inputs)
            times["wall"][name].append(time.perf_counter() - wall)
            times["cpu"][name].append(time.process_time() - cpu)
    return times


def ratio_table(times: dict[str, dict[str, list[float]]]) -> str:
    """Medians per workload and clock, then each ratio as the median of the within-repetition ratios (and,
    in brackets, the ratio of the medians)."""
    median = {clock: {name: statistics.median(v) for name, v in values.items()} for clock, values in times.items()}
    rows = ["| workload | wall median ms (min) | CPU median ms (min) |", "|---|---|---|"]
    rows += [f"| {name} | {1000 * median['wall'][name]:.1f} ({1000 * min(times['wall'][name]):.1f}) | "
             f"{1000 * median['cpu'][name]:.1f} ({1000 * min(times['cpu'][name]):.1f}) |" for name in TIMED]
    rows += ["", "| ratio | wall: paired median (ratio of medians) | CPU: paired median (ratio of medians) | target |",
             "|---|---|---|---|"]
    for label, num, den, target in RATIOS:
        cells = []
        for clock in ("wall", "cpu"):
            paired = statistics.median(a / b for a, b in zip(times[clock][num], times[clock][den]))
            cells.append(f"{paired:.2f} ({median[clock][num] / median[clock][den]:.2f})")
        rows.append(f"| {label} | {cells[0]} | {cells[1]} | {target} |")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m bench.bench_methods", description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--reps", type=int, default=5, help="timed round-robin repetitions")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=1, help="samples per call")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The arguments, checked: a bad shape or count is one error line, before any model is built."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.shapes = ",".join(check_bench_args(parser, args, counts=("reps", "threads", "batch")))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    # torch and the models are imported only once the arguments are checked, so --help answers at once.
    import torch

    from bench.engine_timing import busy_cpu_seconds, load, shape_line
    from bench.workload import WORKLOADS, batch_inputs, build_vlm

    torch.set_num_threads(args.threads)
    for shape in args.shapes.split(","):
        vlm = build_vlm(shape)
        inputs = batch_inputs(vlm, shape, args.batch)
        print(f"\n## {shape_line(shape, vlm, inputs)}\n")
        before, busy, wall, own = load(), busy_cpu_seconds(), time.perf_counter(), time.process_time()
        times = time_calls(WORKLOADS, vlm, inputs, TIMED, args.reps, args.warmup)
        external = (busy_cpu_seconds() - busy - (time.process_time() - own)) / (time.perf_counter() - wall)
        print(f"batch {args.batch}, {args.reps} round-robin repetitions after {args.warmup} warm-up; other "
              f"processes used {max(0.0, external):.2f} cores meanwhile; 1-min load average {before:.2f} before, "
              f"{load():.2f} after\n\n{ratio_table(times)}\n", flush=True)


if __name__ == "__main__":
    main()
