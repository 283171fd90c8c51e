"""VEA, Visual Evidence Augmentation (Liu et al. 2025, "Seeing but Not Believing", ICLR 2026): find where the
model already looks for evidence, dim the rest of the image, and ask again with a hint.

    from methods.vea import VEA
    answers = VEA(alpha=0.5, sigma=0.5, lam=10.0, hint=True, layers="auto").run(vlm, images, questions,
                                                                                 max_new_tokens=10)
    answers[0].text, answers[0].layers, answers[0].layer_source, answers[0].confidence

Per batch (the paper's steps B-E; A, the layer profile, once per model: `methods.vea_profile`):
  B. attribution: one forward of the plain prompt with attention capture (`intervention.capture`); a
     token's score e is the last prompt token's post-softmax attention to it, averaged over heads and over
     the attribution layers (Eq. 1);
  C-D. the evidence map: denoise (Eq. 2, lambda) on the token grid, paint on the model-input canvas, Gaussian
     blur (Eq. 3, sigma), min-max normalise (`methods.vea_maps`);
  E. highlight: I' = clip(I (alpha + (1 - alpha) e)) on the pixels the model sees, every view of every
     family (`methods.vea_pixels`); then a greedy answer with the hint sentence before the question.

alpha = 1 leaves the image untouched (the factor is 1 everywhere; the pixel values are not even
re-normalised) and without the hint the answer pass is the baseline's generate, token for token.
All configurations of a batch share the one attribution pass (it captures every layer), and those
differing only in alpha share the evidence map.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from common.errors import ToolkitError
from methods.registry import Answer, Configuration, Hyperparameter, Method, Strategy, register
from methods.vea_maps import evidence_map, view_factors
from methods.vea_pixels import highlighted_pixels
from methods.vea_profile import ProfileSource, attribute, check_layer_spec, resolve_layers

# The official VEA prompt's hint (Liu et al. 2025, appendix; official vea/config.py), placed before the
# question as there ("... {hint} Question: {question}").
HINT = "Only use words from the picture, especially those in the highlighted region, to answer the question."
_SOURCE = "Liu et al. 2025 (ICLR 2026)"


@dataclass(frozen=True)
class LayersHyperparameter(Hyperparameter):
    """--vea-layers: a string whose form (auto, profile, all, i+j+k) is checked when parsed."""

    def check(self, value):
        value = super().check(value)
        return value if value is None else check_layer_spec(value)


VEA_ALPHA = Hyperparameter(
    "vea_alpha", float, 0.5, "VEA brightness kept where there is no evidence: I' = I (a + (1-a) e) (1: no highlight)",
    source=f"{_SOURCE}, Eq. 4 and official config (alpha 0.5)", low=0.0, high=1.0, short="a", symbol="α")
VEA_SIGMA = Hyperparameter(
    "vea_sigma", float, 0.5, "VEA smoothing of the evidence map: a Gaussian of sigma x the short side of the "
    "model's input image (sigma <= 1) or of sigma pixels (> 1); 0: no smoothing",
    source=f"{_SOURCE}, Eq. 3 and official smooth() (0.5)", low=0.0, short="s", symbol="σ")
VEA_LAMBDA = Hyperparameter(
    "vea_lambda", float, 10.0, "VEA denoising: a token above lambda x its largest 8-neighbour takes their mean "
    "(off: no denoising)", source=f"{_SOURCE}, Eq. 2 (lambda 10)", low=1.0, specials=("off",), symbol="λ")
VEA_HINT = Hyperparameter(
    "vea_hint", bool, True, "VEA: put the highlight hint before the question (--no-vea-hint: the plain question)",
    source=f"{_SOURCE}, the VEA prompt", grid=False)
VEA_LAYERS = LayersHyperparameter(
    "vea_layers", str, "auto", "VEA attribution layers: auto (the published set for the model, else profiled), "
    "profile, all, or indices joined by + such as 14+15+17+19", source=f"{_SOURCE}, profiled layers (LLaVA-1.5-7B "
    "14+15+17+19, 13B 13+14+15+16, Qwen2.5-VL-7B 18+22+24, 32B 49-53+55+56); else top ceil(0.1 L) by AUROC")
VEA_PROFILE = Hyperparameter(
    "vea_profile", str, "Synthetic_Controlled_A", "VEA: dataset whose val split profiles the layers when they "
    "are neither given nor published (boxes from --vea-boxes)", source="choice: exact boxes and no download (the "
    "paper profiles on 100 TextVQA samples with Visual-CoT boxes)", grid=False)
VEA_BOXES = Hyperparameter(
    "vea_boxes", str, "sidecar", "VEA: evidence boxes of the profiling samples: sidecar (the synthetic scenes' "
    "own) or a boxes JSON (schema in dataset_zoo/boxes.py)", grid=False)
VEA_ROOT = Hyperparameter(
    "vea_root", str, "data", "VEA: data root of the profiling dataset (the same folder as the data root, usually); layer profiles "
    "are cached in <root>/vea_profiles/", grid=False)


@dataclass(frozen=True)
class VEAAnswer:
    """One sample's VEA outcome: the answer, the baseline's first-token confidence (from the attribution
    pass), the answer's own first-token confidence, and how the attribution layers were chosen."""

    text: str
    confidence: float
    vea_confidence: float
    layers: tuple[int, ...]
    layer_source: str
    hint: bool

    def fields(self) -> dict:
        return {"confidence": self.confidence, "vea_confidence": self.vea_confidence, "vea_layers": list(self.layers),
                "vea_layer_source": self.layer_source, "vea_hint": self.hint}


@dataclass(frozen=True)
class VEA:
    """VEA's settings (see the module docstring); `run(vlm, images, questions, max_new_tokens)`.

    lam: None (or "off") for no denoising. layers: "auto", "profile", "all", "i+j+k" or a sequence of ints;
    profile: where "auto"/"profile" profile a model that has no published layer set.
    """

    alpha: float = VEA_ALPHA.default
    sigma: float = VEA_SIGMA.default
    lam: Optional[float] = VEA_LAMBDA.default
    hint: bool = VEA_HINT.default
    layers: str = VEA_LAYERS.default
    profile: ProfileSource = field(default_factory=ProfileSource)

    def __post_init__(self):
        layers = self.layers if isinstance(self.layers, str) else "+".join(str(int(i)) for i in self.layers)
        lam = VEA_LAMBDA.check("off" if self.lam is None else self.lam)
        object.__setattr__(self, "alpha", VEA_ALPHA.check(self.alpha))
        object.__setattr__(self, "sigma", VEA_SIGMA.check(self.sigma))
        object.__setattr__(self, "lam", None if lam == "off" else lam)
        object.__setattr__(self, "hint", VEA_HINT.check(self.hint))
        object.__setattr__(self, "layers", VEA_LAYERS.check(layers))

    @classmethod
    def of(cls, values: dict) -> "VEA":
        return cls(values["vea_alpha"], values["vea_sigma"], values["vea_lambda"], values["vea_hint"],
                   values["vea_layers"], ProfileSource(values["vea_profile"], values["vea_boxes"], values["vea_root"]))

    def to_dict(self) -> dict:
        """The settings under their hyper-parameter names (as config.json records them)."""
        return {"method": "vea", "vea_alpha": self.alpha, "vea_sigma": self.sigma,
                "vea_lambda": "off" if self.lam is None else self.lam, "vea_hint": self.hint,
                "vea_layers": self.layers, "vea_profile": self.profile.dataset, "vea_boxes": self.profile.boxes,
                "vea_root": self.profile.root}

    def run(self, vlm, images, questions: Sequence[str], *, max_new_tokens: int = 10,
            inputs=None) -> list[VEAAnswer]:
        """VEA answers to `questions` about `images` (one each); `inputs`: the plain prompts already prepared."""
        plain = [vlm.build_prompt(question) for question in questions]
        hinted = [vlm.build_prompt(with_hint(question)) for question in questions]
        return answer_batch(vlm, images, plain, hinted, [self], max_new_tokens, inputs)[self]


def with_hint(question: str) -> str:
    return f"{HINT} {question}"


def hinted_prompt(vlm, sample) -> str:
    """A sample's prompt with the hint: built from its question, or, for the original prompt files used
    verbatim (`--prompt-dir`), inserted after their "USER:"."""
    if vlm.prompt_format != "paper" or sample.paper_prompt is None:
        return vlm.build_prompt(with_hint(sample.question), None)
    hinted, found = re.subn(r"(USER:\s*)", lambda m: m.group(1) + HINT + " ", sample.paper_prompt, count=1)
    if not found:
        raise ToolkitError(f"sample {sample.id}: the verbatim prompt has no 'USER:' to put the VEA hint after; "
                           f"use --no-vea-hint or the toolkit's prompts (no --prompt-dir)")
    return hinted


def answer_batch(vlm, images, plain_prompts, hinted_prompts, settings: Sequence[VEA], max_new_tokens: int,
                 inputs=None) -> dict:
    """{VEA setting: [VEAAnswer per row]} for one batch: one attribution pass, one answer pass per setting."""
    from intervention.capture import generate_at  # torch: imported when a batch is answered

    inputs = vlm.prepare(images, plain_prompts) if inputs is None else inputs
    layers = {s: resolve_layers(vlm, s.layers, s.profile) for s in settings}
    captured, confidence = attribute(vlm, inputs, images)
    hinted = None
    if any(setting.hint for setting in settings):
        hinted = hinted_inputs(vlm, inputs, images, plain_prompts, hinted_prompts)
    maps = EvidenceMaps(captured)
    answers = {}
    for setting in settings:
        chosen, how = layers[setting]
        prepared = hinted if setting.hint else inputs
        if setting.alpha < 1.0:
            prepared = {**prepared, "pixel_values": maps.highlighted(vlm, prepared, setting, chosen)}
        generation = generate_at(vlm, prepared, max_new_tokens=max_new_tokens)
        answers[setting] = [VEAAnswer(text, base, float(own), chosen, how, setting.hint) for text, base, own in
                            zip(generation.texts, confidence, generation.confidence.float().cpu().tolist())]
    return answers


# Keys of prepared inputs that depend on the images alone (the rest comes from the text).
IMAGE_KEYS = ("pixel_values", "image_sizes", "image_grid_thw")
TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


def hinted_inputs(vlm, inputs, images, plain_prompts, hinted_prompts) -> dict:
    """`vlm.prepare(images, hinted_prompts)` without preprocessing the images again (on a Qwen-sized image
    that costs a fifth of a baseline answer): the hinted text is tokenised with each image placeholder
    expanded to the row's image-token count, as the processor does, and the image tensors of the plain
    batch are reused. The same route must first reproduce the plain batch's own text tensors exactly;
    where it does not (a processor that lays out text differently), the processor runs as usual."""
    counts = (inputs["input_ids"] == vlm.image_token_id).sum(dim=1).tolist()
    known = set(IMAGE_KEYS) | set(TEXT_KEYS)
    if set(inputs.keys()) <= known:
        plain = _text_inputs(vlm, plain_prompts, counts, inputs)
        if plain.keys() == set(inputs.keys()) - set(IMAGE_KEYS) and all(plain[k].equal(inputs[k]) for k in plain):
            return {**inputs, **_text_inputs(vlm, hinted_prompts, counts, inputs)}
    return vlm.prepare(images, hinted_prompts)


def _text_inputs(vlm, prompts, counts, like) -> dict:
    """The text tensors of `prompts` (one image each, of `counts` tokens), laid out like the batch `like`."""
    expanded = [prompt.replace(vlm.image_token, vlm.image_token * count, 1) for prompt, count in zip(prompts, counts)]
    text = vlm.processor.tokenizer(expanded, padding=True, return_tensors="pt")
    found = {key: text[key].to(like["input_ids"].device) for key in ("input_ids", "attention_mask")}
    if "mm_token_type_ids" in like:  # 1 on image tokens (Qwen's processors; videos would be 2)
        found["mm_token_type_ids"] = (found["input_ids"] == vlm.image_token_id).to(like["mm_token_type_ids"].dtype)
    return found


class EvidenceMaps:
    """The batch's captured attention and its evidence maps, each computed once per (layers, lambda, sigma)."""

    def __init__(self, captured):
        self.captured = captured
        self._maps: dict = {}

    def highlighted(self, vlm, inputs, setting: VEA, layers: tuple[int, ...]):
        """pixel_values of `inputs` highlighted by `setting` with the evidence of `layers`."""
        key = (layers, setting.lam, setting.sigma)
        if key not in self._maps:
            self._maps[key] = [evidence_map(token_scores(sample.rows[0].image, layers), sample.geometry,
                                            setting.lam, setting.sigma) for sample in self.captured]
        factors = [view_factors(evidence, sample.geometry, setting.alpha)
                   for evidence, sample in zip(self._maps[key], self.captured)]
        return highlighted_pixels(vlm, inputs, [sample.geometry for sample in self.captured], factors)


def token_scores(image_attention, layers: tuple[int, ...]):
    """Eq. 1: (layers, heads, n_image) attention -> (n_image,) mean over heads and the chosen layers, NaN as 0."""
    return np.nan_to_num(image_attention[list(layers)].mean(axis=(0, 1)), nan=0.0)


class VEAStrategy(Strategy):
    """Every VEA configuration of a batch from one attribution pass (see `answer_batch`)."""

    name = "vea"

    def answer(self, batch, configurations: Sequence[Configuration]) -> dict:
        settings = {config: VEA.of(config.hyperparameters) for config in configurations}
        hinted = ([hinted_prompt(batch.vlm, sample) for sample in batch.samples]
                  if any(s.hint for s in settings.values()) else None)
        results = answer_batch(batch.vlm, batch.images, batch.prompts, hinted, list(dict.fromkeys(settings.values())),
                               batch.max_new_tokens, batch.inputs)
        return {config: [Answer(r.text, r.fields()) for r in results[setting]] for config, setting in settings.items()}


def _smallest_intervention(values: dict) -> tuple:
    """The least dimming first (highest alpha), then without the hint, then the gentlest map: the widest blur
    and the least denoising (the largest lambda; off before any number)."""
    lam = values["vea_lambda"]
    return (round(1.0 - values["vea_alpha"], 9), values["vea_hint"], -values["vea_sigma"],
            -(float("inf") if lam == "off" else lam), values["vea_layers"])


VEA_METHOD = register(Method(
    name="vea", title="+VEA", paper="Liu et al. 2025, Seeing but Not Believing (ICLR 2026)",
    description="dim the image where the model's evidence-grounding layers do not attend, then answer with a hint",
    hyperparameters=(VEA_ALPHA, VEA_SIGMA, VEA_LAMBDA, VEA_HINT, VEA_LAYERS, VEA_PROFILE, VEA_BOXES, VEA_ROOT),
    strategy=VEAStrategy(),
    record_fields=("confidence", "vea_confidence", "vea_layers", "vea_layer_source", "vea_hint"),
    preference=_smallest_intervention, preference_rule="the highest alpha, then without the hint, then the larger "
    "sigma, then the larger lambda (off first)", plot_x="vea_alpha", rank=80))
