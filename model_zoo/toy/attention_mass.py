"""Where the last prompt token looks: the share of its image attention that falls inside the objects' boxes.

For each scene the prompt runs once with eager attention in the language model. In every layer the last
prompt token's attention row (averaged over heads) is read at the image-token positions, which LLaVA lays
out row-major over the vision patch grid (6 x 6 for the toy model), and normalised to a distribution over
patches. Each patch is weighted by the fraction of its pixels inside a box (fractional coverage, so a patch
half inside counts half), giving the *mass* inside the box; the box's *area fraction* is the share of image
pixels it covers. Enrichment = mean mass / mean area fraction over the scenes: 1 means attention ignores the
objects, 1/area (about 6 for the toy scenes) means it looks at nothing else.

Boxes are in the pixels of the original image and must be square images (the CLIP processor then only
rescales; it does not crop).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from model_zoo.toy.data import Example, prompt_for

ROLES = ("object", "anchor", "both")


@dataclass
class LayerMass:
    """Means over the scenes for one language-model layer."""

    image_share: float                       # attention of the last token on image tokens (vs text)
    mass: dict[str, float]                   # role -> share of the image attention inside the box(es)
    area: dict[str, float]                   # role -> share of image pixels inside the box(es)
    top_patch_hits: float                    # how often the most attended patch touches a box

    def enrichment(self, role: str = "both") -> float:
        return self.mass[role] / self.area[role]


@dataclass
class AttentionReport:
    layers: list[LayerMass] = field(default_factory=list)
    n: int = 0

    def middle_layers(self) -> list[int]:
        """The middle layer(s): one for an odd depth, the two central ones for an even depth >= 4, and the
        last one for a 2-layer model (its first layer still mixes text; the second is where it reads the image)."""
        depth = len(self.layers)
        if depth <= 2:
            return [depth - 1]
        return [depth // 2] if depth % 2 else [depth // 2 - 1, depth // 2]

    def middle_enrichment(self, role: str = "both") -> float:
        layers = [self.layers[i] for i in self.middle_layers()]
        return float(np.mean([layer.mass[role] for layer in layers]) / np.mean([layer.area[role] for layer in layers]))

    def to_dict(self) -> dict:
        return {"n": self.n, "middle_layers": self.middle_layers(),
                "middle_enrichment": self.middle_enrichment(),
                "layers": [{"image_share": layer.image_share, "mass": layer.mass, "area": layer.area,
                            "enrichment": {role: layer.enrichment(role) for role in ROLES},
                            "top_patch_hits": layer.top_patch_hits} for layer in self.layers]}


def box_masks(boxes: Mapping[str, Sequence[int]], image_size: int) -> dict[str, np.ndarray]:
    """Pixel masks (image_size x image_size) of the object box, the anchor box and their union."""
    masks = {}
    for role in ("object", "anchor"):
        x0, y0, x1, y1 = boxes[role]
        mask = np.zeros((image_size, image_size), dtype=bool)
        mask[y0:y1, x0:x1] = True
        masks[role] = mask
    masks["both"] = masks["object"] | masks["anchor"]
    return masks


def patch_coverage(mask: np.ndarray, grid: int) -> np.ndarray:
    """Fraction of each patch's pixels inside `mask`, row-major (grid*grid,)."""
    size = mask.shape[0]
    if size % grid:
        raise ValueError(f"image size {size} is not a multiple of the {grid}x{grid} patch grid")
    step = size // grid
    return mask.reshape(grid, step, grid, step).mean(axis=(1, 3)).reshape(-1)


def _scene_coverage(example: Example, grid: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per role: the coverage of each patch, and the share of the image's pixels inside the box(es)."""
    width, height = example.image.size
    if width != height:
        raise ValueError(f"attention mass needs square images, got {width}x{height}")
    masks = box_masks(example.boxes, width)
    return ({role: patch_coverage(mask, grid) for role, mask in masks.items()},
            {role: float(mask.mean()) for role, mask in masks.items()})


def _last_token_rows(model, inputs) -> list[torch.Tensor]:
    """Per layer: the last prompt token's head-averaged attention rows, (B, L)."""
    text_config = model.config.get_text_config()
    previous = text_config._attn_implementation
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.inference_mode():
            out = model(**inputs, output_attentions=True, logits_to_keep=1)
    finally:
        model.set_attn_implementation({"text_config": previous})
    return [layer[:, :, -1, :].mean(dim=1).float() for layer in out.attentions]


def measure_attention_mass(model, processor, examples: Sequence[Example], batch_size: int = 50) -> AttentionReport:
    """Average, per language-model layer, how the last prompt token's image attention covers the boxes."""
    image_token_id = model.config.image_token_id
    sums: list[dict] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        inputs = processor(images=[e.image for e in batch], text=[prompt_for(processor, e) for e in batch],
                           padding=True, return_tensors="pt").to(model.device)
        image_positions = inputs["input_ids"] == image_token_id
        rows = _last_token_rows(model, inputs)
        if not sums:
            sums = [{"image_share": 0.0, "hits": 0.0, "mass": dict.fromkeys(ROLES, 0.0),
                     "area": dict.fromkeys(ROLES, 0.0)} for _ in rows]
        for b, example in enumerate(batch):
            image_attention = [row[b][image_positions[b]].cpu().numpy() for row in rows]
            grid = int(round(np.sqrt(image_attention[0].shape[0])))
            coverage, area = _scene_coverage(example, grid)
            for layer, weights in zip(sums, image_attention):
                share = float(weights.sum())
                dist = weights / share
                layer["image_share"] += share
                layer["hits"] += float(coverage["both"][int(dist.argmax())] > 0)
                for role in ROLES:
                    layer["mass"][role] += float(dist @ coverage[role])
                    layer["area"][role] += area[role]
    n = len(examples)
    layers = [LayerMass(s["image_share"] / n, {r: v / n for r, v in s["mass"].items()},
                        {r: v / n for r, v in s["area"].items()}, s["hits"] / n) for s in sums]
    return AttentionReport(layers, n)
