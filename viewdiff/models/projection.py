"""Lightweight 3D face projection: keypoints + embedding -> voxel grid -> rotate -> volume render.

Coordinates: the grid spans [-1, 1]^3 with voxel centres at `linspace(-1, 1, R)` on each axis;
a volume `[B, C, R, R, R]` is indexed `[z, y, x]` (depth, down, right), the layout of
`F.grid_sample`. The camera looks along +z, so index 0 of the depth axis is the front.
Angles are degrees `(yaw, pitch, roll)`; a pose's rotation is the face frame's `R(pose)` of
`viewdiff.models.rotation` (the one definition, shared with `viewdiff.faces.geometry`), and the grid turns by
`pose_change` = R(target) R(source)^T, conjugated into the grid's frame (x right, y down, z away from the
camera: the face template's frame with y and z flipped, `TEMPLATE_TO_GRID`).

Two inputs (`LightweightFaceProjectionLayer`): an embedding vector ``[B, D]`` (the earlier models: a code of
the vector modulates a grid shaped by the keypoints), or the embedder's spatial map ``[B, C, 7, 7]``
(``map_size``): each cell's features are lifted along depth to the voxels behind it, the keypoints say where
the face surface is, and the rendered target view is read back at the 7x7 cells. In the map mode the grid
is also the aligned crop's frame: the face template scaled by `GRID_PER_TEMPLATE`, so the whole 112x112 crop
fits and slices show the face upright with its nose at the front.

Memory and compute grow with R^3. At its peak a forward holds about 44 float32 values per voxel and
sample (keypoint splats, hidden activations, the feature + density grid before and after rotation,
the sampling grid; K=5, hidden=16, C=8). Measured with the torch profiler (benchmarks/bench_model.py):
0.09 / 0.69 / 5.5 MiB per sample for R = 8 / 16 / 32 (x8 per doubling of R: R=64 ~ 44 MiB); training
keeps about twice that for autograd, so R=32 at batch 128 needs ~1.5 GB.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from viewdiff.models.crop_frame import CROP_CENTRE, CROP_SCALE, CROP_SIZE  # noqa: F401  (re-exported: the crop's
# frame, template = (pixel - CROP_CENTRE) * CROP_SCALE, y flipped; viewdiff/models/crop_frame.py)
from viewdiff.models.rotation import rotation_entries


GRID_PER_TEMPLATE = 0.28   # grid units per template unit: the whole crop (+-2.7 x, -2.0..3.5 y) fits in [-1, 1]
TEMPLATE_TO_GRID = torch.diag(torch.tensor([1.0, -1.0, -1.0]))   # y up -> down, z to camera -> away (a rotation)


def rotation_matrix(angles_deg: torch.Tensor) -> torch.Tensor:
    """angles [B, 3] (yaw, pitch, roll; degrees) -> the face-frame rotations R(pose) [B, 3, 3].

    The package's one rotation (`viewdiff.models.rotation`, equal to `viewdiff.faces.geometry.angles_to_rotation`):
    ``keypoints_3d`` of a face at `pose` = template @ R(pose)^T.
    """
    rad = torch.deg2rad(angles_deg.float())
    (cy, cp, cr), (sy, sp, sr) = rad.cos().unbind(-1), rad.sin().unbind(-1)
    return torch.stack(rotation_entries(cy, sy, cp, sp, cr, sr), dim=-1).view(*angles_deg.shape[:-1], 3, 3)


def pose_change(source_angles: torch.Tensor, target_angles: torch.Tensor) -> torch.Tensor:
    """The rotation [B, 3, 3] that takes a face at `source_angles` to `target_angles` (degrees [B, 3]), in the
    face frame: ``R(target) R(source)^T``, so keypoints_3d at the source pose, rotated by it, are the
    keypoints_3d of the target pose (to frontal: the template itself).
    """
    target_rot, source_rot = rotation_matrix(torch.cat([target_angles, source_angles])).chunk(2)
    return target_rot @ source_rot.transpose(1, 2)


def voxel_centres(d: int, h: int, w: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(x, y, z) of the voxel centres of a [D, H, W] grid spanning [-1, 1]^3: [D * H * W, 3], x fastest.

    These are the base points of `F.affine_grid(..., align_corners=True)`.
    """
    axes = [torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) for n in (d, h, w)]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([x, y, z], dim=-1).reshape(-1, 3)


def rotate_volume(volume: torch.Tensor, rotation: torch.Tensor, centres: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate the content of volume [B, C, D, H, W] by rotation [B, 3, 3] about the grid centre.

    Content at point p moves to `rotation @ p` (trilinear `F.grid_sample`, zeros outside the grid): the
    voxel at q samples the input at `rotation^T @ q`. The sampling grid equals
    `F.affine_grid([rotation^T | 0], align_corners=True)` but is one matmul of the voxel centres
    (`centres` [D * H * W, 3], see `voxel_centres`; built when None) with all B matrices, ~20x faster
    on CPU than affine_grid's batched 4x3 products.
    """
    b, _, d, h, w = volume.shape
    if centres is None:
        centres = voxel_centres(d, h, w, volume.device, volume.dtype)
    stacked = rotation.to(volume.dtype).transpose(0, 1).reshape(3, 3 * b)  # [3, B * 3]: rotation[k] at cols 3k..
    grid = (centres @ stacked).view(d, h, w, b, 3).movedim(3, 0)  # [B, D, H, W, 3]
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def cell_grid(size: int) -> torch.Tensor:
    """Grid (x, y) of the centres of the size x size cells of the aligned crop: [size * size, 2], row-major."""
    px = (torch.arange(size, dtype=torch.float32) + 0.5) * (CROP_SIZE / size)
    py, px = torch.meshgrid(px, px, indexing="ij")
    x = (px - CROP_CENTRE[0]) * CROP_SCALE * GRID_PER_TEMPLATE
    y = (py - CROP_CENTRE[1]) * CROP_SCALE * GRID_PER_TEMPLATE    # template y is up, the grid's down
    return torch.stack([x, y], dim=-1).reshape(-1, 2)


def grid_to_crop(xy: torch.Tensor) -> torch.Tensor:
    """Grid (x, y) [..., 2] -> the crop's `F.grid_sample` coordinates ([-1, 1] over its 112 pixels)."""
    scale = 1.0 / (CROP_SCALE * GRID_PER_TEMPLATE)
    centre = xy.new_tensor(CROP_CENTRE)
    return (xy * scale + centre) / (CROP_SIZE / 2) - 1


# The mean measured face surface (MediaPipe Face Mesh, `viewdiff.faces.face_mesh.FaceSurface.cell_depth`) under the
# 7 x 7 cells of the aligned crop: template-frame depth (towards the camera), NaN where fewer than half of the 5,000
# CFP frontal photos have the face under the cell. What the map mode places a face's features on when its own
# surface is not given (`cell_depth=None`): the same shape for every face.
MEAN_CELL_DEPTH = (
    (math.nan,) * 7,
    (math.nan, math.nan, 0.23, 0.31, 0.23, math.nan, math.nan),
    (math.nan, -0.24, 0.29, 0.39, 0.29, -0.23, math.nan),
    (math.nan, -0.49, -0.11, 0.42, -0.09, -0.47, math.nan),
    (math.nan, -0.46, 0.02, 0.85, 0.03, -0.42, math.nan),
    (math.nan, -0.83, -0.17, 0.27, -0.17, -0.81, math.nan),
    (math.nan, math.nan, -0.52, -0.12, -0.48, math.nan, math.nan))


def splat(points: torch.Tensor, values: torch.Tensor, resolution: int) -> torch.Tensor:
    """Trilinear splatting: points [B, P, 3] (grid x, y, z in [-1, 1]) carrying values [B, P, C] -> a volume
    [B, C, R, R, R] (indexed [z, y, x], voxel centres at linspace(-1, 1, R)); each point's values go to its 8
    neighbouring voxels with the trilinear weights (a point outside the grid adds nothing)."""
    b, n, c = values.shape
    r = resolution
    pos = (points + 1) * (r - 1) / 2   # [B, P, 3] in voxel units (x, y, z)
    base = pos.floor()
    frac = pos - base
    volume = values.new_zeros(b, c, r ** 3)
    for corner in range(8):
        offset = torch.tensor([(corner >> k) & 1 for k in range(3)], device=points.device, dtype=points.dtype)
        idx = base + offset                                            # [B, P, 3]
        weight = torch.where(offset.bool(), frac, 1 - frac).prod(-1)   # [B, P]
        inside = ((idx >= 0) & (idx <= r - 1)).all(-1)
        idx = idx.clamp(0, r - 1).long()
        flat = (idx[..., 2] * r + idx[..., 1]) * r + idx[..., 0]       # [B, P] into [z, y, x]
        contribution = (values * (weight * inside)[..., None]).transpose(1, 2)   # [B, C, P]
        volume.scatter_add_(2, flat[:, None, :].expand(-1, c, -1), contribution)
    return volume.view(b, c, r, r, r)


class LightweightFaceProjectionLayer(nn.Module):
    """Lift (keypoints, embedding) to a voxel grid, rotate it from source to target pose, render it.

    forward(features [B, feature_dim], keypoints [B, K, 3] (canonical face frame, about [-1, 1]),
    source_angles [B, 3], target_angles [B, 3] or None = frontal) -> [B, feature_dim].
    Per voxel, an MLP reads its coordinates and the Gaussian splats of the K keypoints, modulated by
    a code of the features, and outputs C feature channels plus a density. Both grids are rotated by
    `R(target) @ R(source)^T`, composited front to back along depth (alpha = 1 - exp(-density * step))
    to [B, C, R, R], pooled to at most `render_pool`^2 cells and projected to feature_dim.
    Rows whose keypoints are not all finite give a zero output (no geometry for that sample).
    With `map_size` (the map mode, module docstring): features [B, feature_dim, S, S] (the embedder's map,
    feature_dim = its channels) and `cell_depth` [B, S, S] (the face's measured surface under each cell, NaN off
    the face; None: `MEAN_CELL_DEPTH`, one shape for every face) -> [B, feature_dim, S, S]. 2D -> 3D: each cell's
    code (a Linear of its features) is placed at its point on the surface, (x, y) of the cell centre and its depth,
    not smeared along depth; the points are turned by `R(target) @ R(source)^T` about the centre of the 5
    keypoints (the template's origin, which the alignment anchors) and splatted into the grid (`splat`); 3D -> 2D:
    the grid is composited front to back, so a turned-away point is hidden behind the surface in front of it, and
    read at the S x S cell centres: the rendered code and the coverage (how much seen surface lies on the cell's
    line of sight), projected back per cell. A cell of the target view with no coverage is one the photo never
    saw (the far side of a profile): the model knows which parts of the target view are seen and which are not.
    Memory and time grow with R^3 (`voxel_resolution`; numbers in the module docstring).
    After each forward, `last_voxels` [B, C, R, R, R] and `last_density` [B, 1, R, R, R] (rotated,
    detached) hold the grids for visualisation.
    """

    def __init__(self, feature_dim: int, num_keypoints: int = 5, voxel_resolution: int = 16,
                 voxel_channels: int = 8, hidden: int = 16, sigma: float = 0.25, render_pool: int = 8,
                 map_size: int | None = None):
        super().__init__()
        self.map_size = map_size
        self.num_keypoints, self.resolution, self.channels = num_keypoints, voxel_resolution, voxel_channels
        coords_t = voxel_centres(voxel_resolution, voxel_resolution, voxel_resolution).t().contiguous()
        self.register_buffer("coords_t", coords_t, persistent=False)  # [3, R^3], voxel centres (x, y, z)
        self.register_buffer("coords_sq", coords_t.pow(2).sum(0), persistent=False)  # [R^3]
        self.pool = min(render_pool, voxel_resolution)
        if map_size:   # the surface mode: a code per cell, placed on the face (class docstring)
            self.register_buffer("cells", cell_grid(map_size), persistent=False)   # [S*S, 2] grid (x, y)
            self.register_buffer("mean_depth", torch.tensor(MEAN_CELL_DEPTH, dtype=torch.float32), persistent=False)
            self.cell_code = nn.Linear(feature_dim, voxel_channels)
            # a placed point's opacity: 1 - exp(-softplus(.)) = 0.82 at init whatever R (`surface_forward`)
            self.opacity = nn.Parameter(torch.tensor(1.5))
            self.project = nn.Linear(voxel_channels + 1, feature_dim)   # per cell: the rendered code + its coverage;
            nn.init.zeros_(self.project.weight)                          # zero when the layer stands alone (the
            nn.init.zeros_(self.project.bias)                            # transformer starts it small)
        else:   # the vector mode: an MLP per voxel over its coordinates and the keypoints' splats
            self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)))
            self.coord_proj = nn.Linear(3, hidden)
            self.splat_proj = nn.Linear(num_keypoints, hidden, bias=False)
            self.feature_code = nn.Linear(feature_dim, hidden)
            self.voxel_out = nn.Linear(hidden, voxel_channels + 1)
            self.project = nn.Linear(voxel_channels * self.pool ** 2, feature_dim)
        self.last_voxels: torch.Tensor | None = None
        self.last_density: torch.Tensor | None = None

    def voxelize(self, features: torch.Tensor, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (voxels [B, C, R, R, R], density [B, 1, R, R, R] >= 0), in the canonical frame.

        Computed channels-first ([B, channels, R^3]) so the result reshapes to a volume without a copy.
        """
        b, r, coords_t = features.shape[0], self.resolution, self.coords_t
        # squared keypoint-voxel distances |k|^2 - 2 k.c + |c|^2: [B, K, R^3]
        dist2 = torch.baddbmm(keypoints.pow(2).sum(-1, keepdim=True) + self.coords_sq, keypoints,
                              coords_t.expand(b, -1, -1), alpha=-2)
        splats = torch.exp(dist2 * (-0.5 * torch.exp(-2 * self.log_sigma)))
        # hidden = SiLU(W_coord @ coords + W_splat @ splats + b_coord + code(features)): [B, hidden, R^3]
        per_voxel = torch.cat([coords_t.expand(b, -1, -1), splats], dim=1)  # [B, 3 + K, R^3]
        weight = torch.cat([self.coord_proj.weight, self.splat_proj.weight], dim=1)  # [hidden, 3 + K]
        bias = self.coord_proj.bias.view(1, -1, 1) + self.voxel_code(features)  # [B, hidden, 1 or R^3]
        h = F.silu(torch.baddbmm(bias, weight.expand(b, -1, -1), per_voxel), inplace=True)
        out = torch.baddbmm(self.voxel_out.bias.view(1, -1, 1), self.voxel_out.weight.expand(b, -1, -1), h)
        out = out.view(b, self.channels + 1, r, r, r)
        return out[:, :-1], F.softplus(out[:, -1:])

    def voxel_code(self, features: torch.Tensor) -> torch.Tensor:
        """The features' code per voxel [B, hidden, 1]: one code for the whole grid (the vector mode)."""
        return self.feature_code(features).unsqueeze(-1)

    def grid_frame(self, keypoints: torch.Tensor, source_angles: torch.Tensor,
                   target_angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints [B, K, 3] (template frame) and the rotation [B, 3, 3] of the grid, in the grid's frame.

        The template's frame is turned into the grid's (`TEMPLATE_TO_GRID`, its own inverse: y down, z away
        from the camera, so depth index 0 is the front the renderer sees first) and the map mode also scales
        it (`GRID_PER_TEMPLATE`: the whole crop fits); the grid rotates by `pose_change` conjugated into that
        frame, so a face at the source pose comes to the target pose.
        """
        flip = TEMPLATE_TO_GRID.to(keypoints.device, keypoints.dtype)
        scale = GRID_PER_TEMPLATE if self.map_size else 1.0
        return keypoints @ flip * scale, flip @ pose_change(source_angles, target_angles) @ flip

    def keypoints_in_grid(self, keypoints: torch.Tensor, source_angles: torch.Tensor,
                          target_angles: torch.Tensor) -> torch.Tensor:
        """The keypoints [B, K, 3] (template frame, at the source pose) moved as the grid is moved, in grid
        coordinates [-1, 1] (x, y, z): where `last_voxels` shows them."""
        keypoints, rotation = self.grid_frame(keypoints, source_angles, target_angles)
        return keypoints @ rotation.transpose(1, 2)

    def render(self, voxels: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
        """Front-to-back alpha compositing along depth: [B, C, R, R, R] -> [B, C, R, R]."""
        alpha = 1.0 - torch.exp(-density * (2.0 / (self.resolution - 1)))
        transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1.0 - alpha[:, :, :-1]], dim=2),
                                      dim=2)
        return (transmittance * alpha * voxels).sum(dim=2)

    def surface_points(self, cell_depth: torch.Tensor | None, batch: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The cells' points on the face surface in the grid's frame at the source pose [B, S*S, 3] (x, y, z; zeros
        off the face) and which cells are on it [B, S*S] (finite depth)."""
        depth = self.mean_depth.expand(batch, -1, -1) if cell_depth is None else cell_depth
        depth = depth.reshape(batch, -1).to(dtype)
        on_face = torch.isfinite(depth)
        z = -torch.where(on_face, depth, torch.zeros_like(depth)) * GRID_PER_TEMPLATE   # towards the camera -> front
        points = torch.cat([self.cells.to(dtype).expand(batch, -1, -1), z[..., None]], dim=-1)
        return points, on_face

    def surface_forward(self, features: torch.Tensor, rotation: torch.Tensor,
                        cell_depth: torch.Tensor | None) -> torch.Tensor:
        """The map mode (class docstring): features [B, C, S, S], rotation [B, 3, 3] in the grid's frame ->
        [B, C, S, S]; sets `last_voxels` / `last_density` (the grid at the target pose)."""
        at = self.target_view(features, rotation, cell_depth)
        out = self.project(at.transpose(1, 2)).transpose(1, 2)
        return out.reshape(len(features), -1, self.map_size, self.map_size)

    def target_view(self, features: torch.Tensor, rotation: torch.Tensor,
                    cell_depth: torch.Tensor | None) -> torch.Tensor:
        """The rendered target view at the S x S cells, [B, V + 1, S*S]: the cells' codes as seen from the target
        pose (front to back, the nearest surface hiding what is behind it) and, last, the coverage in [0, 1)."""
        b = len(features)
        points, on_face = self.surface_points(cell_depth, b, features.dtype)
        turned = points @ rotation.transpose(1, 2)   # about the grid's origin: the centre of the 5 keypoints
        code = self.cell_code(features.flatten(2).transpose(1, 2))   # [B, S*S, V]
        step = 2.0 / (self.resolution - 1)   # render's alpha = 1 - exp(-density * step): a whole point's opacity is
        density = F.softplus(self.opacity) / step * on_face.to(features.dtype)   # 1 - exp(-softplus(opacity))
        grid = splat(turned, torch.cat([code * density[..., None], density[..., None]], dim=-1), self.resolution)
        voxels, density_grid = grid[:, :-1], grid[:, -1:]
        self.last_voxels, self.last_density = voxels.detach(), density_grid.detach()
        image = self.render(voxels, density_grid)   # [B, V, R, R]: the view from the target pose
        alpha = 1.0 - torch.exp(-density_grid * (2.0 / (self.resolution - 1)))
        coverage = 1.0 - torch.prod(1.0 - alpha, dim=2)   # [B, 1, R, R]: opacity met along each line of sight
        at = F.grid_sample(torch.cat([image, coverage], dim=1),
                           self.cells.to(features.dtype).view(1, 1, -1, 2).expand(b, -1, -1, -1), mode="bilinear",
                           padding_mode="zeros", align_corners=True)   # [B, V + 1, 1, S*S]
        return at[:, :, 0]

    def forward(self, features: torch.Tensor, keypoints: torch.Tensor, source_angles: torch.Tensor,
                target_angles: torch.Tensor | None = None, cell_depth: torch.Tensor | None = None) -> torch.Tensor:
        if keypoints.shape[1:] != (self.num_keypoints, 3):
            raise ValueError(f"keypoints must be [B, {self.num_keypoints}, 3], got {tuple(keypoints.shape)}")
        if target_angles is None:
            target_angles = torch.zeros_like(source_angles)
        valid = torch.isfinite(keypoints).all(dim=-1).all(dim=-1)  # [B]
        keypoints = torch.where(valid[:, None, None], keypoints, torch.zeros_like(keypoints)).to(features.dtype)
        keypoints, rotation = self.grid_frame(keypoints, source_angles, target_angles)
        mask = valid.to(features.dtype)
        if self.map_size:
            return self.surface_forward(features, rotation, cell_depth) * mask[:, None, None, None]
        voxels, density = self.voxelize(features, keypoints)
        rotated = rotate_volume(torch.cat([voxels, density], dim=1), rotation, self.coords_t.t())
        voxels, density = rotated[:, :-1], rotated[:, -1:]
        self.last_voxels, self.last_density = voxels.detach(), density.detach()
        image = self.render(voxels, density)   # [B, C, R (y), R (x)]: the view from the target pose
        image = F.adaptive_avg_pool2d(image, self.pool)
        return self.project(image.flatten(1)) * mask[:, None]
