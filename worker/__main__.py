"""``python -m aex.worker``: run one worker, the same as ``aex worker``."""

import sys

from aex.cli import main

sys.exit(main(["worker", *sys.argv[1:]]))
