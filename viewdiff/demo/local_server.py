"""Run ``app.py`` as a local server in a subprocess (127.0.0.1, a free port) and wait until it answers.

Used by the browser tests, `benchmarks/bench_demo.py` and `benchmarks/load_test.py`.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from viewdiff.paths import REPO_ROOT

START_TIMEOUT_S = 180  # importing torch + gradio and loading the face models on a busy 2-core machine


class ServerError(RuntimeError):
    """app.py exited or did not answer in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def space_env(root: Path) -> dict[str, str]:
    """Environment of a simulated Hugging Face Space: no ../shared, no network, an empty home (under ``root``)."""
    (root / "no-shared").mkdir(parents=True, exist_ok=True)
    (root / "home").mkdir(parents=True, exist_ok=True)
    return {"VIEWDIFF_SHARED": str(root / "no-shared"), "VIEWDIFF_OFFLINE": "1", "HOME": str(root / "home")}


@contextmanager
def running_app(args: list[str], log_path: Path, env: dict[str, str] | None = None,
                timeout_s: float = START_TIMEOUT_S):
    """``python app.py *args`` with ``env`` added; yields its URL; stops it on exit (SIGTERM, then SIGKILL)."""
    port = free_port()
    full_env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
                "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "VIEWDIFF_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1", **(env or {})}
    url = f"http://127.0.0.1:{port}/"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "app.py", *args], cwd=REPO_ROOT, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise ServerError(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"app.py did not answer on {url} within {timeout_s} s:\n"
                                  f"{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
