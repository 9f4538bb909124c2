"""Shared fixtures: the team data beside the repo and a small real face-record cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from viewdiff.paths import shared_dir

DATA_ROOT = shared_dir() / "data"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Small tensors on a shared 2-core machine: one torch thread (two were up to 50x slower)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "cfp").is_dir() or not (DATA_ROOT / "pointing04").is_dir():
        pytest.skip(f"team data not found at {DATA_ROOT} (clone the project beside ../shared)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def analyzer():
    """One default FaceAnalyzer (the shipped SCRFD + ArcFace pack) for the session."""
    from viewdiff.faces.analyzer import FaceAnalyzer
    return FaceAnalyzer()


@pytest.fixture(scope="session")
def small_cache(tmp_path_factory, data_root, analyzer) -> Path:
    """Real records: 10 CFP identities (one per CFP-FP fold) and one Pointing'04 person (default backend)."""
    from viewdiff.training.records import extract_records
    cache = tmp_path_factory.mktemp("cache")
    extract_records("cfp", data_root, analyzer, cache, max_identities=10, progress=False)
    extract_records("pointing04", data_root, analyzer, cache, max_identities=1, progress=False)
    return cache


P04_PANS = (-90, -45, 0, 45, 90)


def p04_subset(item) -> bool:
    """Pointing'04: tilt 0, pan in P04_PANS (both series): 10 photos of a person."""
    yaw, pitch, _ = item.true_pose
    return pitch == 0 and yaw in P04_PANS


@pytest.fixture(scope="session")
def tiny_extracted(tmp_path_factory, data_root, analyzer):
    """(cache_dir, cfp records, cfp stats, p04 records, p04 stats, analyses run) of a tiny real subset:
    2 CFP identities and 10 Pointing'04 photos of one person (`p04_subset`)."""
    from viewdiff.training.records import extract_records
    cache = tmp_path_factory.mktemp("tiny_cache")
    before = analyzer.calls
    cfp, cfp_stats = extract_records("cfp", data_root, analyzer, cache, max_identities=2, progress=False)
    p04, p04_stats = extract_records("pointing04", data_root, analyzer, cache, max_identities=1, progress=False,
                                     select=p04_subset)
    return cache, cfp, cfp_stats, p04, p04_stats, analyzer.calls - before


ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _asset_rgb(name: str, size: tuple[int, int] | None = None):
    from PIL import Image
    image = Image.open(ASSETS / name).convert("RGB")
    return np.asarray(image.resize(size) if size else image)


@pytest.fixture(scope="session")
def asset_rgb():
    """A shipped asset photo as an RGB array, optionally resized: what a camera frame is."""
    return _asset_rgb


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The demo service with the shipped face pack and transformer and a one-person default gallery (the live
    camera's tests; test_demo_service.py has its own)."""
    import torch

    from viewdiff.demo.service import DemoService
    threads = torch.get_num_threads()
    svc = DemoService.load("insightface", None, None, tmp_path_factory.mktemp("defaults"),
                           {"Tom Hanks": [ASSETS / "identities" / "Tom_Hanks_54745.png"]})
    yield svc
    torch.set_num_threads(threads)


@pytest.fixture()
def frontal():
    """The astronaut, frontal, as a 640 x 640 camera frame."""
    return _asset_rgb("astronaut.jpg", (640, 640))

