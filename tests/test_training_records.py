"""Face records on the real CFP / Pointing'04 files: labels, official folds, cached extraction.

Extraction runs the default backend on a tiny real subset (conftest's `tiny_extracted`: 2 CFP
identities, 10 Pointing'04 photos) into a temporary cache; the whole file takes well under two minutes of CPU.
"""
from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from viewdiff.faces.analyzer import FaceAnalyzer
from viewdiff.paths import shared_dir
from viewdiff.training.listings import P04_NAME, cfp_identity_folds, folder_fold, list_cfp, list_pointing04
from viewdiff.training.records import extract_records, load_records

from conftest import P04_PANS, p04_subset

DATA = shared_dir() / "data"
HAVE_DATA = (DATA / "cfp").is_dir() and (DATA / "pointing04").is_dir()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason=f"team data not found at {DATA} (clone beside ../shared)")



class CountingAnalyzer:
    """Wraps a FaceAnalyzer: counts calls and can pretend to be another model (describe)."""

    def __init__(self, inner: FaceAnalyzer, **extra):
        self.inner, self.extra, self.calls = inner, extra, 0
        self.backend, self.embedding_dim, self.fingerprint = inner.backend, inner.embedding_dim, inner.fingerprint

    def describe(self) -> dict:
        return {**self.inner.describe(), **self.extra}

    def analyze(self, image):
        self.calls += 1
        return self.inner.analyze(image)


@pytest.fixture(scope="module")
def fa(analyzer) -> FaceAnalyzer:
    return analyzer


# ----------------------------------------------------------------------------- listings

def test_pointing04_names_parse_to_true_pose(tmp_path):
    person = tmp_path / "pointing04" / "Person07"
    person.mkdir(parents=True)
    names = {"person07100-90+0.jpg": (0, -90), "person07146+0+0.jpg": (0, 0), "person07140+0-90.jpg": (-90, 0),
             "person07252+0+90.jpg": (90, 0), "person07201-60-75.jpg": (-75, -60), "person07185+60+15.jpg": (15, 60)}
    for name in names:
        (person / name).write_bytes(b"")
        (person / name.replace(".jpg", ".txt")).write_text("face box")
    (person / "notes.jpg").write_bytes(b"")   # not a Pointing'04 name: ignored
    items = list_pointing04(tmp_path)
    assert sorted(i.path.name for i in items) == sorted(names)
    for item in items:
        yaw, pitch = names[item.path.name]
        assert item.true_pose == (yaw, pitch, 0.0)   # yaw = pan, pitch = tilt (degrees)
        assert (item.identity, item.view, item.fold) == ("p04_07", "pose", 0)
    series = {P04_NAME.match(i.path.name).group(2) for i in items}
    assert series == {"1", "2"}


@needs_data
def test_pointing04_listing_covers_the_pose_grid():
    items = list_pointing04(DATA, max_identities=2)
    assert len(items) == 2 * 2 * 93 and {i.identity for i in items} == {"p04_01", "p04_02"}
    poses = {(i.true_pose[0], i.true_pose[1]) for i in items}
    pans, tilts = range(-90, 91, 15), (-60, -30, -15, 0, 15, 30, 60)
    assert poses == {(float(p), float(t)) for p in pans for t in tilts} | {(0.0, -90.0), (0.0, 90.0)}
    # the annotation beside each photo agrees that it is that file
    item = next(i for i in items if i.path.name == "person01146+0+0.jpg")
    assert item.true_pose == (0.0, 0.0, 0.0)
    assert item.path.with_suffix(".txt").read_text().split()[0] == item.path.name


@needs_data
def test_cfp_folds_follow_the_official_protocol():
    root = DATA / "cfp"
    folds = cfp_identity_folds(root)
    assert len(folds) == 500 and set(folds.values()) == set(range(1, 11))
    by_fold = {k: {i for i, f in folds.items() if f == k} for k in range(1, 11)}
    assert all(len(ids) == 50 for ids in by_fold.values())
    assert all(not (a & b) for a, b in itertools.combinations(by_fold.values(), 2))
    # every official pair of fold k (same and diff) involves only identities of fold k
    frontal = [line.split()[1] for line in (root / "Protocol" / "Pair_list_F.txt").read_text().splitlines() if line.strip()]
    profile = [line.split()[1] for line in (root / "Protocol" / "Pair_list_P.txt").read_text().splitlines() if line.strip()]
    for k in range(1, 11):
        for kind in ("same", "diff"):
            for pair in (root / "Protocol" / "Split" / "FP" / f"{k:02d}" / f"{kind}.txt").read_text().split():
                i, j = (int(v) for v in pair.split(","))
                a, b = Path(frontal[i - 1]).parts[-3], Path(profile[j - 1]).parts[-3]
                assert folds[a] == k and folds[b] == k
                assert (a == b) == (kind == "same")


@needs_data
def test_cfp_listing_subset_spreads_over_folds():
    items = list_cfp(DATA, max_identities=10)
    assert len(items) == 10 * 14
    assert sorted({i.fold for i in items}) == list(range(1, 11))   # one identity per fold
    for ident in {i.identity for i in items}:
        views = [i.view for i in items if i.identity == ident]
        assert views.count("frontal") == 10 and views.count("profile") == 4
    assert all(np.isnan(i.true_pose).all() for i in items)


# ----------------------------------------------------------------------------- extraction + cache

@needs_data
def test_extraction_counts_and_records(tiny_extracted, fa):
    cache, cfp, cfp_stats, p04, p04_stats, calls = tiny_extracted
    assert cfp_stats["images"] == cfp_stats["analysed"] == len(cfp) == 28
    assert p04_stats["images"] == p04_stats["analysed"] == len(p04) == 10
    assert calls == 38
    for recs, stats in ((cfp, cfp_stats), (p04, p04_stats)):
        assert stats["no_face"] == int((~recs.found).sum()) == len(stats["no_face_paths"])
        assert set(stats["no_face_paths"]) == set(recs.path[~recs.found])
        assert recs.found.mean() >= 0.8
        norms = np.linalg.norm(recs.embedding, axis=1)
        np.testing.assert_allclose(norms[recs.found], 1, atol=1e-5)
        assert (norms[~recs.found] == 0).all()
        assert recs.embedding.shape[1] == fa.embedding_dim == 512 and recs.keypoints_3d.shape[1:] == (5, 3)
        np.testing.assert_allclose(np.linalg.norm(recs.embedding_mirror[recs.found], axis=1), 1, atol=1e-5)
        assert recs.pose_features.shape[1] == 7 and recs.fingerprint == fa.fingerprint
        assert all((DATA / p).is_file() for p in recs.path)   # paths are relative to the data root
    assert Path(cfp_stats["cache"]) == cache / "insightface" / "cfp.npz" and Path(cfp_stats["cache"]).is_file()
    assert len(set(cfp.identity)) == 2 and len(set(cfp.fold)) == 2 and set(cfp.view) == {"frontal", "profile"}
    assert np.isnan(cfp.true_pose).all()
    assert set(p04.identity) == {"p04_01"} and (p04.fold == 0).all() and set(p04.view) == {"pose"}
    assert sorted(set(p04.true_pose[:, 0].tolist())) == list(P04_PANS) and (p04.true_pose[:, 1:] == 0).all()
    # the estimated yaw has the sign of the true pan for the turned heads that were found
    turned = p04.found & (np.abs(p04.true_pose[:, 0]) >= 45)
    assert (np.sign(p04.source_pose[turned, 0]) == np.sign(p04.true_pose[turned, 0])).all()


@needs_data
def test_rerun_hits_the_cache(tiny_extracted, fa):
    cache, cfp, _, p04, _, _ = tiny_extracted
    before = fa.calls
    cfp2, stats = extract_records("cfp", DATA, fa, cache, max_identities=2, progress=False)
    p04_2, stats2 = extract_records("pointing04", DATA, fa, cache, max_identities=1, progress=False,
                                    select=p04_subset)
    assert fa.calls == before and stats["analysed"] == 0 and stats2["analysed"] == 0
    for a, b in ((cfp, cfp2), (p04, p04_2)):
        np.testing.assert_array_equal(a.embedding, b.embedding)
        np.testing.assert_array_equal(a.path, b.path)
        np.testing.assert_array_equal(a.found, b.found)
    # a smaller selection is served from the cache and keeps the other rows in it
    front, stats3 = extract_records("pointing04", DATA, fa, cache, max_identities=1, progress=False,
                                    select=lambda item: p04_subset(item) and item.true_pose[0] == 0)
    assert fa.calls == before and stats3["analysed"] == 0 and len(front) == 2
    assert len(load_records(cache, "pointing04", "insightface")) == 10
    full = load_records(cache, "cfp", "insightface")
    assert list(full.path) == sorted(cfp.path)


@needs_data
def test_cache_is_invalidated_by_another_model(tiny_extracted, fa, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(tiny_extracted[0], cache)
    other = CountingAnalyzer(fa, recognition="another model")
    _, stats = extract_records("pointing04", DATA, other, cache, max_identities=1, progress=False,
                               select=p04_subset)
    assert other.calls == 10 and stats["analysed"] == 10
    same = CountingAnalyzer(fa)   # the original description: its rows were replaced, so analysed again
    extract_records("pointing04", DATA, same, cache, max_identities=1, progress=False, select=p04_subset)
    assert same.calls == 10
    extract_records("pointing04", DATA, same, cache, max_identities=1, progress=False, select=p04_subset)
    assert same.calls == 10


@needs_data
def test_cache_is_keyed_by_file_content(fa, tmp_path):
    person = tmp_path / "data" / "pointing04" / "Person01"
    person.mkdir(parents=True)
    names = ["person01146+0+0.jpg", "person01148+0+30.jpg", "person01144+0-30.jpg"]
    for name in names:
        shutil.copyfile(DATA / "pointing04" / "Person01" / name, person / name)
    counting = CountingAnalyzer(fa)
    first, _ = extract_records("pointing04", tmp_path / "data", counting, tmp_path / "cache", progress=False)
    assert counting.calls == 3
    shutil.copyfile(DATA / "pointing04" / "Person01" / "person01150+0+60.jpg", person / names[1])   # new content
    second, stats = extract_records("pointing04", tmp_path / "data", counting, tmp_path / "cache", progress=False)
    assert counting.calls == 4 and stats["analysed"] == 1
    changed = list(second.path).index(f"pointing04/Person01/{names[1]}")
    assert not np.allclose(first.embedding[changed], second.embedding[changed])


def test_extraction_errors(fa, tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        extract_records("lfw", tmp_path, fa, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="data_root"):
        extract_records("cfp", tmp_path, fa, tmp_path / "cache")
    (tmp_path / "pointing04").mkdir()
    with pytest.raises(ValueError, match="no pointing04 images"):
        extract_records("pointing04", tmp_path, fa, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="python -m viewdiff.training.extract"):
        load_records(tmp_path / "cache", "cfp", "dlib")


@needs_data
def test_an_interrupted_extraction_keeps_its_work_and_resumes(fa, tmp_path, monkeypatch):
    """The cache is written every SAVE_EVERY analysed images: a crash loses at most that many."""
    from viewdiff.training import records as records_module
    monkeypatch.setattr(records_module, "SAVE_EVERY", 3)

    class Crashing(CountingAnalyzer):
        def analyze(self, image):
            if self.calls == 7:
                raise KeyboardInterrupt   # the user presses Ctrl-C during the 8th photo
            return super().analyze(image)

    crashing = Crashing(fa)
    with pytest.raises(KeyboardInterrupt):
        extract_records("pointing04", DATA, crashing, tmp_path, max_identities=1, progress=False, select=p04_subset)
    assert len(load_records(tmp_path, "pointing04", "insightface")) == 6   # saved after the 3rd and 6th photo
    resumed = CountingAnalyzer(fa)
    records, stats = extract_records("pointing04", DATA, resumed, tmp_path, max_identities=1, progress=False,
                                     select=p04_subset)
    assert resumed.calls == stats["analysed"] == 4 and len(records) == 10


def test_old_cache_versions_ask_for_a_new_extraction(tmp_path):
    import json
    (tmp_path / "insightface").mkdir()
    np.savez(tmp_path / "insightface" / "cfp.npz", meta=json.dumps({"version": 1}), path=np.array(["x"]))
    with pytest.raises(FileNotFoundError, match="older version.*python -m viewdiff.training.extract"):
        load_records(tmp_path, "cfp", "insightface")


# ----------------------------------------------------------------------------- folder datasets
CPLFW = DATA / "cplfw_train" / "images"
needs_cplfw = pytest.mark.skipif(not CPLFW.is_dir(), reason=f"{CPLFW} not found (clone beside ../shared)")


def test_dataset_specs(tmp_path):
    from viewdiff.training.listings import dataset_name, resolve_dataset
    assert resolve_dataset("cfp", tmp_path).root == tmp_path
    cplfw = resolve_dataset("cplfw_train", tmp_path)
    assert cplfw.photos == tmp_path / "cplfw_train" / "images" and cplfw.name == "cplfw_train"
    one, two = (tmp_path / "a" / "faces", tmp_path / "b" / "faces")
    assert dataset_name(f"folder:{one}") != dataset_name(f"folder:{two}")   # same folder name, other caches
    assert dataset_name(f"folder:{one}").startswith("folder-faces-")
    assert resolve_dataset(f"folder:{one}", tmp_path).photos == one.resolve()
    for bad in ("lfw", "folder:", "cfp_fp"):
        with pytest.raises(ValueError, match="unknown dataset .*folder:PATH"):
            resolve_dataset(bad, tmp_path)


@needs_cplfw
def test_a_folder_dataset_is_extracted_in_parallel_with_its_misses_counted(fa, tmp_path):
    """Any <root>/<person>/<photo> tree: real in-the-wild crops (230 px, face filling the frame) are found, a photo
    without a face and a file that is no image are counted as misses, and two processes give the one-process rows."""
    import functools
    root = tmp_path / "my faces"
    for person in sorted(p.name for p in CPLFW.iterdir())[:2]:
        shutil.copytree(CPLFW / person, root / person)
    (root / "Nobody").mkdir()
    shutil.copy(Path(__file__).parents[1] / "assets" / "cat_no_face.jpg", root / "Nobody" / "cat.jpg")
    (root / "Nobody" / "notes.jpg").write_text("not an image")
    (root / "loose.jpg").write_text("a photo outside any person's folder is not listed")
    spec = f"folder:{root}"
    serial, stats = extract_records(spec, DATA, fa, tmp_path / "one", progress=False)
    assert stats["images"] == len(serial) == stats["analysed"] and stats["no_face"] == 2
    assert sorted(stats["no_face_paths"]) == ["Nobody/cat.jpg", "Nobody/notes.jpg"]
    assert serial.found.sum() == len(serial) - 2 >= 4   # every cplfw crop is found
    assert set(serial.view) == {"photo"} and np.isnan(serial.true_pose).all()
    assert list(serial.fold) == [folder_fold(i) for i in serial.identity]   # a fold of its own per person
    assert all(i.startswith(f"{stats['name']}:") for i in serial.identity) and len(set(serial.identity)) == 3
    make = functools.partial(FaceAnalyzer)
    parallel, pstats = extract_records(spec, DATA, fa, tmp_path / "two", progress=False, jobs=2, make_analyzer=make)
    assert pstats["analysed"] == len(parallel) == len(serial)
    assert list(parallel.path) == list(serial.path) and (parallel.found == serial.found).all()
    np.testing.assert_allclose(parallel.embedding, serial.embedding, atol=1e-4)
    np.testing.assert_allclose(parallel.keypoints, serial.keypoints, atol=1e-2)
    loaded = load_records(tmp_path / "two", spec, "insightface")
    assert list(loaded.path) == list(serial.path)
    with pytest.raises(ValueError, match="make_analyzer"):
        extract_records(spec, DATA, fa, tmp_path / "three", progress=False, jobs=2)


def test_extra_training_identities_that_are_cfp_people_are_refused(tiny_extracted):
    from viewdiff.training.listings import cfp_names, refuse_shared_identities
    cfp = tiny_extracted[1]
    names = cfp_names(DATA)
    extra = cfp.subset(np.arange(3))
    refuse_shared_identities(extra.subset(np.arange(0)), DATA)   # nothing shared: no error
    person = names[cfp.identity[0]]
    extra.identity = np.array([f"cplfw_train:{person.replace(' ', '_').upper()}"] * 3)
    with pytest.raises(ValueError, match=f"1 identities of the extra training data are CFP people .*{cfp.identity[0]}"):
        refuse_shared_identities(extra, DATA)


@needs_cplfw
def test_a_folder_datasets_people_are_spread_over_ten_folds_by_their_name():
    """A folder dataset's fold comes from its identity's name alone (crc32): stable whatever else is listed, and
    cplfw_train's 1,605 people fall about evenly in folds 1..10, so each fold model leaves a tenth of them out."""
    assert folder_fold("cplfw_train:Aaron_Peirsol") == folder_fold("cplfw_train:Aaron_Peirsol")
    people = sorted(p.name for p in CPLFW.iterdir() if p.is_dir())
    counts = np.bincount([folder_fold(f"cplfw_train:{p}") for p in people], minlength=11)
    assert counts[0] == 0 and (counts[1:] > 0.07 * len(people)).all() and (counts[1:] < 0.13 * len(people)).all()
