"""aex: adversarial explanations of image-classifier decisions, served over HTTP.

One import namespace: ``aex.models`` (the science), ``aex.contract`` (what the API and
the workers share), ``aex.service`` (the HTTP API), ``aex.worker`` (the job runner),
``aex.client`` and ``aex.cli``. In the repository, ``aex.models``, ``aex.service`` and
``aex.worker`` live in the top-level folders ``models/``, ``service/`` and ``worker/``
(``pyproject.toml`` maps them into the namespace when the project is installed).
"""

from pathlib import Path

__version__ = "0.1.0"

# Run from a source checkout (its folder first on sys.path), ``aex`` is this folder; let
# its mapped subpackages resolve to the checkout's top-level folders as well.
_checkout = Path(__file__).resolve().parent.parent
if all((_checkout / name / "__init__.py").is_file() for name in ("models", "service", "worker")):
    __path__.append(str(_checkout))  # noqa: F821 (the package's own __path__)
