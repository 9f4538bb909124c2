"""Demo callbacks on real photos: analysis cached per photo, slider moves rerun only the model, raw and
transformed probe against the same raw gallery, bad inputs become messages without server paths,
galleries are per visitor unless persistent, the model card says what is loaded or how to fix it."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from viewdiff.demo import service as demo_service
from viewdiff.demo.engine import SWEEP_YAWS
from viewdiff.demo.calibration import Threshold, weights_for
from viewdiff.demo.gallery import Gallery, photo_embedding
from viewdiff.demo.panels import MEAN_HEAD
from viewdiff.demo.plots import PlotSpec
from viewdiff.demo.service import NO_PHOTO, DemoService, Reply, ViewOptions
from viewdiff.models.checkpoint import save_pretrained
from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D
from viewdiff.paths import shared_dir

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
CFP = shared_dir() / "data" / "cfp" / "Data" / "Images"
PLOTS = ("attention", "voxels", "similarity", "sweep")
needs_cfp = pytest.mark.skipif(not CFP.is_dir(), reason=f"CFP photos not found at {CFP}")


def small_gallery_photos() -> dict[str, list[Path]]:
    """A few default identities (the asset photos and, when present, two CFP identities' frontals)."""
    photos = {"Tom Hanks": [ASSETS / "identities" / "Tom_Hanks_54745.png"], "Eileen Collins": [ASSETS / "astronaut.jpg"]}
    if CFP.is_dir():
        photos["50 Cent"] = [CFP / "001" / "frontal" / "01.jpg", CFP / "001" / "frontal" / "02.jpg"]
        photos["Aaron Hernandez"] = [CFP / "002" / "frontal" / "01.jpg"]
    return photos


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A fresh (untrained, seeded) 128-d model saved like the shipped weights (4 layers, R=16: larger than the
    defaults, as the panels below expect)."""
    torch.manual_seed(0)
    return save_pretrained(EnhancedTransformerDecoderOnly3D(d_model=128, num_layers=4, voxel_resolution=16).eval(),
                           tmp_path_factory.mktemp("weights") / "enhanced", {"note": "test model"})


@pytest.fixture(scope="module")
def service(weights, tmp_path_factory) -> DemoService:
    threads = torch.get_num_threads()
    tmp = tmp_path_factory.mktemp("demo")
    svc = DemoService.load("dlib", weights, None, tmp / "defaults", small_gallery_photos())
    yield svc
    torch.set_num_threads(threads)  # DemoService.load sets 1 thread for the demo process


def photo(service, path, target=(0, 0, 0), view=None, gallery=None) -> Reply:
    reply = service.on_photo(str(path), target, view or ViewOptions(), None, gallery)
    assert isinstance(reply, Reply)
    return reply


# ----------------------------------------------------------------------------- real photos

def test_new_photo_gives_face_panel_and_all_plots(service):
    reply = photo(service, ASSETS / "astronaut.jpg")
    assert reply.warnings == []
    session = reply.values["session"]
    assert session.record.embedding.shape == (128,) and session.photo_name == "astronaut.jpg"
    assert reply.values["face_image"].shape == (512, 512, 3)  # the annotated photo
    info = reply.values["face_info"]
    assert "estimated head pose" in info and "pnp5" not in info and "source pose" not in info   # plain words
    assert reply.values["photo_status"].startswith("**Face found** (facing the camera)")   # beside the photo
    assert all(isinstance(reply.values[p], PlotSpec) for p in PLOTS)
    assert "the curve of every turn too" in reply.values["status"]  # the target pose + the 19-pose yaw sweep
    result = session.result
    assert result.names == service.gallery.names and result.names[result.best] == "Eileen Collins"
    assert result.attention.shape[:2] == service.attention_shape and result.token_labels[0] == "pose"
    assert result.attention.shape[2:] == (len(result.token_labels),) * 2 == (18, 18)
    assert set(result.volumes) == {"feature strength", "density"} and result.volumes["density"].shape == (16, 16, 16)
    np.testing.assert_allclose(result.attention.sum(-1), 1, atol=1e-4)  # rows of softmax weights
    assert result.sweep.shape == SWEEP_YAWS.shape
    sim = reply.values["similarity"]
    assert sim.layout["yaxis"]["ticktext"][0] == "Eileen Collins" and "Closest: Eileen Collins" in sim.layout["title"]["text"]
    # the default view: layer 1, its most focused head (lowest row entropy)
    attention = session.result.attention[0]
    entropy = -(attention * np.log(np.clip(attention, 1e-12, None))).sum(-1).mean(-1)
    focused = int(np.argmin(entropy))
    assert reply.values["attention"].layout["title"]["text"] == \
        f"Attention: layer 1, head {focused + 1} (the most selective of 8 for this photo)"
    np.testing.assert_allclose(reply.values["attention"].data[0]["z"], attention[focused], rtol=1e-5)
    voxels = reply.values["voxels"]  # the face's 5 keypoints are marked on the slice, over its measured surface
    assert [t["name"] for t in voxels.data[1:]] == ["face surface", "eyes", "nose", "mouth corners"]
    assert len(voxels.data[1]["x"]) == 468 and sum(len(t["x"]) for t in voxels.data[2:]) == 5


def test_slider_moves_rerun_only_the_pose_transformer(service, capsys):
    """A photo is analysed once; slider moves reuse the cached analysis (counted, not timed)."""
    calls = service.analyzer.calls
    reply = photo(service, ASSETS / "t1_face_yaw55.jpg")
    assert service.analyzer.calls == calls + 1
    session = reply.values["session"]
    record = session.record
    timings = []
    for target in [(30, 0, 0), (-60, 0, 0), (0, 20, 0), (45, 20, -10), (90, 0, 0)]:
        start = time.perf_counter()
        moved = service.on_target(target, ViewOptions(), session)
        timings.append((time.perf_counter() - start) * 1000)
        assert moved.warnings == [] and set(PLOTS) <= set(moved.values)
        assert "face_image" not in moved.values and "face_info" not in moved.values  # the face panel stays
        np.testing.assert_array_equal(session.result.target, target)
        assert session.record is record
        sweep = moved.values["sweep"]
        assert sweep.layout["shapes"][0]["x0"] == target[0]  # the target-yaw marker follows the slider
    assert service.analyzer.calls == calls + 1  # no new face analysis for slider moves
    # the yaw sweep depends on the target pitch/roll only: cached per (pitch, roll)
    assert set(session.sweeps) == {(0.0, 0.0), (20.0, 0.0), (20.0, -10.0)}
    status = service.on_target((10, 0, 0), ViewOptions(), session).values["status"]
    assert status.startswith("Updated in") and "curve" not in status   # one pose: the sweep came from the cache
    with capsys.disabled():
        print(f"\nslider callback (model + plots): median {np.median(timings):.1f} ms, max {max(timings):.1f} ms")


def test_slider_release_leaves_an_unchanged_sweep_out(service):
    """A yaw move keeps the sweep curve (the page moves its marker): the reply leaves that figure out."""
    session = photo(service, ASSETS / "t1_face_yaw55.jpg").values["session"]
    first = service.on_target((20, 0, 0), ViewOptions(), session, client_moves_marker=True)
    assert "sweep" not in first.values and {"attention", "voxels", "similarity"} <= set(first.values)
    assert "sweep" in service.on_target((20, 15, 0), ViewOptions(), session, client_moves_marker=True).values
    assert "sweep" in service.on_target((-20, 15, 0), ViewOptions(), session).values  # e.g. reset: always sent


def test_transform_matches_a_direct_model_call(service):
    """Transformed probe vs the RAW gallery: both scores use the same templates (one scale)."""
    record = photo(service, ASSETS / "cameraman_gray.png").values["session"].record
    target = np.array([20, -10, 5], np.float32)
    head = service.model.head.weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():  # a fresh model is the identity: give it a non-zero residual
            head.copy_(torch.randn_like(head) * 0.05)
        result = service.transform(record, target)
        with torch.inference_mode():
            out = service.model(torch.from_numpy(record.embedding)[None], torch.from_numpy(record.source_pose)[None],
                                torch.from_numpy(record.keypoints_3d)[None], torch.from_numpy(target)[None],
                                src_mirror=torch.from_numpy(record.embedding_mirror)[None])
    finally:
        with torch.no_grad():
            head.copy_(saved)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    templates = service.gallery.templates
    np.testing.assert_allclose(result.transformed, templates @ unit(out[0].numpy()), atol=1e-5)
    np.testing.assert_allclose(result.raw, templates @ record.embedding, atol=1e-6)
    assert not np.allclose(result.transformed, result.raw, atol=1e-3)
    best = result.best  # the sweep: transformed similarity to the best identity's raw template along yaw
    assert result.sweep.shape == SWEEP_YAWS.shape and np.all(np.abs(result.sweep) <= 1 + 1e-5)
    assert result.names[best] == result.names[int(np.argmax(result.transformed))]


@needs_cfp
@pytest.mark.parametrize("view, path", [("frontal", "001/frontal/04.jpg"), ("profile", "001/profile/01.jpg"),
                                        ("profile", "002/profile/02.jpg")])
def test_cfp_frontal_and_profile_photos(service, view, path):
    reply = photo(service, CFP / path)
    assert not [w for w in reply.warnings if "no face" in w.lower()]
    record = reply.values["session"].record
    yaw = abs(float(record.source_pose[0]))
    assert yaw < 25 if view == "frontal" else yaw > 35
    result = reply.values["session"].result
    assert np.isfinite(result.raw).all() and np.isfinite(result.transformed).all() and np.isfinite(result.sweep).all()
    if view == "frontal":  # frontal-to-frontal matching is easy for the backend itself
        assert result.names[int(np.argmax(result.raw))] == "50 Cent"


# ----------------------------------------------------------------------------- bad inputs

def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (an image bomb): only its header and one empty row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 7)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name, make, message", [
    ("empty.jpg", lambda: b"", "empty"),
    ("corrupt.jpg", lambda: b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10, "corrupt"),
    ("truncated.jpg", lambda: (ASSETS / "astronaut.jpg").read_bytes()[:5000], "truncated"),
    ("notes.txt.png", lambda: b"hello, I am a text file", "not a readable image"),
    ("bomb.png", lambda: png_header_only(30000, 30000), "megapixels"),
    ("cat_no_face.jpg", lambda: (ASSETS / "cat_no_face.jpg").read_bytes(), "no face found"),
])
def test_unusable_photo_is_a_message_not_an_exception(service, tmp_path, name, make, message):
    path = tmp_path / name
    path.write_bytes(make())
    reply = photo(service, path)
    # said beside the photo, not in a toast (a toast outlived the next photo: "6 faces found" beside a cat's
    # "No face found")
    assert reply.warnings == []
    status = reply.values["photo_status"].replace("\\", "")   # Markdown escapes
    assert status.startswith("**Cannot use this photo.** ") and message in status.lower(), status
    said = status.split("** ", 1)[1]
    assert said[0].isupper() and "Traceback" not in said
    # no server path, no library wording ("85 bytes not processed", "SyntaxError: ...")
    assert str(tmp_path) not in said and "/" not in said.replace("JPEG or PNG", "")
    assert "not processed" not in said and "Error" not in said
    # the results of a previous photo are cleared: they would not belong to this one
    assert reply.values["session"] is None and reply.values["face_image"] is None
    assert reply.values["face_info"].startswith("**Cannot use this photo.**")
    assert "Drop in a face photo" in str(reply.values["attention"].layout["annotations"][0]["text"])


def test_several_faces_use_the_largest_and_say_so(service):
    reply = photo(service, ASSETS / "t1.jpg")
    assert "6 faces found: using the largest one (green box; the others are grey)." in reply.values["photo_status"]
    assert reply.warnings == [] and reply.infos == []   # no toast that would outlive this photo
    assert reply.values["face_choice"] == {"choices": [("face 1 (largest)", 0)] + [(f"face {i}", i - 1)
                                                                                   for i in range(2, 7)],
                                           "value": 0, "visible": True}
    record = reply.values["session"].record
    assert record.num_faces == 6 and "6 faces in the photo" in reply.values["face_info"]
    image = reply.values["face_image"]
    assert image.shape == (709, 1024, 3)  # shown at most 1024 px wide
    # every face is drawn: the one used green, the other five grey (t1_face_yaw55's face at 905,54-1013,204)
    scale = 1024 / 1280
    assert tuple(image[int(54 * scale), int(960 * scale)]) == (170, 170, 170)
    x1, y1 = (int(round(v * scale)) for v in record.bbox[:2])
    assert tuple(image[y1, x1 + 10]) == (40, 220, 40)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16"])
def test_grayscale_rgba_and_other_modes_work(service, tmp_path, mode):
    image = Image.open(ASSETS / "astronaut.jpg")
    if mode == "RGBA":  # transparent border around the face
        image = image.convert("RGBA")
        alpha = np.zeros(image.size[::-1], np.uint8)
        alpha[30:220, 150:300] = 255
        image.putalpha(Image.fromarray(alpha))
    elif mode == "I;16":  # a 16-bit grayscale scan
        image = Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)
    else:
        image = image.convert(mode)
    path = tmp_path / f"photo_{mode.replace(';', '')}.png"
    image.save(path)
    reply = photo(service, path)
    assert reply.warnings == [] and reply.values["session"] is not None
    assert reply.values["face_image"].shape == (512, 512, 3)


@pytest.mark.parametrize("side", [190, 48])
def test_tiny_face_is_used_with_a_warning(service, tmp_path, side):
    # the astronaut photo downscaled so that her face is ~34 px (or ~8 px) wide: below the 40 px limit
    path = tmp_path / "small.png"
    Image.open(ASSETS / "astronaut.jpg").resize((side, side)).save(path)
    reply = photo(service, path)
    if reply.values.get("session") is None:  # the detector may also miss a face this small
        assert "no face found" in reply.values["photo_status"].lower()
    else:
        assert "unreliable below 40 px" in reply.values["photo_status"]


def test_numpy_input_and_no_photo(service):
    rgb = np.asarray(Image.open(ASSETS / "astronaut.jpg"))
    reply = service.on_photo(rgb, (0, 0, 0), ViewOptions(), None)
    assert reply.values["session"].photo_name == "photo"


def test_removing_the_photo_clears_every_panel(service):
    """The photo box's x: face info, detected faces and plots stayed, the sliders kept updating them and "Add to
    gallery" enrolled the removed face. Now every panel goes back to the no-photo state."""
    session = photo(service, ASSETS / "t1.jpg").values["session"]
    cleared = service.on_photo(None, (0, 0, 0), ViewOptions(), session)
    values = cleared.values
    assert values["session"] is None and values["face_image"] is None and values["face_info"] == "No photo yet."
    assert values["photo_status"] == "" and values["status"] == "" and values["face_choice"]["visible"] is False
    assert values["results"] == {"visible": False} and values["results_hint"] == {"visible": True}
    assert all("Drop in a face photo" in str(values[p].layout["annotations"][0]["text"]) for p in PLOTS)
    assert cleared.warnings == [] and cleared.infos == []
    # what the page then sends (the cleared session): no enrolment, sliders ask for a photo
    assert service.on_add("Ghost", (0, 0, 0), ViewOptions(), values["session"]).warnings[0].startswith(
        "Drop in a face photo first")
    assert service.on_target((30, 0, 0), ViewOptions(), values["session"]).values == {"status": NO_PHOTO}
    # after an unusable photo nothing is shown but its message, which stays when the page removes that photo
    assert service.on_photo(None, (0, 0, 0), ViewOptions(), None) == Reply()


def test_unexpected_errors_are_logged_and_summarised(service, monkeypatch):
    session = photo(service, ASSETS / "astronaut.jpg").values["session"]

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "transform", broken)
    reply = service.on_target((10, 0, 0), ViewOptions(), session)
    assert reply.values == {} and reply.warnings[0].startswith("Something went wrong (RuntimeError)")


def test_slider_values_are_clipped_and_none_is_zero(service):
    np.testing.assert_array_equal(demo_service.target_pose((120, None, -99)), [90, 0, -45])
    session = photo(service, ASSETS / "astronaut.jpg").values["session"]
    assert service.on_target((None, None, None), ViewOptions(), session).warnings == []
    assert service.on_target((0, 0, 0), ViewOptions(), None) == Reply({"status": NO_PHOTO})  # e.g. after a bad photo
    bad = service.on_target((float("nan"), 0, 0), ViewOptions(), session)
    assert bad.warnings and bad.warnings[0].startswith("Something went wrong")


# ----------------------------------------------------------------------------- view controls

def test_view_controls_redraw_without_running_anything(service, monkeypatch):
    session = photo(service, ASSETS / "astronaut.jpg").values["session"]
    calls = service.analyzer.calls
    monkeypatch.setattr(service, "transform", lambda *a, **k: pytest.fail("the model must not run"))
    reply = service.on_view(ViewOptions(layer=2, head=5, quantity="density", axis="x", index=3), session)
    assert set(reply.values) == {"attention", "voxels", "explanation"} and service.analyzer.calls == calls
    assert reply.values["attention"].layout["title"]["text"] == "Attention: layer 3, head 6"
    np.testing.assert_allclose(reply.values["attention"].data[0]["z"], session.result.attention[2, 5])
    voxels = reply.values["voxels"]
    assert "density, slice x = 3 of 15" in voxels.layout["title"]["text"]
    np.testing.assert_allclose(voxels.data[0]["z"], session.result.volumes["density"][:, :, 3])
    iso = service.on_view(ViewOptions(quantity="feature strength", as_3d=True), session).values["voxels"]
    assert iso.data[0]["type"] == "isosurface" and len(iso.data[0]["value"]) == 16 ** 3
    clipped = service.on_view(ViewOptions(layer=99, head=99, index=None), session).values["attention"]
    assert clipped.layout["title"]["text"] == f"Attention: layer {service.attention_shape[0]}, head 8"
    mean = service.on_view(ViewOptions(layer=1, head=MEAN_HEAD), session).values["attention"]
    np.testing.assert_allclose(mean.data[0]["z"], session.result.attention[1].mean(0), rtol=1e-5)
    assert set(service.on_view(ViewOptions(), None).values) == {"attention", "voxels", "explanation"}  # no photo: messages


# ----------------------------------------------------------------------------- gallery

def test_each_visitor_has_their_own_gallery(service):
    """Session galleries: a visitor's additions/removals go to their own copy, never to the defaults or others."""
    defaults = list(service.gallery.names)
    session = photo(service, ASSETS / "cameraman_gray.png").values["session"]
    added = service.on_add("  The   Cameraman ", (0, 0, 0), ViewOptions(), session, None)
    assert added.infos == ["Added this face to 'The Cameraman' (1 photo)."]
    assert added.warnings[0].startswith("This face is turned (yaw -") and "frontal photo" in added.warnings[0]
    mine = added.values["gallery"]  # the visitor's own copy, made on the first change
    assert isinstance(mine, Gallery) and mine is not service.gallery and mine.directory is None
    # not pre-selected; in the table's order (newest first)
    assert added.values["gallery_choice"] == {"choices": ["The Cameraman"] + defaults[::-1], "value": None}
    assert added.values["gallery_choice"]["choices"] == [row[0] for row in added.values["gallery_table"]]
    assert added.values["gallery_table"][0] == ["The Cameraman", "user", 1]   # the top row: in view
    result = added.values["session"].result  # similarities recomputed against the visitor's gallery
    own = float(session.record.embedding @ photo_embedding(session.record))   # the photo vs its flip-fused self
    assert result.names[result.best] == "The Cameraman" and result.raw[result.best] == pytest.approx(own, abs=1e-5)
    assert 0.9 < own < 1
    again = service.on_add("The Cameraman", (0, 0, 0), ViewOptions(), session, mine)
    assert again.infos == ["Added this face to 'The Cameraman' (2 photos)."] and again.values["gallery"] is mine
    assert service.gallery.names == defaults  # nobody else sees it
    other = photo(service, ASSETS / "cameraman_gray.png").values["session"].result
    assert "The Cameraman" not in other.names
    assert service.on_load(None).values["gallery_table"] == service.gallery_rows()  # a new page: the defaults
    assert ["The Cameraman", "user", 2] in service.on_load(mine).values["gallery_table"]  # a reload: current


def test_remove_can_be_undone(service):
    session = photo(service, ASSETS / "astronaut.jpg").values["session"]
    removed = service.on_remove("Tom Hanks", (0, 0, 0), ViewOptions(), session, None)
    mine = removed.values["gallery"]
    assert removed.infos == ["Removed 'Tom Hanks' from the gallery. \"Undo remove\" brings it back."]
    assert "Tom Hanks" not in removed.values["gallery_choice"]["choices"] and "Tom Hanks" in service.gallery.names
    assert "Tom Hanks" not in removed.values["session"].result.names
    assert removed.values["undo"] == {"interactive": True, "value": "Undo remove 'Tom Hanks'"}
    undone = service.on_undo((0, 0, 0), ViewOptions(), session, mine)
    assert undone.infos == ["'Tom Hanks' is back in the gallery."] and mine.names == service.gallery.names
    assert undone.values["undo"]["interactive"] is False and "Tom Hanks" in undone.values["session"].result.names
    assert service.on_undo((0, 0, 0), ViewOptions(), session, mine).warnings == ["Nothing to undo."]


def test_gallery_mistakes_are_messages(service):
    session = photo(service, ASSETS / "astronaut.jpg").values["session"]
    assert service.on_add("   ", (0, 0, 0), ViewOptions(), session).warnings == ["Type a name for this face first."]
    assert service.on_add("Ada", (0, 0, 0), ViewOptions(), None).warnings[0].startswith("Drop in a face photo first")
    assert service.on_remove(None, (0, 0, 0), ViewOptions(), session).warnings == ["Choose a gallery entry to remove."]
    assert service.on_remove("Nobody", (0, 0, 0), ViewOptions(), session).warnings == ["'Nobody' is not in the gallery."]
    mine = None
    for name in list(service.gallery.names):  # an empty gallery: the plots say so
        mine = service.on_remove(name, (0, 0, 0), ViewOptions(), None, mine).values["gallery"]
    reply = service.on_target((0, 0, 0), ViewOptions(), session, mine)
    assert "gallery is empty" in reply.values["similarity"].layout["annotations"][0]["text"]
    assert "gallery is empty" in reply.values["sweep"].layout["annotations"][0]["text"]
    assert service.gallery.names  # the defaults are untouched


def test_persistent_gallery_is_shared_and_survives_a_restart(weights, tmp_path):
    photos = {"Tom Hanks": [ASSETS / "identities" / "Tom_Hanks_54745.png"]}
    first = DemoService.load("dlib", weights, tmp_path / "gallery", tmp_path / "defaults", photos, torch_threads=None)
    assert first.persistent and "shared by everyone" in first.model_card()
    session = photo(first, ASSETS / "astronaut.jpg").values["session"]
    added = first.on_add("Eileen", (0, 0, 0), ViewOptions(), session, None)
    assert added.values["gallery"] is None and first.gallery.names == ["Tom Hanks", "Eileen"]
    first.on_remove("Tom Hanks", (0, 0, 0), ViewOptions(), session, None)
    calls = first.analyzer.calls
    second = DemoService.load("dlib", weights, tmp_path / "gallery", tmp_path / "defaults", photos, torch_threads=None)
    assert second.gallery.names == ["Eileen"] and first.analyzer.calls == calls  # the saved gallery, not the defaults
    assert Gallery.load(tmp_path / "defaults", second.gallery.key, 128).names == ["Tom Hanks"]  # defaults untouched


def test_threshold_line_and_not_in_gallery(service, monkeypatch):
    session = photo(service, ASSETS / "cameraman_gray.png").values["session"]
    best = float(session.result.transformed.max())
    for value, title in [(best + 0.01, "Not in the gallery"), (best - 0.01, "Match: ")]:
        monkeypatch.setattr(service.panels, "threshold", Threshold(value, "test"))
        reply = service.on_target((0, 0, 0), ViewOptions(), session)
        sim, sweep = reply.values["similarity"], reply.values["sweep"]
        assert sim.layout["title"]["text"].startswith(title)
        assert any(s["type"] == "line" and s["x0"] == value for s in sim.layout["shapes"])
        assert any(t.get("name", "").startswith("same person") and np.allclose(t["y"], value) for t in sweep.data)
        assert sweep.layout["yaxis"]["range"][1] == 1.0  # a fixed axis, not zoomed to the data


# ----------------------------------------------------------------------------- model card

def test_model_card_names_the_loaded_models(service, weights):
    card = service.model_card()
    assert "backend: `dlib`" in card and "embedding_dim: `128`" in card
    assert f"`EnhancedTransformerDecoderOnly3D` from `{weights.parent.name}/{weights.name}`" in card
    assert "d_model=128" in card and "note: `test model`" in card and "not loaded" not in card
    assert "/tmp/" not in card and str(REPO) not in card  # no server paths
    assert "same-person threshold" in card and "each visitor's additions" in card
    # plain words first, the technical details one click away
    summary, details = card.split("<details>")
    assert "**Face finder and identity code:** dlib's" in summary and "**Pose transformer:** reads the identity code" in summary
    assert "d_model=" not in summary and "d_model=128" in details and details.rstrip().endswith("</details>")


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: save_pretrained(EnhancedTransformerDecoderOnly3D(d_model=64, num_layers=1), tmp / "w64"),
     "64-d embeddings, but the face backend gives 128-d"),
])
def test_missing_or_mismatched_weights_explain_the_fix(service, tmp_path, make, expected):
    weights_dir = make(tmp_path)
    svc = DemoService.load("dlib", weights_dir, None, tmp_path / "defaults",
                           {"Tom Hanks": [ASSETS / "identities" / "Tom_Hanks_54745.png"]}, torch_threads=None)
    assert svc.model is None and svc.attention_shape == (0, 0)
    card = svc.model_card()
    assert "Pose transformer: not loaded" in card and expected in card and str(tmp_path) not in card
    assert "python -m viewdiff.training.train --backend dlib --datasets cfp,pointing04 --export_dir" in card
    reply = svc.on_photo(str(ASSETS / "astronaut.jpg"), (0, 0, 0), ViewOptions(), None)
    assert reply.warnings == [] and "No pose-transformer weights" in reply.values["status"]
    assert "estimated head pose" in reply.values["face_info"]  # face analysis and pose work
    assert len(reply.values["similarity"].data) == 1  # raw similarity still works
    for panel in ("attention", "sweep", "voxels"):  # the transformer panels say why and how to get weights
        note = reply.values[panel].layout["annotations"][0]["text"]
        assert "no pose-transformer weights" in note and "--export_dir" in note and "model card" in note
    session = reply.values["session"]
    assert svc.on_target((30, 0, 0), ViewOptions(), session).warnings == []
    assert svc.on_view(ViewOptions(layer=None, head=None), session).warnings == []  # empty dropdowns


# ----------------------------------------------------------------------------- shipped weights

def test_shipped_weights_load_and_transform(analyzer, tmp_path):
    """The weights shipped for the default embedder (found by its fingerprint) load and move the embedding."""
    shipped = weights_for(analyzer.fingerprint)
    if not (shipped / "model.safetensors").is_file():
        pytest.skip(f"no trained weights for the default embedder in {shipped}")
    svc = DemoService.load("auto", None, None, tmp_path / "defaults", small_gallery_photos(), torch_threads=None)
    assert svc.model is not None and svc.weights_dir == shipped, svc.weights_error
    assert "Pose transformer: not loaded" not in svc.model_card()
    reply = photo(svc, ASSETS / "t1_face_yaw55.jpg")
    result = reply.values["session"].result
    assert np.isfinite(result.transformed).all() and np.isfinite(result.sweep).all()
    assert not np.allclose(result.transformed, result.raw, atol=1e-4)  # a trained model moves the embedding
    assert result.attention.shape[:2] == svc.attention_shape


def test_a_closed_page_releases_its_photo_analysis(service):
    """The registry frees what a page held when it closes; a released session reads as no photo."""
    from viewdiff.demo.service import SessionRegistry
    registry = SessionRegistry()
    session = photo(service, ASSETS / "astronaut.jpg").values["session"]
    registry.track("page-1", session)
    registry.track(None, session)   # a call without a session hash (the API): nothing to track
    assert len(registry) == 1 and registry.live(session) is session
    registry.release("page-1")
    assert len(registry) == 0 and session.record is None and session.result is None and not session.sweeps
    assert registry.live(session) is None and registry.live(None) is None
    assert service.on_target((30, 0, 0), ViewOptions(), registry.live(session)).values["status"].startswith("Drop in")
    registry.release("page-unknown")   # a page that never analysed a photo


# ----------------------------------------------------------------------------- issue 23: what a visitor meets

HOSTILE = '<a href="https://example.com">click me</a> <img src=x>'


@pytest.mark.parametrize("persistent", [False, True])
def test_names_are_text_in_every_panel_and_gallery_mode(service, weights, tmp_path, persistent):
    """A gallery name "<a href=...>click me</a>" became a link in the similarity plot (plotly renders HTML)."""
    svc = service
    if persistent:
        photos = {"Tom Hanks": [ASSETS / "identities" / "Tom_Hanks_54745.png"]}
        svc = DemoService.load("dlib", weights, tmp_path / "gallery", tmp_path / "defaults", photos, torch_threads=None)
    session = photo(svc, ASSETS / "t1_face_yaw55.jpg").values["session"]   # nobody in the gallery: the name is the best
    added = svc.on_add(HOSTILE, (0, 0, 0), ViewOptions(), session, None)
    assert added.infos[0].startswith("Added this face to '<a href")   # raw here: app._respond escapes every toast
    for plot in ("similarity", "sweep"):
        text = added.values[plot].to_json()
        assert "<a " not in text and "<img" not in text and "&lt;a href" in text, (plot, text[:300])
    assert HOSTILE in added.values["gallery_choice"]["choices"]   # a dropdown and a table show text as text


def test_file_names_in_the_face_panel_are_markdown_text(service, tmp_path):
    path = tmp_path / "<b>bold<b>_*x*.jpg"
    path.write_bytes((ASSETS / "astronaut.jpg").read_bytes())
    info = photo(service, path).values["face_info"]
    assert "<b>" not in info and "&lt;b&gt;" in info and "\\*x\\*" in info


def test_enrolling_the_same_face_under_a_second_name_warns(service):
    """Three names scored 1.000 for one face, without a word."""
    session = photo(service, ASSETS / "astronaut.jpg").values["session"]   # the default entry Eileen Collins
    first = service.on_add("Somebody Else", (0, 0, 0), ViewOptions(), session, None)
    assert len(first.warnings) == 1 and first.warnings[0].startswith("This face also matches 'Eileen Collins' (")
    again = service.on_add("  eileen   COLLINS", (0, 0, 0), ViewOptions(), session, first.values["gallery"])
    assert again.infos == ["Added this face to 'Eileen Collins' (2 photos)."]   # that entry, refined
    assert [w for w in again.warnings if "also matches" in w] == [   # ... and it names the other one, not itself
        "This face also matches 'Somebody Else' (similarity 1.00): the same person under two names? To refine "
        "one entry, add the photo under its name."]


def test_the_most_selective_head_is_chosen_once_per_photo(service):
    """Picked anew at every slider position, "most selective head" switched heads as the slider moved."""
    session = photo(service, ASSETS / "t1_face_yaw55.jpg").values["session"]
    titles = {service.on_target((yaw, 0, 0), ViewOptions(), session).values["attention"].layout["title"]["text"]
              for yaw in (-90, -30, 0, 45, 90)}
    assert len(titles) == 1 and "for this photo" in titles.pop()
    assert set(session.heads) == {0}


def test_a_face_of_a_group_photo_can_be_chosen(service):
    reply = photo(service, ASSETS / "t1.jpg")
    session = reply.values["session"]
    largest = session.record.embedding
    picked = service.on_face(2, (0, 0, 0), ViewOptions(), session)
    new = picked.values["session"]
    assert new.face == 2 and len(new.faces) == 6 and not np.allclose(new.record.embedding, largest)
    assert "face 3 of 6" in picked.values["face_info"]
    assert service.on_face(2, (0, 0, 0), ViewOptions(), new).values == {}   # the same face: nothing to do
    assert service.on_face(0, (0, 0, 0), ViewOptions(), new).values["session"].record.bbox.tolist() == \
        session.record.bbox.tolist()   # back to the largest


def test_pitch_and_roll_without_a_turn_say_so(service):
    session = photo(service, ASSETS / "astronaut.jpg").values["session"]
    yaw = float(session.record.source_pose[0])
    assert "Pitch and roll change little" in service.on_target((yaw, 20, 0), ViewOptions(), session).values["status"]
    assert "Pitch and roll" not in service.on_target((yaw + 40, 20, 0), ViewOptions(), session).values["status"]
    assert "Pitch and roll" not in service.on_target((yaw, 0, 0), ViewOptions(), session).values["status"]


def test_the_explanation_follows_the_identity_picked_and_its_numbers_add_up(tmp_path):
    """Issue 26: the split panel is part of every result; picking an identity redraws it for that identity, and the
    numbers under the photo add up to that identity's score (the shipped embedder and transformer)."""
    import re
    threads = torch.get_num_threads()
    service = DemoService.load("auto", None, None, tmp_path / "defaults", small_gallery_photos())
    torch.set_num_threads(threads)
    session = photo(service, ASSETS / "astronaut.jpg").values["session"]
    result = session.result
    default = service.on_view(ViewOptions(), session).values["explanation"]
    best = result.names[result.best]
    assert best in default.layout["title"]["text"]
    other = next(n for n in result.names if n != best)
    picked = service.on_view(ViewOptions(explain=other), session).values["explanation"]
    i = result.names.index(other)
    assert other in picked.layout["title"]["text"] and f"{float(result.transformed[i]):.3f}" in picked.layout["title"]["text"]
    sums = [a["text"] for a in picked.layout["annotations"] if "= <b>" in a["text"]]
    terms = [float(x) for x in re.findall(r"[+-]\d+\.\d+", sums[0].split("= <b>")[0])]
    assert abs(sum(terms) - float(result.transformed[i])) < 2e-3
    gallery = service.on_load(None).values["explain_choice"]
    assert gallery["value"] == "" and [v for _, v in gallery["choices"]] == [""] + result.names[::-1] or \
        sorted(v for _, v in gallery["choices"] if v) == sorted(result.names)
