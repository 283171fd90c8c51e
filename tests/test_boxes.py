"""Box sources (synthetic sidecar, COCO instances, boxes JSON, detector) and box drawing, pixel by pixel."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from common.errors import ToolkitError
from dataset_zoo import get_dataset
from dataset_zoo.base import Sample
from dataset_zoo.boxes import (CocoBoxes, DetectorBoxes, JsonBoxes, NamedBox, SyntheticBoxes, box_source_for,
                               mirror_box, referenced_objects)
from dataset_zoo.flip import flip_sample
from dataset_zoo.synthetic import load_boxes
from dataset_zoo.visual_prompt import BoxPrompt, draw_boxes

RED = (255, 0, 0)


def outline_mask(size, box, width):
    """The pixels an outline of `width` drawn inside `box` (x1/y1 exclusive) must cover."""
    mask = np.zeros((size[1], size[0]), dtype=bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    mask[y0 + width:y1 - width, x0 + width:x1 - width] = False
    return mask


def red_mask(image: Image.Image) -> np.ndarray:
    return np.all(np.asarray(image) == RED, axis=-1)


@pytest.mark.parametrize("box, width", [((2, 3, 10, 9), 1), ((2, 3, 10, 9), 2), ((0, 0, 20, 16), 3)])
def test_draw_boxes_colours_exactly_the_outline_inside_the_box(box, width):
    image = Image.new("RGB", (20, 16), "white")
    drawn = draw_boxes(image, [box], "red", width)
    assert np.array_equal(red_mask(drawn), outline_mask(image.size, box, width))
    assert red_mask(image).sum() == 0, "the input image is left untouched"


def test_colour_and_width_are_configurable_and_checked():
    drawn = draw_boxes(Image.new("RGB", (10, 10), "white"), [(1, 1, 9, 9)], "#00ff00", 1)
    assert tuple(np.asarray(drawn)[1, 1]) == (0, 255, 0)
    with pytest.raises(ToolkitError, match="unknown box colour"):
        draw_boxes(Image.new("RGB", (4, 4)), [], "reddish")
    with pytest.raises(ToolkitError, match="at least 1 pixel"):
        BoxPrompt(JsonBoxes.__new__(JsonBoxes), width=0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, get_dataset("Synthetic_Controlled_A", root=root, split="all", synthetic={"n_pairs": 1})


def test_synthetic_sidecar_boxes_are_drawn_at_their_pixels(synthetic):
    root, dataset = synthetic
    sample = dataset[0]
    stored = load_boxes(root, "A")[sample.image_path.name]
    source = box_source_for("Synthetic_Controlled_A", root)
    assert isinstance(source, SyntheticBoxes)
    boxes = source.boxes(sample, sample.image)
    obj1, obj2 = referenced_objects(sample)
    assert boxes == [NamedBox(obj1, stored["object"]), NamedBox(obj2, stored["anchor"])]
    prompt = BoxPrompt(source)
    drawn = prompt(sample, sample.image)
    expected = outline_mask(drawn.size, stored["object"], 3) | outline_mask(drawn.size, stored["anchor"], 3)
    assert np.all(red_mask(drawn)[expected])
    assert prompt.to_dict()["drawn"] == 1 and prompt.to_dict()["source"]["source"] == "synthetic_sidecar"


def test_boxes_of_a_flipped_sample_are_mirrored(synthetic):
    root, dataset = synthetic
    sample = dataset[0]
    source = SyntheticBoxes(root, "A")
    plain, flipped = source.boxes(sample, sample.image), source.boxes(flip_sample(sample), sample.image)
    assert [b.box for b in flipped] == [mirror_box(b.box, sample.image.width) for b in plain]
    assert mirror_box((2, 0, 5, 1), 10) == (5, 0, 8, 1)


def coco_file(tmp_path):
    data = {"images": [{"id": 5, "file_name": "000000000005.jpg", "width": 40, "height": 30}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "dining table"}],
            "annotations": [
                {"image_id": 5, "category_id": 1, "bbox": [1.5, 2.2, 4, 4], "iscrowd": 0, "area": 16},
                {"image_id": 5, "category_id": 1, "bbox": [10, 10, 12.3, 8], "iscrowd": 0, "area": 98},
                {"image_id": 5, "category_id": 1, "bbox": [0, 0, 40, 30], "iscrowd": 1, "area": 1200},
                {"image_id": 5, "category_id": 2, "bbox": [30, 5, 20, 20], "iscrowd": 0, "area": 400},
                {"image_id": 5, "category_id": 3, "bbox": [0, 20, 40, 10], "iscrowd": 0, "area": 400}]}
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_boxes_match_objects_by_name_and_take_the_largest_instance(tmp_path):
    image_path = tmp_path / "val2017" / "000000000005.jpg"
    sample = Sample(id="00000", index=0, image_path=image_path, question="q", options=("yes", "no"), answer="yes",
                    relation="left of", caption="The cat is left of the dog.", label=1)
    image = Image.new("RGB", (40, 30), "white")
    source = box_source_for("VSR", tmp_path, coco_annotations=coco_file(tmp_path))
    # cat: the larger non-crowd instance, widened to whole pixels; dog: clipped to the image
    assert source.boxes(sample, image) == [NamedBox("cat", (10, 10, 23, 18)), NamedBox("dog", (30, 5, 40, 25))]
    one_obj = Sample(id="00001", index=1, image_path=image_path, question="Where is the dining table in the photo? "
                     "Answer with left, right, top or bottom.", options=("left", "right", "top", "bottom"),
                     answer="bottom", relation="bottom")
    assert source.boxes(one_obj, image) == [NamedBox("dining table", (0, 20, 40, 30))]
    drawn = draw_boxes(image, [b.box for b in source.boxes(one_obj, image)], width=1)
    assert np.array_equal(red_mask(drawn), outline_mask(image.size, (0, 20, 40, 30), 1))


def test_boxes_json_by_sample_id_or_file_name(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"mug_left_of_table": {"mug": [1, 2, 5, 6]}, "b.jpg": {"box": [0, 0, 3, 3]}}))
    source = JsonBoxes(path)
    image = Image.new("RGB", (10, 10))
    by_id = Sample(id="mug_left_of_table", index=0, image_path=tmp_path / "a.jpg", question="q",
                   options=("left", "right"), answer="left", relation="left")
    by_name = Sample(id="other", index=1, image_path=tmp_path / "b.jpg", question="q", options=("left",),
                     answer="left", relation="left")
    assert source.boxes(by_id, image) == [NamedBox("mug", (1, 2, 5, 6))]
    assert source.boxes(by_name, image) == [NamedBox("box", (0, 0, 3, 3))]
    assert source.boxes(flip_sample(by_id), image) == [NamedBox("mug", (5, 2, 9, 6))]


@pytest.mark.parametrize("content, message", [
    ({"x": {"mug": [1, 2, 3]}}, r"\[x0, y0, x1, y1\]"),
    ({"x": {"mug": [5, 5, 3, 8]}}, "not \\[x, y, width, height\\]"),
    ([1, 2], "maps sample ids"),
])
def test_a_malformed_boxes_json_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ToolkitError, match=message) as error:
        JsonBoxes(path)
    assert "\n" not in str(error.value)


def test_a_detector_gets_the_referenced_names_and_the_image_the_model_sees():
    seen = {}

    def detector(image, names):
        seen.update(size=image.size, names=tuple(names))
        return {"mug": [2, 2, 50, 6]}

    sample = Sample(id="s", index=0, image_path="x.jpg", question="Where is the mug in relation to the table? "
                    "Answer with left, right, on or under.", options=("left", "right", "on", "under"), answer="left",
                    relation="left")
    boxes = box_source_for("COCO_QA_two_obj", detector=detector).boxes(sample, Image.new("RGB", (20, 10)))
    assert seen == {"size": (20, 10), "names": ("mug", "table")} and boxes == [NamedBox("mug", (2, 2, 20, 6))]


def test_a_sample_without_boxes_passes_through_and_is_counted(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text("{}")
    prompt = BoxPrompt(JsonBoxes(path))
    image = Image.new("RGB", (8, 8), "white")
    sample = Sample(id="s", index=0, image_path="x.jpg", question="q", options=("left",), answer="left",
                    relation="left")
    assert prompt(sample, image) is image and prompt.to_dict()["missing"] == 1


def test_datasets_without_boxes_name_the_sources():
    with pytest.raises(ToolkitError, match="boxes JSON .* COCO instance annotations .* detector"):
        box_source_for("Controlled_Images_A")


def test_referenced_objects_of_every_kind_of_sample():
    def sample(**fields):
        return Sample(**{"id": "s", "index": 0, "image_path": "x.jpg", "question": "q", "options": ("left",),
                         "answer": "left", "relation": "left", **fields})
    assert referenced_objects(sample(group=("water-bottle", "stool"))) == ("water bottle", "stool")
    assert referenced_objects(sample(question="Where is the cup in relation to the laptop? Answer with left, "
                                     "right, above, or below.")) == ("cup", "laptop")
    assert referenced_objects(sample(caption="The handbag contains the phone.", relation="contains")) == \
        ("handbag", "phone")
    assert referenced_objects(sample(caption="The bed is at the left side of the bench.",
                                     relation="at the left side of")) == ("bed", "bench")
