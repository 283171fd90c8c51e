"""The intervention checks itself: scope "all" really scales generated tokens (against an eager reference,
under both engines), and every way a transformers change could make it silently compute something else
(an unswitched language model, a function that is never called, a cache passed in an unknown way,
attention options the recompute would ignore) is a loud error."""
from __future__ import annotations

import pytest
import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.masking_utils import eager_mask

from common.errors import ToolkitError
from intervention import ATTENTION_NAME, ScalingVis, open_session
from intervention import lm as lm_module
from intervention.attention import scaling_vis_attention
from intervention.compat import sdpa_attention_forward
from model_zoo.vlm import VLM
from tests.conftest import two_sample_inputs
from tests.eager_reference import eager_logits, eager_output

STEPS = 3
EVERY_STEP_NAME = "test_reference_every_step"
_REFERENCE = {"alpha": None, "image_mask": None}


def every_step_reference(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Plain eager attention that scales, in every call, the logits of the call's last query row (the last
    prompt position at prefill, the new token at each decode step) toward the prompt's image keys."""
    scores, v = eager_logits(query, key, value, scaling)
    prompt_mask = _REFERENCE["image_mask"]
    image = torch.zeros(scores.shape[0], scores.shape[-1], dtype=torch.bool)
    image[:, :prompt_mask.shape[1]] = prompt_mask
    alpha = torch.as_tensor(_REFERENCE["alpha"], dtype=scores.dtype).reshape(-1, 1)
    last = scores[:, :, -1, :]
    scores[:, :, -1, :] = torch.where(image[:, None, :], last * alpha[:, None], last)
    return eager_output(scores, v, attention_mask, query.dtype)


AttentionInterface.register(EVERY_STEP_NAME, every_step_reference)
AttentionMaskInterface.register(EVERY_STEP_NAME, eager_mask)


def _reference_generate(vlm, inputs, alphas):
    _REFERENCE.update(alpha=alphas, image_mask=inputs["input_ids"] == vlm.image_token_id)
    vlm.model.set_attn_implementation({"text_config": EVERY_STEP_NAME})
    try:
        out = vlm.generate_ids(inputs, STEPS, output_logits=True, return_dict_in_generate=True)
    finally:
        vlm.model.set_attn_implementation({"text_config": "sdpa"})
    return out.sequences[:, inputs["input_ids"].shape[1]:], torch.stack(out.logits, dim=1)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "qwen3_vl"])
def test_scope_all_scales_every_generated_token_as_the_reference(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm, sizes=((56, 56), (30, 60)))
    alphas = [0.0, 2.0]
    expected_tokens, expected_logits = _reference_generate(tiny_vlm, inputs, alphas)
    with ScalingVis(tiny_vlm, alpha=alphas, scope="all"):
        out = tiny_vlm.generate_ids(inputs, STEPS, output_logits=True, return_dict_in_generate=True)
    n = inputs["input_ids"].shape[1]
    assert torch.equal(out.sequences[:, n:], expected_tokens)
    assert (torch.stack(out.logits, dim=1) - expected_logits).abs().max().item() <= 1e-5
    with ScalingVis(tiny_vlm, alpha=alphas, scope="prefill"):
        prefill = torch.stack(tiny_vlm.generate_ids(inputs, STEPS, output_logits=True,
                                                    return_dict_in_generate=True).logits, dim=1)
    assert (prefill[:, 1:] - expected_logits[:, 1:]).abs().max().item() > 1e-4  # decode steps really differ
    expected_texts = tiny_vlm.decode_new_tokens(expected_tokens, 0)
    for engine in ("naive", "prefix"):
        session = open_session(tiny_vlm, inputs, max_new_tokens=STEPS, scope="all", engine=engine)
        assert session.answers(alphas) == expected_texts, engine


def test_a_language_model_that_cannot_be_switched_is_refused(tiny_factory, monkeypatch):
    """A model whose language-model sub-config ignores set_attn_implementation would compute the baseline
    while the records say alpha != 1."""
    model, processor = tiny_factory("llava")
    vlm = VLM.from_loaded(model, processor)
    monkeypatch.setattr(model, "set_attn_implementation", lambda implementation: None)
    with pytest.raises(ToolkitError, match="could not switch the language model"):
        with ScalingVis(vlm, alpha=0.5):
            pass
    monkeypatch.undo()
    assert model.config.text_config._attn_implementation == "sdpa"


def test_a_forward_that_bypasses_the_function_is_refused(tiny_factory):
    """If transformers stopped looking the function up in the registry at every forward, alpha would
    silently not apply: the check after the forward notices that no layer called it."""
    model, processor = tiny_factory("llava")
    vlm = VLM.from_loaded(model, processor)
    inputs = two_sample_inputs(vlm)
    with ScalingVis(vlm, alpha=0.5):
        AttentionInterface.register(ATTENTION_NAME, sdpa_attention_forward)
        try:
            with pytest.raises(ToolkitError, match="did not call the toolkit.s attention function.*ScalingVis would not apply alpha"):
                with torch.no_grad():
                    model(**inputs)
        finally:
            AttentionInterface.register(ATTENTION_NAME, scaling_vis_attention)


def test_a_cache_passed_in_an_unknown_way_is_refused(tiny_factory, monkeypatch):
    """If the hook could not recognise generate's cache, every decode step would look like a new one-token
    prompt (what transformers 5.24's rename did to the old keyword-based check): a loud error instead."""
    model, processor = tiny_factory("qwen2_vl")
    vlm = VLM.from_loaded(model, processor)
    inputs = two_sample_inputs(vlm)
    monkeypatch.setattr(lm_module, "Cache", type("UnknownCache", (), {}))
    with ScalingVis(vlm, alpha=0.5, scope="all"):
        with pytest.raises(ToolkitError, match="passes the cache in a way"):
            vlm.generate(inputs, STEPS)


@pytest.mark.parametrize("option", [{"softcap": 30.0}, {"s_aux": torch.zeros(4)}, {"is_causal": False},
                                    {"position_bias": torch.zeros(1)}])
def test_attention_options_the_recompute_ignores_are_refused(tiny_factory, option):
    model, processor = tiny_factory("llava")
    vlm = VLM.from_loaded(model, processor)
    module = model.model.language_model.layers[0].self_attn
    n, heads, dim = 6, model.config.text_config.num_attention_heads, module.head_dim
    query, key = torch.randn(1, heads, n, dim), torch.randn(1, module.config.num_key_value_heads, n, dim)
    image = torch.zeros(1, n, dtype=torch.bool)
    image[0, :3] = True
    with ScalingVis(vlm, alpha=0.5, prompt=(n, image)):
        scaling_vis_attention(module, query, key, key, None, scaling=dim ** -0.5)  # plain call: fine
        with pytest.raises(ToolkitError, match="does not implement"):
            scaling_vis_attention(module, query, key, key, None, scaling=dim ** -0.5, **option)
    with ScalingVis(vlm, alpha=1.0, prompt=(n, image)):  # nothing recomputed: the stock call honours it
        if "is_causal" in option:
            scaling_vis_attention(module, query, key, key, None, scaling=dim ** -0.5, **option)


def test_scaled_calls_count_the_rows_that_were_rescaled(tiny_factory):
    model, processor = tiny_factory("llava")
    vlm = VLM.from_loaded(model, processor)
    inputs = two_sample_inputs(vlm)
    layers = model.config.text_config.num_hidden_layers
    for scope, expected in (("prefill", layers), ("all", layers * STEPS)):
        with ScalingVis(vlm, alpha=0.5, scope=scope) as scaling:
            vlm.generate(inputs, STEPS)
        assert scaling.scaled_calls == expected
    with ScalingVis(vlm, alpha=1.0) as scaling:
        vlm.generate(inputs, STEPS)
    assert scaling.scaled_calls == 0
