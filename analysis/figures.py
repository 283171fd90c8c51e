"""The figures `python -m analysis` draws, by name, with the paper figure each reproduces and what it reads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from analysis.fig_attention import attention_mass, attention_variance, heatmaps, layer_lines
from analysis.fig_compare import compare
from analysis.fig_overlap import confidence_auroc, logit_distribution, overlap_auroc
from analysis.fig_records import alpha_sweep, errors, relation_confidence
from analysis.saliency import saliency

MODEL = "model"            # needs the model: captured attention or gradients
RECORDS = "model or runs"  # per-sample records suffice: run folders (--runs) or the model's answers


@dataclass(frozen=True)
class Figure:
    name: str
    paper: str
    summary: str
    source: str
    render: Callable
    needs_method: bool = False


FIGURES = {figure.name: figure for figure in (
    Figure("attention-mass", "Fig. 3, Table 5", "image vs text attention mass of the last prompt token per layer, "
           "and per token", MODEL, attention_mass),
    Figure("attention-variance", "Fig. 7 left, 16/17", "how concentrated the image attention is per layer, right "
           "vs wrong answers", MODEL, attention_variance),
    Figure("heatmaps", "Fig. 5, 9, 10", "image attention of chosen layers over chosen images, baseline vs method",
           MODEL, heatmaps),
    Figure("layer-lines", "peers' per-layer plot", "image and text attention mass per layer of chosen samples",
           MODEL, layer_lines),
    Figure("overlap-auroc", "Fig. 6, 7 right, 19-24", "per-layer AUROC of the attention-box overlap for a right "
           "answer (needs boxes)", MODEL, overlap_auroc),
    Figure("confidence-auroc", "Fig. 18", "AUROC for a right answer: confidence vs image attention sum and max",
           MODEL, confidence_auroc),
    Figure("logit-distribution", "Fig. 26", "image attention logits before vs after the intervention (mean and max "
           "over heads)", MODEL, logit_distribution, needs_method=True),
    Figure("alpha-sweep", "Fig. 8", "accuracy (and confidence) per gold relation as alpha varies", RECORDS,
           alpha_sweep),
    Figure("relation-confidence", "Fig. 15", "confidence per gold relation and label distribution per subset",
           RECORDS, relation_confidence),
    Figure("errors", "error analysis", "confusion matrix and error types (flips, orthogonal, unparsed) per run",
           RECORDS, errors),
    Figure("compare", "Fig. 11/12", "two runs side by side and the cases one fixed or broke", RECORDS, compare,
           needs_method=True),
    Figure("saliency", "saliency maps", "|d logit / d pixel| of the chosen answer over the image", MODEL, saliency),
)}
