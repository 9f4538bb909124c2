"""Check the converted face-mesh ONNX against the TFLite file's own outputs (LiteRT) on real faces.

    python scripts/check_face_mesh.py [--cache_dir data/cache] [--n 200]

Takes `--n` faces spread over CFP (frontal and profile) and Pointing'04 from the records caches
(`python -m viewdiff.training.extract`), builds each face's 192 x 192 mesh crop from its cached keypoints
(`viewdiff.faces.face_mesh.FaceMesh.crop`), runs the shipped ONNX (onnxruntime, one thread) and the TFLite file
(``ai-edge-litert``, a dev dependency, its default XNNPACK kernels) and prints the max / mean landmark
difference (pixels of the 192 crop, x, y and z) and the max presence difference (logit and sigmoid).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from viewdiff.faces.face_mesh import FaceMesh  # noqa: E402
from viewdiff.faces.images import load_image  # noqa: E402
from viewdiff.paths import shared_dir  # noqa: E402

TFLITE = shared_dir() / "models/face_mesh/face_landmark.tflite"


def litert_run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """crops [N, 192, 192, 3] -> (landmarks [N, 468, 3], presence logit [N]) by the TFLite file (LiteRT)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(TFLITE), num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    outs = {d["name"]: d["index"] for d in it.get_output_details()}
    marks, logits = [], []
    for x in crops:
        it.set_tensor(inp, np.ascontiguousarray(x[None], np.float32))
        it.invoke()
        marks.append(it.get_tensor(outs["conv2d_21"]).reshape(468, 3).copy())
        logits.append(float(it.get_tensor(outs["conv2d_31"]).reshape(-1)[0]))
    return np.stack(marks), np.array(logits)


def compare(mesh: FaceMesh, crops: np.ndarray) -> dict[str, float]:
    """ONNX vs LiteRT on the crops: max / mean landmark difference (px) and max presence differences."""
    onnx_marks, onnx_logit = mesh.run(crops)
    lite_marks, lite_logit = litert_run(crops)
    diff = np.abs(onnx_marks - lite_marks)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    return {"max_px": float(diff.max()), "mean_px": float(diff.mean()),
            "max_logit": float(np.abs(onnx_logit - lite_logit).max()),
            "max_presence": float(np.abs(sig(onnx_logit) - sig(lite_logit)).max())}


def main(argv: list[str] | None = None) -> int:
    from viewdiff.training.records import load_records
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache_dir", default="data/cache")
    p.add_argument("--n", type=int, default=200, help="faces compared (a third each: CFP frontal, CFP profile, "
                   "Pointing'04)")
    args = p.parse_args(argv)
    if not TFLITE.is_file():
        print(f"error: {TFLITE} not found (the shared models folder)", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    mesh, crops = FaceMesh(), []
    for dataset, view in (("cfp", "frontal"), ("cfp", "profile"), ("pointing04", None)):
        r = load_records(args.cache_dir, dataset, "insightface")
        idx = np.flatnonzero(r.found & ((r.view == view) if view else True))
        for i in np.sort(rng.choice(idx, min(len(idx), args.n // 3), replace=False)):
            crops.append(mesh.crop(load_image(shared_dir() / "data" / r.path[i]), r.keypoints[i]))
    figures = compare(mesh, np.stack(crops))
    print(f"{len(crops)} real faces (CFP frontal + profile, Pointing'04), ONNX vs LiteRT XNNPACK: landmarks max "
          f"{figures['max_px']:.4f} px, mean {figures['mean_px']:.5f} px (of the 192 crop); presence logit max "
          f"{figures['max_logit']:.4f}, sigmoid max {figures['max_presence']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
