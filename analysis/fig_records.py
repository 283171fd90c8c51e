"""Figures from per-sample records: run folders (`--runs`) or, in model mode, the collected answers.

* alpha-sweep (paper Fig. 8): accuracy and first-token confidence per gold relation as alpha varies;
* relation-confidence (Fig. 15): confidence per gold relation, and the label distribution of each subset;
* errors: confusion matrix over relations and error types (flips, orthogonal, unparsed) per run.
The cross-run comparison (Fig. 11/12) is in `analysis.fig_compare`.
"""
from __future__ import annotations

from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np

from analysis.collect import answers_at
from analysis.render import finish
from analysis.runs import RunSet
from analysis.stats import ERROR_TYPES, confusion, error_counts
from common.errors import ToolkitError

DEFAULT_ALPHAS = (0.5, 0.8, 1.0, 1.2, 1.5, 2.0)  # the README grid of ScalingVis, with the model itself


def per_relation(records: list[dict], field: str) -> dict[str, float]:
    """{gold relation: mean of `field`} plus "all"."""
    groups = defaultdict(list)
    for record in records:
        groups[record["gold"]].append(float(record[field]))
        groups["all"].append(float(record[field]))
    return {gold: float(np.mean(values)) for gold, values in sorted(groups.items())}


def _sweep_from_model(ctx) -> tuple[dict[float, list[dict]], str]:
    weights = {c.get("weight") for c in ctx.configurations if c.method == "scaling_vis"}
    # a list (--weight 0.5,0.8,...) is the sweep; one weight (the method compared in `all`) joins the default grid
    alphas = sorted({1.0, *weights} if len(weights) > 1 else {*DEFAULT_ALPHAS, *weights})
    config = ctx.run_config
    found = answers_at(ctx.vlm, ctx.samples, alphas, batch_size=config.batch_size,
                       max_new_tokens=config.max_new_tokens, match=config.match, scope=config.scope)
    return found, ctx.subject


def _sweep_from_runs(ctx) -> tuple[dict[float, list[dict]], str]:
    sets = [s for s in ctx.run_sets if s.method in ("base", "scaling_vis")]
    groups = {(s.dataset, s.model, s.split) for s in sets}
    if len(groups) != 1:
        raise ToolkitError(f"alpha-sweep needs baseline/ScalingVis runs of one dataset, model and split; got "
                           f"{sorted(groups) or 'none'}; pass the run folders of one of them")
    found = {1.0 if s.method == "base" else float(s.hyperparameters["weight"]): s.records for s in sets}
    return dict(sorted(found.items())), ctx.records_subject(sets)


def alpha_sweep(ctx) -> list:
    found, subject = _sweep_from_runs(ctx) if ctx.from_runs else _sweep_from_model(ctx)
    alphas = list(found)
    accuracy = {alpha: per_relation(records, "correct") for alpha, records in found.items()}
    # run folders record the confidence at alpha = 1 only (AdaptVis' input), so only model mode plots it
    confidence = None if ctx.from_runs else {alpha: per_relation(r, "confidence") for alpha, r in found.items()}
    relations = sorted({gold for values in accuracy.values() for gold in values})
    panels = 1 if confidence is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.2), squeeze=False, layout="constrained")
    for ax, (title, table) in zip(axes[0], (("accuracy", accuracy), ("confidence", confidence))):
        for gold in relations:
            style = dict(color="black", lw=2) if gold == "all" else {}
            ax.plot(alphas, [table[a].get(gold, np.nan) for a in alphas], marker="o", ms=3, label=gold, **style)
        ax.axvline(1.0, color="grey", ls=":", lw=1)
        ax.set_xlabel("alpha (ScalingVis)")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="gold relation", title_fontsize=7)
    rows = [{"alpha": alpha, "relation": gold, "accuracy": accuracy[alpha].get(gold),
             "confidence": None if confidence is None else confidence[alpha].get(gold),
             "n": sum(1 for r in found[alpha] if gold in ("all", r["gold"]))} for alpha in alphas for gold in relations]
    what = "accuracy" if confidence is None else "accuracy and first-token confidence"
    caption = f"ScalingVis {what} per gold relation as alpha varies (alpha = 1: the model itself), {subject}."
    return finish(ctx.out, "alpha-sweep", fig, caption, rows=rows, dpi=ctx.args.dpi)


def _baseline_sets(ctx) -> list[RunSet]:
    sets = ctx.record_sets()
    baselines = [s for s in sets if s.method == "base"]
    return baselines or sets


def relation_confidence(ctx) -> list:
    sets = _baseline_sets(ctx)
    relations = sorted({r["gold"] for s in sets for r in s.records})
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2), layout="constrained")
    width = 0.8 / len(sets)
    rows = []
    for i, run_set in enumerate(sets):
        by_gold = defaultdict(list)
        for record in run_set.records:
            by_gold[record["gold"]].append(record)
        name = f"{run_set.dataset} ({run_set.label})" if len(sets) > 1 else run_set.label
        means = [np.mean([r["confidence"] for r in by_gold[g]]) if by_gold[g] else np.nan for g in relations]
        spreads = [np.std([r["confidence"] for r in by_gold[g]]) if by_gold[g] else 0.0 for g in relations]
        shares = [len(by_gold[g]) / len(run_set.records) for g in relations]
        x = np.arange(len(relations)) + i * width
        left.bar(x, means, width, yerr=spreads, capsize=2, label=name)
        right.bar(x, shares, width, label=name)
        rows += [{"subset": run_set.dataset, "run": run_set.label, "relation": g, "n": len(by_gold[g]), "share": s,
                  "confidence_mean": m, "confidence_std": sd,
                  "accuracy": np.mean([r["correct"] for r in by_gold[g]]) if by_gold[g] else np.nan}
                 for g, m, sd, s in zip(relations, means, spreads, shares)]
    for ax, title in ((left, "first-token confidence per gold relation"), (right, "label distribution")):
        ax.set_xticks(np.arange(len(relations)) + width * (len(sets) - 1) / 2, relations, rotation=30, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    caption = (f"Mean first-token confidence (alpha = 1, error bar = std) per gold relation and the share of each "
               f"gold relation per subset, {ctx.records_subject(sets)}.")
    return finish(ctx.out, "relation-confidence", fig, caption, rows=rows, dpi=ctx.args.dpi)


def errors(ctx) -> list:
    sets = ctx.record_sets()
    fig = plt.figure(figsize=(3.4 * max(2, len(sets)), 6.2), layout="constrained")
    grid = fig.add_gridspec(2, len(sets))
    rows, matrices = [], {}
    for i, run_set in enumerate(sets):
        golds, predictions, counts = confusion(run_set.records)
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(counts, cmap="Blues")
        for (g, p), value in np.ndenumerate(counts):
            ax.text(p, g, str(value), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(predictions)), predictions, rotation=45, fontsize=7)
        ax.set_yticks(range(len(golds)), golds, fontsize=7)
        ax.set_xlabel("prediction", fontsize=8)
        ax.set_ylabel("gold", fontsize=8)
        ax.set_title(run_set.label, fontsize=8)
        matrices[run_set.label] = {"gold": golds, "prediction": predictions, "counts": counts}
        kinds = error_counts(run_set.records)
        wrong = max(1, sum(kinds.values()))
        rows += [{"run": run_set.label, "dataset": run_set.dataset, "error_type": kind, "count": count,
                  "share_of_errors": count / wrong, "n": len(run_set.records)} for kind, count in kinds.items()]
    bars = fig.add_subplot(grid[1, :])
    width = 0.8 / len(sets)
    for i, run_set in enumerate(sets):
        counts = [row["count"] for row in rows if row["run"] == run_set.label]
        bars.bar(np.arange(len(ERROR_TYPES)) + i * width, counts, width, label=run_set.label)
    bars.set_xticks(np.arange(len(ERROR_TYPES)) + width * (len(sets) - 1) / 2, ERROR_TYPES, fontsize=8)
    bars.set_ylabel("wrong answers")
    bars.legend(fontsize=7)
    if not any(row["count"] for row in rows):
        bars.text(0.5, 0.5, "no wrong answers", transform=bars.transAxes, ha="center", va="center")
    caption = (f"Confusion matrices over relations (top) and error types (bottom: left/right flips, vertical and "
               f"depth flips, orthogonal answers, unparsed) per run, {ctx.records_subject(sets)}.")
    return finish(ctx.out, "errors", fig, caption, rows=rows, data=matrices, dpi=ctx.args.dpi)
