"""Galleries of named identities for one face embedder: in memory (a visitor's own) or saved
(``<dir>/<key>.npz`` + ``.json``: the cached default gallery, or a local ``--persistent-gallery``).

An identity's template is the L2-normalised sum of its photos' L2-normalised embeddings; the demo adds each
photo *flip-fused* (`photo_embedding`: the photo's embedding plus its mirror image's, normalised), the
protocol measured best with the pose transformer (docs/results.md 4.0); adding a photo under an existing
name refines that template. Embeddings are per
embedder (128-d dlib, 128-d ArcFace MobileFaceNet, 512-d ArcFace), so each key has its own files.
Names are matched the way a person reads them: case-insensitively and ignoring surrounding or repeated
whitespace ("alan  secret" is "Alan Secret"; the first spelling stays). Removals can be undone one after
another, newest first (`Gallery.undo_remove`, up to `UNDO_DEPTH`).

Each photo added with its face maps (``add(..., maps=(feature_map, feature_map_mirror))``: the embedder's
7x7 map and its mirror image's, `viewdiff.faces.feature_map`) keeps them, so that a score can be split
over the gallery face's regions (`viewdiff.demo.explain`); an identity's maps are found through its
entry's ``maps`` key (they follow the entry through removals and undos) and saved beside the gallery as
``<key>.maps.npz``, read on first use. Galleries saved before maps were kept still load (`face_maps` is
then None: the entry needs re-enrolling).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from viewdiff.embeddings import l2_normalize


class GalleryError(ValueError):
    """A gallery operation the user asked for cannot be done; the message says why."""


UNDO_DEPTH = 20   # removals `Gallery.undo_remove` can bring back, newest first


def clean_name(name) -> str:
    """A typed name as it is stored: surrounding whitespace dropped, inner runs of whitespace one space."""
    return " ".join(str(name or "").split())


def name_key(name) -> str:
    """What two names must share to be one person: `clean_name`, case-folded ("Alan Secret" = "alan  secret")."""
    return clean_name(name).casefold()


def _normalise(x: np.ndarray) -> np.ndarray:
    return l2_normalize(np.asarray(x, dtype=np.float32))


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    write(tmp)
    os.replace(tmp, path)


class Gallery:
    """Identity templates of dimension ``dim``; saved under ``directory`` as ``<key>.npz/.json`` (None: in memory)."""

    def __init__(self, directory: str | os.PathLike | None, key: str, dim: int, meta: dict | None = None):
        self.directory = Path(directory) if directory is not None else None
        self.key = key
        self.dim = int(dim)
        self.meta = dict(meta or {})
        self._sums = np.zeros((0, self.dim), np.float32)
        self._entries: list[dict] = []
        self._removed: list[tuple[int, dict, np.ndarray]] = []  # (index, entry, sum) per removal, newest last
        self._lock = threading.RLock()
        self._maps: dict[str, dict[str, np.ndarray]] = {}   # entry["maps"] -> per-photo maps (`face_maps`)
        self._maps_file: Path | None = None   # maps saved on disk, not read yet (`_load_maps`)

    @property
    def npz_path(self) -> Path:
        return self.directory / f"{self.key}.npz"

    @property
    def json_path(self) -> Path:
        return self.directory / f"{self.key}.json"

    @classmethod
    def load(cls, directory: str | os.PathLike, key: str, dim: int) -> "Gallery | None":
        """The stored gallery, or None when there is none (or it was written for another dim)."""
        gallery = cls(directory, key, dim)
        if not (gallery.npz_path.is_file() and gallery.json_path.is_file()):
            return None
        info = json.loads(gallery.json_path.read_text())
        with np.load(gallery.npz_path) as data:
            sums = data["embedding_sum"].astype(np.float32)
        if info.get("dim") != gallery.dim or sums.shape != (len(info["entries"]), gallery.dim):
            return None
        gallery._sums, gallery._entries, gallery.meta = sums, list(info["entries"]), info.get("meta", {})
        gallery._maps_file = gallery.maps_path if gallery.maps_path.is_file() else None
        return gallery

    def save(self) -> None:
        if self.directory is None:
            raise GalleryError("This gallery lives in memory only (no folder to save it to).")
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            sums = self._sums.copy()
            info = {"key": self.key, "dim": self.dim, "meta": self.meta, "entries": self._entries}

            def write_npz(tmp: Path) -> None:
                with open(tmp, "wb") as f:
                    np.savez(f, embedding_sum=sums)

            _atomic_write(self.npz_path, write_npz)
            self._save_maps()
            _atomic_write(self.json_path, lambda tmp: tmp.write_text(json.dumps(info, indent=1)))

    def __getstate__(self) -> dict:  # copy / pickle without the lock
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def copy_to(self, directory: str | os.PathLike | None) -> "Gallery":
        """An independent copy of this gallery that will be saved under ``directory`` (None: in memory only)."""
        with self._lock:
            other = Gallery(directory, self.key, self.dim, self.meta)
            other._sums, other._entries = self._sums.copy(), [dict(e) for e in self._entries]
            other._maps = dict(self._load_maps())   # arrays are replaced on change, never edited in place
        return other

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        return [e["name"] for e in self._entries]

    def find(self, name) -> int | None:
        """Index of the identity called ``name`` (`name_key`: any case and spacing), None when there is none."""
        key = name_key(name)
        return next((i for i, e in enumerate(self._entries) if name_key(e["name"]) == key), None)

    def stored_name(self, name) -> str | None:
        """The gallery's spelling of ``name`` (None: not in the gallery)."""
        i = self.find(name)
        return None if i is None else self._entries[i]["name"]

    @property
    def entries(self) -> list[dict]:
        """One dict per identity: ``name``, ``source``, ``count`` (photos), ``added`` (ISO time)."""
        with self._lock:
            return [dict(e) for e in self._entries]

    @property
    def templates(self) -> np.ndarray:
        """``[N, dim]`` L2-normalised identity templates."""
        with self._lock:
            return _normalise(self._sums)

    def add(self, name: str, embedding: np.ndarray, source: str = "user", maps: tuple | None = None,
            fused: bool = False, crop: np.ndarray | None = None) -> dict:
        """Add one photo's embedding under ``name`` (new identity or refine an existing one).

        maps: (feature_map, feature_map_mirror) [C, 7, 7] each, the photo's maps the embedding was made
        from (kept for `face_maps`); fused: the embedding is the photo's and its mirror image's, fused;
        crop: the aligned face [112, 112, 3] uint8 (kept for the identity's first photo, to draw on).
        """
        name = clean_name(name)
        if not name:
            raise GalleryError("Type a name for this face first.")
        if len(name) > 80:
            raise GalleryError("Names are limited to 80 characters: type a shorter one.")
        emb = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if emb.shape[0] != self.dim:
            raise GalleryError(
                f"This embedding has {emb.shape[0]} dimensions but the gallery '{self.key}' "
                f"holds {self.dim}-d embeddings (another face backend)."
            )
        emb = _normalise(emb)
        with self._lock:
            i = self.find(name)
            if i is not None:   # the same person, however the name was typed: refine, keep the first spelling
                self._sums[i] += emb
                self._entries[i]["count"] += 1
            else:
                self._sums = np.concatenate([self._sums, emb[None]], axis=0)
                added = time.strftime("%Y-%m-%dT%H:%M:%S")
                self._entries.append({"name": name, "source": source, "count": 1, "added": added})
                i = len(self._entries) - 1
                # a removed identity added again is no longer "removed": undo would bring back a second copy
                self._removed = [r for r in self._removed if name_key(r[1]["name"]) != name_key(name)]
            entry = self._entries[i]
            self._keep_maps(entry, maps, fused, crop)
            return dict(entry)

    @property
    def maps_path(self) -> Path:
        return self.directory / f"{self.key}.maps.npz"

    def _load_maps(self) -> dict[str, dict[str, np.ndarray]]:
        """The kept maps, read from disk on first use."""
        with self._lock:
            if self._maps_file is not None:
                stored: dict[str, dict[str, np.ndarray]] = {}
                try:
                    with np.load(self._maps_file) as data:
                        for item in data.files:
                            ident, field = item.split("/", 1)
                            stored.setdefault(ident, {})[field] = data[item]
                except (OSError, ValueError):   # unreadable: the gallery works, its side of the split is unknown
                    stored = {}
                self._maps, self._maps_file = {**stored, **self._maps}, None
            return self._maps

    def _keep_maps(self, entry: dict, maps: tuple | None, fused: bool, crop: np.ndarray | None) -> None:
        """Append one photo's maps to ``entry``'s (an entry added without maps gets none from now on)."""
        kept = self._load_maps()
        if entry["count"] == 1 and maps is not None:
            entry["maps"] = os.urandom(6).hex()
            kept[entry["maps"]] = {"maps": np.zeros((0, *np.shape(maps[0])), np.float32),
                                   "maps_mirror": np.zeros((0, *np.shape(maps[0])), np.float32),
                                   "fused": np.zeros(0, bool)}
            if crop is not None:
                kept[entry["maps"]]["crop"] = np.asarray(crop, np.uint8)
        old = kept.get(entry.get("maps", ""))
        if old is None or maps is None:
            return
        photo, mirror = (np.asarray(m, np.float32)[None] for m in maps)
        kept[entry["maps"]] = {**old, "maps": np.concatenate([old["maps"], photo]),
                               "maps_mirror": np.concatenate([old["maps_mirror"], mirror]),
                               "fused": np.append(old["fused"], bool(fused))}

    def face_maps(self, name: str) -> dict[str, np.ndarray] | None:
        """Identity ``name``'s kept maps: ``maps`` / ``maps_mirror`` [P, C, 7, 7], ``fused`` [P] (and ``crop``
        [112, 112, 3] of its first photo); None when any of its photos was added without them."""
        with self._lock:
            i = self.find(name)
            entry = None if i is None else self._entries[i]
            if entry is None:
                raise GalleryError(f"'{name}' is not in the gallery.")
            kept = self._load_maps().get(entry.get("maps", ""))
            if kept is None or len(kept["maps"]) != entry["count"]:
                return None
            return dict(kept)

    def maps_key(self, name: str) -> tuple[str, int] | None:
        """(maps id, photo count) of identity ``name``: it changes whenever its template does (a cache key)."""
        i = self.find(name)
        entry = None if i is None else self._entries[i]
        return (entry["maps"], entry["count"]) if entry is not None and "maps" in entry else None

    def _save_maps(self) -> None:
        kept = self._load_maps()
        live = {e["maps"] for e in self._entries if "maps" in e}   # a removed entry's stay in memory (undo)
        arrays = {f"{ident}/{k}": v for ident in sorted(live) if ident in kept for k, v in kept[ident].items()}
        if not arrays and not self.maps_path.is_file():   # (a gallery without maps: no maps file)
            return

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        _atomic_write(self.maps_path, write)

    def remove(self, name: str) -> None:
        """Remove identity ``name`` (any case and spacing); `undo_remove` brings removals back, newest first."""
        with self._lock:
            i = self.find(name)
            if i is None:
                raise GalleryError(f"'{clean_name(name)}' is not in the gallery.")
            self._removed = (self._removed + [(i, self._entries[i], self._sums[i].copy())])[-UNDO_DEPTH:]
            self._sums = np.delete(self._sums, i, axis=0)
            del self._entries[i]

    @property
    def last_removed(self) -> str | None:
        """Name of the identity `undo_remove` would restore (None: nothing to undo)."""
        return self._removed[-1][1]["name"] if self._removed else None

    def undo_remove(self) -> dict:
        """Put the last removed identity back where it was (undone removals go back in reverse order, so each
        lands at its old place); returns its entry."""
        with self._lock:
            if not self._removed:
                raise GalleryError("Nothing to undo.")
            i, entry, row = self._removed.pop()
            i = min(i, len(self._entries))
            self._sums = np.insert(self._sums, i, row, axis=0)
            self._entries.insert(i, entry)
            return dict(entry)

    def similarities(self, embedding: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``embedding`` ``[D]`` or ``[B, D]`` to every identity: ``[N]`` / ``[B, N]``."""
        emb = _normalise(embedding)
        return emb @ self.templates.T


# Default identities, never the demo's example photos (a probe must not meet its own photo): the
# redistributable photos in assets/identities/ (Tom Hanks's aligned crop and four faces cropped from the
# group photo t1.jpg, whose largest face and the turned face t1_face_yaw55.jpg are examples), plus,
# when ../shared is present, a few CFP identities' frontal photos and Pointing'04 people's frontal
# photos from series 2 (the local examples are series 1).
ASSET_IDENTITIES = {"Tom_Hanks_54745.png": "Tom Hanks", "t1_person3.jpg": "Group photo, person 3",
                    "t1_person4.jpg": "Group photo, person 4", "t1_person5.jpg": "Group photo, person 5",
                    "t1_person6.jpg": "Group photo, person 6"}
CFP_IDENTITIES = (465, 1, 2, 3, 4)  # 1-based lines of list_name.txt; 465 is Tom Hanks
CFP_FRONTALS_PER_IDENTITY = 3
POINTING04_PEOPLE = (1, 2, 3)


def default_identity_photos(gallery_assets: str | os.PathLike, shared_dir: str | os.PathLike) -> dict[str, list[Path]]:
    """``{identity name: [photo paths]}`` for the default gallery, from what exists on disk.

    gallery_assets: the folder of the redistributable gallery photos (``assets/identities``).
    """
    gallery_assets, shared_dir = Path(gallery_assets), Path(shared_dir)
    photos: dict[str, list[Path]] = {}
    for file_name, name in ASSET_IDENTITIES.items():
        if (gallery_assets / file_name).is_file():
            photos.setdefault(name, []).append(gallery_assets / file_name)
    cfp = shared_dir / "data" / "cfp" / "Data"
    if (cfp / "list_name.txt").is_file():
        names = (cfp / "list_name.txt").read_text().splitlines()
        for number in CFP_IDENTITIES:
            frontal = cfp / "Images" / f"{number:03d}" / "frontal"
            files = sorted(frontal.glob("*.jpg"))[:CFP_FRONTALS_PER_IDENTITY]
            if files and number <= len(names):
                photos.setdefault(names[number - 1].strip(), []).extend(files)
    pointing = shared_dir / "data" / "pointing04"
    for person in POINTING04_PEOPLE:
        file = pointing / f"Person{person:02d}" / f"person{person:02d}246+0+0.jpg"
        if file.is_file():
            photos[f"Pointing'04 person {person:02d}"] = [file]
    return photos


MAPS_KEPT = 1   # default galleries cached before their photos' maps were kept are rebuilt once
TEMPLATES = "flip_fused"   # how the demo's galleries enter a photo (`photo_embedding`); older caches are rebuilt


def photo_embedding(record) -> np.ndarray:
    """The embedding a gallery keeps for a photo's `FaceRecord`: its embedding plus its mirror image's,
    normalised (flip-fused; InsightFace's own evaluation fuses the same way)."""
    return l2_normalize(np.asarray(record.embedding, np.float32) + np.asarray(record.embedding_mirror, np.float32))


def record_maps(record) -> tuple[np.ndarray, np.ndarray] | None:
    """(feature_map, feature_map_mirror) of a `FaceRecord`, None when its embedder exposes no map."""
    maps = (getattr(record, "feature_map", None), getattr(record, "feature_map_mirror", None))
    return None if any(m is None for m in maps) else maps


def build_gallery(directory, key: str, dim: int, photos: dict[str, list[Path]], embed, fingerprint: str = "") -> Gallery:
    """A gallery of ``photos`` where ``embed(path)`` gives an embedding, or a `FaceRecord` (its maps and
    aligned crop are kept too), or raises to skip a photo."""
    gallery = Gallery(directory, key, dim, {"photos": _photo_list(photos), "fingerprint": fingerprint, "skipped": {},
                                            "maps_kept": MAPS_KEPT, "templates": TEMPLATES})
    for name, files in photos.items():
        for file in files:
            try:
                got = embed(file)
                if hasattr(got, "embedding"):
                    gallery.add(name, photo_embedding(got), source="default", maps=record_maps(got), fused=True,
                                crop=getattr(got, "aligned_crop", None))
                else:
                    gallery.add(name, got, source="default")
            except Exception as exc:  # one unreadable default photo must not stop the demo
                gallery.meta["skipped"][str(file)] = str(exc)
    return gallery


def _photo_list(photos: dict[str, list[Path]]) -> list[str]:
    return sorted(f"{name}={f}" for name, files in photos.items() for f in files)


def default_gallery(defaults_dir, key: str, dim: int, photos: dict[str, list[Path]], embed,
                    fingerprint: str = "") -> Gallery:
    """The default gallery of ``photos``, cached under ``defaults_dir``.

    Rebuilt only when the list of default photos or ``fingerprint`` (what computed the embeddings,
    e.g. the face models) changes, so embeddings are computed once per embedder. A cache folder that
    cannot be written (a read-only install) only costs the rebuild at the next start.
    """
    defaults = Gallery.load(defaults_dir, key, dim)
    if (defaults is None or defaults.meta.get("photos") != _photo_list(photos)
            or defaults.meta.get("fingerprint", "") != fingerprint or defaults.meta.get("maps_kept") != MAPS_KEPT
            or defaults.meta.get("templates") != TEMPLATES):
        defaults = build_gallery(defaults_dir, key, dim, photos, embed, fingerprint)
        try:
            defaults.save()
        except OSError:
            pass
    return defaults


def open_gallery(user_dir, defaults: Gallery) -> Gallery:
    """The saved gallery under ``user_dir`` (``--persistent-gallery``); on first use a copy of ``defaults``."""
    user = Gallery.load(user_dir, defaults.key, defaults.dim)
    if user is not None:
        return user
    user = defaults.copy_to(user_dir)
    user.save()
    return user
