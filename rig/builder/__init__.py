"""Build stage: sources, series, cache, and the QEMU, kernel and image builds."""
