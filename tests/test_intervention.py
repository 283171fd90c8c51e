"""ScalingVis on tiny models of every family: passthrough, oracle agreement, locality, lifecycle, guards."""
from __future__ import annotations

import pytest
import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.masking_utils import eager_mask

from common.errors import ToolkitError
from intervention import ATTENTION_NAME, ScalingVis
from intervention import rows as rows_module
from intervention.attention import scaling_vis_attention
from model_zoo.tiny import build_tiny_vlm
from model_zoo.vlm import VLM
from tests.conftest import one_sample_inputs, two_sample_inputs
from tests.eager_reference import eager_logits, eager_output

REFERENCE_NAME = "test_reference_scaled_eager"
_REFERENCE = {"alpha": 1.0, "image_mask": None}


def reference_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Plain eager attention applying ScalingVis as the original code does, independent of the toolkit:
    in the square (prefill) call, multiply the last row's logits at image keys by alpha, then add the mask."""
    scores, v = eager_logits(query, key, value, scaling)
    if query.shape[2] == key.shape[2]:
        last = scores[:, :, -1, :]
        image = _REFERENCE["image_mask"][:, None, :]
        scores[:, :, -1, :] = torch.where(image, last * _REFERENCE["alpha"], last)
    return eager_output(scores, v, attention_mask, query.dtype)


AttentionInterface.register(REFERENCE_NAME, reference_attention)
AttentionMaskInterface.register(REFERENCE_NAME, eager_mask)


def _logits(model, inputs, **kwargs):
    with torch.no_grad():
        return model(**inputs, **kwargs).logits


def _vision_module(model):
    inner = model.model
    return getattr(inner, "vision_tower", None) or inner.visual


def _flat_tensors(output):
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _flat_tensors(item)]
    return []


def test_alpha_one_is_bit_identical_to_stock(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm)
    stock = _logits(tiny_vlm.model, inputs)
    stock_answers = tiny_vlm.generate(inputs, 3)
    with ScalingVis(tiny_vlm, alpha=1.0):
        assert torch.equal(_logits(tiny_vlm.model, inputs), stock)
        assert tiny_vlm.generate(inputs, 3) == stock_answers
    with ScalingVis(tiny_vlm, alpha=[1.0, 1.0], scope="all"):
        assert torch.equal(_logits(tiny_vlm.model, inputs), stock)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_matches_eager_reference(tiny_vlm, alpha):
    model = tiny_vlm.model
    inputs = two_sample_inputs(tiny_vlm)
    with ScalingVis(tiny_vlm, alpha=alpha):
        ours = _logits(model, inputs)
    _REFERENCE.update(alpha=alpha, image_mask=inputs["input_ids"] == tiny_vlm.image_token_id)
    model.set_attn_implementation({"text_config": REFERENCE_NAME})
    try:
        reference = _logits(model, inputs)
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    real = inputs["attention_mask"].bool()  # padded query rows are garbage in every implementation
    assert (ours - reference)[real].abs().max().item() <= 1e-5
    stock = _logits(model, inputs)
    assert (ours[:, -1] - stock[:, -1]).abs().max().item() > 1e-4  # the intervention does something


def test_only_last_row_and_language_model_change(tiny_vlm):
    model = tiny_vlm.model
    inputs = two_sample_inputs(tiny_vlm)
    captured = []
    hook = _vision_module(model).register_forward_hook(lambda m, a, out: captured.append(_flat_tensors(out)))
    try:
        with torch.no_grad():
            stock = model(**inputs, output_hidden_states=True)
            with ScalingVis(tiny_vlm, alpha=0.5):
                scaled = model(**inputs, output_hidden_states=True)
    finally:
        hook.remove()
    vision_stock, vision_scaled = captured
    assert len(vision_stock) > 0 and all(torch.equal(a, b) for a, b in zip(vision_stock, vision_scaled))
    for layer_stock, layer_scaled in zip(stock.hidden_states, scaled.hidden_states):
        assert torch.equal(layer_stock[:, :-1], layer_scaled[:, :-1])
    assert not torch.equal(stock.hidden_states[-1][:, -1], scaled.hidden_states[-1][:, -1])


def test_layer_subset_leaves_other_layers_untouched(tiny_factory):
    model, processor = tiny_factory("llava")
    vlm = VLM.from_loaded(model, processor)
    inputs = two_sample_inputs(vlm)
    with torch.no_grad():
        stock = model(**inputs, output_hidden_states=True).hidden_states
        with ScalingVis(vlm, alpha=0.0, layers=[1]):
            scaled = model(**inputs, output_hidden_states=True).hidden_states
    assert torch.equal(stock[1], scaled[1])  # output of layer 0
    assert not torch.equal(stock[2][:, -1], scaled[2][:, -1])


def test_attention_weights_come_from_the_same_scaling(tiny_factory):
    model, processor = tiny_factory("qwen2_vl")
    vlm = VLM.from_loaded(model, processor)
    inputs = one_sample_inputs(vlm, 1)  # no padding: padded query rows differ between kernels
    with ScalingVis(vlm, alpha=2.0):
        plain = _logits(model, inputs)
        with torch.no_grad():
            with_weights = model(**inputs, output_attentions=True)
    assert (with_weights.logits - plain).abs().max().item() <= 1e-5
    weights = with_weights.attentions[0]                                       # (B, H, n, n)
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5)
    with torch.no_grad():
        model.set_attn_implementation({"text_config": "eager"})
        try:
            stock_weights = model(**inputs, output_attentions=True).attentions[0]
        finally:
            model.set_attn_implementation({"text_config": "sdpa"})
    assert torch.allclose(weights[:, :, :-1], stock_weights[:, :, :-1], atol=1e-6)
    assert not torch.allclose(weights[:, :, -1], stock_weights[:, :, -1], atol=1e-4)


def test_context_manager_restores_after_exception_and_nests(tiny_factory):
    model, processor = tiny_factory("llava")
    vlm = VLM.from_loaded(model, processor)
    inputs = two_sample_inputs(vlm)
    hooks_before = len(model._forward_pre_hooks)
    stock = _logits(model, inputs)
    with pytest.raises(KeyError):
        with ScalingVis(model, alpha=0.5):
            raise KeyError("boom")
    assert model.config.text_config._attn_implementation == "sdpa"
    assert model.config.vision_config._attn_implementation == "sdpa"
    assert len(model._forward_pre_hooks) == hooks_before and not rows_module.active()
    with ScalingVis(model, alpha=2.0):
        only_two = _logits(model, inputs)
    with ScalingVis(model, alpha=0.5) as outer:
        only_half = _logits(model, inputs)
        with ScalingVis(model, alpha=2.0):
            assert model.config.text_config._attn_implementation == ATTENTION_NAME
            assert torch.equal(_logits(model, inputs), only_two)
        assert model.config.text_config._attn_implementation == ATTENTION_NAME
        assert torch.equal(_logits(model, inputs), only_half)
        assert outer.state is not None
    assert model.config.text_config._attn_implementation == "sdpa"
    assert torch.equal(_logits(model, inputs), stock)
    assert len(model._forward_pre_hooks) == hooks_before and not rows_module.active()


def test_vision_tower_never_runs_the_custom_function(tiny_vlm):
    model = tiny_vlm.model
    inputs = two_sample_inputs(tiny_vlm)
    vision_ids = {id(m) for m in _vision_module(model).modules()}
    calls = []

    def spy(module, *args, **kwargs):
        calls.append(id(module))
        return scaling_vis_attention(module, *args, **kwargs)

    with torch.no_grad():
        stock_vision = []
        hook = _vision_module(model).register_forward_hook(lambda m, a, o: stock_vision.append(_flat_tensors(o)))
        try:
            model(**inputs)
            with ScalingVis(tiny_vlm, alpha=0.5) as active:
                AttentionInterface.register(ATTENTION_NAME, spy)
                try:
                    model(**inputs)
                    lm_calls = list(calls)
                    # Guard inside the function: even if the vision tower is switched to our name, it passes through.
                    model.set_attn_implementation({"vision_config": ATTENTION_NAME})
                    model(**inputs)
                finally:
                    model.set_attn_implementation({"vision_config": "sdpa"})
                    AttentionInterface.register(ATTENTION_NAME, scaling_vis_attention)
        finally:
            hook.remove()
    assert len(lm_calls) == model.config.text_config.num_hidden_layers
    assert set(lm_calls) <= _lm_ids(model) and not set(lm_calls) & vision_ids
    assert set(calls) & vision_ids  # the vision tower did reach the function in the guarded run ...
    assert all(torch.equal(a, b) for a, b in zip(stock_vision[0], stock_vision[2]))  # ... and was untouched
    assert active.state is None


def _lm_ids(model):
    return {id(m) for m in model.model.language_model.modules() if getattr(m, "layer_idx", None) is not None}


def test_invalid_alpha_and_layers_are_refused(tiny_factory):
    model, _ = tiny_factory("llava")
    for bad in (-0.1, float("nan"), [0.5, -1.0]):
        with pytest.raises(ToolkitError, match="alpha"):
            ScalingVis(model, alpha=bad)
    with pytest.raises(ToolkitError, match="layers"):
        ScalingVis(model, alpha=0.5, layers=[7])
    with pytest.raises(ToolkitError, match="scope"):
        ScalingVis(model, alpha=0.5, scope="decode")


def test_alpha_count_must_match_batch(tiny_factory):
    model, processor = tiny_factory("llava")
    vlm = VLM.from_loaded(model, processor)
    inputs = two_sample_inputs(vlm)
    with ScalingVis(vlm, alpha=[0.5, 1.0, 2.0]), pytest.raises(ToolkitError, match="one per row"):
        _logits(model, inputs)


def test_right_padding_is_refused(tiny_factory):
    model, processor = tiny_factory("qwen2_vl")
    vlm = VLM.from_loaded(model, processor)
    processor.tokenizer.padding_side = "right"
    try:
        inputs = two_sample_inputs(vlm)
    finally:
        processor.tokenizer.padding_side = "left"
    with ScalingVis(vlm, alpha=0.5), pytest.raises(ToolkitError, match="left"):
        _logits(model, inputs)


def test_sliding_window_models_are_refused():
    model, _ = build_tiny_vlm("qwen2_vl", lm_layers=1, text_config={
        "use_sliding_window": True, "sliding_window": 8, "layer_types": ["sliding_attention"]})
    with pytest.raises(ToolkitError, match="sliding-window"):
        with ScalingVis(model, alpha=0.5):
            pass
    assert model.config.text_config._attn_implementation == "sdpa" and not rows_module.active()


def test_set_alpha_while_active_and_to_dict(tiny_factory):
    model, processor = tiny_factory("qwen3_vl")
    vlm = VLM.from_loaded(model, processor)
    inputs = two_sample_inputs(vlm)
    with ScalingVis(vlm, alpha=[0.0, 2.0]):
        expected = _logits(model, inputs)
    with ScalingVis(vlm, alpha=0.5, layers=[0, 1]) as scaling:
        scaling.set_alpha([0.0, 2.0])
        assert torch.equal(_logits(model, inputs), expected)
        assert scaling.to_dict() == {"method": "scaling_vis", "alpha": [0.0, 2.0], "scope": "prefill", "layers": [0, 1]}
    assert ScalingVis(vlm, alpha=0.8, scope="all").to_dict()["alpha"] == 0.8
