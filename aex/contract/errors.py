"""Errors of the contract: what the API refuses and the worker reports, named once.

They carry no HTTP status; the API maps each to one (``aex.service.app``).
"""

from __future__ import annotations


class ImageError(ValueError):
    """An upload that is not a usable PNG, JPEG or WebP image (the message says why)."""


class UnsupportedImageError(ImageError):
    """Not one of the accepted image formats."""


class ImageTooLargeError(ImageError):
    """More bytes or pixels than the configured limits."""


class InvalidJobError(ValueError):
    """A job specification or field that the contract does not accept."""


class UnknownClassError(LookupError, ValueError):
    """A class name or index that the chosen model does not have."""
