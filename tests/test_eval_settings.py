"""EvalSettings: the interval settings as one checked value, and the functions that take it."""
import numpy as np
import pytest

from skin_cnn.core.specs import EvalSettings
from skin_cnn.stats.bootstrap import bootstrap_intervals
from skin_cnn.evaluation.metrics import task_metrics


def test_defaults_are_the_command_line_defaults():
    s = EvalSettings()
    assert (s.n_bootstrap, s.seed, s.confidence, s.bootstrap_method, s.auc_ci) == (2000, 0, 0.95, "percentile", "logit")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"confidence": 1.0}, r"^confidence must lie strictly between 0 and 1, got 1\.0$"),
        ({"confidence": 0}, r"^confidence must lie strictly between 0 and 1, got 0$"),
        ({"confidence": "0.9"}, r"^confidence must lie strictly between 0 and 1, got '0\.9'$"),
        ({"n_bootstrap": -1}, r"^n_bootstrap must be a whole number of resamples, 0 or more, got -1$"),
        ({"n_bootstrap": 2.5}, r"^n_bootstrap must be a whole number"),
        ({"seed": None}, r"^seed must be a whole number, got None$"),
        ({"bootstrap_method": "basic"}, r"^bootstrap_method must be one of percentile, bca, got 'basic'$"),
        ({"auc_ci": "exact"}, r"^auc_ci must be one of logit, wald, got 'exact'$"),
    ],
)
def test_an_out_of_range_setting_is_refused_with_one_line_naming_it(changes, message):
    with pytest.raises(ValueError, match=message) as err:
        EvalSettings(**changes)
    assert "\n" not in str(err.value)


def test_replace_checks_the_changed_value_and_keeps_the_rest():
    s = EvalSettings(seed=7, auc_ci="wald")
    assert s.replace(n_bootstrap=0) == EvalSettings(n_bootstrap=0, seed=7, auc_ci="wald")
    with pytest.raises(ValueError, match="confidence"):
        s.replace(confidence=2)


def test_settings_are_frozen_and_equal_by_value():
    s = EvalSettings()
    with pytest.raises(AttributeError):
        s.seed = 1  # type: ignore[misc]
    assert s == EvalSettings() and hash(s) == hash(EvalSettings())


def test_the_settings_reach_the_bootstrap_and_are_recorded():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(30), np.zeros(30)].astype(int)
    p = np.clip(0.3 * y + rng.random(60) * 0.7, 0, 1)
    settings = EvalSettings(n_bootstrap=120, seed=5, confidence=0.9, bootstrap_method="bca", auc_ci="wald")
    boot = bootstrap_intervals(y, p, settings=settings)
    assert (boot["n_resamples"], boot["seed"], boot["confidence"], boot["method"]) == (120, 5, 0.9, "bca")
    entry = task_metrics(y, p, settings=settings)
    assert entry["bootstrap"] == boot
    # a 90% interval is narrower than a 95% one of the same resamples
    wide = bootstrap_intervals(y, p, settings=settings.replace(confidence=0.95))
    assert wide["auc"][1] - wide["auc"][0] > boot["auc"][1] - boot["auc"][0]
    assert entry["auc"]["method"].startswith("delong") and task_metrics(y, p, settings=settings.replace(
        n_bootstrap=0))["auc"] != task_metrics(y, p, settings=EvalSettings(n_bootstrap=0))["auc"]


def test_no_bootstrap_interval_without_resamples():
    with pytest.raises(ValueError, match="n_bootstrap must be at least 1"):
        bootstrap_intervals([0, 1], [0.2, 0.8], settings=EvalSettings(n_bootstrap=0))
