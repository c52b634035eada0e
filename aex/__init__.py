"""Command line (``aex``) and HTTP client for the adversarial-explanation service."""

__version__ = "0.1.0"
