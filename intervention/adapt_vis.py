"""AdaptVis: pick alpha per sample from the model's confidence, then answer with ScalingVis at that alpha.

Rule (paper §4.2; original `llava15.py` L379-399): confidence = the max softmax
probability over the whole vocabulary of the first generated token at alpha = 1, rounded to 2 decimals
(as the original, optional here); alpha = weight1 ("smooth", meant < 1) if confidence < threshold, else
weight2 ("sharpen", meant > 1). The original's VSR branch compared a raw logit instead of the
probability (a bug); we use the probability everywhere.

Rounding and comparison happen in float32 like the original (`round(tensor, 2) < threshold` on an fp32
tensor): 0.2988 rounds to 0.30 and is not < 0.3, so it takes the sharpen branch; and a rounded 0.35 is
not < 0.35 (in float64 the fp32 value 0.35 would compare below 0.35).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
from transformers import BatchFeature

from common.errors import ToolkitError
from intervention.session import open_session

logger = logging.getLogger(__name__)

SMOOTH, SHARPEN = "smooth", "sharpen"


@dataclass(frozen=True)
class AdaptVisAnswer:
    """One sample's AdaptVis outcome."""

    text: str
    confidence: float
    confidence_rounded: float
    branch: str
    alpha: float

    def to_dict(self) -> dict:
        return asdict(self)


class AdaptVis:
    """AdaptVis(weight1=0.5, weight2=1.5, threshold=0.4): the paper's adaptive ScalingVis."""

    name = "adapt_vis"

    def __init__(self, weight1: float = 0.5, weight2: float = 1.5, threshold: float = 0.4,
                 round_confidence: bool = True, scope: str = "prefill", layers=None):
        for label, value in (("weight1", weight1), ("weight2", weight2)):
            if not float(value) >= 0:
                raise ToolkitError(f"AdaptVis {label} must be >= 0 (it is an attention scaling alpha), got {value}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ToolkitError(f"AdaptVis threshold must be in [0, 1] (it is compared with a probability), "
                               f"got {threshold}")
        if weight1 > weight2:
            logger.warning("AdaptVis weight1=%s > weight2=%s: low-confidence samples get the sharper alpha, the "
                           "reverse of the paper's rule (weight1 < 1 < weight2)", weight1, weight2)
        self.weight1, self.weight2, self.threshold = float(weight1), float(weight2), float(threshold)
        self.round_confidence = round_confidence
        self.scope = scope
        self.layers = None if layers is None else tuple(layers)

    def to_dict(self) -> dict:
        return {"method": self.name, "weight1": self.weight1, "weight2": self.weight2, "threshold": self.threshold,
                "round_confidence": self.round_confidence, "scope": self.scope,
                "layers": None if self.layers is None else sorted(self.layers)}

    def __repr__(self) -> str:
        return (f"AdaptVis(weight1={self.weight1}, weight2={self.weight2}, threshold={self.threshold}, "
                f"round_confidence={self.round_confidence})")

    def decide(self, confidence: torch.Tensor) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """(alphas (B,), branch names, the confidence actually compared (rounded unless disabled))."""
        compared = torch.as_tensor(confidence, dtype=torch.float32).flatten()
        if self.round_confidence:
            compared = torch.round(compared, decimals=2)
        smooth = compared < torch.tensor(self.threshold, dtype=torch.float32)
        # float64 so the alphas are exactly the weights given (0.8, not float32's 0.800000011920929)
        alphas = torch.where(smooth, torch.tensor(self.weight1, dtype=torch.float64),
                             torch.tensor(self.weight2, dtype=torch.float64))
        branches = [SMOOTH if s else SHARPEN for s in smooth.tolist()]
        return alphas, branches, compared

    def recorded_confidence(self, compared: torch.Tensor) -> list[float]:
        """The compared confidences for result records: a rounded value as the 2-decimal number it is
        (float32 0.3 would otherwise print as 0.30000001...)."""
        return [round(float(c), 2) if self.round_confidence else float(c) for c in compared]

    def run(self, vlm, inputs: BatchFeature, max_new_tokens: int) -> list[AdaptVisAnswer]:
        """The two-step procedure on one prepared batch: confidence at alpha = 1, then answers at the chosen
        per-row alpha."""
        session = open_session(vlm, inputs, max_new_tokens=max_new_tokens, scope=self.scope, layers=self.layers)
        return self.answer(session)

    def answer(self, session) -> list[AdaptVisAnswer]:
        """AdaptVis answers from an open `AnswerSession` (lets callers share one session across methods)."""
        confidence = session.confidence
        alphas, branches, compared = self.decide(confidence)
        texts = session.answers(alphas)
        shown = self.recorded_confidence(compared)
        return [AdaptVisAnswer(text, float(raw), rounded, branch, float(alpha))
                for text, raw, rounded, branch, alpha in zip(texts, confidence, shown, branches, alphas)]
