"""MultiWorkerMirroredStrategy for real: two worker processes on 127.0.0.1 end with equal weights."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from test_training import tiny_config, tiny_split

#: Two training worker processes: minutes on a CPU.
pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
import numpy as np
import skin_cnn.training.trainer as trainer

from skin_cnn.app.train_run import train

from skin_cnn.training import resolve_config

original, seen = trainer.feature_stream, []

def recording(*args, **kwargs):  # what this worker's stream reads
    dataset = original(*args, **kwargs)
    seen.append({"shard": kwargs.get("shard"), "batch_sizes": [int(len(b[0])) for b in dataset]})
    return dataset

trainer.feature_stream = recording
result = train(resolve_config(json.loads(sys.argv[1])), progress=False, echo=print)
print("STREAMS", json.dumps(seen))
import keras
np.savez(sys.argv[2], *keras.models.load_model(result.run_dir / "last.keras", compile=False).get_weights())
print("RUN_DIR", result.run_dir)
"""


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_in_step_and_only_the_chief_writes_the_run_folder(tmp_path):
    split = tiny_split(tmp_path, broken=False)
    out = tmp_path / "run"
    config = tiny_config(split, out, variant="P", epochs=2, batch_size=4, strategy="multi-worker", cache_views=0,
                         save_last=True, tensorboard=False)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", SCRIPT, json.dumps(config.to_dict()), str(tmp_path / f"w{index}.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-3000:]
    run_dirs = [
        next(line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("RUN_DIR")) for text in outputs
    ]
    assert run_dirs[0] == str(out) and run_dirs[1] != str(out)  # worker 0 is the chief
    with np.load(tmp_path / "w0.npz") as a, np.load(tmp_path / "w1.npz") as b:
        assert len(a.files) == len(b.files) > 0
        for name in a.files:
            np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-6)
    # each worker streams only its own part of every global batch of 4: 2 + 2 (3 → 2 + 1, ...)
    from skin_cnn.data.split import load_split

    n_train = int((load_split(split)["split"] == "train").sum())
    per_epoch = [4] * (n_train // 4) + ([n_train % 4] if n_train % 4 else [])
    sizes = []
    for index, text in enumerate(outputs):
        streams = json.loads(next(line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("STREAMS")))
        assert streams and all(s["shard"] == [index, 2] for s in streams)
        sizes.append(streams[0]["batch_sizes"])
    assert [a + b for a, b in zip(*sizes)] == per_epoch * 2
    assert sizes[0] == [(g + 1) // 2 for g in per_epoch * 2] and sizes[1] == [g // 2 for g in per_epoch * 2]
    history = json.loads((out / "config.json").read_text())["resolved"]
    assert history["strategy"] == "multi-worker" and history["workers"] == 2
