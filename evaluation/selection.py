"""Pick the hyper-parameters of ScalingVis / AdaptVis on the validation split.

    from evaluation.selection import find_candidates, select_best
    candidates = find_candidates(runs, dataset="Controlled_Images_A", model="llava1.5",
                                 method="scaling_vis", split="val", settings=settings)
    choice = select_best(candidates, metric="accuracy")
    choice.flags()    # ["--weight", "0.8"]

Candidates are the finished runs of one (dataset, model, method) on the selection split whose other
settings (`evaluation.runs.SETTINGS`: option, match, seed, scope, prompt format, max new tokens,
limit, dtype, ...) equal the requested ones, so a selection never compares runs that differ in
anything but the hyper-parameters being chosen.

Rule: the highest value of the metric (default `accuracy`) wins. Runs whose metric is null do not
compete. Ties (equal to 1e-9) are broken deterministically in favour of the smallest intervention:
ScalingVis prefers the alpha closest to 1 (then the smaller alpha); AdaptVis prefers the smallest
|weight1 - 1| + |weight2 - 1|, then the smaller threshold, then the smaller weight1 and weight2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from common.errors import ToolkitError
from evaluation.runs import (HYPERPARAMETERS, RunRecord, describe_settings, format_number,
                             latest_per_configuration)
from runner.config import AUTO

SELECTABLE_METHODS = ("scaling_vis", "adapt_vis")
METRICS = ("accuracy", "pair_accuracy", "set_accuracy", "pair_accuracy_paper", "set_accuracy_paper",
           "f1", "f1_paper", "precision", "recall", "tpr", "tnr")
TIE_RULES = {
    "scaling_vis": "the weight closest to 1, then the smaller weight",
    "adapt_vis": "the smallest |weight1-1|+|weight2-1|, then the smaller threshold, weight1, weight2",
}
_TIE_DIGITS = 9


@dataclass(frozen=True)
class Selection:
    """The chosen run, its metric value, how many runs competed and which ones tied with it."""

    run: RunRecord
    metric: str
    value: float
    n_candidates: int
    tied: tuple[RunRecord, ...]

    def flags(self) -> list[str]:
        """The chosen hyper-parameters as main_aro.py arguments, e.g. ["--weight1", "0.5", ...]."""
        return [part for flag, value in self.run.hyperparameters.items()
                for part in (f"--{flag}", format_number(value))]

    def reason(self) -> str:
        """One line saying what was chosen among what, and why."""
        run = self.run
        text = (f"{run.dataset} / {run.model} / {run.method} on {run.split}: best {self.metric} "
                f"{100 * self.value:.1f}% with {describe_hyperparameters(run)} among {self.n_candidates} "
                f"runs ({describe_settings(run.settings)})")
        if self.tied:
            shown = [describe_hyperparameters(other) for other in self.tied[:MAX_TIES_SHOWN]]
            if len(self.tied) > MAX_TIES_SHOWN:
                shown.append(f"{len(self.tied) - MAX_TIES_SHOWN} more")
            text += f"; tied with {'; '.join(shown)}, broken in favour of {TIE_RULES[run.method]}"
        return text


MAX_TIES_SHOWN = 3  # a flat grid can tie dozens of configurations; the count says enough


def describe_hyperparameters(run: RunRecord) -> str:
    return ", ".join(f"{flag}={format_number(value)}" for flag, value in run.hyperparameters.items())


def matching_runs(runs: Iterable[RunRecord], *, dataset: str, model: str, method: str, split: str,
                  settings: dict[str, Any], grid: Optional[dict[str, Sequence[float]]] = None
                  ) -> list[RunRecord]:
    """The runs that compete in one selection (one per configuration); empty when there are none.

    settings: required values of `evaluation.runs.SETTINGS` (all of them).
    grid: optional {flag: allowed values} restricting the hyper-parameters (e.g. the run.sh grid).
    """
    wanted = tuple(settings.items())
    return latest_per_configuration(
        run for run in runs if (run.dataset, run.model, run.method, run.split) == (dataset, model, method, split)
        and same_settings(run, wanted) and _in_grid(run, grid or {}))


def find_candidates(runs: Sequence[RunRecord], *, dataset: str, model: str, method: str, split: str,
                    settings: dict[str, Any], grid: Optional[dict[str, Sequence[float]]] = None
                    ) -> list[RunRecord]:
    """`matching_runs`, or a ToolkitError naming what was searched and what exists instead."""
    if method not in SELECTABLE_METHODS:
        raise ToolkitError(f"method {method!r} has no hyper-parameters to select; choose one of: "
                           f"{', '.join(SELECTABLE_METHODS)}")
    found = matching_runs(runs, dataset=dataset, model=model, method=method, split=split,
                          settings=settings, grid=grid)
    if found:
        return found
    wanted = tuple(settings.items())
    same_kind = [run for run in runs if (run.dataset, run.model, run.method, run.split)
                 == (dataset, model, method, split)]
    outside_grid = [run for run in same_kind if same_settings(run, wanted)]
    searched = (f"finished {split} runs of {method} on {dataset} with model {model} and "
                f"{describe_settings(wanted)}")
    if outside_grid:
        raise ToolkitError(f"no {searched} inside the grid {_describe_grid(grid)}; {len(outside_grid)} "
                           f"runs exist outside it")
    if same_kind:
        others = sorted({", ".join(f"{name}={value}" for name, value in _differences(run, wanted))
                         for run in same_kind})
        raise ToolkitError(f"no {searched}; {len(same_kind)} such runs exist with other settings "
                           f"({' | '.join(others)}); pass the flags you gave main_aro.py")
    raise ToolkitError(f"no {searched}; run the {split} grid with main_aro.py first")


def select_best(candidates: Sequence[RunRecord], metric: str = "accuracy") -> Selection:
    """The candidate with the highest `metric`, ties broken as the module docstring says."""
    if metric not in METRICS:
        raise ToolkitError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    scored = [(run, run.metric(metric)) for run in candidates]
    scored = [(run, value) for run, value in scored if value is not None]
    if not scored:
        names = ", ".join(sorted(run.name for run in candidates)) or "none"
        raise ToolkitError(f"metric {metric!r} is missing or null in every candidate run ({names}); "
                           f"choose a metric this dataset has (e.g. accuracy)")
    best_value = max(round(value, _TIE_DIGITS) for _, value in scored)
    best = sorted((run for run, value in scored if round(value, _TIE_DIGITS) == best_value),
                  key=tie_break_key)
    winner_value = next(value for run, value in scored if run is best[0])
    return Selection(best[0], metric, winner_value, len(scored), tuple(best[1:]))


def tie_break_key(run: RunRecord) -> tuple:
    """Sort key among equally good runs: the smallest intervention first, then by name for stability."""
    if run.method == "scaling_vis":
        key = (_distance_to_one(run.weight), run.weight)
    else:
        key = (_distance_to_one(run.weight1) + _distance_to_one(run.weight2), run.threshold,
               run.weight1, run.weight2)
    return tuple(float("inf") if part is None else part for part in key) + (run.name,)


def _distance_to_one(value: Optional[float]) -> float:
    # Rounded so that 0.8 and 1.2 count as equally far from 1 despite binary floating point.
    return float("inf") if value is None else round(abs(value - 1.0), _TIE_DIGITS)


def same_settings(run: RunRecord, wanted: Iterable[tuple[str, Any]]) -> bool:
    """True when the run has every (setting, value) of `wanted`."""
    return all(run.setting(name) == value for name, value in wanted)


def _differences(run: RunRecord, wanted: tuple[tuple[str, Any], ...]) -> list[tuple[str, Any]]:
    return [(name, run.setting(name)) for name, value in wanted if run.setting(name) != value]


def _in_grid(run: RunRecord, grid: dict[str, Sequence[float | str]]) -> bool:
    return all(not allowed or any(_matches(run, flag, value) for value in allowed)
               for flag, allowed in grid.items() if flag in HYPERPARAMETERS[run.method])


def _matches(run: RunRecord, flag: str, value: float | str) -> bool:
    """Whether the run's hyper-parameter is `value`; "auto" matches thresholds computed by --threshold auto
    (their config.json holds the number and, under threshold_auto, how it was computed)."""
    if value == AUTO:
        return flag == "threshold" and "threshold_auto" in run.config
    return _close(run.hyperparameters.get(flag), value)


def _close(a: Optional[float], b: float) -> bool:
    return a is not None and abs(a - b) < 1e-9


def _describe_grid(grid: Optional[dict[str, Sequence[float]]]) -> str:
    return " ".join(f"--{flag} {','.join(format_number(v) for v in values)}"
                    for flag, values in (grid or {}).items() if values)
