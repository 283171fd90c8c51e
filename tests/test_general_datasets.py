"""POPE, GQA, TextVQA and VQAv2 loaders on fixture copies in the lmms-lab schemas (written by the tests)."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.errors import ToolkitError
from dataset_zoo import download, get_dataset
from dataset_zoo.base import SHORT_ANSWER, YES_NO
from dataset_zoo.general import VQAV2_SAMPLE_SIZE, fixed_sample
from dataset_zoo.hub_tables import HubTable, missing_shards
from tests.fixtures_general import (GQA_ROWS, POPE_ROWS, TEXTVQA_ROWS, VQAV2_ROWS, jpeg_bytes,
                                    write_general_fixture, write_pope)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "data"


def test_pope_rows_become_yes_no_samples_with_their_subset(root):
    write_general_fixture(root, "POPE")
    ds = get_dataset("POPE", root=root)
    assert ds.task == YES_NO and not ds.has_groups and len(ds) == len(POPE_ROWS)
    first = ds[0]
    assert (first.id, first.index, first.answer, first.options) == ("adversarial-1", 0, "yes", ("yes", "no"))
    assert first.question == "Is there a dog in the image?\nAnswer the question using a single word or phrase."
    assert first.subset == first.relation == "adversarial" and first.answers is None
    assert [s.subset for s in ds] == [row[0] for row in POPE_ROWS]
    assert ds.info["option"] == "all" and ds.info["n_total"] == 6 and ds.info["source"] == "lmms-lab/POPE"
    assert ds.prompt_info["name"] == "general_qa" and ds.prompt_info["template"] == "short_answer"


@pytest.mark.parametrize("subset", ["adversarial", "popular", "random"])
def test_pope_option_selects_one_subset(root, subset):
    write_general_fixture(root, "POPE")
    ds = get_dataset("POPE", root=root, option=subset)
    assert [s.id for s in ds] == [f"{subset}-1", f"{subset}-2"] and ds.info["option"] == subset
    assert [s.index for s in ds] == [i for i, row in enumerate(POPE_ROWS) if row[0] == subset]


def test_embedded_images_are_extracted_once_with_their_bytes(root, monkeypatch):
    write_general_fixture(root, "POPE")
    ds = get_dataset("POPE", root=root)
    images = sorted((root / "lmms-lab/POPE/images").iterdir())
    assert [p.name for p in images] == [f"COCO_val2014_00000000010{i}.jpg" for i in (1, 2, 3)]
    key = "COCO_val2014_000000000101"
    assert ds[0].image_path.read_bytes() == jpeg_bytes(sum(map(ord, key))) and ds[0].image.size == (40, 30)

    def no_extraction(*args, **kwargs):
        raise AssertionError("present images must not be extracted again")

    monkeypatch.setattr("dataset_zoo.hub_tables._extract_from", no_extraction)
    assert [s.image_path for s in get_dataset("POPE", root=root)] == [s.image_path for s in ds]


def test_gqa_reads_its_images_from_the_image_table(root):
    write_general_fixture(root, "GQA")
    ds = get_dataset("GQA", root=root)
    assert ds.task == SHORT_ANSWER and [s.id for s in ds] == [row[0] for row in GQA_ROWS]
    assert [s.relation for s in ds] == ["verify", "query", "query"] and ds[1].answer == "white"
    assert ds[0].options == () and ds[0].answers is None
    assert ds[0].image_path == ds[1].image_path == root / "lmms-lab/GQA/images/n288870.jpg"
    assert ds.info["option"] == "testdev-balanced"


def test_textvqa_keeps_the_ten_answers_and_takes_the_most_frequent_as_gold(root):
    write_general_fixture(root, "TextVQA")
    ds = get_dataset("TextVQA", root=root)
    assert [s.id for s in ds] == ["34602", "34603"] and ds[0].answers == tuple(TEXTVQA_ROWS[0][3])
    assert (ds[0].answer, ds[1].answer) == ("dakota", "thursday") and ds[0].relation == "text"


def test_vqav2_answers_answer_type_and_the_fixed_sample(root):
    write_general_fixture(root, "VQAv2")
    ds = get_dataset("VQAv2", root=root)
    assert [s.id for s in ds] == [str(row[0]) for row in VQAV2_ROWS] and ds.info["option"] == "5k"
    assert ds[0].answers == tuple(VQAV2_ROWS[0][3]) and ds[0].answer == "3" and ds[0].relation == "number"
    assert ds.info["sample_size"] == VQAV2_SAMPLE_SIZE and ds.info["sample_seed"] == 1
    assert [s.id for s in get_dataset("VQAv2", root=root, option="full")] == [s.id for s in ds]


def test_the_vqav2_sample_is_fixed_sorted_and_independent_of_the_split_seed():
    picked = fixed_sample(214354)
    assert len(picked) == VQAV2_SAMPLE_SIZE == len(set(picked)) and picked == sorted(picked)
    assert picked == fixed_sample(214354) and fixed_sample(20, size=5) == fixed_sample(20, size=5)
    assert fixed_sample(20, size=5) != fixed_sample(20, size=5, seed=2) and fixed_sample(3) == [0, 1, 2]


def test_splits_apply_on_top_of_the_option(root):
    write_general_fixture(root, "POPE")
    val, test = (get_dataset("POPE", root=root, split=split) for split in ("val", "test"))
    assert len(val) == 1 and len(test) == 5 and {s.id for s in val} | {s.id for s in test} == {
        s.id for s in get_dataset("POPE", root=root)}


def test_a_jsonl_copy_with_image_paths_works(root):
    folder = root / "lmms-lab/textvqa/data"
    folder.mkdir(parents=True)
    (folder / "img.jpg").write_bytes(jpeg_bytes(3))
    rows = [{"question_id": 7, "question": "what brand?", "image_id": "abc", "answers": ["acme"] * 10,
             "image": "img.jpg"}]
    (folder / "validation.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    [sample] = get_dataset("TextVQA", root=root)
    assert sample.id == "7" and sample.image_path == folder / "img.jpg" and sample.image.size == (40, 30)


# ------------------------------------------------------------------ bad input

def test_missing_files_name_what_to_place_where(root):
    with pytest.raises(ToolkitError) as err:
        get_dataset("POPE", root=root)
    message = str(err.value)
    assert "data/test-*.parquet" in message and "lmms-lab/POPE" in message and "\n" not in message
    assert str(root / "lmms-lab/POPE/data") in message and "--download" in message


def test_a_missing_shard_is_named(root):
    first, _ = write_pope(root, shards=2)
    first.unlink()
    with pytest.raises(ToolkitError, match="test-00000-of-00002.parquet"):
        get_dataset("POPE", root=root)
    assert missing_shards([root / "a-00001-of-00003.parquet"]) == ["a-00000-of-00003.parquet",
                                                                      "a-00002-of-00003.parquet"]


def test_wrong_schema_names_the_missing_column(root):
    [path] = write_pope(root, shards=1)
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["category"]), path)
    with pytest.raises(ToolkitError, match=r"column\(s\) category missing.*lmms-lab/POPE schema"):
        get_dataset("POPE", root=root)


def test_an_image_column_without_embedded_bytes_is_refused(root):
    [path] = write_pope(root, shards=1)
    table = pq.read_table(path)
    index = table.schema.get_field_index("image")
    pq.write_table(table.set_column(index, "image", pa.array(["x.jpg"] * len(table))), path)
    with pytest.raises(ToolkitError, match="not an embedded image"):
        get_dataset("POPE", root=root)


def test_bad_values_and_duplicate_ids_name_the_row(root):
    write_pope(root, [("adversarial", "1", "dog", "maybe", "COCO_1")], shards=1)
    with pytest.raises(ToolkitError, match=r"row 1: POPE rows have answer yes/no"):
        get_dataset("POPE", root=root)
    write_pope(root, [("random", "1", "dog", "yes", "COCO_1")] * 2, shards=1)
    with pytest.raises(ToolkitError, match="question id random-1 repeats row 1"):
        get_dataset("POPE", root=root)


@pytest.mark.parametrize("name, option, message", [
    ("POPE", "hard", "valid options: two, four, six, adversarial"),
    ("POPE", "four", "not available for POPE; valid: adversarial, popular, random, all (default all)"),
    ("VQAv2", "random", "not available for VQAv2; valid: 5k, full"),
])
def test_unknown_subsets_list_the_valid_ones(root, name, option, message):
    with pytest.raises(ToolkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_dataset(name, root=root, option=option)


def test_paper_prompt_options_are_refused(root):
    write_general_fixture(root, "POPE")
    with pytest.raises(ToolkitError, match="apply to the WhatsUp datasets only"):
        get_dataset("POPE", root=root, prompt_variant="reversed")


# ------------------------------------------------------------------ downloads

def test_download_fetches_the_shards_and_then_skips_them(root, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    write_general_fixture(mirror, "GQA")
    ds = get_dataset("GQA", root=root, download=True, download_mirror=str(mirror))
    assert len(ds) == 3 and (root / "lmms-lab/GQA/testdev_balanced_images/testdev-00000-of-00001.parquet").is_file()
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]

    def no_listing(*args, **kwargs):
        raise AssertionError("present files must not be fetched again")

    monkeypatch.setattr(download, "list_hub_files", no_listing)
    assert len(get_dataset("GQA", root=root, download=True)) == 3


def test_download_completes_a_partial_set_of_shards(root, tmp_path):
    mirror = tmp_path / "mirror"
    write_pope(mirror, shards=2)
    write_pope(root, shards=2)[1].unlink()
    assert len(get_dataset("POPE", root=root, download=True, download_mirror=str(mirror))) == 6


def test_download_offline_says_which_files_to_place_where(root):
    # conftest sets HF_HUB_OFFLINE=1, so listing the hub repository fails as it would without a network.
    with pytest.raises(ToolkitError) as err:
        get_dataset("POPE", root=root, download=True)
    message = str(err.value)
    assert message.startswith("could not list the files of lmms-lab/POPE") and "\n" not in message
    assert "data/test-*.parquet" in message and str(root / "lmms-lab/POPE/data") in message


def test_hub_table_layout():
    table = HubTable("lmms-lab/GQA", "testdev_balanced_images/testdev", ("id",), image="image")
    assert table.pattern == "testdev_balanced_images/testdev-*.parquet"
    assert table.url() == "https://huggingface.co/datasets/lmms-lab/GQA/tree/main/testdev_balanced_images"
    assert table.required == ("id", "image")


def test_fetch_cli_downloads_a_general_benchmark(root, tmp_path):
    from dataset_zoo.fetch import main as fetch_main

    mirror = tmp_path / "mirror"
    write_general_fixture(mirror, "VQAv2")
    assert fetch_main(["VQAv2", "--root", str(root), "--mirror", str(mirror)]) == 0
    assert len(list((root / "lmms-lab/VQAv2/data").glob("validation-*.parquet"))) == 2
    assert len(list((root / "lmms-lab/VQAv2/images").iterdir())) == 2


def test_another_template_file_must_hold_questions(root, tmp_path):
    write_general_fixture(root, "POPE")
    template = tmp_path / "mine.json"
    template.write_text(json.dumps({"name": "mine", "version": 1,
                                    "questions": {"short_answer": "Q: {question} Answer yes or no."}}))
    assert get_dataset("POPE", root=root, template_file=template)[0].question == (
        "Q: Is there a dog in the image? Answer yes or no.")
    template.write_text(json.dumps({"name": "mine"}))
    with pytest.raises(ToolkitError, match="lacks the key 'questions'; start from the repository's "
                                           "prompt/general_qa.json"):
        get_dataset("POPE", root=root, template_file=template)
