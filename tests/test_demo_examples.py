"""The demo's example photos: committed assets with captions, local Pointing'04 copies."""
from __future__ import annotations

from pathlib import Path

import pytest

from viewdiff.demo import examples as demo_examples
from viewdiff.paths import REPO_ROOT, shared_dir

ASSETS = REPO_ROOT / "assets"


def test_example_photos_are_the_committed_assets():
    examples = [Path(p) for p in demo_examples.example_photos()]
    committed = [p for p in examples if p.parent == ASSETS]
    assert [p.name for p in committed] == list(demo_examples.EXAMPLE_LABELS)
    assert all(p.is_file() for p in examples)
    assert demo_examples.example_label(str(ASSETS / "t1.jpg")) == "6 faces: the largest is used"
    assert demo_examples.example_label("assets/local/pointing04_person01_yaw60.jpg") == "Pointing'04, yaw 60° (local)"


def test_populate_assets_from_shared(tmp_path):
    if not (shared_dir() / "data" / "pointing04").is_dir():
        pytest.skip("../shared/data/pointing04 not present")
    copied = demo_examples.populate_assets_from_shared(target=tmp_path)
    assert sorted(p.name for p in copied) == sorted(demo_examples.POINTING04_EXAMPLES)
    assert all(p.stat().st_size > 1000 for p in copied)
