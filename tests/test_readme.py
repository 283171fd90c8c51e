"""The README works as written: its Quickstart (demo and tables) and its Python API snippet run in a fresh
copy of the repository, the project installs with `pip install -e .`, and its measured claims match the
records they cite."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def block_after(marker: str) -> str:
    """The fenced code block that follows an HTML comment `<!-- marker: ... -->` in the README."""
    found = re.search(rf"<!-- {marker}:.*?-->\n```\w+\n(.*?)```", README, flags=re.S)
    assert found, f"README has no block marked {marker!r}"
    return found.group(1)


def quickstart_commands() -> list[str]:
    """The Quickstart's commands that run the toolkit. The `pip install` lines are left out: this test
    runs offline in the already installed environment."""
    return [line for line in block_after("quickstart").splitlines() if line.startswith("python ")]


def fresh_copy(destination: Path) -> Path:
    """The repository's tracked files, as a fresh clone has them (no data/, no output/)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, target)
    for leftover in ("data", "output"):
        shutil.rmtree(destination / leftover, ignore_errors=True)
    return destination


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a README line with bash, `python` being this interpreter."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=1800, env=env)


def test_the_readme_blocks_are_found():
    commands = quickstart_commands()
    assert commands[0].startswith("python main_aro.py") and commands[1].startswith("python -m evaluation.report")
    assert commands[2].startswith("python app.py")  # a server: started by tests/test_app_browser.py
    assert "get_model(" in block_after("api")


@pytest.mark.slow
def test_quickstart_tables_and_api_snippet_run_as_written(tmp_path):
    """~25 s on two quiet cores (the demo: 400 samples x 3 configurations), minutes on a loaded machine."""
    clone = fresh_copy(tmp_path / "clone")
    demo, tables = quickstart_commands()[:2]
    done = shell(demo, clone)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line.split()[0] for line in done.stdout.splitlines()]
    expected = [line.split()[0] for line in re.search(r"```\n(configuration.*?)```", README, flags=re.S)
                .group(1).splitlines()]
    assert printed == expected   # the same table rows and the same run folders line as the README shows
    assert done.stdout.splitlines()[-1].startswith("run folders: output/toy/Synthetic_Controlled_A/ (base__")
    done = shell(tables, clone)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Table 1 · WhatsUp · toy · all" in (clone / "output" / "tables" / "tables.md").read_text()
    (clone / "snippet.py").write_text(block_after("api"))
    done = shell("python snippet.py", clone)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_project_installs_in_editable_mode(tmp_path):
    """`pip install -e .` (dry run, offline: the build backend from this environment)."""
    clone = fresh_copy(tmp_path / "clone")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-build-isolation",
                           "--no-index", "-e", str(clone)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Would install scalingvis-toolkit" in done.stdout


def test_the_toy_training_time_is_the_measured_one():
    log = json.loads((REPO / "model_zoo" / "toy" / "checkpoint" / "training_log.json").read_text())
    assert f"{log['steps_run']:,} steps took {round(log['seconds'])} s" in README


def test_the_sharded_claim_is_what_sharded_runs_give():
    """tests/test_main_aro.py's torchrun test checks confidences to 1e-6, not bit for bit."""
    assert "confidences agree to float32 precision" in README and "equals a single-process run's" not in README


def test_the_readme_tables_command_is_the_one_run_sh_runs(tmp_path):
    done = subprocess.run(["bash", str(REPO / "run.sh")], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "DRY_RUN": "1", "OUTPUT": "output", "DATASETS": "Controlled_Images_A"})
    assert done.returncode == 0, done.stderr
    report = [line[2:] for line in done.stdout.splitlines() if line.startswith("+ python -m evaluation.report")]
    assert report == ["python -m evaluation.report output --split test --format both --out output/tables "
                      "--plot output/plots"]
    assert f"`{report[0]}`" in " ".join(README.split())
