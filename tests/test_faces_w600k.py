"""The shipped w600k_mbf pack: its ONNX is the TFLite file converted by scripts/convert_w600k_mbf.py, and it
computes what the TFLite file computes, on real faces."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from viewdiff.embeddings import l2_normalize
from viewdiff.faces.analyzer import FaceAnalyzer
from viewdiff.paths import shared_dir

REPO = Path(__file__).resolve().parent.parent
PACK = REPO / "weights" / "insightface" / "w600k_mbf"
TFLITE = shared_dir() / "models" / "w600k_mbf" / "w600k_mbf.tflite"
CFP = shared_dir() / "data" / "cfp" / "Data" / "Images"
needs_tflite = pytest.mark.skipif(not TFLITE.is_file(), reason=f"the TFLite file is not at {TFLITE}")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def listed_sha256(name: str) -> str:
    return next(line.split()[0] for line in (PACK / "SHA256SUMS").read_text().splitlines() if line.endswith(name))


@pytest.fixture(scope="module")
def fa() -> FaceAnalyzer:
    return FaceAnalyzer()


@needs_tflite
def test_conversion_reproduces_the_shipped_file():
    data = load_script("convert_w600k_mbf").convert(TFLITE).SerializeToString()
    assert hashlib.sha256(data).hexdigest() == listed_sha256("w600k_mbf.onnx")


def test_insightface_loads_it_as_an_arcface_recognition_model(fa):
    rec = fa._impl.recognition
    assert type(rec).__name__ == "ArcFaceONNX" and rec.output_shape[1] == 512 == fa.embedding_dim
    # the ArcFace input normalisation; node names starting "Sub"/"Mul" would make insightface skip it
    assert (rec.input_mean, rec.input_std) == (127.5, 127.5) and rec.input_size == (112, 112)
    assert fa.fingerprint == listed_sha256("w600k_mbf.onnx")[:16]


@needs_tflite
def test_onnx_computes_what_the_tflite_computes_on_real_faces(fa):
    """Real aligned faces: the ONNX against LiteRT's default kernels. LiteRT also rounds activations to int8 at
    run time, so the two agree to ~0.998 (LiteRT's own kernel sets agree among themselves no better); a
    wrong op, layout or weight scale drops the cosine far below (a different face scores ~0)."""
    check = load_script("check_w600k_mbf")
    photos = sorted(REPO.glob("assets/*.jpg")) + sorted(REPO.glob("assets/identities/*"))
    photos += sorted(CFP.glob("00[1-4]/*/01.jpg")) if CFP.is_dir() else []
    crops = []
    for path in photos:
        try:
            crops.append(fa.analyze(path).aligned_crop)
        except Exception:   # the no-face example
            continue
    crops = np.stack(crops)
    assert len(crops) >= 8
    onnx, lite = check.onnx_embed(crops), check.litert_embed(crops)
    same = check.cosines(onnx, lite)
    assert same.mean() >= 0.996 and same.min() >= 0.99, same
    cross = l2_normalize(onnx) @ l2_normalize(lite).T
    assert np.max(cross[~np.eye(len(crops), dtype=bool)]) < 0.9   # and only with the same face


def test_the_pack_embeds_its_own_crop_the_same_way(fa):
    """The embedding of a record equals the ONNX run on its aligned crop (the cache keeps crops for that)."""
    check = load_script("check_w600k_mbf")
    rec = fa.analyze(REPO / "assets" / "astronaut.jpg")
    assert rec.aligned_crop.shape == (112, 112, 3)
    again = l2_normalize(check.onnx_embed(rec.aligned_crop[None]))[0]
    assert float(again @ rec.embedding) > 0.9999
