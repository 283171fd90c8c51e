"""Cost of VEA side by side with the baseline, on CPU.

    python -m bench.bench_vea                      # both shapes, 5 repetitions
    python -m bench.bench_vea --shapes llava --reps 3

The models, batch and round-robin timing of `bench.bench_engine` (one call of each workload per repetition,
after warm-up, so load drifts hit all alike; repetitions during which other processes used more than
`--max-external` cores are dropped while possible). Every workload answers the same prepared batch with a
2-token answer (`bench.workload.ANSWER_TOKENS`); VEA also prepares the hinted prompt itself (part of its cost).

Cost model (V vision tower, P prompt forward, D one decode step, T answer tokens, R the capture's
recomputed last-prompt rows, M the evidence maps and the highlight, Q the processor on the hinted prompt):
baseline V + P + (T-1) D; VEA (V + P + R) [attribution: one greedy step with capture] + M + Q + V + P' +
(T-1) D [answer], P' the prompt with the hint's ~20 tokens more. So VEA / baseline ~ 2 + (R + M + Q) /
baseline: the second pass is unavoidable (the image changes), the rest is what the implementation adds.
The attribution layers are given (the tiny 4-layer LM has no published set; profiling is a one-off per
model and not part of the per-sample cost).
"""
from __future__ import annotations

import statistics
from functools import lru_cache

import torch

from bench.bench_engine import contention, load, shape_line, time_round_robin
from bench.workload import ANSWER_TOKENS, SHAPES, WORKLOADS, Workload, batch_images, batch_inputs, build_vlm
from common.cli import OneLineParser
from methods.vea import VEA

TIMED = ("baseline", "vea", "vea_no_hint", "vea_attribution")
# (label, numerator, denominator, target)
RATIOS = (
    ("VEA (defaults: alpha 0.5, sigma 0.5, lambda 10, hint) / baseline", "vea", "baseline", "<= 2.2"),
    ("VEA without the hint (no second preparation) / baseline", "vea_no_hint", "baseline", ""),
    ("attribution pass alone (one greedy step with capture) / baseline", "vea_attribution", "baseline", ""),
)
LAYERS = "2"  # one layer of four: ceil(0.1 L), as profiling would keep


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
    from intervention.capture import capture

    images, _ = _batch(vlm.family, inputs["input_ids"].shape[0])
    return capture(vlm, inputs, image_sizes=[image.size for image in images], max_new_tokens=1)


# time_round_robin looks workloads up by name in bench.workload.WORKLOADS.
WORKLOADS.update({w.name: w for w in (
    Workload("vea", _vea(VEA(layers=LAYERS))),
    Workload("vea_no_hint", _vea(VEA(layers=LAYERS, hint=False))),
    Workload("vea_attribution", _attribution),
)})


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
