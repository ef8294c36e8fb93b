"""The default head schedule (the study's recipe) is the one the training page documents."""
import re
from pathlib import Path

from skin_cnn.training.config import RECIPES, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _table_default(page, option):
    row = next(line for line in page.splitlines() if line.startswith(f"| `{option}`"))
    return row.split("|")[2].strip()


def test_training_page_shows_the_default_schedule():
    page = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    defaults = TrainConfig()
    frozen, trained = (float(v) for v in _table_default(page, "--learning-rate").split(" / "))
    assert frozen == defaults.learning_rate == TrainConfig(variant="P").learning_rate
    assert trained == TrainConfig(variant="N").learning_rate == TrainConfig(fine_tune_blocks=1).learning_rate
    assert int(_table_default(page, "--epochs")) == defaults.epochs
    assert int(_table_default(page, "--patience")) == defaults.patience
    assert f"halves the rate after {defaults.lr_patience} epochs" in page
    assert RECIPES["study"] == {}  # the study's recipe is the defaults


def test_experiment_page_row_of_the_new_default_matches_the_defaults():
    page = (ROOT / "docs" / "experiments" / "study-recipe.md").read_text(encoding="utf-8")
    row = next(line for line in page.splitlines() if "(the new default)" in line)
    cells = [c.strip() for c in row.split("|")[1:-1]]
    defaults = TrainConfig()
    assert float(cells[1]) == defaults.learning_rate and int(cells[2]) == defaults.epochs
    assert int(cells[3]) == defaults.patience and int(cells[4]) == defaults.lr_patience
    best, run = ([int(v) for v in re.findall(r"\d+", cells[k])] for k in (6, 7))
    assert len(best) == len(run) == 5 and all(b < r for b, r in zip(best, run))
