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
compete. Ties (equal to 1e-9) are broken deterministically in favour of the smallest intervention, as
each method declares it (`methods.Method.preference`, described by `preference_rule`): e.g. ScalingVis
prefers the alpha closest to 1 (then the smaller alpha); AdaptVis the smallest |weight1 - 1| +
|weight2 - 1|, then the smaller threshold, then the smaller weight1 and weight2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from common.errors import ToolkitError
from evaluation.runs import RunRecord, describe_settings, format_number, latest_per_configuration
from methods import all_methods, get_method
from runner.config import AUTO

METRICS = ("accuracy", "pair_accuracy", "set_accuracy", "pair_accuracy_paper", "set_accuracy_paper",
           "f1", "f1_paper", "precision", "recall", "tpr", "tnr")
_TIE_DIGITS = 9


def selectable_methods() -> tuple[str, ...]:
    """Methods with hyper-parameters to choose (those naming configurations)."""
    return tuple(m.name for m in all_methods() if any(h.short for h in m.hyperparameters))


@dataclass(frozen=True)
class Selection:
    """The chosen run, its metric value, how many runs competed and which ones tied with it."""

    run: RunRecord
    metric: str
    value: float
    n_candidates: int
    tied: tuple[RunRecord, ...]

    def flags(self) -> list[str]:
        """The chosen hyper-parameters as main_aro.py arguments, e.g. ["--weight1", "0.5", ...]: every
        labelled one, and the others where they differ from their defaults (e.g. --scope all)."""
        method = get_method(self.run.method)
        flags: list[str] = []
        for hyperparameter in method.hyperparameters:
            value = self.run.hyperparameters.get(hyperparameter.name)
            if not hyperparameter.short and value == hyperparameter.default:
                continue
            if hyperparameter.kind is bool:
                flags.append(hyperparameter.flag if value else "--no-" + hyperparameter.flag[2:])
            else:
                flags.extend((hyperparameter.flag, format_number(value)))
        return flags

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
            text += f"; tied with {'; '.join(shown)}, broken in favour of {get_method(run.method).preference_rule}"
        return text


MAX_TIES_SHOWN = 3  # a flat grid can tie dozens of configurations; the count says enough


def describe_hyperparameters(run: RunRecord) -> str:
    return ", ".join(f"{flag}={format_number(value)}" for flag, value in run.labelled.items())


def matching_runs(runs: Iterable[RunRecord], *, dataset: str, model: str, method: str, split: str,
                  settings: dict[str, Any], grid: Optional[dict[str, Sequence[float]]] = None
                  ) -> list[RunRecord]:
    """The runs that compete in one selection (one per configuration); empty when there are none.

    settings: required values of `evaluation.runs.SETTINGS` (all of them).
    grid: optional {hyper-parameter: allowed values} restricting the hyper-parameters (e.g. the run.sh
        grid). A hyper-parameter that names no configuration (scope, round_confidence) and is not in the
        grid must have its default: runs differing in it are not compared.
    """
    wanted = tuple(settings.items())
    return latest_per_configuration(
        run for run in runs if (run.dataset, run.model, run.method, run.split) == (dataset, model, method, split)
        and same_settings(run, wanted) and _in_grid(run, grid or {}))


def find_candidates(runs: Sequence[RunRecord], *, dataset: str, model: str, method: str, split: str,
                    settings: dict[str, Any], grid: Optional[dict[str, Sequence[float]]] = None
                    ) -> list[RunRecord]:
    """`matching_runs`, or a ToolkitError naming what was searched and what exists instead."""
    if method not in selectable_methods():
        raise ToolkitError(f"method {method!r} has no hyper-parameters to select; choose one of: "
                           f"{', '.join(selectable_methods())}")
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
    key = get_method(run.method).preference_key(run.hyperparameters)
    return tuple(float("inf") if part is None else part for part in key) + (run.name,)


def same_settings(run: RunRecord, wanted: Iterable[tuple[str, Any]]) -> bool:
    """True when the run has every (setting, value) of `wanted`."""
    return all(run.setting(name) == value for name, value in wanted)


def _differences(run: RunRecord, wanted: tuple[tuple[str, Any], ...]) -> list[tuple[str, Any]]:
    return [(name, run.setting(name)) for name, value in wanted if run.setting(name) != value]


def _in_grid(run: RunRecord, grid: dict[str, Sequence[Any]]) -> bool:
    """Whether each hyper-parameter of the run has an allowed value: one of the grid's when given, else
    anything for those naming configurations and the default for the others (scope, round_confidence)."""
    for hyperparameter in get_method(run.method).hyperparameters:
        allowed = grid.get(hyperparameter.name) or ()
        if not allowed and not hyperparameter.short:
            allowed = (hyperparameter.default,)
        if allowed and not any(_matches(run, hyperparameter.name, value) for value in allowed):
            return False
    return True


def _matches(run: RunRecord, name: str, value: Any) -> bool:
    """Whether the run's hyper-parameter is `value`; "auto" matches thresholds computed by --threshold auto
    (their config.json holds, under threshold_auto, the number and how it was computed)."""
    if value == AUTO:
        return name == "threshold" and "threshold_auto" in run.config
    mine = run.hyperparameters.get(name)
    if isinstance(mine, (int, float)) and isinstance(value, (int, float)) and not isinstance(mine, bool):
        return abs(mine - value) < 1e-9
    return mine == value


def _describe_grid(grid: Optional[dict[str, Sequence[Any]]]) -> str:
    return " ".join(f"--{name.replace('_', '-')} {','.join(format_number(v) for v in values)}"
                    for name, values in (grid or {}).items() if values)
