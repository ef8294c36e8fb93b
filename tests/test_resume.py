"""A training run killed with SIGKILL mid-run resumes and ends exactly like an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from test_training import tiny_config, tiny_split

SCRIPT = """
import json, sys
from skin_cnn.app.train_run import train
from skin_cnn.training import resolve_config
train(resolve_config(json.loads(sys.argv[1])), progress=False, echo=print)
"""


def _weights(path):
    import keras

    return keras.models.load_model(path, compile=False).get_weights()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("variant", ["P", "N"])
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_and_history(tmp_path, variant, precision,
                                                                        feature_cache_dir):
    """P trains on cached features, N on augmented images: both replay the killed epoch exactly,
    in float32 and with a bfloat16 trunk (N then trains its convolutions in mixed bfloat16)."""
    from skin_cnn.app.train_run import train
    from skin_cnn.training import load_resume_config

    split = tiny_split(tmp_path, broken=False)
    settings = dict(variant=variant, epochs=6 if variant == "P" else 4, batch_size=2, cache_views=2, patience=2,
                    lr_patience=1, save_last=True, precision=precision)
    killed = tmp_path / "killed"
    config = tiny_config(split, killed, **settings)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(config.to_dict())],
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "stderr.txt", "w"))
    state = killed / "backup" / "state.npz"
    deadline = time.time() + 240
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "run ended before the kill: " + (tmp_path / "stderr.txt").read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    with np.load(state) as saved:
        interrupted_after = json.loads(str(saved["meta"]))["epoch"]
    assert interrupted_after < settings["epochs"]

    messages = []
    train(load_resume_config(killed), resume=True, progress=False, echo=messages.append)
    assert any(f"after epoch {interrupted_after}" in m for m in messages)
    assert f"precision: {precision} (set; recorded in the run)" in messages
    if variant == "P":
        assert any("reusing feature cache" in m for m in messages)
    # the killed process's preparation folder and partial cache are gone
    assert not list(killed.glob(".prepared-*"))
    assert not list(feature_cache_dir.glob("*/chunks/.*"))

    reference = tmp_path / "reference"
    train(tiny_config(split, reference, **settings), progress=False, echo=lambda m: None)

    for name in ("last.keras", "best.keras"):
        for a, b in zip(_weights(killed / name), _weights(reference / name)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    resumed, uninterrupted = (
        pd.read_csv(run / "history.csv").drop(columns="epoch_time_s") for run in (killed, reference)
    )
    assert resumed["epoch"].tolist() == uninterrupted["epoch"].tolist()  # no epoch twice, none missing
    np.testing.assert_allclose(resumed.to_numpy(float), uninterrupted.to_numpy(float), rtol=1e-5, atol=1e-6)
