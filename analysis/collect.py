"""Model mode: answer and capture every analysed sample once per configuration, streaming captures to disk.

For each batch the baseline runs first (its first-token confidence is what AdaptVis decides on), then the
chosen method at the alphas its rule gives each sample; answer and attention come from the same greedy
generation (`intervention.capture.capture`), so a heatmap always shows the attention behind the recorded
answer. Only the alpha family (base, scaling_vis, adapt_vis) changes attention in a way capture can show.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from tqdm.auto import tqdm

from analysis.store import CaptureStore
from common.errors import ToolkitError
from dataset_zoo.base import Sample
from evaluation import judge
from intervention.capture import Generation, capture, generate_at
from methods import Configuration
from methods.alpha import AlphaMethod


@dataclass
class Collection:
    """The captured samples of the baseline and (optionally) of one method configuration."""

    base: CaptureStore
    method: Optional[CaptureStore]

    def stores(self) -> list[CaptureStore]:
        return [store for store in (self.base, self.method) if store is not None]


def check_alpha_family(configuration: Configuration) -> None:
    if not isinstance(configuration.entry, AlphaMethod):
        raise ToolkitError(f"the attention analyses compare the baseline with an attention-scaling method; "
                           f"{configuration.method} is not one (use --method scaling_vis or adapt_vis)")


def sample_settings(samples: Sequence[Sample]) -> str:
    """A short hash of the analysed samples (ids and questions), part of what makes a collection reusable."""
    text = json.dumps([(s.id, s.question) for s in samples])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def prompts_for(vlm, samples: Sequence[Sample]) -> list[str]:
    return [vlm.build_prompt(s.question, s.paper_prompt) for s in samples]


def batches(samples: Sequence[Sample], size: int, what: str):
    starts = range(0, len(samples), size)
    for start in tqdm(starts, desc=what, unit="batch", leave=False):
        yield samples[start:start + size]


def collect(vlm, samples: Sequence[Sample], configuration: Optional[Configuration], root: Path, settings: dict, *,
            batch_size: int, max_new_tokens: int, match: str) -> Collection:
    """Capture the baseline and `configuration` on `samples` under `root`, or reuse a complete earlier run."""
    if configuration is not None:
        check_alpha_family(configuration)
    settings = {**settings, "samples": sample_settings(samples), "max_new_tokens": max_new_tokens, "match": match}
    base = CaptureStore(root / "base", {**settings, "configuration": "base"})
    method = None if configuration is None else CaptureStore(
        root / configuration.label(), {**settings, "configuration": configuration.label(),
                                       "values": configuration.hyperparameters})
    collection = Collection(base, method)
    if all(store.is_complete(len(samples)) for store in collection.stores()):
        return collection
    for store in collection.stores():
        store.start()
    for batch in batches(samples, batch_size, "capturing attention"):
        images = [sample.image for sample in batch]
        inputs = vlm.prepare(images, prompts_for(vlm, batch))
        sizes = [image.size for image in images]
        stock = capture(vlm, inputs, image_sizes=sizes, max_new_tokens=max_new_tokens)
        _store(base, batch, sizes, stock, [1.0] * len(batch), [{}] * len(batch), match)
        if configuration is not None:
            choices = configuration.entry.choose(configuration.hyperparameters, stock.generation.confidence)
            scaled = capture(vlm, inputs, image_sizes=sizes, alpha=[c.alpha for c in choices],
                             scope=configuration.get("scope", "prefill"), max_new_tokens=max_new_tokens)
            _store(method, batch, sizes, scaled, [c.alpha for c in choices], [c.fields or {} for c in choices],
                   match, stock.generation.confidence)
    for store in collection.stores():
        store.finish()
    return collection


def record_for(sample: Sample, size, text: str, confidence: float, alpha: float, match: str) -> dict:
    verdict = judge(text, sample, mode=match)
    return {"id": sample.id, "index": sample.index, "image": str(sample.image_path), "image_size": list(size),
            "question": sample.question, "gold": sample.answer, "relation": sample.relation,
            "options": list(sample.options), "generation": text, "prediction": verdict.prediction,
            "correct": bool(verdict.correct), "confidence": float(confidence), "alpha": float(alpha)}


def _store(store: CaptureStore, batch, sizes, result, alphas, fields, match: str, base_confidence=None) -> None:
    confidence = result.generation.confidence
    for row, (sample, size) in enumerate(zip(batch, sizes)):
        record = record_for(sample, size, result.generation.texts[row], confidence[row], alphas[row], match)
        if base_confidence is not None:
            record["confidence_base"] = float(base_confidence[row])
        store.add({**record, **fields[row]}, result.samples[row])


def answers_at(vlm, samples: Sequence[Sample], alphas: Sequence[float], *, batch_size: int, max_new_tokens: int,
               match: str, scope: str = "prefill") -> dict[float, list[dict]]:
    """{alpha: [record per sample]} of ScalingVis at each alpha (answer, correctness, first-token confidence at
    that alpha), for the alpha sweep (paper Fig. 8)."""
    found: dict[float, list[dict]] = {alpha: [] for alpha in alphas}
    for batch in batches(samples, batch_size, "alpha sweep"):
        images = [sample.image for sample in batch]
        inputs = vlm.prepare(images, prompts_for(vlm, batch))
        for alpha in alphas:
            generation: Generation = generate_at(vlm, inputs, alpha, scope, max_new_tokens)
            for row, sample in enumerate(batch):
                found[alpha].append(record_for(sample, images[row].size, generation.texts[row],
                                               generation.confidence[row], alpha, match))
    return found
