"""Partial reads of a shown picture while other requests show the same one (prints numbers, not a test).

    python benchmarks/picture_write_race.py [--writers 3] [--reads 2000]

What a file response does (the size from ``stat``, then the body) against `--writers` threads that keep showing the
same 400x400 picture: through gradio's own cache write (``save_pil_to_cache``: truncate, then write in place) and
through `viewdiff.demo.image_files.write_once` (the demo's detected-faces picture: a whole file, renamed into place,
never rewritten). A read is partial when its size or body differs from the whole file's.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from viewdiff.demo.image_files import write_once  # noqa: E402


def partial_reads(write, writers: int, reads: int) -> int:
    """Reads (stat, then the body) of the file `write()` returns that meet a partial file while `writers` threads
    call `write()` again."""
    path = write()
    size, stop, partial = os.stat(path).st_size, threading.Event(), 0

    def again():
        while not stop.is_set():
            write()

    threads = [threading.Thread(target=again) for _ in range(writers)]
    for t in threads:
        t.start()
    for _ in range(reads):
        declared = os.stat(path).st_size
        with open(path, "rb") as f:
            partial += declared != size or len(f.read()) != size
    stop.set()
    for t in threads:
        t.join()
    return partial


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--writers", type=int, default=3)
    p.add_argument("--reads", type=int, default=2000)
    args = p.parse_args(argv)
    from gradio.processing_utils import save_pil_to_cache
    rgb = np.random.default_rng(2).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as gradio_dir, tempfile.TemporaryDirectory() as own_dir:
        picture = Image.fromarray(rgb)
        ways = {"gradio save_pil_to_cache": lambda: save_pil_to_cache(picture, gradio_dir, format="jpeg"),
                "write_once": lambda: write_once(rgb, own_dir)}
        for name, write in ways.items():
            print(f"{name}: {partial_reads(write, args.writers, args.reads)} partial reads of {args.reads} "
                  f"({args.writers} writers)")


if __name__ == "__main__":
    main()
