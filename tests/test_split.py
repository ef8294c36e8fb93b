"""patient_split keeps patients (and near duplicates) together and every disease in every split."""
import json
import warnings

import broken_files as bf
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from skin_cnn.core.tasks import DISEASES
from skin_cnn.data.split import (
    allocate_counts,
    check_fractions,
    group_images,
    load_split,
    near_duplicate_pairs,
    patient_split,
    split_problems,
    write_split,
)


def _frame(patients, empty=0, seed=0):
    """Rows for ``patients = {diagnosis: n_patients}``, 1-5 images each, plus ``empty`` rows with no id."""
    rng = np.random.default_rng(seed)
    rows = []
    for dx, n in patients.items():
        for p in range(n):
            for k in range(int(rng.integers(1, 6))):
                rows.append({"image_path": f"/x/{dx}{p}_{k}.jpg", "patient_id": f"{dx}-{p}", "diagnosis": dx})
        for k in range(empty):
            rows.append({"image_path": f"/x/{dx}_anon{k}.jpg", "patient_id": "", "diagnosis": dx})
    return pd.DataFrame(rows)


def _split_quiet(frame, **kwargs):
    kwargs.setdefault("group_near_duplicates", False)  # the /x/ paths of _frame are not files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return patient_split(frame, **kwargs)


def _units(frame):
    return np.where(frame["patient_id"] == "", "img:" + frame["image_path"], frame["patient_id"])


manifests = st.builds(
    lambda counts, empty, seed: (counts, empty, seed),
    st.dictionaries(st.sampled_from(DISEASES), st.integers(1, 40), min_size=1, max_size=5),
    st.integers(0, 6),
    st.integers(0, 2**16),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests, st.integers(0, 1000))
def test_split_properties_on_random_manifests(manifest, seed):
    counts, empty, data_seed = manifest
    frame = _frame(counts, empty, data_seed)
    out = _split_quiet(frame, seed=seed)
    # every image in exactly one split, rows unchanged
    assert len(out) == len(frame) and set(out["split"]) <= {"train", "val", "test"}
    pd.testing.assert_frame_equal(out[frame.columns], frame)
    # no patient in two splits
    units = _units(out)
    assert (pd.Series(out["split"].values).groupby(units).nunique() == 1).all()
    # every disease with >= 3 patients (groups) appears in every split
    for dx in counts:
        n_groups = len(set(units[out["diagnosis"] == dx]))
        if n_groups >= 3:
            assert set(out.loc[out["diagnosis"] == dx, "split"]) == {"train", "val", "test"}
    # same seed, same split
    again = _split_quiet(frame, seed=seed)
    assert again["split"].tolist() == out["split"].tolist()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(30, 80), min_size=3, max_size=5), st.integers(0, 1000))
def test_patient_level_fractions_are_close_to_the_request(sizes, seed):
    frame = _frame(dict(zip(DISEASES, sizes)), empty=0, seed=seed)
    out = _split_quiet(frame, seed=seed, fractions=(0.7, 0.2, 0.1))
    per_patient = out.drop_duplicates("patient_id")["split"].value_counts(normalize=True)
    for split, want in zip(("train", "val", "test"), (0.7, 0.2, 0.1)):
        assert abs(per_patient.get(split, 0.0) - want) < 0.03


def test_different_seeds_usually_give_different_splits():
    frame = _frame({dx: 20 for dx in DISEASES})
    splits = {tuple(_split_quiet(frame, seed=s)["split"]) for s in range(6)}
    assert len(splits) == 6


def test_allocation_by_hand():
    # 12 groups at 0.8/0.1/0.1: 9.6/1.2/1.2 -> floors 9/1/1, the remaining one to train
    assert allocate_counts({"a": 12}, (0.8, 0.1, 0.1))["a"].tolist() == [10, 1, 1]
    # 3 groups: one per split although 0.8 * 3 = 2.4
    assert allocate_counts({"a": 3}, (0.8, 0.1, 0.1))["a"].tolist() == [1, 1, 1]
    # 2 groups cannot fill three splits: both to train
    assert allocate_counts({"a": 2}, (0.8, 0.1, 0.1))["a"].tolist() == [2, 0, 0]
    # five strata of 12: per-stratum rounding alone would give 50/5/5; the carried deficit 48/6/6
    total = sum(allocate_counts({d: 12 for d in "abcde"}, (0.8, 0.1, 0.1)).values())
    assert total.tolist() == [48, 6, 6]
    # a zero fraction gets nothing
    assert allocate_counts({"a": 10}, (0.9, 0.0, 0.1))["a"].tolist() == [9, 0, 1]


def test_bad_fractions_are_refused():
    for bad in [(0.8, 0.1), (0.8, 0.3, 0.1), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)]:
        with pytest.raises(ValueError, match="fractions"):
            check_fractions(bad)


def test_empty_patient_ids_warn_and_are_own_groups():
    frame = pd.DataFrame(
        {"image_path": [f"/x/{i}.jpg" for i in range(4)], "patient_id": ["", "", "a", "a"], "diagnosis": ["acne"] * 4}
    )
    with pytest.warns(UserWarning, match="2 of 4 images have no patient id.*not grouped further"):
        out = patient_split(frame, group_near_duplicates=False)
    assert out["split_group"].tolist() == [0, 1, 2, 2]
    assert out.attrs["split_info"]["images_without_patient_id"] == 2


def test_majority_diagnosis_decides_a_mixed_patient():
    frame = _frame({"acne": 10, "rosacea": 10})
    frame.loc[len(frame)] = {"image_path": "/x/mixed.jpg", "patient_id": "acne-0", "diagnosis": "rosacea"}
    out = _split_quiet(frame)
    assert out.loc[out["patient_id"] == "acne-0", "split"].nunique() == 1


def test_near_duplicate_pairs_by_hand():
    hashes = np.zeros((4, 64), dtype=bool)
    hashes[1, :3] = True  # 3 bits from row 0
    hashes[2, :20] = True  # 20 bits from row 0, 17 from row 1
    hashes[3] = ~hashes[0]  # 64 bits from row 0
    assert near_duplicate_pairs(hashes, 3).tolist() == [[0, 1]]
    assert sorted(map(tuple, near_duplicate_pairs(hashes, 17).tolist())) == [(0, 1), (1, 2)]
    assert near_duplicate_pairs(hashes, 2).shape == (0, 2)
    # blocks give the same pairs as one pass
    many = np.random.default_rng(0).random((300, 2, 64)) < 0.5
    many[150] = many[7]
    many[151, :, 5:] = many[9, :, 5:]
    many[151, :, :5] = ~many[9, :, :5]
    one = near_duplicate_pairs(many, 6)
    assert sorted(map(tuple, one.tolist())) == [(7, 150), (9, 151)]
    assert (near_duplicate_pairs(many, 6, block=64) == one).all()


def test_groups_join_patients_and_near_duplicates_transitively():
    frame = pd.DataFrame(
        {
            "image_path": [f"/x/{i}.jpg" for i in range(6)],
            "patient_id": ["a", "b", "", "", "c", "a"],
            "diagnosis": ["acne"] * 6,
        }
    )
    hashes = np.random.default_rng(1).random((6, 2, 64)) < 0.5
    hashes[2] = hashes[1]  # image 2 duplicates patient b's image
    hashes[4] = hashes[5]  # patient c's image duplicates patient a's second image
    labels, info = group_images(frame, group_near_duplicates=True, hashes=hashes)
    assert labels.tolist() == [0, 1, 1, 2, 0, 0]
    assert info == {"near_duplicate_pairs": 2, "merged_groups": 2}


def test_near_duplicate_files_stay_in_one_split(tmp_path):
    # 30 patients of distinct images; 5 files are resized, re-compressed copies of others
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        array = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        image = Image.fromarray(array).resize((64, 64), Image.BILINEAR)
        image.save(tmp_path / f"{i}.png")
        rows.append({"image_path": str(tmp_path / f"{i}.png"), "patient_id": "", "diagnosis": "acne"})
        if i < 5:
            image.resize((80, 80), Image.BICUBIC).save(tmp_path / f"{i}copy.jpg", quality=85)
            rows.append({"image_path": str(tmp_path / f"{i}copy.jpg"), "patient_id": "", "diagnosis": "acne"})
    frame = pd.DataFrame(rows)
    for seed in range(3):
        # no patient ids: near duplicates are grouped without asking
        with pytest.warns(UserWarning, match="joined with its near duplicates"):
            out = patient_split(frame, seed=seed)
        assert out.attrs["split_info"]["group_near_duplicates"] is True
        assert out.attrs["split_info"]["merged_groups"] == 5
        for i in range(5):
            pair = out["image_path"].isin([str(tmp_path / f"{i}.png"), str(tmp_path / f"{i}copy.jpg")])
            assert out.loc[pair, "split"].nunique() == 1


def test_write_and_load_split_round_trip(tmp_path):
    folder = tmp_path / "data"
    (folder / "img").mkdir(parents=True)
    outside = tmp_path / "elsewhere.jpg"
    bf.valid_jpeg(outside)
    rows = []
    for i in range(9):
        bf.valid_jpeg(folder / "img" / f"{i}.jpg")
        rows.append(
            {
                "image_path": str(folder / "img" / f"{i}.jpg"),
                "patient_id": f"p{i // 2}",
                "diagnosis": "eczema",
                "site": f"s{i}",
            }
        )
    rows.append({"image_path": str(outside), "patient_id": "", "diagnosis": "acne", "site": "x"})
    out = _split_quiet(pd.DataFrame(rows))
    path = write_split(out, folder / "split.csv")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert raw["image_path"].tolist()[:2] == ["img/0.jpg", "img/1.jpg"]
    assert raw["image_path"].tolist()[-1] == str(outside)
    back = load_split(path)
    assert back["image_path"].tolist() == out["image_path"].tolist()
    assert back["split"].tolist() == out["split"].tolist()
    assert back["site"].tolist() == out["site"].tolist()


def test_load_split_refuses_bad_values_and_leaking_patients(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("image_path,patient_id,diagnosis,split\na.jpg,1,acne,train\nb.jpg,2,acne,holdout\n")
    with pytest.raises(ValueError, match=r"row 3 \('holdout'\)"):
        load_split(path)
    path.write_text("image_path,patient_id,diagnosis,split\na.jpg,1,acne,train\nb.jpg,1,acne,TEST\n")
    with pytest.raises(ValueError, match="more than one split"):
        load_split(path)
    path.write_text("image_path,patient_id,diagnosis\na.jpg,1,acne\n")
    with pytest.raises(ValueError, match="no 'split' column"):
        load_split(path)


def test_split_command_excludes_broken_rows_and_writes_flow(tmp_path):
    from click.testing import CliRunner

    from skin_cnn.cli import cli

    folder = tmp_path / "d"
    folder.mkdir()
    lines = ["image_path,patient_id,diagnosis"]
    for i in range(12):
        bf.valid_jpeg(folder / f"{i}.jpg", bf.gradient_rgb(16, 16, seed=i))
        lines.append(f"{i}.jpg,p{i},{'acne' if i % 2 else 'rosacea'}")
    bf.truncated_jpeg(folder / "t.jpg")
    lines += ["t.jpg,p20,acne", "gone.jpg,p21,acne", "0.jpg,p22,acne"]
    (folder / "m.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["split", str(folder / "m.csv"), "-o", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "left out of the split: 3 rows" in result.output
    split = pd.read_csv(tmp_path / "out" / "split.csv", dtype=str, keep_default_na=False)
    assert len(split) == 12 and not split["patient_id"].isin(["p20", "p21", "p22"]).any()
    flow = json.loads((tmp_path / "out" / "split.flow.json").read_text())
    names = [s["name"] for s in flow["steps"]]
    assert names == ["manifest", "validation", "split"]
    assert flow["steps"][0] == {"name": "manifest", "images": 15, "patients": 15}
    assert flow["steps"][1]["excluded"] == {"unreadable image": 1, "missing file": 1, "duplicate image path": 1}
    assert flow["steps"][1]["images"] == 12
    counts = flow["steps"][2]
    assert sum(counts[s]["images"] for s in ("train", "val", "test")) == 12
    assert all(counts[s]["by_diagnosis"].keys() == {"acne", "rosacea"} for s in ("train", "val", "test"))


def test_near_duplicates_are_looked_for_even_when_every_image_has_a_patient_id():
    # the paths are not files: grouping near duplicates has to read them, and only the opt-out skips that
    with pytest.raises(Exception, match="file not found"):
        patient_split(_frame({"acne": 6, "rosacea": 6}))
    out = patient_split(_frame({"acne": 6, "rosacea": 6}), group_near_duplicates=False)
    assert out.attrs["split_info"]["group_near_duplicates"] is False


def _distinct_photos(folder, n, seed=0):
    """``n`` PNG photos with coarse random structure, far apart for pHash and dHash."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        array = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        path = folder / f"p{i}.png"
        Image.fromarray(array).resize((64, 64), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def test_two_patients_sharing_one_identical_photo_are_one_group_in_one_split(tmp_path):
    # 24 patients (two diagnoses) of one photo each; patient acne-1 also holds acne-0's photo, byte for byte
    paths = _distinct_photos(tmp_path, 24)
    rows = [{"image_path": str(p), "patient_id": f"{dx}-{i}", "diagnosis": dx}
            for i, (p, dx) in enumerate(zip(paths, ["acne", "rosacea"] * 12))]
    shared = tmp_path / "copy_of_p0.png"
    shared.write_bytes(paths[0].read_bytes())
    rows.append({"image_path": str(shared), "patient_id": "acne-2", "diagnosis": "acne"})
    frame = pd.DataFrame(rows)
    for seed in range(4):
        out = patient_split(frame, seed=seed)
        both = out["patient_id"].isin(["acne-0", "acne-2"])
        assert out.loc[both, "split_group"].nunique() == 1
        assert out.loc[both, "split"].nunique() == 1
        assert out.attrs["split_info"]["merged_groups"] == 1
        assert out.attrs["split_info"]["groups"] == 23  # 24 patients, two of them joined
    # opted out, the two patient ids stay two groups
    apart = patient_split(frame, seed=0, group_near_duplicates=False)
    assert apart.loc[apart["patient_id"].isin(["acne-0", "acne-2"]), "split_group"].nunique() == 2
    assert apart.attrs["split_info"]["groups"] == 24


def test_split_command_groups_patients_sharing_a_photo_unless_told_not_to(tmp_path):
    from click.testing import CliRunner

    from skin_cnn.cli import cli

    paths = _distinct_photos(tmp_path, 30)
    diagnoses = ["acne", "rosacea"] * 15
    # patient 2 holds patient 0's photo re-saved as JPEG (not the same bytes: validation keeps both rows)
    Image.open(paths[0]).save(tmp_path / "resaved.jpg", quality=90)
    lines = ["image_path,patient_id,diagnosis"]
    lines += [f"{p.name},pt{i},{dx}" for i, (p, dx) in enumerate(zip(paths, diagnoses))]
    lines.append("resaved.jpg,pt2,acne")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    cases = (((), True), (("--group-near-duplicates",), True), (("--no-group-near-duplicates",), False))
    for flags, together in cases:
        out = tmp_path / f"split{len(flags)}{together}.csv"
        result = CliRunner().invoke(cli, ["split", str(manifest), "-o", str(out), "--quiet", *flags])
        assert result.exit_code == 0, result.output
        split = load_split(out)
        pair = split[split["patient_id"].isin(["pt0", "pt2"])]
        assert (pair["split_group"].nunique() == 1) is together
        if together:
            assert pair["split"].nunique() == 1
            assert "1 groups joining more than one patient" in result.output
        flow = json.loads(out.with_suffix(".flow.json").read_text())
        assert flow["steps"][-1]["grouping"]["group_near_duplicates"] is together


def test_split_problems_by_hand():
    # acne: 10 patients, one in each split at least; ctcl: 1 patient, so only in train
    out = _split_quiet(_frame({"acne": 10, "ctcl": 1}))
    assert set(out.loc[out.diagnosis == "ctcl", "split"]) == {"train"}
    assert split_problems(out) == ["no ctcl in the val split", "no ctcl in the test split"]
    # a fraction of 0 asks for no test split: its absence is not a problem
    out = _split_quiet(_frame({"acne": 10, "rosacea": 10}), fractions=(0.9, 0.1, 0.0))
    assert split_problems(out, (0.9, 0.1, 0.0)) == []
    # two patients in all: the test split stays empty
    out = _split_quiet(_frame({"acne": 1, "rosacea": 1}))
    assert "the test split is empty" in split_problems(out)


def _manifest(folder, patients):
    folder.mkdir()
    lines = ["image_path,patient_id,diagnosis"]
    k = 0
    for dx, n in patients.items():
        for i in range(n):
            bf.valid_jpeg(folder / f"{k}.jpg", bf.gradient_rgb(16, 16, seed=k))
            lines.append(f"{k}.jpg,{dx}{i},{dx}")
            k += 1
    (folder / "m.csv").write_text("\n".join(lines) + "\n")
    return folder / "m.csv"


def test_split_command_refuses_a_disease_missing_from_val_and_test(tmp_path):
    from click.testing import CliRunner

    from skin_cnn.cli import cli

    manifest = _manifest(tmp_path / "d", {"psoriasis": 10, "eczema": 10, "ctcl": 2})
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["split", str(manifest), "-o", str(out), "--quiet"])
    assert result.exit_code == 1
    assert "m.csv: no ctcl in the" in result.output and "--allow-empty" in result.output
    assert not (out / "split.csv").exists()
    result = CliRunner().invoke(cli, ["split", str(manifest), "-o", str(out), "--quiet", "--allow-empty"])
    assert result.exit_code == 0, result.output
    assert "WARNING: no ctcl in the" in result.output and (out / "split.csv").is_file()


def test_a_split_without_patient_ids_counts_images_not_patients(tmp_path):
    from click.testing import CliRunner

    from skin_cnn.cli import cli

    folder = tmp_path / "d"
    folder.mkdir()
    lines = ["image_path,patient_id,diagnosis"]
    for i in range(30):
        bf.valid_jpeg(folder / f"{i}.jpg", bf.gradient_rgb(16, 16, seed=i))
        lines.append(f"{i}.jpg,,{'acne' if i % 2 else 'rosacea'}")
    (folder / "m.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["split", str(folder / "m.csv"), "-o", str(tmp_path / "s.csv"), "--quiet",
                                      "--no-group-near-duplicates"])
    assert result.exit_code == 0, result.output
    assert "patients" not in result.output.split("no patient ids")[1].replace("not patients", "")
    split = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)
    from skin_cnn.data.split import split_table

    table = split_table(split)
    assert set(table.columns.get_level_values(1)) == {"images"}
    assert int(table.loc["total"].sum()) == 30
    with_ids = split.assign(patient_id=[f"p{i // 2}" for i in range(len(split))])
    assert set(split_table(with_ids).columns.get_level_values(1)) == {"images", "patients"}


def test_manifest_check_writes_the_flow_record_split_would_start_with(tmp_path):
    from click.testing import CliRunner

    from skin_cnn.cli import cli
    from skin_cnn.core.io import sha256_file

    folder = tmp_path / "d"
    folder.mkdir()
    lines = ["image_path,patient_id,diagnosis"]
    for i in range(24):
        bf.valid_jpeg(folder / f"{i}.jpg", bf.gradient_rgb(16, 16, seed=i))
        lines.append(f"{i}.jpg,p{i // 2},{'acne' if i // 2 % 2 else 'rosacea'}")
    lines += ["gone.jpg,p21,acne", "0.jpg,p22,acne"]
    (folder / "m.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["manifest", "check", str(folder / "m.csv"), "-o", str(tmp_path / "r"),
                                      "--quiet"])
    assert result.exit_code == 1  # two rows with errors
    flow = json.loads((tmp_path / "r" / "manifest_report.flow.json").read_text())
    assert flow["describes"] == {"file": "m.csv", "sha256": sha256_file(folder / "m.csv")}
    manifest, validation = flow["steps"]
    assert manifest == {"name": "manifest", "images": 26, "patients": 14}
    assert (validation["images"], validation["patients"]) == (24, 12)
    assert validation["excluded"] == {"missing file": 1, "duplicate image path": 1}
    # the same two steps open the record split writes
    result = CliRunner().invoke(cli, ["split", str(folder / "m.csv"), "-o", str(tmp_path / "s.csv"), "--quiet",
                                      "--allow-empty", "--no-group-near-duplicates"])
    assert result.exit_code == 0, result.output
    split_flow = json.loads((tmp_path / "s.flow.json").read_text())
    assert split_flow["steps"][:2] == flow["steps"]
