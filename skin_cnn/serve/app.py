"""The FastAPI application behind ``skin-cnn serve``: a local web page and a JSON API.

Safety rules, each enforced here rather than left to the web framework's defaults:

* **Uploads stay in memory.** The request body is read chunk by chunk from ``request.stream()``
  and the multipart form is parsed in memory (``python_multipart``), so a photo never touches the
  disk (Starlette's own form parser spools parts over 1 MB to a temporary file).
* **Size limit while reading.** A declared ``Content-Length`` over the limit is refused at once;
  the bytes actually received are counted as well, so a chunked upload or a lying header is
  stopped as soon as it passes the limit: ``413``.
* **No slot held by a slow client.** Reading a body has a deadline (``BodyLimits.timeout``)
  and, after a short grace period, a minimum average rate (``BodyLimits.min_rate``): a client
  trickling its upload, or sending nothing at all, gets ``408`` and its upload slot goes to the
  next request, so a few slow connections cannot shut the page out for everyone.
* **Local hosts only.** Requests whose ``Host`` header names another host are refused (``400``,
  Starlette's ``TrustedHostMiddleware``): a web page on another site cannot reach the local
  server through a domain name re-pointed at 127.0.0.1 (DNS rebinding).
* **One photo per upload.** A form with two ``file`` parts is refused (``400``) rather than
  answered for one of them.
* **Content, not names.** Whether an upload is an image is decided by decoding it
  (:func:`skin_cnn.data.reading.read_image`): ``415`` for something that is not an image,
  ``422`` for a damaged one, ``413`` for one with more pixels than the limit (a decompression
  bomb is refused before it is decoded).
* **Nothing personal in logs.** File names and image content are never logged; the log says how
  long a prediction took and its status, nothing else.
* **Bounded memory.** At most ``max_concurrent_uploads`` request bodies are held in memory at a
  time; further requests wait *before* their body is read (uvicorn stops reading a waiting
  connection once 64 KiB of its body are buffered), so a burst of large uploads costs about
  ``max_concurrent_uploads × max_upload_bytes`` (times two for the copy made while reading),
  however many clients send at once. Only the first frame of a multi-frame file is ever parsed
  (:mod:`skin_cnn.data.reading`), so a small GIF with hundreds of thousands of frames cannot
  hold a worker for seconds.
* **One model, shared.** The model is loaded once; model calls run one at a time (the
  :class:`skin_cnn.inference.predictor.Predictor` lock) and decoding runs in at most ``workers`` threads, so
  a burst of requests queues instead of exhausting memory.
"""

from __future__ import annotations

import base64
import copy
import io
import logging
import time
from dataclasses import dataclass
from importlib import resources

import anyio
from fastapi import FastAPI, Query, Request
from starlette.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from python_multipart.multipart import MultipartParser, parse_options_header

from skin_cnn import __version__
from skin_cnn.data.preprocessing import PhotoSizeError
from skin_cnn.data.reading import ImageReadError
from skin_cnn.core.tasks import TASKS, resolve_task
# what every task's answer means, in the words `skin-cnn predict` uses (the module loads no TensorFlow)
from skin_cnn.inference.predictor import CONDITIONAL_NOTE, SYNTHETIC_MODEL_WARNING

logger = logging.getLogger("skin_cnn.serve")

DISCLAIMER = (
    "skin-cnn is a research tool, not a medical device. Its output is not a diagnosis and must "
    "not be used to make clinical decisions."
)

#: Room for the multipart boundaries, part headers and small form fields around the file.
MULTIPART_OVERHEAD = 64 * 1024
#: Longest accepted value of a text form field (``task``, ``gradcam``).
MAX_FIELD_BYTES = 256
#: Most parts accepted in one multipart body.
MAX_PARTS = 8
#: Longer side of the Grad-CAM pictures the API returns; larger photos are shrunk to it first.
GRADCAM_MAX_SIDE = 1024

_STATIC = resources.files("skin_cnn.serve") / "static"

#: Host names a page served on this computer is reached by (the ``Host`` header, port aside).
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class BodyLimits:
    """How long and how slowly a client may send a request body before it gets ``408``.

    Attributes
    ----------
    timeout : float
        Seconds from the first read of the body to its last byte.
    grace : float
        Seconds before the rate rule applies (connection start-up, a first slow packet).
    min_rate : float
        Least average bytes per second after ``grace``: a client below it holds an upload slot
        while sending almost nothing, so it is cut off (``received >= min_rate × (t − grace)``).
    """

    timeout: float = 60.0
    grace: float = 2.0
    min_rate: float = 1000.0

    def deadline(self, started, received):
        """Monotonic time by which more bytes must arrive (the earlier of both rules)."""
        return started + min(self.timeout, self.grace + received / self.min_rate)


class UploadError(Exception):
    """A request the API refuses; ``status`` is the HTTP status, ``message`` what to tell the user."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _megabytes(n):
    return f"{n / 1e6:g} MB"


# ---------------------------------------------------------------------------------------------
# reading the upload


class _FormCollector:
    """Callbacks for ``python_multipart.MultipartParser`` keeping the parts in memory."""

    def __init__(self, max_file_bytes):
        self.max_file_bytes = max_file_bytes
        self.fields = {}
        self.file = None
        self.n_parts = 0
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers = {}
        self._name = None
        self._is_file = False
        self._data = bytearray()

    def callbacks(self):
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self):
        self.n_parts += 1
        if self.n_parts > MAX_PARTS:
            raise UploadError(422, f"too many form fields (at most {MAX_PARTS})")
        self._headers, self._name, self._is_file, self._data = {}, None, False, bytearray()

    def on_header_field(self, data, start, end):
        self._header_field += data[start:end]

    def on_header_value(self, data, start, end):
        self._header_value += data[start:end]

    def on_header_end(self):
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field, self._header_value = bytearray(), bytearray()

    def on_headers_finished(self):
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("latin-1")
        self._is_file = b"filename" in options  # the name itself is never kept

    def on_part_data(self, data, start, end):
        limit = self.max_file_bytes if self._is_file else MAX_FIELD_BYTES
        if len(self._data) + (end - start) > limit:
            if self._is_file:
                raise UploadError(413, f"upload too large: the limit is {_megabytes(limit)}")
            raise UploadError(422, f"form field {self._name!r} is too long")
        self._data += data[start:end]

    def on_part_end(self):
        if self._name == "file":
            if self.file is not None:
                raise UploadError(400, "send one photo per request: the form has two 'file' parts")
            self.file = bytes(self._data)
        elif not self._is_file and self._name:
            self.fields[self._name] = bytes(self._data).decode("utf-8", errors="replace")
        self._data = bytearray()


def check_headers(request, max_bytes):
    """Refuse a request from its headers alone: wrong content type (415), declared size (413).

    Called before a request waits for an upload slot, so that what can be refused at once is.

    Returns
    -------
    multipart : bool
    options : dict
        The ``Content-Type`` parameters (the multipart boundary).
    limit : int
        Most body bytes accepted (the upload limit plus room for the form around it).
    """
    content_type = request.headers.get("content-type", "")
    kind, options = parse_options_header(content_type)
    kind = kind.decode("latin-1").lower()
    multipart = kind == "multipart/form-data"
    if not multipart and not (kind.startswith("image/") or kind == "application/octet-stream"):
        raise UploadError(
            415, "send the photo as multipart/form-data (field 'file') or as an image body"
        )
    limit = max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"upload too large: the limit is {_megabytes(max_bytes)}")
    return multipart, options, limit


async def _chunks(request, limits):
    """The body chunks of ``request``, each awaited no later than ``limits`` allow (else 408)."""
    stream = request.stream().__aiter__()
    started = time.monotonic()
    received = 0
    while True:
        wait = limits.deadline(started, received) - time.monotonic()
        try:
            with anyio.fail_after(max(wait, 0.0)):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            await stream.aclose()
            raise UploadError(
                408, f"upload too slow: the photo must arrive within {limits.timeout:g} s, at "
                f"{limits.min_rate:g} bytes/s or faster"
            ) from None
        received += len(chunk)
        yield chunk


async def read_upload(request, max_bytes, limits=BodyLimits()):
    """Read the uploaded image of a request into memory, enforcing the size limit while reading.

    Accepts ``multipart/form-data`` with the image in the field ``file`` (other text fields are
    returned), or a bare image body (``image/*`` or ``application/octet-stream``).

    Returns
    -------
    data : bytes
    fields : dict of str -> str

    Raises
    ------
    UploadError
        408 for a body arriving too slowly (``limits``), 400 for two files, 413 over the limit,
        415 for an unsupported content type, 422 for a malformed form or a missing file.
    """
    multipart, options, limit = check_headers(request, max_bytes)
    collector = parser = None
    body = bytearray()
    if multipart:
        boundary = options.get(b"boundary")
        if not boundary:
            raise UploadError(422, "multipart/form-data without a boundary")
        collector = _FormCollector(max_bytes)
        parser = MultipartParser(boundary, collector.callbacks())
    received = 0
    async for chunk in _chunks(request, limits):
        received += len(chunk)
        if received > limit:
            raise UploadError(413, f"upload too large: the limit is {_megabytes(max_bytes)}")
        if parser is not None:
            try:
                parser.write(chunk)
            except UploadError:
                raise
            except Exception as exc:  # noqa: BLE001 (parse errors share no base)
                raise UploadError(422, f"malformed multipart body ({type(exc).__name__})") from None
        else:
            body += chunk
    if parser is None:
        if not body:
            raise UploadError(422, "empty upload")
        return bytes(body), {}
    try:
        parser.finalize()
    except Exception as exc:  # noqa: BLE001 (as above)
        raise UploadError(422, f"malformed multipart body ({type(exc).__name__})") from None
    if collector.file is None:
        raise UploadError(422, "no file: send the photo in the form field 'file'")
    if not collector.file:
        raise UploadError(422, "the uploaded file is empty")
    return collector.file, collector.fields


# ---------------------------------------------------------------------------------------------
# prediction


def _status_for(error):
    """HTTP status for an :class:`ImageReadError` (bombs 413, non-images 415, damaged 422)."""
    reason = error.reason
    if "decompression bomb" in reason or reason.startswith("image too large"):
        return 413
    if reason.startswith(("not an image file", "format not accepted")):
        return 415
    return 422


def _png_base64(array):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _task_meta(predictor, task):
    """``(positive, negative, TaskThreshold)`` of a task, from the predictor when it knows them."""
    from skin_cnn.inference.predictor import TaskThreshold

    spec = TASKS.get(task)
    default = (spec.positive, spec.negative) if spec else ("positive", "negative")
    positive, negative = getattr(predictor, "classes", {}).get(task, default)
    threshold = getattr(predictor, "thresholds", {}).get(task) or TaskThreshold()
    return positive, negative, threshold


def synthetic_warning(predictor):
    """:data:`~skin_cnn.inference.predictor.SYNTHETIC_MODEL_WARNING` when the model was trained on
    the demo's synthetic images (``ModelInfo.synthetic``), else None: the page shows it beside the
    disclaimer and every JSON answer carries it."""
    return SYNTHETIC_MODEL_WARNING if getattr(predictor, "synthetic", False) else None


def task_description(predictor, task):
    """What the page and the API say about a task: classes, question and threshold."""
    from skin_cnn.inference.predictor import task_question

    positive, negative, threshold = _task_meta(predictor, task)
    return {
        "positive": positive,
        "negative": negative,
        "question": task_question(positive, negative),
        "threshold": threshold.value,
        "threshold_rule": threshold.rule,
        "threshold_method": threshold.method,
        "threshold_text": threshold.describe(),
    }


def predict_upload(predictor, data, tasks, gradcam=False, threshold=None):
    """Decode, crop, resize and predict one uploaded photo held in memory; the API's answer.

    Parameters
    ----------
    threshold : float, optional
        One threshold for every task instead of the model's own (stored in the model, else 0.5).

    Returns
    -------
    dict
        ``image`` (width, height of the decoded photo), ``crop_box`` (left, top, right, bottom in
        its pixels), ``input_size``, ``note`` (:data:`CONDITIONAL_NOTE`), ``thresholds`` (per
        task), ``threshold`` (their common value, or None when they differ), and per task
        ``positive``, ``negative``, ``question``, ``answer``, ``reading`` (the positive class's
        probability against the cut-off, :func:`skin_cnn.inference.predictor.cutoff_reading`),
        ``probability_positive``, ``predicted_class``, ``probability`` (of the predicted class), ``threshold`` with its
        ``threshold_rule``, ``threshold_method`` and ``threshold_text``, and, with ``gradcam``,
        ``gradcam_png``: base64 PNG of the heat map on the whole photo (shrunk to
        :data:`GRADCAM_MAX_SIDE` when larger), captioned, with a colour bar.
    """
    from skin_cnn.inference.predictor import TaskThreshold, cutoff_reading, display_class

    try:
        image = predictor.read(data, name="upload")
    except ImageReadError as exc:
        raise UploadError(_status_for(exc), exc.reason) from None
    try:
        tensor, box = predictor.preprocess(image)
    except PhotoSizeError as exc:
        raise UploadError(422, str(exc)) from None
    except ValueError as exc:
        raise UploadError(422, f"cannot preprocess the image ({exc})") from None
    pictures = {}
    if gradcam:
        pictures, probs = predictor.explain_photo(image, tasks, max_side=GRADCAM_MAX_SIDE,
                                                  prepared=(tensor, box))
        probs = {task: [p] for task, p in probs.items()}
    else:
        probs = predictor.predict_tensors(tensor[None])
    described = {task: task_description(predictor, task) for task in tasks}
    if threshold is not None:
        fixed = TaskThreshold(float(threshold), "fixed", "given")
        for entry in described.values():
            entry.update(threshold=fixed.value, threshold_rule=fixed.rule,
                         threshold_method=fixed.method, threshold_text=fixed.describe())
    values = {described[task]["threshold"] for task in tasks}
    answer = {
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "crop_box": dict(zip(("left", "top", "right", "bottom"), (int(v) for v in box))),
        "input_size": {"height": predictor.image_size[0], "width": predictor.image_size[1]},
        "note": CONDITIONAL_NOTE,
        "threshold": values.pop() if len(values) == 1 else None,
        "thresholds": {task: described[task]["threshold"] for task in tasks},
        "tasks": {},
    }
    for task in tasks:
        p = float(probs[task][0])
        entry = described[task]
        is_positive = p >= entry["threshold"]
        predicted = entry["positive"] if is_positive else entry["negative"]
        entry.update(
            answer=f"{entry['question']} → {display_class(predicted)}",
            reading=cutoff_reading(p, entry["threshold"], entry["positive"]),
            probability_positive=p,
            predicted_class=predicted,
            probability=p if is_positive else 1.0 - p,
        )
        if gradcam:
            entry["gradcam_png"] = _png_base64(pictures[task])
        answer["tasks"][task] = entry
    return answer


def _truthy(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------------------
# the application


def create_app(predictor, *, max_upload_bytes=10_000_000, workers=2, max_concurrent_uploads=None,
               body_limits=BodyLimits(), allowed_hosts=LOCAL_HOSTS):
    """Build the FastAPI application around a loaded :class:`skin_cnn.inference.predictor.Predictor`.

    Parameters
    ----------
    predictor : skin_cnn.inference.predictor.Predictor
        Loaded once and shared by every request.
    max_upload_bytes : int
        Largest accepted upload (413 above it).
    workers : int
        Requests decoding or predicting at the same time; the rest wait their turn.
    max_concurrent_uploads : int, optional
        Requests whose body is held in memory at the same time, from the first byte read to the
        answer (default ``2 * workers``: one batch being decoded, the next one read). Others wait
        before their body is read, so memory stays bounded by about this many uploads however
        many clients send at once.
    body_limits : BodyLimits
        Deadline and least rate for reading a body; a slower client gets 408 and frees its slot.
    allowed_hosts : sequence of str
        Accepted ``Host`` header names (port aside; ``"*"`` accepts any). The default, this
        computer's own names, refuses requests sent through another domain (DNS rebinding).
    """
    app = FastAPI(
        title="skin-cnn",
        version=__version__,
        description=f"Local prediction API for a trained skin-cnn model. {DISCLAIMER}",
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN; /docs below works offline
        redoc_url=None,
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.state.predictor = predictor
    app.state.max_upload_bytes = int(max_upload_bytes)
    workers = max(1, int(workers))
    slots = max(1, int(max_concurrent_uploads if max_concurrent_uploads is not None else 2 * workers))
    app.state.max_concurrent_uploads = slots
    study_order = {task: i for i, task in enumerate(TASKS)}
    tasks_available = tuple(sorted(predictor.tasks, key=lambda t: study_order.get(t, len(TASKS))))

    _add_security(app)
    _add_pages(app, predictor, tasks_available)
    _add_predict(app, predictor, tasks_available,
                 _Capacity(anyio.CapacityLimiter(workers), anyio.Semaphore(slots), body_limits))
    app.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")
    return app


@dataclass(frozen=True)
class _Capacity:
    """What bounds the server's work and memory: predicting ``workers`` at a time, holding
    ``upload_slots`` bodies at a time, and how slowly a body may arrive."""

    limiter: object
    upload_slots: object
    body_limits: BodyLimits


def _add_security(app):
    """Security headers on every answer, and an :class:`UploadError` answered as its JSON status."""

    @app.middleware("http")
    async def security_headers(request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'",
        )
        return response

    @app.exception_handler(UploadError)
    async def upload_error(request, exc):
        logger.info("%s %s -> %d", request.method, request.url.path, exc.status)
        return JSONResponse({"detail": exc.message}, status_code=exc.status)


def _add_pages(app, predictor, tasks_available):
    """The web page, the API page, the liveness check and the model's description."""

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(str(_STATIC / "index.html"), media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return FileResponse(str(_STATIC / "api.html"), media_type="text/html")

    @app.get("/healthz", summary="Liveness check")
    async def healthz():
        """`{"status": "ok"}` with the model's name, tasks and input size."""
        return {
            "status": "ok",
            "model": predictor.name,
            "tasks": list(predictor.tasks),
            "image_size": list(predictor.image_size),
        }

    @app.get("/api/info", summary="Model, tasks and limits")
    async def info():
        """What the page needs: the tasks with their classes, conditional question and
        threshold, what the answers mean, the upload limit, the disclaimer."""
        preprocessing = predictor.preprocessing
        return {
            "model": predictor.name,
            "version": __version__,
            "tasks": {t: task_description(predictor, t) for t in tasks_available},
            "note": CONDITIONAL_NOTE,
            "image_size": list(predictor.image_size),
            "crop": preprocessing["crop"] if isinstance(preprocessing, dict) else preprocessing.crop,
            "preprocessing_source": getattr(predictor, "preprocessing_source", None),
            "max_upload_bytes": app.state.max_upload_bytes,
            "disclaimer": DISCLAIMER,
            "synthetic_model": synthetic_warning(predictor),
        }


#: The body ``POST /api/predict`` takes, for the OpenAPI description (the handler reads the raw
#: request itself, so FastAPI cannot infer it).
_PREDICT_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "the photo",
                        },
                        "task": {"type": "string", "description": "a task name or 'all'"},
                        "gradcam": {
                            "type": "boolean",
                            "description": "include Grad-CAM overlays",
                        },
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _add_predict(app, predictor, tasks_available, capacity):
    """``POST /api/predict``: one photo in, every requested task's answer out."""

    @app.post("/api/predict", summary="Predict one photo", openapi_extra=copy.deepcopy(_PREDICT_REQUEST_BODY))
    async def api_predict(
        request: Request,
        task: str = Query("all", description="A task name or 'all'."),
        gradcam: bool = Query(
            False, description="Include a Grad-CAM overlay per task (base64 PNG)."
        ),
    ):
        """Predict the tasks for an uploaded photo.

        Each task answers only "if the photo shows one of these two diseases, which one?" (the
        `note` and each task's `question` say so). Answers per task the predicted class at the
        task's `threshold` (fitted and stored in the model, else 0.5), its
        probability and the positive-class probability, the hue-crop box in the photo's pixels
        and, with `gradcam=true`, a base64 PNG of the Grad-CAM heat map on the photo, captioned,
        with a colour bar. Form fields `task` and `gradcam` override the query parameters.
        400: two files in one form; 408: body sent too slowly; 413: too large; 415: not an image;
        422: damaged image or malformed request.
        """
        started = time.perf_counter()
        check_headers(request, app.state.max_upload_bytes)
        # The whole request, from reading the body to the answer, holds one slot: the body is in
        # memory until then. Waiting requests have not been read yet.
        async with capacity.upload_slots:
            return await _predict_request(request, task, gradcam, started)

    async def _predict_request(request, task, gradcam, started):
        data, fields = await read_upload(request, app.state.max_upload_bytes, capacity.body_limits)
        task = fields.get("task", task)
        gradcam = _truthy(fields["gradcam"]) if "gradcam" in fields else gradcam
        try:
            tasks = resolve_task(task)
        except ValueError as exc:
            raise UploadError(422, str(exc)) from None
        tasks = tuple(t for t in tasks if t in tasks_available)
        if not tasks:
            raise UploadError(422, f"the model has no output for task {task!r}")
        try:
            answer = await anyio.to_thread.run_sync(
                predict_upload, predictor, data, tasks, gradcam, limiter=capacity.limiter
            )
        except UploadError:
            raise
        except Exception as exc:  # noqa: BLE001 (never echo the upload; name the kind of failure)
            logger.error("predict failed: %s", type(exc).__name__)
            raise UploadError(500, "prediction failed on the server; see the server log") from None
        answer["model"] = predictor.name
        answer["disclaimer"] = DISCLAIMER
        answer["synthetic_model"] = synthetic_warning(predictor)
        logger.info(
            "predict: %d task(s), gradcam=%s, %.0f ms",
            len(tasks),
            gradcam,
            1000 * (time.perf_counter() - started),
        )
        return answer
