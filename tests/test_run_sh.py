"""run.sh in dry-run mode lists the planned configurations without running anything."""
import os
import subprocess
from pathlib import Path

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
    assert "--threshold 0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.65" in val_grid
    assert "--prompt-format paper" in val_grid and "--model-name llava1.5" in val_grid
    assert "--split test --method base" in commands[1]
    assert "--method scaling_vis <selected-on-val: python -m evaluation.select --dataset Controlled_Images_A" \
        in commands[2]
    assert commands[-1].startswith("python -m evaluation.report " + str(tmp_path) + " --split test")
    assert not any(tmp_path.iterdir()), "a dry run must not write results"


def test_paper_mode_and_overrides(tmp_path):
    commands = dry_run(tmp_path, MODE="paper", MODEL="qwen2-vl", DATASETS="VG_QA_one_obj", DATA_ROOT="/d",
                       LAUNCH="accelerate launch")
    assert commands[0].startswith("accelerate launch main_aro.py --dataset VG_QA_one_obj --split test "
                                  "--method base,scaling_vis,adapt_vis --model-name qwen2-vl --data-root /d")
    assert "--prompt-format chat" in commands[0] and "--weight" not in commands[0]
    assert len(commands) == 2
