"""`--prompt-format auto` (the default): the paper's literal prompt for the paper's model names, the chat
template otherwise, the fallback for llava checkpoints without a template, and every prompt-format problem
reported before the weights load."""
from __future__ import annotations

import json
import logging

import pytest

import main_aro
from common.errors import ToolkitError
from model_zoo import MODELS, get_model, loading, open_checkpoint
from model_zoo.registry import ModelEntry, auto_prompt_format, register_model
from model_zoo.tiny import build_tiny_vlm, save_tiny_vlm
from runner.config import RunConfig
from tests.fixtures_data import write_dataset_fixture


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny llava and qwen2_vl checkpoints, each with and without a chat template."""
    root = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for family in ("llava", "qwen2_vl"):
        model, processor = build_tiny_vlm(family, seed=3)
        paths[family] = str(save_tiny_vlm(model, processor, root / family))
        bare = save_tiny_vlm(model, processor, root / f"{family}-bare")
        (bare / "chat_template.jinja").unlink()
        paths[f"{family}-bare"] = str(bare)
    return paths


@pytest.fixture
def weight_loads(monkeypatch):
    """Every call of the weight-loading function, which still runs as usual."""
    calls = []
    real = loading._load_weights
    monkeypatch.setattr(loading, "_load_weights", lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    return calls


@pytest.fixture
def as_registered(monkeypatch):
    """`as_registered(name, path)`: point a registry name at a local checkpoint for one test."""
    def register(name: str, path: str) -> None:
        entry = MODELS[name]
        monkeypatch.setitem(MODELS, name, ModelEntry(name, path, entry.family, None, entry.description,
                                                     prompt_format=entry.prompt_format))
    return register


def test_the_papers_model_names_default_to_the_paper_prompt():
    assert RunConfig.prompt_format == "auto"
    assert {name: auto_prompt_format(name) for name in ("llava1.5", "llava1.5-13b")} == \
        {"llava1.5": "paper", "llava1.5-13b": "paper"}
    others = set(MODELS) - {"llava1.5", "llava1.5-13b"}
    assert others and {auto_prompt_format(name) for name in others} == {"chat"}
    assert auto_prompt_format("/some/checkpoint") == auto_prompt_format("org/llava-like") == "chat"


@pytest.mark.parametrize("name, family, expected", [
    ("llava1.5", "llava", "paper"), ("llava1.5-13b", "llava", "paper"), ("toy", "llava", "chat"),
    ("qwen2-vl", "qwen2_vl", "chat"),
])
def test_auto_resolves_per_registry_name(checkpoints, as_registered, name, family, expected):
    as_registered(name, checkpoints[family])
    vlm = get_model(name)
    assert vlm.prompt_format == expected and vlm.to_dict()["prompt_format"] == expected
    if expected == "paper":
        assert vlm.build_prompt("Where is the cat?") == "<image>\nUSER: Where is the cat?\nASSISTANT:"


def test_an_explicit_format_overrides_auto(checkpoints, as_registered):
    as_registered("llava1.5", checkpoints["llava"])
    assert get_model("llava1.5", prompt_format="chat").prompt_format == "chat"
    assert get_model(checkpoints["llava"], prompt_format="paper").prompt_format == "paper"


def test_a_llava_checkpoint_without_chat_template_falls_back_to_paper_with_a_notice(checkpoints, caplog):
    with caplog.at_level(logging.WARNING, logger="model_zoo.vlm"):
        vlm = get_model(checkpoints["llava-bare"])
    assert vlm.prompt_format == "paper"
    assert "ships no chat template: using the original LLaVA-1.5 prompt" in caplog.text


@pytest.mark.parametrize("checkpoint, prompt_format, message", [
    ("qwen2_vl", "paper", "only applies to the llava family, not qwen2_vl"),
    ("qwen2_vl-bare", "auto", "ships no chat template, which --prompt-format auto needs; use a checkpoint"),
    ("qwen2_vl-bare", "chat", "ships no chat template"),
    ("llava-bare", "chat", "use --prompt-format paper"),
    ("llava", "fancy", "unknown prompt format 'fancy'"),
])
def test_prompt_format_problems_are_reported_before_the_weights_load(checkpoints, weight_loads, checkpoint,
                                                                     prompt_format, message):
    with pytest.raises(ToolkitError, match=message):
        get_model(checkpoints[checkpoint], prompt_format=prompt_format)
    with pytest.raises(ToolkitError, match=message):
        open_checkpoint(checkpoints[checkpoint], prompt_format=prompt_format)
    assert weight_loads == []


def test_open_checkpoint_reads_no_weights_and_load_does(checkpoints, weight_loads):
    checkpoint = open_checkpoint(checkpoints["qwen2_vl"])
    assert (checkpoint.prompt_format, checkpoint.spec.name) == ("chat", "qwen2_vl") and weight_loads == []
    assert checkpoint.load().prompt_format == "chat" and len(weight_loads) == 1


def test_registering_paper_as_default_is_llava_only():
    with pytest.raises(ValueError, match="llava family only"):
        register_model("qwen-paper", "Qwen/Qwen2-VL-7B-Instruct", family="qwen2_vl", prompt_format="paper")
    assert "qwen-paper" not in MODELS


# ------------------------------------------------------------------ command line and run folders


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset_fixture(root, "Controlled_Images_A")
    return root


def cli(data_root, output, *flags) -> int:
    return main_aro.main(["--data-root", str(data_root), "--output-dir", str(output), "--dataset",
                          "Controlled_Images_A", "--limit", "2", "--max-new-tokens", "2", *flags])


def test_cli_error_is_one_line_before_the_weights_load(checkpoints, data_root, tmp_path, weight_loads, capsys):
    assert cli(data_root, tmp_path, "--model-path", checkpoints["qwen2_vl"], "--prompt-format", "paper") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "llava family" in err
    assert weight_loads == [] and not any(path.is_dir() for path in tmp_path.iterdir())


def test_run_folders_record_the_resolved_format_and_auto_shares_them(checkpoints, as_registered, data_root,
                                                                      tmp_path, caplog):
    as_registered("llava1.5", checkpoints["llava"])
    caplog.set_level(logging.INFO)
    assert cli(data_root, tmp_path, "--model-name", "llava1.5") == 0
    [folder] = [path for path in tmp_path.iterdir() if path.is_dir()]
    config = json.loads((folder / "config.json").read_text())
    assert config["prompt_format"] == config["model_info"]["prompt_format"] == "paper"
    assert config["prompt_info"] and "<image>\nUSER:" in json.loads(
        (folder / "samples.jsonl").read_text().splitlines()[0])["prompt"]
    # The explicit value auto resolved to is the same configuration: same folder, nothing recomputed.
    assert cli(data_root, tmp_path, "--model-name", "llava1.5", "--prompt-format", "paper") == 0
    assert "already finished" in caplog.text
    assert cli(data_root, tmp_path, "--model-name", "llava1.5", "--prompt-format", "chat") == 0
    assert len([path for path in tmp_path.iterdir() if path.is_dir()]) == 2
