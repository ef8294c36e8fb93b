"""Leakage audit: evaluated images that look like a training image to the model's own trunk.

A patient-level split keeps one patient id in one split, and ``skin-cnn split`` joins photos
whose perceptual hashes nearly match. Neither catches every repeat: public dermatology sets hold
re-crops and zooms of one lesion under other ids, which a 12-bit pHash/dHash match misses. After
the split, nothing else compares training and evaluated images; this module does, in the space
the model itself sees, then pixel by pixel. Every evaluated image and every training image is
described by the trunk of the evaluated model (the generalised mean, p = 3, of its last
convolution's feature map, ``block5_conv3`` for VGG-16, made re-crop-aware by
:mod:`skin_cnn.evaluation.recrop_match`: computed by the caller, which has the model) and by a
grayscale thumbnail of what the model read. The feature similarity proposes each evaluated
image's :data:`CANDIDATES` most similar training images; each candidate pair is checked by the
normalised cross-correlation of the thumbnails, one shrunk and slid over the other
(:mod:`skin_cnn.evaluation.pixel_match`), which scores a re-crop near 1 wherever it was cut. A
pair's score is the higher of the two numbers (:func:`verified_scores`), and each pair whose
score reaches the threshold is listed as a *suspected* duplicate. Suspected
duplicates are reported, counted in the STARD flow and drawn side by side; they are never
removed, because a similar photo of another patient is not proof of leakage and the decision is
the reader's.

:data:`DEFAULT_POOLING`, :data:`CANDIDATES` and :data:`DEFAULT_THRESHOLD` were chosen on the
public photos (``docs/experiments/leakage_threshold.py``, figures in
``docs/experiments/leakage-threshold.md``). At 0.90, 96% of 70% and of 50% centre crops, every
70% corner crop, half-size rescale and JPEG re-save, 83% of left–right flips and 39% of 10°
rotations of a photo are found; 4.5% of photos are flagged against another photo of their own
disease and source, 1.2% against a photo of another disease. A clean audit is not proof that no
lesion repeats across splits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Score (:func:`verified_scores`) at or above which a pair is a suspected duplicate.
DEFAULT_THRESHOLD = 0.90
#: How the last convolution's feature map is pooled into one vector (``avg``, ``max`` or ``gem``).
DEFAULT_POOLING = "gem"
#: Training images per evaluated image, the best by the feature score, checked pixel by pixel.
CANDIDATES = 10
_POOLING_WORDS = {"avg": "global average", "max": "global maximum", "gem": "generalised mean (p = 3)"}


def feature_text(pooling=DEFAULT_POOLING):
    """What the features are, for reports and ``metrics.json``."""
    return f"{_POOLING_WORDS[pooling]} of the evaluated model's last convolution (block5_conv3 for VGG-16)"


#: What a pair's score is, for reports and ``metrics.json``.
SCORE_TEXT = ("the higher of the re-crop-aware cosine similarity of the trunk features and, for each evaluated "
              "image's best candidates by it, the normalised cross-correlation of grayscale thumbnails, one "
              "shrunk and slid over the other")
COLUMNS = ("image_path", "patient_id", "train_image_path", "train_patient_id", "similarity")


def _unit_rows(features):
    """Rows scaled to length 1 (float64); an all-zero row stays zero and so matches nothing."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (images × features), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def cosine_matches(evaluated, training, threshold=DEFAULT_THRESHOLD, block=1024):
    """Index pairs ``(i, j)`` with ``cos(evaluated[i], training[j]) >= threshold``.

    The similarity matrix is formed a block of evaluated rows at a time (one matrix product per
    block), so 2,000 × 20,000 images need a few hundred megabytes at most.

    Parameters
    ----------
    evaluated, training : arrays of shape (n, d) and (m, d)
    threshold : float in [-1, 1]
    block : int
        Evaluated rows per matrix product.

    Returns
    -------
    i, j : int arrays
    similarity : float array
        Sorted by similarity, highest first (ties by ``i`` then ``j``).
    """
    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"a cosine-similarity threshold lies in [-1, 1], got {threshold}")
    a, b = _unit_rows(evaluated), _unit_rows(training)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"evaluated features have {a.shape[1]} dimensions, training features {b.shape[1]}")
    found_i, found_j, found_s = [], [], []
    for start in range(0, len(a), block):
        sims = a[start:start + block] @ b.T
        i, j = np.nonzero(sims >= threshold - 1e-12)
        found_i.append(i + start)
        found_j.append(j)
        found_s.append(sims[i, j])
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    i, j, s = (np.concatenate(v) for v in (found_i, found_j, found_s))
    order = np.lexsort((j, i, -s))
    return i[order].astype(np.int64), j[order].astype(np.int64), np.clip(s[order], -1.0, 1.0)


def nearest_training(evaluated, training):
    """For each evaluated row, the highest cosine similarity to any training row (``-inf`` without
    training rows): the number a reader compares with the threshold."""
    a, b = _unit_rows(evaluated), _unit_rows(training)
    if not len(b) or not len(a):
        return np.full(len(a), -np.inf)
    return np.concatenate([(a[s:s + 1024] @ b.T).max(axis=1) for s in range(0, len(a), 1024)])


def _pair_table(evaluated_frame, training_frame, i, j, similarity):
    """The audit's table for index pairs ``(i, j)`` with their similarities."""
    def column(frame, name, rows):
        if name not in frame.columns:
            return [""] * len(rows)
        return frame[name].fillna("").astype(str).to_numpy()[rows].tolist()

    return pd.DataFrame({
        "image_path": column(evaluated_frame, "image_path", i),
        "patient_id": column(evaluated_frame, "patient_id", i),
        "train_image_path": column(training_frame, "image_path", j),
        "train_patient_id": column(training_frame, "patient_id", j),
        "similarity": np.asarray(similarity, dtype=float),
    }, columns=list(COLUMNS))


def suspected_duplicates(evaluated_frame, training_frame, evaluated_features, training_features,
                         threshold=DEFAULT_THRESHOLD):
    """The audit's table from one feature vector per image (cosine similarity of whole-photo features).

    Parameters
    ----------
    evaluated_frame, training_frame : pandas.DataFrame
        ``image_path`` and, when known, ``patient_id``; row ``k`` is described by row ``k`` of
        its features.
    evaluated_features, training_features : arrays of shape (n, d), (m, d)
    threshold : float

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS`, highest similarity first.
    """
    if len(evaluated_frame) != len(evaluated_features) or len(training_frame) != len(training_features):
        raise ValueError("each image needs exactly one feature row (frames and features differ in length)")
    i, j, sims = cosine_matches(evaluated_features, training_features, threshold)
    return _pair_table(evaluated_frame, training_frame, i, j, sims)


def pairs_at_threshold(evaluated_frame, training_frame, scores, threshold=DEFAULT_THRESHOLD, parts=None):
    """The audit's table from a similarity matrix (evaluated rows × training columns), e.g.
    :func:`verified_scores`: every pair at or above ``threshold``, highest first (ties by
    evaluated then training row). ``parts`` (name -> matrix of the same shape, e.g. the feature
    and pixel scores the similarity was made of) become columns of the table after
    :data:`COLUMNS`."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(evaluated_frame), len(training_frame)):
        raise ValueError(f"scores of shape {scores.shape} do not match {len(evaluated_frame)} evaluated and "
                         f"{len(training_frame)} training images")
    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"a cosine-similarity threshold lies in [-1, 1], got {threshold}")
    i, j = np.nonzero(scores >= threshold - 1e-6)
    s = scores[i, j]
    order = np.lexsort((j, i, -s))
    i, j = i[order], j[order]
    table = _pair_table(evaluated_frame, training_frame, i, j, s[order])
    for name, values in (parts or {}).items():
        table[name] = np.asarray(values, dtype=np.float64)[i, j]
    return table


def verified_scores(feature_scores: np.ndarray, evaluated_thumbs: np.ndarray, training_thumbs: np.ndarray,
                    candidates: int = CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
    """The audit's score of every pair: the feature score, raised by the pixel check of the best candidates.

    Each evaluated image's ``candidates`` training images with the highest feature score
    (:func:`skin_cnn.evaluation.recrop_match.match_scores`) are compared pixel by pixel
    (:func:`skin_cnn.evaluation.pixel_match.crop_scores`: a re-crop, zoom or re-saved copy scores
    near 1, wherever it was cut); a pair scores the higher of its two numbers. The feature score
    proposes, the pixels confirm: a crop whose cells sit off the feature grid scores low on
    features but near 1 on pixels, and a flip or rotation, which the pixels miss, keeps its
    feature score.

    Parameters
    ----------
    feature_scores : array (n_evaluated, n_training)
    evaluated_thumbs, training_thumbs : arrays (n, s, s)
        :func:`skin_cnn.evaluation.pixel_match.thumbnails` of the same images, in the same order.
    candidates : int
        Training images per evaluated image that are checked pixel by pixel.

    Returns
    -------
    score : numpy.ndarray (n_evaluated, n_training)
        ``max(feature, pixel)`` for checked pairs, the feature score elsewhere.
    pixel : numpy.ndarray (n_evaluated, n_training)
        The pixel correlation of checked pairs, NaN elsewhere.
    """
    from skin_cnn.evaluation.pixel_match import crop_scores

    features = np.asarray(feature_scores, dtype=np.float64)
    pixel = np.full(features.shape, np.nan)
    k = min(int(candidates), features.shape[1])
    if k > 0 and features.shape[0]:
        best = np.argpartition(-features, k - 1, axis=1)[:, :k]
        pairs = np.stack([np.repeat(np.arange(features.shape[0]), k), best.ravel()], axis=1)
        pixel[pairs[:, 0], pairs[:, 1]] = crop_scores(evaluated_thumbs, training_thumbs, pairs)
    return np.fmax(features, pixel), pixel


def audit_summary(pairs, n_evaluated, n_training, threshold=DEFAULT_THRESHOLD, split="test", skipped=0,
                  pooling=DEFAULT_POOLING):
    """The ``leakage_audit`` entry of ``metrics.json``.

    ``suspected`` counts evaluated images with at least one training image at or above the
    threshold (an image matching three training photos counts once); ``pairs`` counts the pairs.
    """
    return {
        "feature": feature_text(pooling),
        "pooling": pooling,
        "similarity": SCORE_TEXT,
        "pixel_candidates": CANDIDATES,
        "threshold": float(threshold),
        "split": split,
        "n_evaluated": int(n_evaluated),
        "n_training": int(n_training),
        "pairs": int(len(pairs)),
        "suspected": int(pairs["image_path"].nunique()) if len(pairs) else 0,
        "unreadable": int(skipped),
        "action": "listed and counted, not removed",
    }


def summary_sentence(audit):
    """One line for the terminal and the report."""
    n, total = audit["suspected"], audit["n_evaluated"]
    return (
        f"leakage audit: {n} of {total} evaluated {audit['split']} images are suspected duplicates of "
        f"training images (feature similarity or pixel correlation >= {audit['threshold']:.2f} with at "
        f"least one of {audit['n_training']} training images; {audit['pairs']} pairs; kept, not removed)"
    )


def _number(value):
    """A score for the table; a dash where it was not computed (no pixel check, or an older table)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if np.isnan(value) else f"{value:.3f}"


def add_section(rep, audit, pairs, figure=None, max_rows=20):
    """The report section: what was compared, how many, the pairs (table and thumbnails).

    Returns the section's anchor.
    """
    anchor = rep.heading("Leakage audit: suspected duplicates of training images")
    rep.para(
        f"Every evaluated image was compared with every training image of the run by the cosine "
        f"similarity of its trunk features ({audit['feature']}), also with each photo shrunk and "
        f"matched against windows of the other, so that a crop matches the photo it was cut from; "
        f"each evaluated image's {audit.get('pixel_candidates', CANDIDATES)} most similar training images "
        f"were then checked pixel by pixel (normalised cross-correlation of grayscale thumbnails, "
        f"one shrunk and slid over the other). A pair scores the higher of the two numbers; pairs at or above "
        f"**{audit['threshold']:.2f}** are suspected duplicates: the same photo, a re-crop, a zoom or "
        "a re-compressed copy, which the patient-level split can miss when one lesion appears "
        "under two patient ids. They are listed, counted in the flow of images, and **not "
        "removed**: a reader decides whether they are duplicates and, if so, reports the metrics "
        "without them. The threshold and its false-flag rate on unrelated photos are in "
        "docs/experiments/leakage-threshold.md."
    )
    rep.para(
        f"**{audit['suspected']}** of {audit['n_evaluated']} evaluated images are suspected duplicates "
        f"of at least one of {audit['n_training']} training images ({audit['pairs']} pairs)."
        + (f" {audit['unreadable']} images could not be read and were not compared." if audit.get("unreadable")
           else "")
    )
    if len(pairs):
        rows = [[r["image_path"], r["patient_id"] or "—", r["train_image_path"], r["train_patient_id"] or "—",
                 f"{r['similarity']:.3f}", _number(r.get("feature_similarity")), _number(r.get("pixel_correlation"))]
                for _, r in pairs.head(max_rows).iterrows()]
        rep.table(["Evaluated image", "Patient", "Training image", "Patient", "Score", "Features", "Pixels"], rows)
        if len(pairs) > max_rows:
            rep.para(f"… {len(pairs) - max_rows} more pairs in `suspected_duplicates.csv`.")
        if figure:
            rep.image(figure, "Suspected duplicates: evaluated image (left) beside training image (right)")
    return anchor


def mark_flow(flow, audit):
    """The flow chain with the audit's count on its evaluation step (the last step without one).

    The suspected duplicates stay among the evaluated images: the step says how many of them
    there are (``suspected_duplicates``) and a note says so in the diagram and the flow table.
    """
    steps = [dict(step) for step in flow["steps"]]
    if not steps:
        return flow
    at = next((k for k in range(len(steps) - 1, -1, -1) if steps[k].get("step") == "evaluation"), len(steps) - 1)
    note = (f"of which {audit['suspected']} suspected duplicates of training images "
            f"(score >= {audit['threshold']:.2f}; kept, not removed)")
    step = steps[at]
    step["suspected_duplicates"] = int(audit["suspected"])
    step["note"] = f"{step['note']}; {note}" if step.get("note") else note
    return {**flow, "steps": steps}
