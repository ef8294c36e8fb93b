"""The test configuration in setup.cfg: a per-test timeout that really stops a hung test."""
import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_test_running_past_the_configured_timeout_fails(tmp_path):
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    assert int(parser["tool:pytest"]["timeout"]) >= 600  # generous: the slowest test takes minutes
    # The same configuration with the timeout cut to 2 s, on a test that sleeps for 60 s.
    config = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    config = config.replace(f"timeout = {parser['tool:pytest']['timeout']}", "timeout = 2")
    config = config.replace("testpaths = tests", "testpaths = .")
    (tmp_path / "setup.cfg").write_text(config, encoding="utf-8")
    (tmp_path / "test_hangs.py").write_text("import time\n\n\ndef test_hangs():\n    time.sleep(60)\n",
                                            encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "Timeout (>2.0s) from pytest-timeout" in done.stdout
