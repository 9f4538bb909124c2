"""The demo's pose-transformer engine: one model run per slider move, with its two caches and a lock.

`PoseEngine.transform(record, target, gallery)` runs the model on the photo's embedding at one target
pose (plus the 19-pose yaw sweep when the session has no sweep for the target pitch/roll) and compares
the raw and the transformed probe with the same *raw* gallery (the evaluated protocol: transformed
probe vs raw gallery), so both similarities are on one scale and one threshold applies to both.
The sweep cache drops its oldest entries first (`put_bounded`).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from viewdiff.demo.gallery import Gallery
from viewdiff.embeddings import cosine_matrix, l2_normalize
from viewdiff.faces.records import FaceRecord

SWEEP_YAWS = np.arange(-90, 91, 10, dtype=np.float32)
SWEEP_CACHE_SIZE = 16     # (pitch, roll) sweeps kept per session: 16 x 19 x D floats


def sweep_poses(pitch: float, roll: float) -> np.ndarray:
    """The target poses of the yaw sweep at a target pitch and roll: [len(SWEEP_YAWS), 3]."""
    return np.stack([SWEEP_YAWS, np.full_like(SWEEP_YAWS, pitch), np.full_like(SWEEP_YAWS, roll)], 1)


def put_bounded(cache: dict, key, value, size: int) -> None:
    """``cache[key] = value``, dropping the oldest entries first so that at most `size` remain."""
    while len(cache) >= size:
        cache.pop(next(iter(cache)))
    cache[key] = value


@dataclass
class PoseResult:
    """One run of the pose transformer for a photo at a target pose (plus the yaw sweep)."""

    target: np.ndarray  # [3]
    names: list[str]
    raw: np.ndarray  # [N] cosine of the photo's raw embedding to each identity's raw template
    transformed: np.ndarray | None = None  # [N] same for the transformed embedding (None: no model)
    sweep: np.ndarray | None = None  # [len(SWEEP_YAWS)] transformed similarity to the best identity along the sweep
    attention: np.ndarray | None = None  # [L, H, T, T]
    token_labels: list[str] = field(default_factory=list)
    volumes: dict[str, np.ndarray] = field(default_factory=dict)  # quantity -> [R, R, R] (z, y, x)
    keypoints_grid: np.ndarray | None = None  # [K, 3] the face's keypoints moved with the grid (x, y, z voxel units)
    model_ms: float = 0.0
    model_poses: int = 0  # target poses in the model batch (1, or 1 + the sweep when not cached)

    @property
    def best(self) -> int:
        return int(np.argmax(self.raw if self.transformed is None else self.transformed))


class PoseEngine:
    """The loaded pose transformer (or None: raw similarities only), its caches and its lock.

    The lock makes `last_visualization` belong to the forward that wrote it (Gradio runs callbacks
    in threads).
    """

    def __init__(self, model: torch.nn.Module | None):
        self.model = model
        self.lock = threading.Lock()

    @property
    def reads_map(self) -> bool:
        """Whether the model reads the embedder's 7x7 map (FaceRecord.feature_map) rather than its vector."""
        return bool(getattr(getattr(self.model, "settings", None), "map_channels", 0))

    @torch.inference_mode()
    def warm_up(self, embedding_dim: int) -> None:
        """One forward at the batch size of a slider move with a sweep: the first forward allocates, later ones are fast."""
        batch = 1 + len(SWEEP_YAWS)
        maps = {}
        if self.reads_map:
            c = self.model.settings
            maps = {k: torch.zeros(batch, c.map_channels, c.map_size, c.map_size)
                    for k in ("feature_map", "feature_map_mirror")}
        self.model(torch.zeros(batch, embedding_dim), torch.zeros(batch, 3), torch.zeros(batch, 5, 3),
                   torch.zeros(batch, 3), **maps)

    def transform(self, record: FaceRecord, target: np.ndarray, gallery: Gallery,
                  sweeps: dict[tuple[float, float], np.ndarray] | None = None) -> PoseResult:
        """Run the pose transformer at ``target`` (and the yaw sweep unless ``sweeps`` holds it); gallery similarities."""
        names, templates = gallery.names, gallery.templates
        raw = cosine_matrix(record.embedding[None], templates)[0] if names else np.zeros(0, np.float32)
        if self.model is None:
            return PoseResult(target, names, raw)
        sweeps = {} if sweeps is None else sweeps
        key = (float(target[1]), float(target[2]))
        poses = target[None] if key in sweeps else np.concatenate([target[None], sweep_poses(*key)])
        batch = len(poses)
        inputs = {"src": torch.as_tensor(record.embedding, dtype=torch.float32).expand(batch, -1),
                  "source_pose": torch.as_tensor(record.source_pose, dtype=torch.float32).expand(batch, -1),
                  "keypoints_3d": torch.as_tensor(record.keypoints_3d, dtype=torch.float32).expand(batch, -1, -1),
                  "target_pose": torch.from_numpy(np.ascontiguousarray(poses, dtype=np.float32))}
        if record.embedding_mirror is not None:  # the mirrored face's embedding (models with use_mirror_view)
            inputs["src_mirror"] = torch.as_tensor(record.embedding_mirror, dtype=torch.float32).expand(batch, -1)
        if self.reads_map:
            for k in ("feature_map", "feature_map_mirror"):
                inputs[k] = torch.as_tensor(getattr(record, k), dtype=torch.float32).expand(batch, -1, -1, -1)
        with self.lock, torch.inference_mode():
            start = time.perf_counter()
            out = self.model(**inputs)
            model_ms = (time.perf_counter() - start) * 1000
            viz = getattr(self.model, "last_visualization", None) or {}
            volumes = {}
            if viz.get("voxels") is not None:
                volumes["feature strength"] = viz["voxels"][0].float().norm(dim=0).numpy()
            if viz.get("density") is not None:
                volumes["density"] = viz["density"][0, 0].float().numpy().copy()
            attention = np.stack([a[0].float().numpy() for a in viz["attention"]]) if viz.get("attention") else None
            labels = list(viz.get("token_labels", []))
            keypoints = None
            if volumes and getattr(self.model, "projection", None) is not None:   # where the grid shows them
                moved = self.model.projection.keypoints_in_grid(inputs["keypoints_3d"][:1], inputs["source_pose"][:1],
                                                               inputs["target_pose"][:1])[0]
                keypoints = ((moved + 1) / 2 * (self.model.projection.resolution - 1)).numpy()
        out = l2_normalize(out.float().cpu().numpy())
        if key not in sweeps:
            put_bounded(sweeps, key, out[1:], SWEEP_CACHE_SIZE)
        result = PoseResult(target, names, raw, attention=attention, token_labels=labels, volumes=volumes,
                            keypoints_grid=keypoints, model_ms=model_ms, model_poses=batch)
        if names:  # transformed probe vs the raw gallery: the same templates as the raw scores
            result.transformed = cosine_matrix(out[:1], templates)[0]
            result.sweep = sweeps[key] @ templates[result.best]
        return result
