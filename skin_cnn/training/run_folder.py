"""The run folder ``runs/NAME``: who may write it, whether its training finished, its settings.

Its files are named by :class:`skin_cnn.core.run_paths.RunPaths` (the layout is listed there).
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pandas as pd

from skin_cnn.core import io as atomic
from skin_cnn.core.run_paths import RunPaths

STATUS_FILE = RunPaths(".").status.name
#: Files a training writes at the top of its run folder (commands check that none is an input).
RUN_FILES = tuple(path.name for path in RunPaths(".").training_files)
LOCK_FILE = RunPaths(".").lock.name


class RunFolderBusy(RuntimeError):
    """Another process is writing the run folder (it holds :data:`LOCK_FILE`)."""


def _try_lock(fd):
    """Take an exclusive, non-blocking lock on the open file ``fd``; False when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def run_lock(folder):
    """Hold ``folder/.lock`` while writing a run folder, so that a second training refuses at once.

    Two trainings into one folder would mix their files (``config.json`` of one, ``best.keras``
    of whichever wrote last) and both report success. The lock is the operating system's own
    (``flock``; ``msvcrt.locking`` on Windows), so it dies with its process: the lock file a killed
    run leaves behind names a dead pid and is simply taken over. The file holds the holder's pid
    for the message; it is removed when the holder finishes.

    Raises
    ------
    RunFolderBusy
        One line naming the folder and the pid of the process writing it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = RunPaths(folder).lock
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderBusy(
                f"{folder}: another training (pid {holder}) is writing this folder; wait for it "
                "to finish or choose another -o folder"
            )
        try:  # the holder before us may have removed the file between our open and our lock
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def check_new_run_folder(out):
    """Refuse to overwrite a finished or interrupted run unless resuming."""
    out = Path(out)
    if RunPaths(out).config.is_file():
        raise FileExistsError(
            f"{out}: already holds a training run (config.json); continue it with "
            f"`skin-cnn train --resume {out}` or choose another -o folder"
        )
    return out


def read_run_config(run_dir):
    """The ``config.json`` document of a run folder, with one clear error when missing or bad."""
    path = RunPaths(run_dir).config
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; --resume needs a run folder written by `skin-cnn train`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def read_history(run_dir):
    """``history.csv`` of a run (an empty frame before the first epoch)."""
    path = RunPaths(run_dir).history
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["epoch"])


def mark_finished(run_dir, best_epoch, epochs_run):
    """Record in ``status.json`` that training ended, with the best epoch (``--resume`` reads it)."""
    atomic.write_json(RunPaths(run_dir).status,
                      {"finished": True, "best_epoch": int(best_epoch), "epochs_run": int(epochs_run)})


def is_finished(run_dir):
    """The ``status.json`` entry of a finished run, or None."""
    path = RunPaths(run_dir).status
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(status, dict):
        raise ValueError(f"{path}: expected a mapping (finished, best_epoch, epochs_run)")
    if not status.get("finished"):
        return None
    for name in ("best_epoch", "epochs_run"):
        value = status.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{path}: {name}={value!r}: expected a whole number of epochs")
    return status
