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
 * often as needed (or TPH_IMPORTER_COPY from another file's attachment into
 * it), TPH_IMPORTER_DETACH. Each open file has at most one
 * attachment, and DMA, DETACH and STATUS act on the calling file's own
 * attachment only; several files may be attached at once, to the same or
 * to different dma-bufs. Closing a file detaches its attachment.
 */
#ifndef _UAPI_MISC_TPH_IMPORTER_H
#define _UAPI_MISC_TPH_IMPORTER_H

#include <linux/ioctl.h>
#include <linux/types.h>

/**
 * struct tph_importer_attach - argument of TPH_IMPORTER_ATTACH
 * @dmabuf_fd: in: the dma-buf to attach to
 * @ret: out: how the TPH query went: 0 if the device DMAs with the hints
 *	below; -EOPNOTSUPP if the exporter has no hints for the namespaces the
 *	device may use; another negative errno if TPH could not be enabled or
 *	the Steering Tag not be written on the importing device, or -ENOSPC if
 *	no ST table entry was free (or, in Interrupt Vector mode, the device
 *	has no ST table). In every non-zero case the device DMAs into this
 *	buffer without hints.
 * @st: out: Steering Tag, written to this attachment's own ST table entry
 *	(in Interrupt Vector mode, the entry of its completion vector, which
 *	the MSI-X table holds when the device keeps its ST table there), or
 *	used from the device's DMA_ST register if it has no ST table (valid if
 *	@ret is 0)
 * @ph: out: Processing Hint (valid if @ret is 0)
 * @ext: out: 1 if @st is a 16-bit Extended TPH tag, sent with the TPH
 *	prefix; 0 for an 8-bit tag (sent without it, also when the device is
 *	enabled for Extended TPH) or no hint
 * @req_type: out: TPH Requester Enable of the importing device after the
 *	attach: 0 none, 1 TPH only, 3 TPH and Extended TPH
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
 * @len: in: number of bytes the device writes (or reads), at most the
 *	device's DMA_MAX (1 MiB for tph-testdev)
 * @pattern: in: 32-bit pattern the device writes, repeated (not used by a
 *	read)
 * @count: in: number of DMAs of @len bytes at @offset to run one after the
 *	other, a long DMA; 0 means 1. The reservation lock is held only to
 *	start each of them, so the exporter can revoke the buffer in between;
 *	the next one then finds the mapping gone and maps again, or fails
 *	with -ENODEV while the buffer is revoked.
 * @done: out: number of DMAs that completed successfully
 * @status: out: device status register after the last DMA
 * @ret: out: TPH query result of the mapping used last, as in
 *	&struct tph_importer_attach
 * @st: out: Steering Tag used (valid if @th is 1)
 * @ph: out: Processing Hint used (valid if @th is 1)
 * @th: out: 1 if the DMAs carried TPH hints, 0 if not
 * @ext: out: 1 if @st is an Extended TPH (16-bit) tag sent with the prefix
 * @remapped: out: 1 if the mapping had been invalidated by the exporter and
 *	was made again, with a new TPH query, for one of the DMAs
 * @flags: in: %TPH_IMPORTER_DMA_READ: the device reads @len bytes at
 *	@offset of the dma-buf (into its own memory) instead of writing
 *	@pattern there, with the same hints; -EOPNOTSUPP if the device cannot
 *	read. Other bits must be 0 (-EINVAL).
 *
 * The outputs are written back also when the ioctl fails (e.g. -ENODEV
 * once the buffer was revoked, -EIO for a DMA the device reported as
 * failed, -EBUSY for a buffer without hints while another attachment of the
 * device DMAs with hints), unless the argument could not be read.
 */
struct tph_importer_dma {
	__u64 offset;
	__u32 len;
	__u32 pattern;
	__u32 count;
	__u32 done;
	__u32 status;
	__s32 ret;
	__u16 st;
	__u8 ph;
	__u8 th;
	__u8 ext;
	__u8 remapped;
	__u16 flags;
};

#define TPH_IMPORTER_DMA_READ	(1 << 0)

/**
 * struct tph_importer_copy - argument of TPH_IMPORTER_COPY
 * @src_offset: in: byte offset into the source dma-buf
 * @offset: in: byte offset into this file's dma-buf, the destination
 * @src_fd: in: another open file of /dev/tph-importer, of the same device,
 *	whose attachment holds the source (or this file itself: a copy within
 *	its dma-buf)
 * @len: in: number of bytes the device reads and then writes, at most the
 *	device's DMA_MAX
 * @status: out: device status register after the copy
 * @ret: out: TPH query result of this file's mapping, as in
 *	&struct tph_importer_attach
 * @st: out: Steering Tag every request of the copy carried (valid if @th)
 * @ph: out: Processing Hint (valid if @th is 1)
 * @th: out: 1 if the requests carried TPH hints, 0 if not
 * @ext: out: 1 if @st is an Extended TPH (16-bit) tag sent with the prefix
 * @remapped: out: %TPH_IMPORTER_COPY_REMAPPED if this file's mapping, and
 *	%TPH_IMPORTER_COPY_SRC_REMAPPED if the source's, had been invalidated
 *	and was made again (with a new TPH query)
 * @pad: reserved, zero (-EINVAL otherwise); zero on return
 *
 * The device reads the whole source, then writes it; every request of the
 * copy, reads and writes, carries one hint. A Steering Tag means something
 * only to the completer that handed it out, so both mappings must carry
 * the same hint (the same @th, @st, @ph and @ext), or none: -EXDEV if they
 * differ. Both reservation locks are taken together (a ww_acquire_ctx) to
 * map, query and start the copy, never while it runs; a revocation of
 * either buffer stops the engine. Other errors: -EBADF if @src_fd is not a
 * file of /dev/tph-importer; -EINVAL for another device's file or a range
 * outside either dma-buf, or @pad not zero; -ENOTCONN if either file is
 * not attached; -EOPNOTSUPP if the device cannot copy; -EAGAIN if mapping
 * one attachment invalidated the other's (an exporter may move a buffer
 * shared by both files: try again); -EBUSY, -ENODEV and -EIO as for
 * TPH_IMPORTER_DMA. The outputs are written back also when it fails,
 * unless the argument could not be read.
 */
struct tph_importer_copy {
	__u64 src_offset;
	__u64 offset;
	__s32 src_fd;
	__u32 len;
	__u32 status;
	__s32 ret;
	__u16 st;
	__u8 ph;
	__u8 th;
	__u8 ext;
	__u8 remapped;
	__u16 pad;
};

#define TPH_IMPORTER_COPY_REMAPPED	(1 << 0)
#define TPH_IMPORTER_COPY_SRC_REMAPPED	(1 << 1)

/**
 * struct tph_importer_status - argument of TPH_IMPORTER_STATUS
 * @size: size of the attached dma-buf, 0 if none
 * @attached: 1 if this file has a dma-buf attached
 * @mapped: 1 if the attachment is mapped (not invalidated since)
 * @invalidations: invalidate_mappings() calls since the last attach
 * @maps: mappings (each with a TPH query) since the last attach
 * @dmas: DMAs completed since the last attach
 * @ret: TPH query result of the last mapping, as in
 *	&struct tph_importer_attach
 * @req_type: TPH Requester Enable of the importing device now (0, 1 or 3)
 * @st: Steering Tag the current mapping DMAs with, 0 if none
 * @ph: Processing Hint the current mapping DMAs with, 0 if none
 * @th: 1 if the current mapping DMAs with hints
 * @ext: 1 if the current mapping DMAs with a 16-bit tag and the prefix
 * @pad: reserved, zero
 * @query_ret: result of a TPH query of the exporter made for this call
 *	(dma_buf_get_pci_tph() for the namespace the last mapping used, under
 *	the reservation lock, mapped or not): 0, -EOPNOTSUPP, -ENODEV while
 *	the exporter has revoked the buffer; -ENOTCONN if not attached

 * @domain: the importing device's IOMMU domain now: TPH_IMPORTER_DOMAIN_*
 * @pad2: reserved, zero
 * @dma_addr: the DMA address of the first byte of the current mapping, as
 *	the exporter's map handed it out (a bus address or an IOVA); 0 when
 *	not mapped
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
	__u8 pad[3];
	__s32 query_ret;
	__u32 domain;
	__u32 pad2;
	__u64 dma_addr;
};

/* The importing device's IOMMU domain (&struct tph_importer_status) */
#define TPH_IMPORTER_DOMAIN_NONE	0	/* no IOMMU translates its DMA */
#define TPH_IMPORTER_DOMAIN_IDENTITY	1	/* identity (passthrough) */
#define TPH_IMPORTER_DOMAIN_DMA		2	/* translating, DMA API */
#define TPH_IMPORTER_DOMAIN_OTHER	3	/* blocked, unmanaged, ... */

/**
 * struct tph_importer_cpu_st - argument of TPH_IMPORTER_CPU_ST
 * @cpu: in: the CPU (Linux CPU number) whose Steering Tag to get
 * @mem_type: in: 0 for volatile, 1 for persistent memory
 * @flags: in: TPH_IMPORTER_CPU_ST_USE: from its next mapping on, this
 *	file's attachment DMAs with the Steering Tag of @cpu (queried again at
 *	each mapping) and @ph instead of the exporter's hints, until the file
 *	is closed
 * @ph: in: Processing Hint to send with TPH_IMPORTER_CPU_ST_USE
 * @req_type: out: TPH Requester Enable the tag is for: 1 TPH only (an 8-bit
 *	tag), 3 Extended TPH (16-bit). TPH is enabled for the query if it was
 *	off, and turned off again after it.
 * @ret: out: what pcie_tph_get_cpu_st() returned: 0, or -errno (e.g. when
 *	firmware has no _DSM for it)
 * @st: out: the tag (valid if @ret is 0; 0 when firmware has no valid tag)
 * @pad: reserved, zero
 */
struct tph_importer_cpu_st {
	__u32 cpu;
	__u32 mem_type;
	__u32 flags;
	__u8 ph;
	__u8 req_type;
	__u16 st;
	__s32 ret;
	__u32 pad;
};

#define TPH_IMPORTER_CPU_ST_USE	0x1

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
/* Report attachment state, counters and the hints, and query the exporter */
#define TPH_IMPORTER_STATUS	_IOR(TPH_IMPORTER_MAGIC, 0x03, struct tph_importer_status)
/*
 * A fault, for the IOMMU scenarios: one DMA, without hints, of @len bytes of
 * @pattern at the DMA address this file's last DMA used, after its mapping
 * is gone (detached): what a buggy importer does. The IOMMU should refuse
 * it. -ENOTCONN while attached or before any DMA. Outputs as for
 * TPH_IMPORTER_DMA (@offset and @count are ignored; @flags must be 0,
 * -EINVAL otherwise: the stale DMA is always a write).
 */
#define TPH_IMPORTER_DMA_STALE	_IOWR(TPH_IMPORTER_MAGIC, 0x05, struct tph_importer_dma)
/* Get a CPU's Steering Tag from firmware, and optionally DMA with it */
#define TPH_IMPORTER_CPU_ST	_IOWR(TPH_IMPORTER_MAGIC, 0x04, struct tph_importer_cpu_st)
/* Copy from another file's attachment into this file's, with their hint */
#define TPH_IMPORTER_COPY	_IOWR(TPH_IMPORTER_MAGIC, 0x06, struct tph_importer_copy)

#endif /* _UAPI_MISC_TPH_IMPORTER_H */
