"""The demo's pose-transformer engine: one model run per slider move, with its two caches and a lock.

`PoseEngine.transform(record, target, gallery)` runs the model on the photo's embedding at one target
pose (plus the 19-pose yaw sweep when the session has no sweep for the target pitch/roll) and compares
the raw and the transformed probe with the same gallery templates (the evaluated protocol: transformed
probe vs the gallery's flip-fused templates, docs/results.md 4.0), so both similarities are on one scale
and one threshold applies to both.
The sweep cache drops its oldest entries first (`put_bounded`). With the embedder's affine head
(``head``), every score is also split exactly over the face's 7x7 regions (`PoseResult.explanation`,
`viewdiff.demo.explain`); the gallery templates' map forms are cached per entry.
The photo's measured face surface (`FaceRecord.surface`, `viewdiff.faces.face_mesh`) goes to a map model that
takes it (its ``cell_depth`` keyword: the depth under each 7x7 cell, NaN off the face), and its 468 vertices are
moved into the voxel grid's frame with the keypoints (`PoseResult.surface_grid`) for the voxel panel.
"""
from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from viewdiff.demo import explain
from viewdiff.demo.gallery import Gallery
from viewdiff.embeddings import cosine_matrix, l2_normalize
from viewdiff.faces.records import FaceRecord

SWEEP_YAWS = np.arange(-90, 91, 10, dtype=np.float32)
SWEEP_CACHE_SIZE = 16     # (pitch, roll) sweeps kept per session: 16 x 19 x D floats
TEMPLATE_CACHE_SIZE = 256   # gallery templates' map forms (with their region vectors: 49 x D floats each) kept
TEMPLATE_MISMATCH = ("its kept face maps do not give its template (they were made by another embedder): "
                     "remove it and add its photos again")


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
    raw: np.ndarray  # [N] cosine of the photo's raw embedding to each identity's template
    transformed: np.ndarray | None = None  # [N] same for the transformed embedding (None: no model)
    sweep: np.ndarray | None = None  # [len(SWEEP_YAWS)] transformed similarity to the best identity along the sweep
    attention: np.ndarray | None = None  # [L, H, T, T]
    token_labels: list[str] = field(default_factory=list)
    volumes: dict[str, np.ndarray] = field(default_factory=dict)  # quantity -> [R, R, R] (z, y, x)
    keypoints_grid: np.ndarray | None = None  # [K, 3] the face's keypoints moved with the grid (x, y, z voxel units)
    surface_grid: np.ndarray | None = None  # [468, 3] the measured surface's vertices moved the same way (voxel units)
    surface_presence: float | None = None   # the face mesh's presence (< 0.5: a doubtful surface)
    model_ms: float = 0.0
    model_poses: int = 0  # target poses in the model batch (1, or 1 + the sweep when not cached)
    explanation: explain.Explanation | None = None   # raw / transformed split per region (None: no map or head)
    explain_ms: float = 0.0

    @property
    def best(self) -> int:
        return int(np.argmax(self.raw if self.transformed is None else self.transformed))


class PoseEngine:
    """The loaded pose transformer (or None: raw similarities only), its caches and its lock.

    The lock makes `last_visualization` belong to the forward that wrote it (Gradio runs callbacks
    in threads).
    """

    def __init__(self, model: torch.nn.Module | None, head: tuple[np.ndarray, np.ndarray] | None = None):
        """head: the embedder's affine head (weight [D, C*7*7], bias [D]; `FeatureMapModel.head`) to split the
        scores with; None: no `PoseResult.explanation`."""
        self.model = model
        self.takes_cell_depth = self.reads_map and "cell_depth" in inspect.signature(model.forward).parameters
        self.lock = threading.Lock()
        self.head = explain.HeadCells(*head) if head is not None else None
        self._templates: dict[tuple[str, int], tuple[explain.MapForm | None, str | None]] = {}
        self._backs: dict[bytes, np.ndarray] = {}   # a unit template -> head.back of it [C, 7, 7]
        self._photos: dict[bytes, tuple] = {}   # a photo's map -> (its raw map form, map_norms)
        self._templates_lock = threading.Lock()

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
            if self.takes_cell_depth:
                maps["cell_depth"] = torch.zeros(batch, c.map_size, c.map_size)
        self.model(torch.zeros(batch, embedding_dim), torch.zeros(batch, 3), torch.zeros(batch, 5, 3),
                   torch.zeros(batch, 3), **maps)

    def transform(self, record: FaceRecord, target: np.ndarray, gallery: Gallery,
                  sweeps: dict[tuple[float, float], np.ndarray] | None = None) -> PoseResult:
        """Run the pose transformer at ``target`` (and the yaw sweep unless ``sweeps`` holds it); gallery similarities."""
        names, templates = gallery.names, gallery.templates
        raw = cosine_matrix(record.embedding[None], templates)[0] if names else np.zeros(0, np.float32)
        if self.model is None:
            result = PoseResult(target, names, raw)
            self._explain(result, record, gallery, templates)
            return result
        sweeps = {} if sweeps is None else sweeps
        key = (float(target[1]), float(target[2]))
        poses = target[None] if key in sweeps else np.concatenate([target[None], sweep_poses(*key)])
        batch = len(poses)
        inputs = self._inputs(record, poses)
        surface = getattr(record, "surface", None)
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
            keypoints = surface_grid = None
            if volumes and getattr(self.model, "projection", None) is not None:   # where the grid shows them
                keypoints = self._in_grid(inputs["keypoints_3d"][:1], inputs)
                if surface is not None:
                    surface_grid = self._in_grid(torch.as_tensor(surface.vertices, dtype=torch.float32)[None], inputs)
            mix = self._mix(inputs, viz)
        output = out[0].float().cpu().numpy()
        out = l2_normalize(out.float().cpu().numpy())
        if key not in sweeps:
            put_bounded(sweeps, key, out[1:], SWEEP_CACHE_SIZE)
        result = PoseResult(target, names, raw, attention=attention, token_labels=labels, volumes=volumes,
                            keypoints_grid=keypoints, surface_grid=surface_grid, model_ms=model_ms, model_poses=batch,
                            surface_presence=None if surface is None else float(surface.presence))
        if names:  # transformed probe vs the gallery: the same templates as the raw scores
            result.transformed = cosine_matrix(out[:1], templates)[0]
            result.sweep = sweeps[key] @ templates[result.best]
        self._explain(result, record, gallery, templates, output, mix)
        return result

    def _in_grid(self, points: torch.Tensor, inputs: dict) -> np.ndarray:
        """Points [1, N, 3] of the face (template frame, at the source pose) moved as the projection layer moves
        row 0's grid (`keypoints_in_grid`), in voxel units (x, y, z): [N, 3]."""
        projection = self.model.projection
        moved = projection.keypoints_in_grid(points, inputs["source_pose"][:1], inputs["target_pose"][:1])[0]
        return ((moved + 1) / 2 * (projection.resolution - 1)).numpy()

    def _inputs(self, record: FaceRecord, poses: np.ndarray) -> dict[str, torch.Tensor]:
        """The model's keyword inputs for ``record`` at each target pose of ``poses`` [B, 3]."""
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
        surface = getattr(record, "surface", None)
        if self.takes_cell_depth and surface is not None:   # the depth under each map cell (NaN: off the face)
            inputs["cell_depth"] = torch.as_tensor(surface.cell_depth, dtype=torch.float32).expand(batch, -1, -1)
        return inputs

    def embed(self, record: FaceRecord, target: np.ndarray) -> np.ndarray | None:
        """The unit embedding of ``record`` moved to one ``target`` pose [3]: the model alone (no sweep, no
        visualisation, no explanation; the live camera's path). None without a model."""
        if self.model is None:
            return None
        inputs = self._inputs(record, np.asarray(target, np.float32)[None])
        with self.lock, torch.inference_mode():
            out = self.model(**inputs)
        return l2_normalize(out.float().cpu().numpy())[0]

    def _mix(self, inputs: dict, viz: dict) -> dict:
        """How row 0 of the forward just run is made (`explain.transformed_form`): gate, mirror weight, map change."""
        gate = getattr(self.model, "gate", None)
        weight = getattr(self.model, "mirror_weight", None)
        change = viz.get("map_change")
        return {"gate": 1.0 if gate is None else float(gate(inputs["source_pose"][:1], inputs["target_pose"][:1])),
                "mirror_weight": float(weight) if weight is not None and "src_mirror" in inputs else 0.0,
                "map_change": None if change is None else change[0].float().numpy()}

    def _template(self, gallery: Gallery, name: str, template: np.ndarray) -> tuple[explain.MapForm | None, str | None]:
        """(the template's map form, None) or (None, why there is none), cached per gallery entry."""
        key = gallery.maps_key(name)
        with self._templates_lock:
            if key is not None and key in self._templates:
                return self._templates[key]
        maps = gallery.face_maps(name) if key is not None else None
        if maps is None:
            return None, explain.MISSING_MAPS
        form = explain.template_form(self.head, maps["maps"], maps["maps_mirror"], maps["fused"])
        made = form.vector(self.head) / form.length(self.head)
        found = (form, None) if np.abs(made - template).max() < 1e-4 else (None, TEMPLATE_MISMATCH)
        with self._templates_lock:
            put_bounded(self._templates, key, found, TEMPLATE_CACHE_SIZE)
        return found

    def warm_explanations(self, gallery: Gallery) -> None:
        """Work out the gallery templates' map forms now (a few ms each), not in a visitor's first slider move."""
        if self.head is not None:
            for name, template in zip(gallery.names, gallery.templates):
                self._back(template)
                form, _ = self._template(gallery, name, template)
                if form is not None:
                    for part in form.parts:
                        form.cells(self.head, part)

    def _cached(self, cache: dict, key, make):
        with self._templates_lock:
            if key in cache:
                return cache[key]
        value = make()
        with self._templates_lock:
            put_bounded(cache, key, value, TEMPLATE_CACHE_SIZE)
        return value

    def _back(self, template: np.ndarray) -> np.ndarray:
        """head.back(template) [C, 7, 7], kept per template (a slider move then makes no pass over the head)."""
        return self._cached(self._backs, template.tobytes(), lambda: self.head.back(template[None])[0])

    def _photo(self, record: FaceRecord) -> tuple[explain.MapForm, tuple[float, float]]:
        """(the photo's raw map form, its map_norms), kept per photo."""
        return self._cached(self._photos, record.feature_map.tobytes(),
                            lambda: (explain.photo_form(self.head, record.feature_map),
                                     explain.map_norms(self.head, record.feature_map, record.feature_map_mirror)))

    def _explain(self, result: PoseResult, record: FaceRecord, gallery: Gallery, templates: np.ndarray,
                 output: np.ndarray | None = None, mix: dict | None = None) -> None:
        """Fill ``result.explanation`` (raw and, with ``output`` [D] (the model's row 0, not normalised) and
        ``mix``, transformed) when the embedder's head and the photo's maps are known."""
        if self.head is None or record.feature_map is None or not result.names:
            return
        start = time.perf_counter()
        head = self.head
        raw_form, norms = self._photo(record)
        back = np.stack([self._back(template) for template in templates])
        why = [self._template(gallery, name, templates[i]) for i, name in enumerate(result.names)]
        forms = [form for form, _ in why]
        e = explain.Explanation(result.names, explain.split_probe(head, raw_form, raw_form.norm, templates, back),
                                gallery_missing=[reason for _, reason in why],
                                gallery_faces=[gallery.face_maps(n).get("crop") if f is not None else None
                                               for n, f in zip(result.names, forms)])
        e.gallery_raw = explain.split_gallery(head, forms, record.embedding)
        if output is not None and mix is not None:
            vector_change = None
            if mix["map_change"] is None:   # a model that reads the vector: its change is no map through the head
                mixed = mix["gate"] * mix["mirror_weight"]
                vector_change = output - (1 - mixed) * record.embedding
                if mixed:
                    vector_change = vector_change - mixed * record.embedding_mirror
            form = explain.transformed_form(head, record.feature_map, record.feature_map_mirror, mix["gate"],
                                            mix["mirror_weight"], mix["map_change"], vector_change, norms)
            norm = float(np.linalg.norm(output))
            e.transformed = explain.split_probe(head, form, norm, templates, back)
            e.gallery_transformed = explain.split_gallery(head, forms, output / norm)
        result.explanation = e
        result.explain_ms = (time.perf_counter() - start) * 1000
