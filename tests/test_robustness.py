"""No wrong conclusions from a mistyped command (issue 10): dropped flags, run identity, concurrent writers,
unparsed answers, validation before anything loads, interrupts, and the messages around them."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import main_aro
from evaluation.runs import run_folders
from model_zoo.tiny import build_tiny_vlm, save_tiny_vlm
from runner import run as run_module
from runner.lock import LOCK_FILE, FolderLock
from runner.records import read_records, read_summary
from tests.fixtures_data import write_dataset_fixture, write_vsr_fixture

REPO = Path(__file__).resolve().parent.parent
SCALING = ["--method", "scaling_vis", "--weight", "0.5"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_vlm(*build_tiny_vlm("llava", seed=3), tmp_path_factory.mktemp("models") / "llava")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset_fixture(root, "Controlled_Images_A")
    write_vsr_fixture(root, "zeroshot", "test")
    return root


def cli(data_root, output, model, *flags) -> int:
    return main_aro.main(["--data-root", str(data_root), "--output-dir", str(output), "--model-path", str(model),
                          "--dataset", "Controlled_Images_A", "--max-new-tokens", "3", *flags])


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------ 1. flags no requested method takes


@pytest.mark.parametrize("flags, named", [
    (["--weight", "0.5,0.8,1.2", "--weight1", "0.5,0.8", "--threshold", "0.3,0.4"], "scaling_vis"),
    (["--method", "scaling_vis", "--threshold", "0.3"], "adapt_vis"),
    (["--method", "base", "--weight1", "0.5"], "adapt_vis"),
])
def test_a_flag_no_requested_method_takes_is_an_error_naming_its_methods(tmp_path, flags, named, capsys):
    assert main_aro.main(["--output-dir", str(tmp_path), *flags]) == 2
    line = error_line(capsys)
    assert named in line and "do not include" in line and "--method" in line
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused command"


# ------------------------------------------------------------------ 2. run identity


def test_another_data_root_is_an_error_naming_it_not_a_skip(tmp_path, data_root, model_dir, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(data_root, copy)
    output = tmp_path / "out"
    assert cli(data_root, output, model_dir, *SCALING) == 0
    [folder] = run_folders(output)
    finished = json.loads((folder / "results.json").read_text())
    capsys.readouterr()
    assert cli(copy, output, model_dir, *SCALING) == 2
    line = error_line(capsys)
    assert "data root" in line and str(copy) in line and str(data_root) in line and "--overwrite" in line
    assert json.loads((folder / "results.json").read_text()) == finished  # untouched
    # --overwrite redoes it with the new data; then an edited annotation file is caught by its hash.
    assert cli(copy, output, model_dir, *SCALING, "--overwrite") == 0
    assert json.loads((folder / "config.json").read_text())["identity"]["data_root"] == str(copy.resolve())
    annotation = copy / "controlled_images_dataset.json"
    annotation.write_text(json.dumps(json.loads(annotation.read_text()), indent=4))
    capsys.readouterr()
    assert cli(copy, output, model_dir, *SCALING) == 2
    line = error_line(capsys)
    assert "annotation: controlled_images_dataset.json" in line and "data root" not in line


def test_new_weights_in_the_same_model_folder_are_an_error(tmp_path, data_root, capsys):
    model = save_tiny_vlm(*build_tiny_vlm("llava", seed=3), tmp_path / "model")
    assert cli(data_root, tmp_path / "out", model, "--limit", "2") == 0
    save_tiny_vlm(*build_tiny_vlm("llava", seed=4), model)  # retrained in place
    capsys.readouterr()
    assert cli(data_root, tmp_path / "out", model, "--limit", "2") == 2
    line = error_line(capsys)
    assert "model:" in line and "model.safetensors" in line


def test_fingerprints_are_cached_per_file_version(tmp_path, monkeypatch):
    from runner import identity

    calls = []
    real = identity.sha256_of
    monkeypatch.setattr(identity, "sha256_of", lambda path: calls.append(path) or real(path))
    data = tmp_path / "a.json"
    data.write_text("[1]")
    cache = identity.FingerprintCache(tmp_path / "out" / identity.CACHE_FILE)
    first = cache.fingerprint(data, "a.json")
    cache.save()
    assert identity.FingerprintCache(cache.path).fingerprint(data, "a.json") == first and len(calls) == 1
    data.write_text("[2]")  # a new version of the file is hashed again
    assert identity.FingerprintCache(cache.path).fingerprint(data, "a.json") != first and len(calls) == 2


# ------------------------------------------------------------------ 3. concurrent writers


def test_a_folder_being_written_by_another_process_is_refused(tmp_path, data_root, model_dir):
    output = tmp_path / "out"
    assert cli(data_root, output, model_dir, *SCALING, "--limit", "2") == 0
    [folder] = run_folders(output)
    lock = FolderLock(folder)
    lock.acquire()  # this test process plays the first writer
    try:
        done = subprocess.run([sys.executable, str(REPO / "main_aro.py"), "--data-root", str(data_root),
                               "--output-dir", str(output), "--model-path", str(model_dir), "--dataset",
                               "Controlled_Images_A", "--max-new-tokens", "3", *SCALING, "--limit", "2",
                               "--overwrite"], capture_output=True, text=True, timeout=300, cwd=REPO,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        lock.release()
    assert done.returncode == 2
    assert f"is being written by another run (pid {os.getpid()}" in done.stderr and "Traceback" not in done.stderr
    assert (folder / "results.json").exists(), "the refused run must not have reset the folder"
    assert not (folder / LOCK_FILE).exists()


def test_a_refused_run_leaves_the_other_runs_new_folder_alone(tmp_path, data_root, model_dir):
    output = tmp_path / "out"
    assert cli(data_root, output, model_dir, *SCALING, "--limit", "1") == 0
    [folder] = run_folders(output)
    for name in ("config.json", "results.json", "samples.jsonl"):
        (folder / name).unlink()
    lock = FolderLock(folder)
    lock.acquire()  # another run has just created and locked this folder, and not yet written config.json
    try:
        done = subprocess.run([sys.executable, str(REPO / "main_aro.py"), "--data-root", str(data_root),
                               "--output-dir", str(output), "--model-path", str(model_dir), "--dataset",
                               "Controlled_Images_A", "--max-new-tokens", "3", *SCALING, "--limit", "1"],
                              capture_output=True, text=True, timeout=300, cwd=REPO,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 2 and "is being written by another run" in done.stderr
        assert (folder / LOCK_FILE).exists(), "the refused run removed the other run's lock"
    finally:
        lock.release()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_notice(tmp_path, data_root, model_dir, caplog):
    output = tmp_path / "out"
    assert cli(data_root, output, model_dir, *SCALING, "--limit", "2") == 0
    [folder] = run_folders(output)
    # What kill -9 of a run leaves: the lock file of a process that no longer exists.
    (folder / LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": os.uname().nodename,
                                                "since": "2025-01-01T00:00:00.000+00:00"}))
    caplog.set_level(logging.WARNING)
    assert cli(data_root, output, model_dir, *SCALING, "--limit", "2", "--overwrite") == 0
    assert "taking over the lock left by pid" in caplog.text
    assert not (folder / LOCK_FILE).exists()


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_results_csv_keeps_one_row_per_run_folder_after_overwrite(tmp_path, data_root, model_dir):
    output = tmp_path / "out"
    grid = ["--method", "base,scaling_vis", "--weight", "0.5,2.0", "--limit", "2"]
    for extra in ([], [], ["--overwrite"], ["--overwrite"]):
        assert cli(data_root, output, model_dir, *grid, *extra) == 0
    rows = read_summary(output / "results.csv")
    assert sorted(row["run"] for row in rows) == sorted(str(f.relative_to(output)) for f in run_folders(output))
    assert len(rows) == 3


def test_two_launches_at_once_give_one_complete_folder_and_one_row(tmp_path, data_root, model_dir):
    output = tmp_path / "out"
    command = [sys.executable, str(REPO / "main_aro.py"), "--data-root", str(data_root), "--output-dir",
               str(output), "--model-path", str(model_dir), "--dataset", "Controlled_Images_A", "--max-new-tokens",
               "3", *SCALING]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first, second = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                      env=env) for _ in range(2))
    results = [process.communicate(timeout=300) for process in (first, second)]
    codes = sorted(process.returncode for process in (first, second))
    # Either the second found the folder locked (2) or the first had already finished it (skipped: 0).
    assert codes in ([0, 0], [0, 2]), results
    if codes == [0, 2]:
        assert any("is being written by another run" in err for _, err in results)
    [folder] = run_folders(output)
    assert len(read_records(folder / "samples.jsonl")) == 8 and len(read_summary(output / "results.csv")) == 1


# ------------------------------------------------------------------ 4. unparsed answers, out-of-domain models


def test_mostly_unparsed_answers_and_the_toy_model_off_its_data_are_said(tmp_path, data_root, capsys):
    assert main_aro.main(["--data-root", str(data_root), "--output-dir", str(tmp_path), "--model-name", "toy",
                          "--dataset", "VSR", "--method", "base"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[-1] == "Unparsed"
    [folder] = run_folders(tmp_path)
    results = json.loads((folder / "results.json").read_text())
    assert results["n_unparsed"] > results["n"] / 2   # the toy model answers with relation words, not yes/no
    warning = next(line for line in out.splitlines() if line.startswith("warning: base:"))
    assert f"{results['n_unparsed']} of {results['n']} answers name no option" in warning and "e.g. '" in warning
    assert "notice: toy was trained only on Synthetic_Controlled_A scenes; on VSR" in out


def test_the_long_report_table_has_the_unparsed_count(tmp_path, data_root, model_dir, capsys):
    assert cli(data_root, tmp_path, model_dir, "--limit", "2") == 0
    from evaluation import report

    capsys.readouterr()
    assert report.main([str(tmp_path), "--long"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| Dataset"))
    assert "| n_unparsed |" in header


def test_the_summary_explains_an_empty_column(tmp_path, data_root, model_dir, capsys):
    assert cli(data_root, tmp_path, model_dir, "--limit", "3") == 0
    out = capsys.readouterr().out
    assert "Set Acc: no complete set in this split" in out
    assert out.splitlines()[0].split()[:7] == ["configuration", "Acc", "Pair", "Acc", "Set", "Acc", "Unparsed"]


# ------------------------------------------------------------------ 5. validation before anything loads


@pytest.mark.parametrize("flags, message", [
    (["--method", "scaling_vis", "--weight", "nan"], "--weight nan is not a finite number"),
    (["--method", "scaling_vis", "--weight", "inf"], "--weight inf is not a finite number"),
    (["--method", "scaling_vis", "--weight", "0.5,,0.8"], "has an empty item"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cuda:7"], "device 'cuda:7' requested"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--device", "foo", "--device-map", "auto"], "unknown device 'foo'"),
    (["--device", "cpu", "--device-map", "auto"], "--device cpu and --device-map auto both place the model"),
    (["--dataset", "Nope"], "unknown dataset 'Nope'"),
    (["--model-path", "./no-such-model"], "no checkpoint directory at './no-such-model'"),
])
def test_bad_values_are_refused_before_anything_is_written(tmp_path, data_root, model_dir, flags, message, capsys,
                                                           monkeypatch):
    monkeypatch.setattr(run_module, "open_model", lambda config: pytest.fail("the model was opened"))
    assert cli(data_root, tmp_path, model_dir, *flags) == 2
    assert message in error_line(capsys)
    assert not [path for path in tmp_path.rglob("*") if path.is_dir()]


def test_every_model_reference_the_loader_takes_passes_the_early_check(tmp_path, model_dir):
    from common.errors import ToolkitError
    from model_zoo.adapters import ADAPTER_CONFIG
    from runner.config import RunConfig, validate

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / ADAPTER_CONFIG).write_text(json.dumps({"base_model_name_or_path": "toy"}))
    for reference in ({"model_name": "toy"}, {"model_name": "qwen3-vl"}, {"model_name": "someone/some-vlm"},
                      {"model_name": str(model_dir)}, {"model_path": str(model_dir)}, {"model_path": str(adapter)},
                      {"model_name": "nope", "model_path": "someone/some-vlm"}):
        validate(RunConfig(**reference))  # registered names, hub ids, folders, adapters: no error
    for reference, message in (({"model_name": "nope"}, "unknown model 'nope'"),
                               ({"model_path": str(tmp_path / "missing")}, "no checkpoint directory"),
                               ({"model_name": "a/b/c"}, "no checkpoint directory at 'a/b/c'")):
        with pytest.raises(ToolkitError, match=message):
            validate(RunConfig(**reference))


def test_the_loader_checks_the_device_name_with_a_device_map_too():
    from common.errors import ToolkitError
    from model_zoo import get_model

    with pytest.raises(ToolkitError, match="unknown device 'foo'"):
        get_model("toy", device="foo", device_map="auto")


def test_float16_on_a_cpu_is_warned_about(tmp_path, data_root, model_dir, caplog):
    caplog.set_level(logging.WARNING)
    assert cli(data_root, tmp_path, model_dir, "--limit", "1", "--dtype", "float16", "--device", "cpu") == 0
    assert "--dtype float16 on a CPU is slow and less exact" in caplog.text


def test_a_run_failing_before_its_first_sample_leaves_no_folder(tmp_path, data_root, model_dir, capsys, monkeypatch):
    from common.errors import ToolkitError

    def broken(self, **kwargs):
        raise ToolkitError("cannot load the weights (test)")

    monkeypatch.setattr(run_module.LazyModel, "get", broken)
    assert cli(data_root, tmp_path, model_dir, "--method", "base,scaling_vis", "--weight", "0.5") == 2
    assert "cannot load the weights (test)" in error_line(capsys)
    assert not [path for path in tmp_path.iterdir() if path.is_dir()]


# ------------------------------------------------------------------ 7. an unreachable hub


def test_an_unreachable_hub_is_one_message_saying_how_to_work_offline(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))  # port 9: nothing listens
    done = subprocess.run([sys.executable, str(REPO / "main_aro.py"), "--model-path", "someone/some-vlm",
                           "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "Retry" not in done.stderr and done.stderr.count("error: ") == 1
    line = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert "cannot reach the Hugging Face hub" in line and "HF_HUB_OFFLINE=1" in line and "--model-path" in line


# ------------------------------------------------------------------ 8. threads


def test_threads_are_set_for_the_run_and_recorded(tmp_path, data_root, model_dir):
    import torch

    before = torch.get_num_threads()
    assert cli(data_root, tmp_path, model_dir, "--limit", "1", "--threads", "1") == 0
    [folder] = run_folders(tmp_path)
    assert json.loads((folder / "results.json").read_text())["timing"]["threads"] == 1
    assert torch.get_num_threads() == before


# ------------------------------------------------------------------ 9. errors mid-run and Ctrl-C


def interrupt_after_first_batch(exception):
    """An evaluate_samples that records the first batch, then raises `exception` (as Ctrl-C would)."""
    real = run_module.evaluate_samples

    def evaluate(vlm, todo, runs, config, batches):
        def first_then_stop():
            iterator = iter(batches)
            yield next(iterator)
            raise exception
        real(vlm, todo, runs, config, first_then_stop())

    return evaluate


def test_ctrl_c_is_one_line_saying_how_to_resume(tmp_path, data_root, model_dir, capsys, monkeypatch):
    monkeypatch.setattr(run_module, "evaluate_samples", interrupt_after_first_batch(KeyboardInterrupt()))
    assert cli(data_root, tmp_path, model_dir, *SCALING) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == ("interrupted: the samples answered so far are saved; rerun the same command "
                                    "to resume")
    [folder] = run_folders(tmp_path)
    assert len(read_records(folder / "samples.jsonl")) == 1 and not (folder / LOCK_FILE).exists()
    monkeypatch.undo()
    assert cli(data_root, tmp_path, model_dir, *SCALING) == 0
    assert len(read_records(folder / "samples.jsonl")) == 8


def test_an_error_mid_run_starts_on_its_own_line(tmp_path, data_root, model_dir, capsys, monkeypatch):
    from common.errors import ToolkitError

    monkeypatch.setattr(run_module, "evaluate_samples", interrupt_after_first_batch(ToolkitError("broke (test)")))
    assert cli(data_root, tmp_path, model_dir, *SCALING) == 2
    err = capsys.readouterr().err
    assert "\nerror: broke (test)\n" in "\n" + err and "Traceback" not in err


@pytest.mark.slow
def test_a_real_sigint_ends_with_the_resume_line(tmp_path, data_root, model_dir):
    import signal
    import time

    process = subprocess.Popen([sys.executable, str(REPO / "main_aro.py"), "--data-root", str(data_root),
                                "--output-dir", str(tmp_path), "--model-path", str(model_dir), "--dataset",
                                "Controlled_Images_A"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while not list(tmp_path.rglob(LOCK_FILE)) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode in (130, 0), err  # 0: it finished before the signal arrived
    if process.returncode == 130:
        assert "Traceback" not in err and err.rstrip().endswith("rerun the same command to resume")


# ------------------------------------------------------------------ 14. toy training that learned nothing


def test_held_out_accuracy_at_chance_is_recognised():
    from model_zoo.toy.train import at_chance, chance_accuracy

    assert chance_accuracy(("A",)) == 0.25
    assert at_chance(0.27, 500, 0.25) and not at_chance(0.40, 500, 0.25) and not at_chance(0.962, 500, 0.25)


def test_training_that_ends_at_chance_warns(tmp_path, caplog):
    from model_zoo.toy.train import main as train_main

    caplog.set_level(logging.WARNING)
    train_main(["--steps", "2", "--batch-size", "4", "--eval-every", "2", "--val-size", "8", "--test-size", "64",
                "--hidden", "32", "--vision-hidden", "16", "--lm-layers", "1", "--target-accuracy", "0",
                "--no-evaluate", "--quiet", "--output", str(tmp_path / "toy")])
    assert "is at chance (not distinguishable from 25%" in caplog.text
