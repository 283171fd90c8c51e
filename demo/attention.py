"""The attention behind an answer: the answer's greedy generation run again with the method's intervention active
and the attention of the last prompt token captured (`intervention.capture`).

How a configuration acts on attention is known per strategy of the method registry (the alpha family scales the
image logits by the alpha its rule chose for the sample; CLVS blends with its vision memory), so the table below is
keyed by strategy. A method whose strategy is not listed (one that changes decoding or the image rather than
attention rows) is answered as usual and shown without its own heatmap, with a note saying why.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Optional

from intervention.capture import CapturedAttention, Generation, capture_attention, generate_at
from intervention.scaling_vis import ScalingVis
from methods import Configuration
from methods.alpha import AlphaStrategy
from methods.clvs import ClvsStrategy, setting
from model_zoo.geometry import image_geometries


def _scaled(vlm, configuration: Configuration, fields: dict):
    # fields["alpha"] is the alpha this sample was answered with (AdaptVis: the branch its confidence chose).
    alpha = float(fields["alpha"])
    if alpha == 1.0:
        return nullcontext()
    return ScalingVis(vlm, alpha=alpha, scope=configuration.get("scope", "prefill"))


def _smoothed(vlm, configuration: Configuration, fields: dict):
    return setting(configuration).on(vlm)


INTERVENTIONS: dict[str, Callable] = {AlphaStrategy.name: _scaled, ClvsStrategy.name: _smoothed}


def intervention_for(vlm, configuration: Configuration, fields: dict):
    """The context manager that makes a plain `generate` compute what `configuration` computed for this sample,
    or None when its attention cannot be shown."""
    make = INTERVENTIONS.get(configuration.entry.strategy.name)
    return None if make is None else make(vlm, configuration, fields)


def no_attention_note(configuration: Configuration) -> str:
    return (f"{configuration.entry.title} does not act on attention rows the demo can capture (strategy "
            f"{configuration.entry.strategy.name}); its heatmap is not shown")


def captured_generation(vlm, inputs, intervention, image_size: tuple[int, int],
                        max_new_tokens: int) -> tuple[CapturedAttention, Generation]:
    """Greedy generation of one prepared sample under `intervention`, with the last prompt token's attention and
    the image geometry that maps it onto the image."""
    with intervention, capture_attention(vlm) as cap:
        generation = generate_at(vlm, inputs, 1.0, "prefill", max_new_tokens)
    attention: Optional[CapturedAttention] = cap.samples[0]
    attention.geometry = image_geometries(vlm, inputs, [image_size])[0]
    return attention, generation
