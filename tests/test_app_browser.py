"""`python app.py` end to end in a real headless browser (Debian's chromium driven by Playwright): the page answers
what the Python API answers, follows the alpha slider, refuses a non-image upload with a message and keeps working,
keeps two visitors' results apart, and takes the README's screenshot (UPDATE_DEMO_SCREENSHOT=1 writes docs/demo.png).

Nothing is skipped: without chromium the test fails saying how to install it (.ci/run installs it)."""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

import methods
from dataset_zoo import get_dataset
from dataset_zoo.boxes import box_source_for
from demo import callbacks
from demo.controls import control_names, controls_for
from demo.engine import Engine
from demo.sources import DatasetSource
from intervention.capture import capture
from methods import Configuration
from model_zoo import get_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
DATASET = "Synthetic_Controlled_A"
LIMIT = 40
CHROMIUM = os.environ.get("DEMO_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking switches chromium's own connections are refused on a closed network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser-data")
    get_dataset(DATASET, root=root)  # the app's default scenes, generated once for the app and the reference
    return root


@pytest.fixture(scope="module")
def reference(data_root):
    """The Python side: the toy model on the same samples, and the page's own callbacks for its pictures."""
    vlm = get_model("toy")
    samples = list(get_dataset(DATASET, root=data_root))[:LIMIT]
    return vlm, samples, Engine(vlm, samples, dataset=DATASET, box_source=box_source_for(DATASET, data_root))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(data_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("app")
    port = _free_port()
    log = open(work / "app.log", "w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(work / "gradio")}
    process = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--data-root", str(data_root), "--port",
                                str(port), "--limit", str(LIMIT)], cwd=work, stdout=log, stderr=subprocess.STDOUT,
                               env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_serving(url, process, work / "app.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_until_serving(url: str, process, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"app.py did not serve {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file() and shutil.which(CHROMIUM) is None:
        pytest.fail(f"no chromium at {CHROMIUM}: install Debian's (apt-get install chromium) or set DEMO_CHROMIUM")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.goto(url)
    expect(page.locator("#answers table")).to_be_visible(timeout=WAIT_MS)
    return page


def table(page) -> dict[str, list[str]]:
    """The answers table: row name -> cells (the header row under "")."""
    rows = page.locator("#answers tr").all()
    cells = [[cell.inner_text().strip() for cell in row.locator("th, td").all()] for row in rows]
    return {row[0]: row[1:] for row in cells}


def choose_sample(page, index: int) -> None:
    box = page.locator("#position input[type=number]")
    box.fill(str(index))
    box.press("Enter")
    expect(page.locator("#about")).to_contain_text(f"sample {index} ", timeout=WAIT_MS)


def set_alpha(page, key_or_value) -> None:
    """Move the alpha slider with the keyboard (a key name) or type a value into its box (a number)."""
    if isinstance(key_or_value, str):
        page.locator("#hp-weight input[type=range]").press(key_or_value)
    else:
        box = page.locator("#hp-weight input[type=number]")
        box.fill(str(key_or_value))
        box.press("Enter")


def wait_for_method(page, label: str) -> dict[str, list[str]]:
    expect(page.locator("#answers th").nth(2)).to_have_text(label, timeout=WAIT_MS)
    return table(page)


def shown_image(page, selector: str) -> np.ndarray:
    source = page.locator(f"{selector} img").get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(source).body())).convert("RGB"))


def api_expectation(reference, index: int, alpha: float, layer: int):
    """What the Python API says for sample `index` at ScalingVis `alpha`: the registry's answers and the captured
    generation (confidence, attention), plus the page callbacks' rendering of the same settings."""
    vlm, samples, engine = reference
    sample = samples[index]
    prompt = vlm.build_prompt(sample.question, sample.paper_prompt)
    base, scaled = Configuration.of("base"), Configuration.of("scaling_vis", weight=alpha)
    answers = methods.answer(vlm, [sample], [sample.image], [prompt], [base, scaled], max_new_tokens=10)
    captured = capture(vlm, vlm.prepare([sample.image], [prompt]), image_sizes=[sample.image.size], alpha=alpha,
                       max_new_tokens=10)
    grid = captured.samples[0].image_grid().mean(1)[layer]
    row, col = np.unravel_index(np.nanargmax(grid), grid.shape)
    names = control_names()
    chosen = {c.name: c.value for c in controls_for("scaling_vis", DATASET)} | {"weight": alpha}
    view = callbacks.show(engine, DatasetSource(index), "scaling_vis", names, [chosen.get(n) for n in names], layer)
    return dict(base=answers[base][0].text, answer=answers[scaled][0].text,
                confidence=f"{float(captured.generation.confidence[0]):.4f}",
                base_confidence=f"{answers[base][0].fields['confidence']:.4f}",
                peak=f"{grid[row, col]:.4f} at row {row}, column {col} of {grid.shape[0]} x {grid.shape[1]}",
                heatmap=np.asarray(view.heatmap))


def assert_same_picture(shown: np.ndarray, expected: np.ndarray) -> None:
    # Both processes render the same numbers with the same matplotlib; allow a colour step from float rounding.
    assert shown.shape == expected.shape
    assert np.mean(np.any(shown != expected, axis=-1)) < 0.005


def test_page_follows_the_alpha_slider_and_matches_the_python_api(server, browser, reference, tmp_path):
    page = open_page(browser, server)
    layer = int(page.locator("#layer input[type=number]").input_value())
    index = 7  # at alpha 0 (image attention flattened) the toy model's answer changes on this scene
    choose_sample(page, index)
    before = api_expectation(reference, index, 0.8, layer)
    shown = wait_for_method(page, "scaling_vis_a-0.8")
    assert shown["answer"] == [before["base"], before["answer"]]
    assert shown["first-token confidence"] == [before["base_confidence"], before["confidence"]]
    first_heatmap = shown_image(page, "#heatmap")
    assert_same_picture(first_heatmap, before["heatmap"])

    page.locator("#hp-weight input[type=range]").focus()
    set_alpha(page, "Home")  # the slider's left end: alpha 0
    after = api_expectation(reference, index, 0.0, layer)
    shown = wait_for_method(page, "scaling_vis_a-0")
    assert after["answer"] != after["base"]
    assert shown["answer"] == [after["base"], after["answer"]]
    assert shown["first-token confidence"] == [after["base_confidence"], after["confidence"]]
    assert shown["record: alpha"] == ["1.0000", "0.0000"]
    assert shown[f"peak image attention, layer {layer}"][1] == after["peak"]
    expect(page.locator("#heatmap img")).to_be_visible()
    heatmap = shown_image(page, "#heatmap")
    assert_same_picture(heatmap, after["heatmap"])
    assert np.mean(heatmap != first_heatmap) > 0.01

    set_alpha(page, 0.8)  # back to the first setting: served from the cache
    assert wait_for_method(page, "scaling_vis_a-0.8")["time"] == ["cached", "cached"]
    assert page.locator("#message").inner_text().strip() == ""
    outside = [url for url in page.requested if not url.startswith(server) and not url.startswith(("data:", "blob:"))]
    assert outside == [], "the page must work offline"
    _screenshot(page, tmp_path)


def _screenshot(page, tmp_path: Path) -> None:
    set_alpha(page, 0.3)
    wait_for_method(page, "scaling_vis_a-0.3")
    path = tmp_path / "demo.png"
    page.screenshot(path=str(path), full_page=True)
    small = Image.open(path).convert("RGB").quantize(colors=128)  # a palette PNG: a fraction of the bytes
    small.save(path, optimize=True)
    assert path.stat().st_size < 400_000
    if os.environ.get("UPDATE_DEMO_SCREENSHOT") == "1":
        shutil.copy(path, REPO / "docs" / "demo.png")


def test_a_bad_upload_and_a_bad_setting_show_messages_and_the_page_keeps_working(server, browser, reference, tmp_path):
    page = open_page(browser, server)
    page.locator("#kind").get_by_label(callbacks.UPLOADED).check()
    notes = tmp_path / "notes.txt"
    notes.write_text("certainly not a picture")
    page.locator("#upload input[type=file]").set_input_files(str(notes))
    page.locator("#question textarea").fill("Where is the mug?")
    page.locator("#ask").click()
    expect(page.locator("#message")).to_contain_text("notes.txt is not an image PIL can read",
                                                     timeout=WAIT_MS)

    vlm, samples, _ = reference
    scene = tmp_path / "scene.png"
    samples[3].image.save(scene)
    page.locator("#upload button[aria-label='Clear']").click()
    page.locator("#upload input[type=file]").set_input_files(str(scene))
    page.locator("#question textarea").fill(samples[3].question)
    page.locator("#ask").click()
    expect(page.locator("#about")).to_contain_text("uploaded image scene.png", timeout=WAIT_MS)
    expect(page.locator("#message")).to_have_text("", timeout=WAIT_MS)
    prompt = vlm.build_prompt(samples[3].question)
    configuration = Configuration.of("scaling_vis", weight=0.8)
    expected = methods.answer(vlm, [samples[3]], [samples[3].image], [prompt], [configuration], max_new_tokens=10)
    assert table(page)["answer"][1] == expected[configuration][0].text

    page.locator("#kind").get_by_label(callbacks.DATASET_SAMPLE).check()
    choose_sample(page, 2)
    assert "verdict" in table(page)
    set_alpha(page, -1)  # typed into the slider's box, past its left end
    expect(page.locator("#message")).to_contain_text("invalid setting: --weight -1 is outside [0, inf]",
                                                     timeout=WAIT_MS)
    set_alpha(page, 0.5)
    wait_for_method(page, "scaling_vis_a-0.5")
    expect(page.locator("#message")).to_have_text("", timeout=WAIT_MS)


def test_two_visitors_at_once_each_see_their_own_results(server, browser, reference):
    first, second = open_page(browser, server), open_page(browser, server)
    layer = int(first.locator("#layer input[type=number]").input_value())
    for page, index, alpha in ((first, 11, 0.2), (second, 24, 1.9)):  # both requests in flight together
        box = page.locator("#position input[type=number]")
        box.fill(str(index))
        box.press("Enter")
        set_alpha(page, alpha)
    for page, index, alpha in ((first, 11, 0.2), (second, 24, 1.9)):
        expect(page.locator("#about")).to_contain_text(f"sample {index} ", timeout=WAIT_MS)
        shown = wait_for_method(page, f"scaling_vis_a-{alpha:g}")
        expected = api_expectation(reference, index, alpha, layer)
        assert shown["answer"] == [expected["base"], expected["answer"]]
        assert shown["first-token confidence"] == [expected["base_confidence"], expected["confidence"]]
        assert shown[f"peak image attention, layer {layer}"][1] == expected["peak"]


def test_the_wrong_at_baseline_filter_shows_a_sample_the_baseline_gets_wrong(server, browser, reference):
    vlm, samples, engine = reference
    wrong = callbacks.choose_samples(engine, callbacks.ALL, callbacks.WRONG).positions
    assert wrong, "the toy model answers every one of these scenes right; pick more samples"
    page = open_page(browser, server)
    page.locator("#verdict").get_by_label(callbacks.WRONG).check()
    expect(page.locator("#about")).to_contain_text(f"sample {wrong[0]} ", timeout=WAIT_MS)
    assert table(page)["verdict"][0].startswith("wrong")
