"""DoLa (methods.dola): HF's bucket rules, the layer choice and contrast against explicit reference
computations, a whole decoding against a written-out reference loop, relative_top = 1 equal to the
baseline on every family, the final layer refused, grids through the registry, bad values."""
from __future__ import annotations

import math

import pytest
import torch

import methods
from common.errors import ToolkitError
from intervention.prefix import prompt_position_ids
from methods import Configuration, get_method
from methods.engines.decoding import answer_lengths
from methods.dola import DoLa, candidate_layers, dola_scores, layer_divergence
from tests.conftest import QUESTION, noise_image, two_sample_inputs
from tests.fixtures_decoding import sharp_vlm


@pytest.mark.parametrize("n_layers, tied, low, high", [
    (32, False, list(range(0, 16, 2)), list(range(16, 32, 2))),      # LLaMA-7B, the paper's buckets
    (28, True, [2, 4, 6, 8, 10, 12], list(range(14, 28, 2))),        # Qwen3-VL-2B (tied): the embeddings skipped
    (40, False, list(range(0, 20, 2)), list(range(20, 40, 2))),      # the largest "N // 2" model
    (48, False, list(range(0, 20, 2)), list(range(28, 48, 2))),      # deeper: 20 layers at either end
    (80, True, list(range(2, 20, 2)), list(range(60, 80, 2))),       # LLaMA-65B-like, tied
    (2, True, [1], [1]),                                             # HF: start 1 when N == 2 and tied
    (2, False, [0], [1]),
    (1, False, [0], [0]),
])
def test_bucket_rules_are_hfs(n_layers, tied, low, high):
    assert candidate_layers("low", n_layers, tied) == low
    assert candidate_layers("high", n_layers, tied) == high


def test_explicit_sets_and_the_final_layer():
    assert candidate_layers("0,4,6", 28, True) == [0, 4, 6]
    assert candidate_layers("3", 28, False) == [3]  # DoLa-static
    with pytest.raises(ToolkitError, match=r"includes layer 28 \(the final layer.*choose indices in 0\.\.27"):
        candidate_layers("2,28", 28, False)
    with pytest.raises(ToolkitError, match="includes layer 30, but this language model has 28"):
        candidate_layers("30", 28, False)
    with pytest.raises(ToolkitError, match="empty for a 3-layer"):
        candidate_layers("low", 3, True)


def _reference_divergence(final, premature):
    """The official code's "JSD" written out: 0.5 (KL(m||q_N) + KL(m||q_j)) / |V|, m = (q_N + q_j) / 2,
    with KL(m||q) = sum m log m - m log q (0 log 0 = 0)."""
    log_n = torch.log_softmax(final, -1)
    out = []
    for logits in premature:
        log_j = torch.log_softmax(logits, -1)
        m = 0.5 * (log_n.exp() + log_j.exp())
        kl_n = (torch.special.xlogy(m, m) - m * log_n).sum(-1)
        kl_j = (torch.special.xlogy(m, m) - m * log_j).sum(-1)
        out.append(0.5 * (kl_n + kl_j) / final.shape[-1])
    return torch.stack(out)


def test_layer_choice_is_the_maximum_divergence_on_a_constructed_case():
    final = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    premature = torch.tensor([[[3.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.5]],     # layer A: close to q_N
                              [[0.0, 0.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]],     # layer B: uniform / elsewhere
                              [[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0]]])    # layer C: elsewhere / equal
    divergence = layer_divergence(final, premature)
    assert torch.allclose(divergence, _reference_divergence(final, premature), atol=1e-7)
    assert divergence.argmax(0).tolist() == [2, 1]  # per row: C differs most in row 0, B in row 1
    assert float(divergence[2, 1]) == pytest.approx(0.0, abs=1e-8)  # identical distributions
    random = torch.randn(2, 50), torch.randn(3, 2, 50)
    assert torch.allclose(layer_divergence(*random), _reference_divergence(*random), atol=1e-7)


def test_contrast_and_relative_top_on_a_constructed_case():
    final = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    premature = torch.log(torch.tensor([[0.7, 0.1, 0.1, 0.1]]))
    # relative_top 0.2: keep q_N >= 0.1 -> tokens 0, 1, 2; F = log(q_N / q_M)
    expected = [math.log(0.5 / 0.7), math.log(3.0), math.log(1.5), -math.inf]
    assert dola_scores(final, premature, 0.2)[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert int(dola_scores(final, premature, 0.2).argmax()) == 1  # the early layer's favourite loses
    assert dola_scores(final, premature, 1.0)[0, 1:].eq(-math.inf).all()  # only q_N's top token left
    assert torch.isfinite(dola_scores(final, premature, 0.0)).all()


def _reference_dola_tokens(vlm, inputs, candidates, relative_top, penalty, steps):
    """Greedy DoLa written out: a full forward (no cache) with output_hidden_states at every step, lm_head
    on hidden_states[j] (no final norm), per-row divergence argmax, contrast, HF's repetition penalty."""
    ids, mask, n = inputs["input_ids"], inputs["attention_mask"], inputs["input_ids"].shape[1]
    prompt_positions = prompt_position_ids(vlm, inputs, mask)
    lm_head = vlm.model.get_output_embeddings()
    for step in range(steps):
        positions = torch.cat([prompt_positions, prompt_positions[..., -1:] + torch.arange(1, step + 1)], dim=-1)
        with torch.no_grad():
            out = vlm.model(**{**inputs, "input_ids": ids, "attention_mask": mask}, position_ids=positions,
                            output_hidden_states=True)
            final = out.logits[:, -1].float()
            premature = torch.stack([lm_head(out.hidden_states[j][:, -1]).float() for j in candidates])
        chosen = _reference_divergence(final, premature).argmax(0)
        base = premature[chosen, torch.arange(len(ids))]
        q_n = torch.softmax(final, -1)
        contrast = torch.log_softmax(final, -1) - torch.log_softmax(base, -1)
        scores = contrast.masked_fill(q_n < relative_top * q_n.max(-1, keepdim=True).values, -math.inf)
        seen = torch.gather(scores, 1, ids)
        scores = scores.scatter(1, ids, torch.where(seen < 0, seen * penalty, seen / penalty))
        ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=-1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
    return ids[:, n:]


@pytest.mark.parametrize("family", ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_dola_decoding_matches_an_explicit_reference(family):
    vlm = sharp_vlm(family)
    inputs = two_sample_inputs(vlm)
    dola = DoLa("0,1,2,3", relative_top=0.1, repetition_penalty=1.2)
    answers = dola.run(vlm, inputs, 4)
    expected = _reference_dola_tokens(vlm, inputs, [0, 1, 2, 3], 0.1, 1.2, 4)
    for row, (answer, length) in enumerate(zip(answers, answer_lengths(expected, vlm))):
        assert answer.text == vlm.decode_new_tokens(expected[row:row + 1, :length], 0)[0]
        assert len(answer.premature_layers) == length and set(answer.premature_layers) <= {0, 1, 2, 3}
    assert [a.text for a in answers] != vlm.generate(inputs, 4)  # DoLa changed something


def test_relative_top_one_is_the_baseline_token_for_token(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm)
    answers = DoLa("low", relative_top=1.0).run(tiny_vlm, inputs, 6)
    assert [a.text for a in answers] == tiny_vlm.generate(inputs, 6)
    assert all(a.premature_layers for a in answers)  # the contrast ran at every step
    baseline_confidence = torch.softmax(tiny_vlm.generate_ids(inputs, 1, output_logits=True,
                                                              return_dict_in_generate=True).logits[0], -1).max(-1)
    assert [a.confidence for a in answers] == pytest.approx(baseline_confidence.values.tolist(), abs=1e-6)


def test_the_final_layer_as_premature_layer_is_refused(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm)
    with pytest.raises(ToolkitError, match="the final layer"):
        DoLa("2").run(tiny_vlm, inputs, 2)  # the tiny models have 2 decoder layers


def test_hooks_are_removed_after_a_run():
    vlm = sharp_vlm("qwen2_vl")

    def hooks():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in vlm.model.modules())

    before = hooks()
    DoLa("0,1,2,3").run(vlm, two_sample_inputs(vlm), 2)
    with pytest.raises(ToolkitError):
        DoLa("4").run(vlm, two_sample_inputs(vlm), 2)
    assert hooks() == before


def test_a_grid_equals_separate_runs():
    vlm = sharp_vlm("qwen2_vl")
    images = [noise_image(40, 30, 0), noise_image(30, 40, 1)]
    prompts = [vlm.build_prompt("Where is the mug?"), vlm.build_prompt(QUESTION)]
    configs = [Configuration.of("dola", dola_layers=layers, relative_top=top)
               for layers in ("low", "high", "0,1,2,3") for top in (0.1, 0.5)]
    configs.append(Configuration.of("dola", dola_repetition_penalty=1.0))
    grid = methods.answer(vlm, [None, None], images, prompts, configs, max_new_tokens=4)
    inputs = vlm.prepare(images, prompts)
    for config in configs:
        alone = DoLa.of(config.hyperparameters).run(vlm, inputs, 4)
        assert [a.text for a in grid[config]] == [a.text for a in alone]
        assert [a.fields["premature_layers"] for a in grid[config]] == [a.premature_layers for a in alone]
    assert len({tuple(a.text for a in grid[c]) for c in configs}) > 1  # the settings matter


def test_the_registry_entry_and_layer_grids():
    method = get_method("dola")
    assert method.title == "+DoLa" and method.rank == 20 and method.families is None
    assert [h.flag for h in method.hyperparameters] == ["--dola-layers", "--relative-top",
                                                        "--dola-repetition-penalty"]
    assert all(h.source for h in method.hyperparameters)
    assert Configuration.of("dola").label() == "dola_l-high_rt-0.1_rp-1.2"
    layers = method.hyperparameter("dola_layers")
    assert layers.parse("low,high") == ("low", "high")          # a grid of the two buckets
    assert layers.parse("4, 0,2") == ("0,2,4",)                 # one candidate set
    assert layers.parse("High") == ("high",) and layers.check([6, 2]) == "2,6"
    assert Configuration.of("dola", dola_layers=[2, 0]).get("dola_layers") == "0,2"
    assert [names for names in (r["dola_layers"] for r in sorted(
        [{"dola_layers": d, "relative_top": 0.1, "dola_repetition_penalty": 1.2} for d in ("0,2", "low", "high")],
        key=method.preference_key))] == ["high", "low", "0,2"]


@pytest.mark.parametrize("flag, value, message", [
    ("dola_layers", "mid", "--dola-layers 'mid' is not low, high or comma-separated layer indices"),
    ("dola_layers", "low,2", "--dola-layers 'low,2' is not low, high"),
    ("dola_layers", "-1,2", "negative layer index"),
    ("relative_top", "1.5", r"--relative-top 1.5 is outside \[0, 1\]"),
    ("dola_repetition_penalty", "0.5", r"--dola-repetition-penalty 0.5 is outside \[1, inf\]"),
])
def test_bad_values_are_one_clear_error(flag, value, message):
    with pytest.raises(ToolkitError, match=message) as error:
        get_method("dola").hyperparameter(flag).parse(value)
    assert "\n" not in str(error.value)
