"""The xenkit command line. Every failure the user can fix is one line on stderr; anything
else is one line too, with the traceback behind --debug."""

from __future__ import annotations

import os
import sys

from xenkit.cli.arguments import parser
from xenkit.core import log
from xenkit.errors import XenkitError

__all__ = ["main", "parser"]


def main(argv: list[str] | None = None) -> int:
    args = parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    log.setup(args.verbose)
    try:
        return int(args.func(args))
    except XenkitError as exc:
        # One line whatever the message quotes: a file name holding a line break made two.
        print(f"xenkit: error: {str(exc).replace(chr(10), chr(92) + 'n')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xenkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (xenkit info | head): as cat does, stop without a word.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes it at exit
        return 141
    except Exception as exc:
        # The last line of defence: a bug is one line and a way to report it, not a wall of
        # Python; the traceback is there for whoever asks.
        if args.debug or os.environ.get("XENKIT_DEBUG", "0") not in ("", "0"):
            raise
        where = f" ({exc})" if str(exc) else ""
        print(
            f"xenkit: internal error: {type(exc).__name__}{where}; rerun with --debug "
            "(or XENKIT_DEBUG=1) for the traceback and report it",
            file=sys.stderr,
        )
        return 3
