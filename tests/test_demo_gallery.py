"""Gallery: templates, persistence round trip, per-backend files, default seeding cached once."""

from pathlib import Path

import numpy as np
import pytest

from viewdiff.demo.examples import example_photos
from viewdiff.demo.gallery import Gallery, GalleryError, default_gallery, default_identity_photos, open_gallery

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def unit(*values):
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_add_refine_remove_and_similarities(tmp_path):
    g = Gallery(tmp_path, "dlib", 3)
    g.add("Ada", unit(1, 0, 0))
    g.add("  Bob   Smith ", unit(0, 1, 0))
    assert g.names == ["Ada", "Bob Smith"]
    np.testing.assert_allclose(g.similarities(unit(1, 0, 0)), [1, 0], atol=1e-6)
    entry = g.add("Ada", unit(0, 0, 1))  # a second photo refines the template
    assert entry["count"] == 2
    np.testing.assert_allclose(g.templates[0], unit(1, 0, 1), atol=1e-6)
    np.testing.assert_allclose(g.similarities(np.stack([unit(1, 0, 1), unit(0, 1, 0)])), [[1, 0], [0, 1]], atol=1e-6)
    g.remove("Ada")
    assert g.names == ["Bob Smith"] and g.templates.shape == (1, 3)


@pytest.mark.parametrize("name, embedding, message", [
    ("", unit(1, 0, 0), "name"), ("x" * 81, unit(1, 0, 0), "80"), ("Ada", np.ones(5), "5 dimensions")])
def test_add_rejects_bad_input(tmp_path, name, embedding, message):
    with pytest.raises(GalleryError, match=message):
        Gallery(tmp_path, "dlib", 3).add(name, embedding)


def test_remove_unknown_name(tmp_path):
    with pytest.raises(GalleryError, match="not in the gallery"):
        Gallery(tmp_path, "dlib", 3).remove("nobody")


def test_persistence_round_trip_per_backend(tmp_path):
    g = Gallery(tmp_path, "dlib", 3, {"note": "x"})
    g.add("Ada", unit(1, 2, 3), source="user")
    g.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dlib.json", "dlib.npz"]
    loaded = Gallery.load(tmp_path, "dlib", 3)
    assert loaded.entries == g.entries and loaded.meta == {"note": "x"}
    np.testing.assert_allclose(loaded.templates, g.templates)
    assert Gallery.load(tmp_path, "insightface", 512) is None  # other backend: its own files
    assert Gallery.load(tmp_path, "dlib", 128) is None  # written for another width


def test_in_memory_gallery_and_undo_remove(tmp_path):
    g = Gallery(None, "dlib", 3)
    g.add("Ada", unit(1, 0, 0))
    g.add("Bob", unit(0, 1, 0))
    g.add("Cy", unit(0, 0, 1))
    with pytest.raises(GalleryError, match="memory only"):
        g.save()
    copy = g.copy_to(None)
    g.remove("Bob")
    assert g.last_removed == "Bob" and g.names == ["Ada", "Cy"] and copy.names == ["Ada", "Bob", "Cy"]
    assert g.undo_remove()["name"] == "Bob" and g.names == ["Ada", "Bob", "Cy"]  # back in its place
    np.testing.assert_allclose(g.templates, copy.templates)
    assert g.last_removed is None
    with pytest.raises(GalleryError, match="Nothing to undo"):
        g.undo_remove()


def test_names_match_in_any_case_and_spacing(tmp_path):
    """"alan secret" and "Alan Secret" were two people."""
    g = Gallery(None, "dlib", 3)
    g.add("Alan Secret", unit(1, 0, 0))
    entry = g.add("  alan   SECRET ", unit(0, 1, 0))
    assert g.names == ["Alan Secret"] and entry["count"] == 2   # refined, the first spelling kept
    assert g.find("ALAN secret") == 0 and g.stored_name("alan secret") == "Alan Secret" and g.find("Alan") is None
    g.remove("alan secret")
    assert g.names == [] and g.last_removed == "Alan Secret"


def test_undo_is_a_stack(tmp_path):
    """Undo brought back only the last removal: removals are undone one after another, each to its old place."""
    g = Gallery(None, "dlib", 3)
    for name, v in (("Ada", unit(1, 0, 0)), ("Bob", unit(0, 1, 0)), ("Cy", unit(0, 0, 1))):
        g.add(name, v)
    before = g.templates.copy()
    g.remove("Bob")
    g.remove("Ada")
    g.remove("Cy")
    assert g.names == [] and g.last_removed == "Cy"
    assert [g.undo_remove()["name"] for _ in range(3)] == ["Cy", "Ada", "Bob"]
    assert g.names == ["Ada", "Bob", "Cy"]
    np.testing.assert_allclose(g.templates, before)
    g.remove("Ada")
    g.remove("Bob")
    g.add("ada", unit(1, 1, 0))   # added again: no longer "removed", undo skips it (no second Ada)
    assert g.undo_remove()["name"] == "Bob" and g.last_removed is None
    assert sorted(g.names, key=str.casefold) == ["ada", "Bob", "Cy"]


def test_default_gallery_is_cached_and_persistent_copy_is_separate(tmp_path):
    photos = {"Ada": [Path("a1.jpg"), Path("a2.jpg")], "Bob": [Path("bad.jpg")]}
    calls = []

    def embed(path):
        calls.append(path.name)
        if path.name == "bad.jpg":
            raise ValueError("no face")
        return unit(1, 0, 0) if path.name == "a1.jpg" else unit(0, 1, 0)

    defaults = default_gallery(tmp_path / "defaults", "dlib", 3, photos, embed)
    assert defaults.names == ["Ada"] and defaults.entries[0]["count"] == 2
    assert "bad.jpg" in next(iter(defaults.meta["skipped"]))
    user = open_gallery(tmp_path / "user", defaults)
    user.remove("Ada")
    user.save()
    # the cached defaults are reused (no new embeddings); the saved gallery keeps its removal
    again = default_gallery(tmp_path / "defaults", "dlib", 3, photos, embed)
    assert again.names == ["Ada"] and len(calls) == 3
    assert open_gallery(tmp_path / "user", again).names == []
    # other face models (fingerprint): the cached defaults are rebuilt
    default_gallery(tmp_path / "defaults", "dlib", 3, photos, embed, fingerprint="detector v2")
    assert len(calls) == 6
    assert Gallery.load(tmp_path / "defaults", "dlib", 3).meta["fingerprint"] == "detector v2"


def test_default_identity_photos_are_never_examples():
    photos = default_identity_photos(REPO / "assets" / "identities", SHARED)
    assert photos["Tom Hanks"][0].name == "Tom_Hanks_54745.png"
    assert {"Group photo, person 3", "Group photo, person 6"} <= set(photos)
    examples = {Path(p).resolve() for p in example_photos()}
    assert not examples & {p.resolve() for files in photos.values() for p in files}
    if not (SHARED / "data" / "cfp").is_dir():
        pytest.skip("../shared/data/cfp not present")
    assert len(photos["Tom Hanks"]) == 4  # the asset photo + 3 CFP frontals
    assert all(p.is_file() for files in photos.values() for p in files)
    assert "Pointing'04 person 01" in photos and "50 Cent" in photos


def maps(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4, 7, 7)).astype(np.float32), rng.normal(size=(4, 7, 7)).astype(np.float32)


def test_photos_keep_their_maps_saved_and_read_lazily(tmp_path):
    """Each photo's maps are kept with its identity (through removal and undo, copies and a restart); an
    identity with a photo added without maps has none (it needs re-enrolling)."""
    g = Gallery(tmp_path, "insightface", 3)
    crop = np.full((112, 112, 3), 7, np.uint8)
    g.add("Ada", unit(1, 0, 0), maps=maps(0), crop=crop)
    g.add("Ada", unit(0, 1, 0), maps=maps(1), fused=True)
    g.add("Bob", unit(0, 0, 1), maps=maps(2))
    g.add("Bob", unit(1, 1, 0))   # no maps: Bob's template is no longer known from maps
    g.add("Cy", unit(1, 1, 1))
    kept = g.face_maps("Ada")
    np.testing.assert_array_equal(kept["maps"], np.stack([maps(0)[0], maps(1)[0]]))
    np.testing.assert_array_equal(kept["maps_mirror"][1], maps(1)[1])
    assert kept["fused"].tolist() == [False, True] and (kept["crop"] == 7).all()
    assert g.face_maps("Bob") is None and g.face_maps("Cy") is None
    with pytest.raises(GalleryError, match="not in the gallery"):
        g.face_maps("Nobody")
    key = g.maps_key("Ada")
    g.remove("Ada")
    g.undo_remove()
    assert g.maps_key("Ada") == key and g.face_maps("Ada")["maps"].shape == (2, 4, 7, 7)
    assert g.copy_to(None).face_maps("Ada")["fused"].tolist() == [False, True]
    g.save()
    loaded = Gallery.load(tmp_path, "insightface", 3)
    assert loaded._maps == {} and loaded._maps_file is not None   # not read before it is needed
    np.testing.assert_array_equal(loaded.face_maps("Ada")["maps_mirror"], kept["maps_mirror"])
    loaded.add("Ada", unit(0, 0, 1), maps=maps(3))
    assert loaded.maps_key("Ada") == (key[0], 3) and len(loaded.face_maps("Ada")["maps"]) == 3


def test_a_gallery_saved_without_maps_still_loads(tmp_path):
    g = Gallery(tmp_path, "insightface", 3)
    g.add("Ada", unit(1, 0, 0))
    g.save()
    assert not g.maps_path.exists()
    loaded = Gallery.load(tmp_path, "insightface", 3)
    assert loaded.names == ["Ada"] and loaded.face_maps("Ada") is None and loaded.maps_key("Ada") is None
    loaded.add("Eve", unit(0, 1, 0), maps=maps(0))
    loaded.save()
    assert Gallery.load(tmp_path, "insightface", 3).face_maps("Eve")["maps"].shape == (1, 4, 7, 7)


def test_default_gallery_keeps_the_maps_of_its_photos(tmp_path):
    """embed() may give a FaceRecord: its maps and crop are kept; a cache from before maps were kept is rebuilt."""
    from types import SimpleNamespace

    from viewdiff.demo.gallery import build_gallery

    def record(path):
        m, mm = maps(len(str(path)))
        return SimpleNamespace(embedding=unit(1, 2, 3), embedding_mirror=unit(3, 2, 1), feature_map=m,
                               feature_map_mirror=mm, aligned_crop=np.zeros((112, 112, 3), np.uint8))

    photos = {"Ada": [Path("a.jpg"), Path("bb.jpg")]}
    old = build_gallery(tmp_path, "insightface", 3, photos, lambda path: unit(1, 2, 3))
    old.meta.pop("maps_kept")
    old.save()
    defaults = default_gallery(tmp_path, "insightface", 3, photos, record)
    np.testing.assert_array_equal(defaults.face_maps("Ada")["maps"][1], maps(len("bb.jpg"))[0])
    assert Gallery.load(tmp_path, "insightface", 3).face_maps("Ada")["maps"].shape == (2, 4, 7, 7)
    # every photo enters flip-fused (the demo's protocol): the template is the photo's and its mirror's mean
    np.testing.assert_allclose(defaults.templates[0], unit(4, 4, 4), atol=1e-6)
    assert defaults.face_maps("Ada")["fused"].all() and defaults.meta["templates"] == "flip_fused"
