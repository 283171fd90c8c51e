"""The prefix-sharing engine (intervention.prefix) against stock generate on tiny models of every family:
token-for-token answers and per-step logits, forks that never touch the shared prefix, positions."""
from __future__ import annotations

import pytest
import torch

from transformers import DynamicCache

from intervention import ScalingVis, compat, open_session
from intervention import prefix as prefix_module
from intervention import session as session_module
from intervention.compat import TransformersChanged
from intervention.prefix import Branch, run_prefix
from tests.conftest import one_sample_inputs, two_sample_inputs

STEPS = 3
# Row 0's square image gives Qwen a 2x2 merged grid, so its M-RoPE positions run 2 behind its token
# index (rope_delta -2, pitfall 3); LLaVA-NeXT gets different image-token counts per row (anyres).
SIZES = ((56, 56), (30, 60))


def _generate(vlm, inputs, alpha, scope="prefill", layers=None):
    """Stock generate under ScalingVis: new tokens (B, T) and raw logits (B, T, V)."""
    with ScalingVis(vlm, alpha=alpha, scope=scope, layers=layers):
        out = vlm.generate_ids(inputs, STEPS, output_logits=True, return_dict_in_generate=True)
    return out.sequences[:, inputs["input_ids"].shape[1]:], torch.stack(out.logits, dim=1)


def _branch(prefix, rows, alphas, **kwargs):
    branch = Branch(prefix, torch.tensor(rows), torch.tensor(alphas, dtype=torch.float32), record_logits=True,
                    **kwargs)
    tokens = branch.run()
    return tokens, torch.stack(branch.logits, dim=1)


def test_branches_equal_generate_token_for_token(tiny_vlm, family):
    """Per-row alpha in a left-padded batch (LLaVA-NeXT: different image-token counts), all steps."""
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    prefix = run_prefix(tiny_vlm, inputs, STEPS)
    if family == "llava_next":
        counts = prefix.image_mask.sum(-1)
        assert counts[0] != counts[1]
    expected_tokens, expected_logits = _generate(tiny_vlm, inputs, [0.0, 2.0])
    tokens, logits = _branch(prefix, [0, 1], [0.0, 2.0])
    assert torch.equal(tokens, expected_tokens)
    assert (logits - expected_logits).abs().max().item() <= 1e-5
    stock_tokens, stock_logits = _generate(tiny_vlm, inputs, 1.0)
    base = Branch.at_alpha_one(prefix, record_logits=True)
    assert torch.equal(base.run(), stock_tokens)
    assert (torch.stack(base.logits, dim=1) - stock_logits).abs().max().item() <= 1e-5
    assert (prefix.first_logits - stock_logits[:, 0]).abs().max().item() <= 1e-5
    assert (logits[:, 0] - stock_logits[:, 0]).abs().max().item() > 1e-4  # the alphas really act
    # The alpha = 1 rows of a scaled branch re-run token n-1 on the fork: same numbers as the prompt forward.
    _, mixed = _branch(prefix, [0, 1], [1.0, 2.0])
    assert (mixed[0] - stock_logits[0]).abs().max().item() <= 1e-5


def test_a_padded_batch_equals_its_rows_alone(tiny_vlm):
    """Left padding, per-row positions (cumsum / M-RoPE) and per-row image masks: batch == batch size 1."""
    alphas = [0.0, 2.0]
    tokens, logits = _branch(run_prefix(tiny_vlm, two_sample_inputs(tiny_vlm, sizes=SIZES), STEPS), [0, 1], alphas)
    for row, alpha in enumerate(alphas):
        alone = run_prefix(tiny_vlm, one_sample_inputs(tiny_vlm, row, sizes=SIZES), STEPS)
        row_tokens, row_logits = _branch(alone, [0], [alpha])
        assert torch.equal(row_tokens[0], tokens[row])
        assert (row_logits[0] - logits[row]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_a_batch_of_one_sweeps_its_alphas_from_one_shared_view(tiny_vlm):
    """The default batch size: every alpha's fork is a broadcast view of the one row (compat.fork_cache)."""
    inputs = one_sample_inputs(tiny_vlm, 1, sizes=SIZES)
    alphas = [0.0, 0.5, 2.0]
    tokens, logits = _branch(run_prefix(tiny_vlm, inputs, STEPS), [0, 0, 0], alphas)
    for i, alpha in enumerate(alphas):
        expected_tokens, expected_logits = _generate(tiny_vlm, inputs, alpha)
        assert torch.equal(tokens[i], expected_tokens[0])
        assert (logits[i] - expected_logits[0]).abs().max().item() <= 1e-5


def test_repeated_and_reordered_rows_equal_their_own_batches(tiny_vlm):
    """One branch holding (row, alpha) pairs of several alpha vectors equals generate per vector."""
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    prefix = run_prefix(tiny_vlm, inputs, STEPS)
    tokens, logits = _branch(prefix, [1, 0, 1], [0.5, 2.0, 2.0])
    low_tokens, low_logits = _generate(tiny_vlm, inputs, 0.5)
    high_tokens, high_logits = _generate(tiny_vlm, inputs, 2.0)
    assert torch.equal(tokens, torch.stack([low_tokens[1], high_tokens[0], high_tokens[1]]))
    expected = torch.stack([low_logits[1], high_logits[0], high_logits[1]])
    assert (logits - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("scope, layers", [("all", None), ("prefill", (1,)), ("all", (0,))])
def test_scope_all_and_layer_subsets_equal_generate(tiny_vlm, scope, layers):
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    prefix = run_prefix(tiny_vlm, inputs, STEPS)
    expected_tokens, expected_logits = _generate(tiny_vlm, inputs, [0.0, 2.0], scope, layers)
    tokens, logits = _branch(prefix, [0, 1], [0.0, 2.0], scope=scope, layers=layers)
    assert torch.equal(tokens, expected_tokens)
    assert (logits - expected_logits).abs().max().item() <= 1e-5


def test_forks_never_mutate_the_shared_prompt_cache(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    prefix = run_prefix(tiny_vlm, inputs, STEPS)
    n = inputs["input_ids"].shape[1]
    before = [(keys.clone(), values.clone()) for keys, values in prefix.key_values]
    Branch.at_alpha_one(prefix).run()
    for rows, alphas, scope in (([1, 1, 0], [0.0, 2.0, 0.5], "all"), ([0, 1], [0.5, 0.5], "prefill"),
                                ([1, 1, 1], [0.0, 2.0, 0.5], "all")):
        Branch(prefix, torch.tensor(rows), torch.tensor(alphas), scope=scope).run()
    assert prefix.fork().get_seq_length() == n - 1 and prefix.fork(with_last=True).get_seq_length() == n
    for (keys, values), (key_copy, value_copy) in zip(prefix.key_values, before):
        assert keys.shape[2] == n and torch.equal(keys, key_copy) and torch.equal(values, value_copy)


def test_prompt_positions_equal_the_ones_generate_passes(tiny_vlm):
    """Branches pass explicit position ids; they must be generate's own (left padding: cumsum of the mask;
    Qwen: a text row on the three M-RoPE rows, which row 0's square image shifts by rope_delta -2)."""
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    seen = []
    hook = tiny_vlm.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("position_ids")),
                                                    with_kwargs=True)
    try:
        tiny_vlm.generate_ids(inputs, 1)
    finally:
        hook.remove()
    ours = prefix_module.prompt_position_ids(tiny_vlm, inputs, inputs["attention_mask"])
    if tiny_vlm.spec.rope == "mrope":
        assert ours.shape[0] == 4 and bool((ours[1:, 0, -1] != ours[0, 0, -1]).all())
    # generate drops the mask when no row is padded; ours keeps it, so compare the unpadded columns
    real = inputs["attention_mask"].bool()
    assert torch.equal(ours[..., real], seen[0][..., real])


@pytest.mark.parametrize("family", ["llava"])
def test_generation_config_defaults_apply_as_in_generate(tiny_vlm):
    """A checkpoint's repetition penalty (Qwen2-VL ships 1.05) reaches generate; the engine applies it too."""
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    config = tiny_vlm.model.generation_config
    try:
        config.repetition_penalty = 5.0
        prefix = run_prefix(tiny_vlm, inputs, STEPS)
        expected, _ = _generate(tiny_vlm, inputs, [0.0, 2.0])
        tokens, _ = _branch(prefix, [0, 1], [0.0, 2.0])
        assert torch.equal(tokens, expected)
        assert not torch.equal(tokens, _generate_without_penalty(tiny_vlm, inputs, config))
    finally:
        config.repetition_penalty = None


def _generate_without_penalty(vlm, inputs, config):
    penalty, config.repetition_penalty = config.repetition_penalty, None
    try:
        return _generate(vlm, inputs, [0.0, 2.0])[0]
    finally:
        config.repetition_penalty = penalty


@pytest.mark.parametrize("family", ["llava"])
def test_a_renamed_cache_field_falls_back_to_the_naive_engine(tiny_vlm, monkeypatch, caplog):
    """A transformers release that renames the cache argument and output field again: the engine cannot
    find the prompt's cache, says so once, and answers exactly as the naive engine."""
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    naive = open_session(tiny_vlm, inputs, max_new_tokens=STEPS, engine="naive")
    expected = naive.answers([0.0, 2.0]), naive.answers(1.0), naive.confidence
    monkeypatch.setattr(compat, "CACHE_NAMES", ("kv_cache",))
    monkeypatch.setattr(session_module, "_WARNED", set())
    with pytest.raises(TransformersChanged, match="cache field"):
        run_prefix(tiny_vlm, inputs, STEPS)
    with caplog.at_level("WARNING", logger="intervention.session"):
        for _ in range(2):  # two batches, one warning
            session = open_session(tiny_vlm, inputs, max_new_tokens=STEPS)
            assert (session.answers([0.0, 2.0]), session.answers(1.0)) == expected[:2]
            assert torch.allclose(session.confidence, expected[2])
    warnings = [r for r in caplog.records if "naive engine" in r.getMessage()]
    assert len(warnings) == 1 and "kv_cache" in warnings[0].getMessage()


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_a_generate_that_ignores_the_given_cache_falls_back(tiny_vlm, monkeypatch, caplog):
    """If generate stopped continuing from the cache it is given, a branch would silently re-run the prompt
    without its image; the engine notices (the cache did not grow by one position per token), warns and
    answers with the naive engine."""
    inputs = two_sample_inputs(tiny_vlm, sizes=SIZES)
    expected = open_session(tiny_vlm, inputs, max_new_tokens=STEPS, engine="naive").answers([0.0, 2.0])
    monkeypatch.setattr(compat, "fork_cache", lambda cache, key_values, stop, rows: DynamicCache())
    monkeypatch.setattr(session_module, "_WARNED", set())
    with caplog.at_level("WARNING", logger="intervention.session"):
        assert open_session(tiny_vlm, inputs, max_new_tokens=STEPS).answers([0.0, 2.0]) == expected
    assert "did not extend the given" in caplog.text and "naive engine" in caplog.text
