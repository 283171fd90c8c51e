"""compare (paper Fig. 11/12): runs side by side (accuracy, error types) and the cases one run fixed or broke.

The reference is the baseline among the runs (else the first); the other is the first remaining run. In model
mode the two are the baseline and the method configuration on the same samples.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from analysis.render import finish
from analysis.stats import ERROR_TYPES, error_counts, error_type, fixed_and_broken
from common.errors import ToolkitError

EXAMPLES = 3  # fixed and broken cases shown as thumbnails, each


def _pair(sets):
    if len(sets) < 2:
        raise ToolkitError("compare needs two runs (e.g. a baseline and a method run folder with --runs, or "
                           "--method scaling_vis/adapt_vis in model mode)")
    reference = next((s for s in sets if s.method == "base"), sets[0])
    return reference, next(s for s in sets if s is not reference)


def _summary_panel(ax, sets) -> list[dict]:
    rows = []
    width = 0.8 / len(sets)
    names = ("accuracy",) + ERROR_TYPES
    for i, run_set in enumerate(sets):
        n = len(run_set.records)
        kinds = error_counts(run_set.records)
        values = [np.mean([r["correct"] for r in run_set.records])] + [kinds[k] / n for k in ERROR_TYPES]
        ax.bar(np.arange(len(names)) + i * width, values, width, label=run_set.label)
        rows += [{"run": run_set.label, "measure": name, "share_of_samples": value, "n": n}
                 for name, value in zip(names, values)]
    ax.set_xticks(np.arange(len(names)) + width * (len(sets) - 1) / 2, names, fontsize=8)
    ax.set_ylabel("share of samples")
    ax.legend(fontsize=7)
    return rows


def _thumbnail(ax, image, before: dict, after: dict, kind: str) -> None:
    if image is not None:
        ax.imshow(image)
    else:
        ax.text(0.5, 0.5, "(image not available)", ha="center", va="center", fontsize=7)
    ax.set_title(f"{kind}: gold {before['gold']}\n{before.get('prediction')} -> {after.get('prediction')}", fontsize=7)
    ax.axis("off")


def compare(ctx) -> list:
    sets = ctx.record_sets()
    reference, other = _pair(sets)
    fixed, broken = fixed_and_broken(reference.records, other.records)
    examples = [("fixed", pair) for pair in fixed[:EXAMPLES]] + [("broken", pair) for pair in broken[:EXAMPLES]]
    panels = 2 if examples else 1  # no fixed or broken case: the summary alone
    fig = plt.figure(figsize=(max(8, 1.8 * len(examples)), 3 + 2.5 * (panels - 1)), layout="constrained")
    grid = fig.add_gridspec(panels, max(1, len(examples)), height_ratios=[1.2, 1][:panels])
    rows = _summary_panel(fig.add_subplot(grid[0, :]), sets)
    for column, (kind, (before, after)) in enumerate(examples):
        _thumbnail(fig.add_subplot(grid[1, column]), ctx.image_of(before, reference), before, after, kind)
    fig.suptitle(f"{other.label} vs {reference.label}: {len(fixed)} fixed, {len(broken)} broken", fontsize=9)
    cases = [{"kind": kind, "id": before["id"], "gold": before["gold"], "before": before.get("prediction"),
              "after": after.get("prediction"), "error_before": error_type(before["gold"], before.get("prediction")),
              "error_after": error_type(after["gold"], after.get("prediction"))}
             for kind, pairs in (("fixed", fixed), ("broken", broken)) for before, after in pairs]
    caption = (f"Accuracy and error types per run (top) and examples of answers {other.label} fixed and broke "
               f"relative to {reference.label} (bottom; {len(fixed)} fixed, {len(broken)} broken), "
               f"{ctx.records_subject(sets)}.")
    return finish(ctx.out, "compare", fig, caption, rows=rows, data={"reference": reference.label,
                                                                     "other": other.label, "cases": cases},
                  dpi=ctx.args.dpi)
