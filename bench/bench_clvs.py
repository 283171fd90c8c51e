"""Cost of CLVS next to the baseline, on the engine benchmark's tiny LLaVA-1.5- and Qwen2-VL-shaped models.

    python -m bench.bench_clvs                      # both shapes, 11 round-robin repetitions (~3 minutes)
    python -m bench.bench_clvs --shapes llava --reps 5

How it times: `bench.harness` (round-robin, CPU clock by default). The CLVS workloads run at the published
defaults (lambda 0.7, beta 0.8, tau 0.5, scope all); the random-weight models never get below tau, so
every check runs: the most expensive case.
"""
from __future__ import annotations

from bench import harness
from bench.shapes import ANSWER_TOKENS

LAMBDAS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # a 6-value --clvs-lambda sweep


def workloads() -> dict:
    """The timed workloads. Built when the benchmark starts, not on import: they import torch, which `--help`
    and argument errors do without."""
    from bench.workload import WORKLOADS as ENGINE_WORKLOADS
    from bench.workload import Workload
    from intervention import CLVS, ClvsSmoothing
    from intervention.clvs_grid import answer_settings

    grid = tuple(CLVS(lam=lam) for lam in LAMBDAS)

    def clvs_forward(vlm, inputs):
        """The engine benchmark's one prompt forward (logits of the last position only), under CLVS."""
        with ClvsSmoothing(vlm):
            return ENGINE_WORKLOADS["stock_forward"].run(vlm, inputs)

    def clvs(vlm, inputs):
        return CLVS().run(vlm, inputs, ANSWER_TOKENS)

    def clvs_grid(engine: str):
        def run(vlm, inputs):
            return answer_settings(vlm, inputs, grid, ANSWER_TOKENS, engine)
        return run

    return {w.name: w for w in (
        ENGINE_WORKLOADS["baseline"],
        ENGINE_WORKLOADS["stock_forward"],
        Workload("clvs_forward", clvs_forward),
        Workload("clvs", clvs),
        Workload("clvs_grid_prefix", clvs_grid("prefix")),
        Workload("clvs_grid_naive", clvs_grid("naive")),
    )}


# (label, numerator, denominator, target)
RATIOS = (
    ("CLVS / baseline", "clvs", "baseline", "<= 1.1"),
    ("CLVS forward / stock SDPA forward", "clvs_forward", "stock_forward", ""),
    ("6-lambda CLVS grid, shared prompt / baseline", "clvs_grid_prefix", "baseline", ""),
    ("6-lambda CLVS grid, one generate each / baseline", "clvs_grid_naive", "baseline", "(~6)"),
)


def main(argv=None) -> None:
    harness.main("python -m bench.bench_clvs", __doc__.splitlines()[0], workloads, RATIOS, argv)


if __name__ == "__main__":
    main()
