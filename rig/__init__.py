"""tphlab rig: builds, boots and checks the TPH dma-buf bench."""

__version__ = "0.1.0"
