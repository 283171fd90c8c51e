"""ScalingVis across batches, positions and decode steps: per-row alpha, pinned prompts (M-RoPE), scope."""
from __future__ import annotations

import torch

from intervention import ScalingVis
from intervention.compat import cache_kwarg, output_cache
from tests.conftest import one_sample_inputs, two_sample_inputs

ALPHAS = (0.5, 2.0)


def _step_logits(vlm, inputs, max_new_tokens):
    out = vlm.generate_ids(inputs, max_new_tokens, output_logits=True, return_dict_in_generate=True)
    return out.sequences[:, inputs["input_ids"].shape[1]:], torch.stack(out.logits, dim=1)  # (B, T), (B, T, V)


def test_left_padded_batch_with_per_row_alpha_equals_single_runs(tiny_vlm, family):
    batch = two_sample_inputs(tiny_vlm)
    image_counts = (batch["input_ids"] == tiny_vlm.image_token_id).sum(-1)
    assert bool((batch["attention_mask"] == 0).any())  # really padded
    if family == "llava_next":  # anyres: the two image sizes give different numbers of image tokens
        assert image_counts[0] != image_counts[1]
    with ScalingVis(tiny_vlm, alpha=list(ALPHAS)):
        batch_tokens, batch_logits = _step_logits(tiny_vlm, batch, 3)
    for row, alpha in enumerate(ALPHAS):
        with ScalingVis(tiny_vlm, alpha=alpha):
            tokens, logits = _step_logits(tiny_vlm, one_sample_inputs(tiny_vlm, row), 3)
        assert torch.equal(batch_tokens[row], tokens[0])
        assert (batch_logits[row] - logits[0]).abs().max().item() <= 1e-5


def _position_ids(vlm, inputs):
    """What generate would use: M-RoPE indices for Qwen, cumsum of the mask for LLaMA-style models."""
    mask = inputs["attention_mask"]
    if vlm.spec.rope == "mrope":
        positions, _ = vlm.model.model.get_rope_index(
            inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"], attention_mask=mask)
        return positions
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _sliced(inputs, start, stop):
    return {k: inputs[k][:, start:stop] for k in ("input_ids", "mm_token_type_ids") if k in inputs}


def test_pinned_prompt_in_two_calls_with_explicit_positions_equals_full_forward(tiny_vlm):
    """Prefix [0, n-1) unscaled, then the last prompt token against the cache, scaled: the layout issue 5's
    prefix sharing uses. For Qwen this checks the M-RoPE positions (pitfall 3 of the reference)."""
    model = tiny_vlm.model
    inputs = two_sample_inputs(tiny_vlm)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    n = ids.shape[1]
    positions = _position_ids(tiny_vlm, inputs)
    pixels = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    with torch.no_grad():
        with ScalingVis(tiny_vlm, alpha=list(ALPHAS)):
            full = model(**inputs, position_ids=positions).logits[:, -1]
        with ScalingVis(tiny_vlm, alpha=list(ALPHAS), prompt=(n, ids == tiny_vlm.image_token_id)):
            prefix = model(**_sliced(inputs, 0, n - 1), **pixels, attention_mask=mask[:, :n - 1],
                           position_ids=positions[..., :n - 1], use_cache=True)
            cache = output_cache(prefix)
            assert cache.get_seq_length() == n - 1
            last = model(**_sliced(inputs, n - 1, n), attention_mask=mask, position_ids=positions[..., n - 1:],
                         **{cache_kwarg(model): cache}).logits[:, -1]
        stock = model(**inputs, position_ids=positions).logits[:, -1]
    assert (full - last).abs().max().item() <= 1e-5
    assert (full - stock).abs().max().item() > 1e-4


def test_scope_prefill_and_all_differ_only_in_decode_steps(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm)
    with ScalingVis(tiny_vlm, alpha=0.0, scope="prefill"):
        prefill_tokens, prefill_logits = _step_logits(tiny_vlm, inputs, 3)
    with ScalingVis(tiny_vlm, alpha=0.0, scope="all"):
        all_tokens, all_logits = _step_logits(tiny_vlm, inputs, 3)
    assert torch.equal(prefill_logits[:, 0], all_logits[:, 0])
    assert torch.equal(prefill_tokens[:, 0], all_tokens[:, 0])
    assert (prefill_logits[:, 1:] - all_logits[:, 1:]).abs().max().item() > 1e-5
