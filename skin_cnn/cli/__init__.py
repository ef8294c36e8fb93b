"""The ``skin-cnn`` command line: one click group, each command a thin layer over library code.

Commands are registered here by name with a one-line summary and imported only when run, so
``skin-cnn --help`` answers at once instead of waiting for TensorFlow to load. Each command lives
in its own module ``skin_cnn/cli/<name>_cmd.py`` exposing a click command called ``command``.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from skin_cnn import __version__
from skin_cnn.cli import quiet_tf

# name -> (module, one-line summary shown by --help)
COMMANDS = {
    "demo": ("skin_cnn.cli.demo_cmd", "Generate the synthetic demo set, train and evaluate end to end."),
    "manifest": ("skin_cnn.cli.manifest_cmd", "Check a manifest CSV and report every problem by row."),
    "split": ("skin_cnn.cli.split_cmd", "Split a manifest 80/10/10 by patient into train/val/test."),
    "crop": ("skin_cnn.cli.crop_cmd", "Crop background away by hue clustering; write boxes and a contact sheet."),
    "cleanse": ("skin_cnn.cli.cleanse_cmd", "Train or apply the skin/non-skin image filter."),
    "preview": ("skin_cnn.cli.preview_cmd", "Draw the batch training fed (a run) or would feed (a split)."),
    "train": ("skin_cnn.cli.train_cmd", "Train a VGG-16 variant on a split manifest into a run folder."),
    "cv": ("skin_cnn.cli.cv_cmd", "Patient-grouped k-fold cross-validation with out-of-fold predictions."),
    "evaluate": ("skin_cnn.cli.evaluate_cmd", "Metrics with 95% CIs and a STARD report for a run or predictions."),
    "compare": ("skin_cnn.cli.compare_cmd", "Compare runs in one table with paired bootstrap and DeLong tests."),
    "predict": ("skin_cnn.cli.predict_cmd", "Predict images or a manifest with a trained model (optional Grad-CAM)."),
    "serve": ("skin_cnn.cli.serve_cmd", "Serve a trained model as a local web page and JSON API."),
    "export": ("skin_cnn.cli.export_cmd", "Export a trained model to SavedModel or TFLite, checked against Keras."),
}


#: Top-level modules of optional dependencies -> the extra of skin-cnn that installs them.
OPTIONAL_EXTRAS = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
    "starlette": "serve",
    "anyio": "serve",
    "tensorboard": "tensorboard",
    "skimage": "photos",
    "playwright": "browser",
}


def missing_dependency_message(module):
    """One line naming the missing module and the ``pip install`` command that brings it.

    A command that needs an optional dependency (``serve`` needs FastAPI and Uvicorn) would
    otherwise die with a ``ModuleNotFoundError`` traceback that says what is missing but not how
    to get it.
    """
    top = str(module).split(".")[0]
    extra = OPTIONAL_EXTRAS.get(top)
    if extra:
        return (f"{top} is not installed: install skin-cnn's [{extra}] extra "
                f"(python -m pip install -e \".[{extra}]\" in the source folder)")
    return f"{top} is not installed; install it with: python -m pip install {top}"


class UserError(click.ClickException):
    """A mistake in the user's input: shown as one line, never as a traceback."""

    def format_message(self):
        return self.message


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return [name for name, (module, _) in COMMANDS.items() if importlib.util.find_spec(module)]

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name = COMMANDS[name][0]
        if importlib.util.find_spec(module_name) is None:
            return None
        quiet_tf.install()  # before a command module can import TensorFlow
        return importlib.import_module(module_name).command

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except ModuleNotFoundError as exc:  # an optional dependency: say what to install, in one line
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise UserError(missing_dependency_message(exc.name or str(exc))) from exc
        except (FileNotFoundError, ValueError, FloatingPointError) as exc:  # a refused input or a diverged
            # training: the message is the whole story
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise UserError(str(exc)) from exc
        except (OSError, RuntimeError) as exc:  # the system or a library failed: the traceback may help
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise UserError(f"{exc} (run with --debug for the traceback)") from exc


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="skin-cnn")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx, debug):
    """skin-cnn: train and honestly evaluate a multi-task VGG-16 on clinical skin photos.

    Tasks: psoriasis vs eczema, acne vs rosacea, CTCL vs eczema. A research tool, not a medical
    device.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv=None):
    """Console-script entry point."""
    cli.main(args=argv, prog_name="skin-cnn", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
