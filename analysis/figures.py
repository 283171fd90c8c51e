"""The figures `python -m analysis` draws, by name, with the paper figure each reproduces and what it reads.

Each figure names its drawing function as `module:function`, imported only when the figure is drawn: the
drawing code needs torch and matplotlib, and listing the figures (`--help`) should answer at once.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

MODEL = "model"            # needs the model: captured attention or gradients
RECORDS = "model or runs"  # per-sample records suffice: run folders (--runs) or the model's answers


@dataclass(frozen=True)
class Figure:
    name: str
    paper: str
    summary: str
    source: str
    function: str  # "module:function" in analysis/, called with the figure's context
    needs_method: bool = False

    def render(self, ctx) -> list:
        """Draw the figure; the paths written."""
        module, name = self.function.split(":")
        return getattr(importlib.import_module(f"analysis.{module}"), name)(ctx)


FIGURES = {figure.name: figure for figure in (
    Figure("attention-mass", "Fig. 3, Table 5", "image vs text attention mass of the last prompt token per layer, "
           "and per token", MODEL, "fig_attention:attention_mass"),
    Figure("attention-variance", "Fig. 7 left, 16/17", "how concentrated the image attention is per layer, right "
           "vs wrong answers", MODEL, "fig_attention:attention_variance"),
    Figure("heatmaps", "Fig. 5, 9, 10", "image attention of chosen layers over chosen images, baseline vs method",
           MODEL, "fig_attention:heatmaps"),
    Figure("layer-lines", "peers' per-layer plot", "image and text attention mass per layer of chosen samples",
           MODEL, "fig_attention:layer_lines"),
    Figure("overlap-auroc", "Fig. 6, 7 right, 19-24", "per-layer AUROC of the attention-box overlap for a right "
           "answer (needs boxes)", MODEL, "fig_overlap:overlap_auroc"),
    Figure("confidence-auroc", "Fig. 18", "AUROC for a right answer: confidence vs image attention sum and max",
           MODEL, "fig_overlap:confidence_auroc"),
    Figure("logit-distribution", "Fig. 26", "image attention logits before vs after the intervention (mean and max "
           "over heads)", MODEL, "fig_overlap:logit_distribution", needs_method=True),
    Figure("alpha-sweep", "Fig. 8", "accuracy (and confidence) per gold relation as alpha varies", RECORDS,
           "fig_records:alpha_sweep"),
    Figure("relation-confidence", "Fig. 15", "confidence per gold relation and label distribution per subset",
           RECORDS, "fig_records:relation_confidence"),
    Figure("errors", "error analysis", "confusion matrix and error types (flips, orthogonal, unparsed) per run",
           RECORDS, "fig_records:errors"),
    Figure("compare", "Fig. 11/12", "two runs side by side and the cases one fixed or broke", RECORDS,
           "fig_compare:compare", needs_method=True),
    Figure("saliency", "saliency maps", "|d logit / d pixel| of the chosen answer over the image", MODEL,
           "saliency:saliency"),
)}
