"""load_manifest gives the contract frame; validate_manifest finds every problem by its CSV row."""
import json
import os

import broken_files as bf
import pandas as pd
import pytest

from skin_cnn.data.manifest import load_manifest, validate_manifest


def _write(folder, text):
    path = folder / "manifest.csv"
    path.write_text(text, encoding="utf-8")
    return path


def _images(folder, *names):
    (folder / "img").mkdir(exist_ok=True)
    for k, name in enumerate(names):
        bf.valid_jpeg(folder / "img" / name, bf.gradient_rgb(24, 32, seed=k))


def _codes(report):
    return sorted(zip(report.problems["row"], report.problems["code"]))


def test_load_resolves_paths_normalises_diagnoses_and_keeps_extra_columns(tmp_path):
    _images(tmp_path, "a.jpg", "b.jpg")
    absolute = tmp_path / "img" / "b.jpg"
    path = _write(
        tmp_path,
        "image_path,patient_id,diagnosis,fitzpatrick,source\n"
        "img/a.jpg, p1 ,  Acne ,3,clinic A\n"
        f"{absolute},,CTCL,,clinic B\n",
    )
    frame = load_manifest(path)
    assert list(frame.index) == [0, 1]
    assert frame["image_path"].tolist() == [str(tmp_path / "img" / "a.jpg"), str(absolute)]
    assert frame["patient_id"].tolist() == ["p1", ""]
    assert frame["diagnosis"].tolist() == ["acne", "ctcl"]
    assert frame["fitzpatrick"].tolist() == ["3", ""]  # kept as written
    assert frame["source"].tolist() == ["clinic A", "clinic B"]


def test_relative_paths_resolve_against_the_csv_folder_not_the_cwd(tmp_path, monkeypatch):
    _images(tmp_path, "a.jpg")
    path = _write(tmp_path, "image_path,patient_id,diagnosis\nimg/a.jpg,p,eczema\n")
    monkeypatch.chdir(tmp_path / "img")
    assert load_manifest(path)["image_path"][0] == str(tmp_path / "img" / "a.jpg")


def test_icd10_column_is_mapped_with_prefixes_and_dots(tmp_path):
    path = _write(
        tmp_path,
        "image_path,patient_id,icd10\nx1.jpg,1,L70.0\nx2.jpg,2,l711\nx3.jpg,3,C84.0\nx4.jpg,4,L30.9\nx5.jpg,5,L40\n",
    )
    assert load_manifest(path)["diagnosis"].tolist() == ["acne", "rosacea", "ctcl", "eczema", "psoriasis"]


def test_user_icd10_map_overrides_the_shipped_one(tmp_path):
    mapping = tmp_path / "map.csv"
    mapping.write_text("code,category\nL21*,eczema\n", encoding="utf-8")
    path = _write(tmp_path, "image_path,patient_id,icd10\nx.jpg,1,L21.0\n")
    assert load_manifest(path, icd10_map=mapping)["diagnosis"].tolist() == ["eczema"]
    with pytest.raises(ValueError, match="unknown ICD-10|L21.0"):
        load_manifest(path)


def test_utf8_bom_and_header_case_are_accepted(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeffImage_Path,Patient_ID,Diagnosis\nx.jpg,1,Psoriasis\n".encode("utf-8"))
    frame = load_manifest(path)
    assert frame["diagnosis"].tolist() == ["psoriasis"]
    assert frame["patient_id"].tolist() == ["1"]


def test_load_refuses_unlabelled_rows_naming_file_and_row(tmp_path):
    path = _write(tmp_path, "image_path,patient_id,diagnosis\na.jpg,1,acne\nb.jpg,2,melanoma\n")
    with pytest.raises(ValueError) as info:
        load_manifest(path)
    message = str(info.value)
    assert str(path) in message and "row 3" in message and "melanoma" in message
    assert "skin-cnn manifest check" in message


def test_load_refuses_missing_columns_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="diagnosis column or an icd10 column"):
        load_manifest(_write(tmp_path, "image_path,patient_id\na.jpg,1\n"))
    with pytest.raises(ValueError, match="image_path is missing"):
        load_manifest(_write(tmp_path, "path,diagnosis\na.jpg,acne\n"))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_manifest(tmp_path / "nope.csv")


def test_validation_lists_every_problem_with_csv_row_numbers(tmp_path):
    _images(tmp_path, "ok1.jpg", "ok2.jpg", "ok3.jpg", "ok4.jpg", "ok5.jpg")
    broken = tmp_path / "img"
    bf.truncated_jpeg(broken / "trunc.jpg")
    bf.text_as_jpg(broken / "text.jpg")
    bf.zero_byte(broken / "empty.jpg")
    (broken / "copy.jpg").write_bytes((broken / "ok1.jpg").read_bytes())
    path = _write(
        tmp_path,
        "image_path,patient_id,diagnosis\n"  # line 1
        "img/ok1.jpg,p1,acne\n"  # 2 fine
        "img/missing.jpg,p2,acne\n"  # 3 missing file
        "img/trunc.jpg,p3,rosacea\n"  # 4 unreadable
        "img/text.jpg,p4,rosacea\n"  # 5 unreadable
        "img/empty.jpg,p5,eczema\n"  # 6 unreadable
        "img/ok2.jpg,p6,lupus\n"  # 7 unknown diagnosis
        "img/ok1.jpg,p7,acne\n"  # 8 duplicate path of row 2
        "img/copy.jpg,p8,acne\n"  # 9 same content as row 2
        "img/ok3.jpg,p9,psoriasis\n"  # 10 patient conflict
        "img/ok4.jpg,p9,eczema\n"  # 11 patient conflict
        "img/ok5.jpg,,ctcl\n",  # 12 empty patient id (warning)
    )
    report = validate_manifest(path, progress=False)
    assert _codes(report) == [
        (3, "missing_file"),
        (4, "unreadable_image"),
        (5, "unreadable_image"),
        (6, "unreadable_image"),
        (7, "unknown_diagnosis"),
        (8, "duplicate_path"),
        (9, "duplicate_content"),
        (10, "patient_conflict"),
        (11, "patient_conflict"),
        (12, "empty_patient_id"),
    ]
    problems = report.problems.set_index("row")
    assert "row 2" in problems.loc[8, "message"] and "row 2" in problems.loc[9, "message"]
    assert "truncated" in problems.loc[4, "message"] and "empty file" in problems.loc[6, "message"]
    assert "10" in problems.loc[11, "message"] and "psoriasis" in problems.loc[11, "message"]
    assert problems.loc[12, "severity"] == "warning"
    assert report.n_rows == 11 and report.n_errors == 9 and report.n_warnings == 1 and not report.ok
    # rows 2, 7 (unknown label but decodable), 8, 10, 11, 12 decode; 9 decodes too
    assert report.n_images_ok == 7
    assert sorted(report.frame.loc[report.error_indices(), "image_path"].map(os.path.basename)) == sorted(
        ["missing.jpg", "trunc.jpg", "text.jpg", "empty.jpg", "ok2.jpg", "ok1.jpg", "copy.jpg", "ok3.jpg", "ok4.jpg"]
    )
    assert report.clean_frame()["image_path"].map(os.path.basename).tolist() == ["ok1.jpg", "ok5.jpg"]


def test_row_numbers_follow_multiline_fields_and_blank_lines(tmp_path):
    path = _write(
        tmp_path,
        'image_path,patient_id,diagnosis,note\n\na.jpg,1,acne,"two\nlines"\nb.jpg,2,nothing,x\n',
    )
    report = validate_manifest(path, check_images=False, progress=False)
    unknown = report.problems[report.problems["code"] == "unknown_diagnosis"]
    assert unknown["row"].tolist() == [5]
    assert report.problems[report.problems["code"] == "missing_file"]["row"].tolist() == [3, 5]


def test_header_problems_and_label_column_choices(tmp_path):
    neither = validate_manifest(_write(tmp_path, "image_path,patient_id\na.jpg,1\n"), progress=False)
    assert neither.by_code == {"no_label_column": 1} and neither.problems["row"].tolist() == [1]
    assert neither.error_indices() == [0]
    _images(tmp_path, "a.jpg", "b.jpg", "c.jpg")
    both = validate_manifest(
        _write(
            tmp_path,
            "image_path,patient_id,diagnosis,icd10\nimg/a.jpg,1,acne,L70.0\nimg/b.jpg,2,,L40.0\nimg/c.jpg,3,acne,L71\n",
        ),
        progress=False,
    )
    assert both.by_code == {"both_label_columns": 1, "label_mismatch": 1}
    assert both.frame["diagnosis"].tolist() == ["acne", "psoriasis", ""]
    assert both.problems.set_index("code").loc["label_mismatch", "row"] == 4


def test_missing_patient_column_warns_once(tmp_path):
    _images(tmp_path, "a.jpg")
    report = validate_manifest(_write(tmp_path, "image_path,diagnosis\nimg/a.jpg,acne\n"), progress=False)
    assert report.by_code == {"no_patient_column": 1} and report.ok


def test_ragged_rows_are_errors(tmp_path):
    report = validate_manifest(
        _write(tmp_path, "image_path,patient_id,diagnosis\na.jpg,1\nb.jpg,2,acne,extra\n"),
        check_images=False,
        progress=False,
    )
    assert sorted(zip(report.problems["row"], report.problems["code"]))[:2] == [
        (2, "bad_row"),
        (2, "missing_diagnosis"),
    ]
    assert (3, "bad_row") in set(zip(report.problems["row"], report.problems["code"]))


def test_checksum_column_is_verified(tmp_path):
    _images(tmp_path, "a.jpg")
    report = validate_manifest(
        _write(tmp_path, "image_path,patient_id,diagnosis,sha256\nimg/a.jpg,1,acne," + "0" * 64 + "\n"), progress=False
    )
    assert report.by_code == {"checksum_mismatch": 1}


def test_report_files_hold_every_problem(tmp_path):
    lines = ["image_path,patient_id,diagnosis"] + [f"img/x{i}.jpg,,acne" for i in range(60)]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    report = validate_manifest(path, check_images=False, progress=False)
    assert report.by_code == {"missing_file": 60, "empty_patient_id": 60}
    table = report.table(max_lines=40)
    assert len(table.splitlines()) < 20  # two codes summarised, not 120 lines
    assert "57 more" in table
    csv_path, json_path = report.write(tmp_path / "out")
    written = pd.read_csv(csv_path)
    assert len(written) == 120 and set(written["row"]) == set(range(2, 62))
    data = json.loads(json_path.read_text())
    assert data["errors"] == 60 and data["warnings"] == 60 and len(data["problems"]) == 120
    assert data["by_code"] == {"missing_file": 60, "empty_patient_id": 60}
    assert "60 errors, 60 warnings" in report.summary()


def test_public_derm_manifest_validates(public_derm):
    report = validate_manifest(public_derm / "manifest.csv", progress=False)
    assert report.n_rows == 942 and report.n_images_ok == 942
    assert report.ok and report.by_code == {"empty_patient_id": 942}


def test_example_manifests_agree():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "data_manifests"
    by_name = load_manifest(folder / "example_manifest.csv")
    by_code = load_manifest(folder / "example_manifest_icd10.csv")
    assert by_name["diagnosis"].tolist() == by_code["diagnosis"].tolist()
    assert set(by_name["diagnosis"]) == {"acne", "rosacea", "psoriasis", "eczema", "ctcl"}
    assert by_name["image_path"].tolist() == by_code["image_path"].tolist()


# ---------------------------------------------------------------------------------------------
# patient ids that differ only in what a reader cannot see


def test_spellings_of_one_patient_id_are_one_patient_and_reveal_a_conflict(tmp_path):
    # p2, P2, p2 + zero-width space and p2 + NUL are one patient: the eczema photo conflicts
    # with the three psoriasis photos. Read as four patients, the conflict was invisible.
    _images(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    path = _write(
        tmp_path,
        "image_path,patient_id,diagnosis\n"
        "img/a.jpg,p2,psoriasis\nimg/b.jpg,P2,eczema\nimg/c.jpg,p2\u200b,psoriasis\nimg/d.jpg,p2\x00,psoriasis\n",
    )
    report = validate_manifest(path, progress=False)
    conflicts = report.problems[report.problems["code"] == "patient_conflict"]
    assert sorted(conflicts["row"]) == [2, 3, 4, 5]
    notes = report.problems[report.problems["code"] == "patient_id_normalized"]
    assert sorted(notes["row"]) == [3, 4, 5] and set(notes["severity"]) == {"warning"}
    with pytest.raises(ValueError, match="more than one diagnosis"):
        load_manifest(path)


def test_unicode_composition_and_invisible_characters_do_not_make_new_patients(tmp_path):
    _images(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg")
    path = _write(
        tmp_path,
        "image_path,patient_id,diagnosis\n"
        "img/a.jpg,Jos\u00e9,acne\n"  # é precomposed
        "img/b.jpg,Jose\u0301,acne\n"  # e + combining acute accent (NFD)
        "img/c.jpg,\ufeffJOS\u00c9,acne\n"  # byte-order mark, upper case
        "img/d.jpg,jos\u00e9\u200d,acne\n"  # zero-width joiner
        "img/e.jpg,  p 7\u00a0,rosacea\n",  # spaces, a no-break space
    )
    frame = load_manifest(path)
    assert frame["patient_id"].tolist() == ["Jos\u00e9"] * 4 + ["p 7"]


def test_the_split_keeps_every_spelling_of_a_patient_in_one_split(tmp_path):
    from skin_cnn.data.split import patient_split

    rows, names = [], []
    for k in range(30):  # 30 patients of two photos each; patient 0 written four ways
        for j in range(2):
            names.append(f"{k}_{j}.jpg")
            rows.append(f"img/{k}_{j}.jpg,q{k},acne")
    for j, spelling in enumerate(["Q0", "q0\u200b", "q0\x00", " q0"]):
        names.append(f"0_extra{j}.jpg")
        rows.append(f"img/0_extra{j}.jpg,{spelling},acne")
    _images(tmp_path, *names)
    path = _write(tmp_path, "image_path,patient_id,diagnosis\n" + "\n".join(rows) + "\n")
    frame = load_manifest(path)
    for seed in range(5):
        split = patient_split(frame, seed=seed)
        split = split[0] if isinstance(split, tuple) else split
        patient0 = split.loc[[i for i, p in enumerate(names) if p.startswith("0_")], "split"]
        assert patient0.nunique() == 1, seed


# ---------------------------------------------------------------------------------------------
# manifests that are not what they look like


def test_a_header_only_manifest_is_an_error(tmp_path):
    path = _write(tmp_path, "image_path,patient_id,diagnosis\n")
    report = validate_manifest(path, progress=False)
    assert not report.ok and report.by_code == {"no_rows": 1}
    with pytest.raises(ValueError, match="no data rows"):
        load_manifest(path)


def test_a_semicolon_manifest_shows_the_header_it_read(tmp_path):
    # Excel in many locales saves "CSV" with semicolons: one column named after the whole line.
    path = _write(tmp_path, "image_path;patient_id;diagnosis\nimg/a.jpg;p1;acne\n")
    report = validate_manifest(path, progress=False)
    message = report.problems.loc[report.problems["code"] == "missing_column", "message"].iloc[0]
    assert "['image_path;patient_id;diagnosis']" in message and "';'" in message
