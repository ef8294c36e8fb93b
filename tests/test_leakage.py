"""Threshold-fitting predictions may share no image, patient or split group with the evaluated ones."""

import pandas as pd
import pytest
from click.testing import CliRunner

from skin_cnn.cli import cli
from skin_cnn.evaluation.leakage import check_disjoint, overlaps


def _table(prefix, n=12, patient_prefix=None, groups=None):
    rows = []
    for i in range(n):
        rows.append({
            "image_path": f"img/{prefix}{i}.jpg",
            "patient_id": f"{patient_prefix or prefix}p{i // 2}",
            "task": "acne_vs_rosacea",
            "y_true": i % 2,
            "y_prob": (i % 2) * 0.5 + i / 40,
        })
    df = pd.DataFrame(rows)
    if groups is not None:
        df["split_group"] = groups
    return df


def test_disjoint_tables_pass():
    assert not any(overlaps(_table("v"), _table("t")).values())
    check_disjoint(_table("v"), _table("t"), "val.csv")


def test_shared_patient_under_other_image_names_is_refused():
    val = _table("v", patient_prefix="t")  # other images, the test patients
    with pytest.raises(ValueError, match=r"^val\.csv: .*6 patients \(e\.g\. tp0\)"):
        check_disjoint(val, _table("t"), "val.csv")


def test_patient_ids_differing_only_in_case_or_invisible_characters_are_one_patient():
    # manifest and split read "TP0", "tp0" and "tp0\u200b" as one patient; so must this check
    val = _table("v", patient_prefix="t")
    val["patient_id"] = val["patient_id"].str.upper()
    val.loc[0, "patient_id"] = "tp0\u200b"
    with pytest.raises(ValueError, match=r"6 patients"):
        check_disjoint(val, _table("t"), "val.csv")


def test_split_and_manifest_use_the_same_patient_identity():
    from skin_cnn.data.manifest import patient_key
    from skin_cnn.data.split import patient_units

    ids = ["P7", "p7", " p7\u200b ", "p8", ""]
    units = patient_units(pd.DataFrame({"patient_id": ids}))
    assert units.iloc[0] == units.iloc[1] == units.iloc[2] == patient_key("p7")
    assert units.iloc[3] != units.iloc[0] and units.iloc[4] not in set(units.iloc[:4])


def test_shared_split_group_is_refused():
    val = _table("v", groups=list(range(100, 112)))
    test = _table("t", groups=[111] + list(range(1, 12)))
    with pytest.raises(ValueError, match=r"1 split groups \(e\.g\. 111\)"):
        check_disjoint(val, test, "val.csv")


def test_rows_marked_as_test_are_refused():
    with pytest.raises(ValueError, match="rows marked as test split"):
        check_disjoint(_table("v").assign(split="test"), _table("t"), "val.csv")


def test_same_file_content_under_another_path_is_refused(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(12):
        (tmp_path / "img" / f"t{i}.jpg").write_bytes(bytes([i]) * (100 + i))
        (tmp_path / "img" / f"v{i}.jpg").write_bytes(bytes([i + 50]) * (100 + i))
    # one validation file is a byte-identical copy of a test image
    (tmp_path / "img" / "v3.jpg").write_bytes((tmp_path / "img" / "t5.jpg").read_bytes())
    test, val = _table("t"), _table("v", patient_prefix="w")
    test.to_csv(tmp_path / "test.csv", index=False)
    val.to_csv(tmp_path / "val.csv", index=False)
    result = CliRunner().invoke(cli, [
        "evaluate", "--predictions", str(tmp_path / "test.csv"), "-o", str(tmp_path / "o"),
        "--threshold", "youden", "--val-predictions", str(tmp_path / "val.csv"), "--n-bootstrap", "0",
    ])
    assert result.exit_code != 0
    assert "val.csv" in result.output and "1 same content" in result.output and "v3.jpg" in result.output


def test_copy_of_the_test_file_relabelled_as_validation_is_refused_by_evaluate(tmp_path):
    test = _table("t")
    test.to_csv(tmp_path / "test.csv", index=False)
    test.assign(split="val").to_csv(tmp_path / "val.csv", index=False)
    result = CliRunner().invoke(cli, [
        "evaluate", "--predictions", str(tmp_path / "test.csv"), "-o", str(tmp_path / "o"),
        "--threshold", "youden", "--val-predictions", str(tmp_path / "val.csv"), "--n-bootstrap", "0",
    ])
    assert result.exit_code != 0 and "12 images" in result.output and "6 patients" in result.output
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_repeated_rows_in_a_predictions_file_are_refused(tmp_path):
    test = _table("t")
    pd.concat([test, test.iloc[[4]]]).to_csv(tmp_path / "test.csv", index=False)
    result = CliRunner().invoke(cli, [
        "evaluate", "--predictions", str(tmp_path / "test.csv"), "-o", str(tmp_path / "o"), "--n-bootstrap", "0",
    ])
    assert result.exit_code != 0 and "test.csv" in result.output and "img/t4.jpg" in result.output
