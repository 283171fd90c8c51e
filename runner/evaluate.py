"""The evaluation loop: every pending sample once through the model, every configuration answered from it.

One batch = one prompt prefix per sample, shared by every configuration of the invocation: the
first-token confidence at alpha = 1 is computed once, AdaptVis configurations pick their alphas from
it, and each distinct alpha a sample needs is generated once (`plan_alpha_rounds`). Records go to
each configuration's own `samples.jsonl` after every batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from dataset_zoo.base import Sample
from evaluation import judge
from intervention.session import open_session
from runner.config import MethodSpec, RunConfig

if TYPE_CHECKING:
    from intervention import AdaptVis
    from runner.records import RunFolder


@dataclass
class PendingRun:
    """One configuration being evaluated: where its records go and which samples it still needs."""

    spec: MethodSpec
    folder: "RunFolder"  # this process's view: its own part file when sharded
    done_ids: set[str]
    n_correct: int = 0
    n_seen: int = 0
    adapt_vis: "AdaptVis | None" = field(default=None)

    def needs(self, sample: Sample) -> bool:
        return sample.id not in self.done_ids


@dataclass(frozen=True)
class AlphaChoice:
    """The alpha one configuration gives one sample, and (AdaptVis) why."""

    alpha: float
    branch: str | None = None
    confidence_rounded: float | None = None


def choose_alphas(spec: MethodSpec, adapt_vis: "AdaptVis | None", confidence: torch.Tensor) -> list[AlphaChoice]:
    """Per-row alphas of one configuration for a batch whose alpha = 1 confidences are known."""
    if spec.method == "base":
        return [AlphaChoice(1.0)] * len(confidence)
    if spec.method == "scaling_vis":
        return [AlphaChoice(float(spec.weight))] * len(confidence)
    alphas, branches, compared = adapt_vis.decide(confidence)
    return [AlphaChoice(float(a), b, c)
            for a, b, c in zip(alphas, branches, adapt_vis.recorded_confidence(compared))]


def plan_alpha_rounds(needed: Sequence[Sequence[float]]) -> list[list[float]]:
    """Per-row alpha vectors covering every (row, alpha) pair in as few generate calls as possible.

    Row i needs the distinct alphas `needed[i]`; call r gives row i its r-th alpha (or repeats its
    last one, whose answer is then already known). The number of calls is the largest number of
    distinct alphas any row needs: 1 for a single AdaptVis configuration, K for a K-alpha sweep.
    """
    distinct = [sorted(set(row)) for row in needed]
    rounds = max((len(row) for row in distinct), default=0)
    return [[row[min(r, len(row) - 1)] for row in distinct] for r in range(rounds)]


def answer_batch(session, choices_per_run: Sequence[list[AlphaChoice]]) -> dict[tuple[int, float], str]:
    """Generate each sample's answer at every alpha some configuration chose for it.

    All rounds go to the session at once (`answers_rounds`): the prefix engine then runs every
    distinct (row, alpha) pair once, batched.
    """
    n_rows = len(choices_per_run[0])
    needed = [[choices[row].alpha for choices in choices_per_run] for row in range(n_rows)]
    rounds = plan_alpha_rounds(needed)
    texts: dict[tuple[int, float], str] = {}
    for alphas, round_texts in zip(rounds, session.answers_rounds(rounds)):
        for row, (alpha, text) in enumerate(zip(alphas, round_texts)):
            texts.setdefault((row, alpha), text)
    return texts


def sample_record(sample: Sample, prompt: str, generation: str, confidence: float,
                  choice: AlphaChoice, match: str) -> dict:
    """The samples.jsonl line of one sample under one configuration."""
    verdict = judge(generation, sample, match)
    record = {"id": sample.id, "index": sample.index, "question": sample.question, "prompt": prompt,
              "generation": generation, "prediction": verdict.prediction, "gold": sample.answer,
              "correct": verdict.correct, "relation": sample.relation, "confidence": confidence,
              "alpha": choice.alpha}
    if verdict.score is not None:  # short answers: the VQA accuracy behind `correct` (full credit)
        record["score"] = verdict.score
    if choice.branch is not None:
        record.update(confidence_rounded=choice.confidence_rounded, branch=choice.branch)
    return record


def evaluate_samples(vlm, samples: Sequence[Sample], runs: Sequence[PendingRun], config: RunConfig,
                     batches: Iterable[tuple[list[Sample], list]]) -> None:
    """Run every batch through the model once and append each configuration's records."""
    progress = tqdm(total=len(samples), desc=f"{config.dataset} x {len(runs)} config(s)", unit="sample",
                    dynamic_ncols=True)
    for batch, images in batches:
        prompts = [vlm.build_prompt(s.question, s.paper_prompt) for s in batch]
        inputs = vlm.prepare(images, prompts)
        session = open_session(vlm, inputs, max_new_tokens=config.max_new_tokens, scope=config.scope)
        confidence = session.confidence.float().cpu()
        choices = [choose_alphas(run.spec, run.adapt_vis, confidence) for run in runs]
        answers = answer_batch(session, choices)
        for run, run_choices in zip(runs, choices):
            records = [sample_record(s, p, answers[(row, c.alpha)], float(confidence[row]), c, config.match)
                       for row, (s, p, c) in enumerate(zip(batch, prompts, run_choices)) if run.needs(s)]
            run.folder.append(records)
            run.done_ids.update(r["id"] for r in records)
            run.n_seen += len(records)
            run.n_correct += sum(r["correct"] for r in records)
        progress.update(len(batch))
        progress.set_postfix_str(running_accuracy(runs), refresh=False)
    progress.close()


def running_accuracy(runs: Sequence[PendingRun]) -> str:
    """Accuracy so far for the progress bar: one value, or the range over a grid."""
    accuracies = [run.n_correct / run.n_seen for run in runs if run.n_seen]
    if not accuracies:
        return ""
    if len(accuracies) == 1:
        return f"acc={accuracies[0]:.3f}"
    return f"acc={min(accuracies):.3f}-{max(accuracies):.3f}"


def iterate_batches(samples: Sequence[Sample], batch_size: int, num_workers: int) -> Iterator[tuple[list, list]]:
    """(samples, RGB images) per batch; images are read by `num_workers` loader processes."""
    loader = torch.utils.data.DataLoader(list(samples), batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=_load_images)
    yield from loader


def _load_images(batch: list[Sample]) -> tuple[list[Sample], list]:
    return batch, [sample.image for sample in batch]
