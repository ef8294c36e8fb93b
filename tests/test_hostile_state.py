"""Damaged inputs that must fail with one line naming the file, not a traceback.

* ``restore_state`` (``skin_cnn.training.callbacks``) on a damaged ``backup/state.npz`` (once a
  ``zipfile.BadZipFile`` and a 46-line traceback on the command line).
* ``read_predictions`` (``skin_cnn.core.predictions``, read by ``skin-cnn evaluate --predictions``) on
  an empty, header-only or binary file, and on a bad ``y_true``, which must name its line.
"""
import numpy as np
import pytest


def _tiny_model():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 3), "float32"), np.zeros((4, 2), "float32"), epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory):
    from skin_cnn.training.callbacks import save_state

    folder = tmp_path_factory.mktemp("run") / "backup"
    folder.mkdir()
    path = folder / "state.npz"
    save_state(path, _tiny_model(), {"epoch": 1})
    return path


def test_an_intact_state_restores(saved_state):
    from skin_cnn.training.callbacks import restore_state

    assert restore_state(saved_state, _tiny_model())["epoch"] == 1


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "text"])
def test_a_damaged_state_file_is_one_line_naming_it(saved_state, tmp_path, damage):
    from skin_cnn.training.callbacks import restore_state

    data = saved_state.read_bytes()
    broken = tmp_path / "backup" / "state.npz"
    broken.parent.mkdir()
    broken.write_bytes(
        {"truncated": data[: len(data) // 2], "zeroed": bytes(len(data)), "text": b"not a state file\n"}[damage]
    )
    # Recommended: ValueError(f"{path}: saved training state is damaged or incomplete
    # ({type(exc).__name__}: {exc}); delete {path} to train from the start")
    with pytest.raises(ValueError) as info:
        restore_state(broken, _tiny_model())
    message = str(info.value)
    assert message.startswith(f"{broken}: ") and "damaged" in message and "\n" not in message


HEADER = "image_path,patient_id,task,y_true,y_prob\n"


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty file"),
        (HEADER.encode(), "no rows"),
        (bytes(range(256)) * 8, "not a text"),
    ],
    ids=["empty", "header-only", "binary"],
)
def test_unreadable_predictions_files_are_named_with_the_reason(tmp_path, content, words):
    from skin_cnn.core.predictions import read_predictions

    path = tmp_path / "predictions.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_predictions(path)
    assert str(info.value).startswith(f"{path}: ") and words in str(info.value)


@pytest.mark.parametrize(
    "second_row, message",
    [
        ("b.jpg,p2,acne_vs_rosacea,2,0.2", "line 3: y_true must be 0 or 1, got '2'"),
        ("b.jpg,p2,acne_vs_rosacea,,0.2", "line 3: y_true must be 0 or 1, got an empty cell"),
        ("b.jpg,p2,acne_vs_rosacea,0,", "line 3: y_prob must be a probability in [0, 1], got an empty cell"),
        ("b.jpg,p2,acne_vs_rosacea,0,inf", "line 3: y_prob must be a probability in [0, 1], got 'inf'"),
        ("b.jpg,p2,acne_vs_rosacea,0,87%", "line 3: y_prob must be a probability in [0, 1], got '87%'"),
        (",p2,acne_vs_rosacea,0,0.2", "line 3: image_path is empty"),
        ("b.jpg,p2, ,0,0.2", "line 3: task is empty"),
        ("b.jpg,p2,acne_vs_eczema,0,0.2", "line 3: unknown task(s) acne_vs_eczema; expected"),
    ],
    ids=["label-2", "label-empty", "prob-empty", "prob-inf", "prob-percent", "path-empty", "task-blank",
         "task-unknown"],
)
def test_a_bad_cell_is_named_by_its_line_and_shown_as_the_file_has_it(tmp_path, second_row, message):
    from skin_cnn.core.predictions import read_predictions

    path = tmp_path / "predictions.csv"
    path.write_text(HEADER + "a.jpg,p1,acne_vs_rosacea,1,0.9\n" + second_row + "\n")
    with pytest.raises(ValueError) as info:
        read_predictions(path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert "np." not in str(info.value)  # no numpy reprs in what a user reads


def test_a_semicolon_separated_file_is_refused_with_the_columns_it_has_and_the_likely_cause(tmp_path):
    from skin_cnn.core.predictions import read_predictions

    path = tmp_path / "predictions.csv"
    path.write_text(HEADER.replace(",", ";") + "a.jpg;p1;acne_vs_rosacea;1;0.9\n")
    with pytest.raises(ValueError, match=r"columns found: image_path;patient_id;task;y_true;y_prob\); is it "
                                         r"separated by ';'"):
        read_predictions(path)


def test_a_bad_y_true_names_its_line(tmp_path):
    from skin_cnn.core.predictions import read_predictions

    path = tmp_path / "predictions.csv"
    path.write_text(HEADER + "a.jpg,p1,acne_vs_rosacea,1,0.9\nb.jpg,p2,acne_vs_rosacea,yes,0.2\n")
    with pytest.raises(ValueError, match=r"line 3: y_true must be 0 or 1"):
        read_predictions(path)
