"""Gradient saliency: |d f / d x| of the chosen answer's logit f with respect to the input pixels x, on the image.

f is the logit of the greedy first answer token at the last prompt position (under ScalingVis at the sample's
alpha for a method). x are the pixels the vision tower receives (`pixel_values`, after the processor's resize,
crop, tiling and normalisation); each original pixel shows the gradient magnitude (max over colour channels) of
the processed pixel that samples it, summed over the views that see it (LLaVA-NeXT's base image and tiles).
An original pixel no view samples (e.g. cropped away by LLaVA-1.5's center crop) cannot change f: it gets 0.
"""
from __future__ import annotations

from contextlib import nullcontext

import matplotlib.pyplot as plt
import numpy as np
import torch

from analysis.collect import prompts_for
from analysis.fig_overlap import box_mask
from analysis.render import figure_dir, overlay, safe_name, save_png, write_caption, write_json
from intervention import ScalingVis
from model_zoo.geometry import image_geometries, pixel_views


def answer_logit(vlm, inputs, pixel_values, alpha):
    """(last-position logits (vocab,)) of a one-sample batch with `pixel_values` swapped in, under `alpha`."""
    scaling = ScalingVis(vlm, alpha=alpha) if alpha != 1.0 else nullcontext()
    with scaling:
        return vlm.model(**{**inputs, "pixel_values": pixel_values}, logits_to_keep=1).logits[0, -1]


def saliency_map(vlm, inputs, geometry, alpha: float = 1.0) -> tuple[np.ndarray, int, float]:
    """((H, W) saliency over the original image, chosen token id, its logit) for a one-sample batch."""
    pixel_values = inputs["pixel_values"].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = answer_logit(vlm, inputs, pixel_values, alpha)
        token = int(logits.argmax())
        (gradient,) = torch.autograd.grad(logits[token], pixel_values)
    views = pixel_views(vlm, gradient, 0, geometry, inputs)
    heat = sum(geometry.paint_view(view.abs().amax(0).float().cpu().numpy(), i) for i, view in enumerate(views))
    return heat, token, float(logits[token].detach())


def _alpha_for(ctx, vlm, inputs) -> float:
    """The sample's alpha under the analysed method (AdaptVis decides from the alpha = 1 confidence)."""
    method = ctx.method
    if method is None:
        return 1.0
    with torch.no_grad():
        confidence = torch.softmax(answer_logit(vlm, inputs, inputs["pixel_values"], 1.0).float(), -1).max()[None]
    return float(method.entry.choose(method.hyperparameters, confidence)[0].alpha)


def saliency(ctx) -> list:
    vlm = ctx.vlm
    folder = figure_dir(ctx.out, "saliency")
    samples = ctx.samples
    written, numbers = [], {}
    for index in ctx.chosen([{"id": s.id} for s in samples]):
        sample = samples[index]
        image = sample.image
        inputs = vlm.prepare([image], prompts_for(vlm, [sample]))
        geometry = image_geometries(vlm, inputs, [image.size])[0]
        boxes = ctx.boxes({"id": sample.id}, required=False)
        mask = box_mask(boxes, image.size) if boxes else None
        configurations = [("baseline", 1.0)] + ([] if ctx.method is None else
                                                [(ctx.method.label(), _alpha_for(ctx, vlm, inputs))])
        fig, axes = plt.subplots(1, len(configurations), figsize=(2.6 * len(configurations), 2.7), squeeze=False,
                                 layout="constrained")
        numbers[sample.id] = {}
        for ax, (label, alpha) in zip(axes[0], configurations):
            heat, token, logit = saliency_map(vlm, inputs, geometry, alpha)
            word = vlm.processor.tokenizer.decode([token]).strip()
            overlay(ax, image, heat, title=f"{label}: '{word}'", boxes=boxes)
            total = float(heat.sum())
            numbers[sample.id][label] = {"alpha": alpha, "token": word, "logit": logit, "saliency_sum": total,
                                         "saliency_max": float(heat.max()),
                                         "share_in_boxes": None if mask is None or total == 0
                                         else float(heat[mask].sum() / total)}
        written.append(save_png(fig, folder / f"saliency__{safe_name(sample.id)}.png", ctx.args.dpi))
    written.append(write_json(folder / "saliency.json", numbers))
    written.append(write_caption(folder, f"Gradient saliency |d logit / d pixel| of the chosen first answer token "
                                         f"(max over colour channels, drawn at each processed pixel's place in the "
                                         f"original image), chosen samples, {ctx.subject}, {ctx.method_label()}."))
    return written
