"""Progress reports that suit where they are read: bars on a terminal, whole lines in a log file.

A tqdm bar redraws itself with carriage returns. On a terminal that is one line that moves; in a
log file (``skin-cnn train … 2> train.log``, a batch job, CI) it is a chain of hundreds of
overwritten copies on one line. :func:`progress_bar` therefore gives a tqdm bar only where one can
be drawn — a terminal, or a Jupyter notebook (tqdm's widget) — and elsewhere a
:class:`LineProgress` that writes plain lines: one when a long task has run for another
``interval`` seconds, one when it ends, and none at all for a task that ends with nothing done.
Bars on a terminal wait a moment before they appear (``delay``), so quick steps leave no empty
``0%`` bar behind.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable

#: Seconds between two lines of a long task in a log file.
LINE_INTERVAL = 30.0

#: Seconds a terminal bar waits before it is first drawn.
BAR_DELAY = 0.5


def interactive(stream=None) -> bool:
    """True where a redrawn bar can be seen: a terminal, or a Jupyter kernel (tqdm's widget)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except ValueError:  # a closed stream
        return False
    return in_notebook_kernel()


def in_notebook_kernel() -> bool:
    """True inside a running Jupyter kernel (not merely when ``ipykernel`` has been imported,
    as a test runner or a library may do)."""
    ipython = sys.modules.get("IPython")
    if "ipykernel" not in sys.modules or ipython is None:
        return False
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LineProgress:
    """The part of tqdm's interface skin-cnn uses, reporting in whole lines without ``\\r``.

    Parameters
    ----------
    iterable : iterable, optional
        Iterated over, counting one per item.
    total : int, optional
        Items expected (default ``len(iterable)`` when it has one).
    interval : float
        Seconds between two lines while the task runs.
    file : text stream, optional
        Default ``sys.stderr`` at the time of writing.
    **tqdm_options
        tqdm's keywords, taken by name as tqdm takes them: ``desc`` and ``unit`` (as tqdm's),
        ``disable`` (report nothing) and ``leave`` (write a line at the end, as tqdm keeps the
        finished bar; a ``leave=False`` task writes only the lines of a long run). Others, which
        only a drawn bar uses, are ignored.
    """

    def __init__(self, iterable=None, total=None, interval=LINE_INTERVAL, file=None, **tqdm_options):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.interval, self.file = iterable, total, float(interval), file
        self.desc, self.unit = tqdm_options.get("desc", ""), tqdm_options.get("unit", "it")
        self.disable, self.leave = bool(tqdm_options.get("disable", False)), bool(tqdm_options.get("leave", True))
        self.n, self.postfix, self.closed = 0, "", False
        self._start = self._last = time.monotonic()

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __len__(self):
        return int(self.total or 0)

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._write()

    def set_postfix(self, refresh=True, **values):
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc=None, refresh=True):
        self.desc = desc or ""

    def line(self) -> str:
        """``desc: n/total unit (elapsed)``, with the postfix when set."""
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        text = f"{self.desc}: {count} {self.unit} ({time.monotonic() - self._start:.1f} s)"
        return f"{text}, {self.postfix}" if self.postfix else text

    def _write(self):
        if self.disable or self.n == 0:
            return
        stream = self.file if self.file is not None else sys.stderr
        stream.write(self.line() + "\n")
        stream.flush()

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.leave:
            self._write()


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A tqdm bar where it can be drawn, else a :class:`LineProgress`; tqdm's arguments.

    Parameters
    ----------
    iterable : iterable, optional
    **kwargs
        ``total``, ``desc``, ``unit``, ``disable``, ``leave`` and other tqdm arguments (a
        :class:`LineProgress` ignores those it has no use for).
    """
    if interactive(kwargs.get("file")):
        from tqdm.auto import tqdm

        kwargs.setdefault("delay", BAR_DELAY)
        return tqdm(iterable, **kwargs)
    return LineProgress(iterable, **kwargs)
