"""FaceAnalyzer on real photos: the default backend (the shipped InsightFace pack) and the dlib fallback.

Real inputs: `assets/` (t1.jpg: 6 faces, identities/Tom_Hanks_54745.png: an aligned crop), CFP and Pointing'04
from ../shared (located with `shared_dir()`; those tests skip only when the folder is absent), and
broken / huge / grey / RGBA / face-less images derived from them.
"""
from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from viewdiff.faces.analyzer import FaceAnalyzer
from viewdiff.faces.errors import ImageReadError, ImageTooLargeError, NoFaceError
from viewdiff.faces.head_pose import POSE_SOURCE
from viewdiff.faces.images import load_image
from viewdiff.faces.records import FaceRecord
from viewdiff.paths import shared_dir

REPO = Path(__file__).resolve().parent.parent
T1 = REPO / "assets" / "t1.jpg"
HANKS = REPO / "assets" / "identities" / "Tom_Hanks_54745.png"
ARCFACE_FINGERPRINT = "28db0b514695b5c8"   # sha256 of weights/insightface/w600k_mbf/w600k_mbf.onnx
DATA = shared_dir() / "data"
CFP = DATA / "cfp" / "Data" / "Images"
P04 = DATA / "pointing04"

needs_cfp = pytest.mark.skipif(not CFP.is_dir(), reason=f"CFP not found at {CFP} (clone the project beside ../shared)")
needs_p04 = pytest.mark.skipif(not P04.is_dir(), reason=f"Pointing'04 not found at {P04} (clone beside ../shared)")


@pytest.fixture(scope="module")
def fa() -> FaceAnalyzer:
    """One default analyzer for the module: SCRFD + ArcFace from weights/, no ../shared, no download."""
    return FaceAnalyzer()


@pytest.fixture(scope="module")
def p04_frontal() -> Path:
    if not P04.is_dir():
        pytest.skip(f"Pointing'04 not found at {P04}")
    return P04 / "Person01" / "person01146+0+0.jpg"


def cos(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_record(r: FaceRecord, width: int, height: int, dim: int = 512, backend: str = "insightface") -> None:
    assert r.bbox.shape == (4,) and r.bbox.dtype == np.float32
    x1, y1, x2, y2 = r.bbox
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert r.keypoints.shape == (5, 2)
    assert r.embedding.shape == (dim,) and r.embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(r.embedding)) - 1) < 1e-5
    assert r.embedding_mirror.shape == (dim,) and abs(float(np.linalg.norm(r.embedding_mirror)) - 1) < 1e-5
    assert 0.5 < float(r.embedding @ r.embedding_mirror) < 0.9999   # the same person, another view
    assert r.source_pose.shape == (3,) and np.isfinite(r.source_pose).all()
    assert r.pose_source == POSE_SOURCE and r.pose_features.shape == (7,)
    assert r.keypoints_3d.shape == (5, 3) and r.keypoints_3d is r.surface.keypoints_3d   # measured on the mesh
    assert r.surface.vertices.shape == (468, 3) and r.surface.cell_depth.shape == (7, 7)
    assert r.aligned_crop.shape == (112, 112, 3) and r.aligned_crop.dtype == np.uint8
    assert r.num_faces >= 1 and r.backend == backend


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
    # every record knows the other faces (the demo draws them without detecting again)
    assert rec.other_boxes.shape == (5, 4) and rec.other_keypoints.shape == (5, 5, 2)
    for r in everyone:
        others = {tuple(np.round(b).astype(int)) for b in r.other_boxes}
        drawn = {tuple(np.round(o.bbox).astype(int)) for o in everyone if o is not r}
        assert all(min(np.abs(np.subtract(b, d)).max() for d in drawn) <= 2 for b in others)
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
    assert abs(float(rec.source_pose[0])) < 30


def test_detect_then_describe_face_is_analyze_in_two_halves(fa):
    """The live camera's path: its own detection (a smaller detector input), then the photo path's description."""
    rgb = np.asarray(Image.open(HANKS).convert("RGB"))
    whole = fa.analyze(rgb)
    boxes, kps = fa.detect(rgb)
    i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    halves = fa.describe_face(rgb, boxes[i], kps[i])
    check_record(halves, rgb.shape[1], rgb.shape[0])
    np.testing.assert_array_equal(halves.embedding, whole.embedding)   # the same detection, the same record
    np.testing.assert_array_equal(halves.source_pose, whole.source_pose)
    small, small_kps = fa.detect(rgb, det_size=320)   # cheaper, a little less exact
    assert len(small) == len(boxes) and np.abs(small_kps[0] - kps[i]).max() < 0.05 * (boxes[i, 2] - boxes[i, 0])


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
    assert load_image(cut)[0, 0].tolist() == [255, 255, 255]


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
    with pytest.raises(ImageReadError, match="No such file") as err:
        fa.analyze(tmp_path / "missing.jpg")
    assert str(tmp_path) not in str(err.value) and "missing.jpg" in str(err.value)   # no server folders
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
    rgb = load_image(p04_frontal)
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
    assert cos(rec.embedding, ref.embedding) > 0.9   # the same face resampled (w600k: 0.94; another person: < 0.3)
    assert np.abs(rec.source_pose[:2] - ref.source_pose[:2]).max() < 10


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
        yaw = abs(float(r.source_pose[0]))
        if view == "frontal":
            assert yaw < 20, f"{i}/frontal/{n:02d}: |yaw| {yaw:.1f}"
        else:
            assert yaw > 55, f"{i}/profile/{n:02d}: |yaw| {yaw:.1f}"
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
    from viewdiff.training.listings import P04_NAME
    person = P04 / "Person01"
    pans, yaws = [], []
    for pan in range(-90, 91, 15):   # series 1, tilt 0
        path = next(person.glob(f"person011??+0{pan:+d}.jpg"))
        m = P04_NAME.match(path.name)
        assert float(m.group(5)) == pan and float(m.group(4)) == 0
        rec = fa.analyze(path)
        pans.append(pan)
        yaws.append(float(rec.source_pose[0]))
        if abs(pan) >= 30:
            assert np.sign(rec.source_pose[0]) == np.sign(pan), f"{path.name}: yaw {rec.source_pose[0]:.1f}"
        if pan == 0:
            assert abs(rec.source_pose[0]) < 15
    assert np.corrcoef(pans, yaws)[0, 1] > 0.95
    # pitch follows the tilt (pan 0)
    up = fa.analyze(next(person.glob("person011??+30+0.jpg"))).source_pose[1]
    down = fa.analyze(next(person.glob("person011??-30+0.jpg"))).source_pose[1]
    assert up > 0 > down and up - down > 15, (up, down)


def test_tiny_face_gets_a_warning(fa):
    small = cv2.resize(np.asarray(Image.open(T1).convert("RGB")), None, fx=0.3, fy=0.3,
                       interpolation=cv2.INTER_AREA)
    try:
        rec = fa.analyze(small)
    except NoFaceError:
        pytest.skip("the detector finds no face this small")
    assert rec.warning and "px" in rec.warning and "faces found" in rec.warning


def test_default_is_the_shipped_arcface_pack(fa):
    assert fa.backend == "insightface" and fa.embedding_dim == 512 and fa.fingerprint == ARCFACE_FINGERPRINT
    described = fa.describe()
    assert described["pack"] == "w600k_mbf" and described["fingerprint"] == ARCFACE_FINGERPRINT
    assert "/" not in str(described["models"])   # file names only: no server paths on the model card


@needs_cfp
def test_dlib_fallback_backend():
    dlib = FaceAnalyzer(backend="dlib")
    assert dlib.fingerprint != ARCFACE_FINGERPRINT and len(dlib.fingerprint) == 16
    frontal, profile = (dlib.analyze(CFP / "001" / v / "01.jpg") for v in ("frontal", "profile"))
    for r in (frontal, profile):
        img = np.asarray(Image.open(CFP / "001" / ("frontal" if r is frontal else "profile") / "01.jpg"))
        check_record(r, img.shape[1], img.shape[0], dim=128, backend="dlib")
    assert abs(frontal.source_pose[0]) < 20 < 55 < abs(profile.source_pose[0])


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be"):
        FaceAnalyzer(backend="arcface")


# ----------------------------------------------------------------------------- reduced decode of big JPEGs

def test_ordinary_photos_give_identical_records_through_the_reduced_decode_path(fa):
    """Under 2 x WORK_MAX_SIDE (t1.jpg: 1280 px) the file is decoded in full, exactly as a decoded array."""
    from_file, from_array = fa.analyze(T1), fa.analyze(load_image(T1))
    for name in ("bbox", "keypoints", "embedding", "embedding_mirror", "source_pose", "pose_features", "aligned_crop"):
        assert np.array_equal(getattr(from_file, name), getattr(from_array, name)), name
    assert np.array_equal(FaceAnalyzer.load_image(T1), load_image(T1))


def test_a_12_megapixel_photo_is_decoded_at_half_size_and_mapped_back(fa):
    """t1.jpg upscaled to 4000 x 2768 (a phone photo's size): decoded at 2000 px, coordinates in the 4000 px
    original, the same face as the full decode described on its full-resolution region."""
    big = Image.open(T1).resize((4000, 2768), Image.LANCZOS)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=92)
    data = buf.getvalue()
    reduced, full = fa.analyze_all(data), fa.analyze_all(load_image(data))   # an array: never reduced
    assert len(reduced) == len(full) == 6   # t1.jpg's six faces, of nearly equal size: matched by position
    for face in full:
        rec = min(reduced, key=lambda r: np.abs(r.bbox - face.bbox).max())
        check_record(rec, 4000, 2768)
        side = float(face.bbox[2] - face.bbox[0])
        assert np.abs(rec.bbox - face.bbox).max() < 0.05 * side, (rec.bbox, face.bbox)
        assert np.abs(rec.keypoints - face.keypoints).max() < 0.03 * side
        assert cos(rec.embedding, face.embedding) > 0.95
        assert np.abs(rec.source_pose - face.source_pose).max() < 3
    rec = fa.analyze(data)
    shown = FaceAnalyzer.load_image(data)   # what the demo draws on: the same reduced decode
    assert shown.shape == (1384, 2000, 3)
    np.testing.assert_allclose(fa.analyze(shown).bbox * 2, rec.bbox, atol=1e-3)


# ----------------------------------------------------------------------------- warm-up, detector input

def test_warm_up_runs_every_model_once_and_keeps_nothing():
    analyzer = FaceAnalyzer()
    ran = []
    for owner, name, label in ((analyzer._impl, "detect", "detect"), (analyzer._impl.maps, "run", "run"),
                               (analyzer.head_pose, "tddfa_angles", "tddfa_angles"),
                               (analyzer.head_pose, "fsanet_angles", "fsanet_angles"), (analyzer.mesh, "run", "mesh")):
        inner = getattr(owner, name)
        setattr(owner, name, lambda *a, _inner=inner, _name=label, **k: ran.append(_name) or _inner(*a, **k))
    analyzer.warm_up()
    assert sorted(ran) == ["detect", "fsanet_angles", "mesh", "run", "tddfa_angles"] and analyzer.calls == 0
    rec = analyzer.analyze(HANKS)
    assert analyzer.calls == 1 and rec.num_faces == 1


def test_det_size_is_named_by_describe_only_when_not_the_default(fa):
    assert "det_size" not in fa.describe()   # the extraction cache key of default records is unchanged
    small = FaceAnalyzer(det_size=320)
    assert small.describe() == {**fa.describe(), "det_size": 320}
    assert small.analyze(T1).num_faces == fa.analyze(T1).num_faces


# ----------------------------------------------------------------------------- the measured surface (face mesh)

def test_the_record_carries_the_measured_surface_and_its_keypoints(fa):
    """astronaut.jpg (frontal, level): the mesh's surface, a finite depth under the nose's cell, in front of the
    cheeks' cells; keypoints_3d are the surface's measured ones, not the template turned by the pose."""
    from viewdiff.faces.face_mesh import FaceSurface
    from viewdiff.faces.geometry import keypoints_3d_from_pose
    r = fa.analyze(REPO / "assets" / "astronaut.jpg")
    assert isinstance(r.surface, FaceSurface) and r.surface.presence > 0.9
    depth = r.surface.cell_depth
    assert np.isfinite(depth[3, 3]) and depth[3, 3] > max(depth[3, 1], depth[3, 5])   # the nose stands out
    assert np.isnan(depth[[0, 0, 6, 6], [0, 6, 0, 6]]).all()   # the crop's corners: no face there
    np.testing.assert_array_equal(r.keypoints_3d, r.surface.keypoints_3d)
    assert np.abs(r.keypoints_3d - keypoints_3d_from_pose(r.source_pose)).max() > 1e-3
    assert r.warning is None   # a clear frontal face: nothing to tell the visitor


def test_a_damaged_face_mesh_model_stops_the_analyzer_with_the_fix(tmp_path, monkeypatch):
    import viewdiff.faces.face_mesh as fm
    from viewdiff.faces.errors import ModelNotFoundError
    folder = tmp_path / "face_mesh"
    folder.mkdir()
    for name in ("SHA256SUMS", "face_mesh_triangles.txt", "face_mesh_mirror.txt"):
        (folder / name).write_bytes((fm.face_mesh_dir() / name).read_bytes())
    (folder / "face_landmark.onnx").write_bytes(b"not a model")
    monkeypatch.setattr(fm, "face_mesh_dir", lambda: folder)
    with pytest.raises(ModelNotFoundError, match="face_landmark.onnx is missing or damaged.*git checkout"):
        FaceAnalyzer()
