"""Attention capture (intervention.capture): the captured rows are the model's own attention rows (an eager
reference within 1e-5, with and without ScalingVis), they sum to 1 over all keys, and capturing never
changes an output."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.masking_utils import eager_mask

from common.errors import ToolkitError
from intervention import rows
from intervention.capture import capture, capture_attention
from intervention.compat import attention_implementation
from model_zoo.tiny import FAMILIES
from model_zoo.vlm import VLM
from tests.conftest import noise_image, two_sample_inputs
from tests.eager_reference import eager_logits, eager_output

SIZES = [(80, 30), (30, 60)]  # the images of two_sample_inputs


REFERENCE_NAME = "test_capture_reference"
_REFERENCE = {"alpha": None, "image_mask": None}


def reference_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Plain eager attention returning its weights; in the square (prefill) call it multiplies the last row's
    logits at image keys by each row's alpha (ScalingVis, scope prefill), written independently of the toolkit."""
    scores, v = eager_logits(query, key, value, scaling)
    if _REFERENCE["alpha"] is not None and query.shape[2] == key.shape[2]:
        alpha = torch.as_tensor(_REFERENCE["alpha"], dtype=scores.dtype).reshape(-1, 1, 1)
        last = scores[:, :, -1, :]
        scores[:, :, -1, :] = torch.where(_REFERENCE["image_mask"][:, None, :], last * alpha, last)
    return eager_output(scores, v, attention_mask, query.dtype)


AttentionInterface.register(REFERENCE_NAME, reference_attention)
AttentionMaskInterface.register(REFERENCE_NAME, eager_mask)


def _eager_attentions(vlm, inputs, alpha, max_new_tokens):
    """generate's attention weights per step (tuple per layer of (B, H, q, k)) from the reference above."""
    model = vlm.model
    _REFERENCE.update(alpha=alpha, image_mask=inputs["input_ids"] == vlm.image_token_id)
    model.set_attn_implementation({"text_config": REFERENCE_NAME})
    try:
        config = vlm.generation_config(max_new_tokens, output_attentions=True, return_dict_in_generate=True)
        with torch.no_grad():
            return model.generate(**inputs, generation_config=config).attentions
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})


def _check_against(reference, result, inputs):
    for sample in result.samples:
        b = sample.row
        real = inputs["attention_mask"][b].bool()
        for step, row in enumerate(sample.rows):
            expected = torch.stack([layer[b, :, -1] for layer in reference[step]]).float().numpy()  # (L, H, k)
            assert np.abs(row.image - expected[:, :, sample.image_positions]).max() <= 1e-5
            assert np.abs(row.text - expected[:, :, row.text_positions]).max() <= 1e-5
            total = row.image.sum(-1) + row.text.sum(-1)
            assert np.abs(total - 1.0).max() <= 1e-5
            assert not np.isin(row.text_positions, sample.image_positions).any()
            prompt_keys = row.text_positions[row.text_positions < real.shape[0]]
            assert real[prompt_keys].all()  # padding keys are not text keys
        assert [r.position for r in sample.rows] == list(range(real.shape[0] - 1, real.shape[0] - 1 + len(sample.rows)))


@pytest.mark.parametrize("family", FAMILIES)
def test_captured_rows_are_the_models_attention_with_and_without_scalingvis(tiny_factory, family):
    vlm = VLM.from_loaded(*tiny_factory(family))
    inputs = two_sample_inputs(vlm)
    for alpha in (None, [0.5, 2.0]):
        result = capture(vlm, inputs, alpha=1.0 if alpha is None else alpha, max_new_tokens=3, generated=True)
        assert len(result.samples) == 2 and all(len(s.rows) == 3 for s in result.samples)
        if alpha is None:
            assert result.generation.texts == vlm.generate(inputs, 3)
        _check_against(_eager_attentions(vlm, inputs, alpha, 3), result, inputs)
        for sample in result.samples:
            expected = torch.nonzero(inputs["input_ids"][sample.row] == vlm.image_token_id).flatten().numpy()
            assert np.array_equal(sample.image_positions, expected)


def test_image_logits_are_scaled_by_alpha_in_the_first_layer(tiny_factory):
    vlm = VLM.from_loaded(*tiny_factory("llava"))
    inputs = two_sample_inputs(vlm)
    stock, scaled = capture(vlm, inputs), capture(vlm, inputs, alpha=[2.0, 0.5])
    for sample, alpha in zip(scaled.samples, (2.0, 0.5)):
        before = stock.samples[sample.row].rows[0].image_logits[0]
        assert np.allclose(sample.rows[0].image_logits[0], alpha * before, atol=1e-5)


def test_capturing_changes_no_output_and_leaves_nothing_behind(tiny_factory):
    vlm = VLM.from_loaded(*tiny_factory("qwen2_vl"))
    inputs = two_sample_inputs(vlm)
    config = vlm.generation_config(4, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        stock = vlm.model.generate(**inputs, generation_config=config)
        stock_logits = vlm.model(**inputs).logits
        with capture_attention(vlm, generated=True) as cap:
            observed = vlm.model.generate(**inputs, generation_config=config)
        after = vlm.model(**inputs).logits
    assert torch.equal(stock.sequences, observed.sequences)
    assert all(torch.equal(a, b) for a, b in zip(stock.logits, observed.logits))
    assert torch.equal(stock_logits, after)
    assert len(cap.samples) == 2
    assert attention_implementation(vlm.model.config.get_text_config()) == "sdpa" and rows.active() == ()


def test_each_finished_sample_is_handed_away_as_soon_as_the_next_prompt_starts(tiny_factory):
    vlm = VLM.from_loaded(*tiny_factory("llava"))
    inputs = two_sample_inputs(vlm)
    handed, counts = [], []
    with torch.no_grad(), capture_attention(vlm, on_sample=handed.append) as cap:
        for _ in range(2):
            vlm.model(**inputs, logits_to_keep=1)
            counts.append(len(handed))
    assert counts == [0, 2] and [s.row for s in handed] == [0, 1, 0, 1] and cap.samples == []


def test_geometry_puts_the_capture_on_the_image_grid(tiny_factory):
    vlm = VLM.from_loaded(*tiny_factory("llava_next"))
    inputs = two_sample_inputs(vlm)
    result = capture(vlm, inputs, image_sizes=SIZES)
    for sample in result.samples:
        grid = sample.image_grid()
        layers, heads = sample.rows[0].image.shape[:2]
        spec = sample.geometry.grids[sample.geometry.primary]
        assert grid.shape == (layers, heads, spec.rows, spec.cols)
        token = int(sample.geometry.grid_tokens()[0, 0])
        assert np.allclose(grid[..., 0, 0], sample.rows[0].image[..., token])


def test_right_padding_is_refused(tiny_factory):
    vlm = VLM.from_loaded(*tiny_factory("llava"))
    images = [noise_image(w, h, seed) for seed, (w, h) in enumerate(SIZES)]
    prompts = [vlm.build_prompt("Where is the mug?"), vlm.build_prompt("Where is the mug in relation to the table?")]
    vlm.processor.tokenizer.padding_side = "right"
    try:
        right = vlm.processor(images=images, text=prompts, padding=True, return_tensors="pt")
    finally:
        vlm.processor.tokenizer.padding_side = "left"
    with pytest.raises(ToolkitError, match="right-padded"), torch.no_grad(), capture_attention(vlm):
        vlm.model(**right)
