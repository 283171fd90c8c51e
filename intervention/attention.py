"""The ScalingVis attention function, registered with transformers under one name.

What it computes (paper §4; original code `modeling_llama_add_attn.py` L257-L302):
in every targeted language-model layer and head, the pre-softmax logits `QK^T * scaling` of the
targeted query rows toward image-token keys are multiplied by alpha, BEFORE the additive
causal/padding mask is applied (scaling after the mask would un-mask masked keys for alpha <= 0), then
fp32 softmax, then `@ V`.

How: the whole call runs through stock
`sdpa_attention_forward`; then only the targeted rows of the rows whose alpha != 1 are recomputed
exactly with explicit eager arithmetic and written over the SDPA output. Calls with nothing to target
are therefore the stock SDPA call, bit for bit, and no full attention matrix is built. Only when the
caller asks for attention weights does the function compute the full eager matrix (with the same
scaling) so it can return them.

The function is registered in both `AttentionInterface` and `AttentionMaskInterface` (with `sdpa_mask`):
registered only in the former, transformers would hand it `attention_mask=None` and padding would be
silently lost.

The exact-row recompute implements plain causal softmax attention with an additive mask. A call that
asks for anything else (a bidirectional `is_causal=False`, logit soft-capping, attention sinks, a
position bias, a sliding window, or any keyword this function does not know) is refused when rows
would be recomputed, rather than answered with numbers that ignore it. Untargeted calls are the stock
SDPA call and honour whatever SDPA honours.
"""
from __future__ import annotations

import torch
from transformers import AttentionInterface, AttentionMaskInterface

from common.errors import ToolkitError
from intervention import rows
from intervention.compat import attention_weights_requested, repeat_kv, sdpa_attention_forward, sdpa_mask

ATTENTION_NAME = "scaling_vis"
# Keywords the language models pass that do not change the attention arithmetic (checked on every
# supported family; `scaling` and `dropout` are parameters). A None value never changes anything.
HARMLESS_KWARGS = frozenset({"position_ids", "use_cache", "output_attentions", "output_hidden_states",
                             "cache_position", "sliding_window", "is_causal"})


def scaling_vis_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: float | None = None, **kwargs):
    """Drop-in for `sdpa_attention_forward`: (B, H, q, D) query, (B, H_kv, k, D) key/value -> (B, q, H, D)."""
    editor, observers = rows.editor_for(module), rows.observers_for(module)
    wants_weights = bool(kwargs.get("output_attentions")) or attention_weights_requested()
    if editor is None and not observers:  # not a targeted language-model attention (vision tower, or idle)
        if wants_weights:
            return _eager(module, query, key, value, attention_mask, dropout, scaling, editor=None, plan=None)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    shape = (query.shape[0], query.shape[2], key.shape[2], query.device)
    plan = None
    if editor is not None:
        editor.note_call(module, query.shape[2], key.shape[2])
        _refuse_sliding_window(module, kwargs)
        plan = editor.plan(module, *shape)
        if plan is not None:
            refuse_unhonoured_kwargs(module, kwargs)
    for observer in observers:
        observed = observer.plan(module, *shape)
        if observed is not None:
            _refuse_sliding_window(module, kwargs)
            logits, probs = _row_probabilities(module, query, key, attention_mask, scaling, observed, editor)
            observer.observe(module, logits, probs, observed)
    if wants_weights:
        return _eager(module, query, key, value, attention_mask, dropout, scaling, editor=editor, plan=plan)
    out, weights = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                          scaling=scaling, **kwargs)
    if plan is not None:
        out = _overwrite_rows(out, module, query, key, value, attention_mask, dropout, scaling, editor, plan)
    return out, weights


def _refuse_sliding_window(module, kwargs) -> None:
    # A sliding-window cache returns only the window's keys, so key index != absolute position and the
    # targeted row / image columns would be wrong.
    if kwargs.get("sliding_window") is not None or getattr(module, "sliding_window", None) is not None:
        raise ToolkitError("ScalingVis/AdaptVis do not support models with sliding-window attention layers yet; "
                           "use a model without sliding windows")


def refuse_unhonoured_kwargs(module, kwargs) -> None:
    """Refuse what the exact-row recompute would silently ignore (see the module docstring)."""
    unknown = sorted(name for name, value in kwargs.items()
                     if value is not None and name not in HARMLESS_KWARGS)
    if kwargs.get("is_causal") is False or not getattr(module, "is_causal", True):
        unknown.append("is_causal=False")
    if getattr(module, "attn_logit_softcapping", None) is not None or getattr(module, "sinks", None) is not None:
        unknown.append("soft-capping/sinks of the module")
    if unknown:
        raise ToolkitError(f"ScalingVis cannot recompute the attention of {type(module).__name__}: it asks for "
                           f"{', '.join(unknown)}, which the exact-row recompute does not implement; this model "
                           f"(or transformers version) is not supported")


def _overwrite_rows(out, module, query, key, value, attention_mask, dropout, scaling, editor, plan) -> torch.Tensor:
    """Recompute the editor's planned (batch rows x query rows) exactly and write them into `out` (B, q, H, D).
    In place, unless autograd records the call: SDPA saves its output for the backward pass, so gradients
    (e.g. saliency maps under an intervention) need a new tensor."""
    logits = editor.edit_logits(module, _row_logits(module, query, key, scaling, plan), plan)
    probs = _masked_softmax(logits, attention_mask, plan)
    editor.after_rows(module, logits, probs, plan)
    probs = editor.edit_probs(module, probs, plan).to(query.dtype)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    v = repeat_kv(_batch_rows(value, plan.batch_rows), module.num_key_value_groups)
    rows_out = torch.matmul(probs, v).transpose(1, 2).to(out.dtype)         # (b, r, H, D)
    index = (plan.batch_rows[:, None], plan.query_rows[None, :])
    if out.requires_grad:
        return out.index_put(index, rows_out)
    out[index] = rows_out
    return out


def _row_probabilities(module, query, key, attention_mask, scaling, plan, editor):
    """What the model computes for the planned rows, for observers: logits (after the editor's edit, before
    the mask) and float32 probabilities (after the editor's edit), (b, H, r, k) each."""
    logits = _row_logits(module, query, key, scaling, plan)
    if editor is not None:
        logits = editor.edit_logits(module, logits, plan)
    probs = _masked_softmax(logits, attention_mask, plan)
    return logits, probs if editor is None else editor.edit_probs(module, probs, plan)


def _row_logits(module, query, key, scaling, plan) -> torch.Tensor:
    """(b, H, r, k) `q.k * scaling` of the planned rows."""
    q = _batch_rows(query, plan.batch_rows)[:, :, plan.query_rows]          # (b, H, r, D)
    k = repeat_kv(_batch_rows(key, plan.batch_rows), module.num_key_value_groups)
    return torch.matmul(q, k.transpose(2, 3)) * _scale(scaling, query)


def _masked_softmax(logits, attention_mask, plan) -> torch.Tensor:
    mask = _additive_mask(attention_mask, plan.batch_rows, plan.query_rows, plan.row_positions, logits)
    return torch.softmax(logits + mask, dim=-1, dtype=torch.float32)


def _batch_rows(tensor, batch):
    """tensor[batch] without the copy when every row is targeted (a batched alpha sweep), else a gather:
    advanced indexing of a (b, H, k, D) cache is several times slower than index_select on CPU."""
    return tensor if batch.numel() == tensor.shape[0] else tensor.index_select(0, batch)


def _eager(module, query, key, value, attention_mask, dropout, scaling, editor, plan):
    """Full eager attention returning weights; the editor's planned rows are edited as above."""
    k = repeat_kv(key, module.num_key_value_groups)
    v = repeat_kv(value, module.num_key_value_groups)
    logits = torch.matmul(query, k.transpose(2, 3)) * _scale(scaling, query)  # (B, H, q, k)
    cells = None if plan is None else (plan.batch_rows[:, None], slice(None), plan.query_rows[None, :])
    if plan is not None:
        logits[cells] = editor.edit_logits(module, logits[cells].transpose(1, 2), plan).transpose(1, 2)
    q_len, kv_len = query.shape[2], key.shape[2]
    all_batch = torch.arange(query.shape[0], device=query.device)
    all_rows = torch.arange(q_len, device=query.device)
    positions = kv_len - q_len + all_rows
    if attention_mask is not None or getattr(module, "is_causal", True):
        logits = logits + _additive_mask(attention_mask, all_batch, all_rows, positions, logits)
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
    if plan is not None:
        rows_probs = probs[cells].transpose(1, 2)
        editor.after_rows(module, logits[cells].transpose(1, 2), rows_probs, plan)
        probs[cells] = editor.edit_probs(module, rows_probs, plan).transpose(1, 2)
    probs = torch.nn.functional.dropout(probs.to(query.dtype), p=dropout, training=module.training)
    return torch.matmul(probs, v).transpose(1, 2).contiguous(), probs


def _scale(scaling: float | None, query) -> float:
    return scaling if scaling is not None else query.shape[-1] ** -0.5


def _additive_mask(attention_mask, batch, rows, positions, logits) -> torch.Tensor:
    """The additive mask of the selected rows, broadcastable to `logits` (b, H, r, k).

    transformers passes a boolean mask (True = attend) from `sdpa_mask`, or None when plain causal
    attention suffices; a float mask is already additive.
    """
    min_value = torch.finfo(logits.dtype).min
    if attention_mask is None:
        keys = torch.arange(logits.shape[-1], device=logits.device)
        allowed = keys[None, :] <= positions[:, None]                           # (r, k)
        return torch.where(allowed, 0.0, min_value).to(logits.dtype)[None, None]
    if attention_mask.shape[0] == 1:  # one mask shared by the whole batch
        selected = attention_mask[:, :, rows]
    else:
        selected = attention_mask[batch][:, :, rows]                            # (b, 1|H, r, k)
    if selected.dtype == torch.bool:
        return torch.where(selected, 0.0, min_value).to(logits.dtype)
    return selected.to(logits.dtype)


def register() -> None:
    """Register the function under `ATTENTION_NAME` (idempotent; done on import of `intervention`)."""
    AttentionInterface.register(ATTENTION_NAME, scaling_vis_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
