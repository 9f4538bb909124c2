"""The demo's pose-transformer engine: one model run per slider move, with its two caches and a lock.

`PoseEngine.transform(record, target)` runs the model on the photo's embedding at one target pose
(plus the 19-pose yaw sweep when the session has no sweep for the target pitch/roll) and compares the
result with the gallery moved to the same target pose(s) (`gallery_at`, cached): both sides live in
the model's space. Caches drop their oldest entries first (`put_bounded`).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from viewdiff.demo.gallery import Gallery
from viewdiff.embeddings import cosine_matrix, l2_normalize
from viewdiff.faces.geometry import keypoints_3d_from_pose
from viewdiff.faces.records import FaceRecord

SWEEP_YAWS = np.arange(-90, 91, 10, dtype=np.float32)
SWEEP_CACHE_SIZE = 64     # (pitch, roll) sweeps kept per session
GALLERY_CACHE_SIZE = 256  # (target poses, templates) -> gallery moved to those poses


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
    raw: np.ndarray  # [N] similarity of the photo's embedding to each identity
    transformed: np.ndarray | None = None  # [N] same for the transformed embedding (None: no model)
    sweep: np.ndarray | None = None  # [len(SWEEP_YAWS)] similarity to the best identity along the sweep
    attention: np.ndarray | None = None  # [L, H, T, T]
    token_labels: list[str] = field(default_factory=list)
    volumes: dict[str, np.ndarray] = field(default_factory=dict)  # quantity -> [R, R, R] (z, y, x)
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
        self.gallery_cache: dict[tuple[bytes, bytes], np.ndarray] = {}
        self.lock = threading.Lock()
        self.frontal_keypoints_3d = keypoints_3d_from_pose((0.0, 0.0, 0.0))  # [5, 3] of the gallery templates

    @torch.inference_mode()
    def warm_up(self, embedding_dim: int) -> None:
        """One forward at the batch size of a slider move with a sweep: the first forward allocates, later ones are fast."""
        batch = 1 + len(SWEEP_YAWS)
        self.model(torch.zeros(batch, embedding_dim), torch.zeros(batch, 3), torch.zeros(batch, 5, 3),
                   torch.zeros(batch, 3))

    def transform(self, record: FaceRecord, target: np.ndarray, gallery: Gallery,
                  sweeps: dict[tuple[float, float], np.ndarray] | None = None) -> PoseResult:
        """Run the pose transformer at ``target`` (and the yaw sweep unless ``sweeps`` holds it); gallery similarities."""
        names, raw = gallery.names, gallery.similarities(record.embedding)
        if self.model is None:
            return PoseResult(target, names, raw)
        sweeps = {} if sweeps is None else sweeps
        key = (float(target[1]), float(target[2]))
        poses = target[None] if key in sweeps else np.concatenate([target[None], sweep_poses(*key)])
        batch = len(poses)
        with self.lock, torch.inference_mode():
            start = time.perf_counter()
            out = self.model(src=torch.as_tensor(record.embedding, dtype=torch.float32).expand(batch, -1),
                             source_pose=torch.as_tensor(record.source_pose, dtype=torch.float32).expand(batch, -1),
                             keypoints_3d=torch.as_tensor(record.keypoints_3d, dtype=torch.float32)
                             .expand(batch, -1, -1),
                             target_pose=torch.from_numpy(np.ascontiguousarray(poses, dtype=np.float32)))
            model_ms = (time.perf_counter() - start) * 1000
            viz = getattr(self.model, "last_visualization", None) or {}
        out = out.float().cpu().numpy()
        if key not in sweeps:
            put_bounded(sweeps, key, out[1:], SWEEP_CACHE_SIZE)
        volumes = {}
        if viz.get("voxels") is not None:
            volumes["channel norm"] = viz["voxels"][0].float().norm(dim=0).numpy()
        if viz.get("density") is not None:
            volumes["density"] = viz["density"][0, 0].float().numpy()
        attention = np.stack([a[0].float().numpy() for a in viz["attention"]]) if viz.get("attention") else None
        transformed = None
        if names:  # the gallery moved to the same target pose(s): both sides live in the model's space
            transformed = cosine_matrix(out[0][None], self.gallery_at(gallery, target[None])[0])[0]
        result = PoseResult(target, names, raw, transformed=transformed, attention=attention,
                            token_labels=list(viz.get("token_labels", [])), volumes=volumes, model_ms=model_ms,
                            model_poses=batch)
        if names:
            best = self.gallery_at(gallery, sweep_poses(*key), rows=[result.best])[:, 0]
            result.sweep = np.sum(l2_normalize(sweeps[key]) * l2_normalize(best), axis=1)
        return result

    @torch.inference_mode()
    def gallery_at(self, gallery: Gallery, poses: np.ndarray, rows: list[int] | None = None) -> np.ndarray:
        """Gallery templates (frontal) moved to each target pose: poses [P, 3] -> [P, N, D] (cached by content).

        rows: only these gallery entries (N = len(rows)); default all.
        """
        templates = gallery.templates.astype(np.float32)
        templates = templates if rows is None else templates[rows]
        poses = np.ascontiguousarray(poses, dtype=np.float32)
        key = (poses.tobytes(), templates.tobytes())
        if key not in self.gallery_cache:
            p, n = len(poses), len(templates)
            with self.lock:
                out = self.model(src=torch.from_numpy(np.tile(templates, (p, 1))),
                                 source_pose=torch.zeros(p * n, 3),
                                 keypoints_3d=torch.from_numpy(self.frontal_keypoints_3d).expand(p * n, -1, -1),
                                 target_pose=torch.from_numpy(np.repeat(poses, n, axis=0)))
            put_bounded(self.gallery_cache, key, out.float().numpy().reshape(p, n, -1), GALLERY_CACHE_SIZE)
        return self.gallery_cache[key]
