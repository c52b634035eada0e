"""RQ jobs, the model cache and the non-forking worker that runs them.

Importing this package does not import torch; :mod:`worker.jobs` and
:mod:`worker.cache` do, when a worker process runs a job.
"""
