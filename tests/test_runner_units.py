"""The pieces of the evaluation workflow that need no model: configs, run names, records, shards, rounds."""
import pytest

from common.errors import ToolkitError
from methods import Configuration
from runner.config import RunConfig, expand_methods, run_path, sortable_number, validate
from runner.records import RunFolder, read_records, read_summary, write_summary_row
from runner.shards import Shard, merge_parts, thread_count


def test_expand_methods_uses_the_papers_settings_when_flags_are_missing():
    specs = expand_methods(RunConfig(dataset="Controlled_Images_B", method=("base", "scaling_vis", "adapt_vis")))
    assert specs == [Configuration.of("base"), Configuration.of("scaling_vis", weight=0.8),
                     Configuration.of("adapt_vis", weight1=0.5, weight2=1.5, threshold=0.35)]


def test_expand_methods_builds_the_full_grid_without_duplicates():
    config = RunConfig(method=("adapt_vis", "adapt_vis"),
                       hyperparameters={"weight1": (0.5, 0.8), "weight2": (1.2, 1.5, 2.0), "threshold": (0.2, 0.3)})
    specs = expand_methods(config)
    assert len(specs) == 12 and len(set(specs)) == 12
    assert {s.method for s in specs} == {"adapt_vis"}


@pytest.mark.parametrize("changes, message", [
    ({"method": ("adapt_vis",), "hyperparameters": {"threshold": 1.2}}, "--threshold 1.2 is outside \\[0, 1\\]"),
    ({"method": ("scaling_vis",), "hyperparameters": {"weight": -0.5}}, "--weight -0.5 is outside \\[0, inf\\]"),
    ({"method": ("adapt_vis",), "hyperparameters": {"weight1": -1.0}}, "--weight1 -1 is outside"),
    ({"method": ("scaling_vis",), "hyperparameters": {"threshold": 0.3}}, "--threshold is a hyper-parameter of "
                                                                           "adapt_vis"),
    ({"method": ("dolla",)}, "unknown method 'dolla'; choose one of: base, "),
    ({"option": "three"}, "unknown --option"),
    ({"split": "train"}, "unknown --split"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
    ({"limit": 0}, "--limit must be >= 1"),
    ({"threads": 0}, "--threads must be >= 1"),
    ({"device_map": "everywhere"}, "unknown --device-map 'everywhere'; choose one of: auto, "),
])
def test_validate_rejects_bad_settings(changes, message):
    with pytest.raises(ToolkitError, match=message):
        validate(RunConfig(**changes))


def test_run_paths_separate_every_result_affecting_setting():
    base = RunConfig(dataset="Controlled_Images_A", model_name="llava1.5")
    spec = Configuration.of("adapt_vis", weight1=0.5, weight2=1.5, threshold=0.4)
    path = run_path(base, spec, "four", "test")
    assert path.parts[:2] == ("llava1.5", "Controlled_Images_A")
    assert path.name.startswith("adapt_vis_w1-0.50_w2-1.50_t-0.40__four__test__strict__seed1__")
    variants = [RunConfig(dataset="Controlled_Images_A", model_name="llava1.5", **change) for change in
                ({"max_new_tokens": 100}, {"prompt_format": "paper"}, {"limit": 5}, {"match": "paper"}, {"seed": 2})]
    paths = {run_path(v, spec, "four", "test") for v in variants}
    paths.add(run_path(base, Configuration.of("adapt_vis", weight1=0.5, weight2=1.5, threshold=0.4, scope="all"),
                       "four", "test"))  # adapt_vis_w1-0.50_w2-1.50_t-0.40_scope-all
    assert path not in paths and len(paths) == len(variants) + 1
    assert run_path(RunConfig(dataset="Controlled_Images_A", model_name="llava1.5", batch_size=8, threads=1), spec,
                    "four", "test") == path


def test_run_folder_names_of_a_grid_sort_like_their_numbers():
    config = RunConfig(dataset="Controlled_Images_A", model_name="llava1.5")
    thresholds = [0.2, 0.25, 0.3, 0.35, 0.5, 0.55, 0.65]
    names = [run_path(config, Configuration.of("adapt_vis", weight1=w1, weight2=2.0, threshold=t), "four", "val").name
             for w1 in (0.5, 0.8) for t in thresholds]
    assert sorted(names) == names
    scaling = [run_path(config, Configuration.of("scaling_vis", weight=w), "four", "val").name
               for w in (0.5, 0.8, 1.2, 1.5, 2.0)]
    assert sorted(scaling) == scaling
    # Exactness wins over width: a value that needs more digits keeps them (an auto threshold from val).
    assert sortable_number(0.6123456789012345) == "0.6123456789012345" and sortable_number(0.2) == "0.20"
    assert sortable_number(2) == "2" and sortable_number("auto") == "auto"


def test_torn_last_line_is_repaired_and_never_duplicated(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.append([{"id": "a", "index": 0}, {"id": "b", "index": 1}])
    with open(folder.samples_path, "a") as handle:
        handle.write('{"id": "c", "ind')  # what kill -9 in the middle of a write leaves
    with pytest.raises(ToolkitError, match="incomplete"):
        read_records(folder.samples_path)
    assert [r["id"] for r in folder.completed_records()] == ["a", "b"]
    folder.append([{"id": "c", "index": 2}])
    assert [r["id"] for r in read_records(folder.samples_path)] == ["a", "b", "c"]


def test_a_corrupt_line_in_the_middle_is_reported_not_dropped(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ToolkitError, match="line 2 is not valid JSON"):
        read_records(path, repair=True)


def test_merge_parts_orders_by_dataset_and_removes_parts(tmp_path):
    order = {"s0": 0, "s1": 1, "s2": 2, "s3": 3}
    for rank, ids in ((0, ["s0", "s2"]), (1, ["s1", "s3"])):
        RunFolder(tmp_path, Shard(rank, 2).samples_name).append([{"id": i} for i in ids])
    merged = merge_parts(tmp_path, order)
    assert [r["id"] for r in merged] == ["s0", "s1", "s2", "s3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.jsonl"]
    assert [r["id"] for r in read_records(tmp_path / "samples.jsonl")] == ["s0", "s1", "s2", "s3"]


def test_shards_partition_the_positions():
    shards = [Shard(rank, 3) for rank in range(3)]
    owners = [[s.rank for s in shards if s.owns(position)] for position in range(10)]
    assert all(len(o) == 1 for o in owners)


def test_summary_csv_gets_one_header_and_a_row_per_run(tmp_path):
    write_summary_row(tmp_path, {"run": "r1", "dataset": "A", "hyperparameters": {"weight": 0.8, "scope": "all"}},
                      {"accuracy": 0.5})
    write_summary_row(tmp_path, {"run": "r2", "dataset": "B"}, {"accuracy": 0.25, "f1": 0.1})
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("run,dataset,model,method,hyperparameters")
    assert lines[1].startswith("r1,A,,,weight=0.8 scope=all")


def test_summary_csv_replaces_the_row_of_a_redone_run_and_heals_duplicates(tmp_path):
    path = tmp_path / "results.csv"
    # What earlier versions left after a run was redone: two rows of one folder.
    path.write_text("run,dataset,accuracy\nr1,A,0.1\nr1,A,0.2\nr2,B,0.3\n")
    write_summary_row(tmp_path, {"run": "r1", "dataset": "A"}, {"accuracy": 0.9})
    rows = read_summary(path)
    assert [(row["run"], row["accuracy"]) for row in rows] == [("r2", "0.3"), ("r1", "0.9")]


def test_threads_default_to_the_cores_divided_among_local_processes(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert thread_count(None, Shard()) == 8
    assert thread_count(3, Shard()) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert thread_count(None, Shard(1, 8)) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_count(None, Shard(1, 8)) == 1


def test_unwritable_output_directory_is_a_clear_error(tmp_path):
    from runner.records import ensure_writable
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ToolkitError, match="cannot write to output directory"):
        ensure_writable(blocker / "sub")


def test_timing_record_counts_only_what_this_invocation_measured():
    from runner.timing import Timing

    timing = Timing(open_seconds=0.5, load_seconds=2.0, evaluation_seconds=4.0, configurations=3, processes=2,
                    threads=4)
    assert timing.record(evaluated=10, resumed=6) == {
        "model_load_seconds": 2.5, "threshold_seconds": None, "evaluation_seconds": 4.0, "samples_evaluated": 10,
        "samples_resumed": 6, "samples_per_second": 2.5, "configurations_in_pass": 3, "processes": 2, "threads": 4}
    idle = Timing(open_seconds=0.5, evaluation_seconds=0.0).record(evaluated=0, resumed=8)
    assert idle["model_load_seconds"] is None and idle["samples_per_second"] is None


def test_now_iso_has_milliseconds_and_the_offset():
    import re
    from runner.provenance import now_iso

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", now_iso())


def test_model_loading_inside_a_pass_is_not_counted_as_evaluation(monkeypatch):
    from runner import timing as timing_module

    clock = iter([0.0, 1.0, 6.0, 8.0])  # the pass starts, the model starts loading, is loaded, the pass ends
    monkeypatch.setattr(timing_module.time, "perf_counter", lambda: next(clock))
    timing = timing_module.Timing()
    with timing_module.timed(timing, "evaluation_seconds"):
        with timing_module.timed(timing, "load_seconds"):
            pass
    assert (timing.load_seconds, timing.evaluation_seconds) == (5.0, 3.0)
