"""Booting a build under QEMU and following its console."""
