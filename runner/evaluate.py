"""The evaluation loop: every pending sample once through the model, every configuration answered from it.

One batch = one call of `methods.answer` for every configuration of the invocation: each method's
strategy answers all its configurations together (the alpha family shares one prompt prefix per
sample, computes the first-token confidence at alpha = 1 once, and generates each distinct alpha a
sample needs once). Records go to each configuration's own `samples.jsonl` after every batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, Sequence

import torch
from tqdm.auto import tqdm

import methods
from dataset_zoo.base import Sample
from methods import Answer, Configuration
from runner.config import RunConfig
from scoring import judge

if TYPE_CHECKING:
    from runner.records import RunFolder


@dataclass
class PendingRun:
    """One configuration being evaluated: where its records go and which samples it still needs.

    spec: the configuration as its folder names it; answering: the one that answers (equal, except that
    an auto threshold is replaced by its value)."""

    spec: Configuration
    folder: "RunFolder"  # this process's view: its own part file when sharded
    done_ids: set[str]
    answering: Configuration
    n_correct: int = 0
    n_seen: int = 0

    def needs(self, sample: Sample) -> bool:
        return sample.id not in self.done_ids


def sample_record(sample: Sample, prompt: str, answer: Answer, match: str) -> dict:
    """The samples.jsonl line of one sample under one configuration: the sample, the generation and its
    verdict, then the fields the method adds (e.g. confidence, alpha, branch)."""
    verdict = judge(answer.text, sample, match)
    record = {"id": sample.id, "index": sample.index, "question": sample.question, "prompt": prompt,
              "generation": answer.text, "prediction": verdict.prediction, "gold": sample.answer,
              "correct": verdict.correct, "relation": sample.relation}
    if verdict.score is not None:  # short answers: the VQA accuracy behind `correct` (full credit)
        record["score"] = verdict.score
    return {**record, **answer.fields}


def evaluate_samples(vlm, samples: Sequence[Sample], runs: Sequence[PendingRun], config: RunConfig,
                     batches: Iterable[tuple[list[Sample], list]]) -> None:
    """Run every batch through the model once and append each configuration's records."""
    # A context manager, so the bar is closed (its line ended) before an error or Ctrl-C is reported:
    # the message then starts on its own line.
    with tqdm(total=len(samples), desc=f"{config.dataset} x {len(runs)} config(s)", unit="sample",
              dynamic_ncols=True) as progress:
        for batch, images in batches:
            prompts = batch_prompts(vlm, batch)
            answers = methods.answer(vlm, batch, images, prompts, [run.answering for run in runs],
                                     max_new_tokens=config.max_new_tokens)
            for run in runs:
                records = [sample_record(sample, prompt, answer, config.match)
                           for sample, prompt, answer in zip(batch, prompts, answers[run.answering])
                           if run.needs(sample)]
                run.folder.append(records)
                run.done_ids.update(r["id"] for r in records)
                run.n_seen += len(records)
                run.n_correct += sum(r["correct"] for r in records)
            progress.update(len(batch))
            progress.set_postfix_str(running_accuracy(runs), refresh=False)


def batch_prompts(vlm, batch: Sequence[Sample]) -> list[str]:
    return [vlm.build_prompt(s.question, s.paper_prompt) for s in batch]


def confidence_pass(vlm, samples: Sequence[Sample], config: RunConfig) -> dict[str, float]:
    """The alpha = 1 first-token confidence of every sample by id, batched as an evaluation would be.

    Costs one prompt forward per batch (the session's prefix); no answer is generated.
    """
    from intervention.session import open_session

    confidence: dict[str, float] = {}
    batches = iterate_batches(samples, config.batch_size, config.num_workers)
    with tqdm(batches, total=-(-len(samples) // config.batch_size), desc="confidences", unit="batch",
              dynamic_ncols=True) as progress:
        for batch, images in progress:
            inputs = vlm.prepare(images, batch_prompts(vlm, batch))
            session = open_session(vlm, inputs, max_new_tokens=config.max_new_tokens)
            confidence.update(zip((s.id for s in batch), session.confidence.float().cpu().tolist()))
    return confidence


def running_accuracy(runs: Sequence[PendingRun]) -> str:
    """Accuracy so far for the progress bar: one value, or the range over a grid."""
    accuracies = [run.n_correct / run.n_seen for run in runs if run.n_seen]
    if not accuracies:
        return ""
    if len(accuracies) == 1:
        return f"acc={accuracies[0]:.3f}"
    return f"acc={min(accuracies):.3f}-{max(accuracies):.3f}"


def iterate_batches(samples: Sequence[Sample], batch_size: int, num_workers: int,
                    transform: Optional[Callable] = None) -> Iterator[tuple[list, list]]:
    """(samples, RGB images) per batch; images are read by `num_workers` loader processes and passed through
    `transform(sample, image)` when given (a visual prompt)."""
    loader = torch.utils.data.DataLoader(list(samples), batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=partial(_load_images, transform))
    yield from loader


def _load_images(transform: Optional[Callable], batch: list[Sample]) -> tuple[list[Sample], list]:
    images = [sample.image for sample in batch]
    if transform is not None:
        images = [transform(sample, image) for sample, image in zip(batch, images)]
    return batch, images
