"""A normal upload to ``skin-cnn serve`` while slow clients hold every upload slot.

Starts the real application (uvicorn on 127.0.0.1, the default ``BodyLimits``, four upload
slots) around a stand-in predictor (``tests/serve_fakes.py``: the real image reader, no model),
opens ``--slow`` connections that each declare a 1,000-byte photo and send it at one byte per
second, waits until they hold the slots, then times one normal upload of a small PNG. Prints one
JSON line: the normal upload's status and seconds (goal: answered, under 5 s), the same upload's
time with no slow client (the reference, same run), their ratio, and what the slow clients got::

    python benchmarks/bench_slow_clients.py [--slow 4] [--hold 1.0]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trickle(port, stop, answers):
    head = (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1000\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(head)
        conn.settimeout(1.0)
        reply = b""
        while not stop.is_set() and not reply:
            try:
                conn.sendall(b"x")
                reply = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
        answers.append(reply.split(b"\r\n", 1)[0].decode("latin-1") or "no answer")


def _cpu_flags():
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return []
    return sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slow", type=int, default=4, help="slow clients (the default slots: 4)")
    ap.add_argument("--hold", type=float, default=1.0, help="seconds they trickle before timing")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    import httpx
    import numpy as np
    import uvicorn
    from PIL import Image
    from serve_fakes import FakePredictor

    from skin_cnn.serve.app import create_app

    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(buffer, format="PNG")
    photo = buffer.getvalue()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(FakePredictor(), workers=2), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/api/predict"

    def upload():
        started = time.perf_counter()
        answer = httpx.post(url, files={"file": ("p.png", photo, "image/png")}, timeout=120)
        return answer.status_code, time.perf_counter() - started

    upload()  # warm-up
    _, alone = upload()
    stop, answers = threading.Event(), []
    slow = [threading.Thread(target=_trickle, args=(port, stop, answers)) for _ in range(args.slow)]
    for t in slow:
        t.start()
    time.sleep(args.hold)
    status, seconds = upload()
    stop.set()
    for t in slow:
        t.join()
    server.should_exit = True
    thread.join()
    print(json.dumps({
        "slow_clients": args.slow, "normal_status": status, "normal_s": round(seconds, 3),
        "alone_s": round(alone, 4), "ratio": round(seconds / alone, 1),
        "slow_answers": sorted(answers), "machine": platform.machine(), "cpu_flags": _cpu_flags(),
    }))


if __name__ == "__main__":
    main()
