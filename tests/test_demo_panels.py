"""The region-by-region panel: the numbers shown add up to the score shown, for the identity asked for
(default the best), on real faces with the shipped weights; an empty or map-less case says why."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from viewdiff.demo.engine import PoseEngine
from viewdiff.demo.gallery import Gallery, record_maps
from viewdiff.demo.panels import NO_GALLERY_MAPS, Panels, ViewOptions, caption, explanation_figure, shown_terms

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "weights" / "transformer" / "28db0b514695b5c8"


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[+-]\d+\.\d+", text)]


def test_shown_terms_add_up_to_the_shown_total():
    terms = shown_terms(0.12345, [("constant", -0.0514), ("whole face", 0.00049)])
    assert terms[0][0] == "regions" and [n for n, _ in terms] == ["regions", "constant"]   # 0.000: not shown
    assert round(sum(v for _, v in terms), 3) == 0.123


@pytest.fixture(scope="module")
def result_and_probe(analyzer):
    from viewdiff.models.checkpoint import load_pretrained
    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip(f"no shipped weights in {SHIPPED}")
    model, _ = load_pretrained(SHIPPED, embedding_dim=512, embedder_fingerprint=analyzer.fingerprint)
    gallery = Gallery(None, "test", 512)
    for name, file in (("Tom Hanks", "identities/Tom_Hanks_54745.png"), ("Group", "t1.jpg")):
        record = analyzer.analyze(REPO / "assets" / file)
        gallery.add(name, record.embedding, maps=record_maps(record), crop=record.aligned_crop)
    gallery.add("Old entry", analyzer.analyze(REPO / "assets" / "identities" / "t1_person3.jpg").embedding)
    probe = analyzer.analyze(REPO / "assets" / "t1_face_yaw55.jpg")
    return PoseEngine(model.eval(), analyzer.feature_maps.head).transform(probe, np.zeros(3, np.float32), gallery), probe


def test_the_numbers_shown_add_up_to_the_score_shown(result_and_probe):
    result, probe = result_and_probe
    for name in ("Group", None):
        fig = explanation_figure(result, probe, name)
        fig.to_figure()
        i = result.names.index(name) if name else result.best
        title = fig.layout["title"]["text"]
        assert result.names[i] in title and f"{result.transformed[i]:.3f}" in title
        sums = [n["text"] for n in fig.layout["annotations"] if "= <b>" in n["text"]]
        for text in sums:   # each panel: its terms add up to its total, as shown
            *terms, total = numbers(text)
            assert round(sum(terms), 3) == total
        assert numbers(sums[0])[-1] == round(float(result.transformed[i]), 3)
        assert numbers(sums[-1])[-1] == round(float(result.transformed[i] - result.raw[i]), 3)
        heat = [t for t in fig.data if t["type"] == "heatmap"]
        np.testing.assert_allclose(np.asarray(heat[0]["z"]), result.explanation.transformed.regions[i])
    assert len(sums) == 3 and len(fig.to_json()) < 40_000   # your face, the gallery face, the turn
    fig = explanation_figure(result, probe, "Old entry")
    assert NO_GALLERY_MAPS in [n["text"] for n in fig.layout["annotations"]]
    assert len([n for n in fig.layout["annotations"] if "= <b>" in n["text"]]) == 2


def test_no_photo_or_no_split_says_why(result_and_probe):
    result, _ = result_and_probe
    assert "Drop in" in explanation_figure(None).layout["annotations"][0]["text"]
    assert "7×7 map" in explanation_figure(replace(result, explanation=None)).layout["annotations"][0]["text"]


def test_the_explanation_shows_a_visitors_name_as_text(analyzer):
    """The split figure's title and the gallery face's label carry the identity's name: escaped like every plot."""
    from viewdiff.models.checkpoint import load_pretrained
    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip(f"no shipped weights in {SHIPPED}")
    model, _ = load_pretrained(SHIPPED, embedding_dim=512, embedder_fingerprint=analyzer.fingerprint)
    hostile = '<a href="https://example.com">click me</a> <img src=x>'
    record = analyzer.analyze(REPO / "assets" / "t1_face_yaw55.jpg")
    gallery = Gallery(None, "test", 512)
    gallery.add(hostile, record.embedding, maps=record_maps(record), crop=record.aligned_crop)
    result = PoseEngine(model.eval(), analyzer.feature_maps.head).transform(record, np.zeros(3, np.float32), gallery)
    text = explanation_figure(result, record, hostile).to_json()
    assert "<a " not in text and "<img" not in text and "&lt;a href" in text


def test_the_voxel_panel_shows_the_measured_surface_turned_with_the_grid(analyzer):
    """A small map model on a turned photo: the slice and the 3D view carry the face's measured surface (the 468
    mesh vertices as moved into the grid) under the keypoints; the caption says what the dots are."""
    from model_test_utils import small_map_model
    probe = analyzer.analyze(REPO / "assets" / "t1_face_yaw55.jpg")
    result = PoseEngine(small_map_model(analyzer.feature_maps.head)).transform(
        probe, np.array([-30, 0, 0], np.float32), Gallery(None, "test", 512))
    panels = Panels(True, None)
    for axis in ("z", "x"):
        fig = panels.voxels(result, ViewOptions(axis=axis, index=3), probe)
        fig.to_figure()
        cloud = [t for t in fig.data if t.get("name", "").startswith("face surface")]
        assert len(cloud) == 1 and len(cloud[0]["x"]) == 468
        assert [t.get("name") for t in fig.data][-3:] == ["eyes", "nose", "mouth corners"]   # drawn over it
    assert cloud[0]["name"] == "face surface" and probe.surface.presence >= 0.5
    fig = panels.voxels(result, ViewOptions(as_3d=True), probe)
    fig.to_figure()
    assert [len(t["x"]) for t in fig.data if t["type"] == "mesh3d"] == [468]
    unsure = panels.voxels(replace(result, surface_presence=0.2), ViewOptions(), probe)
    assert [t["name"] for t in unsure.data if t.get("name", "").startswith("face surface")] == ["face surface (unsure)"]
    assert "measured from the photo" in caption("voxels", "map", 16)


def test_each_panels_caption_says_what_its_parts_measurably_add():
    figures = {"with": 0.93, "without": 0.93, "diff_ci95": [-0.01, 0.01], "wins_ties_losses": [3, 4, 3]}
    evaluation = {"ablations": {"seeds": [0], "parts": [{"part": name, "cfp_fp": figures} for name in
                                                        ("projection", "surface", "lora", "mirror", "adaln")]}}
    voxels, attention = caption("voxels", "map", 16, evaluation), caption("attention", "map", 16, evaluation)
    assert ("the 3D step: no clear difference (0.0 points on CFP, better in 3, worse in 3 of 10 groups)" in voxels
            and "measured surface" in voxels and "attention:" not in voxels)
    assert "pose-aware attention" in attention and "mirror image as a second view" in attention
    assert "modulation" not in voxels + attention   # on the model card only
    assert "None of these clearly helps." in voxels and "None of these" not in caption("voxels", "map", 16)
