"""The region-by-region split of the demo's scores is exact: on real faces through the shipped embedder and
the shipped pose transformer, every split adds up to the score the demo shows (1e-5), both sides and the
pair table agree, and the head's cells are the columns that read them (channel-major flattening)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from viewdiff.demo import explain
from viewdiff.demo.engine import PoseEngine
from viewdiff.demo.gallery import Gallery, record_maps
from viewdiff.embeddings import l2_normalize

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
SHIPPED = REPO / "weights" / "transformer" / "28db0b514695b5c8"
TOL = 1e-5


@pytest.fixture(scope="module")
def faces(analyzer) -> dict:
    """Real records of the asset photos (gallery identities and the example probes)."""
    files = {"hanks": "identities/Tom_Hanks_54745.png", "p3": "identities/t1_person3.jpg",
             "p4": "identities/t1_person4.jpg", "p5": "identities/t1_person5.jpg",
             "astronaut": "astronaut.jpg", "turned": "t1_face_yaw55.jpg", "group": "t1.jpg"}
    return {key: analyzer.analyze(ASSETS / name) for key, name in files.items()}


@pytest.fixture(scope="module")
def head(analyzer) -> explain.HeadCells:
    return explain.HeadCells(*analyzer.feature_maps.head)


@pytest.fixture(scope="module")
def shipped(analyzer):
    from viewdiff.models.checkpoint import load_pretrained
    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip(f"no shipped weights in {SHIPPED}")
    model, _ = load_pretrained(SHIPPED, embedding_dim=analyzer.embedding_dim, embedder_fingerprint=analyzer.fingerprint)
    return model.eval()


def gallery_of(faces: dict) -> Gallery:
    """Identities of 1 and 2 photos, one of them flip-fused, and one entry added without maps (an old gallery's)."""
    g = Gallery(None, "test", 512)

    def add(name, rec, fused=False, maps=True):
        emb = l2_normalize(rec.embedding + rec.embedding_mirror) if fused else rec.embedding
        g.add(name, emb, maps=record_maps(rec) if maps else None, fused=fused, crop=rec.aligned_crop)

    add("Tom Hanks", faces["hanks"])
    add("Two photos", faces["p3"])
    add("Two photos", faces["group"])
    add("Fused", faces["p4"], fused=True)
    add("Fused", faces["p5"])
    add("Astronaut", faces["astronaut"], maps=False)
    return g


def assert_adds_up(split: explain.Split, scores: np.ndarray, rows=slice(None)) -> None:
    assert np.abs(split.total[rows] - scores[rows]).max() < TOL, (split.total, scores)
    parts = sum(split.parts.values())
    assert np.abs(parts[rows] - split.regions[rows]).max() < 1e-6


def test_head_cells_are_the_columns_that_read_each_cell(head, faces):
    """Cell (r, c) of the split is exactly what the head makes of that cell alone (map zero elsewhere)."""
    m = faces["turned"].feature_map
    regions = head.regions(m[None])[0]
    for r, c in ((0, 0), (3, 5), (6, 2)):
        alone = np.zeros_like(m)
        alone[:, r, c] = m[:, r, c]
        np.testing.assert_allclose(regions[r, c], head.embed(alone[None])[0] - head.bias, atol=1e-5)
    np.testing.assert_allclose(regions.sum((0, 1)) + head.bias, head.embed(m[None])[0], atol=1e-4)
    # a mirror image's map flipped back: cell (r, c) is the mirror image's cell (r, 6 - c)
    mm = faces["turned"].feature_map_mirror
    mirrored = head.regions(mm[None], mirrored=True)[0]
    alone = np.zeros_like(mm)
    alone[:, 2, 1] = mm[:, 2, 1]
    np.testing.assert_allclose(mirrored[2, 1], head.embed(alone[None, :, :, ::-1])[0] - head.bias, atol=1e-5)
    # and the map really is what the embedding is made of
    np.testing.assert_allclose(l2_normalize(head.embed(mm[None, :, :, ::-1])[0]), faces["turned"].embedding_mirror,
                               atol=1e-5)


def test_templates_as_means_of_photos_are_map_forms(head, faces):
    """A template of several photos, raw or flip-fused, is one map form: its vector is the template's sum."""
    a, b = faces["p3"], faces["group"]
    fused_b = l2_normalize(b.embedding + b.embedding_mirror)
    form = explain.template_form(head, np.stack([a.feature_map, b.feature_map]),
                                 np.stack([a.feature_map_mirror, b.feature_map_mirror]), np.array([False, True]))
    np.testing.assert_allclose(form.vector(head), a.embedding + fused_b, atol=1e-5)
    np.testing.assert_allclose(form.length(head), np.linalg.norm(a.embedding + fused_b), atol=1e-5)


def test_raw_and_transformed_scores_split_exactly_on_real_faces(analyzer, faces, shipped):
    """The shipped map model at three target poses: each score (raw, transformed; probe side and gallery
    side) is the sum of its terms; the transformer's change is the difference; the pair table's margins are
    the two sides."""
    gallery = gallery_of(faces)
    engine = PoseEngine(shipped, analyzer.feature_maps.head)
    probe = faces["turned"]
    for target in ((0, 0, 0), (-30, 10, 0), tuple(probe.source_pose)):
        result = engine.transform(probe, np.array(target, np.float32), gallery)
        e = result.explanation
        assert e.names == result.names and e.transformed is not None
        assert_adds_up(e.raw, result.raw)
        assert_adds_up(e.transformed, result.transformed)
        assert set(e.transformed.parts) == {explain.PHOTO, explain.MIRROR, explain.CHANGE} and not e.transformed.other
        has_maps = [i for i, n in enumerate(result.names) if n != "Astronaut"]
        assert_adds_up(e.gallery_raw, result.raw, has_maps)
        assert_adds_up(e.gallery_transformed, result.transformed, has_maps)
        i = result.names.index("Astronaut")
        assert np.isnan(e.gallery_raw.regions[i]).all() and "add its photos again" in e.gallery_missing[i]
        assert e.gallery_faces[result.names.index("Tom Hanks")].shape == (112, 112, 3)
        change, constant, other = e.change(0)
        assert abs(change.sum() + constant + sum(other.values()) - (result.transformed[0] - result.raw[0])) < TOL
    # at its own pose the photo is already at the target: the gate is 0 and nothing changes
    assert np.abs(e.transformed.parts[explain.CHANGE]).max() < 1e-6 and abs(result.transformed - result.raw).max() < 1e-5
    # turned to frontal, the model does change the map
    result = engine.transform(probe, np.zeros(3, np.float32), gallery)
    assert np.abs(result.explanation.transformed.parts[explain.CHANGE]).sum() > 1e-3
    # both sides at once
    head = engine.head
    i = result.names.index("Two photos")
    maps = gallery.face_maps("Two photos")
    template = explain.template_form(head, maps["maps"], maps["maps_mirror"], maps["fused"])
    raw_form = explain.photo_form(head, probe.feature_map)
    table, labels = explain.pair_table(head, raw_form, raw_form.length(head), template)
    assert table.shape == (50, 50) and labels[-1] == "constant"
    assert abs(table.sum() - result.raw[i]) < TOL
    np.testing.assert_allclose(table[:49].sum(1).reshape(7, 7), result.explanation.raw.regions[i], atol=TOL)
    np.testing.assert_allclose(table[:, :49].sum(0).reshape(7, 7), result.explanation.gallery_raw.regions[i], atol=TOL)


def test_a_vector_model_keeps_its_change_as_one_named_term(analyzer, faces):
    """A model that reads the embedding vector changes it through no map: that change is its own term."""
    torch.manual_seed(0)
    from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D
    model = EnhancedTransformerDecoderOnly3D(d_model=512, num_layers=1, use_mirror_view=True,
                                             use_pose_gate=True).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.02)   # a fresh head is zero: give the change something to say
    engine = PoseEngine(model, analyzer.feature_maps.head)
    result = engine.transform(faces["turned"], np.zeros(3, np.float32), gallery_of(faces))
    split = result.explanation.transformed
    assert set(split.other) == {explain.VECTOR_CHANGE} and np.abs(split.other[explain.VECTOR_CHANGE]).max() > 1e-4
    assert_adds_up(split, result.transformed)


def test_no_head_or_no_map_means_no_explanation(analyzer, faces):
    gallery = gallery_of(faces)
    assert PoseEngine(None).transform(faces["turned"], np.zeros(3, np.float32), gallery).explanation is None
    result = PoseEngine(None, analyzer.feature_maps.head).transform(faces["turned"], np.zeros(3, np.float32), gallery)
    assert result.explanation.transformed is None
    assert_adds_up(result.explanation.raw, result.raw)
