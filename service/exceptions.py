"""Domain errors of the service; each maps to one HTTP status with a readable message."""

from __future__ import annotations


class ServiceError(Exception):
    """An error a client caused or must wait out; ``status_code`` is its HTTP status."""

    status_code = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class NotFoundError(ServiceError, LookupError):
    """An unknown model, class, job or artifact (the message names it)."""

    status_code = 404


class ConflictError(ServiceError):
    """The request does not fit the resource's state (e.g. cancelling a finished job)."""

    status_code = 409


class ImageError(ServiceError, ValueError):
    """An upload that is not a usable PNG, JPEG or WebP image."""

    status_code = 422


class UnsupportedImageError(ImageError):
    """Not one of the accepted image formats."""

    status_code = 415


class ImageTooLargeError(ImageError):
    """More bytes or pixels than the configured limits."""

    status_code = 413


class InvalidRequestError(ServiceError, ValueError):
    """A field whose value the schema accepts but the chosen model does not."""

    status_code = 422


class AuthenticationError(ServiceError):
    """No API key where one is required."""

    status_code = 401


class ForbiddenError(ServiceError):
    """An API key that is not one of the configured keys."""

    status_code = 403


class QueueFullError(ServiceError):
    """More jobs waiting than the configured limit."""

    status_code = 429
