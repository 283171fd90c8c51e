"""Fine-tuning in subprocesses (slow): `kill -9` mid-run loses only the steps since the newest checkpoint, and
several processes (torchrun, CPU) train like one process with the same effective batch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model_zoo.toy import CHECKPOINT_DIR
from tests.fixtures_data import write_dataset_fixture
from training.checkpoints import list_checkpoints

REPO = Path(__file__).resolve().parent.parent


def command(data_root: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "training.finetune", "--model", str(CHECKPOINT_DIR), "--dataset",
            "Controlled_Images_A", "--data-root", str(data_root), "--split", "all", "--eval-fraction", "0",
            "--output-dir", str(output), "--max-steps", "20", "--save-every", "5", "--eval-every", "5",
            "--batch-size", "4", "--grad-accum", "2", "--lr", "1e-3", "--quiet"]


def run_to_end(data_root: Path, output: Path) -> None:
    subprocess.run(command(data_root, output), cwd=REPO, check=True, capture_output=True, timeout=600)


@pytest.mark.slow
def test_kill_9_loses_only_the_steps_since_the_last_checkpoint(tmp_path):
    data_root = tmp_path / "data"
    write_dataset_fixture(data_root, "Controlled_Images_A")
    run_to_end(data_root, tmp_path / "straight")

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(data_root, killed), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not any(step >= 10 for step, _ in list_checkpoints(killed)) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    newest = list_checkpoints(killed)[-1][0]
    assert 10 <= newest < 20 and not (killed / "training_summary.json").exists()

    run_to_end(data_root, killed)
    summaries = [json.loads((folder / "training_summary.json").read_text()) for folder in (tmp_path / "straight",
                                                                                            killed)]
    assert summaries[1]["outcome"]["resumed_from"] >= newest
    assert summaries[0]["history"] == summaries[1]["history"]
    weights = [load_file(folder / "best" / "model.safetensors") for folder in (tmp_path / "straight", killed)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_effective_batch(tmp_path):
    # torchrun on CPU (gloo): 2 processes x batch 2 x accumulation 2 consume the same samples per step as one
    # process x batch 2 x accumulation 4, so the learning curves agree up to float summation order.
    data_root = tmp_path / "data"
    write_dataset_fixture(data_root, "Controlled_Images_A")
    common = ["-m", "training.finetune", "--model", str(CHECKPOINT_DIR), "--dataset", "Controlled_Images_A",
              "--data-root", str(data_root), "--split", "all", "--eval-fraction", "0.5", "--max-steps", "4",
              "--save-every", "2", "--eval-every", "2", "--batch-size", "2", "--lr", "1e-3", "--quiet"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    subprocess.run([*torchrun, *common, "--grad-accum", "2", "--output-dir", str(tmp_path / "two")], cwd=REPO,
                   check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, *common, "--grad-accum", "4", "--output-dir", str(tmp_path / "one")], cwd=REPO,
                   check=True, capture_output=True, timeout=600)
    two, one = (json.loads((tmp_path / name / "training_summary.json").read_text()) for name in ("two", "one"))
    assert (two["num_processes"], one["num_processes"]) == (2, 1)
    assert {f"rng_state_{r}.pt" for r in (0, 1)} <= {p.name for p in (tmp_path / "two" / "checkpoint-4").iterdir()}
    for a, b in zip(two["history"], one["history"]):
        assert a["step"] == b["step"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a.get("eval_loss", 0) == pytest.approx(b.get("eval_loss", 0), rel=1e-5)
