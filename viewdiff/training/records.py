"""Face records: dataset images -> cached `FaceRecords` (training pairs: `viewdiff.training.datasets`).

Builders list the images of a dataset with their labels (identity, view, CFP-FP fold, true pose);
`extract_records` runs a `FaceAnalyzer` once per image and caches the results in
`<cache_dir>/<backend>/<dataset>.npz`, keyed per image by the sha1 of the file and the analyzer's
model description, so a rerun (or a bigger run after a small one) only analyses what is new. The
cache is written every `SAVE_EVERY` analysed images, so an interrupted extraction keeps its work and
the next run resumes where it stopped. It also keeps each face's aligned 112x112 crop (`load_crops`),
so whatever is computed from a crop later needs no new detection.

Datasets and their labels: `viewdiff.training.listings` (CFP, Pointing'04, any folder dataset by a spec).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from viewdiff.faces.errors import FaceAnalysisError
from viewdiff.faces.geometry import keypoints_3d_from_pose
from viewdiff.faces.head_pose import FEATURES, default_calibration, refresh_features
from viewdiff.training.listings import (DATASETS, ImageItem, dataset_name, folder_fold, resolve_dataset,
                                        spread_over_folds)

CACHE_VERSION = 4   # 2: mirror embeddings, raw head-pose estimates, embedder fingerprint; 3: crops; 4: box, keypoints
CROP_SIZE = 112
SAVE_EVERY = 250
MAPS_BATCH = 256   # crops per run of the embedder when the feature maps are computed


@dataclass
class FaceRecords:
    """Analysed images as parallel arrays (N rows; rows where `found` is False hold zeros).

    embedding [N, D] float32 (unit length), embedding_mirror [N, D] (the mirrored face), source_pose
    [N, 3] estimated yaw/pitch/roll (degrees), pose_features [N, 7] (the raw estimates behind it, see
    `viewdiff.faces.head_pose`), true_pose [N, 3] (nan when unknown), keypoints_3d [N, 5, 3], bbox [N, 4] and
    keypoints [N, 5, 2] (the detector's, in pixels of the photo), identity [N] str, view [N] str, fold [N] int,
    path [N] str (relative to the dataset's root, see `DatasetSource`), found [N] bool.
    fingerprint: the embedder's (see `viewdiff.faces.backends`), one for all rows.
    feature_map, feature_map_mirror [N, C, 7, 7]: the embedder's last map of the photo and of the mirrored
    photo flipped back to the photo's cells (`load_records(..., maps=True)`; None otherwise).
    With `load_records(..., surface=True)` (the MediaPipe face mesh, `viewdiff.training.surface`): keypoints_3d
    is measured on each face's mesh (template frame of the aligned crop, `viewdiff.faces.face_mesh`) instead of
    the template rotated by `source_pose`; cell_depth [N, 7, 7] the depth of the face surface under each map cell
    (NaN off the face), presence [N] the mesh's face presence (sigmoid); rows without a face hold NaN there.
    """
    embedding: np.ndarray
    embedding_mirror: np.ndarray
    source_pose: np.ndarray
    pose_features: np.ndarray
    true_pose: np.ndarray
    keypoints_3d: np.ndarray
    bbox: np.ndarray
    keypoints: np.ndarray
    identity: np.ndarray
    view: np.ndarray
    fold: np.ndarray
    path: np.ndarray
    found: np.ndarray
    fingerprint: str = ""
    feature_map: np.ndarray | None = None
    feature_map_mirror: np.ndarray | None = None
    cell_depth: np.ndarray | None = None
    presence: np.ndarray | None = None

    def columns(self) -> dict[str, np.ndarray]:
        """The per-row arrays by field name (the maps only when loaded)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "fingerprint" and getattr(self, f.name) is not None}

    def __len__(self) -> int:
        return len(self.path)

    def subset(self, mask_or_index) -> "FaceRecords":
        """The rows selected by a boolean mask or an index array."""
        return FaceRecords(**{k: v[mask_or_index] for k, v in self.columns().items()}, fingerprint=self.fingerprint)

    @classmethod
    def concatenate(cls, parts: list["FaceRecords"]) -> "FaceRecords":
        if not parts:
            raise ValueError("no record sets to concatenate")
        dims = {p.embedding.shape[1] for p in parts}
        prints = {p.fingerprint for p in parts}
        if len({p.feature_map is None for p in parts}) > 1:
            raise ValueError("some record sets have feature maps and some not: load all with maps=True or none")
        if len({p.cell_depth is None for p in parts}) > 1:
            raise ValueError("some record sets have face surfaces and some not: load all with surface=True or none")
        if len(dims) > 1 or len(prints) > 1:
            raise ValueError(f"record sets come from different embedders (widths {sorted(dims)}, fingerprints "
                             f"{sorted(prints)}): extract every dataset with the same backend")
        return cls(**{k: np.concatenate([p.columns()[k] for p in parts]) for k in parts[0].columns()},
                   fingerprint=parts[0].fingerprint)

    @property
    def embedding_dim(self) -> int:
        return int(self.embedding.shape[1])


# ----------------------------------------------------------------------------- dataset subsets

def first_identities(records: FaceRecords, n: int | None) -> FaceRecords:
    """`records` cut to `n` identities chosen by `spread_over_folds` (in order of appearance)."""
    if not n:
        return records
    idents = list(dict.fromkeys(records.identity))
    first_fold = {ident: records.fold[np.flatnonzero(records.identity == ident)[0]] for ident in idents}
    keep = spread_over_folds(idents, [first_fold[i] for i in idents], n)
    return records.subset(np.isin(records.identity, keep))


# ----------------------------------------------------------------------------- extraction + cache

def cache_path(cache_dir: str | Path, dataset: str, backend: str) -> Path:
    """``<cache_dir>/<backend>/<name>.npz`` for a dataset spec (see `dataset_name`)."""
    return Path(cache_dir) / backend / f"{dataset_name(dataset)}.npz"


def file_sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def _read_cache(path: Path, model_key: str) -> dict[str, dict]:
    """rel path -> stored row (dict of arrays) for rows analysed by the same models."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("model_key") != model_key or meta.get("version") != CACHE_VERSION:
            return {}
        cols = {k: z[k] for k in z.files if k != "meta"}
    return {str(p): {k: v[i] for k, v in cols.items()} for i, p in enumerate(cols["path"])}


def empty_row(dim: int) -> dict:
    """The cached columns of an image without a face (zeros, ``found`` False)."""
    return {"embedding": np.zeros(dim, np.float32), "embedding_mirror": np.zeros(dim, np.float32),
            "pose_features": np.zeros(len(FEATURES) + 1, np.float32), "found": False,
            "bbox": np.zeros(4, np.float32), "keypoints": np.zeros((5, 2), np.float32),
            "aligned_crop": np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)}


def analyse_row(analyzer, path: Path) -> dict:
    """The cached columns of one image (its largest face), `empty_row` when no face is found."""
    row = empty_row(analyzer.embedding_dim)
    try:
        rec = analyzer.analyze(path)
    except FaceAnalysisError:
        return row
    row.update(embedding=rec.embedding, embedding_mirror=rec.embedding_mirror, pose_features=rec.pose_features,
               found=True, bbox=np.asarray(rec.bbox[:4], np.float32),
               keypoints=np.asarray(rec.keypoints, np.float32).reshape(5, 2), aligned_crop=_crop_of(rec.aligned_crop))
    return row


_WORKER_ANALYZER = None


def _start_worker(make_analyzer: Callable) -> None:
    """Pool initializer: one analyzer per process, its ONNX sessions on one thread (the processes share the cores)."""
    global _WORKER_ANALYZER
    os.environ["VIEWDIFF_ORT_THREADS"] = "1"
    _WORKER_ANALYZER = make_analyzer()


def _worker_row(path: Path) -> dict:
    return analyse_row(_WORKER_ANALYZER, path)


def extract_records(dataset: str, data_root: str | Path, analyzer, cache_dir: str | Path = "data/cache",
                    max_identities: int | None = None, progress: bool = True, *,
                    select: Callable[[ImageItem], bool] | None = None, jobs: int = 1,
                    make_analyzer: Callable | None = None) -> tuple[FaceRecords, dict]:
    """Analyse the images of `dataset` (a spec, see `resolve_dataset`; cached) -> (records, stats).

    select: keep only the listed images for which it returns True (e.g. a few poses in tests).
    jobs: analyse in this many processes, each building its analyzer with `make_analyzer` (a picklable
    callable that returns an analyzer describing itself as `analyzer` does); 1: `analyzer` in this process.
    stats: images, analysed (not from the cache), no_face (count), no_face_paths (list), cache (path).
    The cache keeps rows of images analysed earlier that are outside this selection.
    """
    from tqdm import tqdm

    source = resolve_dataset(dataset, data_root)
    if not source.photos.is_dir():
        raise FileNotFoundError(f"{source.photos} not found: pass --data_root, the folder holding "
                                f"{'/'.join(DATASETS)} (../shared/data on the team machines), or folder:PATH")
    items = source.list(max_identities)
    if select is not None:
        items = [item for item in items if select(item)]
    if not items:
        raise ValueError(f"no {dataset} images selected under {source.photos} (check --max_identities "
                         "and the dataset layout in ../shared/README.md)")
    if jobs > 1 and make_analyzer is None:
        raise ValueError("extract_records(jobs > 1) needs make_analyzer, a picklable callable that builds the analyzer")
    model_key = json.dumps(analyzer.describe(), sort_keys=True, default=str)
    path = cache_path(cache_dir, dataset, analyzer.backend)
    cached = _read_cache(path, model_key)
    meta = {"model_key": model_key, "version": CACHE_VERSION, "fingerprint": analyzer.fingerprint}
    rows: dict[str, dict] = {}
    todo = []
    for item in items:
        rel = item.path.relative_to(source.root).as_posix()
        sha1 = file_sha1(item.path)
        row = cached.get(rel)
        if row is None or str(row["sha1"]) != sha1:
            todo.append((item, rel, sha1))
        else:
            rows[rel] = {**row, **_labels(item, rel, sha1)}
    bar = tqdm(total=len(items), initial=len(rows), desc=f"{source.name} ({analyzer.backend})", disable=not progress,
               unit="img", smoothing=0.05)
    found = sum(bool(r["found"]) for r in rows.values())
    pool = None
    if jobs > 1 and len(todo) > 1:
        import multiprocessing
        pool = multiprocessing.get_context("spawn").Pool(jobs, _start_worker, (make_analyzer,))
        results = pool.imap(_worker_row, [item.path for item, _, _ in todo], chunksize=4)
    else:
        results = (analyse_row(analyzer, item.path) for item, _, _ in todo)
    try:
        for n, ((item, rel, sha1), row) in enumerate(zip(todo, results), 1):
            rows[rel] = {**row, **_labels(item, rel, sha1)}
            found += bool(row["found"])
            bar.update()
            bar.set_postfix(faces=f"{found}/{len(rows)}", refresh=False)
            if n % SAVE_EVERY == 0:   # keep the work of an interrupted run
                _write_cache(path, meta, {**cached, **rows})
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    if todo or not path.is_file():
        _write_cache(path, meta, {**cached, **rows})
    ordered = {rel: rows[rel] for rel in sorted(rows)}
    no_face = [rel for rel, row in ordered.items() if not row["found"]]
    records = _to_records(_stack(ordered), analyzer.fingerprint)
    return records, {"images": len(items), "analysed": len(todo), "no_face": len(no_face),
                     "no_face_paths": no_face, "cache": str(path), "name": source.name}


def _crop_of(crop: np.ndarray | None) -> np.ndarray:
    """The record's aligned crop as [CROP_SIZE, CROP_SIZE, 3] uint8 RGB (zeros when a backend gives another size)."""
    crop = np.asarray(crop) if crop is not None else None
    if crop is None or crop.shape != (CROP_SIZE, CROP_SIZE, 3):
        return np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)
    return crop.astype(np.uint8)


def _labels(item: ImageItem, rel: str, sha1: str) -> dict:
    return dict(path=rel, sha1=sha1, identity=item.identity, view=item.view, fold=item.fold,
                true_pose=np.asarray(item.true_pose, np.float32))


def _stack(rows: dict[str, dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([np.asarray(r[k]) for r in rows.values()]) for k in next(iter(rows.values()))}


def _write_cache(path: Path, meta: dict, rows: dict[str, dict]) -> None:
    """All rows to `path`, atomically (a temporary file renamed over it); uncompressed: crops compress poorly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=json.dumps(meta), **_stack(rows))
    tmp.replace(path)


def _to_records(cols: dict[str, np.ndarray], fingerprint: str) -> FaceRecords:
    """Cache columns -> FaceRecords; the head pose comes from the raw estimates and today's calibration.

    The cache keeps the raw estimates (`pose_features`), not the fused pose, so a refitted calibration
    (`python -m viewdiff.training.fit_head_pose`) applies without analysing the images again; the estimates that
    are geometry of the detector's keypoints are recomputed from the cached keypoints (`refresh_features`).
    """
    found = cols["found"].astype(bool)
    cols = {**cols, "pose_features": refresh_features(cols["pose_features"], cols["keypoints"], cols["bbox"])}
    pose = np.where(found[:, None], default_calibration().apply(cols["pose_features"]), 0).astype(np.float32)
    keypoints_3d = np.stack([keypoints_3d_from_pose(p) if f else np.zeros((5, 3), np.float32)
                             for p, f in zip(pose, found)]) if len(pose) else np.zeros((0, 5, 3), np.float32)
    cols = {**cols, "source_pose": pose, "keypoints_3d": keypoints_3d}
    types = {"identity": str, "view": str, "path": str, "fold": int, "found": bool}
    return FaceRecords(**{f.name: cols[f.name].astype(types.get(f.name, np.float32))
                          for f in fields(FaceRecords) if f.name in cols}, fingerprint=fingerprint)


def load_records(cache_dir: str | Path, dataset: str, backend: str, maps: bool = False,
                 surface: bool = False) -> FaceRecords:
    """Every row of the `dataset` cache of `backend` (sorted by path); with `maps`, also the feature maps
    (`extract_maps`); with `surface`, the measured face surfaces (`viewdiff.training.surface`: cell_depth,
    presence, and keypoints_3d measured on the mesh)."""
    meta, cols = _read_columns(cache_dir, dataset, backend, skip=("aligned_crop",))
    order = np.argsort(cols["path"], kind="stable")
    records = _to_records({k: v[order] for k, v in cols.items()}, meta.get("fingerprint", ""))
    photo = records.view == "photo"   # a folder dataset's rows: their fold from the identity (caches before it: 0)
    records.fold[photo] = [folder_fold(i) for i in records.identity[photo]]
    if maps:
        records.feature_map, records.feature_map_mirror = _load_maps(cache_dir, dataset, backend, records)
    if surface:
        from viewdiff.training.surface import load_surface
        cols = load_surface(cache_dir, dataset, backend, records)
        records.keypoints_3d = cols["keypoints_3d"].astype(np.float32)
        records.cell_depth, records.presence = cols["cell_depth"].astype(np.float32), cols["presence"]
    return records


def maps_path(cache_dir: str | Path, dataset: str, backend: str) -> Path:
    return Path(cache_dir) / backend / f"{dataset}_maps.npz"


def extract_maps(cache_dir: str | Path, dataset: str, backend: str, maps_model) -> Path:
    """The embedder's 7x7 maps of every cached crop and of its mirror (flipped back to the photo's cells), from
    the cached crops alone (no detection) -> `maps_path`, in `load_records`' row order. maps_model: a
    `viewdiff.faces.feature_map.FeatureMapModel`. Rows without a face hold zeros. Skipped when the file is
    there for the same rows and embedder."""
    meta, _ = _read_columns(cache_dir, dataset, backend, only=())
    out = maps_path(cache_dir, dataset, backend)
    paths, crops = load_crops(cache_dir, dataset, backend)
    key = {"fingerprint": meta.get("fingerprint", ""), "rows": int(len(paths)), "version": CACHE_VERSION}
    if out.is_file():
        with np.load(out, allow_pickle=False) as z:
            if json.loads(str(z["meta"])) == key and np.array_equal(z["path"].astype(str), paths):
                return out
    found = np.flatnonzero(crops.reshape(len(crops), -1).any(axis=1))
    photo = mirror = None
    for start in range(0, len(found), MAPS_BATCH):   # in batches: the activations of all faces at once take GBs
        rows = found[start:start + MAPS_BATCH]
        *_, batch_photo, batch_mirror = maps_model.run_with_mirror(crops[rows])
        if photo is None:
            photo = np.zeros((len(crops), *batch_photo.shape[1:]), np.float32)
            mirror = np.zeros_like(photo)
        photo[rows], mirror[rows] = batch_photo, batch_mirror
    if photo is None:
        raise ValueError(f"no face in the {dataset} cache: nothing to compute feature maps of")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, meta=json.dumps(key), path=paths, feature_map=photo, feature_map_mirror=mirror)
    tmp.replace(out)
    return out


def _load_maps(cache_dir, dataset: str, backend: str, records: FaceRecords) -> tuple[np.ndarray, np.ndarray]:
    out = maps_path(cache_dir, dataset, backend)
    rerun = f"`python -m viewdiff.training.extract --datasets {dataset} --backend {backend} --cache_dir {cache_dir}`"
    if not out.is_file():
        raise FileNotFoundError(f"no feature maps at {out}: run {rerun} (with the shipped w600k_mbf pack, which "
                                "exposes them)")
    with np.load(out, allow_pickle=False) as z:
        if not np.array_equal(z["path"].astype(str), records.path):
            raise FileNotFoundError(f"the feature maps at {out} are for other rows than the records: rerun {rerun}")
        return z["feature_map"], z["feature_map_mirror"]


def load_crops(cache_dir: str | Path, dataset: str, backend: str) -> tuple[np.ndarray, np.ndarray]:
    """(path [N] str, aligned_crop [N, 112, 112, 3] uint8 RGB) of the `dataset` cache, sorted by path as
    `load_records` (rows without a face hold zeros)."""
    _, cols = _read_columns(cache_dir, dataset, backend, only=("path", "aligned_crop"))
    order = np.argsort(cols["path"], kind="stable")
    return cols["path"][order].astype(str), cols["aligned_crop"][order]


def _read_columns(cache_dir, dataset: str, backend: str, skip=(), only=None) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, columns) of a current-version cache file; a missing or older one raises with the command to run."""
    path = cache_path(cache_dir, dataset, backend)
    rerun = (f"`python -m viewdiff.training.extract --datasets {dataset} --backend {backend} "
             f"--cache_dir {cache_dir}`")
    if not path.is_file():
        raise FileNotFoundError(f"no face-record cache at {path}: run {rerun} first")
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("version") != CACHE_VERSION:
            raise FileNotFoundError(f"the face-record cache {path} is from an older version of the pipeline: "
                                    f"rerun {rerun}")
        cols = {k: z[k] for k in z.files if k != "meta" and k not in skip and (only is None or k in only)}
    return meta, cols
