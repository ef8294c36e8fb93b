"""Three evaluations whose ``report.md`` and ``report.html`` are kept in ``tests/data/report_golden``.

* ``groups``: two tasks, synthetic images (the banner), patients and split groups, a subgroup
  table (``--by source``) and a fairness section (``--fairness fitzpatrick_scale``);
* ``fitted``: thresholds chosen on validation predictions (Youden), with the threshold-choice
  intervals, BCa bootstrap, Wald AUC intervals and a test split evaluated twice;
* ``run``: a run folder (config, history, split) with its flow record, a leakage audit and a
  shortcut audit.

The documents are compared after :func:`normalise`: the temporary folder becomes ``<TMP>`` and
each embedded PNG's base64 data becomes ``<PNG>`` (figures come from matplotlib, whose bytes may
differ between versions; the text around them is what the report code writes).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

GOLDEN = Path(__file__).parent / "data" / "report_golden"
CASES = ("groups", "fitted", "run")


def _rows(rng, n_patients, tasks, *, prefix="img", extra=None):
    rows = []
    for k in range(n_patients):
        task = tasks[k % len(tasks)]
        y = int(rng.random() < 0.5)
        for j in range(1 + k % 3):  # one to three photos per patient
            row = {"image_path": f"{prefix}/{k}_{j}.jpg", "patient_id": f"p{k:03d}", "task": task,
                   "y_true": y, "y_prob": float(np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2), 0.001, 0.999))}
            row.update(extra(k) if extra else {})
            rows.append(row)
    return pd.DataFrame(rows)


def _groups(tmp):
    from skin_cnn.core.specs import EvalSettings
    from skin_cnn.reporting import ReportInputs

    rng = np.random.default_rng(11)
    preds = _rows(rng, 70, ["acne_vs_rosacea", "psoriasis_vs_eczema"], extra=lambda k: {
        "split_group": f"g{k // 2}", "source": ["clinic A", "clinic B"][k % 2],
        "fitzpatrick_scale": [1, 2, 3, None, 5][k % 5], "synthetic": True})
    return preds, dict(settings=EvalSettings(n_bootstrap=150, seed=3),
                       inputs=ReportInputs(by=("source",), fairness=("fitzpatrick_scale",), source="synthetic.csv"))


def _fitted(tmp):
    from skin_cnn.core.specs import EvalSettings
    from skin_cnn.evaluation.threshold import parse_threshold, resolve_thresholds
    from skin_cnn.evaluation.threshold_choice import ThresholdFitting
    from skin_cnn.reporting import ReportInputs

    rng = np.random.default_rng(5)
    tasks = ["acne_vs_rosacea", "ctcl_vs_eczema"]
    test = _rows(rng, 60, tasks)
    val = _rows(rng, 50, tasks, prefix="val")
    val["patient_id"] = "v" + val["patient_id"]
    rule = parse_threshold("youden")
    thresholds, method = resolve_thresholds(rule, tasks, val, "val.csv", evaluated=test, evaluated_name="test.csv")
    inputs = ReportInputs(source="test.csv", test_evaluations={"count": 2, "split": "test"},
                          threshold_fit=ThresholdFitting({t: rule for t in thresholds}, val, source="val.csv"))
    return test, dict(thresholds=thresholds, threshold_method=method, inputs=inputs,
                      settings=EvalSettings(n_bootstrap=120, seed=1, bootstrap_method="bca", auc_ci="wald"))


def _run(tmp):
    from skin_cnn.core.specs import EvalSettings
    from skin_cnn.evaluation import duplicates, flow
    from skin_cnn.evaluation.shortcut import REGIONS
    from skin_cnn.reporting import ReportInputs, run_context

    rng = np.random.default_rng(8)
    preds = _rows(rng, 40, ["psoriasis_vs_eczema"])
    run = tmp / "run"
    run.mkdir()
    split = pd.concat([preds.drop_duplicates("image_path")[["image_path", "patient_id"]].assign(
        diagnosis="psoriasis", split="test"),
        pd.DataFrame({"image_path": [f"train/{i}.jpg" for i in range(30)], "patient_id": [f"t{i}" for i in range(30)],
                      "diagnosis": ["eczema", "psoriasis"] * 15, "split": ["train"] * 24 + ["val"] * 6})])
    split.to_csv(run / "split.csv", index=False)
    (run / "config.json").write_text(json.dumps({
        "train": {"variant": "P", "weights": "imagenet", "epochs": 12, "patience": 3, "lr_patience": 2,
                  "lr_factor": 0.5, "seed": 7, "zoom": 0.2},
        "preprocessing": {"image_size": [250, 250], "crop": True, "resize": "stretch"},
        "versions": {"tensorflow": "2.21"}}), encoding="utf-8")
    pd.DataFrame({"epoch": [1, 2, 3, 4], "val_mean_auc": [0.7, 0.81, 0.8, 0.79]}).to_csv(run / "history.csv",
                                                                                        index=False)
    record = flow.start_record(run / "split.csv", split)
    chain = flow.append_step(flow.chain(record, "test"), flow.evaluation_step(preds, []))
    pairs = pd.DataFrame({"image_path": ["img/1_0.jpg"], "patient_id": ["p001"], "train_image_path": ["train/3.jpg"],
                          "train_patient_id": ["t3"], "similarity": [0.93], "feature_similarity": [0.87],
                          "pixel_correlation": [0.93]})
    leakage = {"audit": duplicates.audit_summary(pairs, preds["image_path"].nunique(), 30), "pairs": pairs}
    shares = rng.dirichlet(np.ones(len(REGIONS)), size=8)
    shortcut = pd.DataFrame({"image_path": [f"img/{i}_0.jpg" for i in range(8)], "task": "psoriasis_vs_eczema",
                             "y_prob": rng.random(8),
                             **{f"mass_{r}": shares[:, i] for i, r in enumerate(REGIONS)},
                             **{f"area_{r}": shares[::-1, i] for i, r in enumerate(REGIONS)}})
    shortcut.attrs.update(unreadable=[], border=0.1, watermarks=())
    inputs = ReportInputs(flow=chain, source=f"{run} (test split)", test_evaluations={"count": 1, "split": "test"},
                          run=run_context(run), image_base=run, shortcut=shortcut, leakage=leakage)
    return preds, dict(settings=EvalSettings(n_bootstrap=100, seed=2), inputs=inputs)


BUILDERS = {"groups": _groups, "fitted": _fitted, "run": _run}


def write_case(name, tmp):
    """Evaluate case ``name`` into ``tmp/out``; returns the folder."""
    from skin_cnn.reporting import write_evaluation

    tmp = Path(tmp)
    predictions, kwargs = BUILDERS[name](tmp)
    out = tmp / "out"
    write_evaluation(predictions, out, **kwargs)
    return out


def normalise(text, tmp):
    """The document with the temporary folder as ``<TMP>`` and embedded PNGs as ``<PNG>``."""
    for folder in sorted({str(Path(tmp)), str(Path(tmp).resolve())}, key=len, reverse=True):
        text = text.replace(folder, "<TMP>")
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,<PNG>", text)


if __name__ == "__main__":  # rewrite the golden documents (only when the report changes on purpose)
    import tempfile

    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            out = write_case(case, tmp)
            for ext in ("md", "html"):
                text = normalise((out / f"report.{ext}").read_text(encoding="utf-8"), tmp)
                (GOLDEN / f"{case}.{ext}").write_text(text, encoding="utf-8")
                print(case, ext, len(text))
