"""One prepared batch, answered at any alpha: the interface every method of the CLI goes through.

    session = open_session(vlm, inputs, max_new_tokens=10)
    session.confidence                      # (B,) max softmax prob of the first generated token at alpha = 1
    session.answers(1.0)                    # == stock greedy generation
    session.answers([0.5, 2.0])             # per-row alpha
    session.answers_rounds([[0.5, 2.0], [1.0, 1.0]])   # several alpha vectors at once

Two engines give the same answers:

* `engine="prefix"` (default, `PrefixSession`): the prompt runs once per batch at alpha = 1
  (`intervention.prefix`); its last logits give the confidence and its cache continues into the
  alpha = 1 answers; every other (row, alpha) pair is one row of a batched branch that forks the
  shared positions [0, n-1), runs the last prompt token at its alpha and decodes greedily. Each
  (row, alpha) is computed at most once per session, and `answers_rounds` runs all pairs it needs in
  as few batched steps as memory allows (`max_rows`). A batch the engine cannot handle, or a
  transformers release that moved an internal it needs (`intervention.compat`), is answered by the
  naive engine instead, with one warning.
* `engine="naive"` (`NaiveSession`): a one-token generate for the confidence and one full generate per
  `answers()` call. Slow, but it is stock `generate` under ScalingVis: the oracle for tests and benchmarks.

Cost per batch with the prefix engine (V = vision tower, P = prompt forward, D = one batched one-token
step, T = answer length): confidence = V + P (= stock generate's prefill); alpha = 1 answers add
(T - 1) D; all other alphas together add T batched steps (in chunks of `max_rows` rows).
"""
from __future__ import annotations

import logging
from typing import Iterable, Sequence

import torch
from transformers import BatchFeature

from common.errors import ToolkitError
from intervention.compat import TransformersChanged
from intervention.prefix import Branch, Prefix, PrefixUnsupported, run_prefix
from intervention.scaling_vis import ScalingVis, validate_alpha
from intervention.scopes import SCOPES

logger = logging.getLogger(__name__)

ENGINES = ("prefix", "naive")
# What makes the prefix engine hand a batch to the naive engine.
FALLBACK_ERRORS = (PrefixUnsupported, TransformersChanged)
# Default budget for the key/value copies of one batched branch (rows beyond the batch size are only
# added while their prompt caches fit): 2 GiB holds ~6 rows of a 600-token prompt of a 7B model in
# fp16 (32 layers x 4096 x 2 x 2 bytes per token), hundreds on the tiny benchmark models.
BRANCH_MEMORY_BUDGET = 2 * 1024 ** 3


class AnswerSession:
    """Answers for one batch of inputs at different alphas (see `open_session`); base of both engines."""

    def __init__(self, vlm, inputs: BatchFeature, *, max_new_tokens: int, scope: str = "prefill",
                 layers: Iterable[int] | None = None):
        if max_new_tokens < 1:
            raise ToolkitError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if scope not in SCOPES:
            raise ToolkitError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
        self.vlm = vlm
        self.inputs = inputs
        self.max_new_tokens = max_new_tokens
        self.scope = scope
        self.layers = None if layers is None else tuple(layers)
        self.batch_size = int(inputs["input_ids"].shape[0])

    @property
    def confidence(self) -> torch.Tensor:
        """(B,) float32: max over the whole vocabulary of softmax(first-token logits) at alpha = 1."""
        raise NotImplementedError

    def answers(self, alpha: float | Sequence[float] | torch.Tensor) -> list[str]:
        """Greedy decoded answers with ScalingVis at `alpha` (one value, or one per batch row)."""
        raise NotImplementedError

    def answers_rounds(self, rounds: Sequence[Sequence[float]]) -> list[list[str]]:
        """`[answers(alphas) for alphas in rounds]`; engines may compute all rounds together."""
        return [self.answers(alphas) for alphas in rounds]

    def _row_alphas(self, alpha) -> list[float]:
        """One alpha per row, each as the float32 value the attention uses (so 0.8 and float32(0.8) agree)."""
        values = torch.as_tensor(validate_alpha(alpha), dtype=torch.float32).flatten()
        if values.numel() == 1:
            values = values.expand(self.batch_size)
        if values.numel() != self.batch_size:
            raise ToolkitError(f"alpha has {values.numel()} values but the batch has {self.batch_size} rows; give "
                               f"one alpha or one per row")
        return values.tolist()


class NaiveSession(AnswerSession):
    """Stock generate for everything: a one-token generate for the confidence, a full generate per call."""

    def __init__(self, vlm, inputs, **kwargs):
        super().__init__(vlm, inputs, **kwargs)
        self._confidence: torch.Tensor | None = None
        self._baseline: list[str] | None = None

    @property
    def confidence(self) -> torch.Tensor:
        if self._confidence is None:
            out = self.vlm.generate_ids(self.inputs, 1, output_logits=True, return_dict_in_generate=True)
            self._confidence = first_token_confidence(out.logits[0])
        return self._confidence

    def answers(self, alpha):
        alpha = validate_alpha(alpha)
        if _all_ones(alpha):
            if self._baseline is None:
                self._baseline = self.vlm.generate(self.inputs, self.max_new_tokens)
            return list(self._baseline)
        with ScalingVis(self.vlm, alpha=alpha, scope=self.scope, layers=self.layers) as scaling:
            texts = self.vlm.generate(self.inputs, self.max_new_tokens)
        if scaling.scaled_calls == 0:
            raise ToolkitError("ScalingVis never reached the last prompt position during generate; this "
                               "transformers version runs generation in a way the toolkit does not support")
        return texts


class PrefixSession(AnswerSession):
    """Prefix-shared answers (see the module docstring). `max_rows` bounds the rows of one batched
    branch: each row holds its own copy of the prompt's key/value cache while it decodes. A batch the
    engine cannot handle (`FALLBACK_ERRORS`) is answered by the naive engine instead, with a warning."""

    def __init__(self, vlm, inputs, *, max_rows: int | None = None, **kwargs):
        super().__init__(vlm, inputs, **kwargs)
        if max_rows is not None and max_rows < 1:
            raise ToolkitError(f"max_rows must be >= 1, got {max_rows}")
        self._max_rows = max_rows
        self._prefix: Prefix | None = None
        self._naive: NaiveSession | None = None
        self._base: Branch | None = None
        self._texts: dict[tuple[int, float], str] = {}
        self.branch_calls = 0  # batched branches run so far (for tests and benchmarks)

    @property
    def prefix(self) -> Prefix | None:
        """The prompt run once; None when this batch fell back to the naive engine."""
        if self._prefix is None and self._naive is None:
            try:
                self._prefix = run_prefix(self.vlm, self.inputs, self.max_new_tokens)
            except FALLBACK_ERRORS as error:
                self._fall_back(error)
        return self._prefix

    def _fall_back(self, error: Exception) -> None:
        _warn_once(f"{error}; answering with the naive engine (same answers, slower)")
        self._prefix, self._base = None, None
        self._naive = NaiveSession(self.vlm, self.inputs, max_new_tokens=self.max_new_tokens, scope=self.scope,
                                   layers=self.layers)

    @property
    def max_rows(self) -> int:
        """Most rows in one batched branch: as given, else max(B, rows whose caches fit the budget)."""
        if self._max_rows is None:
            row_bytes = sum(k.nbytes + v.nbytes for k, v in self.prefix.key_values) // self.batch_size
            self._max_rows = max(self.batch_size, BRANCH_MEMORY_BUDGET // max(row_bytes, 1))
        return self._max_rows

    @property
    def base(self) -> Branch:
        """The alpha = 1 answers of all rows, continuing from the prompt forward."""
        if self._base is None:
            self._base = Branch.at_alpha_one(self.prefix, self.scope, self.layers)
        return self._base

    @property
    def confidence(self) -> torch.Tensor:
        if self.prefix is None:
            return self._naive.confidence
        return first_token_confidence(self.prefix.first_logits)

    def answers(self, alpha):
        return self.answers_rounds([alpha])[0]

    def answers_rounds(self, rounds):
        per_round = [self._row_alphas(alphas) for alphas in rounds]
        if self.prefix is not None:
            try:
                self._compute({(row, a) for alphas in per_round for row, a in enumerate(alphas)})
            except FALLBACK_ERRORS as error:
                self._fall_back(error)
        if self.prefix is None:
            return self._naive.answers_rounds(rounds)
        return [[self._texts[(row, a)] for row, a in enumerate(alphas)] for alphas in per_round]

    def _compute(self, pairs: set[tuple[int, float]]) -> None:
        missing = sorted(p for p in pairs if p not in self._texts)
        if any(alpha == 1.0 for _, alpha in missing):
            self._store(self.base.rows, self.base.alphas, self.base.run())
        scaled = [p for p in missing if p[1] != 1.0]
        for start in range(0, len(scaled), self.max_rows):
            chunk = scaled[start:start + self.max_rows]
            rows = torch.tensor([row for row, _ in chunk])
            alphas = torch.tensor([alpha for _, alpha in chunk], dtype=torch.float32)
            branch = Branch(self.prefix, rows, alphas, self.scope, self.layers)
            self.branch_calls += 1
            self._store(rows, alphas, branch.run())

    def _store(self, rows: torch.Tensor, alphas: torch.Tensor, tokens: torch.Tensor) -> None:
        texts = self.vlm.decode_new_tokens(tokens, 0)
        for row, alpha, text in zip(rows.tolist(), alphas.tolist(), texts):
            self._texts[(row, alpha)] = text


def open_session(vlm, inputs: BatchFeature, *, max_new_tokens: int, scope: str = "prefill",
                 layers: Iterable[int] | None = None, engine: str = "prefix",
                 max_rows: int | None = None) -> AnswerSession:
    """Start answering one prepared batch (`vlm.prepare(...)` output).

    engine: "prefix" (default: shared prompt prefix, batched alphas) or "naive" (stock generate per call,
        the reference). max_rows (prefix engine): most rows in one batched branch, each holding a copy of
        its prompt's key/values (default: the batch size, or more while they fit in 2 GiB).
    """
    if engine not in ENGINES:
        raise ToolkitError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "naive":
        return NaiveSession(vlm, inputs, max_new_tokens=max_new_tokens, scope=scope, layers=layers)
    return PrefixSession(vlm, inputs, max_new_tokens=max_new_tokens, scope=scope, layers=layers, max_rows=max_rows)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def first_token_confidence(logits: torch.Tensor) -> torch.Tensor:
    """Max softmax probability per row of (B, vocab) logits, computed in float32."""
    return torch.softmax(logits.float(), dim=-1).max(dim=-1).values


def _all_ones(alpha) -> bool:
    return bool((torch.as_tensor(alpha, dtype=torch.float32) == 1.0).all())
