"""Board files and user settings, resolved into one validated system spec."""
