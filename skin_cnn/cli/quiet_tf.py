"""TensorFlow's start-up banner kept off the command line's stderr.

Importing TensorFlow writes, from C++ before its logging is set up, an absl preamble and a oneDNN
notice (twice: two of its libraries load), and with default settings a CPU-feature notice. These
are informational lines that ``TF_CPP_MIN_LOG_LEVEL`` does not silence, and on every command they
read like errors. The CLI therefore sets ``TF_CPP_MIN_LOG_LEVEL=2`` (warnings and info off; errors
still shown) and, around the one ``import tensorflow`` of the process, routes file descriptor 2
through a temporary file and writes back every line except the banner's. Nothing is filtered
when the user has set ``TF_CPP_MIN_LOG_LEVEL`` themselves: they chose what to see. Library use
(``import skin_cnn`` in a notebook) is left alone.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

#: TensorFlow's own log level environment variable, and the level the CLI sets (errors only).
LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
CLI_LOG_LEVEL = "2"

#: Lines of the start-up banner: absl's preamble, info-level (``I``) log lines and the
#: continuation of the CPU-feature notice.
BANNER_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] .*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."  # the TFLite interpreter's, per model
)


def without_banner(text):
    """``text`` without the lines of TensorFlow's start-up banner (other lines kept, in order)."""
    return "".join(line for line in text.splitlines(keepends=True) if not BANNER_LINE.fullmatch(line.rstrip("\r\n")))


@contextlib.contextmanager
def banner_filtered_stderr():
    """Route file descriptor 2 through a temporary file, then write back all but the banner."""
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = without_banner(held.read().decode("utf-8", errors="replace"))
            if kept:
                os.write(2, kept.encode("utf-8"))


class _QuietLoader(importlib.abc.Loader):
    """Delegates to TensorFlow's loader with the banner filtered out of stderr."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with banner_filtered_stderr():
            self._loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietTensorflowImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level ``tensorflow`` module once, then leaves ``sys.meta_path``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


_installed = False


def quiet_native_lines():
    """:func:`banner_filtered_stderr` where the CLI quietened TensorFlow, else a no-op context.

    For steps that print TensorFlow's informational lines from C++ after the import (the TFLite
    interpreter announces its XNNPACK delegate each time it loads a model).
    """
    return banner_filtered_stderr() if _installed else contextlib.nullcontext()


def install():
    """Quiet TensorFlow's start-up for this command-line process, unless the user set its log level."""
    global _installed
    if LOG_LEVEL_VARIABLE in os.environ:
        return
    os.environ[LOG_LEVEL_VARIABLE] = CLI_LOG_LEVEL
    _installed = True
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorflowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorflowImport())
