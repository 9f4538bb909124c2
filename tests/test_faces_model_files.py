"""Model files without network: insightface pack search order, offline errors, download as the last resort,
broken packs, ONNX providers."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from viewdiff.faces import model_files
from viewdiff.faces.analyzer import FaceAnalyzer
from viewdiff.faces.errors import ModelNotFoundError
from viewdiff.paths import shared_dir

SCRFD_DIR = shared_dir() / "models" / "scrfd"
needs_scrfd = pytest.mark.skipif(not (SCRFD_DIR / "det_500m.onnx").is_file(),
                                 reason=f"SCRFD detector not found in {SCRFD_DIR}")


REPO_FACE_MESH = model_files.REPO_ROOT / "weights" / "face_mesh"


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Isolated search places (repo, shared, home) and a download that must not happen."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("VIEWDIFF_MODELS", raising=False)
    monkeypatch.delenv("VIEWDIFF_OFFLINE", raising=False)
    monkeypatch.setattr(model_files, "REPO_ROOT", tmp_path / "repo")
    shutil.copytree(REPO_FACE_MESH, tmp_path / "repo" / "weights" / "face_mesh")   # in every clone, with no pack
    monkeypatch.setenv("VIEWDIFF_SHARED", str(tmp_path / "shared"))
    calls = []

    def fake_download(sub_dir, name, force=False, root="~/.insightface"):
        calls.append((sub_dir, name, force, root))
        raise OSError("network is unreachable (test)")
    from insightface.utils import storage
    monkeypatch.setattr(storage, "download", fake_download)
    return calls


def _fake_pack(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "w600k_r50.onnx").write_bytes(b"")
    return folder


def test_pack_search_order(no_network, tmp_path, monkeypatch):
    home = Path(os.environ["HOME"])
    assert model_files.resolve_pack("buffalo_l") is None
    for place in (home / ".insightface" / "models" / "buffalo_l",   # lowest priority first:
                  tmp_path / "shared" / "models" / "buffalo_l",          # each new place wins
                  tmp_path / "repo" / "weights" / "insightface" / "buffalo_l"):
        _fake_pack(place)
        assert model_files.resolve_pack("buffalo_l") == place
    env = _fake_pack(tmp_path / "env" / "buffalo_l")
    explicit = _fake_pack(tmp_path / "explicit")
    monkeypatch.setenv("VIEWDIFF_MODELS", str(tmp_path / "env"))
    assert model_files.resolve_pack("buffalo_l") == env
    assert model_files.resolve_pack("buffalo_l", model_dir=explicit) == explicit
    assert model_files.resolve_pack(str(explicit)) == explicit               # a pack given as a folder
    assert model_files.DEFAULT_PACK == "w600k_mbf"
    assert no_network == []


def test_missing_pack_offline_says_how_to_fix(no_network):
    assert model_files.downloads_allowed() is False     # under pytest, downloads are off by default
    with pytest.raises(ModelNotFoundError) as err:
        FaceAnalyzer(backend="insightface", pack="buffalo_l")
    msg = str(err.value)
    for part in ("buffalo_l", "weights/insightface/buffalo_l", "VIEWDIFF_MODELS", "backend='dlib'", "downloads are off"):
        assert part in msg, msg
    assert no_network == []


def test_download_is_the_last_resort_and_its_failure_is_clear(no_network):
    with pytest.raises(ModelNotFoundError, match="downloading the insightface pack 'buffalo_s'.*network is unreachable"):
        FaceAnalyzer(backend="insightface", pack="buffalo_s", allow_download=True)
    assert len(no_network) == 1
    sub_dir, name, force, root = no_network[0]
    assert (sub_dir, name, force) == ("models", "buffalo_s", False)
    assert Path(root) == Path(os.environ["HOME"]) / ".insightface"


def test_offline_env_disables_downloads(monkeypatch):
    monkeypatch.setenv("VIEWDIFF_OFFLINE", "1")
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    assert model_files.downloads_allowed() is False
    monkeypatch.delenv("VIEWDIFF_OFFLINE")
    assert model_files.downloads_allowed() is True
    assert model_files.downloads_allowed(False) is False


def test_empty_pack_folder(no_network, tmp_path):
    empty = tmp_path / "packs" / "buffalo_l"
    empty.mkdir(parents=True)
    with pytest.raises(ModelNotFoundError, match="no .onnx model files in .*buffalo_l.*backend='dlib'"):
        FaceAnalyzer(backend="insightface", model_dir=empty)
    with pytest.raises(ModelNotFoundError, match="no .onnx model files"):
        FaceAnalyzer(backend="insightface", pack=str(empty))
    assert no_network == []


def test_corrupt_pack_file(no_network, tmp_path):
    pack = _fake_pack(tmp_path / "broken")
    with pytest.raises(ModelNotFoundError, match="cannot load the insightface pack"):
        FaceAnalyzer(backend="insightface", model_dir=pack)
    assert no_network == []


@needs_scrfd
def test_pack_without_recognition_model_and_auto_fallback(no_network, tmp_path):
    pack = tmp_path / "detector_only"
    pack.mkdir()
    shutil.copyfile(SCRFD_DIR / "det_500m.onnx", pack / "det_500m.onnx")
    with pytest.raises(ModelNotFoundError, match="no recognition model.*VIEWDIFF_MODELS.*backend='dlib'"):
        FaceAnalyzer(backend="insightface", model_dir=pack)
    auto = FaceAnalyzer(backend="auto", model_dir=pack)   # auto never fails on a partial pack
    assert auto.backend == "dlib" and auto.embedding_dim == 128
    assert "no recognition model" in auto.fallback_reason
    assert no_network == []


def test_providers_cpu_by_default_cuda_when_available(monkeypatch):
    import onnxruntime
    assert model_files.onnx_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert model_files.onnx_providers() == ["CPUExecutionProvider"]
    assert model_files.ctx_id(model_files.onnx_providers()) == -1
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert model_files.onnx_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert model_files.ctx_id(model_files.onnx_providers()) == 0


SHIPPED = Path(__file__).resolve().parent.parent / "weights" / "insightface" / "w600k_mbf"


def test_shipped_pack_works_without_shared_home_or_network(tmp_path, monkeypatch):
    """As a fresh clone meets it (a Space): no ../shared, an empty home, downloads off."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIEWDIFF_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.setenv("VIEWDIFF_OFFLINE", "1")
    monkeypatch.delenv("VIEWDIFF_MODELS", raising=False)
    assert model_files.resolve_pack(None) == SHIPPED
    fa = FaceAnalyzer()
    assert fa.backend == "insightface" and fa.embedding_dim == 512
    rec = fa.analyze(SHIPPED.parent.parent.parent / "assets" / "astronaut.jpg")
    assert abs(rec.source_pose[0]) < 15 and abs(rec.source_pose[1]) < 15   # a frontal photo reads frontal
    assert not (tmp_path / "home" / ".insightface").exists()


def test_damaged_or_unlisted_files_are_refused(tmp_path):
    pack = tmp_path / "w600k_mbf"
    shutil.copytree(SHIPPED, pack)
    model_files.verify_sha256(pack)   # a faithful copy passes
    with open(pack / "det_2.5g.onnx", "r+b") as f:   # one flipped byte
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelNotFoundError, match=r"det_2.5g.onnx is missing or damaged.*SHA256SUMS.*git checkout") as err:
        FaceAnalyzer(backend="insightface", model_dir=pack)
    assert str(tmp_path) not in str(err.value)   # the message names files, not server folders
    with pytest.raises(ModelNotFoundError, match=r"extra.onnx is not listed"):
        model_files.verify_sha256(pack, ["extra.onnx"])
