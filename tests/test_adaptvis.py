"""AdaptVis decisions (rounding, boundaries, validation) and the answer session on tiny models."""
from __future__ import annotations

import logging

import pytest
import torch

from common.errors import ToolkitError
from intervention import AdaptVis, ScalingVis, open_session
from intervention.adapt_vis import SHARPEN, SMOOTH
from tests.conftest import two_sample_inputs


def test_rounding_boundary_takes_the_sharpen_branch():
    alphas, branches, rounded = AdaptVis(weight1=0.5, weight2=1.5, threshold=0.3).decide(
        torch.tensor([0.2988, 0.2949, 0.31, 0.0, 1.0]))
    assert branches == [SHARPEN, SMOOTH, SHARPEN, SMOOTH, SHARPEN]
    assert alphas.tolist() == [1.5, 0.5, 1.5, 0.5, 1.5]
    assert torch.allclose(rounded, torch.tensor([0.30, 0.29, 0.31, 0.0, 1.0]))


def test_alphas_are_exactly_the_weights_given():
    alphas, _, _ = AdaptVis(weight1=0.8, weight2=1.2, threshold=0.5).decide(torch.tensor([0.1, 0.9]))
    assert alphas.tolist() == [0.8, 1.2]


def test_without_rounding_the_raw_confidence_is_compared():
    _, branches, compared = AdaptVis(threshold=0.3, round_confidence=False).decide(torch.tensor([0.2988]))
    assert branches == [SMOOTH] and compared.item() == pytest.approx(0.2988)


def test_confidence_equal_to_threshold_sharpens_in_float32():
    # fp32(0.35) < float64(0.35); the original compared in the tensor's float32, where they are equal.
    _, branches, _ = AdaptVis(threshold=0.35).decide(torch.tensor([0.35, 0.3449]))
    assert branches == [SHARPEN, SMOOTH]


@pytest.mark.parametrize("kwargs", [dict(threshold=1.2), dict(threshold=-0.1), dict(weight1=-0.5),
                                    dict(weight2=float("nan"))])
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(ToolkitError):
        AdaptVis(**kwargs)


def test_reversed_weights_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="intervention.adapt_vis"):
        AdaptVis(weight1=2.0, weight2=0.5)
    assert "weight1" in caplog.text


def test_to_dict_records_the_settings():
    assert AdaptVis(0.5, 1.2, 0.3).to_dict() == {
        "method": "adapt_vis", "weight1": 0.5, "weight2": 1.2, "threshold": 0.3, "round_confidence": True,
        "scope": "prefill", "layers": None}


def test_session_confidence_and_baseline_answers(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm)
    session = open_session(tiny_vlm, inputs, max_new_tokens=3)
    with torch.no_grad():
        positions = None
        if tiny_vlm.spec.rope == "llama":  # what generate does for left padding
            positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        logits = tiny_vlm.model(**inputs, position_ids=positions).logits[:, -1]
    expected = torch.softmax(logits, dim=-1).max(-1).values
    assert session.confidence.shape == (2,)
    assert torch.allclose(session.confidence, expected, atol=1e-6)
    stock = tiny_vlm.generate(inputs, 3)
    assert session.answers(1.0) == stock and session.answers([1.0, 1.0]) == stock
    with ScalingVis(tiny_vlm, alpha=[0.0, 2.0]):
        scaled = tiny_vlm.generate(inputs, 3)
    assert session.answers([0.0, 2.0]) == scaled


def test_adaptvis_run_follows_the_rule_per_row(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm)
    confidence = open_session(tiny_vlm, inputs, max_new_tokens=1).confidence
    low, high = sorted(confidence.tolist())
    assert high - low > 1e-6  # two different samples give two different confidences
    adapt = AdaptVis(weight1=0.0, weight2=2.0, threshold=(low + high) / 2, round_confidence=False)
    answers = adapt.run(tiny_vlm, inputs, max_new_tokens=3)
    expected_alpha = [0.0 if c < (low + high) / 2 else 2.0 for c in confidence.tolist()]
    assert [a.alpha for a in answers] == expected_alpha
    assert [a.branch for a in answers] == [SMOOTH if a == 0.0 else SHARPEN for a in expected_alpha]
    assert [a.confidence for a in answers] == pytest.approx(confidence.tolist(), abs=1e-7)
    with ScalingVis(tiny_vlm, alpha=expected_alpha):
        assert [a.text for a in answers] == tiny_vlm.generate(inputs, 3)
    assert set(answers[0].to_dict()) == {"text", "confidence", "confidence_rounded", "branch", "alpha"}
