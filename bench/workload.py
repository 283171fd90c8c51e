"""The benchmark's models, inputs and workloads (what one timed call does).

Models: tiny random CPU models with the sequence layout of the paper's models and a small language
model (`SHAPES`): LLaVA-1.5-like (CLIP 336 px / patch 14 -> 576 image tokens) and Qwen2-VL-like
(672 x 672 image, patch 14, 2x2 merge -> 576 image tokens); LM 4 layers x hidden 256 x 8 heads x MLP 1024.

Answer length: random weights never emit EOS, so every workload decodes exactly `ANSWER_TOKENS` = 2
tokens (max_new_tokens=2): the cost of a one-word answer followed by EOS (the first token comes from
the prompt's last position, the second from one decode step), identical for every variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from intervention import AdaptVis, ScalingVis, open_session
from intervention.capture import capture_attention
from intervention.lm import RegisteredAttention
from model_zoo.tiny import build_tiny_vlm
from model_zoo.vlm import VLM
import methods
from methods import Configuration

ANSWER_TOKENS = 2
LANGUAGE_MODEL = dict(lm_layers=4, hidden=256, heads=8, kv_heads=8, vision_layers=2, vision_hidden=64,
                      text_config={"intermediate_size": 1024})
SHAPES = {
    "llava": dict(family="llava", image_size=336, patch_size=14, image=(400, 300)),
    "qwen2_vl": dict(family="qwen2_vl", image_size=672, patch_size=14, image=(672, 672)),
}
QUESTIONS = (
    "Where is the mug in relation to the table? Answer with left, right, on or under.",
    "Where is the cat?",
    "Is the dog on the left or right of the chair? Answer in one word.",
    "Where is the lamp in relation to the bed?",
)
ALPHAS = (0.5, 0.8, 1.2, 1.5, 2.0)  # run.sh's ScalingVis grid; with the baseline: 6 alphas
WEIGHT1 = (0.5, 0.8)
WEIGHT2 = (1.2, 1.5, 2.0)
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)
ADAPT = dict(weight1=0.5, weight2=1.5, threshold=0.4)  # the paper's Controlled_Images_A setting


def sweep_specs() -> list[Configuration]:
    """The 6-alpha sweep as the CLI expands it: base + scaling_vis at each of ALPHAS."""
    return [Configuration.of("base")] + [Configuration.of("scaling_vis", weight=a) for a in ALPHAS]


def grid_specs() -> list[Configuration]:
    """The sweep plus the full AdaptVis grid (2 x 3 x 10 = 60 configurations): run.sh's val pass."""
    adapt = [Configuration.of("adapt_vis", weight1=w1, weight2=w2, threshold=t)
             for w1 in WEIGHT1 for w2 in WEIGHT2 for t in THRESHOLDS]
    return sweep_specs() + adapt


def build_vlm(shape: str, seed: int = 0) -> VLM:
    spec = SHAPES[shape]
    model, processor = build_tiny_vlm(spec["family"], seed=seed, image_size=spec["image_size"],
                                      patch_size=spec["patch_size"], **LANGUAGE_MODEL)
    return VLM.from_loaded(model, processor)


def batch_inputs(vlm: VLM, shape: str, batch_size: int):
    """A left-padded batch: noise images of the shape's size and questions of different lengths."""
    from numpy.random import default_rng
    from PIL import Image

    width, height = SHAPES[shape]["image"]
    images = [Image.fromarray(default_rng(i).integers(0, 256, (height, width, 3), dtype="uint8"))
              for i in range(batch_size)]
    prompts = [vlm.build_prompt(QUESTIONS[i % len(QUESTIONS)]) for i in range(batch_size)]
    return vlm.prepare(images, prompts)


@dataclass(frozen=True)
class Workload:
    name: str
    run: Callable  # (vlm, inputs) -> anything


def _stock_forward(vlm, inputs):
    with torch.inference_mode():
        return vlm.model(**inputs, position_ids=_positions(vlm, inputs), logits_to_keep=1).logits


def _scaled_forward(vlm, inputs):
    with ScalingVis(vlm, alpha=0.5), torch.inference_mode():
        return vlm.model(**inputs, position_ids=_positions(vlm, inputs), logits_to_keep=1).logits


def _capture_off_forward(vlm, inputs):
    """The registered attention function with no editor and no observer: what the language model runs
    when attention capture is available but not asked for."""
    with RegisteredAttention(vlm.model), torch.inference_mode():
        return vlm.model(**inputs, position_ids=_positions(vlm, inputs), logits_to_keep=1).logits


def _capture_on_forward(vlm, inputs):
    with capture_attention(vlm), torch.inference_mode():
        return vlm.model(**inputs, position_ids=_positions(vlm, inputs), logits_to_keep=1).logits


def _positions(vlm, inputs):
    if vlm.spec.rope == "mrope":
        return None  # the model computes its M-RoPE ids itself on a prompt-only forward
    mask = inputs["attention_mask"]
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _baseline(vlm, inputs):
    return vlm.generate(inputs, ANSWER_TOKENS)


def _scaling_naive(vlm, inputs):
    with ScalingVis(vlm, alpha=0.5):
        return vlm.generate(inputs, ANSWER_TOKENS)


def _session(vlm, inputs, engine):
    return open_session(vlm, inputs, max_new_tokens=ANSWER_TOKENS, engine=engine)


def _adaptvis(engine):
    def run(vlm, inputs):
        return AdaptVis(**ADAPT).answer(_session(vlm, inputs, engine))
    return run


def _engine_base(vlm, inputs):
    return _session(vlm, inputs, "prefix").answers(1.0)


def _through_runner(specs_fn, engine):
    """What `runner.evaluate.evaluate_samples` does per batch (`methods.answer`), for the configurations
    `specs_fn()`."""
    specs = specs_fn()

    def run(vlm, inputs):
        rows = inputs["input_ids"].shape[0]
        return methods.answer(vlm, [None] * rows, None, None, specs, max_new_tokens=ANSWER_TOKENS, engine=engine,
                              inputs=inputs)
    return run


WORKLOADS = {w.name: w for w in (
    Workload("stock_forward", _stock_forward),
    Workload("scaled_forward", _scaled_forward),
    Workload("capture_off_forward", _capture_off_forward),
    Workload("capture_on_forward", _capture_on_forward),
    Workload("baseline", _baseline),
    Workload("engine_base", _engine_base),
    Workload("scaling_naive", _scaling_naive),
    Workload("adaptvis_naive", _adaptvis("naive")),
    Workload("adaptvis_fast", _adaptvis("prefix")),
    Workload("sweep_naive", _through_runner(sweep_specs, "naive")),
    Workload("sweep_fast", _through_runner(sweep_specs, "prefix")),
    Workload("grid_naive", _through_runner(grid_specs, "naive")),
    Workload("grid_fast", _through_runner(grid_specs, "prefix")),
)}
