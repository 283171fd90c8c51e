"""The method registry: hyper-parameter parsing and ranges, configurations, errors for unknown or unused
names, and the alpha family answering through it exactly as the session does."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import methods
from common.errors import ToolkitError
from intervention import AdaptVis, open_session
from methods import Configuration, check_requested, get_method
from methods.alpha import PAPER_SETTINGS, plan_alpha_rounds
from methods.registry import register
from tests.conftest import noise_image


def test_hyperparameters_parse_grids_and_check_ranges():
    weight = get_method("scaling_vis").hyperparameter("weight")
    assert weight.flag == "--weight" and weight.parse("0.5, 0.8,1.2") == (0.5, 0.8, 1.2)
    for bad, message in (("0.5,,0.8", "empty item"), ("-1", "outside"), ("nan", "finite"), ("x", "valid float")):
        with pytest.raises(ToolkitError, match=message):
            weight.parse(bad)
    threshold = get_method("adapt_vis").hyperparameter("threshold")
    with pytest.raises(ToolkitError, match=r"--threshold 1.5 is outside \[0, 1\]"):
        threshold.parse("1.5")
    scope = get_method("scaling_vis").hyperparameter("scope")
    assert scope.parse("all") == ("all",)
    with pytest.raises(ToolkitError, match="one value"):
        scope.parse("all,prefill")
    with pytest.raises(ToolkitError, match="not one of"):
        scope.parse("decode")


def test_configurations_fill_defaults_and_name_their_folders():
    adapt = Configuration.of("adapt_vis", weight1=0.5, weight2=1.5, threshold=0.4)
    assert adapt.label() == "adapt_vis_w1-0.5_w2-1.5_t-0.4"
    assert adapt.hyperparameters == {"weight1": 0.5, "weight2": 1.5, "threshold": 0.4, "scope": "prefill",
                                     "round_confidence": True}
    assert Configuration.of("scaling_vis", weight=2).label() == "scaling_vis_a-2"
    assert Configuration.of("base").label() == "base" and Configuration.of("base") == Configuration("base")
    assert get_method("adapt_vis").default_values("VG_QA_one_obj")["weight2"] == PAPER_SETTINGS["VG_QA_one_obj"]["weight2"]


def test_unknown_and_unused_names_are_one_clear_error():
    with pytest.raises(ToolkitError, match="unknown method 'vcdd'; choose one of: base, .*scaling_vis, adapt_vis"):
        check_requested(["vcdd"], [])
    with pytest.raises(ToolkitError, match="unknown hyper-parameter --alpha"):
        check_requested(["base"], ["alpha"])
    with pytest.raises(ToolkitError, match="--threshold is a hyper-parameter of adapt_vis, which the requested "
                                           r"methods \(scaling_vis\) do not include"):
        check_requested(["scaling_vis"], ["threshold"])
    check_requested(["scaling_vis", "adapt_vis"], ["weight", "threshold", "scope"])
    with pytest.raises(ToolkitError, match="vcd has no hyper-parameter cd_alhpa; its hyper-parameters are cd_alpha"):
        Configuration.of("vcd", cd_alhpa=0.5)  # a typo must not run the defaults


def test_a_mistyped_flag_names_the_flag_it_was_probably_meant_to_be(capsys):
    from runner.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--method", "vcd", "--cd-alhpa", "1"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert "unrecognized arguments: --cd-alhpa 1; did you mean --cd-alpha for --cd-alhpa?" in error


def test_a_shared_hyperparameter_must_be_declared_identically():
    scope = get_method("scaling_vis").hyperparameter("scope")
    other = dataclasses.replace(get_method("base"), name="test_other_scope",
                                hyperparameters=(dataclasses.replace(scope, default="all"),))
    with pytest.raises(ValueError, match="differently"):
        register(other)
    assert "test_other_scope" not in methods.method_names()


def test_plan_alpha_rounds_covers_every_pair_in_the_fewest_calls():
    assert plan_alpha_rounds([[1.0, 0.5, 0.5], [1.0, 2.0, 0.8]]) == [[0.5, 0.8], [1.0, 1.0], [1.0, 2.0]]
    assert plan_alpha_rounds([[0.5], [1.5]]) == [[0.5, 1.5]]


def test_the_alpha_family_answers_as_the_session_does(tiny_vlm):
    images = [noise_image(40, 30, 0), noise_image(30, 40, 1)]
    prompts = [tiny_vlm.build_prompt("Where is the mug?"), tiny_vlm.build_prompt("Where is the cat?")]
    configs = [Configuration.of("base"), Configuration.of("scaling_vis", weight=0.0),
               Configuration.of("adapt_vis", weight1=0.0, weight2=2.0, threshold=0.5),
               Configuration.of("scaling_vis", weight=2.0, scope="all")]
    answers = methods.answer(tiny_vlm, [None, None], images, prompts, configs, max_new_tokens=3)
    inputs = tiny_vlm.prepare(images, prompts)
    naive = open_session(tiny_vlm, inputs, max_new_tokens=3, engine="naive")
    assert [a.text for a in answers[configs[0]]] == naive.answers(1.0)
    assert [a.text for a in answers[configs[1]]] == naive.answers(0.0)
    expected = AdaptVis(weight1=0.0, weight2=2.0, threshold=0.5).answer(naive)
    assert [a.text for a in answers[configs[2]]] == [e.text for e in expected]
    assert [a.fields["branch"] for a in answers[configs[2]]] == [e.branch for e in expected]
    assert [a.fields["alpha"] for a in answers[configs[2]]] == [e.alpha for e in expected]
    assert torch.allclose(torch.tensor([a.fields["confidence"] for a in answers[configs[0]]]), naive.confidence)
    all_scope = open_session(tiny_vlm, inputs, max_new_tokens=3, scope="all", engine="naive")
    assert [a.text for a in answers[configs[3]]] == all_scope.answers(2.0)
