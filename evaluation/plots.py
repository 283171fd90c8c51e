"""PNG plots of finished runs (`python -m evaluation.report OUTPUT_ROOT --plot DIR`).

* `scaling_vis__<dataset>__<model>__<split>[__<option>].png`: accuracy vs alpha (ScalingVis), with
  the baseline as a horizontal line.
* `adapt_vis__...png`: AdaptVis accuracy vs threshold, one line per (weight1, weight2).
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
        written += _plot_scaling(members, baseline, metric, out_dir / f"scaling_vis__{stems[key]}.png")
        written += _plot_adaptive(members, baseline, metric, out_dir / f"adapt_vis__{stems[key]}.png")
        if baseline is not None:
            written += _plot_confidence(baseline, out_dir / f"confidence__{stems[key]}.png")
    if not written:
        logger.warning("no plots: need ScalingVis or AdaptVis runs, or baseline runs with samples.jsonl")
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


def _plot_scaling(members: list[RunRecord], baseline: Optional[RunRecord], metric: str, path: Path) -> list[Path]:
    points = sorted((run.weight, run.metric(metric)) for run in members
                    if run.method == "scaling_vis" and run.weight is not None and run.metric(metric) is not None)
    if not points:
        return []
    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.plot([x for x, _ in points], [100 * y for _, y in points], marker="o", label="ScalingVis")
    _draw_baseline(axes, baseline, metric)
    _finish(figure, axes, members[0], "α (--weight)", metric, "ScalingVis")
    return _save(figure, path)


def _plot_adaptive(members: list[RunRecord], baseline: Optional[RunRecord], metric: str, path: Path) -> list[Path]:
    lines: dict[tuple, list[tuple[float, float]]] = {}
    for run in members:
        if run.method == "adapt_vis" and run.threshold is not None and run.metric(metric) is not None:
            lines.setdefault((run.weight1, run.weight2), []).append((run.threshold, run.metric(metric)))
    if not lines:
        return []
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for (weight1, weight2), points in sorted(lines.items(), key=lambda item: tuple(v or 0 for v in item[0])):
        points.sort()
        axes.plot([x for x, _ in points], [100 * y for _, y in points], marker="o",
                  label=f"α₁={format_number(weight1)}, α₂={format_number(weight2)}")
    _draw_baseline(axes, baseline, metric)
    _finish(figure, axes, members[0], "β (--threshold)", metric, "AdaptVis")
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
