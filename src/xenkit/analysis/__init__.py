"""Reading a build without running it: checks, address maps, tick statistics."""
