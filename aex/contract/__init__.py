"""The contract between the API and the workers, owned by neither.

Both sides import it; it imports neither of them, nor torch or a web framework.

- :mod:`aex.contract.settings`: every ``AEX_*`` setting;
- :mod:`aex.contract.keys`: Redis key names;
- :mod:`aex.contract.connection`: how both connect to Redis;
- :mod:`aex.contract.jobs`: typed job specifications and the worker functions' paths;
- :mod:`aex.contract.targets`: the one parser of explanation targets;
- :mod:`aex.contract.imaging`: safe decoding of uploads into model input;
- :mod:`aex.contract.results`: what finished jobs return;
- :mod:`aex.contract.metrics`: job metrics recorded in Redis;
- :mod:`aex.contract.errors`: the errors above raise.

This package root imports only the dependency-free modules (errors, targets), so the
science and ``aex explain`` can use them without Redis or pydantic-settings.
"""

from .errors import (
    ImageError,
    ImageTooLargeError,
    InvalidJobError,
    UnknownClassError,
    UnsupportedImageError,
)
from .targets import (
    TARGET_WORDS,
    Targets,
    TargetWord,
    choose_targets,
    class_index,
    parse_targets,
    resolve_targets,
)

__all__ = [
    "TARGET_WORDS", "ImageError", "ImageTooLargeError", "InvalidJobError", "TargetWord",
    "Targets", "UnknownClassError", "UnsupportedImageError", "choose_targets", "class_index",
    "parse_targets", "resolve_targets",
]
