"""Why two faces match, region by region: an exact split of every demo score over the face's 7x7 regions.

The shipped embedder's head is affine over its last map (`viewdiff.faces.feature_map`):
``e = W @ m.reshape(-1) + b`` with ``m [C, 7, 7]`` flattened channel-major, so the columns of ``W`` that
read cell ``k = 7 * row + col`` are ``W[:, ch * 49 + k]`` (strided; `HeadCells.by_cell` gathers them). A
unit embedding is ``s = e / |e|``, so its cosine with a unit template ``g`` is exactly

    cos(s, g) = sum_k (W_k m_k) . g / |e|  +  b . g / |e|           (one term per face region + a constant)

**Every vector the demo compares is of that form** ("map form", `MapForm`): a sum of maps through the
head plus a multiple of the bias, ``x = sum_parts W P + W~ Q + beta * b``, where ``W~`` reads a mirror
image's map flipped back onto the photo's face regions (cell ``(r, c)`` of the flipped map is read by the
columns of cell ``(r, 6 - c)``), so each term still belongs to one region of the photo's face:

- the raw probe: ``P = m / |e|``, ``beta = 1 / |e|``;
- the transformed probe of the shipped map model (`EnhancedTransformerDecoderOnly3D` with
  ``map_channels``): ``out = src + gate * (W @ dm + w * (src_mirror - src))`` (``dm``: the map change the
  model folds from the photo's cell tokens, through the head *without* bias; ``w``: ``mirror_weight``;
  ``gate``: `PoseGate` of the yaw change), i.e. three named parts ``photo`` ``(1 - gate w) m / |e|``,
  ``mirror view`` ``gate w m' / |e'|`` (the mirror image's map, flipped back) and ``map change``
  ``gate dm``, with ``beta = (1 - gate w) / |e| + gate w / |e'|``. A model that reads the embedding vector
  instead of the map adds ``gate * head(...)``, which is no map through the head: it is kept whole as
  the named non-region term `VECTOR_CHANGE` (``Split.other``), so the sum stays exact;
- a gallery template, the normalised sum of its photos' unit embeddings (``g = S / |S|``,
  ``S = sum_p s_p``; a flip-fused photo contributes ``(s_p + s'_p) / |s_p + s'_p|``):
  ``S = W (sum_p m_p / |e_p|) + W~ (sum_p m'_p / |e'_p|) + (sum_p 1 / |e_p| ...) b`` with the per-photo
  coefficients of `photo_form` (`template_form` adds them up), so a template is one map form as well.

Hence for a probe ``x`` and a template ``S`` (both map forms):

- **probe side** (`split_probe`): ``cos = sum_k (W_k x_k) . g / |x| + beta_x b . g / |x| (+ others)``;
- **gallery side** (`split_gallery`): ``cos = sum_k' x^ . (W_k' S_k') / |S| + beta_S b . x^ / |S|``
  (computed as ``S_k' . (W^T x^)_k'``: one back-projection of the unit probe);
- **both** (`pair_table`): ``cos = sum_{k,k'} (W_k x_k) . (W_k' S_k') / (|x||S|)`` plus the rows and
  columns of the bias (and of any non-region term); summing its columns gives the probe side, its rows
  the gallery side.

Each split is exact up to float rounding (the tests check 1e-5 against the demo's own scores on real
faces); ``Split.total`` is the sum. NumPy only: the per-slider-move cost is a few small matrix products.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PHOTO, MIRROR, CHANGE = "photo", "mirror view", "map change"
VECTOR_CHANGE = "transformer change (whole face, not per region)"   # a vector model's head output
MISSING_MAPS = ("this gallery entry was enrolled without its face maps: remove it and add its photos again "
                "to see its side of the split")


class HeadCells:
    """The embedder's affine head ``e = weight @ map.reshape(-1) + bias`` (weight [D, C*S*S], bias [D]), by cell.

    ``by_cell [S*S, C, D]``: the head's columns that read each cell (row-major cells, channel-major
    flattening: cell k's columns are ``weight[:, ch * S*S + k]``).
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, size: int = 7):
        weight = np.asarray(weight, np.float32)
        self.dim, features = weight.shape
        if features % (size * size):
            raise ValueError(f"the head reads {features} features, not a multiple of {size}x{size} cells: "
                             "pass the head of an embedder with a 7x7 map (FeatureMapModel.head)")
        self.size, self.channels = size, features // (size * size)
        self.weight, self.bias = weight, np.asarray(bias, np.float32).reshape(self.dim)
        self.by_cell = np.ascontiguousarray(weight.reshape(self.dim, self.channels, size * size).transpose(2, 1, 0))

    def embed(self, maps: np.ndarray) -> np.ndarray:
        """maps [B, C, S, S] -> [B, D] the head's output ``W m + b`` (not normalised)."""
        maps = np.asarray(maps, np.float32)
        return maps.reshape(len(maps), -1) @ self.weight.T + self.bias

    def regions(self, maps: np.ndarray, mirrored: bool = False) -> np.ndarray:
        """maps [B, C, S, S] -> [B, S, S, D]: each cell's vector ``W_k m_k`` (they add up to ``W m``).

        mirrored: the maps are a mirror image's, flipped back onto the photo's face regions (as
        `FeatureMapModel.run_with_mirror` gives them); cell (r, c) is then read by the head's columns of
        cell (r, S-1-c), where the mirror image had it.
        """
        maps = np.asarray(maps, np.float32)
        if mirrored:
            maps = maps[..., ::-1]
        b, s = len(maps), self.size
        cells = np.matmul(maps.reshape(b, self.channels, s * s).transpose(2, 0, 1), self.by_cell)   # [S*S, B, D]
        out = cells.transpose(1, 0, 2).reshape(b, s, s, self.dim)
        return out[:, :, ::-1] if mirrored else out

    def back(self, vectors: np.ndarray) -> np.ndarray:
        """vectors [B, D] -> [B, C, S, S]: ``W^T v``, so that ``(map * back(v)).sum() == (W m) . v``."""
        vectors = np.asarray(vectors, np.float32)
        return (vectors @ self.weight).reshape(len(vectors), self.channels, self.size, self.size)


@dataclass
class MapForm:
    """A vector as maps through the head: ``sum(W P for P in parts) + beta * bias + sum(other)``.

    parts: name -> (map [C, S, S], mirrored) (mirrored: a mirror image's map flipped back, `HeadCells.regions`);
    other: name -> [D], terms that are no map through the head (a vector model's change).
    """

    parts: dict[str, tuple[np.ndarray, bool]]
    beta: float
    other: dict[str, np.ndarray] = field(default_factory=dict)
    norm: float | None = None   # the length of `vector`, when worked out already (`template_form`)
    _cells: dict = field(default_factory=dict, repr=False)   # name -> [S, S, D] (`cells`), worked out once

    def length(self, head: HeadCells) -> float:
        if self.norm is None:
            self.norm = float(np.linalg.norm(self.vector(head)))
        return self.norm

    def cells(self, head: HeadCells, name: str) -> np.ndarray:
        """[S, S, D] part ``name``'s vector per face region (`HeadCells.regions`), kept: a cached template's
        side of a split then costs S*S*D multiply-adds per probe, no pass over the head."""
        if name not in self._cells:
            part, mirrored = self.parts[name]
            self._cells[name] = head.regions(np.asarray(part, np.float32)[None], mirrored)[0]
        return self._cells[name]

    def vector(self, head: HeadCells) -> np.ndarray:
        """[D] the vector this form stands for."""
        out = self.beta * head.bias + sum((v for v in self.other.values()), np.zeros(head.dim, np.float32))
        for part, mirrored in self.parts.values():
            flat = np.asarray(part, np.float32)
            out = out + head.embed((flat[..., ::-1] if mirrored else flat)[None])[0] - head.bias
        return out


def photo_form(head: HeadCells, feature_map: np.ndarray, feature_map_mirror: np.ndarray | None = None,
               fused: bool = False) -> MapForm:
    """The unit embedding of one photo as a map form: ``s = (W m + b) / |W m + b|``, or with ``fused`` the
    flip-fused ``(s + s') / |s + s'|`` (s': the mirror image's, its map given flipped back).

    feature_map, feature_map_mirror: [C, S, S] (`FaceRecord.feature_map`, `.feature_map_mirror`).
    """
    m = np.asarray(feature_map, np.float32)
    e = head.embed(m[None])[0]
    n = float(np.linalg.norm(e))
    if not fused:
        return MapForm({PHOTO: (m / n, False)}, 1.0 / n, norm=float(np.linalg.norm(e / n)))   # norm: 1 up to rounding
    if feature_map_mirror is None:
        raise ValueError("a flip-fused embedding needs the mirror image's map (feature_map_mirror)")
    mm = np.asarray(feature_map_mirror, np.float32)
    e_mirror = head.embed(mm[..., ::-1][None])[0]
    n_mirror = float(np.linalg.norm(e_mirror))
    fused_norm = float(np.linalg.norm(head.embed(m[None])[0] / n + e_mirror / n_mirror))
    return MapForm({PHOTO: (m / (n * fused_norm), False), MIRROR: (mm / (n_mirror * fused_norm), True)},
                   (1.0 / n + 1.0 / n_mirror) / fused_norm)


def template_form(head: HeadCells, maps: np.ndarray, maps_mirror: np.ndarray | None = None,
                  fused: np.ndarray | None = None) -> MapForm:
    """A gallery template's sum ``S`` of its photos' unit embeddings as one map form (``template = S / |S|``).

    maps, maps_mirror: [P, C, S, S] the photos' maps (the mirror images', flipped back); fused [P] bool:
    which photos were enrolled flip-fused (default: none).
    """
    maps = np.asarray(maps, np.float32)
    fused = np.zeros(len(maps), bool) if fused is None else np.asarray(fused, bool)
    photo = np.zeros(maps.shape[1:], np.float32)
    mirror, beta = np.zeros_like(photo), 0.0
    for i, m in enumerate(maps):
        form = photo_form(head, m, None if maps_mirror is None else maps_mirror[i], bool(fused[i]))
        photo += form.parts[PHOTO][0]
        mirror += form.parts[MIRROR][0] if MIRROR in form.parts else 0
        beta += form.beta
    parts = {PHOTO: (photo, False), **({MIRROR: (mirror, True)} if fused.any() else {})}
    form = MapForm(parts, beta)
    form.length(head)
    return form


def map_norms(head: HeadCells, feature_map: np.ndarray, feature_map_mirror: np.ndarray | None) -> tuple[float, float]:
    """(|W m + b|, |W m' + b|) of a photo and its mirror image (map given flipped back; NaN without one)."""
    maps = [np.asarray(feature_map, np.float32)]
    if feature_map_mirror is not None:
        maps.append(np.asarray(feature_map_mirror, np.float32)[..., ::-1])
    norms = np.linalg.norm(head.embed(np.stack(maps)), axis=1)
    return float(norms[0]), float(norms[1]) if len(norms) > 1 else float("nan")


def transformed_form(head: HeadCells, feature_map: np.ndarray, feature_map_mirror: np.ndarray | None,
                     gate: float, mirror_weight: float, map_change: np.ndarray | None = None,
                     vector_change: np.ndarray | None = None, norms: tuple[float, float] | None = None) -> MapForm:
    """The pose transformer's output ``src + gate * (W dm / |W m + b| + mirror_weight * (src_mirror - src))`` as a map
    form (the map change dm through the head without bias, in unit-embedding terms: divided by the photo's raw norm).

    mirror_weight: 0 when the model has no mirror view or got no ``src_mirror``; gate: 1 without a pose
    gate. map_change [C, S, S]: a map model's change (``last_visualization["map_change"]``, through the
    head without bias); vector_change [D]: a vector model's ``gate * head(...)``, kept whole (`VECTOR_CHANGE`);
    norms: the photo's `map_norms` (worked out when not given).
    """
    n, n_mirror = map_norms(head, feature_map, feature_map_mirror) if norms is None else norms
    a, c = 1.0 - gate * mirror_weight, gate * mirror_weight
    parts = {PHOTO: (a * np.asarray(feature_map, np.float32) / n, False)}
    beta = a / n
    if feature_map_mirror is not None:   # (a zero part when the gate is shut: the same parts at every pose)
        parts[MIRROR] = (c * np.asarray(feature_map_mirror, np.float32) / n_mirror, True)
        beta += c / n_mirror
    if map_change is not None:
        parts[CHANGE] = (gate * np.asarray(map_change, np.float32) / n, False)
    other = {} if vector_change is None else {VECTOR_CHANGE: np.asarray(vector_change, np.float32)}
    return MapForm(parts, beta, other)


@dataclass
class Split:
    """Cosine scores split exactly: ``total == regions.sum((1, 2)) + constant + sum(other.values())``.

    regions: [N, S, S] what each face region adds (row 0: top of the aligned face, column 0: its left in
    the image); parts: name -> [N, S, S] the named components of ``regions`` (they add up to it);
    constant: [N] the head's bias term; other: name -> [N] terms that belong to no region.
    """

    regions: np.ndarray
    constant: np.ndarray
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    other: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def total(self) -> np.ndarray:
        """[N] the scores the terms add up to."""
        return self.regions.sum((1, 2)) + self.constant + sum(self.other.values(), np.zeros_like(self.constant))

    def row(self, i: int) -> "Split":
        """The split of score i alone (arrays with a leading 1)."""
        pick = slice(i, i + 1)
        return Split(self.regions[pick], self.constant[pick], {k: v[pick] for k, v in self.parts.items()},
                     {k: v[pick] for k, v in self.other.items()})


def split_probe(head: HeadCells, form: MapForm, norm: float, templates: np.ndarray,
                back: np.ndarray | None = None) -> Split:
    """The probe side: how each of the probe's face regions adds to its cosine with each unit template.

    form: the probe as a map form, norm: the length of the vector it was normalised by (``|form.vector|``,
    or the model output's own length); templates [N, D] unit; back [N, C, S, S]: ``head.back(templates)``
    when the caller keeps it (a part's terms are then C*S*S multiply-adds per template) -> Split with
    [N, S, S] regions: part P's term in region k is ``P_k . (W^T g)_k / norm``.
    """
    templates = np.asarray(templates, np.float32)
    back = head.back(templates) if back is None else back
    s = head.size
    parts = {}
    for name, (part, mirrored) in form.parts.items():
        seen = back[..., ::-1] if mirrored else back   # a flipped-back mirror map meets the mirrored cells
        parts[name] = np.einsum("chw,nchw->nhw", np.asarray(part, np.float32), seen) / norm
    regions = sum(parts.values(), np.zeros((len(templates), s, s), np.float32))
    constant = form.beta * (templates @ head.bias) / norm
    other = {name: templates @ v / norm for name, v in form.other.items()}
    return Split(regions, constant, parts, other)


def split_gallery(head: HeadCells, forms: list[MapForm | None], probe_unit: np.ndarray) -> Split:
    """The gallery side: how each region of each template's faces adds to its cosine with the unit probe.

    forms: one template map form per identity (None: its maps are unknown; its row is NaN), its region
    vectors kept in the form (`MapForm.cells`); probe_unit [D] -> Split with [N, S, S] regions (parts
    ``photo`` and ``mirror view``): ``(W_k' S_k') . x^ / |S|``.
    """
    probe_unit = np.asarray(probe_unit, np.float32)
    bias_dot = float(head.bias @ probe_unit)
    s, n = head.size, len(forms)
    parts = {PHOTO: np.full((n, s, s), np.nan, np.float32), MIRROR: np.full((n, s, s), np.nan, np.float32)}
    constant = np.full(n, np.nan, np.float32)
    for i, form in enumerate(forms):
        if form is None:
            continue
        norm = form.length(head)
        for name in (PHOTO, MIRROR):
            parts[name][i] = form.cells(head, name) @ probe_unit / norm if name in form.parts else 0
        constant[i] = form.beta * bias_dot / norm
    return Split(parts[PHOTO] + parts[MIRROR], constant, parts)


def pair_table(head: HeadCells, probe: MapForm, probe_norm: float, template: MapForm) -> tuple[np.ndarray, list[str]]:
    """Both sides at once for one pair: ``[R, S*S + 1]`` terms ``(W_k x_k) . (W_k' S_k') / (|x| |S|)`` whose
    sum is the cosine; rows: the probe's cells (row-major), ``constant`` and its non-region terms; columns:
    the template's cells and ``constant``. Summing over columns gives `split_probe`, over rows `split_gallery`.
    Returns (table, row labels)."""
    s = head.size
    probe_cells = sum((probe.cells(head, name) for name in probe.parts),
                      np.zeros((s, s, head.dim), np.float32)).reshape(s * s, -1)
    rows = np.concatenate([probe_cells, probe.beta * head.bias[None]] + [v[None] for v in probe.other.values()])
    gallery_cells = sum((template.cells(head, name) for name in template.parts),
                        np.zeros((s, s, head.dim), np.float32)).reshape(s * s, -1)
    cols = np.concatenate([gallery_cells, template.beta * head.bias[None]])
    table = (rows.astype(np.float64) @ cols.T.astype(np.float64)) / (probe_norm * template.length(head))
    labels = [f"{r},{c}" for r in range(s) for c in range(s)] + ["constant"] + list(probe.other)
    return table, labels


@dataclass
class Explanation:
    """Every score of a `viewdiff.demo.engine.PoseResult`, split exactly (one row per gallery identity).

    raw / transformed: the probe side (`split_probe`) of ``PoseResult.raw`` / ``.transformed``;
    transformed.parts: ``photo`` (what is left of the photo), ``mirror view`` (the mirrored photo the
    model mixes in), ``map change`` (the change the model makes to the photo's map); transformed.other:
    terms that are no map (`VECTOR_CHANGE`). gallery_raw / gallery_transformed: the same scores split over
    the gallery faces' regions (NaN rows where ``gallery_missing[i]`` says why). transformed and
    gallery_transformed are None without a model.
    """

    names: list[str]
    raw: Split
    transformed: Split | None = None
    gallery_raw: Split | None = None
    gallery_transformed: Split | None = None
    gallery_missing: list[str | None] = field(default_factory=list)
    gallery_faces: list[np.ndarray | None] = field(default_factory=list)   # [112, 112, 3] a photo of each identity

    def change(self, i: int) -> tuple[np.ndarray, float, dict[str, float]]:
        """What the transformer changed in identity i's score: ([S, S] per region, constant, non-region
        terms); they add up to ``transformed - raw``."""
        t, r = self.transformed, self.raw
        return (t.regions[i] - r.regions[i], float(t.constant[i] - r.constant[i]),
                {k: float(v[i]) for k, v in t.other.items()})
