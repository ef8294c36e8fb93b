"""Fit the linear heads (``--head linear``): one L2 logistic regression per task on frozen features.

With a few hundred photos per task, a regularised logistic regression on frozen ImageNet features
is hard to beat and has no training curve to watch: no epochs, learning rate, early stopping or
seed-dependent optimisation. Each task's images (train and validation together: nothing has to be
held back for early stopping) are standardised, and the inverse regularisation strength ``C`` is
chosen by a patient-grouped, disease-stratified inner cross-validation scored by AUC
(scikit-learn's ``StratifiedGroupKFold``; the scaler is fitted inside each fold). The same
splits give every training image an out-of-fold probability, on which the task's threshold is fitted
(Youden by default) and reported as the run's validation result.

The fitted standardisation is folded into the weights of the model's sigmoid ``Dense`` layer of
each task (``w / σ`` and ``b − Σ w μ / σ``), so the saved model is an ordinary Keras model that
computes exactly the fitted regression on its pooled features.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from skin_cnn.core.tasks import TASKS
# inverse L2 strengths tried for every task (standardised features, so one grid fits all sizes) and
# the inner folds: defined beside the method text that reports them
from skin_cnn.evaluation.method import C_GRID, INNER_FOLDS  # noqa: F401 (re-exported)


def on_one_blas_thread(function):
    """Run ``function`` with the BLAS library (OpenBLAS, MKL) limited to one thread.

    The regressions here multiply a few hundred rows by a few thousand features, thousands of
    times: too small for threads to pay, and on a CPU shared with other processes (TensorFlow,
    another fold) BLAS threads waiting for each other made the inner fits about 20 times slower
    (``benchmarks/bench_linear_fit_threads.py``). TensorFlow's own threads are not affected.
    """
    @functools.wraps(function)
    def one_thread(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return one_thread


@dataclass
class LinearFit:
    """One task's fitted logistic regression, in the units of the raw pooled features."""

    task: str
    kernel: np.ndarray
    bias: float
    C: float
    inner_auc: float
    n: int
    positives: int
    rows: np.ndarray = field(repr=False)
    oof_probability: np.ndarray = field(repr=False)
    calibration: dict | None = None

    def to_dict(self):
        out = {"task": self.task, "C": self.C, "inner_cv_auc": self.inner_auc, "n": self.n,
               "positives": self.positives}
        return out if self.calibration is None else dict(out, calibration=self.calibration)


def group_ids(frame):
    """The unit the inner folds keep whole: ``split_group``, else the patient, else the photo."""
    from skin_cnn.data.manifest import patient_key

    if "split_group" in frame.columns and frame["split_group"].notna().all():
        return np.unique(frame["split_group"].astype(str), return_inverse=True)[1]
    ids = frame["patient_id"].fillna("").map(patient_key) if "patient_id" in frame.columns else None
    keys = [f"patient:{p}" if p else f"image:{i}" for i, p in enumerate(ids if ids is not None else [""] * len(frame))]
    return np.unique(keys, return_inverse=True)[1]


def inner_splits(y, groups, seed, n_splits=INNER_FOLDS):
    """Grouped, class-stratified folds; fewer when a class has fewer groups than folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    per_class = min(len(np.unique(groups[y == c])) for c in (0, 1))
    k = min(int(n_splits), per_class)
    if k < 2:
        raise ValueError(f"the linear head needs at least 2 patients (groups) of each class per task; "
                         f"got {per_class}")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=int(seed))
    return list(splitter.split(np.zeros(len(y)), y, groups))


def _regression(c, x, y, sample_weight=None):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=float(c), max_iter=5000))
    return model.fit(x, y, logisticregression__sample_weight=sample_weight)


@on_one_blas_thread
def fit_task(x, y, groups, *, seed=0, sample_weight=None, task="", c_grid=C_GRID):
    """Fit one task: C by inner grouped CV, then the regression on all rows.

    Every C of ``c_grid`` is fitted on each inner training part (scaler included) and scored
    by the mean AUC of its held-out parts; the best C (the smallest among equals: the strongest
    regularisation) is refitted on all rows. Its held-out probabilities are the out-of-fold
    answers.

    Parameters
    ----------
    x : array (n, d)
        Pooled features of the task's images (one row per image and view).
    y : array (n,)
        1 for the task's positive disease.
    groups : array (n,)
        Rows sharing a group (views of one photo, photos of one patient) stay in one inner fold.
    c_grid : sequence of float
        The inverse L2 strengths tried, in any order (:data:`C_GRID`, the values the method text
        reports, unless an experiment asks for others).

    Returns
    -------
    LinearFit
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    splits = inner_splits(y, np.asarray(groups), seed)
    c_grid = np.sort(np.asarray(c_grid, dtype=np.float64))
    oof = np.zeros((len(c_grid), len(y)))
    scores = np.zeros((len(c_grid), len(splits)))
    for k, (train, held) in enumerate(splits):
        scaler = StandardScaler().fit(x[train], sample_weight=None if weight is None else weight[train])
        z_train, z_held = scaler.transform(x[train]), scaler.transform(x[held])
        # along the grid from strong to weak regularisation, each fit starts from the last one
        regression = LogisticRegression(max_iter=5000, warm_start=True)
        for i, c in enumerate(c_grid):
            regression.set_params(C=float(c))
            regression.fit(z_train, y[train], sample_weight=None if weight is None else weight[train])
            oof[i, held] = regression.predict_proba(z_held)[:, 1]
            scores[i, k] = roc_auc_score(y[held], oof[i, held])
    i = int(np.argmax(scores.mean(axis=1)))  # the first (strongest) among equal means
    best = (float(scores[i].mean()), float(c_grid[i]), oof[i])
    _, c, oof = best
    final = _regression(c, x, y, weight)
    scaler, regression = final[0], final[-1]
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    kernel = regression.coef_[0] / scale
    bias = float(regression.intercept_[0] - np.sum(kernel * scaler.mean_))
    return LinearFit(task=task, kernel=kernel, bias=bias, C=c, inner_auc=float(roc_auc_score(y, oof)),
                     n=int(len(y)), positives=int(y.sum()), rows=np.arange(len(y)), oof_probability=oof)


def fit_linear_heads(features, image_of_row, clean, diagnoses, groups, *, seed=0, tasks=tuple(TASKS),
                     c_grid=C_GRID):
    """Fit every task on the images of its two diseases.

    Parameters
    ----------
    features : array (m, d)
        Pooled features, one row per image and view.
    image_of_row : array (m,)
        Image (index into ``diagnoses``) of every row; views of one image stay in one inner fold.
    clean : array (m,) of bool
        The row of each image's clean view (exactly one per image): out-of-fold probabilities,
        and the thresholds fitted on them, are of the photo as a user would send it.
    diagnoses : array (n,)
    groups : array (n,)
        :func:`group_ids` of the images.
    c_grid : sequence of float
        Passed to :func:`fit_task`.

    Returns
    -------
    dict of str -> LinearFit
        ``rows``: the images of the task; ``oof_probability``: their clean view's out-of-fold
        probability.
    """
    x = np.asarray(features)
    image_of_row = np.asarray(image_of_row, dtype=np.int64)
    clean = np.asarray(clean, dtype=bool)
    diagnoses = np.asarray(diagnoses)
    groups = np.asarray(groups)
    if np.bincount(image_of_row[clean], minlength=len(diagnoses)).tolist() != [1] * len(diagnoses):
        raise ValueError("every image needs exactly one clean-view row")
    fits = {}
    for name in tasks:
        task = TASKS[name]
        labels = np.array([task.label(d) for d in diagnoses], dtype=object)
        images = np.flatnonzero(labels != None)  # noqa: E711 (element-wise)
        if len(images) == 0:
            raise ValueError(f"no training images of {task.positive} or {task.negative} for {name}")
        y_image = np.zeros(len(diagnoses), dtype=np.int64)
        y_image[images] = labels[images].astype(np.int64)
        if y_image[images].min() == y_image[images].max():
            missing = task.negative if y_image[images[0]] == 1 else task.positive
            raise ValueError(f"{name}: the training images hold no {missing}; the linear head needs both classes")
        rows = np.flatnonzero(labels[image_of_row] != None)  # noqa: E711
        fit = fit_task(x[rows], y_image[image_of_row[rows]], groups[image_of_row[rows]], seed=seed, task=name,
                       c_grid=c_grid)
        clean_rows = clean[rows]
        order = np.argsort(image_of_row[rows][clean_rows])
        fit.rows = image_of_row[rows][clean_rows][order]
        fit.oof_probability = fit.oof_probability[clean_rows][order]
        fit.inner_auc = _auc(y_image[fit.rows], fit.oof_probability)
        fit.n = int(len(fit.rows))
        fit.positives = int(y_image[fit.rows].sum())
        fits[name] = fit
    return fits


def _auc(y, p):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def set_linear_heads(model, fits):
    """Write fitted regressions into the model's sigmoid layer of each task."""
    for name, fit in fits.items():
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        if kernel.shape != (len(fit.kernel), 1):
            raise ValueError(f"{name}: the model's head takes {kernel.shape[0]} features; the fit has "
                             f"{len(fit.kernel)}")
        layer.set_weights([fit.kernel.reshape(kernel.shape).astype(kernel.dtype),
                           np.asarray([fit.bias], dtype=bias.dtype)])


def platt_parameters(y, p):
    """Slope ``a`` and intercept ``b`` of Platt scaling: ``sigmoid(a · logit(p) + b)`` fitted to ``y``.

    Fitted (unregularised logistic regression on the logit) on out-of-fold probabilities only, so
    the map corrects how the regression's held-out answers are spread, not how it fits its own
    training rows. A logistic regression shrunk by a strong L2 penalty answers too close to 0.5
    (``a > 1`` corrects it).
    """
    from sklearn.linear_model import LogisticRegression

    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    logit = np.log(p / (1 - p))[:, None]
    model = LogisticRegression(C=1e6, max_iter=1000).fit(logit, np.asarray(y, dtype=np.int64))
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def calibrate_fit(fit, y, method="sigmoid"):
    """``fit`` with Platt scaling folded into its weights: ``a · (w·x + c) + b`` is again linear.

    The calibrated model is still one sigmoid ``Dense`` per task, so nothing changes for predict,
    serve or export. Its out-of-fold probabilities are mapped the same way (the map was fitted on
    them, as scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` fits on cross-validated
    predictions); nested, held-out calibration is what ``skin-cnn cv`` measures.
    """
    if method != "sigmoid":
        raise ValueError(f"calibration must be 'none' or 'sigmoid'; got {method!r}")
    a, b = platt_parameters(y, fit.oof_probability)
    fit.calibration = {"method": "sigmoid", "a": a, "b": b}
    fit.kernel, fit.bias = fit.kernel * a, a * fit.bias + b
    fit.oof_probability = apply_platt(fit.oof_probability, fit.calibration)
    return fit


def calibrate_fits(fits, diagnoses, method="none"):
    """Platt-scale every task's fit (:func:`calibrate_fit`) unless ``method`` is ``"none"``."""
    if method == "none":
        return fits
    diagnoses = np.asarray(diagnoses)
    for name, fit in fits.items():
        y = np.array([TASKS[name].label(d) for d in diagnoses[fit.rows]], dtype=np.int64)
        calibrate_fit(fit, y, method)
    return fits


def apply_platt(p, calibration):
    """Probabilities ``p`` through a stored Platt map (``{"a", "b"}``); unchanged when None."""
    if not calibration:
        return np.asarray(p, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return 1 / (1 + np.exp(-(calibration["a"] * np.log(p / (1 - p)) + calibration["b"])))
