"""Measured face surfaces of the cached records (MediaPipe Face Mesh, `viewdiff.faces.face_mesh`).

`extract_surface` re-reads each photo of a records cache (`viewdiff.training.records`) from the path in it, runs
the mesh on the face the detector found there (its cached 5 keypoints: no new detection) and writes
``<cache_dir>/<backend>/<dataset>_surface.npz``, row by row in `load_records`' order (sorted by path, the
``path`` column repeats it): ``vertices`` float16 [N, 468, 3], ``presence`` float32 [N], ``cell_depth``
float32 [N, 7, 7], ``keypoints_3d`` float32 [N, 5, 3] (frames: `viewdiff.faces.face_mesh`); rows without a face
(or whose photo cannot be read) hold NaN. The file is written under a temporary name and renamed at the end.
`load_surface` reads it back for `load_records(..., surface=True)`.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from viewdiff.training.listings import resolve_dataset

SURFACE_VERSION = 2   # 2: mesh crop span 1.2, the records' keypoints hash in the key
_WORKER_MESH = None


def surface_path(cache_dir: str | Path, dataset: str, backend: str) -> Path:
    return Path(cache_dir) / backend / f"{dataset}_surface.npz"


def surface_command(dataset: str, backend: str, cache_dir) -> str:
    return (f"`python -m viewdiff.training.extract_surface --datasets {dataset} --backend {backend} "
            f"--cache_dir {cache_dir}`")


def records_key(records) -> dict:
    """What a surface file was computed from: its version, the rows' count and the sha1 of their keypoints and
    `found` flags (a re-detection of the records makes the file stale)."""
    digest = hashlib.sha1(np.ascontiguousarray(records.keypoints, np.float32).tobytes())
    digest.update(np.ascontiguousarray(records.found, bool).tobytes())
    return {"version": SURFACE_VERSION, "rows": int(len(records)), "keypoints_sha1": digest.hexdigest()}


def _start_worker() -> None:
    global _WORKER_MESH
    from viewdiff.faces.face_mesh import FaceMesh
    _WORKER_MESH = FaceMesh()


def _surface_row(job: tuple[str, np.ndarray]):
    """(photo path, keypoints [5, 2]) -> (vertices, presence, cell_depth, keypoints_3d) or None (unreadable)."""
    from viewdiff.faces.errors import FaceAnalysisError
    from viewdiff.faces.images import load_image
    path, keypoints = job
    try:
        image = load_image(path)
    except (FaceAnalysisError, OSError):
        return None
    s = _WORKER_MESH.surface(image, keypoints)
    return s.vertices, s.presence, s.cell_depth, s.keypoints_3d


def extract_surface(cache_dir: str | Path, dataset: str, backend: str = "insightface",
                    data_root: str | Path | None = None, jobs: int = 1, progress: bool = True,
                    force: bool = False) -> tuple[Path, dict]:
    """Write `surface_path` for the `dataset` records cache (module docstring) -> (path, stats).

    Skipped (stats["skipped"] True) when the file is there for the same rows and keypoints, unless `force`.
    stats: rows, faces (found), measured, unreadable, seconds, presence (array [N]).
    """
    from tqdm import tqdm

    from viewdiff.paths import data_root as default_data_root
    from viewdiff.training.records import load_records
    records = load_records(cache_dir, dataset, backend)
    out = surface_path(cache_dir, dataset, backend)
    key = records_key(records)
    if out.is_file() and not force:
        with np.load(out, allow_pickle=False) as z:
            if json.loads(str(z["meta"])) == key and np.array_equal(z["path"].astype(str), records.path):
                return out, {"skipped": True, "rows": len(records), "presence": z["presence"]}
    root = resolve_dataset(dataset, data_root or default_data_root()).root
    n = len(records)
    vertices = np.full((n, 468, 3), np.nan, np.float16)
    presence = np.full(n, np.nan, np.float32)
    cell_depth = np.full((n, 7, 7), np.nan, np.float32)
    keypoints_3d = np.full((n, 5, 3), np.nan, np.float32)
    rows = np.flatnonzero(records.found)
    jobs_list = [(str(root / records.path[i]), records.keypoints[i]) for i in rows]
    start, unreadable = time.perf_counter(), 0
    pool = None
    if jobs > 1:
        import multiprocessing
        pool = multiprocessing.get_context("spawn").Pool(jobs, _start_worker)
        results = pool.imap(_surface_row, jobs_list, chunksize=16)
    else:
        _start_worker()
        results = map(_surface_row, jobs_list)
    try:
        for i, res in tqdm(zip(rows, results), total=len(rows), desc=f"{dataset} surface", disable=not progress,
                           unit="face", smoothing=0.05):
            if res is None:
                unreadable += 1
                continue
            vertices[i], presence[i], cell_depth[i], keypoints_3d[i] = res
    finally:
        if pool is not None:
            pool.terminate()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial.npz")
    np.savez(tmp, meta=json.dumps(key), path=records.path, vertices=vertices, presence=presence,
             cell_depth=cell_depth, keypoints_3d=keypoints_3d)
    tmp.replace(out)
    return out, {"skipped": False, "rows": n, "faces": int(len(rows)), "measured": int(len(rows) - unreadable),
                 "unreadable": unreadable, "seconds": time.perf_counter() - start, "presence": presence}


def load_surface(cache_dir: str | Path, dataset: str, backend: str, records) -> dict[str, np.ndarray]:
    """The surface columns (vertices, presence, cell_depth, keypoints_3d) for `records` (`load_records`' rows,
    without a surface); a missing or stale file raises `FileNotFoundError` naming the command to run."""
    out = surface_path(cache_dir, dataset, backend)
    rerun = surface_command(dataset, backend, cache_dir)
    if not out.is_file():
        raise FileNotFoundError(f"no face-surface file at {out}: run {rerun} (after the records extraction)")
    with np.load(out, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta != records_key(records) or not np.array_equal(z["path"].astype(str), records.path):
            raise FileNotFoundError(f"the face-surface file {out} is for other rows than the records (or older): "
                                    f"rerun {rerun} --force")
        return {k: z[k] for k in ("vertices", "presence", "cell_depth", "keypoints_3d")}
