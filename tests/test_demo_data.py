"""The synthetic demo set is labelled as synthetic, validates cleanly and splits without leakage."""
import warnings

import numpy as np
import pandas as pd
import pytest

from skin_cnn.data.reading import read_image
from skin_cnn.data.demo_data import SKIN_TONES, draw_image, generate_demo_dataset
from skin_cnn.core.tasks import DISEASES
from skin_cnn.data.manifest import validate_manifest
from skin_cnn.data.split import patient_split


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return generate_demo_dataset(
        folder, n_patients_per_disease=6, images_per_patient=(2, 3), image_size=(96, 128), seed=3
    )


def test_manifest_is_labelled_synthetic_everywhere(demo):
    frame = pd.read_csv(demo, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["image_path", "patient_id", "diagnosis", "source", "fitzpatrick_type", "synthetic"]
    assert set(frame["source"]) == {"synthetic-demo"} and set(frame["synthetic"]) == {"true"}
    assert frame["patient_id"].str.match(r"^demo-p\d{3}$").all()
    readme = (demo.parent / "README.txt").read_text()
    assert "SYNTHETIC" in readme and "NOT MEDICAL IMAGES" in readme


def test_counts_sizes_and_skin_tones(demo):
    frame = pd.read_csv(demo, dtype=str, keep_default_na=False)
    per_patient = frame.groupby("patient_id").size()
    assert len(per_patient) == 6 * len(DISEASES) and per_patient.between(2, 3).all()
    assert (frame.groupby("patient_id")["diagnosis"].nunique() == 1).all()
    assert (frame.groupby("diagnosis")["patient_id"].nunique() == 6).all()
    assert frame["fitzpatrick_type"].astype(int).between(1, 6).all()
    assert read_image(demo.parent / frame["image_path"][0]).shape == (96, 128, 3)


def test_demo_set_validates_and_splits_without_leakage(demo):
    report = validate_manifest(demo, progress=False)
    assert report.ok and report.problems.empty
    assert report.n_images_ok == report.n_rows
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every image has a patient id: no warning expected
        split = patient_split(report.frame, seed=0)
    assert (split.groupby("patient_id")["split"].nunique() == 1).all()
    for dx in DISEASES:
        assert set(split.loc[split["diagnosis"] == dx, "split"]) == {"train", "val", "test"}


def test_same_seed_same_files(tmp_path):
    a = generate_demo_dataset(
        tmp_path / "a", n_patients_per_disease=1, images_per_patient=1, image_size=(48, 64), seed=7
    )
    b = generate_demo_dataset(
        tmp_path / "b", n_patients_per_disease=1, images_per_patient=1, image_size=(48, 64), seed=7
    )
    c = generate_demo_dataset(
        tmp_path / "c", n_patients_per_disease=1, images_per_patient=1, image_size=(48, 64), seed=8
    )
    names = pd.read_csv(a)["image_path"]
    assert all((a.parent / n).read_bytes() == (b.parent / n).read_bytes() for n in names)
    assert any((a.parent / n).read_bytes() != (c.parent / n).read_bytes() for n in names)


def _signature(dx, tone=2):
    images = np.stack(
        [draw_image(dx, np.random.default_rng(s), (96, 128), skin_tone=tone) for s in range(4)]
    ).astype(float)
    skin = np.asarray(SKIN_TONES[tone], float)
    r, g, b = images[..., 0], images[..., 1], images[..., 2]
    redness = (r - g) - (skin[0] - skin[1])
    return {
        "red_area": (redness > 20).mean(),
        "silvery": ((images.min(axis=-1) > 200) & (images.max(axis=-1) - images.min(axis=-1) < 40)).mean(),
        "pus": ((r > 230) & (g > 210) & (b < g - 25)).mean(),
    }


def test_lesions_differ_by_disease_on_the_same_skin():
    """Each disease leaves its own mark: redness, silvery scale, or pale-yellow pustule heads."""
    stats = {dx: _signature(dx) for dx in DISEASES}
    others = [d for d in DISEASES if d != "psoriasis"]
    assert stats["psoriasis"]["silvery"] > 0.01 > 10 * max(stats[d]["silvery"] for d in others)
    pus = {dx: _signature(dx, tone=4)["pus"] for dx in DISEASES}  # skin this dark is never pale yellow
    assert pus["acne"] > 0.001 and all(pus[d] == 0 for d in DISEASES if d != "acne")
    assert min(stats[d]["red_area"] for d in ("acne", "rosacea", "psoriasis", "ctcl")) > 2 * stats["eczema"]["red_area"]
    assert all(s["red_area"] > 0.01 for s in stats.values())  # plain skin would have none


def test_backdrop_and_clutter_reach_the_edges():
    rng = np.random.default_rng(0)
    image = draw_image("acne", rng, (96, 128), skin_tone=1, backdrop=True)
    corner = image[:4, :4].reshape(-1, 3).mean(axis=0)
    assert corner[2] > corner[0] + 60  # blue backdrop in the corner
    assert image[48, 64, 0] > image[48, 64, 2]  # skin in the middle


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="images_per_patient"):
        generate_demo_dataset(tmp_path, images_per_patient=(3, 2))
    with pytest.raises(ValueError, match="unknown diseases"):
        generate_demo_dataset(tmp_path, diseases=("acne", "lupus"))
