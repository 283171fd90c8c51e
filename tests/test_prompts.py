"""Prompt templates as data, paper-exact prompt files, option counts and the reversed-object variant."""
import json
import logging

import pytest

from common.errors import ToolkitError
from dataset_zoo import get_dataset
from dataset_zoo.prompts import DEFAULT_TEMPLATE_FILE, load_templates, strip_chat_wrapper
from tests.fixtures_data import (paper_prompt_rows, write_controlled_fixture, write_prompt_file, write_vsr_fixture,
                                 write_whatsup_qa_fixture)

PAPER_QUESTIONS = {
    "Controlled_Images_A": "Where is the mug in relation to the table? Answer with left, right, on or under.",
    "Controlled_Images_B": "Where is the teapot in relation to the spoon? Answer with left, right, front or behind.",
    "COCO_QA_one_obj": "Where is the dining table in the photo? Answer with left, right, top or bottom.",
    "COCO_QA_two_obj": ("Where is the dining table in relation to the refrigerator? "
                        "Answer with left, right, above, or below."),
    "VG_QA_one_obj": "Where is the purse in the photo? Answer with left, right, front, behind, top or bottom.",
    "VG_QA_two_obj": "Where is the cart in relation to the tree? Answer with left, right, front, behind, above or below.",
}


@pytest.fixture
def root(tmp_path):
    return tmp_path / "data"


def _write(root, name):
    if name.startswith("Controlled"):
        return write_controlled_fixture(root, name[-1])
    return write_whatsup_qa_fixture(root, name)


def test_template_file_is_versioned_and_recorded(root):
    templates = load_templates()
    assert templates.path == DEFAULT_TEMPLATE_FILE and isinstance(templates.version, int)
    write_controlled_fixture(root, "A")
    info = get_dataset("Controlled_Images_A", root=root).prompt_info
    assert info["source"] == "template" and info["name"] == "spatial_qa"
    assert info["version"] == templates.version and info["template"] == "two_obj"
    assert info["option"] == "four" and info["variant"] == "default" and len(info["sha256"]) == 64


@pytest.mark.parametrize("name", sorted(PAPER_QUESTIONS))
def test_default_questions_use_the_paper_wording(root, name):
    _write(root, name)
    assert get_dataset(name, root=root)[0].question == PAPER_QUESTIONS[name]


def test_paper_prompt_file_is_used_verbatim_with_quirks(root, tmp_path):
    write_controlled_fixture(root, "A")
    prompt_dir = tmp_path / "prompts"
    path = write_prompt_file(prompt_dir, "Controlled_Images_A")
    rows = paper_prompt_rows("Controlled_Images_A")
    ds = get_dataset("Controlled_Images_A", root=root, prompt_dir=prompt_dir)
    assert [s.paper_prompt for s in ds] == [r["question"] for r in rows]
    assert [s.answer for s in ds] == [r["answer"][0].lower() for r in rows]
    assert ds[0].question == PAPER_QUESTIONS["Controlled_Images_A"]
    # double space after "USER:", "Where are", extra newline before "ASSISTANT:": wrapper stripped, text kept
    assert ds[1].question.startswith("Where is the water bottle")
    assert ds[2].question.startswith("Where are the mug in relation")
    assert ds[3].question.endswith("on or under.")
    assert ds.prompt_info["source"] == "paper_file" and ds.prompt_info["file"] == str(path)
    assert all(s.id == t.id for s, t in zip(ds, get_dataset("Controlled_Images_A", root=root)))


def test_strip_chat_wrapper_keeps_inner_quirks():
    raw = "<image>\nUSER:  Where are the clouds in relation to the house? \nAnswer with left or right..\n\nASSISTANT:"
    assert strip_chat_wrapper(raw) == "Where are the clouds in relation to the house? \nAnswer with left or right.."


def test_paper_prompt_file_with_string_answers(root, tmp_path):
    write_whatsup_qa_fixture(root, "VG_QA_two_obj")
    rows = paper_prompt_rows("VG_QA_two_obj", quirks=False)
    for row in rows:
        row["answer"] = row["answer"][0]
    write_prompt_file(tmp_path / "p", "VG_QA_two_obj", rows=rows)
    ds = get_dataset("VG_QA_two_obj", root=root, prompt_dir=tmp_path / "p")
    assert [s.answer for s in ds] == ["front", "behind", "left", "above"]


def test_prompt_file_row_count_mismatch(root, tmp_path):
    write_whatsup_qa_fixture(root, "COCO_QA_one_obj")
    path = write_prompt_file(tmp_path / "p", "COCO_QA_one_obj", rows=paper_prompt_rows("COCO_QA_one_obj")[:3])
    with pytest.raises(ToolkitError, match=rf"{path} has 3 rows but .*coco_qa_one_obj.json has 4"):
        get_dataset("COCO_QA_one_obj", root=root, prompt_dir=tmp_path / "p")


def test_missing_prompt_file_names_expected_path(root, tmp_path):
    write_whatsup_qa_fixture(root, "VG_QA_one_obj")
    with pytest.raises(ToolkitError, match="VG_QA_one_obj_with_answer_six_options.jsonl"):
        get_dataset("VG_QA_one_obj", root=root, prompt_dir=tmp_path / "nowhere")


def test_malformed_prompt_row_names_line(root, tmp_path):
    write_controlled_fixture(root, "B")
    path = write_prompt_file(tmp_path / "p", "Controlled_Images_B")
    lines = path.read_text().split("\n")
    lines[5] = json.dumps({"id": 5, "prompt": "x"})
    path.write_text("\n".join(lines))
    with pytest.raises(ToolkitError, match=rf"{path}:6: a prompt row needs"):
        get_dataset("Controlled_Images_B", root=root, prompt_dir=tmp_path / "p")


def test_prompt_answer_outside_options(root, tmp_path):
    write_controlled_fixture(root, "A")
    rows = paper_prompt_rows("Controlled_Images_A")
    rows[2]["answer"] = ["Front"]
    write_prompt_file(tmp_path / "p", "Controlled_Images_A", rows=rows)
    with pytest.raises(ToolkitError, match="line 3: gold answer 'front' is not one of the options"):
        get_dataset("Controlled_Images_A", root=root, prompt_dir=tmp_path / "p")


def test_prompt_answers_disagreeing_with_annotations_are_logged(root, tmp_path, caplog):
    write_controlled_fixture(root, "A")
    rows = paper_prompt_rows("Controlled_Images_A")
    rows[0]["answer"], rows[1]["answer"] = rows[1]["answer"], rows[0]["answer"]
    write_prompt_file(tmp_path / "p", "Controlled_Images_A", rows=rows)
    with caplog.at_level(logging.WARNING):
        get_dataset("Controlled_Images_A", root=root, prompt_dir=tmp_path / "p")
    assert "2 of 8 prompt-file answers differ" in caplog.text


def test_two_options_controlled_use_the_inverse_pair_in_canonical_order(root):
    write_controlled_fixture(root, "A")
    ds = get_dataset("Controlled_Images_A", root=root, option="two")
    by_relation = {s.relation: s for s in ds}
    assert by_relation["under"].options == ("on", "under") and by_relation["under"].answer == "under"
    assert by_relation["right"].options == ("left", "right")
    assert ds[0].question == "Where is the mug in relation to the table? Answer with on or under."
    assert ds.prompt_info["option"] == "two"


def test_two_options_qa_use_both_captions(root):
    write_whatsup_qa_fixture(root, "COCO_QA_one_obj")
    ds = get_dataset("COCO_QA_one_obj", root=root, option="two")
    assert [s.options for s in ds] == [("top", "bottom"), ("left", "right"), ("top", "bottom"), ("left", "right")]
    assert [s.answer for s in ds] == ["bottom", "left", "top", "right"]
    write_whatsup_qa_fixture(root, "VG_QA_two_obj")
    vg = get_dataset("VG_QA_two_obj", root=root, option="two")
    assert vg[0].options == ("front", "behind") and vg[3].options == ("above", "below")


def test_reversed_variant_swaps_objects_and_inverts_answer(root):
    write_controlled_fixture(root, "A")
    default = get_dataset("Controlled_Images_A", root=root)
    reversed_ = get_dataset("Controlled_Images_A", root=root, prompt_variant="reversed")
    assert reversed_[0].question == "Where is the table in relation to the mug? Answer with left, right, on or under."
    inverse = {"left": "right", "right": "left", "on": "under", "under": "on"}
    assert [s.answer for s in reversed_] == [inverse[s.answer] for s in default]
    assert [(s.relation, s.group) for s in reversed_] == [(s.relation, s.group) for s in default]
    assert reversed_.prompt_info["template"] == "two_obj_reversed"
    write_whatsup_qa_fixture(root, "VG_QA_two_obj")
    vg = get_dataset("VG_QA_two_obj", root=root, prompt_variant="reversed")
    assert [s.answer for s in vg] == ["behind", "front", "right", "below"]


@pytest.mark.parametrize("name", ["COCO_QA_one_obj", "VSR"])
def test_reversed_variant_needs_two_objects(root, name):
    write_vsr_fixture(root) if name == "VSR" else write_whatsup_qa_fixture(root, name)
    with pytest.raises(ToolkitError):
        get_dataset(name, root=root, prompt_variant="reversed")


def test_reversed_variant_conflicts_with_paper_files(root, tmp_path):
    write_controlled_fixture(root, "A")
    write_prompt_file(tmp_path / "p", "Controlled_Images_A")
    with pytest.raises(ToolkitError, match="default object order only"):
        get_dataset("Controlled_Images_A", root=root, prompt_dir=tmp_path / "p", prompt_variant="reversed")


def test_unknown_prompt_variant(root):
    write_controlled_fixture(root, "A")
    with pytest.raises(ToolkitError, match="valid: default, reversed"):
        get_dataset("Controlled_Images_A", root=root, prompt_variant="mirrored")


def test_custom_template_file(root, tmp_path):
    data = json.loads(DEFAULT_TEMPLATE_FILE.read_text())
    data["version"] = 99
    data["questions"]["two_obj"] = "Relative to the {obj2}, where is the {obj1}? Choose {options}."
    custom = tmp_path / "mine.json"
    custom.write_text(json.dumps(data))
    write_controlled_fixture(root, "A")
    ds = get_dataset("Controlled_Images_A", root=root, template_file=custom)
    assert ds[0].question == "Relative to the table, where is the mug? Choose left, right, on or under."
    assert ds.prompt_info["version"] == 99 and ds.prompt_info["file"] == str(custom)


def test_broken_template_file(root, tmp_path):
    custom = tmp_path / "broken.json"
    custom.write_text(json.dumps({"version": 1}))
    write_controlled_fixture(root, "A")
    with pytest.raises(ToolkitError, match="lacks the key"):
        get_dataset("Controlled_Images_A", root=root, template_file=custom)
