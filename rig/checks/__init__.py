"""Series checks: each patch as the QEMU and kernel maintainers check it."""
