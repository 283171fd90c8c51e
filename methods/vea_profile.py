"""VEA's attribution layers (Liu et al. 2025, step A): the published sets, or profiling by AUROC; and the
attention pass both profiling and attribution (step B) read.

    layers, source = resolve_layers(vlm, "auto", ProfileSource())   # published set, else profiled (cached)
    profile = profile_layers(vlm, samples, box_source)               # LayerProfile: layers, per-layer AUROC
    captured, confidence = attribute(vlm, inputs, images)            # last prompt row, every layer and head

Profiling (the paper's step A): for each diagnostic sample, the last prompt token's head-mean attention
over the image tokens in every layer is scored with AUROC against binary token labels (a token is evidence
if its cell overlaps any evidence box: the paper's `any` rule); samples whose labels are all alike are
skipped; the AUROC is averaged over the first `PROFILE_SAMPLES` usable samples and the top ceil(0.1 L)
layers are kept. Which layers ground evidence is a property of the model, so a profile is computed once
per model and profiling source and cached as JSON in `<root>/vea_profiles/`; the cache key includes a
fingerprint of the weights, so a retrained checkpoint at the same path is profiled again.

Layer specs (`--vea-layers`): "auto" (the published set for the checkpoint, else a profile), "profile"
(always profile), "all" (every layer: the paper's "w/o profiling" ablation), or indices joined by "+"
("14+15+17+19"; "+" because a comma separates the values of a grid on the command line).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common.stats import auroc
from common.errors import ToolkitError
from model_zoo.geometry_types import ImageGeometry

logger = logging.getLogger(__name__)

# The paper's profiled layers (§B of the reference notes; official README), by hub id.
PUBLISHED_LAYERS = {
    "llava-hf/llava-1.5-7b-hf": (14, 15, 17, 19),
    "llava-hf/llava-1.5-13b-hf": (13, 14, 15, 16),
    "Qwen/Qwen2.5-VL-7B-Instruct": (18, 22, 24),
    "Qwen/Qwen2.5-VL-32B-Instruct": (49, 50, 51, 52, 53, 55, 56),
}
TOP_FRACTION = 0.1      # keep the top ceil(0.1 L) layers (paper, step A)
PROFILE_SAMPLES = 100   # "about 100" diagnostic samples (paper, step A)
PROFILE_BATCH = 8
SPECS = ("auto", "profile", "all")
_INDICES = re.compile(r"^\d+(\+\d+)*$")
CACHE_VERSION = 1


def check_layer_spec(text: str) -> str:
    """A `--vea-layers` value as given, or a ToolkitError saying what is accepted."""
    text = str(text).strip()
    if text in SPECS or _INDICES.match(text):
        return text
    raise ToolkitError(f"--vea-layers {text!r} is not auto, profile, all or layer indices joined by + "
                       f"(e.g. 14+15+17+19)")


@dataclass(frozen=True)
class ProfileSource:
    """Where layers are profiled: the val split of `dataset` under `root`, its boxes from `boxes` ("sidecar":
    the synthetic generator's; else a boxes JSON), at most `samples` usable samples."""

    dataset: str = "Synthetic_Controlled_A"
    boxes: str = "sidecar"
    root: str = "data"
    samples: int = PROFILE_SAMPLES


@dataclass(frozen=True)
class LayerProfile:
    """Mean AUROC per layer over `n_samples` usable samples, and the layers kept."""

    layers: tuple[int, ...]
    layer_auroc: tuple[float, ...]
    n_samples: int

    def to_dict(self) -> dict:
        return asdict(self)


def select_layers(mean_auroc: Sequence[float], fraction: float = TOP_FRACTION) -> tuple[int, ...]:
    """The ceil(fraction L) layers of highest mean AUROC (NaN ranks last), ascending; ties keep the deeper."""
    scores = np.nan_to_num(np.asarray(mean_auroc, dtype=float), nan=-np.inf)
    keep = max(1, math.ceil(fraction * len(scores)))
    return tuple(sorted(int(i) for i in np.argsort(scores, kind="stable")[-keep:]))


def box_mask(boxes: Sequence[tuple[int, int, int, int]], size: tuple[int, int]) -> np.ndarray:
    """(H, W) union of (x0, y0, x1, y1) pixel boxes (x1/y1 exclusive) over an image of `size` (W, H)."""
    width, height = size
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, int(y0)):max(0, int(y1)), max(0, int(x0)):max(0, int(x1))] = True
    return mask


def evidence_labels(geometry: ImageGeometry, boxes, size) -> tuple[np.ndarray, np.ndarray]:
    """(tokens with a cell, their labels): a token is evidence if its cell overlaps a box at all."""
    has_cell = geometry.token_grid >= 0
    return has_cell, geometry.coverage(box_mask(boxes, size))[has_cell] > 0


def sample_aurocs(head_mean: np.ndarray, geometry: ImageGeometry, boxes, size) -> np.ndarray | None:
    """(layers,) AUROC of each layer's (n_image,) head-mean attention against the evidence labels; None
    when the labels are all alike (AUROC undefined: the sample is skipped)."""
    has_cell, labels = evidence_labels(geometry, boxes, size)
    if labels.all() or not labels.any():
        return None
    return np.array([auroc(layer[has_cell], labels) for layer in head_mean])


def attribute(vlm, inputs, images) -> tuple[list, list[float]]:
    """The attention pass of profiling and attribution: one forward of the prompt with attention capture,
    logits of the last position only (generate's first step without its machinery: explicit position ids
    as generate builds them, no cache). Returns each row's `CapturedAttention` (image geometry attached)
    and first-token confidence."""
    import torch

    from intervention.capture import capture_attention
    from intervention.prefix import prompt_position_ids
    from model_zoo.geometry import image_geometries

    positions = prompt_position_ids(vlm, inputs, inputs["attention_mask"])
    with capture_attention(vlm) as capture, torch.inference_mode():
        logits = vlm.model(**inputs, position_ids=positions, logits_to_keep=1, use_cache=False).logits[:, -1]
    for sample, geometry in zip(capture.samples, image_geometries(vlm, inputs, [image.size for image in images])):
        sample.geometry = geometry
    confidence = torch.softmax(logits.float(), dim=-1).max(dim=-1).values
    return capture.samples, confidence.cpu().tolist()


def profile_layers(vlm, samples, box_source, limit: int = PROFILE_SAMPLES,
                   batch_size: int = PROFILE_BATCH) -> LayerProfile:
    """Profile `vlm` on the first `limit` usable `samples` (Samples with question and image), boxes from
    `box_source` (dataset_zoo.boxes)."""
    per_sample: list[np.ndarray] = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        images = [sample.image for sample in batch]
        prompts = [vlm.build_prompt(sample.question, sample.paper_prompt) for sample in batch]
        captures, _ = attribute(vlm, vlm.prepare(images, prompts), images)
        for sample, image, captured in zip(batch, images, captures):
            boxes = [named.box for named in box_source.boxes(sample, image)]
            scores = sample_aurocs(captured.rows[0].image.mean(axis=1), captured.geometry, boxes, image.size)
            if scores is not None:
                per_sample.append(scores)
        if len(per_sample) >= limit:
            break
    if not per_sample:
        raise ToolkitError(f"VEA profiling found no usable sample among {len(samples)}: each needs evidence boxes "
                           f"that cover some but not all image tokens; check the box source or give --vea-layers")
    mean = np.nanmean(np.stack(per_sample[:limit]), axis=0)
    return LayerProfile(select_layers(mean), tuple(float(v) for v in mean), min(len(per_sample), limit))


def weights_fingerprint(model) -> str:
    """A short hash of an evenly spaced sample of the input embeddings (cheap on any model size)."""
    weight = model.get_input_embeddings().weight.detach().flatten()
    step = max(1, weight.numel() // 65536)
    return hashlib.sha1(weight[::step].float().cpu().numpy().tobytes()).hexdigest()[:12]


def _cache_path(vlm, source: ProfileSource) -> Path:
    boxes = source.boxes
    if boxes != "sidecar" and Path(boxes).is_file():
        boxes = hashlib.sha256(Path(boxes).read_bytes()).hexdigest()
    key = {"version": CACHE_VERSION, "model_id": vlm.model_id, "revision": vlm.revision, "family": vlm.family,
           "weights": weights_fingerprint(vlm.model), "prompt_format": vlm.prompt_format,
           "dataset": source.dataset, "boxes": boxes, "samples": source.samples}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]", "-", f"{Path(str(vlm.name)).name}__{source.dataset}__{digest}.json")
    return Path(source.root) / "vea_profiles" / name


def cached_profile(vlm, source: ProfileSource) -> LayerProfile:
    """The layer profile of `vlm` on `source`, read from the cache or computed and written there."""
    path = _cache_path(vlm, source)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            return LayerProfile(tuple(data["layers"]), tuple(data["layer_auroc"]), data["n_samples"])
        except (ValueError, KeyError, TypeError):
            logger.warning("VEA: the cached layer profile %s is unreadable; profiling again", path)
    samples, box_source = _profiling_data(source)
    logger.info("VEA: profiling the attribution layers of %s on up to %d samples of %s (val split); cached in %s",
                vlm.name, source.samples, source.dataset, path)
    profile = profile_layers(vlm, samples, box_source, source.samples)
    _write_atomically(path, {**profile.to_dict(), "model": vlm.name, "source": asdict(source)})
    return profile


def _profiling_data(source: ProfileSource):
    from dataset_zoo import get_dataset
    from dataset_zoo.boxes import box_source_for

    if source.boxes == "sidecar" and not source.dataset.startswith("Synthetic_Controlled_"):
        raise ToolkitError(f"VEA cannot profile layers on {source.dataset}: it has no boxes of its own; give a boxes "
                           f"JSON with --vea-boxes (schema in dataset_zoo/boxes.py), or the layers with --vea-layers "
                           f"(e.g. all)")
    dataset = get_dataset(source.dataset, root=source.root, split="val")
    boxes = box_source_for(source.dataset, source.root, boxes_json=None if source.boxes == "sidecar" else source.boxes)
    return [dataset[i] for i in range(len(dataset))], boxes


def _write_atomically(path: Path, data: dict) -> None:
    """Concurrent processes may profile the same model: each writes a whole file, the last one wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as file:
        json.dump(data, file, indent=1)
    os.replace(temporary, path)


def published_layers(vlm) -> tuple[int, ...] | None:
    for name in (vlm.model_id, getattr(vlm.model.config, "name_or_path", None)):
        if name in PUBLISHED_LAYERS:
            return PUBLISHED_LAYERS[name]
    return None


# Resolved layers per loaded model (weakly keyed: a model freed by the caller drops its entries).
_RESOLVED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def resolve_layers(vlm, spec: str, source: ProfileSource) -> tuple[tuple[int, ...], str]:
    """(layers, how they were chosen: given / all / published / profiled) for a layer spec on `vlm`."""
    memo = _RESOLVED.setdefault(vlm.model, {})
    if (spec, source) not in memo:
        memo[(spec, source)] = _resolve(vlm, check_layer_spec(spec), source)
    return memo[(spec, source)]


def _resolve(vlm, spec: str, source: ProfileSource) -> tuple[tuple[int, ...], str]:
    n_layers = int(vlm.model.config.get_text_config().num_hidden_layers)
    if spec == "all":
        return tuple(range(n_layers)), "all"
    published = published_layers(vlm)
    if spec not in SPECS:
        layers, how = tuple(sorted({int(i) for i in spec.split("+")})), "given"
    elif spec == "auto" and published is not None:
        layers, how = published, "published"
    else:
        layers, how = cached_profile(vlm, source).layers, "profiled"
    outside = [layer for layer in layers if layer >= n_layers]
    if outside:
        raise ToolkitError(f"VEA layers {'+'.join(map(str, outside))} ({how}) do not exist: {vlm.name} has "
                           f"{n_layers} language-model layers (0-{n_layers - 1}); fix --vea-layers")
    return layers, how
