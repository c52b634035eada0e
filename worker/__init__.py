"""RQ jobs, the model cache and the non-forking worker that runs them.

Importing this package does not import torch; :mod:`aex.worker.jobs` and
:mod:`aex.worker.cache` do, when a worker process runs a job.
"""
