"""What runs: artifacts from packages, Dom0's initramfs and root, bare-metal guests."""
