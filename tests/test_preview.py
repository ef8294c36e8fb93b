"""skin-cnn preview: the batch training fed, pixel for pixel, and the grid drawn from it."""
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from test_training import tiny_config, tiny_split


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("preview"))  # with one unreadable training photo


def test_preview_of_a_run_is_the_batch_training_fed(split_csv, tmp_path, monkeypatch):
    import skin_cnn.training.trainer as trainer
    from skin_cnn.app.train_run import train
    from skin_cnn.training.preview import run_training_batch

    streams = []
    original = trainer.image_stream

    def recording(*args, **kwargs):
        dataset = original(*args, **kwargs)
        streams.append(dataset)
        return dataset

    monkeypatch.setattr(trainer, "image_stream", recording)
    out = tmp_path / "run"
    train(tiny_config(split_csv, out, variant="N", epochs=3, batch_size=3, balanced=True), progress=False,
          echo=lambda m: None)
    assert len(streams) == 1  # the stream that fit consumed: epochs 1..3
    fed = [np.asarray(batch[0]) for batch in streams[0]]
    steps = len(fed) // 3
    for epoch, batch in ((1, 0), (2, 1), (3, steps - 1)):
        (images, rows), _ = run_training_batch(out, epoch=epoch, batch=batch)
        np.testing.assert_array_equal(images, fed[(epoch - 1) * steps + batch])
        assert not rows["image_path"].str.endswith("broken.jpg").any()
    # a different epoch is a different batch (order or augmentation)
    (first, _), _ = run_training_batch(out, epoch=1, batch=0)
    (second, _), _ = run_training_batch(out, epoch=2, batch=0)
    assert first.shape != second.shape or not np.array_equal(first, second)


def test_preview_of_a_cached_run_shows_the_stored_view_of_each_image(split_csv, tmp_path):
    """With the feature cache, the trunk applied to the preview equals the features trained on."""
    import keras

    from skin_cnn.data.pipeline import epoch_order
    from skin_cnn.models import split_at_frozen_boundary
    from skin_cnn.app.train_run import train
    from skin_cnn.data.split import load_split
    from skin_cnn.training.feature_cache import cached_features
    from skin_cnn.training.preview import run_training_batch
    from skin_cnn.training.trainer import feature_settings

    out = tmp_path / "run"
    config = tiny_config(split_csv, out, variant="P", epochs=2, batch_size=4, cache_views=2)
    train(config, progress=False, echo=lambda m: None)
    (images, rows), _ = run_training_batch(out, epoch=2, batch=0)
    assert set(rows["view"]) <= {0, 1, 2}
    trunk, _ = split_at_frozen_boundary(keras.models.load_model(out / "best.keras", compile=False))
    settings, views = feature_settings(config, trunk)
    messages = []
    cache = cached_features(load_split(out / "split.csv"), {"train": 1 + views}, trunk, settings,
                            progress=False, echo=messages.append)
    assert cache.reused, messages  # the features the run trained on
    diseases = load_split(out / "split.csv").loc[cache.positions["train"], "diagnosis"].to_numpy()
    idx = epoch_order(config.seed, 1, diseases)[:4]
    expected = cache.train[rows["view"].to_numpy(), idx]
    np.testing.assert_allclose(np.asarray(trunk(images, training=False)), expected, atol=1e-4)


def test_preview_command_draws_a_run_and_a_split(split_csv, tmp_path):
    from skin_cnn.cli import cli
    from skin_cnn.app.train_run import train

    out = tmp_path / "run"
    train(tiny_config(split_csv, out, variant="N", epochs=1), progress=False, echo=lambda m: None)
    runner = CliRunner()
    result = runner.invoke(cli, ["preview", str(out), "-o", str(tmp_path / "run.png"), "--epoch", "1", "--n", "3"])
    assert result.exit_code == 0, result.output
    assert "epoch 1, batch 0" in result.output
    result = runner.invoke(cli, ["preview", str(split_csv), "-o", str(tmp_path / "grid"), "--image-size", "32",
                                 "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "grid" / "preview.png") as grid:
        assert grid.format == "PNG" and grid.size[0] > 100
    result = runner.invoke(cli, ["preview", str(out), "-o", str(tmp_path / "x.png"), "--epoch", "9"])
    assert result.exit_code != 0 and "outside 1..1" in result.output
    result = runner.invoke(cli, ["preview", str(out), "-o", str(tmp_path / "x.png"), "--image-size", "64"])
    assert result.exit_code != 0 and "run folder's settings" in result.output


def test_preview_of_a_split_uses_the_training_defaults(split_csv):
    """Crop on, augmentation on, as `skin-cnn train SPLIT` would: the clean view differs from the raw photo."""
    from skin_cnn.data.split import load_split
    from skin_cnn.training.config import resolve_config
    from skin_cnn.training.preview import training_batch

    config = resolve_config({"split": str(split_csv), "out": "", "image_size": 32, "batch_size": 4})
    assert config.crop and config.zoom > 0
    images, rows = training_batch(config, load_split(split_csv), epoch=1, batch=0)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.float32
    assert set(rows["split"]) == {"train"}


def test_the_advice_for_a_run_without_epochs_names_its_crop_setting(split_csv, tmp_path):
    import json

    from skin_cnn.cli import cli
    from skin_cnn.training.config import resolve_config
    from skin_cnn.training.preview import split_preview_command

    run = tmp_path / "run"
    run.mkdir()
    settings = {"head": "linear", "crop": False, "variant": "P", "image_size": 64, "split": str(split_csv)}
    (run / "config.json").write_text(json.dumps({"train": settings}))
    result = CliRunner().invoke(cli, ["preview", str(run), "-o", str(tmp_path / "p.png")])
    assert result.exit_code != 0
    advice = result.output.split("`")[1]
    assert advice == "skin-cnn preview SPLIT --no-augment --variant P --image-size 64 --no-crop"
    args = advice.replace("SPLIT", str(split_csv)).split()[1:] + ["-o", str(tmp_path / "p.png")]
    assert CliRunner().invoke(cli, args).exit_code == 0 and (tmp_path / "p.png").is_file()
    # the advised command previews with the run's own settings
    cropped = resolve_config(dict(settings, crop=True, head="mlp"), source="t")
    assert "--no-crop" not in split_preview_command(cropped)
