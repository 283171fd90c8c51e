"""The demo page's callbacks (demo/), called directly on the shipped toy model and a few synthetic scenes: the page
shows what the Python API gives for the same settings, caches it, and turns every bad input into a message."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

import methods
from app import main as app_main
from dataset_zoo import get_dataset
from dataset_zoo.boxes import box_source_for
from demo import callbacks
from demo.attention import INTERVENTIONS
from demo.controls import CHECKBOX, CHOICE, SLIDER, TEXT, configuration_from, control_names, controls_for
from demo.engine import Engine
from demo.sources import DatasetSource
from intervention.capture import capture
from methods import Configuration, all_methods
from model_zoo import get_model
from scoring import judge

DATASET = "Synthetic_Controlled_A"
NAMES = control_names()


@pytest.fixture(scope="module")
def toy():
    return get_model("toy")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("demo-data")


@pytest.fixture(scope="module")
def samples(data_root):
    return list(get_dataset(DATASET, root=data_root, split="all", synthetic={"n_pairs": 4}))


@pytest.fixture()
def engine(toy, samples, data_root):
    return Engine(toy, samples, dataset=DATASET, box_source=box_source_for(DATASET, data_root))


def values(method: str, **changed) -> list:
    """The page's control values for `method`: its defaults for the dataset, with `changed` applied."""
    chosen = {control.name: control.value for control in controls_for(method, DATASET)}
    chosen.update(changed)
    return [chosen.get(name) for name in NAMES]


def show(engine, source, method, layer=None, **changed) -> callbacks.View:
    return callbacks.show(engine, source, method, NAMES, values(method, **changed), layer)


def api_answer(vlm, sample, image, configuration):
    prompt = vlm.build_prompt(sample.question, sample.paper_prompt)
    return methods.answer(vlm, [sample], [image], [prompt], [configuration], max_new_tokens=10)[configuration][0]


def api_capture(vlm, sample, image, alpha):
    prompt = vlm.build_prompt(sample.question, sample.paper_prompt)
    return capture(vlm, vlm.prepare([image], [prompt]), image_sizes=[image.size], alpha=alpha, max_new_tokens=10)


# ---- controls from the registry ------------------------------------------------------------------------------

def test_every_registered_hyperparameter_gets_a_control_with_its_range_and_dataset_default():
    for method in all_methods():
        controls = controls_for(method.name, DATASET)
        assert [c.name for c in controls] == list(method.names)
        defaults = method.default_values(DATASET)
        for control, h in zip(controls, method.hyperparameters):
            assert control.value == defaults[h.name]
            if h.kind in (int, float):
                assert control.kind == SLIDER and control.minimum <= control.value <= control.maximum
                assert (h.low is None or control.minimum == h.low) and (h.high is None or control.maximum == h.high)
            elif h.kind is bool:
                assert control.kind == CHECKBOX
            else:  # words: a menu when the registry lists them, else free text (e.g. DoLa's layer set)
                assert control.kind == (CHOICE if h.choices else TEXT)
    weight = controls_for("scaling_vis", DATASET)[0]
    assert (weight.minimum, weight.maximum, weight.step, weight.value) == (0.0, 2.0, 0.01, 0.8)
    adapt = {c.name: c.value for c in controls_for("adapt_vis", DATASET)}
    assert (adapt["weight1"], adapt["weight2"], adapt["threshold"]) == (0.5, 1.5, 0.4)
    assert set(NAMES) == {h.name for m in all_methods() for h in m.hyperparameters}


def test_control_values_give_the_registry_configuration():
    assert configuration_from("adapt_vis", NAMES, values("adapt_vis", threshold=0.3)) == \
        Configuration.of("adapt_vis", weight1=0.5, weight2=1.5, threshold=0.3)
    assert configuration_from("base", NAMES, [None] * len(NAMES)) == Configuration.of("base")


# ---- answers equal the Python API ----------------------------------------------------------------------------

@pytest.mark.parametrize("method, changed, alpha", [("scaling_vis", {"weight": 0.2}, 0.2),
                                                    ("adapt_vis", {"threshold": 0.99}, None),
                                                    ("base", {}, 1.0)])
def test_the_page_shows_what_the_python_api_gives(engine, samples, toy, method, changed, alpha):
    sample = samples[3]
    view = show(engine, DatasetSource(3), method, layer=2, **changed)
    assert view.message == "" and view.layer == 2
    configuration = configuration_from(method, NAMES, values(method, **changed))
    expected = api_answer(toy, sample, sample.image, configuration)
    shown = view.result.method
    assert shown.answer == expected.text and shown.fields == expected.fields
    assert f"**{expected.text}**" in view.answers
    alpha = expected.fields["alpha"] if alpha is None else alpha
    reference = api_capture(toy, sample, sample.image, alpha)
    assert shown.confidence == pytest.approx(float(reference.generation.confidence[0]), abs=1e-6)
    assert f"{shown.confidence:.4f}" in view.answers
    np.testing.assert_allclose(shown.attention.image_grid(), reference.samples[0].image_grid(), atol=1e-6)
    grid = reference.samples[0].image_grid().mean(1)[2]
    row, col = np.unravel_index(np.nanargmax(grid), grid.shape)
    assert f"| {grid[row, col]:.4f} at row {row}, column {col} of 6 x 6 |" in view.answers
    assert shown.correct == judge(expected.text, sample).correct
    assert view.heatmap.size[0] > view.heatmap.size[1] and view.masses is not None


def test_adaptvis_shows_its_branch_and_the_alpha_it_chose(engine):
    sharpen = show(engine, DatasetSource(0), "adapt_vis", threshold=0.0).result.method
    smooth = show(engine, DatasetSource(0), "adapt_vis", threshold=1.0, round_confidence=False).result.method
    assert (sharpen.fields["branch"], sharpen.fields["alpha"]) == ("sharpen", 1.5)
    assert (smooth.fields["branch"], smooth.fields["alpha"]) == ("smooth", 0.5)
    assert "| record: branch | – | sharpen |" in show(engine, DatasetSource(0), "adapt_vis", threshold=0.0).answers


def test_clvs_heatmap_is_the_smoothed_attention(engine, samples, toy):
    view = show(engine, DatasetSource(1), "clvs", clvs_lambda=0.3)
    expected = api_answer(toy, samples[1], samples[1].image, Configuration.of("clvs", clvs_lambda=0.3))
    assert view.result.method.answer == expected.text and view.result.method.fields == expected.fields
    base, smoothed = view.result.base.attention.rows[0].image, view.result.method.attention.rows[0].image
    np.testing.assert_array_equal(base[0], smoothed[0])  # layer 0 runs unchanged; later layers are blended
    assert np.abs(base[1:] - smoothed[1:]).max() > 1e-3


def test_a_method_whose_attention_cannot_be_captured_is_answered_with_a_note(engine, monkeypatch):
    monkeypatch.delitem(INTERVENTIONS, "clvs")
    view = show(engine, DatasetSource(2), "clvs")
    assert view.result.method.attention is None and view.result.method.answer
    assert "heatmap is not shown" in view.message and view.heatmap is not None


# ---- cache ---------------------------------------------------------------------------------------------------

def test_same_sample_method_and_settings_come_from_the_cache(engine, monkeypatch):
    first = show(engine, DatasetSource(4), "scaling_vis", weight=0.5)
    calls = []
    monkeypatch.setattr(methods, "answer", lambda *a, **k: calls.append(a) or pytest.fail("recomputed"))
    again = show(engine, DatasetSource(4), "scaling_vis", weight=0.5, layer=0)
    assert again.result.cached and not first.result.cached and calls == []
    assert again.result.method is first.result.method and again.layer == 0
    assert "cached" in again.answers


def test_other_settings_recompute_the_method_but_reuse_the_baseline(engine):
    first = show(engine, DatasetSource(5), "scaling_vis", weight=0.5)
    other = show(engine, DatasetSource(5), "scaling_vis", weight=1.5)
    assert other.result.base is first.result.base and other.result.method is not first.result.method
    assert other.result.method.fields["alpha"] == 1.5


def test_concurrent_requests_get_their_own_results(engine, toy, samples):
    asks = [(i % 4, w) for i, w in enumerate((0.3, 0.6, 1.4, 1.8, 0.9, 2.0))]
    got = {}

    def one(index, weight):
        got[(index, weight)] = show(engine, DatasetSource(index), "scaling_vis", weight=weight)

    threads = [threading.Thread(target=one, args=ask) for ask in asks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, weight in asks:
        sample = samples[index]
        expected = api_answer(toy, sample, sample.image, Configuration.of("scaling_vis", weight=weight))
        method = got[(index, weight)].result.method
        assert (method.answer, method.fields["alpha"]) == (expected.text, weight)
        np.testing.assert_allclose(method.attention.image_grid(),
                                   api_capture(toy, sample, sample.image, weight).samples[0].image_grid(), atol=1e-6)


def test_a_request_waiting_for_the_model_says_so_and_then_runs(engine):
    said = []
    engine._model_lock.acquire()  # another visitor's computation holds the model
    waiting = threading.Thread(target=lambda: said.append(callbacks.show(
        engine, DatasetSource(8), "scaling_vis", NAMES, values("scaling_vis"), None,
        lambda fraction, desc="": said.append(desc))))
    waiting.start()
    deadline = time.monotonic() + 30
    while not said and time.monotonic() < deadline:
        time.sleep(0.01)
    assert said == ["waiting for the model: another request is running"] and waiting.is_alive()
    engine._model_lock.release()
    waiting.join(timeout=60)
    steps, view = said[1:-1], said[-1]
    assert view.message == "" and view.result.method.answer
    assert steps == ["base: answering", "base: capturing attention", "scaling_vis_a-0.8: answering",
                     "scaling_vis_a-0.8: capturing attention", "drawing"]


# ---- bad inputs and settings become messages -----------------------------------------------------------------

@pytest.mark.parametrize("changed, expected", [({"weight": -1.0}, "invalid setting: --weight -1 is outside [0, inf]"),
                                               ({"weight": "much"}, "invalid setting: --weight 'much' is not a valid"),
                                               ({"weight": None}, "invalid setting: weight has no value")])
def test_invalid_settings_give_a_message(engine, changed, expected):
    view = show(engine, DatasetSource(0), "scaling_vis", **changed)
    assert view.message.startswith(expected) and view.heatmap is None and view.result is None


def test_adaptvis_weights_in_the_wrong_order_run_with_the_warning_shown(engine):
    view = show(engine, DatasetSource(0), "adapt_vis", weight1=1.5, weight2=0.5)
    assert "note: AdaptVis weight1=1.5 > weight2=0.5" in view.message and view.result is not None


def test_unknown_samples_give_messages(engine):
    assert show(engine, DatasetSource(999), "scaling_vis").message.startswith("sample 999 does not exist")


def test_an_unexpected_failure_is_one_line_in_the_page(engine, monkeypatch):
    monkeypatch.setattr(engine, "result", lambda *a, **k: 1 / 0)
    failed = callbacks.respond(engine, callbacks.DATASET_SAMPLE, callbacks.ALL, callbacks.ALL, 0, None, None,
                               "scaling_vis", NAMES, values("scaling_vis"), None)
    assert failed.view.message.startswith("internal error (ZeroDivisionError") and failed.view.heatmap is None


def test_uploads_that_are_not_images_or_too_large_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert callbacks.upload(str(text), "where?") == (None, "notes.txt is not an image PIL can read; upload a PNG, "
                                                           "JPEG, WebP, BMP or GIF file")
    big = tmp_path / "big.png"
    Image.new("L", (3000, 2000)).save(big)
    source, message = callbacks.upload(str(big), "where?", max_pixels=5_000_000)
    assert source is None and message == ("big.png is 3000 x 2000 pixels (6 megapixels); the demo "
                                          "takes at most 5 megapixels, downscale it")
    assert "MB; the demo takes image files up to" in callbacks.upload(str(big), "where?", max_bytes=100)[1]
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), "red").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:80])
    assert "could not be decoded" in callbacks.upload(str(truncated), "where?")[1]
    assert "type a question" in callbacks.upload(str(big), "  ")[1]
    assert "choose an image file" in callbacks.upload(None, "where?")[1]


def test_an_uploaded_image_is_answered_like_the_python_api(engine, samples, toy, data_root, tmp_path):
    path = tmp_path / "scene.png"
    samples[6].image.save(path)
    source, message = callbacks.upload(str(path), samples[6].question)
    assert message == ""
    view = show(engine, source, "scaling_vis", weight=0.4)
    expected = api_answer(toy, source.sample(), source.image, Configuration.of("scaling_vis", weight=0.4))
    assert view.message == "" and view.result.method.answer == expected.text
    assert "verdict" not in view.answers  # no gold answer to judge against
    again, _ = callbacks.upload(str(path), samples[6].question)
    assert show(engine, again, "scaling_vis", weight=0.4).result.cached


# ---- sample filters ------------------------------------------------------------------------------------------

def test_filters_by_relation_and_baseline_verdict(engine, samples, toy):
    left = callbacks.choose_samples(engine, "left", callbacks.ALL)
    assert left.positions and all(samples[i].relation == "left" for i in left.positions)
    right = callbacks.choose_samples(engine, callbacks.ALL, callbacks.RIGHT).positions
    wrong = callbacks.choose_samples(engine, callbacks.ALL, callbacks.WRONG).positions
    assert sorted(right + wrong) == list(range(len(samples)))
    base = Configuration.of("base")
    for i in range(len(samples)):
        expected = judge(api_answer(toy, samples[i], samples[i].image, base).text, samples[i]).correct
        assert (i in right) == expected
    none = callbacks.choose_samples(engine, "no such relation", callbacks.ALL)
    assert none.positions == () and "no sample matches the filters" in none.message


def respond(engine, kind, relation=callbacks.ALL, verdict=callbacks.ALL, position=0, path=None, question=None,
            method="scaling_vis", **changed) -> callbacks.Shown:
    return callbacks.respond(engine, kind, relation, verdict, position, path, question, method, NAMES,
                             values(method, **changed), None)


def test_the_page_is_derived_from_its_inputs_alone(engine, samples, tmp_path):
    left = callbacks.choose_samples(engine, "left", callbacks.ALL).positions
    shown = respond(engine, callbacks.DATASET_SAMPLE, relation="left", position=99)
    assert (shown.kept, shown.position) == (len(left), len(left) - 1)  # clamped to the last kept sample
    assert shown.view.result.source == DatasetSource(left[-1]) and f"**sample {left[-1]}**" in shown.about
    assert shown.view.layer == engine.n_layers // 2  # no layer chosen yet: the middle one
    nothing = respond(engine, callbacks.DATASET_SAMPLE, relation="no such relation")
    assert nothing.view.message.startswith("no sample matches") and nothing.about == "*nothing to answer yet*"
    assert nothing.kept is None

    scene = tmp_path / "scene.png"
    samples[1].image.save(scene)
    uploaded = respond(engine, callbacks.UPLOADED, path=str(scene), question=samples[1].question, position=5)
    assert uploaded.view.message == "" and "**uploaded image** scene.png" in uploaded.about
    assert uploaded.view.result.sample.question == samples[1].question and uploaded.kept is None
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    refused = respond(engine, callbacks.UPLOADED, path=str(text), question="where?")
    assert refused.view.message.startswith("notes.txt is not an image") and refused.view.heatmap is None
    assert respond(engine, callbacks.UPLOADED, path=str(scene)).view.message.startswith("type a question")


def test_describe_names_the_sample_and_its_gold_answer(engine, samples):
    text = callbacks.describe(engine, DatasetSource(2))
    assert f"id `{samples[2].id}`" in text and f"gold answer: **{samples[2].answer}**" in text


# ---- app.py flags --------------------------------------------------------------------------------------------

def test_app_flags_report_problems_in_one_line(capsys, tmp_path):
    assert app_main(["--port", "0"]) == 2
    assert capsys.readouterr().err == "error: --port 0 is not a port number (1-65535)\n"
    assert app_main(["--dataset", "Nope", "--data-root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown dataset 'Nope'; valid names:")
    with pytest.raises(SystemExit) as done:
        app_main(["--method", "nope"])
    assert done.value.code == 2 and capsys.readouterr().err.startswith("error: argument --method: invalid choice")
