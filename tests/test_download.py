"""Downloads against a local fake source: atomic writes, archives, skip-if-present, offline messages."""
import tarfile

import pytest

from common.errors import ToolkitError
from dataset_zoo import download, get_dataset
from dataset_zoo.catalog import get_spec
from dataset_zoo.download import GDRIVE, HF, URL, Remote, download_file, install_archive
from dataset_zoo.splits import val_indices
from tests.fixtures_data import write_download_mirror, write_jpeg


@pytest.fixture
def root(tmp_path):
    return tmp_path / "data"


def _leftovers(root):
    return [p for p in root.rglob("*") if p.name.startswith(".")]


@pytest.mark.parametrize("name, folder", [("Controlled_Images_A", "controlled_images"),
                                          ("Controlled_Images_B", "controlled_clevr"),
                                          ("COCO_QA_two_obj", "val2017"), ("VG_QA_one_obj", "vg_images")])
def test_download_annotation_and_image_archive(root, tmp_path, name, folder):
    mirror = write_download_mirror(tmp_path / "mirror", name)
    ds = get_dataset(name, root=root, download=True, download_mirror=str(mirror))
    assert (root / get_spec(name).annotation).is_file()
    assert (root / folder).is_dir() and len(ds) in (4, 8)
    assert all(s.image_path.is_file() for s in ds)
    assert not list(root.glob("*.tar.gz")) and not list(root.glob("*.zip"))  # archives removed after extraction
    assert _leftovers(root) == []


def test_download_vsr_fetches_only_the_images_of_the_split(root, tmp_path):
    mirror = write_download_mirror(tmp_path / "mirror", "VSR")
    ds = get_dataset("VSR", root=root, split="val", download=True, download_mirror=mirror.as_uri())
    assert (root / "vsr" / "zeroshot" / "test.jsonl").is_file()
    assert [s.index for s in ds] == val_indices(6, 1)
    assert sorted(root.rglob("*.jpg")) == sorted(s.image_path for s in ds)
    full = get_dataset("VSR", root=root, download=True, download_mirror=str(mirror))
    assert all(s.image_path.is_file() for s in full) and len(list(root.rglob("*.jpg"))) == 6
    assert (root / "val2017" / "000000900103.jpg").is_file()


def test_present_files_are_skipped(root, tmp_path, monkeypatch):
    mirror = write_download_mirror(tmp_path / "mirror", "Controlled_Images_A")
    get_dataset("Controlled_Images_A", root=root, download=True, download_mirror=str(mirror))

    def no_network(*args, **kwargs):
        raise AssertionError("nothing should be fetched")

    monkeypatch.setattr(download, "_fetch_to", no_network)
    assert len(get_dataset("Controlled_Images_A", root=root, download=True)) == 8


def test_interrupted_download_leaves_no_file(root, monkeypatch):
    def half_then_interrupt(url, tmp):
        tmp.write_bytes(b'[{"image_path": "data/controlled')
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "fetch_url", half_then_interrupt)
    remote = Remote("controlled_images_dataset.json", URL, "http://example.invalid/x.json",
                    "controlled_images_dataset.json")
    with pytest.raises(KeyboardInterrupt):
        download_file(remote, root / remote.target)
    assert not (root / remote.target).exists() and _leftovers(root) == []
    with pytest.raises(ToolkitError, match="not found.*--download"):
        get_dataset("Controlled_Images_A", root=root)


def test_network_error_mid_download_gives_the_manual_recipe(root, monkeypatch):
    def half_then_fail(url, tmp):
        tmp.write_bytes(b"partial")
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(download, "fetch_url", half_then_fail)
    with pytest.raises(ToolkitError) as err:
        get_dataset("VSR", root=root, download=True, download_mirror="http://mirror.invalid/data")
    assert not (root / "vsr" / "zeroshot" / "test.jsonl").exists() and _leftovers(root) == []
    assert str(root / "vsr" / "zeroshot" / "test.jsonl") in str(err.value)
    assert "huggingface.co/datasets/cambridgeltl/vsr_zeroshot" in str(err.value)


def test_interrupted_extraction_leaves_no_image_folder_and_reuses_the_archive(root, tmp_path, monkeypatch):
    mirror = write_download_mirror(tmp_path / "mirror", "VG_QA_two_obj")
    remote = download.IMAGE_ARCHIVES["VG_QA_two_obj"]

    def broken_extract(archive, into):
        (into / "vg_images").mkdir()
        (into / "vg_images" / "800011.jpg").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_extract", broken_extract)
    with pytest.raises(KeyboardInterrupt):
        install_archive(remote, root, str(mirror))
    assert not (root / "vg_images").exists()
    assert (root / "vg_images.tar.gz").is_file()  # complete (atomically renamed), so it is reused
    monkeypatch.undo()
    (mirror / "vg_images.tar.gz").unlink()
    install_archive(remote, root, str(mirror))
    assert len(list((root / "vg_images").iterdir())) == 4 and not (root / "vg_images.tar.gz").exists()


def test_archive_of_bare_files_is_accepted(root, tmp_path):
    write_jpeg(tmp_path / "loose" / "800001.jpg")
    (tmp_path / "mirror").mkdir()
    with tarfile.open(tmp_path / "mirror" / "vg_images.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "loose" / "800001.jpg", arcname="800001.jpg")
    install_archive(download.IMAGE_ARCHIVES["VG_QA_one_obj"], root, str(tmp_path / "mirror"))
    assert (root / "vg_images" / "800001.jpg").is_file()


def test_unreachable_source_lists_files_to_place(root, tmp_path):
    with pytest.raises(ToolkitError) as err:
        get_dataset("COCO_QA_one_obj", root=root, download=True, download_mirror=str(tmp_path / "empty"))
    message = str(err.value)
    assert "place them by hand" in message
    assert f"save it as {root / 'coco_qa_one_obj.json'}" in message
    assert "1RsMdpE9mmwnK4zzMPpC1-wTU_hNis-dq" in message


def test_missing_gdown_is_explained(root, monkeypatch):
    monkeypatch.setattr(download, "_import_gdown", lambda: None)
    with pytest.raises(ToolkitError) as err:
        get_dataset("Controlled_Images_B", root=root, download=True)
    message = str(err.value)
    assert "pip install gdown" in message and str(root / "controlled_clevr_dataset.json") in message
    assert "https://drive.google.com/uc?id=1unNNosLbdy9NDjgj4l8fsQP3WiAAGA6z" in message


def test_missing_images_without_network_name_archive_and_target(root, tmp_path, monkeypatch):
    mirror = write_download_mirror(tmp_path / "mirror", "Controlled_Images_A")
    (mirror / "controlled_images.tar.gz").unlink()
    with pytest.raises(ToolkitError) as err:
        get_dataset("Controlled_Images_A", root=root, download=True, download_mirror=str(mirror))
    assert "controlled_images.tar.gz" in str(err.value)
    assert f"so that {root / 'controlled_images'}/ exists" in str(err.value)
    assert (root / "controlled_images_dataset.json").is_file()  # what could be fetched stays


def test_hugging_face_source(root, monkeypatch, tmp_path):
    calls = []

    def fake_hf_hub_download(repo_id, filename, repo_type, local_dir):
        calls.append((repo_id, filename, repo_type))
        out = tmp_path / "hub" / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}\n")
        return str(out)

    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    download.fetch_annotations(get_spec("VSR_random"), root, "dev")
    assert calls == [("cambridgeltl/vsr_random", "dev.jsonl", "dataset")]
    assert (root / "vsr" / "random" / "dev.jsonl").read_text() == "{}\n" and _leftovers(root) == []


def test_gdrive_source_uses_gdown(root, monkeypatch):
    class FakeGdown:
        @staticmethod
        def download(id, output, quiet):
            with open(output, "w") as f:
                f.write("[] ")
            return output

    monkeypatch.setattr(download, "_import_gdown", lambda: FakeGdown)
    remote = download.ANNOTATIONS["VG_QA_two_obj"]
    assert remote.kind == GDRIVE
    download_file(remote, root / remote.target)
    assert (root / "vg_qa_two_obj.json").read_text() == "[] "


def test_remote_descriptions():
    assert download.annotation_remote(get_spec("VSR"), "test").kind == HF
    assert download.IMAGE_ARCHIVES["COCO_QA_one_obj"].ref == "http://images.cocodataset.org/zips/val2017.zip"
    assert download.annotation_remote(get_spec("Synthetic_Controlled_A")) is None


# ------------------------------------------------------------------ paper prompts and the fetch command

def _fake_parquet_mirror(tmp_path, dataset):
    from dataset_zoo.paper_prompts import prompt_remote

    mirror = tmp_path / "prompt-mirror"
    parquet = mirror / prompt_remote(dataset).mirror_path
    parquet.parent.mkdir(parents=True)
    parquet.write_bytes(b"PAR1 fake")
    return mirror


def test_paper_prompts_from_all_datasets_become_the_jsonl_file(root, tmp_path, monkeypatch):
    from dataset_zoo import paper_prompts
    from tests.fixtures_data import paper_prompt_rows, write_controlled_fixture

    write_controlled_fixture(root, "A")
    mirror = _fake_parquet_mirror(tmp_path, "Controlled_Images_A")
    rows = paper_prompt_rows("Controlled_Images_A")
    monkeypatch.setattr(paper_prompts, "read_parquet_rows", lambda path: [dict(r) for r in rows])
    ds = get_dataset("Controlled_Images_A", root=root, prompt_dir=tmp_path / "prompts", download=True,
                     download_mirror=str(mirror))
    assert (tmp_path / "prompts" / "Controlled_Images_A_with_answer_four_options.jsonl").is_file()
    assert [s.paper_prompt for s in ds] == [r["question"] for r in rows]
    assert ds.prompt_info["source"] == "paper_file"


def test_paper_prompts_with_unexpected_columns(tmp_path, monkeypatch):
    from dataset_zoo import paper_prompts

    mirror = _fake_parquet_mirror(tmp_path, "VG_QA_two_obj")
    monkeypatch.setattr(paper_prompts, "read_parquet_rows", lambda path: [{"text": "x", "label": 1}])
    with pytest.raises(ToolkitError, match="expected columns question and answer, found text, label"):
        paper_prompts.download_paper_prompts(tmp_path / "prompts", "VG_QA_two_obj", mirror=str(mirror))
    assert not (tmp_path / "prompts" / "VG_QA_two_obj_with_answer_six_options.jsonl").exists()


def test_paper_prompts_need_pyarrow(tmp_path, monkeypatch):
    import builtins

    from dataset_zoo import paper_prompts

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ToolkitError, match="pip install pyarrow"):
        paper_prompts.read_parquet_rows(tmp_path / "x.parquet")


def test_fetch_command(root, tmp_path, caplog):
    from dataset_zoo.fetch import main

    mirror = write_download_mirror(tmp_path / "mirror", "COCO_QA_one_obj")
    assert main(["COCO_QA_one_obj", "--root", str(root), "--mirror", str(mirror)]) == 0
    assert len(list((root / "val2017").iterdir())) == 4
    assert main(["VG_QA_one_obj", "--root", str(root), "--mirror", str(mirror)]) == 2
    assert "vg_qa_one_obj.json" in caplog.text


def test_unreachable_image_source_is_not_tried_hundreds_of_times(root, tmp_path, monkeypatch):
    from tests.fixtures_data import write_vsr_fixture

    write_vsr_fixture(root)
    for image in list(root.rglob("*.jpg")):
        image.unlink()
    attempts = []

    def offline(url, tmp):
        attempts.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(download, "fetch_url", offline)
    with pytest.raises(ToolkitError) as err:
        get_dataset("VSR", root=root, download=True)
    assert len(attempts) == download.GIVE_UP_AFTER
    assert "could not download 6 file(s)" in str(err.value)
    assert f"http://images.cocodataset.org/train2017/000000900101.jpg: save it as {root / 'train2017'}" in str(err.value)
