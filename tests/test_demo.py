"""skin-cnn demo end to end at the smallest size: data, split, crop, training, evaluation report."""
import json

import pandas as pd

from skin_cnn.app.demo import DemoSettings, run_demo
from skin_cnn.core.tasks import DISEASES


def test_tiny_demo_produces_a_labelled_run_folder_and_report(tmp_path, monkeypatch):
    monkeypatch.delenv("SKIN_CNN_VGG16_WEIGHTS", raising=False)
    messages = []
    tiny = DemoSettings(n_patients_per_disease=3, images_per_patient=(1, 1), source_image_size=(48, 64),
                        image_size=32, epochs=1, batch_size=8)
    result = run_demo(tmp_path / "demo", settings=tiny, progress=False, echo=messages.append)
    # no ImageNet weights in the test environment: one line says so and VGG-16N runs instead
    assert result.variant == "N"
    assert sum("falling back" in m for m in messages) == 1
    assert any("SYNTHETIC" in m for m in messages)
    split = pd.read_csv(result.split)
    assert set(split["split"]) == {"train", "val", "test"}
    assert split.groupby("patient_id")["split"].nunique().max() == 1
    assert {"crop_left", "crop_top", "crop_right", "crop_bottom"} <= set(split.columns)
    assert sorted(split["diagnosis"].unique()) == sorted(DISEASES)
    assert result.report is not None and result.report.is_file()
    assert str(result.report) in messages[-1]
    metrics = json.loads((result.report.parent / "metrics.json").read_text())
    assert set(metrics["tasks"]) <= {"psoriasis_vs_eczema", "acne_vs_rosacea", "ctcl_vs_eczema"}
    assert "SYNTHETIC" in (result.run_dir / "model_card.md").read_text()
    assert (result.run_dir / "best.keras").is_file()
    assert json.loads((result.out / "demo.json").read_text())["synthetic"] is True
