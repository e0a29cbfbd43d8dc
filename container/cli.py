"""The ``mfrec`` command line: one entry point for local use and for the SageMaker image.

``docker run IMAGE train`` and ``docker run IMAGE serve`` arrive here as ``mfrec train`` and
``mfrec serve``; any other argument runs as an ordinary subcommand. Each subcommand lives in a
small module with ``register(subparsers)``; heavy imports (torch, pandas) happen inside the
command, so ``mfrec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mfrec import __version__

# Modules that register subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "mfrec.commands.data",  # import, validate, synth
    "mfrec.commands.training",  # train, tune
    "mfrec.commands.serving",  # serve, transform
    "mfrec.commands.demo",  # demo (the README's main job)
    "mfrec.commands.events",  # events export (stored PutEvents -> training data)
)

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfrec",
        description="Implicit-feedback matrix factorisation recommender (SageMaker compatible).",
    )
    parser.add_argument("--version", action="version", version=f"mfrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (0 ok, 1 user error or a full disk, 2 internal
    error)."""
    from mfrec.train.errors import MfrecError, disk_full

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except MfrecError as exc:
        print(f"mfrec {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `mfrec validate ... | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if (full := disk_full(exc, exc.filename or "a file")) is not None:
            print(f"mfrec {args.command}: error: {full}", file=sys.stderr)
            return 1
        logger.exception("internal error in `mfrec %s`; please report it", args.command)
        return 2
    except Exception:  # the process boundary: log the traceback, exit 2
        logger.exception("internal error in `mfrec %s`; please report it", args.command)
        return 2
