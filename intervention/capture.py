"""Attention capture: what the last prompt token (and optionally each generated token) attends to, per layer and
head, read through the registered attention function as a `RowObserver`, only while asked.

    with capture_attention(vlm) as cap:                   # a VLM or a transformers VLM; nests with ScalingVis
        vlm.generate(inputs, max_new_tokens=10)           # or vlm.model(**inputs)
    sample = cap.samples[0]                               # one CapturedAttention per prompt row
    row = sample.rows[0]                                  # the last prompt token (then generated tokens)
    row.image          # (layers, heads, n_image) float32 post-softmax over the image keys, in image-token order
    row.text           # (layers, heads, n_text) over the other real keys (padding left out), `row.text_positions`
    row.image_logits   # (layers, heads, n_image) pre-softmax q.k * scaling, after an active ScalingVis' edit

    result = capture(vlm, inputs, image_sizes=[im.size for im in images], alpha=0.8)   # generate + capture
    result.samples[0].image_grid()   # (layers, heads, rows, cols) on the model's image-token grid
    result.generation.texts, result.generation.confidence

The numbers are the rows the model computes (the observer is handed the attention function's own logits and
float32 probabilities, an active editor's changes included), and observing never changes an output: the SDPA
result is returned untouched. Nothing runs unless a capture is active; no n x n matrix is ever built, only
the planned rows (one per layer per call). Memory: one `AttentionRow` per captured row, e.g. 32 layers x 32
heads x 576 image keys x 2 (probabilities, logits) x 4 bytes = 4.7 MB for LLaVA-1.5-7B; pass `on_sample` to
hand each finished sample away (to disk) instead of keeping it.

A prompt starts whenever the model is called without a filled cache (input_ids then give the image keys and
the prompt length); samples of the previous prompt are finished then and on exit. The prefix-sharing
session (`open_session`) feeds prompts in pieces and is not what this observes: capture `forward` or
`generate` calls.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from common.errors import ToolkitError
from intervention.lm import (Activation, hf_model, lm_attention_modules, prompt_ids, refuse_right_padding,
                             starts_sequence)
from intervention.rows import RowObserver, RowPlan
from intervention.scaling_vis import ScalingVis, validate_alpha
from model_zoo.geometry import image_geometries
from model_zoo.geometry_types import ImageGeometry


@dataclass
class AttentionRow:
    """One query position of one prompt row (see the module docstring for the arrays)."""

    position: int
    image: np.ndarray
    text: np.ndarray
    image_logits: np.ndarray
    text_positions: np.ndarray


@dataclass
class CapturedAttention:
    """Everything captured for one prompt row: `rows[0]` is the last prompt token, then generated tokens.
    `geometry` is attached by `capture` when image sizes are given."""

    row: int
    image_positions: np.ndarray
    rows: list[AttentionRow]
    geometry: Optional[ImageGeometry] = None

    def image_grid(self, step: int = 0, values: Optional[np.ndarray] = None) -> np.ndarray:
        """(layers, heads, rows, cols): `values` (default the post-softmax image attention of `rows[step]`)
        on the model's main image-token grid."""
        if self.geometry is None:
            raise ToolkitError("this capture has no image geometry; pass image_sizes to capture()")
        return self.geometry.to_grid(self.rows[step].image if values is None else values)


class AttentionObserver(RowObserver):
    """The capture's observer: plans the last prompt row (and later rows when `generated`) in every layer."""

    def __init__(self, module_layers: dict[int, int], image_token_id: int, generated: bool,
                 on_sample: Callable[[CapturedAttention], None]):
        self.module_layers = module_layers
        self.n_layers = len(set(module_layers.values()))
        self.image_token_id = image_token_id
        self.generated = generated
        self.on_sample = on_sample
        self.prompt_length: Optional[int] = None
        self._image: list[np.ndarray] = []     # per batch row: image key positions
        self._real: list[np.ndarray] = []      # per batch row: non-padding prompt key positions
        self._buffers: dict[tuple[int, int], list] = {}
        self._plans: dict = {}

    def start_prompt(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> None:
        self.finish()
        ids = input_ids.detach().cpu()
        real = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask.detach().cpu().bool()
        self.prompt_length = ids.shape[1]
        self._image = [torch.nonzero(row == self.image_token_id).flatten().numpy() for row in ids]
        self._real = [torch.nonzero(mask).flatten().numpy() for mask in real]
        self._plans.clear()

    def plan(self, module, batch_size: int, q_len: int, kv_len: int, device) -> RowPlan | None:
        if self.prompt_length is None:
            return None
        key = (batch_size, q_len, kv_len, str(device))
        if key not in self._plans:
            positions = torch.arange(kv_len - q_len, kv_len, device=device)
            first = self.prompt_length - 1
            wanted = positions >= first if self.generated else positions == first
            query_rows = torch.nonzero(wanted).flatten()
            self._plans[key] = None if query_rows.numel() == 0 else RowPlan(
                torch.arange(batch_size, device=device), query_rows, positions[query_rows])
        return self._plans[key]

    def observe(self, module, logits: torch.Tensor, probs: torch.Tensor, plan: RowPlan) -> None:
        if len(self._image) != logits.shape[0]:
            raise ToolkitError(f"the prompt had {len(self._image)} rows but attention runs on {logits.shape[0]}; "
                               f"capture does not support beam search or num_return_sequences > 1")
        layer = self.module_layers[id(module)]
        probs, logits = probs.detach().float().cpu().numpy(), logits.detach().float().cpu().numpy()
        kv_len = probs.shape[-1]
        for j, position in enumerate(plan.row_positions.tolist()):
            for b in range(probs.shape[0]):
                image = self._image[b]
                text = np.setdiff1d(np.concatenate([self._real[b], np.arange(self.prompt_length, kv_len)]), image)
                slots = self._buffers.setdefault((b, position), [None] * self.n_layers)
                row_probs, row_logits = probs[b, :, j], logits[b, :, j]            # (heads, keys)
                slots[layer] = (row_probs[:, image], row_probs[:, text], row_logits[:, image], text)

    def finish(self) -> None:
        """Hand every complete sample of the current prompt to `on_sample`, in batch-row order."""
        by_row: dict[int, list[AttentionRow]] = {}
        for (b, position), slots in sorted(self._buffers.items()):
            if any(slot is None for slot in slots):
                raise ToolkitError(f"attention capture saw {sum(s is not None for s in slots)} of {self.n_layers} "
                                   f"language-model layers for position {position}; some layers did not run the "
                                   f"toolkit's attention function")
            by_row.setdefault(b, []).append(AttentionRow(
                position, np.stack([s[0] for s in slots]), np.stack([s[1] for s in slots]),
                np.stack([s[2] for s in slots]), slots[0][3]))
        self._buffers.clear()
        for b, captured in by_row.items():
            self.on_sample(CapturedAttention(b, self._image[b], captured))


class capture_attention:
    """Context manager capturing attention rows of a model (see the module docstring).

    generated: also capture each generated token's row (decode steps), not only the last prompt token's.
    on_sample: called with each finished `CapturedAttention`; default: kept in `self.samples`.
    """

    def __init__(self, model_or_vlm, generated: bool = False,
                 on_sample: Optional[Callable[[CapturedAttention], None]] = None):
        self.model = hf_model(model_or_vlm)
        self.generated = generated
        self.samples: list[CapturedAttention] = []
        self._on_sample = on_sample or self.samples.append
        self.observer: Optional[AttentionObserver] = None
        self._activation: Optional[Activation] = None

    def __enter__(self) -> "capture_attention":
        token_id = getattr(self.model.config, "image_token_id", None)
        if token_id is None:
            raise ToolkitError(f"{type(self.model).__name__} has no config.image_token_id; attention capture needs "
                               f"it to find image tokens")
        self.observer = AttentionObserver(lm_attention_modules(self.model), int(token_id), self.generated,
                                          self._on_sample)
        self._activation = Activation(self.model, self.observer, lambda hooks: hooks.append(
            self.model.register_forward_pre_hook(self._observe_call, with_kwargs=True)))
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None:
                self.observer.finish()
        finally:
            self._activation.close()
            self._activation = None

    def _observe_call(self, module, args, kwargs) -> None:
        if not starts_sequence(kwargs):
            return
        input_ids = prompt_ids(args, kwargs)
        if input_ids is None:
            raise ToolkitError("attention capture needs input_ids to locate image tokens; call the model with "
                               "input_ids, not inputs_embeds")
        refuse_right_padding(kwargs.get("attention_mask"), "attention capture reads the last prompt position")
        self.observer.start_prompt(input_ids, kwargs.get("attention_mask"))


@dataclass
class Generation:
    """A greedy generation: the new token ids, their text, and the first generated token's logits (B, vocab)."""

    new_tokens: torch.Tensor
    texts: list[str]
    first_logits: torch.Tensor = field(repr=False)

    @property
    def confidence(self) -> torch.Tensor:
        """(B,) max softmax probability of the first generated token (AdaptVis' confidence at this alpha)."""
        return torch.softmax(self.first_logits.float(), dim=-1).max(dim=-1).values


def generate_at(vlm, inputs, alpha: float | Sequence[float] | torch.Tensor = 1.0, scope: str = "prefill",
                max_new_tokens: int = 1) -> Generation:
    """Greedy generation of a prepared batch under ScalingVis at `alpha` (the stock model when it is 1)."""
    alpha = validate_alpha(alpha)
    extra = dict(output_logits=True, return_dict_in_generate=True)
    if bool((torch.as_tensor(alpha) != 1.0).any()):
        with ScalingVis(vlm, alpha=alpha, scope=scope):
            out = vlm.generate_ids(inputs, max_new_tokens, **extra)
    else:
        out = vlm.generate_ids(inputs, max_new_tokens, **extra)
    n = inputs["input_ids"].shape[1]
    return Generation(out.sequences[:, n:], vlm.decode_new_tokens(out.sequences, n), out.logits[0])


@dataclass
class CaptureResult:
    """What `capture` returns: one `CapturedAttention` per row and the generation they were captured in."""

    samples: list[CapturedAttention]
    generation: Generation


def capture(vlm, inputs, *, image_sizes: Optional[Sequence[tuple[int, int]]] = None,
            alpha: float | Sequence[float] | torch.Tensor = 1.0, scope: str = "prefill",
            max_new_tokens: int = 1, generated: bool = False) -> CaptureResult:
    """Greedy generation of a prepared batch (under ScalingVis at `alpha`) with attention captured: answering
    and capturing in one pass. `image_sizes` (original (width, height) per row) attaches each sample's image
    geometry."""
    with capture_attention(vlm, generated=generated) as cap:
        generation = generate_at(vlm, inputs, alpha, scope, max_new_tokens)
    if image_sizes is not None:
        for sample, geometry in zip(cap.samples, image_geometries(vlm, inputs, image_sizes)):
            sample.geometry = geometry
    return CaptureResult(cap.samples, generation)
