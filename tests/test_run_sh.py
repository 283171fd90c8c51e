"""run.sh in dry-run mode lists the planned configurations without running anything."""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def dry_run(tmp_path, **env):
    done = subprocess.run(["bash", str(REPO / "run.sh")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DRY_RUN": "1", "OUTPUT": str(tmp_path), **env})
    assert done.returncode == 0, done.stderr
    return [line[2:] for line in done.stdout.splitlines() if line.startswith("+ ")]


def test_search_mode_plans_the_val_grid_then_the_selected_test_runs(tmp_path):
    commands = dry_run(tmp_path, DATASETS="Controlled_Images_A VSR")
    assert len(commands) == 2 * 4 + 1
    val_grid = commands[0]
    assert "--dataset Controlled_Images_A --split val --method base,scaling_vis,adapt_vis" in val_grid
    assert "--weight 0.5,0.8,1.2,1.5,2.0 --weight1 0.5,0.8 --weight2 1.2,1.5,2.0" in val_grid
    assert "--threshold 0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55 " in val_grid   # the paper's LLaVA-1.5 grid
    assert "--prompt-format auto" in val_grid and "--model-name llava1.5" in val_grid
    assert "--split test --method base" in commands[1]
    assert "--method scaling_vis <selected-on-val: python -m evaluation.select --dataset Controlled_Images_A" \
        in commands[2]
    assert commands[-1].startswith("python -m evaluation.report " + str(tmp_path) + " --split test")
    assert not any(tmp_path.iterdir()), "a dry run must not write results"


def val_grid_thresholds(tmp_path, **env) -> dict[str, str]:
    """{dataset: --threshold value} of the val-grid commands of a dry run."""
    grids = {}
    for command in dry_run(tmp_path, **env):
        words = command.split()
        if "--split" in words and words[words.index("--split") + 1] == "val":
            grids[words[words.index("--dataset") + 1]] = words[words.index("--threshold") + 1]
    return grids


@pytest.mark.parametrize("model, expected", [
    ("llava1.5", "0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55"),
    ("llava1.5-13b", "0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55"),
    ("llava1.6", "0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.65"),
    ("llava1.6-mistral", "0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.65"),
    ("qwen2-vl", "0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.65"),
])
def test_threshold_grids_follow_the_paper_per_model_and_vsr_uses_auto(tmp_path, model, expected):
    grids = val_grid_thresholds(tmp_path, MODEL=model, DATASETS="Controlled_Images_A VSR")
    assert grids == {"Controlled_Images_A": expected, "VSR": "auto"}


def test_threshold_and_prompt_format_overrides(tmp_path):
    assert val_grid_thresholds(tmp_path, MODEL="llava1.6", THRESHOLDS="0.4", VSR_THRESHOLDS="0.5,0.6",
                               DATASETS="COCO_QA_one_obj VSR_random") == {"COCO_QA_one_obj": "0.4",
                                                                          "VSR_random": "0.5,0.6"}
    commands = dry_run(tmp_path, MODEL="llava1.5", PROMPT_FORMAT="chat", DATASETS="VSR")
    assert all("--prompt-format chat" in command for command in commands if "main_aro.py" in command)


def test_paper_mode_and_overrides(tmp_path):
    commands = dry_run(tmp_path, MODE="paper", MODEL="qwen2-vl", DATASETS="VG_QA_one_obj", DATA_ROOT="/d",
                       LAUNCH="accelerate launch")
    assert commands[0].startswith("accelerate launch main_aro.py --dataset VG_QA_one_obj --split test "
                                  "--method base,scaling_vis,adapt_vis --model-name qwen2-vl --data-root /d")
    assert "--prompt-format auto" in commands[0] and "--weight" not in commands[0]
    assert len(commands) == 2


def test_general_suite_runs_every_method_on_the_four_benchmarks_then_table_4(tmp_path):
    commands = dry_run(tmp_path, SUITE="general", METHODS="base,scaling_vis")
    runs = [c for c in commands if c.startswith("python main_aro.py")]
    assert [c.split("--dataset ")[1].split()[0] for c in runs] == ["POPE", "GQA", "VQAv2", "TextVQA"]
    assert all("--split all --method base,scaling_vis --weight 0.8" in c for c in runs)
    assert commands[-1].startswith(f"python -m evaluation.report {tmp_path} --split all")


def test_methods_without_a_grid_run_at_their_defaults_and_a_grid_puts_them_in_the_val_search(tmp_path):
    plain = dry_run(tmp_path, DATASETS="Controlled_Images_A", METHODS="base,scaling_vis,vcd")
    assert "--split val --method base,scaling_vis --weight 0.5,0.8,1.2,1.5,2.0 " in plain[0]
    assert "--split test --method base,vcd " in plain[1]
    searched = dry_run(tmp_path, DATASETS="Controlled_Images_A", METHODS="base,vcd", GRID_vcd="--cd-alpha 0.5,1")
    assert "--split val --method base,vcd --cd-alpha 0.5,1 " in searched[0]
    assert "--split test --method vcd <selected-on-val: python -m evaluation.select --dataset Controlled_Images_A " \
           "--method vcd>" in searched[2]


def test_an_unknown_suite_is_one_error_line(tmp_path):
    done = subprocess.run(["bash", str(REPO / "run.sh")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DRY_RUN": "1", "OUTPUT": str(tmp_path), "SUITE": "other"})
    assert done.returncode == 2 and done.stderr.startswith("error: unknown SUITE=other")
