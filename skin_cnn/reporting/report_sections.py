"""Report sections beyond the accuracy tables: run, calibration, fairness, failures, checklists.

Each ``add_*`` function appends its blocks to a :class:`skin_cnn.reporting.report.Report` and
returns the anchors of what it added with a one-line summary, ``{key: (anchor, text)}``, which
the checklist section (:func:`add_checklists`) links to. A section the evaluation has no data
for is not added, so the checklist never points to something the run does not contain.
"""

from __future__ import annotations

from skin_cnn.reporting.cells import fmt_gap, metric_cell
from skin_cnn.core.tasks import task_title


def _num(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}"


def threshold_summary(metrics):
    """How the threshold was fixed, for the checklist."""
    method = metrics.get("threshold_method", "fixed")
    if method == "fixed":
        return "pre-specified fixed threshold, not chosen on the evaluated images"
    return f"fitted before this evaluation on predictions of other images and applied unchanged ({method})"


def flow_summary(flow):
    """Steps and exclusions of a flow chain, for the checklist."""
    steps = flow.get("steps", [])
    excluded = sum(n for s in steps for n in (s.get("excluded") or {}).values() if n)
    reasons = {r for s in steps for r, n in (s.get("excluded") or {}).items() if n}
    return (f"{len(steps)} steps; {excluded} image(s) excluded"
            + (f" for {len(reasons)} stated reason(s)" if reasons else ""))


# ---------------------------------------------------------------------------------------------
# the run folder


def _setting_rows(train, keys):
    return [[label, f"`{train[k]}`"] for k, label in keys if k in train]


def add_run(rep, run):
    """Partitions (baseline, disjointness), preprocessing, model specification and training."""
    out = {}
    train = run.get("train") or {}
    if run.get("baseline"):
        header, rows = run["baseline"]
        out["baseline"] = (rep.heading("Baseline characteristics per partition"),
                           f"{len(header) - 1} partitions of the run's split.csv")
        rep.para("Counts of the run's `split.csv`, per partition; `unknown` where a value is missing.")
        rep.table(header, rows)
    if run.get("disjointness") is not None:
        out["partitions"] = _add_disjointness(rep, run["disjointness"])
    if train:
        out["preprocessing"] = _add_preprocessing(rep, run)
        out["model"] = _add_model(rep, run, train)
    training = _add_training(rep, run, train)
    if training:
        out["training"] = training
    return out


def _add_disjointness(rep, checks):
    """Whether any patient or split group lies in two partitions; returns (anchor, verdict)."""
    anchor = rep.heading("Partitions are disjoint")
    lines, ok = [], True
    for check in checks:
        if check["disjoint"]:
            lines.append(f"`{check['column']}`: each of {check['n_values']} values lies in one "
                         "partition only" + (f"; {check['n_missing']} rows without a value are "
                                             "their own unit" if check["n_missing"] else "") + ".")
        else:
            ok = False
            shown = "; ".join(f"{v} ({', '.join(s)})" for v, s in list(check["shared"].items())[:10])
            lines.append(f"**`{check['column']}`: {len(check['shared'])} value(s) lie in more than "
                         f"one partition** — {shown}.")
    if not checks:
        lines.append("The split has neither `patient_id` nor `split_group`: disjointness cannot be "
                     "checked beyond single images.")
        ok = None
    rep.para("Computed from the run's `split.csv` when this report was written, not taken from "
             "the split's own record.")
    rep.items(lines)
    verdict = ("no patient or split group in two partitions" if ok
               else "NOT disjoint: see the section" if ok is False else "not checkable")
    return anchor, verdict


def _add_preprocessing(rep, run):
    """The preprocessing steps that took effect; returns (anchor, summary)."""
    anchor = rep.heading("Preprocessing and augmentation")
    pre = run.get("preprocessing") or {}
    rows = []
    if pre:
        size = pre.get("image_size")
        rows.append(["Model input", f"`{size}` pixels, resize `{pre.get('resize')}`, "
                                    f"antialias `{pre.get('antialias')}`"])
        rows.append(["Hue-clustering crop", f"`{pre.get('crop')}`"
                     + (f" (`{pre['crop_params']}`)" if pre.get("crop") and pre.get("crop_params") else "")])
    method = run.get("method") or []
    steps = [[name, value] for section, name, value in method
             if section == "preprocessing" and name not in ("Model input", "Hue-clustering crop")]
    rows += steps
    rep.para("From the run's `config.json`, listing only the steps that took effect.")
    rep.table(["Setting", "Value"], rows)
    return (anchor, f"input {pre.get('image_size', '?')}, crop {pre.get('crop', '?')}; "
            + "; ".join(f"{name.lower()}: {value}" for name, value in steps))


def _add_model(rep, run, train):
    """Variant, weights, file hashes, a changed split and versions; returns (anchor, summary)."""
    anchor = rep.heading("Model specification")
    rows = _setting_rows(train, (("variant", "Variant"), ("weights", "Initial trunk weights")))
    rows += [[name, value] for section, name, value in (run.get("method") or []) if section == "model"]
    for name, digest in (run.get("files") or {}).items():
        rows.append([f"SHA-256 of `{name}`", f"`{digest}`"])
    if run.get("split_sha256"):
        rows.append(["SHA-256 of the split trained on", f"`{run['split_sha256']}`"])
    change = run.get("split_change")
    if change:
        moved = change.get("moved") or []
        rows.append(["**Split changed since training**",
                     f"{change['text']} (evaluated anyway: `--allow-changed-split`)"
                     + (f". Images in another split: {'; '.join(moved[:20])}"
                        + (f" … and {len(moved) - 20} more" if len(moved) > 20 else "") if moved else "")])
    versions = run.get("versions") or {}
    if versions:
        rows.append(["Versions", ", ".join(f"{k} {v}" for k, v in versions.items())])
    rep.table(["Item", "Value"], rows)
    digest = (run.get("files") or {}).get("best.keras")
    return (anchor, f"variant {train.get('variant')}"
                    + (f", best.keras SHA-256 {digest[:12]}…" if digest else ", no model file hash")
                    + (f", TensorFlow {versions['tensorflow']}" if "tensorflow" in versions else "")
                    + f", seed {train.get('seed')}")


def _add_training(rep, run, train):
    """The stopping rule of an epoch-trained run, or the closed-form fit of linear heads;
    returns (anchor, summary), or None when the run records neither."""
    hist = run.get("history")
    if hist:
        anchor = rep.heading("Training and stopping rule")
        rule = (f"Training ran {hist['epochs_run']} of at most {hist['max_epochs']} epochs and keeps the "
                f"model of the epoch with the best validation mean AUC (`{hist['monitor']}`): epoch "
                f"{hist['best_epoch']}" + (f", {hist['best_value']:.4f}" if hist.get("best_value") is not None else "")
                + f". Early stopping after {hist['patience']} epochs without improvement; the learning "
                f"rate is multiplied by {hist['lr_factor']} after {hist['lr_patience']} epochs without "
                "improvement. The per-epoch log is the run's `history.csv`.")
        if hist.get("finished") is False:
            rule += " **The run did not finish.**"
        rep.para(rule)
        if run.get("training_curves"):
            rep.image(run["training_curves"], "Training curves (training_curves.png of the run)")
        return (anchor, f"{hist['epochs_run']} epochs, best epoch {hist['best_epoch']} by "
                                   f"validation mean AUC, patience {hist['patience']}")
    elif train.get("head") == "linear" and run.get("linear_fit"):
        anchor = rep.heading("Model fitting")
        fits = run["linear_fit"].get("tasks") or {}
        rep.para("No epochs: each task's logistic regression is fitted in closed form on the train and validation "
                 "images together; its strength C was chosen by patient-grouped inner cross-validation (AUC) "
                 "and the regression refitted on all of them (the run's `linear_fit.json`).")
        rep.table(["Task", "C chosen", "Inner out-of-fold AUC", "Images"],
                  [[t, f"{e['C']:g}", f"{e['inner_cv_auc']:.3f}", str(e.get("n", ""))] for t, e in fits.items()])
        return (anchor, "closed-form logistic regressions, C by grouped inner cross-validation: "
                           + ", ".join(f"{t} C={e['C']:g}" for t, e in fits.items()))
    return None


# ---------------------------------------------------------------------------------------------
# calibration, fairness, failures


def add_calibration(rep, calibration, figure=None):
    """ECE beside the ECE a calibrated model would show, Brier score, calibration slope and
    intercept per task, with the reliability diagram."""
    anchor = rep.heading("Calibration")
    first = next(iter(calibration.values()))
    reference = first.get("ece_if_calibrated")
    rep.para(
        f"ECE: {first['binning']} (the bins of the reliability diagram). "
        + (f"Even a perfectly calibrated model shows an ECE above 0 on a finite set: the next column is "
           f"the ECE such a model with these probabilities would show on this many images: its median and "
           f"the value 95% of {reference['n_resamples']:,} draws stay at or under, each draw taking the "
           f"outcomes from the probabilities themselves (seed {reference['seed']}); p is the share of draws "
           f"at or above the ECE measured (small p: more miscalibration than chance explains). "
           if reference else "")
        + "Brier score: mean of (p − y)². Calibration slope and intercept: logistic regression of the "
        "reference standard on logit(p), unpenalised; a calibrated model has slope 1 and intercept 0, a "
        "slope below 1 means probabilities too extreme. Point estimates, without intervals."
    )
    header = ["Task", "ECE"] + (["ECE of a calibrated model: median (95%); p"] if reference else [])
    rep.table(
        header + ["Brier score", "Calibration slope", "Calibration intercept"],
        [[task_title(t), _num(c["ece"])]
         + ([_ece_reference(c.get("ece_if_calibrated"))] if reference else [])
         + [_num(c["brier"]),
            _num(c["slope"], 2) if c["slope"] is not None else f"n/a ({c['note']})",
            _num(c["intercept"], 2) if c["intercept"] is not None else "n/a"]
         for t, c in calibration.items()],
    )
    if figure:
        rep.image(figure, "Calibration (reliability diagram)")
    return anchor, ("ECE (10 equal-width bins) beside that of a calibrated model, Brier score, slope and "
                    "intercept per task; reliability diagram")


def _ece_reference(reference):
    if not reference:
        return "n/a"
    return f"{_num(reference['median'])} (up to {_num(reference['p95'])}); p = {reference['p_value']:.2f}"


def add_fairness(rep, result, figure=None):
    """Per-group table, gaps with bootstrap intervals, forest plot and small-group statements."""
    from skin_cnn.evaluation.fairness import FAIRNESS_METRICS, small_statements

    column = result["column"]
    anchor = rep.heading(f"Fairness by {column}")
    boot = result.get("bootstrap")
    rep.para(
        f"AUC, sensitivity and specificity per value of `{column}`, at the threshold of the whole "
        "evaluation. Rows without a value (in a Fitzpatrick column also a value that is no skin type 1–6, "
        f"such as -1 for not assessed) form the group **unknown** ({result['n_unknown']} "
        "prediction rows), shown but left out of the gaps, as it mixes types. A group enters a "
        f"metric's gap only with at least {result['min_count']} images behind it (positive images "
        "for sensitivity, negative for specificity, both for the AUC). The gap is the highest minus "
        "the lowest group value; its interval "
        + (f"comes from {boot['n_resamples']:,} bootstrap resamples (seed {boot['seed']}) drawn "
           f"within each group, by {boot['unit'] or 'image'}, with the pair of groups kept fixed; an "
           "interval reaching zero shows no difference. The pair is chosen on these data, so "
           "the interval is exploratory." if boot else "was not computed (no bootstrap).")
    )
    rows = []
    for task, entry in result["tasks"].items():
        for group, e in entry["groups"].items():
            rows.append([task_title(task), group, f"{e['n_images']} ({e['n_positive']}/{e['n_negative']})",
                         "—" if e["n_patients"] is None else e["n_patients"],
                         *(metric_cell(m, e) for m in FAIRNESS_METRICS)])
    rep.table(["Task", column, "n images (pos/neg)", "Patients", "AUC", "Sensitivity", "Specificity"], rows)
    gaps = []
    for task, entry in result["tasks"].items():
        for m, g in entry["gaps"].items():
            if g["value"] is None:
                gaps.append([task_title(task), m, "n/a", "", "", g["note"]])
            else:
                gaps.append([task_title(task), m, fmt_gap(g["value"], m), f"{g['high']} − {g['low']}",
                             f"{fmt_gap(g['ci'][0], m)} to {fmt_gap(g['ci'][1], m)}" if g["ci"] else "n/a",
                             g["note"] or ""])
    rep.para("**Largest between-group gap** (percentage points; for the AUC, a difference of proportions):")
    rep.table(["Task", "Metric", "Gap", "Groups (high − low)", "95% bootstrap interval", "Note"], gaps)
    statements = small_statements(result)
    if statements:
        rep.para("Groups too small to conclude anything from:")
        rep.items(statements)
    if figure:
        rep.image(figure, f"Forest plot by {column}")
    return anchor


def add_failures(rep, failures, figure=None):
    """The failure gallery: thumbnails, or a table of the cases when no image can be read."""
    cases = failures["cases"]
    anchor = rep.heading("Failure gallery")
    k = int(cases["rank"].max()) if not cases.empty else 0
    if cases.empty:
        rep.para("No false positive or false negative at the threshold: no gallery.")
        return {"failures": (anchor, "no errors to show")}
    rep.para(
        f"Per task, the {k} most confident false positives (reference negative, highest "
        "probability) and false negatives (reference positive, lowest probability)"
        + (", each with its Grad-CAM (where the model input speaks for the predicted class)."
           if failures.get("gradcam") else ".")
        + (f" {failures['missing']} image(s) could not be found and are marked so."
           if failures.get("missing") else "")
    )
    if figure:
        rep.image(figure, "Most confident false positives and false negatives")
        rep.para("The cases with their full paths are in `failures.csv`.")
        return {"failures": (anchor, f"{len(cases)} cases, up to {k} per task and error type"),
                **({"gradcam": (anchor, "Grad-CAM beside each failure")} if failures.get("gradcam") else {})}
    rep.para("The images could not be read from here, so the cases are listed instead.")
    rep.table(["Task", "Error", "Rank", "Image", "Probability"],
              [[task_title(r.task), r.kind, r.rank, f"`{r.image_path}`", f"{r.y_prob:.3f}"]
               for r in cases.itertuples()])
    return {"failures": (anchor, f"{len(cases)} cases listed (images not readable from here)")}


# ---------------------------------------------------------------------------------------------
# the checklists


def add_checklists(rep, sections):
    """TRIPOD+AI, CLAIM and STARD-AI: the items this report fills (linked) and the authors' ones."""
    from skin_cnn.reporting.checklist import AUTHORS, CHECKLISTS, checklist_rows, not_filled

    rep.heading("Reporting checklists")
    rep.para(
        "Items of TRIPOD+AI (2024), CLAIM (2024 update) and STARD-AI that this run fills, each "
        "linked to where this report answers it. TRIPOD+AI items carry their published numbers; "
        "CLAIM and STARD-AI items are named by topic. Only what this evaluation contains is "
        "listed as filled; everything else is the authors' to write."
    )
    rows = checklist_rows(sections)
    missing = not_filled(sections)
    if missing:
        rep.para("Not in this evaluation (and how to get it): " + "; ".join(missing) + ".")
    for name in CHECKLISTS:
        rep.heading(name, level=3)
        if rows[name]:
            rep.table(["Item", "Filled from this run"], rows[name])
        rep.para(f"**For the authors to fill:** {'; '.join(AUTHORS[name])}.")
