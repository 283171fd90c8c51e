"""CLVS inside the registered attention function: vision memory, blend and stop (a `RowEditor`).

Cross-Layer Vision Smoothing (Zhao et al. 2025, arXiv 2509.12897), as this toolkit reads it (README,
"CLVS"; every choice the paper leaves open is listed there). For the generating row q of a forward
(the last prompt position at prefill; with scope "all" also each generated token's row):

* layer 0 runs unchanged; its post-softmax weights of q on the image keys, max over heads, initialise
  the vision memory M_0 (one vector per row, shared by all heads);
* layer l >= 1, until the row stops: q's post-softmax image weights are blended with the memory,
  A[q, I] = lam * A[q, I] + (1 - lam) * M_{l-1}, and the whole row is renormalised to sum 1; the
  memory follows the un-blended weights, M_l = beta * M_{l-1} + (1 - beta) * max_h A_l[q, I];
* after layer l, for ceil(L/2) <= l <= L-2, the logit lens at q (the final norm, then lm_head, the
  top-10 logits' softmax, entropy / log 10) is compared with tau; below it the row stops: no later
  layer is blended and the memory is frozen. The stop layer is recorded. (A check after the last layer
  could change nothing, so it is not made.)

Everything is per batch row (lam, beta, tau per row; memory and stop per row and generating position),
so a batched row computes what it computes alone. Rows with lam = 1 are never planned: they run stock
SDPA, bit for bit.

Order of events: the attention function hands the editor layer l's un-blended probabilities
(`after_rows`) before it asks for the blend (`edit_probs`, which must still see M_{l-1}), so the memory
update is staged there and committed by `finish_layer`, which a forward hook on decoder layer l calls
once the layer is done, with its output for the stop check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common.errors import ToolkitError
from intervention.rows import PromptEditor, RowPlan
ENTROPY_TOP_K = 10  # the peer's top-10 renormalised entropy (README, CLVS: the ambiguity table)
NOT_STOPPED = -1


@dataclass
class _Pass:
    """The generating rows of one forward: their memory and stop state.

    rows / positions: (r,) call-relative query rows and their (contiguous) absolute positions;
    image: (B, kv_len) image-key columns; lam / beta / tau: (B,) per batch row;
    active: (B, r) still smoothing (lam != 1, not stopped); stop_layer: (B, r), NOT_STOPPED if not;
    plan: the rows this editor recomputes (batch rows with an active cell), None once all stopped;
    all_active: every (row, position) cell is active;
    memory: (B, r, kv_len) float32 head-wise max weights (only its image columns are ever used; None
    before layer 0 finished); staged: this layer's, committed by `finish_layer`.
    """

    shape: tuple[int, int, int]
    rows: torch.Tensor
    positions: torch.Tensor
    image: torch.Tensor
    lam: torch.Tensor
    beta: torch.Tensor
    tau: torch.Tensor
    active: torch.Tensor
    stop_layer: torch.Tensor
    plan: RowPlan | None = None
    all_active: bool = False
    memory: torch.Tensor | None = None
    staged: torch.Tensor | None = None

    def replan(self) -> None:
        """After `active` changed: the plan of the live rows, and whether every cell is still active (then
        the per-cell selections are skipped: fewer small ops per layer, which is most of CLVS's cost)."""
        live = torch.nonzero(self.active.any(-1)).flatten()
        self.plan = RowPlan(live, self.rows, self.positions) if live.numel() else None
        self.all_active = bool(self.active.all())


class ClvsState(PromptEditor):
    """CLVS's targeting and per-forward state (see the module docstring).

    lam / beta / tau: a float or one value per batch row. lens: (final norm, lm_head) for the stop check.
    prompt: (n, image_mask (B, n)) pinned, or None to observe it at each call that starts a sequence.
    `history` holds, per finished forward with generating rows, (stop layers (B, r), smoothed rows (B,)).
    """

    method, context_manager = "CLVS", "ClvsSmoothing"

    def __init__(self, module_layers: dict[int, int], image_token_id: int, num_layers: int, lam, beta, tau,
                 scope: str, lens: tuple, prompt: tuple[int, torch.Tensor] | None = None):
        super().__init__(module_layers, image_token_id, prompt)
        self.num_layers = num_layers
        # The peer checks `l >= L/2` (README, CLVS); ceil keeps that for odd L.
        self.first_checked = math.ceil(num_layers / 2)
        self.last_checked = num_layers - 2
        self.settings = {"lam": lam, "beta": beta, "tau": tau}
        self.scope = scope
        self.lens = lens
        self.planned_calls = 0
        self.history: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._pass: _Pass | None = None

    # -- the prompt ----------------------------------------------------------------------------------
    def forget_prompt(self) -> None:
        self.history.clear()

    # -- the editor's hooks --------------------------------------------------------------------------
    def plan(self, module, batch_size: int, q_len: int, kv_len: int, device) -> RowPlan | None:
        layer = self.module_layers[id(module)]
        if layer == 0:
            self._pass = self._start_pass(batch_size, q_len, kv_len, device)
        elif self._pass is not None and self._pass.shape != (batch_size, q_len, kv_len):
            raise ToolkitError(f"CLVS saw layer {layer} of a forward of shape {(batch_size, q_len, kv_len)} after "
                               f"layer 0 of one of shape {self._pass.shape}; layers must run in order, one "
                               f"forward at a time")
        return None if self._pass is None else self._pass.plan  # None once every row stopped: stock SDPA

    def after_rows(self, module, logits, probs, plan: RowPlan) -> None:
        """Stage max over heads of the un-blended weights (b, H, r, k) -> (B, r, k)."""
        current = self._pass
        weights = probs.amax(dim=1).float()
        if len(plan.batch_rows) < current.shape[0]:
            staged = torch.zeros(current.shape[0], *weights.shape[1:], dtype=torch.float32, device=weights.device)
            staged[plan.batch_rows] = weights
            weights = staged
        current.staged = weights
        self.planned_calls += 1

    def edit_probs(self, module, probs: torch.Tensor, plan: RowPlan) -> torch.Tensor:
        """Blend the image columns of the generating rows with the memory, then renormalise the row.
        Works for any party's plan (observers see the blend too): rows that are not generating rows of
        an active batch row pass through."""
        current = self._pass
        if current is None or current.memory is None:
            return probs  # layer 0, or no generating row in this forward
        selection = _cells(current, plan)
        if selection is None:
            return probs
        batch, index, cells = selection
        memory, lam, image = current.memory, current.lam, current.image
        if batch is not None:
            memory, lam, image = memory[batch], lam[batch], image[batch]
        if index is not None:
            memory = memory[:, index]
        mixed = torch.lerp(memory[:, None], probs, lam[:, None, None, None])      # lam A + (1 - lam) M
        blended = torch.where(image[:, None, None, :], mixed, probs)
        blended = blended / blended.sum(dim=-1, keepdim=True)
        return blended if cells is None else torch.where(cells[:, None, :, None], blended, probs)

    # -- after each decoder layer --------------------------------------------------------------------
    def finish_layer(self, layer: int, hidden: torch.Tensor) -> None:
        """Commit layer `layer`'s memory update, then check the stop rule on its output (B, q, d)."""
        current = self._pass
        if current is None:
            return
        if current.staged is not None:
            current.memory = _updated_memory(current)
            current.staged = None
        if self.first_checked <= layer <= self.last_checked and current.plan is not None:
            self._check_stop(layer, hidden, current)
        if layer == self.num_layers - 1:
            self.history.append((current.stop_layer, current.lam != 1.0))
            self._pass = None

    def _check_stop(self, layer: int, hidden: torch.Tensor, current: _Pass) -> None:
        rows = current.plan.batch_rows
        states = hidden[:, current.rows.to(hidden.device)]                       # (B, r, d)
        if len(rows) < current.shape[0]:
            states = states.index_select(0, rows.to(hidden.device))
        entropy = lens_entropy(*self.lens, states).to(current.tau.device)
        stopped = current.active[rows] & (entropy < current.tau[rows, None])
        if bool(stopped.any()):
            current.stop_layer[rows] = torch.where(stopped, layer, current.stop_layer[rows])
            current.active[rows] = current.active[rows] & ~stopped
            current.replan()

    # -- setup ---------------------------------------------------------------------------------------
    def _start_pass(self, batch_size: int, q_len: int, kv_len: int, device) -> _Pass | None:
        values = {name: self._row_values(name, batch_size, device) for name in self.settings}
        smoothing = values["lam"] != 1.0
        if not bool(smoothing.any()):
            return None
        self._require_prompt(batch_size)
        positions = torch.arange(kv_len - q_len, kv_len, device=device)
        first = self.prompt_length - 1
        generating = positions == first if self.scope == "prefill" else positions >= first
        rows = torch.nonzero(generating).flatten()
        if rows.numel() == 0:
            return None
        image = torch.zeros(batch_size, kv_len, dtype=torch.bool, device=device)
        width = min(self.prompt_length, kv_len)
        image[:, :width] = self.image_mask[:, :width].to(device)
        shape = (batch_size, rows.numel())
        started = _Pass((batch_size, q_len, kv_len), rows, positions[rows], image, **values,
                        active=smoothing[:, None].expand(shape).clone(),
                        stop_layer=torch.full(shape, NOT_STOPPED, dtype=torch.long, device=device))
        started.replan()
        return started

    def _require_prompt(self, batch_size: int) -> None:
        if self.prompt_length is None or self.image_mask is None:
            raise ToolkitError("CLVS has not seen the prompt: call the top-level model (or generate) with input_ids, "
                               "or pin the prompt")
        if self.image_mask.shape[0] != batch_size:
            raise ToolkitError(f"the prompt had {self.image_mask.shape[0]} rows but attention runs on {batch_size}; "
                               f"beam search and num_return_sequences > 1 are not supported with CLVS")

    def _row_values(self, name: str, batch_size: int, device) -> torch.Tensor:
        values = torch.as_tensor(self.settings[name], dtype=torch.float32, device=device).flatten()
        if values.numel() == 1:
            return values.expand(batch_size)
        if values.numel() != batch_size:
            raise ToolkitError(f"CLVS {name} has {values.numel()} values but the batch has {batch_size} rows; give "
                               f"one value or one per row")
        return values

    def stop_layers(self) -> list[list[int | None]]:
        """Per batch row, the stop layer of each generating position seen since the prompt (None: smoothed
        through the last layer); empty for rows with lam = 1, which are never smoothed."""
        if not self.history:
            return []
        table = torch.cat([stops for stops, _ in self.history], dim=1).tolist()
        smoothed = self.history[0][1].tolist()
        return [[None if layer == NOT_STOPPED else layer for layer in row] if smoothed[b] else []
                for b, row in enumerate(table)]


def _cells(current: _Pass, plan: RowPlan):
    """None if none of `plan`'s (b, r) cells is blended, else (batch rows to gather or None for all,
    generating-row index to gather or None for all, (b, r) mask of the cells to blend or None for all)."""
    if plan is current.plan:  # this editor's own rows: the generating rows of the live batch rows
        if current.all_active:
            return None, None, None
        return plan.batch_rows, None, current.active[plan.batch_rows]
    index = plan.row_positions.to(current.positions.device) - current.positions[0]
    valid = (index >= 0) & (index < len(current.positions))
    index = index.clamp(0, len(current.positions) - 1)
    batch = plan.batch_rows.to(current.active.device)
    cells = current.active[batch][:, index] & valid[None, :]
    return batch, index, cells if bool(cells.any()) else None


def _updated_memory(current: _Pass) -> torch.Tensor:
    """M_0 from layer 0's staged weights, then M_l = beta M_{l-1} + (1 - beta) staged for rows still active."""
    if current.memory is None:
        return current.staged
    updated = torch.lerp(current.staged, current.memory, current.beta[:, None, None])
    return updated if current.all_active else torch.where(current.active[..., None], updated, current.memory)


def lens_entropy(norm: torch.nn.Module, lm_head: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The logit lens's normalised top-k entropy in [0, 1]: softmax over the k largest of
    lm_head(norm(hidden)), its entropy divided by log k. hidden: (..., d) -> (...)."""
    normed = norm(hidden.to(_device(norm, hidden)))
    logits = lm_head(normed.to(_device(lm_head, normed))).float()
    k = min(ENTROPY_TOP_K, logits.shape[-1])
    top = torch.softmax(logits.topk(k, dim=-1).values, dim=-1)
    return -torch.special.xlogy(top, top).sum(-1) / math.log(k)


def _device(module: torch.nn.Module, fallback: torch.Tensor) -> torch.device:
    """Where `module`'s weights live (a device_map may put the final norm and lm_head apart)."""
    parameter = next(module.parameters(), None)
    return fallback.device if parameter is None else parameter.device
