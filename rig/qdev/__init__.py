"""tph-testdev driven through qtest: PCI set-up, the device, the bench's switch.

The device tests and `rig bench` (DMA throughput, hint-log query latency)
both use it.
"""
