"""The web API of ``skin-cnn serve``: answers, limits, content checks, privacy and concurrency."""

import asyncio
import base64
import builtins
import io
import logging
import os
import socket
import struct
import tempfile
import threading
import time
import zlib

import numpy as np
import pytest
from model_fixtures import plain_model, shared_run, write_photos
from serve_fakes import FakePredictor
from PIL import Image

from fastapi.testclient import TestClient

#: The server accepts only this computer's host names (``Host`` header; DNS rebinding).
LOCAL = "http://localhost"


@pytest.fixture(scope="module")
def predictor():
    from skin_cnn.inference.predictor import load_predictor

    return load_predictor(shared_run())


@pytest.fixture(scope="module")
def client(predictor):
    from skin_cnn.serve.app import create_app

    return TestClient(create_app(predictor, max_upload_bytes=3_000_000), base_url=LOCAL)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"), 2, seed=7)[1]


def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _header_only_png(width, height):
    """A PNG whose header claims ``width × height`` pixels and that holds no pixel data."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_healthz_and_info_describe_the_model(client, predictor):
    health = client.get("/healthz").json()
    assert health == {
        "status": "ok",
        "model": predictor.name,
        "tasks": list(predictor.tasks),
        "image_size": [32, 32],
    }
    info = client.get("/api/info").json()
    acne = info["tasks"]["acne_vs_rosacea"]
    assert (acne["positive"], acne["negative"]) == ("acne", "rosacea")
    assert acne["question"] == "If it is Acne or Rosacea: which one?"
    assert (acne["threshold"], acne["threshold_text"]) == (0.5, "0.5 (default)")
    assert info["max_upload_bytes"] == 3_000_000
    assert "not a medical device" in info["disclaimer"]


def test_prediction_matches_the_predictor_and_returns_crop_box_and_heat_maps(
    client, predictor, photo
):
    from skin_cnn.data.crop import hue_crop_box
    from skin_cnn.data.reading import read_image

    image = read_image(photo)
    expected = predictor.predict_images([image])
    response = client.post(
        "/api/predict?gradcam=true", files={"file": ("p.png", photo.read_bytes(), "image/png")}
    )
    assert response.status_code == 200
    answer = response.json()
    left, top, right, bottom = hue_crop_box(image)
    assert answer["crop_box"] == {"left": left, "top": top, "right": right, "bottom": bottom}
    assert answer["image"] == {"width": image.shape[1], "height": image.shape[0]}
    assert set(answer["tasks"]) == set(predictor.tasks)
    for task, result in answer["tasks"].items():
        p = float(expected[task][0])
        assert result["probability_positive"] == pytest.approx(p, abs=1e-6)
        assert result["predicted_class"] == (result["positive"] if p >= 0.5 else result["negative"])
        assert result["probability"] == pytest.approx(max(p, 1 - p), abs=1e-6)
        assert result["threshold"] == 0.5 and result["threshold_rule"] == "default"
        heat = Image.open(io.BytesIO(base64.b64decode(result["gradcam_png"])))
        assert heat.format == "PNG" and heat.mode == "RGB"
        # drawn on the photo (48×40), not on the 32×32 model input; caption below
        assert heat.size[0] >= image.shape[1] and heat.size[1] > image.shape[0]
    assert answer["threshold"] == 0.5
    assert "if the photo shows one of these two diseases, which one?" in answer["note"]


def test_form_fields_choose_one_task_and_no_heat_map(client, photo):
    response = client.post(
        "/api/predict",
        files={"file": ("p.png", photo.read_bytes(), "image/png")},
        data={"task": "psoriasis_vs_eczema", "gradcam": "false"},
    )
    assert response.status_code == 200
    tasks = response.json()["tasks"]
    assert (
        list(tasks) == ["psoriasis_vs_eczema"] and "gradcam_png" not in tasks["psoriasis_vs_eczema"]
    )
    bad = client.post(
        "/api/predict?task=warts", files={"file": ("p.png", photo.read_bytes(), "image/png")}
    )
    assert bad.status_code == 422 and "unknown task 'warts'" in bad.json()["detail"]


def test_a_model_answering_nan_is_a_server_error_not_a_negative_answer(photo):
    import keras

    from skin_cnn.inference.predictor import Predictor
    from skin_cnn.serve.app import create_app

    model = keras.models.load_model(shared_run() / "best.keras", compile=False)
    head = model.get_layer("psoriasis_vs_eczema")
    head.set_weights([np.full_like(w, np.nan) for w in head.get_weights()])
    poisoned = TestClient(create_app(Predictor(model, {"image_size": [32, 32], "crop": True})), base_url=LOCAL)
    for gradcam in ("false", "true"):
        response = poisoned.post("/api/predict", files={"file": ("p.png", photo.read_bytes(), "image/png")},
                                 data={"task": "psoriasis_vs_eczema", "gradcam": gradcam})
        assert response.status_code == 500 and "prediction failed on the server" in response.json()["detail"]


def test_a_bare_image_body_is_accepted(client, photo):
    response = client.post(
        "/api/predict", content=photo.read_bytes(), headers={"content-type": "image/png"}
    )
    assert response.status_code == 200 and len(response.json()["tasks"]) == 3


def test_uploads_over_the_limit_are_refused_even_without_a_content_length(predictor, photo):
    from skin_cnn.serve.app import create_app

    small = TestClient(create_app(predictor, max_upload_bytes=2_000), base_url=LOCAL)
    big = photo.read_bytes() + b"\0" * 5_000
    response = small.post("/api/predict", files={"file": ("p.png", big, "image/png")})
    assert response.status_code == 413 and "limit is 0.002 MB" in response.json()["detail"]

    def chunks():  # a chunked upload: no Content-Length to trust or distrust
        for _ in range(100):
            yield b"\0" * 1000

    response = small.post("/api/predict", content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413


def test_non_images_damaged_images_and_bombs_get_clear_statuses(predictor, client, photo):
    from skin_cnn.inference.predictor import Predictor
    from skin_cnn.serve.app import create_app

    def post(data, c=client):
        return c.post("/api/predict", files={"file": ("upload.jpg", data, "image/jpeg")})

    html = post(b"<html><body>502 Bad Gateway</body></html>")
    assert html.status_code == 415 and "not an image" in html.json()["detail"]
    truncated = post(photo.read_bytes()[:80])
    assert truncated.status_code == 422 and "truncated" in truncated.json()["detail"]
    bomb = post(_header_only_png(200_000, 200_000))
    assert bomb.status_code == 413 and "decompression bomb" in bomb.json()["detail"]

    strict = TestClient(
        create_app(Predictor(predictor.model, predictor.preprocessing, max_pixels=1_000)),
        base_url=LOCAL,
    )
    too_many_pixels = post(photo.read_bytes(), strict)  # 48 × 40 = 1920 pixels
    assert (
        too_many_pixels.status_code == 413
        and "exceeds the limit of 1,000" in too_many_pixels.json()["detail"]
    )
    assert (
        client.post(
            "/api/predict", content=b"x", headers={"content-type": "text/plain"}
        ).status_code
        == 415
    )
    assert (
        client.post("/api/predict", files={"other": ("a.png", b"x", "image/png")}).status_code
        == 422
    )


def test_uploads_are_never_written_to_disk(client, monkeypatch):
    """A 1.5 MB upload (over Starlette's 1 MB spooling threshold) opens no file for writing."""
    import starlette.formparsers

    noise = np.random.default_rng(0).integers(0, 256, size=(720, 720, 3), dtype=np.uint8)
    data = _png_bytes(noise)
    assert len(data) > 1_100_000
    from skin_cnn.inference.gradcam import overlay

    overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)))  # first matplotlib import may write caches
    written = []

    def refuse(*args, **kwargs):
        written.append(args)
        raise AssertionError("a temporary file was created")

    real_open, real_os_open = builtins.open, os.open

    def watching_open(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+"):
            written.append(file)
        return real_open(file, mode, *args, **kwargs)

    def watching_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            written.append(path)
        return real_os_open(path, flags, *args, **kwargs)

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", refuse)
    monkeypatch.setattr(builtins, "open", watching_open)
    monkeypatch.setattr(os, "open", watching_os_open)
    response = client.post(
        "/api/predict?gradcam=true", files={"file": ("big.png", data, "image/png")}
    )
    monkeypatch.undo()
    assert response.status_code == 200, response.text
    assert written == []


def test_file_names_and_image_content_never_reach_the_log(client, photo, caplog):
    secret = "jane-doe-1984-03-02"
    with caplog.at_level(logging.DEBUG):
        ok = client.post(
            "/api/predict?gradcam=true",
            files={"file": (f"{secret}.png", photo.read_bytes(), "image/png")},
        )
        bad = client.post(
            "/api/predict",
            files={"file": (f"{secret}.jpg", b"GIF89a" + secret.encode(), "image/gif")},
        )
    assert ok.status_code == 200 and bad.status_code in (415, 422)
    assert any("predict" in r.getMessage() for r in caplog.records)  # the log does say something
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert secret not in logged and "jane" not in logged
    assert secret not in bad.text


def test_docs_page_and_openapi_work_offline(client):
    spec = client.get("/openapi.json").json()
    assert "/api/predict" in spec["paths"] and "/healthz" in spec["paths"]
    page = client.get("/docs")
    assert page.status_code == 200 and "openapi.json" in page.text
    assert "cdn" not in page.text.lower()
    index = client.get("/")
    assert "not a medical device" in index.text
    assert (
        "http://" not in index.text and "https://" not in index.text
    )  # nothing fetched from outside
    assert index.headers["x-content-type-options"] == "nosniff"


def test_serve_binds_to_loopback_unless_told_otherwise():
    from skin_cnn.cli.serve_cmd import command

    defaults = {p.name: p.default for p in command.params}
    assert defaults["host"] == "127.0.0.1" and defaults["max_upload_mb"] == 10.0


def test_serve_hands_its_limits_and_hosts_to_the_app(monkeypatch, tmp_path):
    import types

    import uvicorn
    from click.testing import CliRunner

    import skin_cnn.inference.predictor as predictor_module
    import skin_cnn.serve.app as app_module
    from skin_cnn.cli import cli

    seen = {}
    fake = FakePredictor()
    fake.precision = types.SimpleNamespace(describe=lambda: "float32")
    fake.thresholds = {t: types.SimpleNamespace(describe=lambda: "0.5") for t in fake.tasks}
    fake.preprocessing = types.SimpleNamespace(describe=lambda: "stretch")
    fake.preprocessing_source = "test"

    def load(model, max_pixels, precision):
        seen["load"] = (max_pixels, precision)
        return fake

    monkeypatch.setattr(predictor_module, "load_predictor", load)
    monkeypatch.setattr(app_module, "create_app", lambda predictor, **kw: seen.setdefault("app", kw))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.setdefault("run", kw))
    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--port", "8123", "--max-upload-mb", "2.5",
                                          "--max-megapixels", "3", "--workers", "3", "--max-concurrent-uploads",
                                          "5", "--body-timeout", "9", "--allowed-host", "example.org",
                                          "--precision", "float32"])
    assert result.exit_code == 0, result.output
    assert seen["load"] == (3_000_000, "float32")
    app = seen["app"]
    assert (app["max_upload_bytes"], app["workers"], app["max_concurrent_uploads"]) == (2_500_000, 3, 5)
    assert app["body_limits"].timeout == 9.0
    assert "example.org" in app["allowed_hosts"] and "localhost" in app["allowed_hosts"]
    assert (seen["run"]["host"], seen["run"]["port"]) == ("127.0.0.1", 8123)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fifty_concurrent_requests_on_a_real_server_all_succeed(predictor, photo):
    import httpx

    from skin_cnn.serve.app import BodyLimits, create_app

    # The client's event loop, the server's and its predicting threads share one process (and
    # one GIL) here, so a loaded machine can delay a body by seconds on either side; the rate
    # rule has its own tests, and this one gives it room: it checks concurrency, not slow clients.
    app = create_app(predictor, body_limits=BodyLimits(timeout=120, grace=60))
    server, thread, port = _start_server(app)
    data = photo.read_bytes()

    async def burst():
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits
        ) as http:
            requests = [
                http.post(
                    "/api/predict",
                    params={"gradcam": str(i % 2 == 0).lower()},
                    files={"file": ("p.png", data, "image/png")},
                )
                for i in range(50)
            ]
            responses = await asyncio.gather(*requests)
            health = await http.get("/healthz")
        return responses, health

    try:
        responses, health = asyncio.run(burst())
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert [r.status_code for r in responses] == [200] * 50
    first = responses[0].json()["tasks"]["acne_vs_rosacea"]["probability_positive"]
    assert all(
        r.json()["tasks"]["acne_vs_rosacea"]["probability_positive"]
        == pytest.approx(first, abs=1e-6)
        for r in responses
    )
    assert health.status_code == 200


# ---------------------------------------------------------------------------------------------
# formats outside the allow-list, bounded memory, first frames only


def test_eps_and_heic_uploads_are_refused_as_formats_not_as_damage(client):
    def post(data):
        return client.post("/api/predict", files={"file": ("photo.jpg", data, "image/jpeg")})

    eps = post(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\n%%EOF\n"
    )
    assert eps.status_code == 415 and "PostScript" in eps.json()["detail"]
    heic = post(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(4000))
    assert heic.status_code == 415
    assert "HEIC" in heic.json()["detail"] and "convert" in heic.json()["detail"]


SERVER = """
import sys, time, tracemalloc
sys.path.insert(0, sys.argv[4])
import uvicorn
from serve_fakes import FakePredictor
from skin_cnn.serve.app import create_app

app = create_app(FakePredictor(delay=float(sys.argv[3])), max_upload_bytes=2_500_000, workers=1,
                 max_concurrent_uploads=int(sys.argv[2]))

@app.get("/peak-traced-bytes")
def peak():
    return {"peak": tracemalloc.get_traced_memory()[1]}

from PIL import Image

Image.init()  # plugins imported before measuring
tracemalloc.start()
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _burst_of_junk_uploads(slots, n=40, size=2_000_000, delay=0.05):
    """Start a server in its own process, send ``n`` concurrent ``size``-byte junk uploads.

    Returns the status codes and the server's peak Python heap (``tracemalloc``) over the burst.
    """
    import subprocess
    import sys

    import httpx

    port = _free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), str(slots), str(delay), here],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        junk = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()

        async def burst():
            limits = httpx.Limits(max_connections=n)
            async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
                requests = [
                    http.post("/api/predict", content=junk, headers={"content-type": "image/jpeg"})
                    for _ in range(n)
                ]
                return await asyncio.gather(*requests)

        statuses = [r.status_code for r in asyncio.run(burst())]
        peak = httpx.get(f"{base}/peak-traced-bytes", timeout=10).json()["peak"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return statuses, peak


@pytest.mark.slow
def test_concurrent_uploads_are_bounded_in_memory():
    # 40 junk uploads of 2 MB at once (80 MB of bodies) against a server that holds at most two
    # in memory. Unbounded, every body is read while earlier ones wait for the one worker:
    # a peak of at least 40 × 2 MB. Bounded: two bodies with one copy each (8 MB) plus the
    # server's read buffers of the 38 waiting connections (at most a few hundred kB each).
    statuses, peak = _burst_of_junk_uploads(slots=2)
    assert statuses == [415] * 40
    assert peak < 30e6, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.slow
def test_the_memory_measurement_sees_unbounded_uploads():
    # The same burst with room for all 40: the measurement must show the 80 MB of bodies,
    # or the bounded test above could not fail.
    statuses, peak = _burst_of_junk_uploads(slots=40)
    assert statuses == [415] * 40
    assert peak > 60e6, f"peak {peak / 1e6:.0f} MB"


def test_a_gif_of_660000_frames_is_answered_from_its_first_frame_without_stalling():
    from skin_cnn.serve.app import create_app

    import test_reading

    gif = test_reading._many_frame_gif(660_000)  # 9.9 MB: under the 10 MB default limit
    http = TestClient(create_app(FakePredictor()), base_url=LOCAL)
    started = time.perf_counter()
    answer = http.post("/api/predict", files={"file": ("a.gif", gif, "image/gif")})
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200
    assert answer.json()["image"] == {"width": 1, "height": 1}
    assert elapsed < 2.0, f"{elapsed:.1f} s"  # walking every frame header took 2–8 s


def test_max_concurrent_uploads_defaults_to_twice_the_workers():
    from skin_cnn.cli.serve_cmd import command
    from skin_cnn.serve.app import create_app

    assert create_app(FakePredictor(), workers=3).state.max_concurrent_uploads == 6
    assert create_app(FakePredictor(), workers=3, max_concurrent_uploads=1).state.max_concurrent_uploads == 1
    assert "max_concurrent_uploads" in {p.name for p in command.params}


def test_answers_use_the_models_stored_thresholds_and_say_what_they_mean(tmp_path, photo):
    """Thresholds on the far side of each probability flip every answer 0.5 would give."""
    from skin_cnn.core.tasks import TASKS
    from skin_cnn.models import store_thresholds
    from skin_cnn.inference.predictor import load_predictor
    from skin_cnn.serve.app import create_app

    path = tmp_path / "m.keras"
    plain_model().save(path)
    preprocessing = {"image_size": [32, 32], "crop": False}
    first = load_predictor(path, preprocessing=preprocessing)
    p = {t: float(v[0]) for t, v in first.predict_images([first.read(photo)]).items()}
    flipped = {t: (v + 1.0) / 2 if v >= 0.5 else v / 2 for t, v in p.items()}
    store_thresholds(path, {t: {"value": v, "rule": "youden", "method": "val"}
                            for t, v in flipped.items()}, preprocessing=preprocessing)
    client = TestClient(create_app(load_predictor(path)), base_url=LOCAL)

    info = client.get("/api/info").json()
    assert info["tasks"]["ctcl_vs_eczema"]["question"] == "If it is CTCL or Eczema: which one?"
    assert info["tasks"]["ctcl_vs_eczema"]["threshold"] == pytest.approx(flipped["ctcl_vs_eczema"])
    assert info["tasks"]["ctcl_vs_eczema"]["threshold_text"] == f"{flipped['ctcl_vs_eczema']:.3g} (val)"

    answer = client.post("/api/predict", files={"file": ("p.png", photo.read_bytes(), "image/png")},
                         data={"gradcam": "true"}).json()
    assert answer["threshold"] is None  # the three thresholds differ
    assert answer["thresholds"] == pytest.approx(flipped)
    for task, result in answer["tasks"].items():
        expected = TASKS[task].negative if p[task] >= 0.5 else TASKS[task].positive
        assert result["predicted_class"] == expected
        assert result["threshold"] == pytest.approx(flipped[task])
        assert result["probability_positive"] == pytest.approx(p[task], abs=1e-6)
        assert result["answer"].startswith(result["question"])
        assert result["answer"].endswith(expected.capitalize() if expected != "ctcl" else "CTCL")
        # the answer reads right beside the cut-off: flipped cut-offs answer the negative class
        cut, prob = f"{flipped[task]:.0%}", f"{p[task]:.0%}"
        side = "below" if expected == TASKS[task].negative else "above"
        assert result["reading"].split(" — ")[1].startswith(f"{side} this model's cut-off of ")
        if cut != prob:
            assert result["reading"] == (f"{prob} — {side} this model's cut-off of {cut} for "
                                         f"{'CTCL' if TASKS[task].positive == 'ctcl' else TASKS[task].positive}")
        assert Image.open(io.BytesIO(base64.b64decode(result["gradcam_png"]))).size[1] > 40


# ---------------------------------------------------------------------------------------------
# slow clients, foreign hosts, two files


def _start_server(app):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    return server, thread, port


def _trickle(port, stop, answers):
    """Open an upload of a 1000-byte body and send it one byte at a time, 5 bytes a second."""
    head = (
        "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(head)
        conn.settimeout(0.2)
        reply = b""
        for _ in range(1000):
            if stop.is_set():
                break
            try:
                conn.sendall(b"x")
                reply += conn.recv(4096)
                if reply:
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        answers.append(reply.split(b"\r\n", 1)[0].decode("latin-1"))


def test_four_trickling_clients_get_408_and_free_their_slots_for_a_normal_upload(photo):
    import httpx

    from skin_cnn.serve.app import BodyLimits, create_app

    # Four upload slots, all taken by clients sending 5 bytes a second. Without a rate rule the
    # normal upload waits as long as they trickle (here until the test stops them: a timeout).
    app = create_app(FakePredictor(), max_concurrent_uploads=4,
                     body_limits=BodyLimits(timeout=60, grace=1.0, min_rate=1000))
    server, thread, port = _start_server(app)
    stop, answers = threading.Event(), []
    slow = [threading.Thread(target=_trickle, args=(port, stop, answers)) for _ in range(4)]
    try:
        for t in slow:
            t.start()
        time.sleep(0.5)  # the four hold every slot
        try:
            normal = httpx.post(f"http://127.0.0.1:{port}/api/predict", timeout=20,
                                files={"file": ("p.png", photo.read_bytes(), "image/png")})
        finally:
            stop.set()
            for t in slow:
                t.join(timeout=30)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert normal.status_code == 200
    assert sorted(answers) == ["HTTP/1.1 408 Request Timeout"] * 4


def test_a_client_sending_nothing_is_cut_off_at_the_deadline():
    import anyio

    from skin_cnn.serve.app import BodyLimits, UploadError, read_upload

    class Silent:
        headers = {"content-type": "image/png"}

        async def stream(self):
            yield b"\x89PNG"
            await anyio.sleep(30)
            yield b"never"

    async def read():
        started = time.monotonic()
        with pytest.raises(UploadError) as error:
            await read_upload(Silent(), 1000, BodyLimits(timeout=0.3, grace=0.3, min_rate=1))
        return error.value, time.monotonic() - started

    error, elapsed = anyio.run(read)
    assert error.status == 408 and "too slow" in error.message
    assert elapsed < 10  # not the 30 s the client would have taken


def test_requests_naming_another_host_are_refused(photo):
    from skin_cnn.cli.serve_cmd import accepted_hosts
    from skin_cnn.serve.app import create_app

    app = create_app(FakePredictor())
    for host, status in [("localhost", 200), ("127.0.0.1:8000", 200), ("[::1]:8000", 200),
                         ("attacker.example:8000", 400), ("localhost.attacker.example", 400)]:
        answer = TestClient(app, base_url=f"http://{host}").get("/healthz")
        assert answer.status_code == status, host
    assert "*" not in accepted_hosts("127.0.0.1")
    assert accepted_hosts("0.0.0.0") == ("*",)
    assert accepted_hosts("0.0.0.0", ("lab-pc",)) == ("lab-pc",)
    assert "lab-pc" in accepted_hosts("localhost", ("lab-pc",))


def test_two_file_parts_in_one_form_are_refused(client, photo):
    data = photo.read_bytes()
    answer = client.post("/api/predict", files=[("file", ("a.png", data, "image/png")),
                                                ("file", ("b.png", data, "image/png"))])
    assert answer.status_code == 400 and "one photo" in answer.json()["detail"]
