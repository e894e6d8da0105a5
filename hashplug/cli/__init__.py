"""The ``hashplug`` command line.

Subcommands: the training side in :mod:`hashplug.cli.train` (``train``, ``eval``, ``export``, ``demo``,
``bench``) and the serving side in :mod:`hashplug.cli.serve` (``ingest``, ``search``). This module holds the
parser and the one error handler. Heavy modules (torch, onnx, lancedb) are imported inside the commands
that need them.
"""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..validation import HashplugError

__all__ = ["main", "build_parser"]

#: The commands in the order ``hashplug --help`` lists them.
COMMAND_ORDER: tuple[str, ...] = ("train", "eval", "bench", "export", "ingest", "search", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The ``hashplug`` argument parser with every command of :mod:`.train` and :mod:`.serve`."""
    from . import serve, train

    p = argparse.ArgumentParser(prog="hashplug", description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--version", action="version", version=f"hashplug {__version__}",
                   help="print hashplug's version and exit")
    sub = p.add_subparsers(dest="command", required=True,
                           help="the command; `hashplug COMMAND --help` lists its options")
    adders = {**train.COMMANDS, **serve.COMMANDS}
    for name in COMMAND_ORDER:
        adders[name](sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    Bad input is reported in one place, argparse-style: ``hashplug <command>: error: <message>`` on stderr,
    exit code 2, no traceback. Commands raise :class:`~hashplug.validation.HashplugError` for it (the other
    ``ValueError`` cases are caught too, as are the path errors a user's path causes: a missing file, a file
    where a folder is needed or the reverse, no permission). Usage errors found by argparse itself exit with 2
    through ``SystemExit``. Any other exception is a bug and keeps its traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (HashplugError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
            PermissionError) as exc:
        print(f"hashplug {args.command}: error: {exc}", file=sys.stderr)
        return 2
