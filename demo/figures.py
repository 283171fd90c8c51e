"""The page's two pictures, drawn from a `Result`: the image with the baseline's and the method's head-mean attention
at one layer side by side, and the image/text attention mass per layer.

Figures are `matplotlib.figure.Figure` objects, never pyplot's global state, so concurrent requests can draw at the
same time; the drawing helpers are the analysis figures' own (`analysis.render`, `analysis.stats`).
"""
from __future__ import annotations

import io
from typing import Optional

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from analysis.render import overlay
from analysis.stats import image_map, layer_masses
from demo.engine import Outcome, Result

DPI = 100


def layer_count(result: Result) -> int:
    return result.base.attention.rows[0].image.shape[0]


def outcome_label(outcome: Outcome) -> str:
    return "baseline" if outcome.configuration.method == "base" else outcome.configuration.label()


def shown_outcomes(result: Result) -> list[Outcome]:
    """The baseline, then the method unless the method is the baseline itself."""
    return [result.base] if result.method is result.base else [result.base, result.method]


def painted(outcome: Outcome, layer: int) -> Optional[np.ndarray]:
    """(H, W) head-mean image attention of the last prompt token at `layer`, over the original image (NaN where no
    image token looks, e.g. cropped-away pixels); None when the outcome has no captured attention."""
    if outcome.attention is None:
        return None
    return outcome.attention.geometry.paint(image_map(outcome.attention.rows[0])[layer])


def heatmaps(result: Result, image: Image.Image, layer: int) -> Image.Image:
    """The image, then the baseline's and the method's attention at `layer` on one colour scale (comparable)."""
    outcomes = shown_outcomes(result)
    maps = [painted(outcome, layer) for outcome in outcomes]
    top = max((float(np.nanmax(m)) for m in maps if m is not None and np.isfinite(m).any()), default=1.0)
    fig = Figure(figsize=(3.0 * (len(outcomes) + 1), 3.4), layout="constrained")
    axes = fig.subplots(1, len(outcomes) + 1, squeeze=False)[0]
    overlay(axes[0], image, np.full((image.height, image.width), np.nan), title="image", boxes=result.boxes)
    for ax, outcome, heat in zip(axes[1:], outcomes, maps):
        title = f"{outcome_label(outcome)}, layer {layer}\nanswer '{outcome.answer}'{_mark(outcome)}"
        if heat is None:
            heat = np.full((image.height, image.width), np.nan)
            title += "\n(attention not captured)"
        overlay(ax, image, heat, title=title, boxes=result.boxes, vmax=top)
    return _png(fig)


def masses(result: Result, layer: int) -> Image.Image:
    """Image (red) and text (blue) attention mass of the last prompt token per layer, mean over heads, baseline
    solid and method dashed, with the layer shown in the heatmaps marked."""
    fig = Figure(figsize=(6.0, 3.0), layout="constrained")
    ax = fig.subplots()
    layers = np.arange(layer_count(result))
    for outcome, style in zip(shown_outcomes(result), ("-", "--")):
        if outcome.attention is None:
            continue
        image, text = layer_masses(outcome.attention.rows[0])
        ax.plot(layers, image, style, color="tab:red", marker="o", ms=3, label=f"image keys ({outcome_label(outcome)})")
        ax.plot(layers, text, style, color="tab:blue", marker="o", ms=3, label=f"text keys ({outcome_label(outcome)})")
    ax.axvline(layer, color="grey", lw=1, ls=":")
    ax.set_xlabel("language-model layer")
    ax.set_ylabel("attention mass (sum over keys)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("last prompt token: image vs text keys", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def _mark(outcome: Outcome) -> str:
    return "" if outcome.correct is None else (" (right)" if outcome.correct else " (wrong)")


def _png(fig: Figure) -> Image.Image:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
