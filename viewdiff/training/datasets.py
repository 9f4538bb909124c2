"""Training data from `FaceRecords`: pose pairs (source face -> same identity at a target pose), the
identity-disjoint fold split, and the official CFP-FP verification pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from viewdiff.embeddings import l2_normalize
from viewdiff.faces.face_mesh import mirror_arrays
from viewdiff.faces.geometry import keypoints_3d_from_pose
from viewdiff.training.listings import pair_list
from viewdiff.training.records import FaceRecords

PAIR_KEYS = ("src", "src_mirror", "source_pose", "keypoints_3d", "target", "target_pose", "identity")
MAP_KEYS = ("feature_map", "feature_map_mirror")   # when the records carry the embedder's maps
SURFACE_KEYS = ("cell_depth",)   # when they carry the measured face surfaces (load_records(..., surface=True))
MIRROR_POSE = np.array([-1.0, 1.0, -1.0], np.float32)   # a mirrored photo: yaw and roll change sign
PHOTO_FRONTAL_MAX = 20.0   # a folder dataset's photo (no view label) counts as frontal within this |yaw| and |pitch|


def fold_split(records: FaceRecords, val_fold: int, exclude_fold: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train mask, val mask) by identity: CFP identities of `val_fold` validate, those of `exclude_fold`
    (the outer test fold of a nested selection) are in neither, all else trains.

    val_fold 0: everything trains and the val mask is empty. Rows without a face are in neither.
    """
    val = (records.fold == val_fold) & (val_fold > 0) & records.found
    excluded = (records.fold == exclude_fold) & (exclude_fold > 0)
    return records.found & ~val & ~excluded, val


class PosePairDataset:
    """Training pairs (source face -> the same identity at a target pose) from `FaceRecords`.

    Every found row is a source. CFP (and any set without true poses): target = the normalised mean
    embedding of the identity's frontal rows, target pose = frontal (0, 0, 0). A folder dataset has no view
    labels (view ``"photo"``): its frontal rows are those whose *estimated* |yaw| and |pitch| are at most
    `PHOTO_FRONTAL_MAX` degrees. Pointing'04 (true
    poses known): target = the mean of the identity's rows at true pose (0, 0), pose (0, 0, 0), and
    in addition `pose_pairs_per_row` pairs to random rows of the same identity at their true poses
    (pose -> pose), drawn with a fixed `seed`. Identities without a frontal row give no frontal pair.
    frontal_sources: use only the first k frontal rows of each CFP identity as sources (all of them
    still make the target mean); None: every row. Fewer near-identity pairs, a faster epoch.
    mirror: also every pair with the source photo mirrored (embedding and mirror embedding swapped,
    yaw and roll negated, keypoints re-posed), the target unchanged: free pose augmentation.
    Item i: dict src [D], src_mirror [D], source_pose [3] (estimated), keypoints_3d [5, 3], target [D],
    target_pose [3], identity (int index into `identities`); with maps in the records also feature_map and
    feature_map_mirror [C, 7, 7] (a mirrored pair swaps them, each flipped left-right); with surfaces cell_depth
    [7, 7] (and keypoints_3d measured; a mirrored pair gets the mirrored surface, `face_mesh.mirror_arrays`).
    `bank` [M, D], `bank_identity` [M]: every frontal photo flip-fused (its embedding + its mirror's, unit), the
    gallery side of the verification loss and of the validation.
    """

    def __init__(self, records: FaceRecords, pose_pairs_per_row: int = 1, seed: int = 0, mirror: bool = False,
                 frontal_sources: int | None = None):
        r = records.subset(records.found)
        self.identities = list(dict.fromkeys(r.identity))
        ident_index = {name: i for i, name in enumerate(self.identities)}
        known = ~np.isnan(r.true_pose).any(axis=1)
        estimated_frontal = (r.view == "photo") & (np.abs(r.source_pose[:, :2]) <= PHOTO_FRONTAL_MAX).all(axis=1)
        frontal_row = np.where(known, (np.abs(r.true_pose[:, :2]) < 1e-6).all(axis=1),
                               (r.view == "frontal") | estimated_frontal)
        src, tgt_emb, tgt_pose = [], [], []
        rng = np.random.default_rng(seed)
        for name in self.identities:
            rows = np.flatnonzero(r.identity == name)
            front = rows[frontal_row[rows]]
            if len(front):
                mean = l2_normalize(r.embedding[front].mean(0))
                unused = set(front[frontal_sources:]) if frontal_sources else set()
                sources = [i for i in rows if i not in unused]
                src += sources
                tgt_emb += [mean] * len(sources)
                tgt_pose += [np.zeros(3, np.float32)] * len(sources)
            posed = rows[known[rows]]
            if len(posed) > 1 and pose_pairs_per_row:
                for s in np.repeat(posed, pose_pairs_per_row):
                    t = rng.choice(posed[posed != s])
                    src.append(s)
                    tgt_emb.append(r.embedding[t])
                    tgt_pose.append(r.true_pose[t])
        src = np.asarray(src, dtype=int)
        bank = np.flatnonzero(frontal_row)   # every frontal photo as the product's gallery stores it: flip-fused
        self.bank = l2_normalize(r.embedding[bank] + r.embedding_mirror[bank]).astype(np.float32)
        self.bank_identity = np.array([ident_index[n] for n in r.identity[bank]], dtype=np.int64)
        self.src, self.src_mirror = r.embedding[src], r.embedding_mirror[src]
        self.source_pose, self.keypoints_3d = r.source_pose[src], r.keypoints_3d[src]
        self.target = np.asarray(tgt_emb, np.float32).reshape(len(src), r.embedding.shape[1])
        self.target_pose = np.asarray(tgt_pose, np.float32).reshape(len(src), 3)
        self.identity = np.array([ident_index[n] for n in r.identity[src]], dtype=np.int64)
        self.keys = PAIR_KEYS + (MAP_KEYS if r.feature_map is not None else ()) + \
            (SURFACE_KEYS if r.cell_depth is not None else ())
        if r.feature_map is not None:
            self.feature_map, self.feature_map_mirror = r.feature_map[src], r.feature_map_mirror[src]
        if r.cell_depth is not None:
            self.cell_depth = r.cell_depth[src]
        if mirror:
            if r.feature_map is not None:   # the mirrored photo's map is the mirror's, unflipped, and vice versa
                flipped = self.feature_map_mirror[..., ::-1], self.feature_map[..., ::-1]
                self.feature_map = np.r_[self.feature_map, flipped[0]]
                self.feature_map_mirror = np.r_[self.feature_map_mirror, flipped[1]]
            mirrored_pose = self.source_pose * MIRROR_POSE
            self.src, self.src_mirror = np.r_[self.src, self.src_mirror], np.r_[self.src_mirror, self.src]
            if r.cell_depth is not None:   # the measured surface of the mirrored photo
                depth, keypoints = mirror_arrays(self.cell_depth, self.keypoints_3d)
                self.cell_depth, self.keypoints_3d = np.r_[self.cell_depth, depth], np.r_[self.keypoints_3d, keypoints]
            else:   # the template turned by the mirrored pose
                self.keypoints_3d = np.r_[self.keypoints_3d, np.stack([keypoints_3d_from_pose(p) for p in mirrored_pose])
                                          if len(src) else self.keypoints_3d]
            self.source_pose = np.r_[self.source_pose, mirrored_pose]
            self.target, self.target_pose = np.r_[self.target, self.target], np.r_[self.target_pose, self.target_pose]
            self.identity = np.r_[self.identity, self.identity]

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> dict:
        return {k: getattr(self, k)[i] for k in self.keys}


def record_inputs(records: FaceRecords, model) -> dict[str, np.ndarray]:
    """The forward inputs of every record for `model` (at its source pose; the caller adds the target): src,
    src_mirror, source_pose, keypoints_3d and, when the model reads them, the maps and the measured surface."""
    columns = {"src": records.embedding, "src_mirror": records.embedding_mirror, "source_pose": records.source_pose,
               "keypoints_3d": records.keypoints_3d}
    settings = getattr(model, "settings", None)
    if getattr(settings, "map_channels", 0):
        columns.update(feature_map=records.feature_map, feature_map_mirror=records.feature_map_mirror)
        if records.cell_depth is not None and settings.use_projection_layer and settings.use_face_surface:
            columns["cell_depth"] = records.cell_depth
    return columns


def stack_pairs(dataset: PosePairDataset) -> dict[str, torch.Tensor]:
    """All pairs of `dataset` as tensors: src [N, D], source_pose [N, 3], keypoints_3d [N, K, 3], ..."""
    if not len(dataset):
        raise ValueError("no training pairs: was a face found in the selected records?")
    return {k: torch.as_tensor(np.ascontiguousarray(getattr(dataset, k))) for k in dataset.keys}


def cfp_fp_pairs(cfp: FaceRecords, data_root: str | Path, allow_missing: bool = False,
                 protocol: str = "FP") -> dict[str, np.ndarray]:
    """The official CFP pairs of `protocol` ("FP": frontal-profile, "FF": frontal-frontal) as row indices of `cfp`.

    -> a [P] (frontal rows), b [P] (profile rows for FP, frontal for FF), same [P] bool, fold [P] int
    (1..10). Raises ValueError when `cfp` lacks an image of the protocol (extract the full CFP first),
    unless `allow_missing` (a subset run), which drops those pairs.
    """
    root = Path(data_root) / "cfp" / "Protocol"
    frontal = pair_list(root / "Pair_list_F.txt")
    profile = frontal if protocol == "FF" else pair_list(root / "Pair_list_P.txt")
    row = {str(p): i for i, p in enumerate(cfp.path)}
    a, b, same, fold = [], [], [], []
    for fold_dir in sorted((root / "Split" / protocol).iterdir()):
        for kind in ("same", "diff"):
            for line in (fold_dir / f"{kind}.txt").read_text().split():
                i, j = (int(v) for v in line.split(","))
                fa, pb = str(Path("cfp") / frontal[i]), str(Path("cfp") / profile[j])
                if fa not in row or pb not in row:
                    if allow_missing:
                        continue
                    raise ValueError(f"CFP-{protocol} pair {line} of fold {fold_dir.name} needs {fa} and {pb}, which are "
                                     "not all in the records: run `python -m viewdiff.training.extract --datasets cfp` "
                                     "on the whole dataset")
                a.append(row[fa])
                b.append(row[pb])
                same.append(kind == "same")
                fold.append(int(fold_dir.name))
    return {"a": np.array(a, dtype=int), "b": np.array(b, dtype=int), "same": np.array(same, dtype=bool),
            "fold": np.array(fold, dtype=int)}


CROSS_POSE_TURNED = 35.0   # estimated |yaw| from which a folder dataset's photo is the turned side of a pair
IMPOSTORS_PER_GENUINE = 10   # different-person pairs drawn per same-person pair, in each fold


def cross_pose_pairs(records: FaceRecords, seed: int = 0) -> dict[str, np.ndarray]:
    """Identity-disjoint cross-pose verification pairs of a folder dataset (the second test beside CFP-FP), as
    row indices of `records`, in the folds of its identities (`listings.folder_fold`: fold model k never trains
    on them).

    a: a near-frontal photo (estimated |yaw| and |pitch| <= `PHOTO_FRONTAL_MAX`), b: a turned one (|yaw| >=
    `CROSS_POSE_TURNED`). Same person: every such pair of one identity. Different person: in each fold,
    `IMPOSTORS_PER_GENUINE` x as many (a, b) pairs of two different identities of that fold, drawn without
    replacement (`seed`), so that FAR 0.1% rests on about twenty different-person scores of the other folds.
    -> a [P], b [P], same [P] bool, fold [P] int.
    """
    found = records.found
    yaw, pitch = np.abs(records.source_pose[:, 0]), np.abs(records.source_pose[:, 1])
    frontal = found & (yaw <= PHOTO_FRONTAL_MAX) & (pitch <= PHOTO_FRONTAL_MAX)
    turned = found & (yaw >= CROSS_POSE_TURNED)
    rng = np.random.default_rng(seed)
    a, b, same, fold = [], [], [], []
    for f in sorted(set(records.fold[found].tolist()) - {0}):
        fa, fb = np.flatnonzero(frontal & (records.fold == f)), np.flatnonzero(turned & (records.fold == f))
        match = records.identity[fa][:, None] == records.identity[fb][None, :]   # [A, B]
        gi, gj = np.nonzero(match)
        ii, ij = np.nonzero(~match)
        pick = rng.choice(len(ii), size=min(len(ii), IMPOSTORS_PER_GENUINE * len(gi)), replace=False)
        pick.sort()
        a += [fa[gi], fa[ii[pick]]]
        b += [fb[gj], fb[ij[pick]]]
        same += [np.ones(len(gi), bool), np.zeros(len(pick), bool)]
        fold += [np.full(len(gi) + len(pick), f)]
    if not a:
        raise ValueError("no cross-pose pairs: the folder dataset needs near-frontal and turned photos of one person")
    return {"a": np.concatenate(a), "b": np.concatenate(b), "same": np.concatenate(same),
            "fold": np.concatenate(fold)}


def model_inputs(batch: dict[str, torch.Tensor], multiview: bool = False) -> dict:
    """Forward kwargs of a pair batch (shared by the transformer and the DREAM baseline)."""
    out = dict(src=batch["src"], source_pose=batch["source_pose"], keypoints_3d=batch["keypoints_3d"],
               target_pose=batch["target_pose"], src_mirror=batch["src_mirror"])
    out.update({k: batch[k] for k in MAP_KEYS + SURFACE_KEYS if k in batch})   # map models read them; not others
    if multiview:
        out["multiview_input"] = True
    return out
