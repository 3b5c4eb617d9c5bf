"""The guest: QEMU processes, QMP, SSH, topologies, accelerators, faults."""
