"""Subgroups of a characteristic column: one label per row, a missing value labelled as such.

Shared by the fairness section, the ``--by`` subgroup tables and the baseline table, so that a
value is the same group everywhere: ``3.0`` (a float column with gaps) is ``3``, an empty cell
is missing, and in a Fitzpatrick column a value that is no skin type (``-1`` for "not
assessed") is missing too, not a seventh type.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: The label of rows without a value.
UNKNOWN = "unknown"


#: The Fitzpatrick skin types, in digits and in Roman numerals. Data sets write other values for
#: "not assessed" (Fitzpatrick17k: ``-1``); those are no skin type.
FITZPATRICK_TYPES = frozenset("123456") | frozenset(("I", "II", "III", "IV", "V", "VI"))


def is_fitzpatrick(column):
    """Whether a column holds Fitzpatrick skin types (its name says so: ``fitzpatrick_scale`` …)."""
    return "fitzpatrick" in str(column or "").lower()


def group_labels(values, column=None, missing=UNKNOWN):
    """Group label per row: the value as text, ``missing`` (``unknown``) where it is missing or empty.

    Numbers stored as floats by pandas (``3.0`` because the column has gaps) are shown as ``3``.
    In a Fitzpatrick column (:func:`is_fitzpatrick`) a value that is not a skin type 1–6 (I–VI),
    such as ``-1`` for "not assessed", is ``unknown`` too, not a seventh skin type.
    """
    fitzpatrick = is_fitzpatrick(column)

    def label(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return missing
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        text = str(v).strip()
        if not text or text.lower() in ("nan", "none"):
            return missing
        if fitzpatrick and text.upper() not in FITZPATRICK_TYPES:
            return missing
        return text

    return pd.Series([label(v) for v in values], index=getattr(values, "index", None), dtype=object)
