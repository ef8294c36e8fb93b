"""Tasks and ICD-10 mapping: eczema belongs to two tasks, codes map by exact entry or prefix."""
import pytest

from skin_cnn.core.tasks import (
    DISEASES,
    TASK_NAMES,
    TASKS,
    load_icd10_map,
    normalize_icd10,
    resolve_task,
    task_targets,
    tasks_for_disease,
)


def test_three_tasks_with_positive_class_first():
    assert TASK_NAMES == ("psoriasis_vs_eczema", "acne_vs_rosacea", "ctcl_vs_eczema")
    for name, task in TASKS.items():
        assert name == f"{task.positive}_vs_{task.negative}"


def test_eczema_is_in_two_tasks_every_other_disease_in_one():
    assert tasks_for_disease("eczema") == ("psoriasis_vs_eczema", "ctcl_vs_eczema")
    for dx in ("acne", "rosacea", "psoriasis", "ctcl"):
        assert len(tasks_for_disease(dx)) == 1
    assert sum(len(tasks_for_disease(d)) for d in DISEASES) == 6
    with pytest.raises(ValueError, match="unknown diagnosis"):
        tasks_for_disease("melanoma")


def test_task_targets_labels_and_masks_by_hand():
    labels, masks = task_targets(["eczema", "acne", "ctcl", "rosacea", "psoriasis"])
    assert labels["psoriasis_vs_eczema"] == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert masks["psoriasis_vs_eczema"] == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert labels["acne_vs_rosacea"] == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert masks["acne_vs_rosacea"] == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert labels["ctcl_vs_eczema"] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert masks["ctcl_vs_eczema"] == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_resolve_task():
    assert resolve_task("all") == TASK_NAMES and resolve_task(None) == TASK_NAMES
    assert resolve_task("acne_vs_rosacea") == ("acne_vs_rosacea",)
    with pytest.raises(ValueError, match="unknown task"):
        resolve_task("acne_vs_eczema")


@pytest.mark.parametrize(
    "code, expected",
    [
        ("L70.0", "acne"),
        ("l70", "acne"),
        ("L708", "acne"),
        (" L71.1 ", "rosacea"),
        ("L40.50", "psoriasis"),
        ("L20.81", "eczema"),
        ("L30.9", "eczema"),
        ("L309", "eczema"),
        ("C84.0", "ctcl"),
        ("C840", "ctcl"),
        ("c84.a", "ctcl"),
        ("L30.4", None),  # intertrigo: not in the eczema family
        ("C84.2", None),
        ("L7", None),
        ("", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_shipped_icd10_map(code, expected):
    assert load_icd10_map().lookup(code) == expected


def test_normalize_icd10():
    assert normalize_icd10(" l70.0. ") == "L70.0"
    assert normalize_icd10("c 84 .1") == "C84.1"


def test_user_mapping_file_longest_match_wins(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text(
        "# my clinic's codes\ncode,category,label\nL2*,eczema,all L2\nL21.0,psoriasis,odd override\nX1,acne,\n",
        encoding="utf-8",
    )
    cmap = load_icd10_map(path)
    assert cmap.lookup("L23.9") == "eczema"
    assert cmap.lookup("L21.0") == "psoriasis"
    assert cmap.lookup("L210") == "psoriasis"
    assert cmap.lookup("x1") == "acne"
    assert cmap.lookup("L70.0") is None  # the shipped table is not consulted
    assert cmap.source == str(path)


def test_bad_mapping_files_are_refused_with_file_and_reason(tmp_path):
    wrong_columns = tmp_path / "a.csv"
    wrong_columns.write_text("icd,disease\nL70,acne\n")
    with pytest.raises(ValueError, match=r"a\.csv.*code and category"):
        load_icd10_map(wrong_columns)
    bad_category = tmp_path / "b.csv"
    bad_category.write_text("code,category\nL70,acne\nL93,lupus\n")
    with pytest.raises(ValueError, match=r"b\.csv: row 3: category 'lupus'"):
        load_icd10_map(bad_category)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_icd10_map(tmp_path / "missing.csv")
