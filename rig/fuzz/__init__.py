"""Fuzzing: QEMU's generic-fuzz on the device, and the guest's uAPI fuzzer."""
