"""Fine-tuning on tiny models of every family: the loss falls, LoRA adapters reload exactly and evaluate through
main_aro.py, an interrupted run resumes bit for bit, and bad input is one error line."""
from __future__ import annotations

import json

import pytest
import torch

import main_aro
from evaluation.runs import run_folders
from model_zoo import get_model
from model_zoo.tiny import FAMILIES, build_tiny_vlm, save_tiny_vlm
from tests.fixtures_data import write_dataset_fixture, write_vsr_fixture
from training import finetune
from training.checkpoints import list_checkpoints
from training.config import PEER_LORA_TARGETS, FinetuneConfig
from training.trainer import Trainer


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: str(save_tiny_vlm(*build_tiny_vlm(family, seed=1), root / family)) for family in FAMILIES}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset_fixture(root, "Controlled_Images_A")
    write_vsr_fixture(root, "zeroshot", "train")
    write_vsr_fixture(root, "zeroshot", "dev")
    return root


def make_config(output, model_dir, data_root, **overrides) -> FinetuneConfig:
    """Eight Controlled-A fixture samples; defaults: one full batch per step, no held-out set."""
    settings = dict(output_dir=str(output), model=model_dir, dataset="Controlled_Images_A", data_root=str(data_root),
                    split="all", eval_fraction=0.0, batch_size=8, grad_accum=1, lr=1e-3, warmup_steps=0,
                    lr_scheduler="constant", max_steps=4, eval_every=2, save_every=2, progress=False)
    return FinetuneConfig(**{**settings, **overrides})


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(family, model_dirs, data_root, tmp_path):
    # 8 samples, batch 8: every step sees the same batch, so the logged losses are one function over time.
    outcome = Trainer(make_config(tmp_path / "run", model_dirs[family], data_root, max_steps=6, lr=3e-3)).run()
    history = json.loads((outcome.output_dir / "training_summary.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert (outcome.best_dir / "config.json").is_file()


def test_the_vision_side_stays_frozen_in_full_fine_tuning(model_dirs, data_root, tmp_path):
    before = get_model(model_dirs["qwen2_5_vl"], dtype="float32", device="cpu").model.state_dict()
    outcome = Trainer(make_config(tmp_path / "run", model_dirs["qwen2_5_vl"], data_root, max_steps=2)).run()
    after = get_model(str(outcome.best_dir), dtype="float32", device="cpu").model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith(("model.language_model.", "lm_head")) for name in changed)
    assert not any(name.startswith("model.visual.") for name in changed)


def _logits(model, batch):
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_a_lora_adapter_reloads_with_the_logits_it_had_in_memory(family, model_dirs, data_root, tmp_path):
    config = make_config(tmp_path / "run", model_dirs[family], data_root, tuning="lora", lora_r=4, lora_alpha=8,
                         lora_dropout=0.0, lr=1e-2, max_steps=2)
    trainer = Trainer(config)
    outcome = trainer.run()
    assert (outcome.best_dir / "adapter_config.json").is_file() and not (outcome.best_dir / "config.json").exists()
    batch = trainer.encoder(trainer.data.train[:3])
    in_memory = _logits(trainer.model.eval(), batch)
    reloaded = get_model(str(outcome.best_dir), dtype="float32", device="cpu")
    base = get_model(model_dirs[family], dtype="float32", device="cpu")
    assert torch.allclose(_logits(reloaded.model, batch), in_memory, atol=1e-5)
    assert not torch.allclose(_logits(base.model, batch), in_memory, atol=1e-3), "the adapter changed nothing"
    adapter = json.loads((outcome.best_dir / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == model_dirs[family]
    assert all(".visual." not in name and "vision_tower" not in name for name in adapter["target_modules"])


@pytest.mark.parametrize("merge", [False, True], ids=["adapter", "merged"])
def test_main_aro_evaluates_a_fine_tuned_folder_with_no_other_flag(merge, family, model_dirs, data_root, tmp_path):
    config = make_config(tmp_path / "run", model_dirs[family], data_root, tuning="lora", lora_r=4, lora_alpha=8,
                         max_steps=2, merge_lora=merge)
    best = Trainer(config).run().best_dir
    assert (best / ("config.json" if merge else "adapter_config.json")).is_file()
    output = tmp_path / "eval"
    assert main_aro.main(["--model-path", str(best), "--dataset", "Controlled_Images_A", "--data-root",
                          str(data_root), "--output-dir", str(output), "--limit", "2", "--max-new-tokens", "2"]) == 0
    (folder,) = run_folders(output)
    assert json.loads((folder / "results.json").read_text())["n"] == 2


class Interrupted(Exception):
    pass


def _stop_at(step_to_stop):
    def hook(step, trainer):
        if step == step_to_stop:
            raise Interrupted
    return hook


def _final_state(trainer):
    model = trainer.accelerator.unwrap_model(trainer.model)
    weights = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return weights, trainer.optimizer.state_dict()


@pytest.mark.parametrize("tuning", ["full", "lora"])
def test_an_interrupted_run_resumes_from_its_checkpoint_exactly(tuning, model_dirs, data_root, tmp_path):
    # Batches of 4 with accumulation 2 over a shuffled 8-sample stream, LoRA dropout on: the resumed run
    # must restore the data position, optimizer, scheduler and random state to match.
    settings = dict(batch_size=4, grad_accum=2, max_steps=5, lr_scheduler="linear", warmup_steps=2,
                    tuning=tuning, lora_r=4, lora_alpha=8, lora_dropout=0.3, epochs=1)
    straight = Trainer(make_config(tmp_path / "a", model_dirs["llava"], data_root, **settings))
    straight.run()
    interrupted = make_config(tmp_path / "b", model_dirs["llava"], data_root, **settings)
    with pytest.raises(Interrupted):
        Trainer(interrupted, on_step=_stop_at(3)).run()
    assert [step for step, _ in list_checkpoints(tmp_path / "b")] == [2]
    resumed = Trainer(interrupted)
    outcome = resumed.run()
    assert outcome.resumed_from == 2
    weights_a, optimizer_a = _final_state(straight)
    weights_b, optimizer_b = _final_state(resumed)
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    assert optimizer_a["param_groups"] == optimizer_b["param_groups"]
    for key, state in optimizer_a["state"].items():
        assert all(torch.equal(state[k], optimizer_b["state"][key][k]) for k in state)
    history_a = json.loads((tmp_path / "a" / "training_summary.json").read_text())["history"]
    history_b = json.loads((tmp_path / "b" / "training_summary.json").read_text())["history"]
    assert history_a == history_b


def test_checkpoints_keep_the_newest_and_the_best(model_dirs, data_root, tmp_path):
    config = make_config(tmp_path / "run", model_dirs["llava"], data_root, eval_fraction=0.5, max_steps=6,
                         batch_size=2, lr=5e-2, save_every=1, eval_every=1)
    trainer = Trainer(config)
    outcome = trainer.run()
    losses = {entry["step"]: entry["eval_loss"] for entry in trainer.state.history}
    best = min(losses, key=losses.get)
    assert outcome.best_step == best and outcome.best_eval_loss == losses[best]
    assert {step for step, _ in list_checkpoints(tmp_path / "run")} == {best, 6}
    again = Trainer(config).run()  # a finished run is reported, not retrained
    assert again.best_step == best and again.seconds == pytest.approx(outcome.seconds, abs=0.1)


def cli_error(capsys, argv) -> str:
    assert finetune.main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_defaults_are_the_peers_lora_recipe():
    config, _ = finetune.parse_config(["--output-dir", "x", "--tuning", "lora"])
    assert (config.lora_r, config.lora_alpha, config.lora_targets) == (64, 256, PEER_LORA_TARGETS)
    assert config.freeze_vision and (config.lr, config.batch_size, config.grad_accum) == (2e-5, 4, 16)


@pytest.mark.parametrize("flags, frozen", [((), True), (("--freeze-vision",), True),
                                          (("--no-freeze-vision",), False)], ids=["default", "on", "off"])
def test_freeze_vision_is_on_by_default_and_both_spellings_parse(flags, frozen):
    config, _ = finetune.parse_config(["--output-dir", "x", *flags])
    assert config.freeze_vision is frozen


def test_an_unknown_lora_target_is_one_error_line(model_dirs, data_root, tmp_path, capsys):
    err = cli_error(capsys, ["--model", model_dirs["llava"], "--dataset", "Controlled_Images_A", "--data-root",
                             str(data_root), "--output-dir", str(tmp_path / "run"), "--tuning", "lora",
                             "--lora-targets", "q_proj,qkv_proj"])
    assert "'qkv_proj' matches no linear layer" in err and "q_proj" in err


def test_lora_on_a_frozen_module_is_one_error_line(model_dirs, data_root, tmp_path, capsys):
    # fc1 exists only in the CLIP vision tower of a LLaVA model, which --freeze-vision (the default) freezes.
    err = cli_error(capsys, ["--model", model_dirs["llava"], "--dataset", "Controlled_Images_A", "--data-root",
                             str(data_root), "--output-dir", str(tmp_path / "run"), "--tuning", "lora",
                             "--lora-targets", "fc1"])
    assert "frozen vision side" in err and "--no-freeze-vision" in err


def test_a_missing_training_file_is_one_error_line(model_dirs, data_root, tmp_path, capsys):
    err = cli_error(capsys, ["--model", model_dirs["llava"], "--dataset", "VSR_random", "--data-root",
                             str(data_root), "--output-dir", str(tmp_path / "run")])
    assert "vsr/random/train.jsonl" in err


def test_resuming_with_other_settings_is_refused(model_dirs, data_root, tmp_path, capsys):
    argv = ["--model", model_dirs["llava"], "--dataset", "Controlled_Images_A", "--data-root", str(data_root),
            "--split", "all", "--output-dir", str(tmp_path / "run"), "--max-steps", "1", "--batch-size", "2",
            "--grad-accum", "1", "--quiet"]
    assert finetune.main(argv) == 0
    capsys.readouterr()
    err = cli_error(capsys, [*argv[:-1], "--lr", "1e-3"])
    assert "other settings" in err and "lr" in err and "--overwrite" in err
    assert finetune.main([*argv, "--overwrite", "--lr", "1e-3"]) == 0
