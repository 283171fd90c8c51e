"""AnswerSession: the prefix engine equals the naive one (confidences, answers, AdaptVis branches) on tiny
models of every family, in left-padded batches and alone; grids through the runner equal separate runs."""
from __future__ import annotations

import pytest
import torch

from common.errors import ToolkitError
from intervention import AdaptVis, open_session
from intervention.session import NaiveSession, PrefixSession
from methods import Configuration
from methods.alpha import answer_rounds
from tests.conftest import one_sample_inputs, two_sample_inputs

SIZES = ((56, 56), (30, 60))  # see tests/test_prefix_sharing.py
TOKENS = 3
ALPHA_SETS = (1.0, [0.0, 2.0], 0.5, [1.0, 0.5])


def _sessions(vlm, inputs, **kwargs):
    return (open_session(vlm, inputs, max_new_tokens=TOKENS, **kwargs),
            open_session(vlm, inputs, max_new_tokens=TOKENS, engine="naive", **kwargs))


def _threshold_between(confidence: torch.Tensor) -> float:
    """A threshold splitting the rows' confidences, >= 1e-6 from each: the engines' confidences differ by
    ~1e-9, so a tie could flip a branch (pitfall 8), a 1e-6 margin cannot."""
    low, high = sorted(confidence.tolist())
    assert high - low > 2e-6
    return (low + high) / 2


def test_prefix_engine_equals_naive_on_a_padded_batch(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    fast, naive = _sessions(tiny_vlm, inputs)
    assert isinstance(fast, PrefixSession) and isinstance(naive, NaiveSession)
    assert fast.confidence.dtype == torch.float32 and fast.confidence.shape == (2,)
    assert (fast.confidence - naive.confidence).abs().max().item() <= 1e-6
    for alphas in ALPHA_SETS:
        assert fast.answers(alphas) == naive.answers(alphas)
    threshold = _threshold_between(naive.confidence)
    adapt = AdaptVis(weight1=0.0, weight2=2.0, threshold=threshold, round_confidence=False)
    fast_answers, naive_answers = adapt.answer(fast), adapt.answer(naive)
    assert [a.branch for a in fast_answers] == [a.branch for a in naive_answers]
    assert [a.text for a in fast_answers] == [a.text for a in naive_answers]
    assert [a.confidence for a in fast_answers] == pytest.approx([a.confidence for a in naive_answers], abs=1e-6)


def test_a_padded_batch_equals_its_rows_alone(tiny_vlm):
    batch = open_session(tiny_vlm, two_sample_inputs(tiny_vlm, sizes=SIZES), max_new_tokens=TOKENS)
    for row in range(2):
        alone = open_session(tiny_vlm, one_sample_inputs(tiny_vlm, row, sizes=SIZES), max_new_tokens=TOKENS)
        assert abs(alone.confidence.item() - batch.confidence[row].item()) <= 1e-5
        for alphas in ([0.0, 2.0], 1.0):
            row_alpha = alphas[row] if isinstance(alphas, list) else alphas
            assert alone.answers(row_alpha) == [batch.answers(alphas)[row]]


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl"])
@pytest.mark.parametrize("scope, layers", [("all", None), ("prefill", [1])])
def test_scope_and_layers_reach_both_engines(tiny_vlm, scope, layers):
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    fast, naive = _sessions(tiny_vlm, inputs, scope=scope, layers=layers)
    assert fast.answers([0.0, 2.0]) == naive.answers([0.0, 2.0])


def _grid(threshold: float) -> list[Configuration]:
    def adapt(weight1, weight2, t):
        return Configuration.of("adapt_vis", weight1=weight1, weight2=weight2, threshold=t, round_confidence=False)

    return [Configuration.of("base"), Configuration.of("scaling_vis", weight=0.8),
            Configuration.of("scaling_vis", weight=2.0), adapt(0.0, 2.0, threshold), adapt(0.8, 2.0, threshold),
            adapt(0.8, 2.0, 1.0)]


def _separate_run(vlm, inputs, spec: Configuration) -> list[str]:
    """What a run of this one configuration answers, on the naive engine."""
    session = open_session(vlm, inputs, max_new_tokens=TOKENS, engine="naive")
    if spec.method == "adapt_vis":
        adapt = AdaptVis(weight1=spec.get("weight1"), weight2=spec.get("weight2"), threshold=spec.get("threshold"),
                         round_confidence=False)
        return [a.text for a in adapt.answer(session)]
    return session.answers(1.0 if spec.method == "base" else spec.get("weight"))


@pytest.mark.parametrize("family", ["llava_next", "qwen2_vl"])
def test_grid_through_the_runner_equals_separate_runs_in_one_batched_branch(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    session = open_session(tiny_vlm, inputs, max_new_tokens=TOKENS)
    confidence = session.confidence
    specs = _grid(_threshold_between(confidence))
    choices = [spec.entry.choose(spec.hyperparameters, confidence) for spec in specs]  # AlphaStrategy's path
    answers = answer_rounds(session, choices)
    # Every alpha other than 1 of every row (0.8 from ScalingVis and from AdaptVis are one alpha) ran in a
    # single batched branch; alpha 1 continued the confidence step.
    assert session.branch_calls == 1
    for spec, spec_choices in zip(specs, choices):
        expected = _separate_run(tiny_vlm, inputs, spec)
        assert [answers[(row, c.alpha)] for row, c in enumerate(spec_choices)] == expected


def test_each_row_alpha_pair_is_computed_once_and_chunks_follow_max_rows(tiny_vlm_llava):
    vlm = tiny_vlm_llava
    inputs = two_sample_inputs(vlm, sizes=SIZES)
    rounds = [[0.5, 2.0], [2.0, 0.5], [1.0, 0.8]]
    wide = open_session(vlm, inputs, max_new_tokens=TOKENS)
    texts = wide.answers_rounds(rounds)
    assert wide.branch_calls == 1
    assert wide.answers_rounds(rounds) == texts and wide.answers([0.5, 0.5]) == [texts[0][0], texts[1][1]]
    assert wide.branch_calls == 1  # everything was known already
    narrow = open_session(vlm, inputs, max_new_tokens=TOKENS, max_rows=2)
    assert narrow.answers_rounds(rounds) == texts
    assert narrow.branch_calls == 3  # five (row, alpha != 1) pairs in branches of at most two rows
    naive = open_session(vlm, inputs, max_new_tokens=TOKENS, engine="naive")
    assert naive.answers_rounds(rounds) == texts


@pytest.mark.parametrize("kwargs, message", [(dict(engine="fast"), "engine"), (dict(max_rows=0), "max_rows"),
                                             (dict(scope="decode"), "scope")])
def test_bad_session_options_are_refused(tiny_vlm_llava, kwargs, message):
    inputs = two_sample_inputs(tiny_vlm_llava, sizes=SIZES)
    with pytest.raises(ToolkitError, match=message):
        open_session(tiny_vlm_llava, inputs, max_new_tokens=TOKENS, **kwargs)


def test_alpha_count_must_match_the_batch(tiny_vlm_llava):
    session = open_session(tiny_vlm_llava, two_sample_inputs(tiny_vlm_llava, sizes=SIZES), max_new_tokens=TOKENS)
    with pytest.raises(ToolkitError, match="one per row"):
        session.answers([0.5, 1.0, 2.0])


@pytest.fixture
def tiny_vlm_llava(tiny_factory):
    from model_zoo.vlm import VLM

    return VLM.from_loaded(*tiny_factory("llava"))
