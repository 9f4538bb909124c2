"""The face pipeline's errors: every failure is a `FaceAnalysisError` whose message tells the user what to do."""
from __future__ import annotations


class FaceAnalysisError(Exception):
    """Base class of the face pipeline's errors; the message says what to do."""


class ImageReadError(FaceAnalysisError):
    """The input is not a readable image (0 bytes, corrupt, unsupported)."""


class ImageTooLargeError(FaceAnalysisError):
    """The image has more than `MAX_PIXELS` pixels."""


class NoFaceError(FaceAnalysisError):
    """No face was detected."""


class ModelNotFoundError(FaceAnalysisError):
    """A model file or pack is missing; the message names it and the fix."""
