"""The package stays light and keeps its public names: lazy top-level exports, no heavy import for a path."""
from __future__ import annotations

import subprocess
import sys

import pytest

import viewdiff
from viewdiff.models.transformer import EnhancedTransformerDecoderOnly3D
from viewdiff.paths import REPO_ROOT

HEAVY = ("torch", "cv2", "insightface", "gradio")


def run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_import_viewdiff_is_light_and_exports_resolve_lazily():
    run(f"import viewdiff, sys; assert not any(m in sys.modules for m in {HEAVY!r}), sys.modules.keys(); "
        "from viewdiff import FaceAnalyzer, load_pretrained, EnhancedTransformerDecoderOnly3D")


def test_paths_import_no_face_or_model_libraries():
    run(f"import sys; from viewdiff.paths import shared_dir; from viewdiff.faces.records import FaceRecord; "
        f"from viewdiff.faces.errors import FaceAnalysisError; "
        f"assert not any(m in sys.modules for m in {HEAVY!r}), [m for m in {HEAVY!r} if m in sys.modules]")


def test_every_public_name_is_exported():
    for name in viewdiff.__all__:
        assert getattr(viewdiff, name).__module__.startswith("viewdiff."), name
    assert viewdiff.EnhancedTransformerDecoderOnly3D is EnhancedTransformerDecoderOnly3D
    with pytest.raises(AttributeError):
        viewdiff.NoSuchThing


def test_models_import_nothing_else_of_the_package():
    run("import sys, viewdiff.models.checkpoint, viewdiff.models.config; "
        "extra = sorted(m for m in sys.modules if m.startswith('viewdiff.') and not m.startswith('viewdiff.models') "
        "and m != 'viewdiff.paths'); assert not extra, extra")


def test_no_module_is_longer_than_450_lines():
    lengths = {p.relative_to(REPO_ROOT): len(p.read_text().splitlines()) for p in (REPO_ROOT / "viewdiff").rglob("*.py")}
    assert max(lengths.values()) <= 450, {p: n for p, n in lengths.items() if n > 450}
