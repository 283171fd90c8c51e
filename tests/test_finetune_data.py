"""Which samples fine-tuning trains and evaluates on, for each kind of dataset, and the data order."""
from __future__ import annotations

import pytest

from common.errors import ToolkitError
from dataset_zoo import get_dataset
from dataset_zoo.flip import FLIP_SUFFIX
from tests.fixtures_data import write_dataset_fixture, write_vsr_fixture
from training.config import FinetuneConfig, validate
from training.data import hold_out, load_training_data, synthetic_training_root
from training.trainer import step_micro_batches, stream_indices, total_steps


def config(tmp_path, **overrides) -> FinetuneConfig:
    return FinetuneConfig(**{"output_dir": str(tmp_path / "run"), "data_root": str(tmp_path / "data"), **overrides})


def test_vsr_trains_on_the_train_file_and_evaluates_on_dev(tmp_path):
    write_vsr_fixture(tmp_path / "data", "random", "train")
    write_vsr_fixture(tmp_path / "data", "random", "dev", rows=[])
    data = load_training_data(config(tmp_path, dataset="VSR_random", flip=True))
    assert data.info["train"]["annotation"].endswith("vsr/random/train.jsonl") and data.eval == []
    assert data.info["n_train"] == 4 and data.info["n_flipped"] == 4 and len(data.train) == 8
    assert [s.caption for s in data.train if s.id.endswith(FLIP_SUFFIX)][1] == "The dog is right of the bench."


def test_synthetic_scenes_for_training_are_rendered_apart_from_the_evaluation_scenes(tmp_path):
    data = load_training_data(config(tmp_path, dataset="Synthetic_Controlled_A", synthetic_pairs=5,
                                     eval_fraction=0.2))
    root = synthetic_training_root(config(tmp_path))
    assert root == tmp_path / "data" / "finetune_synthetic_seed1" and (root / "synthetic_controlled_a.json").is_file()
    assert not (tmp_path / "data" / "synthetic_controlled_a.json").exists()
    assert (len(data.train), len(data.eval)) == (16, 4)
    assert not {s.group for s in data.train} & {s.group for s in data.eval}
    with pytest.raises(ToolkitError, match="evaluates on"):
        validate(config(tmp_path, synthetic_seed=0))


def test_whatsup_sets_train_on_a_paper_split_with_whole_groups_held_out(tmp_path):
    write_dataset_fixture(tmp_path / "data", "Controlled_Images_A")
    data = load_training_data(config(tmp_path, dataset="Controlled_Images_A", split="all", eval_fraction=0.5))
    assert data.info["train"]["split"] == "all" and (len(data.train), len(data.eval)) == (4, 4)
    assert len({s.group for s in data.train}) == len({s.group for s in data.eval}) == 1
    default = load_training_data(config(tmp_path, dataset="Controlled_Images_A"))
    assert default.info["train"]["split"] == "val"


def test_hold_out_is_deterministic_and_keeps_ungrouped_samples_apart(tmp_path):
    write_dataset_fixture(tmp_path, "COCO_QA_one_obj")
    samples = list(get_dataset("COCO_QA_one_obj", root=tmp_path, split="all"))
    kept, held = hold_out(samples, 0.5, seed=3)
    assert (len(kept), len(held)) == (2, 2) and hold_out(samples, 0.5, seed=3) == (kept, held)


def test_the_data_order_depends_on_seed_and_step_only():
    cfg = FinetuneConfig(output_dir="x", batch_size=2, grad_accum=3, seed=4)
    one = [i for j in step_micro_batches(10, cfg, 0, world=1, rank=0) for i in j]
    assert sorted(one) == sorted(set(one)) and len(one) == 6
    two = [step_micro_batches(10, FinetuneConfig(output_dir="x", batch_size=1, grad_accum=3, seed=4), 0, 2, r)
           for r in (0, 1)]
    assert sorted(i for rank in two for batch in rank for i in batch) == sorted(one)
    epochs = stream_indices(10, 4, 0, 20)
    assert sorted(epochs[:10]) == sorted(epochs[10:]) == list(range(10)) and epochs[:10] != epochs[10:]
    assert total_steps(FinetuneConfig(output_dir="x", epochs=3, batch_size=4, grad_accum=2), 100, 1) == 38
