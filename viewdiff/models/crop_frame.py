"""The aligned 112x112 ArcFace crop in the face template's frame: the one definition, shared by the torch side
(`viewdiff.models.projection`) and the NumPy side (`viewdiff.faces.face_mesh`, which must not import torch).

``template = (crop_pixel - CROP_CENTRE) * CROP_SCALE`` with y flipped (template y is up, pixel y down); the
template is `viewdiff.faces.geometry.template_5`'s frame (checked by tests/test_models_projection.py). This
module imports nothing.
"""
from __future__ import annotations

CROP_SIZE, CROP_SCALE, CROP_CENTRE = 112.0, 0.048864582, (56.02616, 71.90078)
