"""xenkit: Xen on cheap hardware, built from distribution packages and booted in emulation."""

__version__ = "0.1.0"
