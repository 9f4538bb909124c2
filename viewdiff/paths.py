"""Where things are: the repository, the team's shared folder, and the environment variables that move them.

Imports nothing heavy (no torch, cv2 or insightface), so any module may use it for a path.

- ``VIEWDIFF_SHARED``: the shared data and model folder (default ``../shared`` beside the repository).
- ``VIEWDIFF_MODELS``: a folder of face-model files (an insightface pack, or one holding ``<pack>/`` and
  ``scrfd/``), searched before the repository's and the shared folder's.
- ``VIEWDIFF_OFFLINE``: ``1`` / ``true`` / ``yes`` / ``on`` turns model downloads off.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """`$VIEWDIFF_SHARED`, else ``../shared`` beside the repository."""
    return Path(os.environ.get("VIEWDIFF_SHARED", REPO_ROOT.parent / "shared"))


def data_root() -> Path:
    """The folder holding the datasets (``cfp/``, ``pointing04/``): ``<shared>/data``."""
    return shared_dir() / "data"


def models_env_dir() -> Path | None:
    """`$VIEWDIFF_MODELS` as a path (``~`` expanded), or None when it is not set."""
    env = os.environ.get("VIEWDIFF_MODELS")
    return Path(env).expanduser() if env else None


def offline() -> bool:
    """True when ``$VIEWDIFF_OFFLINE`` is set to 1 / true / yes / on."""
    return os.environ.get("VIEWDIFF_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_repo_path(path: str | os.PathLike) -> Path:
    """`path` as given when it exists (or is absolute), else relative to the repository root when that exists.

    So ``weights/dlib/enhanced`` works from any working directory. A path found in neither place is
    returned as given (the caller reports it).
    """
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    in_repo = REPO_ROOT / path
    return in_repo if in_repo.exists() else path


def repo_relative(path: str | os.PathLike) -> str:
    """`path` relative to the repository root when it lies inside it, else as given (for saved commands)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
