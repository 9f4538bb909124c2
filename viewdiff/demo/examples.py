"""The demo's example photos: the committed ones in assets/ (captioned) and local Pointing'04 copies.

No example photo is also a default-gallery photo (those live in assets/identities/), so a probe never
meets its own photo.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from viewdiff.paths import REPO_ROOT, shared_dir

ASSETS = REPO_ROOT / "assets"
LOCAL_ASSETS = ASSETS / "local"
GALLERY_ASSETS = ASSETS / "identities"  # redistributable photos of the default gallery (not examples)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
# Pointing'04 person 01, series 1, tilt 0, pan (= yaw) 0/30/60/90: local examples, never committed.
POINTING04_EXAMPLES = {f"pointing04_person01_yaw{pan:02d}.jpg": f"Person01/person011{46 + pan // 15}+0+{pan}.jpg"
                       for pan in (0, 30, 60, 90)}
# Captions of the committed example photos (assets/README.md says where each comes from).
EXAMPLE_LABELS = {"astronaut.jpg": "frontal", "t1_face_yaw55.jpg": "turned ~60°, looking down",
                  "cameraman_gray.png": "grayscale, turned ~70°", "t1.jpg": "6 faces: the largest is used",
                  "cat_no_face.jpg": "no face (a cat)"}


def example_photos() -> list[str]:
    """Example photos: the redistributable ones in assets/ (captioned first), then the local Pointing'04 ones."""
    order = {name: i for i, name in enumerate(EXAMPLE_LABELS)}
    committed = sorted((p for p in ASSETS.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES),
                       key=lambda p: (order.get(p.name, len(order)), p.name)) if ASSETS.is_dir() else []
    local = sorted(p for p in LOCAL_ASSETS.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) \
        if LOCAL_ASSETS.is_dir() else []
    return [str(p) for p in committed + local]


def example_label(path: str) -> str:
    name = Path(path).name
    if name in EXAMPLE_LABELS:
        return EXAMPLE_LABELS[name]
    if name.startswith("pointing04_"):
        return f"Pointing'04, yaw {name.rsplit('yaw', 1)[-1].split('.')[0]}° (local)"
    return name


def populate_assets_from_shared(shared: Path | None = None, target: Path = LOCAL_ASSETS) -> list[Path]:
    """Copy a few Pointing'04 photos (yaw 0/30/60/90) into assets/local/ (gitignored)."""
    source = (shared or shared_dir()) / "data" / "pointing04"
    if not source.is_dir():
        raise FileNotFoundError(f"{source} not found: put the shared data beside the repository")
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source / rel, target / name)) for name, rel in POINTING04_EXAMPLES.items()]
