"""The one head-pose rotation of the package: (yaw, pitch, roll) -> the face-frame rotation R(pose).

Face frame (`viewdiff.faces.geometry`): x to the image's right, y up, z towards the camera. A face at `pose`
has its 3D keypoints at ``template @ R(pose)^T`` (``keypoints_3d``), so the change that takes a face from
`source` to `target` is ``R(target) R(source)^T``. In elementary rotations (right-handed, about the face
frame's axes) ``R = Rz(-roll) @ Ry(-yaw) @ Rx(-pitch)``: pitch is applied first, then yaw, then roll, with
the signs of Pointing'04's labels (yaw > 0 turns the face towards the image's left, pitch > 0 up, roll > 0
turns the eye line clockwise in the image); `viewdiff.faces.geometry.rotation_to_angles` is its inverse.

Plain arithmetic on cosines and sines, so the NumPy side (`viewdiff.faces.geometry.angles_to_rotation`,
which must not import torch) and the torch side (`viewdiff.models.projection.rotation_matrix`) build their
matrices from this one definition. This module imports nothing.
"""
from __future__ import annotations


def rotation_entries(cos_yaw, sin_yaw, cos_pitch, sin_pitch, cos_roll, sin_roll) -> tuple:
    """The 9 entries of R(pose), row-major, from the cosines and sines of (yaw, pitch, roll).

    Works elementwise on floats, NumPy arrays or torch tensors of one shape S; stack the result on a last
    axis and reshape to [*S, 3, 3].
    """
    cy, sy, cp, sp, cr, sr = cos_yaw, sin_yaw, cos_pitch, sin_pitch, cos_roll, sin_roll
    sy_sp, sy_cp = sy * sp, sy * cp
    return (cr * cy, cr * sy_sp + sr * cp, sr * sp - cr * sy_cp,
            -sr * cy, cr * cp - sr * sy_sp, sr * sy_cp + cr * sp,
            sy, -cy * sp, cy * cp)
