"""File formats read and written without external tools: cpio, FDT, binaries' headers."""
