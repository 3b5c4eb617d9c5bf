// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test importer for PCIe TPH hints on dma-bufs
 *
 * Binds the QEMU tph-testdev PCI device and lets userspace, through
 * /dev/tph-importer-<BDF> (or /dev/tph-importer while one device is bound),
 * make it DMA into a dma-buf of another device (for example one exported by
 * vfio-pci) with the PCIe TLP Processing Hints that the exporter returns
 * from dma_buf_get_pci_tph().
 *
 * Each open file has at most one attachment, and only that file can DMA
 * through it or detach it. The attachment is dynamic and peer-to-peer. The
 * hints are queried right after each mapping, under the same hold of the
 * reservation lock, and are dropped together with the mapping when the
 * exporter invalidates it; the next DMA maps again and queries again.
 *
 * The reservation lock is held to map, to query and to start a DMA, never
 * while a DMA runs, so a revocation by the exporter waits for at most the
 * DMA in flight. The invalidate_mappings callback stops the engine before
 * it unmaps: it waits a bounded time for the DMA into the buffer, and if
 * the engine is still busy clears Bus Master Enable, which keeps the
 * device from issuing any further memory request; only then does it
 * unmap.
 *
 * TPH is enabled on the device (Device Specific mode, or Interrupt Vector
 * mode with st_mode=iv or on a device without Device Specific mode) while
 * at least one attachment DMAs with hints, not
 * per mapping, and each such attachment has an ST table entry of its own.
 * In Interrupt Vector mode that entry is the attachment's completion
 * vector: the engine is given its index, and the tag comes from that
 * vector's entry of the ST table (in the MSI-X table with st-location=msix).
 * Entries are written only while the engine is idle: pcie_tph_set_st_entry()
 * clears TPH Requester Enable while it rewrites the table. tph-testdev tags
 * every request while TPH Requester Enable is set, so an attachment without
 * hints can DMA only while no other attachment of the device uses hints
 * (else -EBUSY). With Requester Enable 11b and only an 8-bit tag from the
 * exporter, the device sends the 8-bit tag without the TPH prefix (DMA_CMD
 * NO_PREFIX).
 *
 * Test only, not for upstream: an out-of-tree module of the tphlab bench,
 * built with "make M=" against whichever kernel is under test. It needs
 * from that kernel only the API of the TPH dma-buf series from v8 on:
 * dma_buf_get_pci_tph(), of an attachment or (v8..v11) of a dma-buf, and
 * pcie_tph_enabled_req_type().
 */
#include <linux/bitfield.h>
#include <linux/bitmap.h>
#include <linux/delay.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/dma-resv.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/io.h>
#include <linux/iommu.h>
#include <linux/jiffies.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/pci-tph.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>
#include <uapi/misc/tph_importer.h>

#if !IS_ENABLED(CONFIG_PCIE_TPH)
#error "tph_importer needs CONFIG_PCIE_TPH (the ST table helpers)"
#endif
#if !IS_ENABLED(CONFIG_DMA_SHARED_BUFFER)
#error "tph_importer needs CONFIG_DMA_SHARED_BUFFER (select it, e.g. with CONFIG_DMABUF_HEAPS)"
#endif

MODULE_IMPORT_NS("DMA_BUF");

#define PCI_DEVICE_ID_REDHAT_TPH_TESTDEV	0x0015

/*
 * tph-testdev BAR0 registers: 32-bit, little endian; layout as in QEMU's
 * docs/specs/tph-testdev.rst.
 */
#define TPH_IMP_REG_ID			0x00	/* RO */
#define TPH_IMP_REG_NR_VECTORS		0x04	/* RO, MSI-X vectors */
#define TPH_IMP_REG_MEM_SIZE		0x08	/* RO, BAR2 size */
#define TPH_IMP_REG_DMA_MAX		0x0c	/* RO, max DMA length */
#define TPH_IMP_REG_DMA_ADDR_LO		0x10	/* target bus address */
#define TPH_IMP_REG_DMA_ADDR_HI		0x14
#define TPH_IMP_REG_DMA_LEN		0x18	/* bytes, 1..DMA_MAX */
#define TPH_IMP_REG_DMA_PATTERN		0x1c	/* 32-bit, repeated */
#define TPH_IMP_REG_DMA_ST_INDEX	0x20	/* ST table index (DS mode) */
#define TPH_IMP_REG_DMA_PH		0x24	/* Processing Hint */
#define TPH_IMP_REG_DMA_ST		0x28	/* DS mode ST without a table */
#define TPH_IMP_REG_DMA_CMD		0x2c	/* WO */
#define  TPH_IMP_CMD_START		BIT(0)
#define  TPH_IMP_CMD_NO_PREFIX		BIT(2)	/* 11b: ST[7:0], no prefix */
#define  TPH_IMP_CMD_OP_READ		BIT(4)		/* read DMA_ADDR into BAR2 */
#define  TPH_IMP_CMD_OP_COPY		BIT(5)		/* read DMA_SRC, write DMA_ADDR */
#define TPH_IMP_REG_DMA_STATUS		0x30	/* RW1C */
#define  TPH_IMP_STATUS_BUSY		BIT(0)
#define  TPH_IMP_STATUS_DONE		BIT(1)
#define  TPH_IMP_STATUS_ERROR		BIT(2)
#define TPH_IMP_REG_DMA_COUNT		0x34	/* RO, completed DMAs */
#define TPH_IMP_REG_DMA_LAST_HINT	0x38	/* RO */
#define TPH_IMP_REG_DMA_SRC_LO		0x40	/* COPY: source bus address */
#define TPH_IMP_REG_DMA_SRC_HI		0x44
#define TPH_IMP_REG_DMA_LOCAL		0x48	/* READ: offset in the device's BAR2 */

/* Most ST table entries used, one per attachment */
#define TPH_IMP_MAX_ST			64

/* How long a DMA may take before the engine is stopped */
#define TPH_IMP_DMA_TIMEOUT_MS		2000
/* How long an invalidation waits for a DMA, and then for the stop */
#define TPH_IMP_QUIESCE_MS		100

struct tph_imp_file;

struct tph_imp {
	struct list_head node;		/* in tph_imp_devices */
	struct kref kref;		/* device binding and open files */
	struct pci_dev *pdev;
	void __iomem *regs;
	struct miscdevice misc;		/* /dev/tph-importer-<BDF> */
	char misc_name[48];
	int st_mode;			/* PCI_TPH_ST_DS_MODE or _IV_MODE */

	/*
	 * Serializes the DMA engine, the ST table, TPH enable and the
	 * attachments of every file of this device. Held for one DMA at
	 * most, and never taken under a reservation lock.
	 */
	struct mutex lock;
	bool gone;			/* unbound */
	struct list_head files;		/* open files */
	unsigned int tph_users;		/* attachments that DMA with hints */
	unsigned int st_entries;	/* usable ST table entries, 0: none */
	bool can_read;			/* the engine has READ and COPY */
	DECLARE_BITMAP(st_used, TPH_IMP_MAX_ST);

	/*
	 * The attachment the engine runs a DMA for (and a copy's source),
	 * and whether Bus Master Enable was cleared to stop it. Taken under a
	 * reservation lock by the invalidate_mappings callback, so it nests
	 * inside both.
	 */
	struct mutex engine_lock;
	struct tph_imp_file *busy;
	struct tph_imp_file *busy_src;
	bool stopped;			/* Bus Master Enable cleared */
	bool dead;			/* did not stop: stays off */
	struct tph_imp_file *halted;	/* whose DMA the last stop cut short */
};

struct tph_imp_file {
	struct tph_imp *imp;
	struct list_head node;		/* in imp->files, under imp->lock */

	/* Attachment, under imp->lock */
	struct dma_buf *dmabuf;
	struct dma_buf_attachment *attach;
	int st_index;			/* own ST table entry, -1: none */
	bool tph_user;			/* counted in imp->tph_users */
	u32 dmas;
	dma_addr_t last_addr;		/* of the last DMA, 0: none yet */

	/* Mapping and hints, under dmabuf->resv while attached */
	struct sg_table *sgt;
	u32 invalidations;
	u32 maps;
	int tph_ret;
	bool query_ext;			/* namespace the device may use */
	bool th;			/* the mapping DMAs with hints */
	bool ext;			/* ... with a 16-bit tag and the prefix */
	u16 st;
	u8 ph;

	/* TPH_IMPORTER_CPU_ST_USE, under imp->lock: hints from a CPU's tag */
	bool cpu_st_use;
	unsigned int cpu;
	enum tph_mem_type cpu_mem;
	u8 cpu_ph;
};

/*
 * ST Mode the importer enables TPH in: Device Specific (the engine's
 * DMA_ST_INDEX names an ST table entry) or Interrupt Vector (it names the
 * completion vector, whose ST table entry holds the tag). A device that
 * lacks the mode asked for gets the other one if it has it (see
 * tph_imp_pick_mode()).
 */
static int tph_imp_mode = PCI_TPH_ST_DS_MODE;

static int tph_imp_mode_set(const char *val, const struct kernel_param *kp)
{
	if (sysfs_streq(val, "ds"))
		tph_imp_mode = PCI_TPH_ST_DS_MODE;
	else if (sysfs_streq(val, "iv"))
		tph_imp_mode = PCI_TPH_ST_IV_MODE;
	else
		return -EINVAL;
	return 0;
}

static int tph_imp_mode_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", tph_imp_mode == PCI_TPH_ST_IV_MODE ? "iv" : "ds");
}

static const struct kernel_param_ops tph_imp_mode_ops = {
	.set = tph_imp_mode_set,
	.get = tph_imp_mode_get,
};
module_param_cb(st_mode, &tph_imp_mode_ops, NULL, 0444);
MODULE_PARM_DESC(st_mode, "ST Mode to enable TPH in: ds (default) or iv (Interrupt Vector)");

static const struct file_operations tph_imp_fops;

/* Protects tph_imp_devices */
static DEFINE_MUTEX(tph_imp_lock);
static LIST_HEAD(tph_imp_devices);

static void tph_imp_free(struct kref *kref)
{
	struct tph_imp *imp = container_of(kref, struct tph_imp, kref);

	pci_dev_put(imp->pdev);
	kfree(imp);
}

static bool tph_imp_engine_idle(struct tph_imp *imp)
{
	return !(readl(imp->regs + TPH_IMP_REG_DMA_STATUS) & TPH_IMP_STATUS_BUSY);
}

static bool tph_imp_wait_idle(struct tph_imp *imp, unsigned int ms)
{
	unsigned long timeout = jiffies + msecs_to_jiffies(ms);

	while (!tph_imp_engine_idle(imp)) {
		if (time_after(jiffies, timeout))
			return tph_imp_engine_idle(imp);
		usleep_range(20, 50);
	}
	return true;
}

/*
 * Make sure the engine no longer accesses @f's buffer. Called with
 * engine_lock held. Wait for the DMA in flight; if it does not complete,
 * clear Bus Master Enable, after which the device issues no memory request
 * at all, and wait for the engine to give up.
 */
static void tph_imp_stop_engine(struct tph_imp *imp, struct tph_imp_file *f)
{
	lockdep_assert_held(&imp->engine_lock);

	if (imp->busy != f && imp->busy_src != f)
		return;

	if (!tph_imp_wait_idle(imp, TPH_IMP_QUIESCE_MS)) {
		pci_warn(imp->pdev, "DMA engine still busy, clearing Bus Master Enable\n");
		pci_clear_master(imp->pdev);
		imp->stopped = true;
		imp->halted = imp->busy;
		if (!tph_imp_wait_idle(imp, TPH_IMP_QUIESCE_MS)) {
			pci_err(imp->pdev, "DMA engine does not stop, leaving Bus Master Enable off\n");
			imp->dead = true;
		}
	}
	imp->busy = NULL;
	imp->busy_src = NULL;
}

/*
 * Start a DMA for @f, a TPH_IMP_CMD_OP_* @op; for a copy @src is the source
 * attachment, whose DMA_SRC the caller wrote. Engine idle, imp->lock and
 * the reservation locks of @f (and @src) held.
 */
static int tph_imp_start_dma(struct tph_imp_file *f, dma_addr_t addr, u32 len,
			     u32 pattern, u32 op, struct tph_imp_file *src)
{
	struct tph_imp *imp = f->imp;
	u32 cmd = TPH_IMP_CMD_START | op;
	int ret = 0;

	lockdep_assert_held(&imp->lock);
	dma_resv_assert_held(f->dmabuf->resv);
	if (src)
		dma_resv_assert_held(src->dmabuf->resv);

	/* An 8-bit tag goes out without the prefix, also with Enable 11b */
	if (f->th && !f->ext)
		cmd |= TPH_IMP_CMD_NO_PREFIX;

	writel(lower_32_bits(addr), imp->regs + TPH_IMP_REG_DMA_ADDR_LO);
	writel(upper_32_bits(addr), imp->regs + TPH_IMP_REG_DMA_ADDR_HI);
	writel(len, imp->regs + TPH_IMP_REG_DMA_LEN);
	writel(pattern, imp->regs + TPH_IMP_REG_DMA_PATTERN);
	writel(f->st_index >= 0 ? f->st_index : 0,
	       imp->regs + TPH_IMP_REG_DMA_ST_INDEX);
	writel(f->th ? f->ph : 0, imp->regs + TPH_IMP_REG_DMA_PH);
	writel(f->th ? f->st : 0, imp->regs + TPH_IMP_REG_DMA_ST);
	writel(0, imp->regs + TPH_IMP_REG_DMA_LOCAL);

	mutex_lock(&imp->engine_lock);
	if (imp->stopped && !imp->dead && tph_imp_engine_idle(imp)) {
		/* Stopped by an invalidation; idle now, so it may master again */
		pci_set_master(imp->pdev);
		imp->stopped = false;
	}
	if (imp->stopped) {
		ret = -EIO;
	} else {
		imp->busy = f;
		imp->busy_src = src;
		writel(cmd, imp->regs + TPH_IMP_REG_DMA_CMD);
	}
	mutex_unlock(&imp->engine_lock);

	return ret;
}

/* Wait for the DMA started for @f, without the reservation lock */
static int tph_imp_wait_dma(struct tph_imp_file *f, u32 count, u32 *status)
{
	struct tph_imp *imp = f->imp;
	unsigned long timeout = jiffies + msecs_to_jiffies(TPH_IMP_DMA_TIMEOUT_MS);
	int ret = 0;
	u32 st;

	lockdep_assert_held(&imp->lock);

	for (;;) {
		st = readl(imp->regs + TPH_IMP_REG_DMA_STATUS);
		if (!(st & TPH_IMP_STATUS_BUSY) &&
		    readl(imp->regs + TPH_IMP_REG_DMA_COUNT) != count)
			break;
		if (time_after(jiffies, timeout)) {
			ret = -ETIMEDOUT;
			break;
		}
		usleep_range(20, 50);
	}

	mutex_lock(&imp->engine_lock);
	if (ret) {
		/* Never leave the engine running into the buffer */
		tph_imp_stop_engine(imp, f);
	} else {
		imp->busy = NULL;
		imp->busy_src = NULL;
	}
	if (imp->halted == f) {
		/* An invalidation cut this DMA short */
		imp->halted = NULL;
		if (!ret)
			ret = -EIO;
	}
	mutex_unlock(&imp->engine_lock);

	*status = st;
	if (!ret && (st & TPH_IMP_STATUS_ERROR))
		ret = -EIO;
	return ret;
}

/*
 * The series asks the exporter for the hints of an attachment: which tags
 * reach the completer depends on the importer's path to it (no 16-bit tag
 * across the Root Complex). v8..v11 asked for those of the dma-buf. Kbuild
 * tells the two apart from the kernel's header.
 */
static int tph_imp_get_pci_tph(struct tph_imp_file *f, bool ext, u16 *st,
			       u8 *ph)
{
#ifdef TPH_IMP_GET_PCI_TPH_OF_ATTACHMENT
	return dma_buf_get_pci_tph(f->attach, ext, st, ph);
#else
	return dma_buf_get_pci_tph(f->dmabuf, ext, st, ph);
#endif
}

static int tph_imp_query(struct tph_imp_file *f, bool *ext, u16 *st, u8 *ph)
{
	int ret;

	lockdep_assert_held(&f->imp->lock);

	*ext = f->query_ext;
	/* The tag's width is the namespace TPH is enabled for, as ours */
	if (f->cpu_st_use) {
		*ph = f->cpu_ph;
		return pcie_tph_get_cpu_st(f->imp->pdev, f->cpu_mem, f->cpu, st);
	}
	ret = tph_imp_get_pci_tph(f, *ext, st, ph);
	if (ret == -EOPNOTSUPP && *ext) {
		/*
		 * TPH Requester Enable 11b permits Extended TPH, it does not
		 * require it: an 8-bit tag goes out without the TPH prefix.
		 */
		*ext = false;
		ret = tph_imp_get_pci_tph(f, false, st, ph);
	}
	return ret;
}

static void tph_imp_put_tph(struct tph_imp_file *f)
{
	struct tph_imp *imp = f->imp;

	lockdep_assert_held(&imp->lock);

	if (f->tph_user) {
		f->tph_user = false;
		imp->tph_users--;
	}
	/* TPH Requester Enable 00b: requests go out without hints */
	if (!imp->tph_users)
		pcie_disable_tph(imp->pdev);
}

/*
 * Query the hints for a fresh mapping and program the device with them.
 * Called with imp->lock (the engine is idle) and the reservation lock
 * held, right after the mapping was made: the hints go with that mapping.
 * Falls back to DMA without hints unless the query itself failed.
 */
static int tph_imp_setup_hints(struct tph_imp_file *f)
{
	struct tph_imp *imp = f->imp;
	struct pci_dev *pdev = imp->pdev;
	unsigned int index;
	bool ext;
	u16 st;
	u8 ph;
	int ret;

	lockdep_assert_held(&imp->lock);
	dma_resv_assert_held(f->dmabuf->resv);

	f->th = false;
	f->ext = false;
	f->st = 0;
	f->ph = 0;

	/* The DMA engine names the ST table entry, or in IV mode the vector */
	if (pcie_tph_enabled_req_type(pdev) == PCI_TPH_REQ_DISABLE) {
		ret = pcie_enable_tph(pdev, imp->st_mode);
		if (ret) {
			f->tph_ret = ret;
			goto no_hints;
		}
	}

	/* Ask for the Steering Tag namespace the device may use */
	f->query_ext = pcie_tph_enabled_req_type(pdev) == PCI_TPH_REQ_EXT_TPH;
	ret = tph_imp_query(f, &ext, &st, &ph);
	f->tph_ret = ret;
	if (ret == -EOPNOTSUPP)
		goto no_hints;
	if (ret) {
		tph_imp_put_tph(f);
		return ret;
	}

	/*
	 * With an ST table the engine names this attachment's own entry;
	 * without one, Device Specific mode takes the tag from DMA_ST, and
	 * Interrupt Vector mode has nowhere to take it from.
	 */
	if (!imp->st_entries && imp->st_mode == PCI_TPH_ST_IV_MODE) {
		f->tph_ret = -ENOSPC;
		goto no_hints;
	}
	if (imp->st_entries) {
		if (f->st_index < 0) {
			index = find_first_zero_bit(imp->st_used, imp->st_entries);
			if (index >= imp->st_entries) {
				f->tph_ret = -ENOSPC;
				goto no_hints;
			}
			set_bit(index, imp->st_used);
			f->st_index = index;
		}
		ret = pcie_tph_set_st_entry(pdev, f->st_index, st);
		if (ret) {
			f->tph_ret = ret;
			/* On failure it turned TPH off: the others need it */
			if (imp->tph_users > f->tph_user)
				pcie_enable_tph(pdev, imp->st_mode);
			goto no_hints;
		}
	}

	f->th = true;
	f->ext = ext;
	f->st = st;
	f->ph = ph;
	if (!f->tph_user) {
		f->tph_user = true;
		imp->tph_users++;
	}
	return 0;

no_hints:
	tph_imp_put_tph(f);
	return 0;
}

static void tph_imp_unmap(struct tph_imp_file *f)
{
	dma_resv_assert_held(f->dmabuf->resv);

	f->th = false;
	if (!f->sgt)
		return;

	dma_buf_unmap_attachment(f->attach, f->sgt, DMA_BIDIRECTIONAL);
	f->sgt = NULL;
}

static int tph_imp_map(struct tph_imp_file *f)
{
	struct sg_table *sgt;
	int ret;

	lockdep_assert_held(&f->imp->lock);
	dma_resv_assert_held(f->dmabuf->resv);

	sgt = dma_buf_map_attachment(f->attach, DMA_BIDIRECTIONAL);
	if (IS_ERR(sgt))
		return PTR_ERR(sgt);
	f->sgt = sgt;

	ret = tph_imp_setup_hints(f);
	if (ret) {
		tph_imp_unmap(f);
		return ret;
	}

	f->maps++;
	return 0;
}

static void tph_imp_invalidate_mappings(struct dma_buf_attachment *attach)
{
	struct tph_imp_file *f = attach->importer_priv;
	struct tph_imp *imp = f->imp;

	dma_resv_assert_held(attach->dmabuf->resv);

	f->invalidations++;

	/*
	 * A DMA into the buffer may be in flight: it was started under the
	 * reservation lock, but runs without it. Stop the engine before the
	 * memory goes back to the exporter. The hints go with the mapping;
	 * the next DMA maps again and asks for them again.
	 */
	mutex_lock(&imp->engine_lock);
	tph_imp_stop_engine(imp, f);
	mutex_unlock(&imp->engine_lock);

	tph_imp_unmap(f);
}

static const struct dma_buf_attach_ops tph_imp_attach_ops = {
	.allow_peer2peer = true,
	.invalidate_mappings = tph_imp_invalidate_mappings,
};

static void tph_imp_detach(struct tph_imp_file *f)
{
	struct tph_imp *imp = f->imp;

	lockdep_assert_held(&imp->lock);

	if (!f->attach)
		return;

	/* DMAs run under imp->lock: none of this file's is in flight */
	dma_resv_lock(f->dmabuf->resv, NULL);
	tph_imp_unmap(f);
	dma_resv_unlock(f->dmabuf->resv);

	dma_buf_detach(f->dmabuf, f->attach);
	dma_buf_put(f->dmabuf);
	f->attach = NULL;
	f->dmabuf = NULL;

	if (f->st_index >= 0) {
		clear_bit(f->st_index, imp->st_used);
		f->st_index = -1;
	}
	tph_imp_put_tph(f);
}

static long tph_imp_ioctl_attach(struct tph_imp_file *f,
				 struct tph_importer_attach __user *uarg)
{
	struct tph_imp *imp = f->imp;
	struct tph_importer_attach arg;
	struct dma_buf_attachment *attach;
	struct dma_buf *dmabuf;
	int ret;

	lockdep_assert_held(&imp->lock);

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;

	if (f->attach)
		return -EBUSY;

	dmabuf = dma_buf_get(arg.dmabuf_fd);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);

	f->dmabuf = dmabuf;
	f->sgt = NULL;
	f->invalidations = 0;
	f->maps = 0;
	f->dmas = 0;
	f->tph_ret = 0;
	f->th = false;

	attach = dma_buf_dynamic_attach(dmabuf, &imp->pdev->dev,
					&tph_imp_attach_ops, f);
	if (IS_ERR(attach)) {
		ret = PTR_ERR(attach);
		goto err_put;
	}
	f->attach = attach;

	ret = dma_resv_lock_interruptible(dmabuf->resv, NULL);
	if (ret)
		goto err_detach;

	ret = tph_imp_map(f);
	if (!ret) {
		arg.ret = f->tph_ret;
		arg.st = f->th ? f->st : 0;
		arg.ph = f->th ? f->ph : 0;
		arg.ext = f->th && f->ext;
		arg.req_type = pcie_tph_enabled_req_type(imp->pdev);
		arg.size = dmabuf->size;
	}
	dma_resv_unlock(dmabuf->resv);
	if (ret)
		goto err_detach;

	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		tph_imp_detach(f);
		return -EFAULT;
	}

	return 0;

err_detach:
	tph_imp_detach(f);
	return ret;

err_put:
	f->dmabuf = NULL;
	dma_buf_put(dmabuf);
	return ret;
}

/* The bus address of [offset, offset + len) of the mapping, if contiguous */
static int tph_imp_dma_addr(struct tph_imp_file *f, u64 offset, u32 len,
			    dma_addr_t *addr)
{
	struct scatterlist *sg;
	unsigned int i;

	for_each_sgtable_dma_sg(f->sgt, sg, i) {
		if (offset < sg_dma_len(sg)) {
			if (len > sg_dma_len(sg) - offset)
				break;	/* spans two DMA segments */
			*addr = sg_dma_address(sg) + offset;
			return 0;
		}
		offset -= sg_dma_len(sg);
	}
	return -EINVAL;
}

/* One DMA of a TPH_IMPORTER_DMA; imp->lock held */
static int tph_imp_dma_one(struct tph_imp_file *f, struct tph_importer_dma *arg)
{
	struct tph_imp *imp = f->imp;
	struct dma_resv *resv = f->dmabuf->resv;
	dma_addr_t addr;
	u32 count = 0;
	int ret;

	lockdep_assert_held(&imp->lock);

	ret = dma_resv_lock_interruptible(resv, NULL);
	if (ret)
		return ret;

	if (!f->sgt) {
		/* Invalidated: the old hints are stale, map and ask again */
		ret = tph_imp_map(f);
		if (ret)
			goto out_unlock;
		arg->remapped = 1;
	}

	arg->ret = f->tph_ret;
	arg->th = f->th;
	arg->st = f->th ? f->st : 0;
	arg->ph = f->th ? f->ph : 0;
	arg->ext = f->th && f->ext;

	/* The device would tag this DMA with another attachment's TPH */
	if (!f->th && imp->tph_users) {
		ret = -EBUSY;
		goto out_unlock;
	}

	ret = tph_imp_dma_addr(f, arg->offset, arg->len, &addr);
	if (ret)
		goto out_unlock;

	count = readl(imp->regs + TPH_IMP_REG_DMA_COUNT);
	ret = tph_imp_start_dma(f, addr, arg->len, arg->pattern,
				arg->flags & TPH_IMPORTER_DMA_READ ?
				TPH_IMP_CMD_OP_READ : 0, NULL);
	if (!ret)
		f->last_addr = addr;

out_unlock:
	dma_resv_unlock(resv);
	if (ret)
		return ret;

	/* Without the reservation lock: a revocation may stop the engine */
	return tph_imp_wait_dma(f, count, &arg->status);
}

static long tph_imp_ioctl_dma(struct tph_imp_file *f,
			      struct tph_importer_dma __user *uarg)
{
	struct tph_imp *imp = f->imp;
	struct tph_importer_dma arg;
	u32 i, count;
	int ret = 0;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;

	count = arg.count ? arg.count : 1;
	arg.done = 0;
	arg.status = 0;
	arg.ret = 0;
	arg.st = 0;
	arg.ph = 0;
	arg.th = 0;
	arg.ext = 0;
	arg.remapped = 0;

	if (arg.flags & ~TPH_IMPORTER_DMA_READ)
		return -EINVAL;
	if ((arg.flags & TPH_IMPORTER_DMA_READ) && !imp->can_read)
		return -EOPNOTSUPP;

	for (i = 0; i < count; i++) {
		if (i && signal_pending(current)) {
			ret = -EINTR;
			break;
		}

		/* Taken per DMA, so other files get the engine in between */
		mutex_lock(&imp->lock);
		if (imp->gone) {
			ret = -ENODEV;
		} else if (!f->attach) {
			ret = -ENOTCONN;
		} else if (!arg.len || arg.offset >= f->dmabuf->size ||
			   arg.len > f->dmabuf->size - arg.offset ||
			   arg.len > readl(imp->regs + TPH_IMP_REG_DMA_MAX)) {
			ret = -EINVAL;
		} else {
			ret = tph_imp_dma_one(f, &arg);
			if (!ret)
				f->dmas++;
		}
		mutex_unlock(&imp->lock);

		if (ret)
			break;
		arg.done++;
	}

	/* Also on failure: how many DMAs completed, and the last status */
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;

	return ret;
}

/* TPH_IMPORTER_DMA_STALE: a DMA to an address no longer mapped */
static long tph_imp_ioctl_dma_stale(struct tph_imp_file *f,
				    struct tph_importer_dma __user *uarg)
{
	struct tph_imp *imp = f->imp;
	struct tph_importer_dma arg;
	u32 count;
	int ret;

	lockdep_assert_held(&imp->lock);

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	/* The outputs, from @done up to @flags, an input */
	memset(&arg.done, 0, offsetof(struct tph_importer_dma, flags) -
	       offsetof(struct tph_importer_dma, done));
	/* A stale DMA is a write: no TPH_IMPORTER_DMA_READ, no other flag */
	if (arg.flags)
		return -EINVAL;
	if (f->attach || !f->last_addr)
		return -ENOTCONN;
	if (!arg.len || arg.len > readl(imp->regs + TPH_IMP_REG_DMA_MAX))
		return -EINVAL;

	pci_warn(imp->pdev, "stale DMA of %u bytes to unmapped %pad\n",
		 arg.len, &f->last_addr);
	count = readl(imp->regs + TPH_IMP_REG_DMA_COUNT);
	writel(lower_32_bits(f->last_addr), imp->regs + TPH_IMP_REG_DMA_ADDR_LO);
	writel(upper_32_bits(f->last_addr), imp->regs + TPH_IMP_REG_DMA_ADDR_HI);
	writel(arg.len, imp->regs + TPH_IMP_REG_DMA_LEN);
	writel(arg.pattern, imp->regs + TPH_IMP_REG_DMA_PATTERN);
	writel(0, imp->regs + TPH_IMP_REG_DMA_PH);
	writel(0, imp->regs + TPH_IMP_REG_DMA_ST);

	mutex_lock(&imp->engine_lock);
	if (imp->stopped) {
		ret = -EIO;
	} else {
		imp->busy = f;
		writel(TPH_IMP_CMD_START, imp->regs + TPH_IMP_REG_DMA_CMD);
		ret = 0;
	}
	mutex_unlock(&imp->engine_lock);
	if (!ret)
		ret = tph_imp_wait_dma(f, count, &arg.status);
	if (!ret)
		arg.done = 1;

	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;
	return ret;
}

/*
 * Lock the reservations of a copy's two dma-bufs (one if both files are
 * attached to the same dma-buf), in whichever order the wound/wait
 * protocol lets both be held.
 */
static int tph_imp_lock_pair(struct dma_resv *a, struct dma_resv *b,
			     struct ww_acquire_ctx *ctx)
{
	struct dma_resv *resv[2] = { a, b };
	struct dma_resv *slow = NULL;
	int i, n = a == b ? 1 : 2;
	int ret;

	ww_acquire_init(ctx, &reservation_ww_class);
retry:
	if (slow) {
		ret = dma_resv_lock_slow_interruptible(slow, ctx);
		if (ret)
			goto err_fini;
	}
	for (i = 0; i < n; i++) {
		if (resv[i] == slow)
			continue;
		ret = dma_resv_lock_interruptible(resv[i], ctx);
		if (!ret)
			continue;
		/* Back off: drop what is held, wait for the contended one */
		if (i && resv[0] != slow)
			dma_resv_unlock(resv[0]);
		if (slow)
			dma_resv_unlock(slow);
		if (ret != -EDEADLK)
			goto err_fini;
		slow = resv[i];
		goto retry;
	}
	ww_acquire_done(ctx);
	return 0;

err_fini:
	ww_acquire_fini(ctx);
	return ret;
}

static void tph_imp_unlock_pair(struct dma_resv *a, struct dma_resv *b,
				struct ww_acquire_ctx *ctx)
{
	dma_resv_unlock(a);
	if (b != a)
		dma_resv_unlock(b);
	ww_acquire_fini(ctx);
}

/* Map @f again if the exporter invalidated it; its reservation lock held */
static int tph_imp_remap(struct tph_imp_file *f, u8 *remapped, u8 bit)
{
	int ret;

	if (f->sgt)
		return 0;
	ret = tph_imp_map(f);
	if (!ret)
		*remapped |= bit;
	return ret;
}

/*
 * The copy itself: both reservation locks held, both mapped. The engine
 * sends one hint on every request of a copy, reads and writes alike, and a
 * Steering Tag means something only to the completer that handed it out:
 * the two mappings must carry the same hint, or none.
 */
static int tph_imp_copy_start(struct tph_imp_file *f, struct tph_imp_file *src,
			      struct tph_importer_copy *arg)
{
	struct tph_imp *imp = f->imp;
	dma_addr_t from, to;
	int ret;

	if (f->th != src->th ||
	    (f->th && (f->st != src->st || f->ph != src->ph || f->ext != src->ext)))
		return -EXDEV;
	if (!f->th && imp->tph_users)
		return -EBUSY;

	ret = tph_imp_dma_addr(src, arg->src_offset, arg->len, &from);
	if (!ret)
		ret = tph_imp_dma_addr(f, arg->offset, arg->len, &to);
	if (ret)
		return ret;

	writel(lower_32_bits(from), imp->regs + TPH_IMP_REG_DMA_SRC_LO);
	writel(upper_32_bits(from), imp->regs + TPH_IMP_REG_DMA_SRC_HI);
	ret = tph_imp_start_dma(f, to, arg->len, 0, TPH_IMP_CMD_OP_COPY, src);
	if (!ret)
		f->last_addr = to;
	return ret;
}

static int tph_imp_copy(struct tph_imp_file *f, struct tph_imp_file *src,
			struct tph_importer_copy *arg)
{
	struct dma_resv *dst_resv = f->dmabuf->resv;
	struct dma_resv *src_resv = src->dmabuf->resv;
	struct ww_acquire_ctx ctx;
	u32 count;
	int ret;

	lockdep_assert_held(&f->imp->lock);

	ret = tph_imp_lock_pair(dst_resv, src_resv, &ctx);
	if (ret)
		return ret;

	ret = tph_imp_remap(f, &arg->remapped, TPH_IMPORTER_COPY_REMAPPED);
	if (!ret)
		ret = tph_imp_remap(src, &arg->remapped, TPH_IMPORTER_COPY_SRC_REMAPPED);
	/* Mapping one of a shared buffer's attachments may move the other's */
	if (!ret && (!f->sgt || !src->sgt))
		ret = -EAGAIN;
	if (!ret) {
		arg->ret = f->tph_ret;
		arg->th = f->th;
		arg->st = f->th ? f->st : 0;
		arg->ph = f->th ? f->ph : 0;
		arg->ext = f->th && f->ext;
		count = readl(f->imp->regs + TPH_IMP_REG_DMA_COUNT);
		ret = tph_imp_copy_start(f, src, arg);
	}
	tph_imp_unlock_pair(dst_resv, src_resv, &ctx);
	if (ret)
		return ret;

	/* Without the reservation locks: a revocation of either may stop it */
	ret = tph_imp_wait_dma(f, count, &arg->status);
	if (!ret)
		f->dmas++;
	return ret;
}

/* Check a copy's arguments against both attachments, then copy */
static int tph_imp_copy_from(struct tph_imp_file *f, struct tph_importer_copy *arg)
{
	CLASS(fd, sf)(arg->src_fd);
	struct tph_imp *imp = f->imp;
	struct tph_imp_file *src;
	u32 max;

	if (fd_empty(sf) || fd_file(sf)->f_op != &tph_imp_fops)
		return -EBADF;
	src = fd_file(sf)->private_data;
	if (src->imp != imp)
		return -EINVAL;		/* another device's file */
	if (!imp->can_read)
		return -EOPNOTSUPP;
	if (!f->attach || !src->attach)
		return -ENOTCONN;

	max = readl(imp->regs + TPH_IMP_REG_DMA_MAX);
	if (!arg->len || arg->len > max ||
	    arg->offset >= f->dmabuf->size ||
	    arg->len > f->dmabuf->size - arg->offset ||
	    arg->src_offset >= src->dmabuf->size ||
	    arg->len > src->dmabuf->size - arg->src_offset)
		return -EINVAL;

	return tph_imp_copy(f, src, arg);
}

/* TPH_IMPORTER_COPY: from another file's attachment into this file's */
static long tph_imp_ioctl_copy(struct tph_imp_file *f,
			       struct tph_importer_copy __user *uarg)
{
	struct tph_importer_copy arg;
	bool bad_pad;
	int ret;

	lockdep_assert_held(&f->imp->lock);

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	bad_pad = arg.pad;
	/* The outputs, from @status on */
	memset(&arg.status, 0, sizeof(arg) - offsetof(struct tph_importer_copy, status));

	ret = bad_pad ? -EINVAL : tph_imp_copy_from(f, &arg);

	/* Also on failure: the hint and the status, where it got that far */
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;
	return ret;
}

/* The importing device's IOMMU domain, as TPH_IMPORTER_DOMAIN_* */
static u32 tph_imp_domain(struct pci_dev *pdev)
{
	struct iommu_domain *dom = iommu_get_domain_for_dev(&pdev->dev);

	if (!dom)
		return TPH_IMPORTER_DOMAIN_NONE;
	if (dom->type == IOMMU_DOMAIN_IDENTITY)
		return TPH_IMPORTER_DOMAIN_IDENTITY;
	if (dom->type & __IOMMU_DOMAIN_DMA_API)
		return TPH_IMPORTER_DOMAIN_DMA;
	return TPH_IMPORTER_DOMAIN_OTHER;
}

static long tph_imp_ioctl_status(struct tph_imp_file *f,
				 struct tph_importer_status __user *uarg)
{
	struct tph_imp *imp = f->imp;
	struct tph_importer_status arg = {};
	bool ext;
	u16 st;
	u8 ph;
	int ret;

	lockdep_assert_held(&imp->lock);

	arg.query_ret = -ENOTCONN;
	if (f->attach) {
		ret = dma_resv_lock_interruptible(f->dmabuf->resv, NULL);
		if (ret)
			return ret;
		arg.size = f->dmabuf->size;
		arg.attached = 1;
		arg.mapped = !!f->sgt;
		if (f->sgt && f->sgt->nents)
			arg.dma_addr = sg_dma_address(f->sgt->sgl);
		arg.th = f->th;
		arg.st = f->th ? f->st : 0;
		arg.ph = f->th ? f->ph : 0;
		arg.ext = f->th && f->ext;
		/* Ask the exporter now, also while it has revoked the buffer */
		arg.query_ret = tph_imp_query(f, &ext, &st, &ph);
	}
	arg.dmas = f->dmas;
	arg.invalidations = f->invalidations;
	arg.maps = f->maps;
	arg.ret = f->tph_ret;
	if (f->attach)
		dma_resv_unlock(f->dmabuf->resv);
	arg.req_type = pcie_tph_enabled_req_type(imp->pdev);
	arg.domain = tph_imp_domain(imp->pdev);

	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;

	return 0;
}

/*
 * The tag firmware reports for @cpu. Its width follows TPH Requester
 * Enable, so TPH is enabled for the query if no attachment has it on.
 */
static int tph_imp_cpu_st(struct tph_imp *imp, unsigned int cpu,
			  enum tph_mem_type mem, u16 *st, u8 *req_type)
{
	struct pci_dev *pdev = imp->pdev;
	bool was_on = pcie_tph_enabled_req_type(pdev) != PCI_TPH_REQ_DISABLE;
	int ret;

	lockdep_assert_held(&imp->lock);

	if (!was_on) {
		ret = pcie_enable_tph(pdev, imp->st_mode);
		if (ret)
			return ret;
	}
	*req_type = pcie_tph_enabled_req_type(pdev);
	ret = pcie_tph_get_cpu_st(pdev, mem, cpu, st);
	if (!was_on)
		pcie_disable_tph(pdev);
	return ret;
}

static long tph_imp_ioctl_cpu_st(struct tph_imp_file *f,
				 struct tph_importer_cpu_st __user *uarg)
{
	struct tph_importer_cpu_st arg;
	u8 req_type = 0;
	u16 st = 0;

	lockdep_assert_held(&f->imp->lock);

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if ((arg.flags & ~TPH_IMPORTER_CPU_ST_USE) || arg.ph > 3 ||
	    arg.mem_type > TPH_MEM_TYPE_PM || arg.cpu >= nr_cpu_ids)
		return -EINVAL;

	arg.ret = tph_imp_cpu_st(f->imp, arg.cpu, arg.mem_type, &st, &req_type);
	arg.st = st;
	arg.req_type = req_type;
	arg.pad = 0;
	if (arg.flags & TPH_IMPORTER_CPU_ST_USE) {
		f->cpu_st_use = true;
		f->cpu = arg.cpu;
		f->cpu_mem = arg.mem_type;
		f->cpu_ph = arg.ph;
	}

	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;
	return 0;
}

static long tph_imp_ioctl(struct file *file, unsigned int cmd,
			  unsigned long arg)
{
	struct tph_imp_file *f = file->private_data;
	struct tph_imp *imp = f->imp;
	void __user *uarg = (void __user *)arg;
	long ret;

	/* The DMA takes imp->lock per DMA, so that revocations interleave */
	if (cmd == TPH_IMPORTER_DMA)
		return tph_imp_ioctl_dma(f, uarg);

	mutex_lock(&imp->lock);

	if (imp->gone) {
		ret = -ENODEV;
		goto out;
	}

	switch (cmd) {
	case TPH_IMPORTER_ATTACH:
		ret = tph_imp_ioctl_attach(f, uarg);
		break;
	case TPH_IMPORTER_DETACH:
		ret = f->attach ? 0 : -ENOTCONN;
		tph_imp_detach(f);
		break;
	case TPH_IMPORTER_STATUS:
		ret = tph_imp_ioctl_status(f, uarg);
		break;
	case TPH_IMPORTER_CPU_ST:
		ret = tph_imp_ioctl_cpu_st(f, uarg);
		break;
	case TPH_IMPORTER_DMA_STALE:
		ret = tph_imp_ioctl_dma_stale(f, uarg);
		break;
	case TPH_IMPORTER_COPY:
		ret = tph_imp_ioctl_copy(f, uarg);
		break;
	default:
		ret = -ENOTTY;
	}

out:
	mutex_unlock(&imp->lock);
	return ret;
}

static struct miscdevice tph_imp_misc;

/*
 * The device a file opens: its own node's, or for /dev/tph-importer the one
 * device bound. misc_open() holds misc_mtx around this, and
 * misc_deregister() takes it, so a device's node cannot go away under it.
 */
static struct tph_imp *tph_imp_get(struct file *file)
{
	struct tph_imp *imp, *found = NULL;
	unsigned int n = 0;

	if (file->private_data != &tph_imp_misc) {
		imp = container_of(file->private_data, struct tph_imp, misc);
		kref_get(&imp->kref);
		return imp;
	}

	mutex_lock(&tph_imp_lock);
	list_for_each_entry(imp, &tph_imp_devices, node) {
		found = imp;
		n++;
	}
	if (n == 1)
		kref_get(&found->kref);
	mutex_unlock(&tph_imp_lock);

	if (n > 1)
		pr_warn_ratelimited("tph_importer: %u devices bound: open /dev/tph-importer-<BDF>\n",
				    n);
	if (n != 1)
		return ERR_PTR(n ? -EBUSY : -ENODEV);
	return found;
}

static int tph_imp_open(struct inode *inode, struct file *file)
{
	struct tph_imp *found;
	struct tph_imp_file *f;

	f = kzalloc_obj(*f);
	if (!f)
		return -ENOMEM;
	f->st_index = -1;

	found = tph_imp_get(file);
	if (IS_ERR(found)) {
		kfree(f);
		return PTR_ERR(found);
	}

	f->imp = found;
	mutex_lock(&found->lock);
	list_add_tail(&f->node, &found->files);
	mutex_unlock(&found->lock);

	file->private_data = f;
	return nonseekable_open(inode, file);
}

static int tph_imp_release(struct inode *inode, struct file *file)
{
	struct tph_imp_file *f = file->private_data;
	struct tph_imp *imp = f->imp;

	mutex_lock(&imp->lock);
	tph_imp_detach(f);
	list_del(&f->node);
	mutex_unlock(&imp->lock);

	kfree(f);
	kref_put(&imp->kref, tph_imp_free);
	return 0;
}

static const struct file_operations tph_imp_fops = {
	.owner = THIS_MODULE,
	.open = tph_imp_open,
	.release = tph_imp_release,
	.unlocked_ioctl = tph_imp_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice tph_imp_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "tph-importer",
	.fops = &tph_imp_fops,
};

/*
 * How many entries the device's ST table has.  pcie_tph_get_st_table_size()
 * only counts a table in the TPH capability: a table in the MSI-X table has
 * one entry per MSI-X vector.
 */
static unsigned int tph_imp_st_table_size(struct pci_dev *pdev)
{
	u32 loc = FIELD_PREP(PCI_TPH_CAP_LOC_MASK, pcie_tph_get_st_table_loc(pdev));
	int n;

	switch (loc) {
	case PCI_TPH_LOC_CAP:
		return pcie_tph_get_st_table_size(pdev);
	case PCI_TPH_LOC_MSIX:
		n = pci_msix_vec_count(pdev);
		return n > 0 ? n : 0;
	default:
		return 0;
	}
}

/* How many ST table entries the attachments may use */
static unsigned int tph_imp_st_entries(struct pci_dev *pdev, int vectors)
{
	u32 loc = FIELD_PREP(PCI_TPH_CAP_LOC_MASK, pcie_tph_get_st_table_loc(pdev));
	unsigned int n = min_t(unsigned int, tph_imp_st_table_size(pdev),
			       TPH_IMP_MAX_ST);

	/* An entry in the MSI-X table is only writable for an allocated vector */
	if (loc == PCI_TPH_LOC_MSIX)
		return vectors > 0 ? min_t(unsigned int, n, vectors) : 0;
	return n;
}

/*
 * The ST Mode st_mode asks for if the device has it, else the other one it
 * has, as a driver enables the mode its device supports.
 */
static int tph_imp_pick_mode(struct pci_dev *pdev)
{
	u32 want = tph_imp_mode == PCI_TPH_ST_IV_MODE ? PCI_TPH_CAP_ST_IV : PCI_TPH_CAP_ST_DS;
	u32 other = want == PCI_TPH_CAP_ST_IV ? PCI_TPH_CAP_ST_DS : PCI_TPH_CAP_ST_IV;
	u16 cap = pci_find_ext_capability(pdev, PCI_EXT_CAP_ID_TPH);
	u32 reg = 0;

	if (cap)
		pci_read_config_dword(pdev, cap + PCI_TPH_CAP, &reg);
	if (!(reg & want) && (reg & other))
		return tph_imp_mode == PCI_TPH_ST_IV_MODE ? PCI_TPH_ST_DS_MODE : PCI_TPH_ST_IV_MODE;
	return tph_imp_mode;
}

static int tph_imp_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct tph_imp *imp;
	int vectors, ret;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;

	imp = kzalloc_obj(*imp);
	if (!imp)
		return -ENOMEM;
	kref_init(&imp->kref);
	imp->pdev = pci_dev_get(pdev);
	mutex_init(&imp->lock);
	mutex_init(&imp->engine_lock);
	INIT_LIST_HEAD(&imp->files);

	imp->regs = pcim_iomap_region(pdev, 0, "tph_importer");
	if (IS_ERR(imp->regs)) {
		ret = PTR_ERR(imp->regs);
		goto err_free;
	}

	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		goto err_free;

	pci_set_master(pdev);

	/*
	 * An ST table in the MSI-X table is only writable with MSI-X enabled,
	 * and an entry only for an allocated vector: one per entry.
	 */
	vectors = pci_alloc_irq_vectors(pdev, 1,
					max_t(unsigned int, tph_imp_st_table_size(pdev), 1),
					PCI_IRQ_MSIX);
	if (vectors < 0)
		pci_dbg(pdev, "no MSI-X\n");
	imp->st_entries = tph_imp_st_entries(pdev, vectors);
	imp->st_mode = tph_imp_pick_mode(pdev);

	/*
	 * A tph-testdev that can read has DMA_LOCAL; an older one reads an
	 * unknown register as zero and would take READ for a write.
	 */
	writel(4, imp->regs + TPH_IMP_REG_DMA_LOCAL);
	imp->can_read = readl(imp->regs + TPH_IMP_REG_DMA_LOCAL) == 4;
	writel(0, imp->regs + TPH_IMP_REG_DMA_LOCAL);

	pci_set_drvdata(pdev, imp);

	snprintf(imp->misc_name, sizeof(imp->misc_name), "tph-importer-%s", pci_name(pdev));
	imp->misc.minor = MISC_DYNAMIC_MINOR;
	imp->misc.name = imp->misc_name;
	imp->misc.fops = &tph_imp_fops;
	ret = misc_register(&imp->misc);
	if (ret)
		goto err_irq;

	mutex_lock(&tph_imp_lock);
	list_add_tail(&imp->node, &tph_imp_devices);
	mutex_unlock(&tph_imp_lock);

	pci_info(pdev, "tph-testdev, ID register %#010x, %u ST table entries, ST mode %s%s\n",
		 readl(imp->regs + TPH_IMP_REG_ID), imp->st_entries,
		 imp->st_mode == PCI_TPH_ST_IV_MODE ? "iv" : "ds",
		 imp->can_read ? ", reads" : "");
	return 0;

err_irq:
	pci_free_irq_vectors(pdev);
err_free:
	kref_put(&imp->kref, tph_imp_free);
	return ret;
}

static void tph_imp_remove(struct pci_dev *pdev)
{
	struct tph_imp *imp = pci_get_drvdata(pdev);
	struct tph_imp_file *f;

	/* No new file of this device: its node first, then /dev/tph-importer's */
	misc_deregister(&imp->misc);
	mutex_lock(&tph_imp_lock);
	list_del(&imp->node);
	mutex_unlock(&tph_imp_lock);

	mutex_lock(&imp->lock);
	list_for_each_entry(f, &imp->files, node)
		tph_imp_detach(f);
	imp->gone = true;
	mutex_unlock(&imp->lock);

	pcie_disable_tph(pdev);
	pci_free_irq_vectors(pdev);
	kref_put(&imp->kref, tph_imp_free);
}

static const struct pci_device_id tph_imp_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT, PCI_DEVICE_ID_REDHAT_TPH_TESTDEV) },
	{ }
};
MODULE_DEVICE_TABLE(pci, tph_imp_ids);

static struct pci_driver tph_imp_driver = {
	.name = "tph_importer",
	.id_table = tph_imp_ids,
	.probe = tph_imp_probe,
	.remove = tph_imp_remove,
};

/*
 * Writing 1 to /sys/module/tph_importer/parameters/inject_warn makes the
 * module WARN: how `rig run --inject warn` checks that a kernel warning
 * fails a run, also under load, where stall reports must not.
 */
static int tph_imp_inject_warn(const char *val, const struct kernel_param *kp)
{
	bool on;
	int ret = kstrtobool(val, &on);

	if (ret)
		return ret;
	WARN(on, "tph_importer: warning injected (rig run --inject warn)\n");
	return 0;
}

static const struct kernel_param_ops tph_imp_inject_warn_ops = {
	.set = tph_imp_inject_warn,
};
module_param_cb(inject_warn, &tph_imp_inject_warn_ops, NULL, 0200);
MODULE_PARM_DESC(inject_warn, "write 1 to WARN (a test of the rig's dmesg checks)");

static int __init tph_imp_init(void)
{
	int ret;

	ret = misc_register(&tph_imp_misc);
	if (ret)
		return ret;

	ret = pci_register_driver(&tph_imp_driver);
	if (ret)
		misc_deregister(&tph_imp_misc);

	return ret;
}
module_init(tph_imp_init);

static void __exit tph_imp_exit(void)
{
	pci_unregister_driver(&tph_imp_driver);
	misc_deregister(&tph_imp_misc);
}
module_exit(tph_imp_exit);

MODULE_DESCRIPTION("Test importer for PCIe TPH hints on dma-bufs (test only)");
MODULE_LICENSE("GPL");
