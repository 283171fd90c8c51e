"""PNG plots of finished runs (`python -m evaluation.report OUTPUT_ROOT --plot DIR`).

* `<method>__<dataset>__<model>__<split>[__<option>].png`, for every method with a grid: accuracy
  against one of its hyper-parameters (`methods.Method.plot_x`; by default its last labelled numeric
  one: alpha for ScalingVis, the threshold for AdaptVis), one line per value of the others, with the
  baseline as a horizontal line. For a test (or all) split whose val grid exists, the curves are the
  val grid's, and the test results of the configurations present (the selected ones) are marked on
  them: the test split alone holds one point per method.
* `confidence__...png`: histogram of the first-answer-token confidence of a baseline run, split by
  correct / wrong answers: the quantity AdaptVis compares with its threshold.

File names depend only on the runs, so re-plotting overwrites the same files. When one (dataset,
model, split) holds runs of several settings (e.g. a smoke run with --limit), the name gains the
first 8 hex digits of a hash of those settings.
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted, also on headless machines
import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)

from common.errors import ToolkitError  # noqa: E402
from evaluation.runs import RunRecord, dataset_label, format_number, latest_per_configuration  # noqa: E402
from methods import all_methods, get_method  # noqa: E402
from runner.records import SAMPLES_FILE, read_records  # noqa: E402

logger = logging.getLogger(__name__)

BINS = [i / 20 for i in range(21)]  # 0.05 wide, the step of the paper's threshold grid


def write_plots(runs: Sequence[RunRecord], out_dir: Path, *, pool: Optional[Sequence[RunRecord]] = None,
                metric: str = "accuracy") -> list[Path]:
    """Write every plot the runs allow into `out_dir`; returns the files written, in a fixed order.

    pool: where baselines are looked up (default: `runs`).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ToolkitError(f"cannot create plot directory {out_dir}: {err.strerror}; choose another --plot") from None
    runs = latest_per_configuration(runs)
    pool = latest_per_configuration(pool if pool is not None else runs)
    groups = _groups(runs)
    stems = _stems(groups)
    written = []
    for key in sorted(groups, key=lambda k: stems[k]):
        members, baseline = groups[key], _baseline(pool, key)
        for method in all_methods():
            written += _plot_method(method.name, members, _val_grid(pool, key), baseline, metric,
                                    out_dir / f"{method.name}__{stems[key]}.png")
        if baseline is not None:
            written += _plot_confidence(baseline, out_dir / f"confidence__{stems[key]}.png")
    if not written:
        logger.warning("no plots: need runs of a method with a grid, or baseline runs with samples.jsonl")
    return written


def _groups(runs: Sequence[RunRecord]) -> dict[tuple, list[RunRecord]]:
    groups: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.model, run.split, run.settings), []).append(run)
    return groups


def _stems(groups: dict[tuple, list[RunRecord]]) -> dict[tuple, str]:
    """Deterministic file-name stems; a settings hash only where two groups would share a name."""
    def readable(key: tuple) -> str:
        dataset, model, split, settings = key
        option = dict(settings).get("option")
        return "__".join(part for part in (dataset, model, split, option) if part)

    counts: dict[str, int] = {}
    for key in groups:
        counts[readable(key)] = counts.get(readable(key), 0) + 1
    stems = {}
    for key in groups:
        stem = readable(key)
        if counts[stem] > 1:
            stem += "__" + hashlib.sha1(repr(key[3]).encode()).hexdigest()[:8]
        stems[key] = re.sub(r"[^A-Za-z0-9._=+-]", "-", stem)
    return stems


def _baseline(pool: Sequence[RunRecord], key: tuple) -> Optional[RunRecord]:
    return next((run for run in pool if run.method == "base"
                 and (run.dataset, run.model, run.split, run.settings) == key), None)


def _val_grid(pool: Sequence[RunRecord], key: tuple) -> list[RunRecord]:
    """The val runs of the same dataset, model and settings as a test (or all) group; [] for val groups."""
    dataset, model, split, settings = key
    if split == "val":
        return []
    return [run for run in pool if (run.dataset, run.model, run.split, run.settings) == (dataset, model, "val",
                                                                                          settings)]


def plot_axis(method: str) -> Optional[str]:
    """The hyper-parameter on the x axis of a method's curve: its `plot_x`, else its last labelled numeric one."""
    entry = get_method(method)
    if entry.plot_x:
        return entry.plot_x
    numeric = [h.name for h in entry.hyperparameters if h.short and h.kind in (int, float)]
    return numeric[-1] if numeric else None


def _curves(runs: Sequence[RunRecord], method: str, x: str, metric: str) -> dict[tuple, list[tuple]]:
    """{values of the other labelled hyper-parameters: [(x, metric)]} of the runs of `method`."""
    lines: dict[tuple, list[tuple]] = {}
    for run in runs:
        value, score = run.hyperparameters.get(x), run.metric(metric)
        if run.method == method and isinstance(value, (int, float)) and score is not None:
            others = tuple((name, v) for name, v in run.labelled.items() if name != x)
            lines.setdefault(others, []).append((value, score))
    return lines


def _plot_method(method: str, members: list[RunRecord], val_grid: list[RunRecord], baseline: Optional[RunRecord],
                 metric: str, path: Path) -> list[Path]:
    x = plot_axis(method)
    if x is None:
        return []
    grid = _curves(val_grid, method, x, metric)
    shown = _curves(members, method, x, metric)
    if not shown and not grid:
        return []
    curves = grid or shown
    entry = get_method(method)
    symbols = {h.name: h.symbol or h.name for h in entry.hyperparameters}
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for others, points in sorted(curves.items(), key=lambda item: repr(item[0])):
        points.sort()
        label = ", ".join(f"{symbols[name]}={format_number(v)}" for name, v in others) or entry.title
        axes.plot([p for p, _ in points], [100 * y for _, y in points], marker="o", label=label + (" (val)" if grid else ""))
    if grid and shown:
        marked = sorted(point for points in shown.values() for point in points)
        axes.scatter([p for p, _ in marked], [100 * y for _, y in marked], marker="*", s=140, color="black",
                     zorder=5, label=f"{members[0].split} (selected)")
    _draw_baseline(axes, baseline, metric)
    hyperparameter = entry.hyperparameter(x)
    _finish(figure, axes, members[0], f"{symbols[x]} ({hyperparameter.flag})", metric, entry.title)
    return _save(figure, path)


def _plot_confidence(baseline: RunRecord, path: Path) -> list[Path]:
    samples = read_records(baseline.path / SAMPLES_FILE)
    scored = [(record["confidence"], bool(record.get("correct"))) for record in samples
              if isinstance(record.get("confidence"), (int, float))]
    if not scored:
        return []
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for correct, colour, label in ((True, "tab:green", "correct"), (False, "tab:red", "wrong")):
        values = [confidence for confidence, is_correct in scored if is_correct == correct]
        axes.hist(values, bins=BINS, alpha=0.6, color=colour, label=f"{label} ({len(values)})")
    axes.set_xlabel("confidence of the first answer token (α = 1)")
    axes.set_ylabel("samples")
    axes.set_xlim(0, 1)
    axes.set_title(f"{dataset_label(baseline.dataset)} · {baseline.model} · {baseline.split} · baseline",
                   fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def _draw_baseline(axes, baseline: Optional[RunRecord], metric: str) -> None:
    value = baseline.metric(metric) if baseline else None
    if value is not None:
        axes.axhline(100 * value, color="grey", linestyle="--", label=f"Baseline ({100 * value:.1f})")


def _finish(figure, axes, run: RunRecord, xlabel: str, metric: str, method: str) -> None:
    axes.set_xlabel(xlabel)
    axes.set_ylabel(f"{metric} (%)")
    axes.set_title(f"{method} · {dataset_label(run.dataset)} · {run.model} · {run.split}", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()


def _save(figure, path: Path) -> list[Path]:
    try:
        figure.savefig(path, dpi=120)
    except OSError as err:
        raise ToolkitError(f"cannot write {path}: {err.strerror}; choose another --plot directory") from None
    finally:
        plt.close(figure)
    return [path]
