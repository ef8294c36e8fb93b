"""The ``skin-cnn serve`` page in a real headless Chromium: upload a real photo, see the answer.

Needs Playwright for Python (the ``[browser]`` extra) and a Chromium: ``$SKIN_CNN_CHROMIUM``, else
``chromium`` (Debian's package, which ``.ci/run`` installs) or ``chromium-browser`` on the PATH,
else the one ``python -m playwright install chromium`` downloads. Skipped, saying which is
missing, when there is none.
Set ``SKIN_CNN_SCREENSHOT=PATH`` to keep the screenshot (the docs' ``docs/screenshots/serve.png``
is made this way), ``SKIN_CNN_SCREENSHOT_MODEL=RUN_OR_KERAS`` to serve a real trained model
instead of the tiny test model and ``SKIN_CNN_SCREENSHOT_PHOTO=PATH`` to upload another photo
(e.g. one from that run's test split).
"""

import contextlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from model_fixtures import shared_run

pytestmark = pytest.mark.browser



def _system_chromium():
    """``$SKIN_CNN_CHROMIUM``, else a Chromium on the PATH; ``None`` when neither exists."""
    if os.environ.get("SKIN_CNN_CHROMIUM"):
        return Path(os.environ["SKIN_CNN_CHROMIUM"])
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: A photo with a clearly visible lesion and some background, from the shared public set.
PHOTO = "psoriasis"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(predictor):
    """``skin-cnn serve``'s app around ``predictor`` on a free local port; yields its URL."""
    import uvicorn

    from skin_cnn.serve.app import create_app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(predictor), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def server_url():
    from skin_cnn.inference.predictor import load_predictor

    with serving(load_predictor(os.environ.get("SKIN_CNN_SCREENSHOT_MODEL") or shared_run())) as url:
        yield url


@contextlib.contextmanager
def chromium_page(sync_api):
    """A page of a headless Chromium (skips the test when there is none)."""
    chromium = _system_chromium()
    if chromium is not None and not chromium.is_file():
        pytest.skip(f"{chromium} (SKIN_CNN_CHROMIUM) does not exist")
    with sync_api.sync_playwright() as p:
        if chromium is None and not Path(p.chromium.executable_path).is_file():
            pytest.skip(
                "no Chromium: apt-get install chromium, python -m playwright install chromium, "
                "or set SKIN_CNN_CHROMIUM"
            )
        browser = p.chromium.launch(
            executable_path=str(chromium) if chromium else None, args=CHROMIUM_ARGS
        )
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 900})
        finally:
            browser.close()


def _photo(public_derm):
    import pandas as pd

    if os.environ.get("SKIN_CNN_SCREENSHOT_PHOTO"):
        return Path(os.environ["SKIN_CNN_SCREENSHOT_PHOTO"])

    manifest = pd.read_csv(public_derm / "manifest.csv")
    rows = manifest[manifest["diagnosis"] == PHOTO]
    return public_derm / rows["image_path"].iloc[0]


def test_page_shows_prediction_crop_box_and_heat_maps_for_an_uploaded_photo(
    server_url, public_derm, tmp_path
):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed (the [browser] extra)"
    )
    photo = _photo(public_derm)
    shot = Path(os.environ.get("SKIN_CNN_SCREENSHOT") or tmp_path / "serve.png")
    with chromium_page(sync_api) as page:
        outside = []
        page.on(
            "request",
            lambda r: (
                outside.append(r.url)
                if not r.url.startswith((server_url, "data:", "blob:"))
                else None
            ),
        )
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server_url + "/")
        assert "not a medical device" in page.locator("#disclaimer").inner_text()
        page.wait_for_selector("input[name=task]", state="attached", timeout=15_000)
        assert page.locator("#synthetic-warning").count() == 0  # trained on photos, not the demo's
        page.wait_for_selector(
            "input[name=task][value=acne_vs_rosacea]", state="attached", timeout=15_000
        )
        questions = page.locator(".task-option-title").all_inner_texts()
        assert "If it is Psoriasis or Eczema: which one?" in questions

        # nothing is predicted until the user says which question they are asking
        page.set_input_files("#file-input", str(photo))
        sync_api.expect(page.locator("#status")).to_contain_text("Choose the question")
        assert page.locator("#results").is_hidden()

        page.check("input[name=task][value=all]")
        page.wait_for_selector(".task-result .gradcam img", timeout=45_000)
        cards = page.locator(".task-result")
        assert cards.count() == 3
        for i in range(3):
            text = cards.nth(i).inner_text()
            assert "If it is one of these two:" in text and "Threshold" in text
            assert "this model's cut-off of" in text  # the probability read against the cut-off
            assert cards.nth(i).locator(".predicted-class").inner_text().strip()
        assert "does not say whether either disease is present" in page.locator("#note").inner_text()
        assert page.locator(".gradcam img").count() == 3
        assert page.evaluate("document.querySelector('.gradcam img').naturalWidth") > 0
        assert page.evaluate("document.getElementById('photo').naturalWidth") > 0
        box = page.locator("#crop-box").bounding_box()
        frame = page.locator("#photo").bounding_box()
        assert box["width"] > 0 and box["width"] <= frame["width"] + 1
        assert "error" not in page.locator("#status").get_attribute("class")

        # choosing one task re-asks the server for that task only; the bar marks its threshold
        page.check("input[name=task][value=acne_vs_rosacea]")
        sync_api.expect(page.locator(".task-result")).to_have_count(1, timeout=30_000)
        sync_api.expect(page.locator(".task-result h2")).to_have_text(
            "If it is Acne or Rosacea: which one?"
        )
        info = page.evaluate("fetch('/api/info').then((r) => r.json())")
        threshold = info["tasks"]["acne_vs_rosacea"]["threshold"]
        left = page.locator(".bar-threshold").evaluate("(el) => el.style.left")
        assert float(left.rstrip("%")) == pytest.approx(100 * threshold)
        page.check("input[name=task][value=psoriasis_vs_eczema]")
        sync_api.expect(page.locator(".task-result h2")).to_have_text(
            "If it is Psoriasis or Eczema: which one?", timeout=30_000
        )
        page.wait_for_selector(".task-result .gradcam img", timeout=45_000)
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    assert errors == []
    assert outside == []  # the page works offline: nothing requested from anywhere else
    assert shot.stat().st_size > 10_000
    if os.environ.get("SKIN_CNN_SCREENSHOT"):  # for the docs: a 256-colour PNG is a third the size
        from PIL import Image

        Image.open(shot).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
            shot, optimize=True
        )


def test_the_page_of_a_model_trained_on_synthetic_images_says_so_beside_the_disclaimer():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed (the [browser] extra)"
    )
    from model_fixtures import plain_model

    from skin_cnn.inference.predictor import SYNTHETIC_MODEL_WARNING, Predictor
    from skin_cnn.models import with_model_info

    model = with_model_info(plain_model(), synthetic=True)
    with serving(Predictor(model, {"image_size": [32, 32], "crop": False})) as url, \
            chromium_page(sync_api) as page:
        page.goto(url + "/")
        page.wait_for_selector("#synthetic-warning", timeout=15_000)
        disclaimer = page.locator("#disclaimer").inner_text()
        assert "not a medical device" in disclaimer and SYNTHETIC_MODEL_WARNING in disclaimer
