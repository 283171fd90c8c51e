"""Cost of the peer decoding methods (VCD, DoLa) side by side with the baseline, on CPU.

    python -m bench.bench_methods                      # both shapes, 5 repetitions
    python -m bench.bench_methods --shapes llava --reps 3

The same tiny models, batch and round-robin timing as `bench.bench_engine` (one call of each workload
per repetition, after warm-up, so load drifts hit all alike; repetitions during which other processes
used more than `--max-external` cores are dropped while possible). Every workload answers the same
batch with a 2-token answer (`bench.workload.ANSWER_TOKENS`).

Cost model (V vision tower, P prompt forward, D one decode step, T answer tokens, |J| candidate layers,
H one lm_head projection of one position): baseline V + P + (T-1) D; VCD 2 (V + P + (T-1) D) plus the
noise (a few elementwise passes over the pixels); DoLa V + P + (T-1) D + T |J| H plus per-step
log-softmaxes over the vocabulary.
"""
from __future__ import annotations

import statistics

import torch

from bench.bench_engine import contention, load, shape_line, time_round_robin
from bench.workload import SHAPES, batch_inputs, build_vlm
from common.cli import OneLineParser

TIMED = ("baseline", "vcd", "dola", "dola_all_layers")
# (label, numerator, denominator, target)
RATIOS = (
    ("VCD / baseline", "vcd", "baseline", "<= 2.1"),
    ("DoLa (high bucket) / baseline", "dola", "baseline", "<= 1.1"),
    ("DoLa (every early exit a candidate) / baseline", "dola_all_layers", "baseline", "<= 1.1"),
)


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
    parser.add_argument("--reps", type=int, default=5, help="timed round-robin repetitions")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--max-external", type=float, default=0.25,
                        help="count a repetition only if other processes used at most this many cores meanwhile")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for shape in args.shapes.split(","):
        before = load()
        vlm = build_vlm(shape)
        inputs = batch_inputs(vlm, shape, args.batch)
        print(f"\n## {shape_line(shape, vlm, inputs)}\n")
        timings = time_round_robin(vlm, inputs, TIMED, args.reps, args.warmup, args.max_external)
        print(f"batch {args.batch}, round-robin after {args.warmup} warm-up repetitions; {contention(timings)}; "
              f"1-min load average {before:.2f} before, {load():.2f} after\n\n{ratio_table(timings.times)}\n",
              flush=True)


if __name__ == "__main__":
    main()
