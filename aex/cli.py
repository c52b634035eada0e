"""``aex``: one command line for models, training, evaluation, the service and the client.

Each area registers its own subcommands; heavy imports (torch) happen only inside the
command that needs them, so ``aex --help`` and the service commands start fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import __version__, _cli_explain, _cli_models, _cli_quality, _cli_service


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """The full ``aex`` argument parser."""
    parser = argparse.ArgumentParser(prog="aex", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"aex {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _cli_models.register(sub)
    _cli_explain.register(sub)
    _cli_quality.register(sub)
    _cli_service.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aex`` console script."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except (CommandError, ValueError, LookupError, FileNotFoundError) as exc:
        print(f"aex {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
