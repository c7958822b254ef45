"""The one application error type that services raise; views and the API turn it into a response."""

from __future__ import annotations


class ApplicationError(Exception):
    def __init__(self, message: str, errors: dict | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        self.code = code


class NotFound(ApplicationError):
    """The record does not exist or belongs to someone else: both look the same from outside."""


class PermissionDenied(ApplicationError):
    pass


class Conflict(ApplicationError):
    """The request is valid but the record's state refuses it, e.g. a review on a signed-off case."""
