"""The shipped toy checkpoint loads like a hub model, answers fresh synthetic scenes, looks at the objects,
and its training script learns. No test trains the real model: the training test uses a tiny budget."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from dataset_zoo import get_dataset
from dataset_zoo.prompts import load_templates
from dataset_zoo.synthetic import ANCHORS, COLOUR_WORDS, RELATIONS, SMALL_OBJECTS
from model_zoo import get_model
from model_zoo.tiny import count_unknown_words
from model_zoo.toy import CHECKPOINT_DIR
from model_zoo.toy.attention_mass import measure_attention_mass, patch_coverage
from model_zoo.toy.build import sincos_table
from model_zoo.toy.data import make_examples, question_text
from model_zoo.vlm import chat_prompt
from model_zoo.toy.evaluate import accuracy, generate_answers
from model_zoo.toy.train import main as train_main

TINY_TRAINING = ["--steps", "30", "--batch-size", "8", "--lr", "3e-3", "--warmup", "5", "--eval-every", "10",
                 "--val-size", "16", "--test-size", "16", "--hidden", "32", "--vision-hidden", "16", "--lm-layers", "2",
                 "--target-accuracy", "0", "--no-evaluate", "--quiet"]


@pytest.fixture(scope="module")
def toy_vlm():
    return get_model(str(CHECKPOINT_DIR), dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def fresh_scenes():
    """100 scenes from a stream the training never used (training: toy-train-*, its test: toy-test-*)."""
    return make_examples("pytest-fresh-scenes", 100)


@pytest.fixture(scope="module")
def synthetic_a(tmp_path_factory):
    """The data layer's Synthetic_Controlled_A set, generated into a fresh data root."""
    return get_dataset("Synthetic_Controlled_A", root=tmp_path_factory.mktemp("data"), split="all")


def test_checkpoint_loads_through_the_auto_classes_and_is_small():
    processor = AutoProcessor.from_pretrained(CHECKPOINT_DIR)
    model = AutoModelForImageTextToText.from_pretrained(CHECKPOINT_DIR)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(processor).__name__ == "LlavaProcessor"
    assert (CHECKPOINT_DIR / "model.safetensors").stat().st_size <= 10 * 2 ** 20
    assert (CHECKPOINT_DIR / "TRAINING.md").read_text().count("python -m model_zoo.toy.train") >= 1
    image = make_examples("pytest-one-scene", 1)[0].image
    inputs = processor(images=[image], text=[chat_prompt(processor, "Where is the mug in relation to the table? "
                                                         "Answer with left, right, on or under.")],
                       return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    answer = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answer.strip() in RELATIONS["A"]


def test_every_synthetic_question_tokenizes_without_unknown_words(toy_vlm):
    templates = load_templates()
    tokenizer = toy_vlm.processor.tokenizer
    objects = [*SMALL_OBJECTS, *(f"{c}-{o}" for c in COLOUR_WORDS for o in SMALL_OBJECTS)]
    for variant in ("A", "B"):
        for anchor in ANCHORS[variant]:
            for obj in objects:
                for two in (False, True):
                    question = question_text(templates, obj, anchor, variant, RELATIONS[variant][0], two)
                    assert count_unknown_words(tokenizer, question) == 0, question
    assert count_unknown_words(tokenizer, toy_vlm.build_prompt(question)) == 0


def test_training_questions_are_the_data_layer_questions(synthetic_a):
    templates = load_templates()
    for sample in synthetic_a[:40]:
        obj, anchor = sample.group
        assert question_text(templates, obj, anchor, "A", sample.answer) == sample.question


def test_accuracy_on_fresh_scenes_is_at_least_90_percent(toy_vlm, fresh_scenes):
    answers = generate_answers(toy_vlm, fresh_scenes)
    assert accuracy(answers, fresh_scenes) >= 0.9
    assert all(a == a.strip().lower() for a in answers)   # one lower-case word, then EOS


def test_accuracy_through_the_data_layer_is_at_least_90_percent(toy_vlm, synthetic_a):
    samples = synthetic_a[:100]
    inputs = toy_vlm.prepare([s.image for s in samples], [toy_vlm.build_prompt(s.question) for s in samples])
    answers = toy_vlm.generate(inputs, max_new_tokens=3)
    assert sum(a == s.answer for a, s in zip(answers, samples)) / len(samples) >= 0.9


def test_last_token_attention_concentrates_on_the_objects(toy_vlm, fresh_scenes):
    report = measure_attention_mass(toy_vlm.model, toy_vlm.processor, fresh_scenes)
    assert report.middle_enrichment() >= 3.0
    middle = report.layers[report.middle_layers()[0]]
    assert middle.image_share > 0.5   # the last token reads the image at all, not only the text
    assert toy_vlm.model.config.get_text_config()._attn_implementation == "sdpa"   # measurement restored it


@pytest.mark.slow
def test_training_script_runs_a_tiny_budget_and_the_loss_goes_down(tmp_path):
    result = train_main([*TINY_TRAINING, "--output", str(tmp_path / "toy")])
    losses = [point["loss"] for point in result.history]
    assert result.steps_run == 30 and len(losses) == 3
    assert losses[-1] < losses[0]
    log = json.loads((tmp_path / "toy" / "training_log.json").read_text())
    assert log["steps_run"] == 30 and log["config"]["arch"]["hidden"] == 32
    assert "python -m model_zoo.toy.train" in (tmp_path / "toy" / "TRAINING.md").read_text()
    assert AutoModelForImageTextToText.from_pretrained(tmp_path / "toy").config.text_config.hidden_size == 32


@pytest.mark.slow
def test_training_is_deterministic_given_a_seed(tmp_path):
    short = [*TINY_TRAINING[2:], "--steps", "4", "--eval-every", "2"]
    first = train_main([*short, "--output", str(tmp_path / "a")])
    second = train_main([*short, "--output", str(tmp_path / "b")])
    assert first.history[-1]["loss"] == second.history[-1]["loss"]
    for p, q in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(p, q)


def test_sincos_positions_encode_row_and_column():
    table = sincos_table(grid=6, dim=16)
    assert table.shape == (36, 16)
    same_row = table[0:6, :8]          # first half: the row; identical along a row
    assert torch.allclose(same_row, same_row[0].expand_as(same_row))
    same_column = table[0::6, 8:]      # second half: the column; identical down a column
    assert torch.allclose(same_column, same_column[0].expand_as(same_column))
    assert len({tuple(row.tolist()) for row in table}) == 36


def test_patch_coverage_counts_pixel_fractions():
    mask = np.zeros((96, 96), dtype=bool)
    mask[0:16, 0:16] = True            # exactly patch (0, 0)
    mask[16:24, 16:32] = True          # the top half of patch (1, 1)
    coverage = patch_coverage(mask, grid=6)
    assert coverage[0] == 1.0 and coverage[7] == 0.5 and coverage.sum() == 1.5


@pytest.mark.parametrize("flags", [["--steps", "0"], ["--batch-size", "-1"], ["--curriculum", "1.5"],
                                   ["--variants", "C"]])
def test_training_rejects_bad_settings_with_a_usage_error(tmp_path, flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--output", str(tmp_path), *flags])
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
