"""The one exception type the CLI turns into a one-line message."""


class XenkitError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""
