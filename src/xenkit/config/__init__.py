"""Board files and user settings, resolved into one validated system spec."""

# The board a command works on when none is named. Here, not in the settings table, so the
# command line's defaults need not import the table.
DEFAULT_BOARD = "rpi4"
