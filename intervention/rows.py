"""What the registered attention function may do to attention rows, and who asks for it.

The attention function (`intervention.attention`) runs stock SDPA and then recomputes a few query
rows exactly (logits, mask, softmax, `@ V`). Two kinds of parties take part, each an object pushed on
a context-local stack while active (a `ContextVar`, so concurrent requests in different threads or
tasks never see each other's interventions):

* a `RowEditor` changes the rows it plans: `edit_logits` before the mask (ScalingVis multiplies the
  image-key logits by alpha), `edit_probs` after the softmax (CLVS blends with a vision memory); the
  recomputed rows replace the SDPA output. The innermost editor owning a module is the one that acts,
  so nested blocks of the same method replace each other instead of compounding;
* a `RowObserver` reads rows without changing the output (attention capture for analyses): it is
  given the logits and probabilities of the rows it plans, as the model computes them, including the
  active editor's changes; the SDPA output stays untouched, so observing never changes a number.

Both say which rows they want per call with `plan(module, batch_size, q_len, kv_len, device)`, in
absolute positions (a query row's position is kv_len - q_len + i for full-length caches).
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

import torch

from common.errors import ToolkitError


@dataclass
class RowPlan:
    """Rows `query_rows` (call-relative) of batch rows `batch_rows`, at absolute positions `row_positions`.
    `factors`: an editor's own precomputed data for these rows (ScalingVis: per-key logit factors)."""

    batch_rows: torch.Tensor
    query_rows: torch.Tensor
    row_positions: torch.Tensor
    factors: torch.Tensor | None = None


class RowParty:
    """Base of editors and observers: the attention modules it may touch (id -> language-model layer)."""

    module_layers: dict[int, int] = {}

    def plan(self, module, batch_size: int, q_len: int, kv_len: int, device) -> RowPlan | None:
        raise NotImplementedError


class RowEditor(RowParty):
    """Changes attention rows; `edit_*` must be free of side effects (observers call them too), state
    changes belong in `after_rows`, called once per call on the rows the editor itself planned."""

    def note_call(self, module, q_len: int, kv_len: int) -> None:
        """Every call of an owned module, before planning (for bookkeeping and checks)."""

    def edit_logits(self, module, logits: torch.Tensor, plan: RowPlan) -> torch.Tensor:
        """(b, H, r, k) scaled q.k logits of `plan`'s rows, before the mask."""
        return logits

    def edit_probs(self, module, probs: torch.Tensor, plan: RowPlan) -> torch.Tensor:
        """(b, H, r, k) float32 probabilities of `plan`'s rows, after the softmax."""
        return probs

    def after_rows(self, module, logits: torch.Tensor, probs: torch.Tensor, plan: RowPlan) -> None:
        """The editor's own rows were recomputed; `probs` are before `edit_probs`."""


class PromptEditor(RowEditor):
    """A row editor acting from the prompt's last position on (ScalingVis, CLVS). It knows the prompt, its
    length n and image-key mask (B, n), pinned at creation or observed at each call that starts a sequence,
    and records which attention modules ran the registered function since the last check
    (`modules_called`, read by `intervention.lm.check_every_layer_called`).

    `method` names the intervention in messages and `context_manager` the class that takes `prompt=`;
    `forget_prompt()` drops what a subclass derived from the previous prompt.
    """

    method = "the intervention"
    context_manager = "the context manager"

    def __init__(self, module_layers: dict[int, int], image_token_id: int,
                 prompt: tuple[int, torch.Tensor] | None = None):
        self.module_layers = module_layers
        self.image_token_id = image_token_id
        self.prompt_length: int | None = None
        self.image_mask: torch.Tensor | None = None
        self.pinned = prompt is not None
        self.modules_called: set[int] = set()
        self._expect_fresh_sequence = False
        if prompt is not None:
            prompt_length, image_mask = prompt
            if image_mask.dim() != 2 or image_mask.shape[1] != prompt_length:
                raise ValueError(f"image_mask must be (batch, {prompt_length}), got {tuple(image_mask.shape)}")
            self.prompt_length, self.image_mask = prompt_length, image_mask.bool()

    def forget_prompt(self) -> None:
        """A new prompt was observed: drop what was derived from the previous one."""

    def observe_prompt(self, input_ids: torch.Tensor | None) -> None:
        """Called at each call that starts a sequence; ignored when the prompt is pinned."""
        if self.pinned:
            return
        if input_ids is None:
            raise ToolkitError(f"{self.method} needs input_ids to locate image tokens; call the model with input_ids "
                               f"(not inputs_embeds), or pin the prompt ({self.context_manager}(..., prompt=...))")
        self.prompt_length = input_ids.shape[1]
        self.image_mask = input_ids == self.image_token_id
        self._expect_fresh_sequence = True
        self.forget_prompt()

    def note_call(self, module, q_len: int, kv_len: int) -> None:
        """Record that `module` ran the registered function; check an observed prompt really started a
        sequence (a decode step mistaken for a new prompt would be mis-targeted)."""
        self.modules_called.add(id(module))
        if self._expect_fresh_sequence:
            self._expect_fresh_sequence = False
            if not q_len == kv_len == self.prompt_length:
                raise ToolkitError(
                    f"{self.method} took a call with {q_len} new token(s) after {kv_len - q_len} cached ones for the "
                    f"start of a {self.prompt_length}-token prompt: this transformers version passes the cache "
                    f"in a way the toolkit does not recognise, so decode steps would be mis-targeted. Pin the "
                    f"prompt ({self.context_manager}(..., prompt=...)) or use a tested transformers version")


class RowObserver(RowParty):
    """Reads attention rows without changing them."""

    def observe(self, module, logits: torch.Tensor, probs: torch.Tensor, plan: RowPlan) -> None:
        """(b, H, r, k) logits (after editors, before the mask) and float32 probabilities of the planned rows."""


_ACTIVE: ContextVar[tuple[RowParty, ...]] = ContextVar("intervention_rows", default=())


def push(party: RowParty) -> None:
    _ACTIVE.set(_ACTIVE.get() + (party,))


def remove(party: RowParty) -> None:
    """Remove `party` (wherever it is, so out-of-order exits cannot corrupt the stack)."""
    _ACTIVE.set(tuple(p for p in _ACTIVE.get() if p is not party))


def active() -> tuple[RowParty, ...]:
    return _ACTIVE.get()


def editor_for(module) -> RowEditor | None:
    """The innermost active editor that owns `module` (None for vision modules and when inactive)."""
    key = id(module)
    for party in reversed(_ACTIVE.get()):
        if isinstance(party, RowEditor) and key in party.module_layers:
            return party
    return None


def observers_for(module) -> list[RowObserver]:
    key = id(module)
    return [p for p in _ACTIVE.get() if isinstance(p, RowObserver) and key in p.module_layers]


def is_innermost(editor: RowEditor) -> bool:
    """Whether no editor pushed after `editor` owns any of its modules."""
    for party in reversed(_ACTIVE.get()):
        if party is editor:
            return True
        if isinstance(party, RowEditor) and party.module_layers.keys() & editor.module_layers.keys():
            return False
    return False
