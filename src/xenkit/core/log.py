"""xenkit's messages: the standard logging's "xenkit" logger, imported when the first message
is said. `xenkit uboot-script` says nothing unless it warns, and logging's import (traceback,
threading and string with it) was 5 ms of its start; the CLI sets the format up front and
logging takes it at the first message."""

from __future__ import annotations

import sys

# logging itself only where a message is said; mypy reads this name as typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

# logging's own levels, for callers that pass one.
DEBUG, INFO, WARNING = 10, 20, 30

_level: int | None = None  # the CLI's choice; None: logging as whoever imported xenkit set it
_logger: logging.Logger | None = None


def setup(verbose: bool) -> None:
    """The command line's messages: `xenkit: ...` on stderr, debug ones with --verbose.
    With --verbose logging is set up at once, so other libraries' debug messages (asyncio's)
    before xenkit's first are shown too."""
    global _level, _logger
    _level = DEBUG if verbose else INFO
    _logger = None
    if verbose:
        _get()


def _get() -> logging.Logger:
    global _logger
    if _logger is None:
        import logging

        if _level is not None:
            logging.basicConfig(level=_level, format="xenkit: %(message)s", stream=sys.stderr)
        _logger = logging.getLogger("xenkit")
    return _logger


def log(level: int, msg: str, *args: object) -> None:
    _get().log(level, msg, *args)


def debug(msg: str, *args: object) -> None:
    _get().debug(msg, *args)


def info(msg: str, *args: object) -> None:
    _get().info(msg, *args)


def warning(msg: str, *args: object) -> None:
    _get().warning(msg, *args)


def error(msg: str, *args: object) -> None:
    _get().error(msg, *args)
