"""Training that diverges stops at once with a one-line cause, and --resume continues it."""
import keras
import numpy as np
import pytest

from test_training import tiny_config, tiny_split


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("tiny"))


class PoisonAtEpoch(keras.callbacks.Callback):
    """Set the weights of the named layer to NaN when epoch ``epoch`` (1-based) begins."""

    def __init__(self, epoch, layer_name):
        super().__init__()
        self.epoch, self.layer_name = epoch, layer_name

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            layer = next(layer for layer in _all_layers(self.model) if layer.name == self.layer_name)
            layer.set_weights([np.full_like(w, np.nan) for w in layer.get_weights()])


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        for name in ("loc_theta", "loc_dense"):
            if hasattr(layer, name):
                yield getattr(layer, name)


def _poisoned(monkeypatch, epoch, layer_name):
    import skin_cnn.training.trainer as trainer

    made = trainer.make_callbacks

    def with_poison(*args, **kwargs):
        listed, *rest = made(*args, **kwargs)
        return (listed + [PoisonAtEpoch(epoch, layer_name)], *rest)

    monkeypatch.setattr(trainer, "make_callbacks", with_poison)


def test_a_transformer_zoom_turned_nan_stops_ps_training_in_that_epoch_and_resume_finishes(
        split_csv, tmp_path, monkeypatch):
    from skin_cnn.app.train_run import train
    from skin_cnn.training import load_resume_config
    from skin_cnn.training.callbacks import TrainingDiverged

    out = tmp_path / "ps"
    _poisoned(monkeypatch, 2, "loc_theta")
    with pytest.raises(TrainingDiverged) as caught:
        train(tiny_config(split_csv, out, variant="PS", epochs=3), progress=False, echo=lambda m: None)
    message = str(caught.value)
    assert message.startswith(f"{out}: training diverged in epoch 2, batch 1: the spatial transformer's zoom")
    assert "--resume continues from epoch 2" in message and "\n" not in message
    assert (out / "best.keras").is_file() and (out / "backup" / "state.npz").is_file()
    assert not (out / "status.json").exists()  # not reported as finished

    monkeypatch.undo()
    result = train(load_resume_config(out), resume=True, progress=False, echo=lambda m: None)
    assert result.epochs_run == 3 and (out / "status.json").is_file()


def test_a_nan_training_loss_stops_training_in_that_epoch_instead_of_running_on(split_csv, tmp_path, monkeypatch):
    from skin_cnn.app.train_run import train
    from skin_cnn.training.callbacks import TrainingDiverged

    out = tmp_path / "n"
    _poisoned(monkeypatch, 2, "psoriasis_vs_eczema")
    with pytest.raises(TrainingDiverged, match=r"diverged in epoch 2, batch 1: the training loss is nan"):
        train(tiny_config(split_csv, out, variant="N", epochs=4), progress=False, echo=lambda m: None)
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 2  # the header and epoch 1: nothing written after the loss turned NaN


def test_a_run_that_diverges_in_its_first_epoch_says_there_is_nothing_to_resume(split_csv, tmp_path, monkeypatch):
    from skin_cnn.app.train_run import train
    from skin_cnn.training.callbacks import TrainingDiverged

    out = tmp_path / "first"
    _poisoned(monkeypatch, 1, "psoriasis_vs_eczema")
    with pytest.raises(TrainingDiverged) as caught:
        train(tiny_config(split_csv, out, variant="N", epochs=2), progress=False, echo=lambda m: None)
    message = str(caught.value)
    assert "in epoch 1, batch " in message and "nothing to resume" in message and "--resume" not in message
    assert not (out / "best.keras").exists() and not (out / "backup" / "state.npz").exists()
