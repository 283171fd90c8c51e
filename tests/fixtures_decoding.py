"""Tiny models whose next-token distributions are far from uniform (larger initial weights), so that the
contrastive methods (VCD, DoLa) and their plausibility constraints have something to act on."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def sharp_vlm(family: str, lm_layers: int = 4):
    from model_zoo.tiny import build_tiny_vlm
    from model_zoo.vlm import VLM

    model, processor = build_tiny_vlm(family, lm_layers=lm_layers, text_config={"initializer_range": 0.3})
    return VLM.from_loaded(model, processor)
