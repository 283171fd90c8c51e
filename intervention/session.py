"""One prepared batch, answered at any alpha: the interface every method of the CLI goes through.

    session = open_session(vlm, inputs, max_new_tokens=10)
    session.confidence          # (B,) max softmax prob of the first generated token at alpha = 1
    session.answers(1.0)        # == stock greedy generation
    session.answers([0.5, 2.0]) # per-row alpha

The current implementation is the naive one: one single-token generate for the confidence, one full
generate per `answers()` call (alpha = 1 answers are cached). It is kept narrow on purpose so a faster
engine (prefix sharing: the prompt prefix is alpha-independent) can replace the internals.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from transformers import BatchFeature

from intervention.scaling_vis import ScalingVis, validate_alpha
from intervention.state import SCOPES
from common.errors import ToolkitError


class AnswerSession:
    """Answers for one batch of inputs at different alphas (see `open_session`)."""

    def __init__(self, vlm, inputs: BatchFeature, *, max_new_tokens: int, scope: str = "prefill",
                 layers: Iterable[int] | None = None):
        if max_new_tokens < 1:
            raise ToolkitError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if scope not in SCOPES:
            raise ToolkitError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
        self.vlm = vlm
        self.inputs = inputs
        self.max_new_tokens = max_new_tokens
        self.scope = scope
        self.layers = None if layers is None else tuple(layers)
        self.batch_size = int(inputs["input_ids"].shape[0])
        self._confidence: torch.Tensor | None = None
        self._baseline: list[str] | None = None

    @property
    def confidence(self) -> torch.Tensor:
        """(B,) float32: max over the whole vocabulary of softmax(first-token logits) at alpha = 1."""
        if self._confidence is None:
            out = self.vlm.generate_ids(self.inputs, 1, output_logits=True, return_dict_in_generate=True)
            self._confidence = first_token_confidence(out.logits[0])
        return self._confidence

    def answers(self, alpha: float | Sequence[float] | torch.Tensor) -> list[str]:
        """Greedy decoded answers with ScalingVis at `alpha` (one value, or one per batch row)."""
        alpha = validate_alpha(alpha)
        if _all_ones(alpha):
            if self._baseline is None:
                self._baseline = self.vlm.generate(self.inputs, self.max_new_tokens)
            return list(self._baseline)
        with ScalingVis(self.vlm, alpha=alpha, scope=self.scope, layers=self.layers):
            return self.vlm.generate(self.inputs, self.max_new_tokens)


def open_session(vlm, inputs: BatchFeature, *, max_new_tokens: int, scope: str = "prefill",
                 layers: Iterable[int] | None = None) -> AnswerSession:
    """Start answering one prepared batch (`vlm.prepare(...)` output)."""
    return AnswerSession(vlm, inputs, max_new_tokens=max_new_tokens, scope=scope, layers=layers)


def first_token_confidence(logits: torch.Tensor) -> torch.Tensor:
    """Max softmax probability per row of (B, vocab) logits, computed in float32."""
    return torch.softmax(logits.float(), dim=-1).max(dim=-1).values


def _all_ones(alpha) -> bool:
    return bool((torch.as_tensor(alpha, dtype=torch.float32) == 1.0).all())
