"""Errors raised by the ML core; callers turn them into CommandError / API errors."""

from __future__ import annotations


class MLError(Exception):
    """Base class for every error the ML core raises on bad input."""


class DataError(MLError, ValueError):
    """A labelled folder or a split cannot be used (missing, empty, one class, leaking patients...)."""


class ImageError(MLError, ValueError):
    """An image cannot be decoded (corrupt, truncated, unsupported); ``code`` names why, for callers that
    answer users (``corrupt_image``, ``too_many_pixels``, ``unsupported_type``, ``empty``)."""

    def __init__(self, message: str, code: str = "corrupt_image") -> None:
        super().__init__(message)
        self.code = code


class ArchitectureError(MLError, ValueError):
    """Unknown architecture or invalid architecture settings."""


class ArtifactError(MLError, ValueError):
    """A model artifact folder is missing files or has an unreadable model card."""
