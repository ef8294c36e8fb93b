"""docs/experiments/transformer_params.py: the zoom and shift a PS fold model applies to its held-out photos."""
import json

import numpy as np
import pandas as pd
from PIL import Image

from experiment_scripts import load_experiment_script


def _script():
    return load_experiment_script("transformer_params.py")


def test_an_untrained_transformer_reports_the_identity_for_every_held_out_photo_and_nothing_else(tmp_path):
    from skin_cnn.models import build_model, with_model_info

    cv = tmp_path / "cv"
    (cv / "fold1").mkdir(parents=True)
    model = build_model("PS", input_shape=(32, 32, 3), weights=None, seed=0)
    with_model_info(model, preprocessing={"image_size": [32, 32], "crop": False}).save(cv / "fold1" / "best.keras")
    rng = np.random.default_rng(0)
    rows = []
    for i, split in enumerate(["train", "test", "test", "val", "test"]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
        rows.append({"image_path": str(path), "patient_id": f"p{i}", "diagnosis": "acne", "split": split})
    pd.DataFrame(rows).to_csv(cv / "fold1_split.csv", index=False)

    _script().main(["--cv", str(cv), "-o", str(tmp_path / "out.json")])
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["fold1"]["n"] == result["pooled"]["n"] == 3  # the test rows only
    # a zero kernel and the bias (1, 1, 0, 0): the identity for every photo, whatever its pixels
    for name, expected in (("s_x", 1.0), ("s_y", 1.0), ("t_x", 0.0), ("t_y", 0.0), ("area", 1.0)):
        entry = result["pooled"][name]
        assert abs(entry["mean"] - expected) < 1e-6 and entry["sd"] < 1e-6, name
    assert result["pooled"]["share_area_below_0.9"] == 0.0


def test_the_summary_matches_numpy_on_hand_made_parameters():
    summary = _script().summary(np.array([[0.8, 1.0, 0.1, 0.0], [1.0, 1.0, -0.1, 0.2], [0.9, 0.9, 0.0, 0.1]]))
    assert summary["n"] == 3
    np.testing.assert_allclose(summary["area"]["mean"], np.mean([0.8, 1.0, 0.81]))
    np.testing.assert_allclose(summary["s_x"]["sd"], np.std([0.8, 1.0, 0.9], ddof=1))
    assert summary["share_area_below_0.9"] == 2 / 3  # 0.8 and 0.81
