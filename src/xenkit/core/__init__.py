"""Plumbing every stage shares: child processes, sizes, progress, host packages."""
