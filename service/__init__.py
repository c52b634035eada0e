"""The HTTP front end: FastAPI app, Redis/RQ queue access, limits, API keys and metrics.

Nothing in this package imports torch; the science runs in :mod:`worker` processes.
"""
