/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * Test importer for PCIe TPH hints on dma-bufs (/dev/tph-importer)
 *
 * The tph_importer driver binds the QEMU tph-testdev PCI device and makes
 * it DMA into a dma-buf of another device with the PCIe TLP Processing
 * Hints (TPH) that the exporter provides. Test only, not for upstream.
 *
 * Usage: open /dev/tph-importer (exactly one device must be bound to the
 * driver), TPH_IMPORTER_ATTACH a dma-buf fd, TPH_IMPORTER_DMA into it as
 * often as needed, TPH_IMPORTER_DETACH. Closing the file that attached also
 * detaches.
 */
#ifndef _UAPI_MISC_TPH_IMPORTER_H
#define _UAPI_MISC_TPH_IMPORTER_H

#include <linux/ioctl.h>
#include <linux/types.h>

/**
 * struct tph_importer_attach - argument of TPH_IMPORTER_ATTACH
 * @dmabuf_fd: in: the dma-buf to attach to
 * @ret: out: how the TPH query went: 0 if the device DMAs with the hints
 *	below; -EOPNOTSUPP if the exporter has no hints for the namespace
 *	asked for; another negative errno if TPH could not be enabled or the
 *	Steering Tag not be written on the importing device. In every non-zero
 *	case the device DMAs without hints (TPH Requester Enable 00b).
 * @st: out: Steering Tag written to ST table entry 0, or used from the
 *	device's DMA_ST register if it has no ST table (valid if @ret is 0)
 * @ph: out: Processing Hint (valid if @ret is 0)
 * @ext: out: 1 if the 16-bit (Extended TPH) namespace was asked for, 0 if
 *	the 8-bit one
 * @req_type: out: TPH Requester Enable the importing device got from
 *	pcie_enable_tph(): 0 none, 1 TPH only, 3 TPH and Extended TPH
 * @size: out: size of the dma-buf in bytes
 */
struct tph_importer_attach {
	__s32 dmabuf_fd;
	__s32 ret;
	__u16 st;
	__u8 ph;
	__u8 ext;
	__u32 req_type;
	__u64 size;
};

/**
 * struct tph_importer_dma - argument of TPH_IMPORTER_DMA
 * @offset: in: byte offset into the dma-buf
 * @len: in: number of bytes the device writes, at most the device's
 *	DMA_MAX (1 MiB for tph-testdev)
 * @pattern: in: 32-bit pattern the device writes, repeated
 * @status: out: device status register after the DMA
 * @ret: out: TPH query result of the mapping used, as in
 *	&struct tph_importer_attach
 * @st: out: Steering Tag used (valid if @th is 1)
 * @ph: out: Processing Hint used (valid if @th is 1)
 * @th: out: 1 if the DMA carried TPH hints, 0 if not
 * @ext: out: 1 if @st is an Extended TPH (16-bit) tag
 * @remapped: out: 1 if the mapping had been invalidated by the exporter and
 *	was made again, with a new TPH query, for this DMA
 * @pad: reserved, ignored
 */
struct tph_importer_dma {
	__u64 offset;
	__u32 len;
	__u32 pattern;
	__u32 status;
	__s32 ret;
	__u16 st;
	__u8 ph;
	__u8 th;
	__u8 ext;
	__u8 remapped;
	__u16 pad;
};

/**
 * struct tph_importer_status - argument of TPH_IMPORTER_STATUS
 * @size: size of the attached dma-buf, 0 if none
 * @attached: 1 if a dma-buf is attached
 * @mapped: 1 if the attachment is mapped (not invalidated since)
 * @invalidations: invalidate_mappings() calls since the last attach
 * @maps: mappings (each with a TPH query) since the last attach
 * @dmas: DMAs completed since the last attach
 * @ret: last TPH query result, as in &struct tph_importer_attach
 * @req_type: TPH Requester Enable at the last query (0, 1 or 3)
 * @st: last Steering Tag
 * @ph: last Processing Hint
 * @th: 1 if the current mapping DMAs with hints
 * @ext: 1 if the last query asked for the Extended TPH namespace
 * @pad: reserved, zero
 */
struct tph_importer_status {
	__u64 size;
	__u32 attached;
	__u32 mapped;
	__u32 invalidations;
	__u32 maps;
	__u32 dmas;
	__s32 ret;
	__u32 req_type;
	__u16 st;
	__u8 ph;
	__u8 th;
	__u8 ext;
	__u8 pad[7];
};

/*
 * 0xBB is not registered in Documentation/userspace-api/ioctl/ioctl-number.rst:
 * this is an out-of-tree test module that never goes upstream.
 */
#define TPH_IMPORTER_MAGIC	0xBB

/* Attach to a dma-buf, map it and query TPH; -EBUSY if already attached */
#define TPH_IMPORTER_ATTACH	_IOWR(TPH_IMPORTER_MAGIC, 0x00, struct tph_importer_attach)
/* Let the device write into the dma-buf; remaps and re-queries if needed */
#define TPH_IMPORTER_DMA	_IOWR(TPH_IMPORTER_MAGIC, 0x01, struct tph_importer_dma)
/* Unmap and detach; -ENOTCONN if not attached */
#define TPH_IMPORTER_DETACH	_IO(TPH_IMPORTER_MAGIC, 0x02)
/* Report attachment state, counters and the last hints */
#define TPH_IMPORTER_STATUS	_IOR(TPH_IMPORTER_MAGIC, 0x03, struct tph_importer_status)

#endif /* _UAPI_MISC_TPH_IMPORTER_H */
