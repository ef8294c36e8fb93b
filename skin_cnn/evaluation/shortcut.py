"""Shortcut audit: does the model's Grad-CAM sit on the skin, the photo's border or a watermark?

A model can score well by reading what comes with a source rather than the skin: DermNet NZ
stamps its logo (and lately "Te Whatu Ora — Health New Zealand") into the bottom-left of every
photo, and sources differ in framing and borders. The audit divides each photo into four
disjoint regions and measures the share of the Grad-CAM mass (the sum of the map, mapped back
onto the photo) that falls into each:

* ``watermark`` — the known watermark boxes of the photo's source (:data:`DEFAULT_WATERMARKS`);
* ``border`` — the outer band of the photo (10% of each side by default), outside a watermark;
* ``lesion`` — the hue crop box (the proxy for where the skin is), outside border and watermark;
* ``other`` — the rest of the photo.

Beside each mass share is the region's share of the area the model saw, which is what a map
spread evenly would give; a mass share well above the area share says the model attends there.
The hue box is only a proxy for the lesion (it is the whole photo when the crop finds no edge),
so the lesion figure is a lower bound of attention to skin rather than a segmentation.

Only NumPy is needed here; :func:`audit_predictor` takes a loaded
:class:`~skin_cnn.inference.predictor.Predictor` to compute the maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The four disjoint regions, in the order of precedence (a pixel belongs to the first that holds it).
REGIONS = ("watermark", "border", "lesion", "other")


@dataclass(frozen=True)
class WatermarkRegion:
    """A watermark a source stamps at a fixed place of its photos.

    Attributes
    ----------
    name : str
    box : (float, float, float, float)
        ``(left, top, right, bottom)`` as fractions of the photo's width and height.
    column : str
        Frame column that tells the source (``original_dataset`` in the public manifest).
    contains : str
        Photos whose ``column`` contains this text (case-insensitive) carry the watermark;
        empty: every photo.
    """

    name: str
    box: tuple
    column: str = "original_dataset"
    contains: str = ""

    def __post_init__(self):
        left, top, right, bottom = (float(v) for v in self.box)
        if not (0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0):
            raise ValueError(f"watermark {self.name!r}: box {self.box!r} must be fractions with left < right "
                             "and top < bottom in [0, 1]")
        object.__setattr__(self, "box", (left, top, right, bottom))

    def applies_to(self, row):
        """Whether the photo of frame row ``row`` (a mapping) carries this watermark."""
        if not self.contains:
            return True
        value = row.get(self.column) if hasattr(row, "get") else None
        return isinstance(value, str) and self.contains.lower() in value.lower()


#: DermNet NZ's logo and its "Te Whatu Ora / Health New Zealand" text: the box where more than 6%
#: of the 534 DermNet NZ photos of the public set are near-white (every channel > 200; the median
#: pixel is in 2%), x 0.084–0.419 and y 0.683–0.908 of the photo, padded by about 1%
#: (``python docs/experiments/watermark_region.py``).
DEFAULT_WATERMARKS = (
    WatermarkRegion("DermNet NZ logo and Te Whatu Ora text", (0.07, 0.67, 0.43, 0.92), "original_dataset", "dermnet"),
)


def region_labels(shape, lesion_box, watermark_boxes=(), border=0.10):
    """Region of every pixel of a photo: index into :data:`REGIONS`.

    Parameters
    ----------
    shape : tuple
        ``(H, W, ...)`` of the photo.
    lesion_box : tuple of 4 int
        ``(left, top, right, bottom)`` in pixels, right/bottom exclusive (the hue crop box).
    watermark_boxes : sequence of (float, float, float, float)
        Fractions of the photo (:attr:`WatermarkRegion.box`) of the watermarks this photo carries.
    border : float
        Width of the border band as a fraction of each side (0 ≤ border < 0.5).

    Returns
    -------
    numpy.ndarray of int8, shape (H, W)
    """
    if not 0.0 <= border < 0.5:
        raise ValueError(f"border must lie in [0, 0.5); got {border!r}")
    height, width = int(shape[0]), int(shape[1])
    labels = np.full((height, width), REGIONS.index("other"), dtype=np.int8)
    left, top, right, bottom = (int(v) for v in lesion_box)
    labels[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = REGIONS.index("lesion")
    band_y, band_x = int(round(border * height)), int(round(border * width))
    band = np.zeros((height, width), bool)
    band[:band_y], band[height - band_y:], band[:, :band_x], band[:, width - band_x:] = True, True, True, True
    labels[band] = REGIONS.index("border")
    for box in watermark_boxes:
        x0, y0, x1, y1 = box
        labels[int(np.floor(y0 * height)):int(np.ceil(y1 * height)),
               int(np.floor(x0 * width)):int(np.ceil(x1 * width))] = REGIONS.index("watermark")
    return labels


def cam_mass_shares(cam, labels):
    """Share of the map's mass and of the seen area in each region.

    Parameters
    ----------
    cam : numpy.ndarray, shape (H, W)
        Non-negative map on the photo; NaN where the model never looked (outside a crop box).
    labels : numpy.ndarray, shape (H, W)
        :func:`region_labels`.

    Returns
    -------
    dict
        ``mass_<region>`` and ``area_<region>`` for every region (each family sums to 1; the
        mass shares are NaN when the map is empty).
    """
    cam = np.asarray(cam, dtype=np.float64)
    if cam.shape != labels.shape:
        raise ValueError(f"map of shape {cam.shape} does not match the region labels {labels.shape}")
    seen = ~np.isnan(cam)
    weights = np.where(seen, np.clip(cam, 0.0, None), 0.0)
    mass = np.bincount(labels.ravel(), weights=weights.ravel(), minlength=len(REGIONS))
    area = np.bincount(labels[seen].ravel(), minlength=len(REGIONS)).astype(np.float64)
    out = {}
    for k, region in enumerate(REGIONS):
        out[f"mass_{region}"] = float(mass[k] / mass.sum()) if mass.sum() > 0 else float("nan")
        out[f"area_{region}"] = float(area[k] / area.sum()) if area.sum() > 0 else float("nan")
    return out


def summarise_audit(table):
    """Per task: images audited, and the mean mass and area share of every region.

    ``table`` is :func:`audit_predictor`'s per-image table; rows with an empty map are left out
    of the means and counted in ``empty_maps``.
    """
    rows = []
    for task, part in table.groupby("task", sort=False):
        usable = part.dropna(subset=[f"mass_{r}" for r in REGIONS])
        row = {"task": task, "n_images": int(len(usable)), "empty_maps": int(len(part) - len(usable)),
               "with_watermark": int((usable["area_watermark"] > 0).sum())}
        for region in REGIONS:
            row[f"mass_{region}"] = float(usable[f"mass_{region}"].mean()) if len(usable) else float("nan")
            row[f"area_{region}"] = float(usable[f"area_{region}"].mean()) if len(usable) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def pick_images(predictions, n, seed=0):
    """``n`` distinct images of a predictions table, drawn with a seed (all when fewer)."""
    paths = np.asarray(sorted(dict.fromkeys(predictions["image_path"].astype(str))))
    if n >= len(paths):
        return list(paths)
    rng = np.random.default_rng(seed)
    return list(paths[np.sort(rng.choice(len(paths), size=int(n), replace=False))])


@dataclass(frozen=True)
class AuditRegions:
    """Where the audit draws its regions: the border band, the watermarks and the lesion proxy.

    Attributes
    ----------
    border : float
        Border band width (fraction of each side).
    watermarks : tuple of WatermarkRegion
    lesion_params : dict, optional
        Hue crop settings of the lesion proxy (:func:`~skin_cnn.data.crop.hue_crop_box`;
        default the study's). The model's own crop box, when it crops, is what it saw; the
        lesion box is computed on the whole photo either way.
    """

    border: float = 0.10
    watermarks: tuple = DEFAULT_WATERMARKS
    lesion_params: dict | None = None


def audit_predictor(predictor, predictions, frame=None, *, n_images=32, seed=0,
                    regions: AuditRegions = AuditRegions(), batch_size=8):
    """Grad-CAM mass shares of ``n_images`` evaluated photos, per image and task.

    Parameters
    ----------
    predictor : skin_cnn.inference.predictor.Predictor
    predictions : pandas.DataFrame
        The evaluated predictions (``image_path``, ``task``); each drawn image is explained for
        the tasks it has rows for, at the predictor's thresholds (the reported class).
    frame : pandas.DataFrame, optional
        The evaluated split with the columns watermarks match on and any ``crop_*`` boxes.
    n_images, seed : int
        How many images, drawn by :func:`pick_images`.
    regions : AuditRegions
        The border band, the watermarks and the lesion proxy's crop settings.
    batch_size : int
        Photos explained per Grad-CAM call.

    Returns
    -------
    pandas.DataFrame
        ``image_path``, ``task``, ``y_prob`` and ``mass_*``/``area_*`` per region; an image
        that cannot be read is left out and listed in ``attrs["unreadable"]``; ``attrs`` also
        holds ``border`` and ``watermarks``.
    """
    from skin_cnn.core.specs import resolve_crop_params
    from skin_cnn.data.crop import hue_crop_box
    from skin_cnn.data.preprocessing import box_from_row, heatmap_on_photo

    border, watermarks = regions.border, regions.watermarks
    lesion_params = resolve_crop_params(regions.lesion_params)
    rows_of = {}
    if frame is not None:
        for row in frame.to_dict("records"):
            rows_of[str(row["image_path"])] = row
    tasks_of = predictions.groupby(predictions["image_path"].astype(str))["task"].agg(lambda t: list(dict.fromkeys(t)))
    records, unreadable = [], []
    picked = pick_images(predictions, n_images, seed)
    for start in range(0, len(picked), batch_size):
        batch = []
        for path in picked[start:start + batch_size]:
            row = rows_of.get(path, {})
            try:
                photo = predictor.read(path)
                box = box_from_row(row, predictor.preprocessing) if row else None
                tensor, seen_box = predictor.preprocess(photo, box)
            except Exception as exc:  # noqa: BLE001 - reported, never stops the evaluation
                unreadable.append({"image_path": path, "reason": str(exc)})
                continue
            batch.append((path, photo, tensor, seen_box, row))
        if not batch:
            continue
        tensors = np.stack([b[2] for b in batch])
        for task in dict.fromkeys(t for b in batch for t in tasks_of[b[0]]):
            members = [k for k, b in enumerate(batch) if task in tasks_of[b[0]]]
            heatmaps, probabilities = predictor.explain(tensors[members], (task,))
            for k, heat, prob in zip(members, heatmaps[task], probabilities[task]):
                path, photo, _, seen_box, row = batch[k]
                on_photo = heatmap_on_photo(heat, photo.shape, seen_box, predictor.preprocessing.resize)
                marks = [w.box for w in watermarks if w.applies_to(row)]
                labels = region_labels(photo.shape, hue_crop_box(photo, **lesion_params), marks, border)
                records.append({"image_path": path, "task": task, "y_prob": float(prob),
                                **cam_mass_shares(on_photo, labels)})
    columns = ["image_path", "task", "y_prob"] + [f"{kind}_{r}" for kind in ("mass", "area") for r in REGIONS]
    table = pd.DataFrame(records, columns=columns)
    table.attrs.update(unreadable=unreadable, border=float(border), watermarks=tuple(watermarks))
    return table


def audit_metrics(summary):
    """``metrics.json``'s ``shortcut_audit``: per task the counts and shares (NaN as None)."""
    out = {}
    for row in summary.to_dict("records"):
        task = row.pop("task")
        out[task] = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
    return out


def report_entry(table):
    """What the report's section needs, from :func:`audit_predictor`'s table and its settings."""
    return {"summary": summarise_audit(table), "border": table.attrs.get("border", 0.10),
            "watermarks": table.attrs.get("watermarks", DEFAULT_WATERMARKS),
            "n_requested": int(table["image_path"].nunique()),
            "unreadable": len(table.attrs.get("unreadable", []))}


def add_section(rep, summary, *, border, watermarks, n_requested, unreadable=0):
    """The report's "Shortcut audit" section; returns ``{key: (anchor, text)}`` for the checklists."""
    from skin_cnn.core.tasks import task_title

    anchor = rep.heading("Shortcut audit")
    marks = "; ".join(f"{w.name} (photos whose `{w.column}` contains “{w.contains}”)" for w in watermarks) or "none"
    rep.para(
        f"Where the Grad-CAM of the reported class falls on {n_requested} seeded photos of the evaluated "
        f"split, mapped back onto each photo: the share of the map's mass in the known watermark "
        f"regions ({marks}), the border band (outer {border:.0%} of each side), the hue crop box "
        "(the lesion proxy) and the rest, each region counted once in that order. Beside it, the "
        "region's share of the area the model saw: a map spread evenly would match it. The hue box is "
        "only a proxy (the whole photo when the crop finds no edge)."
        + (f" {unreadable} photo(s) could not be read and are left out." if unreadable else "")
    )
    header = ["Task", "Images", "With watermark"] + [f"{r.capitalize()} mass (area)" for r in REGIONS]
    body = []
    for row in summary.itertuples(index=False):
        cells = [f"{getattr(row, f'mass_{r}'):.1%} ({getattr(row, f'area_{r}'):.1%})" for r in REGIONS]
        body.append([task_title(row.task), str(row.n_images), str(row.with_watermark)] + cells)
    rep.table(header, body)
    rep.para("Per image and task in `shortcut_audit.csv`.")
    return {"shortcut_audit": (anchor, f"Grad-CAM mass on lesion, border and watermark, {n_requested} photos")}
