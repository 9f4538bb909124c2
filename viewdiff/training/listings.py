"""Face datasets: where their photos are and their labels (identity, view, CFP-FP fold, true pose), before any
face analysis (`viewdiff.training.records` analyses and caches them).

Datasets (see ../shared/README.md), named by a spec (`resolve_dataset`):
- ``cfp``: CFP (Sengupta et al., WACV 2016), 500 identities x 10 frontal + 4 profile photos. The
  fold of an identity comes from the official ``Protocol/Split/FP/<fold>/same.txt``.
- ``pointing04``: Pointing'04 (Gourier et al., 2004), 15 people x 2 series x 93 poses; the file
  ``personNNSII<tilt><pan>.jpg`` gives the true pitch (tilt) and yaw (pan).
- any **folder dataset**, ``<root>/<identity>/<photo>`` (the layout of almost every face dataset): by name
  when it lies in the data root (``cplfw_train``: its photos are in ``<data_root>/cplfw_train/images``), or
  ``folder:PATH``. Its rows have view ``"photo"`` (no view labels: `viewdiff.training.datasets` treats an
  estimated near-frontal photo as frontal), a fold 1..10 of its own (`folder_fold`: a stable hash of the identity,
  so the held-out evaluation leaves a tenth of its people out of each fold model and tests on them) and no
  true pose. Identities are ``<name>:<folder name>``, so two datasets never share one by accident.
"""
from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from viewdiff.training.records import FaceRecords

DATASETS = ("cfp", "pointing04", "cplfw_train")   # by name; any other folder dataset: folder:PATH
FOLDER_DATASETS = {"cplfw_train": "cplfw_train/images"}   # named folder datasets: where their photos are
FOLDER_PREFIX = "folder:"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
P04_NAME = re.compile(r"^person(\d\d)(\d)(\d\d)([+-]\d+)([+-]\d+)\.jpg$")


@dataclass
class ImageItem:
    """One image of a dataset with its labels (before face analysis)."""
    path: Path
    identity: str
    view: str                    # "frontal" | "profile" (CFP) | "pose" (Pointing'04)
    fold: int                    # CFP-FP fold 1..10, 0 when none
    true_pose: tuple[float, float, float]   # yaw, pitch, roll in degrees; nan when unknown


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


FOLDS = 10   # CFP-FP's folds; a folder dataset's people are spread over as many


def folder_fold(identity: str) -> int:
    """The fold 1..FOLDS of a folder dataset's identity: crc32 of its name, so it never depends on which other
    people are listed (a subset, a grown folder) and every run agrees. Fold model k (``exclude_fold=k``) never
    trains on fold k's people, of CFP and of the folder dataset alike: both are its test identities."""
    return 1 + zlib.crc32(identity.encode()) % FOLDS


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


def list_folder(root: Path, max_identities: int | None = None, name: str = "folder") -> list[ImageItem]:
    """A folder dataset ``<root>/<identity>/<photo>``: every image (`IMAGE_SUFFIXES`) of every identity folder,
    sorted; `max_identities`: the first N identity folders. Identity ``<name>:<folder name>``, view ``"photo"``,
    fold `folder_fold(identity)`, true pose unknown (nan)."""
    root = Path(root)
    nan3 = (float("nan"),) * 3
    items = []
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    for folder in folders:
        photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if photos:
            identity = f"{name}:{folder.name}"
            items += [ImageItem(p, identity, "photo", folder_fold(identity), nan3) for p in photos]
            if max_identities and len({i.identity for i in items}) >= max_identities:
                break
    if not items:
        raise ValueError(f"no photos in {root}: a folder dataset holds one folder per person, "
                         f"<root>/<identity>/<photo> ({', '.join(IMAGE_SUFFIXES)})")
    return items


@dataclass(frozen=True)
class DatasetSource:
    """A dataset named by a spec (`resolve_dataset`).

    name: the cache's file name (``<cache_dir>/<backend>/<name>.npz``) and the folder dataset's identity prefix.
    root: the rows' paths are relative to it (the data root for CFP and Pointing'04, whose paths start with
    ``cfp/`` or ``pointing04/``; the dataset's own folder for a folder dataset).
    photos: the folder the photos are in (what must exist).
    """
    name: str
    root: Path
    photos: Path

    def list(self, max_identities: int | None = None) -> list[ImageItem]:
        if self.name == "cfp":
            return list_cfp(self.root, max_identities)
        if self.name == "pointing04":
            return list_pointing04(self.root, max_identities)
        return list_folder(self.photos, max_identities, self.name)


def dataset_name(spec: str) -> str:
    """The cache name of a dataset spec: the name itself, or for ``folder:PATH`` ``folder-<folder name>-<hash of
    the absolute path>`` (two folders of one name never share a cache)."""
    spec = spec.strip()
    if not spec.startswith(FOLDER_PREFIX):
        return spec
    path = Path(spec[len(FOLDER_PREFIX):]).expanduser().resolve()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name) or "root"
    return f"folder-{slug}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def resolve_dataset(spec: str, data_root: str | Path) -> DatasetSource:
    """``cfp``, ``pointing04``, a named folder dataset (`FOLDER_DATASETS`) in `data_root`, or ``folder:PATH``."""
    spec, data_root = spec.strip(), Path(data_root)
    if spec in ("cfp", "pointing04"):
        return DatasetSource(spec, data_root, data_root / spec)
    if spec in FOLDER_DATASETS:
        photos = data_root / FOLDER_DATASETS[spec]
        return DatasetSource(spec, photos, photos)
    if spec.startswith(FOLDER_PREFIX) and spec[len(FOLDER_PREFIX):]:
        photos = Path(spec[len(FOLDER_PREFIX):]).expanduser().resolve()
        return DatasetSource(dataset_name(spec), photos, photos)
    raise ValueError(f"unknown dataset {spec!r}: use one of {', '.join(DATASETS)} or folder:PATH for a folder "
                     "with one sub-folder of photos per person")


def cfp_names(data_root: str | Path) -> dict[str, str]:
    """CFP identity label (``cfp_001``) -> the person's name, from ``cfp/Data/list_name.txt``."""
    lines = (Path(data_root) / "cfp" / "Data" / "list_name.txt").read_text().splitlines()
    return {f"cfp_{i + 1:03d}": line.strip() for i, line in enumerate(lines) if line.strip()}


def person_key(name: str) -> str:
    """A person's name compared across datasets: case, underscores and spacing ignored."""
    return " ".join(name.replace("_", " ").split()).casefold()


def refuse_shared_identities(extra: FaceRecords, data_root: str | Path) -> None:
    """Raise ValueError when an identity of `extra` (a folder dataset joining every CFP-FP training fold) is one
    of CFP's 500 people (by name, `person_key`): it would train on a test identity and the evaluation would
    flatter."""
    names = cfp_names(data_root)
    cfp_people = {person_key(name): ident for ident, name in names.items()}
    shared = sorted({(i, cfp_people[person_key(i.split(":", 1)[-1])]) for i in set(extra.identity)
                     if person_key(i.split(":", 1)[-1]) in cfp_people})
    if shared:
        shown = ", ".join(f"{a} = {b} ({names[b]})" for a, b in shared[:5])
        raise ValueError(f"{len(shared)} identities of the extra training data are CFP people ({shown}"
                         f"{', ...' if len(shared) > 5 else ''}): they would train on a test identity; remove "
                         "their folders from that dataset")
