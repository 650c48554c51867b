"""Netboot: TFTP, proxyDHCP and the served tree."""
