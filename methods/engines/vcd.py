"""VCD, Visual Contrastive Decoding (Leng et al., CVPR 2024): contrast the model's logits with those it
gives for a diffusion-noised copy of the image, at every decoding step.

    from methods.vcd import VCD
    answers = VCD(alpha=1.0, beta=0.1, noise_step=500).run(vlm, inputs, max_new_tokens=10)
    answers[0].text, answers[0].confidence, answers[0].head_size

At step t, with l = logits(y | v, x, y<t) and l' = logits(y | v', x, y<t) (the paper's VCD and adaptive
plausibility equations; vcd_sample.py):

    V_head = {y : l(y) >= log(beta) + max_w l(w)}          the adaptive plausibility constraint (APC), on
                                                          raw logits as vcd_sample.py (= p >= beta * max p)
    z(y) = (1 + alpha) l(y) - alpha l'(y) on V_head, -inf elsewhere; the next token is argmax z (greedy,
    the default) or a sample of softmax(z) (`sample=True`: VCD's temperature 1, top-p 1, no top-k).

The noised image v' is forward diffusion of the processor's normalised pixel values (vcd_add_noise.py):
x' = sqrt(abar_T) x + sqrt(1 - abar_T) eps, eps ~ N(0, I), beta_t = sigmoid(linspace(-6, 6, 1000)) (5e-3 -
1e-5) + 1e-5, abar_T = prod_{t <= T} (1 - beta_t). It acts on pixel_values elementwise, so Qwen's
flattened patches get it too, with the same image_grid_thw (one noise draw shared by the copies of a
still image that Qwen's processor stacks in time, see `_standard_noise`).

Mechanism (why a logits processor): the clean branch is stock `generate`; `VCDProcessor` runs the noised
branch alongside it, the classifier-free-guidance pattern: at the first step it runs the noised prompt
(vision tower included) into a cache of its own, at every later step it feeds the token generate chose,
with the same attention mask and explicit position ids (`intervention.prefix.prompt_position_ids`, then
+1 per step as generate does). The two caches share nothing (tests/test_vcd.py checks). A neutral
setting (alpha = 0) is then the baseline token for token, and the VCD scores come from one place.

Noise seeding (a choice; the original draws fresh noise per image from the global generator, so an
image's noise depends on the run order): each image's noise comes from a generator seeded with
crc32(every 7th of its pixel values, cd_seed), so answers are deterministic given the seed, the same in any batch or
order, and different images get different noise. LLaVA-NeXT's tiles are seeded one by one (a batch pads
them with zero tiles, which the model drops).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import torch
from transformers import BatchFeature

from intervention import compat
from intervention.compat import TransformersChanged
from intervention.prefix import prompt_position_ids
from methods.engines.decoding import ScoreProcessor, generate_scored
from methods.vcd import CD_ALPHA, CD_BETA, CD_SEED, DIFFUSION_STEPS, NOISE_STEP, SAMPLE

HASH_STRIDE = 7  # the noise seed hashes every 7th pixel value: as distinctive as all of them, 7x cheaper


@dataclass(frozen=True)
class VCDAnswer:
    """One sample's VCD outcome: the text, the clean first-token confidence, and how many candidates the
    plausibility constraint left at the first answer token (1: VCD cannot change it)."""

    text: str
    confidence: float
    head_size: int

    def to_dict(self) -> dict:
        return asdict(self)


def noise_schedule(step: int) -> tuple[float, float]:
    """(sqrt(abar_T), sqrt(1 - abar_T)) of vcd_add_noise.py at 0-based step T (float32, as the original)."""
    betas = torch.sigmoid(torch.linspace(-6, 6, DIFFUSION_STEPS)) * (0.5e-2 - 1e-5) + 1e-5
    abar = torch.cumprod(1 - betas, dim=0)[step]
    return float(abar.sqrt()), float((1 - abar).sqrt())


def plausible(logits: torch.Tensor, beta: float) -> torch.Tensor:
    """The APC's V_head as a mask: l >= log(beta) + max l (beta = 0 keeps every token)."""
    floor = math.log(beta) if beta > 0 else -math.inf
    return logits >= logits.max(dim=-1, keepdim=True).values + floor


def vcd_scores(logits: torch.Tensor, noised: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """(1 + alpha) l - alpha l' on V_head, -inf elsewhere (vcd_sample.py)."""
    contrast = (1 + alpha) * logits - alpha * noised
    return contrast.masked_fill(~plausible(logits, beta), -math.inf)


def noised_pixel_values(vlm, inputs: BatchFeature, step: int, seed: int) -> torch.Tensor:
    """The processor's pixel values after `step` diffusion steps, each image seeded by its content and `seed`."""
    pixels = inputs["pixel_values"]
    keep, noise = noise_schedule(step)
    clean = pixels.detach().float().cpu().contiguous()  # a CPU generator: the same noise on every device
    noised = torch.empty_like(clean)
    keep = torch.tensor(keep)
    for image, target in zip(_images(vlm, clean, inputs), _images(vlm, noised, inputs)):
        # noise * eps + keep * x in one pass (eps broadcast over Qwen's temporal copies)
        torch.addcmul(_standard_noise(image, seed).mul_(noise), image, keep, out=target)
    return noised.to(device=pixels.device, dtype=pixels.dtype)


def _images(vlm, pixels: torch.Tensor, inputs: BatchFeature) -> list[torch.Tensor]:
    """Views of `pixels`, one per image (or LLaVA-NeXT tile): (channels, height, width); for Qwen, the
    image's patch rows as (patches, channels, temporal copies, patch pixels), the processor's row layout."""
    if pixels.dim() != 2:
        return list(pixels.reshape(-1, *pixels.shape[-3:]))
    image_processor = vlm.processor.image_processor
    frames, patch = image_processor.temporal_patch_size, image_processor.patch_size
    channels = pixels.shape[-1] // (frames * patch * patch)
    chunks = torch.split(pixels, inputs["image_grid_thw"].prod(dim=-1).tolist())
    return [chunk.view(len(chunk), channels, frames, patch * patch) for chunk in chunks]


def _standard_noise(image: torch.Tensor, seed: int) -> torch.Tensor:
    """N(0, I) noise for one image from a generator seeded with crc32(every HASH_STRIDE-th value, seed).

    Qwen's processor repeats a still image over `temporal_patch_size` frames; the noise is drawn once
    and broadcast over those copies, so the model sees a noised image (independent noise per copy would
    partly average out in the patch embedding, a weaker distortion at the same step)."""
    shape = image.shape
    if image.dim() == 4:
        if not all(torch.equal(image[:, :, 0], image[:, :, k]) for k in range(1, image.shape[2])):
            raise TransformersChanged("the layout of Qwen's pixel patches (the temporal copies of an image differ)")
        shape = (*image.shape[:2], 1, image.shape[3])
    sample = image.reshape(-1)[::HASH_STRIDE].contiguous()
    generator = torch.Generator().manual_seed(zlib.crc32(sample.numpy(), seed))
    return torch.randn(shape, generator=generator)


class VCDProcessor(ScoreProcessor):
    """VCD scores for generate: runs the noised branch in its own cache, one step behind generate's
    choices (see the module docstring). `forwards` counts the noised branch's forwards."""

    def __init__(self, vlm, inputs: BatchFeature, noised_pixels: torch.Tensor, alpha: float, beta: float,
                 repetition_penalty: float = 1.0):
        super().__init__(repetition_penalty)
        self.vlm, self.alpha, self.beta = vlm, alpha, beta
        self.prompt = {**inputs, "pixel_values": noised_pixels}
        self.mask = inputs["attention_mask"]
        self.positions = prompt_position_ids(vlm, inputs, self.mask)
        self.cache = None
        self.fed = 0  # tokens of the sequence already in the noised cache
        self.forwards = 0
        self.head_size: torch.Tensor | None = None

    def scores(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        noised = self.noised_logits(input_ids)
        if self.head_size is None:
            self.head_size = plausible(logits, self.beta).sum(dim=-1)
        return vcd_scores(logits, noised, self.alpha, self.beta)

    def noised_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """l' for the last position of `input_ids`: the noised prompt first, then each new token."""
        model = self.vlm.model
        if self.cache is None:
            out = model(**self.prompt, position_ids=self.positions, use_cache=True, logits_to_keep=1)
            self.cache = compat.output_cache(out)
        else:
            new = input_ids[:, self.fed:]
            steps = torch.arange(1, new.shape[1] + 1, device=self.positions.device) + (self.fed - self.prompt_length)
            self.mask = torch.cat([self.mask, torch.ones_like(new, dtype=self.mask.dtype)], dim=-1)
            out = model(input_ids=new, attention_mask=self.mask, position_ids=self.positions[..., -1:] + steps,
                        use_cache=True, logits_to_keep=1, **{compat.cache_kwarg(model): self.cache})
        self.fed = input_ids.shape[1]
        self.forwards += 1
        return out.logits[:, -1].float().to(input_ids.device)

    @property
    def prompt_length(self) -> int:
        return self.prompt["input_ids"].shape[1]


class VCD:
    """VCD(alpha=1.0, beta=0.1, noise_step=500, seed=55, sample=False); `run(vlm, inputs, max_new_tokens)`.

    The clean branch keeps the checkpoint's repetition penalty (Qwen2-VL-Instruct: 1.05), applied after
    the contrast as vcd_sample.py does; the supported LLaVA checkpoints set none.
    """

    name = "vcd"

    def __init__(self, alpha: float = CD_ALPHA.default, beta: float = CD_BETA.default,
                 noise_step: int = NOISE_STEP.default, seed: int = CD_SEED.default, sample: bool = SAMPLE.default):
        self.alpha, self.beta = CD_ALPHA.check(alpha), CD_BETA.check(beta)
        self.noise_step, self.seed = NOISE_STEP.check(noise_step), CD_SEED.check(seed)
        self.sample = SAMPLE.check(sample)

    @classmethod
    def of(cls, values: dict) -> "VCD":
        return cls(values["cd_alpha"], values["cd_beta"], values["noise_step"], values["cd_seed"], values["sample"])

    def to_dict(self) -> dict:
        return {"method": self.name, "cd_alpha": self.alpha, "cd_beta": self.beta, "noise_step": self.noise_step,
                "cd_seed": self.seed, "sample": self.sample}

    def __repr__(self) -> str:
        return (f"VCD(alpha={self.alpha}, beta={self.beta}, noise_step={self.noise_step}, seed={self.seed}, "
                f"sample={self.sample})")

    def processor(self, vlm, inputs: BatchFeature, noised_pixels: torch.Tensor | None = None) -> VCDProcessor:
        if noised_pixels is None:
            noised_pixels = noised_pixel_values(vlm, inputs, self.noise_step, self.seed)
        penalty = float(vlm.model.generation_config.repetition_penalty or 1.0)
        return VCDProcessor(vlm, inputs, noised_pixels, self.alpha, self.beta, penalty)

    def run(self, vlm, inputs: BatchFeature, max_new_tokens: int,
            noised_pixels: torch.Tensor | None = None) -> list[VCDAnswer]:
        """VCD answers of one prepared batch (`noised_pixels`: reuse this batch's noised pixel values)."""
        processor = self.processor(vlm, inputs, noised_pixels)
        new_tokens = generate_scored(vlm, inputs, processor, max_new_tokens, sample=self.sample, seed=self.seed)
        texts = vlm.decode_new_tokens(new_tokens, 0)
        return [VCDAnswer(text, float(confidence), int(size))
                for text, confidence, size in zip(texts, processor.confidence, processor.head_size)]
