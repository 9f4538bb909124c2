"""3D projection layer: rotation matrices, grid rotation (identity, inverse, direction), voxels, rendering."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from viewdiff.models import projection as fpl
from viewdiff.models.projection import LightweightFaceProjectionLayer, rotate_volume, rotation_matrix, voxel_centres


def elementary(axis: str, deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return {"y": torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "x": torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "z": torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def blob(r: int, centre: tuple[float, float, float], sigma: float = 0.3) -> torch.Tensor:
    """A smooth Gaussian blob [1, 1, R, R, R] at centre (x, y, z) in [-1, 1]^3."""
    axis = torch.linspace(-1, 1, r)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    d2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
    return torch.exp(-d2 / (2 * sigma ** 2))[None, None]


def centroid(volume: torch.Tensor) -> torch.Tensor:
    """(x, y, z) centre of mass of volume [1, 1, R, R, R]."""
    r = volume.shape[-1]
    axis = torch.linspace(-1, 1, r)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    w = volume[0, 0] / volume.sum()
    return torch.stack([(w * x).sum(), (w * y).sum(), (w * z).sum()])


COMBINED = [(60.0, 15.0, 10.0), (80.0, -10.0, -30.0), (-70.0, 25.0, 35.0), (45.0, -25.0, -15.0), (0.0, 0.0, 0.0)]


def test_rotation_matrix_is_the_face_frames_rotation_of_geometry():
    """One convention: the models' R(pose) is `viewdiff.faces.geometry.angles_to_rotation` on combined angles
    (they differed by up to 0.5 at (80, -10, -30) when the models used Rz Rx Ry and its transpose)."""
    from viewdiff.faces.geometry import angles_to_rotation
    g = torch.Generator().manual_seed(0)
    angles = torch.cat([torch.tensor(COMBINED), (torch.rand(64, 3, generator=g) - 0.5) * torch.tensor([180.0, 90, 90])])
    rot = rotation_matrix(angles)
    assert rot.shape == (len(angles), 3, 3) and torch.equal(rot[len(COMBINED) - 1], torch.eye(3))
    for i, a in enumerate(angles.tolist()):
        np.testing.assert_allclose(rot[i].numpy(), angles_to_rotation(a), atol=1e-6)
        yaw, pitch, roll = a   # pitch first, then yaw, then roll, signs of the face frame
        expected = elementary("z", -roll) @ elementary("y", -yaw) @ elementary("x", -pitch)
        torch.testing.assert_close(rot[i], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand_as(rot), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(len(angles)))


@pytest.mark.parametrize("source", COMBINED)
def test_pose_change_to_frontal_brings_the_keypoints_back_to_the_template(source):
    """keypoints_3d = the template rotated by the source pose; the models' change to frontal (and to another
    combined pose) gives the template (the target's keypoints_3d), in the face frame and in both grids."""
    from viewdiff.faces.geometry import keypoints_3d_from_pose, template_5
    template = torch.tensor(template_5(), dtype=torch.float32)[None]
    posed = torch.as_tensor(keypoints_3d_from_pose(source))[None]
    src, frontal, other = torch.tensor([source]), torch.zeros(1, 3), torch.tensor([[-35.0, 20.0, -25.0]])
    torch.testing.assert_close(posed @ fpl.pose_change(src, frontal).transpose(1, 2), template, atol=1e-5, rtol=0)
    torch.testing.assert_close(posed @ fpl.pose_change(src, other).transpose(1, 2),
                               torch.as_tensor(keypoints_3d_from_pose(other[0].tolist()))[None], atol=1e-5, rtol=0)
    for layer in (LightweightFaceProjectionLayer(16, voxel_resolution=8),
                  LightweightFaceProjectionLayer(16, voxel_resolution=8, map_size=7)):
        at_frontal = layer.keypoints_in_grid(template, frontal, frontal)
        torch.testing.assert_close(layer.keypoints_in_grid(posed, src, frontal), at_frontal, atol=1e-5, rtol=0)


def test_rotation_matches_affine_grid_and_grid_sample():
    torch.manual_seed(0)
    volume = torch.randn(3, 2, 5, 6, 7)  # D, H, W all different: catches a swapped axis
    rot = rotation_matrix(torch.randn(3, 3) * 40)
    theta = torch.cat([rot.transpose(1, 2), torch.zeros(3, 3, 1)], dim=2)
    grid = torch.nn.functional.affine_grid(theta, list(volume.shape), align_corners=True)
    expected = torch.nn.functional.grid_sample(volume, grid, align_corners=True)
    torch.testing.assert_close(rotate_volume(volume, rot), expected, atol=1e-5, rtol=0)
    identity = torch.nn.functional.affine_grid(torch.eye(3, 4)[None], [1, 1, 5, 6, 7], align_corners=True)
    torch.testing.assert_close(voxel_centres(5, 6, 7), identity.reshape(-1, 3))


def test_rotation_by_zero_is_the_identity():
    torch.manual_seed(0)
    volume = torch.randn(2, 3, 8, 8, 8)
    out = rotate_volume(volume, rotation_matrix(torch.zeros(2, 3)))
    torch.testing.assert_close(out, volume, atol=1e-5, rtol=0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_rotation_by_90_then_minus_90_returns_to_the_start(axis):
    torch.manual_seed(0)
    volume = torch.randn(1, 2, 9, 9, 9)
    angles = torch.zeros(1, 3)
    angles[0, axis] = 90.0
    there = rotate_volume(volume, rotation_matrix(angles))
    assert (there - volume).abs().max() > 0.5  # it did move
    back = rotate_volume(there, rotation_matrix(-angles))
    torch.testing.assert_close(back, volume, atol=1e-4, rtol=0)


def test_rotation_moves_content_where_the_matrix_says():
    # content at p moves to R @ p: positive yaw turns +x towards the camera (-z, depth index 0)
    volume = blob(17, (0.5, 0.0, 0.0))
    rot = elementary("y", 90.0)[None]
    torch.testing.assert_close(rot[0] @ torch.tensor([0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, -0.5]),
                               atol=1e-6, rtol=0)
    start = centroid(volume)  # about (0.5, 0, 0); the grid edge trims the tail a little
    assert start[0] > 0.4
    moved = rotate_volume(volume, rot)
    torch.testing.assert_close(centroid(moved), start[[2, 1, 0]] * torch.tensor([1.0, 1.0, -1.0]),
                               atol=1e-4, rtol=0)
    # pitch: +y (down) goes to +z; roll: +x goes to +y
    pitched = rotate_volume(volume.transpose(-1, -2), elementary("x", 90.0)[None])
    torch.testing.assert_close(centroid(pitched), start[[1, 2, 0]], atol=1e-4, rtol=0)
    rolled = rotate_volume(volume, elementary("z", 90.0)[None])
    torch.testing.assert_close(centroid(rolled), start[[1, 0, 2]], atol=1e-4, rtol=0)
    # a smooth blob survives an off-grid rotation and its inverse up to interpolation blur
    start = blob(17, (0.3, -0.2, 0.1))
    spun = rotation_matrix(torch.tensor([[37.0, -21.0, 12.0]]))
    back = rotate_volume(rotate_volume(start, spun), spun.transpose(1, 2))
    twice = rotate_volume(rotate_volume(start, spun), spun)
    assert (back - start).norm() < 0.1 * start.norm() < (twice - start).norm()


def make_inputs(b=3, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, d, generator=g), torch.randn(b, 5, 3, generator=g) * 0.4,
            torch.randn(b, 3, generator=g) * 30)


def test_forward_shapes_and_exposed_voxels():
    torch.manual_seed(0)
    layer = LightweightFaceProjectionLayer(64, voxel_resolution=12, voxel_channels=6)
    feats, kp, angles = make_inputs()
    out = layer(feats, kp, angles, torch.zeros(3, 3))
    assert out.shape == (3, 64) and torch.isfinite(out).all()
    assert layer.last_voxels.shape == (3, 6, 12, 12, 12) and layer.last_density.shape == (3, 1, 12, 12, 12)
    assert (layer.last_density >= 0).all() and not layer.last_voxels.requires_grad
    assert torch.equal(layer(feats, kp, angles), out)  # target None = frontal
    out.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_same_source_and_target_pose_leaves_the_grid_unrotated():
    torch.manual_seed(0)
    layer = LightweightFaceProjectionLayer(64, voxel_resolution=8)
    feats, kp, angles = make_inputs()
    layer(feats, kp, angles, angles)
    voxels, density = layer.voxelize(feats, layer.grid_frame(kp, angles, angles)[0])
    torch.testing.assert_close(layer.last_voxels, voxels, atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.last_density, density, atol=1e-5, rtol=0)
    layer(feats, kp, angles, angles + torch.tensor([40.0, 0, 0]))
    assert (layer.last_voxels - voxels).abs().max() > 1e-3


def test_voxels_follow_the_keypoints_and_features():
    torch.manual_seed(0)
    layer = LightweightFaceProjectionLayer(64, voxel_resolution=8)
    feats, kp, _ = make_inputs()
    voxels, _ = layer.voxelize(feats, kp)
    assert (layer.voxelize(feats, kp + 0.3)[0] - voxels).abs().max() > 1e-4
    assert (layer.voxelize(feats + 1, kp)[0] - voxels).abs().max() > 1e-4


def test_render_is_front_to_back_alpha_compositing():
    layer = LightweightFaceProjectionLayer(8, voxel_resolution=4)
    voxels = torch.zeros(1, 1, 4, 1, 1)
    voxels[0, 0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    opaque_front = torch.zeros(1, 1, 4, 1, 1)
    opaque_front[0, 0, 0] = 1e4  # the front slice hides the rest
    assert layer.render(voxels, opaque_front).item() == pytest.approx(1.0)
    empty = torch.zeros(1, 1, 4, 1, 1)
    assert layer.render(voxels, empty).item() == 0.0
    density = torch.full((1, 1, 4, 1, 1), 0.7)
    alpha = 1 - math.exp(-0.7 * 2 / 3)
    expected = sum(v * alpha * (1 - alpha) ** i for i, v in enumerate([1.0, 2.0, 3.0, 4.0]))
    assert layer.render(voxels, density).item() == pytest.approx(expected, rel=1e-5)


def test_rows_without_valid_keypoints_give_zero():
    layer = LightweightFaceProjectionLayer(64, voxel_resolution=8)
    feats, kp, angles = make_inputs()
    kp[1, 2, 0] = float("nan")
    out = layer(feats, kp, angles)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros(64)) and out[0].abs().sum() > 0
    with pytest.raises(ValueError, match=r"keypoints must be \[B, 5, 3\]"):
        layer(feats, kp[:, :4], angles)


def test_docstring_states_the_r_cubed_memory_cost():
    assert "R^3" in fpl.__doc__ and "R^3" in LightweightFaceProjectionLayer.__doc__


def test_map_mode_grid_matches_the_face_template_and_the_crop():
    """The map mode's constants put the template's keypoints where the aligned crop has them (upright, nose
    in front), and a face at its source pose moved to frontal lands on the frontal template."""
    from viewdiff.faces.backends import ARCFACE_TEMPLATE
    from viewdiff.faces.geometry import keypoints_3d_from_pose, template_5
    from viewdiff.models.projection import GRID_PER_TEMPLATE, cell_grid, grid_to_crop
    layer = LightweightFaceProjectionLayer(64, voxel_resolution=8, map_size=7)
    frontal = torch.tensor(template_5(), dtype=torch.float32)[None]
    in_grid = layer.keypoints_in_grid(frontal, torch.zeros(1, 3), torch.zeros(1, 3))[0]
    crop = (grid_to_crop(in_grid[:, :2]) + 1) * 56   # back to crop pixels
    assert torch.allclose(crop, torch.as_tensor(ARCFACE_TEMPLATE), atol=0.05)
    assert in_grid[0, 1] < in_grid[3, 1] and in_grid[2, 2] < in_grid[0, 2]   # eyes above the mouth, nose in front
    assert cell_grid(7).abs().max() < 1 and GRID_PER_TEMPLATE > 0       # the whole crop fits in the grid
    turned = torch.as_tensor(keypoints_3d_from_pose([60.0, 0.0, 0.0]))[None]
    moved = layer.keypoints_in_grid(turned, torch.tensor([[60.0, 0.0, 0.0]]), torch.zeros(1, 3))
    assert torch.allclose(moved, in_grid[None], atol=1e-5)


def test_map_mode_places_each_cell_on_the_face_surface_at_its_depth():
    """2D -> 3D: a cell's features go to its point on the surface (its depth), not along its whole depth column;
    off-face cells (NaN depth) are not placed."""
    from viewdiff.faces.geometry import keypoints_3d_from_pose
    torch.manual_seed(0)
    layer = LightweightFaceProjectionLayer(16, voxel_resolution=16, map_size=7)
    kp = torch.as_tensor(keypoints_3d_from_pose([0.0, 0.0, 0.0]))[None]
    depth = torch.full((1, 7, 7), float("nan"))
    depth[0, 3, 1], depth[0, 3, 5] = 1.5, -1.5   # a near and a far cell
    layer(torch.randn(1, 16, 7, 7), kp, torch.zeros(1, 3), torch.zeros(1, 3), cell_depth=depth)
    density = layer.last_density[0, 0]   # [z, y, x]
    occupied = density.sum(dim=(1, 2)).nonzero().flatten()
    near, far = (density[:, :, :8].sum(dim=(1, 2)) > 0).nonzero().flatten(), \
        (density[:, :, 8:].sum(dim=(1, 2)) > 0).nonzero().flatten()
    assert len(occupied) <= 4 and near.max() < far.min()   # two thin layers; the near cell in front (z index 0)
    assert density.sum() > 0 and density[:, :, 7:9].sum() == 0   # nothing between the two columns


def test_map_mode_renders_with_visibility_the_nearer_surface_hides_the_farther():
    """3D -> 2D: two cells of one row turned by 90 degrees of yaw line up on one line of sight; the rendered view
    shows the one in front, and the coverage says which cells of the target view were seen."""
    torch.manual_seed(0)
    layer = LightweightFaceProjectionLayer(16, voxel_resolution=16, map_size=7)
    depth = torch.full((1, 7, 7), float("nan"))
    depth[0, 3, 2], depth[0, 3, 4] = 0.0, 0.0
    cells = torch.zeros(1, 16, 7, 7)
    cells[0, :, 3, 2], cells[0, :, 3, 4] = 1.0, -1.0
    code = layer.cell_code(cells.flatten(2).transpose(1, 2))[0]   # [49, V]
    front = {}
    for yaw in (90.0, -90.0):
        _, rotation = layer.grid_frame(torch.zeros(1, 5, 3), torch.zeros(1, 3), torch.tensor([[yaw, 0.0, 0.0]]))
        view = layer.target_view(cells, rotation, depth)[0]   # [V + 1, 49]
        seen = view[-1].argmax()
        shown = view[:-1, seen]
        front[yaw] = int(torch.cosine_similarity(shown, code[3 * 7 + 2], dim=0)
                         > torch.cosine_similarity(shown, code[3 * 7 + 4], dim=0))
        assert view[-1, seen] > 0.3 and view[-1].min() < 0.01   # seen somewhere, nothing elsewhere
    assert front[90.0] != front[-90.0]   # turning the other way brings the other cell to the front
    frontal = layer.target_view(cells, torch.eye(3)[None], depth)[0]
    assert frontal[-1, 3 * 7 + 2] > 0.3 and frontal[-1, 3 * 7 + 4] > 0.3 and frontal[-1, 0] < 0.01


def test_map_mode_without_a_surface_uses_the_mean_face_one_shape_for_every_face():
    from viewdiff.models.projection import MEAN_CELL_DEPTH
    layer = LightweightFaceProjectionLayer(16, voxel_resolution=8, map_size=7)
    torch.nn.init.normal_(layer.project.weight)
    kp = torch.zeros(2, 5, 3)
    cells = torch.randn(2, 16, 7, 7)
    pose = torch.tensor([[50.0, 0, 0]] * 2)
    mean = torch.tensor(MEAN_CELL_DEPTH)[None].repeat(2, 1, 1)
    a = layer(cells, kp, pose, torch.zeros(2, 3), cell_depth=None)
    b = layer(cells, kp, pose, torch.zeros(2, 3), cell_depth=mean)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, layer(cells, kp, pose, torch.zeros(2, 3), cell_depth=mean + 0.5))   # depth matters

