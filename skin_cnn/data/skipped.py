"""``skipped_images.csv``: the images a run left out because they could not be read, with why.

Training writes it into the run folder; evaluating the run and previewing its batches read it
back, so the list of left-out images travels with the run and enters its STARD flow.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from skin_cnn.core import io as atomic
from skin_cnn.data.preprocessing import SKIPPED_COLUMNS


def write_skipped(path, skipped):
    """``skipped_images.csv``: every image left out, with its split and the reason (may be empty)."""
    frame = pd.DataFrame(list(skipped), columns=list(SKIPPED_COLUMNS))
    atomic.write_csv(path, frame)
    return frame


def read_skipped(path):
    """The rows of a ``skipped_images.csv`` as a list of dicts (empty when the file is absent)."""
    path = Path(path)
    if not path.is_file():
        return []
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame.reindex(columns=list(SKIPPED_COLUMNS), fill_value="").to_dict("records")
