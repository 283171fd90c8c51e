"""Cost of VEA side by side with the baseline, on the engine benchmark's tiny LLaVA-1.5- and Qwen2-VL-shaped models.

    python -m bench.bench_vea                      # both shapes, 11 round-robin repetitions (~4 minutes)
    python -m bench.bench_vea --shapes llava --reps 5
    python -m bench.bench_vea --clock wall --threads 2    # as bench.bench_engine, on a quiet machine

How it times: `bench.harness` (round-robin, CPU clock by default, one torch and one OpenBLAS thread).
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

from functools import lru_cache  # noqa: E402

from bench import harness  # noqa: E402
from bench.shapes import ANSWER_TOKENS, batch_images  # noqa: E402

LAYERS = "2"  # one layer of four: ceil(0.1 L), as profiling would keep
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


def workloads() -> dict:
    """The timed workloads. Built when the benchmark starts, not on import: they import torch, which `--help`
    and argument errors do without."""
    from bench.workload import WORKLOADS, Workload
    from methods.vea import VEA
    from methods.vea_profile import attribute

    def vea(setting: VEA):
        def run(vlm, inputs):
            images, questions = _batch(vlm.family, inputs["input_ids"].shape[0])
            return setting.run(vlm, list(images), list(questions), max_new_tokens=ANSWER_TOKENS, inputs=inputs)
        return run

    def attribution(vlm, inputs):
        return attribute(vlm, inputs, _batch(vlm.family, inputs["input_ids"].shape[0])[0])

    return {w.name: w for w in (
        WORKLOADS["baseline"],
        Workload("vea", vea(VEA(layers=LAYERS))),
        Workload("vea_no_hint", vea(VEA(layers=LAYERS, hint=False))),
        Workload("vea_attribution", attribution),
    )}


def main(argv=None) -> None:
    harness.main("python -m bench.bench_vea", __doc__.splitlines()[0], workloads, RATIOS, argv)


if __name__ == "__main__":
    main()
