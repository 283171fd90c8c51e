"""VEA on tiny models of every family: neutral settings equal the baseline, token scores brighten exactly their
region of the original image, grids equal separate runs, the Python API, hints and errors."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import methods
from common.errors import ToolkitError
from methods import Configuration
from methods.vea import HINT, VEA, hinted_inputs, hinted_prompt, token_scores
from methods.vea_maps import evidence_map, view_factors
from methods.vea_pixels import RGBScale, highlighted_pixels
from model_zoo.geometry import image_geometries, pixel_views
from tests.conftest import QUESTION, noise_image

SIZES = ((80, 30), (30, 60))
QUESTIONS = ("Where is the mug?", QUESTION)


def batch(vlm):
    images = [noise_image(w, h, seed) for seed, (w, h) in enumerate(SIZES)]
    samples = [SimpleNamespace(id=f"s{i}", question=q, paper_prompt=None) for i, q in enumerate(QUESTIONS)]
    return samples, images, [vlm.build_prompt(q) for q in QUESTIONS]


def answer(vlm, configurations, max_new_tokens=4):
    samples, images, prompts = batch(vlm)
    return methods.answer(vlm, samples, images, prompts, configurations, max_new_tokens=max_new_tokens)


def vea(**values) -> Configuration:
    return Configuration.of("vea", **{"vea_layers": "all", **values})


def texts(answers) -> list[str]:
    return [a.text for a in answers]


def test_neutral_setting_equals_the_baseline_token_for_token(tiny_vlm):
    base, neutral = Configuration.of("base"), vea(vea_alpha=1.0, vea_hint=False)
    found = answer(tiny_vlm, [base, neutral], max_new_tokens=6)
    assert texts(found[neutral]) == texts(found[base])
    confidences = [[a.fields["confidence"] for a in found[config]] for config in (neutral, base)]
    assert confidences[0] == pytest.approx(confidences[1])
    # the hint alone (the paper's "inst" ablation) is the model on the hinted prompt
    samples, images, _ = batch(tiny_vlm)
    hinted = tiny_vlm.prepare(images, [hinted_prompt(tiny_vlm, s) for s in samples])
    inst = answer(tiny_vlm, [vea(vea_alpha=1.0)], max_new_tokens=6)[vea(vea_alpha=1.0)]
    assert texts(inst) == tiny_vlm.generate(hinted, 6)


def rgb_views(vlm, pixels, inputs, geometry) -> list[torch.Tensor]:
    """Each view of row 0 in RGB, read with model_zoo.geometry's own layout code (Qwen's temporal copies are
    summed there, hence the division)."""
    scale = RGBScale.of(vlm.processor.image_processor)
    copies = getattr(vlm.processor.image_processor, "temporal_patch_size", 1) if "qwen" in vlm.family else 1
    std, mean = torch.tensor(scale.std).view(-1, 1, 1), torch.tensor(scale.mean).view(-1, 1, 1)
    return [view.float() / copies * std + mean for view in pixel_views(vlm, pixels, 0, geometry, inputs)]


def centres_in(box, size) -> np.ndarray:
    """(H, W): original pixels whose centres lie in the box (x0, y0, x1, y1)."""
    width, height = size
    x, y = np.arange(width) + 0.5, np.arange(height) + 0.5
    return ((y >= box[1]) & (y < box[3]))[:, None] & ((x >= box[0]) & (x < box[2]))[None, :]


@pytest.mark.parametrize("size", [(80, 30), (30, 60)])
def test_a_score_on_one_token_brightens_exactly_its_region_of_the_original_image(tiny_vlm, size):
    image = noise_image(*size, seed=3)
    inputs = tiny_vlm.prepare([image], [tiny_vlm.build_prompt(QUESTION)])
    [geometry] = image_geometries(tiny_vlm, inputs, [size])
    grid = geometry.grid_tokens()                          # the primary grid's tokens by cell
    token = int(grid[grid.shape[0] // 2, grid.shape[1] // 2])
    scores = np.zeros(geometry.n_tokens)
    scores[token] = 1.0
    factors = view_factors(evidence_map(scores, geometry, lam=None, sigma=0.0), geometry, alpha=0.5)
    highlighted = highlighted_pixels(tiny_vlm, inputs, [geometry], [factors])
    box = geometry.token_boxes()[token]
    for index, (before, after) in enumerate(zip(rgb_views(tiny_vlm, inputs["pixel_values"], inputs, geometry),
                                                rgb_views(tiny_vlm, highlighted, inputs, geometry))):
        lit = torch.isclose(after, before, atol=1e-5).all(dim=0).numpy()
        dimmed = torch.isclose(after, 0.5 * before, atol=1e-5).all(dim=0).numpy()
        assert (lit | dimmed).all() and lit.any() and dimmed.any()
        # back on the original image: the view pixels left bright cover exactly the token's box
        reached = geometry.paint_view(np.ones(lit.shape), index) > 0
        bright = geometry.paint_view(lit.astype(float), index) > 0.5
        np.testing.assert_array_equal(bright[reached], centres_in(box, size)[reached])


def test_highlighting_leaves_other_rows_and_the_token_ids_alone(tiny_vlm):
    samples, images, prompts = batch(tiny_vlm)
    inputs = tiny_vlm.prepare(images, prompts)
    geometries = image_geometries(tiny_vlm, inputs, SIZES)
    factors = [[np.ones((v.height, v.width)) for v in geometries[0].views],
               [np.full((v.height, v.width), 0.5) for v in geometries[1].views]]
    pixels = highlighted_pixels(tiny_vlm, inputs, geometries, factors)
    first, second = (pixel_views(tiny_vlm, p, 0, geometries[0], inputs) for p in (inputs["pixel_values"], pixels))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.equal(pixels, inputs["pixel_values"]) and pixels.dtype == inputs["pixel_values"].dtype


def test_hinted_inputs_equal_the_processors_own_without_reprocessing_the_images(tiny_vlm, monkeypatch):
    samples, images, prompts = batch(tiny_vlm)
    inputs = tiny_vlm.prepare(images, prompts)
    hinted = [hinted_prompt(tiny_vlm, sample) for sample in samples]
    expected = tiny_vlm.prepare(images, hinted)
    monkeypatch.setattr(tiny_vlm, "prepare", lambda *args: pytest.fail("the images were processed again"))
    found = hinted_inputs(tiny_vlm, inputs, images, prompts, hinted)
    assert found.keys() == expected.keys() and all(torch.equal(found[k], expected[k]) for k in expected)
    # a text route that does not reproduce the processor's own output is not taken
    monkeypatch.setattr(tiny_vlm.processor.tokenizer, "padding_side", "right")
    monkeypatch.setattr(tiny_vlm, "prepare", lambda images, prompts: "processed")
    assert hinted_inputs(tiny_vlm, inputs, images, prompts, hinted) == "processed"


def test_a_grid_in_one_call_equals_separate_runs(tiny_vlm):
    grid = [vea(vea_alpha=a, vea_sigma=s, vea_hint=h) for a in (0.5, 1.0) for s in (0.5, 0.0) for h in (True, False)]
    grid.append(vea(vea_alpha=0.3, vea_lambda="off", vea_layers="1"))
    together = answer(tiny_vlm, grid)
    for config in grid:
        alone = answer(tiny_vlm, [config])[config]
        assert [a.text for a in alone] == [a.text for a in together[config]]
        assert [a.fields for a in alone] == [a.fields for a in together[config]]
    assert together[grid[-1]][0].fields["vea_layers"] == [1]
    assert together[grid[0]][0].fields["vea_layer_source"] == "all"


def test_python_api_runs_and_records(tiny_vlm):
    images = [noise_image(w, h, seed) for seed, (w, h) in enumerate(SIZES)]
    answers = VEA(alpha=0.5, layers=(0, 1)).run(tiny_vlm, images, list(QUESTIONS), max_new_tokens=3)
    assert len(answers) == 2 and answers[0].layers == (0, 1) and answers[0].layer_source == "given"
    assert answers[0].hint and 0.0 < answers[0].confidence <= 1.0 and 0.0 < answers[0].vea_confidence <= 1.0
    assert VEA(layers=(0, 1)).layers == "0+1" and VEA(layers="auto").profile.dataset == "Synthetic_Controlled_A"
    assert VEA(lam="off").lam is None and VEA(lam=None).to_dict()["vea_lambda"] == "off"


def test_token_scores_average_heads_and_the_chosen_layers():
    attention = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)       # (layers, heads, n_image)
    attention[1, 0, 0] = np.nan
    np.testing.assert_allclose(token_scores(attention[:1], (0,)), attention[0].mean(axis=0))
    assert np.isnan(attention[[0, 1]].mean(axis=(0, 1))[0]) and token_scores(attention, (0, 1))[0] == 0.0


def test_hint_goes_before_the_question_and_into_verbatim_prompts(tiny_factory):
    from model_zoo.vlm import VLM

    vlm = VLM.from_loaded(*tiny_factory("llava"), prompt_format="paper")
    verbatim = "<image>\nUSER:  Where is it?\nASSISTANT:"
    sample = SimpleNamespace(id="x", question="Where is the mug?", paper_prompt=verbatim)
    assert hinted_prompt(vlm, sample) == f"<image>\nUSER:  {HINT} Where is it?\nASSISTANT:"
    plain = SimpleNamespace(id="y", question="Where is the mug?", paper_prompt=None)
    assert hinted_prompt(vlm, plain) == vlm.build_prompt(f"{HINT} Where is the mug?")
    with pytest.raises(ToolkitError, match="no 'USER:' to put the VEA hint after; use --no-vea-hint"):
        hinted_prompt(vlm, SimpleNamespace(id="z", question="q", paper_prompt="<image> q"))


@pytest.mark.parametrize("values, message", [
    ({"alpha": 1.5}, r"--vea-alpha 1.5 is outside \[0, 1\]"),
    ({"sigma": -1}, r"--vea-sigma -1 is outside \[0, inf\]"),
    ({"lam": 0.5}, r"--vea-lambda 0.5 is outside \[1, inf\]"),
    ({"layers": "14,15"}, "--vea-layers '14,15' is not auto, profile, all or layer indices joined by +"),
    ({"lam": "none"}, r"--vea-lambda 'none' is not a valid float \(or off\)"),
])
def test_bad_values_are_one_clear_error(values, message):
    with pytest.raises(ToolkitError, match=message):
        VEA(**values)


def test_layers_outside_the_model_are_refused(tiny_vlm):
    images = [noise_image(40, 40, 0)]
    with pytest.raises(ToolkitError, match=r"VEA layers 7 \(given\) do not exist: .* has 2 language-model layers"):
        VEA(layers="1+7").run(tiny_vlm, images, [QUESTION], max_new_tokens=1)
