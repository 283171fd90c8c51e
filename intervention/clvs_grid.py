"""Several CLVS settings on one batch: one prompt forward, then one batched branch for all of them.

CLVS changes only the generating rows (from the last prompt position n-1 on), so by causality the
prompt's positions [0, n-1) are the same for every setting, and the same as the stock model's. With
more than one setting, `answer_settings` therefore runs the prompt once with stock `generate`
(`intervention.prefix.run_prefix`: vision tower + prompt), then answers every (row, setting) pair as
one row of a single batched branch: stock `generate` continuing from a fork of [0, n-1), feeding token
n-1 and decoding under `ClvsSmoothing` with one (lam, beta, tau) per branch row and the prompt pinned.
Cost: V + P + T * D_{B*K} instead of K (V + P + (T-1) D). One setting is answered by one plain
`generate` under CLVS (`CLVS.run`): cheaper than a prompt forward plus a branch.

A batch the prefix engine cannot handle (`intervention.session.FALLBACK_ERRORS`) is answered setting
by setting instead, with one warning, as the alpha family does.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from transformers import BatchFeature

from intervention.clvs import CLVS, ClvsAnswer, ClvsSmoothing, answers_from
from intervention.compat import TransformersChanged
from intervention.prefix import Branch, Prefix, run_prefix
from intervention.session import BRANCH_MEMORY_BUDGET, ENGINES, FALLBACK_ERRORS

logger = logging.getLogger(__name__)


def answer_settings(vlm, inputs: BatchFeature, settings: Sequence[CLVS], max_new_tokens: int,
                    engine: str = "prefix") -> list[list[ClvsAnswer]]:
    """Per setting, the answers of every batch row (each equal to `setting.run(vlm, inputs, ...)`).

    engine: "prefix" shares the prompt among the settings when there are several; "naive" runs each
    setting's own generate (the reference)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "naive" or len(settings) == 1:
        return [setting.run(vlm, inputs, max_new_tokens) for setting in settings]
    try:
        return _shared_prompt(vlm, inputs, settings, max_new_tokens)
    except FALLBACK_ERRORS as error:
        logger.warning("%s; answering the CLVS settings one generate each (same answers, slower)", error)
        return [setting.run(vlm, inputs, max_new_tokens) for setting in settings]


def _shared_prompt(vlm, inputs, settings: Sequence[CLVS], max_new_tokens: int) -> list[list[ClvsAnswer]]:
    prefix = run_prefix(vlm, inputs, max_new_tokens)
    batch, max_rows = prefix.batch_size, _max_rows(prefix)
    answers: dict[int, list[ClvsAnswer]] = {}
    for scope in dict.fromkeys(setting.scope for setting in settings):  # one ClvsSmoothing has one scope
        indices = [i for i, setting in enumerate(settings) if setting.scope == scope]
        pairs = [(row, settings[i]) for i in indices for row in range(batch)]
        flat: list[ClvsAnswer] = []
        for start in range(0, len(pairs), max_rows):
            flat.extend(_run_branch(prefix, pairs[start:start + max_rows], scope))
        for k, i in enumerate(indices):
            answers[i] = flat[k * batch:(k + 1) * batch]
    return [answers[i] for i in range(len(settings))]


def _run_branch(prefix: Prefix, pairs: list, scope: str) -> list[ClvsAnswer]:
    rows = torch.tensor([row for row, _ in pairs])
    values = {name: torch.tensor([float(getattr(setting, name)) for _, setting in pairs])
              for name in ("lam", "beta", "tau")}
    branch = ClvsBranch(prefix, rows, scope=scope, **values)
    tokens = branch.run()
    return answers_from(prefix.vlm, tokens, branch.smoothing.stop_layers)


class ClvsBranch(Branch):
    """Greedy answers of (possibly repeated) batch rows under CLVS with per-row settings, decoded by
    `generate` from the shared prefix (`Branch`'s generate-from-fork, with its cache checks)."""

    def __init__(self, prefix: Prefix, rows: torch.Tensor, *, lam, beta, tau, scope: str):
        super().__init__(prefix, rows, torch.ones(len(rows)))
        image_mask = prefix.image_mask[self.rows.to(prefix.image_mask.device)]
        self.smoothing = ClvsSmoothing(prefix.vlm, lam, beta, tau, scope, prompt=(prefix.length, image_mask))

    def run(self) -> torch.Tensor:
        prefix, rows = self.prefix, self.rows
        positions = prefix.position_ids[rows] if prefix.position_ids.dim() == 2 else prefix.position_ids[:, rows]
        with self.smoothing:
            tokens = self._generate(prefix.input_ids[rows], prefix.attention_mask[rows], positions,
                                    prefix.fork(rows), prefix.max_new_tokens)
        if self.smoothing.planned_calls == 0 and bool((torch.as_tensor(self.smoothing.lam) != 1.0).any()):
            raise TransformersChanged("how generate runs a prompt continued from a cache (CLVS never reached the "
                                      "last prompt position)")
        return tokens


def _max_rows(prefix: Prefix) -> int:
    """Rows per branch: each holds its own copy of the prompt's key/values (as the alpha family's budget)."""
    row_bytes = sum(k.nbytes + v.nbytes for k, v in prefix.key_values) // prefix.batch_size
    return max(prefix.batch_size, BRANCH_MEMORY_BUDGET // max(row_bytes, 1))
