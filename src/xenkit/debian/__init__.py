"""Debian packages: apt for a foreign architecture, .deb contents, kernel modules."""
