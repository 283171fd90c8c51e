"""The targeting state of one active ScalingVis (a `RowEditor`, see `intervention.rows`).

transformers gives an attention function no absolute positions and no input ids, and forward kwargs
cannot carry our state (`generate` rejects unknown kwargs, and Qwen forwards them into the vision tower).
So the state is an object on the context-local stack of
`intervention.rows`, managed by the `ScalingVis` context manager.

A state knows:
* which attention modules it may touch (ids of the language model's attention modules, with their
  layer index) - the vision tower is never among them;
* alpha: a float, or one value per batch row (tensor (B,));
* the prompt: its length n (padded, left padding) and the image-key mask `input_ids == image_token_id`
  (B, n). Either pinned when the state is made (callers that feed the prompt in pieces, like the
  prefix-sharing engine: positions [0, n-1) come from a cache, then token n-1 runs alone), or observed
  by `ScalingVis`'s forward pre-hook at every call that starts a sequence (empty cache). The first
  attention call after an observation must then see a fresh sequence (kv_len == q_len == n): if a
  transformers release passes the cache in a way the hook misses, a decode step would look like a new
  one-token prompt, and that check turns the silent error into a loud one;
* which query positions to scale: the last prompt position n-1 (scope "prefill", as the original code)
  or every position >= n-1 (scope "all": the generated tokens too). A query row's absolute position is
  kv_len - q_len + i (valid for full-length caches; sliding windows are refused);
* an optional subset of layers.
Key positions >= n (generated tokens) are never image keys.

It also counts what happened, so callers can check the intervention really took effect: the attention
modules that called the registered function since the last check (`modules_called`), and the calls
that recomputed rows (`scaled_calls`).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from common.errors import ToolkitError
from intervention.rows import PromptEditor, RowPlan


class ScalingState(PromptEditor):
    """The targeting state of one active intervention (see the module docstring)."""

    method = context_manager = "ScalingVis"

    def __init__(self, module_layers: dict[int, int], image_token_id: int, alpha, scope: str,
                 layers: Iterable[int] | None, prompt: tuple[int, torch.Tensor] | None = None):
        super().__init__(module_layers, image_token_id, prompt)
        self.scope = scope
        self.layers = None if layers is None else frozenset(layers)
        self.scaled_calls = 0
        self._plans: dict = {}
        self.set_alpha(alpha)

    def set_alpha(self, alpha: float | Sequence[float] | torch.Tensor) -> None:
        self.alpha = alpha
        self._plans.clear()

    def forget_prompt(self) -> None:
        self._plans.clear()

    def plan(self, module, batch_size: int, q_len: int, kv_len: int, device) -> RowPlan | None:
        """The rows to recompute in this call, or None when the call is untouched."""
        if self.layers is not None and self.module_layers[id(module)] not in self.layers:
            return None
        key = (batch_size, q_len, kv_len, str(device))
        if key not in self._plans:
            self._plans[key] = self._make_plan(batch_size, q_len, kv_len, device)
        return self._plans[key]

    def _make_plan(self, batch_size: int, q_len: int, kv_len: int, device) -> RowPlan | None:
        alpha = self._alpha_vector(batch_size, device)
        batch_rows = torch.nonzero(alpha != 1.0).flatten()
        if batch_rows.numel() == 0:
            return None
        if self.prompt_length is None or self.image_mask is None:
            raise ToolkitError("ScalingVis has not seen the prompt: call the top-level model (or generate) with "
                               "input_ids, or pin the prompt")
        if self.image_mask.shape[0] != batch_size:
            raise ToolkitError(f"the prompt had {self.image_mask.shape[0]} rows but attention runs on {batch_size}; "
                               f"beam search and num_return_sequences > 1 are not supported with ScalingVis")
        positions = torch.arange(kv_len - q_len, kv_len, device=device)
        first = self.prompt_length - 1
        targeted = positions == first if self.scope == "prefill" else positions >= first
        query_rows = torch.nonzero(targeted).flatten()
        if query_rows.numel() == 0:
            return None
        return RowPlan(batch_rows, query_rows, positions[query_rows],
                       self._column_factors(alpha, batch_rows, kv_len, device))

    def edit_logits(self, module, logits: torch.Tensor, plan: RowPlan) -> torch.Tensor:
        """Alpha on the image keys of the targeted rows, before the mask."""
        if plan.factors is not None:  # this state's own plan (observers' plans carry no factors)
            return logits * plan.factors.to(logits.dtype)[:, None, None, :]
        if self.prompt_length is None:
            return logits
        return logits * self._factors_for(module, plan, logits)

    def _factors_for(self, module, plan: RowPlan, logits: torch.Tensor) -> torch.Tensor:
        """(b, 1, r, k) factors for rows another party planned: alpha where this state targets them."""
        factors = torch.ones(len(plan.batch_rows), 1, len(plan.query_rows), logits.shape[-1],
                             dtype=logits.dtype, device=logits.device)
        if self.layers is not None and self.module_layers[id(module)] not in self.layers:
            return factors
        alpha = self._alpha_vector(self.image_mask.shape[0], logits.device)
        first = self.prompt_length - 1
        positions = plan.row_positions
        targeted = positions == first if self.scope == "prefill" else positions >= first
        columns = self._column_factors(alpha, plan.batch_rows, logits.shape[-1], logits.device)
        return torch.where(targeted[None, None, :, None], columns[:, None, None, :].to(logits.dtype), factors)

    def after_rows(self, module, logits, probs, plan) -> None:
        self.scaled_calls += 1

    def _alpha_vector(self, batch_size: int, device) -> torch.Tensor:
        alpha = torch.as_tensor(self.alpha, dtype=torch.float32, device=device).flatten()
        if alpha.numel() == 1:
            return alpha.expand(batch_size)
        if alpha.numel() != batch_size:
            raise ToolkitError(f"alpha has {alpha.numel()} values but the batch has {batch_size} rows; give one "
                               f"alpha or one per row")
        return alpha

    def _column_factors(self, alpha, batch_rows, kv_len: int, device) -> torch.Tensor:
        image = torch.zeros(len(batch_rows), kv_len, dtype=torch.bool, device=device)
        width = min(self.prompt_length, kv_len)
        image[:, :width] = self.image_mask[batch_rows.to(self.image_mask.device), :width].to(device)
        return torch.where(image, alpha[batch_rows, None], torch.ones((), device=device))


