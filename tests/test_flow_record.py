"""The chain of one split drawn from a flow record: per-split numbers after the split, the other
splits assigned (not excluded), and gaps the record cannot explain shown, not hidden.

The record is written out by hand with round numbers, so every expected count is read off it.
"""

import pytest

from skin_cnn.evaluation.flow import chain, flow_table

RECORD = {"steps": [
    {"name": "manifest", "images": 1000, "patients": 400},
    {"name": "validation", "images": 942, "patients": 390, "excluded": {"missing file": 50, "unknown diagnosis": 8}},
    {"name": "split", "train": {"images": 749, "patients": 310}, "val": {"images": 99, "patients": 40},
     "test": {"images": 94, "patients": 40}},
    # whole-set images 922 (942 − 20); the test split lost 4 of them
    {"name": "cleansing", "images": 922, "patients": 388, "excluded": {"non-skin": 20, "unreadable": 0},
     "train": {"images": 735, "patients": 309, "excluded": {"non-skin": 14, "unreadable": 0}},
     "val": {"images": 97, "patients": 40, "excluded": {"non-skin": 2, "unreadable": 0}},
     "test": {"images": 90, "patients": 39, "excluded": {"non-skin": 4, "unreadable": 0}}},
]}


def test_the_test_split_gets_test_numbers_and_the_other_splits_are_assigned():
    steps = chain(RECORD, "test")["steps"]
    assert [(s["images"], s["patients"]) for s in steps] == [(1000, 400), (942, 390), (94, 40), (90, 39)]
    assert steps[1]["excluded"] == {"missing file": 50, "unknown diagnosis": 8}
    assert steps[2]["assigned"] == {"train": 749, "val": 99} and steps[2]["excluded"] == {}
    assert steps[3]["excluded"] == {"non-skin": 4}  # not the whole set's 20; the empty reason dropped
    assert [s["unexplained"] for s in steps] == [0, 0, 0, 0]
    rows = flow_table(chain(RECORD, "test"))
    assert rows[2][3] == "assigned to train: 749 (not evaluated); assigned to val: 99 (not evaluated)"
    assert not any("excluded, in train" in r[3] or "train split" in r[3] for r in rows)


def test_the_val_split_chain_uses_the_val_counts():
    steps = chain(RECORD, "val")["steps"]
    assert (steps[2]["images"], steps[2]["assigned"]) == (99, {"train": 749, "test": 94})
    assert (steps[3]["images"], steps[3]["excluded"]) == (97, {"non-skin": 2})


def test_a_count_the_record_does_not_explain_is_shown():
    record = {"steps": [*RECORD["steps"], {"name": "crop", "images": 910, "excluded": {},
                                           "test": {"images": 85, "patients": 37, "excluded": {"unreadable": 2}}}]}
    crop = chain(record, "test")["steps"][-1]
    assert crop["unexplained"] == 90 - 2 - 85 == 3
    assert "not accounted for: 3" in flow_table(chain(record, "test"))[-1][3]


def test_a_whole_set_step_after_the_split_is_labelled_and_left_out_of_the_arithmetic():
    record = {"steps": [*RECORD["steps"], {"name": "review", "images": 900},
                        {"name": "crop", "test": {"images": 90, "patients": 39, "excluded": {}}}]}
    steps = chain(record, "test")["steps"]
    assert steps[4]["name"].endswith("(all splits together)") and steps[4]["unexplained"] == 0
    assert steps[5]["unexplained"] == 0  # compared with the test split's 90, not the 900


@pytest.mark.parametrize("bad, words", [
    ({"steps": []}, "non-empty"),
    ({"steps": [{"images": 3}]}, "name"),
    ({"steps": [{"name": "x", "images": -1}]}, "non-negative"),
    ({"steps": [{"name": "x", "images": 3, "excluded": {"why": "two"}}]}, "integer counts"),
])
def test_malformed_records_are_refused_in_one_line(bad, words):
    with pytest.raises(ValueError, match=words) as info:
        chain(bad, "test")
    assert "\n" not in str(info.value)
