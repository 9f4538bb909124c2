"""Held-out evaluation: 10-fold CFP-FP (and CFP-FF) on unseen identities, several seeds, Pointing'04 bins.

    python -m viewdiff.training.evaluate --methods global_shift,dream,enhanced --seeds 0,1,2 --out docs/results

For every CFP-FP fold k (official, identity-disjoint) each trained method is fitted from scratch on the
other nine folds with a fixed recipe and scored on fold k, with the protocols of
`viewdiff.training.protocols` (``probe``: transformed probe vs raw frontal gallery; ``both``: both sides
transformed; ``fused``: vs a flip-fused gallery, the demo's). **Nothing is validated, chosen or stopped on the
test fold:** a fold model trains with ``exclude_fold=k``; with the verification loss it is early-stopped on the
next fold (`early_stopping_fold`, left out of its training too), otherwise it has no validation fold and its final
epoch is used; `train` refuses a validation fold equal to the test fold, and the nested selection validates on
inner folds taken from the training folds. With a folder dataset in ``--datasets`` (cplfw_train), its people of
fold k are left out of fold model k as well, and its cross-pose pairs (`datasets.cross_pose_pairs`) are a second
test with the same metrics. Methods (`METHODS`):
- ``raw``: the embedder's own embeddings (always reported); ``mirror``: for faces turned more than 45
  deg, the mean of the photo's and the mirrored photo's embeddings (no training: what the mirror view
  alone gives); ``flip_fused``: every photo, gallery and probe alike, as the mean of itself and its
  mirror (flip-fused templates, the usual test-time augmentation; its gallery replaces the raw one);
- ``global_shift``: the training folds' mean frontal minus mean profile embedding, added to every face
  turned more than 45 deg (by the estimated pose);
- ``dream``, ``dream_l2``: the DREAM residual (Cao et al., CVPR 2018) with the regression loss (+ the
  in-batch identity term for ``dream``), trained on the same folds;
- ``enhanced``: the pose transformer with today's default recipe (`TrainConfig`); ``enhanced_no_*``
  switch one module off and ``enhanced_cross_view`` the cross-view attention on (the ablations);
- ``enhanced_nested``: the transformer with the recipe chosen for each test fold among `CANDIDATES` by
  validation inside its training folds only (`select_recipe`: trained without the test fold and an inner
  fold, scored on the inner fold; two inner folds).
Figures are means over seeds of the per-fold values: accuracy, TAR @ FAR 1% and 0.1%, pAUC over FAR
0.1%..1% and held-out rank-1 (a fold's profiles among the fold's own 50 identities). ``raw`` and
``flip_fused`` (the practitioner's bar: InsightFace's own CFP-FP figure is with flip) are always evaluated;
`paired_test` compares each method with raw, flip_fused, DREAM and ``--reference`` (an ablation's full model) fold
by fold. The TARs and the pAUC, and each of those differences, get a 95% bootstrap interval over identities
(`BOOTSTRAP` resamples of each fold's identities, the same resamples for every method, thresholds recomputed).
Pointing'04 (never trained on): rank-1 per |yaw| bin with each seed's fold-1 model. CFP-FF
(frontal-frontal) checks that frontal matching stays at the raw level.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from viewdiff.embeddings import l2_normalize
from viewdiff.paths import shared_dir
from viewdiff.training.datasets import cfp_fp_pairs, cross_pose_pairs, record_inputs
from viewdiff.training.metrics import best_threshold, far_threshold
from viewdiff.training.protocols import (BOOTSTRAP, BOOTSTRAP_SEED, PROTOCOLS, bootstrap, finite_mean, fold_metrics,
                                         interval, pair_scores, paired_test, parse_folds, pointing04_rank1, profile_rank1,
                                         summarize)
from viewdiff.training.listings import refuse_shared_identities
from viewdiff.training.records import FaceRecords, first_identities, load_records
from viewdiff.training.thresholds import (DEMO_THRESHOLD, FUSED_DEMO_THRESHOLD, fused_thresholds,
                                          same_person_thresholds, write_threshold)
from viewdiff.training.report import write_report
from viewdiff.training.train import TrainConfig, reads_surface, train

TURNED = 45.0   # degrees of estimated |yaw| from which the untrained baselines act
MAP = {"map_channels": 64, "nhead": 4, "token_dim": 32}
VERIFY = {**MAP, "loss": "verification", "margin": 0.1, "temperature": 0.05, "source_weight": 1.0, "epochs": 12}
DREAM = {"model": "dream", "loss": "regression", "temperature": 0.05, "mirror_augment": False, "epochs": 8}
METHODS = {
    "mirror": None, "flip_fused": None, "global_shift": None,   # untrained baselines (`untrained_transform`)
    "dream": DREAM, "dream_l2": {**DREAM, "identity_weight": 0.0},
    "enhanced": {},
    "enhanced_no_mirror": {"use_mirror_view": False, "mirror_augment": False},
    "enhanced_no_gate": {"use_pose_gate": False},
    "enhanced_no_lora": {"use_lora_attention": False},
    "enhanced_no_projection": {"use_projection_layer": False},
    "enhanced_no_adaln": {"use_adaptive_norm": False},
    "enhanced_cross_view": {"use_cross_view": True},
    "enhanced_regression": {"loss": "regression", "temperature": 0.05},
    "enhanced_nested": {},
    # the transformer that reads the embedder's 7x7 map (w600k_mbf: 64 channels) instead of its vector: 99 tokens,
    # so narrower tokens and fewer heads keep a fit near a minute on one CPU thread
    "enhanced_map": MAP, "enhanced_map_nested": MAP,
    # issue 25's verification objective (early-stopped; docs/results.md 4.00); _gallery: the default, by name
    "enhanced_map_verification": VERIFY, "enhanced_map_verification_no_surface": {**VERIFY, "use_face_surface": False},
    "enhanced_map_gallery": {**MAP, "loss": "gallery", "temperature": 0.1, "margin": 0.0, "source_weight": 3.0, "epochs": 4},
    "enhanced_map_no_surface": {**MAP, "use_face_surface": False},
    "enhanced_map_no_projection": {**MAP, "use_projection_layer": False},
    "enhanced_map_prior": {**MAP, "use_prior_preservation": True},
    "enhanced_map_no_lora": {**MAP, "use_lora_attention": False},
    "enhanced_map_no_adaln": {**MAP, "use_adaptive_norm": False},
    "enhanced_map_no_mirror": {**MAP, "use_mirror_view": False, "mirror_augment": False},
}
# Nested selection: `enhanced_nested` trains `enhanced` with the CANDIDATES recipe that validates best inside
# the training folds (`select_recipe`). Two axes: how far a profile may move from its source (the gallery
# loss's source weight; DREAM moves profiles much further) and whether the own identity must win by a
# cosine margin (a verification threshold, not only the top rank).
NESTED = {"enhanced_nested", "enhanced_map_nested"}
CANDIDATES = [{"source_weight": sw, "margin": m} for m in (0.0, 0.25) for sw in (10.0, 3.0)]
INNER_FOLDS = 2
FP_METRICS = ("accuracy", "tar_far1", "tar_far01", "pauc", "rank1_heldout")
BASELINES = ("raw", "flip_fused")   # always evaluated: every method is compared with both
REFERENCES = ("raw", "flip_fused", "dream")   # the paired tests of each method
SELECTION_SEED = 0
# what `validation_metrics` scores; a selection saved under another criterion is made again
SELECTION_CRITERION = "mean of accuracy, TAR @ FAR 1% and rank-1 among the inner fold's identities"


@torch.no_grad()
def transform(model: nn.Module, records: FaceRecords, target_pose: np.ndarray | None = None,
              batch: int = 1024) -> np.ndarray:
    """Map every record's embedding to `target_pose` [3] (default frontal) -> [N, D] unit rows."""
    model.eval()
    n = len(records)
    target = torch.zeros(n, 3) if target_pose is None else torch.as_tensor(target_pose).float().expand(n, 3)
    t = {k: torch.as_tensor(v).float() for k, v in record_inputs(records, model).items()}
    out = torch.cat([model(**{k: v[i:i + batch] for k, v in t.items()}, target_pose=target[i:i + batch])
                     for i in range(0, n, batch)])
    return l2_normalize(out.numpy())


def untrained_transform(method: str, train_rows: FaceRecords, records: FaceRecords) -> np.ndarray:
    """The ``mirror`` / ``flip_fused`` / ``global_shift`` baselines applied to `records` ([N, D] unit rows)."""
    turned = np.abs(records.source_pose[:, 0]) >= TURNED
    if method == "flip_fused":
        return l2_normalize(records.embedding + records.embedding_mirror)
    if method == "mirror":
        change = 0.5 * (records.embedding_mirror - records.embedding)
    else:
        frontal = train_rows.found & (np.abs(train_rows.source_pose[:, 0]) < TURNED)
        profile = train_rows.found & ~frontal
        change = np.broadcast_to(train_rows.embedding[frontal].mean(0) - train_rows.embedding[profile].mean(0),
                                 records.embedding.shape)
    return l2_normalize(records.embedding + turned[:, None] * change)


def fold_config(method: str, test_fold: int, seed: int, args: argparse.Namespace, recipe: dict | None = None,
                val_fold: int = 0) -> TrainConfig:
    """The training recipe of `method` (a key of METHODS; `recipe` overrides it) for CFP test fold `test_fold`:
    never trained on it, never validated on it (``exclude_fold``); validated on `val_fold` only for the nested
    selection's inner models (an inner fold, also left out of training), else on nothing. `--train_args` flags
    win (and `train` refuses a --val_fold equal to the test fold)."""
    base = METHODS[method]
    tag = f"{method}_seed{seed}_fold{(val_fold or test_fold):02d}" + \
        (f"_test{test_fold:02d}_{recipe_name(recipe)}" if val_fold else "")
    config = replace(TrainConfig(), data_dir=args.data_dir, backend=args.backend, datasets=args.datasets, val_fold=val_fold,
                     exclude_fold=test_fold, seed=seed, quiet=True, checkpoint_every=10 ** 6,
                     save_dir=str(Path(args.work_dir) / tag), max_identities=args.max_identities or None,
                     **{**base, **(recipe or {})})
    config = TrainConfig.from_args(args.train_args.split(), base=config)
    if config.loss == "verification" and not config.val_fold and test_fold:   # early stopping, on an inner fold
        config = replace(config, val_fold=early_stopping_fold(test_fold))
    return config


def early_stopping_fold(test_fold: int) -> int:
    """The inner fold that stops fold model `test_fold` (the next fold, cyclically over 1..10): left out of its
    training like the test fold, and the only fold its best epoch is chosen on; the test fold is never looked at."""
    return test_fold % 10 + 1


def fitted(config: TrainConfig) -> nn.Module:
    """The model `config` trains (with a validation fold: early stopping's pick): loaded from its ``save_dir`` when an
    earlier run of the same config finished there (an interrupted or extended evaluation does not retrain), else trained."""
    from viewdiff.models.checkpoint import WeightsError, load_pretrained
    current = json.loads(json.dumps(asdict(config), default=str))
    defaults = json.loads(json.dumps(asdict(TrainConfig()), default=str))
    run = Path(config.save_dir)
    chosen = run / ("best_model" if config.val_fold else "final_model")
    try:   # the saved run's config (config.json's metadata) decides; only the chosen model is loaded
        saved = json.loads((run / "final_model" / "config.json").read_text())["metadata"].get("train_config", {})
        if all(saved.get(k, defaults[k]) == v for k, v in current.items()):   # fields added since: their defaults
            return load_pretrained(chosen)[0]
    except (OSError, ValueError, KeyError, WeightsError):
        pass
    model = train(config).model
    return load_pretrained(chosen)[0] if config.val_fold else model


def recipe_name(recipe: dict | None) -> str:
    """'margin=0.0,source_weight=3.0' for {"source_weight": 3.0, "margin": 0.0}; 'default' for none."""
    return ",".join(f"{k}={v}" for k, v in sorted((recipe or {}).items())) or "default"


def inner_folds(test_fold: int, all_folds: list[int]) -> list[int]:
    """The INNER_FOLDS folds that follow `test_fold` (cyclically): they validate its nested selection."""
    others = sorted(f for f in all_folds if f != test_fold)
    start = next((i for i, f in enumerate(others) if f > test_fold), 0)
    return (others[start:] + others[:start])[:INNER_FOLDS]


def validation_metrics(raw: np.ndarray, emb: np.ndarray, cfp: FaceRecords, pairs: dict[str, np.ndarray],
                       fold: int) -> dict[str, float]:
    """Inner-validation metrics of `fold` from its own pairs and photos only (probe protocol): accuracy at the
    fold's best threshold, TAR at the fold's own FAR 1%, rank-1 among the fold's own identities (as the
    held-out rank-1); ``score`` is their mean, the selection criterion (`SELECTION_CRITERION`)."""
    mine = pairs["fold"] == fold
    s, same = pair_scores(raw, emb, cfp, pairs, "probe")[mine], pairs["same"][mine]
    metrics = {"accuracy": float(np.mean((s >= best_threshold(s, same)) == same)),
               "tar_far1": float(np.mean(s[same] > far_threshold(s[~same], 0.01))) if (~same).any() else np.nan}
    metrics["rank1"] = profile_rank1(raw, emb, cfp, fold, "probe", among="fold")
    metrics["score"] = finite_mean(list(metrics.values()))
    return metrics


def select_recipe(method: str, test_fold: int, cfp: FaceRecords, pairs: dict[str, np.ndarray],
                  args: argparse.Namespace) -> dict:
    """Nested selection for `test_fold`: every CANDIDATES recipe is trained without `test_fold` and the inner
    fold, and scored on the inner fold (`validation_metrics`, seed SELECTION_SEED); the best mean score over
    the inner folds wins. The test fold is never looked at. Kept in the work dir, so seeds share it (one saved
    under another `SELECTION_CRITERION` is made again)."""
    path = Path(args.work_dir) / f"{method}_selection_test{test_fold:02d}.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("criterion") == SELECTION_CRITERION:
            return saved
    raw = l2_normalize(cfp.embedding)
    inner = inner_folds(test_fold, sorted(set(cfp.fold[cfp.fold > 0].tolist())))
    scores = {}
    for recipe in CANDIDATES:
        rows = [validation_metrics(raw, transform(fitted(fold_config(method, test_fold, SELECTION_SEED, args, recipe,
                                                                     val_fold=v)), cfp), cfp, pairs, v)
                for v in inner]
        scores[recipe_name(recipe)] = {m: finite_mean([r[m] for r in rows]) for m in rows[0]}
    chosen = max(CANDIDATES, key=lambda r: scores[recipe_name(r)]["score"])
    selection = {"test_fold": test_fold, "inner_folds": inner, "criterion": SELECTION_CRITERION, "scores": scores,
                 "chosen": recipe_name(chosen), "recipe": chosen}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(selection, indent=2))
    return selection


def compared(runs: dict[str, list[dict]], m: str, key: str, proto: str, metric: str, refs: list[str], boot: dict) -> dict:
    """Method `m`'s cell of one metric: per-fold values (mean over seeds), their mean, the paired test against each
    of `refs` evaluated, and, where `boot` (`bootstrap`) has the metric, its 95% interval and each difference's."""
    per_fold, others = summarize(runs[m], key, proto, metric), [r for r in refs if r in runs and r != m]
    cell = {"per_fold": per_fold, "mean": float(np.mean(per_fold)),
            "seed_means": [float(np.mean(r[key][proto][metric])) for r in runs[m]],
            **{f"vs_{ref}": paired_test(per_fold, summarize(runs[ref], key, proto, metric)) for ref in others}}
    if metric in boot.get(m, {}).get(proto, {}):
        cell["ci95"] = interval(boot[m][proto][metric])
        for ref in others:
            cell[f"vs_{ref}"]["diff_ci95"] = interval(boot[m][proto][metric] - boot[ref][proto][metric])
    return cell


def fold_embeddings(method: str, fold: int, seed: int, cfp: FaceRecords, p04: FaceRecords | None,
                    fp_pairs: dict[str, np.ndarray], args: argparse.Namespace, second: FaceRecords | None = None) -> dict:
    """`method` fitted without CFP fold `fold` (and the folder dataset's fold `fold`) -> its embeddings of every
    CFP (and Pointing'04, and `second`: the folder dataset's cross-pose test) photo, and its gallery side when it
    is not the raw embedding (``flip_fused``)."""
    start = time.time()
    sets = {"cfp": cfp, "p04": p04, "second": second}
    out: dict = {"selection": None, **{f"gallery_{k}": None for k in sets}}
    if method == "raw":
        out.update({k: None if r is None else l2_normalize(r.embedding) for k, r in sets.items()})
    elif METHODS[method] is None:
        fitted_on = cfp.subset(cfp.fold != fold)
        out.update({k: None if r is None else untrained_transform(method, fitted_on, r) for k, r in sets.items()})
        if method == "flip_fused":
            out.update({f"gallery_{k}": out[k] for k in sets})
    else:
        recipe = None
        if method in NESTED:
            out["selection"] = select_recipe(method, fold, cfp, fp_pairs, args)
            recipe = out["selection"]["recipe"]
        model = fitted(fold_config(method, fold, seed, args, recipe))
        out.update({k: None if r is None else transform(model, r) for k, r in sets.items()})
    out["seconds"] = time.time() - start
    return out


def evaluate_method(method: str, seed: int, folds: list[int], cfp: FaceRecords, p04: FaceRecords | None,
                    pairs: dict[str, dict], fp_pairs: dict[str, np.ndarray], args: argparse.Namespace,
                    pool: ProcessPoolExecutor | None = None, second: FaceRecords | None = None,
                    second_pairs: dict[str, np.ndarray] | None = None) -> dict:
    """One method, one seed: out-of-fold scores of every protocol on `pairs` (the evaluated folds' FP and FF
    pairs) -> per-fold metrics (+ Pointing'04 with the first fold's model). `fp_pairs` (every fold's FP pairs)
    serve the nested selection. With a `pool` (`--jobs`), the folds are fitted in its processes. With `second` (a
    folder dataset's records) and its `second_pairs` (`cross_pose_pairs`), the same per-fold metrics there."""
    raw = l2_normalize(cfp.embedding)
    scores = {(name, proto): np.zeros(len(pr["same"])) for name, pr in pairs.items() for proto in PROTOCOLS}
    rank1 = {proto: [] for proto in PROTOCOLS}
    result: dict = {"seconds": 0.0, "selections": []}
    jobs = [(method, k, seed, cfp, p04 if i == 0 else None, fp_pairs, args, second) for i, k in enumerate(folds)]
    second_scores = {proto: np.zeros(len(second_pairs["same"])) for proto in PROTOCOLS} if second is not None else {}
    second_raw = None if second is None else l2_normalize(second.embedding)
    second_fused = None if second is None else l2_normalize(second.embedding + second.embedding_mirror)
    outputs = list(pool.map(fold_embeddings, *zip(*jobs)) if pool and method != "raw"
                  else (fold_embeddings(*job) for job in jobs))
    fused = l2_normalize(cfp.embedding + cfp.embedding_mirror)
    for i, (k, fit) in enumerate(zip(folds, outputs)):
        emb = fit["cfp"]
        own = fit["gallery_cfp"]
        sides = {"probe": raw if own is None else own, "both": raw if own is None else own,
                 "fused": fused if own is None else own}
        result["seconds"] += fit["seconds"]
        if fit["selection"]:
            result["selections"].append(fit["selection"])
        for (name, proto), s in scores.items():
            test = pairs[name]["fold"] == k
            s[test] = pair_scores(sides[proto], emb, cfp, pairs[name], proto)[test]
        for proto in PROTOCOLS:
            rank1[proto].append(profile_rank1(sides[proto], emb, cfp, k, proto, among="fold"))
        if second is not None:
            own2, test2 = fit["gallery_second"], second_pairs["fold"] == k
            sides2 = {"probe": second_raw if own2 is None else own2, "both": second_raw if own2 is None else own2,
                      "fused": second_fused if own2 is None else own2}
            for proto, s in second_scores.items():
                s[test2] = pair_scores(sides2[proto], fit["second"], second, second_pairs, proto)[test2]
        if i == 0 and fit["p04"] is not None:
            p04_gallery = l2_normalize(p04.embedding) if fit["gallery_p04"] is None else fit["gallery_p04"]
            result["pointing04"] = pointing04_rank1(p04_gallery, fit["p04"], p04)
        if not args.quiet:
            chosen = f", recipe {fit['selection']['chosen']}" if fit["selection"] else ""
            print(f"  {method} seed {seed} fold {k}: held-out rank-1 {100 * rank1['probe'][-1]:.2f} "
                  f"({fit['seconds']:.0f} s{chosen})", flush=True)
    result["seconds"] /= len(folds)   # per fold
    for (name, proto), s in scores.items():
        key = "cfp_fp" if name == "FP" else "cfp_ff"
        result.setdefault(key, {})[proto] = fold_metrics(s, pairs[name])
        if name == "FP":
            result[key][proto]["rank1_heldout"] = rank1[proto]
    result["fp_scores"] = {proto: scores[("FP", proto)] for proto in PROTOCOLS}   # [P] for the bootstrap
    if second is not None:
        test2 = np.isin(second_pairs["fold"], folds)
        result["second"] = {proto: fold_metrics(s[test2], {k: v[test2] for k, v in second_pairs.items()})
                            for proto, s in second_scores.items()}
        result["second_scores"] = {proto: s[test2] for proto, s in second_scores.items()}
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default="data/cache")
    p.add_argument("--data_root", default=None, help="folder holding cfp/ (default: ../shared/data)")
    p.add_argument("--backend", default="insightface", help="face-record cache folder (the embedder's backend)")
    p.add_argument("--datasets", default="cfp", help="what each fold model trains on: cfp plus, comma-separated, "
                   "folder datasets (cplfw_train, folder:PATH) whose people join every fold's training set (a CFP "
                   "person among them is refused)")
    p.add_argument("--folds", default="1-10", help="CFP-FP folds to hold out, e.g. 1-10 or 1,2")
    p.add_argument("--methods", default="global_shift,dream,enhanced",
                   help=f"comma list of {', '.join(METHODS)} (raw and flip_fused are always evaluated)")
    p.add_argument("--seeds", default="0,1,2", help="comma list of training seeds")
    p.add_argument("--max_identities", type=int, default=None)
    p.add_argument("--train_args", default="", help="extra viewdiff.training.train flags for every trained fold, "
                   "e.g. '--epochs 3 --threads 2'")
    p.add_argument("--work_dir", default="runs/evaluate", help="per-fold training outputs")
    p.add_argument("--out", default="docs/results", help="results.json and tables.md go here")
    p.add_argument("--thresholds", default=None, help="also write the same-person thresholds (cosine at FAR 1%% "
                   "and 0.1%% on the raw CFP-FP pairs) into this JSON file under the embedder's fingerprint, e.g. "
                   "weights/thresholds.json (the demo uses the 0.1%% one)")
    p.add_argument("--jobs", type=int, default=1, help="folds fitted at once, one process each (with "
                   "--train_args '--threads 1', up to the number of CPU cores)")
    p.add_argument("--reference", default=None, help="a method of --methods every other one is also compared with")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    folds = parse_folds(args.folds)
    methods = list(BASELINES) + [m for m in args.methods.split(",") if m and m not in BASELINES]
    if args.reference and args.reference not in methods:
        p.error(f"--reference {args.reference} is not evaluated: add it to --methods")
    if unknown := [m for m in methods if m != "raw" and m not in METHODS]:
        p.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = [d.strip() for d in args.datasets.split(",") if d.strip() and d.strip() != "cfp"]
    if "cfp" not in [d.strip() for d in args.datasets.split(",")] or "pointing04" in extra:
        p.error(f"--datasets {args.datasets}: the 10-fold evaluation trains on CFP's training folds, so start with cfp "
                "(e.g. cfp,cplfw_train); Pointing'04 is evaluated, not trained on")
    for name in extra:   # before any training: a folder dataset holding a CFP person would train on a test identity
        try:
            refuse_shared_identities(load_records(args.data_dir, name, args.backend), args.data_root or shared_dir() / "data")
        except (ValueError, FileNotFoundError) as err:
            p.error(str(err))

    t0 = time.time()
    trained = [fold_config(m, 1, 0, args) for m in methods if m != "raw" and METHODS[m] is not None]
    maps, surface = any(c.map_channels for c in trained), any(reads_surface(c) for c in trained)
    cfp = first_identities(load_records(args.data_dir, "cfp", args.backend, maps=maps, surface=surface),
                           args.max_identities)
    data_root = args.data_root or shared_dir() / "data"
    all_pairs = {name: cfp_fp_pairs(cfp, data_root, allow_missing=bool(args.max_identities), protocol=name)
                 for name in ("FP", "FF")}
    pairs = {name: {k: v[np.isin(pr["fold"], folds)] for k, v in pr.items()} for name, pr in all_pairs.items()}
    try:
        p04 = load_records(args.data_dir, "pointing04", args.backend, maps=maps, surface=surface)
    except FileNotFoundError:
        p04 = None
    second = second_pairs = None
    if extra:   # the first folder dataset is also a test: its cross-pose pairs, fold by fold (`cross_pose_pairs`)
        second = first_identities(load_records(args.data_dir, extra[0], args.backend, maps=maps, surface=surface),
                                  args.max_identities)
        second_pairs = cross_pose_pairs(second)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) if args.jobs > 1 \
            else contextlib.nullcontext() as pool:
        runs = {m: [evaluate_method(m, seed, folds, cfp, p04, pairs, all_pairs["FP"], args, pool, second, second_pairs)
                    for seed in (seeds if m != "raw" and METHODS[m] is not None else seeds[:1])] for m in methods}
    refs = [*REFERENCES, *([args.reference] if args.reference else [])]
    results = {"folds": folds, "seeds": seeds, "datasets": args.datasets, "backend": args.backend, "fingerprint": cfp.fingerprint,
               "train_args": args.train_args, "coverage": f"{int(cfp.found.sum())}/{len(cfp)} CFP photos with a face",
               "bootstrap": {"resamples": BOOTSTRAP, "seed": BOOTSTRAP_SEED, "over": "identities within each fold"},
               "reference": args.reference, "methods": {}}
    boot = bootstrap(runs, cfp, pairs["FP"])
    if second is not None:
        test2 = {k: v[np.isin(second_pairs["fold"], folds)] for k, v in second_pairs.items()}
        boot2 = bootstrap(runs, second, test2, key="second_scores")
        results["second"] = {"dataset": extra[0], "pairs": int(len(test2["same"])), "same": int(test2["same"].sum()),
                             "definition": "a: near-frontal photo, b: turned photo of a person of the test fold (never "
                                           "trained on in that fold model); different-person pairs drawn in the fold"}
    for m, method_runs in runs.items():
        entry = {"seconds_per_fold": round(float(np.mean([r["seconds"] for r in method_runs])), 1),
                 "recipe": None if m == "raw" or METHODS[m] is None else fold_config(m, 0, 0, args).command()}
        for key, proto, metric in [("cfp_fp", pr, mt) for pr in PROTOCOLS for mt in FP_METRICS] + \
                                  [("cfp_ff", "probe", mt) for mt in FP_METRICS[:-1]]:
            entry[f"{key}/{proto}/{metric}"] = compared(runs, m, key, proto, metric, refs, boot if key == "cfp_fp" else {})
        if second is not None:
            for proto, metric in [(pr, mt) for pr in PROTOCOLS for mt in FP_METRICS[:-1]]:
                entry[f"second/{proto}/{metric}"] = compared(runs, m, "second", proto, metric, refs, boot2)
        if p04 is not None:
            entry["pointing04"] = [{**row, "rank1": float(np.mean([r["pointing04"][i]["rank1"] for r in method_runs])),
                                    "similarity": float(np.mean([r["pointing04"][i]["similarity"] for r in method_runs]))}
                                   for i, row in enumerate(method_runs[0]["pointing04"])]
        if method_runs[0]["selections"]:
            entry["selections"] = method_runs[0]["selections"]
        if m not in BASELINES and METHODS[m] is not None:   # a trained method: its fused-protocol thresholds
            entry["fused_thresholds"] = fused_thresholds([r["fp_scores"]["fused"] for r in method_runs], pairs["FP"])
        results["methods"][m] = entry
    results["same_person_thresholds"] = same_person_thresholds(cfp, pairs["FP"])
    if args.thresholds:
        trained = [m for m in results["methods"] if "fused_thresholds" in results["methods"][m]]
        cosines, demo = results["same_person_thresholds"], DEMO_THRESHOLD
        source = f"raw CFP-FP pairs, folds {args.folds}, {int(cfp.found.sum())} photos"
        if len(trained) == 1:   # the demo's protocol: that method's transformed probe vs flip-fused gallery photos
            cosines, demo = {**cosines, **results["methods"][trained[0]]["fused_thresholds"]}, FUSED_DEMO_THRESHOLD
            source += (f"; fused_*: {trained[0]} (out-of-fold, --datasets {args.datasets}) vs flip-fused frontal photos,"
                       f" seeds {args.seeds}")
        write_threshold(Path(args.thresholds), cfp.fingerprint, cosines, source, demo)
    results["seconds"] = round(time.time() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table = write_report(results, out / "tables.md")
    print(table)
    print(f"results: {out / 'results.json'} ({results['seconds']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
