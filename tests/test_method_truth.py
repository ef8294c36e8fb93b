"""The method as documented and reported is the method that ran: docs, README and reports are
checked against ``RECIPES`` and a run's resolved settings."""
import re
from pathlib import Path

import pytest

from skin_cnn.evaluation.method import method_rows
from skin_cnn.training.config import RECIPES, TrainConfig, recipe_table, resolve_config

ROOT = Path(__file__).resolve().parents[1]


def _recipe(name):
    return resolve_config(dict(RECIPES[name], split="s.csv", out="o"))


def test_the_recipe_table_in_the_training_docs_is_the_one_recipes_generate():
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- recipe-table:begin -->\n(.*?)\n<!-- recipe-table:end -->", text, re.S)
    assert block, "docs/training.md has no generated recipe table"
    assert block.group(1) == recipe_table(), (
        "docs/training.md: the recipe table is out of step with RECIPES; regenerate it with "
        "skin_cnn.training.config.recipe_table()")


def test_the_readme_says_whether_the_frozen_linear_recipe_crops_as_recipes_does():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = text[text.index("`--recipe frozen-linear` is the recipe"):].split("\n\n")[0]
    crops = _recipe("frozen-linear").crop
    says_no_crop = bool(re.search(r"\b(no|without( the)?) hue crop", paragraph))
    assert says_no_crop == (not crops), paragraph
    flag_line = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    expected = "--no-crop" if not crops else "--crop"
    assert re.search(rf"`--recipe frozen-linear` is `[^`]*{expected}\b", flag_line)


def test_a_linear_run_lists_its_regression_and_none_of_the_study_optimiser_or_augmentation():
    config = _recipe("frozen-linear")
    rows = {name: value for _, name, value in method_rows(config.to_dict(), feature_cache=True,
                                                          chosen_c={"acne_vs_rosacea": 0.03})}
    text = " ".join(f"{k} {v}" for k, v in rows.items())
    for absent in ("Optimizer", "Epochs", "learning rate", "zoom", "rotation", "flips", "adam"):
        assert absent not in text, absent
    assert "logistic regression" in rows["Heads"] and "acne_vs_rosacea 0.03" in rows["C chosen"]
    assert rows["Augmentation"] == "none" and "mirror" in rows["Mirror views"]
    assert "blocks 4 and 5" in rows["Pooled features"] and "square-rooted" in rows["Pooled features"]
    assert "Youden" in rows["Threshold"] and rows["Hue-clustering crop"].startswith("off")


@pytest.mark.parametrize("settings, augmented", [
    (dict(), True),  # the study: cached views of augmented photos
    (dict(cache_views=0), False),  # features cached without views: no photo was augmented
    (dict(feature_cache="off"), True),  # augmented every epoch
    (dict(zoom=0, rotation=0, translation=0, flip=False, feature_cache="off"), False),
    (dict(head="linear", cache_views=2), True),  # the linear heads on augmented views
])
def test_augmentation_is_listed_only_when_a_training_photo_was_augmented(settings, augmented):
    config = TrainConfig(**settings)
    rows = {name: value for _, name, value in method_rows(config.to_dict(), feature_cache=config.use_feature_cache())}
    assert (rows["Augmentation"] != "none") == augmented, rows["Augmentation"]
    assert ("Optimizer" in rows) == (config.head == "mlp")


@pytest.mark.parametrize("settings, platt", [
    (dict(head="linear", calibration="sigmoid"), True),
    (dict(head="linear"), False),
])
def test_a_linear_run_says_whether_its_probabilities_were_platt_scaled(settings, platt):
    rows = {name: value for _, name, value in method_rows(TrainConfig(**settings).to_dict(), feature_cache=True)}
    assert ("Platt" in rows["Calibration"]) == platt, rows["Calibration"]


@pytest.mark.parametrize("settings, platt", [(dict(), True), (dict(calibration="none"), False)])
def test_the_study_heads_say_whether_their_probabilities_were_platt_scaled(settings, platt):
    rows = {name: value for _, name, value in method_rows(TrainConfig(**settings).to_dict(), feature_cache=True)}
    assert ("Platt" in rows["Calibration"]) == platt, rows["Calibration"]


def _blocks_named(text):
    """{4, 5} from 'blocks 4–5 trained, …', {5} from 'block 5 trained, …', 1–5 from 'all five …'."""
    if text.startswith("all five blocks"):
        return set(range(1, 6))
    span = text.split(" trained")[0].split(" ")[-1]
    low, _, high = span.partition("–")
    return set(range(int(low), int(high or low) + 1))


@pytest.mark.parametrize("tuned", [1, 2, 3, 4, 5])
def test_the_trunk_row_names_the_blocks_the_model_trains(tuned):
    from skin_cnn.evaluation.method import trained_blocks_text
    from skin_cnn.models import build_model

    model = build_model("P", input_shape=(32, 32, 3), weights=None, fine_tune_blocks=tuned)
    trains = {int(layer.name[5]) for layer in model.layers
              if layer.name.startswith("block") and layer.trainable and layer.weights}
    assert _blocks_named(trained_blocks_text(tuned)) == trains


@pytest.mark.parametrize("settings, blocks", [
    (dict(variant="P"), None),
    (dict(variant="P", fine_tune_blocks=1), {5}),
    (dict(variant="PS", fine_tune_blocks=2), {4, 5}),
    (dict(variant="N"), None),
])
def test_the_training_curves_title_names_the_blocks_a_fine_tuned_run_trained(settings, blocks):
    from skin_cnn.training.trainer import curves_title

    title = curves_title(TrainConfig(**settings))
    assert title.startswith(f"VGG-16{settings['variant']}")
    if blocks is None:
        assert "trained" not in title
    else:
        assert _blocks_named(title.split(", ", 1)[1]) == blocks
    assert curves_title(TrainConfig(**settings), synthetic=True) == title + " (synthetic demo data)"
