"""``python -m worker``: run one worker (see :mod:`worker.main`)."""

import sys

from .main import main

sys.exit(main())
