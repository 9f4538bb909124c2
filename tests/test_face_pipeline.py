"""Face pipeline on real photos (offline dlib backend) and insightface pack handling without network.

Real inputs: `assets/` (t1.jpg: 6 faces, Tom_Hanks_54745.png: an aligned crop), CFP and Pointing'04
from ../shared (located with `shared_dir()`; those tests skip only when the folder is absent), and
broken / huge / grey / RGBA / face-less images derived from them.
"""
from __future__ import annotations

import io
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from viewdiff import face_pipeline as fp
from viewdiff.face_pipeline import (FaceAnalyzer, FaceRecord, ImageReadError, ImageTooLargeError,
                                    ModelNotFoundError, NoFaceError)

REPO = Path(__file__).resolve().parent.parent
T1 = REPO / "assets" / "t1.jpg"
HANKS = REPO / "assets" / "Tom_Hanks_54745.png"
DATA = fp.shared_dir() / "data"
CFP = DATA / "cfp" / "Data" / "Images"
P04 = DATA / "pointing04"
SCRFD_DIR = fp.shared_dir() / "models" / "scrfd"

needs_cfp = pytest.mark.skipif(not CFP.is_dir(), reason=f"CFP not found at {CFP} (clone the project beside ../shared)")
needs_p04 = pytest.mark.skipif(not P04.is_dir(), reason=f"Pointing'04 not found at {P04} (clone beside ../shared)")
needs_scrfd = pytest.mark.skipif(not (SCRFD_DIR / "det_500m.onnx").is_file(),
                                 reason=f"SCRFD detector not found in {SCRFD_DIR}")


@pytest.fixture(scope="module")
def fa() -> FaceAnalyzer:
    """One dlib-backend analyzer for the module (loading the models takes seconds)."""
    return FaceAnalyzer(backend="dlib")


@pytest.fixture(scope="module")
def p04_frontal() -> Path:
    if not P04.is_dir():
        pytest.skip(f"Pointing'04 not found at {P04}")
    return P04 / "Person01" / "person01146+0+0.jpg"


def cos(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_record(r: FaceRecord, width: int, height: int, dim: int = 128) -> None:
    assert r.bbox.shape == (4,) and r.bbox.dtype == np.float32
    x1, y1, x2, y2 = r.bbox
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert r.keypoints.shape == (5, 2)
    assert r.embedding.shape == (dim,) and r.embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(r.embedding)) - 1) < 1e-5
    assert r.pose.shape == (3,) and np.isfinite(r.pose).all()
    assert r.pose_source in ("pnp5", "pnp68", "landmark_3d_68")
    assert r.keypoints_3d.shape == (5, 3)
    assert r.aligned_crop.shape == (112, 112, 3) and r.aligned_crop.dtype == np.uint8
    assert r.num_faces >= 1 and r.backend == "dlib"


# ----------------------------------------------------------------------------- assets

def test_several_faces_largest_first_with_warning(fa):
    rgb = np.asarray(Image.open(T1).convert("RGB"))
    rec = fa.analyze(T1)
    check_record(rec, rgb.shape[1], rgb.shape[0])
    assert rec.num_faces == 6
    assert rec.warning and "6 faces" in rec.warning and "largest" in rec.warning
    everyone = fa.analyze_all(T1)
    assert len(everyone) == 6 and all(r.num_faces == 6 for r in everyone)
    areas = [(r.bbox[2] - r.bbox[0]) * (r.bbox[3] - r.bbox[1]) for r in everyone]
    assert areas == sorted(areas, reverse=True)
    np.testing.assert_allclose(everyone[0].bbox, rec.bbox)
    np.testing.assert_allclose(everyone[0].embedding, rec.embedding, atol=1e-6)
    # six different people: no two embeddings are as close as one photo to itself
    emb = np.stack([r.embedding for r in everyone])
    sims = emb @ emb.T
    assert sims[~np.eye(6, dtype=bool)].max() < 0.95
    for r in everyone:   # keypoints lie in (or right next to) their face box
        x1, y1, x2, y2 = r.bbox
        margin = 0.2 * (x2 - x1)
        assert ((r.keypoints[:, 0] > x1 - margin) & (r.keypoints[:, 0] < x2 + margin)).all()
        assert ((r.keypoints[:, 1] > y1 - margin) & (r.keypoints[:, 1] < y2 + margin)).all()


def test_aligned_crop_that_fills_the_frame(fa):
    rec = fa.analyze(HANKS)   # 112x112: found by the retry with a border, mapped back inside the image
    check_record(rec, 112, 112)
    assert rec.num_faces == 1 and rec.warning is None
    assert (rec.bbox[2] - rec.bbox[0]) > 60
    assert abs(float(rec.pose[0])) < 30


def test_every_input_type_gives_the_same_face(fa):
    rgb = np.asarray(Image.open(HANKS).convert("RGB"))
    data = HANKS.read_bytes()
    ref = fa.analyze(HANKS)
    for image in (str(HANKS), data, bytearray(data), io.BytesIO(data), Image.open(HANKS), rgb,
                  rgb.astype(np.float32) / 255.0, rgb.astype(np.uint16) * 257, np.ascontiguousarray(rgb[:, ::-1])[:, ::-1]):
        rec = fa.analyze(image)
        np.testing.assert_allclose(rec.bbox, ref.bbox, atol=1e-3)
        np.testing.assert_allclose(rec.embedding, ref.embedding, atol=1e-5)
    assert np.array_equal(FaceAnalyzer.load_image(HANKS), rgb)   # used by the demo


def test_grayscale_and_rgba_are_converted(fa, tmp_path):
    photo = Image.open(T1).convert("RGB")
    ref = fa.analyze(photo)
    grey = photo.convert("L")
    for image in (grey, np.asarray(grey), np.asarray(grey)[..., None]):
        rec = fa.analyze(image)
        assert rec.num_faces == 6
        assert np.abs(rec.bbox - ref.bbox).max() < 0.1 * (ref.bbox[2] - ref.bbox[0])
        assert cos(rec.embedding, ref.embedding) > 0.9
    path = tmp_path / "grey.jpg"
    grey.save(path)
    assert fa.analyze(path).num_faces == 6

    # RGBA, opaque: exactly the RGB result, as array and as PNG
    rgba = np.dstack([np.asarray(photo), np.full(photo.size[::-1], 255, np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, "PNG")
    for image in (rgba, buf.getvalue(), Image.fromarray(rgba)):
        rec = fa.analyze(image)
        np.testing.assert_allclose(rec.embedding, ref.embedding, atol=1e-5)
    # RGBA with a transparent surround (a cut-out): composited over white, the face is still found
    cut = rgba.copy()
    x1, y1, x2, y2 = (int(v) for v in ref.bbox)
    cut[..., 3] = 0
    cut[max(0, y1 - 40):y2 + 40, max(0, x1 - 40):x2 + 40, 3] = 255
    rec = fa.analyze(cut)
    assert cos(rec.embedding, ref.embedding) > 0.9
    assert fp.load_image(cut)[0, 0].tolist() == [255, 255, 255]


# ----------------------------------------------------------------------------- unreadable inputs

def test_empty_file(fa, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="0 bytes"):
        fa.analyze(empty)
    with pytest.raises(ImageReadError, match="0 bytes"):
        fa.analyze(b"")


def test_truncated_jpeg(fa, tmp_path):
    data = T1.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 3 // 5])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        fa.analyze(cut)


def test_random_bytes_and_wrong_types(fa, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match="not a readable image"):
        fa.analyze(junk)
    with pytest.raises(ImageReadError, match="corrupt|not a readable"):   # a PNG signature, then junk
        fa.analyze(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(ImageReadError, match="No such file"):
        fa.analyze(tmp_path / "missing.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        fa.analyze(tmp_path)
    with pytest.raises(ImageReadError, match="unsupported image type"):
        fa.analyze(42)
    with pytest.raises(ImageReadError, match="shape"):
        fa.analyze(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(ImageReadError, match="shape"):
        fa.analyze(np.zeros((0, 10, 3), np.uint8))


# ----------------------------------------------------------------------------- no face

def test_flat_image_has_no_face(fa):
    with pytest.raises(NoFaceError, match="no face found in the 640x480 image"):
        fa.analyze(np.full((480, 640, 3), 128, np.uint8))


def test_background_crop_of_a_real_photo_has_no_face(fa, p04_frontal):
    rgb = fp.load_image(p04_frontal)
    rec = fa.analyze(rgb)
    x2 = int(np.ceil(rec.bbox[2])) + 30   # everything right of the head: wall and shoulder
    background = rgb[:, x2:]
    assert background.shape[1] >= 80
    with pytest.raises(NoFaceError):
        fa.analyze(background)


# ----------------------------------------------------------------------------- huge images

def test_huge_image_is_downscaled_for_detection_and_mapped_back(fa):
    """9000x7000 JPEG: the Tom Hanks crop x8 pasted at (5100, 2900) on a grey canvas."""
    small = np.asarray(Image.open(HANKS).convert("RGB"))
    ref = fa.analyze(small)
    k, ox, oy = 8, 5100, 2900
    big = cv2.resize(small, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    canvas = np.full((7000, 9000, 3), 90, np.uint8)
    canvas[oy:oy + big.shape[0], ox:ox + big.shape[1]] = big
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, "JPEG", quality=90)
    del canvas
    rec = fa.analyze(buf.getvalue())
    check_record(rec, 9000, 7000)
    assert rec.num_faces == 1 and rec.warning is None
    side = k * float(ref.bbox[2] - ref.bbox[0])
    expect_box = ref.bbox * k + np.array([ox, oy, ox, oy])
    expect_kps = ref.keypoints * k + np.array([ox, oy])
    assert np.abs(rec.bbox - expect_box).max() < 0.15 * side, (rec.bbox, expect_box)
    assert np.abs(rec.keypoints - expect_kps).max() < 0.05 * side, (rec.keypoints, expect_kps)
    assert cos(rec.embedding, ref.embedding) > 0.95
    assert np.abs(rec.pose[:2] - ref.pose[:2]).max() < 10


def _png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height, all black: tens of KB that decode to gigabytes."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bombs_are_refused_before_decoding(fa, tmp_path):
    over_pillow = tmp_path / "bomb.png"              # 400 MP: above Pillow's own hard limit too
    over_pillow.write_bytes(_png_bomb(20_000, 20_000))
    assert over_pillow.stat().st_size < 200_000
    over_ours = _png_bomb(11_000, 10_000)            # 110 MP: above MAX_PIXELS, below Pillow's limit
    for image, mp in ((over_pillow, "400"), (over_pillow.read_bytes(), "400"), (over_ours, "110")):
        start = time.perf_counter()
        with pytest.raises(ImageTooLargeError, match=f"{mp} megapixels.*decompression bombs.*resize"):
            fa.analyze(image)
        assert time.perf_counter() - start < 2.0     # refused from the header, nothing decoded
    with pytest.raises(ImageTooLargeError, match="120 megapixels"):   # arrays and PIL images too
        fa.analyze(np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (12_000, 10_000, 3)))
    with pytest.raises(ImageTooLargeError, match="megapixels"):
        fa.analyze(Image.new("1", (11_000, 10_000)))


# ----------------------------------------------------------------------------- real datasets

@needs_cfp
def test_cfp_frontal_vs_profile_pose_and_identity(fa):
    idents = ["001", "003", "004"]
    recs = {(i, v, n): fa.analyze(CFP / i / v / f"{n:02d}.jpg")
            for i in idents for v, nums in (("frontal", (1, 2)), ("profile", (1, 2))) for n in nums}
    for (i, view, n), r in recs.items():
        yaw = abs(float(r.pose[0]))
        if view == "frontal":
            assert yaw < 20, f"{i}/frontal/{n:02d}: |yaw| {yaw:.1f}"
        else:
            assert yaw > 35, f"{i}/profile/{n:02d}: |yaw| {yaw:.1f}"
        assert r.pose_source == "pnp5"
    emb = {key: r.embedding for key, r in recs.items()}
    for i in idents:   # frontal-frontal: own identity closer than any other identity
        same = cos(emb[(i, "frontal", 1)], emb[(i, "frontal", 2)])
        others = [cos(emb[(i, "frontal", 1)], emb[(j, "frontal", n)]) for j in idents if j != i for n in (1, 2)]
        assert same > max(others), (i, same, others)
    # profile -> frontal: same identity more similar on average than different identities
    same = [cos(emb[(i, "profile", p)], emb[(i, "frontal", f)]) for i in idents for p in (1, 2) for f in (1, 2)]
    diff = [cos(emb[(i, "profile", p)], emb[(j, "frontal", f)])
            for i in idents for j in idents if j != i for p in (1, 2) for f in (1, 2)]
    assert np.mean(same) > np.mean(diff) + 0.05, (np.mean(same), np.mean(diff))


@needs_p04
def test_pointing04_yaw_sign_follows_the_pan_in_the_file_name(fa):
    from viewdiff.data import P04_NAME
    person = P04 / "Person01"
    pans, yaws = [], []
    for pan in range(-90, 91, 15):   # series 1, tilt 0
        path = next(person.glob(f"person011??+0{pan:+d}.jpg"))
        m = P04_NAME.match(path.name)
        assert float(m.group(5)) == pan and float(m.group(4)) == 0
        rec = fa.analyze(path)
        pans.append(pan)
        yaws.append(float(rec.pose[0]))
        if abs(pan) >= 30:
            assert np.sign(rec.pose[0]) == np.sign(pan), f"{path.name}: yaw {rec.pose[0]:.1f}"
        if pan == 0:
            assert abs(rec.pose[0]) < 15
    assert np.corrcoef(pans, yaws)[0, 1] > 0.95
    # pitch follows the tilt (pan 0)
    up = fa.analyze(next(person.glob("person011??+30+0.jpg"))).pose[1]
    down = fa.analyze(next(person.glob("person011??-30+0.jpg"))).pose[1]
    assert up > 0 > down and up - down > 15, (up, down)


def test_tiny_face_gets_a_warning(fa):
    small = cv2.resize(np.asarray(Image.open(T1).convert("RGB")), None, fx=0.3, fy=0.3,
                       interpolation=cv2.INTER_AREA)
    try:
        rec = fa.analyze(small)
    except NoFaceError:
        pytest.skip("the detector finds no face this small")
    assert rec.warning and "px" in rec.warning and "faces found" in rec.warning


# ----------------------------------------------------------------------------- pose geometry

def test_angle_conversions_round_trip():
    for angles in [(0, 0, 0), (30, 0, 0), (-60, 10, 5), (45, -20, -10), (80, 30, 0), (-85, -15, 12)]:
        r = fp.angles_to_rotation(angles)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(fp.rotation_to_angles(r), angles, atol=1e-3)
    np.testing.assert_allclose(fp.keypoints_3d_from_pose((0, 0, 0)), fp.TEMPLATE_5, atol=1e-6)
    # a face turned to yaw > 0 moves its nose tip towards the image's left (x < 0), cf. Pointing'04
    assert fp.keypoints_3d_from_pose((40, 0, 0))[2, 0] < -0.3
    assert fp.keypoints_3d_from_pose((0, 30, 0))[2, 1] > 0.2   # pitch > 0: nose up (y up)


def test_insightface_pose_mapping_matches_our_convention():
    """Pose the mean shape, project it like insightface's 3D-landmark model, fit with its own code."""
    from insightface.utils import transform
    face = fp.MEANSHAPE_68 * np.array([1.0, -1.0, 1.0])   # to the face frame (y up)
    rng = np.random.default_rng(0)
    for angles in [(30, 0, 0), (-45, 0, 0), (0, 20, 0), (0, -25, 0), (0, 0, 15), (40, -15, 10), (-70, 25, -5)]:
        posed = face @ fp.angles_to_rotation(angles).T
        pred = posed * np.array([1.0, -1.0, 1.0]) * 80 + np.array([200.0, 150.0, 0.0])   # image: y down
        pred[:, 2] = rng.normal(size=len(pred))   # insightface's fit ignores the predicted depth
        _, rot, _ = transform.P2sRt(transform.estimate_affine_matrix_3d23d(fp.MEANSHAPE_68, pred))
        ours = fp.insightface_pose_to_angles(transform.matrix2angle(rot))
        np.testing.assert_allclose(ours, angles, atol=1e-3)


# ----------------------------------------------------------------------------- insightface packs, no network

@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Isolated search places (repo, shared, home) and a download that must not happen."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("VIEWDIFF_MODELS", raising=False)
    monkeypatch.delenv("VIEWDIFF_OFFLINE", raising=False)
    monkeypatch.setattr(fp, "REPO_ROOT", tmp_path / "repo")
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
    assert fp.resolve_pack("buffalo_l") is None
    for place in (home / ".insightface" / "models" / "buffalo_l",   # lowest priority first:
                  tmp_path / "shared" / "models" / "buffalo_l",          # each new place wins
                  tmp_path / "repo" / "weights" / "insightface" / "buffalo_l"):
        _fake_pack(place)
        assert fp.resolve_pack("buffalo_l") == place
    env = _fake_pack(tmp_path / "env" / "buffalo_l")
    explicit = _fake_pack(tmp_path / "explicit")
    monkeypatch.setenv("VIEWDIFF_MODELS", str(tmp_path / "env"))
    assert fp.resolve_pack("buffalo_l") == env
    assert fp.resolve_pack("buffalo_l", model_dir=explicit) == explicit
    assert fp.resolve_pack(str(explicit)) == explicit               # a pack given as a folder
    assert fp.resolve_pack(None) == env                              # default pack name
    assert fp.DEFAULT_PACK == "buffalo_l"
    assert no_network == []


def test_missing_pack_offline_says_how_to_fix(no_network):
    assert fp.downloads_allowed() is False     # under pytest, downloads are off by default
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
    assert fp.downloads_allowed() is False
    monkeypatch.delenv("VIEWDIFF_OFFLINE")
    assert fp.downloads_allowed() is True
    assert fp.downloads_allowed(False) is False


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
    assert fp.onnx_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert fp.onnx_providers() == ["CPUExecutionProvider"]
    assert fp._ctx_id(fp.onnx_providers()) == -1
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert fp.onnx_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert fp._ctx_id(fp.onnx_providers()) == 0


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be"):
        FaceAnalyzer(backend="arcface")
