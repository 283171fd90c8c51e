"""The toy model before training: a tiny LLaVA-1.5 (CLIP vision tower, Llama language model) whose
initialisation lets it learn spatial relations on 2 CPU cores.

Two departures from the transformers defaults decide whether training works at all (measured in
shared notes on this hardware; both are needed):
* **Language model and projector init std 1/sqrt(hidden)** (0.088 at hidden 128) instead of
  `initializer_range=0.02`. The default is tuned for hidden sizes in the thousands; at 128 it leaves the
  query-key logits near zero, every token attends uniformly, and training sits at chance (25 %) for
  thousands of steps (a saddle plateau).
* **2-D sin-cos vision position embeddings** instead of random ones: each patch starts with an embedding
  of its row and column, so "where" is available from step 0 rather than learned from scratch; this makes
  the escape from chance fast and reliable across seeds.
The vision tower is a single CLIP layer read, as LLaVA-1.5 does, at the penultimate hidden state
(`vision_feature_layer=-2`), which here is the patch embeddings: every image token describes its own
16 x 16 patch and where it is, nothing more. The relation between the two objects must then be worked out
by the language model's attention to the image tokens, which is the attention the toolkit measures and
intervenes on. Measured: with a 2-layer tower feeding its last layer, the image tokens already carry the
answer, and the last prompt token's attention in the middle layer put only 2.4x the boxes' area share on
the boxes; with local features and a 4-layer language model it is 3.2x (layers 1-2), at the same accuracy.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from model_zoo.tiny import build_tiny_vlm
from model_zoo.toy.data import vocabulary


@dataclass(frozen=True)
class Architecture:
    """Sizes of the toy model. 96 px images with 16 px patches give a 6 x 6 grid of 36 image tokens."""

    hidden: int = 128
    lm_layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    vision_hidden: int = 64
    vision_layers: int = 1
    image_size: int = 96
    patch_size: int = 16
    vision_feature_layer: int = -2

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)


def build_toy_model(arch: Architecture = Architecture(), seed: int = 0):
    """A freshly initialised toy LLaVA and its processor (word-level tokenizer over `data.vocabulary()`)."""
    model, processor = build_tiny_vlm(
        "llava", seed=seed, words=vocabulary(), lm_layers=arch.lm_layers, hidden=arch.hidden, heads=arch.heads,
        kv_heads=arch.kv_heads, vision_layers=arch.vision_layers, vision_hidden=arch.vision_hidden,
        image_size=arch.image_size, patch_size=arch.patch_size, vision_feature_layer=arch.vision_feature_layer,
        text_config={"initializer_range": 1 / math.sqrt(arch.hidden)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        scale_language_init(model, std=1 / math.sqrt(arch.hidden))
    set_sincos_positions(model, arch.grid)
    return model, processor


def scale_language_init(model, std: float) -> None:
    """Re-draw the language model, LM head and projector weights with `std` (biases zero, norms untouched)."""
    parts = (model.model.language_model, model.model.multi_modal_projector, model.lm_head)
    with torch.no_grad():
        for part in parts:
            for module in part.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    module.weight.normal_(0.0, std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    module.bias.zero_()


def sincos_table(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) 2-D sin-cos embeddings, row-major: half the channels encode the row, half the column."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}")
    quarter = dim // 4
    freqs = 1.0 / (10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * freqs.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


def set_sincos_positions(model, grid: int) -> None:
    """Overwrite the CLIP patch position embeddings with the sin-cos table (the class token keeps its own)."""
    table = model.model.vision_tower.embeddings.position_embedding.weight
    if table.shape[0] != grid * grid + 1:
        raise ValueError(f"expected {grid * grid + 1} vision positions (class token + {grid}x{grid}), "
                         f"got {table.shape[0]}")
    with torch.no_grad():
        table[1:] = sincos_table(grid, table.shape[1])
