"""VEA's layer profiling (methods.vea_profile): AUROC against evidence boxes picks the layers that look at the
boxes, the published sets, the per-model cache, and the errors."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

import methods.vea_profile as vea_profile
from common.errors import ToolkitError
from dataset_zoo.boxes import NamedBox
from methods.vea_profile import (LayerProfile, ProfileSource, cached_profile, profile_layers, resolve_layers,
                                 sample_aurocs, select_layers)
from model_zoo.geometry import image_geometries
from model_zoo.vlm import VLM
from tests.conftest import QUESTION, noise_image

N_LAYERS, GROUNDING = 20, (4, 9)


def test_select_layers_keeps_the_top_tenth_rounded_up():
    assert select_layers([0.5, 0.9, 0.7, np.nan]) == (1,)                    # ceil(0.4) = 1; NaN ranks last
    assert select_layers(np.linspace(0, 1, 11)) == (9, 10)                   # ceil(1.1) = 2
    assert select_layers([0.8, 0.8, 0.6]) == (1,)                            # a tie keeps the deeper layer
    assert len(select_layers(np.zeros(28))) == 3                             # Qwen3-VL-2B: 3 of 28


class Boxes:
    """A box source: per sample id, boxes in original pixels."""

    def __init__(self, boxes):
        self._boxes = boxes

    def boxes(self, sample, image):
        return [NamedBox("object", box) for box in self._boxes[sample.id]]


def samples_and_boxes():
    sizes = [(80, 30), (30, 60), (64, 64), (50, 40), (40, 50)]
    samples = [SimpleNamespace(id=f"s{i}", image=noise_image(w, h, i), question=QUESTION, paper_prompt=None)
               for i, (w, h) in enumerate(sizes)]
    boxes = {"s0": [(10, 5, 40, 20)], "s1": [(0, 30, 15, 60)], "s2": [(20, 20, 44, 44), (50, 0, 64, 10)],
             "s3": [(0, 0, 50, 40)],      # the whole image: every token is evidence, the sample is skipped
             "s4": []}                    # no box: skipped
    return samples, Boxes(boxes)


def constructed_attribution(real_attribute, box_source, samples):
    """The real attention pass (real geometry from the processor), its attention replaced: the GROUNDING
    layers put their mass on the tokens whose cells overlap the boxes, the other layers are noise."""
    by_size = {s.image.size: s for s in samples}

    def fake(vlm, inputs, images):
        captures, confidence = real_attribute(vlm, inputs, images)
        rng = np.random.default_rng(0)
        for captured, image in zip(captures, images):
            sample = by_size[image.size]
            boxes = [b.box for b in box_source.boxes(sample, sample.image)]
            inside = captured.geometry.coverage(vea_profile.box_mask(boxes, image.size)) > 0
            attention = rng.random((N_LAYERS, 2, captured.geometry.n_tokens))
            attention[list(GROUNDING)] += 5.0 * inside
            captured.rows[0].image = attention / attention.sum(-1, keepdims=True)
        return captures, confidence
    return fake


def test_profiling_picks_the_layers_whose_attention_lies_on_the_boxes(tiny_factory, monkeypatch):
    vlm = VLM.from_loaded(*tiny_factory("llava", image_size=84))          # a 6 x 6 token grid
    samples, boxes = samples_and_boxes()
    monkeypatch.setattr(vea_profile, "attribute", constructed_attribution(vea_profile.attribute, boxes, samples))
    profile = profile_layers(vlm, samples, boxes, batch_size=2)
    assert profile.layers == GROUNDING and profile.n_samples == 3       # s3 (all evidence) and s4 (none) skipped
    assert all(profile.layer_auroc[i] == 1.0 for i in GROUNDING)
    assert max(a for i, a in enumerate(profile.layer_auroc) if i not in GROUNDING) < 0.9
    assert profile_layers(vlm, samples, boxes, limit=1, batch_size=2).n_samples == 1


def test_sample_auroc_labels_tokens_by_any_overlap(tiny_factory):
    vlm = VLM.from_loaded(*tiny_factory("qwen2_vl"))
    image = noise_image(56, 56, 0)
    [geometry] = image_geometries(vlm, vlm.prepare([image], [vlm.build_prompt(QUESTION)]), [image.size])
    n = geometry.n_tokens
    attention = np.stack([np.arange(n, dtype=float), -np.arange(n, dtype=float)])   # layer 0 rises along the grid
    last = geometry.token_boxes()[-1]
    one_pixel = (int(last[0]), int(last[1]), int(last[0]) + 1, int(last[1]) + 1)   # touches only the last cell
    np.testing.assert_allclose(sample_aurocs(attention, geometry, [one_pixel], image.size), [1.0, 0.0])
    assert sample_aurocs(attention, geometry, [(0, 0, 56, 56)], image.size) is None


def test_cached_profile_is_written_once_per_model_and_source(tiny_factory, tmp_path, monkeypatch):
    calls = []

    def profile(vlm, samples, boxes, limit):
        calls.append(vlm.name)
        return LayerProfile((1,), (0.4, 0.9), 7)

    monkeypatch.setattr(vea_profile, "_profiling_data", lambda source: ([], None))
    monkeypatch.setattr(vea_profile, "profile_layers", profile)
    source = ProfileSource(root=str(tmp_path))
    first = VLM.from_loaded(*tiny_factory("llava"), name="first")
    assert cached_profile(first, source).layers == (1,)
    assert cached_profile(first, source) == LayerProfile((1,), (0.4, 0.9), 7) and calls == ["first"]
    [written] = (tmp_path / "vea_profiles").iterdir()
    assert json.loads(written.read_text())["source"]["dataset"] == "Synthetic_Controlled_A"
    written.write_text("{not json")                                   # a torn file is profiled again
    assert cached_profile(first, source).layers == (1,) and calls == ["first", "first"]
    other_weights = VLM.from_loaded(*tiny_factory("llava", seed=1), name="first")
    cached_profile(other_weights, source)
    cached_profile(first, ProfileSource(root=str(tmp_path), samples=50))
    assert len(calls) == 4 and len(list((tmp_path / "vea_profiles").iterdir())) == 3


def test_published_sets_given_all_and_profile(tiny_factory, monkeypatch):
    deep = VLM.from_loaded(*tiny_factory("llava", lm_layers=20), name="llava-hf/llava-1.5-7b-hf")
    source = ProfileSource()
    assert resolve_layers(deep, "auto", source) == ((14, 15, 17, 19), "published")
    assert resolve_layers(deep, "all", source) == (tuple(range(20)), "all")
    assert resolve_layers(deep, "3+1+3", source) == ((1, 3), "given")
    monkeypatch.setattr(vea_profile, "cached_profile", lambda vlm, source: LayerProfile((2, 5), (), 1))
    assert resolve_layers(deep, "profile", source) == ((2, 5), "profiled")
    shallow = VLM.from_loaded(*tiny_factory("llava"), name="llava-hf/llava-1.5-7b-hf")
    with pytest.raises(ToolkitError, match=r"VEA layers 14\+15\+17\+19 \(published\) do not exist: .* has 2 "):
        resolve_layers(shallow, "auto", source)


def test_a_profile_source_without_boxes_is_refused_with_the_fix():
    with pytest.raises(ToolkitError, match="cannot profile layers on COCO_QA_one_obj: it has no boxes of its own; "
                                           "give a boxes JSON with --vea-boxes"):
        vea_profile._profiling_data(ProfileSource(dataset="COCO_QA_one_obj"))
