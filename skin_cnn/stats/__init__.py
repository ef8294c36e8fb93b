"""The statistics of a diagnostic evaluation on plain arrays: NumPy and SciPy only, no tables.

* :mod:`~skin_cnn.stats.intervals` — Clopper–Pearson and logit (Mercaldo) intervals of
  proportions, sensitivity, specificity, PPV and NPV;
* :mod:`~skin_cnn.stats.delong` — the AUC with DeLong's variance, its interval and paired test;
* :mod:`~skin_cnn.stats.bootstrap` — the seeded, stratified cluster bootstrap of the metrics;
* :mod:`~skin_cnn.stats.calibration` — ECE, Brier score, calibration slope and intercept;
* :mod:`~skin_cnn.stats.threshold` — choosing a cut-off on validation scores;
* :mod:`~skin_cnn.stats.precision` — when a count is too small for its value to be quoted.

Nothing here knows the predictions table; :mod:`skin_cnn.evaluation` applies these to it.
"""
