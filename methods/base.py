"""Baseline: the model itself (alpha = 1 everywhere; stock attention, stock greedy decoding)."""
from __future__ import annotations

from methods.alpha import ALPHA, AlphaMethod, constant_alpha
from methods.registry import register

BASE = register(AlphaMethod(
    name="base", title="Baseline", paper="-", description="the unmodified model (greedy decoding)",
    hyperparameters=(), strategy=ALPHA, rank=0, record_fields=("confidence", "alpha"),
    choose=lambda values, confidence: constant_alpha(1.0, len(confidence))))
