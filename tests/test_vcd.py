"""VCD (methods.vcd): the noise schedule, the contrast and plausibility mask against explicit reference
computations, alpha = 0 equal to the baseline on every family, the noised branch's own cache, seeding,
grids through the registry, and bad hyper-parameter values."""
from __future__ import annotations

import math

import pytest
import torch

import methods
from common.errors import ToolkitError
from intervention import compat
from intervention.compat import TransformersChanged
from intervention.prefix import prompt_position_ids
from methods import Configuration, get_method
from methods.engines.decoding import answer_lengths, generate_scored
from methods.vcd import VCD, noise_schedule, noised_pixel_values, plausible, vcd_scores
from model_zoo.tiny import FAMILIES
from tests.conftest import QUESTION, noise_image, one_sample_inputs, two_sample_inputs
from tests.fixtures_decoding import sharp_vlm


def test_noise_schedule_is_the_original_one():
    # vcd_add_noise.py, written out: beta_t = sigmoid(linspace(-6, 6, 1000)) (5e-3 - 1e-5) + 1e-5,
    # abar_T = prod_{t <= T} (1 - beta_t), indexed from 0 as the original's alphas_bar_sqrt[noise_step].
    betas = [1 / (1 + math.exp(-(-6 + 12 * t / 999))) * (0.5e-2 - 1e-5) + 1e-5 for t in range(1000)]
    for step in (0, 200, 500, 999):
        abar = math.prod(1 - b for b in betas[:step + 1])
        keep, noise = noise_schedule(step)
        assert keep == pytest.approx(math.sqrt(abar), abs=1e-5)
        assert noise == pytest.approx(math.sqrt(1 - abar), abs=1e-5)
    # The published values (three decimals): 200 -> 0.994 x + 0.110 eps, 500 -> 0.864 x + 0.503 eps,
    # 999 -> 0.285 x + 0.959 eps. At 500 they are the code's step 499 (0.8641, 0.5033): we index as the code,
    # which gives 0.8630 and 0.5052 there.
    for step, published in ((200, (0.994, 0.110)), (500, (0.864, 0.503)), (999, (0.285, 0.959))):
        assert noise_schedule(step) == pytest.approx(published, abs=2.5e-3)
    assert noise_schedule(499) == pytest.approx((0.864, 0.503), abs=5e-4)


def test_contrast_and_plausibility_mask_on_a_constructed_case():
    logits = torch.tensor([[3.0, 2.5, 0.0, -1.0]])
    noised = torch.tensor([[4.0, 1.0, -4.0, 0.0]])
    # beta = 0.5: V_head = {y : l(y) >= log 0.5 + 3} = {0, 1}; z = 2 l - l' = [2, 4, 4, -2]
    assert plausible(logits, 0.5).tolist() == [[True, True, False, False]]
    scores = vcd_scores(logits, noised, alpha=1.0, beta=0.5)
    assert scores.tolist() == [[2.0, 4.0, -math.inf, -math.inf]]
    assert int(scores.argmax()) == 1  # the contrast moves the answer to token 1; token 2 (z = 4) is implausible
    # p-space reading of the constraint: p(y) >= beta max p
    probs = torch.softmax(logits, -1)
    assert plausible(logits, 0.5).tolist() == (probs >= 0.5 * probs.max()).tolist()
    assert plausible(logits, 0.0).all() and plausible(logits, 1.0).tolist() == [[True, False, False, False]]
    assert torch.equal(vcd_scores(logits, noised, alpha=0.0, beta=0.0), logits)
    half = vcd_scores(logits, noised, alpha=0.5, beta=0.1)
    assert half.tolist() == [[2.5, 3.25, -math.inf, -math.inf]]  # 1.5 l - 0.5 l'; log 0.1 + 3 = 0.70 keeps 0, 1


def test_alpha_zero_is_the_baseline_token_for_token(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm)
    vcd = VCD(alpha=0.0)
    processor = vcd.processor(tiny_vlm, inputs)
    tokens = generate_scored(tiny_vlm, inputs, processor, 6)
    baseline = tiny_vlm.generate_ids(inputs, 6)[:, inputs["input_ids"].shape[1]:]
    assert torch.equal(tokens, baseline)
    assert processor.forwards == tokens.shape[1]  # the noised branch ran at every step
    answers = vcd.run(tiny_vlm, inputs, 6)
    assert [a.text for a in answers] == tiny_vlm.generate(inputs, 6)


def _reference_vcd_tokens(vlm, inputs, noised_pixels, alpha, beta, steps):
    """Greedy VCD written out: both branches recomputed from scratch (no cache) at every step."""
    n = inputs["input_ids"].shape[1]
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    prompt_positions = prompt_position_ids(vlm, inputs, mask)
    for step in range(steps):
        positions = torch.cat([prompt_positions, prompt_positions[..., -1:] + torch.arange(1, step + 1)], dim=-1)
        branch = {**inputs, "input_ids": ids, "attention_mask": mask, "position_ids": positions}
        with torch.no_grad():
            clean = vlm.model(**branch).logits[:, -1].float()
            noised = vlm.model(**{**branch, "pixel_values": noised_pixels}).logits[:, -1].float()
        contrast = (1 + alpha) * clean - alpha * noised
        contrast[clean < math.log(beta) + clean.max(-1, keepdim=True).values] = -math.inf
        ids = torch.cat([ids, contrast.argmax(-1, keepdim=True)], dim=-1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
    return ids[:, n:]


@pytest.mark.parametrize("family", FAMILIES)
def test_vcd_decoding_matches_an_explicit_reference(family):
    vlm = sharp_vlm(family)
    inputs = two_sample_inputs(vlm)
    vcd = VCD(alpha=1.0, beta=0.2, noise_step=999)
    processor = vcd.processor(vlm, inputs)
    tokens = generate_scored(vlm, inputs, processor, 4)
    expected = _reference_vcd_tokens(vlm, inputs, processor.prompt["pixel_values"], 1.0, 0.2, 4)
    for row, length in enumerate(answer_lengths(tokens, vlm)):  # after its end token generate pads a row
        assert torch.equal(tokens[row, :length], expected[row, :length])
    vocabulary = vlm.model.config.get_text_config().vocab_size
    assert 1 <= int(processor.head_size.min()) and int(processor.head_size.max()) < vocabulary  # the APC acted


def _key_values(cache):
    return [tensor for pair in compat.cache_key_values(cache) for tensor in pair]


def _forward_cache(vlm, inputs, sequences, pixel_values):
    """The cache of one plain forward over the prompt plus the generated tokens (all but the last)."""
    n = inputs["input_ids"].shape[1]
    ids = sequences[:, :-1]
    mask = torch.cat([inputs["attention_mask"], torch.ones_like(ids[:, n:])], dim=-1)
    prompt_positions = prompt_position_ids(vlm, inputs, inputs["attention_mask"])
    positions = torch.cat([prompt_positions, prompt_positions[..., -1:] + torch.arange(1, ids.shape[1] - n + 1)], -1)
    with torch.no_grad():
        out = vlm.model(**{**inputs, "input_ids": ids, "attention_mask": mask, "pixel_values": pixel_values},
                        position_ids=positions, use_cache=True)
    return compat.output_cache(out)


def test_the_noised_branch_keeps_its_own_cache(tiny_vlm):
    inputs = two_sample_inputs(tiny_vlm)
    processor = VCD(alpha=1.0, noise_step=999).processor(tiny_vlm, inputs)
    out = generate_scored(tiny_vlm, inputs, processor, 4, return_dict_in_generate=True)
    clean, noised = compat.output_cache(out), processor.cache
    assert clean is not noised
    assert not {t.data_ptr() for t in _key_values(clean)} & {t.data_ptr() for t in _key_values(noised)}
    # each cache holds exactly its own branch: the clean image's keys/values, or the noised image's
    for cache, pixels in ((clean, inputs["pixel_values"]), (noised, processor.prompt["pixel_values"])):
        expected = _forward_cache(tiny_vlm, inputs, out.sequences, pixels)
        for got, want in zip(_key_values(cache), _key_values(expected)):
            assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)
    assert any(not torch.allclose(a, b, atol=1e-3) for a, b in zip(_key_values(clean), _key_values(noised)))


@pytest.mark.parametrize("family", ["llava", "llava_next", "qwen2_vl"])
def test_noise_is_seeded_per_image_whatever_the_batch(tiny_vlm):
    batch = two_sample_inputs(tiny_vlm)
    noised = noised_pixel_values(tiny_vlm, batch, 500, seed=7)
    assert noised.shape == batch["pixel_values"].shape and noised.dtype == batch["pixel_values"].dtype
    assert torch.equal(noised, noised_pixel_values(tiny_vlm, batch, 500, seed=7))
    assert not torch.equal(noised, noised_pixel_values(tiny_vlm, batch, 500, seed=8))
    alone = [noised_pixel_values(tiny_vlm, one_sample_inputs(tiny_vlm, i), 500, seed=7) for i in range(2)]
    if noised.dim() == 2:  # Qwen: image i's patches are the next prod(grid_thw[i]) rows
        assert torch.equal(noised, torch.cat(alone))
        # a row is (channels 3, temporal copies 2, 14 x 14 pixels): both copies of the still image get the
        # same noise, so they stay equal
        rows = noised.view(len(noised), 3, 2, 14 * 14)
        assert torch.equal(rows[:, :, 0], rows[:, :, 1])
    else:  # one image per row (LLaVA-NeXT: its tiles, then the batch's zero padding tiles)
        for row, single in enumerate(alone):
            assert torch.equal(noised[row, :single.shape[1]] if noised.dim() == 5 else noised[row], single[0])


def test_qwen_patches_whose_temporal_copies_differ_are_refused(tiny_factory):
    from model_zoo.vlm import VLM

    vlm = VLM.from_loaded(*tiny_factory("qwen2_vl"))
    inputs = dict(two_sample_inputs(vlm))
    inputs["pixel_values"] = torch.randn_like(inputs["pixel_values"])  # not a still image's layout
    with pytest.raises(TransformersChanged, match="temporal copies"):
        noised_pixel_values(vlm, inputs, 500, seed=0)


def test_noise_is_the_diffusion_forward_process(tiny_factory):
    from model_zoo.vlm import VLM

    vlm = VLM.from_loaded(*tiny_factory("llava"))
    inputs = vlm.prepare([noise_image(40, 30, 3)], [vlm.build_prompt(QUESTION)])
    clean = inputs["pixel_values"]
    keep, noise = noise_schedule(999)
    eps = (noised_pixel_values(vlm, inputs, 999, seed=0) - keep * clean) / noise
    assert abs(float(eps.mean())) < 0.1 and abs(float(eps.std()) - 1.0) < 0.1


def test_sampling_is_deterministic_given_the_seed(tiny_factory):
    from model_zoo.vlm import VLM

    vlm = VLM.from_loaded(*tiny_factory("qwen2_vl"))
    inputs = two_sample_inputs(vlm)
    first = VCD(sample=True, seed=3).run(vlm, inputs, 5)
    torch.manual_seed(123)  # the global generator's state does not matter
    assert VCD(sample=True, seed=3).run(vlm, inputs, 5) == first
    greedy = VCD().run(vlm, inputs, 5)
    assert [a.text for a in greedy] == [a.text for a in VCD().run(vlm, inputs, 5)]


def test_a_grid_equals_separate_runs():
    vlm = sharp_vlm("llava")
    images = [noise_image(40, 30, 0), noise_image(30, 40, 1)]
    prompts = [vlm.build_prompt("Where is the mug?"), vlm.build_prompt(QUESTION)]
    configs = [Configuration.of("vcd", cd_alpha=a, noise_step=t) for a in (0.5, 1.0) for t in (200, 999)]
    configs.append(Configuration.of("vcd", cd_alpha=1.0, cd_beta=0.0, cd_seed=1))
    grid = methods.answer(vlm, [None, None], images, prompts, configs, max_new_tokens=4)
    inputs = vlm.prepare(images, prompts)
    for config in configs:
        alone = VCD.of(config.hyperparameters).run(vlm, inputs, 4)
        assert [a.text for a in grid[config]] == [a.text for a in alone]
        assert [a.fields for a in grid[config]] == [{"confidence": a.confidence, "head_size": a.head_size}
                                                     for a in alone]
    assert len({tuple(a.text for a in grid[c]) for c in configs}) > 1  # the settings matter


def test_the_registry_entry():
    method = get_method("vcd")
    assert method.title == "+VCD" and method.rank == 30 and method.families is None
    assert [h.flag for h in method.hyperparameters] == ["--cd-alpha", "--cd-beta", "--noise-step", "--cd-seed",
                                                        "--sample"]
    assert all(h.source for h in method.hyperparameters)
    config = Configuration.of("vcd")
    assert config.hyperparameters == {"cd_alpha": 1.0, "cd_beta": 0.1, "noise_step": 500, "cd_seed": 55,
                                      "sample": False}
    assert config.label() == "vcd_a-1_b-0.1_T-500_s-55"
    assert method.hyperparameter("cd_alpha").parse("0.5,1") == (0.5, 1.0)
    ordered = sorted([{"cd_alpha": 1.0, "cd_beta": 0.1, "noise_step": 500, "cd_seed": 55, "sample": False},
                      {"cd_alpha": 0.5, "cd_beta": 0.1, "noise_step": 500, "cd_seed": 55, "sample": False}],
                     key=method.preference_key)
    assert ordered[0]["cd_alpha"] == 0.5


@pytest.mark.parametrize("flag, value, message", [
    ("cd_alpha", "-1", r"--cd-alpha -1 is outside \[0, inf\]"),
    ("cd_beta", "1.5", r"--cd-beta 1.5 is outside \[0, 1\]"),
    ("noise_step", "1000", r"--noise-step 1000 is outside \[0, 999\]"),
    ("noise_step", "2.5", "--noise-step '2.5' is not a valid int"),
    ("cd_seed", "-3", r"--cd-seed -3 is outside"),
    ("sample", "0,1", "--sample takes one value"),
])
def test_bad_values_are_one_clear_error(flag, value, message):
    with pytest.raises(ToolkitError, match=message) as error:
        get_method("vcd").hyperparameter(flag).parse(value)
    assert "\n" not in str(error.value)


def test_bad_values_from_python_are_one_clear_error():
    with pytest.raises(ToolkitError, match="--cd-alpha"):
        VCD(alpha=-0.5)
    with pytest.raises(ToolkitError, match="--cd-beta"):
        Configuration.of("vcd", cd_beta=2)
