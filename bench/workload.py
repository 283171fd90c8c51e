"""The benchmark's models, inputs and workloads (what one timed call does); the shapes of the models, the
batch and the answer length are in `bench.shapes`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from bench.shapes import ANSWER_TOKENS, LANGUAGE_MODEL, SHAPES, batch_images
from intervention import AdaptVis, ScalingVis, open_session
from intervention.capture import capture_attention
from intervention.lm import RegisteredAttention
from model_zoo.tiny import build_tiny_vlm
from model_zoo.vlm import VLM
import methods
from methods import Configuration
from methods.dola import DoLa
from methods.vcd import VCD

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
    """A left-padded batch of `batch_images`."""
    images, questions = batch_images(shape, batch_size)
    return vlm.prepare(images, [vlm.build_prompt(question) for question in questions])


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


def _vcd(vlm, inputs):
    return VCD().run(vlm, inputs, ANSWER_TOKENS)  # the published defaults: alpha 1, beta 0.1, step 500


def _dola(layers):
    def run(vlm, inputs):
        return DoLa(layers).run(vlm, inputs, ANSWER_TOKENS)
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
    Workload("vcd", _vcd),
    Workload("dola", _dola("high")),  # on the 4-layer LM: the one candidate [2] (DoLa-static)
    Workload("dola_all_layers", _dola("0,1,2,3")),  # every early exit a candidate: dynamic, |J| = 4
)}
