"""`python main_aro.py` with no arguments: the offline demo on the shipped toy model and synthetic scenes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_no_argument_run_completes_and_prints_what_its_run_folders_hold(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "main_aro.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    header, *rows = [line for line in done.stdout.splitlines() if line and not line.startswith("run folders")]
    assert header.split() == ["configuration", "Acc", "Pair", "Acc", "Set", "Acc"]
    printed = {row.split()[0]: row.split()[1:] for row in rows}
    assert set(printed) == {"base", "scaling_vis_a-0.8", "adapt_vis_w1-0.5_w2-1.5_t-0.4"}

    folders = sorted((tmp_path / "output").iterdir())
    assert len([f for f in folders if f.is_dir()]) == 3
    assert (tmp_path / "data" / "synthetic_controlled_a.json").is_file()
    for folder in (f for f in folders if f.is_dir()):
        config = json.loads((folder / "config.json").read_text())
        results = json.loads((folder / "results.json").read_text())
        assert config["dataset"] == "Synthetic_Controlled_A" and config["model"] == "toy"
        assert results["n"] == 400
        label = folder.name.split("__")[2]
        expected = [f"{100 * results[key]:.1f}" for key in ("accuracy", "pair_accuracy", "set_accuracy")]
        assert printed[label] == expected
    # The shipped model sees: far above chance (25 %) on its own kind of scenes.
    assert float(printed["base"][0]) >= 80.0
