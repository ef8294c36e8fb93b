"""Split a manifest into train/val/test by patient, stratified by diagnosis.

The study split 80/10/10 *by patient*: every image of a patient lies in one split, otherwise the
test set measures how well the network recognises a person rather than a disease. This module
goes two steps further, because clinical image exports rarely have clean patient ids:

* images whose ``patient_id`` is empty each form their own group (with a warning), and
* near-duplicate images — perceptual hashes (pHash and dHash) both within ``hash_distance`` bits
  of each other: the same photo saved twice, resized or re-compressed, often two shots of the same
  patient — are put in one group too, joined with the patient ids as connected components, so a
  patient whose photos appear under two ids (or none) still cannot straddle splits. This is on by
  default whatever the patient ids say: public dermatology sets hold the same photo under two
  patient ids, and a patient id only keeps together what its exporter knew belonged together. It
  can be turned off (``group_near_duplicates=False``) when the ids are known to be complete.

The groups are recorded in the ``split_group`` column; the evaluation's bootstrap resamples them.
:func:`split_problems` lists splits that came out empty and diseases missing from a split.

Groups are then allocated per diagnosis, so every disease with at least three groups is present in
every split, with rounding that keeps the overall patient-level fractions close to the request.
``GroupShuffleSplit`` alone does not stratify and ``StratifiedGroupKFold`` does not guarantee the
first property, so the number of groups per diagnosis and split is fixed first
(:func:`allocate_counts`) and scikit-learn's ``GroupShuffleSplit`` then draws exactly that many
groups within each diagnosis; the result is exactly reproducible for a seed.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from skin_cnn.core.io import PathLike
from skin_cnn.core.tasks import DISEASES, ICD10Map
from skin_cnn.data.manifest import write_manifest

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
#: Default Hamming distance (bits of 64) under which two images count as near duplicates; both
#: pHash and dHash must be within it. On the public-derm photos every pair this close was either
#: the same photo or another shot of the same patient and body site.
DEFAULT_HASH_DISTANCE = 12


@dataclass(frozen=True)
class SplitSettings:
    """How a manifest is split (the settings of :func:`patient_split` that a command takes).

    Attributes
    ----------
    fractions : (float, float, float)
        Share of patients (groups) per split, per diagnosis.
    seed : int
        Seed of the shuffle.
    group_near_duplicates : bool
        Keep perceptually near-identical images (and their patients) in one split.
    hash_distance : int
        Largest Hamming distance of a near-duplicate pair.
    """

    fractions: tuple = DEFAULT_FRACTIONS
    seed: int = 0
    group_near_duplicates: bool = True
    hash_distance: int = DEFAULT_HASH_DISTANCE


def check_fractions(fractions):
    """Validate train/val/test fractions: three non-negative numbers summing to 1, train > 0."""
    values = np.asarray(fractions, dtype=float).ravel()
    if values.shape != (3,) or not np.isfinite(values).all():
        raise ValueError(f"fractions must be three numbers (train, val, test), got {fractions!r}")
    if (values < 0).any() or values[0] <= 0:
        raise ValueError(f"fractions must be non-negative with train > 0, got {tuple(values)}")
    if abs(values.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {tuple(values)} (sum {values.sum():g})")
    return values


def patient_units(frame):
    """One key per patient: the patient id (:func:`skin_cnn.data.manifest.patient_key`: case and
    invisible characters ignored), or a key of its own for an image without one."""
    from skin_cnn.data.manifest import patient_key

    ids = frame["patient_id"].fillna("").astype(str).map(patient_key)
    own = pd.Series([f"\0image:{i}" for i in range(len(frame))], index=frame.index)
    return ids.where(ids != "", own)


# ---------------------------------------------------------------------------------------------
# near duplicates


def image_hashes(paths, progress=False):
    """pHash and dHash (64 bits each) of every image, as a boolean array of shape (n, 2, 64)."""
    import imagehash
    from skin_cnn.core.progress import progress_bar

    from skin_cnn.data.reading import open_rgb

    out = np.zeros((len(paths), 2, 64), dtype=bool)
    for i, path in enumerate(progress_bar(paths, desc="hashing images", unit="img", disable=not progress, leave=False)):
        image = open_rgb(path)
        out[i, 0] = imagehash.phash(image).hash.ravel()
        out[i, 1] = imagehash.dhash(image).hash.ravel()
    return out


def _popcount(words):
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    as_bytes = words.view(np.uint8).reshape(words.shape + (8,))
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1)


def near_duplicate_pairs(hashes, hash_distance=DEFAULT_HASH_DISTANCE, block=2048):
    """Index pairs ``(i, j)``, ``i < j``, whose every hash differs in at most ``hash_distance`` bits.

    Distances are computed on 64-bit words with XOR and a population count, a block of rows at a
    time, so 20,000 images need a few hundred megabytes at most and no Python loop over pairs.
    """
    hashes = np.asarray(hashes, dtype=bool)
    if hashes.ndim == 2:
        hashes = hashes[:, None, :]
    n = len(hashes)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    words = np.packbits(hashes, axis=-1).view(">u8")[..., 0].astype(np.uint64)  # (n, n_hashes)
    pairs = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        close = np.ones((stop - start, n), dtype=bool)
        for k in range(words.shape[1]):
            close &= _popcount(words[start:stop, k, None] ^ words[None, :, k]) <= hash_distance
        i, j = np.nonzero(close)
        i = i + start
        keep = i < j
        pairs.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(pairs).astype(np.int64)


def group_images(frame, group_near_duplicates=False, hash_distance=DEFAULT_HASH_DISTANCE, progress=False, hashes=None):
    """Label each image with a group that must stay within one split.

    Images of one patient are one group; images without a patient id start as groups of their
    own. With ``group_near_duplicates`` near-duplicate images are joined as well, and groups are
    the connected components of both relations.

    Returns
    -------
    labels : numpy.ndarray of int
        Group label per row, numbered 0.. in order of first appearance.
    info : dict
        ``near_duplicate_pairs`` (number of pairs found) and ``merged_groups`` (groups that join
        more than one patient unit because of near duplicates).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(frame)
    units = patient_units(frame).to_numpy()
    _, unit_index = np.unique(units, return_inverse=True)
    first_of_unit = {}
    edges = []
    for i, u in enumerate(unit_index):
        edges.append((first_of_unit.setdefault(u, i), i))
    n_pairs = 0
    if group_near_duplicates and n > 1:
        if hashes is None:
            hashes = image_hashes(list(frame["image_path"]), progress=progress)
        pairs = near_duplicate_pairs(hashes, hash_distance)
        n_pairs = len(pairs)
        edges.extend(map(tuple, pairs))
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, raw = connected_components(graph, directed=False)
    # renumber by first appearance so labels do not depend on scipy's internal order
    _, first = np.unique(raw, return_index=True)
    order = np.argsort(np.argsort(first))
    labels = order[raw]
    units_per_group = pd.Series(unit_index).groupby(labels).nunique()
    info = {"near_duplicate_pairs": int(n_pairs), "merged_groups": int((units_per_group > 1).sum())}
    return labels, info


# ---------------------------------------------------------------------------------------------
# allocation


def _group_diagnosis(diagnoses, labels):
    """Majority diagnosis of each group (ties: the disease listed first in DISEASES, then by name)."""
    rank = {d: k for k, d in enumerate(DISEASES)}
    result = {}
    for group, values in pd.Series(list(diagnoses)).groupby(labels):
        counts = Counter(values)
        result[group] = min(counts, key=lambda d: (-counts[d], rank.get(d, len(rank)), d))
    return result


def allocate_counts(group_counts, fractions):
    """Number of groups of each stratum for each split.

    Parameters
    ----------
    group_counts : dict
        ``{stratum: number of groups}``.
    fractions : sequence of 3 floats

    Returns
    -------
    dict
        ``{stratum: numpy array [n_train, n_val, n_test]}``. Each stratum with at least as many
        groups as there are non-zero fractions has at least one group in each such split. Rounding
        carries a running deficit from one stratum to the next (small strata first), so the
        totals over all strata stay within about one group of ``fraction × total``.
    """
    fractions = check_fractions(fractions)
    active = fractions > 0
    deficit = np.zeros(3)
    out = {}
    for stratum in sorted(group_counts, key=lambda s: (group_counts[s], str(s))):
        n = int(group_counts[stratum])
        quota = n * fractions
        alloc = np.floor(quota + 1e-9).astype(int)
        deficit += quota - alloc
        for _ in range(n - alloc.sum()):
            s = int(np.argmax(np.where(active, deficit, -np.inf)))
            alloc[s] += 1
            deficit[s] -= 1
        if n >= active.sum():
            for s in np.flatnonzero(active & (alloc == 0)):
                donor = int(np.argmax(np.where(alloc > 1, alloc - quota, -np.inf)))
                alloc[donor] -= 1
                alloc[s] += 1
                deficit[donor] += 1
                deficit[s] -= 1
        out[stratum] = alloc
    return out


def _shuffle_split_groups(groups, counts, random_state):
    """Split ``groups`` into exactly ``counts = (n_train, n_val, n_test)`` groups at random.

    scikit-learn's :class:`~sklearn.model_selection.GroupShuffleSplit` with an integer
    ``test_size`` draws exactly that many groups; applied twice (train | rest, then val | test)
    within one diagnosis it gives the per-diagnosis counts of :func:`allocate_counts`.
    """
    from sklearn.model_selection import GroupShuffleSplit

    def draw(pool, n_out, state):
        if n_out == 0:
            return pool, pool[:0]
        if n_out == len(pool):
            return pool[:0], pool
        keep, out = next(
            GroupShuffleSplit(n_splits=1, test_size=int(n_out), random_state=state).split(pool, groups=pool)
        )
        return pool[keep], pool[out]

    n_train, n_val, n_test = (int(c) for c in counts)
    train, rest = draw(groups, n_val + n_test, random_state)
    val, test = draw(rest, n_test, random_state + 1)
    return train, val, test


def patient_split(
    frame: pd.DataFrame,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    group_near_duplicates: bool = True,
    hash_distance: int = DEFAULT_HASH_DISTANCE,
    progress: bool = False,
    hashes: Any = None,
) -> pd.DataFrame:
    """Assign every image to train, val or test, keeping each patient (group) in one split.

    Parameters
    ----------
    frame : pandas.DataFrame
        A manifest frame (``image_path``, ``patient_id``, ``diagnosis``).
    fractions : (float, float, float)
        Share of *patients* (groups) per split, per diagnosis.
    seed : int
        Seed of the shuffle; the same frame and seed always give the same split.
    group_near_duplicates : bool
        Also keep perceptually near-identical images together, joining the patients that share
        such a photo into one group (reads every image once). On by default; None means the same.
    hash_distance : int
        Largest Hamming distance (of 64 bits, for pHash and for dHash) of a near-duplicate pair.
    hashes : array, optional
        Precomputed :func:`image_hashes` for the rows of ``frame`` (skips reading images).

    Returns
    -------
    pandas.DataFrame
        A copy of ``frame`` with ``split`` (train/val/test) and ``split_group`` (the group label;
        rows sharing it are in the same split). ``attrs["split_info"]`` holds the group counts.

    Notes
    -----
    A group whose images carry different diagnoses (a patient with two, or near duplicates across
    diseases) is stratified by its majority diagnosis. Manifest validation reports such patients
    as errors; ``skin-cnn split`` leaves them out.
    """
    fractions = check_fractions(fractions)
    for column in ("image_path", "patient_id", "diagnosis"):
        if column not in frame.columns:
            raise ValueError(f"the frame needs a {column!r} column to be split")
    frame = frame.reset_index(drop=True)
    if group_near_duplicates is None:
        group_near_duplicates = True
    n_empty = _warn_missing_patient_ids(frame, group_near_duplicates)
    labels, info = group_images(frame, group_near_duplicates, hash_distance, progress=progress, hashes=hashes)
    group_split = _split_groups(_group_diagnosis(frame["diagnosis"], labels), fractions, seed)

    out = frame.copy()
    out["split"] = [group_split[int(g)] for g in labels]
    out["split_group"] = labels.astype(int)
    info.update(
        {
            "seed": int(seed),
            "fractions": [float(f) for f in fractions],
            "groups": int(labels.max() + 1) if len(labels) else 0,
            "images_without_patient_id": n_empty,
            "group_near_duplicates": bool(group_near_duplicates),
            "hash_distance": int(hash_distance) if group_near_duplicates else None,
        }
    )
    out.attrs["split_info"] = info
    return out


def _warn_missing_patient_ids(frame, group_near_duplicates):
    """Warn (once, naming the count) about rows without a patient id; their number.

    Such rows cannot be kept with the patient's other photos, so the user should know how many
    images are split as patients of their own.
    """
    n_empty = int((frame["patient_id"].fillna("").astype(str).str.strip() == "").sum())
    if n_empty:
        joined = "joined with its near duplicates" if group_near_duplicates else "not grouped further"
        warnings.warn(
            f"{n_empty} of {len(frame)} images have no patient id; each is treated as its own "
            f"patient, {joined}",
            UserWarning,
            stacklevel=3,  # the caller of patient_split
        )
    return n_empty


def _split_groups(group_dx, fractions, seed):
    """``{group: split name}``: each diagnosis' groups shuffled and cut by ``fractions``.

    Diagnoses are taken in the order of ``DISEASES`` (others after, by name), each drawing its
    own shuffle seed from one generator, so a fixed seed gives a fixed split.
    """
    by_dx: dict[Any, Any] = {}
    for group in sorted(group_dx):
        by_dx.setdefault(group_dx[group], []).append(group)
    counts = allocate_counts({dx: len(groups) for dx, groups in by_dx.items()}, fractions)
    rng = np.random.default_rng(seed)
    group_split = {}
    rank = {d: k for k, d in enumerate(DISEASES)}
    for dx in sorted(by_dx, key=lambda d: (rank.get(d, len(rank)), str(d))):
        groups = np.asarray(by_dx[dx])
        parts = _shuffle_split_groups(groups, counts[dx], int(rng.integers(2**31 - 1)))
        for name, part in zip(SPLITS, parts):
            for group in part:
                group_split[int(group)] = name
    return group_split


def split_problems(split_frame, fractions=DEFAULT_FRACTIONS):
    """What would make the split unusable for an evaluation, one sentence each.

    A split with a non-zero fraction that received no image, and a disease of the frame absent
    from the validation or test split (its tasks would then have no positives or no negatives
    there, and their AUC, sensitivity or specificity no value).

    Returns
    -------
    list of str
        Empty when the split is usable.
    """
    fractions = check_fractions(fractions)
    problems = []
    if fractions[1] == 0:  # training chooses its epoch and threshold on validation images
        problems.append("the val split is empty (its fraction is 0): training needs validation patients")
    wanted = [name for name, f in zip(SPLITS, fractions) if f > 0]
    for name in wanted:
        if not (split_frame["split"] == name).any():
            problems.append(f"the {name} split is empty")
    diseases = [d for d in DISEASES if (split_frame["diagnosis"] == d).any()]
    for name in (n for n in ("val", "test") if n in wanted):
        present = set(split_frame.loc[split_frame["split"] == name, "diagnosis"])
        missing = [d for d in diseases if d not in present]
        if missing and present:
            problems.append(f"no {', '.join(missing)} in the {name} split")
    return problems


# ---------------------------------------------------------------------------------------------
# files and summaries


def write_split(frame: pd.DataFrame, path: PathLike) -> Path:
    """Write a split frame as CSV (atomically); image paths below the CSV's folder become relative."""
    path = Path(path)
    if "split" not in frame.columns:
        raise ValueError("the frame has no 'split' column; make one with patient_split")
    return write_manifest(frame, path)


def load_split(path: PathLike, icd10_map: ICD10Map | PathLike | None = None) -> pd.DataFrame:
    """Read a split CSV: the manifest frame plus ``split`` ∈ {train, val, test}.

    Raises
    ------
    ValueError
        No ``split`` column, a value other than train/val/test (row numbers given), or a patient
        whose images lie in more than one split.
    """
    from skin_cnn.data.manifest import load_manifest, patient_key

    frame = load_manifest(path, icd10_map=icd10_map)
    if "split" not in frame.columns:
        raise ValueError(f"{path}: no 'split' column; make a split file with `skin-cnn split`")
    frame["split"] = frame["split"].str.strip().str.lower()
    bad = frame.index[~frame["split"].isin(SPLITS)]
    if len(bad):
        shown = ", ".join(f"row {i + 2} ({frame.at[i, 'split']!r})" for i in bad[:5])
        raise ValueError(f"{path}: split must be one of {', '.join(SPLITS)}; {len(bad)} rows are not: {shown}")
    with_id = frame[frame["patient_id"] != ""]
    spread = with_id.groupby(with_id["patient_id"].map(patient_key))["split"].nunique()
    leaking = spread[spread > 1].index.tolist()
    if leaking:
        shown = ", ".join(repr(p) for p in leaking[:5])
        raise ValueError(f"{path}: {len(leaking)} patients have images in more than one split: {shown}")
    return frame


def has_patient_ids(frame):
    """True when at least one row names its patient (without any, every image is its own unit)."""
    return "patient_id" in frame.columns and bool((frame["patient_id"].fillna("").astype(str).str.strip() != "").any())


def split_table(frame):
    """Images and patients per diagnosis and split (plus a total row), as a DataFrame.

    Without any patient id the table has image counts only: counting each image as a "patient"
    would present images as people.
    """
    units = patient_units(frame)
    present = [d for d in DISEASES if d in set(frame["diagnosis"])]
    present += sorted(set(frame["diagnosis"]) - set(DISEASES))
    counted = ("images", "patients") if has_patient_ids(frame) else ("images",)
    columns = pd.MultiIndex.from_product([SPLITS, counted])
    table = pd.DataFrame(0, index=present + ["total"], columns=columns)
    for split in SPLITS:
        part = frame["split"] == split
        for dx in present:
            rows = part & (frame["diagnosis"] == dx)
            table.loc[dx, (split, "images")] = int(rows.sum())
            if "patients" in counted:
                table.loc[dx, (split, "patients")] = int(units[rows].nunique())
        table.loc["total", (split, "images")] = int(part.sum())
        if "patients" in counted:
            table.loc["total", (split, "patients")] = int(units[part].nunique())
    return table


def _counts(frame):
    units = patient_units(frame)
    by_dx = {
        dx: {
            "images": int((frame["diagnosis"] == dx).sum()),
            "patients": int(units[frame["diagnosis"] == dx].nunique()),
        }
        for dx in DISEASES
        if (frame["diagnosis"] == dx).any()
    }
    return {"images": len(frame), "patients": int(units.nunique()), "by_diagnosis": by_dx}


def validation_steps(report, kept=None):
    """The first two steps of a flow record: the manifest's rows, then those validation kept.

    Parameters
    ----------
    report : skin_cnn.data.manifest.ValidationReport
        Validation of the whole manifest.
    kept : pandas.DataFrame, optional
        The rows kept (by ``skin-cnn split``, those it split); default: every row without an
        error (none when the header itself is wrong).
    """
    from skin_cnn.data.manifest import CODES

    all_rows = report.frame
    units = patient_units(all_rows) if "patient_id" in all_rows.columns else pd.Series(range(len(all_rows)))
    excluded = report.excluded()
    by_reason = Counter(CODES[code][1] for code, _ in excluded.values())
    if not excluded and not report.ok:  # header-level errors exclude every row
        by_reason = Counter({CODES[c][1]: len(all_rows) for c in report.by_code if CODES[c][0] == "error"})
    if kept is None:
        kept = all_rows.drop(index=list(excluded)) if (excluded or report.ok) else all_rows.iloc[:0]
    return [
        {"name": "manifest", "images": len(all_rows), "patients": int(units.nunique())},
        {
            "name": "validation",
            "images": len(kept),
            "patients": int(patient_units(kept).nunique()) if "patient_id" in kept.columns else len(kept),
            "excluded": dict(by_reason),
            "excluded_rows": [
                {"row": report.rows[i], "image_path": all_rows.at[i, "image_path"], "code": code, "message": message}
                for i, (code, message) in sorted(excluded.items())
            ],
        },
    ]


def check_flow_path(report_csv):
    """``manifest_report.flow.json`` beside the report CSV."""
    return Path(report_csv).with_suffix(".flow.json")


def write_check_flow(report, manifest, report_csv):
    """Write the check's flow record (manifest and validation steps), stamped with the manifest's
    SHA-256, so the counts can be traced to the very file that was checked."""
    from skin_cnn.core.io import sha256_file, write_json

    path = check_flow_path(report_csv)
    write_json(path, {"steps": validation_steps(report),
                      "describes": {"file": Path(manifest).name, "sha256": sha256_file(manifest)}})
    return path


def flow_counts(report, split_frame):
    """Counts for a STARD flow diagram: manifest → validation (exclusions by reason) → split.

    Parameters
    ----------
    report : skin_cnn.data.manifest.ValidationReport
        Validation of the whole manifest.
    split_frame : pandas.DataFrame
        The rows that were split (``split`` column).
    """
    kept = split_frame
    steps = [*validation_steps(report, kept),
             {"name": "split", **{s: _counts(kept[kept["split"] == s]) for s in SPLITS}}]
    info = split_frame.attrs.get("split_info")
    if info:
        steps[-1]["grouping"] = info
    return {"steps": steps}
