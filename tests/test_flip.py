"""Flip augmentation maps every relation correctly, refuses ambiguous VSR captions, mirrors the image; the
flip-consistency metric and the flip-test command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dataset_zoo import get_dataset
from dataset_zoo.base import Sample
from dataset_zoo.flip import FLIP_SUFFIX, FlippedSample, flip_caption, flip_sample, flip_samples, flip_word
from scoring.flip_consistency import flip_consistency
from model_zoo.tiny import build_tiny_vlm, save_tiny_vlm
from tests.conftest import noise_image
from tests.fixtures_data import write_dataset_fixture, write_vsr_fixture
from training import flip_test

MIRRORED = {"left": "right", "right": "left"}
UNCHANGED = ("on", "under", "front", "behind", "above", "below", "top", "bottom", "yes", "no")


def choice_sample(answer: str, options=("left", "right", "on", "under"), relation=None, path="x.jpg") -> Sample:
    return Sample(id="s", index=0, image_path=path, question=f"Where is the mug in relation to the table? Answer "
                  f"with {', '.join(options)}.", options=options, answer=answer, relation=relation or answer)


def vsr_sample(caption: str, relation: str, label: int = 1) -> Sample:
    question = f"Determine whether the description about the spatial relationship is correct or not. Answer with " \
               f"yes or no: {caption}"
    return Sample(id="v", index=0, image_path="x.jpg", question=question, options=("yes", "no"),
                  answer="yes" if label else "no", relation=relation, caption=caption, label=label,
                  paper_prompt=f"User: <image>\n {question} Assistant:")


@pytest.mark.parametrize("answer", [*MIRRORED, *UNCHANGED[:-2]])
def test_every_whatsup_relation_maps_to_its_mirror(answer):
    options = ("left", "right", "front", "behind") if answer in ("front", "behind") else \
        ("left", "right", "above", "below", "top", "bottom", "on", "under")
    flipped = flip_sample(choice_sample(answer, options))
    assert flipped.answer == MIRRORED.get(answer, answer) and flipped.relation == flipped.answer
    assert flipped.options == options and flipped.question == choice_sample(answer, options).question
    assert flipped.id == "s" + FLIP_SUFFIX and flipped.source_id == "s"


def test_flip_word_leaves_everything_but_left_and_right():
    assert [flip_word(w) for w in (*MIRRORED, *UNCHANGED, None)] == ["right", "left", *UNCHANGED, None]


def test_two_option_questions_and_controlled_labels_flip():
    flipped = flip_sample(choice_sample("right", ("left", "right"), relation="right"))
    assert (flipped.answer, flipped.options, flipped.relation) == ("left", ("left", "right"), "left")


def test_a_question_offering_only_one_side_is_refused():
    assert flip_sample(choice_sample("left", ("left", "on"))) is None


@pytest.mark.parametrize("caption, expected", [
    ("The cat is left of the dog.", "The cat is right of the dog."),
    ("The cat is to the right of the dog.", "The cat is to the left of the dog."),
    ("The bed is at the left side of the bench.", "The bed is at the right side of the bench."),
    ("The cup is on the right side of the table.", "The cup is on the left side of the table."),
    ("Left of the dog is the cat.", "Right of the dog is the cat."),
    ("The cat is under the table.", "The cat is under the table."),
    ("The bird is facing away from the car.", "The bird is facing away from the car."),
    ("The dog is right next to the cat.", None),
    ("The cat is on the left.", None),
    ("The left dog is near the cat.", None),
    ("The cat is left of the right dog.", None),
])
def test_vsr_captions_flip_only_in_relation_phrases(caption, expected):
    assert flip_caption(caption) == expected


def test_a_flipped_vsr_sample_rewrites_caption_question_prompt_and_relation_and_keeps_the_label():
    flipped = flip_sample(vsr_sample("The bed is at the left side of the bench.", "at the left side of", label=0))
    assert flipped.caption == "The bed is at the right side of the bench."
    assert flipped.question.endswith(": The bed is at the right side of the bench.")
    assert "right side" in flipped.paper_prompt and "left" not in flipped.paper_prompt
    assert (flipped.relation, flipped.label, flipped.answer) == ("at the right side of", 0, "no")


def test_flip_samples_refuses_ambiguous_vsr_captions(tmp_path):
    samples = [vsr_sample("The cat is left of the dog.", "left of"), vsr_sample("The dog is right next to the cat.",
                                                                                "next to")]
    flips, refused = flip_samples(samples)
    assert [s.caption for s in flips] == ["The cat is right of the dog."] and refused == [samples[1]]


def test_the_flipped_image_is_the_mirror_of_the_stored_one(tmp_path):
    path = tmp_path / "scene.png"
    noise_image(20, 12, seed=3).save(path)
    original = choice_sample("left", path=path)
    flipped = flip_sample(original)
    assert isinstance(flipped, FlippedSample)
    assert np.array_equal(np.asarray(flipped.image), np.asarray(original.image)[:, ::-1])


def test_whole_datasets_flip(tmp_path):
    write_dataset_fixture(tmp_path, "Controlled_Images_A")
    write_vsr_fixture(tmp_path, "zeroshot", "test")
    controlled = get_dataset("Controlled_Images_A", root=tmp_path, split="all")
    flips, refused = flip_samples(controlled)
    assert not refused and [f.answer for f in flips] == [MIRRORED.get(s.answer, s.answer) for s in controlled]
    vsr = get_dataset("VSR", root=tmp_path, split="all")
    flips, refused = flip_samples(vsr)
    assert len(flips) == len(vsr) and flips[1].caption == "The dog is right of the bench."


def record(sample_id, prediction, gold, relation="left"):
    return {"id": sample_id, "prediction": prediction, "correct": prediction == gold, "relation": relation}


def test_flip_consistency_counts_answers_that_flip_with_the_image():
    records = [record("a", "left", "left"), record("a~flip", "right", "right"),       # flips: consistent
               record("b", "left", "right", "right"), record("b~flip", "left", "left", "left"),  # stays: not
               record("c", "on", "on", "on"), record("c~flip", "on", "on", "on"),     # unchanged: consistent
               record("d", None, "left"), record("d~flip", "left", "right"),          # unparsed
               record("e", "left", "left")]                                           # no flip: ignored
    metrics = flip_consistency(records)
    assert (metrics["n_pairs"], metrics["n_parsed"], metrics["n_consistent"]) == (4, 3, 2)
    assert metrics["consistency"] == pytest.approx(2 / 3)
    assert metrics["both_correct"] == 0.5 and metrics["accuracy_original"] == 0.5
    assert metrics["accuracy_flipped"] == 0.75
    assert metrics["per_relation"]["right"] == {"n": 1, "consistency": 0.0}


def test_flip_test_command(tmp_path, capsys):
    write_dataset_fixture(tmp_path / "data", "Controlled_Images_A")
    model_dir = save_tiny_vlm(*build_tiny_vlm("llava", seed=2), tmp_path / "model")
    output = tmp_path / "flip.jsonl"
    assert flip_test.main(["--model-path", str(model_dir), "--dataset", "Controlled_Images_A", "--data-root",
                           str(tmp_path / "data"), "--limit", "3", "--max-new-tokens", "2",
                           "--output", str(output)]) == 0
    assert "flip consistency" in capsys.readouterr().out
    ids = [json.loads(line)["id"] for line in output.read_text().splitlines()]
    assert len(ids) == 6 and sum(i.endswith(FLIP_SUFFIX) for i in ids) == 3
    metrics = json.loads((tmp_path / "flip.jsonl.metrics.json").read_text())
    assert metrics["n_pairs"] == 3 and metrics["n_refused"] == 0
