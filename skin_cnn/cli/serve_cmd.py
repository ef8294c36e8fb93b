"""``skin-cnn serve``: a trained model as a local web page and JSON API."""

from __future__ import annotations

from dataclasses import dataclass

import click

from skin_cnn.cli.options import gathered, precision_option

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def accepted_hosts(host, extra=()):
    """``Host`` header names the server accepts when listening on ``host``.

    On a loopback address, this computer's names plus ``extra``; on any other address the page
    is meant for other machines, whose names for this one are not known here, so every name
    unless ``extra`` lists them.
    """
    from skin_cnn.serve.app import LOCAL_HOSTS

    if host in LOOPBACK:
        return (*LOCAL_HOSTS, *extra)
    return tuple(extra) if extra else ("*",)


@dataclass(frozen=True)
class ServeLimits:
    """How much the server takes on: upload size, photo size, parallel work, slow clients.

    The options' values as given (megabytes, megapixels, seconds); :meth:`app_settings` turns
    them into :func:`skin_cnn.serve.app.create_app`'s keywords.
    """

    max_upload_mb: float = 10.0
    max_megapixels: float = 50.0
    workers: int = 2
    max_concurrent_uploads: int | None = None
    body_timeout: float = 60.0

    def app_settings(self):
        from skin_cnn.serve.app import BodyLimits

        return {"max_upload_bytes": int(self.max_upload_mb * 1e6), "workers": self.workers,
                "max_concurrent_uploads": self.max_concurrent_uploads,
                "body_limits": BodyLimits(timeout=self.body_timeout)}


@click.command("serve")
@click.argument("model", type=click.Path(exists=True))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default answers this computer only; 0.0.0.0 exposes "
              "the page to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-upload-mb", default=10.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Largest accepted upload, in megabytes (10^6 bytes).")
@click.option("--max-megapixels", default=50.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Refuse photos with more pixels than this before decoding them.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Requests decoded and predicted at the same time; the rest queue.")
@click.option("--max-concurrent-uploads", default=None, type=click.IntRange(1, 1024),
              help="Uploads held in memory at the same time; later requests wait before their body is "
              "read. Peak memory grows with this times --max-upload-mb.  [default: 2 × --workers]")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="Another host name the page may be reached by (repeatable). On 127.0.0.1 only this "
              "computer's names are accepted, so another web site cannot reach the server through a "
              "re-pointed domain name (DNS rebinding); on any other --host every name is accepted unless "
              "this is given.")
@click.option("--body-timeout", default=60.0, show_default=True, type=click.FloatRange(min=1.0),
              help="Seconds a client may take to send its photo; slower clients get 408 and free their "
              "upload slot, so slow connections cannot hold the page.")
@precision_option()
@gathered("limits", ServeLimits,
          ("max_upload_mb", "max_megapixels", "workers", "max_concurrent_uploads", "body_timeout"))
def command(model, host, port, allowed_hosts, precision, limits):
    """Serve MODEL (a run folder or .keras file) at http://HOST:PORT/.

    \b
    The page: pick the question (psoriasis or eczema, acne or rosacea, CTCL or eczema; each
    task only tells its two diseases apart), upload or drop a photo, see the crop box, the
    answer at the model's threshold (fitted and stored in the model, else 0.5)
    with its probability, and a Grad-CAM heat map on the photo. JSON API: POST /api/predict
    (multipart field 'file'), GET /api/info, GET /healthz, GET /openapi.json, an offline API
    page at /docs.
    Photos are processed in memory and never written to disk; file names and image content are
    never logged. A research tool, not a medical device.
    """
    import copy

    import uvicorn
    import uvicorn.config

    from skin_cnn.inference.predictor import load_predictor
    from skin_cnn.serve.app import create_app

    predictor = load_predictor(model, max_pixels=int(limits.max_megapixels * 1e6), precision=precision)
    click.echo(predictor.precision.describe(), err=True)
    app = create_app(predictor, **limits.app_settings(), allowed_hosts=accepted_hosts(host, allowed_hosts))
    if host not in LOOPBACK:
        click.echo(
            f"warning: listening on {host}: anyone who can reach this address can use the page. "
            "There is no authentication.",
            err=True,
        )
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"skin-cnn serving {predictor.name} at http://{shown}:{port}/  (Ctrl+C to stop)", err=True
    )
    thresholds = "; ".join(f"{t} {predictor.thresholds[t].describe()}" for t in predictor.tasks)
    click.echo(f"preprocessing: {predictor.preprocessing.describe()} "
               f"({predictor.preprocessing_source}); thresholds: {thresholds}", err=True)
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["skin_cnn"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True, log_config=log_config)
