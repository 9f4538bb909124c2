"""Load test of the demo on 127.0.0.1 only (prints numbers, not a test): concurrent visitors through gradio_client.

    python benchmarks/load_test.py [--clients 16] [--seconds 60] [--url http://127.0.0.1:7860/] [--space] [-- APP ARGS]

Starts ``app.py`` on a free 127.0.0.1 port (or uses ``--url``, which must be a 127.0.0.1 / localhost
address), then runs ``--clients`` visitors at once, each with its own gradio_client session: upload
a photo (cycling through the example photos), move the yaw / pitch sliders 8 times, enrol the face
once under its own name, repeat until ``--seconds`` have passed. Reports failed requests (an
exception, or a reply that is a warning instead of a result), p50 / p95 latency per request kind, and
the server's memory (RSS) before, after and at its peak, plus after a second, equal round: caches are
bounded if the second round does not grow it further.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from viewdiff.demo.local_server import running_app, space_env  # noqa: E402

PHOTOS = [REPO / "assets" / name for name in ("astronaut.jpg", "t1_face_yaw55.jpg", "cameraman_gray.png", "t1.jpg")]
MOVES_PER_PHOTO = 8


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Visitor(threading.Thread):
    """One browser session: photos, slider moves and one enrolment, until the deadline."""

    def __init__(self, url: str, index: int, deadline: float, results: dict, lock: threading.Lock):
        super().__init__(daemon=True)
        self.url, self.index, self.deadline, self.results, self.lock = url, index, deadline, results, lock
        self.rng = random.Random(index)

    def call(self, client, kind: str, *args, api_name: str, expect: str | None = None):
        """One request; a failure is an exception, no reply, or a reply without ``expect``. Returns success."""
        start = time.perf_counter()
        try:
            out = client.predict(*args, api_name=api_name)
            ok = out is not None and (expect is None or expect in str(out))
        except Exception as exc:  # noqa: BLE001 - every failure counts, whatever it is
            out, ok = repr(exc), False
        with self.lock:
            self.results[kind].append((time.perf_counter() - start) * 1000)
            if not ok:
                self.results["failed"].append(f"{kind}: {str(out)[:200]}")
        return ok

    def run(self) -> None:
        from gradio_client import Client, handle_file
        client = Client(self.url, verbose=False)
        view = [None, None, "feature strength", "z", 4, False]  # layer / head as the page sends them by default
        enrolled = False
        step = self.index
        while time.monotonic() < self.deadline:
            photo = PHOTOS[step % len(PHOTOS)]
            step += 1
            if not self.call(client, "photo", handle_file(str(photo)), 0, 0, 0, *view, api_name="/photo",
                             expect="estimated source pose"):
                continue
            for _ in range(MOVES_PER_PHOTO):
                if time.monotonic() >= self.deadline:
                    break
                pose = (self.rng.randint(-90, 90), self.rng.choice([0, 0, 15, -15]), 0)
                self.call(client, "slider", *pose, *view, api_name="/target_yaw")
            if not enrolled:
                self.call(client, "enrol", f"visitor {self.index}", 0, 0, 0, *view, api_name="/add")
                enrolled = True
        client.close()   # the visitor leaves: the page's session closes


def one_round(url: str, clients: int, seconds: float) -> dict:
    results: dict = defaultdict(list)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    visitors = [Visitor(url, i, deadline, results, lock) for i in range(clients)]
    for v in visitors:
        v.start()
    for v in visitors:
        v.join(timeout=seconds + 300)
    return results


def report(name: str, results: dict) -> None:
    requests = sum(len(v) for k, v in results.items() if k != "failed")
    print(f"{name}: {requests} requests, {len(results['failed'])} failed")
    for kind in ("photo", "slider", "enrol"):
        values = sorted(results.get(kind, []))
        if values:
            p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
            print(f"  {kind:6s} n={len(values):4d}  p50 {statistics.median(values):7.0f} ms  p95 {p95:7.0f} ms  "
                  f"max {values[-1]:7.0f} ms")
    for failure in results["failed"][:5]:
        print(f"  failed: {failure}")


def run(url: str, pid: int | None, clients: int, seconds: float) -> None:
    peak = [0.0]
    stop = threading.Event()

    def watch():
        while not stop.wait(0.5):
            peak[0] = max(peak[0], rss_mib(pid))

    if pid:
        threading.Thread(target=watch, daemon=True).start()
        print(f"server RSS before: {rss_mib(pid):.0f} MiB")
    for round_ in (1, 2):
        results = one_round(url, clients, seconds)
        report(f"round {round_} ({clients} clients x {seconds:.0f} s)", results)
        if pid:
            time.sleep(2)
            print(f"server RSS after round {round_}: {rss_mib(pid):.0f} MiB (peak so far {peak[0]:.0f} MiB)")
    stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--url", default=None, help="a demo already running on this machine")
    parser.add_argument("--space", action="store_true", help="run app.py as a simulated Space")
    parser.add_argument("app_args", nargs="*", help="arguments for app.py (after --)")
    args = parser.parse_args()
    if args.url:
        if urlparse(args.url).hostname not in ("127.0.0.1", "localhost"):
            parser.error("the load test runs against this machine only (127.0.0.1 / localhost)")
        run(args.url, None, args.clients, args.seconds)
        return
    with tempfile.TemporaryDirectory(prefix="load-test-") as tmp:
        env = {**(space_env(Path(tmp)) if args.space else {}), "VIEWDIFF_CONCURRENCY": "2"}
        with running_app(args.app_args, Path(tmp) / "app.log", env) as (url, proc):
            print(f"app.py {' '.join(args.app_args)} at {url}{' (Space mode)' if args.space else ''}")
            run(url, proc.pid, args.clients, args.seconds)
            log = (Path(tmp) / "app.log").read_text()
            print(f"server log: {log.count('Traceback')} tracebacks, {log.count('unexpected error')} unexpected errors")


if __name__ == "__main__":
    main()
