"""Does attention predict correctness, and what does the intervention do to the logits (model mode)?

* overlap-auroc (paper Fig. 6, 7 right, 19-24): per layer, the AUROC with which the attention-box overlap
  (cosine of the head-mean image attention with the box coverage of the image tokens) separates right from
  wrong answers;
* confidence-auroc (Fig. 18): the same AUROC for the first-token confidence, the image attention's sum and
  its maximum;
* logit-distribution (Fig. 26): the pre-softmax image logits of the last prompt token before and after the
  intervention, mean and max over heads.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from analysis.render import finish, line_plot
from analysis.stats import auroc, image_map, layer_masses, overlap
from common.errors import ToolkitError


def box_mask(boxes, size) -> np.ndarray:
    """Boolean (H, W) union of (x0, y0, x1, y1) boxes over an image of `size` (width, height)."""
    width, height = size
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, int(y0)):max(0, int(y1)), max(0, int(x0)):max(0, int(x1))] = True
    return mask


def sample_overlap(captured, boxes, size) -> np.ndarray | None:
    """(layers,) overlap of a captured sample's last-prompt-token image attention with its boxes; None when
    no image token covers any box."""
    coverage = captured.geometry.coverage(box_mask(boxes, size))
    if not coverage.any():
        return None
    return np.asarray(overlap(image_map(captured.rows[0]), coverage))


def store_overlaps(ctx, store) -> tuple[list[np.ndarray], list[bool], list[str], int]:
    """Per sample with boxes: (layers,) overlaps, correctness, id; and how many samples had no box."""
    overlaps, labels, ids, missing = [], [], [], 0
    for record, captured in store:
        found = sample_overlap(captured, ctx.boxes(record), tuple(record["image_size"]))
        if found is None:
            missing += 1
            continue
        overlaps.append(found)
        labels.append(bool(record["correct"]))
        ids.append(record["id"])
    return overlaps, labels, ids, missing


def layer_aurocs(per_sample: list[np.ndarray], labels: list[bool]) -> np.ndarray:
    stacked = np.stack(per_sample)
    return np.array([auroc(stacked[:, layer], labels) for layer in range(stacked.shape[1])])


def overlap_auroc(ctx) -> list:
    series, rows, data, notes = {}, [], {}, []
    for store in ctx.collection.stores():
        label = ctx.store_label(store)
        overlaps, labels, ids, missing = store_overlaps(ctx, store)
        if not overlaps:
            raise ToolkitError(f"no analysed sample has a box of the objects it asks about ({missing} without); "
                               f"check the box source (--boxes-json / --coco-annotations)")
        curve = layer_aurocs(overlaps, labels)
        series[f"{label} ({sum(labels)} right / {len(labels) - sum(labels)} wrong)"] = curve
        stacked, correct = np.stack(overlaps), np.array(labels)
        rows += [{"configuration": label, "layer": layer, "auroc": curve[layer],
                  "overlap_right": stacked[correct, layer].mean() if correct.any() else np.nan,
                  "overlap_wrong": stacked[~correct, layer].mean() if (~correct).any() else np.nan,
                  "n": len(labels), "n_without_boxes": missing} for layer in range(len(curve))]
        data[label] = {sample: {"correct": c, "overlap": o} for sample, c, o in zip(ids, labels, overlaps)}
        if np.isnan(curve).all():
            notes.append(f"{label}: all answers {'right' if all(labels) else 'wrong'}, AUROC undefined")
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    layers = np.arange(len(next(iter(series.values()))))
    line_plot(ax, layers, series, xlabel="language-model layer", ylabel="AUROC (right vs wrong)",
              title="attention-box overlap as a predictor of correctness")
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    caption = (f"Per-layer AUROC of the attention-box overlap (cosine of the last prompt token's head-mean image "
               f"attention with the objects' box coverage) for predicting a right answer, {ctx.subject}, "
               f"{ctx.method_label()}" + (f"; {'; '.join(notes)}" if notes else "") + ".")
    return finish(ctx.out, "overlap-auroc", fig, caption, rows=rows, data=data, dpi=ctx.args.dpi)


def confidence_auroc(ctx) -> list:
    store = ctx.collection.base
    confidence, labels, sums, maxima = [], [], [], []
    for record, captured in store:
        confidence.append(record["confidence"])
        labels.append(bool(record["correct"]))
        sums.append(layer_masses(captured.rows[0])[0])
        maxima.append(image_map(captured.rows[0]).max(-1))
    sum_curve, max_curve = layer_aurocs(sums, labels), layer_aurocs(maxima, labels)
    confidence_score = auroc(confidence, labels)
    layers = np.arange(len(sum_curve))
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    line_plot(ax, layers, {"image attention sum": sum_curve, "image attention max": max_curve},
              xlabel="language-model layer", ylabel="AUROC (right vs wrong)", title="predictors of correctness")
    ax.axhline(confidence_score, color="black", ls="--", lw=1, label=f"confidence ({confidence_score:.2f})")
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.legend(fontsize=7)
    rows = [{"layer": layer, "auroc_attention_sum": sum_curve[layer], "auroc_attention_max": max_curve[layer],
             "auroc_confidence": confidence_score, "n_right": sum(labels), "n_wrong": len(labels) - sum(labels)}
            for layer in layers]
    caption = (f"AUROC for a right answer of the first-token confidence vs the last prompt token's image attention "
               f"sum and max (head mean) per layer, baseline, {ctx.subject}.")
    return finish(ctx.out, "confidence-auroc", fig, caption, rows=rows, dpi=ctx.args.dpi)


def logit_distribution(ctx) -> list:
    if ctx.method is None:
        raise ToolkitError("logit-distribution compares the logits before and after an intervention; add "
                           "--method scaling_vis --weight A (or adapt_vis)")
    stores = ctx.collection.stores()
    n_layers = stores[0].load(stores[0].records()[0]).rows[0].image.shape[0]
    layers = ctx.layers(n_layers, [n_layers // 2])
    pooled = {(ctx.store_label(s), layer, reduce): [] for s in stores for layer in layers for reduce in ("mean", "max")}
    for store in stores:
        for _, captured in store:
            logits = captured.rows[0].image_logits                         # (layers, heads, n_image)
            for layer in layers:
                pooled[(ctx.store_label(store), layer, "mean")].append(logits[layer].mean(0))
                pooled[(ctx.store_label(store), layer, "max")].append(logits[layer].max(0))
    fig, axes = plt.subplots(len(layers), 2, figsize=(8, 2.6 * len(layers)), squeeze=False, layout="constrained")
    data = []
    for r, layer in enumerate(layers):
        for c, reduce in enumerate(("mean", "max")):
            values = {label: np.concatenate(pooled[(label, layer, reduce)]) for label in
                      (ctx.store_label(s) for s in stores)}
            edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=40)
            for label, v in values.items():
                counts, _ = np.histogram(v, bins=edges)
                axes[r][c].hist(v, bins=edges, alpha=0.5, label=label)
                data.append({"layer": layer, "over_heads": reduce, "configuration": label, "mean": v.mean(),
                             "std": v.std(), "min": v.min(), "max": v.max(), "bin_edges": edges, "counts": counts})
            axes[r][c].set_title(f"layer {layer}: {reduce} over heads", fontsize=9)
            axes[r][c].set_xlabel("pre-softmax logit toward image keys")
            axes[r][c].legend(fontsize=7)
    caption = (f"Distribution of the last prompt token's pre-softmax attention logits toward image keys (mean and max "
               f"over heads, pooled over image tokens and samples), {ctx.subject}, {ctx.method_label()}.")
    return finish(ctx.out, "logit-distribution", fig, caption, data=data, dpi=ctx.args.dpi)
