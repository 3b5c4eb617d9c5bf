# The devices tphlab's QEMU builds (configure --without-default-devices):
# the q35 machine and what the topologies, the qtest and the guests use.
# Kconfig selects what these need (ICH9, ACPI, the ISA serial port, ...).
# A device left out of here does not exist in the built QEMU.
CONFIG_Q35=y
# Root ports, the x3130 switch, the qtest's PCIe-to-PCI bridge
CONFIG_PCIE_PORT=y
CONFIG_XIO3130=y
CONFIG_PCIE_PCI_BRIDGE=y
# pcie-pci-bridge calls pci_bridge_dev.c's hotplug callbacks, which its
# Kconfig entry does not select (QEMU 10.0): without this it does not link.
CONFIG_PCI_BRIDGE=y
# The guest's network (SSH)
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_NET=y
# The guest IOMMU of the IOMMU topologies (intel-iommu): VFIO with type1
# and iommufd, devices in IOMMU groups, IOVAs for peer-to-peer DMA
CONFIG_VTD=y
# The bench's device
CONFIG_TPH_TESTDEV=y
