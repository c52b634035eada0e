"""Domain errors of the service; each maps to one HTTP status with a readable message.

The contract's errors (``aex.contract.errors``: bad images, bad targets, unknown classes)
map to statuses in :data:`CONTRACT_STATUS`.
"""

from __future__ import annotations

from aex.contract.errors import (
    ImageError,
    ImageTooLargeError,
    InvalidJobError,
    UnknownClassError,
    UnsupportedImageError,
)


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


class UnavailableError(ServiceError):
    """Redis cannot take the request now (unreachable, out of memory, too contended)."""

    status_code = 503


# Most specific first: the first class an error is an instance of gives its status.
CONTRACT_STATUS: dict[type[Exception], int] = {
    ImageTooLargeError: 413,
    UnsupportedImageError: 415,
    ImageError: 422,
    InvalidJobError: 422,
    UnknownClassError: 404,
}
