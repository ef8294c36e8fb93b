"""Load a manifest CSV into a DataFrame, and validate every row of it before any training starts.

A manifest lists one image per row: ``image_path`` (relative to the CSV's folder, or absolute),
``patient_id`` (may be empty) and either ``diagnosis`` (one of
:data:`skin_cnn.core.tasks.DISEASES`, any case) or ``icd10`` (mapped to a category by
:func:`skin_cnn.core.tasks.load_icd10_map`). Every other column is kept as text, unchanged, so that
results can later be grouped by source, Fitzpatrick type or anything else the database exports.

:func:`load_manifest` is strict and cheap: it refuses a manifest whose rows cannot be labelled and
says which rows. :func:`validate_manifest` is thorough: it opens every image, hashes its content and
lists *every* problem by the row number as seen in a spreadsheet, so one pass fixes them all.
"""
from __future__ import annotations

import csv
import os
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from skin_cnn.core import io as atomic
from skin_cnn.core.io import PathLike, sha256_file
from skin_cnn.core.tasks import DISEASES, ICD10Map, load_icd10_map

#: Problem codes, their severity and a short human label (used in flow counts and docs).
CODES = {
    "missing_column": ("error", "missing column"),
    "no_rows": ("error", "no data rows"),
    "no_label_column": ("error", "no diagnosis or icd10 column"),
    "both_label_columns": ("warning", "both diagnosis and icd10 columns"),
    "duplicate_column": ("error", "duplicate column name"),
    "no_patient_column": ("warning", "no patient_id column"),
    "bad_row": ("error", "malformed row"),
    "empty_image_path": ("error", "empty image path"),
    "missing_file": ("error", "missing file"),
    "unreadable_image": ("error", "unreadable image"),
    "checksum_mismatch": ("error", "checksum mismatch"),
    "missing_diagnosis": ("error", "missing diagnosis"),
    "unknown_diagnosis": ("error", "unknown diagnosis"),
    "unknown_icd10": ("error", "unknown ICD-10 code"),
    "label_mismatch": ("error", "diagnosis and ICD-10 disagree"),
    "duplicate_path": ("error", "duplicate image path"),
    "duplicate_content": ("error", "duplicate image content"),
    "patient_conflict": ("error", "patient with two diagnoses"),
    "empty_patient_id": ("warning", "empty patient id"),
    "patient_id_normalized": ("warning", "patient id spelt another way"),
}

PROBLEM_COLUMNS = ("row", "image_path", "severity", "code", "message")
_KNOWN_COLUMNS = ("image_path", "patient_id", "diagnosis", "icd10")


def counted(n: int, noun: str) -> str:
    """``1 warning``, ``0 warnings``, ``3 warnings``: a count with its noun in the right number."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def normalize_diagnosis(value):
    """``'  Atopic  ECZEMA '`` style clean-up: strip, lower-case, collapse inner spaces."""
    return re.sub(r"\s+", " ", str(value)).strip().lower()


def clean_patient_id(value):
    """A patient id as written, minus what no one can see: the spelling skin-cnn stores.

    Unicode NFC composition (``"e\u0301"`` and ``"é"`` are one id), control and format characters
    removed (NUL, zero-width spaces, byte-order marks, direction marks: they come from copy and
    paste or export tools, never from a clinician), runs of whitespace made one space, and
    surrounding whitespace stripped. Letter case is kept here; :func:`patient_key` ignores it.
    """
    text = unicodedata.normalize("NFC", str(value))
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf") or ch in " \t\n\r")
    return re.sub(r"\s+", " ", text).strip()


def patient_key(value):
    """The identity of a patient id: :func:`clean_patient_id`, then case-folded.

    Ids that differ only in case (``p2``, ``P2``) are the same patient. Splitting two patients that
    a database happens to tell apart by case is a smaller harm than one patient in both the
    training and the test set, which inflates every test metric.
    """
    return clean_patient_id(value).casefold()


def _resolve_icd10_map(icd10_map):
    if icd10_map is None or isinstance(icd10_map, ICD10Map):
        return icd10_map if icd10_map is not None else load_icd10_map()
    return load_icd10_map(icd10_map)


def resolve_image_path(value, base):
    """Absolute path of a manifest ``image_path`` entry (``~`` expanded, relative to ``base``)."""
    path = os.path.expanduser(str(value).strip())
    if not os.path.isabs(path):
        path = os.path.join(os.fspath(base), path)
    return os.path.normpath(os.path.abspath(path))


# ---------------------------------------------------------------------------------------------
# parsing


@dataclass
class _Parsed:
    frame: pd.DataFrame
    rows: list  # CSV line number of each frame row
    problems: list  # dicts with PROBLEM_COLUMNS; frame-row index under "_index" (None: file-level)
    has_patient_column: bool = True


def _problem(problems, code, message, row=None, image_path="", index=None):
    severity = CODES[code][0]
    problems.append(
        {"row": row, "image_path": image_path, "severity": severity, "code": code, "message": message, "_index": index}
    )


def _read_rows(path):
    """Header and data records of a CSV, each record with the line number it starts on."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header, records, line = None, [], 1
        for fields in reader:
            start, line = line, reader.line_num + 1
            if not fields or all(not f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip() for f in fields]
                continue
            records.append((start, fields))
    return header, records


def _read_manifest_csv(path):
    """The header and records of a manifest file, or a one-line error saying why it cannot be read."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest file not found")
    try:
        header, records = _read_rows(path)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: manifest is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from None
    if header is None:
        raise ValueError(f"{path}: manifest is empty (no header row)")
    return header, records


def _check_header(header, names, problems):
    """Record the header's problems; return which of diagnosis, icd10 and patient_id it has.

    Parameters
    ----------
    header : list of str
        The header as written (quoted in the messages).
    names : list of str
        The header with known columns lower-cased.
    problems : list
        Problems found so far; appended to.

    Returns
    -------
    (bool, bool, bool)
        Whether there is a diagnosis, an icd10 and a patient_id column.
    """
    for name, count in Counter(names).items():
        if count > 1:
            _problem(problems, "duplicate_column", f"column {name!r} appears {count} times in the header", row=1)
    if "image_path" not in names:
        _problem(problems, "missing_column", f"required column image_path is missing; {_header_read(header)}", row=1)
    has_diagnosis, has_icd10 = "diagnosis" in names, "icd10" in names
    if not has_diagnosis and not has_icd10:
        _problem(
            problems,
            "no_label_column",
            f"the manifest needs a diagnosis column or an icd10 column; {_header_read(header)}",
            row=1,
        )
    elif has_diagnosis and has_icd10:
        _problem(
            problems,
            "both_label_columns",
            "both diagnosis and icd10 columns: diagnosis is used, icd10 fills empty diagnoses"
            " and is checked against it",
            row=1,
        )
    has_patient = "patient_id" in names
    if not has_patient:
        _problem(
            problems, "no_patient_column", "no patient_id column: every image is treated as its own patient", row=1
        )
    return has_diagnosis, has_icd10, has_patient


def _unique_names(names):
    """Column names with pandas' style suffix on repeats (``a``, ``a.1``), so no data is lost."""
    unique, counts = [], Counter()
    for name in names:
        unique.append(name if counts[name] == 0 else f"{name}.{counts[name]}")
        counts[name] += 1
    return unique


def _records_frame(records, columns, problems):
    """The records as a string frame with ``columns``, and the CSV line of each row.

    A record with fewer fields than the header, or with non-empty extra fields, is a ``bad_row``;
    it is padded (or cut) to the header's width and kept, so later checks still name its row.
    """
    data, rows = [], []
    for line, fields in records:
        if len(fields) != len(columns):
            extra = [f for f in fields[len(columns):] if f.strip()]
            if len(fields) < len(columns) or extra:
                _problem(
                    problems,
                    "bad_row",
                    f"row has {len(fields)} fields but the header has {len(columns)}",
                    row=line,
                    image_path=fields[0] if fields else "",
                    index=len(data),
                )
            fields = (list(fields) + [""] * len(columns))[: len(columns)]
        data.append(fields)
        rows.append(line)
    frame = pd.DataFrame(data, columns=columns, dtype=str) if data else pd.DataFrame(columns=columns, dtype=str)
    return frame.reset_index(drop=True), rows


@dataclass
class _LabelColumns:
    """Which label columns a manifest has, and the ICD-10 mapping its icd10 column is read with."""

    has_diagnosis: bool
    has_icd10: bool
    icd10_map: object = None


def _given_diagnosis(raw, given, code, mapped, columns, where, problems):
    """The diagnosis of a row whose diagnosis cell is filled: ``given`` when known and not
    contradicted by its ICD-10 code, else ``""`` (with the problem recorded)."""
    line, image, i = where
    diagnosis = ""
    if given in DISEASES:
        diagnosis = given
    else:
        _problem(
            problems,
            "unknown_diagnosis",
            f"unknown diagnosis {raw!r}; expected one of {', '.join(DISEASES)}",
            row=line,
            image_path=image,
            index=i,
        )
    if code and mapped is None:
        source = columns.icd10_map.source
        _problem(problems, "unknown_icd10", f"ICD-10 code {code!r} is not in {source}", line, image, i)
        # a known diagnosis still labels the row, so this is only a warning there
        problems[-1]["severity"] = "warning" if diagnosis else "error"
    elif mapped is not None and diagnosis and mapped != diagnosis:
        _problem(
            problems,
            "label_mismatch",
            f"diagnosis {diagnosis!r} but ICD-10 code {code} maps to {mapped!r}",
            line,
            image,
            i,
        )
        diagnosis = ""
    return diagnosis


def _row_diagnosis(frame, i, line, columns, problems):
    """The diagnosis of frame row ``i`` from its diagnosis and icd10 cells (``""``: none usable)."""
    image = frame.at[i, "image_path"]
    if not image:
        _problem(problems, "empty_image_path", "image_path is empty", row=line, index=i)
    raw = frame.at[i, "diagnosis"] if columns.has_diagnosis else ""
    given = normalize_diagnosis(raw) if columns.has_diagnosis else ""
    code = frame.at[i, "icd10"].strip() if columns.has_icd10 else ""
    mapped = columns.icd10_map.lookup(code) if code else None
    if given:
        return _given_diagnosis(raw, given, code, mapped, columns, (line, image, i), problems)
    if code:
        if mapped is None:
            _problem(
                problems,
                "unknown_icd10",
                f"ICD-10 code {code!r} is not in {columns.icd10_map.source}; add it to a mapping file (--icd10-map)",
                line,
                image,
                i,
            )
            return ""
        return mapped
    what = " and ".join(c for c, has in (("diagnosis", columns.has_diagnosis), ("icd10", columns.has_icd10)) if has)
    _problem(problems, "missing_diagnosis", f"{what} is empty", line, image, i)
    return ""


def _parse_manifest(path, icd10_map=None):
    """Parse a manifest into the contract frame plus every problem found without opening images."""
    path = Path(path)
    header, records = _read_manifest_csv(path)
    problems = []
    # Known columns match whatever their case; others keep their names unchanged.
    names = [h if h.lower() not in _KNOWN_COLUMNS else h.lower() for h in header]
    has_diagnosis, has_icd10, has_patient = _check_header(header, names, problems)
    frame, rows = _records_frame(records, _unique_names(names), problems)
    if not records:
        _problem(problems, "no_rows", "the manifest has a header but no data rows", row=1)
    if any(p["severity"] == "error" and p["row"] == 1 for p in problems):
        return _Parsed(frame, rows, problems, has_patient)

    base = path.resolve().parent
    raw_paths = frame["image_path"].str.strip()
    frame["image_path"] = [resolve_image_path(p, base) if p else "" for p in raw_paths]
    if has_patient:
        frame["patient_id"] = _normalize_patient_ids(frame["patient_id"], rows, frame["image_path"], problems)
    else:
        frame["patient_id"] = ""

    columns = _LabelColumns(has_diagnosis, has_icd10, _resolve_icd10_map(icd10_map) if has_icd10 else None)
    frame["diagnosis"] = [_row_diagnosis(frame, i, line, columns, problems) for i, line in enumerate(rows)]

    _find_duplicate_paths(frame, rows, problems)
    _find_patient_conflicts(frame, rows, problems)
    if has_patient:
        for i in frame.index[frame["patient_id"] == ""]:
            _problem(
                problems,
                "empty_patient_id",
                "patient_id is empty: the image is treated as its own patient",
                rows[i],
                frame.at[i, "image_path"],
                i,
            )
    return _Parsed(frame, rows, problems, has_patient)


def _header_read(header):
    """``the header read was [...]``, with a hint when it looks like another separator was used."""
    text = f"the header read was {header!r}"
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        sep = next(sep for sep in (";", "\t", "|") if sep in header[0])
        text += f" (one column: the file seems to be separated by {sep!r}; save it as comma-separated CSV)"
    return text


def _normalize_patient_ids(ids, rows, images, problems):
    """Give every spelling of one patient id the same value, its first spelling in the file.

    Spellings are the same patient when :func:`patient_key` agrees; a row whose id was changed
    (beyond surrounding spaces) gets a ``patient_id_normalized`` warning, so that the manifest can
    be corrected at its source.
    """
    first = {}
    out = []
    for i, raw in enumerate(ids):
        raw = "" if raw is None else str(raw)
        cleaned = clean_patient_id(raw)
        key = patient_key(raw)
        canonical = first.setdefault(key, cleaned)
        out.append(canonical)
        if canonical != raw.strip():
            _problem(
                problems,
                "patient_id_normalized",
                f"patient id {raw.strip()!r} read as {canonical!r} (ids are compared without case, "
                "invisible and control characters removed)",
                rows[i],
                images.iat[i],
                i,
            )
    return out


def _find_duplicate_paths(frame, rows, problems):
    first = {}
    for i, image in enumerate(frame["image_path"]):
        if not image:
            continue
        if image in first:
            _problem(
                problems,
                "duplicate_path",
                f"same image file as row {rows[first[image]]}",
                rows[i],
                image,
                i,
            )
        else:
            first[image] = i


def _find_patient_conflicts(frame, rows, problems):
    by_patient = defaultdict(list)
    for i, (patient, diagnosis) in enumerate(zip(frame["patient_id"], frame["diagnosis"])):
        if patient and diagnosis:
            by_patient[patient].append((i, diagnosis))
    for patient, items in by_patient.items():
        counts = Counter(d for _, d in items)
        if len(counts) < 2:
            continue
        listing = ", ".join(
            f"{d} (rows {', '.join(str(rows[i]) for i, dd in items if dd == d)})" for d in sorted(counts)
        )
        for i, diagnosis in items:
            _problem(
                problems,
                "patient_conflict",
                f"patient {patient!r} has images of more than one diagnosis: {listing}",
                rows[i],
                frame.at[i, "image_path"],
                i,
            )


def load_manifest(path: PathLike, icd10_map: ICD10Map | PathLike | None = None) -> pd.DataFrame:
    """Read a manifest CSV into the manifest frame.

    Parameters
    ----------
    path : str or Path
        The manifest CSV (UTF-8, a header row; Excel's BOM is accepted).
    icd10_map : str, Path or ICD10Map, optional
        Mapping used when the CSV has an ``icd10`` column; defaults to the shipped table.

    Returns
    -------
    pandas.DataFrame
        Index 0..n-1; ``image_path`` absolute, ``patient_id`` a string (``""`` when empty),
        ``diagnosis`` one of ``DISEASES``; every other CSV column kept as text.

    Raises
    ------
    ValueError
        When a column is missing or any row cannot be given a diagnosis, has no image path,
        repeats another row's image, or belongs to a patient with another diagnosis. The message
        names the file and the first rows; ``skin-cnn manifest check`` lists them all. Image files
        are not opened here (see :func:`validate_manifest`).
    """
    parsed = _parse_manifest(path, icd10_map)
    errors = [p for p in parsed.problems if p["severity"] == "error"]
    if errors:
        shown = "; ".join(f"row {p['row']}: {p['message']}" for p in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ValueError(
            f"{path}: {len(errors)} problem(s) in the manifest: {shown}{more}; "
            f"run `skin-cnn manifest check {path}` for the full list"
        )
    return parsed.frame


# ---------------------------------------------------------------------------------------------
# validation


@dataclass
class ValidationReport:
    """Every problem of a manifest, by row, with counts for a summary line and a flow diagram.

    Attributes
    ----------
    manifest : str
        The manifest's path.
    frame : pandas.DataFrame
        All rows as parsed (diagnosis ``""`` where none could be assigned).
    rows : list of int
        CSV line number of each frame row (the header is line 1).
    problems : pandas.DataFrame
        Columns ``row, image_path, severity, code, message``; ``row`` is the CSV line number
        (1 for problems with the header, empty for none).
    images_checked : bool
        Whether image files were opened and hashed.
    n_images_ok : int
        Rows whose image exists and decodes (or exists, when images were not checked).
    """

    manifest: str
    frame: pd.DataFrame
    rows: list
    problems: pd.DataFrame
    images_checked: bool
    n_images_ok: int
    _error_index: list = field(default_factory=list, repr=False)

    @property
    def n_rows(self):
        return len(self.frame)

    @property
    def n_errors(self):
        return int((self.problems["severity"] == "error").sum())

    @property
    def n_warnings(self):
        return int((self.problems["severity"] == "warning").sum())

    @property
    def ok(self):
        """True when there are no errors (warnings allowed)."""
        return self.n_errors == 0

    @property
    def by_code(self):
        """``{code: count}`` in the order of :data:`CODES`."""
        counts = Counter(self.problems["code"])
        return {code: counts[code] for code in CODES if counts[code]}

    def error_indices(self):
        """Frame indices of rows with at least one error (each listed once, in order)."""
        return list(self._error_index)

    def excluded(self):
        """Rows that a split leaves out: ``{frame index: (code, message)}`` of each row's first error."""
        out = {}
        problems = self.problems[self.problems["severity"] == "error"]
        for index, code, message in zip(problems["_index"], problems["code"], problems["message"]):
            if not pd.isna(index) and int(index) not in out:
                out[int(index)] = (code, message)
        return out

    def clean_frame(self):
        """The frame without the rows that have errors, re-indexed 0..n-1."""
        bad = set(self._error_index)
        keep = [i for i in self.frame.index if i not in bad]
        return self.frame.loc[keep].reset_index(drop=True)

    def summary(self):
        """One line: rows, images ok, errors, warnings, counts by code."""
        images = (
            f"{counted(self.n_images_ok, 'image')} ok" if self.images_checked
            else f"{counted(self.n_images_ok, 'file')} found (not decoded)"
        )
        codes = ", ".join(f"{code} {n}" for code, n in self.by_code.items())
        return (
            f"{self.manifest}: {counted(self.n_rows, 'row')}, {images}, {counted(self.n_errors, 'error')}, "
            f"{counted(self.n_warnings, 'warning')}" + (f" ({codes})" if codes else "")
        )

    def table(self, max_lines=40, per_code=5):
        """The problems as a text table for a terminal.

        Errors come first. A code with more than ``per_code`` rows shows its first few and one
        line saying how many more there are, so 942 empty patient ids take a few lines, not 942.
        """
        if self.problems.empty:
            return "no problems found"
        ordered = self.problems.assign(_sev=(self.problems["severity"] != "error").astype(int))
        ordered = ordered.sort_values(["_sev", "row"], kind="stable", na_position="first")
        lines, shown = [], 0
        for code in list(dict.fromkeys(ordered["code"])):
            group = ordered[ordered["code"] == code]
            take = group if len(group) <= per_code else group.iloc[: max(1, per_code - 2)]
            for _, p in take.iterrows():
                if shown >= max_lines:
                    break
                row = "" if pd.isna(p["row"]) else int(p["row"])
                lines.append((str(row), p["severity"], code, _short(p["image_path"]), p["message"]))
                shown += 1
            if len(take) < len(group):
                rows = group["row"].iloc[len(take):].dropna().astype(int)
                span = f" (rows {rows.min()}–{rows.max()})" if len(rows) else ""
                lines.append(("…", group["severity"].iloc[0], code, "", f"{len(group) - len(take)} more{span}"))
        hidden = len(self.problems) - sum(1 for line in lines if line[0] != "…")
        header = ("row", "severity", "code", "image", "message")
        widths = [max(len(h), *(len(line[k]) for line in lines)) for k, h in enumerate(header[:4])]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
        out = [fmt.format(*header), fmt.format(*("-" * w for w in widths), "-------")]
        out += [fmt.format(*line) for line in lines]
        if shown >= max_lines and hidden > 0:
            out.append(f"… output truncated; {len(self.problems)} problems in all (write the full report with -o)")
        return "\n".join(out)

    def to_frame(self):
        """The problems table as written to CSV (row as an integer or empty)."""
        frame = self.problems.loc[:, list(PROBLEM_COLUMNS)].copy()
        frame["row"] = frame["row"].astype("Int64")
        return frame

    def to_dict(self):
        return {
            "manifest": self.manifest,
            "rows": self.n_rows,
            "images_checked": self.images_checked,
            "images_ok": self.n_images_ok,
            "errors": self.n_errors,
            "warnings": self.n_warnings,
            "by_code": self.by_code,
            "problems": [
                {k: (None if pd.isna(v) else (int(v) if k == "row" else v)) for k, v in p.items()}
                for p in self.to_frame().astype(object).to_dict("records")
            ],
        }

    def write(self, path):
        """Write ``path`` (``.csv``) and the same name with ``.json``; a folder gets
        ``manifest_report.csv`` and ``.json`` inside it. Returns the two paths."""
        csv_path, json_path = report_paths(path)
        atomic.write_csv(csv_path, spreadsheet_safe(self.to_frame()))
        atomic.write_json(json_path, self.to_dict())
        return csv_path, json_path


#: First characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame):
    """A copy of ``frame`` whose text cells cannot run as spreadsheet formulas.

    The report is opened in Excel or LibreOffice by people; a path or patient id written as
    ``=HYPERLINK(...)`` or ``@SUM(...)`` in a manifest would otherwise become a live formula
    there. Such cells get a leading apostrophe, which spreadsheets show as text and hide; numbers
    are left alone. (The JSON report keeps every value as it was.)
    """
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return out


def report_paths(path):
    """The CSV and JSON paths :meth:`ValidationReport.write` writes for ``path`` (a ``.csv`` or
    ``.json`` name, else a folder that gets ``manifest_report.csv`` and ``.json``)."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".json"):
        path = path / "manifest_report.csv"
    return path.with_suffix(".csv"), path.with_suffix(".json")


def _short(path, width=48):
    text = str(path)
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _hash_and_check(image):
    """A file's sha256 and the reason it does not decode (None when it does).

    The file is sniffed first (:func:`skin_cnn.data.reading.sniff_file`: signature and size,
    64 bytes read): a non-image gets its reason and no hash (None) without being read. An image
    is hashed in blocks and decoded from disk, never held in memory whole.
    """
    from skin_cnn.data.reading import check_image, sniff_file

    if os.path.getsize(image) == 0:
        return None, "empty file (0 bytes)"
    reason = sniff_file(image)
    if reason is not None:
        return None, reason
    return sha256_file(image), check_image(image)


@dataclass
class _ImageCheck:
    """Checks the image files of a parsed manifest one row at a time, recording their problems.

    Keeps the first row of each file content (sha256) seen, so a later row with the same content
    under another path is a ``duplicate_content`` error.
    """

    frame: pd.DataFrame
    rows: list
    problems: list
    decode: bool
    first_by_digest: dict = field(default_factory=dict)

    def file(self, i, image):
        """Check row ``i``'s file ``image``; whether it is usable (exists, and decodes when checked)."""
        rows, problems = self.rows, self.problems
        if not os.path.isfile(image):
            reason = "is a folder, not an image file" if os.path.isdir(image) else "file not found"
            code = "unreadable_image" if os.path.isdir(image) else "missing_file"
            _problem(problems, code, reason, rows[i], image, i)
            return False
        if not self.decode:
            return True
        try:
            digest, reason = _hash_and_check(image)
        except OSError as exc:
            _problem(problems, "unreadable_image", f"cannot read file ({exc.strerror or exc})", rows[i], image, i)
            return False
        if reason is not None:
            _problem(problems, "unreadable_image", reason, rows[i], image, i)
        if digest is not None:  # None: not an image, refused from its first bytes, never hashed
            self.content(i, image, digest)
        return reason is None

    def content(self, i, image, digest):
        """Compare row ``i``'s content hash with its ``sha256`` cell and with the earlier rows."""
        frame, rows = self.frame, self.rows
        want = frame.at[i, "sha256"].strip().lower() if "sha256" in frame.columns else ""
        if want and want != digest:
            _problem(
                self.problems,
                "checksum_mismatch",
                f"sha256 is {digest[:12]}…, manifest says {want[:12]}…",
                rows[i],
                image,
                i,
            )
        other = self.first_by_digest.get(digest)
        if other is None:
            self.first_by_digest[digest] = i
        elif frame.at[other, "image_path"] != image:  # same path is already a duplicate_path
            _problem(
                self.problems,
                "duplicate_content",
                f"same file content (sha256) as row {rows[other]} ({_short(frame.at[other, 'image_path'], 60)})",
                rows[i],
                image,
                i,
            )


def _check_images(parsed, check_images, progress):
    """Check every row's image file (see :class:`_ImageCheck`); the number of usable ones."""
    from skin_cnn.core.progress import progress_bar

    check = _ImageCheck(parsed.frame, parsed.rows, parsed.problems, decode=check_images)
    iterator = progress_bar(
        parsed.frame["image_path"].items(),
        total=len(parsed.frame),
        desc="checking images" if check_images else "checking files",
        unit="img",
        disable=not progress,
        leave=False,
    )
    return sum(check.file(i, image) for i, image in iterator if image)


def validate_manifest(path: PathLike, icd10_map: ICD10Map | PathLike | None = None, check_images: bool = True,
                      progress: bool = True) -> ValidationReport:
    """Find every problem of a manifest, row by row.

    Parameters
    ----------
    path : str or Path
        The manifest CSV.
    icd10_map : str, Path or ICD10Map, optional
        Mapping for an ``icd10`` column; defaults to the shipped table.
    check_images : bool
        Open, fully decode and hash every image (finds unreadable files and the same image
        under two rows). Without it only the existence of each file is checked.
    progress : bool
        Show a progress bar while images are checked.

    Returns
    -------
    ValidationReport
        Errors: missing or malformed columns and rows, missing or unreadable files, unknown
        diagnoses or ICD-10 codes, the same file or the same content (sha256) in two rows, a
        patient with two diagnoses, and, when the manifest has a ``sha256`` column, a file
        whose content does not match it. Warnings: empty patient ids, ICD-10 codes not in the
        mapping on rows that have a diagnosis.

    Raises
    ------
    FileNotFoundError, ValueError
        Only when the manifest itself cannot be read as CSV.
    """
    parsed = _parse_manifest(path, icd10_map)
    frame, rows, problems = parsed.frame, parsed.rows, parsed.problems
    header_ok = not any(p["severity"] == "error" and p["row"] == 1 for p in problems)
    n_ok = _check_images(parsed, check_images, progress) if header_ok and len(frame) else 0

    table = pd.DataFrame(problems, columns=list(PROBLEM_COLUMNS) + ["_index"])
    table["_index"] = table["_index"].astype(object)
    error_index = sorted(
        {int(i) for i, s in zip(table["_index"], table["severity"]) if s == "error" and not pd.isna(i)}
    )
    if not header_ok:
        error_index = list(range(len(frame)))
    return ValidationReport(manifest=os.fspath(path), frame=frame, rows=rows, problems=table,
                            images_checked=bool(check_images), n_images_ok=n_ok, _error_index=error_index)


def write_manifest(frame: pd.DataFrame, path: PathLike) -> Path:
    """Write a manifest frame as CSV (atomically), with paths relative to the CSV when possible.

    ``image_path`` becomes relative to the CSV's folder when the image lies below it, so a data
    folder can be moved together with its CSV; other paths stay absolute. Used for every CSV that
    lists images (split, cleansed and cropped manifests).
    """
    folder = Path(path).resolve().parent
    out = frame.copy()
    out["image_path"] = [_relative_to(p, folder) for p in out["image_path"]]
    atomic.write_csv(path, out)
    return Path(path)


def _relative_to(path, folder):
    """``path`` relative to ``folder`` when it lies below it, else unchanged."""
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    try:
        if os.path.commonpath([path, folder]) == folder:
            return os.path.relpath(path, folder)
    except ValueError:  # different drives on Windows
        pass
    return path
