"""Where the face models are: dlib's files, the SCRFD detector, insightface packs (search, download), the
MediaPipe face mesh (`face_mesh_dir`), ONNX providers.

InsightFace packs (`resolve_pack`): ``model_dir`` argument (or a ``pack`` given as a folder), then
``$VIEWDIFF_MODELS`` (the pack itself or a folder holding ``<pack>/``), ``weights/insightface/<pack>``,
``../shared/models/<pack>``, ``~/.insightface/models/<pack>``; only then insightface's own download
into ``~/.insightface``, which is off when ``allow_download=False``, ``$VIEWDIFF_OFFLINE=1`` or under
pytest (tests never touch the network). ONNX providers: CUDA when onnxruntime offers it, else CPU.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

from viewdiff.faces.errors import ModelNotFoundError
from viewdiff.paths import REPO_ROOT, models_env_dir, offline, repo_relative, shared_dir

DEFAULT_PACK = "w600k_mbf"   # shipped in weights/insightface/: SCRFD det_2.5g + w600k_mbf (buffalo_s's 512-d ArcFace)
CHECKSUMS = "SHA256SUMS"


def face_mesh_dir() -> Path:
    """The shipped MediaPipe Face Mesh folder (``weights/face_mesh``: the ONNX, its triangles and symmetry, checked
    against its SHA256SUMS by `viewdiff.faces.face_mesh.FaceMesh`); a missing folder raises with the fix."""
    folder = REPO_ROOT / "weights" / "face_mesh"
    if not (folder / CHECKSUMS).is_file():
        raise ModelNotFoundError(f"the face-mesh model folder {_display(folder)} is missing: restore it with "
                                 "`git checkout -- weights/face_mesh` (or rebuild the ONNX with "
                                 "`python scripts/convert_face_mesh.py`)")
    return folder


def dlib_model_dir() -> Path:
    """Folder of the ``face_recognition_models`` files (without importing its pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("dlib models not found: pip install face_recognition_models==0.3.0")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def find_scrfd() -> Path | None:
    """SCRFD detector file: `$VIEWDIFF_MODELS`, weights/insightface/scrfd, ../shared/models/scrfd."""
    env = models_env_dir()
    dirs = [env / "scrfd", env] if env else []
    dirs += [REPO_ROOT / "weights/insightface/scrfd", shared_dir() / "models/scrfd"]
    for d in dirs:
        for name in ("det_2.5g.onnx", "det_10g.onnx", "det_500m.onnx"):
            if (d / name).is_file():
                return d / name
    return None


def _has_onnx(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.onnx"))


def _is_path_like(pack: str) -> bool:
    return any(sep in pack for sep in ("/", "\\", os.sep)) or pack.startswith((".", "~"))


def insightface_home() -> Path:
    """Where insightface keeps (and downloads) packs: ``~/.insightface``."""
    return Path("~/.insightface").expanduser()


def pack_search_dirs(pack: str | None = None, model_dir: str | Path | None = None) -> list[Path]:
    """The folders `resolve_pack` tries, in order (for messages and tests)."""
    pack = pack or DEFAULT_PACK
    dirs: list[Path] = []
    if model_dir:
        dirs += [Path(model_dir).expanduser(), Path(model_dir).expanduser() / pack]
    if _is_path_like(pack):
        dirs.append(Path(pack).expanduser())
    else:
        if env := models_env_dir():
            dirs += [env / pack, env]
        dirs += [REPO_ROOT / "weights" / "insightface" / pack, shared_dir() / "models" / pack,
                 insightface_home() / "models" / pack]
    return dirs


def resolve_pack(pack: str | None = DEFAULT_PACK, model_dir: str | Path | None = None) -> Path | None:
    """Local folder holding the .onnx files of an insightface pack, or None (not on this machine).

    Order: `model_dir` (the pack itself or a folder holding ``<pack>/``), or `pack` given as a folder
    path; then ``$VIEWDIFF_MODELS`` (``<pack>/`` in it, or itself), ``weights/insightface/<pack>``,
    ``../shared/models/<pack>``, ``~/.insightface/models/<pack>``. An explicit folder (`model_dir`
    or a path as `pack`) without .onnx files raises `ModelNotFoundError` instead of searching on.
    """
    pack = pack or DEFAULT_PACK
    dirs = pack_search_dirs(pack, model_dir)
    for d in dirs:
        if _has_onnx(d):
            return d
    if model_dir or _is_path_like(pack):
        where = " nor ".join(str(d) for d in dirs[:2 if model_dir else 1])
        raise ModelNotFoundError(
            f"no .onnx model files in {where}: put an insightface pack there (e.g. buffalo_l: "
            "det_10g.onnx, w600k_r50.onnx, 1k3d68.onnx ...), or use backend='dlib', which runs offline")
    return None


def recognition_model_file(fingerprint: str) -> Path:
    """The recognition model of a shipped pack (``weights/insightface/*/``) whose fingerprint (the first digits of
    its sha256) is `fingerprint`."""
    for path in sorted((REPO_ROOT / "weights" / "insightface").glob("*/*.onnx")):
        if fingerprint and file_sha256(path).startswith(fingerprint):
            return path
    raise ModelNotFoundError(f"no shipped model file has the fingerprint {fingerprint!r}: the records were made by "
                             "another embedder; extract them again with the shipped pack")


def downloads_allowed(allow_download: bool | None = None) -> bool:
    """`allow_download`, else False when ``$VIEWDIFF_OFFLINE`` is set (1/true/yes) or under pytest."""
    if allow_download is not None:
        return bool(allow_download)
    if offline():
        return False
    return "PYTEST_CURRENT_TEST" not in os.environ


def download_pack(pack: str) -> Path:
    """insightface's own download of `pack` into ``~/.insightface/models/<pack>``; the folder with its .onnx."""
    from insightface.utils import storage
    root = insightface_home()
    target = root / "models" / pack
    try:   # insightface skips the download when the folder exists, even empty (an interrupted download)
        folder = Path(storage.download("models", pack, force=target.is_dir() and not _has_onnx(target),
                                       root=str(root)))
    except Exception as e:  # network, HTTP or zip errors
        raise ModelNotFoundError(
            f"downloading the insightface pack {pack!r} into {target} failed ({type(e).__name__}: {e}). "
            f"Without internet, copy the pack's .onnx files to weights/insightface/{pack}/ or set "
            "VIEWDIFF_MODELS to a folder holding it; or use backend='dlib', which runs offline") from e
    for d in (folder, folder / pack):   # some zips hold a folder named after the pack
        if _has_onnx(d):
            return d
    raise ModelNotFoundError(f"the download of the insightface pack {pack!r} left no .onnx files in {folder}")


def ctx_id(providers: list[str]) -> int:
    """insightface's ctx_id: 0 (keep the session's providers, CUDA) or -1 (CPU only)."""
    return 0 if "CUDAExecutionProvider" in providers else -1


def onnx_providers(providers=None) -> list[str]:
    """CUDA first when onnxruntime offers it, else CPU."""
    if providers:
        return list(providers)
    import onnxruntime
    avail = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]


@functools.lru_cache(maxsize=32)
def _sha256(path: Path, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file (cached per path, size and modification time)."""
    path = Path(path)
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime)


def verify_sha256(folder: Path, names: list[str] | None = None) -> None:
    """Check files of `folder` against its ``SHA256SUMS`` (``sha256sum`` format); no such file: nothing to check.

    names: the files that must be listed and match (default: every listed file). Raises
    `ModelNotFoundError` naming the damaged file and the fix.
    """
    sums_path = Path(folder) / CHECKSUMS
    if not sums_path.is_file():
        return
    listed = dict(reversed(line.split(None, 1)) for line in sums_path.read_text().splitlines() if line.strip())
    listed = {name.strip().lstrip("*"): digest for name, digest in listed.items()}
    for name in names if names is not None else sorted(listed):
        path = Path(folder) / name
        if name not in listed:
            raise ModelNotFoundError(f"{name} is not listed in {folder.name}/{CHECKSUMS}: restore the folder "
                                     f"with `git checkout -- {_display(folder)}`")
        if not path.is_file() or file_sha256(path) != listed[name]:
            raise ModelNotFoundError(
                f"{folder.name}/{name} is missing or damaged (its sha256 does not match {CHECKSUMS}): restore it "
                f"with `git checkout -- {_display(folder)}` (or `git lfs pull` if the repository uses LFS)")


def _display(folder: Path) -> str:
    """`folder` relative to the repository when inside it, else its name (no server paths in messages)."""
    shown = repo_relative(folder)
    return Path(folder).name if Path(shown).is_absolute() else shown


def ort_session_options():
    """onnxruntime session options: CPU threads from ``$VIEWDIFF_ORT_THREADS`` (0 = onnxruntime's choice)."""
    import onnxruntime
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("VIEWDIFF_ORT_THREADS", "0"))
    return opts


def onnx_session(path: Path, providers=None, options=None):
    """An onnxruntime session for `path` with `options` (default `ort_session_options`)."""
    import onnxruntime
    try:
        return onnxruntime.InferenceSession(str(path), options or ort_session_options(),
                                            providers=onnx_providers(providers))
    except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf types
        raise ModelNotFoundError(f"cannot load the model {Path(path).name} ({type(e).__name__}): restore it with "
                                 f"`git checkout -- {_display(Path(path).parent)}`") from e
