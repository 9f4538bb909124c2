"""Face records: CFP and Pointing'04 images -> cached `FaceRecords` (training pairs: `viewdiff.training.datasets`).

Builders list the images of a dataset with their labels (identity, view, CFP-FP fold, true pose);
`extract_records` runs a `FaceAnalyzer` once per image and caches the results in
`<cache_dir>/<backend>/<dataset>.npz`, keyed per image by the sha1 of the file and the analyzer's
model description, so a rerun (or a bigger run after a small one) only analyses what is new. The
cache is written every `SAVE_EVERY` analysed images, so an interrupted extraction keeps its work and
the next run resumes where it stopped. It also keeps each face's aligned 112x112 crop (`load_crops`),
so whatever is computed from a crop later needs no new detection.

Datasets (see ../shared/README.md):
- ``cfp``: CFP (Sengupta et al., WACV 2016), 500 identities x 10 frontal + 4 profile photos. The
  fold of an identity comes from the official ``Protocol/Split/FP/<fold>/same.txt``.
- ``pointing04``: Pointing'04 (Gourier et al., 2004), 15 people x 2 series x 93 poses; the file
  ``personNNSII<tilt><pan>.jpg`` gives the true pitch (tilt) and yaw (pan).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from viewdiff.faces.errors import FaceAnalysisError
from viewdiff.faces.geometry import keypoints_3d_from_pose
from viewdiff.faces.head_pose import FEATURES, default_calibration

DATASETS = ("cfp", "pointing04")
P04_NAME = re.compile(r"^person(\d\d)(\d)(\d\d)([+-]\d+)([+-]\d+)\.jpg$")
CACHE_VERSION = 3                # 2: mirror embeddings, raw head-pose estimates, embedder fingerprint; 3: crops
CROP_SIZE = 112
SAVE_EVERY = 250


@dataclass
class ImageItem:
    """One image of a dataset with its labels (before face analysis)."""
    path: Path
    identity: str
    view: str                    # "frontal" | "profile" (CFP) | "pose" (Pointing'04)
    fold: int                    # CFP-FP fold 1..10, 0 when none
    true_pose: tuple[float, float, float]   # yaw, pitch, roll in degrees; nan when unknown


@dataclass
class FaceRecords:
    """Analysed images as parallel arrays (N rows; rows where `found` is False hold zeros).

    embedding [N, D] float32 (unit length), embedding_mirror [N, D] (the mirrored face), source_pose
    [N, 3] estimated yaw/pitch/roll (degrees), pose_features [N, 7] (the raw estimates behind it, see
    `viewdiff.faces.head_pose`), true_pose [N, 3] (nan when unknown), keypoints_3d [N, 5, 3], identity
    [N] str, view [N] str, fold [N] int, path [N] str (relative to the data root), found [N] bool.
    fingerprint: the embedder's (see `viewdiff.faces.backends`), one for all rows.
    feature_map, feature_map_mirror [N, C, 7, 7]: the embedder's last map of the photo and of the mirrored
    photo flipped back to the photo's cells (`load_records(..., maps=True)`; None otherwise).
    """
    embedding: np.ndarray
    embedding_mirror: np.ndarray
    source_pose: np.ndarray
    pose_features: np.ndarray
    true_pose: np.ndarray
    keypoints_3d: np.ndarray
    identity: np.ndarray
    view: np.ndarray
    fold: np.ndarray
    path: np.ndarray
    found: np.ndarray
    fingerprint: str = ""
    feature_map: np.ndarray | None = None
    feature_map_mirror: np.ndarray | None = None

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
        if len(dims) > 1 or len(prints) > 1:
            raise ValueError(f"record sets come from different embedders (widths {sorted(dims)}, fingerprints "
                             f"{sorted(prints)}): extract every dataset with the same backend")
        return cls(**{k: np.concatenate([p.columns()[k] for p in parts]) for k in parts[0].columns()},
                   fingerprint=parts[0].fingerprint)

    @property
    def embedding_dim(self) -> int:
        return int(self.embedding.shape[1])


# ----------------------------------------------------------------------------- dataset listings

def cfp_identity_folds(cfp_root: Path) -> dict[str, int]:
    """identity ("001".."500") -> CFP-FP fold (1..10), from the official same-identity pairs."""
    frontal = pair_list(cfp_root / "Protocol" / "Pair_list_F.txt")
    folds: dict[str, int] = {}
    for fold_dir in sorted((cfp_root / "Protocol" / "Split" / "FP").iterdir()):
        for line in (fold_dir / "same.txt").read_text().split():
            ident = Path(frontal[int(line.split(",")[0])]).parts[-3]
            folds.setdefault(ident, int(fold_dir.name))
    return folds


def pair_list(path: Path) -> dict[int, str]:
    """Pair_list_{F,P}.txt -> line number -> path relative to the CFP root ("Data/Images/...")."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            num, rel = line.split()
            out[int(num)] = str(Path(rel.replace("../", "", 1)))
    return out


def spread_over_folds(identities, folds, n: int | None) -> list:
    """The first `n` of `identities` taken round-robin over their folds (1st of each fold, 2nd, ...).

    Small subsets then still cover every CFP-FP fold, so held-out-fold training has data.
    identities, folds: parallel sequences (one entry per identity, in order); n None: all.
    """
    by_fold: dict[int, list] = {}
    for ident, fold in zip(identities, folds):
        by_fold.setdefault(int(fold), []).append(ident)
    order = sorted(((i, fold, ident) for fold, ids in by_fold.items() for i, ident in enumerate(ids)),
                   key=lambda t: (t[0], t[1]))
    return [ident for _, _, ident in order][:n]


def first_identities(records: FaceRecords, n: int | None) -> FaceRecords:
    """`records` cut to `n` identities chosen by `spread_over_folds` (in order of appearance)."""
    if not n:
        return records
    idents = list(dict.fromkeys(records.identity))
    first_fold = {ident: records.fold[np.flatnonzero(records.identity == ident)[0]] for ident in idents}
    keep = spread_over_folds(idents, [first_fold[i] for i in idents], n)
    return records.subset(np.isin(records.identity, keep))


def list_cfp(data_root: Path, max_identities: int | None = None) -> list[ImageItem]:
    """CFP images (sorted by identity, view, file); `max_identities` spread over the folds."""
    root = Path(data_root) / "cfp"
    folds = cfp_identity_folds(root)
    idents = sorted(p.name for p in (root / "Data" / "Images").iterdir() if p.is_dir())
    idents = sorted(spread_over_folds(idents, [folds.get(i, 0) for i in idents], max_identities))
    nan3 = (float("nan"),) * 3
    return [ImageItem(img, f"cfp_{ident}", view, folds.get(ident, 0), nan3)
            for ident in idents for view in ("frontal", "profile")
            for img in sorted((root / "Data" / "Images" / ident / view).glob("*.jpg"))]


def list_pointing04(data_root: Path, max_identities: int | None = None) -> list[ImageItem]:
    """Pointing'04 images with true (yaw=pan, pitch=tilt, roll=0) from the file names."""
    root = Path(data_root) / "pointing04"
    people = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("Person"))[:max_identities]
    items = []
    for person in people:
        for img in sorted(person.glob("*.jpg")):
            m = P04_NAME.match(img.name)
            if m:
                tilt, pan = float(m.group(4)), float(m.group(5))
                items.append(ImageItem(img, f"p04_{m.group(1)}", "pose", 0, (pan, tilt, 0.0)))
    return items


LISTERS: dict[str, Callable[..., list[ImageItem]]] = {"cfp": list_cfp, "pointing04": list_pointing04}


# ----------------------------------------------------------------------------- extraction + cache

def cache_path(cache_dir: str | Path, dataset: str, backend: str) -> Path:
    return Path(cache_dir) / backend / f"{dataset}.npz"


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


def extract_records(dataset: str, data_root: str | Path, analyzer, cache_dir: str | Path = "data/cache",
                    max_identities: int | None = None, progress: bool = True, *,
                    select: Callable[[ImageItem], bool] | None = None) -> tuple[FaceRecords, dict]:
    """Analyse the images of `dataset` (cached) -> (records, stats).

    select: keep only the listed images for which it returns True (e.g. a few poses in tests).
    stats: images, analysed (not from the cache), no_face (count), no_face_paths (list), cache (path).
    The cache keeps rows of images analysed earlier that are outside this selection.
    """
    from tqdm import tqdm

    if dataset not in LISTERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {DATASETS}")
    data_root = Path(data_root)
    if not (data_root / dataset).is_dir():
        raise FileNotFoundError(f"{data_root / dataset} not found: pass --data_root, the folder holding "
                                f"{'/'.join(DATASETS)} (../shared/data on the team machines)")
    items = LISTERS[dataset](data_root, max_identities)
    if select is not None:
        items = [item for item in items if select(item)]
    if not items:
        raise ValueError(f"no {dataset} images selected under {data_root / dataset} (check --max_identities "
                         "and the dataset layout in ../shared/README.md)")
    model_key = json.dumps(analyzer.describe(), sort_keys=True, default=str)
    path = cache_path(cache_dir, dataset, analyzer.backend)
    cached = _read_cache(path, model_key)
    meta = {"model_key": model_key, "version": CACHE_VERSION, "fingerprint": analyzer.fingerprint}
    rows, analysed, no_face = {}, 0, []
    dim = analyzer.embedding_dim
    for item in tqdm(items, desc=f"{dataset} ({analyzer.backend})", disable=not progress, unit="img"):
        rel = str(item.path.relative_to(data_root))
        sha1 = file_sha1(item.path)
        row = cached.get(rel)
        if row is None or str(row["sha1"]) != sha1:
            analysed += 1
            row = {"embedding": np.zeros(dim, np.float32), "embedding_mirror": np.zeros(dim, np.float32),
                   "pose_features": np.zeros(len(FEATURES) + 1, np.float32), "found": False,
                   "aligned_crop": np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)}
            try:
                rec = analyzer.analyze(item.path)
                row.update(embedding=rec.embedding, embedding_mirror=rec.embedding_mirror,
                           pose_features=rec.pose_features, found=True,
                           aligned_crop=_crop_of(rec.aligned_crop))
            except FaceAnalysisError:
                pass
            if analysed % SAVE_EVERY == 0:   # keep the work of an interrupted run
                _write_cache(path, meta, {**cached, **rows, rel: {**row, **_labels(item, rel, sha1)}})
        row.update(_labels(item, rel, sha1))
        rows[rel] = row
        if not row["found"]:
            no_face.append(rel)
    _write_cache(path, meta, {**cached, **rows})
    records = _to_records(_stack(rows), analyzer.fingerprint)
    return records, {"images": len(items), "analysed": analysed, "no_face": len(no_face),
                     "no_face_paths": no_face, "cache": str(path)}


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
    (`python -m viewdiff.training.fit_head_pose`) applies without analysing the images again.
    """
    found = cols["found"].astype(bool)
    pose = np.where(found[:, None], default_calibration().apply(cols["pose_features"]), 0).astype(np.float32)
    keypoints_3d = np.stack([keypoints_3d_from_pose(p) if f else np.zeros((5, 3), np.float32)
                             for p, f in zip(pose, found)]) if len(pose) else np.zeros((0, 5, 3), np.float32)
    cols = {**cols, "source_pose": pose, "keypoints_3d": keypoints_3d}
    types = {"identity": str, "view": str, "path": str, "fold": int, "found": bool}
    return FaceRecords(**{f.name: cols[f.name].astype(types.get(f.name, np.float32))
                          for f in fields(FaceRecords) if f.name in cols}, fingerprint=fingerprint)


def load_records(cache_dir: str | Path, dataset: str, backend: str, maps: bool = False) -> FaceRecords:
    """Every row of the `dataset` cache of `backend` (sorted by path); with `maps`, also the feature maps
    (`extract_maps`)."""
    meta, cols = _read_columns(cache_dir, dataset, backend, skip=("aligned_crop",))
    order = np.argsort(cols["path"], kind="stable")
    records = _to_records({k: v[order] for k, v in cols.items()}, meta.get("fingerprint", ""))
    if maps:
        records.feature_map, records.feature_map_mirror = _load_maps(cache_dir, dataset, backend, records)
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
    found = crops.reshape(len(crops), -1).any(axis=1)
    *_, found_photo, found_mirror = maps_model.run_with_mirror(crops[found])
    photo = np.zeros((len(crops), *found_photo.shape[1:]), np.float32)
    mirror = np.zeros_like(photo)
    photo[found], mirror[found] = found_photo, found_mirror
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
