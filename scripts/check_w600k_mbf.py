"""Check the converted w600k_mbf ONNX against the TFLite file's own outputs (LiteRT) on real aligned faces.

    python scripts/check_w600k_mbf.py [--cache_dir data/cache] [--n 400] [--cfp_fp]

Reads the aligned 112x112 crops of the extraction cache (`python -m viewdiff.training.extract`), runs the
shipped ONNX (onnxruntime) and the TFLite file (``ai-edge-litert``, a dev dependency: requirements-dev.txt)
with its default XNNPACK kernels and its built-in kernels, and prints the mean / minimum cosine between
each pair of them on `--n` faces spread over CFP and Pointing'04. With ``--cfp_fp`` it also embeds every
CFP crop with LiteRT and prints raw CFP-FP accuracy, TAR @ FAR 1% / 0.1% and rank-1 for both models.
One thread each (`taskset` not needed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from viewdiff.embeddings import l2_normalize  # noqa: E402
from viewdiff.faces.feature_map import prepare  # noqa: E402  (ArcFaceONNX's input normalisation)
from viewdiff.paths import shared_dir  # noqa: E402
from viewdiff.training.records import load_crops, load_records  # noqa: E402

ONNX = REPO_ROOT / "weights/insightface/w600k_mbf/w600k_mbf.onnx"
TFLITE = shared_dir() / "models/w600k_mbf/w600k_mbf.tflite"


def onnx_embed(crops: np.ndarray, batch: int = 64) -> np.ndarray:
    """The shipped file as it is (a plain session, one thread): embeddings [N, 512]."""
    import onnxruntime
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(ONNX), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: prepare(crops[i:i + batch])})[0]
                           for i in range(0, len(crops), batch)])


def litert_embed(crops: np.ndarray, builtin: bool = False) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kind = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if builtin else OpResolverType.AUTO
    it = Interpreter(model_path=str(TFLITE), num_threads=1, experimental_op_resolver_type=kind)
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    it.allocate_tensors()
    rows = []
    for x in prepare(crops):
        it.set_tensor(inp, x[None])
        it.invoke()
        rows.append(it.get_tensor(out)[0].copy())
    return np.stack(rows)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=1)


def cfp_fp_figures(cfp, emb: np.ndarray, data_root: Path) -> dict[str, float]:
    from viewdiff.training.datasets import cfp_fp_pairs
    from viewdiff.training.protocols import fold_metrics, pair_scores, profile_rank1
    pairs = cfp_fp_pairs(cfp, data_root)
    emb = l2_normalize(emb)
    metrics = fold_metrics(pair_scores(emb, emb, cfp, pairs, "probe"), pairs)
    metrics["rank1"] = [profile_rank1(emb, emb, cfp, f, "probe", among="all") for f in sorted(set(pairs["fold"]))]
    return {k: 100 * float(np.mean(v)) for k, v in metrics.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache_dir", default="data/cache")
    p.add_argument("--n", type=int, default=400, help="faces compared (half CFP, half Pointing'04)")
    p.add_argument("--cfp_fp", action="store_true", help="also CFP-FP with every CFP crop embedded by LiteRT")
    args = p.parse_args(argv)
    if not TFLITE.is_file():
        print(f"error: {TFLITE} not found (the shared models folder)", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    picked = []
    for dataset in ("cfp", "pointing04"):
        found = load_records(args.cache_dir, dataset, "insightface").found
        _, crops = load_crops(args.cache_dir, dataset, "insightface")
        idx = np.flatnonzero(found)
        picked.append(crops[np.sort(rng.choice(idx, min(len(idx), args.n // 2), replace=False))])
    crops = np.concatenate(picked)
    onnx, xnn, builtin = onnx_embed(crops), litert_embed(crops), litert_embed(crops, builtin=True)
    print(f"{len(crops)} real aligned faces (CFP + Pointing'04): mean / min cosine of the embeddings")
    for name, (a, b) in {"ONNX vs LiteRT XNNPACK": (onnx, xnn), "ONNX vs LiteRT built-in": (onnx, builtin),
                         "LiteRT XNNPACK vs LiteRT built-in": (xnn, builtin)}.items():
        c = cosines(a, b)
        print(f"  {name}: {c.mean():.5f} / {c.min():.5f}")
    if args.cfp_fp:
        cfp = load_records(args.cache_dir, "cfp", "insightface")
        _, cfp_crops = load_crops(args.cache_dir, "cfp", "insightface")
        lite = np.zeros_like(cfp.embedding)
        lite[cfp.found] = litert_embed(cfp_crops[cfp.found])
        for name, emb in (("ONNX (the cache)", cfp.embedding), ("LiteRT XNNPACK", lite)):
            figures = cfp_fp_figures(cfp, emb, shared_dir() / "data")
            print(f"  CFP-FP raw, {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
