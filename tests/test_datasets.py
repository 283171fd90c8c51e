"""Loaders on fixtures in the real formats: counts, fields, image paths, groups, label rules, bad input."""
import json

import pytest
from PIL import Image

from common.errors import ToolkitError
from dataset_zoo import DATASET_NAMES, LoadedDataset, get_dataset
from dataset_zoo.base import MULTIPLE_CHOICE, YES_NO
from dataset_zoo.relations import coco_two_obj_label, last_word_label, vg_two_obj_label
from dataset_zoo.vsr import PAPER_RESIZE
from tests.fixtures_data import (CONTROLLED, CONTROLLED_ANSWER, IMAGE_SIZE, QA, VSR_ZEROSHOT_ROWS,
                                 controlled_file_name, qa_image_name, write_controlled_fixture,
                                 write_dataset_fixture, write_jpeg, write_vsr_fixture, write_whatsup_qa_fixture)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "data"


# ------------------------------------------------------------------ Controlled

@pytest.mark.parametrize("variant", ["A", "B"])
def test_controlled_loader(root, variant):
    write_controlled_fixture(root, variant)
    ds = get_dataset(f"Controlled_Images_{variant}", root=root)
    annotation, folder, slots, rows = CONTROLLED[variant]
    assert isinstance(ds, LoadedDataset) and len(ds) == 8
    assert ds.task == MULTIPLE_CHOICE and ds.has_groups
    for i, (sample, (obj1, slot, obj2)) in enumerate(zip(ds, rows)):
        name = controlled_file_name(obj1, slot, obj2)
        assert sample.index == i
        assert sample.id == name[:-len(".jpeg")]
        # "data/controlled_images/x.jpeg" is resolved against the data root, not the working directory
        assert sample.image_path == root / folder / name
        assert sample.image.size == IMAGE_SIZE and sample.image.mode == "RGB"
        assert sample.group == (obj1, obj2)  # official rule: split('_')[0], split('_')[-1] without .jpeg
        assert sample.relation == slot
        assert sample.answer == CONTROLLED_ANSWER[slot]
        assert sample.paper_prompt is None and sample.caption is None and sample.label is None
    expected_options = ("left", "right", "on", "under") if variant == "A" else ("left", "right", "front", "behind")
    assert all(s.options == expected_options for s in ds)
    assert len({s.group for s in ds}) == 2


def test_controlled_b_in_front_of_becomes_front(root):
    write_controlled_fixture(root, "B")
    sample = next(s for s in get_dataset("Controlled_Images_B", root=root) if s.relation == "in-front")
    assert sample.answer == "front"
    assert sample.question == "Where is the teapot in relation to the spoon? Answer with left, right, front or behind."


def test_multi_word_objects_are_spelled_out_in_questions(root):
    write_controlled_fixture(root, "A")
    sample = get_dataset("Controlled_Images_A", root=root)[1]
    assert sample.group == ("water-bottle", "stool")
    assert sample.question == "Where is the water bottle in relation to the stool? Answer with left, right, on or under."


def test_controlled_image_paths_without_data_prefix_are_relative_to_root(root):
    path = write_controlled_fixture(root, "A")
    records = json.loads(path.read_text())
    for record in records:
        record["image_path"] = record["image_path"][len("data/"):]
    path.write_text(json.dumps(records))
    ds = get_dataset("Controlled_Images_A", root=root)
    assert ds[0].image_path == root / "controlled_images" / "mug_under_table.jpeg"


def test_synthetic_controlled_loads_like_controlled(root):
    ds = get_dataset("Synthetic_Controlled_A", root=root, synthetic={"n_pairs": 2})
    assert len(ds) == 8 and ds.has_groups
    assert (root / "synthetic_controlled_a.json").is_file()
    assert all(s.image_path.parent == root / "synthetic_controlled_a" for s in ds)
    assert {s.relation for s in ds} == {"left", "right", "on", "under"}
    assert all(len([t for t in ds if t.group == s.group]) == 4 for s in ds)
    assert ds[0].image.mode == "RGB"


# ------------------------------------------------------------------ COCO / VG

@pytest.mark.parametrize("name", sorted(QA))
def test_qa_loader(root, name):
    write_whatsup_qa_fixture(root, name)
    ds = get_dataset(name, root=root)
    _, folder, rows, expected = QA[name]
    assert len(ds) == 4 and ds.task == MULTIPLE_CHOICE and not ds.has_groups
    for i, (sample, row, (objects, answer, relation)) in enumerate(zip(ds, rows, expected)):
        assert sample.id == f"{i:05d}"
        assert sample.image_path == root / folder / qa_image_name(name, row[0])
        assert sample.image.size == IMAGE_SIZE
        assert sample.answer == answer and sample.relation == relation and sample.group is None
        assert all(obj in sample.question for obj in objects)
        assert sample.answer in sample.options
    assert len(ds[0].options) == (6 if name.startswith("VG") else 4)


def test_coco_image_ids_are_zero_padded_to_twelve_digits(root):
    write_whatsup_qa_fixture(root, "COCO_QA_one_obj")
    assert get_dataset("COCO_QA_one_obj", root=root)[0].image_path.name == "000000900001.jpg"
    write_whatsup_qa_fixture(root, "VG_QA_one_obj")
    assert get_dataset("VG_QA_one_obj", root=root)[0].image_path.name == "800001.jpg"


def test_string_image_ids_are_accepted(root):
    path = write_whatsup_qa_fixture(root, "COCO_QA_two_obj")
    rows = json.loads(path.read_text())
    rows[0][0] = str(rows[0][0])
    path.write_text(json.dumps(rows))
    assert get_dataset("COCO_QA_two_obj", root=root)[0].image_path.name == "000000900011.jpg"


def test_original_label_rules():
    assert last_word_label("A photo of a dining table on the bottom") == "bottom"
    assert coco_two_obj_label("A photo of a cup to the left of a laptop") == "left"
    assert coco_two_obj_label("A photo of a cup to the right of a laptop") == "right"
    assert coco_two_obj_label("A photo of a clock above a sink") == "above"
    assert coco_two_obj_label("A photo of a toilet below a sink") == "below"
    assert coco_two_obj_label("A photo of a toilet next to a sink") == "below"  # the original's else-branch
    assert vg_two_obj_label("A photo of a cart in front of a tree") == "front"
    assert vg_two_obj_label("A photo of a cart to the behind of a tree") == "behind"
    assert vg_two_obj_label("A photo of a shelf above a desk") == "top"  # fall-through, as in the original
    assert vg_two_obj_label("A photo of a shelf below a desk") == "top"


def test_vg_two_above_keeps_option_word_as_answer(root):
    write_whatsup_qa_fixture(root, "VG_QA_two_obj")
    shelf = get_dataset("VG_QA_two_obj", root=root)[3]
    assert (shelf.relation, shelf.answer) == ("top", "above")


# ------------------------------------------------------------------ VSR

def test_vsr_loader(root):
    write_vsr_fixture(root, "zeroshot", "test")
    ds = get_dataset("VSR", root=root)
    assert len(ds) == 6 and ds.task == YES_NO and not ds.has_groups
    assert [s.answer for s in ds] == ["yes" if r["label"] else "no" for r in VSR_ZEROSHOT_ROWS]
    assert [s.label for s in ds] == [r["label"] for r in VSR_ZEROSHOT_ROWS]
    assert [s.relation for s in ds] == [r["relation"] for r in VSR_ZEROSHOT_ROWS]
    first = ds[0]
    assert first.id == "00000" and first.options == ("yes", "no") and first.caption == "The cat is under the table."
    assert first.image_path == root / "train2017" / "000000900101.jpg"
    assert ds[2].image_path == root / "val2017" / "000000900103.jpg"  # resolved from image_link
    assert first.paper_prompt == ("User: <image>\n Determine whether the description about the spatial relationship "
                                  "is correct or not. Answer with yes or no: The cat is under the table. Assistant:")
    assert first.question == ("Determine whether the description about the spatial relationship is correct or not. "
                              "Answer with yes or no: The cat is under the table.")
    assert first.image.size == IMAGE_SIZE and first.resize_to is None


def test_vsr_paper_resize_stretches_images(root):
    write_vsr_fixture(root)
    sample = get_dataset("VSR", root=root, vsr_paper_resize=True)[0]
    assert sample.resize_to == PAPER_RESIZE and sample.image.size == (2300, 4096)


def test_vsr_splits_and_kinds(root):
    write_vsr_fixture(root, "random", "test")
    write_vsr_fixture(root, "zeroshot", "dev", rows=VSR_ZEROSHOT_ROWS[:3])
    random_test = get_dataset("VSR_random", root=root)
    assert len(random_test) == 4 and random_test.info["vsr_split"] == "test"
    assert len(get_dataset("VSR_zeroshot", root=root, vsr_split="dev")) == 3
    with pytest.raises(ToolkitError, match="valid: train, dev, test"):
        get_dataset("VSR_zeroshot", root=root, vsr_split="validation")


def test_vsr_reads_the_original_adaptvis_location(root):
    path = write_vsr_fixture(root)
    path.rename(root / "test.jsonl")
    assert len(get_dataset("VSR", root=root)) == 6


def test_vsr_ignores_option_counts(root):
    write_vsr_fixture(root)
    assert get_dataset("VSR", root=root, option="four").info["option"] is None


# ------------------------------------------------------------------ dataset object

def test_names_and_slicing_keep_provenance(root):
    assert len(DATASET_NAMES) == 15 and {"VSR", "POPE", "GQA", "TextVQA", "VQAv2"} <= set(DATASET_NAMES)
    write_controlled_fixture(root, "A")
    ds = get_dataset("Controlled_Images_A", root=root)
    head = ds[:3]
    assert isinstance(head, LoadedDataset) and len(head) == 3
    assert head.prompt_info == ds.prompt_info and head.info["n_total"] == 8


def test_ids_are_unique_and_stable(root):
    for name in ("Controlled_Images_A", "COCO_QA_one_obj", "VSR"):
        write_dataset_fixture(root, name)
        full = get_dataset(name, root=root)
        assert len({s.id for s in full}) == len(full)
        assert [s.id for s in get_dataset(name, root=root, option="two" if name != "VSR" else None)] == \
            [s.id for s in full]


# ------------------------------------------------------------------ bad input

def test_unknown_dataset_lists_valid_names(root):
    with pytest.raises(ToolkitError, match="valid names: Controlled_Images_A, .*VSR_zeroshot"):
        get_dataset("Controlled_Images_C", root=root)


@pytest.mark.parametrize("name, expected", [("Controlled_Images_A", "controlled_images_dataset.json"),
                                            ("VG_QA_two_obj", "vg_qa_two_obj.json"),
                                            ("VSR_random", "vsr/random/test.jsonl")])
def test_missing_annotation_names_path_and_download(root, name, expected):
    with pytest.raises(ToolkitError) as err:
        get_dataset(name, root=root)
    message = str(err.value)
    assert str(root / expected) in message and "--download" in message


def test_malformed_json_names_file_and_line(root):
    path = write_controlled_fixture(root, "A")
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace('"', "", 1)
    path.write_text("\n".join(lines))
    with pytest.raises(ToolkitError, match=rf"{path}:5:\d+: malformed JSON"):
        get_dataset("Controlled_Images_A", root=root)


def test_malformed_jsonl_names_file_and_line(root):
    path = write_vsr_fixture(root)
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:-1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ToolkitError, match=rf"{path}:3: malformed JSON line"):
        get_dataset("VSR", root=root)


def test_vsr_line_without_label_names_line_and_field(root):
    rows = [dict(r) for r in VSR_ZEROSHOT_ROWS]
    del rows[1]["label"]
    path = write_vsr_fixture(root, rows=rows)
    with pytest.raises(ToolkitError, match=rf"{path}:2: .*'label'"):
        get_dataset("VSR", root=root)


def test_wrong_record_shape_names_row(root):
    path = write_whatsup_qa_fixture(root, "COCO_QA_one_obj")
    rows = json.loads(path.read_text())
    rows[2] = {"image_path": "x.jpg"}
    path.write_text(json.dumps(rows))
    with pytest.raises(ToolkitError, match=r"row 2: .*\[image_id, correct_caption, wrong_caption\]"):
        get_dataset("COCO_QA_one_obj", root=root)


def test_bad_controlled_file_name_names_row_and_valid_relations(root):
    path = write_controlled_fixture(root, "A")
    records = json.loads(path.read_text())
    records[3]["image_path"] = "data/controlled_images/mug_in-front_of_table.jpeg"
    path.write_text(json.dumps(records))
    with pytest.raises(ToolkitError, match=r"row 3: .*left, right, on, under"):
        get_dataset("Controlled_Images_A", root=root)


def test_duplicate_controlled_images_are_rejected(root):
    path = write_controlled_fixture(root, "A")
    records = json.loads(path.read_text())
    path.write_text(json.dumps(records + records[:1]))
    with pytest.raises(ToolkitError, match="rows 0 and 8 name the same image"):
        get_dataset("Controlled_Images_A", root=root)


def test_unparseable_caption_names_row(root):
    path = write_whatsup_qa_fixture(root, "VG_QA_two_obj")
    rows = json.loads(path.read_text())
    rows[1][1] = "A fence and a dog"
    path.write_text(json.dumps(rows))
    with pytest.raises(ToolkitError, match="row 1: cannot read two objects"):
        get_dataset("VG_QA_two_obj", root=root)


def test_missing_image_is_reported_before_the_run(root):
    write_controlled_fixture(root, "B")
    (root / "controlled_clevr" / "toy-car_behind_cup.jpeg").unlink()
    with pytest.raises(ToolkitError, match=r"1 of 8 images .*/toy-car_behind_cup.jpeg.*--download"):
        get_dataset("Controlled_Images_B", root=root)
    ds = get_dataset("Controlled_Images_B", root=root, check_images=False)
    with pytest.raises(ToolkitError, match="image not found"):
        ds[1].image


def test_missing_vsr_images_say_where_coco_images_go(root):
    write_vsr_fixture(root)
    (root / "val2017" / "000000900103.jpg").unlink()
    with pytest.raises(ToolkitError, match="val2017"):
        get_dataset("VSR", root=root)


def test_corrupt_image_names_file(root):
    write_whatsup_qa_fixture(root, "VG_QA_one_obj")
    broken = root / "vg_images" / "800002.jpg"
    broken.write_bytes(b"not a jpeg")
    sample = get_dataset("VG_QA_one_obj", root=root)[1]
    with pytest.raises(ToolkitError, match=r"cannot read image .*800002.jpg.*corrupt"):
        sample.image


@pytest.mark.parametrize("option, message", [("three", "valid options: two, four, six"),
                                             ("six", "valid: two, four")])
def test_unknown_or_unavailable_option(root, option, message):
    write_controlled_fixture(root, "A")
    with pytest.raises(ToolkitError, match=message):
        get_dataset("Controlled_Images_A", root=root, option=option)


def test_unknown_split(root):
    write_controlled_fixture(root, "A")
    with pytest.raises(ToolkitError, match="unknown split 'dev'"):
        get_dataset("Controlled_Images_A", root=root, split="dev")


def test_image_helper_writes_real_jpegs(tmp_path):
    path = write_jpeg(tmp_path / "x.jpg", 3)
    with Image.open(path) as img:
        assert img.format == "JPEG"
